//! The upload and generation routes driven by their API Gateway event fixtures.

use std::sync::Arc;

use facemake::domain::{object_keys, UploadId};
use facemake::ports::{JobRef, ObjectStore};
use lambda_http::{Body, Request};
use testkit::{body_json, event, with_bearer, Harness};

fn router(h: &Harness) -> facemake::http::Router {
    generate::router(Arc::new(generate::State::new(&h.deps)))
}

async fn seeded() -> Harness {
    let h = Harness::in_memory();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../infra/catalogue/catalogue.yaml");
    facemake::services::catalogue::seed_catalogue(h.deps.store.as_ref(), &path).await.unwrap();
    h
}

/// The fixture `name` (a `/v1/generations/{id}` route) for generation `id`.
fn for_id(name: &str, id: &str) -> Request {
    let path = format!("{}/../../events/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(path).unwrap().replace(FIXTURE_ID, id);
    lambda_http::request::from_str(&text).unwrap()
}

/// The generation id the fixtures name.
const FIXTURE_ID: &str = "01KARH98PRTEWH0AVNH9DN65R6";

fn with_body(mut req: Request, body: serde_json::Value) -> Request {
    *req.body_mut() = Body::Text(body.to_string());
    req
}

fn photo() -> Vec<u8> {
    let mut bytes = Vec::new();
    image::RgbImage::from_pixel(40, 30, image::Rgb([30, 90, 160]))
        .write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Jpeg)
        .unwrap();
    bytes
}

#[tokio::test]
async fn an_upload_url_is_signed_for_the_declared_type_and_length() {
    let h = seeded().await;
    let session = h.signed_in("+14155550123").await;
    let response = router(&h).handle(with_bearer(event("create-upload.json"), &session.access_token)).await;
    assert_eq!(response.status(), 201, "{}", body_json(&response));
    let body = body_json(&response);
    let upload_id = body["uploadId"].as_str().unwrap();
    UploadId::parse(upload_id).unwrap();
    assert_eq!(body["method"], "PUT");
    let url = body["uploadUrl"].as_str().unwrap();
    let key = object_keys::upload(&session.user.id, &UploadId::parse(upload_id).unwrap());
    assert!(url.contains(&key), "the key is under the caller's prefix: {url}");
    let headers = body["headers"].as_object().unwrap();
    assert_eq!(headers["Content-Type"], "image/jpeg");
    assert!(headers["Content-Length"].as_str().unwrap().parse::<u64>().is_ok());
    let expires = time::OffsetDateTime::parse(
        body["expiresAt"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let ttl = expires.unix_timestamp() - time::OffsetDateTime::now_utc().unix_timestamp();
    assert!((1..=900).contains(&ttl), "expires within 15 minutes: {ttl}");
}

#[tokio::test]
async fn bad_uploads_are_refused_in_the_envelope() {
    let h = seeded().await;
    let token = h.signed_in("+14155550123").await.access_token;
    let cases = [
        (serde_json::json!({"contentType": "image/heic", "contentLength": 1000}), 415, "UNSUPPORTED_MEDIA_TYPE"),
        (serde_json::json!({"contentType": "image/gif", "contentLength": 1000}), 415, "UNSUPPORTED_MEDIA_TYPE"),
        (
            serde_json::json!({"contentType": "image/jpeg", "contentLength": 10 * 1024 * 1024 + 1}),
            413,
            "PAYLOAD_TOO_LARGE",
        ),
        (serde_json::json!({"contentType": "image/jpeg", "contentLength": 0}), 400, "VALIDATION_ERROR"),
        (serde_json::json!({"contentType": "image/jpeg", "contentLength": -5}), 400, "VALIDATION_ERROR"),
        (serde_json::json!({"contentType": "image/jpeg"}), 400, "VALIDATION_ERROR"),
    ];
    for (body, status, code) in cases {
        let response =
            router(&h).handle(with_body(with_bearer(event("create-upload.json"), &token), body.clone())).await;
        assert_eq!(response.status(), status, "{body}: {}", body_json(&response));
        assert_eq!(body_json(&response)["error"]["code"], code, "{body}");
    }
    assert_eq!(router(&h).handle(event("create-upload.json")).await.status(), 401, "placeholder token");
}

#[tokio::test]
async fn start_poll_list_and_delete_a_generation() {
    let h = seeded().await;
    let session = h.signed_in("+14155550123").await;
    let token = &session.access_token;
    let start = || with_bearer(event("start-generation.json"), token);

    // The fixture's upload id has no photo yet.
    let response = router(&h).handle(start()).await;
    assert_eq!(response.status(), 400, "{}", body_json(&response));
    assert_eq!(body_json(&response)["error"]["details"][0]["field"], "uploadId");

    let fixture: serde_json::Value = serde_json::from_str(
        event("start-generation.json").body().as_ref().iter().map(|b| *b as char).collect::<String>().as_str(),
    )
    .unwrap();
    let upload = UploadId::parse(fixture["uploadId"].as_str().unwrap()).unwrap();
    h.objects.put(&object_keys::upload(&session.user.id, &upload), photo(), "image/jpeg").await.unwrap();

    let first = router(&h).handle(start()).await;
    assert_eq!(first.status(), 202, "{}", body_json(&first));
    let body = body_json(&first);
    assert_eq!(body["balance"], 2);
    let g = &body["generation"];
    assert_eq!(g["templateId"], "neon-noir");
    assert_eq!(g["status"], "queued");
    assert_eq!(g["creditsCharged"], 1);
    assert_eq!(g["refunded"], false);
    assert_eq!(g["outputUrl"], serde_json::Value::Null);
    let keys: Vec<&str> = g.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "completedAt",
            "createdAt",
            "creditsCharged",
            "failureReason",
            "id",
            "outputUrl",
            "refunded",
            "source",
            "status",
            "templateId"
        ]
    );
    assert!(!first.body().as_ref().windows(6).any(|w| w == b"prompt"), "server-side settings never leak");

    // A retry with the same key and body: the same answer, no second charge.
    let again = router(&h).handle(start()).await;
    assert_eq!(again.status(), 202);
    assert_eq!(body_json(&again), body);

    // The same key with another body.
    let other =
        with_body(start(), serde_json::json!({"templateId": "studio-headshot", "uploadId": upload.to_string()}));
    let response = router(&h).handle(other).await;
    assert_eq!(response.status(), 422);
    assert_eq!(body_json(&response)["error"]["code"], "IDEMPOTENCY_KEY_REUSED");

    let id = g["id"].as_str().unwrap().to_owned();
    let get = |method: &str| {
        with_bearer(for_id(if method == "GET" { "get-generation.json" } else { "delete-generation.json" }, &id), token)
    };
    let polled = router(&h).handle(get("GET")).await;
    assert_eq!(body_json(&polled)["status"], "queued");
    let deleted = router(&h).handle(get("DELETE")).await;
    assert_eq!(deleted.status(), 409, "in flight: not deletable");

    let job = JobRef { user_id: session.user.id.clone(), generation_id: id.clone() };
    h.deps.worker().process(&job).await.unwrap();
    let polled = body_json(&router(&h).handle(get("GET")).await);
    assert_eq!(polled["status"], "succeeded", "{polled}");
    let output = polled["outputUrl"].as_str().unwrap();
    assert!(output.starts_with("http://images.test/_local/objects/outputs/"), "{output}");
    assert!(polled["completedAt"].is_string());

    let list = body_json(&router(&h).handle(with_bearer(event("list-generations.json"), token)).await);
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert_eq!(list["items"][0]["id"], id.as_str());

    // Another user sees none of it.
    let stranger = h.signed_in("+14155550199").await.access_token;
    let req = with_bearer(for_id("get-generation.json", &id), &stranger);
    assert_eq!(router(&h).handle(req).await.status(), 404);

    assert_eq!(router(&h).handle(get("DELETE")).await.status(), 204);
    assert_eq!(router(&h).handle(get("GET")).await.status(), 404);
    assert!(h.objects.keys().iter().all(|k| !k.starts_with("outputs/")), "the output is gone: {:?}", h.objects.keys());
}

#[tokio::test]
async fn no_credits_no_key_and_bad_ids_are_clear_errors() {
    let mut h = seeded().await;
    h.deps.generation.max_in_flight = 2;
    let session = h.signed_in("+14155550123").await;
    let token = &session.access_token;
    let upload = UploadId::new();
    h.objects.put(&object_keys::upload(&session.user.id, &upload), photo(), "image/jpeg").await.unwrap();
    let body = serde_json::json!({"templateId": "neon-noir", "uploadId": upload.to_string()});
    // Two generations in flight: the cap.
    for i in 0..2 {
        let mut req = with_body(with_bearer(event("start-generation.json"), token), body.clone());
        req.headers_mut().insert("idempotency-key", format!("k{i}").parse().unwrap());
        let response = router(&h).handle(req).await;
        assert_eq!(response.status(), 202, "{}", body_json(&response));
    }
    let mut req = with_body(with_bearer(event("start-generation.json"), token), body.clone());
    req.headers_mut().insert("idempotency-key", "k3".parse().unwrap());
    let response = router(&h).handle(req).await;
    // A credit is left, but two generations are already in flight.
    assert_eq!(response.status(), 429, "{}", body_json(&response));
    assert_eq!(body_json(&response)["error"]["code"], "RATE_LIMITED");
    assert!(response.headers().contains_key("retry-after"));

    let mut req = with_body(with_bearer(event("start-generation.json"), token), body.clone());
    req.headers_mut().remove("idempotency-key");
    let response = router(&h).handle(req).await;
    assert_eq!(response.status(), 400);
    assert_eq!(body_json(&response)["error"]["details"][0]["field"], "Idempotency-Key");

    for bad in [
        serde_json::json!({"templateId": "no-such-style", "uploadId": upload.to_string()}),
        serde_json::json!({"templateId": "vaporwave", "uploadId": upload.to_string()}),
        serde_json::json!({"templateId": "neon-noir", "uploadId": "not-an-id"}),
        serde_json::json!({"templateId": "../etc", "uploadId": upload.to_string()}),
        serde_json::json!({"templateId": 7, "uploadId": upload.to_string()}),
    ] {
        let mut req = with_body(with_bearer(event("start-generation.json"), token), bad.clone());
        req.headers_mut().insert("idempotency-key", "bad".parse().unwrap());
        let response = router(&h).handle(req).await;
        assert_eq!(response.status(), 400, "{bad}: {}", body_json(&response));
    }
    let req = with_bearer(for_id("get-generation.json", "not-a-ulid"), token);
    assert_eq!(router(&h).handle(req).await.status(), 404);
    // The fixture's own id: well-formed, but no such generation.
    assert_eq!(router(&h).handle(with_bearer(event("get-generation.json"), token)).await.status(), 404);
}

#[tokio::test]
async fn an_empty_balance_is_402() {
    let mut h = seeded().await;
    h.deps.generation.max_in_flight = 10;
    let session = h.signed_in("+14155550123").await;
    let upload = UploadId::new();
    h.objects.put(&object_keys::upload(&session.user.id, &upload), photo(), "image/jpeg").await.unwrap();
    let body = serde_json::json!({"templateId": "neon-noir", "uploadId": upload.to_string()});
    let mut statuses = Vec::new();
    for i in 0..4 {
        let mut req = with_body(with_bearer(event("start-generation.json"), &session.access_token), body.clone());
        req.headers_mut().insert("idempotency-key", format!("k{i}").parse().unwrap());
        let response = router(&h).handle(req).await;
        if response.status() == 402 {
            assert_eq!(body_json(&response)["error"]["code"], "INSUFFICIENT_CREDITS");
        }
        statuses.push(response.status().as_u16());
    }
    assert_eq!(statuses, [202, 202, 202, 402]);
}
