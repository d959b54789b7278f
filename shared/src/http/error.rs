use http::{HeaderValue, StatusCode};
use lambda_http::{Body, Response};
use serde::Serialize;

use crate::ports::PortError;
use crate::services::auth::{RefreshError, SendCodeError, SignInError};

/// The stable error codes of the API contract (extend, never rename).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    ValidationError,
    MalformedJson,
    UnsupportedMediaType,
    PayloadTooLarge,
    Unauthorized,
    InvalidToken,
    InvalidCode,
    CodeExpired,
    /// Extension: the code was already used (the contract's "used code fails with its own code").
    CodeUsed,
    TooManyAttempts,
    RateLimited,
    Forbidden,
    NotFound,
    /// Extension: the path exists but not with this method.
    MethodNotAllowed,
    Conflict,
    IdempotencyKeyReused,
    InsufficientCredits,
    InvalidPurchase,
    UpstreamUnavailable,
    InternalError,
}

impl ErrorCode {
    pub fn status(self) -> StatusCode {
        use ErrorCode::*;
        match self {
            ValidationError | MalformedJson | InvalidCode | CodeExpired | CodeUsed | InvalidPurchase => {
                StatusCode::BAD_REQUEST
            }
            UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Unauthorized | InvalidToken => StatusCode::UNAUTHORIZED,
            TooManyAttempts | RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Forbidden => StatusCode::FORBIDDEN,
            NotFound => StatusCode::NOT_FOUND,
            MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Conflict => StatusCode::CONFLICT,
            IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            InsufficientCredits => StatusCode::PAYMENT_REQUIRED,
            UpstreamUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            InternalError => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// An error answered in the contract's envelope. Messages are written for clients: no internals, ever.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub details: Vec<FieldError>,
    pub retry_after_secs: Option<u64>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Envelope<'a> {
    error: EnvelopeBody<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EnvelopeBody<'a> {
    code: ErrorCode,
    message: &'a str,
    request_id: &'a str,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    details: &'a [FieldError],
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_after_seconds: Option<u64>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), details: Vec::new(), retry_after_secs: None }
    }

    pub fn validation(field: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        Self {
            details: vec![FieldError { field: field.to_owned(), message: message.clone() }],
            ..Self::new(ErrorCode::ValidationError, format!("{field}: {message}"))
        }
    }

    pub fn rate_limited(retry_after_secs: u64, message: impl Into<String>) -> Self {
        Self { retry_after_secs: Some(retry_after_secs.max(1)), ..Self::new(ErrorCode::RateLimited, message) }
    }

    pub fn not_found() -> Self {
        Self::new(ErrorCode::NotFound, "Not found.")
    }

    /// A 500 for `err`, whose whole cause chain is logged here and never shown to the client.
    pub fn internal(err: &(dyn std::error::Error + 'static)) -> Self {
        tracing::error!(error = %crate::telemetry::Chain(err), "internal error");
        Self::new(ErrorCode::InternalError, "Something went wrong on our side. Please try again.")
    }

    pub fn status(&self) -> StatusCode {
        self.code.status()
    }

    /// The envelope as a response, tagged with the request id.
    pub fn into_response(self, request_id: &str) -> Response<Body> {
        let body = Envelope {
            error: EnvelopeBody {
                code: self.code,
                message: &self.message,
                request_id,
                details: &self.details,
                retry_after_seconds: self.retry_after_secs,
            },
        };
        let mut response = super::json(self.status(), &body);
        let headers = response.headers_mut();
        if let Some(secs) = self.retry_after_secs {
            headers.insert(http::header::RETRY_AFTER, HeaderValue::from(secs));
        }
        match self.code {
            ErrorCode::Unauthorized => {
                headers.insert(http::header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            ErrorCode::InvalidToken => {
                headers
                    .insert(http::header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer error=\"invalid_token\""));
            }
            _ => {}
        }
        response
    }
}

impl From<PortError> for ApiError {
    fn from(e: PortError) -> Self {
        match &e {
            PortError::Unavailable { .. } => {
                tracing::error!(error = %crate::telemetry::Chain(&e), "dependency unavailable");
                Self::new(
                    ErrorCode::UpstreamUnavailable,
                    "A service we depend on is unavailable. Please try again shortly.",
                )
            }
            PortError::Internal { .. } => Self::internal(&e),
        }
    }
}

impl From<SendCodeError> for ApiError {
    fn from(e: SendCodeError) -> Self {
        match e {
            SendCodeError::CountryNotAllowed => {
                Self::validation("phone", "numbers from this country are not supported yet")
            }
            SendCodeError::RateLimited { retry_after_secs } => {
                Self::rate_limited(retry_after_secs, "Too many codes requested. Please wait before asking again.")
            }
            SendCodeError::Delivery(cause) => {
                tracing::error!(error = %crate::telemetry::Chain(&cause), "sign-in SMS not delivered");
                Self::new(
                    ErrorCode::UpstreamUnavailable,
                    "We could not send the text message. Please try again shortly.",
                )
            }
            SendCodeError::BudgetSpent { retry_after_secs } => Self {
                retry_after_secs: Some(retry_after_secs.max(1)),
                ..Self::new(
                    ErrorCode::UpstreamUnavailable,
                    "We cannot send text messages right now. Please try again later.",
                )
            },
            SendCodeError::Port(p) => p.into(),
            SendCodeError::Crypto(c) => Self::internal(&c),
        }
    }
}

impl From<SignInError> for ApiError {
    fn from(e: SignInError) -> Self {
        match e {
            SignInError::InvalidCode { attempts_left } => Self::new(
                ErrorCode::InvalidCode,
                match attempts_left {
                    0 => "The code is not correct. Request a new code.".to_owned(),
                    1 => "The code is not correct. 1 attempt left.".to_owned(),
                    n => format!("The code is not correct. {n} attempts left."),
                },
            ),
            SignInError::NoCode => Self::new(ErrorCode::InvalidCode, "The code is not correct. Request a new code."),
            SignInError::CodeExpired => Self::new(ErrorCode::CodeExpired, "The code has expired. Request a new code."),
            SignInError::CodeUsed => Self::new(ErrorCode::CodeUsed, "The code was already used. Request a new code."),
            SignInError::TooManyAttempts => {
                Self::new(ErrorCode::TooManyAttempts, "Too many wrong codes. Request a new code.")
            }
            SignInError::RateLimited { retry_after_secs } => {
                Self::rate_limited(retry_after_secs, "Too many attempts from this network. Please wait and try again.")
            }
            SignInError::AccountBeingDeleted => Self::new(
                ErrorCode::Conflict,
                "This account is being deleted. Try again in a few minutes to start a new one.",
            ),
            SignInError::Port(p) => p.into(),
            SignInError::Crypto(c) => Self::internal(&c),
            SignInError::Token(t) => Self::internal(&t),
        }
    }
}

impl From<RefreshError> for ApiError {
    fn from(e: RefreshError) -> Self {
        match e {
            RefreshError::Invalid => Self::new(ErrorCode::InvalidToken, "The session has ended. Please sign in again."),
            RefreshError::JustRotated => Self::new(
                ErrorCode::Conflict,
                "This refresh token was used moments ago by this app: use the tokens that request returned, or sign in again.",
            ),
            RefreshError::Port(p) => p.into(),
            RefreshError::Crypto(c) => Self::internal(&c),
            RefreshError::Token(t) => Self::internal(&t),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(r: Response<Body>) -> serde_json::Value {
        serde_json::from_slice(r.body().as_ref()).unwrap()
    }

    #[test]
    fn envelope_has_the_contract_shape() {
        let r = ApiError::validation("phone", "phone is not a valid number").into_response("req-1");
        assert_eq!(r.status(), 400);
        assert_eq!(r.headers()["content-type"], "application/json; charset=utf-8");
        assert_eq!(
            body(r),
            serde_json::json!({"error": {"code": "VALIDATION_ERROR", "message": "phone: phone is not a valid number",
                "requestId": "req-1", "details": [{"field": "phone", "message": "phone is not a valid number"}]}})
        );
    }

    #[test]
    fn rate_limited_carries_retry_after_in_header_and_body() {
        let r = ApiError::rate_limited(42, "slow down").into_response("r");
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()["retry-after"], "42");
        assert_eq!(body(r)["error"]["retryAfterSeconds"], 42);
    }

    #[test]
    fn internal_errors_hide_their_cause() {
        let cause = PortError::internal("users", "table arn:aws:dynamodb:secret-table not found");
        let r = ApiError::from(cause).into_response("r");
        assert_eq!(r.status(), 500);
        let text = String::from_utf8(r.body().to_vec()).unwrap();
        assert!(!text.contains("arn:aws") && !text.contains("users"), "{text}");
        let r = ApiError::from(PortError::unavailable("dynamodb", "throttled")).into_response("r");
        assert_eq!(r.status(), 503);
        assert_eq!(body(r)["error"]["code"], "UPSTREAM_UNAVAILABLE");
    }

    #[test]
    fn every_code_maps_to_its_documented_status() {
        use ErrorCode::*;
        let expected = [
            (ValidationError, 400),
            (MalformedJson, 400),
            (UnsupportedMediaType, 415),
            (PayloadTooLarge, 413),
            (Unauthorized, 401),
            (InvalidToken, 401),
            (InvalidCode, 400),
            (CodeExpired, 400),
            (CodeUsed, 400),
            (TooManyAttempts, 429),
            (RateLimited, 429),
            (Forbidden, 403),
            (NotFound, 404),
            (MethodNotAllowed, 405),
            (Conflict, 409),
            (IdempotencyKeyReused, 422),
            (InsufficientCredits, 402),
            (InvalidPurchase, 400),
            (UpstreamUnavailable, 503),
            (InternalError, 500),
        ];
        for (code, status) in expected {
            assert_eq!(code.status().as_u16(), status, "{code:?}");
        }
    }
}
