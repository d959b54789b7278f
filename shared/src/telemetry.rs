//! Structured logs. JSON when deployed (`LOG_FORMAT=json`), readable text locally; the level comes from
//! `RUST_LOG`. Nothing logs codes, tokens or keys, and phone numbers are masked where they are logged.

use tracing_subscriber::EnvFilter;

/// Sets up the global subscriber once per process. Safe to call twice (the second call does nothing).
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("LOG_FORMAT").map(|f| f == "json").unwrap_or(false);
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_target(false);
    let _ = if json {
        // Lambda adds its own timestamp per line; the JSON one is kept for log exports.
        builder.json().flatten_event(true).with_current_span(false).try_init()
    } else {
        builder.try_init()
    };
}

/// Displays an error with its whole `source()` chain: `a: b: c`.
pub struct Chain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(s) = source {
            write!(f, ": {s}")?;
            source = s.source();
        }
        Ok(())
    }
}
