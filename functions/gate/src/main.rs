//! The gate function. Wiring only: the handler is in `lib.rs`.

use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let sdk = bakery_aws::sdk_config().await;
    let deps = gate::Deps {
        ib: aws_sdk_imagebuilder::Client::new(&sdk),
        sdk,
    };
    lambda_runtime::run(service_fn(|e: LambdaEvent<serde_json::Value>| {
        gate::handle(e.payload, &deps)
    }))
    .await
}
