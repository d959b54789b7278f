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
