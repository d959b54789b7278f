use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    facemake::wiring::run_http_function(|deps| verify_code::router(Arc::new(verify_code::State::new(deps)))).await
}
