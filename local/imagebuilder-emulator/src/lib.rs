//! EC2 Image Builder emulator for Bakery's local AWS (README, "The local AWS").
//!
//! [`Emulator::handle`] answers Image Builder's restJson1 requests as they arrive on the wire
//! (botocore's `imagebuilder/2019-12-02/service-2.json` is the reference). Builds run as tokio
//! tasks through PENDING → BUILDING → TESTING → DISTRIBUTING → AVAILABLE; the AMIs and the
//! "EC2 Image Builder Image State Change" events go through a [`Backend`] (moto's EC2 and the
//! gateway's EventBridge in the local AWS, fakes in tests).

mod build;
mod error;
mod resources;
mod scan;
mod wire;

#[cfg(test)]
mod tests;

use resources::Kind;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use wire::{Obj, Op};

pub struct EmulatorConfig {
    pub account_id: String,
    pub region: String,
    pub phases: PhaseDurations,
}

/// How long a build stays in each phase.
#[derive(Clone, Copy, Debug)]
pub struct PhaseDurations {
    pub pending: Duration,
    pub building: Duration,
    pub testing: Duration,
    pub distributing: Duration,
}

impl Default for PhaseDurations {
    fn default() -> Self {
        let d = Duration::from_millis(200);
        Self {
            pending: d,
            building: d,
            testing: d,
            distributing: d,
        }
    }
}

/// One HTTP response, for the gateway to send as is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailPhase {
    Building,
    Testing,
}

/// Vulnerability findings per severity that the scan of a built image reports; severities left
/// out of a JSON knob count zero.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct FindingCounts {
    pub critical: u32,
    pub high: u32,
    pub medium: u32,
    pub low: u32,
    pub informational: u32,
    pub untriaged: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AmiRequest {
    pub region: String,
    pub parent_image_id: String,
    pub name: String,
    pub description: Option<String>,
    pub tags: BTreeMap<String, String>,
}

#[async_trait::async_trait]
pub trait Backend: Send + Sync + 'static {
    /// Make an AMI in EC2 from `parent_image_id` in `region`; returns the new AMI ID.
    async fn create_ami(&self, req: AmiRequest) -> Result<String, String>;
    /// Copy an AMI to another region (for distributions beyond the build region); returns the new AMI ID.
    async fn copy_ami(
        &self,
        source_region: &str,
        source_image_id: &str,
        dest_region: &str,
        name: &str,
        tags: BTreeMap<String, String>,
    ) -> Result<String, String>;
    /// Deliver one EventBridge event (the full envelope: version, id, detail-type, source, account,
    /// time, region, resources, detail).
    async fn put_event(&self, event: Value);
}

pub struct Emulator {
    backend: Arc<dyn Backend>,
    state: Mutex<State>,
    /// Held while events go to the backend, so they leave in the order the builds made them.
    delivery: tokio::sync::Mutex<()>,
}

/// Everything the emulator knows; every request runs under its lock, so a request is atomic.
struct State {
    account: String,
    region: String,
    /// Every resource by ARN, shaped as the Get* operations return it.
    resources: BTreeMap<String, Obj>,
    /// Scan results of AVAILABLE images, by image ARN, with the scan time (epoch seconds).
    scans: BTreeMap<String, (FindingCounts, f64)>,
    /// Answers given to requests with a clientToken: the request and the response.
    answered: HashMap<(Op, String), (Obj, Value)>,
    /// State-change events not yet handed to the backend.
    events: VecDeque<Value>,
    phases: PhaseDurations,
    fail_next: Option<(FailPhase, String)>,
    findings: FindingCounts,
    drop_events: u32,
}

impl Emulator {
    pub fn new(config: EmulatorConfig, backend: Arc<dyn Backend>) -> Arc<Self> {
        let state = State {
            account: config.account_id,
            region: config.region,
            resources: BTreeMap::new(),
            scans: BTreeMap::new(),
            answered: HashMap::new(),
            events: VecDeque::new(),
            phases: config.phases,
            fail_next: None,
            findings: FindingCounts::default(),
            drop_events: 0,
        };
        Arc::new(Self {
            backend,
            state: Mutex::new(state),
            delivery: tokio::sync::Mutex::new(()),
        })
    }

    /// One Image Builder API request as received on the wire (restJson1). `path` has no query
    /// string; `query` is the raw query string (may be empty).
    pub async fn handle(self: &Arc<Self>, method: &str, path: &str, query: &str, body: &[u8]) -> Response {
        let request_id = wire::uuid();
        let result = self
            .execute(method, path, query, body, &request_id)
            .map(|(response, build)| {
                if let Some(build) = build {
                    tokio::spawn(Arc::clone(self).drive(build));
                }
                response
            });
        self.deliver_events();
        wire::respond(&request_id, result)
    }

    /// The next build that starts fails in `phase` with `reason` (a TESTING failure needs a
    /// pipeline with tests enabled).
    pub fn fail_next_build(&self, phase: FailPhase, reason: String) {
        self.state().fail_next = Some((phase, reason));
    }

    /// Findings of the builds that complete from now on, until changed.
    pub fn set_next_scan_findings(&self, counts: FindingCounts) {
        self.state().findings = counts;
    }

    /// Applies from the next phase a build enters.
    pub fn set_phase_durations(&self, phases: PhaseDurations) {
        self.state().phases = phases;
    }

    /// Lost events: the next `n` state-change events are not sent.
    pub fn drop_next_state_change_events(&self, n: u32) {
        self.state().drop_events = n;
    }

    /// Runs one request under the state lock: the idempotency check, the operation, and the
    /// record of its answer happen at once, so a retried request never runs twice.
    fn execute(
        &self,
        method: &str,
        path: &str,
        query: &str,
        body: &[u8],
        request_id: &str,
    ) -> Result<(Value, Option<build::Build>), error::ApiError> {
        let (op, path_arn) = wire::route(method, path)?;
        let input = wire::input(path_arn, query, body)?;
        let mut st = self.state();
        let token = if op.takes_client_token() {
            Some(wire::req_str(&input, "clientToken")?.to_owned())
        } else {
            None
        };
        if let Some(token) = &token {
            if let Some((request, response)) = st.answered.get(&(op, token.clone())) {
                if *request != input {
                    return Err(error::ApiError::IdempotentParameterMismatch(format!(
                        "The clientToken '{token}' was already used with different parameters."
                    )));
                }
                return Ok((wire::with_request_id(response.clone(), request_id), None));
            }
        }
        let mut build = None;
        let mut response = match op {
            Op::CreateImageRecipe => st.create(Kind::ImageRecipe, &input, State::prepare_recipe),
            Op::CreateComponent => st.create(Kind::Component, &input, State::prepare_component),
            Op::CreateInfrastructureConfiguration => {
                st.create(Kind::InfrastructureConfiguration, &input, State::prepare_infrastructure)
            }
            Op::CreateDistributionConfiguration => {
                st.create(Kind::DistributionConfiguration, &input, State::prepare_distribution)
            }
            Op::CreateImagePipeline => st.create(Kind::ImagePipeline, &input, State::prepare_pipeline),
            Op::GetImageRecipe => st.get(Kind::ImageRecipe, &input),
            Op::GetComponent => st.get(Kind::Component, &input),
            Op::GetInfrastructureConfiguration => st.get(Kind::InfrastructureConfiguration, &input),
            Op::GetDistributionConfiguration => st.get(Kind::DistributionConfiguration, &input),
            Op::GetImagePipeline => st.get(Kind::ImagePipeline, &input),
            Op::GetImage => st.get(Kind::Image, &input),
            Op::ListImageRecipes => st.list_recipes(&input),
            Op::ListImagePipelines => st.list_pipelines(&input),
            Op::ListImagePipelineImages => st.list_pipeline_images(&input),
            Op::UpdateImagePipeline => st.update_pipeline(&input),
            Op::DeleteImagePipeline => st.delete_pipeline(&input),
            Op::StartImagePipelineExecution => st.start(&input).map(|(response, started)| {
                build = Some(started);
                response
            }),
            Op::CancelImageCreation => st.cancel(&input),
            Op::ListImageScanFindings => st.list_findings(&input),
            Op::ListImageScanFindingAggregations => st.aggregate_findings(&input),
            Op::TagResource => st.tag(&input),
            Op::UntagResource => st.untag(&input),
            Op::ListTagsForResource => st.list_tags(&input),
        }?;
        if let (Some(token), Value::Object(body)) = (token, &mut response) {
            body.insert("clientToken".into(), token.clone().into());
            st.answered.insert((op, token), (input, response.clone()));
        }
        if op.has_request_id() {
            response = wire::with_request_id(response, request_id);
        }
        Ok((response, build))
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere must not wedge the local AWS; the state stays usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Hands queued events to the backend in a task of their own: the gateway may answer an
    /// event by calling back into this emulator, so a request never waits for delivery.
    fn deliver_events(self: &Arc<Self>) {
        if self.state().events.is_empty() {
            return;
        }
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let _order = this.delivery.lock().await;
            loop {
                let Some(event) = this.state().events.pop_front() else {
                    break;
                };
                this.backend.put_event(event).await;
            }
        });
    }
}
