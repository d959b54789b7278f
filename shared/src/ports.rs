//! Narrow traits, one per capability. Services and handlers ask only for the ports they use; each has a
//! DynamoDB (or AWS/HTTP) adapter and an in-memory adapter that pass the same contract tests.

use std::sync::Arc;

use async_trait::async_trait;
use secrecy::SecretSlice;

use crate::domain::{
    Category, Generation, GenerationSpec, LedgerEntry, OtpRecord, PhoneNumber, Template, TemplateId, Timings, UnixTime,
    UserAccount, UserId,
};

/// A failure of the storage or network underneath a port: logged with its cause, shown as a 500/503.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    /// The backing service could not be reached or throttled us; worth retrying later.
    #[error("{what} unavailable: {source}")]
    Unavailable { what: &'static str, source: Box<dyn std::error::Error + Send + Sync> },
    /// Anything else: a bug, a misconfiguration, corrupt data.
    #[error("{what}: {source}")]
    Internal { what: &'static str, source: Box<dyn std::error::Error + Send + Sync> },
}

impl PortError {
    pub fn internal(what: &'static str, source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Internal { what, source: source.into() }
    }
    pub fn unavailable(what: &'static str, source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Unavailable { what, source: source.into() }
    }
}

/// The time, injectable so tests can move it.
pub trait Clock: Send + Sync {
    fn now(&self) -> UnixTime;
}

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> UnixTime {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
    }
}

/// The server's key material, fetched once per container (from Secrets Manager when deployed).
#[derive(Clone)]
pub struct AppKeys {
    /// Access-token signing keys, the current one first. Tokens are signed with the first and verified with
    /// any, which is how the signing key rotates without signing everyone out.
    pub access: Vec<SigningKey>,
    /// Keys of the HMAC that one-time codes are stored under, the current one first (codes are hashed with it
    /// and checked against each, so a code texted just before a rotation still signs in).
    pub otp: Vec<SecretSlice<u8>>,
    /// Keys of the MAC on pagination cursors, the current one first (a cursor issued before a key rotation
    /// stays good).
    pub cursor: Vec<SecretSlice<u8>>,
}

#[derive(Clone)]
pub struct SigningKey {
    /// Short public id of the key, carried in the token header.
    pub kid: String,
    pub secret: SecretSlice<u8>,
}

impl std::fmt::Debug for AppKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kids: Vec<&str> = self.access.iter().map(|k| k.kid.as_str()).collect();
        f.debug_struct("AppKeys").field("access_kids", &kids).finish_non_exhaustive()
    }
}

#[async_trait]
pub trait KeyProvider: Send + Sync {
    async fn keys(&self) -> Result<Arc<AppKeys>, PortError>;
}

/// Sends a text message. The body holds a code: adapters never log it.
#[async_trait]
pub trait SmsSender: Send + Sync {
    async fn send(&self, to: &PhoneNumber, body: &str) -> Result<(), PortError>;
}

/// What happened to an attempt to use a one-time code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// One attempt was used up; the record as it is now (attempts already counted).
    Reserved(OtpRecord),
    NoCode,
    Used,
    Expired,
    Exhausted,
}

/// Whether a conditional write took effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    Yes,
    /// Someone else changed the item first (the condition failed).
    Conflict,
}

/// One-time codes and their send history, one record per phone number.
#[async_trait]
pub trait OtpStore: Send + Sync {
    async fn load(&self, phone: &PhoneNumber) -> Result<Option<OtpRecord>, PortError>;
    /// Stores `record` if the stored version is still `expected_version` (0: no record yet).
    async fn replace(&self, record: &OtpRecord, expected_version: u64) -> Result<Written, PortError>;
    /// Atomically uses up one attempt of the live code, refusing when it is used, expired or out of attempts.
    async fn reserve_attempt(
        &self,
        phone: &PhoneNumber,
        max_attempts: u32,
        now: UnixTime,
    ) -> Result<AttemptOutcome, PortError>;
    /// Marks code `code_id` used if it is still the live, unused code.
    async fn consume(&self, phone: &PhoneNumber, code_id: &str) -> Result<Written, PortError>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateDecision {
    Allowed,
    Limited { retry_after_secs: u64 },
}

/// Fixed-window counters with an atomic, conditional increment.
#[async_trait]
pub trait RateLimiter: Send + Sync {
    async fn hit(&self, key: &str, window_secs: i64, limit: u32, now: UnixTime) -> Result<RateDecision, PortError>;
}

/// A user about to be created at first sign-in.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub id: UserId,
    pub phone: PhoneNumber,
    pub created_at: UnixTime,
    pub starter_grant: Option<LedgerEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateOutcome {
    Created(UserAccount),
    /// The number already belongs to this user (a concurrent first sign-in won).
    PhoneTaken(UserId),
}

/// Users: profile, phone index and credit balance.
#[async_trait]
pub trait AccountStore: Send + Sync {
    async fn find_by_phone(&self, phone: &PhoneNumber) -> Result<Option<UserId>, PortError>;
    async fn get_user(&self, id: &UserId) -> Result<Option<UserAccount>, PortError>;
    /// Creates the user, its phone index entry, its balance and the starter grant's ledger entry in one
    /// transaction, only if the phone number has no user yet.
    async fn create_user(&self, user: &NewUser) -> Result<CreateOutcome, PortError>;
    /// Sets or clears the display name; `None` when the user does not exist.
    async fn set_display_name(&self, id: &UserId, name: Option<&str>) -> Result<Option<UserAccount>, PortError>;
    /// Revokes every refresh-token family created at or before `at`.
    async fn revoke_sessions(&self, id: &UserId, at: UnixTime) -> Result<(), PortError>;
    /// Records that the account is being deleted (a tombstone keyed by a hash of the id): from then on its
    /// access tokens no longer change anything. It stays until [`AccountStore::deletion_finished`].
    async fn mark_deleted(&self, id: &UserId, now: UnixTime) -> Result<(), PortError>;
    /// The deletion is complete: the tombstone forgets the id and may expire once no access token of the
    /// account can be live.
    async fn deletion_finished(&self, id: &UserId, now: UnixTime) -> Result<(), PortError>;
    /// Accounts whose deletion started but has not finished (the reconciler finishes them).
    async fn pending_deletions(&self, limit: usize) -> Result<Vec<UserId>, PortError>;
    async fn is_deleted(&self, id: &UserId) -> Result<bool, PortError>;
}

/// The steps of account deletion, one per kind of data. Each is idempotent, so a deletion interrupted
/// half-way is finished by running it again.
#[async_trait]
pub trait AccountEraser: Send + Sync {
    /// Every refresh token and revoked-family record of the user. Returns how many items went.
    async fn erase_sessions(&self, user: &UserId) -> Result<usize, PortError>;
    async fn erase_favorites(&self, user: &UserId) -> Result<usize, PortError>;
    /// Generation records, idempotency keys and the in-flight counter.
    async fn erase_generations(&self, user: &UserId) -> Result<usize, PortError>;
    /// Forfeits the remaining balance (an adjustment entry), then moves the ledger to `anon` (an id that
    /// leads back to no one) and re-keys the user's App Store purchases to it, so accounting keeps every
    /// entry and a refund of an old purchase still applies once; deletes the balance.
    async fn anonymise_credits(&self, user: &UserId, anon: &UserId, now: UnixTime) -> Result<(), PortError>;
    /// The one-time code record and the phone index of `phone` (E.164; if they still point at this user), then the
    /// profile: the last step, since it is what finds the phone number on a re-run.
    async fn erase_identity(&self, user: &UserId, phone: Option<&str>) -> Result<(), PortError>;
}

/// One page of a user's credits ledger, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerPage {
    pub entries: Vec<LedgerEntry>,
    /// Whether older entries exist beyond this page.
    pub more: bool,
}

/// A user's credits ledger, newest first.
#[async_trait]
pub trait LedgerReader: Send + Sync {
    /// At most `limit` entries older than the entry `before` (a ledger entry id), newest first.
    async fn ledger_page(&self, id: &UserId, limit: usize, before: Option<&str>) -> Result<LedgerPage, PortError>;

    async fn ledger(&self, id: &UserId, limit: usize) -> Result<Vec<LedgerEntry>, PortError> {
        Ok(self.ledger_page(id, limit, None).await?.entries)
    }
}

/// A purchase whose signed transaction was verified, about to be credited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedPurchase {
    pub transaction_id: String,
    pub original_transaction_id: String,
    pub product_id: String,
    pub credits: u64,
    /// `Sandbox` or `Production`.
    pub environment: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PurchaseOutcome {
    Credited {
        credits_added: u64,
        balance: u64,
    },
    /// This user was credited for the transaction before: nothing changed.
    AlreadyCredited {
        credits_added: u64,
        balance: u64,
    },
    /// The transaction was credited to another user.
    OtherUser,
    /// Apple refunded the transaction before it was ever credited.
    Revoked,
}

/// The result of a refund or refund reversal from an App Store notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefundOutcome {
    /// The balance changed by `amount` (negative for a refund); `shortfall` credits could not be taken back.
    Applied { user: UserId, amount: i64, shortfall: u64, balance: u64 },
    /// The transaction is not in a state this notification applies to (refunded twice, reversed unrefunded).
    NotApplicable,
    /// We never credited the transaction; it is now marked refunded so a later post of it is refused.
    UnknownTransaction,
    /// This notification was processed before.
    Duplicate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdjustOutcome {
    Applied {
        balance: u64,
    },
    /// Taking that many would take the balance below zero.
    Insufficient {
        balance: u64,
    },
    NoSuchUser,
}

/// Balances, purchases and App Store notifications. Every balance change is one transaction with its ledger
/// entry, conditioned on the balance it was computed from, so the ledger always sums to the balance.
#[async_trait]
pub trait CreditsStore: Send + Sync {
    /// The balance; 0 for a user without one.
    async fn balance(&self, id: &UserId) -> Result<u64, PortError>;
    /// Credits `purchase` to `user` once per transaction id.
    async fn credit_purchase(
        &self,
        user: &UserId,
        purchase: &VerifiedPurchase,
        now: UnixTime,
    ) -> Result<PurchaseOutcome, PortError>;
    /// [`CreditsStore::credit_purchase`], charging from `balance_read` (the balance as the caller just read
    /// it, beside its other reads) instead of reading it first; a stale value only costs a retry.
    async fn credit_purchase_from(
        &self,
        user: &UserId,
        purchase: &VerifiedPurchase,
        now: UnixTime,
        balance_read: Option<u64>,
    ) -> Result<PurchaseOutcome, PortError> {
        let _ = balance_read;
        self.credit_purchase(user, purchase, now).await
    }
    /// Takes back the credits of a refunded transaction (down to a balance of zero), once per notification and
    /// once per refund.
    async fn refund_purchase(
        &self,
        transaction_id: &str,
        notification_id: &str,
        now: UnixTime,
    ) -> Result<RefundOutcome, PortError>;
    /// Gives back what a refund took, once.
    async fn reverse_refund(
        &self,
        transaction_id: &str,
        notification_id: &str,
        now: UnixTime,
    ) -> Result<RefundOutcome, PortError>;
    /// Records a notification that changes no balance; `Conflict` when it was recorded before.
    async fn record_notification(&self, notification_id: &str, now: UnixTime) -> Result<Written, PortError>;
    /// An operator's grant (positive) or take (negative), with `reason` in the ledger entry.
    async fn adjust(&self, user: &UserId, amount: i64, reason: &str, now: UnixTime)
        -> Result<AdjustOutcome, PortError>;
}

/// The style catalogue, read whole into a container cache and written by the admin tool.
#[async_trait]
pub trait CatalogueStore: Send + Sync {
    /// Every category and template, inactive ones included.
    async fn load_catalogue(&self) -> Result<(Vec<Category>, Vec<Template>), PortError>;
    async fn put_category(&self, category: &Category) -> Result<(), PortError>;
    async fn put_template(&self, template: &Template) -> Result<(), PortError>;
    /// `false` when there is no such template.
    async fn set_template_active(&self, id: &TemplateId, active: bool) -> Result<bool, PortError>;
}

/// A template a user marked as favourite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Favorite {
    pub template_id: TemplateId,
    pub created_at: UnixTime,
}

/// A user's favourite templates. Adding and removing are idempotent.
#[async_trait]
pub trait FavoritesStore: Send + Sync {
    async fn add_favorite(&self, user: &UserId, template: &TemplateId, now: UnixTime) -> Result<(), PortError>;
    async fn remove_favorite(&self, user: &UserId, template: &TemplateId) -> Result<(), PortError>;
    /// All of the user's favourites, in no particular order.
    async fn favorites(&self, user: &UserId) -> Result<Vec<Favorite>, PortError>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshState {
    Active,
    Rotated,
}

/// A stored refresh token (only its hash is kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshRecord {
    pub token_hash: String,
    pub user_id: UserId,
    pub family_id: String,
    pub family_created_at: UnixTime,
    pub expires_at: UnixTime,
    pub state: RefreshState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RotateOutcome {
    Rotated,
    /// The presented token was already spent: reuse.
    AlreadyRotated,
    FamilyRevoked,
}

/// Refresh tokens, rotated on every use, grouped in families that are revoked together.
#[async_trait]
pub trait SessionStore: Send + Sync {
    async fn create_session(&self, record: &RefreshRecord) -> Result<(), PortError>;
    async fn find_session(&self, token_hash: &str) -> Result<Option<RefreshRecord>, PortError>;
    /// Marks `old_hash` rotated and stores `new` in one transaction, unless the old token was already rotated
    /// or its family revoked.
    async fn rotate(&self, old_hash: &str, new: &RefreshRecord) -> Result<RotateOutcome, PortError>;
    async fn revoke_family(&self, family_id: &str, user_id: &UserId, now: UnixTime) -> Result<(), PortError>;
}

/// Why `record` cannot take another attempt at `now`, or `None` if it can. Both OTP adapters use this, so
/// their answers to a refused attempt agree.
pub fn otp_refusal(record: Option<&OtpRecord>, max_attempts: u32, now: UnixTime) -> Option<AttemptOutcome> {
    let Some(r) = record.filter(|r| r.code_hash.is_some()) else {
        return Some(AttemptOutcome::NoCode);
    };
    if r.used {
        Some(AttemptOutcome::Used)
    } else if r.attempts >= max_attempts {
        Some(AttemptOutcome::Exhausted)
    } else if r.expires_at <= now {
        Some(AttemptOutcome::Expired)
    } else {
        None
    }
}

// ---------------------------------------------------------------------------------------------------------
// Generation pipeline
// ---------------------------------------------------------------------------------------------------------

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

/// Which state a failing job may be failed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailFrom {
    /// The worker holding this claim token.
    Claim(String),
    /// The reconciler: a job whose deadline is at or before this time and that no live claim holds (queued,
    /// or processing under a claim that ran out by then): a worker still inside its claim is left to finish.
    DeadlinePassed(UnixTime),
}

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
    /// Deletes a finished generation's record.
    async fn delete_generation(&self, user: &UserId, id: &str) -> Result<DeleteOutcome, PortError>;
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

/// A presigned upload: the app sends exactly these headers with a PUT of the photo to `url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresignedUpload {
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub expires_at: UnixTime,
}

/// What is stored under a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub content_type: Option<String>,
    pub length: u64,
}

/// The images bucket (S3 when deployed, memory in the local API and tests).
#[async_trait]
pub trait ObjectStore: Send + Sync {
    /// A URL the client PUTs `content_length` bytes of `content_type` to; the signature covers both.
    async fn presign_upload(
        &self,
        key: &str,
        content_type: &str,
        content_length: u64,
        expires_in_secs: u64,
        now: UnixTime,
    ) -> Result<PresignedUpload, PortError>;
    /// A short-lived URL to download `key`.
    async fn presign_download(&self, key: &str, expires_in_secs: u64, now: UnixTime) -> Result<String, PortError>;
    async fn head(&self, key: &str) -> Result<Option<ObjectInfo>, PortError>;
    /// The object, or `None` if absent. More than `max_bytes` is an error (never read into memory).
    async fn get(&self, key: &str, max_bytes: u64) -> Result<Option<Vec<u8>>, PortError>;
    async fn put(&self, key: &str, bytes: Vec<u8>, content_type: &str) -> Result<(), PortError>;
    /// Deletes the objects (absent ones are fine).
    async fn delete(&self, keys: &[String]) -> Result<(), PortError>;
    /// Deletes every object under `prefix`; returns how many.
    async fn delete_prefix(&self, prefix: &str) -> Result<usize, PortError>;
}

/// One render asked of an AI image provider.
#[derive(Debug, Clone, Copy)]
pub struct RenderRequest<'a> {
    /// The template's server-side settings: provider, model, prompt, params (`localEffect` is the local
    /// renderer's; real adapters leave it out).
    pub spec: &'a GenerationSpec,
    /// The prepared photo: JPEG, upright, without metadata, downsized.
    pub image: &'a [u8],
    /// A short-lived URL of the same prepared photo, for providers that fetch their input.
    pub image_url: Option<&'a str>,
    /// The generation's id: stable across retries, usable for provider-side de-duplication and logs.
    pub job_id: &'a str,
    /// The most this call may take (what is left of the worker's budget). Providers that run remote work
    /// stop waiting, and cancel it, before this runs out; the worker cuts the call off at it regardless.
    pub time_left: std::time::Duration,
}

/// A rendered image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedImage {
    pub bytes: Vec<u8>,
    /// `image/png`, `image/jpeg` or `image/webp`.
    pub content_type: String,
}

/// Why a provider refused for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalKind {
    /// The provider's safety system refused the photo or the result.
    ContentPolicy,
    /// The photo is unusable (too small, corrupt, no face where one is required, ...).
    InvalidInput,
    /// Our side is wrong: bad key, unknown model, bad parameters. Alarm-worthy, not the user's fault.
    Configuration,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// Worth retrying: 429, 5xx, timeouts, connection failures. `retry_after_secs` when the provider said.
    #[error("provider unavailable: {detail}")]
    Transient { detail: String, retry_after_secs: Option<u64> },
    /// Retrying cannot help. `user_reason` is shown to the user; `detail` is for the logs (never a key).
    #[error("provider refused ({kind:?}): {detail}")]
    Permanent { kind: RefusalKind, user_reason: String, detail: String },
}

/// An AI image provider (or the local renderer).
#[async_trait]
pub trait ImageProvider: Send + Sync {
    /// Whether the provider fetches its input from `RenderRequest::image_url` (the worker then stores the
    /// prepared photo and presigns a URL for it).
    fn needs_image_url(&self) -> bool;
    async fn render(&self, request: RenderRequest<'_>) -> Result<RenderedImage, ProviderError>;
}
