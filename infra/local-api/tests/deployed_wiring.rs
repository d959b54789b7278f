//! The deployed composition (`Deps::deployed`: Secrets Manager keys, Twilio credentials from their secret,
//! DynamoDB) driving the real routers through sign-in. AWS endpoints point at loopback stand-ins: DynamoDB
//! Local, and a local HTTP server speaking the Secrets Manager JSON protocol and Twilio's Messages API.

use std::collections::HashMap;
use std::sync::Arc;

use facemake::config::{Config, Tables};
use facemake::wiring::Deps;
use lambda_http::Body;
use testkit::{body_json, event, with_bearer};
use wiremock::matchers::{body_partial_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const APP_ARN: &str = "arn:aws:secretsmanager:us-east-1:123456789012:secret:facemake-app";
const SMS_ARN: &str = "arn:aws:secretsmanager:us-east-1:123456789012:secret:facemake-sms";

async fn secret(server: &MockServer, arn: &str, value: serde_json::Value) {
    Mock::given(method("POST"))
        .and(header("x-amz-target", "secretsmanager.GetSecretValue"))
        .and(body_partial_json(serde_json::json!({ "SecretId": arn })))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "ARN": arn, "Name": "x", "VersionId": "v1", "SecretString": value.to_string()
        })))
        .expect(1)
        .mount(server)
        .await;
}

/// The environment template.yaml gives every function, for `tables`.
fn stage_env(tables: &Tables) -> HashMap<&str, &str> {
    HashMap::from([
        ("STAGE", "dev"),
        ("USERS_TABLE", tables.users.as_str()),
        ("CREDITS_TABLE", tables.credits.as_str()),
        ("CODES_TABLE", tables.codes.as_str()),
        ("SESSIONS_TABLE", tables.sessions.as_str()),
        ("CATALOGUE_TABLE", tables.catalogue.as_str()),
        ("GENERATIONS_TABLE", tables.generations.as_str()),
        ("CHARACTERS_TABLE", tables.characters.as_str()),
        ("DEVICES_TABLE", tables.devices.as_str()),
        ("IMAGES_BUCKET", "facemake-dev-images"),
        ("PROVIDER_SECRET_ARN", "arn:aws:secretsmanager:us-east-1:000000000000:secret:providers"),
        ("PREVIEW_BASE_URL", "https://d111.cloudfront.net"),
        ("CREDIT_PRODUCTS", "app.facemake.credits.10=10"),
        ("APP_STORE_BUNDLE_ID", "app.facemake.ios"),
        ("APP_STORE_ENVIRONMENT", "Sandbox"),
        ("APP_SECRET_ARN", APP_ARN),
        ("SMS_SECRET_ARN", SMS_ARN),
        ("ALLOWED_COUNTRIES", "US"),
        ("TOKEN_ISSUER", "facemake-dev"),
    ])
}

/// The SDK configuration Lambda would load: a region and the role's credentials.
fn sdk() -> aws_config::SdkConfig {
    aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::SharedCredentialsProvider::new(
            aws_sdk_dynamodb::config::Credentials::new("k", "s", None, None, "test"),
        ))
        .build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_through_the_deployed_adapters() {
    facemake::telemetry::init();
    let secrets = MockServer::start().await;
    secret(&secrets, APP_ARN, serde_json::json!({"signingKey": "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJ"}))
        .await;
    secret(
        &secrets,
        SMS_ARN,
        serde_json::json!({"accountSid": "AC1", "authToken": "tok", "fromNumber": "+15005550006", "messagingServiceSid": ""}),
    )
    .await;
    let twilio = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/2010-04-01/Accounts/AC1/Messages.json"))
        .respond_with(ResponseTemplate::new(201).set_body_json(serde_json::json!({"sid": "SM1"})))
        .expect(1)
        .mount(&twilio)
        .await;

    let store = testkit::dynamodb_store().await;
    let tables = store.tables().clone();
    let twilio_base = twilio.uri();
    let mut env = stage_env(&tables);
    env.extend([("TWILIO_API_BASE", twilio_base.as_str()), ("STARTER_CREDITS", "5")]);
    let config = Config::from(&env).unwrap();

    // DynamoDB and Secrets Manager at their stand-ins.
    let dynamodb_endpoint = std::env::var(testkit::DYNAMODB_ENDPOINT_VAR).unwrap();
    let sdk = sdk();
    let deps = Deps::deployed_with_endpoints(&config, &sdk, &dynamodb_endpoint, &secrets.uri());

    let send = send_code::router(Arc::new(send_code::State::new(&deps)));
    let verify = verify_code::router(Arc::new(verify_code::State::new(&deps)));
    let account = account::router(Arc::new(account::State::new(&deps)));

    assert_eq!(send.handle(event("send-code.json")).await.status(), 202);
    let sent = twilio.received_requests().await.unwrap();
    let form = String::from_utf8_lossy(&sent[0].body).into_owned();
    let code = form.split(|c: char| !c.is_ascii_digit()).find(|w| w.len() == 6).unwrap().to_owned();
    assert!(form.contains("To=%2B14155550123"), "{form}");

    let mut verify_req = event("verify-code.json");
    *verify_req.body_mut() = Body::Text(format!(r#"{{"phone":"+14155550123","code":"{code}"}}"#));
    let signed_in = verify.handle(verify_req).await;
    assert_eq!(signed_in.status(), 200, "{}", body_json(&signed_in));
    let session = body_json(&signed_in);
    assert_eq!(session["user"]["credits"], 5);

    let me = account.handle(with_bearer(event("get-me.json"), session["accessToken"].as_str().unwrap())).await;
    assert_eq!(me.status(), 200);
    assert_eq!(body_json(&me)["id"], session["user"]["id"]);

    // The catalogue and credits routes on the same deployed adapters.
    local_api::seed_catalogue(&store, &local_api::catalogue_dir().join("catalogue.yaml")).await.unwrap();
    let templates = templates::router(Arc::new(templates::State::new(&deps)));
    let credits = credits::router(Arc::new(credits::State::new(&deps).unwrap()));
    let list = templates.handle(event("list-templates.json")).await;
    assert_eq!(list.status(), 200, "{}", body_json(&list));
    let items = body_json(&list)["items"].as_array().unwrap().clone();
    assert!(!items.is_empty());
    assert!(items[0]["previewUrl"].as_str().unwrap().starts_with("https://d111.cloudfront.net/previews/"));
    let balance =
        credits.handle(with_bearer(event("get-credits.json"), session["accessToken"].as_str().unwrap())).await;
    assert_eq!(body_json(&balance)["balance"], 5);
    assert_eq!(body_json(&balance)["products"][0]["productId"], "app.facemake.credits.10");
    // The mocks' `expect(1)`: each secret was fetched once for all the routers' requests, and one text went out.
}

#[tokio::test]
async fn an_unreachable_database_is_503_not_500() {
    let secrets = MockServer::start().await;
    secret(&secrets, APP_ARN, serde_json::json!({"signingKey": "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJ"}))
        .await;
    let tables = Tables {
        users: "u".into(),
        credits: "c".into(),
        codes: "o".into(),
        sessions: "s".into(),
        catalogue: "t".into(),
        generations: "g".into(),
        characters: "ch".into(),
        devices: "dv".into(),
    };
    let env = stage_env(&tables);
    let config = Config::from(&env).unwrap();
    let sdk = sdk();
    // Port 9 (discard) refuses connections on loopback.
    let deps = Deps::deployed_with_endpoints(&config, &sdk, "http://127.0.0.1:9", &secrets.uri());
    let verify = verify_code::router(Arc::new(verify_code::State::new(&deps)));
    let response = verify.handle(event("verify-code.json")).await;
    assert_eq!(response.status(), 503, "{}", body_json(&response));
    assert_eq!(body_json(&response)["error"]["code"], "UPSTREAM_UNAVAILABLE");
}
