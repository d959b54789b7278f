//! The generation reconciler: on a schedule, fails and refunds every job still queued or processing past
//! its deadline (a worker that crashed or timed out, a record that was dead-lettered), so no credit is ever
//! lost to a job that never finishes.

use std::sync::Arc;

use facemake::services::generation::Worker;
use serde_json::{json, Value};

pub async fn handle(worker: Arc<Worker>, _event: Value) -> Result<Value, lambda_http::Error> {
    let refunded = worker.reconcile().await?;
    if refunded > 0 {
        tracing::warn!(refunded, "overdue generations failed and refunded");
    }
    Ok(json!({ "refunded": refunded }))
}
