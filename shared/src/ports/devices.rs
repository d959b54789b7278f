//! Devices that receive push notifications, and the push service that reaches them
//! (adapters/dynamodb/devices.rs, adapters/apns.rs).

use async_trait::async_trait;

use super::{PortError, Written};
use crate::domain::{Device, DeviceToken, PushEnvironment, UnixTime, UserId};

/// Registered devices. A token belongs to the user who registered it last: registering it moves it.
#[async_trait]
pub trait DeviceStore: Send + Sync {
    /// Registers (or renews) `token` for `user`, taking it from whoever held it; `Conflict` (nothing written)
    /// when the account has a deletion tombstone, checked in the same write.
    async fn register_device(
        &self,
        user: &UserId,
        token: &DeviceToken,
        environment: PushEnvironment,
        now: UnixTime,
    ) -> Result<Written, PortError>;
    /// Removes `token` if `user` holds it and, with `registered_before`, if it was registered before then (a
    /// token APNs reported gone at that time, but registered again since, stays). `false`: nothing removed.
    async fn remove_device(
        &self,
        user: &UserId,
        token: &DeviceToken,
        registered_before: Option<UnixTime>,
    ) -> Result<bool, PortError>;
    /// The user's `limit` most recently registered devices, newest first, not past their lifetime at `now`.
    async fn devices(&self, user: &UserId, limit: usize, now: UnixTime) -> Result<Vec<Device>, PortError>;
}

/// One notification to one device.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Push {
    pub title: String,
    pub body: String,
    /// Pushes of one generation replace each other on the device (APNs' collapse id).
    pub generation_id: String,
    /// `succeeded` or `failed`.
    pub status: &'static str,
}

/// What the push service answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushOutcome {
    Delivered,
    /// The token is no longer valid for the topic (APNs 410): the device is dropped, unless it was registered
    /// again after `since` (APNs' timestamp of when it learnt so).
    Unregistered {
        since: Option<UnixTime>,
    },
    /// Anything else (refused, unreachable, throttled, no key configured): logged and counted, never retried.
    Failed(String),
    /// The stage has no APNs key: nothing was sent.
    NotConfigured,
}

/// Sends one notification (APNs, or the local outbox).
#[async_trait]
pub trait PushSender: Send + Sync {
    async fn send(&self, device: &Device, push: &Push) -> PushOutcome;
}
