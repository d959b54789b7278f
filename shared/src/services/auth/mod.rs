//! Phone sign-in: one-time codes by SMS ([`send`]), then an access token and a rotating refresh token; the
//! keyed hashes codes, sources and numbers are kept under ([`keyed`]).

mod keyed;
mod send;

pub use keyed::{client_key, code_matches, hash_code, number_keys, source_key};
pub use send::{CodeSent, SendCode, SendCodeError};

use std::sync::Arc;

use crate::config::AuthPolicy;
use crate::crypto::{self, CryptoError};
use crate::domain::{new_id, LedgerEntry, LedgerKind, OtpCode, PhoneNumber, UnixTime, UserAccount, UserId};
use crate::metrics::{Metric, Metrics};
use crate::ports::{
    AccountStore, AttemptOutcome, Clock, CreateOutcome, KeyProvider, NewUser, OtpStore, PortError, RateDecision,
    RateLimiter, RefreshRecord, RefreshState, RotateOutcome, Rotation, SessionStore, Written,
};
use crate::tokens::{AccessTokens, TokenError};

const HOUR: i64 = 3600;

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
    /// The token was rotated moments ago by this same client: a retry of that request, whose answer holds the
    /// new pair (lost or still in flight). Nothing is revoked; the app can retry.
    #[error("the refresh token was just used by this client")]
    JustRotated,
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
            rotated: None,
        };
        Ok((refresh_token, record))
    }

    /// Trades a refresh token for a new pair. The presented token is spent; presenting a spent token again
    /// revokes its whole family (it has leaked, or the app is confused — either way, sign in again). With no
    /// client known, every second presentation is reuse; see [`SignIn::refresh_from`].
    pub async fn refresh(&self, presented: &str) -> Result<Session, RefreshError> {
        self.refresh_from(presented, None).await
    }

    /// [`SignIn::refresh`] for a request from `client` (source address, User-Agent): the same client presenting
    /// a token it rotated at most [`crate::ports::REFRESH_RETRY_SECS`] ago, or while its rotation is in flight, is retrying
    /// that request: [`RefreshError::JustRotated`], and the family lives on.
    pub async fn refresh_from(
        &self,
        presented: &str,
        client: Option<(Option<&str>, Option<&str>)>,
    ) -> Result<Session, RefreshError> {
        if !looks_like_refresh_token(presented) {
            return Err(RefreshError::Invalid);
        }
        let now = self.clock.now();
        let hash = crypto::sha256_b64(presented.as_bytes());
        let (old, keys) = tokio::join!(self.sessions.find_session(&hash), self.keys.keys());
        let old = old?.ok_or(RefreshError::Invalid)?;
        let keys = keys?;
        if old.expires_at <= now {
            return Err(RefreshError::Invalid);
        }
        let client = client.map(|(ip, agent)| client_key(&keys, ip, agent));
        let retry = |record: &RefreshRecord| client.as_deref().is_some_and(|c| record.retried_by(c, now));
        if old.state == RefreshState::Rotated {
            if retry(&old) {
                return Err(RefreshError::JustRotated);
            }
            self.revoke_for_reuse(&old, now).await?;
            return Err(RefreshError::Invalid);
        }
        let refresh_token = crypto::random_token()?;
        let next = RefreshRecord {
            token_hash: crypto::sha256_b64(refresh_token.as_bytes()),
            expires_at: now + self.policy.refresh_ttl_secs,
            state: RefreshState::Active,
            rotated: None,
            ..old.clone()
        };
        // Without a client the rotation is tagged with no one's tag: nothing can be taken for its retry.
        let rotation = Rotation { at: now, by: client.clone().unwrap_or_default() };
        let (rotated, user) =
            tokio::join!(self.sessions.rotate(&hash, &next, &rotation), self.accounts.get_user(&old.user_id));
        match rotated? {
            RotateOutcome::Rotated => {}
            RotateOutcome::AlreadyRotated => {
                // A concurrent rotation won: by this client (committed, or still in flight) it is a retry.
                let now_stored = self.sessions.find_session(&hash).await?;
                let in_flight = now_stored.as_ref().is_some_and(|r| r.state == RefreshState::Active);
                if client.is_some() && (in_flight || now_stored.as_ref().is_some_and(retry)) {
                    return Err(RefreshError::JustRotated);
                }
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
