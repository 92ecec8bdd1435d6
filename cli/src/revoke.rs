//! `bakery revoke AMI --reason R [--cascade] [--disable]`: withdraws a published bake. In every
//! region the bake published to, its AMI is deprecated (and with `--disable` disabled), loses
//! every launch permission and its snapshots every create-volume permission, and is tagged
//! `bakery:revoked`; a parameter of the pipeline's policy that points at it is pointed back at
//! its previous good AMI; the ledger marks it revoked (`ami#<id>`, `revoked`), which the trigger
//! reads before it takes any AMI as a base. With `--cascade` the same is done for every bake the
//! ledger knows was built on it, however deep. Then the announce function publishes one REVOKED
//! message with every AMI ID (the publication topic admits no other publisher).

use crate::invoke::InvokeError;
use crate::ledger::{s, Ledger, Row};
use crate::Outcome;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_ec2::types::{ImageAttributeName, OperationType, SnapshotAttributeName, Tag};
use bakery_aws::{in_region, send, BakeError};
use bakery_core::ids::{AmiId, Region};
use bakery_core::publication::{ParameterReverted, PipelineRef, PublishedAmi, Revocation, RevokedBake};
use bakery_core::Policy;
use serde_json::json;
use std::collections::BTreeSet;
use std::fmt::Write as _;

/// How deep `--cascade` goes.
const MAX_DEPTH: usize = 20;

pub struct Revoke<'a> {
    pub ami: &'a str,
    pub reason: &'a str,
    pub cascade: bool,
    pub disable: bool,
    pub by: &'a str,
    pub table: &'a str,
    /// The announce function (stack output AnnounceFunctionArn).
    pub function: &'a str,
    pub policy_prefix: &'a str,
    pub json: bool,
}

pub async fn run(r: Revoke<'_>) -> Outcome {
    match revoke(&r).await {
        Ok((revocation, message_id, problems)) => {
            let out = if r.json {
                format!("{}\n", json!({"revocation": revocation, "messageId": message_id}))
            } else {
                text(&revocation, &message_id)
            };
            Outcome {
                out,
                problems: problems.into_iter().map(|p| format!("revoke: {p}")).collect(),
            }
        }
        Err(e) => Outcome::problem(format!("revoke: {e}")),
    }
}

fn text(r: &Revocation, message_id: &str) -> String {
    let mut out = String::new();
    for b in &r.bakes {
        let on = b
            .built_on
            .as_ref()
            .map(|a| format!(" (built on {a})"))
            .unwrap_or_default();
        let _ = writeln!(out, "revoked {} bake {}{on}:", b.pipeline.name, b.bake_id);
        for a in &b.amis {
            let _ = writeln!(out, "  {} {}", a.region, a.image_id);
        }
    }
    for p in &r.parameters {
        match &p.to {
            Some(to) => _ = writeln!(out, "parameter {} in {}: {} -> {to}", p.name, p.region, p.from),
            None => {
                _ = writeln!(
                    out,
                    "parameter {} in {}: still {} (no earlier good AMI)",
                    p.name, p.region, p.from
                )
            }
        }
    }
    let _ = writeln!(out, "REVOKED announced (message {message_id})");
    out
}

async fn revoke(r: &Revoke<'_>) -> Result<(Revocation, String, Vec<String>), String> {
    AmiId::parse(r.ami)?;
    if r.reason.trim().is_empty() {
        return Err("--reason must say why".into());
    }
    let sdk = crate::sdk_config().await;
    let ledger = Ledger::new(&sdk, r.table);
    let row = ledger.lineage(r.ami).await?.ok_or_else(|| {
        format!(
            "{} is not in the ledger {} (no bake of this Bakery published it)",
            r.ami, r.table
        )
    })?;
    let mut bakes = vec![bake(&ledger, &row, None).await?];
    if r.cascade {
        let mut seen = BTreeSet::from([bakes[0].bake_id.clone()]);
        let mut frontier = 0;
        for _ in 0..MAX_DEPTH {
            let end = bakes.len();
            for i in frontier..end {
                let amis: Vec<AmiId> = bakes[i].amis.iter().map(|a| a.image_id.clone()).collect();
                for ami in amis {
                    for child in ledger.children(ami.as_str()).await? {
                        if seen.insert(s(&child, "bakeId").to_owned()) {
                            bakes.push(bake(&ledger, &child, Some(ami.clone())).await?);
                        }
                    }
                }
            }
            if bakes.len() == end {
                break;
            }
            frontier = end;
        }
    }

    let ssm = aws_sdk_ssm::Client::new(&sdk);
    let (policies, _) = bakery_aws::policies(&ssm, r.policy_prefix)
        .await
        .map_err(|e| format!("reading the policies under {}: {e}", r.policy_prefix))?;
    let policy_of = |arn: &str| policies.iter().find(|p| p.pipeline_arn == arn);
    let revoked: BTreeSet<String> = bakes
        .iter()
        .flat_map(|b| b.amis.iter().map(|a| a.image_id.to_string()))
        .collect();
    let now = chrono::Utc::now();
    let revoked_at = now.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let deprecate_at = bakery_aws::images::deprecate_at(now).timestamp();
    let mut problems = Vec::new();
    let mut parameters = Vec::new();

    // The ledger first: from here on no trigger bakes on these AMIs, even before EC2's
    // deprecation time has come.
    for b in &bakes {
        for a in &b.amis {
            let s = |v: &str| AttributeValue::S(v.to_owned());
            ledger
                .put(Row::from([
                    ("pk".to_owned(), s(&format!("ami#{}", a.image_id))),
                    ("sk".to_owned(), s("revoked")),
                    ("region".to_owned(), s(a.region.as_str())),
                    ("bakeId".to_owned(), s(&b.bake_id)),
                    ("pipelineArn".to_owned(), s(&b.pipeline.arn)),
                    ("reason".to_owned(), s(r.reason)),
                    ("revokedBy".to_owned(), s(r.by)),
                    ("revokedAt".to_owned(), s(&revoked_at)),
                    ("revocationOf".to_owned(), s(r.ami)),
                ]))
                .await?;
        }
    }
    for b in &bakes {
        for a in &b.amis {
            let ec2 = aws_sdk_ec2::Client::new(&in_region(&sdk, a.region.as_str()));
            match withdraw(&ec2, &a.image_id, deprecate_at, r, &revoked_at).await {
                Ok(true) => {}
                Ok(false) => problems.push(format!(
                    "{} in {}: not in EC2 any more (deregistered); marked revoked in the ledger only",
                    a.image_id, a.region
                )),
                Err(e) => return Err(format!("{} in {}: {e}", a.image_id, a.region)),
            }
        }
        let names = policy_of(&b.pipeline.arn).map(|p| p.publish.ssm_parameters.clone());
        let Some(names) = names else {
            problems.push(format!(
                "{}: no bake policy now, so no parameter was pointed back",
                b.pipeline.name
            ));
            continue;
        };
        for a in &b.amis {
            let ssm = aws_sdk_ssm::Client::new(&in_region(&sdk, a.region.as_str()));
            let ec2 = aws_sdk_ec2::Client::new(&in_region(&sdk, a.region.as_str()));
            for name in &names {
                if let Some(p) = point_back(&ssm, &ec2, &ledger, name, a, &revoked).await? {
                    if p.to.is_none() {
                        problems.push(format!(
                            "parameter {} in {} has no earlier good AMI: it still points at {}",
                            p.name, p.region, p.from
                        ));
                    }
                    parameters.push(p);
                }
            }
        }
    }

    let revocation = Revocation {
        image_id: AmiId::parse(r.ami)?,
        reason: r.reason.to_owned(),
        revoked_by: r.by.to_owned(),
        revoked_at,
        cascade: r.cascade,
        disabled: r.disable,
        bakes,
        parameters,
    };
    let topic = policy_of(&revocation.bakes[0].pipeline.arn).map(|p: &Policy| p.notify.topic_arn.clone());
    let message_id = announce(&sdk, r.function, &revocation, topic).await?;
    Ok((revocation, message_id, problems))
}

/// One bake of the revocation, from one of its AMIs' lineage rows.
async fn bake(ledger: &Ledger, row: &Row, built_on: Option<AmiId>) -> Result<RevokedBake, String> {
    let bake_id = s(row, "bakeId").to_owned();
    let mut amis = Vec::new();
    for (region, ami) in ledger.bake_amis(&bake_id).await? {
        amis.push(PublishedAmi {
            region: Region::parse(&region)?,
            image_id: AmiId::parse(&ami)?,
        });
    }
    if amis.is_empty() {
        // A bake row lost: at least the AMI of the lineage row itself.
        let id = s(row, "pk").trim_start_matches("ami#");
        amis.push(PublishedAmi {
            region: Region::parse(s(row, "region"))?,
            image_id: AmiId::parse(id)?,
        });
    }
    Ok(RevokedBake {
        bake_id,
        pipeline: PipelineRef::of(s(row, "pipelineArn")),
        amis,
        built_on,
    })
}

fn aws_error<E>(op: &str, e: aws_sdk_ec2::error::SdkError<E>) -> String
where
    E: std::error::Error + Send + Sync + 'static,
{
    format!("{op}: {}", aws_sdk_ec2::error::DisplayErrorContext(e))
}

/// Deprecates, unshares, tags and (with `--disable`) disables one AMI in its region. False when
/// EC2 no longer has it.
async fn withdraw(
    ec2: &aws_sdk_ec2::Client,
    image_id: &AmiId,
    deprecate_at: i64,
    r: &Revoke<'_>,
    revoked_at: &str,
) -> Result<bool, String> {
    let found = send("DescribeImages", || {
        ec2.describe_images()
            .image_ids(image_id.as_str())
            .owners("self")
            .include_deprecated(true)
            .include_disabled(true)
            .send()
    })
    .await;
    let image = match found {
        Err(BakeError::NotFound(_)) => None,
        Err(e) => return Err(e.to_string()),
        Ok(o) => o.images.and_then(|i| i.into_iter().next()),
    };
    let Some(image) = image else {
        return Ok(false);
    };
    // A disabled AMI has no launch permission left and takes no change: withdrawn already.
    if image.state().is_some_and(|s| s.as_str() == "disabled") {
        return Ok(true);
    }
    let snapshots = bakery_aws::images::snapshot_ids(&image);

    let launch = ec2
        .describe_image_attribute()
        .image_id(image_id.as_str())
        .attribute(ImageAttributeName::LaunchPermission)
        .send()
        .await
        .map_err(|e| aws_error("DescribeImageAttribute", e))?;
    let granted = launch.launch_permissions().to_vec();
    bakery_aws::images::change_launch_permissions(ec2, image_id.as_str(), granted, OperationType::Remove)
        .await
        .map_err(|e| e.to_string())?;
    for snapshot in &snapshots {
        let perms = ec2
            .describe_snapshot_attribute()
            .snapshot_id(snapshot)
            .attribute(SnapshotAttributeName::CreateVolumePermission)
            .send()
            .await
            .map_err(|e| aws_error("DescribeSnapshotAttribute", e))?;
        let users: Vec<String> = perms
            .create_volume_permissions()
            .iter()
            .filter_map(|p| p.user_id().map(str::to_owned))
            .collect();
        let groups: Vec<String> = perms
            .create_volume_permissions()
            .iter()
            .filter_map(|p| p.group().map(|g| g.as_str().to_owned()))
            .collect();
        if users.is_empty() && groups.is_empty() {
            continue;
        }
        send("ModifySnapshotAttribute", || {
            ec2.modify_snapshot_attribute()
                .snapshot_id(snapshot)
                .attribute(SnapshotAttributeName::CreateVolumePermission)
                .operation_type(OperationType::Remove)
                .set_user_ids((!users.is_empty()).then(|| users.clone()))
                .set_group_names((!groups.is_empty()).then(|| groups.clone()))
                .send()
        })
        .await
        .map_err(|e| e.to_string())?;
    }

    let reason: String = r.reason.chars().take(255).collect();
    let tags = [
        ("bakery:revoked", revoked_at),
        ("bakery:revoked-reason", reason.as_str()),
    ]
    .map(|(k, v)| Tag::builder().key(k).value(v).build());
    let resources: Vec<String> = std::iter::once(image_id.to_string()).chain(snapshots).collect();
    send("CreateTags", || {
        ec2.create_tags()
            .set_resources(Some(resources.clone()))
            .set_tags(Some(tags.to_vec()))
            .send()
    })
    .await
    .map_err(|e| e.to_string())?;
    send("EnableImageDeprecation", || {
        ec2.enable_image_deprecation()
            .image_id(image_id.as_str())
            .deprecate_at(aws_sdk_ec2::primitives::DateTime::from_secs(deprecate_at))
            .send()
    })
    .await
    .map_err(|e| e.to_string())?;
    if r.disable {
        send("DisableImage", || {
            ec2.disable_image().image_id(image_id.as_str()).send()
        })
        .await
        .map_err(|e| e.to_string())?;
    }
    Ok(true)
}

/// Points `name` back at its previous good AMI when it points at the revoked `ami` now: the
/// newest earlier value (GetParameterHistory) that is neither revoked nor gone, deprecated or
/// disabled in EC2. None when the parameter does not point at `ami`.
async fn point_back(
    ssm: &aws_sdk_ssm::Client,
    ec2: &aws_sdk_ec2::Client,
    ledger: &Ledger,
    name: &str,
    ami: &PublishedAmi,
    revoked: &BTreeSet<String>,
) -> Result<Option<ParameterReverted>, String> {
    match bakery_aws::get_parameter(ssm, name).await {
        Ok(v) if v == ami.image_id.as_str() => {}
        Ok(_) | Err(BakeError::NotFound(_)) => return Ok(None),
        Err(e) => return Err(e.to_string()),
    }
    let mut history = Vec::new();
    let mut token = None;
    loop {
        let page = send("GetParameterHistory", || {
            ssm.get_parameter_history()
                .name(name)
                .max_results(50)
                .set_next_token(token.clone())
                .send()
        })
        .await
        .map_err(|e| e.to_string())?;
        history.extend(page.parameters().iter().filter_map(|p| p.value().map(str::to_owned)));
        token = page.next_token().map(str::to_owned);
        if token.is_none() {
            break;
        }
    }
    let mut tried = BTreeSet::new();
    let mut to = None;
    for value in history.iter().rev() {
        if revoked.contains(value) || !tried.insert(value.clone()) || AmiId::parse(value).is_err() {
            continue;
        }
        if ledger.revoked(value).await?.is_some() {
            continue;
        }
        if good(ec2, value).await? {
            to = Some(AmiId::parse(value)?);
            break;
        }
    }
    if let Some(to) = &to {
        send("PutParameter", || {
            ssm.put_parameter()
                .name(name)
                .value(to.as_str())
                .r#type(aws_sdk_ssm::types::ParameterType::String)
                .data_type("aws:ec2:image")
                .overwrite(true)
                .send()
        })
        .await
        .map_err(|e| e.to_string())?;
    }
    Ok(Some(ParameterReverted {
        region: ami.region.clone(),
        name: name.to_owned(),
        from: ami.image_id.clone(),
        to,
    }))
}

/// Whether an AMI of this account is there, available and not deprecated.
async fn good(ec2: &aws_sdk_ec2::Client, image_id: &str) -> Result<bool, String> {
    let image = match bakery_aws::images::describe_own(ec2, image_id).await {
        Ok(i) => i,
        Err(e) => return Err(e.to_string()),
    };
    Ok(image.is_some_and(|i| {
        let deprecated = i
            .deprecation_time()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .is_some_and(|t| t <= chrono::Utc::now());
        i.state().is_some_and(|s| s.as_str() == "available") && !deprecated
    }))
}

/// The REVOKED message, through the announce function.
async fn announce(
    sdk: &aws_config::SdkConfig,
    function: &str,
    revocation: &Revocation,
    topic: Option<String>,
) -> Result<String, String> {
    let payload = json!({"revocation": revocation, "topicArn": topic});
    let body = crate::invoke::invoke(&aws_sdk_lambda::Client::new(sdk), function, &payload)
        .await
        .map_err(|e| match e {
            InvokeError::Call(message) => message,
            e => format!(
                "everything is revoked, but the REVOKED message was not sent {e}; run the same command again to send it"
            ),
        })?;
    Ok(body["messageId"].as_str().unwrap_or_default().to_owned())
}
