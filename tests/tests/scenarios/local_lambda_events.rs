//! The local AWS on the wire, with the real SDK clients: Lambda Invoke runs the real function
//! binary, EventBridge delivers by the template's rules, failures land in the dead-letter
//! queue, and moto's Step Functions runs a Task against the function and catches its typed error
//! (with the state machine role's rights).

use aws_sdk_lambda::primitives::Blob;
use aws_sdk_sfn::types::ExecutionStatus;
use serde_json::{json, Value};
use std::time::Duration;
use tests::{eventually, local_aws, repo};

fn fixture(name: &str) -> String {
    std::fs::read_to_string(repo().join("events").join(name)).unwrap()
}

#[tokio::test]
async fn invoke_runs_the_function_binary_and_reports_its_typed_error() {
    let aws = local_aws().await;
    let function = aws.resource("TriggerFunction").unwrap().to_owned();
    let lambda = aws_sdk_lambda::Client::new(&aws.sdk_config("us-east-1").await);

    let ok = lambda
        .invoke()
        .function_name(&function)
        .payload(Blob::new(fixture("sns/soe-release.json")))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status_code, 200);
    assert_eq!(ok.function_error, None);
    let out: Value = serde_json::from_slice(ok.payload.unwrap().as_ref()).unwrap();
    assert_eq!(out["action"], "bake");
    assert_eq!(out["trigger"]["sourceAmis"][0]["imageId"], "ami-0fedcba9876543210");

    // By ARN, and the warm process is reused for the second call.
    let arn = format!("arn:aws:lambda:us-east-1:123456789012:function:{function}");
    let bad = lambda
        .invoke()
        .function_name(&arn)
        .payload(Blob::new(fixture("malformed/sns-soe-release-ami-by-name.json")))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.function_error.as_deref(), Some("Unhandled"));
    let err: Value = serde_json::from_slice(bad.payload.unwrap().as_ref()).unwrap();
    assert_eq!(err["errorType"], "MalformedEvent");
    assert!(err["errorMessage"]
        .as_str()
        .unwrap()
        .contains("never resolves an AMI by name"));
    assert_eq!(
        aws.gateway.lambdas.child_pids().len(),
        1,
        "one warm process served both calls"
    );

    let missing = lambda
        .invoke()
        .function_name("no-such-function")
        .send()
        .await
        .unwrap_err();
    assert!(missing.into_service_error().is_resource_not_found_exception());
}

/// EC2 puts its own AMI State Change events on the bus (nobody else may put `aws.*` events):
/// an image made available reaches the trigger by the template's rule, a deregistration is
/// filtered by the rule's pattern, and a malformed custom event fails, is retried, and waits in
/// the dead-letter queue.
#[tokio::test]
async fn eventbridge_delivers_by_the_template_rules_and_dead_letters_failures() {
    let aws = local_aws().await;
    let events = aws_sdk_eventbridge::Client::new(&aws.sdk_config("us-east-1").await);
    let put = |source: &str, detail_type: &str, detail: Value| {
        let entry = aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
            .source(source)
            .detail_type(detail_type)
            .detail(detail.to_string())
            .build();
        let events = events.clone();
        async move { events.put_events().entries(entry).send().await.unwrap() }
    };
    // A service's source is the service's: PutEvents refuses it.
    let forged: Value = serde_json::from_str(&fixture("eventbridge/ami-state-change-available.json")).unwrap();
    let refused = put("aws.ec2", "EC2 AMI State Change", forged["detail"].clone()).await;
    assert_eq!(refused.failed_entry_count, 1);
    assert_eq!(
        refused.entries()[0].error_code(),
        Some("NotAuthorizedForSourceException")
    );

    // EC2 itself: a new image (available) matches AmiAvailable; its deregistration does not.
    let image = gateway::world::register_ami(&aws, "soe-al2023-2026.11.9")
        .await
        .unwrap();
    aws_sdk_ec2::Client::new(&aws.sdk_config("us-east-1").await)
        .deregister_image()
        .image_id(&image)
        .send()
        .await
        .unwrap();
    // Matches BakeRequested, but is malformed: the function fails, Lambda retries twice, then the DLQ.
    let ok = put(
        "bakery",
        "Bake Requested",
        json!({"pipelineArn": "arn:aws:imagebuilder:us-east-1:123456789012:image-pipeline/web",
               "sourceAmi": {"name": "soe-al2023-*", "region": "us-east-1"}}),
    )
    .await;
    assert_eq!(ok.failed_entry_count, 0);

    let admin = aws.admin();
    let invocations = eventually("the trigger's invocations", Duration::from_secs(20), || async {
        let all = admin.invocations().await.unwrap();
        (all.len() >= 4).then_some(all)
    })
    .await;
    let bakes: Vec<&Value> = invocations.iter().filter(|i| i["status"] == "success").collect();
    assert_eq!(bakes.len(), 1, "{invocations:#?}");
    assert_eq!(bakes[0]["response"]["action"], "bake");
    assert_eq!(bakes[0]["request"]["source"], "aws.ec2");
    assert_eq!(bakes[0]["request"]["detail"]["ImageId"], image.as_str());
    assert_eq!(bakes[0]["request"]["detail"]["State"], "available");
    let failures: Vec<&Value> = invocations.iter().filter(|i| i["status"] == "error").collect();
    assert_eq!(failures.len(), 3, "one attempt and two retries: {invocations:#?}");
    assert!(failures.iter().all(|f| f["response"]["errorType"] == "MalformedEvent"));
    let on_bus: Vec<Value> = admin
        .events()
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e["source"] == "aws.ec2")
        .map(|e| e["detail"]["State"].clone())
        .collect();
    assert_eq!(
        on_bus,
        [json!("available"), json!("deregistered")],
        "EC2's own events, forged one refused"
    );

    let sqs = aws_sdk_sqs::Client::new(&aws.sdk_config("us-east-1").await);
    let dlq = aws.resource("TriggerDeadLetterQueue").unwrap().to_owned();
    let message = eventually("the dead-lettered event", Duration::from_secs(10), || async {
        let out = sqs
            .receive_message()
            .queue_url(&dlq)
            .message_attribute_names("All")
            .send()
            .await
            .unwrap();
        out.messages.unwrap_or_default().into_iter().next()
    })
    .await;
    let body: Value = serde_json::from_str(message.body().unwrap()).unwrap();
    assert_eq!(body["detail-type"], "Bake Requested", "the original event is kept");
    let attrs = message.message_attributes().unwrap();
    assert_eq!(attrs["ErrorType"].string_value(), Some("MalformedEvent"));
    assert_eq!(
        aws.admin().invocations().await.unwrap().len(),
        4,
        "the deregistered AMI event invoked nothing"
    );
}

#[tokio::test]
async fn a_schedule_fired_by_hand_reaches_its_function() {
    let aws = local_aws().await;
    let payload = aws.admin().fire_schedule("bakery-nightly").await.unwrap();
    assert!(payload["schedule-arn"]
        .as_str()
        .unwrap()
        .ends_with(":schedule/default/bakery-nightly"));
    let admin = aws.admin();
    let done = eventually("the scheduled invocation", Duration::from_secs(10), || async {
        admin.invocations().await.unwrap().into_iter().next()
    })
    .await;
    assert_eq!(done["status"], "success", "{done}");
    assert_eq!(done["response"]["trigger"]["origin"]["kind"], "schedule");
}

/// moto signs every state machine's calls alike, so the local AWS authorizes each Task's call as
/// the stack's state machine role: a machine a test creates runs with the bake's rights.
#[tokio::test]
async fn step_functions_runs_a_task_on_the_function_and_catches_its_typed_error() {
    let aws = local_aws().await;
    let function_arn = |id: &str| {
        format!(
            "arn:aws:lambda:us-east-1:123456789012:function:{}",
            aws.resource(id).unwrap()
        )
    };
    let machine_of = |function: String| {
        json!({
            "StartAt": "Watch",
            "States": {
                "Watch": {
                    "Type": "Task",
                    "Resource": "arn:aws:states:::lambda:invoke",
                    "Parameters": {"FunctionName": function, "Payload.$": "$"},
                    "OutputPath": "$.Payload",
                    "Retry": [{"ErrorEquals": ["Lambda.TooManyRequestsException"], "MaxAttempts": 2}],
                    "Catch": [{"ErrorEquals": ["InvalidInput", "NotFound"], "ResultPath": "$.error", "Next": "Refused"}],
                    "End": true
                },
                "Refused": {"Type": "Pass", "End": true}
            }
        })
    };
    let sfn = aws_sdk_sfn::Client::new(&aws.sdk_config("us-east-1").await);
    let role = format!(
        "arn:aws:iam::123456789012:role/{}",
        aws.resource("BakeStateMachineRole").unwrap()
    );
    let create = |name: &'static str, definition: Value| {
        let (sfn, role) = (sfn.clone(), role.clone());
        async move {
            sfn.create_state_machine()
                .name(name)
                .definition(definition.to_string())
                .role_arn(role)
                .send()
                .await
                .unwrap()
                .state_machine_arn
        }
    };
    let run = |machine: String, name: &'static str, input: String| {
        let sfn = sfn.clone();
        async move {
            let exec = sfn
                .start_execution()
                .state_machine_arn(&machine)
                .name(name)
                .input(input)
                .send()
                .await
                .unwrap();
            eventually("the execution to end", Duration::from_secs(20), || async {
                let d = sfn
                    .describe_execution()
                    .execution_arn(&exec.execution_arn)
                    .send()
                    .await
                    .unwrap();
                (d.status != ExecutionStatus::Running).then_some(d)
            })
            .await
        }
    };
    let watch = create("watch", machine_of(function_arn("BuildWatchFunction"))).await;

    // The function's typed errors reach the Catch: a malformed input, and an unknown build.
    let bad = run(watch.clone(), "bad", json!({"no": "build"}).to_string()).await;
    assert_eq!(
        bad.status,
        ExecutionStatus::Succeeded,
        "the Catch handled the function's error"
    );
    let out: Value = serde_json::from_str(bad.output.as_deref().unwrap()).unwrap();
    assert_eq!(out["error"]["Error"], "InvalidInput");
    let image = "arn:aws:imagebuilder:us-east-1:123456789012:image/none/1.0.0/1";
    let unknown = run(watch, "unknown", json!({"imageBuildVersionArn": image}).to_string()).await;
    let out: Value = serde_json::from_str(unknown.output.as_deref().unwrap()).unwrap();
    assert_eq!(out["error"]["Error"], "NotFound", "{out}");

    // The bake's role may not invoke the trigger: Lambda refuses the Task, and the execution fails.
    let trigger = create("trigger", machine_of(function_arn("TriggerFunction"))).await;
    let refused = run(trigger, "refused", fixture("sns/soe-release.json")).await;
    assert_eq!(refused.status, ExecutionStatus::Failed);
    assert!(
        refused.error.as_deref().unwrap_or_default().contains("AccessDenied"),
        "{refused:?}"
    );
}
