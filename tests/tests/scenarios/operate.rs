//! An operator's commands against the local AWS, run as the binary with the environment the
//! local AWS prints: `bakery bake --wait` and `bakery status`. Each checks the world afterwards.

use gateway::world;
use gateway::LocalAws;
use serde_json::Value;
use std::time::Duration;
use tests::local_aws_with;

async fn bakery(aws: &LocalAws, args: &[&str]) -> Value {
    let out = tests::bakery(aws, args).await;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "bakery {args:?}: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// The pipelines of every EMF count of `metric` in `function`'s output (the log file the local
/// AWS keeps per function, as CloudWatch Logs would get it).
fn emf(aws: &LocalAws, function: &str, metric: &str) -> Vec<String> {
    let name = aws.resource(function).unwrap();
    let log = std::fs::read_to_string(aws.logs.join(format!("{name}.log"))).unwrap_or_default();
    log.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Name"] == metric && v[metric] == 1)
        .filter(|v| v["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "Bakery")
        .map(|v| v["Pipeline"].as_str().unwrap_or_default().to_owned())
        .collect()
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

    // Bakery's metrics, in the embedded metric format on each function's output.
    assert_eq!(emf(&aws, "TriggerFunction", "BakesStarted"), ["web"]);
    assert_eq!(emf(&aws, "AnnounceFunction", "BakesSucceeded"), ["web"]);

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

/// The AMI of `bake_id` in `region`.
async fn ami_in(aws: &LocalAws, region: &str, bake_id: &str) -> String {
    let found = world::bake_images(aws, region, bake_id).await.unwrap();
    assert_eq!(found.len(), 1, "{region}: {found:?}");
    found[0].0.clone()
}

#[tokio::test]
async fn bakery_lineage_walks_up_and_down_the_ledger() {
    let aws = local_aws_with(&[("BuildWaitSeconds", "30"), ("CopyPollSeconds", "1")]).await;
    let web = world::seed(&aws, "web").await.unwrap();
    let app = world::seed(&aws, "app").await.unwrap();
    let release = world::register_ami(&aws, "soe-al2023-2026.11.2").await.unwrap();
    let up = world::bake(&aws, &web, &release, "web-r1", Duration::from_secs(120))
        .await
        .unwrap();
    assert_eq!(up.status, "SUCCEEDED", "{up:#?}");
    let web_home = ami_in(&aws, &aws.region, "web-r1").await;
    let down = world::bake(&aws, &app, &web_home, "app-r1", Duration::from_secs(120))
        .await
        .unwrap();
    assert_eq!(down.status, "SUCCEEDED", "{down:#?}");
    let table = aws.resource("LedgerTable").unwrap().to_owned();

    // From the downstream AMI in another region: its bake, then web's, then the SOE release.
    let app_eu = ami_in(&aws, world::REGIONS[1], "app-r1").await;
    let doc = bakery(&aws, &["lineage", &app_eu, "--table", &table, "--json"]).await;
    assert_eq!(doc["bake"]["bakeId"], "app-r1", "{doc}");
    assert_eq!(
        doc["bake"]["amis"].as_array().map(Vec::len),
        Some(world::REGIONS.len()),
        "{doc}"
    );
    assert!(
        doc["bake"]["amis"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["state"] == "available"),
        "{doc}"
    );
    assert_eq!(doc["ancestors"][0]["bakeId"], "web-r1", "{doc}");
    assert_eq!(doc["ancestors"][1]["bakeId"], serde_json::Value::Null, "{doc}");
    assert_eq!(doc["ancestors"][1]["amis"][0]["imageId"], release.as_str(), "{doc}");
    assert_eq!(doc["descendants"], serde_json::json!([]), "{doc}");

    // From web's AMI: app's bake below it, built on web's home AMI; a deregistered one shows so.
    let web_eu = ami_in(&aws, world::REGIONS[1], "web-r1").await;
    aws_sdk_ec2::Client::new(&aws.sdk_config(world::REGIONS[1]).await)
        .deregister_image()
        .image_id(&app_eu)
        .send()
        .await
        .unwrap();
    let doc = bakery(&aws, &["lineage", &web_eu, "--table", &table, "--json"]).await;
    assert_eq!(doc["descendants"][0]["bakeId"], "app-r1", "{doc}");
    assert_eq!(doc["descendants"][0]["builtOn"], web_home.as_str(), "{doc}");
    let gone: Vec<&serde_json::Value> = doc["descendants"][0]["amis"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["state"] == "deregistered")
        .collect();
    assert_eq!(gone.len(), 1, "{doc}");
    assert_eq!(gone[0]["imageId"], app_eu.as_str());

    let out = tests::bakery(&aws, &["lineage", &web_eu, "--table", &table, "--mermaid"]).await;
    let graph = String::from_utf8_lossy(&out.stdout);
    assert!(graph.starts_with("graph TD\n"), "{graph}");
    assert!(graph.contains("n0 --> n1") && graph.contains("n1 --> n2"), "{graph}");
    assert!(
        graph.contains(&release) && graph.contains(&web_home) && graph.contains(&app_eu),
        "{graph}"
    );

    let unknown = tests::bakery(&aws, &["lineage", "ami-0123456789abcdef0", "--table", &table]).await;
    assert_eq!(unknown.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("not in the ledger"));
}
