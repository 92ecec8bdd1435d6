//! `bakery stale`: the published images whose parent has a newer trusted release than the base
//! they were built on. The trigger function makes the report (it reads the policies' sources
//! as it does for a bake); this command asks it with a "Staleness Report Requested" event and
//! announces nothing (the daily schedule does that).

use crate::invoke::InvokeError;
use crate::Outcome;
use serde_json::{json, Value};
use std::fmt::Write as _;

pub async fn run(function: &str, as_json: bool) -> Outcome {
    match report(function).await {
        Ok(body) if as_json => Outcome {
            out: format!(
                "{}\n",
                json!({"stale": body["stale"], "invalidPolicies": body["invalidPolicies"]})
            ),
            problems: Vec::new(),
        },
        Ok(body) => {
            let mut out = text(&body["stale"]);
            for p in body["invalidPolicies"].as_array().into_iter().flatten() {
                let _ = writeln!(out, "not read (invalid policy): {p}");
            }
            Outcome {
                out,
                problems: Vec::new(),
            }
        }
        Err(e) => Outcome::problem(format!("stale: {e}")),
    }
}

async fn report(function: &str) -> Result<Value, String> {
    let sdk = crate::sdk_config().await;
    let region = sdk
        .region()
        .map(|r| r.to_string())
        .ok_or("no AWS region set (AWS_REGION or the profile's region)")?;
    let now = chrono::Utc::now();
    let event = json!({
        "version": "0",
        "id": format!("bakery-stale-{}", now.timestamp_nanos_opt().unwrap_or_default()),
        "detail-type": bakery_core::classify::STALENESS_REQUESTED,
        "source": bakery_core::classify::BAKERY_EVENT_SOURCE,
        "account": "000000000000",
        "time": now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "region": region,
        "resources": [],
        "detail": {"publish": false},
    });
    let body = crate::invoke::invoke(&aws_sdk_lambda::Client::new(&sdk), function, &event)
        .await
        .map_err(|e| match e {
            InvokeError::Call(message) => message,
            e => format!("the trigger failed {e}"),
        })?;
    Ok(body)
}

fn text(stale: &Value) -> String {
    let list = stale.as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        return "no stale images: every pipeline's latest publication is on its parent's newest trusted release, and that release is not revoked\n"
            .into();
    }
    let mut out = String::new();
    for s in list {
        let since = s["behindSince"]
            .as_str()
            .map(|t| format!(", behind since {t} ({} days)", s["daysBehind"]))
            .unwrap_or_default();
        let newer = match s["newerBase"].as_str() {
            Some(newest) => format!("{} newer release(s), newest {newest}{since}", s["newerReleases"]),
            None => "no newer release".into(),
        };
        let revoked = s["baseRevoked"]
            .as_str()
            .map(|why| format!("; the base was {why}"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "{} bake {}: built on {}, {newer}{revoked}",
            s["pipeline"]["name"].as_str().unwrap_or_default(),
            s["bakeId"].as_str().unwrap_or_default(),
            s["builtOn"].as_str().unwrap_or_default(),
        );
        for a in s["amis"].as_array().into_iter().flatten() {
            let _ = writeln!(
                out,
                "  {} {}",
                a["region"].as_str().unwrap_or_default(),
                a["imageId"].as_str().unwrap_or_default()
            );
        }
    }
    out
}
