//! The catalogue routes driven by their API Gateway event fixtures, and the container cache.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use facemake::adapters::memory::MemoryStore;
use facemake::domain::{Category, Template, TemplateId};
use facemake::ports::{CatalogueStore, PortError};
use testkit::{body_json, event, with_bearer, Harness};

/// Loads the shipped seed catalogue into the harness's store.
async fn seeded() -> Harness {
    let h = Harness::in_memory();
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../infra/catalogue/catalogue.yaml");
    facemake::services::catalogue::seed_catalogue(h.deps.store.as_ref(), &file).await.unwrap();
    h
}

fn router(h: &Harness) -> facemake::http::Router {
    templates::router(Arc::new(templates::State::new(&h.deps)))
}

#[tokio::test]
async fn list_templates_filters_by_category_and_pages() {
    let h = seeded().await;
    let response = router(&h).handle(event("list-templates.json")).await;
    assert_eq!(response.status(), 200);
    let body = body_json(&response);
    let items = body["items"].as_array().unwrap();
    assert!(!items.is_empty() && items.len() <= 5);
    assert!(items.iter().all(|t| t["category"] == "portrait"));
    assert!(items.iter().all(|t| t.get("isFavorite").is_none()), "anonymous: no isFavorite");
    assert!(items[0]["previewUrl"].as_str().unwrap().starts_with("https://previews.test/previews/"));
    assert!(!body.to_string().contains("prompt"));
}

#[tokio::test]
async fn search_templates_matches_name_or_tag_and_trending() {
    let h = seeded().await;
    let response = router(&h).handle(event("search-templates.json")).await;
    assert_eq!(response.status(), 200);
    let items = body_json(&response)["items"].as_array().unwrap().clone();
    assert!(!items.is_empty());
    assert!(items.iter().all(|t| t["isTrending"] == true));
}

#[tokio::test]
async fn get_template_and_categories() {
    let h = seeded().await;
    let one = router(&h).handle(event("get-template.json")).await;
    assert_eq!(one.status(), 200);
    assert_eq!(body_json(&one)["id"], "neon-noir");
    let categories = router(&h).handle(event("template-categories.json")).await;
    let items = body_json(&categories)["items"].as_array().unwrap().clone();
    assert!(items.len() >= 4);
    assert!(items.iter().all(|c| c["count"].as_u64().unwrap() > 0 && c["name"].is_string()));
}

#[tokio::test]
async fn favourites_round_trip() {
    let h = seeded().await;
    let session = h.signed_in("+14155550123").await;
    let token = session.access_token.as_str();
    let r = router(&h);
    assert_eq!(r.handle(event("favorite-template.json")).await.status(), 401, "the fixture's placeholder token");
    assert_eq!(r.handle(with_bearer(event("favorite-template.json"), token)).await.status(), 204);
    let listed = r.handle(with_bearer(event("list-favorites.json"), token)).await;
    let items = body_json(&listed)["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 1);
    assert_eq!((items[0]["id"].as_str(), items[0]["isFavorite"].as_bool()), (Some("neon-noir"), Some(true)));
    assert_eq!(r.handle(with_bearer(event("unfavorite-template.json"), token)).await.status(), 204);
    let listed = r.handle(with_bearer(event("list-favorites.json"), token)).await;
    assert_eq!(body_json(&listed)["items"], serde_json::json!([]));
}

/// A catalogue store that counts reads and can be made to fail.
struct Counting {
    inner: MemoryStore,
    loads: AtomicUsize,
    fail: std::sync::atomic::AtomicBool,
}

#[async_trait]
impl CatalogueStore for Counting {
    async fn load_catalogue(&self) -> Result<(Vec<Category>, Vec<Template>), PortError> {
        self.loads.fetch_add(1, Ordering::SeqCst);
        if self.fail.load(Ordering::SeqCst) {
            return Err(PortError::unavailable("catalogue", "down"));
        }
        self.inner.load_catalogue().await
    }
    async fn put_category(&self, c: &Category) -> Result<(), PortError> {
        self.inner.put_category(c).await
    }
    async fn put_template(&self, t: &Template) -> Result<(), PortError> {
        self.inner.put_template(t).await
    }
    async fn set_template_active(&self, id: &TemplateId, active: bool) -> Result<bool, PortError> {
        self.inner.set_template_active(id, active).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn warm_requests_are_served_from_the_container_cache() {
    let h = seeded().await;
    let (_, templates) = h.deps.store.load_catalogue().await.unwrap();
    let counting = Arc::new(Counting { inner: MemoryStore::new(), loads: AtomicUsize::new(0), fail: false.into() });
    for t in &templates {
        counting.put_template(t).await.unwrap();
    }
    let service = Arc::new(facemake::services::catalogue::CatalogueService::new(
        counting.clone(),
        h.deps.store.clone(),
        h.clock.clone(),
        60,
    ));
    // Many concurrent cold requests: one load.
    let snapshots = concurrent_sizes(&service, 20).await;
    assert!(snapshots.iter().all(|n| *n == snapshots[0]));
    assert_eq!(counting.loads.load(Ordering::SeqCst), 1);
    for _ in 0..50 {
        service.snapshot().await.unwrap();
    }
    assert_eq!(counting.loads.load(Ordering::SeqCst), 1, "warm requests make no store call");

    // A retired template disappears once the TTL has passed.
    let neon = TemplateId::parse("neon-noir").unwrap();
    counting.set_template_active(&neon, false).await.unwrap();
    h.clock.advance(59);
    assert!(service.snapshot().await.unwrap().get(&neon).is_some(), "still cached");
    h.clock.advance(1);
    assert!(service.snapshot().await.unwrap().get(&neon).is_none(), "refreshed after the TTL");
    assert_eq!(counting.loads.load(Ordering::SeqCst), 2);

    // The store failing after that: the previous snapshot keeps being served.
    counting.fail.store(true, Ordering::SeqCst);
    h.clock.advance(61);
    assert!(service.snapshot().await.is_ok());
    assert_eq!(counting.loads.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_cold_container_with_the_store_down_answers_503() {
    let h = Harness::in_memory();
    let counting = Arc::new(Counting { inner: MemoryStore::new(), loads: AtomicUsize::new(0), fail: true.into() });
    let service =
        facemake::services::catalogue::CatalogueService::new(counting, h.deps.store.clone(), h.clock.clone(), 60);
    assert!(matches!(service.snapshot().await, Err(PortError::Unavailable { .. })));
}

async fn concurrent_sizes(service: &Arc<facemake::services::catalogue::CatalogueService>, n: usize) -> Vec<usize> {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let service = service.clone();
            tokio::spawn(
                async move { service.snapshot().await.unwrap().list(&Default::default(), None, 100).items.len() },
            )
        })
        .collect();
    let mut sizes = Vec::new();
    for t in tasks {
        sizes.push(t.await.unwrap());
    }
    sizes
}
