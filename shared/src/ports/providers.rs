//! The AI image providers (adapters/providers/).

use async_trait::async_trait;

use super::JobRef;
use crate::domain::GenerationSpec;

/// One render asked of an AI image provider.
#[derive(Debug, Clone, Copy)]
pub struct RenderRequest<'a> {
    /// The template's server-side settings: provider, model, prompt, params (`localEffect` is the local
    /// renderer's; real adapters leave it out).
    pub spec: &'a GenerationSpec,
    /// The prepared photos (JPEG, upright, without metadata, downsized), at least one: one for an upload or
    /// a restyle, a character's photos in order. Empty for a provider that fetches its input by URL and whose
    /// inputs were prepared already (it gets `image_urls` only).
    pub images: &'a [Vec<u8>],
    /// Short-lived URLs of the same prepared photos, in the same order, for providers that fetch their input
    /// (empty for the others).
    pub image_urls: &'a [String],
    /// The generation's id: stable across retries, usable for provider-side de-duplication and logs.
    pub job_id: &'a str,
    /// The most this call may take (what is left of the worker's budget). Providers that run remote work
    /// stop waiting, and cancel it, before this runs out; the worker cuts the call off at it regardless.
    pub time_left: std::time::Duration,
}

/// A rendered image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedImage {
    pub bytes: Vec<u8>,
    /// `image/png`, `image/jpeg` or `image/webp`.
    pub content_type: String,
}

/// Why a provider refused for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalKind {
    /// The provider's safety system refused the photo or the result.
    ContentPolicy,
    /// The photo is unusable (too small, corrupt, no face where one is required, ...).
    InvalidInput,
    /// Our side is wrong: bad key, unknown model, bad parameters. Alarm-worthy, not the user's fault.
    Configuration,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// Worth retrying: 429, 5xx, timeouts, connection failures. `retry_after_secs` when the provider said.
    #[error("provider unavailable: {detail}")]
    Transient { detail: String, retry_after_secs: Option<u64> },
    /// Retrying cannot help. `user_reason` is shown to the user; `detail` is for the logs (never a key).
    #[error("provider refused ({kind:?}): {detail}")]
    Permanent { kind: RefusalKind, user_reason: String, detail: String },
}

/// An AI image provider (or the local renderer).
#[async_trait]
pub trait ImageProvider: Send + Sync {
    /// Whether the provider fetches its input from `RenderRequest::image_urls` (the worker then stores the
    /// prepared photo and presigns a URL for it).
    fn needs_image_url(&self) -> bool;
    async fn render(&self, request: RenderRequest<'_>) -> Result<RenderedImage, ProviderError>;
    /// Whether the provider can finish a render by calling back ([`ImageProvider::submit`]).
    fn calls_back(&self) -> bool {
        false
    }
    /// Starts the render and answers the provider's id of it at once. `callback` is how the end comes back:
    /// Replicate's webhook URL (read by a [`CallbackReader`]), or for OpenAI, whose webhook is the project's,
    /// the job's reference kept in the response's metadata (read by a [`ResponseReader`]). Only for a
    /// provider that [`ImageProvider::calls_back`].
    async fn submit(&self, request: RenderRequest<'_>, callback: &str) -> Result<String, ProviderError> {
        let _ = (request, callback);
        Err(ProviderError::Permanent {
            kind: RefusalKind::Configuration,
            user_reason: String::new(),
            detail: "this provider does not call back".to_owned(),
        })
    }
}

/// How a render a provider calls back about ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallbackEnd {
    /// Finished: the output is at `output_url` (fetched with [`CallbackReader::fetch`]).
    Succeeded { output_url: String },
    /// Finished, with the output in hand (OpenAI's response carries the image).
    Image(RenderedImage),
    /// Ended without an output: a refusal, or a transient end (cancelled, timed out) that the job ends on.
    Failed(ProviderError),
    /// Not the end yet (an event before completion): nothing to do.
    Pending,
}

/// A provider's callback, as read from its body (after its signature was verified).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderCallback {
    /// The provider's id of the render (the generation records it when the render is submitted).
    pub prediction: String,
    pub end: CallbackEnd,
}

/// Reads a provider's callbacks and fetches their outputs (adapters/providers/replicate.rs).
#[async_trait]
pub trait CallbackReader: Send + Sync {
    /// The callback in `body`; `Err` (a reason for the logs) when it is not one.
    fn parse(&self, body: &[u8]) -> Result<ProviderCallback, String>;
    /// The output a callback names, from the provider's file hosts only.
    async fn fetch(&self, output_url: &str) -> Result<RenderedImage, ProviderError>;
}

/// Reads OpenAI's webhook events and the background responses they are about (adapters/providers/openai).
#[async_trait]
pub trait ResponseReader: Send + Sync {
    /// The response a (signature-verified) event is about: `Ok(None)` for an event of another kind (a
    /// project's webhook also reports batches, fine-tuning jobs...), `Err` (a reason for the logs) for a body
    /// that is not an event.
    fn event(&self, body: &[u8]) -> Result<Option<String>, String>;
    /// The response: the job its metadata names (`None`: not one of ours) and how it ended.
    async fn response(&self, id: &str) -> Result<(Option<JobRef>, CallbackEnd), ProviderError>;
}
