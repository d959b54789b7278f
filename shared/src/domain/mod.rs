//! Parsed domain types. Each `parse` returns a typed error that the HTTP layer turns into a field detail.

mod character;
mod credits;
mod device;
mod generation;
mod ids;
mod otp;
pub mod phone;
mod template;
mod time;
mod user;

pub use character::{Character, CharacterId, CharacterName, ProfileStats};
pub use credits::{Funds, FundsChange, LedgerEntry, LedgerKind, RefundSplit};
pub use device::{Device, DeviceToken, PushEnvironment};
pub use generation::{object_keys, FailFrom, Generation, GenerationSource, GenerationStatus, Timings, UploadId};
pub use ids::{deletion_key, new_id, UserId};
pub use otp::{NumberMark, OtpCode, OtpRecord, OtpRefusal, SendLimits, SendRefusal, Sends};
pub use phone::{CountryAllowlist, PhoneError, PhoneNumber};
pub use template::{
    CatalogueFile, Category, CategoryId, GenerationSpec, Provider, SeedCatalogue, SeedTemplate, Template, TemplateId,
};
pub use time::{rfc3339, UnixTime};
pub use user::{DisplayName, UserAccount};

/// Why a value could not be parsed: a message safe to show to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidValue(pub &'static str);
