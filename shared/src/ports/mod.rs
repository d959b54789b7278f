//! Narrow traits, one per capability. Services and handlers ask only for the ports they use; each has a
//! DynamoDB (or AWS/HTTP) adapter and an in-memory adapter that pass the same contract tests.

use crate::domain::UnixTime;

mod accounts;
mod catalogue;
mod characters;
mod codes;
mod credits;
mod devices;
mod erasure;
mod generations;
mod keys;
mod objects;
mod providers;
mod sessions;
mod sms;

pub use accounts::*;
pub use catalogue::*;
pub use characters::*;
pub use codes::*;
pub use credits::*;
pub use devices::*;
pub use erasure::*;
pub use generations::*;
pub use keys::*;
pub use objects::*;
pub use providers::*;
pub use sessions::*;
pub use sms::*;

/// A failure of the storage or network underneath a port: logged with its cause, shown as a 500/503.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    /// The backing service could not be reached or throttled us; worth retrying later.
    #[error("{what} unavailable: {source}")]
    Unavailable { what: &'static str, source: Box<dyn std::error::Error + Send + Sync> },
    /// Anything else: a bug, a misconfiguration, corrupt data.
    #[error("{what}: {source}")]
    Internal { what: &'static str, source: Box<dyn std::error::Error + Send + Sync> },
}

impl PortError {
    pub fn internal(what: &'static str, source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Internal { what, source: source.into() }
    }
    pub fn unavailable(what: &'static str, source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Unavailable { what, source: source.into() }
    }
}

/// The time, injectable so tests can move it.
pub trait Clock: Send + Sync {
    fn now(&self) -> UnixTime;
}

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> UnixTime {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
    }
}

/// Whether a conditional write took effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    Yes,
    /// Someone else changed the item first (the condition failed).
    Conflict,
}
