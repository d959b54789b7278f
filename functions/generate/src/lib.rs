//! Uploads and generations: `POST /v1/uploads`, `POST /v1/generations` (from an upload, a character or an
//! earlier generation), `GET /v1/generations`,
//! `GET /v1/generations/{id}`, `DELETE /v1/generations/{id}`.

use std::sync::Arc;

use facemake::domain::{rfc3339, CharacterId, Generation, GenerationSource, TemplateId, UploadId};
use facemake::http::views::PageView;
use facemake::http::{
    decode_cursor, encode_cursor, json, json_body, limit_param, no_content, query_param, AccountCheck, ApiError,
    AuthGuard, ErrorCode, PathParams, Request, Response, Router,
};
use facemake::ports::{DeleteOutcome, KeyProvider};
use facemake::services::generation::{Generations, StartError, UploadError, MAX_UPLOAD_BYTES};
use facemake::wiring::Deps;
use lambda_http::http::{Method, StatusCode};
use lambda_http::Body;
use serde::{Deserialize, Serialize};

pub struct State {
    pub generations: Generations,
    pub guard: AuthGuard,
    pub keys: Arc<dyn KeyProvider>,
}

impl State {
    pub fn new(deps: &Deps) -> Self {
        Self {
            generations: deps.generations(Arc::new(deps.catalogue_service())),
            guard: deps.auth_guard(),
            keys: deps.keys.clone(),
        }
    }
}

pub fn router(state: Arc<State>) -> Router {
    Router::new()
        .route(Method::POST, "/v1/uploads", state.clone(), create_upload)
        .route(Method::POST, "/v1/generations", state.clone(), start)
        .route(Method::GET, "/v1/generations", state.clone(), list)
        .route(Method::GET, "/v1/generations/{id}", state.clone(), get)
        .route(Method::DELETE, "/v1/generations/{id}", state, delete)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UploadRequest {
    content_type: String,
    content_length: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct UploadView {
    upload_id: String,
    upload_url: String,
    method: &'static str,
    headers: std::collections::BTreeMap<String, String>,
    expires_at: String,
}

/// Header names as the app should send them.
fn canonical_header(name: &str) -> String {
    match name.to_ascii_lowercase().as_str() {
        "content-type" => "Content-Type".to_owned(),
        "content-length" => "Content-Length".to_owned(),
        other => other.to_owned(),
    }
}

async fn create_upload(state: Arc<State>, req: Request, _: PathParams) -> Result<Response<Body>, ApiError> {
    let user = state.guard.user(&req).await?;
    let body: UploadRequest = json_body(&req)?;
    let upload = state.generations.create_upload(&user, body.content_type.trim(), body.content_length).await.map_err(
        |e| match e {
            UploadError::UnsupportedType => {
                ApiError::new(ErrorCode::UnsupportedMediaType, "contentType must be image/jpeg or image/png.")
            }
            UploadError::Heic => ApiError::new(
                ErrorCode::UnsupportedMediaType,
                "HEIC photos are not supported yet; upload a JPEG or PNG instead.",
            ),
            UploadError::Empty => ApiError::validation("contentLength", "contentLength must be at least 1"),
            UploadError::TooLarge => ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!("A photo may be at most {MAX_UPLOAD_BYTES} bytes (10 MiB)."),
            ),
            UploadError::Port(e) => e.into(),
        },
    )?;
    let view = UploadView {
        upload_id: upload.upload_id.to_string(),
        upload_url: upload.presigned.url,
        method: "PUT",
        headers: upload.presigned.headers.iter().map(|(k, v)| (canonical_header(k), v.clone())).collect(),
        expires_at: rfc3339(upload.presigned.expires_at),
    };
    Ok(json(StatusCode::CREATED, &view))
}

/// `generation` = `{id, templateId, source: {kind, id}, status, creditsCharged, refunded, outputUrl|null,
/// failureReason|null, createdAt, completedAt|null}`. Built field by field: the generation settings never
/// reach a response.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GenerationView {
    id: String,
    template_id: String,
    source: SourceView,
    status: &'static str,
    credits_charged: u64,
    refunded: bool,
    output_url: Option<String>,
    failure_reason: Option<String>,
    created_at: String,
    completed_at: Option<String>,
}

/// `source` = `{kind: upload|character|generation, id}`.
#[derive(Serialize)]
struct SourceView {
    kind: &'static str,
    id: String,
}

async fn view(state: &State, g: &Generation) -> Result<GenerationView, ApiError> {
    Ok(GenerationView {
        id: g.id.clone(),
        template_id: g.template_id.to_string(),
        source: SourceView { kind: g.source.kind(), id: g.source.id().to_owned() },
        status: g.status.as_str(),
        credits_charged: g.credits_charged,
        refunded: g.refunded,
        output_url: state.generations.output_url(g).await?,
        failure_reason: g.failure_reason.clone(),
        created_at: rfc3339(g.created_at),
        completed_at: g.completed_at.map(rfc3339),
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StartRequest {
    template_id: String,
    #[serde(default)]
    upload_id: Option<String>,
    #[serde(default)]
    character_id: Option<String>,
    #[serde(default)]
    parent_generation_id: Option<String>,
}

impl StartRequest {
    /// Exactly one of `uploadId`, `characterId`, `parentGenerationId`.
    fn source(&self) -> Result<GenerationSource, ApiError> {
        const ONE_OF: &str = "give exactly one of uploadId, characterId and parentGenerationId";
        let given = [
            ("uploadId", &self.upload_id),
            ("characterId", &self.character_id),
            ("parentGenerationId", &self.parent_generation_id),
        ];
        let mut present = given.iter().filter_map(|(field, value)| value.as_deref().map(|v| (*field, v.trim())));
        let (field, id) = present.next().ok_or_else(|| ApiError::validation("uploadId", ONE_OF))?;
        if let Some((other, _)) = present.next() {
            return Err(ApiError::validation(other, ONE_OF));
        }
        let invalid = |e: facemake::domain::InvalidValue| ApiError::validation(field, e.to_string());
        match field {
            "uploadId" => UploadId::parse(id).map(GenerationSource::Upload).map_err(invalid),
            "characterId" => CharacterId::parse(id).map(GenerationSource::Character).map_err(invalid),
            _ => ulid::Ulid::from_string(id)
                .map(|u| GenerationSource::Generation(u.to_string()))
                .map_err(|_| ApiError::validation(field, "not a valid generation id")),
        }
    }
}

#[derive(Serialize)]
struct StartedView {
    generation: GenerationView,
    balance: u64,
}

/// The `Idempotency-Key` header: 1–255 printable ASCII characters.
fn idempotency_key(req: &Request) -> Result<String, ApiError> {
    const FIELD: &str = "Idempotency-Key";
    let value = req
        .headers()
        .get("idempotency-key")
        .ok_or_else(|| ApiError::validation(FIELD, "the Idempotency-Key header is required"))?;
    let key = value.to_str().map_err(|_| ApiError::validation(FIELD, "must be printable ASCII"))?.trim();
    if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| b.is_ascii_graphic() || b == b' ') {
        return Err(ApiError::validation(FIELD, "must be 1 to 255 printable ASCII characters"));
    }
    Ok(key.to_owned())
}

async fn start(state: Arc<State>, req: Request, _: PathParams) -> Result<Response<Body>, ApiError> {
    // The deleted-account check runs beside the start's reads; the start writes nothing until it passed.
    let (user, check) = state.guard.user_before_write(&req).await?;
    let key = idempotency_key(&req)?;
    let body: StartRequest = json_body(&req)?;
    let template =
        TemplateId::parse(body.template_id.trim()).map_err(|e| ApiError::validation("templateId", e.to_string()))?;
    let source = body.source()?;
    let started =
        state.generations.start(&user, &key, &template, &source, check.deleted()).await.map_err(|e| match e {
            StartError::AccountDeleted => AccountCheck::refusal(),
            StartError::UnknownTemplate => ApiError::validation("templateId", "no such template (or it was retired)"),
            StartError::NoUpload => ApiError::validation(
                "uploadId",
                "no photo was uploaded under this id (upload it to the uploadUrl first; uploads last a day)",
            ),
            // Another user's character or generation answers the same as one that does not exist.
            StartError::SourceNotFound => match source {
                GenerationSource::Character(_) => ApiError::new(ErrorCode::NotFound, "No such character."),
                _ => ApiError::new(ErrorCode::NotFound, "No such generation."),
            },
            StartError::ParentNotSucceeded => ApiError::validation(
                "parentGenerationId",
                "only a generation that succeeded can be restyled (this one has no result yet, or failed)",
            ),
            StartError::Insufficient { balance, cost } => ApiError::new(
                ErrorCode::InsufficientCredits,
                format!(
                    "This style costs {cost} credit{} and your balance is {balance}.",
                    if cost == 1 { "" } else { "s" }
                ),
            ),
            StartError::TooManyInFlight => ApiError::rate_limited(
                5,
                "You have the maximum number of generations in progress; wait for one to finish.",
            ),
            StartError::KeyReused => ApiError::new(
                ErrorCode::IdempotencyKeyReused,
                "This Idempotency-Key was already used with a different request.",
            ),
            StartError::KeyOfDeletedGeneration => ApiError::new(
                ErrorCode::Conflict,
                "This Idempotency-Key was used for a generation that has since been deleted.",
            ),
            StartError::Port(e) => e.into(),
        })?;
    if !started.replayed {
        tracing::info!(generation = %started.generation.id, template = %template, "generation started");
    }
    let body = StartedView { generation: view(&state, &started.generation).await?, balance: started.balance };
    Ok(json(StatusCode::ACCEPTED, &body))
}

const DEFAULT_LIMIT: usize = 20;
const MAX_LIMIT: usize = 50;

async fn list(state: Arc<State>, req: Request, _: PathParams) -> Result<Response<Body>, ApiError> {
    let user = state.guard.user(&req).await?;
    let limit = limit_param(&req, DEFAULT_LIMIT, MAX_LIMIT)?;
    let keys = state.keys.keys().await?;
    let scope = format!("generations|{user}");
    let before: Option<String> = query_param(&req, "cursor").map(|c| decode_cursor(&keys, &scope, &c)).transpose()?;
    let page = state.generations.page(&user, limit, before.as_deref()).await?;
    let next = match (page.more, page.items.last()) {
        (true, Some(last)) => Some(encode_cursor(&keys, &scope, &last.id)?),
        _ => None,
    };
    let mut items = Vec::with_capacity(page.items.len());
    for g in &page.items {
        items.push(view(&state, g).await?);
    }
    Ok(json(StatusCode::OK, &PageView { items, next_cursor: next }))
}

/// The `{id}` of the path. Ids are ULIDs; anything else cannot exist (and is not worth a database read).
fn generation_id(params: &PathParams) -> Result<&str, ApiError> {
    params
        .get("id")
        .map(String::as_str)
        .filter(|id| ulid::Ulid::from_string(id).is_ok())
        .ok_or_else(ApiError::not_found)
}

async fn get(state: Arc<State>, req: Request, params: PathParams) -> Result<Response<Body>, ApiError> {
    let user = state.guard.user(&req).await?;
    let id = generation_id(&params)?;
    match state.generations.get(&user, id).await? {
        Some(g) => Ok(json(StatusCode::OK, &view(&state, &g).await?)),
        None => Err(ApiError::not_found()),
    }
}

async fn delete(state: Arc<State>, req: Request, params: PathParams) -> Result<Response<Body>, ApiError> {
    let (user, check) = state.guard.user_before_write(&req).await?;
    let id = generation_id(&params)?;
    // The record is read beside the deleted-account check; nothing is deleted until the check passed.
    let (found, allowed) = tokio::join!(state.generations.get(&user, id), check.confirm());
    allowed?;
    let Some(found) = found? else { return Err(ApiError::not_found()) };
    match state.generations.delete_found(&user, found).await? {
        DeleteOutcome::Deleted(_) => Ok(no_content()),
        DeleteOutcome::NotFound => Err(ApiError::not_found()),
        DeleteOutcome::InFlight => Err(ApiError::new(
            ErrorCode::Conflict,
            "This generation is still in progress; delete it once it has finished.",
        )),
    }
}
