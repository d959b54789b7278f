//! One-time sign-in codes and the fixed-window rate limiter (adapters/dynamodb/codes.rs).

use async_trait::async_trait;

use super::{PortError, Written};
use crate::domain::{NumberMark, OtpRecord, OtpRefusal, PhoneNumber, UnixTime};

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

impl From<OtpRefusal> for AttemptOutcome {
    fn from(refusal: OtpRefusal) -> Self {
        match refusal {
            OtpRefusal::NoCode => Self::NoCode,
            OtpRefusal::Used => Self::Used,
            OtpRefusal::Exhausted => Self::Exhausted,
            OtpRefusal::Expired => Self::Expired,
        }
    }
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
    /// The mark a deleted account left on its number, under any of `number_keys` (the keyed hashes of the
    /// number under each app key, the current first), if one is still kept. Written by
    /// `AccountEraser::erase_identity`.
    async fn number_mark(&self, number_keys: &[String]) -> Result<Option<NumberMark>, PortError>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateDecision {
    Allowed,
    Limited { retry_after_secs: u64 },
}

/// One fixed-window counter of [`RateLimiter::hit_all`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counter {
    pub key: String,
    pub window_secs: i64,
    pub limit: u32,
}

/// Fixed-window counters with an atomic, conditional increment.
#[async_trait]
pub trait RateLimiter: Send + Sync {
    async fn hit(&self, key: &str, window_secs: i64, limit: u32, now: UnixTime) -> Result<RateDecision, PortError>;
    /// Counts one hit on every counter, or on none of them when any is at its limit (the answer then waits for
    /// the last of those to reset): a refusal by one spends nothing of the others.
    async fn hit_all(&self, counters: &[Counter], now: UnixTime) -> Result<RateDecision, PortError>;
}
