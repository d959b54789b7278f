//! The whole Facemake API in one process: every function's router merged into one, served over HTTP on
//! localhost. Each request is turned into the same API Gateway HTTP API (v2) event JSON that AWS sends and
//! parsed by lambda_http itself, so handlers see exactly what they see in Lambda.
//!
//! By default everything runs on the in-memory adapters (no Docker, no AWS account). With
//! `FACEMAKE_BACKEND=dynamodb` the same API runs on DynamoDB (DynamoDB Local through `AWS_ENDPOINT_URL`, or
//! a real account), creating its tables from template.yaml when they do not exist.

mod app_store;
mod jobs;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use appstore_test_chain::TestChain;
use base64::Engine;
use bytes::Bytes;
use facemake::adapters::keys::StaticKeys;
use facemake::adapters::memory::{LocalUploadError, MemoryObjects};
use facemake::adapters::memory::{MemoryOutbox, MemoryPushes, MemoryStore};
use facemake::adapters::providers::local::LocalRenderer;
use facemake::config::{
    AppStoreConfig, AppStoreEnvironment, AuthPolicy, CatalogueConfig, CreditProduct, CreditsConfig, GenerationConfig,
    APPLE_ROOT_CA_G3,
};
use facemake::http::Router;
use facemake::ports::{Clock, SystemClock};
use facemake::services::generation::{Providers, RetryPolicy};
use facemake::wiring::{aws_config, Deps, Media, Store};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use testkit::schema::create_tables;
use tokio::net::TcpListener;

/// The local API's fixed signing key. Local only: deployed stages derive theirs from the Secrets Manager
/// secret. Fixed (not random) so tokens survive a restart of the local API.
pub const LOCAL_SIGNING_KEY: &[u8] = b"facemake-local-development-signing-key";

/// The largest request body the local server reads (the JSON routes enforce their own, smaller limit).
const MAX_BODY: usize = 12 * 1024 * 1024;

/// Where the local API keeps its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    Memory,
    /// DynamoDB at the SDK's configured endpoint; tables named `{prefix}{LogicalId}`.
    Dynamo {
        table_prefix: String,
    },
}

/// A running configuration of the local API: its router, the outbox it "sends" texts to, and the App Store
/// signing chain it trusts (so a developer can sign test purchases; see `/_local/app-store/...`).
#[derive(Clone)]
pub struct LocalApi {
    pub router: Router,
    pub outbox: MemoryOutbox,
    /// The pushes "sent", behind `/_local/pushes`.
    pub pushes: MemoryPushes,
    pub app_store: Arc<TestChain>,
    pub credits: CreditsConfig,
    /// The images bucket: uploads, prepared photos and outputs, behind `/_local/uploads/` and `/_local/objects/`.
    pub objects: Arc<MemoryObjects>,
    pub clock: Arc<dyn Clock>,
}

/// Where the seed catalogue and its previews live (`FACEMAKE_CATALOGUE_DIR` overrides).
pub fn catalogue_dir() -> PathBuf {
    std::env::var_os("FACEMAKE_CATALOGUE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../catalogue"))
}

pub use facemake::services::catalogue::seed_catalogue;

/// The local stage's credits products and App Store settings: Sandbox, the bundle id from
/// `APP_STORE_BUNDLE_ID` (default `app.facemake.ios`), trusting the local test chain and Apple's root.
fn local_credits(chain: &TestChain) -> CreditsConfig {
    let product = |id: &str, credits| CreditProduct { product_id: id.to_owned(), credits };
    CreditsConfig {
        products: vec![
            product("app.facemake.credits.10", 10),
            product("app.facemake.credits.50", 50),
            product("app.facemake.credits.120", 120),
        ],
        app_store: AppStoreConfig {
            bundle_id: std::env::var("APP_STORE_BUNDLE_ID").unwrap_or_else(|_| "app.facemake.ios".to_owned()),
            environment: AppStoreEnvironment::Sandbox,
            app_apple_id: None,
            root_certs: vec![chain.root_der().to_vec(), APPLE_ROOT_CA_G3.to_vec()],
            require_account_token: false,
            // Locally, consumption requests are not answered (nothing to send them to).
            api_secret_arn: None,
        },
    }
}

impl LocalApi {
    /// Builds every function's router over `store` with local keys and the given outbox, and loads the seed
    /// catalogue into the store. `base_url` is where this API is reachable (preview URLs point at it).
    pub async fn new(
        store: Arc<dyn Store>,
        outbox: MemoryOutbox,
        policy: AuthPolicy,
        clock: Arc<dyn Clock>,
        base_url: &str,
    ) -> Result<Self, String> {
        let providers = Providers::all(Arc::new(LocalRenderer));
        Self::with_providers(store, outbox, policy, clock, base_url, providers, RetryPolicy::default()).await
    }

    /// [`LocalApi::new`] rendering with `providers` (tests put failing or scripted providers here).
    pub async fn with_providers(
        store: Arc<dyn Store>,
        outbox: MemoryOutbox,
        policy: AuthPolicy,
        clock: Arc<dyn Clock>,
        base_url: &str,
        providers: Providers,
        retry: RetryPolicy,
    ) -> Result<Self, String> {
        let objects = Arc::new(MemoryObjects::new(base_url).map_err(|e| e.to_string())?);
        let (dispatcher, queue) = jobs::LocalQueue::new();
        let pushes = MemoryPushes::new();
        let chain = TestChain::generate().map_err(|e| e.to_string())?;
        let credits = local_credits(&chain);
        seed_catalogue(store.as_ref(), &catalogue_dir().join("catalogue.yaml")).await?;
        let deps = Deps {
            store,
            keys: Arc::new(StaticKeys::new(LOCAL_SIGNING_KEY)),
            sms: Arc::new(outbox.clone()),
            clock,
            policy,
            // A short cache: edits to the catalogue show up quickly while developing.
            catalogue: CatalogueConfig {
                cache_ttl_secs: 5,
                preview_base_url: format!("{}/_local/catalogue/", base_url.trim_end_matches('/')),
            },
            credits: credits.clone(),
            // Kept in memory: EMF lines would only clutter a developer's terminal.
            metrics: Arc::new(facemake::metrics::Recorder::new()),
            // The deployed variable, for a developer (or the load benchmark) who needs more in flight.
            generation: GenerationConfig {
                max_in_flight: std::env::var("MAX_GENERATIONS_IN_FLIGHT")
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .filter(|n| *n >= 1)
                    .unwrap_or(GenerationConfig::default().max_in_flight),
                ..GenerationConfig::default()
            },
            // Jobs go to an in-process worker instead of a table stream; images to memory; renders to the local
            // renderer (a deterministic image transformation, labelled as a local preview, never as AI).
            push: testkit::local_push_config(),
            // Pushes are kept for `GET /_local/pushes` instead of going to APNs.
            media: Media::Fixed {
                objects: objects.clone(),
                providers,
                dispatcher: Arc::new(dispatcher),
                pushes: Arc::new(pushes.clone()),
            },
        };
        let mut worker = deps.worker();
        worker.retry = retry;
        jobs::spawn(queue, Arc::new(worker), deps.account());
        let router = send_code::router(Arc::new(send_code::State::new(&deps)))
            .merge(verify_code::router(Arc::new(verify_code::State::new(&deps))))
            .merge(account::router(Arc::new(account::State::new(&deps))))
            .merge(templates::router(Arc::new(templates::State::new(&deps))))
            .merge(credits::router(Arc::new(credits::State::new(&deps)?)))
            .merge(app_store_notifications::router(Arc::new(app_store_notifications::State::new(&deps)?)))
            .merge(generate::router(Arc::new(generate::State::new(&deps))))
            .merge(characters::router(Arc::new(characters::State::new(&deps))))
            .merge(replicate_webhooks::router(Arc::new(replicate_webhooks::State::new(&deps))))
            .merge(openai_webhooks::router(Arc::new(openai_webhooks::State::new(&deps))));
        let clock = deps.clock.clone();
        Ok(Self { router, outbox, pushes, app_store: Arc::new(chain), credits, objects, clock })
    }

    /// The local API on the in-memory store.
    pub async fn in_memory(policy: AuthPolicy, base_url: &str) -> Result<Self, String> {
        let store = Arc::new(MemoryStore::new());
        Self::new(store, MemoryOutbox::printing(), policy, Arc::new(SystemClock), base_url).await
    }

    /// The local API on DynamoDB, creating the template's tables under `prefix` if needed.
    pub async fn on_dynamodb(prefix: &str, policy: AuthPolicy, base_url: &str) -> Result<Self, String> {
        let sdk = aws_config().await?;
        let client = aws_sdk_dynamodb::Client::new(&sdk);
        let tables = create_tables(&client, prefix).await.map_err(|e| e.to_string())?;
        let store = facemake::adapters::dynamodb::DynamoStore::new(client, tables);
        Self::new(Arc::new(store), MemoryOutbox::printing(), policy, Arc::new(SystemClock), base_url).await
    }

    /// Serves until the listener fails. Each connection gets its own task.
    pub async fn serve(self, listener: TcpListener) -> std::io::Result<()> {
        let api = Arc::new(self);
        loop {
            let (stream, peer) = listener.accept().await?;
            let api = api.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let api = api.clone();
                    async move { Ok::<_, Infallible>(api.answer(req, peer).await) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    }

    async fn answer(&self, req: http::Request<Incoming>, peer: SocketAddr) -> http::Response<Full<Bytes>> {
        let (parts, body) = req.into_parts();
        let body = match Limited::new(body, MAX_BODY).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(_) => return plain(413, "request body too large for the local API"),
        };
        let path = parts.uri.path();
        if path == "/_local/messages" {
            return self.messages(&parts.uri);
        }
        if path == "/_local/pushes" {
            return self.pushes(&parts.uri);
        }
        if matches!(path, "/openapi.json" | "/openapi.yaml" | "/docs") {
            return openapi(path);
        }
        if let Some(file) = path.strip_prefix("/_local/catalogue/") {
            return preview_file(file);
        }
        if parts.method == http::Method::POST && path.starts_with("/_local/app-store/") {
            return self.sign_app_store(path, &body);
        }
        if let Some(key) = path.strip_prefix("/_local/uploads/") {
            return self.upload(&parts, key, &body);
        }
        if let Some(key) = path.strip_prefix("/_local/objects/") {
            return self.download(&parts, key);
        }
        let event = api_gateway_event(&parts, &body, peer);
        let response = match lambda_http::request::from_str(&event.to_string()) {
            Ok(request) => self.router.handle(request).await,
            Err(e) => return plain(400, &format!("could not build an API Gateway event: {e}")),
        };
        let (parts, body) = response.into_parts();
        http::Response::from_parts(parts, Full::new(Bytes::copy_from_slice(body.as_ref())))
    }

    /// `PUT /_local/uploads/<key>?…`: the local stand-in for a presigned S3 upload, checked the way S3 checks
    /// one (signature, expiry, the signed Content-Type and length).
    fn upload(&self, parts: &http::request::Parts, key: &str, body: &[u8]) -> http::Response<Full<Bytes>> {
        if parts.method != http::Method::PUT {
            return plain(405, "uploads take PUT");
        }
        let query = query_map(&parts.uri);
        let content_type = parts.headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
        match self.objects.accept_upload(key, &query, content_type, body, self.clock.now()) {
            Ok(()) => plain(200, ""),
            Err(e @ (LocalUploadError::BadSignature | LocalUploadError::Expired)) => plain(403, &e.to_string()),
            Err(e) => plain(400, &e.to_string()),
        }
    }

    /// `GET /_local/objects/<key>?…`: the local stand-in for a presigned S3 download.
    fn download(&self, parts: &http::request::Parts, key: &str) -> http::Response<Full<Bytes>> {
        if parts.method != http::Method::GET {
            return plain(405, "objects take GET");
        }
        match self.objects.download(key, &query_map(&parts.uri), self.clock.now()) {
            Some((bytes, content_type)) => {
                let mut response = http::Response::new(Full::new(Bytes::from(bytes.as_ref().clone())));
                if let Ok(value) = http::HeaderValue::from_str(&content_type) {
                    response.headers_mut().insert(http::header::CONTENT_TYPE, value);
                }
                response
            }
            None => plain(403, "the URL is invalid or expired, or the object is gone"),
        }
    }

    /// `GET /_local/pushes?deviceToken=...`: the pushes "sent" to a device, newest first.
    fn pushes(&self, uri: &http::Uri) -> http::Response<Full<Bytes>> {
        let token = url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
            .find(|(k, _)| k == "deviceToken")
            .map(|(_, v)| v.to_ascii_lowercase())
            .unwrap_or_default();
        json_response(&serde_json::json!({ "items": self.pushes.pushes_to(&token) }))
    }

    /// `GET /_local/messages?phone=...`: the texts "sent" to a number, newest first.
    fn messages(&self, uri: &http::Uri) -> http::Response<Full<Bytes>> {
        let phone = url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
            .find(|(k, _)| k == "phone")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        let e164 = facemake::domain::PhoneNumber::from_e164(&phone).map(|p| p.e164().to_owned()).unwrap_or(phone);
        json_response(&serde_json::json!({ "items": self.outbox.messages_to(&e164) }))
    }
}

fn json_response(body: &serde_json::Value) -> http::Response<Full<Bytes>> {
    let mut response = http::Response::new(Full::new(Bytes::from(body.to_string())));
    response
        .headers_mut()
        .insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json; charset=utf-8"));
    response
}

/// docs/openapi.yaml, read on every request so edits show without a restart.
pub fn openapi_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.yaml")
}

/// The API's OpenAPI document as `/openapi.yaml` or `/openapi.json`, and a readable page at `/docs`.
fn openapi(path: &str) -> http::Response<Full<Bytes>> {
    let yaml = match std::fs::read_to_string(openapi_path()) {
        Ok(y) => y,
        Err(e) => return plain(500, &format!("docs/openapi.yaml: {e}")),
    };
    let (body, content_type) = match path {
        "/openapi.yaml" => (yaml, "application/yaml"),
        "/openapi.json" => match serde_yaml_ng::from_str::<serde_json::Value>(&yaml) {
            Ok(doc) => (doc.to_string(), "application/json"),
            Err(e) => return plain(500, &format!("docs/openapi.yaml: {e}")),
        },
        _ => (DOCS_PAGE.to_owned(), "text/html; charset=utf-8"),
    };
    let mut response = http::Response::new(Full::new(Bytes::from(body)));
    response.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static(content_type));
    response
}

/// The API reference, rendered in the browser by Scalar from `/openapi.json` (the page needs the internet for
/// the renderer's script; the spec itself is served from here).
const DOCS_PAGE: &str = r#"<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Facemake API (local)</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body>
<noscript>The API reference needs JavaScript. The spec itself: <a href="/openapi.yaml">/openapi.yaml</a>.</noscript>
<script id="api-reference" data-url="/openapi.json"></script>
<script src="https://cdn.jsdelivr.net/npm/@scalar/api-reference"></script>
</body>
</html>
"#;

/// `GET /_local/catalogue/previews/<file>`: a preview image of the seed catalogue.
fn preview_file(file: &str) -> http::Response<Full<Bytes>> {
    let name = file.strip_prefix("previews/").unwrap_or("");
    let safe = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    let content_type = match Path::new(name).extension().and_then(|e| e.to_str()) {
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("png") => "image/png",
        _ => "",
    };
    if !safe || name.starts_with('.') || content_type.is_empty() {
        return plain(404, "no such preview");
    }
    match std::fs::read(catalogue_dir().join("previews").join(name)) {
        Ok(bytes) => {
            let mut response = http::Response::new(Full::new(Bytes::from(bytes)));
            response.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static(content_type));
            response
        }
        Err(_) => plain(404, "no such preview"),
    }
}

fn query_map(uri: &http::Uri) -> std::collections::HashMap<String, String> {
    url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes()).into_owned().collect()
}

fn plain(status: u16, text: &str) -> http::Response<Full<Bytes>> {
    let mut response = http::Response::new(Full::new(Bytes::from(text.to_owned())));
    *response.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::BAD_REQUEST);
    response
}

/// The API Gateway HTTP API payload 2.0 event for a request, as AWS would send it to the function.
pub fn api_gateway_event(parts: &http::request::Parts, body: &[u8], peer: SocketAddr) -> serde_json::Value {
    let path = parts.uri.path();
    let query = parts.uri.query().unwrap_or("");
    let mut headers = serde_json::Map::new();
    for (name, value) in &parts.headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        // API Gateway joins repeated headers with commas.
        match headers.get_mut(name.as_str()) {
            Some(serde_json::Value::String(existing)) => {
                existing.push(',');
                existing.push_str(&value);
            }
            _ => {
                headers.insert(name.as_str().to_owned(), value.into());
            }
        }
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let request_id = facemake::domain::new_id();
    let (body, is_base64) = match std::str::from_utf8(body) {
        Ok(text) => (text.to_owned(), false),
        Err(_) => (base64::engine::general_purpose::STANDARD.encode(body), true),
    };
    let mut event = serde_json::json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query,
        "headers": headers,
        "requestContext": {
            "accountId": "000000000000",
            "apiId": "local",
            "domainName": "localhost",
            "domainPrefix": "localhost",
            "http": {
                "method": parts.method.as_str(),
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": peer.ip().to_string(),
                "userAgent": parts.headers.get(http::header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or(""),
            },
            "requestId": request_id,
            "routeKey": "$default",
            "stage": "$default",
            "time": "",
            "timeEpoch": now.as_millis() as i64,
        },
        "isBase64Encoded": is_base64,
    });
    if !body.is_empty() {
        event["body"] = body.into();
    }
    event
}

/// Reads `FACEMAKE_BACKEND` (`memory`, the default, or `dynamodb`).
pub fn backend_from_env() -> Result<Backend, String> {
    match std::env::var("FACEMAKE_BACKEND").as_deref() {
        Err(_) | Ok("") | Ok("memory") => Ok(Backend::Memory),
        Ok("dynamodb") => Ok(Backend::Dynamo {
            table_prefix: std::env::var("FACEMAKE_TABLE_PREFIX").unwrap_or_else(|_| "facemake-local-".to_owned()),
        }),
        Ok(other) => Err(format!("FACEMAKE_BACKEND={other} is not one of memory, dynamodb")),
    }
}
