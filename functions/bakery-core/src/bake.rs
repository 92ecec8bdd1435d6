//! One bake as the state machine carries it: the payloads between its steps, and the plain
//! rules they apply (next recipe version, idempotency tokens, the gate's verdict, lineage tags).

use crate::ids::{AmiId, Region};
use crate::policy::{Gate, Policy, Severity};
use crate::trigger::SourceAmi;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The execution input: what to bake, and on what.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BakeRequest {
    /// Deterministic per (pipeline, source): the execution name and the root of every idempotency token.
    pub bake_id: String,
    pub pipeline_arn: String,
    /// The new parent image; None rebuilds on the recipe's current parent.
    #[serde(default)]
    pub source_ami: Option<SourceAmi>,
    /// The source's own ancestry, nearest first (from an upstream Bakery's publication).
    #[serde(default)]
    pub parent_chain: Vec<AmiId>,
    /// Where the bake came from, for the notification (free text such as "soeRelease").
    #[serde(default)]
    pub trigger: Option<String>,
}

/// StartBuild's output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BuildStarted {
    pub image_build_version_arn: String,
    pub recipe_arn: String,
    pub recipe_version: String,
    pub parent_image: String,
    pub pipeline_name: String,
    pub home_region: String,
    pub account_id: String,
    /// The recipe's platform (Linux, Windows, macOS), sent as a message attribute.
    #[serde(default)]
    pub platform: Option<String>,
    pub policy: Policy,
}

/// Inspector finding counts of a built image.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Findings(pub BTreeMap<Severity, u32>);

/// What the gate saw of the built image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BuildOutcome {
    /// Image Builder's status: AVAILABLE, FAILED, CANCELLED, ...
    pub status: String,
    pub reason: Option<String>,
    pub tests_enabled: bool,
    pub findings: Findings,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Verdict {
    pub passed: bool,
    /// Every reason it failed (empty when it passed).
    pub reasons: Vec<String>,
}

/// The gate: the image is AVAILABLE, its tests ran and passed (when required), and its scan
/// findings are within the policy's limits. Every failed condition is a reason.
pub fn verdict(gate: &Gate, outcome: &BuildOutcome) -> Verdict {
    let mut reasons = Vec::new();
    if outcome.status != "AVAILABLE" {
        let why = outcome.reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default();
        reasons.push(format!("image is {}{why}", outcome.status));
    }
    if gate.require_tests_passed && !outcome.tests_enabled {
        reasons.push("the policy requires tests, and the pipeline ran none".into());
    }
    for (severity, limit) in &gate.max_findings {
        let found = outcome.findings.0.get(severity).copied().unwrap_or(0);
        if found > *limit {
            reasons.push(format!("{found} {} findings, limit {limit}", severity.key()));
        }
    }
    Verdict {
        passed: reasons.is_empty(),
        reasons,
    }
}

/// The next patch version of a recipe: `1.2.3` → `1.2.4`. Image Builder versions are x.y.z.
pub fn next_patch_version(version: &str) -> Result<String, String> {
    let parts: Vec<u64> = version
        .split('.')
        .map(|p| p.parse::<u64>())
        .collect::<Result<_, _>>()
        .map_err(|_| format!("not a semantic version: {version:?}"))?;
    match parts.as_slice() {
        [major, minor, patch] => Ok(format!("{major}.{minor}.{}", patch + 1)),
        _ => Err(format!("not a semantic version: {version:?}")),
    }
}

/// A deterministic idempotency token (36 characters, Image Builder's and EC2's limit is 64):
/// the same bake and step always give the same token, so a retried step never acts twice.
pub fn client_token(bake_id: &str, step: &str) -> String {
    // FNV-1a, 128-bit: stable across Rust versions, unlike std's hasher.
    let mut h: u128 = 0x6c62272e07bb014262b821756295c58d;
    for b in bake_id.bytes().chain([0]).chain(step.bytes()) {
        h ^= u128::from(b);
        h = h.wrapping_mul(0x0000000001000000000000000000013B);
    }
    let x = format!("{h:032x}");
    format!("{}-{}-{}-{}-{}", &x[..8], &x[8..12], &x[12..16], &x[16..20], &x[20..])
}

/// The bake id for a pipeline and a source: also the Step Functions execution name (80
/// characters of letters, digits, `-` and `_`), unique per source so a redelivered event
/// starts nothing new.
pub fn bake_id(pipeline_name: &str, source: &str) -> String {
    let clean: String = pipeline_name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .take(40)
        .collect();
    format!(
        "{clean}-{}",
        &client_token(pipeline_name, source)[..18].replace('-', "")
    )
}

/// Lineage, as tags on every published AMI. Tag values are at most 256 characters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Lineage {
    pub bake_id: String,
    pub source_ami: String,
    /// The source's ancestry, nearest first.
    pub parent_chain: Vec<AmiId>,
    pub recipe_arn: String,
    pub recipe_version: String,
    pub pipeline_arn: String,
    pub execution_arn: String,
    pub image_build_version_arn: String,
    pub build_date: String,
}

impl Lineage {
    pub fn tags(&self) -> BTreeMap<String, String> {
        let chain: Vec<&str> = self.parent_chain.iter().map(AmiId::as_str).collect();
        [
            ("bakery:bake-id", self.bake_id.clone()),
            ("bakery:source-ami", self.source_ami.clone()),
            ("bakery:parent-chain", cut(&chain.join(","), 256)),
            ("bakery:recipe", cut(&self.recipe_arn, 256)),
            ("bakery:recipe-version", self.recipe_version.clone()),
            ("bakery:pipeline", cut(&self.pipeline_arn, 256)),
            ("bakery:execution", cut(&self.execution_arn, 256)),
            ("bakery:image", cut(&self.image_build_version_arn, 256)),
            ("bakery:build-date", self.build_date.clone()),
        ]
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }
}

/// Cuts at a comma boundary where possible (a chain of AMI IDs stays a list of whole IDs).
fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let head = &s[..max];
    head.rsplit_once(',').map_or(head, |(h, _)| h).to_owned()
}

/// One region's publication, as the publish step reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegionPublished {
    pub region: Region,
    pub image_id: AmiId,
    pub snapshot_ids: Vec<String>,
    pub parameters: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Quarantine;

    fn gate(limits: &[(Severity, u32)]) -> Gate {
        Gate {
            require_tests_passed: true,
            max_findings: limits.iter().copied().collect(),
            on_failure: Quarantine::Deprecate,
        }
    }

    fn outcome(status: &str, findings: &[(Severity, u32)]) -> BuildOutcome {
        BuildOutcome {
            status: status.into(),
            reason: None,
            tests_enabled: true,
            findings: Findings(findings.iter().copied().collect()),
        }
    }

    #[test]
    fn the_gate_lists_every_reason() {
        let g = gate(&[(Severity::Critical, 0), (Severity::High, 2)]);
        assert_eq!(
            verdict(&g, &outcome("AVAILABLE", &[(Severity::High, 2)])),
            Verdict {
                passed: true,
                reasons: vec![]
            }
        );
        let v = verdict(
            &g,
            &outcome(
                "AVAILABLE",
                &[(Severity::Critical, 1), (Severity::High, 3), (Severity::Low, 99)],
            ),
        );
        assert!(!v.passed);
        assert_eq!(v.reasons, ["1 critical findings, limit 0", "3 high findings, limit 2"]);
        let mut failed = outcome("FAILED", &[]);
        failed.reason = Some("InSpec: 2 controls failed".into());
        failed.tests_enabled = false;
        let v = verdict(&g, &failed);
        assert_eq!(
            v.reasons,
            [
                "image is FAILED: InSpec: 2 controls failed",
                "the policy requires tests, and the pipeline ran none"
            ]
        );
    }

    #[test]
    fn recipe_versions() {
        assert_eq!(next_patch_version("1.0.0").unwrap(), "1.0.1");
        assert_eq!(next_patch_version("2.9.19").unwrap(), "2.9.20");
        assert!(next_patch_version("1.0").is_err());
        assert!(next_patch_version("1.0.x").is_err());
        assert!(next_patch_version("").is_err());
    }

    #[test]
    fn tokens_and_ids_are_deterministic() {
        assert_eq!(client_token("b1", "start"), client_token("b1", "start"));
        assert_ne!(client_token("b1", "start"), client_token("b1", "copy-eu-west-1"));
        assert_ne!(client_token("b1", "x"), client_token("b2", "x"));
        assert_eq!(client_token("b1", "start").len(), 36);
        let id = bake_id("web app/β", "ami-0a1b2c3d4e5f67890");
        assert_eq!(id, bake_id("web app/β", "ami-0a1b2c3d4e5f67890"));
        assert!(id.starts_with("web-app--"), "{id}");
        assert!(id.len() <= 80 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        assert_ne!(id, bake_id("web app/β", "ami-0fedcba9876543210"));
    }

    #[test]
    fn lineage_tags_fit_ec2_limits() {
        let chain: Vec<AmiId> = (0..40)
            .map(|i| AmiId::parse(&format!("ami-{i:017x}")).unwrap())
            .collect();
        let l = Lineage {
            bake_id: "web-1".into(),
            source_ami: "ami-0a1b2c3d4e5f67890".into(),
            parent_chain: chain,
            recipe_arn: "arn:aws:imagebuilder:us-east-1:111122223333:image-recipe/web/1.0.1".into(),
            recipe_version: "1.0.1".into(),
            pipeline_arn: "arn:aws:imagebuilder:us-east-1:111122223333:image-pipeline/web".into(),
            execution_arn: String::new(),
            image_build_version_arn: "arn:aws:imagebuilder:us-east-1:111122223333:image/web/1.0.1/1".into(),
            build_date: "2026-11-26T16:00:00Z".into(),
        };
        let tags = l.tags();
        assert!(tags.values().all(|v| v.len() <= 256));
        assert!(!tags.contains_key("bakery:execution"), "empty values are not tags");
        let chain = &tags["bakery:parent-chain"];
        assert!(
            chain.split(',').all(|a| AmiId::parse(a).is_ok()),
            "whole IDs only: {chain}"
        );
    }
}
