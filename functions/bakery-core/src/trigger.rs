//! The normalized bake trigger: whatever started a bake, reduced to what the trigger function
//! needs to find the pipelines that follow it and the source AMIs to build on.

use crate::ids::{AccountId, AmiId, Region};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What classification decided about one input.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "action", rename_all = "lowercase")]
pub enum Classification {
    /// The input asks for bakes.
    Bake { trigger: BakeTrigger },
    /// A well-formed event that starts nothing; `reason` says why.
    Ignore { reason: String },
    /// An operator asks which published images are stale (`bakery stale`); `publish` also
    /// announces them in one STALE message. The daily staleness schedule is a Schedule origin.
    Stale { publish: bool },
    /// A Bakery this stack follows withdrew AMIs (a REVOKED publication): they are revoked here
    /// too, so none is taken as a base, and the images built on them are announced as stale.
    #[serde(rename = "revoked")]
    UpstreamRevoked { revoked: UpstreamRevocation },
}

/// An upstream Bakery's REVOKED publication, as the trigger acts on it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UpstreamRevocation {
    pub topic_arn: String,
    /// The upstream account, owner of every AMI listed.
    pub account_id: AccountId,
    /// Every AMI withdrawn, in every region.
    pub amis: Vec<SourceAmi>,
    pub reason: String,
    pub revoked_by: String,
    pub revoked_at: String,
    /// The SNS MessageId; a redelivery keeps it.
    pub event_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BakeTrigger {
    pub origin: Origin,
    /// AMIs the event names. Empty when the origin names something the trigger function
    /// resolves itself (an upstream image, a parameter, a schedule, a manual request).
    pub source_amis: Vec<SourceAmi>,
    /// The delivering service's id for the event (SNS MessageId, EventBridge id); a redelivery keeps it.
    pub event_id: String,
    pub event_time: Option<DateTime<Utc>>,
}

/// A source AMI by ID and region, never by name. `owner` is what the event claims; the
/// trigger function still checks the real owner with an owner-filtered DescribeImages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceAmi {
    pub image_id: AmiId,
    pub region: Region,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<AccountId>,
}

/// Where a trigger came from, with what is needed to match it against bake policies.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum Origin {
    /// An upstream Bakery announced PUBLISHED AMIs on a topic this stack follows.
    BakeryPublication {
        topic_arn: String,
        pipeline_arn: String,
        execution_arn: Option<String>,
        /// The upstream AMIs' own ancestry, nearest first, carried into our lineage.
        parent_chain: Vec<AmiId>,
    },
    /// EC2 Image Builder's own SNS notification of an AVAILABLE image.
    ImageBuilderNotification {
        topic_arn: String,
        image_arn: String,
        pipeline_arn: Option<String>,
        /// Image Builder's packed semantic version; wider than u64, so carried as a decimal string.
        semver: String,
        date_created: DateTime<Utc>,
    },
    /// A plain SOE release message (see README, "SOE release message").
    SoeRelease { topic_arn: String, release: Option<String> },
    /// "EC2 AMI State Change" to available.
    AmiStateChange { account: AccountId, region: Region },
    /// "EC2 Image Builder Image State Change" to AVAILABLE; AMIs come from GetImage.
    UpstreamImage {
        image_arn: String,
        account: AccountId,
        region: Region,
    },
    /// "Parameter Store Change" (Create or Update); the value is read with GetParameter.
    ParameterChange {
        name: String,
        operation: String,
        account: AccountId,
        region: Region,
    },
    /// An EventBridge rule schedule or an EventBridge Scheduler schedule fired.
    Schedule {
        schedule_arn: String,
        scheduled_time: Option<DateTime<Utc>>,
    },
    /// An operator asked for a bake of one pipeline.
    Manual {
        pipeline_arn: String,
        requested_by: Option<String>,
        reason: Option<String>,
    },
}
