//! The trigger function. Wiring only: the handler is in `handler.rs`.

mod handler;

use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    // JSON logs when Lambda's LoggingConfig says LogFormat: JSON (AWS_LAMBDA_LOG_FORMAT).
    lambda_runtime::tracing::init_default_subscriber();
    lambda_runtime::run(service_fn(|event: LambdaEvent<serde_json::Value>| {
        handler::handle(event.payload)
    }))
    .await
}
