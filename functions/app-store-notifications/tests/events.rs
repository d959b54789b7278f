//! POST /v1/webhooks/app-store driven by its API Gateway event fixture.

use std::sync::Arc;

use appstore_test_chain::{notification, TestChain};
use lambda_http::Body;
use testkit::{body_json, credits_config, event, Harness, BUNDLE_ID};

#[tokio::test]
async fn verified_notifications_are_acknowledged_and_others_refused() {
    let chain = TestChain::generate().unwrap();
    let mut h = Harness::in_memory();
    h.deps.credits = credits_config(vec![chain.root_der().to_vec()]);
    let router = app_store_notifications::router(Arc::new(app_store_notifications::State::new(&h.deps).unwrap()));

    // The fixture as shipped carries a placeholder: refused, in the envelope, without echoing it.
    let response = router.handle(event("app-store-notification.json")).await;
    assert_eq!(response.status(), 400);
    assert_eq!(body_json(&response)["error"]["code"], "VALIDATION_ERROR");
    assert!(!body_json(&response).to_string().contains("REPLACE_WITH"));

    let signed =
        chain.sign(&notification("TEST", "b5a1a6a0-1111-4000-8000-000000000001", BUNDLE_ID, "Sandbox", None)).unwrap();
    let mut req = event("app-store-notification.json");
    *req.body_mut() = Body::Text(serde_json::json!({ "signedPayload": signed }).to_string());
    let response = router.handle(req).await;
    assert_eq!(response.status(), 200);
}
