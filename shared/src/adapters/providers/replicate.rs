//! Replicate's predictions API. An official model (`owner/name`) runs through
//! `POST {base}/v1/models/{owner}/{name}/predictions`; a pinned version (`owner/name:version`) through
//! `POST {base}/v1/predictions` with `"version"`. The body is `{"input": {...}}`: the template's parameters, the
//! prompt, and the photos' presigned URLs: the first under `input_image` (or the input(s) the template names in
//! `imageInputKey`, or all of them as a list under `imageInputListKey`). `Prefer: wait=60` lets most predictions finish within the create call; the rest are polled
//! until they end or the deadline passes. The output file is downloaded at once: Replicate deletes it later.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio::time::Instant;

use super::hosts::DownloadHosts;
use super::{
    classify_status, configuration, http_client, mentions_safety, provider_params, read_capped, refused, rendered_type,
    retry_after, scrub, transient, transport_error, ProviderCredentials,
};
use crate::ports::{
    CallbackEnd, CallbackReader, ImageProvider, ProviderCallback, ProviderError, RefusalKind, RenderRequest,
    RenderedImage,
};

/// The template parameter naming the model's image input; removed from the input itself.
pub const IMAGE_INPUT_KEY_PARAM: &str = "imageInputKey";
/// The template parameter naming an input that takes every photo as a list; removed from the input itself.
pub const IMAGE_INPUT_LIST_KEY_PARAM: &str = "imageInputListKey";
/// The image input of Replicate's image-editing models (FLUX Kontext and others) when the template names none.
pub const DEFAULT_IMAGE_INPUT_KEY: &str = "input_image";

/// The largest output downloaded.
const MAX_OUTPUT_BYTES: usize = 30 * 1024 * 1024;
/// Prediction and error bodies are small.
const MAX_JSON_BYTES: usize = 1024 * 1024;
/// Downloads of a finished prediction's output, the first included.
const DOWNLOAD_ATTEMPTS: u32 = 3;

/// How long before the budget runs out a prediction is cancelled (time for the cancel call itself).
const CANCEL_MARGIN: Duration = Duration::from_secs(5);

pub struct ReplicatePredictions {
    http: OnceLock<reqwest::Client>,
    /// The client for output files: redirects followed only to allowed hosts.
    download_http: OnceLock<reqwest::Client>,
    output_hosts: Arc<DownloadHosts>,
    api_base: String,
    credentials: Arc<ProviderCredentials>,
    poll_interval: Duration,
    deadline: Duration,
}

/// A prediction as the API returns it.
#[derive(Deserialize)]
struct Prediction {
    id: String,
    status: String,
    #[serde(default)]
    output: serde_json::Value,
    #[serde(default)]
    error: serde_json::Value,
    #[serde(default)]
    urls: PredictionUrls,
}

#[derive(Deserialize, Default)]
struct PredictionUrls {
    get: Option<String>,
    cancel: Option<String>,
}

/// Replicate's error body (RFC 7807 style): `{"title", "detail", "status"}`.
#[derive(Deserialize, Default)]
struct ErrorBody {
    title: Option<String>,
    detail: Option<serde_json::Value>,
}

enum Model<'a> {
    Official { owner: &'a str, name: &'a str },
    Version(&'a str),
}

fn parse_model(model: &str) -> Result<Model<'_>, ProviderError> {
    let slug = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    let (path, version) = match model.split_once(':') {
        Some((path, version)) => (path, Some(version)),
        None => (model, None),
    };
    let valid_path = path.split_once('/').is_some_and(|(owner, name)| slug(owner) && slug(name));
    match version {
        Some(v) if valid_path && !v.is_empty() && v.bytes().all(|b| b.is_ascii_alphanumeric()) => Ok(Model::Version(v)),
        None if valid_path => match path.split_once('/') {
            Some((owner, name)) => Ok(Model::Official { owner, name }),
            None => Err(configuration(format!("replicate model `{model}` is not owner/name[:version]"))),
        },
        _ => Err(configuration(format!("replicate model `{model}` is not owner/name[:version]"))),
    }
}

/// The prediction's `input`: the template's parameters, then the prompt and the photos' URLs. Where the
/// photos go is the template's to say:
/// - `imageInputKey: "name"` (default `input_image`): the first photo under that input (a model that takes one
///   image gets the first of a character's photos);
/// - `imageInputKey: ["a", "b", ...]`: the i-th photo under the i-th input, as many as there are of both;
/// - `imageInputListKey: "name"`: every photo, as a list under that input (models that take several images).
fn build_input(
    request: &RenderRequest<'_>,
    image_urls: &[String],
) -> Result<serde_json::Map<String, serde_json::Value>, ProviderError> {
    use serde_json::Value;
    let mut input = provider_params(request.spec);
    let list_key = match input.remove(IMAGE_INPUT_LIST_KEY_PARAM) {
        None => None,
        Some(Value::String(key)) if !key.is_empty() => Some(key),
        Some(_) => return Err(configuration(format!("{IMAGE_INPUT_LIST_KEY_PARAM} must be a non-empty string"))),
    };
    let keys: Vec<String> = match (input.remove(IMAGE_INPUT_KEY_PARAM), &list_key) {
        (None, Some(_)) => Vec::new(),
        (None, None) => vec![DEFAULT_IMAGE_INPUT_KEY.to_owned()],
        (Some(Value::String(key)), _) if !key.is_empty() => vec![key],
        (Some(Value::Array(keys)), _)
            if !keys.is_empty() && keys.iter().all(|k| k.as_str().is_some_and(|k| !k.is_empty())) =>
        {
            keys.iter().filter_map(|k| k.as_str().map(str::to_owned)).collect()
        }
        (Some(_), _) => {
            return Err(configuration(format!("{IMAGE_INPUT_KEY_PARAM} must be a non-empty string or a list of them")))
        }
    };
    input.insert("prompt".to_owned(), request.spec.prompt.clone().into());
    for (key, url) in keys.into_iter().zip(image_urls) {
        input.insert(key, url.clone().into());
    }
    if let Some(key) = list_key {
        input.insert(key, image_urls.iter().cloned().map(Value::String).collect::<Vec<_>>().into());
    }
    Ok(input)
}

/// What an error answer means: 422 is an input the model's schema refuses (the template's fault); the rest as
/// for any provider.
fn classify_error(
    status: reqwest::StatusCode,
    retry_after_secs: Option<u64>,
    body: &[u8],
    token: &str,
) -> ProviderError {
    let error = serde_json::from_slice::<ErrorBody>(body).unwrap_or_default();
    let detail_text = match error.detail {
        Some(serde_json::Value::String(s)) => s,
        Some(serde_json::Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    };
    let detail = format!(
        "replicate answered {status}: {}: {}",
        scrub(error.title.as_deref().unwrap_or("-"), token),
        scrub(&detail_text, token)
    );
    if status.as_u16() == 422 {
        return configuration(detail);
    }
    classify_status(status, retry_after_secs, mentions_safety(&detail_text), detail)
}

/// A failed prediction: a safety refusal or an input the model could not use.
fn classify_failure(prediction: &Prediction, token: &str) -> ProviderError {
    let error = match &prediction.error {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    };
    let detail = format!("replicate prediction {} failed: {}", prediction.id, scrub(&error, token));
    let kind = if mentions_safety(&error) { RefusalKind::ContentPolicy } else { RefusalKind::InvalidInput };
    refused(kind, detail)
}

/// The first output file's URL: models answer with one URL or a list of them.
fn output_url(output: &serde_json::Value) -> Option<&str> {
    match output {
        serde_json::Value::String(url) => Some(url),
        serde_json::Value::Array(items) => items.iter().find_map(|i| i.as_str()),
        _ => None,
    }
}

impl ReplicatePredictions {
    /// `api_base` is `https://api.replicate.com` (or a test server). Credentials may be shared with other
    /// adapters (pass an `Arc`) so the provider secret is fetched once.
    pub fn new(api_base: impl Into<String>, credentials: impl Into<Arc<ProviderCredentials>>) -> Self {
        Self {
            http: OnceLock::new(),
            download_http: OnceLock::new(),
            output_hosts: Arc::new(DownloadHosts::default()),
            api_base: api_base.into().trim_end_matches('/').to_owned(),
            credentials: credentials.into(),
            poll_interval: Duration::from_secs(2),
            deadline: Duration::from_secs(150),
        }
    }

    /// The hosts output files may come from (default: Replicate's file host, `replicate.delivery`).
    pub fn with_output_hosts(mut self, hosts: DownloadHosts) -> Self {
        self.output_hosts = Arc::new(hosts);
        self
    }

    /// The download client: at most 3 redirects, each to an allowed host; any other is an error.
    fn download_client(&self) -> Result<&reqwest::Client, ProviderError> {
        if let Some(client) = self.download_http.get() {
            return Ok(client);
        }
        let hosts = self.output_hosts.clone();
        let policy = reqwest::redirect::Policy::custom(move |attempt| {
            // `previous()` includes the first URL (as reqwest's own `Policy::limited` counts).
            if attempt.previous().len() > 3 {
                attempt.error("too many redirects")
            } else if hosts.allows(attempt.url()) {
                attempt.follow()
            } else {
                attempt.error("redirected to a host outside REPLICATE_OUTPUT_HOSTS")
            }
        });
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(120))
            .redirect(policy)
            .build()
            .map_err(|e| configuration(format!("http client: {e}")))?;
        Ok(self.download_http.get_or_init(|| client))
    }

    /// The create call's URL and body: the model's endpoint, the input (photos, prompt, settings).
    fn create_body(&self, request: &RenderRequest<'_>) -> Result<(String, serde_json::Value), ProviderError> {
        if request.image_urls.is_empty() {
            return Err(configuration("replicate needs the photo's URL and none was given".to_owned()));
        }
        let input = build_input(request, request.image_urls)?;
        Ok(match parse_model(&request.spec.model)? {
            Model::Official { owner, name } => {
                (format!("{}/v1/models/{owner}/{name}/predictions", self.api_base), serde_json::json!({"input": input}))
            }
            Model::Version(version) => {
                (format!("{}/v1/predictions", self.api_base), serde_json::json!({"version": version, "input": input}))
            }
        })
    }

    /// How long to wait between polls of an unfinished prediction (tests shorten it).
    pub fn with_poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// How long a render may take, create and polls included, before it is cancelled.
    pub fn with_deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// A URL from a prediction, used with our token only when it points at the API we were configured with;
    /// otherwise the documented URL built from the id.
    fn api_url(&self, given: Option<&str>, id: &str, suffix: &str) -> Result<String, ProviderError> {
        if let Some(url) = given.filter(|u| u.starts_with(&format!("{}/", self.api_base))) {
            return Ok(url.to_owned());
        }
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return Err(transient(format!("replicate answered with an unusable prediction id {id:?}"), None));
        }
        Ok(format!("{}/v1/predictions/{id}{suffix}", self.api_base))
    }

    /// Sends an API call and reads the prediction it answers with.
    async fn call(&self, builder: reqwest::RequestBuilder, token: &SecretString) -> Result<Prediction, ProviderError> {
        let response =
            builder.bearer_auth(token.expose_secret()).send().await.map_err(|e| transport_error("replicate", e))?;
        let status = response.status();
        if !status.is_success() {
            let retry = retry_after(response.headers());
            let body = read_capped(response, MAX_JSON_BYTES, "replicate").await.unwrap_or_default();
            return Err(classify_error(status, retry, &body, token.expose_secret()));
        }
        let body = read_capped(response, MAX_JSON_BYTES, "replicate").await?;
        serde_json::from_slice(&body)
            .map_err(|e| transient(format!("replicate answered {status} with an unreadable prediction: {e}"), None))
    }

    /// Best effort: a prediction we gave up on should not keep running (and billing).
    async fn cancel(&self, prediction: &Prediction, token: &SecretString) {
        let Ok(url) = self.api_url(prediction.urls.cancel.as_deref(), &prediction.id, "/cancel") else {
            return;
        };
        let Ok(http) = http_client(&self.http) else {
            return;
        };
        let result = http.post(url).bearer_auth(token.expose_secret()).timeout(Duration::from_secs(5)).send().await;
        if let Err(e) = result {
            tracing::warn!(prediction = %prediction.id, error = %e.without_url(), "cancelling a replicate prediction failed");
        }
    }

    /// The output of a prediction that succeeded (and was billed): a failed download is retried here, within
    /// the deadline, because an error returned from `render` would make the worker create a new prediction.
    async fn download_with_retries(
        &self,
        url: &str,
        prediction: &str,
        started: Instant,
        deadline: Duration,
    ) -> Result<RenderedImage, ProviderError> {
        let mut wait = self.poll_interval;
        let mut attempt = 1;
        loop {
            match self.download(url).await {
                Err(ProviderError::Transient { detail, .. })
                    if attempt < DOWNLOAD_ATTEMPTS && started.elapsed() + wait < deadline =>
                {
                    tracing::warn!(prediction, attempt, detail, "downloading a replicate output failed; retrying");
                    tokio::time::sleep(wait).await;
                    wait = wait.saturating_mul(2);
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// Downloads the output file (no token: it is served from Replicate's file host).
    async fn download(&self, url: &str) -> Result<RenderedImage, ProviderError> {
        let parsed = url::Url::parse(url).map_err(|_| transient("replicate output is not a URL".to_owned(), None))?;
        if !self.output_hosts.allows(&parsed) {
            // Not retried: the prediction's answer itself points elsewhere. The host only (no path or query).
            let host = parsed.host_str().unwrap_or("").to_owned();
            return Err(configuration(format!(
                "replicate output is at {}://{host}, outside REPLICATE_OUTPUT_HOSTS",
                parsed.scheme()
            )));
        }
        let response = self.download_client()?.get(parsed).send().await.map_err(|e| {
            if e.is_redirect() {
                configuration("replicate output redirected to a host outside REPLICATE_OUTPUT_HOSTS".to_owned())
            } else {
                transport_error("replicate output", e)
            }
        })?;
        let status = response.status();
        if !status.is_success() {
            return Err(transient(format!("downloading the replicate output answered {status}"), None));
        }
        let bytes = read_capped(response, MAX_OUTPUT_BYTES, "replicate output").await?;
        let Some(content_type) = rendered_type(&bytes) else {
            return Err(configuration("replicate output is not a PNG, JPEG or WebP image".to_owned()));
        };
        Ok(RenderedImage { bytes, content_type: content_type.to_owned() })
    }
}

#[async_trait]
impl ImageProvider for ReplicatePredictions {
    fn needs_image_url(&self) -> bool {
        true
    }

    fn calls_back(&self) -> bool {
        true
    }

    /// Creates the prediction with Replicate's webhook (only its `completed` event) and answers its id at once:
    /// nothing waits for the render.
    async fn submit(&self, request: RenderRequest<'_>, callback_url: &str) -> Result<String, ProviderError> {
        let token = &self.credentials.replicate_api_token().await?;
        let (url, mut body) = self.create_body(&request)?;
        body["webhook"] = callback_url.into();
        body["webhook_events_filter"] = serde_json::json!(["completed"]);
        let http = http_client(&self.http)?;
        let prediction = self.call(http.post(url).json(&body), token).await?;
        tracing::info!(prediction = %prediction.id, job = request.job_id, "replicate prediction submitted with a webhook");
        // The id goes into the record and comes back in the callback: it must be one the API would accept.
        self.api_url(None, &prediction.id, "")?;
        Ok(prediction.id)
    }

    async fn render(&self, request: RenderRequest<'_>) -> Result<RenderedImage, ProviderError> {
        let started = Instant::now();
        let token = &self.credentials.replicate_api_token().await?;
        let (url, body) = self.create_body(&request)?;
        let http = http_client(&self.http)?;
        // Stop waiting (and cancel) a few seconds before the worker's budget runs out, so the cancel is sent
        // rather than the call being cut off with the prediction still running and billed.
        let deadline = self.deadline.min(request.time_left.saturating_sub(CANCEL_MARGIN));
        let wait = deadline.as_secs().clamp(1, 60);
        let create = http.post(url).header("Prefer", format!("wait={wait}")).json(&body);
        let mut prediction = self.call(create, token).await?;
        tracing::info!(prediction = %prediction.id, status = %prediction.status, job = request.job_id, "replicate prediction created");

        loop {
            match prediction.status.as_str() {
                "succeeded" => {
                    let Some(url) = output_url(&prediction.output) else {
                        return Err(configuration(format!("replicate prediction {} has no output URL", prediction.id)));
                    };
                    return self.download_with_retries(url, &prediction.id, started, deadline).await;
                }
                "failed" => return Err(classify_failure(&prediction, token.expose_secret())),
                "canceled" => {
                    return Err(transient(format!("replicate prediction {} was canceled", prediction.id), None))
                }
                _ => {}
            }
            if started.elapsed() + self.poll_interval > deadline {
                self.cancel(&prediction, token).await;
                return Err(transient(
                    format!("replicate prediction {} timed out ({})", prediction.id, prediction.status),
                    None,
                ));
            }
            tokio::time::sleep(self.poll_interval).await;
            let poll_url = self.api_url(prediction.urls.get.as_deref(), &prediction.id, "")?;
            match self.call(http.get(poll_url), token).await {
                Ok(next) => prediction = next,
                // A hiccup while polling does not end a prediction that is running (and billed): poll again.
                Err(ProviderError::Transient { detail, .. }) => {
                    tracing::warn!(prediction = %prediction.id, detail, "polling a replicate prediction failed");
                }
                Err(permanent) => return Err(permanent),
            }
        }
    }
}

#[async_trait]
impl CallbackReader for ReplicatePredictions {
    /// A webhook's body is the prediction as the API returns it.
    fn parse(&self, body: &[u8]) -> Result<ProviderCallback, String> {
        let prediction: Prediction = serde_json::from_slice(body).map_err(|e| format!("not a prediction: {e}"))?;
        if prediction.id.is_empty() {
            return Err("a prediction without an id".to_owned());
        }
        let end = match prediction.status.as_str() {
            "succeeded" => match output_url(&prediction.output) {
                Some(url) => CallbackEnd::Succeeded { output_url: url.to_owned() },
                None => CallbackEnd::Failed(configuration(format!(
                    "replicate prediction {} has no output URL",
                    prediction.id
                ))),
            },
            // The webhook function holds no API token: nothing of ours can be in Replicate's error text.
            "failed" => CallbackEnd::Failed(classify_failure(&prediction, "")),
            "canceled" => {
                CallbackEnd::Failed(transient(format!("replicate prediction {} was canceled", prediction.id), None))
            }
            _ => CallbackEnd::Pending,
        };
        Ok(ProviderCallback { prediction: prediction.id, end })
    }

    async fn fetch(&self, output_url: &str) -> Result<RenderedImage, ProviderError> {
        // Inside the webhook function's time: a few tries, then the callback answers 503 and Replicate sends it
        // again.
        self.download_with_retries(output_url, "callback", Instant::now(), CALLBACK_DOWNLOAD_BUDGET).await
    }
}

/// How long a callback's download may take, retries included (the webhook function's timeout is 30 s).
const CALLBACK_DOWNLOAD_BUDGET: Duration = Duration::from_secs(20);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn models_are_official_or_pinned() {
        assert!(matches!(
            parse_model("black-forest-labs/flux-kontext-pro"),
            Ok(Model::Official { owner: "black-forest-labs", name: "flux-kontext-pro" })
        ));
        assert!(matches!(parse_model("owner/name:5c7d5dc6dd8b"), Ok(Model::Version("5c7d5dc6dd8b"))));
        for bad in ["flux", "a/b/c", "a/", "/b", "a/b:", "a/b:x/y", "a b/c", "../x/predictions"] {
            assert!(parse_model(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn outputs_are_one_url_or_a_list() {
        assert_eq!(output_url(&serde_json::json!("https://x/1.png")), Some("https://x/1.png"));
        assert_eq!(output_url(&serde_json::json!(["https://x/1.png", "https://x/2.png"])), Some("https://x/1.png"));
        assert_eq!(output_url(&serde_json::json!(null)), None);
    }

    #[test]
    fn failures_are_safety_refusals_or_unusable_input() {
        let failed = |error: serde_json::Value| Prediction {
            id: "p1".into(),
            status: "failed".into(),
            output: serde_json::Value::Null,
            error,
            urls: PredictionUrls::default(),
        };
        let nsfw = classify_failure(&failed(serde_json::json!("NSFW content detected. Try a different prompt.")), "t");
        assert!(matches!(nsfw, ProviderError::Permanent { kind: RefusalKind::ContentPolicy, .. }), "{nsfw:?}");
        let flagged = classify_failure(&failed(serde_json::json!("Prediction flagged as sensitive (E005)")), "t");
        assert!(matches!(flagged, ProviderError::Permanent { kind: RefusalKind::ContentPolicy, .. }));
        let other = classify_failure(&failed(serde_json::json!("No face detected in the image")), "t");
        assert!(matches!(other, ProviderError::Permanent { kind: RefusalKind::InvalidInput, .. }));
    }

    #[test]
    fn prediction_urls_are_used_only_on_the_configured_api() {
        let p = ReplicatePredictions::new("https://api.replicate.com/", ProviderCredentials::fixed(Default::default()));
        assert_eq!(
            p.api_url(Some("https://api.replicate.com/v1/predictions/abc"), "abc", "").unwrap(),
            "https://api.replicate.com/v1/predictions/abc"
        );
        assert_eq!(
            p.api_url(Some("https://evil.example/v1/predictions/abc"), "abc", "/cancel").unwrap(),
            "https://api.replicate.com/v1/predictions/abc/cancel"
        );
        assert!(p.api_url(None, "../x", "").is_err());
    }
}
