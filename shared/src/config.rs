//! Configuration, read once at Lambda init from the environment and typed, so a missing or malformed variable
//! fails the cold start with a message naming it instead of failing a request later.

use std::collections::HashMap;

use crate::adapters::providers::hosts::DownloadHosts;
use crate::domain::CountryAllowlist;

mod push;
mod tables;

pub use push::PushConfig;
pub use tables::Tables;

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
    /// Codes a number receives per 24 h, from all sources: the bound on texts to one phone.
    pub max_codes_per_day: usize,
    /// Codes one source address may have sent to one number per 24 h: below `max_codes_per_day`, so that one
    /// source cannot use a number's allowance up and lock its owner out (docs/architecture.md).
    pub max_codes_per_source_per_day: usize,
    pub max_attempts: u32,
    pub ip_limit_per_hour: u32,
    /// Texts the stage sends per hour, all numbers together, and per country of the number: the ceiling on
    /// what SMS pumping can cost in an hour, whatever the per-number and per-IP limits let through.
    pub sms_budget_per_hour: u32,
    pub sms_budget_per_country_per_hour: u32,
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
            max_codes_per_day: 10,
            max_codes_per_source_per_day: 3,
            max_attempts: 5,
            ip_limit_per_hour: 20,
            sms_budget_per_hour: 1_000,
            sms_budget_per_country_per_hour: 500,
            verify_ip_limit_per_hour: 60,
            starter_credits: 3,
            access_ttl_secs: 15 * 60,
            refresh_ttl_secs: 30 * 24 * 3600,
            issuer: "facemake-local".to_owned(),
            audience: "facemake-ios".to_owned(),
        }
    }
}

/// How the catalogue is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogueConfig {
    /// How long a container serves the catalogue from memory before reading it again.
    pub cache_ttl_secs: i64,
    /// Where template previews are published; a template's relative `preview` path is resolved against it.
    pub preview_base_url: String,
}

impl Default for CatalogueConfig {
    fn default() -> Self {
        Self { cache_ttl_secs: 60, preview_base_url: "http://127.0.0.1:3000/_local/catalogue/".to_owned() }
    }
}

/// A consumable In-App Purchase product and the credits it buys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreditProduct {
    pub product_id: String,
    pub credits: u64,
}

/// Which App Store environment a stage accepts signed data from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppStoreEnvironment {
    Sandbox,
    Production,
}

/// Apple Root CA - G3, which every App Store signing chain ends in (SHA-256 fingerprint
/// 63:34:3A:BF:B8:9A:6A:03:EB:B5:7E:9B:3F:5F:A7:BE:7C:4F:5C:75:6F:30:17:B3:A8:C4:88:C3:65:3E:91:79).
pub const APPLE_ROOT_CA_G3: &[u8] = include_bytes!("../certs/AppleRootCA-G3.cer");

/// How signed App Store data is verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppStoreConfig {
    pub bundle_id: String,
    pub environment: AppStoreEnvironment,
    /// The app's Apple ID; required for Production (notifications carry it).
    pub app_apple_id: Option<i64>,
    /// Trusted root certificates (DER). Apple Root CA G3 unless configured otherwise.
    pub root_certs: Vec<Vec<u8>>,
    /// Refuse transactions without an `appAccountToken` (one that is present must always match the user).
    pub require_account_token: bool,
    /// The In-App Purchase key for the App Store Server API (`APP_STORE_API_SECRET_ARN`; only the
    /// notifications function has it): without it, consumption requests are not answered.
    pub api_secret_arn: Option<String>,
}

/// Credits and purchases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreditsConfig {
    pub products: Vec<CreditProduct>,
    pub app_store: AppStoreConfig,
}

impl CreditsConfig {
    /// The credits one unit of `product_id` buys, if it is a configured product.
    pub fn credits_for(&self, product_id: &str) -> Option<u64> {
        self.products.iter().find(|p| p.product_id == product_id).map(|p| p.credits)
    }
}

/// The generation pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenerationConfig {
    /// The private bucket of uploads, prepared photos and outputs.
    pub images_bucket: String,
    /// The Secrets Manager secret with the AI providers' keys (`{"openaiApiKey", "replicateApiToken"}`).
    pub provider_secret_arn: String,
    pub openai_api_base: String,
    pub replicate_api_base: String,
    /// Where Replicate's output files may be downloaded from (`REPLICATE_OUTPUT_HOSTS`).
    pub replicate_output_hosts: DownloadHosts,
    /// Generations a user may have queued or processing at once.
    pub max_in_flight: u32,
    /// Seconds after which the reconciler fails and refunds a job still queued or processing. Longer than
    /// the worker's timeout plus the stream's delay, so a live worker is never overtaken.
    pub deadline_secs: i64,
    /// How long a worker's claim on a job holds (the worker's timeout plus a margin).
    pub claim_secs: i64,
    /// Lifetime of a presigned upload URL (at most 15 minutes).
    pub upload_url_secs: u64,
    /// Lifetime of a presigned output URL (and of a character's thumbnail URL).
    pub output_url_secs: u64,
    /// Characters a user may keep (`MAX_CHARACTERS_PER_USER`).
    pub max_characters: u32,
    /// Where Replicate reports the end of a prediction (`REPLICATE_WEBHOOK_URL`, the stage's
    /// `/v1/webhooks/replicate`): with it the worker hands Replicate renders over and returns at once; without it
    /// (locally, in tests) the worker waits for them.
    pub replicate_webhook_url: Option<String>,
    /// The secret with Replicate's webhook signing key (`REPLICATE_WEBHOOK_SECRET_ARN`; the webhook function).
    pub replicate_webhook_secret_arn: Option<String>,
    /// `OPENAI_WEBHOOKS`: the stage's OpenAI project calls `/v1/webhooks/openai` when a background response
    /// ends, so the worker hands OpenAI renders over (Responses API, background) and returns at once.
    pub openai_webhooks: bool,
    /// The model that calls the image tool in a background response (`OPENAI_RESPONSES_MODEL`).
    pub openai_responses_model: String,
    /// The secret with the OpenAI project's webhook signing key (`OPENAI_WEBHOOK_SECRET_ARN`; its function).
    pub openai_webhook_secret_arn: Option<String>,
}

impl Default for GenerationConfig {
    fn default() -> Self {
        Self {
            images_bucket: "facemake-local-images".to_owned(),
            provider_secret_arn: String::new(),
            openai_api_base: "https://api.openai.com".to_owned(),
            replicate_api_base: "https://api.replicate.com".to_owned(),
            replicate_output_hosts: DownloadHosts::default(),
            max_in_flight: 3,
            deadline_secs: 900,
            claim_secs: 330,
            upload_url_secs: 900,
            output_url_secs: 600,
            max_characters: 10,
            replicate_webhook_url: None,
            replicate_webhook_secret_arn: None,
            openai_webhooks: false,
            openai_responses_model: "gpt-4.1-mini".to_owned(),
            openai_webhook_secret_arn: None,
        }
    }
}

impl GenerationConfig {
    pub fn from_env(env: &dyn Env) -> Result<Self, ConfigError> {
        let d = Self::default();
        let config = Self {
            images_bucket: required(env, "IMAGES_BUCKET")?,
            provider_secret_arn: required(env, "PROVIDER_SECRET_ARN")?,
            openai_api_base: env.var("OPENAI_API_BASE").unwrap_or(d.openai_api_base),
            replicate_api_base: env.var("REPLICATE_API_BASE").unwrap_or(d.replicate_api_base),
            replicate_output_hosts: match env.var("REPLICATE_OUTPUT_HOSTS") {
                None => d.replicate_output_hosts,
                Some(list) => DownloadHosts::parse(&list)
                    .map_err(|reason| ConfigError::Invalid { var: "REPLICATE_OUTPUT_HOSTS", reason })?,
            },
            max_in_flight: number(env, "MAX_GENERATIONS_IN_FLIGHT", d.max_in_flight)?,
            deadline_secs: number(env, "GENERATION_DEADLINE_SECONDS", d.deadline_secs)?,
            claim_secs: d.claim_secs,
            upload_url_secs: d.upload_url_secs,
            output_url_secs: d.output_url_secs,
            max_characters: number(env, "MAX_CHARACTERS_PER_USER", d.max_characters)?,
            replicate_webhook_url: match env.var("REPLICATE_WEBHOOK_URL").filter(|v| !v.trim().is_empty()) {
                None => None,
                Some(url) => Some(
                    crate::adapters::webhooks::callback_url(url.trim())
                        .map_err(|reason| ConfigError::Invalid { var: "REPLICATE_WEBHOOK_URL", reason })?,
                ),
            },
            replicate_webhook_secret_arn: env.var("REPLICATE_WEBHOOK_SECRET_ARN").filter(|v| !v.trim().is_empty()),
            openai_webhooks: number(env, "OPENAI_WEBHOOKS", d.openai_webhooks)?,
            openai_responses_model: env
                .var("OPENAI_RESPONSES_MODEL")
                .filter(|v| !v.trim().is_empty())
                .unwrap_or(d.openai_responses_model),
            openai_webhook_secret_arn: env.var("OPENAI_WEBHOOK_SECRET_ARN").filter(|v| !v.trim().is_empty()),
        };
        if config.max_in_flight == 0 {
            return Err(ConfigError::Invalid { var: "MAX_GENERATIONS_IN_FLIGHT", reason: "must be at least 1".into() });
        }
        if config.max_characters == 0 {
            return Err(ConfigError::Invalid { var: "MAX_CHARACTERS_PER_USER", reason: "must be at least 1".into() });
        }
        if config.deadline_secs < 2 * config.claim_secs {
            let reason = format!("must be at least {} (twice the worker's claim)", 2 * config.claim_secs);
            return Err(ConfigError::Invalid { var: "GENERATION_DEADLINE_SECONDS", reason });
        }
        Ok(config)
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
    pub catalogue: CatalogueConfig,
    pub credits: CreditsConfig,
    pub generation: GenerationConfig,
    pub push: PushConfig,
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
            catalogue: required(env, "CATALOGUE_TABLE")?,
            generations: required(env, "GENERATIONS_TABLE")?,
            characters: required(env, "CHARACTERS_TABLE")?,
            devices: required(env, "DEVICES_TABLE")?,
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
        let catalogue = CatalogueConfig {
            cache_ttl_secs: number(env, "CATALOGUE_CACHE_SECONDS", CatalogueConfig::default().cache_ttl_secs)?,
            preview_base_url: base_url(&required(env, "PREVIEW_BASE_URL")?)?,
        };
        let credits = CreditsConfig { products: products(env)?, app_store: AppStoreConfig::from_env(env)? };
        let generation = GenerationConfig::from_env(env)?;
        let auth = AuthPolicy::from_env(env)?;
        let push = PushConfig::from_env(env, &credits.app_store.bundle_id)?;
        Ok(Self { stage, tables, app_secret_arn, sms, auth, catalogue, credits, generation, push })
    }
}

/// An absolute http(s) URL, with a trailing slash so relative paths resolve under it.
fn base_url(value: &str) -> Result<String, ConfigError> {
    let invalid = |reason: &str| ConfigError::Invalid { var: "PREVIEW_BASE_URL", reason: reason.to_owned() };
    let url = url::Url::parse(value).map_err(|e| invalid(&e.to_string()))?;
    if !matches!(url.scheme(), "https" | "http") {
        return Err(invalid("must be an http(s) URL"));
    }
    Ok(if value.ends_with('/') { value.to_owned() } else { format!("{value}/") })
}

/// `CREDIT_PRODUCTS`: `productId=credits` pairs separated by commas.
fn products(env: &dyn Env) -> Result<Vec<CreditProduct>, ConfigError> {
    const VAR: &str = "CREDIT_PRODUCTS";
    let invalid = |reason: String| ConfigError::Invalid { var: VAR, reason };
    let mut products: Vec<CreditProduct> = Vec::new();
    for pair in required(env, VAR)?.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, credits) =
            pair.split_once('=').ok_or_else(|| invalid(format!("`{pair}` is not productId=credits")))?;
        let credits: u64 = credits.trim().parse().map_err(|_| invalid(format!("`{pair}`: credits is not a number")))?;
        let id = id.trim();
        if id.is_empty() || credits == 0 {
            return Err(invalid(format!("`{pair}`: needs a product id and at least 1 credit")));
        }
        if products.iter().any(|p| p.product_id == id) {
            return Err(invalid(format!("`{id}` is listed twice")));
        }
        products.push(CreditProduct { product_id: id.to_owned(), credits });
    }
    if products.is_empty() {
        return Err(invalid("no products".to_owned()));
    }
    Ok(products)
}

impl AppStoreConfig {
    pub fn from_env(env: &dyn Env) -> Result<Self, ConfigError> {
        let environment = match required(env, "APP_STORE_ENVIRONMENT")?.as_str() {
            "Sandbox" => AppStoreEnvironment::Sandbox,
            "Production" => AppStoreEnvironment::Production,
            // Xcode and LocalTesting data is not signed by Apple: the verifier skips the signature for them, so
            // a deployed stage must never accept them.
            other => {
                return Err(ConfigError::Invalid {
                    var: "APP_STORE_ENVIRONMENT",
                    reason: format!("`{other}` is not Sandbox or Production"),
                })
            }
        };
        let app_apple_id = match env.var("APP_STORE_APP_APPLE_ID") {
            None if environment == AppStoreEnvironment::Production => {
                return Err(ConfigError::Missing("APP_STORE_APP_APPLE_ID"))
            }
            None => None,
            Some(_) => match number(env, "APP_STORE_APP_APPLE_ID", 0i64)? {
                // Zero is the samconfig placeholder: Apple would have every notification refused.
                id if id > 0 => Some(id),
                _ => {
                    return Err(ConfigError::Invalid {
                        var: "APP_STORE_APP_APPLE_ID",
                        reason: "must be the app's Apple ID from App Store Connect (a positive number)".to_owned(),
                    })
                }
            },
        };
        Ok(Self {
            bundle_id: required(env, "APP_STORE_BUNDLE_ID")?,
            environment,
            app_apple_id,
            root_certs: root_certs(env.var("APP_STORE_ROOT_CERTS").as_deref())?,
            require_account_token: number(env, "APP_STORE_REQUIRE_ACCOUNT_TOKEN", false)?,
            api_secret_arn: env.var("APP_STORE_API_SECRET_ARN").filter(|v| !v.trim().is_empty()),
        })
    }
}

/// `APP_STORE_ROOT_CERTS`: comma-separated entries, each `apple-root-ca-g3` or a base64 DER certificate.
/// Unset: Apple Root CA G3 only.
pub fn root_certs(value: Option<&str>) -> Result<Vec<Vec<u8>>, ConfigError> {
    use base64::Engine;
    let Some(value) = value else {
        return Ok(vec![APPLE_ROOT_CA_G3.to_vec()]);
    };
    let mut roots = Vec::new();
    for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        if entry == "apple-root-ca-g3" {
            roots.push(APPLE_ROOT_CA_G3.to_vec());
        } else {
            let invalid =
                |reason: &str| ConfigError::Invalid { var: "APP_STORE_ROOT_CERTS", reason: reason.to_owned() };
            let der = base64::engine::general_purpose::STANDARD
                .decode(entry)
                .map_err(|_| invalid("an entry is neither apple-root-ca-g3 nor base64"))?;
            // The verifier parses roots only when it verifies: check them now, so a bad entry fails the cold
            // start instead of every purchase.
            match x509_parser::parse_x509_certificate(&der) {
                Ok((rest, cert)) if rest.is_empty() && cert.tbs_certificate.is_ca() => roots.push(der),
                Ok(_) => return Err(invalid("an entry is not a CA certificate")),
                Err(_) => return Err(invalid("an entry is not a DER certificate")),
            }
        }
    }
    if roots.is_empty() {
        return Err(ConfigError::Invalid { var: "APP_STORE_ROOT_CERTS", reason: "no certificates".to_owned() });
    }
    Ok(roots)
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
            max_codes_per_source_per_day: number(env, "MAX_CODES_PER_SOURCE_PER_DAY", d.max_codes_per_source_per_day)?,
            max_attempts: number(env, "MAX_CODE_ATTEMPTS", d.max_attempts)?,
            ip_limit_per_hour: number(env, "SEND_CODE_IP_LIMIT_PER_HOUR", d.ip_limit_per_hour)?,
            sms_budget_per_hour: number(env, "SMS_BUDGET_PER_HOUR", d.sms_budget_per_hour)?,
            sms_budget_per_country_per_hour: number(
                env,
                "SMS_BUDGET_PER_COUNTRY_PER_HOUR",
                d.sms_budget_per_country_per_hour,
            )?,
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
            ("CATALOGUE_TABLE", "t"),
            ("GENERATIONS_TABLE", "g"),
            ("CHARACTERS_TABLE", "ch"),
            ("DEVICES_TABLE", "dv"),
            ("IMAGES_BUCKET", "images"),
            ("PROVIDER_SECRET_ARN", "arn:providers"),
            ("APP_SECRET_ARN", "arn:app"),
            ("SMS_SECRET_ARN", "arn:sms"),
            ("ALLOWED_COUNTRIES", "US,GB"),
            ("STARTER_CREDITS", "5"),
            ("TOKEN_ISSUER", "facemake-dev"),
            ("PREVIEW_BASE_URL", "https://d111.cloudfront.net"),
            ("CREDIT_PRODUCTS", "app.facemake.credits.10=10, app.facemake.credits.50=50"),
            ("APP_STORE_BUNDLE_ID", "app.facemake.ios"),
            ("APP_STORE_ENVIRONMENT", "Sandbox"),
        ])
    }

    #[test]
    fn reads_catalogue_and_credits_settings() {
        let c = Config::from(&full()).unwrap();
        assert_eq!(c.catalogue.preview_base_url, "https://d111.cloudfront.net/");
        assert_eq!(c.catalogue.cache_ttl_secs, 60);
        assert_eq!(c.credits.credits_for("app.facemake.credits.50"), Some(50));
        assert_eq!(c.credits.credits_for("app.facemake.credits.99"), None);
        assert_eq!(c.credits.app_store.root_certs, vec![APPLE_ROOT_CA_G3.to_vec()]);
        assert!(!c.credits.app_store.require_account_token);
    }

    #[test]
    fn app_store_settings_are_checked() {
        let mut env = full();
        env.insert("APP_STORE_ENVIRONMENT", "Xcode");
        assert!(matches!(Config::from(&env), Err(ConfigError::Invalid { var: "APP_STORE_ENVIRONMENT", .. })));
        env.insert("APP_STORE_ENVIRONMENT", "Production");
        assert_eq!(Config::from(&env).unwrap_err(), ConfigError::Missing("APP_STORE_APP_APPLE_ID"));
        env.insert("APP_STORE_APP_APPLE_ID", "1234567890");
        assert_eq!(Config::from(&env).unwrap().credits.app_store.app_apple_id, Some(1234567890));
        env.insert("APP_STORE_APP_APPLE_ID", "0000000000");
        assert!(matches!(Config::from(&env), Err(ConfigError::Invalid { var: "APP_STORE_APP_APPLE_ID", .. })));
        env.insert("APP_STORE_APP_APPLE_ID", "1234567890");
        use base64::Engine;
        let g3 = base64::engine::general_purpose::STANDARD.encode(APPLE_ROOT_CA_G3);
        let listed = format!("apple-root-ca-g3, {g3}");
        env.insert("APP_STORE_ROOT_CERTS", &listed);
        assert_eq!(Config::from(&env).unwrap().credits.app_store.root_certs.len(), 2);
        for bad in ["not base64!", "AAEC", "MAMCAQA="] {
            env.insert("APP_STORE_ROOT_CERTS", bad);
            let err = Config::from(&env);
            assert!(matches!(err, Err(ConfigError::Invalid { var: "APP_STORE_ROOT_CERTS", .. })), "{bad:?}: {err:?}");
        }
        let mut env = full();
        for bad in ["", "a=0", "a", "a=1,a=2", "a=x"] {
            env.insert("CREDIT_PRODUCTS", bad);
            assert!(Config::from(&env).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_bundled_root_is_apple_root_ca_g3() {
        // Published fingerprint of Apple Root CA - G3.
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, APPLE_ROOT_CA_G3);
        let fingerprint: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(fingerprint, "63343abfb89a6a03ebb57e9b3f5fa7be7c4f5c756f3017b3a8c488c3653e9179");
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
