//! The signing keys: from the app secret in Secrets Manager (through [`CachedSecret`]), or fixed for local
//! use and tests.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretSlice, SecretString};
use serde::Deserialize;

use crate::adapters::secrets::CachedSecret;
use crate::crypto::{derive_key, sha256_b64};
use crate::ports::{AppKeys, KeyProvider, PortError, SigningKey};

/// The shortest master secret accepted: 256 bits.
pub const MIN_MASTER_LEN: usize = 32;

/// Derives the access-token and code-hashing keys from the master secret (and, during a rotation, the
/// previous one, whose tokens keep verifying until they expire).
pub fn keys_from_master(current: &[u8], previous: Option<&[u8]>) -> Arc<AppKeys> {
    keys_from_masters(current, previous.as_slice())
}

/// Keys that sign with `current` and verify with it and each of `others` (a rotation's next and previous
/// master secrets): access tokens, page cursors and sign-in codes alike.
pub fn keys_from_masters(current: &[u8], others: &[&[u8]]) -> Arc<AppKeys> {
    let masters: Vec<&[u8]> = std::iter::once(current).chain(others.iter().copied()).collect();
    let access = masters
        .iter()
        .map(|master| {
            let secret = derive_key(master, "access-token");
            SigningKey { kid: sha256_b64(&secret)[..12].to_owned(), secret: SecretSlice::from(secret.to_vec()) }
        })
        .collect();
    let derived = |label: &str| masters.iter().map(|m| SecretSlice::from(derive_key(m, label).to_vec())).collect();
    Arc::new(AppKeys { access, otp: derived("otp-code"), cursor: derived("cursor"), number: derived("number-mark") })
}

/// Fixed keys (local API and tests).
pub struct StaticKeys(Arc<AppKeys>);

impl StaticKeys {
    pub fn new(master: &[u8]) -> Self {
        Self(keys_from_master(master, None))
    }

    /// These keys (e.g. a rotation's, from [`keys_from_masters`]).
    pub fn with(keys: Arc<AppKeys>) -> Self {
        Self(keys)
    }
}

#[async_trait]
impl KeyProvider for StaticKeys {
    async fn keys(&self) -> Result<Arc<AppKeys>, PortError> {
        Ok(self.0.clone())
    }
}

/// The app secret's JSON: `{"signingKey": "..."}`, and while a rotation runs `nextSigningKey` (accepted,
/// not yet used to sign) or `previousSigningKey` (no longer used to sign, still accepted).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AppSecret {
    signing_key: SecretString,
    #[serde(default)]
    next_signing_key: Option<SecretString>,
    #[serde(default)]
    previous_signing_key: Option<SecretString>,
}

/// Parses the app secret and derives the keys; refuses keys shorter than 256 bits.
pub fn keys_from_secret_json(json: &str) -> Result<Arc<AppKeys>, PortError> {
    let secret: AppSecret = serde_json::from_str(json)
        .map_err(|_| PortError::internal("app secret", "secret is not {\"signingKey\": ...}"))?;
    let current = secret.signing_key.expose_secret().as_bytes();
    let others: Vec<&[u8]> = [&secret.next_signing_key, &secret.previous_signing_key]
        .into_iter()
        .flatten()
        .map(|k| k.expose_secret().as_bytes())
        .filter(|k| !k.is_empty())
        .collect();
    if std::iter::once(&current).chain(&others).any(|k| k.len() < MIN_MASTER_LEN) {
        return Err(PortError::internal("app secret", "a signing key is shorter than 32 bytes"));
    }
    Ok(keys_from_masters(current, &others))
}

/// Keys from the app secret in Secrets Manager (see [`CachedSecret`]).
pub struct SecretsManagerKeys(CachedSecret<AppKeys>);

impl SecretsManagerKeys {
    pub fn new(client: aws_sdk_secretsmanager::Client, arn: impl Into<String>) -> Self {
        Self(CachedSecret::new(client, arn, "app secret", |json| keys_from_secret_json(json).map(Arc::unwrap_or_clone)))
    }

    /// The refresh period (tests shorten it).
    pub fn with_refresh_after(self, period: Duration) -> Self {
        Self(self.0.with_refresh_after(period))
    }
}

#[async_trait]
impl KeyProvider for SecretsManagerKeys {
    async fn keys(&self) -> Result<Arc<AppKeys>, PortError> {
        self.0.get().await
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

    fn secret_value(json: &str) -> ResponseTemplate {
        ResponseTemplate::new(200).set_body_json(serde_json::json!({"SecretString": json}))
    }

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    /// Keys from a secret holding key A, read once (the container is warm), refreshed after `period`; the
    /// server is reset, so each test mounts what the next read finds. Returns the kid in use.
    async fn warm_keys(period: Duration) -> (MockServer, SecretsManagerKeys, String) {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(secret_value(&format!(r#"{{"signingKey":"{A}"}}"#)))
            .mount(&server)
            .await;
        let keys = SecretsManagerKeys::new(client(&server.uri()), "app").with_refresh_after(period);
        let before = keys.keys().await.unwrap().access[0].kid.clone();
        server.reset().await;
        (server, keys, before)
    }

    #[tokio::test]
    async fn a_changed_secret_reaches_a_warm_container_after_the_refresh_period() {
        let (server, keys, before) = warm_keys(Duration::from_millis(300)).await;
        Mock::given(method("POST"))
            .respond_with(secret_value(&format!(r#"{{"signingKey":"{B}","previousSigningKey":"{A}"}}"#)))
            .mount(&server)
            .await;
        assert_eq!(keys.keys().await.unwrap().access[0].kid, before, "within the period the keys in use stay");
        assert_eq!(server.received_requests().await.unwrap().len(), 0);
        tokio::time::sleep(Duration::from_millis(350)).await;
        let after = keys.keys().await.unwrap();
        assert_ne!(after.access[0].kid, before, "the new signing key is in use");
        assert_eq!(after.access[1].kid, before, "the previous one still verifies");
        assert_eq!(server.received_requests().await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_failed_refresh_keeps_the_keys_in_use_and_waits_before_trying_again() {
        let (server, keys, before) = warm_keys(Duration::from_millis(100)).await;
        Mock::given(method("POST"))
            .respond_with(
                ResponseTemplate::new(500).set_body_json(serde_json::json!({"__type": "InternalServiceError"})),
            )
            .mount(&server)
            .await;
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(keys.keys().await.unwrap().access[0].kid, before, "a warm container survives the outage");
        // One refresh was tried (the SDK retries a 500 itself, so it may be several requests)...
        let tried = server.received_requests().await.unwrap().len();
        assert!(tried >= 1);
        // ...and the next requests use the keys in hand instead of calling Secrets Manager each time.
        for _ in 0..5 {
            assert_eq!(keys.keys().await.unwrap().access[0].kid, before);
        }
        assert_eq!(server.received_requests().await.unwrap().len(), tried, "one attempt, then a pause");
    }

    #[tokio::test]
    async fn a_malformed_refresh_keeps_the_keys_in_use() {
        let (server, keys, before) = warm_keys(Duration::from_millis(100)).await;
        Mock::given(method("POST")).respond_with(secret_value(r#"{"signingKey":"short"}"#)).mount(&server).await;
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(keys.keys().await.unwrap().access[0].kid, before);
    }
}

#[cfg(test)]
mod rotation_tests {
    //! The rotation docs/operations.md describes ("Rotating the signing key"): `{signingKey: A}` → `{signingKey: A, nextSigningKey: B}` →
    //! `{signingKey: B, previousSigningKey: A}` → `{signingKey: B}`, each step at least one refresh period
    //! after the last. Containers refresh at different times, so at any moment two neighbouring steps are in
    //! use at once: whatever one of them signs or hashes, the other must accept.
    use super::*;
    use crate::domain::{OtpCode, PhoneNumber, UserId};
    use crate::http::{decode_cursor, encode_cursor};
    use crate::services::auth::{code_matches, hash_code};
    use crate::tokens::AccessTokens;

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    fn steps() -> Vec<Arc<AppKeys>> {
        [
            format!(r#"{{"signingKey":"{A}"}}"#),
            format!(r#"{{"signingKey":"{A}","nextSigningKey":"{B}"}}"#),
            format!(r#"{{"signingKey":"{B}","previousSigningKey":"{A}"}}"#),
            format!(r#"{{"signingKey":"{B}"}}"#),
        ]
        .iter()
        .map(|json| keys_from_secret_json(json).unwrap())
        .collect()
    }

    fn accepts(signer: &AppKeys, verifier: &AppKeys) -> bool {
        let tokens = AccessTokens { issuer: "i".into(), audience: "a".into(), ttl_secs: 900 };
        let user = UserId::new();
        let now = crate::ports::Clock::now(&crate::ports::SystemClock);
        let token_ok = tokens.verify(verifier, &tokens.issue(signer, &user, now).unwrap()).is_ok();
        let phone = PhoneNumber::parse("+14155550123", None).unwrap();
        let code = OtpCode::parse("123456").unwrap();
        let code_ok = code_matches(verifier, &phone, "c1", &code, &hash_code(signer, &phone, "c1", &code).unwrap());
        let cursor = encode_cursor(signer, "scope", &("position", 7)).unwrap();
        let cursor_ok = decode_cursor::<(String, i32)>(verifier, "scope", &cursor).is_ok();
        assert_eq!(token_ok, code_ok, "tokens and codes rotate together");
        assert_eq!(token_ok, cursor_ok, "tokens and cursors rotate together");
        token_ok
    }

    #[test]
    fn neighbouring_steps_of_a_rotation_accept_each_others_tokens_codes_and_cursors() {
        let steps = steps();
        for pair in steps.windows(2) {
            assert!(accepts(&pair[0], &pair[1]));
            assert!(accepts(&pair[1], &pair[0]));
        }
    }

    #[test]
    fn after_the_rotation_the_old_key_is_refused_and_the_first_step_refuses_the_new_one() {
        let steps = steps();
        assert!(!accepts(&steps[0], &steps[3]), "the retired key signs nothing that verifies");
        assert!(!accepts(&steps[3], &steps[0]));
        // Skipping the `nextSigningKey` step is what would log people out for a refresh period.
        assert!(!accepts(&steps[2], &steps[0]));
    }

    #[test]
    fn every_key_of_the_secret_must_be_long_enough() {
        assert!(keys_from_secret_json(&format!(r#"{{"signingKey":"{A}","nextSigningKey":"short"}}"#)).is_err());
        assert!(keys_from_secret_json(&format!(r#"{{"signingKey":"{A}","previousSigningKey":"short"}}"#)).is_err());
        assert!(keys_from_secret_json(&format!(r#"{{"signingKey":"{A}","nextSigningKey":""}}"#)).is_ok());
    }
}
