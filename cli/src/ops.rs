//! `bakery bake` and `bakery status`: an operator's manual bake, and the bakes running and
//! recent, against whatever AWS the environment names (the credential chain, `AWS_REGION`,
//! `AWS_ENDPOINT_URL`).

use crate::invoke::InvokeError;
use crate::Outcome;
use bakery_aws::BakeError;
use bakery_core::ids::{pipeline_name, Arn};
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

pub struct Bake<'a> {
    pub pipeline: &'a str,
    pub source: Option<&'a str>,
    pub function: &'a str,
    pub policy_prefix: &'a str,
    pub reason: &'a str,
    pub wait: Option<Duration>,
    pub json: bool,
}

/// The pipeline's ARN: given, or found among the bake policies by its name.
async fn pipeline_arn(ssm: &aws_sdk_ssm::Client, prefix: &str, pipeline: &str) -> Result<String, String> {
    if Arn::parse(pipeline).is_ok() {
        return Ok(pipeline.to_owned());
    }
    let (policies, _) = bakery_aws::policies(ssm, prefix)
        .await
        .map_err(|e| format!("reading the policies under {prefix}: {e}"))?;
    policies
        .into_iter()
        .find(|p| pipeline_name(&p.pipeline_arn) == pipeline)
        .map(|p| p.pipeline_arn)
        .ok_or_else(|| format!("no bake policy under {prefix} for a pipeline named {pipeline}"))
}

/// Hands the trigger a "Bake Requested" event, as the stack's rule would (the trigger function
/// is given, as for `bakery replay`); with `wait`, follows the execution to its end.
pub async fn bake(b: Bake<'_>) -> Outcome {
    let sdk = crate::sdk_config().await;
    let ssm = aws_sdk_ssm::Client::new(&sdk);
    let arn = match pipeline_arn(&ssm, b.policy_prefix, b.pipeline).await {
        Ok(a) => a,
        Err(e) => return Outcome::problem(format!("bake: {e}")),
    };
    let Ok(parsed) = Arn::parse(&arn) else {
        return Outcome::problem(format!("bake: {arn} is not an ARN"));
    };
    let mut detail = json!({"pipelineArn": arn, "requestedBy": "bakery bake", "reason": b.reason});
    if let Some(source) = b.source {
        detail["sourceAmi"] = json!({"imageId": source, "region": parsed.region});
    }
    let now = chrono::Utc::now();
    let event = json!({
        "version": "0",
        "id": format!("bakery-bake-{}", now.timestamp_nanos_opt().unwrap_or_default()),
        "detail-type": "Bake Requested",
        "source": "bakery",
        "account": parsed.account,
        "time": now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "region": parsed.region,
        "resources": [],
        "detail": detail,
    });
    let body = match crate::invoke::invoke(&aws_sdk_lambda::Client::new(&sdk), b.function, &event).await {
        Ok(body) => body,
        Err(e @ InvokeError::Call(_)) => return Outcome::problem(format!("bake: {e}")),
        Err(e) => return Outcome::problem(format!("bake: the trigger failed {e}")),
    };
    let Some(started) = body["started"].as_array().and_then(|s| s.first()).cloned() else {
        let why: Vec<String> = ["skipped", "refused"]
            .iter()
            .flat_map(|k| body[*k].as_array().cloned().unwrap_or_default())
            .map(|r| r["reason"].as_str().unwrap_or_default().to_owned())
            .collect();
        return Outcome::problem(format!("bake: nothing started: {}", why.join("; ")));
    };
    let execution_arn = started["executionArn"].as_str().unwrap_or_default().to_owned();
    let mut result = json!({
        "executionArn": execution_arn,
        "pipelineArn": arn,
        "bakeId": started["bakeId"],
        "attempt": started["attempt"],
        "alreadyStarted": started["alreadyStarted"],
        "sourceAmi": started["sourceAmi"],
        "status": "RUNNING",
        "amis": [],
    });
    let mut problems = Vec::new();
    if let Some(limit) = b.wait {
        let sfn = aws_sdk_sfn::Client::new(&sdk);
        match wait(&sfn, &execution_arn, limit).await {
            Ok((status, output)) => {
                if status != "SUCCEEDED" {
                    problems.push(format!("bake: {execution_arn} ended {status}"));
                }
                result["status"] = json!(status);
                result["amis"] = amis(&output);
            }
            Err(e) => problems.push(format!("bake: {e}")),
        }
    }
    let out = if b.json {
        format!("{result}\n")
    } else {
        let mut out = format!(
            "{} {} ({}, attempt {})\n",
            result["status"].as_str().unwrap_or_default(),
            execution_arn,
            result["sourceAmi"].as_str().unwrap_or("the recipe's parent"),
            result["attempt"]
        );
        for a in result["amis"].as_array().into_iter().flatten() {
            let _ = writeln!(
                out,
                "  {:<15} {}",
                a["region"].as_str().unwrap_or_default(),
                a["imageId"].as_str().unwrap_or_default()
            );
        }
        out
    };
    Outcome { out, problems }
}

/// Polls the execution until it ends (or `limit` passes): its status and output.
async fn wait(sfn: &aws_sdk_sfn::Client, execution_arn: &str, limit: Duration) -> Result<(String, Value), BakeError> {
    let started = Instant::now();
    loop {
        let d = bakery_aws::send("DescribeExecution", || {
            sfn.describe_execution().execution_arn(execution_arn).send()
        })
        .await?;
        let status = d.status().as_str().to_owned();
        if !matches!(status.as_str(), "RUNNING" | "PENDING_REDRIVE") {
            let output = d
                .output()
                .and_then(|o| serde_json::from_str(o).ok())
                .unwrap_or(Value::Null);
            return Ok((status, output));
        }
        if started.elapsed() > limit {
            return Err(BakeError::Retryable {
                operation: "DescribeExecution".into(),
                message: format!("{execution_arn} still running after {} s", limit.as_secs()),
            });
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Every region's AMI from a finished execution's output (`published`).
fn amis(output: &Value) -> Value {
    output["published"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r.get("imageId").is_some())
        .map(|r| json!({"region": r["region"], "imageId": r["imageId"]}))
        .collect()
}

/// The bake state machine's running and recent executions (of one pipeline, by its execution
/// names), newest first, each with its step timeline.
pub async fn status(state_machine: &str, pipeline: Option<&str>, max: usize, as_json: bool) -> Outcome {
    let sdk = crate::sdk_config().await;
    let sfn = aws_sdk_sfn::Client::new(&sdk);
    let mut executions = Vec::new();
    let mut token = None;
    loop {
        let page = bakery_aws::send("ListExecutions", || {
            sfn.list_executions()
                .state_machine_arn(state_machine)
                .set_next_token(token.clone())
                .send()
        })
        .await;
        let page = match page {
            Ok(p) => p,
            Err(e) => return Outcome::problem(format!("status: {e}")),
        };
        executions.extend(page.executions().iter().cloned());
        token = page.next_token().map(str::to_owned);
        if token.is_none() {
            break;
        }
    }
    // Execution names start with the pipeline's name (bakery_core::bake::bake_id).
    let prefix = pipeline.map(|p| format!("{}-", pipeline_name(p)));
    executions.retain(|e| prefix.as_deref().is_none_or(|p| e.name().starts_with(p)));
    executions.sort_by_key(|e| std::cmp::Reverse((e.start_date().secs(), e.start_date().subsec_nanos())));
    executions.truncate(max);
    let mut bakes = Vec::new();
    for e in &executions {
        let history = bakery_aws::send("GetExecutionHistory", || {
            sfn.get_execution_history()
                .execution_arn(e.execution_arn())
                .max_results(1000)
                .send()
        })
        .await;
        let timeline = match history {
            Ok(h) => gateway::world::timeline(h.events()),
            Err(err) => return Outcome::problem(format!("status: {err}")),
        };
        bakes.push(json!({
            "executionArn": e.execution_arn(),
            "name": e.name(),
            "status": e.status().as_str(),
            "startDate": e.start_date().to_string(),
            "stopDate": e.stop_date().map(ToString::to_string),
            "timeline": timeline,
        }));
    }
    if as_json {
        return Outcome {
            out: format!("{}\n", json!({"bakes": bakes})),
            problems: Vec::new(),
        };
    }
    let mut out = String::new();
    for b in &bakes {
        let _ = writeln!(
            out,
            "{} {} (started {})",
            b["status"].as_str().unwrap_or_default(),
            b["name"].as_str().unwrap_or_default(),
            b["startDate"].as_str().unwrap_or_default()
        );
        for st in b["timeline"].as_array().into_iter().flatten() {
            let _ = writeln!(
                out,
                "  {:>7} ms  {:<22} {:>6} ms",
                st["startedMs"].as_u64().unwrap_or(0),
                st["state"].as_str().unwrap_or_default(),
                st["durationMs"].as_u64().unwrap_or(0)
            );
        }
    }
    if bakes.is_empty() {
        out.push_str("no bakes\n");
    }
    Outcome {
        out,
        problems: Vec::new(),
    }
}
