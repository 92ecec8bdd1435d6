//! A bare Lambda function: the functions' runtime (lambda_runtime, Tokio, the default tracing
//! subscriber) with no AWS SDK. `make bench` starts it beside the real functions as the floor.

use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    lambda_runtime::run(service_fn(|e: LambdaEvent<serde_json::Value>| async move {
        Ok::<_, Error>(e.payload)
    }))
    .await
}
