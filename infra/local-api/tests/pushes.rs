//! Push notifications over HTTP, as the app uses them: register the phone's APNs token, render a portrait,
//! and find the push at `GET /_local/pushes` (the local stand-in for APNs); a failed render is pushed too; a
//! token moves to the user who registers it last; unregistering stops pushes; account deletion takes the
//! devices — on the in-memory store and on DynamoDB Local.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::Api;
use facemake::adapters::memory::MemoryStore;
use reqwest::Method;
use serde_json::{json, Value};

const PHONE_A: &str = "9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08";

async fn upload(api: &Api, token: &str, bytes: Vec<u8>) -> String {
    let (status, slot) =
        api.post("/v1/uploads", json!({"contentType": "image/jpeg", "contentLength": bytes.len()}), Some(token)).await;
    assert_eq!(status, 201, "{slot}");
    let mut put = api.http.put(slot["uploadUrl"].as_str().unwrap()).body(bytes);
    for (name, value) in slot["headers"].as_object().unwrap() {
        put = put.header(name.as_str(), value.as_str().unwrap());
    }
    assert_eq!(put.send().await.unwrap().status(), 200);
    slot["uploadId"].as_str().unwrap().to_owned()
}

/// Starts a generation and waits for its push; the generation's id and the push.
async fn generate_and_await_push(api: &Api, token: &str, key: &str, bytes: Vec<u8>, device: &str) -> (String, Value) {
    let before = pushes(api, device).await.len();
    let upload = upload(api, token, bytes).await;
    let body = json!({"templateId": "neon-noir", "uploadId": upload});
    let (status, started) =
        api.call_with(Method::POST, "/v1/generations", Some(body), Some(token), &[("Idempotency-Key", key)]).await;
    assert_eq!(status, 202, "{started}");
    let id = started["generation"]["id"].as_str().unwrap().to_owned();
    for _ in 0..200 {
        let list = pushes(api, device).await;
        if list.len() > before {
            return (id, list[0].clone());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no push for generation {id}");
}

async fn pushes(api: &Api, device: &str) -> Vec<Value> {
    let (status, body) = api.get(&format!("/_local/pushes?deviceToken={device}"), None).await;
    assert_eq!(status, 200, "{body}");
    body["items"].as_array().unwrap().clone()
}

async fn register(api: &Api, token: &str, device: &str, environment: &str) -> u16 {
    let path = format!("/v1/me/devices/{device}");
    api.call(Method::PUT, &path, Some(json!({"environment": environment})), Some(token)).await.0.as_u16()
}

async fn journey(api: &Api) {
    let ada = api.sign_in("+14155550131").await;
    // Registered at every launch: idempotent (an uppercase token is the same token).
    assert_eq!(register(api, &ada, PHONE_A, "sandbox").await, 204);
    assert_eq!(register(api, &ada, &PHONE_A.to_lowercase(), "sandbox").await, 204);
    let device = PHONE_A.to_lowercase();

    let (id, push) = generate_and_await_push(api, &ada, "p-1", testkit::camera_photo(64, 48), &device).await;
    assert_eq!(push["environment"], "sandbox");
    assert_eq!(push["payload"]["generationId"], id.as_str());
    assert_eq!(push["payload"]["status"], "succeeded");
    assert_eq!(push["payload"]["aps"]["alert"]["title"], "Your portrait is ready");
    let (_, g) = api.get(&format!("/v1/generations/{id}"), Some(&ada)).await;
    assert_eq!(g["status"], "succeeded", "the push came after the result was there: {g}");
    assert_eq!(pushes(api, &device).await.len(), 1, "one push per registration (registered twice)");

    // A render that fails (not a photo) is pushed with the reason the app shows.
    let (id, push) = generate_and_await_push(api, &ada, "p-2", b"not a photo".to_vec(), &device).await;
    assert_eq!(push["payload"]["status"], "failed");
    let (_, g) = api.get(&format!("/v1/generations/{id}"), Some(&ada)).await;
    assert_eq!(push["payload"]["aps"]["alert"]["body"], g["failureReason"], "{g}");

    // Bob signs in on the same phone: the token is his; Ada's next render pushes nothing to it.
    let bob = api.sign_in("+14155550132").await;
    assert_eq!(register(api, &bob, &device, "production").await, 204);
    let before = pushes(api, &device).await.len();
    let upload = upload(api, &ada, testkit::camera_photo(64, 48)).await;
    let body = json!({"templateId": "neon-noir", "uploadId": upload});
    let (status, started) =
        api.call_with(Method::POST, "/v1/generations", Some(body), Some(&ada), &[("Idempotency-Key", "p-3")]).await;
    assert_eq!(status, 202);
    let id = started["generation"]["id"].as_str().unwrap().to_owned();
    for _ in 0..200 {
        let (_, g) = api.get(&format!("/v1/generations/{id}"), Some(&ada)).await;
        if g["status"] == "succeeded" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The push (if any) is made right after the success is written: give it a moment before counting.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(pushes(api, &device).await.len(), before, "Ada no longer holds the token");
    // Ada unregistering it changes nothing for Bob; Bob's render is pushed, in his environment.
    let path = format!("/v1/me/devices/{device}");
    assert_eq!(api.call(Method::DELETE, &path, None, Some(&ada)).await.0, 204);
    let (_, push) = generate_and_await_push(api, &bob, "p-4", testkit::camera_photo(64, 48), &device).await;
    assert_eq!(push["environment"], "production");

    // Bob unregisters: no more pushes.
    assert_eq!(api.call(Method::DELETE, &path, None, Some(&bob)).await.0, 204);
    assert_eq!(register(api, &bob, "zz", "sandbox").await, 400);
    assert_eq!(register(api, &bob, &device, "staging").await, 400);

    // Account deletion takes the devices: Ada registers again, deletes her account, and Bob (not holding the
    // token now) registering it afresh is the only registration there is.
    assert_eq!(register(api, &ada, &device, "sandbox").await, 204);
    assert_eq!(api.call(Method::DELETE, "/v1/me", None, Some(&ada)).await.0, 204);
    assert_eq!(register(api, &ada, &device, "sandbox").await, 401, "a deleted account registers nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_on_the_in_memory_store() {
    journey(&Api::start(Arc::new(MemoryStore::new())).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_on_dynamodb_local() {
    journey(&Api::start(Arc::new(testkit::dynamodb_store().await)).await).await;
}
