//! The Image Builder reads several functions make: one image, one pipeline, one recipe. Each
//! retries transient errors, and an answer without the resource is `NotFound`, as a
//! ResourceNotFoundException is.

use crate::{send, BakeError};
use aws_sdk_imagebuilder::types::{Image, ImagePipeline, ImageRecipe};
use aws_sdk_imagebuilder::Client;
use bakery_core::distribution::Distribution;

/// GetImage: one image build version.
pub async fn get_image(ib: &Client, arn: &str) -> Result<Image, BakeError> {
    send("GetImage", || ib.get_image().image_build_version_arn(arn).send())
        .await?
        .image
        .ok_or_else(|| BakeError::NotFound(format!("GetImage: no image {arn}")))
}

/// The distributions of the pipeline's distribution configuration (none without one), as
/// `bakery_core::distribution` judges them.
pub async fn pipeline_distributions(ib: &Client, pipeline: &ImagePipeline) -> Result<Vec<Distribution>, BakeError> {
    let Some(arn) = pipeline.distribution_configuration_arn.as_deref() else {
        return Ok(Vec::new());
    };
    let config = send("GetDistributionConfiguration", || {
        ib.get_distribution_configuration()
            .distribution_configuration_arn(arn)
            .send()
    })
    .await?
    .distribution_configuration
    .ok_or_else(|| BakeError::NotFound(format!("GetDistributionConfiguration: {arn}")))?;
    let owned = |v: &[String]| v.to_vec();
    Ok(config
        .distributions()
        .iter()
        .map(|d| {
            let ami = d.ami_distribution_configuration();
            let launch = ami.and_then(|a| a.launch_permission());
            Distribution {
                region: d.region().to_owned(),
                target_account_ids: owned(ami.map(|a| a.target_account_ids()).unwrap_or_default()),
                launch_user_ids: owned(launch.map(|l| l.user_ids()).unwrap_or_default()),
                launch_user_groups: owned(launch.map(|l| l.user_groups()).unwrap_or_default()),
                launch_organization_arns: owned(launch.map(|l| l.organization_arns()).unwrap_or_default()),
                launch_organizational_unit_arns: owned(
                    launch.map(|l| l.organizational_unit_arns()).unwrap_or_default(),
                ),
                launch_template_accounts: d
                    .launch_template_configurations()
                    .iter()
                    .map(|c| c.account_id().map(str::to_owned))
                    .collect(),
                ssm_parameter_accounts: d
                    .ssm_parameter_configurations()
                    .iter()
                    .map(|c| c.ami_account_id().map(str::to_owned))
                    .collect(),
                fast_launch_accounts: d
                    .fast_launch_configurations()
                    .iter()
                    .map(|c| c.account_id().map(str::to_owned))
                    .collect(),
            }
        })
        .collect())
}

/// Refuses a pipeline whose distribution would let its image leave before the gate, naming
/// each setting.
pub async fn check_distribution(
    ib: &Client,
    pipeline: &ImagePipeline,
    home_region: &str,
    account: &str,
) -> Result<(), BakeError> {
    let found = bakery_core::distribution::leaks(home_region, account, &pipeline_distributions(ib, pipeline).await?);
    if found.is_empty() {
        return Ok(());
    }
    Err(BakeError::UnsafeDistribution(format!(
        "{} distributes before the gate: {} (its distribution configuration {})",
        pipeline.arn().unwrap_or_default(),
        found.join("; "),
        pipeline.distribution_configuration_arn().unwrap_or_default()
    )))
}

/// GetImagePipeline.
pub async fn get_pipeline(ib: &Client, arn: &str) -> Result<ImagePipeline, BakeError> {
    send("GetImagePipeline", || {
        ib.get_image_pipeline().image_pipeline_arn(arn).send()
    })
    .await?
    .image_pipeline
    .ok_or_else(|| BakeError::NotFound(format!("GetImagePipeline: {arn}")))
}

/// GetImageRecipe.
pub async fn get_recipe(ib: &Client, arn: &str) -> Result<ImageRecipe, BakeError> {
    send("GetImageRecipe", || ib.get_image_recipe().image_recipe_arn(arn).send())
        .await?
        .image_recipe
        .ok_or_else(|| BakeError::NotFound(format!("GetImageRecipe: {arn}")))
}
