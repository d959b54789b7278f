use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use http::{HeaderValue, Method, StatusCode};
use lambda_http::{Body, Request, RequestExt, Response};
use serde::Serialize;

use super::{request_id, ApiError, ErrorCode};

/// Values captured from `{name}` segments of a route pattern.
pub type PathParams = HashMap<&'static str, String>;

type BoxFuture = Pin<Box<dyn Future<Output = Result<Response<Body>, ApiError>> + Send>>;
type Handler = Arc<dyn Fn(Request, PathParams) -> BoxFuture + Send + Sync>;

#[derive(Clone)]
struct Route {
    method: Method,
    pattern: &'static str,
    handler: Handler,
}

/// Routes method + path to handlers. Each function builds one for its routes; the local API merges them
/// all, so both serve the same paths with the same code. `handle` always answers: errors become the
/// contract's envelope, and every response carries `x-request-id` and leaves one structured log line.
#[derive(Clone, Default)]
pub struct Router {
    routes: Vec<Route>,
}

fn matches(pattern: &'static str, path: &str) -> Option<PathParams> {
    let mut params = PathParams::new();
    let mut pattern_segments = pattern.trim_matches('/').split('/');
    let mut path_segments = path.strip_prefix('/').unwrap_or(path).split('/');
    loop {
        match (pattern_segments.next(), path_segments.next()) {
            (None, None) => return Some(params),
            (Some(p), Some(s)) if p.starts_with('{') && p.ends_with('}') && !s.is_empty() => {
                params.insert(&p[1..p.len() - 1], s.to_owned());
            }
            (Some(p), Some(s)) if p == s => {}
            _ => return None,
        }
    }
}

impl Router {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `method pattern` (e.g. `GET /v1/templates/{id}`) served by `handler` with `state`.
    pub fn route<S, F, Fut>(mut self, method: Method, pattern: &'static str, state: Arc<S>, handler: F) -> Self
    where
        S: Send + Sync + 'static,
        F: Fn(Arc<S>, Request, PathParams) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Response<Body>, ApiError>> + Send + 'static,
    {
        let handler: Handler = Arc::new(move |req, params| Box::pin(handler(state.clone(), req, params)));
        self.routes.push(Route { method, pattern, handler });
        self
    }

    /// Joins two routers (the local API joins every function's).
    pub fn merge(mut self, other: Router) -> Self {
        self.routes.extend(other.routes);
        self
    }

    /// `(method, pattern)` of every route, for tests that compare them with template.yaml.
    pub fn routes(&self) -> Vec<(Method, &'static str)> {
        self.routes.iter().map(|r| (r.method.clone(), r.pattern)).collect()
    }

    pub async fn handle(&self, req: Request) -> Response<Body> {
        let started = Instant::now();
        let request_id = request_id(&req);
        let method = req.method().clone();
        let path = req.raw_http_path().to_owned();
        let path = if path.is_empty() { req.uri().path().to_owned() } else { path };

        // The methods the path takes, for a 405's `Allow` (RFC 9110 §15.5.6).
        let mut allowed: Vec<&str> = Vec::new();
        let mut found = None;
        for route in &self.routes {
            if let Some(params) = matches(route.pattern, &path) {
                if route.method == method {
                    found = Some((route, params));
                    break;
                }
                if !allowed.contains(&route.method.as_str()) {
                    allowed.push(route.method.as_str());
                }
            }
        }
        let path_known = !allowed.is_empty();
        let method_not_allowed = found.is_none() && path_known;
        let ((pattern, result), caller) = crate::telemetry::with_caller(async {
            match found {
                Some((route, params)) => {
                    (route.pattern, super::auth::with_deferred_checks((route.handler)(req, params)).await)
                }
                None if path_known => {
                    ("-", Err(ApiError::new(ErrorCode::MethodNotAllowed, "This method is not allowed on this path.")))
                }
                None => ("-", Err(ApiError::not_found())),
            }
        })
        .await;
        let user = caller.as_deref().unwrap_or("-");
        let mut response = match result {
            Ok(response) => response,
            Err(e) => e.into_response(&request_id),
        };
        if let Ok(v) = HeaderValue::from_str(&request_id) {
            response.headers_mut().insert("x-request-id", v);
        }
        if method_not_allowed {
            if let Ok(v) = HeaderValue::from_str(&allowed.join(", ")) {
                response.headers_mut().insert(http::header::ALLOW, v);
            }
        }
        let status = response.status().as_u16();
        let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
        if status >= 500 {
            tracing::error!(request_id, %method, route = pattern, status, latency_ms, user, "request");
        } else {
            tracing::info!(request_id, %method, route = pattern, status, latency_ms, user, "request");
        }
        response
    }
}

/// A JSON response. API answers are per-user and often carry tokens, so they are never cached.
pub fn json<T: Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    let (status, body) = match serde_json::to_vec(value) {
        Ok(body) => (status, body),
        // Serialising our own view types cannot fail; if it ever did, answer a 500 in the envelope's shape
        // rather than panic (the request id is not known here; the x-request-id header still carries it).
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            br#"{"error":{"code":"INTERNAL_ERROR","message":"Something went wrong on our side.","requestId":""}}"#
                .to_vec(),
        ),
    };
    let mut response = Response::new(Body::Binary(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json; charset=utf-8"));
    headers.insert(http::header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// 204 No Content.
pub fn no_content() -> Response<Body> {
    let mut response = Response::new(Body::Empty);
    *response.status_mut() = StatusCode::NO_CONTENT;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn hello(_: Arc<()>, _: Request, params: PathParams) -> Result<Response<Body>, ApiError> {
        Ok(json(StatusCode::OK, &params.get("id").cloned()))
    }

    async fn fails(_: Arc<()>, _: Request, _: PathParams) -> Result<Response<Body>, ApiError> {
        Err(ApiError::new(ErrorCode::Conflict, "no"))
    }

    fn router() -> Router {
        Router::new().route(Method::GET, "/v1/things/{id}", Arc::new(()), hello).route(
            Method::POST,
            "/v1/things",
            Arc::new(()),
            fails,
        )
    }

    async fn call(method: &str, path: &str) -> Response<Body> {
        router().handle(http::Request::builder().method(method).uri(path).body(Body::Empty).unwrap()).await
    }

    #[tokio::test]
    async fn routes_with_params_and_answers_404_405_in_the_envelope() {
        let ok = call("GET", "/v1/things/abc").await;
        assert_eq!(ok.status(), 200);
        assert_eq!(ok.body().as_ref(), br#""abc""#);
        assert!(ok.headers().contains_key("x-request-id"));

        let missing = call("GET", "/v1/nothing").await;
        assert_eq!(missing.status(), 404);
        let body: serde_json::Value = serde_json::from_slice(missing.body().as_ref()).unwrap();
        assert_eq!(body["error"]["code"], "NOT_FOUND");
        assert_eq!(body["error"]["requestId"], missing.headers()["x-request-id"].to_str().unwrap());

        let wrong_method = call("DELETE", "/v1/things/abc").await;
        assert_eq!(wrong_method.status(), 405);
        assert_eq!(wrong_method.headers()["allow"], "GET", "RFC 9110: a 405 lists the path's methods");
        assert!(ok.headers().get("allow").is_none() && missing.headers().get("allow").is_none());
        let two = router()
            .route(Method::DELETE, "/v1/things/{id}", Arc::new(()), fails)
            .handle(http::Request::builder().method("PUT").uri("/v1/things/abc").body(Body::Empty).unwrap())
            .await;
        assert_eq!((two.status().as_u16(), two.headers()["allow"].to_str().unwrap()), (405, "GET, DELETE"));
        assert_eq!(call("POST", "/v1/things").await.status(), 409);
        assert_eq!(call("GET", "/v1/things/").await.status(), 404, "an empty parameter does not match");
        assert_eq!(call("GET", "/v1/things/a/b").await.status(), 404);
    }
}
