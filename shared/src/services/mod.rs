//! Use cases, written against the ports only (no lambda_http, no AWS types), so they run unchanged on the
//! in-memory adapters in tests and on DynamoDB when deployed.

pub mod account;
pub mod auth;
pub mod catalogue;
pub mod characters;
pub mod credits;
pub mod generation;
pub mod notifications;
