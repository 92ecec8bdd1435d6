//! Replaying the trigger's dead letters. The dead-letter queue collects three shapes: the
//! original payload of a failed asynchronous invocation (an EventBridge event, a Scheduler
//! input, an SNS Lambda event), an event a rule or schedule could not deliver (the event
//! itself), and an SNS message its subscription could not deliver (SNS's notification JSON,
//! not wrapped in Lambda's `Records`). Each becomes the payload the trigger takes.

use crate::classify::MAX_INPUT_BYTES;
use serde_json::{json, Value};

/// The trigger payload for one dead-letter message body.
pub fn payload(body: &str) -> Result<Value, String> {
    if body.len() > MAX_INPUT_BYTES {
        return Err(format!("the message is {} bytes; too large for an event", body.len()));
    }
    let value: Value = serde_json::from_str(body).map_err(|e| format!("not JSON: {e}"))?;
    let is_sns_notification = value.get("Type").and_then(Value::as_str) == Some("Notification")
        && value.get("TopicArn").is_some_and(Value::is_string)
        && value.get("Message").is_some_and(Value::is_string);
    if !is_sns_notification {
        return Ok(value);
    }
    let topic = value["TopicArn"].as_str().unwrap_or_default().to_owned();
    Ok(json!({"Records": [{
        "EventSource": "aws:sns",
        "EventVersion": "1.0",
        "EventSubscriptionArn": format!("{topic}:replayed"),
        "Sns": value,
    }]}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{classify_value, Classification};

    fn event(path: &str) -> String {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../events")
            .join(path);
        std::fs::read_to_string(p).unwrap()
    }

    #[test]
    fn an_undelivered_sns_message_becomes_the_lambda_event_again() {
        let lambda_event: Value = serde_json::from_str(&event("sns/soe-release.json")).unwrap();
        // What SNS puts on a subscription's dead-letter queue: the notification itself.
        let notification = lambda_event["Records"][0]["Sns"].to_string();
        let replayed = payload(&notification).unwrap();
        let (a, b) = (classify_value(replayed).unwrap(), classify_value(lambda_event).unwrap());
        match (a, b) {
            (Classification::Bake { trigger: a }, Classification::Bake { trigger: b }) => {
                assert_eq!(a.event_id, b.event_id, "the same MessageId: the same bakes");
                assert_eq!(a.source_amis, b.source_amis);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn events_and_failed_invocations_replay_as_they_are() {
        for path in [
            "eventbridge/ami-state-change-available.json",
            "sns/soe-release.json",
            "scheduler/scheduler-payload.json",
        ] {
            let body = event(path);
            assert_eq!(
                payload(&body).unwrap(),
                serde_json::from_str::<Value>(&body).unwrap(),
                "{path}"
            );
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(payload("not json").is_err());
        assert!(payload(&"[".repeat(MAX_INPUT_BYTES + 1)).is_err());
        // Valid JSON of any other shape is handed to the trigger, which classifies it.
        assert_eq!(payload("[]").unwrap(), json!([]));
    }
}
