//! The admin commands on the in-memory store (the same ports the DynamoDB store passes the contract for).

use std::path::Path;
use std::sync::{Arc, Mutex};

use facemake::adapters::memory::MemoryStore;
use facemake::domain::{LedgerKind, TemplateId};
use facemake::ports::{CatalogueStore, CreditsStore, LedgerReader, SystemClock};
use facemake_admin::{adjust, describe_user, resolve_user, seed, set_active, Assets};
use testkit::Harness;

fn seed_file() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../catalogue/catalogue.yaml")
}

#[derive(Default)]
struct Uploads(Mutex<Vec<(String, usize, String)>>);

#[async_trait::async_trait]
impl Assets for Uploads {
    async fn put(&self, key: &str, bytes: Vec<u8>, content_type: &str) -> Result<(), String> {
        self.0.lock().unwrap().push((key.to_owned(), bytes.len(), content_type.to_owned()));
        Ok(())
    }
}

#[tokio::test]
async fn seed_uploads_previews_then_writes_the_catalogue_and_can_be_rerun() {
    let store = MemoryStore::new();
    let uploads = Uploads::default();
    let report = seed(&store, &seed_file(), Some(&uploads)).await.unwrap();
    let (categories, templates) = store.load_catalogue().await.unwrap();
    assert!(templates.len() >= 12 && categories.len() >= 4, "{report}");
    let uploaded = uploads.0.lock().unwrap().clone();
    assert_eq!(uploaded.len(), templates.len());
    assert!(uploaded.iter().all(|(key, len, ct)| key.starts_with("previews/") && *len > 1000 && ct == "image/jpeg"));
    // Re-running is an upsert, not a duplicate.
    seed(&store, &seed_file(), None).await.unwrap();
    assert_eq!(store.load_catalogue().await.unwrap().1.len(), templates.len());
}

#[tokio::test]
async fn a_bad_seed_file_writes_nothing() {
    let dir = std::env::temp_dir().join(format!("facemake-admin-{}", facemake::domain::new_id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("catalogue.yaml");
    std::fs::write(&file, "categories: []\ntemplates:\n  - id: Bad Id\n").unwrap();
    let store = MemoryStore::new();
    assert!(seed(&store, &file, None).await.is_err());
    assert!(store.load_catalogue().await.unwrap().1.is_empty());
}

#[tokio::test]
async fn deactivate_and_activate() {
    let store = MemoryStore::new();
    seed(&store, &seed_file(), None).await.unwrap();
    set_active(&store, "neon-noir", false).await.unwrap();
    let id = TemplateId::parse("neon-noir").unwrap();
    let find = |templates: Vec<facemake::domain::Template>| templates.into_iter().find(|t| t.id == id).unwrap();
    assert!(!find(store.load_catalogue().await.unwrap().1).active);
    set_active(&store, "neon-noir", true).await.unwrap();
    assert!(find(store.load_catalogue().await.unwrap().1).active);
    assert!(set_active(&store, "no-such-style", false).await.is_err());
    assert!(set_active(&store, "Not A Slug", false).await.is_err());
}

#[tokio::test]
async fn grant_and_take_with_a_reason_in_the_ledger() {
    let store = Arc::new(MemoryStore::new());
    let h = Harness::over(store.clone());
    let user = h.signed_in("+14155550190").await.user.id;
    let found = resolve_user(store.as_ref(), None, Some("+1 415 555 0190")).await.unwrap();
    assert_eq!(found, user);
    assert!(resolve_user(store.as_ref(), None, Some("+14155550191")).await.is_err());
    assert!(resolve_user(store.as_ref(), Some(user.as_str()), Some("+14155550190")).await.is_err());

    adjust(store.as_ref(), &user, 7, "support ticket 42", &SystemClock).await.unwrap();
    assert_eq!(store.balance(&user).await.unwrap(), 10);
    let err = adjust(store.as_ref(), &user, -11, "abuse", &SystemClock).await.unwrap_err();
    assert!(err.contains("below zero"), "{err}");
    adjust(store.as_ref(), &user, -10, "abuse", &SystemClock).await.unwrap();
    assert!(adjust(store.as_ref(), &user, 1, "   ", &SystemClock).await.is_err(), "a reason is required");
    let ledger = store.ledger(&user, 10).await.unwrap();
    assert_eq!(
        (ledger[0].kind, ledger[0].amount, ledger[0].reference.as_str()),
        (LedgerKind::Adjustment, -10, "admin: abuse")
    );
    assert_eq!(ledger[1].reference, "admin: support ticket 42");
    let described = describe_user(store.as_ref(), &user).await.unwrap();
    assert!(described.contains("balance      0") && described.contains("admin: abuse"), "{described}");
    assert!(!described.contains("4155550190"), "the number is masked: {described}");
}
