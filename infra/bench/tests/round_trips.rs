//! How many sequential AWS calls each route's warm request waits on, counted, not estimated: the deployed
//! composition (`Deps::deployed`: DynamoDB, S3 and Secrets Manager adapters) runs every router against
//! DynamoDB Local and moto through a counting proxy that holds each call 25 ms, so calls made one after the
//! other never overlap and calls made together always do (`bench::proxy::depth`).
//!
//! Each route is called once to warm the container (secrets, catalogue snapshot), then measured. The counts
//! must equal the "sequential" and "calls" columns of the table in docs/benchmarks.md ("Round trips"), so a
//! route that gains a round trip fails here, and so does a table that was not updated after an improvement.
//! `FACEMAKE_PRINT_ROUND_TRIPS=1` prints the measured table.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use appstore_test_chain::{notification, TestChain, Transaction};
use bench::proxy::{depth, Call, CallLog, CountingProxy};
use bench::LoopbackStage;
use facemake::config::Config;
use facemake::domain::UserId;
use facemake::ports::JobRef;
use facemake::wiring::Deps;
use http::Method;
use lambda_http::{Body, Request, Response};
use serde_json::{json, Value};
use testkit::body_json;
use wiremock::MockServer;

mod common;

const DELAY: Duration = Duration::from_millis(25);
const BUNDLE_ID: &str = "app.facemake.ios";

struct Rig {
    deps: Deps,
    router: facemake::http::Router,
    log: CallLog,
    twilio: MockServer,
    chain: TestChain,
    _proxies: (CountingProxy, CountingProxy),
    _openai: MockServer,
}

/// What one measured request did.
struct Measured {
    response: Response<Body>,
    calls: Vec<Call>,
}

fn request(method: Method, path: &str, body: Option<Value>, token: Option<&str>, headers: &[(&str, &str)]) -> Request {
    bench::api_request(method, path, body, token, headers)
}

impl Rig {
    async fn new() -> Self {
        let dynamodb = std::env::var(testkit::DYNAMODB_ENDPOINT_VAR)
            .expect("FACEMAKE_TEST_DYNAMODB_ENDPOINT (DynamoDB Local; infra/scripts/test.sh starts it)");
        let moto = std::env::var("FACEMAKE_TEST_S3_ENDPOINT")
            .expect("FACEMAKE_TEST_S3_ENDPOINT (moto; infra/scripts/test.sh)");
        let prefix = format!("rt{}-", ulid::Ulid::new().to_string().to_lowercase());
        let stage = LoopbackStage::create(&dynamodb, &moto, &prefix).await.unwrap();
        let log = CallLog::default();
        let dynamo_proxy = CountingProxy::start(&dynamodb, DELAY, log.clone()).await.unwrap();
        let moto_proxy = CountingProxy::start(&moto, DELAY, log.clone()).await.unwrap();

        let twilio = common::twilio().await;
        let openai = common::openai(common::openai_success()).await;
        let chain = TestChain::generate().unwrap();
        let env = common::function_env(&stage, &twilio, &openai, &chain);
        let env: std::collections::HashMap<&str, &str> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let config = Config::from(&env).unwrap();
        let sdk = bench::sdk(&moto_proxy.url);
        let deps = Deps::deployed_with_endpoints(&config, &sdk, &dynamo_proxy.url, &moto_proxy.url);
        let router = send_code::router(Arc::new(send_code::State::new(&deps)))
            .merge(verify_code::router(Arc::new(verify_code::State::new(&deps))))
            .merge(account::router(Arc::new(account::State::new(&deps))))
            .merge(templates::router(Arc::new(templates::State::new(&deps))))
            .merge(credits::router(Arc::new(credits::State::new(&deps).unwrap())))
            .merge(app_store_notifications::router(Arc::new(app_store_notifications::State::new(&deps).unwrap())))
            .merge(generate::router(Arc::new(generate::State::new(&deps))))
            .merge(characters::router(Arc::new(characters::State::new(&deps))));
        Self { deps, router, log, twilio, chain, _proxies: (dynamo_proxy, moto_proxy), _openai: openai }
    }

    async fn call(&self, req: Request) -> Response<Body> {
        self.router.handle(req).await
    }

    async fn measure(&self, req: Request) -> Measured {
        self.log.take();
        let response = self.router.handle(req).await;
        Measured { response, calls: self.log.take() }
    }

    /// The code texted to `phone` most recently.
    async fn last_code(&self, phone: &str) -> String {
        common::last_code(&self.twilio, phone).await
    }

    fn send_code(&self, phone: &str) -> Request {
        request(Method::POST, "/v1/auth/send-code", Some(json!({"phone": phone})), None, &[])
    }

    fn verify(&self, phone: &str, code: &str) -> Request {
        request(Method::POST, "/v1/auth/verify-code", Some(json!({"phone": phone, "code": code})), None, &[])
    }

    /// Signs `phone` in (sending a code first); the session's JSON.
    async fn sign_in(&self, phone: &str) -> Value {
        let sent = self.call(self.send_code(phone)).await;
        assert_eq!(sent.status(), 202, "{}", body_json(&sent));
        let code = self.last_code(phone).await;
        let response = self.call(self.verify(phone, &code)).await;
        assert_eq!(response.status(), 200, "{}", body_json(&response));
        body_json(&response)
    }

    fn purchase(&self, token: &str, transaction_id: &str) -> Request {
        let signed = self
            .chain
            .sign(&Transaction::consumable(transaction_id, "app.facemake.credits.10", BUNDLE_ID, "Sandbox").payload())
            .unwrap();
        request(Method::POST, "/v1/credits/purchases", Some(json!({"signedTransaction": signed})), Some(token), &[])
    }

    fn refund(&self, transaction_id: &str, uuid: &str) -> Request {
        let transaction = self
            .chain
            .sign(&Transaction::consumable(transaction_id, "app.facemake.credits.10", BUNDLE_ID, "Sandbox").payload())
            .unwrap();
        let payload = notification("REFUND", uuid, BUNDLE_ID, "Sandbox", Some(&transaction));
        let signed = self.chain.sign(&payload).unwrap();
        request(Method::POST, "/v1/webhooks/app-store", Some(json!({"signedPayload": signed})), None, &[])
    }

    /// A presigned upload slot, with a small real JPEG put through it (as the app's PUT would).
    async fn upload(&self, token: &str) -> String {
        let photo = common::jpeg();
        let body = json!({"contentType": "image/jpeg", "contentLength": photo.len()});
        let slot = self.call(request(Method::POST, "/v1/uploads", Some(body), Some(token), &[])).await;
        assert_eq!(slot.status(), 201, "{}", body_json(&slot));
        let slot = body_json(&slot);
        common::put_photo(&slot, photo).await;
        slot["uploadId"].as_str().unwrap().to_owned()
    }

    fn start(&self, token: &str, key: &str, upload: &str) -> Request {
        request(
            Method::POST,
            "/v1/generations",
            Some(json!({"templateId": "neon-noir", "uploadId": upload})),
            Some(token),
            &[("idempotency-key", key)],
        )
    }
}

/// Measured rows: route → (sequential calls, calls in all, the operations in order).
type Rows = BTreeMap<&'static str, (usize, usize, Vec<String>)>;

fn record(rows: &mut Rows, route: &'static str, m: &Measured, expect_status: u16) {
    assert_eq!(m.response.status().as_u16(), expect_status, "{route}: {}", body_json(&m.response));
    let ops = m.calls.iter().map(|c| c.operation.clone()).collect();
    rows.insert(route, (depth(&m.calls), m.calls.len(), ops));
}

async fn measure_every_route(rig: &Rig) -> Rows {
    let mut rows = Rows::new();
    // A first user warms the container: secrets, the catalogue snapshot, the connection pools.
    let warm = rig.sign_in("+14155550100").await;
    let warm_token = warm["accessToken"].as_str().unwrap();
    rig.call(request(Method::GET, "/v1/templates", None, Some(warm_token), &[])).await;

    // Sign-in.
    let phone = "+14155550101";
    let m = rig.measure(rig.send_code(phone)).await;
    record(&mut rows, "POST /v1/auth/send-code", &m, 202);
    let code = rig.last_code(phone).await;
    let m = rig.measure(rig.verify(phone, &code)).await;
    record(&mut rows, "POST /v1/auth/verify-code (first sign-in)", &m, 200);
    let session = body_json(&m.response);
    rig.call(rig.send_code(phone)).await;
    let code = rig.last_code(phone).await;
    let m = rig.measure(rig.verify(phone, &code)).await;
    record(&mut rows, "POST /v1/auth/verify-code (returning user)", &m, 200);
    let session2 = body_json(&m.response);
    let refresh = session2["refreshToken"].as_str().unwrap();
    let m =
        rig.measure(request(Method::POST, "/v1/auth/refresh", Some(json!({"refreshToken": refresh})), None, &[])).await;
    record(&mut rows, "POST /v1/auth/refresh", &m, 200);
    let token = session["accessToken"].as_str().unwrap().to_owned();
    let token = token.as_str();
    let old_refresh = session["refreshToken"].as_str().unwrap();
    let m = rig
        .measure(request(Method::POST, "/v1/auth/logout", Some(json!({"refreshToken": old_refresh})), Some(token), &[]))
        .await;
    record(&mut rows, "POST /v1/auth/logout", &m, 204);

    // Account.
    let m = rig.measure(request(Method::GET, "/v1/me", None, Some(token), &[])).await;
    record(&mut rows, "GET /v1/me", &m, 200);
    let m = rig.measure(request(Method::PATCH, "/v1/me", Some(json!({"displayName": "Ada"})), Some(token), &[])).await;
    record(&mut rows, "PATCH /v1/me", &m, 200);
    let device = format!("/v1/me/devices/{}", "a1".repeat(32));
    let body = Some(json!({"environment": "sandbox"}));
    let m = rig.measure(request(Method::PUT, &device, body, Some(token), &[])).await;
    record(&mut rows, "PUT /v1/me/devices/{token}", &m, 204);
    let m = rig.measure(request(Method::DELETE, &device, None, Some(token), &[])).await;
    record(&mut rows, "DELETE /v1/me/devices/{token}", &m, 204);

    // Catalogue.
    let m = rig.measure(request(Method::GET, "/v1/templates?limit=5", None, None, &[])).await;
    record(&mut rows, "GET /v1/templates (anonymous)", &m, 200);
    let m = rig.measure(request(Method::GET, "/v1/templates?limit=5", None, Some(token), &[])).await;
    record(&mut rows, "GET /v1/templates (signed in)", &m, 200);
    let m = rig.measure(request(Method::GET, "/v1/templates/neon-noir", None, None, &[])).await;
    record(&mut rows, "GET /v1/templates/{id} (anonymous)", &m, 200);
    let m = rig.measure(request(Method::GET, "/v1/templates/categories", None, None, &[])).await;
    record(&mut rows, "GET /v1/templates/categories", &m, 200);
    let m = rig.measure(request(Method::PUT, "/v1/templates/neon-noir/favorite", None, Some(token), &[])).await;
    record(&mut rows, "PUT /v1/templates/{id}/favorite", &m, 204);
    let m = rig.measure(request(Method::GET, "/v1/me/favorites", None, Some(token), &[])).await;
    record(&mut rows, "GET /v1/me/favorites", &m, 200);
    let m = rig.measure(request(Method::DELETE, "/v1/templates/neon-noir/favorite", None, Some(token), &[])).await;
    record(&mut rows, "DELETE /v1/templates/{id}/favorite", &m, 204);

    // Credits.
    let m = rig.measure(request(Method::GET, "/v1/credits", None, Some(token), &[])).await;
    record(&mut rows, "GET /v1/credits", &m, 200);
    let m = rig.measure(rig.purchase(token, "2000000000000101")).await;
    record(&mut rows, "POST /v1/credits/purchases", &m, 200);
    let m = rig.measure(rig.purchase(token, "2000000000000101")).await;
    record(&mut rows, "POST /v1/credits/purchases (repeat)", &m, 200);
    let m = rig.measure(request(Method::GET, "/v1/credits/history?limit=10", None, Some(token), &[])).await;
    record(&mut rows, "GET /v1/credits/history", &m, 200);
    let m = rig.measure(rig.refund("2000000000000101", "5f0c0000-0000-4000-8000-000000000001")).await;
    record(&mut rows, "POST /v1/webhooks/app-store (refund)", &m, 200);

    // Generation. A first start warms the generate function's catalogue snapshot.
    let upload_id = rig.upload(token).await;
    let warm_start = rig.call(rig.start(token, "key-0", &upload_id)).await;
    assert_eq!(warm_start.status(), 202, "{}", body_json(&warm_start));
    let m = rig
        .measure(request(
            Method::POST,
            "/v1/uploads",
            Some(json!({"contentType": "image/jpeg", "contentLength": 1000})),
            Some(token),
            &[],
        ))
        .await;
    record(&mut rows, "POST /v1/uploads", &m, 201);
    let m = rig.measure(rig.start(token, "key-1", &upload_id)).await;
    record(&mut rows, "POST /v1/generations", &m, 202);
    let generation = body_json(&m.response)["generation"]["id"].as_str().unwrap().to_owned();
    let m = rig.measure(rig.start(token, "key-1", &upload_id)).await;
    record(&mut rows, "POST /v1/generations (repeated key)", &m, 202);

    let user = UserId::parse(session["user"]["id"].as_str().unwrap()).unwrap();
    let job = JobRef { user_id: user.clone(), generation_id: generation.clone() };
    let worker = rig.deps.worker();
    // The worker's first job fetches the provider secret; a second job is the warm one measured.
    worker.process_delivery(&job, Some("evt-1")).await.unwrap();
    let m2 = rig.measure(rig.start(token, "key-2", &upload_id)).await;
    let second = body_json(&m2.response)["generation"]["id"].as_str().unwrap().to_owned();
    rig.log.take();
    let result = worker.process_delivery(&JobRef { user_id: user.clone(), generation_id: second }, Some("evt-2")).await;
    let calls = rig.log.take();
    assert!(matches!(result, Ok(facemake::services::generation::JobResult::Succeeded { .. })), "{result:?}");
    let ops = calls.iter().map(|c| c.operation.clone()).collect();
    rows.insert("generation worker, one job (succeeded)", (depth(&calls), calls.len(), ops));

    let m = rig.measure(request(Method::GET, &format!("/v1/generations/{generation}"), None, Some(token), &[])).await;
    record(&mut rows, "GET /v1/generations/{id}", &m, 200);
    assert_eq!(body_json(&m.response)["status"], "succeeded");
    let m = rig.measure(request(Method::GET, "/v1/generations?limit=10", None, Some(token), &[])).await;
    record(&mut rows, "GET /v1/generations", &m, 200);
    let m =
        rig.measure(request(Method::DELETE, &format!("/v1/generations/{generation}"), None, Some(token), &[])).await;
    record(&mut rows, "DELETE /v1/generations/{id}", &m, 204);
    assert!(rig.deps.store.generation(&user, &generation).await.unwrap().is_none());

    // Characters: one of two photos, read and prepared two at a time; a generation from it and its job.
    let bought = rig.call(rig.purchase(token, "2000000000000199")).await;
    assert_eq!(bought.status(), 200, "{}", body_json(&bought));
    let photos = [rig.upload(token).await, rig.upload(token).await];
    let body = json!({"name": "Ada", "uploadIds": photos});
    let m = rig.measure(request(Method::POST, "/v1/characters", Some(body), Some(token), &[])).await;
    record(&mut rows, "POST /v1/characters (two photos)", &m, 201);
    let character = body_json(&m.response)["id"].as_str().unwrap().to_owned();
    let m = rig.measure(request(Method::GET, "/v1/characters", None, Some(token), &[])).await;
    record(&mut rows, "GET /v1/characters", &m, 200);
    let m = rig.measure(request(Method::GET, &format!("/v1/characters/{character}"), None, Some(token), &[])).await;
    record(&mut rows, "GET /v1/characters/{id}", &m, 200);
    let rename = Some(json!({"name": "Ada L."}));
    let m = rig.measure(request(Method::PATCH, &format!("/v1/characters/{character}"), rename, Some(token), &[])).await;
    record(&mut rows, "PATCH /v1/characters/{id}", &m, 200);
    let from_character = json!({"templateId": "neon-noir", "characterId": character});
    let start =
        request(Method::POST, "/v1/generations", Some(from_character), Some(token), &[("idempotency-key", "c-1")]);
    let m = rig.measure(start).await;
    record(&mut rows, "POST /v1/generations (from a character)", &m, 202);
    let id = body_json(&m.response)["generation"]["id"].as_str().unwrap().to_owned();
    rig.log.take();
    let result = worker.process_delivery(&JobRef { user_id: user.clone(), generation_id: id }, Some("evt-3")).await;
    let calls = rig.log.take();
    assert!(matches!(result, Ok(facemake::services::generation::JobResult::Succeeded { .. })), "{result:?}");
    let ops = calls.iter().map(|c| c.operation.clone()).collect();
    rows.insert("generation worker, one job from a two-photo character", (depth(&calls), calls.len(), ops));
    let m = rig.measure(request(Method::DELETE, &format!("/v1/characters/{character}"), None, Some(token), &[])).await;
    record(&mut rows, "DELETE /v1/characters/{id}", &m, 204);

    rig.log.take();
    let reconciled = worker.reconcile().await.unwrap();
    let calls = rig.log.take();
    assert_eq!(reconciled, 0);
    let ops = calls.iter().map(|c| c.operation.clone()).collect();
    rows.insert("generation reconciler, nothing due", (depth(&calls), calls.len(), ops));
    rows
}

/// The "Round trips" table of docs/benchmarks.md: route → (sequential, calls).
fn documented() -> BTreeMap<String, (usize, usize)> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/benchmarks.md")).unwrap();
    let section = doc.split("## Round trips").nth(1).expect("docs/benchmarks.md has a \"## Round trips\" section");
    let section = section.split("\n## ").next().unwrap_or(section);
    let mut rows = BTreeMap::new();
    for line in section.lines().filter(|l| l.starts_with("| ") && !l.starts_with("| route")) {
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        let number = |i: usize| cells.get(i).and_then(|c| c.parse::<usize>().ok());
        if let (Some(route), Some(sequential), Some(calls)) = (cells.first(), number(1), number(3)) {
            rows.insert(route.trim_matches('`').to_owned(), (sequential, calls));
        }
    }
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_makes_the_documented_number_of_sequential_aws_calls() {
    let rig = Rig::new().await;
    let measured = measure_every_route(&rig).await;
    if std::env::var_os("FACEMAKE_PRINT_ROUND_TRIPS").is_some() {
        println!("| route | sequential | minimum | calls | operations, in order of arrival |");
        println!("|---|---:|---:|---:|---|");
        for (route, (depth, calls, ops)) in &measured {
            println!("| {route} | {depth} | ? | {calls} | {} |", ops.join(", "));
        }
    }
    let documented = documented();
    let mut wrong = Vec::new();
    for (route, (depth, calls, ops)) in &measured {
        match documented.get(*route) {
            Some(&(d, c)) if (d, c) == (*depth, *calls) => {}
            Some(&(d, c)) => wrong.push(format!(
                "{route}: measured {depth} sequential / {calls} calls ({}), documented {d} / {c}",
                ops.join(", ")
            )),
            None => wrong.push(format!("{route}: measured {depth} / {calls}, not in docs/benchmarks.md")),
        }
    }
    for route in documented.keys() {
        if !measured.contains_key(route.as_str()) {
            wrong.push(format!("{route}: documented but not measured"));
        }
    }
    assert!(wrong.is_empty(), "round trips differ from docs/benchmarks.md:\n{}", wrong.join("\n"));
}
