//! Test support shared by every crate's tests: a movable clock, in-memory and DynamoDB Local stores, and
//! fixtures; and [`schema`], the DynamoDB tables as template.yaml declares them, read at run time (tests and
//! the local API). A dev-only crate: no Lambda links it, so its panicking helpers and the template never
//! reach a deployed binary.

pub mod schema;

/// The library under test, for the macros.
pub use facemake;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use facemake::adapters::dynamodb::DynamoStore;
use facemake::adapters::dynamodb::TableStream;
use facemake::adapters::keys::StaticKeys;
use facemake::adapters::memory::MemoryObjects;
use facemake::adapters::memory::{MemoryOutbox, MemoryPushes, MemoryStore};
use facemake::adapters::providers::local::LocalRenderer;
use facemake::config::{
    AppStoreConfig, AppStoreEnvironment, AuthPolicy, CatalogueConfig, CreditProduct, CreditsConfig, GenerationConfig,
    APPLE_ROOT_CA_G3,
};
use facemake::domain::CountryAllowlist;
use facemake::metrics::Recorder;
use facemake::ports::{Clock, KeyProvider, SystemClock};
use facemake::services::generation::Providers;
use facemake::wiring::{Deps, Media, Store};

/// The variable that points tests at DynamoDB Local (set by infra/scripts/test.sh).
pub const DYNAMODB_ENDPOINT_VAR: &str = "FACEMAKE_TEST_DYNAMODB_ENDPOINT";

/// A clock that stands still until moved.
#[derive(Debug)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn new(now: i64) -> Arc<Self> {
        Arc::new(Self(AtomicI64::new(now)))
    }

    /// Starts at the real time, so tokens it stamps verify against the wall clock.
    pub fn at_wall_clock() -> Arc<Self> {
        Self::new(SystemClock.now())
    }

    pub fn advance(&self, secs: i64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// The fixed master key tests sign with.
pub const TEST_MASTER_KEY: &[u8] = b"facemake-test-master-key-0123456789abcdef";

/// The product's sign-in policy with US and GB allowed and a test issuer.
/// An APNs auth key made for a test: the .p8 text the secret holds and the public key (the uncompressed
/// P-256 point) a stand-in for APNs verifies provider tokens with.
pub struct ApnsTestKey {
    pub key_id: String,
    pub team_id: String,
    pub pem: String,
    pub public_key: Vec<u8>,
}

impl ApnsTestKey {
    pub fn generate() -> Self {
        use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
        use base64::Engine;
        let pair = match EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING) {
            Ok(p) => p,
            Err(e) => panic!("an APNs test key: {e}"),
        };
        let der = match pair.to_pkcs8v1() {
            Ok(d) => d,
            Err(e) => panic!("an APNs test key: {e}"),
        };
        let b64 = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
        let lines: Vec<&str> = b64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap_or_default()).collect();
        let pem = format!("-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n", lines.join("\n"));
        Self {
            key_id: "KEY1234567".to_owned(),
            team_id: "TEAM123456".to_owned(),
            pem,
            public_key: pair.public_key().as_ref().to_vec(),
        }
    }

    /// The secret's JSON, as an operator puts it (`{"keyId", "teamId", "privateKey"}`).
    pub fn secret_json(&self) -> String {
        serde_json::json!({"keyId": self.key_id, "teamId": self.team_id, "privateKey": self.pem}).to_string()
    }
}

/// Push settings of the local stand-ins: pushes go to the memory outbox, so no key and Apple's hosts.
pub fn local_push_config() -> facemake::config::PushConfig {
    facemake::config::PushConfig {
        apns_key_secret_arn: None,
        topic: "app.facemake.ios".to_owned(),
        production_url: facemake::adapters::apns::PRODUCTION_URL.to_owned(),
        sandbox_url: facemake::adapters::apns::SANDBOX_URL.to_owned(),
    }
}

pub fn policy() -> AuthPolicy {
    AuthPolicy {
        allowed_countries: CountryAllowlist::parse("US,GB").unwrap_or_else(|_| CountryAllowlist::any()),
        issuer: "facemake-test".to_owned(),
        ..AuthPolicy::default()
    }
}

/// Where tests publish previews.
pub const PREVIEW_BASE_URL: &str = "https://previews.test/";
/// The bundle id tests sign App Store data for.
pub const BUNDLE_ID: &str = "app.facemake.test";
/// Credits products in tests: 10 and 50 credits.
pub const PRODUCT_10: &str = "app.facemake.test.credits10";
pub const PRODUCT_50: &str = "app.facemake.test.credits50";

/// Sandbox settings for [`BUNDLE_ID`] trusting `roots`, with [`PRODUCT_10`] and [`PRODUCT_50`].
pub fn credits_config(roots: Vec<Vec<u8>>) -> CreditsConfig {
    CreditsConfig {
        products: vec![
            CreditProduct { product_id: PRODUCT_10.to_owned(), credits: 10 },
            CreditProduct { product_id: PRODUCT_50.to_owned(), credits: 50 },
        ],
        app_store: AppStoreConfig {
            bundle_id: BUNDLE_ID.to_owned(),
            environment: AppStoreEnvironment::Sandbox,
            app_apple_id: None,
            root_certs: roots,
            require_account_token: false,
            api_secret_arn: None,
        },
    }
}

/// Everything a test needs to drive services and handlers, with handles on the fakes.
#[derive(Clone)]
pub struct Harness {
    pub deps: Deps,
    pub outbox: MemoryOutbox,
    pub clock: Arc<ManualClock>,
    pub keys: Arc<StaticKeys>,
    /// What the services recorded as metrics.
    pub metrics: Recorder,
    /// The images bucket (the deps' object store).
    pub objects: Arc<MemoryObjects>,
    /// The pushes "sent" (the deps' push service).
    pub pushes: MemoryPushes,
}

impl Harness {
    /// A harness over `store`, with the outbox, test keys and a clock at the wall-clock time.
    pub fn over(store: Arc<dyn Store>) -> Self {
        let outbox = MemoryOutbox::new();
        let clock = ManualClock::at_wall_clock();
        let keys = Arc::new(StaticKeys::new(TEST_MASTER_KEY));
        let metrics = Recorder::new();
        let objects = match MemoryObjects::new("http://images.test") {
            Ok(o) => Arc::new(o),
            Err(e) => panic!("memory objects: {e}"),
        };
        let pushes = MemoryPushes::new();
        let deps = Deps {
            store,
            keys: keys.clone(),
            sms: Arc::new(outbox.clone()),
            clock: clock.clone(),
            policy: policy(),
            catalogue: CatalogueConfig { cache_ttl_secs: 60, preview_base_url: PREVIEW_BASE_URL.to_owned() },
            credits: credits_config(vec![APPLE_ROOT_CA_G3.to_vec()]),
            metrics: Arc::new(metrics.clone()),
            generation: GenerationConfig::default(),
            push: local_push_config(),
            // Tests run the worker themselves (`deps.worker().process(..)`), as the table stream would.
            media: Media::Fixed {
                objects: objects.clone(),
                providers: Providers::all(Arc::new(LocalRenderer)),
                dispatcher: Arc::new(TableStream),
                pushes: Arc::new(pushes.clone()),
            },
        };
        Self { deps, outbox, clock, keys, metrics, objects, pushes }
    }

    pub fn in_memory() -> Self {
        Self::over(Arc::new(MemoryStore::new()))
    }

    /// The latest six-digit code texted to `e164`.
    pub fn last_code(&self, e164: &str) -> Option<String> {
        let message = self.outbox.messages_to(e164).into_iter().next()?;
        message.body.split(|c: char| !c.is_ascii_digit()).find(|w| w.len() == 6).map(str::to_owned)
    }

    /// A valid access token for `user`, as sign-in would issue it.
    pub async fn access_token(&self, user: &facemake::domain::UserId) -> String {
        let keys = match self.keys.keys().await {
            Ok(k) => k,
            Err(e) => panic!("test keys: {e}"),
        };
        match facemake::tokens::AccessTokens::for_policy(&self.deps.policy).issue(&keys, user, self.clock.now()) {
            Ok(t) => t,
            Err(e) => panic!("test token: {e}"),
        }
    }
}

/// A DynamoDB client for DynamoDB Local at `FACEMAKE_TEST_DYNAMODB_ENDPOINT`.
///
/// Panics when the variable is unset: a DynamoDB test that silently skipped would prove nothing. Run the
/// tests with `infra/scripts/test.sh`, which starts DynamoDB Local and sets it.
pub async fn dynamodb_local_client() -> aws_sdk_dynamodb::Client {
    let Ok(endpoint) = std::env::var(DYNAMODB_ENDPOINT_VAR) else {
        panic!(
            "{DYNAMODB_ENDPOINT_VAR} is not set: run the tests with infra/scripts/test.sh (it starts DynamoDB Local)"
        );
    };
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new("local", "local", None, None, "testkit"))
        .build();
    aws_sdk_dynamodb::Client::from_conf(config)
}

/// The environment variable the test command sets to moto's endpoint (S3 and Secrets Manager).
pub const S3_ENDPOINT_VAR: &str = "FACEMAKE_TEST_S3_ENDPOINT";

/// An S3 client for moto at `FACEMAKE_TEST_S3_ENDPOINT` and a fresh bucket's name. Panics when the variable
/// is unset, as [`dynamodb_local_client`] does.
pub async fn moto_bucket() -> (aws_sdk_s3::Client, String) {
    let Ok(endpoint) = std::env::var(S3_ENDPOINT_VAR) else {
        panic!("{S3_ENDPOINT_VAR} is not set: run the tests with infra/scripts/test.sh (it starts moto)");
    };
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .force_path_style(true)
        .credentials_provider(aws_sdk_s3::config::Credentials::new("test", "test", None, None, "tests"))
        .build();
    let client = aws_sdk_s3::Client::from_conf(config);
    let name = format!("images-{}", facemake::domain::new_id().to_lowercase());
    if let Err(e) = client.create_bucket().bucket(&name).send().await {
        panic!("creating a bucket in moto: {e:?}");
    }
    (client, name)
}

/// A DynamoDB store on fresh tables (created from template.yaml under a unique prefix) in DynamoDB Local.
pub async fn dynamodb_store() -> DynamoStore {
    let client = dynamodb_local_client().await;
    let prefix = format!("t{}-", facemake::domain::new_id().to_lowercase());
    match schema::create_tables(&client, &prefix).await {
        Ok(tables) => DynamoStore::new(client, tables),
        Err(e) => panic!("creating test tables in DynamoDB Local: {e}"),
    }
}

/// The API Gateway v2 event fixture `events/{name}` as the Lambda runtime would hand it to a handler.
pub fn event(name: &str) -> lambda_http::Request {
    let path = format!("{}/../../events/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    lambda_http::request::from_str(&text).unwrap_or_else(|e| panic!("{path} is not an API Gateway v2 event: {e}"))
}

/// `req` with its Authorization header replaced by `Bearer {token}`.
pub fn with_bearer(mut req: lambda_http::Request, token: &str) -> lambda_http::Request {
    let value = http::HeaderValue::from_str(&format!("Bearer {token}")).unwrap_or_else(|e| panic!("header: {e}"));
    req.headers_mut().insert(http::header::AUTHORIZATION, value);
    req
}

impl Harness {
    /// Stores `code` as the live sign-in code of `phone`, exactly as send-code would (without the text).
    pub async fn plant_code(&self, phone: &facemake::domain::PhoneNumber, code: &str) {
        let keys = self.keys.keys().await.unwrap_or_else(|e| panic!("test keys: {e}"));
        let code = facemake::domain::OtpCode::parse(code).unwrap_or_else(|e| panic!("code: {e}"));
        let current = self.deps.store.load(phone).await.unwrap_or_else(|e| panic!("load: {e}"));
        let version = current.as_ref().map_or(0, |r| r.version);
        let now = self.clock.now();
        let code_id = facemake::domain::new_id();
        let record = facemake::domain::OtpRecord {
            version: version + 1,
            code_hash: Some(
                facemake::services::auth::hash_code(&keys, phone, &code_id, &code)
                    .unwrap_or_else(|e| panic!("hash: {e}")),
            ),
            code_id: Some(code_id),
            expires_at: now + self.deps.policy.code_ttl_secs,
            last_sent_at: now,
            sent_at: vec![now],
            sent_from: vec!["planted".to_owned()],
            ..facemake::domain::OtpRecord::empty(phone.e164())
        };
        self.deps.store.replace(&record, version).await.unwrap_or_else(|e| panic!("replace: {e}"));
    }

    /// Signs `phone` in through the service (code planted, then verified) and returns the session.
    pub async fn signed_in(&self, phone: &str) -> facemake::services::auth::Session {
        let phone = facemake::domain::PhoneNumber::parse(phone, None).unwrap_or_else(|e| panic!("phone: {e}"));
        self.plant_code(&phone, "424242").await;
        let code = facemake::domain::OtpCode::parse("424242").unwrap_or_else(|e| panic!("code: {e}"));
        self.deps.sign_in().verify(&phone, &code, None).await.unwrap_or_else(|e| panic!("sign-in: {e}"))
    }

    /// Stores `token` as a live refresh token of `session`'s user (for fixtures that carry a fixed token).
    pub async fn plant_refresh_token(&self, session: &facemake::services::auth::Session, token: &str) {
        let now = self.clock.now();
        let record = facemake::ports::RefreshRecord {
            token_hash: facemake::crypto::sha256_b64(token.as_bytes()),
            user_id: session.user.id.clone(),
            family_id: facemake::domain::new_id(),
            family_created_at: now,
            expires_at: now + self.deps.policy.refresh_ttl_secs,
            state: facemake::ports::RefreshState::Active,
            rotated: None,
        };
        self.deps.store.create_session(&record).await.unwrap_or_else(|e| panic!("session: {e}"));
    }
}

/// The JSON body of a response.
pub fn body_json(response: &lambda_http::Response<lambda_http::Body>) -> serde_json::Value {
    serde_json::from_slice(response.body().as_ref()).unwrap_or(serde_json::Value::Null)
}

/// Generates `memory` and `dynamodb` variants of each store contract test: `store_contract!(a, b)` makes
/// `memory::a` run `a(Arc::new(MemoryStore::new()))` and `dynamodb::a` run it on fresh DynamoDB Local tables, so
/// both stores answer to the same cases.
#[macro_export]
macro_rules! store_contract {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() { super::$name(std::sync::Arc::new($crate::facemake::adapters::memory::MemoryStore::new())).await })*
        }
        mod dynamodb {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() { super::$name(std::sync::Arc::new($crate::dynamodb_store().await)).await })*
        }
    };
}

/// [`store_contract!`] for service tests: `memory::a` runs `a(Harness::in_memory())` and `dynamodb::a` runs `a`
/// on a [`Harness`] over fresh DynamoDB Local tables.
#[macro_export]
macro_rules! harness_on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() { super::$name($crate::Harness::in_memory()).await })*
        }
        mod dynamodb {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                let store: std::sync::Arc<dyn $crate::facemake::wiring::Store> =
                    std::sync::Arc::new($crate::dynamodb_store().await);
                super::$name($crate::Harness::over(store)).await
            })*
        }
    };
}

/// An EXIF APP1 segment holding only Orientation = 6 (stored sideways: rotate 90° clockwise to display).
fn exif_orientation_6() -> Vec<u8> {
    let tiff: [u8; 26] = [
        0x4D, 0x4D, 0x00, 0x2A, 0, 0, 0, 8, // big-endian, IFD0 at 8
        0x00, 0x01, // one entry
        0x01, 0x12, 0x00, 0x03, 0, 0, 0, 1, 0x00, 0x06, 0x00, 0x00, // Orientation, SHORT, 1, = 6
        0, 0, 0, 0, // no next IFD
    ];
    let len = (2 + 6 + tiff.len()) as u16;
    [&[0xFF, 0xE1][..], &len.to_be_bytes(), b"Exif\0\0", &tiff].concat()
}

/// A phone-camera-like JPEG of `w`×`h` (4000×3000 is a 12 MP photo, ~3 MB): smooth colour gradients, some
/// texture and deterministic sensor-like noise, so it compresses like a photo; quality 90, stored with EXIF
/// orientation 6 as a phone held upright writes it. For benchmarks and tests.
pub fn camera_photo(w: u32, h: u32) -> Vec<u8> {
    let mut state: u32 = 0x9E37_79B9; // xorshift32
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let (fx, fy) = (x as f32 / w as f32, y as f32 / h as f32);
        let texture =
            (x as f32 * 0.05).sin() * (y as f32 * 0.037).cos() * 18.0 + (x as f32 * 0.31 + y as f32 * 0.17).sin() * 6.0;
        let noise = (state % 17) as f32 - 8.0;
        let c = |base: f32| (base + texture + noise).clamp(0.0, 255.0) as u8;
        image::Rgb([c(60.0 + 150.0 * fx), c(40.0 + 120.0 * fy), c(170.0 - 100.0 * fx * fy)])
    });
    let mut plain = Vec::new();
    if let Err(e) = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut plain, 90).encode_image(&img) {
        panic!("encoding the photo: {e}");
    }
    // SOI, then the APP1 segment, then the rest (JFIF APP0, tables, scan), as a camera writes it.
    [&plain[..2], &exif_orientation_6(), &plain[2..]].concat()
}
