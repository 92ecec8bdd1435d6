//! What the trigger reads from AWS: the bake policies, source AMIs (always with an owner
//! filter), upstream images, parameters, the Allowed AMIs setting, the last published base;
//! and the one row it writes, an upstream Bakery's revocation.
//! Answers that many pipelines share (the same AMI, the same region's setting) are asked once
//! per invocation, and forgotten before the next.

use aws_config::SdkConfig;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_ec2::types::Filter;
use bakery_aws::imagebuilder::{get_image, get_pipeline, get_recipe};
use bakery_aws::{get_parameter, in_region, send, BakeError};
use bakery_core::fanout::{newest_base, Candidate};
use bakery_core::ids::{AccountId, AmiId, Arn, Region};
use bakery_core::trigger::UpstreamRevocation;
use bakery_core::{Policy, SourceAmi};
use std::collections::HashMap;
use tokio::sync::Mutex;

pub struct Lookups {
    pub sdk: SdkConfig,
    pub ssm: aws_sdk_ssm::Client,
    pub ddb: aws_sdk_dynamodb::Client,
    pub table: String,
    pub policy_prefix: String,
    images: Mutex<HashMap<ImageKey, Option<Candidate>>>,
    settings: Mutex<HashMap<String, AllowedImages>>,
}

/// Region, image ID, and the owner filter it was looked up with.
type ImageKey = (String, String, Vec<String>);

pub use bakery_aws::InvalidPolicy;

/// A ledger item.
pub struct LedgerRow(HashMap<String, AttributeValue>);

impl LedgerRow {
    /// A string attribute, or "".
    pub fn s(&self, key: &str) -> &str {
        self.0.get(key).and_then(|v| v.as_s().ok()).map_or("", String::as_str)
    }

    /// A list of strings.
    pub fn list(&self, key: &str) -> Vec<String> {
        self.0
            .get(key)
            .and_then(|v| v.as_l().ok())
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_s().ok().cloned())
            .collect()
    }
}

/// One region's Allowed AMIs setting (GetAllowedImagesSettings).
#[derive(Debug, Clone, PartialEq)]
pub struct AllowedImages {
    /// enabled, audit-mode or disabled.
    pub state: String,
    pub criteria: Vec<Criterion>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Criterion {
    pub providers: Vec<String>,
    pub names: Vec<String>,
    /// The criterion sets conditions Bakery does not evaluate itself (product codes, dates,
    /// watermarks, scan results).
    pub other_conditions: bool,
}

impl AllowedImages {
    /// Whether an image may be used. EC2's own answer (`imageAllowed` on DescribeImages) wins;
    /// without it, the criteria are evaluated here, and a criterion with conditions Bakery does
    /// not read allows nothing (closed, not open).
    pub fn decide(&self, image: &Candidate) -> Result<(), String> {
        if self.state != "enabled" {
            if self.state == "audit-mode" && !self.matches(image) && image.image_allowed != Some(true) {
                tracing::warn!(image_id = %image.image_id, "Allowed AMIs (audit mode) would refuse this source");
            }
            return Ok(());
        }
        let allowed = image.image_allowed.unwrap_or_else(|| self.matches(image));
        if allowed {
            Ok(())
        } else {
            Err(format!(
                "{} (owner {}) is not allowed by the account's Allowed AMIs setting",
                image.image_id, image.owner
            ))
        }
    }

    fn matches(&self, image: &Candidate) -> bool {
        self.criteria.iter().any(|c| {
            !c.other_conditions
                && (c.providers.is_empty() || c.providers.iter().any(|p| p == image.owner.as_str()))
                && (c.names.is_empty() || c.names.iter().any(|n| bakery_core::policy::glob_match(n, &image.name)))
        })
    }
}

fn not_found(e: &BakeError) -> bool {
    match e {
        BakeError::NotFound(_) => true,
        BakeError::Aws { code, .. } => code.starts_with("InvalidAMIID"),
        _ => false,
    }
}

impl Lookups {
    pub fn new(sdk: SdkConfig, table: String, policy_prefix: String) -> Self {
        Self {
            ssm: aws_sdk_ssm::Client::new(&sdk),
            ddb: aws_sdk_dynamodb::Client::new(&sdk),
            sdk,
            table,
            policy_prefix,
            images: Mutex::new(HashMap::new()),
            settings: Mutex::new(HashMap::new()),
        }
    }

    /// Forgets what earlier invocations learnt: an image's state or the Allowed AMIs setting
    /// may have changed since, and a warm process serves many invocations.
    pub async fn forget(&self) {
        self.images.lock().await.clear();
        self.settings.lock().await.clear();
    }

    fn ec2(&self, region: &str) -> aws_sdk_ec2::Client {
        aws_sdk_ec2::Client::new(&in_region(&self.sdk, region))
    }

    fn imagebuilder(&self, region: &str) -> aws_sdk_imagebuilder::Client {
        aws_sdk_imagebuilder::Client::new(&in_region(&self.sdk, region))
    }

    /// Every policy under the prefix ([`bakery_aws::policies`]).
    pub async fn policies(&self) -> Result<(Vec<Policy>, Vec<InvalidPolicy>), BakeError> {
        bakery_aws::policies(&self.ssm, &self.policy_prefix).await
    }

    /// One AMI by ID, with `owners` as DescribeImages' owner filter. None when no such owner
    /// has it. The caller still checks the owner returned. Deprecated and disabled images are
    /// asked for too (EC2 leaves them out by default), so that the trust check refuses them by
    /// name instead of not finding them.
    pub async fn describe(
        &self,
        region: &str,
        image_id: &str,
        owners: &[String],
    ) -> Result<Option<Candidate>, BakeError> {
        let mut owners = owners.to_vec();
        owners.sort();
        owners.dedup();
        let key = (region.to_owned(), image_id.to_owned(), owners.clone());
        if let Some(hit) = self.images.lock().await.get(&key) {
            return Ok(hit.clone());
        }
        let ec2 = self.ec2(region);
        let out = send("DescribeImages", || {
            ec2.describe_images()
                .image_ids(image_id)
                .set_owners(Some(owners.clone()))
                .include_deprecated(true)
                .include_disabled(true)
                .send()
        })
        .await;
        let found = match out {
            Err(e) if not_found(&e) => None,
            Err(e) => return Err(e),
            Ok(out) => out
                .images()
                .iter()
                .find(|i| i.image_id() == Some(image_id))
                .and_then(candidate),
        };
        self.images.lock().await.insert(key, found.clone());
        Ok(found)
    }

    /// The account's Allowed AMIs decision for an image in `region`.
    pub async fn allowed(&self, region: &str, image: &Candidate) -> Result<Result<(), String>, BakeError> {
        let cached = self.settings.lock().await.get(region).cloned();
        let settings = match cached {
            Some(s) => s,
            None => {
                let ec2 = self.ec2(region);
                let out = send("GetAllowedImagesSettings", || ec2.get_allowed_images_settings().send()).await?;
                let s = AllowedImages {
                    state: out.state().unwrap_or("disabled").to_owned(),
                    criteria: out
                        .image_criteria()
                        .iter()
                        .map(|c| Criterion {
                            providers: c.image_providers().to_vec(),
                            names: c.image_names().to_vec(),
                            other_conditions: !c.marketplace_product_codes().is_empty()
                                || c.deprecation_time_condition().is_some()
                                || c.creation_date_condition().is_some()
                                || !c.image_watermarks().is_empty()
                                || c.scan_result_condition().is_some(),
                        })
                        .collect(),
                };
                self.settings.lock().await.insert(region.to_owned(), s.clone());
                s
            }
        };
        Ok(settings.decide(image))
    }

    /// The pipeline that built an upstream image and its AMIs (GetImage).
    pub async fn upstream_image(&self, image_arn: &str) -> Result<Option<(String, Vec<SourceAmi>)>, BakeError> {
        let region = Arn::parse(image_arn).map(|a| a.region.to_owned()).unwrap_or_default();
        let image = match get_image(&self.imagebuilder(&region), image_arn).await {
            Err(BakeError::NotFound(_)) => return Ok(None),
            other => other?,
        };
        let Some(pipeline) = image.source_pipeline_arn().map(str::to_owned) else {
            return Ok(None);
        };
        let amis = image
            .output_resources()
            .map(|o| o.amis())
            .unwrap_or_default()
            .iter()
            .filter_map(|a| {
                Some(SourceAmi {
                    image_id: AmiId::parse(a.image()?).ok()?,
                    region: Region::parse(a.region()?).ok()?,
                    owner: a.account_id().and_then(|o| AccountId::parse(o).ok()),
                })
            })
            .collect();
        Ok(Some((pipeline, amis)))
    }

    /// The AMI a parameter points at now (the change event never carries the value).
    pub async fn parameter_ami(&self, region: &str, name: &str) -> Result<Result<SourceAmi, String>, BakeError> {
        let ssm = aws_sdk_ssm::Client::new(&in_region(&self.sdk, region));
        let value = match get_parameter(&ssm, name).await {
            Err(BakeError::NotFound(_)) => return Ok(Err(format!("parameter {name} no longer exists"))),
            other => other?,
        };
        Ok(match (AmiId::parse(&value), Region::parse(region)) {
            (Ok(image_id), Ok(region)) => Ok(SourceAmi {
                image_id,
                region,
                owner: None,
            }),
            _ => Err(format!(
                "parameter {name} holds {}, not an AMI ID",
                bakery_core::ids::echo(&value)
            )),
        })
    }

    /// The base a scheduled bake would build on now: the newest trusted AMI of the policy's
    /// families (owner-filtered), else the AMI its first parameter names, else None (the
    /// recipe's own parent).
    pub async fn current_base(&self, policy: &Policy, region: &str) -> Result<Option<SourceAmi>, BakeError> {
        let Ok(reg) = Region::parse(region) else {
            return Ok(None);
        };
        if !policy.sources.amis.is_empty() {
            let all = self.family_releases(policy, region).await?;
            return Ok(newest_base(policy, &all, chrono::Utc::now()).map(|c| SourceAmi {
                image_id: c.image_id.clone(),
                region: reg,
                owner: Some(c.owner.clone()),
            }));
        }
        if let Some(name) = policy.sources.ssm_parameters.first() {
            return Ok(self.parameter_ami(region, name).await?.ok());
        }
        Ok(None)
    }

    /// One ledger row.
    pub async fn ledger_row(&self, pk: &str, sk: &str) -> Result<Option<LedgerRow>, BakeError> {
        let out = send("GetItem", || {
            self.ddb
                .get_item()
                .table_name(&self.table)
                .key("pk", AttributeValue::S(pk.to_owned()))
                .key("sk", AttributeValue::S(sk.to_owned()))
                .consistent_read(true)
                .send()
        })
        .await?;
        Ok(out.item.map(LedgerRow))
    }

    /// The pipeline's last published bake (the announce step's `pipeline#<arn>`, `latest` row).
    pub async fn last_published(&self, pipeline_arn: &str) -> Result<Option<LedgerRow>, BakeError> {
        self.ledger_row(&format!("pipeline#{pipeline_arn}"), "latest").await
    }

    /// The base of the pipeline's last published bake.
    pub async fn last_base(&self, pipeline_arn: &str) -> Result<Option<String>, BakeError> {
        Ok(self
            .last_published(pipeline_arn)
            .await?
            .map(|r| r.s("base").to_owned())
            .filter(|b| !b.is_empty()))
    }

    /// Why an AMI was revoked (`bakery revoke` writes `ami#<id>`, `revoked`), if it was.
    pub async fn revoked(&self, image_id: &str) -> Result<Option<String>, BakeError> {
        Ok(self.ledger_row(&format!("ami#{image_id}"), "revoked").await?.map(|r| {
            format!(
                "revoked at {} by {}: {}",
                r.s("revokedAt"),
                r.s("revokedBy"),
                r.s("reason")
            )
        }))
    }

    /// Keeps an upstream Bakery's revocation of `ami` as this ledger's own (`ami#<id>`,
    /// `revoked`), unless the AMI is revoked here already. Returns whether it wrote the row.
    pub async fn record_revocation(&self, r: &UpstreamRevocation, ami: &SourceAmi) -> Result<bool, BakeError> {
        let s = |v: &str| AttributeValue::S(v.to_owned());
        let written = send("PutItem", || {
            self.ddb
                .put_item()
                .table_name(&self.table)
                .item("pk", s(&format!("ami#{}", ami.image_id)))
                .item("sk", s("revoked"))
                .item("region", s(ami.region.as_str()))
                .item("reason", s(&r.reason))
                .item("revokedBy", s(&format!("{} (account {})", r.revoked_by, r.account_id)))
                .item("revokedAt", s(&r.revoked_at))
                .item("upstreamTopic", s(&r.topic_arn))
                .item("eventId", s(&r.event_id))
                .condition_expression("attribute_not_exists(pk)")
                .send()
        })
        .await;
        match written {
            Ok(_) => Ok(true),
            Err(BakeError::Aws { code, .. }) if code == "ConditionalCheckFailedException" => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The trusted, available, not deprecated AMIs of the policy's families in `region`.
    pub async fn family_releases(&self, policy: &Policy, region: &str) -> Result<Vec<Candidate>, BakeError> {
        let ec2 = self.ec2(region);
        let mut all = Vec::new();
        for family in &policy.sources.amis {
            let out = send("DescribeImages", || {
                ec2.describe_images()
                    .owners(family.owner.as_str())
                    .filters(Filter::builder().name("name").values(&family.name_pattern).build())
                    .filters(Filter::builder().name("state").values("available").build())
                    .send()
            })
            .await?;
            all.extend(out.images().iter().filter_map(candidate));
        }
        let now = chrono::Utc::now();
        all.retain(|c| newest_base(policy, std::slice::from_ref(c), now).is_some());
        Ok(all)
    }

    /// The recipe's current parent image, when it is an AMI ID.
    pub async fn recipe_parent(&self, pipeline_arn: &str) -> Result<Option<String>, BakeError> {
        let region = Arn::parse(pipeline_arn)
            .map(|a| a.region.to_owned())
            .unwrap_or_default();
        let ib = self.imagebuilder(&region);
        let Some(recipe) = get_pipeline(&ib, pipeline_arn).await?.image_recipe_arn else {
            return Ok(None);
        };
        Ok(get_recipe(&ib, &recipe)
            .await?
            .parent_image
            .filter(|p| AmiId::parse(p).is_ok()))
    }
}

fn candidate(i: &aws_sdk_ec2::types::Image) -> Option<Candidate> {
    let time = |t: Option<&str>| {
        t.and_then(|d| chrono::DateTime::parse_from_rfc3339(d).ok())
            .map(|d| d.with_timezone(&chrono::Utc))
    };
    Some(Candidate {
        image_id: AmiId::parse(i.image_id()?).ok()?,
        owner: AccountId::parse(i.owner_id()?).ok()?,
        name: i.name().unwrap_or_default().to_owned(),
        state: i.state().map(|s| s.as_str().to_owned()).unwrap_or_default(),
        created: time(i.creation_date()),
        deprecation_time: time(i.deprecation_time()),
        image_allowed: i.image_allowed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(owner: &str, name: &str, allowed: Option<bool>) -> Candidate {
        Candidate {
            image_id: AmiId::parse("ami-0a1b2c3d4e5f67890").unwrap(),
            owner: AccountId::parse(owner).unwrap(),
            name: name.into(),
            state: "available".into(),
            created: None,
            deprecation_time: None,
            image_allowed: allowed,
        }
    }

    fn setting(state: &str, providers: &[&str]) -> AllowedImages {
        AllowedImages {
            state: state.into(),
            criteria: vec![Criterion {
                providers: providers.iter().map(|p| p.to_string()).collect(),
                ..Criterion::default()
            }],
        }
    }

    #[test]
    fn allowed_amis_enabled_refuses_what_it_does_not_allow() {
        let on = setting("enabled", &["444455556666"]);
        assert!(on.decide(&image("444455556666", "soe-1", None)).is_ok());
        let refused = on.decide(&image("999988887777", "soe-1", None)).unwrap_err();
        assert!(refused.contains("Allowed AMIs"), "{refused}");
        // EC2's own answer wins over Bakery's reading of the criteria.
        assert!(on.decide(&image("444455556666", "soe-1", Some(false))).is_err());
        assert!(on.decide(&image("999988887777", "soe-1", Some(true))).is_ok());
        // A criterion Bakery cannot fully evaluate allows nothing.
        let mut opaque = setting("enabled", &["444455556666"]);
        opaque.criteria[0].other_conditions = true;
        assert!(opaque.decide(&image("444455556666", "soe-1", None)).is_err());
    }

    #[test]
    fn allowed_amis_disabled_or_audit_refuses_nothing() {
        for state in ["disabled", "audit-mode"] {
            assert!(setting(state, &["444455556666"])
                .decide(&image("999988887777", "x", Some(false)))
                .is_ok());
        }
    }
}
