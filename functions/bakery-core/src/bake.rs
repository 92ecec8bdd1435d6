//! The plain rules a bake applies: attempts and their names, the next recipe version,
//! idempotency tokens, the gate's verdict. The payloads between its steps are in
//! [`crate::steps`].

use crate::policy::{Gate, Rebake};
use crate::steps::BuildOutcome;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

/// The execution name of attempt `attempt` of bake `bake_id`: the bake id itself, then
/// `<bake id>-a2`, `-a3`, ... (a bake id is at most 57 characters, so this stays within Step
/// Functions' 80).
pub fn attempt_id(bake_id: &str, attempt: u32) -> String {
    if attempt <= 1 {
        bake_id.to_owned()
    } else {
        format!("{bake_id}-a{attempt}")
    }
}

/// What the trigger does when the execution name of an attempt is taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Taken {
    /// That attempt runs, succeeded, or waits for a redrive: it is the bake; start nothing.
    Existing,
    /// It ended FAILED, TIMED_OUT or ABORTED and the policy allows another: start attempt `n`.
    Next(u32),
    /// It failed, and the next attempt may not start before then.
    NotBefore(DateTime<Utc>),
    /// It failed, and it was the last attempt the policy allows.
    Exhausted,
}

/// The states a bake enters only once its AMIs are out. An attempt that ended FAILED in one of
/// them published: a re-bake would publish a second set of AMIs, so it waits for a redrive,
/// which resumes it there.
pub const AFTER_PUBLISHING: [&str; 2] = ["Announce", "RecordLineage"];

/// Whether a failed attempt that stopped in `state` (the last state it entered) has published.
pub fn published_before_failing(state: &str) -> bool {
    AFTER_PUBLISHING.contains(&state)
}

/// Whether a bake whose attempt `attempt` is in Step Functions status `status` (stopped at
/// `stopped`) is tried again at `now`. The wait after the k-th failure is `backoff_seconds`
/// × 2^(k-1), from the moment that attempt stopped.
pub fn after_taken(
    rebake: &Rebake,
    attempt: u32,
    status: &str,
    stopped: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Taken {
    if !matches!(status, "FAILED" | "TIMED_OUT" | "ABORTED") {
        return Taken::Existing;
    }
    if attempt >= rebake.max_attempts {
        return Taken::Exhausted;
    }
    let doublings = attempt.saturating_sub(1).min(20);
    let wait = i64::from(rebake.backoff_seconds).saturating_mul(1 << doublings);
    let not_before = stopped.unwrap_or(now) + Duration::seconds(wait.min(i64::from(u32::MAX)));
    if now < not_before {
        Taken::NotBefore(not_before)
    } else {
        Taken::Next(attempt + 1)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Verdict {
    pub passed: bool,
    /// Every reason it failed (empty when it passed).
    pub reasons: Vec<String>,
}

/// The gate: the image is AVAILABLE, its tests ran and passed (when required), and its scan
/// findings are within the policy's limits. Every failed condition is a reason.
pub fn verdict(gate: &Gate, outcome: &BuildOutcome) -> Verdict {
    let mut reasons = Vec::new();
    if outcome.status != "AVAILABLE" {
        let why = outcome.reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default();
        reasons.push(format!("image is {}{why}", outcome.status));
    }
    if gate.require_tests_passed && !outcome.tests_enabled {
        reasons.push("the policy requires tests, and the pipeline ran none".into());
    }
    for (severity, limit) in &gate.max_findings {
        let found = outcome.findings.0.get(severity).copied().unwrap_or(0);
        if found > *limit {
            reasons.push(format!("{found} {} findings, limit {limit}", severity.key()));
        }
    }
    Verdict {
        passed: reasons.is_empty(),
        reasons,
    }
}

/// The next patch version of a recipe: `1.2.3` → `1.2.4`. Image Builder versions are x.y.z.
pub fn next_patch_version(version: &str) -> Result<String, String> {
    let parts: Vec<u64> = version
        .split('.')
        .map(|p| p.parse::<u64>())
        .collect::<Result<_, _>>()
        .map_err(|_| format!("not a semantic version: {version:?}"))?;
    match parts.as_slice() {
        [major, minor, patch] => Ok(format!("{major}.{minor}.{}", patch + 1)),
        _ => Err(format!("not a semantic version: {version:?}")),
    }
}

/// A deterministic idempotency token (36 characters, Image Builder's and EC2's limit is 64):
/// the same bake and step always give the same token, so a retried step never acts twice.
pub fn client_token(bake_id: &str, step: &str) -> String {
    // FNV-1a, 128-bit: stable across Rust versions, unlike std's hasher.
    let mut h: u128 = 0x6c62272e07bb014262b821756295c58d;
    for b in bake_id.bytes().chain([0]).chain(step.bytes()) {
        h ^= u128::from(b);
        h = h.wrapping_mul(0x0000000001000000000000000000013B);
    }
    let x = format!("{h:032x}");
    format!("{}-{}-{}-{}-{}", &x[..8], &x[8..12], &x[12..16], &x[16..20], &x[20..])
}

/// The bake id for a pipeline and a source: also the Step Functions execution name (80
/// characters of letters, digits, `-` and `_`), unique per source so a redelivered event
/// starts nothing new.
pub fn bake_id(pipeline_name: &str, source: &str) -> String {
    let clean: String = pipeline_name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .take(40)
        .collect();
    format!(
        "{clean}-{}",
        &client_token(pipeline_name, source)[..18].replace('-', "")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Quarantine, Severity};
    use crate::steps::Findings;

    fn gate(limits: &[(Severity, u32)]) -> Gate {
        Gate {
            require_tests_passed: true,
            max_findings: limits.iter().copied().collect(),
            on_failure: Quarantine::Deprecate,
        }
    }

    fn outcome(status: &str, findings: &[(Severity, u32)]) -> BuildOutcome {
        BuildOutcome {
            status: status.into(),
            reason: None,
            tests_enabled: true,
            findings: Findings(findings.iter().copied().collect()),
        }
    }

    #[test]
    fn the_gate_lists_every_reason() {
        let g = gate(&[(Severity::Critical, 0), (Severity::High, 2)]);
        assert_eq!(
            verdict(&g, &outcome("AVAILABLE", &[(Severity::High, 2)])),
            Verdict {
                passed: true,
                reasons: vec![]
            }
        );
        let v = verdict(
            &g,
            &outcome(
                "AVAILABLE",
                &[(Severity::Critical, 1), (Severity::High, 3), (Severity::Low, 99)],
            ),
        );
        assert!(!v.passed);
        assert_eq!(v.reasons, ["1 critical findings, limit 0", "3 high findings, limit 2"]);
        let mut failed = outcome("FAILED", &[]);
        failed.reason = Some("InSpec: 2 controls failed".into());
        failed.tests_enabled = false;
        let v = verdict(&g, &failed);
        assert_eq!(
            v.reasons,
            [
                "image is FAILED: InSpec: 2 controls failed",
                "the policy requires tests, and the pipeline ran none"
            ]
        );
    }

    #[test]
    fn recipe_versions() {
        assert_eq!(next_patch_version("1.0.0").unwrap(), "1.0.1");
        assert_eq!(next_patch_version("2.9.19").unwrap(), "2.9.20");
        assert!(next_patch_version("1.0").is_err());
        assert!(next_patch_version("1.0.x").is_err());
        assert!(next_patch_version("").is_err());
    }

    #[test]
    fn tokens_and_ids_are_deterministic() {
        assert_eq!(client_token("b1", "start"), client_token("b1", "start"));
        assert_ne!(client_token("b1", "start"), client_token("b1", "copy-eu-west-1"));
        assert_ne!(client_token("b1", "x"), client_token("b2", "x"));
        assert_eq!(client_token("b1", "start").len(), 36);
        let id = bake_id("web app/β", "ami-0a1b2c3d4e5f67890");
        assert_eq!(id, bake_id("web app/β", "ami-0a1b2c3d4e5f67890"));
        assert!(id.starts_with("web-app--"), "{id}");
        assert!(id.len() <= 80 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        assert_ne!(id, bake_id("web app/β", "ami-0fedcba9876543210"));
    }

    #[test]
    fn attempts_have_their_own_names_within_the_limit() {
        let id = bake_id(&"p".repeat(200), "ami-0a1b2c3d4e5f67890");
        assert_eq!(attempt_id(&id, 1), id);
        assert_eq!(attempt_id(&id, 2), format!("{id}-a2"));
        assert!(attempt_id(&id, 10).len() <= 80, "{}", attempt_id(&id, 10));
        assert_ne!(client_token(&attempt_id(&id, 2), "start"), client_token(&id, "start"));
    }

    #[test]
    fn a_failed_attempt_is_tried_again_after_its_backoff_up_to_the_limit() {
        let rebake = Rebake {
            max_attempts: 3,
            backoff_seconds: 600,
        };
        let stopped: DateTime<Utc> = "2026-11-26T10:00:00Z".parse().unwrap();
        let at = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        for status in ["RUNNING", "SUCCEEDED", "PENDING_REDRIVE"] {
            assert_eq!(
                after_taken(&rebake, 1, status, None, at("2026-11-27T10:00:00Z")),
                Taken::Existing,
                "{status}"
            );
        }
        for status in ["FAILED", "TIMED_OUT", "ABORTED"] {
            assert_eq!(
                after_taken(&rebake, 1, status, Some(stopped), at("2026-11-26T10:10:00Z")),
                Taken::Next(2),
                "{status}"
            );
        }
        assert_eq!(
            after_taken(&rebake, 1, "FAILED", Some(stopped), at("2026-11-26T10:09:59Z")),
            Taken::NotBefore(at("2026-11-26T10:10:00Z"))
        );
        // The second failure waits twice as long.
        assert_eq!(
            after_taken(&rebake, 2, "FAILED", Some(stopped), at("2026-11-26T10:10:00Z")),
            Taken::NotBefore(at("2026-11-26T10:20:00Z"))
        );
        assert_eq!(
            after_taken(&rebake, 2, "FAILED", Some(stopped), at("2026-11-26T10:20:00Z")),
            Taken::Next(3)
        );
        assert_eq!(
            after_taken(&rebake, 3, "FAILED", Some(stopped), at("2030-01-01T00:00:00Z")),
            Taken::Exhausted
        );
        let once = Rebake {
            max_attempts: 1,
            backoff_seconds: 0,
        };
        assert_eq!(
            after_taken(&once, 1, "FAILED", Some(stopped), stopped),
            Taken::Exhausted
        );
        let at_once = Rebake {
            max_attempts: 2,
            backoff_seconds: 0,
        };
        assert_eq!(after_taken(&at_once, 1, "FAILED", None, stopped), Taken::Next(2));
    }
}
