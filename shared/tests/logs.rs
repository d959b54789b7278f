//! Captures every log line of a sign-in journey (JSON, at TRACE, as deployed but more verbose) and checks
//! that no code, token, key or full phone number is in it.

use std::io::Write;
use std::sync::{Arc, Mutex};

use facemake::domain::{OtpCode, PhoneNumber};
use facemake::testkit::{Harness, TEST_MASTER_KEY};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

/// Every log line, JSON at TRACE (as deployed but more verbose), captured for this thread's test.
fn capture() -> (Captured, tracing::subscriber::DefaultGuard) {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_max_level(tracing::Level::TRACE)
        // No timestamps: their microseconds could match a six-digit code by chance.
        .without_time()
        .with_writer(move || writer.clone())
        .finish();
    (captured, tracing::subscriber::set_default(subscriber))
}

#[tokio::test]
async fn a_sign_in_journey_logs_no_secrets() {
    let (captured, _guard) = capture();

    let h = Harness::in_memory();
    let phone = PhoneNumber::parse("+14155550199", None).unwrap();
    let send = h.deps.send_code();
    send.send(&phone, Some("198.51.100.7")).await.unwrap();
    let _ = send.send(&phone, Some("198.51.100.7")).await; // cooldown refusal
    let code = h.last_code(phone.e164()).unwrap();
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let auth = h.deps.sign_in();
    let _ = auth.verify(&phone, &OtpCode::parse(wrong).unwrap(), None).await;
    let session = auth.verify(&phone, &OtpCode::parse(&code).unwrap(), None).await.unwrap();
    let rotated = auth.refresh(&session.refresh_token).await.unwrap();
    let _ = auth.refresh(&session.refresh_token).await; // reuse: family revoked, logged as a warning
    auth.logout(&session.user.id, Some(&rotated.refresh_token), true).await.unwrap();
    h.outbox.set_failing(true);
    h.clock.advance(61);
    let _ = send.send(&phone, None).await; // delivery failure path

    let logs = captured.text();
    assert!(
        logs.contains("sign-in code sent") && logs.contains("refresh token reused"),
        "the journey was logged:\n{logs}"
    );
    assert!(logs.contains("+1••••••0199"), "numbers appear masked");
    for (what, secret) in [
        ("code", code.as_str()),
        ("full phone number", "4155550199"),
        ("access token", session.access_token.as_str()),
        ("refresh token", session.refresh_token.as_str()),
        ("rotated refresh token", rotated.refresh_token.as_str()),
        ("master key", std::str::from_utf8(TEST_MASTER_KEY).unwrap()),
    ] {
        assert!(!logs.contains(secret), "the {what} reached the logs:\n{logs}");
    }
}

#[tokio::test]
async fn purchases_and_notifications_log_no_signed_data() {
    use appstore_test_chain::{notification, TestChain, Transaction};
    use facemake::testkit::{credits_config, BUNDLE_ID, PRODUCT_10};

    let (captured, _guard) = capture();

    let chain = TestChain::generate().unwrap();
    let mut h = Harness::in_memory();
    h.deps.credits = credits_config(vec![chain.root_der().to_vec()]);
    let credits = h.deps.credits_service().unwrap();
    let user = h.signed_in("+14155550198").await.user.id;
    let signed =
        chain.sign(&Transaction::consumable("3000000000000001", PRODUCT_10, BUNDLE_ID, "Sandbox").payload()).unwrap();
    credits.purchase(&user, &signed).await.unwrap();
    let _ = credits.purchase(&user, "forged.payload.signature").await;
    let info =
        chain.sign(&Transaction::consumable("3000000000000001", PRODUCT_10, BUNDLE_ID, "Sandbox").payload()).unwrap();
    let refund = chain
        .sign(&notification("REFUND", "c0ffee00-0000-4000-8000-000000000001", BUNDLE_ID, "Sandbox", Some(&info)))
        .unwrap();
    credits.notification(&refund).await.unwrap();

    let logs = captured.text();
    assert!(logs.contains("app store notification"), "the notification was logged:\n{logs}");
    assert!(logs.contains(&facemake::telemetry::user_ref(&user)), "the refund names its user by reference");
    assert!(!logs.contains(user.as_str()), "the user id reached the logs:\n{logs}");
    // Any signature segment (the part only the signer could make) must not be in the logs.
    for (what, jws) in [("signed transaction", &signed), ("transaction info", &info), ("signed payload", &refund)] {
        let signature = jws.rsplit('.').next().unwrap();
        assert!(!logs.contains(signature), "the {what} reached the logs:\n{logs}");
    }
}

#[tokio::test]
async fn request_lines_carry_route_status_latency_and_a_user_reference_not_the_id() {
    use facemake::http::{json, AuthGuard, PathParams, Request, Router};
    use facemake::testkit::{event, with_bearer};

    let (captured, _guard) = capture();
    let h = Harness::in_memory();
    let session = h.signed_in("+14155550197").await;
    let guard = std::sync::Arc::new(h.deps.auth_guard());
    let router = Router::new().route(
        http::Method::GET,
        "/v1/me",
        guard,
        |guard: std::sync::Arc<AuthGuard>, req: Request, _: PathParams| async move {
            guard.user(&req).await?;
            Ok(json(http::StatusCode::OK, &serde_json::json!({})))
        },
    );
    let response = router.handle(with_bearer(event("get-me.json"), &session.access_token)).await;
    assert_eq!(response.status(), 200);

    let logs = captured.text();
    let line: serde_json::Value = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|l| l["fields"]["message"] == "request")
        .unwrap_or_else(|| panic!("no request line:\n{logs}"));
    let fields = &line["fields"];
    assert_eq!(fields["route"], "/v1/me");
    assert_eq!(fields["status"], 200);
    assert!(fields["latency_ms"].as_f64().is_some());
    assert!(fields["request_id"].as_str().is_some_and(|r| !r.is_empty()));
    assert_eq!(fields["user"], facemake::telemetry::user_ref(&session.user.id));
    assert!(!logs.contains(session.user.id.as_str()), "the user id reached the logs:\n{logs}");
}
