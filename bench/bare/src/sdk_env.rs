//! What bench-sdk does with the configuration built from Lambda's environment alone, without
//! aws_config's defaults (no profile files, no credential chain, no STS or IMDS clients):
//! region, credentials and endpoint from the variables Lambda (or the local AWS) sets, and the
//! same HTTP client (bakery_aws::http). How much of bakery_aws::sdk_config's start-up the
//! defaults are, measured by `make bench`. BENCH_SDK: `config` or `clients` (the trigger's
//! three clients), as for bench-sdk.

use aws_config::environment::EnvironmentVariableCredentialsProvider;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_ssm::config::SharedCredentialsProvider;
use lambda_runtime::{service_fn, Error, LambdaEvent};

fn sdk_config() -> SdkConfig {
    let mut b = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(std::env::var("AWS_REGION").ok().map(Region::new))
        .http_client(bakery_aws::http::client())
        .credentials_provider(SharedCredentialsProvider::new(
            EnvironmentVariableCredentialsProvider::new(),
        ));
    if let Ok(url) = std::env::var("AWS_ENDPOINT_URL") {
        b = b.endpoint_url(url);
    }
    b.build()
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let sdk = sdk_config();
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
