//! The start-build function. Wiring only: the handler is in `handler.rs`.

mod handler;

use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let sdk = bakery_aws::sdk_config().await;
    let deps = handler::Deps {
        ib: aws_sdk_imagebuilder::Client::new(&sdk),
        ssm: aws_sdk_ssm::Client::new(&sdk),
        policy_prefix: bakery_aws::env("POLICY_PREFIX")?,
    };
    lambda_runtime::run(service_fn(|e: LambdaEvent<serde_json::Value>| {
        handler::handle(e.payload, &deps)
    }))
    .await
}
