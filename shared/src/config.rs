//! Configuration, read once at Lambda init from the environment and typed, so a missing or malformed variable
//! fails the cold start with a message naming it instead of failing a request later.

use std::collections::HashMap;

use crate::domain::CountryAllowlist;

#[derive(thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("environment variable {0} is not set")]
    Missing(&'static str),
    #[error("environment variable {var} is invalid: {reason}")]
    Invalid { var: &'static str, reason: String },
}

// A failed cold start prints the error with `Debug` (main returns it): make that the readable message.
impl std::fmt::Debug for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// DynamoDB table names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tables {
    pub users: String,
    pub credits: String,
    pub codes: String,
    pub sessions: String,
}

/// Where sign-in texts go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SmsConfig {
    /// Twilio's Messages API; credentials in the Secrets Manager secret.
    Twilio { secret_arn: String, api_base: String },
}

/// The sign-in rules. Defaults are the product's; every number can be overridden per stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthPolicy {
    pub allowed_countries: CountryAllowlist,
    pub code_ttl_secs: i64,
    pub resend_cooldown_secs: i64,
    pub max_codes_per_day: usize,
    pub max_attempts: u32,
    pub ip_limit_per_hour: u32,
    /// verify-code requests per source IP per hour (stops one client burning other people's attempts).
    pub verify_ip_limit_per_hour: u32,
    pub starter_credits: u64,
    pub access_ttl_secs: i64,
    pub refresh_ttl_secs: i64,
    pub issuer: String,
    pub audience: String,
}

impl Default for AuthPolicy {
    fn default() -> Self {
        Self {
            allowed_countries: CountryAllowlist::any(),
            code_ttl_secs: 300,
            resend_cooldown_secs: 60,
            max_codes_per_day: 5,
            max_attempts: 5,
            ip_limit_per_hour: 20,
            verify_ip_limit_per_hour: 60,
            starter_credits: 3,
            access_ttl_secs: 15 * 60,
            refresh_ttl_secs: 30 * 24 * 3600,
            issuer: "facemake-local".to_owned(),
            audience: "facemake-ios".to_owned(),
        }
    }
}

/// Everything a function needs, read from the environment.
#[derive(Debug, Clone)]
pub struct Config {
    pub stage: String,
    pub tables: Tables,
    pub app_secret_arn: String,
    pub sms: SmsConfig,
    pub auth: AuthPolicy,
}

/// A source of variables: the process environment, or a map in tests.
pub trait Env {
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }
}

impl Env for HashMap<&str, &str> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).map(|v| (*v).to_owned()).filter(|v| !v.is_empty())
    }
}

fn required(env: &dyn Env, var: &'static str) -> Result<String, ConfigError> {
    env.var(var).ok_or(ConfigError::Missing(var))
}

fn number<T: std::str::FromStr>(env: &dyn Env, var: &'static str, default: T) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    match env.var(var) {
        None => Ok(default),
        Some(v) => v.trim().parse().map_err(|e: T::Err| ConfigError::Invalid { var, reason: e.to_string() }),
    }
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from(&ProcessEnv)
    }

    pub fn from(env: &dyn Env) -> Result<Self, ConfigError> {
        let stage = required(env, "STAGE")?;
        let tables = Tables {
            users: required(env, "USERS_TABLE")?,
            credits: required(env, "CREDITS_TABLE")?,
            codes: required(env, "CODES_TABLE")?,
            sessions: required(env, "SESSIONS_TABLE")?,
        };
        let app_secret_arn = required(env, "APP_SECRET_ARN")?;
        let sms = match env.var("SMS_PROVIDER").as_deref().unwrap_or("twilio") {
            "twilio" => SmsConfig::Twilio {
                secret_arn: required(env, "SMS_SECRET_ARN")?,
                api_base: env.var("TWILIO_API_BASE").unwrap_or_else(|| "https://api.twilio.com".to_owned()),
            },
            other => {
                return Err(ConfigError::Invalid {
                    var: "SMS_PROVIDER",
                    reason: format!("`{other}` is not a provider (expected twilio)"),
                })
            }
        };
        // Deployed stages must say who may sign in and who issues tokens; only the local API defaults them.
        required(env, "ALLOWED_COUNTRIES")?;
        required(env, "TOKEN_ISSUER")?;
        Ok(Self { stage, tables, app_secret_arn, sms, auth: AuthPolicy::from_env(env)? })
    }
}

impl AuthPolicy {
    /// Reads the overridable sign-in rules; every variable is optional.
    pub fn from_env(env: &dyn Env) -> Result<Self, ConfigError> {
        let d = Self::default();
        let allowed_countries = match env.var("ALLOWED_COUNTRIES") {
            None => d.allowed_countries,
            Some(list) => CountryAllowlist::parse(&list)
                .map_err(|reason| ConfigError::Invalid { var: "ALLOWED_COUNTRIES", reason })?,
        };
        Ok(Self {
            allowed_countries,
            code_ttl_secs: number(env, "CODE_TTL_SECONDS", d.code_ttl_secs)?,
            resend_cooldown_secs: number(env, "RESEND_COOLDOWN_SECONDS", d.resend_cooldown_secs)?,
            max_codes_per_day: number(env, "MAX_CODES_PER_DAY", d.max_codes_per_day)?,
            max_attempts: number(env, "MAX_CODE_ATTEMPTS", d.max_attempts)?,
            ip_limit_per_hour: number(env, "SEND_CODE_IP_LIMIT_PER_HOUR", d.ip_limit_per_hour)?,
            verify_ip_limit_per_hour: number(env, "VERIFY_CODE_IP_LIMIT_PER_HOUR", d.verify_ip_limit_per_hour)?,
            starter_credits: number(env, "STARTER_CREDITS", d.starter_credits)?,
            access_ttl_secs: d.access_ttl_secs,
            refresh_ttl_secs: d.refresh_ttl_secs,
            issuer: env.var("TOKEN_ISSUER").unwrap_or(d.issuer),
            audience: env.var("TOKEN_AUDIENCE").unwrap_or(d.audience),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full() -> HashMap<&'static str, &'static str> {
        HashMap::from([
            ("STAGE", "dev"),
            ("USERS_TABLE", "u"),
            ("CREDITS_TABLE", "c"),
            ("CODES_TABLE", "o"),
            ("SESSIONS_TABLE", "s"),
            ("APP_SECRET_ARN", "arn:app"),
            ("SMS_SECRET_ARN", "arn:sms"),
            ("ALLOWED_COUNTRIES", "US,GB"),
            ("STARTER_CREDITS", "5"),
            ("TOKEN_ISSUER", "facemake-dev"),
        ])
    }

    #[test]
    fn reads_a_complete_environment() {
        let c = Config::from(&full()).unwrap();
        assert_eq!(c.tables.codes, "o");
        assert_eq!(c.auth.starter_credits, 5);
        assert_eq!(c.auth.ip_limit_per_hour, 20);
        assert_eq!(c.auth.allowed_countries, CountryAllowlist::parse("GB,US").unwrap());
        assert!(matches!(c.sms, SmsConfig::Twilio { ref secret_arn, .. } if secret_arn == "arn:sms"));
    }

    #[test]
    fn names_the_missing_variable() {
        let mut env = full();
        env.remove("ALLOWED_COUNTRIES");
        assert_eq!(Config::from(&env).unwrap_err(), ConfigError::Missing("ALLOWED_COUNTRIES"));
        let mut env = full();
        env.remove("CODES_TABLE");
        let err = Config::from(&env).unwrap_err();
        assert_eq!(err, ConfigError::Missing("CODES_TABLE"));
        assert_eq!(err.to_string(), "environment variable CODES_TABLE is not set");
    }

    #[test]
    fn names_the_malformed_variable() {
        let mut env = full();
        env.insert("STARTER_CREDITS", "three");
        assert!(matches!(Config::from(&env), Err(ConfigError::Invalid { var: "STARTER_CREDITS", .. })));
        env.insert("STARTER_CREDITS", "3");
        env.insert("ALLOWED_COUNTRIES", "US,Narnia");
        assert!(matches!(Config::from(&env), Err(ConfigError::Invalid { var: "ALLOWED_COUNTRIES", .. })));
    }
}
