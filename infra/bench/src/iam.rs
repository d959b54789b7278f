//! What IAM would say to the AWS requests a function makes, from template.yaml alone.
//!
//! DynamoDB Local and moto authorise nothing, so a test suite that passes against them says nothing about
//! the deployed roles. This module is the other half of the IAM conformance test (`tests/iam.rs`):
//! - [`accesses`] turns one HTTP exchange the recording proxy saw into the IAM requests AWS evaluates for it
//!   (a `TransactWriteItems` is one `PutItem`/`UpdateItem`/`DeleteItem`/`ConditionCheckItem` per item, a
//!   `DeleteObjects` one `s3:DeleteObject` per key, a `GetObject` or `HeadObject` answered 404 also needs
//!   `s3:ListBucket`, or S3 would have answered 403);
//! - [`Template::parse`] reads each function's policies (its inline statements, the SAM policy templates
//!   it names, an explicit role's inline policies) with `!Ref`, `!GetAtt` and `!Sub` resolved to the
//!   logical resources, and the policies SAM attaches by itself;
//! - [`Grant::allows`] matches them as IAM does: wildcards in actions and resources, and the `StringLike`
//!   / `StringEquals` conditions on `s3:prefix` the template uses.
//!
//! Resources are written as ARNs with the logical id in place of the name and `REGION`/`ACCOUNT` in place
//! of the stack's region and account, on both sides: `arn:aws:dynamodb:REGION:ACCOUNT:table/UsersTable`,
//! `arn:aws:s3:::ImagesBucket/uploads/01H.../01J...jpg`.

use std::collections::BTreeMap;

use serde_json::Value as Json;
use serde_yaml_ng::Value;

const REGION: &str = "REGION";
const ACCOUNT: &str = "ACCOUNT";

/// One AWS request as the recording proxy saw it.
#[derive(Debug, Clone)]
pub struct Exchange {
    /// Who made it: the logical id of the function whose clients point at the proxy.
    pub label: String,
    pub method: String,
    /// The path as sent (percent-encoded).
    pub path: String,
    pub query: String,
    /// `x-amz-target` (the JSON protocols: DynamoDB, Secrets Manager).
    pub target: Option<String>,
    pub body: bytes::Bytes,
    /// The status the stand-in answered with.
    pub status: u16,
}

/// One request IAM evaluates: an action on a resource, with the condition keys the request carries.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Access {
    pub action: String,
    pub resource: String,
    pub context: BTreeMap<String, String>,
}

impl Access {
    fn new(action: impl Into<String>, resource: impl Into<String>) -> Self {
        Self { action: action.into(), resource: resource.into(), context: BTreeMap::new() }
    }
}

impl std::fmt::Display for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} on {}", self.action, self.resource)?;
        for (k, v) in &self.context {
            write!(f, " ({k}={v})")?;
        }
        Ok(())
    }
}

/// The stage's concrete names (table names, the bucket, secret ARNs) → the template's logical values.
#[derive(Debug, Clone, Default)]
pub struct Names(BTreeMap<String, String>);

impl Names {
    /// Pairs what a function's environment holds on the stage with what the template puts there: the
    /// template's `USERS_TABLE: !Ref UsersTable` and the stage's `USERS_TABLE=rt01-users` make `rt01-users`
    /// the table `UsersTable`.
    pub fn pair(template_env: &BTreeMap<String, String>, stage_env: &BTreeMap<String, String>) -> Self {
        let mut names = BTreeMap::new();
        for (var, logical) in template_env {
            if let Some(concrete) = stage_env.get(var) {
                names.insert(concrete.clone(), logical.clone());
            }
        }
        Self(names)
    }

    fn logical(&self, concrete: &str, what: &str) -> Result<&str, String> {
        self.0
            .get(concrete)
            .map(String::as_str)
            .ok_or_else(|| format!("{what} {concrete:?} is not one template.yaml gives the function"))
    }

    fn table_arn(&self, table: &str) -> Result<String, String> {
        // A table may be named by its ARN too; the code uses names.
        let logical = self.logical(table, "table")?;
        Ok(format!("arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{logical}"))
    }
}

/// The IAM requests AWS evaluates for `x`.
pub fn accesses(x: &Exchange, names: &Names) -> Result<Vec<Access>, String> {
    if let Some(target) = &x.target {
        let (service, operation) = target.split_once('.').ok_or_else(|| format!("x-amz-target {target:?}"))?;
        let body: Json = serde_json::from_slice(&x.body).map_err(|e| format!("{target}: the body is not JSON: {e}"))?;
        return if service.starts_with("DynamoDB") {
            dynamodb(operation, &body, names)
        } else if service == "secretsmanager" {
            let id = body["SecretId"].as_str().ok_or("GetSecretValue without a SecretId")?;
            Ok(vec![Access::new(format!("secretsmanager:{operation}"), names.logical(id, "secret")?)])
        } else {
            Err(format!("a call to {service}, which this recording does not model"))
        };
    }
    s3(x, names)
}

fn dynamodb(operation: &str, body: &Json, names: &Names) -> Result<Vec<Access>, String> {
    let table = |v: &Json| -> Result<String, String> {
        names.table_arn(v["TableName"].as_str().ok_or_else(|| format!("{operation} without a TableName"))?)
    };
    Ok(match operation {
        "GetItem" | "PutItem" | "UpdateItem" | "DeleteItem" | "DescribeTable" => {
            vec![Access::new(format!("dynamodb:{operation}"), table(body)?)]
        }
        "Query" | "Scan" => {
            let mut arn = table(body)?;
            if let Some(index) = body["IndexName"].as_str() {
                arn = format!("{arn}/index/{index}");
            }
            vec![Access::new(format!("dynamodb:{operation}"), arn)]
        }
        // Batches are authorised once per table, by the batch's own action.
        "BatchGetItem" | "BatchWriteItem" => {
            let tables = body["RequestItems"].as_object().ok_or_else(|| format!("{operation} without RequestItems"))?;
            tables
                .keys()
                .map(|t| Ok(Access::new(format!("dynamodb:{operation}"), names.table_arn(t)?)))
                .collect::<Result<_, String>>()?
        }
        // Transactions have no action of their own: each item is authorised as the single-item action.
        "TransactWriteItems" | "TransactGetItems" => {
            let items = body["TransactItems"].as_array().ok_or_else(|| format!("{operation} without TransactItems"))?;
            let mut out = Vec::new();
            for item in items {
                let (kind, inner) = item
                    .as_object()
                    .and_then(|o| o.iter().next())
                    .ok_or_else(|| format!("{operation}: an empty item"))?;
                let action = match kind.as_str() {
                    "Put" => "PutItem",
                    "Update" => "UpdateItem",
                    "Delete" => "DeleteItem",
                    "ConditionCheck" => "ConditionCheckItem",
                    "Get" => "GetItem",
                    other => return Err(format!("{operation}: an item of kind {other}")),
                };
                out.push(Access::new(format!("dynamodb:{action}"), table(inner)?));
            }
            out
        }
        other => return Err(format!("DynamoDB {other}, which this recording does not model")),
    })
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned()
}

fn query_params(query: &str) -> BTreeMap<String, String> {
    url::form_urlencoded::parse(query.as_bytes()).into_owned().collect()
}

fn s3(x: &Exchange, names: &Names) -> Result<Vec<Access>, String> {
    // Path-style addressing (the stand-ins are on IP addresses): /bucket/key.
    let path = x.path.trim_start_matches('/');
    let (bucket, key) = path.split_once('/').unwrap_or((path, ""));
    let bucket = names.logical(&percent_decode(bucket), "bucket")?.to_owned();
    let key = percent_decode(key);
    let params = query_params(&x.query);
    let object = |k: &str| format!("arn:aws:s3:::{bucket}/{k}");
    let bucket_arn = format!("arn:aws:s3:::{bucket}");
    let mut out = Vec::new();
    match (x.method.as_str(), key.is_empty()) {
        ("GET", true) if params.contains_key("list-type") => {
            let mut list = Access::new("s3:ListBucket", bucket_arn);
            if let Some(prefix) = params.get("prefix") {
                list.context.insert("s3:prefix".into(), prefix.clone());
            }
            out.push(list);
        }
        ("POST", true) if params.contains_key("delete") => {
            // DeleteObjects: IAM checks s3:DeleteObject for every key in the body.
            let body = String::from_utf8_lossy(&x.body);
            for part in body.split("<Key>").skip(1) {
                let k = part.split("</Key>").next().unwrap_or_default();
                out.push(Access::new("s3:DeleteObject", object(k)));
            }
            if out.is_empty() {
                return Err("DeleteObjects without keys".into());
            }
        }
        ("GET" | "HEAD", false) => {
            out.push(Access::new("s3:GetObject", object(&key)));
            if x.status == 404 {
                // S3 answers 404 for a missing key only to a caller that may list the bucket; to anyone
                // else it is 403, which the code would take for a fault.
                out.push(Access::new("s3:ListBucket", bucket_arn));
            }
        }
        ("PUT", false) => out.push(Access::new("s3:PutObject", object(&key))),
        ("DELETE", false) => out.push(Access::new("s3:DeleteObject", object(&key))),
        (method, _) => return Err(format!("S3 {method} /{path}?{}, which this recording does not model", x.query)),
    }
    Ok(out)
}

/// One (action, resource) an Allow statement grants, with its condition.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Grant {
    /// Where it comes from: the statement's Sid, or the policy template's name.
    pub source: String,
    pub action: String,
    pub resource: String,
    /// (operator, key, allowed values).
    pub conditions: Vec<(String, String, Vec<String>)>,
}

impl std::fmt::Display for Grant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{}] {} on {}", self.source, self.action, self.resource)?;
        for (op, key, values) in &self.conditions {
            write!(f, " if {op} {key} {values:?}")?;
        }
        Ok(())
    }
}

impl Grant {
    pub fn allows(&self, access: &Access) -> bool {
        glob(&self.action.to_ascii_lowercase(), &access.action.to_ascii_lowercase())
            && glob(&self.resource, &access.resource)
            && self.conditions.iter().all(|(op, key, values)| match access.context.get(key) {
                // A condition on a key the request does not carry is not met.
                None => false,
                Some(v) => values.iter().any(|allowed| match op.as_str() {
                    "StringLike" => glob(allowed, v),
                    _ => allowed == v,
                }),
            })
    }
}

/// IAM's wildcard match: `*` any run of characters, `?` one.
pub fn glob(pattern: &str, s: &str) -> bool {
    let (p, s): (Vec<char>, Vec<char>) = (pattern.chars().collect(), s.chars().collect());
    let (mut pi, mut si, mut star, mut mark) = (0, 0, None, 0);
    while si < s.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == s[si]) {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = si;
            pi += 1;
        } else if let Some(st) = star {
            pi = st + 1;
            mark += 1;
            si = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

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

struct Resolver<'a> {
    types: BTreeMap<String, String>,
    parameters: &'a Value,
}

impl Resolver<'_> {
    fn get_att(&self, id: &str, attribute: &str) -> Result<String, String> {
        let kind = self.types.get(id).ok_or_else(|| format!("!GetAtt of an unknown resource {id}"))?;
        Ok(match (kind.as_str(), attribute) {
            ("AWS::DynamoDB::Table", "Arn") => format!("arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{id}"),
            ("AWS::DynamoDB::Table", "StreamArn") => format!("arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{id}/stream/*"),
            ("AWS::S3::Bucket", "Arn") => format!("arn:aws:s3:::{id}"),
            ("AWS::SQS::Queue", "Arn") => format!("arn:aws:sqs:{REGION}:{ACCOUNT}:{id}"),
            ("AWS::IAM::Role", "Arn") => format!("arn:aws:iam::{ACCOUNT}:role/{id}"),
            _ => return Err(format!("!GetAtt {id}.{attribute} ({kind}) is not modelled")),
        })
    }

    fn reference(&self, name: &str) -> Result<String, String> {
        Ok(match name {
            "AWS::Region" => REGION.into(),
            "AWS::AccountId" => ACCOUNT.into(),
            "AWS::Partition" => "aws".into(),
            "AWS::StackName" => "STACK".into(),
            "AWS::URLSuffix" => "amazonaws.com".into(),
            _ => match self.types.get(name).map(String::as_str) {
                // Ref of a table, a bucket or a queue name is its name: here, its logical id.
                Some("AWS::DynamoDB::Table" | "AWS::S3::Bucket" | "AWS::SQS::Queue") => name.into(),
                Some("AWS::SecretsManager::Secret") => {
                    format!("arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{name}")
                }
                Some(other) => return Err(format!("!Ref {name} ({other}) is not modelled")),
                None if self.parameters.get(name).is_some() => format!("PARAMETER:{name}"),
                None => return Err(format!("!Ref of an unknown name {name}")),
            },
        })
    }

    /// A scalar value with its intrinsic functions resolved.
    fn scalar(&self, v: &Value) -> Result<String, String> {
        match v {
            Value::String(s) => Ok(s.clone()),
            Value::Number(n) => Ok(n.to_string()),
            Value::Bool(b) => Ok(b.to_string()),
            Value::Tagged(t) => {
                let tag = t.tag.to_string();
                let tag = tag.trim_start_matches('!');
                match (tag, &t.value) {
                    ("Ref", Value::String(name)) => self.reference(name),
                    ("GetAtt", Value::String(path)) => {
                        let (id, attribute) = path.split_once('.').ok_or_else(|| format!("!GetAtt {path}"))?;
                        self.get_att(id, attribute)
                    }
                    ("Sub", Value::String(text)) => self.sub(text),
                    (other, value) => Err(format!("!{other} {value:?} is not modelled")),
                }
            }
            Value::Mapping(m) if m.len() == 1 => {
                let (k, inner) = m.iter().next().ok_or("an empty mapping")?;
                let tagged = match k.as_str() {
                    Some("Ref") => "Ref",
                    Some("Fn::GetAtt") => "GetAtt",
                    Some("Fn::Sub") => "Sub",
                    _ => return Err(format!("{v:?} is not a value")),
                };
                let inner = match inner {
                    Value::Sequence(parts) if tagged == "GetAtt" => {
                        Value::String(parts.iter().filter_map(Value::as_str).collect::<Vec<_>>().join("."))
                    }
                    other => other.clone(),
                };
                self.scalar(&Value::Tagged(Box::new(serde_yaml_ng::value::TaggedValue {
                    tag: serde_yaml_ng::value::Tag::new(tagged),
                    value: inner,
                })))
            }
            other => Err(format!("{other:?} is not a value")),
        }
    }

    fn sub(&self, text: &str) -> Result<String, String> {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let end = rest[start..].find('}').ok_or_else(|| format!("!Sub {text:?}: an unclosed ${{"))? + start;
            let name = &rest[start + 2..end];
            out.push_str(&match name.split_once('.') {
                Some((id, attribute)) if !id.starts_with("AWS::") => self.get_att(id, attribute)?,
                _ => self.reference(name)?,
            });
            rest = &rest[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    fn list(&self, v: &Value) -> Result<Vec<String>, String> {
        match v {
            Value::Sequence(items) => items.iter().map(|i| self.scalar(i)).collect(),
            single => Ok(vec![self.scalar(single)?]),
        }
    }

    fn statements(&self, source: &str, statements: &Value, grants: &mut Vec<Grant>) -> Result<(), String> {
        for (i, st) in
            statements.as_sequence().ok_or_else(|| format!("{source}: Statement is not a list"))?.iter().enumerate()
        {
            let sid = st["Sid"].as_str().map(str::to_owned).unwrap_or_else(|| format!("{source}#{i}"));
            if st["Effect"].as_str() != Some("Allow") {
                return Err(format!("{sid}: only Allow statements are modelled"));
            }
            if st.get("NotAction").is_some() || st.get("NotResource").is_some() {
                return Err(format!("{sid}: NotAction/NotResource are not modelled"));
            }
            let mut conditions = Vec::new();
            if let Some(condition) = st.get("Condition").and_then(Value::as_mapping) {
                for (op, keys) in condition {
                    let op = op.as_str().ok_or("a condition operator")?;
                    if op != "StringLike" && op != "StringEquals" {
                        return Err(format!("{sid}: the condition operator {op} is not modelled"));
                    }
                    for (key, values) in keys.as_mapping().ok_or("a condition's keys")? {
                        let key = key.as_str().ok_or("a condition key")?.to_owned();
                        conditions.push((op.to_owned(), key, self.list(values)?));
                    }
                }
            }
            for action in self.list(&st["Action"])? {
                for resource in self.list(&st["Resource"])? {
                    grants.push(Grant {
                        source: sid.clone(),
                        action: action.clone(),
                        resource,
                        conditions: conditions.clone(),
                    });
                }
            }
        }
        Ok(())
    }

    /// A SAM policy template, expanded as SAM's policy_templates.json does (the ones this stack may use).
    fn policy_template(&self, name: &str, params: &Value, grants: &mut Vec<Grant>) -> Result<(), String> {
        let param = |key: &str| -> Result<String, String> {
            self.scalar(params.get(key).ok_or_else(|| format!("{name} without {key}"))?)
        };
        const DYNAMODB_READ: &[&str] =
            &["dynamodb:GetItem", "dynamodb:Scan", "dynamodb:Query", "dynamodb:BatchGetItem", "dynamodb:DescribeTable"];
        const DYNAMODB_WRITE: &[&str] = &["dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:BatchWriteItem"];
        const DYNAMODB_CRUD_EXTRA: &[&str] = &["dynamodb:DeleteItem", "dynamodb:ConditionCheckItem"];
        const S3_READ: &[&str] = &[
            "s3:GetObject",
            "s3:ListBucket",
            "s3:GetBucketLocation",
            "s3:GetObjectVersion",
            "s3:GetLifecycleConfiguration",
        ];
        const S3_CRUD_EXTRA: &[&str] =
            &["s3:PutObject", "s3:PutObjectAcl", "s3:PutLifecycleConfiguration", "s3:DeleteObject"];
        // A table and its indexes; a bucket and its objects.
        let table = || -> Result<Vec<String>, String> {
            let arn = format!("arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{}", param("TableName")?);
            Ok(vec![format!("{arn}/index/*"), arn])
        };
        let bucket = || -> Result<Vec<String>, String> {
            let arn = format!("arn:aws:s3:::{}", param("BucketName")?);
            Ok(vec![format!("{arn}/*"), arn])
        };
        let (actions, resources): (Vec<&str>, Vec<String>) = match name {
            "DynamoDBReadPolicy" => (DYNAMODB_READ.to_vec(), table()?),
            "DynamoDBWritePolicy" => (DYNAMODB_WRITE.to_vec(), table()?),
            "DynamoDBCrudPolicy" => ([DYNAMODB_READ, DYNAMODB_WRITE, DYNAMODB_CRUD_EXTRA].concat(), table()?),
            "S3ReadPolicy" => (S3_READ.to_vec(), bucket()?),
            "S3CrudPolicy" => ([S3_READ, S3_CRUD_EXTRA].concat(), bucket()?),
            "AWSSecretsManagerGetSecretValuePolicy" => {
                (vec!["secretsmanager:GetSecretValue"], vec![param("SecretArn")?])
            }
            "SQSSendMessagePolicy" => {
                (vec!["sqs:SendMessage*"], vec![format!("arn:aws:sqs:{REGION}:{ACCOUNT}:{}", param("QueueName")?)])
            }
            other => return Err(format!("the SAM policy template {other} is not modelled: add its expansion")),
        };
        for action in actions {
            for resource in &resources {
                grants.push(Grant {
                    source: name.to_owned(),
                    action: action.to_owned(),
                    resource: resource.clone(),
                    conditions: Vec::new(),
                });
            }
        }
        Ok(())
    }

    fn env(&self, vars: &Value, out: &mut BTreeMap<String, String>) -> Result<(), String> {
        if let Some(vars) = vars.as_mapping() {
            for (k, v) in vars {
                let k = k.as_str().ok_or("an environment variable name")?.to_owned();
                // Values the recording cannot use (conditions, joins) are left out.
                if let Ok(v) = self.scalar(v) {
                    out.insert(k, v);
                }
            }
        }
        Ok(())
    }
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
                    managed.push(resolver.scalar(arn)?);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Names {
        Names(BTreeMap::from([
            ("st-users".to_owned(), "UsersTable".to_owned()),
            ("st-sessions".to_owned(), "SessionsTable".to_owned()),
            ("st-images".to_owned(), "ImagesBucket".to_owned()),
            ("arn:moto:app".to_owned(), "arn:aws:secretsmanager:REGION:ACCOUNT:secret:AppSecret".to_owned()),
        ]))
    }

    fn dynamo(op: &str, body: Json) -> Exchange {
        Exchange {
            label: "F".into(),
            method: "POST".into(),
            path: "/".into(),
            query: String::new(),
            target: Some(format!("DynamoDB_20120810.{op}")),
            body: body.to_string().into(),
            status: 200,
        }
    }

    fn s3(method: &str, path: &str, query: &str, body: &str, status: u16) -> Exchange {
        Exchange {
            label: "F".into(),
            method: method.into(),
            path: path.into(),
            query: query.into(),
            target: None,
            body: body.to_owned().into(),
            status,
        }
    }

    const USERS: &str = "arn:aws:dynamodb:REGION:ACCOUNT:table/UsersTable";
    const SESSIONS: &str = "arn:aws:dynamodb:REGION:ACCOUNT:table/SessionsTable";

    #[test]
    fn a_transaction_is_authorised_item_by_item() {
        let x = dynamo(
            "TransactWriteItems",
            serde_json::json!({"TransactItems": [
                {"Update": {"TableName": "st-sessions", "Key": {}}},
                {"Put": {"TableName": "st-sessions", "Item": {}}},
                {"ConditionCheck": {"TableName": "st-users", "Key": {}}},
                {"Delete": {"TableName": "st-users", "Key": {}}},
            ]}),
        );
        let got: Vec<String> = accesses(&x, &names()).unwrap().iter().map(ToString::to_string).collect();
        assert_eq!(
            got,
            [
                format!("dynamodb:UpdateItem on {SESSIONS}"),
                format!("dynamodb:PutItem on {SESSIONS}"),
                format!("dynamodb:ConditionCheckItem on {USERS}"),
                format!("dynamodb:DeleteItem on {USERS}"),
            ]
        );
        let get =
            dynamo("TransactGetItems", serde_json::json!({"TransactItems": [{"Get": {"TableName": "st-users"}}]}));
        assert_eq!(accesses(&get, &names()).unwrap(), [Access::new("dynamodb:GetItem", USERS)]);
    }

    #[test]
    fn queries_name_their_index_and_batches_each_table() {
        let q = dynamo("Query", serde_json::json!({"TableName": "st-sessions", "IndexName": "ByUser"}));
        assert_eq!(
            accesses(&q, &names()).unwrap(),
            [Access::new("dynamodb:Query", format!("{SESSIONS}/index/ByUser"))]
        );
        let b = dynamo("BatchGetItem", serde_json::json!({"RequestItems": {"st-users": {}, "st-sessions": {}}}));
        let got = accesses(&b, &names()).unwrap();
        assert_eq!(got, [Access::new("dynamodb:BatchGetItem", SESSIONS), Access::new("dynamodb:BatchGetItem", USERS)]);
        let unknown = dynamo("GetItem", serde_json::json!({"TableName": "someone-elses"}));
        assert!(accesses(&unknown, &names()).unwrap_err().contains("someone-elses"));
    }

    #[test]
    fn s3_requests_map_to_the_actions_s3_checks() {
        let n = names();
        let get = accesses(&s3("GET", "/st-images/uploads/u1/a.jpg", "", "", 200), &n).unwrap();
        assert_eq!(get, [Access::new("s3:GetObject", "arn:aws:s3:::ImagesBucket/uploads/u1/a.jpg")]);
        // A 404 is only possible with s3:ListBucket (without it S3 says 403).
        let missing = accesses(&s3("HEAD", "/st-images/uploads/u1/b.jpg", "", "", 404), &n).unwrap();
        assert_eq!(missing[1], Access::new("s3:ListBucket", "arn:aws:s3:::ImagesBucket"));
        assert!(missing[1].context.is_empty());
        let list = accesses(&s3("GET", "/st-images", "list-type=2&prefix=work%2Fu1%2F", "", 200), &n).unwrap();
        assert_eq!(list[0].context["s3:prefix"], "work/u1/");
        let delete = accesses(
            &s3("POST", "/st-images", "delete", "<Delete><Object><Key>outputs/u1/g.png</Key></Object><Object><Key>work/u1/g.jpg</Key></Object></Delete>", 200),
            &n,
        )
        .unwrap();
        assert_eq!(
            delete,
            [
                Access::new("s3:DeleteObject", "arn:aws:s3:::ImagesBucket/outputs/u1/g.png"),
                Access::new("s3:DeleteObject", "arn:aws:s3:::ImagesBucket/work/u1/g.jpg"),
            ]
        );
        let encoded = accesses(&s3("GET", "/st-images/uploads/u1/a%20b%2Bc.jpg", "", "", 200), &n).unwrap();
        assert_eq!(encoded[0].resource, "arn:aws:s3:::ImagesBucket/uploads/u1/a b+c.jpg", "keys are percent-decoded");
        let presigned_put =
            accesses(&s3("PUT", "/st-images/uploads/u1/c.jpg", "X-Amz-Signature=abc", "", 200), &n).unwrap();
        assert_eq!(presigned_put, [Access::new("s3:PutObject", "arn:aws:s3:::ImagesBucket/uploads/u1/c.jpg")]);
    }

    #[test]
    fn grants_match_wildcards_and_prefix_conditions() {
        assert!(glob("arn:aws:s3:::B/uploads/*", "arn:aws:s3:::B/uploads/u/x.jpg"));
        assert!(!glob("arn:aws:s3:::B/uploads/*", "arn:aws:s3:::B/outputs/u/x.jpg"));
        assert!(glob("s3:*", "s3:GetObject") && glob("a?c", "abc") && !glob("a?c", "ac"));
        let list = Grant {
            source: "ImagesList".into(),
            action: "s3:ListBucket".into(),
            resource: "arn:aws:s3:::B".into(),
            conditions: vec![("StringLike".into(), "s3:prefix".into(), vec!["uploads/*".into()])],
        };
        let mut access = Access::new("s3:ListBucket", "arn:aws:s3:::B");
        assert!(!list.allows(&access), "a request without the key does not meet the condition");
        access.context.insert("s3:prefix".into(), "uploads/u1/".into());
        assert!(list.allows(&access));
        access.context.insert("s3:prefix".into(), "".into());
        assert!(!list.allows(&access), "the whole bucket is not an allowed prefix");
        let get =
            Grant { source: "x".into(), action: "dynamodb:GetItem".into(), resource: USERS.into(), conditions: vec![] };
        assert!(get.allows(&Access::new("dynamodb:getitem", USERS)), "actions are case-insensitive");
        assert!(!get.allows(&Access::new("dynamodb:GetItem", format!("{USERS}/index/ByUser"))));
    }

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
}
