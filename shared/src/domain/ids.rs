use serde::{Deserialize, Serialize};

use super::InvalidValue;

/// A new opaque, time-sortable id (ULID, 26 characters of Crockford base32).
pub fn new_id() -> String {
    ulid::Ulid::new().to_string()
}

/// A user's id: a ULID, minted once at first sign-in and carried as the access token's `sub`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UserId(String);

impl UserId {
    pub fn new() -> Self {
        Self(new_id())
    }

    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        ulid::Ulid::from_string(s).map(|u| Self(u.to_string())).map_err(|_| InvalidValue("not a valid user id"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for UserId {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Display for UserId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_garbage() {
        let id = UserId::new();
        assert_eq!(UserId::parse(id.as_str()), Ok(id.clone()));
        assert_eq!(id.as_str().len(), 26);
        assert!(UserId::parse("not-a-ulid").is_err());
        assert!(UserId::parse("").is_err());
    }
}
