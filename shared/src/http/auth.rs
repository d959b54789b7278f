use std::sync::Arc;

use lambda_http::Request;

use super::{ApiError, ErrorCode};
use crate::domain::UserId;
use crate::ports::{AccountStore, KeyProvider, PortError};
use crate::tokens::AccessTokens;

/// Guards protected routes: a valid `Authorization: Bearer <access token>` or 401.
pub struct AuthGuard {
    pub keys: Arc<dyn KeyProvider>,
    pub tokens: AccessTokens,
    /// Where deleted accounts are marked: a request that changes something is refused for one, even with an
    /// access token that has not expired yet.
    pub accounts: Arc<dyn AccountStore>,
}

tokio::task_local! {
    /// The deleted-account check of a read, running beside its handler (see [`AuthGuard::user`]).
    static DEFERRED: std::cell::RefCell<Option<tokio::task::JoinHandle<Result<bool, PortError>>>>;
}

fn deleted() -> ApiError {
    ApiError::new(ErrorCode::InvalidToken, "This account was deleted.")
}

/// Runs one request's handler. A read's deleted-account check started by the guard inside it is awaited
/// when the handler is done, and a deleted account's answer is replaced by 401: the check costs the read no
/// round trip of its own, and nothing of a deleted account is answered, even mid-deletion.
pub async fn with_deferred_checks<T, F>(handler: F) -> Result<T, ApiError>
where
    F: std::future::Future<Output = Result<T, ApiError>>,
{
    DEFERRED
        .scope(std::cell::RefCell::new(None), async move {
            let answer = handler.await;
            let check = DEFERRED.try_with(|d| d.borrow_mut().take()).ok().flatten();
            match check {
                None => answer,
                Some(check) => match check.await {
                    Ok(Ok(false)) => answer,
                    Ok(Ok(true)) => Err(deleted()),
                    Ok(Err(e)) => Err(e.into()),
                    Err(e) => Err(PortError::internal("auth guard", e).into()),
                },
            }
        })
        .await
}

/// A deleted-account check running beside a handler's reads (see [`AuthGuard::user_before_write`]).
#[must_use = "a write must wait for the deleted-account check: await `deleted()` or `confirm()` first"]
pub struct AccountCheck(tokio::task::JoinHandle<Result<bool, PortError>>);

impl AccountCheck {
    /// Whether the account is being deleted.
    pub async fn deleted(self) -> Result<bool, PortError> {
        self.0.await.map_err(|e| PortError::internal("auth guard", e))?
    }

    /// `Ok` when the account is not being deleted; 401 INVALID_TOKEN when it is.
    pub async fn confirm(self) -> Result<(), ApiError> {
        if self.deleted().await? {
            return Err(deleted());
        }
        Ok(())
    }

    /// The answer to give when [`AccountCheck::deleted`] said `true`.
    pub fn refusal() -> ApiError {
        deleted()
    }
}

impl AuthGuard {
    /// The signed-in user, or 401 UNAUTHORIZED (no credentials) / INVALID_TOKEN (bad credentials, or an
    /// account that was deleted while its access token is still unexpired). A write waits for that check
    /// (one read) before it changes anything; a read runs it beside its handler when the router's
    /// [`with_deferred_checks`] is around it, so reads pay no extra round trip.
    pub async fn user(&self, req: &Request) -> Result<UserId, ApiError> {
        let user = self.token_user(req).await?;
        let reads_only = matches!(*req.method(), http::Method::GET | http::Method::HEAD | http::Method::OPTIONS);
        if reads_only {
            let (accounts, id) = (self.accounts.clone(), user.clone());
            let deferred = DEFERRED.try_with(|d| {
                let mut slot = d.borrow_mut();
                if slot.is_none() {
                    *slot = Some(tokio::spawn(async move { accounts.is_deleted(&id).await }));
                }
            });
            if deferred.is_ok() {
                return Ok(user);
            }
        }
        if self.accounts.is_deleted(&user).await? {
            return Err(deleted());
        }
        Ok(user)
    }

    /// For a write whose handler reads before it writes: the user, with the deleted-account check started
    /// but not awaited, so it runs beside the handler's reads. The handler must not write before
    /// [`AccountCheck::deleted`] answered `false` (its result is `Err` 401 when the account is being deleted).
    pub async fn user_before_write(&self, req: &Request) -> Result<(UserId, AccountCheck), ApiError> {
        let user = self.token_user(req).await?;
        let (accounts, id) = (self.accounts.clone(), user.clone());
        Ok((user, AccountCheck(tokio::spawn(async move { accounts.is_deleted(&id).await }))))
    }

    /// The user a valid access token names, whether or not the account is being deleted (for `DELETE
    /// /v1/me`, which must be able to finish an interrupted deletion).
    pub async fn token_user(&self, req: &Request) -> Result<UserId, ApiError> {
        let Some(header) = req.headers().get(http::header::AUTHORIZATION) else {
            return Err(ApiError::new(ErrorCode::Unauthorized, "Sign in to continue."));
        };
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .filter(|t| !t.is_empty());
        let invalid =
            || ApiError::new(ErrorCode::InvalidToken, "The access token is not valid. Refresh it or sign in again.");
        let token = token.ok_or_else(invalid)?;
        let keys = self.keys.keys().await?;
        let user = self.tokens.verify(&keys, token).map(|(user, _)| user).map_err(|_| invalid())?;
        crate::telemetry::note_caller(&user);
        Ok(user)
    }

    /// For routes open to everyone that personalise for a signed-in caller: `None` without an
    /// `Authorization` header; a header that is present must hold a valid token (401 otherwise, so the app
    /// learns to refresh it rather than silently getting the anonymous answer).
    pub async fn optional_user(&self, req: &Request) -> Result<Option<UserId>, ApiError> {
        if req.headers().contains_key(http::header::AUTHORIZATION) {
            self.user(req).await.map(Some)
        } else {
            Ok(None)
        }
    }
}
