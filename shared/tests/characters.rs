//! Characters — the per-user cap under concurrency, pages, renames and deletes that count once, photos
//! prepared once and read as they are by the worker, generation sources that are only the caller's own, and
//! the profile's counters — on the in-memory store and on DynamoDB Local.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use facemake::domain::{
    object_keys, Character, CharacterId, CharacterName, GenerationSource, GenerationStatus, LedgerEntry, LedgerKind,
    PhoneNumber, TemplateId, UploadId, UserId,
};
use facemake::ports::{
    CreateCharacterOutcome, ImageProvider, JobRef, NewUser, ObjectStore, ProviderError, RenderRequest, RenderedImage,
};
use facemake::services::characters::CreateError;
use facemake::services::generation::{JobResult, Providers, StartError, REASON_MISSING_SOURCE};
use facemake::wiring::Store;
use testkit::Harness;

testkit::store_contract!(
    the_cap_holds_and_a_delete_frees_a_slot_once,
    creates_racing_for_the_last_slot_let_exactly_one_in,
    pages_are_newest_first_and_renames_touch_only_the_owners_character,
    a_character_is_prepared_once_and_the_worker_reads_its_photos_as_they_are,
    a_provider_that_fetches_by_url_gets_every_photos_url_and_no_bytes,
    bad_uploads_store_nothing,
    two_creates_for_the_tenth_slot_through_the_service_make_one_character,
    sources_are_the_callers_own_and_the_key_covers_the_source,
    a_restyle_renders_the_parents_output_and_deletes_only_its_own_images,
    deleting_a_character_keeps_generations_and_fails_a_queued_one_with_a_refund,
    the_profile_counts_what_the_user_has,
    a_create_that_outlasts_the_accounts_deletion_writes_nothing,
    a_create_whose_answer_is_lost_after_the_commit_keeps_its_photos,
);

fn unique_phone() -> PhoneNumber {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1000);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    PhoneNumber::parse(&format!("+1415666{n:04}"), None).unwrap()
}

async fn user(store: &dyn Store, credits: u64) -> UserId {
    let id = UserId::new();
    let grant = LedgerEntry::new(LedgerKind::Grant, credits as i64, credits, "starter-grant", 1);
    let new =
        NewUser { id: id.clone(), phone: unique_phone(), created_at: 1, starter_grant: Some(grant), number_key: None };
    store.create_user(&new).await.unwrap();
    id
}

fn record(user: &UserId, name: &str) -> Character {
    Character {
        id: CharacterId::new(),
        user_id: user.clone(),
        name: name.to_owned(),
        photo_count: 2,
        created_at: 10,
        updated_at: 10,
    }
}

async fn the_cap_holds_and_a_delete_frees_a_slot_once(store: Arc<dyn Store>) {
    let u = user(store.as_ref(), 0).await;
    let mut made = Vec::new();
    for i in 0..3 {
        let c = record(&u, &format!("c{i}"));
        assert_eq!(store.create_character(&c, 3).await.unwrap(), CreateCharacterOutcome::Created);
        made.push(c);
    }
    assert_eq!(store.create_character(&record(&u, "c4"), 3).await.unwrap(), CreateCharacterOutcome::LimitReached);
    assert_eq!(store.character_count(&u).await.unwrap(), 3);
    // Deleted twice: uncounted once.
    assert!(store.delete_character(&u, &made[0].id).await.unwrap());
    assert!(!store.delete_character(&u, &made[0].id).await.unwrap());
    assert_eq!(store.character_count(&u).await.unwrap(), 2);
    assert_eq!(store.create_character(&record(&u, "c5"), 3).await.unwrap(), CreateCharacterOutcome::Created);
    assert_eq!(store.create_character(&record(&u, "c6"), 3).await.unwrap(), CreateCharacterOutcome::LimitReached);
    // Another user's cap is their own.
    let other = user(store.as_ref(), 0).await;
    assert_eq!(store.create_character(&record(&other, "o"), 3).await.unwrap(), CreateCharacterOutcome::Created);
    assert_eq!(store.character_count(&other).await.unwrap(), 1);
}

async fn creates_racing_for_the_last_slot_let_exactly_one_in(store: Arc<dyn Store>) {
    // Repeated: a lucky interleaving must not be what makes it pass.
    for _ in 0..3 {
        let u = user(store.as_ref(), 0).await;
        for i in 0..9 {
            store.create_character(&record(&u, &format!("c{i}")), 10).await.unwrap();
        }
        let racers: Vec<_> = (0..6)
            .map(|i| {
                let store = store.clone();
                let c = record(&u, &format!("racer{i}"));
                tokio::spawn(async move { store.create_character(&c, 10).await.unwrap() })
            })
            .collect();
        let mut created = 0;
        for racer in racers {
            if racer.await.unwrap() == CreateCharacterOutcome::Created {
                created += 1;
            }
        }
        assert_eq!(created, 1, "exactly one racer takes the 10th slot");
        assert_eq!(store.character_count(&u).await.unwrap(), 10);
        assert_eq!(store.characters_page(&u, 50, None).await.unwrap().items.len(), 10);
    }
}

async fn pages_are_newest_first_and_renames_touch_only_the_owners_character(store: Arc<dyn Store>) {
    let u = user(store.as_ref(), 0).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let c = record(&u, &format!("c{i}"));
        store.create_character(&c, 10).await.unwrap();
        ids.push(c.id);
    }
    let first = store.characters_page(&u, 2, None).await.unwrap();
    assert!(first.more);
    assert_eq!(first.items.iter().map(|c| c.id.clone()).collect::<Vec<_>>(), [ids[4].clone(), ids[3].clone()]);
    let last = store.characters_page(&u, 10, Some(&ids[3])).await.unwrap();
    assert!(!last.more);
    assert_eq!(
        last.items.iter().map(|c| c.id.clone()).collect::<Vec<_>>(),
        [ids[2].clone(), ids[1].clone(), ids[0].clone()]
    );

    let renamed = store.rename_character(&u, &ids[1], "Grace", 99).await.unwrap().unwrap();
    assert_eq!((renamed.name.as_str(), renamed.updated_at, renamed.created_at), ("Grace", 99, 10));
    assert_eq!(store.character(&u, &ids[1]).await.unwrap().unwrap().name, "Grace");
    let other = user(store.as_ref(), 0).await;
    assert_eq!(store.rename_character(&other, &ids[1], "Mallory", 100).await.unwrap(), None);
    assert_eq!(store.character(&other, &ids[1]).await.unwrap(), None);
    assert!(!store.delete_character(&other, &ids[1]).await.unwrap());
    assert_eq!(store.character(&u, &ids[1]).await.unwrap().unwrap().name, "Grace", "untouched by the stranger");
    assert_eq!(store.rename_character(&u, &CharacterId::new(), "Nobody", 100).await.unwrap(), None);
    assert!(store.characters_page(&other, 10, None).await.unwrap().items.is_empty());
}

/// What one render was given: the photos' bytes and their URLs.
type Given = (Vec<Vec<u8>>, Vec<String>);

/// A provider that records what it was given, and renders a fixed PNG.
struct Recording {
    by_url: bool,
    seen: Mutex<Vec<Given>>,
}

impl Recording {
    fn new(by_url: bool) -> Arc<Self> {
        Arc::new(Self { by_url, seen: Mutex::new(Vec::new()) })
    }
}

#[async_trait]
impl ImageProvider for Recording {
    fn needs_image_url(&self) -> bool {
        self.by_url
    }
    async fn render(&self, request: RenderRequest<'_>) -> Result<RenderedImage, ProviderError> {
        self.seen.lock().unwrap().push((request.images.to_vec(), request.image_urls.to_vec()));
        let mut png = Vec::new();
        image::RgbImage::from_pixel(8, 8, image::Rgb([200, 10, 10]))
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        Ok(RenderedImage { bytes: png, content_type: "image/png".into() })
    }
}

struct World {
    h: Harness,
    store: Arc<dyn Store>,
    user: UserId,
}

async fn world(store: Arc<dyn Store>, credits: u64) -> World {
    let h = Harness::over(store.clone());
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../infra/catalogue/catalogue.yaml");
    facemake::services::catalogue::seed_catalogue(store.as_ref(), &path).await.unwrap();
    let user = user(store.as_ref(), credits).await;
    World { h, store, user }
}

fn not_deleted() -> std::future::Ready<Result<bool, facemake::ports::PortError>> {
    std::future::ready(Ok(false))
}

impl World {
    async fn upload(&self, user: &UserId, bytes: Vec<u8>) -> UploadId {
        let id = UploadId::new();
        self.h.objects.put(&object_keys::upload(user, &id), bytes, "image/jpeg").await.unwrap();
        id
    }

    async fn character(&self, photos: usize) -> Result<Character, CreateError> {
        let mut uploads = Vec::new();
        for _ in 0..photos {
            uploads.push(self.upload(&self.user, testkit::camera_photo(64, 48)).await);
        }
        let name = CharacterName::parse("Ada").unwrap();
        self.h.deps.characters().create(&self.user, &name, &uploads, not_deleted()).await
    }

    async fn start(
        &self,
        key: &str,
        source: GenerationSource,
    ) -> Result<facemake::services::generation::Started, StartError> {
        let generations = self.h.deps.generations(Arc::new(self.h.deps.catalogue_service()));
        generations.start(&self.user, key, &TemplateId::parse("neon-noir").unwrap(), &source, not_deleted()).await
    }

    async fn run(&self, provider: Arc<dyn ImageProvider>, generation: &str) -> JobResult {
        let mut worker = self.h.deps.worker();
        worker.providers = Providers::all(provider);
        worker.process(&JobRef { user_id: self.user.clone(), generation_id: generation.to_owned() }).await.unwrap()
    }

    async fn balance(&self) -> u64 {
        self.store.balance(&self.user).await.unwrap()
    }

    fn keys_under(&self, prefix: &str) -> Vec<String> {
        self.h.objects.keys().into_iter().filter(|k| k.starts_with(prefix)).collect()
    }
}

async fn a_character_is_prepared_once_and_the_worker_reads_its_photos_as_they_are(store: Arc<dyn Store>) {
    let w = world(store, 5).await;
    // A phone photo, stored sideways with EXIF orientation 6, larger than the prepared size.
    let uploads = [
        w.upload(&w.user, testkit::camera_photo(2000, 1500)).await,
        w.upload(&w.user, testkit::camera_photo(640, 480)).await,
    ];
    let name = CharacterName::parse("  Ada  ").unwrap();
    let c = w.h.deps.characters().create(&w.user, &name, &uploads, not_deleted()).await.unwrap();
    assert_eq!((c.name.as_str(), c.photo_count), ("Ada", 2));
    let mut stored = Vec::new();
    for key in c.photo_keys() {
        let bytes = w.h.objects.get(&key, u64::MAX).await.unwrap().expect("the prepared photo is stored");
        assert_eq!(&bytes[..2], &[0xFF, 0xD8], "a JPEG");
        assert!(!bytes.windows(6).any(|x| x == b"Exif\0\0"), "no metadata left");
        stored.push(bytes);
    }
    let big = image::load_from_memory(&stored[0]).unwrap();
    assert_eq!((big.width(), big.height()), (1152, 1536), "upright (orientation applied) and downsized");
    // The uploads may expire now: the character does not need them.
    w.h.objects.delete(&uploads.iter().map(|u| object_keys::upload(&w.user, u)).collect::<Vec<_>>()).await.unwrap();

    let started = w.start("k", GenerationSource::Character(c.id.clone())).await.unwrap();
    assert_eq!(started.generation.source, GenerationSource::Character(c.id.clone()));
    assert_eq!(started.balance, 4);
    let provider = Recording::new(false);
    let result = w.run(provider.clone(), &started.generation.id).await;
    assert!(matches!(result, JobResult::Succeeded { .. }), "{result:?}");
    let seen = provider.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].0, stored, "every photo, byte for byte as prepared at creation: no second preparation");
    assert!(seen[0].1.is_empty());
    assert!(w.keys_under("work/").is_empty(), "nothing was prepared again");
}

async fn a_provider_that_fetches_by_url_gets_every_photos_url_and_no_bytes(store: Arc<dyn Store>) {
    let w = world(store, 5).await;
    let c = w.character(3).await.unwrap();
    let started = w.start("k", GenerationSource::Character(c.id.clone())).await.unwrap();
    let provider = Recording::new(true);
    assert!(matches!(w.run(provider.clone(), &started.generation.id).await, JobResult::Succeeded { .. }));
    let (images, urls) = provider.seen.lock().unwrap()[0].clone();
    assert!(images.is_empty());
    assert_eq!(urls.len(), 3);
    for (url, key) in urls.iter().zip(c.photo_keys()) {
        assert!(url.contains(&key), "{url} signs {key}");
    }
}

async fn bad_uploads_store_nothing(store: Arc<dyn Store>) {
    let w = world(store, 0).await;
    let name = CharacterName::parse("Ada").unwrap();
    let characters = w.h.deps.characters();
    let good = w.upload(&w.user, testkit::camera_photo(64, 48)).await;
    let text = w.upload(&w.user, b"GIF89a? no, just text".to_vec()).await;
    let other = user(w.store.as_ref(), 0).await;
    let foreign = w.upload(&other, testkit::camera_photo(64, 48)).await;
    // A PNG whose header claims 30000x30000 pixels: refused from the header, never decoded.
    let mut bomb = Vec::new();
    image::RgbImage::from_pixel(1, 1, image::Rgb([0, 0, 0]))
        .write_to(&mut std::io::Cursor::new(&mut bomb), image::ImageFormat::Png)
        .unwrap();
    bomb[16..20].copy_from_slice(&30_000u32.to_be_bytes());
    bomb[20..24].copy_from_slice(&30_000u32.to_be_bytes());
    let bomb = w.upload(&w.user, bomb).await;
    let cases: Vec<(Vec<UploadId>, &str)> = vec![
        (vec![], "count"),
        ((0..7).map(|_| good.clone()).collect(), "count"),
        (vec![good.clone(), good.clone()], "duplicate 1"),
        (vec![good.clone(), UploadId::new()], "missing 1"),
        (vec![foreign.clone()], "missing 0"),
        (vec![good.clone(), text.clone()], "photo 1"),
        (vec![bomb.clone()], "photo 0"),
    ];
    for (uploads, want) in cases {
        let got = match characters.create(&w.user, &name, &uploads, not_deleted()).await {
            Err(CreateError::PhotoCount) => "count".to_owned(),
            Err(CreateError::DuplicateUpload { index }) => format!("duplicate {index}"),
            Err(CreateError::NoUpload { index }) => format!("missing {index}"),
            Err(CreateError::NotAPhoto { index, .. }) => format!("photo {index}"),
            other => format!("{other:?}"),
        };
        assert_eq!(got, want);
    }
    // A deleted account writes nothing either.
    let deleted = characters.create(&w.user, &name, &[good], std::future::ready(Ok(true))).await;
    assert!(matches!(deleted, Err(CreateError::AccountDeleted)), "{deleted:?}");
    assert!(w.keys_under("characters/").is_empty(), "{:?}", w.keys_under("characters/"));
    assert_eq!(w.store.character_count(&w.user).await.unwrap(), 0);
}

async fn two_creates_for_the_tenth_slot_through_the_service_make_one_character(store: Arc<dyn Store>) {
    let w = Arc::new(world(store, 0).await);
    for _ in 0..9 {
        w.character(1).await.unwrap();
    }
    let racers: Vec<_> = (0..2)
        .map(|_| {
            let w = w.clone();
            tokio::spawn(async move { w.character(2).await })
        })
        .collect();
    let mut outcomes = Vec::new();
    for racer in racers {
        outcomes.push(racer.await.unwrap());
    }
    assert_eq!(outcomes.iter().filter(|o| o.is_ok()).count(), 1, "{outcomes:?}");
    assert_eq!(outcomes.iter().filter(|o| matches!(o, Err(CreateError::LimitReached { max: 10 }))).count(), 1);
    assert_eq!(w.store.character_count(&w.user).await.unwrap(), 10);
    // The loser's photos were taken back out: 9 characters of 1 photo and the winner's 2.
    assert_eq!(w.keys_under("characters/").len(), 11, "{:?}", w.keys_under("characters/"));
    assert!(matches!(w.character(1).await, Err(CreateError::LimitReached { max: 10 })));
}

async fn sources_are_the_callers_own_and_the_key_covers_the_source(store: Arc<dyn Store>) {
    let w = world(store, 5).await;
    let mine = w.character(1).await.unwrap();
    let stranger = World { h: w.h.clone(), store: w.store.clone(), user: user(w.store.as_ref(), 5).await };
    let theirs = stranger.character(1).await.unwrap();
    let their_generation = stranger.start("s", GenerationSource::Character(theirs.id.clone())).await.unwrap();

    for source in [
        GenerationSource::Character(theirs.id.clone()),
        GenerationSource::Character(CharacterId::new()),
        GenerationSource::Generation(their_generation.generation.id.clone()),
        GenerationSource::Generation(facemake::domain::new_id()),
    ] {
        let refused = w.start("k", source.clone()).await;
        assert!(matches!(refused, Err(StartError::SourceNotFound)), "{source:?}: {refused:?}");
    }
    // A parent still queued (or failed) has nothing to restyle.
    let queued = w.start("q", GenerationSource::Character(mine.id.clone())).await.unwrap();
    let refused = w.start("k", GenerationSource::Generation(queued.generation.id.clone())).await;
    assert!(matches!(refused, Err(StartError::ParentNotSucceeded)), "{refused:?}");
    assert_eq!(w.balance().await, 4, "only the queued one was charged");
    // The key covers the source: the same key with another source is a reuse, with the same one a replay.
    let upload = w.upload(&w.user, testkit::camera_photo(64, 48)).await;
    let reused = w.start("q", GenerationSource::Upload(upload)).await;
    assert!(matches!(reused, Err(StartError::KeyReused)), "{reused:?}");
    let replay = w.start("q", GenerationSource::Character(mine.id.clone())).await.unwrap();
    assert!(replay.replayed);
    assert_eq!(replay.generation.id, queued.generation.id);
    assert_eq!(w.balance().await, 4);
    assert_eq!(stranger.balance().await, 4, "the stranger's own generation only");
}

async fn a_restyle_renders_the_parents_output_and_deletes_only_its_own_images(store: Arc<dyn Store>) {
    let w = world(store, 5).await;
    let upload = w.upload(&w.user, testkit::camera_photo(64, 48)).await;
    let parent = w.start("p", GenerationSource::Upload(upload.clone())).await.unwrap();
    assert!(matches!(w.run(Recording::new(false), &parent.generation.id).await, JobResult::Succeeded { .. }));
    let generations = w.h.deps.generations(Arc::new(w.h.deps.catalogue_service()));
    let parent_done = generations.get(&w.user, &parent.generation.id).await.unwrap().unwrap();
    let parent_output = parent_done.output_key.clone().unwrap();

    let child = w.start("c", GenerationSource::Generation(parent.generation.id.clone())).await.unwrap();
    assert_eq!(child.generation.input_keys, std::slice::from_ref(&parent_output));
    let provider = Recording::new(false);
    assert!(matches!(w.run(provider.clone(), &child.generation.id).await, JobResult::Succeeded { .. }));
    let seen = provider.seen.lock().unwrap()[0].0.clone();
    assert_eq!(seen.len(), 1);
    let input = image::load_from_memory(&seen[0]).unwrap();
    assert_eq!((input.width(), input.height()), (8, 8), "the parent's 8x8 output, prepared as a JPEG");
    assert_eq!(&seen[0][..2], &[0xFF, 0xD8]);

    // Deleting the restyle keeps the parent's output and the upload the parent was made from.
    let child_done = generations.get(&w.user, &child.generation.id).await.unwrap().unwrap();
    generations.delete(&w.user, &child.generation.id).await.unwrap();
    let keys = w.h.objects.keys();
    assert!(keys.contains(&parent_output));
    assert!(keys.contains(&object_keys::upload(&w.user, &upload)));
    assert!(!keys.contains(child_done.output_key.as_ref().unwrap()));
}

async fn deleting_a_character_keeps_generations_and_fails_a_queued_one_with_a_refund(store: Arc<dyn Store>) {
    let w = world(store, 5).await;
    let c = w.character(2).await.unwrap();
    let done = w.start("a", GenerationSource::Character(c.id.clone())).await.unwrap();
    assert!(matches!(w.run(Recording::new(false), &done.generation.id).await, JobResult::Succeeded { .. }));
    let generations = w.h.deps.generations(Arc::new(w.h.deps.catalogue_service()));
    // Deleting a generation made from the character leaves the character's photos alone.
    let other = w.start("b", GenerationSource::Character(c.id.clone())).await.unwrap();
    assert!(matches!(w.run(Recording::new(false), &other.generation.id).await, JobResult::Succeeded { .. }));
    generations.delete(&w.user, &other.generation.id).await.unwrap();
    assert_eq!(w.keys_under(&format!("characters/{}/", w.user)).len(), 2);

    let queued = w.start("c", GenerationSource::Character(c.id.clone())).await.unwrap();
    assert_eq!(w.balance().await, 2);
    let characters = w.h.deps.characters();
    assert!(characters.delete_found(&c).await.unwrap());
    assert!(!characters.delete_found(&c).await.unwrap(), "a second delete finds nothing");
    assert!(w.keys_under("characters/").is_empty());
    assert_eq!(w.store.character(&w.user, &c.id).await.unwrap(), None);
    // The finished generation keeps its output.
    let kept = generations.get(&w.user, &done.generation.id).await.unwrap().unwrap();
    assert!(w.h.objects.keys().contains(kept.output_key.as_ref().unwrap()));
    // The queued one has no photos left: failed, refunded once.
    let result = w.run(Recording::new(false), &queued.generation.id).await;
    assert_eq!(result, JobResult::Failed { reason: REASON_MISSING_SOURCE.to_owned() });
    assert_eq!(w.balance().await, 3);
    let failed = generations.get(&w.user, &queued.generation.id).await.unwrap().unwrap();
    assert_eq!((failed.status, failed.refunded), (GenerationStatus::Failed, true));
    assert_eq!(w.run(Recording::new(false), &queued.generation.id).await, JobResult::Skipped);
    assert_eq!(w.balance().await, 3);
}

async fn the_profile_counts_what_the_user_has(store: Arc<dyn Store>) {
    let w = world(store, 5).await;
    let stats = || async { w.store.get_user_with_stats(&w.user).await.unwrap().unwrap().1 };
    let zero = stats().await;
    assert_eq!((zero.generations, zero.succeeded, zero.favorites, zero.characters), (0, 0, 0, 0));

    // Favourites: idempotent both ways, counted once.
    let neon = TemplateId::parse("neon-noir").unwrap();
    let studio = TemplateId::parse("studio-headshot").unwrap();
    for t in [&neon, &neon, &studio] {
        w.store.add_favorite(&w.user, t, 5).await.unwrap();
    }
    w.store.remove_favorite(&w.user, &studio).await.unwrap();
    w.store.remove_favorite(&w.user, &studio).await.unwrap();
    // Characters: two made, one deleted (twice).
    let a = w.character(1).await.unwrap();
    let b = w.character(1).await.unwrap();
    w.store.delete_character(&w.user, &a.id).await.unwrap();
    w.store.delete_character(&w.user, &a.id).await.unwrap();
    // Generations: three started; one succeeds, one fails, one is deleted after succeeding.
    let gens: Vec<_> =
        futures_util::future::join_all(["x", "y", "z"].map(|k| w.start(k, GenerationSource::Character(b.id.clone()))))
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
    let mid = stats().await;
    assert_eq!((mid.generations, mid.succeeded), (3, 0));
    assert!(matches!(w.run(Recording::new(false), &gens[0].generation.id).await, JobResult::Succeeded { .. }));
    assert!(matches!(w.run(Recording::new(false), &gens[1].generation.id).await, JobResult::Succeeded { .. }));
    // The third finds its photos gone.
    w.h.objects.delete(&b.photo_keys()).await.unwrap();
    assert!(matches!(w.run(Recording::new(false), &gens[2].generation.id).await, JobResult::Failed { .. }));
    let generations = w.h.deps.generations(Arc::new(w.h.deps.catalogue_service()));
    generations.delete(&w.user, &gens[1].generation.id).await.unwrap();
    generations.delete(&w.user, &gens[1].generation.id).await.unwrap();

    let end = stats().await;
    assert_eq!(
        (end.generations, end.succeeded, end.favorites, end.characters),
        (2, 1, 1, 1),
        "{end:?}: two generations left (one succeeded, one failed), one favourite, one character"
    );
    // The lists agree with the counters.
    assert_eq!(generations.page(&w.user, 50, None).await.unwrap().items.len() as u64, end.generations);
    assert_eq!(w.store.favorites(&w.user).await.unwrap().len() as u64, end.favorites);
    assert_eq!(w.store.characters_page(&w.user, 50, None).await.unwrap().items.len() as u64, end.characters);
}

async fn a_create_that_outlasts_the_accounts_deletion_writes_nothing(store: Arc<dyn Store>) {
    let w = world(store, 0).await;
    // The store refuses on its own: the tombstone is checked in the create's transaction.
    w.store.mark_deleted(&w.user, 5).await.unwrap();
    assert_eq!(
        w.store.create_character(&record(&w.user, "late"), 10).await.unwrap(),
        CreateCharacterOutcome::AccountDeleted
    );
    // Through the service: the request's own check passed (`not_deleted`), then the deletion began while the
    // photos were prepared. The photos are taken back out, nothing is counted.
    let upload = w.upload(&w.user, testkit::camera_photo(64, 48)).await;
    let name = CharacterName::parse("Ada").unwrap();
    let late = w.h.deps.characters().create(&w.user, &name, &[upload], not_deleted()).await;
    assert!(matches!(late, Err(CreateError::AccountDeleted)), "{late:?}");
    assert!(w.keys_under("characters/").is_empty(), "{:?}", w.keys_under("characters/"));
    assert_eq!(w.store.character_count(&w.user).await.unwrap(), 0);
}

/// A store whose create commits and then answers an error, as a timeout after the commit would.
struct CommitsThenFails(Arc<dyn Store>);

#[async_trait]
impl facemake::ports::CharacterStore for CommitsThenFails {
    async fn create_character(
        &self,
        character: &Character,
        max: u32,
    ) -> Result<CreateCharacterOutcome, facemake::ports::PortError> {
        self.0.create_character(character, max).await?;
        Err(facemake::ports::PortError::unavailable("characters", "timed out"))
    }
    async fn character(
        &self,
        user: &UserId,
        id: &CharacterId,
    ) -> Result<Option<Character>, facemake::ports::PortError> {
        self.0.character(user, id).await
    }
    async fn character_count(&self, user: &UserId) -> Result<u64, facemake::ports::PortError> {
        self.0.character_count(user).await
    }
    async fn characters_page(
        &self,
        user: &UserId,
        limit: usize,
        before: Option<&CharacterId>,
    ) -> Result<facemake::ports::CharacterPage, facemake::ports::PortError> {
        self.0.characters_page(user, limit, before).await
    }
    async fn rename_character(
        &self,
        user: &UserId,
        id: &CharacterId,
        name: &str,
        now: i64,
    ) -> Result<Option<Character>, facemake::ports::PortError> {
        self.0.rename_character(user, id, name, now).await
    }
    async fn delete_character(&self, user: &UserId, id: &CharacterId) -> Result<bool, facemake::ports::PortError> {
        self.0.delete_character(user, id).await
    }
}

async fn a_create_whose_answer_is_lost_after_the_commit_keeps_its_photos(store: Arc<dyn Store>) {
    let w = world(store.clone(), 0).await;
    let mut characters = w.h.deps.characters();
    characters.store = Arc::new(CommitsThenFails(store));
    let upload = w.upload(&w.user, testkit::camera_photo(64, 48)).await;
    let name = CharacterName::parse("Ada").unwrap();
    let made = characters.create(&w.user, &name, &[upload], not_deleted()).await.unwrap();
    // The record exists, and so does every photo it names.
    assert_eq!(w.store.character(&w.user, &made.id).await.unwrap().as_ref(), Some(&made));
    for key in made.photo_keys() {
        assert!(w.h.objects.keys().contains(&key), "{key} kept");
    }
}

/// Data written before the counters existed: recounting sets them from the records (DynamoDB only: the
/// memory store counts the records themselves), also beside concurrent writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dynamodb_a_recount_sets_the_counters_of_data_from_before_them() {
    use aws_sdk_dynamodb::types::AttributeValue;
    let dynamo = Arc::new(testkit::dynamodb_store().await);
    let store: Arc<dyn Store> = dynamo.clone();
    let w = world(store.clone(), 5).await;
    let neon = TemplateId::parse("neon-noir").unwrap();
    let studio = TemplateId::parse("studio-headshot").unwrap();
    w.store.add_favorite(&w.user, &neon, 1).await.unwrap();
    w.store.add_favorite(&w.user, &studio, 1).await.unwrap();
    let c = w.character(1).await.unwrap();
    w.character(1).await.unwrap();
    let done = w.start("a", GenerationSource::Character(c.id.clone())).await.unwrap();
    w.start("b", GenerationSource::Character(c.id.clone())).await.unwrap();
    assert!(matches!(w.run(Recording::new(false), &done.generation.id).await, JobResult::Succeeded { .. }));
    let stats = || async { w.store.get_user_with_stats(&w.user).await.unwrap().unwrap().1 };
    let counted = stats().await;
    assert_eq!((counted.generations, counted.succeeded, counted.favorites, counted.characters), (2, 1, 2, 2));

    // Make it look like data from before the counters: no counter anywhere.
    let client = testkit::dynamodb_local_client().await;
    let t = dynamo.tables().clone();
    let pk = AttributeValue::S(format!("USER#{}", w.user));
    let item = |sk: &str| [("pk".to_owned(), pk.clone()), ("sk".to_owned(), AttributeValue::S(sk.into()))].into();
    let remove = |table: &str, sk: &str, expression: &str| {
        client.update_item().table_name(table).set_key(Some(item(sk))).update_expression(expression).send()
    };
    remove(&t.generations, "INFLIGHT", "REMOVE generations, succeeded").await.unwrap();
    remove(&t.users, "PROFILE", "REMOVE favorites").await.unwrap();
    client.delete_item().table_name(&t.characters).set_key(Some(item("COUNT"))).send().await.unwrap();
    let lost = stats().await;
    assert_eq!((lost.generations, lost.succeeded, lost.favorites, lost.characters), (0, 0, 0, 0));

    let recounted = dynamo.recount_stats(&w.user).await.unwrap().unwrap();
    assert_eq!(recounted, counted);
    assert_eq!(stats().await, counted);
    // Beside concurrent favourites: whatever interleaving, the counter ends equal to the records.
    remove(&t.users, "PROFILE", "REMOVE favorites").await.unwrap();
    let templates: Vec<TemplateId> =
        ["pop-art", "golden-hour", "astronaut", "vaporwave"].iter().map(|id| TemplateId::parse(id).unwrap()).collect();
    let adds = futures_util::future::join_all(templates.iter().map(|t| w.store.add_favorite(&w.user, t, 2)));
    let (recount, adds) = tokio::join!(dynamo.recount_stats(&w.user), adds);
    recount.unwrap();
    assert!(adds.iter().all(Result::is_ok));
    let records = w.store.favorites(&w.user).await.unwrap().len() as u64;
    assert_eq!(records, 6);
    let after = stats().await.favorites;
    // A recount that lost a race retried; an add after its count was counted by the add itself.
    assert_eq!(after, records, "the counter equals the records");

    // Every profile is found for `recount --all`; a user without a profile is left alone.
    let (users, _) = dynamo.profile_page(None).await.unwrap();
    assert!(users.contains(&w.user));
    assert_eq!(dynamo.recount_stats(&UserId::new()).await.unwrap(), None);
}
