//! IAM conformance: every AWS request a deployed function makes is allowed by the policies template.yaml
//! gives that function, and every grant is either used or kept for a reason written down here.
//!
//! DynamoDB Local and moto enforce no IAM, so the rest of the suite passes whatever the roles say. Here each
//! function of template.yaml runs as deployed (`Deps::deployed`: the DynamoDB, S3 and Secrets Manager
//! adapters) with its own pair of recording proxies in front of DynamoDB Local and moto, so every request is
//! known to come from that function. A journey drives every route and event of every function (the HTTP
//! routes through a gateway that routes by the template's own `HttpApi` events, the worker by stream
//! records, the reconciler by its schedule), including the paths that need other permissions: a lost race
//! for a code, a refresh, an upload the worker finds gone, a claim lost to the reconciler, an interrupted
//! account deletion the reconciler finishes. Presigned URLs are fetched through the proxy of the function
//! that signed them: S3 authorises them with the signer's role.
//!
//! `bench::iam` turns each request into what IAM evaluates (per-item actions of transactions, per-key
//! `DeleteObjects`, `s3:ListBucket` for a 404, the `s3:prefix` of a listing) and reads the policies.
//! `FACEMAKE_PRINT_IAM=1` prints what each function was recorded doing.
//!
//! Run alone with `infra/scripts/test.sh -- iam`.

use base64::Engine as _;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use appstore_test_chain::{notification, TestChain, Transaction};
use bench::iam::{accesses, Access, Function, Names, Template};
use bench::proxy::{CallLog, CountingProxy, Faults};
use bench::{api_request, LoopbackStage};
use facemake::config::Config;
use facemake::http::Router;
use facemake::services::generation::Worker;
use facemake::wiring::Deps;
use http::Method;
use lambda_http::{Body, Response};
use serde_json::{json, Value};
use testkit::{body_json, ManualClock};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

mod common;
use common::{openai_success, png};

/// Each call is held this long: two requests a handler makes together then overlap at the stand-in, as
/// they would on AWS (the lost race for a code depends on it).
const DELAY: Duration = Duration::from_millis(10);
const BUNDLE_ID: &str = "app.facemake.ios";
const TEMPLATE_YAML: &str = include_str!("../../../template.yaml");

/// Grants no recorded call uses, each with why it stays. The test fails on an unused grant that is not
/// here, and on an entry here that a call does use (or that no longer exists), so the list stays true.
const KEPT: &[(&str, &str, &str, &str)] = &[
    (
        "GenerationWorkerFunction",
        "sqs:SendMessage",
        "arn:aws:sqs:REGION:ACCOUNT:GenerationDeadLetterQueue",
        "the stream event's on-failure destination: Lambda's poller sends with the function's role, not the code",
    ),
    (
        "GenerationWorkerFunction",
        "dynamodb:DescribeStream",
        "arn:aws:dynamodb:REGION:ACCOUNT:table/GenerationsTable/stream/*",
        "Lambda's event source mapping reads the stream with the function's role, not the code",
    ),
    (
        "GenerationWorkerFunction",
        "dynamodb:GetRecords",
        "arn:aws:dynamodb:REGION:ACCOUNT:table/GenerationsTable/stream/*",
        "as DescribeStream",
    ),
    (
        "GenerationWorkerFunction",
        "dynamodb:GetShardIterator",
        "arn:aws:dynamodb:REGION:ACCOUNT:table/GenerationsTable/stream/*",
        "as DescribeStream",
    ),
    (
        "GenerationWorkerFunction",
        "dynamodb:ListStreams",
        "*",
        "the event source mapping lists streams; the action takes no resource and returns stream ARNs, no records",
    ),
    (
        "ReplicateWebhooksFunction",
        "s3:DeleteObject",
        "arn:aws:s3:::ImagesBucket/outputs/*",
        "a callback whose success lost the race to the reconciler deletes the output it stored: a race no journey \
         step can stage (the job is read as awaiting, then failed before the succeed transaction)",
    ),
    (
        "OpenAiWebhooksFunction",
        "s3:DeleteObject",
        "arn:aws:s3:::ImagesBucket/outputs/*",
        "as the Replicate webhook's: an event whose success lost the race to the reconciler deletes the image it \
         stored, a race no journey step can stage",
    ),
];

/// Managed policies no function may carry: AWSLambdaDynamoDBExecutionRole reads every stream of the account.
const REFUSED_MANAGED: &[&str] = &["AWSLambdaDynamoDBExecutionRole"];

enum Handler {
    Http(Router),
    Worker(Arc<Worker>),
    Reconciler(Arc<generation_reconciler::State>),
}

/// One function of template.yaml, deployed on the loopback stage.
struct Deployed {
    function: Function,
    handler: Handler,
    faults: Faults,
    _proxies: (CountingProxy, CountingProxy),
}

struct Stage {
    loopback: LoopbackStage,
    template: Template,
    log: CallLog,
    functions: BTreeMap<String, Deployed>,
    /// (function, event) pairs the journey invoked.
    covered: Mutex<BTreeSet<(String, String)>>,
    twilio: MockServer,
    openai: MockServer,
    replicate: MockServer,
    /// APNs: every push accepted, except to tokens starting `e`, which it calls unregistered (410).
    apns: MockServer,
    chain: TestChain,
    /// The reconciler's clock: moved past the generation deadline to find stuck jobs.
    reconciler_clock: Arc<ManualClock>,
    /// The bucket without a proxy, for what happens outside any function (a photo that expired).
    s3: aws_sdk_s3::Client,
}

/// Which function of `functions` API Gateway sends `method path` to: the route with most literal segments
/// wins, as HTTP APIs prefer `/v1/templates/categories` over `/v1/templates/{id}`.
fn route<'a>(functions: &'a BTreeMap<String, Deployed>, method: &Method, path: &str) -> Option<(&'a Deployed, String)> {
    let path = path.split('?').next().unwrap_or(path);
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let mut best: Option<(&Deployed, String, usize)> = None;
    for deployed in functions.values() {
        for event in &deployed.function.events {
            let Some((m, p)) = &event.route else { continue };
            let pattern: Vec<&str> = p.trim_start_matches('/').split('/').collect();
            if m != method.as_str() || pattern.len() != segments.len() {
                continue;
            }
            let fits = pattern.iter().zip(&segments).all(|(p, s)| p.starts_with('{') || p == s);
            let literal = pattern.iter().filter(|p| !p.starts_with('{')).count();
            if fits && best.as_ref().is_none_or(|(_, _, l)| literal > *l) {
                best = Some((deployed, event.name.clone(), literal));
            }
        }
    }
    best.map(|(d, e, _)| (d, e))
}

impl Stage {
    async fn new() -> Self {
        let prefix = format!("iam{}-", ulid::Ulid::new().to_string().to_lowercase());
        let loopback = LoopbackStage::from_test_env(&prefix).await.expect("the loopback stage (infra/scripts/test.sh)");
        let template = Template::parse(TEMPLATE_YAML).unwrap();

        let twilio = common::twilio().await;
        let openai = common::openai(openai_success()).await;
        let replicate = MockServer::start().await;
        let apns = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path_regex("^/3/device/e[0-9a-f]+$"))
            .respond_with(ResponseTemplate::new(410).set_body_json(json!({"reason": "Unregistered"})))
            .with_priority(1)
            .mount(&apns)
            .await;
        Mock::given(method("POST"))
            .and(path_regex("^/3/device/"))
            .respond_with(ResponseTemplate::new(200))
            .mount(&apns)
            .await;

        let moto = bench::sdk(&loopback.moto_endpoint);
        let s3 = aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&moto).force_path_style(true).build());
        let mut stage = Self {
            loopback,
            template,
            log: CallLog::default(),
            functions: BTreeMap::new(),
            covered: Mutex::default(),
            twilio,
            openai,
            replicate,
            apns,
            chain: TestChain::generate().unwrap(),
            reconciler_clock: ManualClock::at_wall_clock(),
            s3,
        };
        for id in stage.template.functions.keys().cloned().collect::<Vec<_>>() {
            let deployed = stage.deploy(&id, &[]).await;
            stage.functions.insert(id, deployed);
        }
        stage
    }

    /// The stage's environment for every function, with `overrides` (e.g. another provider stand-in).
    fn env(&self, overrides: &[(&str, String)]) -> BTreeMap<String, String> {
        let mut env = common::function_env(&self.loopback, &self.twilio, &self.openai, &self.chain);
        env.insert("REPLICATE_API_BASE".into(), self.replicate.uri());
        // The Replicate stand-in serves the output files too.
        env.insert("REPLICATE_OUTPUT_HOSTS".into(), self.replicate.uri());
        // As deployed: Replicate renders are handed over and finished by the webhook (the journey plays
        // Replicate and posts the signed callbacks through the gateway).
        env.insert("REPLICATE_WEBHOOK_URL".into(), "https://api.stage.test/v1/webhooks/replicate".into());
        env.insert("APNS_PRODUCTION_URL".into(), self.apns.uri());
        env.insert("APNS_SANDBOX_URL".into(), self.apns.uri());
        for (k, v) in overrides {
            env.insert((*k).to_owned(), v.clone());
        }
        env
    }

    /// The names the function `id` is given, stage value → template value.
    fn names(&self, id: &str) -> Names {
        Names::pair(&self.template.functions[id].env, &self.env(&[]))
    }

    /// Deploys the function `id` of the template: its own proxies, its own container.
    async fn deploy(&self, id: &str, overrides: &[(&str, String)]) -> Deployed {
        let function = self.template.functions[id].clone();
        let faults = Faults::default();
        let dynamo = CountingProxy::start_labelled(
            &self.loopback.dynamodb_endpoint,
            DELAY,
            self.log.clone(),
            id,
            faults.clone(),
        )
        .await
        .unwrap();
        let moto =
            CountingProxy::start_labelled(&self.loopback.moto_endpoint, DELAY, self.log.clone(), id, faults.clone())
                .await
                .unwrap();
        let env = self.env(overrides);
        let env: std::collections::HashMap<&str, &str> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let config = Config::from(&env).unwrap();
        let mut deps = Deps::deployed_with_endpoints(&config, &bench::sdk(&moto.url), &dynamo.url, &moto.url);
        let handler = match function.binary.as_str() {
            "send-code" => Handler::Http(send_code::router(Arc::new(send_code::State::new(&deps)))),
            "verify-code" => Handler::Http(verify_code::router(Arc::new(verify_code::State::new(&deps)))),
            "account" => Handler::Http(account::router(Arc::new(account::State::new(&deps)))),
            "templates" => Handler::Http(templates::router(Arc::new(templates::State::new(&deps)))),
            "credits" => Handler::Http(credits::router(Arc::new(credits::State::new(&deps).unwrap()))),
            "app-store-notifications" => Handler::Http(app_store_notifications::router(Arc::new(
                app_store_notifications::State::new(&deps).unwrap(),
            ))),
            "generate" => Handler::Http(generate::router(Arc::new(generate::State::new(&deps)))),
            "characters" => Handler::Http(characters::router(Arc::new(characters::State::new(&deps)))),
            "replicate-webhooks" => {
                Handler::Http(replicate_webhooks::router(Arc::new(replicate_webhooks::State::new(&deps))))
            }
            "openai-webhooks" => Handler::Http(openai_webhooks::router(Arc::new(openai_webhooks::State::new(&deps)))),
            "generation-worker" => Handler::Worker(Arc::new(deps.worker())),
            "generation-reconciler" => {
                deps.clock = self.reconciler_clock.clone();
                Handler::Reconciler(Arc::new(generation_reconciler::State::new(&deps)))
            }
            other => panic!("{id} runs the binary {other}, which this test does not know how to run: add it"),
        };
        Deployed { function, handler, faults, _proxies: (dynamo, moto) }
    }

    fn cover(&self, function: &str, event: &str) {
        self.covered.lock().unwrap().insert((function.to_owned(), event.to_owned()));
    }

    /// A request through the gateway: to the function whose HttpApi event has the route.
    async fn http(&self, method: Method, path: &str, body: Option<Value>, token: Option<&str>) -> Response<Body> {
        self.http_with(method, path, body, token, &[]).await
    }

    async fn http_with(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        token: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Response<Body> {
        let (deployed, event) = route(&self.functions, &method, path)
            .unwrap_or_else(|| panic!("no function of template.yaml serves {method} {path}"));
        let Handler::Http(router) = &deployed.handler else { panic!("{method} {path} routes to a non-HTTP function") };
        self.cover(&deployed.function.logical_id, &event);
        router.handle(api_request(method, path, body, token, headers)).await
    }

    fn function(&self, binary: &str) -> &Deployed {
        self.functions.values().find(|d| d.function.binary == binary).unwrap_or_else(|| panic!("no function {binary}"))
    }

    fn event_name(&self, binary: &str, kind: &str) -> (String, String) {
        let f = &self.function(binary).function;
        let e = f.events.iter().find(|e| e.kind == kind).unwrap_or_else(|| panic!("{binary} has no {kind} event"));
        (f.logical_id.clone(), e.name.clone())
    }

    /// The worker handles the stream record of a new generation (as the event source mapping delivers it).
    async fn work(&self, worker: &Deployed, user: &str, generation: &str) {
        let answer = self.deliver(worker, user, generation, &ulid::Ulid::new().to_string()).await;
        assert_eq!(answer["batchItemFailures"], json!([]), "the worker reported a failure");
    }

    /// One delivery of the stream record `event_id` (Lambda's retry of a record carries the same id).
    async fn deliver(&self, worker: &Deployed, user: &str, generation: &str, event_id: &str) -> Value {
        let Handler::Worker(w) = &worker.handler else { panic!("not the worker") };
        let (id, event) = self.event_name("generation-worker", "DynamoDB");
        self.cover(&id, &event);
        let record = json!({"Records": [{
            "eventID": event_id,
            "eventName": "INSERT",
            "eventSource": "aws:dynamodb",
            "awsRegion": "us-east-1",
            "dynamodb": {
                "Keys": {"pk": {"S": format!("USER#{user}")}, "sk": {"S": format!("GEN#{generation}")}},
                "SequenceNumber": "100",
                "SizeBytes": 100,
            },
        }]});
        let event = serde_json::from_value(record).unwrap();
        serde_json::to_value(generation_worker::handle(w.clone(), event).await.unwrap()).unwrap()
    }

    /// The scheduled reconciler, `ahead` seconds after now.
    async fn reconcile(&self, ahead: i64) -> Value {
        self.reconciler_clock.advance(ahead);
        let Handler::Reconciler(state) = &self.function("generation-reconciler").handler else { unreachable!() };
        let (id, event) = self.event_name("generation-reconciler", "Schedule");
        self.cover(&id, &event);
        generation_reconciler::handle(state.clone(), json!({"source": "aws.events", "detail-type": "Scheduled Event"}))
            .await
            .unwrap()
    }

    /// Signs `phone` in; the session's JSON.
    async fn sign_in(&self, phone: &str) -> Value {
        let sent = self.http(Method::POST, "/v1/auth/send-code", Some(json!({"phone": phone})), None).await;
        assert_eq!(sent.status(), 202, "{}", body_json(&sent));
        let code = self.last_code(phone).await;
        let response =
            self.http(Method::POST, "/v1/auth/verify-code", Some(json!({"phone": phone, "code": code})), None).await;
        assert_eq!(response.status(), 200, "{}", body_json(&response));
        body_json(&response)
    }

    async fn last_code(&self, phone: &str) -> String {
        common::last_code(&self.twilio, phone).await
    }

    /// An upload slot with a small JPEG put through its presigned URL (as the app does).
    async fn upload(&self, token: &str) -> String {
        let photo = common::jpeg();
        let body = json!({"contentType": "image/jpeg", "contentLength": photo.len()});
        let slot = self.http(Method::POST, "/v1/uploads", Some(body), Some(token)).await;
        assert_eq!(slot.status(), 201, "{}", body_json(&slot));
        let slot = body_json(&slot);
        common::put_photo(&slot, photo).await;
        slot["uploadId"].as_str().unwrap().to_owned()
    }

    /// A character of the user's made from `uploads`; its JSON.
    async fn character(&self, token: &str, uploads: &[&str]) -> Value {
        let body = json!({"name": "Ada", "uploadIds": uploads});
        let response = self.http(Method::POST, "/v1/characters", Some(body), Some(token)).await;
        assert_eq!(response.status(), 201, "{}", body_json(&response));
        body_json(&response)
    }

    /// Starts a generation of `template` from `source` (`{"characterId": …}` or `{"parentGenerationId": …}`).
    async fn start_from(&self, token: &str, template: &str, source: Value) -> String {
        let mut body = source;
        body["templateId"] = json!(template);
        let key = ulid::Ulid::new().to_string();
        let response = self
            .http_with(Method::POST, "/v1/generations", Some(body), Some(token), &[("idempotency-key", &key)])
            .await;
        assert_eq!(response.status(), 202, "{}", body_json(&response));
        body_json(&response)["generation"]["id"].as_str().unwrap().to_owned()
    }

    /// Replicate's signed callback about `generation` (its prediction `id`), through the gateway.
    async fn replicate_callback(&self, user: &str, generation: &str, prediction: Value) -> Response<Body> {
        let body = prediction.to_string();
        let now = facemake::ports::Clock::now(&facemake::ports::SystemClock);
        let signature = facemake::adapters::webhooks::sign(
            facemake::adapters::webhooks::LOCAL_SIGNING_KEY,
            "msg_1",
            now,
            body.as_bytes(),
        )
        .unwrap();
        let now = now.to_string();
        let headers =
            [("webhook-id", "msg_1"), ("webhook-timestamp", now.as_str()), ("webhook-signature", signature.as_str())];
        let path = format!("/v1/webhooks/replicate?job={user}.{generation}");
        self.http_raw(Method::POST, &path, body, &headers).await
    }

    /// OpenAI's signed webhook event about `response`, through the gateway.
    async fn openai_event(&self, kind: &str, response: &str) -> Response<Body> {
        let body = json!({"object": "event", "id": "evt_1", "type": kind, "created_at": 1, "data": {"id": response}});
        let body = body.to_string();
        let now = facemake::ports::Clock::now(&facemake::ports::SystemClock);
        let key = facemake::adapters::webhooks::LOCAL_SIGNING_KEY;
        let signature = facemake::adapters::webhooks::sign(key, "wh_1", now, body.as_bytes()).unwrap();
        let now = now.to_string();
        let headers =
            [("webhook-id", "wh_1"), ("webhook-timestamp", now.as_str()), ("webhook-signature", signature.as_str())];
        self.http_raw(Method::POST, "/v1/webhooks/openai", body, &headers).await
    }

    /// A request with a raw body (a callback signs the exact bytes).
    async fn http_raw(&self, method: Method, path: &str, body: String, headers: &[(&str, &str)]) -> Response<Body> {
        let (deployed, event) = route(&self.functions, &method, path)
            .unwrap_or_else(|| panic!("no function of template.yaml serves {method} {path}"));
        let Handler::Http(router) = &deployed.handler else { panic!("{method} {path} routes to a non-HTTP function") };
        self.cover(&deployed.function.logical_id, &event);
        let mut request = api_request(method, path, None, None, headers);
        *request.body_mut() = Body::Text(body);
        router.handle(request).await
    }

    /// Starts a generation of `template` from `upload`; its id.
    async fn start(&self, token: &str, template: &str, upload: &str) -> String {
        self.start_with_key(token, template, upload, &ulid::Ulid::new().to_string()).await
    }

    async fn start_with_key(&self, token: &str, template: &str, upload: &str, key: &str) -> String {
        let response = self
            .http_with(
                Method::POST,
                "/v1/generations",
                Some(json!({"templateId": template, "uploadId": upload})),
                Some(token),
                &[("idempotency-key", key)],
            )
            .await;
        assert_eq!(response.status(), 202, "{}", body_json(&response));
        body_json(&response)["generation"]["id"].as_str().unwrap().to_owned()
    }

    /// `PUT /v1/me/devices/{device}`.
    async fn register_device(&self, token: &str, device: &str, environment: &str) {
        let path = format!("/v1/me/devices/{device}");
        let response = self.http(Method::PUT, &path, Some(json!({"environment": environment})), Some(token)).await;
        assert_eq!(response.status(), 204, "{}", body_json(&response));
    }

    /// The pushes APNs got for `generation` (to any device).
    async fn pushes_about(&self, generation: &str) -> Vec<String> {
        let requests = self.apns.received_requests().await.unwrap_or_default();
        requests
            .iter()
            .filter(|r| serde_json::from_slice::<Value>(&r.body).is_ok_and(|b| b["generationId"] == generation))
            .map(|r| r.url.path().to_owned())
            .collect()
    }

    async fn generation(&self, token: &str, id: &str) -> Value {
        let response = self.http(Method::GET, &format!("/v1/generations/{id}"), None, Some(token)).await;
        assert_eq!(response.status(), 200, "{}", body_json(&response));
        body_json(&response)
    }

    /// A prepared photo under work/ that a crashed worker never deleted (put outside any function).
    async fn leftover_work_photo(&self, user: &str) {
        let key = format!("work/{user}/{}.jpg", ulid::Ulid::new());
        let put = self.s3.put_object().bucket(&self.loopback.bucket).key(key).body(vec![0xFF, 0xD8].into()).send();
        put.await.unwrap();
    }

    /// Every key under the user's prefixes.
    async fn objects_of(&self, user: &str) -> Vec<String> {
        let mut keys = Vec::new();
        for prefix in ["uploads", "work", "outputs", "characters"] {
            let listed = self
                .s3
                .list_objects_v2()
                .bucket(&self.loopback.bucket)
                .prefix(format!("{prefix}/{user}/"))
                .send()
                .await;
            keys.extend(listed.unwrap().contents().iter().filter_map(|o| o.key().map(str::to_owned)));
        }
        keys
    }

    fn purchase_body(&self, transaction_id: &str) -> Value {
        let t = Transaction::consumable(transaction_id, "app.facemake.credits.10", BUNDLE_ID, "Sandbox");
        json!({"signedTransaction": self.chain.sign(&t.payload()).unwrap()})
    }

    fn notification_body(&self, kind: &str, transaction_id: &str) -> Value {
        let t = Transaction::consumable(transaction_id, "app.facemake.credits.10", BUNDLE_ID, "Sandbox");
        let signed = self.chain.sign(&t.payload()).unwrap();
        let uuid = uuid_like();
        let payload = notification(kind, &uuid, BUNDLE_ID, "Sandbox", Some(&signed));
        json!({"signedPayload": self.chain.sign(&payload).unwrap()})
    }
}

fn uuid_like() -> String {
    let hex = format!("{:032x}", ulid::Ulid::new().0);
    format!("{}-{}-4{}-8{}-{}", &hex[0..8], &hex[8..12], &hex[13..16], &hex[17..20], &hex[20..32])
}

fn token(session: &Value) -> String {
    session["accessToken"].as_str().unwrap().to_owned()
}

fn user_id(session: &Value) -> String {
    session["user"]["id"].as_str().unwrap().to_owned()
}

/// Every route and event of every function, and the paths that need their own permissions.
async fn journey(stage: &Stage) {
    // Sign-in, sessions. Two sign-ins race for one code: one wins, the other loses the conditional consume and
    // reads the record to answer CODE_USED. Whether the loser gets that far (rather than finding the code used
    // at its first step) depends on timing, so the race is run on fresh numbers until it has happened.
    let first = stage.sign_in("+14155550101").await;
    let mut session = None;
    for phone in ["+14155550102", "+14155550104", "+14155550105", "+14155550106", "+14155550107"] {
        let sent = stage.http(Method::POST, "/v1/auth/send-code", Some(json!({"phone": phone})), None).await;
        assert_eq!(sent.status(), 202);
        let code = stage.last_code(phone).await;
        let verify =
            || stage.http(Method::POST, "/v1/auth/verify-code", Some(json!({"phone": phone, "code": code})), None);
        let (a, b) = tokio::join!(verify(), verify());
        let (won, lost) = if a.status() == 200 { (a, b) } else { (b, a) };
        assert_eq!((won.status().as_u16(), lost.status().as_u16()), (200, 400), "{}", body_json(&lost));
        assert_eq!(body_json(&lost)["error"]["code"], "CODE_USED");
        session = Some(body_json(&won));
        let codes = stage.names("VerifyCodeFunction");
        let read_the_record = stage.log.any(|c| {
            c.exchange.label == "VerifyCodeFunction"
                && accesses(&c.exchange, &codes).is_ok_and(|list| {
                    list.iter().any(|a| a.action == "dynamodb:GetItem" && a.resource.ends_with("table/CodesTable"))
                })
        });
        if read_the_record {
            break;
        }
    }
    let session = session.unwrap();
    // A returning user's sign-in (another branch: the existing account and a new session).
    assert_eq!(stage.sign_in("+14155550101").await["isNewUser"], false);
    // Twilio refuses one number: 503, and the send is undone (the cooldown given back).
    Mock::given(method("POST"))
        .and(path("/2010-04-01/Accounts/AC1/Messages.json"))
        .and(|r: &wiremock::Request| String::from_utf8_lossy(&r.body).contains("To=%2B14155550108"))
        .respond_with(ResponseTemplate::new(500))
        .with_priority(1)
        .mount(&stage.twilio)
        .await;
    let unsent = stage.http(Method::POST, "/v1/auth/send-code", Some(json!({"phone": "+14155550108"})), None).await;
    assert_eq!(unsent.status(), 503, "{}", body_json(&unsent));

    let refreshed = stage
        .http(Method::POST, "/v1/auth/refresh", Some(json!({"refreshToken": session["refreshToken"]})), None)
        .await;
    assert_eq!(refreshed.status(), 200, "{}", body_json(&refreshed));
    let refreshed = body_json(&refreshed);
    // The spent token again from the same client at once: a retry (409, the rotation read again); from
    // another client: a reuse, which revokes the whole family.
    let spent = json!({"refreshToken": session["refreshToken"]});
    let retried = stage.http(Method::POST, "/v1/auth/refresh", Some(spent.clone()), None).await;
    assert_eq!(retried.status(), 409, "{}", body_json(&retried));
    let thief = [("user-agent", "curl/8.5")];
    let reused = stage.http_with(Method::POST, "/v1/auth/refresh", Some(spent), None, &thief).await;
    assert_eq!(reused.status(), 401);
    let t = token(&refreshed);
    let logout = stage
        .http(Method::POST, "/v1/auth/logout", Some(json!({"refreshToken": refreshed["refreshToken"]})), Some(&t))
        .await;
    assert_eq!(logout.status(), 204);
    let logout_all = stage.http(Method::POST, "/v1/auth/logout", Some(json!({"all": true})), Some(&t)).await;
    assert_eq!(logout_all.status(), 204);

    // The account.
    let t = token(&first);
    assert_eq!(stage.http(Method::GET, "/v1/me", None, Some(&t)).await.status(), 200);
    let patched = stage.http(Method::PATCH, "/v1/me", Some(json!({"displayName": "Ada"})), Some(&t)).await;
    assert_eq!(patched.status(), 200, "{}", body_json(&patched));

    // The catalogue and favourites.
    assert_eq!(stage.http(Method::GET, "/v1/templates?limit=5", None, None).await.status(), 200);
    assert_eq!(stage.http(Method::GET, "/v1/templates?q=neon", None, Some(&t)).await.status(), 200);
    assert_eq!(stage.http(Method::GET, "/v1/templates/categories", None, None).await.status(), 200);
    assert_eq!(stage.http(Method::GET, "/v1/templates/neon-noir", None, Some(&t)).await.status(), 200);
    assert_eq!(stage.http(Method::PUT, "/v1/templates/neon-noir/favorite", None, Some(&t)).await.status(), 204);
    assert_eq!(stage.http(Method::PUT, "/v1/templates/golden-hour/favorite", None, Some(&t)).await.status(), 204);
    assert_eq!(stage.http(Method::GET, "/v1/me/favorites", None, Some(&t)).await.status(), 200);
    assert_eq!(stage.http(Method::DELETE, "/v1/templates/neon-noir/favorite", None, Some(&t)).await.status(), 204);

    // Credits: a purchase, its repeat, the history; Apple's refund, its reversal and a repeated notification.
    assert_eq!(stage.http(Method::GET, "/v1/credits", None, Some(&t)).await.status(), 200);
    for _ in 0..2 {
        let bought = stage
            .http(Method::POST, "/v1/credits/purchases", Some(stage.purchase_body("2000000000000301")), Some(&t))
            .await;
        assert_eq!(bought.status(), 200, "{}", body_json(&bought));
    }
    assert_eq!(stage.http(Method::GET, "/v1/credits/history?limit=10", None, Some(&t)).await.status(), 200);
    let refund = stage.notification_body("REFUND", "2000000000000301");
    for _ in 0..2 {
        let answered = stage.http(Method::POST, "/v1/webhooks/app-store", Some(refund.clone()), None).await;
        assert_eq!(answered.status(), 200, "{}", body_json(&answered));
    }
    let reversed = stage.notification_body("REFUND_REVERSED", "2000000000000301");
    assert_eq!(stage.http(Method::POST, "/v1/webhooks/app-store", Some(reversed), None).await.status(), 200);
    let unknown = stage.notification_body("REFUND", "2000000000000399");
    assert_eq!(stage.http(Method::POST, "/v1/webhooks/app-store", Some(unknown), None).await.status(), 200);
    // Apple asks about the purchase; the user consented, so the answer reads the In-App Purchase key.
    let consent = json!({"shareConsumptionData": true});
    assert_eq!(stage.http(Method::PATCH, "/v1/me", Some(consent), Some(&t)).await.status(), 200);
    let asked = stage.notification_body("CONSUMPTION_REQUEST", "2000000000000301");
    let answered = stage.http(Method::POST, "/v1/webhooks/app-store", Some(asked), None).await;
    assert_eq!(answered.status(), 200, "{}", body_json(&answered));

    // Push devices: one kept, one APNs calls gone (410) at the first push; one registered and unregistered.
    let kept = "a1".repeat(32);
    stage.register_device(&t, &kept, "sandbox").await;
    stage.register_device(&t, &"e1".repeat(32), "production").await;
    stage.register_device(&t, &"b1".repeat(32), "production").await;
    let unregistered = format!("/v1/me/devices/{}", "b1".repeat(32));
    assert_eq!(stage.http(Method::DELETE, &unregistered, None, Some(&t)).await.status(), 204);

    // Generation with OpenAI: upload, start, the worker, the result's presigned URL, the list, delete.
    let user = user_id(&first);
    let worker = stage.function("generation-worker");
    let upload = stage.upload(&t).await;
    let g = stage.start_with_key(&t, "neon-noir", &upload, "first-start").await;
    // The app's retry with the same key: the same generation, nothing charged again.
    assert_eq!(stage.start_with_key(&t, "neon-noir", &upload, "first-start").await, g);
    // The result cannot be stored (the put is denied once): the record is reported for Lambda to retry and
    // the claim released; the retry of the same record renders it.
    worker.faults.fail("S3 PutObject", 1);
    let failed = stage.deliver(worker, &user, &g, "record-1").await;
    assert_eq!(failed["batchItemFailures"].as_array().map(Vec::len), Some(1), "{failed}");
    let retried = stage.deliver(worker, &user, &g, "record-1").await;
    assert_eq!(retried["batchItemFailures"], json!([]));
    // A later duplicate of the record finds the job finished and skips it.
    stage.work(worker, &user, &g).await;
    let done = stage.generation(&t, &g).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    // The worker pushed the success to both devices (signing with the APNs key) and dropped the gone one.
    let mut pushed = stage.pushes_about(&g).await;
    pushed.sort();
    assert_eq!(pushed, [format!("/3/device/{kept}"), format!("/3/device/{}", "e1".repeat(32))]);
    let output = reqwest::get(done["outputUrl"].as_str().unwrap()).await.unwrap();
    assert_eq!(output.status(), 200, "the presigned output URL");
    assert_eq!(stage.http(Method::GET, "/v1/generations?limit=10", None, Some(&t)).await.status(), 200);
    assert_eq!(stage.http(Method::DELETE, &format!("/v1/generations/{g}"), None, Some(&t)).await.status(), 204);

    // A start from an upload slot the app never PUT to: S3's 404 (not 403) makes it a 400, charged nothing.
    let slot = stage
        .http(Method::POST, "/v1/uploads", Some(json!({"contentType": "image/jpeg", "contentLength": 1000})), Some(&t))
        .await;
    let empty = body_json(&slot)["uploadId"].as_str().unwrap().to_owned();
    let refused = stage
        .http_with(
            Method::POST,
            "/v1/generations",
            Some(json!({"templateId": "neon-noir", "uploadId": empty})),
            Some(&t),
            &[("idempotency-key", "never-uploaded")],
        )
        .await;
    assert_eq!(refused.status(), 400, "{}", body_json(&refused));

    // Replicate by webhook: the worker submits the prediction and returns; Replicate fetches the input by the
    // presigned URL the worker signed, renders, and posts its signed callback, which stores the output.
    let png = png();
    Mock::given(method("POST"))
        .and(path_regex("^/v1/models/.+/predictions$"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "id": "p1", "status": "starting", "output": null, "error": null,
            "urls": {"get": format!("{}/v1/predictions/p1", stage.replicate.uri())}
        })))
        .mount(&stage.replicate)
        .await;
    let succeeded = json!({
        "id": "p1", "status": "succeeded", "error": null,
        "output": [format!("{}/files/p1.png", stage.replicate.uri())], "urls": {}
    });
    Mock::given(method("GET"))
        .and(path("/files/p1.png"))
        .respond_with(ResponseTemplate::new(200).insert_header("content-type", "image/png").set_body_bytes(png))
        .mount(&stage.replicate)
        .await;
    let upload = stage.upload(&t).await;
    let g = stage.start(&t, "golden-hour", &upload).await;
    let fetch_input = async {
        for _ in 0..200 {
            let requests = stage.replicate.received_requests().await.unwrap_or_default();
            if let Some(create) = requests.iter().find(|r| r.method.as_str() == "POST") {
                let body: Value = serde_json::from_slice(&create.body).unwrap();
                let url = body["input"]
                    .as_object()
                    .and_then(|i| i.values().find_map(|v| v.as_str().filter(|s| s.starts_with("http"))))
                    .expect("a photo URL in the prediction's input")
                    .to_owned();
                return reqwest::get(url).await.unwrap().status().as_u16();
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the worker created no prediction");
    };
    stage.work(worker, &user, &g).await;
    assert_eq!(stage.generation(&t, &g).await["status"], "processing", "handed over, awaiting the callback");
    assert_eq!(fetch_input.await, 200, "Replicate's fetch of the prepared photo");
    // Another device APNs will call gone, for the webhook function's push.
    stage.register_device(&t, &"e2".repeat(32), "production").await;
    let hook = format!("/v1/webhooks/replicate?job={user}.{g}");
    let unsigned = stage.http(Method::POST, &hook, Some(succeeded.clone()), None).await;
    assert_eq!(unsigned.status(), 400, "an unsigned callback changes nothing");
    let answered = stage.replicate_callback(&user, &g, succeeded.clone()).await;
    assert_eq!(answered.status(), 200, "{}", body_json(&answered));
    assert_eq!(stage.generation(&t, &g).await["status"], "succeeded");
    // Replicate's retry of the same callback: nothing more (no second push either).
    assert_eq!(stage.replicate_callback(&user, &g, succeeded.clone()).await.status(), 200);
    let mut pushed = stage.pushes_about(&g).await;
    pushed.sort();
    assert_eq!(pushed, [format!("/3/device/{kept}"), format!("/3/device/{}", "e2".repeat(32))], "pushed once");

    // OpenAI by webhook (a stage whose OpenAI project calls back): the worker creates a background response and
    // returns; the project's signed event names the response, which the webhook function reads back (with the
    // OpenAI key) for the job and the image. One succeeds (and is pushed, dropping a gone device), one fails
    // and is refunded; an unsigned event changes nothing.
    let openai_worker = stage.deploy(&worker.function.logical_id, &[("OPENAI_WEBHOOKS", "true".to_owned())]).await;
    let jpeg = common::jpeg();
    for (id, job_status) in [("resp_iam1", "completed"), ("resp_iam2", "failed")] {
        Mock::given(method("POST"))
            .and(path("/v1/responses"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": id, "status": "queued"})))
            .up_to_n_times(1)
            .with_priority(1)
            .mount(&stage.openai)
            .await;
        stage.register_device(&t, &"e3".repeat(32), "production").await;
        let upload = stage.upload(&t).await;
        let g = stage.start(&t, "neon-noir", &upload).await;
        stage.work(&openai_worker, &user, &g).await;
        assert_eq!(stage.generation(&t, &g).await["status"], "processing", "handed over to OpenAI");
        let reference = format!("{user}.{g}");
        let read_back = match job_status {
            "completed" => json!({"id": id, "status": "completed", "metadata": {"facemakeJob": reference}, "output": [
                {"type": "image_generation_call", "status": "completed",
                 "result": base64::engine::general_purpose::STANDARD.encode(&jpeg)}]}),
            _ => json!({"id": id, "status": "failed", "metadata": {"facemakeJob": reference}, "output": [],
                        "error": {"code": "image_content_policy_violation", "message": "safety system"}}),
        };
        Mock::given(method("GET"))
            .and(path(format!("/v1/responses/{id}")))
            .respond_with(ResponseTemplate::new(200).set_body_json(read_back))
            .mount(&stage.openai)
            .await;
        let unsigned =
            stage.http(Method::POST, "/v1/webhooks/openai", Some(json!({"type": "response.completed"})), None);
        assert_eq!(unsigned.await.status(), 400);
        let answered = stage.openai_event(&format!("response.{job_status}"), id).await;
        assert_eq!(answered.status(), 200, "{}", body_json(&answered));
        let done = stage.generation(&t, &g).await;
        let expected = if job_status == "completed" { "succeeded" } else { "failed" };
        assert_eq!(done["status"], expected, "{done}");
        assert_eq!(done["refunded"], job_status == "failed", "{done}");
    }

    // Characters: made from two uploads (read, prepared once, stored under characters/), listed, read with
    // a thumbnail the app fetches (presigned by the characters function), renamed. A generation from it with
    // OpenAI (the worker reads the prepared photos) and with Replicate (the worker presigns them and Replicate
    // fetches them); a restyle of a result (the worker reads the parent's output); the profile's stats.
    let (u1, u2) = (stage.upload(&t).await, stage.upload(&t).await);
    let character = stage.character(&t, &[&u1, &u2]).await;
    let c = character["id"].as_str().unwrap().to_owned();
    assert_eq!(character["photoCount"], 2);
    let thumbnail = reqwest::get(character["thumbnailUrl"].as_str().unwrap()).await.unwrap();
    assert_eq!(thumbnail.status(), 200, "the app's fetch of the thumbnail");
    // One made from a slot the app never PUT to: S3's 404 (not 403, thanks to ListBucket) makes it a 400.
    let slot = json!({"contentType": "image/jpeg", "contentLength": 100});
    let empty = body_json(&stage.http(Method::POST, "/v1/uploads", Some(slot), Some(&t)).await)["uploadId"].clone();
    let body = json!({"name": "Ada", "uploadIds": [u1, empty]});
    let refused = stage.http(Method::POST, "/v1/characters", Some(body), Some(&t)).await;
    assert_eq!(refused.status(), 400, "{}", body_json(&refused));
    assert_eq!(body_json(&refused)["error"]["details"][0]["field"], "uploadIds[1]");
    let listed = stage.http(Method::GET, "/v1/characters", None, Some(&t)).await;
    assert_eq!(body_json(&listed)["items"][0]["id"], c.as_str());
    assert_eq!(stage.http(Method::GET, &format!("/v1/characters/{c}"), None, Some(&t)).await.status(), 200);
    let renamed =
        stage.http(Method::PATCH, &format!("/v1/characters/{c}"), Some(json!({"name": "Ada L."})), Some(&t)).await;
    assert_eq!(renamed.status(), 200, "{}", body_json(&renamed));
    let from_character = stage.start_from(&t, "neon-noir", json!({"characterId": c})).await;
    stage.work(worker, &user, &from_character).await;
    assert_eq!(stage.generation(&t, &from_character).await["status"], "succeeded");
    let replicated = stage.start_from(&t, "golden-hour", json!({"characterId": c})).await;
    let fetch_inputs = async {
        for _ in 0..200 {
            let requests = stage.replicate.received_requests().await.unwrap_or_default();
            let creates: Vec<_> = requests.iter().filter(|r| r.method.as_str() == "POST").collect();
            if creates.len() >= 2 {
                let body: Value = serde_json::from_slice(&creates[1].body).unwrap();
                let url = body["input"]
                    .as_object()
                    .and_then(|i| i.values().find_map(|v| v.as_str().filter(|s| s.contains("characters"))))
                    .expect("a character photo's URL in the prediction's input")
                    .to_owned();
                return reqwest::get(url).await.unwrap().status().as_u16();
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the worker created no second prediction");
    };
    stage.work(worker, &user, &replicated).await;
    assert_eq!(fetch_inputs.await, 200, "Replicate's fetch of the character's photo");
    // This one fails at Replicate (a safety refusal): the callback refunds it.
    let failed = json!({"id": "p1", "status": "failed", "error": "NSFW content detected", "output": null, "urls": {}});
    assert_eq!(stage.replicate_callback(&user, &replicated, failed).await.status(), 200);
    let refunded = stage.generation(&t, &replicated).await;
    assert_eq!(
        (refunded["status"].as_str(), refunded["refunded"].as_bool()),
        (Some("failed"), Some(true)),
        "{refunded}"
    );
    let restyle = stage.start_from(&t, "neon-noir", json!({"parentGenerationId": from_character})).await;
    stage.work(worker, &user, &restyle).await;
    assert_eq!(stage.generation(&t, &restyle).await["status"], "succeeded");
    let me = body_json(&stage.http(Method::GET, "/v1/me", None, Some(&t)).await);
    assert_eq!(me["stats"]["characters"], 1, "{me}");

    // Replicate refuses the submission (its input schema rejects the template's): the job fails and is refunded
    // at once, and the worker deletes the prepared photo no one will fetch.
    let refusing_replicate = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path_regex("^/v1/models/.+/predictions$"))
        .respond_with(
            ResponseTemplate::new(422)
                .set_body_json(json!({"title": "Invalid input", "detail": "bad input", "status": 422})),
        )
        .mount(&refusing_replicate)
        .await;
    let worker_422 =
        stage.deploy(&worker.function.logical_id, &[("REPLICATE_API_BASE", refusing_replicate.uri())]).await;
    let upload = stage.upload(&t).await;
    let g = stage.start(&t, "golden-hour", &upload).await;
    stage.work(&worker_422, &user, &g).await;
    let failed = stage.generation(&t, &g).await;
    assert_eq!((failed["status"].as_str(), failed["refunded"].as_bool()), (Some("failed"), Some(true)), "{failed}");

    // A provider refusal: failed and refunded.
    let refusing = stage
        .deploy(
            &worker.function.logical_id,
            &[(
                "OPENAI_API_BASE",
                common::openai(ResponseTemplate::new(400).set_body_json(
                    json!({"error": {"message": "rejected by the safety system", "type": "image_generation_user_error", "code": "moderation_blocked"}}),
                ))
                .await
                .uri(),
            )],
        )
        .await;
    let upload = stage.upload(&t).await;
    let g = stage.start(&t, "neon-noir", &upload).await;
    stage.work(&refusing, &user, &g).await;
    let failed = stage.generation(&t, &g).await;
    assert_eq!((failed["status"].as_str(), failed["refunded"].as_bool()), (Some("failed"), Some(true)), "{failed}");

    // The photo is gone before the worker reads it (expired): S3's 404, failed and refunded.
    let upload = stage.upload(&t).await;
    let g = stage.start(&t, "neon-noir", &upload).await;
    let listed =
        stage.s3.list_objects_v2().bucket(&stage.loopback.bucket).prefix(format!("uploads/{user}/")).send().await;
    for object in listed.unwrap().contents() {
        stage.s3.delete_object().bucket(&stage.loopback.bucket).key(object.key().unwrap()).send().await.unwrap();
    }
    stage.work(worker, &user, &g).await;
    assert_eq!(stage.generation(&t, &g).await["status"], "failed");

    // A render outlives its deadline: the reconciler fails and refunds it while the provider works, and the
    // worker's late result is deleted. Beside it, a job no worker ever took is refunded too.
    let slow = stage
        .deploy(
            &worker.function.logical_id,
            &[("OPENAI_API_BASE", common::openai(openai_success().set_delay(Duration::from_secs(3))).await.uri())],
        )
        .await;
    let upload = stage.upload(&t).await;
    let lost = stage.start(&t, "neon-noir", &upload).await;
    let stuck = stage.start(&t, "neon-noir", &upload).await;
    let reconcile_meanwhile = async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        stage.reconcile(3600).await
    };
    let ((), reconciled) = tokio::join!(stage.work(&slow, &user, &lost), reconcile_meanwhile);
    assert_eq!(reconciled["refunded"], 2, "{reconciled}");
    for id in [&lost, &stuck] {
        let g = stage.generation(&t, id).await;
        assert_eq!((g["status"].as_str(), g["outputUrl"].as_str()), (Some("failed"), None), "{g}");
        assert_eq!(stage.pushes_about(id).await, [format!("/3/device/{kept}")], "the reconciler's push");
    }

    // Account deletion, interrupted at its first step (the sessions query is denied once) and finished by
    // the reconciler, which then does every step: the character above and its photos go too, and so does a
    // prepared photo a crashed worker left behind.
    stage.leftover_work_photo(&user).await;
    stage.function("account").faults.fail("Query", 1);
    let deleted = stage.http(Method::DELETE, "/v1/me", None, Some(&t)).await;
    assert!(deleted.status().is_server_error(), "the interrupted deletion: {}", deleted.status());
    assert_eq!(stage.reconcile(60).await["deletionsFinished"], 1);
    assert!(stage.objects_of(&user).await.is_empty(), "the reconciler deleted every image");

    // And one that runs through, of an account with a result, a favourite, a character and a leftover; its
    // other character was deleted on its own (photos and record).
    let other = stage.sign_in("+14155550103").await;
    let (t2, u2) = (token(&other), user_id(&other));
    let bought = stage
        .http(Method::POST, "/v1/credits/purchases", Some(stage.purchase_body("2000000000000302")), Some(&t2))
        .await;
    assert_eq!(bought.status(), 200);
    let upload = stage.upload(&t2).await;
    let g = stage.start(&t2, "neon-noir", &upload).await;
    stage.work(worker, &u2, &g).await;
    assert_eq!(stage.http(Method::PUT, "/v1/templates/pop-art/favorite", None, Some(&t2)).await.status(), 204);
    let photo = stage.upload(&t2).await;
    stage.character(&t2, &[&photo]).await;
    let gone = stage.character(&t2, &[&photo]).await;
    let gone = format!("/v1/characters/{}", gone["id"].as_str().unwrap());
    assert_eq!(stage.http(Method::DELETE, &gone, None, Some(&t2)).await.status(), 204);
    stage.leftover_work_photo(&u2).await;
    stage.register_device(&t2, &"c1".repeat(32), "production").await;
    assert_eq!(stage.http(Method::DELETE, "/v1/me", None, Some(&t2)).await.status(), 204);
    assert!(stage.objects_of(&u2).await.is_empty(), "the deletion removed every image");
}

/// Per function: each access IAM evaluates with the operation it came from, or why a call could not be read.
type Recorded = BTreeMap<String, Vec<Result<(Access, String), String>>>;

/// What each function was recorded doing, resolved to what IAM evaluates (or why it could not be).
fn recorded(stage: &Stage) -> Recorded {
    let mut by_function: BTreeMap<String, Vec<_>> = BTreeMap::new();
    let names: BTreeMap<String, Names> = stage.functions.keys().map(|id| (id.clone(), stage.names(id))).collect();
    for call in stage.log.take() {
        let x = &call.exchange;
        let names = names.get(&x.label).unwrap_or_else(|| panic!("a call labelled {:?}", x.label));
        let entry = by_function.entry(x.label.clone()).or_default();
        match accesses(x, names) {
            Ok(list) => entry.extend(list.into_iter().map(|a| Ok((a, call.operation.clone())))),
            Err(e) => entry.push(Err(format!("{} ({})", e, call.operation))),
        }
    }
    by_function
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iam_every_aws_call_of_every_function_is_granted_by_template_yaml() {
    let stage = Stage::new().await;
    journey(&stage).await;
    let recorded = recorded(&stage);
    let mut problems = Vec::new();

    // Everything was exercised.
    let covered = stage.covered.lock().unwrap().clone();
    for (id, f) in &stage.template.functions {
        if recorded.get(id).is_none_or(Vec::is_empty) {
            problems.push(format!("{id}: recorded no AWS call"));
        }
        for e in &f.events {
            if !covered.contains(&(id.clone(), e.name.clone())) {
                problems.push(format!("{id}: its event {} ({}) was never invoked", e.name, e.kind));
            }
        }
    }

    for (id, f) in &stage.template.functions {
        for m in &f.managed {
            if REFUSED_MANAGED.iter().any(|r| m.contains(r)) {
                problems.push(format!("{id}: carries {m}: give it a role with the stream read scoped to its table"));
            }
        }
    }

    // Every call is granted.
    let mut used: BTreeSet<(String, usize)> = BTreeSet::new();
    for (id, calls) in &recorded {
        let f = &stage.template.functions[id];
        for call in calls {
            match call {
                Err(e) => problems.push(format!("{id}: {e}")),
                Ok((access, operation)) => {
                    let granting: Vec<usize> =
                        f.grants.iter().enumerate().filter(|(_, g)| g.allows(access)).map(|(i, _)| i).collect();
                    if granting.is_empty() {
                        problems.push(format!("{id}: {access} (from {operation}) is not granted"));
                    }
                    used.extend(granting.into_iter().map(|i| (id.clone(), i)));
                }
            }
        }
    }

    // Every grant is used or kept for a written reason; no kept entry is stale.
    let mut kept_seen = BTreeSet::new();
    for (id, f) in &stage.template.functions {
        for (i, g) in f.grants.iter().enumerate() {
            if used.contains(&(id.clone(), i)) {
                if KEPT.iter().any(|(k, a, r, _)| k == id && *a == g.action && *r == g.resource) {
                    problems.push(format!("{id}: {g} is in KEPT but a call uses it: take it out of KEPT"));
                }
                continue;
            }
            match KEPT.iter().position(|(k, a, r, _)| k == id && *a == g.action && *r == g.resource) {
                Some(k) => {
                    kept_seen.insert(k);
                }
                None => problems.push(format!(
                    "{id}: {g} is granted but no call uses it: remove it, or add it to KEPT with the reason"
                )),
            }
        }
    }
    for (k, (id, action, resource, _)) in KEPT.iter().enumerate() {
        let granted = stage
            .template
            .functions
            .get(*id)
            .is_some_and(|f| f.grants.iter().any(|g| g.action == *action && g.resource == *resource));
        if !kept_seen.contains(&k) && !granted {
            problems.push(format!("KEPT names {id}: {action} on {resource}, which template.yaml does not grant"));
        }
    }

    if std::env::var_os("FACEMAKE_PRINT_IAM").is_some() {
        for (id, calls) in &recorded {
            let distinct: BTreeSet<String> = calls
                .iter()
                .filter_map(|c| c.as_ref().ok())
                .map(|(a, op)| format!("{op}: {}", generalise(a)))
                .collect();
            println!(
                "{id} ({} calls; attached by SAM, unchecked: {})",
                calls.len(),
                stage.template.functions[id].managed.join(", ")
            );
            for line in distinct {
                println!("  {line}");
            }
        }
    }
    assert!(problems.is_empty(), "IAM conformance:\n{}", problems.join("\n"));

    // The check has teeth: without any one grant a call uses, some call is refused (a grant whose removal
    // refuses nothing duplicates another and should go).
    let mut redundant = Vec::new();
    for (id, i) in &used {
        let f = &stage.template.functions[id];
        let still_granted = recorded[id]
            .iter()
            .filter_map(|c| c.as_ref().ok())
            .all(|(access, _)| f.grants.iter().enumerate().any(|(j, g)| j != *i && g.allows(access)));
        if still_granted {
            redundant
                .push(format!("{id}: {} is redundant: every call it allows is allowed by another grant", f.grants[*i]));
        }
    }
    assert!(redundant.is_empty(), "{}", redundant.join("\n"));
}

/// An access with the per-user parts of its resource elided, for the printed summary.
fn generalise(access: &Access) -> String {
    let resource = access
        .resource
        .split('/')
        .enumerate()
        .map(|(i, part)| if i >= 2 && access.resource.starts_with("arn:aws:s3") { "…" } else { part })
        .collect::<Vec<_>>()
        .join("/");
    let context: String =
        access.context.iter().map(|(k, v)| format!(" ({k}={})", v.split('/').next().unwrap_or(v))).collect();
    format!("{} on {resource}{context}", access.action)
}
