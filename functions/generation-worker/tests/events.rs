//! The worker and the reconciler driven by their event fixtures (a DynamoDB Streams batch, a schedule).

use std::sync::Arc;

use async_trait::async_trait;
use facemake::domain::{object_keys, GenerationStatus, TemplateId, UploadId};
use facemake::ports::{ImageProvider, ObjectStore, PortError, ProviderError, RenderRequest, RenderedImage};
use facemake::services::generation::Providers;
use serde_json::{json, Value};
use testkit::Harness;

/// The fixture's ids.
const FIXTURE_USER: &str = "01KAFC0S00GP1XF3A7QYFR6F0D";
const FIXTURE_GENERATION: &str = "01KARH98PRTEWH0AVNH9DN65R6";

/// The worker's handler on a batch as JSON (the fixture, edited), answering as JSON.
async fn handle(
    worker: Arc<facemake::services::generation::Worker>,
    batch: Value,
) -> Result<Value, lambda_http::Error> {
    let event = serde_json::from_value(batch)?;
    Ok(serde_json::to_value(generation_worker::handle(worker, event).await?)?)
}

fn record(batch: &Value) -> aws_lambda_events::event::dynamodb::EventRecord {
    serde_json::from_value(batch["Records"][0].clone()).unwrap()
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{}/../../events/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// A started generation (charged, queued) and the stream batch that announces it.
async fn started(h: &Harness) -> (facemake::domain::UserId, String, Value) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../infra/catalogue/catalogue.yaml");
    facemake::services::catalogue::seed_catalogue(h.deps.store.as_ref(), &path).await.unwrap();
    let session = h.signed_in("+14155550123").await;
    let user = session.user.id;
    let upload = UploadId::new();
    let mut photo = Vec::new();
    image::RgbImage::from_pixel(32, 32, image::Rgb([1, 2, 3]))
        .write_to(&mut std::io::Cursor::new(&mut photo), image::ImageFormat::Jpeg)
        .unwrap();
    h.objects.put(&object_keys::upload(&user, &upload), photo, "image/jpeg").await.unwrap();
    let generations = h.deps.generations(Arc::new(h.deps.catalogue_service()));
    let g = generations
        .start(
            &user,
            "k",
            &TemplateId::parse("neon-noir").unwrap(),
            &facemake::domain::GenerationSource::Upload(upload.clone()),
            std::future::ready(Ok(false)),
        )
        .await
        .unwrap();
    let id = g.generation.id;
    let batch = fixture("generation-stream-insert.json")
        .replace(FIXTURE_USER, &user.to_string())
        .replace(FIXTURE_GENERATION, &id);
    (user, id, serde_json::from_str(&batch).unwrap())
}

#[tokio::test]
async fn a_stream_insert_renders_the_job() {
    let h = Harness::in_memory();
    let (user, id, batch) = started(&h).await;
    let answer = handle(Arc::new(h.deps.worker()), batch.clone()).await.unwrap();
    assert_eq!(answer, json!({"batchItemFailures": []}));
    let g = h.deps.store.generation(&user, &id).await.unwrap().unwrap();
    assert_eq!(g.status, GenerationStatus::Succeeded);
    // Lambda redelivering the same batch changes nothing.
    let again = handle(Arc::new(h.deps.worker()), batch).await.unwrap();
    assert_eq!(again, json!({"batchItemFailures": []}));
    assert_eq!(h.deps.store.balance(&user).await.unwrap(), 2);
}

#[tokio::test]
async fn the_fixture_names_a_generation_and_other_records_are_ignored() {
    let batch: Value = serde_json::from_str(&fixture("generation-stream-insert.json")).unwrap();
    let job = generation_worker::job_of(&record(&batch)).unwrap();
    assert_eq!((job.user_id.to_string().as_str(), job.generation_id.as_str()), (FIXTURE_USER, FIXTURE_GENERATION));
    let mut other = batch.clone();
    other["Records"][0]["dynamodb"]["Keys"]["sk"]["S"] = json!("IDEM#abc");
    assert!(generation_worker::job_of(&record(&other)).is_none());
    let mut modify = batch;
    modify["Records"][0]["eventName"] = json!("MODIFY");
    // Nothing to do for either, and nothing to retry.
    let h = Harness::in_memory();
    for b in [other, modify] {
        let answer = handle(Arc::new(h.deps.worker()), b).await.unwrap();
        assert_eq!(answer, json!({"batchItemFailures": []}));
    }
}

/// A bucket that is down: every call fails as unavailable.
struct DownBucket;

#[async_trait]
impl ObjectStore for DownBucket {
    async fn presign_upload(
        &self,
        _: &str,
        _: &str,
        _: u64,
        _: u64,
        _: i64,
    ) -> Result<facemake::ports::PresignedUpload, PortError> {
        Err(PortError::unavailable("images bucket", "down"))
    }
    async fn presign_download(&self, _: &str, _: u64, _: i64) -> Result<String, PortError> {
        Err(PortError::unavailable("images bucket", "down"))
    }
    async fn head(&self, _: &str) -> Result<Option<facemake::ports::ObjectInfo>, PortError> {
        Err(PortError::unavailable("images bucket", "down"))
    }
    async fn get(&self, _: &str, _: u64) -> Result<Option<Vec<u8>>, PortError> {
        Err(PortError::unavailable("images bucket", "down"))
    }
    async fn put(&self, _: &str, _: Vec<u8>, _: &str) -> Result<(), PortError> {
        Err(PortError::unavailable("images bucket", "down"))
    }
    async fn delete(&self, _: &[String]) -> Result<(), PortError> {
        Err(PortError::unavailable("images bucket", "down"))
    }
    async fn delete_prefix(&self, _: &str) -> Result<usize, PortError> {
        Err(PortError::unavailable("images bucket", "down"))
    }
}

struct NeverCalled;

#[async_trait]
impl ImageProvider for NeverCalled {
    fn needs_image_url(&self) -> bool {
        false
    }
    async fn render(&self, _: RenderRequest<'_>) -> Result<RenderedImage, ProviderError> {
        panic!("the provider must not be called when the photo cannot be read")
    }
}

fn broken_worker(h: &Harness) -> Arc<facemake::services::generation::Worker> {
    let mut worker = h.deps.worker();
    worker.objects = Arc::new(DownBucket);
    worker.providers = Providers::all(Arc::new(NeverCalled));
    Arc::new(worker)
}

#[tokio::test]
async fn an_infrastructure_error_is_retried_at_once() {
    let h = Harness::in_memory();
    let (user, id, batch) = started(&h).await;
    let answer = handle(broken_worker(&h), batch.clone()).await.unwrap();
    let sequence = batch["Records"][0]["dynamodb"]["SequenceNumber"].clone();
    assert_eq!(answer, json!({"batchItemFailures": [{"itemIdentifier": sequence}]}), "Lambda retries the record");
    // The failed attempt gave its claim up, so Lambda's redelivery seconds later does the job.
    let answer = handle(Arc::new(h.deps.worker()), batch).await.unwrap();
    assert_eq!(answer, json!({"batchItemFailures": []}));
    let g = h.deps.store.generation(&user, &id).await.unwrap().unwrap();
    assert_eq!((g.status, g.attempts), (GenerationStatus::Succeeded, 2));
    assert_eq!(h.deps.store.balance(&user).await.unwrap(), 2, "charged once");
}

#[tokio::test]
async fn a_record_that_keeps_failing_is_refunded_by_the_reconciler_at_the_deadline() {
    let h = Harness::in_memory();
    let (user, id, batch) = started(&h).await;
    // Every delivery fails (after the retries, Lambda sends the record to the dead-letter queue).
    for _ in 0..3 {
        let answer = handle(broken_worker(&h), batch.clone()).await.unwrap();
        assert_eq!(answer["batchItemFailures"].as_array().unwrap().len(), 1);
    }
    assert_eq!(h.deps.store.balance(&user).await.unwrap(), 2, "charged while in flight");

    // The retries never succeed; the scheduled reconciler gives the credit back at the deadline.
    let schedule: Value = serde_json::from_str(&fixture("reconciler-schedule.json")).unwrap();
    let reconciler = Arc::new(generation_reconciler::State::new(&h.deps));
    let run = |n: u64| json!({"refunded": n, "deletionsFinished": 0});
    assert_eq!(generation_reconciler::handle(reconciler.clone(), schedule.clone()).await.unwrap(), run(0));
    h.clock.advance(h.deps.generation.deadline_secs);
    assert_eq!(generation_reconciler::handle(reconciler.clone(), schedule.clone()).await.unwrap(), run(1));
    assert_eq!(generation_reconciler::handle(reconciler, schedule).await.unwrap(), run(0));
    let g = h.deps.store.generation(&user, &id).await.unwrap().unwrap();
    assert_eq!((g.status, g.refunded), (GenerationStatus::Failed, true));
    assert_eq!(h.deps.store.balance(&user).await.unwrap(), 3);
}
