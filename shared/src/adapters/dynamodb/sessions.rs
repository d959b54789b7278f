//! Refresh tokens and revoked families (sessions table).

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{ConditionCheck, Put, TransactWriteItem, Update};
use serde::{Deserialize, Serialize};

use super::{cancellation_codes, from_item, key, n, s, sdk_error, to_item, DynamoStore};
use crate::domain::{UnixTime, UserId};
use crate::ports::{PortError, RefreshRecord, RefreshState, RotateOutcome, Rotation, SessionStore};

const RT: &str = "RT";
const FAM: &str = "FAM";

fn token_pk(hash: &str) -> String {
    format!("RT#{hash}")
}

fn family_pk(id: &str) -> String {
    format!("FAM#{id}")
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TokenItem {
    pk: String,
    sk: String,
    user_id: UserId,
    family_id: String,
    family_created_at: UnixTime,
    expires_at: UnixTime,
    state: String,
    ttl: UnixTime,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rotated_at: Option<UnixTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rotated_by: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct FamilyItem {
    pk: String,
    sk: String,
    user_id: UserId,
    revoked_at: UnixTime,
    ttl: UnixTime,
}

const ACTIVE: &str = "active";
const ROTATED: &str = "rotated";

fn to_token_item(r: &RefreshRecord) -> TokenItem {
    TokenItem {
        pk: token_pk(&r.token_hash),
        sk: RT.to_owned(),
        user_id: r.user_id.clone(),
        family_id: r.family_id.clone(),
        family_created_at: r.family_created_at,
        expires_at: r.expires_at,
        state: match r.state {
            RefreshState::Active => ACTIVE,
            RefreshState::Rotated => ROTATED,
        }
        .to_owned(),
        // Kept a day past expiry so a late reuse is still recognised as reuse.
        ttl: r.expires_at + 24 * 3600,
        rotated_at: r.rotated.as_ref().map(|x| x.at),
        rotated_by: r.rotated.as_ref().map(|x| x.by.clone()),
    }
}

#[async_trait]
impl SessionStore for DynamoStore {
    async fn create_session(&self, record: &RefreshRecord) -> Result<(), PortError> {
        self.client
            .put_item()
            .table_name(&self.tables.sessions)
            .set_item(Some(to_item("sessions", &to_token_item(record))?))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await
            .map_err(|e| sdk_error("sessions", e))?;
        Ok(())
    }

    async fn find_session(&self, token_hash: &str) -> Result<Option<RefreshRecord>, PortError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.tables.sessions)
            .set_key(Some(key(token_pk(token_hash), RT)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("sessions", e))?;
        let Some(item) = out.item else {
            return Ok(None);
        };
        let t: TokenItem = from_item("sessions", item)?;
        Ok(Some(RefreshRecord {
            token_hash: token_hash.to_owned(),
            user_id: t.user_id,
            family_id: t.family_id,
            family_created_at: t.family_created_at,
            expires_at: t.expires_at,
            state: if t.state == ACTIVE { RefreshState::Active } else { RefreshState::Rotated },
            rotated: match (t.rotated_at, t.rotated_by) {
                (Some(at), Some(by)) => Some(Rotation { at, by }),
                _ => None,
            },
        }))
    }

    async fn rotate(
        &self,
        old_hash: &str,
        new: &RefreshRecord,
        rotation: &Rotation,
    ) -> Result<RotateOutcome, PortError> {
        let internal = |e| PortError::internal("sessions", e);
        let spend = Update::builder()
            .table_name(&self.tables.sessions)
            .set_key(Some(key(token_pk(old_hash), RT)))
            .update_expression("SET #state = :rotated, rotatedAt = :at, rotatedBy = :by")
            .condition_expression("#state = :active")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":rotated", s(ROTATED))
            .expression_attribute_values(":at", n(rotation.at))
            .expression_attribute_values(":by", s(&rotation.by))
            .expression_attribute_values(":active", s(ACTIVE))
            .build()
            .map_err(internal)?;
        let store = Put::builder()
            .table_name(&self.tables.sessions)
            .set_item(Some(to_item("sessions", &to_token_item(new))?))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(internal)?;
        let family_alive = ConditionCheck::builder()
            .table_name(&self.tables.sessions)
            .set_key(Some(key(family_pk(&new.family_id), FAM)))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(internal)?;
        let result = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().update(spend).build())
            .transact_items(TransactWriteItem::builder().put(store).build())
            .transact_items(TransactWriteItem::builder().condition_check(family_alive).build())
            .send()
            .await;
        match result {
            Ok(_) => Ok(RotateOutcome::Rotated),
            // Timeouts and network failures are retryable (503), not service answers.
            Err(e) if e.as_service_error().is_none() => Err(super::sdk_error("sessions", e)),
            Err(e) => match e.into_service_error() {
                TransactWriteItemsError::TransactionCanceledException(c) => {
                    let codes = cancellation_codes(c.cancellation_reasons());
                    let failed = |i: usize| codes.get(i).copied().flatten();
                    match (failed(0), failed(2)) {
                        (_, Some("ConditionalCheckFailed")) => Ok(RotateOutcome::FamilyRevoked),
                        // Spent already, or being spent by a concurrent request right now: both are reuse.
                        (Some("ConditionalCheckFailed" | "TransactionConflict"), _) => {
                            Ok(RotateOutcome::AlreadyRotated)
                        }
                        _ => Err(PortError::unavailable("sessions", format!("rotation cancelled: {codes:?}"))),
                    }
                }
                other => Err(PortError::internal("sessions", super::service_error_text(&other))),
            },
        }
    }

    async fn revoke_family(&self, family_id: &str, user_id: &UserId, now: UnixTime) -> Result<(), PortError> {
        let item = FamilyItem {
            pk: family_pk(family_id),
            sk: FAM.to_owned(),
            user_id: user_id.clone(),
            revoked_at: now,
            // Tokens of the family live at most refresh-ttl past their rotation; keep the mark longer than that.
            ttl: now + 31 * 24 * 3600 + 24 * 3600,
        };
        self.client
            .put_item()
            .table_name(&self.tables.sessions)
            .set_item(Some(to_item("sessions", &item)?))
            .send()
            .await
            .map_err(|e| sdk_error("sessions", e))?;
        Ok(())
    }
}
