//! The gateway: one port in front of moto. Lambda Invoke runs the function binaries, Image
//! Builder goes to the emulator, EventBridge PutEvents is delivered by the template's rules,
//! SNS Publish is passed to moto and then delivered to the template's Lambda subscriptions,
//! EC2's image deprecation and Allowed AMIs settings are kept here, `/_bakery/*` is the admin
//! API for tests, and every other request passes unchanged to moto.

use crate::authz;
use crate::http::{aws_json_error, full, json_response, query_params, response, xml_elements, xml_unescape, Body};
use crate::iam::{Iam, Principal};
use crate::lambda::{Lambdas, Outcome};
use crate::pattern;
use crate::sns::{self, Subscriber};
use crate::template::{Rule, Schedule, SnsSubscription};
use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use imagebuilder_emulator::{Emulator, FailPhase, FindingCounts, PhaseDurations};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How many times Lambda retries a failed asynchronous invocation by default.
const ASYNC_RETRIES: u32 = 2;

/// Image providers an Allowed AMIs criterion may name, besides 12-digit account ids.
const IMAGE_PROVIDER_ALIASES: [&str; 4] = ["amazon", "aws-marketplace", "aws-backup-vault", "none"];

/// EC2's Allowed AMIs settings (moto has none): the state and one criterion's image providers.
#[derive(Clone, Debug)]
struct AllowedImages {
    state: String,
    providers: Vec<String>,
}

impl Default for AllowedImages {
    fn default() -> Self {
        Self {
            state: "disabled".into(),
            providers: Vec::new(),
        }
    }
}

/// An SQS subscription made by another account than the topic's.
#[derive(Clone, Debug)]
struct ForeignSubscription {
    arn: String,
    queue_arn: String,
    raw: bool,
    /// Its topic and filter policy, as `sns::accepts` reads them.
    subscription: SnsSubscription,
}

/// What a caller has of an image id in a region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ImageAccess {
    /// Its own image.
    Owned,
    /// Another account's image, public or shared with the caller.
    Visible,
    /// None it can see: unknown, deregistered, private to another account, or disabled.
    None,
}

/// Calls of one operation still to refuse: with throttling, or with a given error code; only
/// the calls one function's invocations make, when `function` is set.
#[derive(Clone)]
struct Knob {
    remaining: u32,
    code: Option<String>,
    function: Option<String>,
}

/// What befalls a function's AWS call once AWS has answered it (a test knob).
#[derive(Clone, Debug)]
enum AfterCall {
    /// The answer reaches the function this much later.
    Hold(Duration),
    /// The function's execution environment dies before the answer reaches it.
    Kill,
}

/// The next `remaining` successful calls of `service`'s `operation` by `function`.
#[derive(Clone, Debug)]
struct CallKnob {
    function: String,
    service: String,
    operation: String,
    remaining: u32,
    then: AfterCall,
}

/// The first `count` calls of every operation the functions make are throttled; `seen` counts
/// the calls per (service, operation).
#[derive(Clone, Debug, Default)]
struct ThrottleFirst {
    count: u32,
    seen: std::collections::BTreeMap<(String, String), u32>,
}

/// Who delivers an asynchronous invocation, and where what cannot be delivered goes.
#[derive(Clone, Debug)]
pub enum Delivery {
    /// Lambda's Invoke API, with `InvocationType: Event` (the caller was authorized already).
    Api,
    /// An EventBridge rule's target.
    Rule { arn: String, dead_letter: Option<String> },
    /// An SNS subscription.
    Sns {
        topic_arn: String,
        notification: Value,
        dead_letter: Option<String>,
    },
    /// A schedule: Scheduler with its role, or a rule schedule as EventBridge.
    Schedule {
        arn: String,
        role_arn: Option<String>,
        dead_letter: Option<String>,
    },
}

pub struct Gateway {
    pub lambdas: Lambdas,
    pub iam: Arc<Iam>,
    pub emulator: Arc<Emulator>,
    pub rules: Vec<Rule>,
    pub schedules: Vec<Schedule>,
    /// The template's Lambda subscriptions to SNS topics, with their subscription ARNs.
    pub sns_subscribers: Vec<Subscriber>,
    pub region: String,
    pub account: String,
    moto: String,
    client: Client<HttpConnector, Body>,
    sqs: aws_sdk_sqs::Client,
    /// (service, operation) → calls still to throttle.
    throttles: Mutex<HashMap<(String, String), Knob>>,
    /// What befalls the functions' calls once answered.
    call_knobs: Mutex<Vec<CallKnob>>,
    throttle_first: Mutex<ThrottleFirst>,
    /// Every event put on the bus, in order, for tests and `bakery local`.
    events: Mutex<Vec<Value>>,
    /// Every asynchronous invocation's end (what CloudWatch Logs would show), in order.
    invocations: Mutex<Vec<Value>>,
    /// EC2 image deprecations (moto has no EnableImageDeprecation), per region and image,
    /// shown as `deprecationTime` in DescribeImages.
    deprecations: Mutex<crate::deprecation::Deprecations>,
    /// Every SNS message offered to a Lambda subscription: delivered, or stopped by its filter policy.
    sns_deliveries: Mutex<Vec<Value>>,
    /// EC2 Allowed AMIs settings, answered to GetAllowedImagesSettings.
    allowed_images: Mutex<AllowedImages>,
    /// CopyImage's tokens, progress and encryption (moto keeps none of them).
    copies: Mutex<crate::copies::Copies>,
    /// SQS subscriptions of other accounts to a topic (see `subscribe`).
    foreign_subscriptions: Mutex<Vec<ForeignSubscription>>,
    /// Async delay between Lambda's retries of a failed asynchronous invocation.
    retry_delay: Duration,
}

impl Gateway {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        lambdas: Lambdas,
        iam: Arc<Iam>,
        emulator: Arc<Emulator>,
        rules: Vec<Rule>,
        schedules: Vec<Schedule>,
        sns_subscriptions: Vec<SnsSubscription>,
        region: String,
        account: String,
        moto: String,
        sqs: aws_sdk_sqs::Client,
    ) -> Arc<Self> {
        Arc::new(Self {
            lambdas,
            iam,
            emulator,
            rules,
            schedules,
            sns_subscribers: sns_subscriptions.into_iter().map(Subscriber::new).collect(),
            region,
            account,
            moto,
            client: Client::builder(hyper_util::rt::TokioExecutor::new()).build_http(),
            sqs,
            throttles: Mutex::new(HashMap::new()),
            call_knobs: Mutex::new(Vec::new()),
            throttle_first: Mutex::new(ThrottleFirst::default()),
            events: Mutex::new(Vec::new()),
            invocations: Mutex::new(Vec::new()),
            deprecations: Mutex::new(crate::deprecation::Deprecations::default()),
            sns_deliveries: Mutex::new(Vec::new()),
            allowed_images: Mutex::new(AllowedImages::default()),
            foreign_subscriptions: Mutex::new(Vec::new()),
            copies: Mutex::new(crate::copies::Copies::default()),
            retry_delay: Duration::from_millis(200),
        })
    }

    pub async fn handle(self: &Arc<Self>, req: Request<Incoming>) -> Response<Body> {
        let (parts, body) = req.into_parts();
        let Ok(body) = http_body_util::BodyExt::collect(body).await.map(|b| b.to_bytes()) else {
            return aws_json_error(400, "SerializationException", "cannot read the request body");
        };
        let path = parts.uri.path().to_owned();
        let query = parts.uri.query().unwrap_or_default().to_owned();
        if let Some(admin) = path.strip_prefix("/_bakery/") {
            return self.admin(&parts.method, admin, &body).await;
        }
        if path.starts_with("/moto-api/") {
            return self.proxy(parts, body).await;
        }
        let service = service_of(&parts.headers, &path);
        let operation = operation_of(&service, &parts.method, &parts.headers, &path, &query, &body);
        let Some((key, signed_region)) = authz::credential(&parts.headers, &query) else {
            return authz::unrecognized(&service, None);
        };
        let Some(caller) = self.iam.principal(&key) else {
            return authz::unrecognized(&service, Some(&key));
        };
        let call = authz::call(&service, &operation, &signed_region, &caller.account, &parts, &body);
        if let Err(refused) = authz::authorize(&self.iam, &caller, &call).await {
            return refused;
        }
        // The function whose invocation makes this call: the SDK sends the invocation's trace.
        let function = trace_root(&parts.headers).and_then(|t| Some((self.lambdas.function_of(&t)?, t)));
        if function.is_some() && self.throttled_first(&service, &operation) {
            tracing::info!(%service, %operation, "throttled by the throttle-first knob");
            return throttled(&service);
        }
        if let Some(code) = self.take_knob(&service, &operation, function.as_ref().map(|(f, _)| f.as_str())) {
            tracing::info!(%service, %operation, ?code, "refused by a test knob");
            return match code {
                None => throttled(&service),
                Some(code) if service == "ec2" => response(
                    400,
                    &[("Content-Type", "text/xml")],
                    ec2_error(&code, "failed by a test knob"),
                ),
                Some(code) if QUERY_PROTOCOL.contains(&service.as_str()) => query_error(&code, "failed by a test knob"),
                Some(code) => aws_json_error(400, &code, "failed by a test knob"),
            };
        }
        let answer = match service.as_str() {
            "lambda" if operation == "Invoke" => self.invoke_api(&path, &parts.headers, body).await,
            "sts" if operation == "AssumeRole" => self.assume_role(parts, body).await,
            "imagebuilder" => {
                let r = self.emulator.handle(parts.method.as_str(), &path, &query, &body).await;
                let headers: Vec<(&str, &str)> = r.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                response(r.status, &headers, r.body)
            }
            "events" if operation == "PutEvents" => self.put_events_api(&body).await,
            "ssm"
                if matches!(
                    operation.as_str(),
                    "PutParameter" | "DeleteParameter" | "DeleteParameters" | "LabelParameterVersion"
                ) =>
            {
                self.parameter_change(parts, body, &call).await
            }
            "ec2" if operation == "CopyImage" => self.copy_image(parts, body, &call).await,
            "ec2"
                if matches!(
                    operation.as_str(),
                    "CreateImage" | "RegisterImage" | "DeregisterImage" | "DisableImage" | "EnableImage"
                ) =>
            {
                self.image_change(parts, body, &call).await
            }
            "ec2" if operation == "EnableImageDeprecation" || operation == "DisableImageDeprecation" => {
                self.image_deprecation(&operation, &call).await
            }
            "ec2" if operation == "GetAllowedImagesSettings" => self.allowed_images_settings(&query, &body),
            "ec2" if operation == "DescribeImages" => self.describe_images(parts, body, &call).await,
            "ec2" if operation == "RunInstances" => match call.form.get("ImageId") {
                // moto launches any image id; EC2 only one the caller owns or may launch.
                Some(image) if !self.image_launchable(&call.region, &call.account, image).await => response(
                    400,
                    &[("Content-Type", "text/xml")],
                    ec2_error(
                        "InvalidAMIID.NotFound",
                        &format!("The image id '[{image}]' does not exist"),
                    ),
                ),
                _ => self.proxy(parts, body).await,
            },
            "sns" if operation == "Subscribe" => self.subscribe(parts, body, &query, &call).await,
            "sns" if operation == "Publish" || operation == "PublishBatch" => {
                self.publish(parts, body, &operation, &query).await
            }
            _ => self.proxy(parts, body).await,
        };
        match function {
            Some((function, trace)) if answer.status().is_success() => {
                self.after_call(&function, &trace, &service, &operation).await;
                answer
            }
            _ => answer,
        }
    }

    /// A knob on this function's call, now that AWS has answered it: hold the answer, or kill
    /// the execution environment before the answer reaches it.
    async fn after_call(&self, function: &str, trace: &str, service: &str, operation: &str) {
        let then = self.call_knobs.lock().ok().and_then(|mut knobs| {
            let k = knobs.iter_mut().find(|k| {
                k.remaining > 0 && k.function == function && k.service == service && k.operation == operation
            })?;
            k.remaining -= 1;
            Some(k.then.clone())
        });
        match then {
            Some(AfterCall::Hold(d)) => {
                tracing::info!(%function, %service, %operation, ?d, "answer held by a test knob");
                tokio::time::sleep(d).await;
            }
            Some(AfterCall::Kill) => {
                tracing::info!(%function, %service, %operation, "function killed after its call by a test knob");
                self.lambdas.kill(trace).await;
            }
            None => {}
        }
    }

    /// Whether the throttle-first knob throttles this call (and counts it).
    fn throttled_first(&self, service: &str, operation: &str) -> bool {
        let Ok(mut t) = self.throttle_first.lock() else {
            return false;
        };
        let count = t.count;
        let seen = t.seen.entry((service.to_owned(), operation.to_owned())).or_default();
        *seen += 1;
        *seen <= count
    }

    // ------------------------------------------------------------ Lambda

    async fn invoke_api(self: &Arc<Self>, path: &str, headers: &hyper::HeaderMap, payload: Bytes) -> Response<Body> {
        // /2015-03-31/functions/{FunctionName}/invocations; the name may be a URL-encoded ARN.
        let raw = path
            .trim_start_matches("/2015-03-31/functions/")
            .trim_end_matches("/invocations");
        let decoded = percent_encoding::percent_decode_str(raw)
            .decode_utf8_lossy()
            .into_owned();
        let name = function_name(&decoded);
        if self.lambdas.spec(&name).is_none() {
            let arn = format!("arn:aws:lambda:{}:{}:function:{name}", self.region, self.account);
            return aws_json_error(404, "ResourceNotFoundException", &format!("Function not found: {arn}"));
        }
        let invocation_type = headers
            .get("X-Amz-Invocation-Type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("RequestResponse");
        match invocation_type {
            "Event" => {
                self.invoke_async(name, payload, Delivery::Api);
                response(202, &[], Bytes::new())
            }
            "DryRun" => response(204, &[], Bytes::new()),
            _ => match self.lambdas.invoke(&name, payload).await {
                Some(Outcome::Success(body)) => response(200, &[("X-Amz-Executed-Version", "$LATEST")], body),
                Some(Outcome::FunctionError(body)) => response(
                    200,
                    &[
                        ("X-Amz-Executed-Version", "$LATEST"),
                        ("X-Amz-Function-Error", "Unhandled"),
                    ],
                    body,
                ),
                None => aws_json_error(404, "ResourceNotFoundException", "Function not found"),
            },
        }
    }

    /// An asynchronous invocation as Lambda runs it: the deliverer is authorized first (a rule,
    /// topic or schedule by the function's resource policy or the schedule's role); then the
    /// function runs, retried on error, and what still fails goes to the function's dead-letter
    /// queue (or on-failure destination). An invocation its deliverer may not make goes to the
    /// deliverer's own dead-letter queue, as EventBridge, SNS and Scheduler send it.
    pub fn invoke_async(self: &Arc<Self>, function: String, payload: Bytes, delivery: Delivery) {
        let this = self.clone();
        tokio::spawn(async move {
            if let Err(denied) = this.authorize_delivery(&function, &delivery).await {
                this.record(
                    &function,
                    0,
                    &payload,
                    Some(&Outcome::FunctionError(Bytes::from(
                        json!({"errorType": "AccessDeniedException", "errorMessage": denied.message}).to_string(),
                    ))),
                );
                this.undeliverable(&delivery, &function, &payload, &denied.message)
                    .await;
                return;
            }
            let mut last = None;
            for attempt in 0..=ASYNC_RETRIES {
                if attempt > 0 {
                    tokio::time::sleep(this.retry_delay).await;
                }
                let outcome = this.lambdas.invoke(&function, payload.clone()).await;
                this.record(&function, attempt, &payload, outcome.as_ref());
                match outcome {
                    Some(Outcome::Success(_)) | None => return,
                    Some(Outcome::FunctionError(e)) => last = Some(e),
                }
            }
            let error = last.unwrap_or_default();
            tracing::warn!(%function, error = %String::from_utf8_lossy(&error), "async invocation failed after retries");
            this.dead_letter(&function, &payload, &error).await;
        });
    }

    /// lambda:InvokeFunction as the deliverer: a service by the function's resource policy, a
    /// schedule by its role's policies.
    async fn authorize_delivery(&self, function: &str, delivery: &Delivery) -> Result<(), crate::iam::Denied> {
        let account = &self.account;
        let who = match delivery {
            Delivery::Api => return Ok(()),
            Delivery::Rule { arn, .. } => Iam::service("events.amazonaws.com", arn, account),
            Delivery::Sns { topic_arn, .. } => {
                let owner = topic_arn.split(':').nth(4).unwrap_or(account).to_owned();
                Iam::service("sns.amazonaws.com", topic_arn, &owner)
            }
            Delivery::Schedule {
                role_arn: Some(role),
                arn,
                ..
            } => self
                .iam
                .session(role, arn.rsplit('/').next().unwrap_or("schedule"), None),
            Delivery::Schedule {
                role_arn: None, arn, ..
            } => Iam::service("events.amazonaws.com", arn, account),
        };
        let need =
            crate::iam::requests::invoke_need(&crate::iam::requests::function_arn(function, &self.region, account));
        self.iam.authorize(&who, &self.region, &[need]).await
    }

    /// What a deliverer does with an invocation it could not make: EventBridge and Scheduler
    /// send the event to the target's dead-letter queue, SNS the notification to the
    /// subscription's; each is itself authorized (by the queue's policy, or the schedule's role).
    async fn undeliverable(&self, delivery: &Delivery, function: &str, payload: &[u8], error: &str) {
        let target = crate::iam::requests::function_arn(function, &self.region, &self.account);
        let (queue, who, body, attributes) = match delivery {
            Delivery::Api => return,
            Delivery::Rule { arn, dead_letter } => (
                dead_letter,
                Iam::service("events.amazonaws.com", arn, &self.account),
                String::from_utf8_lossy(payload).into_owned(),
                vec![
                    ("RULE_ARN", arn.clone()),
                    ("TARGET_ARN", target),
                    ("ERROR_CODE", "NO_PERMISSIONS".to_owned()),
                    ("ERROR_MESSAGE", error.to_owned()),
                ],
            ),
            Delivery::Sns {
                topic_arn,
                notification,
                dead_letter,
            } => {
                let owner = topic_arn.split(':').nth(4).unwrap_or(&self.account).to_owned();
                (
                    dead_letter,
                    Iam::service("sns.amazonaws.com", topic_arn, &owner),
                    notification.to_string(),
                    vec![("ErrorCode", "403".to_owned()), ("ErrorMessage", error.to_owned())],
                )
            }
            Delivery::Schedule {
                arn,
                role_arn,
                dead_letter,
            } => (
                dead_letter,
                match role_arn {
                    Some(role) => self
                        .iam
                        .session(role, arn.rsplit('/').next().unwrap_or("schedule"), None),
                    None => Iam::service("events.amazonaws.com", arn, &self.account),
                },
                String::from_utf8_lossy(payload).into_owned(),
                vec![
                    ("SCHEDULE_ARN", arn.clone()),
                    ("TARGET_ARN", target),
                    ("ERROR_CODE", "AccessDeniedException".to_owned()),
                    ("ERROR_MESSAGE", error.to_owned()),
                ],
            ),
        };
        let Some(queue) = queue else {
            return tracing::error!(%function, "undeliverable, and no dead-letter queue: the event is lost");
        };
        self.send_dead_letter(queue, &who, body, &attributes).await;
    }

    fn record(&self, function: &str, attempt: u32, payload: &[u8], outcome: Option<&Outcome>) {
        let parse =
            |b: &[u8]| serde_json::from_slice(b).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(b).into()));
        let (status, response) = match outcome {
            Some(Outcome::Success(b)) => ("success", parse(b)),
            Some(Outcome::FunctionError(b)) => ("error", parse(b)),
            None => ("missing", Value::Null),
        };
        let entry = json!({"function": function, "attempt": attempt, "status": status, "request": parse(payload), "response": response});
        if let Ok(mut log) = self.invocations.lock() {
            log.push(entry);
        }
    }

    /// Lambda sends a failed asynchronous invocation to the function's dead-letter queue with
    /// the function's execution role.
    async fn dead_letter(&self, function: &str, payload: &[u8], error: &[u8]) {
        let Some(spec) = self.lambdas.spec(function) else {
            return;
        };
        let Some(queue_arn) = spec.on_failure.clone() else {
            return;
        };
        let who = self.iam.session(&spec.role_arn, function, Some(function));
        let err: Value = serde_json::from_slice(error).unwrap_or(Value::Null);
        let attributes = [
            ("ErrorCode", "200".to_owned()),
            (
                "ErrorMessage",
                err["errorMessage"].as_str().unwrap_or_default().to_owned(),
            ),
            ("ErrorType", err["errorType"].as_str().unwrap_or_default().to_owned()),
        ];
        self.send_dead_letter(
            &queue_arn,
            &who,
            String::from_utf8_lossy(payload).into_owned(),
            &attributes,
        )
        .await;
    }

    /// sqs:SendMessage to a dead-letter queue as `who`, then the message itself (in moto).
    async fn send_dead_letter(&self, queue_arn: &str, who: &Principal, body: String, attributes: &[(&str, String)]) {
        let region = queue_arn.split(':').nth(3).unwrap_or(&self.region).to_owned();
        let need = crate::iam::requests::send_message_need(queue_arn);
        if let Err(denied) = self.iam.authorize(who, &region, &[need]).await {
            return tracing::error!(%queue_arn, error = %denied.message, "cannot dead-letter: the message is lost");
        }
        let queue_name = queue_arn.rsplit(':').next().unwrap_or_default();
        let url = match self.sqs.get_queue_url().queue_name(queue_name).send().await {
            Ok(out) => out.queue_url.unwrap_or_default(),
            Err(e) => return tracing::error!(%queue_arn, error = %e.into_service_error(), "no dead-letter queue"),
        };
        let attr = |v: &str| {
            aws_sdk_sqs::types::MessageAttributeValue::builder()
                .data_type("String")
                .string_value(if v.is_empty() { "-" } else { v })
                .build()
                .ok()
        };
        let mut send = self.sqs.send_message().queue_url(url).message_body(body);
        for (k, v) in attributes {
            if let Some(a) = attr(v) {
                send = send.message_attributes(*k, a);
            }
        }
        if let Err(e) = send.send().await {
            tracing::error!(%queue_arn, error = %e.into_service_error(), "cannot dead-letter");
        }
    }

    // ------------------------------------------------------------ EventBridge

    async fn put_events_api(self: &Arc<Self>, body: &[u8]) -> Response<Body> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Entry {
            source: Option<String>,
            detail_type: Option<String>,
            detail: Option<String>,
            #[serde(default)]
            resources: Vec<String>,
            time: Option<f64>,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct PutEvents {
            entries: Vec<Entry>,
        }
        let Ok(req) = serde_json::from_slice::<PutEvents>(body) else {
            return aws_json_error(400, "ValidationException", "PutEvents needs Entries");
        };
        let mut results = Vec::new();
        let mut failed = 0;
        for e in req.entries {
            if e.source
                .as_deref()
                .is_some_and(|s| !crate::service_events::source_allowed(s))
            {
                failed += 1;
                results.push(json!({"ErrorCode": "NotAuthorizedForSourceException", "ErrorMessage": "Not authorized for the source."}));
                continue;
            }
            let detail = e.detail.as_deref().map(serde_json::from_str::<Value>);
            match (e.source, e.detail_type, detail) {
                (Some(source), Some(detail_type), Some(Ok(detail))) if detail.is_object() => {
                    let time = e
                        .time
                        .and_then(|t| chrono::DateTime::from_timestamp(t as i64, 0))
                        .unwrap_or_else(chrono::Utc::now);
                    let event = self.envelope(&source, &detail_type, e.resources, detail, time);
                    results.push(json!({"EventId": event["id"]}));
                    self.deliver(event);
                }
                _ => {
                    failed += 1;
                    results.push(json!({"ErrorCode": "MalformedDetail", "ErrorMessage": "Source, DetailType and a JSON object Detail are required"}));
                }
            }
        }
        json_response(200, &json!({"FailedEntryCount": failed, "Entries": results}))
    }

    pub fn envelope(
        &self,
        source: &str,
        detail_type: &str,
        resources: Vec<String>,
        detail: Value,
        time: chrono::DateTime<chrono::Utc>,
    ) -> Value {
        let mut e =
            crate::service_events::envelope(&self.account, &self.region, source, detail_type, resources, detail);
        e["time"] = json!(time.format("%Y-%m-%dT%H:%M:%SZ").to_string());
        e
    }

    /// A Parameter Store call as moto answers it, then the Parameter Store Change it makes.
    async fn parameter_change(
        self: &Arc<Self>,
        parts: hyper::http::request::Parts,
        body: Bytes,
        call: &crate::iam::requests::Call,
    ) -> Response<Body> {
        let (head, bytes) = match self.proxy_answered(parts, body).await {
            Ok(answered) => answered,
            Err(refused) => return refused,
        };
        let answered: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        for event in crate::service_events::parameter_changes(
            &call.operation,
            &call.account,
            &call.region,
            &call.json,
            &answered,
        ) {
            self.deliver(event);
        }
        Response::from_parts(head, full(bytes))
    }

    /// DescribeImages: the caller's own images as moto answers, and what other accounts made
    /// public or shared with it.
    async fn describe_images(
        self: &Arc<Self>,
        parts: hyper::http::request::Parts,
        body: Bytes,
        call: &crate::iam::requests::Call,
    ) -> Response<Body> {
        let answer = self.proxy(parts, body).await;
        let status = answer.status();
        let (head, answer) = answer.into_parts();
        let bytes = http_body_util::BodyExt::collect(answer)
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let own = String::from_utf8_lossy(&bytes).into_owned();
        let not_found = own.contains("InvalidAMIID.NotFound");
        if !status.is_success() && !not_found {
            return Response::from_parts(head, full(bytes));
        }
        let own = if status.is_success() {
            crate::shared_images::own_filtered(&own, &call.form, &call.account)
        } else {
            own
        };
        let others = self.iam.accounts();
        let extra = crate::shared_images::visible_from_others(
            self.iam.moto(),
            &call.region,
            &call.account,
            &others,
            &call.form,
        )
        .await;
        let deprecations = self
            .deprecations
            .lock()
            .map(|d| d.in_region(&call.region))
            .unwrap_or_default();
        let copies = self
            .copies
            .lock()
            .map(|c| c.in_region(&call.region))
            .unwrap_or_default();
        let now = std::time::Instant::now();
        let listing = !call.form.keys().any(|k| k.starts_with("ImageId."));
        let finish = |xml: &str| {
            crate::copies::as_ec2_shows(
                &crate::shared_images::as_ec2_shows(xml, &call.form, &call.account, &deprecations, chrono::Utc::now()),
                &copies,
                now,
                listing,
            )
        };
        if extra.is_empty() {
            let mut head = head;
            head.headers.remove(hyper::header::CONTENT_LENGTH);
            let body = if status.is_success() { finish(&own) } else { own };
            return Response::from_parts(head, full(body));
        }
        let xml = crate::shared_images::merged(status.is_success().then_some(own.as_str()), &extra);
        response(200, &[("Content-Type", "text/xml")], finish(&xml))
    }

    /// CopyImage as EC2 does it (see `copies`): the ClientToken's copy, the copy limit, then
    /// moto's copy with its tags, its encryption and its progress, and the AMI State Changes
    /// EC2 sends (pending, then available or failed).
    async fn copy_image(
        self: &Arc<Self>,
        parts: hyper::http::request::Parts,
        body: Bytes,
        call: &crate::iam::requests::Call,
    ) -> Response<Body> {
        use crate::copies::{Before, Copy, CopyRequest, KEY_FAILURE};
        let req = CopyRequest::from_form(&call.form);
        let xml = |id: &str| {
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?><CopyImageResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>{}</requestId><imageId>{id}</imageId></CopyImageResponse>",
                uuid::Uuid::new_v4()
            )
        };
        let before = self
            .copies
            .lock()
            .map(|c| c.before(&call.account, &call.region, &req, std::time::Instant::now()))
            .unwrap_or(Before::New);
        match before {
            Before::Replay(id) => return response(200, &[("Content-Type", "text/xml")], xml(&id)),
            Before::Refuse(code, message) => {
                return response(400, &[("Content-Type", "text/xml")], ec2_error(code, &message))
            }
            Before::New => {}
        }
        let (_, bytes) = match self.proxy_answered(parts, body).await {
            Ok(answered) => answered,
            Err(refused) => return refused,
        };
        let Some(id) = xml_elements(&String::from_utf8_lossy(&bytes), "imageId")
            .first()
            .map(|s| xml_unescape(s))
        else {
            return response(200, &[("Content-Type", "text/xml")], bytes);
        };
        let moto = self.iam.moto();
        let (region, account) = (call.region.clone(), call.account.clone());
        let mut image_tags = req.tag_specifications.get("image").cloned().unwrap_or_default();
        if req.copy_image_tags {
            for (k, v) in moto.ec2_tags(&req.source_region, &account, &req.source_image_id).await {
                image_tags.entry(k).or_insert(v);
            }
        }
        let described = moto
            .query_ec2(&region, &account, &[("Action", "DescribeImages"), ("ImageId.1", &id)])
            .await
            .unwrap_or_default();
        let snapshots: Vec<String> = xml_elements(&described, "snapshotId")
            .iter()
            .map(|s| xml_unescape(s))
            .collect();
        let snapshot_tags = req.tag_specifications.get("snapshot").cloned().unwrap_or_default();
        for (resources, tags) in [(vec![id.clone()], &image_tags), (snapshots, &snapshot_tags)] {
            if tags.is_empty() || resources.is_empty() {
                continue;
            }
            let mut params: Vec<(String, String)> = vec![("Action".into(), "CreateTags".into())];
            for (i, r) in resources.iter().enumerate() {
                params.push((format!("ResourceId.{}", i + 1), r.clone()));
            }
            for (i, (k, v)) in tags.iter().enumerate() {
                params.push((format!("Tag.{}.Key", i + 1), k.clone()));
                params.push((format!("Tag.{}.Value", i + 1), v.clone()));
            }
            let params: Vec<(&str, &str)> = params.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            if let Err(e) = moto.query_ec2(&region, &account, &params).await {
                tracing::warn!(image = %id, error = %e, "could not tag the copy");
            }
        }
        // The key EC2 encrypts the copy's snapshots with: the one named (it must exist in the
        // target region), else the account's default EBS key.
        let (kms_key_arn, failure) = match (req.encrypted, &req.kms_key_id) {
            (false, _) => (None, None),
            (true, None) => (Some(format!("arn:aws:kms:{region}:{account}:alias/aws/ebs")), None),
            (true, Some(key)) => match moto.kms_key(&region, &account, key).await {
                Some((arn, _)) => (Some(arn), None),
                None => (None, Some(KEY_FAILURE.to_owned())),
            },
        };
        let knobs = self.copies.lock().map(|c| c.knobs.clone()).unwrap_or_default();
        let pending = knobs.pending;
        let failed = failure.is_some();
        let copy = Copy {
            ready_at: std::time::Instant::now() + pending,
            listed_at: std::time::Instant::now() + knobs.unlisted,
            failure,
            kms_key_arn,
        };
        if let Ok(mut c) = self.copies.lock() {
            c.made(&account, &region, &req, &id, copy);
        }
        self.deliver(crate::service_events::ami_state_change(
            &account, &region, &id, "pending",
        ));
        let this = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(pending).await;
            let state = if failed { "failed" } else { "available" };
            this.deliver(crate::service_events::ami_state_change(&account, &region, &id, state));
        });
        response(200, &[("Content-Type", "text/xml")], bytes)
    }

    /// Whether `caller` may launch `image_id` in `region`: its own, public, or shared with it.
    async fn image_launchable(&self, region: &str, caller: &str, image_id: &str) -> bool {
        self.image_access(region, caller, image_id).await != ImageAccess::None
    }

    /// What `caller` has of `image_id` in `region`.
    async fn image_access(&self, region: &str, caller: &str, image_id: &str) -> ImageAccess {
        let params = [
            ("Action", "DescribeImages"),
            ("Version", "2016-11-15"),
            ("ImageId.1", image_id),
        ];
        let own = self.iam.moto().query_ec2(region, caller, &params).await;
        if own.is_ok_and(|xml| !crate::shared_images::image_items(&xml).is_empty()) {
            return ImageAccess::Owned;
        }
        let form = params.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        let others =
            crate::shared_images::visible_from_others(self.iam.moto(), region, caller, &self.iam.accounts(), &form)
                .await;
        if others.is_empty() {
            ImageAccess::None
        } else {
            ImageAccess::Visible
        }
    }

    /// DisableImage "removes all launch permissions from the AMI" (accounts, organizations,
    /// OUs, public); moto only sets its state, so the gateway takes them away.
    async fn remove_launch_permissions(&self, region: &str, account: &str, image_id: &str) {
        let moto = self.iam.moto();
        let described = moto
            .query_ec2(
                region,
                account,
                &[
                    ("Action", "DescribeImageAttribute"),
                    ("Version", "2016-11-15"),
                    ("ImageId", image_id),
                    ("Attribute", "launchPermission"),
                ],
            )
            .await
            .unwrap_or_default();
        let mut params: Vec<(String, String)> = vec![
            ("Action".into(), "ModifyImageAttribute".into()),
            ("Version".into(), "2016-11-15".into()),
            ("ImageId".into(), image_id.into()),
        ];
        let permissions = xml_elements(&described, "launchPermission").concat();
        for (n, item) in xml_elements(&permissions, "item").into_iter().enumerate() {
            for tag in ["userId", "group", "organizationArn", "organizationalUnitArn"] {
                if let Some(v) = xml_elements(item, tag).first() {
                    let mut key = tag.to_owned();
                    key[..1].make_ascii_uppercase();
                    params.push((format!("LaunchPermission.Remove.{}.{key}", n + 1), xml_unescape(v)));
                }
            }
        }
        if params.len() == 3 {
            return;
        }
        let refs: Vec<(&str, &str)> = params.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        if let Err(e) = moto.query_ec2(region, account, &refs).await {
            tracing::warn!(image = %image_id, error = %e, "could not remove the disabled image's launch permissions");
        }
    }

    /// Why an image call that only the image's owner may make is refused, if it is: a malformed
    /// id, or an image the caller can see but does not own (EC2 answers `AuthFailure`, "Not
    /// authorized for image:…", as it does to a non-owner's DescribeImageAttribute; its common
    /// errors list AuthFailure for "trying to use an AMI for which you do not have permission").
    /// With `unknown_refused`, an image the caller cannot see at all is InvalidAMIID.NotFound;
    /// without, that answer is left to moto (which also knows deregistered images).
    async fn owner_only(&self, call: &crate::iam::requests::Call, unknown_refused: bool) -> Option<Response<Body>> {
        let refuse =
            |code: &str, message: &str| Some(response(400, &[("Content-Type", "text/xml")], ec2_error(code, message)));
        let Some(image) = call.form.get("ImageId") else {
            return refuse("MissingParameter", "The request must contain the parameter ImageId");
        };
        if !crate::deprecation::is_image_id(image) {
            return refuse(
                "InvalidAMIID.Malformed",
                &format!("Invalid id: \"{image}\" (expecting \"ami-...\")"),
            );
        }
        match self.image_access(&call.region, &call.account, image).await {
            ImageAccess::Owned => None,
            ImageAccess::Visible => refuse("AuthFailure", &format!("Not authorized for image:{image}")),
            ImageAccess::None if unknown_refused => refuse(
                "InvalidAMIID.NotFound",
                &format!("The image id '[{image}]' does not exist"),
            ),
            ImageAccess::None => None,
        }
    }

    /// An EC2 image call as moto answers it, then the EC2 AMI State Change it makes. Only the
    /// owner may disable or enable an image (moto lets any account that has the id); a disabled
    /// image loses every launch permission (moto keeps them); a deregistered one its deprecation.
    async fn image_change(
        self: &Arc<Self>,
        parts: hyper::http::request::Parts,
        body: Bytes,
        call: &crate::iam::requests::Call,
    ) -> Response<Body> {
        if matches!(call.operation.as_str(), "DisableImage" | "EnableImage") {
            if let Some(refused) = self.owner_only(call, false).await {
                return refused;
            }
        }
        let (head, bytes) = match self.proxy_answered(parts, body).await {
            Ok(answered) => answered,
            Err(refused) => return refused,
        };
        let image = call.form.get("ImageId").map(String::as_str);
        match (call.operation.as_str(), image) {
            ("DisableImage", Some(id)) => self.remove_launch_permissions(&call.region, &call.account, id).await,
            ("DeregisterImage", Some(id)) => {
                if let Ok(mut d) = self.deprecations.lock() {
                    d.forget(&call.region, id);
                }
            }
            _ => {}
        }
        if let Some((id, state)) =
            crate::service_events::image_change(&call.operation, image, &String::from_utf8_lossy(&bytes))
        {
            self.deliver(crate::service_events::ami_state_change(
                &call.account,
                &call.region,
                &id,
                state,
            ));
        }
        Response::from_parts(head, full(bytes))
    }

    /// Puts one event on its account's bus in its region. On the stack's bus, every matching
    /// rule of the stack invokes its function asynchronously. On any other bus (another
    /// account's, or another region's), that account's own rules there may forward it to the
    /// stack's bus, if the stack's bus policy lets the sender put events on it.
    pub fn deliver(self: &Arc<Self>, event: Value) {
        if let Ok(mut log) = self.events.lock() {
            log.push(event.clone());
        }
        if event["account"] != self.account.as_str() || event["region"] != self.region.as_str() {
            let this = self.clone();
            tokio::spawn(async move { this.forward(event).await });
            return;
        }
        self.deliver_to_stack(event);
    }

    /// What the rules of the event's own account and region send to the stack's bus: each is
    /// authorized (events:PutEvents on the stack's bus, as the rule's target role or the
    /// account); a refused one is lost, as EventBridge drops what a target refuses.
    async fn forward(self: Arc<Self>, event: Value) {
        let (Some(account), Some(region)) = (event["account"].as_str(), event["region"].as_str()) else {
            return;
        };
        let bus = self.iam.bus_arn.clone();
        for (rule, pattern, targets) in self.iam.moto().event_rules(region, account).await {
            if !pattern::matches(&pattern, &event) {
                continue;
            }
            for (_, role) in targets.iter().filter(|(arn, _)| *arn == bus) {
                let who = self.iam.sender(account, role.as_deref());
                let need = crate::iam::requests::put_events_need(
                    &bus,
                    event["source"].as_str().unwrap_or_default(),
                    event["detail-type"].as_str().unwrap_or_default(),
                );
                match self.iam.authorize(&who, &self.region, &[need]).await {
                    Ok(()) => {
                        tracing::info!(%rule, %account, detail_type = %event["detail-type"], "event forwarded to the stack's bus");
                        self.deliver_to_stack(event.clone());
                    }
                    Err(denied) => {
                        tracing::warn!(%rule, %account, error = %denied.message, "the stack's bus refused a forwarded event")
                    }
                }
            }
        }
    }

    fn deliver_to_stack(self: &Arc<Self>, event: Value) {
        let payload = Bytes::from(event.to_string());
        for rule in self.rules.iter().filter(|r| pattern::matches(&r.pattern, &event)) {
            tracing::info!(rule = %rule.name, function = %rule.function, detail_type = %event["detail-type"], "delivering event");
            let delivery = Delivery::Rule {
                arn: rule.arn.clone(),
                dead_letter: rule.dead_letter.clone(),
            };
            self.invoke_async(rule.function.clone(), payload.clone(), delivery);
        }
    }

    /// Fires a schedule by hand: Scheduler's Input with its context attributes filled in, or
    /// the "Scheduled Event" a rule schedule sends.
    pub fn fire_schedule(self: &Arc<Self>, name: &str) -> Option<Value> {
        let s = self.schedules.iter().find(|s| s.name == name)?;
        let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
        let payload = match (&s.input, s.scheduler) {
            (Some(input), true) => {
                let arn = &s.arn;
                let filled = input
                    .replace("<aws.scheduler.schedule-arn>", arn)
                    .replace("<aws.scheduler.scheduled-time>", &now)
                    .replace(
                        "<aws.scheduler.execution-id>",
                        &uuid::Uuid::new_v4().simple().to_string()[..16],
                    )
                    .replace("<aws.scheduler.attempt-number>", "1");
                serde_json::from_str(&filled).unwrap_or(Value::String(filled))
            }
            (Some(input), false) => serde_json::from_str(input).unwrap_or(Value::String(input.clone())),
            (None, scheduler) => {
                let source = if scheduler { "aws.scheduler" } else { "aws.events" };
                self.envelope(
                    source,
                    "Scheduled Event",
                    vec![s.arn.clone()],
                    json!({}),
                    chrono::Utc::now(),
                )
            }
        };
        let delivery = Delivery::Schedule {
            arn: s.arn.clone(),
            role_arn: s.role_arn.clone(),
            dead_letter: s.dead_letter.clone(),
        };
        self.invoke_async(s.function.clone(), Bytes::from(payload.to_string()), delivery);
        Some(payload)
    }

    // ------------------------------------------------------------ SNS

    /// Publish and PublishBatch: moto keeps the topic and delivers to its SQS subscriptions;
    /// once it has accepted the message, every template Lambda subscription of the topic whose
    /// filter policy matches is invoked asynchronously with the event SNS sends Lambda.
    async fn publish(
        self: &Arc<Self>,
        parts: hyper::http::request::Parts,
        body: Bytes,
        operation: &str,
        query: &str,
    ) -> Response<Body> {
        let params = query_params(query, &body);
        let answer = self.proxy(parts, body).await;
        if answer.status() != hyper::StatusCode::OK {
            return answer;
        }
        let Some((topic, messages)) = sns::published(operation, &params) else {
            return answer;
        };
        let foreign: Vec<ForeignSubscription> = self
            .foreign_subscriptions
            .lock()
            .map(|f| {
                f.iter()
                    .filter(|s| s.subscription.topic_arn == topic)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        if foreign.is_empty() && !self.sns_subscribers.iter().any(|s| s.subscription.topic_arn == topic) {
            return answer;
        }
        let (head, answer) = answer.into_parts();
        let xml = http_body_util::BodyExt::collect(answer)
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let ids = sns::message_ids(operation, &String::from_utf8_lossy(&xml));
        let now = chrono::Utc::now();
        for m in &messages {
            let Some(message_id) = ids.get(&m.entry_id) else {
                continue;
            };
            for f in foreign.iter().filter(|f| sns::accepts(&f.subscription, m)) {
                self.deliver_to_queue(f, &topic, message_id, m, now).await;
            }
            for s in self
                .sns_subscribers
                .iter()
                .filter(|s| s.subscription.topic_arn == topic)
            {
                let sub = &s.subscription;
                if let Err(why) = self.subscribed(sub, &topic).await {
                    tracing::warn!(subscription = %sub.name, %topic, %why, "no such subscription");
                    if let Ok(mut log) = self.sns_deliveries.lock() {
                        log.push(json!({
                            "subscription": sub.name,
                            "subscriptionArn": s.arn,
                            "topicArn": topic,
                            "function": sub.function,
                            "messageId": message_id,
                            "status": "refused",
                            "reason": why,
                        }));
                    }
                    continue;
                }
                let accepted = sns::accepts(sub, m);
                let event = accepted.then(|| sns::lambda_event(&s.arn, &topic, message_id, m, now));
                tracing::info!(subscription = %sub.name, function = %sub.function, %message_id, accepted, "SNS message to a Lambda subscription");
                if let Ok(mut log) = self.sns_deliveries.lock() {
                    log.push(json!({
                        "subscription": sub.name,
                        "subscriptionArn": s.arn,
                        "topicArn": topic,
                        "function": sub.function,
                        "messageId": message_id,
                        "status": if accepted { "delivered" } else { "filtered" },
                        "event": event,
                    }));
                }
                if let Some(event) = event {
                    let delivery = Delivery::Sns {
                        topic_arn: topic.clone(),
                        notification: event["Records"][0]["Sns"].clone(),
                        dead_letter: sub.dead_letter.clone(),
                    };
                    self.invoke_async(sub.function.clone(), Bytes::from(event.to_string()), delivery);
                }
            }
        }
        Response::from_parts(head, full(xml))
    }

    /// Subscribe as moto answers it. moto keeps a subscription of another account's topic in the
    /// subscriber's account, where the topic's publishes never find it: the gateway delivers
    /// those (SQS endpoints) itself.
    async fn subscribe(
        &self,
        parts: hyper::http::request::Parts,
        body: Bytes,
        query: &str,
        call: &crate::iam::requests::Call,
    ) -> Response<Body> {
        let params = query_params(query, &body);
        let answer = self.proxy(parts, body).await;
        let topic = params.get("TopicArn").cloned().unwrap_or_default();
        let topic_account = topic.split(':').nth(4).unwrap_or_default().to_owned();
        if answer.status() != hyper::StatusCode::OK
            || params.get("Protocol").map(String::as_str) != Some("sqs")
            || topic_account == call.account
        {
            return answer;
        }
        let (head, answer) = answer.into_parts();
        let xml = http_body_util::BodyExt::collect(answer)
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let text = String::from_utf8_lossy(&xml).into_owned();
        let arn = xml_elements(&text, "SubscriptionArn")
            .first()
            .map(|s| xml_unescape(s))
            .unwrap_or_default();
        let attribute = |name: &str| {
            (1..=10).find_map(|i| {
                (params.get(&format!("Attributes.entry.{i}.key")).map(String::as_str) == Some(name))
                    .then(|| params.get(&format!("Attributes.entry.{i}.value")).cloned())
                    .flatten()
            })
        };
        let filter_policy = attribute("FilterPolicy").and_then(|p| serde_json::from_str(&p).ok());
        let scope = match attribute("FilterPolicyScope").as_deref() {
            Some("MessageBody") => crate::template::FilterScope::MessageBody,
            _ => crate::template::FilterScope::MessageAttributes,
        };
        let subscription = SnsSubscription {
            name: arn.clone(),
            topic_arn: topic,
            function: String::new(),
            filter_policy,
            filter_scope: scope,
            region: None,
            dead_letter: None,
        };
        if let Ok(mut f) = self.foreign_subscriptions.lock() {
            f.push(ForeignSubscription {
                arn,
                queue_arn: params.get("Endpoint").cloned().unwrap_or_default(),
                raw: attribute("RawMessageDelivery").as_deref() == Some("true"),
                subscription,
            });
        }
        Response::from_parts(head, full(xml))
    }

    /// SNS sends to a queue of another account as the service, by the queue's policy.
    async fn deliver_to_queue(
        &self,
        f: &ForeignSubscription,
        topic: &str,
        message_id: &str,
        m: &sns::Message,
        now: chrono::DateTime<chrono::Utc>,
    ) {
        let owner = topic.split(':').nth(4).unwrap_or_default();
        let sns_service = Iam::service("sns.amazonaws.com", topic, owner);
        let need = crate::iam::requests::send_message_need(&f.queue_arn);
        let region = f.queue_arn.split(':').nth(3).unwrap_or(&self.region).to_owned();
        let status = match self.iam.authorize(&sns_service, &region, &[need]).await {
            Err(denied) => {
                tracing::warn!(subscription = %f.arn, queue = %f.queue_arn, error = %denied.message, "the queue's policy refuses SNS");
                "refused"
            }
            Ok(()) => {
                let body = sns::queue_body(&f.arn, topic, message_id, m, now, f.raw);
                match self.iam.moto().send_to_queue(&f.queue_arn, &body).await {
                    Ok(()) => "delivered",
                    Err(e) => {
                        tracing::warn!(subscription = %f.arn, queue = %f.queue_arn, error = %e, "SNS could not send to the queue");
                        "failed"
                    }
                }
            }
        };
        if let Ok(mut log) = self.sns_deliveries.lock() {
            log.push(json!({
                "subscriptionArn": f.arn,
                "topicArn": topic,
                "queueArn": f.queue_arn,
                "messageId": message_id,
                "status": status,
            }));
        }
    }

    /// Whether the template's subscription could have been made on `topic` as the stack was
    /// deployed: SNS subscribes in the topic's region (the subscription's `Region`, else the
    /// stack's), and a topic of another account must let the deployer subscribe (its topic policy).
    async fn subscribed(&self, sub: &crate::template::SnsSubscription, topic: &str) -> Result<(), String> {
        let mut parts = topic.split(':').skip(3);
        let (topic_region, topic_account) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
        let region = sub.region.as_deref().unwrap_or(&self.region);
        if region != topic_region {
            return Err(format!(
                "the subscription is in {region} and the topic in {topic_region}: name the topic's Region"
            ));
        }
        if topic_account == self.account {
            return Ok(());
        }
        let deployer = self.iam.sender(&self.account, None);
        let endpoint = crate::iam::requests::function_arn(&sub.function, &self.region, &self.account);
        let need = crate::iam::requests::subscribe_need(topic, "lambda", &endpoint);
        self.iam
            .authorize(&deployer, topic_region, &[need])
            .await
            .map_err(|d| d.message)
    }

    // ------------------------------------------------------------ admin (test knobs)

    async fn admin(self: &Arc<Self>, method: &hyper::Method, path: &str, body: &[u8]) -> Response<Body> {
        let arg: Value = serde_json::from_slice(body).unwrap_or(json!({}));
        let ok = || json_response(200, &json!({"ok": true}));
        let bad = |m: &str| json_response(400, &json!({"error": m}));
        match (method.as_str(), path) {
            ("GET", "health") => ok(),
            ("GET", "throttles") => {
                let t = self.throttles.lock().map(|t| t.clone()).unwrap_or_default();
                let rows: Vec<Value> = t
                    .into_iter()
                    .map(|((s, o), k)| {
                        json!({"service": s, "operation": o, "remaining": k.remaining, "code": k.code, "function": k.function})
                    })
                    .collect();
                json_response(200, &json!(rows))
            }
            ("GET", "events") => json_response(200, &json!(self.events.lock().map(|e| e.clone()).unwrap_or_default())),
            ("GET", "authorizations") => json_response(200, &json!(self.iam.decisions())),
            ("GET", "invocations") => json_response(
                200,
                &json!(self.invocations.lock().map(|e| e.clone()).unwrap_or_default()),
            ),
            ("GET", "sns-deliveries") => json_response(
                200,
                &json!(self.sns_deliveries.lock().map(|e| e.clone()).unwrap_or_default()),
            ),
            ("POST", "ec2/copies/complete") => {
                if let Ok(mut c) = self.copies.lock() {
                    c.complete_all(std::time::Instant::now());
                }
                ok()
            }
            ("POST", "ec2/copies") => {
                let pending = Duration::from_millis(arg["pendingMs"].as_u64().unwrap_or(0));
                let limit = arg["concurrentLimit"].as_u64().map(|n| n as usize);
                let unlisted = Duration::from_millis(arg["unlistedMs"].as_u64().unwrap_or(0));
                if let Ok(mut c) = self.copies.lock() {
                    c.knobs = crate::copies::Knobs {
                        pending,
                        concurrent_limit: limit,
                        unlisted,
                    };
                }
                ok()
            }
            ("GET", "ec2/allowed-images") => {
                let a = self.allowed_images.lock().map(|a| a.clone()).unwrap_or_default();
                json_response(200, &json!({"state": a.state, "imageProviders": a.providers}))
            }
            ("POST", "ec2/allowed-images") => {
                let state = match arg["state"].as_str() {
                    Some(s @ ("enabled" | "disabled" | "audit-mode")) => s.to_owned(),
                    _ => return bad("state is enabled, disabled or audit-mode"),
                };
                let mut providers = Vec::new();
                for p in arg["imageProviders"].as_array().into_iter().flatten() {
                    match p.as_str() {
                        Some(p) if is_image_provider(p) => providers.push(p.to_owned()),
                        _ => {
                            let aliases = IMAGE_PROVIDER_ALIASES.join(", ");
                            return bad(&format!(
                                "an image provider is an account id or one of {aliases}, not {p}"
                            ));
                        }
                    }
                }
                if let Ok(mut a) = self.allowed_images.lock() {
                    *a = AllowedImages { state, providers };
                }
                ok()
            }
            ("POST", knob @ ("throttle" | "fail-calls")) => {
                let (Some(service), Some(operation)) = (arg["service"].as_str(), arg["operation"].as_str()) else {
                    return bad("service and operation are required");
                };
                let code = match (knob, arg["code"].as_str()) {
                    ("throttle", _) => None,
                    (_, Some(code)) => Some(code.to_owned()),
                    (_, None) => return bad("fail-calls needs the error code to answer"),
                };
                let function = arg["function"].as_str().map(str::to_owned);
                if let Some(f) = function.as_deref().filter(|f| self.lambdas.spec(f).is_none()) {
                    return bad(&format!("no function named {f}"));
                }
                let knob = Knob {
                    remaining: arg["count"].as_u64().unwrap_or(1) as u32,
                    code,
                    function,
                };
                if let Ok(mut t) = self.throttles.lock() {
                    t.insert((service.to_owned(), operation.to_owned()), knob);
                }
                ok()
            }
            ("POST", knob @ ("lambda/kill-after" | "lambda/hold-answer")) => {
                let (Some(function), Some(service), Some(operation)) = (
                    arg["function"].as_str(),
                    arg["service"].as_str(),
                    arg["operation"].as_str(),
                ) else {
                    return bad("function, service and operation are required");
                };
                if self.lambdas.spec(function).is_none() {
                    return bad(&format!("no function named {function}"));
                }
                let then = match (knob, arg["ms"].as_u64()) {
                    ("lambda/kill-after", _) => AfterCall::Kill,
                    (_, Some(ms)) => AfterCall::Hold(Duration::from_millis(ms)),
                    (_, None) => return bad("hold-answer needs ms"),
                };
                if let Ok(mut k) = self.call_knobs.lock() {
                    k.push(CallKnob {
                        function: function.to_owned(),
                        service: service.to_owned(),
                        operation: operation.to_owned(),
                        remaining: arg["count"].as_u64().unwrap_or(1) as u32,
                        then,
                    });
                }
                ok()
            }
            ("GET", "lambda/call-knobs") => {
                let rows: Vec<Value> = self
                    .call_knobs
                    .lock()
                    .map(|k| {
                        k.iter()
                            .map(|k| json!({"function": k.function, "service": k.service, "operation": k.operation, "remaining": k.remaining}))
                            .collect()
                    })
                    .unwrap_or_default();
                json_response(200, &json!(rows))
            }
            ("POST", "throttle-first") => {
                if let Ok(mut t) = self.throttle_first.lock() {
                    *t = ThrottleFirst {
                        count: arg["count"].as_u64().unwrap_or(1) as u32,
                        seen: Default::default(),
                    };
                }
                ok()
            }
            ("GET", "throttle-first") => {
                let t = self.throttle_first.lock().map(|t| t.clone()).unwrap_or_default();
                let rows: Vec<Value> = t
                    .seen
                    .iter()
                    .map(
                        |((s, o), n)| json!({"service": s, "operation": o, "calls": n, "throttled": (*n).min(t.count)}),
                    )
                    .collect();
                json_response(200, &json!(rows))
            }
            ("POST", "imagebuilder/fail-next-build") => {
                let phase = match arg["phase"].as_str() {
                    Some("BUILDING") => FailPhase::Building,
                    Some("TESTING") => FailPhase::Testing,
                    _ => return bad("phase is BUILDING or TESTING"),
                };
                self.emulator.fail_next_build(
                    phase,
                    arg["reason"].as_str().unwrap_or("failed by a test knob").to_owned(),
                );
                ok()
            }
            ("POST", "imagebuilder/scan-findings") => match serde_json::from_value::<FindingCounts>(arg) {
                Ok(counts) => {
                    self.emulator.set_next_scan_findings(counts);
                    ok()
                }
                Err(e) => bad(&e.to_string()),
            },
            ("POST", "imagebuilder/phase-durations") => {
                let ms = |k: &str| Duration::from_millis(arg[k].as_u64().unwrap_or(200));
                self.emulator.set_phase_durations(PhaseDurations {
                    pending: ms("pendingMs"),
                    building: ms("buildingMs"),
                    testing: ms("testingMs"),
                    distributing: ms("distributingMs"),
                });
                ok()
            }
            ("POST", "imagebuilder/drop-events") => {
                self.emulator
                    .drop_next_state_change_events(arg["count"].as_u64().unwrap_or(1) as u32);
                ok()
            }
            ("POST", p) if p.starts_with("schedules/") && p.ends_with("/fire") => {
                let name = p.trim_start_matches("schedules/").trim_end_matches("/fire");
                match self.fire_schedule(name) {
                    Some(payload) => json_response(200, &json!({"payload": payload})),
                    None => json_response(404, &json!({"error": format!("no schedule named {name}")})),
                }
            }
            _ => json_response(
                404,
                &json!({"error": format!("no admin operation {method} /_bakery/{path}")}),
            ),
        }
    }

    /// moto lacks image deprecation; the gateway keeps it per region and image (see
    /// `deprecation`), for the image's owner only, shows it in DescribeImages, and lists it at
    /// `GET /_bakery/deprecations`.
    async fn image_deprecation(&self, operation: &str, call: &crate::iam::requests::Call) -> Response<Body> {
        let refuse =
            |code: &str, message: &str| response(400, &[("Content-Type", "text/xml")], ec2_error(code, message));
        let at = match operation {
            "EnableImageDeprecation" => match crate::deprecation::deprecate_at(&call.form, chrono::Utc::now()) {
                Ok(at) => Some(at),
                Err((code, message)) => return refuse(code, &message),
            },
            _ => None,
        };
        if let Some(refused) = self.owner_only(call, true).await {
            return refused;
        }
        if call.form.get("DryRun").is_some_and(|v| v == "true") {
            return response(
                412,
                &[("Content-Type", "text/xml")],
                ec2_error(
                    "DryRunOperation",
                    "Request would have succeeded, but DryRun flag is set.",
                ),
            );
        }
        let image = call.form.get("ImageId").map(String::as_str).unwrap_or_default();
        if let Ok(mut d) = self.deprecations.lock() {
            match at {
                Some(at) => d.set(&call.region, image, at),
                None => d.forget(&call.region, image),
            }
        }
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><{operation}Response xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\">\
             <requestId>{}</requestId><return>true</return></{operation}Response>",
            uuid::Uuid::new_v4()
        );
        response(200, &[("Content-Type", "text/xml")], body)
    }

    /// moto lacks Allowed AMIs; the gateway answers GetAllowedImagesSettings from the state the
    /// `ec2/allowed-images` knob sets (disabled, no criteria, by default).
    fn allowed_images_settings(&self, query: &str, body: &[u8]) -> Response<Body> {
        if query_params(query, body).get("DryRun").is_some_and(|v| v == "true") {
            return response(
                412,
                &[("Content-Type", "text/xml")],
                ec2_error(
                    "DryRunOperation",
                    "Request would have succeeded, but DryRun flag is set.",
                ),
            );
        }
        let a = self.allowed_images.lock().map(|a| a.clone()).unwrap_or_default();
        response(200, &[("Content-Type", "text/xml")], allowed_images_xml(&a))
    }

    /// `Some(None)`: throttle this call; `Some(Some(code))`: fail it with `code`; `None`: let it
    /// through. `function` is the function whose invocation makes the call, if one does.
    fn take_knob(&self, service: &str, operation: &str, function: Option<&str>) -> Option<Option<String>> {
        let mut t = self.throttles.lock().ok()?;
        let knob = t
            .get_mut(&(service.to_owned(), operation.to_owned()))
            .filter(|k| k.remaining > 0 && (k.function.is_none() || k.function.as_deref() == function))?;
        knob.remaining -= 1;
        Some(knob.code.clone())
    }

    // ------------------------------------------------------------ STS

    /// STS AssumeRole is moto's; the gateway keeps who the session's access key belongs to.
    async fn assume_role(&self, parts: hyper::http::request::Parts, body: Bytes) -> Response<Body> {
        let (head, xml) = match self.proxy_answered(parts, body).await {
            Ok(answered) => answered,
            Err(refused) => return refused,
        };
        let text = String::from_utf8_lossy(&xml);
        let first = |tag: &str| xml_elements(&text, tag).first().map(|s| xml_unescape(s));
        if let (Some(key), Some(user)) = (first("AccessKeyId"), first("AssumedRoleUser")) {
            if let Some(arn) = xml_elements(&user, "Arn").first() {
                self.iam.learn_session(&key, &xml_unescape(arn));
            }
        }
        Response::from_parts(head, full(xml))
    }

    // ------------------------------------------------------------ moto

    /// moto's answer when it is a success, read whole (head and body), for the gateway to act
    /// on and then return; any other answer as it is.
    async fn proxy_answered(
        &self,
        parts: hyper::http::request::Parts,
        body: Bytes,
    ) -> Result<(hyper::http::response::Parts, Bytes), Response<Body>> {
        let answer = self.proxy(parts, body).await;
        if answer.status() != hyper::StatusCode::OK {
            return Err(answer);
        }
        let (head, answer) = answer.into_parts();
        let bytes = http_body_util::BodyExt::collect(answer)
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        Ok((head, bytes))
    }

    async fn proxy(&self, parts: hyper::http::request::Parts, body: Bytes) -> Response<Body> {
        let path_query = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let uri = format!("{}{}", self.moto, path_query);
        let mut req = Request::builder().method(parts.method).uri(uri);
        for (k, v) in &parts.headers {
            req = req.header(k, v);
        }
        let Ok(req) = req.body(full(body)) else {
            return aws_json_error(400, "InvalidRequest", "cannot forward the request");
        };
        match self.client.request(req).await {
            Ok(resp) => {
                let (parts, body) = resp.into_parts();
                let bytes = http_body_util::BodyExt::collect(body)
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                Response::from_parts(parts, full(bytes))
            }
            Err(e) => aws_json_error(502, "ServiceUnavailable", &format!("moto did not answer: {e}")),
        }
    }
}

/// The service a request is for: the SigV4 credential scope, or the path for unsigned calls.
fn service_of(headers: &hyper::HeaderMap, path: &str) -> String {
    let scope = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|a| a.split("Credential=").nth(1))
        .and_then(|c| c.split('/').nth(3));
    match scope {
        Some(s) => s.to_owned(),
        None if path.starts_with("/2015-03-31/functions/") => "lambda".into(),
        None => String::new(),
    }
}

/// The operation name, for throttle knobs: awsJson's X-Amz-Target, the query protocol's
/// Action, or the path for the REST protocols.
fn operation_of(
    service: &str,
    method: &hyper::Method,
    headers: &hyper::HeaderMap,
    path: &str,
    query: &str,
    body: &[u8],
) -> String {
    if let Some(target) = headers.get("x-amz-target").and_then(|v| v.to_str().ok()) {
        return target.rsplit('.').next().unwrap_or_default().to_owned();
    }
    let form = if query.contains("Action=") {
        query.as_bytes()
    } else {
        body
    };
    if let Some(action) = form.split(|&b| b == b'&').find_map(|kv| kv.strip_prefix(b"Action=")) {
        return String::from_utf8_lossy(action).into_owned();
    }
    match service {
        "lambda" if path.ends_with("/invocations") => "Invoke".into(),
        "imagebuilder" if path.starts_with("/tags/") => match method.as_str() {
            "POST" => "TagResource".into(),
            "DELETE" => "UntagResource".into(),
            _ => "ListTagsForResource".into(),
        },
        _ => path
            .trim_start_matches('/')
            .split('/')
            .next()
            .unwrap_or_default()
            .to_owned(),
    }
}

fn is_image_provider(p: &str) -> bool {
    IMAGE_PROVIDER_ALIASES.contains(&p) || (p.len() == 12 && p.bytes().all(|b| b.is_ascii_digit()))
}

/// GetAllowedImagesSettings' answer as EC2 sends it (aws-sdk-ec2 reads `imageCriterionSet`).
/// The providers are validated by the knob, so they need no escaping.
fn allowed_images_xml(a: &AllowedImages) -> String {
    let criteria = if a.providers.is_empty() {
        String::new()
    } else {
        let items: String = a.providers.iter().map(|p| format!("<item>{p}</item>")).collect();
        format!("<item><imageProviderSet>{items}</imageProviderSet></item>")
    };
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><GetAllowedImagesSettingsResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\">\
         <requestId>{}</requestId><state>{}</state><imageCriterionSet>{criteria}</imageCriterionSet>\
         <managedBy>account</managedBy></GetAllowedImagesSettingsResponse>",
        uuid::Uuid::new_v4(),
        a.state
    )
}

fn ec2_error(code: &str, message: &str) -> String {
    let message = message.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Errors><Error><Code>{code}</Code><Message>{message}</Message>\
         </Error></Errors><RequestID>{}</RequestID></Response>",
        uuid::Uuid::new_v4()
    )
}

/// The services that answer in the AWS query protocol's XML (SNS, SQS, STS, IAM).
const QUERY_PROTOCOL: [&str; 4] = ["sns", "sqs", "sts", "iam"];

/// A query-protocol error (`ErrorResponse`), as SNS, SQS, STS and IAM send it.
fn query_error(code: &str, message: &str) -> Response<Body> {
    response(
        400,
        &[("Content-Type", "text/xml")],
        format!(
            "<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error>\
             <RequestId>{}</RequestId></ErrorResponse>",
            uuid::Uuid::new_v4()
        ),
    )
}

/// A throttling error in the shape each protocol uses, so the SDKs classify it as throttling.
fn throttled(service: &str) -> Response<Body> {
    match service {
        "ec2" => response(
            503,
            &[("Content-Type", "text/xml")],
            ec2_error("RequestLimitExceeded", "Request limit exceeded."),
        ),
        s if QUERY_PROTOCOL.contains(&s) => query_error("Throttling", "Rate exceeded"),
        "imagebuilder" => aws_json_error(429, "CallRateLimitExceededException", "Rate exceeded"),
        _ => aws_json_error(400, "ThrottlingException", "Rate exceeded"),
    }
}

/// The trace root of `X-Amzn-Trace-Id` (`Root=1-...;Parent=...;Sampled=...`).
fn trace_root(headers: &hyper::HeaderMap) -> Option<String> {
    let header = headers.get("x-amzn-trace-id")?.to_str().ok()?;
    header
        .split(';')
        .find_map(|part| part.trim().strip_prefix("Root="))
        .map(str::to_owned)
}

/// `name`, `name:qualifier`, `arn:aws:lambda:region:account:function:name[:qualifier]` → name.
fn function_name(s: &str) -> String {
    match s.split_once(":function:") {
        Some((_, rest)) => rest.split(':').next().unwrap_or_default().to_owned(),
        None => s.split(':').next().unwrap_or_default().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_names() {
        assert_eq!(function_name("trigger"), "trigger");
        assert_eq!(function_name("trigger:$LATEST"), "trigger");
        assert_eq!(
            function_name("arn:aws:lambda:us-east-1:123456789012:function:bakery-Trigger"),
            "bakery-Trigger"
        );
        assert_eq!(
            function_name("arn:aws:lambda:us-east-1:123456789012:function:f:live"),
            "f"
        );
    }

    #[test]
    fn trace_roots() {
        let mut h = hyper::HeaderMap::new();
        assert_eq!(trace_root(&h), None);
        h.insert(
            "x-amzn-trace-id",
            "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=0".parse().unwrap(),
        );
        assert_eq!(trace_root(&h).as_deref(), Some("1-5759e988-bd862e3fe1be46a994272793"));
    }

    #[test]
    fn allowed_images_answer() {
        let disabled = allowed_images_xml(&AllowedImages::default());
        assert!(disabled.contains("<state>disabled</state><imageCriterionSet></imageCriterionSet>"));
        let enabled = allowed_images_xml(&AllowedImages {
            state: "enabled".into(),
            providers: vec!["amazon".into(), "123456789012".into()],
        });
        assert!(enabled.contains(
            "<imageCriterionSet><item><imageProviderSet><item>amazon</item><item>123456789012</item>\
             </imageProviderSet></item></imageCriterionSet><managedBy>account</managedBy>"
        ));
        assert!(is_image_provider("aws-marketplace"));
        assert!(!is_image_provider("12345678901"));
        assert!(!is_image_provider("<x>"));
    }

    #[test]
    fn operations() {
        let mut h = hyper::HeaderMap::new();
        let post = hyper::Method::POST;
        assert_eq!(
            operation_of("ec2", &post, &h, "/", "", b"Action=CopyImage&Version=2016-11-15"),
            "CopyImage"
        );
        assert_eq!(
            operation_of(
                "imagebuilder",
                &hyper::Method::PUT,
                &h,
                "/StartImagePipelineExecution",
                "",
                b"{}"
            ),
            "StartImagePipelineExecution"
        );
        assert_eq!(
            operation_of("lambda", &post, &h, "/2015-03-31/functions/f/invocations", "", b"{}"),
            "Invoke"
        );
        h.insert("x-amz-target", "AWSStepFunctions.StartExecution".parse().unwrap());
        assert_eq!(operation_of("states", &post, &h, "/", "", b"{}"), "StartExecution");
        assert_eq!(
            operation_of(
                "imagebuilder",
                &post,
                &hyper::HeaderMap::new(),
                "/tags/arn%3Aaws",
                "",
                b"{}"
            ),
            "TagResource"
        );
    }
}
