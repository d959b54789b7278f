//! The SAM policy templates this stack may use, expanded as SAM's policy_templates.json does.

use serde_yaml_ng::Value;

use super::resolve::Resolver;
use super::{Grant, ACCOUNT, REGION};

impl Resolver<'_> {
    /// A SAM policy template, expanded as SAM's policy_templates.json does (the ones this stack may use).
    pub(super) fn policy_template(&self, name: &str, params: &Value, grants: &mut Vec<Grant>) -> Result<(), String> {
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
}
