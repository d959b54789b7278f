//! OpenAI's webhook driven by its API Gateway event fixture: unsigned, badly signed, stale and malformed
//! calls change nothing; a signed event finishes the job its response names, once.

use std::sync::Arc;

use base64::Engine as _;
use facemake::adapters::providers::openai::background::JOB_METADATA_KEY;
use facemake::adapters::providers::openai::OpenAiImages;
use facemake::adapters::providers::{ProviderCredentials, ProviderKeys};
use facemake::adapters::webhooks::sign;
use facemake::domain::{object_keys, GenerationSource, GenerationStatus, TemplateId, UploadId};
use facemake::ports::{Clock, JobRef, ObjectStore};
use facemake::services::generation::{JobResult, Providers};
use lambda_http::Request;
use openai_webhooks::LOCAL_SIGNING_KEY;
use testkit::{body_json, Harness};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const RESPONSE: &str = "resp_68c1f0a2b3c4d5e6f708192a3b4c5d6e";

fn fixture_text() -> String {
    std::fs::read_to_string(format!("{}/../../events/openai-webhook.json", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// The fixture with `body` signed by `key` at `timestamp` (no signature when `key` is `None`).
fn signed(body: &str, key: Option<&str>, timestamp: i64) -> Request {
    let mut event: serde_json::Value = serde_json::from_str(&fixture_text()).unwrap();
    event["body"] = body.into();
    event["headers"]["content-length"] = body.len().to_string().into();
    event["headers"]["webhook-timestamp"] = timestamp.to_string().into();
    let id = event["headers"]["webhook-id"].as_str().unwrap().to_owned();
    match key {
        Some(key) => event["headers"]["webhook-signature"] = sign(key, &id, timestamp, body.as_bytes()).unwrap().into(),
        None => {
            event["headers"].as_object_mut().unwrap().remove("webhook-signature");
        }
    }
    lambda_http::request::from_str(&event.to_string()).unwrap()
}

#[tokio::test]
async fn only_a_signed_fresh_event_finishes_the_job_and_only_once() {
    let openai = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/responses"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({"id": RESPONSE, "status": "queued"})))
        .expect(1)
        .mount(&openai)
        .await;
    let mut h = Harness::in_memory();
    h.deps.generation.openai_webhooks = true;
    h.deps.generation.openai_api_base = openai.uri();
    let catalogue = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../infra/catalogue/catalogue.yaml");
    facemake::services::catalogue::seed_catalogue(h.deps.store.as_ref(), &catalogue).await.unwrap();
    let session = h.signed_in("+14155550123").await;
    let user = session.user.id.clone();
    let upload = UploadId::new();
    h.objects.put(&object_keys::upload(&user, &upload), testkit::camera_photo(64, 48), "image/jpeg").await.unwrap();
    let generations = h.deps.generations(Arc::new(h.deps.catalogue_service()));
    let template = TemplateId::parse("neon-noir").unwrap();
    let started = generations
        .start(&user, "k", &template, &GenerationSource::Upload(upload), std::future::ready(Ok(false)))
        .await
        .unwrap();
    let job = JobRef { user_id: user.clone(), generation_id: started.generation.id.clone() };
    let keys = || {
        ProviderCredentials::fixed(ProviderKeys { openai_api_key: Some("sk-test".into()), replicate_api_token: None })
    };
    let mut worker = h.deps.worker();
    worker.providers = Providers { openai: Arc::new(OpenAiImages::new(openai.uri(), keys())), ..worker.providers };
    assert!(matches!(worker.process(&job).await.unwrap(), JobResult::Submitted { .. }));

    let jpeg = {
        let mut bytes = Vec::new();
        image::RgbImage::from_pixel(8, 8, image::Rgb([1, 2, 3]))
            .write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Jpeg)
            .unwrap();
        bytes
    };
    let completed = serde_json::json!({
        "id": RESPONSE, "status": "completed", "metadata": {JOB_METADATA_KEY: job.reference()},
        "output": [{"type": "image_generation_call", "status": "completed",
                    "result": base64::engine::general_purpose::STANDARD.encode(&jpeg)}]
    });
    Mock::given(method("GET"))
        .and(path(format!("/v1/responses/{RESPONSE}")))
        .respond_with(ResponseTemplate::new(200).set_body_json(completed))
        .expect(2)
        .mount(&openai)
        .await;
    let mut state = openai_webhooks::State::new(&h.deps);
    state.callbacks.responses = Arc::new(OpenAiImages::new(openai.uri(), keys()));
    let router = openai_webhooks::router(Arc::new(state));
    // The wall clock, which the signature check reads.
    let now = facemake::ports::SystemClock.now();
    let body = serde_json::from_str::<serde_json::Value>(&fixture_text()).unwrap()["body"].as_str().unwrap().to_owned();
    let status = || {
        let (h, job) = (h.clone(), job.clone());
        async move { h.deps.store.generation(&job.user_id, &job.generation_id).await.unwrap().unwrap().status }
    };
    let refused = [
        (lambda_http::request::from_str(&fixture_text()).unwrap(), 401),
        (signed(&body, None, now), 400),
        (signed(&body, Some("whsec_c29tZW9uZS1lbHNlcy1rZXktMDEyMzQ1Njc4OQ=="), now), 401),
        (signed(&body, Some(LOCAL_SIGNING_KEY), now - 400), 401),
        (signed(&body, Some(LOCAL_SIGNING_KEY), now + 400), 401),
        (signed("[1,2]", Some(LOCAL_SIGNING_KEY), now), 400),
    ];
    for (i, (request, expected)) in refused.into_iter().enumerate() {
        let response = router.handle(request).await;
        assert_eq!(response.status(), expected, "case {i}: {}", body_json(&response));
        assert!(body_json(&response)["error"]["code"].is_string(), "case {i}: the envelope");
        assert_eq!(status().await, GenerationStatus::Processing, "case {i}: nothing changed");
    }
    assert_eq!(h.metrics.total(facemake::metrics::Metric::CallbacksRejected), 5.0, "each refusal counted");
    // Another kind of event of the project: 200, nothing read.
    let batch = r#"{"object":"event","id":"evt_2","type":"batch.completed","created_at":1,"data":{"id":"batch_1"}}"#;
    assert_eq!(router.handle(signed(batch, Some(LOCAL_SIGNING_KEY), now)).await.status(), 200);

    // The real one: 200, the job succeeded with the image stored; again (a redelivery): 200, nothing more.
    let response = router.handle(signed(&body, Some(LOCAL_SIGNING_KEY), now)).await;
    assert_eq!(response.status(), 200, "{}", body_json(&response));
    let g = h.deps.store.generation(&user, &job.generation_id).await.unwrap().unwrap();
    assert_eq!(g.status, GenerationStatus::Succeeded);
    assert_eq!(h.objects.get(g.output_key.as_ref().unwrap(), u64::MAX).await.unwrap().unwrap(), jpeg);
    assert_eq!(router.handle(signed(&body, Some(LOCAL_SIGNING_KEY), now)).await.status(), 200);
    assert_eq!(h.deps.store.balance(&user).await.unwrap(), 2, "charged once, not refunded");
}
