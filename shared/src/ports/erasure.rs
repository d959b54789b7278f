//! Account deletion across the tables (adapters/dynamodb/erasure.rs).

use async_trait::async_trait;

use super::PortError;
use crate::domain::{UnixTime, UserId};

/// The steps of account deletion, one per kind of data. Each is idempotent, so a deletion interrupted
/// half-way is finished by running it again.
#[async_trait]
pub trait AccountEraser: Send + Sync {
    /// Every refresh token and revoked-family record of the user. Returns how many items went.
    async fn erase_sessions(&self, user: &UserId) -> Result<usize, PortError>;
    async fn erase_favorites(&self, user: &UserId) -> Result<usize, PortError>;
    /// Character records and the count (their photos go with the user's object prefixes).
    async fn erase_characters(&self, user: &UserId) -> Result<usize, PortError>;
    /// The devices registered to the user.
    async fn erase_devices(&self, user: &UserId) -> Result<usize, PortError>;
    /// Generation records, idempotency keys and the in-flight counter.
    async fn erase_generations(&self, user: &UserId) -> Result<usize, PortError>;
    /// Forfeits the remaining balance (an adjustment entry), then moves the ledger to `anon` (an id that
    /// leads back to no one) and re-keys the user's App Store purchases to it, so accounting keeps every
    /// entry and a refund of an old purchase still applies once; deletes the balance.
    async fn anonymise_credits(&self, user: &UserId, anon: &UserId, now: UnixTime) -> Result<(), PortError>;
    /// The one-time code record and the phone index of the number (if they still point at this user), leaving
    /// in their place the number's mark under its keyed hash (`NumberMark::at_deletion`: the code record's
    /// send history, kept `NumberMark::RETENTION_SECS`), then the profile: the last step, since it is what
    /// finds the phone number on a re-run. No mark without a `number_key` (an account older than marks).
    async fn erase_identity(
        &self,
        user: &UserId,
        identity: Option<Identity<'_>>,
        now: UnixTime,
    ) -> Result<(), PortError>;
}

/// The number of an account being erased, as its profile names it.
#[derive(Debug, Clone, Copy)]
pub struct Identity<'a> {
    /// E.164.
    pub phone: &'a str,
    pub number_key: Option<&'a str>,
}
