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
use aws_sdk_dynamodb::types::{AttributeValue, Delete, TransactWriteItem, Update};
use serde::{Deserialize, Serialize};

use super::accounts::user_pk;
use super::credits::{transact_item_put, Change, Decision};
use super::{from_item, key, n, s, sdk_error, to_item, DynamoStore};
use crate::domain::{Generation, GenerationStatus, LedgerEntry, LedgerKind, Timings, UnixTime, UserId};
use crate::ports::{
    ClaimOutcome, DeleteOutcome, FailFrom, FailOutcome, GenerationPage, GenerationStore, IdempotencyRecord, JobRef,
    NewGeneration, OverdueCursor, OverduePage, PortError, StartOutcome, Written,
};

pub(super) const WHAT: &str = "generations";
pub(super) const IN_FLIGHT: &str = "INFLIGHT";
/// The one partition of the sparse `Pending` index (in-flight jobs are few at any time).
pub(super) const PENDING: &str = "PENDING";
pub const PENDING_INDEX: &str = "Pending";
/// How long an idempotency key is remembered.
const IDEMPOTENCY_TTL_SECS: i64 = 24 * 3600;
/// Attempts at a claim or refund that lost a race with another writer of the same items.
pub(super) const MAX_ATTEMPTS: u32 = 12;

fn generation_sk(id: &str) -> String {
    format!("GEN#{id}")
}

fn idempotency_sk(key_hash: &str) -> String {
    format!("IDEM#{key_hash}")
}

/// `USER#<id> / GEN#<id>`.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct GenerationItem {
    pk: String,
    sk: String,
    /// `PENDING` while queued or processing, absent afterwards (the sparse index key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pending: Option<String>,
    #[serde(flatten)]
    pub(super) generation: Generation,
}

/// `USER#<id> / INFLIGHT`: the in-flight count (`count`) and the profile's counters of the user's generation
/// records and of those that succeeded, each changed in the transaction that changes what it counts.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct CountersItem {
    /// Signed: a record from before the counters was never counted, so deleting it can take one below zero
    /// (read as zero).
    #[serde(default)]
    pub(super) generations: i64,
    #[serde(default)]
    pub(super) succeeded: i64,
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

pub(super) fn build<T, E: std::error::Error + Send + Sync + 'static>(r: Result<T, E>) -> Result<T, PortError> {
    r.map_err(|e| PortError::internal(WHAT, e))
}

impl DynamoStore {
    pub(super) fn generation_key(&self, job: &JobRef) -> std::collections::HashMap<String, AttributeValue> {
        key(user_pk(&job.user_id), generation_sk(&job.generation_id))
    }

    /// Frees one of the user's in-flight slots (paired with a conditional status change, so once per job);
    /// a success is also counted in the profile's `succeeded`.
    pub(super) fn release_slot(&self, user: &UserId, succeeded: bool) -> Result<TransactWriteItem, PortError> {
        let expression = if succeeded { "ADD #count :minus, succeeded :one" } else { "ADD #count :minus" };
        let mut update = Update::builder()
            .table_name(&self.tables.generations)
            .set_key(Some(key(user_pk(user), IN_FLIGHT)))
            .update_expression(expression)
            .expression_attribute_names("#count", "count")
            .expression_attribute_values(":minus", n(-1));
        if succeeded {
            update = update.expression_attribute_values(":one", n(1));
        }
        Ok(TransactWriteItem::builder().update(build(update.build())?).build())
    }

    pub(super) async fn get_generation(&self, job: &JobRef) -> Result<Option<Generation>, PortError> {
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
                .update_expression("ADD #count :one, generations :one")
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

    async fn delete_generation(&self, read: &Generation) -> Result<DeleteOutcome, PortError> {
        let user = &read.user_id;
        let job = JobRef { user_id: user.clone(), generation_id: read.id.clone() };
        let mut found = read.clone();
        for attempt in 0..MAX_ATTEMPTS {
            // The counters' change depends on the status: the write is conditioned on the status it assumed.
            if attempt > 0 {
                match self.get_generation(&job).await? {
                    Some(now) => found = now,
                    None => return Ok(DeleteOutcome::NotFound),
                }
            }
            if found.status.in_flight() {
                return Ok(DeleteOutcome::InFlight);
            }
            let succeeded = found.status == GenerationStatus::Succeeded;
            let delete = build(
                Delete::builder()
                    .table_name(&self.tables.generations)
                    .set_key(Some(self.generation_key(&job)))
                    // Only the finished record as read; an in-flight one still holds credits and a worker.
                    .condition_expression("#status = :status")
                    .expression_attribute_names("#status", "status")
                    .expression_attribute_values(":status", s(found.status.as_str()))
                    .build(),
            )?;
            let mut counters = Update::builder()
                .table_name(&self.tables.generations)
                .set_key(Some(key(user_pk(user), IN_FLIGHT)))
                .expression_attribute_values(":minus", n(-1));
            counters = if succeeded {
                counters.update_expression("ADD generations :minus, succeeded :minus")
            } else {
                counters.update_expression("ADD generations :minus")
            };
            let items = vec![
                TransactWriteItem::builder().delete(delete).build(),
                TransactWriteItem::builder().update(build(counters.build())?).build(),
            ];
            match self.transact(WHAT, items).await? {
                None => return Ok(DeleteOutcome::Deleted(Box::new(found))),
                // Deleted or changed meanwhile, or a concurrent write: read again.
                Some(codes)
                    if codes
                        .iter()
                        .any(|c| matches!(c.as_deref(), Some("ConditionalCheckFailed" | "TransactionConflict"))) =>
                {
                    super::credits::backoff(attempt).await
                }
                Some(codes) => {
                    return Err(PortError::internal(WHAT, format!("generation delete cancelled: {codes:?}")))
                }
            }
        }
        Err(PortError::unavailable(WHAT, "generation delete kept conflicting; retry"))
    }

    async fn claim(
        &self,
        job: &JobRef,
        token: &str,
        delivery: Option<&str>,
        claim_until: UnixTime,
        now: UnixTime,
    ) -> Result<ClaimOutcome, PortError> {
        self.claim_job(job, token, delivery, claim_until, now).await
    }

    async fn release(&self, job: &JobRef, token: &str, now: UnixTime) -> Result<(), PortError> {
        self.release_job(job, token, now).await
    }

    async fn succeed(
        &self,
        job: &JobRef,
        token: &str,
        output_key: &str,
        timings: Timings,
        now: UnixTime,
    ) -> Result<Written, PortError> {
        self.succeed_job(job, &FailFrom::Claim(token.to_owned()), output_key, timings, now).await
    }

    async fn await_callback(
        &self,
        job: &JobRef,
        token: &str,
        prediction: &str,
        now: UnixTime,
    ) -> Result<Written, PortError> {
        self.await_job_callback(job, token, prediction, now).await
    }

    async fn succeed_callback(
        &self,
        job: &JobRef,
        prediction: &str,
        output_key: &str,
        timings: Timings,
        now: UnixTime,
    ) -> Result<Written, PortError> {
        self.succeed_job(job, &FailFrom::Callback(prediction.to_owned()), output_key, timings, now).await
    }

    async fn fail_and_refund(
        &self,
        job: &JobRef,
        from: FailFrom,
        reason: &str,
        now: UnixTime,
    ) -> Result<FailOutcome, PortError> {
        self.fail_job(job, from, reason, now).await
    }

    async fn overdue(
        &self,
        now: UnixTime,
        limit: usize,
        after: Option<&OverdueCursor>,
    ) -> Result<OverduePage, PortError> {
        self.overdue_jobs(now, limit, after).await
    }
}

/// Deployed: inserting the record into the generations table *is* the hand-off (its stream triggers the
/// worker), so there is nothing left to do.
pub struct TableStream;

impl crate::ports::Dispatcher for TableStream {
    fn dispatch(&self, _: JobRef) {}
}
