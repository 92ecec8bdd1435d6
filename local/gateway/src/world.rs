//! A realistic world on the local AWS, for the demo and the scenario tests: an SOE base AMI, a
//! platform team's Image Builder pipeline built on it, its bake policy in Parameter Store, and a
//! subscriber queue on the publication topic. Then: run a bake and read back what it did.

use crate::LocalAws;
use aws_sdk_ec2::types::{ArchitectureValues, BlockDeviceMapping, EbsBlockDevice};
use aws_sdk_imagebuilder::types::{
    AmiDistributionConfiguration, ComponentConfiguration, Distribution, ImageScanningConfiguration,
    ImageTestsConfiguration, Platform, WorkflowConfiguration,
};
use aws_sdk_sfn::types::{ExecutionStatus, HistoryEventType};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// Accounts and the OU the demo policy shares with.
pub const SHARE_ACCOUNTS: [&str; 2] = ["210987654321", "345678901234"];
pub const SHARE_OU: &str = "arn:aws:organizations::111122223333:ou/o-a1b2c3d4e5/ou-ab12-34cd56ef";
/// Where the demo publishes.
pub const REGIONS: [&str; 3] = ["us-east-1", "eu-west-1", "ap-southeast-2"];

pub struct World {
    pub pipeline_arn: String,
    pub pipeline_name: String,
    /// The base AMI the recipe was first built on.
    pub base_ami: String,
    pub subscriber_queue_url: String,
    pub state_machine_arn: String,
    pub policy: Value,
}

fn ok<T, E: std::fmt::Display>(what: &str, r: Result<T, E>) -> Result<T, Error> {
    r.map_err(|e| format!("{what}: {e}").into())
}

/// Registers a base AMI as the SOE team publishes it (moto drops RegisterImage's block
/// device mappings, but builds start from it with RunInstances all the same).
pub async fn register_ami(aws: &LocalAws, name: &str) -> Result<String, Error> {
    register_ami_with(&aws_sdk_ec2::Client::new(&aws.sdk_config(&aws.region).await), name).await
}

pub async fn register_ami_with(ec2: &aws_sdk_ec2::Client, name: &str) -> Result<String, Error> {
    let out = ec2
        .register_image()
        .name(name)
        .architecture(ArchitectureValues::X8664)
        .root_device_name("/dev/xvda")
        .block_device_mappings(
            BlockDeviceMapping::builder()
                .device_name("/dev/xvda")
                .ebs(EbsBlockDevice::builder().volume_size(8).build())
                .build(),
        )
        .send()
        .await;
    Ok(ok("RegisterImage", out.map_err(|e| e.into_service_error()))?
        .image_id
        .unwrap_or_default())
}

/// The demo's policy for `pipeline_arn`: 3 regions (one KMS key), 2 accounts and 1 OU,
/// an SSM parameter, the stack's publication topic, a gate with scan limits.
pub fn policy(aws: &LocalAws, pipeline_arn: &str, name: &str, topic_arn: &str) -> Value {
    policy_following(
        aws,
        pipeline_arn,
        name,
        topic_arn,
        json!({"snsTopics": [soe_topic_arn(aws)]}),
    )
}

/// The SOE team's release topic (in the local account: the demo's SOE team shares it).
pub fn soe_topic_arn(aws: &LocalAws) -> String {
    format!("arn:aws:sns:{}:{}:{SOE_TOPIC}", aws.region, aws.account)
}

/// The alias of the KMS key the demo policy encrypts its copies in `REGIONS[1]` with.
pub const COPY_KEY_ALIAS: &str = "alias/ami-copies";

/// The SOE release topic's name.
pub const SOE_TOPIC: &str = "soe-releases";

/// The demo's policy with other `sources`.
pub fn policy_following(aws: &LocalAws, pipeline_arn: &str, name: &str, topic_arn: &str, sources: Value) -> Value {
    json!({
        "schemaVersion": 1,
        "pipelineArn": pipeline_arn,
        "description": format!("{name}: rebuilt when its base moves"),
        "sources": sources,
        "trustedOwners": [aws.account],
        "gate": {"requireTestsPassed": true, "maxFindings": {"critical": 0, "high": 2}, "onFailure": "deprecate"},
        "publish": {
            "regions": [
                {"region": REGIONS[0]},
                {"region": REGIONS[1], "kmsKeyId": format!("arn:aws:kms:{}:{}:{COPY_KEY_ALIAS}", REGIONS[1], aws.account)},
                {"region": REGIONS[2]}
            ],
            "shareWith": {"accounts": SHARE_ACCOUNTS, "organizationalUnits": [SHARE_OU]},
            "ssmParameters": [format!("/bakery/{name}/latest")],
            "concurrency": 3
        },
        "notify": {"topicArn": topic_arn, "channel": "stable"},
        "retention": {"keep": 3}
    })
}

/// Seeds the world for one pipeline named `name`, built on a fresh base AMI.
pub async fn seed(aws: &LocalAws, name: &str) -> Result<World, Error> {
    let base_ami = register_ami(aws, &format!("soe-al2023-2026.11.1-{name}")).await?;
    seed_on(aws, name, &base_ami, json!({"snsTopics": [soe_topic_arn(aws)]})).await
}

/// Seeds a pipeline named `name` built on `base_ami`, whose policy follows `sources`, with
/// its own subscriber queue on the publication topic.
pub async fn seed_on(aws: &LocalAws, name: &str, base_ami: &str, sources: Value) -> Result<World, Error> {
    let sdk = aws.sdk_config(&aws.region).await;
    let ib = aws_sdk_imagebuilder::Client::new(&sdk);
    let base_ami = base_ami.to_owned();
    let pipeline_arn = create_pipeline(&ib, name, &base_ami, &[&aws.region]).await?;

    // The KMS key the policy encrypts copies with, as the platform team made it in that region.
    crate::iam::lookups::Moto::new(&aws.moto_endpoint)
        .ensure_kms_alias(REGIONS[1], &aws.account, COPY_KEY_ALIAS)
        .await?;
    let topic_arn = publication_topic(aws)?;
    let policy = policy_following(aws, &pipeline_arn, name, &topic_arn, sources);
    put_policy(aws, name, &policy).await?;

    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let queue = ok(
        "CreateQueue",
        sqs.create_queue()
            .queue_name(format!("{name}-subscriber"))
            .send()
            .await
            .map_err(|e| e.into_service_error()),
    )?;
    let queue_url = queue.queue_url.unwrap_or_default();
    let queue_arn = format!("arn:aws:sqs:{}:{}:{name}-subscriber", aws.region, aws.account);
    let sns = aws_sdk_sns::Client::new(&sdk);
    ok(
        "Subscribe",
        sns.subscribe()
            .topic_arn(&topic_arn)
            .protocol("sqs")
            .endpoint(queue_arn)
            .send()
            .await
            .map_err(|e| e.into_service_error()),
    )?;

    let state_machine_arn = template_resource(aws, "BakeStateMachine")?;
    Ok(World {
        pipeline_arn,
        pipeline_name: name.to_owned(),
        base_ami,
        subscriber_queue_url: queue_url,
        state_machine_arn,
        policy,
    })
}

/// A pipeline as a platform team sets it up: a hardening component, infrastructure, a
/// distribution to `regions` (the first is home), a recipe on `parent`, tests and scanning on.
pub async fn create_pipeline(
    ib: &aws_sdk_imagebuilder::Client,
    name: &str,
    parent: &str,
    regions: &[&str],
) -> Result<String, Error> {
    let component = ib
        .create_component()
        .name(format!("{name}-hardening"))
        .semantic_version("1.0.0")
        .platform(Platform::Linux)
        .data("name: hardening\nschemaVersion: 1.0\nphases:\n  - name: build\n    steps:\n      - name: cis\n        action: ExecuteBash\n        inputs:\n          commands: [echo cis-level-1]\n")
        .send()
        .await;
    let component = ok("CreateComponent", component.map_err(|e| e.into_service_error()))?.component_build_version_arn;
    let infra = ib
        .create_infrastructure_configuration()
        .name(format!("{name}-infra"))
        .instance_profile_name("EC2InstanceProfileForImageBuilder")
        .instance_types("t3.medium")
        .send()
        .await;
    let infra = ok(
        "CreateInfrastructureConfiguration",
        infra.map_err(|e| e.into_service_error()),
    )?;
    // The pipeline's region and account, from what Image Builder just made.
    let infra_arn = infra.infrastructure_configuration_arn.clone().unwrap_or_default();
    let (region, account) = {
        let parts: Vec<&str> = infra_arn.split(':').collect();
        (
            parts.get(3).copied().unwrap_or_default().to_owned(),
            parts.get(4).copied().unwrap_or_default().to_owned(),
        )
    };
    let mut dist = ib.create_distribution_configuration().name(format!("{name}-dist"));
    for region in regions {
        let ami = AmiDistributionConfiguration::builder()
            .name(format!("{name}-{{{{imagebuilder:buildDate}}}}"))
            .ami_tags("Team", "platform")
            .build();
        let d = Distribution::builder()
            .region(*region)
            .ami_distribution_configuration(ami)
            .build();
        dist = dist.distributions(ok("Distribution", d)?);
    }
    let dist = ok(
        "CreateDistributionConfiguration",
        dist.send().await.map_err(|e| e.into_service_error()),
    )?;
    let recipe = ib
        .create_image_recipe()
        .name(name)
        .semantic_version("1.0.0")
        .parent_image(parent)
        .working_directory("/tmp")
        .tags("Team", "platform")
        .components(ok(
            "Component",
            ComponentConfiguration::builder().set_component_arn(component).build(),
        )?)
        .send()
        .await;
    let recipe = ok("CreateImageRecipe", recipe.map_err(|e| e.into_service_error()))?;
    let pipeline = ib
        .create_image_pipeline()
        .name(name)
        .description(format!("{name} image"))
        .set_image_recipe_arn(recipe.image_recipe_arn)
        .set_infrastructure_configuration_arn(infra.infrastructure_configuration_arn)
        .set_distribution_configuration_arn(dist.distribution_configuration_arn)
        .image_tests_configuration(
            ImageTestsConfiguration::builder()
                .image_tests_enabled(true)
                .timeout_minutes(60)
                .build(),
        )
        .image_scanning_configuration(
            ImageScanningConfiguration::builder()
                .image_scanning_enabled(true)
                .build(),
        )
        // AWS's own build and test workflows, run under the team's execution role.
        .workflows(ok(
            "WorkflowConfiguration",
            WorkflowConfiguration::builder()
                .workflow_arn(format!(
                    "arn:aws:imagebuilder:{region}:aws:workflow/build/build-image/x.x.x"
                ))
                .build(),
        )?)
        .execution_role(format!("arn:aws:iam::{account}:role/ImageBuilderExecutionRole"))
        .send()
        .await;
    Ok(ok("CreateImagePipeline", pipeline.map_err(|e| e.into_service_error()))?
        .image_pipeline_arn
        .unwrap_or_default())
}

/// Stores a bake policy where the functions read it (`POLICY_PREFIX` + pipeline name).
pub async fn put_policy(aws: &LocalAws, name: &str, policy: &Value) -> Result<(), Error> {
    let prefix = aws
        .names
        .parameters
        .get("PolicyPrefix")
        .cloned()
        .unwrap_or_else(|| "/bakery/policies/".into());
    let ssm = aws_sdk_ssm::Client::new(&aws.sdk_config(&aws.region).await);
    let put = ssm
        .put_parameter()
        .name(format!("{prefix}{name}"))
        .value(policy.to_string())
        .r#type(aws_sdk_ssm::types::ParameterType::String)
        .overwrite(true)
        .send()
        .await;
    ok("PutParameter", put.map_err(|e| e.into_service_error())).map(drop)
}

/// One state of the execution, as the timeline shows it.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Step {
    pub state: String,
    pub started_ms: u128,
    pub duration_ms: u128,
}

/// What a bake did, read back from the world.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BakeReport {
    pub execution_arn: String,
    pub status: String,
    pub source_ami: String,
    pub output: Value,
    pub timeline: Vec<Step>,
    pub elapsed_ms: u128,
}

/// Starts a bake of `world`'s pipeline on `source_ami` and waits for it to end.
pub async fn bake(
    aws: &LocalAws,
    world: &World,
    source_ami: &str,
    bake_id: &str,
    limit: Duration,
) -> Result<BakeReport, Error> {
    let started = Instant::now();
    let execution_arn = start(aws, world, source_ami, bake_id).await?;
    wait(aws, &execution_arn, source_ami, started, limit).await
}

/// Starts a bake of `world`'s pipeline on `source_ami` (execution name `bake_id`, as the trigger
/// would for a release) and returns its execution ARN.
pub async fn start(aws: &LocalAws, world: &World, source_ami: &str, bake_id: &str) -> Result<String, Error> {
    let sfn = aws_sdk_sfn::Client::new(&aws.sdk_config(&aws.region).await);
    let input = json!({
        "bakeId": bake_id,
        "pipelineArn": world.pipeline_arn,
        "sourceAmi": {"imageId": source_ami, "region": aws.region},
        "parentChain": [],
        "trigger": "soeRelease"
    });
    let exec = sfn
        .start_execution()
        .state_machine_arn(&world.state_machine_arn)
        .name(bake_id)
        .input(input.to_string())
        .send()
        .await;
    Ok(ok("StartExecution", exec.map_err(|e| e.into_service_error()))?.execution_arn)
}

/// The states an execution went through, from its history: each state's start (since the
/// execution started) and duration, in order, and the failure if it failed.
pub fn timeline(events: &[aws_sdk_sfn::types::HistoryEvent]) -> Vec<Step> {
    let t0 = events.first().map(|e| e.timestamp.as_secs_f64()).unwrap_or_default();
    let mut timeline: Vec<Step> = Vec::new();
    let mut open: Vec<(String, f64)> = Vec::new();
    for e in events {
        let at = e.timestamp.as_secs_f64();
        if let Some(d) = &e.state_entered_event_details {
            open.push((d.name.clone(), at));
        } else if let Some(d) = &e.state_exited_event_details {
            if let Some(i) = open.iter().rposition(|(n, _)| n == &d.name) {
                let (name, start) = open.remove(i);
                timeline.push(Step {
                    state: name,
                    started_ms: ((start - t0) * 1000.0) as u128,
                    duration_ms: ((at - start) * 1000.0) as u128,
                });
            }
        } else if matches!(e.r#type, HistoryEventType::ExecutionFailed) {
            timeline.push(Step {
                state: "ExecutionFailed".into(),
                started_ms: ((at - t0) * 1000.0) as u128,
                duration_ms: 0,
            });
        }
    }
    timeline.sort_by_key(|s| s.started_ms);
    timeline
}

/// Waits for an execution to end and reads its timeline.
pub async fn wait(
    aws: &LocalAws,
    execution_arn: &str,
    source_ami: &str,
    started: Instant,
    limit: Duration,
) -> Result<BakeReport, Error> {
    let sfn = aws_sdk_sfn::Client::new(&aws.sdk_config(&aws.region).await);
    let described = loop {
        let d = ok(
            "DescribeExecution",
            sfn.describe_execution()
                .execution_arn(execution_arn)
                .send()
                .await
                .map_err(|e| e.into_service_error()),
        )?;
        if d.status != ExecutionStatus::Running {
            break d;
        }
        if started.elapsed() > limit {
            return Err(format!("{execution_arn} still running after {limit:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let history = ok(
        "GetExecutionHistory",
        sfn.get_execution_history()
            .execution_arn(execution_arn)
            .max_results(1000)
            .send()
            .await
            .map_err(|e| e.into_service_error()),
    )?;
    let timeline = timeline(&history.events);
    Ok(BakeReport {
        execution_arn: execution_arn.to_owned(),
        status: described.status.as_str().to_owned(),
        source_ami: source_ami.to_owned(),
        output: described
            .output
            .as_deref()
            .and_then(|o| serde_json::from_str(o).ok())
            .unwrap_or(Value::Null),
        timeline,
        elapsed_ms: started.elapsed().as_millis(),
    })
}

/// The messages on a subscriber queue, unwrapped from SNS's envelope: `{message, attributes}`.
pub async fn notifications(aws: &LocalAws, queue_url: &str, want: usize, limit: Duration) -> Result<Vec<Value>, Error> {
    let sqs = aws_sdk_sqs::Client::new(&aws.sdk_config(&aws.region).await);
    let started = Instant::now();
    let mut got = Vec::new();
    while got.len() < want && started.elapsed() < limit {
        let out = ok(
            "ReceiveMessage",
            sqs.receive_message()
                .queue_url(queue_url)
                .max_number_of_messages(10)
                .send()
                .await
                .map_err(|e| e.into_service_error()),
        )?;
        for m in out.messages.unwrap_or_default() {
            let envelope: Value = serde_json::from_str(m.body().unwrap_or("{}")).unwrap_or(Value::Null);
            let message: Value = envelope["Message"]
                .as_str()
                .and_then(|s| serde_json::from_str(s).ok())
                .unwrap_or(Value::Null);
            let attributes: serde_json::Map<String, Value> = envelope["MessageAttributes"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v["Value"].clone()))
                .collect();
            got.push(json!({"message": message, "attributes": attributes}));
            if let Some(h) = m.receipt_handle() {
                let _ = sqs.delete_message().queue_url(queue_url).receipt_handle(h).send().await;
            }
        }
        if got.len() < want {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(got)
}

/// The AMIs of bake `bake_id` in `region` (tagged `bakery:bake-id`), with their snapshots.
pub async fn bake_images(aws: &LocalAws, region: &str, bake_id: &str) -> Result<Vec<(String, Vec<String>)>, Error> {
    let ec2 = aws_sdk_ec2::Client::new(&aws.sdk_config(region).await);
    let out = ec2
        .describe_images()
        .owners("self")
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("tag:bakery:bake-id")
                .values(bake_id)
                .build(),
        )
        .send()
        .await;
    let out = ok("DescribeImages", out.map_err(|e| e.into_service_error()))?;
    Ok(out
        .images()
        .iter()
        .filter_map(|i| {
            let snapshots = i
                .block_device_mappings()
                .iter()
                .filter_map(|m| m.ebs().and_then(|e| e.snapshot_id()).map(str::to_owned))
                .collect();
            Some((i.image_id()?.to_owned(), snapshots))
        })
        .collect())
}

/// Who an AMI is shared with: launch permissions and its snapshots' create-volume permissions.
pub async fn shares(aws: &LocalAws, region: &str, image_id: &str) -> Result<Value, Error> {
    let ec2 = aws_sdk_ec2::Client::new(&aws.sdk_config(region).await);
    let attr = ec2
        .describe_image_attribute()
        .image_id(image_id)
        .attribute(aws_sdk_ec2::types::ImageAttributeName::LaunchPermission)
        .send()
        .await;
    let attr = ok("DescribeImageAttribute", attr.map_err(|e| e.into_service_error()))?;
    let (mut accounts, mut orgs, mut ous) = (Vec::new(), Vec::new(), Vec::new());
    for p in attr.launch_permissions() {
        if let Some(a) = p.user_id() {
            accounts.push(a.to_owned());
        }
        if let Some(o) = p.organization_arn() {
            orgs.push(o.to_owned());
        }
        if let Some(o) = p.organizational_unit_arn() {
            ous.push(o.to_owned());
        }
    }
    let image = ok(
        "DescribeImages",
        ec2.describe_images()
            .image_ids(image_id)
            .send()
            .await
            .map_err(|e| e.into_service_error()),
    )?;
    let mut snapshots = Vec::new();
    for image in image.images() {
        for bdm in image.block_device_mappings() {
            let Some(snap) = bdm.ebs().and_then(|e| e.snapshot_id()) else {
                continue;
            };
            let perm = ec2
                .describe_snapshot_attribute()
                .snapshot_id(snap)
                .attribute(aws_sdk_ec2::types::SnapshotAttributeName::CreateVolumePermission)
                .send()
                .await;
            let perm = ok("DescribeSnapshotAttribute", perm.map_err(|e| e.into_service_error()))?;
            let users: Vec<&str> = perm
                .create_volume_permissions()
                .iter()
                .filter_map(|p| p.user_id())
                .collect();
            snapshots.push(json!({"snapshotId": snap, "createVolumePermission": users}));
        }
    }
    Ok(json!({"accounts": accounts, "organizations": orgs, "organizationalUnits": ous, "snapshots": snapshots}))
}

/// An SSM parameter's value in a region, if it exists.
pub async fn parameter(aws: &LocalAws, region: &str, name: &str) -> Result<Option<String>, Error> {
    let ssm = aws_sdk_ssm::Client::new(&aws.sdk_config(region).await);
    match ssm.get_parameter().name(name).send().await {
        Ok(out) => Ok(out.parameter.and_then(|p| p.value)),
        Err(e) => {
            let e = e.into_service_error();
            if e.is_parameter_not_found() {
                Ok(None)
            } else {
                Err(format!("GetParameter {name}: {e}").into())
            }
        }
    }
}

/// The stack's publication topic.
pub fn publication_topic(aws: &LocalAws) -> Result<String, Error> {
    template_resource(aws, "PublicationTopic")
}

/// The local name or ARN of one of the template's resources.
fn template_resource(aws: &LocalAws, logical_id: &str) -> Result<String, Error> {
    Ok(aws
        .resource(logical_id)
        .ok_or_else(|| format!("the template has no {logical_id}"))?
        .to_owned())
}

/// Creates the SOE team's release topic in moto (the stack follows it when its
/// `SoeReleaseTopicArn` parameter names it).
pub async fn create_soe_topic(aws: &LocalAws) -> Result<String, Error> {
    let sns = aws_sdk_sns::Client::new(&aws.sdk_config(&aws.region).await);
    let out = sns.create_topic().name(SOE_TOPIC).send().await;
    Ok(ok("CreateTopic", out.map_err(|e| e.into_service_error()))?
        .topic_arn
        .unwrap_or_default())
}

/// The SOE team publishes a release: the plain SOE release message (README, "SOE release
/// message") with its AMI IDs by region. Returns the SNS MessageId.
pub async fn publish_release(
    aws: &LocalAws,
    topic_arn: &str,
    release: &str,
    amis: &[(&str, &str)],
) -> Result<String, Error> {
    let sns = aws_sdk_sns::Client::new(&aws.sdk_config(&aws.region).await);
    let by_region: serde_json::Map<String, Value> = amis
        .iter()
        .map(|(region, ami)| ((*region).to_owned(), Value::String((*ami).to_owned())))
        .collect();
    let message = json!({"release": release, "accountId": aws.account, "amis": by_region});
    let out = sns
        .publish()
        .topic_arn(topic_arn)
        .subject(format!("SOE release {release}"))
        .message(message.to_string())
        .send()
        .await;
    Ok(ok("Publish", out.map_err(|e| e.into_service_error()))?
        .message_id
        .unwrap_or_default())
}

/// One execution of the bake state machine, as the trigger started it.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Execution {
    pub name: String,
    pub execution_arn: String,
    pub status: String,
    /// The execution input (a BakeRequest).
    pub input: Value,
    pub start_ms: i64,
}

/// Every execution of the bake state machine, oldest first, with its input.
pub async fn executions(aws: &LocalAws) -> Result<Vec<Execution>, Error> {
    let sfn = aws_sdk_sfn::Client::new(&aws.sdk_config(&aws.region).await);
    let machine = template_resource(aws, "BakeStateMachine")?;
    let mut out = Vec::new();
    let mut token = None;
    loop {
        let page = ok(
            "ListExecutions",
            sfn.list_executions()
                .state_machine_arn(&machine)
                .set_next_token(token)
                .max_results(1000)
                .send()
                .await
                .map_err(|e| e.into_service_error()),
        )?;
        for e in page.executions() {
            let d = ok(
                "DescribeExecution",
                sfn.describe_execution()
                    .execution_arn(e.execution_arn())
                    .send()
                    .await
                    .map_err(|e| e.into_service_error()),
            )?;
            out.push(Execution {
                name: e.name().to_owned(),
                execution_arn: e.execution_arn().to_owned(),
                status: e.status().as_str().to_owned(),
                input: d
                    .input
                    .as_deref()
                    .and_then(|i| serde_json::from_str(i).ok())
                    .unwrap_or(Value::Null),
                start_ms: (e.start_date().as_secs_f64() * 1000.0) as i64,
            });
        }
        token = page.next_token;
        if token.is_none() {
            break;
        }
    }
    out.sort_by_key(|e| e.start_ms);
    Ok(out)
}
