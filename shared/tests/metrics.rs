//! The business metrics each use case records (what the dashboard and the alarms are built on).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use appstore_test_chain::{notification, TestChain, Transaction};
use async_trait::async_trait;
use facemake::domain::{object_keys, OtpCode, PhoneNumber, TemplateId, UploadId, UserId};
use facemake::metrics::Metric;
use facemake::ports::{
    Clock, ImageProvider, JobRef, ObjectStore, ProviderError, RefusalKind, RenderRequest, RenderedImage,
};
use facemake::services::generation::{Generations, JobResult, Providers, RetryPolicy, StartError, Worker};
use testkit::{credits_config, Harness, BUNDLE_ID, PRODUCT_50};

#[tokio::test]
async fn sign_in_records_sent_rejected_verified_and_sign_ups() {
    let h = Harness::in_memory();
    let phone = PhoneNumber::parse("+14155550160", None).unwrap();
    let send = h.deps.send_code();
    send.send(&phone, None).await.unwrap();
    assert_eq!(h.metrics.total(Metric::CodesSent), 1.0);
    let code = h.last_code(phone.e164()).unwrap();
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let auth = h.deps.sign_in();
    assert!(auth.verify(&phone, &OtpCode::parse(wrong).unwrap(), None).await.is_err());
    assert_eq!(h.metrics.total(Metric::CodesRejected), 1.0);
    auth.verify(&phone, &OtpCode::parse(&code).unwrap(), None).await.unwrap();
    assert_eq!((h.metrics.total(Metric::CodesVerified), h.metrics.total(Metric::SignUps)), (1.0, 1.0));
    // A returning user is a verification, not a sign-up; a failed text is counted as such.
    h.clock.advance(61);
    send.send(&phone, None).await.unwrap();
    let code = h.last_code(phone.e164()).unwrap();
    auth.verify(&phone, &OtpCode::parse(&code).unwrap(), None).await.unwrap();
    assert_eq!((h.metrics.total(Metric::CodesVerified), h.metrics.total(Metric::SignUps)), (2.0, 1.0));
    h.outbox.set_failing(true);
    h.clock.advance(61);
    assert!(send.send(&phone, None).await.is_err());
    assert_eq!((h.metrics.total(Metric::CodesSent), h.metrics.total(Metric::CodesFailed)), (2.0, 1.0));
}

#[tokio::test]
async fn purchases_app_store_refunds_and_reversals_record_credits_once() {
    let chain = TestChain::generate().unwrap();
    let mut h = Harness::in_memory();
    h.deps.credits = credits_config(vec![chain.root_der().to_vec()]);
    let credits = h.deps.credits_service().unwrap();
    let user = h.signed_in("+14155550161").await.user.id;
    let tx = Transaction::consumable("4000000000000001", PRODUCT_50, BUNDLE_ID, "Sandbox");
    let signed = chain.sign(&tx.payload()).unwrap();
    credits.purchase(&user, &signed, std::future::ready(Ok(false))).await.unwrap();
    credits.purchase(&user, &signed, std::future::ready(Ok(false))).await.unwrap();
    assert_eq!(h.metrics.values(Metric::CreditsPurchased), [50.0], "a repeat credits nothing and counts nothing");
    let info = chain.sign(&tx.payload()).unwrap();
    let notify = |kind: &str, uuid: &str| chain.sign(&notification(kind, uuid, BUNDLE_ID, "Sandbox", Some(&info)));
    let refund = notify("REFUND", "d00d0000-0000-4000-8000-000000000001").unwrap();
    credits.notification(&refund).await.unwrap();
    credits.notification(&refund).await.unwrap();
    // Credits the App Store took back are revoked; CreditsRefunded is only for failed generations.
    assert_eq!(h.metrics.values(Metric::CreditsRevoked), [50.0]);
    assert!(h.metrics.values(Metric::CreditsRefunded).is_empty());
    // A reversal gives them back: the revoked total is net of it.
    let reversed = notify("REFUND_REVERSED", "d00d0000-0000-4000-8000-000000000002").unwrap();
    credits.notification(&reversed).await.unwrap();
    credits.notification(&reversed).await.unwrap();
    assert_eq!(h.metrics.values(Metric::CreditsRevoked), [50.0, -50.0]);
    assert_eq!(h.metrics.total(Metric::CreditsRevoked), 0.0);
    assert!(h.metrics.values(Metric::CreditsRefunded).is_empty());
    assert_eq!(h.metrics.values(Metric::CreditsPurchased), [50.0], "a reversal is not a purchase");
}

/// The template generations are started in: it costs 3 credits, so a credits metric that counted jobs instead
/// of credits would show.
const TEMPLATE: &str = "astronaut";
const COST: f64 = 3.0;
/// How long [`Slow`] takes to answer.
const PROVIDER_MS: u64 = 40;

/// A provider that takes [`PROVIDER_MS`] to answer from a script (then succeeds).
struct Slow(Mutex<VecDeque<Result<RenderedImage, ProviderError>>>);

#[async_trait]
impl ImageProvider for Slow {
    fn needs_image_url(&self) -> bool {
        false
    }
    async fn render(&self, _: RenderRequest<'_>) -> Result<RenderedImage, ProviderError> {
        tokio::time::sleep(Duration::from_millis(PROVIDER_MS)).await;
        let mut bytes = Vec::new();
        image::RgbImage::from_pixel(8, 8, image::Rgb([10, 200, 10]))
            .write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png)
            .unwrap();
        let next = self.0.lock().unwrap().pop_front();
        next.unwrap_or(Ok(RenderedImage { bytes, content_type: "image/png".into() }))
    }
}

struct Studio {
    h: Harness,
    generations: Generations,
    worker: Worker,
    user: UserId,
    upload: UploadId,
}

/// A signed-in user with 10 credits (3 starter + 7) and an uploaded photo, the seeded catalogue, and a worker
/// rendering with [`Slow`] answering `script`.
async fn studio(script: Vec<Result<RenderedImage, ProviderError>>) -> Studio {
    let h = Harness::in_memory();
    facemake::services::catalogue::seed_catalogue(
        h.deps.store.as_ref(),
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../infra/catalogue/catalogue.yaml"),
    )
    .await
    .unwrap();
    let user = h.signed_in("+14155550162").await.user.id;
    h.deps.store.adjust(&user, 7, "metrics test", h.clock.now()).await.unwrap();
    let upload = UploadId::new();
    let mut photo = Vec::new();
    image::RgbImage::from_fn(64, 48, |x, y| image::Rgb([(x * 4) as u8, (y * 5) as u8, 128]))
        .write_to(&mut std::io::Cursor::new(&mut photo), image::ImageFormat::Jpeg)
        .unwrap();
    h.objects.put(&object_keys::upload(&user, &upload), photo, "image/jpeg").await.unwrap();
    let generations = h.deps.generations(Arc::new(h.deps.catalogue_service()));
    let mut worker = h.deps.worker();
    worker.providers = Providers::all(Arc::new(Slow(Mutex::new(script.into()))));
    worker.retry =
        RetryPolicy { max_attempts: 2, first_delay: Duration::from_millis(5), budget: Duration::from_secs(5) };
    Studio { h, generations, worker, user, upload }
}

impl Studio {
    async fn start(&self, key: &str) -> Result<JobRef, StartError> {
        let started = self
            .generations
            .start(
                &self.user,
                key,
                &TemplateId::parse(TEMPLATE).unwrap(),
                &facemake::domain::GenerationSource::Upload(self.upload.clone()),
                std::future::ready(Ok(false)),
            )
            .await?;
        Ok(JobRef { user_id: self.user.clone(), generation_id: started.generation.id })
    }

    fn values(&self, metric: Metric) -> Vec<f64> {
        self.h.metrics.values(metric)
    }
}

#[tokio::test]
async fn a_start_records_the_generation_and_the_credits_it_spent_once() {
    let s = studio(vec![]).await;
    s.start("k1").await.unwrap();
    assert_eq!(s.values(Metric::GenerationsStarted), [1.0]);
    assert_eq!(s.values(Metric::CreditsSpent), [COST], "the credits charged, not a count of starts");
    // A replay of the same request charges nothing and counts nothing; a refused start neither.
    s.start("k1").await.unwrap();
    s.start("k2").await.unwrap();
    s.start("k3").await.unwrap();
    assert!(matches!(s.start("k4").await, Err(StartError::Insufficient { .. } | StartError::TooManyInFlight)));
    assert_eq!(s.values(Metric::GenerationsStarted), [1.0; 3]);
    assert_eq!(s.values(Metric::CreditsSpent), [COST; 3]);
    // Nothing has run yet.
    for m in [Metric::GenerationsSucceeded, Metric::GenerationsFailed, Metric::CreditsRefunded, Metric::ProviderLatency]
    {
        assert!(s.values(m).is_empty(), "{m:?}");
    }
}

#[tokio::test]
async fn a_success_records_succeeded_and_the_provider_latency() {
    let s = studio(vec![]).await;
    let job = s.start("k").await.unwrap();
    assert!(matches!(s.worker.process(&job).await.unwrap(), JobResult::Succeeded { .. }));
    assert_eq!(s.values(Metric::GenerationsSucceeded), [1.0]);
    let latency = s.values(Metric::ProviderLatency);
    assert_eq!(latency.len(), 1, "one data point per job: {latency:?}");
    assert!(latency[0] >= PROVIDER_MS as f64 && latency[0] < 5_000.0, "milliseconds in the provider: {latency:?}");
    for m in [Metric::GenerationsFailed, Metric::GenerationsRefunded, Metric::CreditsRefunded] {
        assert!(s.values(m).is_empty(), "{m:?}");
    }
    // A redelivery of the finished job records nothing more.
    assert_eq!(s.worker.process(&job).await.unwrap(), JobResult::Skipped);
    assert_eq!((s.values(Metric::GenerationsSucceeded).len(), s.values(Metric::ProviderLatency).len()), (1, 1));
}

#[tokio::test]
async fn a_refusal_records_failed_refunded_and_the_credits_given_back() {
    let refusal = ProviderError::Permanent {
        kind: RefusalKind::ContentPolicy,
        user_reason: "declined".into(),
        detail: "x".into(),
    };
    let transient = ProviderError::Transient { detail: "HTTP 500".into(), retry_after_secs: None };
    let s = studio(vec![Err(transient), Err(refusal)]).await;
    let job = s.start("k").await.unwrap();
    assert!(matches!(s.worker.process(&job).await.unwrap(), JobResult::Failed { .. }));
    assert_eq!(s.values(Metric::GenerationsFailed), [1.0]);
    assert_eq!(s.values(Metric::GenerationsRefunded), [1.0]);
    assert_eq!(s.values(Metric::CreditsRefunded), [COST], "the credits given back, not a count of refunds");
    assert!(s.values(Metric::GenerationsSucceeded).is_empty());
    assert!(s.values(Metric::GenerationsTimedOut).is_empty(), "the worker failed it, not the reconciler");
    assert!(s.values(Metric::CreditsRevoked).is_empty(), "nothing was taken back by the App Store");
    // The job reached the provider: one data point, covering both attempts and the wait between them.
    let latency = s.values(Metric::ProviderLatency);
    assert_eq!(latency.len(), 1, "{latency:?}");
    assert!(latency[0] >= 2.0 * PROVIDER_MS as f64, "{latency:?}");
    // Failing it again (the reconciler, a redelivery) records nothing: the refund happened once.
    s.h.clock.advance(s.h.deps.generation.deadline_secs + 1);
    assert_eq!(s.worker.reconcile().await.unwrap(), 0);
    assert_eq!(s.worker.process(&job).await.unwrap(), JobResult::Skipped);
    assert_eq!(s.values(Metric::CreditsRefunded), [COST]);
    assert_eq!(s.values(Metric::GenerationsFailed), [1.0]);
}

#[tokio::test]
async fn a_photo_that_never_reaches_the_provider_records_no_latency() {
    let s = studio(vec![]).await;
    s.h.objects.put(&object_keys::upload(&s.user, &s.upload), b"not a photo".to_vec(), "image/jpeg").await.unwrap();
    let job = s.start("k").await.unwrap();
    assert!(matches!(s.worker.process(&job).await.unwrap(), JobResult::Failed { .. }));
    assert_eq!(s.values(Metric::CreditsRefunded), [COST]);
    assert_eq!((s.values(Metric::GenerationsFailed), s.values(Metric::GenerationsRefunded)), (vec![1.0], vec![1.0]));
    assert!(s.values(Metric::ProviderLatency).is_empty());
}

#[tokio::test]
async fn the_reconciler_records_timed_out_failed_refunded_and_the_credits_given_back() {
    let s = studio(vec![]).await;
    let (a, b) = (s.start("a").await.unwrap(), s.start("b").await.unwrap());
    // A worker claimed the first and died; the second was never picked up.
    let now = s.h.clock.now();
    s.h.deps.store.claim(&a, "dead-worker", None, now + 330, now).await.unwrap();
    s.h.clock.advance(s.h.deps.generation.deadline_secs);
    assert_eq!(s.worker.reconcile().await.unwrap(), 2);
    assert_eq!(s.values(Metric::GenerationsTimedOut), [1.0, 1.0]);
    assert_eq!(s.values(Metric::GenerationsFailed), [1.0, 1.0]);
    assert_eq!(s.values(Metric::GenerationsRefunded), [1.0, 1.0]);
    assert_eq!(s.values(Metric::CreditsRefunded), [COST, COST]);
    assert!(s.values(Metric::ProviderLatency).is_empty() && s.values(Metric::GenerationsSucceeded).is_empty());
    // A second run, and the dead worker's redelivery, refund and record nothing.
    assert_eq!(s.worker.reconcile().await.unwrap(), 0);
    assert_eq!(s.worker.process(&b).await.unwrap(), JobResult::Skipped);
    assert_eq!(s.h.metrics.total(Metric::CreditsRefunded), 2.0 * COST);
    assert_eq!(s.h.metrics.total(Metric::GenerationsTimedOut), 2.0);
    // What was spent came back: spent minus refunded is what the user was charged in the end (nothing).
    assert_eq!(s.h.metrics.total(Metric::CreditsSpent) - s.h.metrics.total(Metric::CreditsRefunded), 0.0);
}
