//! An operator's commands against the local AWS, run as the binary with the environment the
//! local AWS prints: `bakery bake --wait` and `bakery status`. Each checks the world afterwards.

use gateway::world;
use gateway::LocalAws;
use serde_json::Value;
use std::time::Duration;
use tests::local_aws_with;

async fn bakery(aws: &LocalAws, args: &[&str]) -> Value {
    let out = tokio::process::Command::new(tests::repo().join("target/debug/bakery"))
        .args(args)
        .envs(aws.env())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "bakery {args:?}: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

#[tokio::test]
async fn bakery_bake_waits_for_its_amis_and_status_shows_its_steps() {
    let aws = local_aws_with(&[("BuildWaitSeconds", "30"), ("CopyPollSeconds", "1")]).await;
    let world = world::seed(&aws, "web").await.unwrap();
    let release = world::register_ami(&aws, "soe-al2023-2026.11.2-web").await.unwrap();
    let trigger = aws.resource("TriggerFunction").unwrap().to_owned();
    let args = [
        "bake",
        "web",
        "--source",
        &release,
        "--function",
        &trigger,
        "--wait",
        "--json",
    ];

    let baked = bakery(&aws, &args).await;
    assert_eq!(baked["status"], "SUCCEEDED", "{baked}");
    assert_eq!(baked["sourceAmi"], release.as_str(), "{baked}");
    assert_eq!(baked["pipelineArn"], world.pipeline_arn.as_str(), "{baked}");
    let bake_id = baked["bakeId"].as_str().unwrap_or_default();
    let amis = baked["amis"].as_array().cloned().unwrap_or_default();
    assert_eq!(amis.len(), world::REGIONS.len(), "{baked}");
    for region in world::REGIONS {
        let listed: Vec<&str> = amis
            .iter()
            .filter(|a| a["region"] == region)
            .filter_map(|a| a["imageId"].as_str())
            .collect();
        let found = world::bake_images(&aws, region, bake_id).await.unwrap();
        let found: Vec<&str> = found.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(listed, found, "{region}: the AMI the command printed is the bake's");
    }
    let told = world::notifications(&aws, &world.subscriber_queue_url, 1, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(told[0]["message"]["executionArn"], baked["executionArn"], "{told:?}");

    // The same request again is the same bake.
    let again = bakery(&aws, &args).await;
    assert_eq!(again["executionArn"], baked["executionArn"], "{again}");
    assert_eq!(again["alreadyStarted"], true, "{again}");

    let status = bakery(
        &aws,
        &["status", "web", "--state-machine", &world.state_machine_arn, "--json"],
    )
    .await;
    let bakes = status["bakes"].as_array().cloned().unwrap_or_default();
    assert_eq!(bakes.len(), 1, "{status}");
    assert_eq!(bakes[0]["executionArn"], baked["executionArn"]);
    assert_eq!(bakes[0]["status"], "SUCCEEDED");
    let states: Vec<&str> = bakes[0]["timeline"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["state"].as_str())
        .collect();
    for state in [
        "StartBuild",
        "WaitForBuild",
        "Gate",
        "Publish",
        "Announce",
        "RecordLineage",
    ] {
        assert!(states.contains(&state), "{state} in {states:?}");
    }
    let other = bakery(
        &aws,
        &["status", "other", "--state-machine", &world.state_machine_arn, "--json"],
    )
    .await;
    assert_eq!(
        other["bakes"],
        serde_json::json!([]),
        "another pipeline's bakes: {other}"
    );
}
