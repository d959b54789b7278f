//! template.yaml and the code cannot drift: every function's HttpApi events must be exactly the routes its
//! router serves, and the local API must serve the union.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde_yaml_ng::Value;
use testkit::Harness;

use crate::common;

type Routes = BTreeSet<(String, String)>;

fn template_routes() -> BTreeMap<String, Routes> {
    let doc: Value = serde_yaml_ng::from_str(&testkit::schema::template().unwrap()).unwrap();
    let mut by_binary = BTreeMap::new();
    for (id, resource) in doc["Resources"].as_mapping().unwrap() {
        if resource["Type"].as_str() != Some("AWS::Serverless::Function") {
            continue;
        }
        let binary = resource["Metadata"]["BuildProperties"]["Binary"]
            .as_str()
            .unwrap_or_else(|| panic!("{id:?} has no BuildProperties.Binary"))
            .to_owned();
        assert_eq!(resource["Metadata"]["BuildMethod"].as_str(), Some("rust-cargolambda"), "{binary}");
        let mut routes = Routes::new();
        if let Some(events) = resource["Properties"]["Events"].as_mapping() {
            for event in events.values().filter(|e| e["Type"].as_str() == Some("HttpApi")) {
                let props = &event["Properties"];
                routes
                    .insert((props["Method"].as_str().unwrap().to_owned(), props["Path"].as_str().unwrap().to_owned()));
            }
        }
        by_binary.insert(binary, routes);
    }
    by_binary
}

fn routes(router: &facemake::http::Router) -> Routes {
    router.routes().into_iter().map(|(m, p)| (m.to_string(), p.to_owned())).collect()
}

#[test]
fn every_function_declares_exactly_the_routes_it_serves() {
    let h = Harness::in_memory();
    let code: BTreeMap<String, Routes> = BTreeMap::from([
        ("send-code".to_owned(), routes(&send_code::router(Arc::new(send_code::State::new(&h.deps))))),
        ("verify-code".to_owned(), routes(&verify_code::router(Arc::new(verify_code::State::new(&h.deps))))),
        ("account".to_owned(), routes(&account::router(Arc::new(account::State::new(&h.deps))))),
        ("templates".to_owned(), routes(&templates::router(Arc::new(templates::State::new(&h.deps))))),
        ("credits".to_owned(), routes(&credits::router(Arc::new(credits::State::new(&h.deps).unwrap())))),
        (
            "app-store-notifications".to_owned(),
            routes(&app_store_notifications::router(Arc::new(app_store_notifications::State::new(&h.deps).unwrap()))),
        ),
        ("generate".to_owned(), routes(&generate::router(Arc::new(generate::State::new(&h.deps))))),
        ("characters".to_owned(), routes(&characters::router(Arc::new(characters::State::new(&h.deps))))),
        (
            "replicate-webhooks".to_owned(),
            routes(&replicate_webhooks::router(Arc::new(replicate_webhooks::State::new(&h.deps)))),
        ),
        (
            "openai-webhooks".to_owned(),
            routes(&openai_webhooks::router(Arc::new(openai_webhooks::State::new(&h.deps)))),
        ),
        // Not HTTP: triggered by the generations table's stream and by a schedule.
        ("generation-worker".to_owned(), Routes::new()),
        ("generation-reconciler".to_owned(), Routes::new()),
    ]);
    assert_eq!(template_routes(), code);
}

#[tokio::test]
async fn the_local_api_serves_every_deployed_route() {
    let api = local_api::LocalApi::in_memory(testkit::policy(), "http://127.0.0.1:3000").await.unwrap();
    let served = routes(&api.router);
    let deployed: Routes = template_routes().into_values().flatten().collect();
    assert_eq!(served, deployed);
}

#[test]
fn the_openapi_spec_documents_exactly_the_deployed_routes() {
    let documented: Routes = common::openapi::operations().into_iter().collect();
    let deployed: Routes = template_routes().into_values().flatten().collect();
    assert_eq!(documented, deployed);
}

fn template() -> Value {
    serde_yaml_ng::from_str(&testkit::schema::template().unwrap()).unwrap()
}

/// A CloudFormation short form (`!Ref X`, `!Sub "..."`) as `(function, argument)`.
fn intrinsic(value: &Value) -> Option<(String, &Value)> {
    match value {
        Value::Tagged(t) => Some((t.tag.to_string().trim_start_matches('!').to_owned(), &t.value)),
        _ => None,
    }
}

/// Whether `value` or anything inside it is `!Ref name`.
fn refers_to(value: &Value, name: &str) -> bool {
    if let Some((function, argument)) = intrinsic(value) {
        return (function == "Ref" && argument.as_str() == Some(name)) || refers_to(argument, name);
    }
    match value {
        Value::Sequence(items) => items.iter().any(|v| refers_to(v, name)),
        Value::Mapping(map) => map.values().any(|v| refers_to(v, name)),
        _ => false,
    }
}

/// Every `MetricName` anywhere inside `value`, with the `Namespace` beside it.
fn metric_names(value: &Value, out: &mut BTreeSet<(String, String)>) {
    match value {
        Value::Mapping(map) => {
            if let (Some(namespace), Some(name)) = (map.get("Namespace"), map.get("MetricName")) {
                out.insert((namespace.as_str().unwrap_or("?").to_owned(), name.as_str().unwrap_or("?").to_owned()));
            }
            map.values().for_each(|v| metric_names(v, out));
        }
        Value::Sequence(items) => items.iter().for_each(|v| metric_names(v, out)),
        Value::Tagged(t) => metric_names(&t.value, out),
        _ => {}
    }
}

fn resources_of_type<'a>(doc: &'a Value, kind: &str) -> Vec<(String, &'a Value)> {
    let resources = doc["Resources"].as_mapping().unwrap();
    resources
        .iter()
        .filter(|(_, r)| r["Type"].as_str() == Some(kind))
        .map(|(id, r)| (id.as_str().unwrap().to_owned(), r))
        .collect()
}

#[test]
fn every_function_has_active_x_ray_tracing() {
    let doc = template();
    let global = doc["Globals"]["Function"]["Tracing"].as_str();
    let functions = resources_of_type(&doc, "AWS::Serverless::Function");
    assert!(functions.len() >= 9, "{} functions", functions.len());
    for (id, function) in functions {
        // A function's own setting overrides Globals.
        let tracing = function["Properties"]["Tracing"].as_str().or(global);
        assert_eq!(tracing, Some("Active"), "{id}: Tracing must be Active (in Globals.Function or on the function)");
    }
}

#[test]
fn the_template_keeps_the_dashboard_and_the_paging_alarms() {
    let doc = template();
    let parameter = &doc["Parameters"]["AlarmTopicArn"];
    assert_eq!(parameter["Type"].as_str(), Some("String"), "the AlarmTopicArn parameter");

    let dashboards = resources_of_type(&doc, "AWS::CloudWatch::Dashboard");
    assert_eq!(dashboards.len(), 1, "one dashboard");
    assert!(intrinsic(&dashboards[0].1["Properties"]["DashboardBody"]).is_some_and(|(f, _)| f == "Sub"));

    let alarms: BTreeMap<String, (String, &Value)> = resources_of_type(&doc, "AWS::CloudWatch::Alarm")
        .into_iter()
        .map(|(id, alarm)| {
            let name = match intrinsic(&alarm["Properties"]["AlarmName"]) {
                Some((f, name)) if f == "Sub" => name.as_str().unwrap_or_default().to_owned(),
                _ => panic!("{id}: AlarmName must be !Sub \"${{AWS::StackName}}-...\""),
            };
            let suffix = name
                .strip_prefix("${AWS::StackName}-")
                .unwrap_or_else(|| panic!("{id}: {name} must start with the stack name"))
                .to_owned();
            (suffix, (id, alarm))
        })
        .collect();
    // Each alarm the issue asks for, with what it must watch.
    let required: [(&str, &[(&str, &str)]); 5] = [
        ("api-5xx-rate", &[("AWS/ApiGateway", "5xx"), ("AWS/ApiGateway", "Count")]),
        ("generation-failure-rate", &[("Facemake", "GenerationsFailed"), ("Facemake", "GenerationsStarted")]),
        ("generations-stuck", &[("Facemake", "GenerationsTimedOut")]),
        ("generation-dead-letters", &[("AWS/SQS", "ApproximateNumberOfMessagesVisible")]),
        ("sms-pumping", &[("Facemake", "CodesSent"), ("Facemake", "CodesVerified")]),
    ];
    for (suffix, watched) in required {
        let Some((id, alarm)) = alarms.get(suffix) else {
            panic!("no alarm named <stack>-{suffix}; alarms: {:?}", alarms.keys().collect::<Vec<_>>())
        };
        let mut metrics = BTreeSet::new();
        metric_names(&alarm["Properties"], &mut metrics);
        for (namespace, name) in watched {
            assert!(metrics.contains(&((*namespace).to_owned(), (*name).to_owned())), "{id} watches {metrics:?}");
        }
    }
    // Every alarm pages the topic (and says when it clears), and the dashboard shows every alarm.
    let body = dashboard_body(&doc);
    for (suffix, (id, alarm)) in &alarms {
        for actions in ["AlarmActions", "OKActions"] {
            assert!(
                refers_to(&alarm["Properties"][actions], "AlarmTopicArn"),
                "{suffix}: {actions} must !Ref AlarmTopicArn"
            );
        }
        assert!(body.contains(&format!("\"${{{id}.Arn}}\"")), "the dashboard's alarm widget lacks {id}");
    }
}

/// The dashboard's JSON as written in the template (its `${...}` substitutions unresolved).
fn dashboard_body(doc: &Value) -> String {
    let (_, dashboard) = resources_of_type(doc, "AWS::CloudWatch::Dashboard").remove(0);
    let (_, body) = intrinsic(&dashboard["Properties"]["DashboardBody"]).unwrap();
    body.as_str().unwrap().to_owned()
}

/// `text` with each `${...}` of a `!Sub` replaced by `X` (they all sit inside JSON strings).
fn without_substitutions(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').map(|e| start + e + 1).unwrap_or(rest.len());
        out.push('X');
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

#[test]
fn the_dashboard_and_the_alarms_show_exactly_the_metrics_the_code_emits() {
    use facemake::metrics::Metric;
    let doc = template();
    let body: serde_json::Value = serde_json::from_str(&without_substitutions(&dashboard_body(&doc)))
        .unwrap_or_else(|e| panic!("the dashboard body is not JSON: {e}"));
    let mut on_dashboard = BTreeSet::new();
    for widget in body["widgets"].as_array().unwrap() {
        for line in widget["properties"]["metrics"].as_array().into_iter().flatten() {
            if line[0] == "Facemake" {
                on_dashboard.insert(line[1].as_str().unwrap().to_owned());
                assert_eq!((&line[2], &line[3]), (&serde_json::json!("Stage"), &serde_json::json!("X")), "{line}");
            }
        }
    }
    let emitted: BTreeSet<String> = Metric::ALL.iter().map(|m| m.name().to_owned()).collect();
    assert_eq!(on_dashboard, emitted, "every metric of shared/src/metrics.rs on the dashboard, and no other");
    // CreditsRevoked is the App Store's refunds; CreditsRefunded is failed generations: labelled apart.
    let text = dashboard_body(&doc);
    assert!(text.contains(r#""CreditsRevoked", "Stage", "${Stage}", {"label": "Revoked (App Store"#), "{text}");
    assert!(text.contains(r#""CreditsRefunded", "Stage", "${Stage}", {"label": "Refunded (failed generations)"#));

    let mut in_alarms = BTreeSet::new();
    for (_, alarm) in resources_of_type(&doc, "AWS::CloudWatch::Alarm") {
        metric_names(alarm, &mut in_alarms);
    }
    for (namespace, name) in in_alarms.into_iter().filter(|(ns, _)| ns == "Facemake") {
        assert!(emitted.contains(&name), "an alarm watches {namespace}/{name}, which nothing emits");
    }
}

#[test]
fn the_readme_lists_every_metric_the_code_emits() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let section = readme.split("\n## Observability\n").nth(1).expect("README has ## Observability");
    let section = section.split("\n## ").next().unwrap_or(section);
    let listed: BTreeSet<String> = section
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .filter(|name| name.chars().next().is_some_and(|c| c.is_ascii_uppercase()))
        .map(str::to_owned)
        .collect();
    let emitted: BTreeSet<String> = facemake::metrics::Metric::ALL.iter().map(|m| m.name().to_owned()).collect();
    assert_eq!(listed, emitted, "the metrics table of README ## Observability");
    let row = |name: &str| section.lines().find(|l| l.starts_with(&format!("| `{name}`"))).unwrap().to_owned();
    assert!(row("CreditsRevoked").contains("App Store"), "{}", row("CreditsRevoked"));
    assert!(row("CreditsRefunded").contains("failed generations"), "{}", row("CreditsRefunded"));
}
