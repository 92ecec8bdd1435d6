//! Bakery's own SNS publication: what subscribers receive, and what a downstream Bakery
//! classifies as a trigger. The schema string is versioned; readers ignore unknown fields so
//! that a newer upstream stays readable.

use crate::ids::{AccountId, AmiId, Region};
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
}
