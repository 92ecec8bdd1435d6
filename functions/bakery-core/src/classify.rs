//! Classification of everything the trigger function can receive: bake, ignore (with a
//! reason), a staleness report, an upstream Bakery's revocation, or a typed error that says
//! what is wrong and where. Never panics on input.

use crate::ids::{self, echo, kind_of, AccountId, AmiId, Arn, Region};
use crate::imagebuilder::ImageBuilderMessage;
use crate::publication::{BakeStatus, Publication, PublishedAmi, PUBLICATION_SCHEMA_PREFIX};
use crate::trigger::{BakeTrigger, Classification, Origin, SourceAmi, UpstreamRevocation};
use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use aws_lambda_events::event::sns::{SnsEvent, SnsRecord};
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// Lambda's synchronous invocation payload limit; nothing larger can reach the function.
pub const MAX_INPUT_BYTES: usize = 6 * 1024 * 1024;

/// `source` of Bakery's own EventBridge events (manual bake requests).
pub const BAKERY_EVENT_SOURCE: &str = "bakery";
/// `detail-type` of a manual bake request.
pub const BAKE_REQUESTED: &str = "Bake Requested";
/// `detail-type` of an operator's staleness report request (`bakery stale`).
pub const STALENESS_REQUESTED: &str = "Staleness Report Requested";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClassifyError {
    #[error("the input is empty")]
    Empty,
    #[error("the input is {size} bytes, over the {limit}-byte limit")]
    TooLarge { size: usize, limit: usize },
    #[error("not JSON (line {line}, column {column}): {message}")]
    NotJson {
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{path}: {message}")]
    Malformed { path: String, message: String },
}

impl ClassifyError {
    /// Stable name for logs and for Step Functions `Retry`/`Catch`.
    pub fn error_type(&self) -> &'static str {
        match self {
            Self::Empty => "EmptyInput",
            Self::TooLarge { .. } => "InputTooLarge",
            Self::NotJson { .. } => "InvalidJson",
            Self::Malformed { .. } => "MalformedEvent",
        }
    }
}

fn malformed(path: &str, message: impl Into<String>) -> ClassifyError {
    ClassifyError::Malformed {
        path: path.to_owned(),
        message: message.into(),
    }
}

fn not_json(e: &serde_json::Error) -> ClassifyError {
    ClassifyError::NotJson {
        line: e.line(),
        column: e.column(),
        message: strip_position(e),
    }
}

/// serde_json appends " at line L column C"; the error variants carry those separately.
/// serde quotes the offending value whole, and hostile input can be megabytes: cut it.
fn strip_position(e: &serde_json::Error) -> String {
    const LIMIT: usize = 300;
    let s = e.to_string();
    let s = s.rsplit_once(" at line ").map_or(s.as_str(), |(m, _)| m);
    match s.char_indices().nth(LIMIT) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_owned(),
    }
}

fn join(base: &str, inner: &str) -> String {
    match (base, inner) {
        (b, ".") | (b, "") => b.to_owned(),
        ("$", i) => i.to_owned(),
        (b, i) if i.starts_with('[') => format!("{b}{i}"),
        (b, i) => format!("{b}.{i}"),
    }
}

/// Deserializes `value` into `T`, reporting the failing path below `base`.
fn typed<T: DeserializeOwned>(value: Value, base: &str) -> Result<T, ClassifyError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = join(base, &e.path().to_string());
        malformed(&path, strip_position(e.inner()))
    })
}

/// Deserializes JSON text into `T` straight from the text, so that wide integers stay exact.
fn typed_str<T: DeserializeOwned>(text: &str, base: &str) -> Result<T, ClassifyError> {
    let mut de = serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = join(base, &e.path().to_string());
        malformed(&path, strip_position(e.inner()))
    })
}

fn bake(
    origin: Origin,
    source_amis: Vec<SourceAmi>,
    event_id: String,
    event_time: Option<DateTime<Utc>>,
) -> Classification {
    Classification::Bake {
        trigger: BakeTrigger {
            origin,
            source_amis,
            event_id,
            event_time,
        },
    }
}

fn ignore(reason: impl Into<String>) -> Classification {
    Classification::Ignore { reason: reason.into() }
}

/// Classifies one input as the trigger function receives it.
pub fn classify(input: &[u8]) -> Result<Classification, ClassifyError> {
    if input.len() > MAX_INPUT_BYTES {
        return Err(ClassifyError::TooLarge {
            size: input.len(),
            limit: MAX_INPUT_BYTES,
        });
    }
    if input.iter().all(u8::is_ascii_whitespace) {
        return Err(ClassifyError::Empty);
    }
    let value: Value = serde_json::from_slice(input).map_err(|e| not_json(&e))?;
    classify_value(value)
}

/// Classifies an already parsed input (the Lambda runtime hands the function a `Value`).
pub fn classify_value(value: Value) -> Result<Classification, ClassifyError> {
    let Value::Object(obj) = &value else {
        return Err(malformed(
            "$",
            format!("expected a JSON object, found {}", kind_of(&value)),
        ));
    };
    if obj.contains_key("Records") {
        sns(typed(value, "$")?)
    } else if obj.contains_key("detail-type") {
        eventbridge(typed(value, "$")?)
    } else if obj.contains_key("schedule-arn") {
        scheduler_payload(typed(value, "$")?)
    } else {
        Err(malformed(
            "$",
            "not an event Bakery understands: expected an SNS event (Records), an EventBridge event (detail-type) \
             or an EventBridge Scheduler payload",
        ))
    }
}

// ---------------------------------------------------------------- SNS

fn sns(event: SnsEvent) -> Result<Classification, ClassifyError> {
    let [record]: [SnsRecord; 1] = event.records.try_into().map_err(|r: Vec<SnsRecord>| {
        malformed(
            "Records",
            format!(
                "expected exactly one SNS record (Lambda delivers one), found {}",
                r.len()
            ),
        )
    })?;
    if record.event_source != "aws:sns" {
        return Err(malformed(
            "Records[0].EventSource",
            format!("expected \"aws:sns\", found {}", echo(&record.event_source)),
        ));
    }
    let msg = record.sns;
    let topic_arn = msg.topic_arn;
    ids::check_topic_arn(&topic_arn).map_err(|e| malformed("Records[0].Sns.TopicArn", e))?;
    const PATH: &str = "Records[0].Sns.Message";
    let body: Value =
        serde_json::from_str(&msg.message).map_err(|e| malformed(PATH, format!("not JSON: {}", strip_position(&e))))?;
    let Value::Object(obj) = &body else {
        return Err(malformed(
            PATH,
            format!("expected a JSON object, found {}", kind_of(&body)),
        ));
    };
    let (id, time) = (msg.message_id, Some(msg.timestamp));
    let schema = obj.get("schema").and_then(Value::as_str).unwrap_or_default();
    if schema.starts_with(PUBLICATION_SCHEMA_PREFIX) {
        bakery_publication(typed(body, PATH)?, topic_arn, id, time)
    } else if obj.contains_key("outputResources") || obj.contains_key("sourcePipelineArn") {
        image_builder_message(typed_str(&msg.message, PATH)?, topic_arn, id, time)
    } else if obj.contains_key("amis") {
        soe_release(typed(body, PATH)?, topic_arn, id, time)
    } else {
        Err(malformed(
            PATH,
            "not a message Bakery understands: expected a Bakery publication (schema bakery.publication/v1), \
             an EC2 Image Builder notification, or an SOE release (amis by region)",
        ))
    }
}

fn bakery_publication(
    p: Publication,
    topic_arn: String,
    id: String,
    time: Option<DateTime<Utc>>,
) -> Result<Classification, ClassifyError> {
    if p.status == BakeStatus::Revoked {
        return upstream_revocation(p, topic_arn, id);
    }
    if p.status != BakeStatus::Published {
        return Ok(ignore(format!(
            "Bakery publication{} is {}; only PUBLISHED AMIs trigger a bake",
            if p.pipeline.arn.is_empty() {
                String::new()
            } else {
                format!(" of {}", p.pipeline.arn)
            },
            p.status.as_str()
        )));
    }
    if p.amis.is_empty() {
        return Err(malformed(
            "Records[0].Sns.Message.amis",
            "a PUBLISHED publication lists no AMIs",
        ));
    }
    let amis = owned_by(p.amis, &p.account_id);
    let origin = Origin::BakeryPublication {
        topic_arn,
        pipeline_arn: p.pipeline.arn,
        execution_arn: p.execution_arn,
        parent_chain: p.lineage.parents,
    };
    Ok(bake(origin, amis, id, time))
}

/// A publication's AMIs, each owned (so the message says) by the account that published them.
fn owned_by(amis: Vec<PublishedAmi>, owner: &AccountId) -> Vec<SourceAmi> {
    amis.into_iter()
        .map(|a| SourceAmi {
            image_id: a.image_id,
            region: a.region,
            owner: Some(owner.clone()),
        })
        .collect()
}

/// A REVOKED publication: every AMI it lists, with the revocation's reason, who and when.
fn upstream_revocation(p: Publication, topic_arn: String, id: String) -> Result<Classification, ClassifyError> {
    const PATH: &str = "Records[0].Sns.Message";
    let Some(r) = p.revocation else {
        return Err(malformed(
            &format!("{PATH}.revocation"),
            "a REVOKED publication says nothing of the revocation",
        ));
    };
    if p.amis.is_empty() {
        return Err(malformed(
            &format!("{PATH}.amis"),
            "a REVOKED publication lists no AMIs",
        ));
    }
    Ok(Classification::UpstreamRevoked {
        revoked: UpstreamRevocation {
            topic_arn,
            amis: owned_by(p.amis, &p.account_id),
            account_id: p.account_id,
            reason: r.reason,
            revoked_by: r.revoked_by,
            revoked_at: r.revoked_at,
            event_id: id,
        },
    })
}

fn image_builder_message(
    m: ImageBuilderMessage,
    topic_arn: String,
    id: String,
    time: Option<DateTime<Utc>>,
) -> Result<Classification, ClassifyError> {
    const PATH: &str = "Records[0].Sns.Message";
    Arn::parse_kind(&m.arn, "imagebuilder", "image", "an Image Builder image ARN")
        .map_err(|e| malformed(&format!("{PATH}.arn"), e))?;
    if m.state.status != "AVAILABLE" {
        let why = m.state.reason.map(|r| format!(" ({})", echo(&r))).unwrap_or_default();
        return Ok(ignore(format!(
            "Image Builder image {} is {}{why}; only AVAILABLE triggers a bake",
            m.arn, m.state.status
        )));
    }
    if m.output_resources.amis.is_empty() {
        return Err(malformed(
            &format!("{PATH}.outputResources.amis"),
            "an AVAILABLE image lists no AMIs",
        ));
    }
    let amis = m
        .output_resources
        .amis
        .into_iter()
        .map(|a| SourceAmi {
            image_id: a.image,
            region: a.region,
            owner: a.account_id,
        })
        .collect();
    let origin = Origin::ImageBuilderNotification {
        topic_arn,
        image_arn: m.arn,
        pipeline_arn: m.source_pipeline_arn,
        semver: m.semver.0.to_string(),
        date_created: m.date_created.0,
    };
    Ok(bake(origin, amis, id, time))
}

/// The plain SOE release message: `{"release": "...", "accountId": "...", "amis": {"<region>": "<ami-id>"}}`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SoeRelease {
    #[serde(default)]
    release: Option<String>,
    #[serde(default)]
    account_id: Option<AccountId>,
    amis: BTreeMap<Region, AmiId>,
}

fn soe_release(
    r: SoeRelease,
    topic_arn: String,
    id: String,
    time: Option<DateTime<Utc>>,
) -> Result<Classification, ClassifyError> {
    if r.amis.is_empty() {
        return Err(malformed("Records[0].Sns.Message.amis", "an SOE release lists no AMIs"));
    }
    let amis = r
        .amis
        .into_iter()
        .map(|(region, image_id)| SourceAmi {
            image_id,
            region,
            owner: r.account_id.clone(),
        })
        .collect();
    Ok(bake(
        Origin::SoeRelease {
            topic_arn,
            release: r.release,
        },
        amis,
        id,
        time,
    ))
}

// ---------------------------------------------------------------- EventBridge

/// The envelope fields every AWS service event carries; missing ones are malformed.
struct Envelope {
    id: String,
    account: AccountId,
    region: Region,
    time: Option<DateTime<Utc>>,
    resources: Vec<String>,
}

fn envelope(ev: &EventBridgeEvent<Value>) -> Result<Envelope, ClassifyError> {
    let id = ev
        .id
        .clone()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| malformed("id", "missing"))?;
    let account = ev.account.as_deref().ok_or_else(|| malformed("account", "missing"))?;
    let region = ev.region.as_deref().ok_or_else(|| malformed("region", "missing"))?;
    Ok(Envelope {
        id,
        account: AccountId::parse(account).map_err(|e| malformed("account", e))?,
        region: Region::parse(region).map_err(|e| malformed("region", e))?,
        time: ev.time,
        resources: ev.resources.clone().unwrap_or_default(),
    })
}

fn first_resource(env: &Envelope) -> Result<&str, ClassifyError> {
    env.resources
        .first()
        .map(String::as_str)
        .ok_or_else(|| malformed("resources", "expected one resource ARN, found none"))
}

fn eventbridge(ev: EventBridgeEvent<Value>) -> Result<Classification, ClassifyError> {
    match (ev.source.as_str(), ev.detail_type.as_str()) {
        ("aws.ec2", "EC2 AMI State Change") => ami_state_change(ev),
        ("aws.imagebuilder", "EC2 Image Builder Image State Change") => image_state_change(ev),
        ("aws.ssm", "Parameter Store Change") => parameter_change(ev),
        ("aws.events", "Scheduled Event") => scheduled_event(ev, "rule", "an EventBridge rule ARN"),
        // EventBridge Scheduler's default payload, when a schedule gives its target no Input.
        ("aws.scheduler", "Scheduled Event") => {
            scheduled_event(ev, "schedule", "an EventBridge Scheduler schedule ARN")
        }
        (BAKERY_EVENT_SOURCE, BAKE_REQUESTED) => bake_request(ev),
        (BAKERY_EVENT_SOURCE, STALENESS_REQUESTED) => {
            envelope(&ev)?;
            let d: StalenessRequest = typed(ev.detail, "detail")?;
            Ok(Classification::Stale { publish: d.publish })
        }
        (source, detail_type) => {
            envelope(&ev)?;
            Ok(ignore(format!(
                "{} from {} is not a bake trigger",
                echo(detail_type),
                echo(source)
            )))
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AmiStateDetail {
    image_id: AmiId,
    state: String,
}

fn ami_state_change(ev: EventBridgeEvent<Value>) -> Result<Classification, ClassifyError> {
    let env = envelope(&ev)?;
    let d: AmiStateDetail = typed(ev.detail, "detail")?;
    if d.state != "available" {
        return Ok(ignore(format!(
            "AMI {} is {}; only available triggers a bake",
            d.image_id,
            echo(&d.state)
        )));
    }
    let ami = SourceAmi {
        image_id: d.image_id,
        region: env.region.clone(),
        owner: Some(env.account.clone()),
    };
    Ok(bake(
        Origin::AmiStateChange {
            account: env.account,
            region: env.region,
        },
        vec![ami],
        env.id,
        env.time,
    ))
}

#[derive(Deserialize)]
struct ImageStatus {
    status: String,
}

#[derive(Deserialize)]
struct ImageStateDetail {
    state: ImageStatus,
}

fn image_state_change(ev: EventBridgeEvent<Value>) -> Result<Classification, ClassifyError> {
    let env = envelope(&ev)?;
    let d: ImageStateDetail = typed(ev.detail, "detail")?;
    let image_arn = first_resource(&env)?;
    Arn::parse_kind(image_arn, "imagebuilder", "image", "an Image Builder image ARN")
        .map_err(|e| malformed("resources[0]", e))?;
    if d.state.status != "AVAILABLE" {
        return Ok(ignore(format!(
            "Image Builder image {image_arn} is {}; only AVAILABLE triggers a bake",
            echo(&d.state.status)
        )));
    }
    let origin = Origin::UpstreamImage {
        image_arn: image_arn.to_owned(),
        account: env.account,
        region: env.region,
    };
    Ok(bake(origin, Vec::new(), env.id, env.time))
}

#[derive(Deserialize)]
struct ParameterDetail {
    operation: String,
    name: String,
    /// Set when the change did not happen: an `aws:ec2:image` value that failed Parameter
    /// Store's asynchronous validation ("Unable to Describe Resource"); the parameter keeps
    /// its old value, or was never created.
    #[serde(default)]
    exception: Option<String>,
    #[serde(default, rename = "dataType")]
    data_type: Option<String>,
}

fn parameter_change(ev: EventBridgeEvent<Value>) -> Result<Classification, ClassifyError> {
    let env = envelope(&ev)?;
    let d: ParameterDetail = typed(ev.detail, "detail")?;
    ids::check_parameter_name(&d.name).map_err(|e| malformed("detail.name", e))?;
    if let Some(exception) = &d.exception {
        let data_type = d.data_type.as_deref().map(|t| format!(" of data type {}", echo(t)));
        return Ok(ignore(format!(
            "parameter {}: the {} failed validation{} ({}); the parameter did not change",
            d.name,
            echo(&d.operation),
            data_type.unwrap_or_default(),
            echo(exception)
        )));
    }
    if !matches!(d.operation.as_str(), "Create" | "Update") {
        return Ok(ignore(format!(
            "parameter {} had {}; only Create and Update trigger a bake",
            d.name,
            echo(&d.operation)
        )));
    }
    let origin = Origin::ParameterChange {
        name: d.name,
        operation: d.operation,
        account: env.account,
        region: env.region,
    };
    Ok(bake(origin, Vec::new(), env.id, env.time))
}

fn scheduled_event(ev: EventBridgeEvent<Value>, kind: &str, what: &str) -> Result<Classification, ClassifyError> {
    let env = envelope(&ev)?;
    let arn = first_resource(&env)?;
    let service = if kind == "rule" { "events" } else { "scheduler" };
    Arn::parse_kind(arn, service, kind, what).map_err(|e| malformed("resources[0]", e))?;
    let origin = Origin::Schedule {
        schedule_arn: arn.to_owned(),
        scheduled_time: env.time,
    };
    Ok(bake(origin, Vec::new(), env.id, env.time))
}

/// The Input Bakery's template gives an EventBridge Scheduler target: the schedule's context
/// attributes (`<aws.scheduler.schedule-arn>` and so on) under their own names.
#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct SchedulerPayload {
    schedule_arn: String,
    scheduled_time: DateTime<Utc>,
}

fn scheduler_payload(p: SchedulerPayload) -> Result<Classification, ClassifyError> {
    Arn::parse_kind(
        &p.schedule_arn,
        "scheduler",
        "schedule",
        "an EventBridge Scheduler schedule ARN",
    )
    .map_err(|e| malformed("schedule-arn", e))?;
    // execution-id changes with every retry attempt; the schedule and its time do not.
    let id = format!("{}@{}", p.schedule_arn, p.scheduled_time.to_rfc3339());
    let time = Some(p.scheduled_time);
    Ok(bake(
        Origin::Schedule {
            schedule_arn: p.schedule_arn,
            scheduled_time: time,
        },
        Vec::new(),
        id,
        time,
    ))
}

/// `detail` of a staleness report request.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct StalenessRequest {
    #[serde(default)]
    publish: bool,
}

/// `detail` of a manual bake request. Strict: a misspelt field is an error, not a silent default.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct BakeRequest {
    pipeline_arn: String,
    #[serde(default)]
    source_ami: Option<RequestedAmi>,
    #[serde(default)]
    requested_by: Option<String>,
    #[serde(default)]
    reason: Option<String>,
}

/// A requested source AMI: an ID and its region, never a name.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RequestedAmi {
    #[serde(default)]
    image_id: Option<AmiId>,
    region: Region,
    /// Read only to refuse it with a clear reason.
    #[serde(default)]
    name: Option<serde::de::IgnoredAny>,
}

fn bake_request(ev: EventBridgeEvent<Value>) -> Result<Classification, ClassifyError> {
    let env = envelope(&ev)?;
    let r: BakeRequest = typed(ev.detail, "detail")?;
    ids::check_pipeline_arn(&r.pipeline_arn).map_err(|e| malformed("detail.pipelineArn", e))?;
    let amis = match r.source_ami {
        None => Vec::new(),
        Some(RequestedAmi { name: Some(_), .. }) => {
            return Err(malformed(
                "detail.sourceAmi.name",
                "a source AMI is given by imageId; Bakery never resolves an AMI by name",
            ))
        }
        Some(RequestedAmi { image_id: None, .. }) => {
            return Err(malformed("detail.sourceAmi", "missing field `imageId`"))
        }
        Some(RequestedAmi {
            image_id: Some(image_id),
            region,
            ..
        }) => vec![SourceAmi {
            image_id,
            region,
            owner: None,
        }],
    };
    let origin = Origin::Manual {
        pipeline_arn: r.pipeline_arn,
        requested_by: r.requested_by,
        reason: r.reason,
    };
    Ok(bake(origin, amis, env.id, env.time))
}
