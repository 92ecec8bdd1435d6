//! Two calls of the state machine: from the wait (`taskToken` given) it keeps the token and
//! answers at once if the build already ended; from the status check (no token) it returns the
//! build's status.

use bakery_aws::watch::{self, Deps};
use bakery_aws::BakeError;
use bakery_core::steps::{BuildStatus, WatchRequest};

pub async fn handle(input: WatchRequest, deps: &Deps) -> Result<BuildStatus, BakeError> {
    match &input.task_token {
        Some(token) => watch::register(deps, &input.image_build_version_arn, token).await,
        None => watch::status(deps, &input.image_build_version_arn).await,
    }
}
