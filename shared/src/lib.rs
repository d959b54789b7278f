//! Facemake backend library: everything the Lambdas and the local API share.
//!
//! - [`config`]: typed configuration read once at init from the environment.
//! - [`domain`]: parsed types (`PhoneNumber`, `OtpCode`, `UserId`, ...) — handlers never pass raw strings inward.
//! - [`ports`]: narrow traits per capability; [`services`] are the use cases written against them.
//! - [`adapters`]: DynamoDB, Secrets Manager, Twilio, and the in-memory twins used locally and in tests.
//! - [`imaging`]: photo preparation (format sniffing, decompression-bomb checks, orientation, downsizing).
//! - [`http`]: request parsing, the error envelope, the router and the auth guard.
//! - [`telemetry`]: structured logs without secrets or phone numbers; [`metrics`]: CloudWatch EMF metrics.

pub mod adapters;
pub mod config;
pub mod crypto;
pub mod domain;
pub mod http;
pub mod imaging;
pub mod metrics;
pub mod ports;
pub mod services;
pub mod telemetry;
pub mod testkit;
pub mod tokens;
pub mod wiring;
