//! The signature check every provider webhook starts with (Replicate's, OpenAI's): nothing of an unsigned or
//! badly signed call is read, each refusal is counted (`CallbacksRejected`), and the refusal is answered in the
//! envelope: no signature 400, a bad or stale one 401.

use super::{ApiError, ErrorCode, Request};
use crate::adapters::webhooks::{Rejection, WebhookVerifier};
use crate::metrics::{Metric, Metrics};

/// Verifies `req`'s Standard Webhooks signature over its body; `provider` names the caller in the logs.
pub async fn verify_signed(
    verifier: &WebhookVerifier,
    metrics: &dyn Metrics,
    req: &Request,
    provider: &'static str,
) -> Result<(), ApiError> {
    let verdict = verifier.verify(req.headers(), req.body().as_ref()).await?;
    if verdict.is_err() {
        metrics.count(Metric::CallbacksRejected);
    }
    match verdict {
        Ok(()) => Ok(()),
        Err(Rejection::Unsigned(header)) => {
            tracing::warn!(provider, header, "webhook call without a signature");
            Err(ApiError::validation("webhook-signature", "a signed webhook is required"))
        }
        Err(rejection) => {
            tracing::warn!(provider, %rejection, "webhook call refused");
            Err(ApiError::new(ErrorCode::Unauthorized, "The webhook signature is not valid."))
        }
    }
}
