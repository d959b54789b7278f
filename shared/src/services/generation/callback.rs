//! The end of a render the worker handed to a provider that calls back (Replicate's webhook, OpenAI's): the
//! output is stored and the job succeeds, or the job fails and is refunded, through the same conditional transitions as
//! the worker's, conditioned on the job awaiting exactly this prediction. A replay, a callback of another
//! prediction, or one for a job the reconciler already failed changes nothing.

use std::sync::Arc;

use super::worker::{discard_unless_recorded, extension};
use super::{REASON_BUSY, REASON_UNAVAILABLE};
use crate::domain::{object_keys, FailFrom, GenerationStatus, Provider, Timings};
use crate::metrics::{Metric, Metrics};
use crate::ports::{
    CallbackEnd, CallbackReader, Clock, FailOutcome, GenerationStore, JobRef, ObjectStore, PortError, ProviderCallback,
    ProviderError, RefusalKind, ResponseReader, Written,
};
use crate::services::notifications::{Ending, Notifications};

/// What a callback did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallbackResult {
    Succeeded {
        output_key: String,
    },
    /// Failed and refunded; `reason` is what the user sees.
    Failed {
        reason: String,
    },
    /// Nothing to do (why, for the logs): an unknown job, a job that awaits no such prediction (finished,
    /// replayed, failed by the reconciler), or an event before the end.
    Ignored(&'static str),
}

#[derive(Debug, thiserror::Error)]
pub enum CallbackError {
    /// Not a callback body at all (400).
    #[error("not a callback: {0}")]
    Malformed(String),
    /// The output could not be fetched now (the provider sends the callback again).
    #[error("the output could not be fetched: {0}")]
    Fetch(String),
    /// The job is still held by the worker that submitted it, which has not recorded the hand-off yet (the
    /// provider called back within milliseconds): answered 503, so the provider sends it again.
    #[error("the job is being handed over")]
    NotYet,
    #[error(transparent)]
    Port(#[from] PortError),
}

/// The webhook function's use case.
pub struct Callbacks {
    /// Tells the user's devices when a job ends.
    pub notifications: Arc<Notifications>,
    pub store: Arc<dyn GenerationStore>,
    pub objects: Arc<dyn ObjectStore>,
    /// Replicate's callbacks and their outputs.
    pub reader: Arc<dyn CallbackReader>,
    /// OpenAI's events and the responses they name.
    pub responses: Arc<dyn ResponseReader>,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<dyn Metrics>,
}

/// What the user reads when the provider's render ended without a result.
fn user_reason(error: &ProviderError) -> String {
    match error {
        ProviderError::Permanent { kind: RefusalKind::Configuration, .. } => REASON_UNAVAILABLE.to_owned(),
        ProviderError::Permanent { user_reason, .. } => user_reason.clone(),
        ProviderError::Transient { .. } => REASON_BUSY.to_owned(),
    }
}

impl Callbacks {
    /// Handles the (signature-verified) Replicate callback `body` about `job`.
    pub async fn handle(&self, job: &JobRef, body: &[u8]) -> Result<CallbackResult, CallbackError> {
        let callback = self.reader.parse(body).map_err(CallbackError::Malformed)?;
        self.finish(job, callback).await
    }

    /// Handles a (signature-verified) OpenAI webhook event: the response it names is read back for the job
    /// (its metadata), its end and its image. The job, when the response is one of this stage's.
    pub async fn handle_openai(&self, body: &[u8]) -> Result<(Option<JobRef>, CallbackResult), CallbackError> {
        let Some(id) = self.responses.event(body).map_err(CallbackError::Malformed)? else {
            return Ok((None, CallbackResult::Ignored("not a response event")));
        };
        let (job, end) = match self.responses.response(&id).await {
            Ok(read) => read,
            Err(ProviderError::Transient { detail, .. }) => return Err(CallbackError::Fetch(detail)),
            Err(e) => {
                tracing::warn!(response = id, error = %e, "openai event about a response that cannot be read");
                return Ok((None, CallbackResult::Ignored("not a readable response")));
            }
        };
        let Some(job) = job else { return Ok((None, CallbackResult::Ignored("not a job of this stage"))) };
        let result = self.finish(&job, ProviderCallback { prediction: id, end }).await?;
        Ok((Some(job), result))
    }

    /// Ends the job `callback` is about, if the job awaits exactly its render.
    async fn finish(&self, job: &JobRef, callback: ProviderCallback) -> Result<CallbackResult, CallbackError> {
        let Some(g) = self.store.generation(&job.user_id, &job.generation_id).await? else {
            return Ok(CallbackResult::Ignored("no such job"));
        };
        if !g.awaits(&callback.prediction) {
            // A worker holding the job without a recorded prediction is between its submit and the hand-off's
            // write: this callback may be for the render it just submitted, so it must come again.
            if g.status == GenerationStatus::Processing && g.prediction.is_none() && g.claim.is_some() {
                return Err(CallbackError::NotYet);
            }
            return Ok(CallbackResult::Ignored("the job awaits no such prediction (finished, or another one)"));
        }
        let prediction = callback.prediction.as_str();
        let image = match callback.end {
            CallbackEnd::Pending => return Ok(CallbackResult::Ignored("not finished yet")),
            CallbackEnd::Image(image) => Ok(image),
            CallbackEnd::Succeeded { output_url } => match self.reader.fetch(&output_url).await {
                Ok(image) => Ok(image),
                // A host outside the allowed ones, an output that is not an image: the render cannot be had.
                Err(error @ ProviderError::Permanent { .. }) => Err(error),
                Err(ProviderError::Transient { detail, .. }) => return Err(CallbackError::Fetch(detail)),
            },
            CallbackEnd::Failed(error) => Err(error),
        };
        let result = match image {
            Ok(image) => {
                let now = self.clock.now();
                let output_key = object_keys::output(&job.user_id, &job.generation_id, extension(&image.content_type));
                self.objects.put(&output_key, image.bytes, &image.content_type).await?;
                let provider_ms = u64::try_from(now - g.started_at.unwrap_or(now)).unwrap_or(0) * 1000;
                let timings = Timings { provider_ms, ..Timings::default() };
                match self.store.succeed_callback(job, prediction, &output_key, timings, now).await? {
                    Written::Yes => {
                        self.metrics.count(Metric::GenerationsSucceeded);
                        tracing::info!(generation = %g.id, prediction, "generation succeeded (callback)");
                        self.notifications.generation_ended(&job.user_id, &g.id, Ending::Succeeded).await;
                        CallbackResult::Succeeded { output_key }
                    }
                    Written::Conflict => {
                        // Finished meanwhile: by a concurrent delivery of this callback (which stored the same
                        // key: keep it) or by the reconciler (the user was refunded: the output must go).
                        let (store, objects) = (self.store.as_ref(), self.objects.as_ref());
                        discard_unless_recorded(store, objects, job, &output_key).await?;
                        return Ok(CallbackResult::Ignored("finished meanwhile"));
                    }
                }
            }
            Err(error) => self.fail(job, prediction, &error).await?,
        };
        // The prepared photo was only for a provider that fetches its input (Replicate's).
        if g.spec.provider == Provider::Replicate {
            let work = object_keys::work(&job.user_id, &job.generation_id);
            if let Err(e) = self.objects.delete(std::slice::from_ref(&work)).await {
                tracing::warn!(error = %e, generation = %g.id, "deleting the prepared photo failed");
            }
        }
        Ok(result)
    }

    async fn fail(&self, job: &JobRef, prediction: &str, error: &ProviderError) -> Result<CallbackResult, PortError> {
        let reason = user_reason(error);
        tracing::info!(generation = %job.generation_id, prediction, error = %error, "provider render ended without a result");
        let from = FailFrom::Callback(prediction.to_owned());
        match self.store.fail_and_refund(job, from, &reason, self.clock.now()).await? {
            FailOutcome::Refunded { .. } => {
                self.metrics.count(Metric::GenerationsFailed);
                self.metrics.count(Metric::GenerationsRefunded);
                if let Some(g) = self.store.generation(&job.user_id, &job.generation_id).await? {
                    self.metrics.record(Metric::CreditsRefunded, g.credits_charged as f64);
                }
                let ending = Ending::Failed { reason: &reason };
                self.notifications.generation_ended(&job.user_id, &job.generation_id, ending).await;
                Ok(CallbackResult::Failed { reason })
            }
            FailOutcome::NotApplicable => Ok(CallbackResult::Ignored("finished meanwhile")),
        }
    }
}
