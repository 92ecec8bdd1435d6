//! Classifies what arrives into bakes or ignores. Finding the pipelines that follow a trigger,
//! checking trust and starting the bake executions build on this (see the README's Status).

use bakery_core::{classify_value, Classification, ClassifyError};
use lambda_runtime::Diagnostic;
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum TriggerError {
    #[error(transparent)]
    Classify(#[from] ClassifyError),
    #[error("cannot serialize the classification: {0}")]
    Output(#[from] serde_json::Error),
}

impl From<TriggerError> for Diagnostic {
    /// `errorType` is the stable name that Step Functions `Retry`/`Catch` and alarms match on.
    fn from(e: TriggerError) -> Diagnostic {
        let error_type = match &e {
            TriggerError::Classify(c) => c.error_type(),
            TriggerError::Output(_) => "InternalError",
        };
        Diagnostic {
            error_type: error_type.to_owned(),
            error_message: e.to_string(),
        }
    }
}

pub async fn handle(payload: Value) -> Result<Value, TriggerError> {
    let classification = classify_value(payload).inspect_err(|e| {
        tracing::warn!(error_type = e.error_type(), error = %e, "refused malformed input");
    })?;
    match &classification {
        Classification::Bake { trigger } => tracing::info!(
            event_id = %trigger.event_id,
            origin = ?trigger.origin,
            source_amis = trigger.source_amis.len(),
            "bake trigger"
        ),
        Classification::Ignore { reason } => tracing::info!(%reason, "ignored"),
    }
    Ok(serde_json::to_value(classification)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Value {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../events")
            .join(name);
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    }

    #[tokio::test]
    async fn a_release_is_a_bake() {
        let out = handle(fixture("sns/soe-release.json")).await.unwrap();
        assert_eq!(out["action"], "bake");
        assert_eq!(out["trigger"]["sourceAmis"].as_array().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn malformed_input_is_a_typed_error() {
        let err = handle(fixture("malformed/sns-soe-release-ami-by-name.json"))
            .await
            .unwrap_err();
        let d = Diagnostic::from(err);
        assert_eq!(d.error_type, "MalformedEvent");
        assert!(
            d.error_message.contains("never resolves an AMI by name"),
            "{}",
            d.error_message
        );
    }
}
