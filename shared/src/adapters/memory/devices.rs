//! Devices in memory (twin of adapters/dynamodb/devices.rs).

use async_trait::async_trait;

use crate::domain::{Device, DeviceToken, PushEnvironment, UnixTime, UserId};
use crate::ports::{DeviceStore, PortError, Written};

use super::MemoryStore;

#[async_trait]
impl DeviceStore for MemoryStore {
    async fn register_device(
        &self,
        user: &UserId,
        token: &DeviceToken,
        environment: PushEnvironment,
        now: UnixTime,
    ) -> Result<Written, PortError> {
        let mut inner = self.lock();
        if inner.deleted.contains_key(&crate::domain::deletion_key(user)) {
            return Ok(Written::Conflict);
        }
        let device = Device { token: token.clone(), user_id: user.clone(), environment, registered_at: now };
        inner.devices.insert(token.clone(), device);
        Ok(Written::Yes)
    }

    async fn remove_device(
        &self,
        user: &UserId,
        token: &DeviceToken,
        registered_before: Option<UnixTime>,
    ) -> Result<bool, PortError> {
        let mut inner = self.lock();
        let removable = inner
            .devices
            .get(token)
            .is_some_and(|d| d.user_id == *user && registered_before.is_none_or(|before| d.registered_at < before));
        if removable {
            inner.devices.remove(token);
        }
        Ok(removable)
    }

    async fn devices(&self, user: &UserId, limit: usize, now: UnixTime) -> Result<Vec<Device>, PortError> {
        let inner = self.lock();
        let mut devices: Vec<Device> = inner
            .devices
            .values()
            .filter(|d| d.user_id == *user && d.registered_at + Device::LIFETIME_SECS > now)
            .cloned()
            .collect();
        devices.sort_by(|a, b| b.registered_at.cmp(&a.registered_at).then_with(|| a.token.cmp(&b.token)));
        devices.truncate(limit);
        Ok(devices)
    }
}
