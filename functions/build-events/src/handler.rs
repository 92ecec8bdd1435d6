//! "EC2 Image Builder Image State Change" → the waiting bake, if the build ended. The event
//! names the image only (`resources[0]`); its status is in `detail.state`.

use bakery_aws::watch::{self, BuildStatus, Deps};
use bakery_aws::BakeError;
use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize)]
struct State {
    status: String,
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Deserialize)]
struct Detail {
    state: State,
}

#[derive(Deserialize)]
struct Event {
    resources: Vec<String>,
    detail: Detail,
}

pub async fn handle(payload: Value, deps: &Deps) -> Result<Value, BakeError> {
    let event: Event =
        serde_json::from_value(payload).map_err(|e| BakeError::InvalidInput(format!("state change event: {e}")))?;
    let image = event
        .resources
        .first()
        .ok_or_else(|| BakeError::InvalidInput("the event names no image".into()))?;
    let status = BuildStatus::new(&event.detail.state.status, event.detail.state.reason);
    let answered = status.terminal && watch::answer(deps, image, &status).await?;
    Ok(serde_json::json!({"image": image, "status": status.status, "answered": answered}))
}
