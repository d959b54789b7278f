//! Balances, the ledger, App Store purchases and notifications (credits table).
//!
//! Every balance change is one `TransactWriteItems`: the balance item updated on the condition that it still
//! holds the value the change was computed from, the ledger entry carrying the new balance, and whatever
//! else must happen exactly once with it (the purchase record, the notification record). A lost race re-reads
//! and retries, so concurrent changes serialise without ever losing one.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{Put, TransactWriteItem, Update};

use super::accounts::{user_pk, LedgerItem};
use super::{cancellation_codes, from_item, key, n, sdk_error, to_item, DynamoStore, Item};
use crate::domain::{Funds, FundsChange, LedgerEntry, LedgerKind, UnixTime, UserId};
use crate::ports::{
    AdjustOutcome, CreditsStore, LedgerPage, LedgerReader, PortError, PurchaseFacts, PurchaseOutcome, RefundOutcome,
    VerifiedPurchase, Written,
};

const BALANCE: &str = "BALANCE";
/// Attempts of an optimistic balance change before giving up with 503. Each lost race means another writer
/// won, so a burst of N concurrent changes to one balance finishes in N rounds; with the jittered backoff
/// below, 40 attempts cover well over a hundred concurrent writers of one balance (the 200-way generation
/// test) in a few seconds.
pub(super) const MAX_ATTEMPTS: u32 = 40;

/// What to do with the balance a change was computed from.
pub(super) enum Decision<T> {
    /// Change the balance only (conditioned on the balance).
    Apply {
        entry: LedgerEntry,
        then: T,
    },
    /// Change the balance and the debt (conditioned on both), with the change's entries in order.
    Funds {
        change: FundsChange,
        then: T,
    },
    Stop(T),
}

pub(super) enum Change<T> {
    Applied(T),
    Stopped(T),
    /// The condition of `extra[i]` failed.
    ExtraFailed(usize),
}

pub(super) fn transact_item_put(table: &str, item: Item, condition: &str) -> Result<TransactWriteItem, PortError> {
    let put = Put::builder()
        .table_name(table)
        .set_item(Some(item))
        .condition_expression(condition)
        .build()
        .map_err(|e| PortError::internal("credits", e))?;
    Ok(TransactWriteItem::builder().put(put).build())
}

pub(super) async fn backoff(attempt: u32) {
    // "Full jitter": a random wait below a ceiling that doubles per attempt (5 ms .. 160 ms), so concurrent
    // writers of one balance spread out instead of colliding again.
    let ceiling = 5u64 << attempt.min(5);
    let random = crate::crypto::random_bytes::<2>().map_or(ceiling / 2, |b| u64::from(u16::from_le_bytes(b)));
    tokio::time::sleep(Duration::from_millis(1 + random % ceiling)).await;
}

impl DynamoStore {
    async fn read_funds(&self, user: &UserId) -> Result<Option<Funds>, PortError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.tables.credits)
            .set_key(Some(key(user_pk(user), BALANCE)))
            .consistent_read(true)
            .projection_expression("balance, debt")
            .send()
            .await
            .map_err(|e| sdk_error("credits", e))?;
        let Some(mut item) = out.item else { return Ok(None) };
        let number = |v: Option<aws_sdk_dynamodb::types::AttributeValue>| match v {
            None => Ok(0),
            Some(v) => v
                .as_n()
                .ok()
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| PortError::internal("credits", "balance or debt is not a number")),
        };
        Ok(Some(Funds { balance: number(item.remove("balance"))?, debt: number(item.remove("debt"))? }))
    }

    /// Changes `user`'s balance as `decide` says, together with `extra` writes, in one transaction that holds
    /// only if the balance is still what `decide` saw. Retries lost races.
    pub(super) async fn change_balance<T>(
        &self,
        user: &UserId,
        now: UnixTime,
        extra: impl Fn(&LedgerEntry) -> Result<Vec<TransactWriteItem>, PortError>,
        decide: impl Fn(Option<u64>) -> Decision<T>,
    ) -> Result<Change<T>, PortError> {
        self.change_balance_from(user, now, None, extra, decide).await
    }

    /// [`DynamoStore::change_balance`], its first attempt computed from `read` (a balance the caller read
    /// beside its other reads) instead of a read of its own. A stale value only costs a retry: the transaction
    /// holds only if the balance is still that value.
    pub(super) async fn change_balance_from<T>(
        &self,
        user: &UserId,
        now: UnixTime,
        read: Option<u64>,
        extra: impl Fn(&LedgerEntry) -> Result<Vec<TransactWriteItem>, PortError>,
        decide: impl Fn(Option<u64>) -> Decision<T>,
    ) -> Result<Change<T>, PortError> {
        // A balance-only decision never looks at the debt, so a balance read alone can seed it.
        let read = read.map(|balance| Funds { balance, debt: 0 });
        let extra = |entries: &[LedgerEntry]| entries.first().map_or(Ok(vec![]), &extra);
        self.change_funds_from(user, now, read, extra, |funds| decide(funds.map(|f| f.balance))).await
    }

    /// [`DynamoStore::change_balance_from`] for decisions that may also change the debt (`Decision::Funds`):
    /// those are conditioned on the balance and the debt they were computed from, and write every entry of
    /// the change. `extra` gets the change's entries.
    pub(super) async fn change_funds_from<T>(
        &self,
        user: &UserId,
        now: UnixTime,
        read: Option<Funds>,
        extra: impl Fn(&[LedgerEntry]) -> Result<Vec<TransactWriteItem>, PortError>,
        decide: impl Fn(Option<Funds>) -> Decision<T>,
    ) -> Result<Change<T>, PortError> {
        for attempt in 1..=MAX_ATTEMPTS {
            let current = match (attempt, read) {
                (1, Some(funds)) => Some(funds),
                _ => self.read_funds(user).await?,
            };
            let (entries, debt_after, then) = match decide(current) {
                Decision::Stop(t) => return Ok(Change::Stopped(t)),
                Decision::Apply { entry, then } => (vec![entry], None, then),
                Decision::Funds { change, then } => (change.entries, Some(change.after.debt), then),
            };
            let Some(last) = entries.last() else {
                return Err(PortError::internal("credits", "a balance change without a ledger entry"));
            };
            let mut update = Update::builder()
                .table_name(&self.tables.credits)
                .set_key(Some(key(user_pk(user), BALANCE)))
                .expression_attribute_values(":new", n(last.balance_after))
                .expression_attribute_values(":now", n(now));
            update = match debt_after {
                None => update.update_expression("SET balance = :new, updatedAt = :now"),
                Some(debt) => update
                    .update_expression("SET balance = :new, debt = :debt, updatedAt = :now")
                    .expression_attribute_values(":debt", n(debt)),
            };
            // Balance-only changes hold on the balance; debt changes also on the debt (0 is also "absent").
            update = match (current, debt_after) {
                (None, _) => update.condition_expression("attribute_not_exists(pk)"),
                (Some(old), None) => {
                    update.condition_expression("balance = :old").expression_attribute_values(":old", n(old.balance))
                }
                (Some(old), Some(_)) if old.debt == 0 => update
                    .condition_expression("balance = :old AND (attribute_not_exists(debt) OR debt = :oldDebt)")
                    .expression_attribute_values(":old", n(old.balance))
                    .expression_attribute_values(":oldDebt", n(0)),
                (Some(old), Some(_)) => update
                    .condition_expression("balance = :old AND debt = :oldDebt")
                    .expression_attribute_values(":old", n(old.balance))
                    .expression_attribute_values(":oldDebt", n(old.debt)),
            };
            let update = update.build().map_err(|e| PortError::internal("credits", e))?;
            let extra_items = extra(&entries)?;
            let mut items = vec![TransactWriteItem::builder().update(update).build()];
            for entry in &entries {
                items.push(transact_item_put(
                    &self.tables.credits,
                    to_item("credits", &LedgerItem::new(user, entry))?,
                    "attribute_not_exists(pk)",
                )?);
            }
            let fixed = items.len();
            items.extend(extra_items);
            let result = self.client.transact_write_items().set_transact_items(Some(items)).send().await;
            let err = match result {
                Ok(_) => return Ok(Change::Applied(then)),
                Err(e) if e.as_service_error().is_none() => return Err(sdk_error("credits", e)),
                Err(e) => e.into_service_error(),
            };
            match err {
                TransactWriteItemsError::TransactionCanceledException(c) => {
                    let codes = cancellation_codes(c.cancellation_reasons());
                    // An `extra` condition decides the outcome: another writer did what this one came to do.
                    if let Some(i) = codes.iter().skip(fixed).position(|c| *c == Some("ConditionalCheckFailed")) {
                        return Ok(Change::ExtraFailed(i));
                    }
                    let raced =
                        codes.iter().any(|c| matches!(c, Some("ConditionalCheckFailed" | "TransactionConflict")));
                    if !raced {
                        return Err(PortError::unavailable("credits", format!("balance change cancelled: {codes:?}")));
                    }
                }
                other => return Err(PortError::internal("credits", super::service_error_text(&other))),
            }
            backoff(attempt).await;
        }
        Err(PortError::unavailable("credits", "balance kept changing; gave up after retries"))
    }
}

#[async_trait]
impl LedgerReader for DynamoStore {
    async fn ledger_page(&self, id: &UserId, limit: usize, before: Option<&str>) -> Result<LedgerPage, PortError> {
        let (items, more) = self
            .newest_first_page(
                "credits",
                &self.tables.credits,
                user_pk(id),
                "LEDGER#",
                limit,
                before.map(|b| format!("LEDGER#{b}")),
            )
            .await?;
        let entries = items
            .into_iter()
            .map(|i| from_item::<LedgerItem>("credits", i).map(|l| l.entry))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(LedgerPage { entries, more })
    }
}

#[async_trait]
impl CreditsStore for DynamoStore {
    async fn balance(&self, id: &UserId) -> Result<u64, PortError> {
        Ok(self.read_funds(id).await?.map_or(0, |f| f.balance))
    }

    async fn funds(&self, id: &UserId) -> Result<Funds, PortError> {
        Ok(self.read_funds(id).await?.unwrap_or_default())
    }

    async fn credit_purchase(
        &self,
        user: &UserId,
        purchase: &VerifiedPurchase,
        now: UnixTime,
    ) -> Result<PurchaseOutcome, PortError> {
        self.credit_purchase_from(user, purchase, now, None).await
    }

    async fn credit_purchase_from(
        &self,
        user: &UserId,
        purchase: &VerifiedPurchase,
        now: UnixTime,
        funds_read: Option<Funds>,
    ) -> Result<PurchaseOutcome, PortError> {
        self.post_purchase(user, purchase, now, funds_read).await
    }

    async fn refund_purchase(
        &self,
        transaction_id: &str,
        notification_id: &str,
        now: UnixTime,
    ) -> Result<RefundOutcome, PortError> {
        self.post_refund(transaction_id, notification_id, now).await
    }

    async fn reverse_refund(
        &self,
        transaction_id: &str,
        notification_id: &str,
        now: UnixTime,
    ) -> Result<RefundOutcome, PortError> {
        self.post_refund_reversal(transaction_id, notification_id, now).await
    }

    async fn purchase_facts(&self, transaction_id: &str) -> Result<Option<PurchaseFacts>, PortError> {
        self.purchase_facts_of(transaction_id).await
    }

    async fn record_notification(&self, notification_id: &str, now: UnixTime) -> Result<Written, PortError> {
        self.post_notification(notification_id, now).await
    }

    async fn adjust(
        &self,
        user: &UserId,
        amount: i64,
        reason: &str,
        now: UnixTime,
    ) -> Result<AdjustOutcome, PortError> {
        let change = self
            .change_balance(
                user,
                now,
                |_| Ok(vec![]),
                |balance| match balance {
                    None => Decision::Stop(AdjustOutcome::NoSuchUser),
                    Some(b) => match LedgerEntry::apply(LedgerKind::Adjustment, b, amount, reason, now) {
                        None => Decision::Stop(AdjustOutcome::Insufficient { balance: b }),
                        Some(entry) => {
                            let balance = entry.balance_after;
                            Decision::Apply { entry, then: AdjustOutcome::Applied { balance } }
                        }
                    },
                },
            )
            .await?;
        match change {
            Change::Applied(o) | Change::Stopped(o) => Ok(o),
            Change::ExtraFailed(_) => Err(PortError::internal("credits", "adjustment has no extra writes")),
        }
    }
}

impl DynamoStore {
    /// Takes the whole balance and writes off the debt, whatever they are when the change commits, with their
    /// entries (`Funds::forfeit`, `account-deleted`): the first step of anonymising a deleted account's credits.
    pub(super) async fn forfeit(&self, user: &UserId, now: UnixTime) -> Result<(), PortError> {
        self.change_funds_from(
            user,
            now,
            None,
            |_| Ok(vec![]),
            |funds| match funds.and_then(|f| f.forfeit(now)) {
                Some(change) => Decision::Funds { change, then: () },
                None => Decision::Stop(()),
            },
        )
        .await?;
        Ok(())
    }
}

impl DynamoStore {
    /// One transaction of conditional puts: `None` when written, `Some(i)` when item `i`'s condition failed.
    pub(super) async fn transact_once(&self, items: Vec<TransactWriteItem>) -> Result<Option<usize>, PortError> {
        match self.transact("credits", items).await? {
            None => Ok(None),
            Some(codes) => codes
                .iter()
                .position(|c| c.as_deref() == Some("ConditionalCheckFailed"))
                .map(Some)
                .ok_or_else(|| PortError::unavailable("credits", format!("write cancelled: {codes:?}"))),
        }
    }
}
