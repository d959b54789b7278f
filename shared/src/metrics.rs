//! Business metrics in CloudWatch Embedded Metric Format: one JSON line on stdout per data point, which
//! CloudWatch Logs turns into a metric of namespace `Facemake`, dimension `Stage`. No SDK call, no network on
//! the request path, and the line doubles as a log record.
//!
//! Services take an `Arc<dyn Metrics>`; deployed it is [`Emf`], locally and in tests a [`Recorder`].

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex};

/// Every metric the backend emits. Names are the CloudWatch metric names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Metric {
    /// A sign-in code was texted.
    CodesSent,
    /// A text could not be delivered (the SMS provider failed).
    CodesFailed,
    /// A code was refused because the stage's or the country's hourly SMS budget was spent.
    SmsBudgetExceeded,
    /// A code was verified (a sign-in happened).
    CodesVerified,
    /// A wrong, expired, used or exhausted code was presented.
    CodesRejected,
    /// A new account was created at first sign-in.
    SignUps,
    /// Credits added by App Store purchases.
    CreditsPurchased,
    /// Credits given back to users whose generation failed (by the worker or the reconciler): the cost of
    /// each refunded generation.
    CreditsRefunded,
    /// Credits taken back by App Store REFUND notifications, net of REFUND_REVERSED ones (a reversal records
    /// minus what its refund took).
    CreditsRevoked,
    /// Credits spent on generations: the cost of each generation started (refunds are not subtracted).
    CreditsSpent,
    /// A generation was charged and queued.
    GenerationsStarted,
    /// A job finished with an output.
    GenerationsSucceeded,
    /// A job failed (worker or reconciler).
    GenerationsFailed,
    /// A failed job was refunded (counted with each failure: the refund is in the same transaction).
    GenerationsRefunded,
    /// Jobs the reconciler failed and refunded because they outlived their deadline (a crash or a timeout).
    GenerationsTimedOut,
    /// Milliseconds an image provider took.
    ProviderLatency,
    /// A provider callback was refused: unsigned, badly signed or stale (a probe, or a signing key that no
    /// longer matches Replicate's or the OpenAI project's).
    CallbacksRejected,
    /// A push notification was accepted by APNs.
    PushesSent,
    /// A push notification could not be sent (refused other than as unregistered, APNs unreachable, a bad
    /// key). The generation is unaffected; the user sees the result when the app next looks.
    PushesFailed,
    /// A device was dropped because APNs said its token is no longer valid (410).
    DevicesDropped,
}

impl Metric {
    /// Every metric, in declaration order (the dashboard and the README list them all).
    pub const ALL: [Metric; 20] = [
        Metric::CodesSent,
        Metric::CodesFailed,
        Metric::SmsBudgetExceeded,
        Metric::CodesVerified,
        Metric::CodesRejected,
        Metric::SignUps,
        Metric::CreditsPurchased,
        Metric::CreditsRefunded,
        Metric::CreditsRevoked,
        Metric::CreditsSpent,
        Metric::GenerationsStarted,
        Metric::GenerationsSucceeded,
        Metric::GenerationsFailed,
        Metric::GenerationsRefunded,
        Metric::GenerationsTimedOut,
        Metric::ProviderLatency,
        Metric::CallbacksRejected,
        Metric::PushesSent,
        Metric::PushesFailed,
        Metric::DevicesDropped,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Metric::CodesSent => "CodesSent",
            Metric::CodesFailed => "CodesFailed",
            Metric::SmsBudgetExceeded => "SmsBudgetExceeded",
            Metric::CodesVerified => "CodesVerified",
            Metric::CodesRejected => "CodesRejected",
            Metric::SignUps => "SignUps",
            Metric::CreditsPurchased => "CreditsPurchased",
            Metric::CreditsRefunded => "CreditsRefunded",
            Metric::CreditsRevoked => "CreditsRevoked",
            Metric::CreditsSpent => "CreditsSpent",
            Metric::GenerationsStarted => "GenerationsStarted",
            Metric::GenerationsSucceeded => "GenerationsSucceeded",
            Metric::GenerationsFailed => "GenerationsFailed",
            Metric::GenerationsRefunded => "GenerationsRefunded",
            Metric::GenerationsTimedOut => "GenerationsTimedOut",
            Metric::ProviderLatency => "ProviderLatency",
            Metric::CallbacksRejected => "CallbacksRejected",
            Metric::PushesSent => "PushesSent",
            Metric::PushesFailed => "PushesFailed",
            Metric::DevicesDropped => "DevicesDropped",
        }
    }

    pub fn unit(self) -> &'static str {
        match self {
            Metric::ProviderLatency => "Milliseconds",
            _ => "Count",
        }
    }
}

/// Where metrics go.
pub trait Metrics: Send + Sync {
    fn record(&self, metric: Metric, value: f64);

    fn count(&self, metric: Metric) {
        self.record(metric, 1.0);
    }
}

/// CloudWatch Embedded Metric Format on stdout (Lambda sends stdout to CloudWatch Logs).
pub struct Emf {
    pub namespace: String,
    pub stage: String,
}

impl Emf {
    pub fn for_stage(stage: &str) -> Self {
        Self { namespace: "Facemake".to_owned(), stage: stage.to_owned() }
    }

    /// The EMF line for one data point at `timestamp_ms`.
    pub fn line(&self, metric: Metric, value: f64, timestamp_ms: u128) -> String {
        let mut line = serde_json::json!({
            "_aws": {
                "Timestamp": timestamp_ms as u64,
                "CloudWatchMetrics": [{
                    "Namespace": self.namespace,
                    "Dimensions": [["Stage"]],
                    "Metrics": [{ "Name": metric.name(), "Unit": metric.unit() }],
                }],
            },
            "Stage": self.stage,
        });
        line[metric.name()] = serde_json::json!(value);
        line.to_string()
    }
}

impl Metrics for Emf {
    fn record(&self, metric: Metric, value: f64) {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis());
        let line = self.line(metric, value, now.unwrap_or(0));
        // One write per line so concurrent requests never interleave within a line.
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
    }
}

/// Keeps every data point in memory (tests, the local API).
#[derive(Default, Clone)]
pub struct Recorder {
    points: Arc<Mutex<BTreeMap<Metric, Vec<f64>>>>,
}

impl Recorder {
    pub fn new() -> Self {
        Self::default()
    }

    /// The sum of everything recorded for `metric`.
    pub fn total(&self, metric: Metric) -> f64 {
        self.values(metric).iter().sum()
    }

    /// Every value recorded for `metric`, in the order recorded (one per data point).
    pub fn values(&self, metric: Metric) -> Vec<f64> {
        self.points.lock().unwrap_or_else(|e| e.into_inner()).get(&metric).cloned().unwrap_or_default()
    }
}

impl Metrics for Recorder {
    fn record(&self, metric: Metric, value: f64) {
        self.points.lock().unwrap_or_else(|e| e.into_inner()).entry(metric).or_default().push(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_emf_line_has_the_shape_cloudwatch_expects() {
        let line = Emf::for_stage("dev").line(Metric::ProviderLatency, 1234.0, 1_800_000_000_000);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["_aws"]["Timestamp"], 1_800_000_000_000u64);
        let directive = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "Facemake");
        assert_eq!(directive["Dimensions"], serde_json::json!([["Stage"]]));
        assert_eq!(directive["Metrics"][0], serde_json::json!({"Name": "ProviderLatency", "Unit": "Milliseconds"}));
        // The dimension and the value are top-level members named as the directive says.
        assert_eq!(v["Stage"], "dev");
        assert_eq!(v["ProviderLatency"], 1234.0);
        assert!(!line.contains('\n'));
    }

    #[test]
    fn the_recorder_sums() {
        let r = Recorder::new();
        r.count(Metric::CodesSent);
        r.count(Metric::CodesSent);
        r.record(Metric::CreditsPurchased, 50.0);
        assert_eq!((r.total(Metric::CodesSent), r.total(Metric::CreditsPurchased)), (2.0, 50.0));
        assert_eq!(r.total(Metric::SignUps), 0.0);
        assert_eq!(r.values(Metric::CodesSent), [1.0, 1.0]);
        assert!(r.values(Metric::SignUps).is_empty());
    }

    #[test]
    fn every_metric_has_its_own_cloudwatch_name() {
        let names: std::collections::BTreeSet<&str> = Metric::ALL.iter().map(|m| m.name()).collect();
        assert_eq!(names.len(), Metric::ALL.len());
        assert!(Metric::ALL.iter().all(|m| format!("{m:?}") == m.name()), "the name is the variant's");
        // ALL misses none: a new variant makes this match non-exhaustive until it is listed above.
        for m in Metric::ALL {
            match m {
                Metric::CodesSent
                | Metric::CodesFailed
                | Metric::SmsBudgetExceeded
                | Metric::CodesVerified
                | Metric::CodesRejected
                | Metric::SignUps
                | Metric::CreditsPurchased
                | Metric::CreditsRefunded
                | Metric::CreditsRevoked
                | Metric::CreditsSpent
                | Metric::GenerationsStarted
                | Metric::GenerationsSucceeded
                | Metric::GenerationsFailed
                | Metric::GenerationsRefunded
                | Metric::GenerationsTimedOut
                | Metric::ProviderLatency
                | Metric::CallbacksRejected
                | Metric::PushesSent
                | Metric::PushesFailed
                | Metric::DevicesDropped => {}
            }
        }
        assert_eq!(Metric::CreditsRevoked.unit(), "Count");
    }
}
