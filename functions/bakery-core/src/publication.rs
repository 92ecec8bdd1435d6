//! Bakery's own SNS publication: what subscribers receive, and what a downstream Bakery
//! classifies as a trigger. The schema string is versioned; readers ignore unknown fields so
//! that a newer upstream stays readable.

use crate::ids::{AccountId, AmiId, Region};
use crate::policy::ShareWith;
use serde::{Deserialize, Serialize};

/// The `schema` of every publication this version writes.
pub const PUBLICATION_SCHEMA: &str = "bakery.publication/v1";
/// Prefix shared by every version; a message with it is Bakery's, whatever the version.
pub const PUBLICATION_SCHEMA_PREFIX: &str = "bakery.publication/";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BakeStatus {
    Published,
    Failed,
    /// The gate passed and the bake waits for a person (`approval` says how to answer).
    AwaitingApproval,
    /// An operator withdrew published AMIs (`revocation` says which, why, and what was undone).
    Revoked,
    /// Published images whose parent has a newer trusted release (`stale` lists them).
    Stale,
    /// A status a newer Bakery writes, as a publication's reader sees it ([`Publication`]
    /// reads any unknown status as this, to ignore the message rather than fail on it).
    #[serde(skip_deserializing)]
    Other,
}

/// A publication's status, where a newer Bakery may write one this version does not know.
fn lenient_status<'de, D: serde::Deserializer<'de>>(d: D) -> Result<BakeStatus, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    if !v.is_string() {
        return Err(serde::de::Error::custom(format!(
            "status: expected a string, found {v}"
        )));
    }
    Ok(serde_json::from_value(v).unwrap_or(BakeStatus::Other))
}

impl BakeStatus {
    /// As on the wire and in the `status` message attribute.
    pub fn as_str(self) -> &'static str {
        match self {
            BakeStatus::Published => "PUBLISHED",
            BakeStatus::Failed => "FAILED",
            BakeStatus::AwaitingApproval => "AWAITING_APPROVAL",
            BakeStatus::Revoked => "REVOKED",
            BakeStatus::Stale => "STALE",
            BakeStatus::Other => "OTHER",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Publication {
    pub schema: String,
    #[serde(deserialize_with = "lenient_status")]
    pub status: BakeStatus,
    /// The account that owns every AMI listed.
    pub account_id: AccountId,
    /// The bake's pipeline; for REVOKED the revoked AMI's; empty (left out) for STALE, which
    /// lists each pipeline under `stale`.
    #[serde(default, skip_serializing_if = "PipelineRef::is_empty")]
    pub pipeline: PipelineRef,
    #[serde(default)]
    pub execution_arn: Option<String>,
    #[serde(default)]
    pub amis: Vec<PublishedAmi>,
    #[serde(default)]
    pub lineage: Lineage,
    /// The rest is for people and filters; a downstream Bakery needs none of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bake_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipe_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared_with: Option<ShareWith>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssm_parameters: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate: Option<GateSummary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<Attempt>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<ApprovalRequest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocation: Option<Revocation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stale: Option<Vec<StaleImage>>,
}

/// What `bakery revoke` did: the AMI named, every bake it withdrew (that AMI's, then with
/// `cascade` every descendant the ledger knows), and the parameters it pointed back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Revocation {
    pub image_id: AmiId,
    pub reason: String,
    pub revoked_by: String,
    pub revoked_at: String,
    pub cascade: bool,
    /// Disabled (DisableImage) as well as deprecated.
    pub disabled: bool,
    pub bakes: Vec<RevokedBake>,
    #[serde(default)]
    pub parameters: Vec<ParameterReverted>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RevokedBake {
    pub bake_id: String,
    pub pipeline: PipelineRef,
    pub amis: Vec<PublishedAmi>,
    /// The revoked AMI it was built on (a descendant's), or none for the AMI named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub built_on: Option<AmiId>,
}

/// A parameter that pointed at a revoked AMI: `to` is the previous good AMI it points at now,
/// or none when it had no earlier good value (then it still points at `from`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ParameterReverted {
    pub region: Region,
    pub name: String,
    pub from: AmiId,
    pub to: Option<AmiId>,
}

/// A pipeline's latest published images, built on `built_on`, while its parent has a newer
/// trusted release (`newer_base`) or `built_on` was revoked (`base_revoked`), or both.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StaleImage {
    pub pipeline: PipelineRef,
    pub bake_id: String,
    pub amis: Vec<PublishedAmi>,
    pub published_at: String,
    pub built_on: AmiId,
    /// The newest trusted release of the parent; none when only the base's revocation makes
    /// the images stale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub newer_base: Option<AmiId>,
    /// Trusted releases of the parent newer than `built_on` (0 when `newer_base` is none).
    pub newer_releases: u32,
    /// Why `built_on` was revoked (here, or by the Bakery it came from): these images should
    /// be rebuilt or withdrawn whether or not a newer base exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_revoked: Option<String>,
    /// When the first of them appeared, where known; and the whole days since.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub behind_since: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub days_behind: Option<i64>,
}

/// Which attempt at its (pipeline, source AMI) the bake was. After a failure, `rebake` says
/// whether another attempt will follow, and `exhausted` is true when this was the last one the
/// policy allows: that message is the one that says nothing more will start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalRequest {
    /// When the bake stops waiting and fails.
    pub expires_at: String,
    /// The commands that answer it.
    pub approve: String,
    pub reject: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attempt {
    pub number: u32,
    pub max_attempts: u32,
    pub exhausted: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rebake: Option<String>,
}

impl Attempt {
    pub fn of(number: u32, max_attempts: u32, status: BakeStatus) -> Attempt {
        let exhausted = status == BakeStatus::Failed && number >= max_attempts;
        let rebake = match status {
            BakeStatus::Failed if exhausted => Some(format!(
                "attempt {number} of {max_attempts} failed; it was the last the policy's rebake.maxAttempts allows, \
                 so no trigger bakes this pipeline on this source again (a new source AMI, or a higher maxAttempts, does)"
            )),
            BakeStatus::Failed => Some(format!(
                "attempt {number} of {max_attempts} failed; the next trigger for this pipeline and source starts attempt {} \
                 once the policy's rebake backoff has passed",
                number + 1
            )),
            _ => None,
        };
        Attempt {
            number,
            max_attempts,
            exhausted,
            rebake,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GateSummary {
    pub passed: bool,
    pub reasons: Vec<String>,
    /// Scan findings per severity.
    pub findings: std::collections::BTreeMap<String, u32>,
    pub quarantined: bool,
}

/// Which step of the bake failed, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    pub step: String,
    pub error: String,
    pub cause: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PipelineRef {
    pub arn: String,
    pub name: String,
}

impl PipelineRef {
    pub fn of(arn: &str) -> PipelineRef {
        PipelineRef {
            arn: arn.to_owned(),
            name: crate::ids::pipeline_name(arn).to_owned(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.arn.is_empty() && self.name.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PublishedAmi {
    pub region: Region,
    pub image_id: AmiId,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Lineage {
    /// The AMI this bake built on, then its own parents, nearest first.
    #[serde(default)]
    pub parents: Vec<AmiId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipe_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_build_version_arn: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_this_version_does_not_know_is_read_as_other() {
        let p = |status: &str| serde_json::json!({"schema": PUBLICATION_SCHEMA, "status": status, "accountId": "111122223333"});
        let later: Publication = serde_json::from_value(p("SUPERSEDED")).unwrap();
        assert_eq!(later.status, BakeStatus::Other);
        let revoked: Publication = serde_json::from_value(p("REVOKED")).unwrap();
        assert_eq!(revoked.status, BakeStatus::Revoked);
        assert!(revoked.pipeline.is_empty());
        assert!(
            serde_json::from_value::<BakeStatus>(serde_json::json!("SUPERSEDED")).is_err(),
            "a step's status stays strict"
        );
    }

    #[test]
    fn only_the_last_failed_attempt_is_exhausted() {
        let a = Attempt::of(1, 3, BakeStatus::Failed);
        assert!(!a.exhausted);
        assert!(a.rebake.as_deref().unwrap().contains("starts attempt 2"), "{a:?}");
        let last = Attempt::of(3, 3, BakeStatus::Failed);
        assert!(last.exhausted);
        assert!(last
            .rebake
            .as_deref()
            .unwrap()
            .contains("attempt 3 of 3 failed; it was the last"));
        let published = Attempt::of(3, 3, BakeStatus::Published);
        assert!(!published.exhausted && published.rebake.is_none());
        assert_eq!(
            serde_json::to_value(&last).unwrap()["maxAttempts"],
            3,
            "camelCase on the wire"
        );
    }
}
