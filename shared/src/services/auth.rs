//! Phone sign-in: one-time codes by SMS, then an access token and a rotating refresh token.

use std::sync::Arc;

use secrecy::ExposeSecret;

use crate::config::AuthPolicy;
use crate::crypto::{self, CryptoError};
use crate::domain::{
    new_id, LedgerEntry, LedgerKind, OtpCode, OtpRecord, PhoneNumber, SendLimits, SendRefusal, UnixTime, UserAccount,
    UserId,
};
use crate::metrics::{Metric, Metrics};
use crate::ports::{
    AccountStore, AppKeys, AttemptOutcome, Clock, Counter, CreateOutcome, KeyProvider, NewUser, OtpStore, PortError,
    RateDecision, RateLimiter, RefreshRecord, RefreshState, RotateOutcome, SessionStore, SmsSender, Written,
};
use crate::tokens::{AccessTokens, TokenError};

const HOUR: i64 = 3600;

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

/// The keyed hash a code is stored under (with the current key). The code id is mixed in so equal codes hash
/// differently.
pub fn hash_code(keys: &AppKeys, phone: &PhoneNumber, code_id: &str, code: &OtpCode) -> Result<String, PortError> {
    let key = keys.otp.first().ok_or_else(|| PortError::internal("app secret", "no code key"))?;
    Ok(crypto::hmac_b64(key.expose_secret(), &[phone.e164(), code_id, code.digits()]))
}

/// Who asked for a code, as the per-source cap counts it: a keyed hash (16 characters, current code key) of
/// the source address, an IPv6 address by its /64 (one subscriber's network: the rest of it is free to
/// change), so the record keeps no address.
pub fn source_key(keys: &AppKeys, source_ip: Option<&str>) -> String {
    let source = match source_ip.map(str::parse::<std::net::IpAddr>) {
        Some(Ok(std::net::IpAddr::V6(v6))) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
        Some(Ok(v4)) => v4.to_string(),
        Some(Err(_)) | None => "unknown".to_owned(),
    };
    let key = keys.otp.first().map(|k| k.expose_secret()).unwrap_or_default();
    let mut tag = crypto::hmac_b64(key, &["send-source", &source]);
    tag.truncate(16);
    tag
}

/// The keyed hashes of `phone` a deleted account's mark may be under, one per app key, the current first
/// (the first is what a new account stores for its own deletion).
pub fn number_keys(keys: &AppKeys, phone: &PhoneNumber) -> Vec<String> {
    keys.number.iter().map(|key| crypto::hmac_b64(key.expose_secret(), &["number-mark", phone.e164()])).collect()
}

/// Whether `code` is the one stored as `stored`, under any of the code keys (constant-time per key).
pub fn code_matches(keys: &AppKeys, phone: &PhoneNumber, code_id: &str, code: &OtpCode, stored: &str) -> bool {
    let parts = [phone.e164(), code_id, code.digits()];
    keys.otp.iter().any(|key| crypto::hmac_matches(key.expose_secret(), &parts, stored))
}

/// A signed-in session: what verify-code and refresh return.
#[derive(Debug, Clone)]
pub struct Session {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in: i64,
    pub is_new_user: bool,
    pub user: UserAccount,
}

#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    #[error("the code is not correct")]
    InvalidCode { attempts_left: u32 },
    #[error("no code is waiting for this number")]
    NoCode,
    #[error("the code has expired")]
    CodeExpired,
    #[error("the code was already used")]
    CodeUsed,
    #[error("too many wrong codes")]
    TooManyAttempts,
    #[error("too many verifications from this address; retry after {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    /// The number belongs to an account whose deletion has not finished yet (the reconciler finishes it).
    #[error("the account is being deleted")]
    AccountBeingDeleted,
    #[error(transparent)]
    Port(#[from] PortError),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    #[error(transparent)]
    Token(#[from] TokenError),
}

#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    #[error("the refresh token is not valid")]
    Invalid,
    #[error(transparent)]
    Port(#[from] PortError),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    #[error(transparent)]
    Token(#[from] TokenError),
}

/// Code verification, first-sign-in account creation, and the session (token) lifecycle.
pub struct SignIn {
    pub otp: Arc<dyn OtpStore>,
    pub limiter: Arc<dyn RateLimiter>,
    pub accounts: Arc<dyn AccountStore>,
    pub sessions: Arc<dyn SessionStore>,
    pub keys: Arc<dyn KeyProvider>,
    pub clock: Arc<dyn Clock>,
    pub policy: AuthPolicy,
    pub metrics: Arc<dyn Metrics>,
}

impl SignIn {
    pub fn access_tokens(&self) -> AccessTokens {
        AccessTokens::for_policy(&self.policy)
    }

    /// Checks `code` for `phone`; on success signs the user in, creating the account on first sign-in.
    pub async fn verify(
        &self,
        phone: &PhoneNumber,
        code: &OtpCode,
        source_ip: Option<&str>,
    ) -> Result<Session, SignInError> {
        let result = self.check_code(phone, code, source_ip).await;
        match &result {
            Ok(session) => {
                self.metrics.count(Metric::CodesVerified);
                if session.is_new_user {
                    self.metrics.count(Metric::SignUps);
                }
            }
            Err(
                SignInError::InvalidCode { .. }
                | SignInError::NoCode
                | SignInError::CodeExpired
                | SignInError::CodeUsed
                | SignInError::TooManyAttempts,
            ) => self.metrics.count(Metric::CodesRejected),
            Err(_) => {}
        }
        result
    }

    async fn check_code(
        &self,
        phone: &PhoneNumber,
        code: &OtpCode,
        source_ip: Option<&str>,
    ) -> Result<Session, SignInError> {
        let now = self.clock.now();
        let max = self.policy.max_attempts;
        let ip_key = format!("verify-code:ip:{}", source_ip.unwrap_or("unknown"));
        // Keys first (cached after the first request): an outage must not cost the user an attempt.
        let (ip, keys) =
            tokio::join!(self.limiter.hit(&ip_key, HOUR, self.policy.verify_ip_limit_per_hour, now), self.keys.keys());
        let keys = keys?;
        if let RateDecision::Limited { retry_after_secs } = ip? {
            tracing::warn!(phone = %phone.masked(), "verify-code refused: source IP over its hourly cap");
            return Err(SignInError::RateLimited { retry_after_secs });
        }
        // The attempt is counted before the comparison, atomically, so parallel guesses cannot exceed the limit.
        let record = match self.otp.reserve_attempt(phone, max, now).await? {
            AttemptOutcome::Reserved(r) => r,
            AttemptOutcome::NoCode => return Err(SignInError::NoCode),
            AttemptOutcome::Used => return Err(SignInError::CodeUsed),
            AttemptOutcome::Expired => return Err(SignInError::CodeExpired),
            AttemptOutcome::Exhausted => return Err(SignInError::TooManyAttempts),
        };
        let (Some(code_id), Some(stored)) = (record.code_id.as_deref(), record.code_hash.as_deref()) else {
            return Err(SignInError::NoCode);
        };
        if !code_matches(&keys, phone, code_id, code, stored) {
            tracing::info!(phone = %phone.masked(), attempts = record.attempts, "wrong sign-in code");
            return Err(SignInError::InvalidCode { attempts_left: max.saturating_sub(record.attempts) });
        }
        // The number's mark (a deleted account's) is read beside: a first sign-in needs it, and reading it here
        // costs a returning user no round trip.
        let number_keys = number_keys(&keys, phone);
        let (consumed, existing, mark) = tokio::join!(
            self.otp.consume(phone, code_id),
            self.accounts.find_by_phone(phone),
            self.otp.number_mark(&number_keys)
        );
        if consumed? == Written::Conflict {
            // Used by a concurrent request, or replaced by a newer code since the attempt: tell which.
            let current = self.otp.load(phone).await?;
            let used = current.is_some_and(|r| r.used && r.code_id.as_deref() == Some(code_id));
            return Err(if used { SignInError::CodeUsed } else { SignInError::NoCode });
        }
        let (user, is_new_user, refresh_token) = match existing? {
            Some(id) => {
                // Returning user: the session is stored while the profile and the deletion mark are read (a
                // session stored for an account being deleted goes when its deletion finishes).
                let (refresh_token, record) = self.new_family(&id, now)?;
                let (user, stored, deleted) = tokio::join!(
                    self.existing_user(&id),
                    self.sessions.create_session(&record),
                    self.accounts.is_deleted(&id)
                );
                stored?;
                if deleted? {
                    return Err(SignInError::AccountBeingDeleted);
                }
                (user?, false, refresh_token)
            }
            None => {
                let had_grant = mark?.is_some();
                let (user, is_new_user) = self.create_user(phone, number_keys, had_grant, now).await?;
                let (refresh_token, record) = self.new_family(&user.id, now)?;
                self.sessions.create_session(&record).await?;
                (user, is_new_user, refresh_token)
            }
        };
        tracing::info!(phone = %phone.masked(), is_new_user, "signed in");
        let access_token = self.access_tokens().issue(&keys, &user.id, now)?;
        Ok(Session { access_token, refresh_token, expires_in: self.policy.access_ttl_secs, is_new_user, user })
    }

    async fn existing_user(&self, id: &UserId) -> Result<UserAccount, PortError> {
        self.accounts
            .get_user(id)
            .await?
            .ok_or_else(|| PortError::internal("accounts", "phone index points at a missing user"))
    }

    /// Creates the account of a first sign-in: with the starter grant, unless the number had it already (a
    /// deleted account left its mark), in which case it starts at 0 credits with no grant entry.
    async fn create_user(
        &self,
        phone: &PhoneNumber,
        number_keys: Vec<String>,
        had_grant: bool,
        now: UnixTime,
    ) -> Result<(UserAccount, bool), PortError> {
        let starter = self.policy.starter_credits;
        if had_grant && starter > 0 {
            tracing::info!(phone = %phone.masked(), "a deleted account's number signs up again: no starter grant");
        }
        let user = NewUser {
            id: UserId::new(),
            phone: phone.clone(),
            created_at: now,
            starter_grant: (starter > 0 && !had_grant)
                .then(|| LedgerEntry::new(LedgerKind::Grant, starter as i64, starter, "starter-grant", now)),
            number_key: number_keys.into_iter().next(),
        };
        match self.accounts.create_user(&user).await? {
            CreateOutcome::Created(account) => Ok((account, true)),
            // A concurrent first sign-in for the same number created it: use that one.
            CreateOutcome::PhoneTaken(id) => Ok((self.existing_user(&id).await?, false)),
        }
    }

    /// A new refresh token starting a new family, and the record that stores its hash.
    fn new_family(&self, user: &UserId, now: UnixTime) -> Result<(String, RefreshRecord), CryptoError> {
        let refresh_token = crypto::random_token()?;
        let record = RefreshRecord {
            token_hash: crypto::sha256_b64(refresh_token.as_bytes()),
            user_id: user.clone(),
            family_id: new_id(),
            family_created_at: now,
            expires_at: now + self.policy.refresh_ttl_secs,
            state: RefreshState::Active,
        };
        Ok((refresh_token, record))
    }

    /// Trades a refresh token for a new pair. The presented token is spent; presenting a spent token again
    /// revokes its whole family (it has leaked, or the app is confused — either way, sign in again).
    pub async fn refresh(&self, presented: &str) -> Result<Session, RefreshError> {
        if !looks_like_refresh_token(presented) {
            return Err(RefreshError::Invalid);
        }
        let now = self.clock.now();
        let hash = crypto::sha256_b64(presented.as_bytes());
        let old = self.sessions.find_session(&hash).await?.ok_or(RefreshError::Invalid)?;
        if old.expires_at <= now {
            return Err(RefreshError::Invalid);
        }
        if old.state == RefreshState::Rotated {
            self.revoke_for_reuse(&old, now).await?;
            return Err(RefreshError::Invalid);
        }
        let refresh_token = crypto::random_token()?;
        let next = RefreshRecord {
            token_hash: crypto::sha256_b64(refresh_token.as_bytes()),
            expires_at: now + self.policy.refresh_ttl_secs,
            state: RefreshState::Active,
            ..old.clone()
        };
        let (rotated, user, keys) =
            tokio::join!(self.sessions.rotate(&hash, &next), self.accounts.get_user(&old.user_id), self.keys.keys());
        match rotated? {
            RotateOutcome::Rotated => {}
            RotateOutcome::AlreadyRotated => {
                self.revoke_for_reuse(&old, now).await?;
                return Err(RefreshError::Invalid);
            }
            RotateOutcome::FamilyRevoked => return Err(RefreshError::Invalid),
        }
        let Some(user) = user? else {
            return Err(RefreshError::Invalid);
        };
        if user.sessions_revoked_at.is_some_and(|at| old.family_created_at <= at) {
            self.sessions.revoke_family(&old.family_id, &old.user_id, now).await?;
            return Err(RefreshError::Invalid);
        }
        let keys = keys?;
        let access_token = self.access_tokens().issue(&keys, &user.id, now)?;
        Ok(Session { access_token, refresh_token, expires_in: self.policy.access_ttl_secs, is_new_user: false, user })
    }

    async fn revoke_for_reuse(&self, old: &RefreshRecord, now: UnixTime) -> Result<(), PortError> {
        tracing::warn!(family = %old.family_id, "refresh token reused: revoking its family");
        self.sessions.revoke_family(&old.family_id, &old.user_id, now).await
    }

    /// Signs out: revokes the presented refresh token's family (if it is the caller's), or every session.
    /// Revokes the session of `refresh_token` (if it is the user's), or every session with `all`.
    /// `account_deleted` is the caller's deleted-account check, run beside the token read: a deleted
    /// account's revocation records would outlive its deletion, so nothing is written unless it is `false`.
    pub async fn logout(
        &self,
        user: &UserId,
        refresh_token: Option<&str>,
        all: bool,
        account_deleted: impl std::future::Future<Output = Result<bool, PortError>>,
    ) -> Result<LoggedOut, PortError> {
        let now = self.clock.now();
        let token = refresh_token.filter(|t| looks_like_refresh_token(t));
        let find = async {
            match token {
                Some(token) => self.sessions.find_session(&crypto::sha256_b64(token.as_bytes())).await,
                None => Ok(None),
            }
        };
        let (deleted, record) = tokio::join!(account_deleted, find);
        if deleted? {
            return Ok(LoggedOut::AccountDeleted);
        }
        if all {
            self.accounts.revoke_sessions(user, now).await?;
        }
        // Someone else's or an unknown token is ignored without saying so.
        if let Some(record) = record?.filter(|r| &r.user_id == user) {
            self.sessions.revoke_family(&record.family_id, user, now).await?;
        }
        Ok(LoggedOut::Done)
    }
}

/// What a logout did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoggedOut {
    Done,
    /// The account is being deleted: nothing was written.
    AccountDeleted,
}

/// 43 base64url characters: the shape of the 256-bit tokens this service issues.
fn looks_like_refresh_token(s: &str) -> bool {
    s.len() == 43 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
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
