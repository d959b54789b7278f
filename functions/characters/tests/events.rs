//! The character routes driven by their API Gateway event fixtures, and a generation from a character.

use std::sync::Arc;

use facemake::domain::{object_keys, CharacterId, UploadId, UserId};
use facemake::ports::{JobRef, ObjectStore};
use lambda_http::{Body, Request};
use testkit::{body_json, event, with_bearer, Harness};

fn router(h: &Harness) -> facemake::http::Router {
    characters::router(Arc::new(characters::State::new(&h.deps)))
}

/// The character id the fixtures name.
const FIXTURE_ID: &str = "01KARJ3Q5M8V7ZB2C4D6E8F0GH";

/// The fixture `name` (a `/v1/characters/{id}` route) for character `id`.
fn for_id(name: &str, id: &str) -> Request {
    let path = format!("{}/../../events/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(path).unwrap().replace(FIXTURE_ID, id);
    lambda_http::request::from_str(&text).unwrap()
}

fn with_body(mut req: Request, body: serde_json::Value) -> Request {
    *req.body_mut() = Body::Text(body.to_string());
    req
}

fn fixture_body(name: &str) -> serde_json::Value {
    serde_json::from_slice(event(name).body().as_ref()).unwrap()
}

async fn upload(h: &Harness, user: &UserId, bytes: Vec<u8>) -> UploadId {
    let id = UploadId::new();
    h.objects.put(&object_keys::upload(user, &id), bytes, "image/jpeg").await.unwrap();
    id
}

#[tokio::test]
async fn create_list_get_rename_and_delete_through_the_fixtures() {
    let h = Harness::in_memory();
    let session = h.signed_in("+14155550123").await;
    let token = &session.access_token;
    let user = &session.user.id;

    // The fixture names an upload that was never made: 400 on that item, nothing stored.
    let response = router(&h).handle(with_bearer(event("create-character.json"), token)).await;
    assert_eq!(response.status(), 400, "{}", body_json(&response));
    assert_eq!(body_json(&response)["error"]["details"][0]["field"], "uploadIds[0]");
    let fixture_upload = UploadId::parse(fixture_body("create-character.json")["uploadIds"][0].as_str().unwrap());
    h.objects
        .put(&object_keys::upload(user, &fixture_upload.unwrap()), testkit::camera_photo(800, 600), "image/jpeg")
        .await
        .unwrap();
    let response = router(&h).handle(with_bearer(event("create-character.json"), token)).await;
    assert_eq!(response.status(), 201, "{}", body_json(&response));
    let created = body_json(&response);
    assert_eq!(created["name"], "Ada");
    assert_eq!(created["photoCount"], 1);
    let keys: Vec<&str> = created.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ["createdAt", "id", "name", "photoCount", "thumbnailUrl"]);
    let id = created["id"].as_str().unwrap().to_owned();
    let thumbnail = created["thumbnailUrl"].as_str().unwrap();
    assert!(thumbnail.contains(&format!("characters/{user}/{id}/0.jpg")), "{thumbnail}");

    let list = body_json(&router(&h).handle(with_bearer(event("list-characters.json"), token)).await);
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert_eq!(list["items"][0]["id"], id.as_str());
    assert_eq!(list["nextCursor"], serde_json::Value::Null);

    let got = router(&h).handle(with_bearer(for_id("get-character.json", &id), token)).await;
    assert_eq!(got.status(), 200);
    assert_eq!(body_json(&got)["name"], "Ada");

    let renamed = router(&h).handle(with_bearer(for_id("rename-character.json", &id), token)).await;
    assert_eq!(renamed.status(), 200, "{}", body_json(&renamed));
    assert_eq!(body_json(&renamed)["name"], "Ada L.");
    assert_eq!(body_json(&renamed)["createdAt"], created["createdAt"]);

    // Another user sees none of it, and can change none of it.
    let stranger = h.signed_in("+14155550199").await.access_token;
    for fixture in ["get-character.json", "rename-character.json", "delete-character.json"] {
        let response = router(&h).handle(with_bearer(for_id(fixture, &id), &stranger)).await;
        assert_eq!(response.status(), 404, "{fixture}");
        assert_eq!(body_json(&response)["error"]["code"], "NOT_FOUND");
    }
    let theirs = body_json(&router(&h).handle(with_bearer(event("list-characters.json"), &stranger)).await);
    assert!(theirs["items"].as_array().unwrap().is_empty());

    let deleted = router(&h).handle(with_bearer(for_id("delete-character.json", &id), token)).await;
    assert_eq!(deleted.status(), 204);
    assert!(h.objects.keys().iter().all(|k| !k.starts_with("characters/")), "photos gone: {:?}", h.objects.keys());
    assert_eq!(router(&h).handle(with_bearer(for_id("get-character.json", &id), token)).await.status(), 404);
    assert_eq!(router(&h).handle(with_bearer(for_id("delete-character.json", &id), token)).await.status(), 404);
}

#[tokio::test]
async fn bad_input_is_a_clear_4xx_and_stores_nothing() {
    let h = Harness::in_memory();
    let session = h.signed_in("+14155550123").await;
    let token = &session.access_token;
    let user = &session.user.id;
    let photo = upload(&h, user, testkit::camera_photo(64, 48)).await.to_string();
    let text = upload(&h, user, b"not a photo at all".to_vec()).await.to_string();
    let other = h.signed_in("+14155550199").await;
    let foreign = upload(&h, &other.user.id, testkit::camera_photo(64, 48)).await.to_string();
    let seven: Vec<String> = (0..7).map(|_| UploadId::new().to_string()).collect();
    let cases = [
        (serde_json::json!({"name": "", "uploadIds": [photo]}), "name"),
        (serde_json::json!({"name": "   ", "uploadIds": [photo]}), "name"),
        (serde_json::json!({"name": "x".repeat(41), "uploadIds": [photo]}), "name"),
        (serde_json::json!({"name": "a\u{0}b", "uploadIds": [photo]}), "name"),
        (serde_json::json!({"name": "Ada", "uploadIds": []}), "uploadIds"),
        (serde_json::json!({"name": "Ada", "uploadIds": seven}), "uploadIds"),
        (serde_json::json!({"name": "Ada", "uploadIds": [photo, photo]}), "uploadIds[1]"),
        (serde_json::json!({"name": "Ada", "uploadIds": [photo, "../../x"]}), "uploadIds[1]"),
        (serde_json::json!({"name": "Ada", "uploadIds": [photo, text]}), "uploadIds[1]"),
        (serde_json::json!({"name": "Ada", "uploadIds": [foreign]}), "uploadIds[0]"),
        (serde_json::json!({"name": "Ada", "uploadIds": [UploadId::new().to_string()]}), "uploadIds[0]"),
    ];
    for (body, field) in cases {
        let response =
            router(&h).handle(with_body(with_bearer(event("create-character.json"), token), body.clone())).await;
        assert_eq!(response.status(), 400, "{body}: {}", body_json(&response));
        let error = body_json(&response);
        assert_eq!(error["error"]["code"], "VALIDATION_ERROR", "{body}");
        assert_eq!(error["error"]["details"][0]["field"], field, "{body}: {error}");
    }
    // Not JSON, unknown fields, wrong types: the envelope, never a 5xx.
    for raw in ["{", r#"{"name":"Ada","uploadIds":["x"],"admin":true}"#, r#"{"name":5,"uploadIds":[]}"#] {
        let mut req = with_bearer(event("create-character.json"), token);
        *req.body_mut() = Body::Text(raw.to_owned());
        let response = router(&h).handle(req).await;
        assert_eq!(response.status(), 400, "{raw}");
        assert!(body_json(&response)["error"]["code"].is_string());
    }
    assert!(h.objects.keys().iter().all(|k| !k.starts_with("characters/")), "{:?}", h.objects.keys());
    let list = body_json(&router(&h).handle(with_bearer(event("list-characters.json"), token)).await);
    assert!(list["items"].as_array().unwrap().is_empty());
    // Ids that cannot exist are 404 without a read, and a cursor of another list is refused.
    let response = router(&h).handle(with_bearer(for_id("get-character.json", "not-a-ulid"), token)).await;
    assert_eq!(response.status(), 404);
    let path = format!("{}/../../events/list-characters.json", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(path)
        .unwrap()
        .replace("limit=10", "cursor=abc.def")
        .replace(r#""limit": "10""#, r#""cursor": "abc.def""#);
    let req = with_bearer(lambda_http::request::from_str(&text).unwrap(), token);
    let response = router(&h).handle(req).await;
    assert_eq!(response.status(), 400, "{}", body_json(&response));
}

#[tokio::test]
async fn the_eleventh_character_is_a_conflict() {
    let h = Harness::in_memory();
    let session = h.signed_in("+14155550123").await;
    let token = &session.access_token;
    let photo = upload(&h, &session.user.id, testkit::camera_photo(64, 48)).await.to_string();
    let body = serde_json::json!({"name": "Ada", "uploadIds": [photo]});
    for _ in 0..10 {
        let response =
            router(&h).handle(with_body(with_bearer(event("create-character.json"), token), body.clone())).await;
        assert_eq!(response.status(), 201);
    }
    let response = router(&h).handle(with_body(with_bearer(event("create-character.json"), token), body)).await;
    assert_eq!(response.status(), 409);
    assert_eq!(body_json(&response)["error"]["code"], "CONFLICT");
    let photos = h.objects.keys().into_iter().filter(|k| k.starts_with("characters/")).count();
    assert_eq!(photos, 10, "the refused one left no photo");
}

#[tokio::test]
async fn a_generation_from_the_fixture_character_is_404_until_it_exists_and_then_renders() {
    let h = Harness::in_memory();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../infra/catalogue/catalogue.yaml");
    facemake::services::catalogue::seed_catalogue(h.deps.store.as_ref(), &path).await.unwrap();
    let session = h.signed_in("+14155550123").await;
    let token = &session.access_token;
    let generate = generate::router(Arc::new(generate::State::new(&h.deps)));
    let start = || with_bearer(event("start-generation-from-character.json"), token);
    let response = generate.handle(start()).await;
    assert_eq!(response.status(), 404, "{}", body_json(&response));
    assert_eq!(body_json(&response)["error"]["code"], "NOT_FOUND");

    let photo = upload(&h, &session.user.id, testkit::camera_photo(64, 48)).await.to_string();
    let created = router(&h)
        .handle(with_body(
            with_bearer(event("create-character.json"), token),
            serde_json::json!({"name": "Ada", "uploadIds": [photo]}),
        ))
        .await;
    let id = body_json(&created)["id"].as_str().unwrap().to_owned();
    CharacterId::parse(&id).unwrap();
    let mut req = start();
    let body = fixture_body("start-generation-from-character.json")
        .as_object()
        .cloned()
        .map(|mut b| {
            b.insert("characterId".into(), id.clone().into());
            serde_json::Value::Object(b)
        })
        .unwrap();
    *req.body_mut() = Body::Text(body.to_string());
    let response = generate.handle(req).await;
    assert_eq!(response.status(), 202, "{}", body_json(&response));
    let g = body_json(&response)["generation"].clone();
    assert_eq!(g["source"], serde_json::json!({"kind": "character", "id": id}));
    let job = JobRef { user_id: session.user.id.clone(), generation_id: g["id"].as_str().unwrap().to_owned() };
    h.deps.worker().process(&job).await.unwrap();
    let done = h.deps.generations(Arc::new(h.deps.catalogue_service())).get(&session.user.id, &job.generation_id).await;
    assert_eq!(done.unwrap().unwrap().status, facemake::domain::GenerationStatus::Succeeded);
}

#[tokio::test]
async fn a_cursor_of_another_query_or_user_is_refused() {
    let h = Harness::in_memory();
    let (ada, eve) = (h.signed_in("+14155550123").await, h.signed_in("+14155550199").await);
    let photo = upload(&h, &ada.user.id, testkit::camera_photo(64, 48)).await.to_string();
    for _ in 0..2 {
        let body = serde_json::json!({"name": "Ada", "uploadIds": [photo]});
        let request = with_body(with_bearer(event("create-character.json"), &ada.access_token), body);
        assert_eq!(router(&h).handle(request).await.status(), 201);
    }
    let list = |query: &str, token: &str| {
        let path = format!("{}/../../events/list-characters.json", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(path).unwrap();
        let mut event: serde_json::Value = serde_json::from_str(&text).unwrap();
        event["rawQueryString"] = query.into();
        let params: serde_json::Map<String, serde_json::Value> =
            query.split('&').filter_map(|kv| kv.split_once('=')).map(|(k, v)| (k.to_owned(), v.into())).collect();
        event["queryStringParameters"] = params.into();
        with_bearer(lambda_http::request::from_str(&event.to_string()).unwrap(), token)
    };
    let first = body_json(&router(&h).handle(list("limit=1", &ada.access_token)).await);
    let cursor = first["nextCursor"].as_str().expect("a second page").to_owned();
    let second = router(&h).handle(list(&format!("limit=1&cursor={cursor}"), &ada.access_token)).await;
    assert_eq!(second.status(), 200);
    let second = body_json(&second);
    assert_eq!(second["items"].as_array().unwrap().len(), 1);
    assert_ne!(second["items"][0]["id"], first["items"][0]["id"]);
    assert_eq!(second["nextCursor"], serde_json::Value::Null);
    // Ada's cursor in Eve's hands, and a cursor of Ada's generations list: refused, not a page.
    let stolen = router(&h).handle(list(&format!("cursor={cursor}"), &eve.access_token)).await;
    assert_eq!(stolen.status(), 400, "{}", body_json(&stolen));
    let keys = facemake::ports::KeyProvider::keys(h.keys.as_ref()).await.unwrap();
    let generations =
        facemake::http::encode_cursor(&keys, &format!("generations|{}", ada.user.id), &"01KARH98PRTEWH0AVNH9DN65R6")
            .unwrap();
    let foreign = router(&h).handle(list(&format!("cursor={generations}"), &ada.access_token)).await;
    assert_eq!(foreign.status(), 400, "{}", body_json(&foreign));
    assert_eq!(body_json(&foreign)["error"]["code"], "VALIDATION_ERROR");
}
