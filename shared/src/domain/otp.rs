use serde::{Deserialize, Serialize};

use super::{InvalidValue, UnixTime};

/// A six-digit one-time code as typed by the user. Its `Debug` never shows the digits.
#[derive(Clone, PartialEq, Eq)]
pub struct OtpCode(String);

impl OtpCode {
    pub const LEN: usize = 6;

    /// Accepts exactly six ASCII digits, ignoring surrounding whitespace and inner spaces (`123 456`).
    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        let digits: String = s.chars().filter(|c| *c != ' ').collect();
        if digits.len() == Self::LEN && digits.bytes().all(|b| b.is_ascii_digit()) {
            Ok(Self(digits))
        } else {
            Err(InvalidValue("code must be 6 digits"))
        }
    }

    /// Draws a uniformly random code from the system CSPRNG.
    pub fn generate() -> Result<Self, crate::crypto::CryptoError> {
        // Rejection sampling keeps the distribution uniform: 4_294_000_000 is the largest multiple of 10^6
        // below 2^32.
        loop {
            let n = u32::from_be_bytes(crate::crypto::random_bytes::<4>()?);
            if n < 4_294_000_000 {
                return Ok(Self(format!("{:06}", n % 1_000_000)));
            }
        }
    }

    pub fn digits(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for OtpCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OtpCode(******)")
    }
}

/// Everything stored about one phone number's sign-in codes: the live code (as a keyed hash only) and the
/// send history the resend cooldown and the daily cap are computed from. `version` makes every replacement a
/// conditional write, so two concurrent send-code requests cannot both pass the limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OtpRecord {
    pub phone: String,
    pub version: u64,
    /// Identifies one issued code, so consuming it cannot consume a newer one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_id: Option<String>,
    /// base64 HMAC-SHA256 of the code under the server's code-hashing key; absent when no code is live.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_hash: Option<String>,
    #[serde(default)]
    pub expires_at: UnixTime,
    #[serde(default)]
    pub attempts: u32,
    #[serde(default)]
    pub used: bool,
    #[serde(default)]
    pub last_sent_at: UnixTime,
    /// When codes were sent in the last 24 hours (pruned on every send).
    #[serde(default)]
    pub sent_at: Vec<UnixTime>,
    /// Who asked for each of them, `sent_at[i]` by `sent_from[i]`: a keyed hash of the source address (see
    /// `services::auth::source_key`). Shorter than `sent_at` in a record written before sources were kept:
    /// those sends count for the number but for no source.
    #[serde(default)]
    pub sent_from: Vec<String>,
}

/// The send limits of one number (the stage's `AuthPolicy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendLimits {
    /// Seconds between two codes to the number, whoever asks.
    pub cooldown_secs: i64,
    /// Codes the number receives in 24 hours, from all sources together: the bound on texts to one phone.
    pub per_day: usize,
    /// Codes one source may have sent to the number in 24 hours, below `per_day`, so one source cannot use the
    /// number's allowance up and lock its owner out.
    pub per_source_per_day: usize,
}

/// The send history a new code leaves (see [`OtpRecord::next_send`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Sends {
    pub at: Vec<UnixTime>,
    pub from: Vec<String>,
}

impl OtpRecord {
    pub fn empty(phone: &str) -> Self {
        Self {
            phone: phone.to_owned(),
            version: 0,
            code_id: None,
            code_hash: None,
            expires_at: 0,
            attempts: 0,
            used: false,
            last_sent_at: 0,
            sent_at: Vec::new(),
            sent_from: Vec::new(),
        }
    }

    /// When the record may be forgotten: after the code expires and the daily window has passed.
    pub fn ttl(&self) -> UnixTime {
        let last = self.sent_at.iter().copied().max().unwrap_or(self.last_sent_at);
        self.expires_at.max(last + DAY) + 3600
    }

    /// Why this record's code cannot take another attempt at `now`, or `None` if it can.
    ///
    /// The rule of `OtpStore::reserve_attempt`: the memory store applies it directly; the DynamoDB store
    /// writes it as the condition `attribute_exists(codeHash) AND used = :false AND attempts < :max AND
    /// expiresAt > :now` (adapters/dynamodb/codes.rs) and calls this to say which part failed.
    /// shared/tests/rules.rs holds the two to the same cases.
    pub fn refusal(&self, max_attempts: u32, now: UnixTime) -> Option<OtpRefusal> {
        if self.code_hash.is_none() {
            Some(OtpRefusal::NoCode)
        } else if self.used {
            Some(OtpRefusal::Used)
        } else if self.attempts >= max_attempts {
            Some(OtpRefusal::Exhausted)
        } else if self.expires_at <= now {
            Some(OtpRefusal::Expired)
        } else {
            None
        }
    }

    /// The sends of the last 24 hours before `now` (what the daily caps count), with who asked for each
    /// (`""` where the record did not say).
    pub fn recent_sends(&self, now: UnixTime) -> Sends {
        let mut sends = Sends::default();
        for (i, at) in self.sent_at.iter().enumerate().filter(|(_, t)| **t > now - DAY) {
            sends.at.push(*at);
            sends.from.push(self.sent_from.get(i).cloned().unwrap_or_default());
        }
        sends
    }

    /// The send history a new code that `source` asked for at `now` would leave (the last 24 hours' sends and
    /// this one), or why no code may go out yet: the resend cooldown since the last send, then the source's
    /// cap for this number, then the number's cap of codes per 24 hours.
    pub fn next_send(&self, limits: SendLimits, source: &str, now: UnixTime) -> Result<Sends, SendRefusal> {
        let since_last = now - self.last_sent_at;
        if self.last_sent_at > 0 && since_last < limits.cooldown_secs {
            return Err(SendRefusal::Cooldown { retry_after_secs: limits.cooldown_secs - since_last });
        }
        let mut sends = self.recent_sends(now);
        // When the oldest of `times` leaves the 24 hours.
        let retry = |times: &mut dyn Iterator<Item = UnixTime>| (times.min().unwrap_or(now) + DAY - now).max(1);
        let mine = || sends.at.iter().zip(&sends.from).filter(|(_, from)| *from == source).map(|(at, _)| *at);
        if mine().count() >= limits.per_source_per_day {
            return Err(SendRefusal::SourceCap { retry_after_secs: retry(&mut mine()) });
        }
        if sends.at.len() >= limits.per_day {
            return Err(SendRefusal::DailyCap { retry_after_secs: retry(&mut sends.at.iter().copied()) });
        }
        sends.at.push(now);
        sends.from.push(source.to_owned());
        Ok(sends)
    }
}

const DAY: i64 = 24 * 3600;

/// What is kept about a phone number once its account is deleted, under a keyed hash of the number (never the
/// number, nor the account): that the number has had its starter grant (the mark exists), and the send history
/// the resend cooldown and the daily cap count, so deleting the account and signing up again neither earns a
/// new grant nor resets the limits. docs/architecture.md, "Deleting an account is not a way to new credits",
/// says why a keyed hash of the number is kept and for how long.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NumberMark {
    #[serde(default)]
    pub last_sent_at: UnixTime,
    #[serde(default)]
    pub sent_at: Vec<UnixTime>,
    #[serde(default)]
    pub sent_from: Vec<String>,
    /// When it may be forgotten: [`NumberMark::RETENTION_SECS`] after the deletion.
    pub expires_at: UnixTime,
}

impl NumberMark {
    /// How long a deleted account's number is remembered: a year, so the delete-and-sign-up-again loop gets
    /// one starter grant a year per number instead of one per minute.
    pub const RETENTION_SECS: i64 = 365 * DAY;

    /// The mark an account deleted at `now` leaves, carrying the send history of its code record (if any).
    pub fn at_deletion(record: Option<&OtpRecord>, now: UnixTime) -> Self {
        let sends = record.map(|r| r.recent_sends(now)).unwrap_or_default();
        Self {
            last_sent_at: record.map_or(0, |r| r.last_sent_at),
            sent_at: sends.at,
            sent_from: sends.from,
            expires_at: now + Self::RETENTION_SECS,
        }
    }

    /// The code record a number with no record of its own starts from: no live code, the mark's history.
    pub fn seed(&self, phone: &str) -> OtpRecord {
        OtpRecord {
            last_sent_at: self.last_sent_at,
            sent_at: self.sent_at.clone(),
            sent_from: self.sent_from.clone(),
            ..OtpRecord::empty(phone)
        }
    }
}

/// Why a code cannot be tried (see [`OtpRecord::refusal`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtpRefusal {
    /// No code is live for the number.
    NoCode,
    /// The live code was already used to sign in.
    Used,
    /// The live code had all its attempts.
    Exhausted,
    Expired,
}

/// Why no code may be sent yet (see [`OtpRecord::next_send`]); either way, when to try again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendRefusal {
    /// The previous code went out less than the resend cooldown ago.
    Cooldown { retry_after_secs: i64 },
    /// The number had its codes for the last 24 hours; the retry is when the oldest of them leaves the window.
    DailyCap { retry_after_secs: i64 },
    /// This source had its codes to this number for the last 24 hours (others still may ask); the retry is
    /// when the oldest of the source's leaves the window.
    SourceCap { retry_after_secs: i64 },
}

impl SendRefusal {
    pub fn retry_after_secs(self) -> i64 {
        match self {
            Self::Cooldown { retry_after_secs }
            | Self::DailyCap { retry_after_secs }
            | Self::SourceCap { retry_after_secs } => retry_after_secs,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_six_digits_only() {
        assert_eq!(OtpCode::parse(" 123 456 ").unwrap().digits(), "123456");
        assert!(OtpCode::parse("12345").is_err());
        assert!(OtpCode::parse("1234567").is_err());
        assert!(OtpCode::parse("12345a").is_err());
        assert!(OtpCode::parse("١٢٣٤٥٦").is_err(), "non-ASCII digits are not accepted");
    }

    #[test]
    fn debug_hides_the_digits() {
        assert_eq!(format!("{:?}", OtpCode::parse("123456").unwrap()), "OtpCode(******)");
    }

    #[test]
    fn generated_codes_are_six_digits_and_vary() {
        let codes: std::collections::HashSet<String> =
            (0..200).map(|_| OtpCode::generate().unwrap().digits().to_owned()).collect();
        assert!(codes.iter().all(|c| OtpCode::parse(c).is_ok()));
        // 200 draws from 10^6 values: a repeat-heavy set would mean a broken generator.
        assert!(codes.len() > 190, "only {} distinct codes in 200 draws", codes.len());
    }

    fn live(attempts: u32, used: bool, expires_at: UnixTime) -> OtpRecord {
        OtpRecord {
            code_id: Some("c".into()),
            code_hash: Some("h".into()),
            attempts,
            used,
            expires_at,
            ..OtpRecord::empty("+14155550123")
        }
    }

    #[test]
    fn refusal_names_the_first_reason_in_order() {
        assert_eq!(OtpRecord::empty("+14155550123").refusal(5, 100), Some(OtpRefusal::NoCode));
        assert_eq!(live(0, false, 200).refusal(5, 100), None);
        assert_eq!(live(4, false, 200).refusal(5, 100), None, "the fifth attempt is allowed");
        assert_eq!(live(5, false, 200).refusal(5, 100), Some(OtpRefusal::Exhausted));
        assert_eq!(live(0, false, 100).refusal(5, 100), Some(OtpRefusal::Expired), "expiry is exclusive");
        assert_eq!(live(5, true, 50).refusal(5, 100), Some(OtpRefusal::Used), "used wins over exhausted and expired");
        assert_eq!(live(5, false, 50).refusal(5, 100), Some(OtpRefusal::Exhausted), "exhausted wins over expired");
    }

    const LIMITS: SendLimits = SendLimits { cooldown_secs: 60, per_day: 2, per_source_per_day: 2 };

    fn sends(at: &[UnixTime], from: &[&str]) -> Sends {
        Sends { at: at.to_vec(), from: from.iter().map(|s| s.to_string()).collect() }
    }

    fn sent(r: &mut OtpRecord, s: Sends) {
        r.last_sent_at = s.at.iter().copied().max().unwrap_or(0);
        (r.sent_at, r.sent_from) = (s.at, s.from);
    }

    #[test]
    fn next_send_keeps_the_cooldown_then_the_daily_cap() {
        let mut r = OtpRecord::empty("+14155550123");
        assert_eq!(r.next_send(LIMITS, "a", 1_000), Ok(sends(&[1_000], &["a"])), "a first send is always allowed");
        sent(&mut r, sends(&[1_000], &["a"]));
        assert_eq!(r.next_send(LIMITS, "b", 1_059), Err(SendRefusal::Cooldown { retry_after_secs: 1 }));
        assert_eq!(r.next_send(LIMITS, "b", 1_060), Ok(sends(&[1_000, 1_060], &["a", "b"])));
        sent(&mut r, sends(&[1_000, 1_060], &["a", "b"]));
        assert_eq!(
            r.next_send(LIMITS, "c", 2_000),
            Err(SendRefusal::DailyCap { retry_after_secs: 1_000 + DAY - 2_000 }),
            "the retry is when the oldest send leaves the 24 hours"
        );
        assert_eq!(
            r.next_send(LIMITS, "c", 1_000 + DAY),
            Ok(sends(&[1_060, 1_000 + DAY], &["b", "c"])),
            "old sends are pruned"
        );
    }

    #[test]
    fn one_source_uses_up_only_its_own_share_of_a_number() {
        let limits = SendLimits { cooldown_secs: 60, per_day: 5, per_source_per_day: 2 };
        let mut r = OtpRecord::empty("+14155550123");
        sent(&mut r, sends(&[1_000, 1_100], &["attacker", "attacker"]));
        assert_eq!(
            r.next_send(limits, "attacker", 2_000),
            Err(SendRefusal::SourceCap { retry_after_secs: 1_000 + DAY - 2_000 }),
            "the attacker had its two"
        );
        assert_eq!(
            r.next_send(limits, "owner", 2_000),
            Ok(sends(&[1_000, 1_100, 2_000], &["attacker", "attacker", "owner"]))
        );
        // Sends of a record older than sources count for the number, for no source.
        let mut old = OtpRecord::empty("+14155550123");
        (old.sent_at, old.last_sent_at) = (vec![1_000, 1_100, 1_200, 1_300, 1_400], 1_400);
        assert_eq!(
            old.next_send(limits, "owner", 2_000),
            Err(SendRefusal::DailyCap { retry_after_secs: 1_000 + DAY - 2_000 })
        );
        old.sent_at.truncate(2);
        assert_eq!(old.next_send(limits, "owner", 2_000), Ok(sends(&[1_000, 1_100, 2_000], &["", "", "owner"])));
    }

    proptest! {
        #[test]
        fn parse_accepts_exactly_the_six_digit_strings(s in "\\PC{0,10}") {
            let ok = OtpCode::parse(&s).is_ok();
            let compact: String = s.chars().filter(|c| *c != ' ').collect();
            prop_assert_eq!(ok, compact.len() == 6 && compact.bytes().all(|b| b.is_ascii_digit()));
        }
    }
}
