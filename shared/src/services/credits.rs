//! Credits: balance, history, App Store purchases and App Store Server Notifications.

use std::sync::Arc;

use crate::adapters::appstore::{AppStoreVerifier, Rejection, SignedTransaction};
use crate::config::CreditsConfig;
use crate::domain::{Funds, UserId};
use crate::metrics::{Metric, Metrics};
use crate::ports::{
    AccountStore, Clock, ConsumptionReport, ConsumptionReporter, CreditsStore, LedgerPage, LedgerReader, PortError,
    PurchaseOutcome, RefundOutcome, ReportOutcome, VerifiedPurchase, NOTIFICATION_MAX_AGE_SECS,
    NOTIFICATION_MAX_SKEW_SECS,
};

pub struct Credits {
    pub store: Arc<dyn CreditsStore>,
    /// The users' consent to share consumption data, and their balances.
    pub accounts: Arc<dyn AccountStore>,
    /// Answers Apple's `CONSUMPTION_REQUEST` (Send Consumption Information).
    pub reporter: Arc<dyn ConsumptionReporter>,
    /// The app gives free credits to try it (a starter grant): Apple's `sampleContentProvided`.
    pub sample_content_provided: bool,
    pub ledger: Arc<dyn LedgerReader>,
    pub verifier: Arc<AppStoreVerifier>,
    pub config: CreditsConfig,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<dyn Metrics>,
}

/// Why a purchase was not credited.
#[derive(Debug, thiserror::Error)]
pub enum PurchaseError {
    #[error("signed transaction refused: {0}")]
    Rejected(Rejection),
    #[error("the product is not a credits product")]
    UnknownProduct,
    #[error("the transaction was refunded or revoked")]
    Revoked,
    #[error("the transaction was bought for another account")]
    AccountMismatch,
    #[error("the transaction carries no appAccountToken")]
    AccountTokenRequired,
    #[error("the transaction belongs to another user")]
    OtherUser,
    #[error("the account is being deleted")]
    AccountDeleted,
    #[error(transparent)]
    Port(#[from] PortError),
}

/// A credited (or previously credited) purchase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Purchased {
    pub transaction_id: String,
    pub product_id: String,
    pub credits_added: u64,
    /// Of `credits_added`, what paid the user's debt (credits an App Store refund could not take back).
    pub debt_paid: u64,
    pub balance: u64,
    /// False when this call credited nothing because the transaction was credited before.
    pub new: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum NotificationError {
    #[error("signed payload refused: {0}")]
    Rejected(Rejection),
    #[error(transparent)]
    Port(#[from] PortError),
}

/// What a notification did, for the log line and the tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handled {
    Refund(RefundOutcome),
    RefundReversed(RefundOutcome),
    /// A `CONSUMPTION_REQUEST`, answered as this says (then recorded like any other notification).
    Consumption(Consumption),
    /// Logged and acknowledged; no balance changes.
    Acknowledged,
    /// Delivered before.
    Duplicate,
}

impl Credits {
    /// The balance and what the user owes.
    pub async fn funds(&self, user: &UserId) -> Result<Funds, PortError> {
        self.store.funds(user).await
    }

    pub async fn history(&self, user: &UserId, limit: usize, before: Option<&str>) -> Result<LedgerPage, PortError> {
        self.ledger.ledger_page(user, limit, before).await
    }

    /// Verifies a StoreKit 2 signed transaction and credits it to `user` once.
    /// Credits a verified purchase once. `account_deleted` is the caller's deleted-account check: it runs
    /// beside the balance read, and nothing is written unless it answers `false` (two round trips: those
    /// reads together, then one transaction).
    pub async fn purchase(
        &self,
        user: &UserId,
        signed_transaction: &str,
        account_deleted: impl std::future::Future<Output = Result<bool, PortError>>,
    ) -> Result<Purchased, PurchaseError> {
        let (deleted, funds) = tokio::join!(account_deleted, self.store.funds(user));
        if deleted? {
            return Err(PurchaseError::AccountDeleted);
        }
        let t = self.verifier.transaction(signed_transaction).map_err(PurchaseError::Rejected)?;
        let credits = self.credits_of(&t)?;
        match t.app_account_token {
            Some(token) if token != user.app_account_token() => return Err(PurchaseError::AccountMismatch),
            None if self.config.app_store.require_account_token => return Err(PurchaseError::AccountTokenRequired),
            _ => {}
        }
        if t.revoked {
            return Err(PurchaseError::Revoked);
        }
        let purchase = VerifiedPurchase {
            transaction_id: t.transaction_id.clone(),
            original_transaction_id: t.original_transaction_id.clone(),
            product_id: t.product_id.clone(),
            credits,
            environment: t.environment.clone(),
        };
        let purchased = |credits_added, debt_paid, balance, new| Purchased {
            transaction_id: t.transaction_id.clone(),
            product_id: t.product_id.clone(),
            credits_added,
            debt_paid,
            balance,
            new,
        };
        match self.store.credit_purchase_from(user, &purchase, self.clock.now(), Some(funds?)).await? {
            PurchaseOutcome::Credited { credits_added, debt_paid, balance } => {
                self.metrics.record(Metric::CreditsPurchased, credits_added as f64);
                Ok(purchased(credits_added, debt_paid, balance, true))
            }
            PurchaseOutcome::AlreadyCredited { credits_added, debt_paid, balance } => {
                Ok(purchased(credits_added, debt_paid, balance, false))
            }
            PurchaseOutcome::OtherUser => Err(PurchaseError::OtherUser),
            PurchaseOutcome::Revoked => Err(PurchaseError::Revoked),
        }
    }

    /// Credits of a consumable credits product times the quantity bought.
    fn credits_of(&self, t: &SignedTransaction) -> Result<u64, PurchaseError> {
        let per_unit =
            self.config.credits_for(&t.product_id).filter(|_| t.consumable).ok_or(PurchaseError::UnknownProduct)?;
        per_unit.checked_mul(u64::from(t.quantity.max(1))).ok_or(PurchaseError::UnknownProduct)
    }

    /// Verifies and handles an App Store Server Notification V2.
    pub async fn notification(&self, signed_payload: &str) -> Result<Handled, NotificationError> {
        let n = self.verifier.notification(signed_payload).map_err(NotificationError::Rejected)?;
        let now = self.clock.now();
        // A replay after the dedupe record expired would apply again: refuse what is that old (or from the future).
        let age = now - n.signed_at;
        if !(-NOTIFICATION_MAX_SKEW_SECS..=NOTIFICATION_MAX_AGE_SECS).contains(&age) {
            tracing::warn!(notification_uuid = %n.notification_uuid, age_secs = age, "app store notification out of its window");
            return Err(NotificationError::Rejected(Rejection::Stale));
        }
        let transaction_id = n.transaction.as_ref().map(|t| t.transaction_id.as_str());
        let handled = match (n.notification_type.as_str(), transaction_id) {
            ("REFUND", Some(tid)) => Handled::Refund(self.store.refund_purchase(tid, &n.notification_uuid, now).await?),
            ("REFUND_REVERSED", Some(tid)) => {
                Handled::RefundReversed(self.store.reverse_refund(tid, &n.notification_uuid, now).await?)
            }
            ("REFUND" | "REFUND_REVERSED", None) => return Err(NotificationError::Rejected(Rejection::Malformed)),
            ("CONSUMPTION_REQUEST", Some(tid)) => {
                // Answered before it is recorded: a failed answer fails the notification, and Apple's redelivery
                // tries again (a repeated answer only replaces the first: the request is a PUT).
                let answer = self.consumption(tid).await?;
                if let Consumption::Reported(
                    _,
                    outcome @ (ReportOutcome::Refused { .. } | ReportOutcome::NotConfigured),
                ) = &answer
                {
                    tracing::warn!(transaction_id = tid, ?outcome, "consumption information not accepted");
                }
                self.store.record_notification(&n.notification_uuid, now).await?;
                Handled::Consumption(answer)
            }
            _ => match self.store.record_notification(&n.notification_uuid, now).await? {
                crate::ports::Written::Yes => Handled::Acknowledged,
                crate::ports::Written::Conflict => Handled::Duplicate,
            },
        };
        let handled = match handled {
            Handled::Refund(RefundOutcome::Duplicate) | Handled::RefundReversed(RefundOutcome::Duplicate) => {
                Handled::Duplicate
            }
            other => other,
        };
        // Net credits taken back by the App Store: a reversal records minus what its refund took. (Credits
        // given back for failed generations are CreditsRefunded.)
        match &handled {
            Handled::Refund(RefundOutcome::Applied { amount, .. })
            | Handled::RefundReversed(RefundOutcome::Applied { amount, .. }) => {
                self.metrics.record(Metric::CreditsRevoked, -(*amount as f64));
            }
            _ => {}
        }
        tracing::info!(
            notification_type = %n.notification_type,
            subtype = n.subtype.as_deref().unwrap_or(""),
            notification_uuid = %n.notification_uuid,
            transaction_id = transaction_id.unwrap_or(""),
            outcome = outcome_text(&handled),
            user = handled_user(&handled).map(crate::telemetry::user_ref).unwrap_or_default(),
            "app store notification"
        );
        Ok(handled)
    }

    /// Answers Apple's consumption request for `transaction_id` with what the ledger knows, if the user
    /// consented: delivered (the credits were added when the purchase was posted), how much of it is used
    /// (what a refund now could not take back: `1 - min(balance, credits) / credits`, the rule refunds use)
    /// and whether the app gave free credits to try it.
    async fn consumption(&self, transaction_id: &str) -> Result<Consumption, PortError> {
        let facts = match self.store.purchase_facts(transaction_id).await? {
            Some(facts) if !facts.refunded && facts.credits > 0 => facts,
            _ => return Ok(Consumption::NotOurs),
        };
        let Some(user) = facts.user else { return Ok(Consumption::NotOurs) };
        let Some(account) = self.accounts.get_user(&user).await? else { return Ok(Consumption::NotOurs) };
        if !account.consumption_consent {
            return Ok(Consumption::NoConsent);
        }
        let used = facts.credits - account.credits.min(facts.credits);
        let milli = u32::try_from(used.saturating_mul(100_000) / facts.credits).unwrap_or(100_000);
        let report = ConsumptionReport {
            transaction_id: transaction_id.to_owned(),
            delivered: true,
            consumption_milli: milli,
            sample_content_provided: self.sample_content_provided,
        };
        let outcome = self.reporter.send(&report).await?;
        Ok(Consumption::Reported(report, outcome))
    }
}

/// How a `CONSUMPTION_REQUEST` was answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Consumption {
    Reported(ConsumptionReport, ReportOutcome),
    /// Not answered: Apple asks that nothing is sent without the customer's consent (`customerConsented`).
    NoConsent,
    /// Not answered: the transaction was never credited, was refunded already, or its account is gone.
    NotOurs,
}

/// A notification's outcome for the log line (the user appears only as a reference).
fn outcome_text(handled: &Handled) -> String {
    let refund = |r: &RefundOutcome| match r {
        RefundOutcome::Applied { amount, shortfall, balance, debt, .. } => {
            format!("applied amount={amount} shortfall={shortfall} balance={balance} debt={debt}")
        }
        other => format!("{other:?}"),
    };
    match handled {
        Handled::Refund(r) => format!("refund {}", refund(r)),
        Handled::RefundReversed(r) => format!("reversal {}", refund(r)),
        Handled::Consumption(Consumption::Reported(report, outcome)) => {
            format!("consumption milli={} outcome={outcome:?}", report.consumption_milli)
        }
        Handled::Consumption(other) => format!("consumption {other:?}"),
        Handled::Acknowledged => "acknowledged".to_owned(),
        Handled::Duplicate => "duplicate".to_owned(),
    }
}

fn handled_user(handled: &Handled) -> Option<&UserId> {
    match handled {
        Handled::Refund(RefundOutcome::Applied { user, .. })
        | Handled::RefundReversed(RefundOutcome::Applied { user, .. }) => Some(user),
        _ => None,
    }
}
