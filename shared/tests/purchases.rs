//! Purchases and App Store notifications through the credits service, with signed data made by a test chain of
//! Apple's shape (root → intermediate with the WWDR OID → leaf with the receipt-signing OID) that the service
//! is configured to trust — and with every way such data can be wrong.

use appstore_test_chain::{notification, ChainOptions, TestChain, Transaction};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use facemake::adapters::appstore::Rejection;
use facemake::domain::UserId;
use std::sync::Arc;

use facemake::ports::{ConsumptionReport, ConsumptionReporter, PortError, RefundOutcome, ReportOutcome};
use facemake::services::credits::{Consumption, Credits, Handled, NotificationError, PurchaseError};
use serde_json::json;
use testkit::{credits_config, Harness, BUNDLE_ID, PRODUCT_10, PRODUCT_50};

struct Fixture {
    h: Harness,
    chain: TestChain,
    credits: Credits,
    user: UserId,
}

async fn fixture() -> Fixture {
    fixture_with(|_| {}).await
}

async fn fixture_with(configure: impl FnOnce(&mut facemake::config::CreditsConfig)) -> Fixture {
    let chain = TestChain::generate().unwrap();
    let mut h = Harness::in_memory();
    h.deps.credits = credits_config(vec![chain.root_der().to_vec()]);
    configure(&mut h.deps.credits);
    let credits = h.deps.credits_service().unwrap();
    let user = h.signed_in("+14155550100").await.user.id;
    Fixture { h, chain, credits, user }
}

fn tx(id: &str, product: &str) -> Transaction {
    Transaction::consumable(id, product, BUNDLE_ID, "Sandbox")
}

impl Fixture {
    fn sign(&self, t: &Transaction) -> String {
        self.chain.sign(&t.payload()).unwrap()
    }

    async fn balance(&self) -> u64 {
        self.credits.funds(&self.user).await.unwrap().balance
    }

    fn notification(&self, kind: &str, uuid: &str, transaction_id: &str) -> String {
        let info = self.sign(&tx(transaction_id, PRODUCT_10));
        self.chain.sign(&notification(kind, uuid, BUNDLE_ID, "Sandbox", Some(&info))).unwrap()
    }
}

fn rejected(result: Result<facemake::services::credits::Purchased, PurchaseError>) -> Rejection {
    match result {
        Err(PurchaseError::Rejected(r)) => r,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[tokio::test]
async fn a_valid_purchase_is_credited_once() {
    let f = fixture().await;
    let starting = f.balance().await;
    let signed = f.sign(&tx("1000000000000001", PRODUCT_50));
    let p = f.credits.purchase(&f.user, &signed, std::future::ready(Ok(false))).await.unwrap();
    assert_eq!((p.credits_added, p.balance, p.new), (50, starting + 50, true));
    assert_eq!(p.transaction_id, "1000000000000001");
    let again = f.credits.purchase(&f.user, &signed, std::future::ready(Ok(false))).await.unwrap();
    assert_eq!((again.credits_added, again.balance, again.new), (50, starting + 50, false));
    assert_eq!(f.balance().await, starting + 50);
}

#[tokio::test]
async fn quantity_multiplies_the_credits() {
    let f = fixture().await;
    let mut t = tx("1000000000000002", PRODUCT_10);
    t.quantity = 3;
    assert_eq!(
        f.credits.purchase(&f.user, &f.sign(&t), std::future::ready(Ok(false))).await.unwrap().credits_added,
        30
    );
}

#[tokio::test]
async fn another_users_transaction_is_a_conflict() {
    let f = fixture().await;
    let signed = f.sign(&tx("1000000000000003", PRODUCT_10));
    f.credits.purchase(&f.user, &signed, std::future::ready(Ok(false))).await.unwrap();
    let other = f.h.signed_in("+14155550101").await.user.id;
    assert!(matches!(
        f.credits.purchase(&other, &signed, std::future::ready(Ok(false))).await,
        Err(PurchaseError::OtherUser)
    ));
}

#[tokio::test]
async fn a_forged_signature_is_refused() {
    let f = fixture().await;
    let signed = f.sign(&tx("1000000000000004", PRODUCT_10));
    // Change the payload (more credits, say) but keep the signature.
    let mut parts: Vec<String> = signed.split('.').map(str::to_owned).collect();
    let mut payload: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&parts[1]).unwrap()).unwrap();
    payload["quantity"] = json!(100);
    parts[1] = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&payload).unwrap());
    assert_eq!(
        rejected(f.credits.purchase(&f.user, &parts.join("."), std::future::ready(Ok(false))).await),
        Rejection::Signature
    );
    // A signature by another key over the same chain.
    let other = TestChain::generate().unwrap();
    let mut forged: Vec<String> =
        other.sign(&tx("1000000000000004", PRODUCT_10).payload()).unwrap().split('.').map(str::to_owned).collect();
    forged[0] = signed.split('.').next().unwrap().to_owned();
    assert_eq!(
        rejected(f.credits.purchase(&f.user, &forged.join("."), std::future::ready(Ok(false))).await),
        Rejection::Signature
    );
    assert_eq!(f.balance().await, 3, "nothing credited");
}

#[tokio::test]
async fn a_chain_to_an_untrusted_root_is_refused() {
    let f = fixture().await;
    let stranger = TestChain::generate().unwrap();
    let signed = stranger.sign(&tx("1000000000000005", PRODUCT_10).payload()).unwrap();
    assert_eq!(
        rejected(f.credits.purchase(&f.user, &signed, std::future::ready(Ok(false))).await),
        Rejection::Signature
    );
}

#[tokio::test]
async fn the_default_configuration_trusts_only_apple() {
    // The harness's default: Apple Root CA G3 only. A self-made chain, however well formed, is refused.
    let h = Harness::in_memory();
    let credits = h.deps.credits_service().unwrap();
    let user = h.signed_in("+14155550102").await.user.id;
    let chain = TestChain::generate().unwrap();
    let signed = chain.sign(&tx("1000000000000006", PRODUCT_10).payload()).unwrap();
    assert!(matches!(
        credits.purchase(&user, &signed, std::future::ready(Ok(false))).await,
        Err(PurchaseError::Rejected(Rejection::Signature))
    ));
}

#[tokio::test]
async fn a_chain_without_apples_oids_is_refused() {
    let f = fixture().await;
    let chain = TestChain::with_options(ChainOptions { without_apple_oids: true, ..Default::default() }).unwrap();
    let mut h = Harness::in_memory();
    h.deps.credits = credits_config(vec![chain.root_der().to_vec()]);
    let credits = h.deps.credits_service().unwrap();
    let signed = chain.sign(&tx("1000000000000007", PRODUCT_10).payload()).unwrap();
    assert!(matches!(
        credits.purchase(&f.user, &signed, std::future::ready(Ok(false))).await,
        Err(PurchaseError::Rejected(Rejection::Signature))
    ));
}

#[tokio::test]
async fn an_expired_leaf_is_refused() {
    let chain = TestChain::with_options(ChainOptions { leaf_expired: true, ..Default::default() }).unwrap();
    let mut h = Harness::in_memory();
    h.deps.credits = credits_config(vec![chain.root_der().to_vec()]);
    let credits = h.deps.credits_service().unwrap();
    let user = h.signed_in("+14155550103").await.user.id;
    let signed = chain.sign(&tx("1000000000000008", PRODUCT_10).payload()).unwrap();
    assert!(matches!(
        credits.purchase(&user, &signed, std::future::ready(Ok(false))).await,
        Err(PurchaseError::Rejected(Rejection::Signature))
    ));
}

#[tokio::test]
async fn a_missing_x5c_is_refused() {
    let f = fixture().await;
    let signed =
        f.chain.sign_with_header(&json!({"alg": "ES256"}), &tx("1000000000000009", PRODUCT_10).payload()).unwrap();
    assert_eq!(
        rejected(f.credits.purchase(&f.user, &signed, std::future::ready(Ok(false))).await),
        Rejection::Signature
    );
    // And an x5c of the wrong length, and an unsigned token.
    let root = STANDARD.encode(f.chain.root_der());
    let short =
        f.chain.sign_with_header(&json!({"alg": "ES256", "x5c": [root]}), &tx("1", PRODUCT_10).payload()).unwrap();
    assert_eq!(
        rejected(f.credits.purchase(&f.user, &short, std::future::ready(Ok(false))).await),
        Rejection::Signature
    );
    let none = f.chain.sign_with_header(&json!({"alg": "none"}), &tx("1", PRODUCT_10).payload()).unwrap();
    assert_eq!(rejected(f.credits.purchase(&f.user, &none, std::future::ready(Ok(false))).await), Rejection::Signature);
    for junk in ["", "a.b", "not a jws", "a.b.c.d"] {
        assert!(
            matches!(
                f.credits.purchase(&f.user, junk, std::future::ready(Ok(false))).await,
                Err(PurchaseError::Rejected(_))
            ),
            "{junk:?}"
        );
    }
}

#[tokio::test]
async fn another_apps_or_environments_transaction_is_refused() {
    let f = fixture().await;
    let other_app = Transaction::consumable("1000000000000010", PRODUCT_10, "com.example.other", "Sandbox");
    assert_eq!(
        rejected(f.credits.purchase(&f.user, &f.sign(&other_app), std::future::ready(Ok(false))).await),
        Rejection::WrongApp
    );
    let production = Transaction::consumable("1000000000000011", PRODUCT_10, BUNDLE_ID, "Production");
    assert_eq!(
        rejected(f.credits.purchase(&f.user, &f.sign(&production), std::future::ready(Ok(false))).await),
        Rejection::WrongEnvironment
    );
    let xcode = Transaction::consumable("1000000000000012", PRODUCT_10, BUNDLE_ID, "Xcode");
    assert_eq!(
        rejected(f.credits.purchase(&f.user, &f.sign(&xcode), std::future::ready(Ok(false))).await),
        Rejection::WrongEnvironment
    );
    assert_eq!(f.balance().await, 3);
}

#[tokio::test]
async fn unknown_and_non_consumable_products_are_refused() {
    let f = fixture().await;
    let unknown = tx("1000000000000013", "app.facemake.test.credits9999");
    assert!(matches!(
        f.credits.purchase(&f.user, &f.sign(&unknown), std::future::ready(Ok(false))).await,
        Err(PurchaseError::UnknownProduct)
    ));
    let mut subscription = tx("1000000000000014", PRODUCT_10);
    subscription.product_type = "Auto-Renewable Subscription".to_owned();
    assert!(matches!(
        f.credits.purchase(&f.user, &f.sign(&subscription), std::future::ready(Ok(false))).await,
        Err(PurchaseError::UnknownProduct)
    ));
    assert_eq!(f.balance().await, 3);
}

#[tokio::test]
async fn a_revoked_transaction_is_refused() {
    let f = fixture().await;
    let mut t = tx("1000000000000015", PRODUCT_10);
    t.revoked = true;
    assert!(matches!(
        f.credits.purchase(&f.user, &f.sign(&t), std::future::ready(Ok(false))).await,
        Err(PurchaseError::Revoked)
    ));
}

#[tokio::test]
async fn the_app_account_token_must_name_the_buyer() {
    let f = fixture().await;
    let mut mine = tx("1000000000000016", PRODUCT_10);
    mine.app_account_token = Some(f.user.app_account_token().to_string());
    assert!(f.credits.purchase(&f.user, &f.sign(&mine), std::future::ready(Ok(false))).await.is_ok());
    let mut theirs = tx("1000000000000017", PRODUCT_10);
    theirs.app_account_token = Some(UserId::new().app_account_token().to_string());
    assert!(matches!(
        f.credits.purchase(&f.user, &f.sign(&theirs), std::future::ready(Ok(false))).await,
        Err(PurchaseError::AccountMismatch)
    ));
    // Lenient (the default): a transaction without a token is accepted.
    assert!(f
        .credits
        .purchase(&f.user, &f.sign(&tx("1000000000000018", PRODUCT_10)), std::future::ready(Ok(false)))
        .await
        .is_ok());
}

#[tokio::test]
async fn strict_mode_requires_the_app_account_token() {
    let f = fixture_with(|c| c.app_store.require_account_token = true).await;
    let bare = tx("1000000000000019", PRODUCT_10);
    assert!(matches!(
        f.credits.purchase(&f.user, &f.sign(&bare), std::future::ready(Ok(false))).await,
        Err(PurchaseError::AccountTokenRequired)
    ));
    let mut mine = tx("1000000000000020", PRODUCT_10);
    mine.app_account_token = Some(f.user.app_account_token().to_string().to_uppercase());
    assert!(
        f.credits.purchase(&f.user, &f.sign(&mine), std::future::ready(Ok(false))).await.is_ok(),
        "UUIDs compare by value, not by case"
    );
}

#[tokio::test]
async fn a_refund_notification_takes_the_credits_back_once() {
    let f = fixture().await;
    f.credits
        .purchase(&f.user, &f.sign(&tx("1000000000000021", PRODUCT_10)), std::future::ready(Ok(false)))
        .await
        .unwrap();
    assert_eq!(f.balance().await, 13);
    let refund = f.notification("REFUND", "6b0ef0d4-0000-4000-8000-000000000001", "1000000000000021");
    match f.credits.notification(&refund).await.unwrap() {
        Handled::Refund(RefundOutcome::Applied { amount: -10, shortfall: 0, balance: 3, .. }) => {}
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(f.credits.notification(&refund).await.unwrap(), Handled::Duplicate);
    assert_eq!(f.balance().await, 3);
    let reversed = f.notification("REFUND_REVERSED", "6b0ef0d4-0000-4000-8000-000000000002", "1000000000000021");
    assert!(matches!(
        f.credits.notification(&reversed).await.unwrap(),
        Handled::RefundReversed(RefundOutcome::Applied { amount: 10, .. })
    ));
    assert_eq!(f.balance().await, 13);
}

/// Send Consumption Information as the service calls it: recorded, or failing as an unreachable Apple.
#[derive(Default)]
struct Reports {
    sent: std::sync::Mutex<Vec<ConsumptionReport>>,
    unreachable: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl ConsumptionReporter for Reports {
    async fn send(&self, report: &ConsumptionReport) -> Result<ReportOutcome, PortError> {
        if self.unreachable.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(PortError::unavailable("app store api", "connection refused"));
        }
        self.sent.lock().unwrap().push(report.clone());
        Ok(ReportOutcome::Sent)
    }
}

/// A fixture whose user bought 10 credits (13 in all) and spent `spent` of them.
async fn consumption_fixture(spent: i64) -> (Fixture, Arc<Reports>) {
    let mut f = fixture().await;
    let reports = Arc::new(Reports::default());
    f.credits.reporter = reports.clone();
    f.credits
        .purchase(&f.user, &f.sign(&tx("1000000000000031", PRODUCT_10)), std::future::ready(Ok(false)))
        .await
        .unwrap();
    if spent > 0 {
        f.h.deps.store.adjust(&f.user, -spent, "spent", 0).await.unwrap();
    }
    (f, reports)
}

fn consumption(outcome: Handled) -> Consumption {
    match outcome {
        Handled::Consumption(c) => c,
        other => panic!("not a consumption answer: {other:?}"),
    }
}

#[tokio::test]
async fn a_consumption_request_is_not_answered_without_the_users_consent() {
    let (f, reports) = consumption_fixture(5).await;
    let request = f.notification("CONSUMPTION_REQUEST", "c-1", "1000000000000031");
    assert_eq!(consumption(f.credits.notification(&request).await.unwrap()), Consumption::NoConsent);
    assert!(reports.sent.lock().unwrap().is_empty(), "Apple asks that nothing is sent without consent");
}

#[tokio::test]
async fn a_consumption_request_is_answered_with_what_the_ledger_knows() {
    // 13 credits, 10 of them bought; 5 spent leaves 8: a refund now could take back 8 of the 10, so 2 are
    // used: 20 % (20000 thousandths). The starter grant's 3 count as spent first, as they do for a refund.
    let (f, reports) = consumption_fixture(5).await;
    f.h.deps.store.set_consumption_consent(&f.user, true).await.unwrap();
    let request = f.notification("CONSUMPTION_REQUEST", "c-2", "1000000000000031");
    let Consumption::Reported(report, ReportOutcome::Sent) =
        consumption(f.credits.notification(&request).await.unwrap())
    else {
        panic!("not reported")
    };
    assert_eq!(
        (report.transaction_id.as_str(), report.delivered, report.consumption_milli),
        ("1000000000000031", true, 20_000)
    );
    assert!(report.sample_content_provided, "the starter grant is free credits to try the app with");
    // 6 more spent leaves 2: 8 of the 10 are used, 80 % (80000 thousandths).
    f.h.deps.store.adjust(&f.user, -6, "spent", 0).await.unwrap();
    let again = f.notification("CONSUMPTION_REQUEST", "c-3", "1000000000000031");
    f.credits.notification(&again).await.unwrap();
    assert_eq!(reports.sent.lock().unwrap().last().unwrap().consumption_milli, 80_000);
    // A transaction this backend never credited is not answered.
    let foreign = f.notification("CONSUMPTION_REQUEST", "c-4", "1000000000000099");
    assert_eq!(consumption(f.credits.notification(&foreign).await.unwrap()), Consumption::NotOurs);
    assert_eq!(reports.sent.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn an_unreachable_apple_fails_the_notification_so_apple_delivers_it_again() {
    let (f, reports) = consumption_fixture(0).await;
    f.h.deps.store.set_consumption_consent(&f.user, true).await.unwrap();
    reports.unreachable.store(true, std::sync::atomic::Ordering::SeqCst);
    let request = f.notification("CONSUMPTION_REQUEST", "c-5", "1000000000000031");
    assert!(matches!(
        f.credits.notification(&request).await,
        Err(NotificationError::Port(PortError::Unavailable { .. }))
    ));
    // Not recorded as handled: the redelivery answers.
    reports.unreachable.store(false, std::sync::atomic::Ordering::SeqCst);
    assert!(matches!(
        consumption(f.credits.notification(&request).await.unwrap()),
        Consumption::Reported(_, ReportOutcome::Sent)
    ));
}

#[tokio::test]
async fn a_notification_signed_outside_its_window_is_refused_and_changes_nothing() {
    let f = fixture().await;
    f.credits
        .purchase(&f.user, &f.sign(&tx("1000000000000041", PRODUCT_10)), std::future::ready(Ok(false)))
        .await
        .unwrap();
    let signed_at = |age_secs: i64| {
        let info = f.sign(&tx("1000000000000041", PRODUCT_10));
        let mut payload = notification("REFUND", &format!("age-{age_secs}"), BUNDLE_ID, "Sandbox", Some(&info));
        payload["signedDate"] = json!((time::OffsetDateTime::now_utc().unix_timestamp() - age_secs) * 1000);
        f.chain.sign(&payload).unwrap()
    };
    // A captured refund (or reversal) replayed after its dedupe record expired, and one dated in the future.
    for age in [31 * 24 * 3600, -3600] {
        match f.credits.notification(&signed_at(age)).await {
            Err(NotificationError::Rejected(Rejection::Stale)) => {}
            other => panic!("age {age}: {other:?}"),
        }
        assert_eq!(f.balance().await, 13, "nothing taken back");
    }
    // Inside the window (29 days, Apple's retries take a week), it applies.
    assert!(matches!(f.credits.notification(&signed_at(29 * 24 * 3600)).await.unwrap(), Handled::Refund(_)));
    assert_eq!(f.balance().await, 3);
}

#[tokio::test]
async fn other_verified_notifications_are_acknowledged_once() {
    let f = fixture().await;
    for (kind, uuid) in [("TEST", "u-1"), ("CONSUMPTION_REQUEST", "u-2"), ("SOMETHING_NEW", "u-3")] {
        let signed = f.chain.sign(&notification(kind, uuid, BUNDLE_ID, "Sandbox", None)).unwrap();
        assert_eq!(f.credits.notification(&signed).await.unwrap(), Handled::Acknowledged, "{kind}");
        assert_eq!(f.credits.notification(&signed).await.unwrap(), Handled::Duplicate, "{kind}");
    }
}

#[tokio::test]
async fn unverifiable_notifications_are_refused() {
    let f = fixture().await;
    let stranger = TestChain::generate().unwrap();
    let forged = stranger.sign(&notification("REFUND", "u-9", BUNDLE_ID, "Sandbox", None)).unwrap();
    assert!(matches!(f.credits.notification(&forged).await, Err(NotificationError::Rejected(Rejection::Signature))));
    let other_app = f.chain.sign(&notification("TEST", "u-10", "com.example.other", "Sandbox", None)).unwrap();
    assert!(matches!(f.credits.notification(&other_app).await, Err(NotificationError::Rejected(Rejection::WrongApp))));
    let production = f.chain.sign(&notification("TEST", "u-11", BUNDLE_ID, "Production", None)).unwrap();
    assert!(matches!(
        f.credits.notification(&production).await,
        Err(NotificationError::Rejected(Rejection::WrongEnvironment))
    ));
    // A refund without the transaction it refunds.
    let bare_refund = f.chain.sign(&notification("REFUND", "u-12", BUNDLE_ID, "Sandbox", None)).unwrap();
    assert!(matches!(
        f.credits.notification(&bare_refund).await,
        Err(NotificationError::Rejected(Rejection::Malformed))
    ));
    // The transaction inside a notification must verify too.
    let foreign_info = stranger.sign(&tx("1000000000000022", PRODUCT_10).payload()).unwrap();
    let wrapped = f.chain.sign(&notification("REFUND", "u-13", BUNDLE_ID, "Sandbox", Some(&foreign_info))).unwrap();
    assert!(matches!(f.credits.notification(&wrapped).await, Err(NotificationError::Rejected(Rejection::Signature))));
}
