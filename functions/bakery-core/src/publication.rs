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
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Publication {
    pub schema: String,
    pub status: BakeStatus,
    /// The account that owns every AMI listed.
    pub account_id: AccountId,
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
            BakeStatus::Published | BakeStatus::AwaitingApproval => None,
            BakeStatus::Failed if exhausted => Some(format!(
                "attempt {number} of {max_attempts} failed; it was the last the policy's rebake.maxAttempts allows, \
                 so no trigger bakes this pipeline on this source again (a new source AMI, or a higher maxAttempts, does)"
            )),
            BakeStatus::Failed => Some(format!(
                "attempt {number} of {max_attempts} failed; the next trigger for this pipeline and source starts attempt {} \
                 once the policy's rebake backoff has passed",
                number + 1
            )),
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PipelineRef {
    pub arn: String,
    pub name: String,
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
