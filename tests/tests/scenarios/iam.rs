//! IAM on the local AWS: the template's permissions are all that lets each function work. Each
//! test takes one statement a function needs out of the template and shows where the bake then
//! fails: the gateway's refusal names the function and the action, the function's error is
//! `AccessDenied`, and the bake's FAILED notification says so. The resource policies and the
//! conditions of the template are checked the same way.

use gateway::world::{self, World};
use gateway::LocalAws;
use serde_json::{json, Value};
use std::time::Duration;
use tests::{eventually, local_aws_from, template_without};

const LIMIT: Duration = Duration::from_secs(90);

const PARAMETERS: [(&str, &str); 3] = [
    ("BuildWaitSeconds", "30"),
    ("BusyRetrySeconds", "1"),
    ("CopyPollSeconds", "1"),
];

/// The local AWS deployed without `function`'s statement (or policy template) `policy`.
async fn without(function: &str, policy: &str, parameters: &[(&str, &str)]) -> LocalAws {
    let mut all: Vec<(&str, &str)> = PARAMETERS.to_vec();
    all.extend_from_slice(parameters);
    local_aws_from(template_without(function, policy), &all).await
}

/// A seeded pipeline and a bake of it on a new base, to its end.
async fn bake(aws: &LocalAws) -> (World, world::BakeReport) {
    let world = world::seed(aws, "web").await.unwrap();
    let release = world::register_ami(aws, "soe-al2023-2026.11.2-web").await.unwrap();
    let id = format!("web-{}", release.trim_start_matches("ami-"));
    let report = world::bake(aws, &world, &release, &id, LIMIT).await.unwrap();
    (world, report)
}

/// The gateway refused `action` to `function` (a template logical id), at least once.
async fn assert_refused(aws: &LocalAws, function: &str, action: &str) -> Value {
    let name = aws.resource(function).unwrap().to_owned();
    let denials = aws.admin().denials().await.unwrap();
    denials
        .into_iter()
        .find(|d| d["function"] == name.as_str() && d["action"] == action)
        .unwrap_or_else(|| panic!("no refusal of {action} to {name}"))
}

/// The bake's one FAILED notification: at `step`, an AccessDenied naming the action and function.
async fn assert_failed_notification(aws: &LocalAws, world: &World, step: &str, function: &str, action: &str) {
    let messages = world::notifications(aws, &world.subscriber_queue_url, 1, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(messages.len(), 1, "{messages:?}");
    let m = &messages[0];
    assert_eq!(m["attributes"]["status"], "FAILED", "{m}");
    let failure = &m["message"]["failure"];
    assert_eq!(failure["step"], step, "{m}");
    assert_eq!(failure["error"], "AccessDenied", "{m}");
    let cause = failure["cause"].as_str().unwrap_or_default();
    let name = aws.resource(function).unwrap();
    assert!(cause.contains(action) && cause.contains(name), "{cause}");
    assert_eq!(m["message"]["amis"], json!([]), "nothing published");
}

#[tokio::test]
async fn start_build_without_reading_the_parent_ami_cannot_make_the_recipe() {
    let aws = without("StartBuildFunction", "RecipeParentImages", &[]).await;
    let (world, report) = bake(&aws).await;
    assert_eq!(report.status, "FAILED", "{report:#?}");
    let denied = assert_refused(&aws, "StartBuildFunction", "ec2:DescribeImages").await;
    assert_eq!(
        denied["becauseOf"], "imagebuilder:CreateImageRecipe",
        "a dependent action"
    );
    assert_failed_notification(&aws, &world, "StartBuild", "StartBuildFunction", "ec2:DescribeImages").await;
}

#[tokio::test]
async fn build_watch_without_the_ledger_cannot_wait_for_the_build() {
    let aws = without("BuildWatchFunction", "Ledger", &[]).await;
    let (world, report) = bake(&aws).await;
    assert_eq!(report.status, "FAILED", "{report:#?}");
    assert_refused(&aws, "BuildWatchFunction", "dynamodb:PutItem").await;
    assert_failed_notification(&aws, &world, "WaitForBuild", "BuildWatchFunction", "dynamodb:PutItem").await;
}

#[tokio::test]
async fn gate_without_reading_the_build_cannot_judge_it() {
    let aws = without("GateFunction", "ReadBuilds", &[]).await;
    let (world, report) = bake(&aws).await;
    assert_eq!(report.status, "FAILED", "{report:#?}");
    assert_refused(&aws, "GateFunction", "imagebuilder:GetImage").await;
    assert_failed_notification(&aws, &world, "Gate", "GateFunction", "imagebuilder:GetImage").await;
}

#[tokio::test]
async fn publish_region_without_copying_publishes_nothing() {
    let aws = without("PublishRegionFunction", "CopyImages", &[]).await;
    let (world, report) = bake(&aws).await;
    assert_eq!(report.status, "FAILED", "{report:#?}");
    assert_refused(&aws, "PublishRegionFunction", "ec2:CopyImage").await;
    assert_failed_notification(&aws, &world, "Publish", "PublishRegionFunction", "ec2:CopyImage").await;
    for region in world::REGIONS {
        assert_eq!(
            world::parameter(&aws, region, "/bakery/web/latest").await.unwrap(),
            None
        );
    }
}

/// Announce is what notifies: refused sns:Publish, it can tell no one, and the execution itself
/// fails with the refusal.
#[tokio::test]
async fn announce_without_publishing_fails_the_execution_with_the_refusal() {
    let aws = without("AnnounceFunction", "SNSPublishMessagePolicy", &[]).await;
    let (world, report) = bake(&aws).await;
    assert_eq!(report.status, "FAILED", "{report:#?}");
    assert_refused(&aws, "AnnounceFunction", "sns:Publish").await;
    let sfn = aws_sdk_sfn::Client::new(&aws.sdk_config(&aws.region).await);
    let described = sfn
        .describe_execution()
        .execution_arn(&report.execution_arn)
        .send()
        .await
        .unwrap();
    let cause = described.cause().unwrap_or_default();
    assert!(
        cause.contains("AccessDenied")
            && cause.contains("sns:Publish")
            && cause.contains(aws.resource("AnnounceFunction").unwrap()),
        "{:?}: {cause}",
        described.error()
    );
    let messages = world::notifications(&aws, &world.subscriber_queue_url, 1, Duration::from_secs(3))
        .await
        .unwrap();
    assert!(messages.is_empty(), "{messages:?}");
}

/// build-events answers the wait; refused, the wait runs into its timeout and the status check
/// carries the bake on (slower, not lost).
#[tokio::test]
async fn build_events_refused_the_task_token_leaves_the_bake_to_the_status_check() {
    let aws = without("BuildEventsFunction", "AnswerTaskTokens", &[("BuildWaitSeconds", "3")]).await;
    let (_world, report) = bake(&aws).await;
    assert_eq!(report.status, "SUCCEEDED", "{report:#?}");
    assert_refused(&aws, "BuildEventsFunction", "states:SendTaskSuccess").await;
    assert!(
        report.timeline.iter().any(|s| s.state == "CheckBuild"),
        "the status check answered: {report:#?}"
    );
}

/// The trigger cannot read the bake policies: the release starts nothing, and after Lambda's
/// retries the event waits in the dead-letter queue with the refusal.
#[tokio::test]
async fn the_trigger_without_reading_the_policies_dead_letters_the_release() {
    let soe = format!("arn:aws:sns:us-east-1:123456789012:{}", world::SOE_TOPIC);
    let aws = without("TriggerFunction", "ReadBakePolicies", &[("SoeReleaseTopicArn", &soe)]).await;
    let topic = world::create_soe_topic(&aws).await.unwrap();
    let base = world::register_ami(&aws, "soe-al2023-2026.11.1").await.unwrap();
    world::seed_on(&aws, "web", &base, json!({"snsTopics": [topic]}))
        .await
        .unwrap();
    let release = world::register_ami(&aws, "soe-al2023-2026.11.2").await.unwrap();
    world::publish_release(&aws, &topic, "2026.11.2", &[("us-east-1", &release)])
        .await
        .unwrap();

    let sqs = aws_sdk_sqs::Client::new(&aws.sdk_config(&aws.region).await);
    let queue = aws.resource("TriggerDeadLetterQueue").unwrap().to_owned();
    let letter = eventually("the dead letter", Duration::from_secs(30), || async {
        sqs.receive_message()
            .queue_url(&queue)
            .message_attribute_names("All")
            .send()
            .await
            .ok()?
            .messages?
            .into_iter()
            .next()
    })
    .await;
    let attribute = |k: &str| {
        letter
            .message_attributes()
            .and_then(|a| a.get(k))
            .and_then(|v| v.string_value())
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(attribute("ErrorType"), "AccessDenied");
    let message = attribute("ErrorMessage");
    assert!(
        message.contains("ssm:GetParametersByPath") && message.contains(aws.resource("TriggerFunction").unwrap()),
        "{message}"
    );
    assert_refused(&aws, "TriggerFunction", "ssm:GetParametersByPath").await;
    assert!(world::executions(&aws).await.unwrap().is_empty(), "nothing started");
}

/// Whether `role` (a template logical id) may make `operation` on `image_id` in `region`, as
/// IAM decides it for the function's session.
async fn may(aws: &LocalAws, role: &str, operation: &str, region: &str, image_id: &str) -> bool {
    use gateway::iam::requests::{needs, Call};
    let role_arn = format!("arn:aws:iam::{}:role/{}", aws.account, aws.resource(role).unwrap());
    let who = aws.gateway.iam.session(&role_arn, "probe", None);
    let call = Call {
        service: "ec2".into(),
        operation: operation.into(),
        region: region.into(),
        account: aws.account.clone(),
        form: [("ImageId".to_owned(), image_id.to_owned())].into(),
        ..Default::default()
    };
    let needs = needs(&call, &aws.gateway.iam.data).unwrap();
    aws.gateway.iam.authorize(&who, region, &needs).await.is_ok()
}

async fn tag(aws: &LocalAws, region: &str, image_id: &str, key: &str, value: &str) {
    aws_sdk_ec2::Client::new(&aws.sdk_config(region).await)
        .create_tags()
        .resources(image_id)
        .tags(aws_sdk_ec2::types::Tag::builder().key(key).value(value).build())
        .send()
        .await
        .unwrap();
}

/// Tag before you share: publish-region may share only an image this stack's bakes tagged, in a
/// publish region; the gate may deregister only what this stack's bakes quarantined.
#[tokio::test]
async fn sharing_and_deregistering_need_this_stacks_tags_and_a_publish_region() {
    let aws = tests::local_aws_with(&[("PublishRegions", "us-east-1,eu-west-1")]).await;
    let image = world::register_ami(&aws, "someone-elses-image").await.unwrap();
    let ours = format!(
        "arn:aws:states:us-east-1:{}:execution:{}-bake:web-1",
        aws.account, aws.names.stack
    );
    let share = |aws, region, image| may(aws, "PublishRegionFunctionRole", "ModifyImageAttribute", region, image);
    let deregister = |aws, region, image| may(aws, "GateFunctionRole", "DeregisterImage", region, image);

    assert!(
        !share(&aws, "us-east-1", &image).await,
        "an untagged image is not shared"
    );
    tag(
        &aws,
        "us-east-1",
        &image,
        "bakery:execution",
        "arn:aws:states:us-east-1:1:execution:other-bake:x",
    )
    .await;
    assert!(
        !share(&aws, "us-east-1", &image).await,
        "nor one another stack's bake tagged"
    );
    tag(&aws, "us-east-1", &image, "bakery:execution", &ours).await;
    assert!(
        share(&aws, "us-east-1", &image).await,
        "one this stack's bake tagged is"
    );

    assert!(
        !deregister(&aws, "us-east-1", &image).await,
        "a tagged image is not quarantined"
    );
    tag(&aws, "us-east-1", &image, "bakery:quarantined", "true").await;
    assert!(deregister(&aws, "us-east-1", &image).await, "a quarantined one may go");

    let sdk = aws.sdk_config("ap-southeast-2").await;
    let elsewhere = gateway::world::register_ami_with(&aws_sdk_ec2::Client::new(&sdk), "far-image")
        .await
        .unwrap();
    tag(&aws, "ap-southeast-2", &elsewhere, "bakery:execution", &ours).await;
    assert!(
        !share(&aws, "ap-southeast-2", &elsewhere).await,
        "ap-southeast-2 is not among PublishRegions"
    );
}

/// What build-events cannot answer (here: the ledger refuses its DeleteItem three times) goes,
/// after Lambda's retries, to its dead-letter queue, which Lambda sends to with the function's
/// role; the wait's timeout and the status check carry the bake on.
#[tokio::test]
async fn a_build_event_that_cannot_be_answered_waits_in_the_dead_letter_queue() {
    let aws = tests::local_aws_with(&[
        ("BuildWaitSeconds", "3"),
        ("BusyRetrySeconds", "1"),
        ("CopyPollSeconds", "1"),
    ])
    .await;
    // Only build-events' DeleteItem fails: build-watch claims the token with a DeleteItem too
    // when it finds the build already ended. The build lasts 2 s, so the wait is registered
    // before it ends (a busy machine could otherwise let the build end first, and build-watch
    // would answer the wait itself).
    aws.admin()
        .set_phase_durations(Duration::from_millis(500))
        .await
        .unwrap();
    let build_events = aws.resource("BuildEventsFunction").unwrap().to_owned();
    aws.admin()
        .fail_calls_from(&build_events, "dynamodb", "DeleteItem", 3, "ValidationException")
        .await
        .unwrap();
    let (_world, report) = bake(&aws).await;
    assert_eq!(report.status, "SUCCEEDED", "{report:#?}");
    assert!(report.timeline.iter().any(|s| s.state == "CheckBuild"), "{report:#?}");

    let sqs = aws_sdk_sqs::Client::new(&aws.sdk_config(&aws.region).await);
    let queue = aws.resource("BuildEventsDeadLetterQueue").unwrap().to_owned();
    let letter = eventually("the dead letter", Duration::from_secs(20), || async {
        sqs.receive_message()
            .queue_url(&queue)
            .message_attribute_names("All")
            .send()
            .await
            .ok()?
            .messages?
            .into_iter()
            .next()
    })
    .await;
    let event: Value = serde_json::from_str(letter.body().unwrap()).unwrap();
    assert_eq!(event["detail-type"], "EC2 Image Builder Image State Change");
    // All three refusals went to build-events: its first attempt and Lambda's two retries.
    let knobs = aws.admin().throttles().await.unwrap();
    let delete = knobs.iter().find(|k| k["operation"] == "DeleteItem");
    assert!(
        delete.is_some_and(|k| k["remaining"] == 0 && k["function"] == build_events.as_str()),
        "{knobs:?}"
    );
    let sent_by = build_events;
    let decisions = aws.admin().authorizations().await.unwrap();
    assert!(
        decisions
            .iter()
            .any(|d| d["function"] == sent_by.as_str() && d["action"] == "sqs:SendMessage" && d["allowed"] == true),
        "Lambda sent it with the function's role"
    );
}
