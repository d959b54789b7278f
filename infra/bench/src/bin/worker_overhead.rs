//! The generation worker's own cost for a 12-megapixel photo, without the provider: the deployed worker
//! (DynamoDB Local for the job, moto's S3 for the photo and the result) processes jobs whose provider answers
//! at once with a small PNG, and the time of each `process` call is recorded — claim, upload download, photo
//! preparation (decode, orient, strip, downsize, re-encode), result upload and the succeed transaction.
//!
//!   worker-overhead --jobs 20
//!
//! Needs FACEMAKE_TEST_DYNAMODB_ENDPOINT and FACEMAKE_TEST_S3_ENDPOINT, as `infra/scripts/bench.sh` sets them.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bench::{median, quantile, LoopbackStage};
use clap::Parser;
use facemake::config::Config;
use facemake::domain::{
    object_keys, GenerationSource, LedgerEntry, LedgerKind, PhoneNumber, TemplateId, UploadId, UserId,
};
use facemake::ports::{ImageProvider, JobRef, NewUser, ProviderError, RenderRequest, RenderedImage};
use facemake::services::generation::{JobResult, Providers};
use facemake::wiring::Deps;

#[derive(Parser)]
struct Args {
    /// Jobs to time (after one untimed job that warms the container).
    #[arg(long, default_value_t = 20)]
    jobs: usize,
}

/// A provider that answers at once, so what is timed is the worker's own work.
struct Instant0(Vec<u8>);

#[async_trait]
impl ImageProvider for Instant0 {
    fn needs_image_url(&self) -> bool {
        false
    }
    async fn render(&self, _: RenderRequest<'_>) -> Result<RenderedImage, ProviderError> {
        Ok(RenderedImage { bytes: self.0.clone(), content_type: "image/png".into() })
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let stage = LoopbackStage::from_test_env(&format!("wo{}-", std::process::id())).await?;
    let mut env = stage.function_env("http://127.0.0.1:9");
    env.insert("MAX_GENERATIONS_IN_FLIGHT".into(), "1000".into());
    let env: std::collections::HashMap<&str, &str> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let config = Config::from(&env)?;
    let (dynamodb, moto) = (&stage.dynamodb_endpoint, &stage.moto_endpoint);
    let deps = Deps::deployed_with_endpoints(&config, &bench::sdk(moto), dynamodb, moto);

    let mut png = Vec::new();
    image::RgbImage::from_pixel(64, 64, image::Rgb([200, 30, 30]))
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)?;
    let mut worker = deps.worker();
    worker.providers = Providers::all(Arc::new(Instant0(png)));
    let generations = deps.generations(Arc::new(deps.catalogue_service()));

    let user = UserId::new();
    let now = facemake::ports::Clock::now(deps.clock.as_ref());
    let credits = args.jobs as u64 + 1;
    let grant = LedgerEntry::new(LedgerKind::Grant, credits as i64, credits, "bench", now);
    let phone = PhoneNumber::parse("+14155550999", None)?;
    deps.store
        .create_user(&NewUser {
            id: user.clone(),
            phone,
            created_at: now,
            starter_grant: Some(grant),
            number_key: None,
        })
        .await?;
    let photo = testkit::camera_photo(4000, 3000);
    let objects = deps.objects();
    let template = TemplateId::parse("neon-noir")?;

    let mut totals = Vec::new();
    let mut prepare = Vec::new();
    let mut store = Vec::new();
    for i in 0..=args.jobs {
        let upload = UploadId::new();
        objects.put(&object_keys::upload(&user, &upload), photo.clone(), "image/jpeg").await?;
        let started = generations
            .start(
                &user,
                &format!("bench-{i}"),
                &template,
                &GenerationSource::Upload(upload),
                std::future::ready(Ok(false)),
            )
            .await
            .map_err(|e| format!("start: {e}"))?;
        let job = JobRef { user_id: user.clone(), generation_id: started.generation.id.clone() };
        let clock = Instant::now();
        let result = worker.process_delivery(&job, Some(&format!("evt-{i}"))).await?;
        let elapsed = clock.elapsed().as_secs_f64() * 1000.0;
        if !matches!(result, JobResult::Succeeded { .. }) {
            return Err(format!("job {i}: {result:?}").into());
        }
        if i == 0 {
            continue; // the container's first job: connections, the provider secret
        }
        let g = deps.store.generation(&user, &job.generation_id).await?.ok_or("job record gone")?;
        let timings = g.timings.ok_or("no timings")?;
        totals.push(elapsed);
        prepare.push(timings.prepare_ms as f64);
        store.push(timings.store_ms as f64);
    }
    println!(
        "| 12 MP JPEG ({:.1} MB), {} jobs | p50 {:.0} ms | p99 {:.0} ms | max {:.0} ms | of which download + preparation p50 {:.0} ms | result upload p50 {:.0} ms |",
        photo.len() as f64 / 1_000_000.0,
        totals.len(),
        median(&totals),
        quantile(&totals, 0.99).unwrap_or(f64::NAN),
        quantile(&totals, 1.0).unwrap_or(f64::NAN),
        median(&prepare),
        median(&store),
    );
    Ok(())
}
