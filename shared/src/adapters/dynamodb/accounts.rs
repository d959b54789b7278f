//! Users, the phone index and credit balances (users and credits tables).

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::types::{Put, ReturnValue, TransactWriteItem};
use serde::{Deserialize, Serialize};

use super::{cancellation_codes, from_item, key, n, s, sdk_error, to_item, DynamoStore, Item};
use crate::domain::{LedgerEntry, PhoneNumber, ProfileStats, UnixTime, UserAccount, UserId};
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
    /// How many favourite templates the user has: changed in the same transaction as each favourite. Signed:
    /// a favourite from before the count was never counted, so removing it can take it below zero (read as 0).
    #[serde(default, skip_serializing_if = "is_zero")]
    favorites: i64,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// A counter as the profile shows it: never below zero.
fn counted(n: i64) -> u64 {
    n.max(0).unsigned_abs()
}

fn balance_key(id: &UserId) -> Item {
    key(user_pk(id), BALANCE)
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
        let [profile, balance] = self
            .batch_get(
                "users",
                [(&self.tables.users, key(user_pk(id), PROFILE)), (&self.tables.credits, balance_key(id))],
            )
            .await?;
        let profile = profile.map(|i| from_item::<ProfileItem>("users", i)).transpose()?;
        let balance = balance.map(|i| from_item::<BalanceItem>("credits", i)).transpose()?;
        Ok(profile.map(|p| account(p, balance)))
    }

    async fn get_user_with_stats(&self, id: &UserId) -> Result<Option<(UserAccount, ProfileStats)>, PortError> {
        // The profile (with its favourites count), the balance, the generation counters and the character
        // count: one round trip across four tables.
        let [profile, balance, generations, characters] = self
            .batch_get(
                "users",
                [
                    (&self.tables.users, key(user_pk(id), PROFILE)),
                    (&self.tables.credits, balance_key(id)),
                    (&self.tables.generations, key(user_pk(id), super::generations::IN_FLIGHT)),
                    (&self.tables.characters, key(user_pk(id), super::characters::COUNT)),
                ],
            )
            .await?;
        let Some(profile) = profile.map(|i| from_item::<ProfileItem>("users", i)).transpose()? else {
            return Ok(None);
        };
        let counters =
            generations.map(|i| from_item::<super::generations::CountersItem>("generations", i)).transpose()?;
        let characters = characters.map(|i| from_item::<super::characters::CountItem>("characters", i)).transpose()?;
        let stats = ProfileStats {
            generations: counters.as_ref().map_or(0, |c| counted(c.generations)),
            succeeded: counters.as_ref().map_or(0, |c| counted(c.succeeded)),
            favorites: counted(profile.favorites),
            characters: characters.map_or(0, |c| counted(c.count)),
        };
        let balance = balance.map(|i| from_item::<BalanceItem>("credits", i)).transpose()?;
        Ok(Some((account(profile, balance), stats)))
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
            favorites: 0,
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
