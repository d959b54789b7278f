//! Push notifications' settings.

use super::{ConfigError, Env};
use crate::adapters::apns::{PRODUCTION_URL, SANDBOX_URL};

/// Where pushes go, and with what key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushConfig {
    /// The APNs auth key's secret (`APNS_KEY_SECRET_ARN`); none: no pushes are sent.
    pub apns_key_secret_arn: Option<String>,
    /// The app's bundle id (`APNS_TOPIC`, by default `APP_STORE_BUNDLE_ID`).
    pub topic: String,
    /// APNs' hosts (`APNS_PRODUCTION_URL`, `APNS_SANDBOX_URL`): Apple's unless a test stage points them at a
    /// stand-in.
    pub production_url: String,
    pub sandbox_url: String,
}

impl PushConfig {
    pub fn from_env(env: &dyn Env, bundle_id: &str) -> Result<Self, ConfigError> {
        let url = |var: &'static str, default: &str| -> Result<String, ConfigError> {
            let value = env.var(var).filter(|v| !v.trim().is_empty()).unwrap_or_else(|| default.to_owned());
            match url::Url::parse(&value) {
                Ok(u) if matches!(u.scheme(), "https" | "http") => Ok(value),
                _ => Err(ConfigError::Invalid { var, reason: "must be an http(s) URL".to_owned() }),
            }
        };
        Ok(Self {
            apns_key_secret_arn: env.var("APNS_KEY_SECRET_ARN").filter(|v| !v.trim().is_empty()),
            topic: env.var("APNS_TOPIC").filter(|v| !v.trim().is_empty()).unwrap_or_else(|| bundle_id.to_owned()),
            production_url: url("APNS_PRODUCTION_URL", PRODUCTION_URL)?,
            sandbox_url: url("APNS_SANDBOX_URL", SANDBOX_URL)?,
        })
    }
}
