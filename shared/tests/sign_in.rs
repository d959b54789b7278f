//! Sign-in use cases end to end on the ports: send-code limits, code verification, first sign-in,
//! refresh rotation and logout. The cases where atomicity matters run on DynamoDB Local as well.

use std::sync::Arc;

use facemake::domain::{LedgerKind, OtpCode, PhoneNumber};
use facemake::services::auth::{RefreshError, SendCodeError, SignInError};
use facemake::wiring::Store;
use testkit::Harness;

testkit::harness_on_both_stores!(
    concurrent_send_code_inside_the_cooldown_sends_exactly_one_code,
    first_sign_in_creates_the_user_once_with_the_starter_grant,
    sixth_try_fails_even_with_the_right_code,
    concurrent_verifications_of_one_code_sign_in_once,
    refresh_rotates_and_reuse_revokes_the_whole_family,
    logout_revokes_one_family_or_all_of_them,
    the_hourly_sms_budget_stops_every_text_beyond_it,
    the_same_client_presenting_a_token_again_within_seconds_is_a_retry,
    a_retry_after_the_window_or_from_another_client_is_reuse,
    a_double_submit_from_one_client_rotates_once_and_keeps_the_family,
);

const APP: Option<(Option<&str>, Option<&str>)> = Some((Some("198.51.100.7"), Some("Facemake/3.1 iOS/18.2")));

async fn the_same_client_presenting_a_token_again_within_seconds_is_a_retry(h: Harness) {
    let session = sign_in(&h, &unique_phone()).await;
    let auth = h.deps.sign_in();
    let next = auth.refresh_from(&session.refresh_token, APP).await.unwrap();
    // The answer was lost; the app sends the same request again 9 s later: a 409 to retry, nothing revoked.
    h.clock.advance(9);
    assert!(matches!(auth.refresh_from(&session.refresh_token, APP).await, Err(RefreshError::JustRotated)));
    let after = auth.refresh_from(&next.refresh_token, APP).await.unwrap();
    assert_eq!(after.user.id, session.user.id, "the family lives on");
}

async fn a_retry_after_the_window_or_from_another_client_is_reuse(h: Harness) {
    let auth = h.deps.sign_in();
    // After the window: reuse, and the family is revoked.
    let session = sign_in(&h, &unique_phone()).await;
    let next = auth.refresh_from(&session.refresh_token, APP).await.unwrap();
    h.clock.advance(11);
    assert!(matches!(auth.refresh_from(&session.refresh_token, APP).await, Err(RefreshError::Invalid)));
    assert!(matches!(auth.refresh_from(&next.refresh_token, APP).await, Err(RefreshError::Invalid)), "revoked");
    // Within the window but from another address, or another app: reuse.
    for thief in
        [Some((Some("203.0.113.9"), Some("Facemake/3.1 iOS/18.2"))), Some((Some("198.51.100.7"), Some("curl/8.5")))]
    {
        let session = sign_in(&h, &unique_phone()).await;
        let next = auth.refresh_from(&session.refresh_token, APP).await.unwrap();
        assert!(matches!(auth.refresh_from(&session.refresh_token, thief).await, Err(RefreshError::Invalid)));
        assert!(matches!(auth.refresh_from(&next.refresh_token, APP).await, Err(RefreshError::Invalid)), "revoked");
    }
    // No client known (as before): every second presentation is reuse.
    let session = sign_in(&h, &unique_phone()).await;
    let next = auth.refresh(&session.refresh_token).await.unwrap();
    assert!(matches!(auth.refresh(&session.refresh_token).await, Err(RefreshError::Invalid)));
    assert!(matches!(auth.refresh(&next.refresh_token).await, Err(RefreshError::Invalid)));
}

async fn a_double_submit_from_one_client_rotates_once_and_keeps_the_family(h: Harness) {
    let session = sign_in(&h, &unique_phone()).await;
    let auth = Arc::new(h.deps.sign_in());
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            let (auth, token) = (auth.clone(), session.refresh_token.clone());
            tokio::spawn(async move { auth.refresh_from(&token, APP).await })
        })
        .collect();
    let mut winners = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            Ok(s) => winners.push(s),
            Err(RefreshError::JustRotated) => {}
            Err(e) => panic!("a double submit is not reuse: {e:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "one rotation");
    assert!(auth.refresh_from(&winners[0].refresh_token, APP).await.is_ok(), "the family lives on");
}

async fn the_hourly_sms_budget_stops_every_text_beyond_it(mut h: Harness) {
    use facemake::metrics::Metric;
    use facemake::ports::Clock;
    h.deps.policy.sms_budget_per_hour = 3;
    h.deps.policy.sms_budget_per_country_per_hour = 2;
    let us = |n: u32| phone(&format!("+1415555{:04}", 3000 + n));
    send_from(&h, &us(1), "198.51.100.31").await.unwrap();
    // A refused request (the cooldown) spends none of the budget.
    assert!(matches!(send_from(&h, &us(1), "198.51.100.31").await, Err(SendCodeError::RateLimited { .. })));
    send_from(&h, &us(2), "198.51.100.32").await.unwrap();
    // The country's two are spent: a third US number waits for the hour to turn, and gets no text and no code.
    let end_of_hour = 3600 - h.clock.now().rem_euclid(3600);
    match send_from(&h, &us(3), "198.51.100.33").await {
        Err(SendCodeError::BudgetSpent { retry_after_secs }) => assert_eq!(retry_after_secs as i64, end_of_hour),
        other => panic!("{other:?}"),
    }
    assert!(h.outbox.messages_to(us(3).e164()).is_empty());
    assert_eq!(h.deps.store.load(&us(3)).await.unwrap(), None, "nothing written for it");
    // Another country still has its own share, until the stage's three are spent.
    send_from(&h, &phone("+447400123456"), "198.51.100.34").await.unwrap();
    assert!(matches!(
        send_from(&h, &phone("+447400123457"), "198.51.100.35").await,
        Err(SendCodeError::BudgetSpent { .. })
    ));
    assert_eq!(h.metrics.total(Metric::SmsBudgetExceeded), 2.0, "each refusal is counted for the alarm");
    // The next hour has a new budget.
    h.clock.advance(end_of_hour);
    send_from(&h, &us(3), "198.51.100.33").await.unwrap();
}

fn phone(s: &str) -> PhoneNumber {
    PhoneNumber::parse(s, None).unwrap()
}

fn unique_phone() -> PhoneNumber {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1000);
    phone(&format!("+1415555{:04}", NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst)))
}

async fn send(h: &Harness, p: &PhoneNumber) -> Result<(), SendCodeError> {
    h.deps.send_code().send(p, Some("198.51.100.1")).await.map(|_| ())
}

async fn sign_in(h: &Harness, p: &PhoneNumber) -> facemake::services::auth::Session {
    send(h, p).await.unwrap();
    let code = OtpCode::parse(&h.last_code(p.e164()).unwrap()).unwrap();
    h.deps.sign_in().verify(p, &code, None).await.unwrap()
}

fn wrong(code: &str) -> OtpCode {
    // A valid-looking code that differs from `code`.
    let flipped: String = code
        .chars()
        .enumerate()
        .map(|(i, c)| {
            if i == 0 {
                if c == '9' {
                    '0'
                } else {
                    '9'
                }
            } else {
                c
            }
        })
        .collect();
    OtpCode::parse(&flipped).unwrap()
}

async fn concurrent_send_code_inside_the_cooldown_sends_exactly_one_code(h: Harness) {
    let p = unique_phone();
    let tasks: Vec<_> = (0..12)
        .map(|i| {
            let (h, p) = (h.clone(), p.clone());
            // Distinct source IPs so the per-IP cap plays no part.
            tokio::spawn(async move { h.deps.send_code().send(&p, Some(&format!("198.51.100.{i}"))).await })
        })
        .collect();
    let mut sent = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => sent += 1,
            Err(SendCodeError::RateLimited { retry_after_secs }) => assert!(retry_after_secs <= 60),
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!(sent, 1, "one request wins the conditional write");
    assert_eq!(h.outbox.messages_to(p.e164()).len(), 1, "exactly one text went out");
}

async fn first_sign_in_creates_the_user_once_with_the_starter_grant(h: Harness) {
    let p = unique_phone();
    let first = sign_in(&h, &p).await;
    assert!(first.is_new_user);
    assert_eq!(first.user.credits, 3);
    let ledger = h.deps.store.ledger(&first.user.id, 10).await.unwrap();
    assert_eq!(ledger.len(), 1);
    assert_eq!(
        (ledger[0].kind, ledger[0].amount, ledger[0].reference.as_str()),
        (LedgerKind::Grant, 3, "starter-grant")
    );

    h.clock.advance(61);
    let second = sign_in(&h, &p).await;
    assert!(!second.is_new_user);
    assert_eq!(second.user.id, first.user.id);
    assert_eq!(second.user.credits, 3, "no second grant");
    assert_eq!(h.deps.store.ledger(&first.user.id, 10).await.unwrap().len(), 1);
}

async fn sixth_try_fails_even_with_the_right_code(h: Harness) {
    let p = unique_phone();
    send(&h, &p).await.unwrap();
    let right = h.last_code(p.e164()).unwrap();
    for attempt in 1..=5u32 {
        match h.deps.sign_in().verify(&p, &wrong(&right), None).await {
            Err(SignInError::InvalidCode { attempts_left }) => assert_eq!(attempts_left, 5 - attempt),
            other => panic!("attempt {attempt}: {other:?}"),
        }
    }
    let sixth = h.deps.sign_in().verify(&p, &OtpCode::parse(&right).unwrap(), None).await;
    assert!(matches!(sixth, Err(SignInError::TooManyAttempts)), "{sixth:?}");
    assert_eq!(h.deps.store.find_by_phone(&p).await.unwrap(), None, "nobody signed in");
}

async fn concurrent_verifications_of_one_code_sign_in_once(h: Harness) {
    let p = unique_phone();
    send(&h, &p).await.unwrap();
    let code = OtpCode::parse(&h.last_code(p.e164()).unwrap()).unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (h, p, code) = (h.clone(), p.clone(), code.clone());
            tokio::spawn(async move { h.deps.sign_in().verify(&p, &code, None).await })
        })
        .collect();
    let mut sessions = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => sessions += 1,
            Err(SignInError::CodeUsed | SignInError::TooManyAttempts) => {}
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!(sessions, 1, "a code signs in once");
}

async fn refresh_rotates_and_reuse_revokes_the_whole_family(h: Harness) {
    let session = sign_in(&h, &unique_phone()).await;
    let auth = h.deps.sign_in();
    let second = auth.refresh(&session.refresh_token).await.unwrap();
    assert_ne!(second.refresh_token, session.refresh_token);
    assert_eq!(second.user.id, session.user.id);
    assert!(!second.is_new_user);

    // The spent token comes back (stolen, replayed): refused, and the family dies with it.
    assert!(matches!(auth.refresh(&session.refresh_token).await, Err(RefreshError::Invalid)));
    assert!(matches!(auth.refresh(&second.refresh_token).await, Err(RefreshError::Invalid)), "family revoked");

    // Other families of the same user are untouched.
    let other = sign_in_again(&h, &session.user.phone).await;
    assert!(auth.refresh(&other.refresh_token).await.is_ok());
}

async fn sign_in_again(h: &Harness, e164: &str) -> facemake::services::auth::Session {
    h.clock.advance(61);
    sign_in(h, &phone(e164)).await
}

async fn logout_revokes_one_family_or_all_of_them(h: Harness) {
    let a = sign_in(&h, &unique_phone()).await;
    let b = sign_in_again(&h, &a.user.phone).await;
    let auth = h.deps.sign_in();
    auth.logout(&a.user.id, Some(&a.refresh_token), false, std::future::ready(Ok(false))).await.unwrap();
    assert!(matches!(auth.refresh(&a.refresh_token).await, Err(RefreshError::Invalid)));
    let b2 = auth.refresh(&b.refresh_token).await.unwrap();

    h.clock.advance(1);
    auth.logout(&a.user.id, None, true, std::future::ready(Ok(false))).await.unwrap();
    assert!(matches!(auth.refresh(&b2.refresh_token).await, Err(RefreshError::Invalid)), "signed out everywhere");
    h.clock.advance(1);
    let c = sign_in_again(&h, &a.user.phone).await;
    assert!(auth.refresh(&c.refresh_token).await.is_ok(), "a new sign-in after logout-all works");
}

async fn send_from(h: &Harness, p: &PhoneNumber, ip: &str) -> Result<(), SendCodeError> {
    h.deps.send_code().send(p, Some(ip)).await.map(|_| ())
}

fn retry_after(result: Result<(), SendCodeError>) -> u64 {
    match result {
        Err(SendCodeError::RateLimited { retry_after_secs }) => retry_after_secs,
        other => panic!("not refused: {other:?}"),
    }
}

#[tokio::test]
async fn cooldown_then_daily_cap_with_retry_after() {
    let h = Harness::in_memory();
    let p = phone("+14155550100");
    // The cooldown is the number's, whoever asks.
    send_from(&h, &p, "198.51.100.1").await.unwrap();
    h.clock.advance(10);
    assert_eq!(retry_after(send_from(&h, &p, "198.51.100.2").await), 50);
    for i in 0..9 {
        h.clock.advance(60);
        send_from(&h, &p, &format!("198.51.100.{}", 10 + i)).await.unwrap();
    }
    h.clock.advance(60);
    // Ten sent in the last 24 h, from ten addresses: the eleventh waits until the first leaves the window.
    assert_eq!(retry_after(send_from(&h, &p, "198.51.100.99").await), 86_400 - 610);
    h.clock.advance(86_400 - 610);
    send_from(&h, &p, "198.51.100.99").await.unwrap();
    assert_eq!(h.outbox.messages_to(p.e164()).len(), 11);
}

#[tokio::test]
async fn one_source_cannot_lock_a_number_out() {
    let h = Harness::in_memory();
    let victim = phone("+14155550109");
    // The attacker's address asks for the victim's number until refused: three codes a day, not ten.
    for _ in 0..3 {
        send_from(&h, &victim, "203.0.113.66").await.unwrap();
        h.clock.advance(60);
    }
    assert_eq!(retry_after(send_from(&h, &victim, "203.0.113.66").await), 86_400 - 180);
    // Every address of an IPv6 /64 (one subscriber's network) is one source.
    for host in ["2001:db8:1:2::1", "2001:db8:1:2:ffff::9", "2001:db8:1:2::1"] {
        send_from(&h, &victim, host).await.unwrap();
        h.clock.advance(60);
    }
    assert_eq!(
        retry_after(send_from(&h, &victim, "2001:db8:1:2:aaaa::7").await),
        86_400 - 180,
        "the /64 had its three"
    );
    // The owner, from another address, still gets a code and signs in.
    send_from(&h, &victim, "198.51.100.200").await.unwrap();
    let code = OtpCode::parse(&h.last_code(victim.e164()).unwrap()).unwrap();
    assert!(h.deps.sign_in().verify(&victim, &code, Some("198.51.100.200")).await.is_ok());
    assert_eq!(h.outbox.messages_to(victim.e164()).len(), 7, "and the texts to the number stay bounded");
}

#[tokio::test]
async fn source_ip_cap_spans_numbers() {
    let h = Harness::in_memory();
    for i in 0..20 {
        h.deps.send_code().send(&phone(&format!("+1415555{:04}", 2000 + i)), Some("203.0.113.9")).await.unwrap();
    }
    let refused = h.deps.send_code().send(&phone("+14155552999"), Some("203.0.113.9")).await;
    assert!(matches!(refused, Err(SendCodeError::RateLimited { .. })), "{refused:?}");
    assert!(
        h.deps.send_code().send(&phone("+14155552999"), Some("203.0.113.10")).await.is_ok(),
        "other IPs unaffected"
    );
}

#[tokio::test]
async fn numbers_outside_the_allowlist_get_no_text() {
    let h = Harness::in_memory();
    let fr = phone("+33612345678");
    assert!(matches!(send(&h, &fr).await, Err(SendCodeError::CountryNotAllowed)));
    assert_eq!(h.outbox.count(), 0);
}

#[tokio::test]
async fn a_failed_delivery_gives_the_cooldown_back_and_leaves_no_usable_code() {
    let h = Harness::in_memory();
    let p = phone("+14155550101");
    h.outbox.set_failing(true);
    assert!(matches!(send(&h, &p).await, Err(SendCodeError::Delivery(_))));
    let verify = h.deps.sign_in().verify(&p, &OtpCode::parse("000000").unwrap(), None).await;
    assert!(matches!(verify, Err(SignInError::NoCode)), "{verify:?}");
    h.outbox.set_failing(false);
    send(&h, &p).await.expect("no cooldown after a failed delivery");
}

#[tokio::test]
async fn expired_used_and_missing_codes_each_fail_with_their_own_error() {
    let h = Harness::in_memory();
    let p = phone("+14155550102");
    let none = h.deps.sign_in().verify(&p, &OtpCode::parse("123456").unwrap(), None).await;
    assert!(matches!(none, Err(SignInError::NoCode)), "{none:?}");

    send(&h, &p).await.unwrap();
    let code = OtpCode::parse(&h.last_code(p.e164()).unwrap()).unwrap();
    h.clock.advance(300);
    assert!(matches!(h.deps.sign_in().verify(&p, &code, None).await, Err(SignInError::CodeExpired)));

    h.clock.advance(60);
    send(&h, &p).await.unwrap();
    let code = OtpCode::parse(&h.last_code(p.e164()).unwrap()).unwrap();
    h.deps.sign_in().verify(&p, &code, None).await.unwrap();
    assert!(matches!(h.deps.sign_in().verify(&p, &code, None).await, Err(SignInError::CodeUsed)));
}

#[tokio::test]
async fn a_new_code_replaces_the_old_one() {
    let h = Harness::in_memory();
    let p = phone("+14155550103");
    send(&h, &p).await.unwrap();
    let old = OtpCode::parse(&h.last_code(p.e164()).unwrap()).unwrap();
    h.clock.advance(60);
    send(&h, &p).await.unwrap();
    let new = OtpCode::parse(&h.last_code(p.e164()).unwrap()).unwrap();
    if old != new {
        assert!(matches!(h.deps.sign_in().verify(&p, &old, None).await, Err(SignInError::InvalidCode { .. })));
    }
    assert!(h.deps.sign_in().verify(&p, &new, None).await.is_ok());
}

#[tokio::test]
async fn codes_are_stored_only_as_keyed_hashes() {
    let store = Arc::new(facemake::adapters::memory::MemoryStore::new());
    let h = Harness::over(store.clone() as Arc<dyn Store>);
    let p = phone("+14155550104");
    send(&h, &p).await.unwrap();
    let code = h.last_code(p.e164()).unwrap();
    let record = facemake::ports::OtpStore::load(store.as_ref(), &p).await.unwrap().unwrap();
    let stored = format!("{record:?}");
    assert!(!stored.contains(&code), "the code itself is not stored");
    let hash = record.code_hash.unwrap();
    assert_ne!(hash, facemake::crypto::sha256_b64(code.as_bytes()), "not an unkeyed hash");
}

#[tokio::test]
async fn refresh_tokens_are_stored_hashed_and_expire() {
    let h = Harness::in_memory();
    let session = sign_in(&h, &phone("+14155550105")).await;
    let auth = h.deps.sign_in();
    assert!(facemake::ports::SessionStore::find_session(h.deps.store.as_ref(), &session.refresh_token)
        .await
        .unwrap()
        .is_none());
    h.clock.advance(30 * 86_400);
    assert!(matches!(auth.refresh(&session.refresh_token).await, Err(RefreshError::Invalid)));
    assert!(matches!(auth.refresh("not-a-token").await, Err(RefreshError::Invalid)));
    assert!(matches!(auth.refresh(&session.access_token).await, Err(RefreshError::Invalid)), "access ≠ refresh");
}

#[tokio::test]
async fn one_address_cannot_burn_through_everyones_attempts() {
    let h = Harness::in_memory();
    let wrong_code = OtpCode::parse("000000").unwrap();
    for i in 0..60 {
        let p = phone(&format!("+1415555{:04}", 3000 + i));
        let r = h.deps.sign_in().verify(&p, &wrong_code, Some("203.0.113.50")).await;
        assert!(matches!(r, Err(SignInError::NoCode)), "{r:?}");
    }
    let p = phone("+14155553999");
    let refused = h.deps.sign_in().verify(&p, &wrong_code, Some("203.0.113.50")).await;
    assert!(matches!(refused, Err(SignInError::RateLimited { .. })), "{refused:?}");
    let other = h.deps.sign_in().verify(&p, &wrong_code, Some("203.0.113.51")).await;
    assert!(matches!(other, Err(SignInError::NoCode)), "other addresses unaffected: {other:?}");
}

#[tokio::test]
async fn a_secrets_outage_does_not_cost_an_attempt() {
    struct Down;
    #[async_trait::async_trait]
    impl facemake::ports::KeyProvider for Down {
        async fn keys(&self) -> Result<Arc<facemake::ports::AppKeys>, facemake::ports::PortError> {
            Err(facemake::ports::PortError::unavailable("secrets", "down"))
        }
    }
    let h = Harness::in_memory();
    let p = phone("+14155550106");
    send(&h, &p).await.unwrap();
    let code = OtpCode::parse(&h.last_code(p.e164()).unwrap()).unwrap();
    let mut broken = h.deps.sign_in();
    broken.keys = Arc::new(Down);
    for _ in 0..6 {
        assert!(matches!(broken.verify(&p, &code, None).await, Err(SignInError::Port(_))));
    }
    assert!(h.deps.sign_in().verify(&p, &code, None).await.is_ok(), "all five attempts are still there");
}
