//! Captures every log line of whole journeys — sign-in, purchases and notifications, a generation (upload,
//! start, worker success and failure, read with the presigned output URL) and an account deletion — and checks
//! that no code, token, key, full phone number, presigned-URL signature or signed App Store data is in any of
//! them.
//!
//! The lines are the deployed ones: each journey runs again in a child process of this test binary whose
//! logging is set up by `facemake::telemetry::init()` with `LOG_FORMAT=json`, exactly as a function's cold
//! start does, and whose stdout and stderr (the log lines, the Embedded Metric Format lines, anything else
//! printed) are captured whole. Only the level differs: `RUST_LOG=trace` logs more than any stage does.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use facemake::adapters::dynamodb::TableStream;
use facemake::domain::{object_keys, OtpCode, PhoneNumber, TemplateId, UploadId};
use facemake::ports::{Clock, ObjectStore};
use facemake::services::generation::{JobResult, Providers, RetryPolicy};
use facemake::wiring::Media;
use serde_json::Value;
use testkit::{Harness, TEST_MASTER_KEY};

/// Set in the child: the test whose journey it runs.
const JOURNEY_VAR: &str = "FACEMAKE_LOGS_JOURNEY";
/// Set in the child: where it writes the secrets its journey used, for the parent to look for.
const SECRETS_VAR: &str = "FACEMAKE_LOGS_SECRETS_FILE";

/// What a journey used that must never be logged: `(what, value)`.
type Secrets = Vec<(String, String)>;

/// A journey's output as deployed logging wrote it.
struct Logged {
    /// stdout and stderr, whole.
    output: String,
    secrets: Secrets,
}

/// In the parent: runs `test` again in a child process and returns what it logged (`None` in the child, after
/// running `journey` there under the deployed subscriber).
async fn logged<F, Fut>(test: &str, journey: F) -> Option<Logged>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Secrets>,
{
    if std::env::var(JOURNEY_VAR).as_deref() == Ok(test) {
        facemake::telemetry::init();
        let secrets = journey().await;
        let path = std::env::var(SECRETS_VAR).unwrap();
        std::fs::write(path, serde_json::to_vec(&secrets).unwrap()).unwrap();
        return None;
    }
    let file = std::env::temp_dir().join(format!("facemake-logs-{}-{test}.json", std::process::id()));
    // The harness names a test by its path below the test crate's root: `logs::{test}`.
    let exact = match module_path!().split_once("::") {
        Some((_crate, module)) => format!("{module}::{test}"),
        None => test.to_string(),
    };
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([exact.as_str(), "--exact", "--nocapture", "--test-threads=1"])
        .env(JOURNEY_VAR, test)
        .env(SECRETS_VAR, &file)
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "trace")
        .output()
        .unwrap();
    let output = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the journey failed in the child process:\n{output}");
    let secrets: Secrets = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let _ = std::fs::remove_file(&file);
    Some(Logged { output, secrets })
}

impl Logged {
    /// The log lines: JSON objects (the first may follow the test harness's own `test ... ` on its line).
    fn lines(&self) -> Vec<Value> {
        let json =
            |l: &str| l.find("{\"").map(|i| serde_json::from_str(&l[i..]).unwrap_or_else(|e| panic!("{e}: {l}")));
        self.output.lines().filter_map(json).collect()
    }

    /// The line with `message`, as the deployed JSON layer writes it: fields at the top level.
    fn line(&self, message: &str) -> Value {
        self.lines()
            .into_iter()
            .find(|l| l["message"] == message)
            .unwrap_or_else(|| panic!("no {message:?} line:\n{}", self.output))
    }

    /// The output with the timestamps taken out (their digits could match a six-digit code by chance); with
    /// `info_and_above`, only the lines at the level every stage logs at (`LogLevel` is `info` by default).
    fn text(&self, info_and_above: bool) -> String {
        let mut out = Vec::new();
        for l in self.output.lines() {
            let Some(Ok(Value::Object(mut line))) = l.find("{\"").map(|i| serde_json::from_str::<Value>(&l[i..]))
            else {
                if !info_and_above {
                    out.push(l.to_owned());
                }
                continue;
            };
            let level = line.get("level").and_then(Value::as_str).unwrap_or("INFO");
            if info_and_above && matches!(level, "DEBUG" | "TRACE") {
                continue;
            }
            line.remove("timestamp");
            if let Some(aws) = line.get_mut("_aws").and_then(Value::as_object_mut) {
                aws.remove("Timestamp");
            }
            out.push(Value::Object(line).to_string());
        }
        out.join("\n")
    }

    /// Panics if any secret of the journey is anywhere in the output. User ids are looked for in the lines at
    /// `info` and above only: below that, the AWS SDK's own DEBUG and TRACE lines name the S3 object keys it
    /// sends, and those contain the user id (never a token, key or signature: those are looked for everywhere).
    fn assert_no_secrets(&self) {
        let lines = self.lines();
        assert!(lines.len() >= 2, "too few lines to prove anything:\n{}", self.output);
        for line in &lines {
            assert!(line["level"].is_string() || line["_aws"].is_object(), "not a deployed log line: {line}");
        }
        let (everything, info_and_above) = (self.text(false), self.text(true));
        for (what, secret) in &self.secrets {
            assert!(secret.len() >= 6, "the {what} is too short to look for: {secret:?}");
            let text = if what.contains("user id") { &info_and_above } else { &everything };
            let found = if secret.bytes().all(|b| b.is_ascii_digit()) {
                // A number (a code, a phone number) leaks as itself, not inside a longer number.
                text.split(|c: char| !c.is_ascii_digit()).any(|run| run == secret)
            } else {
                text.contains(secret.as_str())
            };
            assert!(!found, "the {what} reached the logs:\n{}", self.output);
        }
    }
}

fn secret(what: &str, value: &str) -> (String, String) {
    (what.to_owned(), value.to_owned())
}

/// The value of the query parameter `name` of `url` (a presigned URL's signature).
fn query_value(url: &str, name: &str) -> String {
    let url = url::Url::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"));
    let value = url.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned());
    value.unwrap_or_else(|| panic!("{url} has no {name}"))
}

/// The seeded catalogue, over the harness's store.
async fn seed(h: &Harness) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../infra/catalogue/catalogue.yaml");
    facemake::services::catalogue::seed_catalogue(h.deps.store.as_ref(), &path).await.unwrap();
}

/// A real JPEG.
fn photo() -> Vec<u8> {
    let img = image::RgbImage::from_fn(64, 48, |x, y| image::Rgb([(x * 4) as u8, (y * 5) as u8, 128]));
    let mut bytes = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Jpeg).unwrap();
    bytes
}

#[tokio::test]
async fn a_sign_in_journey_logs_no_secrets() {
    let Some(logged) = logged("a_sign_in_journey_logs_no_secrets", || async {
        let h = Harness::in_memory();
        let phone = PhoneNumber::parse("+14155550199", None).unwrap();
        let send = h.deps.send_code();
        send.send(&phone, Some("198.51.100.7")).await.unwrap();
        let _ = send.send(&phone, Some("198.51.100.7")).await; // cooldown refusal
        let code = h.last_code(phone.e164()).unwrap();
        let wrong = if code == "000000" { "111111" } else { "000000" };
        let auth = h.deps.sign_in();
        let _ = auth.verify(&phone, &OtpCode::parse(wrong).unwrap(), None).await;
        let session = auth.verify(&phone, &OtpCode::parse(&code).unwrap(), None).await.unwrap();
        let rotated = auth.refresh(&session.refresh_token).await.unwrap();
        let _ = auth.refresh(&session.refresh_token).await; // reuse: family revoked, logged as a warning
        auth.logout(&session.user.id, Some(&rotated.refresh_token), true, std::future::ready(Ok(false))).await.unwrap();
        h.outbox.set_failing(true);
        h.clock.advance(61);
        let _ = send.send(&phone, None).await; // delivery failure path
        vec![
            secret("code", &code),
            secret("full phone number", "4155550199"),
            secret("access token", &session.access_token),
            secret("refresh token", &session.refresh_token),
            secret("rotated refresh token", &rotated.refresh_token),
            secret("master key", std::str::from_utf8(TEST_MASTER_KEY).unwrap()),
        ]
    })
    .await
    else {
        return;
    };
    logged.assert_no_secrets();
    assert!(
        logged.output.contains("sign-in code sent") && logged.output.contains("refresh token reused"),
        "the journey was logged:\n{}",
        logged.output
    );
    assert_eq!(logged.line("sign-in code sent")["phone"], "+1••••••0199", "numbers appear masked");
}

#[tokio::test]
async fn purchases_and_notifications_log_no_signed_data() {
    use appstore_test_chain::{notification, TestChain, Transaction};
    use testkit::{credits_config, BUNDLE_ID, PRODUCT_10};

    let Some(logged) = logged("purchases_and_notifications_log_no_signed_data", || async {
        let chain = TestChain::generate().unwrap();
        let mut h = Harness::in_memory();
        h.deps.credits = credits_config(vec![chain.root_der().to_vec()]);
        let credits = h.deps.credits_service().unwrap();
        let user = h.signed_in("+14155550198").await.user.id;
        let tx = || Transaction::consumable("3000000000000001", PRODUCT_10, BUNDLE_ID, "Sandbox");
        let signed = chain.sign(&tx().payload()).unwrap();
        credits.purchase(&user, &signed, std::future::ready(Ok(false))).await.unwrap();
        let _ = credits.purchase(&user, "forged.payload.signature", std::future::ready(Ok(false))).await;
        let info = chain.sign(&tx().payload()).unwrap();
        let refund = chain
            .sign(&notification("REFUND", "c0ffee00-0000-4000-8000-000000000001", BUNDLE_ID, "Sandbox", Some(&info)))
            .unwrap();
        credits.notification(&refund).await.unwrap();
        // Any signature segment (the part only the signer could make) must not be in the logs.
        let signature = |jws: &str| jws.rsplit('.').next().unwrap().to_owned();
        vec![
            secret("signed transaction", &signature(&signed)),
            secret("transaction info", &signature(&info)),
            secret("signed payload", &signature(&refund)),
            secret("user id", user.as_str()),
            secret("user ref", &facemake::telemetry::user_ref(&user)),
        ]
    })
    .await
    else {
        return;
    };
    // The user reference is the one value here that must appear: it is how the refund names its user.
    let (refs, secrets): (Secrets, Secrets) = logged.secrets.iter().cloned().partition(|(what, _)| what == "user ref");
    let line = logged.line("app store notification");
    assert_eq!(line["user"], refs[0].1.as_str(), "the refund names its user by reference");
    Logged { output: logged.output, secrets }.assert_no_secrets();
}

const OPENAI_KEY: &str = "sk-test-LOGS-openai-0123456789";
const REPLICATE_TOKEN: &str = "r8_test-LOGS-replicate-0123456789";

/// The images bucket on moto (a fresh bucket).
async fn moto_bucket() -> facemake::adapters::objects::S3Objects {
    let (client, name) = testkit::moto_bucket().await;
    facemake::adapters::objects::S3Objects::new(client, name)
}

/// The upload → start → render → read journey of `template`, on the images bucket and providers of `h`:
/// returns the presigned URLs it was handed (upload and, when it succeeded, output) and the job's result.
async fn generate(
    h: &Harness,
    generations: &facemake::services::generation::Generations,
    worker: &facemake::services::generation::Worker,
    user: &facemake::domain::UserId,
    template: &str,
) -> (Vec<String>, JobResult) {
    let bytes = photo();
    let upload = generations.create_upload(user, "image/jpeg", bytes.len() as u64).await.unwrap();
    let mut put = reqwest::Client::new().put(&upload.presigned.url).body(bytes.clone());
    for (name, value) in &upload.presigned.headers {
        put = put.header(name, value);
    }
    match put.send().await {
        // The memory bucket's URLs point at a local API that is not running here: store it as that API would.
        Err(_) => h.objects.put(&object_keys::upload(user, &upload.upload_id), bytes, "image/jpeg").await.unwrap(),
        Ok(response) => assert!(response.status().is_success(), "{}", response.text().await.unwrap()),
    }
    let key = format!("key-{template}");
    let template = TemplateId::parse(template).unwrap();
    let source = facemake::domain::GenerationSource::Upload(upload.upload_id.clone());
    let started = generations.start(user, &key, &template, &source, std::future::ready(Ok(false))).await.unwrap();
    let job = facemake::ports::JobRef { user_id: user.clone(), generation_id: started.generation.id.clone() };
    let result = worker.process(&job).await.unwrap();
    let mut urls = vec![upload.presigned.url];
    let g = generations.get(user, &started.generation.id).await.unwrap().unwrap();
    if let Some(url) = generations.output_url(&g).await.unwrap() {
        let download = reqwest::get(&url).await;
        if let Ok(response) = download {
            assert_eq!(response.status(), 200, "{url}");
        }
        urls.push(url);
    }
    generations.page(user, 10, None).await.unwrap();
    (urls, result)
}

#[tokio::test]
async fn a_generation_journey_logs_no_keys_tokens_or_url_signatures() {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    let Some(logged) = logged("a_generation_journey_logs_no_keys_tokens_or_url_signatures", || async {
        // OpenAI renders; Replicate refuses the photo, with an error that quotes the token it was sent.
        let server = MockServer::start().await;
        let mut png = Vec::new();
        image::RgbImage::from_pixel(16, 16, image::Rgb([200, 10, 10]))
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD.encode(&png);
        Mock::given(method("POST"))
            .and(path("/v1/images/edits"))
            .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({"data": [{"b64_json": b64}]})))
            .mount(&server)
            .await;
        let failed = serde_json::json!({
            "id": "p-logs", "status": "failed", "output": null,
            "error": format!("NSFW content detected (request authorised with {REPLICATE_TOKEN})."),
            "urls": {"get": format!("{}/v1/predictions/p-logs", server.uri())},
        });
        Mock::given(method("POST")).respond_with(ResponseTemplate::new(201).set_body_json(failed)).mount(&server).await;
        let credentials = Arc::new(facemake::adapters::providers::ProviderCredentials::fixed(
            facemake::adapters::providers::ProviderKeys {
                openai_api_key: Some(secrecy::SecretString::from(OPENAI_KEY)),
                replicate_api_token: Some(secrecy::SecretString::from(REPLICATE_TOKEN)),
            },
        ));
        let providers = Providers {
            openai: Arc::new(facemake::adapters::providers::openai::OpenAiImages::new(
                server.uri(),
                credentials.clone(),
            )),
            replicate: Arc::new(
                facemake::adapters::providers::replicate::ReplicatePredictions::new(server.uri(), credentials)
                    .with_poll_interval(Duration::from_millis(10))
                    .with_output_hosts(
                        facemake::adapters::providers::hosts::DownloadHosts::parse(&server.uri()).unwrap(),
                    ),
            ),
        };

        let mut h = Harness::in_memory();
        seed(&h).await;
        h.deps.media = Media::Fixed {
            objects: Arc::new(moto_bucket().await),
            providers,
            dispatcher: Arc::new(TableStream),
            pushes: Arc::new(facemake::adapters::memory::MemoryPushes::new()),
        };
        // Metrics as deployed: Embedded Metric Format lines on stdout, captured with the logs.
        h.deps.metrics = Arc::new(facemake::metrics::Emf::for_stage("logs"));
        let session = h.signed_in("+14155550196").await;
        let user = session.user.id.clone();
        h.deps.store.adjust(&user, 10, "logs test", h.clock.now()).await.unwrap();
        let generations = h.deps.generations(Arc::new(h.deps.catalogue_service()));
        let mut worker = h.deps.worker();
        worker.retry =
            RetryPolicy { max_attempts: 2, first_delay: Duration::from_millis(5), budget: Duration::from_secs(20) };

        // neon-noir renders with OpenAI (success); golden-hour with Replicate (refused, refunded).
        let (mut urls, result) = generate(&h, &generations, &worker, &user, "neon-noir").await;
        assert!(matches!(result, JobResult::Succeeded { .. }), "{result:?}");
        assert_eq!(urls.len(), 2, "an upload URL and an output URL");
        let (more, result) = generate(&h, &generations, &worker, &user, "golden-hour").await;
        assert!(matches!(result, JobResult::Failed { .. }), "{result:?}");
        urls.extend(more);
        // Replicate fetches the photo by URL: the presigned URL of the prepared photo went to it.
        let sent: Vec<Value> = server
            .received_requests()
            .await
            .unwrap()
            .iter()
            .filter(|r| r.url.path().ends_with("/predictions"))
            .map(|r| serde_json::from_slice(&r.body).unwrap())
            .collect();
        let photo_url = sent[0]["input"]["input_image"].as_str().unwrap_or_else(|| panic!("{sent:?}")).to_owned();
        urls.push(photo_url);

        let mut secrets = vec![
            secret("code", "424242"),
            secret("full phone number", "4155550196"),
            secret("access token", &session.access_token),
            secret("refresh token", &session.refresh_token),
            secret("OpenAI key", OPENAI_KEY),
            secret("Replicate token", REPLICATE_TOKEN),
            secret("master key", std::str::from_utf8(TEST_MASTER_KEY).unwrap()),
            secret("user id", user.as_str()),
        ];
        for url in &urls {
            secrets.push(secret(&format!("X-Amz-Signature of {url}"), &query_value(url, "X-Amz-Signature")));
        }
        secrets
    })
    .await
    else {
        return;
    };
    logged.assert_no_secrets();
    for message in ["job claimed", "generation succeeded", "provider refused", "generation failed; refunded"] {
        logged.line(message);
    }
    let emf = logged.lines().into_iter().filter(|l| l["_aws"].is_object()).count();
    assert!(emf >= 4, "the metrics were captured too: {emf} EMF lines");
    let refused = logged.line("provider refused");
    assert!(refused["detail"].as_str().is_some_and(|d| d.contains("[redacted]")), "{refused}");
    let signatures = logged.secrets.iter().filter(|(what, _)| what.starts_with("X-Amz-Signature")).count();
    assert_eq!(signatures, 4, "upload ×2, output, the photo Replicate fetched");
}

#[tokio::test]
async fn an_account_deletion_logs_no_secrets() {
    use facemake::http::{no_content, AuthGuard, PathParams, Request, Router};
    use testkit::{event, with_bearer};

    let Some(logged) = logged("an_account_deletion_logs_no_secrets", || async {
        // The local bucket (the local API's), whose URLs are signed with `signature=`.
        let h = Harness::in_memory();
        seed(&h).await;
        let session = h.signed_in("+14155550195").await;
        let user = session.user.id.clone();
        let generations = h.deps.generations(Arc::new(h.deps.catalogue_service()));
        let (urls, result) = generate(&h, &generations, &h.deps.worker(), &user, "neon-noir").await;
        assert!(matches!(result, JobResult::Succeeded { .. }), "{result:?}");
        h.deps.catalogue_service().add_favorite(&user, &TemplateId::parse("pop-art").unwrap()).await.unwrap();
        h.objects.put(&object_keys::upload(&user, &UploadId::new()), photo(), "image/jpeg").await.unwrap();

        // DELETE /v1/me as the account function serves it: the token's user, then the deletion.
        struct State {
            guard: AuthGuard,
            account: facemake::services::account::Account,
        }
        let state = Arc::new(State { guard: h.deps.auth_guard(), account: h.deps.account() });
        let router = Router::new().route(
            http::Method::DELETE,
            "/v1/me",
            state,
            |state: Arc<State>, req: Request, _: PathParams| async move {
                let user = state.guard.token_user(&req).await?;
                state.account.delete(&user).await?;
                Ok(no_content())
            },
        );
        let response = router.handle(with_bearer(event("delete-me.json"), &session.access_token)).await;
        assert_eq!(response.status(), 204);
        // Its token is refused afterwards, and a re-run of the finished deletion changes nothing.
        let again = router.handle(with_bearer(event("delete-me.json"), &session.access_token)).await;
        assert!(matches!(again.status().as_u16(), 204 | 401), "{}", again.status());
        assert!(h.objects.keys().is_empty(), "{:?}", h.objects.keys());

        let mut secrets = vec![
            secret("code", "424242"),
            secret("full phone number", "4155550195"),
            secret("access token", &session.access_token),
            secret("refresh token", &session.refresh_token),
            secret("user id", user.as_str()),
            secret("anonymised user id", user.anonymised().as_str()),
        ];
        for url in &urls {
            secrets.push(secret(&format!("signature of {url}"), &query_value(url, "signature")));
        }
        secrets
    })
    .await
    else {
        return;
    };
    logged.assert_no_secrets();
    let request = logged.line("request");
    assert_eq!((&request["route"], &request["status"]), (&Value::from("/v1/me"), &Value::from(204)), "{request}");
    assert!(request["user"].as_str().is_some_and(|u| u.starts_with("u_")), "{request}");
    assert!(logged.line("account deleted")["objects"].as_u64().is_some_and(|n| n >= 3));
}

#[tokio::test]
async fn request_lines_carry_route_status_latency_and_a_user_reference_not_the_id() {
    use facemake::http::{json, AuthGuard, PathParams, Request, Router};
    use testkit::{event, with_bearer};

    let test = "request_lines_carry_route_status_latency_and_a_user_reference_not_the_id";
    let Some(logged) = logged(test, || async {
        let h = Harness::in_memory();
        let session = h.signed_in("+14155550197").await;
        let guard = std::sync::Arc::new(h.deps.auth_guard());
        let router = Router::new().route(
            http::Method::GET,
            "/v1/me",
            guard,
            |guard: std::sync::Arc<AuthGuard>, req: Request, _: PathParams| async move {
                guard.user(&req).await?;
                Ok(json(http::StatusCode::OK, &serde_json::json!({})))
            },
        );
        let response = router.handle(with_bearer(event("get-me.json"), &session.access_token)).await;
        assert_eq!(response.status(), 200);
        vec![
            secret("user id", session.user.id.as_str()),
            secret("user ref", &facemake::telemetry::user_ref(&session.user.id)),
        ]
    })
    .await
    else {
        return;
    };
    // The deployed layer flattens the fields into the line (what Logs Insights queries by name).
    let line = logged.line("request");
    assert_eq!(line["route"], "/v1/me");
    assert_eq!(line["status"], 200);
    assert!(line["latency_ms"].as_f64().is_some());
    assert!(line["request_id"].as_str().is_some_and(|r| !r.is_empty()));
    assert_eq!(line["user"], logged.secrets[1].1.as_str());
    assert!(!logged.output.contains(&logged.secrets[0].1), "the user id reached the logs:\n{}", logged.output);
}
