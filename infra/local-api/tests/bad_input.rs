//! Whatever a client sends to any route — garbage bytes, wrong types, odd headers — the answer is a
//! documented status in the contract's envelope: never a 5xx, never a panic, never a bare body.

use std::sync::Arc;

use facemake::adapters::memory::{MemoryOutbox, MemoryStore};
use facemake::ports::SystemClock;
use local_api::{api_gateway_event, LocalApi};
use proptest::prelude::*;

mod common;

const ROUTES: [(&str, &str); 19] = [
    ("POST", "/v1/auth/send-code"),
    ("POST", "/v1/auth/verify-code"),
    ("POST", "/v1/auth/refresh"),
    ("POST", "/v1/auth/logout"),
    ("GET", "/v1/me"),
    ("PATCH", "/v1/me"),
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

fn authorization() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        "\\PC{0,60}".prop_map(Some),
        "[A-Za-z0-9_-]{10,40}\\.[A-Za-z0-9_-]{10,40}\\.[A-Za-z0-9_-]{0,40}".prop_map(|t| Some(format!("Bearer {t}"))),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn no_input_gets_a_5xx_or_a_bare_answer(
        route in 0..ROUTES.len(),
        body in body_strategy(),
        content_type in content_type(),
        authorization in authorization(),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let api = runtime
            .block_on(LocalApi::new(
                Arc::new(MemoryStore::new()),
                MemoryOutbox::new(),
                facemake::testkit::policy(),
                Arc::new(SystemClock),
                "http://127.0.0.1:3000",
            ))
            .unwrap();
        let (method, path) = ROUTES[route];
        let mut builder = http::Request::builder().method(method).uri(path);
        if let Some(ct) = content_type {
            builder = builder.header("content-type", ct);
        }
        if let Some(auth) = authorization.as_deref().and_then(|a| http::HeaderValue::from_str(a).ok()) {
            builder = builder.header("authorization", auth);
        }
        let (parts, ()) = builder.body(()).unwrap().into_parts();
        let event = api_gateway_event(&parts, &body, "127.0.0.1:1".parse().unwrap());
        let request = lambda_http::request::from_str(&event.to_string()).unwrap();
        let response = runtime.block_on(api.router.handle(request));
        let status = response.status().as_u16();
        prop_assert!(status < 500, "{method} {path} answered {status}");
        // And the answer is one docs/openapi.yaml documents for the route, body included.
        let json: serde_json::Value = serde_json::from_slice(response.body().as_ref()).unwrap_or_default();
        common::openapi::check(method, path, status, &json);
        if status >= 400 {
            let body: serde_json::Value = serde_json::from_slice(response.body().as_ref()).unwrap_or_default();
            prop_assert!(body["error"]["code"].is_string(), "{method} {path} {status}: not the envelope: {body}");
            prop_assert!(body["error"]["message"].is_string());
        }
    }
}
