use super::{InvalidValue, UnixTime, UserId};

/// A user as the services see it: profile and credit balance together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserAccount {
    pub id: UserId,
    pub phone: String,
    pub display_name: Option<String>,
    pub credits: u64,
    pub created_at: UnixTime,
    /// Refresh-token families created at or before this instant are revoked ("sign out everywhere").
    pub sessions_revoked_at: Option<UnixTime>,
    /// The keyed hash of the number its deletion leaves a mark under (`NumberMark`); `None` for an account
    /// created before marks were kept.
    pub number_key: Option<String>,
    /// The user agreed that the App Store may be told how much of a purchase was used when Apple asks
    /// (`CONSUMPTION_REQUEST`, Apple's `customerConsented`). Off until the user turns it on.
    pub consumption_consent: bool,
}

/// A display name: trimmed, 1–50 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayName(String);

impl DisplayName {
    pub const MAX_CHARS: usize = 50;

    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        let s = s.trim();
        if s.is_empty() {
            return Err(InvalidValue("displayName must not be empty (send null to clear it)"));
        }
        if s.chars().count() > Self::MAX_CHARS {
            return Err(InvalidValue("displayName must be at most 50 characters"));
        }
        if s.chars().any(char::is_control) {
            return Err(InvalidValue("displayName must not contain control characters"));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_name_rules() {
        assert_eq!(DisplayName::parse("  Ada ").unwrap().as_str(), "Ada");
        assert!(DisplayName::parse("   ").is_err());
        assert!(DisplayName::parse(&"é".repeat(50)).is_ok());
        assert!(DisplayName::parse(&"é".repeat(51)).is_err());
        assert!(DisplayName::parse("a\u{0007}b").is_err());
    }
}
