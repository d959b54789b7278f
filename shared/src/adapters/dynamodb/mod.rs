//! DynamoDB adapters for every store port (the tables themselves are declared in template.yaml; tests and the
//! local API create them from it with the testkit crate's `schema`).
//!
//! Data model (keys are `pk`/`sk` strings in every table; docs/data-model.md has the full picture):
//!
//! | table    | pk                   | sk         | what                                                 |
//! |----------|----------------------|------------|------------------------------------------------------|
//! | users    | `USER#<id>`          | `PROFILE`  | phone, displayName, createdAt, sessionsRevokedAt     |
//! | users    | `PHONE#<e164>`       | `PHONE`    | userId — makes "one user per number" a condition     |
//! | credits  | `USER#<id>`          | `BALANCE`  | balance (never below zero)                           |
//! | credits  | `USER#<id>`          | `LEDGER#<ulid>` | one entry per balance change, same transaction  |
//! | credits  | `APPSTORE_TXN#<id>`  | `TXN`      | a credited App Store transaction: once per id        |
//! | credits  | `APPSTORE_NOTIFICATION#<uuid>` | `NOTIFICATION` | a processed notification, ttl      |
//! | users    | `USER#<id>`          | `FAV#<template>` | a favourite template                           |
//! | catalogue| `TEMPLATE#<id>`      | `TEMPLATE` | a style template (server-only generation settings)   |
//! | catalogue| `CATEGORY#<id>`      | `CATEGORY` | a category                                           |
//! | codes    | `PHONE#<e164>`       | `OTP`      | the live code's HMAC, attempts, send history, ttl   |
//! | codes    | `RL#<key>`           | `W#<start>`| fixed-window rate-limit counter, ttl                 |
//! | sessions | `RT#<sha256>`        | `RT`       | refresh token: user, family, state, expiry, ttl      |
//! | sessions | `FAM#<id>`           | `FAM`      | a revoked refresh-token family, ttl                  |
//! | generations | `USER#<id>`       | `GEN#<ulid>` | a generation; `pending`+`deadline` while in flight |
//! | generations | `USER#<id>`       | `INFLIGHT` | count of queued/processing generations; the profile's `generations`, `succeeded` |
//! | characters | `USER#<id>`        | `CHAR#<ulid>` | a character: name, photo count                  |
//! | characters | `USER#<id>`        | `COUNT`    | how many characters the user has (the cap's condition) |
//! | generations | `USER#<id>`       | `IDEM#<sha256>` | an idempotency key's request hash and result, ttl |
//! | devices  | `DEVICE#<token>`     | `DEVICE`   | an APNs token: userId, environment, registeredAt, ttl; index ByUser |

mod accounts;
mod catalogue;
mod characters;
mod codes;
mod credits;
mod devices;
mod erasure;
mod generations;
mod jobs;
mod purchases;
mod sessions;
mod stats;

pub use generations::TableStream;

use std::collections::HashMap;

use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{AttributeValue, CancellationReason};

use crate::config::Tables;
use crate::ports::PortError;

pub type Item = HashMap<String, AttributeValue>;

/// One DynamoDB client and the table names; implements every store port.
#[derive(Clone, Debug)]
pub struct DynamoStore {
    client: aws_sdk_dynamodb::Client,
    tables: Tables,
}

impl DynamoStore {
    pub fn new(client: aws_sdk_dynamodb::Client, tables: Tables) -> Self {
        Self { client, tables }
    }

    pub fn tables(&self) -> &Tables {
        &self.tables
    }
}

pub(crate) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub(crate) fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub(crate) fn key(pk: impl Into<String>, sk: impl Into<String>) -> Item {
    HashMap::from([("pk".to_owned(), s(pk)), ("sk".to_owned(), s(sk))])
}

/// Maps an SDK error to a port error: throttling, timeouts and network failures are `Unavailable` (503,
/// retryable), everything else `Internal`. The message keeps the service's error code for the logs.
pub(crate) fn sdk_error<E, R>(what: &'static str, err: SdkError<E, R>) -> PortError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let retryable = match &err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => true,
        SdkError::ServiceError(e) => matches!(
            e.err().code(),
            Some(
                "ProvisionedThroughputExceededException"
                    | "ThrottlingException"
                    | "RequestLimitExceeded"
                    | "InternalServerError"
                    | "ServiceUnavailable"
            )
        ),
        _ => false,
    };
    // Service errors: their code and message only (the raw response's headers add nothing to a log line).
    let text = match &err {
        SdkError::ServiceError(e) => service_error_text(e.err()),
        other => DisplayErrorContext(other).to_string(),
    };
    if retryable {
        PortError::unavailable(what, text)
    } else {
        PortError::internal(what, text)
    }
}

/// `Code: message` of a DynamoDB service error.
pub(crate) fn service_error_text(e: &impl ProvideErrorMetadata) -> String {
    format!("{}: {}", e.code().unwrap_or("UnknownError"), e.message().unwrap_or("no message"))
}

pub(crate) fn from_item<T: serde::de::DeserializeOwned>(what: &'static str, item: Item) -> Result<T, PortError> {
    serde_dynamo::from_item(item).map_err(|e| PortError::internal(what, e))
}

pub(crate) fn to_item<T: serde::Serialize>(what: &'static str, value: &T) -> Result<Item, PortError> {
    serde_dynamo::to_item(value).map_err(|e| PortError::internal(what, e))
}

/// The cancellation reason codes of a cancelled transaction, in request order.
pub(crate) fn cancellation_codes(reasons: &[CancellationReason]) -> Vec<Option<&str>> {
    reasons.iter().map(|r| r.code()).collect()
}

impl DynamoStore {
    /// One page of the items of partition `pk` whose sort key starts with `prefix`, newest (highest sort key)
    /// first, strictly before `before_sk`; and whether more exist (one more than asked is read to know).
    pub(crate) async fn newest_first_page(
        &self,
        what: &'static str,
        table: &str,
        pk: String,
        prefix: &str,
        limit: usize,
        before_sk: Option<String>,
    ) -> Result<(Vec<Item>, bool), PortError> {
        let mut query = self
            .client
            .query()
            .table_name(table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
            .expression_attribute_values(":pk", s(pk.clone()))
            .expression_attribute_values(":prefix", s(prefix))
            .scan_index_forward(false)
            .limit(i32::try_from(limit.saturating_add(1)).unwrap_or(i32::MAX))
            .consistent_read(true);
        if let Some(before) = before_sk {
            query = query.set_exclusive_start_key(Some(key(pk, before)));
        }
        let out = query.send().await.map_err(|e| sdk_error(what, e))?;
        let mut items = out.items.unwrap_or_default();
        let more = items.len() > limit;
        items.truncate(limit);
        Ok((items, more))
    }

    /// Reads `N` items (each a table and key) in one BatchGetItem, strongly consistent, retrying unprocessed
    /// keys a few times; each answer in the order asked (`None`: no such item).
    pub(crate) async fn batch_get<const N: usize>(
        &self,
        what: &'static str,
        wanted: [(&String, Item); N],
    ) -> Result<[Option<Item>; N], PortError> {
        use aws_sdk_dynamodb::types::KeysAndAttributes;
        let mut by_table: HashMap<String, Vec<Item>> = HashMap::new();
        for (table, k) in &wanted {
            by_table.entry((*table).clone()).or_default().push(k.clone());
        }
        let mut request_items = HashMap::new();
        for (table, keys) in by_table {
            let ka = KeysAndAttributes::builder()
                .set_keys(Some(keys))
                .consistent_read(true)
                .build()
                .map_err(|e| PortError::internal(what, e))?;
            request_items.insert(table, ka);
        }
        let mut found: Vec<(String, Item)> = Vec::new();
        let mut request = self.client.batch_get_item().set_request_items(Some(request_items));
        for _ in 0..4 {
            let out = request.send().await.map_err(|e| sdk_error(what, e))?;
            for (table, items) in out.responses.unwrap_or_default() {
                found.extend(items.into_iter().map(|i| (table.clone(), i)));
            }
            match out.unprocessed_keys.filter(|u| !u.is_empty()) {
                None => {
                    return Ok(wanted.map(|(table, k)| {
                        found
                            .iter()
                            .position(|(t, i)| t == table && i.get("pk") == k.get("pk") && i.get("sk") == k.get("sk"))
                            .map(|at| found.swap_remove(at).1)
                    }))
                }
                Some(unprocessed) => {
                    request = self.client.batch_get_item().set_request_items(Some(unprocessed));
                    tokio::time::sleep(std::time::Duration::from_millis(25)).await;
                }
            }
        }
        Err(PortError::unavailable(what, "batch read left keys unprocessed"))
    }

    /// Sends `items` as one transaction: `Ok(None)` when written, `Ok(Some(codes))` (each item's cancellation
    /// reason, in order) when cancelled.
    pub(crate) async fn transact(
        &self,
        what: &'static str,
        items: Vec<aws_sdk_dynamodb::types::TransactWriteItem>,
    ) -> Result<Option<Vec<Option<String>>>, PortError> {
        use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError as E;
        match self.client.transact_write_items().set_transact_items(Some(items)).send().await {
            Ok(_) => Ok(None),
            Err(e) if e.as_service_error().is_none() => Err(sdk_error(what, e)),
            Err(e) => match e.into_service_error() {
                E::TransactionCanceledException(c) => Ok(Some(
                    cancellation_codes(c.cancellation_reasons()).into_iter().map(|c| c.map(str::to_owned)).collect(),
                )),
                other => Err(PortError::internal(what, service_error_text(&other))),
            },
        }
    }
}
