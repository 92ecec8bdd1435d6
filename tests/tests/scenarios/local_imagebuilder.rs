//! The Image Builder emulator on the wire, through the gateway, with aws-sdk-imagebuilder,
//! aws-sdk-ec2 and boto3: the AMIs it builds are real AMIs in moto's EC2.

use aws_sdk_imagebuilder::types::ImageStatus;
use std::time::Duration;
use tests::{clients, create_pipeline, eventually, local_aws, register_base_ami, repo, wait_for_build};

#[tokio::test]
async fn a_recipe_version_exists_once() {
    let aws = local_aws().await;
    let c = clients(&aws, "us-east-1").await;
    let base = register_base_ami(&c.ec2, "soe-al2023-2026.11.1").await;
    let pipeline = create_pipeline(&c.ib, "web", &base, &["us-east-1"]).await;
    let p =
        c.ib.get_image_pipeline()
            .image_pipeline_arn(&pipeline)
            .send()
            .await
            .unwrap()
            .image_pipeline
            .unwrap();
    let recipe =
        c.ib.get_image_recipe()
            .image_recipe_arn(p.image_recipe_arn.unwrap())
            .send()
            .await
            .unwrap();
    let component = recipe.image_recipe.unwrap().components.unwrap()[0]
        .component_arn
        .clone();
    let again =
        c.ib.create_image_recipe()
            .name("web")
            .semantic_version("1.0.0")
            .parent_image(&base)
            .components(
                aws_sdk_imagebuilder::types::ComponentConfiguration::builder()
                    .component_arn(component)
                    .build()
                    .unwrap(),
            )
            .client_token("another-token")
            .send()
            .await
            .unwrap_err();
    let err = again.into_service_error();
    assert!(err.is_resource_already_exists_exception(), "{err:?}");
}

#[tokio::test]
async fn a_build_is_started_once_per_client_token_and_its_ami_is_real() {
    let aws = local_aws().await;
    let c = clients(&aws, "us-east-1").await;
    let base = register_base_ami(&c.ec2, "soe-al2023-2026.11.1").await;
    let pipeline = create_pipeline(&c.ib, "web", &base, &["us-east-1", "eu-west-1"]).await;

    let start = || {
        c.ib.start_image_pipeline_execution()
            .image_pipeline_arn(&pipeline)
            .client_token("bake-42")
            .send()
    };
    let first = start().await.unwrap().image_build_version_arn.unwrap();
    let second = start().await.unwrap().image_build_version_arn.unwrap();
    assert_eq!(first, second, "the same clientToken starts nothing new");
    let other_input =
        c.ib.start_image_pipeline_execution()
            .image_pipeline_arn(pipeline.replace("/web", "/other"))
            .client_token("bake-42")
            .send()
            .await
            .unwrap_err()
            .into_service_error();
    assert!(
        other_input.is_idempotent_parameter_mismatch_exception(),
        "{other_input:?}"
    );

    let image = wait_for_build(&c.ib, &first).await;
    assert_eq!(image.state.unwrap().status, Some(ImageStatus::Available));
    let images =
        c.ib.list_image_pipeline_images()
            .image_pipeline_arn(&pipeline)
            .send()
            .await
            .unwrap();
    assert_eq!(images.image_summary_list.unwrap().len(), 1, "one build");

    let amis = image.output_resources.unwrap().amis.unwrap();
    assert_eq!(amis.len(), 2, "{amis:?}");
    for ami in &amis {
        let region = ami.region.clone().unwrap();
        let ec2 = clients(&aws, &region).await.ec2;
        let found = ec2
            .describe_images()
            .image_ids(ami.image.clone().unwrap())
            .send()
            .await
            .unwrap();
        let found = &found.images.unwrap()[0];
        assert!(
            found.name.as_deref().unwrap().starts_with("web-"),
            "named by the distribution: {found:?}"
        );
        let tags: Vec<_> = found
            .tags()
            .iter()
            .map(|t| (t.key().unwrap(), t.value().unwrap()))
            .collect();
        assert!(tags.contains(&("Team", "platform")), "{region}: {tags:?}");
    }

    // Every state change went out as the real EventBridge event.
    let events = aws.admin().events().await.unwrap();
    let statuses: Vec<&str> = events
        .iter()
        .filter(|e| e["detail-type"] == "EC2 Image Builder Image State Change" && e["resources"][0] == first.as_str())
        .map(|e| e["detail"]["state"]["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        ["PENDING", "BUILDING", "TESTING", "DISTRIBUTING", "AVAILABLE"]
    );
}

#[tokio::test]
async fn a_build_fails_in_testing_and_carries_scan_findings_when_it_passes() {
    let aws = local_aws().await;
    let c = clients(&aws, "us-east-1").await;
    let base = register_base_ami(&c.ec2, "soe-al2023-2026.11.1").await;
    let pipeline = create_pipeline(&c.ib, "web", &base, &["us-east-1"]).await;
    let admin = aws.admin();

    admin
        .fail_next_build("TESTING", "InSpec: 2 controls failed")
        .await
        .unwrap();
    let arn =
        c.ib.start_image_pipeline_execution()
            .image_pipeline_arn(&pipeline)
            .client_token("t1")
            .send()
            .await
            .unwrap();
    let image = wait_for_build(&c.ib, arn.image_build_version_arn().unwrap()).await;
    let state = image.state.unwrap();
    assert_eq!(state.status, Some(ImageStatus::Failed));
    assert_eq!(state.reason.as_deref(), Some("InSpec: 2 controls failed"));
    // The image is made before the tests run; a failed test leaves it (in the build region only).
    let amis = image.output_resources.and_then(|o| o.amis).unwrap_or_default();
    assert_eq!(amis.len(), 1, "{amis:?}");
    let ami = amis[0].image.clone().unwrap();
    c.ec2.describe_images().image_ids(&ami).send().await.unwrap();

    admin
        .set_scan_findings(&gateway::FindingCounts {
            critical: 1,
            high: 3,
            ..Default::default()
        })
        .await
        .unwrap();
    let arn =
        c.ib.start_image_pipeline_execution()
            .image_pipeline_arn(&pipeline)
            .client_token("t2")
            .send()
            .await
            .unwrap();
    let arn = arn.image_build_version_arn.unwrap();
    assert_eq!(
        wait_for_build(&c.ib, &arn).await.state.unwrap().status,
        Some(ImageStatus::Available)
    );
    let filter = aws_sdk_imagebuilder::types::ImageScanFindingsFilter::builder()
        .name("imageBuildVersionArn")
        .values(&arn)
        .build();
    let findings = c.ib.list_image_scan_findings().filters(filter).send().await.unwrap();
    let severities: Vec<String> = findings
        .findings
        .unwrap()
        .iter()
        .map(|f| f.severity.clone().unwrap())
        .collect();
    assert_eq!(
        severities.iter().filter(|s| *s == "CRITICAL").count(),
        1,
        "{severities:?}"
    );
    assert_eq!(severities.iter().filter(|s| *s == "HIGH").count(), 3, "{severities:?}");
}

#[tokio::test]
async fn throttled_calls_surface_as_each_services_throttling_error() {
    let aws = local_aws().await;
    let c = clients(&aws, "us-east-1").await;
    let base = register_base_ami(&c.ec2, "soe-al2023-2026.11.1").await;
    let pipeline = create_pipeline(&c.ib, "web", &base, &["us-east-1"]).await;
    let admin = aws.admin();

    // EC2's RequestLimitExceeded is a throttling code the SDK's standard retry knows: two
    // throttled calls are ridden over within its three attempts.
    admin.throttle("ec2", "DescribeImages", 2).await.unwrap();
    c.ec2.describe_images().image_ids(&base).send().await.unwrap();
    // With retries off, the caller sees it.
    let sdk = aws
        .sdk_config("us-east-1")
        .await
        .into_builder()
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .build();
    admin.throttle("ec2", "DescribeImages", 1).await.unwrap();
    let err = aws_sdk_ec2::Client::new(&sdk)
        .describe_images()
        .image_ids(&base)
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        aws_sdk_ec2::error::ProvideErrorMetadata::code(&err),
        Some("RequestLimitExceeded")
    );

    // Image Builder's CallRateLimitExceededException (HTTP 429) is not in the SDK's list of
    // throttling errors: even the default retry config hands it straight to the caller, so
    // Bakery's functions must retry it themselves.
    admin.throttle("imagebuilder", "GetImagePipeline", 1).await.unwrap();
    let err =
        c.ib.get_image_pipeline()
            .image_pipeline_arn(&pipeline)
            .send()
            .await
            .unwrap_err()
            .into_service_error();
    assert!(err.is_call_rate_limit_exceeded_exception(), "{err:?}");
    // The knob is spent: the next call goes through.
    c.ib.get_image_pipeline()
        .image_pipeline_arn(&pipeline)
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn a_lost_state_change_event_is_dropped_but_the_build_goes_on() {
    let aws = local_aws().await;
    let c = clients(&aws, "us-east-1").await;
    let base = register_base_ami(&c.ec2, "soe-al2023-2026.11.1").await;
    let pipeline = create_pipeline(&c.ib, "web", &base, &["us-east-1"]).await;
    aws.admin().drop_next_state_change_events(5).await.unwrap();
    let arn =
        c.ib.start_image_pipeline_execution()
            .image_pipeline_arn(&pipeline)
            .client_token("t")
            .send()
            .await
            .unwrap();
    let image = wait_for_build(&c.ib, arn.image_build_version_arn().unwrap()).await;
    assert_eq!(image.state.unwrap().status, Some(ImageStatus::Available));
    let events = aws.admin().events().await.unwrap();
    assert!(
        events.iter().all(|e| e["source"] != "aws.imagebuilder"),
        "all five were lost: {events:?}"
    );
}

/// boto3 (from the project's moto environment) speaks to the same emulator unchanged.
#[tokio::test]
async fn boto3_works_against_the_emulator_unchanged() {
    let aws = local_aws().await;
    let c = clients(&aws, "us-east-1").await;
    let base = register_base_ami(&c.ec2, "soe-al2023-2026.11.1").await;
    // The findings the script expects of its build.
    aws.admin()
        .set_scan_findings(&gateway::FindingCounts {
            high: 1,
            medium: 2,
            ..Default::default()
        })
        .await
        .unwrap();
    let endpoint = aws.endpoint.clone();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(repo().join(".venv/bin/python"))
            .arg(repo().join("local/imagebuilder-emulator/tests/boto3_smoke.py"))
            .env("IB_ENDPOINT", endpoint)
            .env("PARENT_AMI", base)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The script's builds made AMIs in moto.
    let ec2 = c.ec2.clone();
    eventually("an AMI built for boto3", Duration::from_secs(5), || async {
        let images = ec2.describe_images().owners("self").send().await.ok()?.images?;
        (images.len() > 1).then_some(())
    })
    .await;
}
