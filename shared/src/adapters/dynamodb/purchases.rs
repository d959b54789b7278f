//! App Store purchases, refunds and notifications (credits table): each credit, refund or reversal is one
//! balance change (credits.rs) whose transaction also moves the purchase record (`APPSTORE_TXN#<id>`) and
//! records the notification, so each happens exactly once.

use aws_sdk_dynamodb::types::{TransactWriteItem, Update};
use serde::{Deserialize, Serialize};

use super::credits::{backoff, transact_item_put, Change, Decision, MAX_ATTEMPTS};
use super::{from_item, key, n, s, sdk_error, to_item, DynamoStore};
use crate::domain::{Funds, LedgerKind, UnixTime, UserId};
use crate::ports::{CreditsStore, PortError, PurchaseFacts, PurchaseOutcome, RefundOutcome, VerifiedPurchase, Written};

/// How long a processed notification is remembered (the `ttl` of its record).
const NOTIFICATION_TTL_SECS: i64 = crate::ports::NOTIFICATION_DEDUPE_SECS;

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
    /// What the last refund could not take and left owed (what a reversal clears or gives back).
    #[serde(default)]
    refund_shortfall: u64,
    /// Of `credits`, what paid a debt when the purchase was credited.
    #[serde(default)]
    debt_paid: u64,
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

/// A refund or reversal decision never stops; reaching this is a bug.
fn unreachable_stop() -> Result<(), PortError> {
    Err(PortError::internal("credits", "refund decision stopped unexpectedly"))
}

impl DynamoStore {
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

    /// Moves a purchase record from `from` to `to` (recording what a refund took and left owed), on the condition
    /// that it is still in `from`, still belongs to `owner` (account deletion re-keys purchases to an anonymous
    /// id: a refund that read the old owner retries and applies to the new one) and, for a reversal, still holds
    /// the figures it `read`.
    fn purchase_transition(
        &self,
        transaction_id: &str,
        owner: &UserId,
        from: PurchaseState,
        to: PurchaseState,
        (refunded_credits, refund_shortfall): (u64, u64),
        read: Option<(u64, u64)>,
    ) -> Result<TransactWriteItem, PortError> {
        let state = |s: PurchaseState| if s == PurchaseState::Credited { "credited" } else { "refunded" };
        let update = Update::builder()
            .table_name(&self.tables.credits)
            .set_key(Some(key(purchase_pk(transaction_id), "TXN")))
            .update_expression("SET #state = :to, refundedCredits = :taken, refundShortfall = :owed")
            .condition_expression(match read {
                None => "#state = :from AND userId = :owner".to_owned(),
                // A reversal gives back what it read the refund took and owed: those figures must still be the
                // record's (a refund, reversal and refund racing it could have changed them). Records refunded
                // before refundShortfall existed owe 0.
                Some((_, 0)) => "#state = :from AND userId = :owner AND refundedCredits = :readTaken \
                     AND (attribute_not_exists(refundShortfall) OR refundShortfall = :readOwed)"
                    .to_owned(),
                Some(_) => "#state = :from AND userId = :owner AND refundedCredits = :readTaken \
                     AND refundShortfall = :readOwed"
                    .to_owned(),
            })
            .expression_attribute_names("#state", "state")
            .set_expression_attribute_values(Some({
                let mut values = std::collections::HashMap::from([
                    (":owner".to_owned(), s(owner.as_str())),
                    (":from".to_owned(), s(state(from))),
                    (":to".to_owned(), s(state(to))),
                    (":taken".to_owned(), n(refunded_credits)),
                    (":owed".to_owned(), n(refund_shortfall)),
                ]);
                if let Some((taken, owed)) = read {
                    values.insert(":readTaken".to_owned(), n(taken));
                    values.insert(":readOwed".to_owned(), n(owed));
                }
                values
            }))
            .build()
            .map_err(|e| PortError::internal("credits", e))?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    /// Records the notification of a refund that does not apply; `Duplicate` if it was recorded before.
    async fn not_applicable(&self, notification_id: &str, now: UnixTime) -> Result<RefundOutcome, PortError> {
        Ok(match self.post_notification(notification_id, now).await? {
            Written::Yes => RefundOutcome::NotApplicable,
            Written::Conflict => RefundOutcome::Duplicate,
        })
    }

    /// See `CreditsStore::credit_purchase_from`.
    pub(super) async fn post_purchase(
        &self,
        user: &UserId,
        purchase: &VerifiedPurchase,
        now: UnixTime,
        funds_read: Option<Funds>,
    ) -> Result<PurchaseOutcome, PortError> {
        let record = |debt_paid| PurchaseItem {
            pk: purchase_pk(&purchase.transaction_id),
            sk: "TXN".to_owned(),
            user_id: Some(user.clone()),
            product_id: purchase.product_id.clone(),
            original_transaction_id: purchase.original_transaction_id.clone(),
            environment: purchase.environment.clone(),
            credits: purchase.credits,
            state: PurchaseState::Credited,
            refunded_credits: 0,
            refund_shortfall: 0,
            debt_paid,
            created_at: now,
        };
        let change = self
            .change_funds_from(
                user,
                now,
                funds_read,
                |entries| {
                    let paid =
                        entries.iter().filter(|e| e.kind == LedgerKind::Debt).map(|e| e.amount.unsigned_abs()).sum();
                    let item = to_item("credits", &record(paid))?;
                    Ok(vec![transact_item_put(&self.tables.credits, item, "attribute_not_exists(pk)")?])
                },
                |funds| {
                    let funds = funds.unwrap_or_default();
                    match funds.purchase(purchase.credits, &purchase.transaction_id, now) {
                        Some((change, paid)) => {
                            let then = (paid, change.after.balance);
                            Decision::Funds { change, then }
                        }
                        None => Decision::Stop((0, funds.balance)),
                    }
                },
            )
            .await?;
        match change {
            Change::Applied((debt_paid, balance)) => {
                Ok(PurchaseOutcome::Credited { credits_added: purchase.credits, debt_paid, balance })
            }
            Change::Stopped(_) => Err(PortError::internal("credits", "balance overflow")),
            Change::ExtraFailed(_) => {
                // The record and the balance in one round trip (the balance only matters when it is ours).
                let (existing, balance) =
                    tokio::try_join!(self.read_purchase(&purchase.transaction_id), CreditsStore::balance(self, user))?;
                let existing = existing
                    .ok_or_else(|| PortError::internal("credits", "purchase condition failed but no record"))?;
                match existing.user_id {
                    Some(owner) if owner == *user => Ok(PurchaseOutcome::AlreadyCredited {
                        credits_added: existing.credits,
                        debt_paid: existing.debt_paid,
                        balance,
                    }),
                    Some(_) => Ok(PurchaseOutcome::OtherUser),
                    None => Ok(PurchaseOutcome::Revoked),
                }
            }
        }
    }

    /// See `CreditsStore::refund_purchase`.
    pub(super) async fn post_refund(
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
                    refund_shortfall: 0,
                    debt_paid: 0,
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
                .change_funds_from(
                    &user,
                    now,
                    None,
                    |entries| {
                        let refund = entries.first();
                        let taken = refund.map_or(0, |e| e.amount.unsigned_abs());
                        let owed = refund.and_then(|e| e.shortfall).unwrap_or(0);
                        Ok(vec![
                            self.purchase_transition(
                                transaction_id,
                                &user,
                                PurchaseState::Credited,
                                PurchaseState::Refunded,
                                (taken, owed),
                                None,
                            )?,
                            self.notification_put(notification_id, now)?,
                        ])
                    },
                    |funds| match funds.unwrap_or_default().refund(record.credits, transaction_id, now) {
                        Some(split) => {
                            let amount = -i64::try_from(split.taken).unwrap_or(i64::MAX);
                            let then = (amount, split.shortfall, split.change.after);
                            Decision::Funds { change: split.change, then }
                        }
                        None => Decision::Stop((0, 0, Funds::default())),
                    },
                )
                .await?;
            match change {
                Change::Applied((amount, shortfall, after)) => {
                    let (balance, debt) = (after.balance, after.debt);
                    return Ok(RefundOutcome::Applied { user, amount, shortfall, balance, debt });
                }
                Change::Stopped(_) => unreachable_stop()?,
                Change::ExtraFailed(1) => return Ok(RefundOutcome::Duplicate),
                // The purchase changed state under us: look again.
                Change::ExtraFailed(_) => backoff(attempt).await,
            }
        }
        Err(PortError::unavailable("credits", "refund kept conflicting; gave up after retries"))
    }

    /// See `CreditsStore::reverse_refund`.
    pub(super) async fn post_refund_reversal(
        &self,
        transaction_id: &str,
        notification_id: &str,
        now: UnixTime,
    ) -> Result<RefundOutcome, PortError> {
        for attempt in 1..=MAX_ATTEMPTS {
            let record = self.read_purchase(transaction_id).await?;
            let (user, taken, owed) = match record {
                Some(PurchaseItem {
                    user_id: Some(user),
                    state: PurchaseState::Refunded,
                    refunded_credits,
                    refund_shortfall,
                    ..
                }) => (user, refunded_credits, refund_shortfall),
                _ => return self.not_applicable(notification_id, now).await,
            };
            let change = self
                .change_funds_from(
                    &user,
                    now,
                    None,
                    |_| {
                        Ok(vec![
                            self.purchase_transition(
                                transaction_id,
                                &user,
                                PurchaseState::Refunded,
                                PurchaseState::Credited,
                                (0, 0),
                                Some((taken, owed)),
                            )?,
                            self.notification_put(notification_id, now)?,
                        ])
                    },
                    |funds| match funds.unwrap_or_default().reverse(taken, owed, transaction_id, now) {
                        Some(change) => {
                            let then = (change.entries.first().map_or(0, |e| e.amount), change.after);
                            Decision::Funds { change, then }
                        }
                        None => Decision::Stop((0, Funds::default())),
                    },
                )
                .await?;
            match change {
                Change::Applied((amount, after)) => {
                    let (balance, debt) = (after.balance, after.debt);
                    return Ok(RefundOutcome::Applied { user, amount, shortfall: 0, balance, debt });
                }
                Change::Stopped(_) => unreachable_stop()?,
                Change::ExtraFailed(1) => return Ok(RefundOutcome::Duplicate),
                Change::ExtraFailed(_) => backoff(attempt).await,
            }
        }
        Err(PortError::unavailable("credits", "refund reversal kept conflicting; gave up after retries"))
    }

    /// See `CreditsStore::purchase_facts`.
    pub(super) async fn purchase_facts_of(&self, transaction_id: &str) -> Result<Option<PurchaseFacts>, PortError> {
        Ok(self.read_purchase(transaction_id).await?.map(|p| PurchaseFacts {
            user: p.user_id,
            credits: p.credits,
            refunded: p.state == PurchaseState::Refunded,
        }))
    }

    /// See `CreditsStore::record_notification`.
    pub(super) async fn post_notification(&self, notification_id: &str, now: UnixTime) -> Result<Written, PortError> {
        match self.transact_once(vec![self.notification_put(notification_id, now)?]).await? {
            None => Ok(Written::Yes),
            Some(_) => Ok(Written::Conflict),
        }
    }
}
