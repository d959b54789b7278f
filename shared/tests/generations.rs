//! The generation contract — one charge per accepted request and per idempotency key, never below zero, an
//! in-flight cap, and a refund exactly once for every job that fails (in the worker, or by the reconciler
//! after a crash) — run on the in-memory store and on DynamoDB Local.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use facemake::domain::{
    object_keys, GenerationSource, GenerationStatus, LedgerEntry, LedgerKind, PhoneNumber, TemplateId, UploadId, UserId,
};
use facemake::metrics::Metric;
use facemake::ports::{
    ClaimOutcome, FailFrom, FailOutcome, ImageProvider, JobRef, NewUser, ObjectStore, ProviderError, RefusalKind,
    RenderRequest, RenderedImage, Written,
};
use facemake::services::generation::{
    Generations, JobResult, Providers, RetryPolicy, StartError, Started, Worker, REASON_BUSY, REASON_TIMED_OUT,
};
use facemake::wiring::Store;
use testkit::Harness;

testkit::store_contract!(
    two_hundred_concurrent_starts_on_fifty_credits_accept_exactly_fifty,
    one_idempotency_key_sent_twenty_times_concurrently_charges_once,
    a_reused_key_with_another_body_is_refused_and_charges_nothing,
    a_start_for_an_account_being_deleted_writes_nothing,
    the_in_flight_cap_holds_and_frees_when_a_job_finishes,
    unknown_templates_and_missing_uploads_charge_nothing,
    a_transient_provider_error_is_retried_and_charged_once,
    a_refusal_fails_the_job_and_refunds_once,
    retries_run_out_and_the_job_is_refunded,
    a_provider_that_hangs_is_cut_off_at_the_budget,
    a_non_image_upload_fails_with_a_clear_reason_and_is_refunded,
    a_worker_killed_mid_job_is_refunded_by_the_reconciler,
    a_redelivered_job_is_processed_once,
    an_expired_claim_is_taken_over_and_the_old_worker_cannot_finish,
    a_redelivery_of_the_same_record_takes_over_the_claim_of_a_crashed_worker,
    a_provider_that_fetches_its_input_gets_a_url_of_the_prepared_photo,
    concurrent_failures_of_one_job_refund_once,
    the_reconciler_leaves_a_live_claim_alone_and_a_late_job_is_not_started,
    the_reconciler_pages_past_a_full_page_of_jobs_it_cannot_refund_yet,
    generations_page_newest_first_and_delete_removes_images,
);

const TEMPLATE: &str = "neon-noir";

fn unique_phone() -> PhoneNumber {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1000);
    let n = NEXT.fetch_add(1, Ordering::SeqCst);
    PhoneNumber::parse(&format!("+1415777{n:04}"), None).unwrap()
}

/// A provider that answers from a script (then succeeds), counting calls.
#[derive(Default)]
struct Scripted {
    script: Mutex<VecDeque<Result<RenderedImage, ProviderError>>>,
    calls: AtomicUsize,
}

fn png() -> RenderedImage {
    let mut bytes = Vec::new();
    image::RgbImage::from_pixel(8, 8, image::Rgb([200, 10, 10]))
        .write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png)
        .unwrap();
    RenderedImage { bytes, content_type: "image/png".into() }
}

impl Scripted {
    fn new(script: Vec<Result<RenderedImage, ProviderError>>) -> Arc<Self> {
        Arc::new(Self { script: Mutex::new(script.into()), calls: AtomicUsize::new(0) })
    }
}

#[async_trait]
impl ImageProvider for Scripted {
    fn needs_image_url(&self) -> bool {
        false
    }
    async fn render(&self, request: RenderRequest<'_>) -> Result<RenderedImage, ProviderError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        // What reaches a provider is the prepared photo: a JPEG, never the upload as it was.
        assert!(!request.images.is_empty() && request.images.iter().all(|i| i[..2] == [0xFF, 0xD8]));
        self.script.lock().unwrap().pop_front().unwrap_or_else(|| Ok(png()))
    }
}

fn transient() -> ProviderError {
    ProviderError::Transient { detail: "HTTP 500".into(), retry_after_secs: None }
}

struct World {
    h: Harness,
    store: Arc<dyn Store>,
    generations: Generations,
    worker: Worker,
    provider: Arc<Scripted>,
}

async fn world(store: Arc<dyn Store>, max_in_flight: u32, script: Vec<Result<RenderedImage, ProviderError>>) -> World {
    let mut h = Harness::over(store.clone());
    h.deps.generation.max_in_flight = max_in_flight;
    facemake::services::catalogue::seed_catalogue(
        store.as_ref(),
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../infra/catalogue/catalogue.yaml"),
    )
    .await
    .unwrap();
    let generations = h.deps.generations(Arc::new(h.deps.catalogue_service()));
    let provider = Scripted::new(script);
    let mut worker = h.deps.worker();
    worker.providers = Providers::all(provider.clone());
    worker.retry =
        RetryPolicy { max_attempts: 3, first_delay: Duration::from_millis(5), budget: Duration::from_secs(5) };
    World { h, store, generations, worker, provider }
}

impl World {
    async fn user(&self, credits: u64) -> UserId {
        let id = UserId::new();
        let now = self.h.clock_now();
        let grant = LedgerEntry::new(LedgerKind::Grant, credits as i64, credits, "starter-grant", now);
        let new = NewUser {
            id: id.clone(),
            phone: unique_phone(),
            created_at: now,
            starter_grant: Some(grant),
            number_key: None,
        };
        self.store.create_user(&new).await.unwrap();
        id
    }

    /// Uploads `bytes` as the user's photo, the way the app's PUT would land in the bucket.
    async fn upload(&self, user: &UserId, bytes: Vec<u8>) -> UploadId {
        let id = UploadId::new();
        self.h.objects.put(&object_keys::upload(user, &id), bytes, "image/jpeg").await.unwrap();
        id
    }

    async fn start(&self, user: &UserId, key: &str, upload: &UploadId) -> Result<Started, StartError> {
        let source = GenerationSource::Upload(upload.clone());
        self.generations.start(user, key, &TemplateId::parse(TEMPLATE).unwrap(), &source, not_deleted()).await
    }

    async fn balance(&self, user: &UserId) -> u64 {
        self.store.balance(user).await.unwrap()
    }

    /// The whole ledger, oldest first, checked: each balanceAfter is the running sum, and it ends at the balance.
    async fn checked_ledger(&self, user: &UserId) -> Vec<LedgerEntry> {
        let mut entries = self.store.ledger(user, 10_000).await.unwrap();
        entries.reverse();
        let mut sum: i64 = 0;
        for e in &entries {
            sum += e.amount;
            assert_eq!(e.balance_after as i64, sum, "balanceAfter is the running sum: {entries:#?}");
        }
        assert_eq!(sum as u64, self.balance(user).await);
        entries
    }
}

trait ClockNow {
    fn clock_now(&self) -> i64;
}

impl ClockNow for Harness {
    fn clock_now(&self) -> i64 {
        use facemake::ports::Clock;
        self.clock.now()
    }
}

/// A real 64×48 JPEG.
fn photo() -> Vec<u8> {
    let img = image::RgbImage::from_fn(64, 48, |x, y| image::Rgb([(x * 4) as u8, (y * 5) as u8, 128]));
    let mut bytes = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Jpeg).unwrap();
    bytes
}

/// The deleted-account check of a start, for an account that is not being deleted.
fn not_deleted() -> std::future::Ready<Result<bool, facemake::ports::PortError>> {
    std::future::ready(Ok(false))
}

fn job(started: &Started) -> JobRef {
    JobRef { user_id: started.generation.user_id.clone(), generation_id: started.generation.id.clone() }
}

async fn two_hundred_concurrent_starts_on_fifty_credits_accept_exactly_fifty(store: Arc<dyn Store>) {
    let w = Arc::new(world(store, 1000, vec![]).await);
    // Repeated: a lucky interleaving must not be what makes it pass.
    for round in 0..2 {
        let user = w.user(50).await;
        let upload = w.upload(&user, photo()).await;
        let tasks: Vec<_> = (0..200)
            .map(|i| {
                let (w, user, upload) = (w.clone(), user.clone(), upload.clone());
                tokio::spawn(async move { w.start(&user, &format!("key-{round}-{i}"), &upload).await })
            })
            .collect();
        let (mut accepted, mut refused, mut ids) = (0, 0, HashSet::new());
        for t in tasks {
            match t.await.unwrap() {
                Ok(s) => {
                    accepted += 1;
                    assert!(!s.replayed);
                    ids.insert(s.generation.id);
                }
                Err(StartError::Insufficient { .. }) => refused += 1,
                Err(other) => panic!("round {round}: unexpected {other:?}"),
            }
        }
        assert_eq!((accepted, refused, ids.len()), (50, 150, 50), "round {round}");
        assert_eq!(w.balance(&user).await, 0);
        let ledger = w.checked_ledger(&user).await;
        let spends: HashSet<&str> =
            ledger.iter().filter(|e| e.kind == LedgerKind::Spend).map(|e| e.reference.as_str()).collect();
        assert_eq!(spends.len(), 50);
        assert!(ids.iter().all(|id| spends.contains(id.as_str())), "every accepted generation has its spend");
    }
    // One start and one credit spent recorded per accepted generation; the refused ones record nothing.
    assert_eq!(w.metrics_values(Metric::GenerationsStarted), [1.0; 100]);
    assert_eq!(w.metrics_values(Metric::CreditsSpent), [1.0; 100]);
}

async fn one_idempotency_key_sent_twenty_times_concurrently_charges_once(store: Arc<dyn Store>) {
    let w = Arc::new(world(store, 3, vec![]).await);
    let user = w.user(5).await;
    let upload = w.upload(&user, photo()).await;
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (w, user, upload) = (w.clone(), user.clone(), upload.clone());
            tokio::spawn(async move { w.start(&user, "same-key", &upload).await.unwrap() })
        })
        .collect();
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    let first = results.iter().find(|s| !s.replayed).expect("one request did the work");
    assert_eq!(results.iter().filter(|s| !s.replayed).count(), 1);
    for s in &results {
        // The original response: same generation, as it was, with the balance right after the charge.
        assert_eq!(s.generation, first.generation);
        assert_eq!(s.balance, 4);
    }
    assert_eq!(w.balance(&user).await, 4);
    let spends = w.checked_ledger(&user).await.into_iter().filter(|e| e.kind == LedgerKind::Spend).count();
    assert_eq!(spends, 1);
    assert_eq!(w.metrics_values(Metric::GenerationsStarted), [1.0], "replays record nothing");
    assert_eq!(w.metrics_values(Metric::CreditsSpent), [1.0]);
}

async fn a_start_for_an_account_being_deleted_writes_nothing(store: Arc<dyn Store>) {
    let w = world(store, 3, vec![]).await;
    let user = w.user(5).await;
    let upload = w.upload(&user, photo()).await;
    let template = TemplateId::parse(TEMPLATE).unwrap();
    let source = GenerationSource::Upload(upload.clone());
    let refused = w.generations.start(&user, "k", &template, &source, std::future::ready(Ok(true))).await;
    assert!(matches!(refused, Err(StartError::AccountDeleted)), "{refused:?}");
    // A check that fails is no permission either.
    let failed = w
        .generations
        .start(
            &user,
            "k",
            &template,
            &source,
            std::future::ready(Err(facemake::ports::PortError::unavailable("t", "down"))),
        )
        .await;
    assert!(matches!(failed, Err(StartError::Port(_))), "{failed:?}");
    assert_eq!(w.balance(&user).await, 5, "nothing charged");
    assert!(w.generations.page(&user, 10, None).await.unwrap().items.is_empty(), "no record");
    // The key was not taken either: the same request, allowed, starts (once).
    let started = w.start(&user, "k", &upload).await.unwrap();
    assert!(!started.replayed);
    assert_eq!(w.balance(&user).await, 4);
    w.checked_ledger(&user).await;
}

async fn a_reused_key_with_another_body_is_refused_and_charges_nothing(store: Arc<dyn Store>) {
    let w = world(store, 3, vec![]).await;
    let user = w.user(5).await;
    let (a, b) = (w.upload(&user, photo()).await, w.upload(&user, photo()).await);
    let first = w.start(&user, "k", &a).await.unwrap();
    assert!(matches!(w.start(&user, "k", &b).await, Err(StartError::KeyReused)));
    // The same key and body after the job finished still answers with the original (queued) response.
    w.worker.process(&job(&first)).await.unwrap();
    let again = w.start(&user, "k", &a).await.unwrap();
    assert!(again.replayed);
    assert_eq!(again.generation.status, GenerationStatus::Queued);
    assert_eq!(again.generation.id, first.generation.id);
    assert_eq!(w.balance(&user).await, 4);
    // Keys are per user: another user's identical key is theirs alone.
    let other = w.user(5).await;
    let upload = w.upload(&other, photo()).await;
    assert!(!w.start(&other, "k", &upload).await.unwrap().replayed);
}

async fn the_in_flight_cap_holds_and_frees_when_a_job_finishes(store: Arc<dyn Store>) {
    let w = world(store, 3, vec![]).await;
    let user = w.user(10).await;
    let upload = w.upload(&user, photo()).await;
    let mut started = Vec::new();
    for i in 0..3 {
        started.push(w.start(&user, &format!("k{i}"), &upload).await.unwrap());
    }
    assert!(matches!(w.start(&user, "k3", &upload).await, Err(StartError::TooManyInFlight)));
    assert_eq!(w.balance(&user).await, 7, "a refused request charges nothing");
    assert!(matches!(w.worker.process(&job(&started[0])).await.unwrap(), JobResult::Succeeded { .. }));
    w.start(&user, "k3", &upload).await.unwrap();
    assert!(matches!(w.start(&user, "k4", &upload).await, Err(StartError::TooManyInFlight)));
}

async fn unknown_templates_and_missing_uploads_charge_nothing(store: Arc<dyn Store>) {
    let w = world(store, 3, vec![]).await;
    let user = w.user(5).await;
    let upload = w.upload(&user, photo()).await;
    let retired = TemplateId::parse("vaporwave").unwrap();
    assert!(matches!(
        w.generations.start(&user, "a", &retired, &GenerationSource::Upload(upload.clone()), not_deleted()).await,
        Err(StartError::UnknownTemplate)
    ));
    assert!(matches!(w.start(&user, "b", &UploadId::new()).await, Err(StartError::NoUpload)));
    // Another user's upload id does not reach their photo: uploads live under the owner's prefix.
    let other = w.user(5).await;
    assert!(matches!(w.start(&other, "c", &upload).await, Err(StartError::NoUpload)));
    assert_eq!(w.balance(&user).await, 5);
}

async fn a_transient_provider_error_is_retried_and_charged_once(store: Arc<dyn Store>) {
    let w = world(store, 3, vec![Err(transient())]).await;
    let user = w.user(5).await;
    let upload = w.upload(&user, photo()).await;
    let started = w.start(&user, "k", &upload).await.unwrap();
    let JobResult::Succeeded { output_key } = w.worker.process(&job(&started)).await.unwrap() else {
        panic!("expected success")
    };
    assert_eq!(w.provider.calls.load(Ordering::SeqCst), 2);
    let g = w.store.generation(&user, &started.generation.id).await.unwrap().unwrap();
    assert_eq!(g.status, GenerationStatus::Succeeded);
    assert!(!g.refunded);
    assert_eq!(g.output_key.as_deref(), Some(output_key.as_str()));
    assert!(output_key.starts_with(&format!("outputs/{user}/")));
    assert!(g.completed_at.is_some() && g.timings.is_some());
    let stored = w.h.objects.get(&output_key, 1 << 20).await.unwrap().unwrap();
    assert_eq!(stored, png().bytes);
    assert_eq!(w.balance(&user).await, 4);
    let kinds: Vec<LedgerKind> = w.checked_ledger(&user).await.iter().map(|e| e.kind).collect();
    assert_eq!(kinds, [LedgerKind::Grant, LedgerKind::Spend]);
    // The prepared photo handed to providers is not kept.
    assert!(w.h.objects.keys().iter().all(|k| !k.starts_with("work/")));
    assert_eq!(w.metrics_values(Metric::GenerationsSucceeded), [1.0]);
    assert_eq!(w.metrics_values(Metric::ProviderLatency).len(), 1, "one latency per job, both attempts in it");
    assert!(
        w.metrics_values(Metric::GenerationsFailed).is_empty() && w.metrics_values(Metric::CreditsRefunded).is_empty()
    );
}

async fn a_refusal_fails_the_job_and_refunds_once(store: Arc<dyn Store>) {
    let reason = "The image provider declined this photo for safety reasons.";
    let refusal =
        ProviderError::Permanent { kind: RefusalKind::ContentPolicy, user_reason: reason.into(), detail: "x".into() };
    let w = world(store, 3, vec![Err(refusal)]).await;
    let user = w.user(5).await;
    let upload = w.upload(&user, photo()).await;
    let started = w.start(&user, "k", &upload).await.unwrap();
    assert_eq!(w.worker.process(&job(&started)).await.unwrap(), JobResult::Failed { reason: reason.into() });
    assert_eq!(w.provider.calls.load(Ordering::SeqCst), 1, "a refusal is not retried");
    let g = w.store.generation(&user, &started.generation.id).await.unwrap().unwrap();
    assert_eq!((g.status, g.refunded, g.failure_reason.as_deref()), (GenerationStatus::Failed, true, Some(reason)));
    assert_eq!(w.balance(&user).await, 5);
    // A second attempt to fail it (a redelivery, the reconciler) changes nothing.
    let late = w.store.fail_and_refund(&job(&started), FailFrom::DeadlinePassed(i64::MAX), "again", 0).await;
    assert_eq!(late.unwrap(), FailOutcome::NotApplicable);
    assert_eq!(w.worker.reconcile().await.unwrap(), 0);
    let ledger = w.checked_ledger(&user).await;
    let kinds: Vec<LedgerKind> = ledger.iter().map(|e| e.kind).collect();
    assert_eq!(kinds, [LedgerKind::Grant, LedgerKind::Spend, LedgerKind::Refund]);
    assert_eq!(w.metrics_values(Metric::GenerationsFailed), [1.0]);
    assert_eq!(w.metrics_values(Metric::GenerationsRefunded), [1.0]);
    assert_eq!(w.metrics_values(Metric::CreditsRefunded), [1.0]);
    assert_eq!(w.metrics_values(Metric::ProviderLatency).len(), 1);
    assert!(w.metrics_values(Metric::GenerationsTimedOut).is_empty());
    assert_eq!(ledger[2].reference, started.generation.id);
}

async fn retries_run_out_and_the_job_is_refunded(store: Arc<dyn Store>) {
    let w = world(store, 3, vec![Err(transient()), Err(transient()), Err(transient()), Err(transient())]).await;
    let user = w.user(2).await;
    let upload = w.upload(&user, photo()).await;
    let started = w.start(&user, "k", &upload).await.unwrap();
    assert_eq!(w.worker.process(&job(&started)).await.unwrap(), JobResult::Failed { reason: REASON_BUSY.into() });
    assert_eq!(w.provider.calls.load(Ordering::SeqCst), 3, "bounded by the policy's attempts");
    assert_eq!(w.balance(&user).await, 2);
    w.checked_ledger(&user).await;
}

async fn a_non_image_upload_fails_with_a_clear_reason_and_is_refunded(store: Arc<dyn Store>) {
    let w = world(store, 3, vec![]).await;
    let user = w.user(3).await;
    let upload = w.upload(&user, b"%PDF-1.7 this is not a photo".to_vec()).await;
    let started = w.start(&user, "k", &upload).await.unwrap();
    let JobResult::Failed { reason } = w.worker.process(&job(&started)).await.unwrap() else {
        panic!("expected a failure")
    };
    assert!(reason.contains("not a photo") && reason.contains("refunded"), "{reason}");
    assert_eq!(w.provider.calls.load(Ordering::SeqCst), 0, "nothing reaches the provider");
    assert_eq!(w.balance(&user).await, 3);
    w.checked_ledger(&user).await;
}

async fn a_worker_killed_mid_job_is_refunded_by_the_reconciler(store: Arc<dyn Store>) {
    let w = world(store, 3, vec![]).await;
    let user = w.user(3).await;
    let upload = w.upload(&user, photo()).await;
    let started = w.start(&user, "k", &upload).await.unwrap();
    let queued = w.start(&user, "k2", &upload).await.unwrap();
    // A worker claims the first job and dies: no completion ever comes. The second is never picked up.
    let now = w.h.clock_now();
    let claimed = w.store.claim(&job(&started), "dead-worker", None, now + 330, now).await.unwrap();
    assert!(matches!(claimed, ClaimOutcome::Claimed(_)));
    assert_eq!(w.worker.reconcile().await.unwrap(), 0, "nothing is overdue yet");
    w.h.clock.advance(w.h.deps.generation.deadline_secs);
    assert_eq!(w.worker.reconcile().await.unwrap(), 2);
    assert_eq!(w.worker.reconcile().await.unwrap(), 0, "a second run refunds nothing again");
    for s in [&started, &queued] {
        let g = w.store.generation(&user, &s.generation.id).await.unwrap().unwrap();
        assert_eq!(g.status, GenerationStatus::Failed);
        assert!(g.refunded);
        assert_eq!(g.failure_reason.as_deref(), Some(REASON_TIMED_OUT));
    }
    assert_eq!(w.balance(&user).await, 3);
    // The dead worker coming back cannot complete, and a redelivery skips the job.
    let late = w.store.succeed(&job(&started), "dead-worker", "outputs/x.png", Default::default(), now).await;
    assert_eq!(late.unwrap(), Written::Conflict);
    assert_eq!(w.worker.process(&job(&queued)).await.unwrap(), JobResult::Skipped);
    assert_eq!(w.metrics_total(facemake::metrics::Metric::GenerationsTimedOut), 2.0);
    assert_eq!(w.metrics_values(Metric::GenerationsFailed), [1.0, 1.0]);
    assert_eq!(w.metrics_values(Metric::GenerationsRefunded), [1.0, 1.0]);
    assert_eq!(w.metrics_values(Metric::CreditsRefunded), [1.0, 1.0], "each job's cost, given back");
    assert!(w.metrics_values(Metric::ProviderLatency).is_empty(), "no job reached a provider");
    w.checked_ledger(&user).await;
    // Both in-flight slots are free again.
    for i in 0..3 {
        w.start(&user, &format!("again{i}"), &upload).await.unwrap();
    }
}

impl World {
    fn metrics_total(&self, metric: facemake::metrics::Metric) -> f64 {
        self.h.metrics.total(metric)
    }

    fn metrics_values(&self, metric: Metric) -> Vec<f64> {
        self.h.metrics.values(metric)
    }
}

async fn a_redelivered_job_is_processed_once(store: Arc<dyn Store>) {
    let w = world(store, 3, vec![]).await;
    let user = w.user(3).await;
    let upload = w.upload(&user, photo()).await;
    let started = w.start(&user, "k", &upload).await.unwrap();
    assert!(matches!(w.worker.process(&job(&started)).await.unwrap(), JobResult::Succeeded { .. }));
    assert_eq!(w.worker.process(&job(&started)).await.unwrap(), JobResult::Skipped);
    assert_eq!(w.provider.calls.load(Ordering::SeqCst), 1);
    assert_eq!(w.balance(&user).await, 2);
}

async fn an_expired_claim_is_taken_over_and_the_old_worker_cannot_finish(store: Arc<dyn Store>) {
    let w = world(store, 3, vec![]).await;
    let user = w.user(3).await;
    let upload = w.upload(&user, photo()).await;
    let started = w.start(&user, "k", &upload).await.unwrap();
    let now = w.h.clock_now();
    w.store.claim(&job(&started), "slow-worker", None, now + 10, now).await.unwrap();
    // While the claim holds, a redelivery leaves the job alone.
    assert_eq!(w.worker.process(&job(&started)).await.unwrap(), JobResult::Skipped);
    w.h.clock.advance(11);
    assert!(matches!(w.worker.process(&job(&started)).await.unwrap(), JobResult::Succeeded { .. }));
    let g = w.store.generation(&user, &started.generation.id).await.unwrap().unwrap();
    assert_eq!(g.attempts, 2);
    let late = w.store.fail_and_refund(&job(&started), FailFrom::Claim("slow-worker".into()), "x", now).await;
    assert_eq!(late.unwrap(), FailOutcome::NotApplicable);
    assert_eq!(w.balance(&user).await, 2);
    w.checked_ledger(&user).await;
}

async fn a_redelivery_of_the_same_record_takes_over_the_claim_of_a_crashed_worker(store: Arc<dyn Store>) {
    let w = world(store, 3, vec![]).await;
    let user = w.user(3).await;
    let upload = w.upload(&user, photo()).await;
    let started = w.start(&user, "k", &upload).await.unwrap();
    let now = w.h.clock_now();
    // The invocation that got stream record evt-1 claimed the job and was killed (a timeout, a crash).
    let claimed = w.store.claim(&job(&started), "crashed-worker", Some("evt-1"), now + 330, now).await.unwrap();
    assert!(matches!(claimed, ClaimOutcome::Claimed(_)));
    // Another record naming the job (a duplicate) must not take a live claim...
    assert_eq!(w.worker.process_delivery(&job(&started), Some("evt-2")).await.unwrap(), JobResult::Skipped);
    // ...but Lambda's retry of evt-1 comes only after that invocation ended, so it takes the job at once.
    let done = w.worker.process_delivery(&job(&started), Some("evt-1")).await.unwrap();
    assert!(matches!(done, JobResult::Succeeded { .. }), "{done:?}");
    let g = w.store.generation(&user, &started.generation.id).await.unwrap().unwrap();
    assert_eq!((g.status, g.attempts, g.refunded), (GenerationStatus::Succeeded, 2, false));
    // The crashed worker's claim is void, and a further retry of evt-1 finds the job finished.
    let late = w.store.succeed(&job(&started), "crashed-worker", "outputs/x.png", Default::default(), now).await;
    assert_eq!(late.unwrap(), Written::Conflict);
    assert_eq!(w.worker.process_delivery(&job(&started), Some("evt-1")).await.unwrap(), JobResult::Skipped);
    assert_eq!(w.provider.calls.load(Ordering::SeqCst), 1);
    assert_eq!(w.balance(&user).await, 2, "charged once, nothing refunded");
    w.checked_ledger(&user).await;
}

/// A provider that fetches its input by URL (as Replicate does): it records what the worker stored there.
struct FetchesByUrl {
    objects: Arc<facemake::adapters::memory::MemoryObjects>,
    seen: Mutex<Vec<(String, Option<Vec<u8>>)>>,
}

#[async_trait]
impl ImageProvider for FetchesByUrl {
    fn needs_image_url(&self) -> bool {
        true
    }
    async fn render(&self, request: RenderRequest<'_>) -> Result<RenderedImage, ProviderError> {
        let url = request.image_urls.first().expect("a provider that fetches by URL gets one").to_owned();
        // The object behind the URL, read the way the provider's GET would find it.
        let key = self.objects.keys().into_iter().find(|k| k.starts_with("work/") && url.contains(k.as_str()));
        let bytes = match key {
            Some(k) => self.objects.get(&k, u64::MAX).await.unwrap(),
            None => None,
        };
        self.seen.lock().unwrap().push((url, bytes));
        Ok(png())
    }
}

async fn a_provider_that_fetches_its_input_gets_a_url_of_the_prepared_photo(store: Arc<dyn Store>) {
    let mut w = world(store, 3, vec![]).await;
    let provider = Arc::new(FetchesByUrl { objects: w.h.objects.clone(), seen: Mutex::new(Vec::new()) });
    w.worker.providers = Providers::all(provider.clone());
    let user = w.user(2).await;
    let upload = w.upload(&user, photo()).await;
    let started = w.start(&user, "k", &upload).await.unwrap();
    assert!(matches!(w.worker.process(&job(&started)).await.unwrap(), JobResult::Succeeded { .. }));
    let seen = provider.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    let (url, bytes) = &seen[0];
    let work_key = object_keys::work(&user, &started.generation.id);
    assert!(url.contains(&work_key), "the URL names the prepared photo: {url}");
    let bytes = bytes.as_ref().expect("the prepared photo was stored before the provider was called");
    assert_eq!(image::guess_format(bytes).unwrap(), image::ImageFormat::Jpeg);
    let prepared = image::load_from_memory(bytes).unwrap();
    assert_eq!((prepared.width(), prepared.height()), (64, 48));
    // Once the job is done the prepared photo is gone; the output stays.
    let keys = w.h.objects.keys();
    assert!(!keys.contains(&work_key), "{keys:?}");
    assert!(keys.iter().any(|k| k.starts_with(&format!("outputs/{user}/"))), "{keys:?}");
    assert_eq!(w.balance(&user).await, 1);
}

async fn concurrent_failures_of_one_job_refund_once(store: Arc<dyn Store>) {
    let w = Arc::new(world(store, 3, vec![]).await);
    let user = w.user(4).await;
    let upload = w.upload(&user, photo()).await;
    let started = w.start(&user, "k", &upload).await.unwrap();
    let now = w.h.clock_now();
    w.store.claim(&job(&started), "worker", None, now + 330, now).await.unwrap();
    // The worker failing it and several reconciler runs, all at once.
    let tasks: Vec<_> = (0..12)
        .map(|i| {
            let (w, job) = (w.clone(), job(&started));
            tokio::spawn(async move {
                let from =
                    if i % 2 == 0 { FailFrom::Claim("worker".into()) } else { FailFrom::DeadlinePassed(i64::MAX) };
                w.store.fail_and_refund(&job, from, "failed", now).await.unwrap()
            })
        })
        .collect();
    let mut refunded = 0;
    for t in tasks {
        if matches!(t.await.unwrap(), FailOutcome::Refunded { .. }) {
            refunded += 1;
        }
    }
    assert_eq!(refunded, 1);
    assert_eq!(w.balance(&user).await, 4);
    let refunds = w.checked_ledger(&user).await.into_iter().filter(|e| e.kind == LedgerKind::Refund).count();
    assert_eq!(refunds, 1);
}

async fn generations_page_newest_first_and_delete_removes_images(store: Arc<dyn Store>) {
    let w = world(store, 10, vec![]).await;
    let user = w.user(10).await;
    let upload = w.upload(&user, photo()).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(w.start(&user, &format!("k{i}"), &upload).await.unwrap().generation.id);
    }
    ids.reverse();
    let (mut seen, mut before) = (Vec::new(), None::<String>);
    loop {
        let page = w.generations.page(&user, 2, before.as_deref()).await.unwrap();
        before = page.items.last().map(|g| g.id.clone());
        seen.extend(page.items.into_iter().map(|g| g.id));
        if !page.more {
            break;
        }
    }
    assert_eq!(seen, ids);
    // In flight: not deletable. Finished: the record and its output go.
    let first = JobRef { user_id: user.clone(), generation_id: ids[0].clone() };
    assert_eq!(w.generations.delete(&user, &ids[0]).await.unwrap(), facemake::ports::DeleteOutcome::InFlight);
    let JobResult::Succeeded { output_key } = w.worker.process(&first).await.unwrap() else { panic!() };
    assert!(w.h.objects.keys().contains(&output_key));
    let other = w.user(1).await;
    assert_eq!(w.generations.delete(&other, &ids[0]).await.unwrap(), facemake::ports::DeleteOutcome::NotFound);
    let upload_key = object_keys::upload(&user, &upload);
    assert!(w.h.objects.keys().contains(&upload_key));
    assert!(matches!(w.generations.delete(&user, &ids[0]).await.unwrap(), facemake::ports::DeleteOutcome::Deleted(_)));
    let keys = w.h.objects.keys();
    assert!(!keys.contains(&output_key), "{keys:?}");
    assert!(!keys.contains(&upload_key), "the user's photo goes with the generation: {keys:?}");
    assert!(w.store.generation(&user, &ids[0]).await.unwrap().is_none());
    assert_eq!(w.generations.delete(&user, &ids[0]).await.unwrap(), facemake::ports::DeleteOutcome::NotFound);
}

/// A provider that never answers.
struct Hanging;

#[async_trait]
impl ImageProvider for Hanging {
    fn needs_image_url(&self) -> bool {
        false
    }
    async fn render(&self, _: RenderRequest<'_>) -> Result<RenderedImage, ProviderError> {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        Ok(png())
    }
}

async fn a_provider_that_hangs_is_cut_off_at_the_budget(store: Arc<dyn Store>) {
    let mut w = world(store, 3, vec![]).await;
    w.worker.providers = Providers::all(Arc::new(Hanging));
    w.worker.retry.budget = Duration::from_millis(200);
    let user = w.user(2).await;
    let upload = w.upload(&user, photo()).await;
    let started = w.start(&user, "k", &upload).await.unwrap();
    let clock = std::time::Instant::now();
    assert_eq!(w.worker.process(&job(&started)).await.unwrap(), JobResult::Failed { reason: REASON_BUSY.into() });
    assert!(clock.elapsed() < Duration::from_secs(60), "the job ended at the budget, not when the provider did");
    assert_eq!(w.balance(&user).await, 2);
}

async fn the_reconciler_leaves_a_live_claim_alone_and_a_late_job_is_not_started(store: Arc<dyn Store>) {
    let w = world(store, 3, vec![]).await;
    let user = w.user(3).await;
    let upload = w.upload(&user, photo()).await;
    let working = w.start(&user, "a", &upload).await.unwrap();
    let late = w.start(&user, "b", &upload).await.unwrap();
    let now = w.h.clock_now();
    let deadline = w.h.deps.generation.deadline_secs;
    // A worker picked the first job up shortly before its deadline; its claim runs past it.
    w.h.clock.advance(deadline - 60);
    w.store.claim(&job(&working), "busy-worker", None, now + deadline + 270, now + deadline - 60).await.unwrap();
    w.h.clock.advance(60);
    // The second job is still queued at its deadline (the stream fell behind): the reconciler refunds it and
    // a worker that gets to it now does not start paid work the user has been refunded for.
    assert_eq!(w.worker.process(&job(&late)).await.unwrap(), JobResult::Skipped);
    assert_eq!(w.worker.reconcile().await.unwrap(), 1);
    assert_eq!(w.balance(&user).await, 2);
    let g = w.store.generation(&user, &working.generation.id).await.unwrap().unwrap();
    assert_eq!(g.status, GenerationStatus::Processing, "a live claim is left to finish");
    // Once that claim has run out with no result, the job is refunded too.
    w.h.clock.advance(270);
    assert_eq!(w.worker.reconcile().await.unwrap(), 1);
    assert_eq!(w.balance(&user).await, 3);
    w.checked_ledger(&user).await;
}

async fn the_reconciler_pages_past_a_full_page_of_jobs_it_cannot_refund_yet(store: Arc<dyn Store>) {
    let w = world(store, 1000, vec![]).await;
    let user = w.user(105).await;
    let upload = w.upload(&user, photo()).await;
    // 100 jobs (one reconciler page) with the earliest deadlines, each then held by a live claim that runs
    // past its deadline; five more jobs behind them that nobody picked up.
    let mut held = Vec::new();
    for i in 0..100 {
        held.push(w.start(&user, &format!("held{i}"), &upload).await.unwrap());
        w.h.clock.advance(1);
    }
    let mut stuck = Vec::new();
    for i in 0..5 {
        stuck.push(w.start(&user, &format!("stuck{i}"), &upload).await.unwrap());
    }
    let now = w.h.clock_now();
    let deadline = w.h.deps.generation.deadline_secs;
    for s in &held {
        let claimed = w.store.claim(&job(s), "busy", None, now + deadline + 600, now).await.unwrap();
        assert!(matches!(claimed, ClaimOutcome::Claimed(_)));
    }
    w.h.clock.advance(deadline);
    assert_eq!(w.worker.reconcile().await.unwrap(), 5, "the jobs behind a page of live claims are refunded");
    for s in &stuck {
        let g = w.store.generation(&user, &s.generation.id).await.unwrap().unwrap();
        assert_eq!((g.status, g.refunded), (GenerationStatus::Failed, true));
    }
    let g = w.store.generation(&user, &held[0].generation.id).await.unwrap().unwrap();
    assert_eq!(g.status, GenerationStatus::Processing);
    assert_eq!(w.balance(&user).await, 5);
    w.checked_ledger(&user).await;
    assert_eq!(w.metrics_values(Metric::GenerationsTimedOut), [1.0; 5]);
    assert_eq!(w.metrics_values(Metric::CreditsRefunded), [1.0; 5]);
}

/// A row of the `Pending` index that does not name a job (written by hand, or by a bug) must not stop the
/// reconciler's paging, even when it is the last row of a page.
#[tokio::test]
async fn dynamodb_a_malformed_pending_row_at_the_end_of_a_page_does_not_stop_the_paging() {
    use aws_sdk_dynamodb::types::AttributeValue as A;
    use facemake::ports::GenerationStore;
    let store = Arc::new(testkit::dynamodb_store().await);
    let table = store.tables().generations.clone();
    let w = world(store.clone(), 3, vec![]).await;
    let user = w.user(3).await;
    let upload = w.upload(&user, photo()).await;
    let started = w.start(&user, "k", &upload).await.unwrap();
    // A malformed row overdue before the real job.
    testkit::dynamodb_local_client()
        .await
        .put_item()
        .table_name(&table)
        .item("pk", A::S("USER#not-a-user-id".into()))
        .item("sk", A::S("GEN#x".into()))
        .item("pending", A::S("PENDING".into()))
        .item("deadline", A::N("1".into()))
        .send()
        .await
        .unwrap();
    let now = started.generation.deadline;
    let first = store.overdue(now, 1, None).await.unwrap();
    assert!(first.jobs.is_empty(), "the malformed row is skipped: {first:?}");
    let second = store.overdue(now, 1, first.next.as_ref()).await.unwrap();
    assert_eq!(second.jobs, [job(&started)]);
    // And the reconciler gets past it.
    w.h.clock.advance(w.h.deps.generation.deadline_secs);
    assert_eq!(w.worker.reconcile().await.unwrap(), 1);
    assert_eq!(w.balance(&user).await, 3);
}
