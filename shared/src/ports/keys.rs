//! The server's signing keys.

use std::sync::Arc;

use async_trait::async_trait;
use secrecy::SecretSlice;

use super::PortError;

/// The server's key material, fetched once per container (from Secrets Manager when deployed).
#[derive(Clone)]
pub struct AppKeys {
    /// Access-token signing keys, the current one first. Tokens are signed with the first and verified with
    /// any, which is how the signing key rotates without signing everyone out.
    pub access: Vec<SigningKey>,
    /// Keys of the HMAC that one-time codes are stored under, the current one first (codes are hashed with it
    /// and checked against each, so a code texted just before a rotation still signs in).
    pub otp: Vec<SecretSlice<u8>>,
    /// Keys of the MAC on pagination cursors, the current one first (a cursor issued before a key rotation
    /// stays good).
    pub cursor: Vec<SecretSlice<u8>>,
    /// Keys of the HMAC a phone number's mark is kept under after its account is deleted (`NumberMark`), the
    /// current one first (a mark written before a rotation is still found; once its key is retired, so is
    /// the mark).
    pub number: Vec<SecretSlice<u8>>,
}

#[derive(Clone)]
pub struct SigningKey {
    /// Short public id of the key, carried in the token header.
    pub kid: String,
    pub secret: SecretSlice<u8>,
}

impl std::fmt::Debug for AppKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kids: Vec<&str> = self.access.iter().map(|k| k.kid.as_str()).collect();
        f.debug_struct("AppKeys").field("access_kids", &kids).finish_non_exhaustive()
    }
}

#[async_trait]
pub trait KeyProvider: Send + Sync {
    async fn keys(&self) -> Result<Arc<AppKeys>, PortError>;
}
