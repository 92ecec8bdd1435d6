//! The events AWS services put on an account's default bus, made from the calls that cause
//! them, as EventBridge delivers them: Parameter Store's "Parameter Store Change" when a
//! parameter is created, updated, deleted or labelled, and EC2's "EC2 AMI State Change" when an
//! image becomes available, is deregistered, disabled or enabled. No one else may put an `aws.*`
//! event (PutEvents refuses it, as EventBridge does).

use crate::http::{xml_elements, xml_unescape};
use serde_json::{json, Value};

/// The envelope EventBridge wraps every event in.
pub fn envelope(
    account: &str,
    region: &str,
    source: &str,
    detail_type: &str,
    resources: Vec<String>,
    detail: Value,
) -> Value {
    json!({
        "version": "0",
        "id": uuid::Uuid::new_v4().to_string(),
        "detail-type": detail_type,
        "source": source,
        "account": account,
        "time": chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "region": region,
        "resources": resources,
        "detail": detail,
    })
}

/// Whether PutEvents may put an event with this source: `aws.*` belongs to the services.
pub fn source_allowed(source: &str) -> bool {
    !source.starts_with("aws.")
}

/// The Parameter Store Change a successful Parameter Store call makes, one per parameter.
/// `request` and `answer` are the call's JSON body and Parameter Store's answer.
pub fn parameter_changes(operation: &str, account: &str, region: &str, request: &Value, answer: &Value) -> Vec<Value> {
    let event = |name: &str, detail: Value| {
        let arn = format!(
            "arn:aws:ssm:{region}:{account}:parameter/{}",
            name.trim_start_matches('/')
        );
        envelope(account, region, "aws.ssm", "Parameter Store Change", vec![arn], detail)
    };
    let name = request["Name"].as_str().unwrap_or_default();
    match operation {
        "PutParameter" => {
            let operation = if answer["Version"].as_i64() == Some(1) {
                "Create"
            } else {
                "Update"
            };
            vec![event(
                name,
                json!({
                    "operation": operation,
                    "name": name,
                    "type": request["Type"].as_str().unwrap_or("String"),
                    "description": request["Description"].as_str().unwrap_or_default(),
                }),
            )]
        }
        "DeleteParameter" => vec![event(
            name,
            json!({"operation": "Delete", "name": name, "type": "String", "description": ""}),
        )],
        "DeleteParameters" => answer["DeletedParameters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(|n| {
                event(
                    n,
                    json!({"operation": "Delete", "name": n, "type": "String", "description": ""}),
                )
            })
            .collect(),
        "LabelParameterVersion" => vec![event(
            name,
            json!({"operation": "LabelParameterVersion", "name": name, "type": "String", "description": "",
                   "labels": request["Labels"].clone()}),
        )],
        _ => Vec::new(),
    }
}

/// EC2 AMI State Change for `image_id` in `state` (available, deregistered, disabled, failed).
pub fn ami_state_change(account: &str, region: &str, image_id: &str, state: &str) -> Value {
    envelope(
        account,
        region,
        "aws.ec2",
        "EC2 AMI State Change",
        vec![format!("arn:aws:ec2:{region}::image/{image_id}")],
        json!({
            "RequestId": uuid::Uuid::new_v4().to_string(),
            "ImageId": image_id,
            "State": state,
            "ErrorMessage": "",
        }),
    )
}

/// The image and the state an EC2 call left it in, from the call and EC2's answer: the new
/// image of CreateImage, RegisterImage and CopyImage (available: images are available at once
/// here), or the image DeregisterImage, DisableImage and EnableImage acted on.
pub fn image_change(operation: &str, image_param: Option<&str>, answer_xml: &str) -> Option<(String, &'static str)> {
    let answered = || xml_elements(answer_xml, "imageId").first().map(|s| xml_unescape(s));
    match operation {
        // CopyImage's own events (pending, then available or failed) come from `copies`.
        "CreateImage" | "RegisterImage" => Some((answered()?, "available")),
        "DeregisterImage" => Some((image_param?.to_owned(), "deregistered")),
        "DisableImage" => Some((image_param?.to_owned(), "disabled")),
        "EnableImage" => Some((image_param?.to_owned(), "available")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_store_changes_are_shaped_like_the_fixture() {
        let request = json!({"Name": "/soe/al2023/latest", "Value": "ami-1", "Type": "String", "Overwrite": true});
        let e = &parameter_changes(
            "PutParameter",
            "123456789012",
            "us-east-1",
            &request,
            &json!({"Version": 2}),
        )[0];
        assert_eq!(e["source"], "aws.ssm");
        assert_eq!(e["detail-type"], "Parameter Store Change");
        assert_eq!(
            e["resources"][0],
            "arn:aws:ssm:us-east-1:123456789012:parameter/soe/al2023/latest"
        );
        assert_eq!(e["detail"]["operation"], "Update");
        assert_eq!(e["detail"]["name"], "/soe/al2023/latest");
        let created = &parameter_changes("PutParameter", "1", "us-east-1", &request, &json!({"Version": 1}))[0];
        assert_eq!(created["detail"]["operation"], "Create");
        let deleted = parameter_changes(
            "DeleteParameters",
            "1",
            "us-east-1",
            &json!({}),
            &json!({"DeletedParameters": ["/a", "/b"]}),
        );
        assert_eq!(deleted.len(), 2);
        assert!(parameter_changes("GetParameter", "1", "r", &request, &json!({})).is_empty());
    }

    #[test]
    fn image_changes() {
        let xml = "<RegisterImageResponse><requestId>x</requestId><imageId>ami-0abc</imageId></RegisterImageResponse>";
        assert_eq!(
            image_change("RegisterImage", None, xml),
            Some(("ami-0abc".into(), "available"))
        );
        assert_eq!(
            image_change("CopyImage", None, xml),
            None,
            "CopyImage's come from copies"
        );
        assert_eq!(
            image_change("DeregisterImage", Some("ami-1"), ""),
            Some(("ami-1".into(), "deregistered"))
        );
        assert_eq!(image_change("DescribeImages", Some("ami-1"), xml), None);
        let e = ami_state_change("1", "eu-west-1", "ami-1", "available");
        assert_eq!(e["resources"][0], "arn:aws:ec2:eu-west-1::image/ami-1");
        assert_eq!(e["detail"]["State"], "available");
        assert!(!source_allowed("aws.ec2") && source_allowed("bakery"));
    }
}
