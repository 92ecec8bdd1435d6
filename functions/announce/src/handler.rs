//! The end of every bake: one SNS message (Bakery's publication, schema-versioned) with every
//! AMI ID by region, the shares, the lineage, the gate's results and the execution ARN, with
//! message attributes for subscription filters; and, for a published bake, a ledger row per
//! AMI with its parent, for lineage queries. A failed bake says which step failed and why.

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_sns::types::MessageAttributeValue;
use bakery_aws::{send, BakeError};
use bakery_core::ids::{AccountId, AmiId, Arn};
use bakery_core::publication::{
    ApprovalRequest, Attempt, BakeStatus, Failure, GateSummary, Lineage, PipelineRef, Publication, PublishedAmi,
    Revocation, StaleImage, PUBLICATION_SCHEMA,
};
use bakery_core::steps::{
    AnnounceCall, AnnounceRequest, AnnounceResponse, AnnounceState, Announced, Recorded, RegionResult,
};
use std::collections::{BTreeMap, HashMap};

pub struct Deps {
    pub sns: aws_sdk_sns::Client,
    pub ddb: aws_sdk_dynamodb::Client,
    pub table: String,
    /// Where a bake that failed before its policy was read is announced.
    pub default_topic: String,
}

pub async fn handle(call: AnnounceCall, deps: &Deps) -> Result<AnnounceResponse, BakeError> {
    match call {
        AnnounceCall::Bake(input) => bake(*input, deps).await,
        AnnounceCall::Revoked { revocation, topic_arn } => {
            let publication = revoked(deps, revocation).await?;
            notice(deps, topic_arn, publication).await
        }
        AnnounceCall::Stale { stale, topic_arn } => notice(deps, topic_arn, stale_publication(stale)?).await,
    }
}

/// A REVOKED or STALE message, on the named topic or the stack's.
async fn notice(deps: &Deps, topic: Option<String>, publication: Publication) -> Result<AnnounceResponse, BakeError> {
    let topic = topic
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| deps.default_topic.clone());
    bakery_core::ids::check_topic_arn(&topic)
        .map_err(|e| BakeError::InvalidInput(format!("announce input: topicArn: {e}")))?;
    let message_id = publish(deps, &topic, &publication).await?;
    tracing::info!(%topic, %message_id, status = publication.status.as_str(), amis = publication.amis.len(), "announced");
    Ok(AnnounceResponse::Announced(Announced {
        message_id,
        topic_arn: topic,
    }))
}

/// The REVOKED message: only for AMIs the ledger holds as revoked (`ami#<id>`, `revoked`, which
/// `bakery revoke` writes before it asks), so this function never announces a revocation that
/// did not happen.
async fn revoked(deps: &Deps, revocation: Revocation) -> Result<Publication, BakeError> {
    let root = revocation
        .bakes
        .first()
        .ok_or_else(|| BakeError::InvalidInput("announce input: revocation.bakes: empty".into()))?;
    let pipeline = Arn::parse(&root.pipeline.arn).map_err(BakeError::InvalidInput)?;
    let account = AccountId::parse(pipeline.account).map_err(BakeError::InvalidInput)?;
    let amis: Vec<PublishedAmi> = revocation.bakes.iter().flat_map(|b| b.amis.iter().cloned()).collect();
    for ami in &amis {
        let key = |v: String| AttributeValue::S(v);
        let row = send("GetItem", || {
            deps.ddb
                .get_item()
                .table_name(&deps.table)
                .key("pk", key(format!("ami#{}", ami.image_id)))
                .key("sk", key("revoked".into()))
                .consistent_read(true)
                .send()
        })
        .await?;
        if row.item.is_none() {
            return Err(BakeError::InvalidInput(format!(
                "announce input: revocation: {} in {} is not revoked in the ledger",
                ami.image_id, ami.region
            )));
        }
    }
    Ok(Publication {
        pipeline: root.pipeline.clone(),
        amis,
        bake_id: Some(root.bake_id.clone()),
        revocation: Some(revocation),
        ..notice_publication(BakeStatus::Revoked, account)
    })
}

/// The STALE message: every stale image of this account's pipelines.
fn stale_publication(stale: Vec<StaleImage>) -> Result<Publication, BakeError> {
    let first = stale
        .first()
        .ok_or_else(|| BakeError::InvalidInput("announce input: stale: empty (nothing to announce)".into()))?;
    let account = Arn::parse(&first.pipeline.arn)
        .map_err(BakeError::InvalidInput)
        .and_then(|a| AccountId::parse(a.account).map_err(BakeError::InvalidInput))?;
    Ok(Publication {
        amis: stale.iter().flat_map(|s| s.amis.iter().cloned()).collect(),
        stale: Some(stale),
        ..notice_publication(BakeStatus::Stale, account)
    })
}

fn notice_publication(status: BakeStatus, account_id: AccountId) -> Publication {
    Publication {
        schema: PUBLICATION_SCHEMA.to_owned(),
        status,
        account_id,
        pipeline: PipelineRef::default(),
        execution_arn: None,
        amis: Vec::new(),
        lineage: Lineage::default(),
        bake_id: None,
        channel: None,
        platform: None,
        trigger: None,
        recipe_version: None,
        shared_with: None,
        ssm_parameters: None,
        gate: None,
        failure: None,
        attempt: None,
        approval: None,
        revocation: None,
        stale: None,
    }
}

async fn bake(input: AnnounceRequest, deps: &Deps) -> Result<AnnounceResponse, BakeError> {
    if !matches!(
        input.status,
        BakeStatus::Published | BakeStatus::Failed | BakeStatus::AwaitingApproval
    ) {
        return Err(BakeError::InvalidInput(format!(
            "announce input: status: {} is not a bake's end (REVOKED and STALE come as revocation and stale)",
            input.status.as_str()
        )));
    }
    let state = &input.state;
    let publication = publication(input.status, state, &input.execution_arn)?;
    let topic = state
        .build
        .as_ref()
        .map_or(deps.default_topic.clone(), |b| b.policy.notify.topic_arn.clone());
    // The message first, the ledger after (its own step, retried on its own): a ledger that
    // cannot be written never holds back the message, nor sends a second one.
    if input.record {
        if publication.status != BakeStatus::Published {
            return Err(BakeError::InvalidInput(
                "announce: only a published bake is recorded".into(),
            ));
        }
        record(deps, state, &publication).await?;
        tracing::info!(bake_id = %state.request.bake_id, "lineage recorded");
        return Ok(AnnounceResponse::Recorded(Recorded {
            recorded: publication.amis.len(),
        }));
    }
    let mut publication = publication;
    if publication.status == BakeStatus::AwaitingApproval {
        publication.approval = Some(await_approval(deps, &input).await?);
    }
    let message_id = publish(deps, &topic, &publication).await?;
    let metric = match publication.status {
        BakeStatus::Published => Some(bakery_aws::metrics::BAKES_SUCCEEDED),
        BakeStatus::Failed => Some(bakery_aws::metrics::BAKES_FAILED),
        _ => None,
    };
    if let Some(metric) = metric {
        bakery_aws::metrics::count(metric, &publication.pipeline.name);
    }
    tracing::info!(%topic, %message_id, status = ?publication.status, bake_id = %state.request.bake_id, "announced");
    Ok(AnnounceResponse::Announced(Announced {
        message_id,
        topic_arn: topic,
    }))
}

/// WaitForApproval: keeps the task token in the ledger (`approval#<execution ARN>`, `token`),
/// where `bakery approve` and `bakery reject` find it, and says how to answer.
async fn await_approval(deps: &Deps, input: &AnnounceRequest) -> Result<ApprovalRequest, BakeError> {
    let token =
        input.task_token.as_deref().filter(|t| !t.is_empty()).ok_or_else(|| {
            BakeError::InvalidInput("announce input: taskToken: missing for AWAITING_APPROVAL".into())
        })?;
    let state = &input.state;
    let hours = state.build.as_ref().map_or(0.0, |b| b.policy.approval.timeout_hours);
    let seconds = state.build.as_ref().map_or(0, |b| b.policy.approval.timeout_seconds);
    let expires_at = (chrono::Utc::now() + chrono::Duration::seconds(seconds as i64))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let s = |v: &str| AttributeValue::S(v.to_owned());
    let image = state.gate.as_ref().and_then(|g| g.image.as_ref());
    let item = HashMap::from([
        ("pk".to_owned(), s(&format!("approval#{}", input.execution_arn))),
        ("sk".to_owned(), s("token")),
        ("token".to_owned(), s(token)),
        ("pipelineArn".to_owned(), s(&state.request.pipeline_arn)),
        ("bakeId".to_owned(), s(&state.request.bake_id)),
        ("imageId".to_owned(), s(image.map_or("", |i| i.image_id.as_str()))),
        ("expiresAt".to_owned(), s(&expires_at)),
    ]);
    send("PutItem", || {
        deps.ddb
            .put_item()
            .table_name(&deps.table)
            .set_item(Some(item.clone()))
            .send()
    })
    .await?;
    tracing::info!(execution = %input.execution_arn, %expires_at, hours, "waiting for approval");
    let cmd = |verb: &str, extra: &str| format!("bakery {verb} {} --table {}{extra}", input.execution_arn, deps.table);
    Ok(ApprovalRequest {
        expires_at,
        approve: cmd("approve", ""),
        reject: cmd("reject", " --reason <why>"),
    })
}

fn publication(status: BakeStatus, state: &AnnounceState, execution_arn: &str) -> Result<Publication, BakeError> {
    let req = &state.request;
    let pipeline = Arn::parse(&req.pipeline_arn).map_err(BakeError::InvalidInput)?;
    let account = AccountId::parse(pipeline.account).map_err(BakeError::InvalidInput)?;
    // The AMI it was built on: the request's source, or (a rebuild with none named) the
    // recipe's parent the build used.
    let mut parents: Vec<AmiId> = match &req.source_ami {
        Some(s) => vec![s.image_id.clone()],
        None => state
            .build
            .as_ref()
            .and_then(|b| AmiId::parse(&b.parent_image).ok())
            .into_iter()
            .collect(),
    };
    parents.extend(req.parent_chain.iter().cloned());
    let published = match (&status, &state.published) {
        (BakeStatus::Published, Some(p)) => p.as_slice(),
        _ => &[],
    };
    let mut amis = Vec::new();
    // What waits for approval: the gated image in the home region, not yet copied or shared.
    if status == BakeStatus::AwaitingApproval {
        if let Some(image) = state.gate.as_ref().and_then(|g| g.image.as_ref()) {
            amis.push(PublishedAmi {
                region: image.region.clone(),
                image_id: image.image_id.clone(),
            });
        }
    }
    for result in published {
        match result {
            RegionResult::Published(p) => amis.push(PublishedAmi {
                region: p.region.clone(),
                image_id: p.image_id.clone(),
            }),
            RegionResult::Failed(f) => {
                return Err(BakeError::InvalidInput(format!(
                    "announce: a published bake with a failed region ({})",
                    f.region
                )))
            }
        }
    }
    let policy = state.build.as_ref().map(|b| &b.policy);
    let gate = state.gate.as_ref().map(|g| GateSummary {
        passed: g.passed,
        reasons: g.reasons.clone(),
        findings: g
            .outcome
            .findings
            .0
            .iter()
            .map(|(s, n)| (s.key().to_owned(), *n))
            .collect(),
        quarantined: g.quarantined,
    });
    Ok(Publication {
        schema: PUBLICATION_SCHEMA.to_owned(),
        status,
        account_id: account,
        pipeline: PipelineRef {
            arn: req.pipeline_arn.clone(),
            name: pipeline.resource_name().to_owned(),
        },
        execution_arn: Some(execution_arn.to_owned()),
        amis,
        lineage: Lineage {
            parents,
            recipe_arn: state.build.as_ref().map(|b| b.recipe_arn.clone()),
            image_build_version_arn: state.build.as_ref().map(|b| b.image_build_version_arn.clone()),
        },
        bake_id: Some(req.bake_id.clone()),
        channel: policy.map(|p| p.notify.channel.clone()),
        platform: state.build.as_ref().and_then(|b| b.platform.clone()),
        trigger: req.trigger.clone(),
        recipe_version: state.build.as_ref().map(|b| b.recipe_version.clone()),
        shared_with: (status == BakeStatus::Published)
            .then(|| policy.map(|p| p.publish.share_with.clone()))
            .flatten(),
        ssm_parameters: (status == BakeStatus::Published)
            .then(|| policy.map(|p| p.publish.ssm_parameters.clone()))
            .flatten(),
        gate,
        failure: match status {
            BakeStatus::Failed => Some(state.failure.clone().unwrap_or_else(|| Failure {
                step: "unknown".into(),
                error: "BakeFailed".into(),
                cause: String::new(),
            })),
            _ => None,
        },
        attempt: Some(Attempt::of(req.attempt, req.max_attempts, status)),
        approval: None,
        revocation: None,
        stale: None,
    })
}

/// Message attributes subscribers filter on.
fn attributes(p: &Publication) -> HashMap<String, MessageAttributeValue> {
    [
        ("status", Some(p.status.as_str().to_owned())),
        ("pipeline", Some(p.pipeline.name.clone())),
        ("channel", p.channel.clone()),
        ("platform", p.platform.clone()),
        ("schema", Some(p.schema.clone())),
    ]
    .into_iter()
    .filter_map(|(k, v)| {
        let v = v.filter(|v| !v.is_empty())?;
        MessageAttributeValue::builder()
            .data_type("String")
            .string_value(v)
            .build()
            .ok()
            .map(|a| (k.to_owned(), a))
    })
    .collect()
}

async fn publish(deps: &Deps, topic: &str, p: &Publication) -> Result<String, BakeError> {
    let message = serde_json::to_string(p).map_err(|e| BakeError::InvalidInput(e.to_string()))?;
    let subject = match p.status {
        BakeStatus::Published => format!("Bakery: {} published {} AMI(s)", p.pipeline.name, p.amis.len()),
        BakeStatus::Failed => format!("Bakery: {} bake FAILED", p.pipeline.name),
        BakeStatus::AwaitingApproval => format!("Bakery: {} bake waits for approval", p.pipeline.name),
        BakeStatus::Revoked => format!("Bakery: {} REVOKED {} AMI(s)", p.pipeline.name, p.amis.len()),
        BakeStatus::Stale => format!(
            "Bakery: {} pipeline(s) with STALE images",
            p.stale.as_ref().map_or(0, Vec::len)
        ),
        BakeStatus::Other => "Bakery".to_owned(),
    };
    let out = send("Publish", || {
        deps.sns
            .publish()
            .topic_arn(topic)
            .subject(subject.chars().take(100).collect::<String>())
            .message(&message)
            .set_message_attributes(Some(attributes(p)))
            .send()
    })
    .await?;
    Ok(out.message_id.unwrap_or_default())
}

/// One ledger row per published AMI (`ami#<id>`) with its parent, one for the bake, and the
/// pipeline's latest published base (`pipeline#<arn>`, `latest`).
async fn record(deps: &Deps, state: &AnnounceState, p: &Publication) -> Result<(), BakeError> {
    let s = |v: &str| AttributeValue::S(v.to_owned());
    let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let parent = p.lineage.parents.first().map(AmiId::to_string).unwrap_or_default();
    let chain: Vec<AttributeValue> = p.lineage.parents.iter().map(|a| s(a.as_str())).collect();
    let mut rows: Vec<BTreeMap<String, AttributeValue>> = p
        .amis
        .iter()
        .map(|a| {
            let mut row = BTreeMap::from([
                ("pk".to_owned(), s(&format!("ami#{}", a.image_id))),
                ("sk".to_owned(), s("lineage")),
                ("region".to_owned(), s(a.region.as_str())),
                ("pipelineArn".to_owned(), s(&p.pipeline.arn)),
                ("bakeId".to_owned(), s(&state.request.bake_id)),
                (
                    "executionArn".to_owned(),
                    s(p.execution_arn.as_deref().unwrap_or_default()),
                ),
                ("publishedAt".to_owned(), s(&now)),
            ]);
            if !parent.is_empty() {
                row.insert("parent".to_owned(), s(&parent));
                row.insert("parentChain".to_owned(), AttributeValue::L(chain.clone()));
            }
            if let Some(v) = &p.recipe_version {
                row.insert("recipeVersion".to_owned(), s(v));
            }
            row
        })
        .collect();
    let amis: Vec<AttributeValue> = p
        .amis
        .iter()
        .map(|a| s(&format!("{}:{}", a.region, a.image_id)))
        .collect();
    // The pipeline's latest published base: a scheduled trigger bakes again only when its
    // base has moved on from this one.
    let base = state.build.as_ref().map_or(parent.clone(), |b| b.parent_image.clone());
    rows.push(BTreeMap::from([
        ("pk".to_owned(), s(&format!("pipeline#{}", p.pipeline.arn))),
        ("sk".to_owned(), s("latest")),
        ("base".to_owned(), s(&base)),
        ("bakeId".to_owned(), s(&state.request.bake_id)),
        ("amis".to_owned(), AttributeValue::L(amis.clone())),
        ("publishedAt".to_owned(), s(&now)),
    ]));
    rows.push(BTreeMap::from([
        ("pk".to_owned(), s(&format!("bake#{}", state.request.bake_id))),
        ("sk".to_owned(), s("published")),
        ("pipelineArn".to_owned(), s(&p.pipeline.arn)),
        ("amis".to_owned(), AttributeValue::L(amis)),
        ("publishedAt".to_owned(), s(&now)),
    ]));
    for row in rows {
        send("PutItem", || {
            deps.ddb
                .put_item()
                .table_name(&deps.table)
                .set_item(Some(row.clone().into_iter().collect()))
                .send()
        })
        .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(extra: serde_json::Value) -> AnnounceState {
        let mut v = serde_json::json!({
            "bakeId": "web-1a2b", "pipelineArn": "arn:aws:imagebuilder:us-east-1:111122223333:image-pipeline/web",
            "sourceAmi": {"imageId": "ami-0a1b2c3d4e5f67890", "region": "us-east-1"},
            "parentChain": ["ami-0fedcba9876543210"], "trigger": "soeRelease"
        });
        v.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn a_failed_bake_says_where_and_why() {
        let s = state(
            serde_json::json!({"failure": {"step": "StartBuild", "error": "PipelineBusy", "cause": "still building"}}),
        );
        let p = publication(
            BakeStatus::Failed,
            &s,
            "arn:aws:states:us-east-1:111122223333:execution:bake:web-1a2b",
        )
        .unwrap();
        assert_eq!(p.failure.as_ref().unwrap().step, "StartBuild");
        assert!(p.amis.is_empty());
        assert_eq!(p.account_id.as_str(), "111122223333");
        let parents: Vec<&str> = p.lineage.parents.iter().map(AmiId::as_str).collect();
        assert_eq!(
            parents,
            ["ami-0a1b2c3d4e5f67890", "ami-0fedcba9876543210"],
            "the source, then its chain"
        );
        let attrs = attributes(&p);
        assert_eq!(attrs["status"].string_value(), Some("FAILED"));
        assert_eq!(attrs["pipeline"].string_value(), Some("web"));
        assert!(!attrs.contains_key("channel"), "no policy was read: no channel");
        let attempt = p.attempt.as_ref().unwrap();
        assert_eq!(
            (attempt.number, attempt.max_attempts),
            (1, 1),
            "a request without attempts is the only one"
        );
        assert!(attempt.exhausted);
    }

    #[test]
    fn a_failed_attempt_says_whether_another_follows() {
        let failure = serde_json::json!({"step": "WaitForBuild", "error": "BuildFailed", "cause": "tests failed"});
        let arn = "arn:aws:states:us-east-1:111122223333:execution:bake:web-1a2b-a2";
        let second_of_three = state(serde_json::json!({"failure": failure, "attempt": 2, "maxAttempts": 3}));
        let p = publication(BakeStatus::Failed, &second_of_three, arn).unwrap();
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(json["attempt"]["number"], 2);
        assert_eq!(json["attempt"]["exhausted"], false);
        let last = state(serde_json::json!({"failure": failure, "attempt": 3, "maxAttempts": 3}));
        let p = publication(BakeStatus::Failed, &last, arn).unwrap();
        assert!(p.attempt.as_ref().unwrap().exhausted);
        assert!(p
            .attempt
            .unwrap()
            .rebake
            .unwrap()
            .contains("no trigger bakes this pipeline"));
    }

    #[test]
    fn a_published_bake_lists_every_ami() {
        let s = state(serde_json::json!({"published": [
            {"region": "us-east-1", "imageId": "ami-01111111111111111", "snapshotIds": [], "parameters": []},
            {"region": "eu-west-1", "imageId": "ami-02222222222222222", "snapshotIds": ["snap-1"], "parameters": ["/p"]}
        ]}));
        let p = publication(
            BakeStatus::Published,
            &s,
            "arn:aws:states:us-east-1:111122223333:execution:bake:x",
        )
        .unwrap();
        let amis: Vec<(&str, &str)> = p
            .amis
            .iter()
            .map(|a| (a.region.as_str(), a.image_id.as_str()))
            .collect();
        assert_eq!(
            amis,
            [
                ("us-east-1", "ami-01111111111111111"),
                ("eu-west-1", "ami-02222222222222222")
            ]
        );
        assert!(p.failure.is_none());
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(json["schema"], "bakery.publication/v1");
        // A downstream Bakery classifies what this one announces.
        let event = serde_json::json!({"Records": [{"EventSource": "aws:sns", "EventVersion": "1.0",
            "EventSubscriptionArn": "arn:aws:sns:us-east-1:111122223333:t:1",
            "Sns": {"Type": "Notification", "MessageId": "m", "TopicArn": "arn:aws:sns:us-east-1:111122223333:t",
                "Message": json.to_string(), "Timestamp": "2026-11-26T00:00:00Z", "SignatureVersion": "1",
                "Signature": "s", "SigningCertUrl": "u", "UnsubscribeUrl": "u", "MessageAttributes": {}}}]});
        match bakery_core::classify_value(event).unwrap() {
            bakery_core::Classification::Bake { trigger } => assert_eq!(trigger.source_amis.len(), 2),
            other => panic!("{other:?}"),
        }
    }
}
