//! Verification of Apple-signed data: StoreKit 2 transactions (posted by the app) and App Store Server
//! Notifications V2 (posted by Apple), through Apple's own verifier (`app-store-server-library`): the `x5c`
//! chain must end in a configured root with Apple's WWDR and receipt-signing OIDs on the intermediate and the
//! leaf, the ES256 signature must hold, and bundle id, environment (and for Production the app's Apple ID) must
//! be this stage's.

use app_store_server_library::models::app_store_environment::Environment;
use app_store_server_library::models::jws_transaction_decoded_payload::JWSTransactionDecodedPayload;
use app_store_server_library::models::product_type::ProductType;
use app_store_server_library::signed_data_verifier::{SignedDataVerifier, SignedDataVerifierError};

use crate::config::{AppStoreConfig, AppStoreEnvironment};

/// Why signed data was refused. The message is safe to show; nothing of the payload is echoed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("the signature or its certificate chain could not be verified")]
    Signature,
    #[error("the signed data is for another app")]
    WrongApp,
    #[error("the signed data is from another App Store environment")]
    WrongEnvironment,
    #[error("the signed data is malformed")]
    Malformed,
    #[error("the notification was signed outside the window in which it is accepted")]
    Stale,
}

impl From<SignedDataVerifierError> for Rejection {
    fn from(e: SignedDataVerifierError) -> Self {
        match e {
            SignedDataVerifierError::InvalidAppIdentifier | SignedDataVerifierError::InvalidAppAppleId => {
                Rejection::WrongApp
            }
            SignedDataVerifierError::InvalidEnvironment => Rejection::WrongEnvironment,
            SignedDataVerifierError::InternalDecodeError(_)
            | SignedDataVerifierError::InternalDeserializationError(_) => Rejection::Malformed,
            SignedDataVerifierError::VerificationFailure
            | SignedDataVerifierError::InternalChainVerifierError(_)
            | SignedDataVerifierError::InternalJWSError(_) => Rejection::Signature,
        }
    }
}

/// A verified StoreKit 2 transaction: what the credits service needs of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedTransaction {
    pub transaction_id: String,
    pub original_transaction_id: String,
    pub product_id: String,
    pub consumable: bool,
    pub quantity: u32,
    /// The `appAccountToken` the app set at purchase (the app sets it to the user id in UUID form).
    pub app_account_token: Option<uuid::Uuid>,
    /// Apple refunded or revoked it.
    pub revoked: bool,
    pub environment: String,
}

/// A verified App Store Server Notification V2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub notification_uuid: String,
    /// `REFUND`, `REFUND_REVERSED`, `CONSUMPTION_REQUEST`, `TEST`, ... as Apple sends it.
    pub notification_type: String,
    pub subtype: Option<String>,
    /// The transaction in `data.signedTransactionInfo`, itself verified.
    pub transaction: Option<SignedTransaction>,
    /// When Apple signed it (Unix seconds).
    pub signed_at: i64,
}

pub struct AppStoreVerifier {
    verifier: SignedDataVerifier,
}

impl std::fmt::Debug for AppStoreVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppStoreVerifier").finish_non_exhaustive()
    }
}

fn transaction(t: JWSTransactionDecodedPayload) -> Result<SignedTransaction, Rejection> {
    let transaction_id = t.transaction_id.filter(|s| !s.is_empty()).ok_or(Rejection::Malformed)?;
    Ok(SignedTransaction {
        original_transaction_id: t.original_transaction_id.unwrap_or_else(|| transaction_id.clone()),
        transaction_id,
        product_id: t.product_id.ok_or(Rejection::Malformed)?,
        consumable: t.r#type == Some(ProductType::Consumable),
        quantity: t.quantity.map_or(Ok(1), u32::try_from).map_err(|_| Rejection::Malformed)?,
        app_account_token: t.app_account_token,
        revoked: t.revocation_date.is_some(),
        environment: match t.environment {
            Some(Environment::Production) => "Production".to_owned(),
            Some(Environment::Sandbox) => "Sandbox".to_owned(),
            other => format!("{other:?}"),
        },
    })
}

impl AppStoreVerifier {
    pub fn new(config: &AppStoreConfig) -> Result<Self, String> {
        let environment = match config.environment {
            AppStoreEnvironment::Sandbox => Environment::Sandbox,
            AppStoreEnvironment::Production => Environment::Production,
        };
        // Online checks on: certificates must be valid now (not only when the JWS says it was signed), and
        // verified chains are cached for a few minutes.
        let verifier = SignedDataVerifier::new(
            config.root_certs.clone(),
            environment,
            config.bundle_id.clone(),
            config.app_apple_id,
            true,
        )
        .map_err(|e| format!("App Store verifier: {e}"))?;
        Ok(Self { verifier })
    }

    pub fn transaction(&self, signed_transaction: &str) -> Result<SignedTransaction, Rejection> {
        transaction(self.verifier.verify_and_decode_signed_transaction(signed_transaction)?)
    }

    pub fn notification(&self, signed_payload: &str) -> Result<Notification, Rejection> {
        let n = self.verifier.verify_and_decode_notification(signed_payload)?;
        let transaction = match n.data.as_ref().and_then(|d| d.signed_transaction_info.as_deref()) {
            Some(info) => Some(self.transaction(info)?),
            None => None,
        };
        Ok(Notification {
            notification_uuid: n.notification_uuid.filter(|u| !u.is_empty()).ok_or(Rejection::Malformed)?,
            notification_type: n.notification_type.map(|t| t.raw_value().to_owned()).ok_or(Rejection::Malformed)?,
            subtype: n.subtype.and_then(|s| serde_json::to_value(s).ok()).and_then(|v| v.as_str().map(str::to_owned)),
            transaction,
            signed_at: n.signed_date.map(|d| d.timestamp()).ok_or(Rejection::Malformed)?,
        })
    }
}
