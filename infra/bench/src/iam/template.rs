//! The functions of template.yaml and the policies each one's role carries.

use std::collections::BTreeMap;

use serde_yaml_ng::{Mapping, Value};

use super::resolve::Resolver;
use super::{Access, Grant};

/// A function as template.yaml declares it.
#[derive(Debug, Clone)]
pub struct Function {
    pub logical_id: String,
    /// `Metadata.BuildProperties.Binary`.
    pub binary: String,
    /// What its policies grant.
    pub grants: Vec<Grant>,
    /// Managed policies attached to its role: by SAM for the function's settings (the basic execution
    /// role, X-Ray with `Tracing: Active`, stream reading for a DynamoDB event), or named in `Policies`.
    /// The Lambda service uses them, not the function's code, so no recording can check them.
    pub managed: Vec<String>,
    /// Its environment, Globals merged in, each value resolved (`!Ref UsersTable` → `UsersTable`).
    pub env: BTreeMap<String, String>,
    /// Its events: (event name, type, HTTP method and path for HttpApi events).
    pub events: Vec<Event>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Event {
    pub name: String,
    pub kind: String,
    pub route: Option<(String, String)>,
}

impl Function {
    /// The grants that allow `access`.
    pub fn granting<'a>(&'a self, access: &'a Access) -> impl Iterator<Item = &'a Grant> + 'a {
        self.grants.iter().filter(move |g| g.allows(access))
    }
}

/// The functions of template.yaml.
#[derive(Debug, Clone)]
pub struct Template {
    pub functions: BTreeMap<String, Function>,
}

impl Template {
    pub fn parse(yaml: &str) -> Result<Self, String> {
        let doc: Value = serde_yaml_ng::from_str(yaml).map_err(|e| format!("template.yaml: {e}"))?;
        let resources = doc["Resources"].as_mapping().ok_or("template.yaml has no Resources")?;
        let types = resources
            .iter()
            .filter_map(|(id, r)| Some((id.as_str()?.to_owned(), r["Type"].as_str()?.to_owned())))
            .collect();
        let resolver = Resolver { types, parameters: &doc["Parameters"] };
        let globals = &doc["Globals"]["Function"];
        let mut functions = BTreeMap::new();
        for (id, resource) in resources {
            if resource["Type"].as_str() != Some("AWS::Serverless::Function") {
                continue;
            }
            let id = id.as_str().ok_or("a resource id")?.to_owned();
            let props = &resource["Properties"];
            let binary = resource["Metadata"]["BuildProperties"]["Binary"]
                .as_str()
                .ok_or_else(|| format!("{id} has no Metadata.BuildProperties.Binary"))?
                .to_owned();
            let mut grants = Vec::new();
            let mut managed = Vec::new();
            let events: Vec<Event> = props["Events"]
                .as_mapping()
                .map(|m| {
                    m.iter()
                        .map(|(name, e)| Event {
                            name: name.as_str().unwrap_or_default().to_owned(),
                            kind: e["Type"].as_str().unwrap_or_default().to_owned(),
                            route: match (e["Properties"]["Method"].as_str(), e["Properties"]["Path"].as_str()) {
                                (Some(m), Some(p)) => Some((m.to_ascii_uppercase(), p.to_owned())),
                                _ => None,
                            },
                        })
                        .collect()
                })
                .unwrap_or_default();
            if let Some(role) = props.get("Role") {
                // An explicit role: SAM attaches nothing; its policies are the role's.
                let role_arn = resolver.scalar(role)?;
                let role_id = role_arn.rsplit('/').next().unwrap_or_default();
                let role = &resources
                    .get(role_id)
                    .ok_or_else(|| format!("{id}: the role {role_id} is not a resource of the template"))?
                    ["Properties"];
                for policy in role["Policies"].as_sequence().into_iter().flatten() {
                    let name = policy["PolicyName"].as_str().unwrap_or("inline");
                    resolver.statements(name, &policy["PolicyDocument"]["Statement"], &mut grants)?;
                }
                for arn in role["ManagedPolicyArns"].as_sequence().into_iter().flatten() {
                    if !template_policy(resources, &resolver, arn, &mut grants)? {
                        managed.push(resolver.scalar(arn)?);
                    }
                }
            } else {
                managed.push("AWSLambdaBasicExecutionRole (SAM: every function role)".into());
                let tracing = props.get("Tracing").or_else(|| globals.get("Tracing")).and_then(Value::as_str);
                if tracing == Some("Active") {
                    managed.push("AWSXrayWriteOnlyAccess (SAM: Tracing: Active)".into());
                }
                if events.iter().any(|e| e.kind == "DynamoDB") {
                    managed.push("AWSLambdaDynamoDBExecutionRole (SAM: a DynamoDB event)".into());
                }
                for (i, policy) in props["Policies"].as_sequence().into_iter().flatten().enumerate() {
                    // SAM puts a policy ARN (here a `!Ref` of the template's own managed policy) in the role's
                    // ManagedPolicyArns, as an explicit role would have it.
                    if template_policy(resources, &resolver, policy, &mut grants)? {
                        continue;
                    }
                    match policy {
                        Value::String(name) => managed.push(name.clone()),
                        Value::Mapping(m) if m.contains_key("Statement") => {
                            resolver.statements(&format!("{id}.Policies[{i}]"), &policy["Statement"], &mut grants)?
                        }
                        Value::Mapping(m) if m.len() == 1 => {
                            let (name, params) = m.iter().next().ok_or("a policy")?;
                            resolver.policy_template(
                                name.as_str().ok_or("a policy template name")?,
                                params,
                                &mut grants,
                            )?;
                        }
                        other => return Err(format!("{id}: the policy {other:?} is not modelled")),
                    }
                }
            }
            let mut env = BTreeMap::new();
            resolver.env(&globals["Environment"]["Variables"], &mut env)?;
            resolver.env(&props["Environment"]["Variables"], &mut env)?;
            functions.insert(id.clone(), Function { logical_id: id, binary, grants, managed, env, events });
        }
        Ok(Self { functions })
    }
}

/// If `arn` is `!Ref P` (or `{Ref: P}`) of an `AWS::IAM::ManagedPolicy` of the template, whose `Ref` is its ARN:
/// its statements, each grant's source `P.<Sid>`, added to `grants`, and true. Otherwise false.
fn template_policy(
    resources: &Mapping,
    resolver: &Resolver,
    arn: &Value,
    grants: &mut Vec<Grant>,
) -> Result<bool, String> {
    let name = match arn {
        Value::Tagged(t) if t.tag.to_string().trim_start_matches('!') == "Ref" => t.value.as_str(),
        Value::Mapping(m) if m.len() == 1 => m.get("Ref").and_then(Value::as_str),
        _ => None,
    };
    let Some((name, policy)) = name.and_then(|n| Some((n, resources.get(n)?))) else { return Ok(false) };
    if policy["Type"].as_str() != Some("AWS::IAM::ManagedPolicy") {
        return Ok(false);
    }
    let props = &policy["Properties"];
    if ["Roles", "Users", "Groups"].iter().any(|k| props.get(k).is_some()) {
        // Attached from the policy's side, it would reach roles this reading does not follow.
        return Err(format!(
            "{name}: attachments by the policy's Roles/Users/Groups are not modelled: reference it from the role"
        ));
    }
    let first = grants.len();
    resolver.statements(name, &props["PolicyDocument"]["Statement"], grants)?;
    for grant in &mut grants[first..] {
        if !grant.source.starts_with(&format!("{name}#")) {
            grant.source = format!("{name}.{}", grant.source);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    const USERS: &str = "arn:aws:dynamodb:REGION:ACCOUNT:table/UsersTable";

    #[test]
    fn the_template_resolves_refs_subs_and_policy_templates() {
        let t = Template::parse(
            r#"
Parameters:
  Stage: {Type: String}
Globals:
  Function:
    Tracing: Active
    Environment:
      Variables:
        USERS_TABLE: !Ref UsersTable
        APP_SECRET_ARN: !Ref AppSecret
Resources:
  UsersTable: {Type: AWS::DynamoDB::Table}
  AppSecret: {Type: AWS::SecretsManager::Secret}
  Images: {Type: AWS::S3::Bucket}
  Fn:
    Type: AWS::Serverless::Function
    Metadata: {BuildProperties: {Binary: fn}}
    Properties:
      Policies:
        - Statement:
            - Sid: Users
              Effect: Allow
              Action: [dynamodb:GetItem]
              Resource: [!GetAtt UsersTable.Arn, !Sub "${UsersTable.Arn}/index/ByPhone"]
            - Sid: List
              Effect: Allow
              Action: s3:ListBucket
              Resource: !GetAtt Images.Arn
              Condition: {StringLike: {"s3:prefix": ["uploads/*"]}}
        - AWSSecretsManagerGetSecretValuePolicy: {SecretArn: !Ref AppSecret}
      Events:
        Get: {Type: HttpApi, Properties: {Method: get, Path: "/v1/x/{id}"}}
"#,
        )
        .unwrap();
        let f = &t.functions["Fn"];
        assert_eq!(f.binary, "fn");
        assert_eq!(f.env["USERS_TABLE"], "UsersTable");
        let got: Vec<String> = f.grants.iter().map(ToString::to_string).collect();
        assert_eq!(
            got,
            [
                format!("[Users] dynamodb:GetItem on {USERS}"),
                format!("[Users] dynamodb:GetItem on {USERS}/index/ByPhone"),
                "[List] s3:ListBucket on arn:aws:s3:::Images if StringLike s3:prefix [\"uploads/*\"]".to_owned(),
                "[AWSSecretsManagerGetSecretValuePolicy] secretsmanager:GetSecretValue on arn:aws:secretsmanager:REGION:ACCOUNT:secret:AppSecret".to_owned(),
            ]
        );
        assert_eq!(
            f.events,
            [Event { name: "Get".into(), kind: "HttpApi".into(), route: Some(("GET".into(), "/v1/x/{id}".into())) }]
        );
        assert!(f.managed.iter().any(|m| m.starts_with("AWSXrayWriteOnlyAccess")));
        let crud = Template::parse(
            "Resources:\n  T: {Type: AWS::DynamoDB::Table}\n  F:\n    Type: AWS::Serverless::Function\n    Metadata: {BuildProperties: {Binary: f}}\n    Properties:\n      Policies:\n        - DynamoDBCrudPolicy: {TableName: !Ref T}\n",
        )
        .unwrap();
        let f = &crud.functions["F"];
        let index = Access::new("dynamodb:Query", "arn:aws:dynamodb:REGION:ACCOUNT:table/T/index/ByUser");
        let check = Access::new("dynamodb:ConditionCheckItem", "arn:aws:dynamodb:REGION:ACCOUNT:table/T");
        assert!(f.granting(&index).next().is_some() && f.granting(&check).next().is_some());
        assert!(f.granting(&Access::new("dynamodb:GetItem", USERS)).next().is_none(), "only its own table");
        let unknown = Template::parse("Resources:\n  F:\n    Type: AWS::Serverless::Function\n    Metadata: {BuildProperties: {Binary: f}}\n    Properties:\n      Policies:\n        - KinesisCrudPolicy: {StreamName: s}\n");
        assert!(unknown.unwrap_err().contains("KinesisCrudPolicy"));
    }

    #[test]
    fn a_ref_to_a_managed_policy_of_the_template_grants_its_statements() {
        let yaml = r#"
Resources:
  Users: {Type: AWS::DynamoDB::Table}
  Shared:
    Type: AWS::IAM::ManagedPolicy
    Properties:
      PolicyDocument:
        Version: "2012-10-17"
        Statement:
          - Sid: UsersDelete
            Effect: Allow
            Action: dynamodb:DeleteItem
            Resource: !GetAtt Users.Arn
          - Effect: Allow
            Action: dynamodb:Query
            Resource: !Sub "${Users.Arn}/index/ByUser"
  A:
    Type: AWS::Serverless::Function
    Metadata: {BuildProperties: {Binary: a}}
    Properties:
      Policies:
        - Statement:
            - {Sid: UsersRead, Effect: Allow, Action: dynamodb:GetItem, Resource: !GetAtt Users.Arn}
        - !Ref Shared
  B:
    Type: AWS::Serverless::Function
    Metadata: {BuildProperties: {Binary: b}}
    Properties:
      Policies:
        - {Ref: Shared}
        - AWSLambdaVPCAccessExecutionRole
  RoleC:
    Type: AWS::IAM::Role
    Properties:
      ManagedPolicyArns:
        - !Ref Shared
        - !Sub "arn:${AWS::Partition}:iam::aws:policy/AWSXrayWriteOnlyAccess"
  C:
    Type: AWS::Serverless::Function
    Metadata: {BuildProperties: {Binary: c}}
    Properties:
      Role: !GetAtt RoleC.Arn
"#;
        let t = Template::parse(yaml).unwrap();
        let shared = [
            format!("[Shared.UsersDelete] dynamodb:DeleteItem on {}", "arn:aws:dynamodb:REGION:ACCOUNT:table/Users"),
            format!("[Shared#1] dynamodb:Query on {}", "arn:aws:dynamodb:REGION:ACCOUNT:table/Users/index/ByUser"),
        ];
        let grants = |id: &str| t.functions[id].grants.iter().map(ToString::to_string).collect::<Vec<_>>();
        let mut a = vec!["[UsersRead] dynamodb:GetItem on arn:aws:dynamodb:REGION:ACCOUNT:table/Users".to_owned()];
        a.extend(shared.clone());
        assert_eq!(grants("A"), a);
        assert_eq!(grants("B"), shared, "the {{Ref: ...}} form too");
        assert_eq!(grants("C"), shared, "an explicit role's ManagedPolicyArns too");
        // The template's policy is read, not listed as an AWS managed policy beside the real ones.
        assert!(t.functions.values().all(|f| f.managed.iter().all(|m| !m.contains("Shared"))));
        assert!(t.functions["B"].managed.contains(&"AWSLambdaVPCAccessExecutionRole".to_owned()));
        assert_eq!(t.functions["C"].managed, ["arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess"]);

        let attached = yaml.replace("      PolicyDocument:", "      Roles: [!Ref RoleC]\n      PolicyDocument:");
        assert!(Template::parse(&attached).unwrap_err().contains("Roles"));
    }
}
