use std::collections::BTreeSet;
use std::str::FromStr;

use phonenumber::country::Id as CountryId;
use phonenumber::Mode;

/// A phone number validated by libphonenumber's metadata and held in E.164 form (`+14155550123`).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PhoneNumber {
    e164: String,
    region: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    #[error("phone must be in E.164 form (+14155550123), or a national number with a country")]
    Unparseable,
    #[error("country must be an ISO 3166 alpha-2 code such as US")]
    UnknownCountry,
    #[error("phone is not a valid number")]
    Invalid,
    #[error("phone numbers from this country are not supported")]
    CountryNotAllowed,
    /// Premium-rate, shared-cost and toll-free numbers: texts to them are how SMS pumping pays.
    #[error("phone must be a mobile or landline number (not premium-rate, shared-cost or toll-free)")]
    LineType,
}

impl PhoneNumber {
    /// Parses `input` in E.164 (`+14155550123`), or a national number when `country` (ISO 3166 alpha-2) is given.
    pub fn parse(input: &str, country: Option<&str>) -> Result<Self, PhoneError> {
        let input = input.trim();
        if input.is_empty() || input.len() > 32 {
            return Err(PhoneError::Unparseable);
        }
        let country = match country.map(str::trim).filter(|c| !c.is_empty()) {
            Some(c) => Some(CountryId::from_str(&c.to_ascii_uppercase()).map_err(|_| PhoneError::UnknownCountry)?),
            None if input.starts_with('+') => None,
            None => return Err(PhoneError::Unparseable),
        };
        let parsed = phonenumber::parse(country, input).map_err(|_| PhoneError::Unparseable)?;
        if !phonenumber::is_valid(&parsed) {
            return Err(PhoneError::Invalid);
        }
        // SMS pumping texts numbers whose owner is paid per message; no person signs in with one.
        use phonenumber::Type;
        if let Type::PremiumRate | Type::SharedCost | Type::TollFree =
            parsed.number_type(&phonenumber::metadata::DATABASE)
        {
            return Err(PhoneError::LineType);
        }
        let e164 = parsed.format().mode(Mode::E164).to_string();
        let region = parsed.country().id().map(|id| id.as_ref().to_owned());
        Ok(Self { e164, region })
    }

    /// Rebuilds a number that was stored in E.164 form.
    pub fn from_e164(e164: &str) -> Result<Self, PhoneError> {
        Self::parse(e164, None)
    }

    pub fn e164(&self) -> &str {
        &self.e164
    }

    /// The ISO 3166 alpha-2 region the number belongs to, when libphonenumber can tell.
    pub fn region(&self) -> Option<&str> {
        self.region.as_deref()
    }

    /// The number as shown to users and written to logs: country code and last four digits only
    /// (`+1•••••0123`).
    pub fn masked(&self) -> String {
        mask_e164(&self.e164)
    }
}

/// Masks an E.164 string: keeps the `+`, the first one or two digits of the country code and up to the last
/// four digits, never more than half of the digits in all.
pub fn mask_e164(e164: &str) -> String {
    let digits: Vec<char> = e164.chars().filter(char::is_ascii_digit).collect();
    if digits.len() < 8 {
        return "+•••".to_owned();
    }
    let keep_head = if digits[0] == '1' || digits[0] == '7' { 1 } else { 2 };
    let keep_tail = 4.min(digits.len() / 2 - keep_head);
    let head: String = digits[..keep_head].iter().collect();
    let tail: String = digits[digits.len() - keep_tail..].iter().collect();
    let hidden = digits.len() - keep_head - keep_tail;
    format!("+{head}{}{tail}", "•".repeat(hidden))
}

// Debug masks the number so a stray `?` in a log line cannot leak it.
impl std::fmt::Debug for PhoneNumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PhoneNumber({})", self.masked())
    }
}

/// The countries whose numbers may sign in (SMS pumping to premium destinations is the fraud this stops).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CountryAllowlist(BTreeSet<String>);

impl CountryAllowlist {
    /// Every country (local development).
    pub fn any() -> Self {
        Self(BTreeSet::from(["*".to_owned()]))
    }

    /// Parses a comma-separated list of ISO 3166 alpha-2 codes (`US,CA,GB`). `*` allows every country.
    pub fn parse(list: &str) -> Result<Self, String> {
        let mut set = BTreeSet::new();
        for code in list.split(',').map(str::trim).filter(|c| !c.is_empty()) {
            let code = code.to_ascii_uppercase();
            if code != "*" && CountryId::from_str(&code).is_err() {
                return Err(format!("`{code}` is not an ISO 3166 alpha-2 country code"));
            }
            set.insert(code);
        }
        if set.is_empty() {
            return Err("the list is empty".to_owned());
        }
        Ok(Self(set))
    }

    pub fn allows(&self, phone: &PhoneNumber) -> bool {
        self.0.contains("*") || phone.region().is_some_and(|r| self.0.contains(r))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_e164_and_national_with_country() {
        let a = PhoneNumber::parse("+14155550123", None).unwrap();
        let b = PhoneNumber::parse("(415) 555-0123", Some("us")).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.e164(), "+14155550123");
        assert_eq!(a.region(), Some("US"));
        let uk = PhoneNumber::parse("07400 123456", Some("GB")).unwrap();
        assert_eq!(uk.e164(), "+447400123456");
    }

    #[test]
    fn rejects_bad_numbers_with_specific_errors() {
        assert_eq!(PhoneNumber::parse("4155550123", None), Err(PhoneError::Unparseable));
        assert_eq!(PhoneNumber::parse("", None), Err(PhoneError::Unparseable));
        assert_eq!(PhoneNumber::parse("+1415", None), Err(PhoneError::Invalid));
        assert_eq!(PhoneNumber::parse("415", Some("ZZ")), Err(PhoneError::UnknownCountry));
        assert_eq!(PhoneNumber::parse("hello", Some("US")), Err(PhoneError::Unparseable));
        // Line types that earn their owner money per text (libphonenumber's metadata).
        assert_eq!(PhoneNumber::parse("+18007233456", None), Err(PhoneError::LineType), "US toll-free");
        assert_eq!(PhoneNumber::parse("+80012340000", None), Err(PhoneError::LineType), "international freephone");
        assert_eq!(PhoneNumber::parse("+611900123456", None), Err(PhoneError::LineType), "AU premium rate");
        assert_eq!(PhoneNumber::parse("+448431234567", None), Err(PhoneError::LineType), "GB shared cost");
        assert!(PhoneNumber::parse("+61406823897", None).is_ok(), "AU mobile");
        assert!(PhoneNumber::parse("+441212345678", None).is_ok(), "GB landline");
    }

    #[test]
    fn masks_all_but_country_code_and_last_four() {
        let p = PhoneNumber::parse("+14155550123", None).unwrap();
        assert_eq!(p.masked(), "+1••••••0123");
        assert_eq!(format!("{p:?}"), "PhoneNumber(+1••••••0123)");
        let fr = PhoneNumber::parse("+33612345678", None).unwrap();
        assert_eq!(fr.masked(), "+33••••••678");
    }

    #[test]
    fn allowlist_filters_by_region() {
        let list = CountryAllowlist::parse("US, gb").unwrap();
        assert!(list.allows(&PhoneNumber::parse("+14155550123", None).unwrap()));
        assert!(list.allows(&PhoneNumber::parse("+447400123456", None).unwrap()));
        assert!(!list.allows(&PhoneNumber::parse("+33612345678", None).unwrap()));
        assert!(CountryAllowlist::parse("US,XX").is_err());
        assert!(CountryAllowlist::parse(" ").is_err());
        assert!(CountryAllowlist::parse("*").unwrap().allows(&PhoneNumber::parse("+33612345678", None).unwrap()));
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in "\\PC{0,40}", c in proptest::option::of("[A-Za-z]{0,3}")) {
            let _ = PhoneNumber::parse(&s, c.as_deref());
        }

        #[test]
        fn masked_never_shows_more_than_half_the_digits(s in "\\+[1-9][0-9]{7,14}") {
            let masked = mask_e164(&s);
            let shown = masked.chars().filter(char::is_ascii_digit).count();
            let total = s.chars().filter(char::is_ascii_digit).count();
            prop_assert!(shown * 2 <= total, "{masked} shows {shown} of {total}");
        }
    }
}
