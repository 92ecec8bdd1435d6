//! What every Bakery function shares on the AWS side: the SDK configuration (endpoint, region
//! and credentials from the environment, nothing local in the code), errors classified into the
//! stable `errorType` names the state machine's Retry and Catch match on, and policy loading.

pub mod http;
pub mod imagebuilder;
pub mod images;
pub mod metrics;
pub mod retention;
pub mod watch;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_runtime_api::http::Response;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use bakery_core::steps::StepInputError;
use bakery_core::Policy;
use lambda_runtime::Diagnostic;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use std::future::Future;
use std::time::Duration;

/// Runs a function on the Lambda runtime: each event's payload is decoded as the step's input
/// (`step` names it in errors, with the bad field's path: `InvalidInput`), `handler` acts on
/// it, and its output is encoded as the step's result. Errors reach the state machine as their
/// `errorType`. Every Bakery function's `main` ends here.
pub async fn run<I, O, E, F, Fut>(step: &'static str, handler: F) -> Result<(), lambda_runtime::Error>
where
    I: DeserializeOwned,
    O: Serialize,
    E: From<BakeError> + Into<Diagnostic> + std::fmt::Debug,
    F: Fn(I) -> Fut,
    Fut: Future<Output = Result<O, E>>,
{
    let handler = &handler;
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: lambda_runtime::LambdaEvent<Value>| async move {
            let input = bakery_core::steps::decode::<I>(step, event.payload).map_err(BakeError::from)?;
            // Boxed: a handler's future nests every retried call, deeper than the compiler's
            // layout query limit allows inside the runtime's own futures.
            let output = Box::pin(handler(input)).await?;
            serde_json::to_value(output).map_err(|e| E::from(BakeError::InvalidInput(format!("{step} output: {e}"))))
        },
    ))
    .await
}

/// A parameter under the policy prefix that does not hold a valid policy: reported, skipped,
/// and never a reason to stop the other pipelines' bakes.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InvalidPolicy {
    pub parameter: String,
    pub error: String,
}

/// Every policy under the prefix. A policy must sit at `<prefix><its pipeline's name>`:
/// that is where the bake reads it, so one elsewhere would bake under another's rules.
pub async fn policies(
    ssm: &aws_sdk_ssm::Client,
    policy_prefix: &str,
) -> Result<(Vec<Policy>, Vec<InvalidPolicy>), BakeError> {
    let (mut valid, mut invalid) = (Vec::new(), Vec::new());
    let mut token: Option<String> = None;
    loop {
        let page = send("GetParametersByPath", || {
            ssm.get_parameters_by_path()
                .path(policy_prefix.trim_end_matches('/'))
                .recursive(true)
                .set_next_token(token.clone())
                .send()
        })
        .await?;
        for p in page.parameters() {
            let name = p.name().unwrap_or_default().to_owned();
            let mut bad = |error: String| {
                tracing::error!(parameter = %name, %error, "invalid bake policy skipped");
                invalid.push(InvalidPolicy {
                    parameter: name.clone(),
                    error,
                });
            };
            match Policy::parse(p.value().unwrap_or_default().as_bytes()) {
                Err(e) => bad(e.to_string().replace('\n', "; ")),
                Ok(policy) => {
                    let pipeline = bakery_core::ids::pipeline_name(&policy.pipeline_arn);
                    if name != format!("{}{pipeline}", policy_prefix) {
                        bad(format!(
                            "a policy for {} must be kept at {}{pipeline}",
                            policy.pipeline_arn, policy_prefix
                        ));
                    } else {
                        valid.push(policy);
                    }
                }
            }
        }
        token = page.next_token().map(str::to_owned);
        if token.is_none() {
            break;
        }
    }
    Ok((valid, invalid))
}

/// The SDK configuration for this function, once per cold start: the SDK's defaults (region,
/// credential chain, endpoint, retry and timeout settings from the environment), sending
/// through [`http::client`].
pub async fn sdk_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(http::client())
        .load()
        .await
}

/// The same configuration in another region (copies, shares and parameters are regional).
pub fn in_region(sdk: &SdkConfig, region: &str) -> SdkConfig {
    sdk.to_builder().region(Region::new(region.to_owned())).build()
}

/// A function's failure, by the name the state machine acts on.
#[derive(Debug, thiserror::Error)]
pub enum BakeError {
    /// Throttling, a 5xx, a network failure: the Task's Retry backs off and tries again.
    #[error("{operation}: {message}")]
    Retryable { operation: String, message: String },
    /// The pipeline is building already: wait and retry.
    #[error("{0}")]
    PipelineBusy(String),
    #[error("{0}")]
    InvalidPolicy(String),
    #[error("{0}")]
    InvalidInput(String),
    #[error("{0}")]
    NotFound(String),
    /// The pipeline's own distribution would let the image leave before the gate: the
    /// settings to change are named. Not retried.
    #[error("{0}")]
    UnsafeDistribution(String),
    /// An AMI copy is still in progress: the Task's Retry calls again later, and the copy's
    /// ClientToken hands back the same image.
    #[error("{0}")]
    CopyPending(String),
    /// The region's concurrent AMI copies are at their quota (EC2's ResourceLimitExceeded on
    /// CopyImage): the Task's Retry backs off and copies again.
    #[error("{0}")]
    CopyLimitExceeded(String),
    /// IAM refused the call (AccessDenied, EC2's UnauthorizedOperation, SNS's AuthorizationError):
    /// the stack's permissions or a resource policy lack it. Not retried.
    #[error("{operation}: {code}: {message}")]
    AccessDenied {
        operation: String,
        code: String,
        message: String,
    },
    /// Any other service error: not retried.
    #[error("{operation}: {code}: {message}")]
    Aws {
        operation: String,
        code: String,
        message: String,
    },
}

impl BakeError {
    pub fn error_type(&self) -> &'static str {
        match self {
            BakeError::Retryable { .. } => "Retryable",
            BakeError::PipelineBusy(_) => "PipelineBusy",
            BakeError::InvalidPolicy(_) => "InvalidPolicy",
            BakeError::InvalidInput(_) => "InvalidInput",
            BakeError::NotFound(_) => "NotFound",
            BakeError::UnsafeDistribution(_) => "UnsafeDistribution",
            BakeError::CopyPending(_) => "CopyPending",
            BakeError::CopyLimitExceeded(_) => "CopyLimitExceeded",
            BakeError::AccessDenied { .. } => "AccessDenied",
            BakeError::Aws { .. } => "AwsError",
        }
    }

    /// The error a step reported by its `errorType`, carried further (a region's failure,
    /// reported once every region has settled). An unknown type is an `Aws` error with that code.
    pub fn from_error_type(error_type: &str, message: String) -> BakeError {
        match error_type {
            "Retryable" => BakeError::Retryable {
                operation: "PublishRegion".into(),
                message,
            },
            "PipelineBusy" => BakeError::PipelineBusy(message),
            "InvalidPolicy" => BakeError::InvalidPolicy(message),
            "InvalidInput" => BakeError::InvalidInput(message),
            "NotFound" => BakeError::NotFound(message),
            "UnsafeDistribution" => BakeError::UnsafeDistribution(message),
            "CopyPending" => BakeError::CopyPending(message),
            "CopyLimitExceeded" => BakeError::CopyLimitExceeded(message),
            "AccessDenied" => BakeError::AccessDenied {
                operation: "PublishRegion".into(),
                code: "AccessDenied".into(),
                message,
            },
            other => BakeError::Aws {
                operation: "PublishRegion".into(),
                code: other.into(),
                message,
            },
        }
    }

    pub fn retryable(&self) -> bool {
        matches!(self, BakeError::Retryable { .. })
    }
}

impl From<StepInputError> for BakeError {
    fn from(e: StepInputError) -> BakeError {
        BakeError::InvalidInput(e.to_string())
    }
}

impl From<BakeError> for Diagnostic {
    fn from(e: BakeError) -> Diagnostic {
        Diagnostic {
            error_type: e.error_type().to_owned(),
            error_message: e.to_string(),
        }
    }
}

/// Error codes that mean "slow down and try again", across the services Bakery calls.
/// Image Builder's CallRateLimitExceededException is not among the SDK's own throttling codes,
/// so the SDK hands it over at once (seen on the wire); it is retried here.
const RETRYABLE_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "CallRateLimitExceededException",
    "ServiceException",
    "ServiceUnavailableException",
    "ServiceUnavailable",
    "InternalError",
    "InternalFailure",
    "InternalServerError",
    "Unavailable",
];

/// Error codes that mean IAM refused the call, across the services Bakery calls.
const ACCESS_DENIED_CODES: &[&str] = &[
    "AccessDenied",
    "AccessDeniedException",
    "UnauthorizedOperation",
    "AuthorizationError",
    "AuthorizationErrorException",
];

/// Classifies an SDK error. `busy` lists the codes that mean "the resource is in use".
pub fn classify<E>(operation: &str, err: SdkError<E, Response>) -> BakeError
where
    E: std::error::Error + ProvideErrorMetadata + Send + Sync + 'static,
{
    let operation = operation.to_owned();
    match &err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => BakeError::Retryable {
            operation,
            message: format!("{}", DisplayErrorContext(&err)),
        },
        _ => {
            let status = err.raw_response().map(|r| r.status().as_u16()).unwrap_or(0);
            let code = err.code().unwrap_or("Unknown").to_owned();
            let message = err.message().unwrap_or_default().to_owned();
            if RETRYABLE_CODES.contains(&code.as_str()) || status >= 500 || status == 429 {
                BakeError::Retryable {
                    operation,
                    message: format!("{code}: {message}"),
                }
            } else if ACCESS_DENIED_CODES.contains(&code.as_str()) {
                BakeError::AccessDenied {
                    operation,
                    code,
                    message,
                }
            } else if code == "ResourceInUseException" {
                BakeError::PipelineBusy(format!("{operation}: {message}"))
            } else if code.ends_with("NotFoundException") || code.ends_with(".NotFound") || code == "ParameterNotFound"
            {
                BakeError::NotFound(format!("{operation}: {code}: {message}"))
            } else {
                BakeError::Aws {
                    operation,
                    code,
                    message,
                }
            }
        }
    }
}

/// How a call is retried in the function before its error goes to the state machine's own
/// Retry: how many tries, and the wait after the n-th failure (n from 1).
#[derive(Clone, Copy)]
pub struct Backoff {
    pub attempts: u32,
    pub delay: fn(u32) -> Duration,
}

impl Backoff {
    /// 100 ms doubling, 5 tries: for one caller (a step of one bake).
    pub const STEP: Backoff = Backoff {
        attempts: 5,
        delay: doubling,
    };

    /// Full jitter, `attempts` tries: for many callers at once (a fan-out).
    pub fn jittered(attempts: u32) -> Backoff {
        Backoff {
            attempts,
            delay: full_jitter,
        }
    }
}

/// 100 ms × 2^(n-1) after the n-th failure.
pub fn doubling(attempt: u32) -> Duration {
    Duration::from_millis(100u64 << attempt.saturating_sub(1).min(16))
}

/// Every AWS call of a step goes through here: `send` makes and sends the request (it is called
/// again for each try), its error is classified under `operation`, and retryable errors are
/// retried with [`Backoff::STEP`].
pub async fn send<T, E, F, Fut>(operation: &str, send: F) -> Result<T, BakeError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, SdkError<E, Response>>>,
    E: std::error::Error + ProvideErrorMetadata + Send + Sync + 'static,
{
    send_with(Backoff::STEP, operation, send).await
}

/// [`send`] with another backoff.
pub async fn send_with<T, E, F, Fut>(backoff: Backoff, operation: &str, mut send: F) -> Result<T, BakeError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, SdkError<E, Response>>>,
    E: std::error::Error + ProvideErrorMetadata + Send + Sync + 'static,
{
    retry(backoff.attempts, backoff.delay, || {
        let sent = send();
        async move { sent.await.map_err(|e| classify(operation, e)) }
    })
    .await
}

/// Calls `call` up to `attempts` times while it fails with a retryable error, sleeping
/// `delay(n)` after the n-th failure (n from 1). The last error is returned as it is.
pub async fn retry<T, F, Fut>(attempts: u32, delay: impl Fn(u32) -> Duration, mut call: F) -> Result<T, BakeError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, BakeError>>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        match call().await {
            Err(e) if e.retryable() && attempt < attempts => {
                let wait = delay(attempt);
                tracing::warn!(error = %e, attempt, ?wait, "retrying");
                tokio::time::sleep(wait).await;
            }
            other => return other,
        }
    }
}

/// Exponential backoff with full jitter: a random wait up to 100 ms × 2^attempt, capped at 5 s.
/// For many callers at once (a fan-out), so that their retries do not arrive together.
pub fn full_jitter(attempt: u32) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let cap = 100u64.saturating_mul(1 << attempt.min(10)).min(5_000);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(attempt);
    Duration::from_millis(h.finish() % (cap + 1))
}

/// A parameter's value now (GetParameter); `NotFound` when there is no such parameter.
pub async fn get_parameter(ssm: &aws_sdk_ssm::Client, name: &str) -> Result<String, BakeError> {
    let out = send("GetParameter", || ssm.get_parameter().name(name).send()).await?;
    Ok(out.parameter.and_then(|p| p.value).unwrap_or_default())
}

/// The bake policy of a pipeline: SSM parameter `<prefix><pipeline name>`.
pub async fn load_policy(ssm: &aws_sdk_ssm::Client, prefix: &str, pipeline_name: &str) -> Result<Policy, BakeError> {
    let name = format!("{prefix}{pipeline_name}");
    let text = get_parameter(ssm, &name).await?;
    Policy::parse(text.as_bytes())
        .map_err(|e| BakeError::InvalidPolicy(format!("{name}: {}", e.to_string().replace('\n', "; "))))
}

/// An environment variable the template must set.
pub fn env(name: &str) -> Result<String, BakeError> {
    std::env::var(name).map_err(|_| BakeError::InvalidInput(format!("environment variable {name} is not set")))
}

/// A positive count from the environment, `default` when unset; a value that is not one is an
/// error at start, not silently the default.
pub fn env_count(name: &str, default: u32) -> Result<u32, BakeError> {
    match std::env::var(name) {
        Err(_) => Ok(default),
        Ok(v) => v.trim().parse::<u32>().ok().filter(|n| *n > 0).ok_or_else(|| {
            BakeError::InvalidInput(format!(
                "environment variable {name} is {v:?}, not a positive whole number"
            ))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ssm::operation::get_parameter::GetParameterError;
    use aws_smithy_runtime_api::http::StatusCode;
    use aws_smithy_types::body::SdkBody;
    use aws_smithy_types::error::ErrorMetadata;

    /// A service error as the SDK hands it over: code, message and the HTTP status.
    fn service_error(status: u16, code: &str) -> SdkError<GetParameterError, Response> {
        let meta = ErrorMetadata::builder().code(code).message("refused").build();
        let raw = Response::new(StatusCode::try_from(status).unwrap(), SdkBody::empty());
        SdkError::service_error(GetParameterError::generic(meta), raw)
    }

    #[test]
    fn errors_are_classified_by_code_and_status() {
        let cases = [
            (400, "ThrottlingException", "Retryable"),
            (503, "RequestLimitExceeded", "Retryable"),
            (400, "CallRateLimitExceededException", "Retryable"),
            (500, "SomethingNew", "Retryable"),
            (429, "SlowDown", "Retryable"),
            (400, "AccessDeniedException", "AccessDenied"),
            (403, "UnauthorizedOperation", "AccessDenied"),
            (403, "AuthorizationError", "AccessDenied"),
            (403, "AccessDenied", "AccessDenied"),
            (400, "ResourceInUseException", "PipelineBusy"),
            (400, "ResourceNotFoundException", "NotFound"),
            (400, "InvalidAMIID.NotFound", "NotFound"),
            (400, "ParameterNotFound", "NotFound"),
            (400, "ValidationException", "AwsError"),
        ];
        for (status, code, want) in cases {
            let e = classify("GetParameter", service_error(status, code));
            assert_eq!(e.error_type(), want, "{status} {code}: {e}");
            assert!(e.to_string().starts_with("GetParameter"), "{e}");
        }
        let denied = classify("GetParameter", service_error(400, "AccessDeniedException"));
        assert!(!denied.retryable());
        assert_eq!(denied.to_string(), "GetParameter: AccessDeniedException: refused");
    }

    #[tokio::test]
    async fn retries_stop_at_the_limit_and_at_the_first_lasting_error() {
        let calls = std::sync::atomic::AtomicU32::new(0);
        let out: Result<(), _> = retry(
            3,
            |_| Duration::ZERO,
            || async {
                calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Err(BakeError::Retryable {
                    operation: "X".into(),
                    message: "slow down".into(),
                })
            },
        )
        .await;
        assert!(out.unwrap_err().retryable());
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 3);

        calls.store(0, std::sync::atomic::Ordering::SeqCst);
        let out: Result<(), _> = retry(
            3,
            |_| Duration::ZERO,
            || async {
                calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Err(BakeError::InvalidPolicy("no".into()))
            },
        )
        .await;
        assert_eq!(out.unwrap_err().error_type(), "InvalidPolicy");
        assert_eq!(
            calls.load(std::sync::atomic::Ordering::SeqCst),
            1,
            "a lasting error is not retried"
        );
    }

    #[test]
    fn the_step_backoff_doubles_from_100_ms() {
        let table = [(1, 100), (2, 200), (3, 400), (4, 800), (5, 1600)];
        for (attempt, ms) in table {
            assert_eq!(
                (Backoff::STEP.delay)(attempt),
                Duration::from_millis(ms),
                "after failure {attempt}"
            );
        }
        assert_eq!(Backoff::STEP.attempts, 5);
        assert_eq!(
            doubling(0),
            Duration::from_millis(100),
            "no failure yet is not a shift by -1"
        );
        assert_eq!(
            doubling(u32::MAX),
            Duration::from_millis(100 << 16),
            "capped, no overflow"
        );
    }

    /// `send` as a step calls it: each try sends again; the SDK's error is classified under the
    /// operation's name; only what is retryable is tried again, and at most `attempts` times.
    #[tokio::test]
    async fn send_classifies_and_retries_only_what_is_retryable() {
        let fast = Backoff {
            attempts: 3,
            delay: |_| Duration::ZERO,
        };
        // (the failures before success, the result, how many calls were made)
        type Case = (&'static [(u16, &'static str)], Result<u32, &'static str>, u32);
        let cases: [Case; 5] = [
            (&[], Ok(1), 1),
            (&[(400, "ThrottlingException")], Ok(2), 2),
            (&[(503, "ServiceUnavailable"), (500, "InternalError")], Ok(3), 3),
            (&[(400, "ThrottlingException"); 3], Err("Retryable"), 3),
            (&[(403, "AccessDeniedException")], Err("AccessDenied"), 1),
        ];
        for (failures, want, want_calls) in cases {
            let calls = std::sync::atomic::AtomicU32::new(0);
            let out = send_with(fast, "GetParameter", || {
                let n = calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let failure = failures.get(n as usize).copied();
                async move {
                    match failure {
                        Some((status, code)) => Err(service_error(status, code)),
                        None => Ok(n + 1),
                    }
                }
            })
            .await;
            let got = out.as_ref().map(|n| *n).map_err(|e| e.error_type());
            assert_eq!(got, want, "{failures:?}");
            assert_eq!(
                calls.load(std::sync::atomic::Ordering::SeqCst),
                want_calls,
                "{failures:?}"
            );
            if let Err(e) = out {
                assert!(e.to_string().starts_with("GetParameter: "), "{e}");
            }
        }
    }

    #[test]
    fn jittered_backoff_stays_under_its_cap() {
        for attempt in 0..20 {
            assert!(full_jitter(attempt) <= Duration::from_millis(5_000));
        }
        assert!(full_jitter(0) <= Duration::from_millis(100));
    }
}
