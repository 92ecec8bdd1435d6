//! The gate on the local AWS: a real build by the Image Builder emulator, its AMI in moto's
//! EC2, the gate called in-process, and the world checked afterwards.

use aws_sdk_imagebuilder::types::Image;
use bakery_core::policy::{Quarantine, Severity};
use bakery_core::steps::{decode, GateResult};
use bakery_core::Policy;
use gate::{handle, Deps};
use gateway::{FindingCounts, LocalAws};
use serde_json::{json, Value};
use std::collections::HashMap;
use tests::{clients, create_pipeline, local_aws, register_base_ami, repo, wait_for_build, Clients};

const REGION: &str = "us-east-1";
/// moto's account.
const ACCOUNT: &str = "123456789012";
const EXECUTION: &str = "arn:aws:states:us-east-1:123456789012:execution:bakery-bake:web-1";

/// The shipped example policy, with this gate.
fn policy(on_failure: Quarantine) -> Policy {
    let text = std::fs::read(repo().join("schema/examples/web-app.json")).unwrap();
    let mut policy = Policy::parse(&text).unwrap();
    policy.gate.max_findings = [(Severity::Critical, 0), (Severity::High, 0), (Severity::Medium, 10)].into();
    policy.gate.on_failure = on_failure;
    policy
}

struct Built {
    base: String,
    pipeline: String,
    image: Image,
}

/// A pipeline on a fresh base AMI, and one finished build of it.
async fn build(c: &Clients, token: &str) -> Built {
    let base = register_base_ami(&c.ec2, "soe-al2023-2026.11.1").await;
    let pipeline = create_pipeline(&c.ib, "web", &base, &[REGION]).await;
    let image = build_again(c, &pipeline, token).await;
    Built { base, pipeline, image }
}

async fn build_again(c: &Clients, pipeline: &str, token: &str) -> Image {
    let started =
        c.ib.start_image_pipeline_execution()
            .image_pipeline_arn(pipeline)
            .client_token(token)
            .send()
            .await
            .unwrap();
    wait_for_build(&c.ib, started.image_build_version_arn().unwrap()).await
}

/// The execution state as the state machine hands it to the gate.
fn gate_input(built: &Built, image: &Image, policy: &Policy) -> Value {
    let recipe = image.image_recipe.as_ref().unwrap();
    json!({
        "state": {
            "bakeId": "web-1",
            "pipelineArn": built.pipeline,
            "sourceAmi": {"imageId": built.base, "region": REGION},
            "parentChain": [],
            "build": {
                "imageBuildVersionArn": image.arn,
                "recipeArn": recipe.arn,
                "recipeVersion": recipe.version,
                "parentImage": built.base,
                "pipelineName": "web",
                "homeRegion": REGION,
                "accountId": ACCOUNT,
                "policy": policy,
            },
            "watch": {"terminal": true, "status": image.state.as_ref().unwrap().status.as_ref().unwrap().as_str()}
        },
        "executionArn": EXECUTION,
    })
}

async fn gate(aws: &LocalAws, input: Value) -> GateResult {
    let sdk = aws.sdk_config(REGION).await;
    let deps = Deps {
        ib: aws_sdk_imagebuilder::Client::new(&sdk),
        sdk,
    };
    handle(decode("gate", input).unwrap(), &deps).await.unwrap()
}

fn built_ami(image: &Image) -> String {
    let amis = image.output_resources.as_ref().unwrap().amis();
    assert_eq!(amis.len(), 1, "{amis:?}");
    amis[0].image().unwrap().to_owned()
}

/// The image's DeprecationTime as its owner's DescribeImages shows it.
async fn deprecation_time(c: &Clients, ami: &str) -> Option<String> {
    let out = c
        .ec2
        .describe_images()
        .image_ids(ami)
        .owners("self")
        .include_deprecated(true)
        .send()
        .await
        .unwrap();
    out.images()[0].deprecation_time().map(str::to_owned)
}

async fn image_tags(c: &Clients, ami: &str) -> HashMap<String, String> {
    let out = c.ec2.describe_images().image_ids(ami).send().await.unwrap();
    let image = &out.images()[0];
    image
        .tags()
        .iter()
        .map(|t| (t.key().unwrap().to_owned(), t.value().unwrap().to_owned()))
        .collect()
}

async fn snapshot_tags(c: &Clients, snapshot: &str) -> HashMap<String, String> {
    let out = c.ec2.describe_snapshots().snapshot_ids(snapshot).send().await.unwrap();
    let s = &out.snapshots()[0];
    s.tags()
        .iter()
        .map(|t| (t.key().unwrap().to_owned(), t.value().unwrap().to_owned()))
        .collect()
}

#[tokio::test]
async fn findings_over_the_limit_quarantine_the_ami() {
    let aws = local_aws().await;
    let c = clients(&aws, REGION).await;
    aws.admin()
        .set_scan_findings(&FindingCounts {
            critical: 1,
            high: 3,
            medium: 2,
            low: 7,
            ..Default::default()
        })
        .await
        .unwrap();
    let built = build(&c, "t1").await;
    let ami = built_ami(&built.image);

    let result = gate(&aws, gate_input(&built, &built.image, &policy(Quarantine::Deprecate))).await;
    assert!(!result.passed);
    assert_eq!(
        result.reasons,
        ["1 critical findings, limit 0", "3 high findings, limit 0"]
    );
    assert_eq!(result.outcome.status, "AVAILABLE");
    assert!(result.outcome.tests_enabled);
    let f = &result.outcome.findings.0;
    assert_eq!(
        (f[&Severity::Critical], f[&Severity::High], f[&Severity::Medium]),
        (1, 3, 2)
    );
    assert!(result.quarantined && !result.deregistered, "{result:?}");
    let image = result.image.as_ref().unwrap();
    assert_eq!((image.region.as_str(), image.image_id.as_str()), (REGION, ami.as_str()));
    assert!(image.name.starts_with("web-"), "{image:?}");
    assert!(!image.snapshot_ids.is_empty(), "{image:?}");

    // The AMI stays, tagged and deprecated, and so are its snapshots.
    let tags = image_tags(&c, &ami).await;
    assert_eq!(
        tags.get("bakery:quarantined").map(String::as_str),
        Some("true"),
        "{tags:?}"
    );
    assert_eq!(
        tags["bakery:quarantine-reason"],
        "1 critical findings, limit 0; 3 high findings, limit 0"
    );
    assert_eq!(tags["bakery:bake-id"], "web-1");
    for snapshot in &image.snapshot_ids {
        assert_eq!(
            snapshot_tags(&c, snapshot)
                .await
                .get("bakery:quarantined")
                .map(String::as_str),
            Some("true")
        );
    }
    let at = deprecation_time(&c, &ami)
        .await
        .expect("deprecated, as DescribeImages shows it");
    let at = chrono::DateTime::parse_from_rfc3339(&at).unwrap();
    let ahead = at.signed_duration_since(chrono::Utc::now());
    assert!(
        ahead > chrono::TimeDelta::zero() && ahead <= chrono::TimeDelta::minutes(2),
        "{at}"
    );

    // The lineage the publish step would tag with.
    let l = &result.lineage;
    assert_eq!(
        (l.bake_id.as_str(), l.source_ami.as_str()),
        ("web-1", built.base.as_str())
    );
    assert_eq!(l.execution_arn, EXECUTION);
    assert_eq!(Some(l.image_build_version_arn.as_str()), built.image.arn.as_deref());
    assert_eq!(l.pipeline_arn, built.pipeline);
    assert!(
        chrono::DateTime::parse_from_rfc3339(&l.build_date).is_ok(),
        "{}",
        l.build_date
    );
}

#[tokio::test]
async fn deregister_removes_the_ami_and_its_snapshots_and_a_retry_agrees() {
    let aws = local_aws().await;
    let c = clients(&aws, REGION).await;
    aws.admin()
        .set_scan_findings(&FindingCounts {
            critical: 2,
            ..Default::default()
        })
        .await
        .unwrap();
    let built = build(&c, "t1").await;
    let ami = built_ami(&built.image);
    let input = gate_input(&built, &built.image, &policy(Quarantine::Deregister));

    let result = gate(&aws, input.clone()).await;
    assert!(!result.passed);
    assert_eq!(result.reasons, ["2 critical findings, limit 0"]);
    assert!(result.quarantined && result.deregistered, "{result:?}");
    let snapshots = result.image.as_ref().unwrap().snapshot_ids.clone();
    assert!(!snapshots.is_empty());

    let left = c.ec2.describe_images().owners("self").image_ids(&ami).send().await;
    assert!(
        left.map(|o| o.images().is_empty()).unwrap_or(true),
        "the AMI is deregistered"
    );
    for snapshot in &snapshots {
        let left = c.ec2.describe_snapshots().snapshot_ids(snapshot).send().await;
        assert!(
            left.map(|o| o.snapshots().is_empty()).unwrap_or(true),
            "{snapshot} is deleted"
        );
    }

    // The state machine's Retry may call again: same answer, nothing fails on what is gone.
    let again = gate(&aws, input).await;
    assert_eq!(
        (again.passed, again.quarantined, again.deregistered),
        (false, true, true)
    );
    assert_eq!(again.reasons, result.reasons);
    assert_eq!(again.image.map(|i| i.image_id), result.image.map(|i| i.image_id));
}

#[tokio::test]
async fn clean_findings_pass_untouched_and_a_failed_build_fails_without_an_ami() {
    let aws = local_aws().await;
    let c = clients(&aws, REGION).await;
    aws.admin()
        .set_scan_findings(&FindingCounts {
            medium: 10,
            low: 40,
            ..Default::default()
        })
        .await
        .unwrap();
    let built = build(&c, "t1").await;
    let ami = built_ami(&built.image);

    let result = gate(&aws, gate_input(&built, &built.image, &policy(Quarantine::Deregister))).await;
    assert!(result.passed, "{result:?}");
    assert!(result.reasons.is_empty());
    assert!(!result.quarantined && !result.deregistered);
    let image = result.image.unwrap();
    assert_eq!(image.image_id.as_str(), ami);
    assert!(!image.snapshot_ids.is_empty());
    let tags = image_tags(&c, &ami).await;
    assert!(!tags.contains_key("bakery:quarantined"), "{tags:?}");
    assert_eq!(deprecation_time(&c, &ami).await, None);

    // A policy that limits low findings has them counted from the findings list.
    let mut strict = policy(Quarantine::Deprecate);
    strict.gate.max_findings.insert(Severity::Low, 39);
    let result = gate(&aws, gate_input(&built, &built.image, &strict)).await;
    assert_eq!(result.reasons, ["40 low findings, limit 39"]);
    aws.admin().set_scan_findings(&FindingCounts::default()).await.unwrap();

    // A build that fails before its image exists leaves no AMI.
    aws.admin()
        .fail_next_build("BUILDING", "component hardening failed")
        .await
        .unwrap();
    let failed = build_again(&c, &built.pipeline, "t2").await;
    let result = gate(&aws, gate_input(&built, &failed, &policy(Quarantine::Deregister))).await;
    assert!(!result.passed);
    assert_eq!(result.reasons, ["image is FAILED: component hardening failed"]);
    assert!(result.image.is_none());
    assert!(
        !result.quarantined && !result.deregistered,
        "no AMI, nothing to quarantine"
    );
}
