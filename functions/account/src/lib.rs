//! The signed-in user's account: `GET /v1/me`, `PATCH /v1/me`, `DELETE /v1/me`, and the devices that get its
//! push notifications: `PUT`/`DELETE /v1/me/devices/{token}`.

use std::sync::Arc;

use facemake::domain::{DeviceToken, DisplayName, PushEnvironment};
use facemake::http::views::UserView;
use facemake::http::{
    json, json_body, no_content, ApiError, AuthGuard, ErrorCode, PathParams, Request, Response, Router,
};
use facemake::ports::Written;
use facemake::services::account::Account;
use facemake::services::notifications::Notifications;
use facemake::wiring::Deps;
use lambda_http::http::{Method, StatusCode};
use lambda_http::Body;
use serde::Deserialize;

pub struct State {
    pub account: Account,
    pub notifications: Arc<Notifications>,
    pub guard: AuthGuard,
}

impl State {
    pub fn new(deps: &Deps) -> Self {
        Self { account: deps.account(), notifications: deps.notifications(), guard: deps.auth_guard() }
    }
}

pub fn router(state: Arc<State>) -> Router {
    Router::new()
        .route(Method::GET, "/v1/me", state.clone(), get_me)
        .route(Method::PATCH, "/v1/me", state.clone(), patch_me)
        .route(Method::DELETE, "/v1/me", state.clone(), delete_me)
        .route(Method::PUT, "/v1/me/devices/{token}", state.clone(), put_device)
        .route(Method::DELETE, "/v1/me/devices/{token}", state, delete_device)
}

/// A valid token for a user that no longer exists (deleted account): the session is over.
fn gone() -> ApiError {
    ApiError::new(ErrorCode::InvalidToken, "This account no longer exists.")
}

async fn get_me(state: Arc<State>, req: Request, _: PathParams) -> Result<Response<Body>, ApiError> {
    let user = state.guard.user(&req).await?;
    let (account, stats) = state.account.get_with_stats(&user).await?.ok_or_else(gone)?;
    Ok(json(StatusCode::OK, &UserView::with_stats(&account, stats)))
}

/// Only allow-listed fields are writable: anything else is refused, not ignored. An absent field is left
/// as it is; `null` clears it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PatchMe {
    #[serde(default, deserialize_with = "present")]
    display_name: Option<Option<String>>,
    /// Whether the App Store may be told how much of a purchase was used when Apple asks about a refund.
    #[serde(default, deserialize_with = "boolean")]
    share_consumption_data: Option<bool>,
}

/// A present field must be `true` or `false` (`null` is refused, not taken for "leave it").
fn boolean<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    bool::deserialize(d).map(Some)
}

/// `Some(value)` for a field that is present, even when its value is `null`.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

async fn patch_me(state: Arc<State>, req: Request, _: PathParams) -> Result<Response<Body>, ApiError> {
    let user = state.guard.user(&req).await?;
    let patch: PatchMe = json_body(&req)?;
    // Everything is checked before anything is written.
    let name = match &patch.display_name {
        None => None,
        Some(name) => Some(
            name.as_deref()
                .map(DisplayName::parse)
                .transpose()
                .map_err(|e| ApiError::validation("displayName", e.to_string()))?,
        ),
    };
    // Then one write of everything the patch changes (or a read when it changes nothing).
    let account = match (&name, patch.share_consumption_data) {
        (None, None) => state.account.get(&user).await?,
        (name, consent) => state.account.update_profile(&user, name.as_ref().map(Option::as_ref), consent).await?,
    }
    .ok_or_else(gone)?;
    Ok(json(StatusCode::OK, &UserView::from(&account)))
}

/// Deletes the account and everything of it. Answers 204 once nothing is left; a failure half-way answers
/// 5xx and the app calls again (the same token still works here, and only here), which finishes the job.
async fn delete_me(state: Arc<State>, req: Request, _: PathParams) -> Result<Response<Body>, ApiError> {
    let user = state.guard.token_user(&req).await?;
    state.account.delete(&user).await?;
    Ok(no_content())
}

fn device_token(params: &PathParams) -> Result<DeviceToken, ApiError> {
    let token = params.get("token").map(String::as_str).unwrap_or_default();
    DeviceToken::parse(token).map_err(|e| ApiError::validation("token", e.to_string()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PutDevice {
    environment: String,
}

/// Registers the device for the caller's push notifications (again at every launch: idempotent). A token
/// belongs to the last user who registered it.
async fn put_device(state: Arc<State>, req: Request, params: PathParams) -> Result<Response<Body>, ApiError> {
    let user = state.guard.user(&req).await?;
    let token = device_token(&params)?;
    let body: PutDevice = json_body(&req)?;
    let environment =
        PushEnvironment::parse(&body.environment).map_err(|e| ApiError::validation("environment", e.to_string()))?;
    match state.notifications.register(&user, &token, environment).await? {
        Written::Yes => Ok(no_content()),
        // The account was deleted after the guard's check.
        Written::Conflict => Err(gone()),
    }
}

/// Stops the caller's pushes to the device (sign-out, notifications turned off). 204 whether or not it was
/// registered, and a token another user holds is left to them.
async fn delete_device(state: Arc<State>, req: Request, params: PathParams) -> Result<Response<Body>, ApiError> {
    let user = state.guard.user(&req).await?;
    let token = device_token(&params)?;
    state.notifications.unregister(&user, &token).await?;
    Ok(no_content())
}
