//! The App Store Server API's Send Consumption Information (`PUT /inApps/v2/transactions/consumption/{id}`),
//! through Apple's library's client (`app-store-server-library`, feature `api-client`): it signs each request
//! with the app's In-App Purchase key (ES256 JWT, `aud` appstoreconnect-v1, `bid` the bundle id). The key comes
//! from Secrets Manager (`APP_STORE_API_SECRET_ARN`: `{"keyId", "issuerId", "privateKey"}`, the .p8 file's
//! PEM text); an empty `keyId` means the stage has none and nothing is sent. Requests go out through reqwest
//! (the library's [`Transport`]), whose base address tests point at a local stand-in.

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use app_store_server_library::api_client::transport::{Transport, TransportError};
use app_store_server_library::app_store_server_api_client::{AppStoreServerApiClient, AppStoreServerApiClientError};
use app_store_server_library::models::app_store_environment::Environment;
use app_store_server_library::models::consumption_request::ConsumptionRequest;
use app_store_server_library::models::delivery_status::DeliveryStatus;
use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::secrets::CachedSecret;
use crate::config::AppStoreEnvironment;
use crate::ports::{ConsumptionReport, ConsumptionReporter, PortError, ReportOutcome};

const WHAT: &str = "app store api";

/// The In-App Purchase key the API requests are signed with.
pub struct ApiKey {
    pub key_id: String,
    pub issuer_id: String,
    /// The .p8 file's text (PKCS#8 PEM).
    pub private_key: SecretString,
}

/// The secret's JSON; `None` while its `keyId` is empty (the template's placeholder).
pub fn parse_api_key(text: &str) -> Result<Option<ApiKey>, PortError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Raw {
        #[serde(default)]
        key_id: String,
        #[serde(default)]
        issuer_id: String,
        #[serde(default)]
        private_key: String,
    }
    // The error says which shape was expected, never what the secret holds.
    let raw: Raw = serde_json::from_str(text)
        .map_err(|_| PortError::internal(WHAT, "the API key secret is not {keyId, issuerId, privateKey} JSON"))?;
    if raw.key_id.trim().is_empty() {
        return Ok(None);
    }
    if raw.issuer_id.trim().is_empty() || !raw.private_key.contains("PRIVATE KEY") {
        return Err(PortError::internal(WHAT, "the API key secret needs issuerId and the .p8 key's PEM text"));
    }
    Ok(Some(ApiKey {
        key_id: raw.key_id.trim().to_owned(),
        issuer_id: raw.issuer_id.trim().to_owned(),
        private_key: SecretString::from(raw.private_key),
    }))
}

/// Where the key comes from.
pub enum KeySource {
    Secret(CachedSecret<Option<ApiKey>>),
    Fixed(Arc<Option<ApiKey>>),
}

/// [`Transport`] over reqwest, its client made on first use (no cost at cold start for the functions that
/// never call Apple); `base` (tests only) replaces Apple's scheme, host and port.
#[derive(Clone)]
pub struct ReqwestTransport {
    client: Arc<OnceLock<reqwest::Client>>,
    base: Option<String>,
}

impl ReqwestTransport {
    pub fn new(base: Option<String>) -> Self {
        Self { client: Arc::default(), base: base.map(|b| b.trim_end_matches('/').to_owned()) }
    }

    fn client(&self) -> Result<reqwest::Client, TransportError> {
        if let Some(client) = self.client.get() {
            return Ok(client.clone());
        }
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            // Inside the function's 10 s timeout, so a slow Apple fails the notification (503) instead of the
            // Lambda being killed.
            .timeout(Duration::from_secs(5))
            // Apple answers directly; a redirect is not part of the API.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| TransportError::Other(e.to_string()))?;
        Ok(self.client.get_or_init(|| client).clone())
    }
}

impl Transport for ReqwestTransport {
    fn send(
        &self,
        req: http::Request<Vec<u8>>,
    ) -> impl Future<Output = Result<http::Response<Vec<u8>>, TransportError>> + Send {
        let (client, base) = (self.client(), self.base.clone());
        async move {
            let client = client?;
            let (parts, body) = req.into_parts();
            let url = match base {
                Some(base) => format!("{base}{}", parts.uri.path_and_query().map_or("/", |p| p.as_str())),
                None => parts.uri.to_string(),
            };
            let response =
                client.request(parts.method, url).headers(parts.headers).body(body).send().await.map_err(|e| {
                    if e.is_timeout() {
                        TransportError::Timeout
                    } else {
                        TransportError::NetworkError(e.to_string())
                    }
                })?;
            let mut out = http::Response::builder().status(response.status());
            for (name, value) in response.headers() {
                out = out.header(name, value);
            }
            let bytes = response.bytes().await.map_err(|e| TransportError::InvalidResponse(e.to_string()))?;
            out.body(bytes.to_vec()).map_err(|e| TransportError::InvalidResponse(e.to_string()))
        }
    }
}

/// Send Consumption Information for this stage's app and App Store environment.
pub struct AppStoreApi {
    key: KeySource,
    bundle_id: String,
    environment: Environment,
    transport: ReqwestTransport,
}

impl AppStoreApi {
    pub fn new(key: KeySource, bundle_id: &str, environment: AppStoreEnvironment, transport: ReqwestTransport) -> Self {
        let environment = match environment {
            AppStoreEnvironment::Sandbox => Environment::Sandbox,
            AppStoreEnvironment::Production => Environment::Production,
        };
        Self { key, bundle_id: bundle_id.to_owned(), environment, transport }
    }

    async fn key(&self) -> Result<Arc<Option<ApiKey>>, PortError> {
        match &self.key {
            KeySource::Fixed(key) => Ok(key.clone()),
            KeySource::Secret(secret) => secret.get().await,
        }
    }
}

/// Apple's request body for `report` (sent only with the customer's consent, so `customerConsented` is true:
/// Apple refuses any other value).
pub fn consumption_request(report: &ConsumptionReport) -> ConsumptionRequest {
    ConsumptionRequest {
        customer_consented: true,
        // Apple requires 0 for anything undelivered.
        consumption_percentage: Some(if report.delivered { report.consumption_milli.min(100_000) } else { 0 }),
        delivery_status: if report.delivered { DeliveryStatus::Delivered } else { DeliveryStatus::UndeliveredOther },
        refund_preference: None,
        sample_content_provided: report.sample_content_provided,
    }
}

fn outcome(e: &AppStoreServerApiClientError) -> Result<ReportOutcome, PortError> {
    match e.status() {
        // Rate limited, Apple's own failures, and the library's network/timeout statuses: Apple retries the
        // notification, and with it this request.
        429 | 500.. => {
            Err(PortError::unavailable(WHAT, format!("status {}: {}", e.status(), e.message().unwrap_or(""))))
        }
        status => Ok(ReportOutcome::Refused { status, code: e.raw_code() }),
    }
}

#[async_trait]
impl ConsumptionReporter for AppStoreApi {
    async fn send(&self, report: &ConsumptionReport) -> Result<ReportOutcome, PortError> {
        let key = self.key().await?;
        let Some(key) = key.as_ref() else { return Ok(ReportOutcome::NotConfigured) };
        let client = AppStoreServerApiClient::new(
            key.private_key.expose_secret().as_bytes().to_vec(),
            &key.key_id,
            &key.issuer_id,
            &self.bundle_id,
            self.environment.clone(),
            self.transport.clone(),
        )
        .map_err(|e| PortError::internal(WHAT, format!("client: {e:?}")))?;
        match client.send_consumption_information(&report.transaction_id, &consumption_request(report)).await {
            Ok(()) => Ok(ReportOutcome::Sent),
            Err(e) => outcome(&e),
        }
    }
}

/// A stage without an In-App Purchase key configured.
pub struct NotConfigured;

#[async_trait]
impl ConsumptionReporter for NotConfigured {
    async fn send(&self, _: &ConsumptionReport) -> Result<ReportOutcome, PortError> {
        Ok(ReportOutcome::NotConfigured)
    }
}
