//! Bakes on the local AWS, read back from GetExecutionHistory: state transitions and Lambda
//! invocations per bake against build time (3), the fan-out of one release (4), and the time
//! Bakery adds around the build (5).

use aws_sdk_lambda::primitives::Blob;
use aws_sdk_sfn::types::HistoryEvent;
use gateway::world::{self, World};
use gateway::{LocalAws, Options, PhaseDurations};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub type Error = Box<dyn std::error::Error + Send + Sync>;

fn phases(each: Duration) -> PhaseDurations {
    PhaseDurations {
        pending: each,
        building: each,
        testing: each,
        distributing: each,
    }
}

/// A local AWS deployed from the repository's template with these parameters, running the
/// release build of the functions.
pub async fn local_aws(
    repo: &Path,
    binaries: &Path,
    parameters: &[(&str, &str)],
    each_phase: Duration,
) -> Result<LocalAws, Error> {
    let mut opts = Options::for_repo(repo);
    opts.binaries = binaries.to_path_buf();
    for (k, v) in parameters {
        opts.parameters.insert((*k).to_owned(), (*v).to_owned());
    }
    opts.phases = phases(each_phase);
    Ok(LocalAws::start(opts).await?)
}

pub fn soe_topic(aws_account: &str) -> String {
    format!("arn:aws:sns:us-east-1:{aws_account}:{}", world::SOE_TOPIC)
}

/// Every event of an execution's history, oldest first.
pub async fn history(aws: &LocalAws, execution_arn: &str) -> Result<Vec<HistoryEvent>, Error> {
    let sfn = aws_sdk_sfn::Client::new(&aws.sdk_config(&aws.region).await);
    let mut out = Vec::new();
    let mut token = None;
    loop {
        let page = sfn
            .get_execution_history()
            .execution_arn(execution_arn)
            .max_results(1000)
            .set_next_token(token)
            .send()
            .await
            .map_err(|e| format!("GetExecutionHistory: {}", e.into_service_error()))?;
        out.extend(page.events);
        token = page.next_token;
        if token.is_none() {
            return Ok(out);
        }
    }
}

/// What one execution cost, counted from its history.
#[derive(Debug, Clone, Default)]
pub struct Cost {
    /// States entered (`*StateEntered`): what Standard workflows bill as state transitions.
    pub transitions: usize,
    /// Lambda tasks the state machine scheduled.
    pub lambda_tasks: usize,
    /// Other service integrations (sns:publish, aws-sdk:*).
    pub other_tasks: usize,
    pub events: usize,
    /// Lambda invocations outside the execution during the bake (EventBridge, SNS), by function.
    pub async_invocations: BTreeMap<String, usize>,
}

impl Cost {
    pub fn lambda_total(&self) -> usize {
        self.lambda_tasks + self.async_invocations.values().sum::<usize>()
    }
}

pub fn cost(events: &[HistoryEvent]) -> Cost {
    let mut c = Cost {
        events: events.len(),
        ..Cost::default()
    };
    for e in events {
        let t = e.r#type.as_str();
        if t.ends_with("StateEntered") {
            c.transitions += 1;
        }
        if t == "LambdaFunctionScheduled" {
            c.lambda_tasks += 1;
        }
        if t == "TaskScheduled" {
            match e
                .task_scheduled_event_details
                .as_ref()
                .map(|d| d.resource_type.as_str())
            {
                Some("lambda") => c.lambda_tasks += 1,
                _ => c.other_tasks += 1,
            }
        }
    }
    c
}

/// The asynchronous invocations recorded by the gateway so far.
async fn invocations(aws: &LocalAws) -> Result<Vec<Value>, Error> {
    Ok(aws.admin().invocations().await?)
}

fn by_function(list: &[Value]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for i in list {
        let f = i["function"].as_str().unwrap_or("?");
        // The stack's physical names are `<stack>-<LogicalId>`: keep the logical id.
        let f = f.rsplit('-').next().unwrap_or(f).to_owned();
        *out.entry(f).or_default() += 1;
    }
    out
}

/// One bake of a `units`-long build (each unit `unit`) on `aws`.
#[derive(Debug, Clone)]
pub struct Growth {
    pub units: u32,
    pub status: String,
    pub cost: Cost,
    pub wall: Duration,
}

/// Bakes `world`'s pipeline once per entry of `units`, each with a build that takes that many
/// units, and counts each execution.
pub async fn growth(
    aws: &LocalAws,
    world: &World,
    unit: Duration,
    units: &[u32],
    tag: &str,
) -> Result<Vec<Growth>, Error> {
    let mut out = Vec::new();
    for &k in units {
        aws.admin().set_phase_durations(unit * k / 4).await?;
        let release = world::register_ami(aws, &format!("soe-al2023-2026.12.{k}-{tag}")).await?;
        let before = invocations(aws).await?.len();
        let bake_id = format!("{}-{}", world.pipeline_name, release.trim_start_matches("ami-"));
        let limit = unit * k + Duration::from_secs(180);
        let started = Instant::now();
        let report = world::bake(aws, world, &release, &bake_id, limit).await?;
        let wall = started.elapsed();
        // Let the events the bake itself caused (its own publication) reach their functions.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let after = invocations(aws).await?;
        let mut cost = cost(&history(aws, &report.execution_arn).await?);
        cost.async_invocations = by_function(&after[before.min(after.len())..]);
        out.push(Growth {
            units: k,
            status: report.status,
            cost,
            wall,
        });
    }
    Ok(out)
}

/// The time of one history event, in seconds since the epoch.
fn at(e: &HistoryEvent) -> f64 {
    e.timestamp.as_secs_f64()
}

/// The last time the state `name` was left.
fn exited(events: &[HistoryEvent], name: &str) -> Option<f64> {
    events
        .iter()
        .filter(|e| e.state_exited_event_details.as_ref().is_some_and(|d| d.name == name))
        .map(at)
        .next_back()
}

/// One bake triggered by an SOE release on SNS, timed from the history.
#[derive(Debug, Clone)]
pub struct Overhead {
    pub status: String,
    /// Seconds from publishing the release to the execution's start (SNS → trigger → StartExecution).
    pub to_execution: f64,
    /// Seconds from publishing the release to StartBuild's end (the build has started).
    pub to_build_start: f64,
    /// Seconds from the build's end (its start plus the emulator's phases) to WaitForBuild's end.
    pub build_end_to_resumed: f64,
    /// ... to the Gate's end.
    pub build_end_to_gated: f64,
    /// ... to Publish's end (every region copied, shared, tagged, parameter written).
    pub build_end_to_published: f64,
    /// ... to Announce's end: the last publication (the SNS message with every AMI ID).
    pub build_end_to_announced: f64,
}

fn epoch_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

/// `n` bakes of `world`'s pipeline, each triggered by a release published on the SOE topic,
/// one after the other, with builds of `build` (four phases).
pub async fn overhead(aws: &LocalAws, topic: &str, build: Duration, n: usize) -> Result<Vec<Overhead>, Error> {
    aws.admin().set_phase_durations(build / 4).await?;
    let mut out = Vec::new();
    for i in 0..n {
        let version = format!("2026.12.{}", 100 + i);
        let release = world::register_ami(aws, &format!("soe-al2023-{version}-overhead")).await?;
        let t0 = epoch_now();
        world::publish_release(aws, topic, &version, &[(aws.region.as_str(), release.as_str())]).await?;
        let started = Instant::now();
        let execution = loop {
            let all = world::executions(aws).await?;
            if let Some(e) = all
                .into_iter()
                .find(|e| e.input["sourceAmi"]["imageId"] == release.as_str())
            {
                break e;
            }
            if started.elapsed() > Duration::from_secs(60) {
                return Err(format!("no execution for release {release} after 60 s").into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let report = world::wait(
            aws,
            &execution.execution_arn,
            &release,
            started,
            Duration::from_secs(240),
        )
        .await?;
        let events = history(aws, &execution.execution_arn).await?;
        let start = events.first().map(at).unwrap_or(f64::NAN);
        let built = exited(&events, "StartBuild").unwrap_or(f64::NAN);
        let build_end = built + build.as_secs_f64();
        let since_end = |state: &str| exited(&events, state).map(|t| t - build_end).unwrap_or(f64::NAN);
        out.push(Overhead {
            status: report.status,
            to_execution: start - t0,
            to_build_start: built - t0,
            build_end_to_resumed: since_end("WaitForBuild"),
            build_end_to_gated: since_end("Gate"),
            build_end_to_published: since_end("Publish"),
            build_end_to_announced: since_end("Announce"),
        });
    }
    Ok(out)
}

/// What the fan-out of one release to `pipelines` pipelines did.
#[derive(Debug, Clone)]
pub struct FanOut {
    pub pipelines: usize,
    pub throttles_injected: u32,
    pub throttles_met: u64,
    pub took: Duration,
    pub started: usize,
    pub refused: usize,
    pub executions: usize,
    pub distinct_pipelines: usize,
    pub start_calls: usize,
    pub trigger_error: Option<String>,
}

const MESSAGE_ID: &str = "b6c9e2a0-1d3f-5a7b-9c8d-0e1f2a3b4c5d";

/// Lambda's SNS event for one message on `topic`, as the subscription delivers it.
fn sns_event(topic: &str, message: &Value) -> Value {
    json!({"Records": [{
        "EventSource": "aws:sns", "EventVersion": "1.0",
        "EventSubscriptionArn": format!("{topic}:0c1f7c5e-5a0e-4a47-9d1a-8e8d2c3b4a5f"),
        "Sns": {
            "Type": "Notification", "MessageId": MESSAGE_ID, "TopicArn": topic, "Subject": null,
            "Message": message.to_string(),
            "Timestamp": "2026-12-03T09:30:00.000Z", "SignatureVersion": "1", "Signature": "EXAMPLE",
            "SigningCertUrl": "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-example.pem",
            "UnsubscribeUrl": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe", "MessageAttributes": {}
        }
    }]})
}

/// One release followed by `pipelines` pipelines, `throttles` StartExecution calls throttled:
/// the trigger invoked as the SOE topic's subscription invokes it, seeded as
/// tests/tests/scenarios/triggers.rs seeds its fan-out.
pub async fn fan_out(aws: &LocalAws, pipelines: usize, throttles: u32) -> Result<FanOut, Error> {
    let release = world::register_ami(aws, "soe-al2023-2026.12.500").await?;
    let topic = world::publication_topic(aws)?;
    for i in 0..pipelines {
        let name = format!("app-{i:03}");
        let arn = format!("arn:aws:imagebuilder:us-east-1:{}:image-pipeline/{name}", aws.account);
        let policy = world::policy(aws, &arn, &name, &topic);
        world::put_policy(aws, &name, &policy).await?;
    }
    let admin = aws.admin();
    admin.throttle("states", "StartExecution", throttles).await?;
    let before_calls = start_calls(aws).await?;

    let message = json!({"release": "2026.12.500", "accountId": aws.account, "amis": {"us-east-1": release}});
    let event = sns_event(&world::soe_topic_arn(aws), &message);
    let lambda = aws_sdk_lambda::Client::new(&aws.sdk_config(&aws.region).await);
    let function = aws.resource("TriggerFunction").ok_or("no TriggerFunction")?.to_owned();
    let before_invocations = invocations(aws).await?.len();
    // Asynchronously, as the SNS subscription invokes it: a failed invocation is retried by
    // Lambda (the gateway: twice), then goes to the dead-letter queue.
    let started_at = Instant::now();
    lambda
        .invoke()
        .function_name(function)
        .invocation_type(aws_sdk_lambda::types::InvocationType::Event)
        .payload(Blob::new(event.to_string()))
        .send()
        .await
        .map_err(|e| format!("Invoke: {}", e.into_service_error()))?;
    // This release's invocations of the trigger (not those of the AMI's own state-change events).
    let ours = |i: &Value| {
        i["function"].as_str().is_some_and(|f| f.ends_with("TriggerFunction"))
            && i["request"]["Records"][0]["Sns"]["MessageId"] == MESSAGE_ID
    };
    // Until every pipeline has its execution, or the trigger's invocations are all done.
    let limit = Duration::from_secs(900);
    let (all, took) = loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let settled = invocations(aws).await?[before_invocations..]
            .iter()
            .filter(|i| ours(i))
            .any(|i| i["status"] != "error" && i["status"] != "failed" || i["attempt"] == 2);
        let all = world::executions(aws).await?;
        let distinct = all
            .iter()
            .filter_map(|e| e.input["pipelineArn"].as_str())
            .collect::<std::collections::BTreeSet<_>>()
            .len();
        if distinct >= pipelines || settled || started_at.elapsed() > limit {
            // The time of the last start, from the executions themselves.
            let last = all.iter().map(|e| e.start_ms).max().unwrap_or_default();
            break (all, last);
        }
    };
    let first_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
        - started_at.elapsed().as_millis() as i64;
    let took = Duration::from_millis(took.saturating_sub(first_ms).max(0) as u64);
    let trigger_runs: Vec<Value> = invocations(aws).await?[before_invocations..]
        .iter()
        .filter(|i| ours(i))
        .cloned()
        .collect();
    let calls = start_calls(aws).await? - before_calls;
    let met = admin
        .throttles()
        .await?
        .iter()
        .find(|t| t["operation"] == "StartExecution")
        .and_then(|t| t["remaining"].as_u64())
        .map(|remaining| u64::from(throttles) - remaining)
        .unwrap_or(0);
    let mut names: Vec<String> = all
        .iter()
        .filter_map(|e| e.input["pipelineArn"].as_str())
        .map(str::to_owned)
        .collect();
    names.sort();
    names.dedup();
    let attempts: Vec<String> = trigger_runs
        .iter()
        .map(|i| {
            let r = &i["response"];
            let what = r["errorType"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| format!("{} started", r["started"].as_array().map(Vec::len).unwrap_or(0)));
            format!(
                "attempt {}: {} ({what})",
                i["attempt"],
                i["status"].as_str().unwrap_or("?")
            )
        })
        .collect();
    Ok(FanOut {
        pipelines,
        throttles_injected: throttles,
        throttles_met: met,
        took,
        started: names.len(),
        refused: pipelines.saturating_sub(names.len()),
        executions: all.len(),
        distinct_pipelines: names.len(),
        start_calls: calls,
        trigger_error: Some(attempts.join("; ")),
    })
}

/// StartExecution calls made so far (each is authorized before any knob answers it).
async fn start_calls(aws: &LocalAws) -> Result<usize, Error> {
    Ok(aws
        .admin()
        .authorizations()
        .await?
        .iter()
        .filter(|d| d["action"] == "states:StartExecution")
        .count())
}
