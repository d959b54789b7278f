//! Shared pieces of the benchmark tools: order statistics, and a stage of loopback stand-ins (DynamoDB Local
//! for the tables, moto for the bucket and the secrets) that a deployed function can be pointed at; [`invoke`]
//! builds such a stage from template.yaml for one function (infra/scripts/invoke.sh).

use std::collections::BTreeMap;

/// The `q` quantile (0.0–1.0) of `values` by the nearest-rank method; `None` when empty.
pub fn quantile(values: &[f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = (q * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// The median of `values` (the nearest-rank 50th percentile), or NaN when empty.
pub fn median(values: &[f64]) -> f64 {
    quantile(values, 0.5).unwrap_or(f64::NAN)
}

/// The SDK configuration a Lambda function would load, with fixed test credentials.
pub fn sdk(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_dynamodb::config::SharedCredentialsProvider::new(
            aws_sdk_dynamodb::config::Credentials::new("bench", "bench", None, None, "bench"),
        ))
        .build()
}

/// An API Gateway (HTTP API) request as the deployed function receives it, with `user-agent`, a JSON body
/// and a bearer token when given, from the caller 203.0.113.7.
pub fn api_request(
    method: http::Method,
    path: &str,
    body: Option<serde_json::Value>,
    token: Option<&str>,
    headers: &[(&str, &str)],
) -> lambda_http::Request {
    let mut builder = http::Request::builder().method(method).uri(path).header("user-agent", "bench");
    if body.is_some() {
        builder = builder.header("content-type", "application/json");
    }
    if let Some(token) = token {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let (parts, ()) = builder.body(()).expect("a request built from valid parts").into_parts();
    let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
    let event = local_api::api_gateway_event(&parts, &bytes, "203.0.113.7:4000".parse().expect("an address"));
    lambda_http::request::from_str(&event.to_string()).expect("an API Gateway event lambda_http reads")
}

/// A stage on loopback stand-ins: its tables (created in DynamoDB Local under a prefix and seeded with the
/// catalogue), its bucket and its seven secrets (in moto).
pub struct LoopbackStage {
    pub dynamodb_endpoint: String,
    pub moto_endpoint: String,
    pub tables: facemake::config::Tables,
    pub bucket: String,
    pub app_secret_arn: String,
    pub sms_secret_arn: String,
    pub provider_secret_arn: String,
    pub app_store_api_secret_arn: String,
    /// Replicate's webhook signing key: the local one (`facemake::adapters::webhooks::LOCAL_SIGNING_KEY`).
    pub replicate_webhook_secret_arn: String,
    /// The OpenAI project's webhook signing key: the local one, as Replicate's.
    pub openai_webhook_secret_arn: String,
    /// An APNs auth key made for this stage (`apns_key` holds it, for a stand-in that verifies its tokens).
    pub apns_key_secret_arn: String,
    pub apns_key: testkit::ApnsTestKey,
}

impl LoopbackStage {
    /// [`LoopbackStage::create`] at the stand-ins the test command and bench.sh start
    /// (`FACEMAKE_TEST_DYNAMODB_ENDPOINT`, `FACEMAKE_TEST_S3_ENDPOINT`).
    pub async fn from_test_env(prefix: &str) -> Result<Self, String> {
        let var = |name: &str| std::env::var(name).map_err(|_| format!("{name} is not set (bench.sh sets it)"));
        Self::create(&var("FACEMAKE_TEST_DYNAMODB_ENDPOINT")?, &var("FACEMAKE_TEST_S3_ENDPOINT")?, prefix).await
    }

    /// Creates the stage's resources under `prefix`, or takes them over where they are there already.
    pub async fn create(dynamodb_endpoint: &str, moto_endpoint: &str, prefix: &str) -> Result<Self, String> {
        let tables = ensure_tables(dynamodb_endpoint, prefix).await?;
        let moto = sdk(moto_endpoint);
        let bucket = format!("{}images", prefix.to_lowercase());
        ensure_bucket(&moto, &bucket).await?;
        let app = serde_json::json!({"signingKey": "b".repeat(64)});
        let app_secret_arn = ensure_secret(&moto, &format!("{prefix}app"), &app.to_string()).await?;
        let sms = serde_json::json!({
            "accountSid": "AC1", "authToken": "tok", "fromNumber": "+15005550006", "messagingServiceSid": ""
        });
        let sms_secret_arn = ensure_secret(&moto, &format!("{prefix}sms"), &sms.to_string()).await?;
        let providers = serde_json::json!({"openaiApiKey": "sk-bench", "replicateApiToken": "r8_bench"});
        let provider_secret_arn = ensure_secret(&moto, &format!("{prefix}providers"), &providers.to_string()).await?;
        // The template's placeholder: no In-App Purchase key, so consumption requests read it and send nothing.
        let api_key = serde_json::json!({"keyId": "", "issuerId": "", "privateKey": ""});
        let app_store_api_secret_arn =
            ensure_secret(&moto, &format!("{prefix}appstoreapi"), &api_key.to_string()).await?;
        let webhook_key = serde_json::json!({"signingKey": facemake::adapters::webhooks::LOCAL_SIGNING_KEY});
        let replicate_webhook_secret_arn =
            ensure_secret(&moto, &format!("{prefix}replicatewebhook"), &webhook_key.to_string()).await?;
        let openai_webhook_secret_arn =
            ensure_secret(&moto, &format!("{prefix}openaiwebhook"), &webhook_key.to_string()).await?;
        let apns_key = testkit::ApnsTestKey::generate();
        let apns_key_secret_arn = ensure_secret(&moto, &format!("{prefix}apns"), &apns_key.secret_json()).await?;
        Ok(Self {
            dynamodb_endpoint: dynamodb_endpoint.to_owned(),
            moto_endpoint: moto_endpoint.to_owned(),
            tables,
            bucket,
            app_secret_arn,
            sms_secret_arn,
            provider_secret_arn,
            app_store_api_secret_arn,
            replicate_webhook_secret_arn,
            openai_webhook_secret_arn,
            apns_key_secret_arn,
            apns_key,
        })
    }

    /// The environment template.yaml gives a function of this stage, with every AWS endpoint and every
    /// outside service (`stub`: Twilio and the image providers) on loopback.
    pub fn function_env(&self, stub: &str) -> BTreeMap<String, String> {
        let t = &self.tables;
        [
            ("STAGE", "bench"),
            ("LOG_FORMAT", "json"),
            ("RUST_LOG", "info"),
            ("USERS_TABLE", t.users.as_str()),
            ("CREDITS_TABLE", t.credits.as_str()),
            ("CODES_TABLE", t.codes.as_str()),
            ("SESSIONS_TABLE", t.sessions.as_str()),
            ("CATALOGUE_TABLE", t.catalogue.as_str()),
            ("GENERATIONS_TABLE", t.generations.as_str()),
            ("CHARACTERS_TABLE", t.characters.as_str()),
            ("DEVICES_TABLE", t.devices.as_str()),
            ("IMAGES_BUCKET", self.bucket.as_str()),
            ("APP_SECRET_ARN", self.app_secret_arn.as_str()),
            ("SMS_SECRET_ARN", self.sms_secret_arn.as_str()),
            ("PROVIDER_SECRET_ARN", self.provider_secret_arn.as_str()),
            ("APP_STORE_API_SECRET_ARN", self.app_store_api_secret_arn.as_str()),
            ("REPLICATE_WEBHOOK_SECRET_ARN", self.replicate_webhook_secret_arn.as_str()),
            ("OPENAI_WEBHOOK_SECRET_ARN", self.openai_webhook_secret_arn.as_str()),
            ("APNS_KEY_SECRET_ARN", self.apns_key_secret_arn.as_str()),
            ("TWILIO_API_BASE", stub),
            // APNs too (the IAM test gives it a stand-in of its own).
            ("APNS_PRODUCTION_URL", stub),
            ("APNS_SANDBOX_URL", stub),
            ("OPENAI_API_BASE", stub),
            ("REPLICATE_API_BASE", stub),
            // The stub serves the output files too (a deployed stage keeps the default, replicate.delivery).
            ("REPLICATE_OUTPUT_HOSTS", stub),
            ("PREVIEW_BASE_URL", "https://d111111abcdef8.cloudfront.net"),
            ("CREDIT_PRODUCTS", "app.facemake.credits.10=10,app.facemake.credits.50=50"),
            ("APP_STORE_BUNDLE_ID", "app.facemake.ios"),
            ("APP_STORE_ENVIRONMENT", "Sandbox"),
            ("ALLOWED_COUNTRIES", "US,GB"),
            ("TOKEN_ISSUER", "facemake-bench"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_DEFAULT_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "bench"),
            ("AWS_SECRET_ACCESS_KEY", "bench"),
            ("AWS_SESSION_TOKEN", "bench"),
            ("AWS_ENDPOINT_URL_DYNAMODB", self.dynamodb_endpoint.as_str()),
            ("AWS_ENDPOINT_URL_S3", self.moto_endpoint.as_str()),
            ("AWS_ENDPOINT_URL_SECRETS_MANAGER", self.moto_endpoint.as_str()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }
}

/// The tables of template.yaml in DynamoDB Local at `endpoint`, named `{prefix}{LogicalId}` (created when they
/// are not there), with the seed catalogue written into them.
pub async fn ensure_tables(endpoint: &str, prefix: &str) -> Result<facemake::config::Tables, String> {
    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk(endpoint));
    let tables =
        testkit::schema::create_tables(&dynamodb, prefix).await.map_err(|e| format!("creating the tables: {e}"))?;
    let store = facemake::adapters::dynamodb::DynamoStore::new(dynamodb, tables.clone());
    facemake::services::catalogue::seed_catalogue(&store, &local_api::catalogue_dir().join("catalogue.yaml")).await?;
    Ok(tables)
}

/// The bucket `name` in moto (`moto` is [`sdk`] at its endpoint), created when it is not there.
pub async fn ensure_bucket(moto: &aws_config::SdkConfig, name: &str) -> Result<(), String> {
    let s3 = aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(moto).force_path_style(true).build());
    let Err(e) = s3.create_bucket().bucket(name).send().await else { return Ok(()) };
    // Already there (moto answers BucketAlreadyExists or BucketAlreadyOwnedByYou): ours if we can see it.
    match s3.head_bucket().bucket(name).send().await {
        Ok(_) => Ok(()),
        Err(_) => Err(format!("creating the bucket {name}: {}", aws_sdk_s3::error::DisplayErrorContext(e))),
    }
}

/// The secret `name` in moto holding `value` (created, or given that value when it is there); its ARN.
pub async fn ensure_secret(moto: &aws_config::SdkConfig, name: &str, value: &str) -> Result<String, String> {
    let secrets = aws_sdk_secretsmanager::Client::new(moto);
    let failed = |what: &str, e: &dyn std::fmt::Display| format!("{what} the secret {name}: {e}");
    let arn = match secrets.create_secret().name(name).secret_string(value).send().await {
        Ok(out) => out.arn().map(str::to_owned),
        Err(e) if e.as_service_error().is_some_and(|se| se.is_resource_exists_exception()) => {
            let put = secrets.put_secret_value().secret_id(name).secret_string(value).send().await;
            put.map_err(|e| failed("updating", &aws_sdk_secretsmanager::error::DisplayErrorContext(e)))?
                .arn()
                .map(str::to_owned)
        }
        Err(e) => return Err(failed("creating", &aws_sdk_secretsmanager::error::DisplayErrorContext(e))),
    };
    arn.ok_or_else(|| format!("moto gave the secret {name} no ARN"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_by_nearest_rank() {
        let v = [5.0, 1.0, 4.0, 2.0, 3.0];
        assert_eq!(quantile(&v, 0.5), Some(3.0));
        assert_eq!(quantile(&v, 0.0), Some(1.0));
        assert_eq!(quantile(&v, 1.0), Some(5.0));
        assert_eq!(quantile(&v, 0.99), Some(5.0));
        assert_eq!(quantile(&v, 0.2), Some(1.0));
        assert_eq!(quantile(&v, 0.21), Some(2.0));
        assert_eq!(quantile(&[], 0.5), None);
        assert!(median(&[]).is_nan());
    }
}

pub mod iam;
pub mod invoke;

pub mod proxy {
    //! A counting proxy for AWS calls: the SDK clients are pointed at it instead of DynamoDB Local or moto,
    //! it holds each call for a fixed delay, forwards it, and logs when it arrived and when it was answered.
    //! Calls a request makes one after the other then never overlap, and calls it makes together always do,
    //! so the log tells how many *sequential* round trips the request waited on ([`depth`]).

    use std::convert::Infallible;
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use hyper::body::Incoming;
    use hyper::service::service_fn;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use tokio::net::TcpListener;

    /// One AWS call as the proxy saw it.
    #[derive(Debug, Clone)]
    pub struct Call {
        /// `GetItem`, `TransactWriteItems`, `GetSecretValue`, `S3 HeadObject`, ...
        pub operation: String,
        pub arrived: Instant,
        pub answered: Instant,
        /// The whole request, who sent it and the answer's status (what the IAM conformance test reads).
        pub exchange: Arc<crate::iam::Exchange>,
    }

    /// Calls the proxy answers itself with an AccessDenied instead of forwarding: a way to interrupt a
    /// request half-way, as a denied or failed call would. Each entry is (operation, how many more times).
    #[derive(Debug, Clone, Default)]
    pub struct Faults(Arc<Mutex<Vec<(String, usize)>>>);

    impl Faults {
        /// Fails the next `times` calls of `operation` (as [`Call::operation`] names it, e.g. `S3 ListObjectsV2`).
        pub fn fail(&self, operation: &str, times: usize) {
            self.0.lock().unwrap_or_else(|p| p.into_inner()).push((operation.to_owned(), times));
        }

        fn take(&self, operation: &str) -> bool {
            let mut faults = self.0.lock().unwrap_or_else(|p| p.into_inner());
            match faults.iter_mut().find(|(op, n)| op == operation && *n > 0) {
                Some((_, n)) => {
                    *n -= 1;
                    true
                }
                None => false,
            }
        }
    }

    /// The calls of every proxy sharing it, in arrival order.
    #[derive(Debug, Clone, Default)]
    pub struct CallLog(Arc<Mutex<Vec<Call>>>);

    impl CallLog {
        pub fn take(&self) -> Vec<Call> {
            let mut calls = std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()));
            calls.sort_by_key(|c| c.arrived);
            calls
        }

        /// Whether a call matching `pred` was logged (the log is left as it is).
        pub fn any(&self, pred: impl Fn(&Call) -> bool) -> bool {
            self.0.lock().unwrap_or_else(|p| p.into_inner()).iter().any(pred)
        }

        fn push(&self, call: Call) {
            self.0.lock().unwrap_or_else(|p| p.into_inner()).push(call);
        }
    }

    /// How many calls of `calls` ran one after the other at most: a call's depth is one more than the
    /// deepest call answered before it arrived.
    pub fn depth(calls: &[Call]) -> usize {
        let mut depths: Vec<usize> = Vec::with_capacity(calls.len());
        for (i, call) in calls.iter().enumerate() {
            let before = calls[..i]
                .iter()
                .zip(&depths)
                .filter(|(p, _)| p.answered <= call.arrived)
                .map(|(_, d)| *d)
                .max()
                .unwrap_or(0);
            depths.push(before + 1);
        }
        depths.into_iter().max().unwrap_or(0)
    }

    /// The operation a request names: DynamoDB and Secrets Manager in `x-amz-target`, S3 by method and query.
    fn operation(req: &http::request::Parts) -> String {
        if let Some(target) = req.headers.get("x-amz-target").and_then(|v| v.to_str().ok()) {
            return target.rsplit('.').next().unwrap_or(target).to_owned();
        }
        let query = req.uri.query().unwrap_or("");
        let op = match req.method.as_str() {
            "HEAD" => "HeadObject",
            "GET" if query.contains("list-type=2") => "ListObjectsV2",
            "GET" => "GetObject",
            "PUT" => "PutObject",
            "DELETE" => "DeleteObject",
            "POST" if query.contains("delete") => "DeleteObjects",
            other => other,
        };
        format!("S3 {op}")
    }

    /// A proxy in front of `upstream` on a loopback port.
    pub struct CountingProxy {
        pub url: String,
        task: tokio::task::JoinHandle<()>,
    }

    impl Drop for CountingProxy {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    impl CountingProxy {
        pub async fn start(upstream: &str, delay: Duration, log: CallLog) -> std::io::Result<Self> {
            Self::start_labelled(upstream, delay, log, "", Faults::default()).await
        }

        /// [`CountingProxy::start`] whose calls carry `label` (who makes them) and that injects `faults`.
        pub async fn start_labelled(
            upstream: &str,
            delay: Duration,
            log: CallLog,
            label: &str,
            faults: Faults,
        ) -> std::io::Result<Self> {
            let label: Arc<str> = Arc::from(label);
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            let url = format!("http://{}", listener.local_addr()?);
            let upstream = upstream.trim_end_matches('/').to_owned();
            let client = reqwest::Client::builder().no_proxy().build().map_err(std::io::Error::other)?;
            let task = tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let (client, upstream, log) = (client.clone(), upstream.clone(), log.clone());
                    let (label, faults) = (label.clone(), faults.clone());
                    tokio::spawn(async move {
                        let svc = service_fn(move |req: http::Request<Incoming>| {
                            let (client, upstream, log) = (client.clone(), upstream.clone(), log.clone());
                            let (label, faults) = (label.clone(), faults.clone());
                            async move {
                                let to =
                                    Upstream { client: &client, url: &upstream, delay, label: &label, faults: &faults };
                                Ok::<_, Infallible>(forward(to, &log, req).await)
                            }
                        });
                        let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                            .serve_connection(TokioIo::new(stream), svc)
                            .await;
                    });
                }
            });
            Ok(Self { url, task })
        }
    }

    struct Upstream<'a> {
        client: &'a reqwest::Client,
        url: &'a str,
        delay: Duration,
        label: &'a str,
        faults: &'a Faults,
    }

    async fn forward(to: Upstream<'_>, log: &CallLog, req: http::Request<Incoming>) -> http::Response<Full<Bytes>> {
        let Upstream { client, url: upstream, delay, label, faults } = to;
        let arrived = Instant::now();
        let (parts, body) = req.into_parts();
        let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        tokio::time::sleep(delay).await;
        let operation = operation(&parts);
        let exchange = |status: u16| {
            Arc::new(crate::iam::Exchange {
                label: label.to_owned(),
                method: parts.method.to_string(),
                path: parts.uri.path().to_owned(),
                query: parts.uri.query().unwrap_or("").to_owned(),
                target: parts.headers.get("x-amz-target").and_then(|v| v.to_str().ok()).map(str::to_owned),
                body: body.clone(),
                status,
            })
        };
        if faults.take(&operation) {
            let denied = if operation.starts_with("S3 ") {
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>AccessDenied</Code><Message>Access Denied (injected)</Message></Error>"
            } else {
                r#"{"__type":"com.amazon.coral.service#AccessDeniedException","message":"injected"}"#
            };
            let mut r = http::Response::new(Full::new(Bytes::from_static(denied.as_bytes())));
            *r.status_mut() =
                if operation.starts_with("S3 ") { http::StatusCode::FORBIDDEN } else { http::StatusCode::BAD_REQUEST };
            log.push(Call { operation, arrived, answered: Instant::now(), exchange: exchange(r.status().as_u16()) });
            return r;
        }
        let path = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        let mut out = client.request(parts.method.clone(), format!("{upstream}{path}")).body(body.clone());
        for (name, value) in &parts.headers {
            if name != http::header::HOST && name != http::header::CONTENT_LENGTH {
                out = out.header(name, value);
            }
        }
        let mut response = match out.send().await {
            Ok(upstream_response) => {
                let status = upstream_response.status();
                let headers = upstream_response.headers().clone();
                let bytes = upstream_response.bytes().await.unwrap_or_default();
                let mut r = http::Response::new(Full::new(bytes));
                *r.status_mut() = status;
                for (name, value) in &headers {
                    if name != http::header::CONTENT_LENGTH && name != http::header::TRANSFER_ENCODING {
                        r.headers_mut().insert(name, value.clone());
                    }
                }
                r
            }
            Err(_) => {
                let mut r = http::Response::new(Full::new(Bytes::from_static(b"proxy: upstream unreachable")));
                *r.status_mut() = http::StatusCode::BAD_GATEWAY;
                r
            }
        };
        response.headers_mut().remove(http::header::CONNECTION);
        let status = response.status().as_u16();
        log.push(Call { operation, arrived, answered: Instant::now(), exchange: exchange(status) });
        response
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn call(start_ms: u64, end_ms: u64) -> Call {
            let t0 = Instant::now();
            Call {
                operation: "x".into(),
                arrived: t0 + Duration::from_millis(start_ms),
                answered: t0 + Duration::from_millis(end_ms),
                exchange: Arc::new(crate::iam::Exchange {
                    label: String::new(),
                    method: "POST".into(),
                    path: "/".into(),
                    query: String::new(),
                    target: None,
                    body: Bytes::new(),
                    status: 200,
                }),
            }
        }

        #[test]
        fn depth_counts_calls_that_waited_on_each_other() {
            assert_eq!(depth(&[]), 0);
            assert_eq!(depth(&[call(0, 10)]), 1);
            // Two at once, then one after both: 2.
            assert_eq!(depth(&[call(0, 10), call(1, 11), call(12, 22)]), 2);
            // A chain of three: 3.
            assert_eq!(depth(&[call(0, 10), call(11, 21), call(22, 32)]), 3);
            // A long call beside a chain of two: 2.
            assert_eq!(depth(&[call(0, 30), call(1, 11), call(12, 22)]), 2);
            // A call that started before the first one ended did not wait on it.
            assert_eq!(depth(&[call(0, 10), call(9, 19)]), 1);
        }
    }
}
