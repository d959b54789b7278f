use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    facemake::wiring::run_http_function(|deps| Ok(credits::router(Arc::new(credits::State::new(deps)?)))).await
}
