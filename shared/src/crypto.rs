//! Small, audited primitives from aws-lc-rs (the same library rustls uses here): randomness, SHA-256, HMAC,
//! HKDF and constant-time comparison. Nothing here is hand-rolled cryptography.

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::{constant_time, digest, hkdf, hmac};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;

#[derive(Debug, thiserror::Error)]
#[error("the system random number generator failed")]
pub struct CryptoError;

/// `N` bytes from the operating system's CSPRNG.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], CryptoError> {
    let mut buf = [0u8; N];
    SystemRandom::new().fill(&mut buf).map_err(|_| CryptoError)?;
    Ok(buf)
}

/// A 256-bit random token, base64url without padding (43 characters).
pub fn random_token() -> Result<String, CryptoError> {
    Ok(URL_SAFE_NO_PAD.encode(random_bytes::<32>()?))
}

/// SHA-256 of `data`, base64url without padding. Used to store high-entropy tokens (refresh tokens): a
/// database leak then yields nothing usable.
pub fn sha256_b64(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, data))
}

/// HMAC-SHA256 of `parts` joined by `\x1f`, base64. Used for low-entropy secrets (6-digit codes), where an
/// unkeyed hash could be brute-forced from a database copy.
pub fn hmac_b64(key: &[u8], parts: &[&str]) -> String {
    STANDARD.encode(hmac_raw(key, parts))
}

fn hmac_raw(key: &[u8], parts: &[&str]) -> hmac::Tag {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    let mut ctx = hmac::Context::with_key(&key);
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            ctx.update(b"\x1f");
        }
        ctx.update(part.as_bytes());
    }
    ctx.sign()
}

/// Checks `expected_b64` against the HMAC of `parts` in constant time.
pub fn hmac_matches(key: &[u8], parts: &[&str], expected_b64: &str) -> bool {
    let Ok(expected) = STANDARD.decode(expected_b64) else {
        return false;
    };
    let actual = hmac_raw(key, parts);
    constant_time::verify_slices_are_equal(actual.as_ref(), &expected).is_ok()
}

/// A 128-bit HMAC-SHA256 tag of `parts`, base64url without padding: short enough for a URL, long enough that
/// forging one is hopeless. Used to make opaque pagination cursors tamper-evident.
pub fn short_mac(key: &[u8], parts: &[&str]) -> String {
    URL_SAFE_NO_PAD.encode(&hmac_raw(key, parts).as_ref()[..16])
}

/// Checks a [`short_mac`] tag in constant time.
pub fn short_mac_matches(key: &[u8], parts: &[&str], tag: &str) -> bool {
    let Ok(tag) = URL_SAFE_NO_PAD.decode(tag) else {
        return false;
    };
    constant_time::verify_slices_are_equal(&hmac_raw(key, parts).as_ref()[..16], &tag).is_ok()
}

/// Derives a 32-byte subkey for one purpose from the master secret (HKDF-SHA256), so one stored secret can
/// key several independent uses.
pub fn derive_key(master: &[u8], purpose: &str) -> [u8; 32] {
    struct Len32;
    impl hkdf::KeyType for Len32 {
        fn len(&self) -> usize {
            32
        }
    }
    let mut out = [0u8; 32];
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"facemake/v1").extract(master);
    let info = [purpose.as_bytes()];
    // Expanding 32 bytes from SHA-256 cannot fail (the limit is 255 * 32); fall back to zeroes never happens.
    if let Ok(okm) = prk.expand(&info, Len32) {
        let _ = okm.fill(&mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_only_the_same_input_and_key() {
        let tag = hmac_b64(b"k1", &["+14155550123", "id", "123456"]);
        assert!(hmac_matches(b"k1", &["+14155550123", "id", "123456"], &tag));
        assert!(!hmac_matches(b"k2", &["+14155550123", "id", "123456"], &tag));
        assert!(!hmac_matches(b"k1", &["+14155550123", "id", "123457"], &tag));
        // The separator keeps ("ab","c") and ("a","bc") apart.
        assert_ne!(hmac_b64(b"k", &["ab", "c"]), hmac_b64(b"k", &["a", "bc"]));
        assert!(!hmac_matches(b"k1", &["x"], "not base64!"));
    }

    #[test]
    fn derived_keys_differ_by_purpose_and_master() {
        let a = derive_key(b"master", "access-token");
        assert_ne!(a, derive_key(b"master", "otp"));
        assert_ne!(a, derive_key(b"other", "access-token"));
        assert_eq!(a, derive_key(b"master", "access-token"));
        assert_ne!(a, [0u8; 32]);
    }

    #[test]
    fn tokens_are_256_bit_and_distinct() {
        let t = random_token().unwrap();
        assert_eq!(t.len(), 43);
        assert_ne!(t, random_token().unwrap());
        assert_eq!(sha256_b64(b"abc").len(), 43);
    }
}
