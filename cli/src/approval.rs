//! `bakery approve EXECUTION` and `bakery reject EXECUTION --reason R`: the answer to a bake that
//! waits for approval (WaitForApproval). The task token is the one announce kept in the ledger
//! (`approval#<execution ARN>`, `token`); once answered, the row is deleted.

use crate::Outcome;
use aws_sdk_dynamodb::types::AttributeValue;

pub async fn answer(execution_arn: &str, table: &str, rejection: Option<&str>, by: &str, json: bool) -> Outcome {
    let verb = if rejection.is_some() { "reject" } else { "approve" };
    match run(execution_arn, table, rejection, by).await {
        Ok(_) if json => Outcome {
            out: format!(
                "{}\n",
                serde_json::json!({
                    "executionArn": execution_arn,
                    "answer": if rejection.is_some() { "rejected" } else { "approved" },
                    "by": by,
                    "reason": rejection,
                })
            ),
            problems: Vec::new(),
        },
        Ok(out) => Outcome {
            out,
            problems: Vec::new(),
        },
        Err(e) => Outcome {
            out: String::new(),
            problems: vec![format!("{verb}: {e}")],
        },
    }
}

async fn run(execution_arn: &str, table: &str, rejection: Option<&str>, by: &str) -> Result<String, String> {
    let sdk = crate::sdk_config().await;
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    let sfn = aws_sdk_sfn::Client::new(&sdk);
    let key = [
        ("pk", AttributeValue::S(format!("approval#{execution_arn}"))),
        ("sk", AttributeValue::S("token".into())),
    ];
    let row = bakery_aws::send("GetItem", || {
        ddb.get_item()
            .table_name(table)
            .set_key(Some(key.clone().map(|(k, v)| (k.to_owned(), v)).into()))
            .send()
    })
    .await
    .map_err(|e| e.to_string())?
    .item
    .ok_or_else(|| format!("no bake waits for approval as {execution_arn} (answered already, or never asked)"))?;
    let token = row
        .get("token")
        .and_then(|v| v.as_s().ok())
        .ok_or("the ledger's approval row has no token")?
        .clone();
    let sent = match rejection {
        None => {
            let output = serde_json::json!({
                "approvedBy": by,
                "approvedAt": chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            });
            sfn.send_task_success()
                .task_token(&token)
                .output(output.to_string())
                .send()
                .await
                .map(drop)
                .map_err(|e| aws_sdk_sfn::error::DisplayErrorContext(e).to_string())
        }
        Some(reason) => sfn
            .send_task_failure()
            .task_token(&token)
            .error("Rejected")
            .cause(format!("rejected by {by}: {reason}"))
            .send()
            .await
            .map(drop)
            .map_err(|e| aws_sdk_sfn::error::DisplayErrorContext(e).to_string()),
    };
    sent.map_err(|e| format!("{execution_arn}: {e} (the wait may have timed out)"))?;
    bakery_aws::send("DeleteItem", || {
        ddb.delete_item()
            .table_name(table)
            .set_key(Some(key.clone().map(|(k, v)| (k.to_owned(), v)).into()))
            .send()
    })
    .await
    .map_err(|e| e.to_string())?;
    Ok(match rejection {
        None => format!("approved {execution_arn}\n"),
        Some(reason) => format!("rejected {execution_arn}: {reason}\n"),
    })
}
