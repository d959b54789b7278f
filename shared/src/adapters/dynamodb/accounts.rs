//! Users, the phone index and credit balances (users and credits tables).

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::types::{KeysAndAttributes, Put, ReturnValue, TransactWriteItem};
use serde::{Deserialize, Serialize};

use super::{cancellation_codes, from_item, key, n, s, sdk_error, to_item, DynamoStore, Item};
use crate::domain::{LedgerEntry, PhoneNumber, UnixTime, UserAccount, UserId};
use crate::ports::{AccountStore, CreateOutcome, NewUser, PortError, ProfileUpdate};

pub(super) const PROFILE: &str = "PROFILE";
const BALANCE: &str = "BALANCE";
pub(super) const PHONE: &str = "PHONE";

pub(crate) fn user_pk(id: &UserId) -> String {
    format!("USER#{id}")
}

pub(super) fn phone_pk(e164: &str) -> String {
    format!("PHONE#{e164}")
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProfileItem {
    pk: String,
    sk: String,
    user_id: UserId,
    phone: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    display_name: Option<String>,
    created_at: UnixTime,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sessions_revoked_at: Option<UnixTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    number_key: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    consumption_consent: bool,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PhoneItem {
    pk: String,
    sk: String,
    user_id: UserId,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct BalanceItem {
    pub pk: String,
    pub sk: String,
    pub balance: u64,
    pub updated_at: UnixTime,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct LedgerItem {
    pub pk: String,
    pub sk: String,
    #[serde(flatten)]
    pub entry: LedgerEntry,
}

impl LedgerItem {
    pub fn new(user: &UserId, entry: &LedgerEntry) -> Self {
        Self { pk: user_pk(user), sk: format!("LEDGER#{}", entry.id), entry: entry.clone() }
    }
}

fn account(profile: ProfileItem, balance: Option<BalanceItem>) -> UserAccount {
    UserAccount {
        id: profile.user_id,
        phone: profile.phone,
        display_name: profile.display_name,
        credits: balance.map_or(0, |b| b.balance),
        created_at: profile.created_at,
        sessions_revoked_at: profile.sessions_revoked_at,
        number_key: profile.number_key,
        consumption_consent: profile.consumption_consent,
    }
}

fn put_if_absent(table: &str, item: Item) -> TransactWriteItem {
    let put =
        Put::builder().table_name(table).set_item(Some(item)).condition_expression("attribute_not_exists(pk)").build();
    // `build` only fails when a required field is missing; all three are set above.
    TransactWriteItem::builder().set_put(put.ok()).build()
}

impl DynamoStore {
    async fn balance(&self, id: &UserId) -> Result<Option<BalanceItem>, PortError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.tables.credits)
            .set_key(Some(key(user_pk(id), BALANCE)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("credits", e))?;
        out.item.map(|i| from_item("credits", i)).transpose()
    }
}

#[async_trait]
impl AccountStore for DynamoStore {
    async fn find_by_phone(&self, phone: &PhoneNumber) -> Result<Option<UserId>, PortError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.tables.users)
            .set_key(Some(key(phone_pk(phone.e164()), PHONE)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("users", e))?;
        Ok(out.item.map(|i| from_item::<PhoneItem>("users", i)).transpose()?.map(|p| p.user_id))
    }

    async fn get_user(&self, id: &UserId) -> Result<Option<UserAccount>, PortError> {
        // Profile and balance in one round trip.
        let keys = |k: Item| KeysAndAttributes::builder().keys(k).consistent_read(true).build();
        let mut request = self
            .client
            .batch_get_item()
            .request_items(
                &self.tables.users,
                keys(key(user_pk(id), PROFILE)).map_err(|e| PortError::internal("users", e))?,
            )
            .request_items(
                &self.tables.credits,
                keys(key(user_pk(id), BALANCE)).map_err(|e| PortError::internal("users", e))?,
            );
        let (mut profile, mut balance) = (None, None);
        for _ in 0..4 {
            let out = request.send().await.map_err(|e| sdk_error("users", e))?;
            let mut responses = out.responses.unwrap_or_default();
            if let Some(item) = responses.remove(&self.tables.users).and_then(|mut v| v.pop()) {
                profile = Some(from_item::<ProfileItem>("users", item)?);
            }
            if let Some(item) = responses.remove(&self.tables.credits).and_then(|mut v| v.pop()) {
                balance = Some(from_item::<BalanceItem>("credits", item)?);
            }
            match out.unprocessed_keys.filter(|u| !u.is_empty()) {
                None => return Ok(profile.map(|p| account(p, balance))),
                Some(unprocessed) => {
                    request = self.client.batch_get_item().set_request_items(Some(unprocessed));
                    tokio::time::sleep(std::time::Duration::from_millis(25)).await;
                }
            }
        }
        Err(PortError::unavailable("users", "batch read left keys unprocessed"))
    }

    async fn create_user(&self, user: &NewUser) -> Result<CreateOutcome, PortError> {
        let balance = user.starter_grant.as_ref().map_or(0, |g| g.balance_after);
        let profile = ProfileItem {
            pk: user_pk(&user.id),
            sk: PROFILE.to_owned(),
            user_id: user.id.clone(),
            phone: user.phone.e164().to_owned(),
            display_name: None,
            created_at: user.created_at,
            sessions_revoked_at: None,
            number_key: user.number_key.clone(),
            consumption_consent: false,
        };
        let phone = PhoneItem { pk: phone_pk(user.phone.e164()), sk: PHONE.to_owned(), user_id: user.id.clone() };
        let balance_item =
            BalanceItem { pk: user_pk(&user.id), sk: BALANCE.to_owned(), balance, updated_at: user.created_at };
        let mut items = vec![
            // First: the phone index entry, whose condition makes creation happen once per number.
            put_if_absent(&self.tables.users, to_item("users", &phone)?),
            put_if_absent(&self.tables.users, to_item("users", &profile)?),
            put_if_absent(&self.tables.credits, to_item("credits", &balance_item)?),
        ];
        if let Some(grant) = &user.starter_grant {
            items.push(put_if_absent(&self.tables.credits, to_item("credits", &LedgerItem::new(&user.id, grant))?));
        }
        let result = self.client.transact_write_items().set_transact_items(Some(items)).send().await;
        match result {
            Ok(_) => Ok(CreateOutcome::Created(account(profile, Some(balance_item)))),
            // Timeouts and network failures are retryable (503), not service answers.
            Err(e) if e.as_service_error().is_none() => Err(super::sdk_error("users", e)),
            Err(e) => match e.into_service_error() {
                // The phone entry exists (condition), or a concurrent first sign-in is writing it (conflict).
                TransactWriteItemsError::TransactionCanceledException(c)
                    if matches!(
                        cancellation_codes(c.cancellation_reasons()).first(),
                        Some(Some("ConditionalCheckFailed" | "TransactionConflict"))
                    ) =>
                {
                    let existing = self
                        .find_by_phone(&user.phone)
                        .await?
                        .ok_or_else(|| PortError::internal("users", "phone index condition failed but no entry"))?;
                    Ok(CreateOutcome::PhoneTaken(existing))
                }
                TransactWriteItemsError::TransactionCanceledException(c) => Err(PortError::unavailable(
                    "users",
                    format!("create cancelled: {:?}", cancellation_codes(c.cancellation_reasons())),
                )),
                other => Err(PortError::internal("users", super::service_error_text(&other))),
            },
        }
    }

    async fn update_profile(&self, id: &UserId, change: &ProfileUpdate<'_>) -> Result<Option<UserAccount>, PortError> {
        let (mut set, mut remove) = (vec![], vec![]);
        let mut values = std::collections::HashMap::new();
        match change.display_name {
            Some(Some(name)) => {
                set.push("displayName = :name");
                values.insert(":name".to_owned(), s(name));
            }
            Some(None) => remove.push("displayName"),
            None => {}
        }
        match change.consumption_consent {
            Some(true) => {
                set.push("consumptionConsent = :yes");
                values.insert(":yes".to_owned(), aws_sdk_dynamodb::types::AttributeValue::Bool(true));
            }
            Some(false) => remove.push("consumptionConsent"),
            None => {}
        }
        let mut expression = String::new();
        if !set.is_empty() {
            expression = format!("SET {}", set.join(", "));
        }
        if !remove.is_empty() {
            expression = format!("{expression} REMOVE {}", remove.join(", ")).trim().to_owned();
        }
        if expression.is_empty() {
            return self.get_user(id).await;
        }
        self.update_profile_item(id, |update| {
            update.update_expression(expression).set_expression_attribute_values((!values.is_empty()).then_some(values))
        })
        .await
    }

    async fn revoke_sessions(&self, id: &UserId, at: UnixTime) -> Result<(), PortError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.tables.users)
            .set_key(Some(key(user_pk(id), PROFILE)))
            .update_expression("SET sessionsRevokedAt = :at")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":at", n(at))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(|se| se.is_conditional_check_failed_exception()) => Ok(()),
            Err(e) => Err(sdk_error("users", e)),
        }
    }
    async fn mark_deleted(&self, id: &UserId, now: UnixTime) -> Result<(), PortError> {
        let deleted_pk = format!("DELETED#{}", crate::domain::deletion_key(id));
        let mut item = key(deleted_pk, "DELETED");
        item.insert("deletedAt".to_owned(), n(now));
        // While unfinished, the tombstone names the account (in the sparse PendingDeletions index) so the
        // reconciler can finish it; no ttl yet: it keeps blocking the account's writes until then.
        item.insert("userId".to_owned(), s(id.as_str()));
        item.insert("pendingDeletion".to_owned(), s("PENDING"));
        let result = self
            .client
            .put_item()
            .table_name(&self.tables.users)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // Marked by an earlier run: keep its time.
            Err(e) if e.as_service_error().is_some_and(|se| se.is_conditional_check_failed_exception()) => Ok(()),
            Err(e) => Err(sdk_error("users", e)),
        }
    }

    async fn deletion_finished(&self, id: &UserId, now: UnixTime) -> Result<(), PortError> {
        let deleted_pk = format!("DELETED#{}", crate::domain::deletion_key(id));
        self.client
            .update_item()
            .table_name(&self.tables.users)
            .set_key(Some(key(deleted_pk, "DELETED")))
            // Long past any access token's life (15 minutes) and any retry of the app's call.
            .update_expression("SET #ttl = :ttl REMOVE userId, pendingDeletion")
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":ttl", n(now + TOMBSTONE_TTL_SECS))
            .send()
            .await
            .map_err(|e| sdk_error("users", e))?;
        Ok(())
    }

    async fn pending_deletions(&self, limit: usize) -> Result<Vec<UserId>, PortError> {
        let out = self
            .client
            .query()
            .table_name(&self.tables.users)
            .index_name("PendingDeletions")
            .key_condition_expression("pendingDeletion = :pending")
            .expression_attribute_values(":pending", s("PENDING"))
            .limit(i32::try_from(limit).unwrap_or(i32::MAX))
            .send()
            .await
            .map_err(|e| sdk_error("users", e))?;
        Ok(out
            .items
            .unwrap_or_default()
            .into_iter()
            .filter_map(|mut item| item.remove("userId")?.as_s().ok().and_then(|id| UserId::parse(id).ok()))
            .collect())
    }

    async fn is_deleted(&self, id: &UserId) -> Result<bool, PortError> {
        let deleted_pk = format!("DELETED#{}", crate::domain::deletion_key(id));
        let out = self
            .client
            .get_item()
            .table_name(&self.tables.users)
            .set_key(Some(key(deleted_pk, "DELETED")))
            .consistent_read(true)
            .projection_expression("pk")
            .send()
            .await
            .map_err(|e| sdk_error("users", e))?;
        Ok(out.item.is_some())
    }
}

/// How long an account's deletion tombstone is kept.
const TOMBSTONE_TTL_SECS: i64 = 7 * 24 * 3600;

impl DynamoStore {
    /// One update of an existing profile, read back with the balance in the same round trip; `None` when
    /// the user does not exist.
    async fn update_profile_item(
        &self,
        id: &UserId,
        set: impl FnOnce(UpdateItemFluentBuilder) -> UpdateItemFluentBuilder,
    ) -> Result<Option<UserAccount>, PortError> {
        let update = self
            .client
            .update_item()
            .table_name(&self.tables.users)
            .set_key(Some(key(user_pk(id), PROFILE)))
            .condition_expression("attribute_exists(pk)")
            .return_values(ReturnValue::AllNew);
        let (updated, balance) = tokio::join!(set(update).send(), self.balance(id));
        match updated {
            Ok(out) => {
                let item = out.attributes.ok_or_else(|| PortError::internal("users", "update returned no item"))?;
                Ok(Some(account(from_item("users", item)?, balance?)))
            }
            Err(e) if e.as_service_error().is_some_and(|se| se.is_conditional_check_failed_exception()) => Ok(None),
            Err(e) => Err(sdk_error("users", e)),
        }
    }
}
