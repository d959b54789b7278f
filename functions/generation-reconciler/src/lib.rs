//! The reconciler, on a schedule:
//! - fails and refunds every generation still queued or processing past its deadline (a worker that crashed
//!   or timed out, a record that was dead-lettered), so no credit is ever lost to a job that never finishes;
//! - finishes account deletions that were interrupted and never retried, so nothing of a deleted account
//!   stays because its app gave up.

use std::sync::Arc;

use facemake::services::account::Account;
use facemake::services::generation::Worker;
use facemake::wiring::Deps;
use serde_json::{json, Value};

/// Unfinished deletions finished per run (each is a few dozen requests; the next run takes the rest).
const DELETIONS_PER_RUN: usize = 10;

pub struct State {
    pub worker: Worker,
    pub account: Account,
}

impl State {
    pub fn new(deps: &Deps) -> Self {
        Self { worker: deps.worker(), account: deps.account() }
    }
}

pub async fn handle(state: Arc<State>, _event: Value) -> Result<Value, lambda_http::Error> {
    // Both halves run whatever the other does: a failing one must not stall the other.
    let (refunded, deletions) =
        tokio::join!(state.worker.reconcile(), state.account.finish_pending_deletions(DELETIONS_PER_RUN));
    let refunded = refunded?;
    let deletions = deletions?;
    if refunded > 0 {
        tracing::warn!(refunded, "overdue generations failed and refunded");
    }
    if deletions > 0 {
        tracing::warn!(deletions, "interrupted account deletions finished");
    }
    Ok(json!({ "refunded": refunded, "deletionsFinished": deletions }))
}
