//! Generations, their idempotency keys and in-flight counts (adapters/dynamodb/generations.rs).

use async_trait::async_trait;

use super::{PortError, Written};
use crate::domain::{Generation, Timings, UnixTime, UserId};

/// What an `Idempotency-Key` was first used for, kept for a day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRecord {
    /// SHA-256 of the key, hex (the key itself is never stored).
    pub key_hash: String,
    /// SHA-256 of the request it came with (method, path and canonical body), hex.
    pub request_hash: String,
    /// The generation that request started.
    pub generation_id: String,
    /// The balance right after the charge: part of the original response.
    pub balance: u64,
    pub created_at: UnixTime,
}

/// A generation about to be started.
#[derive(Debug, Clone)]
pub struct NewGeneration {
    pub generation: Generation,
    pub idempotency: IdempotencyRecord,
    /// Refuse when the user already has this many generations queued or processing.
    pub max_in_flight: u32,
    /// The balance as read just before (beside the request's other reads), to charge from without reading
    /// it again; `None` makes the store read it.
    pub balance_read: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartOutcome {
    /// Charged, recorded and handed to the worker; the balance after the charge.
    Started {
        balance: u64,
    },
    Insufficient {
        balance: u64,
    },
    TooManyInFlight,
    /// The idempotency key was used before (maybe with another request: compare the hashes).
    KeyUsed(IdempotencyRecord),
}

/// A page of a user's generations, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenerationPage {
    pub items: Vec<Generation>,
    pub more: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimOutcome {
    /// The job is ours until `claim_until`; the record as it now is.
    Claimed(Generation),
    /// Finished, or held by another live claim: nothing to do.
    NotClaimable(Generation),
    Missing,
}

pub use crate::domain::FailFrom;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailOutcome {
    /// Marked failed and the credits given back; the balance after the refund.
    Refunded { balance: u64 },
    /// The job had already finished (or is held by someone else): nothing changed.
    NotApplicable,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeleteOutcome {
    /// The record is gone; the caller deletes its objects.
    Deleted(Box<Generation>),
    NotFound,
    /// Still queued or processing: it cannot be deleted until it finishes.
    InFlight,
}

/// A page of overdue jobs; `next` is where the following page starts (`None`: this was the last).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverduePage {
    pub jobs: Vec<JobRef>,
    pub next: Option<OverdueCursor>,
}

/// Where a page of overdue jobs ended: the last row's deadline and the store's own key of that row (opaque:
/// kept as the store gave it, so that a row the store cannot read as a job still moves the paging on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverdueCursor {
    pub deadline: UnixTime,
    pub position: String,
}

/// A stuck job the reconciler should look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRef {
    pub user_id: UserId,
    pub generation_id: String,
}

impl JobRef {
    /// `<userId>.<generationId>`: how a job is named to a provider that calls back (Replicate's webhook URL,
    /// OpenAI's response metadata).
    pub fn reference(&self) -> String {
        format!("{}.{}", self.user_id, self.generation_id)
    }

    /// The job a [`JobRef::reference`] names; `None` for anything else.
    pub fn from_reference(text: &str) -> Option<Self> {
        let (user, generation) = text.split_once('.')?;
        let user_id = UserId::parse(user).ok()?;
        let generation_id = ulid::Ulid::from_string(generation).ok()?.to_string();
        Some(Self { user_id, generation_id })
    }
}

/// Generations, their idempotency keys and each user's in-flight count. Starting one charges the credits in
/// the same transaction; failing one refunds them in the same transaction as the status change, so a refund
/// happens exactly once.
#[async_trait]
pub trait GenerationStore: Send + Sync {
    /// In one transaction: charge the cost (with its ledger entry), record the generation (queued), record
    /// the idempotency key, take an in-flight slot.
    async fn start_generation(&self, new: &NewGeneration, now: UnixTime) -> Result<StartOutcome, PortError>;
    async fn idempotency_record(&self, user: &UserId, key_hash: &str) -> Result<Option<IdempotencyRecord>, PortError>;
    async fn generation(&self, user: &UserId, id: &str) -> Result<Option<Generation>, PortError>;
    /// At most `limit` generations older than `before` (a generation id), newest first.
    async fn generations_page(
        &self,
        user: &UserId,
        limit: usize,
        before: Option<&str>,
    ) -> Result<GenerationPage, PortError>;
    /// Deletes a finished generation's record (with the profile's counters of it), given the caller's read of
    /// it: the store writes from that read, and reads again only when the record changed meanwhile.
    async fn delete_generation(&self, read: &Generation) -> Result<DeleteOutcome, PortError>;
    /// Takes the job for a worker: queued, or processing under a claim that ran out or that was taken for
    /// the same `delivery` (a redelivery after a crash); never past its deadline (the reconciler fails and
    /// refunds those).
    async fn claim(
        &self,
        job: &JobRef,
        token: &str,
        delivery: Option<&str>,
        claim_until: UnixTime,
        now: UnixTime,
    ) -> Result<ClaimOutcome, PortError>;
    /// Gives up a claim at once (after an infrastructure error), so a redelivery of the job can take it.
    async fn release(&self, job: &JobRef, token: &str, now: UnixTime) -> Result<(), PortError>;
    /// Marks a job the worker holds succeeded and frees its in-flight slot; `Conflict` when the claim was
    /// lost (the job was failed by the reconciler meanwhile).
    async fn succeed(
        &self,
        job: &JobRef,
        token: &str,
        output_key: &str,
        timings: Timings,
        now: UnixTime,
    ) -> Result<Written, PortError>;
    /// Hands the job the worker holds to a provider that calls back: records the provider's `prediction` and
    /// gives up the claim, in one conditional write. From then on no worker claims the job; the callback of that
    /// prediction finishes it ([`GenerationStore::succeed_callback`], or `fail_and_refund` with
    /// `FailFrom::Callback`), or the reconciler fails it at the deadline. `Conflict` when the claim was lost.
    async fn await_callback(
        &self,
        job: &JobRef,
        token: &str,
        prediction: &str,
        now: UnixTime,
    ) -> Result<Written, PortError>;
    /// Marks a job that awaits the callback of `prediction` succeeded (as `succeed` does for a claim);
    /// `Conflict` when it awaits nothing of the kind (finished, failed by the reconciler, another prediction).
    async fn succeed_callback(
        &self,
        job: &JobRef,
        prediction: &str,
        output_key: &str,
        timings: Timings,
        now: UnixTime,
    ) -> Result<Written, PortError>;
    /// Marks the job failed with `reason`, gives the credits back with a refund ledger entry and frees its
    /// in-flight slot, all in one transaction, once.
    async fn fail_and_refund(
        &self,
        job: &JobRef,
        from: FailFrom,
        reason: &str,
        now: UnixTime,
    ) -> Result<FailOutcome, PortError>;
    /// At most `limit` jobs still queued or processing whose deadline is at or before `now`, oldest deadline
    /// first, continuing after `after` (the previous page's `next`).
    async fn overdue(
        &self,
        now: UnixTime,
        limit: usize,
        after: Option<&OverdueCursor>,
    ) -> Result<OverduePage, PortError>;
}

/// Hands a started generation to the worker.
pub trait Dispatcher: Send + Sync {
    fn dispatch(&self, job: JobRef);
}
