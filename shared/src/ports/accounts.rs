//! Accounts: profiles and the one-user-per-number index (adapters/dynamodb/accounts.rs).

use async_trait::async_trait;

use super::PortError;
use crate::domain::{LedgerEntry, PhoneNumber, ProfileStats, UnixTime, UserAccount, UserId};

/// A user about to be created at first sign-in.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub id: UserId,
    pub phone: PhoneNumber,
    pub created_at: UnixTime,
    pub starter_grant: Option<LedgerEntry>,
    /// The keyed hash of the number (current app key) that the account's deletion leaves its mark under.
    pub number_key: Option<String>,
}

/// A change of the writable profile fields; `None` leaves a field as it is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProfileUpdate<'a> {
    /// `Some(None)` clears the display name.
    pub display_name: Option<Option<&'a str>>,
    pub consumption_consent: Option<bool>,
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
    /// The user and the profile's counters, read together in one round trip (`GET /v1/me`).
    async fn get_user_with_stats(&self, id: &UserId) -> Result<Option<(UserAccount, ProfileStats)>, PortError>;
    /// Creates the user, its phone index entry, its balance and the starter grant's ledger entry in one
    /// transaction, only if the phone number has no user yet.
    async fn create_user(&self, user: &NewUser) -> Result<CreateOutcome, PortError>;
    /// Applies `update` to the profile in one write (all of it or nothing); `None` when the user does not exist.
    async fn update_profile(&self, id: &UserId, update: &ProfileUpdate<'_>) -> Result<Option<UserAccount>, PortError>;
    /// Sets or clears the display name; `None` when the user does not exist.
    async fn set_display_name(&self, id: &UserId, name: Option<&str>) -> Result<Option<UserAccount>, PortError> {
        self.update_profile(id, &ProfileUpdate { display_name: Some(name), consumption_consent: None }).await
    }
    /// Sets whether the App Store may be told how much of a purchase was used; `None` when the user does not
    /// exist.
    async fn set_consumption_consent(&self, id: &UserId, consent: bool) -> Result<Option<UserAccount>, PortError> {
        self.update_profile(id, &ProfileUpdate { display_name: None, consumption_consent: Some(consent) }).await
    }
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
