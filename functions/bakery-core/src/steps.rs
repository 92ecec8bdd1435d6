//! The bake's step contract: the input and output of every state of
//! `statemachine/bake.asl.json`, in one place. Each Task state's `Parameters` (or, for the wait,
//! its `Payload`) makes the function's input from the execution state; its `ResultPath` puts the
//! output back. `tests/steps.rs` walks every path of the state machine with these types, so a
//! field renamed here or a path changed there fails a test rather than a bake.
//!
//! | State                     | Function        | Input                     | Output, at            |
//! |---------------------------|-----------------|---------------------------|-----------------------|
//! | (execution input)         |                 | [`BakeRequest`]           | `$`                   |
//! | StartBuild                | start-build     | [`BakeRequest`] (`$`)     | [`BuildStarted`], `$.build` |
//! | WaitForBuild, CheckBuild  | build-watch     | [`WatchRequest`]          | [`BuildStatus`], `$.watch` |
//! | (Image State Change)      | build-events    | [`ImageStateChange`]      | [`StateChangeHandled`] |
//! | Gate                      | gate            | [`GateRequest`]           | [`GateResult`], `$.gate` |
//! | ApprovalRequired (Choice) |                 |                           |                       |
//! | WaitForApproval           | announce (waits for its task token) | [`AnnounceRequest`] + `taskToken` | [`ApprovalGiven`] (from `bakery approve`), `$.approval` |
//! | NotApproved (Pass)        |                 |                           | [`Failure`], `$.failure` |
//! | QuarantineNotApproved     | gate            | [`GateRequest`] + `notApproved` | [`GateResult`], `$.gate` |
//! | Publish › PublishRegion   | publish-region  | [`PublishRequest`]        | [`RegionPublished`], an item of `$.published` |
//! | Publish › RegionNotPublished | (Pass)       |                           | [`RegionFailure`], an item of `$.published` |
//! | AllRegionsPublished       | publish-region  | [`CheckRequest`]          | `Vec<RegionPublished>`, `$.published` |
//! | Unpublish › RevokeRegion  | publish-region  | [`PublishRequest`] + `revoke` | [`RegionRevoked`], an item of `$.unpublished` |
//! | Announce, NotifyFailure   | announce        | [`AnnounceRequest`]       | [`Announced`], `$.announced` |
//! | RecordLineage             | announce        | [`AnnounceRequest`] + `record` | [`Recorded`], `$.recorded` |
//! | ApplyRetention            | publish-region  | [`RetainRequest`] + `retain` | [`RetentionApplied`], `$.retention` |
//! | RetentionNotApplied (Pass) |                |                           | the error, `$.retentionError` |
//! | Failed… (Pass)            |                 |                           | [`Failure`], `$.failure` |
//!
//! [`decode`] is how every function reads its input: a bad field is named by its path.

use crate::ids::{AmiId, Region};
use crate::policy::{Policy, Retention, Severity, ShareWith, TargetRegion};
pub use crate::publication::Failure;
use crate::publication::{BakeStatus, Revocation, StaleImage};
use crate::retention::Kept;
use crate::trigger::SourceAmi;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// A step's input that is not what the state machine sends: which step, where, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{step} input: {}{message}", if path.is_empty() { String::new() } else { format!("{path}: ") })]
pub struct StepInputError {
    pub step: String,
    /// The field's path (`target.region`, `state.build.policy`), empty for the whole input.
    pub path: String,
    pub message: String,
}

/// Reads a step's input, naming the path of a bad field.
pub fn decode<T: DeserializeOwned>(step: &str, payload: Value) -> Result<T, StepInputError> {
    serde_path_to_error::deserialize(payload).map_err(|e| {
        let path = e.path().to_string();
        StepInputError {
            step: step.to_owned(),
            path: if path == "." { String::new() } else { path },
            message: e.inner().to_string(),
        }
    })
}

/// The execution input: what to bake, and on what.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BakeRequest {
    /// Deterministic per (pipeline, source) and attempt: the execution name and the root of
    /// every idempotency token, so a new attempt makes a new build instead of finding the
    /// failed one again.
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
    /// Which attempt at this (pipeline, source) this is, from 1, and how many the policy allows.
    #[serde(default = "first")]
    pub attempt: u32,
    #[serde(default = "first")]
    pub max_attempts: u32,
}

fn first() -> u32 {
    1
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

/// The wait (`taskToken` given: keep it, answer at once if the build already ended) and the
/// status check after the wait timed out (no token).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WatchRequest {
    pub image_build_version_arn: String,
    #[serde(default)]
    pub task_token: Option<String>,
}

/// A build's status as the state machine sees it: the wait's answer and the check's output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BuildStatus {
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub terminal: bool,
}

impl BuildStatus {
    pub fn new(status: &str, reason: Option<String>) -> Self {
        let terminal = matches!(
            status,
            "AVAILABLE" | "FAILED" | "CANCELLED" | "DEPRECATED" | "DELETED" | "DISABLED"
        );
        Self {
            status: status.to_owned(),
            reason,
            terminal,
        }
    }
}

/// "EC2 Image Builder Image State Change", as EventBridge delivers it to build-events: the
/// event names the image only (`resources[0]`); its status is in `detail.state`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageStateChange {
    pub resources: Vec<String>,
    pub detail: ImageStateChangeDetail,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageStateChangeDetail {
    pub state: ImageState,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageState {
    pub status: String,
    #[serde(default)]
    pub reason: Option<String>,
}

/// What build-events did with a state change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StateChangeHandled {
    pub image: String,
    pub status: String,
    /// A waiting bake was answered (false: the build goes on, or nothing waited).
    pub answered: bool,
}

/// The gate's input: the whole execution state (`$`) and the execution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GateRequest {
    pub state: GateState,
    pub execution_arn: String,
    /// QuarantineNotApproved's: the approval was refused or timed out (NotApproved's
    /// `$.failure`), so the gated image is quarantined as a failed gate's is, with this as the
    /// reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_approved: Option<Failure>,
}

/// The parts of the execution state the gate reads; the rest passes by.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GateState {
    pub bake_id: String,
    pub pipeline_arn: String,
    #[serde(default)]
    pub source_ami: Option<SourceAmi>,
    #[serde(default)]
    pub parent_chain: Vec<AmiId>,
    pub build: BuildStarted,
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

/// A built AMI in one region: the gate's `image`, the publish step's source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BakedImage {
    pub region: Region,
    pub image_id: AmiId,
    pub name: String,
    #[serde(default)]
    pub snapshot_ids: Vec<String>,
}

/// The gate's output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GateResult {
    pub passed: bool,
    pub reasons: Vec<String>,
    pub outcome: BuildOutcome,
    /// The AMI in the home region (None when the build made none there).
    pub image: Option<BakedImage>,
    /// The failed image's AMIs are tagged and deprecated, or gone.
    pub quarantined: bool,
    /// The failed image's AMIs no longer exist, nor their snapshots.
    pub deregistered: bool,
    pub lineage: AmiLineage,
}

/// The lineage tagged on every AMI the bake publishes (the publication's `lineage` is the part
/// of it subscribers get). Tag values are at most 256 characters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AmiLineage {
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

impl AmiLineage {
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

/// One region of the publish Map (and, with `revoke`, of the rollback's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PublishRequest {
    pub bake_id: String,
    pub target: TargetRegion,
    /// The gated AMI in the home region.
    pub image: BakedImage,
    #[serde(default)]
    pub share_with: ShareWith,
    #[serde(default)]
    pub ssm_parameters: Vec<String>,
    pub lineage: AmiLineage,
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

/// A region whose publication failed, caught inside the Map (RegionNotPublished) so that the
/// others settle before the rollback. `cause` is the Lambda error as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegionFailure {
    pub region: Region,
    pub error: String,
    pub cause: String,
}

/// An item of the publish Map's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RegionResult {
    Failed(RegionFailure),
    Published(RegionPublished),
}

/// AllRegionsPublished: every region's result, once all have settled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckRequest {
    pub check: bool,
    pub published: Vec<RegionResult>,
}

/// What the rollback undid in one region.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegionRevoked {
    pub region: Region,
    pub revoked: Vec<AmiId>,
    pub deleted_parameters: Vec<String>,
}

/// After the publication (ApplyRetention): the pipeline's older AMIs to deregister, in the
/// home region and every target region.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RetainRequest {
    pub bake_id: String,
    pub pipeline_arn: String,
    /// The gated AMI in the home region.
    pub image: BakedImage,
    pub regions: Vec<TargetRegion>,
    #[serde(default)]
    pub ssm_parameters: Vec<String>,
    pub retention: Retention,
}

/// What retention did in one region.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegionRetention {
    pub region: Region,
    pub kept: Vec<KeptImage>,
    pub deregistered: Vec<AmiId>,
    pub deleted_snapshots: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeptImage {
    pub image_id: AmiId,
    pub reason: Kept,
}

/// ApplyRetention's output, at `$.retention`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RetentionApplied {
    pub regions: Vec<RegionRetention>,
}

/// The four calls of publish-region, told apart as the state machine sends them: `revoke:
/// true` (RevokeRegion), `check: true` (AllRegionsPublished), `retain: true` (ApplyRetention),
/// or none of them (PublishRegion).
#[derive(Debug, Clone, PartialEq)]
pub enum PublishRegionRequest {
    Publish(PublishRequest),
    Revoke(PublishRequest),
    Check(CheckRequest),
    Retain(RetainRequest),
}

impl<'de> Deserialize<'de> for PublishRegionRequest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut v = Value::deserialize(d)?;
        let flag = |v: &mut Value, name: &str| {
            v.as_object_mut()
                .and_then(|o| o.remove(name))
                .is_some_and(|f| f == Value::Bool(true))
        };
        let inner =
            |e: StepInputError| serde::de::Error::custom(e.to_string().replacen("publish-region input: ", "", 1));
        if v.get("check").is_some() {
            return decode("publish-region", v)
                .map(PublishRegionRequest::Check)
                .map_err(inner);
        }
        if flag(&mut v, "retain") {
            return decode("publish-region", v)
                .map(PublishRegionRequest::Retain)
                .map_err(inner);
        }
        let revoke = flag(&mut v, "revoke");
        let request = decode("publish-region", v).map_err(inner)?;
        Ok(if revoke {
            PublishRegionRequest::Revoke(request)
        } else {
            PublishRegionRequest::Publish(request)
        })
    }
}

/// publish-region's output, by call.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum PublishRegionResponse {
    Published(RegionPublished),
    Revoked(RegionRevoked),
    Checked(Vec<RegionPublished>),
    Retained(RetentionApplied),
}

/// The end of every bake (Announce, NotifyFailure) and the ledger after a publication
/// (RecordLineage, `record: true`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AnnounceRequest {
    pub status: BakeStatus,
    pub state: AnnounceState,
    pub execution_arn: String,
    #[serde(default)]
    pub record: bool,
    /// WaitForApproval (`status: AWAITING_APPROVAL`): the token `bakery approve` or `reject` answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_token: Option<String>,
}

/// announce's input: a bake's end from the state machine ([`AnnounceRequest`]), an operator's
/// revocation (`{"revocation": …}`, from `bakery revoke`), or the trigger's daily staleness
/// report (`{"stale": […]}`); either may name the `topicArn` (the stack's topic by default).
#[derive(Debug, Clone, PartialEq)]
pub enum AnnounceCall {
    Bake(Box<AnnounceRequest>),
    Revoked {
        revocation: Revocation,
        topic_arn: Option<String>,
    },
    Stale {
        stale: Vec<StaleImage>,
        topic_arn: Option<String>,
    },
}

impl<'de> Deserialize<'de> for AnnounceCall {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut v = Value::deserialize(d)?;
        let inner = |e: StepInputError| serde::de::Error::custom(e.to_string().replacen("announce input: ", "", 1));
        let mut take = |name: &str| v.as_object_mut().and_then(|o| o.remove(name));
        let (revocation, stale) = (take("revocation"), take("stale"));
        let topic_arn = match take("topicArn") {
            None | Some(Value::Null) => None,
            Some(Value::String(t)) => Some(t),
            Some(_) => return Err(serde::de::Error::custom("topicArn: expected a string")),
        };
        let at = |field: &'static str| {
            move |e: StepInputError| {
                inner(StepInputError {
                    path: prefixed(field, &e.path),
                    ..e
                })
            }
        };
        if let Some(r) = revocation {
            return decode("announce", r)
                .map(|revocation| AnnounceCall::Revoked { revocation, topic_arn })
                .map_err(at("revocation"));
        }
        if let Some(s) = stale {
            return decode("announce", s)
                .map(|stale| AnnounceCall::Stale { stale, topic_arn })
                .map_err(at("stale"));
        }
        decode("announce", v)
            .map(|r| AnnounceCall::Bake(Box::new(r)))
            .map_err(inner)
    }
}

fn prefixed(field: &str, path: &str) -> String {
    match path {
        "" => field.to_owned(),
        p if p.starts_with('[') => format!("{field}{p}"),
        p => format!("{field}.{p}"),
    }
}

/// What `bakery approve` answers WaitForApproval with, at `$.approval`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalGiven {
    pub approved_by: String,
    pub approved_at: String,
}

/// The parts of the execution state announce reads; each may be missing on a failure path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AnnounceState {
    #[serde(flatten)]
    pub request: BakeRequest,
    #[serde(default)]
    pub build: Option<BuildStarted>,
    #[serde(default)]
    pub gate: Option<GateResult>,
    /// The regions' results: every one published when the bake published; after a failed
    /// publication, also the failures, and nothing is announced as published (the rollback
    /// unshared it).
    #[serde(default)]
    pub published: Option<Vec<RegionResult>>,
    #[serde(default)]
    pub failure: Option<Failure>,
}

/// Announce's output: the message that went out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Announced {
    pub message_id: String,
    pub topic_arn: String,
}

/// RecordLineage's output: how many AMIs the ledger now holds for this bake.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Recorded {
    pub recorded: usize,
}

/// announce's output, by call.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum AnnounceResponse {
    Announced(Announced),
    Recorded(Recorded),
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn announce_reads_a_revocation_a_staleness_report_or_a_bake() {
        let pipeline = json!({"arn": "arn:aws:imagebuilder:us-east-1:111122223333:image-pipeline/web", "name": "web"});
        let ami = json!({"region": "us-east-1", "imageId": "ami-0a1b2c3d4e5f67890"});
        let revocation = json!({"revocation": {
            "imageId": "ami-0a1b2c3d4e5f67890", "reason": "CVE", "revokedBy": "me", "revokedAt": "2026-12-04T00:00:00Z",
            "cascade": false, "disabled": true,
            "bakes": [{"bakeId": "web-1", "pipeline": pipeline, "amis": [ami]}]}, "topicArn": "arn:aws:sns:us-east-1:111122223333:t"});
        match decode::<AnnounceCall>("announce", revocation).unwrap() {
            AnnounceCall::Revoked { revocation, topic_arn } => {
                assert_eq!(revocation.bakes[0].bake_id, "web-1");
                assert!(revocation.disabled);
                assert_eq!(topic_arn.as_deref(), Some("arn:aws:sns:us-east-1:111122223333:t"));
            }
            other => panic!("{other:?}"),
        }
        let stale = json!({"stale": [{"pipeline": pipeline, "bakeId": "web-1", "amis": [ami], "publishedAt": "t",
            "builtOn": "ami-0a1b2c3d4e5f67890", "newerBase": "ami-0fedcba9876543210", "newerReleases": 2}]});
        match decode::<AnnounceCall>("announce", stale).unwrap() {
            AnnounceCall::Stale { stale, topic_arn } => {
                assert_eq!(stale[0].newer_releases, 2);
                assert!(topic_arn.is_none());
            }
            other => panic!("{other:?}"),
        }
        let bad = json!({"revocation": {"imageId": "not-an-ami"}});
        let e = decode::<AnnounceCall>("announce", bad).unwrap_err().to_string();
        assert!(e.contains("revocation.imageId"), "the bad field by its path: {e}");
        let e = decode::<AnnounceCall>("announce", json!({"stale": [], "topicArn": 7}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("topicArn"), "{e}");
        assert!(matches!(
            decode::<AnnounceCall>(
                "announce",
                json!({"status": "FAILED", "executionArn": "x", "state": {"bakeId": "b", "pipelineArn": "p"}})
            ),
            Ok(AnnounceCall::Bake(_))
        ));
    }

    #[test]
    fn a_bad_field_is_named_by_its_path() {
        let e = decode::<WatchRequest>("build-watch", serde_json::json!({"imageBuildVersionArn": 7})).unwrap_err();
        assert_eq!(e.path, "imageBuildVersionArn");
        assert!(
            e.to_string()
                .starts_with("build-watch input: imageBuildVersionArn: invalid type"),
            "{e}"
        );
        let e = decode::<WatchRequest>("build-watch", Value::Null).unwrap_err();
        assert_eq!(e.path, "");
        assert!(
            e.to_string().starts_with("build-watch input: invalid type: null"),
            "{e}"
        );
    }

    #[test]
    fn publish_region_tells_its_three_calls_apart() {
        let check = serde_json::json!({"check": true, "published": []});
        assert!(matches!(
            decode::<PublishRegionRequest>("publish-region", check),
            Ok(PublishRegionRequest::Check(_))
        ));
        let e = decode::<PublishRegionRequest>("publish-region", serde_json::json!({"revoke": true, "bakeId": 1}))
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "publish-region input: bakeId: invalid type: integer `1`, expected a string"
        );
    }

    #[test]
    fn lineage_tags_fit_ec2_limits() {
        let chain: Vec<AmiId> = (0..40)
            .map(|i| AmiId::parse(&format!("ami-{i:017x}")).unwrap())
            .collect();
        let l = AmiLineage {
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
