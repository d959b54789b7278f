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
}

impl LedgerEntry {
    pub fn new(kind: LedgerKind, amount: i64, balance_after: u64, reference: &str, now: UnixTime) -> Self {
        Self { id: new_id(), kind, amount, balance_after, reference: reference.to_owned(), created_at: now }
    }
}
