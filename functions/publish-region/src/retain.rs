//! ApplyRetention: after a publication, the pipeline's older AMIs in the home region and every
//! target region are deregistered with their snapshots (`bakery_aws::retention`). The bake just
//! published counts first among the newest and always stays.

use crate::Deps;
use bakery_aws::retention::{self, Scope};
use bakery_aws::BakeError;
use bakery_core::steps::{RetainRequest, RetentionApplied};

pub async fn retain(input: RetainRequest, deps: &Deps) -> Result<RetentionApplied, BakeError> {
    let scope = Scope {
        pipeline_arn: &input.pipeline_arn,
        current_bake: &input.bake_id,
        regions: retention::regions(&input.image.region, &input.regions),
        ssm_parameters: &input.ssm_parameters,
        retention: &input.retention,
    };
    let plans = retention::plan(&deps.sdk, &scope).await?;
    retention::apply(&deps.sdk, plans).await
}
