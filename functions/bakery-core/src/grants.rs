//! What the deployed stack lets its functions do for a policy: the template's parameters scope
//! publish-region's parameters and regions and announce's topics. A policy asking for more
//! passes the schema but would fail after its AMIs were already shared, so it is refused first,
//! naming the template parameter that would allow it.

use crate::policy::{PolicyError, PolicyErrors};
use crate::Policy;

/// The template parameters (as deployed) that bound what a bake policy may ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackGrants {
    /// `PolicyPrefix`: where the policies live, never writable by a bake.
    pub policy_prefix: String,
    /// `PublishedParameterPrefix`: the only path publish-region may write parameters under.
    pub published_parameter_prefix: String,
    /// The stack's own publication topic.
    pub publication_topic: String,
    /// `NotifyTopicArns`: the other topics announce may publish to.
    pub notify_topics: Vec<String>,
    /// `PublishRegions` (the stack's region when empty): where publish-region may copy and share.
    pub publish_regions: Vec<String>,
}

impl StackGrants {
    /// A comma-separated template list parameter as the template passes it in the environment.
    pub fn list(value: &str) -> Vec<String> {
        value
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// Every part of `policy` the stack may not carry out, in document order.
    pub fn check(&self, policy: &Policy) -> Result<(), PolicyErrors> {
        let mut errors = Vec::new();
        let mut refuse = |path: String, message: String| errors.push(PolicyError { path, message });
        for (i, target) in policy.publish.regions.iter().enumerate() {
            let region = target.region.as_str();
            if !self.publish_regions.iter().any(|r| r == region) {
                refuse(
                    format!("publish.regions[{i}].region"),
                    format!(
                        "the stack may not publish to {region} (PublishRegions is {}): add it to the template parameter PublishRegions",
                        self.publish_regions.join(", ")
                    ),
                );
            }
        }
        for (i, name) in policy.publish.ssm_parameters.iter().enumerate() {
            let path = format!("publish.ssmParameters[{i}]");
            if name.starts_with(&self.policy_prefix) {
                refuse(
                    path,
                    format!(
                        "{name} is under PolicyPrefix {}, where the bake policies live and nothing is written",
                        self.policy_prefix
                    ),
                );
            } else if !name.starts_with(&self.published_parameter_prefix) {
                refuse(
                    path,
                    format!(
                        "the stack may write parameters only under {}: put {name} there, or change the template parameter PublishedParameterPrefix",
                        self.published_parameter_prefix
                    ),
                );
            }
        }
        let topic = &policy.notify.topic_arn;
        if !topic.is_empty() && *topic != self.publication_topic && !self.notify_topics.contains(topic) {
            refuse(
                "notify.topicArn".into(),
                format!(
                    "the stack may publish only to its own topic {} and NotifyTopicArns: add {topic} to the template parameter NotifyTopicArns",
                    self.publication_topic
                ),
            );
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(PolicyErrors(errors))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn grants() -> StackGrants {
        StackGrants {
            policy_prefix: "/bakery/policies/".into(),
            published_parameter_prefix: "/bakery/".into(),
            publication_topic: "arn:aws:sns:us-east-1:111122223333:bakery-publications".into(),
            notify_topics: StackGrants::list("arn:aws:sns:us-east-1:111122223333:team, "),
            publish_regions: StackGrants::list("us-east-1,eu-west-1"),
        }
    }

    fn policy(publish: serde_json::Value, topic: &str) -> Policy {
        let doc = json!({
            "schemaVersion": 1,
            "pipelineArn": "arn:aws:imagebuilder:us-east-1:111122223333:image-pipeline/web",
            "sources": {"snsTopics": ["arn:aws:sns:us-east-1:111122223333:soe"]},
            "trustedOwners": ["111122223333"],
            "publish": publish,
            "notify": {"topicArn": topic}
        });
        Policy::parse(doc.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn what_the_stack_grants_passes() {
        let p = policy(
            json!({"regions": [{"region": "us-east-1"}, {"region": "eu-west-1"}], "ssmParameters": ["/bakery/web/latest"]}),
            "arn:aws:sns:us-east-1:111122223333:team",
        );
        assert_eq!(grants().check(&p), Ok(()));
        let own = policy(
            json!({"regions": [{"region": "us-east-1"}]}),
            "arn:aws:sns:us-east-1:111122223333:bakery-publications",
        );
        assert_eq!(grants().check(&own), Ok(()));
    }

    #[test]
    fn each_refusal_names_the_parameter_to_change() {
        let p = policy(
            json!({"regions": [{"region": "us-east-1"}, {"region": "sa-east-1"}],
                   "ssmParameters": ["/bakery/web/latest", "/other/web", "/bakery/policies/web"]}),
            "arn:aws:sns:us-east-1:444455556666:elsewhere",
        );
        let errors = grants().check(&p).unwrap_err().0;
        let by_path: Vec<(&str, &str)> = errors.iter().map(|e| (e.path.as_str(), e.message.as_str())).collect();
        assert_eq!(by_path.len(), 4, "{by_path:?}");
        assert_eq!(by_path[0].0, "publish.regions[1].region");
        assert!(by_path[0].1.contains("template parameter PublishRegions"));
        assert_eq!(by_path[1].0, "publish.ssmParameters[1]");
        assert!(by_path[1].1.contains("template parameter PublishedParameterPrefix"));
        assert_eq!(by_path[2].0, "publish.ssmParameters[2]");
        assert!(by_path[2].1.contains("PolicyPrefix"));
        assert_eq!(by_path[3].0, "notify.topicArn");
        assert!(by_path[3].1.contains("template parameter NotifyTopicArns"));
    }
}
