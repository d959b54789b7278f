//! Account deletion in memory (twin of adapters/dynamodb/erasure.rs).

use std::collections::HashSet;

use async_trait::async_trait;

use crate::domain::{NumberMark, UnixTime, UserId};
use crate::ports::{AccountEraser, Identity, PortError};

use super::MemoryStore;

#[async_trait]
impl AccountEraser for MemoryStore {
    async fn erase_sessions(&self, user: &UserId) -> Result<usize, PortError> {
        let mut inner = self.lock();
        let families: HashSet<String> =
            inner.sessions.values().filter(|s| s.user_id == *user).map(|s| s.family_id.clone()).collect();
        let before = inner.sessions.len() + inner.revoked_families.len();
        inner.sessions.retain(|_, s| s.user_id != *user);
        inner.revoked_families.retain(|f| !families.contains(f));
        Ok(before - inner.sessions.len() - inner.revoked_families.len())
    }

    async fn erase_favorites(&self, user: &UserId) -> Result<usize, PortError> {
        Ok(self.lock().favorites.remove(user).map_or(0, |f| f.len()))
    }

    async fn erase_characters(&self, user: &UserId) -> Result<usize, PortError> {
        Ok(self.lock().characters.remove(user).map_or(0, |c| c.len()))
    }

    async fn erase_devices(&self, user: &UserId) -> Result<usize, PortError> {
        let mut inner = self.lock();
        let before = inner.devices.len();
        inner.devices.retain(|_, d| d.user_id != *user);
        Ok(before - inner.devices.len())
    }

    async fn erase_generations(&self, user: &UserId) -> Result<usize, PortError> {
        let mut inner = self.lock();
        let mut erased = inner.generations.remove(user).map_or(0, |g| g.len());
        erased += usize::from(inner.in_flight.remove(user).is_some());
        let before = inner.idempotency.len();
        inner.idempotency.retain(|(u, _), _| u != user);
        Ok(erased + before - inner.idempotency.len())
    }

    async fn anonymise_credits(&self, user: &UserId, anon: &UserId, now: UnixTime) -> Result<(), PortError> {
        let mut inner = self.lock();
        if let Some(change) = inner.funds(user).forfeit(now) {
            inner.apply_funds(user, change);
        }
        let ledger = inner.ledger.remove(user).unwrap_or_default();
        for p in inner.purchases.values_mut() {
            if p.user.as_ref() == Some(user) {
                p.user = Some(anon.clone());
            }
        }
        inner.ledger.entry(anon.clone()).or_default().extend(ledger);
        Ok(())
    }

    async fn erase_identity(
        &self,
        user: &UserId,
        identity: Option<Identity<'_>>,
        now: UnixTime,
    ) -> Result<(), PortError> {
        let mut inner = self.lock();
        if let Some(Identity { phone, number_key }) = identity {
            // Only while the number is still this user's (or nobody's): a new account's code record stays.
            if inner.phones.get(phone).is_none_or(|owner| owner == user) {
                inner.phones.remove(phone);
                let record = inner.otp.remove(phone);
                if let Some(key) = number_key {
                    inner.marks.insert(key.to_owned(), NumberMark::at_deletion(record.as_ref(), now));
                }
            }
        }
        inner.users.remove(user);
        Ok(())
    }
}
