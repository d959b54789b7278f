//! Apple Push Notification service: one alert per device, `POST /3/device/<token>` over HTTP/2 to the
//! production or the sandbox host (the token's environment), authenticated with a provider token (an ES256
//! JWT, `iss` the team id, `kid` the key id) signed with the APNs auth key: the .p8 file from Secrets Manager
//! (`APNS_KEY_SECRET_ARN`: `{"keyId", "teamId", "privateKey"}`). The provider token is made once and reused
//! for 50 minutes (APNs refuses one older than an hour, and one renewed more often than every 20 minutes).

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Deserialize;

use super::secrets::CachedSecret;
use crate::domain::{Device, PushEnvironment, UnixTime};
use crate::ports::{Clock, PortError, Push, PushOutcome, PushSender};

const WHAT: &str = "apns";
/// Apple's hosts.
pub const PRODUCTION_URL: &str = "https://api.push.apple.com";
pub const SANDBOX_URL: &str = "https://api.sandbox.push.apple.com";
/// How long one provider token is used.
const TOKEN_REUSE_SECS: i64 = 50 * 60;
/// How long APNs keeps trying to deliver an alert to a device that is offline.
const EXPIRATION_SECS: i64 = 24 * 3600;

/// The APNs auth key.
pub struct ApnsKey {
    pub key_id: String,
    pub team_id: String,
    key: EncodingKey,
}

impl ApnsKey {
    /// A key from its parts; `private_key` is the .p8 file's text (PKCS#8 PEM of a P-256 key).
    pub fn new(key_id: &str, team_id: &str, private_key: &str) -> Result<Self, PortError> {
        use aws_lc_rs::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
        use base64::Engine;
        let bad = || PortError::internal(WHAT, "privateKey is not the PEM text of a .p8 (P-256) key");
        let body = private_key
            .split("-----BEGIN PRIVATE KEY-----")
            .nth(1)
            .and_then(|rest| rest.split("-----END PRIVATE KEY-----").next())
            .ok_or_else(bad)?;
        let text: String = body.chars().filter(|c| !c.is_whitespace()).collect();
        let der = base64::engine::general_purpose::STANDARD.decode(text).map_err(|_| bad())?;
        // Checked now, so a bad key is one clear error at the first push rather than a signing failure each time.
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der).map_err(|_| bad())?;
        let key = EncodingKey::from_ec_der(&der);
        Ok(Self { key_id: key_id.trim().to_owned(), team_id: team_id.trim().to_owned(), key })
    }
}

/// The secret's JSON; `None` while its `keyId` is empty (the template's placeholder: pushes are off).
pub fn parse_apns_key(text: &str) -> Result<Option<ApnsKey>, PortError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Raw {
        #[serde(default)]
        key_id: String,
        #[serde(default)]
        team_id: String,
        #[serde(default)]
        private_key: String,
    }
    // The error says which shape was expected, never what the secret holds.
    let raw: Raw = serde_json::from_str(text)
        .map_err(|_| PortError::internal(WHAT, "the APNs key secret is not {keyId, teamId, privateKey} JSON"))?;
    if raw.key_id.trim().is_empty() {
        return Ok(None);
    }
    if raw.team_id.trim().is_empty() {
        return Err(PortError::internal(WHAT, "the APNs key secret needs teamId"));
    }
    ApnsKey::new(&raw.key_id, &raw.team_id, &raw.private_key).map(Some)
}

/// Where the key comes from.
pub enum ApnsKeySource {
    Secret(CachedSecret<Option<ApnsKey>>),
    Fixed(Arc<Option<ApnsKey>>),
}

impl ApnsKeySource {
    async fn get(&self) -> Result<Arc<Option<ApnsKey>>, PortError> {
        match self {
            Self::Secret(secret) => secret.get().await,
            Self::Fixed(key) => Ok(key.clone()),
        }
    }
}

/// The payload APNs is sent for `push`: the alert, and the app's own keys beside `aps`.
pub fn payload(push: &Push) -> serde_json::Value {
    serde_json::json!({
        "aps": {
            "alert": { "title": push.title, "body": push.body },
            "sound": "default",
            "thread-id": "generations",
        },
        "generationId": push.generation_id,
        "status": push.status,
    })
}

/// A provider token and what it was made with.
struct ProviderToken {
    jwt: String,
    key_id: String,
    issued_at: UnixTime,
}

/// The APNs sender.
pub struct Apns {
    key: ApnsKeySource,
    /// The app's bundle id.
    topic: String,
    production_url: String,
    sandbox_url: String,
    clock: Arc<dyn Clock>,
    client: OnceLock<reqwest::Client>,
    token: Mutex<Option<ProviderToken>>,
}

impl Apns {
    /// `production_url` and `sandbox_url` are Apple's hosts ([`PRODUCTION_URL`], [`SANDBOX_URL`]) unless a
    /// test points them at a stand-in.
    pub fn new(
        key: ApnsKeySource,
        topic: &str,
        production_url: &str,
        sandbox_url: &str,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            key,
            topic: topic.to_owned(),
            production_url: production_url.trim_end_matches('/').to_owned(),
            sandbox_url: sandbox_url.trim_end_matches('/').to_owned(),
            clock,
            client: OnceLock::new(),
            token: Mutex::new(None),
        }
    }

    /// The HTTP/2 client, made on first use (functions that never push never build it).
    fn client(&self) -> Result<reqwest::Client, String> {
        if let Some(client) = self.client.get() {
            return Ok(client.clone());
        }
        let client = reqwest::Client::builder()
            // APNs speaks HTTP/2 only.
            .http2_prior_knowledge()
            .connect_timeout(Duration::from_secs(3))
            // A push is a courtesy at the end of a job: it must not hold the function long.
            .timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| e.to_string())?;
        Ok(self.client.get_or_init(|| client).clone())
    }

    /// The provider token: the one in use while it is young enough and made with this key, else a new one.
    fn provider_token(&self, key: &ApnsKey) -> Result<String, String> {
        let now = self.clock.now();
        let mut token = self.token.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = token.as_ref() {
            if t.key_id == key.key_id && now - t.issued_at < TOKEN_REUSE_SECS && now >= t.issued_at {
                return Ok(t.jwt.clone());
            }
        }
        #[derive(serde::Serialize)]
        struct Claims<'a> {
            iss: &'a str,
            iat: UnixTime,
        }
        let header = Header { kid: Some(key.key_id.clone()), ..Header::new(Algorithm::ES256) };
        let jwt = jsonwebtoken::encode(&header, &Claims { iss: &key.team_id, iat: now }, &key.key)
            .map_err(|e| format!("signing the provider token: {e}"))?;
        *token = Some(ProviderToken { jwt: jwt.clone(), key_id: key.key_id.clone(), issued_at: now });
        Ok(jwt)
    }

    fn forget_token(&self) {
        *self.token.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

/// APNs' error body.
#[derive(Deserialize)]
struct ApnsError {
    #[serde(default)]
    reason: String,
    /// For 410: when APNs learnt the token is no longer valid (milliseconds since the epoch).
    #[serde(default)]
    timestamp: Option<i64>,
}

#[async_trait]
impl PushSender for Apns {
    async fn send(&self, device: &Device, push: &Push) -> PushOutcome {
        let key = match self.key.get().await {
            Ok(key) => key,
            Err(e) => return PushOutcome::Failed(format!("the APNs key: {e}")),
        };
        let Some(key) = key.as_ref() else { return PushOutcome::NotConfigured };
        let (jwt, client) = match (self.provider_token(key), self.client()) {
            (Ok(jwt), Ok(client)) => (jwt, client),
            (Err(e), _) | (_, Err(e)) => return PushOutcome::Failed(e),
        };
        let base = match device.environment {
            PushEnvironment::Production => &self.production_url,
            PushEnvironment::Sandbox => &self.sandbox_url,
        };
        let response = client
            .post(format!("{base}/3/device/{}", device.token))
            .bearer_auth(jwt)
            .header("apns-topic", &self.topic)
            .header("apns-push-type", "alert")
            .header("apns-priority", "10")
            .header("apns-expiration", (self.clock.now() + EXPIRATION_SECS).to_string())
            .header("apns-collapse-id", &push.generation_id)
            .json(&payload(push))
            .send()
            .await;
        let response = match response {
            Ok(r) => r,
            Err(e) => return PushOutcome::Failed(format!("APNs unreachable: {e}")),
        };
        let status = response.status();
        if status.is_success() {
            return PushOutcome::Delivered;
        }
        let error: Option<ApnsError> = response.json().await.ok();
        let reason = error.as_ref().map_or("", |e| e.reason.as_str());
        match (status.as_u16(), reason) {
            (410, _) => PushOutcome::Unregistered { since: error.and_then(|e| e.timestamp).map(|ms| ms / 1000) },
            (403, "ExpiredProviderToken" | "InvalidProviderToken") => {
                // The next push signs a new one (a rotated key, a clock that jumped).
                self.forget_token();
                PushOutcome::Failed(format!("APNs {status}: {reason}"))
            }
            _ => PushOutcome::Failed(format!("APNs {status}: {reason}")),
        }
    }
}

/// No push service at all (a stage without `APNS_KEY_SECRET_ARN`).
pub struct NoPushes;

#[async_trait]
impl PushSender for NoPushes {
    async fn send(&self, _: &Device, _: &Push) -> PushOutcome {
        PushOutcome::NotConfigured
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_payload_has_the_alert_and_the_generation() {
        let push = Push {
            title: "Your portrait is ready".to_owned(),
            body: "Tap to see it.".to_owned(),
            generation_id: "01JGEN".to_owned(),
            status: "succeeded",
        };
        let p = payload(&push);
        assert_eq!(p["aps"]["alert"]["title"], "Your portrait is ready");
        assert_eq!(p["aps"]["alert"]["body"], "Tap to see it.");
        assert_eq!(p["generationId"], "01JGEN");
        assert_eq!(p["status"], "succeeded");
    }

    #[test]
    fn the_secret_is_parsed_and_its_placeholder_means_no_pushes() {
        assert!(parse_apns_key(r#"{"keyId":"","teamId":"","privateKey":""}"#).unwrap().is_none());
        assert!(parse_apns_key("not json").is_err());
        assert!(parse_apns_key(r#"{"keyId":"ABC","teamId":"","privateKey":"x"}"#).is_err());
        let bad = parse_apns_key(r#"{"keyId":"ABC","teamId":"TEAM","privateKey":"-----BEGIN PRIVATE KEY-----"}"#);
        let message = bad.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(message.contains("not the PEM text"), "{message}");
        assert!(!message.contains("BEGIN"), "the error never repeats the secret: {message}");
    }
}
