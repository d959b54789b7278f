//! HTTP glue shared by every function and the local API: the error envelope, body parsing with limits,
//! the router, the auth guard and the JSON views.

mod auth;
mod error;
mod request;
mod router;
pub mod views;

pub use auth::AuthGuard;
pub use error::{ApiError, ErrorCode, FieldError};
pub use request::{json_body, optional_json_body, parse_phone, request_id, source_ip, JSON_BODY_LIMIT};
pub use router::{json, no_content, PathParams, Router};

pub use lambda_http::{Body, Request, Response};
