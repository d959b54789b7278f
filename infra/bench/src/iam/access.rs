//! From a recorded AWS request to the IAM requests AWS evaluates for it.

use std::collections::BTreeMap;

use serde_json::Value as Json;

use super::{ACCOUNT, REGION};

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
    pub(super) fn new(action: impl Into<String>, resource: impl Into<String>) -> Self {
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
}
