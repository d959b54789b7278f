#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    facemake::wiring::run_event_function(|deps| Ok(deps.worker()), generation_worker::handle).await
}
