//! Builds: StartImagePipelineExecution makes an image that a tokio task steps through its
//! phases on the clock; the AMIs are made while DISTRIBUTING; every state change is an
//! "EC2 Image Builder Image State Change" event.

use crate::error::ApiError;
use crate::resources::{arn_name, list, project, Kind};
use crate::wire::{now, obj, opt_typed, req_str, utc_now, uuid, Obj};
use crate::{AmiRequest, Emulator, FailPhase, State};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Status {
    Pending,
    Building,
    Testing,
    Distributing,
    Available,
    Failed,
    Cancelled,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "PENDING",
            Status::Building => "BUILDING",
            Status::Testing => "TESTING",
            Status::Distributing => "DISTRIBUTING",
            Status::Available => "AVAILABLE",
            Status::Failed => "FAILED",
            Status::Cancelled => "CANCELLED",
        }
    }
}

/// A build the emulator has to drive: its image, and what the knobs armed for it.
pub(crate) struct Build {
    arn: String,
    fail: Option<(FailPhase, String)>,
    tests: bool,
}

/// ListImagePipelineImages' summary members.
const IMAGE_SUMMARY: &[&str] = &[
    "arn",
    "name",
    "type",
    "version",
    "platform",
    "state",
    "owner",
    "dateCreated",
    "outputResources",
    "tags",
    "buildType",
    "imageSource",
];

fn status(image: &Obj) -> Option<&str> {
    image.get("state")?.get("status")?.as_str()
}

fn in_progress(image: &Obj) -> bool {
    matches!(status(image), Some("PENDING" | "BUILDING" | "TESTING" | "DISTRIBUTING"))
}

fn member<'a>(resource: &'a Obj, key: &str) -> &'a str {
    resource.get(key).and_then(Value::as_str).unwrap_or_default()
}

impl State {
    /// Refuses to change a pipeline while one of its images is being built.
    pub(crate) fn refuse_if_building(&self, pipeline_arn: &str, error: fn(String) -> ApiError) -> Result<(), ApiError> {
        match self
            .all(Kind::Image)
            .find(|i| member(i, "sourcePipelineArn") == pipeline_arn && in_progress(i))
        {
            Some(image) => Err(error(format!(
                "The image pipeline '{pipeline_arn}' has an image build in progress: '{}'. Retry when it has ended.",
                member(image, "arn")
            ))),
            None => Ok(()),
        }
    }

    /// StartImagePipelineExecution. One build per pipeline at a time: a start while a build runs
    /// is ResourceInUseException (in the operation's model), so callers wait and retry.
    pub(crate) fn start(&mut self, input: &Obj) -> Result<(Value, Build), ApiError> {
        let pipeline = self.find(Kind::ImagePipeline, req_str(input, "imagePipelineArn")?)?;
        let pipeline_arn = member(pipeline, "arn").to_owned();
        self.refuse_if_building(&pipeline_arn, ApiError::ResourceInUse)?;
        // The image keeps what the pipeline pointed at when it started, as GetImage shows.
        let recipe = self
            .find(Kind::ImageRecipe, member(pipeline, "imageRecipeArn"))?
            .clone();
        let infrastructure = self.find(
            Kind::InfrastructureConfiguration,
            member(pipeline, "infrastructureConfigurationArn"),
        )?;
        let distribution = match pipeline.get("distributionConfigurationArn").and_then(Value::as_str) {
            Some(arn) => Value::Object(self.find(Kind::DistributionConfiguration, arn)?.clone()),
            None => Value::Null,
        };
        let field = |key: &str| pipeline.get(key).cloned().unwrap_or(Value::Null);
        let tests = pipeline
            .get("imageTestsConfiguration")
            .and_then(|t| t.get("imageTestsEnabled"))
            .and_then(Value::as_bool)
            .unwrap_or(true);
        let tags: Option<BTreeMap<String, String>> = opt_typed(input, "tags")?;

        let version_arn = self.arn(
            Kind::Image,
            &format!("{}/{}", arn_name(member(&recipe, "name")), member(&recipe, "version")),
        );
        let arn = format!("{version_arn}/{}", self.latest_build(&version_arn).unwrap_or(0) + 1);
        let date = now();
        let image = obj([
            ("arn", arn.clone().into()),
            ("type", "AMI".into()),
            ("name", recipe.get("name").cloned().unwrap_or_default()),
            ("version", recipe.get("version").cloned().unwrap_or_default()),
            ("platform", recipe.get("platform").cloned().unwrap_or_default()),
            ("owner", self.account.clone().into()),
            ("enhancedImageMetadataEnabled", field("enhancedImageMetadataEnabled")),
            ("state", json!({ "status": "PENDING" })),
            ("imageRecipe", Value::Object(recipe)),
            ("sourcePipelineName", field("name")),
            ("sourcePipelineArn", pipeline_arn.clone().into()),
            ("infrastructureConfiguration", Value::Object(infrastructure.clone())),
            ("distributionConfiguration", distribution),
            ("imageTestsConfiguration", field("imageTestsConfiguration")),
            ("imageScanningConfiguration", field("imageScanningConfiguration")),
            ("workflows", field("workflows")),
            ("executionRole", field("executionRole")),
            ("dateCreated", date.clone().into()),
            ("outputResources", json!({ "amis": [] })),
            ("tags", json!(tags)),
            ("buildType", "USER_INITIATED".into()),
            ("imageSource", "CUSTOM".into()),
        ]);
        self.resources.insert(arn.clone(), image);
        if let Some(pipeline) = self.resources.get_mut(&pipeline_arn) {
            pipeline.insert("dateLastRun".into(), date.into());
        }
        self.changed(&arn, None, Status::Pending, None);
        let build = Build {
            arn: arn.clone(),
            fail: self.fail_next.take(),
            tests,
        };
        Ok((json!({ "imageBuildVersionArn": arn }), build))
    }

    pub(crate) fn cancel(&mut self, input: &Obj) -> Result<Value, ApiError> {
        let image = self.find(Kind::Image, req_str(input, "imageBuildVersionArn")?)?;
        let arn = member(image, "arn").to_owned();
        let from = [Status::Pending, Status::Building, Status::Testing, Status::Distributing]
            .into_iter()
            .find(|s| status(image) == Some(s.as_str()))
            .ok_or_else(|| {
                ApiError::InvalidRequest(format!(
                    "The image '{arn}' is {}; only images in a non-terminal state can be cancelled.",
                    status(image).unwrap_or_default()
                ))
            })?;
        self.transition(&arn, from, Status::Cancelled, None);
        Ok(json!({ "imageBuildVersionArn": arn }))
    }

    pub(crate) fn list_pipeline_images(&self, input: &Obj) -> Result<Value, ApiError> {
        let pipeline_arn = member(
            self.find(Kind::ImagePipeline, req_str(input, "imagePipelineArn")?)?,
            "arn",
        );
        let images = self
            .all(Kind::Image)
            .filter(|i| member(i, "sourcePipelineArn") == pipeline_arn)
            .map(|i| project(i, IMAGE_SUMMARY));
        list(images, input, &["name", "version"], "imageSummaryList")
    }

    /// Moves an image from `from` to `to`; false (and nothing changes) when it is no longer in
    /// `from`, e.g. cancelled meanwhile.
    fn transition(&mut self, arn: &str, from: Status, to: Status, reason: Option<&str>) -> bool {
        let Some(image) = self.resources.get_mut(arn) else {
            return false;
        };
        if status(image) != Some(from.as_str()) {
            return false;
        }
        let state = obj([("status", to.as_str().into()), ("reason", reason.into())]);
        image.insert("state".into(), Value::Object(state));
        self.changed(arn, Some(from), to, reason);
        true
    }

    /// Records a new image status on its pipeline and queues the state-change event, unless the
    /// lost-events knob takes it.
    fn changed(&mut self, arn: &str, from: Option<Status>, to: Status, reason: Option<&str>) {
        let pipeline_arn = self
            .resources
            .get(arn)
            .map(|i| member(i, "sourcePipelineArn").to_owned());
        if let Some(pipeline) = pipeline_arn.and_then(|p| self.resources.get_mut(&p)) {
            pipeline.insert("lastRunStatus".into(), to.as_str().into());
        }
        if self.drop_events > 0 {
            self.drop_events -= 1;
            return;
        }
        // The first event (PENDING) has no previous state to report.
        let previous = from.map(|s| json!({ "status": s.as_str() }));
        let state = obj([("status", to.as_str().into()), ("reason", reason.into())]);
        let event = json!({
            "version": "0",
            "id": uuid(),
            "detail-type": "EC2 Image Builder Image State Change",
            "source": "aws.imagebuilder",
            "account": self.account,
            "time": utc_now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            "region": self.region,
            "resources": [arn],
            "detail": obj([("previous-state", previous.into()), ("state", Value::Object(state))]),
        });
        self.events.push_back(event);
    }

    /// The AMIs DISTRIBUTING makes, one per region: the build region's first (created from the
    /// parent), then the others (copied from it).
    fn distribution_plan(&self, arn: &str) -> Result<Vec<AmiRequest>, String> {
        let image = self.resources.get(arn).ok_or("the image no longer exists")?;
        let recipe = image
            .get("imageRecipe")
            .and_then(Value::as_object)
            .ok_or("the image has no recipe")?;
        let parent = self
            .parent_ami(member(recipe, "parentImage"))
            .ok_or("parent image not found")?;
        let distributions: Vec<&Obj> = image
            .get("distributionConfiguration")
            .and_then(|d| d.get("distributions"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_object)
            .collect();
        let mut regions = vec![self.region.as_str()];
        for d in &distributions {
            if !regions.contains(&member(d, "region")) {
                regions.push(member(d, "region"));
            }
        }
        let build_date = utc_now().format("%Y-%m-%dT%H-%M-%S%.3fZ").to_string();
        let build_version = arn.rsplit('/').next().unwrap_or_default();
        Ok(regions
            .into_iter()
            .map(|region| {
                let ami = distributions
                    .iter()
                    .find(|d| member(d, "region") == region)
                    .and_then(|d| d.get("amiDistributionConfiguration"))
                    .and_then(Value::as_object);
                let template = ami.and_then(|a| a.get("name")).and_then(Value::as_str);
                // Without a name template, Image Builder names the AMI "<image name> <build date>".
                let name = template.map_or_else(
                    || format!("{} {build_date}", member(image, "name")),
                    |t| {
                        t.replace("{{imagebuilder:buildDate}}", &build_date)
                            .replace("{{imagebuilder:buildVersion}}", build_version)
                    },
                );
                let mut tags = BTreeMap::from([
                    ("CreatedBy".to_owned(), "EC2 Image Builder".to_owned()),
                    ("Ec2ImageBuilderArn".to_owned(), arn.to_owned()),
                ]);
                for source in [recipe.get("amiTags"), ami.and_then(|a| a.get("amiTags"))] {
                    let strings = source.and_then(Value::as_object).into_iter().flatten();
                    tags.extend(strings.filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned()))));
                }
                AmiRequest {
                    region: region.to_owned(),
                    parent_image_id: parent.clone(),
                    name,
                    description: ami
                        .and_then(|a| a.get("description"))
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                    tags,
                }
            })
            .collect())
    }

    /// The AMI a recipe's parentImage names: an AMI ID, or an image this emulator built (its
    /// AMI in the build region).
    fn parent_ami(&self, parent: &str) -> Option<String> {
        let is_ami_id = parent
            .strip_prefix("ami-")
            .is_some_and(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_hexdigit()));
        if is_ami_id {
            return Some(parent.to_owned());
        }
        let image = self
            .find(Kind::Image, parent)
            .ok()
            .filter(|i| status(i) == Some("AVAILABLE"))?;
        let amis = image.get("outputResources")?.get("amis")?.as_array()?;
        let ami = amis
            .iter()
            .find(|a| a.get("region").and_then(Value::as_str) == Some(self.region.as_str()))?;
        Some(ami.get("image")?.as_str()?.to_owned())
    }

    fn complete(&mut self, arn: &str, amis: Vec<Value>) {
        if !self.transition(arn, Status::Distributing, Status::Available, None) {
            return;
        }
        let scanned = self.resources.get_mut(arn).is_some_and(|image| {
            image.insert("outputResources".into(), json!({ "amis": amis }));
            let enabled = image
                .get("imageScanningConfiguration")
                .and_then(|c| c.get("imageScanningEnabled"));
            let enabled = enabled.and_then(Value::as_bool).unwrap_or(false);
            if enabled {
                image.insert("scanState".into(), json!({ "status": "COMPLETED" }));
            }
            enabled
        });
        // Inspector scans only images whose pipeline enables scanning, as on AWS.
        if scanned {
            let at = utc_now().timestamp_millis() as f64 / 1000.0;
            self.scans.insert(arn.to_owned(), (self.findings.clone(), at));
        }
    }
}

impl Emulator {
    /// Steps one build through its phases. Each step checks the image is still where the build
    /// left it, so a cancel stops the build at its next step.
    pub(crate) async fn drive(self: Arc<Self>, build: Build) {
        let failing = |phase| {
            build
                .fail
                .as_ref()
                .filter(|(p, _)| *p == phase)
                .map(|(_, reason)| reason.as_str())
        };
        let mut steps = vec![(Status::Building, failing(FailPhase::Building))];
        if build.tests {
            steps.push((Status::Testing, failing(FailPhase::Testing)));
        }
        steps.push((Status::Distributing, None));
        let mut at = Status::Pending;
        self.wait_in(at).await;
        for (next, failure) in steps {
            if !self.step(&build.arn, at, next, None) {
                return;
            }
            at = next;
            self.wait_in(at).await;
            if let Some(reason) = failure {
                self.step(&build.arn, at, Status::Failed, Some(reason));
                return;
            }
            // The build ends by creating the image; tests run on instances of it. So a build
            // that fails its tests leaves its AMI behind, listed in outputResources.
            if at == Status::Building {
                if let Err(reason) = self.create_output_ami(&build.arn).await {
                    self.step(&build.arn, at, Status::Failed, Some(&reason));
                    return;
                }
            }
        }
        match self.distribute(&build.arn).await {
            Ok(amis) => self.state().complete(&build.arn, amis),
            Err(reason) => {
                self.state()
                    .transition(&build.arn, Status::Distributing, Status::Failed, Some(&reason));
            }
        }
        self.deliver_events();
    }

    async fn wait_in(&self, status: Status) {
        let phases = self.state().phases;
        let duration = match status {
            Status::Pending => phases.pending,
            Status::Building => phases.building,
            Status::Testing => phases.testing,
            _ => phases.distributing,
        };
        tokio::time::sleep(duration).await;
    }

    fn step(self: &Arc<Self>, arn: &str, from: Status, to: Status, reason: Option<&str>) -> bool {
        let moved = self.state().transition(arn, from, to, reason);
        self.deliver_events();
        moved
    }

    /// The build region's AMI, made from the parent at the end of BUILDING and recorded in the
    /// image's outputResources; the error is the image's failure reason.
    async fn create_output_ami(&self, arn: &str) -> Result<(), String> {
        // Cancelled meanwhile: no image is made.
        if self.state().resources.get(arn).and_then(status) != Some("BUILDING") {
            return Ok(());
        }
        let req = self
            .state()
            .distribution_plan(arn)?
            .into_iter()
            .next()
            .ok_or("no build region")?;
        let id = self
            .backend
            .create_ami(req.clone())
            .await
            .map_err(|e| format!("Distribution to {} failed: {e}", req.region))?;
        let entry = self.ami_entry(req, id);
        let mut st = self.state();
        if let Some(image) = st.resources.get_mut(arn) {
            image.insert("outputResources".into(), json!({ "amis": [entry] }));
        }
        Ok(())
    }

    /// DISTRIBUTING: copies the build region's AMI to every other distribution region.
    async fn distribute(&self, arn: &str) -> Result<Vec<Value>, String> {
        let build_region = self.state().region.clone();
        let plan = self.state().distribution_plan(arn)?;
        let home = self
            .state()
            .resources
            .get(arn)
            .and_then(|i| i.get("outputResources")?.get("amis")?.get(0).cloned())
            .ok_or("the build made no AMI")?;
        let source = home.get("image").and_then(Value::as_str).unwrap_or_default().to_owned();
        let mut amis = vec![home];
        for req in plan.into_iter().skip(1) {
            let made = self
                .backend
                .copy_ami(&build_region, &source, &req.region, &req.name, req.tags.clone())
                .await;
            let id = made.map_err(|e| format!("Distribution to {} failed: {e}", req.region))?;
            amis.push(self.ami_entry(req, id));
        }
        Ok(amis)
    }

    fn ami_entry(&self, req: AmiRequest, id: String) -> Value {
        let account = self.state().account.clone();
        Value::Object(obj([
            ("region", req.region.into()),
            ("image", id.into()),
            ("name", req.name.into()),
            ("description", req.description.into()),
            ("accountId", account.into()),
        ]))
    }
}
