//! Characters and each user's character count (characters table).
//!
//! - Create: one transaction of the record (`attribute_not_exists`), the count (`count < max`) and a check that
//!   the account has no deletion tombstone, so two creates racing for the last slot cannot both land, and a
//!   create that spent seconds preparing photos cannot land after the account's deletion.
//! - Delete: one transaction of the record's delete (`attribute_exists`) and the count's decrement, so a
//!   character is uncounted once however often it is deleted.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{ConditionCheck, Delete, ReturnValue, TransactWriteItem, Update};
use serde::{Deserialize, Serialize};

use super::accounts::user_pk;
use super::credits::{backoff, transact_item_put};
use super::generations::MAX_ATTEMPTS;
use super::{from_item, key, n, s, sdk_error, to_item, DynamoStore};
use crate::domain::{Character, CharacterId, UnixTime, UserId};
use crate::ports::{CharacterPage, CharacterStore, CreateCharacterOutcome, PortError};

const WHAT: &str = "characters";
/// The sort key of a user's count item.
pub(super) const COUNT: &str = "COUNT";
const PREFIX: &str = "CHAR#";

fn character_sk(id: &CharacterId) -> String {
    format!("{PREFIX}{id}")
}

/// `USER#<id> / CHAR#<ulid>`.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CharacterItem {
    pk: String,
    sk: String,
    #[serde(flatten)]
    character: Character,
}

/// `USER#<id> / COUNT`.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct CountItem {
    #[serde(default)]
    pub(super) count: i64,
}

fn build<T, E: std::error::Error + Send + Sync + 'static>(r: Result<T, E>) -> Result<T, PortError> {
    r.map_err(|e| PortError::internal(WHAT, e))
}

fn conflict(codes: &[Option<String>]) -> bool {
    codes.iter().any(|c| c.as_deref() == Some("TransactionConflict"))
}

impl DynamoStore {
    /// A condition that the account has no deletion tombstone (users table, `DELETED#<hash>`).
    pub(super) fn no_tombstone(&self, user: &UserId) -> Result<TransactWriteItem, PortError> {
        let check = ConditionCheck::builder()
            .table_name(&self.tables.users)
            .set_key(Some(key(format!("DELETED#{}", crate::domain::deletion_key(user)), "DELETED")))
            .condition_expression("attribute_not_exists(pk)")
            .build();
        Ok(TransactWriteItem::builder().condition_check(build(check)?).build())
    }

    fn count_update(&self, user: &UserId, delta: i64, max: Option<u32>) -> Result<TransactWriteItem, PortError> {
        let mut update = Update::builder()
            .table_name(&self.tables.characters)
            .set_key(Some(key(user_pk(user), COUNT)))
            .update_expression("ADD #count :delta")
            .expression_attribute_names("#count", "count")
            .expression_attribute_values(":delta", n(delta));
        if let Some(max) = max {
            update = update
                .condition_expression("attribute_not_exists(#count) OR #count < :max")
                .expression_attribute_values(":max", n(max));
        }
        Ok(TransactWriteItem::builder().update(build(update.build())?).build())
    }
}

#[async_trait]
impl CharacterStore for DynamoStore {
    async fn create_character(&self, character: &Character, max: u32) -> Result<CreateCharacterOutcome, PortError> {
        let user = &character.user_id;
        let item = CharacterItem { pk: user_pk(user), sk: character_sk(&character.id), character: character.clone() };
        let item = to_item(WHAT, &item)?;
        for attempt in 0..MAX_ATTEMPTS {
            let items = vec![
                self.count_update(user, 1, Some(max))?,
                transact_item_put(&self.tables.characters, item.clone(), "attribute_not_exists(pk)")?,
                self.no_tombstone(user)?,
            ];
            match self.transact(WHAT, items).await? {
                None => return Ok(CreateCharacterOutcome::Created),
                Some(codes) if conflict(&codes) => backoff(attempt).await,
                Some(codes) => {
                    let failed = |i: usize| codes.get(i).and_then(Option::as_deref) == Some("ConditionalCheckFailed");
                    return if failed(2) {
                        Ok(CreateCharacterOutcome::AccountDeleted)
                    } else if failed(0) {
                        Ok(CreateCharacterOutcome::LimitReached)
                    } else {
                        Err(PortError::internal(WHAT, format!("character create cancelled: {codes:?}")))
                    };
                }
            }
        }
        Err(PortError::unavailable(WHAT, "character create kept conflicting; retry"))
    }

    async fn character(&self, user: &UserId, id: &CharacterId) -> Result<Option<Character>, PortError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.tables.characters)
            .set_key(Some(key(user_pk(user), character_sk(id))))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error(WHAT, e))?;
        Ok(out.item.map(|i| from_item::<CharacterItem>(WHAT, i)).transpose()?.map(|c| c.character))
    }

    async fn character_count(&self, user: &UserId) -> Result<u64, PortError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.tables.characters)
            .set_key(Some(key(user_pk(user), COUNT)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error(WHAT, e))?;
        Ok(out.item.map(|i| from_item::<CountItem>(WHAT, i)).transpose()?.map_or(0, |c| c.count.max(0).unsigned_abs()))
    }

    async fn characters_page(
        &self,
        user: &UserId,
        limit: usize,
        before: Option<&CharacterId>,
    ) -> Result<CharacterPage, PortError> {
        let (items, more) = self
            .newest_first_page(WHAT, &self.tables.characters, user_pk(user), PREFIX, limit, before.map(character_sk))
            .await?;
        let items = items
            .into_iter()
            .map(|i| from_item::<CharacterItem>(WHAT, i).map(|c| c.character))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(CharacterPage { items, more })
    }

    async fn rename_character(
        &self,
        user: &UserId,
        id: &CharacterId,
        name: &str,
        now: UnixTime,
    ) -> Result<Option<Character>, PortError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.tables.characters)
            .set_key(Some(key(user_pk(user), character_sk(id))))
            .condition_expression("attribute_exists(pk)")
            .update_expression("SET #name = :name, updatedAt = :now")
            .expression_attribute_names("#name", "name")
            .expression_attribute_values(":name", s(name))
            .expression_attribute_values(":now", n(now))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match result {
            Ok(out) => out.attributes.map(|i| from_item::<CharacterItem>(WHAT, i).map(|c| c.character)).transpose(),
            Err(e) if e.as_service_error().is_some_and(|se| se.is_conditional_check_failed_exception()) => Ok(None),
            Err(e) => Err(sdk_error(WHAT, e)),
        }
    }

    async fn delete_character(&self, user: &UserId, id: &CharacterId) -> Result<bool, PortError> {
        for attempt in 0..MAX_ATTEMPTS {
            let delete = build(
                Delete::builder()
                    .table_name(&self.tables.characters)
                    .set_key(Some(key(user_pk(user), character_sk(id))))
                    .condition_expression("attribute_exists(pk)")
                    .build(),
            )?;
            let items = vec![TransactWriteItem::builder().delete(delete).build(), self.count_update(user, -1, None)?];
            match self.transact(WHAT, items).await? {
                None => return Ok(true),
                Some(codes) if conflict(&codes) => backoff(attempt).await,
                // Deleted by a concurrent request: that one uncounted it.
                Some(codes) if codes.first().and_then(Option::as_deref) == Some("ConditionalCheckFailed") => {
                    return Ok(false)
                }
                Some(codes) => return Err(PortError::internal(WHAT, format!("character delete cancelled: {codes:?}"))),
            }
        }
        Err(PortError::unavailable(WHAT, "character delete kept conflicting; retry"))
    }
}
