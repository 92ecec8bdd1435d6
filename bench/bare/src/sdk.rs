//! The SDK's share of a cold start: the bare function plus what the functions do before they
//! ask for work, and nothing else. BENCH_SDK says how much: `config` (bakery_aws::sdk_config:
//! aws_config's defaults sending through bakery_aws::http) or `clients` (that and the trigger's
//! three clients: SSM, DynamoDB, Step Functions).

use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let sdk = bakery_aws::sdk_config().await;
    let clients = match std::env::var("BENCH_SDK").as_deref() {
        Ok("clients") => Some((
            aws_sdk_ssm::Client::new(&sdk),
            aws_sdk_dynamodb::Client::new(&sdk),
            aws_sdk_sfn::Client::new(&sdk),
        )),
        _ => None,
    };
    let clients = &clients;
    lambda_runtime::run(service_fn(|e: LambdaEvent<serde_json::Value>| async move {
        let _ = clients;
        Ok::<_, Error>(e.payload)
    }))
    .await
}
