//! publish-region on the local AWS: a real build's AMI published to another region and to its
//! own, the function called in-process, and the world checked afterwards in each region.

use aws_sdk_ec2::types::{Filter, ImageAttributeName, SnapshotAttributeName};
use bakery_core::steps::{decode, AmiLineage, PublishRegionResponse, RegionPublished};
use publish_region::Deps;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use tests::{clients, create_pipeline, local_aws, register_base_ami, wait_for_build};

const HOME: &str = "us-east-1";
const TARGET: &str = "eu-west-1";
const ACCOUNTS: [&str; 2] = ["210987654321", "111122223333"];
const ORG: &str = "arn:aws:organizations::123456789012:organization/o-a1b2c3d4e5";
const OU: &str = "arn:aws:organizations::123456789012:ou/o-a1b2c3d4e5/ou-ab12-34cd56ef";
const PARAMETER: &str = "/bakery/web/latest";

fn input(target: Value, image: &Value, lineage: &AmiLineage) -> Value {
    json!({
        "bakeId": "web-1",
        "target": target,
        "image": image,
        "shareWith": {"accounts": ACCOUNTS, "organizations": [ORG], "organizationalUnits": [OU]},
        "ssmParameters": [PARAMETER],
        "lineage": lineage,
    })
}

/// One region's publication, its input decoded as the state machine's would be.
async fn handle(input: Value, deps: &Deps) -> Result<RegionPublished, bakery_aws::BakeError> {
    match publish_region::handle(decode("publish-region", input)?, deps).await? {
        PublishRegionResponse::Published(p) => Ok(p),
        other => panic!("not a publication: {other:?}"),
    }
}

#[tokio::test]
async fn an_ami_is_copied_shared_tagged_and_announced_once() {
    let aws = local_aws().await;
    let home = clients(&aws, HOME).await;
    let base = register_base_ami(&home.ec2, "soe-al2023-2026.11.1").await;
    let pipeline = create_pipeline(&home.ib, "web", &base, &[HOME]).await;
    let started = home
        .ib
        .start_image_pipeline_execution()
        .image_pipeline_arn(&pipeline)
        .client_token("t1")
        .send()
        .await
        .unwrap();
    let arn = started.image_build_version_arn.unwrap();
    let built = wait_for_build(&home.ib, &arn).await;
    let ami = built.output_resources.unwrap().amis()[0].image().unwrap().to_owned();
    let source = home
        .ec2
        .describe_images()
        .image_ids(&ami)
        .send()
        .await
        .unwrap()
        .images
        .unwrap()
        .remove(0);
    let name = source.name.clone().unwrap();
    let image = json!({"region": HOME, "imageId": ami, "name": name, "snapshotIds": []});
    let lineage = AmiLineage {
        bake_id: "web-1".into(),
        source_ami: base.clone(),
        parent_chain: vec![],
        recipe_arn: built.image_recipe.as_ref().and_then(|r| r.arn.clone()).unwrap(),
        recipe_version: "1.0.0".into(),
        pipeline_arn: pipeline.clone(),
        execution_arn: "arn:aws:states:us-east-1:123456789012:execution:bakery-bake:web-1".into(),
        image_build_version_arn: arn.clone(),
        build_date: "2026-11-26T16:00:00Z".into(),
    };
    let deps = Deps::new(aws.sdk_config(HOME).await);

    // The target region's key, as the platform team made it (EC2 fails a copy whose key is not there).
    let key = gateway::iam::lookups::Moto::new(&aws.moto_endpoint)
        .ensure_kms_alias(TARGET, &aws.account, "alias/ami-copies")
        .await
        .unwrap();
    let eu = input(json!({"region": TARGET, "kmsKeyId": key}), &image, &lineage);
    let published = handle(eu.clone(), &deps).await.unwrap();
    assert_eq!(published.region.as_str(), TARGET);
    assert_ne!(published.image_id.as_str(), ami, "a copy in {TARGET}");
    assert_eq!(published.parameters, [PARAMETER]);
    assert!(!published.snapshot_ids.is_empty(), "{published:?}");
    let copy = published.image_id.as_str();

    let target = clients(&aws, TARGET).await;
    let found = target
        .ec2
        .describe_images()
        .owners("self")
        .image_ids(copy)
        .send()
        .await
        .unwrap();
    let found = &found.images()[0];
    assert_eq!(found.name(), Some(name.as_str()));
    let tags: BTreeMap<String, String> = found
        .tags()
        .iter()
        .map(|t| (t.key().unwrap().to_owned(), t.value().unwrap().to_owned()))
        .collect();
    for (k, v) in lineage.tags() {
        assert_eq!(tags.get(&k), Some(&v), "lineage tag {k}: {tags:?}");
    }
    let ebs: Vec<_> = found.block_device_mappings().iter().filter_map(|m| m.ebs()).collect();
    assert!(!ebs.is_empty(), "{found:?}");
    for e in ebs {
        assert_eq!(
            (e.encrypted(), e.kms_key_id()),
            (Some(true), Some(key.as_str())),
            "the region's key"
        );
    }

    let attribute = target
        .ec2
        .describe_image_attribute()
        .image_id(copy)
        .attribute(ImageAttributeName::LaunchPermission)
        .send();
    let permissions = attribute.await.unwrap().launch_permissions.unwrap_or_default();
    let users: Vec<&str> = permissions.iter().filter_map(|p| p.user_id()).collect();
    assert!(ACCOUNTS.iter().all(|a| users.contains(a)), "{permissions:?}");
    assert!(
        permissions.iter().any(|p| p.organization_arn() == Some(ORG)),
        "{permissions:?}"
    );
    assert!(
        permissions.iter().any(|p| p.organizational_unit_arn() == Some(OU)),
        "{permissions:?}"
    );
    assert_eq!(permissions.len(), 4, "{permissions:?}");

    for snapshot in &published.snapshot_ids {
        let attribute = target
            .ec2
            .describe_snapshot_attribute()
            .snapshot_id(snapshot)
            .attribute(SnapshotAttributeName::CreateVolumePermission)
            .send()
            .await
            .unwrap();
        let mut users: Vec<&str> = attribute
            .create_volume_permissions()
            .iter()
            .filter_map(|p| p.user_id())
            .collect();
        users.sort_unstable();
        assert_eq!(users, ["111122223333", "210987654321"], "{snapshot}");
        let snapshot = target
            .ec2
            .describe_snapshots()
            .snapshot_ids(snapshot)
            .send()
            .await
            .unwrap();
        let tagged = snapshot.snapshots()[0]
            .tags()
            .iter()
            .any(|t| t.key() == Some("bakery:bake-id"));
        assert!(tagged, "{snapshot:?}");
    }

    let ssm = aws_sdk_ssm::Client::new(&aws.sdk_config(TARGET).await);
    let parameter = ssm
        .get_parameter()
        .name(PARAMETER)
        .send()
        .await
        .unwrap()
        .parameter
        .unwrap();
    assert_eq!(parameter.value(), Some(copy));
    assert_eq!(parameter.data_type(), Some("aws:ec2:image"));

    // Called again (a retried step): the same copy, and no second one.
    let again = handle(eu, &Deps::new(aws.sdk_config(HOME).await)).await.unwrap();
    assert_eq!(again, published);
    let named = Filter::builder().name("name").values(&name).build();
    let copies = target
        .ec2
        .describe_images()
        .owners("self")
        .filters(named)
        .send()
        .await
        .unwrap();
    assert_eq!(copies.images().len(), 1, "{:?}", copies.images());

    // In its own region the built AMI itself is published.
    let here = handle(input(json!({"region": HOME}), &image, &lineage), &deps)
        .await
        .unwrap();
    assert_eq!(here.image_id.as_str(), ami);
    let ssm = aws_sdk_ssm::Client::new(&aws.sdk_config(HOME).await);
    let parameter = ssm
        .get_parameter()
        .name(PARAMETER)
        .send()
        .await
        .unwrap()
        .parameter
        .unwrap();
    assert_eq!(parameter.value(), Some(ami.as_str()));
    let home_tags = home.ec2.describe_images().image_ids(&ami).send().await.unwrap();
    assert!(home_tags.images()[0]
        .tags()
        .iter()
        .any(|t| t.key() == Some("bakery:image") && t.value() == Some(arn.as_str())));
}
