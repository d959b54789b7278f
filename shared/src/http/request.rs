use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt};
use serde::de::DeserializeOwned;

use super::{ApiError, ErrorCode};

/// The largest JSON body a JSON route accepts.
pub const JSON_BODY_LIMIT: usize = 64 * 1024;

/// The API Gateway request id (the one API Gateway returns in `apigw-requestid`), or a fresh id when the
/// request did not come through API Gateway.
pub fn request_id(req: &Request) -> String {
    match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx.request_id.clone(),
        _ => None,
    }
    .filter(|id| !id.is_empty())
    .unwrap_or_else(crate::domain::new_id)
}

/// The caller's IP as API Gateway saw it (never a client-supplied header).
pub fn source_ip(req: &Request) -> Option<String> {
    match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx.http.source_ip.clone(),
        _ => None,
    }
}

fn body_bytes(req: &Request) -> &[u8] {
    match req.body() {
        Body::Empty => &[],
        Body::Text(s) => s.as_bytes(),
        Body::Binary(b) => b,
        _ => &[],
    }
}

fn check_content_type(req: &Request) -> Result<(), ApiError> {
    let content_type = req.headers().get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if essence.eq_ignore_ascii_case("application/json") {
        Ok(())
    } else {
        Err(ApiError::new(ErrorCode::UnsupportedMediaType, "Send the body as application/json."))
    }
}

fn check_size(bytes: &[u8]) -> Result<(), ApiError> {
    if bytes.len() > JSON_BODY_LIMIT {
        return Err(ApiError::new(ErrorCode::PayloadTooLarge, "The body is larger than 64 KiB."));
    }
    Ok(())
}

fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        use serde_json::error::Category;
        match e.classify() {
            Category::Data => {
                // serde's message names the field and the expectation ("missing field `phone`"); it never
                // echoes values, so it is safe to show.
                let message = e.to_string();
                let message = message.split(" at line ").next().unwrap_or("invalid body").to_owned();
                let field = message.split('`').nth(1).unwrap_or("body").to_owned();
                ApiError {
                    details: vec![super::FieldError { field, message: message.clone() }],
                    ..ApiError::new(ErrorCode::ValidationError, message)
                }
            }
            _ => ApiError::new(ErrorCode::MalformedJson, "The body is not valid JSON."),
        }
    })
}

/// Parses a required JSON body: content type `application/json`, at most 64 KiB, well-formed, of the
/// expected shape — each failure with its own documented code.
pub fn json_body<T: DeserializeOwned>(req: &Request) -> Result<T, ApiError> {
    let bytes = body_bytes(req);
    check_size(bytes)?;
    check_content_type(req)?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::new(ErrorCode::MalformedJson, "A JSON body is required."));
    }
    parse(bytes)
}

/// Like [`json_body`], but an absent body is `None` (and then needs no content type).
pub fn optional_json_body<T: DeserializeOwned>(req: &Request) -> Result<Option<T>, ApiError> {
    let bytes = body_bytes(req);
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    json_body(req).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Phone {
        phone: String,
    }

    fn req(content_type: Option<&str>, body: &str) -> Request {
        let mut b = http::Request::builder().method("POST").uri("/v1/auth/send-code");
        if let Some(ct) = content_type {
            b = b.header("content-type", ct);
        }
        b.body(Body::Text(body.to_owned())).unwrap()
    }

    fn code(r: Result<Phone, ApiError>) -> ErrorCode {
        r.unwrap_err().code
    }

    #[test]
    fn accepts_json_with_or_without_charset() {
        assert!(json_body::<Phone>(&req(Some("application/json"), r#"{"phone":"+1"}"#)).is_ok());
        assert!(json_body::<Phone>(&req(Some("Application/JSON; charset=utf-8"), r#"{"phone":"+1"}"#)).is_ok());
    }

    #[test]
    fn each_bad_body_gets_its_own_code() {
        assert_eq!(code(json_body(&req(Some("text/plain"), r#"{"phone":"+1"}"#))), ErrorCode::UnsupportedMediaType);
        assert_eq!(code(json_body(&req(None, r#"{"phone":"+1"}"#))), ErrorCode::UnsupportedMediaType);
        assert_eq!(code(json_body(&req(Some("application/json"), r#"{"phone":"#))), ErrorCode::MalformedJson);
        assert_eq!(code(json_body(&req(Some("application/json"), ""))), ErrorCode::MalformedJson);
        let big = format!(r#"{{"phone":"{}"}}"#, "1".repeat(JSON_BODY_LIMIT));
        assert_eq!(code(json_body(&req(Some("application/json"), &big))), ErrorCode::PayloadTooLarge);
        let missing = json_body::<Phone>(&req(Some("application/json"), r#"{"phone_number":"+1"}"#)).unwrap_err();
        assert_eq!(missing.code, ErrorCode::ValidationError);
        assert_eq!(missing.details[0].field, "phone");
        let wrong_type = json_body::<Phone>(&req(Some("application/json"), r#"{"phone":5}"#)).unwrap_err();
        assert_eq!(wrong_type.code, ErrorCode::ValidationError);
        assert!(!wrong_type.message.contains("line"), "{}", wrong_type.message);
    }

    #[test]
    fn optional_body_may_be_absent() {
        assert!(optional_json_body::<Phone>(&req(None, "")).unwrap().is_none());
        assert!(optional_json_body::<Phone>(&req(Some("application/json"), r#"{"phone":"+1"}"#)).unwrap().is_some());
        assert_eq!(
            optional_json_body::<Phone>(&req(Some("text/plain"), "x")).unwrap_err().code,
            ErrorCode::UnsupportedMediaType
        );
    }
}
