//! Send Consumption Information (issue 13): the App Store Server API adapter against a local stand-in with the
//! request Apple documents (`PUT /inApps/v2/transactions/consumption/{transactionId}`, an ES256 bearer token
//! signed with the In-App Purchase key, the v2 `ConsumptionRequest` body), how Apple's answers are classified,
//! and the credits service answering `CONSUMPTION_REQUEST` only with the user's consent.

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use facemake::adapters::appstore_api::{parse_api_key, ApiKey, AppStoreApi, KeySource, ReqwestTransport};
use facemake::config::AppStoreEnvironment;
use facemake::ports::{ConsumptionReport, ConsumptionReporter, ReportOutcome};
use secrecy::SecretString;
use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const KEY_ID: &str = "2X9R4HXF34";
const ISSUER_ID: &str = "57246542-96fe-1a63-e053-0824d011072a";
const BUNDLE: &str = "app.facemake.ios";
const TX: &str = "2000000845123456";

/// An In-App Purchase key as App Store Connect issues it (a P-256 key in PKCS#8 PEM), and its public point.
fn iap_key() -> (ApiKey, Vec<u8>) {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let key = ApiKey {
        key_id: KEY_ID.to_owned(),
        issuer_id: ISSUER_ID.to_owned(),
        private_key: SecretString::from(pair.serialize_pem()),
    };
    (key, pair.public_key_raw().to_vec())
}

fn api(server: &MockServer, key: Option<ApiKey>) -> AppStoreApi {
    let transport = ReqwestTransport::new(Some(server.uri()));
    AppStoreApi::new(KeySource::Fixed(Arc::new(key)), BUNDLE, AppStoreEnvironment::Sandbox, transport)
}

fn report(delivered: bool, milli: u32) -> ConsumptionReport {
    ConsumptionReport {
        transaction_id: TX.to_owned(),
        delivered,
        consumption_milli: milli,
        sample_content_provided: true,
    }
}

async fn answering(status: u16, body: Value) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("PUT"))
        .and(path(format!("/inApps/v2/transactions/consumption/{TX}")))
        .respond_with(ResponseTemplate::new(status).set_body_json(body))
        .mount(&server)
        .await;
    server
}

#[tokio::test]
async fn the_request_is_the_documented_put_signed_with_the_in_app_purchase_key() {
    let server = answering(202, json!({})).await;
    let (key, public_point) = iap_key();
    assert_eq!(api(&server, Some(key)).send(&report(true, 40_000)).await.unwrap(), ReportOutcome::Sent);

    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!((r.method.as_str(), r.url.path()), ("PUT", "/inApps/v2/transactions/consumption/2000000845123456"));
    let body: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        body,
        json!({
            "customerConsented": true,
            "consumptionPercentage": 40000,
            "deliveryStatus": "DELIVERED",
            "sampleContentProvided": true
        })
    );
    assert_eq!(r.headers["content-type"], "application/json");

    // The bearer token: ES256 with the key's id, for this issuer and bundle, audience appstoreconnect-v1,
    // valid for minutes, and its signature holds under the key's public half.
    let token = r.headers["authorization"].to_str().unwrap().strip_prefix("Bearer ").unwrap().to_owned();
    let header: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(token.split('.').next().unwrap()).unwrap()).unwrap();
    assert_eq!((header["alg"].as_str(), header["kid"].as_str()), (Some("ES256"), Some(KEY_ID)));
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    validation.set_audience(&["appstoreconnect-v1"]);
    validation.set_issuer(&[ISSUER_ID]);
    let decoding = jsonwebtoken::DecodingKey::from_ec_der(&public_point);
    let claims = jsonwebtoken::decode::<Value>(&token, &decoding, &validation).unwrap().claims;
    assert_eq!(claims["bid"], BUNDLE);
    let lifetime = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
    assert!((60..=3600).contains(&lifetime), "Apple refuses tokens valid for over an hour: {lifetime}");
    // Another key's public half does not verify it.
    let (_, other) = iap_key();
    let other = jsonwebtoken::DecodingKey::from_ec_der(&other);
    assert!(jsonwebtoken::decode::<Value>(&token, &other, &validation).is_err());
}

#[tokio::test]
async fn undelivered_is_reported_with_zero_consumption_as_apple_requires() {
    let server = answering(202, json!({})).await;
    api(&server, Some(iap_key().0)).send(&report(false, 75_000)).await.unwrap();
    let body: Value = serde_json::from_slice(&server.received_requests().await.unwrap()[0].body).unwrap();
    assert_eq!(
        (body["deliveryStatus"].as_str(), body["consumptionPercentage"].as_u64()),
        (Some("UNDELIVERED_OTHER"), Some(0))
    );
}

#[tokio::test]
async fn apple_refusing_is_final_and_rate_limits_or_outages_are_retried() {
    let refused = answering(400, json!({"errorCode": 4000023, "errorMessage": "Invalid request."})).await;
    assert_eq!(
        api(&refused, Some(iap_key().0)).send(&report(true, 0)).await.unwrap(),
        ReportOutcome::Refused { status: 400, code: Some(4000023) }
    );
    let unknown = answering(404, json!({"errorCode": 4040010, "errorMessage": "Transaction id not found."})).await;
    assert!(matches!(
        api(&unknown, Some(iap_key().0)).send(&report(true, 0)).await.unwrap(),
        ReportOutcome::Refused { status: 404, .. }
    ));
    for status in [429, 500, 503] {
        let server = answering(status, json!({"errorCode": 4290000, "errorMessage": "Rate limit exceeded."})).await;
        let err = api(&server, Some(iap_key().0)).send(&report(true, 0)).await.unwrap_err();
        assert!(matches!(err, facemake::ports::PortError::Unavailable { .. }), "{status}: {err:?}");
    }
    // Nobody listening: unavailable too (Apple redelivers the notification).
    let closed = ReqwestTransport::new(Some("http://127.0.0.1:9".to_owned()));
    let api =
        AppStoreApi::new(KeySource::Fixed(Arc::new(Some(iap_key().0))), BUNDLE, AppStoreEnvironment::Sandbox, closed);
    assert!(matches!(api.send(&report(true, 0)).await.unwrap_err(), facemake::ports::PortError::Unavailable { .. }));
}

#[tokio::test]
async fn without_a_key_nothing_is_sent() {
    let server = answering(202, json!({})).await;
    assert_eq!(api(&server, None).send(&report(true, 0)).await.unwrap(), ReportOutcome::NotConfigured);
    assert!(server.received_requests().await.unwrap().is_empty());
}

#[test]
fn the_secret_is_the_template_placeholder_or_a_whole_key() {
    assert!(parse_api_key(r#"{"keyId":"","issuerId":"","privateKey":""}"#).unwrap().is_none());
    let pem = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap().serialize_pem();
    let whole = json!({"keyId": KEY_ID, "issuerId": ISSUER_ID, "privateKey": pem}).to_string();
    assert_eq!(parse_api_key(&whole).unwrap().unwrap().key_id, KEY_ID);
    for broken in [r#"{"keyId":"K","issuerId":"","privateKey":"x"}"#.to_owned(), "not json".to_owned()] {
        let err = parse_api_key(&broken).err().unwrap();
        assert!(!format!("{err:?}").contains("PRIVATE"), "the error never echoes the secret: {err:?}");
    }
    let leaked = json!({"keyId": KEY_ID, "issuerId": ISSUER_ID, "privateKey": "SECRET-but-not-pem"}).to_string();
    assert!(!format!("{:?}", parse_api_key(&leaked).err().unwrap()).contains("SECRET"));
}
