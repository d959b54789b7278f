//! OpenAI's Images API, "create image edit": `POST {base}/v1/images/edits`, `multipart/form-data` with the
//! photo as the `image` file part, `model`, `prompt`, `n` and the template's parameters (`size`, `quality`,
//! `input_fidelity`, `output_format`, ...) as text fields, `Authorization: Bearer <key>`. The answer carries the
//! image inline as `data[0].b64_json`. A stage whose OpenAI project calls back renders in the background
//! instead ([`background`]).

use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use base64::Engine as _;
use reqwest::multipart::{Form, Part};
use secrecy::ExposeSecret;
use serde::Deserialize;

use super::{
    classify_status, configuration, http_client, mentions_safety, provider_params, read_capped, rendered_type,
    retry_after, scrub, transient, transport_error, ProviderCredentials,
};
use crate::ports::{ImageProvider, ProviderError, RenderRequest, RenderedImage};

pub mod background;

/// The largest answer read: a base64 PNG at the largest size is well under this.
const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;
/// Error bodies are small; a larger one is cut.
const MAX_ERROR_BYTES: usize = 64 * 1024;
/// Form fields the adapter sets itself; a template parameter of the same name is ignored.
const RESERVED_FIELDS: [&str; 6] = ["model", "prompt", "image", "image[]", "mask", "n"];

pub struct OpenAiImages {
    http: OnceLock<reqwest::Client>,
    api_base: String,
    credentials: Arc<ProviderCredentials>,
    /// The model of a background response (it calls the image tool: [`background`]).
    responses_model: String,
}

impl OpenAiImages {
    /// `api_base` is `https://api.openai.com` (or a test server). Credentials may be shared with other adapters
    /// (pass an `Arc`) so the provider secret is fetched once.
    pub fn new(api_base: impl Into<String>, credentials: impl Into<Arc<ProviderCredentials>>) -> Self {
        let responses_model = crate::config::GenerationConfig::default().openai_responses_model;
        Self { http: OnceLock::new(), api_base: api_base.into(), credentials: credentials.into(), responses_model }
    }

    /// The model a background response is made with (`OPENAI_RESPONSES_MODEL`).
    pub fn with_responses_model(mut self, model: impl Into<String>) -> Self {
        self.responses_model = model.into();
        self
    }

    fn form(request: &RenderRequest<'_>) -> Result<Form, ProviderError> {
        let mut form = Form::new()
            .text("model", request.spec.model.clone())
            .text("prompt", request.spec.prompt.clone())
            .text("n", "1");
        // One photo goes as `image`; several (a character's) as repeated `image[]` parts, which the image edit
        // endpoint takes for GPT image models.
        let field = match request.images.len() {
            0 => return Err(configuration("openai needs a photo and none was given".to_owned())),
            1 => "image",
            _ => "image[]",
        };
        for (i, photo) in request.images.iter().enumerate() {
            let image = Part::bytes(photo.clone())
                .file_name(if field == "image" { "photo.jpg".to_owned() } else { format!("photo-{i}.jpg") })
                .mime_str("image/jpeg")
                .map_err(|e| configuration(format!("openai form: {e}")))?;
            form = form.part(field, image);
        }
        for (name, value) in provider_params(request.spec) {
            if RESERVED_FIELDS.contains(&name.as_str()) {
                tracing::warn!(param = %name, "template parameter shadows a field the adapter sets; ignored");
                continue;
            }
            let text = match value {
                serde_json::Value::Null => continue,
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
            form = form.text(name, text);
        }
        Ok(form)
    }
}

/// The answer to an edit: one image, inline.
#[derive(Deserialize)]
struct EditResponse {
    #[serde(default)]
    data: Vec<EditImage>,
}

#[derive(Deserialize)]
struct EditImage {
    b64_json: Option<String>,
    url: Option<String>,
}

/// OpenAI's error body: `{"error": {"message", "type", "param", "code"}}`.
#[derive(Deserialize)]
struct ErrorBody {
    error: ApiError,
}

#[derive(Deserialize, Default)]
struct ApiError {
    message: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    param: Option<String>,
    code: Option<serde_json::Value>,
}

/// What an error answer means. Quota and billing problems are ours (no retry helps); a parameter the API
/// names (other than the photo) is a template misconfiguration, not the user's fault.
fn classify_error(status: reqwest::StatusCode, retry_after_secs: Option<u64>, body: &[u8], key: &str) -> ProviderError {
    let error = serde_json::from_slice::<ErrorBody>(body).map(|b| b.error).unwrap_or_default();
    let code = match &error.code {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    };
    let kind = error.kind.unwrap_or_default();
    let param = error.param.unwrap_or_default();
    let message = scrub(error.message.as_deref().unwrap_or(""), key);
    let detail = format!(
        "openai answered {status}: type={} code={} param={} message={message}",
        scrub(&kind, key),
        scrub(&code, key),
        scrub(&param, key)
    );

    let is = |s: &str| code == s || kind == s;
    if is("insufficient_quota") || is("billing_hard_limit_reached") || is("billing_not_active") {
        return configuration(detail);
    }
    let content_policy = is("moderation_blocked")
        || is("content_policy_violation")
        || (kind == "image_generation_user_error" && mentions_safety(&message))
        || message.to_ascii_lowercase().contains("safety system");
    if status.as_u16() == 400 && !content_policy && !param.is_empty() && !param.starts_with("image") {
        return configuration(detail);
    }
    classify_status(status, retry_after_secs, content_policy, detail)
}

/// What an error answer of OpenAI's means, from its status, `Retry-After` and body.
async fn failure(response: reqwest::Response, key: &str) -> ProviderError {
    let (status, retry) = (response.status(), retry_after(response.headers()));
    let body = read_capped(response, MAX_ERROR_BYTES, "openai").await.unwrap_or_default();
    classify_error(status, retry, &body, key)
}

fn content_type_for(output_format: Option<&serde_json::Value>) -> &'static str {
    match output_format.and_then(|v| v.as_str()) {
        Some("jpeg" | "jpg") => "image/jpeg",
        Some("webp") => "image/webp",
        _ => "image/png",
    }
}

#[async_trait]
impl ImageProvider for OpenAiImages {
    fn needs_image_url(&self) -> bool {
        false
    }

    fn calls_back(&self) -> bool {
        true
    }

    /// A background response ([`background`]); `callback` is the job's reference, kept in its metadata.
    async fn submit(&self, request: RenderRequest<'_>, callback: &str) -> Result<String, ProviderError> {
        self.submit_background(request, callback).await
    }

    async fn render(&self, request: RenderRequest<'_>) -> Result<RenderedImage, ProviderError> {
        let key = self.credentials.openai_api_key().await?;
        let url = format!("{}/v1/images/edits", self.api_base.trim_end_matches('/'));
        let response = http_client(&self.http)?
            .post(url)
            // Never past the worker's budget (the client's own limit is longer).
            .timeout(request.time_left.max(std::time::Duration::from_secs(1)))
            .bearer_auth(key.expose_secret())
            .multipart(Self::form(&request)?)
            .send()
            .await
            .map_err(|e| transport_error("openai", e))?;
        let status = response.status();
        if !status.is_success() {
            return Err(failure(response, key.expose_secret()).await);
        }

        let body = read_capped(response, MAX_RESPONSE_BYTES, "openai").await?;
        let parsed: EditResponse = serde_json::from_slice(&body)
            .map_err(|e| transient(format!("openai answered {status} with an unreadable body: {e}"), None))?;
        let Some(image) = parsed.data.into_iter().next() else {
            return Err(transient(format!("openai answered {status} without an image"), None));
        };
        let Some(b64) = image.b64_json else {
            return Err(if image.url.is_some() {
                configuration("openai answered with a URL instead of b64_json (model without inline output)".into())
            } else {
                transient(format!("openai answered {status} without b64_json"), None)
            });
        };
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map_err(|e| transient(format!("openai b64_json does not decode: {e}"), None))?;
        let expected = content_type_for(request.spec.params.get("output_format"));
        let Some(actual) = rendered_type(&bytes) else {
            return Err(transient("openai returned bytes that are not a PNG, JPEG or WebP image".into(), None));
        };
        if actual != expected {
            tracing::warn!(expected, actual, job = request.job_id, "openai image is not in the requested format");
        }
        Ok(RenderedImage { bytes, content_type: actual.to_owned() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::RefusalKind;
    use reqwest::StatusCode;

    fn kind(e: &ProviderError) -> Option<RefusalKind> {
        match e {
            ProviderError::Permanent { kind, .. } => Some(*kind),
            ProviderError::Transient { .. } => None,
        }
    }

    fn body(code: &str, kind: &str, param: Option<&str>, message: &str) -> Vec<u8> {
        serde_json::to_vec(
            &serde_json::json!({"error": {"message": message, "type": kind, "param": param, "code": code}}),
        )
        .unwrap()
    }

    #[test]
    fn error_bodies_are_classified() {
        let policy = classify_error(
            StatusCode::BAD_REQUEST,
            None,
            &body(
                "moderation_blocked",
                "image_generation_user_error",
                None,
                "Your request was rejected by the safety system.",
            ),
            "k",
        );
        assert_eq!(kind(&policy), Some(RefusalKind::ContentPolicy));
        let bad_size = classify_error(
            StatusCode::BAD_REQUEST,
            None,
            &body("invalid_value", "invalid_request_error", Some("size"), "Invalid value: '9x9'."),
            "k",
        );
        assert_eq!(kind(&bad_size), Some(RefusalKind::Configuration));
        let bad_image = classify_error(
            StatusCode::BAD_REQUEST,
            None,
            &body("invalid_image_file", "invalid_request_error", Some("image"), "Invalid image file."),
            "k",
        );
        assert_eq!(kind(&bad_image), Some(RefusalKind::InvalidInput));
        let quota = classify_error(
            StatusCode::TOO_MANY_REQUESTS,
            Some(1),
            &body("insufficient_quota", "insufficient_quota", None, "You exceeded your current quota."),
            "k",
        );
        assert_eq!(kind(&quota), Some(RefusalKind::Configuration));
        let busy = classify_error(StatusCode::TOO_MANY_REQUESTS, Some(7), b"not json", "k");
        assert!(matches!(busy, ProviderError::Transient { retry_after_secs: Some(7), .. }), "{busy:?}");
    }

    #[test]
    fn output_format_picks_the_expected_type() {
        assert_eq!(content_type_for(None), "image/png");
        assert_eq!(content_type_for(Some(&serde_json::json!("jpeg"))), "image/jpeg");
        assert_eq!(content_type_for(Some(&serde_json::json!("webp"))), "image/webp");
    }
}
