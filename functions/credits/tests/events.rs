//! The credits routes driven by their API Gateway event fixtures.

use std::sync::Arc;

use appstore_test_chain::{TestChain, Transaction};
use lambda_http::Body;
use testkit::{body_json, credits_config, event, with_bearer, Harness, BUNDLE_ID, PRODUCT_10};

fn setup() -> (Harness, TestChain) {
    let chain = TestChain::generate().unwrap();
    let mut h = Harness::in_memory();
    h.deps.credits = credits_config(vec![chain.root_der().to_vec()]);
    (h, chain)
}

fn router(h: &Harness) -> facemake::http::Router {
    credits::router(Arc::new(credits::State::new(&h.deps).unwrap()))
}

#[tokio::test]
async fn balance_products_and_the_account_token() {
    let (h, _) = setup();
    let session = h.signed_in("+14155550123").await;
    let response = router(&h).handle(with_bearer(event("get-credits.json"), &session.access_token)).await;
    assert_eq!(response.status(), 200);
    let body = body_json(&response);
    assert_eq!(body["balance"], 3);
    assert_eq!(body["products"][0], serde_json::json!({"productId": PRODUCT_10, "credits": 10}));
    assert_eq!(body["appAccountToken"], session.user.id.app_account_token().to_string());
    assert_eq!(router(&h).handle(event("get-credits.json")).await.status(), 401, "placeholder token");
}

#[tokio::test]
async fn purchase_then_history() {
    let (h, chain) = setup();
    let session = h.signed_in("+14155550123").await;
    let signed =
        chain.sign(&Transaction::consumable("2000000000000001", PRODUCT_10, BUNDLE_ID, "Sandbox").payload()).unwrap();
    let mut req = with_bearer(event("purchase-credits.json"), &session.access_token);
    *req.body_mut() = Body::Text(serde_json::json!({ "signedTransaction": signed }).to_string());
    let response = router(&h).handle(req).await;
    assert_eq!(response.status(), 200, "{}", body_json(&response));
    assert_eq!(
        body_json(&response),
        serde_json::json!({"transactionId": "2000000000000001", "productId": PRODUCT_10, "creditsAdded": 10, "balance": 13})
    );

    // The fixture as shipped carries a placeholder, which is refused in the envelope.
    let placeholder = router(&h).handle(with_bearer(event("purchase-credits.json"), &session.access_token)).await;
    assert_eq!(placeholder.status(), 400);
    assert_eq!(body_json(&placeholder)["error"]["code"], "INVALID_PURCHASE");

    let history = router(&h).handle(with_bearer(event("credits-history.json"), &session.access_token)).await;
    assert_eq!(history.status(), 200);
    let body = body_json(&history);
    let kinds: Vec<&str> = body["items"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["purchase", "grant"]);
    assert_eq!(body["items"][0]["balanceAfter"], 13);
    assert_eq!(body["nextCursor"], serde_json::Value::Null);
}
