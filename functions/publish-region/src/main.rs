//! The publish-region function. Wiring only: the handler is in `lib.rs`.

use lambda_runtime::Error;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let deps = publish_region::Deps::new(bakery_aws::sdk_config().await);
    let deps = &deps;
    bakery_aws::run("publish-region", |input| publish_region::handle(input, deps)).await
}
