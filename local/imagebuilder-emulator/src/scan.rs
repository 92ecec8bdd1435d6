//! Vulnerability scans of built images: ListImageScanFindings and
//! ListImageScanFindingAggregations, made from the per-severity counts armed by the test knob
//! when each image completed.

use crate::error::ApiError;
use crate::resources::{page, Filter};
use crate::wire::{opt_typed, Obj};
use crate::{FindingCounts, State};
use serde_json::{json, Value};

const SEVERITIES: [&str; 6] = ["CRITICAL", "HIGH", "MEDIUM", "LOW", "INFORMATIONAL", "UNTRIAGED"];

/// The aggregation each filter name asks for, and its member in ImageScanFindingAggregation.
const AGGREGATIONS: [(&str, &str); 4] = [
    ("accountId", "accountAggregation"),
    ("imageBuildVersionArn", "imageAggregation"),
    ("imagePipelineArn", "imagePipelineAggregation"),
    ("vulnerabilityId", "vulnerabilityIdAggregation"),
];

const FINDING_FILTERS: [&str; 4] = [
    "imageBuildVersionArn",
    "imagePipelineArn",
    "vulnerabilityId",
    "severity",
];

/// One finding of one scanned image.
#[derive(Clone, Copy)]
struct Finding<'a> {
    image: &'a str,
    pipeline: &'a str,
    severity: usize,
    index: u32,
    at: f64,
}

fn per_severity(c: &FindingCounts) -> [u32; 6] {
    [c.critical, c.high, c.medium, c.low, c.informational, c.untriaged]
}

/// The n-th vulnerability of a severity has the same ID in every image, so the vulnerabilityId
/// filter and aggregation find it across images.
fn vulnerability_id(severity: usize, index: u32) -> String {
    format!("CVE-2099-{}{index:04}", severity + 1)
}

fn parse_vulnerability_id(id: &str) -> Option<(usize, u32)> {
    let (severity, index) = id.strip_prefix("CVE-2099-")?.split_at_checked(1)?;
    let severity = severity.parse::<usize>().ok()?.checked_sub(1)?;
    let index = index.parse().ok()?;
    (severity < SEVERITIES.len() && vulnerability_id(severity, index) == id).then_some((severity, index))
}

impl State {
    /// Scanned images: ARN, pipeline ARN, findings per severity, scan time.
    fn scanned(&self) -> impl Iterator<Item = (&str, &str, [u32; 6], f64)> {
        self.scans.iter().map(|(image, (counts, at))| {
            let pipeline = self
                .resources
                .get(image)
                .and_then(|i| i.get("sourcePipelineArn"))
                .and_then(Value::as_str);
            (image.as_str(), pipeline.unwrap_or_default(), per_severity(counts), *at)
        })
    }

    fn findings(&self) -> impl Iterator<Item = Finding<'_>> {
        self.scanned().flat_map(|(image, pipeline, counts, at)| {
            counts.into_iter().enumerate().flat_map(move |(severity, n)| {
                (0..n).map(move |index| Finding {
                    image,
                    pipeline,
                    severity,
                    index,
                    at,
                })
            })
        })
    }

    pub(crate) fn list_findings(&self, input: &Obj) -> Result<Value, ApiError> {
        let filters: Vec<Filter> = opt_typed(input, "filters")?.unwrap_or_default();
        // The model's ImageScanFindingsFilterList: at most one filter, with one value.
        let filter = match filters.as_slice() {
            [] => None,
            [Filter { name, values }] => match values.as_slice() {
                [value] if FINDING_FILTERS.contains(&name.as_str()) => Some((name.as_str(), value.as_str())),
                _ => {
                    return Err(ApiError::InvalidRequest(format!(
                        "Filter by one of {FINDING_FILTERS:?}, with one value."
                    )))
                }
            },
            _ => return Err(ApiError::InvalidRequest("Specify at most one filter.".into())),
        };
        let findings = self
            .findings()
            .filter(|f| match filter {
                None => true,
                Some(("imageBuildVersionArn", v)) => f.image == v,
                Some(("imagePipelineArn", v)) => f.pipeline == v,
                Some(("severity", v)) => SEVERITIES[f.severity] == v,
                Some((_, v)) => vulnerability_id(f.severity, f.index) == v,
            })
            .map(|f| self.finding(f));
        page(findings, input, "findings")
    }

    fn finding(&self, f: Finding<'_>) -> Value {
        let id = vulnerability_id(f.severity, f.index);
        let severity = SEVERITIES[f.severity];
        json!({
            "awsAccountId": self.account,
            "imageBuildVersionArn": f.image,
            "imagePipelineArn": f.pipeline,
            "type": "PACKAGE_VULNERABILITY",
            "title": format!("{id} - emulated-package"),
            "description": format!("An emulated {} vulnerability in emulated-package 1.0.0.", severity.to_lowercase()),
            "severity": severity,
            // DateTimeTimestamp members are restJson1 timestamps: epoch seconds.
            "firstObservedAt": f.at,
            "updatedAt": f.at,
            "remediation": { "recommendation": { "text": "Update emulated-package to 1.0.1." } },
            "packageVulnerabilityDetails": {
                "vulnerabilityId": id,
                "source": "NVD",
                "vulnerablePackages": [{
                    "name": "emulated-package",
                    "version": "1.0.0",
                    "fixedInVersion": "1.0.1",
                    "packageManager": "OS",
                }],
            },
            "fixAvailable": "YES",
        })
    }

    /// Counts by severity for each value of the filter (the account when there is none); a
    /// value without findings has no aggregation, as a group-by over no findings has no group.
    pub(crate) fn aggregate_findings(&self, input: &Obj) -> Result<Value, ApiError> {
        let (name, values) = match opt_typed::<Filter>(input, "filter")? {
            None => ("accountId".to_owned(), vec![self.account.clone()]),
            Some(f) => (f.name, f.values),
        };
        let (name, member) = AGGREGATIONS.into_iter().find(|(n, _)| *n == name).ok_or_else(|| {
            let names = AGGREGATIONS.map(|(n, _)| n);
            ApiError::InvalidRequest(format!("The filter '{name}' is not supported; use one of {names:?}."))
        })?;
        let responses: Vec<Value> = values
            .iter()
            .filter_map(|value| {
                let vulnerability = parse_vulnerability_id(value);
                let mut totals = [0u64; 6];
                for (image, pipeline, counts, _) in self.scanned() {
                    for (severity, (total, n)) in totals.iter_mut().zip(counts).enumerate() {
                        *total += match name {
                            "accountId" if *value == self.account => u64::from(n),
                            "imageBuildVersionArn" if image == value => u64::from(n),
                            "imagePipelineArn" if pipeline == value => u64::from(n),
                            "vulnerabilityId" => u64::from(vulnerability.is_some_and(|(s, i)| s == severity && i < n)),
                            _ => 0,
                        };
                    }
                }
                let all: u64 = totals.iter().sum();
                let counts = json!({ "all": all, "critical": totals[0], "high": totals[1], "medium": totals[2] });
                (all > 0).then(|| json!({ member: { name: value, "severityCounts": counts } }))
            })
            .collect();
        let mut response = page(responses.into_iter(), input, "responses")?;
        if let Value::Object(members) = &mut response {
            members.insert("aggregationType".into(), name.into());
        }
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vulnerability_ids_round_trip() {
        assert_eq!(vulnerability_id(0, 7), "CVE-2099-10007");
        assert_eq!(parse_vulnerability_id("CVE-2099-10007"), Some((0, 7)));
        assert_eq!(parse_vulnerability_id("CVE-2099-612345"), Some((5, 12345)));
        assert_eq!(parse_vulnerability_id("CVE-2099-100007"), None);
        assert_eq!(parse_vulnerability_id("CVE-2099-70001"), None);
        assert_eq!(parse_vulnerability_id("CVE-2024-10001"), None);
    }
}
