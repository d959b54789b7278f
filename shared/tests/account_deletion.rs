//! Account deletion on the in-memory store and on DynamoDB Local: afterwards no record and no object
//! mentions the user's id or phone number (the whole database is read back as text), the ledger lives on
//! only under an anonymous id, and a deletion interrupted half-way finishes when run again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use facemake::adapters::dynamodb::DynamoStore;
use facemake::adapters::memory::MemoryStore;
use facemake::domain::{object_keys, Funds, GenerationSource, LedgerKind, TemplateId, UploadId, UserId};
use facemake::ports::{
    JobRef, ObjectInfo, ObjectStore, PortError, PresignedUpload, PurchaseOutcome, RefundOutcome, VerifiedPurchase,
};
use facemake::services::auth::RefreshError;
use facemake::wiring::Store;
use testkit::Harness;

const PHONE: &str = "+14155550188";
const PHONE_DIGITS: &str = "4155550188";

/// Every record of a store as text.
#[async_trait]
trait Dump: Store {
    async fn dump_text(&self) -> String;
}

#[async_trait]
impl Dump for MemoryStore {
    async fn dump_text(&self) -> String {
        self.dump()
    }
}

#[async_trait]
impl Dump for DynamoStore {
    async fn dump_text(&self) -> String {
        self.dump().await.unwrap()
    }
}

fn photo() -> Vec<u8> {
    let mut bytes = Vec::new();
    image::RgbImage::from_pixel(16, 16, image::Rgb([9, 9, 9]))
        .write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Jpeg)
        .unwrap();
    bytes
}

/// A user with everything an account can have: two sessions (one logged out), a favourite, a purchase, a
/// character, a finished and an in-flight generation (one of them from the character), an upload. Returns the user and its refresh token.
async fn full_account(h: &Harness) -> (UserId, String) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../infra/catalogue/catalogue.yaml");
    facemake::services::catalogue::seed_catalogue(h.deps.store.as_ref(), &path).await.unwrap();
    let session = h.signed_in(PHONE).await;
    let other_device = h.signed_in(PHONE).await;
    h.deps
        .sign_in()
        .logout(&other_device.user.id, Some(&other_device.refresh_token), false, std::future::ready(Ok(false)))
        .await
        .unwrap();
    let user = session.user.id.clone();
    let store = &h.deps.store;
    store.add_favorite(&user, &TemplateId::parse("neon-noir").unwrap(), 1).await.unwrap();
    let purchase = VerifiedPurchase {
        transaction_id: format!("2000{}", facemake::domain::new_id()),
        original_transaction_id: "2000".into(),
        product_id: "credits10".into(),
        credits: 10,
        environment: "Sandbox".into(),
    };
    assert!(matches!(store.credit_purchase(&user, &purchase, 1).await.unwrap(), PurchaseOutcome::Credited { .. }));
    let generations = h.deps.generations(Arc::new(h.deps.catalogue_service()));
    let upload = UploadId::new();
    h.objects.put(&object_keys::upload(&user, &upload), photo(), "image/jpeg").await.unwrap();
    let template = TemplateId::parse("neon-noir").unwrap();
    let source = GenerationSource::Upload(upload.clone());
    let done = generations.start(&user, "a", &template, &source, std::future::ready(Ok(false))).await.unwrap();
    let job = JobRef { user_id: user.clone(), generation_id: done.generation.id.clone() };
    h.deps.worker().process(&job).await.unwrap();
    let name = facemake::domain::CharacterName::parse("Ada").unwrap();
    let character = h.deps.characters().create(&user, &name, &[upload], std::future::ready(Ok(false))).await.unwrap();
    let from_character = GenerationSource::Character(character.id);
    generations.start(&user, "b", &template, &from_character, std::future::ready(Ok(false))).await.unwrap();
    assert!(h.objects.keys().iter().any(|k| k.starts_with("outputs/")));
    assert!(h.objects.keys().iter().any(|k| k.starts_with("characters/")));
    let (_, stats) = h.deps.store.get_user_with_stats(&user).await.unwrap().unwrap();
    assert_eq!((stats.characters, stats.generations, stats.favorites), (1, 2, 1));
    (user, session.refresh_token)
}

async fn nothing_left(store: &dyn Dump, h: &Harness, user: &UserId) {
    let text = store.dump_text().await;
    for needle in [user.as_str(), PHONE, PHONE_DIGITS] {
        assert!(!text.contains(needle), "{needle} is still stored:\n{text}");
    }
    assert!(h.objects.keys().iter().all(|k| !k.contains(user.as_str())), "{:?}", h.objects.keys());
}

async fn deletion_leaves_nothing_behind<S: Dump + 'static>(store: Arc<S>) {
    let h = Harness::over(store.clone());
    let (user, refresh) = full_account(&h).await;
    let mut ledger_before = h.deps.store.ledger(&user, 100).await.unwrap();
    assert!(store.dump_text().await.contains(user.as_str()), "the check below would see the user");

    h.deps.account().delete(&user).await.unwrap();
    nothing_left(store.as_ref(), &h, &user).await;
    assert!(h.deps.store.is_deleted(&user).await.unwrap());

    // The ledger lives on under the anonymous id: every entry, plus the forfeit of what was left (3 + 10 - 2);
    // it sums to 0.
    let anon = user.anonymised();
    let mut ledger_after = h.deps.store.ledger(&anon, 100).await.unwrap();
    let forfeit = ledger_after.remove(0);
    assert_eq!((forfeit.kind, forfeit.amount, forfeit.balance_after), (LedgerKind::Adjustment, -11, 0));
    ledger_before.sort_by(|a, b| a.id.cmp(&b.id));
    ledger_after.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(ledger_after, ledger_before);
    assert_eq!(ledger_after.iter().map(|e| e.amount).sum::<i64>() + forfeit.amount, 0);

    // The refresh token is dead; signing in again makes a new, empty account, without a second starter grant
    // (the number's mark: tests/number_marks.rs).
    assert!(matches!(h.deps.sign_in().refresh(&refresh).await, Err(RefreshError::Invalid)));
    let again = h.signed_in(PHONE).await;
    assert!(again.is_new_user);
    assert_ne!(again.user.id, user);
    assert_eq!(again.user.credits, 0);

    // Running it again (the app retrying) changes nothing and still succeeds.
    h.deps.account().delete(&user).await.unwrap();
    assert_eq!(h.deps.store.get_user(&again.user.id).await.unwrap().unwrap().phone, PHONE);
}

async fn an_app_store_refund_after_deletion_applies_to_the_anonymous_ledger<S: Dump + 'static>(store: Arc<S>) {
    let h = Harness::over(store.clone());
    let (user, _) = full_account(&h).await;
    let txn = h.deps.store.ledger(&user, 100).await.unwrap();
    let purchase = txn.iter().find(|e| e.kind == LedgerKind::Purchase).unwrap().reference.clone();
    h.deps.account().delete(&user).await.unwrap();
    let outcome = h.deps.store.refund_purchase(&purchase, "n-1", 2).await.unwrap();
    let anon = user.anonymised();
    assert!(
        matches!(&outcome, RefundOutcome::Applied { user, amount: 0, shortfall: 10, .. } if *user == anon),
        "{outcome:?}"
    );
    // A new account cannot claim the deleted one's transaction either.
    let newcomer = h.signed_in("+14155550177").await.user.id;
    let repost = VerifiedPurchase {
        transaction_id: purchase,
        original_transaction_id: "2000".into(),
        product_id: "credits10".into(),
        credits: 10,
        environment: "Sandbox".into(),
    };
    assert_ne!(
        h.deps.store.credit_purchase(&newcomer, &repost, 3).await.unwrap(),
        PurchaseOutcome::Credited { credits_added: 10, debt_paid: 0, balance: 13 }
    );
    nothing_left(store.as_ref(), &h, &user).await;
}

/// A bucket whose prefix deletion fails once, as a timeout half-way through a deletion would.
struct FlakyBucket {
    inner: Arc<dyn ObjectStore>,
    failed: AtomicBool,
}

#[async_trait]
impl ObjectStore for FlakyBucket {
    async fn presign_upload(&self, k: &str, t: &str, l: u64, e: u64, n: i64) -> Result<PresignedUpload, PortError> {
        self.inner.presign_upload(k, t, l, e, n).await
    }
    async fn presign_download(&self, k: &str, e: u64, n: i64) -> Result<String, PortError> {
        self.inner.presign_download(k, e, n).await
    }
    async fn head(&self, k: &str) -> Result<Option<ObjectInfo>, PortError> {
        self.inner.head(k).await
    }
    async fn get(&self, k: &str, m: u64) -> Result<Option<Vec<u8>>, PortError> {
        self.inner.get(k, m).await
    }
    async fn put(&self, k: &str, b: Vec<u8>, t: &str) -> Result<(), PortError> {
        self.inner.put(k, b, t).await
    }
    async fn delete(&self, k: &[String]) -> Result<(), PortError> {
        self.inner.delete(k).await
    }
    async fn delete_prefix(&self, prefix: &str) -> Result<usize, PortError> {
        if !self.failed.swap(true, Ordering::SeqCst) {
            return Err(PortError::unavailable("images bucket", "timed out"));
        }
        self.inner.delete_prefix(prefix).await
    }
}

async fn an_interrupted_deletion_finishes_when_run_again<S: Dump + 'static>(store: Arc<S>) {
    let h = Harness::over(store.clone());
    let (user, _) = full_account(&h).await;
    let mut account = h.deps.account();
    account.objects = Arc::new(FlakyBucket { inner: h.objects.clone(), failed: AtomicBool::new(false) });
    assert!(account.delete(&user).await.is_err());
    // Half done: marked deleted, sessions gone, but the profile and the images are still there.
    assert!(h.deps.store.is_deleted(&user).await.unwrap());
    assert!(h.deps.store.get_user(&user).await.unwrap().is_some());
    assert!(h.objects.keys().iter().any(|k| k.contains(user.as_str())));
    account.delete(&user).await.unwrap();
    nothing_left(store.as_ref(), &h, &user).await;
}

async fn an_abandoned_deletion_is_finished_by_the_reconciler<S: Dump + 'static>(store: Arc<S>) {
    let h = Harness::over(store.clone());
    let (user, _) = full_account(&h).await;
    let mut account = h.deps.account();
    account.objects = Arc::new(FlakyBucket { inner: h.objects.clone(), failed: AtomicBool::new(false) });
    assert!(account.delete(&user).await.is_err());
    // The app never calls again. Signing in with the number meanwhile is refused, not a zombie session.
    let phone = facemake::domain::PhoneNumber::parse(PHONE, None).unwrap();
    h.plant_code(&phone, "424242").await;
    let code = facemake::domain::OtpCode::parse("424242").unwrap();
    let refused = h.deps.sign_in().verify(&phone, &code, None).await;
    assert!(matches!(refused, Err(facemake::services::auth::SignInError::AccountBeingDeleted)), "{refused:?}");
    assert_eq!(h.deps.store.pending_deletions(10).await.unwrap(), vec![user.clone()]);

    // The scheduled reconciler finishes it.
    assert_eq!(h.deps.account().finish_pending_deletions(10).await.unwrap(), 1);
    assert!(h.deps.store.pending_deletions(10).await.unwrap().is_empty());
    nothing_left(store.as_ref(), &h, &user).await;
    assert_eq!(h.deps.account().finish_pending_deletions(10).await.unwrap(), 0);
    assert!(h.signed_in(PHONE).await.is_new_user);
}

/// A deleted account that owed credits (an App Store refund of spent ones): the ledger it leaves writes the debt
/// off, so what the account owed is never dropped without an entry.
async fn a_deleted_accounts_debt_is_written_off_in_its_ledger<S: Dump + 'static>(store: Arc<S>) {
    let h = Harness::over(store.clone());
    let (user, _) = full_account(&h).await;
    let ledger = h.deps.store.ledger(&user, 100).await.unwrap();
    let purchase = ledger.iter().find(|e| e.kind == LedgerKind::Purchase).unwrap().reference.clone();
    let balance = h.deps.store.balance(&user).await.unwrap();
    h.deps.store.adjust(&user, -i64::try_from(balance).unwrap() + 1, "spent", 2).await.unwrap();
    h.deps.store.refund_purchase(&purchase, "n-debt", 2).await.unwrap();
    assert_eq!(h.deps.store.funds(&user).await.unwrap(), Funds { balance: 0, debt: 9 });
    h.deps.account().delete(&user).await.unwrap();
    let anon = user.anonymised();
    let written_off = h.deps.store.ledger(&anon, 1).await.unwrap().remove(0);
    assert_eq!(
        (written_off.kind, written_off.amount, written_off.debt_after, written_off.reference.as_str()),
        (LedgerKind::Debt, 0, Some(0), "account-deleted")
    );
    nothing_left(store.as_ref(), &h, &user).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_a_deleted_accounts_debt_is_written_off_in_its_ledger() {
    a_deleted_accounts_debt_is_written_off_in_its_ledger(Arc::new(MemoryStore::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_a_deleted_accounts_debt_is_written_off_in_its_ledger() {
    a_deleted_accounts_debt_is_written_off_in_its_ledger(Arc::new(testkit::dynamodb_store().await)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_deletion_leaves_nothing_behind() {
    deletion_leaves_nothing_behind(Arc::new(MemoryStore::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_deletion_leaves_nothing_behind() {
    deletion_leaves_nothing_behind(Arc::new(testkit::dynamodb_store().await)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_an_app_store_refund_after_deletion_applies_to_the_anonymous_ledger() {
    an_app_store_refund_after_deletion_applies_to_the_anonymous_ledger(Arc::new(MemoryStore::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_an_app_store_refund_after_deletion_applies_to_the_anonymous_ledger() {
    an_app_store_refund_after_deletion_applies_to_the_anonymous_ledger(Arc::new(testkit::dynamodb_store().await)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_an_interrupted_deletion_finishes_when_run_again() {
    an_interrupted_deletion_finishes_when_run_again(Arc::new(MemoryStore::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_an_interrupted_deletion_finishes_when_run_again() {
    an_interrupted_deletion_finishes_when_run_again(Arc::new(testkit::dynamodb_store().await)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_an_abandoned_deletion_is_finished_by_the_reconciler() {
    an_abandoned_deletion_is_finished_by_the_reconciler(Arc::new(MemoryStore::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_an_abandoned_deletion_is_finished_by_the_reconciler() {
    an_abandoned_deletion_is_finished_by_the_reconciler(Arc::new(testkit::dynamodb_store().await)).await;
}
