//! Generations in memory (twin of adapters/dynamodb/generations.rs).

use async_trait::async_trait;

use crate::domain::{FailFrom, Generation, GenerationStatus, LedgerEntry, LedgerKind, Timings, UnixTime, UserId};
use crate::ports::{
    ClaimOutcome, DeleteOutcome, FailOutcome, GenerationPage, GenerationStore, IdempotencyRecord, JobRef,
    NewGeneration, OverdueCursor, OverduePage, PortError, StartOutcome, Written,
};

use super::{Inner, MemoryStore};

impl Inner {
    fn generation_mut(&mut self, job: &JobRef) -> Option<&mut Generation> {
        self.generations.get_mut(&job.user_id).and_then(|g| g.get_mut(&job.generation_id))
    }

    /// Marks the job succeeded if `allowed` (the claim's holder, or the callback it awaits) says so, freeing its
    /// in-flight slot: the one success of both `succeed` and `succeed_callback`.
    fn succeed_if(
        &mut self,
        job: &JobRef,
        allowed: impl Fn(&Generation) -> bool,
        output_key: &str,
        timings: Timings,
        now: UnixTime,
    ) -> Written {
        let Some(g) = self.generation_mut(job).filter(|g| allowed(g)) else { return Written::Conflict };
        g.status = GenerationStatus::Succeeded;
        g.output_key = Some(output_key.to_owned());
        g.completed_at = Some(now);
        g.timings = Some(timings);
        g.claim = None;
        g.claim_until = None;
        self.release_slot(&job.user_id);
        Written::Yes
    }

    fn release_slot(&mut self, user: &UserId) {
        if let Some(count) = self.in_flight.get_mut(user) {
            *count = count.saturating_sub(1);
        }
    }
}

#[async_trait]
impl GenerationStore for MemoryStore {
    async fn start_generation(&self, new: &NewGeneration, now: UnixTime) -> Result<StartOutcome, PortError> {
        let mut inner = self.lock();
        let g = &new.generation;
        let user = &g.user_id;
        if let Some(record) = inner.idempotency.get(&(user.clone(), new.idempotency.key_hash.clone())) {
            return Ok(StartOutcome::KeyUsed(record.clone()));
        }
        // The same order of checks as the DynamoDB transaction: balance, then key, then the in-flight slot.
        let balance = inner.balance(user).unwrap_or(0);
        let cost = i64::try_from(g.credits_charged).map_err(|e| PortError::internal("generations", e))?;
        let Some(entry) = LedgerEntry::apply(LedgerKind::Spend, balance, -cost, &g.id, now) else {
            return Ok(StartOutcome::Insufficient { balance });
        };
        if inner.in_flight.get(user).copied().unwrap_or(0) >= new.max_in_flight {
            return Ok(StartOutcome::TooManyInFlight);
        }
        let balance = inner.apply(user, entry);
        let record =
            IdempotencyRecord { balance, created_at: now, generation_id: g.id.clone(), ..new.idempotency.clone() };
        inner.idempotency.insert((user.clone(), record.key_hash.clone()), record);
        *inner.in_flight.entry(user.clone()).or_default() += 1;
        inner.generations.entry(user.clone()).or_default().insert(g.id.clone(), g.clone());
        Ok(StartOutcome::Started { balance })
    }

    async fn idempotency_record(&self, user: &UserId, key_hash: &str) -> Result<Option<IdempotencyRecord>, PortError> {
        Ok(self.lock().idempotency.get(&(user.clone(), key_hash.to_owned())).cloned())
    }

    async fn generation(&self, user: &UserId, id: &str) -> Result<Option<Generation>, PortError> {
        Ok(self.lock().generations.get(user).and_then(|g| g.get(id)).cloned())
    }

    async fn generations_page(
        &self,
        user: &UserId,
        limit: usize,
        before: Option<&str>,
    ) -> Result<GenerationPage, PortError> {
        let inner = self.lock();
        let mut items: Vec<Generation> = inner
            .generations
            .get(user)
            .map(|g| {
                g.values().rev().filter(|g| before.is_none_or(|b| g.id.as_str() < b)).take(limit + 1).cloned().collect()
            })
            .unwrap_or_default();
        let more = items.len() > limit;
        items.truncate(limit);
        Ok(GenerationPage { items, more })
    }

    async fn delete_generation(&self, read: &Generation) -> Result<DeleteOutcome, PortError> {
        let (user, id) = (&read.user_id, read.id.as_str());
        let mut inner = self.lock();
        let Some(all) = inner.generations.get_mut(user) else { return Ok(DeleteOutcome::NotFound) };
        match all.get(id) {
            None => Ok(DeleteOutcome::NotFound),
            Some(g) if g.status.in_flight() => Ok(DeleteOutcome::InFlight),
            Some(_) => Ok(all.remove(id).map_or(DeleteOutcome::NotFound, |g| DeleteOutcome::Deleted(Box::new(g)))),
        }
    }

    async fn claim(
        &self,
        job: &JobRef,
        token: &str,
        delivery: Option<&str>,
        claim_until: UnixTime,
        now: UnixTime,
    ) -> Result<ClaimOutcome, PortError> {
        let mut inner = self.lock();
        let Some(g) = inner.generation_mut(job) else { return Ok(ClaimOutcome::Missing) };
        if !g.claimable(delivery, now) {
            return Ok(ClaimOutcome::NotClaimable(g.clone()));
        }
        g.status = GenerationStatus::Processing;
        g.claim = Some(token.to_owned());
        g.claim_until = Some(claim_until);
        g.claim_delivery = delivery.map(str::to_owned);
        g.started_at = g.started_at.or(Some(now));
        g.attempts += 1;
        Ok(ClaimOutcome::Claimed(g.clone()))
    }

    async fn release(&self, job: &JobRef, token: &str, now: UnixTime) -> Result<(), PortError> {
        let mut inner = self.lock();
        if let Some(g) = inner.generation_mut(job) {
            if g.held_by(token) {
                g.claim_until = Some(now);
            }
        }
        Ok(())
    }

    async fn succeed(
        &self,
        job: &JobRef,
        token: &str,
        output_key: &str,
        timings: Timings,
        now: UnixTime,
    ) -> Result<Written, PortError> {
        Ok(self.lock().succeed_if(job, |g| g.held_by(token), output_key, timings, now))
    }

    async fn await_callback(
        &self,
        job: &JobRef,
        token: &str,
        prediction: &str,
        now: UnixTime,
    ) -> Result<Written, PortError> {
        let mut inner = self.lock();
        let Some(g) = inner.generation_mut(job) else { return Ok(Written::Conflict) };
        if !g.held_by(token) {
            return Ok(Written::Conflict);
        }
        g.prediction = Some(prediction.to_owned());
        g.claim = None;
        g.claim_until = Some(now);
        g.claim_delivery = None;
        Ok(Written::Yes)
    }

    async fn succeed_callback(
        &self,
        job: &JobRef,
        prediction: &str,
        output_key: &str,
        timings: Timings,
        now: UnixTime,
    ) -> Result<Written, PortError> {
        Ok(self.lock().succeed_if(job, |g| g.awaits(prediction), output_key, timings, now))
    }

    async fn fail_and_refund(
        &self,
        job: &JobRef,
        from: FailFrom,
        reason: &str,
        now: UnixTime,
    ) -> Result<FailOutcome, PortError> {
        let mut inner = self.lock();
        let Some(g) = inner.generation_mut(job) else { return Ok(FailOutcome::NotApplicable) };
        if !g.can_fail(&from) {
            return Ok(FailOutcome::NotApplicable);
        }
        // Everything that can fail first, so a failure changes nothing (as the DynamoDB transaction would).
        let amount = i64::try_from(g.credits_charged).map_err(|e| PortError::internal("generations", e))?;
        let id = g.id.clone();
        let balance = inner.balance(&job.user_id).unwrap_or(0);
        let entry = LedgerEntry::apply(LedgerKind::Refund, balance, amount, &id, now)
            .ok_or_else(|| PortError::internal("generations", "refund overflows the balance"))?;
        let Some(g) = inner.generation_mut(job) else { return Ok(FailOutcome::NotApplicable) };
        g.status = GenerationStatus::Failed;
        g.refunded = true;
        g.failure_reason = Some(reason.to_owned());
        g.completed_at = Some(now);
        g.claim = None;
        g.claim_until = None;
        let balance = inner.apply(&job.user_id, entry);
        inner.release_slot(&job.user_id);
        Ok(FailOutcome::Refunded { balance })
    }

    async fn overdue(
        &self,
        now: UnixTime,
        limit: usize,
        after: Option<&OverdueCursor>,
    ) -> Result<OverduePage, PortError> {
        let inner = self.lock();
        let position = |deadline: UnixTime, job: &JobRef| (deadline, job.generation_id.clone());
        let mut due: Vec<(UnixTime, JobRef)> = inner
            .generations
            .values()
            .flat_map(|g| g.values())
            .filter(|g| g.status.in_flight() && g.deadline <= now)
            .map(|g| (g.deadline, JobRef { user_id: g.user_id.clone(), generation_id: g.id.clone() }))
            .filter(|(deadline, job)| after.is_none_or(|a| position(*deadline, job) > (a.deadline, a.position.clone())))
            .collect();
        due.sort_by_key(|(deadline, job)| position(*deadline, job));
        let more = due.len() > limit;
        due.truncate(limit);
        let next = if more {
            due.last().map(|(deadline, job)| OverdueCursor { deadline: *deadline, position: job.generation_id.clone() })
        } else {
            None
        };
        Ok(OverduePage { jobs: due.into_iter().map(|(_, job)| job).collect(), next })
    }
}
