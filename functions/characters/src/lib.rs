//! Characters, saved sets of one person's photos: `POST /v1/characters`, `GET /v1/characters`,
//! `GET /v1/characters/{id}`, `PATCH /v1/characters/{id}`, `DELETE /v1/characters/{id}`.

use std::sync::Arc;

use facemake::domain::{rfc3339, Character, CharacterId, CharacterName, UploadId};
use facemake::http::views::PageView;
use facemake::http::{
    decode_cursor, encode_cursor, json, json_body, limit_param, no_content, query_param, AccountCheck, ApiError,
    AuthGuard, ErrorCode, PathParams, Request, Response, Router,
};
use facemake::ports::KeyProvider;
use facemake::services::characters::{Characters, CreateError};
use facemake::wiring::Deps;
use lambda_http::http::{Method, StatusCode};
use lambda_http::Body;
use serde::{Deserialize, Serialize};

pub struct State {
    pub characters: Characters,
    pub guard: AuthGuard,
    pub keys: Arc<dyn KeyProvider>,
}

impl State {
    pub fn new(deps: &Deps) -> Self {
        Self { characters: deps.characters(), guard: deps.auth_guard(), keys: deps.keys.clone() }
    }
}

pub fn router(state: Arc<State>) -> Router {
    Router::new()
        .route(Method::POST, "/v1/characters", state.clone(), create)
        .route(Method::GET, "/v1/characters", state.clone(), list)
        .route(Method::GET, "/v1/characters/{id}", state.clone(), get)
        .route(Method::PATCH, "/v1/characters/{id}", state.clone(), rename)
        .route(Method::DELETE, "/v1/characters/{id}", state, delete)
}

/// `character` = `{id, name, photoCount, thumbnailUrl (presigned, short-lived), createdAt}`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CharacterView {
    id: String,
    name: String,
    photo_count: u32,
    thumbnail_url: Option<String>,
    created_at: String,
}

async fn view(state: &State, c: &Character) -> Result<CharacterView, ApiError> {
    Ok(CharacterView {
        id: c.id.to_string(),
        name: c.name.clone(),
        photo_count: c.photo_count,
        thumbnail_url: state.characters.thumbnail_url(c).await?,
        created_at: rfc3339(c.created_at),
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateRequest {
    name: String,
    upload_ids: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RenameRequest {
    name: String,
}

fn name(raw: &str) -> Result<CharacterName, ApiError> {
    CharacterName::parse(raw).map_err(|e| ApiError::validation("name", e.to_string()))
}

fn upload_field(index: usize) -> String {
    format!("uploadIds[{index}]")
}

async fn create(state: Arc<State>, req: Request, _: PathParams) -> Result<Response<Body>, ApiError> {
    // The deleted-account check runs beside the create's first reads; nothing is written until it passed.
    let (user, check) = state.guard.user_before_write(&req).await?;
    let body: CreateRequest = json_body(&req)?;
    let name = name(&body.name)?;
    let uploads = body
        .upload_ids
        .iter()
        .enumerate()
        .map(|(i, id)| UploadId::parse(id.trim()).map_err(|e| ApiError::validation(&upload_field(i), e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    let character = state.characters.create(&user, &name, &uploads, check.deleted()).await.map_err(|e| match e {
        CreateError::PhotoCount => ApiError::validation("uploadIds", "give 1 to 6 uploaded photos"),
        CreateError::DuplicateUpload { index } => {
            ApiError::validation(&upload_field(index), "this photo is listed more than once")
        }
        CreateError::NoUpload { index } => ApiError::validation(
            &upload_field(index),
            "no photo was uploaded under this id (upload it to the uploadUrl first; uploads last a day)",
        ),
        CreateError::NotAPhoto { index, reason } => ApiError::validation(&upload_field(index), reason),
        CreateError::LimitReached { max } => ApiError::new(
            ErrorCode::Conflict,
            format!("You already have {max} characters, the most allowed; delete one to make another."),
        ),
        CreateError::AccountDeleted => AccountCheck::refusal(),
        CreateError::Port(e) => e.into(),
    })?;
    Ok(json(StatusCode::CREATED, &view(&state, &character).await?))
}

const DEFAULT_LIMIT: usize = 20;
const MAX_LIMIT: usize = 50;

async fn list(state: Arc<State>, req: Request, _: PathParams) -> Result<Response<Body>, ApiError> {
    let user = state.guard.user(&req).await?;
    let limit = limit_param(&req, DEFAULT_LIMIT, MAX_LIMIT)?;
    let keys = state.keys.keys().await?;
    // The cursor is sealed to this query of this user: another user's, or another list's, is refused.
    let scope = format!("characters|{user}");
    let before = query_param(&req, "cursor")
        .map(|c| decode_cursor(&keys, &scope, &c))
        .transpose()?
        .map(|id: String| CharacterId::parse(&id).map_err(|_| ApiError::validation("cursor", "not a valid cursor")))
        .transpose()?;
    let page = state.characters.page(&user, limit, before.as_ref()).await?;
    let next = match (page.more, page.items.last()) {
        (true, Some(last)) => Some(encode_cursor(&keys, &scope, &last.id.to_string())?),
        _ => None,
    };
    let mut items = Vec::with_capacity(page.items.len());
    for c in &page.items {
        items.push(view(&state, c).await?);
    }
    Ok(json(StatusCode::OK, &PageView { items, next_cursor: next }))
}

/// The `{id}` of the path. Ids are ULIDs; anything else cannot exist (and is not worth a database read).
fn character_id(params: &PathParams) -> Result<CharacterId, ApiError> {
    params.get("id").and_then(|id| CharacterId::parse(id).ok()).ok_or_else(ApiError::not_found)
}

async fn get(state: Arc<State>, req: Request, params: PathParams) -> Result<Response<Body>, ApiError> {
    let user = state.guard.user(&req).await?;
    let id = character_id(&params)?;
    match state.characters.get(&user, &id).await? {
        Some(c) => Ok(json(StatusCode::OK, &view(&state, &c).await?)),
        None => Err(ApiError::not_found()),
    }
}

async fn rename(state: Arc<State>, req: Request, params: PathParams) -> Result<Response<Body>, ApiError> {
    let (user, check) = state.guard.user_before_write(&req).await?;
    let id = character_id(&params)?;
    let body: RenameRequest = json_body(&req)?;
    let name = name(&body.name)?;
    check.confirm().await?;
    match state.characters.rename(&user, &id, &name).await? {
        Some(c) => Ok(json(StatusCode::OK, &view(&state, &c).await?)),
        None => Err(ApiError::not_found()),
    }
}

async fn delete(state: Arc<State>, req: Request, params: PathParams) -> Result<Response<Body>, ApiError> {
    let (user, check) = state.guard.user_before_write(&req).await?;
    let id = character_id(&params)?;
    // The record is read beside the deleted-account check; nothing is deleted until the check passed.
    let (found, allowed) = tokio::join!(state.characters.get(&user, &id), check.confirm());
    allowed?;
    let Some(found) = found? else { return Err(ApiError::not_found()) };
    // A concurrent delete of the same character that won is the same answer: it is gone.
    state.characters.delete_found(&found).await?;
    Ok(no_content())
}
