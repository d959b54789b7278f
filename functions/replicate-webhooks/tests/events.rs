//! Replicate's webhook driven by its API Gateway event fixture: unsigned, badly signed, stale and malformed
//! calls change nothing; a signed callback finishes the job it names, once.

use std::sync::Arc;

use async_trait::async_trait;
use facemake::adapters::providers::hosts::DownloadHosts;
use facemake::adapters::webhooks::sign;
use facemake::domain::{object_keys, GenerationSource, GenerationStatus, TemplateId, UploadId};
use facemake::ports::{Clock, ImageProvider, JobRef, ObjectStore, ProviderError, RenderRequest, RenderedImage};
use facemake::services::generation::{JobResult, Providers};
use lambda_http::Request;
use replicate_webhooks::LOCAL_SIGNING_KEY;
use testkit::{body_json, Harness};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

struct Submitting;

#[async_trait]
impl ImageProvider for Submitting {
    fn needs_image_url(&self) -> bool {
        true
    }
    async fn render(&self, _: RenderRequest<'_>) -> Result<RenderedImage, ProviderError> {
        unreachable!("handed over, never waited for")
    }
    fn calls_back(&self) -> bool {
        true
    }
    async fn submit(&self, _: RenderRequest<'_>, _: &str) -> Result<String, ProviderError> {
        Ok("p1ab2cd3ef4gh5ij6kl7".into())
    }
}

/// The fixture for `job`, with `body` signed by `key` at `timestamp` (no signature when `key` is `None`).
fn callback(job: &JobRef, body: &str, key: Option<&str>, timestamp: i64) -> Request {
    let path = format!("{}/../../events/replicate-webhook.json", env!("CARGO_MANIFEST_DIR"));
    let mut event: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let job = format!("{}.{}", job.user_id, job.generation_id);
    event["rawQueryString"] = format!("job={job}").into();
    event["queryStringParameters"]["job"] = job.into();
    event["body"] = body.into();
    event["headers"]["content-length"] = body.len().to_string().into();
    event["headers"]["webhook-timestamp"] = timestamp.to_string().into();
    event["headers"]["webhook-id"] = "msg_1".into();
    match key {
        Some(key) => {
            event["headers"]["webhook-signature"] = sign(key, "msg_1", timestamp, body.as_bytes()).unwrap().into()
        }
        None => {
            let headers = event["headers"].as_object_mut().unwrap();
            headers.remove("webhook-signature");
        }
    }
    lambda_http::request::from_str(&event.to_string()).unwrap()
}

#[tokio::test]
async fn only_a_signed_fresh_callback_finishes_the_job_and_only_once() {
    let server = MockServer::start().await;
    let png = {
        let mut bytes = Vec::new();
        image::RgbImage::from_pixel(8, 8, image::Rgb([1, 2, 3]))
            .write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png)
            .unwrap();
        bytes
    };
    Mock::given(method("GET"))
        .and(path("/out.png"))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(png.clone()))
        .expect(1)
        .mount(&server)
        .await;
    let mut h = Harness::in_memory();
    h.deps.generation.replicate_webhook_url = Some("https://api.example.test/v1/webhooks/replicate".into());
    h.deps.generation.replicate_output_hosts = DownloadHosts::parse(&server.uri()).unwrap();
    let catalogue = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../infra/catalogue/catalogue.yaml");
    facemake::services::catalogue::seed_catalogue(h.deps.store.as_ref(), &catalogue).await.unwrap();
    let session = h.signed_in("+14155550123").await;
    let user = session.user.id.clone();
    let upload = UploadId::new();
    h.objects.put(&object_keys::upload(&user, &upload), testkit::camera_photo(64, 48), "image/jpeg").await.unwrap();
    let generations = h.deps.generations(Arc::new(h.deps.catalogue_service()));
    let template = TemplateId::parse("golden-hour").unwrap();
    let started = generations
        .start(&user, "k", &template, &GenerationSource::Upload(upload), std::future::ready(Ok(false)))
        .await
        .unwrap();
    let job = JobRef { user_id: user.clone(), generation_id: started.generation.id.clone() };
    let mut worker = h.deps.worker();
    worker.providers = Providers::all(Arc::new(Submitting));
    assert!(matches!(worker.process(&job).await.unwrap(), JobResult::Submitted { .. }));

    let router = replicate_webhooks::router(Arc::new(replicate_webhooks::State::new(&h.deps)));
    // The wall clock, which the signature check reads (not the harness's, which stood still since it was made).
    let now = facemake::ports::SystemClock.now();
    let body = format!(
        r#"{{"id":"p1ab2cd3ef4gh5ij6kl7","status":"succeeded","output":["{}/out.png"],"error":null,"urls":{{}}}}"#,
        server.uri()
    );
    let status = |job: &JobRef| {
        let (h, job) = (h.clone(), job.clone());
        async move { h.deps.store.generation(&job.user_id, &job.generation_id).await.unwrap().unwrap().status }
    };
    // The fixture as it is (a placeholder signature), no signature, someone else's key, a stale or future
    // timestamp (well beyond the 5 minutes either way, so a slow run cannot bring it back inside): refused.
    let fixture = lambda_http::request::from_str(
        &std::fs::read_to_string(format!("{}/../../events/replicate-webhook.json", env!("CARGO_MANIFEST_DIR")))
            .unwrap(),
    )
    .unwrap();
    let refused = [
        (fixture, 401),
        (callback(&job, &body, None, now), 400),
        (callback(&job, &body, Some("whsec_c29tZW9uZS1lbHNlcy1rZXktMDEyMzQ1Njc4OQ=="), now), 401),
        (callback(&job, &body, Some(LOCAL_SIGNING_KEY), now - 400), 401),
        (callback(&job, &body, Some(LOCAL_SIGNING_KEY), now + 400), 401),
    ];
    for (i, (request, expected)) in refused.into_iter().enumerate() {
        let response = router.handle(request).await;
        assert_eq!(response.status(), expected, "case {i}: {}", body_json(&response));
        assert!(body_json(&response)["error"]["code"].is_string(), "case {i}: the envelope");
        assert_eq!(status(&job).await, GenerationStatus::Processing, "case {i}: nothing changed");
    }
    assert_eq!(h.metrics.total(facemake::metrics::Metric::CallbacksRejected), 5.0, "each refusal counted");
    // Signed but not a prediction, or naming no job of ours: 400.
    let response = router.handle(callback(&job, "[1,2]", Some(LOCAL_SIGNING_KEY), now)).await;
    assert_eq!(response.status(), 400, "{}", body_json(&response));
    let mut bad_job = callback(&job, &body, Some(LOCAL_SIGNING_KEY), now);
    *bad_job.uri_mut() = "/v1/webhooks/replicate?job=nope".parse().unwrap();
    let bad_job = lambda_http::RequestExt::with_query_string_parameters(
        bad_job,
        std::collections::HashMap::from([("job".to_owned(), "nope".to_owned())]),
    );
    assert_eq!(router.handle(bad_job).await.status(), 400);
    // A job that awaits nothing of the kind: 200 (so Replicate stops sending it), nothing changed.
    let stranger = JobRef { user_id: user.clone(), generation_id: facemake::domain::new_id() };
    assert_eq!(router.handle(callback(&stranger, &body, Some(LOCAL_SIGNING_KEY), now)).await.status(), 200);

    // The real one: 200, the job succeeded with the output stored; again (a retry): 200, nothing more.
    let response = router.handle(callback(&job, &body, Some(LOCAL_SIGNING_KEY), now)).await;
    assert_eq!(response.status(), 200, "{}", body_json(&response));
    assert_eq!(body_json(&response), serde_json::json!({}));
    let g = h.deps.store.generation(&user, &job.generation_id).await.unwrap().unwrap();
    assert_eq!(g.status, GenerationStatus::Succeeded);
    assert_eq!(h.objects.get(g.output_key.as_ref().unwrap(), u64::MAX).await.unwrap().unwrap(), png);
    assert_eq!(router.handle(callback(&job, &body, Some(LOCAL_SIGNING_KEY), now)).await.status(), 200);
    assert_eq!(h.deps.store.balance(&user).await.unwrap(), 2, "charged once, not refunded");
}
