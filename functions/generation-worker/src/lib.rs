//! The generation worker: triggered by the generations table's stream (inserts of `GEN#` records, filtered
//! by the event source mapping), it processes each new job.
//!
//! A job that fails for good is failed and refunded inside `Worker::process` and counts as handled. Only an
//! infrastructure error is reported back as a batch item failure, so Lambda redelivers that record (after
//! `MaximumRetryAttempts` it goes to the dead-letter queue, and the reconciler refunds the job at its deadline).

use std::sync::Arc;

use aws_lambda_events::event::dynamodb::{Event, EventRecord};
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use facemake::domain::UserId;
use facemake::ports::JobRef;
use facemake::services::generation::{JobResult, Worker};
use serde_dynamo::AttributeValue;

/// The job a stream record names, from its keys (`USER#<id>` / `GEN#<id>`).
pub fn job_of(record: &EventRecord) -> Option<JobRef> {
    let key = |name: &str| match record.change.keys.get(name) {
        Some(AttributeValue::S(s)) => Some(s.as_str()),
        _ => None,
    };
    let user = key("pk")?.strip_prefix("USER#")?;
    let id = key("sk")?.strip_prefix("GEN#")?;
    Some(JobRef { user_id: UserId::parse(user).ok()?, generation_id: id.to_owned() })
}

/// Handles a DynamoDB Streams batch; answers with the records to retry (`ReportBatchItemFailures`).
pub async fn handle(worker: Arc<Worker>, event: Event) -> Result<DynamoDbEventResponse, lambda_http::Error> {
    let mut response = DynamoDbEventResponse::default();
    for record in &event.records {
        let sequence = record.change.sequence_number.clone().unwrap_or_default();
        if record.event_name != "INSERT" {
            continue;
        }
        let Some(job) = job_of(record) else {
            // Not a generation record (the filter should have dropped it): retrying cannot help.
            tracing::warn!(sequence, "stream record is not a generation; ignored");
            continue;
        };
        // The record's id: Lambda's retry of this batch carries the same one, and may take over the claim
        // the crashed or timed-out invocation left behind.
        let delivery = Some(record.event_id.as_str()).filter(|id| !id.is_empty()).unwrap_or(&sequence);
        match worker.process_delivery(&job, Some(delivery)).await {
            Ok(result) => {
                let outcome = match &result {
                    JobResult::Succeeded { .. } => "succeeded",
                    JobResult::Failed { .. } => "failed",
                    JobResult::Skipped => "skipped",
                    JobResult::Lost => "lost",
                    JobResult::Submitted { .. } => "submitted",
                };
                tracing::info!(generation = %job.generation_id, outcome, "job handled");
            }
            Err(e) => {
                tracing::error!(generation = %job.generation_id, error = %e, "job hit an infrastructure error");
                let mut failure = DynamoDbBatchItemFailure::default();
                failure.item_identifier = Some(sequence);
                response.batch_item_failures.push(failure);
            }
        }
    }
    Ok(response)
}
