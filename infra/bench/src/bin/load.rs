//! A loopback load generator for the local API: starts the `local-api` binary, signs users in, buys them
//! credits and uploads a photo each over its HTTP API, then drives one route at a time with a fixed number
//! of concurrent clients until a request count or a time limit is reached, whichever comes first.
//!
//!   load --local-api target/release/local-api --requests 20000 --seconds 20 --concurrency 16
//!   FACEMAKE_BACKEND=dynamodb AWS_ENDPOINT_URL_DYNAMODB=... load --routes generations ...
//!
//! Prints one markdown row per route: requests, requests/s, p50 / p99 / max latency and the statuses seen.
//! Every answer must be a 2xx; anything else is counted and shown.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bench::quantile;
use clap::Parser;
use serde_json::{json, Value};

#[derive(Parser)]
struct Args {
    /// The local API binary (built with --release for meaningful numbers).
    #[arg(long, default_value = "target/release/local-api")]
    local_api: std::path::PathBuf,
    /// Requests per route at most.
    #[arg(long, default_value_t = 20_000)]
    requests: usize,
    /// Seconds per route at most.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Concurrent clients (each sends its next request when the previous one is answered).
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Signed-in users the authenticated routes spread over.
    #[arg(long, default_value_t = 40)]
    users: usize,
    /// Which routes: any of templates, credits, generations.
    #[arg(long, value_delimiter = ',', default_value = "templates,credits,generations")]
    routes: Vec<String>,
}

struct User {
    token: String,
    upload_id: String,
}

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

async fn json_call(req: reqwest::RequestBuilder, what: &str) -> Result<Value> {
    let res = req.send().await?;
    let status = res.status();
    let body = res.bytes().await?;
    if !status.is_success() {
        return Err(format!("{what}: {status} {}", String::from_utf8_lossy(&body)).into());
    }
    Ok(if body.is_empty() { Value::Null } else { serde_json::from_slice(&body)? })
}

/// Signs in a new user with a number of its own, buys it `packs` packs of 120 credits, and uploads a small
/// photo for it.
async fn new_user(client: &reqwest::Client, base: &str, n: usize, packs: usize, photo: &[u8]) -> Result<User> {
    let phone = format!("+1415555{:04}", 1000 + n);
    json_call(client.post(format!("{base}/v1/auth/send-code")).json(&json!({"phone": phone})), "send-code").await?;
    let messages =
        json_call(client.get(format!("{base}/_local/messages?phone={}", phone.replace('+', "%2B"))), "messages")
            .await?;
    let body = messages["items"].as_array().and_then(|m| m.last()).and_then(|m| m["body"].as_str()).unwrap_or("");
    let code: String = body.chars().filter(char::is_ascii_digit).take(6).collect();
    let signed_in = json_call(
        client.post(format!("{base}/v1/auth/verify-code")).json(&json!({"phone": phone, "code": code})),
        "verify-code",
    )
    .await?;
    let token = signed_in["accessToken"].as_str().ok_or("no access token")?.to_owned();
    let credits = json_call(client.get(format!("{base}/v1/credits")).bearer_auth(&token), "credits").await?;
    let account_token = credits["appAccountToken"].as_str().unwrap_or_default().to_owned();
    for _ in 0..packs {
        let txn = json_call(
            client
                .post(format!("{base}/_local/app-store/transactions"))
                .json(&json!({"productId": "app.facemake.credits.120", "appAccountToken": account_token})),
            "test transaction",
        )
        .await?;
        json_call(
            client
                .post(format!("{base}/v1/credits/purchases"))
                .bearer_auth(&token)
                .json(&json!({"signedTransaction": txn["signedTransaction"]})),
            "purchase",
        )
        .await?;
    }
    let upload = json_call(
        client
            .post(format!("{base}/v1/uploads"))
            .bearer_auth(&token)
            .json(&json!({"contentType": "image/jpeg", "contentLength": photo.len()})),
        "upload slot",
    )
    .await?;
    let url = upload["uploadUrl"].as_str().ok_or("no upload URL")?;
    let mut put = client.put(url).body(photo.to_vec());
    for (name, value) in upload["headers"].as_object().into_iter().flatten() {
        put = put.header(name.as_str(), value.as_str().unwrap_or_default());
    }
    json_call(put, "upload").await?;
    Ok(User { token, upload_id: upload["uploadId"].as_str().ok_or("no upload id")?.to_owned() })
}

/// A small, real JPEG (what the worker prepares stays cheap, so the load measures the API).
fn photo() -> Vec<u8> {
    let img = image::RgbImage::from_fn(96, 128, |x, y| image::Rgb([(x * 2) as u8, (y * 2) as u8, 128]));
    let mut out = Vec::new();
    let _ = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 85).encode_image(&img);
    out
}

struct Outcome {
    latencies_ms: Vec<f64>,
    statuses: BTreeMap<u16, usize>,
    elapsed: Duration,
}

/// One route under `concurrency` clients until `max` requests or `seconds` have gone by. `tag` keeps the
/// idempotency keys of separate runs apart.
struct Run<'a> {
    route: &'a str,
    max: usize,
    seconds: u64,
    concurrency: usize,
    tag: &'a str,
}

async fn drive(run: Run<'_>, client: &reqwest::Client, base: &str, users: &[User]) -> Outcome {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let until = started + Duration::from_secs(run.seconds);
    let mut tasks = Vec::new();
    for _ in 0..run.concurrency {
        let next = next.clone();
        let client = client.clone();
        let base = base.to_owned();
        let route = run.route.to_owned();
        let tag = run.tag.to_owned();
        let max = run.max;
        let users: Vec<(String, String)> = users.iter().map(|u| (u.token.clone(), u.upload_id.clone())).collect();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut statuses = BTreeMap::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= max || Instant::now() >= until {
                    break;
                }
                let (token, upload) = &users[i % users.len()];
                let req = match route.as_str() {
                    "templates" => client.get(format!("{base}/v1/templates?limit=20")),
                    "credits" => client.get(format!("{base}/v1/credits")).bearer_auth(token),
                    _ => client
                        .post(format!("{base}/v1/generations"))
                        .bearer_auth(token)
                        .header("Idempotency-Key", format!("load-{tag}-{i}"))
                        .json(&json!({"templateId": "neon-noir", "uploadId": upload})),
                };
                let sent = Instant::now();
                let status = match req.send().await {
                    Ok(res) => {
                        let status = res.status().as_u16();
                        let _ = res.bytes().await;
                        status
                    }
                    Err(_) => 0,
                };
                latencies.push(sent.elapsed().as_secs_f64() * 1000.0);
                *statuses.entry(status).or_insert(0) += 1;
            }
            (latencies, statuses)
        }));
    }
    let mut latencies_ms = Vec::new();
    let mut statuses = BTreeMap::new();
    for task in tasks {
        if let Ok((l, s)) = task.await {
            latencies_ms.extend(l);
            for (k, v) in s {
                *statuses.entry(k).or_insert(0) += v;
            }
        }
    }
    Outcome { latencies_ms, statuses, elapsed: started.elapsed() }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let base = format!("http://127.0.0.1:{port}");
    let generations = args.routes.iter().any(|r| r == "generations");
    let mut server = tokio::process::Command::new(&args.local_api)
        .env("PORT", port.to_string())
        .env("RUST_LOG", "warn")
        // Sign-in limits sized for one machine signing in every load user from one address.
        .env("SEND_CODE_IP_LIMIT_PER_HOUR", "100000")
        .env("VERIFY_CODE_IP_LIMIT_PER_HOUR", "100000")
        // The load keeps many generations per user in flight.
        .env("MAX_GENERATIONS_IN_FLIGHT", "1000000")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()?;
    let client = reqwest::Client::builder().pool_max_idle_per_host(args.concurrency * 2).build()?;
    let mut ready = false;
    for _ in 0..600 {
        if client.get(format!("{base}/v1/templates/categories")).send().await.is_ok() {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if !ready {
        return Err("the local API did not answer within 60 s".into());
    }
    // Enough credits for every generation request, warm-up included (neon-noir costs 1), over the users.
    const WARM_UP: usize = 200;
    let packs = if generations { (args.requests + WARM_UP).div_ceil(args.users).div_ceil(120) } else { 0 };
    let photo = photo();
    let mut users = Vec::new();
    for n in 0..args.users {
        users.push(new_user(&client, &base, n, packs, &photo).await?);
    }
    eprintln!("{} users signed in, {} credit packs each", users.len(), packs);

    println!("| route | requests | elapsed (s) | requests/s | p50 (ms) | p99 (ms) | max (ms) | statuses |");
    println!("|---|---:|---:|---:|---:|---:|---:|---|");
    for route in &args.routes {
        // A short warm-up per route (caches, connections), not counted.
        let warm = Run { route, max: WARM_UP, seconds: 5, concurrency: args.concurrency, tag: "warm" };
        drive(warm, &client, &base, &users).await;
        let run = Run { route, max: args.requests, seconds: args.seconds, concurrency: args.concurrency, tag: "run" };
        let o = drive(run, &client, &base, &users).await;
        let label = match route.as_str() {
            "templates" => "GET /v1/templates?limit=20 (anonymous)",
            "credits" => "GET /v1/credits",
            _ => "POST /v1/generations",
        };
        let n = o.latencies_ms.len();
        let statuses: Vec<String> = o.statuses.iter().map(|(s, c)| format!("{s}×{c}")).collect();
        println!(
            "| {label} | {n} | {:.1} | {:.0} | {:.2} | {:.2} | {:.2} | {} |",
            o.elapsed.as_secs_f64(),
            n as f64 / o.elapsed.as_secs_f64(),
            quantile(&o.latencies_ms, 0.5).unwrap_or(f64::NAN),
            quantile(&o.latencies_ms, 0.99).unwrap_or(f64::NAN),
            quantile(&o.latencies_ms, 1.0).unwrap_or(f64::NAN),
            statuses.join(", ")
        );
    }
    let _ = server.kill().await;
    Ok(())
}
