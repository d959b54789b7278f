use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    facemake::wiring::run_http_function(|deps| {
        Ok(app_store_notifications::router(Arc::new(app_store_notifications::State::new(deps)?)))
    })
    .await
}
