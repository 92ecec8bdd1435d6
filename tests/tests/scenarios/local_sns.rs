//! The local AWS on the wire, with the real SDK clients: SNS Publish (and PublishBatch) on a topic
//! the template subscribes a function to invokes it with the event SNS sends Lambda, and EC2's
//! Allowed AMIs settings, which moto lacks, answer what the admin knob set. Filter policies are
//! unit-tested in `gateway::sns`.

use aws_sdk_ec2::types::ManagedBy;
use aws_sdk_sns::types::{MessageAttributeValue, PublishBatchRequestEntry};
use serde_json::Value;
use std::time::Duration;
use tests::{clients, eventually, local_aws, local_aws_with, repo};

const SOE_TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:soe-releases";

/// The SOE release message of the real-shaped fixture.
fn soe_release() -> String {
    let text = std::fs::read_to_string(repo().join("events/sns/soe-release.json")).unwrap();
    let event: Value = serde_json::from_str(&text).unwrap();
    event["Records"][0]["Sns"]["Message"].as_str().unwrap().to_owned()
}

fn string_attribute(value: &str) -> MessageAttributeValue {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(value)
        .build()
        .unwrap()
}

/// The asynchronous invocations of `function` whose SNS record carries `message_id`.
async fn invocations_of(aws: &gateway::LocalAws, function: &str, message_id: &str) -> Vec<Value> {
    aws.admin()
        .invocations()
        .await
        .unwrap()
        .into_iter()
        .filter(|i| i["function"] == function && i["request"]["Records"][0]["Sns"]["MessageId"] == message_id)
        .collect()
}

#[tokio::test]
async fn publish_on_the_followed_topic_invokes_the_trigger_with_the_sns_event() {
    let aws = local_aws_with(&[("SoeReleaseTopicArn", SOE_TOPIC)]).await;
    let sns = aws_sdk_sns::Client::new(&aws.sdk_config("us-east-1").await);
    let trigger = aws.resource("TriggerFunction").unwrap().to_owned();
    // The SOE team's topic lives outside the stack: it is a parameter, so the test makes it.
    let created = sns.create_topic().name("soe-releases").send().await.unwrap();
    assert_eq!(created.topic_arn(), Some(SOE_TOPIC));

    let release = soe_release();
    let published = sns
        .publish()
        .topic_arn(SOE_TOPIC)
        .message(&release)
        .subject("SOE release 2026.11.2")
        .message_attributes("channel", string_attribute("stable"))
        .send()
        .await
        .unwrap();
    let message_id = published.message_id().unwrap().to_owned();

    // Logged before Publish is answered.
    let deliveries = aws.admin().sns_deliveries().await.unwrap();
    let ours: Vec<&Value> = deliveries.iter().filter(|d| d["topicArn"] == SOE_TOPIC).collect();
    assert_eq!(ours.len(), 1, "{deliveries:#?}");
    let d = ours[0];
    assert_eq!(d["subscription"], "SoeReleaseSubscription");
    assert_eq!(d["status"], "delivered");
    assert_eq!(d["function"], trigger.as_str());
    assert_eq!(d["messageId"], message_id.as_str());
    let subscription_arn = d["subscriptionArn"].as_str().unwrap().to_owned();
    assert!(
        subscription_arn.starts_with(&format!("{SOE_TOPIC}:")),
        "{subscription_arn}"
    );

    // The trigger ran (whatever it made of the release) on the event SNS sends Lambda.
    let runs = eventually("the trigger's invocation", Duration::from_secs(20), || async {
        let runs = invocations_of(&aws, &trigger, &message_id).await;
        (!runs.is_empty()).then_some(runs)
    })
    .await;
    assert!(
        runs.iter().all(|r| r["status"] == "success" || r["status"] == "error"),
        "the function ran: {runs:#?}"
    );
    let event = &runs[0]["request"];
    assert_eq!(event, &d["event"], "the logged delivery is what the function got");
    let records = event["Records"].as_array().unwrap();
    assert_eq!(records.len(), 1, "one record per delivery, as Lambda gets it");
    let r = &records[0];
    assert_eq!(r["EventSource"], "aws:sns");
    assert_eq!(r["EventVersion"], "1.0");
    assert_eq!(r["EventSubscriptionArn"], subscription_arn.as_str());
    let s = &r["Sns"];
    assert_eq!(s["Type"], "Notification");
    assert_eq!(s["MessageId"], message_id.as_str());
    assert_eq!(s["TopicArn"], SOE_TOPIC);
    assert_eq!(s["Subject"], "SOE release 2026.11.2");
    assert_eq!(s["Message"], release.as_str(), "the message unchanged");
    assert_eq!(s["SignatureVersion"], "1");
    assert_eq!(s["MessageAttributes"]["channel"]["Type"], "String");
    assert_eq!(s["MessageAttributes"]["channel"]["Value"], "stable");
    let timestamp = s["Timestamp"].as_str().unwrap();
    assert!(
        timestamp.ends_with('Z') && timestamp.len() == "2026-11-20T09:30:00.000Z".len(),
        "{timestamp}"
    );
    for key in ["Signature", "SigningCertUrl", "UnsubscribeUrl"] {
        assert!(s[key].as_str().is_some_and(|v| !v.is_empty()), "{key}: {s}");
    }

    // PublishBatch: one delivery per entry, each with the message id moto gave it.
    let entry = |id: &str, text: &str| {
        PublishBatchRequestEntry::builder()
            .id(id)
            .message(text)
            .build()
            .unwrap()
    };
    let batch = sns
        .publish_batch()
        .topic_arn(SOE_TOPIC)
        .publish_batch_request_entries(entry("first", &release))
        .publish_batch_request_entries(entry("second", &release))
        .send()
        .await
        .unwrap();
    assert!(batch.failed().is_empty(), "{batch:?}");
    for ok in batch.successful() {
        let id = ok.message_id().unwrap();
        eventually("the batch entry's invocation", Duration::from_secs(20), || async {
            (!invocations_of(&aws, &trigger, id).await.is_empty()).then_some(())
        })
        .await;
    }
    assert_eq!(batch.successful().len(), 2);

    // A topic nobody in the template follows delivers nothing to Lambda.
    let other = sns.create_topic().name("elsewhere").send().await.unwrap();
    sns.publish()
        .topic_arn(other.topic_arn().unwrap())
        .message(&release)
        .send()
        .await
        .unwrap();
    let after = aws.admin().sns_deliveries().await.unwrap();
    assert!(
        after.iter().all(|d| d["topicArn"] != other.topic_arn().unwrap()),
        "{after:#?}"
    );
    assert_eq!(
        after.iter().filter(|d| d["topicArn"] == SOE_TOPIC).count(),
        3,
        "one Publish and two batch entries: {after:#?}"
    );
}

#[tokio::test]
async fn allowed_images_settings_answer_what_the_knob_set() {
    let aws = local_aws().await;
    let ec2 = clients(&aws, "us-east-1").await.ec2;
    let admin = aws.admin();

    let dry = ec2
        .get_allowed_images_settings()
        .dry_run(true)
        .send()
        .await
        .unwrap_err();
    assert_eq!(dry.into_service_error().meta().code(), Some("DryRunOperation"));

    let out = ec2.get_allowed_images_settings().send().await.unwrap();
    assert_eq!(out.state(), Some("disabled"), "the default: every AMI allowed");
    assert!(out.image_criteria().is_empty(), "{out:?}");
    assert_eq!(out.managed_by(), Some(&ManagedBy::Account));

    admin
        .set_allowed_images("enabled", &["123456789012", "amazon"])
        .await
        .unwrap();
    let out = ec2.get_allowed_images_settings().send().await.unwrap();
    assert_eq!(out.state(), Some("enabled"));
    let criteria = out.image_criteria();
    assert_eq!(criteria.len(), 1, "{out:?}");
    assert_eq!(criteria[0].image_providers(), ["123456789012", "amazon"]);
    assert_eq!(out.managed_by(), Some(&ManagedBy::Account));

    admin
        .set_allowed_images("audit-mode", &["aws-marketplace"])
        .await
        .unwrap();
    let out = ec2.get_allowed_images_settings().send().await.unwrap();
    assert_eq!(out.state(), Some("audit-mode"));
    assert_eq!(out.image_criteria()[0].image_providers(), ["aws-marketplace"]);

    // Refused, and the settings stay as they were.
    assert!(admin.set_allowed_images("on", &[]).await.is_err());
    assert!(admin.set_allowed_images("enabled", &["<evil/>"]).await.is_err());
    assert!(admin.set_allowed_images("enabled", &["12345"]).await.is_err());
    let out = ec2.get_allowed_images_settings().send().await.unwrap();
    assert_eq!(out.state(), Some("audit-mode"));
}
