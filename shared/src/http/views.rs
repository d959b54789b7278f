//! The JSON shapes of the contract, built from domain types.

use serde::Serialize;

use crate::domain::{phone::mask_e164, rfc3339, LedgerEntry, LedgerKind, ProfileStats, Template, UserAccount};
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
    /// Whether the App Store may be told how much of a purchase was used when it asks (`PATCH /v1/me`).
    pub share_consumption_data: bool,
    /// The profile's counters: on `GET /v1/me` only (reading them is that route's job).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stats: Option<ProfileStats>,
}

impl UserView {
    /// The user with the profile's counters (`GET /v1/me`).
    pub fn with_stats(u: &UserAccount, stats: ProfileStats) -> Self {
        Self { stats: Some(stats), ..Self::from(u) }
    }
}

impl From<&UserAccount> for UserView {
    fn from(u: &UserAccount) -> Self {
        Self {
            id: u.id.to_string(),
            phone: mask_e164(&u.phone),
            display_name: u.display_name.clone(),
            credits: u.credits,
            created_at: rfc3339(u.created_at),
            share_consumption_data: u.consumption_consent,
            stats: None,
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

/// `template` = `{id, name, description, category, tags, previewUrl, costCredits, isTrending, isFavorite?}`.
/// Built field by field from the domain type: the server-only generation settings have no way in.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TemplateView {
    pub id: String,
    pub name: String,
    pub description: String,
    pub category: String,
    pub tags: Vec<String>,
    pub preview_url: String,
    pub cost_credits: u64,
    pub is_trending: bool,
    /// Present only when the caller is signed in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_favorite: Option<bool>,
}

impl TemplateView {
    pub fn new(t: &Template, preview_base_url: &str, is_favorite: Option<bool>) -> Self {
        let preview_url = if t.preview.starts_with("https://") {
            t.preview.clone()
        } else {
            format!("{preview_base_url}{}", t.preview)
        };
        Self {
            id: t.id.to_string(),
            name: t.name.clone(),
            description: t.description.clone(),
            category: t.category.to_string(),
            tags: t.tags.clone(),
            preview_url,
            cost_credits: t.cost_credits,
            is_trending: t.trending,
            is_favorite,
        }
    }
}

/// A page of items with the cursor of the next page (`null` on the last).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PageView<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// `{id, name, count}`.
#[derive(Debug, Serialize)]
pub struct CategoryView {
    pub id: String,
    pub name: String,
    pub count: usize,
}

/// A ledger entry: `{id, kind, amount, balanceAfter, reference, createdAt, shortfall?, debtAfter?}`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LedgerEntryView {
    pub id: String,
    pub kind: LedgerKind,
    pub amount: i64,
    pub balance_after: u64,
    pub reference: String,
    pub created_at: String,
    /// Credits a refund could not take back because they were already spent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shortfall: Option<u64>,
    /// What the user owes after this entry, on entries that change it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub debt_after: Option<u64>,
}

impl From<&LedgerEntry> for LedgerEntryView {
    fn from(e: &LedgerEntry) -> Self {
        Self {
            id: e.id.clone(),
            kind: e.kind,
            amount: e.amount,
            balance_after: e.balance_after,
            reference: e.reference.clone(),
            created_at: rfc3339(e.created_at),
            shortfall: e.shortfall,
            debt_after: e.debt_after,
        }
    }
}
