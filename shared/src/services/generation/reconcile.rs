//! The reconciler's job pass: fails and refunds the jobs that outlived their deadline.

use super::Worker;
use super::REASON_TIMED_OUT;
use crate::metrics::Metric;
use crate::ports::{FailFrom, FailOutcome, PortError};
use crate::services::notifications::Ending;

impl Worker {
    /// Fails and refunds every job past its deadline that no live claim holds. Returns how many. One job
    /// that cannot be refunded is logged and skipped, never a reason to leave the others stuck.
    pub async fn reconcile(&self) -> Result<usize, PortError> {
        const PAGE: usize = 100;
        let now = self.clock.now();
        let mut refunded = 0;
        // Bounded: a run handles at most 10 pages; the next run (minutes later) takes the rest. Each page
        // starts after the last, so jobs that cannot be refunded yet (a live claim past the deadline, an
        // error) never hold back the ones behind them.
        let mut after = None;
        for _ in 0..10 {
            let page = self.store.overdue(now, PAGE, after.as_ref()).await?;
            let mut in_page = 0;
            for job in &page.jobs {
                match self.store.fail_and_refund(job, FailFrom::DeadlinePassed(now), REASON_TIMED_OUT, now).await {
                    Ok(FailOutcome::Refunded { balance }) => {
                        in_page += 1;
                        self.metrics.count(Metric::GenerationsTimedOut);
                        self.metrics.count(Metric::GenerationsFailed);
                        self.metrics.count(Metric::GenerationsRefunded);
                        // The refund gave back what the job was charged; the record (now failed) says how much.
                        match self.store.generation(&job.user_id, &job.generation_id).await {
                            Ok(Some(g)) => self.metrics.record(Metric::CreditsRefunded, g.credits_charged as f64),
                            // Gone already (the account was deleted meanwhile) or unreadable: the refund stands,
                            // only its amount is missing from the metric.
                            Ok(None) => {}
                            Err(e) => tracing::warn!(
                                generation = %job.generation_id,
                                error = %e,
                                "reading a refunded job for its credits failed; CreditsRefunded not recorded"
                            ),
                        }
                        tracing::warn!(generation = %job.generation_id, balance, "overdue job failed and refunded");
                        let ending = Ending::Failed { reason: REASON_TIMED_OUT };
                        self.notifications.generation_ended(&job.user_id, &job.generation_id, ending).await;
                    }
                    Ok(FailOutcome::NotApplicable) => {}
                    Err(e) => {
                        tracing::error!(generation = %job.generation_id, error = %e, "refunding an overdue job failed")
                    }
                }
            }
            refunded += in_page;
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        Ok(refunded)
    }
}
