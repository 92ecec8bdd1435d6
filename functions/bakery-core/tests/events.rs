//! Every file in events/ classified, and every file there covered by a case here.

use bakery_core::trigger::UpstreamRevocation;
use bakery_core::{classify, BakeTrigger, Classification, ClassifyError, Origin};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn events_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../events")
}

fn load(name: &str) -> Vec<u8> {
    std::fs::read(events_dir().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn amis(t: &BakeTrigger) -> Vec<(String, String)> {
    t.source_amis
        .iter()
        .map(|a| (a.region.to_string(), a.image_id.to_string()))
        .collect()
}

enum Expect {
    Bake(fn(&BakeTrigger)),
    /// A substring of the reason.
    Ignore(&'static str),
    /// `error_type` and a substring of the message (which starts with the path).
    Error(&'static str, &'static str),
    /// A staleness report request, and whether it asks to publish.
    Stale(bool),
    /// An upstream Bakery's revocation.
    Revoked(fn(&UpstreamRevocation)),
}

const CASES: &[(&str, Expect)] = &[
    // ---- SNS-delivered triggers
    (
        "sns/soe-release.json",
        Expect::Bake(|t| {
            assert_eq!(
                amis(t),
                [
                    ("eu-west-1".into(), "ami-0fedcba9876543210".into()),
                    ("us-east-1".into(), "ami-0a1b2c3d4e5f67890".into())
                ]
            );
            assert!(t
                .source_amis
                .iter()
                .all(|a| a.owner.as_ref().map(|o| o.as_str()) == Some("444455556666")));
            assert!(matches!(&t.origin, Origin::SoeRelease { topic_arn, release: Some(r) }
            if topic_arn == "arn:aws:sns:us-east-1:444455556666:soe-releases" && r == "soe-al2023 2026.11.2"));
            assert_eq!(t.event_id, "3f1c2a7e-8b4d-5e6f-9a0b-1c2d3e4f5a6b");
        }),
    ),
    (
        "sns/imagebuilder-available.json",
        Expect::Bake(|t| {
            assert_eq!(amis(t), [("us-west-1".into(), "ami-01a23bc4def5a6789".into())]);
            let Origin::ImageBuilderNotification {
                semver,
                date_created,
                image_arn,
                pipeline_arn,
                ..
            } = &t.origin
            else {
                panic!("{:?}", t.origin)
            };
            assert_eq!(
                semver, "1237940039285380274899124227",
                "semver kept whole, wider than u64"
            );
            assert_eq!(date_created.to_rfc3339(), "2022-07-28T01:13:45+00:00");
            assert_eq!(
                image_arn,
                "arn:aws:imagebuilder:us-west-1:123456789012:image/example-linux-image/1.0.0/3"
            );
            assert_eq!(
                pipeline_arn.as_deref(),
                Some("arn:aws:imagebuilder:us-west-1:123456789012:image-pipeline/example-linux-pipeline")
            );
            assert_eq!(t.source_amis[0].owner.as_ref().unwrap().as_str(), "123456789012");
        }),
    ),
    ("sns/imagebuilder-failed.json", Expect::Ignore("is FAILED")),
    (
        "sns/bakery-publication.json",
        Expect::Bake(|t| {
            assert_eq!(
                amis(t),
                [
                    ("us-east-1".into(), "ami-0123456789abcdef0".into()),
                    ("eu-west-1".into(), "ami-0fedcba98765432a1".into())
                ]
            );
            let Origin::BakeryPublication {
                pipeline_arn,
                parent_chain,
                execution_arn,
                ..
            } = &t.origin
            else {
                panic!()
            };
            assert_eq!(
                pipeline_arn,
                "arn:aws:imagebuilder:us-east-1:444455556666:image-pipeline/soe-hardened"
            );
            assert_eq!(
                parent_chain.iter().map(|a| a.as_str()).collect::<Vec<_>>(),
                ["ami-0a1b2c3d4e5f67890"]
            );
            assert!(execution_arn.as_deref().unwrap().starts_with("arn:aws:states:"));
        }),
    ),
    ("sns/bakery-publication-failed.json", Expect::Ignore("only PUBLISHED")),
    (
        "sns/bakery-publication-revoked.json",
        Expect::Revoked(|r| {
            assert_eq!(r.topic_arn, "arn:aws:sns:us-east-1:444455556666:bakery-publications");
            assert_eq!(r.account_id.as_str(), "444455556666");
            let amis: Vec<(String, String, Option<String>)> = r
                .amis
                .iter()
                .map(|a| (a.region.to_string(), a.image_id.to_string(), a.owner.as_ref().map(|o| o.to_string())))
                .collect();
            let owner = Some("444455556666".to_owned());
            assert_eq!(
                amis,
                [
                    ("us-east-1".into(), "ami-0a1b2c3d4e5f67890".into(), owner.clone()),
                    ("eu-west-1".into(), "ami-0fedcba9876543210".into(), owner)
                ]
            );
            assert_eq!(r.reason, "CVE-2026-12345 in the base image");
            assert_eq!(r.revoked_by, "soe-team");
            assert_eq!(r.revoked_at, "2026-11-21T08:00:00Z");
            assert_eq!(r.event_id, "9f4a1d3c-6e5b-7c8d-0e1f-2a3b4c5d6e7f");
        }),
    ),
    ("manual/staleness-requested.json", Expect::Stale(false)),
    // ---- EventBridge triggers
    (
        "eventbridge/ami-state-change-available.json",
        Expect::Bake(|t| {
            assert_eq!(amis(t), [("us-east-1".into(), "ami-0abcdef1234567890".into())]);
            assert_eq!(t.source_amis[0].owner.as_ref().unwrap().as_str(), "012345678901");
            assert!(matches!(t.origin, Origin::AmiStateChange { .. }));
        }),
    ),
    (
        "eventbridge/ami-state-change-failed.json",
        Expect::Ignore("is \"failed\"; only available"),
    ),
    (
        "eventbridge/ami-state-change-deregistered.json",
        Expect::Ignore("is \"deregistered\""),
    ),
    (
        "eventbridge/imagebuilder-image-state-change-available.json",
        Expect::Bake(|t| {
            assert!(t.source_amis.is_empty(), "the event carries no AMI IDs");
            let Origin::UpstreamImage { image_arn, region, .. } = &t.origin else {
                panic!()
            };
            assert!(image_arn.starts_with("arn:aws:imagebuilder:us-west-2:111122223333:image/cmkencryptedworkflowtest"));
            assert_eq!(region.as_str(), "us-west-2");
        }),
    ),
    (
        "eventbridge/imagebuilder-image-state-change-failed.json",
        Expect::Ignore("is \"FAILED\""),
    ),
    (
        "eventbridge/imagebuilder-cve-detected.json",
        Expect::Ignore("\"EC2 Image Builder CVE Detected\" from \"aws.imagebuilder\" is not a bake trigger"),
    ),
    (
        "eventbridge/imagebuilder-workflow-step-waiting.json",
        Expect::Ignore("Workflow Step Waiting"),
    ),
    (
        "eventbridge/imagebuilder-pipeline-automatically-disabled.json",
        Expect::Ignore("Image Pipeline Automatically Disabled"),
    ),
    (
        "eventbridge/ssm-parameter-create.json",
        Expect::Bake(|t| {
            let Origin::ParameterChange { name, operation, .. } = &t.origin else {
                panic!()
            };
            assert_eq!((name.as_str(), operation.as_str()), ("MyExampleParameter", "Create"));
        }),
    ),
    (
        "eventbridge/ssm-parameter-update.json",
        Expect::Bake(|t| {
            assert!(matches!(&t.origin, Origin::ParameterChange { operation, .. } if operation == "Update"));
        }),
    ),
    (
        "eventbridge/ssm-parameter-delete.json",
        Expect::Ignore("only Create and Update"),
    ),
    (
        "eventbridge/ssm-parameter-ec2-image-validation-failed.json",
        Expect::Ignore(
            "parameter golden-ami: the \"Create\" failed validation of data type \"aws:ec2:image\" (\"Unable to Describe Resource\"); the parameter did not change",
        ),
    ),
    (
        "eventbridge/scheduled-event.json",
        Expect::Bake(|t| {
            let Origin::Schedule {
                schedule_arn,
                scheduled_time,
            } = &t.origin
            else {
                panic!()
            };
            assert_eq!(schedule_arn, "arn:aws:events:us-east-2:123456789012:rule/my-schedule");
            assert_eq!(scheduled_time.unwrap().to_rfc3339(), "2019-03-01T01:23:45+00:00");
        }),
    ),
    (
        "scheduler/scheduler-default-no-input.json",
        Expect::Bake(|t| {
            assert!(matches!(&t.origin, Origin::Schedule { schedule_arn, .. }
            if schedule_arn == "arn:aws:scheduler:us-east-1:111122223333:schedule/default/bakery-scheduled-bake"));
        }),
    ),
    (
        "scheduler/scheduler-payload.json",
        Expect::Bake(|t| {
            let Origin::Schedule {
                schedule_arn,
                scheduled_time,
            } = &t.origin
            else {
                panic!()
            };
            assert!(schedule_arn.ends_with(":schedule/default/bakery-scheduled-bake"));
            assert_eq!(scheduled_time.unwrap().to_rfc3339(), "2022-03-22T18:59:43+00:00");
            assert!(
                t.event_id.ends_with("@2022-03-22T18:59:43+00:00"),
                "retries of one firing share an id"
            );
        }),
    ),
    (
        "manual/bake-requested.json",
        Expect::Bake(|t| {
            assert_eq!(amis(t), [("us-east-1".into(), "ami-0a1b2c3d4e5f67890".into())]);
            assert!(
                t.source_amis[0].owner.is_none(),
                "an operator's claim carries no owner; the trigger looks it up"
            );
            assert!(
                matches!(&t.origin, Origin::Manual { pipeline_arn, requested_by: Some(who), .. }
            if pipeline_arn.ends_with("image-pipeline/web-app") && who == "alice@example.com")
            );
        }),
    ),
    (
        "manual/bake-requested-current-parent.json",
        Expect::Bake(|t| assert!(t.source_amis.is_empty())),
    ),
    // ---- malformed
    ("malformed/empty.json", Expect::Error("EmptyInput", "empty")),
    ("malformed/garbage.txt", Expect::Error("InvalidJson", "line 1")),
    (
        "malformed/array.json",
        Expect::Error("MalformedEvent", "$: expected a JSON object, found an array"),
    ),
    (
        "malformed/not-an-event.json",
        Expect::Error("MalformedEvent", "$: not an event Bakery understands"),
    ),
    (
        "malformed/sns-two-records.json",
        Expect::Error("MalformedEvent", "Records: expected exactly one SNS record"),
    ),
    (
        "malformed/sns-wrong-event-source.json",
        Expect::Error("MalformedEvent", "Records[0].EventSource: expected \"aws:sns\""),
    ),
    (
        "malformed/sns-message-not-json.json",
        Expect::Error("MalformedEvent", "Records[0].Sns.Message: not JSON"),
    ),
    (
        "malformed/sns-message-unknown.json",
        Expect::Error(
            "MalformedEvent",
            "Records[0].Sns.Message: not a message Bakery understands",
        ),
    ),
    (
        "malformed/sns-soe-release-ami-by-name.json",
        Expect::Error(
            "MalformedEvent",
            "Records[0].Sns.Message.amis.us-east-1: expected an AMI ID",
        ),
    ),
    (
        "malformed/sns-imagebuilder-iso-date.json",
        Expect::Error(
            "MalformedEvent",
            "Records[0].Sns.Message.dateCreated: expected a date like",
        ),
    ),
    (
        "malformed/sns-imagebuilder-semver-text.json",
        Expect::Error("MalformedEvent", "Records[0].Sns.Message.semver: invalid number"),
    ),
    (
        "malformed/bake-requested-ami-by-name.json",
        Expect::Error(
            "MalformedEvent",
            "detail.sourceAmi.name: a source AMI is given by imageId; Bakery never resolves an AMI by name",
        ),
    ),
    (
        "malformed/bake-requested-wrong-type.json",
        Expect::Error(
            "MalformedEvent",
            "detail.pipelineArn: invalid type: integer `42`, expected a string",
        ),
    ),
    (
        "malformed/ami-state-change-missing-image-id.json",
        Expect::Error("MalformedEvent", "detail: missing field `ImageId`"),
    ),
    (
        "malformed/ami-state-change-missing-region.json",
        Expect::Error("MalformedEvent", "region: missing"),
    ),
    (
        "malformed/sns-bakery-revoked-without-revocation.json",
        Expect::Error(
            "MalformedEvent",
            "Records[0].Sns.Message.revocation: a REVOKED publication says nothing of the revocation",
        ),
    ),
    (
        "malformed/imagebuilder-state-change-not-an-image.json",
        Expect::Error("MalformedEvent", "resources[0]: not an Image Builder image ARN"),
    ),
];

#[test]
fn every_fixture_classifies_as_expected() {
    for (name, expect) in CASES {
        let result = classify(&load(name));
        match (expect, result) {
            (Expect::Bake(check), Ok(Classification::Bake { trigger })) => check(&trigger),
            (Expect::Ignore(want), Ok(Classification::Ignore { reason })) => {
                assert!(reason.contains(want), "{name}: reason {reason:?} lacks {want:?}")
            }
            (Expect::Stale(want), Ok(Classification::Stale { publish })) => assert_eq!(publish, *want, "{name}"),
            (Expect::Revoked(check), Ok(Classification::UpstreamRevoked { revoked })) => check(&revoked),
            (Expect::Error(kind, want), Err(e)) => {
                assert_eq!(e.error_type(), *kind, "{name}: {e}");
                assert!(e.to_string().contains(want), "{name}: error {e:?} lacks {want:?}");
            }
            (_, other) => panic!("{name}: unexpected {other:?}"),
        }
    }
}

#[test]
fn every_fixture_is_covered() {
    fn walk(dir: &Path, base: &Path, out: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, base, out);
            } else if path.extension().is_some_and(|e| e != "md") {
                out.insert(path.strip_prefix(base).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    let mut files = BTreeSet::new();
    walk(&events_dir(), &events_dir(), &mut files);
    let covered: BTreeSet<String> = CASES.iter().map(|(n, _)| n.to_string()).collect();
    let missing: Vec<_> = files.difference(&covered).collect();
    assert!(missing.is_empty(), "fixtures with no test case: {missing:?}");
    assert!(
        files.len() >= 30,
        "events/ should hold every trigger, ignore and malformed case"
    );
}

#[test]
fn hostile_sizes_and_shapes_are_typed_errors() {
    let deep = "[".repeat(100_000);
    assert_eq!(classify(deep.as_bytes()).unwrap_err().error_type(), "InvalidJson");
    let deep_obj = format!("{}{}", "{\"Records\":".repeat(10_000), "}".repeat(10_000));
    assert_eq!(classify(deep_obj.as_bytes()).unwrap_err().error_type(), "InvalidJson");
    let huge = vec![b' '; bakery_core::classify::MAX_INPUT_BYTES + 1];
    assert!(matches!(classify(&huge), Err(ClassifyError::TooLarge { .. })));
    assert_eq!(classify(b"   \n\t").unwrap_err(), ClassifyError::Empty);
    assert_eq!(classify(&[0xff, 0xfe, 0x00]).unwrap_err().error_type(), "InvalidJson");
    for scalar in ["null", "1", "\"Records\"", "true"] {
        assert_eq!(
            classify(scalar.as_bytes()).unwrap_err().error_type(),
            "MalformedEvent",
            "{scalar}"
        );
    }
    // A large but legal SOE release: 20,000 regions' worth of junk keys is still one clear error.
    let many: String = (0..20_000).map(|i| format!("\"k{i}\":\"v\",")).collect();
    let msg = format!("{{\"Records\":[], {many} \"x\":1}}");
    assert!(classify(msg.as_bytes())
        .unwrap_err()
        .to_string()
        .starts_with("Records: expected exactly one"));
}

#[test]
fn wrong_types_in_envelopes_name_the_field() {
    let cases = [
        (
            r#"{"detail-type": 7, "source": "aws.ec2", "detail": {}}"#,
            "detail-type: invalid type",
        ),
        (
            r#"{"Records": {"Sns": {}}}"#,
            "Records: invalid type: map, expected a sequence",
        ),
        (
            r#"{"Records": [{"EventSource": "aws:sns"}]}"#,
            "Records[0]: missing field",
        ),
        (
            r#"{"version":"0","id":"1","detail-type":"EC2 AMI State Change","source":"aws.ec2","account":"012345678901",
               "time":"2024-03-01T12:00:00Z","region":"us-east-1","resources":[],"detail":{"ImageId":["ami-0abcdef1234567890"],"State":"available"}}"#,
            "detail.ImageId: invalid type: sequence",
        ),
        (
            r#"{"version":"0","id":"1","detail-type":"EC2 AMI State Change","source":"aws.ec2","account":"evil",
               "time":"2024-03-01T12:00:00Z","region":"us-east-1","resources":[],"detail":{"ImageId":"ami-0abcdef1234567890","State":"available"}}"#,
            "account: expected a 12-digit account ID",
        ),
        (
            r#"{"version":"0","id":"1","detail-type":"Unknown Thing","source":"custom.app","time":"2024-03-01T12:00:00Z","detail":{}}"#,
            "account: missing",
        ),
    ];
    for (input, want) in cases {
        let err = classify(input.as_bytes()).unwrap_err();
        assert!(err.to_string().starts_with(want), "{input}\n→ {err}");
    }
}

#[test]
fn hostile_values_are_not_echoed_whole() {
    let big = "x".repeat(1 << 20);
    let input = format!(r#"{{"detail-type": "{big}", "source": ["{big}"], "detail": {{}}}}"#);
    let err = classify(input.as_bytes()).unwrap_err().to_string();
    assert!(err.starts_with("source: invalid type: sequence"), "{}", &err[..100]);
    assert!(err.len() < 400, "{} bytes", err.len());
    let input = format!(r#"{{"Records": "{big}"}}"#);
    let err = classify(input.as_bytes()).unwrap_err().to_string();
    assert!(
        err.starts_with("Records: invalid type: string \"xxxx"),
        "{}",
        &err[..100]
    );
    assert!(err.len() < 400, "{} bytes", err.len());
}

#[test]
fn an_unknown_detail_type_is_ignored_with_its_name() {
    let input = r#"{"version":"0","id":"1","detail-type":"EC2 Instance State-change Notification","source":"aws.ec2",
        "account":"111122223333","time":"2024-03-01T12:00:00Z","region":"us-east-1","resources":[],"detail":{"state":"running"}}"#;
    match classify(input.as_bytes()).unwrap() {
        Classification::Ignore { reason } => {
            assert!(reason.contains("EC2 Instance State-change Notification"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
}
