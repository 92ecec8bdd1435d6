//! Staleness: a pipeline's latest published images are stale when their parent has a newer
//! trusted release than the base they were built on. The parent's releases come from where the
//! policy says its base comes from: the AMI families it follows (every trusted, available, not
//! deprecated image newer than the base counts), else its first base parameter, else (a
//! pipeline built on another pipeline of this stack) that pipeline's latest publication in the
//! ledger. A revoked release never counts. Images built on a revoked base (revoked here, or by
//! the upstream Bakery it came from) are stale whether or not a newer release exists.

use crate::lookups::Lookups;
use bakery_aws::BakeError;
use bakery_core::fanout::{self, Candidate};
use bakery_core::ids::{AmiId, Region};
use bakery_core::policy::ObservedAmi;
use bakery_core::publication::{PipelineRef, PublishedAmi, StaleImage};
use bakery_core::Policy;
use chrono::{DateTime, Utc};

/// Every pipeline with a policy whose latest publication is stale.
pub async fn report(lookups: &Lookups, policies: &[Policy]) -> Result<Vec<StaleImage>, BakeError> {
    let now = Utc::now();
    let mut out = Vec::new();
    for policy in policies {
        let Some(latest) = lookups.last_published(&policy.pipeline_arn).await? else {
            continue;
        };
        let Ok(base) = AmiId::parse(latest.s("base")) else {
            continue;
        };
        let region = fanout::home_region(&policy.pipeline_arn).unwrap_or_default().to_owned();
        let newer = newer_release(lookups, policy, &region, &base).await?;
        let base_revoked = lookups.revoked(base.as_str()).await?;
        if newer.is_none() && base_revoked.is_none() {
            continue;
        }
        let amis = latest
            .list("amis")
            .iter()
            .filter_map(|v| v.split_once(':'))
            .filter_map(|(r, a)| {
                Some(PublishedAmi {
                    region: Region::parse(r).ok()?,
                    image_id: AmiId::parse(a).ok()?,
                })
            })
            .collect();
        out.push(StaleImage {
            pipeline: PipelineRef::of(&policy.pipeline_arn),
            bake_id: latest.s("bakeId").to_owned(),
            amis,
            published_at: latest.s("publishedAt").to_owned(),
            built_on: base,
            newer_releases: newer.as_ref().map_or(0, |n| n.count),
            behind_since: newer
                .as_ref()
                .and_then(|n| n.since)
                .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string()),
            days_behind: newer.as_ref().and_then(|n| n.since).map(|t| (now - t).num_days()),
            newer_base: newer.map(|n| n.image_id),
            base_revoked,
        });
    }
    Ok(out)
}

struct Newer {
    image_id: AmiId,
    count: u32,
    since: Option<DateTime<Utc>>,
}

fn owners(policy: &Policy) -> Vec<String> {
    policy.trusted_owners.iter().map(|o| o.to_string()).collect()
}

async fn newer_release(
    lookups: &Lookups,
    policy: &Policy,
    region: &str,
    base: &AmiId,
) -> Result<Option<Newer>, BakeError> {
    if !policy.sources.amis.is_empty() {
        let mut releases = Vec::new();
        for c in lookups.family_releases(policy, region).await? {
            if lookups.revoked(c.image_id.as_str()).await?.is_none() {
                releases.push(c);
            }
        }
        let base_created = match releases.iter().find(|c| c.image_id == *base) {
            Some(c) => c.created,
            None => lookups
                .describe(region, base.as_str(), &owners(policy))
                .await?
                .and_then(|c| c.created),
        };
        let mut newer: Vec<&Candidate> = releases
            .iter()
            .filter(|c| c.image_id != *base)
            .filter(|c| match (c.created, base_created) {
                (Some(c), Some(b)) => c > b,
                _ => false,
            })
            .collect();
        newer.sort_by_key(|c| c.created);
        return Ok(newer.last().map(|n| Newer {
            image_id: n.image_id.clone(),
            count: newer.len() as u32,
            since: newer.first().and_then(|c| c.created),
        }));
    }
    let candidate = if let Some(name) = policy.sources.ssm_parameters.first() {
        lookups.parameter_ami(region, name).await?.ok().map(|s| s.image_id)
    } else if let Some(row) = lookups.ledger_row(&format!("ami#{base}"), "lineage").await? {
        // Built on a bake of this stack: that pipeline's latest AMI in this region.
        lookups.last_published(row.s("pipelineArn")).await?.and_then(|p| {
            p.list("amis").iter().find_map(|v| {
                let (r, a) = v.split_once(':')?;
                (r == region).then(|| AmiId::parse(a).ok()).flatten()
            })
        })
    } else {
        None
    };
    let Some(id) = candidate.filter(|c| c != base) else {
        return Ok(None);
    };
    let Some(found) = trusted(lookups, policy, region, &id).await? else {
        return Ok(None);
    };
    Ok(Some(Newer {
        image_id: id,
        count: 1,
        since: found.created,
    }))
}

/// The release as EC2 shows it, when the policy would bake on it: a trusted owner's, available,
/// not deprecated, and not revoked.
async fn trusted(lookups: &Lookups, policy: &Policy, region: &str, id: &AmiId) -> Result<Option<Candidate>, BakeError> {
    let Some(found) = lookups.describe(region, id.as_str(), &owners(policy)).await? else {
        return Ok(None);
    };
    let observed = ObservedAmi {
        image_id: found.image_id.clone(),
        owner: found.owner.clone(),
        state: found.state.clone(),
        deprecation_time: found.deprecation_time,
        claimed_owner: None,
    };
    if policy.check_source(&observed, Utc::now()).is_err() || lookups.revoked(id.as_str()).await?.is_some() {
        return Ok(None);
    }
    Ok(Some(found))
}
