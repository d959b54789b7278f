//! Creates DynamoDB tables from the definitions in template.yaml, so DynamoDB Local (tests, the local API)
//! gets exactly the keys, indexes and TTL the deployed stack has — there is no second copy to drift. The
//! template is read when the tables are made, not compiled in: editing it rebuilds no crate.

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection, ProjectionType,
    ScalarAttributeType, TimeToLiveSpecification,
};
use serde_yaml_ng::Value;

use aws_sdk_dynamodb::error::DisplayErrorContext;
use facemake::config::Tables;
use facemake::ports::PortError;

/// The variable that points at another template.yaml (default: the repository's).
pub const TEMPLATE_VAR: &str = "FACEMAKE_TEMPLATE";

/// Where template.yaml is: `FACEMAKE_TEMPLATE`, or the repository's (found from this crate's source).
pub fn template_path() -> std::path::PathBuf {
    match std::env::var_os(TEMPLATE_VAR) {
        Some(path) => path.into(),
        None => std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../template.yaml"),
    }
}

/// The text of template.yaml, read now.
pub fn template() -> Result<String, String> {
    let path = template_path();
    std::fs::read_to_string(&path).map_err(|e| format!("reading {}: {e}", path.display()))
}

fn sdk_error<E: std::error::Error + Send + Sync + 'static, R: std::fmt::Debug + Send + Sync + 'static>(
    err: aws_sdk_dynamodb::error::SdkError<E, R>,
) -> PortError {
    PortError::unavailable("schema", DisplayErrorContext(err).to_string())
}

/// A table as template.yaml declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableDef {
    pub logical_id: String,
    pub attributes: Vec<(String, String)>,
    pub key_schema: Vec<(String, String)>,
    pub gsis: Vec<(String, Vec<(String, String)>)>,
    pub ttl_attribute: Option<String>,
}

fn pairs(v: &Value, a: &str, b: &str) -> Vec<(String, String)> {
    v.as_sequence()
        .map(|seq| {
            seq.iter().filter_map(|e| Some((e.get(a)?.as_str()?.to_owned(), e.get(b)?.as_str()?.to_owned()))).collect()
        })
        .unwrap_or_default()
}

/// Every `AWS::DynamoDB::Table` of the template.
pub fn table_defs(template: &str) -> Result<Vec<TableDef>, String> {
    let doc: Value = serde_yaml_ng::from_str(template).map_err(|e| format!("template.yaml: {e}"))?;
    let resources = doc.get("Resources").and_then(Value::as_mapping).ok_or("template.yaml has no Resources")?;
    let mut defs = Vec::new();
    for (id, resource) in resources {
        if resource.get("Type").and_then(Value::as_str) != Some("AWS::DynamoDB::Table") {
            continue;
        }
        let id = id.as_str().ok_or("resource id is not a string")?.to_owned();
        let props = resource.get("Properties").ok_or_else(|| format!("{id} has no Properties"))?;
        let gsis = props
            .get("GlobalSecondaryIndexes")
            .and_then(Value::as_sequence)
            .map(|seq| {
                seq.iter()
                    .filter_map(|g| {
                        let name = g.get("IndexName")?.as_str()?.to_owned();
                        Some((name, pairs(g.get("KeySchema")?, "AttributeName", "KeyType")))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let ttl_attribute = props
            .get("TimeToLiveSpecification")
            .filter(|t| t.get("Enabled").and_then(Value::as_bool) == Some(true))
            .and_then(|t| t.get("AttributeName"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        defs.push(TableDef {
            attributes: pairs(
                props.get("AttributeDefinitions").unwrap_or(&Value::Null),
                "AttributeName",
                "AttributeType",
            ),
            key_schema: pairs(props.get("KeySchema").unwrap_or(&Value::Null), "AttributeName", "KeyType"),
            gsis,
            ttl_attribute,
            logical_id: id,
        });
    }
    Ok(defs)
}

fn key_schema(pairs: &[(String, String)]) -> Result<Vec<KeySchemaElement>, PortError> {
    pairs
        .iter()
        .map(|(name, kind)| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(KeyType::from(kind.as_str()))
                .build()
                .map_err(|e| PortError::internal("schema", e))
        })
        .collect()
}

/// Creates every table of the template named `{prefix}{LogicalId}` (existing ones are left alone) and
/// returns the names in the shape the adapters take.
pub async fn create_tables(client: &aws_sdk_dynamodb::Client, prefix: &str) -> Result<Tables, PortError> {
    let defs = template().and_then(|t| table_defs(&t)).map_err(|e| PortError::internal("schema", e))?;
    for def in &defs {
        let name = format!("{prefix}{}", def.logical_id);
        let mut create = client.create_table().table_name(&name).billing_mode(BillingMode::PayPerRequest);
        for (attr, kind) in &def.attributes {
            create = create.attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(attr)
                    .attribute_type(ScalarAttributeType::from(kind.as_str()))
                    .build()
                    .map_err(|e| PortError::internal("schema", e))?,
            );
        }
        create = create.set_key_schema(Some(key_schema(&def.key_schema)?));
        for (index, keys) in &def.gsis {
            create = create.global_secondary_indexes(
                GlobalSecondaryIndex::builder()
                    .index_name(index)
                    .set_key_schema(Some(key_schema(keys)?))
                    .projection(Projection::builder().projection_type(ProjectionType::All).build())
                    .build()
                    .map_err(|e| PortError::internal("schema", e))?,
            );
        }
        match create.send().await {
            Ok(_) => {}
            Err(e) if e.as_service_error().is_some_and(|se| se.is_resource_in_use_exception()) => continue,
            Err(e) => return Err(sdk_error(e)),
        }
        if let Some(attr) = &def.ttl_attribute {
            let spec = TimeToLiveSpecification::builder()
                .attribute_name(attr)
                .enabled(true)
                .build()
                .map_err(|e| PortError::internal("schema", e))?;
            client
                .update_time_to_live()
                .table_name(&name)
                .time_to_live_specification(spec)
                .send()
                .await
                .map_err(sdk_error)?;
        }
    }
    if let Some(missing) = Tables::LOGICAL_IDS.iter().find(|id| !defs.iter().any(|d| d.logical_id == **id)) {
        return Err(PortError::internal("schema", format!("template.yaml declares no {missing}")));
    }
    Ok(Tables::prefixed(prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_tables_of_the_real_template() {
        let defs = table_defs(&template().unwrap()).unwrap();
        let ids: Vec<&str> = defs.iter().map(|d| d.logical_id.as_str()).collect();
        for id in Tables::LOGICAL_IDS {
            assert!(ids.contains(&id), "{id} missing from {ids:?}");
        }
        let codes = defs.iter().find(|d| d.logical_id == "CodesTable").unwrap();
        assert_eq!(codes.key_schema, vec![("pk".into(), "HASH".into()), ("sk".into(), "RANGE".into())]);
        assert_eq!(codes.ttl_attribute.as_deref(), Some("ttl"));
        let users = defs.iter().find(|d| d.logical_id == "UsersTable").unwrap();
        // Only account-deletion tombstones carry it.
        assert_eq!(users.ttl_attribute.as_deref(), Some("ttl"));
    }
}
