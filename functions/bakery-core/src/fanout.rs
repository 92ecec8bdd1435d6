//! Fan-out: which pipelines a trigger concerns, on which source AMI, under which execution
//! name. Pure rules; the trigger function does the lookups (owner-filtered DescribeImages,
//! GetImage, GetParameter, the ledger) and the starts.

use crate::bake::bake_id;
use crate::ids::{AccountId, AmiId, Arn};
use crate::policy::{Policy, Rebuild};
use crate::steps::BakeRequest;
use crate::trigger::{BakeTrigger, Origin, SourceAmi};
use chrono::{DateTime, Utc};
use serde::Serialize;

/// Longest parent chain accepted from an upstream Bakery. Deeper is a cycle between stacks
/// (A follows B follows A) or a hostile message; it starts nothing.
pub const MAX_LINEAGE_DEPTH: usize = 32;

/// What the trigger function learnt before choosing: facts an event does not carry itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Seen {
    /// "EC2 AMI State Change": the AMI's real owner and name, from a DescribeImages filtered on
    /// the owners the policies follow. None when no followed owner has it.
    pub ami: Option<(AccountId, String)>,
    /// "EC2 Image Builder Image State Change": the pipeline that built the image (GetImage).
    pub upstream_pipeline: Option<String>,
}

/// One pipeline a trigger concerns.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Planned {
    pub pipeline_arn: String,
    /// The source in the pipeline's home region; None rebuilds on the recipe's current parent
    /// (a schedule resolves its base later, a manual request may name none).
    pub source: Option<SourceAmi>,
    pub parent_chain: Vec<AmiId>,
    /// The schedule's rebuild rule, when a schedule fired.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rebuild: Option<Rebuild>,
}

/// A pipeline the trigger concerns but that will not bake, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Skipped {
    pub pipeline_arn: String,
    pub reason: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Plan {
    pub planned: Vec<Planned>,
    pub skipped: Vec<Skipped>,
}

/// The pipelines among `policies` that follow `trigger`, each with its source.
pub fn plan(trigger: &BakeTrigger, policies: &[Policy], seen: &Seen) -> Plan {
    let mut out = Plan::default();
    let chain = match &trigger.origin {
        Origin::BakeryPublication { parent_chain, .. } => parent_chain.clone(),
        _ => Vec::new(),
    };
    for policy in policies {
        let Some(rebuild) = follows(policy, &trigger.origin, seen, policies) else {
            continue;
        };
        let skip = |reason: String| Skipped {
            pipeline_arn: policy.pipeline_arn.clone(),
            reason,
        };
        if chain.len() >= MAX_LINEAGE_DEPTH {
            out.skipped.push(skip(format!(
                "the upstream AMI has {} ancestors (at most {MAX_LINEAGE_DEPTH}): a cycle between pipelines?",
                chain.len()
            )));
            continue;
        }
        let home = home_region(&policy.pipeline_arn);
        let source = if trigger.source_amis.is_empty() {
            None
        } else {
            match trigger.source_amis.iter().find(|a| Some(a.region.as_str()) == home) {
                Some(a) => Some(a.clone()),
                None => {
                    let regions: Vec<&str> = trigger.source_amis.iter().map(|a| a.region.as_str()).collect();
                    out.skipped.push(skip(format!(
                        "the trigger names AMIs in {} only; the pipeline builds in {}",
                        regions.join(", "),
                        home.unwrap_or("an unknown region")
                    )));
                    continue;
                }
            }
        };
        out.planned.push(Planned {
            pipeline_arn: policy.pipeline_arn.clone(),
            source,
            parent_chain: chain.clone(),
            rebuild,
        });
    }
    // An operator who names a pipeline without a policy hears why nothing happened.
    if let Origin::Manual { pipeline_arn, .. } = &trigger.origin {
        if !policies.iter().any(|p| &p.pipeline_arn == pipeline_arn) {
            out.skipped.push(Skipped {
                pipeline_arn: pipeline_arn.clone(),
                reason: "no valid bake policy for this pipeline under the policy prefix".into(),
            });
        }
    }
    out
}

/// Whether `policy` follows `origin`: `Some(rebuild rule)` for a schedule, `Some(None)` for
/// any other source it follows, `None` when it does not.
fn follows(policy: &Policy, origin: &Origin, seen: &Seen, all: &[Policy]) -> Option<Option<Rebuild>> {
    let s = &policy.sources;
    let own = policy.pipeline_arn.as_str();
    let yes = |b: bool| b.then_some(None);
    match origin {
        Origin::SoeRelease { topic_arn, .. } => yes(s.sns_topics.contains(topic_arn)),
        // A pipeline never follows its own publication, and a policy that names upstream
        // pipelines follows only those on a shared topic.
        Origin::BakeryPublication {
            topic_arn,
            pipeline_arn,
            ..
        } => yes(s.sns_topics.contains(topic_arn)
            && pipeline_arn != own
            && (s.upstream_pipelines.is_empty() || s.upstream_pipelines.contains(pipeline_arn))),
        Origin::ImageBuilderNotification {
            topic_arn,
            pipeline_arn,
            ..
        } => yes(s.sns_topics.contains(topic_arn) && pipeline_arn.as_deref() != Some(own)),
        Origin::AmiStateChange { .. } => {
            let (owner, name) = seen.ami.as_ref()?;
            yes(policy.follows_ami(owner, name))
        }
        // A pipeline that Bakery bakes here is followed through its publication, after the
        // gate, never through Image Builder's raw AVAILABLE event.
        Origin::UpstreamImage { .. } => {
            let upstream = seen.upstream_pipeline.as_deref()?;
            let bakery_managed = all.iter().any(|p| p.pipeline_arn == upstream);
            yes(upstream != own && !bakery_managed && s.upstream_pipelines.iter().any(|p| p == upstream))
        }
        Origin::ParameterChange { name, .. } => yes(s.ssm_parameters.contains(name)),
        Origin::Schedule { schedule_arn, .. } => {
            let name = schedule_name(schedule_arn);
            s.schedules.iter().find(|x| x.name == name).map(|x| Some(x.rebuild))
        }
        Origin::Manual { pipeline_arn, .. } => yes(pipeline_arn == own),
    }
}

/// The region of a pipeline ARN.
pub fn home_region(pipeline_arn: &str) -> Option<&str> {
    Arn::parse(pipeline_arn)
        .ok()
        .map(|a| a.region)
        .filter(|r| !r.is_empty())
}

/// The name of an EventBridge rule (`rule/NAME`, `rule/BUS/NAME`) or EventBridge Scheduler
/// schedule (`schedule/GROUP/NAME`) from its ARN.
pub fn schedule_name(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}

/// The execution for a planned bake. `key` is what makes it unique: the source AMI when there
/// is one (the same AMI by any route is one bake), otherwise what the caller chose.
pub fn request(p: &Planned, key: &str, label: &str) -> BakeRequest {
    BakeRequest {
        bake_id: bake_id(crate::ids::pipeline_name(&p.pipeline_arn), key),
        pipeline_arn: p.pipeline_arn.clone(),
        source_ami: p.source.clone(),
        parent_chain: p.parent_chain.clone(),
        trigger: Some(label.to_owned()),
        attempt: 1,
        max_attempts: 1,
    }
}

/// A short name for where a trigger came from, carried into the notification.
pub fn label(origin: &Origin) -> &'static str {
    match origin {
        Origin::BakeryPublication { .. } => "bakeryPublication",
        Origin::ImageBuilderNotification { .. } => "imageBuilderNotification",
        Origin::SoeRelease { .. } => "soeRelease",
        Origin::AmiStateChange { .. } => "amiStateChange",
        Origin::UpstreamImage { .. } => "upstreamImage",
        Origin::ParameterChange { .. } => "parameterChange",
        Origin::Schedule { .. } => "schedule",
        Origin::Manual { .. } => "manual",
    }
}

/// An AMI a base lookup returned (DescribeImages with the trusted owners as `Owners`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub image_id: AmiId,
    pub owner: AccountId,
    pub name: String,
    pub state: String,
    pub created: Option<DateTime<Utc>>,
    /// EC2's `DeprecationTime`: from then on the image is deprecated.
    pub deprecation_time: Option<DateTime<Utc>>,
    /// EC2's `imageAllowed`: whether the account's Allowed AMIs setting admits the image
    /// (absent when the setting is disabled).
    pub image_allowed: Option<bool>,
}

/// The newest available, not deprecated AMI that a policy follows by owner and name pattern.
/// An AMI whose owner the policy does not trust is never chosen, whatever its name or date: a
/// name can be copied by anyone (the whoAMI attack).
pub fn newest_base<'a>(policy: &Policy, candidates: &'a [Candidate], now: DateTime<Utc>) -> Option<&'a Candidate> {
    candidates
        .iter()
        .filter(|c| c.state == "available")
        .filter(|c| c.deprecation_time.is_none_or(|t| t > now))
        .filter(|c| policy.trusted_owners.contains(&c.owner))
        .filter(|c| policy.follows_ami(&c.owner, &c.name))
        .max_by(|a, b| (a.created, &a.name).cmp(&(b.created, &b.name)))
}

/// What a scheduled firing does, given the base it resolved and the base of the last
/// published bake (or the recipe's parent when nothing was published yet).
pub fn schedule_decision(rebuild: Rebuild, base: Option<&str>, last_base: Option<&str>) -> Result<(), String> {
    match (rebuild, base, last_base) {
        (Rebuild::Always, _, _) => Ok(()),
        (Rebuild::IfBaseChanged, Some(b), Some(l)) if b == l => {
            Err(format!("the base is still {b}, as for the last published bake"))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::classify;
    use serde_json::json;

    const TOPIC: &str = "arn:aws:sns:us-east-1:444455556666:soe-releases";
    const SOE: &str = "444455556666";

    fn policy(name: &str, sources: serde_json::Value) -> Policy {
        Policy::from_value(&json!({
            "schemaVersion": 1,
            "pipelineArn": format!("arn:aws:imagebuilder:us-east-1:111122223333:image-pipeline/{name}"),
            "sources": sources,
            "trustedOwners": [SOE, "111122223333"],
            "publish": {"regions": [{"region": "us-east-1"}]},
            "notify": {"topicArn": "arn:aws:sns:us-east-1:111122223333:bakery"}
        }))
        .unwrap()
    }

    fn fixture(path: &str) -> BakeTrigger {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../events")
            .join(path);
        match classify(&std::fs::read(p).unwrap()).unwrap() {
            crate::Classification::Bake { trigger } => trigger,
            other => panic!("not a bake: {other:?}"),
        }
    }

    fn arns(plan: &Plan) -> Vec<&str> {
        plan.planned
            .iter()
            .map(|p| p.pipeline_arn.rsplit('/').next().unwrap())
            .collect()
    }

    #[test]
    fn a_release_concerns_the_pipelines_that_follow_its_topic_in_their_region() {
        let policies = [
            policy("web", json!({"snsTopics": [TOPIC]})),
            policy("api", json!({"snsTopics": [TOPIC]})),
            policy(
                "batch",
                json!({"snsTopics": ["arn:aws:sns:us-east-1:444455556666:other"]}),
            ),
        ];
        let t = fixture("sns/soe-release.json");
        let plan = plan(&t, &policies, &Seen::default());
        assert_eq!(arns(&plan), ["web", "api"]);
        let src = plan.planned[0].source.as_ref().unwrap();
        assert_eq!(
            (src.image_id.as_str(), src.region.as_str()),
            ("ami-0a1b2c3d4e5f67890", "us-east-1")
        );
        assert!(plan.skipped.is_empty());
    }

    #[test]
    fn a_release_without_an_ami_in_the_home_region_is_skipped_with_a_reason() {
        let mut p = policy("web", json!({"snsTopics": [TOPIC]}));
        p.pipeline_arn = "arn:aws:imagebuilder:sa-east-1:111122223333:image-pipeline/web".into();
        let plan = plan(&fixture("sns/soe-release.json"), &[p], &Seen::default());
        assert!(plan.planned.is_empty());
        assert!(plan.skipped[0].reason.contains("sa-east-1"), "{:?}", plan.skipped);
    }

    #[test]
    fn a_publication_never_triggers_its_own_pipeline_and_respects_upstream_filters() {
        let t = fixture("sns/bakery-publication.json");
        let Origin::BakeryPublication {
            topic_arn,
            pipeline_arn,
            parent_chain,
            ..
        } = &t.origin
        else {
            panic!()
        };
        let upstream_name = pipeline_arn.rsplit('/').next().unwrap();
        let mut own = policy(upstream_name, json!({"snsTopics": [topic_arn]}));
        own.pipeline_arn = pipeline_arn.clone();
        let follower = policy(
            "hardened",
            json!({"snsTopics": [topic_arn], "upstreamPipelines": [pipeline_arn]}),
        );
        let other = policy(
            "picky",
            json!({"snsTopics": [topic_arn], "upstreamPipelines": ["arn:aws:imagebuilder:us-east-1:111122223333:image-pipeline/else"]}),
        );
        let plan = plan(&t, &[own, follower, other], &Seen::default());
        assert_eq!(arns(&plan), ["hardened"]);
        assert_eq!(&plan.planned[0].parent_chain, parent_chain);
    }

    #[test]
    fn a_deep_lineage_starts_nothing() {
        let mut t = fixture("sns/bakery-publication.json");
        let topic = match &mut t.origin {
            Origin::BakeryPublication {
                parent_chain,
                topic_arn,
                ..
            } => {
                *parent_chain = (0..MAX_LINEAGE_DEPTH)
                    .map(|i| AmiId::parse(&format!("ami-{i:017x}")).unwrap())
                    .collect();
                topic_arn.clone()
            }
            _ => panic!(),
        };
        let plan = plan(
            &t,
            &[policy("hardened", json!({"snsTopics": [topic]}))],
            &Seen::default(),
        );
        assert!(plan.planned.is_empty());
        assert!(plan.skipped[0].reason.contains("cycle"));
    }

    #[test]
    fn an_ami_state_change_follows_owner_and_name_together() {
        let t = fixture("eventbridge/ami-state-change-available.json");
        let p = policy("web", json!({"amis": [{"owner": SOE, "namePattern": "soe-al2023-*"}]}));
        let seen = |owner: &str, name: &str| Seen {
            ami: Some((AccountId::parse(owner).unwrap(), name.into())),
            ..Seen::default()
        };
        assert_eq!(
            plan(&t, std::slice::from_ref(&p), &seen(SOE, "soe-al2023-2026.11.2"))
                .planned
                .len(),
            1
        );
        // The same name from another account: not followed.
        assert!(plan(
            &t,
            std::slice::from_ref(&p),
            &seen("999988887777", "soe-al2023-2026.11.2")
        )
        .planned
        .is_empty());
        // Nothing known of the AMI (no followed owner has it): not followed.
        assert!(plan(&t, &[p], &Seen::default()).planned.is_empty());
    }

    #[test]
    fn an_upstream_image_is_followed_unless_bakery_bakes_that_pipeline_here() {
        let t = fixture("eventbridge/imagebuilder-image-state-change-available.json");
        let upstream = "arn:aws:imagebuilder:us-east-1:111122223333:image-pipeline/base";
        let follower = policy("web", json!({"upstreamPipelines": [upstream]}));
        let seen = Seen {
            upstream_pipeline: Some(upstream.into()),
            ..Seen::default()
        };
        assert_eq!(arns(&plan(&t, std::slice::from_ref(&follower), &seen)), ["web"]);
        let managed = policy("base", json!({"snsTopics": [TOPIC]}));
        assert!(plan(&t, &[follower, managed], &seen).planned.is_empty());
    }

    #[test]
    fn parameters_schedules_and_manual_requests() {
        let t = fixture("eventbridge/ssm-parameter-update.json");
        let Origin::ParameterChange { name, .. } = &t.origin else {
            panic!()
        };
        let p = policy("web", json!({"ssmParameters": [name]}));
        assert_eq!(plan(&t, &[p], &Seen::default()).planned.len(), 1);

        let t = fixture("eventbridge/scheduled-event.json");
        let Origin::Schedule { schedule_arn, .. } = &t.origin else {
            panic!()
        };
        let p = policy(
            "web",
            json!({"schedules": [{"name": schedule_name(schedule_arn), "rebuild": "ifBaseChanged"}]}),
        );
        let other = policy("api", json!({"schedules": [{"name": "weekly", "rebuild": "always"}]}));
        let plan_ = plan(&t, &[p, other], &Seen::default());
        assert_eq!(arns(&plan_), ["web"]);
        assert_eq!(plan_.planned[0].rebuild, Some(Rebuild::IfBaseChanged));
        assert_eq!(plan_.planned[0].source, None);

        let t = fixture("manual/bake-requested.json");
        let Origin::Manual { pipeline_arn, .. } = &t.origin else {
            panic!()
        };
        let name = pipeline_arn.rsplit('/').next().unwrap();
        let weekly = json!({"schedules": [{"name": "weekly", "rebuild": "always"}]});
        let mut p = policy(name, weekly.clone());
        p.pipeline_arn = pipeline_arn.clone();
        assert_eq!(
            plan(&t, &[p, policy("api", weekly.clone())], &Seen::default())
                .planned
                .len(),
            1
        );
        let nobody = plan(&t, &[policy("api", weekly)], &Seen::default());
        assert!(nobody.planned.is_empty());
        assert!(nobody.skipped[0].reason.contains("no valid bake policy"), "{nobody:?}");
    }

    #[test]
    fn the_same_source_is_the_same_execution_by_any_route() {
        let p = Planned {
            pipeline_arn: "arn:aws:imagebuilder:us-east-1:111122223333:image-pipeline/web".into(),
            source: None,
            parent_chain: vec![],
            rebuild: None,
        };
        let a = request(&p, "ami-0a1b2c3d4e5f67890", "soeRelease");
        let b = request(&p, "ami-0a1b2c3d4e5f67890", "amiStateChange");
        assert_eq!(a.bake_id, b.bake_id);
        assert_ne!(a.bake_id, request(&p, "ami-0fedcba9876543210", "soeRelease").bake_id);
        assert!(a.bake_id.starts_with("web-"));
    }

    fn candidate(id: &str, owner: &str, name: &str, day: u32) -> Candidate {
        Candidate {
            image_id: AmiId::parse(id).unwrap(),
            owner: AccountId::parse(owner).unwrap(),
            name: name.into(),
            state: "available".into(),
            created: Some(chrono::TimeZone::with_ymd_and_hms(&Utc, 2026, 11, day, 0, 0, 0).unwrap()),
            deprecation_time: None,
            image_allowed: None,
        }
    }

    #[test]
    fn an_attacker_ami_with_the_trusted_name_is_never_the_base() {
        let p = policy("web", json!({"amis": [{"owner": SOE, "namePattern": "soe-al2023-*"}]}));
        let good = candidate("ami-0000000000000000a", SOE, "soe-al2023-2026.11.1", 1);
        let newer = candidate("ami-0000000000000000b", SOE, "soe-al2023-2026.11.2", 2);
        let attacker = candidate("ami-0000000000000000c", "999988887777", "soe-al2023-2026.11.3", 3);
        let mut pending = candidate("ami-0000000000000000d", SOE, "soe-al2023-2026.11.4", 4);
        pending.state = "pending".into();
        // The SOE team withdrew its newest release: deprecated, it is no base, as EC2 hides it
        // from consumers.
        let now = chrono::TimeZone::with_ymd_and_hms(&Utc, 2026, 11, 10, 0, 0, 0).unwrap();
        let mut withdrawn = candidate("ami-0000000000000000e", SOE, "soe-al2023-2026.11.5", 5);
        withdrawn.deprecation_time = Some(now);
        let mut deprecating = newer.clone();
        deprecating.deprecation_time = Some(now + chrono::Duration::days(30));
        let all = [good, deprecating.clone(), attacker.clone(), pending, withdrawn];
        assert_eq!(newest_base(&p, &all, now), Some(&deprecating));
        assert_eq!(newest_base(&p, &[attacker], now), None);
    }

    #[test]
    fn schedules_rebuild_only_on_a_new_base_unless_always() {
        use Rebuild::*;
        assert!(schedule_decision(IfBaseChanged, Some("ami-1"), Some("ami-1")).is_err());
        assert!(schedule_decision(IfBaseChanged, Some("ami-2"), Some("ami-1")).is_ok());
        assert!(schedule_decision(IfBaseChanged, Some("ami-2"), None).is_ok());
        assert!(schedule_decision(Always, Some("ami-1"), Some("ami-1")).is_ok());
        assert_eq!(
            schedule_name("arn:aws:scheduler:us-east-1:111122223333:schedule/default/nightly"),
            "nightly"
        );
        assert_eq!(
            schedule_name("arn:aws:events:us-east-1:111122223333:rule/nightly"),
            "nightly"
        );
    }
}
