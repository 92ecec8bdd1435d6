//! Retention after each publication: the pipeline's newest `retention.keep` AMIs stay in every
//! region, older ones are deregistered with their snapshots, unless they are younger than
//! `retention.minAgeDays` or a live image was built on them. Checked in EC2 afterwards.

use gateway::world::{self, World};
use gateway::LocalAws;
use std::time::Duration;
use tests::local_aws_with;

const LIMIT: Duration = Duration::from_secs(120);

/// Bakes `world`'s pipeline on a new release named `name`; returns the bake id.
async fn bake(aws: &LocalAws, world: &World, name: &str) -> String {
    let release = world::register_ami(aws, name).await.unwrap();
    let bake_id = format!("web-{name}");
    let report = world::bake(aws, world, &release, &bake_id, LIMIT).await.unwrap();
    assert_eq!(report.status, "SUCCEEDED", "{report:#?}");
    assert!(
        report.output.get("retentionError").is_none(),
        "retention applied: {}",
        report.output
    );
    bake_id
}

/// The bake's AMIs and snapshots in every region, asserting there is one AMI per region.
async fn published(aws: &LocalAws, bake_id: &str) -> Vec<(&'static str, String, Vec<String>)> {
    let mut out = Vec::new();
    for region in world::REGIONS {
        let images = world::bake_images(aws, region, bake_id).await.unwrap();
        assert_eq!(images.len(), 1, "{region}: one AMI of {bake_id}: {images:?}");
        let (ami, snapshots) = images.into_iter().next().unwrap();
        assert!(!snapshots.is_empty(), "{region}: {ami} has snapshots");
        out.push((region, ami, snapshots));
    }
    out
}

async fn snapshot_exists(aws: &LocalAws, region: &str, snapshot: &str) -> bool {
    let ec2 = aws_sdk_ec2::Client::new(&aws.sdk_config(region).await);
    match ec2.describe_snapshots().snapshot_ids(snapshot).send().await {
        Ok(out) => !out.snapshots().is_empty(),
        Err(e) => {
            let e = e.into_service_error();
            assert_eq!(e.meta().code(), Some("InvalidSnapshot.NotFound"), "{e:?}");
            false
        }
    }
}

async fn set_retention(aws: &LocalAws, world: &mut World, keep: u32, min_age_days: u32) {
    world.policy["retention"] = serde_json::json!({"keep": keep, "minAgeDays": min_age_days});
    world::put_policy(aws, &world.pipeline_name, &world.policy)
        .await
        .unwrap();
}

#[tokio::test]
async fn older_amis_go_with_their_snapshots_unless_young_or_built_on() {
    let aws = local_aws_with(&[("BuildWaitSeconds", "30"), ("CopyPollSeconds", "1")]).await;
    let mut world = world::seed(&aws, "web").await.unwrap();

    // keep 1, but nothing younger than a day goes: the first bake stays.
    set_retention(&aws, &mut world, 1, 1).await;
    let first = bake(&aws, &world, "soe-al2023-2026.11.1-web").await;
    let first_amis = published(&aws, &first).await;
    let second = bake(&aws, &world, "soe-al2023-2026.11.2-web").await;
    published(&aws, &first).await;

    // No minimum age: the next publication retires both older bakes in every region, snapshots
    // too, except the second, on which a live image was built (a downstream bake's AMI).
    set_retention(&aws, &mut world, 1, 0).await;
    let second_amis = published(&aws, &second).await;
    let ec2 = aws_sdk_ec2::Client::new(&aws.sdk_config(&aws.region).await);
    let child = world::register_ami(&aws, "downstream-app-1").await.unwrap();
    ec2.create_tags()
        .resources(&child)
        .tags(
            aws_sdk_ec2::types::Tag::builder()
                .key("bakery:source-ami")
                .value(&second_amis[0].1)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let third = bake(&aws, &world, "soe-al2023-2026.11.3-web").await;
    for (region, ami, snapshots) in &first_amis {
        assert!(
            world::bake_images(&aws, region, &first).await.unwrap().is_empty(),
            "{region}: {ami} deregistered"
        );
        for snapshot in snapshots {
            assert!(
                !snapshot_exists(&aws, region, snapshot).await,
                "{region}: {snapshot} deleted"
            );
        }
    }
    published(&aws, &second).await;
    published(&aws, &third).await;
    let parameter = format!("/bakery/{}/latest", world.pipeline_name);
    let latest = world::parameter(&aws, &aws.region, &parameter).await.unwrap();
    assert_eq!(latest.as_deref(), Some(published(&aws, &third).await[0].1.as_str()));

    // The downstream image is gone: the next publication retires the second bake as well.
    ec2.deregister_image().image_id(&child).send().await.unwrap();
    bake(&aws, &world, "soe-al2023-2026.11.4-web").await;
    for (region, _, snapshots) in &second_amis {
        assert!(
            world::bake_images(&aws, region, &second).await.unwrap().is_empty(),
            "{region}"
        );
        for snapshot in snapshots {
            assert!(
                !snapshot_exists(&aws, region, snapshot).await,
                "{region}: {snapshot} deleted"
            );
        }
    }
    assert!(world::bake_images(&aws, &aws.region, &third).await.unwrap().is_empty());
}

/// `bakery retention` as an operator runs it: the command line, the environment the local AWS
/// prints. `--plan` changes nothing; `--apply` deregisters what the plan showed.
async fn bakery_retention(aws: &LocalAws, args: &[&str]) -> String {
    let args: Vec<&str> = std::iter::once("retention").chain(args.iter().copied()).collect();
    let out = tests::bakery(aws, &args).await;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[tokio::test]
async fn bakery_retention_plans_without_changing_anything_then_applies_the_plan() {
    let aws = local_aws_with(&[("BuildWaitSeconds", "30"), ("CopyPollSeconds", "1")]).await;
    let mut world = world::seed(&aws, "web").await.unwrap();
    set_retention(&aws, &mut world, 3, 0).await;
    let first = bake(&aws, &world, "soe-al2023-2026.11.1-web").await;
    let second = bake(&aws, &world, "soe-al2023-2026.11.2-web").await;
    let first_amis = published(&aws, &first).await;
    let second_amis = published(&aws, &second).await;
    set_retention(&aws, &mut world, 1, 0).await;

    let plan: serde_json::Value =
        serde_json::from_str(&bakery_retention(&aws, &["--plan", "--pipeline", "web", "--json"]).await).unwrap();
    assert_eq!(plan["mode"], "plan");
    let regions = plan["pipelines"][0]["regions"].as_array().cloned().unwrap_or_default();
    assert_eq!(regions.len(), world::REGIONS.len(), "{plan}");
    for ((region, first_ami, snapshots), (_, second_ami, _)) in first_amis.iter().zip(&second_amis) {
        let r = regions
            .iter()
            .find(|r| r["region"] == *region)
            .unwrap_or_else(|| panic!("{region}: {plan}"));
        assert_eq!(r["deregister"][0]["imageId"], first_ami.as_str(), "{r}");
        assert_eq!(r["deregister"][0]["snapshotIds"], serde_json::json!(snapshots), "{r}");
        assert_eq!(r["deregister"].as_array().map(Vec::len), Some(1), "{r}");
        assert_eq!(
            r["keep"],
            serde_json::json!([{"imageId": second_ami, "reason": "newest"}]),
            "{r}"
        );
    }
    published(&aws, &first).await;

    let applied = bakery_retention(&aws, &["--apply", "--pipeline", "web"]).await;
    for (region, ami, snapshots) in &first_amis {
        assert!(applied.contains(&format!("deregistered {ami}")), "{applied}");
        assert!(
            world::bake_images(&aws, region, &first).await.unwrap().is_empty(),
            "{region}"
        );
        for snapshot in snapshots {
            assert!(
                !snapshot_exists(&aws, region, snapshot).await,
                "{region}: {snapshot} deleted"
            );
        }
    }
    published(&aws, &second).await;
    let again = bakery_retention(&aws, &["--plan", "--pipeline", "web"]).await;
    assert!(!again.contains("would deregister"), "{again}");
}
