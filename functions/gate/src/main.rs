//! The gate function. Wiring only: the handler is in `lib.rs`.

use lambda_runtime::Error;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let sdk = bakery_aws::sdk_config().await;
    let deps = gate::Deps {
        ib: aws_sdk_imagebuilder::Client::new(&sdk),
        sdk,
    };
    let deps = &deps;
    bakery_aws::run("gate", |input| gate::handle(input, deps)).await
}
