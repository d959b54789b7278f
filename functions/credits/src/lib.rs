//! Credits and purchases: `GET /v1/credits`, `GET /v1/credits/history`, `POST /v1/credits/purchases`.

use std::sync::Arc;

use facemake::http::views::{LedgerEntryView, PageView};
use facemake::http::{
    decode_cursor, encode_cursor, json, json_body, limit_param, query_param, AccountCheck, ApiError, AuthGuard,
    ErrorCode, PathParams, Request, Response, Router,
};
use facemake::ports::KeyProvider;
use facemake::services::credits::{Credits, PurchaseError};
use facemake::wiring::Deps;
use lambda_http::http::{Method, StatusCode};
use lambda_http::Body;
use serde::{Deserialize, Serialize};

pub struct State {
    pub credits: Credits,
    pub guard: AuthGuard,
    pub keys: Arc<dyn KeyProvider>,
}

impl State {
    /// Fails (a cold-start error) when the App Store settings cannot make a verifier.
    pub fn new(deps: &Deps) -> Result<Self, String> {
        Ok(Self { credits: deps.credits_service()?, guard: deps.auth_guard(), keys: deps.keys.clone() })
    }
}

pub fn router(state: Arc<State>) -> Router {
    Router::new()
        .route(Method::GET, "/v1/credits", state.clone(), balance)
        .route(Method::GET, "/v1/credits/history", state.clone(), history)
        .route(Method::POST, "/v1/credits/purchases", state, purchase)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Product {
    product_id: String,
    credits: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BalanceView {
    balance: u64,
    /// Credits an App Store refund could not take back because they were spent: the next purchase pays them
    /// first. Present only when owed (0 is left out, so the contract's shape is unchanged for everyone else).
    #[serde(skip_serializing_if = "is_zero")]
    debt: u64,
    products: Vec<Product>,
    /// What the app passes as StoreKit's `appAccountToken` when it buys (the user id as a UUID).
    app_account_token: String,
}

async fn balance(state: Arc<State>, req: Request, _: PathParams) -> Result<Response<Body>, ApiError> {
    let user = state.guard.user(&req).await?;
    let funds = state.credits.funds(&user).await?;
    let products = state
        .credits
        .config
        .products
        .iter()
        .map(|p| Product { product_id: p.product_id.clone(), credits: p.credits })
        .collect();
    let token = user.app_account_token().to_string();
    let view = BalanceView { balance: funds.balance, debt: funds.debt, products, app_account_token: token };
    Ok(json(StatusCode::OK, &view))
}

const DEFAULT_LIMIT: usize = 20;
const MAX_LIMIT: usize = 100;

async fn history(state: Arc<State>, req: Request, _: PathParams) -> Result<Response<Body>, ApiError> {
    let user = state.guard.user(&req).await?;
    let limit = limit_param(&req, DEFAULT_LIMIT, MAX_LIMIT)?;
    let keys = state.keys.keys().await?;
    // Bound to the user: one user's cursor is refused for another.
    let scope = format!("history|{user}");
    let before: Option<String> = query_param(&req, "cursor").map(|c| decode_cursor(&keys, &scope, &c)).transpose()?;
    let page = state.credits.history(&user, limit, before.as_deref()).await?;
    let next = match (page.more, page.entries.last()) {
        (true, Some(last)) => Some(encode_cursor(&keys, &scope, &last.id)?),
        _ => None,
    };
    let body = PageView { items: page.entries.iter().map(LedgerEntryView::from).collect(), next_cursor: next };
    Ok(json(StatusCode::OK, &body))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PurchaseRequest {
    signed_transaction: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PurchaseView {
    transaction_id: String,
    product_id: String,
    credits_added: u64,
    /// Of `creditsAdded`, what paid a debt (left out when nothing did).
    #[serde(skip_serializing_if = "is_zero")]
    debt_paid: u64,
    balance: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn purchase_error(e: PurchaseError) -> ApiError {
    let invalid = |message: &str| ApiError::new(ErrorCode::InvalidPurchase, message);
    match e {
        PurchaseError::Rejected(r) => invalid(&format!("The purchase could not be verified: {r}.")),
        PurchaseError::UnknownProduct => invalid("This product does not buy credits."),
        PurchaseError::Revoked => invalid("This purchase was refunded or revoked."),
        PurchaseError::AccountTokenRequired => invalid("This purchase does not name the account it was bought for."),
        PurchaseError::AccountMismatch | PurchaseError::OtherUser => {
            ApiError::new(ErrorCode::Conflict, "This purchase belongs to another account.")
        }
        PurchaseError::AccountDeleted => AccountCheck::refusal(),
        PurchaseError::Port(e) => e.into(),
    }
}

async fn purchase(state: Arc<State>, req: Request, _: PathParams) -> Result<Response<Body>, ApiError> {
    // The deleted-account check runs beside the purchase's balance read; nothing is credited until it passed.
    let (user, check) = state.guard.user_before_write(&req).await?;
    let body: PurchaseRequest = json_body(&req)?;
    if body.signed_transaction.trim().is_empty() {
        return Err(ApiError::validation("signedTransaction", "signedTransaction must not be empty"));
    }
    let p =
        state.credits.purchase(&user, body.signed_transaction.trim(), check.deleted()).await.map_err(purchase_error)?;
    tracing::info!(
        transaction_id = %p.transaction_id,
        credits_added = p.credits_added,
        debt_paid = p.debt_paid,
        new = p.new,
        "purchase"
    );
    let view = PurchaseView {
        transaction_id: p.transaction_id,
        product_id: p.product_id,
        credits_added: p.credits_added,
        debt_paid: p.debt_paid,
        balance: p.balance,
    };
    Ok(json(StatusCode::OK, &view))
}
