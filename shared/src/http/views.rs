//! The JSON shapes of the contract, built from domain types.

use serde::Serialize;

use crate::domain::{phone::mask_e164, rfc3339, UserAccount};
use crate::services::auth::Session;

/// `user` = `{id, phone (masked), displayName|null, credits, createdAt}`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserView {
    pub id: String,
    pub phone: String,
    pub display_name: Option<String>,
    pub credits: u64,
    pub created_at: String,
}

impl From<&UserAccount> for UserView {
    fn from(u: &UserAccount) -> Self {
        Self {
            id: u.id.to_string(),
            phone: mask_e164(&u.phone),
            display_name: u.display_name.clone(),
            credits: u.credits,
            created_at: rfc3339(u.created_at),
        }
    }
}

/// The answer of verify-code and refresh.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionView {
    pub access_token: String,
    pub refresh_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
    pub is_new_user: bool,
    pub user: UserView,
}

impl From<&Session> for SessionView {
    fn from(s: &Session) -> Self {
        Self {
            access_token: s.access_token.clone(),
            refresh_token: s.refresh_token.clone(),
            token_type: "Bearer",
            expires_in: s.expires_in,
            is_new_user: s.is_new_user,
            user: UserView::from(&s.user),
        }
    }
}
