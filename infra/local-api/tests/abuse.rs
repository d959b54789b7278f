//! Black-box: what an attacker with one phone and a script tries, over HTTP, on the in-memory store and on
//! DynamoDB Local (issue 13). Deleting the account and signing up again earns no new starter grant and
//! resets no send limit; one address cannot use up a stranger's number; buy → spend → refund leaves a debt
//! that the next purchase pays.

use crate::common;

use std::sync::Arc;

use common::Api;
use facemake::adapters::memory::MemoryStore;
use facemake::adapters::providers::local::LocalRenderer;
use facemake::config::AuthPolicy;
use facemake::services::generation::Providers;
use facemake::wiring::Store;
use reqwest::{Method, StatusCode};
use serde_json::json;

/// The same local API, called from another loopback address (the local API takes the TCP peer as the source
/// IP, as API Gateway takes the client's).
fn from_address(api: &Api, ip: &str) -> Api {
    let http = reqwest::Client::builder().local_address(ip.parse::<std::net::IpAddr>().ok()).build().unwrap();
    Api { base: api.base.clone(), http, observed: api.observed.clone() }
}

async fn one_address_cannot_lock_a_number_out(store: Arc<dyn Store>, victim: &str) {
    let policy = AuthPolicy { resend_cooldown_secs: 0, ..testkit::policy() };
    let api = Api::start_with_policy(store, Providers::all(Arc::new(LocalRenderer)), policy).await;
    let attacker = from_address(&api, "127.0.0.66");
    for _ in 0..3 {
        let (status, body) = attacker.post("/v1/auth/send-code", json!({"phone": victim}), None).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    }
    let (status, body) = attacker.post("/v1/auth/send-code", json!({"phone": victim}), None).await;
    assert_eq!((status, body["error"]["code"].clone()), (StatusCode::TOO_MANY_REQUESTS, json!("RATE_LIMITED")));
    assert!(body["error"]["retryAfterSeconds"].as_u64().is_some_and(|s| s > 80_000), "until the day is over: {body}");
    // The owner, from their own address, still gets a code and signs in.
    let owner = from_address(&api, "127.0.0.77");
    let token = owner.sign_in(victim).await;
    assert_eq!(owner.get("/v1/me", Some(&token)).await.0, StatusCode::OK);
}

async fn a_spent_sms_budget_is_503_with_retry_after(store: Arc<dyn Store>) {
    let policy = AuthPolicy { sms_budget_per_hour: 1, ..testkit::policy() };
    let api = Api::start_with_policy(store, Providers::all(Arc::new(LocalRenderer)), policy).await;
    let (status, _) = api.post("/v1/auth/send-code", json!({"phone": "+14155550193"}), None).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let response = api
        .http
        .post(format!("{}/v1/auth/send-code", api.base))
        .json(&json!({"phone": "+14155550194"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let retry_after: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=3600).contains(&retry_after), "until the hour turns: {retry_after}");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "UPSTREAM_UNAVAILABLE");
    assert_eq!(body["error"]["retryAfterSeconds"], retry_after);
    // A premium-rate, shared-cost or toll-free number is refused before any budget is spent.
    let (status, body) = api.post("/v1/auth/send-code", json!({"phone": "+18007233456"}), None).await;
    assert_eq!((status, body["error"]["code"].clone()), (StatusCode::BAD_REQUEST, json!("VALIDATION_ERROR")));
    assert_eq!(body["error"]["details"][0]["field"], "phone");
}

async fn delete_me(api: &Api, token: &str) {
    let (status, body) = api.call(Method::DELETE, "/v1/me", None, Some(token)).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
}

async fn starter_grant_farming_earns_nothing(store: Arc<dyn Store>, phone: &str) {
    // No resend cooldown, so one test can sign the number in three times; the daily cap (5 here, from one
    // source: the per-source cap is another test's) still counts.
    let policy = AuthPolicy {
        resend_cooldown_secs: 0,
        max_codes_per_day: 5,
        max_codes_per_source_per_day: 5,
        ..testkit::policy()
    };
    let api = Api::start_with_policy(store, Providers::all(Arc::new(LocalRenderer)), policy).await;

    let first = api.sign_in(phone).await;
    assert_eq!(api.get("/v1/credits", Some(&first)).await.1["balance"], 3, "the first account's starter grant");
    delete_me(&api, &first).await;

    let second = api.sign_in(phone).await;
    let (status, credits) = api.get("/v1/credits", Some(&second)).await;
    assert_eq!((status, credits["balance"].clone()), (StatusCode::OK, json!(0)), "no second grant: {credits}");
    let (_, history) = api.get("/v1/credits/history", Some(&second)).await;
    assert_eq!(history["items"], json!([]), "and no grant entry in the ledger: {history}");
    assert!(api.all_pages("/v1/generations?x=1", 5, Some(&second)).await.is_empty(), "nothing of the old account");
    delete_me(&api, &second).await;

    // The daily cap runs across the deletions: codes 3, 4 and 5 go out, the sixth is refused.
    for _ in 0..3 {
        let (status, body) = api.post("/v1/auth/send-code", json!({"phone": phone}), None).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    }
    let (status, body) = api.post("/v1/auth/send-code", json!({"phone": phone}), None).await;
    assert_eq!((status, body["error"]["code"].clone()), (StatusCode::TOO_MANY_REQUESTS, json!("RATE_LIMITED")));
}

/// StoreKit's stand-in signs a purchase of `product` for the account; the app posts it.
async fn buy(api: &Api, token: &str, product: &str) -> (String, serde_json::Value) {
    let account_token = api.get("/v1/credits", Some(token)).await.1["appAccountToken"].clone();
    let (_, signed) = api
        .post("/_local/app-store/transactions", json!({"productId": product, "appAccountToken": account_token}), None)
        .await;
    let (status, bought) =
        api.post("/v1/credits/purchases", json!({"signedTransaction": signed["signedTransaction"]}), Some(token)).await;
    assert_eq!(status, StatusCode::OK, "{bought}");
    (signed["transactionId"].as_str().unwrap().to_owned(), bought)
}

async fn a_refund_of_spent_credits_is_paid_by_the_next_purchase(store: Arc<dyn Store>, phone: &str) {
    let api = Api::start(store.clone()).await;
    let token = api.sign_in(phone).await;
    let (refunded, _) = buy(&api, &token, "app.facemake.credits.10").await;
    // The user spends 12 of the 13 credits (on the store directly: a generation per credit is the app's way,
    // and other tests' business), then asks Apple for a refund of the purchase.
    let id = api.get("/v1/me", Some(&token)).await.1["id"].as_str().unwrap().to_owned();
    let user = facemake::domain::UserId::parse(&id).unwrap();
    store.adjust(&user, -12, "spent", 1).await.unwrap();
    let (_, notification) = api
        .post("/_local/app-store/notifications", json!({"notificationType": "REFUND", "transactionId": refunded}), None)
        .await;
    let (status, _) =
        api.post("/v1/webhooks/app-store", json!({"signedPayload": notification["signedPayload"]}), None).await;
    assert_eq!(status, StatusCode::OK);
    let (_, credits) = api.get("/v1/credits", Some(&token)).await;
    assert_eq!((credits["balance"].clone(), credits["debt"].clone()), (json!(0), json!(9)), "{credits}");
    let (_, history) = api.get("/v1/credits/history?limit=2", Some(&token)).await;
    let top: Vec<_> =
        history["items"].as_array().unwrap().iter().map(|e| (e["kind"].clone(), e["amount"].clone())).collect();
    assert_eq!(top, [(json!("debt"), json!(0)), (json!("refund"), json!(-1))], "{history}");
    assert_eq!(
        (history["items"][0]["debtAfter"].clone(), history["items"][1]["shortfall"].clone()),
        (json!(9), json!(9))
    );

    // The next purchase pays the 9 owed first: 10 bought, 1 to spend. Posted again, it pays nothing more.
    let (_, bought) = buy(&api, &token, "app.facemake.credits.10").await;
    assert_eq!(
        (bought["creditsAdded"].clone(), bought["debtPaid"].clone(), bought["balance"].clone()),
        (json!(10), json!(9), json!(1))
    );
    let (_, credits) = api.get("/v1/credits", Some(&token)).await;
    assert_eq!((credits["balance"].clone(), credits.get("debt")), (json!(1), None), "nothing owed: {credits}");
    let history = api.all_pages("/v1/credits/history?x=1", 3, Some(&token)).await;
    assert_eq!(history.iter().map(|e| e["amount"].as_i64().unwrap()).sum::<i64>(), 1, "the ledger sums to the balance");
}

async fn a_repeated_refresh_is_a_retry_and_another_address_is_reuse(store: Arc<dyn Store>, phone: &str) {
    let api = Api::start(store).await;
    let (_, _) = api.post("/v1/auth/send-code", json!({"phone": phone}), None).await;
    let code = api.code_for(phone).await;
    let (_, session) = api.post("/v1/auth/verify-code", json!({"phone": phone, "code": code}), None).await;
    let old = json!({"refreshToken": session["refreshToken"]});
    let (status, next) = api.post("/v1/auth/refresh", old.clone(), None).await;
    assert_eq!(status, StatusCode::OK, "{next}");
    // The app did not see that answer and sends the request again: 409, retryable, and nothing revoked.
    let (status, body) = api.post("/v1/auth/refresh", old.clone(), None).await;
    assert_eq!((status, body["error"]["code"].clone()), (StatusCode::CONFLICT, json!("CONFLICT")), "{body}");
    let (status, newer) = api.post("/v1/auth/refresh", json!({"refreshToken": next["refreshToken"]}), None).await;
    assert_eq!(status, StatusCode::OK, "the family lives on: {newer}");
    // The spent token from another address: reuse, and the family is revoked.
    let thief = from_address(&api, "127.0.0.2");
    let spent = json!({"refreshToken": next["refreshToken"]});
    let (status, body) = thief.post("/v1/auth/refresh", spent, None).await;
    assert_eq!((status, body["error"]["code"].clone()), (StatusCode::UNAUTHORIZED, json!("INVALID_TOKEN")), "{body}");
    let (status, _) = api.post("/v1/auth/refresh", json!({"refreshToken": newer["refreshToken"]}), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "revoked with its family");
}

async fn the_cooldown_survives_the_deletion(store: Arc<dyn Store>, phone: &str) {
    let api = Api::start(store).await;
    let token = api.sign_in(phone).await;
    delete_me(&api, &token).await;
    let response =
        api.http.post(format!("{}/v1/auth/send-code", api.base)).json(&json!({"phone": phone})).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS, "the 60 s cooldown did not restart at zero");
    let retry_after: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after), "Retry-After {retry_after}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starter_grant_farming_earns_nothing_on_the_in_memory_store() {
    starter_grant_farming_earns_nothing(Arc::new(MemoryStore::new()), "+14155550190").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starter_grant_farming_earns_nothing_on_dynamodb_local() {
    starter_grant_farming_earns_nothing(Arc::new(testkit::dynamodb_store().await), "+14155550190").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cooldown_survives_the_deletion_on_the_in_memory_store() {
    the_cooldown_survives_the_deletion(Arc::new(MemoryStore::new()), "+14155550191").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cooldown_survives_the_deletion_on_dynamodb_local() {
    the_cooldown_survives_the_deletion(Arc::new(testkit::dynamodb_store().await), "+14155550191").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_lock_a_number_out_on_the_in_memory_store() {
    one_address_cannot_lock_a_number_out(Arc::new(MemoryStore::new()), "+14155550192").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_lock_a_number_out_on_dynamodb_local() {
    one_address_cannot_lock_a_number_out(Arc::new(testkit::dynamodb_store().await), "+14155550192").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_sms_budget_is_503_with_retry_after_on_the_in_memory_store() {
    a_spent_sms_budget_is_503_with_retry_after(Arc::new(MemoryStore::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_sms_budget_is_503_with_retry_after_on_dynamodb_local() {
    a_spent_sms_budget_is_503_with_retry_after(Arc::new(testkit::dynamodb_store().await)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refund_of_spent_credits_is_paid_by_the_next_purchase_on_the_in_memory_store() {
    a_refund_of_spent_credits_is_paid_by_the_next_purchase(Arc::new(MemoryStore::new()), "+14155550193").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refund_of_spent_credits_is_paid_by_the_next_purchase_on_dynamodb_local() {
    a_refund_of_spent_credits_is_paid_by_the_next_purchase(Arc::new(testkit::dynamodb_store().await), "+14155550193")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_refresh_is_a_retry_and_another_address_is_reuse_on_the_in_memory_store() {
    a_repeated_refresh_is_a_retry_and_another_address_is_reuse(Arc::new(MemoryStore::new()), "+14155550194").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_refresh_is_a_retry_and_another_address_is_reuse_on_dynamodb_local() {
    let store = Arc::new(testkit::dynamodb_store().await);
    a_repeated_refresh_is_a_retry_and_another_address_is_reuse(store, "+14155550194").await;
}
