//! Builds services from adapters: once per container for a Lambda (`Deps::deployed`), once per process for
//! the local API (`Deps::local`). Building clients does no network I/O: secrets are fetched on first use.

use std::sync::Arc;

use crate::adapters::apns::{parse_apns_key, Apns, ApnsKeySource, NoPushes};
use crate::adapters::appstore::AppStoreVerifier;
use crate::adapters::appstore_api::{
    parse_api_key, AppStoreApi, KeySource, NotConfigured as NotConfiguredReporter, ReqwestTransport,
};
use crate::adapters::dynamodb::DynamoStore;
use crate::adapters::dynamodb::TableStream;
use crate::adapters::keys::SecretsManagerKeys;
use crate::adapters::objects::S3Objects;
use crate::adapters::providers::openai::OpenAiImages;
use crate::adapters::providers::replicate::ReplicatePredictions;
use crate::adapters::providers::{ProviderCredentials, ProviderKeys};
use crate::adapters::secrets::CachedSecret;
use crate::adapters::sms::TwilioSms;
use crate::adapters::webhooks::{parse_signing_key, SigningKey, WebhookVerifier};
use crate::config::{
    AuthPolicy, CatalogueConfig, Config, CreditsConfig, GenerationConfig, PushConfig, SmsConfig, Tables,
};
use crate::http::AuthGuard;
use crate::metrics::{Emf, Metrics};
use crate::ports::Dispatcher;
use crate::ports::{
    AccountEraser, AccountStore, CatalogueStore, CharacterStore, Clock, ConsumptionReporter, CreditsStore, DeviceStore,
    FavoritesStore, GenerationStore, KeyProvider, LedgerReader, ObjectStore, OtpStore, PushSender, RateLimiter,
    SessionStore, SmsSender, SystemClock,
};
use crate::services::account::Account;
use crate::services::auth::{SendCode, SignIn};
use crate::services::catalogue::CatalogueService;
use crate::services::characters::Characters;
use crate::services::credits::Credits;
use crate::services::generation::callback::Callbacks;
use crate::services::generation::{Generations, Providers, RetryPolicy, Worker};
use crate::services::notifications::Notifications;
use crate::tokens::AccessTokens;

/// Every store port in one object (the DynamoDB and in-memory stores both implement all of them).
pub trait Store:
    OtpStore
    + RateLimiter
    + AccountStore
    + LedgerReader
    + SessionStore
    + CreditsStore
    + CatalogueStore
    + FavoritesStore
    + GenerationStore
    + CharacterStore
    + DeviceStore
    + AccountEraser
{
}
impl<T> Store for T where
    T: OtpStore
        + RateLimiter
        + AccountStore
        + LedgerReader
        + SessionStore
        + CreditsStore
        + CatalogueStore
        + FavoritesStore
        + GenerationStore
        + CharacterStore
        + DeviceStore
        + AccountEraser
{
}

/// The adapters a function's services are built from.
#[derive(Clone)]
pub struct Deps {
    pub store: Arc<dyn Store>,
    pub keys: Arc<dyn KeyProvider>,
    pub sms: Arc<dyn SmsSender>,
    pub clock: Arc<dyn Clock>,
    pub policy: AuthPolicy,
    pub catalogue: CatalogueConfig,
    pub credits: CreditsConfig,
    pub generation: GenerationConfig,
    pub push: PushConfig,
    pub metrics: Arc<dyn Metrics>,
    /// Where the images bucket and the AI providers come from.
    pub media: Media,
}

/// The images bucket, the AI providers, the worker hand-off and the push service. Deployed, they are built on demand from the
/// SDK configuration, so functions that never touch images neither build nor link them.
#[derive(Clone)]
pub enum Media {
    Aws {
        sdk: Box<aws_config::SdkConfig>,
        secrets: aws_sdk_secretsmanager::Client,
    },
    Fixed {
        objects: Arc<dyn ObjectStore>,
        providers: Providers,
        dispatcher: Arc<dyn Dispatcher>,
        pushes: Arc<dyn PushSender>,
    },
}

/// The AWS SDK configuration from the environment (in Lambda: the function role's credentials and region;
/// locally: `AWS_ENDPOINT_URL*` may point the clients at DynamoDB Local or LocalStack), with
/// [`aws_http_client`].
pub async fn aws_config() -> Result<aws_config::SdkConfig, String> {
    let http = aws_http_client()?;
    Ok(aws_config::defaults(aws_config::BehaviorVersion::latest()).http_client(http).load().await)
}

/// The roots AWS service endpoints chain to: Amazon Root CA 1–4 and Starfield Services Root CA G2 (Amazon
/// Trust Services), as Debian's ca-certificates 20230311 ships them; `wiring::tests` pins their fingerprints.
pub const AMAZON_TRUST_SERVICES: &[u8] = include_bytes!("../certs/amazon-trust-services.pem");

/// The SDK's default HTTP client (hyper, rustls with aws-lc, proxy settings from the environment) trusting
/// [`AMAZON_TRUST_SERVICES`] only. The default trusts the platform's roots, which rustls-native-certs loads
/// from every file of the system store: on this project's build machine that was 5–6 ms of each cold start
/// (docs/benchmarks.md), for roots no AWS endpoint uses. Outbound calls to Twilio and the image providers go
/// through reqwest, with its own roots.
pub fn aws_http_client() -> Result<aws_sdk_dynamodb::config::SharedHttpClient, String> {
    use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode, TlsContext, TrustStore};
    use aws_smithy_http_client::{proxy::ProxyConfig, Builder, ConnectorBuilder};
    let trust = TrustStore::empty().with_pem_certificate(AMAZON_TRUST_SERVICES);
    let context = TlsContext::builder()
        .with_trust_store(trust)
        .build()
        .map_err(|e| format!("the AWS clients' TLS settings: {e}"))?;
    Ok(Builder::new().build_with_connector_fn(move |settings, components| {
        let mut connector = ConnectorBuilder::default()
            .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc))
            .tls_context(context.clone());
        connector.set_connector_settings(settings.cloned());
        if let Some(components) = components {
            connector.set_sleep_impl(components.sleep_impl());
        }
        connector.set_proxy_config(Some(ProxyConfig::from_env()));
        connector.build()
    }))
}

impl Deps {
    /// Deployed adapters: DynamoDB, Secrets Manager, Twilio.
    pub fn deployed(config: &Config, sdk: &aws_config::SdkConfig) -> Self {
        let secrets = aws_sdk_secretsmanager::Client::new(sdk);
        let sms: Arc<dyn SmsSender> = match &config.sms {
            SmsConfig::Twilio { secret_arn, api_base } => {
                Arc::new(TwilioSms::from_secret(api_base.clone(), secrets.clone(), secret_arn.clone()))
            }
        };
        let keys = Arc::new(SecretsManagerKeys::new(secrets.clone(), config.app_secret_arn.clone()));
        Self {
            store: Arc::new(Self::dynamo(sdk, config.tables.clone())),
            keys,
            sms,
            clock: Arc::new(SystemClock),
            policy: config.auth.clone(),
            catalogue: config.catalogue.clone(),
            credits: config.credits.clone(),
            generation: config.generation.clone(),
            push: config.push.clone(),
            metrics: Arc::new(Emf::for_stage(&config.stage)),
            media: Media::Aws { sdk: Box::new(sdk.clone()), secrets },
        }
    }

    /// [`Deps::deployed`] with DynamoDB and Secrets Manager at explicit endpoints (tests against local
    /// stand-ins; in Lambda the SDK's own endpoint resolution is used).
    pub fn deployed_with_endpoints(
        config: &Config,
        sdk: &aws_config::SdkConfig,
        dynamodb: &str,
        secrets_manager: &str,
    ) -> Self {
        let sdk_for = |endpoint: &str| sdk.to_builder().endpoint_url(endpoint).build();
        let mut deps = Self::deployed(config, &sdk_for(secrets_manager));
        deps.store = Arc::new(Self::dynamo(&sdk_for(dynamodb), config.tables.clone()));
        deps
    }

    pub fn dynamo(sdk: &aws_config::SdkConfig, tables: Tables) -> DynamoStore {
        DynamoStore::new(aws_sdk_dynamodb::Client::new(sdk), tables)
    }

    pub fn send_code(&self) -> SendCode {
        SendCode {
            otp: self.store.clone(),
            limiter: self.store.clone(),
            sms: self.sms.clone(),
            keys: self.keys.clone(),
            clock: self.clock.clone(),
            policy: self.policy.clone(),
            metrics: self.metrics.clone(),
        }
    }

    pub fn sign_in(&self) -> SignIn {
        SignIn {
            otp: self.store.clone(),
            limiter: self.store.clone(),
            accounts: self.store.clone(),
            sessions: self.store.clone(),
            keys: self.keys.clone(),
            clock: self.clock.clone(),
            policy: self.policy.clone(),
            metrics: self.metrics.clone(),
        }
    }

    pub fn account(&self) -> Account {
        Account {
            accounts: self.store.clone(),
            eraser: self.store.clone(),
            objects: self.objects(),
            clock: self.clock.clone(),
        }
    }

    /// The catalogue with its container cache: build it once per container.
    pub fn catalogue_service(&self) -> CatalogueService {
        CatalogueService::new(self.store.clone(), self.store.clone(), self.clock.clone(), self.catalogue.cache_ttl_secs)
    }

    /// Credits and purchases. Fails when the App Store settings cannot make a verifier (a cold-start error).
    pub fn credits_service(&self) -> Result<Credits, String> {
        Ok(Credits {
            store: self.store.clone(),
            accounts: self.store.clone(),
            reporter: self.consumption_reporter(),
            sample_content_provided: self.policy.starter_credits > 0,
            ledger: self.store.clone(),
            verifier: Arc::new(AppStoreVerifier::new(&self.credits.app_store)?),
            config: self.credits.clone(),
            clock: self.clock.clone(),
            metrics: self.metrics.clone(),
        })
    }

    /// The images bucket.
    pub fn objects(&self) -> Arc<dyn ObjectStore> {
        match &self.media {
            Media::Aws { sdk, .. } => {
                Arc::new(S3Objects::new(aws_sdk_s3::Client::new(sdk), self.generation.images_bucket.clone()))
            }
            Media::Fixed { objects, .. } => objects.clone(),
        }
    }

    /// Send Consumption Information: with the In-App Purchase key from Secrets Manager where the stage has one
    /// (read on first use), otherwise nothing is sent.
    fn consumption_reporter(&self) -> Arc<dyn ConsumptionReporter> {
        let app_store = &self.credits.app_store;
        match (&self.media, &app_store.api_secret_arn) {
            (Media::Aws { secrets, .. }, Some(arn)) => {
                let key = CachedSecret::new(secrets.clone(), arn.clone(), "app store api key", parse_api_key);
                let transport = ReqwestTransport::new(None);
                Arc::new(AppStoreApi::new(
                    KeySource::Secret(key),
                    &app_store.bundle_id,
                    app_store.environment,
                    transport,
                ))
            }
            _ => Arc::new(NotConfiguredReporter),
        }
    }

    /// The AI providers, their keys read from Secrets Manager on first use.
    pub fn providers(&self) -> Providers {
        match &self.media {
            Media::Aws { secrets, .. } => {
                // One secret, fetched once, for both providers.
                let credentials =
                    Arc::new(ProviderCredentials::secret(secrets.clone(), self.generation.provider_secret_arn.clone()));
                let replicate_base = self.generation.replicate_api_base.clone();
                Providers {
                    openai: Arc::new(
                        OpenAiImages::new(self.generation.openai_api_base.clone(), credentials.clone())
                            .with_responses_model(self.generation.openai_responses_model.clone()),
                    ),
                    replicate: Arc::new(
                        ReplicatePredictions::new(replicate_base, credentials)
                            .with_output_hosts(self.generation.replicate_output_hosts.clone()),
                    ),
                }
            }
            Media::Fixed { providers, .. } => providers.clone(),
        }
    }

    fn dispatcher(&self) -> Arc<dyn Dispatcher> {
        match &self.media {
            Media::Aws { .. } => Arc::new(TableStream),
            Media::Fixed { dispatcher, .. } => dispatcher.clone(),
        }
    }

    /// Uploads and generations (the generate function), sharing `catalogue`'s container cache.
    pub fn generations(&self, catalogue: Arc<CatalogueService>) -> Generations {
        Generations {
            store: self.store.clone(),
            characters: self.store.clone(),
            credits: self.store.clone(),
            objects: self.objects(),
            catalogue,
            dispatcher: self.dispatcher(),
            clock: self.clock.clone(),
            metrics: self.metrics.clone(),
            config: self.generation.clone(),
        }
    }

    /// Characters (the characters function).
    pub fn characters(&self) -> Characters {
        Characters {
            store: self.store.clone(),
            objects: self.objects(),
            clock: self.clock.clone(),
            max_characters: self.generation.max_characters,
            url_secs: self.generation.output_url_secs,
            limits: crate::imaging::PrepareLimits::default(),
        }
    }

    /// The providers' callbacks (the webhook functions): Replicate's read with its adapter, whose output
    /// downloads keep to `REPLICATE_OUTPUT_HOSTS` (it never reads the provider secret); OpenAI's responses read
    /// back with the OpenAI key (only the OpenAI webhook function's role may read it).
    pub fn callbacks(&self) -> Callbacks {
        let credentials = match &self.media {
            Media::Aws { secrets, .. } => {
                ProviderCredentials::secret(secrets.clone(), self.generation.provider_secret_arn.clone())
            }
            Media::Fixed { .. } => {
                ProviderCredentials::fixed(ProviderKeys { openai_api_key: None, replicate_api_token: None })
            }
        };
        let credentials = Arc::new(credentials);
        let reader = ReplicatePredictions::new(self.generation.replicate_api_base.clone(), credentials.clone())
            .with_output_hosts(self.generation.replicate_output_hosts.clone());
        let responses = OpenAiImages::new(self.generation.openai_api_base.clone(), credentials)
            .with_responses_model(self.generation.openai_responses_model.clone());
        Callbacks {
            notifications: self.notifications(),
            store: self.store.clone(),
            objects: self.objects(),
            reader: Arc::new(reader),
            responses: Arc::new(responses),
            clock: self.clock.clone(),
            metrics: self.metrics.clone(),
        }
    }

    /// The verifier of Replicate's webhook signatures: the key from `REPLICATE_WEBHOOK_SECRET_ARN` (read on
    /// first use); `local_key` on the local stand-ins; none at all on a deployed stage without the secret.
    pub fn webhook_verifier(&self, local_key: &str) -> WebhookVerifier {
        self.verifier(self.generation.replicate_webhook_secret_arn.as_deref(), "replicate webhook key", local_key)
    }

    /// The verifier of OpenAI's webhook signatures (`OPENAI_WEBHOOK_SECRET_ARN`), as [`Deps::webhook_verifier`].
    pub fn openai_webhook_verifier(&self, local_key: &str) -> WebhookVerifier {
        self.verifier(self.generation.openai_webhook_secret_arn.as_deref(), "openai webhook key", local_key)
    }

    fn verifier(&self, arn: Option<&str>, what: &'static str, local_key: &str) -> WebhookVerifier {
        match (&self.media, arn) {
            (Media::Aws { secrets, .. }, Some(arn)) => WebhookVerifier::new(SigningKey::Secret(CachedSecret::new(
                secrets.clone(),
                arn,
                what,
                parse_signing_key,
            ))),
            (Media::Aws { .. }, None) => WebhookVerifier::new(SigningKey::Missing),
            (Media::Fixed { .. }, _) => {
                WebhookVerifier::new(SigningKey::Fixed(secrecy::SecretString::from(local_key.to_owned())))
            }
        }
    }

    /// Devices and the pushes to them: through APNs with the key from `APNS_KEY_SECRET_ARN` (read on first
    /// push), none on a stage without it, the local outbox on the local stand-ins.
    pub fn notifications(&self) -> Arc<Notifications> {
        let sender: Arc<dyn PushSender> = match (&self.media, &self.push.apns_key_secret_arn) {
            (Media::Aws { secrets, .. }, Some(arn)) => {
                let key = CachedSecret::new(secrets.clone(), arn.clone(), "apns key", parse_apns_key);
                Arc::new(Apns::new(
                    ApnsKeySource::Secret(key),
                    &self.push.topic,
                    &self.push.production_url,
                    &self.push.sandbox_url,
                    self.clock.clone(),
                ))
            }
            (Media::Aws { .. }, None) => Arc::new(NoPushes),
            (Media::Fixed { pushes, .. }, _) => pushes.clone(),
        };
        Arc::new(Notifications {
            devices: self.store.clone(),
            sender,
            clock: self.clock.clone(),
            metrics: self.metrics.clone(),
        })
    }

    /// The generation worker and reconciler.
    pub fn worker(&self) -> Worker {
        Worker {
            notifications: self.notifications(),
            store: self.store.clone(),
            objects: self.objects(),
            providers: self.providers(),
            clock: self.clock.clone(),
            metrics: self.metrics.clone(),
            config: self.generation.clone(),
            retry: RetryPolicy::default(),
            limits: crate::imaging::PrepareLimits::default(),
        }
    }

    pub fn auth_guard(&self) -> AuthGuard {
        AuthGuard {
            keys: self.keys.clone(),
            tokens: AccessTokens::for_policy(&self.policy),
            accounts: self.store.clone(),
        }
    }
}

/// A Lambda function's whole `main`: logs, configuration and adapters once per container, then `router`
/// serving every invocation. A configuration error fails the cold start with the variable's name.
pub async fn run_http_function(
    router: impl FnOnce(&Deps) -> Result<crate::http::Router, lambda_http::Error>,
) -> Result<(), lambda_http::Error> {
    crate::telemetry::init();
    let config = Config::from_env()?;
    let deps = Deps::deployed(&config, &aws_config().await?);
    let router = router(&deps)?;
    lambda_http::run(lambda_http::service_fn(|req| {
        let router = &router;
        async move { Ok::<_, std::convert::Infallible>(router.handle(req).await) }
    }))
    .await
}

/// A non-HTTP Lambda function's whole `main` (the worker, the reconciler): logs, configuration and adapters
/// once per container, `build` once, then `handle` for every event.
pub async fn run_event_function<S, E, R, F, Fut>(
    build: impl FnOnce(&Deps) -> Result<S, lambda_http::Error>,
    handle: F,
) -> Result<(), lambda_http::Error>
where
    S: Send + Sync + 'static,
    E: serde::de::DeserializeOwned + Send + 'static,
    R: serde::Serialize,
    F: Fn(Arc<S>, E) -> Fut,
    Fut: std::future::Future<Output = Result<R, lambda_http::Error>>,
{
    crate::telemetry::init();
    let config = Config::from_env()?;
    let deps = Deps::deployed(&config, &aws_config().await?);
    let state = Arc::new(build(&deps)?);
    lambda_http::lambda_runtime::run(lambda_http::lambda_runtime::service_fn(
        |event: lambda_http::lambda_runtime::LambdaEvent<E>| handle(state.clone(), event.payload),
    ))
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_aws_trust_store_is_exactly_amazon_trust_services() {
        let mut fingerprints = Vec::new();
        for pem in x509_parser::pem::Pem::iter_from_buffer(AMAZON_TRUST_SERVICES) {
            let pem = pem.unwrap();
            let cert = pem.parse_x509().unwrap();
            assert!(cert.tbs_certificate.is_ca(), "{}", cert.subject());
            assert_eq!(cert.subject(), cert.issuer(), "a self-signed root: {}", cert.subject());
            let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &pem.contents);
            fingerprints.push(digest.as_ref().iter().map(|b| format!("{b:02x}")).collect::<String>());
        }
        // Published SHA-256 fingerprints (amazontrust.com/repository): Amazon Root CA 1, 2, 3, 4 and
        // Starfield Services Root Certificate Authority - G2.
        assert_eq!(
            fingerprints,
            [
                "8ecde6884f3d87b1125ba31ac3fcb13d7016de7f57cc904fe1cb97c6ae98196e",
                "1ba5b2aa8c65401a82960118f80bec4f62304d83cec4713a19c39c011ea46db4",
                "18ce6cfe7bf14e60b2e347b8dfe868cb31d02ebb3ada271569f50343b46db3a4",
                "e35d28419ed02025cfa69038cd623962458da5c695fbdea3c22b0bfb25897092",
                "568d6905a2c88708a4b3025190edcfedb1974a606a13c6e5290fcb2ae63edab5",
            ]
        );
        // The client builds from them without touching the system's store.
        aws_http_client().unwrap();
    }
}
