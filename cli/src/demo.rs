//! `bakery demo`: an SOE release ripples through three pipelines on the local AWS. The SOE
//! team publishes a new base AMI on its release topic; the trigger function starts a bake of
//! each pipeline that follows the topic (web-app, api-service); each is built, gated, copied to
//! three regions, shared with two accounts and an OU, its SSM parameter written, and announced.
//! web-app-hardened follows web-app's publication, so its bake starts when web-app publishes,
//! on web-app's new AMI, with the SOE AMI in its lineage.

use gateway::world::{self, Error};
use gateway::{LocalAws, Options};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The pipelines, and what each follows (`None`: the SOE release topic; `Some(p)`: pipeline p's publication).
const PIPELINES: [(&str, Option<&str>); 3] = [
    ("web-app", None),
    ("api-service", None),
    ("web-app-hardened", Some("web-app")),
];
const LIMIT: Duration = Duration::from_secs(150);
/// How long nothing new starts after a failed bake before the demo stops waiting for the rest.
const QUIET: Duration = Duration::from_secs(5);

/// The local AWS with production's waits shortened and the SOE topic followed (template
/// parameters, as a deploy would set them).
pub fn options(repo: PathBuf) -> Options {
    let mut opts = Options::for_repo(repo);
    let soe_topic = format!("arn:aws:sns:{}:{}:{}", opts.region, opts.account, world::SOE_TOPIC);
    for (k, v) in [
        ("BuildWaitSeconds", "20"),
        ("BusyRetrySeconds", "1"),
        ("CopyPollSeconds", "1"),
        ("SoeReleaseTopicArn", soe_topic.as_str()),
    ] {
        opts.parameters.insert(k.to_owned(), v.to_owned());
    }
    opts
}

/// The demo's world on `aws`: the SOE team's topic and base AMI, and the three pipelines with
/// their policies (web-app and api-service follow the SOE topic, web-app-hardened follows
/// web-app's publications).
pub struct Seeded {
    pub soe_topic: String,
    pub base: String,
    pub worlds: Vec<world::World>,
}

pub async fn seed(aws: &LocalAws) -> Result<Seeded, Error> {
    let soe_topic = world::create_soe_topic(aws).await?;
    let base = world::register_ami(aws, "soe-al2023-2026.11.1").await?;
    let publications = world::publication_topic(aws)?;
    let mut worlds = Vec::new();
    for (name, upstream) in PIPELINES {
        let sources = match upstream {
            None => json!({"snsTopics": [soe_topic]}),
            Some(up) => {
                let up: &world::World = worlds
                    .iter()
                    .find(|w: &&world::World| w.pipeline_name == up)
                    .ok_or("upstream pipeline not seeded")?;
                json!({"snsTopics": [publications], "upstreamPipelines": [up.pipeline_arn]})
            }
        };
        worlds.push(world::seed_on(aws, name, &base, sources).await?);
    }
    Ok(Seeded {
        soe_topic,
        base,
        worlds,
    })
}

pub async fn run(repo: PathBuf) -> Result<Value, Error> {
    let aws = LocalAws::start(options(repo)).await?;
    let Seeded {
        soe_topic,
        base,
        worlds,
    } = seed(&aws).await?;

    // The SOE team's release: one new base AMI.
    let release = world::register_ami(&aws, "soe-al2023-2026.11.2").await?;
    let t0 = Instant::now();
    let epoch_ms = chrono::Utc::now().timestamp_millis();
    let message_id =
        world::publish_release(&aws, &soe_topic, "soe-al2023 2026.11.2", &[(&aws.region, &release)]).await?;

    // Every pipeline's bake, started by the trigger; the last one only once web-app published.
    // A failed bake starts nothing downstream: once every bake ended and one failed, a quiet
    // spell ends the wait.
    let mut settled: Option<(usize, Instant)> = None;
    let executions = loop {
        let all = world::executions(&aws).await?;
        let ended = all.iter().all(|e| e.status != "RUNNING");
        if all.len() >= PIPELINES.len() && ended {
            break all;
        }
        if ended && all.iter().any(|e| e.status != "SUCCEEDED") {
            match settled {
                Some((n, since)) if n == all.len() && since.elapsed() > QUIET => break all,
                Some((n, _)) if n == all.len() => {}
                _ => settled = Some((all.len(), Instant::now())),
            }
        }
        if t0.elapsed() > LIMIT {
            return Err(format!(
                "after {LIMIT:?}, {} bake(s) started of {}: {:?}",
                all.len(),
                PIPELINES.len(),
                all.iter().map(|e| (&e.name, &e.status)).collect::<Vec<_>>()
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    let mut bakes = Vec::new();
    for e in &executions {
        let source = e.input["sourceAmi"]["imageId"].as_str().unwrap_or_default().to_owned();
        let report = world::wait(&aws, &e.execution_arn, &source, t0, LIMIT).await?;
        let pipeline_arn = e.input["pipelineArn"].as_str().unwrap_or_default();
        let name = bakery_core::ids::pipeline_name(pipeline_arn).to_owned();
        let mut amis = Vec::new();
        for p in report.output["published"].as_array().into_iter().flatten() {
            let (region, image) = (
                p["region"].as_str().unwrap_or_default(),
                p["imageId"].as_str().unwrap_or_default(),
            );
            let parameter = format!("/bakery/{name}/latest");
            amis.push(json!({
                "region": region,
                "imageId": image,
                "sharedWith": world::shares(&aws, region, image).await?,
                "parameter": {"name": parameter, "value": world::parameter(&aws, region, &parameter).await?},
            }));
        }
        bakes.push(json!({
            "pipeline": name,
            "pipelineArn": pipeline_arn,
            "executionArn": e.execution_arn,
            "status": report.status,
            "trigger": e.input["trigger"],
            "sourceAmi": source,
            "parentChain": e.input["parentChain"],
            "amis": amis,
            "startedAfterMs": e.start_ms - epoch_ms,
            "elapsedMs": report.timeline.last().map_or(0, |s| s.started_ms + s.duration_ms),
            "timeline": report.timeline,
        }));
    }

    // The subscriber (on web-app's queue; every publication reaches it) hears of every bake.
    let notifications = world::notifications(
        &aws,
        &worlds[0].subscriber_queue_url,
        bakes.len(),
        Duration::from_secs(10),
    )
    .await?;
    // What IAM refused, as the local AWS logged it.
    let denials: Vec<Value> = aws
        .admin()
        .denials()
        .await?
        .into_iter()
        .map(|d| json!({"function": d["function"], "principal": d["principal"], "action": d["action"], "resource": d["resource"]}))
        .collect();
    let status = if bakes.len() == PIPELINES.len() && bakes.iter().all(|b| b["status"] == "SUCCEEDED") {
        "SUCCEEDED"
    } else {
        "FAILED"
    };
    let first = bakes.first().cloned().unwrap_or(Value::Null);
    let first_notification = notifications
        .iter()
        .find(|n| n["message"]["executionArn"] == first["executionArn"])
        .cloned();
    Ok(json!({
        "status": status,
        "release": {"topicArn": soe_topic, "messageId": message_id, "imageId": release, "region": aws.region},
        "baseAmi": base,
        "bakes": bakes,
        // The first bake's result, as `bakery demo --json` has always given it.
        "executionArn": first["executionArn"],
        "amis": first["amis"],
        "notification": first_notification,
        "notifications": notifications,
        "denials": denials,
        "elapsedMs": t0.elapsed().as_millis(),
    }))
}

/// The report for people.
pub fn render(r: &Value) -> String {
    let mut out = String::new();
    let mut line = |s: String| {
        out.push_str(&s);
        out.push('\n');
    };
    let s = |v: &Value| v.as_str().unwrap_or("?").to_owned();
    let secs = |ms: &Value| format!("{:.1} s", ms.as_f64().unwrap_or(0.0) / 1000.0);
    let release = &r["release"];
    line(format!(
        "SOE release: {} in {} published on {}",
        s(&release["imageId"]),
        s(&release["region"]),
        s(&release["topicArn"])
    ));
    line(String::new());
    line("ripple (time since the release was published)".into());
    let bakes: Vec<&Value> = r["bakes"].as_array().into_iter().flatten().collect();
    for b in &bakes {
        let built_on = bakes
            .iter()
            .find(|u| {
                u["amis"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|a| a["imageId"] == b["sourceAmi"])
            })
            .map_or("the SOE release".to_owned(), |u| format!("{}'s AMI", s(&u["pipeline"])));
        line(format!(
            "  +{:>7}  {:<18} {} on {} ({}), {} after {}",
            secs(&b["startedAfterMs"]),
            s(&b["pipeline"]),
            s(&b["trigger"]),
            s(&b["sourceAmi"]),
            built_on,
            s(&b["status"]),
            secs(&b["elapsedMs"]),
        ));
    }
    for b in &bakes {
        line(String::new());
        line(format!("{} — {}", s(&b["pipeline"]), s(&b["executionArn"])));
        let chain: Vec<String> = b["parentChain"].as_array().into_iter().flatten().map(&s).collect();
        if !chain.is_empty() {
            line(format!("  lineage: {} ← {}", s(&b["sourceAmi"]), chain.join(" ← ")));
        }
        for st in b["timeline"].as_array().into_iter().flatten() {
            line(format!(
                "  {:>7} ms  {:<22} {:>6} ms",
                st["startedMs"].as_u64().unwrap_or(0),
                s(&st["state"]),
                st["durationMs"].as_u64().unwrap_or(0)
            ));
        }
        for a in b["amis"].as_array().into_iter().flatten() {
            let sw = &a["sharedWith"];
            line(format!("  {:<15} {}", s(&a["region"]), s(&a["imageId"])));
            line(format!(
                "      launch permission: accounts {} · organizations {} · OUs {}",
                sw["accounts"], sw["organizations"], sw["organizationalUnits"]
            ));
            for snap in sw["snapshots"].as_array().into_iter().flatten() {
                line(format!(
                    "      snapshot {} create-volume: {}",
                    s(&snap["snapshotId"]),
                    snap["createVolumePermission"]
                ));
            }
            line(format!(
                "      ssm {} = {}",
                s(&a["parameter"]["name"]),
                a["parameter"]["value"]
            ));
        }
    }
    let denials: Vec<&Value> = r["denials"].as_array().into_iter().flatten().collect();
    if !denials.is_empty() {
        line(String::new());
        line("refused by IAM (the local AWS enforces the template's permissions)".into());
        for d in &denials {
            let who = d["function"].as_str().or(d["principal"].as_str()).unwrap_or("?");
            line(format!(
                "  AccessDenied: {who} may not {} on {}",
                s(&d["action"]),
                s(&d["resource"])
            ));
        }
    }
    for b in bakes.iter().filter(|b| b["status"] != "SUCCEEDED") {
        let failure = r["notifications"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|n| n["message"]["executionArn"] == b["executionArn"])
            .map(|n| &n["message"]["failure"]);
        if let Some(f) = failure {
            line(format!(
                "  {} failed at {}: {}: {}",
                s(&b["pipeline"]),
                s(&f["step"]),
                s(&f["error"]),
                s(&f["cause"])
            ));
        }
    }
    line(String::new());
    line(format!(
        "result: {} — {} bakes in {}",
        s(&r["status"]),
        bakes.len(),
        secs(&r["elapsedMs"])
    ));
    line(String::new());
    line("notifications on the subscriber queue (the first bake's in full)".into());
    line(serde_json::to_string_pretty(&r["notification"]).unwrap_or_default());
    let shown = &r["notification"]["message"]["executionArn"];
    for n in r["notifications"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|n| &n["message"]["executionArn"] != shown)
    {
        let m = &n["message"];
        line(format!(
            "  … {} {}: {}",
            s(&m["status"]),
            s(&m["pipeline"]["name"]),
            m["amis"]
        ));
    }
    out
}
