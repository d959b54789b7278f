//! Renders finished by the provider's callback: the worker hands the render over and returns, the callback of
//! that prediction finishes the job once (stored output, or a refund), replays and strangers change nothing, and
//! the reconciler refunds a job whose callback never came — on the in-memory store and on DynamoDB Local.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use facemake::adapters::providers::hosts::DownloadHosts;
use facemake::adapters::providers::replicate::ReplicatePredictions;
use facemake::adapters::providers::{ProviderCredentials, ProviderKeys};
use facemake::domain::{
    object_keys, GenerationSource, GenerationStatus, LedgerEntry, LedgerKind, PhoneNumber, TemplateId, UploadId, UserId,
};
use facemake::ports::{ImageProvider, JobRef, NewUser, ObjectStore, ProviderError, RenderRequest, RenderedImage};
use facemake::services::generation::callback::{CallbackError, CallbackResult, Callbacks};
use facemake::services::generation::{JobResult, Providers, Worker};
use facemake::wiring::Store;
use serde_json::{json, Value};
use testkit::Harness;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

testkit::store_contract!(
    a_submitted_job_awaits_its_callback_and_no_worker_claims_it,
    a_success_callback_stores_the_output_once_and_a_replay_changes_nothing,
    a_failure_callback_refunds_exactly_once,
    a_callback_of_another_prediction_or_job_changes_nothing,
    a_job_whose_callback_never_came_is_refunded_by_the_reconciler_and_a_late_callback_changes_nothing,
    an_output_that_cannot_be_fetched_yet_leaves_the_job_awaiting,
    a_callback_before_the_hand_off_is_recorded_is_asked_again,
    a_hand_off_whose_answer_is_lost_is_read_back_and_not_submitted_again,
);

const HOOK: &str = "https://api.example.test/v1/webhooks/replicate";

/// A provider that takes renders to call back about: each submission gets the next prediction id.
#[derive(Default)]
struct Submitting {
    submitted: Mutex<Vec<(String, Vec<String>)>>,
}

#[async_trait]
impl ImageProvider for Submitting {
    fn needs_image_url(&self) -> bool {
        true
    }
    async fn render(&self, _: RenderRequest<'_>) -> Result<RenderedImage, ProviderError> {
        panic!("a provider that calls back is never waited for when the stage has a webhook URL");
    }
    fn calls_back(&self) -> bool {
        true
    }
    async fn submit(&self, request: RenderRequest<'_>, callback_url: &str) -> Result<String, ProviderError> {
        let mut submitted = self.submitted.lock().unwrap();
        submitted.push((callback_url.to_owned(), request.image_urls.to_vec()));
        Ok(format!("p{}", submitted.len()))
    }
}

struct World {
    h: Harness,
    store: Arc<dyn Store>,
    user: UserId,
    worker: Worker,
    provider: Arc<Submitting>,
    callbacks: Callbacks,
    server: MockServer,
}

fn unique_phone() -> PhoneNumber {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1000);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    PhoneNumber::parse(&format!("+1415555{n:04}"), None).unwrap()
}

fn png() -> Vec<u8> {
    let mut bytes = Vec::new();
    image::RgbImage::from_pixel(8, 8, image::Rgb([200, 10, 10]))
        .write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png)
        .unwrap();
    bytes
}

async fn world(store: Arc<dyn Store>) -> World {
    let mut h = Harness::over(store.clone());
    h.deps.generation.replicate_webhook_url = Some(HOOK.to_owned());
    let path_ = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../infra/catalogue/catalogue.yaml");
    facemake::services::catalogue::seed_catalogue(store.as_ref(), &path_).await.unwrap();
    let user = UserId::new();
    let grant = LedgerEntry::new(LedgerKind::Grant, 5, 5, "starter-grant", 1);
    let new = NewUser {
        id: user.clone(),
        phone: unique_phone(),
        created_at: 1,
        starter_grant: Some(grant),
        number_key: None,
    };
    store.create_user(&new).await.unwrap();
    let provider = Arc::new(Submitting::default());
    let mut worker = h.deps.worker();
    worker.providers = Providers::all(provider.clone());
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/files/out.png"))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(png()))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/files/busy.png"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&server)
        .await;
    let reader = ReplicatePredictions::new(
        server.uri(),
        ProviderCredentials::fixed(ProviderKeys { openai_api_key: None, replicate_api_token: None }),
    )
    .with_poll_interval(std::time::Duration::from_millis(5))
    .with_output_hosts(DownloadHosts::parse(&server.uri()).unwrap());
    let mut callbacks = h.deps.callbacks();
    callbacks.store = store.clone();
    callbacks.reader = Arc::new(reader);
    World { h, store, user, worker, provider, callbacks, server }
}

impl World {
    /// A generation of the Replicate template, started and handed to the worker: the job and its prediction.
    async fn submitted(&self, key: &str) -> (JobRef, String) {
        let upload = UploadId::new();
        self.h
            .objects
            .put(&object_keys::upload(&self.user, &upload), testkit::camera_photo(64, 48), "image/jpeg")
            .await
            .unwrap();
        let generations = self.h.deps.generations(Arc::new(self.h.deps.catalogue_service()));
        let template = TemplateId::parse("golden-hour").unwrap();
        let started = generations
            .start(&self.user, key, &template, &GenerationSource::Upload(upload), std::future::ready(Ok(false)))
            .await
            .unwrap();
        let job = JobRef { user_id: self.user.clone(), generation_id: started.generation.id.clone() };
        match self.worker.process_delivery(&job, Some(&format!("evt-{key}"))).await.unwrap() {
            JobResult::Submitted { prediction } => (job, prediction),
            other => panic!("not handed over: {other:?}"),
        }
    }

    fn body(&self, prediction: &str, status: &str, output: &str) -> Vec<u8> {
        let output =
            if output.is_empty() { Value::Null } else { json!([format!("{}/files/{output}", self.server.uri())]) };
        let error = if status == "failed" { json!("NSFW content detected") } else { Value::Null };
        serde_json::to_vec(&json!({"id": prediction, "status": status, "output": output, "error": error, "urls": {}}))
            .unwrap()
    }

    async fn record(&self, job: &JobRef) -> facemake::domain::Generation {
        self.store.generation(&job.user_id, &job.generation_id).await.unwrap().unwrap()
    }

    async fn balance(&self) -> u64 {
        self.store.balance(&self.user).await.unwrap()
    }
}

async fn a_submitted_job_awaits_its_callback_and_no_worker_claims_it(store: Arc<dyn Store>) {
    let w = world(store).await;
    let (job, prediction) = w.submitted("a").await;
    let g = w.record(&job).await;
    assert_eq!(
        (g.status, g.prediction.as_deref(), g.claim.as_deref()),
        (GenerationStatus::Processing, Some(prediction.as_str()), None)
    );
    assert_eq!(w.balance().await, 4, "charged once");
    let (url, inputs) = w.provider.submitted.lock().unwrap()[0].clone();
    assert_eq!(url, format!("{HOOK}?job={}.{}", job.user_id, job.generation_id));
    assert_eq!(inputs.len(), 1);
    // The prepared photo stays for the provider to fetch when its render starts.
    let work = object_keys::work(&job.user_id, &job.generation_id);
    assert!(w.h.objects.keys().contains(&work));
    // A redelivery of the record, another delivery, the claim's expiry: no worker takes it again.
    for delivery in [Some("evt-a"), Some("evt-other"), None] {
        assert_eq!(w.worker.process_delivery(&job, delivery).await.unwrap(), JobResult::Skipped);
    }
    w.h.clock.advance(400);
    assert_eq!(w.worker.process(&job).await.unwrap(), JobResult::Skipped);
    assert_eq!(w.provider.submitted.lock().unwrap().len(), 1, "submitted once");
}

async fn a_success_callback_stores_the_output_once_and_a_replay_changes_nothing(store: Arc<dyn Store>) {
    let w = world(store).await;
    let (job, prediction) = w.submitted("a").await;
    let body = w.body(&prediction, "succeeded", "out.png");
    let result = w.callbacks.handle(&job, &body).await.unwrap();
    let CallbackResult::Succeeded { output_key } = result else { panic!("{result:?}") };
    let g = w.record(&job).await;
    assert_eq!(
        (g.status, g.output_key.as_deref(), g.refunded),
        (GenerationStatus::Succeeded, Some(output_key.as_str()), false)
    );
    assert_eq!(w.h.objects.get(&output_key, u64::MAX).await.unwrap().unwrap(), png());
    assert!(!w.h.objects.keys().contains(&object_keys::work(&job.user_id, &job.generation_id)), "prepared photo gone");
    assert_eq!(w.balance().await, 4);
    // Replicate delivers it again (a retry of the webhook): nothing changes.
    assert!(matches!(w.callbacks.handle(&job, &body).await.unwrap(), CallbackResult::Ignored(_)));
    let failed_late = w.body(&prediction, "failed", "");
    assert!(matches!(w.callbacks.handle(&job, &failed_late).await.unwrap(), CallbackResult::Ignored(_)));
    assert_eq!(w.record(&job).await.status, GenerationStatus::Succeeded);
    assert_eq!(w.balance().await, 4, "no refund of a success");
    let (_, stats) = w.store.get_user_with_stats(&w.user).await.unwrap().unwrap();
    assert_eq!((stats.generations, stats.succeeded), (1, 1));
    // The in-flight slot was freed: as many new starts as the cap allows.
    for key in ["b", "c", "d"] {
        w.submitted(key).await;
    }
}

async fn a_failure_callback_refunds_exactly_once(store: Arc<dyn Store>) {
    let w = world(store).await;
    let (job, prediction) = w.submitted("a").await;
    let body = w.body(&prediction, "failed", "");
    let result = w.callbacks.handle(&job, &body).await.unwrap();
    assert!(matches!(&result, CallbackResult::Failed { reason } if !reason.is_empty()), "{result:?}");
    let g = w.record(&job).await;
    assert_eq!((g.status, g.refunded), (GenerationStatus::Failed, true));
    assert_eq!(w.balance().await, 5, "refunded");
    let ok = w.body(&prediction, "succeeded", "out.png");
    for again in [&body, &ok] {
        assert!(matches!(w.callbacks.handle(&job, again).await.unwrap(), CallbackResult::Ignored(_)));
    }
    assert_eq!(w.balance().await, 5, "refunded once");
    assert!(w.h.objects.keys().iter().all(|k| !k.starts_with("outputs/")), "no output of a failed job");
    let refunds = w.store.ledger(&w.user, 10).await.unwrap().iter().filter(|e| e.kind == LedgerKind::Refund).count();
    assert_eq!(refunds, 1);
}

async fn a_callback_of_another_prediction_or_job_changes_nothing(store: Arc<dyn Store>) {
    let w = world(store).await;
    let (job, _) = w.submitted("a").await;
    let other = w.body("p-not-ours", "succeeded", "out.png");
    assert!(matches!(w.callbacks.handle(&job, &other).await.unwrap(), CallbackResult::Ignored(_)));
    let stranger = JobRef { user_id: UserId::new(), generation_id: facemake::domain::new_id() };
    let real = w.body("p1", "failed", "");
    assert!(matches!(w.callbacks.handle(&stranger, &real).await.unwrap(), CallbackResult::Ignored(_)));
    assert_eq!(w.record(&job).await.status, GenerationStatus::Processing);
    assert!(matches!(w.callbacks.handle(&job, b"{not json").await, Err(CallbackError::Malformed(_))));
    let pending = w.body("p1", "processing", "");
    assert!(matches!(w.callbacks.handle(&job, &pending).await.unwrap(), CallbackResult::Ignored(_)));
    assert_eq!((w.record(&job).await.status, w.balance().await), (GenerationStatus::Processing, 4));
}

async fn a_job_whose_callback_never_came_is_refunded_by_the_reconciler_and_a_late_callback_changes_nothing(
    store: Arc<dyn Store>,
) {
    let w = world(store).await;
    let (job, prediction) = w.submitted("a").await;
    // Before the deadline the reconciler leaves it (the provider may still call back).
    assert_eq!(w.worker.reconcile().await.unwrap(), 0);
    w.h.clock.advance(w.h.deps.generation.deadline_secs + 1);
    assert_eq!(w.worker.reconcile().await.unwrap(), 1);
    let g = w.record(&job).await;
    assert_eq!((g.status, g.refunded), (GenerationStatus::Failed, true));
    assert_eq!(w.balance().await, 5);
    let late = w.body(&prediction, "succeeded", "out.png");
    assert!(matches!(w.callbacks.handle(&job, &late).await.unwrap(), CallbackResult::Ignored(_)));
    assert_eq!(w.record(&job).await.status, GenerationStatus::Failed);
    assert!(w.h.objects.keys().iter().all(|k| !k.starts_with("outputs/")), "the late output never appears");
    assert_eq!(w.balance().await, 5);
}

async fn an_output_that_cannot_be_fetched_yet_leaves_the_job_awaiting(store: Arc<dyn Store>) {
    let w = world(store).await;
    let (job, prediction) = w.submitted("a").await;
    let busy = w.body(&prediction, "succeeded", "busy.png");
    assert!(matches!(w.callbacks.handle(&job, &busy).await, Err(CallbackError::Fetch(_))));
    let g = w.record(&job).await;
    assert_eq!(
        (g.status, g.prediction.as_deref(), g.refunded),
        (GenerationStatus::Processing, Some(prediction.as_str()), false)
    );
    // Replicate sends it again, and this time the file is there.
    let ok = w.body(&prediction, "succeeded", "out.png");
    assert!(matches!(w.callbacks.handle(&job, &ok).await.unwrap(), CallbackResult::Succeeded { .. }));
}

/// Replicate may call back before the worker has written the hand-off (the job still held by its claim, no
/// prediction recorded): that callback must come again rather than be acknowledged and lost.
async fn a_callback_before_the_hand_off_is_recorded_is_asked_again(store: Arc<dyn Store>) {
    let w = world(store).await;
    let upload = UploadId::new();
    w.h.objects.put(&object_keys::upload(&w.user, &upload), testkit::camera_photo(64, 48), "image/jpeg").await.unwrap();
    let generations = w.h.deps.generations(Arc::new(w.h.deps.catalogue_service()));
    let template = TemplateId::parse("golden-hour").unwrap();
    let started = generations
        .start(&w.user, "a", &template, &GenerationSource::Upload(upload), std::future::ready(Ok(false)))
        .await
        .unwrap();
    let job = JobRef { user_id: w.user.clone(), generation_id: started.generation.id.clone() };
    // A worker has claimed it and submitted "p1", but not yet recorded the hand-off.
    let now = facemake::ports::Clock::now(w.h.clock.as_ref());
    let claimed = w.store.claim(&job, "worker-1", Some("evt-1"), now + 330, now).await.unwrap();
    assert!(matches!(claimed, facemake::ports::ClaimOutcome::Claimed(_)));
    let early = w.body("p1", "succeeded", "out.png");
    assert!(matches!(w.callbacks.handle(&job, &early).await, Err(CallbackError::NotYet)));
    assert_eq!(w.record(&job).await.status, GenerationStatus::Processing);
    // The hand-off lands; Replicate's retry finishes the job.
    assert_eq!(w.store.await_callback(&job, "worker-1", "p1", now).await.unwrap(), facemake::ports::Written::Yes);
    assert!(matches!(w.callbacks.handle(&job, &early).await.unwrap(), CallbackResult::Succeeded { .. }));
    // A job of no one's is acknowledged and changes nothing (not asked again forever).
    let queued = JobRef { user_id: w.user.clone(), generation_id: facemake::domain::new_id() };
    assert!(matches!(w.callbacks.handle(&queued, &early).await.unwrap(), CallbackResult::Ignored(_)));
}

/// A generations store whose hand-off write lands and then answers an error (a timeout after the commit).
struct HandOffAnswerLost(Arc<dyn Store>);

#[async_trait]
impl facemake::ports::GenerationStore for HandOffAnswerLost {
    async fn start_generation(
        &self,
        new: &facemake::ports::NewGeneration,
        now: i64,
    ) -> Result<facemake::ports::StartOutcome, facemake::ports::PortError> {
        self.0.start_generation(new, now).await
    }
    async fn idempotency_record(
        &self,
        user: &UserId,
        key_hash: &str,
    ) -> Result<Option<facemake::ports::IdempotencyRecord>, facemake::ports::PortError> {
        self.0.idempotency_record(user, key_hash).await
    }
    async fn generation(
        &self,
        user: &UserId,
        id: &str,
    ) -> Result<Option<facemake::domain::Generation>, facemake::ports::PortError> {
        self.0.generation(user, id).await
    }
    async fn generations_page(
        &self,
        user: &UserId,
        limit: usize,
        before: Option<&str>,
    ) -> Result<facemake::ports::GenerationPage, facemake::ports::PortError> {
        self.0.generations_page(user, limit, before).await
    }
    async fn delete_generation(
        &self,
        read: &facemake::domain::Generation,
    ) -> Result<facemake::ports::DeleteOutcome, facemake::ports::PortError> {
        self.0.delete_generation(read).await
    }
    async fn claim(
        &self,
        job: &JobRef,
        token: &str,
        delivery: Option<&str>,
        claim_until: i64,
        now: i64,
    ) -> Result<facemake::ports::ClaimOutcome, facemake::ports::PortError> {
        self.0.claim(job, token, delivery, claim_until, now).await
    }
    async fn release(&self, job: &JobRef, token: &str, now: i64) -> Result<(), facemake::ports::PortError> {
        self.0.release(job, token, now).await
    }
    async fn succeed(
        &self,
        job: &JobRef,
        token: &str,
        output_key: &str,
        timings: facemake::domain::Timings,
        now: i64,
    ) -> Result<facemake::ports::Written, facemake::ports::PortError> {
        self.0.succeed(job, token, output_key, timings, now).await
    }
    async fn await_callback(
        &self,
        job: &JobRef,
        token: &str,
        prediction: &str,
        now: i64,
    ) -> Result<facemake::ports::Written, facemake::ports::PortError> {
        self.0.await_callback(job, token, prediction, now).await?;
        Err(facemake::ports::PortError::unavailable("generations", "timed out"))
    }
    async fn succeed_callback(
        &self,
        job: &JobRef,
        prediction: &str,
        output_key: &str,
        timings: facemake::domain::Timings,
        now: i64,
    ) -> Result<facemake::ports::Written, facemake::ports::PortError> {
        self.0.succeed_callback(job, prediction, output_key, timings, now).await
    }
    async fn fail_and_refund(
        &self,
        job: &JobRef,
        from: facemake::domain::FailFrom,
        reason: &str,
        now: i64,
    ) -> Result<facemake::ports::FailOutcome, facemake::ports::PortError> {
        self.0.fail_and_refund(job, from, reason, now).await
    }
    async fn overdue(
        &self,
        now: i64,
        limit: usize,
        after: Option<&facemake::ports::OverdueCursor>,
    ) -> Result<facemake::ports::OverduePage, facemake::ports::PortError> {
        self.0.overdue(now, limit, after).await
    }
}

async fn a_hand_off_whose_answer_is_lost_is_read_back_and_not_submitted_again(store: Arc<dyn Store>) {
    let mut w = world(store.clone()).await;
    w.worker.store = Arc::new(HandOffAnswerLost(store));
    let (job, prediction) = w.submitted("a").await;
    assert_eq!(w.record(&job).await.prediction.as_deref(), Some(prediction.as_str()));
    // Lambda's redelivery of the record (had the worker reported a failure) would find nothing to submit.
    assert_eq!(w.worker.process_delivery(&job, Some("evt-a")).await.unwrap(), JobResult::Skipped);
    assert_eq!(w.provider.submitted.lock().unwrap().len(), 1, "one prediction");
}
