//! The start-build function. Wiring only: the handler is in `handler.rs`.

mod handler;

use bakery_core::steps::BakeRequest;
use lambda_runtime::Error;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let sdk = bakery_aws::sdk_config().await;
    let policy_prefix = bakery_aws::env("POLICY_PREFIX")?;
    let grants = bakery_core::grants::StackGrants {
        policy_prefix: policy_prefix.clone(),
        published_parameter_prefix: bakery_aws::env("PUBLISHED_PARAMETER_PREFIX")?,
        publication_topic: bakery_aws::env("PUBLICATION_TOPIC_ARN")?,
        notify_topics: bakery_core::grants::StackGrants::list(&std::env::var("NOTIFY_TOPIC_ARNS").unwrap_or_default()),
        publish_regions: bakery_core::grants::StackGrants::list(&bakery_aws::env("PUBLISH_REGIONS")?),
    };
    let deps = handler::Deps {
        ib: aws_sdk_imagebuilder::Client::new(&sdk),
        ssm: aws_sdk_ssm::Client::new(&sdk),
        policy_prefix,
        grants,
    };
    let deps = &deps;
    bakery_aws::run("start-build", |req: BakeRequest| async move {
        handler::start(&req, deps).await
    })
    .await
}
