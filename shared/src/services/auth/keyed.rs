//! The keyed hashes (HMAC-SHA256 under keys derived from the app secret) that sign-in stores instead of
//! codes, source addresses and phone numbers.

use secrecy::ExposeSecret;

use crate::crypto;
use crate::domain::{OtpCode, PhoneNumber};
use crate::ports::{AppKeys, PortError};

/// The keyed hash a code is stored under (with the current key). The code id is mixed in so equal codes hash
/// differently.
pub fn hash_code(keys: &AppKeys, phone: &PhoneNumber, code_id: &str, code: &OtpCode) -> Result<String, PortError> {
    let key = keys.otp.first().ok_or_else(|| PortError::internal("app secret", "no code key"))?;
    Ok(crypto::hmac_b64(key.expose_secret(), &[phone.e164(), code_id, code.digits()]))
}

/// Who asked for a code, as the per-source cap counts it: a keyed hash (16 characters, current code key) of
/// the source address, an IPv6 address by its /64 (one subscriber's network: the rest of it is free to
/// change), so the record keeps no address.
pub fn source_key(keys: &AppKeys, source_ip: Option<&str>) -> String {
    let source = match source_ip.map(str::parse::<std::net::IpAddr>) {
        Some(Ok(std::net::IpAddr::V6(v6))) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
        Some(Ok(v4)) => v4.to_string(),
        Some(Err(_)) | None => "unknown".to_owned(),
    };
    short_tag(keys, &["send-source", &source])
}

/// A 16-character keyed hash of `parts` under the current code key: enough to tell requesters apart, and no
/// address or User-Agent kept.
fn short_tag(keys: &AppKeys, parts: &[&str]) -> String {
    let key = keys.otp.first().map(|k| k.expose_secret()).unwrap_or_default();
    let mut tag = crypto::hmac_b64(key, parts);
    tag.truncate(16);
    tag
}

/// The keyed hashes of `phone` a deleted account's mark may be under, one per app key, the current first
/// (the first is what a new account stores for its own deletion).
pub fn number_keys(keys: &AppKeys, phone: &PhoneNumber) -> Vec<String> {
    keys.number.iter().map(|key| crypto::hmac_b64(key.expose_secret(), &["number-mark", phone.e164()])).collect()
}

/// Whether `code` is the one stored as `stored`, under any of the code keys (constant-time per key).
pub fn code_matches(keys: &AppKeys, phone: &PhoneNumber, code_id: &str, code: &OtpCode, stored: &str) -> bool {
    let parts = [phone.e164(), code_id, code.digits()];
    keys.otp.iter().any(|key| crypto::hmac_matches(key.expose_secret(), &parts, stored))
}

/// Which client made a request, as a refresh token's rotation records it: a keyed hash (16 characters) of
/// the source address and the User-Agent, so the record keeps neither.
pub fn client_key(keys: &AppKeys, source_ip: Option<&str>, user_agent: Option<&str>) -> String {
    short_tag(keys, &["refresh-client", source_ip.unwrap_or("unknown"), user_agent.unwrap_or("unknown")])
}
