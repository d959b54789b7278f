//! Facemake backend library: everything the Lambdas and the local API share. Test support (DynamoDB Local and moto
//! clients, the tables read from template.yaml) is not here: it is the dev-only crate `infra/testkit`.
//!
//! - [`config`]: typed configuration read once at init from the environment.
//! - [`domain`]: parsed types (`PhoneNumber`, `OtpCode`, `UserId`, ...) and the rules both stores apply
//!   (`OtpRecord::refusal`, `Generation::claimable`, `Generation::can_fail`, ...) — handlers never pass raw
//!   strings inward.
//! - [`ports`]: narrow traits per capability, one file per area (mirroring `adapters/dynamodb/`); [`services`] are
//!   the use cases written against them.
//! - [`adapters`]: DynamoDB, S3, Secrets Manager, Twilio, the image providers, and the in-memory twins
//!   (`adapters/memory/`) used locally and in tests.
//! - [`imaging`]: photo preparation (format sniffing, decompression-bomb checks, orientation, downsizing).
//! - [`http`]: request parsing, the error envelope, the router and the auth guard.
//! - [`tokens`]: access tokens (JWT HS256); [`crypto`]: randomness, SHA-256, HMAC and HKDF from aws-lc-rs.
//! - [`wiring`]: the AWS clients and adapters a Lambda builds once at init.
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
pub mod tokens;
pub mod wiring;
