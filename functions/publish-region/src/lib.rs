//! One region of the publish Map: the gated AMI copied into the region (encrypted with the
//! region's KMS key when the policy names one), shared with accounts, organizations and OUs,
//! tagged with its lineage and pointed at by SSM parameters. Every step is idempotent, so the
//! state machine may call it again: after `CopyPending`, or after any failure.

use aws_config::SdkConfig;
use aws_sdk_ec2::types::{
    Filter, ImageState, LaunchPermission, OperationType, ResourceType, SnapshotAttributeName, Tag, TagSpecification,
};
use aws_sdk_ssm::types::ParameterType;
use bakery_aws::{in_region, send, BakeError};
use bakery_core::bake::client_token;
use bakery_core::ids::{self, AmiId, Region};
use bakery_core::policy::ShareWith;
use bakery_core::steps::{
    CheckRequest, PublishRegionRequest, PublishRegionResponse, PublishRequest, RegionFailure, RegionPublished,
    RegionResult, RegionRevoked,
};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

mod retain;

/// How long one call waits for a copy before handing back to the state machine's Retry.
const COPY_WAIT: Duration = Duration::from_secs(60);
const COPY_POLL: Duration = Duration::from_secs(5);

/// The SDK configuration, and clients per target region, built once and reused.
pub struct Deps {
    pub(crate) sdk: SdkConfig,
    clients: Mutex<HashMap<String, Clients>>,
}

#[derive(Clone)]
struct Clients {
    ec2: aws_sdk_ec2::Client,
    ssm: aws_sdk_ssm::Client,
}

impl Deps {
    pub fn new(sdk: SdkConfig) -> Self {
        Deps {
            sdk,
            clients: Mutex::new(HashMap::new()),
        }
    }

    fn clients(&self, region: &Region) -> Clients {
        let mut clients = self.clients.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        clients
            .entry(region.to_string())
            .or_insert_with(|| {
                let sdk = in_region(&self.sdk, region.as_str());
                Clients {
                    ec2: aws_sdk_ec2::Client::new(&sdk),
                    ssm: aws_sdk_ssm::Client::new(&sdk),
                }
            })
            .clone()
    }
}

/// publish-region's four calls: a region's publication, its rollback, the check once every
/// region has settled, and retention after the publication.
pub async fn handle(input: PublishRegionRequest, deps: &Deps) -> Result<PublishRegionResponse, BakeError> {
    match input {
        PublishRegionRequest::Retain(r) => retain::retain(r, deps).await.map(PublishRegionResponse::Retained),
        PublishRegionRequest::Publish(r) => publish(checked(r)?, deps).await.map(PublishRegionResponse::Published),
        PublishRegionRequest::Revoke(r) => revoke(checked(r)?, deps).await.map(PublishRegionResponse::Revoked),
        PublishRegionRequest::Check(c) => check(c).map(PublishRegionResponse::Checked),
    }
}

/// What decoding cannot check, before anything is called.
fn checked(input: PublishRequest) -> Result<PublishRequest, BakeError> {
    let bad = |path: &str, e: String| BakeError::InvalidInput(format!("publish-region input: {path}: {e}"));
    if let Some(key) = &input.target.kms_key_id {
        ids::check_kms_key_arn(key, Some(input.target.region.as_str())).map_err(|e| bad("target.kmsKeyId", e))?;
    }
    for (i, name) in input.ssm_parameters.iter().enumerate() {
        ids::check_writable_parameter_name(name).map_err(|e| bad(&format!("ssmParameters[{i}]"), e))?;
    }
    if input.image.name.is_empty() && input.target.region != input.image.region {
        return Err(bad("image.name", "empty; CopyImage needs the name".into()));
    }
    Ok(input)
}

pub async fn publish(input: PublishRequest, deps: &Deps) -> Result<RegionPublished, BakeError> {
    let region = &input.target.region;
    let Clients { ec2, ssm } = deps.clients(region);
    let tags = input.lineage.tags();

    // The home region keeps the build's own AMI, unless the policy encrypts there with its own
    // key: then the AMI is copied within the region, re-encrypted, and the build's retired.
    let home = *region == input.image.region;
    let image_id = if home && input.target.kms_key_id.is_none() {
        input.image.image_id.clone()
    } else {
        match existing_copy(&ec2, &tags, &input.image.image_id).await? {
            Some(id) => id,
            None => copy(&ec2, &input, &tags).await?,
        }
    };
    let snapshot_ids = wait_available(&ec2, &image_id, region).await?;

    // Tagged before it is shared: the template lets the function share only what carries this
    // stack's lineage tags.
    let resources: Vec<String> = std::iter::once(image_id.to_string())
        .chain(snapshot_ids.iter().cloned())
        .collect();
    let ec2_tags = ec2_tags(&tags);
    send("CreateTags", || {
        ec2.create_tags()
            .set_resources(Some(resources.clone()))
            .set_tags(Some(ec2_tags.clone()))
            .send()
    })
    .await
    .map(drop)?;

    share(&ec2, &image_id, &snapshot_ids, &input.share_with, OperationType::Add).await?;
    if home && image_id != input.image.image_id {
        retire(&ec2, &input.image.image_id, &image_id, &ec2_tags).await?;
    }

    for name in &input.ssm_parameters {
        // A retry after the write must not make a second version: each version is a
        // Parameter Store Change that followers of the parameter act on.
        match bakery_aws::get_parameter(&ssm, name).await {
            Ok(current) if current == image_id.as_str() => continue,
            Ok(_) | Err(BakeError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
        send("PutParameter", || {
            ssm.put_parameter()
                .name(name)
                .value(image_id.as_str())
                .r#type(ParameterType::String)
                .data_type("aws:ec2:image")
                .overwrite(true)
                .send()
        })
        .await
        .map(drop)?;
    }

    tracing::info!(bake_id = %input.bake_id, %region, image_id = %image_id, snapshots = ?snapshot_ids, "published");
    Ok(RegionPublished {
        region: region.clone(),
        image_id,
        snapshot_ids,
        parameters: input.ssm_parameters,
    })
}

/// After every region has settled (each failure caught as `{region, error, cause}` so that no
/// region is still publishing when the rollback starts): the regions' results, or the first
/// failure as the error it was, naming every region that failed.
pub fn check(input: CheckRequest) -> Result<Vec<RegionPublished>, BakeError> {
    let total = input.published.len();
    let (mut published, mut failed) = (Vec::new(), Vec::new());
    for result in input.published {
        match result {
            RegionResult::Published(p) => published.push(p),
            RegionResult::Failed(f) => failed.push(f),
        }
    }
    let Some(first) = failed.first() else {
        return Ok(published);
    };
    // A Lambda error's Cause is its {errorType, errorMessage} as JSON.
    let message = |r: &RegionFailure| {
        let text = serde_json::from_str::<Value>(&r.cause)
            .ok()
            .and_then(|c| c["errorMessage"].as_str().map(str::to_owned))
            .unwrap_or_else(|| r.cause.clone());
        format!("{}: {}: {text}", r.region, r.error)
    };
    let all: Vec<String> = failed.iter().map(message).collect();
    Err(BakeError::from_error_type(
        &first.error,
        format!(
            "publishing failed in {} of {} regions: {}",
            failed.len(),
            total,
            all.join("; ")
        ),
    ))
}

/// Undoes a region's publication after the bake failed elsewhere, so nothing stays half-shared:
/// the launch and create-volume permissions this bake granted are removed from its AMIs in the
/// region (the copy, or the home AMI), they are tagged quarantined, and parameters that point at
/// them are deleted. Safe to run on a region that was never published.
pub async fn revoke(input: PublishRequest, deps: &Deps) -> Result<RegionRevoked, BakeError> {
    let region = &input.target.region;
    let Clients { ec2, ssm } = deps.clients(region);
    let tags = input.lineage.tags();
    let mut images: Vec<AmiId> = existing_copy(&ec2, &tags, &input.image.image_id)
        .await?
        .into_iter()
        .collect();
    if *region == input.image.region {
        images.push(input.image.image_id.clone());
    }
    for image_id in &images {
        let Some(image) = bakery_aws::images::describe_own(&ec2, image_id.as_str()).await? else {
            continue;
        };
        let snapshots = bakery_aws::images::snapshot_ids(&image);
        // Only an image this bake tagged was ever shared (it is tagged before it is shared).
        let tagged_by_this_bake = bakery_aws::images::tag(&image, "bakery:bake-id") == Some(input.bake_id.as_str());
        if tagged_by_this_bake {
            share(&ec2, image_id, &snapshots, &input.share_with, OperationType::Remove).await?;
        }
        let resources: Vec<String> = std::iter::once(image_id.to_string()).chain(snapshots).collect();
        let quarantine = ec2_tags(&BTreeMap::from([
            ("bakery:quarantined".to_owned(), "true".to_owned()),
            (
                "bakery:quarantine-reason".to_owned(),
                "the bake failed while publishing; shares revoked".to_owned(),
            ),
        ]));
        send("CreateTags", || {
            ec2.create_tags()
                .set_resources(Some(resources.clone()))
                .set_tags(Some(quarantine.clone()))
                .send()
        })
        .await
        .map(drop)?;
    }
    let mut deleted = Vec::new();
    for name in &input.ssm_parameters {
        // A parameter that is gone needs nothing; any other failure is the step's error.
        let current = match bakery_aws::get_parameter(&ssm, name).await {
            Ok(value) => Some(value),
            Err(BakeError::NotFound(_)) => None,
            Err(e) => return Err(e),
        };
        if current.is_some_and(|v| images.iter().any(|i| i.as_str() == v)) {
            send("DeleteParameter", || ssm.delete_parameter().name(name).send())
                .await
                .map(drop)?;
            deleted.push(name.clone());
        }
    }
    tracing::info!(bake_id = %input.bake_id, %region, ?images, ?deleted, "publication revoked");
    Ok(RegionRevoked {
        region: region.clone(),
        revoked: images,
        deleted_parameters: deleted,
    })
}

/// Grants (Add) or revokes (Remove) the policy's shares: launch permission on the image for the
/// accounts, organizations and OUs, create-volume permission on its snapshots for the accounts.
async fn share(
    ec2: &aws_sdk_ec2::Client,
    image_id: &AmiId,
    snapshot_ids: &[String],
    with: &ShareWith,
    op: OperationType,
) -> Result<(), BakeError> {
    bakery_aws::images::change_launch_permissions(ec2, image_id.as_str(), launch_permissions(with), op.clone()).await?;
    let accounts = snapshot_user_ids(with);
    if accounts.is_empty() {
        return Ok(());
    }
    for snapshot in snapshot_ids {
        send("ModifySnapshotAttribute", || {
            ec2.modify_snapshot_attribute()
                .snapshot_id(snapshot)
                .attribute(SnapshotAttributeName::CreateVolumePermission)
                .operation_type(op.clone())
                .set_user_ids(Some(accounts.clone()))
                .send()
        })
        .await
        .map(drop)?;
    }
    Ok(())
}

/// The copy's idempotency token: one per bake, target region and source AMI, so a retried
/// step never copies twice and a different source is never mistaken for the same copy.
fn copy_token(bake_id: &str, region: &Region, source: &AmiId) -> String {
    client_token(bake_id, &format!("copy-{region}-{source}"))
}

async fn copy(
    ec2: &aws_sdk_ec2::Client,
    input: &PublishRequest,
    tags: &BTreeMap<String, String>,
) -> Result<AmiId, BakeError> {
    let born_with = |kind: ResourceType| {
        TagSpecification::builder()
            .resource_type(kind)
            .set_tags(Some(ec2_tags(tags)))
            .build()
    };
    let token = copy_token(&input.bake_id, &input.target.region, &input.image.image_id);
    let mut request = ec2
        .copy_image()
        .source_region(input.image.region.as_str())
        .source_image_id(input.image.image_id.as_str())
        .name(&input.image.name)
        .client_token(&token)
        .copy_image_tags(true)
        // Born tagged, so a retry finds this copy by its lineage even before CreateTags.
        .tag_specifications(born_with(ResourceType::Image))
        .tag_specifications(born_with(ResourceType::Snapshot));
    if let Some(key) = &input.target.kms_key_id {
        request = request.encrypted(true).kms_key_id(key);
    }
    let out = send("CopyImage", || request.clone().send())
        .await
        .map_err(|e| match e {
            // The region's concurrent copies are at their quota: the state machine waits and
            // asks again (its Retry on CopyLimitExceeded backs off).
            BakeError::Aws { code, message, .. } if code == "ResourceLimitExceeded" => {
                BakeError::CopyLimitExceeded(message)
            }
            other => other,
        })?;
    let id = out.image_id.unwrap_or_default();
    AmiId::parse(&id).map_err(|e| BakeError::Aws {
        operation: "CopyImage".into(),
        code: "UnexpectedResponse".into(),
        message: e,
    })
}

/// The tag filters that find this build's copy (its bake and image build version).
fn copy_filters(tags: &BTreeMap<String, String>) -> Option<Vec<Filter>> {
    ["bakery:bake-id", "bakery:image"]
        .into_iter()
        .map(|k| Some(Filter::builder().name(format!("tag:{k}")).values(tags.get(k)?).build()))
        .collect()
}

/// The build's own AMI, superseded in its region by its re-encrypted copy: tagged with its
/// lineage and the copy that replaces it (the template lets the function deprecate only what
/// carries this stack's execution tag), then deprecated at once, never shared.
async fn retire(
    ec2: &aws_sdk_ec2::Client,
    build: &AmiId,
    copy: &AmiId,
    lineage: &[aws_sdk_ec2::types::Tag],
) -> Result<(), BakeError> {
    let mut tags = lineage.to_vec();
    tags.push(
        aws_sdk_ec2::types::Tag::builder()
            .key("bakery:superseded-by")
            .value(copy.as_str())
            .build(),
    );
    send("CreateTags", || {
        ec2.create_tags()
            .resources(build.as_str())
            .set_tags(Some(tags.clone()))
            .send()
    })
    .await
    .map(drop)?;
    // EC2 rounds DeprecateAt up to the minute and refuses a time in the past.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default();
    let at = aws_sdk_ec2::primitives::DateTime::from_secs(now + 60);
    send("EnableImageDeprecation", || {
        ec2.enable_image_deprecation()
            .image_id(build.as_str())
            .deprecate_at(at)
            .send()
    })
    .await
    .map(drop)?;
    tracing::info!(build = %build, copy = %copy, "the build's AMI is superseded by its re-encrypted copy");
    Ok(())
}

/// A copy this bake already made in the region (ours, tagged with the same lineage), never the
/// copy's own source.
async fn existing_copy(
    ec2: &aws_sdk_ec2::Client,
    tags: &BTreeMap<String, String>,
    source: &AmiId,
) -> Result<Option<AmiId>, BakeError> {
    let Some(filters) = copy_filters(tags) else {
        return Ok(None);
    };
    let out = send("DescribeImages", || {
        ec2.describe_images()
            .owners("self")
            .set_filters(Some(filters.clone()))
            .send()
    })
    .await?;
    Ok(out
        .images()
        .iter()
        .filter_map(|i| AmiId::parse(i.image_id()?).ok())
        .filter(|id| id != source)
        .min())
}

#[derive(Debug, PartialEq)]
enum Progress {
    Available,
    Pending,
    Failed(String),
}

fn progress(state: Option<&ImageState>, reason: Option<&str>) -> Progress {
    match state {
        Some(ImageState::Available) => Progress::Available,
        // Not visible yet (DescribeImages is eventually consistent after CopyImage) or copying.
        None | Some(ImageState::Pending) => Progress::Pending,
        Some(other) => Progress::Failed(format!(
            "{}{}",
            other.as_str(),
            reason.map(|r| format!(": {r}")).unwrap_or_default()
        )),
    }
}

/// Waits until the image is available, up to [`COPY_WAIT`]; returns its snapshot IDs.
async fn wait_available(
    ec2: &aws_sdk_ec2::Client,
    image_id: &AmiId,
    region: &Region,
) -> Result<Vec<String>, BakeError> {
    let start = Instant::now();
    loop {
        let image = bakery_aws::images::describe_own(ec2, image_id.as_str()).await?;
        let state = image.as_ref().and_then(|i| i.state.as_ref());
        let reason = image
            .as_ref()
            .and_then(|i| i.state_reason.as_ref())
            .and_then(|r| r.message());
        match progress(state, reason) {
            Progress::Available => return Ok(image.as_ref().map(bakery_aws::images::snapshot_ids).unwrap_or_default()),
            Progress::Failed(why) => {
                return Err(BakeError::Aws {
                    operation: "CopyImage".into(),
                    code: "CopyFailed".into(),
                    message: format!("{image_id} in {region} is {why}"),
                })
            }
            Progress::Pending if start.elapsed() + COPY_POLL > COPY_WAIT => {
                return Err(BakeError::CopyPending(format!(
                    "{image_id} in {region} is not available after {COPY_WAIT:?}"
                )))
            }
            Progress::Pending => tokio::time::sleep(COPY_POLL).await,
        }
    }
}

/// Launch permission for every account, organization and OU (one ModifyImageAttribute).
fn launch_permissions(share: &ShareWith) -> Vec<LaunchPermission> {
    let accounts = share
        .accounts
        .iter()
        .map(|a| LaunchPermission::builder().user_id(a.as_str()).build());
    let orgs = share
        .organizations
        .iter()
        .map(|o| LaunchPermission::builder().organization_arn(o).build());
    let ous = share
        .organizational_units
        .iter()
        .map(|o| LaunchPermission::builder().organizational_unit_arn(o).build());
    accounts.chain(orgs).chain(ous).collect()
}

/// Snapshot create-volume permission: accounts only. ModifySnapshotAttribute takes user IDs
/// and the `all` group, nothing for organizations or OUs; their accounts launch the AMI
/// through its launch permission, which gives access to its snapshots (and, for encrypted
/// snapshots, the KMS key policy must let them use the key).
fn snapshot_user_ids(share: &ShareWith) -> Vec<String> {
    share.accounts.iter().map(|a| a.to_string()).collect()
}

fn ec2_tags(tags: &BTreeMap<String, String>) -> Vec<Tag> {
    tags.iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bakery_core::ids::AccountId;
    use serde_json::json;

    fn share() -> ShareWith {
        ShareWith {
            accounts: vec![
                AccountId::parse("111122223333").unwrap(),
                AccountId::parse("444455556666").unwrap(),
            ],
            organizations: vec!["arn:aws:organizations::111122223333:organization/o-abc123def4".into()],
            organizational_units: vec!["arn:aws:organizations::111122223333:ou/o-abc123def4/ou-ab12-cd34ef56".into()],
        }
    }

    #[test]
    fn every_entity_gets_launch_permission_and_accounts_get_the_snapshots() {
        let p = launch_permissions(&share());
        assert_eq!(p.len(), 4);
        assert_eq!(p[0].user_id(), Some("111122223333"));
        assert_eq!(p[1].user_id(), Some("444455556666"));
        assert_eq!(
            p[2].organization_arn(),
            Some("arn:aws:organizations::111122223333:organization/o-abc123def4")
        );
        assert_eq!(
            p[3].organizational_unit_arn(),
            Some("arn:aws:organizations::111122223333:ou/o-abc123def4/ou-ab12-cd34ef56")
        );
        assert!(p.iter().all(|l| l.group().is_none()), "never public");
        assert_eq!(snapshot_user_ids(&share()), ["111122223333", "444455556666"]);
        assert!(launch_permissions(&ShareWith::default()).is_empty());
    }

    #[test]
    fn the_copy_token_is_per_bake_region_and_source() {
        let eu = Region::parse("eu-west-1").unwrap();
        let us = Region::parse("us-west-2").unwrap();
        let a = AmiId::parse("ami-0123456789abcdef0").unwrap();
        let b = AmiId::parse("ami-0fedcba9876543210").unwrap();
        assert_eq!(copy_token("web-1", &eu, &a), copy_token("web-1", &eu, &a));
        assert_ne!(copy_token("web-1", &eu, &a), copy_token("web-1", &us, &a));
        assert_ne!(copy_token("web-1", &eu, &a), copy_token("web-1", &eu, &b));
        assert_ne!(copy_token("web-1", &eu, &a), copy_token("web-2", &eu, &a));
        assert!(copy_token("web-1", &eu, &a).len() <= 64, "EC2's limit");
    }

    #[test]
    fn copies_are_found_by_bake_and_build_only() {
        let mut tags = BTreeMap::from([("bakery:bake-id".to_owned(), "web-1".to_owned())]);
        assert!(
            copy_filters(&tags).is_none(),
            "without the build, a bake's copy is not identified"
        );
        tags.insert(
            "bakery:image".into(),
            "arn:aws:imagebuilder:us-east-1:111122223333:image/web/1.0.1/1".into(),
        );
        let f = copy_filters(&tags).unwrap();
        assert_eq!(f[0].name(), Some("tag:bakery:bake-id"));
        assert_eq!(f[0].values(), ["web-1"]);
        assert_eq!(f[1].name(), Some("tag:bakery:image"));
    }

    #[test]
    fn image_states() {
        assert_eq!(progress(Some(&ImageState::Available), None), Progress::Available);
        assert_eq!(progress(Some(&ImageState::Pending), None), Progress::Pending);
        assert_eq!(progress(None, None), Progress::Pending);
        assert_eq!(
            progress(Some(&ImageState::Failed), Some("Snapshot copy failed")),
            Progress::Failed("failed: Snapshot copy failed".into())
        );
        assert!(matches!(
            progress(Some(&ImageState::Deregistered), None),
            Progress::Failed(_)
        ));
    }

    fn input() -> Value {
        json!({
            "bakeId": "web-1",
            "target": {"region": "eu-west-1", "kmsKeyId": "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"},
            "image": {"region": "us-east-1", "imageId": "ami-0123456789abcdef0", "name": "web-1", "snapshotIds": []},
            "shareWith": {"accounts": [], "organizations": [], "organizationalUnits": []},
            "ssmParameters": ["/bakery/web/latest"],
            "lineage": {
                "bakeId": "web-1", "sourceAmi": "ami-0a1b2c3d4e5f67890", "parentChain": [], "recipeArn": "r",
                "recipeVersion": "1.0.1", "pipelineArn": "p", "executionArn": "e", "imageBuildVersionArn": "i",
                "buildDate": "2026-11-26T16:00:00Z"
            }
        })
    }

    #[test]
    fn input_is_checked_before_anything_is_called() {
        let parse = |v: Value| checked(bakery_core::steps::decode("publish-region", v)?);
        assert!(parse(input()).is_ok());
        let refuse = |patch: &dyn Fn(&mut Value), says: &str| {
            let mut v = input();
            patch(&mut v);
            let err = parse(v).unwrap_err();
            assert_eq!(err.error_type(), "InvalidInput");
            assert!(err.to_string().contains(says), "{err}");
        };
        refuse(
            &|v| v["target"]["kmsKeyId"] = json!("arn:aws:kms:us-east-1:111122223333:key/k"),
            "target.kmsKeyId",
        );
        refuse(&|v| v["ssmParameters"] = json!(["/aws/service/x"]), "ssmParameters[0]");
        refuse(&|v| v["image"]["imageId"] = json!("my-golden-image"), "image.imageId");
        refuse(&|v| v["shareWith"]["accounts"] = json!(["12345"]), "shareWith.accounts");
        refuse(&|v| v["image"]["name"] = json!(""), "image.name");
        refuse(&|v| *v = json!([]), "publish-region input");
    }

    #[test]
    fn a_failed_region_comes_back_as_its_own_error_once_all_have_settled() {
        let check = |v: Value| check(serde_json::from_value(v).unwrap());
        let ok =
            json!({"region": "us-east-1", "imageId": "ami-0123456789abcdef0", "snapshotIds": [], "parameters": []});
        let published = check(json!({"check": true, "published": [ok.clone()]})).unwrap();
        assert_eq!(serde_json::to_value(published).unwrap(), json!([ok]));
        let failed = json!({
            "region": "ap-southeast-2",
            "error": "AccessDenied",
            "cause": "{\"errorType\":\"AccessDenied\",\"errorMessage\":\"CopyImage: UnauthorizedOperation\"}"
        });
        let err = check(json!({"check": true, "published": [ok, failed]})).unwrap_err();
        assert_eq!(err.error_type(), "AccessDenied");
        let text = err.to_string();
        assert!(
            text.contains("1 of 2 regions")
                && text.contains("ap-southeast-2: AccessDenied: CopyImage: UnauthorizedOperation"),
            "{text}"
        );
    }
}
