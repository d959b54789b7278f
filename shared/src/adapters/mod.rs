//! Adapters: the ports' implementations.
//!
//! - [`dynamodb`]: the deployed store for every table, plus the table bootstrap that reads template.yaml.
//! - [`keys`]: signing keys from Secrets Manager (fetched once per container) or fixed keys for local use.
//! - [`sms`]: Twilio's Messages API over reqwest, and the local outbox.
//! - [`appstore`]: verification of Apple-signed StoreKit transactions and server notifications.
//! - [`memory`]: the in-memory store used by the local API and the unit tests.
//! - [`providers`]: the AI image providers (OpenAI image edits, Replicate predictions) with their keys from
//!   Secrets Manager, and the local renderer that stands in for them (labelled as a preview, never as AI).
//! - [`objects`]: the images bucket (S3 with presigned URLs, or memory behind the local API's URLs).

pub mod appstore;
pub mod dynamodb;
pub mod keys;
pub mod memory;
pub mod objects;
pub mod providers;
pub mod sms;
