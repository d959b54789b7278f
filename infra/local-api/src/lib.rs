//! The whole Facemake API in one process: every function's router merged into one, served over HTTP on
//! localhost. Each request is turned into the same API Gateway HTTP API (v2) event JSON that AWS sends and
//! parsed by lambda_http itself, so handlers see exactly what they see in Lambda.
//!
//! By default everything runs on the in-memory adapters (no Docker, no AWS account). With
//! `FACEMAKE_BACKEND=dynamodb` the same API runs on DynamoDB (DynamoDB Local through `AWS_ENDPOINT_URL`, or
//! a real account), creating its tables from template.yaml when they do not exist.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use facemake::adapters::dynamodb::schema::create_tables;
use facemake::adapters::keys::StaticKeys;
use facemake::adapters::memory::{MemoryOutbox, MemoryStore};
use facemake::config::AuthPolicy;
use facemake::http::Router;
use facemake::ports::{Clock, SystemClock};
use facemake::wiring::{aws_config, Deps, Store};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
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

/// A running configuration of the local API: its router and the outbox it "sends" texts to.
#[derive(Clone)]
pub struct LocalApi {
    pub router: Router,
    pub outbox: MemoryOutbox,
}

impl LocalApi {
    /// Builds every function's router over `store` with local keys and the printing outbox.
    pub fn new(store: Arc<dyn Store>, outbox: MemoryOutbox, policy: AuthPolicy, clock: Arc<dyn Clock>) -> Self {
        let deps = Deps {
            store,
            keys: Arc::new(StaticKeys::new(LOCAL_SIGNING_KEY)),
            sms: Arc::new(outbox.clone()),
            clock,
            policy,
        };
        let router = send_code::router(Arc::new(send_code::State::new(&deps)))
            .merge(verify_code::router(Arc::new(verify_code::State::new(&deps))))
            .merge(account::router(Arc::new(account::State::new(&deps))));
        Self { router, outbox }
    }

    /// The local API on the in-memory store.
    pub fn in_memory(policy: AuthPolicy) -> Self {
        Self::new(Arc::new(MemoryStore::new()), MemoryOutbox::printing(), policy, Arc::new(SystemClock))
    }

    /// The local API on DynamoDB, creating the template's tables under `prefix` if needed.
    pub async fn on_dynamodb(prefix: &str, policy: AuthPolicy) -> Result<Self, facemake::ports::PortError> {
        let sdk = aws_config().await;
        let client = aws_sdk_dynamodb::Client::new(&sdk);
        let tables = create_tables(&client, prefix).await?;
        let store = facemake::adapters::dynamodb::DynamoStore::new(client, tables);
        Ok(Self::new(Arc::new(store), MemoryOutbox::printing(), policy, Arc::new(SystemClock)))
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
        if parts.uri.path() == "/_local/messages" {
            return self.messages(&parts.uri);
        }
        let event = api_gateway_event(&parts, &body, peer);
        let response = match lambda_http::request::from_str(&event.to_string()) {
            Ok(request) => self.router.handle(request).await,
            Err(e) => return plain(400, &format!("could not build an API Gateway event: {e}")),
        };
        let (parts, body) = response.into_parts();
        http::Response::from_parts(parts, Full::new(Bytes::copy_from_slice(body.as_ref())))
    }

    /// `GET /_local/messages?phone=...`: the texts "sent" to a number, newest first.
    fn messages(&self, uri: &http::Uri) -> http::Response<Full<Bytes>> {
        let phone = url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
            .find(|(k, _)| k == "phone")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        let e164 = facemake::domain::PhoneNumber::from_e164(&phone).map(|p| p.e164().to_owned()).unwrap_or(phone);
        let body = serde_json::json!({ "items": self.outbox.messages_to(&e164) });
        let mut response = http::Response::new(Full::new(Bytes::from(body.to_string())));
        response
            .headers_mut()
            .insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json; charset=utf-8"));
        response
    }
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
