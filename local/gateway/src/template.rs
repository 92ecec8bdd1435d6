//! Reads the SAM template as the local AWS needs it: functions (binary, environment, timeout),
//! EventBridge rules and schedules, the functions' SNS subscriptions, and the resources to
//! create in moto, with `Ref`, `GetAtt`, `Sub`, `Join`, `If`, `Select` and `Split` resolved to
//! the local resources' names.

use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("cannot read the template: {0}")]
    Read(String),
    #[error("{0}")]
    Unresolved(String),
}

/// The template after YAML tags became their JSON intrinsic form (`!Ref x` → `{"Ref": "x"}`).
#[derive(Debug, Clone)]
pub struct Template {
    pub root: Value,
}

/// What a logical id resolves to: its `Ref` value and its `GetAtt` attributes.
#[derive(Debug, Clone, Default)]
pub struct Physical {
    pub reference: String,
    pub attrs: BTreeMap<String, String>,
}

/// The stack's names: parameters, pseudo parameters and the resources created so far.
#[derive(Debug, Clone)]
pub struct Names {
    pub stack: String,
    pub region: String,
    pub account: String,
    pub parameters: BTreeMap<String, String>,
    pub resources: BTreeMap<String, Physical>,
}

/// A Lambda function as the gateway runs it.
#[derive(Debug, Clone)]
pub struct Function {
    pub logical_id: String,
    pub name: String,
    pub binary: String,
    pub timeout_secs: u64,
    pub memory_mb: u64,
    pub environment: BTreeMap<String, String>,
    /// SQS queue ARN for failed asynchronous invocations (DeadLetterQueue or EventInvokeConfig OnFailure).
    pub on_failure: Option<String>,
}

/// An EventBridge rule whose target is a function.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub pattern: Value,
    pub function: String,
}

/// A schedule that invokes a function: its Input (Scheduler) or the Scheduled Event (rules).
#[derive(Debug, Clone)]
pub struct Schedule {
    pub name: String,
    pub function: String,
    /// Scheduler's Input with its `<aws.scheduler.*>` placeholders; None for an EventBridge rule schedule.
    pub input: Option<String>,
    pub scheduler: bool,
}

/// An SNS subscription whose endpoint is a function: an `AWS::SNS::Subscription` with
/// `Protocol: lambda`, or a SAM function's `SNS` event.
#[derive(Debug, Clone)]
pub struct SnsSubscription {
    /// The logical id, or `<FunctionLogicalId><EventId>` for a SAM event.
    pub name: String,
    pub topic_arn: String,
    pub function: String,
    /// The filter policy, if any, matched against `filter_scope`.
    pub filter_policy: Option<Value>,
    pub filter_scope: FilterScope,
}

/// What an SNS filter policy is matched against (`FilterPolicyScope`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FilterScope {
    #[default]
    MessageAttributes,
    MessageBody,
}

impl Template {
    pub fn parse(yaml: &str) -> Result<Self, TemplateError> {
        let v: serde_yaml::Value = serde_yaml::from_str(yaml).map_err(|e| TemplateError::Read(e.to_string()))?;
        Ok(Self { root: to_json(v) })
    }

    pub fn resources(&self) -> impl Iterator<Item = (&String, &Value)> {
        self.root
            .get("Resources")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
    }

    pub fn of_type<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = (&'a String, &'a Value)> + 'a {
        self.resources().filter(move |(_, r)| r["Type"] == kind)
    }

    /// Parameter defaults, overridden by `overrides`.
    pub fn parameters(&self, overrides: &BTreeMap<String, String>) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for (name, p) in self
            .root
            .get("Parameters")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            let default = match &p["Default"] {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                other => other.to_string(),
            };
            out.insert(name.clone(), overrides.get(name).cloned().unwrap_or(default));
        }
        out
    }

    /// Whether the resource's Condition (if any) holds.
    pub fn condition_holds(&self, resource: &Value, names: &Names) -> Result<bool, TemplateError> {
        match resource.get("Condition").and_then(Value::as_str) {
            None => Ok(true),
            Some(c) => self.condition(c, names),
        }
    }

    fn condition(&self, name: &str, names: &Names) -> Result<bool, TemplateError> {
        let c = self
            .root
            .get("Conditions")
            .and_then(|c| c.get(name))
            .ok_or_else(|| TemplateError::Unresolved(format!("unknown condition {name}")))?;
        self.truth(c, names)
    }

    fn truth(&self, v: &Value, names: &Names) -> Result<bool, TemplateError> {
        let (op, arg) = single(v).ok_or_else(|| TemplateError::Unresolved(format!("not a condition: {v}")))?;
        let args = arg.as_array().cloned().unwrap_or_default();
        Ok(match op {
            "Fn::Equals" => {
                let a: Vec<Value> = args.iter().map(|a| self.resolve(a, names)).collect::<Result<_, _>>()?;
                a.len() == 2 && a[0] == a[1]
            }
            "Fn::Not" => !self.truth(args.first().unwrap_or(&Value::Null), names)?,
            "Fn::And" | "Fn::Or" => {
                let values = args
                    .iter()
                    .map(|a| self.truth(a, names))
                    .collect::<Result<Vec<_>, _>>()?;
                if op == "Fn::And" {
                    values.into_iter().all(|b| b)
                } else {
                    values.into_iter().any(|b| b)
                }
            }
            "Condition" => self.condition(arg.as_str().unwrap_or_default(), names)?,
            other => {
                return Err(TemplateError::Unresolved(format!(
                    "unsupported condition function {other}"
                )))
            }
        })
    }

    /// Resolves every intrinsic function in `v`. `AWS::NoValue` removes the key or item.
    pub fn resolve(&self, v: &Value, names: &Names) -> Result<Value, TemplateError> {
        Ok(self.resolve_opt(v, names)?.unwrap_or(Value::Null))
    }

    fn resolve_opt(&self, v: &Value, names: &Names) -> Result<Option<Value>, TemplateError> {
        if let Some((op, arg)) = single(v) {
            if op == "Ref" || op.starts_with("Fn::") {
                return self.intrinsic(op, arg, names);
            }
        }
        Ok(Some(match v {
            Value::Object(m) => {
                let mut out = Map::new();
                for (k, x) in m {
                    if let Some(r) = self.resolve_opt(x, names)? {
                        out.insert(k.clone(), r);
                    }
                }
                Value::Object(out)
            }
            Value::Array(items) => {
                let mut out = Vec::new();
                for x in items {
                    out.extend(self.resolve_opt(x, names)?);
                }
                Value::Array(out)
            }
            other => other.clone(),
        }))
    }

    fn intrinsic(&self, op: &str, arg: &Value, names: &Names) -> Result<Option<Value>, TemplateError> {
        let unresolved = |what: String| TemplateError::Unresolved(what);
        Ok(Some(match op {
            "Ref" => {
                let name = arg.as_str().unwrap_or_default();
                if name == "AWS::NoValue" {
                    return Ok(None);
                }
                Value::String(names.reference(name).ok_or_else(|| unresolved(format!("Ref {name}")))?)
            }
            "Fn::GetAtt" => {
                let (id, attr) = match arg {
                    Value::String(s) => s.split_once('.').unwrap_or((s, "")),
                    Value::Array(a) => (
                        a.first().and_then(Value::as_str).unwrap_or(""),
                        a.get(1).and_then(Value::as_str).unwrap_or(""),
                    ),
                    _ => ("", ""),
                };
                let value = names.resources.get(id).and_then(|p| p.attrs.get(attr));
                Value::String(
                    value
                        .cloned()
                        .ok_or_else(|| unresolved(format!("GetAtt {id}.{attr}")))?,
                )
            }
            "Fn::Sub" => {
                let (text, vars) = match arg {
                    Value::String(s) => (s.as_str(), Map::new()),
                    Value::Array(a) => (
                        a.first().and_then(Value::as_str).unwrap_or_default(),
                        a.get(1).and_then(Value::as_object).cloned().unwrap_or_default(),
                    ),
                    _ => return Err(unresolved(format!("Fn::Sub {arg}"))),
                };
                let mut local = BTreeMap::new();
                for (k, v) in &vars {
                    local.insert(k.clone(), as_text(&self.resolve(v, names)?));
                }
                Value::String(substitute(text, |var| {
                    local.get(var).cloned().or_else(|| match var.split_once('.') {
                        Some((id, attr)) => names.resources.get(id).and_then(|p| p.attrs.get(attr)).cloned(),
                        None => names.reference(var),
                    })
                })?)
            }
            "Fn::Join" => {
                let a = arg.as_array().cloned().unwrap_or_default();
                let sep = a.first().and_then(Value::as_str).unwrap_or_default().to_owned();
                let items = self.resolve(a.get(1).unwrap_or(&Value::Null), names)?;
                let parts: Vec<String> = items.as_array().into_iter().flatten().map(as_text).collect();
                Value::String(parts.join(&sep))
            }
            "Fn::If" => {
                let a = arg.as_array().cloned().unwrap_or_default();
                let cond = a.first().and_then(Value::as_str).unwrap_or_default();
                let branch = if self.condition(cond, names)? {
                    a.get(1)
                } else {
                    a.get(2)
                };
                return self.resolve_opt(branch.unwrap_or(&Value::Null), names);
            }
            "Fn::Select" => {
                let a = arg.as_array().cloned().unwrap_or_default();
                let index = as_text(&self.resolve(a.first().unwrap_or(&Value::Null), names)?)
                    .parse::<usize>()
                    .unwrap_or(usize::MAX);
                let list = self.resolve(a.get(1).unwrap_or(&Value::Null), names)?;
                list.get(index)
                    .cloned()
                    .ok_or_else(|| unresolved(format!("Fn::Select {index} out of range")))?
            }
            "Fn::Split" => {
                let a = arg.as_array().cloned().unwrap_or_default();
                let sep = a.first().and_then(Value::as_str).unwrap_or(",");
                let text = as_text(&self.resolve(a.get(1).unwrap_or(&Value::Null), names)?);
                json!(text.split(sep).collect::<Vec<_>>())
            }
            other => return Err(unresolved(format!("unsupported intrinsic {other}"))),
        }))
    }

    /// Every `AWS::Serverless::Function`, with Globals merged and its environment resolved.
    pub fn functions(&self, names: &Names) -> Result<Vec<Function>, TemplateError> {
        let globals = self.root.pointer("/Globals/Function").cloned().unwrap_or(json!({}));
        let mut out = Vec::new();
        for (id, r) in self.of_type("AWS::Serverless::Function") {
            if !self.condition_holds(r, names)? {
                continue;
            }
            let props = &r["Properties"];
            let prop = |k: &str| props.get(k).or_else(|| globals.get(k));
            let mut env = BTreeMap::new();
            for source in [
                globals.pointer("/Environment/Variables"),
                props.pointer("/Environment/Variables"),
            ]
            .into_iter()
            .flatten()
            {
                for (k, v) in self.resolve(source, names)?.as_object().into_iter().flatten() {
                    env.insert(k.clone(), as_text(v));
                }
            }
            let on_failure = match (
                props.pointer("/DeadLetterQueue/TargetArn"),
                props.pointer("/EventInvokeConfig/DestinationConfig/OnFailure/Destination"),
            ) {
                (Some(v), _) | (None, Some(v)) => Some(as_text(&self.resolve(v, names)?)),
                (None, None) => None,
            };
            out.push(Function {
                logical_id: id.clone(),
                name: names.reference(id).unwrap_or_else(|| id.clone()),
                binary: r
                    .pointer("/Metadata/BuildProperties/Binary")
                    .and_then(Value::as_str)
                    .unwrap_or(id)
                    .to_owned(),
                timeout_secs: prop("Timeout").and_then(Value::as_u64).unwrap_or(3),
                memory_mb: prop("MemorySize").and_then(Value::as_u64).unwrap_or(128),
                environment: env,
                on_failure,
            });
        }
        Ok(out)
    }

    /// EventBridge rules targeting functions: SAM `EventBridgeRule`/`CloudWatchEvent` events and
    /// `AWS::Events::Rule` resources whose targets are functions of this template.
    pub fn rules(&self, names: &Names) -> Result<Vec<Rule>, TemplateError> {
        let mut out = Vec::new();
        for e in self.function_events(names)? {
            if matches!(e.event["Type"].as_str(), Some("EventBridgeRule" | "CloudWatchEvent")) {
                let pattern = self.resolve(&e.event["Properties"]["Pattern"], names)?;
                out.push(Rule {
                    name: e.name,
                    pattern,
                    function: e.function,
                });
            }
        }
        for (id, r) in self.of_type("AWS::Events::Rule") {
            if !self.condition_holds(r, names)? {
                continue;
            }
            let props = self.resolve(&r["Properties"], names)?;
            let Some(pattern) = props.get("EventPattern").cloned() else {
                continue;
            };
            for target in props["Targets"].as_array().into_iter().flatten() {
                let arn = target["Arn"].as_str().unwrap_or_default();
                if let Some(function) = arn.split(":function:").nth(1) {
                    out.push(Rule {
                        name: id.clone(),
                        pattern: pattern.clone(),
                        function: function.to_owned(),
                    });
                }
            }
        }
        Ok(out)
    }

    /// Schedules that invoke functions (SAM `Schedule` and `ScheduleV2` events).
    pub fn schedules(&self, names: &Names) -> Result<Vec<Schedule>, TemplateError> {
        let mut out = Vec::new();
        for e in self.function_events(names)? {
            let scheduler = match e.event["Type"].as_str() {
                Some("ScheduleV2") => true,
                Some("Schedule") => false,
                _ => continue,
            };
            let props = self.resolve(&e.event["Properties"], names)?;
            out.push(Schedule {
                name: props["Name"].as_str().map_or(e.name, str::to_owned),
                function: e.function,
                input: props["Input"].as_str().map(str::to_owned),
                scheduler,
            });
        }
        Ok(out)
    }

    /// Lambda subscriptions to SNS topics: `AWS::SNS::Subscription` resources with
    /// `Protocol: lambda` whose endpoint is a function ARN, and SAM `SNS` events (not those with
    /// `SqsSubscription`, which read a queue). A resource or function whose Condition does not
    /// hold subscribes nothing; an empty TopicArn neither.
    pub fn sns_subscriptions(&self, names: &Names) -> Result<Vec<SnsSubscription>, TemplateError> {
        let mut out = Vec::new();
        for e in self.function_events(names)? {
            if e.event["Type"].as_str() != Some("SNS") {
                continue;
            }
            let props = self.resolve(&e.event["Properties"], names)?;
            // With SqsSubscription the function reads a queue, not the topic: not an SNS delivery.
            if !matches!(props["SqsSubscription"], Value::Null | Value::Bool(false)) {
                continue;
            }
            let Some(topic_arn) = props["Topic"].as_str().filter(|t| !t.is_empty()) else {
                continue;
            };
            out.push(SnsSubscription {
                filter_policy: filter_policy(&props["FilterPolicy"], &e.name)?,
                filter_scope: filter_scope(&props["FilterPolicyScope"], &e.name)?,
                name: e.name,
                topic_arn: topic_arn.to_owned(),
                function: e.function,
            });
        }
        for (id, r) in self.of_type("AWS::SNS::Subscription") {
            if !self.condition_holds(r, names)? {
                continue;
            }
            let props = self.resolve(&r["Properties"], names)?;
            if props["Protocol"].as_str() != Some("lambda") {
                continue;
            }
            let (Some(topic_arn), Some(endpoint)) = (
                props["TopicArn"].as_str().filter(|t| !t.is_empty()),
                props["Endpoint"].as_str(),
            ) else {
                continue;
            };
            let Some(function) = endpoint
                .split(":function:")
                .nth(1)
                .and_then(|rest| rest.split(':').next())
                .filter(|f| !f.is_empty())
            else {
                continue;
            };
            out.push(SnsSubscription {
                name: id.clone(),
                topic_arn: topic_arn.to_owned(),
                function: function.to_owned(),
                filter_policy: filter_policy(&props["FilterPolicy"], id)?,
                filter_scope: filter_scope(&props["FilterPolicyScope"], id)?,
            });
        }
        Ok(out)
    }

    /// Every `Events` entry of the functions whose Condition holds.
    fn function_events<'a>(&'a self, names: &Names) -> Result<Vec<FunctionEvent<'a>>, TemplateError> {
        let mut out = Vec::new();
        for (id, r) in self.of_type("AWS::Serverless::Function") {
            if !self.condition_holds(r, names)? {
                continue;
            }
            let function = names.reference(id).unwrap_or_else(|| id.clone());
            for (event_id, event) in r
                .pointer("/Properties/Events")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
            {
                out.push(FunctionEvent {
                    name: format!("{id}{event_id}"),
                    function: function.clone(),
                    event,
                });
            }
        }
        Ok(out)
    }
}

/// One event source of a SAM function: `<LogicalId><EventId>`, the function's name, the entry.
struct FunctionEvent<'a> {
    name: String,
    function: String,
    event: &'a Value,
}

impl Names {
    pub fn reference(&self, name: &str) -> Option<String> {
        match name {
            "AWS::Region" => Some(self.region.clone()),
            "AWS::AccountId" => Some(self.account.clone()),
            "AWS::StackName" => Some(self.stack.clone()),
            "AWS::Partition" => Some("aws".into()),
            "AWS::URLSuffix" => Some("amazonaws.com".into()),
            _ => self
                .parameters
                .get(name)
                .cloned()
                .or_else(|| self.resources.get(name).map(|p| p.reference.clone())),
        }
    }

    pub fn arn(&self, service: &str, resource: &str) -> String {
        format!("arn:aws:{service}:{}:{}:{resource}", self.region, self.account)
    }
}

/// `{"Ref": x}` and `{"Fn::...": x}`: the single key of an intrinsic.
fn single(v: &Value) -> Option<(&str, &Value)> {
    match v.as_object() {
        Some(m) if m.len() == 1 => m.iter().next().map(|(k, v)| (k.as_str(), v)),
        _ => None,
    }
}

/// A subscription's FilterPolicy: a JSON object, or (as CloudFormation also takes it) its text.
fn filter_policy(v: &Value, owner: &str) -> Result<Option<Value>, TemplateError> {
    let policy = match v {
        Value::Null => return Ok(None),
        Value::String(text) => serde_json::from_str(text)
            .map_err(|e| TemplateError::Unresolved(format!("{owner}: FilterPolicy is not JSON: {e}")))?,
        other => other.clone(),
    };
    if policy.is_object() {
        Ok(Some(policy))
    } else {
        Err(TemplateError::Unresolved(format!(
            "{owner}: FilterPolicy is not an object: {policy}"
        )))
    }
}

fn filter_scope(v: &Value, owner: &str) -> Result<FilterScope, TemplateError> {
    match v.as_str() {
        None if v.is_null() => Ok(FilterScope::MessageAttributes),
        Some("MessageAttributes") => Ok(FilterScope::MessageAttributes),
        Some("MessageBody") => Ok(FilterScope::MessageBody),
        _ => Err(TemplateError::Unresolved(format!(
            "{owner}: FilterPolicyScope is MessageAttributes or MessageBody, not {v}"
        ))),
    }
}

fn as_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `${Name}` substitution; `${!Literal}` stays `${Literal}`.
fn substitute(text: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, TemplateError> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| TemplateError::Unresolved(format!("unclosed ${{ in {text}")))?;
        let var = &after[..end];
        match var.strip_prefix('!') {
            Some(literal) => out.push_str(&format!("${{{literal}}}")),
            None => {
                out.push_str(&lookup(var).ok_or_else(|| TemplateError::Unresolved(format!("${{{var}}} in {text}")))?)
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// YAML with CloudFormation short forms to JSON with the long forms.
fn to_json(v: serde_yaml::Value) -> Value {
    use serde_yaml::Value as Y;
    match v {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => serde_json::to_value(&n).unwrap_or(Value::Null),
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => Value::Array(items.into_iter().map(to_json).collect()),
        Y::Mapping(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| {
                    (
                        k.as_str().map_or_else(|| to_json(k.clone()).to_string(), str::to_owned),
                        to_json(v),
                    )
                })
                .collect(),
        ),
        Y::Tagged(t) => {
            let tag = t.tag.to_string();
            let name = tag.trim_start_matches('!');
            let inner = to_json(t.value);
            match name {
                "Ref" | "Condition" => json!({ name: inner }),
                "GetAtt" => match inner {
                    Value::String(s) => {
                        let (a, b) = s.split_once('.').unwrap_or((&s, ""));
                        json!({"Fn::GetAtt": [a, b]})
                    }
                    other => json!({"Fn::GetAtt": other}),
                },
                other => json!({ format!("Fn::{other}"): inner }),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Names {
        let mut resources = BTreeMap::new();
        resources.insert(
            "Topic".to_owned(),
            Physical {
                reference: "arn:aws:sns:us-east-1:123456789012:t".into(),
                attrs: [("TopicName".to_owned(), "t".to_owned())].into(),
            },
        );
        Names {
            stack: "bakery".into(),
            region: "us-east-1".into(),
            account: "123456789012".into(),
            parameters: [
                ("Prefix".to_owned(), "/p/".to_owned()),
                ("Empty".to_owned(), String::new()),
            ]
            .into(),
            resources,
        }
    }

    #[test]
    fn short_forms_and_intrinsics() {
        let t = Template::parse(
            r#"
Conditions:
  HasEmpty: !Not [!Equals [!Ref Empty, ""]]
  Both: !And [!Condition HasEmpty, !Equals [a, a]]
  Either: !Or [!Condition HasEmpty, !Equals [a, a]]
Resources:
  F:
    Type: AWS::Serverless::Function
    Properties:
      Environment:
        Variables:
          A: !Ref Topic
          B: !GetAtt Topic.TopicName
          C: !Sub "${AWS::StackName}-${Topic.TopicName}-${Prefix}-${!Literal}"
          D: !Join [":", [a, !Ref Prefix]]
          E: !If [HasEmpty, yes, !Ref AWS::NoValue]
          H: !If [Both, both, neither]
          I: !If [Either, either, neither]
          G: !Select [1, !Split [",", "x,y,z"]]
"#,
        )
        .unwrap();
        let f = &t.functions(&names()).unwrap()[0];
        let env = &f.environment;
        assert_eq!(env["A"], "arn:aws:sns:us-east-1:123456789012:t");
        assert_eq!(env["B"], "t");
        assert_eq!(env["C"], "bakery-t-/p/-${Literal}");
        assert_eq!(env["D"], "a:/p/");
        assert!(!env.contains_key("E"), "AWS::NoValue removes the key");
        assert_eq!(env["G"], "y");
        assert_eq!(env["H"], "neither", "And needs every condition");
        assert_eq!(env["I"], "either", "Or needs one");
        assert_eq!(f.timeout_secs, 3);
    }

    const SUBSCRIPTIONS: &str = r#"
Parameters:
  Upstream:
    Type: String
    Default: ""
  FollowUpstream:
    Type: String
    Default: "yes"
Conditions:
  Follow: !Equals [!Ref FollowUpstream, "yes"]
Resources:
  F:
    Type: AWS::Serverless::Function
    Properties:
      Events:
        Notices:
          Type: SNS
          Properties:
            Topic: !Ref Topic
            FilterPolicy:
              kind: [release, {prefix: "hotfix-"}]
            FilterPolicyScope: MessageBody
        Queued:
          Type: SNS
          Properties:
            Topic: !Ref Topic
            SqsSubscription: true
  Follow:
    Type: AWS::SNS::Subscription
    Condition: Follow
    Properties:
      Protocol: lambda
      TopicArn: !Ref Upstream
      Endpoint: !GetAtt F.Arn
      FilterPolicy: '{"channel": [{"anything-but": "beta"}]}'
  ToQueue:
    Type: AWS::SNS::Subscription
    Properties:
      Protocol: sqs
      TopicArn: !Ref Topic
      Endpoint: arn:aws:sqs:us-east-1:123456789012:q
"#;

    fn subscription_names(upstream: &str) -> Names {
        let mut n = names();
        n.parameters.insert("Upstream".into(), upstream.into());
        n.parameters.insert("FollowUpstream".into(), "yes".into());
        n.resources.insert(
            "F".into(),
            Physical {
                reference: "bakery-F".into(),
                attrs: [(
                    "Arn".to_owned(),
                    "arn:aws:lambda:us-east-1:123456789012:function:bakery-F".to_owned(),
                )]
                .into(),
            },
        );
        n
    }

    #[test]
    fn sns_subscriptions_of_functions() {
        let t = Template::parse(SUBSCRIPTIONS).unwrap();
        let upstream = "arn:aws:sns:us-east-1:444455556666:soe";
        let subs = t.sns_subscriptions(&subscription_names(upstream)).unwrap();
        assert_eq!(subs.len(), 2, "{subs:?}");

        let event = &subs[0];
        assert_eq!(event.name, "FNotices");
        assert_eq!(event.topic_arn, "arn:aws:sns:us-east-1:123456789012:t");
        assert_eq!(event.function, "bakery-F");
        assert_eq!(
            event.filter_policy,
            Some(json!({"kind": ["release", {"prefix": "hotfix-"}]}))
        );
        assert_eq!(event.filter_scope, FilterScope::MessageBody);

        let resource = &subs[1];
        assert_eq!(resource.name, "Follow");
        assert_eq!(resource.topic_arn, upstream);
        assert_eq!(resource.function, "bakery-F", "from the endpoint's ARN");
        assert_eq!(
            resource.filter_policy,
            Some(json!({"channel": [{"anything-but": "beta"}]})),
            "a FilterPolicy given as JSON text"
        );
        assert_eq!(
            resource.filter_scope,
            FilterScope::MessageAttributes,
            "the default scope"
        );
    }

    #[test]
    fn sns_subscriptions_honour_conditions() {
        let t = Template::parse(SUBSCRIPTIONS).unwrap();
        let mut names = subscription_names("arn:aws:sns:us-east-1:444455556666:soe");
        names.parameters.insert("FollowUpstream".into(), "no".into());
        let subs = t.sns_subscriptions(&names).unwrap();
        let found: Vec<&str> = subs.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(found, ["FNotices"], "the Follow condition does not hold");

        // A function whose Condition does not hold subscribes nothing either.
        let t = Template::parse(&SUBSCRIPTIONS.replace(
            "    Type: AWS::Serverless::Function\n",
            "    Type: AWS::Serverless::Function\n    Condition: Follow\n",
        ))
        .unwrap();
        assert!(t.sns_subscriptions(&names).unwrap().is_empty());

        // An empty topic subscribes nothing, whatever the condition.
        let subs = t.sns_subscriptions(&subscription_names("")).unwrap();
        let found: Vec<&str> = subs.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(found, ["FNotices"]);
    }

    #[test]
    fn bad_filter_policies_are_errors() {
        let bad = SUBSCRIPTIONS.replace(r#"'{"channel": [{"anything-but": "beta"}]}'"#, "'{not json'");
        let t = Template::parse(&bad).unwrap();
        let e = t
            .sns_subscriptions(&subscription_names("arn:aws:sns:us-east-1:1:x"))
            .unwrap_err();
        assert!(e.to_string().contains("Follow: FilterPolicy is not JSON"), "{e}");
        let bad = SUBSCRIPTIONS.replace("FilterPolicyScope: MessageBody", "FilterPolicyScope: Body");
        let e = Template::parse(&bad)
            .unwrap()
            .sns_subscriptions(&subscription_names(""))
            .unwrap_err();
        assert!(e.to_string().contains("FNotices: FilterPolicyScope"), "{e}");
    }

    #[test]
    fn unresolved_names_are_errors() {
        let t = Template::parse("Resources:\n  F:\n    Type: AWS::Serverless::Function\n    Properties:\n      Environment:\n        Variables:\n          A: !Ref Nope\n").unwrap();
        assert!(t.functions(&names()).unwrap_err().to_string().contains("Ref Nope"));
    }
}
