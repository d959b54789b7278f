//! The local SMS outbox: texts kept (and optionally printed) instead of sent (twin of adapters/sms.rs).

use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use crate::domain::{PhoneNumber, UnixTime};
use crate::ports::{PortError, SmsSender};

/// One text the local outbox "sent".
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SentSms {
    pub to: String,
    pub body: String,
    pub sent_at: UnixTime,
}

/// An SMS sender that keeps messages (newest last) instead of sending them, and optionally prints them.
/// Local only: it shows the code, which no deployed adapter ever does.
#[derive(Default, Clone)]
pub struct MemoryOutbox {
    messages: Arc<Mutex<Vec<SentSms>>>,
    print: bool,
    fail: Arc<std::sync::atomic::AtomicBool>,
}

impl MemoryOutbox {
    pub fn new() -> Self {
        Self::default()
    }

    /// An outbox that also prints every message to stderr (the local API's).
    pub fn printing() -> Self {
        Self { print: true, ..Self::default() }
    }

    /// Makes every following send fail as if the provider were down (tests of the failure path).
    pub fn set_failing(&self, failing: bool) {
        self.fail.store(failing, std::sync::atomic::Ordering::SeqCst);
    }

    /// Messages sent to `e164`, newest first.
    pub fn messages_to(&self, e164: &str) -> Vec<SentSms> {
        let messages = self.messages.lock().unwrap_or_else(|e| e.into_inner());
        messages.iter().rev().filter(|m| m.to == e164).cloned().collect()
    }

    pub fn count(&self) -> usize {
        self.messages.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

#[async_trait]
impl SmsSender for MemoryOutbox {
    async fn send(&self, to: &PhoneNumber, body: &str) -> Result<(), PortError> {
        if self.fail.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(PortError::unavailable("sms", "outbox set to fail"));
        }
        let sent_at = crate::ports::Clock::now(&crate::ports::SystemClock);
        if self.print {
            eprintln!("[local sms] to {}: {body}", to.e164());
        }
        let mut messages = self.messages.lock().unwrap_or_else(|e| e.into_inner());
        messages.push(SentSms { to: to.e164().to_owned(), body: body.to_owned(), sent_at });
        Ok(())
    }
}

/// One push the local outbox "sent".
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SentPush {
    pub device_token: String,
    pub environment: crate::domain::PushEnvironment,
    /// What APNs would have been sent (`aps` and the app's own keys).
    pub payload: serde_json::Value,
    pub sent_at: UnixTime,
}

/// A push sender that keeps pushes (newest last) instead of sending them (twin of adapters/apns.rs).
#[derive(Default, Clone)]
pub struct MemoryPushes {
    pushes: Arc<Mutex<Vec<SentPush>>>,
    unregistered: Arc<Mutex<std::collections::HashSet<String>>>,
    fail: Arc<std::sync::atomic::AtomicBool>,
}

impl MemoryPushes {
    pub fn new() -> Self {
        Self::default()
    }

    /// Pushes sent to `token`, newest first.
    pub fn pushes_to(&self, token: &str) -> Vec<SentPush> {
        let pushes = self.pushes.lock().unwrap_or_else(|e| e.into_inner());
        pushes.iter().rev().filter(|p| p.device_token == token).cloned().collect()
    }

    pub fn count(&self) -> usize {
        self.pushes.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Makes every following send fail as if APNs were down.
    pub fn set_failing(&self, failing: bool) {
        self.fail.store(failing, std::sync::atomic::Ordering::SeqCst);
    }

    /// Answers pushes to `token` as APNs does a token whose app is gone (410 Unregistered, as of now).
    pub fn unregister(&self, token: &str) {
        self.unregistered.lock().unwrap_or_else(|e| e.into_inner()).insert(token.to_owned());
    }
}

#[async_trait]
impl crate::ports::PushSender for MemoryPushes {
    async fn send(&self, device: &crate::domain::Device, push: &crate::ports::Push) -> crate::ports::PushOutcome {
        use crate::ports::PushOutcome;
        if self.fail.load(std::sync::atomic::Ordering::SeqCst) {
            return PushOutcome::Failed("outbox set to fail".to_owned());
        }
        let now = crate::ports::Clock::now(&crate::ports::SystemClock);
        if self.unregistered.lock().unwrap_or_else(|e| e.into_inner()).contains(device.token.as_str()) {
            return PushOutcome::Unregistered { since: None };
        }
        let mut pushes = self.pushes.lock().unwrap_or_else(|e| e.into_inner());
        pushes.push(SentPush {
            device_token: device.token.to_string(),
            environment: device.environment,
            payload: crate::adapters::apns::payload(push),
            sent_at: now,
        });
        PushOutcome::Delivered
    }
}
