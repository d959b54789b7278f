//! In-memory adapters with the same semantics as the DynamoDB ones (every conditional write is checked under
//! one lock). The local API runs on them by default, and the service tests use them.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;

use crate::domain::{
    Category, Generation, GenerationStatus, LedgerEntry, LedgerKind, OtpRecord, PhoneNumber, Template, TemplateId,
    Timings, UnixTime, UserAccount, UserId,
};
use crate::ports::{
    otp_refusal, AccountStore, AdjustOutcome, AttemptOutcome, CatalogueStore, CreateOutcome, CreditsStore, Favorite,
    FavoritesStore, LedgerPage, LedgerReader, NewUser, OtpStore, PortError, PurchaseOutcome, RateDecision, RateLimiter,
    RefreshRecord, RefreshState, RefundOutcome, RotateOutcome, SessionStore, SmsSender, VerifiedPurchase, Written,
};
use crate::ports::{
    ClaimOutcome, DeleteOutcome, FailFrom, FailOutcome, GenerationPage, GenerationStore, IdempotencyRecord, JobRef,
    NewGeneration, OverdueCursor, OverduePage, StartOutcome,
};

/// A credited (or refunded) App Store transaction.
#[derive(Debug)]
struct MemPurchase {
    user: Option<UserId>,
    credits: u64,
    refunded: bool,
    refunded_credits: u64,
}

#[derive(Default, Debug)]
struct Inner {
    /// Tombstones of deleted accounts, by a hash of the id; the id only while the deletion is unfinished.
    deleted: HashMap<String, (UnixTime, Option<UserId>)>,
    otp: HashMap<String, OtpRecord>,
    rate: HashMap<(String, i64), u32>,
    users: HashMap<UserId, UserAccount>,
    phones: HashMap<String, UserId>,
    ledger: HashMap<UserId, Vec<LedgerEntry>>,
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

    fn balance(&self, user: &UserId) -> Option<u64> {
        self.users.get(user).map(|u| u.credits)
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

    async fn mark_deleted(&self, id: &UserId, now: UnixTime) -> Result<(), PortError> {
        self.lock().deleted.entry(deletion_key(id)).or_insert((now, Some(id.clone())));
        Ok(())
    }

    async fn deletion_finished(&self, id: &UserId, _: UnixTime) -> Result<(), PortError> {
        if let Some(tombstone) = self.lock().deleted.get_mut(&deletion_key(id)) {
            tombstone.1 = None;
        }
        Ok(())
    }

    async fn pending_deletions(&self, limit: usize) -> Result<Vec<UserId>, PortError> {
        let inner = self.lock();
        let mut pending: Vec<(UnixTime, UserId)> =
            inner.deleted.values().filter_map(|(at, id)| id.clone().map(|id| (*at, id))).collect();
        pending.sort_by(|a, b| (a.0, a.1.as_str()).cmp(&(b.0, b.1.as_str())));
        Ok(pending.into_iter().take(limit).map(|(_, id)| id).collect())
    }

    async fn is_deleted(&self, id: &UserId) -> Result<bool, PortError> {
        Ok(self.lock().deleted.contains_key(&deletion_key(id)))
    }
}

/// The key of an account's deletion tombstone: a hash, so the tombstone itself names no one.
pub fn deletion_key(id: &UserId) -> String {
    crate::crypto::sha256_b64(format!("deleted|{id}").as_bytes())
}

impl MemoryStore {
    /// Every stored record as text (tests check that nothing of a deleted account is left).
    pub fn dump(&self) -> String {
        format!("{:?}", *self.lock())
    }
}

#[async_trait]
impl crate::ports::AccountEraser for MemoryStore {
    async fn erase_sessions(&self, user: &UserId) -> Result<usize, PortError> {
        let mut inner = self.lock();
        let families: HashSet<String> =
            inner.sessions.values().filter(|s| s.user_id == *user).map(|s| s.family_id.clone()).collect();
        let before = inner.sessions.len() + inner.revoked_families.len();
        inner.sessions.retain(|_, s| s.user_id != *user);
        inner.revoked_families.retain(|f| !families.contains(f));
        Ok(before - inner.sessions.len() - inner.revoked_families.len())
    }

    async fn erase_favorites(&self, user: &UserId) -> Result<usize, PortError> {
        Ok(self.lock().favorites.remove(user).map_or(0, |f| f.len()))
    }

    async fn erase_generations(&self, user: &UserId) -> Result<usize, PortError> {
        let mut inner = self.lock();
        let mut erased = inner.generations.remove(user).map_or(0, |g| g.len());
        erased += usize::from(inner.in_flight.remove(user).is_some());
        let before = inner.idempotency.len();
        inner.idempotency.retain(|(u, _), _| u != user);
        Ok(erased + before - inner.idempotency.len())
    }

    async fn anonymise_credits(&self, user: &UserId, anon: &UserId, now: UnixTime) -> Result<(), PortError> {
        let mut inner = self.lock();
        let balance = inner.balance(user).unwrap_or(0);
        if balance > 0 {
            let amount = -i64::try_from(balance).map_err(|e| PortError::internal("credits", e))?;
            inner.apply(user, LedgerEntry::new(LedgerKind::Adjustment, amount, 0, "account-deleted", now));
        }
        let ledger = inner.ledger.remove(user).unwrap_or_default();
        for p in inner.purchases.values_mut() {
            if p.user.as_ref() == Some(user) {
                p.user = Some(anon.clone());
            }
        }
        inner.ledger.entry(anon.clone()).or_default().extend(ledger);
        Ok(())
    }

    async fn erase_identity(&self, user: &UserId, phone: Option<&str>) -> Result<(), PortError> {
        let mut inner = self.lock();
        if let Some(e164) = phone {
            // Only while the number is still this user's (or nobody's): a new account's code record stays.
            if inner.phones.get(e164).is_none_or(|owner| owner == user) {
                inner.phones.remove(e164);
                inner.otp.remove(e164);
            }
        }
        inner.users.remove(user);
        Ok(())
    }
}

#[async_trait]
impl LedgerReader for MemoryStore {
    async fn ledger_page(&self, id: &UserId, limit: usize, before: Option<&str>) -> Result<LedgerPage, PortError> {
        let inner = self.lock();
        let mut older: Vec<LedgerEntry> = inner
            .ledger
            .get(id)
            .map(|l| {
                l.iter().rev().filter(|e| before.is_none_or(|b| e.id.as_str() < b)).take(limit + 1).cloned().collect()
            })
            .unwrap_or_default();
        let more = older.len() > limit;
        older.truncate(limit);
        Ok(LedgerPage { entries: older, more })
    }
}

#[async_trait]
impl CreditsStore for MemoryStore {
    async fn balance(&self, id: &UserId) -> Result<u64, PortError> {
        Ok(self.lock().balance(id).unwrap_or(0))
    }

    async fn credit_purchase(
        &self,
        user: &UserId,
        purchase: &VerifiedPurchase,
        now: UnixTime,
    ) -> Result<PurchaseOutcome, PortError> {
        let mut inner = self.lock();
        if let Some(existing) = inner.purchases.get(&purchase.transaction_id) {
            return Ok(match &existing.user {
                Some(owner) if owner == user => PurchaseOutcome::AlreadyCredited {
                    credits_added: existing.credits,
                    balance: inner.balance(user).unwrap_or(0),
                },
                Some(_) => PurchaseOutcome::OtherUser,
                None => PurchaseOutcome::Revoked,
            });
        }
        let amount = i64::try_from(purchase.credits).map_err(|e| PortError::internal("credits", e))?;
        let entry = LedgerEntry::apply(
            LedgerKind::Purchase,
            inner.balance(user).unwrap_or(0),
            amount,
            &purchase.transaction_id,
            now,
        )
        .ok_or_else(|| PortError::internal("credits", "balance overflow"))?;
        inner.purchases.insert(
            purchase.transaction_id.clone(),
            MemPurchase { user: Some(user.clone()), credits: purchase.credits, refunded: false, refunded_credits: 0 },
        );
        let balance = inner.apply(user, entry);
        Ok(PurchaseOutcome::Credited { credits_added: purchase.credits, balance })
    }

    async fn refund_purchase(
        &self,
        transaction_id: &str,
        notification_id: &str,
        now: UnixTime,
    ) -> Result<RefundOutcome, PortError> {
        let mut inner = self.lock();
        if !inner.notifications.insert(notification_id.to_owned()) {
            return Ok(RefundOutcome::Duplicate);
        }
        let Some(p) = inner.purchases.get(transaction_id) else {
            inner.purchases.insert(
                transaction_id.to_owned(),
                MemPurchase { user: None, credits: 0, refunded: true, refunded_credits: 0 },
            );
            return Ok(RefundOutcome::UnknownTransaction);
        };
        let (Some(user), false) = (p.user.clone(), p.refunded) else {
            return Ok(RefundOutcome::NotApplicable);
        };
        let credits = p.credits;
        let balance = inner.balance(&user).unwrap_or(0);
        let take = balance.min(credits);
        let amount = -i64::try_from(take).map_err(|e| PortError::internal("credits", e))?;
        let mut entry = LedgerEntry::new(LedgerKind::Refund, amount, balance - take, transaction_id, now);
        let shortfall = credits - take;
        entry.shortfall = (shortfall > 0).then_some(shortfall);
        if let Some(p) = inner.purchases.get_mut(transaction_id) {
            p.refunded = true;
            p.refunded_credits = take;
        }
        let balance = inner.apply(&user, entry);
        Ok(RefundOutcome::Applied { user, amount, shortfall, balance })
    }

    async fn reverse_refund(
        &self,
        transaction_id: &str,
        notification_id: &str,
        now: UnixTime,
    ) -> Result<RefundOutcome, PortError> {
        let mut inner = self.lock();
        if !inner.notifications.insert(notification_id.to_owned()) {
            return Ok(RefundOutcome::Duplicate);
        }
        let Some((user, give)) = inner
            .purchases
            .get(transaction_id)
            .and_then(|p| p.user.clone().filter(|_| p.refunded).map(|u| (u, p.refunded_credits)))
        else {
            return Ok(RefundOutcome::NotApplicable);
        };
        let amount = i64::try_from(give).map_err(|e| PortError::internal("credits", e))?;
        let entry =
            LedgerEntry::apply(LedgerKind::Reversal, inner.balance(&user).unwrap_or(0), amount, transaction_id, now)
                .ok_or_else(|| PortError::internal("credits", "balance overflow"))?;
        if let Some(p) = inner.purchases.get_mut(transaction_id) {
            p.refunded = false;
            p.refunded_credits = 0;
        }
        let balance = inner.apply(&user, entry);
        Ok(RefundOutcome::Applied { user, amount, shortfall: 0, balance })
    }

    async fn record_notification(&self, notification_id: &str, _now: UnixTime) -> Result<Written, PortError> {
        Ok(if self.lock().notifications.insert(notification_id.to_owned()) { Written::Yes } else { Written::Conflict })
    }

    async fn adjust(
        &self,
        user: &UserId,
        amount: i64,
        reason: &str,
        now: UnixTime,
    ) -> Result<AdjustOutcome, PortError> {
        let mut inner = self.lock();
        let Some(balance) = inner.balance(user) else {
            return Ok(AdjustOutcome::NoSuchUser);
        };
        match LedgerEntry::apply(LedgerKind::Adjustment, balance, amount, reason, now) {
            None => Ok(AdjustOutcome::Insufficient { balance }),
            Some(entry) => Ok(AdjustOutcome::Applied { balance: inner.apply(user, entry) }),
        }
    }
}

#[async_trait]
impl CatalogueStore for MemoryStore {
    async fn load_catalogue(&self) -> Result<(Vec<Category>, Vec<Template>), PortError> {
        let inner = self.lock();
        Ok((inner.categories.values().cloned().collect(), inner.templates.values().cloned().collect()))
    }

    async fn put_category(&self, category: &Category) -> Result<(), PortError> {
        self.lock().categories.insert(category.id.to_string(), category.clone());
        Ok(())
    }

    async fn put_template(&self, template: &Template) -> Result<(), PortError> {
        self.lock().templates.insert(template.id.clone(), template.clone());
        Ok(())
    }

    async fn set_template_active(&self, id: &TemplateId, active: bool) -> Result<bool, PortError> {
        Ok(self.lock().templates.get_mut(id).map(|t| t.active = active).is_some())
    }
}

#[async_trait]
impl FavoritesStore for MemoryStore {
    async fn add_favorite(&self, user: &UserId, template: &TemplateId, now: UnixTime) -> Result<(), PortError> {
        self.lock().favorites.entry(user.clone()).or_default().entry(template.clone()).or_insert(now);
        Ok(())
    }

    async fn remove_favorite(&self, user: &UserId, template: &TemplateId) -> Result<(), PortError> {
        if let Some(f) = self.lock().favorites.get_mut(user) {
            f.remove(template);
        }
        Ok(())
    }

    async fn favorites(&self, user: &UserId) -> Result<Vec<Favorite>, PortError> {
        let inner = self.lock();
        Ok(inner
            .favorites
            .get(user)
            .map(|f| f.iter().map(|(t, at)| Favorite { template_id: t.clone(), created_at: *at }).collect())
            .unwrap_or_default())
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

impl Inner {
    fn generation_mut(&mut self, job: &JobRef) -> Option<&mut Generation> {
        self.generations.get_mut(&job.user_id).and_then(|g| g.get_mut(&job.generation_id))
    }

    fn release_slot(&mut self, user: &UserId) {
        if let Some(count) = self.in_flight.get_mut(user) {
            *count = count.saturating_sub(1);
        }
    }
}

#[async_trait]
impl GenerationStore for MemoryStore {
    async fn start_generation(&self, new: &NewGeneration, now: UnixTime) -> Result<StartOutcome, PortError> {
        let mut inner = self.lock();
        let g = &new.generation;
        let user = &g.user_id;
        if let Some(record) = inner.idempotency.get(&(user.clone(), new.idempotency.key_hash.clone())) {
            return Ok(StartOutcome::KeyUsed(record.clone()));
        }
        // The same order of checks as the DynamoDB transaction: balance, then key, then the in-flight slot.
        let balance = inner.balance(user).unwrap_or(0);
        let cost = i64::try_from(g.credits_charged).map_err(|e| PortError::internal("generations", e))?;
        let Some(entry) = LedgerEntry::apply(LedgerKind::Spend, balance, -cost, &g.id, now) else {
            return Ok(StartOutcome::Insufficient { balance });
        };
        if inner.in_flight.get(user).copied().unwrap_or(0) >= new.max_in_flight {
            return Ok(StartOutcome::TooManyInFlight);
        }
        let balance = inner.apply(user, entry);
        let record =
            IdempotencyRecord { balance, created_at: now, generation_id: g.id.clone(), ..new.idempotency.clone() };
        inner.idempotency.insert((user.clone(), record.key_hash.clone()), record);
        *inner.in_flight.entry(user.clone()).or_default() += 1;
        inner.generations.entry(user.clone()).or_default().insert(g.id.clone(), g.clone());
        Ok(StartOutcome::Started { balance })
    }

    async fn idempotency_record(&self, user: &UserId, key_hash: &str) -> Result<Option<IdempotencyRecord>, PortError> {
        Ok(self.lock().idempotency.get(&(user.clone(), key_hash.to_owned())).cloned())
    }

    async fn generation(&self, user: &UserId, id: &str) -> Result<Option<Generation>, PortError> {
        Ok(self.lock().generations.get(user).and_then(|g| g.get(id)).cloned())
    }

    async fn generations_page(
        &self,
        user: &UserId,
        limit: usize,
        before: Option<&str>,
    ) -> Result<GenerationPage, PortError> {
        let inner = self.lock();
        let mut items: Vec<Generation> = inner
            .generations
            .get(user)
            .map(|g| {
                g.values().rev().filter(|g| before.is_none_or(|b| g.id.as_str() < b)).take(limit + 1).cloned().collect()
            })
            .unwrap_or_default();
        let more = items.len() > limit;
        items.truncate(limit);
        Ok(GenerationPage { items, more })
    }

    async fn delete_generation(&self, user: &UserId, id: &str) -> Result<DeleteOutcome, PortError> {
        let mut inner = self.lock();
        let Some(all) = inner.generations.get_mut(user) else { return Ok(DeleteOutcome::NotFound) };
        match all.get(id) {
            None => Ok(DeleteOutcome::NotFound),
            Some(g) if g.status.in_flight() => Ok(DeleteOutcome::InFlight),
            Some(_) => Ok(all.remove(id).map_or(DeleteOutcome::NotFound, |g| DeleteOutcome::Deleted(Box::new(g)))),
        }
    }

    async fn claim(
        &self,
        job: &JobRef,
        token: &str,
        delivery: Option<&str>,
        claim_until: UnixTime,
        now: UnixTime,
    ) -> Result<ClaimOutcome, PortError> {
        let mut inner = self.lock();
        let Some(g) = inner.generation_mut(job) else { return Ok(ClaimOutcome::Missing) };
        let redelivered = delivery.is_some() && g.claim_delivery.as_deref() == delivery;
        let claimable = g.deadline > now
            && (g.status == GenerationStatus::Queued
                || (g.status == GenerationStatus::Processing
                    && (g.claim_until.is_some_and(|u| u <= now) || redelivered)));
        if !claimable {
            return Ok(ClaimOutcome::NotClaimable(g.clone()));
        }
        g.status = GenerationStatus::Processing;
        g.claim = Some(token.to_owned());
        g.claim_until = Some(claim_until);
        g.claim_delivery = delivery.map(str::to_owned);
        g.started_at = g.started_at.or(Some(now));
        g.attempts += 1;
        Ok(ClaimOutcome::Claimed(g.clone()))
    }

    async fn release(&self, job: &JobRef, token: &str, now: UnixTime) -> Result<(), PortError> {
        let mut inner = self.lock();
        if let Some(g) = inner.generation_mut(job) {
            if g.status == GenerationStatus::Processing && g.claim.as_deref() == Some(token) {
                g.claim_until = Some(now);
            }
        }
        Ok(())
    }

    async fn succeed(
        &self,
        job: &JobRef,
        token: &str,
        output_key: &str,
        timings: Timings,
        now: UnixTime,
    ) -> Result<Written, PortError> {
        let mut inner = self.lock();
        let Some(g) = inner.generation_mut(job) else { return Ok(Written::Conflict) };
        if g.status != GenerationStatus::Processing || g.claim.as_deref() != Some(token) {
            return Ok(Written::Conflict);
        }
        g.status = GenerationStatus::Succeeded;
        g.output_key = Some(output_key.to_owned());
        g.completed_at = Some(now);
        g.timings = Some(timings);
        g.claim = None;
        g.claim_until = None;
        inner.release_slot(&job.user_id);
        Ok(Written::Yes)
    }

    async fn fail_and_refund(
        &self,
        job: &JobRef,
        from: FailFrom,
        reason: &str,
        now: UnixTime,
    ) -> Result<FailOutcome, PortError> {
        let mut inner = self.lock();
        let Some(g) = inner.generation_mut(job) else { return Ok(FailOutcome::NotApplicable) };
        let eligible = g.status.in_flight()
            && match &from {
                FailFrom::Claim(token) => g.status == GenerationStatus::Processing && g.claim.as_deref() == Some(token),
                FailFrom::DeadlinePassed(at) => {
                    g.deadline <= *at
                        && (g.status == GenerationStatus::Queued || g.claim_until.is_some_and(|until| until <= *at))
                }
            };
        if !eligible {
            return Ok(FailOutcome::NotApplicable);
        }
        // Everything that can fail first, so a failure changes nothing (as the DynamoDB transaction would).
        let amount = i64::try_from(g.credits_charged).map_err(|e| PortError::internal("generations", e))?;
        let id = g.id.clone();
        let balance = inner.balance(&job.user_id).unwrap_or(0);
        let entry = LedgerEntry::apply(LedgerKind::Refund, balance, amount, &id, now)
            .ok_or_else(|| PortError::internal("generations", "refund overflows the balance"))?;
        let Some(g) = inner.generation_mut(job) else { return Ok(FailOutcome::NotApplicable) };
        g.status = GenerationStatus::Failed;
        g.refunded = true;
        g.failure_reason = Some(reason.to_owned());
        g.completed_at = Some(now);
        g.claim = None;
        g.claim_until = None;
        let balance = inner.apply(&job.user_id, entry);
        inner.release_slot(&job.user_id);
        Ok(FailOutcome::Refunded { balance })
    }

    async fn overdue(
        &self,
        now: UnixTime,
        limit: usize,
        after: Option<&OverdueCursor>,
    ) -> Result<OverduePage, PortError> {
        let inner = self.lock();
        let position = |deadline: UnixTime, job: &JobRef| (deadline, job.generation_id.clone());
        let mut due: Vec<(UnixTime, JobRef)> = inner
            .generations
            .values()
            .flat_map(|g| g.values())
            .filter(|g| g.status.in_flight() && g.deadline <= now)
            .map(|g| (g.deadline, JobRef { user_id: g.user_id.clone(), generation_id: g.id.clone() }))
            .filter(|(deadline, job)| after.is_none_or(|a| position(*deadline, job) > (a.deadline, a.position.clone())))
            .collect();
        due.sort_by_key(|(deadline, job)| position(*deadline, job));
        let more = due.len() > limit;
        due.truncate(limit);
        let next = if more {
            due.last().map(|(deadline, job)| OverdueCursor { deadline: *deadline, position: job.generation_id.clone() })
        } else {
            None
        };
        Ok(OverduePage { jobs: due.into_iter().map(|(_, job)| job).collect(), next })
    }
}
