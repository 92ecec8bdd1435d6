//! The trigger: classify what arrived, find the pipelines whose bake policies follow it, check
//! that each source AMI may be trusted, and start one bake execution per pipeline under a
//! deterministic name, so that a redelivered event starts nothing new.
//!
//! Trust: a source AMI is looked up by ID with the policy's trusted owners as `Owners`, and the
//! owner EC2 returns is checked again here (an emulator or a proxy that ignores the filter must
//! not let an untrusted image through). It must be available, neither disabled nor deprecated,
//! and where the account's Allowed AMIs setting is enabled, the image must be allowed. A refusal
//! starts nothing and is logged as a security event. No AMI is ever chosen by name alone.
//!
//! Re-bakes: a name that is taken belongs to an execution that runs, succeeded or failed
//! (DescribeExecution says which). A failed one is tried again under the next attempt's name,
//! within the policy's `rebake` limit and backoff; a running or succeeded one is the bake.
//!
//! Revocations: an upstream Bakery's REVOKED publication, from an account a policy following
//! that topic trusts, revokes the AMIs it lists in this ledger too, so none is taken as a base;
//! this stack's latest images built on them go out at once in one STALE message.

use crate::lookups::{self, Lookups};
use bakery_aws::BakeError;
use bakery_core::bake::{self, Taken};
use bakery_core::fanout::{self, Plan, Planned, Seen};
use bakery_core::policy::{ObservedAmi, Rebake};
use bakery_core::publication::StaleImage;
use bakery_core::steps::BakeRequest;
use bakery_core::trigger::UpstreamRevocation;
use bakery_core::{classify_value, BakeTrigger, Classification, ClassifyError, Origin, Policy};
use lambda_runtime::Diagnostic;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::sync::Arc;

pub struct Deps {
    pub lookups: Lookups,
    pub sfn: aws_sdk_sfn::Client,
    pub state_machine_arn: String,
    /// StartExecution calls in flight at once.
    pub concurrency: usize,
    /// StartExecution attempts per bake before the event is handed back to Lambda.
    pub start_attempts: u32,
    pub lambda: aws_sdk_lambda::Client,
    /// The announce function, which publishes the STALE message (the topic admits no other).
    pub announce_function: String,
    /// The name of the daily staleness schedule: its firing reports instead of baking.
    pub staleness_schedule: String,
}

#[derive(Debug, thiserror::Error)]
pub enum TriggerError {
    #[error(transparent)]
    Classify(#[from] ClassifyError),
    #[error(transparent)]
    Aws(#[from] BakeError),
    /// Some bakes could not be started: the invocation fails so that Lambda retries the event
    /// (every start is idempotent) and, in the end, keeps it in the dead-letter queue.
    #[error("{failed} of {total} bakes could not be started: {detail}")]
    StartsIncomplete {
        failed: usize,
        total: usize,
        detail: String,
    },
    #[error("cannot serialize the result: {0}")]
    Output(#[from] serde_json::Error),
}

impl From<TriggerError> for Diagnostic {
    /// `errorType` is the stable name that alarms and the dead-letter queue's readers match on.
    fn from(e: TriggerError) -> Diagnostic {
        let error_type = match &e {
            TriggerError::Classify(c) => c.error_type(),
            TriggerError::Aws(b) => b.error_type(),
            TriggerError::StartsIncomplete { .. } => "StartsIncomplete",
            TriggerError::Output(_) => "InternalError",
        };
        Diagnostic {
            error_type: error_type.to_owned(),
            error_message: e.to_string(),
        }
    }
}

/// One bake started (or found started already, under the same name).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Started {
    pub pipeline_arn: String,
    pub bake_id: String,
    pub execution_arn: String,
    pub source_ami: Option<String>,
    /// True when Step Functions answered ExecutionAlreadyExists and that execution runs or
    /// succeeded (the same AMI by another route, or a redelivery after the bake ended). A start
    /// with the same name and input as a running execution is answered with that execution, as
    /// if it were new.
    pub already_started: bool,
    /// 1 for the first attempt at this pipeline and source; more after failed ones.
    pub attempt: u32,
}

/// A source the trust rules refused.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Refused {
    pub pipeline_arn: String,
    pub image_id: String,
    pub error_type: &'static str,
    pub reason: String,
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub started: Vec<Started>,
    pub refused: Vec<Refused>,
    pub skipped: Vec<fanout::Skipped>,
    pub invalid_policies: Vec<lookups::InvalidPolicy>,
}

pub async fn handle(payload: Value, deps: &Deps) -> Result<Value, TriggerError> {
    let classification = classify_value(payload).inspect_err(|e| {
        tracing::warn!(error_type = e.error_type(), error = %e, "refused malformed input");
    })?;
    let trigger = match classification {
        Classification::Ignore { reason } => {
            tracing::info!(%reason, "ignored");
            return Ok(json!({"action": "ignore", "reason": reason}));
        }
        Classification::Stale { publish } => return stale(deps, publish).await,
        Classification::UpstreamRevoked { revoked } => return upstream_revoked(deps, revoked).await,
        Classification::Bake { trigger } => trigger,
    };
    if let Origin::Schedule { schedule_arn, .. } = &trigger.origin {
        if !deps.staleness_schedule.is_empty() && schedule_arn.rsplit('/').next() == Some(&deps.staleness_schedule) {
            return stale(deps, true).await;
        }
    }
    tracing::info!(event_id = %trigger.event_id, origin = ?trigger.origin, "bake trigger");
    let report = fan_out(deps, trigger.clone()).await?;
    Ok(json!({
        "action": "bake",
        "trigger": trigger,
        "started": report.started,
        "refused": report.refused,
        "skipped": report.skipped,
        "invalidPolicies": report.invalid_policies,
    }))
}

/// The staleness report ([`crate::stale`]); with `publish`, one STALE message when any image is
/// stale, published by the announce function.
async fn stale(deps: &Deps, publish: bool) -> Result<Value, TriggerError> {
    deps.lookups.forget().await;
    let (policies, invalid) = deps.lookups.policies().await?;
    let stale = crate::stale::report(&deps.lookups, &policies).await?;
    tracing::info!(stale = stale.len(), publish, "staleness report");
    let announced = match publish {
        true => announce_stale(deps, &stale).await?,
        false => Value::Null,
    };
    Ok(json!({"action": "stale", "stale": stale, "announced": announced, "invalidPolicies": invalid}))
}

/// An upstream Bakery's REVOKED publication. When a policy that follows the topic trusts the
/// account that sent it, every AMI listed is revoked in this ledger too, and this stack's
/// latest images built on any of them go out in one STALE message (`baseRevoked` says why).
/// From any other account it changes nothing and is logged as a security event.
async fn upstream_revoked(deps: &Deps, r: UpstreamRevocation) -> Result<Value, TriggerError> {
    deps.lookups.forget().await;
    let (policies, invalid) = deps.lookups.policies().await?;
    let trusted = policies
        .iter()
        .any(|p| p.sources.sns_topics.contains(&r.topic_arn) && p.trusted_owners.contains(&r.account_id));
    if !trusted {
        let reason = format!(
            "a REVOKED publication on {} from account {}, which no bake policy following that topic trusts",
            r.topic_arn, r.account_id
        );
        tracing::warn!(security_event = "RevocationRefused", event_id = %r.event_id, %reason, "revoked nothing");
        return Ok(json!({"action": "ignore", "reason": reason}));
    }
    let mut recorded = Vec::new();
    for ami in &r.amis {
        if deps.lookups.record_revocation(&r, ami).await? {
            recorded.push(ami.image_id.to_string());
        }
    }
    let revoked: BTreeSet<&str> = r.amis.iter().map(|a| a.image_id.as_str()).collect();
    let stale: Vec<StaleImage> = crate::stale::report(&deps.lookups, &policies)
        .await?
        .into_iter()
        .filter(|s| revoked.contains(s.built_on.as_str()))
        .collect();
    tracing::warn!(
        topic = %r.topic_arn,
        account = %r.account_id,
        amis = r.amis.len(),
        recorded = recorded.len(),
        stale = stale.len(),
        reason = %r.reason,
        "upstream revocation"
    );
    let announced = announce_stale(deps, &stale).await?;
    Ok(json!({
        "action": "revoked",
        "recorded": recorded,
        "stale": stale,
        "announced": announced,
        "invalidPolicies": invalid,
    }))
}

/// One STALE message with `stale` (none when it is empty), published by the announce function.
async fn announce_stale(deps: &Deps, stale: &[StaleImage]) -> Result<Value, TriggerError> {
    let mut announced = Value::Null;
    if !stale.is_empty() {
        let payload = json!({"stale": stale}).to_string();
        let out = bakery_aws::send("Invoke", || {
            deps.lambda
                .invoke()
                .function_name(&deps.announce_function)
                .payload(aws_sdk_lambda::primitives::Blob::new(payload.clone()))
                .send()
        })
        .await?;
        let body: Value = out
            .payload()
            .and_then(|p| serde_json::from_slice(p.as_ref()).ok())
            .unwrap_or_default();
        if let Some(error) = out.function_error() {
            // The invocation fails, so that the schedule's retry policy tries again.
            return Err(BakeError::Retryable {
                operation: "Invoke".into(),
                message: format!("announce failed ({error}): {body}"),
            }
            .into());
        }
        announced = body;
    }
    Ok(announced)
}

async fn fan_out(deps: &Deps, mut trigger: BakeTrigger) -> Result<Report, TriggerError> {
    deps.lookups.forget().await;
    let mut report = Report::default();
    let (policies, invalid) = deps.lookups.policies().await?;
    report.invalid_policies = invalid;
    let seen = resolve(deps, &mut trigger, &policies, &mut report).await?;
    let Plan { planned, skipped } = fanout::plan(&trigger, &policies, &seen);
    report.skipped = skipped;
    let label = fanout::label(&trigger.origin);

    let mut requests = Vec::new();
    for mut p in planned {
        let Some(policy) = policies.iter().find(|x| x.pipeline_arn == p.pipeline_arn) else {
            continue;
        };
        let key = match p.rebuild {
            Some(rebuild) => match schedule_source(deps, policy, &mut p, rebuild, &trigger).await? {
                Ok(key) => key,
                Err(reason) => {
                    tracing::info!(pipeline = %p.pipeline_arn, %reason, "scheduled bake not needed");
                    report.skipped.push(fanout::Skipped {
                        pipeline_arn: p.pipeline_arn.clone(),
                        reason,
                    });
                    continue;
                }
            },
            None => match &p.source {
                Some(s) => s.image_id.to_string(),
                None => format!("{label}:{}", trigger.event_id),
            },
        };
        // A bake on the recipe's own parent: that parent must not be revoked either.
        if p.source.is_none() {
            if let Some(parent) = deps.lookups.recipe_parent(&p.pipeline_arn).await? {
                if let Some(why) = deps.lookups.revoked(&parent).await? {
                    let reason = format!("the recipe's parent {parent} was {why}; bake on a new source (--source)");
                    tracing::warn!(pipeline = %p.pipeline_arn, %reason, "refused a revoked parent");
                    report.refused.push(Refused {
                        pipeline_arn: p.pipeline_arn.clone(),
                        image_id: parent,
                        error_type: "SourceRevoked",
                        reason,
                    });
                    continue;
                }
            }
        }
        if let Some(source) = &p.source {
            if let Err(refused) = trust(deps, policy, &p, source).await? {
                tracing::warn!(
                    security_event = "SourceAmiRefused",
                    pipeline = %refused.pipeline_arn,
                    image_id = %refused.image_id,
                    error_type = refused.error_type,
                    reason = %refused.reason,
                    event_id = %trigger.event_id,
                    "refused a source AMI; nothing started for this pipeline"
                );
                report.refused.push(refused);
                continue;
            }
        }
        let mut request = fanout::request(&p, &key, label);
        request.max_attempts = policy.rebake.max_attempts;
        requests.push((request, policy.rebake.clone()));
    }

    let total = requests.len();
    let (started, held, failures) = start_all(deps, requests).await;
    report.started = started;
    report.skipped.extend(held);
    if !failures.is_empty() {
        let detail: Vec<String> = failures.iter().map(|(arn, e)| format!("{arn}: {e}")).collect();
        return Err(TriggerError::StartsIncomplete {
            failed: failures.len(),
            total,
            detail: detail.join("; "),
        });
    }
    tracing::info!(
        started = report.started.len(),
        refused = report.refused.len(),
        skipped = report.skipped.len(),
        "fan-out done"
    );
    Ok(report)
}

/// What an event does not carry itself: the real owner and name of an AMI, the pipeline and
/// AMIs of an upstream image, the AMI a parameter now points at.
async fn resolve(
    deps: &Deps,
    trigger: &mut BakeTrigger,
    policies: &[Policy],
    report: &mut Report,
) -> Result<Seen, TriggerError> {
    let mut seen = Seen::default();
    match trigger.origin.clone() {
        Origin::AmiStateChange { region, .. } => {
            let owners: Vec<String> = policies
                .iter()
                .flat_map(|p| p.sources.amis.iter().map(|a| a.owner.to_string()))
                .collect();
            if let (false, Some(ami)) = (owners.is_empty(), trigger.source_amis.first()) {
                let found = deps
                    .lookups
                    .describe(region.as_str(), ami.image_id.as_str(), &owners)
                    .await?;
                // The owner EC2 reports, never the one the event claims.
                seen.ami = found
                    .filter(|c| owners.iter().any(|o| o == c.owner.as_str()))
                    .map(|c| (c.owner, c.name));
            }
        }
        Origin::UpstreamImage { image_arn, .. }
            if policies.iter().any(|p| !p.sources.upstream_pipelines.is_empty()) =>
        {
            if let Some((pipeline, amis)) = deps.lookups.upstream_image(&image_arn).await? {
                seen.upstream_pipeline = Some(pipeline);
                trigger.source_amis = amis;
            }
        }
        Origin::ParameterChange { name, region, .. }
            if policies.iter().any(|p| p.sources.ssm_parameters.contains(&name)) =>
        {
            match deps.lookups.parameter_ami(region.as_str(), &name).await? {
                Ok(ami) => trigger.source_amis = vec![ami],
                Err(reason) => report.skipped.push(fanout::Skipped {
                    pipeline_arn: String::new(),
                    reason,
                }),
            }
        }
        _ => {}
    }
    Ok(seen)
}

/// A scheduled firing: the base it would build on (the newest trusted AMI of the policy's
/// families, else its parameter's AMI, else the recipe's parent) against the base of the last
/// published bake. `Ok(Err(reason))` when nothing needs baking.
async fn schedule_source(
    deps: &Deps,
    policy: &Policy,
    p: &mut Planned,
    rebuild: bakery_core::policy::Rebuild,
    trigger: &BakeTrigger,
) -> Result<Result<String, String>, TriggerError> {
    let region = fanout::home_region(&p.pipeline_arn).unwrap_or_default().to_owned();
    p.source = deps.lookups.current_base(policy, &region).await?;
    let last = deps.lookups.last_base(&p.pipeline_arn).await?;
    // The recipe's parent stands for the base when the policy names no family (or the family
    // has no image now), and for the last base before the first published bake.
    let recipe_parent = if p.source.is_none() || last.is_none() {
        deps.lookups.recipe_parent(&p.pipeline_arn).await?
    } else {
        None
    };
    let base = p
        .source
        .as_ref()
        .map(|s| s.image_id.to_string())
        .or(recipe_parent.clone());
    let published = last.is_some();
    let last_base = last.or(recipe_parent);
    if let Err(reason) = fanout::schedule_decision(rebuild, base.as_deref(), last_base.as_deref()) {
        // Before the first published bake the recipe's parent stands for the last base, but a
        // bake that failed has moved it to its own source already: a bake of this base that
        // exists is for the start to judge (running, succeeded, or failed and due again).
        let tried = match (published, &base) {
            (false, Some(b)) => {
                execution_exists(
                    deps,
                    &bake::bake_id(bakery_core::ids::pipeline_name(&p.pipeline_arn), b),
                )
                .await?
            }
            _ => false,
        };
        if !tried {
            return Ok(Err(reason));
        }
    }
    let when = match &trigger.origin {
        Origin::Schedule {
            scheduled_time: Some(t),
            ..
        } => t.to_rfc3339(),
        _ => trigger.event_id.clone(),
    };
    Ok(Ok(match (rebuild, base) {
        // A new base: keyed by the AMI, so a release of the same AMI is the same bake.
        (bakery_core::policy::Rebuild::IfBaseChanged, Some(base)) => base,
        _ => format!("schedule:{when}"),
    }))
}

/// Whether the bake state machine has (or had, within Step Functions' 90 days) an execution named `name`.
async fn execution_exists(deps: &Deps, name: &str) -> Result<bool, TriggerError> {
    let arn = format!(
        "{}:{name}",
        deps.state_machine_arn.replacen(":stateMachine:", ":execution:", 1)
    );
    let out = bakery_aws::send_with(
        bakery_aws::Backoff::jittered(deps.start_attempts),
        "DescribeExecution",
        || deps.sfn.describe_execution().execution_arn(&arn).send(),
    )
    .await;
    match out {
        Ok(_) => Ok(true),
        Err(BakeError::Aws { code, .. }) if code == "ExecutionDoesNotExist" => Ok(false),
        Err(BakeError::NotFound(_)) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// The trust rules for one source: owner-filtered lookup, owner and state checked, Allowed AMIs.
async fn trust(
    deps: &Deps,
    policy: &Policy,
    p: &Planned,
    source: &bakery_core::SourceAmi,
) -> Result<Result<(), Refused>, TriggerError> {
    let refuse = |error_type: &'static str, reason: String| {
        Err(Refused {
            pipeline_arn: p.pipeline_arn.clone(),
            image_id: source.image_id.to_string(),
            error_type,
            reason,
        })
    };
    if let Some(why) = deps.lookups.revoked(source.image_id.as_str()).await? {
        return Ok(refuse(
            "SourceRevoked",
            format!("source AMI {} was {why}", source.image_id),
        ));
    }
    let owners: Vec<String> = policy.trusted_owners.iter().map(|o| o.to_string()).collect();
    let Some(found) = deps
        .lookups
        .describe(source.region.as_str(), source.image_id.as_str(), &owners)
        .await?
    else {
        return Ok(refuse(
            "SourceNotTrusted",
            format!(
                "{} in {} is not an image of a trusted owner ({})",
                source.image_id,
                source.region,
                owners.join(", ")
            ),
        ));
    };
    let observed = ObservedAmi {
        image_id: found.image_id.clone(),
        owner: found.owner.clone(),
        state: found.state.clone(),
        deprecation_time: found.deprecation_time,
        claimed_owner: source.owner.clone(),
    };
    if let Err(e) = policy.check_source(&observed, chrono::Utc::now()) {
        return Ok(refuse(e.error_type(), e.to_string()));
    }
    if let Err(reason) = deps.lookups.allowed(source.region.as_str(), &found).await? {
        return Ok(refuse("ImageNotAllowed", reason));
    }
    Ok(Ok(()))
}

/// What became of one bake's start.
enum Start {
    /// Its execution runs (or ran to success) under this name.
    Running {
        request: BakeRequest,
        execution_arn: String,
        already_started: bool,
    },
    /// Its last attempt failed and no new one starts now: why.
    Held(String),
}

/// Starts every bake, `deps.concurrency` at a time. Throttling backs off with full jitter;
/// a taken name is the same bake unless that execution failed (then the next attempt, within
/// the policy's rebake limit). Returns what started, what was held back, and what could not.
async fn start_all(
    deps: &Deps,
    requests: Vec<(BakeRequest, Rebake)>,
) -> (Vec<Started>, Vec<fanout::Skipped>, Vec<(String, String)>) {
    let gate = Arc::new(tokio::sync::Semaphore::new(deps.concurrency.max(1)));
    let mut set = tokio::task::JoinSet::new();
    for (req, rebake) in requests {
        let gate = gate.clone();
        let sfn = deps.sfn.clone();
        let machine = deps.state_machine_arn.clone();
        let attempts = deps.start_attempts;
        set.spawn(async move {
            let _permit = gate.acquire_owned().await;
            let pipeline = req.pipeline_arn.clone();
            (pipeline, start_one(&sfn, &machine, req, &rebake, attempts).await)
        });
    }
    let (mut started, mut held, mut failed) = (Vec::new(), Vec::new(), Vec::new());
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok((
                _,
                Ok(Start::Running {
                    request,
                    execution_arn,
                    already_started,
                }),
            )) => started.push(Started {
                pipeline_arn: request.pipeline_arn,
                bake_id: request.bake_id,
                execution_arn,
                source_ami: request.source_ami.map(|s| s.image_id.to_string()),
                already_started,
                attempt: request.attempt,
            }),
            Ok((pipeline_arn, Ok(Start::Held(reason)))) => held.push(fanout::Skipped { pipeline_arn, reason }),
            Ok((pipeline, Err(e))) => {
                tracing::error!(%pipeline, error = %e, "bake not started");
                failed.push((pipeline, e.to_string()));
            }
            Err(e) => failed.push(("?".into(), format!("start task ended abnormally: {e}"))),
        }
    }
    started.sort_by(|a, b| a.pipeline_arn.cmp(&b.pipeline_arn));
    (started, held, failed)
}

/// Starts one bake: its first attempt's name, then, while the name is taken by a failed
/// execution, the next attempt's.
async fn start_one(
    sfn: &aws_sdk_sfn::Client,
    machine: &str,
    mut req: BakeRequest,
    rebake: &Rebake,
    attempts: u32,
) -> Result<Start, BakeError> {
    let root = req.bake_id.clone();
    loop {
        let input = serde_json::to_string(&req).map_err(|e| BakeError::InvalidInput(e.to_string()))?;
        let out = bakery_aws::send_with(bakery_aws::Backoff::jittered(attempts), "StartExecution", || {
            sfn.start_execution()
                .state_machine_arn(machine)
                .name(&req.bake_id)
                .input(&input)
                .send()
        })
        .await;
        let execution_arn = match out {
            Ok(o) => {
                tracing::info!(pipeline = %req.pipeline_arn, bake_id = %req.bake_id, attempt = req.attempt, execution = %o.execution_arn, "bake started");
                bakery_aws::metrics::count(
                    bakery_aws::metrics::BAKES_STARTED,
                    bakery_core::ids::pipeline_name(&req.pipeline_arn),
                );
                return Ok(Start::Running {
                    request: req,
                    execution_arn: o.execution_arn,
                    already_started: false,
                });
            }
            Err(BakeError::Aws { code, .. }) if code == "ExecutionAlreadyExists" => format!(
                "{}:{}",
                machine.replacen(":stateMachine:", ":execution:", 1),
                req.bake_id
            ),
            Err(e) => return Err(e),
        };
        let described = bakery_aws::send_with(bakery_aws::Backoff::jittered(attempts), "DescribeExecution", || {
            sfn.describe_execution().execution_arn(&execution_arn).send()
        })
        .await?;
        let status = described.status().as_str().to_owned();
        if status == "FAILED" {
            if let Some(state) = last_state_entered(sfn, &execution_arn, attempts).await? {
                if bake::published_before_failing(&state) {
                    let reason = format!(
                        "attempt {} ({}) published its AMIs and failed at {state}: redrive that execution \
                         (RedriveExecution) to finish it; a re-bake would publish a second set",
                        req.attempt, req.bake_id
                    );
                    tracing::warn!(pipeline = %req.pipeline_arn, bake_id = %req.bake_id, %execution_arn, %reason, "failed after publishing; waits for a redrive");
                    return Ok(Start::Held(reason));
                }
            }
        }
        let stopped = described
            .stop_date()
            .and_then(|d| chrono::DateTime::from_timestamp(d.secs(), d.subsec_nanos()));
        match bake::after_taken(rebake, req.attempt, &status, stopped, chrono::Utc::now()) {
            Taken::Existing => {
                tracing::info!(bake_id = %req.bake_id, %status, "already started under this name");
                return Ok(Start::Running {
                    request: req,
                    execution_arn,
                    already_started: true,
                });
            }
            Taken::Next(n) => {
                tracing::info!(pipeline = %req.pipeline_arn, bake_id = %req.bake_id, %status, next_attempt = n, "re-baking after a failed attempt");
                req.attempt = n;
                req.bake_id = bake::attempt_id(&root, n);
            }
            Taken::NotBefore(t) => {
                let reason = format!(
                    "attempt {} ({}) ended {status}; the next attempt may start from {}",
                    req.attempt,
                    req.bake_id,
                    t.to_rfc3339()
                );
                tracing::info!(pipeline = %req.pipeline_arn, %reason, "re-bake waits for its backoff");
                return Ok(Start::Held(reason));
            }
            Taken::Exhausted => {
                let reason = format!(
                    "attempt {} of {} ({}) ended {status}; no more attempts on this source (rebake.maxAttempts)",
                    req.attempt, rebake.max_attempts, req.bake_id
                );
                tracing::warn!(pipeline = %req.pipeline_arn, bake_id = %req.bake_id, attempts = req.attempt, %reason, "re-bakes exhausted; nothing started");
                return Ok(Start::Held(reason));
            }
        }
    }
}

/// The last state an execution entered (its newest events first; the last few are enough).
async fn last_state_entered(
    sfn: &aws_sdk_sfn::Client,
    execution_arn: &str,
    attempts: u32,
) -> Result<Option<String>, BakeError> {
    let history = bakery_aws::send_with(bakery_aws::Backoff::jittered(attempts), "GetExecutionHistory", || {
        sfn.get_execution_history()
            .execution_arn(execution_arn)
            .reverse_order(true)
            .max_results(25)
            .include_execution_data(false)
            .send()
    })
    .await?;
    Ok(history
        .events()
        .iter()
        .find_map(|e| e.state_entered_event_details())
        .map(|d| d.name().to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn backoff_grows_and_is_capped() {
        for attempt in 1..20 {
            let cap = 100u64 * (1 << attempt.min(10));
            assert!(bakery_aws::full_jitter(attempt) <= Duration::from_millis(cap.min(5_000)));
        }
    }

    #[test]
    fn starts_incomplete_is_a_typed_error() {
        let d = Diagnostic::from(TriggerError::StartsIncomplete {
            failed: 1,
            total: 3,
            detail: "web: throttled".into(),
        });
        assert_eq!(d.error_type, "StartsIncomplete");
        assert!(d.error_message.contains("1 of 3"));
    }
}
