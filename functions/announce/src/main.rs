//! The announce function. Wiring only: the handler is in `handler.rs`.

mod handler;

use lambda_runtime::Error;

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
    let deps = &deps;
    bakery_aws::run("announce", |input| handler::handle(input, deps)).await
}
