//! template.yaml and the code cannot drift: every function's HttpApi events must be exactly the routes its
//! router serves, and the local API must serve the union.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use facemake::testkit::Harness;
use serde_yaml_ng::Value;

mod common;

type Routes = BTreeSet<(String, String)>;

fn template_routes() -> BTreeMap<String, Routes> {
    let doc: Value = serde_yaml_ng::from_str(facemake::adapters::dynamodb::schema::TEMPLATE).unwrap();
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
        // Not HTTP: triggered by the generations table's stream and by a schedule.
        ("generation-worker".to_owned(), Routes::new()),
        ("generation-reconciler".to_owned(), Routes::new()),
    ]);
    assert_eq!(template_routes(), code);
}

#[tokio::test]
async fn the_local_api_serves_every_deployed_route() {
    let api = local_api::LocalApi::in_memory(facemake::testkit::policy(), "http://127.0.0.1:3000").await.unwrap();
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
