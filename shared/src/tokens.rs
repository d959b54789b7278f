//! Access tokens: JWT HS256 with a key derived from the Secrets Manager secret. Verification pins the
//! algorithm, requires and checks `iss`, `aud`, `exp`, `sub` and `typ`. Refresh tokens are opaque random
//! values (see `services::auth`), so they can never pass as access tokens.

use jsonwebtoken::{decode, decode_header, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

use crate::domain::{new_id, UnixTime, UserId};
use crate::ports::AppKeys;

const ACCESS_TYPE: &str = "access";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AccessClaims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    pub typ: String,
    pub iat: UnixTime,
    pub exp: UnixTime,
    pub jti: String,
}

/// Issues and verifies access tokens for one issuer/audience pair.
#[derive(Debug, Clone)]
pub struct AccessTokens {
    pub issuer: String,
    pub audience: String,
    pub ttl_secs: i64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("the token is not valid")]
    Invalid,
    #[error("the server has no signing key")]
    NoKey,
    #[error("the token could not be signed")]
    Signing,
}

impl AccessTokens {
    pub fn for_policy(policy: &crate::config::AuthPolicy) -> Self {
        Self { issuer: policy.issuer.clone(), audience: policy.audience.clone(), ttl_secs: policy.access_ttl_secs }
    }

    /// A signed access token for `user`, valid for `ttl_secs` from `now`.
    pub fn issue(&self, keys: &AppKeys, user: &UserId, now: UnixTime) -> Result<String, TokenError> {
        let key = keys.access.first().ok_or(TokenError::NoKey)?;
        let claims = AccessClaims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: user.as_str().to_owned(),
            typ: ACCESS_TYPE.to_owned(),
            iat: now,
            exp: now + self.ttl_secs,
            jti: new_id(),
        };
        self.sign(keys, &key.kid, &claims)
    }

    /// Signs arbitrary claims with the key `kid` (tests use it to forge expired or mistyped tokens).
    pub fn sign(&self, keys: &AppKeys, kid: &str, claims: &AccessClaims) -> Result<String, TokenError> {
        let key = keys.access.iter().find(|k| k.kid == kid).ok_or(TokenError::NoKey)?;
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(key.kid.clone());
        encode(&header, claims, &EncodingKey::from_secret(key.secret.expose_secret())).map_err(|_| TokenError::Signing)
    }

    /// Verifies signature (HS256 only), issuer, audience, expiry and type; returns the user.
    pub fn verify(&self, keys: &AppKeys, token: &str) -> Result<(UserId, AccessClaims), TokenError> {
        let header = decode_header(token).map_err(|_| TokenError::Invalid)?;
        if header.alg != Algorithm::HS256 {
            return Err(TokenError::Invalid);
        }
        let kid = header.kid.ok_or(TokenError::Invalid)?;
        let key = keys.access.iter().find(|k| k.kid == kid).ok_or(TokenError::Invalid)?;
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 5;
        let data = decode::<AccessClaims>(token, &DecodingKey::from_secret(key.secret.expose_secret()), &validation)
            .map_err(|_| TokenError::Invalid)?;
        if data.claims.typ != ACCESS_TYPE {
            return Err(TokenError::Invalid);
        }
        let user = UserId::parse(&data.claims.sub).map_err(|_| TokenError::Invalid)?;
        Ok((user, data.claims))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::keys::keys_from_master;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;

    fn tokens() -> AccessTokens {
        AccessTokens { issuer: "facemake-test".into(), audience: "facemake-ios".into(), ttl_secs: 900 }
    }

    fn now() -> UnixTime {
        crate::ports::Clock::now(&crate::ports::SystemClock)
    }

    #[test]
    fn issued_tokens_verify_and_carry_every_claim() {
        let keys = keys_from_master(b"master-secret-of-at-least-32-bytes!!", None);
        let user = UserId::new();
        let t = tokens().issue(&keys, &user, now()).unwrap();
        let (who, claims) = tokens().verify(&keys, &t).unwrap();
        assert_eq!(who, user);
        assert_eq!(claims.exp - claims.iat, 900);
        assert_eq!(claims.typ, "access");
        assert_eq!(claims.jti.len(), 26);
    }

    #[test]
    fn rejects_tampered_expired_misaddressed_and_unsigned_tokens() {
        let keys = keys_from_master(b"master-secret-of-at-least-32-bytes!!", None);
        let kid = keys.access[0].kid.clone();
        let user = UserId::new();
        let good = tokens().issue(&keys, &user, now()).unwrap();

        // Tampered payload: flip the subject.
        let parts: Vec<&str> = good.split('.').collect();
        let mut claims: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        claims["sub"] = UserId::new().to_string().into();
        let forged = format!("{}.{}.{}", parts[0], URL_SAFE_NO_PAD.encode(claims.to_string()), parts[2]);
        assert_eq!(tokens().verify(&keys, &forged), Err(TokenError::Invalid));

        // Expired.
        let base = tokens().verify(&keys, &good).unwrap().1;
        let expired = AccessClaims { iat: now() - 3600, exp: now() - 60, ..base.clone() };
        assert_eq!(tokens().verify(&keys, &tokens().sign(&keys, &kid, &expired).unwrap()), Err(TokenError::Invalid));

        // Wrong audience, wrong issuer, wrong type.
        for bad in [
            AccessClaims { aud: "someone-else".into(), ..base.clone() },
            AccessClaims { iss: "facemake-prod".into(), ..base.clone() },
            AccessClaims { typ: "refresh".into(), ..base.clone() },
        ] {
            assert_eq!(tokens().verify(&keys, &tokens().sign(&keys, &kid, &bad).unwrap()), Err(TokenError::Invalid));
        }

        // alg=none with the same claims and no signature.
        let none_header = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"none","typ":"JWT","kid":"{kid}"}}"#));
        let unsigned = format!("{none_header}.{}.", parts[1]);
        assert_eq!(tokens().verify(&keys, &unsigned), Err(TokenError::Invalid));

        // Signed with another key (same kid claimed).
        let other = keys_from_master(b"another-master-secret-32-bytes-long!", None);
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(kid.clone());
        let foreign =
            encode(&header, &base, &EncodingKey::from_secret(other.access[0].secret.expose_secret())).unwrap();
        assert_eq!(tokens().verify(&keys, &foreign), Err(TokenError::Invalid));

        // Garbage and an opaque refresh-token-shaped string.
        assert_eq!(tokens().verify(&keys, "not.a.jwt"), Err(TokenError::Invalid));
        assert_eq!(tokens().verify(&keys, &crate::crypto::random_token().unwrap()), Err(TokenError::Invalid));
    }

    #[test]
    fn tokens_signed_before_a_key_rotation_still_verify() {
        let old = keys_from_master(b"old-master-secret-of-32-bytes-long!!", None);
        let rotated =
            keys_from_master(b"new-master-secret-of-32-bytes-long!!", Some(b"old-master-secret-of-32-bytes-long!!"));
        let user = UserId::new();
        let before = tokens().issue(&old, &user, now()).unwrap();
        assert_eq!(tokens().verify(&rotated, &before).unwrap().0, user);
        let after = tokens().issue(&rotated, &user, now()).unwrap();
        assert_ne!(rotated.access[0].kid, old.access[0].kid);
        assert_eq!(tokens().verify(&rotated, &after).unwrap().0, user);
        assert_eq!(tokens().verify(&old, &after), Err(TokenError::Invalid));
    }
}
