//! Verifying a provider's signed callback ("Standard Webhooks", as Replicate signs its webhooks): the
//! `webhook-id`, `webhook-timestamp` and `webhook-signature` headers, HMAC-SHA256 of `id.timestamp.body` with the
//! signing key (`whsec_…`, base64), the timestamp within 5 minutes of now. The standardwebhooks crate checks the
//! signature (in constant time) and the timestamp.

use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::secrets::CachedSecret;
use crate::ports::PortError;

/// The signing key the local stand-ins (the local API, the loopback stage of the IAM and benchmark tests)
/// verify with; never a deployed stage's: one without `REPLICATE_WEBHOOK_SECRET_ARN` refuses every callback.
pub const LOCAL_SIGNING_KEY: &str = "whsec_ZmFjZW1ha2UtbG9jYWwtcmVwbGljYXRlLXdlYmhvb2sta2V5";

/// Why a callback was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// A signature header is missing or unreadable: not a signed callback at all (400).
    #[error("unsigned: {0}")]
    Unsigned(&'static str),
    /// Signed, but not by our key, or over another body (401).
    #[error("bad signature")]
    BadSignature,
    /// Signed too long ago, or in the future: a replay, or a clock far off (401).
    #[error("stale timestamp")]
    Stale,
}

/// The signing key: from Secrets Manager (deployed) or given (the local API, tests).
pub enum SigningKey {
    Secret(CachedSecret<SecretString>),
    Fixed(SecretString),
    /// A deployed stage without the secret: every callback is refused (and logged as a misconfiguration).
    Missing,
}

/// Verifies Replicate's webhooks.
pub struct WebhookVerifier {
    key: SigningKey,
}

/// The webhook secret's JSON: `{"signingKey": "whsec_…"}` (Replicate's `GET /v1/webhooks/default/secret`).
pub fn parse_signing_key(text: &str) -> Result<SecretString, PortError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Raw {
        signing_key: String,
    }
    // Unavailable (503, the provider retries), not internal: the usual cause is a key not set yet, which an
    // operator fixes without a deploy.
    let raw: Raw = serde_json::from_str(text)
        .map_err(|_| PortError::unavailable("webhook secret", "expected {\"signingKey\": \"whsec_...\"}"))?;
    if standardwebhooks::Webhook::new(&raw.signing_key).is_err() || raw.signing_key.trim().is_empty() {
        return Err(PortError::unavailable("webhook secret", "signingKey is not set, or not a whsec_ base64 key"));
    }
    Ok(SecretString::from(raw.signing_key))
}

impl WebhookVerifier {
    pub fn new(key: SigningKey) -> Self {
        Self { key }
    }

    /// `Ok(())` for a callback signed with our key within the last 5 minutes; a port error when the key
    /// cannot be read (the caller answers 503 and the provider sends it again).
    pub async fn verify(&self, headers: &http::HeaderMap, body: &[u8]) -> Result<Result<(), Rejection>, PortError> {
        let key: Arc<SecretString> = match &self.key {
            SigningKey::Secret(secret) => secret.get().await?,
            SigningKey::Fixed(key) => Arc::new(key.clone()),
            SigningKey::Missing => {
                tracing::error!("no REPLICATE_WEBHOOK_SECRET_ARN: every callback is refused");
                return Ok(Err(Rejection::BadSignature));
            }
        };
        let webhook = standardwebhooks::Webhook::new(key.expose_secret())
            .map_err(|_| PortError::unavailable("webhook secret", "signingKey is not a whsec_ base64 key"))?;
        use standardwebhooks::WebhookError as E;
        Ok(match webhook.verify(body, headers) {
            Ok(()) => Ok(()),
            Err(E::MissingHeader(h) | E::InvalidHeader(h)) => Err(Rejection::Unsigned(h)),
            Err(E::InvalidTimestamp) => Err(Rejection::Unsigned("timestamp")),
            Err(E::TimestampTooOldError | E::FutureTimestampError) => Err(Rejection::Stale),
            Err(E::InvalidSignature | E::InvalidPayload | E::InvalidSecret(_)) => Err(Rejection::BadSignature),
        })
    }
}

/// A callback URL as the worker gives it to a provider: absolute http(s), no query or fragment (the worker adds
/// the job to the query).
pub fn callback_url(url: &str) -> Result<String, String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| e.to_string())?;
    if !matches!(parsed.scheme(), "https" | "http") || parsed.host_str().is_none() {
        return Err("must be an http(s) URL".to_owned());
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err("must have no query or fragment".to_owned());
    }
    Ok(url.to_owned())
}

/// Signs `body` as the provider would (tests and the local API's stand-in).
pub fn sign(key: &str, id: &str, timestamp: i64, body: &[u8]) -> Result<String, PortError> {
    let webhook = standardwebhooks::Webhook::new(key).map_err(|e| PortError::internal("webhook", e.to_string()))?;
    webhook.sign(id, timestamp, body).map_err(|e| PortError::internal("webhook", e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn headers(id: &str, timestamp: i64, signature: &str) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert("webhook-id", id.parse().unwrap());
        h.insert("webhook-timestamp", timestamp.to_string().parse().unwrap());
        h.insert("webhook-signature", signature.parse().unwrap());
        h
    }

    fn now() -> i64 {
        crate::ports::Clock::now(&crate::ports::SystemClock)
    }

    #[tokio::test]
    async fn only_our_key_over_this_body_within_five_minutes_passes() {
        let verifier = WebhookVerifier::new(SigningKey::Fixed(SecretString::from(KEY)));
        let body = br#"{"id":"p1","status":"succeeded"}"#;
        let good = sign(KEY, "msg_1", now(), body).unwrap();
        assert_eq!(verifier.verify(&headers("msg_1", now(), &good), body).await.unwrap(), Ok(()));
        // Several signatures (a key rotation): one of ours is enough.
        let both = format!("v1,AAAA {good}");
        assert_eq!(verifier.verify(&headers("msg_1", now(), &both), body).await.unwrap(), Ok(()));
        let other_body = br#"{"id":"p1","status":"failed"}"#;
        assert_eq!(
            verifier.verify(&headers("msg_1", now(), &good), other_body).await.unwrap(),
            Err(Rejection::BadSignature)
        );
        assert_eq!(verifier.verify(&headers("msg_2", now(), &good), body).await.unwrap(), Err(Rejection::BadSignature));
        let theirs = sign("whsec_c2VjcmV0LW9mLXNvbWVvbmUtZWxzZQ==", "msg_1", now(), body).unwrap();
        assert_eq!(
            verifier.verify(&headers("msg_1", now(), &theirs), body).await.unwrap(),
            Err(Rejection::BadSignature)
        );
        let old = now() - 400;
        let stale = sign(KEY, "msg_1", old, body).unwrap();
        assert_eq!(verifier.verify(&headers("msg_1", old, &stale), body).await.unwrap(), Err(Rejection::Stale));
        let future = now() + 400;
        let early = sign(KEY, "msg_1", future, body).unwrap();
        assert_eq!(verifier.verify(&headers("msg_1", future, &early), body).await.unwrap(), Err(Rejection::Stale));
        assert!(matches!(verifier.verify(&http::HeaderMap::new(), body).await.unwrap(), Err(Rejection::Unsigned(_))));
    }

    #[test]
    fn callback_urls_are_absolute_without_a_query() {
        assert!(callback_url("https://abc.execute-api.us-east-1.amazonaws.com/v1/webhooks/replicate").is_ok());
        for bad in ["/v1/webhooks/replicate", "ftp://x/y", "https://x/y?job=1", "https://x/y#f", "not a url"] {
            assert!(callback_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_secret_must_hold_a_signing_key_and_never_shows_it() {
        assert!(parse_signing_key(&format!(r#"{{"signingKey":"{KEY}"}}"#)).is_ok());
        for bad in ["", "{}", r#"{"signingKey":""}"#, r#"{"signingKey":"whsec_***not base64***"}"#] {
            let err = parse_signing_key(bad).unwrap_err().to_string();
            assert!(!err.contains("not base64***"), "{err}");
        }
    }
}
