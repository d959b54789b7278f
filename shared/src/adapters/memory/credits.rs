//! Balances, the ledger and App Store purchases in memory (twin of adapters/dynamodb/credits.rs).

use async_trait::async_trait;

use crate::domain::{Funds, LedgerEntry, LedgerKind, UnixTime, UserId};
use crate::ports::{
    AdjustOutcome, CreditsStore, LedgerPage, LedgerReader, PortError, PurchaseFacts, PurchaseOutcome, RefundOutcome,
    VerifiedPurchase, Written,
};

use super::{MemPurchase, MemoryStore};

#[async_trait]
impl LedgerReader for MemoryStore {
    async fn ledger_page(&self, id: &UserId, limit: usize, before: Option<&str>) -> Result<LedgerPage, PortError> {
        let inner = self.lock();
        let mut older: Vec<LedgerEntry> = inner
            .ledger
            .get(id)
            .map(|l| {
                l.iter().rev().filter(|e| before.is_none_or(|b| e.id.as_str() < b)).take(limit + 1).cloned().collect()
            })
            .unwrap_or_default();
        let more = older.len() > limit;
        older.truncate(limit);
        Ok(LedgerPage { entries: older, more })
    }
}

#[async_trait]
impl CreditsStore for MemoryStore {
    async fn balance(&self, id: &UserId) -> Result<u64, PortError> {
        Ok(self.lock().balance(id).unwrap_or(0))
    }

    async fn funds(&self, id: &UserId) -> Result<Funds, PortError> {
        Ok(self.lock().funds(id))
    }

    async fn credit_purchase(
        &self,
        user: &UserId,
        purchase: &VerifiedPurchase,
        now: UnixTime,
    ) -> Result<PurchaseOutcome, PortError> {
        let mut inner = self.lock();
        if let Some(existing) = inner.purchases.get(&purchase.transaction_id) {
            return Ok(match &existing.user {
                Some(owner) if owner == user => PurchaseOutcome::AlreadyCredited {
                    credits_added: existing.credits,
                    debt_paid: existing.debt_paid,
                    balance: inner.balance(user).unwrap_or(0),
                },
                Some(_) => PurchaseOutcome::OtherUser,
                None => PurchaseOutcome::Revoked,
            });
        }
        let (change, debt_paid) = inner
            .funds(user)
            .purchase(purchase.credits, &purchase.transaction_id, now)
            .ok_or_else(|| PortError::internal("credits", "balance overflow"))?;
        inner.purchases.insert(
            purchase.transaction_id.clone(),
            MemPurchase {
                user: Some(user.clone()),
                credits: purchase.credits,
                refunded: false,
                refunded_credits: 0,
                refund_shortfall: 0,
                debt_paid,
            },
        );
        let balance = inner.apply_funds(user, change).balance;
        Ok(PurchaseOutcome::Credited { credits_added: purchase.credits, debt_paid, balance })
    }

    async fn refund_purchase(
        &self,
        transaction_id: &str,
        notification_id: &str,
        now: UnixTime,
    ) -> Result<RefundOutcome, PortError> {
        let mut inner = self.lock();
        if !inner.notifications.insert(notification_id.to_owned()) {
            return Ok(RefundOutcome::Duplicate);
        }
        let Some(p) = inner.purchases.get(transaction_id) else {
            inner.purchases.insert(
                transaction_id.to_owned(),
                MemPurchase {
                    user: None,
                    credits: 0,
                    refunded: true,
                    refunded_credits: 0,
                    refund_shortfall: 0,
                    debt_paid: 0,
                },
            );
            return Ok(RefundOutcome::UnknownTransaction);
        };
        let (Some(user), false) = (p.user.clone(), p.refunded) else {
            return Ok(RefundOutcome::NotApplicable);
        };
        let split = inner
            .funds(&user)
            .refund(p.credits, transaction_id, now)
            .ok_or_else(|| PortError::internal("credits", "debt overflow"))?;
        let amount = -i64::try_from(split.taken).map_err(|e| PortError::internal("credits", e))?;
        if let Some(p) = inner.purchases.get_mut(transaction_id) {
            p.refunded = true;
            p.refunded_credits = split.taken;
            p.refund_shortfall = split.shortfall;
        }
        let after = inner.apply_funds(&user, split.change);
        Ok(RefundOutcome::Applied {
            user,
            amount,
            shortfall: split.shortfall,
            balance: after.balance,
            debt: after.debt,
        })
    }

    async fn reverse_refund(
        &self,
        transaction_id: &str,
        notification_id: &str,
        now: UnixTime,
    ) -> Result<RefundOutcome, PortError> {
        let mut inner = self.lock();
        if !inner.notifications.insert(notification_id.to_owned()) {
            return Ok(RefundOutcome::Duplicate);
        }
        let Some((user, taken, owed)) = inner
            .purchases
            .get(transaction_id)
            .and_then(|p| p.user.clone().filter(|_| p.refunded).map(|u| (u, p.refunded_credits, p.refund_shortfall)))
        else {
            return Ok(RefundOutcome::NotApplicable);
        };
        let change = inner
            .funds(&user)
            .reverse(taken, owed, transaction_id, now)
            .ok_or_else(|| PortError::internal("credits", "balance overflow"))?;
        let amount = change.entries.first().map_or(0, |e| e.amount);
        if let Some(p) = inner.purchases.get_mut(transaction_id) {
            p.refunded = false;
            p.refunded_credits = 0;
            p.refund_shortfall = 0;
        }
        let after = inner.apply_funds(&user, change);
        Ok(RefundOutcome::Applied { user, amount, shortfall: 0, balance: after.balance, debt: after.debt })
    }

    async fn purchase_facts(&self, transaction_id: &str) -> Result<Option<PurchaseFacts>, PortError> {
        Ok(self.lock().purchases.get(transaction_id).map(|p| PurchaseFacts {
            user: p.user.clone(),
            credits: p.credits,
            refunded: p.refunded,
        }))
    }

    async fn record_notification(&self, notification_id: &str, _now: UnixTime) -> Result<Written, PortError> {
        Ok(if self.lock().notifications.insert(notification_id.to_owned()) { Written::Yes } else { Written::Conflict })
    }

    async fn adjust(
        &self,
        user: &UserId,
        amount: i64,
        reason: &str,
        now: UnixTime,
    ) -> Result<AdjustOutcome, PortError> {
        let mut inner = self.lock();
        let Some(balance) = inner.balance(user) else {
            return Ok(AdjustOutcome::NoSuchUser);
        };
        match LedgerEntry::apply(LedgerKind::Adjustment, balance, amount, reason, now) {
            None => Ok(AdjustOutcome::Insufficient { balance }),
            Some(entry) => Ok(AdjustOutcome::Applied { balance: inner.apply(user, entry) }),
        }
    }
}
