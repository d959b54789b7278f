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
        }
    }

    /// When the record may be forgotten: after the code expires and the daily window has passed.
    pub fn ttl(&self) -> UnixTime {
        let last = self.sent_at.iter().copied().max().unwrap_or(self.last_sent_at);
        self.expires_at.max(last + 24 * 3600) + 3600
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

    proptest! {
        #[test]
        fn parse_accepts_exactly_the_six_digit_strings(s in "\\PC{0,10}") {
            let ok = OtpCode::parse(&s).is_ok();
            let compact: String = s.chars().filter(|c| *c != ' ').collect();
            prop_assert_eq!(ok, compact.len() == 6 && compact.bytes().all(|b| b.is_ascii_digit()));
        }
    }
}
