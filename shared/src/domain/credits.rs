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
    /// A change of what the user owes: an App Store refund of credits already spent records the credits it
    /// could not take back (amount 0), and the next purchase pays it first (amount minus what it paid).
    Debt,
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
    /// What the user owes after this entry, on the entries that change it (`debt`, and a `reversal` that
    /// clears a debt).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub debt_after: Option<u64>,
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
            debt_after: None,
        }
    }

    /// The change from `balance` by `amount`, or `None` when it would take the balance below zero.
    pub fn apply(kind: LedgerKind, balance: u64, amount: i64, reference: &str, now: UnixTime) -> Option<Self> {
        let after = balance.checked_add_signed(amount)?;
        Some(Self::new(kind, amount, after, reference, now))
    }
}

/// A user's credits: the balance, and the debt an App Store refund of credits already spent left behind.
/// `balance - debt` is what the user's purchases and grants net of their use; every rule below keeps that
/// right, and each change is written with its ledger entries in one conditional write (adapters).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Funds {
    pub balance: u64,
    pub debt: u64,
}

/// A change of [`Funds`]: the ledger entries in order (the last carries the final balance) and the result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FundsChange {
    pub entries: Vec<LedgerEntry>,
    pub after: Funds,
}

/// What an App Store refund did: taken from the balance, and owed because the balance was short.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundSplit {
    pub change: FundsChange,
    pub taken: u64,
    pub shortfall: u64,
}

impl Funds {
    /// A refund of a purchase of `credits`: takes what the balance holds, and the rest becomes debt (a `debt`
    /// entry of amount 0 after the `refund` entry, which keeps the rest as its `shortfall`).
    pub fn refund(self, credits: u64, transaction_id: &str, now: UnixTime) -> Option<RefundSplit> {
        let taken = self.balance.min(credits);
        let shortfall = credits - taken;
        let amount = -i64::try_from(taken).ok()?;
        let balance = self.balance - taken;
        let mut refund = LedgerEntry::new(LedgerKind::Refund, amount, balance, transaction_id, now);
        refund.shortfall = (shortfall > 0).then_some(shortfall);
        let mut entries = vec![refund];
        let debt = self.debt.checked_add(shortfall)?;
        if shortfall > 0 {
            let mut owed = LedgerEntry::new(LedgerKind::Debt, 0, balance, transaction_id, now);
            owed.debt_after = Some(debt);
            entries.push(owed);
        }
        Some(RefundSplit { change: FundsChange { entries, after: Funds { balance, debt } }, taken, shortfall })
    }

    /// A purchase of `credits`: pays the debt first (a `debt` entry of minus what it paid after the
    /// `purchase` entry). `None` when the balance would overflow.
    pub fn purchase(self, credits: u64, transaction_id: &str, now: UnixTime) -> Option<(FundsChange, u64)> {
        let bought =
            LedgerEntry::apply(LedgerKind::Purchase, self.balance, i64::try_from(credits).ok()?, transaction_id, now)?;
        let paid = self.debt.min(credits);
        let mut entries = vec![bought];
        let mut balance = self.balance.checked_add(credits)?;
        if paid > 0 {
            balance -= paid;
            let mut pay = LedgerEntry::new(LedgerKind::Debt, -i64::try_from(paid).ok()?, balance, transaction_id, now);
            pay.debt_after = Some(self.debt - paid);
            entries.push(pay);
        }
        Some((FundsChange { entries, after: Funds { balance, debt: self.debt - paid } }, paid))
    }

    /// An account's deletion: the balance is forfeited (an `adjustment`) and what it owed is written off (a
    /// `debt` entry of amount 0 down to 0), both `account-deleted`; `None` when there is neither.
    pub fn forfeit(self, now: UnixTime) -> Option<FundsChange> {
        let mut entries = Vec::new();
        if self.balance > 0 {
            let amount = -i64::try_from(self.balance).ok()?;
            entries.push(LedgerEntry::new(LedgerKind::Adjustment, amount, 0, "account-deleted", now));
        }
        if self.debt > 0 {
            let mut written_off = LedgerEntry::new(LedgerKind::Debt, 0, 0, "account-deleted", now);
            written_off.debt_after = Some(0);
            entries.push(written_off);
        }
        (!entries.is_empty()).then_some(FundsChange { entries, after: Funds::default() })
    }

    /// Reverses a refund that took `taken` and left `shortfall` owed: the part of the shortfall still owed is
    /// cleared, and what was taken or already paid back is given back, so `balance - debt` regains the whole
    /// purchase. (The debt is one sum: when several refunds are owed, this one's is taken as the last paid.)
    pub fn reverse(self, taken: u64, shortfall: u64, transaction_id: &str, now: UnixTime) -> Option<FundsChange> {
        let cleared = self.debt.min(shortfall);
        let give = taken.checked_add(shortfall - cleared)?;
        let mut entry =
            LedgerEntry::apply(LedgerKind::Reversal, self.balance, i64::try_from(give).ok()?, transaction_id, now)?;
        let debt = self.debt - cleared;
        if cleared > 0 {
            entry.debt_after = Some(debt);
        }
        let balance = entry.balance_after;
        Some(FundsChange { entries: vec![entry], after: Funds { balance, debt } })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: UnixTime = 1_700_000_000;

    fn net(f: Funds) -> i64 {
        f.balance as i64 - f.debt as i64
    }

    fn kinds(c: &FundsChange) -> Vec<(LedgerKind, i64, u64, Option<u64>)> {
        c.entries.iter().map(|e| (e.kind, e.amount, e.balance_after, e.debt_after)).collect()
    }

    #[test]
    fn a_refund_takes_the_balance_and_owes_the_rest() {
        let r = Funds { balance: 4, debt: 0 }.refund(10, "t1", NOW).unwrap();
        assert_eq!((r.taken, r.shortfall), (4, 6));
        assert_eq!(r.change.after, Funds { balance: 0, debt: 6 });
        assert_eq!(kinds(&r.change), [(LedgerKind::Refund, -4, 0, None), (LedgerKind::Debt, 0, 0, Some(6))]);
        assert_eq!(r.change.entries[0].shortfall, Some(6));
    }

    #[test]
    fn a_covered_refund_owes_nothing_and_writes_no_debt_entry() {
        let r = Funds { balance: 12, debt: 1 }.refund(10, "t1", NOW).unwrap();
        assert_eq!(r.change.after, Funds { balance: 2, debt: 1 });
        assert_eq!(kinds(&r.change), [(LedgerKind::Refund, -10, 2, None)]);
    }

    #[test]
    fn a_purchase_pays_the_debt_first() {
        let (c, paid) = Funds { balance: 0, debt: 6 }.purchase(10, "t2", NOW).unwrap();
        assert_eq!(paid, 6);
        assert_eq!(c.after, Funds { balance: 4, debt: 0 });
        assert_eq!(kinds(&c), [(LedgerKind::Purchase, 10, 10, None), (LedgerKind::Debt, -6, 4, Some(0))]);
        let (c, paid) = Funds { balance: 1, debt: 25 }.purchase(10, "t3", NOW).unwrap();
        assert_eq!((paid, c.after), (10, Funds { balance: 1, debt: 15 }));
        let (c, paid) = Funds { balance: 1, debt: 0 }.purchase(10, "t4", NOW).unwrap();
        assert_eq!((paid, kinds(&c)), (0, vec![(LedgerKind::Purchase, 10, 11, None)]));
    }

    #[test]
    fn a_reversal_restores_the_whole_purchase_whether_or_not_the_debt_was_paid() {
        let before = Funds { balance: 4, debt: 0 };
        let r = before.refund(10, "t1", NOW).unwrap();
        // Reversed while still owed: the debt is cleared and what was taken comes back.
        let back = r.change.after.reverse(r.taken, r.shortfall, "t1", NOW).unwrap();
        assert_eq!(back.after, before);
        assert_eq!(kinds(&back), [(LedgerKind::Reversal, 4, 4, Some(0))]);
        // Reversed after a purchase paid the debt: what the purchase paid comes back as credits.
        let (bought, _) = r.change.after.purchase(10, "t2", NOW).unwrap();
        let back = bought.after.reverse(r.taken, r.shortfall, "t1", NOW).unwrap();
        assert_eq!(back.after, Funds { balance: 14, debt: 0 });
        assert_eq!(net(back.after), net(before) + 10);
        // Half paid.
        let (bought, _) = Funds { balance: 0, debt: 6 }.purchase(3, "t3", NOW).unwrap();
        let back = bought.after.reverse(4, 6, "t1", NOW).unwrap();
        assert_eq!(back.after, Funds { balance: 7, debt: 0 });
    }

    #[test]
    fn a_deletion_forfeits_the_balance_and_writes_off_the_debt_in_the_ledger() {
        assert_eq!(Funds::default().forfeit(NOW), None);
        let c = Funds { balance: 4, debt: 0 }.forfeit(NOW).unwrap();
        assert_eq!(kinds(&c), [(LedgerKind::Adjustment, -4, 0, None)]);
        let c = Funds { balance: 2, debt: 6 }.forfeit(NOW).unwrap();
        assert_eq!(kinds(&c), [(LedgerKind::Adjustment, -2, 0, None), (LedgerKind::Debt, 0, 0, Some(0))]);
        assert_eq!(c.after, Funds::default());
    }

    #[test]
    fn the_entries_chain_their_balances() {
        let r = Funds { balance: 3, debt: 2 }.refund(9, "t", NOW).unwrap();
        let (p, _) = r.change.after.purchase(5, "u", NOW).unwrap();
        let mut balance = 3i64;
        for e in r.change.entries.iter().chain(&p.entries) {
            balance += e.amount;
            assert_eq!(balance, e.balance_after as i64, "{e:?}");
        }
        assert_eq!(p.after, Funds { balance: 0, debt: 3 });
    }
}
