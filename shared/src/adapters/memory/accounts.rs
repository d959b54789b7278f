//! Accounts in memory (twin of adapters/dynamodb/accounts.rs).

use async_trait::async_trait;

use crate::domain::{deletion_key, PhoneNumber, ProfileStats, UnixTime, UserAccount, UserId};
use crate::ports::{AccountStore, CreateOutcome, NewUser, PortError, ProfileUpdate};

use super::MemoryStore;

#[async_trait]
impl AccountStore for MemoryStore {
    async fn find_by_phone(&self, phone: &PhoneNumber) -> Result<Option<UserId>, PortError> {
        Ok(self.lock().phones.get(phone.e164()).cloned())
    }

    async fn get_user(&self, id: &UserId) -> Result<Option<UserAccount>, PortError> {
        Ok(self.lock().users.get(id).cloned())
    }

    async fn get_user_with_stats(&self, id: &UserId) -> Result<Option<(UserAccount, ProfileStats)>, PortError> {
        let inner = self.lock();
        Ok(inner.users.get(id).map(|u| (u.clone(), inner.stats(id))))
    }

    async fn create_user(&self, user: &NewUser) -> Result<CreateOutcome, PortError> {
        let mut inner = self.lock();
        if let Some(existing) = inner.phones.get(user.phone.e164()) {
            return Ok(CreateOutcome::PhoneTaken(existing.clone()));
        }
        let account = UserAccount {
            id: user.id.clone(),
            phone: user.phone.e164().to_owned(),
            display_name: None,
            credits: user.starter_grant.as_ref().map_or(0, |g| g.balance_after),
            created_at: user.created_at,
            sessions_revoked_at: None,
            number_key: user.number_key.clone(),
            consumption_consent: false,
        };
        inner.phones.insert(user.phone.e164().to_owned(), user.id.clone());
        inner.users.insert(user.id.clone(), account.clone());
        if let Some(grant) = &user.starter_grant {
            inner.ledger.entry(user.id.clone()).or_default().push(grant.clone());
        }
        Ok(CreateOutcome::Created(account))
    }

    async fn update_profile(&self, id: &UserId, change: &ProfileUpdate<'_>) -> Result<Option<UserAccount>, PortError> {
        let mut inner = self.lock();
        Ok(inner.users.get_mut(id).map(|u| {
            if let Some(name) = change.display_name {
                u.display_name = name.map(str::to_owned);
            }
            if let Some(consent) = change.consumption_consent {
                u.consumption_consent = consent;
            }
            u.clone()
        }))
    }

    async fn revoke_sessions(&self, id: &UserId, at: UnixTime) -> Result<(), PortError> {
        if let Some(u) = self.lock().users.get_mut(id) {
            u.sessions_revoked_at = Some(at);
        }
        Ok(())
    }

    async fn mark_deleted(&self, id: &UserId, now: UnixTime) -> Result<(), PortError> {
        self.lock().deleted.entry(deletion_key(id)).or_insert((now, Some(id.clone())));
        Ok(())
    }

    async fn deletion_finished(&self, id: &UserId, _: UnixTime) -> Result<(), PortError> {
        if let Some(tombstone) = self.lock().deleted.get_mut(&deletion_key(id)) {
            tombstone.1 = None;
        }
        Ok(())
    }

    async fn pending_deletions(&self, limit: usize) -> Result<Vec<UserId>, PortError> {
        let inner = self.lock();
        let mut pending: Vec<(UnixTime, UserId)> =
            inner.deleted.values().filter_map(|(at, id)| id.clone().map(|id| (*at, id))).collect();
        pending.sort_by(|a, b| (a.0, a.1.as_str()).cmp(&(b.0, b.1.as_str())));
        Ok(pending.into_iter().take(limit).map(|(_, id)| id).collect())
    }

    async fn is_deleted(&self, id: &UserId) -> Result<bool, PortError> {
        Ok(self.lock().deleted.contains_key(&deletion_key(id)))
    }
}
