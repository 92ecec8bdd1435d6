//! SNS → Lambda, which moto cannot do: Publish and PublishBatch read from the query protocol,
//! the template's subscription filter policies, and the event Lambda receives from SNS.

use crate::http::{xml_elements, xml_unescape};
use crate::pattern;
use crate::template::{FilterScope, SnsSubscription};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// Lambda's subscription signs nothing here; the field is there, base64 like the real one.
const SIGNATURE: &str = "bG9jYWwtc25zLXVuc2lnbmVk";

/// A template subscription with the ARN SNS gave it (`<topic arn>:<uuid>`).
#[derive(Debug, Clone)]
pub struct Subscriber {
    pub subscription: SnsSubscription,
    pub arn: String,
}

impl Subscriber {
    pub fn new(subscription: SnsSubscription) -> Self {
        let arn = format!("{}:{}", subscription.topic_arn, uuid::Uuid::new_v4());
        Self { subscription, arn }
    }
}

/// One message of a Publish (or one entry of a PublishBatch).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Message {
    /// The PublishBatch entry's Id; empty for Publish.
    pub entry_id: String,
    pub message: String,
    pub subject: Option<String>,
    /// `MessageStructure=json`: `message` holds one message per protocol.
    pub structure_json: bool,
    pub attributes: BTreeMap<String, Attribute>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Attribute {
    pub data_type: String,
    /// StringValue, or BinaryValue as sent (base64).
    pub value: String,
}

/// The topic and messages of a Publish (`TopicArn`, or `TargetArn` naming a topic) or a
/// PublishBatch; None when the request is not to a topic (a phone number, an endpoint).
pub fn published(operation: &str, params: &BTreeMap<String, String>) -> Option<(String, Vec<Message>)> {
    match operation {
        "Publish" => {
            let topic = params
                .get("TopicArn")
                .or_else(|| params.get("TargetArn"))
                .filter(|t| t.starts_with("arn:") && t.contains(":sns:"))?;
            Some((topic.clone(), vec![message(params, "")]))
        }
        "PublishBatch" => {
            let topic = params.get("TopicArn")?;
            let mut indexes: Vec<u32> = params
                .keys()
                .filter_map(|k| k.strip_prefix("PublishBatchRequestEntries.member."))
                .filter_map(|rest| rest.split('.').next()?.parse().ok())
                .collect();
            indexes.sort_unstable();
            indexes.dedup();
            let messages = indexes
                .into_iter()
                .map(|n| message(params, &format!("PublishBatchRequestEntries.member.{n}.")))
                .collect();
            Some((topic.clone(), messages))
        }
        _ => None,
    }
}

/// The message whose parameters start with `prefix`.
fn message(params: &BTreeMap<String, String>, prefix: &str) -> Message {
    let get = |k: &str| params.get(&format!("{prefix}{k}")).cloned();
    let entries = format!("{prefix}MessageAttributes.entry.");
    let mut by_index: BTreeMap<u32, BTreeMap<&str, &str>> = BTreeMap::new();
    for (k, v) in params {
        let Some((n, field)) = k.strip_prefix(&entries).and_then(|rest| rest.split_once('.')) else {
            continue;
        };
        if let Ok(n) = n.parse() {
            by_index.entry(n).or_default().insert(field, v);
        }
    }
    let attributes = by_index
        .into_values()
        .filter_map(|f| {
            let name = f.get("Name")?;
            let value = f.get("Value.StringValue").or_else(|| f.get("Value.BinaryValue"))?;
            let data_type = f.get("Value.DataType").copied().unwrap_or("String");
            Some((
                (*name).to_owned(),
                Attribute {
                    data_type: data_type.to_owned(),
                    value: (*value).to_owned(),
                },
            ))
        })
        .collect();
    Message {
        entry_id: get("Id").unwrap_or_default(),
        message: get("Message").unwrap_or_default(),
        subject: get("Subject"),
        structure_json: get("MessageStructure").as_deref() == Some("json"),
        attributes,
    }
}

/// Whether the subscription's filter policy lets the message through (no policy: every message).
pub fn accepts(subscription: &SnsSubscription, m: &Message) -> bool {
    let Some(policy) = &subscription.filter_policy else {
        return true;
    };
    let subject = match subscription.filter_scope {
        FilterScope::MessageAttributes => attribute_values(&m.attributes),
        FilterScope::MessageBody => match serde_json::from_str::<Value>(&delivered_text(m)) {
            Ok(body @ Value::Object(_)) => body,
            _ => return false,
        },
    };
    pattern::matches(policy, &subject)
}

/// The attributes as a filter policy sees them: String as text, Number as a number,
/// String.Array as its items; Binary attributes are not filtered on.
fn attribute_values(attributes: &BTreeMap<String, Attribute>) -> Value {
    let mut out = Map::new();
    for (name, a) in attributes {
        let kind = a.data_type.split('.').next().unwrap_or_default();
        let value = match (kind, a.data_type.as_str()) {
            (_, "String.Array") => serde_json::from_str::<Value>(&a.value)
                .ok()
                .filter(Value::is_array)
                .unwrap_or_else(|| Value::String(a.value.clone())),
            ("Number", _) => serde_json::from_str::<serde_json::Number>(a.value.trim())
                .map(Value::Number)
                .unwrap_or_else(|_| Value::String(a.value.clone())),
            ("String", _) => Value::String(a.value.clone()),
            _ => continue,
        };
        out.insert(name.clone(), value);
    }
    Value::Object(out)
}

/// The text Lambda receives: with `MessageStructure=json`, the `lambda` message or else `default`.
fn delivered_text(m: &Message) -> String {
    if !m.structure_json {
        return m.message.clone();
    }
    let per_protocol: Value = serde_json::from_str(&m.message).unwrap_or(Value::Null);
    match per_protocol.get("lambda").or_else(|| per_protocol.get("default")) {
        Some(Value::String(s)) => s.clone(),
        _ => m.message.clone(),
    }
}

/// The event Lambda receives from an SNS subscription, one record.
pub fn lambda_event(
    subscription_arn: &str,
    topic_arn: &str,
    message_id: &str,
    m: &Message,
    time: chrono::DateTime<chrono::Utc>,
) -> Value {
    // arn:aws:sns:<region>:<account>:<name>
    let region = topic_arn.split(':').nth(3).unwrap_or("us-east-1");
    let attributes: Map<String, Value> = m
        .attributes
        .iter()
        .map(|(k, a)| (k.clone(), json!({"Type": a.data_type, "Value": a.value})))
        .collect();
    json!({"Records": [{
        "EventSource": "aws:sns",
        "EventVersion": "1.0",
        "EventSubscriptionArn": subscription_arn,
        "Sns": {
            "Type": "Notification",
            "MessageId": message_id,
            "TopicArn": topic_arn,
            "Subject": m.subject,
            "Message": delivered_text(m),
            "Timestamp": time.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
            "SignatureVersion": "1",
            "Signature": SIGNATURE,
            "SigningCertUrl": format!("https://sns.{region}.amazonaws.com/SimpleNotificationService-local.pem"),
            "UnsubscribeUrl": format!(
                "https://sns.{region}.amazonaws.com/?Action=Unsubscribe&SubscriptionArn={subscription_arn}"
            ),
            "MessageAttributes": attributes,
        },
    }]})
}

/// The notification SNS sends an SQS (or HTTP) subscriber: the same record as Lambda's, but
/// for the casing of two keys, or the message alone with raw message delivery.
pub fn queue_body(
    subscription_arn: &str,
    topic_arn: &str,
    message_id: &str,
    m: &Message,
    time: chrono::DateTime<chrono::Utc>,
    raw: bool,
) -> String {
    if raw {
        return delivered_text(m);
    }
    let mut n = lambda_event(subscription_arn, topic_arn, message_id, m, time)["Records"][0]["Sns"].take();
    for (from, to) in [
        ("SigningCertUrl", "SigningCertURL"),
        ("UnsubscribeUrl", "UnsubscribeURL"),
    ] {
        if let Some(v) = n.as_object_mut().and_then(|o| o.remove(from)) {
            n[to] = v;
        }
    }
    n.to_string()
}

/// The message ids in moto's answer: Publish's `MessageId`, or PublishBatch's successful
/// entries by Id. Keyed by the entry Id (empty for Publish).
pub fn message_ids(operation: &str, xml: &str) -> BTreeMap<String, String> {
    match operation {
        "PublishBatch" => xml_elements(
            xml_elements(xml, "Successful").first().copied().unwrap_or_default(),
            "member",
        )
        .into_iter()
        .filter_map(|member| {
            let id = xml_elements(member, "Id").first().map(|s| xml_unescape(s))?;
            let message_id = xml_elements(member, "MessageId").first().map(|s| xml_unescape(s))?;
            Some((id, message_id))
        })
        .collect(),
        _ => xml_elements(xml, "MessageId")
            .first()
            .map(|id| (String::new(), xml_unescape(id)))
            .into_iter()
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::query_params;

    fn subscription(policy: Option<Value>, scope: FilterScope) -> SnsSubscription {
        SnsSubscription {
            name: "S".into(),
            topic_arn: "arn:aws:sns:eu-west-1:123456789012:t".into(),
            function: "f".into(),
            filter_policy: policy,
            filter_scope: scope,
            region: None,
            dead_letter: None,
        }
    }

    fn with_attributes(attrs: &[(&str, &str, &str)]) -> Message {
        Message {
            message: r#"{"kind": "release", "amis": {"us-east-1": "ami-0a1b2c3d4e5f67890"}}"#.into(),
            attributes: attrs
                .iter()
                .map(|(n, t, v)| {
                    (
                        (*n).to_owned(),
                        Attribute {
                            data_type: (*t).to_owned(),
                            value: (*v).to_owned(),
                        },
                    )
                })
                .collect(),
            ..Message::default()
        }
    }

    #[test]
    fn publish_as_aws_sdk_sns_sends_it() {
        // The body aws-sdk-sns 1.x writes (aws-smithy-query: map entries as entry.N.Name/Value).
        let body = "Action=Publish&Version=2010-03-31&TopicArn=arn%3Aaws%3Asns%3Aus-east-1%3A123456789012%3Asoe\
                    &Message=%7B%22a%22%3A%201%7D%20%2B%20x&Subject=New%20release\
                    &MessageAttributes.entry.1.Name=channel&MessageAttributes.entry.1.Value.DataType=String\
                    &MessageAttributes.entry.1.Value.StringValue=stable\
                    &MessageAttributes.entry.2.Name=size&MessageAttributes.entry.2.Value.DataType=Number\
                    &MessageAttributes.entry.2.Value.StringValue=8";
        let (topic, messages) = published("Publish", &query_params("", body.as_bytes())).unwrap();
        assert_eq!(topic, "arn:aws:sns:us-east-1:123456789012:soe");
        let m = &messages[0];
        assert_eq!(m.message, r#"{"a": 1} + x"#);
        assert_eq!(m.subject.as_deref(), Some("New release"));
        assert_eq!(m.attributes["channel"].value, "stable");
        assert_eq!(m.attributes["size"].data_type, "Number");
        assert!(published(
            "Publish",
            &query_params("", b"Action=Publish&PhoneNumber=%2B15555550100&Message=x")
        )
        .is_none());
    }

    #[test]
    fn publish_batch_entries() {
        let body = "Action=PublishBatch&TopicArn=arn%3Aaws%3Asns%3Aus-east-1%3A1%3At\
                    &PublishBatchRequestEntries.member.2.Id=b&PublishBatchRequestEntries.member.2.Message=two\
                    &PublishBatchRequestEntries.member.10.Id=c&PublishBatchRequestEntries.member.10.Message=ten\
                    &PublishBatchRequestEntries.member.1.Id=a&PublishBatchRequestEntries.member.1.Message=one\
                    &PublishBatchRequestEntries.member.1.MessageAttributes.entry.1.Name=k\
                    &PublishBatchRequestEntries.member.1.MessageAttributes.entry.1.Value.DataType=String\
                    &PublishBatchRequestEntries.member.1.MessageAttributes.entry.1.Value.StringValue=v";
        let (_, messages) = published("PublishBatch", &query_params("", body.as_bytes())).unwrap();
        let ids: Vec<&str> = messages.iter().map(|m| m.entry_id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "c"], "in entry order, 10 after 2");
        assert_eq!(messages[0].attributes["k"].value, "v");
        assert!(messages[1].attributes.is_empty());

        let xml = "<PublishBatchResponse><PublishBatchResult><Successful><member><Id>a</Id><MessageId>m-1</MessageId>\
                   </member><member><MessageId>m-2</MessageId><Id>b</Id></member></Successful><Failed><member><Id>c</Id>\
                   <Code>InvalidParameter</Code></member></Failed></PublishBatchResult></PublishBatchResponse>";
        let ids = message_ids("PublishBatch", xml);
        assert_eq!(ids.len(), 2, "the failed entry has no message id: {ids:?}");
        assert_eq!(ids["a"], "m-1");
        assert_eq!(ids["b"], "m-2");
        let xml = r#"<PublishResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/"><PublishResult><MessageId>5e1f</MessageId></PublishResult></PublishResponse>"#;
        assert_eq!(message_ids("Publish", xml)[""], "5e1f");
        assert!(message_ids("Publish", "<ErrorResponse/>").is_empty());
    }

    #[test]
    fn filter_policies_on_attributes() {
        let m = with_attributes(&[
            ("channel", "String", "stable"),
            ("size", "Number", "8"),
            ("regions", "String.Array", r#"["us-east-1", "eu-west-1"]"#),
            ("blob", "Binary", "AAEC"),
        ]);
        let accepts_with = |policy: Value| accepts(&subscription(Some(policy), FilterScope::MessageAttributes), &m);
        assert!(accepts(&subscription(None, FilterScope::MessageAttributes), &m));
        assert!(accepts_with(json!({"channel": ["stable", "beta"]})));
        assert!(!accepts_with(json!({"channel": ["beta"]})), "exact values");
        assert!(accepts_with(json!({"channel": [{"prefix": "sta"}]})));
        assert!(!accepts_with(json!({"channel": [{"anything-but": ["stable"]}]})));
        assert!(accepts_with(json!({"channel": [{"anything-but": "beta"}]})));
        assert!(accepts_with(json!({"size": [8]})), "a Number attribute is a number");
        assert!(accepts_with(json!({"size": [{"numeric": [">", 4]}]})));
        assert!(
            accepts_with(json!({"regions": ["eu-west-1"]})),
            "any item of a String.Array"
        );
        assert!(!accepts_with(json!({"missing": ["x"]})));
        assert!(
            !accepts_with(json!({"missing": [{"anything-but": "x"}]})),
            "needs the attribute"
        );
        assert!(accepts_with(json!({"missing": [{"exists": false}]})));
        assert!(!accepts_with(json!({"channel": [{"exists": false}]})));
        assert!(
            !accepts_with(json!({"blob": [{"exists": true}]})),
            "Binary is not filtered on"
        );
        assert!(
            !accepts_with(json!({"channel": ["stable"], "size": [9]})),
            "every key of the policy must match"
        );
    }

    #[test]
    fn filter_policies_on_the_body() {
        let m = with_attributes(&[]);
        let accepts_with = |policy: Value| accepts(&subscription(Some(policy), FilterScope::MessageBody), &m);
        assert!(accepts_with(json!({"kind": ["release"]})));
        assert!(accepts_with(json!({"amis": {"us-east-1": [{"prefix": "ami-"}]}})));
        assert!(!accepts_with(json!({"kind": ["hotfix"]})));
        let not_json = Message {
            message: "plain text".into(),
            ..Message::default()
        };
        assert!(!accepts(
            &subscription(Some(json!({"kind": [{"exists": false}]})), FilterScope::MessageBody),
            &not_json
        ));
    }

    #[test]
    fn the_lambda_event_is_shaped_like_the_fixtures() {
        let mut m = with_attributes(&[("channel", "String", "stable")]);
        m.message = r#"{"default": "for everyone", "lambda": "for lambda"}"#.into();
        m.structure_json = true;
        let time = chrono::DateTime::parse_from_rfc3339("2026-11-20T09:30:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let sub = "arn:aws:sns:eu-west-1:123456789012:t:2bcfbf39-05c3-41de-beaa-fcfcc21c8f55";
        let e = lambda_event(sub, "arn:aws:sns:eu-west-1:123456789012:t", "mid-1", &m, time);

        let fixture: Value = serde_json::from_str(
            &std::fs::read_to_string(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../events/sns/soe-release.json"
            ))
            .unwrap(),
        )
        .unwrap();
        let keys = |v: &Value| {
            v.as_object()
                .unwrap()
                .keys()
                .cloned()
                .collect::<std::collections::BTreeSet<_>>()
        };
        assert_eq!(keys(&e["Records"][0]), keys(&fixture["Records"][0]));
        assert_eq!(keys(&e["Records"][0]["Sns"]), keys(&fixture["Records"][0]["Sns"]));

        let r = &e["Records"][0];
        assert_eq!(r["EventSource"], "aws:sns");
        assert_eq!(r["EventSubscriptionArn"], sub);
        let sns = &r["Sns"];
        assert_eq!(sns["Type"], "Notification");
        assert_eq!(sns["MessageId"], "mid-1");
        assert_eq!(
            sns["Message"], "for lambda",
            "MessageStructure json: the lambda message"
        );
        assert_eq!(sns["Subject"], Value::Null);
        assert_eq!(sns["Timestamp"], "2026-11-20T09:30:00.000Z");
        assert_eq!(
            sns["MessageAttributes"],
            json!({"channel": {"Type": "String", "Value": "stable"}})
        );
        assert!(sns["UnsubscribeUrl"].as_str().unwrap().starts_with(
            "https://sns.eu-west-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=arn:aws:sns:eu-west-1:"
        ));
    }
}
