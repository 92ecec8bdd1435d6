//! Two calls of the state machine: from the wait (`taskToken` given) it keeps the token and
//! answers at once if the build already ended; from the status check (no token) it returns the
//! build's status.

use bakery_aws::watch::{self, BuildStatus, Deps};
use bakery_aws::BakeError;
use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Input {
    image_build_version_arn: String,
    #[serde(default)]
    task_token: Option<String>,
}

pub async fn handle(payload: Value, deps: &Deps) -> Result<Value, BakeError> {
    let input: Input =
        serde_json::from_value(payload).map_err(|e| BakeError::InvalidInput(format!("build watch: {e}")))?;
    let status: BuildStatus = match &input.task_token {
        Some(token) => watch::register(deps, &input.image_build_version_arn, token).await?,
        None => watch::status(deps, &input.image_build_version_arn).await?,
    };
    serde_json::to_value(status).map_err(|e| BakeError::InvalidInput(e.to_string()))
}
