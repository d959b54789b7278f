use std::sync::Arc;

use facemake::config::Config;
use facemake::wiring::{aws_config, Deps};
use lambda_http::{run, service_fn, Error};

#[tokio::main]
async fn main() -> Result<(), Error> {
    facemake::telemetry::init();
    let config = Config::from_env()?;
    let deps = Deps::deployed(&config, &aws_config().await);
    let router = send_code::router(Arc::new(send_code::State::new(&deps)));
    run(service_fn(|req| {
        let router = &router;
        async move { Ok::<_, std::convert::Infallible>(router.handle(req).await) }
    }))
    .await
}
