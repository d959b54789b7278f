//! The AI image providers behind [`ImageProvider`](crate::ports::ImageProvider), and what they share.
//!
//! - [`openai`]: OpenAI's Images API, "create image edit" (multipart upload of the photo).
//! - [`replicate`]: Replicate's predictions API (the model fetches the photo from a presigned URL).
//! - [`local`]: a deterministic filter for the local API, labelled on the image as a preview, never as AI.
//!
//! Both real adapters read their key from one Secrets Manager secret, `{"openaiApiKey", "replicateApiToken"}`,
//! on first use. Keys are `SecretString`s: no `Debug`, log line or error carries one, and provider messages are
//! scrubbed of anything that looks like a key before they reach an error's `detail`.

pub mod hosts;
pub mod local;
pub mod openai;
pub mod replicate;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::adapters::secrets::CachedSecret;
use crate::domain::GenerationSpec;
use crate::ports::{PortError, ProviderError, RefusalKind};
use secrecy::SecretString;
use serde::{Deserialize, Deserializer};

/// Shown when a provider's safety system refused the photo or the result.
pub const REASON_CONTENT_POLICY: &str =
    "The image provider declined this photo for safety reasons. Your credits were refunded.";
/// Shown when the provider could not use the photo.
pub const REASON_INVALID_INPUT: &str =
    "This photo could not be used for this style. Please try another photo. Your credits were refunded.";
/// Shown when our side is misconfigured (a missing or revoked key, an unknown model, a bad parameter).
pub const REASON_UNAVAILABLE: &str = "This style is temporarily unavailable.";

/// The parameter that picks the local renderer's filter; never sent to a provider.
pub const LOCAL_EFFECT_PARAM: &str = "localEffect";

/// The providers' keys as stored in the provider secret: `{"openaiApiKey": "...", "replicateApiToken": "..."}`.
/// A missing or empty key means the provider is not configured.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProviderKeys {
    #[serde(default, deserialize_with = "non_empty_secret")]
    pub openai_api_key: Option<SecretString>,
    #[serde(default, deserialize_with = "non_empty_secret")]
    pub replicate_api_token: Option<SecretString>,
}

fn non_empty_secret<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SecretString>, D::Error> {
    let value: Option<String> = Option::deserialize(d)?;
    // A key pasted with a trailing newline is still the key.
    Ok(value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()).map(SecretString::from))
}

impl ProviderKeys {
    /// Parses the secret's JSON. The error never quotes the JSON (it holds the keys).
    pub fn from_secret_json(json: &str) -> Result<Self, ProviderError> {
        serde_json::from_str(json).map_err(|_| {
            configuration("provider secret is not {\"openaiApiKey\": ..., \"replicateApiToken\": ...}".to_owned())
        })
    }
}

/// Where the keys come from: fixed (tests, local tools) or the provider secret (see [`CachedSecret`]: read on
/// first use and every few minutes after; a failed first fetch is not cached, the next render tries again).
pub enum ProviderCredentials {
    Fixed(Arc<ProviderKeys>),
    Secret(CachedSecret<ProviderKeys>),
}

impl ProviderCredentials {
    pub fn fixed(keys: ProviderKeys) -> Self {
        Self::Fixed(Arc::new(keys))
    }

    pub fn secret(client: aws_sdk_secretsmanager::Client, arn: impl Into<String>) -> Self {
        Self::Secret(CachedSecret::new(client, arn, "provider secret", |json| {
            serde_json::from_str(json).map_err(|_| {
                PortError::internal(
                    "provider secret",
                    "secret is not {\"openaiApiKey\": ..., \"replicateApiToken\": ...}",
                )
            })
        }))
    }

    /// The keys. A Secrets Manager outage is transient; a secret that is not the documented JSON is not.
    pub async fn keys(&self) -> Result<Arc<ProviderKeys>, ProviderError> {
        match self {
            Self::Fixed(keys) => Ok(keys.clone()),
            Self::Secret(secret) => secret.get().await.map_err(|e| match e {
                PortError::Unavailable { .. } => transient(e.to_string(), None),
                PortError::Internal { .. } => configuration(e.to_string()),
            }),
        }
    }

    pub async fn openai_api_key(&self) -> Result<SecretString, ProviderError> {
        self.keys().await?.openai_api_key.clone().ok_or_else(|| configuration("openaiApiKey is not set".to_owned()))
    }

    pub async fn replicate_api_token(&self) -> Result<SecretString, ProviderError> {
        self.keys()
            .await?
            .replicate_api_token
            .clone()
            .ok_or_else(|| configuration("replicateApiToken is not set".to_owned()))
    }
}

/// The template's parameters meant for the provider: all but `localEffect`.
pub fn provider_params(spec: &GenerationSpec) -> serde_json::Map<String, serde_json::Value> {
    spec.params.iter().filter(|(k, _)| k.as_str() != LOCAL_EFFECT_PARAM).map(|(k, v)| (k.clone(), v.clone())).collect()
}

pub(crate) fn transient(detail: String, retry_after_secs: Option<u64>) -> ProviderError {
    ProviderError::Transient { detail, retry_after_secs }
}

/// A permanent refusal with the user reason that goes with its kind.
pub(crate) fn refused(kind: RefusalKind, detail: String) -> ProviderError {
    let user_reason = match kind {
        RefusalKind::ContentPolicy => REASON_CONTENT_POLICY,
        RefusalKind::InvalidInput => REASON_INVALID_INPUT,
        RefusalKind::Configuration => REASON_UNAVAILABLE,
    };
    ProviderError::Permanent { kind, user_reason: user_reason.to_owned(), detail }
}

pub(crate) fn configuration(detail: String) -> ProviderError {
    refused(RefusalKind::Configuration, detail)
}

/// What an HTTP error status means, before a provider refines it from its error body:
/// 408, 429 and 5xx are worth retrying (after `Retry-After` when given); 400 and 422 are the photo's fault
/// (or a safety refusal, when `content_policy`); 401, 403, 404 and any other status are ours.
pub(crate) fn classify_status(
    status: reqwest::StatusCode,
    retry_after_secs: Option<u64>,
    content_policy: bool,
    detail: String,
) -> ProviderError {
    match status.as_u16() {
        408 | 429 | 500..=599 => transient(detail, retry_after_secs),
        400 | 422 if content_policy => refused(RefusalKind::ContentPolicy, detail),
        400 | 422 => refused(RefusalKind::InvalidInput, detail),
        _ => configuration(detail),
    }
}

/// `Retry-After` in seconds. The HTTP-date form is not used by either provider and is ignored.
pub(crate) fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<u64> {
    headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim().parse().ok()
}

/// A client for provider calls: 5 s to connect, 120 s for a whole request (an image edit takes up to a
/// minute). Built on first use, so functions that never render pay nothing at init.
pub(crate) fn http_client(cell: &OnceLock<reqwest::Client>) -> Result<&reqwest::Client, ProviderError> {
    if let Some(client) = cell.get() {
        return Ok(client);
    }
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(120))
        .build()
        .map_err(|e| configuration(format!("http client: {}", error_chain(&e))))?;
    Ok(cell.get_or_init(|| client))
}

/// A failed exchange: a malformed request is ours; anything else (connect, timeout, reset) is transient.
pub(crate) fn transport_error(what: &str, e: reqwest::Error) -> ProviderError {
    // The URL may carry a presigned query string: leave it out.
    let e = e.without_url();
    let detail = format!("{what}: {}", error_chain(&e));
    if e.is_builder() {
        configuration(detail)
    } else {
        transient(detail, None)
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Reads a response body, refusing more than `max` bytes (checked as it streams, not after).
pub(crate) async fn read_capped(
    mut response: reqwest::Response,
    max: usize,
    what: &str,
) -> Result<Vec<u8>, ProviderError> {
    if response.content_length().is_some_and(|len| len > max as u64) {
        return Err(transient(format!("{what}: body larger than {max} bytes"), None));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| transport_error(what, e))? {
        if body.len() + chunk.len() > max {
            return Err(transient(format!("{what}: body larger than {max} bytes"), None));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A provider's message made fit for a log: the key itself and anything shaped like a key (`sk-...`,
/// `r8_...`) replaced, control characters dropped, at most 300 characters.
pub(crate) fn scrub(message: &str, secret: &str) -> String {
    let message = if secret.is_empty() { message.to_owned() } else { message.replace(secret, "[redacted]") };
    let words: Vec<&str> = message
        .split(|c: char| c.is_whitespace())
        .map(|w| {
            let bare = w.trim_matches(|c: char| !c.is_ascii_alphanumeric());
            if bare.starts_with("sk-") || bare.starts_with("r8_") {
                "[redacted]"
            } else if w.contains("://") {
                // A provider quoting its input quotes the photo's presigned URL: its key names the user and its
                // query carries a signature.
                "[url]"
            } else {
                w
            }
        })
        .collect();
    words.join(" ").chars().filter(|c| !c.is_control()).take(300).collect()
}

/// Whether a provider's failure text speaks of a safety refusal.
pub(crate) fn mentions_safety(text: &str) -> bool {
    let text = text.to_ascii_lowercase();
    ["nsfw", "sensitive", "safety", "flagged", "moderation", "content policy", "content_policy"]
        .iter()
        .any(|w| text.contains(w))
}

/// The content type of rendered bytes, read from the bytes: `None` unless PNG, JPEG or WebP.
pub(crate) fn rendered_type(bytes: &[u8]) -> Option<&'static str> {
    crate::imaging::sniff(bytes).filter(|t| *t != "image/heic")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::domain::Provider;
    use secrecy::ExposeSecret;

    #[test]
    fn keys_parse_from_the_secret_and_empty_means_absent() {
        let keys = ProviderKeys::from_secret_json(r#"{"openaiApiKey": "sk-abc\n", "replicateApiToken": ""}"#).unwrap();
        assert_eq!(keys.openai_api_key.as_ref().map(|k| k.expose_secret()), Some("sk-abc"));
        assert!(keys.replicate_api_token.is_none());
        assert!(!format!("{keys:?}").contains("sk-abc"));
        let keys = ProviderKeys::from_secret_json(r#"{"other": 1}"#).unwrap();
        assert!(keys.openai_api_key.is_none() && keys.replicate_api_token.is_none());
        let err = ProviderKeys::from_secret_json(r#"{"openaiApiKey": 5, "x": "sk-leak"}"#).unwrap_err();
        assert!(!format!("{err:?}").contains("sk-leak"));
    }

    #[tokio::test]
    async fn a_missing_key_is_a_configuration_refusal() {
        let credentials = ProviderCredentials::fixed(ProviderKeys::default());
        match credentials.openai_api_key().await {
            Err(ProviderError::Permanent { kind: RefusalKind::Configuration, user_reason, .. }) => {
                assert_eq!(user_reason, "This style is temporarily unavailable.");
            }
            other => panic!("{other:?}"),
        }
        assert!(credentials.replicate_api_token().await.is_err());
    }

    #[test]
    fn statuses_are_classified() {
        use reqwest::StatusCode as S;
        let kind = |e: ProviderError| match e {
            ProviderError::Permanent { kind, .. } => Some(kind),
            ProviderError::Transient { .. } => None,
        };
        assert_eq!(
            classify_status(S::TOO_MANY_REQUESTS, Some(3), false, String::new()),
            ProviderError::Transient { detail: String::new(), retry_after_secs: Some(3) }
        );
        for s in [S::REQUEST_TIMEOUT, S::INTERNAL_SERVER_ERROR, S::BAD_GATEWAY, S::SERVICE_UNAVAILABLE] {
            assert_eq!(kind(classify_status(s, None, false, String::new())), None, "{s}");
        }
        assert_eq!(kind(classify_status(S::BAD_REQUEST, None, false, String::new())), Some(RefusalKind::InvalidInput));
        assert_eq!(
            kind(classify_status(S::UNPROCESSABLE_ENTITY, None, true, String::new())),
            Some(RefusalKind::ContentPolicy)
        );
        for s in [S::UNAUTHORIZED, S::FORBIDDEN, S::NOT_FOUND, S::PAYMENT_REQUIRED] {
            assert_eq!(kind(classify_status(s, None, false, String::new())), Some(RefusalKind::Configuration), "{s}");
        }
    }

    #[test]
    fn retry_after_is_read_in_seconds() {
        let mut headers = reqwest::header::HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(reqwest::header::RETRY_AFTER, reqwest::header::HeaderValue::from_static(" 7 "));
        assert_eq!(retry_after(&headers), Some(7));
        headers.insert(
            reqwest::header::RETRY_AFTER,
            reqwest::header::HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&headers), None);
    }

    #[test]
    fn provider_params_leave_out_the_local_effect() {
        let spec = GenerationSpec {
            provider: Provider::Openai,
            model: "gpt-image-1".into(),
            prompt: "p".into(),
            params: BTreeMap::from([
                ("localEffect".to_owned(), serde_json::json!("duotone")),
                ("size".to_owned(), serde_json::json!("1024x1536")),
            ]),
        };
        let params = provider_params(&spec);
        assert_eq!(params.len(), 1);
        assert_eq!(params["size"], "1024x1536");
    }

    #[test]
    fn scrub_removes_keys_and_key_shaped_words() {
        let text =
            scrub("Incorrect API key provided: sk-test-***CRET. Also r8_abc, and my-secret-token.", "my-secret-token");
        assert!(!text.contains("sk-") && !text.contains("r8_") && !text.contains("my-secret-token"), "{text}");
        assert!(text.starts_with("Incorrect API key provided: [redacted]"), "{text}");
        assert_eq!(scrub(&"x".repeat(1000), "").len(), 300);
        let quoted = scrub(
            "could not fetch 'https://images.s3.amazonaws.com/work/01K/01J.jpg?X-Amz-Signature=abc123'\nretry",
            "",
        );
        assert_eq!(quoted, "could not fetch [url] retry");
    }
}
