//! Devices (devices table): `DEVICE#<token> / DEVICE`, one item per APNs token, holding the user who
//! registered it last; the `ByUser` index (userId, registeredAt) finds a user's newest devices.
//!
//! - Register: one transaction of the item's put (whoever held the token loses it: the put replaces the
//!   item) and a check that the account has no deletion tombstone.
//! - Remove: a delete conditioned on the user (and, for a token APNs reported gone, on a registration older
//!   than APNs' report), so one user never removes another's device.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{Put, TransactWriteItem};
use serde::{Deserialize, Serialize};

use super::credits::backoff;
use super::generations::MAX_ATTEMPTS;
use super::{from_item, key, n, s, sdk_error, to_item, DynamoStore};
use crate::domain::{Device, DeviceToken, PushEnvironment, UnixTime, UserId};
use crate::ports::{DeviceStore, PortError, Written};

const WHAT: &str = "devices";
const SK: &str = "DEVICE";
/// The index of a user's devices, newest first.
pub(super) const BY_USER: &str = "ByUser";

fn device_pk(token: &DeviceToken) -> String {
    format!("DEVICE#{token}")
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeviceItem {
    pk: String,
    sk: String,
    #[serde(flatten)]
    device: Device,
    /// DynamoDB's expiry: a registration not renewed within `Device::LIFETIME_SECS`.
    ttl: UnixTime,
}

#[async_trait]
impl DeviceStore for DynamoStore {
    async fn register_device(
        &self,
        user: &UserId,
        token: &DeviceToken,
        environment: PushEnvironment,
        now: UnixTime,
    ) -> Result<Written, PortError> {
        let device = Device { token: token.clone(), user_id: user.clone(), environment, registered_at: now };
        let item = DeviceItem { pk: device_pk(token), sk: SK.to_owned(), device, ttl: now + Device::LIFETIME_SECS };
        let item = to_item(WHAT, &item)?;
        for attempt in 0..MAX_ATTEMPTS {
            let put = Put::builder()
                .table_name(&self.tables.devices)
                .set_item(Some(item.clone()))
                .build()
                .map_err(|e| PortError::internal(WHAT, e))?;
            let items = vec![TransactWriteItem::builder().put(put).build(), self.no_tombstone(user)?];
            match self.transact(WHAT, items).await? {
                None => return Ok(Written::Yes),
                Some(codes) if codes.iter().any(|c| c.as_deref() == Some("TransactionConflict")) => {
                    backoff(attempt).await
                }
                Some(codes) if codes.get(1).and_then(Option::as_deref) == Some("ConditionalCheckFailed") => {
                    return Ok(Written::Conflict)
                }
                Some(codes) => {
                    return Err(PortError::internal(WHAT, format!("device registration cancelled: {codes:?}")))
                }
            }
        }
        Err(PortError::unavailable(WHAT, "device registration kept conflicting; retry"))
    }

    async fn remove_device(
        &self,
        user: &UserId,
        token: &DeviceToken,
        registered_before: Option<UnixTime>,
    ) -> Result<bool, PortError> {
        let mut delete = self
            .client
            .delete_item()
            .table_name(&self.tables.devices)
            .set_key(Some(key(device_pk(token), SK)))
            .condition_expression(match registered_before {
                None => "userId = :user",
                Some(_) => "userId = :user AND registeredAt < :before",
            })
            .expression_attribute_values(":user", s(user.as_str()));
        if let Some(before) = registered_before {
            delete = delete.expression_attribute_values(":before", n(before));
        }
        match delete.send().await {
            Ok(_) => Ok(true),
            // Not there, someone else's now, or registered again since APNs' report.
            Err(e) if e.as_service_error().is_some_and(|se| se.is_conditional_check_failed_exception()) => Ok(false),
            Err(e) => Err(sdk_error(WHAT, e)),
        }
    }

    async fn devices(&self, user: &UserId, limit: usize, now: UnixTime) -> Result<Vec<Device>, PortError> {
        // The index is eventually consistent: a device registered a moment ago may be missed by one push.
        let out = self
            .client
            .query()
            .table_name(&self.tables.devices)
            .index_name(BY_USER)
            .key_condition_expression("userId = :user AND registeredAt > :oldest")
            .expression_attribute_values(":user", s(user.as_str()))
            .expression_attribute_values(":oldest", n(now - Device::LIFETIME_SECS))
            .scan_index_forward(false)
            .limit(i32::try_from(limit).unwrap_or(i32::MAX))
            .send()
            .await
            .map_err(|e| sdk_error(WHAT, e))?;
        out.items.unwrap_or_default().into_iter().map(|i| from_item::<DeviceItem>(WHAT, i).map(|d| d.device)).collect()
    }
}
