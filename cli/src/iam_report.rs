//! `bakery iam-report`: per role the template makes, each action its policies grant, and
//! whether any scenario used it, from the local AWS's decisions (`BAKERY_IAM_USAGE`). A grant no
//! scenario used must say why it stays in a comment beside its statement in template.yaml: the
//! report shows that comment, and fails on an unused grant that has none.

use gateway::template::Template;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// One action of one statement of one role's policy.
struct Grant {
    role: String,
    policy: String,
    /// 1-based, as IAM's evaluator counts them.
    statement: usize,
    sid: Option<String>,
    action: String,
}

pub struct Report {
    pub text: String,
    pub unjustified: Vec<String>,
}

pub async fn run(repo: &Path, usage: &Path) -> Result<Report, String> {
    let sam_text = std::fs::read_to_string(repo.join("template.yaml")).map_err(|e| format!("template.yaml: {e}"))?;
    let sam = Template::parse(&sam_text).map_err(|e| e.to_string())?;
    let (region, account, stack) = ("us-east-1", "123456789012", "bakery");
    let mut parameters = sam.parameters(&BTreeMap::new());
    parameters.insert("AWS::Region".into(), region.into());
    parameters.insert("AWS::AccountId".into(), account.into());
    parameters.insert("AWS::StackName".into(), stack.into());
    let translated = Template::translate(repo, &repo.join("template.yaml"), &parameters)
        .await
        .map_err(|e| e.to_string())?;
    let mut names = gateway::template::Names {
        stack: stack.into(),
        region: region.into(),
        account: account.into(),
        lists: translated.list_parameters(),
        parameters,
        resources: BTreeMap::new(),
    };
    gateway::deploy::name_resources(&translated, &mut names).map_err(|e| e.to_string())?;
    let used = usage_of(usage)?;
    let comments = Comments::of(&sam_text);

    let mut text = String::new();
    let mut unjustified = Vec::new();
    let mut roles = translated.roles(&names).map_err(|e| e.to_string())?;
    roles.sort_by(|a, b| a.logical_id.cmp(&b.logical_id));
    for role in roles {
        text.push_str(&format!("{} ({})\n", role.logical_id, role.arn));
        // The function (or state machine, or schedule) the role belongs to: its SAM resource.
        let owner = role.logical_id.trim_end_matches("Role");
        let sam_policies = sam
            .root
            .pointer(&format!("/Resources/{owner}/Properties/Policies"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for (policy, doc) in &role.policies {
            for (i, statement) in statements(doc).iter().enumerate() {
                let sid = statement["Sid"].as_str().map(str::to_owned);
                let why = match (&sid, sam.root.pointer(&format!("/Resources/{owner}"))) {
                    (Some(sid), Some(_)) => comments.above_sid(owner, sid),
                    (None, Some(_)) => template_name(policy, &sam_policies).and_then(|t| comments.above_key(owner, &t)),
                    // A role SAM made for a function's event (a schedule's): the event's comment.
                    (_, None) => sam
                        .resources()
                        .map(|(id, _)| id)
                        .find(|id| owner.starts_with(id.as_str()))
                        .and_then(|function| {
                            comments.above(function, |l| l == format!("{}:", &owner[function.len()..]))
                        }),
                };
                for action in strings(&statement["Action"]) {
                    let g = Grant {
                        role: role.arn.clone(),
                        policy: policy.clone(),
                        statement: i + 1,
                        sid: sid.clone(),
                        action,
                    };
                    let count = used
                        .get(&(g.role.clone(), g.policy.clone(), g.statement))
                        .map_or(0, |actions| actions.iter().filter(|a| matches(&g.action, a)).count());
                    let label = format!(
                        "{} #{}{}",
                        g.policy,
                        g.statement,
                        g.sid.as_ref().map(|s| format!(" {s}")).unwrap_or_default()
                    );
                    let status = if count > 0 {
                        format!("used ({count} kind(s) of call)")
                    } else {
                        match &why {
                            Some(w) => format!("unused; kept: {w}"),
                            None => {
                                unjustified.push(format!("{}: {label}: {}", role.logical_id, g.action));
                                "UNUSED, and no comment in template.yaml says why it stays".into()
                            }
                        }
                    };
                    text.push_str(&format!("  {label:<44} {:<48} {status}\n", g.action));
                }
            }
        }
        for managed in &role.managed {
            text.push_str(&format!(
                "  managed {managed}: used by the service itself (logs, traces), not by calls the local AWS sees\n"
            ));
        }
        text.push('\n');
    }
    Ok(Report { text, unjustified })
}

/// (role ARN, policy name, statement index): one statement of one role's policies.
type StatementKey = (String, String, usize);

/// Each statement → the actions it allowed, from every decision file.
fn usage_of(dir: &Path) -> Result<BTreeMap<StatementKey, BTreeSet<String>>, String> {
    let mut out: BTreeMap<StatementKey, BTreeSet<String>> = BTreeMap::new();
    let entries = std::fs::read_dir(dir).map_err(|e| {
        format!(
            "{}: {e} (run the scenarios with BAKERY_IAM_USAGE set: make iam-report)",
            dir.display()
        )
    })?;
    for entry in entries.flatten() {
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        for line in text.lines() {
            let Ok(d) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            let (Some(role), true) = (d["role"].as_str(), d["allowed"] == true) else {
                continue;
            };
            for g in d["decision"]["grants"].as_array().into_iter().flatten() {
                if g["policyType"] != "identity" {
                    continue;
                }
                let key = (
                    role.to_owned(),
                    g["policyIdentifier"].as_str().unwrap_or_default().to_owned(),
                    g["statementIndex"].as_u64().unwrap_or(0) as usize,
                );
                out.entry(key)
                    .or_default()
                    .insert(d["action"].as_str().unwrap_or_default().to_owned());
            }
        }
    }
    Ok(out)
}

fn statements(doc: &Value) -> Vec<Value> {
    match &doc["Statement"] {
        Value::Array(s) => s.clone(),
        Value::Object(_) => vec![doc["Statement"].clone()],
        _ => Vec::new(),
    }
}

fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
        _ => Vec::new(),
    }
}

/// An IAM action pattern (`sqs:SendMessage*`) against an action, case-insensitively.
fn matches(pattern: &str, action: &str) -> bool {
    let (p, a) = (pattern.to_ascii_lowercase(), action.to_ascii_lowercase());
    match p.split_once('*') {
        None => p == a,
        Some((head, tail)) => a.starts_with(head) && a[head.len()..].ends_with(tail.trim_start_matches('*')),
    }
}

/// SAM names a function's policies `<Role>Policy<N>` by their place in `Policies`; a policy
/// template is the one key of its entry (`DynamoDBReadPolicy`).
fn template_name(policy: &str, sam_policies: &[Value]) -> Option<String> {
    let index: usize = policy.rsplit("Policy").next()?.parse().ok()?;
    let entry = sam_policies.get(index)?.as_object()?;
    let key = entry.keys().next()?;
    (key != "Statement").then(|| key.clone())
}

/// The comment lines right above a statement's `- Sid:` or a policy template's `- Name:` line,
/// within a resource's block of template.yaml.
struct Comments<'a> {
    lines: Vec<&'a str>,
}

impl<'a> Comments<'a> {
    fn of(text: &'a str) -> Self {
        Self {
            lines: text.lines().collect(),
        }
    }

    fn block(&self, resource: &str) -> std::ops::Range<usize> {
        let head = format!("  {resource}:");
        let start = self.lines.iter().position(|l| *l == head).unwrap_or(self.lines.len());
        let end = self.lines[start.saturating_add(1).min(self.lines.len())..]
            .iter()
            .position(|l| l.starts_with("  ") && !l.starts_with("   ") && !l.trim_start().starts_with('#'))
            .map_or(self.lines.len(), |n| start + 1 + n);
        start..end
    }

    fn above(&self, resource: &str, line_is: impl Fn(&str) -> bool) -> Option<String> {
        let range = self.block(resource);
        let at = range.clone().find(|&i| line_is(self.lines[i].trim()))?;
        let mut comment = Vec::new();
        for i in (range.start..at).rev() {
            match self.lines[i].trim().strip_prefix('#') {
                Some(c) => comment.push(c.trim()),
                None => break,
            }
        }
        comment.reverse();
        (!comment.is_empty()).then(|| comment.join(" "))
    }

    fn above_sid(&self, resource: &str, sid: &str) -> Option<String> {
        self.above(resource, |l| l == format!("- Sid: {sid}"))
    }

    fn above_key(&self, resource: &str, key: &str) -> Option<String> {
        self.above(resource, |l| l == format!("- {key}:"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_patterns() {
        assert!(matches("sqs:SendMessage*", "sqs:SendMessage"));
        assert!(matches("sqs:SendMessage*", "sqs:SendMessageBatch"));
        assert!(!matches("sqs:SendMessage*", "sqs:ReceiveMessage"));
        assert!(matches("ec2:DescribeImages", "EC2:describeimages"));
        assert!(matches("*", "kms:Decrypt"));
    }

    #[test]
    fn comments_above_statements() {
        let text = "Resources:\n  F:\n    Properties:\n      Policies:\n        # Reads the ledger.\n        - DynamoDBReadPolicy:\n            TableName: t\n        - Statement:\n            # Why it stays,\n            # on two lines.\n            - Sid: Keep\n              Effect: Allow\n            - Sid: Bare\n  G:\n    Type: X\n";
        let c = Comments::of(text);
        assert_eq!(c.above_sid("F", "Keep").as_deref(), Some("Why it stays, on two lines."));
        assert_eq!(c.above_sid("F", "Bare"), None);
        assert_eq!(
            c.above_key("F", "DynamoDBReadPolicy").as_deref(),
            Some("Reads the ledger.")
        );
        assert_eq!(c.above_sid("G", "Keep"), None);
    }
}
