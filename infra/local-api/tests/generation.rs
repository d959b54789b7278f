//! The generation journey over HTTP, as the app makes it: upload a photo to the presigned URL, start a
//! generation, poll it to the end, download the picture — on the in-memory store and on DynamoDB Local, with
//! the local renderer and with a provider that refuses.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use common::{read, Api};
use facemake::adapters::memory::MemoryStore;
use facemake::ports::{ImageProvider, ProviderError, RefusalKind, RenderRequest, RenderedImage};
use facemake::services::generation::Providers;
use facemake::wiring::Store;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

fn photo() -> Vec<u8> {
    let img = image::RgbImage::from_fn(300, 400, |x, y| image::Rgb([(x % 256) as u8, (y % 256) as u8, 90]));
    let mut bytes = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Jpeg).unwrap();
    bytes
}

/// Creates an upload and PUTs `bytes` to it the way the app does; returns the upload id.
async fn upload(api: &Api, token: &str, bytes: &[u8]) -> String {
    let (status, slot) =
        api.post("/v1/uploads", json!({"contentType": "image/jpeg", "contentLength": bytes.len()}), Some(token)).await;
    assert_eq!(status, 201, "{slot}");
    let url = slot["uploadUrl"].as_str().unwrap();
    let mut put = api.http.put(url).body(bytes.to_vec());
    for (name, value) in slot["headers"].as_object().unwrap() {
        put = put.header(name.as_str(), value.as_str().unwrap());
    }
    let response = put.send().await.unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    slot["uploadId"].as_str().unwrap().to_owned()
}

async fn start(api: &Api, token: &str, key: &str, body: Value) -> (StatusCode, Value) {
    api.call_with(Method::POST, "/v1/generations", Some(body), Some(token), &[("Idempotency-Key", key)]).await
}

/// Polls the generation until it leaves queued/processing.
async fn finished(api: &Api, token: &str, id: &str) -> Value {
    for _ in 0..200 {
        let (status, g) = api.get(&format!("/v1/generations/{id}"), Some(token)).await;
        assert_eq!(status, 200, "{g}");
        if !matches!(g["status"].as_str(), Some("queued" | "processing")) {
            return g;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("generation {id} did not finish");
}

async fn balance(api: &Api, token: &str) -> u64 {
    api.get("/v1/credits", Some(token)).await.1["balance"].as_u64().unwrap()
}

async fn journey(api: &Api) {
    let token = api.sign_in("+14155550101").await;
    assert_eq!(balance(api, &token).await, 3);
    let upload_id = upload(api, &token, &photo()).await;

    let body = json!({"templateId": "neon-noir", "uploadId": upload_id});
    let (status, started) = start(api, &token, "journey-1", body.clone()).await;
    assert_eq!(status, 202, "{started}");
    assert_eq!(started["balance"], 2);
    let id = started["generation"]["id"].as_str().unwrap().to_owned();
    // The app retrying after a dropped connection: the same answer and no second charge.
    assert_eq!(start(api, &token, "journey-1", body).await, (StatusCode::ACCEPTED, started.clone()));

    let done = finished(api, &token, &id).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["refunded"], false);
    let response = api.http.get(done["outputUrl"].as_str().unwrap()).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "image/png");
    let picture = image::load_from_memory(&response.bytes().await.unwrap()).expect("a real image");
    assert_eq!((picture.width(), picture.height()), (300, 400), "the local renderer keeps the photo's size");

    assert_eq!(balance(api, &token).await, 2, "the credit is spent");
    let history = api.all_pages("/v1/credits/history?x=1", 10, Some(&token)).await;
    assert_eq!(history[0]["kind"], "spend");
    assert_eq!(history[0]["reference"], id.as_str());
    let listed = api.all_pages("/v1/generations?x=1", 1, Some(&token)).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], id.as_str());

    // Deleting it removes the picture too.
    let (status, _) = api.call(Method::DELETE, &format!("/v1/generations/{id}"), None, Some(&token)).await;
    assert_eq!(status, 204);
    assert_eq!(api.get(&format!("/v1/generations/{id}"), Some(&token)).await.0, 404);
    assert_eq!(api.http.get(done["outputUrl"].as_str().unwrap()).send().await.unwrap().status(), 403);
}

async fn uploads_are_held_to_their_signature(api: &Api) {
    let token = api.sign_in("+14155550102").await;
    let bytes = photo();
    let (_, slot) =
        api.post("/v1/uploads", json!({"contentType": "image/jpeg", "contentLength": bytes.len()}), Some(&token)).await;
    let url = slot["uploadUrl"].as_str().unwrap();
    let put = |url: String, body: Vec<u8>, content_type: &'static str| {
        let http = api.http.clone();
        async move { read(http.put(url).header("content-type", content_type).body(body).send().await.unwrap()).await.0 }
    };
    assert_eq!(put(url.to_owned(), bytes[..10].to_vec(), "image/jpeg").await, 400, "another length");
    assert_eq!(put(url.to_owned(), bytes.clone(), "image/png").await, 400, "another type");
    let forged = url.replace("uploads/uploads/", "uploads/uploads/x");
    assert_eq!(put(forged, bytes.clone(), "image/jpeg").await, 403, "another key");
    // Nothing landed, so a generation of it is refused and charges nothing.
    let body = json!({"templateId": "neon-noir", "uploadId": slot["uploadId"]});
    let (status, error) = start(api, &token, "k", body).await;
    assert_eq!(status, 400, "{error}");
    assert_eq!(error["error"]["details"][0]["field"], "uploadId");
    assert_eq!(balance(api, &token).await, 3);
}

/// A provider whose safety system refuses every photo.
struct Refusing;

#[async_trait]
impl ImageProvider for Refusing {
    fn needs_image_url(&self) -> bool {
        false
    }
    async fn render(&self, _: RenderRequest<'_>) -> Result<RenderedImage, ProviderError> {
        Err(ProviderError::Permanent {
            kind: RefusalKind::ContentPolicy,
            user_reason: "The image provider declined this photo for safety reasons.".into(),
            detail: "moderation_blocked".into(),
        })
    }
}

async fn a_failing_provider_leaves_the_balance_whole(store: Arc<dyn Store>) {
    let api = Api::start_with(store, Providers::all(Arc::new(Refusing))).await;
    let token = api.sign_in("+14155550103").await;
    let upload_id = upload(&api, &token, &photo()).await;
    let (status, started) = start(&api, &token, "k", json!({"templateId": "anime-hero", "uploadId": upload_id})).await;
    assert_eq!(status, 202, "{started}");
    assert_eq!(started["balance"], 2);
    let done = finished(&api, &token, started["generation"]["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "failed");
    assert_eq!(done["refunded"], true);
    assert_eq!(done["outputUrl"], Value::Null);
    assert!(done["failureReason"].as_str().unwrap().contains("safety"), "{done}");
    assert_eq!(balance(&api, &token).await, 3);
    let kinds: Vec<Value> =
        api.all_pages("/v1/credits/history?x=1", 10, Some(&token)).await.iter().map(|e| e["kind"].clone()).collect();
    assert_eq!(kinds, [json!("refund"), json!("spend"), json!("grant")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generation_journey_on_the_in_memory_store() {
    let api = Api::start(Arc::new(MemoryStore::new())).await;
    journey(&api).await;
    uploads_are_held_to_their_signature(&api).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generation_journey_on_dynamodb_local() {
    let api = Api::start(Arc::new(testkit::dynamodb_store().await)).await;
    journey(&api).await;
    uploads_are_held_to_their_signature(&api).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_provider_on_the_in_memory_store() {
    a_failing_provider_leaves_the_balance_whole(Arc::new(MemoryStore::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_provider_on_dynamodb_local() {
    a_failing_provider_leaves_the_balance_whole(Arc::new(testkit::dynamodb_store().await)).await;
}

async fn deleting_the_account_takes_everything_with_it(api: &Api) {
    let phone = "+14155550104";
    let token = api.sign_in(phone).await;
    let upload_id = upload(api, &token, &photo()).await;
    let (_, started) = start(api, &token, "k", json!({"templateId": "neon-noir", "uploadId": upload_id})).await;
    let done = finished(api, &token, started["generation"]["id"].as_str().unwrap()).await;
    let output = done["outputUrl"].as_str().unwrap().to_owned();
    assert_eq!(api.http.get(&output).send().await.unwrap().status(), 200);

    let (status, _) = api.call(Method::DELETE, "/v1/me", None, Some(&token)).await;
    assert_eq!(status, 204);
    assert_eq!(api.get("/v1/me", Some(&token)).await.0, 401);
    assert_eq!(api.http.get(&output).send().await.unwrap().status(), 403, "the picture is gone");
    let (status, _) =
        api.post("/v1/uploads", json!({"contentType": "image/jpeg", "contentLength": 10}), Some(&token)).await;
    assert_eq!(status, 401, "the old token changes nothing");
    // The number is remembered by its mark only: the resend cooldown runs on (signing up again, with no second
    // starter grant and none of the old account's data: tests/abuse.rs).
    let (status, _) = api.post("/v1/auth/send-code", json!({"phone": phone}), None).await;
    assert_eq!(status, 429, "the cooldown runs on across the deletion");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_deletion_on_the_in_memory_store() {
    deleting_the_account_takes_everything_with_it(&Api::start(Arc::new(MemoryStore::new())).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_deletion_on_dynamodb_local() {
    deleting_the_account_takes_everything_with_it(&Api::start(Arc::new(testkit::dynamodb_store().await)).await).await;
}
