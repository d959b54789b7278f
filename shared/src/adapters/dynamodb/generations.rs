//! Generations, idempotency keys and in-flight counts (generations table), and the charge and refund
//! transactions that tie them to the credits table.
//!
//! - Start: one transaction of the balance (conditioned on the value read), the spend ledger entry, the
//!   idempotency record (`attribute_not_exists`), the in-flight counter (`count < max`) and the generation
//!   record. The record's insert is also the hand-off: the table's stream triggers the worker.
//! - Every terminal transition is conditioned on the record's status (and the worker's claim), and a failure's
//!   refund is in the same transaction as its status change, so credits come back exactly once.
//! - Queued and processing records carry `pending` and `deadline`, the keys of the sparse `Pending` index the
//!   reconciler reads; terminal transitions remove `pending`.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem, Update};
use serde::{Deserialize, Serialize};

use super::accounts::user_pk;
use super::credits::{backoff, transact_item_put, Change, Decision};
use super::{from_item, key, n, s, sdk_error, to_item, DynamoStore};
use crate::domain::{Generation, GenerationStatus, LedgerEntry, LedgerKind, Timings, UnixTime, UserId};
use crate::ports::{
    ClaimOutcome, DeleteOutcome, FailFrom, FailOutcome, GenerationPage, GenerationStore, IdempotencyRecord, JobRef,
    NewGeneration, OverdueCursor, OverduePage, PortError, StartOutcome, Written,
};

const WHAT: &str = "generations";
const IN_FLIGHT: &str = "INFLIGHT";
/// The one partition of the sparse `Pending` index (in-flight jobs are few at any time).
const PENDING: &str = "PENDING";
pub const PENDING_INDEX: &str = "Pending";
/// How long an idempotency key is remembered.
const IDEMPOTENCY_TTL_SECS: i64 = 24 * 3600;
/// Attempts at a claim or refund that lost a race with another writer of the same items.
const MAX_ATTEMPTS: u32 = 12;

fn generation_sk(id: &str) -> String {
    format!("GEN#{id}")
}

fn idempotency_sk(key_hash: &str) -> String {
    format!("IDEM#{key_hash}")
}

/// `USER#<id> / GEN#<id>`.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GenerationItem {
    pk: String,
    sk: String,
    /// `PENDING` while queued or processing, absent afterwards (the sparse index key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pending: Option<String>,
    #[serde(flatten)]
    generation: Generation,
}

/// `USER#<id> / IDEM#<sha256(key)>`.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct IdempotencyItem {
    pk: String,
    sk: String,
    request_hash: String,
    generation_id: String,
    balance: u64,
    created_at: UnixTime,
    ttl: UnixTime,
}

impl IdempotencyItem {
    fn record(self) -> IdempotencyRecord {
        let key_hash = self.sk.strip_prefix("IDEM#").unwrap_or_default().to_owned();
        IdempotencyRecord {
            key_hash,
            request_hash: self.request_hash,
            generation_id: self.generation_id,
            balance: self.balance,
            created_at: self.created_at,
        }
    }
}

fn build<T, E: std::error::Error + Send + Sync + 'static>(r: Result<T, E>) -> Result<T, PortError> {
    r.map_err(|e| PortError::internal(WHAT, e))
}

impl DynamoStore {
    fn generation_key(&self, job: &JobRef) -> std::collections::HashMap<String, AttributeValue> {
        key(user_pk(&job.user_id), generation_sk(&job.generation_id))
    }

    /// Frees one of the user's in-flight slots (paired with a conditional status change, so once per job).
    fn release_slot(&self, user: &UserId) -> Result<TransactWriteItem, PortError> {
        let update = build(
            Update::builder()
                .table_name(&self.tables.generations)
                .set_key(Some(key(user_pk(user), IN_FLIGHT)))
                .update_expression("ADD #count :minus")
                .expression_attribute_names("#count", "count")
                .expression_attribute_values(":minus", n(-1))
                .build(),
        )?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    async fn get_generation(&self, job: &JobRef) -> Result<Option<Generation>, PortError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.tables.generations)
            .set_key(Some(self.generation_key(job)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error(WHAT, e))?;
        Ok(out.item.map(|i| from_item::<GenerationItem>(WHAT, i)).transpose()?.map(|g| g.generation))
    }
}

#[async_trait]
impl GenerationStore for DynamoStore {
    async fn start_generation(&self, new: &NewGeneration, now: UnixTime) -> Result<StartOutcome, PortError> {
        let g = &new.generation;
        let user = &g.user_id;
        let cost = i64::try_from(g.credits_charged).map_err(|e| PortError::internal(WHAT, e))?;
        let record = GenerationItem {
            pk: user_pk(user),
            sk: generation_sk(&g.id),
            pending: Some(PENDING.to_owned()),
            generation: g.clone(),
        };
        let record = to_item(WHAT, &record)?;
        let slot = build(
            Update::builder()
                .table_name(&self.tables.generations)
                .set_key(Some(key(user_pk(user), IN_FLIGHT)))
                .update_expression("ADD #count :one")
                .condition_expression("attribute_not_exists(#count) OR #count < :max")
                .expression_attribute_names("#count", "count")
                .expression_attribute_values(":one", n(1))
                .expression_attribute_values(":max", n(new.max_in_flight))
                .build(),
        )?;
        let change = self
            .change_balance_from(
                user,
                now,
                new.balance_read,
                |entry| {
                    let idempotency = IdempotencyItem {
                        pk: user_pk(user),
                        sk: idempotency_sk(&new.idempotency.key_hash),
                        request_hash: new.idempotency.request_hash.clone(),
                        generation_id: g.id.clone(),
                        balance: entry.balance_after,
                        created_at: now,
                        ttl: now + IDEMPOTENCY_TTL_SECS,
                    };
                    // Order matters: when several conditions fail, the first failed extra decides the answer,
                    // and a used key outranks a full slot count.
                    Ok(vec![
                        transact_item_put(
                            &self.tables.generations,
                            to_item(WHAT, &idempotency)?,
                            "attribute_not_exists(pk)",
                        )?,
                        TransactWriteItem::builder().update(slot.clone()).build(),
                        transact_item_put(&self.tables.generations, record.clone(), "attribute_not_exists(pk)")?,
                    ])
                },
                |balance| {
                    let balance = balance.unwrap_or(0);
                    match LedgerEntry::apply(LedgerKind::Spend, balance, -cost, &g.id, now) {
                        Some(entry) => {
                            let after = entry.balance_after;
                            Decision::Apply { entry, then: StartOutcome::Started { balance: after } }
                        }
                        None => Decision::Stop(StartOutcome::Insufficient { balance }),
                    }
                },
            )
            .await?;
        match change {
            Change::Applied(outcome) | Change::Stopped(outcome) => Ok(outcome),
            Change::ExtraFailed(0) => match self.idempotency_record(user, &new.idempotency.key_hash).await? {
                Some(record) => Ok(StartOutcome::KeyUsed(record)),
                // Written and expired between the transaction and the read: vanishingly rare, and retryable.
                None => Err(PortError::unavailable(WHAT, "idempotency record vanished; retry")),
            },
            Change::ExtraFailed(1) => Ok(StartOutcome::TooManyInFlight),
            Change::ExtraFailed(_) => Err(PortError::internal(WHAT, "a new generation id already existed")),
        }
    }

    async fn idempotency_record(&self, user: &UserId, key_hash: &str) -> Result<Option<IdempotencyRecord>, PortError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.tables.generations)
            .set_key(Some(key(user_pk(user), idempotency_sk(key_hash))))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error(WHAT, e))?;
        Ok(out.item.map(|i| from_item::<IdempotencyItem>(WHAT, i)).transpose()?.map(IdempotencyItem::record))
    }

    async fn generation(&self, user: &UserId, id: &str) -> Result<Option<Generation>, PortError> {
        self.get_generation(&JobRef { user_id: user.clone(), generation_id: id.to_owned() }).await
    }

    async fn generations_page(
        &self,
        user: &UserId,
        limit: usize,
        before: Option<&str>,
    ) -> Result<GenerationPage, PortError> {
        let (items, more) = self
            .newest_first_page(WHAT, &self.tables.generations, user_pk(user), "GEN#", limit, before.map(generation_sk))
            .await?;
        let items = items
            .into_iter()
            .map(|i| from_item::<GenerationItem>(WHAT, i).map(|g| g.generation))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(GenerationPage { items, more })
    }

    async fn delete_generation(&self, user: &UserId, id: &str) -> Result<DeleteOutcome, PortError> {
        let job = JobRef { user_id: user.clone(), generation_id: id.to_owned() };
        let result = self
            .client
            .delete_item()
            .table_name(&self.tables.generations)
            .set_key(Some(self.generation_key(&job)))
            // Only a finished record; an in-flight one still holds credits and a worker.
            .condition_expression("attribute_exists(pk) AND #status IN (:succeeded, :failed)")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":succeeded", s("succeeded"))
            .expression_attribute_values(":failed", s("failed"))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
            .send()
            .await;
        match result {
            Ok(out) => match out.attributes {
                Some(item) => Ok(DeleteOutcome::Deleted(Box::new(from_item::<GenerationItem>(WHAT, item)?.generation))),
                None => Ok(DeleteOutcome::NotFound),
            },
            Err(e) if e.as_service_error().is_some_and(|se| se.is_conditional_check_failed_exception()) => {
                Ok(match self.get_generation(&job).await? {
                    None => DeleteOutcome::NotFound,
                    Some(_) => DeleteOutcome::InFlight,
                })
            }
            Err(e) => Err(sdk_error(WHAT, e)),
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
        let update =
            self.client.update_item().table_name(&self.tables.generations).set_key(Some(self.generation_key(job)));
        // A redelivery of the record the claim was taken for may take it over at once (the invocation that
        // had it is over); any other delivery waits for the claim to run out.
        let update = match delivery {
            Some(delivery) => update
                .update_expression(
                    "SET #status = :processing, claim = :token, claimUntil = :until, claimDelivery = :delivery, \
                     startedAt = if_not_exists(startedAt, :now) ADD attempts :one",
                )
                .condition_expression(
                    "attribute_exists(pk) AND deadline > :now AND (#status = :queued OR (#status = :processing \
                     AND (claimUntil <= :now OR claimDelivery = :delivery)))",
                )
                .expression_attribute_values(":delivery", s(delivery)),
            None => update
                .update_expression(
                    "SET #status = :processing, claim = :token, claimUntil = :until, \
                     startedAt = if_not_exists(startedAt, :now) REMOVE claimDelivery ADD attempts :one",
                )
                .condition_expression(
                    "attribute_exists(pk) AND deadline > :now \
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

    async fn release(&self, job: &JobRef, token: &str, now: UnixTime) -> Result<(), PortError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.tables.generations)
            .set_key(Some(self.generation_key(job)))
            .update_expression("SET claimUntil = :now")
            .condition_expression("#status = :processing AND claim = :token")
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

    async fn succeed(
        &self,
        job: &JobRef,
        token: &str,
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
                    .condition_expression("#status = :processing AND claim = :token")
                    .expression_attribute_names("#status", "status")
                    .expression_attribute_values(":succeeded", s("succeeded"))
                    .expression_attribute_values(":processing", s("processing"))
                    .expression_attribute_values(":token", s(token))
                    .expression_attribute_values(":output", s(output_key))
                    .expression_attribute_values(":now", n(now))
                    .expression_attribute_values(":timings", timings.clone())
                    .build(),
            )?;
            let items = vec![TransactWriteItem::builder().update(update).build(), self.release_slot(&job.user_id)?];
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

    async fn fail_and_refund(
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
            let eligible = generation.status.in_flight()
                && match &from {
                    FailFrom::Claim(token) => {
                        generation.status == GenerationStatus::Processing && generation.claim.as_deref() == Some(token)
                    }
                    FailFrom::DeadlinePassed(at) => {
                        generation.deadline <= *at
                            && (generation.status == GenerationStatus::Queued
                                || generation.claim_until.is_some_and(|until| until <= *at))
                    }
                };
            if !eligible {
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
            update = match &from {
                FailFrom::Claim(token) => update
                    .condition_expression("#status = :processing AND claim = :token")
                    .expression_attribute_values(":token", s(token)),
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
                            self.release_slot(&job.user_id)?,
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

    async fn overdue(
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

/// The keys of a row of the `Pending` index (its own and the table's).
#[derive(Serialize, Deserialize)]
struct PendingKey {
    pk: String,
    sk: String,
    pending: String,
    deadline: UnixTime,
}
