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
use serde::{Deserialize, Serialize};

use super::accounts::{user_pk, LedgerItem};
use super::{cancellation_codes, from_item, key, n, s, sdk_error, to_item, DynamoStore, Item};
use crate::domain::{LedgerEntry, LedgerKind, UnixTime, UserId};
use crate::ports::{
    AdjustOutcome, CreditsStore, LedgerPage, LedgerReader, PortError, PurchaseOutcome, RefundOutcome, VerifiedPurchase,
    Written,
};

const BALANCE: &str = "BALANCE";
/// How long a processed notification is remembered (Apple retries a failed delivery five times, the last
/// about six and a half days after the first attempt).
const NOTIFICATION_TTL_SECS: i64 = 90 * 24 * 3600;
/// Attempts of an optimistic balance change before giving up with 503. Each lost race means another writer
/// won, so a burst of N concurrent changes to one balance finishes in N rounds; with the jittered backoff
/// below, 40 attempts cover well over a hundred concurrent writers of one balance (the 200-way generation
/// test) in a few seconds.
const MAX_ATTEMPTS: u32 = 40;

fn purchase_pk(transaction_id: &str) -> String {
    format!("APPSTORE_TXN#{transaction_id}")
}

fn notification_pk(id: &str) -> String {
    format!("APPSTORE_NOTIFICATION#{id}")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum PurchaseState {
    Credited,
    Refunded,
}

/// `APPSTORE_TXN#<transactionId>`: makes "credit once per transaction" a condition.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PurchaseItem {
    pk: String,
    sk: String,
    /// Absent when Apple's refund arrived before the transaction was ever posted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    user_id: Option<UserId>,
    product_id: String,
    original_transaction_id: String,
    environment: String,
    credits: u64,
    state: PurchaseState,
    /// What the last refund actually took (what a reversal gives back).
    #[serde(default)]
    refunded_credits: u64,
    created_at: UnixTime,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct NotificationItem {
    pk: String,
    sk: String,
    received_at: UnixTime,
    ttl: UnixTime,
}

/// What to do with the balance a change was computed from.
pub(super) enum Decision<T> {
    Apply { entry: LedgerEntry, then: T },
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
    async fn read_balance(&self, user: &UserId) -> Result<Option<u64>, PortError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.tables.credits)
            .set_key(Some(key(user_pk(user), BALANCE)))
            .consistent_read(true)
            .projection_expression("balance")
            .send()
            .await
            .map_err(|e| sdk_error("credits", e))?;
        match out.item.and_then(|mut i| i.remove("balance")) {
            None => Ok(None),
            Some(v) => v
                .as_n()
                .ok()
                .and_then(|n| n.parse().ok())
                .map(Some)
                .ok_or_else(|| PortError::internal("credits", "balance is not a number")),
        }
    }

    async fn read_purchase(&self, transaction_id: &str) -> Result<Option<PurchaseItem>, PortError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.tables.credits)
            .set_key(Some(key(purchase_pk(transaction_id), "TXN")))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("credits", e))?;
        out.item.map(|i| from_item("credits", i)).transpose()
    }

    fn notification_put(&self, id: &str, now: UnixTime) -> Result<TransactWriteItem, PortError> {
        let item = NotificationItem {
            pk: notification_pk(id),
            sk: "NOTIFICATION".to_owned(),
            received_at: now,
            ttl: now + NOTIFICATION_TTL_SECS,
        };
        transact_item_put(&self.tables.credits, to_item("credits", &item)?, "attribute_not_exists(pk)")
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
        for attempt in 1..=MAX_ATTEMPTS {
            let current = match (attempt, read) {
                (1, Some(balance)) => Some(balance),
                _ => self.read_balance(user).await?,
            };
            let (entry, then) = match decide(current) {
                Decision::Stop(t) => return Ok(Change::Stopped(t)),
                Decision::Apply { entry, then } => (entry, then),
            };
            let mut update = Update::builder()
                .table_name(&self.tables.credits)
                .set_key(Some(key(user_pk(user), BALANCE)))
                .update_expression("SET balance = :new, updatedAt = :now")
                .expression_attribute_values(":new", n(entry.balance_after))
                .expression_attribute_values(":now", n(now));
            update = match current {
                Some(old) => update.condition_expression("balance = :old").expression_attribute_values(":old", n(old)),
                None => update.condition_expression("attribute_not_exists(pk)"),
            };
            let update = update.build().map_err(|e| PortError::internal("credits", e))?;
            let extra_items = extra(&entry)?;
            let mut items = vec![
                TransactWriteItem::builder().update(update).build(),
                transact_item_put(
                    &self.tables.credits,
                    to_item("credits", &LedgerItem::new(user, &entry))?,
                    "attribute_not_exists(pk)",
                )?,
            ];
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
                    if let Some(i) = codes.iter().skip(2).position(|c| *c == Some("ConditionalCheckFailed")) {
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
        Ok(self.read_balance(id).await?.unwrap_or(0))
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
        balance_read: Option<u64>,
    ) -> Result<PurchaseOutcome, PortError> {
        let record = PurchaseItem {
            pk: purchase_pk(&purchase.transaction_id),
            sk: "TXN".to_owned(),
            user_id: Some(user.clone()),
            product_id: purchase.product_id.clone(),
            original_transaction_id: purchase.original_transaction_id.clone(),
            environment: purchase.environment.clone(),
            credits: purchase.credits,
            state: PurchaseState::Credited,
            refunded_credits: 0,
            created_at: now,
        };
        let record = to_item("credits", &record)?;
        let change = self
            .change_balance_from(
                user,
                now,
                balance_read,
                |_| Ok(vec![transact_item_put(&self.tables.credits, record.clone(), "attribute_not_exists(pk)")?]),
                |balance| match LedgerEntry::apply(
                    LedgerKind::Purchase,
                    balance.unwrap_or(0),
                    i64::try_from(purchase.credits).unwrap_or(i64::MAX),
                    &purchase.transaction_id,
                    now,
                ) {
                    Some(entry) => {
                        let balance = entry.balance_after;
                        Decision::Apply { entry, then: balance }
                    }
                    None => Decision::Stop(balance.unwrap_or(0)),
                },
            )
            .await?;
        match change {
            Change::Applied(balance) => Ok(PurchaseOutcome::Credited { credits_added: purchase.credits, balance }),
            Change::Stopped(_) => Err(PortError::internal("credits", "balance overflow")),
            Change::ExtraFailed(_) => {
                // The record and the balance in one round trip (the balance only matters when it is ours).
                let (existing, balance) =
                    tokio::try_join!(self.read_purchase(&purchase.transaction_id), self.balance(user))?;
                let existing = existing
                    .ok_or_else(|| PortError::internal("credits", "purchase condition failed but no record"))?;
                match existing.user_id {
                    Some(owner) if owner == *user => {
                        Ok(PurchaseOutcome::AlreadyCredited { credits_added: existing.credits, balance })
                    }
                    Some(_) => Ok(PurchaseOutcome::OtherUser),
                    None => Ok(PurchaseOutcome::Revoked),
                }
            }
        }
    }

    async fn refund_purchase(
        &self,
        transaction_id: &str,
        notification_id: &str,
        now: UnixTime,
    ) -> Result<RefundOutcome, PortError> {
        for attempt in 1..=MAX_ATTEMPTS {
            let Some(record) = self.read_purchase(transaction_id).await? else {
                // Refunded before it was ever posted: remember that, so a later post is refused.
                let record = PurchaseItem {
                    pk: purchase_pk(transaction_id),
                    sk: "TXN".to_owned(),
                    user_id: None,
                    product_id: String::new(),
                    original_transaction_id: String::new(),
                    environment: String::new(),
                    credits: 0,
                    state: PurchaseState::Refunded,
                    refunded_credits: 0,
                    created_at: now,
                };
                let items = vec![
                    transact_item_put(&self.tables.credits, to_item("credits", &record)?, "attribute_not_exists(pk)")?,
                    self.notification_put(notification_id, now)?,
                ];
                match self.transact_once(items).await? {
                    None => return Ok(RefundOutcome::UnknownTransaction),
                    Some(1) => return Ok(RefundOutcome::Duplicate),
                    Some(_) => {
                        backoff(attempt).await;
                        continue;
                    }
                }
            };
            let user = match (&record.user_id, record.state) {
                (Some(user), PurchaseState::Credited) => user.clone(),
                _ => return self.not_applicable(notification_id, now).await,
            };
            let change = self
                .change_balance(
                    &user,
                    now,
                    |entry| {
                        let take = entry.amount.unsigned_abs();
                        Ok(vec![
                            self.purchase_transition(
                                transaction_id,
                                &user,
                                PurchaseState::Credited,
                                PurchaseState::Refunded,
                                take,
                            )?,
                            self.notification_put(notification_id, now)?,
                        ])
                    },
                    |balance| {
                        let balance = balance.unwrap_or(0);
                        let take = balance.min(record.credits);
                        let amount = -i64::try_from(take).unwrap_or(i64::MAX);
                        let mut entry =
                            LedgerEntry::new(LedgerKind::Refund, amount, balance - take, transaction_id, now);
                        let shortfall = record.credits - take;
                        entry.shortfall = (shortfall > 0).then_some(shortfall);
                        let after = entry.balance_after;
                        Decision::Apply { entry, then: (amount, shortfall, after) }
                    },
                )
                .await?;
            match change {
                Change::Applied((amount, shortfall, balance)) => {
                    return Ok(RefundOutcome::Applied { user, amount, shortfall, balance })
                }
                Change::Stopped(_) => unreachable_stop()?,
                Change::ExtraFailed(1) => return Ok(RefundOutcome::Duplicate),
                // The purchase changed state under us: look again.
                Change::ExtraFailed(_) => backoff(attempt).await,
            }
        }
        Err(PortError::unavailable("credits", "refund kept conflicting; gave up after retries"))
    }

    async fn reverse_refund(
        &self,
        transaction_id: &str,
        notification_id: &str,
        now: UnixTime,
    ) -> Result<RefundOutcome, PortError> {
        for attempt in 1..=MAX_ATTEMPTS {
            let record = self.read_purchase(transaction_id).await?;
            let (user, give) = match record {
                Some(PurchaseItem {
                    user_id: Some(user), state: PurchaseState::Refunded, refunded_credits, ..
                }) => (user, refunded_credits),
                _ => return self.not_applicable(notification_id, now).await,
            };
            let amount = i64::try_from(give).unwrap_or(i64::MAX);
            let change = self
                .change_balance(
                    &user,
                    now,
                    |_| {
                        Ok(vec![
                            self.purchase_transition(
                                transaction_id,
                                &user,
                                PurchaseState::Refunded,
                                PurchaseState::Credited,
                                0,
                            )?,
                            self.notification_put(notification_id, now)?,
                        ])
                    },
                    |balance| match LedgerEntry::apply(
                        LedgerKind::Reversal,
                        balance.unwrap_or(0),
                        amount,
                        transaction_id,
                        now,
                    ) {
                        Some(entry) => {
                            let after = entry.balance_after;
                            Decision::Apply { entry, then: after }
                        }
                        None => Decision::Stop(0),
                    },
                )
                .await?;
            match change {
                Change::Applied(balance) => return Ok(RefundOutcome::Applied { user, amount, shortfall: 0, balance }),
                Change::Stopped(_) => unreachable_stop()?,
                Change::ExtraFailed(1) => return Ok(RefundOutcome::Duplicate),
                Change::ExtraFailed(_) => backoff(attempt).await,
            }
        }
        Err(PortError::unavailable("credits", "refund reversal kept conflicting; gave up after retries"))
    }

    async fn record_notification(&self, notification_id: &str, now: UnixTime) -> Result<Written, PortError> {
        match self.transact_once(vec![self.notification_put(notification_id, now)?]).await? {
            None => Ok(Written::Yes),
            Some(_) => Ok(Written::Conflict),
        }
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
    /// Takes the whole balance, whatever it is when the change commits, with an `adjustment` entry
    /// (`account-deleted`): the first step of anonymising a deleted account's credits.
    pub(super) async fn forfeit(&self, user: &UserId, now: UnixTime) -> Result<(), PortError> {
        self.change_balance(
            user,
            now,
            |_| Ok(vec![]),
            |balance| match balance {
                Some(b) if b > 0 => {
                    let amount = -i64::try_from(b).unwrap_or(i64::MAX);
                    let entry = LedgerEntry::new(LedgerKind::Adjustment, amount, 0, "account-deleted", now);
                    Decision::Apply { entry, then: () }
                }
                _ => Decision::Stop(()),
            },
        )
        .await?;
        Ok(())
    }
}

/// A refund or reversal decision never stops; reaching this is a bug.
fn unreachable_stop() -> Result<(), PortError> {
    Err(PortError::internal("credits", "refund decision stopped unexpectedly"))
}

impl DynamoStore {
    /// Moves a purchase record from `from` to `to` (recording what a refund took), on the condition that it
    /// is still in `from` and still belongs to `owner` (account deletion re-keys purchases to an anonymous id:
    /// a refund that read the old owner retries and applies to the new one).
    fn purchase_transition(
        &self,
        transaction_id: &str,
        owner: &UserId,
        from: PurchaseState,
        to: PurchaseState,
        refunded_credits: u64,
    ) -> Result<TransactWriteItem, PortError> {
        let state = |s: PurchaseState| if s == PurchaseState::Credited { "credited" } else { "refunded" };
        let update = Update::builder()
            .table_name(&self.tables.credits)
            .set_key(Some(key(purchase_pk(transaction_id), "TXN")))
            .update_expression("SET #state = :to, refundedCredits = :taken")
            .condition_expression("#state = :from AND userId = :owner")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":owner", s(owner.as_str()))
            .expression_attribute_values(":from", s(state(from)))
            .expression_attribute_values(":to", s(state(to)))
            .expression_attribute_values(":taken", n(refunded_credits))
            .build()
            .map_err(|e| PortError::internal("credits", e))?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    /// Records the notification of a refund that does not apply; `Duplicate` if it was recorded before.
    async fn not_applicable(&self, notification_id: &str, now: UnixTime) -> Result<RefundOutcome, PortError> {
        Ok(match self.record_notification(notification_id, now).await? {
            Written::Yes => RefundOutcome::NotApplicable,
            Written::Conflict => RefundOutcome::Duplicate,
        })
    }

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
