//! The gate: what Image Builder made of the build (status, tests, its AMIs) and the image's scan
//! findings, judged by the policy's gate. A failed image is quarantined so nothing launches it by
//! accident: tagged, deprecated and, with `onFailure: deregister`, deregistered with its
//! snapshots. An image a person did not approve goes through the gate again and is quarantined
//! the same way, with the refusal as its reason. The output carries the home-region AMI and the
//! lineage the publish step tags with.

use aws_config::SdkConfig;
use aws_sdk_ec2::types::{Filter, Tag};
use aws_sdk_imagebuilder::types::{Filter as AggregationFilter, Image, ImageScanFindingsFilter, SeverityCounts};
use bakery_aws::imagebuilder::get_image;
use bakery_aws::{in_region, send, BakeError};
use bakery_core::bake::verdict;
use bakery_core::ids::{AmiId, Region};
use bakery_core::imagebuilder::ImageBuilderDate;
use bakery_core::policy::{Gate, Quarantine, Severity};
use bakery_core::steps::{AmiLineage, BakedImage, BuildOutcome, Failure, Findings, GateRequest, GateResult};
use chrono::{DateTime, Utc};
use serde_json::Value;

/// Clients built once per cold start. EC2 is called in the region of each AMI.
pub struct Deps {
    pub ib: aws_sdk_imagebuilder::Client,
    pub sdk: SdkConfig,
}

pub async fn handle(input: GateRequest, deps: &Deps) -> Result<GateResult, BakeError> {
    let state = &input.state;
    let build = &state.build;
    let gate = &build.policy.gate;
    let arn = build.image_build_version_arn.as_str();

    let image = get_image(&deps.ib, arn).await?;
    let image_state = image.state.as_ref();
    let outcome = BuildOutcome {
        status: image_state
            .and_then(|s| s.status.as_ref())
            .map_or("UNKNOWN", |s| s.as_str())
            .to_owned(),
        reason: image_state.and_then(|s| s.reason.clone()),
        tests_enabled: image
            .image_tests_configuration
            .as_ref()
            .and_then(|t| t.image_tests_enabled)
            .unwrap_or(true),
        findings: scan_findings(&deps.ib, arn, gate).await?,
    };
    let scanned = image
        .image_scanning_configuration
        .as_ref()
        .and_then(|s| s.image_scanning_enabled)
        .unwrap_or(false);
    let amis = own_amis(&image, &build.account_id)?;
    let home = amis.iter().any(|a| a.region.as_str() == build.home_region);

    let mut reasons = verdict(gate, &outcome).reasons;
    reasons.extend(unseen_reasons(gate, scanned, &outcome.status, home, &build.home_region));
    if let Some(refusal) = &input.not_approved {
        reasons.push(not_approved_reason(refusal));
    }
    let passed = reasons.is_empty();

    let mut result_image = None;
    let (mut quarantined, mut deregistered) = (false, !passed && !amis.is_empty());
    for ami in &amis {
        let ec2 = aws_sdk_ec2::Client::new(&in_region(&deps.sdk, ami.region.as_str()));
        let found = describe(&ec2, &ami.image_id).await?;
        let mut snapshot_ids = found.as_ref().map(|f| f.snapshot_ids.clone()).unwrap_or_default();
        if !passed {
            let q = quarantine(
                &ec2,
                &ami.image_id,
                found.as_ref(),
                &state.bake_id,
                &input.execution_arn,
                &reasons,
                gate.on_failure,
            )
            .await?;
            if found.is_none() {
                snapshot_ids = q.deleted_snapshots;
            }
            quarantined = true;
            deregistered &= q.gone;
        } else if found.is_none() && ami.region.as_str() == build.home_region {
            return Err(BakeError::NotFound(format!(
                "{}: AMI {} is not in {} (owner self)",
                arn, ami.image_id, ami.region
            )));
        }
        if ami.region.as_str() == build.home_region {
            result_image = Some(BakedImage {
                region: ami.region.clone(),
                image_id: ami.image_id.clone(),
                name: found
                    .and_then(|f| f.name)
                    .or_else(|| ami.name.clone())
                    .unwrap_or_default(),
                snapshot_ids,
            });
        }
    }

    let lineage = AmiLineage {
        bake_id: state.bake_id.clone(),
        source_ami: state
            .source_ami
            .as_ref()
            .map_or_else(|| build.parent_image.clone(), |s| s.image_id.to_string()),
        parent_chain: state.parent_chain.clone(),
        recipe_arn: build.recipe_arn.clone(),
        recipe_version: build.recipe_version.clone(),
        pipeline_arn: state.pipeline_arn.clone(),
        execution_arn: input.execution_arn.clone(),
        image_build_version_arn: arn.to_owned(),
        build_date: build_date(image.date_created.as_deref(), Utc::now()),
    };
    tracing::info!(bake_id = %state.bake_id, image = arn, passed, ?reasons, quarantined, deregistered, "gate");
    Ok(GateResult {
        passed,
        reasons,
        outcome,
        image: result_image,
        quarantined,
        deregistered,
        lineage,
    })
}

/// A refused approval as a gate reason: `not approved: <error>: <cause>`, the cause taken out of
/// the error's JSON (NotApproved's `States.JsonToString($.error)`) when it is there.
fn not_approved_reason(refusal: &Failure) -> String {
    let inner = serde_json::from_str::<Value>(&refusal.cause).ok();
    let cause = match inner.as_ref().map(|v| &v["Cause"]) {
        Some(Value::String(c)) => c.trim().to_owned(),
        Some(_) => String::new(),
        None => refusal.cause.trim().to_owned(),
    };
    if cause.is_empty() {
        format!("not approved: {}", refusal.error)
    } else {
        format!("not approved: {}: {cause}", refusal.error)
    }
}

/// The severities ListImageScanFindingAggregations counts; the others need the findings listed.
const AGGREGATED: [Severity; 3] = [Severity::Critical, Severity::High, Severity::Medium];

/// Finding counts from an image's aggregation, and how many findings it leaves uncounted
/// (`all` minus critical, high and medium: low, informational and untriaged together).
fn from_counts(counts: Option<&SeverityCounts>) -> (Findings, u32) {
    let n = |v: Option<i64>| u32::try_from(v.unwrap_or(0).max(0)).unwrap_or(u32::MAX);
    let Some(c) = counts else {
        return (Findings::default(), 0);
    };
    let counted = [n(c.critical), n(c.high), n(c.medium)];
    let rest = n(c.all).saturating_sub(counted.iter().fold(0u32, |a, b| a.saturating_add(*b)));
    (Findings(AGGREGATED.into_iter().zip(counted).collect()), rest)
}

/// Counts the severities the aggregation leaves out, from the findings' `severity` values.
fn count_unaggregated<'a>(severities: impl IntoIterator<Item = &'a str>) -> Findings {
    let mut findings = Findings::default();
    for s in severities {
        if let Some(severity) = Severity::ALL.into_iter().find(|v| v.key().eq_ignore_ascii_case(s)) {
            if !AGGREGATED.contains(&severity) {
                *findings.0.entry(severity).or_insert(0) += 1;
            }
        }
    }
    findings
}

async fn scan_findings(ib: &aws_sdk_imagebuilder::Client, arn: &str, gate: &Gate) -> Result<Findings, BakeError> {
    let filter = AggregationFilter::builder()
        .name("imageBuildVersionArn")
        .values(arn)
        .build();
    let out = send("ListImageScanFindingAggregations", || {
        ib.list_image_scan_finding_aggregations().filter(filter.clone()).send()
    })
    .await?;
    let counts = out
        .responses()
        .iter()
        .filter_map(|r| r.image_aggregation())
        .find(|a| a.image_build_version_arn().is_none_or(|a| a == arn))
        .and_then(|a| a.severity_counts());
    let (mut findings, rest) = from_counts(counts);
    // Only worth listing every finding when the policy limits a severity the counts leave out.
    if rest > 0 && gate.max_findings.keys().any(|s| !AGGREGATED.contains(s)) {
        let filter = ImageScanFindingsFilter::builder()
            .name("imageBuildVersionArn")
            .values(arn)
            .build();
        let mut severities = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let page = send("ListImageScanFindings", || {
                ib.list_image_scan_findings()
                    .filters(filter.clone())
                    .set_next_token(next.clone())
                    .send()
            })
            .await?;
            severities.extend(page.findings().iter().filter_map(|f| f.severity().map(str::to_owned)));
            next = page.next_token;
            if next.is_none() {
                break;
            }
        }
        findings
            .0
            .extend(count_unaggregated(severities.iter().map(String::as_str)).0);
    }
    Ok(findings)
}

/// Conditions the verdict cannot see in the outcome: limits on findings of an image nobody
/// scanned (zero findings would pass them), and a build with nothing to publish.
fn unseen_reasons(gate: &Gate, scanned: bool, status: &str, home_ami: bool, home_region: &str) -> Vec<String> {
    let mut reasons = Vec::new();
    if !gate.max_findings.is_empty() && !scanned {
        reasons.push("the policy limits scan findings, and the image was not scanned".to_owned());
    }
    if status == "AVAILABLE" && !home_ami {
        reasons.push(format!("the image has no AMI in its home region {home_region}"));
    }
    reasons
}

/// One AMI the build made, in this account.
struct BuiltAmi {
    region: Region,
    image_id: AmiId,
    name: Option<String>,
}

/// The image's AMIs in this account (a distribution can also make AMIs in other accounts,
/// which are not ours to quarantine).
fn own_amis(image: &Image, account_id: &str) -> Result<Vec<BuiltAmi>, BakeError> {
    let amis = image.output_resources.as_ref().map(|o| o.amis()).unwrap_or_default();
    amis.iter()
        .filter(|a| a.account_id().is_none_or(|id| id == account_id))
        .filter_map(|a| Some((a.region()?, a.image()?, a.name())))
        .map(|(region, image_id, name)| {
            let bad = |e: String| BakeError::Aws {
                operation: "GetImage".into(),
                code: "UnexpectedResponse".into(),
                message: format!("outputResources.amis: {e}"),
            };
            Ok(BuiltAmi {
                region: Region::parse(region).map_err(bad)?,
                image_id: AmiId::parse(image_id).map_err(bad)?,
                name: name.map(str::to_owned),
            })
        })
        .collect()
}

/// Tag values are at most 256 characters.
const TAG_VALUE_MAX: usize = 256;

/// The tags that mark a quarantined AMI and its snapshots. The bake's execution tag is what the
/// template's quarantine grant requires: the gate deregisters only what this stack's bakes tagged.
pub fn quarantine_tags(bake_id: &str, execution_arn: &str, reasons: &[String]) -> Vec<(String, String)> {
    let reason: String = reasons.join("; ").chars().take(TAG_VALUE_MAX).collect();
    [
        ("bakery:quarantined", "true".to_owned()),
        ("bakery:quarantine-reason", reason),
        ("bakery:bake-id", bake_id.chars().take(TAG_VALUE_MAX).collect()),
        ("bakery:execution", execution_arn.chars().take(TAG_VALUE_MAX).collect()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// `dateCreated` as GetImage gives it (ISO 8601) or as Image Builder's notice writes it,
/// normalized; `now` when absent or unreadable.
fn build_date(date_created: Option<&str>, now: DateTime<Utc>) -> String {
    let parsed = date_created.and_then(|s| {
        DateTime::parse_from_rfc3339(s)
            .map(|d| d.with_timezone(&Utc))
            .ok()
            .or_else(|| {
                serde_json::from_value::<ImageBuilderDate>(Value::from(s))
                    .ok()
                    .map(|d| d.0)
            })
    });
    parsed.unwrap_or(now).format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// What DescribeImages says of one of our AMIs.
struct Found {
    name: Option<String>,
    snapshot_ids: Vec<String>,
}

async fn describe(ec2: &aws_sdk_ec2::Client, image_id: &AmiId) -> Result<Option<Found>, BakeError> {
    let image = bakery_aws::images::describe_own(ec2, image_id.as_str()).await?;
    Ok(image.map(|i| Found {
        name: i.name().map(str::to_owned),
        snapshot_ids: bakery_aws::images::snapshot_ids(&i),
    }))
}

fn ec2_tags(pairs: &[(String, String)]) -> Vec<Tag> {
    pairs
        .iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

/// A delete of something already gone is done.
fn done_if_gone(r: Result<(), BakeError>) -> Result<(), BakeError> {
    match r {
        Err(BakeError::NotFound(_)) => Ok(()),
        other => other,
    }
}

struct Quarantined {
    gone: bool,
    deleted_snapshots: Vec<String>,
}

/// Tags and deprecates the AMI; with `deregister`, also deregisters it and deletes its
/// snapshots. Called again (a retried Task), it finishes what a first call left undone.
async fn quarantine(
    ec2: &aws_sdk_ec2::Client,
    image_id: &AmiId,
    found: Option<&Found>,
    bake_id: &str,
    execution_arn: &str,
    reasons: &[String],
    on_failure: Quarantine,
) -> Result<Quarantined, BakeError> {
    let snapshots = match found {
        Some(f) => {
            let resources: Vec<String> = std::iter::once(image_id.to_string())
                .chain(f.snapshot_ids.clone())
                .collect();
            let tags = ec2_tags(&quarantine_tags(bake_id, execution_arn, reasons));
            send("CreateTags", || {
                ec2.create_tags()
                    .set_resources(Some(resources.clone()))
                    .set_tags(Some(tags.clone()))
                    .send()
            })
            .await
            .map(drop)?;
            let at =
                aws_sdk_ec2::primitives::DateTime::from_secs(bakery_aws::images::deprecate_at(Utc::now()).timestamp());
            send("EnableImageDeprecation", || {
                ec2.enable_image_deprecation()
                    .image_id(image_id.as_str())
                    .deprecate_at(at)
                    .send()
            })
            .await
            .map(drop)?;
            if on_failure == Quarantine::Deprecate {
                return Ok(Quarantined {
                    gone: false,
                    deleted_snapshots: Vec::new(),
                });
            }
            done_if_gone(
                send("DeregisterImage", || {
                    ec2.deregister_image().image_id(image_id.as_str()).send()
                })
                .await
                .map(drop),
            )?;
            f.snapshot_ids.clone()
        }
        // Gone already: deregistered by an earlier try, whose snapshots carry the quarantine tags.
        None if on_failure == Quarantine::Deregister => quarantined_snapshots(ec2, bake_id).await?,
        None => Vec::new(),
    };
    for snapshot in &snapshots {
        done_if_gone(
            send("DeleteSnapshot", || ec2.delete_snapshot().snapshot_id(snapshot).send())
                .await
                .map(drop),
        )?;
    }
    Ok(Quarantined {
        gone: true,
        deleted_snapshots: snapshots,
    })
}

/// This bake's quarantined snapshots in the client's region.
async fn quarantined_snapshots(ec2: &aws_sdk_ec2::Client, bake_id: &str) -> Result<Vec<String>, BakeError> {
    let filter = |k: &str, v: &str| Filter::builder().name(format!("tag:{k}")).values(v).build();
    let out = send("DescribeSnapshots", || {
        ec2.describe_snapshots()
            .owner_ids("self")
            .filters(filter("bakery:quarantined", "true"))
            .filters(filter("bakery:bake-id", bake_id))
            .send()
    })
    .await?;
    Ok(out
        .snapshots()
        .iter()
        .filter_map(|s| s.snapshot_id().map(str::to_owned))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn aggregations_map_to_findings_and_what_they_leave_out() {
        let counts = SeverityCounts::builder().all(10).critical(1).high(3).build();
        let (findings, rest) = from_counts(Some(&counts));
        assert_eq!(findings.0.get(&Severity::Critical), Some(&1));
        assert_eq!(findings.0.get(&Severity::High), Some(&3));
        assert_eq!(findings.0.get(&Severity::Medium), Some(&0), "absent is 0");
        assert_eq!(findings.0.get(&Severity::Low), None, "not in the aggregation");
        assert_eq!(rest, 6);
        assert_eq!(
            from_counts(None),
            (Findings::default(), 0),
            "no aggregation: no findings"
        );
        let odd = SeverityCounts::builder().all(-1).critical(i64::MAX).build();
        assert_eq!(from_counts(Some(&odd)).0 .0[&Severity::Critical], u32::MAX);
        assert_eq!(from_counts(Some(&odd)).1, 0);
    }

    #[test]
    fn listed_findings_count_only_what_the_aggregation_leaves_out() {
        let f = count_unaggregated(["LOW", "LOW", "INFORMATIONAL", "UNTRIAGED", "CRITICAL", "bogus"]);
        let expected: Findings = Findings(
            [
                (Severity::Low, 2),
                (Severity::Informational, 1),
                (Severity::Untriaged, 1),
            ]
            .into_iter()
            .collect(),
        );
        assert_eq!(f, expected);
    }

    fn gate(limits: &[(Severity, u32)]) -> Gate {
        Gate {
            require_tests_passed: true,
            max_findings: limits.iter().copied().collect(),
            on_failure: Quarantine::Deprecate,
        }
    }

    #[test]
    fn unscanned_images_and_missing_amis_fail() {
        let limited = gate(&[(Severity::Critical, 0)]);
        assert_eq!(
            unseen_reasons(&limited, true, "AVAILABLE", true, "us-east-1"),
            Vec::<String>::new()
        );
        assert_eq!(
            unseen_reasons(&limited, false, "AVAILABLE", true, "us-east-1"),
            ["the policy limits scan findings, and the image was not scanned"]
        );
        assert!(unseen_reasons(&gate(&[]), false, "AVAILABLE", true, "us-east-1").is_empty());
        assert_eq!(
            unseen_reasons(&gate(&[]), true, "AVAILABLE", false, "us-east-1"),
            ["the image has no AMI in its home region us-east-1"]
        );
        assert!(
            unseen_reasons(&gate(&[]), true, "FAILED", false, "us-east-1").is_empty(),
            "said already"
        );
    }

    #[test]
    fn a_refused_approval_reads_as_a_gate_reason() {
        let failure = |error: &str, cause: &str| Failure {
            step: "Approval".into(),
            error: error.into(),
            cause: cause.into(),
        };
        let rejected = failure(
            "Rejected",
            r#"{"Error":"Rejected","Cause":"rejected by alice: bad kernel"}"#,
        );
        assert_eq!(
            not_approved_reason(&rejected),
            "not approved: Rejected: rejected by alice: bad kernel"
        );
        // A timeout may carry no Cause, or an empty one.
        let timed_out = failure("States.Timeout", r#"{"Error":"States.Timeout"}"#);
        assert_eq!(not_approved_reason(&timed_out), "not approved: States.Timeout");
        let empty = failure("States.Timeout", r#"{"Error":"States.Timeout","Cause":""}"#);
        assert_eq!(not_approved_reason(&empty), "not approved: States.Timeout");
        // A cause that is not the error's JSON is taken as it is.
        assert_eq!(not_approved_reason(&failure("X", "plain")), "not approved: X: plain");
    }

    #[test]
    fn quarantine_tags_fit_ec2_limits() {
        let reasons = vec!["1 critical findings, limit 0".to_owned(), "é".repeat(300)];
        let tags = quarantine_tags(
            "web-1",
            "arn:aws:states:us-east-1:1:execution:bakery-bake:web-1",
            &reasons,
        );
        assert_eq!(tags[0], ("bakery:quarantined".into(), "true".into()));
        assert_eq!(tags[1].0, "bakery:quarantine-reason");
        assert!(tags[1].1.starts_with("1 critical findings, limit 0; éé"));
        assert_eq!(tags[1].1.chars().count(), 256);
        assert_eq!(tags[2], ("bakery:bake-id".into(), "web-1".into()));
        assert_eq!(tags[3].1, "arn:aws:states:us-east-1:1:execution:bakery-bake:web-1");
    }

    #[test]
    fn build_dates() {
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        assert_eq!(
            build_date(Some("2026-11-26T16:00:01.123Z"), now),
            "2026-11-26T16:00:01Z"
        );
        assert_eq!(build_date(Some("Jul 28, 2022 1:13:45 AM"), now), "2022-07-28T01:13:45Z");
        assert_eq!(build_date(Some("yesterday"), now), "2026-01-01T00:00:00Z");
        assert_eq!(build_date(None, now), "2026-01-01T00:00:00Z");
    }
}
