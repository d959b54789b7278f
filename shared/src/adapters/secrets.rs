//! Secrets Manager: one secret read on first use and cached per container, refreshed in the background of
//! requests. The signing keys (adapters/keys.rs), the Twilio credentials (adapters/sms.rs) and the provider
//! keys (adapters/providers/) all come through [`CachedSecret`].

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};

use crate::ports::PortError;

/// Reads one secret's string from Secrets Manager.
pub async fn fetch_secret_string(
    client: &aws_sdk_secretsmanager::Client,
    arn: &str,
    what: &'static str,
) -> Result<SecretString, PortError> {
    let out =
        client.get_secret_value().secret_id(arn).send().await.map_err(|e| {
            PortError::unavailable(what, aws_sdk_secretsmanager::error::DisplayErrorContext(e).to_string())
        })?;
    out.secret_string()
        .map(|s| SecretString::from(s.to_owned()))
        .ok_or_else(|| PortError::internal(what, "secret has no string value"))
}

/// How long a container uses a secret before reading it again: a changed secret (a rotated signing key,
/// new provider keys) reaches warm containers within this.
pub const SECRET_REFRESH: Duration = Duration::from_secs(300);
/// After a failed refresh, how long the container keeps what it has before trying again.
const SECRET_RETRY: Duration = Duration::from_secs(30);
/// The longest a read of a secret may take.
const SECRET_FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// One secret from Secrets Manager, parsed: fetched on first use (no network call at init; concurrent first
/// requests share one fetch), then read again every [`SECRET_REFRESH`]. A refresh is made by one request
/// while the others go on with the value they have, and a failed one keeps that value (Secrets Manager
/// being down does not break a warm container); only a container that never got the secret fails.
pub struct CachedSecret<T> {
    client: aws_sdk_secretsmanager::Client,
    arn: String,
    what: &'static str,
    parse: fn(&str) -> Result<T, PortError>,
    refresh_after: Duration,
    /// The value and when it is due for a refresh.
    value: RwLock<Option<(Arc<T>, Instant)>>,
    fetching: tokio::sync::Mutex<()>,
}

impl<T: Send + Sync> CachedSecret<T> {
    pub fn new(
        client: aws_sdk_secretsmanager::Client,
        arn: impl Into<String>,
        what: &'static str,
        parse: fn(&str) -> Result<T, PortError>,
    ) -> Self {
        Self {
            client,
            arn: arn.into(),
            what,
            parse,
            refresh_after: SECRET_REFRESH,
            value: RwLock::new(None),
            fetching: tokio::sync::Mutex::new(()),
        }
    }

    /// The refresh period (tests shorten it).
    pub fn with_refresh_after(mut self, period: Duration) -> Self {
        self.refresh_after = period;
        self
    }

    fn cached(&self) -> Option<(Arc<T>, Instant)> {
        self.value.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn store(&self, value: Arc<T>, due: Instant) {
        *self.value.write().unwrap_or_else(|p| p.into_inner()) = Some((value, due));
    }

    async fn fetch(&self) -> Result<Arc<T>, PortError> {
        // The SDK sets a connect timeout only: a read that hangs must not hold the refresh (and its request).
        let json = tokio::time::timeout(SECRET_FETCH_TIMEOUT, fetch_secret_string(&self.client, &self.arn, self.what))
            .await
            .map_err(|_| PortError::unavailable(self.what, "Secrets Manager did not answer in time"))??;
        let value = Arc::new((self.parse)(json.expose_secret())?);
        self.store(value.clone(), Instant::now() + self.refresh_after);
        Ok(value)
    }

    pub async fn get(&self) -> Result<Arc<T>, PortError> {
        match self.cached() {
            Some((value, due)) if Instant::now() < due => Ok(value),
            Some((value, _)) => {
                // Due for a refresh: one request reads the secret, the others keep going with what they have.
                let Ok(_fetching) = self.fetching.try_lock() else { return Ok(value) };
                match self.cached() {
                    Some((fresh, due)) if Instant::now() < due => Ok(fresh),
                    _ => match self.fetch().await {
                        Ok(fresh) => Ok(fresh),
                        Err(e) => {
                            tracing::warn!(secret = self.what, error = %e, "refreshing a secret failed; keeping the one in use");
                            self.store(value.clone(), Instant::now() + SECRET_RETRY);
                            Ok(value)
                        }
                    },
                }
            }
            None => {
                let _fetching = self.fetching.lock().await;
                match self.cached() {
                    Some((value, _)) => Ok(value),
                    None => self.fetch().await,
                }
            }
        }
    }
}
