//! The bake policy: one JSON document per pipeline, kept in SSM Parameter Store under a
//! configurable prefix. Parsing reports every error at once, each with its path
//! (`publish.regions[2].kmsKeyId: not a KMS key ARN: "..."`), and the trust rules that decide
//! whether a source AMI may be baked live here too. The JSON schema is
//! `schema/bake-policy.schema.json`; a test keeps the two in step.

use crate::ids::{self, echo, kind_of, AccountId, AmiId, Region};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// The only `schemaVersion` this release reads.
pub const SCHEMA_VERSION: u64 = 1;
/// AWS's limit on sharing entities per AMI per region; an organization or an OU counts as one.
pub const MAX_SHARE_ENTITIES: usize = 1000;
/// Largest Map concurrency accepted for the publish step.
pub const MAX_CONCURRENCY: u64 = 40;
const DEFAULT_CONCURRENCY: u32 = 5;
const DEFAULT_KEEP: u32 = 3;
const DEFAULT_MIN_AGE_DAYS: u32 = 7;
const DEFAULT_APPROVAL_HOURS: f64 = 24.0;
/// A task token lives a year; a week is the longest a bake may wait for a person.
const MAX_APPROVAL_HOURS: f64 = 168.0;
/// Attempts per (pipeline, source AMI), the first included.
pub const MAX_ATTEMPTS: u64 = 10;
const DEFAULT_ATTEMPTS: u32 = 3;
/// Longest wait after a failed attempt before the next may start (a day).
pub const MAX_BACKOFF_SECONDS: u64 = 86_400;
const DEFAULT_BACKOFF_SECONDS: u32 = 900;
const DEFAULT_CHANNEL: &str = "stable";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Policy {
    pub pipeline_arn: String,
    pub description: Option<String>,
    pub sources: Sources,
    pub trusted_owners: Vec<AccountId>,
    pub gate: Gate,
    pub publish: Publish,
    pub notify: Notify,
    pub retention: Retention,
    pub rebake: Rebake,
    #[serde(default)]
    pub approval: Approval,
}

/// A person approves each bake that passed the gate before anything is copied or shared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Approval {
    pub required: bool,
    /// How long the bake waits for the answer before it fails.
    pub timeout_hours: f64,
    /// The same, in whole seconds (at least 1): what the state machine's wait reads.
    pub timeout_seconds: u64,
}

impl Default for Approval {
    fn default() -> Self {
        Approval::of(false, DEFAULT_APPROVAL_HOURS)
    }
}

impl Approval {
    pub fn of(required: bool, timeout_hours: f64) -> Self {
        Approval {
            required,
            timeout_hours,
            timeout_seconds: ((timeout_hours * 3600.0).ceil() as u64).max(1),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Sources {
    pub sns_topics: Vec<String>,
    pub amis: Vec<AmiSource>,
    pub ssm_parameters: Vec<String>,
    pub upstream_pipelines: Vec<String>,
    pub schedules: Vec<ScheduleSource>,
}

/// AMIs of one owner whose names match a pattern (`*` and `?` wildcards). The owner is
/// required: a name alone is how the whoAMI attack picks an attacker's image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AmiSource {
    pub owner: AccountId,
    pub name_pattern: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleSource {
    /// The EventBridge rule or EventBridge Scheduler schedule name.
    pub name: String,
    pub rebuild: Rebuild,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Rebuild {
    /// Bake on every firing.
    Always,
    /// Bake only when the base AMI changed since the last published bake.
    IfBaseChanged,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Gate {
    pub require_tests_passed: bool,
    /// Highest accepted count of scan findings per severity; a severity not listed is not limited.
    pub max_findings: BTreeMap<Severity, u32>,
    pub on_failure: Quarantine,
}

/// Inspector's finding severities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Severity {
    Critical,
    High,
    Medium,
    Low,
    Informational,
    Untriaged,
}

impl Severity {
    pub const ALL: [Severity; 6] = [
        Severity::Critical,
        Severity::High,
        Severity::Medium,
        Severity::Low,
        Severity::Informational,
        Severity::Untriaged,
    ];

    pub fn key(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::High => "high",
            Severity::Medium => "medium",
            Severity::Low => "low",
            Severity::Informational => "informational",
            Severity::Untriaged => "untriaged",
        }
    }
}

/// What happens to an image that fails the gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Quarantine {
    /// Tag and deprecate it; it stays for investigation.
    Deprecate,
    /// Tag it, then deregister it and delete its snapshots.
    Deregister,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Publish {
    pub regions: Vec<TargetRegion>,
    pub share_with: ShareWith,
    pub ssm_parameters: Vec<String>,
    pub concurrency: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetRegion {
    pub region: Region,
    /// Key ARN or alias ARN in `region`; the copy is encrypted with it.
    pub kms_key_id: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShareWith {
    pub accounts: Vec<AccountId>,
    pub organizations: Vec<String>,
    pub organizational_units: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Notify {
    pub topic_arn: String,
    /// Sent as a message attribute so subscribers can filter (stable, canary, ...).
    pub channel: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Retention {
    /// How many of the pipeline's newest published AMIs to keep in each region, the one just
    /// published included; older ones are deregistered with their snapshots.
    pub keep: u32,
    /// Never deregister an AMI younger than this, however many newer ones there are.
    #[serde(default = "default_min_age_days")]
    pub min_age_days: u32,
}

fn default_min_age_days() -> u32 {
    DEFAULT_MIN_AGE_DAYS
}

/// How a bake that failed is tried again. The next trigger for the same pipeline and source
/// starts a new attempt (a new execution name), once the previous attempt has been stopped for
/// `backoff_seconds` (doubled for each further failure), until `max_attempts` have run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rebake {
    pub max_attempts: u32,
    pub backoff_seconds: u32,
}

impl Default for Rebake {
    fn default() -> Self {
        Rebake {
            max_attempts: DEFAULT_ATTEMPTS,
            backoff_seconds: DEFAULT_BACKOFF_SECONDS,
        }
    }
}

/// One problem in a policy document, at a path like `publish.regions[2].kmsKeyId`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    pub path: String,
    pub message: String,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Every problem found in a policy document, in document order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct PolicyErrors(pub Vec<PolicyError>);

impl PolicyErrors {
    /// Stable name for logs and Step Functions `Catch`.
    pub fn error_type(&self) -> &'static str {
        "InvalidPolicy"
    }
}

impl fmt::Display for PolicyErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl Policy {
    /// Parses and validates a policy document.
    pub fn parse(text: &[u8]) -> Result<Policy, PolicyErrors> {
        let root = |message: String| {
            PolicyErrors(vec![PolicyError {
                path: "$".into(),
                message,
            }])
        };
        if text.len() > crate::classify::MAX_INPUT_BYTES {
            return Err(root(format!(
                "the document is {} bytes; a policy is at most a few KiB",
                text.len()
            )));
        }
        let value: Value = serde_json::from_slice(text).map_err(|e| root(format!("not JSON: {e}")))?;
        Self::from_value(&value)
    }

    pub fn from_value(value: &Value) -> Result<Policy, PolicyErrors> {
        let mut r = Reader::default();
        let policy = read_policy(&mut r, value);
        match policy {
            Some(p) if r.errors.is_empty() => Ok(p),
            _ => Err(PolicyErrors(r.errors)),
        }
    }

    /// Whether an AMI, as an owner-filtered DescribeImages returned it, may be baked on at `now`:
    /// a trusted owner (the one the event claimed, if it claimed one), `available`, and not
    /// deprecated. A deprecated or disabled image is one its owner withdrew: baking on it would
    /// be a downgrade, whoever announces it.
    pub fn check_source(&self, ami: &ObservedAmi, now: DateTime<Utc>) -> Result<(), TrustError> {
        if !self.trusted_owners.contains(&ami.owner) {
            return Err(TrustError::SourceNotTrusted {
                image_id: ami.image_id.clone(),
                owner: ami.owner.clone(),
            });
        }
        if let Some(claimed) = &ami.claimed_owner {
            if claimed != &ami.owner {
                return Err(TrustError::OwnerMismatch {
                    image_id: ami.image_id.clone(),
                    claimed: claimed.clone(),
                    actual: ami.owner.clone(),
                });
            }
        }
        if ami.state == "disabled" {
            return Err(TrustError::SourceDisabled {
                image_id: ami.image_id.clone(),
            });
        }
        if ami.state != "available" {
            return Err(TrustError::SourceNotAvailable {
                image_id: ami.image_id.clone(),
                state: ami.state.clone(),
            });
        }
        if let Some(since) = ami.deprecation_time.filter(|t| *t <= now) {
            return Err(TrustError::SourceDeprecated {
                image_id: ami.image_id.clone(),
                since,
            });
        }
        Ok(())
    }

    /// Whether an AMI of `owner` named `name` is one this policy follows by name pattern.
    /// The owner must match as well as the name: an attacker can copy any name.
    pub fn follows_ami(&self, owner: &AccountId, name: &str) -> bool {
        self.sources
            .amis
            .iter()
            .any(|s| &s.owner == owner && glob_match(&s.name_pattern, name))
    }
}

/// A source AMI as EC2 reported it (DescribeImages with an owner filter), plus the owner the
/// triggering event claimed, if it claimed one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedAmi {
    pub image_id: AmiId,
    pub owner: AccountId,
    pub state: String,
    /// EC2's `DeprecationTime`: from then on the image is deprecated.
    pub deprecation_time: Option<DateTime<Utc>>,
    pub claimed_owner: Option<AccountId>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrustError {
    #[error("source AMI {image_id} is owned by {owner}, which is not a trusted owner")]
    SourceNotTrusted { image_id: AmiId, owner: AccountId },
    #[error("source AMI {image_id} was announced as owned by {claimed} but is owned by {actual}")]
    OwnerMismatch {
        image_id: AmiId,
        claimed: AccountId,
        actual: AccountId,
    },
    #[error("source AMI {image_id} is {state}, not available")]
    SourceNotAvailable { image_id: AmiId, state: String },
    #[error("source AMI {image_id} is disabled by its owner")]
    SourceDisabled { image_id: AmiId },
    #[error("source AMI {image_id} is deprecated since {since}")]
    SourceDeprecated { image_id: AmiId, since: DateTime<Utc> },
}

impl TrustError {
    pub fn error_type(&self) -> &'static str {
        match self {
            TrustError::SourceNotTrusted { .. } | TrustError::OwnerMismatch { .. } => "SourceNotTrusted",
            TrustError::SourceNotAvailable { .. } => "SourceNotAvailable",
            TrustError::SourceDisabled { .. } => "SourceDisabled",
            TrustError::SourceDeprecated { .. } => "SourceDeprecated",
        }
    }
}

/// `*` matches any run of characters, `?` one character; everything else matches itself.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    // Iterative matcher with one backtrack point: linear in practice, no recursion on input.
    let (mut pi, mut ni, mut star, mut mark) = (0, 0, None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

// ---------------------------------------------------------------- reading

/// Walks a JSON value and collects every problem with its path instead of stopping at the first.
#[derive(Default)]
struct Reader {
    errors: Vec<PolicyError>,
}

fn at(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

impl Reader {
    fn err(&mut self, path: &str, message: impl Into<String>) {
        let path = if path.is_empty() { "$" } else { path };
        self.errors.push(PolicyError {
            path: path.to_owned(),
            message: message.into(),
        });
    }

    /// The object at `path`, with unknown keys reported (a misspelt key is an error, not a default).
    fn object<'v>(&mut self, v: &'v Value, path: &str, known: &[&str]) -> Option<&'v Map<String, Value>> {
        let Value::Object(map) = v else {
            self.err(path, format!("expected an object, found {}", kind_of(v)));
            return None;
        };
        for key in map.keys().filter(|k| !known.contains(&k.as_str())) {
            self.err(
                &at(path, key),
                format!("unknown field; expected one of: {}", known.join(", ")),
            );
        }
        Some(map)
    }

    fn required<'v>(&mut self, obj: &'v Map<String, Value>, path: &str, key: &str) -> Option<&'v Value> {
        let v = obj.get(key);
        if v.is_none() {
            self.err(&at(path, key), "missing");
        }
        v
    }

    fn string(&mut self, v: &Value, path: &str) -> Option<String> {
        match v {
            Value::String(s) => Some(s.clone()),
            other => {
                self.err(path, format!("expected a string, found {}", kind_of(other)));
                None
            }
        }
    }

    /// A string that must pass `check`.
    fn checked<T>(&mut self, v: &Value, path: &str, check: impl Fn(&str) -> Result<T, String>) -> Option<T> {
        let s = self.string(v, path)?;
        check(&s).map_err(|e| self.err(path, e)).ok()
    }

    fn bool(&mut self, v: &Value, path: &str) -> Option<bool> {
        v.as_bool().or_else(|| {
            self.err(path, format!("expected true or false, found {}", kind_of(v)));
            None
        })
    }

    fn count(&mut self, v: &Value, path: &str, min: u64, max: u64) -> Option<u32> {
        match v.as_u64() {
            Some(n) if (min..=max).contains(&n) => u32::try_from(n).ok(),
            Some(n) => {
                self.err(path, format!("{n} is out of range; expected {min} to {max}"));
                None
            }
            None => {
                self.err(
                    path,
                    format!("expected a whole number from {min} to {max}, found {}", describe(v)),
                );
                None
            }
        }
    }

    /// A list of strings each passing `check`; duplicates are reported.
    fn list<T: Ord + Clone>(
        &mut self,
        v: Option<&Value>,
        path: &str,
        check: impl Fn(&str) -> Result<T, String>,
    ) -> Vec<T> {
        let Some(v) = v else { return Vec::new() };
        let Value::Array(items) = v else {
            self.err(path, format!("expected an array, found {}", kind_of(v)));
            return Vec::new();
        };
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let p = format!("{path}[{i}]");
            if let Some(t) = self.checked(item, &p, &check) {
                if seen.insert(t.clone()) {
                    out.push(t);
                } else {
                    self.err(&p, "listed twice");
                }
            }
        }
        out
    }

    /// The items of an array of objects, each with its path.
    fn items<'v>(&mut self, v: Option<&'v Value>, path: &str) -> Vec<(String, &'v Value)> {
        match v {
            None => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, item)| (format!("{path}[{i}]"), item))
                .collect(),
            Some(other) => {
                self.err(path, format!("expected an array, found {}", kind_of(other)));
                Vec::new()
            }
        }
    }

    /// One of `choices`, by its JSON name.
    fn choice<T: Copy>(&mut self, v: &Value, path: &str, choices: &[(&str, T)]) -> Option<T> {
        let s = self.string(v, path)?;
        let found = choices.iter().find(|(name, _)| *name == s).map(|(_, t)| *t);
        if found.is_none() {
            let names: Vec<_> = choices.iter().map(|(n, _)| format!("{n:?}")).collect();
            self.err(
                path,
                format!("expected one of {}, found {}", names.join(", "), echo(&s)),
            );
        }
        found
    }
}

fn describe(v: &Value) -> String {
    match v {
        Value::Number(n) => n.to_string(),
        other => kind_of(other).to_owned(),
    }
}

fn text(max: usize, what: &'static str) -> impl Fn(&str) -> Result<String, String> {
    move |s: &str| {
        if s.is_empty() || s.chars().count() > max {
            Err(format!("expected {what} of 1 to {max} characters"))
        } else {
            Ok(s.to_owned())
        }
    }
}

fn name_token(s: &str) -> Result<String, String> {
    let ok = !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!("expected 1 to 64 letters, digits, . _ or -, found {}", echo(s)))
    }
}

fn ami_name_pattern(s: &str) -> Result<String, String> {
    // EC2 AMI names: letters, digits, ( ) [ ] space . / - ' @ _ ; plus the * and ? wildcards.
    let ok = !s.is_empty()
        && s.chars().count() <= 128
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "()[] ./-'@_*?".contains(c));
    if !ok {
        return Err(format!(
            "expected an AMI name pattern (1 to 128 name characters, * and ? wildcards), found {}",
            echo(s)
        ));
    }
    if s.chars().all(|c| c == '*' || c == '?') {
        return Err("a pattern of wildcards alone follows every AMI the owner publishes; name the image family".into());
    }
    Ok(s.to_owned())
}

fn org_arn(s: &str) -> Result<String, String> {
    let arn = ids::Arn::parse_kind(s, "organizations", "organization", "an organization ARN")?;
    let id_ok = arn.resource_name().strip_prefix("o-").is_some_and(|id| {
        (10..=32).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    });
    if !arn.region.is_empty() || arn.account.is_empty() || !id_ok {
        return Err(format!(
            "not an organization ARN (arn:aws:organizations::<account>:organization/o-...): {}",
            echo(s)
        ));
    }
    Ok(s.to_owned())
}

fn ou_arn(s: &str) -> Result<String, String> {
    let bad = || {
        format!(
            "not an OU ARN (arn:aws:organizations::<account>:ou/o-.../ou-...): {}",
            echo(s)
        )
    };
    let arn = ids::Arn::parse_kind(s, "organizations", "ou", "an OU ARN").map_err(|_| bad())?;
    let lower_alnum = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    let ok = match arn.resource_name().split_once('/') {
        Some((org, ou)) => {
            org.strip_prefix("o-").is_some_and(lower_alnum)
                && ou
                    .strip_prefix("ou-")
                    .and_then(|r| r.split_once('-'))
                    .is_some_and(|(a, b)| lower_alnum(a) && lower_alnum(b))
        }
        None => false,
    };
    if !ok || !arn.region.is_empty() || arn.account.is_empty() {
        return Err(bad());
    }
    Ok(s.to_owned())
}

fn read_policy(r: &mut Reader, v: &Value) -> Option<Policy> {
    const KEYS: &[&str] = &[
        "schemaVersion",
        "pipelineArn",
        "description",
        "sources",
        "trustedOwners",
        "gate",
        "publish",
        "notify",
        "retention",
        "rebake",
        "approval",
    ];
    let obj = r.object(v, "", KEYS)?;

    match r.required(obj, "", "schemaVersion") {
        Some(Value::Number(n)) if n.as_u64() == Some(SCHEMA_VERSION) => {}
        Some(other) => r.err(
            "schemaVersion",
            format!("expected {SCHEMA_VERSION}, found {}", describe(other)),
        ),
        None => {}
    }
    let pipeline_arn = r
        .required(obj, "", "pipelineArn")
        .and_then(|v| r.checked(v, "pipelineArn", |s| ids::check_pipeline_arn(s).map(|()| s.to_owned())));
    let description = obj
        .get("description")
        .and_then(|v| r.checked(v, "description", text(1024, "a description")));

    let trusted_owners = match obj.get("trustedOwners") {
        None => {
            r.err("trustedOwners", "missing; list the accounts whose AMIs may be baked on");
            Vec::new()
        }
        Some(v) => {
            if matches!(v, Value::Array(a) if a.is_empty()) {
                r.err("trustedOwners", "empty; list the accounts whose AMIs may be baked on");
            }
            r.list(Some(v), "trustedOwners", AccountId::parse)
        }
    };

    let sources = r
        .required(obj, "", "sources")
        .and_then(|v| read_sources(r, v, &trusted_owners));
    let gate = match obj.get("gate") {
        Some(v) => read_gate(r, v),
        None => Some(Gate {
            require_tests_passed: true,
            max_findings: BTreeMap::new(),
            on_failure: Quarantine::Deprecate,
        }),
    };
    let publish = r.required(obj, "", "publish").and_then(|v| read_publish(r, v));
    let notify = r.required(obj, "", "notify").and_then(|v| read_notify(r, v));
    let retention = match obj.get("retention") {
        Some(v) => read_retention(r, v),
        None => Some(Retention {
            keep: DEFAULT_KEEP,
            min_age_days: DEFAULT_MIN_AGE_DAYS,
        }),
    };
    let rebake = match obj.get("rebake") {
        Some(v) => read_rebake(r, v),
        None => Some(Rebake::default()),
    };

    let approval = match obj.get("approval") {
        Some(v) => read_approval(r, v),
        None => Some(Approval::default()),
    };

    Some(Policy {
        pipeline_arn: pipeline_arn?,
        description,
        sources: sources?,
        trusted_owners,
        gate: gate?,
        publish: publish?,
        notify: notify?,
        retention: retention?,
        rebake: rebake?,
        approval: approval?,
    })
}

fn read_approval(r: &mut Reader, v: &Value) -> Option<Approval> {
    let obj = r.object(v, "approval", &["required", "timeoutHours"])?;
    let required = r
        .required(obj, "approval", "required")
        .and_then(|v| r.bool(v, "approval.required"));
    let hours = match obj.get("timeoutHours") {
        None => Some(DEFAULT_APPROVAL_HOURS),
        Some(v) => match v.as_f64() {
            Some(h) if h > 0.0 && h <= MAX_APPROVAL_HOURS => Some(h),
            _ => {
                r.err(
                    "approval.timeoutHours",
                    format!(
                        "expected hours above 0 and at most {MAX_APPROVAL_HOURS}, found {}",
                        describe(v)
                    ),
                );
                None
            }
        },
    };
    Some(Approval::of(required?, hours?))
}

fn read_sources(r: &mut Reader, v: &Value, trusted: &[AccountId]) -> Option<Sources> {
    const P: &str = "sources";
    let obj = r.object(
        v,
        P,
        &["snsTopics", "amis", "ssmParameters", "upstreamPipelines", "schedules"],
    )?;
    let sns_topics = r.list(obj.get("snsTopics"), "sources.snsTopics", |s| {
        ids::check_topic_arn(s).map(|()| s.to_owned())
    });
    let ssm_parameters = r.list(obj.get("ssmParameters"), "sources.ssmParameters", |s| {
        ids::check_parameter_name(s).map(|()| s.to_owned())
    });
    let upstream_pipelines = r.list(obj.get("upstreamPipelines"), "sources.upstreamPipelines", |s| {
        ids::check_pipeline_arn(s).map(|()| s.to_owned())
    });

    let mut amis = Vec::new();
    for (p, item) in r.items(obj.get("amis"), "sources.amis") {
        let Some(o) = r.object(item, &p, &["owner", "namePattern"]) else {
            continue;
        };
        let owner = match o.get("owner") {
            Some(v) => r.checked(v, &at(&p, "owner"), AccountId::parse),
            None => {
                r.err(
                    &at(&p, "owner"),
                    "missing; an AMI is never chosen by name alone (the whoAMI attack)",
                );
                None
            }
        };
        if let Some(owner) = &owner {
            if !trusted.is_empty() && !trusted.contains(owner) {
                r.err(&at(&p, "owner"), format!("{owner} is not in trustedOwners"));
            }
        }
        let pattern = r
            .required(o, &p, "namePattern")
            .and_then(|v| r.checked(v, &at(&p, "namePattern"), ami_name_pattern));
        if let (Some(owner), Some(name_pattern)) = (owner, pattern) {
            amis.push(AmiSource { owner, name_pattern });
        }
    }

    let mut schedules = Vec::new();
    for (p, item) in r.items(obj.get("schedules"), "sources.schedules") {
        let Some(o) = r.object(item, &p, &["name", "rebuild"]) else {
            continue;
        };
        let name = r
            .required(o, &p, "name")
            .and_then(|v| r.checked(v, &at(&p, "name"), name_token));
        let rebuild = match o.get("rebuild") {
            Some(v) => r.choice(
                v,
                &at(&p, "rebuild"),
                &[("always", Rebuild::Always), ("ifBaseChanged", Rebuild::IfBaseChanged)],
            ),
            None => Some(Rebuild::IfBaseChanged),
        };
        if let (Some(name), Some(rebuild)) = (name, rebuild) {
            schedules.push(ScheduleSource { name, rebuild });
        }
    }

    let sources = Sources {
        sns_topics,
        amis,
        ssm_parameters,
        upstream_pipelines,
        schedules,
    };
    let declared = ["snsTopics", "amis", "ssmParameters", "upstreamPipelines", "schedules"]
        .iter()
        .any(|k| matches!(obj.get(*k), Some(Value::Array(a)) if !a.is_empty()));
    if !declared {
        r.err(
            P,
            "follows nothing; name at least one SNS topic, AMI family, parameter, upstream pipeline or schedule",
        );
    }
    Some(sources)
}

fn read_gate(r: &mut Reader, v: &Value) -> Option<Gate> {
    let obj = r.object(v, "gate", &["requireTestsPassed", "maxFindings", "onFailure"])?;
    let require_tests_passed = match obj.get("requireTestsPassed") {
        Some(v) => r.bool(v, "gate.requireTestsPassed"),
        None => Some(true),
    };
    let mut max_findings = BTreeMap::new();
    if let Some(v) = obj.get("maxFindings") {
        let keys: Vec<&str> = Severity::ALL.iter().map(|s| s.key()).collect();
        if let Some(m) = r.object(v, "gate.maxFindings", &keys) {
            for sev in Severity::ALL {
                if let Some(n) = m.get(sev.key()) {
                    if let Some(n) = r.count(n, &format!("gate.maxFindings.{}", sev.key()), 0, u64::from(u32::MAX)) {
                        max_findings.insert(sev, n);
                    }
                }
            }
        }
    }
    let on_failure = match obj.get("onFailure") {
        Some(v) => r.choice(
            v,
            "gate.onFailure",
            &[
                ("deprecate", Quarantine::Deprecate),
                ("deregister", Quarantine::Deregister),
            ],
        ),
        None => Some(Quarantine::Deprecate),
    };
    Some(Gate {
        require_tests_passed: require_tests_passed?,
        max_findings,
        on_failure: on_failure?,
    })
}

fn read_publish(r: &mut Reader, v: &Value) -> Option<Publish> {
    const P: &str = "publish";
    let obj = r.object(v, P, &["regions", "shareWith", "ssmParameters", "concurrency"])?;

    let mut regions: Vec<TargetRegion> = Vec::new();
    let region_list = r.required(obj, P, "regions");
    if matches!(region_list, Some(Value::Array(a)) if a.is_empty()) {
        r.err(
            "publish.regions",
            "empty; list at least the region the pipeline builds in",
        );
    }
    let region_items = r.items(region_list, "publish.regions");
    for (p, item) in region_items {
        let Some(o) = r.object(item, &p, &["region", "kmsKeyId"]) else {
            continue;
        };
        let Some(region) = r
            .required(o, &p, "region")
            .and_then(|v| r.checked(v, &at(&p, "region"), Region::parse))
        else {
            continue;
        };
        let kms_key_id = o.get("kmsKeyId").and_then(|v| {
            r.checked(v, &at(&p, "kmsKeyId"), |s| {
                ids::check_kms_key_arn(s, Some(region.as_str())).map(|()| s.to_owned())
            })
        });
        if regions.iter().any(|t| t.region == region) {
            r.err(&at(&p, "region"), format!("{region} is listed twice"));
            continue;
        }
        regions.push(TargetRegion { region, kms_key_id });
    }

    let share_with = match obj.get("shareWith") {
        Some(v) => read_share(r, v),
        None => Some(ShareWith::default()),
    };
    let ssm_parameters = r.list(obj.get("ssmParameters"), "publish.ssmParameters", |s| {
        ids::check_writable_parameter_name(s).map(|()| s.to_owned())
    });
    let concurrency = match obj.get("concurrency") {
        Some(v) => r.count(v, "publish.concurrency", 1, MAX_CONCURRENCY),
        None => Some(DEFAULT_CONCURRENCY),
    };
    Some(Publish {
        regions,
        share_with: share_with?,
        ssm_parameters,
        concurrency: concurrency?,
    })
}

fn read_share(r: &mut Reader, v: &Value) -> Option<ShareWith> {
    const P: &str = "publish.shareWith";
    let obj = r.object(v, P, &["accounts", "organizations", "organizationalUnits"])?;
    let share = ShareWith {
        accounts: r.list(obj.get("accounts"), "publish.shareWith.accounts", AccountId::parse),
        organizations: r.list(obj.get("organizations"), "publish.shareWith.organizations", org_arn),
        organizational_units: r.list(
            obj.get("organizationalUnits"),
            "publish.shareWith.organizationalUnits",
            ou_arn,
        ),
    };
    let total = share.accounts.len() + share.organizations.len() + share.organizational_units.len();
    if total > MAX_SHARE_ENTITIES {
        r.err(P, format!("{total} sharing entities; AWS allows {MAX_SHARE_ENTITIES} per AMI per region (an organization or OU counts as one)"));
    }
    Some(share)
}

fn read_notify(r: &mut Reader, v: &Value) -> Option<Notify> {
    let obj = r.object(v, "notify", &["topicArn", "channel"])?;
    let topic_arn = r
        .required(obj, "notify", "topicArn")
        .and_then(|v| r.checked(v, "notify.topicArn", |s| ids::check_topic_arn(s).map(|()| s.to_owned())));
    let channel = match obj.get("channel") {
        Some(v) => r.checked(v, "notify.channel", name_token),
        None => Some(DEFAULT_CHANNEL.to_owned()),
    };
    Some(Notify {
        topic_arn: topic_arn?,
        channel: channel?,
    })
}

fn read_retention(r: &mut Reader, v: &Value) -> Option<Retention> {
    let obj = r.object(v, "retention", &["keep", "minAgeDays"])?;
    let keep = r
        .required(obj, "retention", "keep")
        .and_then(|v| r.count(v, "retention.keep", 1, 1000));
    let min_age_days = match obj.get("minAgeDays") {
        Some(v) => r.count(v, "retention.minAgeDays", 0, 3650),
        None => Some(DEFAULT_MIN_AGE_DAYS),
    };
    Some(Retention {
        keep: keep?,
        min_age_days: min_age_days?,
    })
}

fn read_rebake(r: &mut Reader, v: &Value) -> Option<Rebake> {
    let obj = r.object(v, "rebake", &["maxAttempts", "backoffSeconds"])?;
    let max_attempts = match obj.get("maxAttempts") {
        Some(v) => r.count(v, "rebake.maxAttempts", 1, MAX_ATTEMPTS),
        None => Some(DEFAULT_ATTEMPTS),
    };
    let backoff_seconds = match obj.get("backoffSeconds") {
        Some(v) => r.count(v, "rebake.backoffSeconds", 0, MAX_BACKOFF_SECONDS),
        None => Some(DEFAULT_BACKOFF_SECONDS),
    };
    Some(Rebake {
        max_attempts: max_attempts?,
        backoff_seconds: backoff_seconds?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const WEB_APP: &str = include_str!("../../../schema/examples/web-app.json");
    const MINIMAL: &str = include_str!("../../../schema/examples/minimal.json");
    const BROKEN: &str = include_str!("../../../schema/examples/broken.json");

    fn errors(doc: &str) -> Vec<String> {
        Policy::parse(doc.as_bytes())
            .unwrap_err()
            .0
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    fn acct(s: &str) -> AccountId {
        AccountId::parse(s).unwrap()
    }

    /// The web-app example with `edit` applied to it.
    fn web_app_with(edit: impl FnOnce(&mut Value)) -> String {
        let mut v: Value = serde_json::from_str(WEB_APP).unwrap();
        edit(&mut v);
        v.to_string()
    }

    #[test]
    fn full_example_parses() {
        let p = Policy::parse(WEB_APP.as_bytes()).unwrap();
        assert_eq!(
            p.pipeline_arn,
            "arn:aws:imagebuilder:us-east-1:111122223333:image-pipeline/web-app"
        );
        assert_eq!(
            p.sources.amis,
            [AmiSource {
                owner: acct("444455556666"),
                name_pattern: "soe-al2023-*".into()
            }]
        );
        assert_eq!(p.sources.schedules[0].rebuild, Rebuild::IfBaseChanged);
        assert_eq!(p.gate.max_findings.get(&Severity::Medium), Some(&10));
        assert_eq!(
            p.gate.max_findings.get(&Severity::Low),
            None,
            "absent severity is unlimited"
        );
        let regions: Vec<_> = p.publish.regions.iter().map(|r| r.region.as_str()).collect();
        assert_eq!(regions, ["us-east-1", "eu-west-1", "ap-southeast-2"]);
        assert!(p.publish.regions[0].kms_key_id.is_none());
        assert_eq!(p.publish.share_with.accounts.len(), 2);
        assert_eq!(p.publish.share_with.organizational_units.len(), 1);
        assert_eq!(p.publish.concurrency, 3);
        assert_eq!(p.retention.keep, 3);
    }

    #[test]
    fn minimal_example_gets_defaults() {
        let p = Policy::parse(MINIMAL.as_bytes()).unwrap();
        assert!(p.gate.require_tests_passed);
        assert!(p.gate.max_findings.is_empty());
        assert_eq!(p.gate.on_failure, Quarantine::Deprecate);
        assert_eq!(p.publish.concurrency, DEFAULT_CONCURRENCY);
        assert_eq!(p.notify.channel, "stable");
        assert_eq!(p.retention.keep, DEFAULT_KEEP);
    }

    #[test]
    fn every_error_is_reported_at_once_with_its_path() {
        let got = errors(BROKEN);
        let want = [
            "pipelineArn: not an Image Builder image pipeline ARN",
            "trustedOwners[1]: expected a 12-digit account ID",
            "sources.amis[0].owner: missing; an AMI is never chosen by name alone",
            "sources.amis[1].owner: 999988887777 is not in trustedOwners",
            "sources.amis[1].namePattern: a pattern of wildcards alone",
            "sources.schedules[0].rebuild: expected one of \"always\", \"ifBaseChanged\", found \"sometimes\"",
            "gate.requireTestsPassed: expected true or false, found a string",
            "gate.maxFindings.severe: unknown field",
            "gate.maxFindings.critical: expected a whole number from 0 to 4294967295, found -1",
            "publish.concurency: unknown field",
            "publish.regions[1].kmsKeyId: the key is in us-east-1 but the copy goes to eu-west-1",
            "publish.regions[2].kmsKeyId: not a KMS key ARN",
            "publish.regions[3].region: us-east-1 is listed twice",
            "publish.shareWith.accounts[1]: listed twice",
            "publish.shareWith.organizationalUnits[0]: not an OU ARN",
            "publish.ssmParameters[0]: parameter names beginning with aws or ssm are reserved",
            "notify.topicArn: not an SNS topic ARN",
            "retention.keep: 0 is out of range",
            "rebake.maxAttempts: 0 is out of range",
        ];
        for w in want {
            assert!(
                got.iter().any(|g| g.starts_with(w)),
                "missing {w:?} in\n{}",
                got.join("\n")
            );
        }
        assert_eq!(got.len(), want.len(), "unexpected extra errors:\n{}", got.join("\n"));
    }

    #[test]
    fn hostile_and_broken_documents_are_typed_errors() {
        for (doc, want) in [
            ("", "$: not JSON"),
            ("\u{0}\u{1}garbage", "$: not JSON"),
            ("[]", "$: expected an object, found an array"),
            ("null", "$: expected an object, found null"),
            ("{}", "schemaVersion: missing"),
            (r#"{"schemaVersion": "1"}"#, "schemaVersion: expected 1, found a string"),
            (r#"{"schemaVersion": 2}"#, "schemaVersion: expected 1, found 2"),
        ] {
            let got = errors(doc);
            assert!(got[0].starts_with(want), "{doc:?} → {got:?}");
        }
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(errors(&deep)[0].contains("recursion limit"));
        let huge = vec![b' '; crate::classify::MAX_INPUT_BYTES + 1];
        assert!(Policy::parse(&huge).unwrap_err().to_string().contains("bytes"));
        // A giant list of junk keys is one error per key, each named, not a crash.
        let junk: String = (0..5_000).map(|i| format!("\"junk{i}\": [[[{{}}]]],")).collect();
        let doc = WEB_APP.replacen('{', &format!("{{{junk}"), 1);
        assert_eq!(errors(&doc).len(), 5_000);
    }

    #[test]
    fn wrong_types_are_named_by_path() {
        let doc = web_app_with(|v| {
            v["sources"]["snsTopics"] = Value::String("arn:aws:sns:us-east-1:444455556666:soe-releases".into());
            v["publish"]["regions"][0] = Value::from(42);
            v["publish"]["shareWith"]["organizations"] = Value::from(vec![Value::Null]);
            v["notify"] = Value::Bool(true);
        });
        let got = errors(&doc);
        for want in [
            "sources.snsTopics: expected an array, found a string",
            "publish.regions[0]: expected an object, found a number",
            "publish.shareWith.organizations[0]: expected a string, found null",
            "notify: expected an object, found a boolean",
        ] {
            assert!(got.iter().any(|g| g.starts_with(want)), "missing {want:?} in {got:?}");
        }
    }

    #[test]
    fn a_policy_must_follow_something_and_trust_someone() {
        let got = errors(&web_app_with(|v| {
            v["sources"] = serde_json::json!({"snsTopics": []});
            v["trustedOwners"] = serde_json::json!([]);
        }));
        assert!(got.iter().any(|g| g.starts_with("sources: follows nothing")), "{got:?}");
        assert!(got.iter().any(|g| g.starts_with("trustedOwners: empty")), "{got:?}");
    }

    #[test]
    fn sharing_is_capped_at_the_aws_limit() {
        let accounts: Vec<String> = (0..=MAX_SHARE_ENTITIES)
            .map(|i| format!("{:012}", 200_000_000_000u64 + i as u64))
            .collect();
        let got = errors(&web_app_with(|v| {
            v["publish"]["shareWith"]["accounts"] = serde_json::json!(accounts)
        }));
        assert!(
            got.iter()
                .any(|g| g.starts_with("publish.shareWith: 1002 sharing entities")),
            "{got:?}"
        );
    }

    #[test]
    fn organization_and_ou_arns() {
        assert!(org_arn("arn:aws:organizations::111122223333:organization/o-a1b2c3d4e5").is_ok());
        assert!(org_arn("arn:aws:organizations::111122223333:organization/o-abc").is_err());
        assert!(org_arn("arn:aws:organizations:us-east-1:111122223333:organization/o-a1b2c3d4e5").is_err());
        assert!(ou_arn("arn:aws:organizations::111122223333:ou/o-a1b2c3d4e5/ou-ab12-34cd56ef").is_ok());
        assert!(ou_arn("arn:aws:organizations::111122223333:ou/o-a1b2c3d4e5/ou-ab1234cd56ef").is_err());
        assert!(ou_arn("arn:aws:organizations::111122223333:ou/ou-ab12-34cd56ef").is_err());
    }

    fn observed(owner: &str, state: &str, claimed: Option<&str>) -> ObservedAmi {
        ObservedAmi {
            image_id: AmiId::parse("ami-0a1b2c3d4e5f67890").unwrap(),
            owner: acct(owner),
            state: state.into(),
            deprecation_time: None,
            claimed_owner: claimed.map(acct),
        }
    }

    fn now() -> DateTime<Utc> {
        "2026-11-26T10:00:00Z".parse().unwrap()
    }

    #[test]
    fn only_trusted_available_sources_are_baked() {
        let p = Policy::parse(WEB_APP.as_bytes()).unwrap();
        assert_eq!(
            p.check_source(&observed("444455556666", "available", Some("444455556666")), now()),
            Ok(())
        );
        let untrusted = p
            .check_source(&observed("999988887777", "available", None), now())
            .unwrap_err();
        assert_eq!(untrusted.error_type(), "SourceNotTrusted");
        assert!(untrusted
            .to_string()
            .contains("999988887777, which is not a trusted owner"));
        // The event said the SOE account owns it; EC2 says otherwise: refuse.
        let spoofed = p
            .check_source(&observed("444455556666", "available", Some("111122223333")), now())
            .unwrap_err();
        assert!(matches!(spoofed, TrustError::OwnerMismatch { .. }));
        assert_eq!(spoofed.error_type(), "SourceNotTrusted");
        let pending = p
            .check_source(&observed("444455556666", "pending", None), now())
            .unwrap_err();
        assert_eq!(pending.error_type(), "SourceNotAvailable");
    }

    #[test]
    fn a_withdrawn_source_of_a_trusted_owner_is_refused() {
        let p = Policy::parse(WEB_APP.as_bytes()).unwrap();
        let disabled = p
            .check_source(&observed("444455556666", "disabled", None), now())
            .unwrap_err();
        assert_eq!(disabled.error_type(), "SourceDisabled");
        assert!(disabled.to_string().contains("disabled by its owner"), "{disabled}");

        let mut deprecated = observed("444455556666", "available", None);
        deprecated.deprecation_time = Some("2026-11-26T09:59:00Z".parse().unwrap());
        let e = p.check_source(&deprecated, now()).unwrap_err();
        assert_eq!(e.error_type(), "SourceDeprecated");
        assert!(e.to_string().contains("deprecated since 2026-11-26 09:59:00"), "{e}");
        // Deprecated at this very moment counts; a deprecation still to come does not.
        deprecated.deprecation_time = Some(now());
        assert!(p.check_source(&deprecated, now()).is_err());
        deprecated.deprecation_time = Some("2027-01-01T00:00:00Z".parse().unwrap());
        assert_eq!(p.check_source(&deprecated, now()), Ok(()));
        // An untrusted owner is named as such first, whatever the image's state.
        let mut theirs = observed("999988887777", "disabled", None);
        theirs.deprecation_time = Some(now());
        assert_eq!(
            p.check_source(&theirs, now()).unwrap_err().error_type(),
            "SourceNotTrusted"
        );
    }

    #[test]
    fn approval_is_off_by_default_and_its_wait_is_bounded() {
        let p = Policy::parse(MINIMAL.as_bytes()).unwrap();
        assert!(!p.approval.required);
        let with = |v: serde_json::Value| {
            let mut doc: serde_json::Value = serde_json::from_str(WEB_APP).unwrap();
            doc["approval"] = v;
            Policy::parse(doc.to_string().as_bytes())
        };
        let p = with(serde_json::json!({"required": true, "timeoutHours": 2})).unwrap();
        assert_eq!(p.approval, Approval::of(true, 2.0));
        assert_eq!(p.approval.timeout_seconds, 7200);
        // A fraction of an hour rounds up to whole seconds, never to zero.
        assert_eq!(Approval::of(true, 0.0001).timeout_seconds, 1);
        let got = errors(&web_app_with(|v| {
            v["retention"] = serde_json::json!({"keep": 3, "minAgeDays": -1});
            v["approval"] = serde_json::json!({"timeoutHours": 169, "who": "alice"});
        }));
        for want in [
            "approval.who: unknown field",
            "approval.required: missing",
            "approval.timeoutHours: expected hours above 0 and at most 168",
            "retention.minAgeDays: expected a whole number from 0 to 3650",
        ] {
            assert!(got.iter().any(|g| g.starts_with(want)), "missing {want:?} in {got:?}");
        }
        assert!(with(serde_json::json!({"required": true, "timeoutHours": 0})).is_err());
    }

    #[test]
    fn rebake_settings_default_and_are_bounded() {
        let p = Policy::parse(MINIMAL.as_bytes()).unwrap();
        assert_eq!(
            p.rebake,
            Rebake {
                max_attempts: 3,
                backoff_seconds: 900
            }
        );
        let p = Policy::parse(WEB_APP.as_bytes()).unwrap();
        assert_eq!(
            p.rebake,
            Rebake {
                max_attempts: 3,
                backoff_seconds: 1800
            }
        );
        let got =
            errors(&web_app_with(
                |v| v["rebake"] = serde_json::json!({"maxAttempts": 0, "backoffSeconds": 86401, "backoff": 1}),
            ));
        for want in [
            "rebake.backoff: unknown field",
            "rebake.maxAttempts: 0 is out of range; expected 1 to 10",
            "rebake.backoffSeconds: 86401 is out of range; expected 0 to 86400",
        ] {
            assert!(got.iter().any(|g| g.starts_with(want)), "missing {want:?} in {got:?}");
        }
    }

    #[test]
    fn an_attackers_ami_with_the_trusted_name_is_never_followed() {
        let p = Policy::parse(WEB_APP.as_bytes()).unwrap();
        let name = "soe-al2023-2026.11.2";
        assert!(p.follows_ami(&acct("444455556666"), name));
        assert!(!p.follows_ami(&acct("999988887777"), name), "same name, other owner");
        assert!(!p.follows_ami(&acct("444455556666"), "soe-rhel9-2026.11.2"));
    }

    #[test]
    fn glob_patterns() {
        assert!(glob_match("soe-al2023-*", "soe-al2023-2026.11.2"));
        assert!(glob_match("soe-?-x", "soe-a-x"));
        assert!(!glob_match("soe-?-x", "soe-ab-x"));
        assert!(glob_match("*", ""));
        assert!(!glob_match("soe", "soe-al2023"));
        assert!(glob_match("a*b*c", "a-x-b-y-c"));
        // Backtracking-heavy input stays fast and correct.
        let name = "a".repeat(10_000);
        assert!(!glob_match("*a*a*a*a*a*a*b", &name));
    }
}
