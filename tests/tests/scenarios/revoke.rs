//! `bakery revoke` and `bakery stale` as an operator runs them (the binary, the environment the
//! local AWS prints), and the daily staleness schedule. Each checks the world afterwards: the
//! AMIs' state and deprecation in every region as DescribeImages shows them, their launch and
//! snapshot permissions, the parameters, the messages on the subscriber queue, and what the
//! trigger starts.

use gateway::world::{self, World};
use gateway::LocalAws;
use serde_json::{json, Value};
use std::time::Duration;
use tests::local_aws_with;

const LIMIT: Duration = Duration::from_secs(120);

async fn aws() -> LocalAws {
    local_aws_with(&[("BuildWaitSeconds", "30"), ("CopyPollSeconds", "1")]).await
}

/// Bakes `world`'s pipeline on `source` as bake `bake_id`; its AMI per region, in REGIONS order.
async fn bake(aws: &LocalAws, world: &World, source: &str, bake_id: &str) -> Vec<String> {
    let report = world::bake(aws, world, source, bake_id, LIMIT).await.unwrap();
    assert_eq!(report.status, "SUCCEEDED", "{report:#?}");
    let mut amis = Vec::new();
    for region in world::REGIONS {
        let images = world::bake_images(aws, region, bake_id).await.unwrap();
        assert_eq!(images.len(), 1, "{region}: {images:?}");
        amis.push(images[0].0.clone());
    }
    amis
}

/// The command's stdout as JSON, and whether it exited 0 (with its stderr).
async fn bakery_json(aws: &LocalAws, args: &[&str]) -> (Value, bool, String) {
    let out = tests::bakery(aws, args).await;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let v = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("bakery {args:?}: {e}: {stdout}\n{stderr}"));
    (v, out.status.success(), stderr)
}

/// Every message now on the queue (waits `limit` for the first `want`).
async fn drain(aws: &LocalAws, queue: &str, want: usize, limit: Duration) -> Vec<Value> {
    world::notifications(aws, queue, want, limit).await.unwrap()
}

/// The image as its owner's DescribeImages shows it, deprecated and disabled ones included.
async fn image(aws: &LocalAws, region: &str, ami: &str) -> aws_sdk_ec2::types::Image {
    let ec2 = aws_sdk_ec2::Client::new(&aws.sdk_config(region).await);
    let out = ec2
        .describe_images()
        .image_ids(ami)
        .owners("self")
        .include_deprecated(true)
        .include_disabled(true)
        .send()
        .await
        .unwrap();
    out.images()
        .first()
        .cloned()
        .unwrap_or_else(|| panic!("{region}: {ami} is gone"))
}

/// Launch permissions of the image, and create-volume permissions of its snapshots.
async fn permissions(aws: &LocalAws, region: &str, ami: &str) -> (usize, usize) {
    let ec2 = aws_sdk_ec2::Client::new(&aws.sdk_config(region).await);
    let launch = ec2
        .describe_image_attribute()
        .image_id(ami)
        .attribute(aws_sdk_ec2::types::ImageAttributeName::LaunchPermission)
        .send()
        .await
        .unwrap();
    let mut volumes = 0;
    for bdm in image(aws, region, ami).await.block_device_mappings() {
        let Some(snapshot) = bdm.ebs().and_then(|e| e.snapshot_id()) else {
            continue;
        };
        let perms = ec2
            .describe_snapshot_attribute()
            .snapshot_id(snapshot)
            .attribute(aws_sdk_ec2::types::SnapshotAttributeName::CreateVolumePermission)
            .send()
            .await
            .unwrap();
        volumes += perms.create_volume_permissions().len();
    }
    (launch.launch_permissions().len(), volumes)
}

/// A downstream pipeline `app` built on `web_ami` (a bake of this stack), following the
/// publication topic.
async fn downstream(aws: &LocalAws, web_ami: &str) -> World {
    let topic = world::publication_topic(aws).unwrap();
    world::seed_on(aws, "app", web_ami, json!({"snsTopics": [topic]}))
        .await
        .unwrap()
}

#[tokio::test]
async fn a_revoked_bake_and_its_descendants_are_withdrawn_everywhere_and_never_baked_on() {
    let aws = aws().await;
    let web = world::seed(&aws, "web").await.unwrap();
    let r1 = world::register_ami(&aws, "soe-al2023-2026.12.1-web").await.unwrap();
    let r2 = world::register_ami(&aws, "soe-al2023-2026.12.2-web").await.unwrap();
    let good = bake(&aws, &web, &r1, "web-r1").await;
    let bad = bake(&aws, &web, &r2, "web-r2").await;
    let app = downstream(&aws, &bad[0]).await;
    let child = bake(&aws, &app, &bad[0], "app-1").await;
    let parameter = "/bakery/web/latest";
    for (i, region) in world::REGIONS.iter().enumerate() {
        assert_eq!(
            world::parameter(&aws, region, parameter).await.unwrap().as_deref(),
            Some(bad[i].as_str())
        );
        assert!(
            permissions(&aws, region, &bad[i]).await.0 > 0,
            "{region}: shared before"
        );
    }
    drain(&aws, &web.subscriber_queue_url, 100, Duration::from_secs(2)).await;

    let table = aws.resource("LedgerTable").unwrap().to_owned();
    let announce = aws.resource("AnnounceFunction").unwrap().to_owned();
    let reason = "CVE-2026-0001 in the web server";
    let (out, ok, stderr) = bakery_json(
        &aws,
        &[
            "revoke",
            &bad[1],
            "--reason",
            reason,
            "--cascade",
            "--disable",
            "--table",
            &table,
            "--function",
            &announce,
            "--json",
        ],
    )
    .await;
    // app had no earlier good AMI: its parameter stays, and the command says so (exit 2).
    assert!(!ok, "{out}");
    assert!(
        stderr.contains("parameter /bakery/app/latest in us-east-1 has no earlier good AMI"),
        "{stderr}"
    );
    let bakes: Vec<&str> = out["revocation"]["bakes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["bakeId"].as_str().unwrap())
        .collect();
    assert_eq!(
        bakes,
        ["web-r2", "app-1"],
        "the bake of the AMI named (any region's), then its descendant: {out}"
    );

    // In every region: deprecated, disabled, no permission left; the previous good AMI untouched.
    for (i, region) in world::REGIONS.iter().enumerate() {
        for ami in [&bad[i], &child[i]] {
            let img = image(&aws, region, ami).await;
            assert_eq!(img.state().map(|s| s.as_str()), Some("disabled"), "{region}: {ami}");
            assert!(img.deprecation_time().is_some(), "{region}: {ami} deprecated: {img:?}");
            assert!(
                img.tags().iter().any(|t| t.key() == Some("bakery:revoked")),
                "{region}: {ami} tagged"
            );
            assert_eq!(permissions(&aws, region, ami).await, (0, 0), "{region}: {ami} unshared");
        }
        let kept = image(&aws, region, &good[i]).await;
        assert!(kept.deprecation_time().is_none(), "{region}: web-r1 not deprecated");
        assert_eq!(kept.state().map(|s| s.as_str()), Some("available"));
        assert!(
            permissions(&aws, region, &good[i]).await.0 > 0,
            "{region}: web-r1 still shared"
        );
        assert_eq!(
            world::parameter(&aws, region, parameter).await.unwrap().as_deref(),
            Some(good[i].as_str()),
            "{region}: the parameter is back on the previous good AMI"
        );
    }

    // One REVOKED message with every affected ID.
    let messages = drain(&aws, &web.subscriber_queue_url, 2, Duration::from_secs(5)).await;
    assert_eq!(messages.len(), 1, "{messages:#?}");
    let m = &messages[0];
    assert_eq!(m["attributes"]["status"], "REVOKED");
    assert_eq!(m["message"]["status"], "REVOKED");
    assert_eq!(m["message"]["schema"], "bakery.publication/v1");
    assert_eq!(m["message"]["revocation"]["reason"], reason);
    let mut ids: Vec<&str> = m["message"]["amis"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["imageId"].as_str().unwrap())
        .collect();
    ids.sort();
    let mut want: Vec<&str> = bad.iter().chain(&child).map(String::as_str).collect();
    want.sort();
    assert_eq!(ids, want);

    // The trigger never takes a revoked AMI as a base again.
    let trigger = aws.resource("TriggerFunction").unwrap().to_owned();
    let out = tests::bakery(&aws, &["bake", "app", "--source", &bad[0], "--function", &trigger]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("nothing started") && stderr.contains("revoked"),
        "{stderr}"
    );
    let runs = world::executions(&aws).await.unwrap();
    assert_eq!(
        runs.iter().filter(|e| e.name.starts_with("app-")).count(),
        1,
        "only app-1: {:?}",
        runs.iter().map(|e| &e.name).collect::<Vec<_>>()
    );

    // A revocation the ledger does not hold is never announced.
    let lambda = aws_sdk_lambda::Client::new(&aws.sdk_config(&aws.region).await);
    let forged = json!({"revocation": {
        "imageId": good[0], "reason": "forged", "revokedBy": "x", "revokedAt": "2026-12-04T00:00:00Z",
        "cascade": false, "disabled": false,
        "bakes": [{"bakeId": "web-r1", "pipeline": {"arn": web.pipeline_arn, "name": "web"},
                   "amis": [{"region": world::REGIONS[0], "imageId": good[0]}]}]}});
    let out = lambda
        .invoke()
        .function_name(&announce)
        .payload(aws_sdk_lambda::primitives::Blob::new(forged.to_string()))
        .send()
        .await
        .unwrap();
    assert!(out.function_error().is_some());
    assert!(drain(&aws, &web.subscriber_queue_url, 1, Duration::from_secs(2))
        .await
        .is_empty());
}

/// `bakery stale --json`'s list.
async fn stale(aws: &LocalAws) -> Vec<Value> {
    let trigger = aws.resource("TriggerFunction").unwrap().to_owned();
    let (v, ok, stderr) = bakery_json(aws, &["stale", "--function", &trigger, "--json"]).await;
    assert!(ok, "{stderr}");
    assert_eq!(v["invalidPolicies"], json!([]), "{v}");
    v["stale"].as_array().cloned().unwrap_or_default()
}

/// An AMI the SOE team's account registers and shares with this one. Its AMI State Change
/// event stays on the SOE account's bus (the stack is told of no SOE account), so nothing bakes
/// on it by itself: what staleness is there to find.
async fn soe_ami(aws: &LocalAws, soe: &str, name: &str) -> String {
    let ec2 = aws_sdk_ec2::Client::new(&tests::account_sdk(aws, soe, &aws.region).await);
    let id = world::register_ami_with(&ec2, name).await.unwrap();
    let us = aws_sdk_ec2::types::LaunchPermission::builder()
        .user_id(&aws.account)
        .build();
    ec2.modify_image_attribute()
        .image_id(&id)
        .launch_permission(
            aws_sdk_ec2::types::LaunchPermissionModifications::builder()
                .add(us)
                .build(),
        )
        .send()
        .await
        .unwrap();
    id
}

#[tokio::test]
async fn stale_images_are_listed_and_the_daily_schedule_announces_them_once() {
    let aws = aws().await;
    let soe = "777788889999";
    let r1 = soe_ami(&aws, soe, "soe-al2023-2026.12.1").await;
    let mut web = world::seed_on(
        &aws,
        "web",
        &r1,
        json!({"amis": [{"owner": soe, "namePattern": "soe-al2023-*"}]}),
    )
    .await
    .unwrap();
    web.policy["trustedOwners"] = json!([soe]);
    world::put_policy(&aws, &web.pipeline_name, &web.policy).await.unwrap();
    let web1 = bake(&aws, &web, &r1, "web-r1").await;
    // Built on web's AMI, but not following web's publications (no ripple): it falls behind.
    let unused = format!("arn:aws:sns:{}:{}:not-followed", aws.region, aws.account);
    let app = world::seed_on(&aws, "app", &web1[0], json!({"snsTopics": [unused]}))
        .await
        .unwrap();
    let app1 = bake(&aws, &app, &web1[0], "app-1").await;
    assert_eq!(
        stale(&aws).await,
        Vec::<Value>::new(),
        "both on their parent's newest release"
    );
    // Asked of a function that is not the trigger: its refusal is the command's error.
    let announce = aws.resource("AnnounceFunction").unwrap().to_owned();
    let out = tests::bakery(&aws, &["stale", "--function", &announce]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("the trigger failed (Unhandled)") && stderr.contains("InvalidInput"),
        "{stderr}"
    );

    // A newer trusted SOE release: web is one release behind; app is not (web has not moved).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r2 = soe_ami(&aws, soe, "soe-al2023-2026.12.2").await;
    let now = stale(&aws).await;
    assert_eq!(now.len(), 1, "{now:#?}");
    assert_eq!(now[0]["pipeline"]["name"], "web");
    assert_eq!(now[0]["builtOn"], r1.as_str());
    assert_eq!(now[0]["newerBase"], r2.as_str());
    assert_eq!(now[0]["newerReleases"], 1);
    assert_eq!(now[0]["daysBehind"], 0);
    assert_eq!(now[0]["amis"].as_array().map(Vec::len), Some(world::REGIONS.len()));

    // web moves on: now app is behind web's newest publication.
    let web2 = bake(&aws, &web, &r2, "web-r2").await;
    let now = stale(&aws).await;
    assert_eq!(now.len(), 1, "{now:#?}");
    assert_eq!(now[0]["pipeline"]["name"], "app");
    assert_eq!(now[0]["builtOn"], web1[0].as_str());
    assert_eq!(now[0]["newerBase"], web2[0].as_str());

    // The daily schedule: one STALE message with the stale AMIs.
    drain(&aws, &app.subscriber_queue_url, 100, Duration::from_secs(2)).await;
    aws.admin().fire_schedule("bakery-staleness").await.unwrap();
    let messages = drain(&aws, &app.subscriber_queue_url, 2, Duration::from_secs(10)).await;
    assert_eq!(messages.len(), 1, "{messages:#?}");
    assert_eq!(messages[0]["attributes"]["status"], "STALE");
    let ids: Vec<&str> = messages[0]["message"]["amis"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["imageId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, app1.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(messages[0]["message"]["stale"][0]["pipeline"]["name"], "app");

    // A revoked release is no newer release: with web-r2 revoked, app is not stale.
    let table = aws.resource("LedgerTable").unwrap().to_owned();
    let announce = aws.resource("AnnounceFunction").unwrap().to_owned();
    let (_, ok, stderr) = bakery_json(
        &aws,
        &[
            "revoke",
            &web2[0],
            "--reason",
            "bad",
            "--table",
            &table,
            "--function",
            &announce,
            "--json",
        ],
    )
    .await;
    assert!(ok, "{stderr}");
    for (i, region) in world::REGIONS.iter().enumerate() {
        let img = image(&aws, region, &web2[i]).await;
        assert_eq!(
            img.state().map(|s| s.as_str()),
            Some("available"),
            "{region}: not disabled"
        );
        assert!(img.deprecation_time().is_some(), "{region}: deprecated");
        assert_eq!(permissions(&aws, region, &web2[i]).await, (0, 0), "{region}: unshared");
        assert_eq!(
            world::parameter(&aws, region, "/bakery/web/latest")
                .await
                .unwrap()
                .as_deref(),
            Some(web1[i].as_str())
        );
    }
    let now = stale(&aws).await;
    assert!(now.iter().all(|s| s["pipeline"]["name"] != "app"), "{now:#?}");
}

/// A REVOKED publication as the SOE team's Bakery (`account`) sends it for `ami`.
fn upstream_revocation(account: &str, ami: &str, region: &str) -> String {
    let pipeline = json!({
        "arn": format!("arn:aws:imagebuilder:{region}:{account}:image-pipeline/soe-hardened"),
        "name": "soe-hardened"
    });
    let amis = json!([{"region": region, "imageId": ami}]);
    json!({
        "schema": "bakery.publication/v1", "status": "REVOKED", "accountId": account,
        "pipeline": pipeline, "amis": amis, "lineage": {"parents": []},
        "revocation": {
            "imageId": ami, "reason": "CVE-2026-5555 in the kernel", "revokedBy": "soe-team",
            "revokedAt": "2026-12-07T09:00:00Z", "cascade": false, "disabled": false,
            "bakes": [{"bakeId": "soe-hardened-1", "pipeline": pipeline, "amis": amis}], "parameters": []
        }
    })
    .to_string()
}

/// The SOE team's Bakery, in its own account, revokes the release an image here was built on.
/// This stack keeps the revocation in its own ledger (its trigger refuses that base from then
/// on), and its subscribers hear at once, in one STALE message, which of its images are built
/// on it. A REVOKED message naming an account no policy trusts changes nothing.
#[tokio::test]
async fn an_upstream_revocation_is_kept_here_and_the_images_built_on_it_are_announced() {
    let soe = "777788889999";
    let upstream_topic = format!("arn:aws:sns:us-east-1:{soe}:bakery-publications");
    let aws = local_aws_with(&[
        ("BuildWaitSeconds", "30"),
        ("CopyPollSeconds", "1"),
        ("UpstreamBakeryTopicArn", &upstream_topic),
        ("ChainPipelines", "false"),
    ])
    .await;
    let soe_sns = aws_sdk_sns::Client::new(&tests::account_sdk(&aws, soe, &aws.region).await);
    let created = soe_sns.create_topic().name("bakery-publications").send().await.unwrap();
    assert_eq!(created.topic_arn(), Some(upstream_topic.as_str()));
    // The SOE team lets this account subscribe, as a downstream account must be let.
    let policy = json!({"Version": "2012-10-17", "Statement": [{
        "Sid": "DownstreamBakeries", "Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{}:root", aws.account)},
        "Action": "sns:Subscribe", "Resource": upstream_topic
    }]});
    soe_sns
        .set_topic_attributes()
        .topic_arn(&upstream_topic)
        .attribute_name("Policy")
        .attribute_value(policy.to_string())
        .send()
        .await
        .unwrap();
    let r1 = soe_ami(&aws, soe, "soe-hardened-2026.12.1").await;
    let mut app = world::seed_on(&aws, "app", &r1, json!({"snsTopics": [upstream_topic]}))
        .await
        .unwrap();
    app.policy["trustedOwners"] = json!([soe]);
    world::put_policy(&aws, &app.pipeline_name, &app.policy).await.unwrap();
    let app1 = bake(&aws, &app, &r1, "app-r1").await;
    let published = drain(&aws, &app.subscriber_queue_url, 1, LIMIT).await;
    assert_eq!(published[0]["attributes"]["status"], "PUBLISHED", "{published:?}");
    let publish = |message: String| {
        let status = aws_sdk_sns::types::MessageAttributeValue::builder()
            .data_type("String")
            .string_value("REVOKED")
            .build()
            .unwrap();
        soe_sns
            .publish()
            .topic_arn(&upstream_topic)
            .message(message)
            .message_attributes("status", status)
            .send()
    };
    let ddb = aws_sdk_dynamodb::Client::new(&aws.sdk_config(&aws.region).await);
    let table = aws.resource("LedgerTable").unwrap().to_owned();
    let revoked_row = |ami: String| {
        let (ddb, table) = (ddb.clone(), table.clone());
        async move {
            ddb.get_item()
                .table_name(table)
                .key("pk", aws_sdk_dynamodb::types::AttributeValue::S(format!("ami#{ami}")))
                .key("sk", aws_sdk_dynamodb::types::AttributeValue::S("revoked".into()))
                .consistent_read(true)
                .send()
                .await
                .unwrap()
                .item
        }
    };

    // Claimed for an account no policy trusts: nothing is revoked, nothing is said.
    publish(upstream_revocation("999988887777", &r1, &aws.region))
        .await
        .unwrap();
    let said = drain(&aws, &app.subscriber_queue_url, 1, Duration::from_secs(5)).await;
    assert_eq!(said, Vec::<Value>::new());
    assert!(revoked_row(r1.clone()).await.is_none());

    // The SOE team's own revocation.
    publish(upstream_revocation(soe, &r1, &aws.region)).await.unwrap();
    let said = drain(&aws, &app.subscriber_queue_url, 1, LIMIT).await;
    assert_eq!(said.len(), 1, "{said:?}");
    let m = &said[0];
    assert_eq!(m["attributes"]["status"], "STALE", "{m}");
    let report = &m["message"]["stale"];
    assert_eq!(report.as_array().map(Vec::len), Some(1), "{m}");
    assert_eq!(report[0]["pipeline"]["name"], "app", "{m}");
    assert_eq!(report[0]["builtOn"], r1.as_str(), "{m}");
    assert!(report[0].get("newerBase").is_none(), "no newer release: {m}");
    let why = report[0]["baseRevoked"].as_str().unwrap_or_default();
    assert!(
        why.contains("CVE-2026-5555") && why.contains(&format!("soe-team (account {soe})")),
        "{m}"
    );
    let mut amis: Vec<&str> = m["message"]["amis"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["imageId"].as_str())
        .collect();
    amis.sort_unstable();
    let mut want: Vec<&str> = app1.iter().map(String::as_str).collect();
    want.sort_unstable();
    assert_eq!(amis, want, "{m}");
    let row = revoked_row(r1.clone()).await.expect("revoked in this ledger");
    assert_eq!(row["upstreamTopic"].as_s().unwrap(), &upstream_topic);

    // `bakery stale` says the same, and the trigger takes the revoked release as a base no more.
    let listed = stale(&aws).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["baseRevoked"], report[0]["baseRevoked"]);
    let trigger = aws.resource("TriggerFunction").unwrap().to_owned();
    let out = tests::bakery(&aws, &["bake", "app", "--source", &r1, "--function", &trigger]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("nothing started") && stderr.contains("CVE-2026-5555"),
        "{stderr}"
    );
}
