use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt};
use serde::de::DeserializeOwned;

use super::{ApiError, ErrorCode};

/// Parses the `phone` (and optional `country`) fields of a request body, naming the faulty field.
pub fn parse_phone(phone: &str, country: Option<&str>) -> Result<crate::domain::PhoneNumber, ApiError> {
    use crate::domain::{PhoneError, PhoneNumber};
    PhoneNumber::parse(phone, country).map_err(|e| {
        let field = if e == PhoneError::UnknownCountry { "country" } else { "phone" };
        ApiError::validation(field, e.to_string())
    })
}

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
    // Every request body of the API is an object. serde would also read a struct from an array, by
    // position (`["+14155550123"]` as `{"phone": ...}`, `[]` as a PATCH of nothing): refuse any other value.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(match serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
            Ok(_) => ApiError::validation("body", "the body must be a JSON object"),
            Err(_) => ApiError::new(ErrorCode::MalformedJson, "The body is not valid JSON."),
        });
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(shape_error)?;
    deserializer.end().map_err(|_| ApiError::new(ErrorCode::MalformedJson, "The body is not valid JSON."))?;
    Ok(value)
}

/// A body that is JSON but not the expected shape: name the field, never echo the value (serde's own
/// messages quote it, and it may be a code or a token).
fn shape_error(e: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    if !matches!(e.inner().classify(), serde_json::error::Category::Data) {
        return ApiError::new(ErrorCode::MalformedJson, "The body is not valid JSON.");
    }
    let inner = e.inner().to_string();
    // "missing field `phone`" / "unknown field `x`, expected ...": the field is the quoted name.
    let quoted = inner.split('`').nth(1).map(str::to_owned);
    let path = e.path().to_string();
    let (field, message) = if inner.starts_with("missing field") {
        let name = quoted.unwrap_or_default();
        let field = if path == "." { name } else { format!("{path}.{name}") };
        (field.clone(), format!("{field} is required"))
    } else if inner.starts_with("unknown field") {
        let name = quoted.unwrap_or_default();
        let field = if path == "." { name } else { format!("{path}.{name}") };
        (field.clone(), format!("{field} is not a field of this request"))
    } else if path == "." || path.starts_with('[') {
        ("body".to_owned(), "the body must be a JSON object".to_owned())
    } else {
        (path.clone(), format!("{path} has the wrong type"))
    };
    ApiError::validation(&field, message)
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
    check_size(bytes)?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    json_body(req).map(Some)
}

/// A query-string parameter (the first, if repeated).
pub fn query_param(req: &Request, name: &str) -> Option<String> {
    req.query_string_parameters_ref().and_then(|q| q.first(name)).map(str::to_owned)
}

/// The `limit` parameter: `default` when absent, otherwise an integer in 1..=`max` (400 outside).
pub fn limit_param(req: &Request, default: usize, max: usize) -> Result<usize, ApiError> {
    match query_param(req, "limit") {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| ApiError::validation("limit", format!("limit must be an integer from 1 to {max}"))),
    }
}

/// A boolean query parameter: absent is `false`; only `true` and `false` are accepted.
pub fn flag_param(req: &Request, name: &str) -> Result<bool, ApiError> {
    match query_param(req, name).as_deref() {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(_) => Err(ApiError::validation(name, format!("{name} must be true or false"))),
    }
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
    fn an_optional_body_is_held_to_the_size_limit_even_when_blank() {
        let blank = " ".repeat(JSON_BODY_LIMIT + 1);
        let err = optional_json_body::<Phone>(&req(Some("application/json"), &blank)).unwrap_err();
        assert_eq!(err.code, ErrorCode::PayloadTooLarge);
        assert!(optional_json_body::<Phone>(&req(None, "  \n")).unwrap().is_none());
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
        let wrong_type = json_body::<Phone>(&req(Some("application/json"), r#"{"phone":415555}"#)).unwrap_err();
        assert_eq!(wrong_type.code, ErrorCode::ValidationError);
        assert_eq!(wrong_type.details[0].field, "phone");
        assert!(!wrong_type.message.contains("415555"), "the value is not echoed: {}", wrong_type.message);
        let not_object = json_body::<Phone>(&req(Some("application/json"), "[1]")).unwrap_err();
        assert_eq!((not_object.code, not_object.details[0].field.as_str()), (ErrorCode::ValidationError, "body"));
        let trailing = json_body::<Phone>(&req(Some("application/json"), r#"{"phone":"+1"} x"#)).unwrap_err();
        assert_eq!(trailing.code, ErrorCode::MalformedJson);
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct AllOptional {
        #[serde(default)]
        name: Option<String>,
    }

    #[test]
    fn a_struct_is_never_read_from_an_array_or_a_scalar() {
        // serde reads a struct from a sequence by position: `[]` would be a body with no fields.
        for body in ["[]", r#"["+14155550123"]"#, " [null] ", "\"x\"", "7", "null", "true"] {
            let err = json_body::<AllOptional>(&req(Some("application/json"), body)).unwrap_err();
            assert_eq!((err.code, err.details[0].field.as_str()), (ErrorCode::ValidationError, "body"), "{body}");
            assert_eq!(code(json_body(&req(Some("application/json"), body))), ErrorCode::ValidationError, "{body}");
        }
        assert_eq!(code(json_body(&req(Some("application/json"), "[1,"))), ErrorCode::MalformedJson);
        assert!(json_body::<AllOptional>(&req(Some("application/json"), " {} ")).is_ok());
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
