//! Criterion benchmarks of the per-request hot paths (issue 6, item 4): access tokens, request parsing and
//! response serialisation, the catalogue's in-memory path, and photo preparation.
//!
//! Run: `cargo bench -p facemake --bench hot_paths`. The group and benchmark names are quoted in
//! docs/benchmarks.md: keep them stable.

use std::hint::black_box;
use std::io::Cursor;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, SamplingMode};
use facemake::adapters::keys::keys_from_master;
use facemake::adapters::memory::MemoryStore;
use facemake::domain::{Category, CategoryId, GenerationSpec, Provider, Template, TemplateId, UserId};
use facemake::http::views::{PageView, TemplateView};
use facemake::http::{encode_cursor, json, json_body, ApiError};
use facemake::imaging::{prepare, PrepareLimits};
use facemake::ports::{CatalogueStore, Clock, SystemClock};
use facemake::services::catalogue::{CatalogueService, TemplateFilter, TemplateKey};
use facemake::tokens::AccessTokens;
use image::codecs::jpeg::JpegEncoder;
use image::imageops::FilterType;
use image::{ImageDecoder, ImageFormat, ImageReader};
use testkit::{self, ManualClock, PREVIEW_BASE_URL, TEST_MASTER_KEY};

/// Measurement and warm-up of the fast groups: the whole run stays under two minutes after compiling.
const SHORT: Duration = Duration::from_secs(3);
const WARM_UP: Duration = Duration::from_secs(1);

fn runtime() -> tokio::runtime::Runtime {
    match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => panic!("tokio runtime: {e}"),
    }
}

// ---------------------------------------------------------------------------------------------------------
// tokens

fn tokens(c: &mut Criterion) {
    let keys = keys_from_master(TEST_MASTER_KEY, None);
    let tokens = AccessTokens::for_policy(&testkit::policy());
    let user = UserId::new();
    let now = SystemClock.now();
    let token = tokens.issue(&keys, &user, now).expect("issue");

    let mut g = c.benchmark_group("tokens");
    g.warm_up_time(WARM_UP).measurement_time(SHORT);
    g.bench_function("issue", |b| b.iter(|| tokens.issue(&keys, black_box(&user), now).expect("issue")));
    g.bench_function("verify", |b| b.iter(|| tokens.verify(&keys, black_box(&token)).expect("verify")));
    g.finish();
}

// ---------------------------------------------------------------------------------------------------------
// http

/// The verify-code route's body, as functions/verify-code declares it.
#[derive(serde::Deserialize)]
#[allow(dead_code)] // read by black_box only
struct VerifyRequest {
    phone: String,
    #[serde(default)]
    country: Option<String>,
    code: String,
}

const VERIFY_CODE_EVENT: &str = include_str!("../../events/verify-code.json");

fn http_glue(c: &mut Criterion) {
    let mut g = c.benchmark_group("http");
    g.warm_up_time(WARM_UP).measurement_time(SHORT);

    // The API Gateway v2 event as the runtime hands it over, then the body as the handler reads it.
    g.bench_function("parse_request", |b| {
        b.iter(|| {
            let req = lambda_http::request::from_str(black_box(VERIFY_CODE_EVENT)).expect("event");
            let body: VerifyRequest = json_body(&req).map_err(|e| e.message).expect("body");
            (req, body)
        })
    });

    let error = ApiError::validation("phone", "phone is not a valid number");
    g.bench_function("error_envelope", |b| {
        b.iter_batched(|| error.clone(), |e| e.into_response("JKJbYnQMvHcEJbw="), BatchSize::SmallInput)
    });

    // A first page of GET /v1/templates: 20 templates and a signed cursor.
    let keys = keys_from_master(TEST_MASTER_KEY, None);
    let templates = generated_templates(20);
    let last = templates.last().expect("templates");
    let scope = TemplateFilter::default().scope();
    let cursor = encode_cursor(&keys, &scope, &TemplateKey(last.sort_order, last.id.to_string())).expect("cursor");
    let view = PageView {
        items: templates.iter().map(|t| TemplateView::new(t, PREVIEW_BASE_URL, Some(false))).collect(),
        next_cursor: Some(cursor),
    };
    g.bench_function("json_response", |b| b.iter(|| json(http::StatusCode::OK, black_box(&view))));
    g.finish();
}

// ---------------------------------------------------------------------------------------------------------
// catalogue

const CATEGORIES: [&str; 10] =
    ["portrait", "anime", "fantasy", "vintage", "cyberpunk", "painting", "sketch", "holiday", "pets", "pro-headshot"];

/// `n` active templates over ten categories; every 20th (5%) carries the tag "neon", which no name contains.
fn generated_templates(n: usize) -> Vec<Template> {
    (0..n)
        .map(|i| {
            let id = format!("style-{i:04}");
            let mut tags = vec![format!("look-{}", i % 37), "hd".to_owned()];
            if i % 20 == 7 {
                tags.push("neon".to_owned());
            }
            Template {
                id: TemplateId::parse(&id).expect("template id"),
                name: format!("Style number {i}"),
                description: "A generated style for the benchmarks, about as long as a real description.".into(),
                category: CategoryId::parse(CATEGORIES[i % CATEGORIES.len()]).expect("category id"),
                tags,
                preview: format!("previews/{id}.jpg"),
                cost_credits: 1 + (i % 3) as u64,
                trending: i % 9 == 0,
                sort_order: (i % 50) as i64,
                active: true,
                generation: GenerationSpec {
                    provider: Provider::Openai,
                    model: "gpt-image-1".into(),
                    prompt: "Restyle the portrait".into(),
                    params: Default::default(),
                },
            }
        })
        .collect()
}

fn catalogue(c: &mut Criterion) {
    let rt = runtime();
    let store = Arc::new(MemoryStore::new());
    let service = rt.block_on(async {
        for (i, id) in CATEGORIES.iter().enumerate() {
            let category =
                Category { id: CategoryId::parse(id).expect("id"), name: id.to_uppercase(), sort_order: i as i64 };
            store.put_category(&category).await.expect("category");
        }
        for t in generated_templates(500) {
            store.put_template(&t).await.expect("template");
        }
        let service = CatalogueService::new(store.clone(), store.clone(), ManualClock::at_wall_clock(), 60);
        // Warm the container cache: what follows is the in-memory path (the clock stands still, so it stays fresh).
        let all = service.snapshot().await.expect("snapshot").list(&TemplateFilter::default(), None, 1000).items.len();
        assert_eq!(all, 500);
        service
    });

    let list = TemplateFilter::default();
    let search = TemplateFilter { query: TemplateFilter::search("Neon").expect("q"), ..Default::default() };
    let category = TemplateFilter { category: Some(CategoryId::parse("cyberpunk").expect("id")), ..Default::default() };
    let matches = |f: &TemplateFilter| {
        rt.block_on(async { service.snapshot().await.expect("snapshot").list(f, None, 1000).items.len() })
    };
    assert_eq!(matches(&search), 25, "the search matches 5% of the catalogue");
    assert_eq!(matches(&category), 50);

    let mut g = c.benchmark_group("catalogue");
    g.warm_up_time(WARM_UP).measurement_time(SHORT);
    for (name, filter) in [("list", &list), ("search", &search), ("category", &category)] {
        g.bench_function(name, |b| {
            b.to_async(&rt).iter(|| async {
                let snapshot = service.snapshot().await.expect("snapshot");
                let page = snapshot.list(black_box(filter), None, 20);
                (page.items.len(), page.next)
            })
        });
    }
    g.finish();
}

// ---------------------------------------------------------------------------------------------------------
// imaging

fn imaging(c: &mut Criterion) {
    let input = testkit::camera_photo(4000, 3000);
    let limits = PrepareLimits::default();
    let mut probe = ImageReader::with_format(Cursor::new(&input), ImageFormat::Jpeg).into_decoder().expect("decoder");
    assert_eq!(probe.dimensions(), (4000, 3000));
    assert_eq!(probe.orientation().expect("orientation"), image::metadata::Orientation::Rotate90);
    let prepared = prepare(&input, &limits).expect("prepare");
    assert_eq!((prepared.width, prepared.height), (1152, 1536), "shrunk to 1536 and turned upright");
    eprintln!(
        "imaging input: 4000x3000 JPEG q90, {} bytes; prepared: {}x{}, {} bytes",
        input.len(),
        prepared.width,
        prepared.height,
        prepared.jpeg.len()
    );

    let mut g = c.benchmark_group("imaging");
    // One iteration takes up to ~0.4 s: 20 flat samples need ~9 s; a long warm-up adds nothing.
    g.warm_up_time(WARM_UP).measurement_time(Duration::from_secs(9)).sample_size(20).sampling_mode(SamplingMode::Flat);
    g.bench_function("prepare_12mp_jpeg", |b| b.iter(|| prepare(black_box(&input), &limits).expect("prepare")));
    g.bench_function("decode_only_12mp_jpeg", |b| {
        b.iter(|| image::load_from_memory(black_box(&input)).expect("decode"))
    });
    // The other two stages of `prepare`, as it runs them (its downsize; quality 90), so the time splits.
    let decoded = image::load_from_memory(&input).expect("decode").into_rgb8();
    g.bench_function("resize_12mp_to_1536", |b| {
        b.iter_batched(
            || decoded.clone(),
            |img| facemake::imaging::downsize(black_box(img), 1536).expect("downsize"),
            criterion::BatchSize::LargeInput,
        )
    });
    // For comparison: the image crate's own resize with the same filter, which `prepare` used before.
    g.bench_function("resize_12mp_to_1536_image_crate", |b| {
        b.iter(|| image::imageops::resize(black_box(&decoded), 1536, 1152, FilterType::Triangle))
    });
    let small = facemake::imaging::downsize(decoded.clone(), 1536).expect("downsize");
    g.bench_function("encode_1536_jpeg", |b| {
        b.iter(|| {
            let mut out = Vec::with_capacity(256 * 1024);
            JpegEncoder::new_with_quality(&mut out, 90).encode_image(black_box(&small)).expect("encode");
            out
        })
    });
    g.finish();
}

criterion_group!(benches, tokens, http_glue, catalogue, imaging);
criterion_main!(benches);
