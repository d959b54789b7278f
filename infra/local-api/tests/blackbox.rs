//! Black-box tests: the whole local API on a random port, driven over HTTP like the iOS app would.

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::{read, Api};
use facemake::adapters::keys::keys_from_master;
use facemake::adapters::memory::MemoryStore;
use facemake::ports::{Clock, SystemClock};
use facemake::tokens::{AccessClaims, AccessTokens};
use local_api::LOCAL_SIGNING_KEY;
use reqwest::StatusCode;
use serde_json::json;

mod common;

/// The full sign-in journey of the README walkthrough.
async fn sign_in_journey(api: &Api, phone: &str) {
    let (status, body) = api.post("/v1/auth/send-code", json!({"phone": phone}), None).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body, json!({"expiresInSeconds": 300, "retryAfterSeconds": 60}));
    let (status, body) = api.post("/v1/auth/send-code", json!({"phone": phone}), None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::TOO_MANY_REQUESTS, Some("RATE_LIMITED")));

    let code = api.code_for(phone).await;
    let (status, session) = api.post("/v1/auth/verify-code", json!({"phone": phone, "code": code}), None).await;
    assert_eq!(status, 200, "{session}");
    assert_eq!(session["isNewUser"], true);
    assert_eq!(session["user"]["credits"], 3);
    let access = session["accessToken"].as_str().unwrap().to_owned();
    let refresh = session["refreshToken"].as_str().unwrap().to_owned();

    let (status, again) = api.post("/v1/auth/verify-code", json!({"phone": phone, "code": code}), None).await;
    assert_eq!((status, again["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("CODE_USED")));

    let (status, me) = api.get("/v1/me", Some(&access)).await;
    assert_eq!((status, &me["id"]), (StatusCode::OK, &session["user"]["id"]));
    let patched = api
        .http
        .patch(format!("{}/v1/me", api.base))
        .bearer_auth(&access)
        .json(&json!({"displayName": "Ada Lovelace"}))
        .send()
        .await
        .unwrap();
    let (status, me) = read(patched).await;
    assert_eq!((status, me["displayName"].as_str()), (StatusCode::OK, Some("Ada Lovelace")));

    let (status, rotated) = api.post("/v1/auth/refresh", json!({"refreshToken": refresh}), None).await;
    assert_eq!(status, 200, "{rotated}");
    assert_eq!(rotated["user"]["displayName"], "Ada Lovelace");
    let (status, _) = api.post("/v1/auth/refresh", json!({"refreshToken": refresh}), None).await;
    assert_eq!(status, 401, "a spent refresh token is refused");
    let (status, _) = api.post("/v1/auth/refresh", json!({"refreshToken": rotated["refreshToken"]}), None).await;
    assert_eq!(status, 401, "and its family with it");

    let new_access = rotated["accessToken"].as_str().unwrap();
    let (status, _) = api.post("/v1/auth/logout", json!({"all": true}), Some(new_access)).await;
    assert_eq!(status, 204);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_journey_on_the_in_memory_store() {
    let api = Api::start(Arc::new(MemoryStore::new())).await;
    sign_in_journey(&api, "+14155550123").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_journey_on_dynamodb_local() {
    let api = Api::start(Arc::new(facemake::testkit::dynamodb_store().await)).await;
    sign_in_journey(&api, "+14155550123").await;
}

#[tokio::test]
async fn malformed_requests_get_the_documented_envelope() {
    let api = Api::start(Arc::new(MemoryStore::new())).await;
    let post = reqwest::Method::POST;
    let cases = [
        (
            api.raw(post.clone(), "/v1/auth/send-code", "application/json", b"{\"phone\":".to_vec()).await,
            400,
            "MALFORMED_JSON",
        ),
        (
            api.raw(post.clone(), "/v1/auth/send-code", "text/plain", b"{\"phone\":\"+14155550123\"}".to_vec()).await,
            415,
            "UNSUPPORTED_MEDIA_TYPE",
        ),
        (
            api.raw(post.clone(), "/v1/auth/send-code", "application/json", vec![b' '; 70_000]).await,
            413,
            "PAYLOAD_TOO_LARGE",
        ),
        (
            api.raw(post.clone(), "/v1/auth/send-code", "application/json", vec![0xff, 0xfe, 0x00]).await,
            400,
            "MALFORMED_JSON",
        ),
        (
            api.raw(
                post.clone(),
                "/v1/auth/verify-code",
                "application/json",
                br#"{"phone":"+14155550123","code":"12ab56"}"#.to_vec(),
            )
            .await,
            400,
            "VALIDATION_ERROR",
        ),
        (api.raw(post.clone(), "/v1/nowhere", "application/json", b"{}".to_vec()).await, 404, "NOT_FOUND"),
        (
            api.raw(reqwest::Method::GET, "/v1/auth/send-code", "application/json", vec![]).await,
            405,
            "METHOD_NOT_ALLOWED",
        ),
    ];
    for ((status, body), want_status, want_code) in cases {
        assert_eq!((status.as_u16(), body["error"]["code"].as_str()), (want_status, Some(want_code)), "{body}");
        assert!(body["error"]["requestId"].as_str().is_some_and(|id| !id.is_empty()));
    }
}

fn forge(claims: &AccessClaims, key: &[u8]) -> String {
    let keys = keys_from_master(key, None);
    let tokens = AccessTokens { issuer: claims.iss.clone(), audience: claims.aud.clone(), ttl_secs: 900 };
    tokens.sign(&keys, &keys.access[0].kid, claims).unwrap()
}

#[tokio::test]
async fn tampered_expired_misaddressed_and_unsigned_tokens_are_401() {
    let api = Api::start(Arc::new(MemoryStore::new())).await;
    let phone = "+14155550124";
    api.post("/v1/auth/send-code", json!({"phone": phone}), None).await;
    let code = api.code_for(phone).await;
    let (_, session) = api.post("/v1/auth/verify-code", json!({"phone": phone, "code": code}), None).await;
    let good = session["accessToken"].as_str().unwrap();
    assert_eq!(api.get("/v1/me", Some(good)).await.0, 200);

    let parts: Vec<&str> = good.split('.').collect();
    let claims: AccessClaims = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    let now = SystemClock.now();
    let tampered = {
        let mut c = claims.clone();
        c.sub = facemake::domain::UserId::new().to_string();
        format!("{}.{}.{}", parts[0], URL_SAFE_NO_PAD.encode(serde_json::to_vec(&c).unwrap()), parts[2])
    };
    let expired = forge(&AccessClaims { iat: now - 7200, exp: now - 3600, ..claims.clone() }, LOCAL_SIGNING_KEY);
    let wrong_audience = forge(&AccessClaims { aud: "facemake-web".into(), ..claims.clone() }, LOCAL_SIGNING_KEY);
    let wrong_key = forge(&claims, b"not-the-local-key-not-the-local-key!");
    let alg_none = format!("{}.{}.", URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#), parts[1]);
    let refresh_as_access = session["refreshToken"].as_str().unwrap().to_owned();
    for (name, token) in [
        ("tampered", tampered),
        ("expired", expired),
        ("wrong audience", wrong_audience),
        ("wrong key", wrong_key),
        ("alg none", alg_none),
        ("refresh token", refresh_as_access),
    ] {
        let (status, body) = api.get("/v1/me", Some(&token)).await;
        assert_eq!((status.as_u16(), body["error"]["code"].as_str()), (401, Some("INVALID_TOKEN")), "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_send_code_over_http_sends_one_text_on_dynamodb_local() {
    let api = Arc::new(Api::start(Arc::new(facemake::testkit::dynamodb_store().await)).await);
    let phone = "+14155550125";
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let api = api.clone();
            tokio::spawn(async move { api.post("/v1/auth/send-code", json!({"phone": phone}), None).await })
        })
        .collect();
    let mut statuses = Vec::new();
    for t in tasks {
        let (status, body) = t.await.unwrap();
        if status == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(body["error"]["code"], "RATE_LIMITED");
        }
        statuses.push(status.as_u16());
    }
    statuses.sort();
    assert_eq!(statuses, [202, 429, 429, 429, 429, 429, 429, 429, 429, 429]);
    let (_, messages) = api.get("/_local/messages?phone=%2B14155550125", None).await;
    assert_eq!(messages["items"].as_array().unwrap().len(), 1, "exactly one code sent");
}

#[tokio::test]
async fn the_local_api_serves_its_openapi_document_and_a_docs_page() {
    let api = Api::start(Arc::new(MemoryStore::new())).await;
    let spec: serde_json::Value =
        api.http.get(format!("{}/openapi.json", api.base)).send().await.unwrap().json().await.unwrap();
    assert_eq!(spec["openapi"], "3.1.0");
    assert!(spec["paths"]["/v1/auth/send-code"]["post"].is_object());
    let yaml = api.http.get(format!("{}/openapi.yaml", api.base)).send().await.unwrap();
    assert_eq!(yaml.headers()["content-type"], "application/yaml");
    let page = api.http.get(format!("{}/docs", api.base)).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("/openapi.json"));
}
