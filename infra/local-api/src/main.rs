//! `cargo run -p local-api`: the whole API on http://127.0.0.1:3000 (PORT overrides).

use facemake::config::{AuthPolicy, ProcessEnv};
use local_api::{backend_from_env, Backend, LocalApi};
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    facemake::telemetry::init();
    let port: u16 = std::env::var("PORT").ok().map(|p| p.parse()).transpose()?.unwrap_or(3000);
    let policy = AuthPolicy::from_env(&ProcessEnv)?;
    let backend = backend_from_env()?;
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    let base_url = format!("http://{}", listener.local_addr()?);
    let api = match &backend {
        Backend::Memory => LocalApi::in_memory(policy, &base_url).await?,
        Backend::Dynamo { table_prefix } => LocalApi::on_dynamodb(table_prefix, policy, &base_url).await?,
    };
    eprintln!("Facemake local API on {base_url} ({backend:?})");
    eprintln!("  texts it \"sends\" are printed here and listed at GET /_local/messages?phone=+14155550123");
    eprintln!("  pushes it \"sends\" are listed at GET /_local/pushes?deviceToken=<hex token>");
    eprintln!("  test purchases: POST /_local/app-store/transactions {{\"productId\":\"app.facemake.credits.10\"}}");
    api.serve(listener).await?;
    Ok(())
}
