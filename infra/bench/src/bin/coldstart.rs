//! Cold starts, measured the way Lambda starts a function: each function's release `bootstrap` is started as
//! a fresh process against a Lambda Runtime API emulator on loopback, and the emulator records
//!
//! - init: from just before the process is spawned to its first `GET /runtime/invocation/next`;
//! - first invoke: from handing it its `events/` fixture to its `POST .../response`;
//! - peak RSS: the process's high-water mark (`VmHWM`) when it polls for the second event, after one invoke.
//!
//! A hello-world `lambda_http` function built the same way runs in the same rounds, interleaved with the
//! others, and every figure is also given as a ratio of its figure. The functions' AWS endpoints point at
//! DynamoDB Local and moto, and Twilio and the image providers at this emulator, so no real network is
//! involved.
//!
//!   coldstart --bin-dir target/lambda --runs 15 --out target/bench/coldstart.json
//!
//! Needs FACEMAKE_TEST_DYNAMODB_ENDPOINT and FACEMAKE_TEST_S3_ENDPOINT (moto; it also serves Secrets
//! Manager), as `infra/scripts/bench.sh` sets them.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bench::{median, LoopbackStage};
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// Each function with the fixture its first invoke gets (the hello-world function gets an API event too).
const FUNCTIONS: &[(&str, &str)] = &[
    ("hello-lambda", "list-templates.json"),
    ("send-code", "send-code.json"),
    ("verify-code", "verify-code.json"),
    ("account", "get-me.json"),
    ("templates", "list-templates.json"),
    ("credits", "get-credits.json"),
    ("app-store-notifications", "app-store-notification.json"),
    ("generate", "start-generation.json"),
    ("characters", "list-characters.json"),
    ("replicate-webhooks", "replicate-webhook.json"),
    ("openai-webhooks", "openai-webhook.json"),
    ("generation-worker", "generation-stream-insert.json"),
    ("generation-reconciler", "reconciler-schedule.json"),
];

#[derive(Parser)]
struct Args {
    /// Where the bootstraps are: `<bin-dir>/<function>/bootstrap` (cargo lambda's layout) or
    /// `<bin-dir>/<function>` (cargo's).
    #[arg(long, default_value = "target/lambda")]
    bin_dir: PathBuf,
    /// Cold starts per function.
    #[arg(long, default_value_t = 15)]
    runs: usize,
    /// The events/ directory.
    #[arg(long, default_value = "events")]
    events: PathBuf,
    /// Where the raw samples go (JSON).
    #[arg(long)]
    out: Option<PathBuf>,
    /// The memory size the functions are told they have (AWS_LAMBDA_FUNCTION_MEMORY_SIZE).
    #[arg(long, default_value_t = 256)]
    memory_mb: u32,
    /// Extra `NAME=VALUE` variables for every function (experiments, e.g. SSL_CERT_DIR).
    #[arg(long = "env")]
    extra_env: Vec<String>,
    /// Only these functions (and the hello-world one).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
}

/// What the emulator saw of one cold start.
#[derive(Default)]
struct Observed {
    first_poll: Option<Instant>,
    response: Option<(Instant, Bytes)>,
    init_error: Option<Bytes>,
    peak_rss_kb: Option<u64>,
    polls: u32,
}

struct Invocation {
    event: Bytes,
    pid: Mutex<Option<u32>>,
    observed: Mutex<Observed>,
    /// Signalled at the second poll (the invoke is done and measured) or an init error.
    done: Notify,
}

#[derive(Debug, Clone, serde::Serialize)]
struct Sample {
    init_ms: f64,
    invoke_ms: f64,
    peak_rss_mb: f64,
    status: String,
}

fn peak_rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn response(status: u16, body: impl Into<Bytes>) -> http::Response<Full<Bytes>> {
    let mut r = http::Response::new(Full::new(body.into()));
    *r.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    r
}

/// The Runtime API (and, on the same port, Twilio's Messages API and the providers, answered with success).
async fn serve(inv: Arc<Invocation>, req: http::Request<Incoming>) -> http::Response<Full<Bytes>> {
    let arrived = Instant::now();
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let path = parts.uri.path();
    if path == "/2018-06-01/runtime/invocation/next" {
        let first = {
            let mut o = inv.observed.lock().unwrap_or_else(|p| p.into_inner());
            o.polls += 1;
            if o.polls == 1 {
                o.first_poll = Some(arrived);
                true
            } else {
                let pid = *inv.pid.lock().unwrap_or_else(|p| p.into_inner());
                o.peak_rss_kb = pid.and_then(peak_rss_kb);
                false
            }
        };
        if !first {
            inv.done.notify_one();
            // The function waits for its next event until it is killed.
            std::future::pending::<()>().await;
        }
        let deadline = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() + 30_000)
            .unwrap_or_default();
        let mut r = response(200, inv.event.clone());
        let h = r.headers_mut();
        h.insert("lambda-runtime-aws-request-id", http::HeaderValue::from_static("bench-request-1"));
        if let Ok(v) = http::HeaderValue::from_str(&deadline.to_string()) {
            h.insert("lambda-runtime-deadline-ms", v);
        }
        h.insert(
            "lambda-runtime-invoked-function-arn",
            http::HeaderValue::from_static("arn:aws:lambda:us-east-1:123456789012:function:bench"),
        );
        h.insert("lambda-runtime-trace-id", http::HeaderValue::from_static("Root=1-00000000-000000000000000000000000"));
        return r;
    }
    if path.starts_with("/2018-06-01/runtime/invocation/") {
        let mut o = inv.observed.lock().unwrap_or_else(|p| p.into_inner());
        o.response = Some((arrived, body));
        return response(202, "{}");
    }
    if path == "/2018-06-01/runtime/init/error" {
        inv.observed.lock().unwrap_or_else(|p| p.into_inner()).init_error = Some(body);
        inv.done.notify_one();
        return response(202, "{}");
    }
    if path.starts_with("/2010-04-01/Accounts/") {
        return response(201, r#"{"sid":"SMbench","status":"queued"}"#);
    }
    response(404, "not found")
}

/// The status an invoke answered: the HTTP status of an API response, else the body's first bytes.
fn status_of(body: &[u8]) -> String {
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(v) if v["statusCode"].is_u64() => v["statusCode"].to_string(),
        Ok(v) => {
            let s = v.to_string();
            s.chars().take(40).collect()
        }
        Err(_) => String::from_utf8_lossy(&body[..body.len().min(40)]).into_owned(),
    }
}

fn bootstrap(bin_dir: &Path, function: &str) -> PathBuf {
    let lambda_layout = bin_dir.join(function).join("bootstrap");
    if lambda_layout.is_file() {
        lambda_layout
    } else {
        bin_dir.join(function)
    }
}

async fn cold_start(
    binary: &Path,
    event: Bytes,
    env: &BTreeMap<String, String>,
    function: &str,
    memory_mb: u32,
    log: &Path,
) -> Result<Sample, String> {
    let listener = TcpListener::bind("127.0.0.1:0").await.map_err(|e| e.to_string())?;
    let addr: SocketAddr = listener.local_addr().map_err(|e| e.to_string())?;
    let inv = Arc::new(Invocation {
        event,
        pid: Mutex::new(None),
        observed: Mutex::new(Observed::default()),
        done: Notify::new(),
    });
    let server_inv = inv.clone();
    let server = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let inv = server_inv.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let inv = inv.clone();
                    async move { Ok::<_, Infallible>(serve(inv, req).await) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    let stub = format!("http://{addr}");
    let log_file = std::fs::File::create(log).map_err(|e| e.to_string())?;
    let mut command = tokio::process::Command::new(binary);
    command
        .env_clear()
        .envs(env)
        .env("TWILIO_API_BASE", &stub)
        .env("OPENAI_API_BASE", &stub)
        .env("REPLICATE_API_BASE", &stub)
        .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", function)
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", memory_mb.to_string())
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{function}"))
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "bench")
        .env("_HANDLER", "bootstrap")
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().map_err(|e| e.to_string())?)
        .stderr(log_file)
        .kill_on_drop(true);
    let started = Instant::now();
    let mut child = command.spawn().map_err(|e| format!("{}: {e}", binary.display()))?;
    *inv.pid.lock().unwrap_or_else(|p| p.into_inner()) = child.id();
    let waited = tokio::time::timeout(Duration::from_secs(20), async {
        tokio::select! {
            _ = inv.done.notified() => Ok(()),
            status = child.wait() => Err(format!("exited early: {status:?} (see {})", log.display())),
        }
    })
    .await;
    let _ = child.kill().await;
    server.abort();
    waited.map_err(|_| format!("no second poll within 20 s (see {})", log.display()))??;

    let o = inv.observed.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(body) = &o.init_error {
        return Err(format!("init error: {}", String::from_utf8_lossy(body)));
    }
    let first_poll = o.first_poll.ok_or("no first poll")?;
    let (answered, body) = o.response.clone().ok_or("no response")?;
    Ok(Sample {
        init_ms: first_poll.duration_since(started).as_secs_f64() * 1000.0,
        invoke_ms: answered.duration_since(first_poll).as_secs_f64() * 1000.0,
        peak_rss_mb: o.peak_rss_kb.unwrap_or(0) as f64 / 1024.0,
        status: status_of(&body),
    })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let stage = LoopbackStage::from_test_env(&format!("bench{}-", std::process::id())).await?;
    let mut env = stage.function_env("http://127.0.0.1:9");
    for pair in &args.extra_env {
        let (name, value) = pair.split_once('=').ok_or("--env takes NAME=VALUE")?;
        env.insert(name.to_owned(), value.to_owned());
    }
    let functions: Vec<(&str, &str)> = FUNCTIONS
        .iter()
        .copied()
        .filter(|(f, _)| *f == "hello-lambda" || args.only.is_empty() || args.only.iter().any(|o| o == f))
        .collect();
    let logs = std::env::temp_dir().join(format!("facemake-coldstart-{}", std::process::id()));
    std::fs::create_dir_all(&logs)?;

    let mut samples: BTreeMap<&str, Vec<Sample>> = BTreeMap::new();
    for run in 0..args.runs {
        for (function, fixture) in &functions {
            let event = Bytes::from(std::fs::read(args.events.join(fixture))?);
            let binary = bootstrap(&args.bin_dir, function);
            let log = logs.join(format!("{function}-{run}.log"));
            let sample = cold_start(&binary, event, &env, function, args.memory_mb, &log)
                .await
                .map_err(|e| format!("{function}: {e}"))?;
            samples.entry(function).or_default().push(sample);
        }
        eprintln!("round {}/{} done", run + 1, args.runs);
    }

    let med = |f: &str, pick: fn(&Sample) -> f64| median(&samples[f].iter().map(pick).collect::<Vec<_>>());
    let hello_init = med("hello-lambda", |s| s.init_ms);
    let hello_invoke = med("hello-lambda", |s| s.invoke_ms);
    let hello_rss = med("hello-lambda", |s| s.peak_rss_mb);
    println!(
        "| function | fixture | answer | init p50 (ms) | init max (ms) | × hello | first invoke p50 (ms) | × hello | peak RSS (MB) | × hello |"
    );
    println!("|---|---|---|---:|---:|---:|---:|---:|---:|---:|");
    for (function, fixture) in &functions {
        let s = &samples[function];
        let init = med(function, |s| s.init_ms);
        let init_max = s.iter().map(|s| s.init_ms).fold(0.0, f64::max);
        let invoke = med(function, |s| s.invoke_ms);
        let rss = med(function, |s| s.peak_rss_mb);
        println!(
            "| {function} | {fixture} | {} | {init:.2} | {init_max:.2} | {:.2} | {invoke:.2} | {:.2} | {rss:.1} | {:.2} |",
            s[0].status,
            init / hello_init,
            invoke / hello_invoke,
            rss / hello_rss
        );
    }
    if let Some(out) = args.out {
        if let Some(dir) = out.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(out, serde_json::to_vec_pretty(&samples)?)?;
    }
    Ok(())
}
