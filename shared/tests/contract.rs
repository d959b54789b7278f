//! One contract for every store port, run against the in-memory adapter and against DynamoDB Local, so the
//! store the local API and unit tests use behaves like the one that is deployed — concurrency included.

use std::collections::HashSet;
use std::sync::Arc;

use facemake::adapters::memory::MemoryStore;
use facemake::domain::{LedgerEntry, LedgerKind, OtpRecord, PhoneNumber, UserId};
use facemake::ports::{
    AttemptOutcome, Counter, CreateOutcome, NewUser, ProfileUpdate, RateDecision, RefreshRecord, RefreshState,
    RotateOutcome, Rotation, Written,
};
use facemake::wiring::Store;
use testkit::dynamodb_store;

const NOW: i64 = 1_800_000_000;

testkit::store_contract!(
    otp_replace_is_conditional_on_the_version,
    otp_concurrent_replacements_let_exactly_one_win,
    otp_attempts_are_counted_and_refusals_classified,
    otp_concurrent_attempts_never_exceed_the_limit,
    otp_consume_happens_once_and_only_for_the_live_code,
    rate_limiter_counts_per_window_and_atomically,
    rate_limiter_counts_a_group_together_or_not_at_all,
    accounts_are_created_once_per_number_with_their_grant,
    accounts_concurrent_first_sign_ins_create_one_user,
    accounts_profile_updates_and_session_revocation,
    sessions_rotate_once_and_respect_revoked_families,
    sessions_concurrent_rotations_of_one_token_let_one_win,
);

fn phone(n: u32) -> PhoneNumber {
    PhoneNumber::parse(&format!("+1415555{n:04}"), None).unwrap()
}

fn unique_phone() -> PhoneNumber {
    // Distinct per call so tests sharing DynamoDB Local tables never collide.
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(100);
    phone(NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst))
}

fn code_record(p: &PhoneNumber, version: u64, code_id: &str) -> OtpRecord {
    OtpRecord {
        version,
        code_id: Some(code_id.to_owned()),
        code_hash: Some("aGFzaA==".to_owned()),
        expires_at: NOW + 300,
        last_sent_at: NOW,
        sent_at: vec![NOW],
        ..OtpRecord::empty(p.e164())
    }
}

async fn otp_replace_is_conditional_on_the_version(store: Arc<dyn Store>) {
    let p = unique_phone();
    assert_eq!(store.load(&p).await.unwrap(), None);
    let first = code_record(&p, 1, "c1");
    assert_eq!(store.replace(&first, 0).await.unwrap(), Written::Yes);
    assert_eq!(store.load(&p).await.unwrap(), Some(first.clone()));
    assert_eq!(store.replace(&first, 0).await.unwrap(), Written::Conflict, "expected absent, but it exists");
    assert_eq!(store.replace(&code_record(&p, 2, "c2"), 7).await.unwrap(), Written::Conflict, "wrong version");
    let second = code_record(&p, 2, "c2");
    assert_eq!(store.replace(&second, 1).await.unwrap(), Written::Yes);
    assert_eq!(store.load(&p).await.unwrap(), Some(second));
}

async fn otp_concurrent_replacements_let_exactly_one_win(store: Arc<dyn Store>) {
    let p = unique_phone();
    store.replace(&code_record(&p, 1, "base"), 0).await.unwrap();
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let store = store.clone();
            let record = code_record(&p, 2, &format!("c{i}"));
            tokio::spawn(async move { store.replace(&record, 1).await.unwrap() })
        })
        .collect();
    let mut wins = 0;
    for t in tasks {
        if t.await.unwrap() == Written::Yes {
            wins += 1;
        }
    }
    assert_eq!(wins, 1);
}

async fn otp_attempts_are_counted_and_refusals_classified(store: Arc<dyn Store>) {
    let p = unique_phone();
    assert_eq!(store.reserve_attempt(&p, 5, NOW).await.unwrap(), AttemptOutcome::NoCode);
    store.replace(&code_record(&p, 1, "c1"), 0).await.unwrap();
    for expected in 1..=5 {
        match store.reserve_attempt(&p, 5, NOW).await.unwrap() {
            AttemptOutcome::Reserved(r) => assert_eq!(r.attempts, expected),
            other => panic!("attempt {expected}: {other:?}"),
        }
    }
    assert_eq!(store.reserve_attempt(&p, 5, NOW).await.unwrap(), AttemptOutcome::Exhausted);

    let q = unique_phone();
    store.replace(&code_record(&q, 1, "c1"), 0).await.unwrap();
    assert_eq!(store.reserve_attempt(&q, 5, NOW + 300).await.unwrap(), AttemptOutcome::Expired);
    assert!(matches!(store.reserve_attempt(&q, 5, NOW + 299).await.unwrap(), AttemptOutcome::Reserved(_)));
    assert_eq!(store.consume(&q, "c1").await.unwrap(), Written::Yes);
    assert_eq!(store.reserve_attempt(&q, 5, NOW).await.unwrap(), AttemptOutcome::Used);

    let r = unique_phone();
    let no_code = OtpRecord { code_hash: None, code_id: None, ..code_record(&r, 1, "x") };
    store.replace(&no_code, 0).await.unwrap();
    assert_eq!(store.reserve_attempt(&r, 5, NOW).await.unwrap(), AttemptOutcome::NoCode);
}

async fn otp_concurrent_attempts_never_exceed_the_limit(store: Arc<dyn Store>) {
    let p = unique_phone();
    store.replace(&code_record(&p, 1, "c1"), 0).await.unwrap();
    let tasks: Vec<_> = (0..25)
        .map(|_| {
            let (store, p) = (store.clone(), p.clone());
            tokio::spawn(async move { store.reserve_attempt(&p, 5, NOW).await.unwrap() })
        })
        .collect();
    let mut reserved = HashSet::new();
    for t in tasks {
        if let AttemptOutcome::Reserved(r) = t.await.unwrap() {
            assert!(reserved.insert(r.attempts), "attempt number {} handed out twice", r.attempts);
        }
    }
    assert_eq!(reserved, (1..=5).collect::<HashSet<u32>>());
}

async fn otp_consume_happens_once_and_only_for_the_live_code(store: Arc<dyn Store>) {
    let p = unique_phone();
    assert_eq!(store.consume(&p, "c1").await.unwrap(), Written::Conflict, "nothing to consume");
    store.replace(&code_record(&p, 1, "c1"), 0).await.unwrap();
    assert_eq!(store.consume(&p, "other").await.unwrap(), Written::Conflict);
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let (store, p) = (store.clone(), p.clone());
            tokio::spawn(async move { store.consume(&p, "c1").await.unwrap() })
        })
        .collect();
    let mut wins = 0;
    for t in tasks {
        wins += usize::from(t.await.unwrap() == Written::Yes);
    }
    assert_eq!(wins, 1);
}

async fn rate_limiter_counts_per_window_and_atomically(store: Arc<dyn Store>) {
    let key = format!("test:{}", facemake::domain::new_id());
    let window_start = NOW - NOW.rem_euclid(3600);
    for _ in 0..3 {
        assert_eq!(store.hit(&key, 3600, 3, window_start + 10).await.unwrap(), RateDecision::Allowed);
    }
    assert_eq!(
        store.hit(&key, 3600, 3, window_start + 10).await.unwrap(),
        RateDecision::Limited { retry_after_secs: 3590 }
    );
    assert_eq!(store.hit(&key, 3600, 3, window_start + 3600).await.unwrap(), RateDecision::Allowed, "new window");

    let key = format!("test:{}", facemake::domain::new_id());
    let tasks: Vec<_> = (0..30)
        .map(|_| {
            let (store, key) = (store.clone(), key.clone());
            tokio::spawn(async move { store.hit(&key, 3600, 7, NOW).await.unwrap() })
        })
        .collect();
    let mut allowed = 0;
    for t in tasks {
        allowed += usize::from(t.await.unwrap() == RateDecision::Allowed);
    }
    assert_eq!(allowed, 7);
}

async fn rate_limiter_counts_a_group_together_or_not_at_all(store: Arc<dyn Store>) {
    let id = facemake::domain::new_id();
    let (wide, narrow) = (format!("test:all:{id}"), format!("test:one:{id}"));
    let group = |narrow: &str, limit: u32| {
        vec![
            Counter { key: wide.clone(), window_secs: 3600, limit: 3 },
            Counter { key: narrow.to_owned(), window_secs: 3600, limit },
        ]
    };
    let window_start = NOW - NOW.rem_euclid(3600);
    let at = window_start + 100;
    assert_eq!(store.hit_all(&group(&narrow, 1), at).await.unwrap(), RateDecision::Allowed);
    // The narrow counter is full: the refusal counts nothing on the wide one.
    for _ in 0..3 {
        assert_eq!(
            store.hit_all(&group(&narrow, 1), at).await.unwrap(),
            RateDecision::Limited { retry_after_secs: 3500 }
        );
    }
    let other = format!("test:two:{id}");
    assert_eq!(store.hit_all(&group(&other, 5), at).await.unwrap(), RateDecision::Allowed);
    assert_eq!(store.hit_all(&group(&other, 5), at).await.unwrap(), RateDecision::Allowed, "the wide one's 3rd");
    assert_eq!(
        store.hit_all(&group(&other, 5), at).await.unwrap(),
        RateDecision::Limited { retry_after_secs: 3500 },
        "the wide counter is full now"
    );

    // Concurrent groups on one shared counter: exactly its limit get through.
    let id = facemake::domain::new_id();
    let tasks: Vec<_> = (0..12)
        .map(|i| {
            let (store, id) = (store.clone(), id.clone());
            tokio::spawn(async move {
                let counters = [
                    Counter { key: format!("test:all:{id}"), window_secs: 3600, limit: 5 },
                    Counter { key: format!("test:one:{id}:{}", i % 3), window_secs: 3600, limit: 10 },
                ];
                store.hit_all(&counters, NOW).await.unwrap()
            })
        })
        .collect();
    let mut allowed = 0;
    for t in tasks {
        allowed += usize::from(t.await.unwrap() == RateDecision::Allowed);
    }
    assert_eq!(allowed, 5);
}

fn new_user(p: &PhoneNumber, grant: u64) -> NewUser {
    NewUser {
        id: UserId::new(),
        phone: p.clone(),
        created_at: NOW,
        starter_grant: (grant > 0)
            .then(|| LedgerEntry::new(LedgerKind::Grant, grant as i64, grant, "starter-grant", NOW)),
        number_key: Some(format!("mark-of-{}", p.e164())),
    }
}

async fn accounts_are_created_once_per_number_with_their_grant(store: Arc<dyn Store>) {
    let p = unique_phone();
    assert_eq!(store.find_by_phone(&p).await.unwrap(), None);
    let user = new_user(&p, 3);
    let CreateOutcome::Created(account) = store.create_user(&user).await.unwrap() else { panic!("not created") };
    assert_eq!((account.credits, account.phone.as_str()), (3, p.e164()));
    assert_eq!(store.find_by_phone(&p).await.unwrap(), Some(user.id.clone()));
    assert_eq!(store.get_user(&user.id).await.unwrap(), Some(account));
    assert_eq!(store.create_user(&new_user(&p, 3)).await.unwrap(), CreateOutcome::PhoneTaken(user.id.clone()));

    let ledger = store.ledger(&user.id, 10).await.unwrap();
    assert_eq!(ledger.len(), 1);
    assert_eq!((ledger[0].kind, ledger[0].amount, ledger[0].balance_after), (LedgerKind::Grant, 3, 3));
    let sum: i64 = ledger.iter().map(|e| e.amount).sum();
    assert_eq!(sum, store.get_user(&user.id).await.unwrap().unwrap().credits as i64, "ledger sums to the balance");

    let zero = new_user(&unique_phone(), 0);
    let CreateOutcome::Created(account) = store.create_user(&zero).await.unwrap() else { panic!("not created") };
    assert_eq!(account.credits, 0);
    assert!(store.ledger(&zero.id, 10).await.unwrap().is_empty(), "no grant, no entry");
    assert_eq!(store.get_user(&UserId::new()).await.unwrap(), None);
}

async fn accounts_concurrent_first_sign_ins_create_one_user(store: Arc<dyn Store>) {
    let p = unique_phone();
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let (store, user) = (store.clone(), new_user(&p, 3));
            tokio::spawn(async move { store.create_user(&user).await.unwrap() })
        })
        .collect();
    let mut created = Vec::new();
    let mut taken = HashSet::new();
    for t in tasks {
        match t.await.unwrap() {
            CreateOutcome::Created(a) => created.push(a.id),
            CreateOutcome::PhoneTaken(id) => {
                taken.insert(id);
            }
        }
    }
    assert_eq!(created.len(), 1, "exactly one user per number");
    assert!(taken.iter().all(|id| *id == created[0]), "losers are pointed at the winner");
    assert_eq!(store.ledger(&created[0], 10).await.unwrap().len(), 1, "one starter grant");
}

async fn accounts_profile_updates_and_session_revocation(store: Arc<dyn Store>) {
    let user = new_user(&unique_phone(), 3);
    store.create_user(&user).await.unwrap();
    let named = store.set_display_name(&user.id, Some("Ada")).await.unwrap().unwrap();
    assert_eq!((named.display_name.as_deref(), named.credits), (Some("Ada"), 3));
    let cleared = store.set_display_name(&user.id, None).await.unwrap().unwrap();
    assert_eq!(cleared.display_name, None);
    assert_eq!(store.set_display_name(&UserId::new(), Some("x")).await.unwrap(), None, "no such user");
    // Both writable fields in one write, and back; a change of nothing reads the profile.
    let both = ProfileUpdate { display_name: Some(Some("Grace")), consumption_consent: Some(true) };
    let changed = store.update_profile(&user.id, &both).await.unwrap().unwrap();
    assert_eq!((changed.display_name.as_deref(), changed.consumption_consent), (Some("Grace"), true));
    let back = ProfileUpdate { display_name: Some(None), consumption_consent: Some(false) };
    let changed = store.update_profile(&user.id, &back).await.unwrap().unwrap();
    assert_eq!((changed.display_name, changed.consumption_consent), (None, false));
    let consent = store.set_consumption_consent(&user.id, true).await.unwrap().unwrap();
    assert!(consent.consumption_consent);
    let nothing = store.update_profile(&user.id, &ProfileUpdate::default()).await.unwrap().unwrap();
    assert_eq!((nothing.display_name, nothing.consumption_consent, nothing.credits), (None, true, 3));
    assert_eq!(store.update_profile(&UserId::new(), &both).await.unwrap(), None, "no such user");

    store.revoke_sessions(&user.id, NOW + 5).await.unwrap();
    assert_eq!(store.get_user(&user.id).await.unwrap().unwrap().sessions_revoked_at, Some(NOW + 5));
    store.revoke_sessions(&UserId::new(), NOW).await.unwrap();
}

fn refresh(user: &UserId, family: &str) -> RefreshRecord {
    RefreshRecord {
        token_hash: facemake::crypto::sha256_b64(facemake::domain::new_id().as_bytes()),
        user_id: user.clone(),
        family_id: family.to_owned(),
        family_created_at: NOW,
        expires_at: NOW + 30 * 86400,
        state: RefreshState::Active,
        rotated: None,
    }
}

fn by(client: &str) -> Rotation {
    Rotation { at: NOW, by: client.to_owned() }
}

async fn sessions_rotate_once_and_respect_revoked_families(store: Arc<dyn Store>) {
    let user = UserId::new();
    let family = facemake::domain::new_id();
    let first = refresh(&user, &family);
    store.create_session(&first).await.unwrap();
    assert_eq!(store.find_session(&first.token_hash).await.unwrap(), Some(first.clone()));
    assert_eq!(store.find_session("unknown").await.unwrap(), None);

    let second = refresh(&user, &family);
    assert_eq!(store.rotate(&first.token_hash, &second, &by("client-a")).await.unwrap(), RotateOutcome::Rotated);
    let spent = store.find_session(&first.token_hash).await.unwrap().unwrap();
    assert_eq!((spent.state, spent.rotated), (RefreshState::Rotated, Some(by("client-a"))), "who rotated it, when");
    assert_eq!(store.find_session(&second.token_hash).await.unwrap().unwrap().state, RefreshState::Active);
    assert_eq!(
        store.rotate(&first.token_hash, &refresh(&user, &family), &by("client-b")).await.unwrap(),
        RotateOutcome::AlreadyRotated,
        "a spent token cannot be spent again"
    );

    store.revoke_family(&family, &user, NOW).await.unwrap();
    assert_eq!(
        store.rotate(&second.token_hash, &refresh(&user, &family), &by("client-a")).await.unwrap(),
        RotateOutcome::FamilyRevoked
    );
    assert_eq!(store.find_session(&second.token_hash).await.unwrap().unwrap().state, RefreshState::Active, "unchanged");
}

async fn sessions_concurrent_rotations_of_one_token_let_one_win(store: Arc<dyn Store>) {
    let user = UserId::new();
    let family = facemake::domain::new_id();
    let first = refresh(&user, &family);
    store.create_session(&first).await.unwrap();
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let (store, old, next) = (store.clone(), first.token_hash.clone(), refresh(&user, &family));
            tokio::spawn(async move { store.rotate(&old, &next, &by("client-a")).await.unwrap() })
        })
        .collect();
    let mut rotated = 0;
    for t in tasks {
        match t.await.unwrap() {
            RotateOutcome::Rotated => rotated += 1,
            RotateOutcome::AlreadyRotated => {}
            RotateOutcome::FamilyRevoked => panic!("family was never revoked"),
        }
    }
    assert_eq!(rotated, 1);
}

#[test]
fn memory_store_is_a_store() {
    // Keeps the in-memory adapter honest about implementing every port the DynamoDB one does.
    fn assert_store<T: Store>() {}
    assert_store::<MemoryStore>();
    assert_store::<facemake::adapters::dynamodb::DynamoStore>();
    let _ = dynamodb_store;
}
