//! What one generation costs in AWS terms, the image provider excluded, for the webhook design (the worker
//! hands the render to Replicate and returns; Replicate's signed callback finishes it) and for the old
//! polling design (the worker waits for the render inside its invocation; the app polls the job).
//!
//!   cost --jobs 20 [--render-seconds 45] [--poll-seconds 2]
//!
//! Each function of template.yaml runs as deployed (`Deps::deployed_with_endpoints`, its own container) against
//! DynamoDB Local and moto through a counting proxy (`bench::proxy`), and one generation is played end to end:
//! the app's `POST /v1/uploads`, its presigned PUT of a 12 MP photo, `POST /v1/generations`, the worker's stream
//! record, Replicate's fetch of the prepared photo and its signed callback (a wiremock Replicate), the app's
//! `GET /v1/generations/{id}` after the push and its presigned download of the output. Every AWS call is counted
//! per step; DynamoDB units are computed from the request bodies and the sizes of the items they touch (the
//! job's record read back around each step, other items at the end); each handler is timed on a warm container. The old design runs the same job without a
//! webhook URL against a Replicate that answers the create with the finished prediction (`Prefer: wait`), so
//! its worker stores the output itself; the render time it would wait (`--render-seconds`) and the app's polls
//! (one measured poll × render time / poll interval) are added by the model. The report is markdown on stdout
//! (the functions' EMF metric lines go there too, and start with `{`).
//!
//! Needs FACEMAKE_TEST_DYNAMODB_ENDPOINT and FACEMAKE_TEST_S3_ENDPOINT, as `infra/scripts/bench.sh` sets them.

use std::collections::{BTreeMap, HashMap};
use std::error::Error;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bench::proxy::{Call, CallLog, CountingProxy};
use bench::{api_request, median, quantile, LoopbackStage};
use clap::Parser;
use facemake::config::Config;
use facemake::domain::{DeviceToken, GenerationStatus, LedgerEntry, LedgerKind, PhoneNumber, PushEnvironment, UserId};
use facemake::http::Router;
use facemake::ports::{Clock, NewUser};
use facemake::services::generation::Worker;
use facemake::wiring::Deps;
use http::Method;
use lambda_http::{Body, Response};
use serde_json::{json, Value};
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, MockServer, Respond, ResponseTemplate};

type Result<T> = std::result::Result<T, Box<dyn Error>>;

const TEMPLATE_YAML: &str = include_str!("../../../../template.yaml");
/// A Replicate template of the catalogue (black-forest-labs/flux-kontext-pro).
const TEMPLATE: &str = "golden-hour";
const WEBHOOK_URL: &str = "https://api.stage.test/v1/webhooks/replicate";

/// Published on-demand prices, us-east-1, arm64, read 2026-12-03 (sources in docs/benchmarks.md).
mod price {
    pub const LAMBDA_GB_SECOND: f64 = 0.000_013_333_4;
    pub const LAMBDA_REQUEST: f64 = 0.20 / 1e6;
    pub const HTTP_API_REQUEST: f64 = 1.00 / 1e6;
    pub const DYNAMODB_WRU: f64 = 0.625 / 1e6;
    pub const DYNAMODB_RRU: f64 = 0.125 / 1e6;
    pub const S3_PUT: f64 = 0.005 / 1e3;
    pub const S3_GET: f64 = 0.0004 / 1e3;
    pub const SECRETS_CALL: f64 = 0.05 / 1e4;
}

/// The account's default concurrent executions per Region.
const ACCOUNT_CONCURRENCY: f64 = 1000.0;

#[derive(Parser)]
struct Args {
    /// Generations to measure per design (after one untimed generation that warms the containers).
    #[arg(long, default_value_t = 20)]
    jobs: usize,
    /// The render time the old design's worker waits for inside its invocation (the issue says 30–60 s).
    #[arg(long, default_value_t = 45.0)]
    render_seconds: f64,
    /// How often the old design's app polls `GET /v1/generations/{id}` while it waits.
    #[arg(long, default_value_t = 2.0)]
    poll_seconds: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Design {
    Webhook,
    Polling,
}

impl Design {
    fn name(self) -> &'static str {
        match self {
            Design::Webhook => "webhook (new)",
            Design::Polling => "polling (old)",
        }
    }
}

/// One step of a generation, in the order they happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Step {
    Upload,
    Put,
    Start,
    Poll,
    Worker,
    ReplicateFetch,
    Webhook,
    Get,
    Download,
}

impl Step {
    /// The function (template.yaml's binary) that runs it; `None` for the app's and Replicate's own requests.
    fn function(self) -> Option<&'static str> {
        match self {
            Step::Upload | Step::Start | Step::Poll | Step::Get => Some("generate"),
            Step::Worker => Some("generation-worker"),
            Step::Webhook => Some("replicate-webhooks"),
            Step::Put | Step::ReplicateFetch | Step::Download => None,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Step::Upload => "POST /v1/uploads",
            Step::Put => "app: presigned PUT of the photo",
            Step::Start => "POST /v1/generations",
            Step::Poll => "GET /v1/generations/{id} (a poll, job in flight)",
            Step::Worker => "stream record (one job)",
            Step::ReplicateFetch => "Replicate: presigned GET of the prepared photo",
            Step::Webhook => "POST /v1/webhooks/replicate (signed callback)",
            Step::Get => "GET /v1/generations/{id} (finished)",
            Step::Download => "app: presigned GET of the output",
        }
    }

    /// Whether the step is an API Gateway request.
    fn api(self) -> bool {
        matches!(self, Step::Upload | Step::Start | Step::Poll | Step::Get | Step::Webhook)
    }
}

/// What one step of one measured generation did.
struct Sample {
    design: Design,
    step: Step,
    ms: f64,
    calls: Vec<Call>,
    /// The job's record around the step, once it exists.
    job: Option<JobItem>,
}

/// A job's record in the generations table: its key and its size for the step's writes (the larger of its
/// sizes before and after the step, read back from DynamoDB Local; an update is billed on the larger of the two).
#[derive(Debug, Clone)]
struct JobItem {
    pk: String,
    sk: String,
    size: usize,
}

/// A Replicate prediction create: a new id each time, answered `starting` (the webhook design) or, as
/// `Prefer: wait` lets a fast render do, already `succeeded` with its output (the polling design).
struct Create {
    base: String,
    finished: bool,
    next: AtomicU64,
}

impl Respond for Create {
    fn respond(&self, _: &wiremock::Request) -> ResponseTemplate {
        let id = format!("bench{:06}", self.next.fetch_add(1, Ordering::Relaxed));
        let urls = json!({
            "get": format!("{}/v1/predictions/{id}", self.base),
            "cancel": format!("{}/v1/predictions/{id}/cancel", self.base),
        });
        let body = if self.finished {
            json!({"id": id, "status": "succeeded", "error": null, "output": format!("{}/files/{id}.jpg", self.base), "urls": urls})
        } else {
            json!({"id": id, "status": "starting", "error": null, "output": null, "urls": urls})
        };
        ResponseTemplate::new(201).set_body_json(body)
    }
}

/// A Replicate stand-in: prediction creates and the output files.
async fn replicate(output: &[u8], finished: bool) -> MockServer {
    let server = MockServer::start().await;
    let create = Create { base: server.uri(), finished, next: AtomicU64::new(1) };
    Mock::given(method("POST"))
        .and(path_regex("^/v1/models/.+/predictions$"))
        .respond_with(create)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path_regex("^/files/"))
        .respond_with(ResponseTemplate::new(200).insert_header("content-type", "image/jpeg").set_body_bytes(output))
        .mount(&server)
        .await;
    server
}

/// The functions of one design, each in its own container.
struct Functions {
    design: Design,
    generate: Router,
    webhooks: Router,
    worker: Arc<Worker>,
    replicate: MockServer,
}

struct Rig {
    stage: LoopbackStage,
    log: CallLog,
    _proxies: (CountingProxy, CountingProxy),
    apns: MockServer,
    http: reqwest::Client,
    /// Direct to the stand-ins (no proxy): setup and checks, never counted.
    setup: Deps,
    user: UserId,
    token: String,
    photo: Vec<u8>,
    output: Vec<u8>,
    dynamodb_proxy: String,
    moto_proxy: String,
    /// DynamoDB Local without the proxy: item sizes.
    direct: aws_sdk_dynamodb::Client,
    /// Bytes of the last prepared photo Replicate fetched (data out to the internet).
    fetched: std::sync::atomic::AtomicUsize,
}

/// A handler's error (`lambda_http::Error` is `Send + Sync`).
fn function_error(e: lambda_http::Error) -> Box<dyn Error> {
    e
}

fn status_error(what: &str, response: &Response<Body>) -> Box<dyn Error> {
    format!("{what}: {} {}", response.status(), testkit::body_json(response)).into()
}

impl Rig {
    async fn new(jobs: usize) -> Result<Self> {
        let stage = LoopbackStage::from_test_env(&format!("cost{}-", std::process::id())).await?;
        let log = CallLog::default();
        let dynamo = CountingProxy::start(&stage.dynamodb_endpoint, Duration::ZERO, log.clone()).await?;
        let moto = CountingProxy::start(&stage.moto_endpoint, Duration::ZERO, log.clone()).await?;
        let apns = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path_regex("^/3/device/"))
            .respond_with(ResponseTemplate::new(200))
            .mount(&apns)
            .await;

        let env = Self::env(&stage, &apns, &apns.uri(), Design::Polling);
        let config = Config::from(&env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect::<HashMap<_, _>>())?;
        let moto_sdk = bench::sdk(&stage.moto_endpoint);
        let setup = Deps::deployed_with_endpoints(&config, &moto_sdk, &stage.dynamodb_endpoint, &stage.moto_endpoint);

        // One user with credits for every generation, and one registered device (the push).
        let user = UserId::new();
        let now = setup.clock.now();
        let credits = 2 * (jobs as u64 + 2);
        let grant = LedgerEntry::new(LedgerKind::Grant, credits as i64, credits, "bench", now);
        let phone = PhoneNumber::parse("+14155550998", None)?;
        let new_user =
            NewUser { id: user.clone(), phone, created_at: now, starter_grant: Some(grant), number_key: None };
        setup.store.create_user(&new_user).await?;
        let device = DeviceToken::parse(&"a1".repeat(32))?;
        setup.store.register_device(&user, &device, PushEnvironment::parse("sandbox")?, now).await?;
        let keys = setup.keys.keys().await?;
        let token = facemake::tokens::AccessTokens::for_policy(&setup.policy)
            .issue(&keys, &user, now)
            .map_err(|e| format!("issuing the access token: {e}"))?;

        // A phone photo, and a stand-in for flux-kontext-pro's 3:4 output (about a megapixel, JPEG).
        let photo = testkit::camera_photo(4000, 3000);
        let output = testkit::camera_photo(880, 1184);
        let http = reqwest::Client::builder().no_proxy().build()?;
        let (dynamodb_proxy, moto_proxy) = (dynamo.url.clone(), moto.url.clone());
        let direct = aws_sdk_dynamodb::Client::new(&bench::sdk(&stage.dynamodb_endpoint));
        Ok(Self {
            stage,
            log,
            _proxies: (dynamo, moto),
            apns,
            http,
            setup,
            user,
            token,
            photo,
            output,
            dynamodb_proxy,
            moto_proxy,
            direct,
            fetched: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    /// The stage's environment for every function of `design`, with Replicate at `replicate`.
    fn env(stage: &LoopbackStage, apns: &MockServer, replicate: &str, design: Design) -> BTreeMap<String, String> {
        let mut env = stage.function_env(replicate);
        env.insert("APNS_PRODUCTION_URL".into(), apns.uri());
        env.insert("APNS_SANDBOX_URL".into(), apns.uri());
        env.insert("MAX_GENERATIONS_IN_FLIGHT".into(), "1000".into());
        if design == Design::Webhook {
            env.insert("REPLICATE_WEBHOOK_URL".into(), WEBHOOK_URL.into());
        }
        env
    }

    /// Deployed composition through the counting proxies: one per function, so each has its own caches.
    fn deps(&self, env: &BTreeMap<String, String>) -> Result<Deps> {
        let env: HashMap<&str, &str> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let config = Config::from(&env)?;
        let sdk = bench::sdk(&self.moto_proxy);
        Ok(Deps::deployed_with_endpoints(&config, &sdk, &self.dynamodb_proxy, &self.moto_proxy))
    }

    async fn functions(&self, design: Design) -> Result<Functions> {
        let replicate = replicate(&self.output, design == Design::Polling).await;
        let env = Self::env(&self.stage, &self.apns, &replicate.uri(), design);
        Ok(Functions {
            design,
            generate: generate::router(Arc::new(generate::State::new(&self.deps(&env)?))),
            webhooks: replicate_webhooks::router(Arc::new(replicate_webhooks::State::new(&self.deps(&env)?))),
            worker: Arc::new(self.deps(&env)?.worker()),
            replicate,
        })
    }

    /// The size of a generations-table item now (0 when it is not there), read directly (not counted).
    async fn job_size(&self, pk: &str, sk: &str) -> Result<usize> {
        use aws_sdk_dynamodb::types::AttributeValue as A;
        let got = self
            .direct
            .get_item()
            .table_name(&self.stage.tables.generations)
            .key("pk", A::S(pk.to_owned()))
            .key("sk", A::S(sk.to_owned()))
            .consistent_read(true)
            .send()
            .await?;
        Ok(got.item().map_or(0, |item| item.iter().map(|(k, v)| k.len() + sdk_value_size(v)).sum()))
    }

    /// Runs `f`, timing it and collecting the AWS calls it made.
    async fn measure<T>(&self, f: impl std::future::Future<Output = T>) -> (T, f64, Vec<Call>) {
        self.log.take();
        let started = Instant::now();
        let out = f.await;
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        (out, ms, self.log.take())
    }

    async fn api(
        &self,
        router: &Router,
        method: Method,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> (Response<Body>, f64, Vec<Call>) {
        let request = api_request(method, path, body, Some(&self.token), headers);
        self.measure(router.handle(request)).await
    }

    /// One generation end to end; its steps go to `out` when `record`.
    async fn generation(&self, f: &Functions, i: usize, record: bool, out: &mut Vec<Sample>) -> Result<()> {
        let mut push = |step: Step, ms: f64, calls: Vec<Call>, job: Option<JobItem>| {
            if record {
                out.push(Sample { design: f.design, step, ms, calls, job });
            }
        };
        // The app asks for an upload slot and PUTs the photo to it.
        let body = json!({"contentType": "image/jpeg", "contentLength": self.photo.len()});
        let (slot, ms, calls) = self.api(&f.generate, Method::POST, "/v1/uploads", Some(body), &[]).await;
        if slot.status() != 201 {
            return Err(status_error("POST /v1/uploads", &slot));
        }
        push(Step::Upload, ms, calls, None);
        let slot = testkit::body_json(&slot);
        let url = slot["uploadUrl"].as_str().ok_or("no uploadUrl")?;
        let mut put = self.http.put(url).body(self.photo.clone());
        for (name, value) in slot["headers"].as_object().ok_or("no headers")? {
            put = put.header(name.as_str(), value.as_str().unwrap_or_default());
        }
        let (put, ms, calls) = self.measure(put.send()).await;
        if !put?.status().is_success() {
            return Err("the presigned PUT failed".into());
        }
        push(Step::Put, ms, calls, None);

        // The app starts the generation.
        let upload = slot["uploadId"].as_str().ok_or("no uploadId")?;
        let key = format!("cost-{:?}-{i}", f.design);
        let body = json!({"templateId": TEMPLATE, "uploadId": upload});
        let (started, ms, calls) =
            self.api(&f.generate, Method::POST, "/v1/generations", Some(body), &[("idempotency-key", &key)]).await;
        if started.status() != 202 {
            return Err(status_error("POST /v1/generations", &started));
        }
        let id = testkit::body_json(&started)["generation"]["id"].as_str().ok_or("no generation id")?.to_owned();
        let (pk, sk) = (format!("USER#{}", self.user), format!("GEN#{id}"));
        let mut size = self.job_size(&pk, &sk).await?;
        push(Step::Start, ms, calls, Some(JobItem { pk: pk.clone(), sk: sk.clone(), size }));
        // The record's size for a step: the larger of its sizes before and after it.
        let around = async |size: &mut usize| -> Result<Option<JobItem>> {
            let after = self.job_size(&pk, &sk).await?;
            let item = JobItem { pk: pk.clone(), sk: sk.clone(), size: (*size).max(after) };
            *size = after;
            Ok(Some(item))
        };
        let get_path = format!("/v1/generations/{id}");

        if f.design == Design::Polling {
            // One of the app's polls while the job is in flight (the model multiplies it).
            let (polled, ms, calls) = self.api(&f.generate, Method::GET, &get_path, None, &[]).await;
            if polled.status() != 200 {
                return Err(status_error("a poll", &polled));
            }
            push(Step::Poll, ms, calls, around(&mut size).await?);
        }

        // The stream record of the insert, as the event source mapping delivers it.
        let record = json!({"Records": [{
            "eventID": format!("cost-{:?}-{i}", f.design),
            "eventName": "INSERT",
            "eventSource": "aws:dynamodb",
            "awsRegion": "us-east-1",
            "dynamodb": {
                "Keys": {"pk": {"S": format!("USER#{}", self.user)}, "sk": {"S": format!("GEN#{id}")}},
                "SequenceNumber": format!("{}", 100 + i),
                "SizeBytes": 100,
            },
        }]});
        let event = serde_json::from_value(record)?;
        let (answer, ms, calls) = self.measure(generation_worker::handle(f.worker.clone(), event)).await;
        if !answer.map_err(function_error)?.batch_item_failures.is_empty() {
            return Err(format!("the worker reported job {i} for a retry").into());
        }
        push(Step::Worker, ms, calls, around(&mut size).await?);
        let job = self.setup.store.generation(&self.user, &id).await?.ok_or("the job record is gone")?;
        let expected = match f.design {
            Design::Webhook => GenerationStatus::Processing,
            Design::Polling => GenerationStatus::Succeeded,
        };
        if job.status != expected {
            return Err(
                format!("after the worker, job {i} is {} ({:?})", job.status.as_str(), job.failure_reason).into()
            );
        }

        if f.design == Design::Webhook {
            // Replicate fetches the prepared photo by the URL the worker signed, renders, and calls back.
            let prediction = job.prediction.clone().ok_or("no prediction recorded")?;
            let requests = f.replicate.received_requests().await.unwrap_or_default();
            let create = requests
                .iter()
                .rev()
                .filter(|r| r.method.as_str() == "POST")
                .filter_map(|r| serde_json::from_slice::<Value>(&r.body).ok())
                .find(|b| b["webhook"].as_str().is_some_and(|w| w.contains(&id)))
                .ok_or("the worker created no prediction with a webhook")?;
            let input_url = create["input"]
                .as_object()
                .and_then(|i| i.values().find_map(|v| v.as_str().filter(|s| s.starts_with("http"))))
                .ok_or("no photo URL in the prediction's input")?
                .to_owned();
            let (fetched, ms, calls) = self.measure(self.http.get(&input_url).send()).await;
            let fetched = fetched?;
            if !fetched.status().is_success() {
                return Err(format!("Replicate's fetch of the photo: {}", fetched.status()).into());
            }
            self.fetched.store(fetched.bytes().await?.len(), Ordering::Relaxed);
            push(Step::ReplicateFetch, ms, calls, around(&mut size).await?);

            let base = f.replicate.uri();
            let body = json!({
                "id": prediction,
                "model": "black-forest-labs/flux-kontext-pro",
                "version": "hidden",
                "input": create["input"],
                "logs": "",
                "output": format!("{base}/files/{prediction}.jpg"),
                "data_removed": false,
                "error": null,
                "status": "succeeded",
                "created_at": "2026-12-03T10:00:00.000Z",
                "started_at": "2026-12-03T10:00:01.000Z",
                "completed_at": "2026-12-03T10:00:46.000Z",
                "urls": {
                    "get": format!("{base}/v1/predictions/{prediction}"),
                    "cancel": format!("{base}/v1/predictions/{prediction}/cancel"),
                    "stream": format!("{base}/v1/predictions/{prediction}/stream"),
                },
                "metrics": {"predict_time": 45.0, "total_time": 46.0},
            })
            .to_string();
            let now = facemake::ports::SystemClock.now();
            let message = format!("msg_{prediction}");
            let signature = facemake::adapters::webhooks::sign(
                facemake::adapters::webhooks::LOCAL_SIGNING_KEY,
                &message,
                now,
                body.as_bytes(),
            )?;
            let now = now.to_string();
            let headers = [
                ("webhook-id", message.as_str()),
                ("webhook-timestamp", now.as_str()),
                ("webhook-signature", signature.as_str()),
                ("content-type", "application/json"),
            ];
            let path = format!("/v1/webhooks/replicate?job={}.{id}", self.user);
            let mut request = api_request(Method::POST, &path, None, None, &headers);
            *request.body_mut() = Body::Text(body);
            let (answered, ms, calls) = self.measure(f.webhooks.handle(request)).await;
            if answered.status() != 200 {
                return Err(status_error("the callback", &answered));
            }
            push(Step::Webhook, ms, calls, around(&mut size).await?);
        }

        // The app reads the finished job (after the push, or at its last poll) and downloads the output.
        let (done, ms, calls) = self.api(&f.generate, Method::GET, &get_path, None, &[]).await;
        let view = testkit::body_json(&done);
        if done.status() != 200 || view["status"] != "succeeded" {
            return Err(status_error("GET /v1/generations/{id}", &done));
        }
        push(Step::Get, ms, calls, around(&mut size).await?);
        let output_url = view["outputUrl"].as_str().ok_or("no outputUrl")?;
        let (downloaded, ms, calls) = self.measure(self.http.get(output_url).send()).await;
        let downloaded = downloaded?;
        if !downloaded.status().is_success() {
            return Err(format!("the output download: {}", downloaded.status()).into());
        }
        downloaded.bytes().await?;
        push(Step::Download, ms, calls, around(&mut size).await?);
        Ok(())
    }
}

// ---- DynamoDB capacity units --------------------------------------------------------------------------------

/// DynamoDB's size of an attribute value (the item-size rules of the developer guide), SDK form.
fn sdk_value_size(v: &aws_sdk_dynamodb::types::AttributeValue) -> usize {
    use aws_sdk_dynamodb::types::AttributeValue as A;
    match v {
        A::S(s) => s.len(),
        A::N(n) => number_size(n),
        A::B(b) => b.as_ref().len(),
        A::Bool(_) | A::Null(_) => 1,
        A::Ss(items) => items.iter().map(String::len).sum(),
        A::Ns(items) => items.iter().map(|n| number_size(n)).sum(),
        A::Bs(items) => items.iter().map(|b| b.as_ref().len()).sum(),
        A::L(items) => 3 + items.iter().map(|i| 1 + sdk_value_size(i)).sum::<usize>(),
        A::M(map) => 3 + map.iter().map(|(k, i)| 1 + k.len() + sdk_value_size(i)).sum::<usize>(),
        _ => 1,
    }
}

/// About one byte per two significant digits, plus one.
fn number_size(n: &str) -> usize {
    let digits = n.trim_start_matches('-').replace('.', "");
    let significant = digits.trim_start_matches('0').trim_end_matches('0').len().max(1);
    significant.div_ceil(2) + 1
}

/// The same rules over DynamoDB JSON (`{"S": "…"}`), for an item a request carries.
fn json_value_size(v: &Value) -> usize {
    let Some((kind, inner)) = v.as_object().and_then(|m| m.iter().next()) else { return 1 };
    match (kind.as_str(), inner) {
        ("S", Value::String(s)) => s.len(),
        ("N", Value::String(n)) => number_size(n),
        ("B", Value::String(b)) => b.len() * 3 / 4,
        ("L", Value::Array(items)) => 3 + items.iter().map(|i| 1 + json_value_size(i)).sum::<usize>(),
        ("M", Value::Object(map)) => 3 + map.iter().map(|(k, i)| 1 + k.len() + json_value_size(i)).sum::<usize>(),
        ("SS" | "NS" | "BS", Value::Array(items)) => items.iter().map(|i| i.as_str().map_or(1, str::len)).sum(),
        _ => 1,
    }
}

fn json_item_size(item: &Value) -> usize {
    item.as_object().map_or(0, |m| m.iter().map(|(k, v)| k.len() + json_value_size(v)).sum())
}

/// Item sizes by (table, pk, sk), read back from DynamoDB Local after the runs.
#[derive(Default)]
struct Sizes {
    items: HashMap<(String, String, String), usize>,
    /// The largest item each table's requests touched.
    largest: BTreeMap<String, usize>,
}

impl Sizes {
    async fn read(endpoint: &str, tables: &[String]) -> Result<Self> {
        let client = aws_sdk_dynamodb::Client::new(&bench::sdk(endpoint));
        let mut sizes = Sizes::default();
        for table in tables {
            let mut pages = client.scan().table_name(table).into_paginator().items().send();
            while let Some(item) = pages.next().await {
                let item = item?;
                let key = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
                let size = item.iter().map(|(k, v)| k.len() + sdk_value_size(v)).sum();
                sizes.items.insert((table.clone(), key("pk"), key("sk")), size);
            }
        }
        Ok(sizes)
    }

    /// The size of the item `request` (a Put, Update, Delete, ConditionCheck or Get, or a Key) touches: what
    /// a Put carries; the job's record as it was around the step (`job`); any other item's final size (the
    /// ledger, balance and counters, whose sizes hardly change).
    fn of(&mut self, table: &str, request: &Value, job: Option<&JobItem>) -> usize {
        let key = request.get("Key").or_else(|| request.get("Item")).unwrap_or(request);
        let part = |name: &str| key[name]["S"].as_str().unwrap_or_default().to_owned();
        let (pk, sk) = (part("pk"), part("sk"));
        let carried = request.get("Item").map_or(0, json_item_size);
        let size = match job {
            _ if carried > 0 => carried,
            Some(j) if j.pk == pk && j.sk == sk => j.size,
            _ => self.items.get(&(table.to_owned(), pk, sk)).copied().unwrap_or(0),
        };
        let largest = self.largest.entry(table.to_owned()).or_default();
        *largest = (*largest).max(size);
        size
    }
}

fn write_units(size: usize) -> f64 {
    size.div_ceil(1024).max(1) as f64
}

fn read_units(size: usize) -> f64 {
    size.div_ceil(4096).max(1) as f64
}

/// Index writes of a write to the generations table: its sparse `Pending` index (KEYS_ONLY, keys `pending`
/// and `deadline`) gains an entry when a job is put with `pending`, loses it when an update REMOVEs `pending`,
/// and rewrites it when an update SETs one of its keys. One WRU each (a KEYS_ONLY entry is far below 1 KB).
fn pending_index_writes(request: &Value) -> f64 {
    const KEYS: [&str; 2] = ["pending", "deadline"];
    if let Some(item) = request.get("Item") {
        return if item.get("pending").is_some() { 1.0 } else { 0.0 };
    }
    let Some(expression) = request["UpdateExpression"].as_str() else { return 0.0 };
    let names = &request["ExpressionAttributeNames"];
    let resolve = |token: &str| -> String {
        let token = token.trim();
        names.get(token).and_then(Value::as_str).unwrap_or(token).to_owned()
    };
    let mut clauses: Vec<(String, String)> = Vec::new();
    for word in expression.split_whitespace() {
        match word.to_ascii_uppercase().as_str() {
            kw @ ("SET" | "REMOVE" | "ADD" | "DELETE") => clauses.push((kw.to_owned(), String::new())),
            _ => {
                if let Some((_, text)) = clauses.last_mut() {
                    text.push(' ');
                    text.push_str(word);
                }
            }
        }
    }
    let mut writes = 0.0;
    for (kind, text) in &clauses {
        for part in text.split(',') {
            let target = match kind.as_str() {
                "REMOVE" => resolve(part),
                "SET" => match part.split_once('=') {
                    Some((lhs, _)) => resolve(lhs),
                    None => continue,
                },
                _ => continue,
            };
            if KEYS.contains(&target.as_str()) {
                writes += if kind == "REMOVE" { 1.0 } else { 2.0 };
            }
        }
    }
    writes
}

/// What a set of calls used, by the price lists' units.
#[derive(Debug, Default, Clone)]
struct Usage {
    /// "DynamoDB GetItem", "S3 PutObject", ...: calls.
    ops: BTreeMap<String, f64>,
    wru: f64,
    /// Of `wru`: writes to a global secondary index.
    index_wru: f64,
    rru: f64,
    s3_put: f64,
    s3_get: f64,
    /// DeleteObjects (a POST; priced at the PUT rate as an upper bound) and DeleteObject (free).
    s3_multi_delete: f64,
    secrets: f64,
}

impl Usage {
    fn add(&mut self, other: &Usage, times: f64) {
        for (op, n) in &other.ops {
            *self.ops.entry(op.clone()).or_default() += n * times;
        }
        self.wru += other.wru * times;
        self.index_wru += other.index_wru * times;
        self.rru += other.rru * times;
        self.s3_put += other.s3_put * times;
        self.s3_get += other.s3_get * times;
        self.s3_multi_delete += other.s3_multi_delete * times;
        self.secrets += other.secrets * times;
    }

    fn of(calls: &[Call], sizes: &mut Sizes, generations_table: &str, job: Option<&JobItem>) -> Result<Usage> {
        let mut u = Usage::default();
        for call in calls {
            let x = &call.exchange;
            let target = x.target.as_deref().unwrap_or("");
            if target.starts_with("secretsmanager.") {
                u.secrets += 1.0;
                *u.ops.entry(format!("Secrets Manager {}", call.operation)).or_default() += 1.0;
                continue;
            }
            if !target.starts_with("DynamoDB_") {
                let op = call.operation.trim_start_matches("S3 ");
                match op {
                    "GetObject" | "HeadObject" => u.s3_get += 1.0,
                    "DeleteObject" => {}
                    "DeleteObjects" => u.s3_multi_delete += 1.0,
                    _ => u.s3_put += 1.0,
                }
                *u.ops.entry(call.operation.clone()).or_default() += 1.0;
                continue;
            }
            *u.ops.entry(format!("DynamoDB {}", call.operation)).or_default() += 1.0;
            let body: Value = serde_json::from_slice(&x.body)?;
            let table = body["TableName"].as_str().unwrap_or_default().to_owned();
            let consistency = |b: &Value| if b["ConsistentRead"].as_bool() == Some(true) { 1.0 } else { 0.5 };
            match call.operation.as_str() {
                "GetItem" => u.rru += consistency(&body) * read_units(sizes.of(&table, &body, job)),
                // The results here (a user's devices) are far below 4 KB: one unit.
                "Query" | "Scan" => u.rru += consistency(&body),
                "BatchGetItem" => {
                    for (t, spec) in body["RequestItems"].as_object().into_iter().flatten() {
                        for key in spec["Keys"].as_array().into_iter().flatten() {
                            let key = json!({"Key": key});
                            u.rru += consistency(spec) * read_units(sizes.of(t, &key, job));
                        }
                    }
                }
                "TransactGetItems" => {
                    for item in body["TransactItems"].as_array().into_iter().flatten() {
                        let get = &item["Get"];
                        let t = get["TableName"].as_str().unwrap_or_default();
                        u.rru += 2.0 * read_units(sizes.of(t, get, job));
                    }
                }
                "PutItem" | "UpdateItem" | "DeleteItem" => {
                    u.wru += write_units(sizes.of(&table, &body, job));
                    if table == generations_table {
                        let index = pending_index_writes(&body);
                        u.wru += index;
                        u.index_wru += index;
                    }
                }
                "BatchWriteItem" => {
                    for (t, writes) in body["RequestItems"].as_object().into_iter().flatten() {
                        for w in writes.as_array().into_iter().flatten() {
                            let request = w.get("PutRequest").or_else(|| w.get("DeleteRequest")).unwrap_or(w);
                            u.wru += write_units(sizes.of(t, request, job));
                        }
                    }
                }
                "TransactWriteItems" => {
                    for item in body["TransactItems"].as_array().into_iter().flatten() {
                        // Put, Update, Delete or ConditionCheck: each 2 WRU per KB (a check too, as measured).
                        let Some((_, request)) = item.as_object().and_then(|m| m.iter().next()) else { continue };
                        let t = request["TableName"].as_str().unwrap_or_default();
                        u.wru += 2.0 * write_units(sizes.of(t, request, job));
                        if t == generations_table {
                            let index = pending_index_writes(request);
                            u.wru += index;
                            u.index_wru += index;
                        }
                    }
                }
                other => return Err(format!("a DynamoDB {other} this tool does not price").into()),
            }
        }
        Ok(u)
    }
}

// ---- template.yaml ---------------------------------------------------------------------------------------

/// What the cost needs from template.yaml.
struct Template {
    doc: serde_yaml_ng::Value,
}

impl Template {
    fn parse() -> Result<Self> {
        Ok(Self { doc: serde_yaml_ng::from_str(TEMPLATE_YAML)? })
    }

    fn function(&self, binary: &str) -> Result<&serde_yaml_ng::Value> {
        let resources = self.doc["Resources"].as_mapping().ok_or("template.yaml has no Resources")?;
        resources
            .values()
            .find(|r| r["Metadata"]["BuildProperties"]["Binary"].as_str() == Some(binary))
            .ok_or_else(|| format!("template.yaml has no function {binary}").into())
    }

    /// The function's MemorySize, or the Globals' one.
    fn memory_mb(&self, binary: &str) -> Result<f64> {
        let own = self.function(binary)?["Properties"]["MemorySize"].as_u64();
        let memory = own.or_else(|| self.doc["Globals"]["Function"]["MemorySize"].as_u64());
        Ok(memory.ok_or_else(|| format!("no MemorySize for {binary}"))? as f64)
    }

    /// The worker's stream mapping: ParallelizationFactor (concurrent invocations per shard).
    fn parallelization(&self) -> Result<f64> {
        let events = self.function("generation-worker")?["Properties"]["Events"].as_mapping().ok_or("no Events")?;
        let stream = events.values().find(|e| e["Type"].as_str() == Some("DynamoDB")).ok_or("no DynamoDB event")?;
        Ok(stream["Properties"]["ParallelizationFactor"].as_u64().unwrap_or(1) as f64)
    }

    /// The reconciler's schedule, in minutes (`rate(5 minutes)`).
    fn reconciler_minutes(&self) -> Result<f64> {
        let events = self.function("generation-reconciler")?["Properties"]["Events"].as_mapping().ok_or("no Events")?;
        let schedule = events
            .values()
            .find_map(|e| e["Properties"]["Schedule"].as_str())
            .ok_or("the reconciler has no schedule")?;
        let minutes = schedule.trim_start_matches("rate(").split_whitespace().next().unwrap_or_default();
        Ok(minutes.parse::<f64>().map_err(|_| format!("unreadable schedule {schedule}"))?)
    }
}

// ---- the report --------------------------------------------------------------------------------------------

/// One function's invocations of one kind, per generation.
struct Row {
    design: Design,
    step: Step,
    per_generation: f64,
    memory_mb: f64,
    p50: f64,
    p99: f64,
    /// Mean billed duration (each invocation rounded up to 1 ms), the modelled wait included.
    billed_ms: f64,
    note: &'static str,
}

impl Row {
    fn gb_s(&self) -> f64 {
        self.per_generation * self.billed_ms / 1000.0 * self.memory_mb / 1024.0
    }

    fn seconds(&self) -> f64 {
        self.per_generation * self.billed_ms / 1000.0
    }
}

/// A design's totals per generation.
struct Totals {
    invocations: f64,
    gb_s: f64,
    lambda_s: f64,
    worker_s: f64,
    api: f64,
    usage: Usage,
}

impl Totals {
    fn dollars(&self) -> Vec<(&'static str, f64)> {
        let u = &self.usage;
        vec![
            ("Lambda requests", self.invocations * price::LAMBDA_REQUEST),
            ("Lambda duration (GB-s)", self.gb_s * price::LAMBDA_GB_SECOND),
            ("API Gateway HTTP API requests", self.api * price::HTTP_API_REQUEST),
            ("DynamoDB write units", u.wru * price::DYNAMODB_WRU),
            ("DynamoDB read units", u.rru * price::DYNAMODB_RRU),
            ("S3 PUT-class requests", u.s3_put * price::S3_PUT),
            ("S3 DeleteObjects (priced as POST: upper bound)", u.s3_multi_delete * price::S3_PUT),
            ("S3 GET-class requests", u.s3_get * price::S3_GET),
            ("Secrets Manager calls (warm containers)", u.secrets * price::SECRETS_CALL),
        ]
    }

    fn per_thousand(&self) -> f64 {
        self.dollars().iter().map(|(_, d)| d).sum::<f64>() * 1000.0
    }
}

fn billed(ms: &[f64]) -> f64 {
    ms.iter().map(|m| m.ceil()).sum::<f64>() / ms.len().max(1) as f64
}

struct Model {
    render_s: f64,
    poll_s: f64,
}

impl Model {
    /// The old design's polls while the render runs.
    fn polls(&self) -> f64 {
        self.render_s / self.poll_s
    }
}

fn rows(samples: &[Sample], template: &Template, model: &Model) -> Result<Vec<Row>> {
    let mut by: BTreeMap<(Design, Step), Vec<f64>> = BTreeMap::new();
    for s in samples.iter().filter(|s| s.step.function().is_some()) {
        by.entry((s.design, s.step)).or_default().push(s.ms);
    }
    let mut rows = Vec::new();
    for ((design, step), ms) in by {
        let binary = step.function().ok_or("a step without a function")?;
        let (mut per_generation, mut billed_ms, mut note) = (1.0, billed(&ms), "");
        if design == Design::Polling && step == Step::Poll {
            per_generation = model.polls();
            note = "invocations: render time / poll interval";
        }
        if design == Design::Polling && step == Step::Worker {
            billed_ms += model.render_s * 1000.0;
            note = "billed: + the render time it waits";
        }
        rows.push(Row {
            design,
            step,
            per_generation,
            memory_mb: template.memory_mb(binary)?,
            p50: median(&ms),
            p99: quantile(&ms, 0.99).unwrap_or(f64::NAN),
            billed_ms,
            note,
        });
    }
    Ok(rows)
}

/// Per-generation usage of each (design, step): the mean over the measured generations.
fn usage(samples: &[Sample], sizes: &mut Sizes, generations_table: &str) -> Result<BTreeMap<(Design, Step), Usage>> {
    let mut sums: BTreeMap<(Design, Step), (Usage, f64)> = BTreeMap::new();
    for s in samples {
        let u = Usage::of(&s.calls, sizes, generations_table, s.job.as_ref())?;
        let entry = sums.entry((s.design, s.step)).or_default();
        entry.0.add(&u, 1.0);
        entry.1 += 1.0;
    }
    Ok(sums
        .into_iter()
        .map(|(k, (sum, n))| {
            let mut mean = Usage::default();
            mean.add(&sum, 1.0 / n);
            (k, mean)
        })
        .collect())
}

fn totals(design: Design, rows: &[Row], usage: &BTreeMap<(Design, Step), Usage>, model: &Model) -> Totals {
    let mine: Vec<&Row> = rows.iter().filter(|r| r.design == design).collect();
    let mut total = Usage::default();
    let mut api = 0.0;
    for ((d, step), u) in usage {
        if *d != design {
            continue;
        }
        let times = if *step == Step::Poll { model.polls() } else { 1.0 };
        total.add(u, times);
        if step.api() {
            api += times;
        }
    }
    if design == Design::Polling {
        // Replicate's fetch of the prepared photo during the create's wait (not played: modelled).
        total.s3_get += 1.0;
        *total.ops.entry("S3 GetObject".into()).or_default() += 1.0;
    }
    Totals {
        invocations: mine.iter().map(|r| r.per_generation).sum(),
        gb_s: mine.iter().map(|r| r.gb_s()).sum(),
        lambda_s: mine.iter().map(|r| r.seconds()).sum(),
        worker_s: mine.iter().filter(|r| r.step == Step::Worker).map(|r| r.seconds()).sum(),
        api,
        usage: total,
    }
}

fn ops_text(u: &Usage) -> String {
    let parts: Vec<String> = u
        .ops
        .iter()
        .map(|(op, n)| if (*n - 1.0).abs() < 1e-9 { op.clone() } else { format!("{op} ×{}", trim(*n)) })
        .collect();
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(", ")
    }
}

/// A count without trailing zeros (1, 2.5, 22.5).
fn trim(n: f64) -> String {
    let s = format!("{n:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

fn money(d: f64) -> String {
    if d == 0.0 {
        "$0".into()
    } else if d < 0.0001 {
        format!("${d:.6}")
    } else {
        format!("${d:.4}")
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if args.jobs == 0 || args.poll_seconds <= 0.0 || args.render_seconds < 0.0 {
        return Err("--jobs must be at least 1, --poll-seconds positive, --render-seconds not negative".into());
    }
    let template = Template::parse()?;
    let rig = Rig::new(args.jobs).await?;
    let mut samples = Vec::new();
    for design in [Design::Webhook, Design::Polling] {
        let functions = rig.functions(design).await?;
        rig.generation(&functions, 0, false, &mut samples).await?;
        for i in 1..=args.jobs {
            rig.generation(&functions, i, true, &mut samples).await?;
        }
    }

    // The reconciler's scheduled run with nothing due (its fixed cost).
    let env = Rig::env(&rig.stage, &rig.apns, "http://127.0.0.1:9", Design::Webhook);
    let reconciler = Arc::new(generation_reconciler::State::new(&rig.deps(&env)?));
    let scheduled = || json!({"source": "aws.events", "detail-type": "Scheduled Event"});
    generation_reconciler::handle(reconciler.clone(), scheduled()).await.map_err(function_error)?;
    let mut reconciler_ms = Vec::new();
    let mut reconciler_calls = Vec::new();
    for _ in 0..args.jobs {
        let (answer, ms, calls) = rig.measure(generation_reconciler::handle(reconciler.clone(), scheduled())).await;
        answer.map_err(function_error)?;
        reconciler_ms.push(ms);
        reconciler_calls.extend(calls);
    }

    let t = &rig.stage.tables;
    let tables = [&t.users, &t.credits, &t.generations, &t.devices, &t.characters, &t.sessions].map(|s| s.to_string());
    let mut sizes = Sizes::read(&rig.stage.dynamodb_endpoint, &tables).await?;
    let model = Model { render_s: args.render_seconds, poll_s: args.poll_seconds };
    let rows = rows(&samples, &template, &model)?;
    let usage = usage(&samples, &mut sizes, &t.generations)?;
    let new = totals(Design::Webhook, &rows, &usage, &model);
    let old = totals(Design::Polling, &rows, &usage, &model);
    let mut reconciler_usage = Usage::of(&reconciler_calls, &mut sizes, &t.generations, None)?;
    reconciler_usage = {
        let mut mean = Usage::default();
        mean.add(&reconciler_usage, 1.0 / args.jobs as f64);
        mean
    };

    // ---- print ----
    let photo_mb = rig.photo.len() as f64 / 1_000_000.0;
    let output_kb = rig.output.len() as f64 / 1000.0;
    println!(
        "Measured: {} generations per design after one warm-up each; photo 4000×3000 JPEG ({photo_mb:.1} MB), \
         output stand-in 880×1184 JPEG ({output_kb:.0} KB); template `{TEMPLATE}` (Replicate). Old design: render \
         {} s, polls every {} s.",
        args.jobs,
        trim(args.render_seconds),
        trim(args.poll_seconds),
    );
    println!();
    println!("#### Lambda, per generation");
    println!();
    println!(
        "| design | function | invocation | per generation | memory (MB) | measured p50 (ms) | p99 (ms) | billed, mean (ms) | GB-s per generation | modelled |"
    );
    println!("|---|---|---|---:|---:|---:|---:|---:|---:|---|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {} | {:.0} | {:.1} | {:.1} | {:.0} | {:.4} | {} |",
            r.design.name(),
            r.step.function().unwrap_or_default(),
            r.step.label(),
            trim(r.per_generation),
            r.memory_mb,
            r.p50,
            r.p99,
            r.billed_ms,
            r.gb_s(),
            if r.note.is_empty() { "–" } else { r.note },
        );
    }
    println!();
    println!("#### AWS requests per generation, by step");
    println!();
    println!("| design | step | calls | DynamoDB WRU | RRU | S3 PUT/POST | S3 GET |");
    println!("|---|---|---|---:|---:|---:|---:|");
    for ((design, step), u) in &usage {
        let times = if *step == Step::Poll { format!(" (×{} polls)", trim(model.polls())) } else { String::new() };
        println!(
            "| {} | {}{times} | {} | {} | {} | {} | {} |",
            design.name(),
            step.label(),
            ops_text(u),
            trim(u.wru),
            trim(u.rru),
            trim(u.s3_put + u.s3_multi_delete),
            trim(u.s3_get)
        );
    }
    println!(
        "| {} | Replicate: presigned GET of the prepared photo (modelled) | S3 GetObject | 0 | 0 | 0 | 1 |",
        Design::Polling.name()
    );
    println!();
    println!("#### Per generation, by service");
    println!();
    println!("| service | unit | webhook (new) | polling (old) | price (us-east-1) |");
    println!("|---|---|---:|---:|---|");
    let line = |service: &str, unit: &str, a: f64, b: f64, p: &str| {
        println!("| {service} | {unit} | {} | {} | {p} |", trim_f(a), trim_f(b));
    };
    line("Lambda", "requests (invocations)", new.invocations, old.invocations, "$0.20 per 1M");
    line("Lambda", "GB-s (arm64)", new.gb_s, old.gb_s, "$0.0000133334 per GB-s");
    line("API Gateway", "HTTP API requests", new.api, old.api, "$1.00 per 1M");
    line("DynamoDB", "write request units", new.usage.wru, old.usage.wru, "$0.625 per 1M");
    line("DynamoDB", "of which Pending index", new.usage.index_wru, old.usage.index_wru, "(included above)");
    line("DynamoDB", "read request units", new.usage.rru, old.usage.rru, "$0.125 per 1M");
    line("S3", "PUT-class (PutObject)", new.usage.s3_put, old.usage.s3_put, "$0.005 per 1,000");
    line(
        "S3",
        "DeleteObjects (POST)",
        new.usage.s3_multi_delete,
        old.usage.s3_multi_delete,
        "$0.005 per 1,000 (upper bound; DELETE is free)",
    );
    line("S3", "GET-class (GetObject, HeadObject)", new.usage.s3_get, old.usage.s3_get, "$0.0004 per 1,000");
    line("Secrets Manager", "GetSecretValue (warm)", new.usage.secrets, old.usage.secrets, "$0.05 per 10,000");
    println!();
    println!("Calls per generation, webhook: {}", ops_text(&new.usage));
    println!();
    println!("Calls per generation, polling: {}", ops_text(&old.usage));
    println!();
    println!("#### Priced, per 1,000 generations");
    println!();
    println!("| item | webhook (new) | polling (old) |");
    println!("|---|---:|---:|");
    for ((item, a), (_, b)) in new.dollars().iter().zip(old.dollars().iter()) {
        println!("| {item} | {} | {} |", money(a * 1000.0), money(b * 1000.0));
    }
    println!("| **total** | **{}** | **{}** |", money(new.per_thousand()), money(old.per_thousand()));
    println!();
    println!("cost per 1,000 generations: {} (webhook design)", money(new.per_thousand()));
    println!();
    let at = |render_s: f64| -> Result<f64> {
        let m = Model { render_s, poll_s: args.poll_seconds };
        let r = self::rows(&samples, &template, &m)?;
        Ok(totals(Design::Polling, &r, &usage, &m).per_thousand())
    };
    println!(
        "cost per 1,000 generations: {} (old polling design, {} s render; 30 s: {}, 60 s: {})",
        money(old.per_thousand()),
        trim(args.render_seconds),
        money(at(30.0)?),
        money(at(60.0)?)
    );
    println!();
    let target = 0.05;
    println!(
        "Target ≤ $0.05 per 1,000 generations: webhook {}, polling {}.",
        if new.per_thousand() <= target { "met" } else { "NOT met" },
        if old.per_thousand() <= target { "met" } else { "NOT met" },
    );
    println!();

    // Throughput bounds at the default account concurrency.
    let parallel = template.parallelization()?;
    let old_in_flight = ACCOUNT_CONCURRENCY * (model.render_s / old.lambda_s);
    println!("#### Throughput at 1,000 concurrent executions (the default per account and Region)");
    println!();
    println!("| | webhook (new) | polling (old) |");
    println!("|---|---:|---:|");
    println!("| Lambda seconds per generation, all functions | {:.3} | {:.3} |", new.lambda_s, old.lambda_s);
    println!("| worker seconds per render | {:.3} | {:.3} |", new.worker_s, old.worker_s);
    println!(
        "| renders/s, 1,000 / worker seconds | {:.0} | {:.1} |",
        ACCOUNT_CONCURRENCY / new.worker_s,
        ACCOUNT_CONCURRENCY / old.worker_s
    );
    println!(
        "| renders/s, 1,000 / all functions' seconds | {:.0} | {:.1} |",
        ACCOUNT_CONCURRENCY / new.lambda_s,
        ACCOUNT_CONCURRENCY / old.lambda_s
    );
    println!(
        "| renders in flight | not bounded by Lambda (the worker holds no execution while Replicate renders): Replicate's limits | ≤ {old_in_flight:.0} (1,000 less the {:.0} the polls and other invocations hold) |",
        ACCOUNT_CONCURRENCY - old_in_flight
    );
    println!(
        "| per stream shard (ParallelizationFactor {parallel:.0}: worker invocations at once) | {:.0} renders/s | {parallel:.0} in flight, {:.2} renders/s |",
        parallel / new.worker_s,
        parallel / old.worker_s
    );
    println!();

    // The reconciler: a fixed cost.
    let minutes = template.reconciler_minutes()?;
    let runs = 30.0 * 24.0 * 60.0 / minutes;
    let memory = template.memory_mb("generation-reconciler")?;
    let gb_s = billed(&reconciler_ms) / 1000.0 * memory / 1024.0;
    let per_run = price::LAMBDA_REQUEST
        + gb_s * price::LAMBDA_GB_SECOND
        + reconciler_usage.rru * price::DYNAMODB_RRU
        + reconciler_usage.wru * price::DYNAMODB_WRU
        + reconciler_usage.s3_put * price::S3_PUT
        + reconciler_usage.s3_get * price::S3_GET;
    println!(
        "Reconciler (fixed, whatever the traffic): every {} min = {runs:.0} runs a month (30 days); a run with nothing \
         due: p50 {:.1} ms at {} MB, {} ({} RRU): **{} a month**.",
        trim(minutes),
        median(&reconciler_ms),
        memory,
        ops_text(&reconciler_usage),
        trim(reconciler_usage.rru),
        money(per_run * runs)
    );
    println!();
    let prepared_kb = rig.fetched.load(Ordering::Relaxed) as f64 / 1000.0;
    let out_kb = prepared_kb + output_kb;
    println!(
        "Data out to the internet per generation (not in the totals): Replicate's fetch of the prepared photo \
         {prepared_kb:.0} KB + the app's download of the output {output_kb:.0} KB = {out_kb:.0} KB; at $0.09 per GB \
         (after the account's free 100 GB a month): {} per 1,000 generations.",
        money(out_kb / 1e6 * 0.09 * 1000.0)
    );
    println!();
    let largest: Vec<String> = sizes
        .largest
        .iter()
        .filter(|(_, size)| **size > 0)
        .map(|(table, size)| {
            let logical = table.rsplit('-').next().unwrap_or(table);
            format!("{logical} {size} B")
        })
        .collect();
    println!(
        "Largest item a write or read of each table touched (DynamoDB item-size rules; absent items left out): {}.",
        largest.join(", ")
    );
    Ok(())
}

/// A per-generation quantity: up to 6 decimals, without trailing zeros.
fn trim_f(n: f64) -> String {
    if n != 0.0 && n.abs() < 0.01 {
        let s = format!("{n:.6}");
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        trim(n)
    }
}
