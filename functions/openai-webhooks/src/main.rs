use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    facemake::wiring::run_http_function(|deps| Ok(openai_webhooks::router(Arc::new(openai_webhooks::State::new(deps)))))
        .await
}
