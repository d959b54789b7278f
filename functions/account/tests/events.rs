//! GET/PATCH /v1/me driven by their API Gateway event fixtures.

use std::sync::Arc;

use lambda_http::Body;
use testkit::{body_json, event, with_bearer, Harness};

fn router(h: &Harness) -> facemake::http::Router {
    account::router(Arc::new(account::State::new(&h.deps)))
}

#[tokio::test]
async fn get_me_returns_the_masked_user() {
    let h = Harness::in_memory();
    let session = h.signed_in("+14155550123").await;
    let response = router(&h).handle(with_bearer(event("get-me.json"), &session.access_token)).await;
    assert_eq!(response.status(), 200);
    let body = body_json(&response);
    assert_eq!(body["id"], session.user.id.to_string());
    assert_eq!(body["phone"], "+1••••••0123");
    assert_eq!(body["credits"], 3);
    assert!(body["createdAt"].as_str().unwrap().ends_with('Z'));
}

#[tokio::test]
async fn patch_me_sets_the_display_name_and_only_that() {
    let h = Harness::in_memory();
    let session = h.signed_in("+14155550123").await;
    let response = router(&h).handle(with_bearer(event("patch-me.json"), &session.access_token)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(body_json(&response)["displayName"], "Ada");

    let patch = |body: &str| {
        let mut req = with_bearer(event("patch-me.json"), &session.access_token);
        *req.body_mut() = Body::Text(body.to_owned());
        req
    };
    let credits = router(&h).handle(patch(r#"{"credits": 1000}"#)).await;
    assert_eq!(
        (credits.status().as_u16(), body_json(&credits)["error"]["code"].as_str()),
        (400, Some("VALIDATION_ERROR"))
    );
    let too_long = router(&h).handle(patch(&format!(r#"{{"displayName":"{}"}}"#, "x".repeat(51)))).await;
    assert_eq!(body_json(&too_long)["error"]["details"][0]["field"], "displayName");
    let unchanged = router(&h).handle(patch("{}")).await;
    assert_eq!(body_json(&unchanged)["displayName"], "Ada", "an absent field is left alone");
    let cleared = router(&h).handle(patch(r#"{"displayName": null}"#)).await;
    assert_eq!(body_json(&cleared)["displayName"], serde_json::Value::Null);
    // Both fields in one request, one write; a bad one of them writes neither.
    let both = router(&h).handle(patch(r#"{"displayName": "Grace", "shareConsumptionData": true}"#)).await;
    let both = body_json(&both);
    assert_eq!((both["displayName"].as_str(), both["shareConsumptionData"].as_bool()), (Some("Grace"), Some(true)));
    for body in [
        r#"{"displayName": "Eve", "shareConsumptionData": null}"#,
        r#"{"displayName": "", "shareConsumptionData": false}"#,
    ] {
        let refused = router(&h).handle(patch(body)).await;
        assert_eq!(
            (refused.status().as_u16(), body_json(&refused)["error"]["code"].as_str()),
            (400, Some("VALIDATION_ERROR")),
            "{body}"
        );
    }
    let kept = body_json(&router(&h).handle(patch("{}")).await);
    assert_eq!((kept["displayName"].as_str(), kept["shareConsumptionData"].as_bool()), (Some("Grace"), Some(true)));
    let back = router(&h).handle(patch(r#"{"displayName": null, "shareConsumptionData": false}"#)).await;
    assert_eq!(body_json(&back)["shareConsumptionData"], false);
    // An array is not a PATCH of nothing (serde would read it as a struct by position).
    for body in ["[]", r#"["Eve"]"#, "null", "\"Eve\""] {
        let refused = router(&h).handle(patch(body)).await;
        let error = &body_json(&refused)["error"];
        assert_eq!((refused.status().as_u16(), error["code"].as_str()), (400, Some("VALIDATION_ERROR")), "{body}");
        assert_eq!(error["details"][0]["field"], "body", "{body}");
    }
    let me = router(&h).handle(with_bearer(event("get-me.json"), &session.access_token)).await;
    assert_eq!(body_json(&me)["credits"], 3, "credits untouched");
}

#[tokio::test]
async fn protected_routes_refuse_missing_and_bad_tokens() {
    let h = Harness::in_memory();
    let session = h.signed_in("+14155550123").await;

    let mut anonymous = event("get-me.json");
    anonymous.headers_mut().remove("authorization");
    let response = router(&h).handle(anonymous).await;
    assert_eq!(
        (response.status().as_u16(), body_json(&response)["error"]["code"].as_str()),
        (401, Some("UNAUTHORIZED"))
    );

    let bad = [
        "Bearer REPLACE_WITH_ACCESS_TOKEN".to_owned(),
        format!("Basic {}", session.access_token),
        format!("Bearer {}", session.refresh_token),
        format!("Bearer {}x", session.access_token),
        "Bearer".to_owned(),
    ];
    for header in bad {
        let mut req = event("get-me.json");
        req.headers_mut().insert("authorization", header.parse().unwrap());
        let response = router(&h).handle(req).await;
        assert_eq!(body_json(&response)["error"]["code"], "INVALID_TOKEN", "{header}");
    }
}

#[tokio::test]
async fn delete_me_erases_the_account_and_its_tokens_stop_working() {
    let h = Harness::in_memory();
    let session = h.signed_in("+14155550123").await;
    let token = &session.access_token;
    let response = router(&h).handle(with_bearer(event("delete-me.json"), token)).await;
    assert_eq!(response.status(), 204, "{}", body_json(&response));
    assert!(h.deps.store.get_user(&session.user.id).await.unwrap().is_none());

    // The access token has not expired, but it changes nothing any more and finds nothing.
    let patch = router(&h).handle(with_bearer(event("patch-me.json"), token)).await;
    assert_eq!(patch.status(), 401);
    assert_eq!(body_json(&patch)["error"]["message"], "This account was deleted.");
    assert_eq!(router(&h).handle(with_bearer(event("get-me.json"), token)).await.status(), 401);
    // Other functions' guards refuse writes too.
    let templates = templates_router(&h);
    let favorite = templates.handle(with_bearer(event("favorite-template.json"), token)).await;
    assert_eq!(favorite.status(), 401, "{}", body_json(&favorite));
    // Deleting again (a retry) answers 204 as well.
    assert_eq!(router(&h).handle(with_bearer(event("delete-me.json"), token)).await.status(), 204);
    assert_eq!(router(&h).handle(event("delete-me.json")).await.status(), 401, "placeholder token");
}

fn templates_router(h: &Harness) -> facemake::http::Router {
    templates::router(Arc::new(templates::State::new(&h.deps)))
}

#[tokio::test]
async fn a_deletion_under_way_answers_no_read_with_the_old_token() {
    use facemake::ports::Clock;
    let h = Harness::in_memory();
    let session = h.signed_in("+14155550124").await;
    let token = &session.access_token;
    assert_eq!(router(&h).handle(with_bearer(event("get-me.json"), token)).await.status(), 200);
    // The deletion has only placed its tombstone so far (it was interrupted): the profile, the balance and
    // the ledger are all still there.
    h.deps.store.mark_deleted(&session.user.id, h.clock.now()).await.unwrap();
    assert!(h.deps.store.get_user(&session.user.id).await.unwrap().is_some());
    let credits = credits::router(Arc::new(credits::State::new(&h.deps).unwrap()));
    for (router, fixture) in [
        (router(&h), "get-me.json"),
        (credits.clone(), "get-credits.json"),
        (credits, "credits-history.json"),
        (templates_router(&h), "list-favorites.json"),
    ] {
        let response = router.handle(with_bearer(event(fixture), token)).await;
        assert_eq!(response.status(), 401, "{fixture}: {}", body_json(&response));
        assert_eq!(body_json(&response)["error"]["message"], "This account was deleted.", "{fixture}");
    }
    // Writes that read before they write (the check runs beside those reads) are refused too, and change nothing.
    let balance_before = h.deps.store.balance(&session.user.id).await.unwrap();
    let credits = credits::router(Arc::new(credits::State::new(&h.deps).unwrap()));
    let verify = verify_code::router(Arc::new(verify_code::State::new(&h.deps)));
    for (router, fixture) in [(credits, "purchase-credits.json"), (verify, "logout.json")] {
        let response = router.handle(with_bearer(event(fixture), token)).await;
        assert_eq!(response.status(), 401, "{fixture}: {}", body_json(&response));
        assert_eq!(body_json(&response)["error"]["message"], "This account was deleted.", "{fixture}");
    }
    assert_eq!(h.deps.store.balance(&session.user.id).await.unwrap(), balance_before);
    // Reads of other accounts go on as before.
    let other = h.signed_in("+14155550125").await;
    assert_eq!(router(&h).handle(with_bearer(event("get-me.json"), &other.access_token)).await.status(), 200);
}

const DEVICE: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

#[tokio::test]
async fn devices_register_idempotently_move_between_users_and_unregister() {
    use facemake::ports::Clock;
    let h = Harness::in_memory();
    let (ada, bob) = (h.signed_in("+14155550123").await, h.signed_in("+14155550124").await);
    let devices = |user: &facemake::domain::UserId| {
        let (store, user, now) = (h.deps.store.clone(), user.clone(), h.clock.now());
        async move { store.devices(&user, 10, now).await.unwrap() }
    };
    for _ in 0..2 {
        let put = router(&h).handle(with_bearer(event("put-device.json"), &ada.access_token)).await;
        assert_eq!(put.status(), 204);
    }
    let mine = devices(&ada.user.id).await;
    assert_eq!(mine.len(), 1, "registered twice, one device");
    assert_eq!((mine[0].token.as_str(), mine[0].environment.as_str()), (DEVICE, "production"));
    // Bob signs in on the same phone: the token is his now, and Ada's unregistering leaves it alone.
    let put = router(&h).handle(with_bearer(event("put-device.json"), &bob.access_token)).await;
    assert_eq!(put.status(), 204);
    let delete = router(&h).handle(with_bearer(event("delete-device.json"), &ada.access_token)).await;
    assert_eq!(delete.status(), 204);
    assert!(devices(&ada.user.id).await.is_empty());
    assert_eq!(devices(&bob.user.id).await.len(), 1);
    let delete = router(&h).handle(with_bearer(event("delete-device.json"), &bob.access_token)).await;
    assert_eq!(delete.status(), 204);
    assert!(devices(&bob.user.id).await.is_empty());
    // Unregistering what is not registered is the same 204.
    let again = router(&h).handle(with_bearer(event("delete-device.json"), &bob.access_token)).await;
    assert_eq!(again.status(), 204);
}

#[tokio::test]
async fn bad_device_registrations_are_400_in_the_envelope_and_write_nothing() {
    use facemake::ports::Clock;
    let h = Harness::in_memory();
    let session = h.signed_in("+14155550123").await;
    let fixture =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../events/put-device.json")).unwrap();
    let request = |path_token: &str, body: Option<&str>| {
        // The fixture for another token (API Gateway routes `{token}` whatever it is).
        let text = fixture.replace(DEVICE, path_token);
        let mut req = with_bearer(lambda_http::request::from_str(&text).unwrap(), &session.access_token);
        if let Some(body) = body {
            *req.body_mut() = Body::Text(body.to_owned());
        }
        req
    };
    let cases = [
        ("not-hex", None, "token"),
        (&"ab".repeat(8)[..], None, "token"),
        (&"a".repeat(63)[..], None, "token"),
        (DEVICE, Some(r#"{"environment":"development"}"#), "environment"),
        (DEVICE, Some(r#"{"environment":"Production"}"#), "environment"),
    ];
    for (token, body, field) in cases {
        let response = router(&h).handle(request(token, body)).await;
        let json = body_json(&response);
        assert_eq!(response.status(), 400, "{token} {body:?}: {json}");
        assert_eq!(json["error"]["code"], "VALIDATION_ERROR");
        assert_eq!(json["error"]["details"][0]["field"], field, "{json}");
    }
    for body in [r#"{}"#, r#"{"environment":"sandbox","userId":"x"}"#, "not json", r#"{"environment":1}"#] {
        let response = router(&h).handle(request(DEVICE, Some(body))).await;
        assert_eq!(response.status(), 400, "{body}");
        assert!(body_json(&response)["error"]["code"].is_string());
    }
    assert!(h.deps.store.devices(&session.user.id, 10, h.clock.now()).await.unwrap().is_empty());
    // Without a token: 401.
    let anonymous = router(&h).handle(event("put-device.json")).await;
    assert_eq!(anonymous.status(), 401);
}

#[tokio::test]
async fn a_deleted_accounts_devices_go_with_it() {
    use facemake::ports::Clock;
    let h = Harness::in_memory();
    let session = h.signed_in("+14155550123").await;
    let put = router(&h).handle(with_bearer(event("put-device.json"), &session.access_token)).await;
    assert_eq!(put.status(), 204);
    let deleted = router(&h).handle(with_bearer(event("delete-me.json"), &session.access_token)).await;
    assert_eq!(deleted.status(), 204);
    assert!(h.deps.store.devices(&session.user.id, 10, h.clock.now()).await.unwrap().is_empty());
    let after = router(&h).handle(with_bearer(event("put-device.json"), &session.access_token)).await;
    assert_eq!(after.status(), 401, "a deleted account registers nothing");
}
