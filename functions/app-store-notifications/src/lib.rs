//! App Store Server Notifications V2: `POST /v1/webhooks/app-store`.
//!
//! No bearer token: the payload is a JWS that must verify against the configured roots, for this app and
//! this stage's App Store environment. Anything verified is answered 200 at once (also types we ignore, so
//! Apple stops retrying); anything else 400.

use std::sync::Arc;

use facemake::http::{json, json_body, ApiError, PathParams, Request, Response, Router};
use facemake::services::credits::{Credits, NotificationError};
use facemake::wiring::Deps;
use lambda_http::http::{Method, StatusCode};
use lambda_http::Body;
use serde::Deserialize;

pub struct State {
    pub credits: Credits,
}

impl State {
    /// Fails (a cold-start error) when the App Store settings cannot make a verifier.
    pub fn new(deps: &Deps) -> Result<Self, String> {
        Ok(Self { credits: deps.credits_service()? })
    }
}

pub fn router(state: Arc<State>) -> Router {
    Router::new().route(Method::POST, "/v1/webhooks/app-store", state, notification)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NotificationRequest {
    signed_payload: String,
}

async fn notification(state: Arc<State>, req: Request, _: PathParams) -> Result<Response<Body>, ApiError> {
    let body: NotificationRequest = json_body(&req)?;
    match state.credits.notification(body.signed_payload.trim()).await {
        Ok(_) => Ok(json(StatusCode::OK, &serde_json::json!({}))),
        Err(NotificationError::Rejected(r)) => {
            tracing::warn!(reason = %r, "app store notification refused");
            Err(ApiError::validation("signedPayload", format!("the notification could not be verified: {r}")))
        }
        Err(NotificationError::Port(e)) => Err(e.into()),
    }
}
