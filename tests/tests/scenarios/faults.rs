//! The fault matrix: one test per fault, each checking the world afterwards. Every execution
//! ends in exactly one notification, whatever fails.

use gateway::world::{self, World};
use gateway::LocalAws;
use std::time::{Duration, Instant};
use tests::local_aws_with;

const LIMIT: Duration = Duration::from_secs(120);

async fn aws() -> LocalAws {
    local_aws_with(&[
        ("BuildWaitSeconds", "30"),
        ("BusyRetrySeconds", "1"),
        ("CopyPollSeconds", "1"),
    ])
    .await
}

async fn seeded(aws: &LocalAws) -> (World, String) {
    let world = world::seed(aws, "web").await.unwrap();
    let release = world::register_ami(aws, "soe-al2023-2026.11.2-web").await.unwrap();
    (world, release)
}

fn bake_id(world: &World, release: &str) -> String {
    format!("{}-{}", world.pipeline_name, release.trim_start_matches("ami-"))
}

/// Every message the subscriber got, waiting `settle` for late ones.
async fn all_notifications(aws: &LocalAws, world: &World, settle: Duration) -> Vec<serde_json::Value> {
    world::notifications(aws, &world.subscriber_queue_url, usize::MAX, settle)
        .await
        .unwrap()
}

async fn start(aws: &LocalAws, world: &World, release: &str) -> String {
    let sfn = aws_sdk_sfn::Client::new(&aws.sdk_config(&aws.region).await);
    let input = serde_json::json!({
        "bakeId": bake_id(world, release),
        "pipelineArn": world.pipeline_arn,
        "sourceAmi": {"imageId": release, "region": aws.region},
        "parentChain": [],
        "trigger": "soeRelease"
    });
    sfn.start_execution()
        .state_machine_arn(&world.state_machine_arn)
        .name(bake_id(world, release))
        .input(input.to_string())
        .send()
        .await
        .unwrap()
        .execution_arn
}

/// Whether the execution has entered `state`.
async fn entered(aws: &LocalAws, execution_arn: &str, state: &str) -> bool {
    let sfn = aws_sdk_sfn::Client::new(&aws.sdk_config(&aws.region).await);
    let Ok(history) = sfn
        .get_execution_history()
        .execution_arn(execution_arn)
        .max_results(1000)
        .send()
        .await
    else {
        return false;
    };
    history
        .events()
        .iter()
        .filter_map(|e| e.state_entered_event_details())
        .any(|d| d.name() == state)
}

/// SNS throttles the publication: Announce is retried, and the subscriber gets one message.
#[tokio::test]
async fn a_throttled_publication_is_retried_and_arrives_once() {
    let aws = aws().await;
    let (world, release) = seeded(&aws).await;
    aws.admin().throttle("sns", "Publish", 3).await.unwrap();
    let report = world::bake(&aws, &world, &release, &bake_id(&world, &release), LIMIT)
        .await
        .unwrap();
    assert_eq!(report.status, "SUCCEEDED", "{report:#?}");
    let got = all_notifications(&aws, &world, Duration::from_secs(3)).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["attributes"]["status"], "PUBLISHED");
    // The fault happened: SNS refused three publishes before it took one.
    let knobs = aws.admin().throttles().await.unwrap();
    let publish = knobs.iter().find(|k| k["operation"] == "Publish");
    assert!(publish.is_none_or(|k| k["remaining"] == 0), "{knobs:?}");
}

/// The ledger cannot be written once the AMIs are out: the publication still goes out, once,
/// and the execution fails at RecordLineage (for the alarm), never with a second message.
#[tokio::test]
async fn a_ledger_that_cannot_be_written_still_leaves_exactly_one_publication() {
    let aws = aws().await;
    let (world, release) = seeded(&aws).await;
    // Copies take a while, so the ledger can be broken after the build's own ledger writes.
    aws.admin().copies(1500, None).await.unwrap();
    let started = Instant::now();
    let execution_arn = start(&aws, &world, &release).await;
    tests::eventually("the bake publishing", LIMIT, || async {
        entered(&aws, &execution_arn, "Publish").await.then_some(())
    })
    .await;
    aws.admin()
        .fail_calls("dynamodb", "PutItem", 50, "ValidationException")
        .await
        .unwrap();
    let report = world::wait(&aws, &execution_arn, &release, started, LIMIT)
        .await
        .unwrap();
    assert_eq!(report.status, "FAILED", "{report:#?}");
    assert!(
        report.timeline.iter().any(|s| s.state == "RecordLineage"),
        "{:?}",
        report.timeline
    );
    let got = all_notifications(&aws, &world, Duration::from_secs(3)).await;
    assert_eq!(got.len(), 1, "exactly one message: {got:?}");
    assert_eq!(got[0]["attributes"]["status"], "PUBLISHED", "{got:?}");
    assert_eq!(
        got[0]["message"]["amis"].as_array().map(Vec::len),
        Some(world::REGIONS.len())
    );
}

/// This bake's AMIs in `region` (the copies and the build's, tagged with its bake id).
async fn bake_amis(aws: &LocalAws, region: &str, bake_id: &str) -> Vec<String> {
    let ec2 = aws_sdk_ec2::Client::new(&aws.sdk_config(region).await);
    let out = ec2
        .describe_images()
        .owners("self")
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("tag:bakery:bake-id")
                .values(bake_id)
                .build(),
        )
        .send()
        .await
        .unwrap();
    out.images()
        .iter()
        .filter_map(|i| i.image_id().map(str::to_owned))
        .collect()
}

/// One region's copy fails for good (its key is not in that region): the bake fails naming
/// the region, and what the other regions published is unshared, its parameters removed.
#[tokio::test]
async fn a_region_whose_copy_fails_for_good_fails_the_bake_and_the_others_roll_back() {
    let aws = aws().await;
    let (mut world, release) = seeded(&aws).await;
    let missing = format!("arn:aws:kms:{}:{}:alias/no-such-key", world::REGIONS[2], aws.account);
    world.policy["publish"]["regions"][2]["kmsKeyId"] = serde_json::json!(missing);
    world::put_policy(&aws, &world.pipeline_name, &world.policy)
        .await
        .unwrap();
    let id = bake_id(&world, &release);
    let report = world::bake(&aws, &world, &release, &id, LIMIT).await.unwrap();
    assert_eq!(report.status, "FAILED", "{report:#?}");
    let got = all_notifications(&aws, &world, Duration::from_secs(3)).await;
    assert_eq!(got.len(), 1, "exactly one message: {got:?}");
    let failure = &got[0]["message"]["failure"];
    assert_eq!(failure["step"], "Publish", "{failure}");
    let cause = failure["cause"].as_str().unwrap_or_default();
    assert!(
        cause.contains(world::REGIONS[2]) && cause.contains("Copy image failed"),
        "{cause}"
    );
    assert_eq!(got[0]["message"]["amis"], serde_json::json!([]), "nothing published");
    for region in &world::REGIONS[..2] {
        assert_eq!(
            world::parameter(&aws, region, &format!("/bakery/{}/latest", world.pipeline_name))
                .await
                .unwrap(),
            None,
            "{region}: no parameter left pointing at an unshared AMI"
        );
        let amis = bake_amis(&aws, region, &id).await;
        assert!(!amis.is_empty(), "{region} had published");
        for ami in amis {
            let shares = world::shares(&aws, region, &ami).await.unwrap();
            for who in ["accounts", "organizations", "organizationalUnits"] {
                assert_eq!(shares[who], serde_json::json!([]), "{region} {ami}: {shares}");
            }
        }
    }
}
