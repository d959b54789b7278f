//! The handler driven by the same API Gateway event that `sam local invoke -e events/send-code.json` uses.

use std::sync::Arc;

use lambda_http::Body;
use testkit::{body_json, event, Harness};

fn router(h: &Harness) -> facemake::http::Router {
    send_code::router(Arc::new(send_code::State::new(&h.deps)))
}

#[tokio::test]
async fn the_fixture_sends_a_code() {
    let h = Harness::in_memory();
    let response = router(&h).handle(event("send-code.json")).await;
    assert_eq!(response.status(), 202);
    assert_eq!(body_json(&response), serde_json::json!({"expiresInSeconds": 300, "retryAfterSeconds": 60}));
    assert_eq!(response.headers()["x-request-id"], "JKJaXmPLvHcESHA=", "API Gateway's request id is echoed");
    assert_eq!(h.outbox.messages_to("+14155550123").len(), 1);
}

#[tokio::test]
async fn a_second_request_inside_the_cooldown_is_429_with_retry_after() {
    let h = Harness::in_memory();
    router(&h).handle(event("send-code.json")).await;
    h.clock.advance(15);
    let response = router(&h).handle(event("send-code.json")).await;
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "45");
    let body = body_json(&response);
    assert_eq!(body["error"]["code"], "RATE_LIMITED");
    assert_eq!(body["error"]["retryAfterSeconds"], 45);
    assert_eq!(body["error"]["requestId"], "JKJaXmPLvHcESHA=");
}

fn with_body(body: &str, content_type: Option<&str>) -> lambda_http::Request {
    let mut req = event("send-code.json");
    *req.body_mut() = Body::Text(body.to_owned());
    match content_type {
        Some(ct) => {
            req.headers_mut().insert("content-type", ct.parse().unwrap());
        }
        None => {
            req.headers_mut().remove("content-type");
        }
    }
    req
}

#[tokio::test]
async fn bad_input_gets_the_documented_4xx() {
    let h = Harness::in_memory();
    let cases = [
        (with_body(r#"{"phone": "+1415555"#, Some("application/json")), 400, "MALFORMED_JSON"),
        (with_body(r#"{"phone":"+14155550123"}"#, Some("text/plain")), 415, "UNSUPPORTED_MEDIA_TYPE"),
        (with_body(r#"{"phone":"+14155550123"}"#, None), 415, "UNSUPPORTED_MEDIA_TYPE"),
        (
            with_body(&format!(r#"{{"phone":"{}"}}"#, "9".repeat(70_000)), Some("application/json")),
            413,
            "PAYLOAD_TOO_LARGE",
        ),
        (with_body(r#"{"telephone":"+14155550123"}"#, Some("application/json")), 400, "VALIDATION_ERROR"),
        (with_body(r#"{"phone":"4155550123"}"#, Some("application/json")), 400, "VALIDATION_ERROR"),
        (with_body(r#"{"phone":"+1415"}"#, Some("application/json")), 400, "VALIDATION_ERROR"),
        (with_body(r#"{"phone":"+33612345678"}"#, Some("application/json")), 400, "VALIDATION_ERROR"),
        (with_body(r#"{"phone":"0612345678","country":"Narnia"}"#, Some("application/json")), 400, "VALIDATION_ERROR"),
    ];
    for (req, status, code) in cases {
        let response = router(&h).handle(req).await;
        let body = body_json(&response);
        assert_eq!((response.status().as_u16(), body["error"]["code"].as_str()), (status, Some(code)), "{body}");
        assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    assert_eq!(h.outbox.count(), 0, "nothing was sent for bad input");
}

#[tokio::test]
async fn a_national_number_with_its_country_is_accepted() {
    let h = Harness::in_memory();
    let response =
        router(&h).handle(with_body(r#"{"phone":"(415) 555-0199","country":"US"}"#, Some("application/json"))).await;
    assert_eq!(response.status(), 202);
    assert_eq!(h.outbox.messages_to("+14155550199").len(), 1);
}

#[tokio::test]
async fn a_failing_sms_provider_is_503_and_retryable() {
    let h = Harness::in_memory();
    h.outbox.set_failing(true);
    let response = router(&h).handle(event("send-code.json")).await;
    assert_eq!(response.status(), 503);
    assert_eq!(body_json(&response)["error"]["code"], "UPSTREAM_UNAVAILABLE");
    h.outbox.set_failing(false);
    assert_eq!(router(&h).handle(event("send-code.json")).await.status(), 202, "no cooldown was consumed");
}
