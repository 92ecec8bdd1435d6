//! Recipes, components, infrastructure and distribution configurations and pipelines: one
//! create / get / list shape for all, keyed by ARN. Resources are stored as the Get* operations
//! return them: the members the caller sent plus what Image Builder adds.

use crate::error::ApiError;
use crate::wire::{now, obj, opt_str, opt_typed, req_str, Obj};
use crate::State;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    ImageRecipe,
    Component,
    InfrastructureConfiguration,
    DistributionConfiguration,
    ImagePipeline,
    Image,
}

impl Kind {
    const ALL: [Kind; 6] = [
        Kind::ImageRecipe,
        Kind::Component,
        Kind::InfrastructureConfiguration,
        Kind::DistributionConfiguration,
        Kind::ImagePipeline,
        Kind::Image,
    ];

    /// The resource type in the ARN; the member naming the ARN (Get query, Create response);
    /// the member holding the resource in the Get response.
    fn names(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Kind::ImageRecipe => ("image-recipe", "imageRecipeArn", "imageRecipe"),
            Kind::Component => ("component", "componentBuildVersionArn", "component"),
            Kind::InfrastructureConfiguration => (
                "infrastructure-configuration",
                "infrastructureConfigurationArn",
                "infrastructureConfiguration",
            ),
            Kind::DistributionConfiguration => (
                "distribution-configuration",
                "distributionConfigurationArn",
                "distributionConfiguration",
            ),
            Kind::ImagePipeline => ("image-pipeline", "imagePipelineArn", "imagePipeline"),
            Kind::Image => ("image", "imageBuildVersionArn", "image"),
        }
    }

    pub(crate) fn arn_member(self) -> &'static str {
        self.names().1
    }

    /// Components and images have builds: `<name>/<x.y.z>/<n>`.
    fn has_builds(self) -> bool {
        matches!(self, Kind::Component | Kind::Image)
    }
}

/// ListImageRecipes' summary members.
const RECIPE_SUMMARY: &[&str] = &["arn", "name", "platform", "owner", "parentImage", "dateCreated", "tags"];

/// Checks the Create* members of one kind, adds Image Builder's own members to the resource,
/// and returns the ARN path after the resource type.
pub(crate) type Prepare = fn(&State, &Obj, &mut Obj) -> Result<String, ApiError>;

/// The model's Filter (and ImageScanFindingsFilter): a member name and the values it may have.
#[derive(Deserialize)]
pub(crate) struct Filter {
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) values: Vec<String>,
}

/// Image Builder lowercases names in ARNs and turns spaces into hyphens ("My Image" → my-image).
pub(crate) fn arn_name(name: &str) -> String {
    name.to_lowercase().replace(' ', "-")
}

impl State {
    pub(crate) fn arn(&self, kind: Kind, path: &str) -> String {
        format!(
            "arn:aws:imagebuilder:{}:{}:{}/{path}",
            self.region,
            self.account,
            kind.names().0
        )
    }

    /// The ARN of the stored resource `arn` names: itself, or for a version ARN of a component
    /// or image (no build number), its latest build.
    fn resolve(&self, kind: Kind, arn: &str) -> Result<String, ApiError> {
        let (arn_type, member, _) = kind.names();
        if !arn.starts_with("arn:aws") || !arn.contains(":imagebuilder:") || !arn.contains(&format!(":{arn_type}/")) {
            return Err(ApiError::InvalidRequest(format!(
                "The value supplied for parameter '{member}' is not a valid ARN: '{arn}'."
            )));
        }
        if self.resources.contains_key(arn) {
            return Ok(arn.to_owned());
        }
        let latest = self.latest_build(arn).filter(|_| kind.has_builds());
        latest.map(|n| format!("{arn}/{n}")).ok_or_else(|| not_found(arn))
    }

    /// The highest build number stored under a version ARN.
    pub(crate) fn latest_build(&self, version_arn: &str) -> Option<u32> {
        let prefix = format!("{version_arn}/");
        self.resources
            .keys()
            .filter_map(|k| k.strip_prefix(&prefix)?.parse().ok())
            .max()
    }

    pub(crate) fn find(&self, kind: Kind, arn: &str) -> Result<&Obj, ApiError> {
        let key = self.resolve(kind, arn)?;
        self.resources.get(&key).ok_or_else(|| not_found(arn))
    }

    pub(crate) fn find_mut(&mut self, kind: Kind, arn: &str) -> Result<&mut Obj, ApiError> {
        let key = self.resolve(kind, arn)?;
        self.resources.get_mut(&key).ok_or_else(|| not_found(arn))
    }

    pub(crate) fn all(&self, kind: Kind) -> impl Iterator<Item = &Obj> {
        let prefix = self.arn(kind, "");
        self.resources
            .iter()
            .filter(move |(k, _)| k.starts_with(&prefix))
            .map(|(_, v)| v)
    }

    /// Create* of every kind but images: validate, name the ARN (`prepare` checks the members
    /// of its kind and adds Image Builder's own), refuse a second resource under it, store the
    /// members sent (but the token).
    pub(crate) fn create(&mut self, kind: Kind, input: &Obj, prepare: Prepare) -> Result<Value, ApiError> {
        check_name(req_str(input, "name")?)?;
        let mut resource = input.clone();
        resource.remove("clientToken");
        let arn = self.arn(kind, &prepare(self, input, &mut resource)?);
        if self.resources.contains_key(&arn) {
            return Err(ApiError::ResourceAlreadyExists(format!(
                "The resource ARN '{arn}' already exists."
            )));
        }
        resource.insert("arn".into(), arn.clone().into());
        resource.insert("dateCreated".into(), now().into());
        self.resources.insert(arn.clone(), resource);
        Ok(json!({ kind.arn_member(): arn }))
    }

    pub(crate) fn prepare_recipe(&self, input: &Obj, recipe: &mut Obj) -> Result<String, ApiError> {
        req_str(input, "parentImage")?;
        let version = take_version(recipe)?;
        recipe.insert("type".into(), "AMI".into());
        recipe.insert("platform".into(), "Linux".into());
        recipe.insert("owner".into(), self.account.clone().into());
        Ok(format!("{}/{version}", arn_name(req_str(input, "name")?)))
    }

    pub(crate) fn prepare_component(&self, input: &Obj, component: &mut Obj) -> Result<String, ApiError> {
        req_str(input, "platform")?;
        if opt_str(input, "data")?.is_some() == opt_str(input, "uri")?.is_some() {
            return Err(ApiError::InvalidParameterCombination(
                "Specify exactly one of 'data' and 'uri'.".into(),
            ));
        }
        let version = take_version(component)?;
        let version_path = format!("{}/{version}", arn_name(req_str(input, "name")?));
        // One build per component version here; CreateComponent's model has
        // ResourceInUseException, not ResourceAlreadyExistsException.
        if self.latest_build(&self.arn(Kind::Component, &version_path)).is_some() {
            return Err(ApiError::ResourceInUse(format!(
                "The component version '{version_path}' already exists."
            )));
        }
        component.insert("type".into(), "BUILD".into());
        component.insert("owner".into(), self.account.clone().into());
        Ok(format!("{version_path}/1"))
    }

    pub(crate) fn prepare_infrastructure(&self, input: &Obj, _: &mut Obj) -> Result<String, ApiError> {
        req_str(input, "instanceProfileName")?;
        Ok(arn_name(req_str(input, "name")?))
    }

    pub(crate) fn prepare_distribution(&self, input: &Obj, distribution: &mut Obj) -> Result<String, ApiError> {
        let distributions: Vec<Obj> = opt_typed(input, "distributions")?.unwrap_or_default();
        if distributions.is_empty() {
            return Err(ApiError::InvalidRequest(
                "The required parameter 'distributions' is missing.".into(),
            ));
        }
        for d in &distributions {
            req_str(d, "region")?;
        }
        distribution.entry("timeoutMinutes").or_insert(720.into());
        Ok(arn_name(req_str(input, "name")?))
    }

    pub(crate) fn prepare_pipeline(&self, input: &Obj, pipeline: &mut Obj) -> Result<String, ApiError> {
        self.pipeline_settings(pipeline)?;
        Ok(arn_name(req_str(input, "name")?))
    }

    pub(crate) fn get(&self, kind: Kind, input: &Obj) -> Result<Value, ApiError> {
        let resource = self.find(kind, req_str(input, kind.arn_member())?)?;
        Ok(json!({ kind.names().2: resource }))
    }

    pub(crate) fn list_recipes(&self, input: &Obj) -> Result<Value, ApiError> {
        // Only this account's recipes exist here; Amazon-owned or shared ones do not.
        let own = opt_str(input, "owner")?.is_none_or(|o| o == "Self");
        let summaries = self
            .all(Kind::ImageRecipe)
            .filter(|_| own)
            .map(|r| project(r, RECIPE_SUMMARY));
        list(
            summaries,
            input,
            &["name", "parentImage", "platform"],
            "imageRecipeSummaryList",
        )
    }

    pub(crate) fn list_pipelines(&self, input: &Obj) -> Result<Value, ApiError> {
        let filters = [
            "description",
            "distributionConfigurationArn",
            "imageRecipeArn",
            "infrastructureConfigurationArn",
            "name",
            "status",
        ];
        list(
            self.all(Kind::ImagePipeline).cloned().map(Value::Object),
            input,
            &filters,
            "imagePipelineList",
        )
    }

    /// The members a pipeline holds from Create/UpdateImagePipeline, checked and with AWS's
    /// defaults filled in.
    fn pipeline_settings(&self, pipeline: &mut Obj) -> Result<(), ApiError> {
        if opt_str(pipeline, "containerRecipeArn")?.is_some() {
            return Err(ApiError::InvalidRequest(
                "Container pipelines are not emulated; use 'imageRecipeArn'.".into(),
            ));
        }
        let recipe = self.find(Kind::ImageRecipe, req_str(pipeline, "imageRecipeArn")?)?;
        let platform = recipe.get("platform").cloned().unwrap_or(Value::Null);
        self.find(
            Kind::InfrastructureConfiguration,
            req_str(pipeline, "infrastructureConfigurationArn")?,
        )?;
        if let Some(arn) = opt_str(pipeline, "distributionConfigurationArn")? {
            self.find(Kind::DistributionConfiguration, arn)?;
        }
        match opt_str(pipeline, "status")? {
            None | Some("ENABLED" | "DISABLED") => {}
            Some(other) => {
                return Err(ApiError::InvalidRequest(format!(
                    "'{other}' is not a valid pipeline status."
                )));
            }
        }
        pipeline.insert("platform".into(), platform);
        pipeline.entry("status").or_insert("ENABLED".into());
        pipeline.entry("enhancedImageMetadataEnabled").or_insert(true.into());
        let tests = pipeline.entry("imageTestsConfiguration").or_insert(json!({}));
        if let Value::Object(tests) = tests {
            tests.entry("imageTestsEnabled").or_insert(true.into());
            tests.entry("timeoutMinutes").or_insert(720.into());
        }
        Ok(())
    }

    /// UpdateImagePipeline replaces the whole configuration, as AWS does: every member the
    /// request leaves out is cleared (or back to its default), so callers (Bakery) must send
    /// them all again. Name, tags, creation date and run history stay.
    pub(crate) fn update_pipeline(&mut self, input: &Obj) -> Result<Value, ApiError> {
        let arn = req_str(input, "imagePipelineArn")?;
        let current = self.find(Kind::ImagePipeline, arn)?;
        let arn = current.get("arn").and_then(Value::as_str).unwrap_or(arn).to_owned();
        let kept: Vec<(String, Value)> = ["arn", "name", "dateCreated", "tags", "dateLastRun", "lastRunStatus"]
            .into_iter()
            .filter_map(|k| Some((k.to_owned(), current.get(k)?.clone())))
            .collect();
        self.refuse_if_building(&arn, ApiError::ResourceInUse)?;
        let mut pipeline = input.clone();
        pipeline.remove("clientToken");
        pipeline.remove("imagePipelineArn");
        self.pipeline_settings(&mut pipeline)?;
        pipeline.extend(kept);
        pipeline.insert("dateUpdated".into(), now().into());
        self.resources.insert(arn.clone(), pipeline);
        Ok(json!({ "imagePipelineArn": arn }))
    }

    pub(crate) fn delete_pipeline(&mut self, input: &Obj) -> Result<Value, ApiError> {
        let arn = req_str(input, "imagePipelineArn")?;
        let arn = self.resolve(Kind::ImagePipeline, arn)?;
        // DeleteImagePipeline's model lists ResourceDependencyException, not ResourceInUseException.
        self.refuse_if_building(&arn, ApiError::ResourceDependency)?;
        self.resources.remove(&arn);
        Ok(json!({ "imagePipelineArn": arn }))
    }

    pub(crate) fn tag(&mut self, input: &Obj) -> Result<Value, ApiError> {
        let tags: BTreeMap<String, String> = opt_typed(input, "tags")?
            .ok_or_else(|| ApiError::InvalidParameter("The required parameter 'tags' is missing.".into()))?;
        let resource = self.tagged(input)?;
        if let Value::Object(current) = resource.entry("tags").or_insert(json!({})) {
            current.extend(tags.into_iter().map(|(k, v)| (k, v.into())));
        }
        Ok(json!({}))
    }

    pub(crate) fn untag(&mut self, input: &Obj) -> Result<Value, ApiError> {
        let keys: Vec<String> = opt_typed(input, "tagKeys")?
            .ok_or_else(|| ApiError::InvalidParameter("The required parameter 'tagKeys' is missing.".into()))?;
        if let Some(Value::Object(current)) = self.tagged(input)?.get_mut("tags") {
            current.retain(|k, _| !keys.contains(k));
        }
        Ok(json!({}))
    }

    pub(crate) fn list_tags(&mut self, input: &Obj) -> Result<Value, ApiError> {
        let tags = self.tagged(input)?.get("tags").cloned().unwrap_or(json!({}));
        Ok(json!({ "tags": tags }))
    }

    /// The resource a tag operation's path names. Its model has InvalidParameterException
    /// for a malformed ARN.
    fn tagged(&mut self, input: &Obj) -> Result<&mut Obj, ApiError> {
        let arn = req_str(input, "resourceArn")?;
        let kind = Kind::ALL
            .into_iter()
            .find(|k| arn.starts_with("arn:aws") && arn.contains(&format!(":{}/", k.names().0)))
            .ok_or_else(|| ApiError::InvalidParameter(format!("'{arn}' is not an Image Builder resource ARN.")))?;
        self.find_mut(kind, arn)
    }
}

fn not_found(arn: &str) -> ApiError {
    ApiError::ResourceNotFound(format!("The resource ARN '{arn}' does not exist."))
}

fn check_name(name: &str) -> Result<(), ApiError> {
    // The model's ResourceName: ^[-_A-Za-z-0-9][-_A-Za-z0-9 ]{1,126}[-_A-Za-z-0-9]$
    let allowed = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    let ok = (3..=128).contains(&name.len())
        && name.chars().all(|c| allowed(c) || c == ' ')
        && name.starts_with(allowed)
        && name.ends_with(allowed);
    if ok {
        Ok(())
    } else {
        Err(ApiError::InvalidRequest(format!(
            "The value supplied for parameter 'name' is not valid: '{name}'."
        )))
    }
}

/// Moves `semanticVersion` to the stored `version`, checked: three numbers, each at most
/// 2^30-1 (the API reference's limit).
fn take_version(resource: &mut Obj) -> Result<String, ApiError> {
    let version = req_str(resource, "semanticVersion")?.to_owned();
    let nodes: Vec<Option<u32>> = version
        .split('.')
        .map(|n| n.parse().ok().filter(|_| n.bytes().all(|b| b.is_ascii_digit())))
        .collect();
    if nodes.len() != 3 || nodes.iter().any(|n| n.is_none_or(|n| n > 1_073_741_823)) {
        return Err(ApiError::InvalidVersionNumber(format!(
            "The semantic version '{version}' is not valid: use <major>.<minor>.<patch>, each from 0 to 1073741823."
        )));
    }
    resource.remove("semanticVersion");
    resource.insert("version".into(), version.clone().into());
    Ok(version)
}

pub(crate) fn project(resource: &Obj, members: &[&str]) -> Value {
    Value::Object(
        members
            .iter()
            .filter_map(|&m| Some((m.to_owned(), resource.get(m)?.clone())))
            .collect(),
    )
}

/// A List* answer: items whose top-level string members match the request's filters (any
/// value of each filter), one page of them under `member`, and the next token.
pub(crate) fn list(
    items: impl Iterator<Item = Value>,
    input: &Obj,
    filter_names: &[&str],
    member: &str,
) -> Result<Value, ApiError> {
    let filters: Vec<Filter> = opt_typed(input, "filters")?.unwrap_or_default();
    if let Some(f) = filters.iter().find(|f| !filter_names.contains(&f.name.as_str())) {
        return Err(ApiError::InvalidRequest(format!(
            "The filter '{}' is not supported here; use one of {filter_names:?}.",
            f.name
        )));
    }
    let matching = items.filter(|item| {
        filters.iter().all(|f| {
            item.get(&f.name)
                .and_then(Value::as_str)
                .is_some_and(|v| f.values.iter().any(|x| x == v))
        })
    });
    page(matching, input, member)
}

/// One page of `items` under `member`: `maxResults` (1 to 25, the model's RestrictedInteger)
/// from the offset the `nextToken` carries.
pub(crate) fn page(items: impl Iterator<Item = Value>, input: &Obj, member: &str) -> Result<Value, ApiError> {
    let max: u64 = opt_typed(input, "maxResults")?.unwrap_or(25);
    if !(1..=25).contains(&max) {
        return Err(ApiError::InvalidRequest(
            "The value supplied for parameter 'maxResults' must be from 1 to 25.".into(),
        ));
    }
    let offset: usize = match opt_str(input, "nextToken")? {
        None => 0,
        Some(token) => token
            .parse()
            .map_err(|_| ApiError::InvalidPaginationToken(format!("The pagination token '{token}' is not valid.")))?,
    };
    let max = max as usize;
    let mut items: Vec<Value> = items.skip(offset).take(max + 1).collect();
    let next = (items.len() > max).then(|| (offset + max).to_string());
    items.truncate(max);
    Ok(Value::Object(obj([
        (member, Value::Array(items)),
        ("nextToken", next.into()),
    ])))
}
