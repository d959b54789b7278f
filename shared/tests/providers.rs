//! The real image-provider adapters against wiremock, checking the exact requests each provider documents:
//! OpenAI's "create image edit" (multipart) and Replicate's predictions (JSON, `Prefer: wait`, polling), their
//! success shapes, and how every error shape is classified — without a key ever reaching an error.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use facemake::adapters::providers::hosts::DownloadHosts;
use facemake::adapters::providers::openai::OpenAiImages;
use facemake::adapters::providers::replicate::ReplicatePredictions;
use facemake::adapters::providers::{ProviderCredentials, ProviderKeys, REASON_CONTENT_POLICY};
use facemake::domain::{GenerationSpec, Provider};
use facemake::ports::{ImageProvider, ProviderError, RefusalKind, RenderRequest, RenderedImage};
use image::{ImageBuffer, Rgb};
use secrecy::SecretString;
use serde_json::{json, Value};
use wiremock::matchers::{header, method, path};
use wiremock::{Match, Mock, MockServer, Request, ResponseTemplate};

const OPENAI_KEY: &str = "sk-test-SECRET";
const REPLICATE_TOKEN: &str = "r8_test-SECRET";
const PROMPT: &str = "Restyle this photo as a neo-noir portrait.";

fn keys() -> ProviderCredentials {
    ProviderCredentials::fixed(ProviderKeys {
        openai_api_key: Some(SecretString::from(OPENAI_KEY)),
        replicate_api_token: Some(SecretString::from(REPLICATE_TOKEN)),
    })
}

/// A prepared photo, as the worker hands it over.
fn photo() -> Vec<u8> {
    let img = ImageBuffer::from_fn(48, 64, |x, y| Rgb([(x * 5) as u8, (y * 4) as u8, 90u8]));
    let mut png = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png).unwrap();
    facemake::imaging::prepare(&png, &Default::default()).unwrap().jpeg
}

/// A rendered image as a provider returns it.
fn rendered(format: image::ImageFormat) -> Vec<u8> {
    let img = ImageBuffer::from_pixel(16, 24, Rgb([200u8, 40, 120]));
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), format).unwrap();
    out
}

fn spec(provider: Provider, model: &str, params: Value) -> GenerationSpec {
    let params: BTreeMap<String, Value> = serde_json::from_value(params).unwrap();
    GenerationSpec { provider, model: model.to_owned(), prompt: PROMPT.to_owned(), params }
}

fn openai_spec() -> GenerationSpec {
    spec(
        Provider::Openai,
        "gpt-image-1",
        json!({"localEffect": "duotone", "size": "1024x1536", "quality": "medium", "input_fidelity": "high", "output_format": "jpeg"}),
    )
}

fn replicate_spec(model: &str) -> GenerationSpec {
    spec(
        Provider::Replicate,
        model,
        json!({"localEffect": "warm", "aspect_ratio": "3:4", "output_format": "jpg", "safety_tolerance": 2, "prompt_upsampling": false}),
    )
}

async fn render(
    provider: &dyn ImageProvider,
    spec: &GenerationSpec,
    image: &[u8],
    image_url: Option<&str>,
) -> Result<RenderedImage, ProviderError> {
    provider
        .render(RenderRequest {
            spec,
            images: &[image.to_vec()],
            image_urls: &image_url.map(str::to_owned).into_iter().collect::<Vec<_>>(),
            job_id: "01JTESTGENERATION",
            time_left: std::time::Duration::from_secs(200),
        })
        .await
}

/// Neither `Display` nor `Debug` of an error may carry a key.
fn assert_no_secret(err: &ProviderError) {
    for text in [err.to_string(), format!("{err:?}")] {
        for secret in [OPENAI_KEY, REPLICATE_TOKEN, "SECRET"] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
    }
}

fn refusal(err: &ProviderError) -> Option<RefusalKind> {
    assert_no_secret(err);
    match err {
        ProviderError::Permanent { kind, .. } => Some(*kind),
        ProviderError::Transient { .. } => None,
    }
}

// ---------------------------------------------------------------------------------------------------------
// A multipart/form-data reader for the OpenAI matcher
// ---------------------------------------------------------------------------------------------------------

#[derive(Debug)]
struct FormPart {
    name: String,
    filename: Option<String>,
    content_type: Option<String>,
    body: Vec<u8>,
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    haystack.get(from..)?.windows(needle.len()).position(|w| w == needle).map(|i| i + from)
}

/// The parts of a `multipart/form-data` body (RFC 7578), or `None` when it is not one.
fn parse_multipart(request: &Request) -> Option<Vec<FormPart>> {
    let content_type = request.headers.get("content-type")?.to_str().ok()?;
    let boundary = content_type
        .strip_prefix("multipart/form-data")?
        .split(';')
        .find_map(|p| p.trim().strip_prefix("boundary="))?
        .trim_matches('"');
    let delimiter = format!("\r\n--{boundary}").into_bytes();
    // Prefix a CRLF so the first delimiter looks like the others.
    let body = [&b"\r\n"[..], &request.body].concat();
    let mut parts = Vec::new();
    let mut at = find(&body, &delimiter, 0)? + delimiter.len();
    loop {
        if body.get(at..at + 2)? == b"--" {
            return Some(parts); // the closing delimiter
        }
        let start = at + 2; // the CRLF after the delimiter
        let headers_end = find(&body, b"\r\n\r\n", start)?;
        let next = find(&body, &delimiter, headers_end)?;
        let mut part = FormPart {
            name: String::new(),
            filename: None,
            content_type: None,
            body: body[headers_end + 4..next].to_vec(),
        };
        for line in std::str::from_utf8(&body[start..headers_end]).ok()?.split("\r\n") {
            let (name, value) = line.split_once(':')?;
            match name.trim().to_ascii_lowercase().as_str() {
                "content-disposition" => {
                    for param in value.split(';').map(str::trim) {
                        if let Some(v) = param.strip_prefix("name=") {
                            part.name = v.trim_matches('"').to_owned();
                        } else if let Some(v) = param.strip_prefix("filename=") {
                            part.filename = Some(v.trim_matches('"').to_owned());
                        }
                    }
                }
                "content-type" => part.content_type = Some(value.trim().to_owned()),
                _ => {}
            }
        }
        parts.push(part);
        at = next + delimiter.len();
    }
}

/// Matches OpenAI's image edit form: these text fields with these values, the photo as a JPEG file part with
/// exactly these bytes, and none of the forbidden fields.
struct EditForm {
    text: Vec<(&'static str, String)>,
    image: Vec<u8>,
    absent: Vec<&'static str>,
}

impl Match for EditForm {
    fn matches(&self, request: &Request) -> bool {
        let Some(parts) = parse_multipart(request) else {
            return false;
        };
        let text_ok = self.text.iter().all(|(name, value)| {
            let mut found = parts.iter().filter(|p| p.name == *name);
            matches!((found.next(), found.next()), (Some(p), None) if p.filename.is_none() && p.body == value.as_bytes())
        });
        let image_ok = parts.iter().filter(|p| p.name == "image").count() == 1
            && parts.iter().any(|p| {
                p.name == "image"
                    && p.filename.as_deref() == Some("photo.jpg")
                    && p.content_type.as_deref() == Some("image/jpeg")
                    && p.body == self.image
            });
        let absent_ok = self.absent.iter().all(|name| parts.iter().all(|p| p.name != *name));
        text_ok && image_ok && absent_ok
    }
}

// ---------------------------------------------------------------------------------------------------------
// OpenAI
// ---------------------------------------------------------------------------------------------------------

fn openai_error(status: u16, code: &str, kind: &str, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status)
        .set_body_json(json!({"error": {"message": message, "type": kind, "param": null, "code": code}}))
}

#[tokio::test]
async fn openai_sends_the_documented_multipart_edit_and_decodes_b64_json() {
    let server = MockServer::start().await;
    let photo = photo();
    let output = rendered(image::ImageFormat::Jpeg);
    Mock::given(method("POST"))
        .and(path("/v1/images/edits"))
        .and(header("authorization", format!("Bearer {OPENAI_KEY}").as_str()))
        .and(EditForm {
            text: vec![
                ("model", "gpt-image-1".into()),
                ("prompt", PROMPT.into()),
                ("n", "1".into()),
                ("size", "1024x1536".into()),
                ("quality", "medium".into()),
                ("input_fidelity", "high".into()),
                ("output_format", "jpeg".into()),
            ],
            image: photo.clone(),
            absent: vec!["localEffect"],
        })
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "created": 1_713_833_628,
            "data": [{"b64_json": base64::engine::general_purpose::STANDARD.encode(&output)}],
            "usage": {"total_tokens": 100, "input_tokens": 50, "output_tokens": 50}
        })))
        .expect(1)
        .mount(&server)
        .await;

    let openai = OpenAiImages::new(server.uri(), keys());
    assert!(!openai.needs_image_url());
    let image = render(&openai, &openai_spec(), &photo, None).await.unwrap();
    assert_eq!(image.bytes, output);
    assert_eq!(image.content_type, "image/jpeg");

    // The whole form, field by field: nothing else was sent.
    let requests = server.received_requests().await.unwrap();
    let parts = parse_multipart(&requests[0]).unwrap();
    let mut names: Vec<&str> = parts.iter().map(|p| p.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["image", "input_fidelity", "model", "n", "output_format", "prompt", "quality", "size"]);
}

#[tokio::test]
async fn the_form_matcher_refuses_a_wrong_value_or_a_forbidden_field() {
    // Guards the matcher itself: were it always true, the test above would prove nothing.
    let photo = photo();
    for (text, absent) in [
        (vec![("prompt", "another prompt".to_owned())], vec![]),
        (vec![("model", "gpt-image-1".to_owned())], vec!["size"]),
    ] {
        let server = MockServer::start().await;
        Mock::given(EditForm { text, image: photo.clone(), absent })
            .respond_with(ResponseTemplate::new(500))
            .expect(0)
            .mount(&server)
            .await;
        // Unmatched, wiremock answers 404: a configuration refusal.
        let err = render(&OpenAiImages::new(server.uri(), keys()), &openai_spec(), &photo, None).await.unwrap_err();
        assert_eq!(refusal(&err), Some(RefusalKind::Configuration), "{err:?}");
    }
}

#[tokio::test]
async fn openai_content_type_follows_the_bytes_not_the_requested_format() {
    let server = MockServer::start().await;
    let png = rendered(image::ImageFormat::Png);
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"created": 1, "data": [{"b64_json": base64::engine::general_purpose::STANDARD.encode(&png)}]}),
        ))
        .mount(&server)
        .await;
    let image = render(&OpenAiImages::new(server.uri(), keys()), &openai_spec(), &photo(), None).await.unwrap();
    assert_eq!(image.content_type, "image/png");
}

#[tokio::test]
async fn openai_moderation_block_is_a_content_policy_refusal() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(openai_error(
            400,
            "moderation_blocked",
            "image_generation_user_error",
            "Your request was rejected by the safety system.",
        ))
        .mount(&server)
        .await;
    let err = render(&OpenAiImages::new(server.uri(), keys()), &openai_spec(), &photo(), None).await.unwrap_err();
    assert_eq!(refusal(&err), Some(RefusalKind::ContentPolicy), "{err:?}");
    let ProviderError::Permanent { user_reason, detail, .. } = err else { unreachable!() };
    assert_eq!(user_reason, REASON_CONTENT_POLICY);
    assert!(!user_reason.to_lowercase().contains("openai"));
    assert!(detail.contains("moderation_blocked"), "{detail}");
}

#[tokio::test]
async fn openai_server_error_is_transient() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(openai_error(500, "server_error", "server_error", "The server had an error."))
        .mount(&server)
        .await;
    let err = render(&OpenAiImages::new(server.uri(), keys()), &openai_spec(), &photo(), None).await.unwrap_err();
    assert_eq!(refusal(&err), None, "{err:?}");
}

#[tokio::test]
async fn openai_rate_limit_is_transient_with_retry_after() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            openai_error(429, "rate_limit_exceeded", "requests", "Rate limit reached.")
                .insert_header("Retry-After", "7"),
        )
        .mount(&server)
        .await;
    let err = render(&OpenAiImages::new(server.uri(), keys()), &openai_spec(), &photo(), None).await.unwrap_err();
    assert_no_secret(&err);
    assert!(matches!(err, ProviderError::Transient { retry_after_secs: Some(7), .. }), "{err:?}");
}

#[tokio::test]
async fn openai_insufficient_quota_is_configuration_not_transient() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(openai_error(429, "insufficient_quota", "insufficient_quota", "You exceeded your current quota."))
        .mount(&server)
        .await;
    let err = render(&OpenAiImages::new(server.uri(), keys()), &openai_spec(), &photo(), None).await.unwrap_err();
    assert_eq!(refusal(&err), Some(RefusalKind::Configuration), "{err:?}");
}

#[tokio::test]
async fn openai_bad_key_is_configuration_and_the_echoed_key_is_scrubbed() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(openai_error(
            401,
            "invalid_api_key",
            "invalid_request_error",
            &format!("Incorrect API key provided: {OPENAI_KEY}. You can find your API key at https://platform.openai.com/account/api-keys."),
        ))
        .mount(&server)
        .await;
    let err = render(&OpenAiImages::new(server.uri(), keys()), &openai_spec(), &photo(), None).await.unwrap_err();
    assert_eq!(refusal(&err), Some(RefusalKind::Configuration), "{err:?}");
    assert!(err.to_string().contains("invalid_api_key"), "{err}");
}

#[tokio::test]
async fn openai_without_a_key_is_configuration_and_calls_nothing() {
    let server = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(200)).expect(0).mount(&server).await;
    let openai = OpenAiImages::new(server.uri(), ProviderCredentials::fixed(ProviderKeys::default()));
    let err = render(&openai, &openai_spec(), &photo(), None).await.unwrap_err();
    assert_eq!(refusal(&err), Some(RefusalKind::Configuration));
}

#[tokio::test]
async fn an_unreachable_provider_is_transient() {
    let err =
        render(&OpenAiImages::new("http://127.0.0.1:9", keys()), &openai_spec(), &photo(), None).await.unwrap_err();
    assert_eq!(refusal(&err), None, "{err:?}");
}

// ---------------------------------------------------------------------------------------------------------
// Replicate
// ---------------------------------------------------------------------------------------------------------

const PHOTO_URL: &str = "https://images.example/work/01JTEST.jpg?X-Amz-Signature=abc";

fn prediction(server: &MockServer, id: &str, status: &str, output: Value, error: Value) -> Value {
    json!({
        "id": id,
        "model": "black-forest-labs/flux-kontext-pro",
        "version": "hidden",
        "input": {},
        "logs": "",
        "output": output,
        "data_removed": false,
        "error": error,
        "status": status,
        "created_at": "2025-01-01T00:00:00.000Z",
        "urls": {
            "get": format!("{}/v1/predictions/{id}", server.uri()),
            "cancel": format!("{}/v1/predictions/{id}/cancel", server.uri()),
            "stream": format!("{}/stream/{id}", server.uri()),
        }
    })
}

/// The stand-in serves the output files too: its exact origin is the one allowed download host.
fn stand_in(server: &MockServer) -> DownloadHosts {
    DownloadHosts::parse(&server.uri()).unwrap()
}

/// A prediction that succeeds at once with `output` as its file.
async fn succeeding_with(server: &MockServer, output: &str) {
    Mock::given(method("POST"))
        .and(path("/v1/models/black-forest-labs/flux-kontext-pro/predictions"))
        .respond_with(ResponseTemplate::new(201).set_body_json(prediction(
            server,
            "p9",
            "succeeded",
            json!([output]),
            json!(null),
        )))
        .mount(server)
        .await;
}

#[tokio::test]
async fn replicate_outputs_are_downloaded_only_from_the_allowed_hosts() {
    // The prediction points the worker at another host (an internal address here): nothing is fetched.
    let server = MockServer::start().await;
    let elsewhere = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(rendered(image::ImageFormat::Png)))
        .expect(0)
        .mount(&elsewhere)
        .await;
    succeeding_with(&server, &format!("{}/latest/meta-data/out.png", elsewhere.uri())).await;
    let spec = replicate_spec("black-forest-labs/flux-kontext-pro");
    let err = render(&replicate(&server), &spec, &photo(), Some(PHOTO_URL)).await.unwrap_err();
    assert_eq!(refusal(&err), Some(RefusalKind::Configuration), "{err:?}");
    assert!(!format!("{err:?}").contains("meta-data"), "the error names the host, not the path: {err:?}");
}

/// `from` on `server` answers a redirect to `to`.
async fn redirect(server: &MockServer, from: &str, to: String) {
    Mock::given(method("GET"))
        .and(path(from))
        .respond_with(ResponseTemplate::new(302).insert_header("location", to))
        .mount(server)
        .await;
}

/// The render's outcome when the prediction's output is `first`, with `/files/here.png` serving the image.
async fn download_through(server: &MockServer, first: &str) -> Result<RenderedImage, ProviderError> {
    Mock::given(method("GET"))
        .and(path("/files/here.png"))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(rendered(image::ImageFormat::Png)))
        .mount(server)
        .await;
    succeeding_with(server, &format!("{}{first}", server.uri())).await;
    render(&replicate(server), &replicate_spec("black-forest-labs/flux-kontext-pro"), &photo(), Some(PHOTO_URL)).await
}

#[tokio::test]
async fn replicate_output_redirects_are_followed_only_to_allowed_hosts() {
    // An allowed host redirecting away: refused, the other host never asked.
    let server = MockServer::start().await;
    let elsewhere = MockServer::start().await;
    Mock::given(method("GET")).respond_with(ResponseTemplate::new(200)).expect(0).mount(&elsewhere).await;
    redirect(&server, "/files/away.png", format!("{}/x.png", elsewhere.uri())).await;
    let err = download_through(&server, "/files/away.png").await.unwrap_err();
    assert_eq!(refusal(&err), Some(RefusalKind::Configuration), "{err:?}");

    // Within the allowed host: followed, up to three redirects.
    let server = MockServer::start().await;
    for (from, to) in [("/r1", "/r2"), ("/r2", "/r3"), ("/r3", "/files/here.png")] {
        redirect(&server, from, format!("{}{to}", server.uri())).await;
    }
    let image = download_through(&server, "/r1").await.unwrap();
    assert_eq!(image.bytes, rendered(image::ImageFormat::Png), "three redirects within the allowed host");
    // A fourth is refused.
    let server = MockServer::start().await;
    for (from, to) in [("/r0", "/r1"), ("/r1", "/r2"), ("/r2", "/r3"), ("/r3", "/files/here.png")] {
        redirect(&server, from, format!("{}{to}", server.uri())).await;
    }
    let err = download_through(&server, "/r0").await.unwrap_err();
    assert_eq!(refusal(&err), Some(RefusalKind::Configuration), "{err:?}");
}

fn replicate(server: &MockServer) -> ReplicatePredictions {
    ReplicatePredictions::new(server.uri(), keys())
        .with_poll_interval(Duration::from_millis(10))
        .with_output_hosts(stand_in(server))
}

fn replicate_api_error(status: u16, title: &str, detail: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(json!({"title": title, "detail": detail, "status": status}))
}

/// The create request's JSON body: the documented input, without the local renderer's parameter.
fn replicate_input(image_key: &'static str) -> impl Fn(&Request) -> bool + Send + Sync {
    move |request: &Request| {
        let Ok(body) = request.body_json::<Value>() else {
            return false;
        };
        let input = &body["input"];
        input["prompt"] == PROMPT
            && input[image_key] == PHOTO_URL
            && input["aspect_ratio"] == "3:4"
            && input["safety_tolerance"] == 2
            && input["prompt_upsampling"] == false
            && input.get("localEffect").is_none()
            && input.get("imageInputKey").is_none()
    }
}

#[tokio::test]
async fn replicate_creates_polls_and_downloads_the_output() {
    let server = MockServer::start().await;
    let png = rendered(image::ImageFormat::Png);
    Mock::given(method("POST"))
        .and(path("/v1/models/black-forest-labs/flux-kontext-pro/predictions"))
        .and(header("authorization", format!("Bearer {REPLICATE_TOKEN}").as_str()))
        .and(header("content-type", "application/json"))
        .and(header("prefer", "wait=60"))
        .and(replicate_input("input_image"))
        .and(|r: &Request| r.body_json::<Value>().is_ok_and(|b| b.get("version").is_none()))
        .respond_with(ResponseTemplate::new(201).set_body_json(prediction(
            &server,
            "p1",
            "starting",
            json!(null),
            json!(null),
        )))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/predictions/p1"))
        .and(header("authorization", format!("Bearer {REPLICATE_TOKEN}").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(prediction(
            &server,
            "p1",
            "processing",
            json!(null),
            json!(null),
        )))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    let output_url = format!("{}/files/p1/out-0.png", server.uri());
    Mock::given(method("GET"))
        .and(path("/v1/predictions/p1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(prediction(
            &server,
            "p1",
            "succeeded",
            json!([output_url]),
            json!(null),
        )))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/files/p1/out-0.png"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(png.clone(), "image/png"))
        .expect(1)
        .mount(&server)
        .await;

    let adapter = replicate(&server);
    assert!(adapter.needs_image_url());
    let image = render(&adapter, &replicate_spec("black-forest-labs/flux-kontext-pro"), &photo(), Some(PHOTO_URL))
        .await
        .unwrap();
    assert_eq!(image.bytes, png);
    assert_eq!(image.content_type, "image/png");

    // The output file is fetched without the API token.
    let requests = server.received_requests().await.unwrap();
    let download = requests.iter().find(|r| r.url.path().starts_with("/files/")).unwrap();
    assert!(download.headers.get("authorization").is_none());
}

/// A prediction `id` that is created once (each one is billed) and succeeds at once (Prefer: wait), its
/// output at `/files/<id>/out-0.png`.
async fn succeeds_at_once(server: &MockServer, id: &str) {
    let output_url = format!("{}/files/{id}/out-0.png", server.uri());
    Mock::given(method("POST"))
        .and(path("/v1/models/black-forest-labs/flux-kontext-pro/predictions"))
        .respond_with(ResponseTemplate::new(201).set_body_json(prediction(
            server,
            id,
            "succeeded",
            json!(output_url),
            json!(null),
        )))
        .expect(1)
        .mount(server)
        .await;
}

#[tokio::test]
async fn a_failed_output_download_is_retried_without_a_second_prediction() {
    let server = MockServer::start().await;
    let png = rendered(image::ImageFormat::Png);
    succeeds_at_once(&server, "p2").await;
    // Replicate's file host fails twice, then serves the file.
    Mock::given(method("GET"))
        .and(path("/files/p2/out-0.png"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(2)
        .expect(2)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/files/p2/out-0.png"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(png.clone(), "image/png"))
        .expect(1)
        .mount(&server)
        .await;
    let adapter = replicate(&server);
    let image = render(&adapter, &replicate_spec("black-forest-labs/flux-kontext-pro"), &photo(), Some(PHOTO_URL))
        .await
        .unwrap();
    assert_eq!(image.bytes, png);
}

#[tokio::test]
async fn an_output_that_cannot_be_downloaded_is_transient_after_three_tries() {
    let server = MockServer::start().await;
    succeeds_at_once(&server, "p3").await;
    Mock::given(method("GET"))
        .and(path("/files/p3/out-0.png"))
        .respond_with(ResponseTemplate::new(500))
        .expect(3)
        .mount(&server)
        .await;
    let adapter = replicate(&server);
    let err = render(&adapter, &replicate_spec("black-forest-labs/flux-kontext-pro"), &photo(), Some(PHOTO_URL))
        .await
        .unwrap_err();
    assert_eq!(refusal(&err), None, "a download that keeps failing is transient: {err}");
}

#[tokio::test]
async fn a_version_pinned_model_posts_to_predictions_with_its_version() {
    let server = MockServer::start().await;
    let jpeg = rendered(image::ImageFormat::Jpeg);
    let output_url = format!("{}/files/p2/out.jpg", server.uri());
    Mock::given(method("POST"))
        .and(path("/v1/predictions"))
        .and(header("authorization", format!("Bearer {REPLICATE_TOKEN}").as_str()))
        .and(header("prefer", "wait=60"))
        .and(replicate_input("image"))
        .and(|r: &Request| {
            r.body_json::<Value>().is_ok_and(|b| {
                b["version"] == "5c7d5dc6dd8bf75c1acaa8565735e7986bc5b66206b55cca93cb72c9bf15ccaa"
                    && b["input"].get("input_image").is_none()
            })
        })
        // Finished within the create call (Prefer: wait): no poll.
        .respond_with(ResponseTemplate::new(201).set_body_json(prediction(
            &server,
            "p2",
            "succeeded",
            json!(output_url),
            json!(null),
        )))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/files/p2/out.jpg"))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(jpeg.clone()))
        .expect(1)
        .mount(&server)
        .await;

    let mut spec = replicate_spec("owner/some-model:5c7d5dc6dd8bf75c1acaa8565735e7986bc5b66206b55cca93cb72c9bf15ccaa");
    spec.params.insert("imageInputKey".into(), json!("image"));
    let image = render(&replicate(&server), &spec, &photo(), Some(PHOTO_URL)).await.unwrap();
    assert_eq!(image.bytes, jpeg);
    assert_eq!(image.content_type, "image/jpeg");
}

#[tokio::test]
async fn replicate_nsfw_failure_is_a_content_policy_refusal() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(201).set_body_json(prediction(
            &server,
            "p3",
            "failed",
            json!(null),
            json!("NSFW content detected. Try running it again, or try a different prompt."),
        )))
        .mount(&server)
        .await;
    let err =
        render(&replicate(&server), &replicate_spec("black-forest-labs/flux-kontext-pro"), &photo(), Some(PHOTO_URL))
            .await
            .unwrap_err();
    assert_eq!(refusal(&err), Some(RefusalKind::ContentPolicy), "{err:?}");
    let ProviderError::Permanent { user_reason, .. } = err else { unreachable!() };
    assert_eq!(user_reason, REASON_CONTENT_POLICY);
}

#[tokio::test]
async fn replicate_other_failures_are_invalid_input_and_cancels_are_transient() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(201).set_body_json(prediction(
            &server,
            "p4",
            "failed",
            json!(null),
            json!("Could not load the input image."),
        )))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(201).set_body_json(prediction(
            &server,
            "p5",
            "canceled",
            json!(null),
            json!(null),
        )))
        .mount(&server)
        .await;
    let adapter = replicate(&server);
    let spec = replicate_spec("black-forest-labs/flux-kontext-pro");
    let err = render(&adapter, &spec, &photo(), Some(PHOTO_URL)).await.unwrap_err();
    assert_eq!(refusal(&err), Some(RefusalKind::InvalidInput), "{err:?}");
    let err = render(&adapter, &spec, &photo(), Some(PHOTO_URL)).await.unwrap_err();
    assert_eq!(refusal(&err), None, "{err:?}");
}

#[tokio::test]
async fn replicate_422_is_configuration() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(replicate_api_error(
            422,
            "Input validation failed",
            "- input.aspect_ratio: aspect_ratio must be one of the following: \"match_input_image\", \"1:1\"",
        ))
        .mount(&server)
        .await;
    let err =
        render(&replicate(&server), &replicate_spec("black-forest-labs/flux-kontext-pro"), &photo(), Some(PHOTO_URL))
            .await
            .unwrap_err();
    assert_eq!(refusal(&err), Some(RefusalKind::Configuration), "{err:?}");
    assert!(err.to_string().contains("Input validation failed"), "{err}");
}

#[tokio::test]
async fn replicate_503_is_transient_with_retry_after() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            replicate_api_error(503, "Service Unavailable", "Try again later.").insert_header("Retry-After", "5"),
        )
        .mount(&server)
        .await;
    let err =
        render(&replicate(&server), &replicate_spec("black-forest-labs/flux-kontext-pro"), &photo(), Some(PHOTO_URL))
            .await
            .unwrap_err();
    assert_no_secret(&err);
    assert!(matches!(err, ProviderError::Transient { retry_after_secs: Some(5), .. }), "{err:?}");
}

#[tokio::test]
async fn replicate_bad_token_is_configuration_without_the_token() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(replicate_api_error(401, "Unauthenticated", &format!("Invalid token {REPLICATE_TOKEN}")))
        .mount(&server)
        .await;
    let err =
        render(&replicate(&server), &replicate_spec("black-forest-labs/flux-kontext-pro"), &photo(), Some(PHOTO_URL))
            .await
            .unwrap_err();
    assert_eq!(refusal(&err), Some(RefusalKind::Configuration), "{err:?}");
}

#[tokio::test]
async fn replicate_gives_up_at_the_deadline_and_cancels_the_prediction() {
    let server = stuck_prediction("p6").await;
    let adapter = replicate(&server).with_deadline(Duration::from_millis(300));
    let err = render(&adapter, &replicate_spec("black-forest-labs/flux-kontext-pro"), &photo(), Some(PHOTO_URL))
        .await
        .unwrap_err();
    assert_eq!(refusal(&err), None, "{err:?}");
    assert!(err.to_string().contains("timed out"), "{err}");
}

#[tokio::test]
async fn replicate_cancels_before_the_workers_budget_runs_out() {
    let server = stuck_prediction("p7").await;
    // The adapter's own deadline is far away; the worker has only 6 s left, so it stops at 1 s (6 s less
    // the margin the cancel call needs), asks Replicate to wait at most 1 s, and cancels.
    let adapter = replicate(&server);
    let spec = replicate_spec("black-forest-labs/flux-kontext-pro");
    let started = std::time::Instant::now();
    let request = RenderRequest {
        spec: &spec,
        images: &[photo()],
        image_urls: &[PHOTO_URL.to_owned()],
        job_id: "01JTESTGENERATION",
        time_left: Duration::from_secs(6),
    };
    let err = adapter.render(request).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(6), "cancelled inside the budget");
    let created = &server.received_requests().await.unwrap()[0];
    assert_eq!(created.headers.get("prefer").unwrap(), "wait=1");
    assert_eq!(refusal(&err), None, "{err:?}");
    assert!(err.to_string().contains("timed out"), "{err}");
}

#[tokio::test]
async fn replicate_without_a_photo_url_or_token_is_configuration() {
    let server = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(201)).expect(0).mount(&server).await;
    let spec = replicate_spec("black-forest-labs/flux-kontext-pro");
    let err = render(&replicate(&server), &spec, &photo(), None).await.unwrap_err();
    assert_eq!(refusal(&err), Some(RefusalKind::Configuration));
    let no_token = ReplicatePredictions::new(server.uri(), ProviderCredentials::fixed(ProviderKeys::default()));
    let err = render(&no_token, &spec, &photo(), Some(PHOTO_URL)).await.unwrap_err();
    assert_eq!(refusal(&err), Some(RefusalKind::Configuration));
}

/// A Replicate mock whose prediction `id` never leaves `processing`, and which expects exactly one cancel.
async fn stuck_prediction(id: &str) -> MockServer {
    let server = MockServer::start().await;
    let answer = |status: &str| prediction(&server, id, status, json!(null), json!(null));
    Mock::given(method("POST"))
        .and(path("/v1/models/black-forest-labs/flux-kontext-pro/predictions"))
        .respond_with(ResponseTemplate::new(201).set_body_json(answer("starting")))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/v1/predictions/{id}")))
        .respond_with(ResponseTemplate::new(200).set_body_json(answer("processing")))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("/v1/predictions/{id}/cancel")))
        .and(header("authorization", format!("Bearer {REPLICATE_TOKEN}").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(answer("canceled")))
        .expect(1)
        .mount(&server)
        .await;
    server
}

// ---------------------------------------------------------------------------------------------------------
// Several photos (a character)
// ---------------------------------------------------------------------------------------------------------

/// Renders with the given photos and URLs (a character's).
async fn render_many(
    provider: &dyn ImageProvider,
    spec: &GenerationSpec,
    images: &[Vec<u8>],
    image_urls: &[String],
) -> Result<RenderedImage, ProviderError> {
    provider
        .render(RenderRequest {
            spec,
            images,
            image_urls,
            job_id: "01JTESTGENERATION",
            time_left: std::time::Duration::from_secs(200),
        })
        .await
}

#[tokio::test]
async fn openai_gets_every_photo_of_a_character_as_image_array_parts_in_order() {
    let server = MockServer::start().await;
    let photos: Vec<Vec<u8>> = (0..3u8)
        .map(|i| {
            let mut bytes = Vec::new();
            image::RgbImage::from_pixel(8, 8, image::Rgb([i * 80, 10, 10]))
                .write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Jpeg)
                .unwrap();
            bytes
        })
        .collect();
    let output = rendered(image::ImageFormat::Png);
    Mock::given(method("POST"))
        .and(path("/v1/images/edits"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "data": [{"b64_json": base64::engine::general_purpose::STANDARD.encode(&output)}]
        })))
        .expect(1)
        .mount(&server)
        .await;
    let openai = OpenAiImages::new(server.uri(), keys());
    let image = render_many(&openai, &openai_spec(), &photos, &[]).await.unwrap();
    assert_eq!(image.bytes, output);
    let requests = server.received_requests().await.unwrap();
    let parts = parse_multipart(&requests[0]).unwrap();
    let images: Vec<&FormPart> = parts.iter().filter(|p| p.name == "image[]").collect();
    assert_eq!(images.len(), 3, "one image[] part per photo");
    for (i, (part, photo)) in images.iter().zip(&photos).enumerate() {
        assert_eq!(part.body, *photo, "photo {i} in order, byte for byte");
        assert_eq!(part.content_type.as_deref(), Some("image/jpeg"));
        assert_eq!(part.filename.as_deref(), Some(format!("photo-{i}.jpg").as_str()));
    }
    assert!(parts.iter().all(|p| p.name != "image"), "no single `image` field beside the array");
    // No photo at all is our bug, not the provider's: refused before any call.
    let err = render_many(&openai, &openai_spec(), &[], &[]).await.unwrap_err();
    assert_eq!(refusal(&err), Some(RefusalKind::Configuration));
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
}

/// A Replicate create that succeeds at once, whose input is checked by `check`; the render's result.
async fn replicate_input_for(params: Value, urls: &[&str]) -> Result<Value, ProviderError> {
    let server = MockServer::start().await;
    let png = rendered(image::ImageFormat::Png);
    let output_url = format!("{}/files/p9/out.png", server.uri());
    Mock::given(method("POST"))
        .and(path("/v1/models/black-forest-labs/flux-kontext-pro/predictions"))
        .respond_with(ResponseTemplate::new(201).set_body_json(prediction(
            &server,
            "p9",
            "succeeded",
            json!(output_url),
            json!(null),
        )))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/files/p9/out.png"))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(png))
        .mount(&server)
        .await;
    let mut spec = replicate_spec("black-forest-labs/flux-kontext-pro");
    for (k, v) in params.as_object().unwrap() {
        spec.params.insert(k.clone(), v.clone());
    }
    let urls: Vec<String> = urls.iter().map(|u| (*u).to_owned()).collect();
    render_many(&replicate(&server), &spec, &[], &urls).await?;
    let requests = server.received_requests().await.unwrap();
    let create = requests.iter().find(|r| r.method.as_str() == "POST").unwrap();
    Ok(create.body_json::<Value>().unwrap()["input"].clone())
}

#[tokio::test]
async fn replicate_puts_a_characters_photos_where_the_template_says() {
    let urls = ["https://s3/p0", "https://s3/p1", "https://s3/p2"];
    // No setting: the first photo under the default input, the others not sent.
    let input = replicate_input_for(json!({}), &urls).await.unwrap();
    assert_eq!(input["input_image"], urls[0]);
    assert!(!input.to_string().contains(urls[1]) && !input.to_string().contains(urls[2]), "{input}");
    // One named input: the first photo there.
    let input = replicate_input_for(json!({"imageInputKey": "image"}), &urls).await.unwrap();
    assert_eq!((&input["image"], input.get("input_image")), (&json!(urls[0]), None));
    // Several named inputs: photo i under input i, as many as there are of both.
    let input = replicate_input_for(json!({"imageInputKey": ["input_image_1", "input_image_2"]}), &urls).await.unwrap();
    assert_eq!((&input["input_image_1"], &input["input_image_2"]), (&json!(urls[0]), &json!(urls[1])));
    assert!(!input.to_string().contains(urls[2]), "{input}");
    let input = replicate_input_for(json!({"imageInputKey": ["a", "b", "c", "d"]}), &urls[..2]).await.unwrap();
    assert_eq!((&input["a"], &input["b"], input.get("c")), (&json!(urls[0]), &json!(urls[1]), None));
    // A list input: every photo, in order; and beside a named one.
    let input = replicate_input_for(json!({"imageInputListKey": "input_images"}), &urls).await.unwrap();
    assert_eq!(input["input_images"], json!(urls));
    assert_eq!(input.get("input_image"), None);
    let both = json!({"imageInputKey": "image", "imageInputListKey": "reference_images"});
    let input = replicate_input_for(both, &urls).await.unwrap();
    assert_eq!((&input["image"], &input["reference_images"]), (&json!(urls[0]), &json!(urls)));
    assert!(input.get("imageInputKey").is_none() && input.get("imageInputListKey").is_none(), "settings stay ours");
    // Settings that make no sense are our configuration error, sent nowhere.
    for bad in [
        json!({"imageInputKey": []}),
        json!({"imageInputKey": [""]}),
        json!({"imageInputKey": 3}),
        json!({"imageInputListKey": ""}),
    ] {
        let err = replicate_input_for(bad.clone(), &urls).await.unwrap_err();
        assert_eq!(refusal(&err), Some(RefusalKind::Configuration), "{bad}");
    }
}

// ---------------------------------------------------------------------------------------------------------
// Replicate by webhook
// ---------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn replicate_submit_creates_the_prediction_with_the_webhook_and_returns_at_once() {
    let server = MockServer::start().await;
    let hook =
        "https://api.example.test/v1/webhooks/replicate?job=01KAFC0S00GP1XF3A7QYFR6F0D.01KARH98PRTEWH0AVNH9DN65R6";
    Mock::given(method("POST"))
        .and(path("/v1/models/black-forest-labs/flux-kontext-pro/predictions"))
        .and(header("authorization", format!("Bearer {REPLICATE_TOKEN}").as_str()))
        .and(replicate_input("input_image"))
        .and(move |r: &Request| {
            r.body_json::<Value>().is_ok_and(|b| b["webhook"] == hook && b["webhook_events_filter"] == json!(["completed"]))
                // Nothing waits: no `Prefer: wait`.
                && !r.headers.contains_key("prefer")
        })
        .respond_with(ResponseTemplate::new(201).set_body_json(prediction(&server, "p-hook", "starting", json!(null), json!(null))))
        .expect(1)
        .mount(&server)
        .await;
    let adapter = replicate(&server);
    assert!(adapter.calls_back());
    let spec = replicate_spec("black-forest-labs/flux-kontext-pro");
    let request = RenderRequest {
        spec: &spec,
        images: &[],
        image_urls: &[PHOTO_URL.to_owned()],
        job_id: "01KARH98PRTEWH0AVNH9DN65R6",
        time_left: Duration::from_secs(200),
    };
    let started = std::time::Instant::now();
    assert_eq!(adapter.submit(request, hook).await.unwrap(), "p-hook");
    assert!(started.elapsed() < Duration::from_secs(2), "no polling");
    // No poll, no download: the one create call.
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
    // OpenAI can too (a background response; the worker hands it over only on a stage whose project calls back).
    assert!(OpenAiImages::new(server.uri(), keys()).calls_back());
}

#[tokio::test]
async fn a_replicate_callback_reads_as_its_end() {
    use facemake::ports::{CallbackEnd, CallbackReader};
    let server = MockServer::start().await;
    let adapter = replicate(&server);
    let body = |status: &str, output: Value, error: Value| {
        serde_json::to_vec(&prediction(&server, "p1", status, output, error)).unwrap()
    };
    let ok = adapter.parse(&body("succeeded", json!(["https://replicate.delivery/x/out.png"]), json!(null))).unwrap();
    assert_eq!(ok.prediction, "p1");
    assert_eq!(ok.end, CallbackEnd::Succeeded { output_url: "https://replicate.delivery/x/out.png".into() });
    let nsfw = adapter.parse(&body("failed", json!(null), json!("NSFW content detected"))).unwrap();
    assert!(matches!(nsfw.end, CallbackEnd::Failed(ProviderError::Permanent { kind: RefusalKind::ContentPolicy, .. })));
    let canceled = adapter.parse(&body("canceled", json!(null), json!(null))).unwrap();
    assert!(matches!(canceled.end, CallbackEnd::Failed(ProviderError::Transient { .. })));
    let running = adapter.parse(&body("processing", json!(null), json!(null))).unwrap();
    assert_eq!(running.end, CallbackEnd::Pending);
    let no_output = adapter.parse(&body("succeeded", json!(null), json!(null))).unwrap();
    assert!(matches!(
        no_output.end,
        CallbackEnd::Failed(ProviderError::Permanent { kind: RefusalKind::Configuration, .. })
    ));
    for bad in [&b"not json"[..], b"{}", br#"{"id":"","status":"succeeded"}"#] {
        assert!(adapter.parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
    }
    // The output is fetched from the allowed hosts only.
    let err = adapter.fetch("http://169.254.169.254/latest/meta-data").await.unwrap_err();
    assert!(matches!(err, ProviderError::Permanent { kind: RefusalKind::Configuration, .. }), "{err:?}");
    let png = rendered(image::ImageFormat::Png);
    Mock::given(method("GET"))
        .and(path("/files/p1.png"))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(png.clone()))
        .mount(&server)
        .await;
    assert_eq!(adapter.fetch(&format!("{}/files/p1.png", server.uri())).await.unwrap().bytes, png);
}
