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

/// A stable, non-reversible reference to a user for log lines: the same user always gets the same reference
/// (an operator can compute it from an id to follow one user's requests), and no log line carries the id.
pub fn user_ref(id: &crate::domain::UserId) -> String {
    let hash = crate::crypto::sha256_b64(format!("user-ref|{id}").as_bytes());
    format!("u_{}", &hash[..16])
}

tokio::task_local! {
    /// The signed-in caller of the request being handled, set by the auth guard, logged by the router.
    static CALLER: std::cell::RefCell<Option<String>>;
}

/// Runs `f` as one request: the auth guard's [`note_caller`] inside it is returned beside its output.
pub async fn with_caller<F: std::future::Future>(f: F) -> (F::Output, Option<String>) {
    CALLER
        .scope(std::cell::RefCell::new(None), async move {
            let output = f.await;
            let caller = CALLER.try_with(|c| c.borrow().clone()).ok().flatten();
            (output, caller)
        })
        .await
}

/// Records the request's caller for its log line (outside a request: nothing).
pub fn note_caller(id: &crate::domain::UserId) {
    let _ = CALLER.try_with(|c| *c.borrow_mut() = Some(user_ref(id)));
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
