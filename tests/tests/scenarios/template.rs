//! template.yaml and the state machines agree: every `${Key}` placeholder has a
//! DefinitionSubstitutions entry and every entry is used, the definition is JSON once
//! substituted, every Task's function is `!GetAtt <Id>.Arn` of a function of the template (key
//! `<Id>Arn`), and every function's `Binary` is a workspace package under `functions/`.

use gateway::template::Template;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;
use tests::repo;

/// A function substitution's value once substituted: a string that names its key, so the Task
/// that uses it can be traced back to the template.
const MARK: &str = "template-substitution:";

fn placeholders(asl: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = asl;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let end = after.find('}').unwrap_or(after.len());
        out.insert(after[..end].to_owned());
        rest = &after[end..];
    }
    out
}

/// `{"Fn::GetAtt": [id, "Arn"]}` → id.
fn get_att_arn(v: &Value) -> Option<&str> {
    match v.get("Fn::GetAtt")?.as_array()?.as_slice() {
        [id, attr] if attr == "Arn" => id.as_str(),
        _ => None,
    }
}

/// Every Task state, nested ones (Map, Parallel) included.
fn tasks<'a>(states: &'a Value, out: &mut Vec<(&'a str, &'a Value)>) {
    for (name, state) in states.as_object().into_iter().flatten() {
        if state["Type"] == "Task" {
            out.push((name, state));
        }
        for nested in [&state["ItemProcessor"], &state["Iterator"]] {
            tasks(&nested["States"], out);
        }
        for branch in state["Branches"].as_array().into_iter().flatten() {
            tasks(&branch["States"], out);
        }
    }
}

/// The function a Task calls, as written: its Resource, or FunctionName for `lambda:invoke`.
fn task_function(task: &Value) -> Option<&str> {
    let resource = task["Resource"].as_str()?;
    if resource.starts_with("arn:aws:states:::lambda:invoke") {
        task.pointer("/Parameters/FunctionName").and_then(Value::as_str)
    } else if resource.starts_with("arn:aws:states:::") {
        None // another service integration
    } else {
        Some(resource)
    }
}

/// Every disagreement between the template, its state machine definitions and the workspace.
fn problems(template: &str, read: impl Fn(&str) -> Option<String>) -> Vec<String> {
    let t = Template::parse(template).expect("template.yaml parses");
    let functions: BTreeSet<&str> = t
        .of_type("AWS::Serverless::Function")
        .map(|(id, _)| id.as_str())
        .collect();
    let mut problems = Vec::new();

    for (id, machine) in t.of_type("AWS::Serverless::StateMachine") {
        let props = &machine["Properties"];
        let Some(uri) = props["DefinitionUri"].as_str() else {
            problems.push(format!("{id}: no DefinitionUri"));
            continue;
        };
        let Some(asl) = read(uri) else {
            problems.push(format!("{id}: cannot read {uri}"));
            continue;
        };
        let subs = props["DefinitionSubstitutions"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        let used = placeholders(&asl);
        let given: BTreeSet<String> = subs.keys().cloned().collect();
        for key in used.difference(&given) {
            problems.push(format!("{uri}: ${{{key}}} has no DefinitionSubstitutions key in {id}"));
        }
        for key in given.difference(&used) {
            problems.push(format!("{id}: DefinitionSubstitutions {key} is not used in {uri}"));
        }

        // Substitute: functions by a traceable mark, parameters by their default, literals as is.
        let mut text = asl.clone();
        for (key, value) in &subs {
            let with = match (get_att_arn(value), value.get("Ref").and_then(Value::as_str), value) {
                (Some(_), _, _) => format!("{MARK}{key}"),
                (_, Some(param), _) => match t.root.pointer(&format!("/Parameters/{param}/Default")) {
                    Some(Value::String(s)) => s.clone(),
                    Some(other) => other.to_string(),
                    None => String::new(),
                },
                (_, _, Value::String(s)) => s.clone(),
                (_, _, other) => other.to_string(),
            };
            text = text.replace(&format!("${{{key}}}"), &with);
        }
        let definition: Value = match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(e) => {
                problems.push(format!("{uri}: not JSON after substitution: {e}"));
                continue;
            }
        };

        let mut all = Vec::new();
        tasks(&definition["States"], &mut all);
        for (state, task) in all {
            let Some(function) = task_function(task) else { continue };
            let Some(key) = function.strip_prefix(MARK) else {
                problems.push(format!(
                    "{uri}: Task {state} calls {function}, not a function of the template"
                ));
                continue;
            };
            match get_att_arn(&subs[key]) {
                Some(fid) if functions.contains(fid) && key == format!("{fid}Arn") => {}
                Some(fid) if functions.contains(fid) => {
                    problems.push(format!("{id}: substitution {key} for {fid} should be named {fid}Arn"))
                }
                _ => problems.push(format!(
                    "{uri}: Task {state} calls ${{{key}}}, which is not !GetAtt <Function>.Arn of an AWS::Serverless::Function"
                )),
            }
        }
    }

    let members = read("Cargo.toml").unwrap_or_default();
    for (id, f) in t.of_type("AWS::Serverless::Function") {
        if f.pointer("/Metadata/BuildMethod").and_then(Value::as_str) != Some("rust-cargolambda") {
            problems.push(format!("{id}: Metadata.BuildMethod is not rust-cargolambda"));
        }
        let Some(binary) = f.pointer("/Metadata/BuildProperties/Binary").and_then(Value::as_str) else {
            problems.push(format!("{id}: no Metadata.BuildProperties.Binary"));
            continue;
        };
        let dir = format!("functions/{binary}");
        let manifest = read(&format!("{dir}/Cargo.toml")).unwrap_or_default();
        if !manifest.lines().any(|l| l.trim() == format!("name = \"{binary}\"")) {
            problems.push(format!(
                "{id}: Binary {binary} has no package {binary} in {dir}/Cargo.toml"
            ));
        }
        if !members.contains(&format!("\"{dir}\"")) && !members.contains("\"functions/*\"") {
            problems.push(format!("{id}: {dir} is not a workspace member"));
        }
    }
    problems
}

fn read_repo(path: &str) -> Option<String> {
    std::fs::read_to_string(repo().join(Path::new(path))).ok()
}

#[test]
fn template_state_machines_and_functions_agree() {
    let template = read_repo("template.yaml").expect("template.yaml");
    let found = problems(&template, read_repo);
    assert!(found.is_empty(), "template.yaml disagrees:\n{}", found.join("\n"));
}

#[test]
fn every_disagreement_is_reported() {
    let template = r#"
Resources:
  GoodFunction:
    Type: AWS::Serverless::Function
    Metadata: {BuildMethod: rust-cargolambda, BuildProperties: {Binary: good}}
  LostFunction:
    Type: AWS::Serverless::Function
    Metadata: {BuildMethod: rust-cargolambda, BuildProperties: {Binary: lost}}
  Topic:
    Type: AWS::SNS::Topic
  Machine:
    Type: AWS::Serverless::StateMachine
    Properties:
      DefinitionUri: m.asl.json
      DefinitionSubstitutions:
        GoodFunctionArn: !GetAtt GoodFunction.Arn
        TopicArn: !GetAtt Topic.Arn
        Wait: "5"
        Unused: x
"#;
    let asl = r#"{"StartAt": "A", "States": {
        "A": {"Type": "Task", "Resource": "${GoodFunctionArn}", "TimeoutSeconds": ${Wait}, "Next": "B"},
        "B": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
              "Parameters": {"FunctionName": "${TopicArn}"}, "Next": "C"},
        "C": {"Type": "Map", "ItemProcessor": {"StartAt": "D", "States": {
              "D": {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:1:function:x", "End": true}}}, "Next": "E"},
        "E": {"Type": "Task", "Resource": "${Missing}", "End": true}}}"#;
    let read = |path: &str| match path {
        "m.asl.json" => Some(asl.to_owned()),
        "Cargo.toml" => Some(r#"members = ["functions/good"]"#.to_owned()),
        "functions/good/Cargo.toml" => Some("[package]\nname = \"good\"\n".to_owned()),
        _ => None,
    };
    let found = problems(template, read);
    let expect = [
        "${Missing} has no DefinitionSubstitutions key",
        "DefinitionSubstitutions Unused is not used",
        "Task B calls ${TopicArn}, which is not !GetAtt <Function>.Arn",
        "Task D calls arn:aws:lambda:us-east-1:1:function:x, not a function of the template",
        "LostFunction: Binary lost has no package lost",
        "LostFunction: functions/lost is not a workspace member",
    ];
    for e in expect {
        assert!(found.iter().any(|p| p.contains(e)), "{e:?} not in {found:#?}");
    }
    // E's unknown placeholder is reported twice: no substitution, and no function of the template.
    assert_eq!(found.len(), expect.len() + 1, "{found:#?}");
}

/// The dashboard's body is JSON once substituted, every `${Id}` or `${Id.Attr}` names a resource
/// of the template, and the Bakery metrics it graphs are exactly the ones the functions write
/// (`bakery_aws::metrics`).
#[test]
fn the_dashboard_graphs_what_the_stack_writes() {
    use bakery_aws::metrics::{BAKES_FAILED, BAKES_STARTED, BAKES_SUCCEEDED};
    let text = read_repo("template.yaml").expect("template.yaml");
    let t = Template::parse(&text).unwrap();
    let body = t.root["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
        .as_str()
        .expect("DashboardBody is a !Sub string")
        .to_owned();
    let resources = t.root["Resources"].as_object().unwrap();
    let mut substituted = body.clone();
    for p in placeholders(&body) {
        let id = p.split('.').next().unwrap_or_default();
        assert!(
            p.starts_with("AWS::") || resources.contains_key(id),
            "${{{p}}} names no resource of the template"
        );
        substituted = substituted.replace(&format!("${{{p}}}"), "x");
    }
    let doc: Value = serde_json::from_str(&substituted).unwrap_or_else(|e| panic!("{e}: {substituted}"));
    let mut bakery = BTreeSet::new();
    for w in doc["widgets"].as_array().unwrap() {
        for m in w["properties"]["metrics"].as_array().unwrap() {
            if let Some(expr) = m[0]["expression"].as_str() {
                let name = expr.split("MetricName=\"").nth(1).and_then(|r| r.split('"').next());
                assert!(expr.contains("{Bakery,Pipeline}"), "{expr}");
                bakery.insert(name.unwrap_or_default().to_owned());
            } else {
                assert!(m[0].as_str().is_some_and(|ns| ns.starts_with("AWS/")), "{m}");
            }
        }
    }
    let written: BTreeSet<String> = [BAKES_STARTED, BAKES_SUCCEEDED, BAKES_FAILED].map(str::to_owned).into();
    assert_eq!(bakery, written);
}
