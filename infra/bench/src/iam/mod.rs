//! What IAM would say to the AWS requests a function makes, from template.yaml alone.
//!
//! DynamoDB Local and moto authorise nothing, so a test suite that passes against them says nothing about
//! the deployed roles. This module is the other half of the IAM conformance test (`tests/iam.rs`):
//! - [`accesses`] turns one HTTP exchange the recording proxy saw into the IAM requests AWS evaluates for it
//!   (a `TransactWriteItems` is one `PutItem`/`UpdateItem`/`DeleteItem`/`ConditionCheckItem` per item, a
//!   `DeleteObjects` one `s3:DeleteObject` per key, a `GetObject` or `HeadObject` answered 404 also needs
//!   `s3:ListBucket`, or S3 would have answered 403);
//! - [`Template::parse`] reads each function's policies (its inline statements, the SAM policy templates
//!   it names, the template's own `AWS::IAM::ManagedPolicy` resources it or its explicit role references,
//!   an explicit role's inline policies) with `!Ref`, `!GetAtt` and `!Sub` resolved to the logical
//!   resources, and the policies SAM attaches by itself;
//! - [`Grant::allows`] matches them as IAM does: wildcards in actions and resources, and the `StringLike`
//!   / `StringEquals` conditions on `s3:prefix` the template uses.
//!
//! Resources are written as ARNs with the logical id in place of the name and `REGION`/`ACCOUNT` in place
//! of the stack's region and account, on both sides: `arn:aws:dynamodb:REGION:ACCOUNT:table/UsersTable`,
//! `arn:aws:s3:::ImagesBucket/uploads/01H.../01J...jpg`.

mod access;
mod grant;
mod policy;
mod resolve;
mod template;

pub use access::{accesses, Access, Exchange, Names};
pub use grant::{glob, Grant};
pub use template::{Event, Function, Template};

const REGION: &str = "REGION";
const ACCOUNT: &str = "ACCOUNT";
