//! `bakery lineage AMI`: the AMI's bake, its ancestors and its descendants, each bake with its AMI
//! in every region and that AMI's state in EC2, from the ledger's lineage rows (`ami#<id>`, and
//! the `byParent` index for descendants: no Scan). `--mermaid` draws it as a Mermaid graph.

use crate::ledger::{s, Ledger, Row};
use crate::Outcome;
use bakery_aws::in_region;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::fmt::Write as _;

/// How far the walk goes up or down.
const MAX_DEPTH: usize = 20;

/// One bake in the graph, or an AMI no bake of this ledger made (`bake_id` empty).
async fn node(
    ledger: &Ledger,
    sdk: &aws_config::SdkConfig,
    row: Option<&Row>,
    image_id: &str,
) -> Result<Value, String> {
    let Some(row) = row else {
        return Ok(json!({"bakeId": null, "pipelineArn": null, "amis": [{"imageId": image_id}]}));
    };
    let bake_id = s(row, "bakeId");
    let mut amis = Vec::new();
    for (region, ami) in ledger.bake_amis(bake_id).await? {
        // A revoked AMI is revoked, whatever EC2 shows (deprecation may begin a minute later).
        let state = match ledger.revoked(&ami).await? {
            Some(_) => "revoked".to_owned(),
            None => state(sdk, &region, &ami).await,
        };
        amis.push(json!({"region": region, "imageId": ami, "state": state}));
    }
    Ok(json!({"bakeId": bake_id, "pipelineArn": s(row, "pipelineArn"), "amis": amis}))
}

/// The image's state in EC2: available, pending, disabled, deprecated, or deregistered.
async fn state(sdk: &aws_config::SdkConfig, region: &str, image_id: &str) -> String {
    let ec2 = aws_sdk_ec2::Client::new(&in_region(sdk, region));
    let found = ec2
        .describe_images()
        .image_ids(image_id)
        .include_deprecated(true)
        .include_disabled(true)
        .send()
        .await;
    let Some(image) = found.ok().and_then(|o| o.images().first().cloned()) else {
        return "deregistered".into();
    };
    let deprecated = image
        .deprecation_time()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .is_some_and(|t| t <= chrono::Utc::now());
    match image.state().map(|s| s.as_str().to_owned()) {
        Some(s) if s == "available" && deprecated => "deprecated".into(),
        Some(s) => s,
        None => "unknown".into(),
    }
}

pub async fn run(image_id: &str, table: &str, as_json: bool, mermaid: bool) -> Outcome {
    match walk(image_id, table).await {
        Ok(doc) if mermaid => Outcome {
            out: graph(&doc),
            problems: Vec::new(),
        },
        Ok(doc) if as_json => Outcome {
            out: format!("{doc}\n"),
            problems: Vec::new(),
        },
        Ok(doc) => Outcome {
            out: text(&doc),
            problems: Vec::new(),
        },
        Err(e) => Outcome {
            out: String::new(),
            problems: vec![format!("lineage: {e}")],
        },
    }
}

async fn walk(image_id: &str, table: &str) -> Result<Value, String> {
    let sdk = crate::sdk_config().await;
    let ledger = Ledger::new(&sdk, table);
    let Some(row) = ledger.lineage(image_id).await? else {
        return Err(format!(
            "{image_id} is not in the ledger {table} (no bake of this Bakery published it)"
        ));
    };
    let this = node(&ledger, &sdk, Some(&row), image_id).await?;

    // Up: each parent's own lineage row, until one this ledger did not bake.
    let mut ancestors = Vec::new();
    let mut current = row.clone();
    for _ in 0..MAX_DEPTH {
        let parent = s(&current, "parent").to_owned();
        if parent.is_empty() {
            break;
        }
        match ledger.lineage(&parent).await? {
            Some(up) => {
                ancestors.push(node(&ledger, &sdk, Some(&up), &parent).await?);
                current = up;
            }
            None => {
                ancestors.push(node(&ledger, &sdk, None, &parent).await?);
                break;
            }
        }
    }

    // Down: the bakes built on any of this bake's AMIs, then on theirs.
    let mut descendants = Vec::new();
    let mut seen = BTreeSet::from([s(&row, "bakeId").to_owned()]);
    let mut frontier: Vec<(String, Value)> = vec![(String::new(), this.clone())];
    for _ in 0..MAX_DEPTH {
        let mut next = Vec::new();
        for (_, parent) in &frontier {
            for ami in parent["amis"].as_array().into_iter().flatten() {
                let id = ami["imageId"].as_str().unwrap_or_default();
                for child in ledger.children(id).await? {
                    let bake = s(&child, "bakeId").to_owned();
                    if seen.insert(bake.clone()) {
                        let mut n = node(&ledger, &sdk, Some(&child), s(&child, "pk")).await?;
                        n["builtOn"] = json!(id);
                        next.push((bake, n));
                    }
                }
            }
        }
        if next.is_empty() {
            break;
        }
        descendants.extend(next.iter().map(|(_, n)| n.clone()));
        frontier = next;
    }
    Ok(json!({"imageId": image_id, "bake": this, "ancestors": ancestors, "descendants": descendants}))
}

fn label(n: &Value) -> String {
    let amis: Vec<String> = n["amis"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            let region = a["region"].as_str().map(|r| format!("{r} ")).unwrap_or_default();
            let state = a["state"].as_str().map(|s| format!(" ({s})")).unwrap_or_default();
            format!("{region}{}{state}", a["imageId"].as_str().unwrap_or_default())
        })
        .collect();
    match n["bakeId"].as_str() {
        Some(bake) => format!(
            "{} bake {}: {}",
            bakery_core::ids::pipeline_name(n["pipelineArn"].as_str().unwrap_or_default()),
            bake,
            amis.join(", ")
        ),
        None => format!("{} (not baked here)", amis.join(", ")),
    }
}

fn text(doc: &Value) -> String {
    let mut out = String::new();
    let list = |v: &Value| v.as_array().cloned().unwrap_or_default();
    for (i, a) in list(&doc["ancestors"]).iter().enumerate().rev() {
        let _ = writeln!(out, "ancestor {}: {}", i + 1, label(a));
    }
    let _ = writeln!(out, "this: {}", label(&doc["bake"]));
    for d in list(&doc["descendants"]) {
        let _ = writeln!(
            out,
            "descendant (built on {}): {}",
            d["builtOn"].as_str().unwrap_or_default(),
            label(&d)
        );
    }
    out
}

/// A Mermaid flowchart, oldest at the top: one node per bake (or outside AMI).
fn graph(doc: &Value) -> String {
    let mut out = String::from("graph TD\n");
    let mut nodes: Vec<Value> = doc["ancestors"].as_array().cloned().unwrap_or_default();
    nodes.reverse();
    let ancestors = nodes.len();
    nodes.push(doc["bake"].clone());
    nodes.extend(doc["descendants"].as_array().cloned().unwrap_or_default());
    for (i, n) in nodes.iter().enumerate() {
        let text = label(n).replace('"', "'").replace(", ", "<br/>");
        let _ = writeln!(out, "  n{i}[\"{text}\"]");
    }
    for i in 1..=ancestors {
        let _ = writeln!(out, "  n{} --> n{i}", i - 1);
    }
    // A descendant hangs under the node holding the AMI it was built on.
    for (i, n) in nodes.iter().enumerate().skip(ancestors + 1) {
        let on = n["builtOn"].as_str().unwrap_or_default();
        let parent = nodes[..i]
            .iter()
            .position(|p| p["amis"].as_array().into_iter().flatten().any(|a| a["imageId"] == on))
            .unwrap_or(ancestors);
        let _ = writeln!(out, "  n{parent} --> n{i}");
    }
    if doc["bake"].is_object() {
        let _ = writeln!(out, "  style n{ancestors} stroke-width:3px");
    }
    out
}
