//! OpenAI's signed webhook: `POST /v1/webhooks/openai`, registered on the stage's OpenAI project for the
//! `response.*` events of background responses, the end of a render the worker handed over. No bearer token:
//! the signature is the authentication. The event names only the response; the response, read back with the
//! OpenAI key, names the job (its metadata) and carries the image.

use std::sync::Arc;

use facemake::adapters::webhooks::WebhookVerifier;
use facemake::http::{json, verify_signed, ApiError, ErrorCode, PathParams, Request, Response, Router};
use facemake::metrics::Metrics;
use facemake::services::generation::callback::{CallbackError, CallbackResult, Callbacks};
use facemake::wiring::Deps;
use lambda_http::http::{Method, StatusCode};
use lambda_http::Body;

pub use facemake::adapters::webhooks::LOCAL_SIGNING_KEY;

/// The largest body read: an event is a few hundred bytes.
const MAX_BODY_BYTES: usize = 64 * 1024;

pub struct State {
    pub callbacks: Callbacks,
    pub verifier: WebhookVerifier,
    pub metrics: Arc<dyn Metrics>,
}

impl State {
    pub fn new(deps: &Deps) -> Self {
        Self {
            callbacks: deps.callbacks(),
            verifier: deps.openai_webhook_verifier(LOCAL_SIGNING_KEY),
            metrics: deps.metrics.clone(),
        }
    }
}

pub fn router(state: Arc<State>) -> Router {
    Router::new().route(Method::POST, "/v1/webhooks/openai", state, event)
}

async fn event(state: Arc<State>, req: Request, _: PathParams) -> Result<Response<Body>, ApiError> {
    let body: &[u8] = req.body().as_ref();
    if body.len() > MAX_BODY_BYTES {
        return Err(ApiError::new(ErrorCode::PayloadTooLarge, "The event is too large."));
    }
    // The signature first: nothing of an unsigned call is read.
    verify_signed(&state.verifier, state.metrics.as_ref(), &req, "openai").await?;
    let (job, result) = state.callbacks.handle_openai(body).await.map_err(|e| match e {
        CallbackError::Malformed(reason) => {
            tracing::warn!(reason, "openai webhook body is not an event");
            ApiError::validation("body", "not an event")
        }
        CallbackError::Fetch(detail) => {
            tracing::warn!(detail, "the response could not be read; OpenAI will send the event again");
            ApiError::new(ErrorCode::UpstreamUnavailable, "The response could not be read yet.")
        }
        CallbackError::NotYet => {
            tracing::info!("event before the hand-off was recorded; OpenAI will send it again");
            ApiError::new(ErrorCode::UpstreamUnavailable, "The job is not ready for its event yet.")
        }
        CallbackError::Port(e) => e.into(),
    })?;
    let generation = job.as_ref().map_or("-", |j| j.generation_id.as_str());
    match &result {
        CallbackResult::Ignored(why) => tracing::info!(generation, why, "openai event ignored"),
        other => tracing::info!(generation, result = ?other, "openai event handled"),
    }
    Ok(json(StatusCode::OK, &serde_json::json!({})))
}
