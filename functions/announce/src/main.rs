//! The announce function. Wiring only: the handler is in `handler.rs`.

mod handler;

use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let sdk = bakery_aws::sdk_config().await;
    let deps = handler::Deps {
        sns: aws_sdk_sns::Client::new(&sdk),
        ddb: aws_sdk_dynamodb::Client::new(&sdk),
        table: bakery_aws::env("LEDGER_TABLE")?,
        default_topic: bakery_aws::env("PUBLICATION_TOPIC_ARN")?,
    };
    lambda_runtime::run(service_fn(|e: LambdaEvent<serde_json::Value>| {
        handler::handle(e.payload, &deps)
    }))
    .await
}
