//! In-memory adapters with the same semantics as the DynamoDB ones (every conditional write is checked under
//! one lock). The local API runs on them by default, and the service tests use them.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;

use crate::domain::{LedgerEntry, OtpRecord, PhoneNumber, UnixTime, UserAccount, UserId};
use crate::ports::{
    otp_refusal, AccountStore, AttemptOutcome, CreateOutcome, LedgerReader, NewUser, OtpStore, PortError, RateDecision,
    RateLimiter, RefreshRecord, RefreshState, RotateOutcome, SessionStore, SmsSender, Written,
};

#[derive(Default)]
struct Inner {
    otp: HashMap<String, OtpRecord>,
    rate: HashMap<(String, i64), u32>,
    users: HashMap<UserId, UserAccount>,
    phones: HashMap<String, UserId>,
    ledger: HashMap<UserId, Vec<LedgerEntry>>,
    sessions: HashMap<String, RefreshRecord>,
    revoked_families: HashSet<String>,
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

#[async_trait]
impl OtpStore for MemoryStore {
    async fn load(&self, phone: &PhoneNumber) -> Result<Option<OtpRecord>, PortError> {
        Ok(self.lock().otp.get(phone.e164()).cloned())
    }

    async fn replace(&self, record: &OtpRecord, expected_version: u64) -> Result<Written, PortError> {
        let mut inner = self.lock();
        let current = inner.otp.get(&record.phone).map_or(0, |r| r.version);
        if current != expected_version {
            return Ok(Written::Conflict);
        }
        inner.otp.insert(record.phone.clone(), record.clone());
        Ok(Written::Yes)
    }

    async fn reserve_attempt(
        &self,
        phone: &PhoneNumber,
        max_attempts: u32,
        now: UnixTime,
    ) -> Result<AttemptOutcome, PortError> {
        let mut inner = self.lock();
        let record = inner.otp.get_mut(phone.e164());
        if let Some(refusal) = otp_refusal(record.as_deref(), max_attempts, now) {
            return Ok(refusal);
        }
        let Some(record) = record else {
            return Ok(AttemptOutcome::NoCode);
        };
        record.attempts += 1;
        Ok(AttemptOutcome::Reserved(record.clone()))
    }

    async fn consume(&self, phone: &PhoneNumber, code_id: &str) -> Result<Written, PortError> {
        let mut inner = self.lock();
        match inner.otp.get_mut(phone.e164()) {
            Some(r) if r.code_id.as_deref() == Some(code_id) && !r.used => {
                r.used = true;
                Ok(Written::Yes)
            }
            _ => Ok(Written::Conflict),
        }
    }
}

#[async_trait]
impl RateLimiter for MemoryStore {
    async fn hit(&self, key: &str, window_secs: i64, limit: u32, now: UnixTime) -> Result<RateDecision, PortError> {
        let window = now - now.rem_euclid(window_secs);
        let mut inner = self.lock();
        let hits = inner.rate.entry((key.to_owned(), window)).or_insert(0);
        if *hits >= limit {
            return Ok(RateDecision::Limited { retry_after_secs: (window + window_secs - now).max(1) as u64 });
        }
        *hits += 1;
        Ok(RateDecision::Allowed)
    }
}

#[async_trait]
impl AccountStore for MemoryStore {
    async fn find_by_phone(&self, phone: &PhoneNumber) -> Result<Option<UserId>, PortError> {
        Ok(self.lock().phones.get(phone.e164()).cloned())
    }

    async fn get_user(&self, id: &UserId) -> Result<Option<UserAccount>, PortError> {
        Ok(self.lock().users.get(id).cloned())
    }

    async fn create_user(&self, user: &NewUser) -> Result<CreateOutcome, PortError> {
        let mut inner = self.lock();
        if let Some(existing) = inner.phones.get(user.phone.e164()) {
            return Ok(CreateOutcome::PhoneTaken(existing.clone()));
        }
        let account = UserAccount {
            id: user.id.clone(),
            phone: user.phone.e164().to_owned(),
            display_name: None,
            credits: user.starter_grant.as_ref().map_or(0, |g| g.balance_after),
            created_at: user.created_at,
            sessions_revoked_at: None,
        };
        inner.phones.insert(user.phone.e164().to_owned(), user.id.clone());
        inner.users.insert(user.id.clone(), account.clone());
        if let Some(grant) = &user.starter_grant {
            inner.ledger.entry(user.id.clone()).or_default().push(grant.clone());
        }
        Ok(CreateOutcome::Created(account))
    }

    async fn set_display_name(&self, id: &UserId, name: Option<&str>) -> Result<Option<UserAccount>, PortError> {
        let mut inner = self.lock();
        Ok(inner.users.get_mut(id).map(|u| {
            u.display_name = name.map(str::to_owned);
            u.clone()
        }))
    }

    async fn revoke_sessions(&self, id: &UserId, at: UnixTime) -> Result<(), PortError> {
        if let Some(u) = self.lock().users.get_mut(id) {
            u.sessions_revoked_at = Some(at);
        }
        Ok(())
    }
}

#[async_trait]
impl LedgerReader for MemoryStore {
    async fn ledger(&self, id: &UserId, limit: usize) -> Result<Vec<LedgerEntry>, PortError> {
        let inner = self.lock();
        Ok(inner.ledger.get(id).map(|l| l.iter().rev().take(limit).cloned().collect()).unwrap_or_default())
    }
}

#[async_trait]
impl SessionStore for MemoryStore {
    async fn create_session(&self, record: &RefreshRecord) -> Result<(), PortError> {
        let mut inner = self.lock();
        if inner.sessions.contains_key(&record.token_hash) {
            return Err(PortError::internal("sessions", "refresh token hash collision"));
        }
        inner.sessions.insert(record.token_hash.clone(), record.clone());
        Ok(())
    }

    async fn find_session(&self, token_hash: &str) -> Result<Option<RefreshRecord>, PortError> {
        Ok(self.lock().sessions.get(token_hash).cloned())
    }

    async fn rotate(&self, old_hash: &str, new: &RefreshRecord) -> Result<RotateOutcome, PortError> {
        let mut inner = self.lock();
        match inner.sessions.get(old_hash) {
            Some(r) if r.state == RefreshState::Active => {}
            _ => return Ok(RotateOutcome::AlreadyRotated),
        }
        if inner.revoked_families.contains(&new.family_id) {
            return Ok(RotateOutcome::FamilyRevoked);
        }
        if let Some(old) = inner.sessions.get_mut(old_hash) {
            old.state = RefreshState::Rotated;
        }
        inner.sessions.insert(new.token_hash.clone(), new.clone());
        Ok(RotateOutcome::Rotated)
    }

    async fn revoke_family(&self, family_id: &str, _user_id: &UserId, _now: UnixTime) -> Result<(), PortError> {
        self.lock().revoked_families.insert(family_id.to_owned());
        Ok(())
    }
}

/// One text the local outbox "sent".
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SentSms {
    pub to: String,
    pub body: String,
    pub sent_at: UnixTime,
}

/// An SMS sender that keeps messages (newest last) instead of sending them, and optionally prints them.
/// Local only: it shows the code, which no deployed adapter ever does.
#[derive(Default, Clone)]
pub struct MemoryOutbox {
    messages: Arc<Mutex<Vec<SentSms>>>,
    print: bool,
    fail: Arc<std::sync::atomic::AtomicBool>,
}

impl MemoryOutbox {
    pub fn new() -> Self {
        Self::default()
    }

    /// An outbox that also prints every message to stderr (the local API's).
    pub fn printing() -> Self {
        Self { print: true, ..Self::default() }
    }

    /// Makes every following send fail as if the provider were down (tests of the failure path).
    pub fn set_failing(&self, failing: bool) {
        self.fail.store(failing, std::sync::atomic::Ordering::SeqCst);
    }

    /// Messages sent to `e164`, newest first.
    pub fn messages_to(&self, e164: &str) -> Vec<SentSms> {
        let messages = self.messages.lock().unwrap_or_else(|e| e.into_inner());
        messages.iter().rev().filter(|m| m.to == e164).cloned().collect()
    }

    pub fn count(&self) -> usize {
        self.messages.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

#[async_trait]
impl SmsSender for MemoryOutbox {
    async fn send(&self, to: &PhoneNumber, body: &str) -> Result<(), PortError> {
        if self.fail.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(PortError::unavailable("sms", "outbox set to fail"));
        }
        let sent_at = crate::ports::Clock::now(&crate::ports::SystemClock);
        if self.print {
            eprintln!("[local sms] to {}: {body}", to.e164());
        }
        let mut messages = self.messages.lock().unwrap_or_else(|e| e.into_inner());
        messages.push(SentSms { to: to.e164().to_owned(), body: body.to_owned(), sent_at });
        Ok(())
    }
}
