//! Black-box tests: the whole local API on a random port, driven over HTTP like the iOS app would.

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::Api;
use facemake::adapters::keys::keys_from_master;
use facemake::adapters::memory::MemoryStore;
use facemake::adapters::providers::local::LocalRenderer;
use facemake::ports::{AccountStore, Clock, ImageProvider, ProviderError, RenderRequest, RenderedImage, SystemClock};
use facemake::services::generation::Providers;
use facemake::tokens::{AccessClaims, AccessTokens};
use local_api::LOCAL_SIGNING_KEY;
use reqwest::StatusCode;
use serde_json::json;

use crate::common;

/// The full sign-in journey of the docs/local-api.md walkthrough.
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
    let (status, me) =
        api.call(reqwest::Method::PATCH, "/v1/me", Some(json!({"displayName": "Ada Lovelace"})), Some(&access)).await;
    assert_eq!((status, me["displayName"].as_str()), (StatusCode::OK, Some("Ada Lovelace")));

    let (status, rotated) = api.post("/v1/auth/refresh", json!({"refreshToken": refresh}), None).await;
    assert_eq!(status, 200, "{rotated}");
    assert_eq!(rotated["user"]["displayName"], "Ada Lovelace");
    // Presented again by this client at once: a retry (409, nothing revoked); by another client: reuse.
    let (status, _) = api.post("/v1/auth/refresh", json!({"refreshToken": refresh}), None).await;
    assert_eq!(status, 409, "a retry of the refresh");
    let thief = [("user-agent", "curl/8.5")];
    let spent = Some(json!({"refreshToken": refresh}));
    let (status, _) = api.call_with(reqwest::Method::POST, "/v1/auth/refresh", spent, None, &thief).await;
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
    let api = Api::start(Arc::new(testkit::dynamodb_store().await)).await;
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
    let api = Arc::new(Api::start(Arc::new(testkit::dynamodb_store().await)).await);
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

/// A provider that holds every job until `open` is set, then renders like the local renderer: keeps
/// generations in flight for as long as the test needs them there.
struct Gate {
    open: Arc<std::sync::atomic::AtomicBool>,
}

#[async_trait::async_trait]
impl ImageProvider for Gate {
    fn needs_image_url(&self) -> bool {
        false
    }
    async fn render(&self, request: RenderRequest<'_>) -> Result<RenderedImage, ProviderError> {
        while !self.open.load(std::sync::atomic::Ordering::SeqCst) {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        LocalRenderer.render(request).await
    }
}

/// A real JPEG for uploads.
fn photo() -> Vec<u8> {
    let img = image::RgbImage::from_fn(60, 80, |x, y| image::Rgb([(x * 4) as u8, (y * 3) as u8, 90]));
    let mut bytes = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Jpeg).unwrap();
    bytes
}

async fn start_generation(
    api: &Api,
    key: &str,
    template: &str,
    upload_id: &str,
    token: Option<&str>,
) -> (StatusCode, serde_json::Value) {
    let body = json!({"templateId": template, "uploadId": upload_id});
    api.call_with(reqwest::Method::POST, "/v1/generations", Some(body), token, &[("Idempotency-Key", key)]).await
}

/// A `(status, error code)` pair, for asserting on an answer.
fn outcome((status, body): &(StatusCode, serde_json::Value)) -> (u16, Option<&str>) {
    (status.as_u16(), body["error"]["code"].as_str())
}

/// Every non-5xx status docs/openapi.yaml documents for an operation is one the local API really answers: a
/// tour of the API through the checked helpers (each answer validated against the spec and recorded), then
/// the record is compared with the spec. A status nobody can produce is a spec that promises too much; one
/// the handlers answer that the spec does not list fails the check of that call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_status_of_every_operation_is_answered() {
    use reqwest::Method;
    let store = Arc::new(MemoryStore::new());
    let open = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let providers = Providers::all(Arc::new(Gate { open: open.clone() }));
    let api = Api::start_with(store.clone(), providers).await;
    let json_ct = "application/json";
    // Over the 64 KiB body limit (JSON, not blank: a blank body is an absent one where the body is optional).
    let huge = || format!(r#"{{"x":"{}"}}"#, "a".repeat(70_000)).into_bytes();
    let key = |k: &'static str| [("Idempotency-Key", k)];

    // Sign-in: the docs/local-api.md journey (202, 429, 200, 400, 401, 204 ...), then the rest of the auth statuses.
    sign_in_journey(&api, "+14155550140").await;
    let (post, patch, delete, put) = (Method::POST, Method::PATCH, Method::DELETE, Method::PUT);
    for path in ["/v1/auth/send-code", "/v1/auth/verify-code", "/v1/auth/refresh", "/v1/webhooks/app-store"] {
        assert_eq!(outcome(&api.raw(post.clone(), path, "text/plain", b"{}".to_vec()).await).0, 415, "{path}");
        assert_eq!(outcome(&api.raw(post.clone(), path, json_ct, huge()).await).0, 413, "{path}");
    }
    let bad_phone = api.post("/v1/auth/send-code", json!({"phone": "+1"}), None).await;
    assert_eq!(outcome(&bad_phone), (400, Some("VALIDATION_ERROR")));
    assert_eq!(outcome(&api.post("/v1/auth/refresh", json!({}), None).await), (400, Some("VALIDATION_ERROR")));
    // A code guessed wrong until it is used up.
    let phone = "+14155550141";
    api.post("/v1/auth/send-code", json!({"phone": phone}), None).await;
    let code = api.code_for(phone).await;
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let mut last = (StatusCode::OK, serde_json::Value::Null);
    for _ in 0..6 {
        last = api.post("/v1/auth/verify-code", json!({"phone": phone, "code": wrong}), None).await;
    }
    assert_eq!(outcome(&last), (429, Some("TOO_MANY_ATTEMPTS")));
    // A number whose account is being deleted (the deletion was interrupted): the code is spent, no session.
    // (The local reconciler, which would finish the deletion, ran at start and next runs in 30 s.)
    let phone = "+14155550142";
    let doomed = facemake::domain::UserId::new();
    let now = SystemClock.now();
    let new = facemake::ports::NewUser {
        id: doomed.clone(),
        phone: facemake::domain::PhoneNumber::parse(phone, None).unwrap(),
        created_at: now,
        starter_grant: None,
        number_key: None,
    };
    store.create_user(&new).await.unwrap();
    store.mark_deleted(&doomed, now).await.unwrap();
    api.post("/v1/auth/send-code", json!({"phone": phone}), None).await;
    let code = api.code_for(phone).await;
    let answer = api.post("/v1/auth/verify-code", json!({"phone": phone, "code": code}), None).await;
    assert_eq!(outcome(&answer), (409, Some("CONFLICT")));

    // The account.
    let token = api.sign_in("+14155550143").await;
    let t = Some(token.as_str());
    for path in ["/v1/me", "/v1/credits", "/v1/credits/history", "/v1/me/favorites", "/v1/generations"] {
        assert_eq!(outcome(&api.get(path, None).await).0, 401, "{path}");
    }
    for path in ["/v1/me/favorites?limit=0", "/v1/credits/history?limit=0", "/v1/generations?limit=0"] {
        assert_eq!(outcome(&api.get(path, t).await), (400, Some("VALIDATION_ERROR")), "{path}");
    }
    for path in ["/v1/me/favorites", "/v1/credits/history"] {
        assert_eq!(outcome(&api.get(path, t).await).0, 200, "{path}");
    }
    let bad_name = api.call(patch.clone(), "/v1/me", Some(json!({"displayName": 5})), t).await;
    assert_eq!(outcome(&bad_name), (400, Some("VALIDATION_ERROR")));
    assert_eq!(outcome(&api.call(patch.clone(), "/v1/me", Some(json!({})), None).await).0, 401);
    let bad_logout = api.post("/v1/auth/logout", json!({"all": "yes"}), t).await;
    assert_eq!(outcome(&bad_logout), (400, Some("VALIDATION_ERROR")));
    assert_eq!(outcome(&api.post("/v1/auth/logout", json!({}), None).await).0, 401);
    for (method, path) in [
        (post.clone(), "/v1/auth/logout"),
        (patch.clone(), "/v1/me"),
        (post.clone(), "/v1/credits/purchases"),
        (post.clone(), "/v1/uploads"),
        (post.clone(), "/v1/generations"),
    ] {
        let plain = api.raw_with(method.clone(), path, "text/plain", b"{}".to_vec(), t, &key("k-415")).await;
        assert_eq!(outcome(&plain).0, 415, "{method} {path}");
        let big = api.raw_with(method.clone(), path, json_ct, huge(), t, &key("k-413")).await;
        assert_eq!(outcome(&big).0, 413, "{method} {path}");
    }

    // The catalogue: anonymous, signed in, and with a token that is not one.
    let bad_token = Some("not-a-token");
    assert_eq!(outcome(&api.get("/v1/templates/categories", None).await).0, 200);
    assert_eq!(outcome(&api.get("/v1/templates", t).await).0, 200);
    assert_eq!(outcome(&api.get("/v1/templates?limit=0", None).await), (400, Some("VALIDATION_ERROR")));
    assert_eq!(outcome(&api.get("/v1/templates", bad_token).await).0, 401);
    assert_eq!(outcome(&api.get("/v1/templates/neon-noir", None).await).0, 200);
    assert_eq!(outcome(&api.get("/v1/templates/neon-noir", bad_token).await).0, 401);
    assert_eq!(outcome(&api.get("/v1/templates/no-such-style", None).await).0, 404);
    for method in [put.clone(), delete.clone()] {
        let path = "/v1/templates/neon-noir/favorite";
        assert_eq!(outcome(&api.call(method.clone(), path, None, t).await).0, 204, "{method}");
        assert_eq!(outcome(&api.call(method.clone(), path, None, None).await).0, 401, "{method}");
        // Not a template id at all (removing an unknown but well-formed one is a no-op, 204).
        let unknown = api.call(method.clone(), "/v1/templates/NOT_A_SLUG/favorite", None, t).await;
        assert_eq!(outcome(&unknown).0, 404, "{method}");
    }

    // Credits: a purchase (signed by the local StoreKit stand-in), its repeat by another account, garbage.
    let (_, signed) =
        api.post("/_local/app-store/transactions", json!({"productId": "app.facemake.credits.50"}), None).await;
    let purchase = json!({"signedTransaction": signed["signedTransaction"]});
    assert_eq!(outcome(&api.post("/v1/credits/purchases", purchase.clone(), t).await).0, 200);
    let (status, credits) = api.get("/v1/credits", t).await;
    assert_eq!((status.as_u16(), &credits["balance"]), (200, &json!(53)));
    assert_eq!(outcome(&api.post("/v1/credits/purchases", purchase.clone(), None).await).0, 401);
    let thief = api.sign_in("+14155550144").await;
    let stolen = api.post("/v1/credits/purchases", purchase, Some(&thief)).await;
    assert_eq!(outcome(&stolen), (409, Some("CONFLICT")));
    let forged = api.post("/v1/credits/purchases", json!({"signedTransaction": "a.b.c"}), t).await;
    assert_eq!(outcome(&forged), (400, Some("INVALID_PURCHASE")));
    let (_, notification) = api
        .post(
            "/_local/app-store/notifications",
            json!({"notificationType": "TEST", "transactionId": signed["transactionId"]}),
            None,
        )
        .await;
    let webhook = api.post("/v1/webhooks/app-store", json!({"signedPayload": notification["signedPayload"]}), None);
    assert_eq!(outcome(&webhook.await).0, 200);
    let bad = api.post("/v1/webhooks/app-store", json!({"signedPayload": "x.y.z"}), None).await;
    assert_eq!(outcome(&bad), (400, Some("VALIDATION_ERROR")));

    // Uploads.
    let upload_body = |ct: &str, len: usize| json!({"contentType": ct, "contentLength": len});
    assert_eq!(outcome(&api.post("/v1/uploads", upload_body("image/jpeg", 10), None).await).0, 401);
    assert_eq!(outcome(&api.post("/v1/uploads", upload_body("image/jpeg", 0), t).await).0, 400);
    assert_eq!(outcome(&api.post("/v1/uploads", upload_body("image/gif", 10), t).await).0, 415);
    assert_eq!(outcome(&api.post("/v1/uploads", upload_body("image/jpeg", 20 << 20), t).await).0, 413);
    let upload = |token: String| {
        let api = &api;
        async move {
            let bytes = photo();
            let (status, slot) = api.post("/v1/uploads", upload_body("image/jpeg", bytes.len()), Some(&token)).await;
            assert_eq!(status, 201, "{slot}");
            let mut put = api.http.put(slot["uploadUrl"].as_str().unwrap()).body(bytes);
            for (name, value) in slot["headers"].as_object().unwrap() {
                put = put.header(name.as_str(), value.as_str().unwrap());
            }
            assert_eq!(put.send().await.unwrap().status(), 200);
            slot["uploadId"].as_str().unwrap().to_owned()
        }
    };

    // Generations, held in flight by the gate: three start, a fourth is over the cap, none can be deleted yet.
    let upload_id = upload(token.clone()).await;
    let no_key = json!({"templateId": "neon-noir", "uploadId": upload_id});
    assert_eq!(outcome(&api.call(post.clone(), "/v1/generations", Some(no_key), t).await).0, 400, "no key");
    assert_eq!(outcome(&start_generation(&api, "g1", "neon-noir", &upload_id, None).await).0, 401);
    let mut ids = Vec::new();
    for k in ["g1", "g2", "g3"] {
        let (status, started) = start_generation(&api, k, "neon-noir", &upload_id, t).await;
        assert_eq!(status, 202, "{started}");
        ids.push(started["generation"]["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(outcome(&start_generation(&api, "g4", "neon-noir", &upload_id, t).await), (429, Some("RATE_LIMITED")));
    assert_eq!(
        outcome(&start_generation(&api, "g1", "pop-art", &upload_id, t).await),
        (422, Some("IDEMPOTENCY_KEY_REUSED"))
    );
    let first = format!("/v1/generations/{}", ids[0]);
    assert_eq!(outcome(&api.call(delete.clone(), &first, None, t).await), (409, Some("CONFLICT")));
    open.store(true, std::sync::atomic::Ordering::SeqCst);
    for id in &ids {
        let mut done = false;
        for _ in 0..300 {
            let (status, g) = api.get(&format!("/v1/generations/{id}"), t).await;
            assert_eq!(status, 200, "{g}");
            if g["status"] == "succeeded" {
                done = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert!(done, "generation {id} did not succeed");
    }
    assert_eq!(outcome(&api.get("/v1/generations", t).await).0, 200);
    assert_eq!(outcome(&api.get(&first, None).await).0, 401);
    assert_eq!(outcome(&api.call(delete.clone(), &first, None, None).await).0, 401);
    assert_eq!(outcome(&api.call(delete.clone(), &first, None, t).await).0, 204);
    assert_eq!(outcome(&api.get(&first, t).await).0, 404);
    assert_eq!(outcome(&api.call(delete.clone(), &first, None, t).await).0, 404);
    assert_eq!(
        outcome(&start_generation(&api, "g1", "neon-noir", &upload_id, t).await),
        (409, Some("CONFLICT")),
        "the key of a deleted one"
    );
    // Too few credits: 3 starter credits, a 3-credit style, then nothing left.
    let poor = api.sign_in("+14155550145").await;
    let poor_upload = upload(poor.clone()).await;
    let spent = start_generation(&api, "p1", "astronaut", &poor_upload, Some(&poor)).await;
    assert_eq!(outcome(&spent).0, 202);
    let broke = start_generation(&api, "p2", "neon-noir", &poor_upload, Some(&poor)).await;
    assert_eq!(outcome(&broke), (402, Some("INSUFFICIENT_CREDITS")));

    // Characters: made from an upload, listed, read, renamed; a generation from one, a restyle of a result;
    // another user's (or an unknown) character is 404, for a generation too; the eleventh is a conflict.
    let c_upload = upload(token.clone()).await;
    let make = |name: &str| json!({"name": name, "uploadIds": [c_upload]});
    assert_eq!(outcome(&api.post("/v1/characters", make("Ada"), None).await).0, 401);
    assert_eq!(outcome(&api.post("/v1/characters", make(" "), t).await), (400, Some("VALIDATION_ERROR")));
    let (status, character) = api.post("/v1/characters", make("Ada"), t).await;
    assert_eq!(status, 201, "{character}");
    let one = format!("/v1/characters/{}", character["id"].as_str().unwrap());
    let unknown = format!("/v1/characters/{}", facemake::domain::new_id());
    assert_eq!(outcome(&api.get("/v1/characters", t).await).0, 200);
    assert_eq!(outcome(&api.get("/v1/characters", None).await).0, 401);
    assert_eq!(outcome(&api.get("/v1/characters?limit=0", t).await), (400, Some("VALIDATION_ERROR")));
    assert_eq!(outcome(&api.get(&one, t).await).0, 200);
    assert_eq!(outcome(&api.get(&one, None).await).0, 401);
    assert_eq!(outcome(&api.get(&one, Some(&thief)).await), (404, Some("NOT_FOUND")));
    let rename = |name: &str| Some(json!({"name": name}));
    assert_eq!(outcome(&api.call(patch.clone(), &one, rename("Ada L."), t).await).0, 200);
    assert_eq!(outcome(&api.call(patch.clone(), &one, rename(""), t).await), (400, Some("VALIDATION_ERROR")));
    assert_eq!(outcome(&api.call(patch.clone(), &one, rename("Eve"), None).await).0, 401);
    assert_eq!(outcome(&api.call(patch.clone(), &unknown, rename("Eve"), t).await), (404, Some("NOT_FOUND")));
    for (method, path) in [(post.clone(), "/v1/characters"), (patch.clone(), unknown.as_str())] {
        let plain = api.raw_with(method.clone(), path, "text/plain", b"{}".to_vec(), t, &[]).await;
        assert_eq!(outcome(&plain).0, 415, "{method} {path}");
        let big = api.raw_with(method.clone(), path, json_ct, huge(), t, &[]).await;
        assert_eq!(outcome(&big).0, 413, "{method} {path}");
    }
    let from = |source: serde_json::Value| {
        let mut body = source;
        body["templateId"] = json!("neon-noir");
        body
    };
    let theirs = json!({"characterId": character["id"]});
    let stolen = api.call_with(post.clone(), "/v1/generations", Some(from(theirs)), Some(&thief), &key("c-1")).await;
    assert_eq!(outcome(&stolen), (404, Some("NOT_FOUND")));
    let mine = from(json!({"characterId": character["id"]}));
    assert_eq!(outcome(&api.call_with(post.clone(), "/v1/generations", Some(mine), t, &key("c-1")).await).0, 202);
    let parent = json!({"parentGenerationId": ids[1]});
    assert_eq!(
        outcome(&api.call_with(post.clone(), "/v1/generations", Some(from(parent)), t, &key("c-2")).await).0,
        202
    );
    for i in 1..10 {
        assert_eq!(outcome(&api.post("/v1/characters", make(&format!("c{i}")), t).await).0, 201);
    }
    assert_eq!(outcome(&api.post("/v1/characters", make("eleventh"), t).await), (409, Some("CONFLICT")));
    assert_eq!(outcome(&api.call(delete.clone(), &one, None, None).await).0, 401);
    assert_eq!(outcome(&api.call(delete.clone(), &one, None, t).await).0, 204);
    assert_eq!(outcome(&api.call(delete.clone(), &one, None, t).await), (404, Some("NOT_FOUND")));

    // Replicate's webhook (the local API verifies with the local signing key): unsigned, signed by someone
    // else, too big, and a signed callback about a job that awaits nothing (acknowledged, nothing changed).
    let hook = format!("/v1/webhooks/replicate?job={}.{}", facemake::domain::UserId::new(), facemake::domain::new_id());
    let prediction = br#"{"id":"p1","status":"succeeded","output":["https://replicate.delivery/x.png"]}"#.to_vec();
    assert_eq!(
        outcome(&api.raw(post.clone(), &hook, json_ct, prediction.clone()).await),
        (400, Some("VALIDATION_ERROR"))
    );
    let now = SystemClock.now();
    let signed = |key: &str| facemake::adapters::webhooks::sign(key, "msg_1", now, &prediction).unwrap();
    let (ours, theirs) =
        (signed(facemake::adapters::webhooks::LOCAL_SIGNING_KEY), signed("whsec_b3RoZXItc2lnbmluZy1rZXk="));
    let now_text = now.to_string();
    let headers = |signature: &'static str| {
        [("webhook-id", "msg_1"), ("webhook-timestamp", now_text.as_str()), ("webhook-signature", signature)]
    };
    let theirs: &'static str = Box::leak(theirs.into_boxed_str());
    let ours: &'static str = Box::leak(ours.into_boxed_str());
    let forged = api.raw_with(post.clone(), &hook, json_ct, prediction.clone(), None, &headers(theirs)).await;
    assert_eq!(outcome(&forged), (401, Some("UNAUTHORIZED")));
    let acknowledged = api.raw_with(post.clone(), &hook, json_ct, prediction.clone(), None, &headers(ours)).await;
    assert_eq!(outcome(&acknowledged).0, 200);
    let big = format!(r#"{{"id":"p1","status":"succeeded","logs":"{}"}}"#, "a".repeat(1_100_000)).into_bytes();
    assert_eq!(outcome(&api.raw(post.clone(), &hook, json_ct, big).await).0, 413);

    // OpenAI's webhook, the same way: unsigned, signed by someone else, too big, and a signed event of another
    // kind (acknowledged, nothing read).
    let openai_hook = "/v1/webhooks/openai";
    let other_event = br#"{"object":"event","id":"evt_1","type":"batch.completed","data":{"id":"batch_1"}}"#.to_vec();
    let sign_event = |key: &str| facemake::adapters::webhooks::sign(key, "msg_1", now, &other_event).unwrap();
    let ours_event: &'static str =
        Box::leak(sign_event(facemake::adapters::webhooks::LOCAL_SIGNING_KEY).into_boxed_str());
    let theirs_event: &'static str = Box::leak(sign_event("whsec_b3RoZXItc2lnbmluZy1rZXk=").into_boxed_str());
    assert_eq!(
        outcome(&api.raw(post.clone(), openai_hook, json_ct, other_event.clone()).await),
        (400, Some("VALIDATION_ERROR"))
    );
    let (theirs_headers, ours_headers) = (headers(theirs_event), headers(ours_event));
    let forged = api.raw_with(post.clone(), openai_hook, json_ct, other_event.clone(), None, &theirs_headers).await;
    assert_eq!(outcome(&forged), (401, Some("UNAUTHORIZED")));
    let acknowledged = api.raw_with(post.clone(), openai_hook, json_ct, other_event.clone(), None, &ours_headers).await;
    assert_eq!(outcome(&acknowledged).0, 200);
    let big = format!(r#"{{"type":"response.completed","pad":"{}"}}"#, "a".repeat(100_000)).into_bytes();
    assert_eq!(outcome(&api.raw(post.clone(), openai_hook, json_ct, big).await).0, 413);

    // Push devices: registered (twice: idempotent) and unregistered; a bad token or environment, no session, a
    // wrong content type and an oversized body.
    let device = format!("/v1/me/devices/{}", "9f".repeat(32));
    let put = Method::PUT;
    let env = |e: &str| Some(json!({"environment": e}));
    for _ in 0..2 {
        assert_eq!(outcome(&api.call(put.clone(), &device, env("sandbox"), t).await).0, 204);
    }
    assert_eq!(outcome(&api.call(put.clone(), &device, env("sandbox"), None).await).0, 401);
    assert_eq!(outcome(&api.call(put.clone(), &device, env("staging"), t).await), (400, Some("VALIDATION_ERROR")));
    let bad_token = "/v1/me/devices/not-a-token";
    assert_eq!(outcome(&api.call(put.clone(), bad_token, env("sandbox"), t).await), (400, Some("VALIDATION_ERROR")));
    assert_eq!(outcome(&api.raw_with(put.clone(), &device, "text/plain", b"{}".to_vec(), t, &[]).await).0, 415);
    assert_eq!(outcome(&api.raw_with(put.clone(), &device, json_ct, huge(), t, &[]).await).0, 413);
    assert_eq!(outcome(&api.call(delete.clone(), &device, None, None).await).0, 401);
    assert_eq!(outcome(&api.call(delete.clone(), bad_token, None, t).await), (400, Some("VALIDATION_ERROR")));
    assert_eq!(outcome(&api.call(delete.clone(), &device, None, t).await).0, 204);

    // Deleting the account; its token is refused afterwards.
    assert_eq!(outcome(&api.call(delete.clone(), "/v1/me", None, None).await).0, 401);
    assert_eq!(outcome(&api.call(delete.clone(), "/v1/me", None, Some(&thief)).await).0, 204);
    assert_eq!(outcome(&api.get("/v1/me", Some(&thief)).await).0, 401);

    let observed = api.observed.lock().unwrap().clone();
    let missing: Vec<_> = common::openapi::documented_statuses().difference(&observed).cloned().collect();
    assert!(missing.is_empty(), "documented but never answered in the tour: {missing:#?}");
}
