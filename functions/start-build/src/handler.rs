//! Starts one pipeline's build. When the bake brings a new parent image, the recipe gets its
//! next patch version on that parent (recipes are immutable) and the pipeline is pointed at it;
//! then the build starts. Every call carries a token derived from the bake, so a retried step
//! never makes a second recipe, update or build.

use aws_sdk_imagebuilder::types::{ImagePipeline, ImageRecipe};
use bakery_aws::imagebuilder::{check_distribution, get_pipeline, get_recipe};
use bakery_aws::{send, BakeError};
use bakery_core::bake::{client_token, next_patch_version};
use bakery_core::ids::Arn;
use bakery_core::steps::{BakeRequest, BuildStarted};

pub struct Deps {
    pub ib: aws_sdk_imagebuilder::Client,
    pub ssm: aws_sdk_ssm::Client,
    pub policy_prefix: String,
    /// What the stack's template parameters let the bake do.
    pub grants: bakery_core::grants::StackGrants,
}

/// How many recipe versions past the current one to try when another bake took the next.
const VERSION_ATTEMPTS: usize = 10;

pub async fn start(req: &BakeRequest, deps: &Deps) -> Result<BuildStarted, BakeError> {
    let arn = Arn::parse_kind(
        &req.pipeline_arn,
        "imagebuilder",
        "image-pipeline",
        "an image pipeline ARN",
    )
    .map_err(BakeError::InvalidInput)?;
    let (pipeline_name, home_region, account_id) = (
        arn.resource_name().to_owned(),
        arn.region.to_owned(),
        arn.account.to_owned(),
    );
    let policy = bakery_aws::load_policy(&deps.ssm, &deps.policy_prefix, &pipeline_name).await?;
    if policy.pipeline_arn != req.pipeline_arn {
        return Err(BakeError::InvalidPolicy(format!(
            "the policy for {pipeline_name} is for {}, not {}",
            policy.pipeline_arn, req.pipeline_arn
        )));
    }
    // Before anything is built: a policy the stack may not carry out would fail only after its
    // AMIs were shared.
    deps.grants
        .check(&policy)
        .map_err(|e| BakeError::InvalidPolicy(format!("{pipeline_name}: {}", e.to_string().replace('\n', "; "))))?;

    let pipeline = get_pipeline(&deps.ib, &req.pipeline_arn).await?;
    // Nothing may leave before the gate: the pipeline's own distribution stays home.
    check_distribution(&deps.ib, &pipeline, &home_region, &account_id).await?;
    let current_arn = pipeline.image_recipe_arn.clone().ok_or_else(|| {
        BakeError::InvalidInput(format!(
            "{} has no image recipe (container pipelines are not baked)",
            req.pipeline_arn
        ))
    })?;
    let current = get_recipe(&deps.ib, &current_arn).await?;

    let recipe = match &req.source_ami {
        Some(source) if current.parent_image.as_deref() != Some(source.image_id.as_str()) => {
            if source.region.as_str() != home_region {
                return Err(BakeError::InvalidInput(format!(
                    "source AMI {} is in {}, the pipeline builds in {home_region}",
                    source.image_id, source.region
                )));
            }
            let recipe = new_recipe_version(deps, req, &current, source.image_id.as_str()).await?;
            point_pipeline_at(deps, req, &pipeline, recipe.arn.as_deref().unwrap_or_default()).await?;
            recipe
        }
        _ => current,
    };

    let token = client_token(&req.bake_id, "start");
    let image_arn = send("StartImagePipelineExecution", || {
        deps.ib
            .start_image_pipeline_execution()
            .image_pipeline_arn(&req.pipeline_arn)
            .client_token(&token)
            .send()
    })
    .await?
    .image_build_version_arn
    .ok_or_else(|| BakeError::InvalidInput("StartImagePipelineExecution returned no image".into()))?;
    tracing::info!(pipeline = %req.pipeline_arn, image = %image_arn, bake_id = %req.bake_id, "build started");

    Ok(BuildStarted {
        image_build_version_arn: image_arn,
        recipe_arn: recipe.arn.clone().unwrap_or_default(),
        recipe_version: recipe.version.clone().unwrap_or_default(),
        parent_image: recipe.parent_image.clone().unwrap_or_default(),
        pipeline_name,
        home_region,
        account_id,
        platform: recipe.platform.as_ref().map(|p| p.as_str().to_owned()),
        policy,
    })
}

/// The recipe's next patch version with `parent` as its parent image, everything else carried
/// over. A version another bake already made on the same parent is reused; one on another
/// parent is skipped.
async fn new_recipe_version(
    deps: &Deps,
    req: &BakeRequest,
    current: &ImageRecipe,
    parent: &str,
) -> Result<ImageRecipe, BakeError> {
    let name = current.name.clone().unwrap_or_default();
    let mut version = current.version.clone().unwrap_or_default();
    let token = client_token(&req.bake_id, "recipe");
    for _ in 0..VERSION_ATTEMPTS {
        version = next_patch_version(&version).map_err(BakeError::InvalidInput)?;
        let created = send("CreateImageRecipe", || {
            deps.ib
                .create_image_recipe()
                .name(&name)
                .semantic_version(&version)
                .parent_image(parent)
                .set_description(current.description.clone())
                .set_components(current.components.clone())
                .set_block_device_mappings(current.block_device_mappings.clone())
                .set_working_directory(current.working_directory.clone())
                .set_tags(current.tags.clone())
                .set_additional_instance_configuration(current.additional_instance_configuration.clone())
                .set_ami_tags(current.ami_tags.clone())
                .client_token(&token)
                .send()
        })
        .await;
        match created {
            Ok(out) => {
                let arn = out.image_recipe_arn.unwrap_or_default();
                tracing::info!(recipe = %arn, parent, "new recipe version");
                return get_recipe(&deps.ib, &arn).await;
            }
            Err(BakeError::Aws { code, .. }) if code == "ResourceAlreadyExistsException" => {
                let arn = current
                    .arn
                    .as_deref()
                    .and_then(|a| a.rsplit_once('/'))
                    .map(|(base, _)| format!("{base}/{version}"))
                    .unwrap_or_default();
                let existing = get_recipe(&deps.ib, &arn).await?;
                if existing.parent_image.as_deref() == Some(parent) {
                    return Ok(existing);
                }
            }
            Err(e) => return Err(e),
        }
    }
    Err(BakeError::Aws {
        operation: "CreateImageRecipe".into(),
        code: "ResourceAlreadyExistsException".into(),
        message: format!(
            "{VERSION_ATTEMPTS} versions after {} are taken",
            current.version.clone().unwrap_or_default()
        ),
    })
}

/// UpdateImagePipeline replaces every field: what is not sent again is cleared. Send them all.
async fn point_pipeline_at(
    deps: &Deps,
    req: &BakeRequest,
    p: &ImagePipeline,
    recipe_arn: &str,
) -> Result<(), BakeError> {
    let token = client_token(&req.bake_id, "pipeline");
    send("UpdateImagePipeline", || {
        deps.ib
            .update_image_pipeline()
            .image_pipeline_arn(&req.pipeline_arn)
            .image_recipe_arn(recipe_arn)
            .set_description(p.description.clone())
            .set_infrastructure_configuration_arn(p.infrastructure_configuration_arn.clone())
            .set_distribution_configuration_arn(p.distribution_configuration_arn.clone())
            .set_image_tests_configuration(p.image_tests_configuration.clone())
            .set_enhanced_image_metadata_enabled(p.enhanced_image_metadata_enabled)
            .set_schedule(p.schedule.clone())
            .set_status(p.status.clone())
            .set_image_scanning_configuration(p.image_scanning_configuration.clone())
            .set_workflows(p.workflows.clone())
            .set_execution_role(p.execution_role.clone())
            .set_logging_configuration(p.logging_configuration.clone())
            .client_token(&token)
            .send()
    })
    .await
    .map(drop)
}
