use serde::{Deserialize, Serialize};

use super::InvalidValue;

/// A new opaque, time-sortable id (ULID, 26 characters of Crockford base32). Monotonic within a process:
/// ids made in the same millisecond still sort in the order they were made (ledger entries rely on it).
pub fn new_id() -> String {
    static GENERATOR: std::sync::Mutex<ulid::Generator> = std::sync::Mutex::new(ulid::Generator::new());
    let mut generator = GENERATOR.lock().unwrap_or_else(|e| e.into_inner());
    // Overflow needs 2^80 ids in one millisecond; fall back to a fresh random id rather than fail.
    generator.generate().unwrap_or_else(|_| ulid::Ulid::new()).to_string()
}

/// A user's id: a ULID, minted once at first sign-in and carried as the access token's `sub`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UserId(String);

impl UserId {
    pub fn new() -> Self {
        Self(new_id())
    }

    /// The id the user's anonymised ledger is kept under after account deletion: derived (so a re-run finds
    /// the same one) by a one-way hash, with no way back to this id.
    pub fn anonymised(&self) -> Self {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, format!("anon|{}", self.0).as_bytes());
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest.as_ref()[..16]);
        Self(ulid::Ulid::from_bytes(bytes).to_string())
    }

    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        ulid::Ulid::from_string(s).map(|u| Self(u.to_string())).map_err(|_| InvalidValue("not a valid user id"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The same 128 bits as a UUID: what the app sets as StoreKit's `appAccountToken` when it buys, so a
    /// signed transaction names the account it was bought for.
    pub fn app_account_token(&self) -> uuid::Uuid {
        uuid::Uuid::from_u128(ulid::Ulid::from_string(&self.0).map_or(0, |u| u.0))
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

/// The key of an account's deletion tombstone: a hash of the id, so the tombstone itself names no one. Both
/// stores key the tombstone by it (memory's map, DynamoDB's `DELETED#<key>` item).
pub fn deletion_key(id: &UserId) -> String {
    crate::crypto::sha256_b64(format!("deleted|{id}").as_bytes())
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

#[cfg(test)]
mod account_token_tests {
    use super::*;

    #[test]
    fn ids_made_in_a_row_sort_in_order() {
        let ids: Vec<String> = (0..1000).map(|_| new_id()).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted);
    }

    #[test]
    fn app_account_token_is_the_user_id_as_a_uuid() {
        let id = UserId::parse("01ARZ3NDEKTSV4RRFFQ69G5FAV").unwrap();
        let token = id.app_account_token();
        assert_eq!(token.as_u128(), ulid::Ulid::from_string(id.as_str()).unwrap().0);
        assert_ne!(UserId::new().app_account_token(), UserId::new().app_account_token());
    }
}
