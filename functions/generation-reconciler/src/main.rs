use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    facemake::wiring::run_event_function(
        |deps| Ok(generation_reconciler::State::new(deps)),
        |state: Arc<generation_reconciler::State>, event| generation_reconciler::handle(state, event),
    )
    .await
}
