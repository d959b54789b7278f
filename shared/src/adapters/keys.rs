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
    Arc::new(AppKeys { access, otp: SecretSlice::from(derive_key(current, "otp-code").to_vec()) })
}

/// Fixed keys (local API and tests).
pub struct StaticKeys(Arc<AppKeys>);

impl StaticKeys {
    pub fn new(master: &[u8]) -> Self {
        Self(keys_from_master(master, None))
    }

    /// Keys from a fresh random master: tokens do not survive a restart, which suits the local API.
    pub fn random() -> Result<Self, crate::crypto::CryptoError> {
        Ok(Self::new(&crate::crypto::random_bytes::<32>()?))
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
