//! Bakes end to end on the local AWS: the real template, state machine and function binaries.
//! Each scenario checks the world afterwards: AMIs in the target regions, permissions, tags,
//! parameters, the message on the subscriber queue.

use gateway::world::{self, World};
use gateway::LocalAws;
use serde_json::Value;
use std::time::{Duration, Instant};
use tests::local_aws_with;

const LIMIT: Duration = Duration::from_secs(90);

/// Short waits, as a deploy for tests would set them.
async fn aws(build_wait_seconds: &str) -> LocalAws {
    local_aws_with(&[
        ("BuildWaitSeconds", build_wait_seconds),
        ("BusyRetrySeconds", "1"),
        ("CopyPollSeconds", "1"),
    ])
    .await
}

async fn seeded(aws: &LocalAws, name: &str) -> (World, String) {
    let world = world::seed(aws, name).await.unwrap();
    let release = world::register_ami(aws, &format!("soe-al2023-2026.11.2-{name}"))
        .await
        .unwrap();
    (world, release)
}

/// An execution name unique per pipeline and source, as the trigger makes them.
fn bake_id(world: &World, release: &str) -> String {
    format!("{}-{}", world.pipeline_name, release.trim_start_matches("ami-"))
}

async fn ec2(aws: &LocalAws, region: &str) -> aws_sdk_ec2::Client {
    aws_sdk_ec2::Client::new(&aws.sdk_config(region).await)
}

/// The AMIs this account owns in `region` that a bake made (not the seeded bases).
async fn baked_amis(aws: &LocalAws, region: &str) -> Vec<aws_sdk_ec2::types::Image> {
    let out = ec2(aws, region)
        .await
        .describe_images()
        .owners("self")
        .send()
        .await
        .unwrap();
    out.images
        .unwrap_or_default()
        .into_iter()
        .filter(|i| !i.name().unwrap_or_default().starts_with("soe-"))
        .collect()
}

/// The image's tag `key`, if it has one.
pub(crate) fn tag<'a>(image: &'a aws_sdk_ec2::types::Image, key: &str) -> Option<&'a str> {
    image
        .tags()
        .iter()
        .find(|t| t.key() == Some(key))
        .and_then(|t| t.value())
}

fn published(report: &world::BakeReport) -> Vec<(String, String)> {
    by_region(&report.output["published"])
}

/// `(region, imageId)` of each object in a JSON list (the bake's output, the message's `amis`).
fn by_region(list: &Value) -> Vec<(String, String)> {
    list.as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            (
                p["region"].as_str().unwrap().to_owned(),
                p["imageId"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn happy_path_publishes_shares_tags_and_announces_every_ami() {
    let aws = aws("30").await;
    let (world, release) = seeded(&aws, "web").await;
    let report = world::bake(&aws, &world, &release, &bake_id(&world, &release), LIMIT)
        .await
        .unwrap();
    assert_eq!(report.status, "SUCCEEDED", "{:#?}", report);

    let amis = published(&report);
    let regions: Vec<&str> = amis.iter().map(|(r, _)| r.as_str()).collect();
    assert_eq!(regions, world::REGIONS, "one AMI per policy region, in order");
    for (region, image_id) in &amis {
        // The AMI exists in its region, with its lineage.
        let found = ec2(&aws, region)
            .await
            .describe_images()
            .image_ids(image_id)
            .send()
            .await
            .unwrap();
        let image = &found.images.unwrap()[0];
        assert_eq!(image.state().map(|s| s.as_str()), Some("available"));
        assert_eq!(tag(image, "bakery:source-ami"), Some(release.as_str()), "{region}");
        assert_eq!(
            tag(image, "bakery:recipe-version"),
            Some("1.0.1"),
            "{region}: the next recipe version"
        );
        assert!(tag(image, "bakery:execution")
            .unwrap()
            .ends_with(&report.execution_arn[report.execution_arn.len() - 20..]));
        // Shared as the policy says: launch permission for 2 accounts and the OU, volumes for the accounts.
        let shares = world::shares(&aws, region, image_id).await.unwrap();
        let mut accounts: Vec<&str> = shares["accounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        accounts.sort();
        assert_eq!(accounts, ["210987654321", "345678901234"], "{region}");
        assert_eq!(shares["organizationalUnits"][0], world::SHARE_OU, "{region}");
        let snapshots = shares["snapshots"].as_array().unwrap();
        assert!(!snapshots.is_empty(), "{region}: the AMI has snapshots");
        for s in snapshots {
            assert_eq!(
                s["createVolumePermission"].as_array().unwrap().len(),
                2,
                "{region}: {s}"
            );
        }
        // The parameter in that region points at that region's AMI.
        let p = world::parameter(&aws, region, "/bakery/web/latest").await.unwrap();
        assert_eq!(p.as_deref(), Some(image_id.as_str()), "{region}");
    }
    // The home region's AMI is the build's own; the others are copies of it.
    let copies = baked_amis(&aws, "eu-west-1").await;
    assert_eq!(copies.len(), 1, "one copy in eu-west-1");

    let messages = world::notifications(&aws, &world.subscriber_queue_url, 1, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(messages.len(), 1);
    let m = &messages[0];
    assert_eq!(m["attributes"]["status"], "PUBLISHED");
    assert_eq!(m["attributes"]["pipeline"], "web");
    assert_eq!(m["attributes"]["channel"], "stable");
    let announced = by_region(&m["message"]["amis"]);
    assert_eq!(announced, amis, "every AMI ID, by region");
    assert_eq!(m["message"]["executionArn"], report.execution_arn.as_str());
    assert_eq!(m["message"]["lineage"]["parents"][0], release.as_str());
    assert_eq!(m["message"]["gate"]["passed"], true);
}

/// Everything a failed bake must leave: no copies, no shares, no parameters, one FAILED message.
async fn assert_nothing_published(aws: &LocalAws, world: &World, step: &str) -> Value {
    for region in &world::REGIONS[1..] {
        assert!(baked_amis(aws, region).await.is_empty(), "no copy in {region}");
    }
    for region in world::REGIONS {
        assert_eq!(
            world::parameter(aws, region, "/bakery/web/latest").await.unwrap(),
            None,
            "{region}"
        );
    }
    for image in baked_amis(aws, world::REGIONS[0]).await {
        let shares = world::shares(aws, world::REGIONS[0], image.image_id().unwrap())
            .await
            .unwrap();
        assert_eq!(
            shares["accounts"],
            serde_json::json!([]),
            "the built AMI is shared with no one"
        );
        assert_eq!(
            tag(&image, "bakery:quarantined"),
            Some("true"),
            "whatever was built is quarantined"
        );
    }
    let messages = world::notifications(aws, &world.subscriber_queue_url, 1, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(messages.len(), 1);
    let m = messages[0].clone();
    assert_eq!(m["attributes"]["status"], "FAILED");
    assert_eq!(m["message"]["failure"]["step"], step, "{m}");
    assert_eq!(m["message"]["amis"], serde_json::json!([]));
    m
}

#[tokio::test]
async fn a_failed_test_phase_publishes_nothing_and_says_why() {
    let aws = aws("30").await;
    let (world, release) = seeded(&aws, "web").await;
    aws.admin()
        .fail_next_build("TESTING", "InSpec: 2 of 40 controls failed")
        .await
        .unwrap();
    let report = world::bake(&aws, &world, &release, &bake_id(&world, &release), LIMIT)
        .await
        .unwrap();
    assert_eq!(report.status, "FAILED", "{report:#?}");
    let m = assert_nothing_published(&aws, &world, "Gate").await;
    let cause = m["message"]["failure"]["cause"].as_str().unwrap();
    assert!(cause.contains("InSpec: 2 of 40 controls failed"), "{cause}");
    // The build made its AMI before the tests ran: it is there, quarantined (checked above).
    assert_eq!(
        baked_amis(&aws, world::REGIONS[0]).await.len(),
        1,
        "the tested AMI is kept for investigation"
    );
    assert_eq!(m["message"]["gate"]["quarantined"], true);
}

#[tokio::test]
async fn scan_findings_over_the_limit_quarantine_the_image() {
    let aws = aws("30").await;
    let (world, release) = seeded(&aws, "web").await;
    let counts = gateway::FindingCounts {
        critical: 1,
        high: 5,
        ..Default::default()
    };
    aws.admin().set_scan_findings(&counts).await.unwrap();
    let report = world::bake(&aws, &world, &release, &bake_id(&world, &release), LIMIT)
        .await
        .unwrap();
    assert_eq!(report.status, "FAILED", "{report:#?}");
    let m = assert_nothing_published(&aws, &world, "Gate").await;
    let reasons = m["message"]["gate"]["reasons"].as_array().unwrap();
    assert!(
        reasons.iter().any(|r| r == "1 critical findings, limit 0"),
        "{reasons:?}"
    );
    assert!(reasons.iter().any(|r| r == "5 high findings, limit 2"), "{reasons:?}");
    assert_eq!(m["message"]["gate"]["quarantined"], true);
    let built = baked_amis(&aws, world::REGIONS[0]).await;
    assert_eq!(built.len(), 1, "the build's AMI stays, quarantined");
    let described = ec2(&aws, world::REGIONS[0])
        .await
        .describe_images()
        .owners("self")
        .image_ids(built[0].image_id().unwrap())
        .include_deprecated(true)
        .send()
        .await
        .unwrap();
    let image = &described.images()[0];
    assert!(image.deprecation_time().is_some(), "and deprecated: {image:?}");
}

/// Low findings are not in the aggregation: the gate lists the findings (which reads Inspector's
/// findings too), and a policy that deregisters failures leaves neither AMI nor snapshot.
#[tokio::test]
async fn listed_findings_fail_the_gate_and_the_failed_image_is_deregistered() {
    let aws = aws("30").await;
    let (mut world, release) = seeded(&aws, "web").await;
    world.policy["gate"]["maxFindings"]["low"] = serde_json::json!(0);
    world.policy["gate"]["onFailure"] = serde_json::json!("deregister");
    world::put_policy(&aws, &world.pipeline_name, &world.policy)
        .await
        .unwrap();
    let counts = gateway::FindingCounts {
        low: 3,
        ..Default::default()
    };
    aws.admin().set_scan_findings(&counts).await.unwrap();
    let report = world::bake(&aws, &world, &release, &bake_id(&world, &release), LIMIT)
        .await
        .unwrap();
    assert_eq!(report.status, "FAILED", "{report:#?}");
    let m = assert_nothing_published(&aws, &world, "Gate").await;
    let reasons = m["message"]["gate"]["reasons"].as_array().unwrap();
    assert!(reasons.iter().any(|r| r == "3 low findings, limit 0"), "{reasons:?}");
    assert!(
        baked_amis(&aws, world::REGIONS[0]).await.is_empty(),
        "the built AMI is deregistered"
    );
    let snapshots = ec2(&aws, world::REGIONS[0])
        .await
        .describe_snapshots()
        .owner_ids("self")
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("tag:bakery:quarantined")
                .values("true")
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert!(
        snapshots.snapshots().is_empty(),
        "and its snapshots deleted: {snapshots:?}"
    );
}

/// A policy naming a parameter outside PublishedParameterPrefix passes the schema, but publish-region
/// could not write it: start-build refuses it before anything is built, naming the parameter.
#[tokio::test]
async fn a_policy_asking_more_than_the_stack_grants_is_refused_before_anything_is_built() {
    let aws = aws("30").await;
    let (mut world, release) = seeded(&aws, "web").await;
    world.policy["publish"]["ssmParameters"] = serde_json::json!(["/elsewhere/web/latest"]);
    world::put_policy(&aws, &world.pipeline_name, &world.policy)
        .await
        .unwrap();
    let report = world::bake(&aws, &world, &release, &bake_id(&world, &release), LIMIT)
        .await
        .unwrap();
    assert_eq!(report.status, "FAILED", "{report:#?}");
    let m = assert_nothing_published(&aws, &world, "StartBuild").await;
    assert_eq!(m["message"]["failure"]["error"], "InvalidPolicy");
    let cause = m["message"]["failure"]["cause"].as_str().unwrap();
    assert!(
        cause.contains("publish.ssmParameters[0]") && cause.contains("template parameter PublishedParameterPrefix"),
        "{cause}"
    );
    assert!(
        baked_amis(&aws, world::REGIONS[0]).await.is_empty(),
        "nothing was built"
    );
    let ib = aws_sdk_imagebuilder::Client::new(&aws.sdk_config(&aws.region).await);
    let recipes = ib.list_image_recipes().send().await.unwrap();
    assert_eq!(recipes.image_recipe_summary_list().len(), 1, "no new recipe version");
}

/// A pipeline whose own distribution copies to another region and shares with an account would
/// let the image out before the gate: start-build refuses it, naming each setting, and nothing
/// is built.
#[tokio::test]
async fn a_pipeline_that_distributes_before_the_gate_is_refused_naming_the_settings() {
    use aws_sdk_imagebuilder::types::{AmiDistributionConfiguration, Distribution, LaunchPermissionConfiguration};
    let aws = aws("30").await;
    let (world, release) = seeded(&aws, "web").await;
    let ib = aws_sdk_imagebuilder::Client::new(&aws.sdk_config(&aws.region).await);
    let policy_file = std::env::temp_dir().join(format!("bakery-policy-{}.json", std::process::id()));
    std::fs::write(&policy_file, world.policy.to_string()).unwrap();
    // Asynchronously: the local AWS answers on this test's runtime.
    let validate = || async {
        let out = tokio::process::Command::new(tests::repo().join("target/debug/bakery"))
            .args(["policy", "validate", "--parameter"])
            .arg(format!("PublishRegions={}", world::REGIONS.join(",")))
            .arg("--pipeline")
            .arg(&world.pipeline_arn)
            .arg(&policy_file)
            .envs(aws.env())
            .output()
            .await
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    assert_eq!(
        validate().await,
        (Some(0), String::new()),
        "the pipeline distributes at home only"
    );
    let pipeline = ib
        .get_image_pipeline()
        .image_pipeline_arn(&world.pipeline_arn)
        .send()
        .await
        .unwrap()
        .image_pipeline
        .unwrap();
    let shared = AmiDistributionConfiguration::builder()
        .name("web-{{imagebuilder:buildDate}}")
        .launch_permission(
            LaunchPermissionConfiguration::builder()
                .user_ids("210987654321")
                .build(),
        )
        .build();
    let wide = ib
        .create_distribution_configuration()
        .name("web-wide")
        .distributions(Distribution::builder().region(&aws.region).build().unwrap())
        .distributions(
            Distribution::builder()
                .region(world::REGIONS[1])
                .ami_distribution_configuration(shared)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap()
        .distribution_configuration_arn
        .unwrap();
    ib.update_image_pipeline()
        .image_pipeline_arn(&world.pipeline_arn)
        .set_image_recipe_arn(pipeline.image_recipe_arn.clone())
        .set_infrastructure_configuration_arn(pipeline.infrastructure_configuration_arn.clone())
        .distribution_configuration_arn(&wide)
        .send()
        .await
        .unwrap();

    // The operator's check says so before any bake, as start-build will.
    let (code, stderr) = validate().await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("UnsafeDistribution") && stderr.contains("distributions[1].region"),
        "{stderr}"
    );
    let _ = std::fs::remove_file(&policy_file);

    let report = world::bake(&aws, &world, &release, &bake_id(&world, &release), LIMIT)
        .await
        .unwrap();
    assert_eq!(report.status, "FAILED", "{report:#?}");
    let m = assert_nothing_published(&aws, &world, "StartBuild").await;
    assert_eq!(m["message"]["failure"]["error"], "UnsafeDistribution");
    let cause = m["message"]["failure"]["cause"].as_str().unwrap();
    assert!(
        cause.contains(&format!("distributions[1].region: {}", world::REGIONS[1]))
            && cause.contains("distributions[1].amiDistributionConfiguration.launchPermission.userIds"),
        "{cause}"
    );
    assert!(
        baked_amis(&aws, world::REGIONS[0]).await.is_empty(),
        "nothing was built"
    );
    let recipes = ib.list_image_recipes().send().await.unwrap();
    assert_eq!(recipes.image_recipe_summary_list().len(), 1, "no new recipe version");
}

#[tokio::test]
async fn a_lost_state_change_event_is_covered_by_the_status_check() {
    let aws = aws("2").await;
    let (world, release) = seeded(&aws, "web").await;
    // Every state change of the build is lost: only the timeout and the status check remain.
    aws.admin().drop_next_state_change_events(5).await.unwrap();
    let report = world::bake(&aws, &world, &release, &bake_id(&world, &release), LIMIT)
        .await
        .unwrap();
    assert_eq!(report.status, "SUCCEEDED", "{report:#?}");
    let states: Vec<&str> = report.timeline.iter().map(|s| s.state.as_str()).collect();
    assert!(states.contains(&"CheckBuild"), "the status check ran: {states:?}");
    assert_eq!(published(&report).len(), 3);
    let events = aws.admin().events().await.unwrap();
    assert!(
        events.iter().all(|e| e["source"] != "aws.imagebuilder"),
        "the events really were lost"
    );
}

#[tokio::test]
async fn throttled_image_builder_and_ec2_calls_do_not_fail_the_bake() {
    let aws = aws("30").await;
    let (world, release) = seeded(&aws, "web").await;
    let admin = aws.admin();
    for (service, operation, count) in [
        ("imagebuilder", "GetImagePipeline", 3),
        ("imagebuilder", "StartImagePipelineExecution", 3),
        ("imagebuilder", "GetImage", 3),
        ("ec2", "CopyImage", 4),
        ("ec2", "ModifyImageAttribute", 4),
    ] {
        admin.throttle(service, operation, count).await.unwrap();
    }
    let started = Instant::now();
    let report = world::bake(&aws, &world, &release, &bake_id(&world, &release), LIMIT)
        .await
        .unwrap();
    assert_eq!(report.status, "SUCCEEDED", "{report:#?}");
    assert_eq!(published(&report).len(), 3);
    let left: Vec<Value> = admin
        .throttles()
        .await
        .unwrap()
        .into_iter()
        .filter(|t| t["remaining"] != 0)
        .collect();
    assert!(left.is_empty(), "every throttled call was made and retried: {left:?}");
    eprintln!("throttled bake took {:?}", started.elapsed());
}

#[tokio::test]
async fn the_same_bake_started_twice_builds_copies_and_announces_once() {
    let aws = aws("30").await;
    let (world, release) = seeded(&aws, "web").await;
    let id = bake_id(&world, &release);
    let sfn = aws_sdk_sfn::Client::new(&aws.sdk_config(&aws.region).await);
    let input = serde_json::json!({
        "bakeId": id, "pipelineArn": world.pipeline_arn,
        "sourceAmi": {"imageId": release, "region": aws.region}, "parentChain": [], "trigger": "soeRelease"
    })
    .to_string();
    let start = || {
        sfn.start_execution()
            .state_machine_arn(&world.state_machine_arn)
            .name(&id)
            .input(&input)
            .send()
    };
    let first = start().await.unwrap().execution_arn;
    // A redelivered trigger starts the same name again: the same execution, or ExecutionAlreadyExists.
    match start().await {
        Ok(second) => assert_eq!(second.execution_arn, first),
        Err(e) => assert!(e.into_service_error().is_execution_already_exists()),
    }
    let report = world::wait(&aws, &first, &release, Instant::now(), LIMIT)
        .await
        .unwrap();
    assert_eq!(report.status, "SUCCEEDED", "{report:#?}");
    if let Err(e) = start().await {
        assert!(e.into_service_error().is_execution_already_exists());
    }

    let ib = aws_sdk_imagebuilder::Client::new(&aws.sdk_config(&aws.region).await);
    let images = ib
        .list_image_pipeline_images()
        .image_pipeline_arn(&world.pipeline_arn)
        .send()
        .await
        .unwrap();
    assert_eq!(images.image_summary_list.unwrap().len(), 1, "one build");
    for region in &world::REGIONS[1..] {
        assert_eq!(baked_amis(&aws, region).await.len(), 1, "one copy in {region}");
    }
    let messages = world::notifications(&aws, &world.subscriber_queue_url, 2, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(messages.len(), 1, "one message");
}

#[tokio::test]
async fn a_publish_that_fails_in_one_region_leaves_nothing_shared() {
    let aws = aws("30").await;
    let (world, release) = seeded(&aws, "web").await;
    // One region at a time, so the home region is published (and shared) before the copy fails.
    let mut policy = world.policy.clone();
    policy["publish"]["concurrency"] = serde_json::json!(1);
    world::put_policy(&aws, &world.pipeline_name, &policy).await.unwrap();
    aws.admin()
        .fail_calls("ec2", "CopyImage", 10, "InvalidParameterCombination")
        .await
        .unwrap();

    let report = world::bake(&aws, &world, &release, &bake_id(&world, &release), LIMIT)
        .await
        .unwrap();
    assert_eq!(report.status, "FAILED", "{report:#?}");
    let states: Vec<&str> = report.timeline.iter().map(|s| s.state.as_str()).collect();
    assert!(states.contains(&"Unpublish"), "{states:?}");
    let m = assert_nothing_published(&aws, &world, "Publish").await;
    assert!(
        m["message"]["failure"]["cause"]
            .as_str()
            .unwrap_or_default()
            .contains("InvalidParameterCombination"),
        "{m}"
    );
    let home = baked_amis(&aws, world::REGIONS[0]).await;
    assert_eq!(home.len(), 1, "the built AMI stays, unshared and quarantined");
    let shares = world::shares(&aws, world::REGIONS[0], home[0].image_id().unwrap())
        .await
        .unwrap();
    assert_eq!(
        shares["organizationalUnits"],
        serde_json::json!([]),
        "the OU share is revoked too"
    );
    for s in shares["snapshots"].as_array().unwrap() {
        assert_eq!(s["createVolumePermission"], serde_json::json!([]), "{s}");
    }
}

/// The key of `alias` in `region`, made if there is none (as a platform team makes it).
async fn key_arn(aws: &LocalAws, region: &str, alias: &str) -> String {
    gateway::iam::lookups::Moto::new(&aws.moto_endpoint)
        .ensure_kms_alias(region, &aws.account, alias)
        .await
        .unwrap()
}

/// The KMS key each EBS mapping of `image` is encrypted with (None: unencrypted).
fn ebs_keys(image: &aws_sdk_ec2::types::Image) -> Vec<Option<String>> {
    image
        .block_device_mappings()
        .iter()
        .filter_map(|m| m.ebs())
        .map(|e| {
            e.encrypted()
                .unwrap_or(false)
                .then(|| e.kms_key_id().unwrap_or_default().to_owned())
        })
        .collect()
}

/// A policy that names a key for a region gets AMIs encrypted with that key there, the home
/// region included: its AMI is a re-encrypted copy, and the build's own AMI is retired
/// (deprecated, never shared). A region without a key keeps EC2's defaults.
#[tokio::test]
async fn every_published_ami_is_encrypted_with_the_policy_key_for_its_region() {
    let aws = aws("30").await;
    let (mut world, release) = seeded(&aws, "web").await;
    let home_key = key_arn(&aws, world::REGIONS[0], "alias/ami-home").await;
    let copy_key = key_arn(&aws, world::REGIONS[1], world::COPY_KEY_ALIAS).await;
    world.policy["publish"]["regions"][0]["kmsKeyId"] = serde_json::json!(format!(
        "arn:aws:kms:{}:{}:alias/ami-home",
        world::REGIONS[0],
        aws.account
    ));
    world::put_policy(&aws, &world.pipeline_name, &world.policy)
        .await
        .unwrap();
    let report = world::bake(&aws, &world, &release, &bake_id(&world, &release), LIMIT)
        .await
        .unwrap();
    assert_eq!(report.status, "SUCCEEDED", "{report:#?}");
    let m = &world::notifications(&aws, &world.subscriber_queue_url, 1, Duration::from_secs(10))
        .await
        .unwrap()[0];
    let published = |region: &str| {
        m["message"]["amis"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["region"] == region)
            .and_then(|a| a["imageId"].as_str())
            .unwrap()
            .to_owned()
    };
    for (region, want) in [
        (world::REGIONS[0], Some(home_key.clone())),
        (world::REGIONS[1], Some(copy_key.clone())),
        (world::REGIONS[2], None),
    ] {
        let id = published(region);
        let image = baked_amis(&aws, region)
            .await
            .into_iter()
            .find(|i| i.image_id() == Some(id.as_str()))
            .unwrap_or_else(|| panic!("{id} in {region}"));
        let keys = ebs_keys(&image);
        assert!(!keys.is_empty(), "{image:?}");
        assert!(keys.iter().all(|k| *k == want), "{region}: {keys:?}, want {want:?}");
    }
    // The build's own AMI in the home region: superseded, deprecated, shared with no one.
    let build = baked_amis(&aws, world::REGIONS[0])
        .await
        .into_iter()
        .find(|i| tag(i, "bakery:superseded-by") == Some(published(world::REGIONS[0]).as_str()))
        .expect("the build's AMI, tagged with the copy that replaces it");
    assert!(build.deprecation_time().is_some(), "{build:?}");
    let shares = world::shares(&aws, world::REGIONS[0], build.image_id().unwrap())
        .await
        .unwrap();
    for who in ["accounts", "organizations", "organizationalUnits"] {
        assert_eq!(shares[who], serde_json::json!([]), "{shares}");
    }
}

/// A region whose concurrent copies are at their quota refuses one more (ResourceLimitExceeded):
/// the copy waits and is tried again, and the bake publishes once the quota frees.
#[tokio::test]
async fn a_copy_beyond_the_regions_quota_waits_and_the_bake_publishes() {
    let aws = aws("30").await;
    let (world, release) = seeded(&aws, "web").await;
    // Someone else's copy holds the region's one slot until the test lets it finish.
    aws.admin().copies(600_000, Some(1)).await.unwrap();
    ec2(&aws, world::REGIONS[1])
        .await
        .copy_image()
        .source_region(world::REGIONS[0])
        .source_image_id(&world.base_ami)
        .name("another-team-copy")
        .send()
        .await
        .unwrap();
    aws.admin().copies(200, Some(1)).await.unwrap();
    let started = Instant::now();
    let sfn = aws_sdk_sfn::Client::new(&aws.sdk_config(&aws.region).await);
    let bake_id = bake_id(&world, &release);
    let input = serde_json::json!({
        "bakeId": bake_id,
        "pipelineArn": world.pipeline_arn,
        "sourceAmi": {"imageId": release, "region": aws.region},
        "parentChain": [],
        "trigger": "soeRelease"
    });
    let execution_arn = sfn
        .start_execution()
        .state_machine_arn(&world.state_machine_arn)
        .name(&bake_id)
        .input(input.to_string())
        .send()
        .await
        .unwrap()
        .execution_arn;
    let refusals = || async {
        let history = sfn
            .get_execution_history()
            .execution_arn(&execution_arn)
            .max_results(1000)
            .send()
            .await
            .ok()?;
        let n = history
            .events()
            .iter()
            .filter_map(|e| e.lambda_function_failed_event_details())
            .filter(|d| d.error() == Some("CopyLimitExceeded"))
            .count();
        (n >= 2).then_some(n)
    };
    tests::eventually("the copy refused and tried again", LIMIT, refusals).await;
    aws.admin().complete_copies().await.unwrap();
    let report = world::wait(&aws, &execution_arn, &release, started, LIMIT)
        .await
        .unwrap();
    assert_eq!(report.status, "SUCCEEDED", "{report:#?}");
    let m = &world::notifications(&aws, &world.subscriber_queue_url, 1, Duration::from_secs(10))
        .await
        .unwrap()[0];
    assert_eq!(m["attributes"]["status"], "PUBLISHED", "{m}");
    let in_second = baked_amis(&aws, world::REGIONS[1]).await;
    assert_eq!(
        in_second.iter().filter(|i| tag(i, "bakery:bake-id").is_some()).count(),
        1,
        "one copy of the bake in {}: {in_second:?}",
        world::REGIONS[1]
    );
}
