//! The in-memory twins: every store port with the same semantics as the DynamoDB adapters (every
//! conditional write is checked under one lock, applying the same domain rules), the local SMS outbox and the
//! images bucket. The local API runs on them by default, and the service tests use them. One file per
//! area, as in adapters/dynamodb/.

mod accounts;
mod catalogue;
mod characters;
mod codes;
mod credits;
mod devices;
mod erasure;
mod generations;
mod objects;
mod outbox;
mod sessions;

pub use objects::{LocalUploadError, MemoryObjects};
pub use outbox::{MemoryOutbox, MemoryPushes, SentPush, SentSms};

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::domain::{
    Category, Character, Funds, FundsChange, Generation, LedgerEntry, NumberMark, OtpRecord, Template, TemplateId,
    UnixTime, UserAccount, UserId,
};
use crate::ports::{IdempotencyRecord, RefreshRecord};

/// A credited (or refunded) App Store transaction.
#[derive(Debug)]
struct MemPurchase {
    user: Option<UserId>,
    credits: u64,
    refunded: bool,
    refunded_credits: u64,
    refund_shortfall: u64,
    debt_paid: u64,
}

#[derive(Default, Debug)]
struct Inner {
    /// Tombstones of deleted accounts, by a hash of the id; the id only while the deletion is unfinished.
    deleted: HashMap<String, (UnixTime, Option<UserId>)>,
    otp: HashMap<String, OtpRecord>,
    /// Deleted accounts' numbers, by keyed hash (no expiry here: the tests run shorter than a year).
    marks: HashMap<String, NumberMark>,
    rate: HashMap<(String, i64), u32>,
    users: HashMap<UserId, UserAccount>,
    phones: HashMap<String, UserId>,
    ledger: HashMap<UserId, Vec<LedgerEntry>>,
    /// What users owe after App Store refunds of spent credits (absent: nothing).
    debts: HashMap<UserId, u64>,
    sessions: HashMap<String, RefreshRecord>,
    revoked_families: HashSet<String>,
    purchases: HashMap<String, MemPurchase>,
    notifications: HashSet<String>,
    categories: HashMap<String, Category>,
    templates: HashMap<TemplateId, Template>,
    favorites: HashMap<UserId, HashMap<TemplateId, UnixTime>>,
    /// Generations by (user, id); ids are ULIDs, so a BTreeMap walks them in time order.
    generations: HashMap<UserId, std::collections::BTreeMap<String, Generation>>,
    idempotency: HashMap<(UserId, String), IdempotencyRecord>,
    in_flight: HashMap<UserId, u32>,
    /// Characters by (user, id), in time order like generations.
    characters: HashMap<UserId, std::collections::BTreeMap<String, Character>>,
    devices: HashMap<crate::domain::DeviceToken, crate::domain::Device>,
}

impl Inner {
    /// Applies `entry` to `user`'s balance and ledger (the caller checked it against the current balance).
    fn apply(&mut self, user: &UserId, entry: LedgerEntry) -> u64 {
        let balance = entry.balance_after;
        if let Some(u) = self.users.get_mut(user) {
            u.credits = balance;
        }
        self.ledger.entry(user.clone()).or_default().push(entry);
        balance
    }

    /// The profile's counters, counted from the records (the DynamoDB store keeps them as counters).
    fn stats(&self, user: &UserId) -> crate::domain::ProfileStats {
        let generations = self.generations.get(user);
        crate::domain::ProfileStats {
            generations: generations.map_or(0, |g| g.len() as u64),
            succeeded: generations.map_or(0, |g| {
                g.values().filter(|g| g.status == crate::domain::GenerationStatus::Succeeded).count() as u64
            }),
            favorites: self.favorites.get(user).map_or(0, |f| f.len() as u64),
            characters: self.characters.get(user).map_or(0, |c| c.len() as u64),
        }
    }

    fn balance(&self, user: &UserId) -> Option<u64> {
        self.users.get(user).map(|u| u.credits)
    }

    fn funds(&self, user: &UserId) -> Funds {
        Funds { balance: self.balance(user).unwrap_or(0), debt: self.debts.get(user).copied().unwrap_or(0) }
    }

    /// Applies a change of balance and debt (the caller computed it from `funds`); returns the result.
    fn apply_funds(&mut self, user: &UserId, change: FundsChange) -> Funds {
        for entry in change.entries {
            self.apply(user, entry);
        }
        match change.after.debt {
            0 => self.debts.remove(user),
            debt => self.debts.insert(user.clone(), debt),
        };
        change.after
    }
}

/// Every store port, in memory.
#[derive(Default, Clone)]
pub struct MemoryStore {
    inner: Arc<Mutex<Inner>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave a half-applied write (each write is one statement), so a
        // poisoned lock is safe to keep using.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl MemoryStore {
    /// Every stored record as text (tests check that nothing of a deleted account is left).
    pub fn dump(&self) -> String {
        format!("{:?}", *self.lock())
    }
}
