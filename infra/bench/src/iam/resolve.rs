//! Reading values and policy statements of template.yaml: `!Ref`, `!GetAtt` and `!Sub` resolved to the logical
//! resources.

use std::collections::BTreeMap;

use serde_yaml_ng::Value;

use super::{Grant, ACCOUNT, REGION};

pub(super) struct Resolver<'a> {
    pub(super) types: BTreeMap<String, String>,
    pub(super) parameters: &'a Value,
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
    pub(super) fn scalar(&self, v: &Value) -> Result<String, String> {
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

    pub(super) fn statements(&self, source: &str, statements: &Value, grants: &mut Vec<Grant>) -> Result<(), String> {
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

    pub(super) fn env(&self, vars: &Value, out: &mut BTreeMap<String, String>) -> Result<(), String> {
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
