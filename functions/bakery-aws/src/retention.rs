//! Retention in EC2: reads a pipeline's published AMIs, the parameters pointing at them and the
//! images built on them in every region it publishes to, plans with
//! [`bakery_core::retention::plan`], and deregisters what the plan lets go, with its snapshots.
//! The ApplyRetention step and `bakery retention` both run it. Only AMIs this account owns,
//! tagged `bakery:pipeline` with the pipeline's ARN and not quarantined, are candidates.

use crate::images::{own_matching, tag};
use crate::{in_region, send, BakeError};
use aws_config::SdkConfig;
use aws_sdk_ec2::types::{Filter, Image};
use bakery_core::ids::{AmiId, Region};
use bakery_core::policy::{Retention, TargetRegion};
use bakery_core::retention::{self, Candidate, Decision};
use bakery_core::steps::{KeptImage, RegionRetention, RetentionApplied};
use std::collections::{BTreeMap, BTreeSet};

/// What retention looks at: one pipeline, in its home region and its publish regions.
pub struct Scope<'a> {
    pub pipeline_arn: &'a str,
    /// The bake just published (it always stays), or empty outside a bake.
    pub current_bake: &'a str,
    pub regions: Vec<Region>,
    pub ssm_parameters: &'a [String],
    pub retention: &'a Retention,
}

/// The home region first, then each target region once.
pub fn regions(home: &Region, targets: &[TargetRegion]) -> Vec<Region> {
    let mut regions = vec![home.clone()];
    for t in targets {
        if !regions.contains(&t.region) {
            regions.push(t.region.clone());
        }
    }
    regions
}

/// One region's decisions, newest first.
#[derive(Debug, Clone)]
pub struct RegionPlan {
    pub region: Region,
    pub decisions: Vec<Decision>,
}

/// Reads every region first (a live image in one region built on a bake keeps that bake's AMIs
/// in every region), then plans each. Nothing is changed.
pub async fn plan(sdk: &SdkConfig, scope: &Scope<'_>) -> Result<Vec<RegionPlan>, BakeError> {
    let mut seen = Vec::new();
    let mut parents = BTreeSet::new();
    for region in &scope.regions {
        let sdk = in_region(sdk, region.as_str());
        let ec2 = aws_sdk_ec2::Client::new(&sdk);
        let ssm = aws_sdk_ssm::Client::new(&sdk);
        let own = own_matching(
            &ec2,
            Filter::builder()
                .name("tag:bakery:pipeline")
                .values(scope.pipeline_arn)
                .build(),
        )
        .await?;
        let candidates: Vec<Candidate> = own.iter().filter_map(candidate).collect();
        let built_on = own_matching(
            &ec2,
            Filter::builder().name("tag-key").values("bakery:source-ami").build(),
        )
        .await?;
        parents.extend(built_on.iter().filter(|i| !quarantined(i)).flat_map(ancestors));
        let mut pointed = BTreeSet::new();
        for name in scope.ssm_parameters {
            match crate::get_parameter(&ssm, name).await {
                Ok(value) => {
                    pointed.insert(value);
                }
                Err(BakeError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        seen.push((region.clone(), candidates, pointed));
    }
    let bake_of: BTreeMap<&str, &str> = seen
        .iter()
        .flat_map(|(_, candidates, _)| candidates)
        .map(|c| (c.image_id.as_str(), c.bake_id.as_str()))
        .collect();
    let parent_bakes: BTreeSet<String> = parents
        .iter()
        .filter_map(|id| bake_of.get(id.as_str()).map(|b| (*b).to_owned()))
        .collect();
    let now = chrono::Utc::now();
    Ok(seen
        .into_iter()
        .map(|(region, candidates, pointed)| RegionPlan {
            region,
            decisions: retention::plan(
                scope.retention,
                scope.current_bake,
                candidates,
                &pointed,
                &parent_bakes,
                now,
            ),
        })
        .collect())
}

/// Deregisters what the plans let go, then deletes its snapshots.
pub async fn apply(sdk: &SdkConfig, plans: Vec<RegionPlan>) -> Result<RetentionApplied, BakeError> {
    let mut out = Vec::new();
    for plan in plans {
        let ec2 = aws_sdk_ec2::Client::new(&in_region(sdk, plan.region.as_str()));
        let mut region = RegionRetention {
            region: plan.region.clone(),
            kept: Vec::new(),
            deregistered: Vec::new(),
            deleted_snapshots: Vec::new(),
        };
        for d in plan.decisions {
            let image_id = AmiId::parse(&d.candidate.image_id).map_err(BakeError::InvalidInput)?;
            if let Some(reason) = d.kept {
                region.kept.push(KeptImage { image_id, reason });
                continue;
            }
            send("DeregisterImage", || {
                ec2.deregister_image().image_id(image_id.as_str()).send()
            })
            .await?;
            for snapshot in &d.candidate.snapshot_ids {
                send("DeleteSnapshot", || ec2.delete_snapshot().snapshot_id(snapshot).send()).await?;
                region.deleted_snapshots.push(snapshot.clone());
            }
            tracing::info!(region = %plan.region, %image_id, bake_id = %d.candidate.bake_id, "retention: deregistered");
            region.deregistered.push(image_id);
        }
        out.push(region);
    }
    Ok(RetentionApplied { regions: out })
}

fn quarantined(image: &Image) -> bool {
    tag(image, "bakery:quarantined") == Some("true")
}

/// The AMIs an image was built on: its source and its parent chain.
fn ancestors(image: &Image) -> Vec<String> {
    let chain = tag(image, "bakery:parent-chain").unwrap_or_default();
    tag(image, "bakery:source-ami")
        .into_iter()
        .chain(chain.split(','))
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A candidate for retention: one of the pipeline's published AMIs (quarantined ones are the
/// gate's and the rollback's to keep).
fn candidate(image: &Image) -> Option<Candidate> {
    if quarantined(image) {
        return None;
    }
    let created = image
        .creation_date()
        .and_then(|d| chrono::DateTime::parse_from_rfc3339(d).ok())
        .map(|d| d.with_timezone(&chrono::Utc))
        // An unreadable date is taken as now: young, so kept.
        .unwrap_or_else(chrono::Utc::now);
    Some(Candidate {
        image_id: image.image_id()?.to_owned(),
        bake_id: tag(image, "bakery:bake-id")?.to_owned(),
        created,
        snapshot_ids: crate::images::snapshot_ids(image),
    })
}
