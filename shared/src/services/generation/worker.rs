//! The generation worker: claims a job, prepares the photo, calls the provider with retries, stores the
//! result and succeeds the job, or fails it and refunds the credits exactly once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::start::MAX_UPLOAD_BYTES;
use super::{REASON_BUSY, REASON_MISSING_SOURCE, REASON_MISSING_UPLOAD, REASON_UNAVAILABLE};
use crate::config::GenerationConfig;
use crate::domain::{object_keys, Generation, GenerationSource, Provider, Timings};
use crate::imaging::{prepare, PrepareLimits};
use crate::metrics::{Metric, Metrics};
use crate::ports::{
    ClaimOutcome, Clock, FailFrom, FailOutcome, GenerationStore, ImageProvider, JobRef, ObjectStore, PortError,
    ProviderError, RefusalKind, RenderRequest, Written,
};
use crate::services::notifications::{Ending, Notifications};

/// How long a provider may fetch its input by URL: a render handed over to call back may wait in the
/// provider's queue before it starts and fetches the photo.
const INPUT_URL_SECS: u64 = 3600;

/// The largest earlier output a restyle reads (what the Replicate adapter downloads at most).
pub const MAX_RESTYLE_INPUT_BYTES: u64 = 30 * 1024 * 1024;

/// The image providers by name.
#[derive(Clone)]
pub struct Providers {
    pub openai: Arc<dyn ImageProvider>,
    pub replicate: Arc<dyn ImageProvider>,
}

impl Providers {
    /// One provider for every name (the local renderer).
    pub fn all(provider: Arc<dyn ImageProvider>) -> Self {
        Self { openai: provider.clone(), replicate: provider }
    }

    pub fn get(&self, provider: Provider) -> &Arc<dyn ImageProvider> {
        match provider {
            Provider::Openai => &self.openai,
            Provider::Replicate => &self.replicate,
        }
    }
}

/// How transient provider errors are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Calls in all, the first included.
    pub max_attempts: u32,
    /// The wait before the second call; it doubles for each further one (a provider's Retry-After wins).
    pub first_delay: Duration,
    /// No retry starts after this much time has gone into the provider.
    pub budget: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { max_attempts: 3, first_delay: Duration::from_secs(2), budget: Duration::from_secs(200) }
    }
}

/// What the worker did with a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobResult {
    Succeeded {
        output_key: String,
    },
    /// Failed and refunded; `reason` is what the user sees.
    Failed {
        reason: String,
    },
    /// Finished or held by another worker: nothing was done.
    Skipped,
    /// The job was failed by the reconciler while this worker ran; its output was discarded.
    Lost,
    /// Handed to a provider that calls back: the callback of `prediction` finishes it.
    Submitted {
        prediction: String,
    },
}

/// How a render ended on the worker's side.
#[derive(Debug)]
enum Done {
    /// The output is stored at this key.
    Stored(String, Timings),
    /// The provider took the render and will call back about it.
    Submitted(String),
}

/// What a provider call answered.
enum Rendering {
    Image(crate::ports::RenderedImage),
    Submitted(String),
}

/// The generation worker and the reconciler.
pub struct Worker {
    /// Tells the user's devices when a job ends.
    pub notifications: Arc<Notifications>,
    pub store: Arc<dyn GenerationStore>,
    pub objects: Arc<dyn ObjectStore>,
    pub providers: Providers,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<dyn Metrics>,
    pub config: GenerationConfig,
    pub retry: RetryPolicy,
    pub limits: PrepareLimits,
}

/// The output's file extension for its content type.
pub(super) fn extension(content_type: &str) -> &'static str {
    match content_type {
        "image/jpeg" => "jpg",
        "image/webp" => "webp",
        _ => "png",
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Deletes an output whose success write lost (the job was finished meanwhile), unless the record names that
/// very key (another finisher of the same job stored the same output): worker and callback alike.
pub(super) async fn discard_unless_recorded(
    store: &dyn GenerationStore,
    objects: &dyn ObjectStore,
    job: &JobRef,
    output_key: &str,
) -> Result<(), PortError> {
    let now = store.generation(&job.user_id, &job.generation_id).await?;
    if now.is_none_or(|n| n.output_key.as_deref() != Some(output_key)) {
        objects.delete(&[output_key.to_owned()]).await?;
    }
    Ok(())
}

impl Worker {
    /// Processes one job handed over in-process (the local API): see [`Worker::process_delivery`].
    pub async fn process(&self, job: &JobRef) -> Result<JobResult, PortError> {
        self.process_delivery(job, None).await
    }

    /// Processes one job: claim, prepare the photo, render, store, mark succeeded; or fail and refund.
    /// `delivery` names the stream record that brought the job: a redelivery of the same record takes over
    /// the claim of the invocation that crashed or timed out with it. An `Err` is an infrastructure failure
    /// (the claim is given up, so the redelivery takes the job at once; else the reconciler finishes it).
    pub async fn process_delivery(&self, job: &JobRef, delivery: Option<&str>) -> Result<JobResult, PortError> {
        let token = crate::crypto::random_token().map_err(|e| PortError::internal("worker", e))?;
        let now = self.clock.now();
        let g = match self.store.claim(job, &token, delivery, now + self.config.claim_secs, now).await? {
            ClaimOutcome::Claimed(g) => g,
            ClaimOutcome::NotClaimable(g) => {
                tracing::info!(generation = %g.id, status = g.status.as_str(), "job not claimable; skipped");
                return Ok(JobResult::Skipped);
            }
            ClaimOutcome::Missing => {
                tracing::warn!(generation = %job.generation_id, "job record missing; skipped");
                return Ok(JobResult::Skipped);
            }
        };
        let queued_ms = u64::try_from(now.saturating_sub(g.created_at)).unwrap_or(0) * 1000;
        tracing::info!(generation = %g.id, template = %g.template_id, attempt = g.attempts, "job claimed");
        let work_key = object_keys::work(&g.user_id, &g.id);
        let result = self.render(&g, &work_key).await;
        // The prepared photo is only for a provider that fetches it: drop it whatever happened, beside the
        // job's last write rather than before it (the lifecycle rule is the backstop). Not when the provider
        // took the render to call back about: it fetches the photo when it starts, and the callback drops it.
        let submitted = matches!(result, Ok(Ok(Done::Submitted(_))));
        let cleanup = async {
            if self.providers.get(g.spec.provider).needs_image_url() && !submitted {
                if let Err(e) = self.objects.delete(std::slice::from_ref(&work_key)).await {
                    tracing::warn!(error = %e, generation = %g.id, "deleting the prepared photo failed");
                }
            }
        };
        let (outcome, ()) = tokio::join!(self.finish(job, &token, &g, queued_ms, result), cleanup);
        outcome
    }

    /// The job's last write: succeeded, or failed and refunded; the claim given up after an infrastructure
    /// error.
    async fn finish(
        &self,
        job: &JobRef,
        token: &str,
        g: &Generation,
        queued_ms: u64,
        result: Result<Result<Done, String>, PortError>,
    ) -> Result<JobResult, PortError> {
        let token = token.to_owned();
        let result = match result {
            Ok(r) => r,
            Err(e) => return Err(self.release(job, &token, e).await),
        };
        match result {
            Err(reason) => self.fail(job, &token, &reason, g.credits_charged).await,
            Ok(Done::Submitted(prediction)) => {
                match self.store.await_callback(job, &token, &prediction, self.clock.now()).await {
                    Ok(Written::Yes) => {
                        tracing::info!(generation = %g.id, prediction, "handed to the provider; awaiting its callback");
                        Ok(JobResult::Submitted { prediction })
                    }
                    // Failed and refunded by the reconciler meanwhile: the provider's callback will find the job
                    // awaiting nothing and change nothing.
                    Ok(Written::Conflict) => {
                        tracing::warn!(generation = %g.id, prediction, "claim lost before the hand-off was recorded");
                        Ok(JobResult::Lost)
                    }
                    // No answer: the write may have landed. Read it back before giving the claim up, because a
                    // redelivery would submit the render again (a second prediction, billed by the provider).
                    Err(e) => match self.store.generation(&job.user_id, &job.generation_id).await {
                        Ok(Some(now)) if now.awaits(&prediction) => Ok(JobResult::Submitted { prediction }),
                        _ => Err(self.release(job, &token, e).await),
                    },
                }
            }
            Ok(Done::Stored(output_key, mut timings)) => {
                timings.queued_ms = queued_ms;
                let written = match self.store.succeed(job, &token, &output_key, timings, self.clock.now()).await {
                    Ok(w) => w,
                    Err(e) => return Err(self.release(job, &token, e).await),
                };
                match written {
                    Written::Yes => {
                        self.metrics.count(Metric::GenerationsSucceeded);
                        tracing::info!(
                            generation = %g.id,
                            prepare_ms = timings.prepare_ms,
                            provider_ms = timings.provider_ms,
                            store_ms = timings.store_ms,
                            "generation succeeded"
                        );
                        self.notifications.generation_ended(&job.user_id, &g.id, Ending::Succeeded).await;
                        Ok(JobResult::Succeeded { output_key })
                    }
                    Written::Conflict => {
                        // The job was failed and refunded meanwhile (or deleted with the account): the output
                        // must not appear. Unless another worker took the claim over and finished with the same
                        // key, it is ours to remove.
                        tracing::warn!(generation = %g.id, "claim lost before completion; output discarded");
                        discard_unless_recorded(self.store.as_ref(), self.objects.as_ref(), job, &output_key).await?;
                        Ok(JobResult::Lost)
                    }
                }
            }
        }
    }

    /// Gives up the claim after an infrastructure error, so Lambda's redelivery of the record can take the
    /// job at once instead of finding it held (and the reconciler refunding it only at the deadline).
    async fn release(&self, job: &JobRef, token: &str, error: PortError) -> PortError {
        tracing::error!(generation = %job.generation_id, error = %error, "infrastructure error; claim released");
        if let Err(e) = self.store.release(job, token, self.clock.now()).await {
            tracing::error!(generation = %job.generation_id, error = %e, "releasing the claim failed");
        }
        error
    }

    /// Fails the claimed job and refunds its `credits` (what it was charged).
    async fn fail(&self, job: &JobRef, token: &str, reason: &str, credits: u64) -> Result<JobResult, PortError> {
        match self.store.fail_and_refund(job, FailFrom::Claim(token.to_owned()), reason, self.clock.now()).await? {
            FailOutcome::Refunded { balance } => {
                self.metrics.count(Metric::GenerationsFailed);
                self.metrics.count(Metric::GenerationsRefunded);
                self.metrics.record(Metric::CreditsRefunded, credits as f64);
                tracing::info!(generation = %job.generation_id, balance, reason, "generation failed; refunded");
                self.notifications.generation_ended(&job.user_id, &job.generation_id, Ending::Failed { reason }).await;
                Ok(JobResult::Failed { reason: reason.to_owned() })
            }
            FailOutcome::NotApplicable => Ok(JobResult::Lost),
        }
    }

    /// The job's input photos, prepared: a character's were prepared when it was made and are read as they
    /// are (only their URLs when the provider fetches its input); an upload or a parent's output is prepared
    /// here, and stored at `work_key` for a provider that fetches it. `Ok(Err(reason))` when an input is gone
    /// or unusable.
    async fn inputs(
        &self,
        g: &Generation,
        provider: &dyn ImageProvider,
        work_key: &str,
    ) -> Result<Result<(Vec<Vec<u8>>, Vec<String>), String>, PortError> {
        let missing = || match g.source {
            GenerationSource::Upload(_) => REASON_MISSING_UPLOAD.to_owned(),
            _ => REASON_MISSING_SOURCE.to_owned(),
        };
        let now = self.clock.now();
        if g.inputs_prepared() {
            let keys = g.inputs();
            if provider.needs_image_url() {
                // Only a URL each; the objects are checked, since a presigned URL of a missing one still signs.
                let mut urls = Vec::with_capacity(keys.len());
                for key in &keys {
                    if self.objects.head(key).await?.is_none() {
                        return Ok(Err(missing()));
                    }
                    urls.push(self.objects.presign_download(key, INPUT_URL_SECS, now).await?);
                }
                return Ok(Ok((Vec::new(), urls)));
            }
            let reads =
                futures_util::future::join_all(keys.iter().map(|k| self.objects.get(k, MAX_UPLOAD_BYTES))).await;
            let mut images = Vec::with_capacity(keys.len());
            for read in reads {
                match read? {
                    Some(bytes) => images.push(bytes),
                    None => return Ok(Err(missing())),
                }
            }
            return Ok(Ok((images, Vec::new())));
        }
        let Some(input_key) = g.inputs().into_iter().next() else { return Ok(Err(missing())) };
        // A parent's output is the provider's, which may be larger than an upload may be (the pixel limit
        // still bounds the decode).
        let max_bytes = match g.source {
            GenerationSource::Generation(_) => MAX_RESTYLE_INPUT_BYTES,
            _ => MAX_UPLOAD_BYTES,
        };
        let Some(original) = self.objects.get(&input_key, max_bytes).await? else {
            return Ok(Err(missing()));
        };
        let limits = PrepareLimits { max_input_bytes: max_bytes, ..self.limits.clone() };
        let prepared = tokio::task::spawn_blocking(move || prepare(&original, &limits))
            .await
            .map_err(|e| PortError::internal("worker", e))?;
        let prepared = match prepared {
            Ok(p) => p,
            Err(e) => {
                tracing::info!(generation = %g.id, error = %e, "upload is not a usable photo");
                return Ok(Err(format!("{} Your credits were refunded.", e.user_reason())));
            }
        };
        let urls = if provider.needs_image_url() {
            self.objects.put(work_key, prepared.jpeg.clone(), "image/jpeg").await?;
            vec![self.objects.presign_download(work_key, INPUT_URL_SECS, now).await?]
        } else {
            Vec::new()
        };
        Ok(Ok((vec![prepared.jpeg], urls)))
    }

    /// The render itself: `Ok(Err(reason))` is a permanent failure to refund, `Err` an infrastructure error.
    async fn render(&self, g: &Generation, work_key: &str) -> Result<Result<Done, String>, PortError> {
        let mut timings = Timings::default();
        let started = Instant::now();
        let provider = self.providers.get(g.spec.provider);
        let (images, image_urls) = match self.inputs(g, provider.as_ref(), work_key).await? {
            Ok(inputs) => inputs,
            Err(reason) => return Ok(Err(reason)),
        };
        timings.prepare_ms = millis(started.elapsed());
        let request = RenderRequest {
            spec: &g.spec,
            images: &images,
            image_urls: &image_urls,
            job_id: &g.id,
            time_left: self.retry.budget,
        };
        // A provider that calls back is handed the render when the stage takes its callbacks: Replicate's webhook
        // URL names the job; OpenAI's webhook is the project's, so the job goes into the response's metadata.
        let job = JobRef { user_id: g.user_id.clone(), generation_id: g.id.clone() }.reference();
        let callback = match (g.spec.provider, &self.config.replicate_webhook_url) {
            _ if !provider.calls_back() => None,
            (Provider::Replicate, Some(base)) => Some(format!("{base}?job={job}")),
            (Provider::Openai, _) if self.config.openai_webhooks => Some(job),
            _ => None,
        };
        let provider_started = Instant::now();
        let rendered = self.call_with_retries(provider.as_ref(), request, &g.id, callback.as_deref()).await;
        timings.provider_ms = millis(provider_started.elapsed());
        self.metrics.record(Metric::ProviderLatency, timings.provider_ms as f64);
        let rendered = match rendered {
            Ok(Rendering::Image(r)) => r,
            Ok(Rendering::Submitted(prediction)) => return Ok(Ok(Done::Submitted(prediction))),
            Err(reason) => return Ok(Err(reason)),
        };
        let store_started = Instant::now();
        let output_key = object_keys::output(&g.user_id, &g.id, extension(&rendered.content_type));
        self.objects.put(&output_key, rendered.bytes, &rendered.content_type).await?;
        timings.store_ms = millis(store_started.elapsed());
        Ok(Ok(Done::Stored(output_key, timings)))
    }

    /// Calls the provider (a render, or with a `callback` URL a submission), retrying transient errors
    /// within the policy; `Err` is the reason shown to the user.
    async fn call_with_retries(
        &self,
        provider: &dyn ImageProvider,
        request: RenderRequest<'_>,
        generation: &str,
        callback: Option<&str>,
    ) -> Result<Rendering, String> {
        let started = Instant::now();
        let mut delay = self.retry.first_delay;
        for attempt in 1..=self.retry.max_attempts {
            // Every call ends within the budget, so the whole job ends well inside the worker's timeout.
            let remaining = self.retry.budget.saturating_sub(started.elapsed());
            let request = RenderRequest { time_left: remaining, ..request };
            let call = async {
                match callback {
                    Some(url) => provider.submit(request, url).await.map(Rendering::Submitted),
                    None => provider.render(request).await.map(Rendering::Image),
                }
            };
            let result = match tokio::time::timeout(remaining, call).await {
                Ok(result) => result,
                Err(_) => {
                    tracing::warn!(generation, attempt, "provider call ran out of the time budget");
                    break;
                }
            };
            match result {
                Ok(image) => return Ok(image),
                Err(ProviderError::Permanent { kind, user_reason, detail }) => {
                    if kind == RefusalKind::Configuration {
                        tracing::error!(generation, detail, "provider refused: configuration");
                        return Err(REASON_UNAVAILABLE.to_owned());
                    }
                    tracing::info!(generation, ?kind, detail, "provider refused");
                    return Err(user_reason);
                }
                Err(ProviderError::Transient { detail, retry_after_secs }) => {
                    let wait = retry_after_secs.map_or(delay, Duration::from_secs);
                    let out_of_budget = started.elapsed() + wait > self.retry.budget;
                    tracing::warn!(generation, attempt, detail, "provider error; retrying if the budget allows");
                    if attempt == self.retry.max_attempts || out_of_budget {
                        break;
                    }
                    tokio::time::sleep(wait).await;
                    delay = delay.saturating_mul(2);
                }
            }
        }
        Err(REASON_BUSY.to_owned())
    }
}
