//! Replicate's signed webhook: `POST /v1/webhooks/replicate?job=<userId>.<generationId>`, the end of a
//! prediction the worker handed over. No bearer token: the signature is the authentication.

use std::sync::Arc;

use facemake::adapters::webhooks::WebhookVerifier;
use facemake::http::{json, query_param, verify_signed, ApiError, ErrorCode, PathParams, Request, Response, Router};
use facemake::metrics::Metrics;
use facemake::ports::JobRef;
use facemake::services::generation::callback::{CallbackError, CallbackResult, Callbacks};
use facemake::wiring::Deps;
use lambda_http::http::{Method, StatusCode};
use lambda_http::Body;

pub use facemake::adapters::webhooks::LOCAL_SIGNING_KEY;

/// The largest body read: a prediction with its input and logs.
const MAX_BODY_BYTES: usize = 1024 * 1024;

pub struct State {
    pub callbacks: Callbacks,
    pub verifier: WebhookVerifier,
    pub metrics: Arc<dyn Metrics>,
}

impl State {
    pub fn new(deps: &Deps) -> Self {
        Self {
            callbacks: deps.callbacks(),
            verifier: deps.webhook_verifier(LOCAL_SIGNING_KEY),
            metrics: deps.metrics.clone(),
        }
    }
}

pub fn router(state: Arc<State>) -> Router {
    Router::new().route(Method::POST, "/v1/webhooks/replicate", state, callback)
}

/// `job` = `<userId>.<generationId>`, as the worker put it into the webhook URL.
fn job(req: &Request) -> Result<JobRef, ApiError> {
    query_param(req, "job")
        .and_then(|raw| JobRef::from_reference(&raw))
        .ok_or_else(|| ApiError::validation("job", "not a job of this stage"))
}

async fn callback(state: Arc<State>, req: Request, _: PathParams) -> Result<Response<Body>, ApiError> {
    let body: &[u8] = req.body().as_ref();
    if body.len() > MAX_BODY_BYTES {
        return Err(ApiError::new(ErrorCode::PayloadTooLarge, "The callback is too large."));
    }
    // The signature first: nothing of an unsigned call is read, not even its job.
    verify_signed(&state.verifier, state.metrics.as_ref(), &req, "replicate").await?;
    let job = job(&req)?;
    let result = state.callbacks.handle(&job, body).await.map_err(|e| match e {
        CallbackError::Malformed(reason) => {
            tracing::warn!(generation = %job.generation_id, reason, "replicate callback is not a prediction");
            ApiError::validation("body", "not a prediction")
        }
        CallbackError::Fetch(detail) => {
            tracing::warn!(generation = %job.generation_id, detail, "the output could not be fetched; Replicate will retry");
            ApiError::new(ErrorCode::UpstreamUnavailable, "The output could not be fetched yet.")
        }
        CallbackError::NotYet => {
            tracing::info!(generation = %job.generation_id, "callback before the hand-off was recorded; Replicate will retry");
            ApiError::new(ErrorCode::UpstreamUnavailable, "The job is not ready for its callback yet.")
        }
        CallbackError::Port(e) => e.into(),
    })?;
    match &result {
        CallbackResult::Ignored(why) => {
            tracing::info!(generation = %job.generation_id, why, "replicate callback ignored")
        }
        other => tracing::info!(generation = %job.generation_id, result = ?other, "replicate callback handled"),
    }
    Ok(json(StatusCode::OK, &serde_json::json!({})))
}
