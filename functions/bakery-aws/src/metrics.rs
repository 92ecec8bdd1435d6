//! Bakery's own CloudWatch metrics, per pipeline, in the embedded metric format: one JSON line on
//! stdout that Lambda sends to CloudWatch Logs and CloudWatch turns into the metric. No
//! PutMetricData call, so no permission and no latency; the stack's dashboard graphs them.

/// The namespace of Bakery's metrics; each has the dimension `Pipeline` (the pipeline's name).
pub const NAMESPACE: &str = "Bakery";
/// A bake the trigger started (a new execution, not one found running).
pub const BAKES_STARTED: &str = "BakesStarted";
/// A bake announced PUBLISHED.
pub const BAKES_SUCCEEDED: &str = "BakesSucceeded";
/// A bake announced FAILED.
pub const BAKES_FAILED: &str = "BakesFailed";

/// The EMF line that counts one `metric` for `pipeline`.
pub fn count_line(metric: &str, pipeline: &str, timestamp_ms: i64) -> String {
    serde_json::json!({
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [["Pipeline"]],
                "Metrics": [{"Name": metric, "Unit": "Count"}]
            }]
        },
        "Pipeline": pipeline,
        metric: 1
    })
    .to_string()
}

/// Counts one `metric` for `pipeline`, now.
pub fn count(metric: &str, pipeline: &str) {
    println!(
        "{}",
        count_line(metric, pipeline, chrono::Utc::now().timestamp_millis())
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_count_is_one_emf_document() {
        let line = count_line(BAKES_SUCCEEDED, "web-app", 1_790_000_000_000);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        let directive = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "Bakery");
        assert_eq!(directive["Dimensions"], serde_json::json!([["Pipeline"]]));
        assert_eq!(directive["Metrics"][0]["Name"], "BakesSucceeded");
        assert_eq!(v["Pipeline"], "web-app");
        assert_eq!(v["BakesSucceeded"], 1);
        assert_eq!(v["_aws"]["Timestamp"], 1_790_000_000_000i64);
        assert!(!line.contains('\n'));
    }
}
