//! Reads the template as the local AWS deploys it: SAM's own transform (aws-sam-translator, run
//! by `local/tools/sam-translate.py`) turns template.yaml into the CloudFormation a deploy would
//! create, and this reads that: functions (binary, environment, timeout, role), EventBridge rules
//! and schedules, Lambda subscriptions to SNS topics, roles, Lambda permissions, queue and topic
//! policies, and the resources to create in moto, with `Ref`, `GetAtt`, `Sub`, `Join`, `If`,
//! `Select` and `Split` resolved to the local resources' names.

use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("cannot read the template: {0}")]
    Read(String),
    #[error("SAM's transform refused the template: {0}")]
    Transform(String),
    #[error("{0}")]
    Unresolved(String),
}

/// A template, YAML tags in their JSON intrinsic form (`!Ref x` → `{"Ref": "x"}`).
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
    /// The parameters that are lists (`CommaDelimitedList`, `List<...>`): a `Ref` gives a list.
    pub lists: std::collections::BTreeSet<String>,
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
    /// SQS queue ARN for failed asynchronous invocations (DeadLetterConfig or EventInvokeConfig OnFailure).
    pub on_failure: Option<String>,
    /// The execution role's ARN.
    pub role_arn: String,
}

/// An EventBridge rule target that is a function.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub arn: String,
    pub pattern: Value,
    pub function: String,
    /// The target's dead-letter queue ARN: events the rule could not deliver.
    pub dead_letter: Option<String>,
}

/// A schedule that invokes a function: its Input (Scheduler) or the Scheduled Event (rules).
#[derive(Debug, Clone)]
pub struct Schedule {
    pub name: String,
    pub arn: String,
    pub function: String,
    /// Scheduler's Input with its `<aws.scheduler.*>` placeholders; None for an EventBridge rule schedule.
    pub input: Option<String>,
    pub scheduler: bool,
    /// The role Scheduler assumes to invoke the target (None for a rule schedule).
    pub role_arn: Option<String>,
    pub dead_letter: Option<String>,
}

/// An `AWS::SNS::Subscription` whose endpoint is a function.
#[derive(Debug, Clone)]
pub struct SnsSubscription {
    /// The logical id.
    pub name: String,
    pub topic_arn: String,
    pub function: String,
    /// The filter policy, if any, matched against `filter_scope`.
    pub filter_policy: Option<Value>,
    pub filter_scope: FilterScope,
    /// The topic's region, when the subscription names it (a topic in another region).
    pub region: Option<String>,
    /// The subscription's RedrivePolicy dead-letter queue ARN.
    pub dead_letter: Option<String>,
}

/// An `AWS::IAM::Role` with its policies resolved.
#[derive(Debug, Clone)]
pub struct Role {
    pub logical_id: String,
    pub name: String,
    pub arn: String,
    pub trust: Value,
    /// Inline policies: name and document.
    pub policies: Vec<(String, Value)>,
    pub managed: Vec<String>,
}

/// What an SNS filter policy is matched against (`FilterPolicyScope`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FilterScope {
    #[default]
    MessageAttributes,
    MessageBody,
}

impl Template {
    /// template.yaml as a deploy would create it: SAM's transform with these parameter values
    /// (pseudo parameters included), run with the pinned tools of `local/tools.sh`.
    pub async fn translate(
        repo: &Path,
        template: &Path,
        parameters: &BTreeMap<String, String>,
    ) -> Result<Self, TemplateError> {
        let tools = tokio::process::Command::new("bash")
            .arg(repo.join("local/tools.sh"))
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .map_err(|e| TemplateError::Transform(format!("local/tools.sh: {e}")))?;
        if !tools.status.success() {
            return Err(TemplateError::Transform(format!(
                "local/tools.sh: {}",
                String::from_utf8_lossy(&tools.stderr)
            )));
        }
        let venv = String::from_utf8_lossy(&tools.stdout)
            .lines()
            .last()
            .unwrap_or_default()
            .to_owned();
        let out = tokio::process::Command::new(Path::new(&venv).join("bin/python"))
            .arg(repo.join("local/tools/sam-translate.py"))
            .arg(template)
            .arg(serde_json::to_string(parameters).unwrap_or_default())
            // Nothing may reach AWS: dummy credentials, no profile, no instance metadata.
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env_remove("AWS_PROFILE")
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .map_err(|e| TemplateError::Transform(e.to_string()))?;
        if !out.status.success() {
            return Err(TemplateError::Transform(
                String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            ));
        }
        let root = serde_json::from_slice(&out.stdout).map_err(|e| TemplateError::Transform(e.to_string()))?;
        Ok(Self { root })
    }

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

    /// The parameters whose values are lists.
    pub fn list_parameters(&self) -> std::collections::BTreeSet<String> {
        self.root
            .get("Parameters")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .filter(|(_, p)| {
                p["Type"]
                    .as_str()
                    .is_some_and(|t| t == "CommaDelimitedList" || t.starts_with("List<"))
            })
            .map(|(name, _)| name.clone())
            .collect()
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
                let value = names.reference(name).ok_or_else(|| unresolved(format!("Ref {name}")))?;
                if names.lists.contains(name) {
                    json!(value.split(',').filter(|v| !v.is_empty()).collect::<Vec<_>>())
                } else {
                    Value::String(value)
                }
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

    /// Every `AWS::Lambda::Function` whose Condition holds, its environment resolved.
    pub fn functions(&self, names: &Names) -> Result<Vec<Function>, TemplateError> {
        let mut out = Vec::new();
        for (id, r) in self.holding("AWS::Lambda::Function", names)? {
            let props = self.resolve(&r["Properties"], names)?;
            let environment = props
                .pointer("/Environment/Variables")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.clone(), as_text(v)))
                .collect();
            let on_failure = match props.pointer("/DeadLetterConfig/TargetArn") {
                Some(v) => Some(as_text(v)),
                None => self.invoke_config_on_failure(id, names)?,
            };
            out.push(Function {
                logical_id: id.clone(),
                name: names.reference(id).unwrap_or_else(|| id.clone()),
                binary: r
                    .pointer("/Metadata/BuildProperties/Binary")
                    .and_then(Value::as_str)
                    .unwrap_or(id)
                    .to_owned(),
                timeout_secs: props["Timeout"].as_u64().unwrap_or(3),
                memory_mb: props["MemorySize"].as_u64().unwrap_or(128),
                environment,
                on_failure,
                role_arn: as_text(&props["Role"]),
            });
        }
        Ok(out)
    }

    /// An `AWS::Lambda::EventInvokeConfig`'s on-failure destination for the function `id`.
    fn invoke_config_on_failure(&self, id: &str, names: &Names) -> Result<Option<String>, TemplateError> {
        let function = names.reference(id).unwrap_or_default();
        for (_, r) in self.holding("AWS::Lambda::EventInvokeConfig", names)? {
            let props = self.resolve(&r["Properties"], names)?;
            if as_text(&props["FunctionName"]) == function {
                return Ok(props.pointer("/DestinationConfig/OnFailure/Destination").map(as_text));
            }
        }
        Ok(None)
    }

    /// Resources of `kind` whose Condition holds.
    fn holding<'a>(&'a self, kind: &'a str, names: &Names) -> Result<Vec<(&'a String, &'a Value)>, TemplateError> {
        let mut out = Vec::new();
        for (id, r) in self.of_type(kind) {
            if self.condition_holds(r, names)? {
                out.push((id, r));
            }
        }
        Ok(out)
    }

    /// The default event bus's resource policy: every `AWS::Events::EventBusPolicy` whose
    /// condition holds, one statement each (its `StatementId` as the Sid), as EventBridge joins them.
    pub fn bus_policy(&self, names: &Names) -> Result<Option<Value>, TemplateError> {
        let mut statements = Vec::new();
        for (_, r) in self.holding("AWS::Events::EventBusPolicy", names)? {
            let p = self.resolve(&r["Properties"], names)?;
            let mut statement = p["Statement"].clone();
            if let Some(sid) = p["StatementId"].as_str() {
                statement["Sid"] = Value::String(sid.to_owned());
            }
            statements.push(statement);
        }
        Ok((!statements.is_empty()).then(|| serde_json::json!({"Version": "2012-10-17", "Statement": statements})))
    }

    /// EventBridge rules (`AWS::Events::Rule` with an EventPattern) and each target that is a function.
    pub fn rules(&self, names: &Names) -> Result<Vec<Rule>, TemplateError> {
        let mut out = Vec::new();
        for (id, r) in self.holding("AWS::Events::Rule", names)? {
            let props = self.resolve(&r["Properties"], names)?;
            let Some(pattern) = props.get("EventPattern").cloned() else {
                continue;
            };
            for target in props["Targets"].as_array().into_iter().flatten() {
                if let Some(function) = function_of(&target["Arn"]) {
                    out.push(Rule {
                        name: names.reference(id).unwrap_or_else(|| id.clone()),
                        arn: names.attr(id, "Arn"),
                        pattern: pattern.clone(),
                        function,
                        dead_letter: target.pointer("/DeadLetterConfig/Arn").map(as_text),
                    });
                }
            }
        }
        Ok(out)
    }

    /// Schedules that invoke functions: `AWS::Scheduler::Schedule`, and `AWS::Events::Rule`
    /// with a ScheduleExpression.
    pub fn schedules(&self, names: &Names) -> Result<Vec<Schedule>, TemplateError> {
        let mut out = Vec::new();
        for (id, r) in self.holding("AWS::Scheduler::Schedule", names)? {
            let props = self.resolve(&r["Properties"], names)?;
            let target = &props["Target"];
            let Some(function) = function_of(&target["Arn"]) else {
                continue;
            };
            out.push(Schedule {
                name: names.reference(id).unwrap_or_else(|| id.clone()),
                arn: names.attr(id, "Arn"),
                function,
                input: target["Input"].as_str().map(str::to_owned),
                scheduler: true,
                role_arn: target["RoleArn"].as_str().map(str::to_owned),
                dead_letter: target.pointer("/DeadLetterConfig/Arn").map(as_text),
            });
        }
        for (id, r) in self.holding("AWS::Events::Rule", names)? {
            let props = self.resolve(&r["Properties"], names)?;
            if props.get("ScheduleExpression").is_none() {
                continue;
            }
            for target in props["Targets"].as_array().into_iter().flatten() {
                if let Some(function) = function_of(&target["Arn"]) {
                    out.push(Schedule {
                        name: names.reference(id).unwrap_or_else(|| id.clone()),
                        arn: names.attr(id, "Arn"),
                        function,
                        input: target["Input"].as_str().map(str::to_owned),
                        scheduler: false,
                        role_arn: None,
                        dead_letter: target.pointer("/DeadLetterConfig/Arn").map(as_text),
                    });
                }
            }
        }
        Ok(out)
    }

    /// Lambda subscriptions to SNS topics: `AWS::SNS::Subscription` resources with
    /// `Protocol: lambda` whose endpoint is a function. An empty TopicArn subscribes nothing.
    pub fn sns_subscriptions(&self, names: &Names) -> Result<Vec<SnsSubscription>, TemplateError> {
        let mut out = Vec::new();
        for (id, r) in self.holding("AWS::SNS::Subscription", names)? {
            let props = self.resolve(&r["Properties"], names)?;
            if props["Protocol"].as_str() != Some("lambda") {
                continue;
            }
            let (Some(topic_arn), Some(function)) = (
                props["TopicArn"].as_str().filter(|t| !t.is_empty()),
                function_of(&props["Endpoint"]),
            ) else {
                continue;
            };
            let redrive = match &props["RedrivePolicy"] {
                Value::String(text) => serde_json::from_str(text).unwrap_or(Value::Null),
                other => other.clone(),
            };
            out.push(SnsSubscription {
                name: id.clone(),
                topic_arn: topic_arn.to_owned(),
                function,
                filter_policy: filter_policy(&props["FilterPolicy"], id)?,
                filter_scope: filter_scope(&props["FilterPolicyScope"], id)?,
                region: props["Region"].as_str().map(str::to_owned),
                dead_letter: redrive["deadLetterTargetArn"].as_str().map(str::to_owned),
            });
        }
        Ok(out)
    }

    /// Every `AWS::IAM::Role`: its trust policy, inline policies and managed policy ARNs.
    pub fn roles(&self, names: &Names) -> Result<Vec<Role>, TemplateError> {
        let mut out = Vec::new();
        for (id, r) in self.holding("AWS::IAM::Role", names)? {
            let props = self.resolve(&r["Properties"], names)?;
            let policies = props["Policies"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| (as_text(&p["PolicyName"]), p["PolicyDocument"].clone()))
                .collect();
            out.push(Role {
                logical_id: id.clone(),
                name: names.reference(id).unwrap_or_else(|| id.clone()),
                arn: names.attr(id, "Arn"),
                trust: props["AssumeRolePolicyDocument"].clone(),
                policies,
                managed: props["ManagedPolicyArns"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(as_text)
                    .collect(),
            });
        }
        Ok(out)
    }

    /// Each function's resource-based policy, from its `AWS::Lambda::Permission` resources, as
    /// Lambda writes the statements (a bare account id principal is that account's root).
    pub fn lambda_policies(&self, names: &Names) -> Result<BTreeMap<String, Value>, TemplateError> {
        let mut out: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        for (id, r) in self.holding("AWS::Lambda::Permission", names)? {
            let p = self.resolve(&r["Properties"], names)?;
            let Some(function) = function_of(&p["FunctionName"]) else {
                continue;
            };
            let principal = as_text(&p["Principal"]);
            let principal = if principal.ends_with(".amazonaws.com") {
                json!({"Service": principal})
            } else if principal.len() == 12 && principal.bytes().all(|b| b.is_ascii_digit()) {
                json!({"AWS": format!("arn:aws:iam::{principal}:root")})
            } else {
                json!({"AWS": principal})
            };
            let mut condition = Map::new();
            if let Some(src) = p["SourceArn"].as_str() {
                condition.insert("ArnLike".into(), json!({"AWS:SourceArn": src}));
            }
            let mut equals = Map::new();
            if let Some(acct) = p["SourceAccount"].as_str() {
                equals.insert("AWS:SourceAccount".into(), json!(acct));
            }
            if let Some(org) = p["PrincipalOrgID"].as_str() {
                equals.insert("aws:PrincipalOrgID".into(), json!(org));
            }
            if !equals.is_empty() {
                condition.insert("StringEquals".into(), Value::Object(equals));
            }
            let mut statement = json!({
                "Sid": id,
                "Effect": "Allow",
                "Principal": principal,
                "Action": as_text(&p["Action"]),
                "Resource": format!("arn:aws:lambda:{}:{}:function:{function}", names.region, names.account),
            });
            if !condition.is_empty() {
                statement["Condition"] = Value::Object(condition);
            }
            out.entry(function).or_default().push(statement);
        }
        Ok(out
            .into_iter()
            .map(|(f, statements)| (f, json!({"Version": "2012-10-17", "Statement": statements})))
            .collect())
    }

    /// `AWS::SQS::QueuePolicy` (each queue URL) or `AWS::SNS::TopicPolicy` (each topic ARN) with its policy.
    pub fn resource_policies(&self, kind: &str, names: &Names) -> Result<Vec<(String, Value)>, TemplateError> {
        let list = match kind {
            "AWS::SQS::QueuePolicy" => "Queues",
            "AWS::SNS::TopicPolicy" => "Topics",
            _ => return Err(TemplateError::Unresolved(format!("{kind} is not a resource policy"))),
        };
        let mut out = Vec::new();
        for (_, r) in self.holding(kind, names)? {
            let p = self.resolve(&r["Properties"], names)?;
            for target in p[list].as_array().into_iter().flatten() {
                out.push((as_text(target), p["PolicyDocument"].clone()));
            }
        }
        Ok(out)
    }
}

/// The function a target, endpoint or permission names (its ARN or name) → its name.
fn function_of(v: &Value) -> Option<String> {
    let s = v.as_str()?;
    let name = match s.split_once(":function:") {
        Some((_, rest)) => rest.split(':').next()?,
        None if s.starts_with("arn:") => return None,
        None => s,
    };
    (!name.is_empty()).then(|| name.to_owned())
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

    /// A resource's GetAtt attribute, empty when it has none.
    pub fn attr(&self, id: &str, attr: &str) -> String {
        self.resources
            .get(id)
            .and_then(|p| p.attrs.get(attr))
            .cloned()
            .unwrap_or_default()
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
                ("Regions".to_owned(), "us-east-1,eu-west-1".to_owned()),
            ]
            .into(),
            lists: ["Regions".to_owned()].into(),
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
    Type: AWS::Lambda::Function
    Metadata:
      BuildProperties:
        Binary: f
    Properties:
      Role: arn:aws:iam::123456789012:role/r
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
          R: !Join ["+", !Ref Regions]
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
        assert_eq!(env["R"], "us-east-1+eu-west-1", "a list parameter is a list");
        assert_eq!(f.timeout_secs, 3);
        assert_eq!(f.binary, "f");
        assert_eq!(f.role_arn, "arn:aws:iam::123456789012:role/r");
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
  Notices:
    Type: AWS::SNS::Subscription
    Properties:
      Protocol: lambda
      TopicArn: !Ref Topic
      Endpoint: !GetAtt F.Arn
      FilterPolicy:
        kind: [release, {prefix: "hotfix-"}]
      FilterPolicyScope: MessageBody
      Region: us-west-2
      RedrivePolicy:
        deadLetterTargetArn: arn:aws:sqs:us-east-1:123456789012:dlq
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

        let resource = subs.iter().find(|s| s.name == "Follow").unwrap();
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

        let notices = subs.iter().find(|s| s.name == "Notices").unwrap();
        assert_eq!(notices.topic_arn, "arn:aws:sns:us-east-1:123456789012:t");
        assert_eq!(
            notices.filter_policy,
            Some(json!({"kind": ["release", {"prefix": "hotfix-"}]}))
        );
        assert_eq!(notices.filter_scope, FilterScope::MessageBody);
        assert_eq!(notices.region.as_deref(), Some("us-west-2"));
        assert_eq!(
            notices.dead_letter.as_deref(),
            Some("arn:aws:sqs:us-east-1:123456789012:dlq")
        );
    }

    #[test]
    fn sns_subscriptions_honour_conditions() {
        let t = Template::parse(SUBSCRIPTIONS).unwrap();
        let mut names = subscription_names("arn:aws:sns:us-east-1:444455556666:soe");
        names.parameters.insert("FollowUpstream".into(), "no".into());
        let subs = t.sns_subscriptions(&names).unwrap();
        let found: Vec<&str> = subs.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(found, ["Notices"], "the Follow condition does not hold");

        // An empty topic subscribes nothing, whatever the condition.
        let subs = t.sns_subscriptions(&subscription_names("")).unwrap();
        let found: Vec<&str> = subs.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(found, ["Notices"]);
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
        assert!(e.to_string().contains("Notices: FilterPolicyScope"), "{e}");
    }

    #[test]
    fn lambda_permissions_become_the_functions_resource_policy() {
        let t = Template::parse(
            r#"
Resources:
  FromRule:
    Type: AWS::Lambda::Permission
    Properties:
      Action: lambda:InvokeFunction
      FunctionName: !Ref F
      Principal: events.amazonaws.com
      SourceArn: arn:aws:events:us-east-1:123456789012:rule/r
  FromAccount:
    Type: AWS::Lambda::Permission
    Properties:
      Action: lambda:InvokeFunction
      FunctionName: !GetAtt F.Arn
      Principal: "444455556666"
"#,
        )
        .unwrap();
        let policies = t.lambda_policies(&subscription_names("")).unwrap();
        let statements = policies["bakery-F"]["Statement"].as_array().unwrap();
        assert_eq!(statements.len(), 2);
        assert_eq!(
            statements[0]["Principal"],
            json!({"AWS": "arn:aws:iam::444455556666:root"})
        );
        assert_eq!(statements[1]["Principal"], json!({"Service": "events.amazonaws.com"}));
        assert_eq!(
            statements[1]["Condition"],
            json!({"ArnLike": {"AWS:SourceArn": "arn:aws:events:us-east-1:123456789012:rule/r"}})
        );
        assert_eq!(
            statements[1]["Resource"],
            "arn:aws:lambda:us-east-1:123456789012:function:bakery-F"
        );
    }

    #[test]
    fn unresolved_names_are_errors() {
        let t = Template::parse("Resources:\n  F:\n    Type: AWS::Lambda::Function\n    Properties:\n      Environment:\n        Variables:\n          A: !Ref Nope\n").unwrap();
        assert!(t.functions(&names()).unwrap_err().to_string().contains("Ref Nope"));
    }
}
