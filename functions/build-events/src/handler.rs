//! "EC2 Image Builder Image State Change" → the waiting bake, if the build ended. The event
//! names the image only (`resources[0]`); its status is in `detail.state`.

use bakery_aws::watch::{self, Deps};
use bakery_aws::BakeError;
use bakery_core::steps::{BuildStatus, ImageStateChange, StateChangeHandled};

pub async fn handle(event: ImageStateChange, deps: &Deps) -> Result<StateChangeHandled, BakeError> {
    let image = event
        .resources
        .first()
        .ok_or_else(|| BakeError::InvalidInput("the event names no image".into()))?;
    let status = BuildStatus::new(&event.detail.state.status, event.detail.state.reason);
    let answered = status.terminal && watch::answer(deps, image, &status).await?;
    Ok(StateChangeHandled {
        image: image.clone(),
        status: status.status,
        answered,
    })
}
