//! The publish-region function. Wiring only: the handler is in `lib.rs`.
// The handler's nested futures (a Map item: copy, wait, tag, share, parameters, each retried)
// are deeper than the compiler's default layout query limit.
#![recursion_limit = "256"]

use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let deps = publish_region::Deps::new(bakery_aws::sdk_config().await);
    lambda_runtime::run(service_fn(|e: LambdaEvent<serde_json::Value>| async {
        // The rollback of a failed publication is the same step run backwards.
        if e.payload["revoke"] == true {
            publish_region::revoke(e.payload, &deps).await
        } else if e.payload["check"] == true {
            publish_region::check(e.payload)
        } else {
            publish_region::handle(e.payload, &deps)
                .await
                .and_then(|p| serde_json::to_value(p).map_err(|e| bakery_aws::BakeError::InvalidInput(e.to_string())))
        }
    }))
    .await
}
