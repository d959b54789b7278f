//! The style catalogue: `GET /v1/templates`, `GET /v1/templates/categories`, `GET /v1/templates/{id}`,
//! `PUT|DELETE /v1/templates/{id}/favorite`, `GET /v1/me/favorites`.
//!
//! Reads come from the container's catalogue snapshot (no DynamoDB call while it is fresh); only favourites
//! touch the store.

use std::collections::HashSet;
use std::sync::Arc;

use facemake::domain::{CategoryId, Template, TemplateId, UserId};
use facemake::http::views::{CategoryView, PageView, TemplateView};
use facemake::http::{
    decode_cursor, encode_cursor, flag_param, json, limit_param, no_content, query_param, ApiError, AuthGuard,
    PathParams, Request, Response, Router,
};
use facemake::ports::KeyProvider;
use facemake::services::catalogue::{CatalogueService, FavoriteError, FavoriteKey, TemplateFilter, TemplateKey};
use facemake::wiring::Deps;
use lambda_http::http::{Method, StatusCode};
use lambda_http::Body;
use serde::Serialize;

pub struct State {
    pub catalogue: CatalogueService,
    pub guard: AuthGuard,
    pub keys: Arc<dyn KeyProvider>,
    pub preview_base_url: String,
}

impl State {
    pub fn new(deps: &Deps) -> Self {
        Self {
            catalogue: deps.catalogue_service(),
            guard: deps.auth_guard(),
            keys: deps.keys.clone(),
            preview_base_url: deps.catalogue.preview_base_url.clone(),
        }
    }

    fn view(&self, t: &Template, favorites: Option<&HashSet<TemplateId>>) -> TemplateView {
        TemplateView::new(t, &self.preview_base_url, favorites.map(|f| f.contains(&t.id)))
    }
}

pub fn router(state: Arc<State>) -> Router {
    Router::new()
        .route(Method::GET, "/v1/templates", state.clone(), list)
        // Before `{id}`: "categories" is not a template id.
        .route(Method::GET, "/v1/templates/categories", state.clone(), categories)
        .route(Method::GET, "/v1/templates/{id}", state.clone(), get)
        .route(Method::PUT, "/v1/templates/{id}/favorite", state.clone(), add_favorite)
        .route(Method::DELETE, "/v1/templates/{id}/favorite", state.clone(), remove_favorite)
        .route(Method::GET, "/v1/me/favorites", state, favorites)
}

const DEFAULT_LIMIT: usize = 20;
const MAX_LIMIT: usize = 50;

/// A path id that cannot be a template is simply not found.
fn template_id(params: &PathParams) -> Result<TemplateId, ApiError> {
    params.get("id").and_then(|id| TemplateId::parse(id).ok()).ok_or_else(ApiError::not_found)
}

fn filter(req: &Request) -> Result<TemplateFilter, ApiError> {
    let category = query_param(req, "category")
        .map(|c| CategoryId::parse(&c).map_err(|e| ApiError::validation("category", e.to_string())))
        .transpose()?;
    let query = match query_param(req, "q") {
        None => None,
        Some(q) => TemplateFilter::search(&q).map_err(|e| ApiError::validation("q", e.to_string()))?,
    };
    Ok(TemplateFilter { category, query, trending_only: flag_param(req, "trending")? })
}

async fn list(state: Arc<State>, req: Request, _: PathParams) -> Result<Response<Body>, ApiError> {
    let filter = filter(&req)?;
    let limit = limit_param(&req, DEFAULT_LIMIT, MAX_LIMIT)?;
    let user = state.guard.optional_user(&req).await?;
    let keys = state.keys.keys().await?;
    let scope = filter.scope();
    let after: Option<TemplateKey> =
        query_param(&req, "cursor").map(|c| decode_cursor(&keys, &scope, &c)).transpose()?;
    let (snapshot, favorites) = tokio::try_join!(state.catalogue.snapshot(), favorite_ids(&state, user.as_ref()))?;
    let page = snapshot.list(&filter, after.as_ref(), limit);
    let body = PageView {
        items: page.items.iter().map(|t| state.view(t, favorites.as_ref())).collect(),
        next_cursor: page.next.map(|k| encode_cursor(&keys, &scope, &k)).transpose()?,
    };
    Ok(json(StatusCode::OK, &body))
}

async fn favorite_ids(
    state: &State,
    user: Option<&UserId>,
) -> Result<Option<HashSet<TemplateId>>, facemake::ports::PortError> {
    match user {
        Some(user) => state.catalogue.favorite_ids(user).await.map(Some),
        None => Ok(None),
    }
}

async fn get(state: Arc<State>, req: Request, params: PathParams) -> Result<Response<Body>, ApiError> {
    let id = template_id(&params)?;
    let user = state.guard.optional_user(&req).await?;
    let (snapshot, favorites) = tokio::try_join!(state.catalogue.snapshot(), favorite_ids(&state, user.as_ref()))?;
    let template = snapshot.get(&id).ok_or_else(ApiError::not_found)?;
    Ok(json(StatusCode::OK, &state.view(template, favorites.as_ref())))
}

#[derive(Serialize)]
struct Categories {
    items: Vec<CategoryView>,
}

async fn categories(state: Arc<State>, _req: Request, _: PathParams) -> Result<Response<Body>, ApiError> {
    let snapshot = state.catalogue.snapshot().await?;
    let items = snapshot
        .categories()
        .iter()
        .map(|(c, count)| CategoryView { id: c.id.to_string(), name: c.name.clone(), count: *count })
        .collect();
    Ok(json(StatusCode::OK, &Categories { items }))
}

async fn add_favorite(state: Arc<State>, req: Request, params: PathParams) -> Result<Response<Body>, ApiError> {
    let user = state.guard.user(&req).await?;
    let id = template_id(&params)?;
    match state.catalogue.add_favorite(&user, &id).await {
        Ok(()) => Ok(no_content()),
        Err(FavoriteError::NotFound) => Err(ApiError::not_found()),
        Err(FavoriteError::Port(e)) => Err(e.into()),
    }
}

async fn remove_favorite(state: Arc<State>, req: Request, params: PathParams) -> Result<Response<Body>, ApiError> {
    let user = state.guard.user(&req).await?;
    let id = template_id(&params)?;
    state.catalogue.remove_favorite(&user, &id).await?;
    Ok(no_content())
}

async fn favorites(state: Arc<State>, req: Request, _: PathParams) -> Result<Response<Body>, ApiError> {
    let user = state.guard.user(&req).await?;
    let limit = limit_param(&req, DEFAULT_LIMIT, MAX_LIMIT)?;
    let keys = state.keys.keys().await?;
    // The cursor is bound to the user: one user's cursor is refused for another.
    let scope = format!("favorites|{user}");
    let after: Option<FavoriteKey> =
        query_param(&req, "cursor").map(|c| decode_cursor(&keys, &scope, &c)).transpose()?;
    let page = state.catalogue.favorites(&user, after.as_ref(), limit).await?;
    let all_favorite: HashSet<TemplateId> = page.items.iter().map(|t| t.id.clone()).collect();
    let body = PageView {
        items: page.items.iter().map(|t| state.view(t, Some(&all_favorite))).collect(),
        next_cursor: page.next.map(|k| encode_cursor(&keys, &scope, &k)).transpose()?,
    };
    Ok(json(StatusCode::OK, &body))
}
