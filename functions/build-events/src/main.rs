//! The build-events function. Wiring only: the handler is in `handler.rs`.

mod handler;

use lambda_runtime::Error;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let deps = bakery_aws::watch::Deps::from_env().await?;
    let deps = &deps;
    bakery_aws::run("build-events", |event| handler::handle(event, deps)).await
}
