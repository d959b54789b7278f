use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    facemake::wiring::run_http_function(|deps| Ok(send_code::router(Arc::new(send_code::State::new(deps))))).await
}
