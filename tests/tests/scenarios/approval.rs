//! A policy with `approval.required`: the bake waits after the gate, before anything is copied
//! or shared, and one AWAITING_APPROVAL message says how to answer. `bakery approve` lets it
//! publish; `bakery reject` and the timeout fail it with a FAILED message naming why, and the
//! image nobody approved is quarantined as a failed gate's is. Each test checks the world:
//! copies, launch permissions, the image's tags and deprecation, messages.

use crate::bake::tag;
use gateway::world::{self, World};
use gateway::LocalAws;
use serde_json::Value;
use std::time::{Duration, Instant};
use tests::local_aws_with;

const LIMIT: Duration = Duration::from_secs(30);

async fn waiting_bake(hours: f64, on_failure: &str) -> (LocalAws, World, String, String) {
    let aws = local_aws_with(&[("BuildWaitSeconds", "30"), ("CopyPollSeconds", "1")]).await;
    let mut world = world::seed(&aws, "web").await.unwrap();
    world.policy["approval"] = serde_json::json!({"required": true, "timeoutHours": hours});
    world.policy["gate"]["onFailure"] = on_failure.into();
    world::put_policy(&aws, &world.pipeline_name, &world.policy)
        .await
        .unwrap();
    let release = world::register_ami(&aws, "soe-al2023-2026.11.2-web").await.unwrap();
    let execution_arn = world::start(&aws, &world, &release, "web-approval").await.unwrap();
    (aws, world, release, execution_arn)
}

/// The AWAITING_APPROVAL message; checks that nothing has left the home region yet.
async fn asked(aws: &LocalAws, world: &World, execution_arn: &str) -> Value {
    let got = world::notifications(aws, &world.subscriber_queue_url, 1, LIMIT)
        .await
        .unwrap();
    let m = &got[0];
    assert_eq!(m["attributes"]["status"], "AWAITING_APPROVAL", "{m}");
    assert_eq!(m["message"]["executionArn"], execution_arn, "{m}");
    let approve = m["message"]["approval"]["approve"].as_str().unwrap_or_default();
    assert!(
        approve.starts_with(&format!("bakery approve {execution_arn} --table ")),
        "{m}"
    );
    let home = m["message"]["amis"][0]["imageId"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(m["message"]["amis"][0]["region"], aws.region.as_str(), "{m}");
    let shares = world::shares(aws, &aws.region, &home).await.unwrap();
    assert_eq!(
        shares["accounts"],
        serde_json::json!([]),
        "not shared while it waits: {shares}"
    );
    for region in &world::REGIONS[1..] {
        let copies = world::bake_images(aws, region, "web-approval").await.unwrap();
        assert!(copies.is_empty(), "{region}: nothing copied while it waits: {copies:?}");
    }
    m["message"].clone()
}

fn table(aws: &LocalAws) -> String {
    aws.resource("LedgerTable").unwrap().to_owned()
}

/// The home region's image, as DescribeImages shows it to its owner (None once deregistered).
async fn described(aws: &LocalAws, image_id: &str) -> Option<aws_sdk_ec2::types::Image> {
    let ec2 = aws_sdk_ec2::Client::new(&aws.sdk_config(&aws.region).await);
    match ec2.describe_images().image_ids(image_id).send().await {
        Ok(out) => out.images().first().cloned(),
        Err(e) if e.as_service_error().and_then(|e| e.meta().code()) == Some("InvalidAMIID.NotFound") => None,
        Err(e) => panic!("DescribeImages {image_id}: {e:?}"),
    }
}

/// The FAILED message's gate says the image was quarantined because nobody approved it.
fn assert_quarantined_for(m: &Value, error: &str) {
    let gate = &m["message"]["gate"];
    assert_eq!(gate["passed"], false, "{m}");
    assert_eq!(gate["quarantined"], true, "{m}");
    let want = format!("not approved: {error}");
    assert!(
        gate["reasons"]
            .as_array()
            .is_some_and(|r| r.iter().any(|r| r.as_str().is_some_and(|r| r.starts_with(&want)))),
        "{m}"
    );
}

#[tokio::test]
async fn an_approved_bake_publishes() {
    let (aws, world, release, execution_arn) = waiting_bake(1.0, "deprecate").await;
    asked(&aws, &world, &execution_arn).await;
    let out = tests::bakery(
        &aws,
        &[
            "approve",
            &execution_arn,
            "--table",
            &table(&aws),
            "--by",
            "alice",
            "--json",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let said: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(said["answer"], "approved", "{said}");
    assert_eq!(said["executionArn"], execution_arn.as_str());
    let report = world::wait(&aws, &execution_arn, &release, Instant::now(), LIMIT)
        .await
        .unwrap();
    assert_eq!(report.status, "SUCCEEDED", "{report:#?}");
    assert_eq!(report.output["approval"]["approvedBy"], "alice", "{}", report.output);
    for region in world::REGIONS {
        let images = world::bake_images(&aws, region, "web-approval").await.unwrap();
        assert_eq!(images.len(), 1, "{region}: published after the approval");
        let shares = world::shares(&aws, region, &images[0].0).await.unwrap();
        assert!(
            !shares["accounts"].as_array().unwrap().is_empty(),
            "{region}: shared: {shares}"
        );
    }
    let got = world::notifications(&aws, &world.subscriber_queue_url, 1, LIMIT)
        .await
        .unwrap();
    assert_eq!(got[0]["attributes"]["status"], "PUBLISHED", "{got:?}");
}

#[tokio::test]
async fn a_rejected_bake_fails_with_the_reason_and_nothing_leaves() {
    let (aws, world, release, execution_arn) = waiting_bake(1.0, "deprecate").await;
    let home = asked(&aws, &world, &execution_arn).await["amis"][0]["imageId"]
        .as_str()
        .unwrap()
        .to_owned();
    let reject = [
        "reject",
        &execution_arn,
        "--table",
        &table(&aws),
        "--reason",
        "CVE-2026-4242 in the base",
        "--by",
        "bob",
    ];
    let out = tests::bakery(&aws, &reject).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report = world::wait(&aws, &execution_arn, &release, Instant::now(), LIMIT)
        .await
        .unwrap();
    assert_eq!(report.status, "FAILED", "{report:#?}");
    let got = world::notifications(&aws, &world.subscriber_queue_url, 1, LIMIT)
        .await
        .unwrap();
    assert!(!got.is_empty(), "no FAILED message: {report:#?}");
    let failure = &got[0]["message"]["failure"];
    assert_eq!(got[0]["attributes"]["status"], "FAILED", "{got:?}");
    assert_eq!(failure["step"], "Approval", "{failure}");
    assert_eq!(failure["error"], "Rejected", "{failure}");
    assert!(
        failure["cause"]
            .as_str()
            .unwrap_or_default()
            .contains("bob: CVE-2026-4242"),
        "{failure}"
    );
    assert_quarantined_for(&got[0], "Rejected: rejected by bob: CVE-2026-4242");
    // The rejected image stays for investigation (onFailure: deprecate), marked so that nothing
    // picks it up as the newest build.
    let image = described(&aws, &home).await.expect("the rejected image is kept");
    assert_eq!(tag(&image, "bakery:quarantined"), Some("true"), "{image:?}");
    assert!(
        tag(&image, "bakery:quarantine-reason").is_some_and(|r| r.contains("CVE-2026-4242")),
        "{image:?}"
    );
    assert!(image.deprecation_time().is_some(), "deprecated: {image:?}");
    let shares = world::shares(&aws, &aws.region, &home).await.unwrap();
    assert_eq!(shares["accounts"], serde_json::json!([]), "{shares}");
    for region in &world::REGIONS[1..] {
        assert!(
            world::bake_images(&aws, region, "web-approval")
                .await
                .unwrap()
                .is_empty(),
            "{region}"
        );
    }
    // Answered once: a second answer finds nothing waiting.
    let again = tests::bakery(&aws, &reject).await;
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("no bake waits for approval"));
}

#[tokio::test]
async fn an_unanswered_bake_times_out_and_fails() {
    // 0.001 hours: the wait gives up after 4 seconds.
    let (aws, world, release, execution_arn) = waiting_bake(0.001, "deregister").await;
    let home = asked(&aws, &world, &execution_arn).await["amis"][0]["imageId"]
        .as_str()
        .unwrap()
        .to_owned();
    let snapshots: Vec<String> = described(&aws, &home)
        .await
        .expect("the image waits")
        .block_device_mappings()
        .iter()
        .filter_map(|m| m.ebs().and_then(|e| e.snapshot_id()).map(str::to_owned))
        .collect();
    assert!(!snapshots.is_empty());
    let report = world::wait(&aws, &execution_arn, &release, Instant::now(), LIMIT)
        .await
        .unwrap();
    assert_eq!(report.status, "FAILED", "{report:#?}");
    let got = world::notifications(&aws, &world.subscriber_queue_url, 1, LIMIT)
        .await
        .unwrap();
    let failure = &got[0]["message"]["failure"];
    assert_eq!(failure["step"], "Approval", "{failure}");
    assert_eq!(failure["error"], "States.Timeout", "{failure}");
    assert_quarantined_for(&got[0], "States.Timeout");
    // onFailure: deregister: the unapproved image and its snapshots are gone.
    assert!(described(&aws, &home).await.is_none(), "deregistered");
    let ec2 = aws_sdk_ec2::Client::new(&aws.sdk_config(&aws.region).await);
    let left = ec2.describe_snapshots().owner_ids("self").send().await.unwrap();
    let left: Vec<&str> = left.snapshots().iter().filter_map(|s| s.snapshot_id()).collect();
    assert!(
        snapshots.iter().all(|s| !left.contains(&s.as_str())),
        "{snapshots:?} left in {left:?}"
    );
    let late = tests::bakery(&aws, &["approve", &execution_arn, "--table", &table(&aws)]).await;
    assert_eq!(late.status.code(), Some(2), "a late approval is refused");
}
