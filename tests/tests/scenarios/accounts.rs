//! Accounts apart, as AWS keeps them: what one account shares with another (an AMI's launch
//! permission) is what the other can see and launch, and nothing more.

use aws_sdk_ec2::types::{InstanceType, LaunchPermission, LaunchPermissionModifications};
use gateway::world;
use gateway::LocalAws;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tests::local_aws;

/// EC2 clients acting for `account` (STS AssumeRole gives a real second account).
async fn ec2_of(aws: &LocalAws, account: &str) -> aws_sdk_ec2::Client {
    aws_sdk_ec2::Client::new(&tests::account_sdk(aws, account, &aws.region).await)
}

async fn launch(ec2: &aws_sdk_ec2::Client, image: &str) -> Result<String, String> {
    ec2.run_instances()
        .image_id(image)
        .instance_type(InstanceType::T3Micro)
        .min_count(1)
        .max_count(1)
        .send()
        .await
        .map(|o| o.instances()[0].instance_id().unwrap_or_default().to_owned())
        .map_err(|e| e.into_service_error().to_string())
}

#[tokio::test]
async fn a_consumer_sees_and_launches_a_shared_ami_and_nothing_else() {
    let aws = local_aws().await;
    let consumer = "210987654321";
    let consumer_ec2 = ec2_of(&aws, consumer).await;
    let ours = aws_sdk_ec2::Client::new(&aws.sdk_config(&aws.region).await);
    let shared = world::register_ami(&aws, "web-2026.12.1").await.unwrap();
    let private = world::register_ami(&aws, "web-private").await.unwrap();
    ours.modify_image_attribute()
        .image_id(&shared)
        .launch_permission(
            LaunchPermissionModifications::builder()
                .add(LaunchPermission::builder().user_id(consumer).build())
                .build(),
        )
        .send()
        .await
        .unwrap();

    let seen = consumer_ec2
        .describe_images()
        .executable_users("self")
        .send()
        .await
        .unwrap();
    let ids: Vec<&str> = seen.images().iter().filter_map(|i| i.image_id()).collect();
    assert!(ids.contains(&shared.as_str()), "{ids:?}");
    assert!(!ids.contains(&private.as_str()), "{ids:?}");
    let owner = seen
        .images()
        .iter()
        .find(|i| i.image_id() == Some(shared.as_str()))
        .unwrap();
    assert_eq!(owner.owner_id(), Some(aws.account.as_str()));

    assert!(launch(&consumer_ec2, &shared).await.is_ok());
    let refused = launch(&consumer_ec2, &private).await.unwrap_err();
    assert!(refused.contains("InvalidAMIID.NotFound"), "{refused}");
    let nothing = launch(&consumer_ec2, "ami-0123456789abcdef0").await.unwrap_err();
    assert!(nothing.contains("InvalidAMIID.NotFound"), "{nothing}");
}

// ------------------------------------------------------------ the SOE team and consumers elsewhere

const SOE: &str = "777788889999";
const SOE_REGION: &str = "eu-west-1";
/// A consumer the stack lists (SubscriberAccountIds), one of the policy's share accounts.
const CONSUMER: &str = world::SHARE_ACCOUNTS[0];
/// Neither an SOE account nor a subscriber.
const STRANGER: &str = "444455556666";

fn soe_topic() -> String {
    format!("arn:aws:sns:{SOE_REGION}:{SOE}:soe-releases")
}

/// Bakery deployed for an SOE team in another account (and, for its topic, another region),
/// with one consumer account listed.
async fn cross_account_stack() -> LocalAws {
    tests::local_aws_with(&[
        ("SoeReleaseTopicArn", &soe_topic()),
        ("SoeAccountIds", SOE),
        ("SubscriberAccountIds", CONSUMER),
        ("BuildWaitSeconds", "20"),
        ("BusyRetrySeconds", "1"),
        ("CopyPollSeconds", "1"),
    ])
    .await
}

/// The SOE account's release AMI in the stack's region, shared with the stack's account.
async fn soe_ami(aws: &LocalAws, account: &str, name: &str) -> String {
    let ec2 = ec2_of(aws, account).await;
    let id = world::register_ami_with(&ec2, name).await.unwrap();
    ec2.modify_image_attribute()
        .image_id(&id)
        .launch_permission(
            LaunchPermissionModifications::builder()
                .add(LaunchPermission::builder().user_id(&aws.account).build())
                .build(),
        )
        .send()
        .await
        .unwrap();
    id
}

/// A pipeline of the stack whose policy follows `sources` and trusts the SOE account.
async fn pipeline_trusting_soe(aws: &LocalAws, sources: Value) -> world::World {
    let base = world::register_ami(aws, "soe-al2023-2026.11.1").await.unwrap();
    let mut w = world::seed_on(aws, "web", &base, sources).await.unwrap();
    w.policy["trustedOwners"] = json!([SOE]);
    world::put_policy(aws, &w.pipeline_name, &w.policy).await.unwrap();
    w
}

/// The error code of a refused SNS call (`Ok` if it was let through).
fn sns_refusal<T, E: aws_sdk_sns::error::ProvideErrorMetadata>(r: Result<T, E>) -> Result<(), String> {
    match r {
        Ok(_) => Ok(()),
        Err(e) => Err(e.code().unwrap_or("no code").to_owned()),
    }
}

async fn the_bake(aws: &LocalAws) -> world::BakeReport {
    let exec = tests::eventually("a bake execution", Duration::from_secs(60), || async {
        world::executions(aws).await.ok()?.into_iter().next()
    })
    .await;
    world::wait(
        aws,
        &exec.execution_arn,
        exec.input["sourceAmi"]["imageId"].as_str().unwrap_or_default(),
        Instant::now(),
        Duration::from_secs(90),
    )
    .await
    .unwrap()
}

/// The SOE team releases on its own topic, in its own account and region; the stack's
/// subscription (named with the topic's Region, let in by the SOE topic's policy) carries it to
/// the trigger, the bake publishes, and the consumer account's queue gets the publication. An
/// unlisted account may neither subscribe nor publish on the publication topic, and no one but
/// Bakery may publish on it.
#[tokio::test]
async fn an_soe_release_from_another_account_bakes_and_reaches_a_consumer_account_only() {
    let aws = cross_account_stack().await;
    let soe_sdk = tests::account_sdk(&aws, SOE, SOE_REGION).await;
    let soe_sns = aws_sdk_sns::Client::new(&soe_sdk);
    let topic_policy = json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "BakerySubscribes",
            "Effect": "Allow",
            "Principal": {"AWS": format!("arn:aws:iam::{}:root", aws.account)},
            "Action": "sns:Subscribe",
            "Resource": soe_topic(),
        }],
    });
    let topic = soe_sns
        .create_topic()
        .name("soe-releases")
        .attributes("Policy", topic_policy.to_string())
        .send()
        .await
        .unwrap()
        .topic_arn
        .unwrap();
    assert_eq!(topic, soe_topic());
    let w = pipeline_trusting_soe(&aws, json!({"snsTopics": [soe_topic()]})).await;
    let publications = w.policy["notify"]["topicArn"].as_str().unwrap().to_owned();

    // The consumer subscribes a queue of its own account; the stranger may not.
    let consumer_sdk = tests::account_sdk(&aws, CONSUMER, &aws.region).await;
    let consumer_sqs = aws_sdk_sqs::Client::new(&consumer_sdk);
    let queue_url = consumer_sqs
        .create_queue()
        .queue_name("bakery-amis")
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let queue_arn = format!("arn:aws:sqs:{}:{CONSUMER}:bakery-amis", aws.region);
    // As on AWS, SNS may send to the consumer's queue only if the queue's policy says so.
    let queue_policy = json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Service": "sns.amazonaws.com"},
            "Action": "sqs:SendMessage",
            "Resource": queue_arn,
            "Condition": {"ArnEquals": {"aws:SourceArn": publications}},
        }],
    });
    consumer_sqs
        .set_queue_attributes()
        .queue_url(&queue_url)
        .attributes(aws_sdk_sqs::types::QueueAttributeName::Policy, queue_policy.to_string())
        .send()
        .await
        .unwrap();
    let consumer_sns = aws_sdk_sns::Client::new(&consumer_sdk);
    consumer_sns
        .subscribe()
        .topic_arn(&publications)
        .protocol("sqs")
        .endpoint(&queue_arn)
        .send()
        .await
        .unwrap();
    let stranger_sns = aws_sdk_sns::Client::new(&tests::account_sdk(&aws, STRANGER, &aws.region).await);
    let refused = stranger_sns
        .subscribe()
        .topic_arn(&publications)
        .protocol("sqs")
        .endpoint(format!("arn:aws:sqs:{}:{STRANGER}:theirs", aws.region))
        .send()
        .await;
    assert_eq!(sns_refusal(refused), Err("AuthorizationError".to_owned()));

    // The SOE team releases from its account, on its topic in its region.
    let ami = soe_ami(&aws, SOE, "soe-al2023-2026.11.2").await;
    let message = json!({"release": "2026.11.2", "accountId": SOE, "amis": {aws.region.clone(): ami}});
    soe_sns
        .publish()
        .topic_arn(&topic)
        .message(message.to_string())
        .send()
        .await
        .unwrap();
    let report = the_bake(&aws).await;
    assert_eq!(report.status, "SUCCEEDED", "{report:#?}");
    assert_eq!(report.source_ami, ami);

    // The consumer's queue, in its own account, has the publication with every AMI ID.
    let got = tests::eventually(
        "the publication in the consumer's queue",
        Duration::from_secs(20),
        || async {
            let out = consumer_sqs.receive_message().queue_url(&queue_url).send().await.ok()?;
            let body: Value = serde_json::from_str(out.messages().first()?.body()?).ok()?;
            serde_json::from_str::<Value>(body["Message"].as_str()?).ok()
        },
    )
    .await;
    assert_eq!(got["status"], "PUBLISHED", "{got}");
    assert_eq!(got["lineage"]["parents"][0], ami.as_str(), "{got}");
    let amis = got["amis"].as_array().unwrap();
    assert_eq!(amis.len(), world::REGIONS.len(), "{got}");
    // And may launch what it was told about.
    let consumer_ec2 = ec2_of(&aws, CONSUMER).await;
    let home = amis.iter().find(|a| a["region"] == aws.region.as_str()).unwrap();
    launch(&consumer_ec2, home["imageId"].as_str().unwrap()).await.unwrap();

    // Only Bakery publishes: not the stranger, not the consumer, not this account's operator.
    let ours = aws_sdk_sns::Client::new(&aws.sdk_config(&aws.region).await);
    for (who, sns) in [
        ("stranger", &stranger_sns),
        ("consumer", &consumer_sns),
        ("operator", &ours),
    ] {
        let forged = sns.publish().topic_arn(&publications).message("{}").send().await;
        assert_eq!(sns_refusal(forged), Err("AuthorizationError".to_owned()), "{who}");
    }
}

/// A topic of an account that does not let the stack subscribe: the subscription could never
/// have been made, and its releases reach no one.
#[tokio::test]
async fn a_release_on_a_topic_that_does_not_let_the_stack_subscribe_starts_nothing() {
    let aws = cross_account_stack().await;
    let soe_sns = aws_sdk_sns::Client::new(&tests::account_sdk(&aws, SOE, SOE_REGION).await);
    // SNS's default policy: only the topic's own account.
    let topic = soe_sns
        .create_topic()
        .name("soe-releases")
        .send()
        .await
        .unwrap()
        .topic_arn
        .unwrap();
    let _w = pipeline_trusting_soe(&aws, json!({"snsTopics": [soe_topic()]})).await;
    let ami = soe_ami(&aws, SOE, "soe-al2023-2026.11.2").await;
    let message = json!({"release": "2026.11.2", "accountId": SOE, "amis": {aws.region.clone(): ami}});
    soe_sns
        .publish()
        .topic_arn(&topic)
        .message(message.to_string())
        .send()
        .await
        .unwrap();
    let refused = tests::eventually("the refused subscription", Duration::from_secs(20), || async {
        let all = aws.admin().sns_deliveries().await.ok()?;
        all.into_iter().find(|d| d["topicArn"] == topic.as_str())
    })
    .await;
    assert_eq!(refused["status"], "refused", "{refused}");
    assert!(
        refused["reason"].as_str().unwrap_or_default().contains("sns:Subscribe"),
        "{refused}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(world::executions(&aws).await.unwrap().is_empty(), "nothing started");
}

/// The SOE account forwards its AMI events to the stack's bus with a rule of its own; the bus
/// policy admits it, and the trigger bakes the released AMI. An unlisted account's identical
/// rule is refused at the bus: its event never reaches the trigger.
#[tokio::test]
async fn ami_events_forwarded_by_a_listed_soe_account_bake_and_an_unlisted_accounts_are_refused() {
    let aws = cross_account_stack().await;
    let w = pipeline_trusting_soe(&aws, json!({"amis": [{"owner": SOE, "namePattern": "soe-al2023-*"}]})).await;
    let bus = format!("arn:aws:events:{}:{}:event-bus/default", aws.region, aws.account);
    for account in [SOE, STRANGER] {
        let events = aws_sdk_eventbridge::Client::new(&tests::account_sdk(&aws, account, &aws.region).await);
        events
            .put_rule()
            .name("to-bakery")
            .event_pattern(json!({"source": ["aws.ec2"], "detail-type": ["EC2 AMI State Change"]}).to_string())
            .send()
            .await
            .unwrap();
        events
            .put_targets()
            .rule("to-bakery")
            .targets(
                aws_sdk_eventbridge::types::Target::builder()
                    .id("bakery")
                    .arn(&bus)
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
    }
    let theirs = soe_ami(&aws, STRANGER, "soe-al2023-2026.11.3").await;
    let ami = soe_ami(&aws, SOE, "soe-al2023-2026.11.2").await;

    let report = the_bake(&aws).await;
    assert_eq!(report.status, "SUCCEEDED", "{report:#?}");
    assert_eq!(report.source_ami, ami);
    let refusal = tests::eventually("the bus refusing the stranger", Duration::from_secs(20), || async {
        let denials = aws.admin().denials().await.ok()?;
        denials
            .into_iter()
            .find(|d| d["action"] == "events:PutEvents" && d["principal"] == format!("arn:aws:iam::{STRANGER}:root"))
    })
    .await;
    assert_eq!(refusal["resource"], bus.as_str(), "{refusal}");
    let trigger = aws.resource("TriggerFunction").unwrap().to_owned();
    let seen: Vec<Value> = aws
        .admin()
        .invocations()
        .await
        .unwrap()
        .into_iter()
        .filter(|i| i["function"] == trigger.as_str() && i["request"]["source"] == "aws.ec2")
        .map(|i| i["request"].clone())
        .collect();
    assert!(
        seen.iter()
            .any(|e| e["account"] == SOE && e["detail"]["ImageId"] == ami.as_str()),
        "{seen:?}"
    );
    assert!(
        !seen
            .iter()
            .any(|e| e["account"] == STRANGER || e["detail"]["ImageId"] == theirs.as_str()),
        "{seen:?}"
    );
    let _ = w;
}
