//! The build-watch function. Wiring only: the handler is in `handler.rs`.

mod handler;

use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let deps = bakery_aws::watch::Deps::from_env().await?;
    lambda_runtime::run(service_fn(|e: LambdaEvent<serde_json::Value>| {
        handler::handle(e.payload, &deps)
    }))
    .await
}
