//! The published JSON schema and `Policy::parse` agree: what the schema accepts parses, and
//! what breaks the schema's structural rules is refused by both.

use bakery_core::Policy;
use serde_json::{json, Value};
use std::path::Path;

fn read(rel: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schema").join(rel);
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

fn validator() -> jsonschema::Validator {
    jsonschema::validator_for(&read("bake-policy.schema.json")).expect("the schema itself is valid")
}

#[test]
fn examples_agree_with_the_schema() {
    let schema = validator();
    for name in ["web-app.json", "minimal.json"] {
        let doc = read(&format!("examples/{name}"));
        let errors: Vec<String> = schema.iter_errors(&doc).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{name}: {errors:?}");
        Policy::from_value(&doc).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    let broken = read("examples/broken.json");
    assert!(!schema.is_valid(&broken));
    assert!(Policy::from_value(&broken).is_err());
}

/// A named change to the web-app example that breaks a structural rule.
type Breakage = (&'static str, fn(&mut Value));

#[test]
fn structural_violations_are_refused_by_both() {
    let schema = validator();
    let base = read("examples/web-app.json");
    let edits: &[Breakage] = &[
        ("unknown top-level field", (|v| v["pipelineName"] = json!("web"))),
        ("schemaVersion 2", (|v| v["schemaVersion"] = json!(2))),
        (
            "missing trustedOwners",
            (|v| drop(v.as_object_mut().unwrap().remove("trustedOwners"))),
        ),
        ("empty trustedOwners", (|v| v["trustedOwners"] = json!([]))),
        (
            "name-only AMI source",
            (|v| v["sources"]["amis"] = json!([{"namePattern": "soe-*"}])),
        ),
        (
            "bad account",
            (|v| v["publish"]["shareWith"]["accounts"] = json!(["12345"])),
        ),
        (
            "bad region",
            (|v| v["publish"]["regions"][0]["region"] = json!("Europe")),
        ),
        ("no regions", (|v| v["publish"]["regions"] = json!([]))),
        (
            "kms key id not an ARN",
            (|v| v["publish"]["regions"][1]["kmsKeyId"] = json!("alias/ami")),
        ),
        (
            "negative finding limit",
            (|v| v["gate"]["maxFindings"]["high"] = json!(-1)),
        ),
        ("unknown severity", (|v| v["gate"]["maxFindings"]["severe"] = json!(0))),
        ("unknown onFailure", (|v| v["gate"]["onFailure"] = json!("ignore"))),
        ("concurrency 0", (|v| v["publish"]["concurrency"] = json!(0))),
        ("no attempts at all", (|v| v["rebake"]["maxAttempts"] = json!(0))),
        ("unknown rebake field", (|v| v["rebake"]["retries"] = json!(2))),
        (
            "topic is a queue",
            (|v| v["notify"]["topicArn"] = json!("arn:aws:sqs:us-east-1:111122223333:q")),
        ),
        (
            "reserved parameter",
            (|v| v["publish"]["ssmParameters"] = json!(["/aws/mine"])),
        ),
        (
            "relative hierarchical parameter",
            (|v| v["sources"]["ssmParameters"] = json!(["soe/latest"])),
        ),
        ("retention keep 0", (|v| v["retention"]["keep"] = json!(0))),
        (
            "rebuild sometimes",
            (|v| v["sources"]["schedules"][0]["rebuild"] = json!("sometimes")),
        ),
        (
            "OU id as bare id",
            (|v| v["publish"]["shareWith"]["organizationalUnits"] = json!(["ou-ab12-34cd56ef"])),
        ),
    ];
    for (what, edit) in edits {
        let mut doc = base.clone();
        edit(&mut doc);
        assert!(!schema.is_valid(&doc), "schema accepted: {what}");
        assert!(Policy::from_value(&doc).is_err(), "Policy::parse accepted: {what}");
    }
}
