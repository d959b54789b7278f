//! Black-box: the catalogue and credits journey of docs/local-api.md over HTTP, on the in-memory store and on
//! DynamoDB Local — browse, search, page, favourite, check the balance, buy with a test-signed transaction,
//! get refunded by a test-signed notification.

use std::collections::HashSet;
use std::sync::Arc;

use common::Api;
use facemake::adapters::memory::MemoryStore;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::common;

const TEMPLATE_FIELDS: [&str; 8] =
    ["id", "name", "description", "category", "tags", "previewUrl", "costCredits", "isTrending"];

async fn catalogue_journey(api: &Api) {
    // Anonymous browsing: exactly the app's fields, nothing of the server-side generation settings.
    let (status, first) = api.get("/v1/templates", None).await;
    assert_eq!(status, 200, "{first}");
    let items = first["items"].as_array().unwrap();
    assert!(!items.is_empty());
    for t in items {
        let keys: HashSet<&str> = t.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, TEMPLATE_FIELDS.into_iter().collect(), "{t}");
    }
    let raw = first.to_string();
    for secret in ["prompt", "generation", "model", "provider", "gpt-image", "localEffect", "sortOrder", "active"] {
        assert!(!raw.contains(secret), "{secret} leaked: {raw}");
    }

    // Paging at every size returns the whole active catalogue once, in order.
    let whole = api.all_pages("/v1/templates?x=1", 50, None).await;
    assert!(whole.len() >= 12);
    assert!(whole.iter().all(|t| t["id"] != "vaporwave"), "the retired template is hidden");
    for limit in [1, 2, 5, 7] {
        let paged = api.all_pages("/v1/templates?x=1", limit, None).await;
        let ids: Vec<&Value> = paged.iter().map(|t| &t["id"]).collect();
        let expected: Vec<&Value> = whole.iter().map(|t| &t["id"]).collect();
        assert_eq!(ids, expected, "limit {limit}");
    }
    // Filters, also across pages.
    let portraits = api.all_pages("/v1/templates?category=portrait", 2, None).await;
    assert!(!portraits.is_empty() && portraits.iter().all(|t| t["category"] == "portrait"));
    let trending = api.all_pages("/v1/templates?trending=true", 2, None).await;
    assert!(!trending.is_empty() && trending.iter().all(|t| t["isTrending"] == true));
    let neon = api.all_pages("/v1/templates?q=NEON", 1, None).await;
    assert!(!neon.is_empty());
    for t in &neon {
        let tags: Vec<String> =
            t["tags"].as_array().unwrap().iter().map(|x| x.as_str().unwrap().to_lowercase()).collect();
        assert!(
            t["name"].as_str().unwrap().to_lowercase().contains("neon") || tags.iter().any(|x| x.contains("neon")),
            "{t}"
        );
    }
    let (_, none) = api.get("/v1/templates?q=zzzzzz", None).await;
    assert_eq!(none, json!({"items": [], "nextCursor": null}));

    // A tampered cursor, or one from another query, is a 400 in the envelope.
    let (_, page) = api.get("/v1/templates?limit=2", None).await;
    let cursor = page["nextCursor"].as_str().unwrap().to_owned();
    let tampered = format!("{}A{}", &cursor[..3], &cursor[4..]);
    for bad in [
        format!("/v1/templates?limit=2&cursor={tampered}"),
        format!("/v1/templates?limit=2&category=retro&cursor={cursor}"),
    ] {
        let (status, body) = api.get(&bad, None).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("VALIDATION_ERROR")),
            "{bad}"
        );
    }
    for bad in [
        "/v1/templates?limit=0",
        "/v1/templates?limit=51",
        "/v1/templates?trending=yes",
        "/v1/templates?category=Bad%20Cat",
    ] {
        let (status, body) = api.get(bad, None).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("VALIDATION_ERROR")),
            "{bad}"
        );
    }

    // One template, categories with counts, and the preview image itself.
    let (status, one) = api.get("/v1/templates/neon-noir", None).await;
    assert_eq!((status, one["name"].as_str()), (StatusCode::OK, Some("Neon Noir")));
    assert_eq!(api.get("/v1/templates/vaporwave", None).await.0, 404, "retired");
    assert_eq!(api.get("/v1/templates/no-such-style", None).await.0, 404);
    let (_, categories) = api.get("/v1/templates/categories", None).await;
    let counted: u64 = categories["items"].as_array().unwrap().iter().map(|c| c["count"].as_u64().unwrap()).sum();
    assert_eq!(counted as usize, whole.len());
    let preview = api.http.get(one["previewUrl"].as_str().unwrap()).send().await.unwrap();
    assert_eq!(preview.status(), 200);
    assert_eq!(preview.headers()["content-type"], "image/jpeg");
    assert!(preview.bytes().await.unwrap().starts_with(&[0xFF, 0xD8]), "a JPEG");

    // Favourites: idempotent, shown on items for the signed-in caller, newest first.
    let token = api.sign_in("+14155550177").await;
    assert_eq!(api.call(Method::PUT, "/v1/templates/neon-noir/favorite", None, None).await.0, 401);
    for id in ["neon-noir", "pixel-art", "neon-noir"] {
        let (status, _) = api.call(Method::PUT, &format!("/v1/templates/{id}/favorite"), None, Some(&token)).await;
        assert_eq!(status, 204);
    }
    assert_eq!(api.call(Method::PUT, "/v1/templates/vaporwave/favorite", None, Some(&token)).await.0, 404);
    let (_, favorites) = api.get("/v1/me/favorites", Some(&token)).await;
    let ids: HashSet<&str> = favorites["items"].as_array().unwrap().iter().map(|t| t["id"].as_str().unwrap()).collect();
    assert_eq!(ids, HashSet::from(["neon-noir", "pixel-art"]));
    let (_, listed) = api.get("/v1/templates?q=neon", Some(&token)).await;
    let noir = listed["items"].as_array().unwrap().iter().find(|t| t["id"] == "neon-noir").unwrap();
    assert_eq!(noir["isFavorite"], true);
    assert!(listed["items"].as_array().unwrap().iter().all(|t| t.get("isFavorite").is_some()));
    for _ in 0..2 {
        let (status, _) = api.call(Method::DELETE, "/v1/templates/neon-noir/favorite", None, Some(&token)).await;
        assert_eq!(status, 204);
    }
    let paged = api.all_pages("/v1/me/favorites?x=1", 1, Some(&token)).await;
    assert_eq!(paged.iter().map(|t| t["id"].as_str().unwrap()).collect::<Vec<_>>(), ["pixel-art"]);
    let (status, _) = api.get("/v1/templates", Some("not-a-token")).await;
    assert_eq!(status, 401, "a bad token is refused, not ignored");
}

async fn credits_journey(api: &Api) {
    let token = api.sign_in("+14155550178").await;
    let (status, credits) = api.get("/v1/credits", Some(&token)).await;
    assert_eq!(status, 200, "{credits}");
    assert_eq!(credits["balance"], 3);
    assert_eq!(credits["products"][0], json!({"productId": "app.facemake.credits.10", "credits": 10}));
    let account_token = credits["appAccountToken"].as_str().unwrap().to_owned();

    // StoreKit (the local stand-in) signs a purchase made for this account; posting it credits once.
    let (_, signed) = api
        .post(
            "/_local/app-store/transactions",
            json!({"productId": "app.facemake.credits.50", "appAccountToken": account_token}),
            None,
        )
        .await;
    let purchase = json!({"signedTransaction": signed["signedTransaction"]});
    let (status, bought) = api.post("/v1/credits/purchases", purchase.clone(), Some(&token)).await;
    assert_eq!(status, 200, "{bought}");
    assert_eq!(bought["creditsAdded"], 50);
    assert_eq!(bought["balance"], 53);
    assert_eq!(bought["transactionId"], signed["transactionId"]);
    let (status, again) = api.post("/v1/credits/purchases", purchase.clone(), Some(&token)).await;
    assert_eq!((status, &again), (StatusCode::OK, &bought), "a repeat returns the original result");
    let other = api.sign_in("+14155550179").await;
    let (status, body) = api.post("/v1/credits/purchases", purchase, Some(&other)).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("CONFLICT")));
    let (status, body) = api.post("/v1/credits/purchases", json!({"signedTransaction": "a.b.c"}), Some(&token)).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("INVALID_PURCHASE")));

    // Apple refunds it: the notification is verified and applied once, however often it is delivered.
    let (_, notification) = api
        .post(
            "/_local/app-store/notifications",
            json!({"notificationType": "REFUND", "transactionId": signed["transactionId"]}),
            None,
        )
        .await;
    for _ in 0..2 {
        let (status, _) =
            api.post("/v1/webhooks/app-store", json!({"signedPayload": notification["signedPayload"]}), None).await;
        assert_eq!(status, 200);
    }
    let (status, body) = api.post("/v1/webhooks/app-store", json!({"signedPayload": "x.y.z"}), None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("VALIDATION_ERROR")));
    let (_, credits) = api.get("/v1/credits", Some(&token)).await;
    assert_eq!(credits["balance"], 3);

    // The history, newest first, across pages, sums to the balance.
    let history = api.all_pages("/v1/credits/history?x=1", 1, Some(&token)).await;
    let kinds: Vec<&str> = history.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["refund", "purchase", "grant"]);
    assert_eq!(history.iter().map(|e| e["amount"].as_i64().unwrap()).sum::<i64>(), 3);
    assert_eq!(history[0]["balanceAfter"], 3);
    assert_eq!(history[1]["reference"], signed["transactionId"]);
    let (status, _) = api.get("/v1/credits/history", None).await;
    assert_eq!(status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalogue_journey_on_the_in_memory_store() {
    catalogue_journey(&Api::start(Arc::new(MemoryStore::new())).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalogue_journey_on_dynamodb_local() {
    catalogue_journey(&Api::start(Arc::new(testkit::dynamodb_store().await)).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credits_journey_on_the_in_memory_store() {
    credits_journey(&Api::start(Arc::new(MemoryStore::new())).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credits_journey_on_dynamodb_local() {
    credits_journey(&Api::start(Arc::new(testkit::dynamodb_store().await)).await).await;
}
