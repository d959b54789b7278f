//! send-code: a one-time code texted within the cooldown, the daily caps, the per-IP cap and the SMS budget.

use std::sync::Arc;

use super::{hash_code, number_keys, source_key, HOUR};
use crate::config::AuthPolicy;
use crate::crypto::CryptoError;
use crate::domain::{new_id, OtpCode, OtpRecord, PhoneNumber, SendLimits, SendRefusal, UnixTime};
use crate::metrics::{Metric, Metrics};
use crate::ports::{Clock, Counter, KeyProvider, OtpStore, PortError, RateDecision, RateLimiter, SmsSender, Written};

/// A code went out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeSent {
    pub expires_in_secs: i64,
    pub retry_after_secs: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum SendCodeError {
    #[error("numbers from this country are not supported")]
    CountryNotAllowed,
    #[error("too many codes requested; retry after {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    #[error("the SMS could not be delivered")]
    Delivery(#[source] PortError),
    /// The stage's (or the number's country's) hourly SMS budget is spent: no text goes out until the hour
    /// turns, whoever asks (`SmsBudgetExceeded` is counted; the SMS-pumping alarm watches it).
    #[error("the hourly SMS budget is spent; retry after {retry_after_secs} s")]
    BudgetSpent { retry_after_secs: u64 },
    #[error(transparent)]
    Port(#[from] PortError),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}

/// Issues one-time codes within the resend cooldown, the daily cap and the per-IP cap.
pub struct SendCode {
    pub otp: Arc<dyn OtpStore>,
    pub limiter: Arc<dyn RateLimiter>,
    pub sms: Arc<dyn SmsSender>,
    pub keys: Arc<dyn KeyProvider>,
    pub clock: Arc<dyn Clock>,
    pub policy: AuthPolicy,
    pub metrics: Arc<dyn Metrics>,
}

impl SendCode {
    pub async fn send(&self, phone: &PhoneNumber, source_ip: Option<&str>) -> Result<CodeSent, SendCodeError> {
        let p = &self.policy;
        if !p.allowed_countries.allows(phone) {
            return Err(SendCodeError::CountryNotAllowed);
        }
        let now = self.clock.now();
        let ip_key = format!("send-code:ip:{}", source_ip.unwrap_or("unknown"));
        // Independent reads and the IP counter go out together: one round trip, not three (the mark's read
        // needs the keys, cached after a container's first request).
        let keys_and_mark = async {
            let keys = self.keys.keys().await?;
            let mark = self.otp.number_mark(&number_keys(&keys, phone)).await?;
            Ok::<_, PortError>((keys, mark))
        };
        let (ip, current, keys_and_mark) = tokio::join!(
            self.limiter.hit(&ip_key, HOUR, p.ip_limit_per_hour, now),
            self.otp.load(phone),
            keys_and_mark,
        );
        if let RateDecision::Limited { retry_after_secs } = ip? {
            tracing::warn!(phone = %phone.masked(), "send-code refused: source IP over its hourly cap");
            return Err(SendCodeError::RateLimited { retry_after_secs });
        }
        // A number whose account was deleted starts from the history its mark kept, not from zero.
        let (current, (keys, mark)) = (current?, keys_and_mark?);
        let previous = current.unwrap_or_else(|| match mark {
            Some(mark) => mark.seed(phone.e164()),
            None => OtpRecord::empty(phone.e164()),
        });

        let limits = SendLimits {
            cooldown_secs: p.resend_cooldown_secs,
            per_day: p.max_codes_per_day,
            per_source_per_day: p.max_codes_per_source_per_day,
        };
        let sends = match previous.next_send(limits, &source_key(&keys, source_ip), now) {
            Ok(sends) => sends,
            Err(refusal) => {
                match refusal {
                    SendRefusal::DailyCap { .. } => {
                        tracing::warn!(phone = %phone.masked(), "send-code refused: daily cap reached")
                    }
                    SendRefusal::SourceCap { .. } => tracing::warn!(
                        phone = %phone.masked(),
                        "send-code refused: this source had its codes to this number today"
                    ),
                    SendRefusal::Cooldown { .. } => {}
                }
                return Err(SendCodeError::RateLimited { retry_after_secs: refusal.retry_after_secs() as u64 });
            }
        };

        // The SMS budget counts only texts that are about to go out (a refused request spends none of it), so
        // that a flood of refused requests cannot spend the budget for everyone.
        self.within_budget(phone, now).await?;

        let code = OtpCode::generate()?;
        let code_id = new_id();
        let next = OtpRecord {
            phone: phone.e164().to_owned(),
            version: previous.version + 1,
            code_hash: Some(hash_code(&keys, phone, &code_id, &code)?),
            code_id: Some(code_id),
            expires_at: now + p.code_ttl_secs,
            attempts: 0,
            used: false,
            last_sent_at: now,
            sent_at: sends.at,
            sent_from: sends.from,
        };
        if self.otp.replace(&next, previous.version).await? == Written::Conflict {
            // A concurrent request for the same number won the conditional write and sent its code.
            return Err(SendCodeError::RateLimited { retry_after_secs: p.resend_cooldown_secs as u64 });
        }

        let body = sms_text(&code, p.code_ttl_secs);
        if let Err(e) = self.sms.send(phone, &body).await {
            self.metrics.count(Metric::CodesFailed);
            self.undo_send(&previous, &next, now).await;
            return Err(SendCodeError::Delivery(e));
        }
        self.metrics.count(Metric::CodesSent);
        tracing::info!(phone = %phone.masked(), "sign-in code sent");
        Ok(CodeSent { expires_in_secs: p.code_ttl_secs, retry_after_secs: p.resend_cooldown_secs })
    }

    /// Counts this text against the stage's hourly SMS budget and its country's (conditional counters, as the
    /// per-IP cap), refusing when either is spent.
    async fn within_budget(&self, phone: &PhoneNumber, now: UnixTime) -> Result<(), SendCodeError> {
        let p = &self.policy;
        let region = phone.region().unwrap_or("ZZ");
        // Both or neither: a text refused by its country's budget spends nothing of the stage's.
        let counters = [
            Counter { key: "sms-budget:all".to_owned(), window_secs: HOUR, limit: p.sms_budget_per_hour },
            Counter {
                key: format!("sms-budget:country:{region}"),
                window_secs: HOUR,
                limit: p.sms_budget_per_country_per_hour,
            },
        ];
        if let RateDecision::Limited { retry_after_secs } = self.limiter.hit_all(&counters, now).await? {
            self.metrics.count(Metric::SmsBudgetExceeded);
            tracing::error!(phone = %phone.masked(), region, "send-code refused: the hourly SMS budget is spent");
            return Err(SendCodeError::BudgetSpent { retry_after_secs });
        }
        Ok(())
    }

    /// After a failed delivery: kill the undelivered code and give back the cooldown and the daily allowance,
    /// unless a newer send already replaced the record. Best effort: on failure the user waits one cooldown.
    async fn undo_send(&self, previous: &OtpRecord, next: &OtpRecord, now: UnixTime) {
        let recent = previous.recent_sends(now);
        let restored = OtpRecord {
            version: next.version + 1,
            code_id: None,
            code_hash: None,
            expires_at: 0,
            attempts: 0,
            used: false,
            last_sent_at: previous.last_sent_at,
            sent_at: recent.at,
            sent_from: recent.from,
            phone: previous.phone.clone(),
        };
        if let Err(e) = self.otp.replace(&restored, next.version).await {
            tracing::warn!(error = %e, "could not undo a send whose SMS failed");
        }
    }
}

/// The text a code is sent in: its lifetime as configured (`CODE_TTL_SECONDS`), in minutes when it is whole
/// minutes.
fn sms_text(code: &OtpCode, ttl_secs: i64) -> String {
    let lifetime = match ttl_secs {
        60 => "1 minute".to_owned(),
        s if s % 60 == 0 => format!("{} minutes", s / 60),
        s => format!("{s} seconds"),
    };
    format!("Your Facemake code is {}. It expires in {lifetime}. Never share it.", code.digits())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_states_the_configured_lifetime() {
        let code = OtpCode::parse("123456").unwrap();
        assert_eq!(sms_text(&code, 300), "Your Facemake code is 123456. It expires in 5 minutes. Never share it.");
        assert!(sms_text(&code, 600).contains("expires in 10 minutes"));
        assert!(sms_text(&code, 60).contains("expires in 1 minute."));
        assert!(sms_text(&code, 90).contains("expires in 90 seconds"));
    }
}
