//! A device that receives push notifications: its APNs token, the APNs environment it was issued for, and
//! the user who registered it last.

use super::{InvalidValue, UnixTime, UserId};

/// An APNs device token as the app reports it: hexadecimal, kept lowercase. Apple says not to rely on its
/// length (32 bytes today), so 16–100 bytes are accepted.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct DeviceToken(String);

impl DeviceToken {
    pub const MIN_BYTES: usize = 16;
    pub const MAX_BYTES: usize = 100;

    pub fn parse(value: &str) -> Result<Self, InvalidValue> {
        let len = value.len();
        if !(Self::MIN_BYTES * 2..=Self::MAX_BYTES * 2).contains(&len) || len % 2 != 0 {
            return Err(InvalidValue("must be an APNs device token: 32 to 200 hexadecimal digits, an even number"));
        }
        if !value.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(InvalidValue("must be an APNs device token: hexadecimal digits only"));
        }
        Ok(Self(value.to_ascii_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first 8 digits, for logs (a token addresses one device: logs never hold a whole one).
    pub fn masked(&self) -> String {
        format!("{}…", self.0.get(..8).unwrap_or_default())
    }
}

impl std::fmt::Display for DeviceToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which APNs a token belongs to: a development build's tokens are the sandbox's, a TestFlight or App Store
/// build's the production one's. A token sent to the other is refused (`BadDeviceToken`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PushEnvironment {
    Sandbox,
    Production,
}

impl PushEnvironment {
    pub fn parse(value: &str) -> Result<Self, InvalidValue> {
        match value {
            "sandbox" => Ok(Self::Sandbox),
            "production" => Ok(Self::Production),
            _ => Err(InvalidValue("must be sandbox or production")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sandbox => "sandbox",
            Self::Production => "production",
        }
    }
}

/// A registered device.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Device {
    pub token: DeviceToken,
    pub user_id: UserId,
    pub environment: PushEnvironment,
    /// When it was last registered (the app registers at every launch).
    pub registered_at: UnixTime,
}

impl Device {
    /// How long a registration lasts without being renewed: a device whose app is gone stops being pushed
    /// to even when APNs never gets the chance to say so.
    pub const LIFETIME_SECS: i64 = 180 * 24 * 3600;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_even_length_hex_within_bounds_and_kept_lowercase() {
        let token = "AB".repeat(32);
        assert_eq!(DeviceToken::parse(&token).unwrap().as_str(), "ab".repeat(32));
        assert!(DeviceToken::parse(&"0f".repeat(16)).is_ok());
        assert!(DeviceToken::parse(&"0f".repeat(100)).is_ok());
        for bad in ["", "0f", &"0f".repeat(15), &"0f".repeat(101), &format!("{}a", "0f".repeat(20)), &"zz".repeat(32)] {
            assert!(DeviceToken::parse(bad).is_err(), "{bad}");
        }
        assert!(DeviceToken::parse(&format!("{}/..", "0f".repeat(20))).is_err());
    }

    #[test]
    fn a_masked_token_keeps_eight_digits() {
        let token = DeviceToken::parse(&"a1".repeat(32)).unwrap();
        assert_eq!(token.masked(), "a1a1a1a1…");
        assert!(!token.masked().contains(&"a1".repeat(5)));
    }

    #[test]
    fn environments_are_the_two_lowercase_names() {
        assert_eq!(PushEnvironment::parse("sandbox"), Ok(PushEnvironment::Sandbox));
        assert_eq!(PushEnvironment::parse("production"), Ok(PushEnvironment::Production));
        for bad in ["Sandbox", "development", ""] {
            assert!(PushEnvironment::parse(bad).is_err());
        }
        assert_eq!(serde_json::to_string(&PushEnvironment::Production).unwrap(), "\"production\"");
    }
}
