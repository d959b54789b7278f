//! Whatever a client sends to any route — garbage bytes, wrong types, odd headers, with or without a valid
//! session — the answer is a documented status in the contract's envelope: never a 5xx, never a panic, never a
//! bare body.

use std::sync::Arc;

use facemake::adapters::memory::{MemoryOutbox, MemoryStore};
use facemake::ports::SystemClock;
use local_api::{api_gateway_event, LocalApi};
use proptest::prelude::*;

use crate::common;

/// A ULID no generation has.
const SOME_ID: &str = "01JZ0000000000000000000000";

const ROUTES: [(&str, &str); 30] = [
    ("POST", "/v1/auth/send-code"),
    ("POST", "/v1/auth/verify-code"),
    ("POST", "/v1/auth/refresh"),
    ("POST", "/v1/auth/logout"),
    ("GET", "/v1/me"),
    ("PATCH", "/v1/me"),
    // Never with a valid token (see `Auth::SignedIn`): a deletion would pass, and every such case would only
    // test the happy path.
    ("DELETE", "/v1/me"),
    ("GET", "/v1/templates?limit=0&trending=yes"),
    ("GET", "/v1/templates?cursor=eyJ9.AAAA&q=%00%FF&category=N%C3%A9on"),
    ("GET", "/v1/templates?limit=51&cursor=&q="),
    ("GET", "/v1/templates/categories"),
    ("GET", "/v1/templates/..%2F..%2Fetc"),
    ("PUT", "/v1/templates/neon-noir/favorite"),
    ("DELETE", "/v1/templates/NOT_A_SLUG/favorite"),
    ("GET", "/v1/me/favorites?cursor=a.b"),
    ("GET", "/v1/credits"),
    ("GET", "/v1/credits/history?limit=-1&cursor=%2E%2E"),
    ("POST", "/v1/credits/purchases"),
    ("POST", "/v1/webhooks/app-store"),
    ("POST", "/v1/webhooks/app-store?x=1"),
    ("POST", "/v1/uploads"),
    ("POST", "/v1/generations"),
    ("POST", "/v1/generations?x=%FF"),
    ("GET", "/v1/generations"),
    ("GET", "/v1/generations?limit=abc&cursor=%2E%2E"),
    ("GET", "/v1/generations?limit=50&cursor=eyJ9.AAAA"),
    ("GET", "/v1/generations/01JZ0000000000000000000000"),
    ("GET", "/v1/generations/..%2F..%2Fetc"),
    ("DELETE", "/v1/generations/01JZ0000000000000000000000"),
    ("DELETE", "/v1/generations/not-a-ulid"),
];

fn body_strategy() -> impl Strategy<Value = Vec<u8>> {
    let field = prop_oneof![
        Just("phone"),
        Just("code"),
        Just("country"),
        Just("refreshToken"),
        Just("displayName"),
        Just("all"),
        Just("signedTransaction"),
        Just("signedPayload"),
        Just("templateId"),
        Just("uploadId"),
        Just("contentType"),
        Just("contentLength"),
        Just("x")
    ];
    let value = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(serde_json::Value::from),
        "\\PC{0,40}".prop_map(serde_json::Value::from),
        "\\+[0-9]{1,16}".prop_map(serde_json::Value::from),
        "[0-9 ]{0,8}".prop_map(serde_json::Value::from),
        "[A-Za-z0-9_-]{2,30}\\.[A-Za-z0-9_-]{2,30}\\.[A-Za-z0-9_-]{0,30}".prop_map(serde_json::Value::from),
        Just(serde_json::Value::from("neon-noir")),
        Just(serde_json::Value::from(SOME_ID)),
        prop_oneof![Just("image/jpeg"), Just("image/png"), Just("image/heic"), Just("")]
            .prop_map(serde_json::Value::from),
        Just(serde_json::json!([1, "a"])),
        Just(serde_json::json!({"nested": {}})),
    ];
    let object = proptest::collection::vec((field, value), 0..4).prop_map(|pairs| {
        let map: serde_json::Map<String, serde_json::Value> =
            pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        serde_json::to_vec(&map).unwrap()
    });
    prop_oneof![object, proptest::collection::vec(any::<u8>(), 0..200), "\\PC{0,100}".prop_map(String::into_bytes)]
}

fn content_type() -> impl Strategy<Value = Option<&'static str>> {
    prop_oneof![
        4 => Just(Some("application/json")),
        1 => Just(Some("application/json; charset=utf-8")),
        1 => Just(Some("text/plain")),
        1 => Just(Some("application/x-www-form-urlencoded")),
        1 => Just(None),
    ]
}

/// Who the request claims to be.
#[derive(Debug, Clone)]
enum Auth {
    /// This `Authorization` header (or none): never a valid token.
    Header(Option<String>),
    /// A valid access token of a user signed in for this case, so the input reaches the handler behind the
    /// guard. Not on `DELETE /v1/me`, which gets a forged token instead: a valid one would delete the account,
    /// and the case would prove nothing about bad input.
    SignedIn,
}

fn authorization() -> impl Strategy<Value = Auth> {
    prop_oneof![
        1 => Just(Auth::Header(None)),
        1 => "\\PC{0,60}".prop_map(|h| Auth::Header(Some(h))),
        1 => "[A-Za-z0-9_-]{10,40}\\.[A-Za-z0-9_-]{10,40}\\.[A-Za-z0-9_-]{0,40}"
            .prop_map(|t| Auth::Header(Some(format!("Bearer {t}")))),
        3 => Just(Auth::SignedIn),
    ]
}

fn idempotency_key() -> impl Strategy<Value = Option<String>> {
    prop_oneof![Just(None), "[ -~]{0,300}".prop_map(Some), "\\PC{0,20}".prop_map(Some)]
}

/// The router's answer to one request, as API Gateway would hand it over.
fn send(
    runtime: &tokio::runtime::Runtime,
    api: &LocalApi,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> lambda_http::Response<lambda_http::Body> {
    let mut builder = http::Request::builder().method(method).uri(path);
    for (name, value) in headers {
        if let Ok(value) = http::HeaderValue::from_str(value) {
            builder = builder.header(*name, value);
        }
    }
    let (parts, ()) = builder.body(()).unwrap().into_parts();
    let event = api_gateway_event(&parts, body, "127.0.0.1:1".parse().unwrap());
    let request = lambda_http::request::from_str(&event.to_string()).unwrap();
    runtime.block_on(api.router.handle(request))
}

/// Signs a user in through the API and returns the access token.
fn sign_in(runtime: &tokio::runtime::Runtime, api: &LocalApi) -> String {
    let json = [("content-type", "application/json".to_owned())];
    let phone = "+14155550170";
    let sent = send(runtime, api, "POST", "/v1/auth/send-code", &json, format!(r#"{{"phone":"{phone}"}}"#).as_bytes());
    assert_eq!(sent.status(), 202);
    let text = api.outbox.messages_to(phone).remove(0).body;
    let code = text.split(|c: char| !c.is_ascii_digit()).find(|w| w.len() == 6).unwrap().to_owned();
    let body = format!(r#"{{"phone":"{phone}","code":"{code}"}}"#);
    let session = send(runtime, api, "POST", "/v1/auth/verify-code", &json, body.as_bytes());
    let session: serde_json::Value = serde_json::from_slice(session.body().as_ref()).unwrap();
    session["accessToken"].as_str().unwrap().to_owned()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn no_input_gets_a_5xx_or_a_bare_answer(
        route in 0..ROUTES.len(),
        body in body_strategy(),
        content_type in content_type(),
        authorization in authorization(),
        idempotency_key in idempotency_key(),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        // A fresh API (and store) per case: nothing one case does reaches another.
        let api = runtime
            .block_on(LocalApi::new(
                Arc::new(MemoryStore::new()),
                MemoryOutbox::new(),
                testkit::policy(),
                Arc::new(SystemClock),
                "http://127.0.0.1:3000",
            ))
            .unwrap();
        let (method, path) = ROUTES[route];
        let deletes_the_account = (method, path) == ("DELETE", "/v1/me");
        let authorization = match authorization {
            Auth::Header(h) => h,
            Auth::SignedIn if deletes_the_account => {
                // Well-formed and signed, but by another key: the guard must refuse it.
                let real = sign_in(&runtime, &api);
                let (head, rest) = real.split_once('.').unwrap();
                let (claims, _) = rest.split_once('.').unwrap();
                Some(format!("Bearer {head}.{claims}.{}", "A".repeat(43)))
            }
            Auth::SignedIn => Some(format!("Bearer {}", sign_in(&runtime, &api))),
        };
        let mut headers = Vec::new();
        if let Some(ct) = content_type {
            headers.push(("content-type", ct.to_owned()));
        }
        if let Some(auth) = authorization {
            headers.push(("authorization", auth));
        }
        if let Some(key) = idempotency_key {
            headers.push(("idempotency-key", key));
        }
        let response = send(&runtime, &api, method, path, &headers, &body);
        let status = response.status().as_u16();
        prop_assert!(status < 500, "{method} {path} answered {status}");
        // And the answer is one docs/openapi.yaml documents for the route, body included.
        let json: serde_json::Value = serde_json::from_slice(response.body().as_ref()).unwrap_or_default();
        common::openapi::check(method, path, status, &json);
        if status >= 400 {
            prop_assert!(json["error"]["code"].is_string(), "{method} {path} {status}: not the envelope: {json}");
            prop_assert!(json["error"]["message"].is_string());
        }
        if deletes_the_account {
            prop_assert_eq!(status, 401, "DELETE /v1/me without a valid token deleted something: {}", json);
        }
    }
}
