//! The business metrics each use case records (what the dashboard and the alarms are built on).

use appstore_test_chain::{notification, TestChain, Transaction};
use facemake::domain::{OtpCode, PhoneNumber};
use facemake::metrics::Metric;
use facemake::testkit::{credits_config, Harness, BUNDLE_ID, PRODUCT_50};

#[tokio::test]
async fn sign_in_records_sent_rejected_verified_and_sign_ups() {
    let h = Harness::in_memory();
    let phone = PhoneNumber::parse("+14155550160", None).unwrap();
    let send = h.deps.send_code();
    send.send(&phone, None).await.unwrap();
    assert_eq!(h.metrics.total(Metric::CodesSent), 1.0);
    let code = h.last_code(phone.e164()).unwrap();
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let auth = h.deps.sign_in();
    assert!(auth.verify(&phone, &OtpCode::parse(wrong).unwrap(), None).await.is_err());
    assert_eq!(h.metrics.total(Metric::CodesRejected), 1.0);
    auth.verify(&phone, &OtpCode::parse(&code).unwrap(), None).await.unwrap();
    assert_eq!((h.metrics.total(Metric::CodesVerified), h.metrics.total(Metric::SignUps)), (1.0, 1.0));
    // A returning user is a verification, not a sign-up; a failed text is counted as such.
    h.clock.advance(61);
    send.send(&phone, None).await.unwrap();
    let code = h.last_code(phone.e164()).unwrap();
    auth.verify(&phone, &OtpCode::parse(&code).unwrap(), None).await.unwrap();
    assert_eq!((h.metrics.total(Metric::CodesVerified), h.metrics.total(Metric::SignUps)), (2.0, 1.0));
    h.outbox.set_failing(true);
    h.clock.advance(61);
    assert!(send.send(&phone, None).await.is_err());
    assert_eq!((h.metrics.total(Metric::CodesSent), h.metrics.total(Metric::CodesFailed)), (2.0, 1.0));
}

#[tokio::test]
async fn purchases_and_refunds_record_credits_once() {
    let chain = TestChain::generate().unwrap();
    let mut h = Harness::in_memory();
    h.deps.credits = credits_config(vec![chain.root_der().to_vec()]);
    let credits = h.deps.credits_service().unwrap();
    let user = h.signed_in("+14155550161").await.user.id;
    let tx = Transaction::consumable("4000000000000001", PRODUCT_50, BUNDLE_ID, "Sandbox");
    let signed = chain.sign(&tx.payload()).unwrap();
    credits.purchase(&user, &signed).await.unwrap();
    credits.purchase(&user, &signed).await.unwrap();
    assert_eq!(h.metrics.total(Metric::CreditsPurchased), 50.0, "a repeat credits nothing and counts nothing");
    let info = chain.sign(&tx.payload()).unwrap();
    let refund = chain
        .sign(&notification("REFUND", "d00d0000-0000-4000-8000-000000000001", BUNDLE_ID, "Sandbox", Some(&info)))
        .unwrap();
    credits.notification(&refund).await.unwrap();
    credits.notification(&refund).await.unwrap();
    assert_eq!(h.metrics.total(Metric::CreditsRefunded), 50.0);
}
