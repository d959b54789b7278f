//! The black-box tests' client: the whole local API on a random port, driven over HTTP like the iOS app.
// Each test file uses a different part of this module.
#![allow(dead_code)]

pub mod openapi;

use std::sync::Arc;

use facemake::adapters::memory::MemoryOutbox;
use facemake::adapters::providers::local::LocalRenderer;
use facemake::config::AuthPolicy;
use facemake::ports::SystemClock;
use facemake::services::generation::{Providers, RetryPolicy};
use facemake::wiring::Store;
use local_api::LocalApi;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

pub struct Api {
    pub base: String,
    pub http: reqwest::Client,
    /// Every documented `(METHOD, path template, status)` this client saw answered, checked against the spec.
    /// Clients may share one (`observed: a.observed.clone()`).
    pub observed: Observed,
}

/// What a client observed, shared between clones.
pub type Observed = Arc<std::sync::Mutex<std::collections::BTreeSet<(String, String, u16)>>>;

impl Api {
    /// The local API over `store` on a random loopback port.
    pub async fn start(store: Arc<dyn Store>) -> Self {
        let providers = Providers::all(Arc::new(LocalRenderer));
        Self::start_with(store, providers).await
    }

    /// The local API over `store`, rendering with `providers`.
    pub async fn start_with(store: Arc<dyn Store>, providers: Providers) -> Self {
        Self::start_with_policy(store, providers, testkit::policy()).await
    }

    /// The local API over `store` with sign-in policy `policy` (e.g. no resend cooldown, for a journey that
    /// signs one number in several times).
    pub async fn start_with_policy(store: Arc<dyn Store>, providers: Providers, policy: AuthPolicy) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let retry =
            RetryPolicy { max_attempts: 2, first_delay: std::time::Duration::from_millis(10), ..Default::default() };
        let api = LocalApi::with_providers(
            store,
            MemoryOutbox::new(),
            policy,
            Arc::new(SystemClock),
            &base,
            providers,
            retry,
        )
        .await
        .unwrap();
        tokio::spawn(api.serve(listener));
        Self { base, http: reqwest::Client::new(), observed: Observed::default() }
    }

    /// Checks a response against docs/openapi.yaml and records it as observed.
    fn checked(&self, method: &Method, path: &str, status: StatusCode, body: &Value) {
        openapi::check(method.as_str(), path, status.as_u16(), body);
        if let Some((method, template)) = openapi::operation(method.as_str(), path) {
            self.observed.lock().unwrap().insert((method, template, status.as_u16()));
        }
    }

    /// A JSON request; the answer is checked against docs/openapi.yaml.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        token: Option<&str>,
    ) -> (StatusCode, Value) {
        self.call_with(method, path, body, token, &[]).await
    }

    /// [`Api::call`] with extra request headers.
    pub async fn call_with(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        token: Option<&str>,
        headers: &[(&str, &str)],
    ) -> (StatusCode, Value) {
        let mut req = self.http.request(method.clone(), format!("{}{path}", self.base));
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let (status, body) = read(req.send().await.unwrap()).await;
        self.checked(&method, path, status, &body);
        (status, body)
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        self.call(Method::GET, path, None, token).await
    }

    pub async fn post(&self, path: &str, body: Value, token: Option<&str>) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(body), token).await
    }

    /// A request with any content type and raw body bytes.
    pub async fn raw(&self, method: Method, path: &str, content_type: &str, body: Vec<u8>) -> (StatusCode, Value) {
        self.raw_with(method, path, content_type, body, None, &[]).await
    }

    /// [`Api::raw`] with a bearer token and extra request headers.
    pub async fn raw_with(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
        token: Option<&str>,
        headers: &[(&str, &str)],
    ) -> (StatusCode, Value) {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .header("content-type", content_type)
            .body(body);
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let (status, body) = read(req.send().await.unwrap()).await;
        self.checked(&method, path, status, &body);
        (status, body)
    }

    /// The latest code the local outbox "texted" to `phone`.
    pub async fn code_for(&self, phone: &str) -> String {
        let (status, body) = self.get(&format!("/_local/messages?phone={}", phone.replace('+', "%2B")), None).await;
        assert_eq!(status, 200);
        let text = body["items"][0]["body"].as_str().unwrap_or_else(|| panic!("no text for {phone}: {body}"));
        text.split(|c: char| !c.is_ascii_digit()).find(|w| w.len() == 6).unwrap().to_owned()
    }

    /// Signs `phone` in and returns the access token.
    pub async fn sign_in(&self, phone: &str) -> String {
        let (status, _) = self.post("/v1/auth/send-code", json!({"phone": phone}), None).await;
        assert_eq!(status, 202);
        let code = self.code_for(phone).await;
        let (status, session) = self.post("/v1/auth/verify-code", json!({"phone": phone, "code": code}), None).await;
        assert_eq!(status, 200, "{session}");
        session["accessToken"].as_str().unwrap().to_owned()
    }

    /// Every page of `path` (which has a query string) at page size `limit`.
    pub async fn all_pages(&self, path: &str, limit: usize, token: Option<&str>) -> Vec<Value> {
        let (mut items, mut cursor) = (Vec::new(), None::<String>);
        loop {
            let mut url = format!("{path}&limit={limit}");
            if let Some(c) = &cursor {
                url.push_str(&format!("&cursor={c}"));
            }
            let (status, page) = self.get(&url, token).await;
            assert_eq!(status, 200, "{url}: {page}");
            let batch = page["items"].as_array().unwrap();
            assert!(batch.len() <= limit);
            items.extend(batch.iter().cloned());
            match page["nextCursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => return items,
            }
        }
    }
}

/// Status and JSON body (`null` when the body is not JSON).
pub async fn read(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}
