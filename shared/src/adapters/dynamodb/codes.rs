//! One-time codes and rate-limit counters (codes table).

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::ReturnValue;
use aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure;
use serde::{Deserialize, Serialize};

use super::{from_item, key, n, s, sdk_error, to_item, DynamoStore};
use crate::domain::{NumberMark, OtpRecord, PhoneNumber, UnixTime};
use crate::ports::{AttemptOutcome, Counter, OtpStore, PortError, RateDecision, RateLimiter, Written};

pub(super) const OTP_SK: &str = "OTP";

pub(super) fn otp_pk(e164: &str) -> String {
    format!("PHONE#{e164}")
}

pub(super) const MARK_SK: &str = "MARK";

/// A deleted account's number, by its keyed hash (`NumberMark`).
pub(super) fn mark_pk(number_key: &str) -> String {
    format!("MARK#{number_key}")
}

#[derive(Serialize, Deserialize)]
pub(super) struct MarkItem {
    pub pk: String,
    pub sk: String,
    pub ttl: UnixTime,
    #[serde(flatten)]
    pub mark: NumberMark,
}

impl MarkItem {
    pub fn new(number_key: &str, mark: NumberMark) -> Self {
        Self { pk: mark_pk(number_key), sk: MARK_SK.to_owned(), ttl: mark.expires_at, mark }
    }
}

#[derive(Serialize, Deserialize)]
pub(super) struct OtpItem {
    pk: String,
    sk: String,
    ttl: UnixTime,
    #[serde(flatten)]
    pub record: OtpRecord,
}

#[async_trait]
impl OtpStore for DynamoStore {
    async fn load(&self, phone: &PhoneNumber) -> Result<Option<OtpRecord>, PortError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.tables.codes)
            .set_key(Some(key(otp_pk(phone.e164()), OTP_SK)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("codes", e))?;
        out.item.map(|item| from_item::<OtpItem>("codes", item).map(|i| i.record)).transpose()
    }

    async fn replace(&self, record: &OtpRecord, expected_version: u64) -> Result<Written, PortError> {
        let item =
            OtpItem { pk: otp_pk(&record.phone), sk: OTP_SK.to_owned(), ttl: record.ttl(), record: record.clone() };
        let mut put = self.client.put_item().table_name(&self.tables.codes).set_item(Some(to_item("codes", &item)?));
        put = if expected_version == 0 {
            put.condition_expression("attribute_not_exists(pk)")
        } else {
            put.condition_expression("version = :expected")
                .expression_attribute_values(":expected", n(expected_version))
        };
        match put.send().await {
            Ok(_) => Ok(Written::Yes),
            Err(e) if e.as_service_error().is_some_and(|se| se.is_conditional_check_failed_exception()) => {
                Ok(Written::Conflict)
            }
            Err(e) => Err(sdk_error("codes", e)),
        }
    }

    async fn reserve_attempt(
        &self,
        phone: &PhoneNumber,
        max_attempts: u32,
        now: UnixTime,
    ) -> Result<AttemptOutcome, PortError> {
        // One conditional update both checks and counts: parallel guesses cannot get past the limit. The
        // condition is `OtpRecord::refusal` (domain/otp.rs) written for DynamoDB; tests/rules.rs holds the two
        // to the same cases.
        let result = self
            .client
            .update_item()
            .table_name(&self.tables.codes)
            .set_key(Some(key(otp_pk(phone.e164()), OTP_SK)))
            .update_expression("SET attempts = attempts + :one")
            .condition_expression(
                "attribute_exists(codeHash) AND used = :false AND attempts < :max AND expiresAt > :now",
            )
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":false", aws_sdk_dynamodb::types::AttributeValue::Bool(false))
            .expression_attribute_values(":max", n(max_attempts))
            .expression_attribute_values(":now", n(now))
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(out) => {
                let item = out.attributes.ok_or_else(|| PortError::internal("codes", "update returned no item"))?;
                Ok(AttemptOutcome::Reserved(from_item::<OtpItem>("codes", item)?.record))
            }
            // Timeouts and network failures are retryable (503), not service answers.
            Err(e) if e.as_service_error().is_none() => Err(super::sdk_error("codes", e)),
            Err(e) => match e.into_service_error() {
                UpdateItemError::ConditionalCheckFailedException(failed) => {
                    let old = failed.item.map(|i| from_item::<OtpItem>("codes", i)).transpose()?.map(|i| i.record);
                    // The condition failed, so some refusal applies; NoCode covers a missing record.
                    let refusal = old.and_then(|r| r.refusal(max_attempts, now));
                    Ok(refusal.map_or(AttemptOutcome::NoCode, AttemptOutcome::from))
                }
                other => Err(PortError::internal("codes", super::service_error_text(&other))),
            },
        }
    }

    async fn consume(&self, phone: &PhoneNumber, code_id: &str) -> Result<Written, PortError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.tables.codes)
            .set_key(Some(key(otp_pk(phone.e164()), OTP_SK)))
            .update_expression("SET used = :true")
            .condition_expression("codeId = :id AND used = :false")
            .expression_attribute_values(":id", s(code_id))
            .expression_attribute_values(":true", aws_sdk_dynamodb::types::AttributeValue::Bool(true))
            .expression_attribute_values(":false", aws_sdk_dynamodb::types::AttributeValue::Bool(false))
            .send()
            .await;
        match result {
            Ok(_) => Ok(Written::Yes),
            Err(e) if e.as_service_error().is_some_and(|se| se.is_conditional_check_failed_exception()) => {
                Ok(Written::Conflict)
            }
            Err(e) => Err(sdk_error("codes", e)),
        }
    }

    async fn number_mark(&self, number_keys: &[String]) -> Result<Option<NumberMark>, PortError> {
        // One read per app key, together (one key but during a rotation); the current key's mark wins.
        let reads = number_keys.iter().map(|number_key| async move {
            let out = self
                .client
                .get_item()
                .table_name(&self.tables.codes)
                .set_key(Some(key(mark_pk(number_key), MARK_SK)))
                .consistent_read(true)
                .send()
                .await
                .map_err(|e| sdk_error("codes", e))?;
            out.item.map(|item| from_item::<MarkItem>("codes", item).map(|i| i.mark)).transpose()
        });
        let marks = futures_util::future::try_join_all(reads).await?;
        Ok(marks.into_iter().flatten().next())
    }
}

#[async_trait]
impl RateLimiter for DynamoStore {
    async fn hit(&self, key_: &str, window_secs: i64, limit: u32, now: UnixTime) -> Result<RateDecision, PortError> {
        let window = now - now.rem_euclid(window_secs);
        let result = self
            .client
            .update_item()
            .table_name(&self.tables.codes)
            .set_key(Some(key(format!("RL#{key_}"), format!("W#{window}"))))
            .update_expression("ADD hits :one SET #ttl = :ttl")
            .condition_expression("attribute_not_exists(hits) OR hits < :limit")
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":limit", n(limit))
            .expression_attribute_values(":ttl", n(window + window_secs + 3600))
            .send()
            .await;
        match result {
            Ok(_) => Ok(RateDecision::Allowed),
            Err(e) if e.as_service_error().is_some_and(|se| se.is_conditional_check_failed_exception()) => {
                Ok(RateDecision::Limited { retry_after_secs: (window + window_secs - now).max(1) as u64 })
            }
            Err(e) => Err(sdk_error("rate limits", e)),
        }
    }

    async fn hit_all(&self, counters: &[Counter], now: UnixTime) -> Result<RateDecision, PortError> {
        use aws_sdk_dynamodb::types::{TransactWriteItem, Update};
        let window_of = |c: &Counter| now - now.rem_euclid(c.window_secs);
        let mut items = Vec::new();
        for c in counters {
            let window = window_of(c);
            let update = Update::builder()
                .table_name(&self.tables.codes)
                .set_key(Some(key(format!("RL#{}", c.key), format!("W#{window}"))))
                .update_expression("ADD hits :one SET #ttl = :ttl")
                .condition_expression("attribute_not_exists(hits) OR hits < :limit")
                .expression_attribute_names("#ttl", "ttl")
                .expression_attribute_values(":one", n(1))
                .expression_attribute_values(":limit", n(c.limit))
                .expression_attribute_values(":ttl", n(window + c.window_secs + 3600))
                .build()
                .map_err(|e| PortError::internal("rate limits", e))?;
            items.push(TransactWriteItem::builder().update(update).build());
        }
        // Concurrent sends touch the same counters; a transaction that lost such a race is tried again, a
        // little later each time.
        for attempt in 0..5u64 {
            if attempt > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(15 * attempt)).await;
            }
            match self.transact("rate limits", items.clone()).await? {
                None => return Ok(RateDecision::Allowed),
                Some(codes) if codes.iter().any(|c| c.as_deref() == Some("ConditionalCheckFailed")) => {
                    let retry = counters
                        .iter()
                        .zip(&codes)
                        .filter(|(_, code)| code.as_deref() == Some("ConditionalCheckFailed"))
                        .map(|(c, _)| (window_of(c) + c.window_secs - now).max(1) as u64)
                        .max()
                        .unwrap_or(1);
                    return Ok(RateDecision::Limited { retry_after_secs: retry });
                }
                Some(_) => continue,
            }
        }
        Err(PortError::unavailable("rate limits", "counter transaction kept conflicting"))
    }
}
