//! The state machine against the step contract: every path through `statemachine/bake.asl.json`
//! is walked with typed outputs (`bakery_core::steps`), and at every state the `Parameters`,
//! `ItemSelector`, `ResultSelector`, `ResultPath`, Choice variables and Fail paths are evaluated
//! as Step Functions would. Each Task's input must decode as its function's input type, and
//! carry no field that type does not read; each path must resolve. A field renamed in a type,
//! or a path changed in the ASL, fails here.

use bakery_core::ids::{AmiId, Region};
use bakery_core::publication::BakeStatus;
use bakery_core::retention::Kept;
use bakery_core::steps::{
    decode, AmiLineage, AnnounceRequest, Announced, ApprovalGiven, BakeRequest, BakedImage, BuildOutcome, BuildStarted,
    BuildStatus, CheckRequest, Findings, GateRequest, GateResult, KeptImage, PublishRegionRequest, Recorded,
    RegionPublished, RegionRetention, RegionRevoked, RetainRequest, RetentionApplied, WatchRequest,
};
use bakery_core::{Policy, SourceAmi};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Map, Value};
use std::collections::BTreeSet;

const EXECUTION: &str = "arn:aws:states:us-east-1:111122223333:execution:bakery-bake:web-0a1b2c3d4e5f6789";
const IMAGE_ARN: &str = "arn:aws:imagebuilder:us-east-1:111122223333:image/web/1.0.1/1";
const PIPELINE_ARN: &str = "arn:aws:imagebuilder:us-east-1:111122223333:image-pipeline/web";

/// The definition as the template deploys it: function ARNs and numbers substituted.
fn definition() -> Value {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../statemachine/bake.asl.json")).unwrap();
    let mut out = String::new();
    let mut rest = text.as_str();
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let end = rest[i..].find('}').unwrap() + i;
        let name = &rest[i + 2..end];
        out.push_str(&match name.strip_suffix("FunctionArn") {
            Some(f) => format!("arn:aws:lambda:us-east-1:111122223333:function:bakery-{f}"),
            None => "1".to_owned(),
        });
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    serde_json::from_str(&out).unwrap()
}

fn policy() -> Policy {
    Policy::parse(
        json!({
            "schemaVersion": 1,
            "pipelineArn": PIPELINE_ARN,
            "sources": {"amis": [{"owner": "444455556666", "namePattern": "soe-al2023-*"}]},
            "trustedOwners": ["444455556666"],
            "publish": {
                "regions": [
                    {"region": "us-east-1"},
                    {"region": "eu-west-1", "kmsKeyId": "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"}
                ],
                "shareWith": {"accounts": ["210987654321"]},
                "ssmParameters": ["/bakery/web/latest"],
                "concurrency": 2
            },
            "notify": {"topicArn": "arn:aws:sns:us-east-1:111122223333:bakery-publications"}
        })
        .to_string()
        .as_bytes(),
    )
    .unwrap()
}

fn ami(n: u8) -> AmiId {
    AmiId::parse(&format!("ami-0{n:016x}")).unwrap()
}

fn region(r: &str) -> Region {
    Region::parse(r).unwrap()
}

fn to_json(v: impl Serialize) -> Value {
    serde_json::to_value(v).unwrap()
}

/// The execution input, as the trigger starts it.
fn execution_input() -> Value {
    to_json(BakeRequest {
        bake_id: "web-0a1b2c3d4e5f6789".into(),
        pipeline_arn: PIPELINE_ARN.into(),
        source_ami: Some(SourceAmi {
            image_id: ami(1),
            region: region("us-east-1"),
            owner: None,
        }),
        parent_chain: vec![ami(2)],
        trigger: Some("soeRelease".into()),
        attempt: 1,
        max_attempts: 3,
    })
}

/// Which function a Task calls: the template's parameter name (`StartBuild` for
/// `${StartBuildFunctionArn}`).
fn function_of(state: &Value) -> String {
    let arn = match state["Resource"].as_str().unwrap() {
        r if r.starts_with("arn:aws:states:::lambda:invoke") => state["Parameters"]["FunctionName"].as_str().unwrap(),
        r => r,
    };
    arn.rsplit(':').next().unwrap().trim_start_matches("bakery-").to_owned()
}

/// The input decodes as `T`, and every field the ASL passes is one `T` reads.
fn contract<T: DeserializeOwned + Serialize>(at: &str, step: &str, input: &Value) -> T {
    let typed: T = decode(step, input.clone()).unwrap_or_else(|e| panic!("{at}: {e}"));
    let read = to_json(&typed);
    if let (Some(sent), Some(read)) = (input.as_object(), read.as_object()) {
        for key in sent.keys() {
            assert!(
                read.contains_key(key),
                "{at}: the state machine sends {key:?}, which {step}'s input does not read"
            );
        }
    }
    typed
}

/// What each function answers, typed, for the input it got.
fn call(at: &str, function: &str, input: &Value) -> Value {
    match function {
        "StartBuild" => {
            let req: BakeRequest = contract(at, "start-build", input);
            to_json(BuildStarted {
                image_build_version_arn: IMAGE_ARN.into(),
                recipe_arn: "arn:aws:imagebuilder:us-east-1:111122223333:image-recipe/web/1.0.1".into(),
                recipe_version: "1.0.1".into(),
                parent_image: req.source_ami.map(|s| s.image_id.to_string()).unwrap_or_default(),
                pipeline_name: "web".into(),
                home_region: "us-east-1".into(),
                account_id: "111122223333".into(),
                platform: Some("Linux".into()),
                policy: policy(),
            })
        }
        "BuildWatch" => {
            let _: WatchRequest = contract(at, "build-watch", input);
            to_json(BuildStatus::new("AVAILABLE", None))
        }
        "Gate" => {
            let req: GateRequest = contract(at, "gate", input);
            to_json(GateResult {
                passed: true,
                reasons: vec![],
                outcome: BuildOutcome {
                    status: "AVAILABLE".into(),
                    reason: None,
                    tests_enabled: true,
                    findings: Findings::default(),
                },
                image: Some(BakedImage {
                    region: region("us-east-1"),
                    image_id: ami(3),
                    name: "web 1.0.1".into(),
                    snapshot_ids: vec!["snap-0123456789abcdef0".into()],
                }),
                quarantined: false,
                deregistered: false,
                lineage: AmiLineage {
                    bake_id: req.state.bake_id.clone(),
                    source_ami: ami(1).to_string(),
                    parent_chain: req.state.parent_chain.clone(),
                    recipe_arn: req.state.build.recipe_arn.clone(),
                    recipe_version: req.state.build.recipe_version.clone(),
                    pipeline_arn: req.state.pipeline_arn.clone(),
                    execution_arn: req.execution_arn.clone(),
                    image_build_version_arn: req.state.build.image_build_version_arn.clone(),
                    build_date: "2026-12-03T10:00:00Z".into(),
                },
            })
        }
        "PublishRegion" => match decode::<PublishRegionRequest>("publish-region", input.clone()) {
            Ok(PublishRegionRequest::Publish(_)) => {
                let req: bakery_core::steps::PublishRequest = contract(at, "publish-region", input);
                to_json(RegionPublished {
                    region: req.target.region.clone(),
                    image_id: ami(4),
                    snapshot_ids: vec!["snap-0123456789abcdef1".into()],
                    parameters: req.ssm_parameters.clone(),
                })
            }
            Ok(PublishRegionRequest::Revoke(req)) => {
                let mut without_flag = input.clone();
                without_flag.as_object_mut().unwrap().remove("revoke");
                let _: bakery_core::steps::PublishRequest = contract(at, "publish-region", &without_flag);
                to_json(RegionRevoked {
                    region: req.target.region.clone(),
                    revoked: vec![ami(4)],
                    deleted_parameters: vec![],
                })
            }
            Ok(PublishRegionRequest::Check(_)) => {
                let req: CheckRequest = contract(at, "publish-region", input);
                let published: Vec<Value> = req
                    .published
                    .iter()
                    .map(to_json)
                    .filter(|r| r.get("error").is_none())
                    .collect();
                Value::Array(published)
            }
            Ok(PublishRegionRequest::Retain(req)) => {
                let mut without_flag = input.clone();
                without_flag.as_object_mut().unwrap().remove("retain");
                let _: RetainRequest = contract(at, "publish-region", &without_flag);
                to_json(RetentionApplied {
                    regions: vec![RegionRetention {
                        region: req.image.region.clone(),
                        kept: vec![KeptImage {
                            image_id: ami(4),
                            reason: Kept::Newest,
                        }],
                        deregistered: vec![ami(5)],
                        deleted_snapshots: vec!["snap-0123456789abcdef2".into()],
                    }],
                })
            }
            Err(e) => panic!("{at}: {e}"),
        },
        "Announce" => {
            let req: AnnounceRequest = contract(at, "announce", input);
            if req.status == BakeStatus::AwaitingApproval {
                assert!(
                    req.task_token.is_some(),
                    "{at}: the wait for approval sends no task token"
                );
                // What the task token is answered with: `bakery approve`'s output.
                return to_json(ApprovalGiven {
                    approved_by: "arn:aws:iam::111122223333:user/alice".into(),
                    approved_at: "2026-12-03T10:00:00Z".into(),
                });
            }
            if req.record {
                to_json(Recorded { recorded: 2 })
            } else {
                to_json(Announced {
                    message_id: "m-1".into(),
                    topic_arn: "arn:aws:sns:us-east-1:111122223333:bakery-publications".into(),
                })
            }
        }
        other => panic!("{at}: a Task calls {other}, which has no step contract"),
    }
}

/// `$`, `$.a.b` or `$$.a.b`, against the state and the context object.
fn path<'v>(at: &str, p: &str, doc: &'v Value, ctx: &'v Value) -> &'v Value {
    let (root, rest) = match p.strip_prefix("$$") {
        Some(rest) => (ctx, rest),
        None => (
            doc,
            p.strip_prefix('$').unwrap_or_else(|| panic!("{at}: {p} is not a path")),
        ),
    };
    let mut v = root;
    for key in rest.split('.').filter(|k| !k.is_empty()) {
        v = v
            .get(key)
            .unwrap_or_else(|| panic!("{at}: {p}: no {key:?} in {}", brief(v)));
    }
    v
}

fn brief(v: &Value) -> String {
    match v {
        Value::Object(o) => format!("{{{}}}", o.keys().cloned().collect::<Vec<_>>().join(", ")),
        other => other.to_string(),
    }
}

/// A payload template: `"key.$"` values are paths or intrinsic functions, the rest literal.
fn template(at: &str, t: &Value, doc: &Value, ctx: &Value) -> Value {
    match t {
        Value::Object(o) => {
            let mut out = Map::new();
            for (k, v) in o {
                match k.strip_suffix(".$") {
                    Some(key) => {
                        let expr = v.as_str().unwrap();
                        out.insert(key.to_owned(), expression(at, expr, doc, ctx));
                    }
                    None => {
                        out.insert(k.clone(), template(at, v, doc, ctx));
                    }
                }
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

fn expression(at: &str, expr: &str, doc: &Value, ctx: &Value) -> Value {
    match expr
        .strip_prefix("States.JsonToString(")
        .and_then(|e| e.strip_suffix(')'))
    {
        Some(arg) => Value::String(path(at, arg, doc, ctx).to_string()),
        None if expr.starts_with("States.") => panic!("{at}: intrinsic {expr} is not modelled here"),
        None => path(at, expr, doc, ctx).clone(),
    }
}

/// ResultPath: the whole state (`$`), a field of it (created as needed), or nothing (null).
fn put(at: &str, doc: &Value, result_path: Option<&Value>, result: Value) -> Value {
    let p = match result_path {
        None => return result,
        Some(Value::Null) => return doc.clone(),
        Some(p) => p.as_str().unwrap(),
    };
    if p == "$" {
        return result;
    }
    let mut out = doc.clone();
    let keys: Vec<&str> = p
        .strip_prefix("$.")
        .unwrap_or_else(|| panic!("{at}: ResultPath {p}"))
        .split('.')
        .collect();
    let mut v = &mut out;
    for key in &keys[..keys.len() - 1] {
        v = v
            .as_object_mut()
            .unwrap()
            .entry(key.to_string())
            .or_insert_with(|| json!({}));
    }
    v.as_object_mut()
        .unwrap()
        .insert(keys[keys.len() - 1].to_owned(), result);
    out
}

/// Walks every path from `start` with `input`; returns each way it can end (the state's output
/// at an `End`), and records each state entered.
fn walk(states: &Value, start: &str, input: Value, ctx: &Value, entered: &mut BTreeSet<String>) -> Vec<Value> {
    let mut ends = Vec::new();
    let mut todo = vec![(start.to_owned(), input)];
    let mut edges = BTreeSet::new();
    while let Some((name, doc)) = todo.pop() {
        entered.insert(name.clone());
        let s = &states[&name];
        let at = name.as_str();
        // Where the state goes next: (state name, or null for an end; its input; which way).
        let mut successors: Vec<(Value, Value, String)> = Vec::new();
        let caught = |doc: &Value| -> Vec<(Value, Value, String)> {
            let cause = "{\"errorType\":\"X\",\"errorMessage\":\"why\"}";
            s["Catch"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| {
                    let error = json!({"Error": c["ErrorEquals"][0], "Cause": cause});
                    let out = put(at, doc, c.get("ResultPath"), error);
                    (c["Next"].clone(), out, format!("catch {}", c["ErrorEquals"]))
                })
                .collect()
        };
        match s["Type"].as_str().unwrap() {
            "Task" => {
                let ctx = &{
                    let mut c = ctx.clone();
                    c["Task"] = json!({"Token": "AQB8token"});
                    c
                };
                let input = match s["Resource"].as_str().unwrap() {
                    r if r.starts_with("arn:aws:states:::lambda:invoke") => {
                        template(at, &s["Parameters"]["Payload"], &doc, ctx)
                    }
                    _ => s.get("Parameters").map_or(doc.clone(), |p| template(at, p, &doc, ctx)),
                };
                if let Some(p) = s["TimeoutSecondsPath"].as_str() {
                    let n = path(at, p, &doc, ctx);
                    assert!(
                        n.as_u64().is_some_and(|n| n > 0),
                        "{at}: TimeoutSecondsPath {p} is {n}, not seconds"
                    );
                }
                let mut out = call(at, &function_of(s), &input);
                if let Some(selector) = s.get("ResultSelector") {
                    out = template(at, selector, &out, ctx);
                }
                let after = put(at, &doc, s.get("ResultPath"), out);
                successors.extend(caught(&doc));
                let to = if s["End"] == true {
                    Value::Null
                } else {
                    s["Next"].clone()
                };
                successors.push((to, after, "success".into()));
            }
            "Pass" => {
                let out = s.get("Parameters").map_or(doc.clone(), |p| template(at, p, &doc, ctx));
                let after = put(at, &doc, s.get("ResultPath"), out);
                let to = if s["End"] == true {
                    Value::Null
                } else {
                    s["Next"].clone()
                };
                successors.push((to, after, "pass".into()));
            }
            "Choice" => {
                for (i, rule) in s["Choices"].as_array().unwrap().iter().enumerate() {
                    for cond in rule["And"].as_array().cloned().unwrap_or_else(|| vec![rule.clone()]) {
                        path(at, cond["Variable"].as_str().unwrap(), &doc, ctx);
                    }
                    successors.push((rule["Next"].clone(), doc.clone(), format!("choice {i}")));
                }
                successors.push((s["Default"].clone(), doc.clone(), "default".into()));
            }
            "Map" => {
                let items = path(at, s["ItemsPath"].as_str().unwrap_or("$"), &doc, ctx)
                    .as_array()
                    .unwrap_or_else(|| panic!("{at}: ItemsPath is not a list"))
                    .clone();
                assert!(!items.is_empty(), "{at}: no items to walk");
                if let Some(p) = s["MaxConcurrencyPath"].as_str() {
                    let n = path(at, p, &doc, ctx);
                    assert!(n.is_u64(), "{at}: MaxConcurrencyPath {p} is {n}, not a count");
                }
                let processor = &s["ItemProcessor"];
                let mut results = Vec::new();
                for (index, item) in items.iter().enumerate() {
                    let mut c = ctx.clone();
                    c["Map"] = json!({"Item": {"Index": index, "Value": item}});
                    let item_input = s
                        .get("ItemSelector")
                        .map_or(item.clone(), |sel| template(at, sel, &doc, &c));
                    let mut inner = walk(
                        &processor["States"],
                        processor["StartAt"].as_str().unwrap(),
                        item_input,
                        &c,
                        entered,
                    );
                    // Every way an item can end, the first item's as success and the rest as found.
                    results.append(&mut inner);
                }
                let after = put(at, &doc, s.get("ResultPath"), Value::Array(results));
                successors.extend(caught(&doc));
                successors.push((s["Next"].clone(), after, "success".into()));
            }
            "Fail" => {
                for key in ["ErrorPath", "CausePath"] {
                    if let Some(p) = s[key].as_str() {
                        assert!(path(at, p, &doc, ctx).is_string(), "{at}: {key} {p} is not a string");
                    }
                }
            }
            "Succeed" => successors.push((Value::Null, doc, "succeed".into())),
            other => panic!("{at}: state type {other} is not modelled here"),
        }
        for (to, doc, via) in successors {
            match to.as_str() {
                Some(to) => {
                    if edges.insert((name.clone(), to.to_owned(), via)) {
                        todo.push((to.to_owned(), doc));
                    }
                }
                None => ends.push(doc),
            }
        }
    }
    ends
}

fn all_states(states: &Value, into: &mut BTreeSet<String>) {
    for (name, s) in states.as_object().unwrap() {
        into.insert(name.clone());
        if let Some(inner) = s.get("ItemProcessor") {
            all_states(&inner["States"], into);
        }
    }
}

#[test]
fn every_path_of_the_bake_keeps_to_the_step_contract() {
    let asl = definition();
    let ctx = json!({"Execution": {"Id": EXECUTION, "Input": execution_input()}});
    let mut entered = BTreeSet::new();
    walk(
        &asl["States"],
        asl["StartAt"].as_str().unwrap(),
        execution_input(),
        &ctx,
        &mut entered,
    );
    let mut every = BTreeSet::new();
    all_states(&asl["States"], &mut every);
    let unreached: Vec<&String> = every.difference(&entered).collect();
    assert!(unreached.is_empty(), "states no path reaches: {unreached:?}");
}

/// Why the walk of `asl` fails.
fn walk_fails(asl: &Value) -> String {
    let ctx = json!({"Execution": {"Id": EXECUTION}});
    let walked = std::panic::catch_unwind(|| {
        walk(
            &asl["States"],
            "StartBuild",
            execution_input(),
            &ctx,
            &mut BTreeSet::new(),
        );
    });
    let why = walked.expect_err("the walk passed");
    why.downcast_ref::<String>().cloned().unwrap_or_default()
}

/// The walk fails where Step Functions would send a step something its type cannot read.
#[test]
fn the_walk_catches_a_path_the_types_do_not_have() {
    let mut asl = definition();
    asl["States"]["WaitForBuild"]["Parameters"]["Payload"]["imageBuildVersionArn.$"] = json!("$.build.imageArn");
    let why = walk_fails(&asl);
    assert!(why.contains("WaitForBuild: $.build.imageArn: no \"imageArn\""), "{why}");

    let mut asl = definition();
    asl["States"]["Gate"]["Parameters"]["extra"] = json!(1);
    let why = walk_fails(&asl);
    assert!(
        why.contains("sends \"extra\", which gate's input does not read"),
        "{why}"
    );
}

/// Bad input to any step is a typed error naming the field's path, before anything is called.
#[test]
fn a_bad_field_of_any_step_is_named_by_its_path() {
    let cases: [(&str, Value, &str); 5] = [
        ("start-build", json!({"bakeId": "b", "pipelineArn": 7}), "pipelineArn"),
        (
            "build-watch",
            json!({"imageBuildVersionArn": IMAGE_ARN, "taskToken": false}),
            "taskToken",
        ),
        ("gate", json!({"executionArn": "x", "state": {"bakeId": "b"}}), "state"),
        ("publish-region", json!({"check": true, "published": {}}), "published"),
        (
            "announce",
            json!({"status": "MAYBE", "state": {"bakeId": "b", "pipelineArn": PIPELINE_ARN}, "executionArn": "x"}),
            "status",
        ),
    ];
    for (step, input, field) in cases {
        let e = match step {
            "start-build" => decode::<BakeRequest>(step, input).map(drop),
            "build-watch" => decode::<WatchRequest>(step, input).map(drop),
            "gate" => decode::<GateRequest>(step, input).map(drop),
            "publish-region" => decode::<PublishRegionRequest>(step, input).map(drop),
            _ => decode::<AnnounceRequest>(step, input).map(drop),
        }
        .unwrap_err();
        let text = e.to_string();
        assert!(text.starts_with(&format!("{step} input: ")), "{text}");
        assert!(text.contains(field), "{step}: {text}");
    }
}
