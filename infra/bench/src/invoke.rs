//! One deployed function on loopback stand-ins, as `infra/scripts/invoke.sh` runs it (through the `local-stage`
//! binary): the stage it needs (the template's tables in DynamoDB Local, the buckets and secrets its environment
//! names in moto), the environment template.yaml gives it, and a signed-in user's access token.
//!
//! The environment is read by [`crate::iam::Template`], the IAM conformance test's reading of the template
//! (Globals merged, `!Ref`, `!GetAtt` and `!Sub` resolved to logical names), and each logical name is then
//! replaced by its stand-in: a table's by `{prefix}{LogicalId}`, a bucket's and a secret's by the ones made
//! here, a parameter's by its `Default`. So the function runs with the variables the stack gives it, not a
//! copy of them. The few values that only exist in a deployed stack (the CloudFront domain of
//! `PREVIEW_BASE_URL`) get a local value from [`LOCAL_VALUES`]; any other value the reading cannot resolve is
//! an error, not a silently missing variable.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use facemake::adapters::dynamodb::DynamoStore;
use facemake::adapters::memory::MemoryOutbox;
use facemake::config::{AuthPolicy, Tables};
use facemake::ports::SystemClock;
use serde_json::{json, Value as Json};
use serde_yaml_ng::Value;

use crate::iam;

/// How the template's reading writes a secret's `!Ref` (its ARN), with the logical id after it.
const SECRET_ARN: &str = "arn:aws:secretsmanager:REGION:ACCOUNT:secret:";
/// How it writes a parameter's `!Ref`, with the parameter's name after it.
const PARAMETER: &str = "PARAMETER:";

/// Local values of variables whose template value only exists in a deployed stack. `PREVIEW_BASE_URL` is the
/// CloudFront distribution's domain there; here it is where the local API serves the seed catalogue's
/// previews (`cargo run -p local-api`, port 3000).
/// `REPLICATE_WEBHOOK_URL` is the stage's API there; locally nothing can call back, so it is left empty and the
/// worker waits for Replicate's renders.
pub const LOCAL_VALUES: &[(&str, &str)] =
    &[("PREVIEW_BASE_URL", "http://127.0.0.1:3000/_local/catalogue/"), ("REPLICATE_WEBHOOK_URL", "")];

/// The region, and the credentials the function's AWS clients sign with (the stand-ins check none).
const REGION: &str = "us-east-1";
const CREDENTIALS: &str = "local";

/// What a function of template.yaml needs to run locally.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The function as the template's reading has it (its `env` in logical names).
    pub function: iam::Function,
    /// Its `Timeout` (or the Globals' one), in seconds.
    pub timeout_secs: u64,
    /// Its `MemorySize` (or the Globals' one), in MB.
    pub memory_mb: u64,
    /// Resource logical id → type.
    types: BTreeMap<String, String>,
    /// Parameter name → its `Default`, longest names first (so `PARAMETER:StageX` is never read as `Stage`).
    parameters: Vec<(String, String)>,
    /// The secrets its environment names: logical id → the stand-in value.
    secrets: BTreeMap<String, String>,
    /// The buckets its environment names (logical ids).
    buckets: BTreeSet<String>,
    /// Variables the reading could not resolve → their local value.
    local_values: BTreeMap<String, String>,
}

/// The stand-ins one [`Plan`] runs on.
#[derive(Debug, Clone)]
pub struct LocalStage {
    pub dynamodb_endpoint: String,
    pub moto_endpoint: String,
    pub prefix: String,
    pub tables: Tables,
    /// Bucket logical id → its name in moto.
    pub buckets: BTreeMap<String, String>,
    /// Secret logical id → its ARN in moto.
    pub secrets: BTreeMap<String, String>,
}

fn mapping<'a>(v: &'a Value, path: &[&str]) -> Option<&'a serde_yaml_ng::Mapping> {
    path.iter().try_fold(v, |v, key| v.get(*key)).and_then(Value::as_mapping)
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A secret's stand-in value: its `SecretString`, or for a generated one its `SecretStringTemplate` with the
/// generated key set to the local API's signing key, so the access tokens the local API issues verify.
fn stand_in_secret(id: &str, resource: &Value) -> Result<String, String> {
    let props = &resource["Properties"];
    if let Some(value) = props["SecretString"].as_str() {
        return Ok(value.to_owned());
    }
    let generate = &props["GenerateSecretString"];
    let key = generate["GenerateStringKey"].as_str().ok_or_else(|| format!("{id}: no SecretString to stand in"))?;
    let template = generate["SecretStringTemplate"].as_str().unwrap_or("{}");
    let mut value: serde_json::Map<String, Json> =
        serde_json::from_str(template).map_err(|e| format!("{id}: SecretStringTemplate is not a JSON object: {e}"))?;
    let signing_key = std::str::from_utf8(local_api::LOCAL_SIGNING_KEY).map_err(|e| e.to_string())?;
    value.insert(key.to_owned(), signing_key.into());
    Ok(Json::Object(value).to_string())
}

impl Plan {
    /// The function of `template` (template.yaml's text) whose binary is `binary` (its directory under
    /// `functions/`).
    pub fn read(template: &str, binary: &str) -> Result<Self, String> {
        let parsed = iam::Template::parse(template)?;
        let Some(function) = parsed.functions.values().find(|f| f.binary == binary).cloned() else {
            let binaries: Vec<&str> = parsed.functions.values().map(|f| f.binary.as_str()).collect();
            return Err(format!("template.yaml has no function {binary} (its functions: {})", binaries.join(", ")));
        };
        let doc: Value = serde_yaml_ng::from_str(template).map_err(|e| format!("template.yaml: {e}"))?;
        let resources = mapping(&doc, &["Resources"]).ok_or("template.yaml has no Resources")?;
        let types: BTreeMap<String, String> = resources
            .iter()
            .filter_map(|(id, r)| Some((id.as_str()?.to_owned(), r["Type"].as_str()?.to_owned())))
            .collect();
        let mut parameters: Vec<(String, String)> = mapping(&doc, &["Parameters"])
            .into_iter()
            .flatten()
            .filter_map(|(name, p)| Some((name.as_str()?.to_owned(), p.get("Default").and_then(scalar)?)))
            .collect();
        parameters.sort_by_key(|(name, _)| std::cmp::Reverse(name.len()));

        let props = &resources[function.logical_id.as_str()]["Properties"];
        let globals = &doc["Globals"]["Function"];
        let number = |key: &str, default: u64| {
            props.get(key).or_else(|| globals.get(key)).and_then(Value::as_u64).unwrap_or(default)
        };
        let (timeout_secs, memory_mb) = (number("Timeout", 3), number("MemorySize", 128));

        let mut secrets = BTreeMap::new();
        let mut buckets = BTreeSet::new();
        for value in function.env.values() {
            if let Some(id) = value.strip_prefix(SECRET_ARN) {
                let resource = resources.get(id).ok_or_else(|| format!("the secret {id} is not a resource"))?;
                secrets.insert(id.to_owned(), stand_in_secret(id, resource)?);
            } else if types.get(value).map(String::as_str) == Some("AWS::S3::Bucket") {
                buckets.insert(value.clone());
            }
        }
        // Variables the template sets that the reading left out (a value it cannot resolve).
        let mut local_values = BTreeMap::new();
        for vars in [mapping(globals, &["Environment", "Variables"]), mapping(props, &["Environment", "Variables"])] {
            for name in vars.into_iter().flatten().filter_map(|(k, _)| k.as_str()) {
                if function.env.contains_key(name) {
                    continue;
                }
                let (_, value) = LOCAL_VALUES.iter().find(|(var, _)| *var == name).ok_or_else(|| {
                    format!("template.yaml gives {name} a value that has no local stand-in: add one to LOCAL_VALUES")
                })?;
                local_values.insert(name.to_owned(), (*value).to_owned());
            }
        }
        Ok(Self { function, timeout_secs, memory_mb, types, parameters, secrets, buckets, local_values })
    }

    /// A value of the function's environment (in logical names) with its stand-in names.
    fn local(&self, value: &str, stage: &LocalStage) -> Result<String, String> {
        if let Some(id) = value.strip_prefix(SECRET_ARN) {
            return stage.secrets.get(id).cloned().ok_or_else(|| format!("no stand-in for the secret {id}"));
        }
        match self.types.get(value).map(String::as_str) {
            Some("AWS::DynamoDB::Table") => return Ok(format!("{}{value}", stage.prefix)),
            Some("AWS::S3::Bucket") => {
                return stage.buckets.get(value).cloned().ok_or_else(|| format!("no stand-in for the bucket {value}"))
            }
            Some(other) => return Err(format!("a reference to {value} ({other}), which has no local stand-in")),
            None => {}
        }
        let mut out = value.to_owned();
        for (name, default) in &self.parameters {
            out = out.replace(&format!("{PARAMETER}{name}"), default);
        }
        if out.contains(PARAMETER) || out.starts_with("arn:aws:") {
            return Err(format!("{value}: a parameter without a Default, or an ARN with no local stand-in"));
        }
        Ok(out)
    }

    /// The function's whole environment on `stage`: its variables from template.yaml, then what Lambda sets
    /// (region, credentials, the function's name and memory), with every AWS client pointed at the stand-ins.
    /// `AWS_LAMBDA_RUNTIME_API` is left to whoever runs it.
    pub fn environment(&self, stage: &LocalStage) -> Result<BTreeMap<String, String>, String> {
        let mut env = BTreeMap::new();
        for (name, value) in &self.function.env {
            let local = self.local(value, stage).map_err(|e| format!("{name}: {e}"))?;
            env.insert(name.clone(), local);
        }
        env.extend(self.local_values.clone());
        let binary = self.function.binary.as_str();
        let lambda = [
            ("AWS_REGION", REGION),
            ("AWS_DEFAULT_REGION", REGION),
            ("AWS_ACCESS_KEY_ID", CREDENTIALS),
            ("AWS_SECRET_ACCESS_KEY", CREDENTIALS),
            ("AWS_SESSION_TOKEN", CREDENTIALS),
            ("AWS_ENDPOINT_URL_DYNAMODB", stage.dynamodb_endpoint.as_str()),
            ("AWS_ENDPOINT_URL_S3", stage.moto_endpoint.as_str()),
            ("AWS_ENDPOINT_URL_SECRETS_MANAGER", stage.moto_endpoint.as_str()),
            ("AWS_LAMBDA_FUNCTION_NAME", binary),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
            ("AWS_LAMBDA_LOG_STREAM_NAME", "local"),
            ("_HANDLER", "bootstrap"),
            ("TZ", ":UTC"),
        ];
        env.extend(lambda.into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())));
        env.insert("AWS_LAMBDA_FUNCTION_MEMORY_SIZE".into(), self.memory_mb.to_string());
        env.insert("AWS_LAMBDA_LOG_GROUP_NAME".into(), format!("/aws/lambda/local-{binary}"));
        Ok(env)
    }
}

impl LocalStage {
    /// The stand-ins `plan` runs on under `prefix`: every table of the template (seeded with the catalogue)
    /// and the buckets and secrets its environment names, created where they are not there yet; the secrets
    /// are given their stand-in values either way.
    pub async fn ensure(
        plan: &Plan,
        dynamodb_endpoint: &str,
        moto_endpoint: &str,
        prefix: &str,
    ) -> Result<Self, String> {
        let tables = crate::ensure_tables(dynamodb_endpoint, prefix).await?;
        let moto = crate::sdk(moto_endpoint);
        let mut buckets = BTreeMap::new();
        for id in &plan.buckets {
            let name = format!("{prefix}{id}").to_lowercase();
            crate::ensure_bucket(&moto, &name).await?;
            buckets.insert(id.clone(), name);
        }
        let mut secrets = BTreeMap::new();
        for (id, value) in &plan.secrets {
            secrets.insert(id.clone(), crate::ensure_secret(&moto, &format!("{prefix}{id}"), value).await?);
        }
        Ok(Self {
            dynamodb_endpoint: dynamodb_endpoint.to_owned(),
            moto_endpoint: moto_endpoint.to_owned(),
            prefix: prefix.to_owned(),
            tables,
            buckets,
            secrets,
        })
    }

    /// Signs `phone` in through the local API on this stage's tables (send-code, the code from its outbox,
    /// verify-code) and returns the access token, which the function (its `env`) accepts: the local API signs
    /// with the key the stand-in app secret holds, and with the issuer and audience of `env`.
    pub async fn sign_in(&self, env: &BTreeMap<String, String>, phone: &str) -> Result<String, String> {
        let vars: std::collections::HashMap<&str, &str> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let mut policy = AuthPolicy::from_env(&vars).map_err(|e| e.to_string())?;
        // The token only has to match the function's policy; the limits on texting and verifying are lifted so
        // the same number can be signed in again and again.
        policy.resend_cooldown_secs = 0;
        policy.max_codes_per_day = usize::MAX;
        policy.ip_limit_per_hour = u32::MAX;
        policy.verify_ip_limit_per_hour = u32::MAX;
        let client = aws_sdk_dynamodb::Client::new(&crate::sdk(&self.dynamodb_endpoint));
        let store = DynamoStore::new(client, self.tables.clone());
        let outbox = MemoryOutbox::new();
        let api = local_api::LocalApi::new(
            Arc::new(store),
            outbox.clone(),
            policy,
            Arc::new(SystemClock),
            "http://127.0.0.1:3000",
        )
        .await?;
        let e164 = facemake::domain::PhoneNumber::parse(phone, None)
            .map_err(|e| format!("--as {phone}: {e}"))?
            .e164()
            .to_owned();
        post(&api, "/v1/auth/send-code", json!({ "phone": e164 })).await?;
        let text = outbox.messages_to(&e164).into_iter().next().ok_or("the local API texted no code")?;
        let code =
            text.body.split(|c: char| !c.is_ascii_digit()).find(|w| w.len() == 6).ok_or("a text without a code")?;
        let session = post(&api, "/v1/auth/verify-code", json!({ "phone": e164, "code": code })).await?;
        session["accessToken"].as_str().map(str::to_owned).ok_or_else(|| format!("verify-code answered {session}"))
    }
}

/// `POST path` with a JSON body to the local API, from 127.0.0.1; the JSON it answers with a 2xx.
async fn post(api: &local_api::LocalApi, path: &str, body: Json) -> Result<Json, String> {
    let request = http::Request::builder()
        .method(http::Method::POST)
        .uri(path)
        .header("content-type", "application/json")
        .header("user-agent", "invoke.sh")
        .body(())
        .map_err(|e| e.to_string())?;
    let (parts, ()) = request.into_parts();
    let peer = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let event = local_api::api_gateway_event(&parts, body.to_string().as_bytes(), peer);
    let request = lambda_http::request::from_str(&event.to_string()).map_err(|e| format!("{path}: {e}"))?;
    let response = api.router.handle(request).await;
    let answer: Json = serde_json::from_slice(response.body().as_ref()).unwrap_or(Json::Null);
    if !response.status().is_success() {
        return Err(format!("the local API answered {path} with {}: {answer}", response.status()));
    }
    Ok(answer)
}

/// The event `fixture` (its JSON text) with `Bearer {token}` as its `authorization` header when a token is
/// given (in place of the placeholder, or added: catalogue routes then flag the caller's favourites).
pub fn event_with_token(fixture: &str, token: Option<&str>) -> Result<String, String> {
    let Some(token) = token else { return Ok(fixture.to_owned()) };
    let mut event: Json = serde_json::from_str(fixture).map_err(|e| format!("the fixture is not JSON: {e}"))?;
    let headers = event
        .get_mut("headers")
        .and_then(Json::as_object_mut)
        .ok_or("--as needs an API Gateway event (one with headers) to carry the token")?;
    headers.insert("authorization".into(), format!("Bearer {token}").into());
    serde_json::to_string_pretty(&event).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stage() -> LocalStage {
        LocalStage {
            dynamodb_endpoint: "http://127.0.0.1:1".into(),
            moto_endpoint: "http://127.0.0.1:2".into(),
            prefix: "p-".into(),
            tables: Tables::prefixed("p-"),
            buckets: BTreeMap::from([("ImagesBucket".to_owned(), "p-imagesbucket".to_owned())]),
            secrets: ["AppSecret", "SmsSecret", "ProviderSecret", "AppStoreApiSecret", "ReplicateWebhookSecret"]
                .into_iter()
                .chain(["ApnsKeySecret", "OpenAiWebhookSecret"])
                .map(|id| (id.to_owned(), format!("arn:moto:{id}")))
                .collect(),
        }
    }

    fn template() -> String {
        testkit::schema::template().unwrap()
    }

    #[test]
    fn every_function_gets_the_template_environment_with_local_names() {
        let template = template();
        for binary in ["send-code", "verify-code", "account", "templates", "credits", "app-store-notifications"]
            .into_iter()
            .chain(["generate", "characters", "replicate-webhooks", "openai-webhooks", "generation-worker"])
            .chain(["generation-reconciler"])
        {
            let plan = Plan::read(&template, binary).unwrap();
            let env = plan.environment(&stage()).unwrap();
            assert_eq!(env["USERS_TABLE"], "p-UsersTable", "{binary}");
            assert_eq!(env["GENERATIONS_TABLE"], "p-GenerationsTable");
            assert_eq!(env["IMAGES_BUCKET"], "p-imagesbucket");
            assert_eq!(env["APP_SECRET_ARN"], "arn:moto:AppSecret");
            assert_eq!(env["PROVIDER_SECRET_ARN"], "arn:moto:ProviderSecret");
            // Parameters take their defaults, inside !Sub too.
            assert_eq!((env["STAGE"].as_str(), env["TOKEN_ISSUER"].as_str()), ("dev", "facemake-dev"));
            assert_eq!(env["MAX_GENERATIONS_IN_FLIGHT"], "3");
            assert_eq!(env["APP_STORE_APP_APPLE_ID"], "");
            assert_eq!(env["PREVIEW_BASE_URL"], "http://127.0.0.1:3000/_local/catalogue/");
            assert_eq!(env["AWS_ENDPOINT_URL_DYNAMODB"], "http://127.0.0.1:1");
            assert_eq!(env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"], plan.memory_mb.to_string());
            for (name, value) in &env {
                assert!(!value.contains("REGION") && !value.contains(PARAMETER), "{binary}: {name}={value}");
            }
            // The functions' own reading of it accepts it.
            let vars: std::collections::HashMap<&str, &str> =
                env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            facemake::config::Config::from(&vars).unwrap_or_else(|e| panic!("{binary}: {e}"));
            // Each function's own secrets: the In-App Purchase key only where it is given.
            let mut secrets = vec!["AppSecret", "ProviderSecret", "SmsSecret"];
            if binary == "app-store-notifications" {
                assert_eq!(env["APP_STORE_API_SECRET_ARN"], "arn:moto:AppStoreApiSecret");
                secrets.insert(1, "AppStoreApiSecret");
            }
            // Replicate's webhook key only where callbacks are verified; the worker runs without a webhook URL
            // locally (it waits for Replicate instead).
            if binary == "replicate-webhooks" {
                assert_eq!(env["REPLICATE_WEBHOOK_SECRET_ARN"], "arn:moto:ReplicateWebhookSecret");
                secrets.insert(2, "ReplicateWebhookSecret");
            }
            // OpenAI's webhook key only where its events are verified.
            if binary == "openai-webhooks" {
                assert_eq!(env["OPENAI_WEBHOOK_SECRET_ARN"], "arn:moto:OpenAiWebhookSecret");
                secrets.insert(1, "OpenAiWebhookSecret");
            }
            if binary == "generation-worker" {
                assert_eq!(env["REPLICATE_WEBHOOK_URL"], "");
            }
            // The APNs key only where generations end (and are pushed about).
            if ["generation-worker", "replicate-webhooks", "openai-webhooks", "generation-reconciler"].contains(&binary)
            {
                assert_eq!(env["APNS_KEY_SECRET_ARN"], "arn:moto:ApnsKeySecret", "{binary}");
                secrets.insert(0, "ApnsKeySecret");
            } else {
                assert!(!env.contains_key("APNS_KEY_SECRET_ARN"), "{binary}");
            }
            assert_eq!(plan.secrets.keys().collect::<Vec<_>>(), secrets, "{binary}");
            assert_eq!(plan.buckets.iter().collect::<Vec<_>>(), ["ImagesBucket"]);
        }
        let plan = |binary| Plan::read(&template, binary).unwrap();
        let timeouts = ["templates", "account", "generation-worker"].map(|b| plan(b).timeout_secs);
        assert_eq!(timeouts, [10, 30, 300], "the function's own Timeout, else the Globals'");
        assert_eq!([plan("templates").memory_mb, plan("generation-worker").memory_mb], [128, 1024]);
    }

    #[test]
    fn the_stand_in_secrets_are_the_template_placeholders_and_the_local_signing_key() {
        let plan = Plan::read(&template(), "send-code").unwrap();
        let sms: Json = serde_json::from_str(&plan.secrets["SmsSecret"]).unwrap();
        assert_eq!(sms["accountSid"], "", "the template's empty Twilio credentials");
        let keys = facemake::adapters::keys::keys_from_secret_json(&plan.secrets["AppSecret"]).unwrap();
        let local = facemake::adapters::keys::keys_from_master(local_api::LOCAL_SIGNING_KEY, None);
        assert_eq!(keys.access[0].kid, local.access[0].kid, "tokens the local API issues verify");
    }

    #[test]
    fn unknown_functions_and_unresolvable_values_are_errors() {
        let err = Plan::read(&template(), "nope").unwrap_err();
        assert!(err.contains("no function nope") && err.contains("templates"), "{err}");
        let odd = "Parameters:\n  P: {Type: String}\nResources:\n  D: {Type: AWS::CloudFront::Distribution}\n  F:\n    Type: AWS::Serverless::Function\n    Metadata: {BuildProperties: {Binary: f}}\n    Properties:\n      Environment:\n        Variables:\n          HOST: !GetAtt D.DomainName\n          P: !Ref P\n";
        assert!(Plan::read(odd, "f").unwrap_err().contains("HOST"));
        let no_default = odd.replace("          HOST: !GetAtt D.DomainName\n", "");
        let err = Plan::read(&no_default, "f").unwrap().environment(&stage()).unwrap_err();
        assert!(err.starts_with("P: "), "{err}");
    }

    #[test]
    fn the_token_goes_in_the_authorization_header() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../events/");
        let fixture = |name: &str| std::fs::read_to_string(format!("{root}{name}")).unwrap();
        let get_me: Json =
            serde_json::from_str(&event_with_token(&fixture("get-me.json"), Some("t0k")).unwrap()).unwrap();
        assert_eq!(get_me["headers"]["authorization"], "Bearer t0k");
        let list: Json =
            serde_json::from_str(&event_with_token(&fixture("list-templates.json"), Some("t0k")).unwrap()).unwrap();
        assert_eq!(list["headers"]["authorization"], "Bearer t0k", "added where the fixture has none");
        assert_eq!(event_with_token(&fixture("get-me.json"), None).unwrap(), fixture("get-me.json"));
        assert!(event_with_token(&fixture("reconciler-schedule.json"), Some("t0k")).unwrap_err().contains("--as"));
    }
}
