//! Arbitrary text placed where the classifier looks deepest: as the Message of a valid SNS
//! envelope, or as the detail of each EventBridge detail-type it knows. Random bytes rarely
//! get past the envelope; this reaches the message and detail parsers directly.
#![no_main]
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};

const DETAIL_TYPES: &[(&str, &str)] = &[
    ("aws.ec2", "EC2 AMI State Change"),
    ("aws.imagebuilder", "EC2 Image Builder Image State Change"),
    ("aws.ssm", "Parameter Store Change"),
    ("aws.events", "Scheduled Event"),
    ("aws.scheduler", "Scheduled Event"),
    ("bakery", "Bake Requested"),
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else { return };
    let text = String::from_utf8_lossy(rest).into_owned();
    let event = if usize::from(selector) % (DETAIL_TYPES.len() + 1) == DETAIL_TYPES.len() {
        json!({"Records": [{"EventSource": "aws:sns", "EventVersion": "1.0",
            "EventSubscriptionArn": "arn:aws:sns:us-east-1:444455556666:soe:2bcfbf39",
            "Sns": {"Type": "Notification", "MessageId": "m", "TopicArn": "arn:aws:sns:us-east-1:444455556666:soe",
                "Subject": null, "Message": text, "Timestamp": "2026-11-20T09:30:00.000Z", "SignatureVersion": "1",
                "Signature": "s", "SigningCertUrl": "u", "UnsubscribeUrl": "u", "MessageAttributes": {}}}]})
    } else {
        let (source, detail_type) = DETAIL_TYPES[usize::from(selector) % DETAIL_TYPES.len()];
        let detail: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        json!({"version": "0", "id": "e", "detail-type": detail_type, "source": source, "account": "111122223333",
            "time": "2026-11-20T09:30:00Z", "region": "us-east-1",
            "resources": ["arn:aws:imagebuilder:us-east-1:111122223333:image/x/1.0.0/1"], "detail": detail})
    };
    let _ = bakery_core::classify_value(event);
});
