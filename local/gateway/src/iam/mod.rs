//! IAM in the local AWS. Every request a function, the state machine or a test makes reaches
//! the gateway signed with its own credentials; the gateway knows whose they are (each function
//! runs under a session of the role SAM's transform made for it), works out what IAM authorizes
//! for the request (`requests`), reads what the decision needs of the resource (`lookups`), and
//! asks an IAM evaluator, `@cloud-copilot/iam-simulate` with AWS's action data (`evaluator`,
//! `data`), before moto or the Image Builder emulator sees it. Services acting on their own
//! (EventBridge, SNS and Scheduler invoking a function, Lambda and EventBridge sending dead
//! letters) are authorized the same way, by the resource policies the template declares.
//! There is no switch that turns this off.

pub mod data;
pub mod evaluator;
pub mod lookups;
pub mod requests;

use crate::template::{Names, Role, Template};
use data::ActionData;
use evaluator::Evaluator;
use lookups::Moto;
use requests::{Lookup, Need};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

#[derive(Debug, thiserror::Error)]
pub enum IamError {
    #[error(transparent)]
    Data(#[from] data::DataError),
    #[error(transparent)]
    Evaluator(#[from] evaluator::EvaluatorError),
    #[error("{0}")]
    Setup(String),
}

/// The access key the local AWS's operator uses (tests, the CLI, `bakery local up`'s
/// environment): an administrator of the default account.
pub const OPERATOR_KEY: &str = "testing";

/// The access key moto's Step Functions interpreter signs every Task's service call with.
const STATE_MACHINE_KEY: &str = "ak";

/// A service acting for one of its resources (a rule, a topic, a schedule).
#[derive(Debug, Clone)]
pub struct ServiceSource {
    pub service: String,
    pub source_arn: String,
    pub source_account: String,
}

/// Who makes a request, as IAM sees it.
#[derive(Debug, Clone)]
pub struct Principal {
    /// As IAM names the caller in a message: a role session, a user, or a service.
    pub arn: String,
    pub account: String,
    /// The role whose session this is.
    pub role_arn: Option<String>,
    /// The function running under this session.
    pub function: Option<String>,
    /// Identity-based policies (none for a service).
    pub policies: Arc<Vec<(String, Value)>>,
    pub service: Option<ServiceSource>,
}

/// A request IAM refused.
#[derive(Debug, Clone)]
pub struct Denied {
    pub action: String,
    pub resource: String,
    /// AWS's message: who may not do what on which resource, and which policy kind refused it.
    pub message: String,
}

pub struct Iam {
    evaluator: Evaluator,
    pub data: ActionData,
    moto: Moto,
    /// Access key → principal: the operator, each function, the state machine, and sessions
    /// learned from STS answers.
    principals: RwLock<HashMap<String, Principal>>,
    /// Function name → its access key.
    function_keys: HashMap<String, String>,
    /// Role ARN → role.
    roles: HashMap<String, Role>,
    managed: HashMap<String, Value>,
    /// Function name → its resource-based policy (the template's Lambda permissions).
    lambda_policies: BTreeMap<String, Value>,
    /// The stack account's default event bus policy (the template's EventBusPolicy statements).
    bus_policy: Option<Value>,
    /// The stack's account, region and default bus ARN.
    pub bus_arn: String,
    decisions: Mutex<Vec<Value>>,
    /// `BAKERY_IAM_USAGE`: a directory where every decision is appended (for `make iam-report`).
    usage: Option<Mutex<std::fs::File>>,
}

impl Iam {
    pub async fn start(
        repo: &Path,
        template: &Template,
        names: &Names,
        moto_endpoint: &str,
    ) -> Result<Arc<Self>, IamError> {
        let data = ActionData::for_repo(repo)?;
        let evaluator = Evaluator::start(repo).await?;
        let managed: HashMap<String, Value> =
            serde_json::from_str::<HashMap<String, Value>>(include_str!("../../data/managed-policies.json"))
                .map_err(|e| IamError::Setup(format!("data/managed-policies.json: {e}")))?
                .into_iter()
                .map(|(arn, p)| (arn, p["document"].clone()))
                .collect();
        let setup = |e: crate::template::TemplateError| IamError::Setup(e.to_string());
        let roles: HashMap<String, Role> = template
            .roles(names)
            .map_err(setup)?
            .into_iter()
            .map(|r| (r.arn.clone(), r))
            .collect();
        let mut this = Self {
            evaluator,
            data,
            moto: Moto::new(moto_endpoint),
            principals: RwLock::new(HashMap::new()),
            function_keys: HashMap::new(),
            roles,
            managed,
            lambda_policies: template.lambda_policies(names).map_err(setup)?,
            bus_policy: template.bus_policy(names).map_err(setup)?,
            bus_arn: format!("arn:aws:events:{}:{}:event-bus/default", names.region, names.account),
            decisions: Mutex::new(Vec::new()),
            usage: usage_file(),
        };
        let mut principals = HashMap::new();
        principals.insert(OPERATOR_KEY.to_owned(), this.operator(&names.account));
        for f in template.functions(names).map_err(setup)? {
            let key = access_key(&f.name);
            principals.insert(key.clone(), this.session(&f.role_arn, &f.name, Some(&f.name)));
            this.function_keys.insert(f.name.clone(), key);
        }
        let machines: Vec<(String, String)> = template
            .of_type("AWS::StepFunctions::StateMachine")
            .map(|(id, r)| {
                let props = template.resolve(&r["Properties"], names).unwrap_or_default();
                (
                    names.attr(id, "Name"),
                    props["RoleArn"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        match machines.as_slice() {
            [] => {}
            [(name, role)] => {
                principals.insert(STATE_MACHINE_KEY.to_owned(), this.session(role, name, None));
            }
            _ => {
                return Err(IamError::Setup(
                    "moto signs every state machine's calls alike: the local AWS runs one state machine per stack"
                        .into(),
                ))
            }
        }
        this.principals = RwLock::new(principals);
        Ok(Arc::new(this))
    }

    fn operator(&self, account: &str) -> Principal {
        let admin = "arn:aws:iam::aws:policy/AdministratorAccess";
        Principal {
            arn: format!("arn:aws:iam::{account}:user/bakery-operator"),
            account: account.to_owned(),
            role_arn: None,
            function: None,
            policies: Arc::new(vec![(
                "AdministratorAccess".to_owned(),
                self.managed.get(admin).cloned().unwrap_or_default(),
            )]),
            service: None,
        }
    }

    /// A session of `role_arn` named `session`: the role's inline and managed policies.
    pub fn session(&self, role_arn: &str, session: &str, function: Option<&str>) -> Principal {
        let parts: Vec<&str> = role_arn.split(':').collect();
        let account = parts.get(4).copied().unwrap_or_default().to_owned();
        let role_name = role_arn.rsplit('/').next().unwrap_or_default();
        let policies = match self.roles.get(role_arn) {
            Some(role) => {
                let mut p = role.policies.clone();
                for arn in &role.managed {
                    match self.managed.get(arn) {
                        Some(doc) => p.push((arn.rsplit('/').next().unwrap_or(arn).to_owned(), doc.clone())),
                        None => {
                            tracing::warn!(role = %role.name, managed = %arn, "a managed policy the local AWS does not know grants nothing here")
                        }
                    }
                }
                p
            }
            None => Vec::new(),
        };
        Principal {
            arn: format!("arn:aws:sts::{account}:assumed-role/{role_name}/{session}"),
            account,
            role_arn: Some(role_arn.to_owned()),
            function: function.map(str::to_owned),
            policies: Arc::new(policies),
            service: None,
        }
    }

    /// A service principal acting for `source_arn`.
    pub fn service(service: &str, source_arn: &str, source_account: &str) -> Principal {
        Principal {
            arn: service.to_owned(),
            account: source_account.to_owned(),
            role_arn: None,
            function: None,
            policies: Arc::new(Vec::new()),
            service: Some(ServiceSource {
                service: service.to_owned(),
                source_arn: source_arn.to_owned(),
                source_account: source_account.to_owned(),
            }),
        }
    }

    /// Every account a principal of this local AWS belongs to (the stack's, and those STS sessions named).
    pub fn accounts(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .principals
            .read()
            .map(|p| p.values().map(|p| p.account.clone()).collect())
            .unwrap_or_default();
        out.sort();
        out.dedup();
        out
    }

    /// The moto reader the gateway shares with IAM's lookups.
    pub fn moto(&self) -> &Moto {
        &self.moto
    }

    pub fn principal(&self, access_key: &str) -> Option<Principal> {
        self.principals.read().ok()?.get(access_key).cloned()
    }

    /// Who sends what `account`'s rule forwards to another bus: the target's role (a template
    /// role with its policies, any other an administrator of its account), else the account.
    pub fn sender(&self, account: &str, role_arn: Option<&str>) -> Principal {
        match role_arn {
            Some(role) if self.roles.contains_key(role) => self.session(role, "events", None),
            Some(role) => Principal {
                arn: format!(
                    "arn:aws:sts::{account}:assumed-role/{}/events",
                    role.rsplit('/').next().unwrap_or_default()
                ),
                role_arn: Some(role.to_owned()),
                ..self.operator(account)
            },
            None => Principal {
                arn: format!("arn:aws:iam::{account}:root"),
                ..self.operator(account)
            },
        }
    }

    /// A session STS handed out (AssumeRole through the gateway): a role of the template has its
    /// policies; a role the template does not know is an administrator of its account (the
    /// tests' other accounts: an SOE team, a consumer, an attacker).
    pub fn learn_session(&self, access_key: &str, assumed_role_arn: &str) {
        // arn:aws:sts::<account>:assumed-role/<role>/<session>
        let parts: Vec<&str> = assumed_role_arn.split(':').collect();
        let account = parts.get(4).copied().unwrap_or_default().to_owned();
        let mut path = parts.get(5).copied().unwrap_or_default().split('/').skip(1);
        let (role, session) = (path.next().unwrap_or_default(), path.next().unwrap_or_default());
        let role_arn = format!("arn:aws:iam::{account}:role/{role}");
        let principal = if self.roles.contains_key(&role_arn) {
            self.session(&role_arn, session, None)
        } else {
            Principal {
                arn: assumed_role_arn.to_owned(),
                role_arn: Some(role_arn),
                ..self.operator(&account)
            }
        };
        if let Ok(mut p) = self.principals.write() {
            p.insert(access_key.to_owned(), principal);
        }
    }

    /// The credentials a function's process gets: (access key, secret, session token).
    pub fn function_credentials(&self, function: &str) -> Option<(String, String, String)> {
        let key = self.function_keys.get(function)?;
        Some((
            key.clone(),
            "bakery-local-secret".into(),
            format!("bakery-local-session-{function}"),
        ))
    }

    /// Every decision so far, in order (`GET /_bakery/authorizations`).
    pub fn decisions(&self) -> Vec<Value> {
        self.decisions.lock().map(|d| d.clone()).unwrap_or_default()
    }

    /// Authorizes every need, in order; the first refusal ends it.
    pub async fn authorize(&self, who: &Principal, region: &str, needs: &[Need]) -> Result<(), Denied> {
        for need in needs {
            self.authorize_one(who, region, need).await?;
        }
        Ok(())
    }

    async fn authorize_one(&self, who: &Principal, region: &str, need: &Need) -> Result<(), Denied> {
        let mut context: BTreeMap<String, Value> = need
            .context
            .iter()
            .map(|(k, v)| (k.clone(), if v.len() == 1 { json!(v[0]) } else { json!(v) }))
            .collect();
        let mut resource = need.resource.clone();
        let mut resource_policy = None;
        match &need.lookup {
            Lookup::None => {}
            Lookup::Ec2Tags { region, id } => {
                let owner = need.owner.as_deref().unwrap_or(&who.account);
                for (k, v) in self.moto.ec2_tags(region, owner, id).await {
                    context.entry(format!("aws:ResourceTag/{k}")).or_insert(json!(v));
                }
            }
            Lookup::TopicKey { topic_arn } => {
                let key = match self.moto.topic_key(topic_arn).await {
                    Some(key) => key,
                    None => return Ok(()),
                };
                let mut parts = topic_arn.split(':').skip(3);
                let (region, owner) = (parts.next().unwrap_or(region), parts.next().unwrap_or(&who.account));
                match self.moto.kms_key(region, owner, &key).await {
                    Some((arn, policy)) => {
                        resource = arn;
                        resource_policy = Some(policy);
                    }
                    None => return Ok(()),
                }
            }
            Lookup::KmsKey { region, key } => match self.moto.kms_key(region, &who.account, key).await {
                Some((arn, policy)) => {
                    resource = arn;
                    resource_policy = Some(policy);
                }
                // No such key: nothing for IAM to decide; the service fails the request itself.
                None => {
                    tracing::info!(%key, %region, action = %need.action, "no such KMS key: not an IAM decision");
                    return Ok(());
                }
            },
        }
        let owner = arn_account(&resource)
            .or(need.owner.clone())
            .unwrap_or_else(|| who.account.clone());
        if resource_policy.is_none() {
            resource_policy = self.resource_policy(&resource).await;
        }
        for (k, v) in global_context(who, region) {
            context.entry(k).or_insert(v);
        }
        let mut simulation = json!({
            "request": {
                "principal": who.arn,
                "action": need.action,
                "resource": {"resource": resource, "accountId": owner},
                "contextVariables": context,
            },
            "identityPolicies": who.policies.iter().map(|(name, policy)| json!({"name": name, "policy": policy})).collect::<Vec<_>>(),
            "serviceControlPolicies": [],
            "resourceControlPolicies": [],
        });
        if let Some(p) = &resource_policy {
            simulation["resourcePolicy"] = p.clone();
        }
        let answer = self.evaluator.evaluate(simulation).await;
        let (allowed, detail) = match &answer {
            Ok(a) => (
                a.allowed(),
                json!({"result": a.result, "grants": a.grants, "denials": a.denials}),
            ),
            Err(e) => (false, json!({"result": "Error", "error": e.to_string()})),
        };
        self.record(who, need, &resource, allowed, detail);
        if allowed {
            return Ok(());
        }
        let why = match answer {
            Ok(a) => because(&need.action, &a.denials),
            Err(e) => format!("because the local AWS could not evaluate it: {e}"),
        };
        Err(self.refuse(who, need, &resource, &why))
    }

    fn refuse(&self, who: &Principal, need: &Need, resource: &str, why: &str) -> Denied {
        let message = format!(
            "User: {} is not authorized to perform: {} on resource: {resource} {why}",
            who.arn, need.action
        );
        tracing::warn!(
            function = who.function.as_deref().unwrap_or("-"),
            principal = %who.arn,
            action = %need.action,
            %resource,
            because_of = need.because_of.as_deref().unwrap_or("-"),
            "AccessDenied: {message}"
        );
        Denied {
            action: need.action.clone(),
            resource: resource.to_owned(),
            message,
        }
    }

    /// The policy of the resource itself: a function's permissions, a queue's or topic's policy.
    async fn resource_policy(&self, arn: &str) -> Option<Value> {
        match arn.split(':').nth(2)? {
            "lambda" => {
                let name = arn.split(":function:").nth(1)?.split(':').next()?;
                self.lambda_policies.get(name).cloned()
            }
            // AWS-owned components, workflows and images are there for every account to use.
            "imagebuilder" if arn.split(':').nth(4) == Some("aws") => Some(json!({
                "Version": "2012-10-17",
                "Statement": [{
                    "Effect": "Allow",
                    "Principal": "*",
                    "Action": ["imagebuilder:Get*", "imagebuilder:List*"],
                    "Resource": arn,
                }],
            })),
            "events" if arn == self.bus_arn => self.bus_policy.clone(),
            "sqs" => self.moto.queue_policy(arn).await,
            "sns" => self.moto.topic_policy(arn).await,
            _ => None,
        }
    }

    fn record(&self, who: &Principal, need: &Need, resource: &str, allowed: bool, detail: Value) {
        let entry = json!({
            "principal": who.arn,
            "role": who.role_arn,
            "function": who.function,
            "service": who.service.as_ref().map(|s| &s.service),
            "action": need.action,
            "resource": resource,
            "becauseOf": need.because_of,
            "allowed": allowed,
            "decision": detail,
        });
        if let Some(file) = &self.usage {
            if let Ok(mut f) = file.lock() {
                let _ = writeln!(f, "{entry}");
            }
        }
        if let Ok(mut d) = self.decisions.lock() {
            d.push(entry);
        }
    }
}

/// The context every request carries (IAM's global condition keys the local AWS knows).
fn global_context(who: &Principal, region: &str) -> Vec<(String, Value)> {
    let now = chrono::Utc::now();
    let mut out = vec![
        ("aws:RequestedRegion".to_owned(), json!(region)),
        // Requests reach AWS over TLS; the local endpoint's plain HTTP is not what IAM would see.
        ("aws:SecureTransport".to_owned(), json!("true")),
        (
            "aws:CurrentTime".to_owned(),
            json!(now.format("%Y-%m-%dT%H:%M:%SZ").to_string()),
        ),
        ("aws:EpochTime".to_owned(), json!(now.timestamp().to_string())),
    ];
    match &who.service {
        Some(s) => {
            out.push(("aws:SourceArn".to_owned(), json!(s.source_arn)));
            out.push(("aws:SourceAccount".to_owned(), json!(s.source_account)));
            out.push(("aws:PrincipalServiceName".to_owned(), json!(s.service)));
            out.push(("aws:PrincipalIsAWSService".to_owned(), json!("true")));
        }
        None => {
            out.push(("aws:PrincipalAccount".to_owned(), json!(who.account)));
            out.push((
                "aws:PrincipalArn".to_owned(),
                json!(who.role_arn.as_deref().unwrap_or(&who.arn)),
            ));
            out.push(("aws:PrincipalIsAWSService".to_owned(), json!("false")));
        }
    }
    out
}

/// The end of AWS's AccessDenied message: which kind of policy refused, explicitly or not.
fn because(action: &str, denials: &[Value]) -> String {
    let explicit = |kind: &str| {
        denials
            .iter()
            .any(|d| d["policyType"] == kind && d["denialType"] == "Explicit")
    };
    let kind = |d: &Value| d["policyType"].as_str().unwrap_or_default().to_owned();
    if explicit("identity") {
        "with an explicit deny in an identity-based policy".to_owned()
    } else if explicit("resource") {
        "with an explicit deny in a resource-based policy".to_owned()
    } else if denials.iter().any(|d| kind(d) == "identity") {
        format!("because no identity-based policy allows the {action} action")
    } else if denials.iter().any(|d| kind(d) == "resource") {
        format!("because no resource-based policy allows the {action} action")
    } else {
        format!("because no policy allows the {action} action")
    }
}

/// The account in an ARN (`arn:aws:sns:us-east-1:123456789012:t` → 123456789012), if it has one.
fn arn_account(arn: &str) -> Option<String> {
    arn.split(':').nth(4).filter(|a| !a.is_empty()).map(str::to_owned)
}

/// A function's access key: fixed for its name, shaped like a session key.
fn access_key(function: &str) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    function.hash(&mut h);
    format!("ASIA{:016X}", h.finish())
}

fn usage_file() -> Option<Mutex<std::fs::File>> {
    let dir = std::env::var_os("BAKERY_IAM_USAGE")?;
    std::fs::create_dir_all(&dir).ok()?;
    let path = Path::new(&dir).join(format!("{}.jsonl", uuid::Uuid::new_v4().simple()));
    std::fs::File::create(path).ok().map(Mutex::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denial_messages_name_the_refusing_policy_kind() {
        let implicit = [json!({"policyType": "identity", "denialType": "Implicit"})];
        assert_eq!(
            because("ec2:CopyImage", &implicit),
            "because no identity-based policy allows the ec2:CopyImage action"
        );
        let explicit = [
            json!({"policyType": "identity", "denialType": "Implicit"}),
            json!({"policyType": "identity", "denialType": "Explicit"}),
        ];
        assert_eq!(
            because("ssm:PutParameter", &explicit),
            "with an explicit deny in an identity-based policy"
        );
        let cross = [json!({"policyType": "resource", "denialType": "Implicit"})];
        assert_eq!(
            because("sns:Publish", &cross),
            "because no resource-based policy allows the sns:Publish action"
        );
    }

    #[test]
    fn access_keys_are_per_function_and_stable() {
        assert_eq!(access_key("a"), access_key("a"));
        assert_ne!(access_key("a"), access_key("b"));
        assert!(access_key("a").starts_with("ASIA") && access_key("a").len() == 20);
        assert_eq!(arn_account("arn:aws:ec2:us-east-1::image/ami-1"), None);
        assert_eq!(arn_account("arn:aws:sns:us-east-1:1:t").as_deref(), Some("1"));
    }
}
