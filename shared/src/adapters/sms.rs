//! Sign-in texts through Twilio's Messages API
//! (`POST /2010-04-01/Accounts/{AccountSid}/Messages.json`, form-encoded, HTTP basic auth).
//! The message body carries the code, so nothing here logs it or the full number.

use std::time::Duration;

use crate::adapters::secrets::CachedSecret;
use crate::domain::PhoneNumber;
use crate::ports::{PortError, SmsSender};
use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// Twilio credentials and sender, as stored in the SMS secret:
/// `{"accountSid", "authToken", "fromNumber"}` or `{"accountSid", "authToken", "messagingServiceSid"}`.
#[derive(Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TwilioCredentials {
    pub account_sid: String,
    pub auth_token: SecretString,
    #[serde(default)]
    pub from_number: Option<String>,
    #[serde(default)]
    pub messaging_service_sid: Option<String>,
}

enum Credentials {
    Fixed(TwilioCredentials),
    Secret(CachedSecret<TwilioCredentials>),
}

pub struct TwilioSms {
    /// Built on the first send, so functions that never text pay nothing at init.
    http: std::sync::OnceLock<reqwest::Client>,
    api_base: String,
    credentials: Credentials,
}

/// Twilio's error body (`{"code": 21211, "message": "...", "status": 400}`). Only the numeric code is kept:
/// Twilio's message often quotes the full phone number, which must not reach a log.
#[derive(Deserialize)]
struct TwilioError {
    code: Option<u32>,
}

impl TwilioSms {
    /// Credentials read from Secrets Manager on the first send, then cached for the container's life.
    pub fn from_secret(
        api_base: impl Into<String>,
        client: aws_sdk_secretsmanager::Client,
        arn: impl Into<String>,
    ) -> Self {
        Self {
            http: std::sync::OnceLock::new(),
            api_base: api_base.into(),
            credentials: Credentials::Secret(CachedSecret::new(client, arn, "sms secret", parse_credentials)),
        }
    }

    pub fn with_credentials(api_base: impl Into<String>, creds: TwilioCredentials) -> Self {
        Self { http: std::sync::OnceLock::new(), api_base: api_base.into(), credentials: Credentials::Fixed(creds) }
    }

    /// The HTTP client: short timeouts, since a user is waiting for the text.
    fn http(&self) -> Result<&reqwest::Client, PortError> {
        if let Some(client) = self.http.get() {
            return Ok(client);
        }
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(8))
            .build()
            .map_err(|e| PortError::internal("sms client", e))?;
        Ok(self.http.get_or_init(|| client))
    }

    async fn credentials(&self) -> Result<std::sync::Arc<TwilioCredentials>, PortError> {
        match &self.credentials {
            Credentials::Fixed(c) => Ok(std::sync::Arc::new(c.clone())),
            Credentials::Secret(secret) => secret.get().await,
        }
    }
}

/// The SMS secret's JSON, checked: a sender must be set.
fn parse_credentials(json: &str) -> Result<TwilioCredentials, PortError> {
    let creds: TwilioCredentials = serde_json::from_str(json)
        .map_err(|_| PortError::internal("sms secret", "secret is not the documented Twilio JSON"))?;
    if creds.account_sid.is_empty()
        || creds.auth_token.expose_secret().is_empty()
        || (creds.from_number.as_deref().unwrap_or("").is_empty()
            && creds.messaging_service_sid.as_deref().unwrap_or("").is_empty())
    {
        return Err(PortError::internal(
            "sms secret",
            "accountSid, authToken and fromNumber or messagingServiceSid must be set",
        ));
    }
    Ok(creds)
}

#[async_trait]
impl SmsSender for TwilioSms {
    async fn send(&self, to: &PhoneNumber, body: &str) -> Result<(), PortError> {
        let creds = self.credentials().await?;
        let url =
            format!("{}/2010-04-01/Accounts/{}/Messages.json", self.api_base.trim_end_matches('/'), creds.account_sid);
        let mut form = vec![("To", to.e164()), ("Body", body)];
        match (creds.messaging_service_sid.as_deref(), creds.from_number.as_deref()) {
            (Some(sid), _) if !sid.is_empty() => form.push(("MessagingServiceSid", sid)),
            (_, Some(from)) => form.push(("From", from)),
            _ => return Err(PortError::internal("sms", "no sender configured")),
        }
        let response = self
            .http()?
            .post(url)
            .basic_auth(&creds.account_sid, Some(creds.auth_token.expose_secret()))
            .form(&form)
            .send()
            .await
            // reqwest errors carry the URL (account SID) but never the body or the token.
            .map_err(|e| PortError::unavailable("sms", e.without_url()))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let code = response.json::<TwilioError>().await.ok().and_then(|d| d.code);
        let reason = format!(
            "twilio answered {status} (error code {}, see twilio.com/docs/api/errors)",
            code.map_or_else(|| "-".to_owned(), |c| c.to_string())
        );
        if status.as_u16() == 429 || status.is_server_error() {
            Err(PortError::unavailable("sms", reason))
        } else {
            Err(PortError::internal("sms", reason))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wiremock::matchers::{basic_auth, body_string_contains, header, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    fn creds() -> TwilioCredentials {
        TwilioCredentials {
            account_sid: "AC123".into(),
            auth_token: SecretString::from("tok-secret"),
            from_number: Some("+15005550006".into()),
            messaging_service_sid: None,
        }
    }

    fn phone() -> PhoneNumber {
        PhoneNumber::parse("+14155550123", None).unwrap()
    }

    #[tokio::test]
    async fn posts_the_documented_form_with_basic_auth() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/2010-04-01/Accounts/AC123/Messages.json"))
            .and(basic_auth("AC123", "tok-secret"))
            .and(header("content-type", "application/x-www-form-urlencoded"))
            .and(body_string_contains("To=%2B14155550123"))
            .and(body_string_contains("From=%2B15005550006"))
            .and(body_string_contains("Body=Your+code+is+123456"))
            .respond_with(
                ResponseTemplate::new(201).set_body_json(serde_json::json!({"sid": "SM1", "status": "queued"})),
            )
            .expect(1)
            .mount(&server)
            .await;
        let sms = TwilioSms::with_credentials(server.uri(), creds());
        sms.send(&phone(), "Your code is 123456").await.unwrap();
    }

    #[tokio::test]
    async fn uses_the_messaging_service_when_configured() {
        let server = MockServer::start().await;
        Mock::given(body_string_contains("MessagingServiceSid=MG9"))
            .respond_with(ResponseTemplate::new(201))
            .expect(1)
            .mount(&server)
            .await;
        let c = TwilioCredentials { messaging_service_sid: Some("MG9".into()), ..creds() };
        TwilioSms::with_credentials(server.uri(), c).send(&phone(), "x").await.unwrap();
    }

    #[tokio::test]
    async fn classifies_failures_without_leaking_the_token_or_the_body() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(400).set_body_json(
                serde_json::json!({"code": 21211, "message": "The 'To' number +14155550123 is not a valid phone number.", "status": 400}),
            ))
            .up_to_n_times(1)
            .mount(&server)
            .await;
        Mock::given(method("POST")).respond_with(ResponseTemplate::new(503)).mount(&server).await;
        let sms = TwilioSms::with_credentials(server.uri(), creds());

        let err = sms.send(&phone(), "Your code is 123456").await.unwrap_err();
        assert!(matches!(err, PortError::Internal { .. }), "{err}");
        let text = err.to_string();
        assert!(text.contains("21211"), "{text}");
        assert!(!text.contains("tok-secret") && !text.contains("123456"), "{text}");
        assert!(!text.contains("4155550123"), "Twilio's message quotes the number: {text}");

        let err = sms.send(&phone(), "Your code is 123456").await.unwrap_err();
        assert!(matches!(err, PortError::Unavailable { .. }), "{err}");
    }

    #[tokio::test]
    async fn an_unreachable_provider_is_unavailable() {
        let sms = TwilioSms::with_credentials("http://127.0.0.1:9", creds());
        assert!(matches!(sms.send(&phone(), "x").await, Err(PortError::Unavailable { .. })));
    }
}
