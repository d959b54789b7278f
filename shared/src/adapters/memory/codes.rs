//! One-time codes and the rate limiter in memory (twin of adapters/dynamodb/codes.rs).

use async_trait::async_trait;

use crate::domain::{NumberMark, OtpRecord, PhoneNumber, UnixTime};
use crate::ports::{AttemptOutcome, Counter, OtpStore, PortError, RateDecision, RateLimiter, Written};

use super::MemoryStore;

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
        let Some(record) = inner.otp.get_mut(phone.e164()) else {
            return Ok(AttemptOutcome::NoCode);
        };
        if let Some(refusal) = record.refusal(max_attempts, now) {
            return Ok(refusal.into());
        }
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

    async fn number_mark(&self, number_keys: &[String]) -> Result<Option<NumberMark>, PortError> {
        let inner = self.lock();
        Ok(number_keys.iter().find_map(|k| inner.marks.get(k)).cloned())
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

    async fn hit_all(&self, counters: &[Counter], now: UnixTime) -> Result<RateDecision, PortError> {
        let mut inner = self.lock();
        let window = |c: &Counter| (c.key.clone(), now - now.rem_euclid(c.window_secs));
        let retry = counters
            .iter()
            .filter(|c| inner.rate.get(&window(c)).is_some_and(|hits| *hits >= c.limit))
            .map(|c| (c.window_secs - now.rem_euclid(c.window_secs)).max(1) as u64)
            .max();
        if let Some(retry_after_secs) = retry {
            return Ok(RateDecision::Limited { retry_after_secs });
        }
        for c in counters {
            *inner.rate.entry(window(c)).or_insert(0) += 1;
        }
        Ok(RateDecision::Allowed)
    }
}
