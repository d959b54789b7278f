//! Deleting an account is not a way to new credits nor to fresh send limits (issue 13): the number's mark,
//! kept under a keyed hash of it, on the in-memory store and on DynamoDB Local.

use std::sync::Arc;

use facemake::adapters::keys::{keys_from_masters, StaticKeys};
use facemake::domain::{NumberMark, OtpCode, PhoneNumber};
use facemake::ports::{Clock, KeyProvider};
use facemake::services::auth::{number_keys, SendCodeError, Session};
use testkit::{Harness, TEST_MASTER_KEY};

testkit::harness_on_both_stores!(
    a_deleted_accounts_number_signs_up_again_without_the_starter_grant,
    deleting_the_account_keeps_the_cooldown_and_the_daily_cap,
    the_mark_is_a_keyed_hash_kept_a_year,
    a_mark_outlives_a_key_rotation_until_its_key_is_retired,
);

fn unique_phone() -> PhoneNumber {
    // Numbers of their own (the DynamoDB Local tables are shared by the tests of a run).
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let salt = std::process::id() % 90;
    PhoneNumber::parse(&format!("+1415555{:02}{:02}", 10 + salt, n), None).unwrap()
}

/// send-code then verify-code, as the app does, with the harness's keys unless `keys` says otherwise.
async fn sign_in_with(h: &Harness, p: &PhoneNumber, keys: Option<Arc<dyn KeyProvider>>) -> Session {
    let mut send = h.deps.send_code();
    let mut verify = h.deps.sign_in();
    if let Some(keys) = keys {
        send.keys = keys.clone();
        verify.keys = keys;
    }
    send.send(p, Some("198.51.100.7")).await.unwrap();
    let code = OtpCode::parse(&h.last_code(p.e164()).unwrap()).unwrap();
    verify.verify(p, &code, None).await.unwrap()
}

async fn sign_in(h: &Harness, p: &PhoneNumber) -> Session {
    sign_in_with(h, p, None).await
}

async fn a_deleted_accounts_number_signs_up_again_without_the_starter_grant(h: Harness) {
    let p = unique_phone();
    let first = sign_in(&h, &p).await;
    assert!(first.is_new_user);
    assert_eq!(first.user.credits, 3, "the first account gets the starter grant");
    h.deps.account().delete(&first.user.id).await.unwrap();

    h.clock.advance(61);
    let again = sign_in(&h, &p).await;
    assert!(again.is_new_user, "a new account");
    assert_ne!(again.user.id, first.user.id);
    assert_eq!(again.user.credits, 0, "no second starter grant");
    assert_eq!(h.deps.store.balance(&again.user.id).await.unwrap(), 0);
    assert!(h.deps.store.ledger(&again.user.id, 10).await.unwrap().is_empty(), "and no grant entry");

    // Deleting that one too changes nothing for the next.
    h.deps.account().delete(&again.user.id).await.unwrap();
    h.clock.advance(61);
    assert_eq!(sign_in(&h, &p).await.user.credits, 0);
    // Another number is unaffected.
    assert_eq!(sign_in(&h, &unique_phone()).await.user.credits, 3);
}

async fn deleting_the_account_keeps_the_cooldown_and_the_daily_cap(h: Harness) {
    let p = unique_phone();
    let send = |h: &Harness, ip: String| {
        let s = h.deps.send_code();
        let p = p.clone();
        async move { s.send(&p, Some(&ip)).await }
    };
    let retry_of = |r: Result<_, SendCodeError>| match r {
        Err(SendCodeError::RateLimited { retry_after_secs }) => retry_after_secs,
        other => panic!("the deletion reset a limit: {other:?}"),
    };
    // Signed in from 198.51.100.7 (the first code, at t = 0).
    let first = sign_in(&h, &p).await;
    h.clock.advance(10);
    h.deps.account().delete(&first.user.id).await.unwrap();
    // The resend cooldown runs on from the code sent before the deletion...
    assert_eq!(retry_of(send(&h, "198.51.100.7".into()).await), 50);
    // ... that source's cap counts it: two more from it today, not three...
    for _ in 0..2 {
        h.clock.advance(60);
        send(&h, "198.51.100.7".into()).await.unwrap();
    }
    h.clock.advance(60);
    assert_eq!(retry_of(send(&h, "198.51.100.7".into()).await), 86_400 - 190);
    // ... and so does the number's: seven more from elsewhere (ten in all), then none.
    for i in 0..7 {
        send(&h, format!("203.0.113.{i}")).await.unwrap();
        h.clock.advance(60);
    }
    assert_eq!(retry_of(send(&h, "203.0.113.99".into()).await), 86_400 - 610);
    assert_eq!(h.outbox.messages_to(p.e164()).len(), 10);
}

async fn the_mark_is_a_keyed_hash_kept_a_year(h: Harness) {
    let p = unique_phone();
    let session = sign_in(&h, &p).await;
    let keys = h.keys.keys().await.unwrap();
    let number_keys = number_keys(&keys, &p);
    assert_eq!(number_keys.len(), 1);
    assert!(!number_keys[0].contains(&p.e164()[1..]), "the key is not the number");
    assert_eq!(h.deps.store.number_mark(&number_keys).await.unwrap(), None, "no mark while the account lives");

    let deleted_at = h.clock.now();
    h.deps.account().delete(&session.user.id).await.unwrap();
    let mark = h.deps.store.number_mark(&number_keys).await.unwrap().expect("a mark after the deletion");
    assert_eq!(mark.expires_at, deleted_at + NumberMark::RETENTION_SECS);
    assert_eq!((mark.last_sent_at, mark.sent_at.clone()), (deleted_at, vec![deleted_at]));
    // Another number's keys find nothing, and the code record itself is gone.
    assert_eq!(h.deps.store.number_mark(&number_keys_of(&h, &unique_phone()).await).await.unwrap(), None);
    assert_eq!(h.deps.store.load(&p).await.unwrap(), None);
}

async fn number_keys_of(h: &Harness, p: &PhoneNumber) -> Vec<String> {
    number_keys(&h.keys.keys().await.unwrap(), p)
}

async fn a_mark_outlives_a_key_rotation_until_its_key_is_retired(h: Harness) {
    const NEXT_MASTER: &[u8] = b"facemake-test-next-master-key-0123456789ab";
    let p = unique_phone();
    let first = sign_in(&h, &p).await;
    h.deps.account().delete(&first.user.id).await.unwrap();

    // Rotated: the new key signs, the old one still verifies; the mark (under the old key) still counts.
    let rotated: Arc<dyn KeyProvider> = Arc::new(StaticKeys::with(keys_from_masters(NEXT_MASTER, &[TEST_MASTER_KEY])));
    h.clock.advance(61);
    let again = sign_in_with(&h, &p, Some(rotated.clone())).await;
    assert_eq!(again.user.credits, 0);
    // That account's own deletion leaves its mark under the new key.
    h.deps.account().delete(&again.user.id).await.unwrap();
    let retired: Arc<dyn KeyProvider> = Arc::new(StaticKeys::with(keys_from_masters(NEXT_MASTER, &[])));
    h.clock.advance(61);
    assert_eq!(sign_in_with(&h, &p, Some(retired.clone())).await.user.credits, 0, "found under the new key");

    // A number whose mark is under a retired key only is not recognised: the documented cost of a rotation
    // (docs/architecture.md), at most one grant per number per rotation.
    let q = unique_phone();
    let old = sign_in(&h, &q).await;
    h.deps.account().delete(&old.user.id).await.unwrap();
    h.clock.advance(61);
    assert_eq!(sign_in_with(&h, &q, Some(retired)).await.user.credits, 3);
}
