//! OpenAI without a waiting worker: on a stage whose OpenAI project calls back, the worker creates a
//! background response (the Responses API's image tool, with the template's image model and parameters) and
//! returns; the project's webhook event names only the response, which is read back for its job and image and
//! finishes the job once (stored output, or a refund). Replays, strangers, other events and responses that
//! cannot be read yet change nothing — on the in-memory store and on DynamoDB Local, against a wiremock OpenAI.

use std::sync::Arc;

use base64::Engine as _;
use facemake::adapters::providers::openai::background::JOB_METADATA_KEY;
use facemake::adapters::providers::openai::OpenAiImages;
use facemake::adapters::providers::{ProviderCredentials, ProviderKeys};
use facemake::domain::{
    object_keys, GenerationSource, GenerationStatus, LedgerEntry, LedgerKind, PhoneNumber, PushEnvironment, TemplateId,
    UploadId, UserId,
};
use facemake::ports::{JobRef, NewUser, ObjectStore};
use facemake::services::generation::callback::{CallbackError, CallbackResult, Callbacks};
use facemake::services::generation::{JobResult, Providers, Worker};
use facemake::wiring::Store;
use serde_json::{json, Value};
use testkit::Harness;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

testkit::store_contract!(
    the_worker_creates_a_background_response_and_returns,
    a_completed_response_stores_its_image_once_and_a_replay_changes_nothing,
    a_failed_response_refunds_exactly_once,
    events_of_other_kinds_responses_and_projects_change_nothing,
    a_response_that_cannot_be_read_yet_leaves_the_job_awaiting,
);

struct World {
    h: Harness,
    store: Arc<dyn Store>,
    user: UserId,
    worker: Worker,
    callbacks: Callbacks,
    openai: MockServer,
}

fn unique_phone() -> PhoneNumber {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1000);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    PhoneNumber::parse(&format!("+1415444{n:04}"), None).unwrap()
}

fn jpeg() -> Vec<u8> {
    let mut bytes = Vec::new();
    image::RgbImage::from_pixel(8, 8, image::Rgb([20, 120, 200]))
        .write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Jpeg)
        .unwrap();
    bytes
}

async fn world(store: Arc<dyn Store>) -> World {
    let mut h = Harness::over(store.clone());
    h.deps.generation.openai_webhooks = true;
    let catalogue = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../infra/catalogue/catalogue.yaml");
    facemake::services::catalogue::seed_catalogue(store.as_ref(), &catalogue).await.unwrap();
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
    let openai = MockServer::start().await;
    let keys = ProviderKeys { openai_api_key: Some("sk-test".into()), replicate_api_token: None };
    let adapter = || {
        OpenAiImages::new(openai.uri(), ProviderCredentials::fixed(keys.clone())).with_responses_model("gpt-4.1-mini")
    };
    let mut worker = h.deps.worker();
    worker.providers = Providers { openai: Arc::new(adapter()), replicate: worker.providers.replicate.clone() };
    let mut callbacks = h.deps.callbacks();
    callbacks.store = store.clone();
    callbacks.responses = Arc::new(adapter());
    World { h, store, user, worker, callbacks, openai }
}

fn event(kind: &str, response: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "object": "event", "id": "evt_1", "type": kind, "created_at": 1_750_287_018, "data": {"id": response}
    }))
    .unwrap()
}

impl World {
    /// A generation of an OpenAI template (neon-noir), started and handed to the worker: its job and response id.
    async fn submitted(&self, key: &str) -> (JobRef, String) {
        let id = format!("resp_{key}");
        Mock::given(method("POST"))
            .and(path("/v1/responses"))
            .and(header("authorization", "Bearer sk-test"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": id, "status": "queued", "output": []})))
            .up_to_n_times(1)
            .with_priority(1)
            .mount(&self.openai)
            .await;
        let upload = UploadId::new();
        let photo = testkit::camera_photo(64, 48);
        self.h.objects.put(&object_keys::upload(&self.user, &upload), photo, "image/jpeg").await.unwrap();
        let generations = self.h.deps.generations(Arc::new(self.h.deps.catalogue_service()));
        let template = TemplateId::parse("neon-noir").unwrap();
        let started = generations
            .start(&self.user, key, &template, &GenerationSource::Upload(upload), std::future::ready(Ok(false)))
            .await
            .unwrap();
        let job = JobRef { user_id: self.user.clone(), generation_id: started.generation.id.clone() };
        match self.worker.process(&job).await.unwrap() {
            JobResult::Submitted { prediction } => (job, prediction),
            other => panic!("not handed over: {other:?}"),
        }
    }

    /// OpenAI's answer to `GET /v1/responses/{id}`.
    async fn responds(&self, id: &str, status: u16, body: Value) {
        Mock::given(method("GET"))
            .and(path(format!("/v1/responses/{id}")))
            .respond_with(ResponseTemplate::new(status).set_body_json(body))
            .mount(&self.openai)
            .await;
    }

    async fn record(&self, job: &JobRef) -> facemake::domain::Generation {
        self.store.generation(&job.user_id, &job.generation_id).await.unwrap().unwrap()
    }

    async fn balance(&self) -> u64 {
        self.store.balance(&self.user).await.unwrap()
    }
}

fn completed(job: &JobRef, image: &[u8]) -> Value {
    json!({
        "id": "x", "object": "response", "status": "completed", "background": true,
        "metadata": {JOB_METADATA_KEY: job.reference()},
        "output": [
            {"type": "reasoning", "id": "rs_1"},
            {"type": "image_generation_call", "id": "ig_1", "status": "completed",
             "result": base64::engine::general_purpose::STANDARD.encode(image)}
        ]
    })
}

async fn the_worker_creates_a_background_response_and_returns(store: Arc<dyn Store>) {
    let w = world(store).await;
    let (job, response) = w.submitted("a").await;
    let g = w.record(&job).await;
    assert_eq!(
        (g.status, g.prediction.as_deref(), g.claim.as_deref()),
        (GenerationStatus::Processing, Some(response.as_str()), None)
    );
    let requests = w.openai.received_requests().await.unwrap();
    assert_eq!(requests.len(), 1, "one call: the create, no waiting");
    let body: Value = requests[0].body_json().unwrap();
    assert_eq!((body["background"].as_bool(), body["store"].as_bool()), (Some(true), Some(true)));
    assert_eq!(body["model"], "gpt-4.1-mini");
    assert_eq!(body["tool_choice"], json!({"type": "image_generation"}));
    assert_eq!(body["max_tool_calls"], 1);
    assert_eq!(body["metadata"][JOB_METADATA_KEY], job.reference());
    // The template's image model and parameters go to the tool, as they went to the edit endpoint.
    let tool = &body["tools"][0];
    assert_eq!((tool["type"].as_str(), tool["model"].as_str()), (Some("image_generation"), Some("gpt-image-1")));
    assert_eq!((tool["quality"].as_str(), tool["input_fidelity"].as_str()), (Some("medium"), Some("high")));
    assert!(tool.get("localEffect").is_none() && tool.get("n").is_none());
    let content = body["input"][0]["content"].as_array().unwrap();
    assert_eq!(content[0]["type"], "input_text");
    let url = content[1]["image_url"].as_str().unwrap();
    let photo = base64::engine::general_purpose::STANDARD.decode(url.strip_prefix("data:image/jpeg;base64,").unwrap());
    assert_eq!(photo.unwrap()[..2], [0xFF, 0xD8], "the prepared photo, a JPEG");
    // No worker takes it again.
    assert_eq!(w.worker.process(&job).await.unwrap(), JobResult::Skipped);
    assert_eq!(w.openai.received_requests().await.unwrap().len(), 1);
    assert_eq!(w.balance().await, 4, "charged once");
}

async fn a_completed_response_stores_its_image_once_and_a_replay_changes_nothing(store: Arc<dyn Store>) {
    let w = world(store).await;
    let device = facemake::domain::DeviceToken::parse(&"d1".repeat(32)).unwrap();
    w.h.deps.notifications().register(&w.user, &device, PushEnvironment::Sandbox).await.unwrap();
    let (job, response) = w.submitted("a").await;
    w.responds(&response, 200, completed(&job, &jpeg())).await;
    let (named, result) = w.callbacks.handle_openai(&event("response.completed", &response)).await.unwrap();
    assert_eq!(named.as_ref(), Some(&job));
    let CallbackResult::Succeeded { output_key } = result else { panic!("{result:?}") };
    assert!(output_key.ends_with(".jpg"), "{output_key}");
    let g = w.record(&job).await;
    assert_eq!((g.status, g.output_key.as_deref()), (GenerationStatus::Succeeded, Some(output_key.as_str())));
    assert_eq!(w.h.objects.get(&output_key, u64::MAX).await.unwrap().unwrap(), jpeg());
    assert_eq!(w.h.pushes.pushes_to(device.as_str()).len(), 1, "pushed");
    // OpenAI delivers the event again: nothing more (no second push either).
    let (_, again) = w.callbacks.handle_openai(&event("response.completed", &response)).await.unwrap();
    assert!(matches!(again, CallbackResult::Ignored(_)), "{again:?}");
    assert_eq!(w.h.pushes.pushes_to(device.as_str()).len(), 1);
    assert_eq!(w.balance().await, 4);
}

async fn a_failed_response_refunds_exactly_once(store: Arc<dyn Store>) {
    let w = world(store).await;
    let (job, response) = w.submitted("a").await;
    let failed = json!({
        "status": "failed", "metadata": {JOB_METADATA_KEY: job.reference()},
        "error": {"code": "image_content_policy_violation", "message": "rejected by the safety system"}, "output": []
    });
    w.responds(&response, 200, failed).await;
    for _ in 0..3 {
        w.callbacks.handle_openai(&event("response.failed", &response)).await.unwrap();
    }
    let g = w.record(&job).await;
    assert_eq!((g.status, g.refunded), (GenerationStatus::Failed, true));
    assert!(g.failure_reason.unwrap().to_lowercase().contains("safety"));
    assert_eq!(w.balance().await, 5, "refunded once");
    let refunds = w.store.ledger(&w.user, 100).await.unwrap().into_iter().filter(|e| e.kind == LedgerKind::Refund);
    assert_eq!(refunds.count(), 1);
}

async fn events_of_other_kinds_responses_and_projects_change_nothing(store: Arc<dyn Store>) {
    let w = world(store).await;
    let (job, response) = w.submitted("a").await;
    // Not about a response at all (the project's fine-tuning jobs, batches...).
    let (named, result) = w.callbacks.handle_openai(&event("batch.completed", "batch_1")).await.unwrap();
    assert_eq!((named, matches!(result, CallbackResult::Ignored(_))), (None, true));
    // A response without our metadata (another app of the project), one the project no longer has (404), one
    // naming a job that awaits another response.
    w.responds("resp_other", 200, json!({"status": "completed", "metadata": {}, "output": []})).await;
    w.responds("resp_gone", 404, json!({"error": {"message": "not found"}})).await;
    let mut stranger = completed(&job, &jpeg());
    stranger["id"] = json!("resp_stale");
    w.responds("resp_stale", 200, stranger).await;
    for id in ["resp_other", "resp_gone", "resp_stale"] {
        let (_, result) = w.callbacks.handle_openai(&event("response.completed", id)).await.unwrap();
        assert!(matches!(result, CallbackResult::Ignored(_)), "{id}: {result:?}");
    }
    assert!(matches!(w.callbacks.handle_openai(b"[1]").await, Err(CallbackError::Malformed(_))));
    let g = w.record(&job).await;
    assert_eq!((g.status, g.prediction.as_deref()), (GenerationStatus::Processing, Some(response.as_str())));
    assert_eq!(w.balance().await, 4);
}

async fn a_response_that_cannot_be_read_yet_leaves_the_job_awaiting(store: Arc<dyn Store>) {
    let w = world(store).await;
    let (job, response) = w.submitted("a").await;
    w.responds(&response, 500, json!({"error": {"message": "boom", "type": "server_error"}})).await;
    let outcome = w.callbacks.handle_openai(&event("response.completed", &response)).await;
    assert!(matches!(outcome, Err(CallbackError::Fetch(_))), "{outcome:?}");
    // Still in progress when the event came (it cannot be, but a queued answer must change nothing either).
    let (job2, response2) = w.submitted("b").await;
    let queued = json!({"status": "in_progress", "metadata": {JOB_METADATA_KEY: job2.reference()}, "output": []});
    w.responds(&response2, 200, queued).await;
    let (_, result) = w.callbacks.handle_openai(&event("response.completed", &response2)).await.unwrap();
    assert!(matches!(result, CallbackResult::Ignored(_)));
    for j in [&job, &job2] {
        assert_eq!(w.record(j).await.status, GenerationStatus::Processing);
    }
    assert_eq!(w.balance().await, 3);
}
