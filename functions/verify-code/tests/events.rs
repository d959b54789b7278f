//! verify-code, refresh and logout driven by their API Gateway event fixtures.

use std::sync::Arc;

use facemake::domain::PhoneNumber;
use lambda_http::Body;
use testkit::{body_json, event, with_bearer, Harness};

fn router(h: &Harness) -> facemake::http::Router {
    verify_code::router(Arc::new(verify_code::State::new(&h.deps)))
}

/// The refresh token the fixtures carry.
fn fixture_refresh_token(name: &str) -> String {
    let req = event(name);
    let body: serde_json::Value = serde_json::from_slice(req.body().as_ref()).unwrap();
    body["refreshToken"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn the_verify_fixture_signs_in_a_new_user() {
    let h = Harness::in_memory();
    h.plant_code(&PhoneNumber::parse("+14155550123", None).unwrap(), "123456").await;
    let response = router(&h).handle(event("verify-code.json")).await;
    assert_eq!(response.status(), 200);
    let body = body_json(&response);
    assert_eq!(body["tokenType"], "Bearer");
    assert_eq!(body["expiresIn"], 900);
    assert_eq!(body["isNewUser"], true);
    assert_eq!(body["user"]["phone"], "+1••••••0123");
    assert_eq!(body["user"]["credits"], 3);
    assert_eq!(body["user"]["displayName"], serde_json::Value::Null);
    assert_eq!(body["refreshToken"].as_str().unwrap().len(), 43);
    assert_eq!(response.headers()["cache-control"], "no-store");
}

#[tokio::test]
async fn wrong_expired_and_reused_codes_are_400_with_their_own_codes() {
    let h = Harness::in_memory();
    let phone = PhoneNumber::parse("+14155550123", None).unwrap();
    h.plant_code(&phone, "654321").await;
    let wrong = router(&h).handle(event("verify-code.json")).await;
    assert_eq!((wrong.status().as_u16(), body_json(&wrong)["error"]["code"].as_str()), (400, Some("INVALID_CODE")));
    assert!(body_json(&wrong)["error"]["message"].as_str().unwrap().contains("4 attempts left"));

    h.plant_code(&phone, "123456").await;
    h.clock.advance(301);
    let expired = router(&h).handle(event("verify-code.json")).await;
    assert_eq!(body_json(&expired)["error"]["code"], "CODE_EXPIRED");

    h.plant_code(&phone, "123456").await;
    assert_eq!(router(&h).handle(event("verify-code.json")).await.status(), 200);
    let reused = router(&h).handle(event("verify-code.json")).await;
    assert_eq!((reused.status().as_u16(), body_json(&reused)["error"]["code"].as_str()), (400, Some("CODE_USED")));
}

#[tokio::test]
async fn the_sixth_try_is_429_too_many_attempts_even_with_the_right_code() {
    let h = Harness::in_memory();
    h.plant_code(&PhoneNumber::parse("+14155550123", None).unwrap(), "999999").await;
    for _ in 0..5 {
        assert_eq!(router(&h).handle(event("verify-code.json")).await.status(), 400);
    }
    let mut right = event("verify-code.json");
    *right.body_mut() = Body::Text(r#"{"phone":"+14155550123","code":"999999"}"#.into());
    let sixth = router(&h).handle(right).await;
    assert_eq!(
        (sixth.status().as_u16(), body_json(&sixth)["error"]["code"].as_str()),
        (429, Some("TOO_MANY_ATTEMPTS"))
    );
}

#[tokio::test]
async fn the_refresh_fixture_rotates_and_its_reuse_is_401() {
    let h = Harness::in_memory();
    let session = h.signed_in("+14155550123").await;
    h.plant_refresh_token(&session, &fixture_refresh_token("refresh.json")).await;
    let first = router(&h).handle(event("refresh.json")).await;
    assert_eq!(first.status(), 200);
    let new_token = body_json(&first)["refreshToken"].as_str().unwrap().to_owned();

    // The same request again (the app's retry: same address, same User-Agent): 409, nothing revoked.
    let retry = router(&h).handle(event("refresh.json")).await;
    assert_eq!((retry.status().as_u16(), body_json(&retry)["error"]["code"].as_str()), (409, Some("CONFLICT")));
    // From another client: reuse.
    let mut stolen = event("refresh.json");
    stolen.headers_mut().insert(http::header::USER_AGENT, http::HeaderValue::from_static("curl/8.5"));
    let replay = router(&h).handle(stolen).await;
    assert_eq!((replay.status().as_u16(), body_json(&replay)["error"]["code"].as_str()), (401, Some("INVALID_TOKEN")));
    assert_eq!(replay.headers()["www-authenticate"], "Bearer error=\"invalid_token\"");

    let mut with_new = event("refresh.json");
    *with_new.body_mut() = Body::Text(format!(r#"{{"refreshToken":"{new_token}"}}"#));
    assert_eq!(router(&h).handle(with_new).await.status(), 401, "the reuse revoked the family");
}

#[tokio::test]
async fn the_logout_fixture_needs_a_bearer_token_and_revokes_the_family() {
    let h = Harness::in_memory();
    let session = h.signed_in("+14155550123").await;
    h.plant_refresh_token(&session, &fixture_refresh_token("logout.json")).await;

    let anonymous = router(&h).handle(event("logout.json")).await;
    assert_eq!(anonymous.status(), 401, "the fixture's placeholder token is not a token");
    assert_eq!(body_json(&anonymous)["error"]["code"], "INVALID_TOKEN");

    let response = router(&h).handle(with_bearer(event("logout.json"), &session.access_token)).await;
    assert_eq!(response.status(), 204);
    let sign_in = h.deps.sign_in();
    assert!(sign_in.refresh(&fixture_refresh_token("logout.json")).await.is_err(), "family revoked");
    assert!(sign_in.refresh(&session.refresh_token).await.is_ok(), "other sessions stay");
}

#[tokio::test]
async fn logout_all_without_a_body_is_accepted() {
    let h = Harness::in_memory();
    let session = h.signed_in("+14155550123").await;
    let mut req = with_bearer(event("logout.json"), &session.access_token);
    *req.body_mut() = Body::Empty;
    assert_eq!(router(&h).handle(req).await.status(), 204);
    let mut all = with_bearer(event("logout.json"), &session.access_token);
    *all.body_mut() = Body::Text(r#"{"all":true}"#.into());
    h.clock.advance(1);
    assert_eq!(router(&h).handle(all).await.status(), 204);
    assert!(h.deps.sign_in().refresh(&session.refresh_token).await.is_err());
}
