//! Recounting the profile's counters from the records (an operator's one-off, `facemake-admin recount`):
//! the counters are kept in the writes that change them, so only data written before they existed needs it.
//!
//! Each counter is set from a count of its records, conditioned on the counter still holding the value read
//! before the count: any counted write that lands meanwhile changes the counter, fails the condition, and the
//! recount starts again. So a recount never overwrites a concurrent change.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, Select};

use super::accounts::{user_pk, PROFILE};
use super::{key, n, s, sdk_error, DynamoStore, Item};
use crate::domain::{ProfileStats, UserId};
use crate::ports::PortError;

const WHAT: &str = "stats";
const ATTEMPTS: u32 = 5;

/// A counter attribute of one item.
struct Counter<'a> {
    table: &'a str,
    item: Item,
    attribute: &'static str,
}

fn number(item: &Option<Item>, attribute: &str) -> Option<String> {
    match item.as_ref().and_then(|i| i.get(attribute)) {
        Some(AttributeValue::N(v)) => Some(v.clone()),
        _ => None,
    }
}

impl DynamoStore {
    async fn read_item(&self, table: &str, item: Item) -> Result<Option<Item>, PortError> {
        let out = self
            .client
            .get_item()
            .table_name(table)
            .set_key(Some(item))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error(WHAT, e))?;
        Ok(out.item)
    }

    /// How many items of `pk` start with `prefix` (and, with `status`, have that status).
    async fn count(&self, table: &str, pk: &str, prefix: &str, status: Option<&str>) -> Result<u64, PortError> {
        let mut total = 0u64;
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let mut query = self
                .client
                .query()
                .table_name(table)
                .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
                .expression_attribute_values(":pk", s(pk))
                .expression_attribute_values(":prefix", s(prefix))
                .select(Select::Count)
                .consistent_read(true)
                .set_exclusive_start_key(start.take());
            if let Some(status) = status {
                query = query
                    .filter_expression("#status = :status")
                    .expression_attribute_names("#status", "status")
                    .expression_attribute_values(":status", s(status));
            }
            let out = query.send().await.map_err(|e| sdk_error(WHAT, e))?;
            total += u64::try_from(out.count).unwrap_or(0);
            match out.last_evaluated_key {
                Some(next) if !next.is_empty() => start = Some(next),
                _ => return Ok(total),
            }
        }
    }

    /// Sets `counter` to `value` if it still holds `read` (absent: still absent). `false` when it changed.
    async fn set_counter(&self, counter: &Counter<'_>, read: &Option<String>, value: u64) -> Result<bool, PortError> {
        let mut update = self
            .client
            .update_item()
            .table_name(counter.table)
            .set_key(Some(counter.item.clone()))
            .update_expression("SET #c = :value")
            .expression_attribute_names("#c", counter.attribute)
            .expression_attribute_values(":value", n(value));
        update = match read {
            Some(v) => update
                .condition_expression("#c = :read")
                .expression_attribute_values(":read", AttributeValue::N(v.clone())),
            None => update.condition_expression("attribute_not_exists(#c)"),
        };
        match update.send().await {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(|se| se.is_conditional_check_failed_exception()) => Ok(false),
            Err(e) => Err(sdk_error(WHAT, e)),
        }
    }

    /// Recounts one counter: read it, count its records, set it if unchanged; again if it changed.
    async fn recount(&self, counter: Counter<'_>, records: RecordCount<'_>) -> Result<u64, PortError> {
        for _ in 0..ATTEMPTS {
            let read = number(&self.read_item(counter.table, counter.item.clone()).await?, counter.attribute);
            let value = self.count(records.table, records.pk, records.prefix, records.status).await?;
            if self.set_counter(&counter, &read, value).await? {
                return Ok(value);
            }
        }
        Err(PortError::unavailable(
            WHAT,
            format!("{} kept changing during the recount; run it again", counter.attribute),
        ))
    }

    /// Sets the profile's counters of `user` from the records: generations and succeeded (the generations
    /// table's `INFLIGHT` item), favourites (the profile), characters (the characters table's `COUNT`).
    /// `None` when the user has no profile (nothing is written for it).
    pub async fn recount_stats(&self, user: &UserId) -> Result<Option<ProfileStats>, PortError> {
        let pk = user_pk(user);
        if self.read_item(&self.tables.users, key(&pk, PROFILE)).await?.is_none() {
            return Ok(None);
        }
        let generations = &self.tables.generations;
        let in_flight = || key(&pk, super::generations::IN_FLIGHT);
        Ok(Some(ProfileStats {
            generations: self
                .recount(
                    Counter { table: generations, item: in_flight(), attribute: "generations" },
                    RecordCount { table: generations, pk: &pk, prefix: "GEN#", status: None },
                )
                .await?,
            succeeded: self
                .recount(
                    Counter { table: generations, item: in_flight(), attribute: "succeeded" },
                    RecordCount { table: generations, pk: &pk, prefix: "GEN#", status: Some("succeeded") },
                )
                .await?,
            favorites: self
                .recount(
                    Counter { table: &self.tables.users, item: key(&pk, PROFILE), attribute: "favorites" },
                    RecordCount { table: &self.tables.users, pk: &pk, prefix: "FAV#", status: None },
                )
                .await?,
            characters: self
                .recount(
                    Counter {
                        table: &self.tables.characters,
                        item: key(&pk, super::characters::COUNT),
                        attribute: "count",
                    },
                    RecordCount { table: &self.tables.characters, pk: &pk, prefix: "CHAR#", status: None },
                )
                .await?,
        }))
    }

    /// Every user with a profile, a page at a time (the admin's `recount --all`): the ids of one page and
    /// where the next starts.
    pub async fn profile_page(&self, start: Option<Item>) -> Result<(Vec<UserId>, Option<Item>), PortError> {
        let out = self
            .client
            .scan()
            .table_name(&self.tables.users)
            .filter_expression("sk = :profile")
            .expression_attribute_values(":profile", s(PROFILE))
            .projection_expression("pk")
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|e| sdk_error(WHAT, e))?;
        let users = out
            .items
            .unwrap_or_default()
            .into_iter()
            .filter_map(|i| match i.get("pk") {
                Some(AttributeValue::S(pk)) => pk.strip_prefix("USER#").and_then(|id| UserId::parse(id).ok()),
                _ => None,
            })
            .collect();
        Ok((users, out.last_evaluated_key.filter(|k| !k.is_empty())))
    }
}

/// Which records a counter counts.
#[derive(Clone, Copy)]
struct RecordCount<'a> {
    table: &'a str,
    pk: &'a str,
    prefix: &'static str,
    status: Option<&'static str>,
}
