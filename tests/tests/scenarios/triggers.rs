//! Triggers on the local AWS: an SOE release published on its SNS topic ripples through every
//! pipeline whose policy follows it, once, whatever the redeliveries; untrusted and look-alike
//! AMIs start nothing; schedules bake only on a new base; a downstream pipeline builds on its
//! upstream's publication; a fan-out of 200 survives throttling; what cannot start waits in the
//! dead-letter queue and replays. Each test checks the executions that exist afterwards.

use aws_sdk_lambda::primitives::Blob;
use gateway::world::{self, Execution, World};
use gateway::LocalAws;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tests::{eventually, local_aws_with};

const SETTLE: Duration = Duration::from_secs(60);

async fn aws() -> LocalAws {
    let soe = format!("arn:aws:sns:us-east-1:123456789012:{}", world::SOE_TOPIC);
    local_aws_with(&[
        ("SoeReleaseTopicArn", &soe),
        ("BuildWaitSeconds", "20"),
        ("BusyRetrySeconds", "1"),
        ("CopyPollSeconds", "1"),
    ])
    .await
}

/// The SOE team's topic and the base AMI every pipeline starts on.
async fn soe(aws: &LocalAws) -> (String, String) {
    let topic = world::create_soe_topic(aws).await.unwrap();
    let base = world::register_ami(aws, "soe-al2023-2026.11.1").await.unwrap();
    (topic, base)
}

/// The SOE team releases `version`: a new AMI, announced on the topic.
async fn soe_release(aws: &LocalAws, topic: &str, version: &str) -> String {
    let ami = world::register_ami(aws, &format!("soe-al2023-{version}"))
        .await
        .unwrap();
    world::publish_release(aws, topic, version, &[("us-east-1", &ami)])
        .await
        .unwrap();
    ami
}

fn soe_sources(aws: &LocalAws) -> Value {
    json!({"snsTopics": [world::soe_topic_arn(aws)]})
}

/// Executions of the bake state machine, once `want` of them exist.
async fn executions(aws: &LocalAws, want: usize) -> Vec<Execution> {
    eventually(&format!("{want} bake execution(s)"), SETTLE, || async {
        let all = world::executions(aws).await.ok()?;
        (all.len() >= want).then_some(all)
    })
    .await
}

/// The trigger's completed invocations (asynchronous ones, as the gateway logs them), but for
/// the service events the world's own images and parameters put on the bus (AMI State Change,
/// Image Builder, Parameter Store Change).
async fn trigger_results(aws: &LocalAws, want: usize) -> Vec<Value> {
    let function = aws.resource("TriggerFunction").unwrap().to_owned();
    eventually(&format!("{want} trigger invocation(s)"), SETTLE, || async {
        let all: Vec<Value> = aws
            .admin()
            .invocations()
            .await
            .ok()?
            .into_iter()
            .filter(|i| i["function"] == function.as_str() && i["status"] == "success")
            .filter(|i| {
                !matches!(
                    i["request"]["source"].as_str(),
                    Some("aws.ec2" | "aws.imagebuilder" | "aws.ssm")
                )
            })
            .map(|i| i["response"].clone())
            .collect();
        (all.len() >= want).then_some(all)
    })
    .await
}

/// Invokes the trigger and waits for its answer (what a redelivery of `payload` does).
async fn invoke_trigger(aws: &LocalAws, payload: &Value) -> Value {
    let lambda = aws_sdk_lambda::Client::new(&aws.sdk_config(&aws.region).await);
    let out = lambda
        .invoke()
        .function_name(aws.resource("TriggerFunction").unwrap())
        .payload(Blob::new(payload.to_string()))
        .send()
        .await
        .unwrap();
    let body: Value = serde_json::from_slice(out.payload.unwrap().as_ref()).unwrap();
    assert_eq!(out.function_error, None, "the trigger failed: {body}");
    body
}

/// Lambda's SNS event for one message on `topic`, as the subscription delivers it.
fn sns_event(topic: &str, message_id: &str, message: &Value) -> Value {
    json!({"Records": [{
        "EventSource": "aws:sns", "EventVersion": "1.0",
        "EventSubscriptionArn": format!("{topic}:0c1f7c5e-5a0e-4a47-9d1a-8e8d2c3b4a5f"),
        "Sns": {
            "Type": "Notification", "MessageId": message_id, "TopicArn": topic, "Subject": null,
            "Message": message.to_string(),
            "Timestamp": "2026-11-26T09:30:00.000Z", "SignatureVersion": "1", "Signature": "EXAMPLE",
            "SigningCertUrl": "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-example.pem",
            "UnsubscribeUrl": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe", "MessageAttributes": {}
        }
    }]})
}

fn pipeline_of(e: &Execution) -> &str {
    e.input["pipelineArn"].as_str().unwrap().rsplit('/').next().unwrap()
}

/// Replaces a seeded pipeline's policy with `change` applied.
async fn amend_policy(aws: &LocalAws, world: &World, change: impl FnOnce(&mut Value)) {
    let mut policy = world.policy.clone();
    change(&mut policy);
    world::put_policy(aws, &world.pipeline_name, &policy).await.unwrap();
}

#[tokio::test]
async fn a_release_bakes_each_subscribed_pipeline_once_however_often_it_arrives() {
    let aws = aws().await;
    let (topic, base) = soe(&aws).await;
    for name in ["web", "api"] {
        world::seed_on(&aws, name, &base, soe_sources(&aws)).await.unwrap();
    }
    let other_topic = json!({"snsTopics": [format!("arn:aws:sns:us-east-1:{}:other-releases", aws.account)]});
    world::seed_on(&aws, "batch", &base, other_topic).await.unwrap();

    let release = soe_release(&aws, &topic, "2026.11.2").await;
    let first = executions(&aws, 2).await;

    // The same SNS delivery again, three times (Lambda's SNS event, as a redelivery carries it),
    // and the same release published a second time (a new MessageId, the same AMI).
    let delivered = trigger_results(&aws, 1).await;
    let message_id = delivered[0]["trigger"]["eventId"].as_str().unwrap().to_owned();
    let release_message = json!({"release": "2026.11.2", "accountId": aws.account, "amis": {"us-east-1": release}});
    let event = sns_event(&topic, &message_id, &release_message);
    for _ in 0..3 {
        let out = invoke_trigger(&aws, &event).await;
        let started = out["started"].as_array().unwrap();
        // Step Functions answers a start with the same name and input as a running execution
        // with that execution; an ended one, or other input, is ExecutionAlreadyExists.
        assert_eq!(started.len(), 2, "{out}");
        for s in started {
            assert!(first.iter().any(|e| e.execution_arn == s["executionArn"]), "{out}");
        }
    }
    world::publish_release(&aws, &topic, "2026.11.2", &[("us-east-1", &release)])
        .await
        .unwrap();
    trigger_results(&aws, 2).await;

    let all = world::executions(&aws).await.unwrap();
    assert_eq!(all.len(), 2, "one bake per subscribed pipeline: {all:?}");
    assert_eq!(first.len(), 2);
    let mut pipelines: Vec<&str> = all.iter().map(pipeline_of).collect();
    pipelines.sort();
    assert_eq!(pipelines, ["api", "web"], "batch follows another topic");
    for e in &all {
        assert_eq!(e.input["sourceAmi"]["imageId"], release.as_str());
        assert_eq!(e.input["trigger"], "soeRelease");
    }
}

#[tokio::test]
async fn an_untrusted_owner_starts_nothing() {
    let aws = aws().await;
    let (topic, base) = soe(&aws).await;
    let web = world::seed_on(&aws, "web", &base, soe_sources(&aws)).await.unwrap();
    // The policy trusts only the SOE account 111122223333; the released AMI is owned by another.
    amend_policy(&aws, &web, |p| p["trustedOwners"] = json!(["111122223333"])).await;

    let release = soe_release(&aws, &topic, "2026.11.2").await;
    let out = &trigger_results(&aws, 1).await[0];
    let refused = out["refused"].as_array().unwrap();
    assert_eq!(refused.len(), 1, "{out}");
    assert_eq!(refused[0]["errorType"], "SourceNotTrusted");
    assert_eq!(refused[0]["imageId"], release.as_str());
    assert!(out["started"].as_array().unwrap().is_empty());
    assert!(world::executions(&aws).await.unwrap().is_empty(), "nothing started");
}

/// Clients acting for another account (moto keys its resources by the caller's account).
async fn attacker_ec2(aws: &LocalAws, account: &str) -> aws_sdk_ec2::Client {
    aws_sdk_ec2::Client::new(&tests::account_sdk(aws, account, &aws.region).await)
}

/// An AMI registered in `account` (a real second account: STS AssumeRole) and launchable by
/// `with`: everyone (public), or one account.
async fn ami_of(aws: &LocalAws, account: &str, name: &str, with: aws_sdk_ec2::types::LaunchPermission) -> String {
    let ec2 = attacker_ec2(aws, account).await;
    let id = world::register_ami_with(&ec2, name).await.unwrap();
    ec2.modify_image_attribute()
        .image_id(&id)
        .launch_permission(
            aws_sdk_ec2::types::LaunchPermissionModifications::builder()
                .add(with)
                .build(),
        )
        .send()
        .await
        .unwrap();
    id
}

async fn public_ami(aws: &LocalAws, account: &str, name: &str) -> String {
    let everyone = aws_sdk_ec2::types::LaunchPermission::builder()
        .group(aws_sdk_ec2::types::PermissionGroup::All)
        .build();
    ami_of(aws, account, name, everyone).await
}

/// An AMI of `account` shared with this stack's account.
async fn shared_ami(aws: &LocalAws, account: &str, name: &str) -> String {
    let us = aws_sdk_ec2::types::LaunchPermission::builder()
        .user_id(&aws.account)
        .build();
    ami_of(aws, account, name, us).await
}

/// Both owners are trusted, but the release says the AMI is the SOE account's while EC2 says
/// it is the partner's: the claimed owner and the real one differ, and nothing starts.
#[tokio::test]
async fn a_release_claiming_another_owner_than_ec2_reports_is_refused() {
    let aws = aws().await;
    let (topic, base) = soe(&aws).await;
    let partner = "555566667777";
    let mut sources = soe_sources(&aws);
    sources["amis"] = json!([]);
    let world = world::seed_on(&aws, "web", &base, sources).await.unwrap();
    amend_policy(&aws, &world, |p| p["trustedOwners"] = json!([aws.account, partner])).await;

    let theirs = public_ami(&aws, partner, "soe-al2023-2026.11.2").await;
    // The release message (accountId: this account) names the partner's image.
    world::publish_release(&aws, &topic, "2026.11.2", &[("us-east-1", &theirs)])
        .await
        .unwrap();
    let out = &trigger_results(&aws, 1).await[0];
    assert_eq!(out["refused"][0]["imageId"], theirs.as_str(), "{out}");
    assert_eq!(out["refused"][0]["errorType"], "SourceNotTrusted", "{out}");
    let reason = out["refused"][0]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains(&format!(
            "announced as owned by {} but is owned by {partner}",
            aws.account
        )),
        "refused by the owner comparison: {out}"
    );
    assert!(world::executions(&aws).await.unwrap().is_empty(), "nothing started");
}

#[tokio::test]
async fn an_attacker_ami_with_the_trusted_name_is_never_chosen() {
    let aws = aws().await;
    let (topic, base) = soe(&aws).await;
    let family = json!({
        "snsTopics": [world::soe_topic_arn(&aws)],
        "amis": [{"owner": aws.account, "namePattern": "soe-al2023-*"}],
        "schedules": [{"name": "bakery-nightly", "rebuild": "ifBaseChanged"}]
    });
    world::seed_on(&aws, "web", &base, family).await.unwrap();

    // The attacker's copy of the SOE name, newer than any real release, made public in their
    // own account: the whoAMI trap. A lookup by name alone finds it.
    let attacker = "444455556666";
    let evil = public_ami(&aws, attacker, "soe-al2023-2026.12.9").await;
    let ours = aws_sdk_ec2::Client::new(&aws.sdk_config(&aws.region).await);
    let by_name = ours
        .describe_images()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("name")
                .values("soe-al2023-*")
                .build(),
        )
        .send()
        .await
        .unwrap();
    let evil_seen = by_name.images().iter().find(|i| i.image_id() == Some(evil.as_str()));
    assert_eq!(
        evil_seen.and_then(|i| i.owner_id()),
        Some(attacker),
        "the public look-alike is visible here, as on AWS, and not ours"
    );

    // 1. A release message naming the attacker's AMI and claiming the trusted account.
    world::publish_release(&aws, &topic, "2026.12.9", &[("us-east-1", &evil)])
        .await
        .unwrap();
    let out = &trigger_results(&aws, 1).await[0];
    assert_eq!(out["refused"][0]["imageId"], evil.as_str(), "{out}");
    // 2. Its "EC2 AMI State Change", as if it reached this account's bus.
    let detail_event = json!({
        "version": "0", "id": "7f2b1c1e-0d6e-4f5a-9c3b-2a1d0e9f8c7b", "detail-type": "EC2 AMI State Change",
        "source": "aws.ec2", "account": attacker, "time": "2026-11-26T10:00:00Z", "region": "us-east-1",
        "resources": [format!("arn:aws:ec2:us-east-1::image/{evil}")],
        "detail": {"RequestId": "3b2a1c0d-9e8f-4a7b-8c6d-5e4f3a2b1c0d", "ImageId": evil, "State": "available", "ErrorMessage": ""}
    });
    let out = invoke_trigger(&aws, &detail_event).await;
    assert!(out["started"].as_array().unwrap().is_empty(), "{out}");
    // 3. The nightly schedule picks the newest base by owner and name: a new trusted release
    //    is chosen, the attacker's newer look-alike never.
    let trusted = world::register_ami(&aws, "soe-al2023-2026.11.2").await.unwrap();
    aws.admin().fire_schedule("bakery-nightly").await.unwrap();
    let all = executions(&aws, 1).await;
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0].input["sourceAmi"]["imageId"], trusted.as_str());
    assert!(all.iter().all(|e| e.input["sourceAmi"]["imageId"] != evil.as_str()));
}

#[tokio::test]
/// The SOE team's account shares its AMIs with this one. Their AMI State Change events stay on
/// their account's bus: the nightly schedule is how this stack learns of a new base.
async fn a_schedule_bakes_only_when_the_base_changed() {
    let aws = aws().await;
    let soe_account = "777788889999";
    let base = shared_ami(&aws, soe_account, "soe-al2023-2026.11.1").await;
    let nightly = json!({
        "amis": [{"owner": soe_account, "namePattern": "soe-al2023-*"}],
        "schedules": [{"name": "bakery-nightly", "rebuild": "ifBaseChanged"}]
    });
    let world = world::seed_on(&aws, "web", &base, nightly).await.unwrap();
    amend_policy(&aws, &world, |p| p["trustedOwners"] = json!([soe_account])).await;

    // The recipe is built on the newest base already: nothing to do.
    aws.admin().fire_schedule("bakery-nightly").await.unwrap();
    let out = &trigger_results(&aws, 1).await[0];
    assert!(out["started"].as_array().unwrap().is_empty(), "{out}");
    assert!(out["skipped"][0]["reason"].as_str().unwrap().contains(&base), "{out}");
    assert!(world::executions(&aws).await.unwrap().is_empty());

    // A new base: the next firing bakes on it.
    let newer = shared_ami(&aws, soe_account, "soe-al2023-2026.11.2").await;
    aws.admin().fire_schedule("bakery-nightly").await.unwrap();
    let all = executions(&aws, 1).await;
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].input["sourceAmi"]["imageId"], newer.as_str());
    assert_eq!(all[0].input["trigger"], "schedule");

    // Once that bake is published, the ledger holds its base: the next firing finds nothing new.
    let report = world::wait(&aws, &all[0].execution_arn, &newer, Instant::now(), SETTLE)
        .await
        .unwrap();
    assert_eq!(report.status, "SUCCEEDED");
    aws.admin().fire_schedule("bakery-nightly").await.unwrap();
    // The build's own state change and the publication reach the trigger too; the third
    // firing's result is the third with a schedule origin.
    let out = eventually("the third firing's result", SETTLE, || async {
        let firings: Vec<Value> = trigger_results(&aws, 1)
            .await
            .into_iter()
            .filter(|r| r["trigger"]["origin"]["kind"] == "schedule")
            .collect();
        firings.get(2).cloned()
    })
    .await;
    assert!(out["started"].as_array().unwrap().is_empty(), "{out}");
    let reason = out["skipped"][0]["reason"].as_str().unwrap();
    assert!(reason.contains(&newer) && reason.contains("last published"), "{reason}");
    assert_eq!(world::executions(&aws).await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_downstream_pipeline_bakes_on_its_upstream_publication_with_the_parent_chain() {
    let aws = aws().await;
    let (topic, base) = soe(&aws).await;
    let web = world::seed_on(&aws, "web", &base, soe_sources(&aws)).await.unwrap();
    let follows_web = json!({
        "snsTopics": [world::publication_topic(&aws).unwrap()],
        "upstreamPipelines": [web.pipeline_arn]
    });
    world::seed_on(&aws, "web-hardened", &base, follows_web).await.unwrap();

    let release = soe_release(&aws, &topic, "2026.11.2").await;
    let all = eventually("both bakes to end", Duration::from_secs(120), || async {
        let all = world::executions(&aws).await.ok()?;
        (all.len() == 2 && all.iter().all(|e| e.status != "RUNNING")).then_some(all)
    })
    .await;
    let (up, down) = (&all[0], &all[1]);
    assert_eq!(pipeline_of(up), "web");
    assert_eq!(pipeline_of(down), "web-hardened");
    assert_eq!(up.status, "SUCCEEDED");
    assert_eq!(down.status, "SUCCEEDED");

    let report = world::wait(&aws, &up.execution_arn, &release, Instant::now(), SETTLE)
        .await
        .unwrap();
    let web_ami = report.output["published"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["region"] == "us-east-1")
        .unwrap()["imageId"]
        .clone();
    assert_eq!(
        down.input["sourceAmi"]["imageId"], web_ami,
        "built on web's published AMI"
    );
    assert_eq!(
        down.input["parentChain"],
        json!([release]),
        "the SOE AMI is its grandparent"
    );
    assert_eq!(down.input["trigger"], "bakeryPublication");

    // The downstream AMI carries the whole chain in its lineage tags.
    let down_report = world::wait(&aws, &down.execution_arn, "", Instant::now(), SETTLE)
        .await
        .unwrap();
    let image = down_report.output["published"][0]["imageId"]
        .as_str()
        .unwrap()
        .to_owned();
    let region = down_report.output["published"][0]["region"]
        .as_str()
        .unwrap()
        .to_owned();
    let ec2 = aws_sdk_ec2::Client::new(&aws.sdk_config(&region).await);
    let described = ec2.describe_images().image_ids(&image).send().await.unwrap();
    let tags = described.images()[0].tags();
    let tag = |key: &str| {
        tags.iter()
            .find(|t| t.key() == Some(key))
            .and_then(|t| t.value())
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(tag("bakery:source-ami"), web_ami.as_str().unwrap());
    assert_eq!(tag("bakery:parent-chain"), release, "the SOE AMI, one generation up");
}

#[tokio::test]
async fn two_hundred_pipelines_start_despite_throttling_and_none_is_lost() {
    let aws = aws().await;
    let release = world::register_ami(&aws, "soe-al2023-2026.11.2").await.unwrap();
    let topic = world::publication_topic(&aws).unwrap();
    for i in 0..200 {
        let name = format!("app-{i:03}");
        let arn = format!("arn:aws:imagebuilder:us-east-1:{}:image-pipeline/{name}", aws.account);
        let policy = world::policy(&aws, &arn, &name, &topic);
        world::put_policy(&aws, &name, &policy).await.unwrap();
    }
    aws.admin().throttle("states", "StartExecution", 150).await.unwrap();

    let release_message = json!({"release": "2026.11.2", "accountId": aws.account, "amis": {"us-east-1": release}});
    let event = sns_event(
        &world::soe_topic_arn(&aws),
        "b6c9e2a0-1d3f-5a7b-9c8d-0e1f2a3b4c5d",
        &release_message,
    );
    let started_at = Instant::now();
    let out = invoke_trigger(&aws, &event).await;
    let took = started_at.elapsed();
    println!("fan-out: 200 pipelines, 150 throttled StartExecution calls: {took:?}");
    assert_eq!(out["started"].as_array().unwrap().len(), 200, "{}", out["refused"]);
    let throttles = aws.admin().throttles().await.unwrap();
    assert!(
        throttles
            .iter()
            .any(|t| t["operation"] == "StartExecution" && t["remaining"] == 0),
        "every injected throttle was met: {throttles:?}"
    );

    let all = world::executions(&aws).await.unwrap();
    let mut names: Vec<&str> = all.iter().map(pipeline_of).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 200, "one execution per pipeline, none lost");
    assert_eq!(all.len(), 200, "and none twice");
}

#[tokio::test]
async fn what_cannot_start_waits_in_the_dead_letter_queue_and_replays() {
    let aws = aws().await;
    let (topic, base) = soe(&aws).await;
    world::seed_on(&aws, "web", &base, soe_sources(&aws)).await.unwrap();
    // Step Functions refuses every start of the first invocation and Lambda's two retries.
    aws.admin()
        .fail_calls("states", "StartExecution", 3, "AccessDeniedException")
        .await
        .unwrap();

    let release = soe_release(&aws, &topic, "2026.11.2").await;
    let queue_url = aws.resource("TriggerDeadLetterQueue").unwrap().to_owned();
    let sqs = aws_sdk_sqs::Client::new(&aws.sdk_config(&aws.region).await);
    eventually("the event in the dead-letter queue", SETTLE, || async {
        let attrs = sqs
            .get_queue_attributes()
            .queue_url(&queue_url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
            .send()
            .await
            .ok()?;
        let n = attrs
            .attributes()?
            .get(&aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)?
            .parse::<u32>()
            .ok()?;
        (n == 1).then_some(())
    })
    .await;
    assert!(world::executions(&aws).await.unwrap().is_empty(), "nothing started yet");

    // The operator replays the dead-letter queue.
    let bakery = tests::repo().join("target/debug/bakery");
    let out = tokio::process::Command::new(bakery)
        .args(["replay", "--queue-url", &queue_url, "--function"])
        .arg(aws.resource("TriggerFunction").unwrap())
        .envs(aws.env())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("replayed: 1 started"), "{stdout}");

    let all = executions(&aws, 1).await;
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].input["sourceAmi"]["imageId"], release.as_str());
    let left = sqs
        .receive_message()
        .queue_url(&queue_url)
        .wait_time_seconds(0)
        .send()
        .await
        .unwrap();
    assert!(left.messages().is_empty(), "the replayed message is gone");
}

#[tokio::test]
async fn an_image_the_allowed_amis_setting_refuses_starts_nothing() {
    let aws = aws().await;
    let (topic, base) = soe(&aws).await;
    world::seed_on(&aws, "web", &base, soe_sources(&aws)).await.unwrap();
    // The account allows only images of another provider.
    aws.admin()
        .set_allowed_images("enabled", &["111122223333"])
        .await
        .unwrap();

    let release = soe_release(&aws, &topic, "2026.11.2").await;
    let out = &trigger_results(&aws, 1).await[0];
    assert_eq!(out["refused"][0]["errorType"], "ImageNotAllowed", "{out}");
    assert_eq!(out["refused"][0]["imageId"], release.as_str());
    assert!(world::executions(&aws).await.unwrap().is_empty());

    // In audit mode the same image is only logged, and baked.
    aws.admin()
        .set_allowed_images("audit-mode", &["111122223333"])
        .await
        .unwrap();
    let newer = soe_release(&aws, &topic, "2026.11.3").await;
    let all = executions(&aws, 1).await;
    assert_eq!(all[0].input["sourceAmi"]["imageId"], newer.as_str());
}

#[tokio::test]
async fn a_base_parameter_update_bakes_the_pipelines_that_follow_it() {
    let soe = format!("arn:aws:sns:us-east-1:123456789012:{}", world::SOE_TOPIC);
    let aws = local_aws_with(&[("SoeReleaseTopicArn", &soe), ("WatchedParameterPrefix", "/soe/")]).await;
    let base = world::register_ami(&aws, "soe-al2023-2026.11.1").await.unwrap();
    let name = "/soe/al2023/latest";
    world::seed_on(&aws, "web", &base, json!({"ssmParameters": [name]}))
        .await
        .unwrap();
    let release = world::register_ami(&aws, "soe-al2023-2026.11.2").await.unwrap();
    let sdk = aws.sdk_config(&aws.region).await;
    for (parameter, value) in [(name, release.as_str()), ("/elsewhere/al2023/latest", base.as_str())] {
        aws_sdk_ssm::Client::new(&sdk)
            .put_parameter()
            .name(parameter)
            .value(value)
            .r#type(aws_sdk_ssm::types::ParameterType::String)
            .send()
            .await
            .unwrap();
        // Parameter Store itself puts the Parameter Store Change on the bus.
    }
    let all = executions(&aws, 1).await;
    assert_eq!(
        all[0].input["sourceAmi"]["imageId"],
        release.as_str(),
        "the value read now"
    );
    assert_eq!(all[0].input["trigger"], "parameterChange");
    // Both changes were on the bus; only the watched path's reached the trigger. (The bake it
    // started puts Image Builder events on the same bus, and its publication comes back to the
    // trigger over SNS: count only what concerns Parameter Store.)
    let ssm_events = aws.admin().events().await.unwrap();
    let ssm_events = ssm_events
        .iter()
        .filter(|e| {
            e["source"] == "aws.ssm"
                && [name, "/elsewhere/al2023/latest"].contains(&e["detail"]["name"].as_str().unwrap_or_default())
        })
        .count();
    assert_eq!(ssm_events, 2, "Parameter Store told the bus of both changes");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let trigger = aws.resource("TriggerFunction").unwrap().to_owned();
    let requests: Vec<Value> = aws
        .admin()
        .invocations()
        .await
        .unwrap()
        .into_iter()
        .filter(|i| i["function"] == trigger.as_str() && i["request"]["source"] == "aws.ssm")
        .map(|i| i["request"]["detail"]["name"].clone())
        .collect();
    assert_eq!(requests, [json!(name)]);
}

#[tokio::test]
async fn a_downstream_bakery_rebuilds_when_the_upstream_bakery_publishes() {
    // This stack follows another Bakery's publication topic (UpstreamBakeryTopicArn).
    let upstream_topic = "arn:aws:sns:us-east-1:123456789012:upstream-bakery-publications".to_owned();
    let aws = local_aws_with(&[("UpstreamBakeryTopicArn", &upstream_topic), ("ChainPipelines", "false")]).await;
    let sdk = aws.sdk_config(&aws.region).await;
    let sns = aws_sdk_sns::Client::new(&sdk);
    sns.create_topic()
        .name("upstream-bakery-publications")
        .send()
        .await
        .unwrap();
    let base = world::register_ami(&aws, "soe-hardened-2026.11.1").await.unwrap();
    world::seed_on(&aws, "app", &base, json!({"snsTopics": [upstream_topic]}))
        .await
        .unwrap();

    // The upstream Bakery announces its new AMI (shared with this account), built on an SOE AMI
    // that was itself built on another.
    let upstream_ami = world::register_ami(&aws, "soe-hardened-2026.11.2").await.unwrap();
    let publish = |status: &'static str| {
        let message = json!({
            "schema": "bakery.publication/v1", "status": status, "accountId": aws.account,
            "pipeline": {"arn": "arn:aws:imagebuilder:us-east-1:123456789012:image-pipeline/soe-hardened", "name": "soe-hardened"},
            "executionArn": "arn:aws:states:us-east-1:123456789012:execution:upstream-bake:soe-hardened-1",
            "amis": [{"region": "us-east-1", "imageId": upstream_ami}, {"region": "eu-west-1", "imageId": "ami-0fedcba9876543210"}],
            "lineage": {"parents": ["ami-0a1b2c3d4e5f67890", "ami-0123456789abcdef0"]}
        });
        let attribute = aws_sdk_sns::types::MessageAttributeValue::builder()
            .data_type("String")
            .string_value(status)
            .build()
            .unwrap();
        sns.publish()
            .topic_arn(&upstream_topic)
            .message(message.to_string())
            .message_attributes("status", attribute)
            .send()
    };
    // A FAILED publication does not even reach the trigger (the subscription's filter policy).
    publish("FAILED").await.unwrap();
    publish("PUBLISHED").await.unwrap();

    let all = executions(&aws, 1).await;
    assert_eq!(pipeline_of(&all[0]), "app");
    assert_eq!(all[0].input["sourceAmi"]["imageId"], upstream_ami.as_str());
    assert_eq!(
        all[0].input["parentChain"],
        json!(["ami-0a1b2c3d4e5f67890", "ami-0123456789abcdef0"]),
        "the upstream AMI's ancestry comes along"
    );
    assert_eq!(all[0].input["trigger"], "bakeryPublication");
    let deliveries = aws.admin().sns_deliveries().await.unwrap();
    let statuses: Vec<&str> = deliveries.iter().map(|d| d["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["filtered", "delivered"], "{deliveries:?}");
}

/// The trigger's log lines (JSON, one per line) that mention `needle`.
fn trigger_log_lines(aws: &LocalAws, needle: &str) -> Vec<Value> {
    let function = aws.resource("TriggerFunction").unwrap();
    let text = std::fs::read_to_string(aws.logs.join(format!("{function}.log"))).unwrap_or_default();
    text.lines()
        .filter(|l| l.contains(needle))
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The SOE team withdraws releases of its own (a trusted owner): one deprecated, one disabled.
/// Announced again, neither starts a bake, and each refusal is a security event in the log;
/// a release whose deprecation is still to come bakes.
#[tokio::test]
async fn a_deprecated_or_disabled_release_of_a_trusted_owner_starts_nothing() {
    let aws = aws().await;
    let (topic, base) = soe(&aws).await;
    world::seed_on(&aws, "web", &base, soe_sources(&aws)).await.unwrap();
    let ec2 = aws_sdk_ec2::Client::new(&aws.sdk_config(&aws.region).await);
    let in_secs = |secs: u64| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        aws_sdk_ec2::primitives::DateTime::from_secs((now.as_secs() + secs) as i64)
    };
    let deprecate = |image: String, at: aws_sdk_ec2::primitives::DateTime| {
        ec2.enable_image_deprecation().image_id(image).deprecate_at(at).send()
    };

    // Deprecated from a moment from now (EC2 refuses a time already past, and rounds it to the
    // nearest minute: early in a minute, that is the minute begun), then announced.
    let deprecated = world::register_ami(&aws, "soe-al2023-2026.11.2").await.unwrap();
    loop {
        let second = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            % 60;
        if second < 20 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    deprecate(deprecated.clone(), in_secs(2)).await.unwrap();
    let described = ec2.describe_images().image_ids(&deprecated).send().await.unwrap();
    assert!(
        described.images()[0].deprecation_time().is_some(),
        "DescribeImages shows the deprecation"
    );
    world::publish_release(&aws, &topic, "2026.11.2", &[("us-east-1", &deprecated)])
        .await
        .unwrap();
    let out = &trigger_results(&aws, 1).await[0];
    assert_eq!(out["refused"][0]["imageId"], deprecated.as_str(), "{out}");
    assert_eq!(out["refused"][0]["errorType"], "SourceDeprecated", "{out}");
    assert!(out["started"].as_array().unwrap().is_empty(), "{out}");

    // Disabled by its owner, then announced.
    let disabled = world::register_ami(&aws, "soe-al2023-2026.11.3").await.unwrap();
    ec2.disable_image().image_id(&disabled).send().await.unwrap();
    world::publish_release(&aws, &topic, "2026.11.3", &[("us-east-1", &disabled)])
        .await
        .unwrap();
    let out = &trigger_results(&aws, 2).await[1];
    assert_eq!(out["refused"][0]["imageId"], disabled.as_str(), "{out}");
    assert_eq!(out["refused"][0]["errorType"], "SourceDisabled", "{out}");
    assert!(world::executions(&aws).await.unwrap().is_empty(), "nothing started");

    for (image, error_type) in [(&deprecated, "SourceDeprecated"), (&disabled, "SourceDisabled")] {
        let events = trigger_log_lines(&aws, image);
        assert!(
            events.iter().any(|e| {
                let f = &e["fields"];
                f["security_event"] == "SourceAmiRefused"
                    && f["error_type"] == error_type
                    && f["image_id"] == image.as_str()
            }),
            "a security event for {image}: {events:?}"
        );
    }

    // A release that is to be deprecated next year is no reason to refuse it now.
    let current = world::register_ami(&aws, "soe-al2023-2026.11.4").await.unwrap();
    deprecate(current.clone(), in_secs(365 * 86_400)).await.unwrap();
    world::publish_release(&aws, &topic, "2026.11.4", &[("us-east-1", &current)])
        .await
        .unwrap();
    let all = executions(&aws, 1).await;
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].input["sourceAmi"]["imageId"], current.as_str());
}

/// Fires the nightly schedule and waits for the `n`-th bake execution to end.
async fn fire_and_finish(aws: &LocalAws, n: usize) -> world::BakeReport {
    aws.admin().fire_schedule("bakery-nightly").await.unwrap();
    let all = executions(aws, n).await;
    assert_eq!(all.len(), n, "one new execution: {all:?}");
    let last = &all[n - 1];
    let source = last.input["sourceAmi"]["imageId"].as_str().unwrap_or_default();
    world::wait(aws, &last.execution_arn, source, Instant::now(), SETTLE)
        .await
        .unwrap()
}

/// A flaky test phase fails a bake once: the next nightly firing bakes the same source again
/// under a new attempt name, and publishes. When every attempt the policy allows has failed,
/// the last one's notification says that nothing more will start, and the next firing starts
/// nothing.
#[tokio::test]
async fn a_failed_bake_is_baked_again_by_the_next_schedule_until_its_limit() {
    let aws = aws().await;
    // The SOE account shares its AMIs: their AMI State Changes stay on their own bus, so only
    // the schedule brings a new base here.
    let soe_account = "777788889999";
    let base = shared_ami(&aws, soe_account, "soe-al2023-2026.11.1").await;
    let nightly = json!({
        "amis": [{"owner": soe_account, "namePattern": "soe-al2023-*"}],
        "schedules": [{"name": "bakery-nightly", "rebuild": "ifBaseChanged"}]
    });
    let world = world::seed_on(&aws, "web", &base, nightly).await.unwrap();
    amend_policy(&aws, &world, |p| {
        p["trustedOwners"] = json!([soe_account]);
        p["rebake"] = json!({"maxAttempts": 2, "backoffSeconds": 0});
    })
    .await;
    let queue = &world.subscriber_queue_url;

    // 1. The test phase fails once; the next firing re-bakes and publishes.
    let newer = shared_ami(&aws, soe_account, "soe-al2023-2026.11.2").await;
    aws.admin().fail_next_build("TESTING", "flaky test").await.unwrap();
    let first = fire_and_finish(&aws, 1).await;
    assert_eq!(first.status, "FAILED");
    let failed = world::notifications(&aws, queue, 1, SETTLE).await.unwrap();
    assert_eq!(failed[0]["message"]["status"], "FAILED", "{failed:?}");
    assert_eq!(failed[0]["message"]["attempt"]["exhausted"], false, "{failed:?}");

    let second = fire_and_finish(&aws, 2).await;
    assert_eq!(second.status, "SUCCEEDED", "{:?}", second.output);
    let all = world::executions(&aws).await.unwrap();
    assert_eq!(all[1].input["sourceAmi"]["imageId"], newer.as_str());
    assert_eq!(all[1].name, format!("{}-a2", all[0].name), "a new attempt name");
    assert_eq!(all[1].input["attempt"], 2);
    let published = world::notifications(&aws, queue, 1, SETTLE).await.unwrap();
    assert_eq!(published[0]["message"]["status"], "PUBLISHED", "{published:?}");
    assert_eq!(published[0]["message"]["attempt"]["number"], 2, "{published:?}");

    // 2. A newer base fails on both attempts: the second failure is the last word.
    let newest = shared_ami(&aws, soe_account, "soe-al2023-2026.11.3").await;
    for n in [3, 4] {
        aws.admin().fail_next_build("TESTING", "broken test").await.unwrap();
        assert_eq!(fire_and_finish(&aws, n).await.status, "FAILED");
    }
    let all = world::executions(&aws).await.unwrap();
    assert_eq!(all[3].input["sourceAmi"]["imageId"], newest.as_str());
    assert_eq!(all[3].name, format!("{}-a2", all[2].name));

    aws.admin().fire_schedule("bakery-nightly").await.unwrap();
    let out = eventually("the fifth firing's result", SETTLE, || async {
        let firings: Vec<Value> = trigger_results(&aws, 1)
            .await
            .into_iter()
            .filter(|r| r["trigger"]["origin"]["kind"] == "schedule")
            .collect();
        firings.get(4).cloned()
    })
    .await;
    assert!(out["started"].as_array().unwrap().is_empty(), "{out}");
    let reason = out["skipped"][0]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("attempt 2 of 2") && reason.contains("no more attempts"),
        "{out}"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(world::executions(&aws).await.unwrap().len(), 4, "nothing more started");

    let told = world::notifications(&aws, queue, 3, Duration::from_secs(5))
        .await
        .unwrap();
    let last_word: Vec<&Value> = told
        .iter()
        .filter(|m| m["message"]["attempt"]["exhausted"] == true)
        .collect();
    assert_eq!(
        told.len(),
        2,
        "one notification per failed attempt, none for the refusal: {told:?}"
    );
    assert_eq!(last_word.len(), 1, "{told:?}");
    let why = last_word[0]["message"]["attempt"]["rebake"]
        .as_str()
        .unwrap_or_default();
    assert!(
        why.contains("attempt 2 of 2 failed") && why.contains("no trigger bakes"),
        "{why}"
    );
}

/// The stack's bus may take other accounts' events (an SOE account's, forwarded); a "Bake
/// Requested" among them must not reach the trigger. The rules as deployed match an operator's
/// request of this account, and no rule matches the same request from another account.
#[tokio::test]
async fn a_bake_request_from_another_account_reaches_no_rule() {
    let aws = aws().await;
    let fixture = std::fs::read(tests::repo().join("events/manual/bake-requested.json")).unwrap();
    let request: Value = serde_json::from_slice(&fixture).unwrap();
    let from = |account: &str| {
        let mut event = request.clone();
        event["account"] = json!(account);
        event["region"] = json!(aws.region);
        event
    };
    let rules = &aws.gateway.rules;
    let ours = from(&aws.account);
    let matched: Vec<&str> = rules
        .iter()
        .filter(|r| gateway::pattern::matches(&r.pattern, &ours))
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(
        matched.len(),
        1,
        "this account's request reaches the trigger: {matched:?}"
    );
    let theirs = from("777788889999");
    let matched: Vec<&str> = rules
        .iter()
        .filter(|r| gateway::pattern::matches(&r.pattern, &theirs))
        .map(|r| r.name.as_str())
        .collect();
    assert!(matched.is_empty(), "another account's request reaches {matched:?}");
}
