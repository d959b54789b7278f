//! `facemake-admin`: what an operator does to a stage by hand — load the catalogue, retire a template, grant
//! or take credits with a reason, look a user up. Every change goes through the same ports (and so the same
//! conditional writes and ledger entries) as the API.

use std::path::Path;

use facemake::domain::{PhoneNumber, TemplateId, UserId};
use facemake::ports::{AccountStore, AdjustOutcome, CatalogueStore, Clock, CreditsStore, LedgerReader};

pub type Result<T> = std::result::Result<T, String>;

/// The stores the commands work on (DynamoDB for a stage, memory in tests).
pub trait AdminStore: AccountStore + CreditsStore + CatalogueStore + LedgerReader {}
impl<T: AccountStore + CreditsStore + CatalogueStore + LedgerReader> AdminStore for T {}

/// Publishes preview files (the stage's assets bucket).
#[async_trait::async_trait]
pub trait Assets: Send + Sync {
    async fn put(&self, key: &str, bytes: Vec<u8>, content_type: &str) -> Result<()>;
}

/// `seed`: upserts every category and template of the file; with `assets`, uploads their previews first so
/// no template ever points at a missing image.
pub async fn seed(store: &dyn AdminStore, file: &Path, assets: Option<&dyn Assets>) -> Result<String> {
    let yaml = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let catalogue = facemake::domain::CatalogueFile::parse(&yaml)?;
    let dir = file.parent().unwrap_or(Path::new("."));
    let mut uploaded = 0;
    if let Some(assets) = assets {
        for t in catalogue.templates.iter().filter(|t| !t.preview.starts_with("https://")) {
            let bytes = std::fs::read(dir.join(&t.preview)).map_err(|e| format!("{}: {e}", t.preview))?;
            let content_type = if t.preview.ends_with(".png") { "image/png" } else { "image/jpeg" };
            assets.put(&t.preview, bytes, content_type).await?;
            uploaded += 1;
        }
    }
    let written = facemake::services::catalogue::seed_catalogue(store, file).await?;
    let active = written.templates.iter().filter(|t| t.active).count();
    Ok(format!(
        "seeded {} categories and {} templates ({active} active); uploaded {uploaded} previews",
        written.categories.len(),
        written.templates.len()
    ))
}

/// `activate` / `deactivate`. Containers pick the change up when their catalogue cache expires.
pub async fn set_active(store: &dyn AdminStore, id: &str, active: bool) -> Result<String> {
    let id = TemplateId::parse(id).map_err(|e| e.to_string())?;
    if store.set_template_active(&id, active).await.map_err(|e| e.to_string())? {
        Ok(format!("template {id} is now {}", if active { "active" } else { "inactive" }))
    } else {
        Err(format!("no template {id}"))
    }
}

/// Who a command is about: a user id or a phone number.
pub async fn resolve_user(store: &dyn AdminStore, user: Option<&str>, phone: Option<&str>) -> Result<UserId> {
    match (user, phone) {
        (Some(id), None) => UserId::parse(id).map_err(|e| e.to_string()),
        (None, Some(phone)) => {
            let phone = PhoneNumber::parse(phone, None).map_err(|e| e.to_string())?;
            store
                .find_by_phone(&phone)
                .await
                .map_err(|e| e.to_string())?
                .ok_or_else(|| "no user has that number".to_owned())
        }
        _ => Err("name the user with exactly one of --user or --phone".to_owned()),
    }
}

/// `grant` (positive `amount`) or `take` (negative): one ledger entry of kind adjustment, `admin: <reason>`.
pub async fn adjust(
    store: &dyn AdminStore,
    user: &UserId,
    amount: i64,
    reason: &str,
    clock: &dyn Clock,
) -> Result<String> {
    let reason = reason.trim();
    if reason.is_empty() || reason.chars().count() > 200 {
        return Err("give a reason of 1-200 characters (it is kept in the user's ledger)".to_owned());
    }
    if amount == 0 {
        return Err("the amount must not be zero".to_owned());
    }
    let reference = format!("admin: {reason}");
    match store.adjust(user, amount, &reference, clock.now()).await.map_err(|e| e.to_string())? {
        AdjustOutcome::Applied { balance } => Ok(format!("user {user}: {amount:+} credits, balance {balance}")),
        AdjustOutcome::Insufficient { balance } => {
            Err(format!("user {user} has {balance} credits; taking {} would go below zero", -amount))
        }
        AdjustOutcome::NoSuchUser => Err(format!("no user {user}")),
    }
}

/// `user`: the account and its latest ledger entries.
pub async fn describe_user(store: &dyn AdminStore, user: &UserId) -> Result<String> {
    let account = store.get_user(user).await.map_err(|e| e.to_string())?.ok_or_else(|| format!("no user {user}"))?;
    let ledger = store.ledger(user, 10).await.map_err(|e| e.to_string())?;
    let mut out = format!(
        "user {}\n  phone        {}\n  display name {}\n  created      {}\n  balance      {}\n  latest ledger entries:\n",
        account.id,
        facemake::domain::phone::mask_e164(&account.phone),
        account.display_name.as_deref().unwrap_or("-"),
        facemake::domain::rfc3339(account.created_at),
        account.credits,
    );
    for e in ledger {
        out.push_str(&format!(
            "    {}  {:<10} {:>+6}  -> {:<6} {}\n",
            facemake::domain::rfc3339(e.created_at),
            format!("{:?}", e.kind).to_lowercase(),
            e.amount,
            e.balance_after,
            e.reference
        ));
    }
    Ok(out)
}

/// `recount`: one user's profile counters set from the records.
pub async fn recount(store: &facemake::adapters::dynamodb::DynamoStore, user: &UserId) -> Result<String> {
    match store.recount_stats(user).await.map_err(|e| e.to_string())? {
        Some(s) => Ok(format!(
            "user {user}: generations {}, succeeded {}, favorites {}, characters {}",
            s.generations, s.succeeded, s.favorites, s.characters
        )),
        None => Err(format!("no user {user}")),
    }
}

/// `recount --all`: every user with a profile, page by page of the users table.
pub async fn recount_all(store: &facemake::adapters::dynamodb::DynamoStore) -> Result<String> {
    let (mut users, mut start) = (0usize, None);
    loop {
        let (page, next) = store.profile_page(start).await.map_err(|e| e.to_string())?;
        for user in &page {
            store.recount_stats(user).await.map_err(|e| format!("user {user}: {e}"))?;
        }
        users += page.len();
        match next {
            Some(next) => start = Some(next),
            None => return Ok(format!("recounted {users} users")),
        }
    }
}
