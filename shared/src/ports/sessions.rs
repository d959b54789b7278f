//! Refresh tokens and their families (adapters/dynamodb/sessions.rs).

use async_trait::async_trait;

use super::PortError;
use crate::domain::{UnixTime, UserId};

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
    /// When and by which client it was rotated (a rotated token's record only).
    pub rotated: Option<Rotation>,
}

/// How long after a refresh token was rotated the same client presenting it again is taken for a retry of
/// that request (its answer lost or still in flight: a 409 to retry), not for reuse of a leaked token (which
/// revokes the family). Long enough for a mobile retry, short enough that a thief would have to present the
/// token from the owner's own address and app within seconds of the owner.
pub const REFRESH_RETRY_SECS: UnixTime = 10;

/// A rotation: when, and a keyed tag of the client that made it (source address and User-Agent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotation {
    pub at: UnixTime,
    pub by: String,
}

impl RefreshRecord {
    /// Whether `client` presenting this (rotated) token at `now` is a retry of its own rotation.
    pub fn retried_by(&self, client: &str, now: UnixTime) -> bool {
        // Two seconds of tolerance backwards: the rotation may have been stamped by another container's clock.
        matches!(&self.rotated, Some(r) if r.by == client && (-2..=REFRESH_RETRY_SECS).contains(&(now - r.at)))
    }
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
    /// Marks `old_hash` rotated (recording `rotation`) and stores `new` in one transaction, unless the old
    /// token was already rotated or its family revoked.
    async fn rotate(
        &self,
        old_hash: &str,
        new: &RefreshRecord,
        rotation: &Rotation,
    ) -> Result<RotateOutcome, PortError>;
    async fn revoke_family(&self, family_id: &str, user_id: &UserId, now: UnixTime) -> Result<(), PortError>;
}
