//! ApplyRetention: after a publication, the pipeline's older AMIs in the home region and every
//! target region are deregistered with their snapshots, as `bakery_core::retention` decides.
//! Only AMIs this stack's bakes tagged with the pipeline are candidates; the bake just published
//! counts first among the newest and always stays.

use crate::{Clients, Deps};
use aws_sdk_ec2::types::{Filter, Image};
use bakery_aws::{send, BakeError};
use bakery_core::ids::{AmiId, Region};
use bakery_core::retention::{self, Candidate};
use bakery_core::steps::{KeptImage, RegionRetention, RetainRequest, RetentionApplied};
use std::collections::{BTreeMap, BTreeSet};

/// One region as read before anything is decided.
struct Seen {
    region: Region,
    clients: Clients,
    candidates: Vec<Candidate>,
    pointed: BTreeSet<String>,
}

pub async fn retain(input: RetainRequest, deps: &Deps) -> Result<RetentionApplied, BakeError> {
    let mut regions: Vec<Region> = vec![input.image.region.clone()];
    for t in &input.regions {
        if !regions.contains(&t.region) {
            regions.push(t.region.clone());
        }
    }
    // Read every region first: a live image in one region built on a bake keeps that bake's
    // AMIs in every region.
    let mut seen = Vec::new();
    let mut parents = BTreeSet::new();
    for region in regions {
        let clients = deps.clients(&region);
        let own = images(
            &clients.ec2,
            Filter::builder()
                .name("tag:bakery:pipeline")
                .values(&input.pipeline_arn)
                .build(),
        )
        .await?;
        let candidates = own.iter().filter_map(candidate).collect();
        let built_on = images(
            &clients.ec2,
            Filter::builder().name("tag-key").values("bakery:source-ami").build(),
        )
        .await?;
        parents.extend(built_on.iter().filter(|i| !quarantined(i)).flat_map(ancestors));
        let mut pointed = BTreeSet::new();
        for name in &input.ssm_parameters {
            match bakery_aws::get_parameter(&clients.ssm, name).await {
                Ok(value) => {
                    pointed.insert(value);
                }
                Err(BakeError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        seen.push(Seen {
            region,
            clients,
            candidates,
            pointed,
        });
    }
    let bake_of: BTreeMap<&str, &str> = seen
        .iter()
        .flat_map(|s| &s.candidates)
        .map(|c| (c.image_id.as_str(), c.bake_id.as_str()))
        .collect();
    let parent_bakes: BTreeSet<String> = parents
        .iter()
        .filter_map(|id| bake_of.get(id.as_str()).map(|b| (*b).to_owned()))
        .collect();

    let now = chrono::Utc::now();
    let mut out = Vec::new();
    for s in seen {
        let decisions = retention::plan(
            &input.retention,
            &input.bake_id,
            s.candidates,
            &s.pointed,
            &parent_bakes,
            now,
        );
        let mut region = RegionRetention {
            region: s.region.clone(),
            kept: Vec::new(),
            deregistered: Vec::new(),
            deleted_snapshots: Vec::new(),
        };
        for d in decisions {
            let image_id = AmiId::parse(&d.candidate.image_id).map_err(BakeError::InvalidInput)?;
            if let Some(reason) = d.kept {
                region.kept.push(KeptImage { image_id, reason });
                continue;
            }
            send("DeregisterImage", || {
                s.clients.ec2.deregister_image().image_id(image_id.as_str()).send()
            })
            .await?;
            for snapshot in &d.candidate.snapshot_ids {
                send("DeleteSnapshot", || {
                    s.clients.ec2.delete_snapshot().snapshot_id(snapshot).send()
                })
                .await?;
                region.deleted_snapshots.push(snapshot.clone());
            }
            tracing::info!(region = %s.region, %image_id, bake_id = %d.candidate.bake_id, "retention: deregistered");
            region.deregistered.push(image_id);
        }
        out.push(region);
    }
    Ok(RetentionApplied { regions: out })
}

/// This account's images matching `filter`, every page.
async fn images(ec2: &aws_sdk_ec2::Client, filter: Filter) -> Result<Vec<Image>, BakeError> {
    let mut all = Vec::new();
    let mut token = None;
    loop {
        let page = send("DescribeImages", || {
            ec2.describe_images()
                .owners("self")
                .filters(filter.clone())
                .set_next_token(token.clone())
                .send()
        })
        .await?;
        all.extend(page.images().iter().cloned());
        token = page.next_token().map(str::to_owned);
        if token.is_none() {
            return Ok(all);
        }
    }
}

fn tag<'i>(image: &'i Image, key: &str) -> Option<&'i str> {
    image
        .tags()
        .iter()
        .find(|t| t.key() == Some(key))
        .and_then(|t| t.value())
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
        snapshot_ids: bakery_aws::images::snapshot_ids(image),
    })
}
