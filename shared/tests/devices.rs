//! Push devices and the pushes of ended generations — a token belongs to the last user who registered it
//! (under concurrency too), a device is removed only by its user, APNs' "unregistered" drops a registration
//! only if it is older than APNs' report, a deleted account registers nothing and loses its devices, and a
//! push (sent, dropped or failed) never changes the generation's outcome — on the in-memory store and on
//! DynamoDB Local.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use facemake::domain::{
    object_keys, Device, DeviceToken, GenerationSource, GenerationStatus, LedgerEntry, LedgerKind, PhoneNumber,
    PushEnvironment, TemplateId, UploadId, UserId,
};
use facemake::metrics::Metric;
use facemake::ports::{Clock, JobRef, NewUser, ObjectStore, Push, PushOutcome, PushSender, Written};
use facemake::services::generation::{JobResult, REASON_MISSING_UPLOAD};
use facemake::services::notifications::{Ending, Notifications, Pushed, MAX_DEVICES_PUSHED};
use facemake::wiring::Store;
use testkit::Harness;

testkit::store_contract!(
    a_token_belongs_to_the_last_user_who_registered_it,
    registrations_racing_for_one_token_leave_exactly_one_owner,
    unregistered_drops_only_a_registration_older_than_apns_report,
    devices_are_newest_first_capped_and_expire,
    a_deleted_account_registers_nothing_and_erasure_takes_only_its_devices,
);

mod pushes {
    use super::*;
    testkit::harness_on_both_stores!(
        a_success_is_pushed_to_every_device_and_an_unregistered_one_is_dropped,
        a_failure_is_pushed_with_its_reason,
        a_failed_push_never_fails_the_generation_and_is_not_retried,
        the_reconciler_pushes_the_jobs_it_refunds,
    );
}

fn token(n: u8) -> DeviceToken {
    DeviceToken::parse(&format!("{n:02x}").repeat(32)).unwrap()
}

fn tokens(devices: &[Device]) -> Vec<DeviceToken> {
    devices.iter().map(|d| d.token.clone()).collect()
}

const NOW: i64 = 1_800_000_000;

async fn a_token_belongs_to_the_last_user_who_registered_it(store: Arc<dyn Store>) {
    let (a, b) = (UserId::new(), UserId::new());
    let t = token(1);
    assert_eq!(store.register_device(&a, &t, PushEnvironment::Sandbox, NOW).await.unwrap(), Written::Yes);
    assert_eq!(tokens(&store.devices(&a, 10, NOW).await.unwrap()), std::slice::from_ref(&t));
    // Registered again by the same user (every launch): still one device, renewed, in its new environment.
    store.register_device(&a, &t, PushEnvironment::Production, NOW + 5).await.unwrap();
    let mine = store.devices(&a, 10, NOW + 5).await.unwrap();
    assert_eq!(mine.len(), 1);
    assert_eq!((mine[0].environment, mine[0].registered_at), (PushEnvironment::Production, NOW + 5));
    // Another user signs in on the device: the token moves.
    store.register_device(&b, &t, PushEnvironment::Production, NOW + 10).await.unwrap();
    assert!(store.devices(&a, 10, NOW + 10).await.unwrap().is_empty(), "the first user lost it");
    assert_eq!(tokens(&store.devices(&b, 10, NOW + 10).await.unwrap()), std::slice::from_ref(&t));
    // The first user cannot remove it any more; its holder can, once.
    assert!(!store.remove_device(&a, &t, None).await.unwrap());
    assert_eq!(tokens(&store.devices(&b, 10, NOW + 10).await.unwrap()), std::slice::from_ref(&t));
    assert!(store.remove_device(&b, &t, None).await.unwrap());
    assert!(!store.remove_device(&b, &t, None).await.unwrap(), "a second removal removes nothing");
    assert!(store.devices(&b, 10, NOW + 10).await.unwrap().is_empty());
}

async fn registrations_racing_for_one_token_leave_exactly_one_owner(store: Arc<dyn Store>) {
    for round in 0..3u8 {
        let t = token(100 + round);
        let users: Vec<UserId> = (0..6).map(|_| UserId::new()).collect();
        let registrations = users.iter().map(|u| {
            let (store, t) = (store.clone(), t.clone());
            let u = u.clone();
            tokio::spawn(async move { store.register_device(&u, &t, PushEnvironment::Production, NOW).await })
        });
        for r in futures_util::future::join_all(registrations).await {
            assert_eq!(r.unwrap().unwrap(), Written::Yes);
        }
        let mut owners = 0;
        for u in &users {
            owners += store.devices(u, 10, NOW).await.unwrap().iter().filter(|d| d.token == t).count();
        }
        assert_eq!(owners, 1, "round {round}: one token, one owner");
    }
}

async fn unregistered_drops_only_a_registration_older_than_apns_report(store: Arc<dyn Store>) {
    let user = UserId::new();
    let t = token(2);
    store.register_device(&user, &t, PushEnvironment::Sandbox, NOW).await.unwrap();
    // APNs learnt the token was gone at NOW: the registration of NOW (the app registered it again at that
    // very second, or after) is not older, so it stays.
    assert!(!store.remove_device(&user, &t, Some(NOW)).await.unwrap());
    assert_eq!(store.devices(&user, 10, NOW).await.unwrap().len(), 1);
    assert!(store.remove_device(&user, &t, Some(NOW + 1)).await.unwrap());
    assert!(store.devices(&user, 10, NOW).await.unwrap().is_empty());
}

async fn devices_are_newest_first_capped_and_expire(store: Arc<dyn Store>) {
    let user = UserId::new();
    for n in 0..12u8 {
        store.register_device(&user, &token(10 + n), PushEnvironment::Production, NOW + i64::from(n)).await.unwrap();
    }
    let newest = store.devices(&user, MAX_DEVICES_PUSHED, NOW + 20).await.unwrap();
    let expected: Vec<DeviceToken> = (2..12u8).rev().map(|n| token(10 + n)).collect();
    assert_eq!(tokens(&newest), expected, "the ten most recently registered, newest first");
    // Past its lifetime a registration is no longer pushed to, whether or not TTL has deleted it yet.
    let later = NOW + Device::LIFETIME_SECS + 5;
    let left = store.devices(&user, MAX_DEVICES_PUSHED, later).await.unwrap();
    assert_eq!(tokens(&left), [token(21), token(20), token(19), token(18), token(17), token(16)]);
}

fn unique_phone() -> PhoneNumber {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1000);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    PhoneNumber::parse(&format!("+1415888{n:04}"), None).unwrap()
}

async fn a_deleted_account_registers_nothing_and_erasure_takes_only_its_devices(store: Arc<dyn Store>) {
    let (a, b) = (UserId::new(), UserId::new());
    store.register_device(&a, &token(3), PushEnvironment::Sandbox, NOW).await.unwrap();
    store.register_device(&a, &token(4), PushEnvironment::Production, NOW).await.unwrap();
    store.register_device(&b, &token(5), PushEnvironment::Production, NOW).await.unwrap();
    store.mark_deleted(&a, NOW).await.unwrap();
    // A registration that passed the guard just before the deletion began lands nowhere.
    assert_eq!(store.register_device(&a, &token(6), PushEnvironment::Sandbox, NOW).await.unwrap(), Written::Conflict);
    assert_eq!(store.erase_devices(&a).await.unwrap(), 2);
    assert!(store.devices(&a, 10, NOW).await.unwrap().is_empty());
    assert_eq!(tokens(&store.devices(&b, 10, NOW).await.unwrap()), [token(5)], "another user's device stays");
    assert_eq!(store.erase_devices(&a).await.unwrap(), 0, "idempotent");
}

/// A user with credits, an upload, and a generation of neon-noir from it, queued.
async fn queued(h: &Harness, photo: bool) -> JobRef {
    let store = h.deps.store.clone();
    facemake::services::catalogue::seed_catalogue(
        store.as_ref(),
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../infra/catalogue/catalogue.yaml"),
    )
    .await
    .unwrap();
    let user = UserId::new();
    let now = h.clock.now();
    let grant = LedgerEntry::new(LedgerKind::Grant, 10, 10, "starter-grant", now);
    let new = NewUser {
        id: user.clone(),
        phone: unique_phone(),
        created_at: now,
        starter_grant: Some(grant),
        number_key: None,
    };
    store.create_user(&new).await.unwrap();
    let upload = UploadId::new();
    if photo {
        h.objects.put(&object_keys::upload(&user, &upload), testkit::camera_photo(64, 48), "image/jpeg").await.unwrap();
    } else {
        // The start checks the upload exists; it is gone (expired) by the time the worker reads it.
        h.objects.put(&object_keys::upload(&user, &upload), vec![1], "image/jpeg").await.unwrap();
    }
    let generations = h.deps.generations(Arc::new(h.deps.catalogue_service()));
    let ready = std::future::ready(Ok(false));
    let started = generations
        .start(&user, "key", &TemplateId::parse("neon-noir").unwrap(), &GenerationSource::Upload(upload.clone()), ready)
        .await
        .unwrap();
    if !photo {
        h.objects.delete(&[object_keys::upload(&user, &upload)]).await.unwrap();
    }
    JobRef { user_id: user, generation_id: started.generation.id.clone() }
}

async fn register(h: &Harness, user: &UserId, t: &DeviceToken) {
    let notifications = h.deps.notifications();
    assert_eq!(notifications.register(user, t, PushEnvironment::Sandbox).await.unwrap(), Written::Yes);
}

async fn a_success_is_pushed_to_every_device_and_an_unregistered_one_is_dropped(h: Harness) {
    let job = queued(&h, true).await;
    let (kept, gone) = (token(7), token(8));
    register(&h, &job.user_id, &kept).await;
    register(&h, &job.user_id, &gone).await;
    h.pushes.unregister(gone.as_str());
    let result = h.deps.worker().process(&job).await.unwrap();
    assert!(matches!(result, JobResult::Succeeded { .. }), "{result:?}");
    let pushed = h.pushes.pushes_to(kept.as_str());
    assert_eq!(pushed.len(), 1, "one push per ended generation");
    assert_eq!(pushed[0].payload["generationId"], job.generation_id.as_str());
    assert_eq!(pushed[0].payload["status"], "succeeded");
    assert_eq!(pushed[0].payload["aps"]["alert"]["title"], "Your portrait is ready");
    let left = h.deps.store.devices(&job.user_id, 10, h.clock.now()).await.unwrap();
    assert_eq!(tokens(&left), [kept], "the unregistered token was dropped");
    assert_eq!(h.metrics.total(Metric::PushesSent), 1.0);
    assert_eq!(h.metrics.total(Metric::DevicesDropped), 1.0);
    assert_eq!(h.metrics.total(Metric::PushesFailed), 0.0);
}

async fn a_failure_is_pushed_with_its_reason(h: Harness) {
    let job = queued(&h, false).await;
    let t = token(9);
    register(&h, &job.user_id, &t).await;
    let result = h.deps.worker().process(&job).await.unwrap();
    assert_eq!(result, JobResult::Failed { reason: REASON_MISSING_UPLOAD.to_owned() });
    let pushed = h.pushes.pushes_to(t.as_str());
    assert_eq!(pushed.len(), 1);
    assert_eq!(pushed[0].payload["status"], "failed");
    assert_eq!(pushed[0].payload["aps"]["alert"]["body"], REASON_MISSING_UPLOAD);
    let g = h.deps.store.generation(&job.user_id, &job.generation_id).await.unwrap().unwrap();
    assert!(g.refunded);
}

/// A push service that fails every call, counting them.
#[derive(Default)]
struct Down(Mutex<usize>);

#[async_trait]
impl PushSender for Down {
    async fn send(&self, _: &Device, _: &Push) -> PushOutcome {
        *self.0.lock().unwrap() += 1;
        PushOutcome::Failed("APNs 500: InternalServerError".to_owned())
    }
}

async fn a_failed_push_never_fails_the_generation_and_is_not_retried(h: Harness) {
    let job = queued(&h, true).await;
    let t = token(11);
    register(&h, &job.user_id, &t).await;
    let down = Arc::new(Down::default());
    let mut worker = h.deps.worker();
    worker.notifications = Arc::new(Notifications {
        devices: h.deps.store.clone(),
        sender: down.clone(),
        clock: h.clock.clone(),
        metrics: h.deps.metrics.clone(),
    });
    let result = worker.process(&job).await.unwrap();
    assert!(matches!(result, JobResult::Succeeded { .. }), "{result:?}");
    let g = h.deps.store.generation(&job.user_id, &job.generation_id).await.unwrap().unwrap();
    assert_eq!(g.status, GenerationStatus::Succeeded);
    assert_eq!(*down.0.lock().unwrap(), 1, "tried once, not retried");
    assert_eq!(h.metrics.total(Metric::PushesFailed), 1.0);
    // The device stays: a failure is not APNs saying the app is gone.
    assert_eq!(tokens(&h.deps.store.devices(&job.user_id, 10, h.clock.now()).await.unwrap()), [t]);
    // A redelivery of the job skips it, and pushes nothing more.
    assert_eq!(worker.process(&job).await.unwrap(), JobResult::Skipped);
    assert_eq!(*down.0.lock().unwrap(), 1);
}

async fn the_reconciler_pushes_the_jobs_it_refunds(h: Harness) {
    let job = queued(&h, true).await;
    let t = token(12);
    register(&h, &job.user_id, &t).await;
    h.clock.advance(3 * 3600);
    let worker = h.deps.worker();
    assert!(worker.reconcile().await.unwrap() >= 1);
    let pushed = h.pushes.pushes_to(t.as_str());
    assert_eq!(pushed.len(), 1, "{pushed:?}");
    assert_eq!(pushed[0].payload["status"], "failed");
    assert_eq!(pushed[0].payload["generationId"], job.generation_id.as_str());
    // Its next run finds nothing to refund and pushes nothing.
    worker.reconcile().await.unwrap();
    assert_eq!(h.pushes.pushes_to(t.as_str()).len(), 1);
}

#[tokio::test]
async fn pushes_of_one_generation_say_how_it_ended() {
    let h = Harness::in_memory();
    let user = UserId::new();
    register(&h, &user, &token(13)).await;
    let notifications = h.deps.notifications();
    let sent = notifications.generation_ended(&user, "01GEN", Ending::Failed { reason: "Try another photo." }).await;
    assert_eq!(sent, Pushed { sent: 1, failed: 0, dropped: 0 });
    let push = &h.pushes.pushes_to(token(13).as_str())[0];
    assert_eq!(push.payload["aps"]["alert"]["title"], "Your portrait could not be made");
    assert_eq!(push.payload["aps"]["alert"]["body"], "Try another photo.");
    // A user without devices: nothing sent, nothing failed.
    let none = notifications.generation_ended(&UserId::new(), "01GEN", Ending::Succeeded).await;
    assert_eq!(none, Pushed::default());
}
