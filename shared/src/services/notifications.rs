//! Push notifications: the devices a user registers, and the alert each of them gets when one of the user's
//! generations ends. A push is a courtesy: whatever happens to it, the generation's outcome stands, and
//! nothing is retried (the app shows the result when it next looks).

use std::sync::Arc;

use crate::domain::{DeviceToken, PushEnvironment, UserId};
use crate::metrics::{Metric, Metrics};
use crate::ports::{Clock, DeviceStore, PortError, Push, PushOutcome, PushSender, Written};

/// The devices of a user pushed to at most (the most recently registered).
pub const MAX_DEVICES_PUSHED: usize = 10;

/// How a generation ended, as its push tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending<'a> {
    Succeeded,
    /// `reason` is what the user reads (the generation's failure reason).
    Failed {
        reason: &'a str,
    },
}

impl Ending<'_> {
    fn push(self, generation_id: &str) -> Push {
        let (title, body, status) = match self {
            Ending::Succeeded => ("Your portrait is ready", "Tap to see it.".to_owned(), "succeeded"),
            Ending::Failed { reason } => ("Your portrait could not be made", reason.to_owned(), "failed"),
        };
        Push { title: title.to_owned(), body, generation_id: generation_id.to_owned(), status }
    }
}

/// What one generation's pushes came to (for tests and logs).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pushed {
    pub sent: usize,
    pub failed: usize,
    pub dropped: usize,
}

pub struct Notifications {
    pub devices: Arc<dyn DeviceStore>,
    pub sender: Arc<dyn PushSender>,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<dyn Metrics>,
}

impl Notifications {
    /// Registers (or renews) a device for `user`: idempotent, and the token leaves any other user. `Conflict`:
    /// the account was deleted meanwhile.
    pub async fn register(
        &self,
        user: &UserId,
        token: &DeviceToken,
        environment: PushEnvironment,
    ) -> Result<Written, PortError> {
        self.devices.register_device(user, token, environment, self.clock.now()).await
    }

    /// Unregisters a device of `user`'s (another user's token is left alone: the answer is the same).
    pub async fn unregister(&self, user: &UserId, token: &DeviceToken) -> Result<(), PortError> {
        self.devices.remove_device(user, token, None).await.map(|_| ())
    }

    /// Tells `user`'s devices that generation `generation_id` ended. Never fails: an error is logged and
    /// counted. A device APNs calls unregistered is dropped.
    pub async fn generation_ended(&self, user: &UserId, generation_id: &str, ending: Ending<'_>) -> Pushed {
        let mut pushed = Pushed::default();
        let devices = match self.devices.devices(user, MAX_DEVICES_PUSHED, self.clock.now()).await {
            Ok(devices) => devices,
            Err(e) => {
                tracing::warn!(generation = generation_id, error = %e, "reading the user's devices failed; no push");
                self.metrics.count(Metric::PushesFailed);
                pushed.failed += 1;
                return pushed;
            }
        };
        if devices.is_empty() {
            return pushed;
        }
        let push = ending.push(generation_id);
        let push = &push;
        let sends = devices.iter().map(|device| async move { (device, self.sender.send(device, push).await) });
        for (device, outcome) in futures_util::future::join_all(sends).await {
            let token = device.token.masked();
            match outcome {
                PushOutcome::Delivered => {
                    self.metrics.count(Metric::PushesSent);
                    pushed.sent += 1;
                }
                PushOutcome::NotConfigured => {
                    tracing::debug!(generation = generation_id, "no APNs key on this stage; push skipped");
                }
                PushOutcome::Failed(reason) => {
                    tracing::warn!(generation = generation_id, device = token, reason, "push failed");
                    self.metrics.count(Metric::PushesFailed);
                    pushed.failed += 1;
                }
                PushOutcome::Unregistered { since } => {
                    match self.devices.remove_device(user, &device.token, since).await {
                        Ok(true) => {
                            tracing::info!(generation = generation_id, device = token, "APNs: unregistered; dropped");
                            self.metrics.count(Metric::DevicesDropped);
                            pushed.dropped += 1;
                        }
                        Ok(false) => {}
                        Err(e) => {
                            tracing::warn!(device = token, error = %e, "dropping an unregistered device failed")
                        }
                    }
                }
            }
        }
        pushed
    }
}
