use std::sync::Arc;

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretSlice, SecretString};
use serde::Deserialize;
use tokio::sync::OnceCell;

use crate::crypto::{derive_key, sha256_b64};
use crate::ports::{AppKeys, KeyProvider, PortError, SigningKey};

/// The shortest master secret accepted: 256 bits.
pub const MIN_MASTER_LEN: usize = 32;

/// Derives the access-token and code-hashing keys from the master secret (and, during a rotation, the
/// previous one, whose tokens keep verifying until they expire).
pub fn keys_from_master(current: &[u8], previous: Option<&[u8]>) -> Arc<AppKeys> {
    let signing = |master: &[u8]| {
        let secret = derive_key(master, "access-token");
        SigningKey { kid: sha256_b64(&secret)[..12].to_owned(), secret: SecretSlice::from(secret.to_vec()) }
    };
    let mut access = vec![signing(current)];
    if let Some(prev) = previous {
        access.push(signing(prev));
    }
    let cursor = std::iter::once(current)
        .chain(previous)
        .map(|master| SecretSlice::from(derive_key(master, "cursor").to_vec()))
        .collect();
    Arc::new(AppKeys { access, otp: SecretSlice::from(derive_key(current, "otp-code").to_vec()), cursor })
}

/// Fixed keys (local API and tests).
pub struct StaticKeys(Arc<AppKeys>);

impl StaticKeys {
    pub fn new(master: &[u8]) -> Self {
        Self(keys_from_master(master, None))
    }
}

#[async_trait]
impl KeyProvider for StaticKeys {
    async fn keys(&self) -> Result<Arc<AppKeys>, PortError> {
        Ok(self.0.clone())
    }
}

/// The app secret's JSON: `{"signingKey": "...", "previousSigningKey": "..."}` (the second only while rotating).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AppSecret {
    signing_key: SecretString,
    #[serde(default)]
    previous_signing_key: Option<SecretString>,
}

/// Parses the app secret and derives the keys; refuses keys shorter than 256 bits.
pub fn keys_from_secret_json(json: &str) -> Result<Arc<AppKeys>, PortError> {
    let secret: AppSecret = serde_json::from_str(json)
        .map_err(|_| PortError::internal("app secret", "secret is not {\"signingKey\": ...}"))?;
    let current = secret.signing_key.expose_secret().as_bytes();
    if current.len() < MIN_MASTER_LEN {
        return Err(PortError::internal("app secret", "signingKey is shorter than 32 bytes"));
    }
    let previous = secret.previous_signing_key.as_ref().map(|p| p.expose_secret().as_bytes()).filter(|p| !p.is_empty());
    Ok(keys_from_master(current, previous))
}

/// Reads one secret's string from Secrets Manager.
pub async fn fetch_secret_string(
    client: &aws_sdk_secretsmanager::Client,
    arn: &str,
    what: &'static str,
) -> Result<SecretString, PortError> {
    let out =
        client.get_secret_value().secret_id(arn).send().await.map_err(|e| {
            PortError::unavailable(what, aws_sdk_secretsmanager::error::DisplayErrorContext(e).to_string())
        })?;
    out.secret_string()
        .map(|s| SecretString::from(s.to_owned()))
        .ok_or_else(|| PortError::internal(what, "secret has no string value"))
}

/// Keys from the app secret in Secrets Manager, fetched on first use and cached for the container's life
/// (no network call at init; concurrent first requests share one fetch).
pub struct SecretsManagerKeys {
    client: aws_sdk_secretsmanager::Client,
    arn: String,
    cell: OnceCell<Arc<AppKeys>>,
}

impl SecretsManagerKeys {
    pub fn new(client: aws_sdk_secretsmanager::Client, arn: impl Into<String>) -> Self {
        Self { client, arn: arn.into(), cell: OnceCell::new() }
    }
}

#[async_trait]
impl KeyProvider for SecretsManagerKeys {
    async fn keys(&self) -> Result<Arc<AppKeys>, PortError> {
        self.cell
            .get_or_try_init(|| async {
                let json = fetch_secret_string(&self.client, &self.arn, "app secret").await?;
                keys_from_secret_json(json.expose_secret())
            })
            .await
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_json_yields_keys_and_rejects_short_or_malformed_secrets() {
        let keys = keys_from_secret_json(r#"{"signingKey":"0123456789abcdef0123456789abcdef0123"}"#).unwrap();
        assert_eq!(keys.access.len(), 1);
        let rotating = keys_from_secret_json(
            r#"{"signingKey":"0123456789abcdef0123456789abcdef0123","previousSigningKey":"ffffffffffffffffffffffffffffffffffff"}"#,
        )
        .unwrap();
        assert_eq!(rotating.access.len(), 2);
        assert_eq!(rotating.access[0].kid, keys.access[0].kid);
        assert!(keys_from_secret_json(r#"{"signingKey":"short"}"#).is_err());
        assert!(keys_from_secret_json("not json").is_err());
        // The error never echoes the secret.
        let err = keys_from_secret_json(r#"{"signingKey":"short-but-secret"}"#).unwrap_err().to_string();
        assert!(!err.contains("short-but-secret"), "{err}");
    }
}

#[cfg(test)]
mod secrets_manager_tests {
    use super::*;
    use wiremock::matchers::{body_partial_json, header, method};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    fn client(endpoint: &str) -> aws_sdk_secretsmanager::Client {
        let config = aws_sdk_secretsmanager::Config::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url(endpoint)
            .credentials_provider(aws_sdk_secretsmanager::config::Credentials::new("k", "s", None, None, "test"))
            .build();
        aws_sdk_secretsmanager::Client::from_conf(config)
    }

    #[tokio::test]
    async fn fetches_the_secret_once_per_container_even_under_concurrent_first_requests() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(header("x-amz-target", "secretsmanager.GetSecretValue"))
            .and(body_partial_json(serde_json::json!({"SecretId": "arn:aws:secretsmanager:us-east-1:1:secret:app"})))
            .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
                "ARN": "arn:aws:secretsmanager:us-east-1:1:secret:app",
                "Name": "app",
                "SecretString": "{\"signingKey\":\"0123456789abcdef0123456789abcdef0123\"}",
                "VersionId": "v1"
            })))
            .expect(1)
            .mount(&server)
            .await;
        let keys =
            Arc::new(SecretsManagerKeys::new(client(&server.uri()), "arn:aws:secretsmanager:us-east-1:1:secret:app"));
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let keys = keys.clone();
                tokio::spawn(async move { keys.keys().await.map(|k| k.access[0].kid.clone()) })
            })
            .collect();
        let expected = keys_from_secret_json(r#"{"signingKey":"0123456789abcdef0123456789abcdef0123"}"#).unwrap();
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap(), expected.access[0].kid);
        }
        assert_eq!(keys.keys().await.unwrap().access[0].kid, expected.access[0].kid);
        // `expect(1)` is verified when the server drops: one fetch for nine uses.
    }

    #[tokio::test]
    async fn an_unreachable_secrets_manager_is_unavailable_and_retried_on_the_next_request() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(
                ResponseTemplate::new(500).set_body_json(serde_json::json!({"__type": "InternalServiceError"})),
            )
            .mount(&server)
            .await;
        let keys = SecretsManagerKeys::new(client(&server.uri()), "app");
        let err = keys.keys().await.unwrap_err();
        assert!(matches!(err, PortError::Unavailable { .. }), "{err}");
        server.reset().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
                "SecretString": "{\"signingKey\":\"0123456789abcdef0123456789abcdef0123\"}"
            })))
            .mount(&server)
            .await;
        assert!(keys.keys().await.is_ok(), "a failed fetch is not cached");
    }
}
