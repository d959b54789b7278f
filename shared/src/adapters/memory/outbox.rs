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
