//! HTTP glue shared by every function and the local API: the error envelope, body parsing with limits,
//! the router, the auth guard and the JSON views.

mod auth;
mod cursor;
mod error;
mod request;
mod router;
mod signed;
pub mod views;

pub use auth::{AccountCheck, AuthGuard};
pub use cursor::{decode_cursor, encode_cursor};
pub use error::{ApiError, ErrorCode, FieldError};
pub use request::{
    flag_param, json_body, limit_param, optional_json_body, parse_phone, query_param, request_id, source_ip,
    JSON_BODY_LIMIT,
};
pub use router::{json, no_content, PathParams, Router};
pub use signed::verify_signed;

pub use lambda_http::{Body, Request, Response};
