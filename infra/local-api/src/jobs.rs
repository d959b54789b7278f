//! The local stand-in for the generations table's stream: started generations go through a channel to an
//! in-process worker, and a reconciler runs every 30 seconds, as the deployed schedule would.

use std::sync::Arc;
use std::time::Duration;

use facemake::ports::Dispatcher;
use facemake::ports::JobRef;
use facemake::services::account::Account;
use facemake::services::generation::Worker;
use tokio::sync::mpsc;

/// Hands jobs to the local worker.
pub struct LocalQueue(mpsc::UnboundedSender<JobRef>);

impl LocalQueue {
    pub fn new() -> (Self, mpsc::UnboundedReceiver<JobRef>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Self(tx), rx)
    }
}

impl Dispatcher for LocalQueue {
    fn dispatch(&self, job: JobRef) {
        if self.0.send(job).is_err() {
            // The worker task is gone (the runtime is shutting down); the reconciler would refund the job.
            tracing::warn!("local worker is not running; job left for the reconciler");
        }
    }
}

/// Runs every job it receives (each in its own task, like concurrent Lambda invocations) and the reconciler
/// (overdue generations, unfinished account deletions).
pub fn spawn(mut queue: mpsc::UnboundedReceiver<JobRef>, worker: Arc<Worker>, account: Account) {
    let reconciler = worker.clone();
    tokio::spawn(async move {
        while let Some(job) = queue.recv().await {
            let worker = worker.clone();
            tokio::spawn(async move {
                if let Err(e) = worker.process(&job).await {
                    tracing::error!(generation = %job.generation_id, error = %e, "local job failed");
                }
            });
        }
    });
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(30));
        loop {
            tick.tick().await;
            if let Err(e) = reconciler.reconcile().await {
                tracing::error!(error = %e, "local reconciler failed");
            }
            if let Err(e) = account.finish_pending_deletions(10).await {
                tracing::error!(error = %e, "finishing account deletions failed");
            }
        }
    });
}
