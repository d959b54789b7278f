//! The job transitions of the generations table: a worker's claim, release and success, a failure with its
//! refund (one transaction with the balance), and the reconciler's read of overdue jobs. Each write's
//! condition is the domain rule it implements (`Generation::claimable`, `held_by`, `can_fail`), and
//! tests/rules.rs holds the two to the same cases.

use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem, Update};
use serde::{Deserialize, Serialize};

use super::credits::{backoff, Change, Decision};
use super::generations::{build, GenerationItem, MAX_ATTEMPTS, PENDING, PENDING_INDEX, WHAT};
use super::{from_item, n, s, sdk_error, to_item, DynamoStore};
use crate::domain::{FailFrom, LedgerEntry, LedgerKind, Timings, UnixTime, UserId};
use crate::ports::{ClaimOutcome, FailOutcome, JobRef, OverdueCursor, OverduePage, PortError, Written};

/// The keys of a row of the `Pending` index (its own and the table's).
#[derive(Serialize, Deserialize)]
struct PendingKey {
    pk: String,
    sk: String,
    pending: String,
    deadline: UnixTime,
}

/// The claim token or prediction a success is conditioned on.
fn finisher(by: &FailFrom) -> Result<&str, PortError> {
    match by {
        FailFrom::Claim(token) => Ok(token),
        FailFrom::Callback(prediction) => Ok(prediction),
        FailFrom::DeadlinePassed(_) => Err(PortError::internal(WHAT, "the reconciler never succeeds a job")),
    }
}

impl DynamoStore {
    /// See `GenerationStore::claim`.
    pub(super) async fn claim_job(
        &self,
        job: &JobRef,
        token: &str,
        delivery: Option<&str>,
        claim_until: UnixTime,
        now: UnixTime,
    ) -> Result<ClaimOutcome, PortError> {
        let update =
            self.client.update_item().table_name(&self.tables.generations).set_key(Some(self.generation_key(job)));
        // The condition is `Generation::claimable` (domain/generation.rs) written for DynamoDB, one form with a
        // delivery and one without; tests/rules.rs holds them to the rule. A redelivery of the record the
        // claim was taken for may take it over at once (the invocation that had it is over); any other
        // delivery waits for the claim to run out.
        let update = match delivery {
            Some(delivery) => update
                .update_expression(
                    "SET #status = :processing, claim = :token, claimUntil = :until, claimDelivery = :delivery, \
                     startedAt = if_not_exists(startedAt, :now) ADD attempts :one",
                )
                .condition_expression(
                    "attribute_exists(pk) AND deadline > :now AND attribute_not_exists(prediction) \
                     AND (#status = :queued OR (#status = :processing \
                     AND (claimUntil <= :now OR claimDelivery = :delivery)))",
                )
                .expression_attribute_values(":delivery", s(delivery)),
            None => update
                .update_expression(
                    "SET #status = :processing, claim = :token, claimUntil = :until, \
                     startedAt = if_not_exists(startedAt, :now) REMOVE claimDelivery ADD attempts :one",
                )
                .condition_expression(
                    "attribute_exists(pk) AND deadline > :now AND attribute_not_exists(prediction) \
                     AND (#status = :queued OR (#status = :processing AND claimUntil <= :now))",
                ),
        };
        let result = update
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":processing", s("processing"))
            .expression_attribute_values(":queued", s("queued"))
            .expression_attribute_values(":token", s(token))
            .expression_attribute_values(":until", n(claim_until))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":one", n(1))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew)
            .send()
            .await;
        match result {
            Ok(out) => match out.attributes {
                Some(item) => Ok(ClaimOutcome::Claimed(from_item::<GenerationItem>(WHAT, item)?.generation)),
                None => Err(PortError::internal(WHAT, "claim returned no record")),
            },
            Err(e) if e.as_service_error().is_some_and(|se| se.is_conditional_check_failed_exception()) => {
                Ok(match self.get_generation(job).await? {
                    None => ClaimOutcome::Missing,
                    Some(g) => ClaimOutcome::NotClaimable(g),
                })
            }
            Err(e) => Err(sdk_error(WHAT, e)),
        }
    }

    /// See `GenerationStore::release`.
    pub(super) async fn release_job(&self, job: &JobRef, token: &str, now: UnixTime) -> Result<(), PortError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.tables.generations)
            .set_key(Some(self.generation_key(job)))
            .update_expression("SET claimUntil = :now")
            .condition_expression("#status = :processing AND claim = :token") // Generation::held_by
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":processing", s("processing"))
            .expression_attribute_values(":token", s(token))
            .expression_attribute_values(":now", n(now))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // Finished or taken over meanwhile: nothing of ours to give up.
            Err(e) if e.as_service_error().is_some_and(|se| se.is_conditional_check_failed_exception()) => Ok(()),
            Err(e) => Err(sdk_error(WHAT, e)),
        }
    }

    /// See `GenerationStore::await_callback`.
    pub(super) async fn await_job_callback(
        &self,
        job: &JobRef,
        token: &str,
        prediction: &str,
        now: UnixTime,
    ) -> Result<Written, PortError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.tables.generations)
            .set_key(Some(self.generation_key(job)))
            .update_expression("SET prediction = :prediction, claimUntil = :now REMOVE claim, claimDelivery")
            .condition_expression("#status = :processing AND claim = :token") // Generation::held_by
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":processing", s("processing"))
            .expression_attribute_values(":token", s(token))
            .expression_attribute_values(":prediction", s(prediction))
            .expression_attribute_values(":now", n(now))
            .send()
            .await;
        match result {
            Ok(_) => Ok(Written::Yes),
            Err(e) if e.as_service_error().is_some_and(|se| se.is_conditional_check_failed_exception()) => {
                Ok(Written::Conflict)
            }
            Err(e) => Err(sdk_error(WHAT, e)),
        }
    }

    /// See `GenerationStore::succeed` (`by` a claim) and `GenerationStore::succeed_callback` (`by` a callback).
    pub(super) async fn succeed_job(
        &self,
        job: &JobRef,
        by: &FailFrom,
        output_key: &str,
        timings: Timings,
        now: UnixTime,
    ) -> Result<Written, PortError> {
        let timings: AttributeValue =
            serde_dynamo::to_attribute_value(timings).map_err(|e| PortError::internal(WHAT, e))?;
        for attempt in 1..=MAX_ATTEMPTS {
            let update = build(
                Update::builder()
                    .table_name(&self.tables.generations)
                    .set_key(Some(self.generation_key(job)))
                    .update_expression(
                        "SET #status = :succeeded, outputKey = :output, completedAt = :now, timings = :timings \
                         REMOVE pending, claim, claimUntil",
                    )
                    .condition_expression(match by {
                        FailFrom::Callback(_) => "#status = :processing AND prediction = :by", // Generation::awaits
                        _ => "#status = :processing AND claim = :by",                          // Generation::held_by
                    })
                    .expression_attribute_names("#status", "status")
                    .expression_attribute_values(":succeeded", s("succeeded"))
                    .expression_attribute_values(":processing", s("processing"))
                    .expression_attribute_values(":by", s(finisher(by)?))
                    .expression_attribute_values(":output", s(output_key))
                    .expression_attribute_values(":now", n(now))
                    .expression_attribute_values(":timings", timings.clone())
                    .build(),
            )?;
            let items =
                vec![TransactWriteItem::builder().update(update).build(), self.release_slot(&job.user_id, true)?];
            match self.transact(WHAT, items).await? {
                None => return Ok(Written::Yes),
                Some(codes) if codes.first().and_then(Option::as_deref) == Some("ConditionalCheckFailed") => {
                    return Ok(Written::Conflict)
                }
                // A concurrent transaction on the counter: try again.
                Some(_) => backoff(attempt).await,
            }
        }
        Err(PortError::unavailable(WHAT, "completion kept conflicting; gave up after retries"))
    }

    /// See `GenerationStore::fail_and_refund`.
    pub(super) async fn fail_job(
        &self,
        job: &JobRef,
        from: FailFrom,
        reason: &str,
        now: UnixTime,
    ) -> Result<FailOutcome, PortError> {
        for attempt in 1..=MAX_ATTEMPTS {
            let Some(generation) = self.get_generation(job).await? else {
                return Ok(FailOutcome::NotApplicable);
            };
            // Read first so a refusal costs no transaction; the conditions below hold the rule at the write.
            if !generation.can_fail(&from) {
                return Ok(FailOutcome::NotApplicable);
            }
            let mut update = Update::builder()
                .table_name(&self.tables.generations)
                .set_key(Some(self.generation_key(job)))
                .update_expression(
                    "SET #status = :failed, refunded = :true, failureReason = :reason, completedAt = :now \
                     REMOVE pending, claim, claimUntil",
                )
                .expression_attribute_names("#status", "status")
                .expression_attribute_values(":failed", s("failed"))
                .expression_attribute_values(":true", AttributeValue::Bool(true))
                .expression_attribute_values(":reason", s(reason))
                .expression_attribute_values(":now", n(now))
                .expression_attribute_values(":processing", s("processing"));
            // `Generation::can_fail` (domain/generation.rs) written for DynamoDB; tests/rules.rs holds the two
            // to the same cases.
            update = match &from {
                FailFrom::Claim(token) => update
                    .condition_expression("#status = :processing AND claim = :token")
                    .expression_attribute_values(":token", s(token)),
                FailFrom::Callback(prediction) => update
                    .condition_expression("#status = :processing AND prediction = :prediction")
                    .expression_attribute_values(":prediction", s(prediction)),
                FailFrom::DeadlinePassed(at) => update
                    .condition_expression(
                        "deadline <= :at AND (#status = :queued OR (#status = :processing AND claimUntil <= :at))",
                    )
                    .expression_attribute_values(":queued", s("queued"))
                    .expression_attribute_values(":at", n(*at)),
            };
            let update = build(update.build())?;
            let amount = i64::try_from(generation.credits_charged).map_err(|e| PortError::internal(WHAT, e))?;
            let change = self
                .change_balance(
                    &job.user_id,
                    now,
                    |_| {
                        Ok(vec![
                            TransactWriteItem::builder().update(update.clone()).build(),
                            self.release_slot(&job.user_id, false)?,
                        ])
                    },
                    |balance| match LedgerEntry::apply(
                        LedgerKind::Refund,
                        balance.unwrap_or(0),
                        amount,
                        &generation.id,
                        now,
                    ) {
                        Some(entry) => {
                            let after = entry.balance_after;
                            Decision::Apply { entry, then: after }
                        }
                        None => Decision::Stop(0),
                    },
                )
                .await?;
            match change {
                Change::Applied(balance) => return Ok(FailOutcome::Refunded { balance }),
                Change::Stopped(_) => return Err(PortError::internal(WHAT, "refund overflows the balance")),
                // The record changed under us (finished, or claimed anew): look again.
                Change::ExtraFailed(_) => backoff(attempt).await,
            }
        }
        Err(PortError::unavailable(WHAT, "refund kept conflicting; gave up after retries"))
    }

    /// See `GenerationStore::overdue`.
    pub(super) async fn overdue_jobs(
        &self,
        now: UnixTime,
        limit: usize,
        after: Option<&OverdueCursor>,
    ) -> Result<OverduePage, PortError> {
        // The position is the row's `pk` and `sk` as DynamoDB gave them, joined by a unit separator.
        let start = match after.map(|a| (a.deadline, a.position.split_once('\u{1f}'))) {
            Some((deadline, Some((pk, sk)))) => Some(to_item(
                WHAT,
                &PendingKey { pk: pk.to_owned(), sk: sk.to_owned(), pending: PENDING.to_owned(), deadline },
            )?),
            Some((_, None)) => return Err(PortError::internal(WHAT, "not a cursor of the pending index")),
            None => None,
        };
        let out = self
            .client
            .query()
            .table_name(&self.tables.generations)
            .index_name(PENDING_INDEX)
            .key_condition_expression("pending = :pending AND deadline <= :now")
            .expression_attribute_values(":pending", s(PENDING))
            .expression_attribute_values(":now", n(now))
            .limit(i32::try_from(limit).unwrap_or(i32::MAX))
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|e| sdk_error(WHAT, e))?;
        let job_of = |k: &PendingKey| {
            let user_id = UserId::parse(k.pk.strip_prefix("USER#")?).ok()?;
            Some(JobRef { user_id, generation_id: k.sk.strip_prefix("GEN#")?.to_owned() })
        };
        // The page ends where DynamoDB stopped reading: kept as it is, so that a malformed last row (skipped
        // below) does not stop the paging at it.
        let next = match out.last_evaluated_key {
            Some(key) => {
                let key: PendingKey = from_item(WHAT, key)?;
                Some(OverdueCursor { deadline: key.deadline, position: format!("{}\u{1f}{}", key.pk, key.sk) })
            }
            None => None,
        };
        // A malformed key is logged and skipped: one bad row must not stop every refund behind it.
        let jobs = out
            .items
            .unwrap_or_default()
            .into_iter()
            .filter_map(|item| {
                let key: Option<PendingKey> = from_item(WHAT, item).ok();
                let job = key.as_ref().and_then(job_of);
                if job.is_none() {
                    tracing::error!(key = ?key.map(|k| k.sk), "malformed key in the pending index; skipped");
                }
                job
            })
            .collect();
        Ok(OverduePage { jobs, next })
    }
}
