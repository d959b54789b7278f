//! What the loopback-stage tests (round_trips.rs, iam.rs) share: the outside services on wiremock, the
//! stage's function environment with the limits a scripted journey needs lifted, and the app's side of an
//! upload.

use std::collections::BTreeMap;

use appstore_test_chain::TestChain;
use bench::LoopbackStage;
use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// Twilio, accepting every text.
pub async fn twilio() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/2010-04-01/Accounts/AC1/Messages.json"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"sid": "SM1"})))
        .mount(&server)
        .await;
    server
}

/// The code texted to `phone` most recently.
pub async fn last_code(twilio: &MockServer, phone: &str) -> String {
    let encoded = phone.replace('+', "%2B");
    let requests = twilio.received_requests().await.unwrap();
    let form = requests
        .iter()
        .rev()
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .find(|f| f.contains(&format!("To={encoded}")))
        .expect("a text to the number");
    form.split(|c: char| !c.is_ascii_digit()).find(|w| w.len() == 6).unwrap().to_owned()
}

/// A small rendered image, as a provider returns one.
pub fn png() -> Vec<u8> {
    let mut bytes = Vec::new();
    image::RgbImage::from_pixel(16, 16, image::Rgb([10, 200, 10]))
        .write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png)
        .unwrap();
    bytes
}

/// A small real JPEG, as the app uploads one.
pub fn jpeg() -> Vec<u8> {
    let mut bytes = Vec::new();
    image::RgbImage::from_fn(64, 48, |x, y| image::Rgb([(x * 4) as u8, (y * 5) as u8, 90]))
        .write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Jpeg)
        .unwrap();
    bytes
}

/// OpenAI's image edit answering with [`png`].
pub fn openai_success() -> ResponseTemplate {
    use base64::Engine;
    ResponseTemplate::new(200).set_body_json(json!({
        "created": 1, "data": [{"b64_json": base64::engine::general_purpose::STANDARD.encode(png())}]
    }))
}

/// An OpenAI stand-in whose image edit answers `response`.
pub async fn openai(response: ResponseTemplate) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST")).and(path("/v1/images/edits")).respond_with(response).mount(&server).await;
    server
}

/// The stage's function environment with Twilio, OpenAI and the App Store test chain on loopback, and the
/// per-IP, cooldown and in-flight limits lifted so one scripted caller can run a whole journey.
pub fn function_env(
    stage: &LoopbackStage,
    twilio: &MockServer,
    openai: &MockServer,
    chain: &TestChain,
) -> BTreeMap<String, String> {
    let mut env = stage.function_env(&twilio.uri());
    env.insert("OPENAI_API_BASE".into(), openai.uri());
    env.insert("APP_STORE_ROOT_CERTS".into(), chain.root_base64());
    env.insert("MAX_GENERATIONS_IN_FLIGHT".into(), "10".into());
    env.insert("SEND_CODE_IP_LIMIT_PER_HOUR".into(), "1000".into());
    env.insert("RESEND_COOLDOWN_SECONDS".into(), "0".into());
    env
}

/// The app's PUT of `photo` to an upload slot (`POST /v1/uploads`'s answer), with every header it names.
pub async fn put_photo(slot: &Value, photo: Vec<u8>) {
    let mut put = reqwest::Client::new().put(slot["uploadUrl"].as_str().unwrap()).body(photo);
    for (name, value) in slot["headers"].as_object().unwrap() {
        put = put.header(name.as_str(), value.as_str().unwrap());
    }
    let put = put.send().await.unwrap();
    assert!(put.status().is_success(), "the presigned PUT: {}", put.status());
}
