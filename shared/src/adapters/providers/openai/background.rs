//! OpenAI without a waiting worker: the render is a background response of the Responses API
//! (`POST /v1/responses`, `background: true`), whose model is made to call the `image_generation` tool (the
//! template's image model and parameters) on the prepared photos, sent as data URLs. The job's reference goes
//! into the response's `metadata`, because OpenAI's webhook is the project's, not the request's: its event
//! names only the response, and `GET /v1/responses/{id}` gives back the metadata, the status and the image.

use async_trait::async_trait;
use base64::Engine as _;
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{failure, OpenAiImages, MAX_ERROR_BYTES, MAX_RESPONSE_BYTES};
use crate::adapters::providers::{
    configuration, http_client, mentions_safety, provider_params, read_capped, refused, rendered_type, retry_after,
    transient, transport_error,
};
use crate::ports::{CallbackEnd, JobRef, ProviderError, RefusalKind, RenderRequest, RenderedImage, ResponseReader};

/// The metadata key of the job's reference.
pub const JOB_METADATA_KEY: &str = "facemakeJob";
/// Template parameters that are not the image tool's (the edit endpoint's own fields, and what is set here).
const NOT_TOOL_FIELDS: [&str; 8] = ["type", "model", "prompt", "image", "image[]", "mask", "n", "response_format"];

impl OpenAiImages {
    /// The create request of a background response rendering `request` for the job `job`.
    pub fn background_body(&self, request: &RenderRequest<'_>, job: &str) -> Result<Value, ProviderError> {
        if request.images.is_empty() {
            return Err(configuration("openai needs a photo and none was given".to_owned()));
        }
        let mut tool = serde_json::Map::new();
        tool.insert("type".into(), json!("image_generation"));
        tool.insert("model".into(), json!(request.spec.model));
        for (name, value) in provider_params(request.spec) {
            if NOT_TOOL_FIELDS.contains(&name.as_str()) || value.is_null() {
                continue;
            }
            tool.insert(name, value);
        }
        let mut content = vec![json!({"type": "input_text", "text": request.spec.prompt})];
        for photo in request.images {
            let data = base64::engine::general_purpose::STANDARD.encode(photo);
            content.push(json!({
                "type": "input_image", "image_url": format!("data:image/jpeg;base64,{data}"), "detail": "auto"
            }));
        }
        Ok(json!({
            "model": self.responses_model,
            "background": true,
            "store": true,
            "input": [{"role": "user", "content": content}],
            "tools": [Value::Object(tool)],
            "tool_choice": {"type": "image_generation"},
            "max_tool_calls": 1,
            "metadata": {JOB_METADATA_KEY: job},
        }))
    }

    /// Creates the background response; its id.
    pub(super) async fn submit_background(
        &self,
        request: RenderRequest<'_>,
        job: &str,
    ) -> Result<String, ProviderError> {
        let key = self.credentials.openai_api_key().await?;
        let url = format!("{}/v1/responses", self.api_base.trim_end_matches('/'));
        let response = http_client(&self.http)?
            .post(url)
            .timeout(request.time_left.clamp(std::time::Duration::from_secs(1), std::time::Duration::from_secs(30)))
            .bearer_auth(key.expose_secret())
            .json(&self.background_body(&request, job)?)
            .send()
            .await
            .map_err(|e| transport_error("openai", e))?;
        let status = response.status();
        if !status.is_success() {
            return Err(failure(response, key.expose_secret()).await);
        }
        let body = read_capped(response, MAX_ERROR_BYTES, "openai").await?;
        let created: Created = serde_json::from_slice(&body)
            .map_err(|e| transient(format!("openai answered {status} with an unreadable response: {e}"), None))?;
        if created.id.is_empty() {
            return Err(transient(format!("openai answered {status} without a response id"), None));
        }
        Ok(created.id)
    }
}

#[derive(Deserialize)]
struct Created {
    #[serde(default)]
    id: String,
}

#[derive(Deserialize)]
struct Event {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    data: Option<EventData>,
}

#[derive(Deserialize)]
struct EventData {
    id: String,
}

#[derive(Deserialize)]
struct Response {
    #[serde(default)]
    status: String,
    #[serde(default)]
    metadata: serde_json::Map<String, Value>,
    #[serde(default)]
    output: Vec<OutputItem>,
    #[serde(default)]
    error: Option<ResponseError>,
    #[serde(default)]
    incomplete_details: Option<Value>,
}

#[derive(Deserialize)]
struct OutputItem {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    result: Option<String>,
}

#[derive(Deserialize)]
struct ResponseError {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

/// How an ended response ended, for the job.
fn end_of(response: Response) -> CallbackEnd {
    match response.status.as_str() {
        "queued" | "in_progress" => CallbackEnd::Pending,
        "completed" => {
            let image = response.output.into_iter().find(|o| o.kind == "image_generation_call").and_then(|o| o.result);
            let Some(b64) = image else {
                // The model answered without calling the tool (a refusal in words, usually).
                return CallbackEnd::Failed(refused(
                    RefusalKind::InvalidInput,
                    "openai completed the response without an image".to_owned(),
                ));
            };
            match base64::engine::general_purpose::STANDARD.decode(b64.trim()) {
                Ok(bytes) => match rendered_type(&bytes) {
                    Some(kind) => CallbackEnd::Image(RenderedImage { bytes, content_type: kind.to_owned() }),
                    None => CallbackEnd::Failed(transient("openai's image is not a PNG, JPEG or WebP".into(), None)),
                },
                Err(e) => CallbackEnd::Failed(transient(format!("openai's image does not decode: {e}"), None)),
            }
        }
        "failed" => {
            let error = response.error.unwrap_or(ResponseError { code: String::new(), message: String::new() });
            let detail = format!("openai response failed: code={} message={}", error.code, error.message);
            let code = error.code.as_str();
            CallbackEnd::Failed(if code.contains("content_policy") || mentions_safety(&error.message) {
                refused(RefusalKind::ContentPolicy, detail)
            } else if code.starts_with("image") || code.contains("image") {
                refused(RefusalKind::InvalidInput, detail)
            } else if matches!(code, "server_error" | "rate_limit_exceeded" | "vector_store_timeout") {
                transient(detail, None)
            } else {
                configuration(detail)
            })
        }
        "incomplete" => {
            let why = response.incomplete_details.map(|d| d.to_string()).unwrap_or_default();
            let detail = format!("openai response incomplete: {why}");
            CallbackEnd::Failed(if why.contains("content_filter") {
                refused(RefusalKind::ContentPolicy, detail)
            } else {
                transient(detail, None)
            })
        }
        // cancelled, or a status this adapter does not know: the render is over without a result.
        other => CallbackEnd::Failed(transient(format!("openai response ended as {other:?}"), None)),
    }
}

#[async_trait]
impl ResponseReader for OpenAiImages {
    fn event(&self, body: &[u8]) -> Result<Option<String>, String> {
        let event: Event = serde_json::from_slice(body).map_err(|e| format!("not an OpenAI event: {e}"))?;
        if !event.kind.starts_with("response.") {
            return Ok(None);
        }
        match event.data {
            Some(data) if !data.id.is_empty() => Ok(Some(data.id)),
            _ => Err(format!("a {} event without a response id", event.kind)),
        }
    }

    async fn response(&self, id: &str) -> Result<(Option<JobRef>, CallbackEnd), ProviderError> {
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            return Err(configuration(format!("{id:?} is not a response id")));
        }
        let key = self.credentials.openai_api_key().await?;
        let url = format!("{}/v1/responses/{id}", self.api_base.trim_end_matches('/'));
        let response = http_client(&self.http)?
            .get(url)
            .timeout(std::time::Duration::from_secs(20))
            .bearer_auth(key.expose_secret())
            .send()
            .await
            .map_err(|e| transport_error("openai", e))?;
        let status = response.status();
        if status.as_u16() == 404 {
            // Another project's, or deleted: nothing of ours to finish.
            return Ok((None, CallbackEnd::Pending));
        }
        if !status.is_success() {
            let retry = retry_after(response.headers());
            // Whatever it is, reading the response failed now: OpenAI sends the event again.
            let error = failure(response, key.expose_secret()).await;
            return Err(transient(error.to_string(), retry));
        }
        let body = read_capped(response, MAX_RESPONSE_BYTES, "openai").await?;
        let parsed: Response = serde_json::from_slice(&body)
            .map_err(|e| transient(format!("openai answered {status} with an unreadable response: {e}"), None))?;
        let job = parsed.metadata.get(JOB_METADATA_KEY).and_then(Value::as_str).and_then(JobRef::from_reference);
        Ok((job, end_of(parsed)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(value: Value) -> Response {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn each_status_is_read_as_its_end() {
        assert_eq!(end_of(response(json!({"status": "queued"}))), CallbackEnd::Pending);
        assert_eq!(end_of(response(json!({"status": "in_progress"}))), CallbackEnd::Pending);
        let png = {
            let mut bytes = Vec::new();
            image::RgbImage::from_pixel(2, 2, image::Rgb([1, 2, 3]))
                .write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png)
                .unwrap();
            bytes
        };
        let b64 = base64::engine::general_purpose::STANDARD.encode(&png);
        let done = json!({"status": "completed", "output": [
            {"type": "reasoning"}, {"type": "image_generation_call", "status": "completed", "result": b64}
        ]});
        assert_eq!(
            end_of(response(done)),
            CallbackEnd::Image(RenderedImage { bytes: png, content_type: "image/png".into() })
        );
        let kind = |v: Value| match end_of(response(v)) {
            CallbackEnd::Failed(ProviderError::Permanent { kind, .. }) => Some(kind),
            CallbackEnd::Failed(ProviderError::Transient { .. }) => None,
            other => panic!("{other:?}"),
        };
        let words = json!({"status": "completed", "output": [{"type": "message"}]});
        assert_eq!(kind(words), Some(RefusalKind::InvalidInput), "completed without an image");
        let policy = json!({"status": "failed", "error": {"code": "image_content_policy_violation", "message": "x"}});
        assert_eq!(kind(policy), Some(RefusalKind::ContentPolicy));
        let photo = json!({"status": "failed", "error": {"code": "invalid_image_format", "message": "x"}});
        assert_eq!(kind(photo), Some(RefusalKind::InvalidInput));
        assert_eq!(kind(json!({"status": "failed", "error": {"code": "server_error", "message": "x"}})), None);
        assert_eq!(kind(json!({"status": "cancelled"})), None);
        let filtered = json!({"status": "incomplete", "incomplete_details": {"reason": "content_filter"}});
        assert_eq!(kind(filtered), Some(RefusalKind::ContentPolicy));
        let bad = json!({"status": "completed", "output": [{"type": "image_generation_call", "result": "%%%"}]});
        assert_eq!(kind(bad), None);
    }
}
