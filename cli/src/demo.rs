//! `bakery demo`: a bake end to end on the local AWS. An SOE team publishes a new base AMI;
//! the web-app pipeline is rebuilt on it, gated, copied to three regions, shared with two
//! accounts and an OU, its SSM parameter written, and the subscriber told.

use gateway::world::{self, Error};
use gateway::{LocalAws, Options};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Duration;

/// The local AWS with production's waits shortened (template parameters, as a deploy would set them).
pub fn options(repo: PathBuf) -> Options {
    let mut opts = Options::for_repo(repo);
    for (k, v) in [
        ("BuildWaitSeconds", "20"),
        ("BusyRetrySeconds", "1"),
        ("CopyPollSeconds", "1"),
    ] {
        opts.parameters.insert(k.to_owned(), v.to_owned());
    }
    opts
}

pub async fn run(repo: PathBuf) -> Result<Value, Error> {
    let aws = LocalAws::start(options(repo)).await?;
    let world = world::seed(&aws, "web-app").await?;
    let release = world::register_ami(&aws, "soe-al2023-2026.11.2").await?;
    let bake_id = bakery_core::bake::bake_id(&world.pipeline_name, &release);
    let report = world::bake(&aws, &world, &release, &bake_id, Duration::from_secs(120)).await?;

    let mut amis = Vec::new();
    for p in report.output["published"].as_array().into_iter().flatten() {
        let (region, image) = (
            p["region"].as_str().unwrap_or_default(),
            p["imageId"].as_str().unwrap_or_default(),
        );
        let name = format!("/bakery/{}/latest", world.pipeline_name);
        amis.push(json!({
            "region": region,
            "imageId": image,
            "sharedWith": world::shares(&aws, region, image).await?,
            "parameter": {"name": name, "value": world::parameter(&aws, region, &name).await?},
        }));
    }
    let notification = world::notifications(&aws, &world.subscriber_queue_url, 1, Duration::from_secs(10))
        .await?
        .into_iter()
        .next();
    Ok(json!({
        "status": report.status,
        "executionArn": report.execution_arn,
        "pipelineArn": world.pipeline_arn,
        "sourceAmi": release,
        "baseAmi": world.base_ami,
        "amis": amis,
        "notification": notification,
        "timeline": report.timeline,
        "elapsedMs": report.elapsed_ms,
    }))
}

/// The report for people.
pub fn render(r: &Value) -> String {
    let mut out = String::new();
    let line = |out: &mut String, s: String| {
        out.push_str(&s);
        out.push('\n');
    };
    line(
        &mut out,
        format!(
            "SOE release {} → bake of {}",
            r["sourceAmi"].as_str().unwrap_or("?"),
            r["pipelineArn"].as_str().unwrap_or("?")
        ),
    );
    line(
        &mut out,
        format!("execution {}\n", r["executionArn"].as_str().unwrap_or("?")),
    );
    line(&mut out, "timeline".into());
    for s in r["timeline"].as_array().into_iter().flatten() {
        let (at, took) = (
            s["startedMs"].as_u64().unwrap_or(0),
            s["durationMs"].as_u64().unwrap_or(0),
        );
        line(
            &mut out,
            format!("  {at:>7} ms  {:<22} {took:>6} ms", s["state"].as_str().unwrap_or("?")),
        );
    }
    line(
        &mut out,
        format!(
            "\nresult: {} in {} ms\n",
            r["status"].as_str().unwrap_or("?"),
            r["elapsedMs"]
        ),
    );
    for a in r["amis"].as_array().into_iter().flatten() {
        let sw = &a["sharedWith"];
        line(
            &mut out,
            format!(
                "  {:<15} {}",
                a["region"].as_str().unwrap_or("?"),
                a["imageId"].as_str().unwrap_or("?")
            ),
        );
        line(
            &mut out,
            format!(
                "      launch permission: accounts {} · organizations {} · OUs {}",
                sw["accounts"], sw["organizations"], sw["organizationalUnits"]
            ),
        );
        for snap in sw["snapshots"].as_array().into_iter().flatten() {
            line(
                &mut out,
                format!(
                    "      snapshot {} create-volume: {}",
                    snap["snapshotId"].as_str().unwrap_or("?"),
                    snap["createVolumePermission"]
                ),
            );
        }
        line(
            &mut out,
            format!(
                "      ssm {} = {}",
                a["parameter"]["name"].as_str().unwrap_or("?"),
                a["parameter"]["value"]
            ),
        );
    }
    line(&mut out, "\nnotification on the subscriber queue".into());
    line(
        &mut out,
        serde_json::to_string_pretty(&r["notification"]).unwrap_or_default(),
    );
    out
}
