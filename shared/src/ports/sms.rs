//! Sending a text.

use async_trait::async_trait;

use super::PortError;
use crate::domain::PhoneNumber;

/// Sends a text message. The body holds a code: adapters never log it.
#[async_trait]
pub trait SmsSender: Send + Sync {
    async fn send(&self, to: &PhoneNumber, body: &str) -> Result<(), PortError>;
}
