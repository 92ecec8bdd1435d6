//! The Image Builder reads several functions make: one image, one pipeline, one recipe. Each
//! retries transient errors, and an answer without the resource is `NotFound`, as a
//! ResourceNotFoundException is.

use crate::{classify, with_retries, BakeError};
use aws_sdk_imagebuilder::types::{Image, ImagePipeline, ImageRecipe};
use aws_sdk_imagebuilder::Client;

/// GetImage: one image build version.
pub async fn get_image(ib: &Client, arn: &str) -> Result<Image, BakeError> {
    with_retries(|| async {
        ib.get_image()
            .image_build_version_arn(arn)
            .send()
            .await
            .map_err(|e| classify("GetImage", e))
    })
    .await?
    .image
    .ok_or_else(|| BakeError::NotFound(format!("GetImage: no image {arn}")))
}

/// GetImagePipeline.
pub async fn get_pipeline(ib: &Client, arn: &str) -> Result<ImagePipeline, BakeError> {
    with_retries(|| async {
        ib.get_image_pipeline()
            .image_pipeline_arn(arn)
            .send()
            .await
            .map_err(|e| classify("GetImagePipeline", e))
    })
    .await?
    .image_pipeline
    .ok_or_else(|| BakeError::NotFound(format!("GetImagePipeline: {arn}")))
}

/// GetImageRecipe.
pub async fn get_recipe(ib: &Client, arn: &str) -> Result<ImageRecipe, BakeError> {
    with_retries(|| async {
        ib.get_image_recipe()
            .image_recipe_arn(arn)
            .send()
            .await
            .map_err(|e| classify("GetImageRecipe", e))
    })
    .await?
    .image_recipe
    .ok_or_else(|| BakeError::NotFound(format!("GetImageRecipe: {arn}")))
}
