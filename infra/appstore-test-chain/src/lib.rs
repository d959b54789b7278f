//! A self-made App Store signing chain, for tests and the local API only.
//!
//! Apple signs StoreKit 2 transactions and App Store Server Notifications as ES256 JWS whose `x5c` header
//! carries a three-certificate chain: a leaf with Apple's receipt-signing OID, an intermediate with Apple's
//! WWDR OID, and Apple Root CA G3. This crate makes a chain of the same shape under a root of its own, so the
//! real verifier (configured to trust [`TestChain::root_der`]) can be exercised end to end: valid signatures,
//! forged ones, expired leaves, missing OIDs, untrusted roots.
//!
//! Nothing here is used by a deployed function: a stage trusts only the roots its configuration names.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256,
};
use serde_json::{json, Value};
use time::{Duration, OffsetDateTime};

/// Apple's WWDR intermediate OID (1.2.840.113635.100.6.2.1).
pub const WWDR_OID: &[u64] = &[1, 2, 840, 113635, 100, 6, 2, 1];
/// Apple's receipt-signing leaf OID (1.2.840.113635.100.6.11.1).
pub const RECEIPT_SIGNER_OID: &[u64] = &[1, 2, 840, 113635, 100, 6, 11, 1];

#[derive(Debug)]
pub struct Error(String);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "test chain: {}", self.0)
    }
}

impl std::error::Error for Error {}

fn err(e: impl std::fmt::Display) -> Error {
    Error(e.to_string())
}

/// How to make the chain: the defaults give a valid one; each switch breaks one property.
#[derive(Debug, Clone, Copy, Default)]
pub struct ChainOptions {
    /// Leaf validity ends this long before now (an expired leaf) instead of a year after.
    pub leaf_expired: bool,
    /// Leave Apple's OIDs off the intermediate and the leaf.
    pub without_apple_oids: bool,
}

/// Root, intermediate and leaf certificates (DER) and the leaf's signing key.
pub struct TestChain {
    root: Vec<u8>,
    intermediate: Vec<u8>,
    leaf: Vec<u8>,
    leaf_key: EcdsaKeyPair,
}

impl std::fmt::Debug for TestChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestChain").finish_non_exhaustive()
    }
}

fn ca_params(name: &str, oid: Option<&[u64]>, not_before: OffsetDateTime) -> Result<CertificateParams, Error> {
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    params.distinguished_name.push(DnType::CommonName, name);
    params.distinguished_name.push(DnType::OrganizationName, "Facemake Test");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    params.not_before = not_before;
    params.not_after = not_before + Duration::days(3650);
    if let Some(oid) = oid {
        params.custom_extensions.push(CustomExtension::from_oid_content(oid, vec![0x05, 0x00]));
    }
    Ok(params)
}

impl TestChain {
    /// A valid chain: root → intermediate (WWDR OID) → leaf (receipt-signing OID), valid from a day ago.
    pub fn generate() -> Result<Self, Error> {
        Self::with_options(ChainOptions::default())
    }

    pub fn with_options(options: ChainOptions) -> Result<Self, Error> {
        let now = OffsetDateTime::now_utc();
        let start = now - Duration::days(1);
        let apple = |oid| (!options.without_apple_oids).then_some(oid);

        let root_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(err)?;
        let root_params = ca_params("Facemake Test Root CA", None, start)?;
        let root = root_params.self_signed(&root_key).map_err(err)?;
        let root_issuer = Issuer::new(root_params, root_key);

        let inter_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(err)?;
        let inter_params = ca_params("Facemake Test WWDR Intermediate", apple(WWDR_OID), start)?;
        let intermediate = inter_params.signed_by(&inter_key, &root_issuer).map_err(err)?;
        let inter_issuer = Issuer::new(inter_params, inter_key);

        let leaf_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(err)?;
        let mut leaf_params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
        leaf_params.distinguished_name.push(DnType::CommonName, "Facemake Test StoreKit Signer");
        leaf_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        if options.leaf_expired {
            leaf_params.not_before = now - Duration::days(30);
            leaf_params.not_after = now - Duration::days(2);
        } else {
            leaf_params.not_before = start;
            leaf_params.not_after = now + Duration::days(365);
        }
        if let Some(oid) = apple(RECEIPT_SIGNER_OID) {
            leaf_params.custom_extensions.push(CustomExtension::from_oid_content(oid, vec![0x05, 0x00]));
        }
        let leaf = leaf_params.signed_by(&leaf_key, &inter_issuer).map_err(err)?;
        let leaf_key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, leaf_key.serialized_der())
            .map_err(|e| err(format!("leaf key: {e}")))?;

        Ok(Self {
            root: root.der().to_vec(),
            intermediate: intermediate.der().to_vec(),
            leaf: leaf.der().to_vec(),
            leaf_key,
        })
    }

    /// The root certificate (DER): what a verifier must be configured to trust.
    pub fn root_der(&self) -> &[u8] {
        &self.root
    }

    /// The root certificate as standard base64 (the form `APP_STORE_ROOT_CERTS` takes).
    pub fn root_base64(&self) -> String {
        STANDARD.encode(&self.root)
    }

    /// `payload` as an ES256 JWS with the chain in `x5c`, as Apple signs it.
    pub fn sign(&self, payload: &Value) -> Result<String, Error> {
        let x5c: Vec<String> =
            [&self.leaf, &self.intermediate, &self.root].iter().map(|c| STANDARD.encode(c)).collect();
        self.sign_with_header(&json!({ "alg": "ES256", "x5c": x5c }), payload)
    }

    /// `payload` signed with any header (tests of malformed headers, e.g. without `x5c`).
    pub fn sign_with_header(&self, header: &Value, payload: &Value) -> Result<String, Error> {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(header).map_err(err)?),
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(payload).map_err(err)?)
        );
        let signature =
            self.leaf_key.sign(&SystemRandom::new(), input.as_bytes()).map_err(|_| err("signing failed"))?;
        Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref())))
    }
}

/// Milliseconds since the epoch, as Apple's payloads carry dates.
pub fn millis(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

/// A StoreKit 2 transaction payload for a consumable, with the fields Apple documents for `JWSTransaction`.
#[derive(Debug, Clone)]
pub struct Transaction {
    pub transaction_id: String,
    pub product_id: String,
    pub bundle_id: String,
    /// `Sandbox` or `Production`.
    pub environment: String,
    pub app_account_token: Option<String>,
    pub quantity: u32,
    /// `Consumable`, `Non-Consumable`, `Auto-Renewable Subscription`, `Non-Renewing Subscription`.
    pub product_type: String,
    pub revoked: bool,
}

impl Transaction {
    pub fn consumable(transaction_id: &str, product_id: &str, bundle_id: &str, environment: &str) -> Self {
        Self {
            transaction_id: transaction_id.to_owned(),
            product_id: product_id.to_owned(),
            bundle_id: bundle_id.to_owned(),
            environment: environment.to_owned(),
            app_account_token: None,
            quantity: 1,
            product_type: "Consumable".to_owned(),
            revoked: false,
        }
    }

    pub fn payload(&self) -> Value {
        let now = millis(OffsetDateTime::now_utc());
        let mut payload = json!({
            "transactionId": self.transaction_id,
            "originalTransactionId": self.transaction_id,
            "bundleId": self.bundle_id,
            "productId": self.product_id,
            "purchaseDate": now - 5_000,
            "originalPurchaseDate": now - 5_000,
            "quantity": self.quantity,
            "type": self.product_type,
            "inAppOwnershipType": "PURCHASED",
            "signedDate": now,
            "environment": self.environment,
            "transactionReason": "PURCHASE",
            "storefront": "USA",
            "storefrontId": "143441",
            "price": 1990,
            "currency": "USD",
        });
        if let Some(token) = &self.app_account_token {
            payload["appAccountToken"] = json!(token);
        }
        if self.revoked {
            payload["revocationDate"] = json!(now);
            payload["revocationReason"] = json!(0);
        }
        payload
    }
}

/// An App Store Server Notification V2 payload (`responseBodyV2DecodedPayload`).
pub fn notification(
    notification_type: &str,
    notification_uuid: &str,
    bundle_id: &str,
    environment: &str,
    signed_transaction_info: Option<&str>,
) -> Value {
    let mut data = json!({ "bundleId": bundle_id, "environment": environment, "bundleVersion": "1" });
    if let Some(info) = signed_transaction_info {
        data["signedTransactionInfo"] = json!(info);
    }
    json!({
        "notificationType": notification_type,
        "notificationUUID": notification_uuid,
        "version": "2.0",
        "signedDate": millis(OffsetDateTime::now_utc()),
        "data": data,
    })
}
