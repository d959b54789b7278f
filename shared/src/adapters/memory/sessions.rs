//! Refresh tokens in memory (twin of adapters/dynamodb/sessions.rs).

use async_trait::async_trait;

use crate::domain::{UnixTime, UserId};
use crate::ports::{PortError, RefreshRecord, RefreshState, RotateOutcome, Rotation, SessionStore};

use super::MemoryStore;

#[async_trait]
impl SessionStore for MemoryStore {
    async fn create_session(&self, record: &RefreshRecord) -> Result<(), PortError> {
        let mut inner = self.lock();
        if inner.sessions.contains_key(&record.token_hash) {
            return Err(PortError::internal("sessions", "refresh token hash collision"));
        }
        inner.sessions.insert(record.token_hash.clone(), record.clone());
        Ok(())
    }

    async fn find_session(&self, token_hash: &str) -> Result<Option<RefreshRecord>, PortError> {
        Ok(self.lock().sessions.get(token_hash).cloned())
    }

    async fn rotate(
        &self,
        old_hash: &str,
        new: &RefreshRecord,
        rotation: &Rotation,
    ) -> Result<RotateOutcome, PortError> {
        let mut inner = self.lock();
        match inner.sessions.get(old_hash) {
            Some(r) if r.state == RefreshState::Active => {}
            _ => return Ok(RotateOutcome::AlreadyRotated),
        }
        if inner.revoked_families.contains(&new.family_id) {
            return Ok(RotateOutcome::FamilyRevoked);
        }
        if let Some(old) = inner.sessions.get_mut(old_hash) {
            old.state = RefreshState::Rotated;
            old.rotated = Some(rotation.clone());
        }
        inner.sessions.insert(new.token_hash.clone(), new.clone());
        Ok(RotateOutcome::Rotated)
    }

    async fn revoke_family(&self, family_id: &str, _user_id: &UserId, _now: UnixTime) -> Result<(), PortError> {
        self.lock().revoked_families.insert(family_id.to_owned());
        Ok(())
    }
}
