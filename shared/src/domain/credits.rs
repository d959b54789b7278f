use serde::{Deserialize, Serialize};

use super::{new_id, UnixTime};

/// Why a balance changed. Every change of a balance anywhere is one ledger entry written in the same
/// transaction as the balance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LedgerKind {
    Grant,
    Purchase,
    Spend,
    Refund,
    Reversal,
    Adjustment,
}

/// One entry of a user's credits ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LedgerEntry {
    /// A ULID: entries sort by time.
    pub id: String,
    pub kind: LedgerKind,
    /// Signed change of the balance.
    pub amount: i64,
    pub balance_after: u64,
    /// What caused it: `starter-grant`, a transaction id, a generation id, ...
    pub reference: String,
    pub created_at: UnixTime,
    /// Credits a take-back could not take because the balance was already spent (the balance floors at zero).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shortfall: Option<u64>,
}

impl LedgerEntry {
    pub fn new(kind: LedgerKind, amount: i64, balance_after: u64, reference: &str, now: UnixTime) -> Self {
        Self {
            id: new_id(),
            kind,
            amount,
            balance_after,
            reference: reference.to_owned(),
            created_at: now,
            shortfall: None,
        }
    }

    /// The change from `balance` by `amount`, or `None` when it would take the balance below zero.
    pub fn apply(kind: LedgerKind, balance: u64, amount: i64, reference: &str, now: UnixTime) -> Option<Self> {
        let after = balance.checked_add_signed(amount)?;
        Some(Self::new(kind, amount, after, reference, now))
    }
}
