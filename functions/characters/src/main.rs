use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    facemake::wiring::run_http_function(|deps| Ok(characters::router(Arc::new(characters::State::new(deps))))).await
}
