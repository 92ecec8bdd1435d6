//! Waiting for a build without losing it: the wait's task token is kept in the ledger under
//! the image's ARN; whoever first sees the build end (the state-change event, or the watch
//! itself when the build had already ended) claims the token by deleting it and answers. A
//! lost event is covered by the state machine's timeout and status check.

use crate::{send, BakeError};
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use bakery_core::steps::BuildStatus;

pub struct Deps {
    pub ib: aws_sdk_imagebuilder::Client,
    pub ddb: aws_sdk_dynamodb::Client,
    pub sfn: aws_sdk_sfn::Client,
    pub table: String,
}

impl Deps {
    /// Clients from the environment's SDK configuration; the ledger from `LEDGER_TABLE`.
    pub async fn from_env() -> Result<Self, BakeError> {
        let sdk = crate::sdk_config().await;
        Ok(Self {
            ib: aws_sdk_imagebuilder::Client::new(&sdk),
            ddb: aws_sdk_dynamodb::Client::new(&sdk),
            sfn: aws_sdk_sfn::Client::new(&sdk),
            table: crate::env("LEDGER_TABLE")?,
        })
    }
}

fn key(image_arn: &str) -> [(String, AttributeValue); 2] {
    [
        ("pk".to_owned(), AttributeValue::S(format!("wait#{image_arn}"))),
        ("sk".to_owned(), AttributeValue::S("token".to_owned())),
    ]
}

/// The build's status now (GetImage).
pub async fn status(deps: &Deps, image_arn: &str) -> Result<BuildStatus, BakeError> {
    let image = crate::imagebuilder::get_image(&deps.ib, image_arn).await?;
    let state = image
        .state
        .unwrap_or_else(|| aws_sdk_imagebuilder::types::ImageState::builder().build());
    let status = state
        .status
        .map(|s| s.as_str().to_owned())
        .unwrap_or_else(|| "UNKNOWN".into());
    Ok(BuildStatus::new(&status, state.reason))
}

/// Keeps the token for the build, then answers at once if the build already ended.
pub async fn register(deps: &Deps, image_arn: &str, token: &str) -> Result<BuildStatus, BakeError> {
    send("PutItem", || {
        deps.ddb
            .put_item()
            .table_name(&deps.table)
            .set_item(Some(
                key(image_arn)
                    .into_iter()
                    .chain([("token".to_owned(), AttributeValue::S(token.to_owned()))])
                    .collect(),
            ))
            .send()
    })
    .await?;
    let now = status(deps, image_arn).await?;
    if now.terminal {
        answer(deps, image_arn, &now).await?;
    }
    Ok(now)
}

/// Claims the waiting token (if any) and answers it with the build's status. Returns whether
/// this call answered: only the caller whose delete returned the token does.
pub async fn answer(deps: &Deps, image_arn: &str, status: &BuildStatus) -> Result<bool, BakeError> {
    let claimed = send("DeleteItem", || {
        deps.ddb
            .delete_item()
            .table_name(&deps.table)
            .set_key(Some(key(image_arn).into_iter().collect()))
            .return_values(ReturnValue::AllOld)
            .send()
    })
    .await?;
    let Some(token) = claimed
        .attributes
        .and_then(|a| a.get("token").and_then(|t| t.as_s().ok().cloned()))
    else {
        return Ok(false);
    };
    let output = serde_json::to_string(status).map_err(|e| BakeError::InvalidInput(e.to_string()))?;
    let sent = send("SendTaskSuccess", || {
        deps.sfn.send_task_success().task_token(&token).output(&output).send()
    })
    .await;
    match sent {
        Ok(_) => {
            tracing::info!(image = image_arn, status = %status.status, "answered the waiting bake");
            Ok(true)
        }
        // The wait timed out meanwhile, and the status check carries the bake on.
        Err(BakeError::Aws { code, .. })
            if code == "TaskTimedOut" || code == "InvalidToken" || code == "TaskDoesNotExist" =>
        {
            tracing::info!(image = image_arn, %code, "the wait had ended already");
            Ok(false)
        }
        Err(e) => Err(e),
    }
}
