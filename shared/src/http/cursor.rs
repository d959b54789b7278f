//! Opaque pagination cursors: the position to continue after, as JSON, tagged with a MAC over the position and
//! the query it belongs to. A cursor that was edited, truncated or reused with other filters is refused with
//! 400 VALIDATION_ERROR instead of paging from a wrong place or failing inside a store.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use secrecy::ExposeSecret;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::ApiError;
use crate::crypto::{short_mac, short_mac_matches};
use crate::ports::{AppKeys, PortError};

/// Longest cursor accepted (a real one is well under 200 characters).
const MAX_LEN: usize = 512;

fn invalid() -> ApiError {
    ApiError::validation("cursor", "cursor is not valid for this request; start again without it")
}

/// Encodes `position` for the query described by `scope` (route and filters).
pub fn encode_cursor<T: Serialize>(keys: &AppKeys, scope: &str, position: &T) -> Result<String, ApiError> {
    let json = serde_json::to_string(position).map_err(|e| ApiError::internal(&e))?;
    let payload = URL_SAFE_NO_PAD.encode(json.as_bytes());
    let key = keys.cursor.first().ok_or_else(|| ApiError::internal(&PortError::internal("cursor", "no cursor key")))?;
    Ok(format!("{payload}.{}", short_mac(key.expose_secret(), &[scope, &payload])))
}

/// Decodes a cursor made by [`encode_cursor`] for the same `scope`.
pub fn decode_cursor<T: DeserializeOwned>(keys: &AppKeys, scope: &str, cursor: &str) -> Result<T, ApiError> {
    if cursor.len() > MAX_LEN {
        return Err(invalid());
    }
    let (payload, tag) = cursor.split_once('.').ok_or_else(invalid)?;
    if !keys.cursor.iter().any(|k| short_mac_matches(k.expose_secret(), &[scope, payload], tag)) {
        return Err(invalid());
    }
    let json = URL_SAFE_NO_PAD.decode(payload).map_err(|_| invalid())?;
    serde_json::from_slice(&json).map_err(|_| invalid())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::keys::keys_from_master;

    #[test]
    fn round_trips_and_refuses_tampering() {
        let keys = keys_from_master(b"master-key-for-cursor-tests-000000", None);
        let c = encode_cursor(&keys, "templates|all", &(10, "neon")).unwrap();
        assert_eq!(decode_cursor::<(i64, String)>(&keys, "templates|all", &c).unwrap(), (10, "neon".to_owned()));
        // Another query's cursor.
        assert!(decode_cursor::<(i64, String)>(&keys, "templates|cat=anime", &c).is_err());
        // Every single-character edit is caught.
        for i in 0..c.len() {
            let mut bytes = c.clone().into_bytes();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            let edited = String::from_utf8(bytes).unwrap();
            if edited != c {
                assert!(decode_cursor::<(i64, String)>(&keys, "templates|all", &edited).is_err(), "edit at {i}");
            }
        }
        for junk in ["", ".", "abc", "a.b", &"x".repeat(600)] {
            assert!(decode_cursor::<(i64, String)>(&keys, "templates|all", junk).is_err(), "{junk:?}");
        }
        // Another key (another stage) does not accept it; the previous key after a rotation does.
        let other = keys_from_master(b"another-master-key-for-cursor-tests", None);
        assert!(decode_cursor::<(i64, String)>(&other, "templates|all", &c).is_err());
        let rotated =
            keys_from_master(b"another-master-key-for-cursor-tests", Some(b"master-key-for-cursor-tests-000000"));
        assert!(decode_cursor::<(i64, String)>(&rotated, "templates|all", &c).is_ok());
    }
}
