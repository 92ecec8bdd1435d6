//! The test knobs of the local AWS, over its admin API (`/_bakery/*` on the gateway's port).

use crate::http::{full, Body};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use imagebuilder_emulator::FindingCounts;
use serde_json::{json, Value};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
#[error("admin call {path} failed: {message}")]
pub struct AdminError {
    pub path: String,
    pub message: String,
}

#[derive(Clone)]
pub struct AdminClient {
    base: String,
    client: Client<HttpConnector, Body>,
}

impl AdminClient {
    pub fn new(endpoint: &str) -> Self {
        Self {
            base: format!("{}/_bakery", endpoint.trim_end_matches('/')),
            client: Client::builder(hyper_util::rt::TokioExecutor::new()).build_http(),
        }
    }

    async fn call(&self, method: &str, path: &str, body: Value) -> Result<Value, AdminError> {
        let err = |message: String| AdminError {
            path: path.to_owned(),
            message,
        };
        let req = hyper::Request::builder()
            .method(method)
            .uri(format!("{}/{path}", self.base))
            .header("Content-Type", "application/json")
            .body(full(body.to_string()))
            .map_err(|e| err(e.to_string()))?;
        let resp = self.client.request(req).await.map_err(|e| err(e.to_string()))?;
        let status = resp.status();
        let bytes = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .map_err(|e| err(e.to_string()))?
            .to_bytes();
        let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if status.is_success() {
            Ok(v)
        } else {
            Err(err(format!("{status}: {v}")))
        }
    }

    /// The next `count` calls of `service`'s `operation` fail with that protocol's throttling error.
    pub async fn throttle(&self, service: &str, operation: &str, count: u32) -> Result<(), AdminError> {
        self.call(
            "POST",
            "throttle",
            json!({"service": service, "operation": operation, "count": count}),
        )
        .await
        .map(drop)
    }

    /// The next build fails in `phase` ("BUILDING" or "TESTING") with `reason`.
    pub async fn fail_next_build(&self, phase: &str, reason: &str) -> Result<(), AdminError> {
        self.call(
            "POST",
            "imagebuilder/fail-next-build",
            json!({"phase": phase, "reason": reason}),
        )
        .await
        .map(drop)
    }

    /// Scan findings that builds completing from now on carry.
    pub async fn set_scan_findings(&self, counts: &FindingCounts) -> Result<(), AdminError> {
        let body = serde_json::to_value(counts).map_err(|e| AdminError {
            path: "scan-findings".into(),
            message: e.to_string(),
        })?;
        self.call("POST", "imagebuilder/scan-findings", body).await.map(drop)
    }

    pub async fn set_phase_durations(&self, each: Duration) -> Result<(), AdminError> {
        let ms = each.as_millis() as u64;
        let body = json!({"pendingMs": ms, "buildingMs": ms, "testingMs": ms, "distributingMs": ms});
        self.call("POST", "imagebuilder/phase-durations", body).await.map(drop)
    }

    /// The next `count` calls of `service`'s `operation` fail with the error `code` (not retryable).
    pub async fn fail_calls(&self, service: &str, operation: &str, count: u32, code: &str) -> Result<(), AdminError> {
        self.fail(None, service, operation, count, code).await
    }

    /// The next `count` calls of `service`'s `operation` that `function`'s invocations make fail
    /// with the error `code` (not retryable); other callers' calls go through.
    pub async fn fail_calls_from(
        &self,
        function: &str,
        service: &str,
        operation: &str,
        count: u32,
        code: &str,
    ) -> Result<(), AdminError> {
        self.fail(Some(function), service, operation, count, code).await
    }

    async fn fail(
        &self,
        function: Option<&str>,
        service: &str,
        operation: &str,
        count: u32,
        code: &str,
    ) -> Result<(), AdminError> {
        let mut body = json!({"service": service, "operation": operation, "count": count, "code": code});
        if let Some(f) = function {
            body["function"] = f.into();
        }
        self.call("POST", "fail-calls", body).await.map(drop)
    }

    /// The next `count` Image Builder state-change events are lost.
    pub async fn drop_next_state_change_events(&self, count: u32) -> Result<(), AdminError> {
        self.call("POST", "imagebuilder/drop-events", json!({"count": count}))
            .await
            .map(drop)
    }

    /// Fires a template schedule now; returns the payload the function was invoked with.
    pub async fn fire_schedule(&self, name: &str) -> Result<Value, AdminError> {
        Ok(self.call("POST", &format!("schedules/{name}/fire"), json!({})).await?["payload"].take())
    }

    /// Every event put on the local bus so far.
    pub async fn events(&self) -> Result<Vec<Value>, AdminError> {
        self.list("events").await
    }

    /// Every asynchronous invocation so far: `{function, attempt, status, request, response}`.
    pub async fn invocations(&self) -> Result<Vec<Value>, AdminError> {
        self.list("invocations").await
    }

    /// Every SNS message offered to a template Lambda subscription so far: `{subscription,
    /// subscriptionArn, topicArn, function, messageId, status, event}`, where `status` is
    /// "delivered" (`event` is what the function was invoked with) or "filtered" (`event` null).
    pub async fn sns_deliveries(&self) -> Result<Vec<Value>, AdminError> {
        self.list("sns-deliveries").await
    }

    /// EC2 Allowed AMIs settings as GetAllowedImagesSettings answers them: `state` is "enabled",
    /// "disabled" or "audit-mode"; `providers` (account ids, "amazon", "aws-marketplace",
    /// "aws-backup-vault", "none") make one image criterion, none if empty.
    pub async fn set_allowed_images(&self, state: &str, providers: &[&str]) -> Result<(), AdminError> {
        self.call(
            "POST",
            "ec2/allowed-images",
            json!({"state": state, "imageProviders": providers}),
        )
        .await
        .map(drop)
    }

    /// How CopyImage behaves from now on: each copy stays `pending` for `pending_ms`, and at most
    /// `concurrent_limit` copies may be in progress per account and region (None: no limit).
    pub async fn copies(&self, pending_ms: u64, concurrent_limit: Option<usize>) -> Result<(), AdminError> {
        self.copies_listed_after(pending_ms, concurrent_limit, 0).await
    }

    /// As [`Self::copies`], and each new copy is missing from DescribeImages listings by
    /// filter (not by image id) for `unlisted_ms`, as EC2's eventual consistency may have it.
    pub async fn copies_listed_after(
        &self,
        pending_ms: u64,
        concurrent_limit: Option<usize>,
        unlisted_ms: u64,
    ) -> Result<(), AdminError> {
        self.call(
            "POST",
            "ec2/copies",
            json!({"pendingMs": pending_ms, "concurrentLimit": concurrent_limit, "unlistedMs": unlisted_ms}),
        )
        .await
        .map(drop)
    }

    /// The next `count` successful calls of `service`'s `operation` by `function` are made,
    /// then the function's execution environment dies before the answer reaches it: the
    /// invocation ends with `Runtime.ExitError`, as a crashed Lambda sandbox ends it.
    pub async fn kill_after(
        &self,
        function: &str,
        service: &str,
        operation: &str,
        count: u32,
    ) -> Result<(), AdminError> {
        let body = json!({"function": function, "service": service, "operation": operation, "count": count});
        self.call("POST", "lambda/kill-after", body).await.map(drop)
    }

    /// The next `count` successful calls of `service`'s `operation` by `function` are made,
    /// and their answers reach the function `ms` later.
    pub async fn hold_answer(
        &self,
        function: &str,
        service: &str,
        operation: &str,
        ms: u64,
        count: u32,
    ) -> Result<(), AdminError> {
        let body = json!({"function": function, "service": service, "operation": operation, "ms": ms, "count": count});
        self.call("POST", "lambda/hold-answer", body).await.map(drop)
    }

    /// The kill-after and hold-answer knobs with the calls they still wait for:
    /// `{function, service, operation, remaining}`.
    pub async fn call_knobs(&self) -> Result<Vec<Value>, AdminError> {
        self.list("lambda/call-knobs").await
    }

    /// From now on, the first `count` calls of every operation the functions make (by
    /// service and operation, whichever function makes them) are throttled.
    pub async fn throttle_first(&self, count: u32) -> Result<(), AdminError> {
        self.call("POST", "throttle-first", json!({"count": count}))
            .await
            .map(drop)
    }

    /// What the throttle-first knob saw: `{service, operation, calls, throttled}`.
    pub async fn throttled_first(&self) -> Result<Vec<Value>, AdminError> {
        self.list("throttle-first").await
    }

    /// Every copy in progress completes now.
    pub async fn complete_copies(&self) -> Result<(), AdminError> {
        self.call("POST", "ec2/copies/complete", Value::Null).await.map(drop)
    }

    /// Every IAM decision so far: `{principal, role, function, service, action, resource,
    /// becauseOf, allowed, decision}`, in order.
    pub async fn authorizations(&self) -> Result<Vec<Value>, AdminError> {
        self.list("authorizations").await
    }

    /// The IAM refusals so far (the decisions with `allowed: false`).
    pub async fn denials(&self) -> Result<Vec<Value>, AdminError> {
        Ok(self
            .authorizations()
            .await?
            .into_iter()
            .filter(|d| d["allowed"] == false)
            .collect())
    }

    /// Throttle knobs with the calls they still have to refuse: `{service, operation, remaining}`.
    pub async fn throttles(&self) -> Result<Vec<Value>, AdminError> {
        self.list("throttles").await
    }

    async fn list(&self, path: &str) -> Result<Vec<Value>, AdminError> {
        Ok(self
            .call("GET", path, Value::Null)
            .await?
            .as_array()
            .cloned()
            .unwrap_or_default())
    }
}
