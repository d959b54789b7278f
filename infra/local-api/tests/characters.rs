//! Characters over HTTP, as the app uses them: upload two photos, save them as a character, render it in
//! two styles without uploading again, restyle a result, read the profile's stats, delete the character —
//! and account deletion taking characters with it — on the in-memory store and on DynamoDB Local.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::Api;
use facemake::adapters::memory::MemoryStore;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// A phone photo, stored sideways (EXIF orientation 6).
fn photo() -> Vec<u8> {
    testkit::camera_photo(400, 300)
}

async fn upload(api: &Api, token: &str) -> String {
    let bytes = photo();
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

async fn start(api: &Api, token: &str, key: &str, body: Value) -> (StatusCode, Value) {
    api.call_with(Method::POST, "/v1/generations", Some(body), Some(token), &[("Idempotency-Key", key)]).await
}

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

async fn stats(api: &Api, token: &str) -> Value {
    let (status, me) = api.get("/v1/me", Some(token)).await;
    assert_eq!(status, 200, "{me}");
    me["stats"].clone()
}

async fn journey(api: &Api) {
    let token = api.sign_in("+14155550121").await;
    assert_eq!(stats(api, &token).await, json!({"generations": 0, "succeeded": 0, "favorites": 0, "characters": 0}));
    let photos = [upload(api, &token).await, upload(api, &token).await];
    let (status, character) =
        api.post("/v1/characters", json!({"name": "  Ada ", "uploadIds": photos}), Some(&token)).await;
    assert_eq!(status, 201, "{character}");
    assert_eq!((character["name"].as_str(), character["photoCount"].as_u64()), (Some("Ada"), Some(2)));
    // The thumbnail is the first photo as prepared: upright (300×400 from a sideways 400×300), a JPEG.
    let thumbnail = api.http.get(character["thumbnailUrl"].as_str().unwrap()).send().await.unwrap();
    assert_eq!(thumbnail.status(), 200);
    let bytes = thumbnail.bytes().await.unwrap();
    let image = image::load_from_memory_with_format(&bytes, image::ImageFormat::Jpeg).unwrap();
    assert_eq!((image.width(), image.height()), (300, 400));
    let id = character["id"].as_str().unwrap().to_owned();

    // Two styles from the character, without uploading again; then a restyle of the first result.
    let mut results = Vec::new();
    for (key, template) in [("c-1", "neon-noir"), ("c-2", "pop-art")] {
        let (status, started) = start(api, &token, key, json!({"templateId": template, "characterId": id})).await;
        assert_eq!(status, 202, "{started}");
        assert_eq!(started["generation"]["source"], json!({"kind": "character", "id": id}));
        let done = finished(api, &token, started["generation"]["id"].as_str().unwrap()).await;
        assert_eq!(done["status"], "succeeded", "{done}");
        results.push(done);
    }
    let parent = results[0]["id"].as_str().unwrap();
    let (status, restyled) =
        start(api, &token, "c-3", json!({"templateId": "pop-art", "parentGenerationId": parent})).await;
    assert_eq!(status, 202, "{restyled}");
    assert_eq!(restyled["generation"]["source"], json!({"kind": "generation", "id": parent}));
    let restyled = finished(api, &token, restyled["generation"]["id"].as_str().unwrap()).await;
    assert_eq!(restyled["status"], "succeeded", "{restyled}");
    // Exactly one source, and only the caller's own.
    let both = json!({"templateId": "neon-noir", "characterId": id, "parentGenerationId": parent});
    let (status, refused) = start(api, &token, "c-4", both).await;
    assert_eq!((status.as_u16(), &refused["error"]["details"][0]["field"]), (400, &json!("parentGenerationId")));
    let (status, refused) = start(api, &token, "c-5", json!({"templateId": "neon-noir"})).await;
    assert_eq!((status.as_u16(), &refused["error"]["code"]), (400, &json!("VALIDATION_ERROR")));
    let stranger = api.sign_in("+14155550122").await;
    for source in [json!({"characterId": id}), json!({"parentGenerationId": parent})] {
        let mut body = source.clone();
        body["templateId"] = json!("neon-noir");
        let (status, refused) = start(api, &stranger, "s-1", body).await;
        assert_eq!((status.as_u16(), &refused["error"]["code"]), (404, &json!("NOT_FOUND")), "{source}");
    }
    assert_eq!(api.get("/v1/credits", Some(&stranger)).await.1["balance"], 3, "nothing charged");

    api.call(Method::PUT, "/v1/templates/neon-noir/favorite", None, Some(&token)).await;
    api.call(Method::PUT, "/v1/templates/neon-noir/favorite", None, Some(&token)).await;
    assert_eq!(stats(api, &token).await, json!({"generations": 3, "succeeded": 3, "favorites": 1, "characters": 1}));

    // Deleting the character: its photos go, the results made from it stay.
    let (status, _) = api.call(Method::DELETE, &format!("/v1/characters/{id}"), None, Some(&token)).await;
    assert_eq!(status, 204);
    assert_eq!(api.get(&format!("/v1/characters/{id}"), Some(&token)).await.0, 404);
    for done in &results {
        let g = finished(api, &token, done["id"].as_str().unwrap()).await;
        assert_eq!(api.http.get(g["outputUrl"].as_str().unwrap()).send().await.unwrap().status(), 200);
    }
    let (status, _) = start(api, &token, "c-6", json!({"templateId": "neon-noir", "characterId": id})).await;
    assert_eq!(status, 404, "a deleted character is not a source");
    // Deleting a generation uncounts it.
    let (status, _) = api.call(Method::DELETE, &format!("/v1/generations/{parent}"), None, Some(&token)).await;
    assert_eq!(status, 204);
    assert_eq!(stats(api, &token).await, json!({"generations": 2, "succeeded": 2, "favorites": 1, "characters": 0}));
}

/// Account deletion takes the characters and their photos.
async fn deletion_takes_characters(api: &Api) {
    let token = api.sign_in("+14155550123").await;
    let photo = upload(api, &token).await;
    let (status, character) =
        api.post("/v1/characters", json!({"name": "Ada", "uploadIds": [photo]}), Some(&token)).await;
    assert_eq!(status, 201);
    let thumbnail = character["thumbnailUrl"].as_str().unwrap().to_owned();
    assert_eq!(api.http.get(&thumbnail).send().await.unwrap().status(), 200);
    assert_eq!(api.call(Method::DELETE, "/v1/me", None, Some(&token)).await.0, 204);
    assert_eq!(api.http.get(&thumbnail).send().await.unwrap().status(), 403, "the photo is gone");
    assert_eq!(api.get("/v1/characters", Some(&token)).await.0, 401, "the old token reads nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn characters_on_the_in_memory_store() {
    let api = Api::start(Arc::new(MemoryStore::new())).await;
    journey(&api).await;
    deletion_takes_characters(&api).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn characters_on_dynamodb_local() {
    let api = Api::start(Arc::new(testkit::dynamodb_store().await)).await;
    journey(&api).await;
    deletion_takes_characters(&api).await;
}
