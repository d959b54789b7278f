//! `POST /v1/auth/send-code`: texts a one-time sign-in code.

use std::sync::Arc;

use facemake::http::{json, json_body, parse_phone, source_ip, ApiError, PathParams, Request, Response, Router};
use facemake::services::auth::SendCode;
use facemake::wiring::Deps;
use lambda_http::http::{Method, StatusCode};
use serde::{Deserialize, Serialize};

pub struct State {
    pub send_code: SendCode,
}

impl State {
    pub fn new(deps: &Deps) -> Self {
        Self { send_code: deps.send_code() }
    }
}

pub fn router(state: Arc<State>) -> Router {
    Router::new().route(Method::POST, "/v1/auth/send-code", state, send_code)
}

#[derive(Deserialize)]
struct SendCodeRequest {
    phone: String,
    #[serde(default)]
    country: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SendCodeResponse {
    expires_in_seconds: i64,
    retry_after_seconds: i64,
}

async fn send_code(state: Arc<State>, req: Request, _: PathParams) -> Result<Response<lambda_http::Body>, ApiError> {
    let body: SendCodeRequest = json_body(&req)?;
    let phone = parse_phone(&body.phone, body.country.as_deref())?;
    let sent = state.send_code.send(&phone, source_ip(&req).as_deref()).await?;
    Ok(json(
        StatusCode::ACCEPTED,
        &SendCodeResponse { expires_in_seconds: sent.expires_in_secs, retry_after_seconds: sent.retry_after_secs },
    ))
}
