//! Adapters: the ports' implementations.
//!
//! - [`dynamodb`]: the deployed store for every table.
//! - [`secrets`]: one Secrets Manager secret, read on first use and cached per container ([`secrets::CachedSecret`]).
//! - [`keys`]: signing keys from the app secret (through `CachedSecret`) or fixed keys for local use.
//! - [`sms`]: Twilio's Messages API over reqwest.
//! - [`appstore`]: verification of Apple-signed StoreKit transactions and server notifications.
//! - [`appstore_api`]: the App Store Server API (Send Consumption Information), signed with the In-App Purchase key.
//! - [`memory`]: the in-memory twins of every store, the local SMS outbox and the in-memory images bucket,
//!   used by the local API and the tests.
//! - [`providers`]: the AI image providers (OpenAI image edits, Replicate predictions) with their keys from
//!   Secrets Manager, and the local renderer that stands in for them (labelled as a preview, never as AI).
//! - [`objects`]: the images bucket on S3, with presigned URLs.
//! - [`apns`]: push notifications through APNs (HTTP/2, token auth with the .p8 key from Secrets Manager).
//! - [`webhooks`]: the signature check of providers' callbacks (Standard Webhooks).

pub mod apns;
pub mod appstore;
pub mod appstore_api;
pub mod dynamodb;
pub mod keys;
pub mod memory;
pub mod objects;
pub mod providers;
pub mod secrets;
pub mod sms;
pub mod webhooks;
