//! A hello-world `lambda_http` function: what the cold-start benchmark compares every function with. Built by
//! the same command, with the same release profile, in the same run.

use lambda_http::{run, service_fn, Body, Error, Request, Response};

#[tokio::main]
async fn main() -> Result<(), Error> {
    run(service_fn(|_: Request| async { Ok::<_, Error>(Response::new(Body::from("hello"))) })).await
}
