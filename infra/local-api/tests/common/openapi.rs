//! Checks real responses against docs/openapi.yaml: the operation must exist, the status must be one it
//! documents, and the JSON body must validate (JSON Schema 2020-12) against the schema documented for that
//! status. Every black-box request goes through this, so the spec and the handlers cannot drift apart.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde_json::Value;

const SPEC_URL: &str = "file:///openapi.json";

struct Spec {
    doc: Value,
    schemas: boon::Schemas,
    /// Every response body schema, compiled once, by its location in the document.
    compiled: HashMap<String, boon::SchemaIndex>,
}

fn spec() -> &'static Spec {
    static SPEC: OnceLock<Spec> = OnceLock::new();
    SPEC.get_or_init(|| {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.yaml");
        let yaml = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let doc: Value = serde_yaml_ng::from_str(&yaml).unwrap_or_else(|e| panic!("{path}: {e}"));
        let mut compiler = boon::Compiler::new();
        compiler.set_default_draft(boon::Draft::V2020_12);
        compiler.add_resource(SPEC_URL, doc.clone()).unwrap_or_else(|e| panic!("spec as a schema resource: {e}"));
        let (mut schemas, mut compiled) = (boon::Schemas::new(), HashMap::new());
        let mut locations = vec![format!("{SPEC_URL}#/components/schemas/ErrorEnvelope")];
        for (name, response) in doc["components"]["responses"].as_object().into_iter().flatten() {
            if response["content"]["application/json"].is_object() {
                locations.push(format!("{SPEC_URL}#/components/responses/{name}/content/application~1json/schema"));
            }
        }
        for (template, item) in doc["paths"].as_object().into_iter().flatten() {
            for (method, operation) in item.as_object().into_iter().flatten() {
                for (status, response) in operation["responses"].as_object().into_iter().flatten() {
                    if response["content"]["application/json"].is_object() {
                        locations.push(format!(
                            "{SPEC_URL}#/paths/{}/{method}/responses/{status}/content/application~1json/schema",
                            pointer_segment(template)
                        ));
                    }
                }
            }
        }
        for location in locations {
            let index = compiler.compile(&location, &mut schemas).unwrap_or_else(|e| panic!("{location}: {e:#}"));
            compiled.insert(location, index);
        }
        Spec { doc, schemas, compiled }
    })
}

/// JSON pointer escaping, then percent-encoding of what a URI fragment cannot hold.
fn pointer_segment(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1").replace('{', "%7B").replace('}', "%7D")
}

/// The spec's path template that `path` matches (`/v1/templates/neon-noir` → `/v1/templates/{id}`).
fn template_for(doc: &Value, path: &str) -> Option<String> {
    let paths = doc["paths"].as_object()?;
    // Literal paths first: `/v1/templates/categories` is not `/v1/templates/{id}`.
    if paths.contains_key(path) {
        return Some(path.to_owned());
    }
    let segments: Vec<&str> = path.split('/').collect();
    paths
        .keys()
        .find(|template| {
            let t: Vec<&str> = template.split('/').collect();
            t.len() == segments.len()
                && t.iter().zip(&segments).all(|(t, s)| (t.starts_with('{') && !s.is_empty()) || t == s)
        })
        .cloned()
}

fn validate(location: &str, body: &Value) -> Result<(), String> {
    let spec = spec();
    let index = spec.compiled.get(location).ok_or_else(|| format!("{location} was not compiled"))?;
    spec.schemas.validate(body, *index).map_err(|e| format!("{e:#}"))
}

/// Clients see `code` as an open enum; the server must still only answer codes the spec lists.
fn check_error_code(body: &Value) {
    if let Some(code) = body["error"]["code"].as_str() {
        let known = &spec().doc["components"]["schemas"]["ErrorCode"]["enum"];
        let listed = known.as_array().is_some_and(|codes| codes.iter().any(|c| c == code));
        assert!(listed, "error code {code} is not in components.schemas.ErrorCode: {body}");
    }
}

/// The spec's `(METHOD, path template)` of a request, if it is a documented operation.
pub fn operation(method: &str, path_and_query: &str) -> Option<(String, String)> {
    let path = path_and_query.split('?').next().unwrap_or(path_and_query);
    let doc = &spec().doc;
    let method = method.to_lowercase();
    let template = template_for(doc, path).filter(|t| doc["paths"][t].get(&method).is_some())?;
    Some((method.to_uppercase(), template))
}

/// Every `(METHOD, path template, status)` the spec documents, 5xx left out (a correct server does not
/// answer those on purpose).
pub fn documented_statuses() -> std::collections::BTreeSet<(String, String, u16)> {
    let mut out = std::collections::BTreeSet::new();
    for (method, path) in operations() {
        let responses = &spec().doc["paths"][&path][method.to_lowercase()]["responses"];
        for status in responses.as_object().into_iter().flatten().filter_map(|(s, _)| s.parse::<u16>().ok()) {
            if status < 500 {
                out.insert((method.clone(), path.clone(), status));
            }
        }
    }
    out
}

/// Panics unless `status` and `body` are what docs/openapi.yaml documents for `method path`.
pub fn check(method: &str, path_and_query: &str, status: u16, body: &Value) {
    check_error_code(body);
    let path = path_and_query.split('?').next().unwrap_or(path_and_query);
    if path.starts_with("/_local/") {
        return;
    }
    let doc = &spec().doc;
    let method = method.to_lowercase();
    let operation = template_for(doc, path).filter(|t| doc["paths"][t].get(&method).is_some());
    let Some(template) = operation else {
        // No such operation: the router's 404/405, in the envelope.
        assert!(matches!(status, 404 | 405), "{method} {path}: not in the spec, yet answered {status}");
        let location = format!("{SPEC_URL}#/components/schemas/ErrorEnvelope");
        validate(&location, body).unwrap_or_else(|e| panic!("{method} {path} {status}: {e}\n{body}"));
        return;
    };
    let responses = &doc["paths"][&template][&method]["responses"];
    let key = status.to_string();
    let response = responses.get(&key).unwrap_or_else(|| {
        panic!("{method} {template} answered {status}, which the spec does not document for it: {body}")
    });
    let response = match response.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let name = r.rsplit('/').next().unwrap_or_default();
            &doc["components"]["responses"][name]
        }
        None => response,
    };
    match response.get("content") {
        None => assert!(body.is_null(), "{method} {template} {status}: documented without a body, got {body}"),
        Some(content) => {
            assert!(
                content.get("application/json").is_some(),
                "{method} {template} {status}: the spec documents no application/json body"
            );
            let location = match responses[&key].get("$ref").and_then(Value::as_str) {
                Some(r) => format!("{SPEC_URL}{r}/content/application~1json/schema"),
                None => format!(
                    "{SPEC_URL}#/paths/{}/{method}/responses/{key}/content/application~1json/schema",
                    pointer_segment(&template)
                ),
            };
            validate(&location, body).unwrap_or_else(|e| panic!("{method} {template} {status}: {e}\n{body}"));
        }
    }
}

/// Every path and method the spec documents, as `(METHOD, path)`.
pub fn operations() -> Vec<(String, String)> {
    let doc = &spec().doc;
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        for method in ["get", "put", "post", "delete", "patch"] {
            if item.get(method).is_some() {
                out.push((method.to_uppercase(), path.clone()));
            }
        }
    }
    out
}
