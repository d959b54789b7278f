//! The generation pipeline: uploads, starting a paid generation, reading and deleting them (the generate
//! function), processing a job (the worker) and failing jobs that outlived their deadline (the reconciler).

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::GenerationConfig;
use crate::domain::{
    new_id, object_keys, Generation, GenerationStatus, Provider, TemplateId, Timings, UploadId, UserId,
};
use crate::imaging::{prepare, PrepareLimits};
use crate::metrics::{Metric, Metrics};
use crate::ports::{
    ClaimOutcome, Clock, CreditsStore, DeleteOutcome, FailFrom, FailOutcome, GenerationPage, GenerationStore,
    IdempotencyRecord, ImageProvider, JobRef, NewGeneration, ObjectStore, PortError, PresignedUpload, ProviderError,
    RefusalKind, RenderRequest, StartOutcome, Written,
};
use crate::services::catalogue::CatalogueService;

/// The largest photo the app may upload.
pub const MAX_UPLOAD_BYTES: u64 = 10 * 1024 * 1024;

/// Hands a started generation to the worker.
pub trait Dispatcher: Send + Sync {
    fn dispatch(&self, job: JobRef);
}

/// Deployed: inserting the record into the generations table *is* the hand-off (its stream triggers the
/// worker), so there is nothing left to do.
pub struct TableStream;

impl Dispatcher for TableStream {
    fn dispatch(&self, _: JobRef) {}
}

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("content type not accepted")]
    UnsupportedType,
    #[error("HEIC is not accepted")]
    Heic,
    #[error("empty upload")]
    Empty,
    #[error("upload too large")]
    TooLarge,
    #[error(transparent)]
    Port(#[from] PortError),
}

/// A created upload slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    pub upload_id: UploadId,
    pub presigned: PresignedUpload,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("no such active template")]
    UnknownTemplate,
    #[error("no uploaded photo under this id")]
    NoUpload,
    #[error("insufficient credits")]
    Insufficient { balance: u64, cost: u64 },
    #[error("too many generations in flight")]
    TooManyInFlight,
    #[error("idempotency key reused with another request")]
    KeyReused,
    #[error("idempotency key belongs to a generation that was deleted")]
    KeyOfDeletedGeneration,
    #[error("the account is being deleted")]
    AccountDeleted,
    #[error(transparent)]
    Port(#[from] PortError),
}

/// A started (or replayed) generation and the balance right after its charge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Started {
    pub generation: Generation,
    pub balance: u64,
    /// True when this answers a repeat of an earlier request with the same idempotency key.
    pub replayed: bool,
}

/// The generate function's use cases.
pub struct Generations {
    pub store: Arc<dyn GenerationStore>,
    /// The balance, read beside the other reads of a start so the charge need not read it again.
    pub credits: Arc<dyn CreditsStore>,
    pub objects: Arc<dyn ObjectStore>,
    pub catalogue: Arc<CatalogueService>,
    pub dispatcher: Arc<dyn Dispatcher>,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<dyn Metrics>,
    pub config: GenerationConfig,
}

/// The fields of a generation as they were when it started: what a replayed request answers with.
fn as_started(mut g: Generation) -> Generation {
    g.status = GenerationStatus::Queued;
    g.refunded = false;
    g.output_key = None;
    g.failure_reason = None;
    g.started_at = None;
    g.completed_at = None;
    g.attempts = 0;
    g.claim = None;
    g.claim_until = None;
    g.claim_delivery = None;
    g.timings = None;
    g
}

fn hex_sha256(parts: &[&str]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, parts.join("\u{1f}").as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

impl Generations {
    /// A presigned upload of `content_length` bytes of `content_type` under the user's prefix.
    pub async fn create_upload(
        &self,
        user: &UserId,
        content_type: &str,
        content_length: u64,
    ) -> Result<Upload, UploadError> {
        match content_type {
            "image/jpeg" | "image/png" => {}
            // The contract lists HEIC, but nothing on Lambda decodes it; refusing here beats charging for a
            // job that must fail. The app sends JPEG (iOS converts natively).
            "image/heic" => return Err(UploadError::Heic),
            _ => return Err(UploadError::UnsupportedType),
        }
        if content_length == 0 {
            return Err(UploadError::Empty);
        }
        if content_length > MAX_UPLOAD_BYTES {
            return Err(UploadError::TooLarge);
        }
        let upload_id = UploadId::new();
        let key = object_keys::upload(user, &upload_id);
        let presigned = self
            .objects
            .presign_upload(&key, content_type, content_length, self.config.upload_url_secs, self.clock.now())
            .await?;
        Ok(Upload { upload_id, presigned })
    }

    /// Charges and queues a generation of `upload` in `template`'s style, once per idempotency key.
    /// `account_deleted` is the caller's deleted-account check: it runs beside the reads a start makes (the
    /// idempotency record, the upload, the balance, the catalogue), and nothing is written unless it answers
    /// `false`. So a start waits on two round trips: those reads together, then one transaction.
    pub async fn start(
        &self,
        user: &UserId,
        idempotency_key: &str,
        template: &TemplateId,
        upload: &UploadId,
        account_deleted: impl std::future::Future<Output = Result<bool, PortError>>,
    ) -> Result<Started, StartError> {
        let key_hash = hex_sha256(&[idempotency_key]);
        let request_hash = hex_sha256(&["POST /v1/generations", template.as_str(), upload.as_str()]);
        let upload_key = object_keys::upload(user, upload);
        let (deleted, record, snapshot, head, balance) = tokio::join!(
            account_deleted,
            self.store.idempotency_record(user, &key_hash),
            self.catalogue.snapshot(),
            self.objects.head(&upload_key),
            self.credits.balance(user),
        );
        if deleted? {
            return Err(StartError::AccountDeleted);
        }
        // A repeat answers from the record without touching the balance (the other reads go unused).
        if let Some(record) = record? {
            return self.replay(user, &record, &request_hash).await;
        }
        let snapshot = snapshot?;
        let template = snapshot.get(template).ok_or(StartError::UnknownTemplate)?;
        if head?.is_none() {
            return Err(StartError::NoUpload);
        }
        let now = self.clock.now();
        let generation = Generation {
            id: new_id(),
            user_id: user.clone(),
            template_id: template.id.clone(),
            upload_id: upload.clone(),
            spec: template.generation.clone(),
            status: GenerationStatus::Queued,
            credits_charged: template.cost_credits,
            refunded: false,
            output_key: None,
            failure_reason: None,
            created_at: now,
            deadline: now + self.config.deadline_secs,
            started_at: None,
            completed_at: None,
            attempts: 0,
            claim: None,
            claim_until: None,
            claim_delivery: None,
            timings: None,
        };
        let new = NewGeneration {
            generation: generation.clone(),
            idempotency: IdempotencyRecord {
                key_hash: key_hash.clone(),
                request_hash: request_hash.clone(),
                generation_id: generation.id.clone(),
                balance: 0,
                created_at: now,
            },
            max_in_flight: self.config.max_in_flight,
            balance_read: Some(balance?),
        };
        match self.store.start_generation(&new, now).await? {
            StartOutcome::Started { balance } => {
                self.metrics.count(Metric::GenerationsStarted);
                self.metrics.record(Metric::CreditsSpent, generation.credits_charged as f64);
                self.dispatcher.dispatch(JobRef { user_id: user.clone(), generation_id: generation.id.clone() });
                Ok(Started { generation, balance, replayed: false })
            }
            StartOutcome::KeyUsed(record) => self.replay(user, &record, &request_hash).await,
            StartOutcome::Insufficient { balance } => {
                // A concurrent request with the same key may have taken the last credits: it answers for both.
                match self.store.idempotency_record(user, &key_hash).await? {
                    Some(record) => self.replay(user, &record, &request_hash).await,
                    None => Err(StartError::Insufficient { balance, cost: generation.credits_charged }),
                }
            }
            StartOutcome::TooManyInFlight => Err(StartError::TooManyInFlight),
        }
    }

    async fn replay(
        &self,
        user: &UserId,
        record: &IdempotencyRecord,
        request_hash: &str,
    ) -> Result<Started, StartError> {
        if record.request_hash != request_hash {
            return Err(StartError::KeyReused);
        }
        match self.store.generation(user, &record.generation_id).await? {
            Some(g) => Ok(Started { generation: as_started(g), balance: record.balance, replayed: true }),
            None => Err(StartError::KeyOfDeletedGeneration),
        }
    }

    pub async fn get(&self, user: &UserId, id: &str) -> Result<Option<Generation>, PortError> {
        self.store.generation(user, id).await
    }

    pub async fn page(&self, user: &UserId, limit: usize, before: Option<&str>) -> Result<GenerationPage, PortError> {
        self.store.generations_page(user, limit, before).await
    }

    /// A short-lived download URL of a succeeded generation's output.
    pub async fn output_url(&self, g: &Generation) -> Result<Option<String>, PortError> {
        match (&g.status, &g.output_key) {
            (GenerationStatus::Succeeded, Some(key)) => {
                Ok(Some(self.objects.presign_download(key, self.config.output_url_secs, self.clock.now()).await?))
            }
            _ => Ok(None),
        }
    }

    /// Deletes a finished generation: its images first (the photo it was made from, any prepared copy, the
    /// output), then the record, so a failure half-way leaves a record the user can delete again rather than
    /// an image nobody can reach. Other generations of the same photo that are still queued then fail and
    /// are refunded (the photo is gone, as the user asked).
    pub async fn delete(&self, user: &UserId, id: &str) -> Result<DeleteOutcome, PortError> {
        match self.store.generation(user, id).await? {
            Some(g) => self.delete_found(user, g).await,
            None => Ok(DeleteOutcome::NotFound),
        }
    }

    /// [`Generations::delete`] of a generation the caller has read (with [`Generations::get`]).
    pub async fn delete_found(&self, user: &UserId, g: Generation) -> Result<DeleteOutcome, PortError> {
        let id = g.id.as_str();
        if g.status.in_flight() {
            return Ok(DeleteOutcome::InFlight);
        }
        let mut keys = vec![object_keys::upload(user, &g.upload_id), object_keys::work(user, &g.id)];
        keys.extend(g.output_key.clone());
        self.objects.delete(&keys).await?;
        self.store.delete_generation(user, id).await
    }
}

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
}

pub const REASON_BUSY: &str = "The image service is busy right now. Your credits were refunded; please try again.";
pub const REASON_MISSING_UPLOAD: &str =
    "The photo for this generation was not found (uploads are kept for a day). Your credits were refunded.";
pub const REASON_TIMED_OUT: &str = "This generation took too long and was stopped. Your credits were refunded.";
pub const REASON_UNAVAILABLE: &str = "This style is temporarily unavailable. Your credits were refunded.";

/// The generation worker and the reconciler.
pub struct Worker {
    pub store: Arc<dyn GenerationStore>,
    pub objects: Arc<dyn ObjectStore>,
    pub providers: Providers,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<dyn Metrics>,
    pub config: GenerationConfig,
    pub retry: RetryPolicy,
    pub limits: PrepareLimits,
}

fn extension(content_type: &str) -> &'static str {
    match content_type {
        "image/jpeg" => "jpg",
        "image/webp" => "webp",
        _ => "png",
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
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
        // job's last write rather than before it (the lifecycle rule is the backstop).
        let cleanup = async {
            if self.providers.get(g.spec.provider).needs_image_url() {
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
        result: Result<Result<(String, Timings), String>, PortError>,
    ) -> Result<JobResult, PortError> {
        let token = token.to_owned();
        let result = match result {
            Ok(r) => r,
            Err(e) => return Err(self.release(job, &token, e).await),
        };
        match result {
            Err(reason) => self.fail(job, &token, &reason, g.credits_charged).await,
            Ok((output_key, mut timings)) => {
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
                        Ok(JobResult::Succeeded { output_key })
                    }
                    Written::Conflict => {
                        // The job was failed and refunded meanwhile (or deleted with the account): the output
                        // must not appear. Unless another worker took the claim over and finished with the same
                        // key, it is ours to remove.
                        tracing::warn!(generation = %g.id, "claim lost before completion; output discarded");
                        let now = self.store.generation(&job.user_id, &job.generation_id).await?;
                        let theirs = now.is_some_and(|n| n.output_key.as_deref() == Some(output_key.as_str()));
                        if !theirs {
                            self.objects.delete(std::slice::from_ref(&output_key)).await?;
                        }
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
                Ok(JobResult::Failed { reason: reason.to_owned() })
            }
            FailOutcome::NotApplicable => Ok(JobResult::Lost),
        }
    }

    /// The render itself: `Ok(Err(reason))` is a permanent failure to refund, `Err` an infrastructure error.
    async fn render(&self, g: &Generation, work_key: &str) -> Result<Result<(String, Timings), String>, PortError> {
        let mut timings = Timings::default();
        let started = Instant::now();
        let upload_key = object_keys::upload(&g.user_id, &g.upload_id);
        let Some(original) = self.objects.get(&upload_key, MAX_UPLOAD_BYTES).await? else {
            return Ok(Err(REASON_MISSING_UPLOAD.to_owned()));
        };
        let limits = self.limits.clone();
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
        let provider = self.providers.get(g.spec.provider);
        let image_url = if provider.needs_image_url() {
            self.objects.put(work_key, prepared.jpeg.clone(), "image/jpeg").await?;
            Some(self.objects.presign_download(work_key, 900, self.clock.now()).await?)
        } else {
            None
        };
        timings.prepare_ms = millis(started.elapsed());
        let request = RenderRequest {
            spec: &g.spec,
            image: &prepared.jpeg,
            image_url: image_url.as_deref(),
            job_id: &g.id,
            time_left: self.retry.budget,
        };
        let provider_started = Instant::now();
        let rendered = self.call_with_retries(provider.as_ref(), request, &g.id).await;
        timings.provider_ms = millis(provider_started.elapsed());
        self.metrics.record(Metric::ProviderLatency, timings.provider_ms as f64);
        let rendered = match rendered {
            Ok(r) => r,
            Err(reason) => return Ok(Err(reason)),
        };
        let store_started = Instant::now();
        let output_key = object_keys::output(&g.user_id, &g.id, extension(&rendered.content_type));
        self.objects.put(&output_key, rendered.bytes, &rendered.content_type).await?;
        timings.store_ms = millis(store_started.elapsed());
        Ok(Ok((output_key, timings)))
    }

    /// Calls the provider, retrying transient errors within the policy; `Err` is the reason shown to the user.
    async fn call_with_retries(
        &self,
        provider: &dyn ImageProvider,
        request: RenderRequest<'_>,
        generation: &str,
    ) -> Result<crate::ports::RenderedImage, String> {
        let started = Instant::now();
        let mut delay = self.retry.first_delay;
        for attempt in 1..=self.retry.max_attempts {
            // Every call ends within the budget, so the whole job ends well inside the worker's timeout.
            let remaining = self.retry.budget.saturating_sub(started.elapsed());
            let request = RenderRequest { time_left: remaining, ..request };
            let result = match tokio::time::timeout(remaining, provider.render(request)).await {
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

    /// Fails and refunds every job past its deadline that no live claim holds. Returns how many. One job
    /// that cannot be refunded is logged and skipped, never a reason to leave the others stuck.
    pub async fn reconcile(&self) -> Result<usize, PortError> {
        const PAGE: usize = 100;
        let now = self.clock.now();
        let mut refunded = 0;
        // Bounded: a run handles at most 10 pages; the next run (minutes later) takes the rest. Each page
        // starts after the last, so jobs that cannot be refunded yet (a live claim past the deadline, an
        // error) never hold back the ones behind them.
        let mut after = None;
        for _ in 0..10 {
            let page = self.store.overdue(now, PAGE, after.as_ref()).await?;
            let mut in_page = 0;
            for job in &page.jobs {
                match self.store.fail_and_refund(job, FailFrom::DeadlinePassed(now), REASON_TIMED_OUT, now).await {
                    Ok(FailOutcome::Refunded { balance }) => {
                        in_page += 1;
                        self.metrics.count(Metric::GenerationsTimedOut);
                        self.metrics.count(Metric::GenerationsFailed);
                        self.metrics.count(Metric::GenerationsRefunded);
                        // The refund gave back what the job was charged; the record (now failed) says how much.
                        match self.store.generation(&job.user_id, &job.generation_id).await {
                            Ok(Some(g)) => self.metrics.record(Metric::CreditsRefunded, g.credits_charged as f64),
                            // Gone already (the account was deleted meanwhile) or unreadable: the refund stands,
                            // only its amount is missing from the metric.
                            Ok(None) => {}
                            Err(e) => tracing::warn!(
                                generation = %job.generation_id,
                                error = %e,
                                "reading a refunded job for its credits failed; CreditsRefunded not recorded"
                            ),
                        }
                        tracing::warn!(generation = %job.generation_id, balance, "overdue job failed and refunded");
                    }
                    Ok(FailOutcome::NotApplicable) => {}
                    Err(e) => {
                        tracing::error!(generation = %job.generation_id, error = %e, "refunding an overdue job failed")
                    }
                }
            }
            refunded += in_page;
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        Ok(refunded)
    }
}
