use std::sync::Arc;

use lambda_http::Request;

use super::{ApiError, ErrorCode};
use crate::domain::UserId;
use crate::ports::KeyProvider;
use crate::tokens::AccessTokens;

/// Guards protected routes: a valid `Authorization: Bearer <access token>` or 401.
pub struct AuthGuard {
    pub keys: Arc<dyn KeyProvider>,
    pub tokens: AccessTokens,
}

impl AuthGuard {
    /// The signed-in user, or 401 UNAUTHORIZED (no credentials) / INVALID_TOKEN (bad credentials).
    pub async fn user(&self, req: &Request) -> Result<UserId, ApiError> {
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
        self.tokens.verify(&keys, token).map(|(user, _)| user).map_err(|_| invalid())
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
