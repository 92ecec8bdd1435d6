//! The fault matrix: one test per fault, each checking the world afterwards. Every execution
//! ends in exactly one notification, whatever fails.

use gateway::world::{self, World};
use gateway::LocalAws;
use std::time::{Duration, Instant};
use tests::local_aws_with;

const LIMIT: Duration = Duration::from_secs(120);

async fn aws() -> LocalAws {
    local_aws_with(&[
        ("BuildWaitSeconds", "30"),
        ("BusyRetrySeconds", "1"),
        ("CopyPollSeconds", "1"),
    ])
    .await
}

async fn seeded(aws: &LocalAws) -> (World, String) {
    let world = world::seed(aws, "web").await.unwrap();
    let release = world::register_ami(aws, "soe-al2023-2026.11.2-web").await.unwrap();
    (world, release)
}

fn bake_id(world: &World, release: &str) -> String {
    format!("{}-{}", world.pipeline_name, release.trim_start_matches("ami-"))
}

/// Every message the subscriber got, waiting `settle` for late ones.
async fn all_notifications(aws: &LocalAws, world: &World, settle: Duration) -> Vec<serde_json::Value> {
    world::notifications(aws, &world.subscriber_queue_url, usize::MAX, settle)
        .await
        .unwrap()
}

async fn start(aws: &LocalAws, world: &World, release: &str) -> String {
    world::start(aws, world, release, &bake_id(world, release))
        .await
        .unwrap()
}

/// Starts the bake of `release`, waits until it has succeeded, and returns its execution ARN.
async fn bake_succeeds(aws: &LocalAws, world: &World, release: &str) -> String {
    let started = Instant::now();
    let execution_arn = start(aws, world, release).await;
    let report = world::wait(aws, &execution_arn, release, started, LIMIT).await.unwrap();
    assert_eq!(report.status, "SUCCEEDED", "{report:#?}");
    execution_arn
}

/// Whether the execution has entered `state`.
async fn entered(aws: &LocalAws, execution_arn: &str, state: &str) -> bool {
    states_entered(aws, execution_arn).await.iter().any(|s| s == state)
}

/// SNS throttles the publication: Announce is retried, and the subscriber gets one message.
#[tokio::test]
async fn a_throttled_publication_is_retried_and_arrives_once() {
    let aws = aws().await;
    let (world, release) = seeded(&aws).await;
    aws.admin().throttle("sns", "Publish", 3).await.unwrap();
    let report = world::bake(&aws, &world, &release, &bake_id(&world, &release), LIMIT)
        .await
        .unwrap();
    assert_eq!(report.status, "SUCCEEDED", "{report:#?}");
    let got = all_notifications(&aws, &world, Duration::from_secs(3)).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["attributes"]["status"], "PUBLISHED");
    // The fault happened: SNS refused three publishes before it took one.
    let knobs = aws.admin().throttles().await.unwrap();
    let publish = knobs.iter().find(|k| k["operation"] == "Publish");
    assert!(publish.is_none_or(|k| k["remaining"] == 0), "{knobs:?}");
}

/// The ledger cannot be written once the AMIs are out: the publication still goes out, once,
/// and the execution fails at RecordLineage (for the alarm), never with a second message.
#[tokio::test]
async fn a_ledger_that_cannot_be_written_still_leaves_exactly_one_publication() {
    let aws = aws().await;
    let (world, release) = seeded(&aws).await;
    // Copies take a while, so the ledger can be broken after the build's own ledger writes.
    aws.admin().copies(1500, None).await.unwrap();
    let started = Instant::now();
    let execution_arn = start(&aws, &world, &release).await;
    tests::eventually("the bake publishing", LIMIT, || async {
        entered(&aws, &execution_arn, "Publish").await.then_some(())
    })
    .await;
    aws.admin()
        .fail_calls("dynamodb", "PutItem", 50, "ValidationException")
        .await
        .unwrap();
    let report = world::wait(&aws, &execution_arn, &release, started, LIMIT)
        .await
        .unwrap();
    assert_eq!(report.status, "FAILED", "{report:#?}");
    assert_eq!(
        states_entered(&aws, &execution_arn).await.last().map(String::as_str),
        Some("RecordLineage"),
        "failed where the ledger is written"
    );
    let got = all_notifications(&aws, &world, Duration::from_secs(3)).await;
    assert_eq!(got.len(), 1, "exactly one message: {got:?}");
    assert_eq!(got[0]["attributes"]["status"], "PUBLISHED", "{got:?}");
    assert_eq!(
        got[0]["message"]["amis"].as_array().map(Vec::len),
        Some(world::REGIONS.len())
    );
    // The ledger is back: a redrive writes its rows and sends nothing.
    assert_eq!(
        ledger_row(&aws, &format!("bake#{}", bake_id(&world, &release))).await,
        None
    );
    aws.admin()
        .fail_calls("dynamodb", "PutItem", 0, "ValidationException")
        .await
        .unwrap();
    let report = redrive(&aws, &execution_arn, &release).await;
    assert_eq!(report.status, "SUCCEEDED", "{report:#?}");
    assert_eq!(
        states_since_redrive(&aws, &execution_arn).await,
        ["RecordLineage", "ApplyRetention"]
    );
    let row = ledger_row(&aws, &format!("bake#{}", bake_id(&world, &release))).await;
    assert!(row.is_some_and(|r| r.contains_key("amis")), "the bake's ledger row");
    let again = all_notifications(&aws, &world, Duration::from_secs(3)).await;
    assert!(again.is_empty(), "no second message: {again:?}");
}

/// SNS refuses every publish (say the topic's key policy lost the announce role): once the AMIs
/// are out nothing catches that, so the execution ends FAILED at Announce, redrivable, with no
/// message. Another request for the same source does not bake it again (that would publish a
/// second set of AMIs), even with no re-bake backoff; it says to redrive. When SNS takes it
/// again, a redrive resumes at Announce, in the same execution: no second build, copy, share or
/// parameter version, and one PUBLISHED message.
#[tokio::test]
async fn a_publication_refused_for_good_fails_at_announce_and_a_redrive_sends_it_once() {
    let aws = aws().await;
    let (mut world, release) = seeded(&aws).await;
    world.policy["rebake"] = serde_json::json!({"maxAttempts": 3, "backoffSeconds": 0});
    world::put_policy(&aws, &world.pipeline_name, &world.policy)
        .await
        .unwrap();
    aws.admin()
        .fail_calls("sns", "Publish", 1000, "AuthorizationError")
        .await
        .unwrap();
    let started = Instant::now();
    let requested = request_bake(&aws, &world, &release).await;
    let execution_arn = requested["started"][0]["executionArn"]
        .as_str()
        .unwrap_or_else(|| panic!("a bake started: {requested}"))
        .to_owned();
    let report = world::wait(&aws, &execution_arn, &release, started, LIMIT)
        .await
        .unwrap();
    assert_eq!(report.status, "FAILED", "{report:#?}");
    let sfn = aws_sdk_sfn::Client::new(&aws.sdk_config(&aws.region).await);
    let failed = sfn
        .describe_execution()
        .execution_arn(&execution_arn)
        .send()
        .await
        .unwrap();
    assert_eq!(failed.error(), Some("AccessDenied"), "{failed:?}");
    assert_eq!(
        failed.redrive_status(),
        Some(&aws_sdk_sfn::types::ExecutionRedriveStatus::Redrivable),
        "{failed:?}"
    );
    assert!(all_notifications(&aws, &world, Duration::from_secs(2)).await.is_empty());
    let id = requested["started"][0]["bakeId"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    for region in world::REGIONS {
        assert_eq!(bake_amis(&aws, region, &id).await.len(), 1, "{region}: published");
    }

    let again = request_bake(&aws, &world, &release).await;
    assert_eq!(again["started"], serde_json::json!([]), "{again}");
    let reason = again["skipped"][0]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("failed at Announce") && reason.contains("redrive"),
        "{again}"
    );
    assert_eq!(world::executions(&aws).await.unwrap().len(), 1, "no second bake");

    aws.admin()
        .fail_calls("sns", "Publish", 0, "AuthorizationError")
        .await
        .unwrap();
    let report = redrive(&aws, &execution_arn, &release).await;
    assert_eq!(report.status, "SUCCEEDED", "{report:#?}");
    assert_eq!(
        states_since_redrive(&aws, &execution_arn).await,
        ["Announce", "RecordLineage", "ApplyRetention"],
        "resumed where it stopped"
    );
    let done = sfn
        .describe_execution()
        .execution_arn(&execution_arn)
        .send()
        .await
        .unwrap();
    assert_eq!(done.redrive_count(), Some(1), "{done:?}");
    assert_published_once(&aws, &world, &id).await;
    // A succeeded execution is not redriven again.
    let refused = sfn.redrive_execution().execution_arn(&execution_arn).send().await;
    let refused = refused.map_err(|e| e.into_service_error()).unwrap_err();
    assert!(refused.is_execution_not_redrivable(), "{refused:?}");
}

/// An operator's "Bake Requested" for `release`, handed to the trigger as EventBridge would;
/// returns the trigger's answer.
async fn request_bake(aws: &LocalAws, world: &World, release: &str) -> serde_json::Value {
    let event = serde_json::json!({
        "version": "0",
        "id": uuid_like(),
        "detail-type": "Bake Requested",
        "source": "bakery",
        "account": aws.account,
        "time": "2026-12-03T10:00:00Z",
        "region": aws.region,
        "resources": [],
        "detail": {
            "pipelineArn": world.pipeline_arn,
            "sourceAmi": {"imageId": release, "region": aws.region},
            "requestedBy": "operator@example.com",
            "reason": "fault test"
        }
    });
    let lambda = aws_sdk_lambda::Client::new(&aws.sdk_config(&aws.region).await);
    let out = lambda
        .invoke()
        .function_name(function(aws, "TriggerFunction"))
        .payload(aws_sdk_lambda::primitives::Blob::new(event.to_string()))
        .send()
        .await
        .unwrap();
    let body: serde_json::Value =
        serde_json::from_slice(out.payload.map(|p| p.into_inner()).unwrap_or_default().as_slice()).unwrap();
    assert_eq!(out.function_error, None, "the trigger failed: {body}");
    body
}

/// A fresh EventBridge event id.
fn uuid_like() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("fault-{nanos:x}")
}

/// Redrives the execution and waits until it ends.
async fn redrive(aws: &LocalAws, execution_arn: &str, release: &str) -> world::BakeReport {
    let sfn = aws_sdk_sfn::Client::new(&aws.sdk_config(&aws.region).await);
    let started = Instant::now();
    sfn.redrive_execution()
        .execution_arn(execution_arn)
        .send()
        .await
        .unwrap();
    world::wait(aws, execution_arn, release, started, LIMIT).await.unwrap()
}

/// Every state the execution entered, in order.
async fn states_entered(aws: &LocalAws, execution_arn: &str) -> Vec<String> {
    states_entered_since(aws, execution_arn, None).await
}

/// The states the execution entered after its (last) ExecutionRedriven event.
async fn states_since_redrive(aws: &LocalAws, execution_arn: &str) -> Vec<String> {
    states_entered_since(
        aws,
        execution_arn,
        Some(aws_sdk_sfn::types::HistoryEventType::ExecutionRedriven),
    )
    .await
}

async fn states_entered_since(
    aws: &LocalAws,
    execution_arn: &str,
    since: Option<aws_sdk_sfn::types::HistoryEventType>,
) -> Vec<String> {
    let sfn = aws_sdk_sfn::Client::new(&aws.sdk_config(&aws.region).await);
    let history = sfn
        .get_execution_history()
        .execution_arn(execution_arn)
        .max_results(1000)
        .send()
        .await
        .unwrap();
    let events = history.events();
    let from = since.map_or(0, |kind| {
        events
            .iter()
            .rposition(|e| e.r#type() == &kind)
            .unwrap_or_else(|| panic!("no {kind:?} event"))
    });
    events[from..]
        .iter()
        .filter_map(|e| e.state_entered_event_details())
        .map(|d| d.name().to_owned())
        .collect()
}

/// The ledger's row `pk` (sort key `published` for a bake), if there is one.
async fn ledger_row(
    aws: &LocalAws,
    pk: &str,
) -> Option<std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>> {
    let table = aws.resource("LedgerTable").expect("the ledger table").to_owned();
    let ddb = aws_sdk_dynamodb::Client::new(&aws.sdk_config(&aws.region).await);
    let key = |v: &str| aws_sdk_dynamodb::types::AttributeValue::S(v.to_owned());
    ddb.get_item()
        .table_name(table)
        .key("pk", key(pk))
        .key("sk", key("published"))
        .send()
        .await
        .unwrap()
        .item
}

/// This bake's AMIs in `region` (the copies and the build's, tagged with its bake id).
async fn bake_amis(aws: &LocalAws, region: &str, bake_id: &str) -> Vec<String> {
    let images = world::bake_images(aws, region, bake_id).await.unwrap();
    images.into_iter().map(|(id, _)| id).collect()
}

/// One region's copy fails for good (its key is not in that region): the bake fails naming
/// the region, and what the other regions published is unshared, its parameters removed.
#[tokio::test]
async fn a_region_whose_copy_fails_for_good_fails_the_bake_and_the_others_roll_back() {
    let aws = aws().await;
    let (mut world, release) = seeded(&aws).await;
    let missing = format!("arn:aws:kms:{}:{}:alias/no-such-key", world::REGIONS[2], aws.account);
    world.policy["publish"]["regions"][2]["kmsKeyId"] = serde_json::json!(missing);
    world::put_policy(&aws, &world.pipeline_name, &world.policy)
        .await
        .unwrap();
    let id = bake_id(&world, &release);
    let report = world::bake(&aws, &world, &release, &id, LIMIT).await.unwrap();
    assert_eq!(report.status, "FAILED", "{report:#?}");
    let got = all_notifications(&aws, &world, Duration::from_secs(3)).await;
    assert_eq!(got.len(), 1, "exactly one message: {got:?}");
    let failure = &got[0]["message"]["failure"];
    assert_eq!(failure["step"], "Publish", "{failure}");
    let cause = failure["cause"].as_str().unwrap_or_default();
    assert!(
        cause.contains(world::REGIONS[2]) && cause.contains("Copy image failed"),
        "{cause}"
    );
    assert_eq!(got[0]["message"]["amis"], serde_json::json!([]), "nothing published");
    for region in &world::REGIONS[..2] {
        assert_eq!(
            world::parameter(&aws, region, &format!("/bakery/{}/latest", world.pipeline_name))
                .await
                .unwrap(),
            None,
            "{region}: no parameter left pointing at an unshared AMI"
        );
        let amis = bake_amis(&aws, region, &id).await;
        assert!(!amis.is_empty(), "{region} had published");
        for ami in amis {
            let shares = world::shares(&aws, region, &ami).await.unwrap();
            for who in ["accounts", "organizations", "organizationalUnits"] {
                assert_eq!(shares[who], serde_json::json!([]), "{region} {ami}: {shares}");
            }
        }
    }
}

/// The function name (its Ref) of a template function.
fn function(aws: &LocalAws, logical_id: &str) -> String {
    aws.resource(logical_id)
        .unwrap_or_else(|| panic!("no {logical_id} in the template"))
        .to_owned()
}

/// Every Lambda task failure of the execution: (error, cause, seconds since it started).
async fn lambda_failures(aws: &LocalAws, execution_arn: &str) -> Vec<(String, String, f64)> {
    let sfn = aws_sdk_sfn::Client::new(&aws.sdk_config(&aws.region).await);
    let history = sfn
        .get_execution_history()
        .execution_arn(execution_arn)
        .max_results(1000)
        .send()
        .await
        .unwrap();
    let mut started = None;
    let mut out = Vec::new();
    for e in history.events() {
        if e.r#type() == &aws_sdk_sfn::types::HistoryEventType::LambdaFunctionStarted {
            started = Some(e.timestamp().as_secs_f64());
        }
        if let Some(d) = e.lambda_function_failed_event_details() {
            let since = started.map_or(f64::NAN, |s| e.timestamp().as_secs_f64() - s);
            out.push((
                d.error().unwrap_or_default().to_owned(),
                d.cause().unwrap_or_default().to_owned(),
                since,
            ));
        }
    }
    out
}

/// What exactly one bake of `release` leaves: one build, one AMI per region (tagged with the
/// bake), shared once with the policy's accounts and OU, one version of each region's parameter
/// pointing at it, and one PUBLISHED message naming every region's AMI.
async fn assert_published_once(aws: &LocalAws, world: &World, id: &str) {
    let ib = aws_sdk_imagebuilder::Client::new(&aws.sdk_config(&aws.region).await);
    let builds = ib
        .list_image_pipeline_images()
        .image_pipeline_arn(&world.pipeline_arn)
        .send()
        .await
        .unwrap();
    assert_eq!(builds.image_summary_list().len(), 1, "one build: {builds:?}");
    let parameter = format!("/bakery/{}/latest", world.pipeline_name);
    let mut amis = Vec::new();
    for region in world::REGIONS {
        let found = bake_amis(aws, region, id).await;
        assert_eq!(found.len(), 1, "{region}: one AMI: {found:?}");
        let shares = world::shares(aws, region, &found[0]).await.unwrap();
        let mut accounts: Vec<String> = serde_json::from_value(shares["accounts"].clone()).unwrap();
        accounts.sort();
        assert_eq!(accounts, world::SHARE_ACCOUNTS, "{region}: each account once: {shares}");
        assert_eq!(
            shares["organizationalUnits"],
            serde_json::json!([world::SHARE_OU]),
            "{region}: {shares}"
        );
        let ssm = aws_sdk_ssm::Client::new(&aws.sdk_config(region).await);
        let history = ssm.get_parameter_history().name(&parameter).send().await.unwrap();
        let versions: Vec<&str> = history.parameters().iter().filter_map(|p| p.value()).collect();
        assert_eq!(versions, [found[0].as_str()], "{region}: one parameter version");
        amis.push(found[0].clone());
    }
    let got = all_notifications(aws, world, Duration::from_secs(3)).await;
    assert_eq!(got.len(), 1, "exactly one message: {got:?}");
    assert_eq!(got[0]["attributes"]["status"], "PUBLISHED", "{got:?}");
    let mut announced: Vec<String> = got[0]["message"]["amis"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a["imageId"].as_str().map(str::to_owned))
        .collect();
    announced.sort();
    amis.sort();
    assert_eq!(announced, amis, "{got:?}");
}

/// template.yaml with `function`'s Timeout set to `seconds`, in a directory of its own.
fn template_with_timeout(function: &str, seconds: u64) -> std::path::PathBuf {
    let text = std::fs::read_to_string(tests::repo().join("template.yaml")).unwrap();
    let mut t = gateway::template::Template::parse(&text).unwrap();
    let props = t
        .root
        .pointer_mut(&format!("/Resources/{function}/Properties"))
        .and_then(serde_json::Value::as_object_mut)
        .unwrap_or_else(|| panic!("no {function}"));
    props.insert("Timeout".into(), serde_json::json!(seconds));
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let dir = std::env::temp_dir().join(format!("bakery-faults-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("template.json");
    std::fs::write(&path, t.root.to_string()).unwrap();
    path
}

/// start-build outlives its Timeout (3 s here) while Image Builder's answer to
/// StartImagePipelineExecution is held: Lambda ends it at exactly 3 s, counted from when the
/// runtime took the invocation, as `Sandbox.Timedout`; the task's Retry runs it again, the
/// bake's clientToken gives back the same build, and the bake publishes once.
#[tokio::test]
async fn a_start_build_that_times_out_after_starting_the_build_is_retried_into_the_same_build() {
    let template = template_with_timeout("StartBuildFunction", 3);
    let aws = tests::local_aws_from(
        template,
        &[
            ("BuildWaitSeconds", "30"),
            ("BusyRetrySeconds", "1"),
            ("CopyPollSeconds", "1"),
        ],
    )
    .await;
    let (world, release) = seeded(&aws).await;
    let start_build = function(&aws, "StartBuildFunction");
    aws.admin()
        .hold_answer(&start_build, "imagebuilder", "StartImagePipelineExecution", 6000, 1)
        .await
        .unwrap();
    let id = bake_id(&world, &release);
    let execution_arn = bake_succeeds(&aws, &world, &release).await;
    let failures = lambda_failures(&aws, &execution_arn).await;
    assert_eq!(failures.len(), 1, "{failures:?}");
    let (error, cause, after) = &failures[0];
    assert_eq!(error, "Sandbox.Timedout", "{failures:?}");
    let cause: serde_json::Value = serde_json::from_str(cause).unwrap();
    assert_eq!(cause["errorType"], "Sandbox.Timedout");
    let message = cause["errorMessage"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("RequestId: ") && message.ends_with("Error: Task timed out after 3.00 seconds"),
        "{message}"
    );
    // Counted from /next: the held answer (6 s) never reached the function.
    assert!(
        (3.0..5.0).contains(after),
        "timed out {after:.2} s after the function started"
    );
    assert_published_once(&aws, &world, &id).await;
}

/// start-build dies right after Image Builder accepted StartImagePipelineExecution, before it
/// answers: Lambda reports `Runtime.ExitError`, the task's Retry runs it again, and only the
/// bake's clientToken keeps that from being a second build.
#[tokio::test]
async fn a_start_build_killed_after_starting_the_build_is_retried_into_the_same_build() {
    let aws = aws().await;
    let (world, release) = seeded(&aws).await;
    let start_build = function(&aws, "StartBuildFunction");
    aws.admin()
        .kill_after(&start_build, "imagebuilder", "StartImagePipelineExecution", 1)
        .await
        .unwrap();
    let id = bake_id(&world, &release);
    let execution_arn = bake_succeeds(&aws, &world, &release).await;
    let failures = lambda_failures(&aws, &execution_arn).await;
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0].0, "Runtime.ExitError", "{failures:?}");
    assert!(failures[0].1.contains("signal: killed"), "{failures:?}");
    assert_published_once(&aws, &world, &id).await;
}

/// publish-region dies right after EC2 accepted CopyImage (in both regions that copy) and after
/// one PutParameter, before it answers; its Retry runs it again while DescribeImages does not
/// list the new copies yet (EC2 is eventually consistent), so only the copy's ClientToken stands
/// between the retry and a second AMI; the parameter keeps one version, the AMIs one share each.
#[tokio::test]
async fn a_publish_region_killed_after_its_copy_and_its_parameter_is_retried_without_duplicates() {
    let aws = aws().await;
    let (world, release) = seeded(&aws).await;
    let unlisted = Duration::from_secs(6);
    aws.admin()
        .copies_listed_after(500, None, unlisted.as_millis() as u64)
        .await
        .unwrap();
    let publish = function(&aws, "PublishRegionFunction");
    aws.admin().kill_after(&publish, "ec2", "CopyImage", 2).await.unwrap();
    aws.admin()
        .kill_after(&publish, "ssm", "PutParameter", 1)
        .await
        .unwrap();
    let id = bake_id(&world, &release);
    let execution_arn = bake_succeeds(&aws, &world, &release).await;
    let knobs = aws.admin().call_knobs().await.unwrap();
    assert!(
        knobs.iter().all(|k| k["remaining"] == 0),
        "every kill happened: {knobs:?}"
    );
    let failures = lambda_failures(&aws, &execution_arn).await;
    let crashes = failures.iter().filter(|f| f.0 == "Runtime.ExitError").count();
    assert_eq!(crashes, 3, "{failures:?}");
    // Then the copies show up in listings, as EC2's do.
    tokio::time::sleep(unlisted).await;
    assert_published_once(&aws, &world, &id).await;
}

/// Every operation the bake's functions call is throttled the first two times: the SDK's and the
/// functions' retries carry the bake through, and it publishes once.
#[tokio::test]
async fn a_bake_throttled_on_every_call_publishes_once() {
    let aws = aws().await;
    let (world, release) = seeded(&aws).await;
    aws.admin().throttle_first(2).await.unwrap();
    let id = bake_id(&world, &release);
    let report = world::bake(&aws, &world, &release, &id, LIMIT).await.unwrap();
    assert_eq!(report.status, "SUCCEEDED", "{report:#?}");
    let seen = aws.admin().throttled_first().await.unwrap();
    let throttled: Vec<String> = seen
        .iter()
        .filter(|r| r["throttled"] == 2)
        .map(|r| {
            format!(
                "{}:{}",
                r["service"].as_str().unwrap_or(""),
                r["operation"].as_str().unwrap_or("")
            )
        })
        .collect();
    for op in [
        "ssm:GetParameter",
        "imagebuilder:GetImagePipeline",
        "imagebuilder:CreateImageRecipe",
        "imagebuilder:UpdateImagePipeline",
        "imagebuilder:StartImagePipelineExecution",
        "imagebuilder:GetImage",
        "ec2:CopyImage",
        "ec2:DescribeImages",
        "ec2:CreateTags",
        "ec2:ModifyImageAttribute",
        "ssm:PutParameter",
        "sns:Publish",
    ] {
        assert!(throttled.iter().any(|t| t == op), "{op} was throttled: {seen:?}");
    }
    for r in &seen {
        assert!(
            r["calls"].as_u64() > r["throttled"].as_u64(),
            "each got through in the end: {r}"
        );
    }
    assert_published_once(&aws, &world, &id).await;
}
