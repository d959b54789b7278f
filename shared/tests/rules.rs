//! The domain's transition rules against the stores' conditional writes: for every case, what a store does
//! must be what the rule says of the record as it was stored. The memory store calls the rules; the DynamoDB
//! store writes them as condition expressions, so this is where the two are held to the same answers.
//!
//! - `Generation::claimable` ↔ `GenerationStore::claim`
//! - `Generation::can_fail` ↔ `GenerationStore::fail_and_refund`
//! - `Generation::held_by` ↔ `GenerationStore::succeed`
//! - `Generation::awaits` ↔ `GenerationStore::succeed_callback` (and `can_fail` with `FailFrom::Callback`)
//! - `OtpRecord::refusal` ↔ `OtpStore::reserve_attempt`

use std::sync::Arc;

use facemake::domain::{
    FailFrom, Generation, GenerationSource, GenerationSpec, GenerationStatus, LedgerEntry, LedgerKind, OtpRecord,
    PhoneNumber, Provider, TemplateId, Timings, UnixTime, UploadId, UserId,
};
use facemake::ports::{
    AttemptOutcome, ClaimOutcome, FailOutcome, IdempotencyRecord, JobRef, NewGeneration, NewUser, StartOutcome, Written,
};
use facemake::wiring::Store;

testkit::store_contract!(
    claim_agrees_with_generation_claimable,
    fail_and_refund_agrees_with_generation_can_fail,
    succeed_agrees_with_generation_held_by,
    succeed_callback_agrees_with_generation_awaits,
    reserve_attempt_agrees_with_otp_refusal,
);

const T0: UnixTime = 1_800_000_000;
/// Every job's deadline.
const DEADLINE: UnixTime = T0 + 1_000;
/// The claim a set-up worker takes, and until when.
const TOKEN: &str = "claim-1";
const CLAIM_UNTIL: UnixTime = T0 + 200;

/// The states a job can be in, reached through the store's own transitions.
#[derive(Debug, Clone, Copy)]
enum Setup {
    Queued,
    /// Claimed at T0 + 100 until CLAIM_UNTIL, for the stream record `d1` (or in process).
    Processing {
        delivery: Option<&'static str>,
    },
    /// Claimed and released at T0 + 150 (the claim ran out then).
    Released,
    Succeeded,
    Failed,
    /// Claimed, then handed to a provider that calls back at T0 + 150, as prediction `p1`.
    Awaiting,
}

/// The prediction an awaiting job waits for.
const PREDICTION: &str = "p1";

const SETUPS: [Setup; 7] = [
    Setup::Queued,
    Setup::Processing { delivery: None },
    Setup::Processing { delivery: Some("d1") },
    Setup::Released,
    Setup::Succeeded,
    Setup::Failed,
    Setup::Awaiting,
];

/// Times around every boundary the rules have: the claim's end and the deadline.
const TIMES: [UnixTime; 7] =
    [T0 + 150, CLAIM_UNTIL - 1, CLAIM_UNTIL, CLAIM_UNTIL + 1, DEADLINE - 1, DEADLINE, DEADLINE + 1];

async fn user(store: &Arc<dyn Store>) -> UserId {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let id = UserId::new();
    let grant = LedgerEntry::new(LedgerKind::Grant, 1_000_000, 1_000_000, "starter-grant", T0);
    let phone = PhoneNumber::parse(&format!("+1415666{n:04}"), None).unwrap();
    store
        .create_user(&NewUser { id: id.clone(), phone, created_at: T0, starter_grant: Some(grant), number_key: None })
        .await
        .unwrap();
    id
}

/// A fresh job in `setup`, and the record as stored.
async fn job(store: &Arc<dyn Store>, user: &UserId, setup: Setup) -> (JobRef, Generation) {
    let id = facemake::domain::new_id();
    let generation = Generation {
        id: id.clone(),
        user_id: user.clone(),
        template_id: TemplateId::parse("neon-noir").unwrap(),
        source: GenerationSource::Upload(UploadId::new()),
        input_keys: Vec::new(),
        spec: GenerationSpec {
            provider: Provider::Openai,
            model: "gpt-image-1".into(),
            prompt: "p".into(),
            params: Default::default(),
        },
        status: GenerationStatus::Queued,
        credits_charged: 1,
        refunded: false,
        output_key: None,
        failure_reason: None,
        created_at: T0,
        deadline: DEADLINE,
        started_at: None,
        completed_at: None,
        attempts: 0,
        claim: None,
        claim_until: None,
        claim_delivery: None,
        timings: None,
        prediction: None,
    };
    let new = NewGeneration {
        idempotency: IdempotencyRecord {
            key_hash: format!("key-{id}"),
            request_hash: "r".into(),
            generation_id: id.clone(),
            balance: 0,
            created_at: T0,
        },
        generation,
        max_in_flight: 1_000,
        balance_read: None,
    };
    assert!(matches!(store.start_generation(&new, T0).await.unwrap(), StartOutcome::Started { .. }));
    let job = JobRef { user_id: user.clone(), generation_id: id };
    let claim = |delivery: Option<&'static str>| {
        let (store, job) = (store.clone(), job.clone());
        async move {
            let outcome = store.claim(&job, TOKEN, delivery, CLAIM_UNTIL, T0 + 100).await.unwrap();
            assert!(matches!(outcome, ClaimOutcome::Claimed(_)), "set-up claim: {outcome:?}");
        }
    };
    match setup {
        Setup::Queued => {}
        Setup::Processing { delivery } => claim(delivery).await,
        Setup::Released => {
            claim(None).await;
            store.release(&job, TOKEN, T0 + 150).await.unwrap();
        }
        Setup::Succeeded => {
            claim(None).await;
            let written = store.succeed(&job, TOKEN, "outputs/x.png", Timings::default(), T0 + 120).await.unwrap();
            assert_eq!(written, Written::Yes);
        }
        Setup::Failed => {
            claim(None).await;
            let outcome = store.fail_and_refund(&job, FailFrom::Claim(TOKEN.into()), "r", T0 + 120).await.unwrap();
            assert!(matches!(outcome, FailOutcome::Refunded { .. }));
        }
        Setup::Awaiting => {
            claim(Some("d1")).await;
            assert_eq!(store.await_callback(&job, TOKEN, PREDICTION, T0 + 150).await.unwrap(), Written::Yes);
        }
    }
    let stored = store.generation(user, &job.generation_id).await.unwrap().unwrap();
    (job, stored)
}

async fn claim_agrees_with_generation_claimable(store: Arc<dyn Store>) {
    let user = user(&store).await;
    let (mut allowed, mut refused) = (0, 0);
    for setup in SETUPS {
        for delivery in [None, Some("d1"), Some("d2")] {
            for now in TIMES {
                let (job, before) = job(&store, &user, setup).await;
                let rule = before.claimable(delivery, now);
                let outcome = store.claim(&job, "claim-2", delivery, now + 300, now).await.unwrap();
                let case = format!("{setup:?}, delivery {delivery:?}, at T0+{}", now - T0);
                match outcome {
                    ClaimOutcome::Claimed(g) => {
                        assert!(rule, "{case}: the store let a claim through that the rule refuses");
                        assert!(g.held_by("claim-2"), "{case}: claimed but not held");
                        allowed += 1;
                    }
                    ClaimOutcome::NotClaimable(g) => {
                        assert!(!rule, "{case}: the store refused a claim the rule allows");
                        assert_eq!(g, before, "{case}: a refused claim changed the record");
                        refused += 1;
                    }
                    ClaimOutcome::Missing => panic!("{case}: the job went missing"),
                }
            }
        }
    }
    // Both answers were exercised, so neither branch of the rule is untested.
    assert!(allowed > 10 && refused > 10, "allowed {allowed}, refused {refused}");
}

async fn fail_and_refund_agrees_with_generation_can_fail(store: Arc<dyn Store>) {
    let user = user(&store).await;
    let (mut allowed, mut refused) = (0, 0);
    let mut froms: Vec<FailFrom> = vec![
        FailFrom::Claim(TOKEN.into()),
        FailFrom::Claim("someone-else".into()),
        FailFrom::Callback(PREDICTION.into()),
        FailFrom::Callback("p2".into()),
    ];
    froms.extend(TIMES.iter().map(|at| FailFrom::DeadlinePassed(*at)));
    for setup in SETUPS {
        for from in &froms {
            let (job, before) = job(&store, &user, setup).await;
            let rule = before.can_fail(from);
            let balance_before = store.balance(&user).await.unwrap();
            let outcome = store.fail_and_refund(&job, from.clone(), "rule test", T0 + 1).await.unwrap();
            let after = store.generation(&user, &job.generation_id).await.unwrap().unwrap();
            let case = format!("{setup:?}, {from:?}");
            match outcome {
                FailOutcome::Refunded { balance } => {
                    assert!(rule, "{case}: the store failed a job the rule protects");
                    assert_eq!(after.status, GenerationStatus::Failed, "{case}");
                    assert_eq!(balance, balance_before + 1, "{case}: refunded exactly the charge");
                    allowed += 1;
                }
                FailOutcome::NotApplicable => {
                    assert!(!rule, "{case}: the store kept a job the rule lets fail");
                    assert_eq!(after, before, "{case}: a refused failure changed the record");
                    refused += 1;
                }
            }
        }
    }
    assert!(allowed > 5 && refused > 5, "allowed {allowed}, refused {refused}");
}

async fn succeed_agrees_with_generation_held_by(store: Arc<dyn Store>) {
    let user = user(&store).await;
    for setup in SETUPS {
        for token in [TOKEN, "someone-else"] {
            let (job, before) = job(&store, &user, setup).await;
            let rule = before.held_by(token);
            let written = store.succeed(&job, token, "outputs/y.png", Timings::default(), T0 + 130).await.unwrap();
            let after = store.generation(&user, &job.generation_id).await.unwrap().unwrap();
            assert_eq!(written == Written::Yes, rule, "{setup:?}, token {token}");
            if rule {
                assert_eq!(after.status, GenerationStatus::Succeeded);
            } else {
                assert_eq!(after, before, "{setup:?}, token {token}: a refused success changed the record");
            }
        }
    }
}

async fn succeed_callback_agrees_with_generation_awaits(store: Arc<dyn Store>) {
    let user = user(&store).await;
    let mut allowed = 0;
    for setup in SETUPS {
        for prediction in [PREDICTION, "p2"] {
            let (job, before) = job(&store, &user, setup).await;
            let rule = before.awaits(prediction);
            let written =
                store.succeed_callback(&job, prediction, "outputs/z.png", Timings::default(), T0 + 160).await.unwrap();
            let after = store.generation(&user, &job.generation_id).await.unwrap().unwrap();
            assert_eq!(written == Written::Yes, rule, "{setup:?}, prediction {prediction}");
            if rule {
                assert_eq!(
                    (after.status, after.output_key.as_deref()),
                    (GenerationStatus::Succeeded, Some("outputs/z.png"))
                );
                allowed += 1;
            } else {
                assert_eq!(after, before, "{setup:?}, prediction {prediction}: a refused success changed the record");
            }
        }
        // Handing over needs the claim: only a job held by the token can be handed over, once.
        let (job, before) = job(&store, &user, setup).await;
        let written = store.await_callback(&job, TOKEN, "p9", T0 + 170).await.unwrap();
        assert_eq!(written == Written::Yes, before.held_by(TOKEN), "{setup:?}: hand-over");
    }
    assert_eq!(allowed, 1, "only the awaiting job, for its own prediction");
}

async fn reserve_attempt_agrees_with_otp_refusal(store: Arc<dyn Store>) {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    const MAX: u32 = 5;
    let expiry = T0 + 300;
    let mut cases: Vec<(Option<&str>, u32, bool)> = Vec::new();
    for code in [None, Some("hash")] {
        for attempts in [0, MAX - 1, MAX, MAX + 1] {
            for used in [false, true] {
                cases.push((code, attempts, used));
            }
        }
    }
    let (mut reserved, mut refused) = (0, 0);
    for (code, attempts, used) in cases {
        for now in [T0, expiry - 1, expiry, expiry + 1] {
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let phone = PhoneNumber::parse(&format!("+1415555{n:04}"), None).unwrap();
            let record = OtpRecord {
                version: 1,
                code_id: code.map(|_| "code-1".to_owned()),
                code_hash: code.map(str::to_owned),
                expires_at: expiry,
                attempts,
                used,
                last_sent_at: T0,
                sent_at: vec![T0],
                ..OtpRecord::empty(phone.e164())
            };
            assert_eq!(store.replace(&record, 0).await.unwrap(), Written::Yes);
            let rule = record.refusal(MAX, now);
            let outcome = store.reserve_attempt(&phone, MAX, now).await.unwrap();
            let case = format!("code {code:?}, attempts {attempts}, used {used}, at expiry{:+}", now - expiry);
            match (rule, outcome) {
                (None, AttemptOutcome::Reserved(r)) => {
                    assert_eq!(r.attempts, attempts + 1, "{case}");
                    reserved += 1;
                }
                (Some(refusal), outcome) => {
                    assert_eq!(outcome, AttemptOutcome::from(refusal), "{case}");
                    let stored = store.load(&phone).await.unwrap().unwrap();
                    assert_eq!(stored.attempts, attempts, "{case}: a refused attempt was counted");
                    refused += 1;
                }
                (None, outcome) => panic!("{case}: the rule allows an attempt, the store answered {outcome:?}"),
            }
        }
    }
    assert!(reserved > 3 && refused > 20, "reserved {reserved}, refused {refused}");
}
