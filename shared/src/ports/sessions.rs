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
