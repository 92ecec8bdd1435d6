//! `bakery retention --plan | --apply`: what retention would deregister, or deregisters, for
//! every pipeline with a bake policy (or one, with `--pipeline`), in its home region and its
//! publish regions. The same plan the ApplyRetention step makes after each publication
//! (`bakery_aws::retention`), on demand; the AWS endpoint, region and credentials come from the
//! environment, as for every AWS client.

use crate::Outcome;
use bakery_aws::retention::{self, RegionPlan, Scope};
use bakery_core::ids::{Arn, Region};
use serde_json::{json, Value};
use std::fmt::Write as _;

pub async fn run(apply: bool, pipeline: Option<&str>, policy_prefix: &str, as_json: bool) -> Outcome {
    let mut report = Outcome {
        out: String::new(),
        problems: Vec::new(),
    };
    let sdk = crate::sdk_config().await;
    let ssm = aws_sdk_ssm::Client::new(&sdk);
    let (policies, invalid) = match bakery_aws::policies(&ssm, policy_prefix).await {
        Ok(p) => p,
        Err(e) => {
            report
                .problems
                .push(format!("retention: reading the policies under {policy_prefix}: {e}"));
            return report;
        }
    };
    let chosen: Vec<_> = policies
        .iter()
        .filter(|p| {
            pipeline
                .is_none_or(|want| p.pipeline_arn == want || bakery_core::ids::pipeline_name(&p.pipeline_arn) == want)
        })
        .collect();
    if let (Some(want), true) = (pipeline, chosen.is_empty()) {
        report
            .problems
            .push(format!("retention: no valid policy under {policy_prefix} for {want}"));
    }
    let mut pipelines = Vec::new();
    for policy in chosen {
        let home = match Arn::parse(&policy.pipeline_arn).and_then(|a| Region::parse(a.region)) {
            Ok(r) => r,
            Err(e) => {
                report.problems.push(format!("retention: {}: {e}", policy.pipeline_arn));
                continue;
            }
        };
        let scope = Scope {
            pipeline_arn: &policy.pipeline_arn,
            current_bake: "",
            regions: retention::regions(&home, &policy.publish.regions),
            ssm_parameters: &policy.publish.ssm_parameters,
            retention: &policy.retention,
        };
        let plans = match retention::plan(&sdk, &scope).await {
            Ok(p) => p,
            Err(e) => {
                report.problems.push(format!("retention: {}: {e}", policy.pipeline_arn));
                continue;
            }
        };
        let shown = describe(&plans);
        if apply {
            if let Err(e) = retention::apply(&sdk, plans).await {
                report.problems.push(format!("retention: {}: {e}", policy.pipeline_arn));
            }
        }
        pipelines.push(json!({"pipelineArn": policy.pipeline_arn, "regions": shown}));
    }
    let invalid: Vec<Value> = invalid
        .iter()
        .map(|i| json!({"parameter": i.parameter, "error": i.error}))
        .collect();
    let mode = if apply { "apply" } else { "plan" };
    if as_json {
        let doc = json!({"mode": mode, "pipelines": pipelines, "invalidPolicies": invalid});
        report.out = format!("{doc}\n");
        return report;
    }
    let verb = if apply { "deregistered" } else { "would deregister" };
    for p in &pipelines {
        for r in p["regions"].as_array().into_iter().flatten() {
            let _ = writeln!(
                report.out,
                "{} {}:",
                p["pipelineArn"].as_str().unwrap_or_default(),
                r["region"].as_str().unwrap_or_default()
            );
            for k in r["keep"].as_array().into_iter().flatten() {
                let _ = writeln!(
                    report.out,
                    "  keep {} ({})",
                    k["imageId"].as_str().unwrap_or_default(),
                    k["reason"].as_str().unwrap_or_default()
                );
            }
            for d in r["deregister"].as_array().into_iter().flatten() {
                let snapshots: Vec<&str> = d["snapshotIds"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                let _ = writeln!(
                    report.out,
                    "  {verb} {} (bake {}, created {}) and its snapshots {}",
                    d["imageId"].as_str().unwrap_or_default(),
                    d["bakeId"].as_str().unwrap_or_default(),
                    d["created"].as_str().unwrap_or_default(),
                    snapshots.join(", ")
                );
            }
        }
    }
    for i in &invalid {
        let _ = writeln!(
            report.out,
            "skipped invalid policy {}: {}",
            i["parameter"].as_str().unwrap_or_default(),
            i["error"].as_str().unwrap_or_default()
        );
    }
    report
}

/// Each region's plan: what stays and why, and what goes.
fn describe(plans: &[RegionPlan]) -> Vec<Value> {
    plans
        .iter()
        .map(|plan| {
            let (kept, gone): (Vec<_>, Vec<_>) = plan.decisions.iter().partition(|d| d.kept.is_some());
            json!({
                "region": plan.region.as_str(),
                "keep": kept.iter().map(|d| json!({"imageId": d.candidate.image_id, "reason": d.kept})).collect::<Vec<_>>(),
                "deregister": gone.iter().map(|d| json!({
                    "imageId": d.candidate.image_id,
                    "bakeId": d.candidate.bake_id,
                    "created": d.candidate.created.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    "snapshotIds": d.candidate.snapshot_ids,
                })).collect::<Vec<_>>(),
            })
        })
        .collect()
}
