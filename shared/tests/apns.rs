//! The APNs adapter against a stand-in for Apple's service (wiremock, over HTTP/2: the client speaks only
//! HTTP/2, so each answer below also shows it did): the request Apple documents, a provider token that
//! verifies with the key's public half and is reused for 50 minutes, and each answer read as what it means.

use std::sync::Arc;

use facemake::adapters::apns::{Apns, ApnsKey, ApnsKeySource};
use facemake::domain::{Device, DeviceToken, PushEnvironment, UserId};
use facemake::ports::{Clock, Push, PushOutcome, PushSender};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use testkit::{ApnsTestKey, ManualClock};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const TOPIC: &str = "app.facemake.ios";

struct World {
    key: ApnsTestKey,
    production: MockServer,
    sandbox: MockServer,
    clock: Arc<ManualClock>,
    apns: Apns,
}

async fn world() -> World {
    let key = ApnsTestKey::generate();
    let (production, sandbox) = (MockServer::start().await, MockServer::start().await);
    let clock = ManualClock::new(1_800_000_000);
    let parsed = ApnsKey::new(&key.key_id, &key.team_id, &key.pem).unwrap();
    let apns = Apns::new(
        ApnsKeySource::Fixed(Arc::new(Some(parsed))),
        TOPIC,
        &production.uri(),
        &sandbox.uri(),
        clock.clone(),
    );
    World { key, production, sandbox, clock, apns }
}

fn device(environment: PushEnvironment) -> Device {
    Device {
        token: DeviceToken::parse(&"a1".repeat(32)).unwrap(),
        user_id: UserId::new(),
        environment,
        registered_at: 1,
    }
}

fn push() -> Push {
    Push {
        title: "Your portrait is ready".to_owned(),
        body: "Tap to see it.".to_owned(),
        generation_id: "01JGENERATION".to_owned(),
        status: "succeeded",
    }
}

#[derive(serde::Deserialize)]
struct Claims {
    iss: String,
    iat: i64,
}

/// The provider token of `request`, verified with the key's public half: its claims and `kid`.
fn provider_token(w: &World, request: &Request) -> (Claims, String) {
    let bearer = request.headers.get("authorization").unwrap().to_str().unwrap();
    let jwt = bearer.strip_prefix("bearer ").or_else(|| bearer.strip_prefix("Bearer ")).unwrap();
    let mut validation = Validation::new(Algorithm::ES256);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    let decoded =
        jsonwebtoken::decode::<Claims>(jwt, &DecodingKey::from_ec_der(&w.key.public_key), &validation).unwrap();
    (decoded.claims, decoded.header.kid.unwrap())
}

#[tokio::test]
async fn an_alert_goes_to_the_tokens_environment_as_apple_documents_it() {
    let w = world().await;
    let token_path = format!("/3/device/{}", "a1".repeat(32));
    Mock::given(method("POST"))
        .and(path(token_path.as_str()))
        .and(header("apns-topic", TOPIC))
        .and(header("apns-push-type", "alert"))
        .and(header("apns-priority", "10"))
        .and(header("apns-collapse-id", "01JGENERATION"))
        .respond_with(ResponseTemplate::new(200).insert_header("apns-id", "EC1BF194-B3B2-424A-89A9-5A918A6E6B5B"))
        .expect(1)
        .mount(&w.sandbox)
        .await;
    assert_eq!(w.apns.send(&device(PushEnvironment::Sandbox), &push()).await, PushOutcome::Delivered);
    assert!(w.production.received_requests().await.unwrap().is_empty(), "a sandbox token never goes to production");
    let request = &w.sandbox.received_requests().await.unwrap()[0];
    let (claims, kid) = provider_token(&w, request);
    assert_eq!(
        (claims.iss.as_str(), claims.iat, kid.as_str()),
        (w.key.team_id.as_str(), w.clock.now(), w.key.key_id.as_str())
    );
    let expiration: i64 = request.headers.get("apns-expiration").unwrap().to_str().unwrap().parse().unwrap();
    assert!(expiration > w.clock.now(), "kept for an offline device");
    let body: serde_json::Value = request.body_json().unwrap();
    assert_eq!(body["aps"]["alert"]["title"], "Your portrait is ready");
    assert_eq!(body["generationId"], "01JGENERATION");
    assert_eq!(body["status"], "succeeded");

    Mock::given(method("POST")).respond_with(ResponseTemplate::new(200)).expect(1).mount(&w.production).await;
    assert_eq!(w.apns.send(&device(PushEnvironment::Production), &push()).await, PushOutcome::Delivered);
}

#[tokio::test]
async fn the_provider_token_is_reused_for_fifty_minutes_then_renewed() {
    let w = world().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(200)).mount(&w.production).await;
    let d = device(PushEnvironment::Production);
    w.apns.send(&d, &push()).await;
    let first = w.clock.now();
    w.clock.advance(49 * 60);
    w.apns.send(&d, &push()).await;
    w.clock.advance(2 * 60);
    w.apns.send(&d, &push()).await;
    let requests = w.production.received_requests().await.unwrap();
    let issued: Vec<i64> = requests.iter().map(|r| provider_token(&w, r).0.iat).collect();
    assert_eq!(issued, [first, first, first + 51 * 60]);
}

#[tokio::test]
async fn gone_tokens_are_unregistered_as_of_apns_report() {
    let w = world().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(410)
                .set_body_json(serde_json::json!({"reason": "Unregistered", "timestamp": 1_799_999_000_123_i64})),
        )
        .mount(&w.production)
        .await;
    let outcome = w.apns.send(&device(PushEnvironment::Production), &push()).await;
    assert_eq!(outcome, PushOutcome::Unregistered { since: Some(1_799_999_000) });
    // Without a readable body it is still gone, as of no particular time.
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(410)).mount(&w.sandbox).await;
    let outcome = w.apns.send(&device(PushEnvironment::Sandbox), &push()).await;
    assert_eq!(outcome, PushOutcome::Unregistered { since: None });
}

#[tokio::test]
async fn refusals_and_outages_are_failures_with_apns_reason() {
    let w = world().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(400).set_body_json(serde_json::json!({"reason": "BadDeviceToken"})))
        .mount(&w.sandbox)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500).set_body_json(serde_json::json!({"reason": "InternalServerError"})))
        .mount(&w.production)
        .await;
    let PushOutcome::Failed(reason) = w.apns.send(&device(PushEnvironment::Sandbox), &push()).await else {
        panic!("a refusal is a failure")
    };
    assert!(reason.contains("400") && reason.contains("BadDeviceToken"), "{reason}");
    let PushOutcome::Failed(reason) = w.apns.send(&device(PushEnvironment::Production), &push()).await else {
        panic!("an outage is a failure")
    };
    assert!(reason.contains("500"), "{reason}");
    // Nothing listening at all.
    let nowhere = Apns::new(
        ApnsKeySource::Fixed(Arc::new(Some(ApnsKey::new(&w.key.key_id, &w.key.team_id, &w.key.pem).unwrap()))),
        TOPIC,
        "http://127.0.0.1:9",
        "http://127.0.0.1:9",
        w.clock.clone(),
    );
    assert!(matches!(nowhere.send(&device(PushEnvironment::Production), &push()).await, PushOutcome::Failed(_)));
}

#[tokio::test]
async fn an_expired_provider_token_is_replaced_at_the_next_push() {
    let w = world().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(403).set_body_json(serde_json::json!({"reason": "ExpiredProviderToken"})))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&w.production)
        .await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(200)).mount(&w.production).await;
    let d = device(PushEnvironment::Production);
    assert!(matches!(w.apns.send(&d, &push()).await, PushOutcome::Failed(r) if r.contains("ExpiredProviderToken")));
    w.clock.advance(60);
    assert_eq!(w.apns.send(&d, &push()).await, PushOutcome::Delivered);
    let issued: Vec<i64> =
        w.production.received_requests().await.unwrap().iter().map(|r| provider_token(&w, r).0.iat).collect();
    assert_eq!(issued[1], issued[0] + 60, "a new token, well inside the 50 minutes");
}

#[tokio::test]
async fn without_a_key_nothing_is_sent() {
    let w = world().await;
    let none =
        Apns::new(ApnsKeySource::Fixed(Arc::new(None)), TOPIC, &w.production.uri(), &w.sandbox.uri(), w.clock.clone());
    assert_eq!(none.send(&device(PushEnvironment::Production), &push()).await, PushOutcome::NotConfigured);
    assert!(w.production.received_requests().await.unwrap().is_empty());
}
