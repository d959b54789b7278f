//! Balances, the ledger and App Store purchases (adapters/dynamodb/credits.rs).

use async_trait::async_trait;

use super::{PortError, Written};
use crate::domain::{Funds, LedgerEntry, UnixTime, UserId};

/// How long a processed App Store notification is remembered (by its `notificationUUID`), so a redelivery
/// changes nothing. Apple retries a failed delivery five times, the last about six and a half days after the
/// first attempt.
pub const NOTIFICATION_DEDUPE_SECS: i64 = 90 * 24 * 3600;
/// The oldest `signedDate` a notification may carry. Well inside [`NOTIFICATION_DEDUPE_SECS`], so a captured
/// notification replayed after its dedupe record expired (a `REFUND_REVERSED` giving credits back twice) is
/// refused for its age; and well beyond Apple's retries.
pub const NOTIFICATION_MAX_AGE_SECS: i64 = 30 * 24 * 3600;
/// How far in the future a `signedDate` may be (clock skew).
pub const NOTIFICATION_MAX_SKEW_SECS: i64 = 5 * 60;
const _: () = assert!(NOTIFICATION_MAX_AGE_SECS + NOTIFICATION_MAX_SKEW_SECS < NOTIFICATION_DEDUPE_SECS);

/// One page of a user's credits ledger, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerPage {
    pub entries: Vec<LedgerEntry>,
    /// Whether older entries exist beyond this page.
    pub more: bool,
}

/// A user's credits ledger, newest first.
#[async_trait]
pub trait LedgerReader: Send + Sync {
    /// At most `limit` entries older than the entry `before` (a ledger entry id), newest first.
    async fn ledger_page(&self, id: &UserId, limit: usize, before: Option<&str>) -> Result<LedgerPage, PortError>;

    async fn ledger(&self, id: &UserId, limit: usize) -> Result<Vec<LedgerEntry>, PortError> {
        Ok(self.ledger_page(id, limit, None).await?.entries)
    }
}

/// A purchase whose signed transaction was verified, about to be credited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedPurchase {
    pub transaction_id: String,
    pub original_transaction_id: String,
    pub product_id: String,
    pub credits: u64,
    /// `Sandbox` or `Production`.
    pub environment: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PurchaseOutcome {
    /// `debt_paid` of the credits paid what the user owed (`Funds::purchase`).
    Credited { credits_added: u64, debt_paid: u64, balance: u64 },
    /// This user was credited for the transaction before: nothing changed.
    AlreadyCredited { credits_added: u64, debt_paid: u64, balance: u64 },
    /// The transaction was credited to another user.
    OtherUser,
    /// Apple refunded the transaction before it was ever credited.
    Revoked,
}

/// The result of a refund or refund reversal from an App Store notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefundOutcome {
    /// The balance changed by `amount` (negative for a refund); `shortfall` credits could not be taken back
    /// and are owed (`debt` is what the user owes after the change).
    Applied { user: UserId, amount: i64, shortfall: u64, balance: u64, debt: u64 },
    /// The transaction is not in a state this notification applies to (refunded twice, reversed unrefunded).
    NotApplicable,
    /// We never credited the transaction; it is now marked refunded so a later post of it is refused.
    UnknownTransaction,
    /// This notification was processed before.
    Duplicate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdjustOutcome {
    Applied {
        balance: u64,
    },
    /// Taking that many would take the balance below zero.
    Insufficient {
        balance: u64,
    },
    NoSuchUser,
}

/// Balances, purchases and App Store notifications. Every balance change is one transaction with its ledger
/// entry, conditioned on the balance it was computed from, so the ledger always sums to the balance.
#[async_trait]
pub trait CreditsStore: Send + Sync {
    /// The balance; 0 for a user without one.
    async fn balance(&self, id: &UserId) -> Result<u64, PortError>;
    /// The balance and what the user owes (zeros for a user without a balance).
    async fn funds(&self, id: &UserId) -> Result<Funds, PortError>;
    /// Credits `purchase` to `user` once per transaction id, paying what the user owes first.
    async fn credit_purchase(
        &self,
        user: &UserId,
        purchase: &VerifiedPurchase,
        now: UnixTime,
    ) -> Result<PurchaseOutcome, PortError>;
    /// [`CreditsStore::credit_purchase`], computed from `funds_read` (the funds as the caller just read them,
    /// beside its other reads) instead of reading them first; a stale value only costs a retry.
    async fn credit_purchase_from(
        &self,
        user: &UserId,
        purchase: &VerifiedPurchase,
        now: UnixTime,
        funds_read: Option<Funds>,
    ) -> Result<PurchaseOutcome, PortError> {
        let _ = funds_read;
        self.credit_purchase(user, purchase, now).await
    }
    /// Takes back the credits of a refunded transaction (down to a balance of zero, the rest owed), once per
    /// notification and once per refund.
    async fn refund_purchase(
        &self,
        transaction_id: &str,
        notification_id: &str,
        now: UnixTime,
    ) -> Result<RefundOutcome, PortError>;
    /// Gives back what a refund took and clears what it left owed, once.
    async fn reverse_refund(
        &self,
        transaction_id: &str,
        notification_id: &str,
        now: UnixTime,
    ) -> Result<RefundOutcome, PortError>;
    /// The purchase record of `transaction_id`, if any.
    async fn purchase_facts(&self, transaction_id: &str) -> Result<Option<PurchaseFacts>, PortError>;
    /// Records a notification that changes no balance; `Conflict` when it was recorded before.
    async fn record_notification(&self, notification_id: &str, now: UnixTime) -> Result<Written, PortError>;
    /// An operator's grant (positive) or take (negative), with `reason` in the ledger entry.
    async fn adjust(&self, user: &UserId, amount: i64, reason: &str, now: UnixTime)
        -> Result<AdjustOutcome, PortError>;
}

/// What the stores know of an App Store transaction, for answering Apple's consumption request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurchaseFacts {
    /// Who was credited; `None` when the transaction was never posted.
    pub user: Option<UserId>,
    pub credits: u64,
    pub refunded: bool,
}

/// What Send Consumption Information tells Apple about a transaction (only sent with the user's consent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumptionReport {
    pub transaction_id: String,
    /// The credits were added to the user's balance.
    pub delivered: bool,
    /// How much of the purchase was used, in thousandths of a percent (0–100000), as Apple counts it.
    pub consumption_milli: u32,
    /// The app gives free credits to try it before buying (the starter grant).
    pub sample_content_provided: bool,
}

/// How Apple answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReportOutcome {
    Sent,
    /// No In-App Purchase key is configured for this stage: nothing was sent.
    NotConfigured,
    /// Apple refused the request (a 4xx other than rate limiting): retrying will not help.
    Refused {
        status: u16,
        code: Option<i64>,
    },
}

/// The App Store Server API's Send Consumption Information (adapters/appstore_api.rs).
#[async_trait]
pub trait ConsumptionReporter: Send + Sync {
    /// `Err` (unavailable) when Apple could not be reached or asked to retry: the notification then fails, so
    /// Apple delivers it again.
    async fn send(&self, report: &ConsumptionReport) -> Result<ReportOutcome, PortError>;
}
