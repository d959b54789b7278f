//! Sign-in and sessions: `POST /v1/auth/verify-code`, `POST /v1/auth/refresh`, `POST /v1/auth/logout`.
//!
//! One function serves all three because they share everything at init (the sessions and users tables,
//! the signing key) and run in the same moments of the app's life; three functions would triple the cold
//! starts a user sees at sign-in for no isolation gain. IAM is the union of what the three need.

use std::sync::Arc;

use facemake::domain::OtpCode;
use facemake::http::views::SessionView;
use facemake::http::{
    json, json_body, no_content, optional_json_body, parse_phone, source_ip, AccountCheck, ApiError, AuthGuard,
    PathParams, Request, Response, Router,
};
use facemake::services::auth::{LoggedOut, SignIn};
use facemake::wiring::Deps;
use lambda_http::http::{Method, StatusCode};
use lambda_http::Body;
use serde::Deserialize;

pub struct State {
    pub sign_in: SignIn,
    pub guard: AuthGuard,
}

impl State {
    pub fn new(deps: &Deps) -> Self {
        Self { sign_in: deps.sign_in(), guard: deps.auth_guard() }
    }
}

pub fn router(state: Arc<State>) -> Router {
    Router::new()
        .route(Method::POST, "/v1/auth/verify-code", state.clone(), verify_code)
        .route(Method::POST, "/v1/auth/refresh", state.clone(), refresh)
        .route(Method::POST, "/v1/auth/logout", state, logout)
}

#[derive(Deserialize)]
struct VerifyRequest {
    phone: String,
    #[serde(default)]
    country: Option<String>,
    code: String,
}

async fn verify_code(state: Arc<State>, req: Request, _: PathParams) -> Result<Response<Body>, ApiError> {
    let body: VerifyRequest = json_body(&req)?;
    let phone = parse_phone(&body.phone, body.country.as_deref())?;
    let code = OtpCode::parse(&body.code).map_err(|e| ApiError::validation("code", e.to_string()))?;
    let session = state.sign_in.verify(&phone, &code, source_ip(&req).as_deref()).await?;
    Ok(json(StatusCode::OK, &SessionView::from(&session)))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RefreshRequest {
    refresh_token: String,
}

async fn refresh(state: Arc<State>, req: Request, _: PathParams) -> Result<Response<Body>, ApiError> {
    let body: RefreshRequest = json_body(&req)?;
    let agent = req.headers().get(lambda_http::http::header::USER_AGENT).and_then(|v| v.to_str().ok());
    let session = state.sign_in.refresh_from(&body.refresh_token, Some((source_ip(&req).as_deref(), agent))).await?;
    Ok(json(StatusCode::OK, &SessionView::from(&session)))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct LogoutRequest {
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    all: bool,
}

async fn logout(state: Arc<State>, req: Request, _: PathParams) -> Result<Response<Body>, ApiError> {
    // The deleted-account check runs beside the refresh-token read; nothing is revoked until it passed.
    let (user, check) = state.guard.user_before_write(&req).await?;
    let body: LogoutRequest = optional_json_body(&req)?.unwrap_or_default();
    match state.sign_in.logout(&user, body.refresh_token.as_deref(), body.all, check.deleted()).await? {
        LoggedOut::Done => Ok(no_content()),
        LoggedOut::AccountDeleted => Err(AccountCheck::refusal()),
    }
}
