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
