//! The trigger function. Wiring only: the handler is in `handler.rs`, the AWS reads in `lookups.rs`.

mod handler;
mod lookups;
mod stale;

use lambda_runtime::Error;

#[tokio::main]
async fn main() -> Result<(), Error> {
    // JSON logs when Lambda's LoggingConfig says LogFormat: JSON (AWS_LAMBDA_LOG_FORMAT).
    lambda_runtime::tracing::init_default_subscriber();
    let sdk = bakery_aws::sdk_config().await;
    let deps = handler::Deps {
        lookups: lookups::Lookups::new(
            sdk.clone(),
            bakery_aws::env("LEDGER_TABLE")?,
            bakery_aws::env("POLICY_PREFIX")?,
        ),
        sfn: aws_sdk_sfn::Client::new(&sdk),
        state_machine_arn: bakery_aws::env("BAKE_STATE_MACHINE_ARN")?,
        concurrency: bakery_aws::env_count("START_CONCURRENCY", 8)? as usize,
        start_attempts: bakery_aws::env_count("START_ATTEMPTS", 10)?,
        lambda: aws_sdk_lambda::Client::new(&sdk),
        announce_function: bakery_aws::env("ANNOUNCE_FUNCTION_ARN")?,
        staleness_schedule: bakery_aws::env("STALENESS_SCHEDULE")?,
    };
    let deps = &deps;
    // Any JSON: the trigger classifies what arrived itself, with its own typed errors.
    bakery_aws::run("trigger", |event| handler::handle(event, deps)).await
}
