//! The emulator driven through `handle()` with the bodies SDKs send, against a fake EC2 and
//! EventBridge, on tokio's paused clock.

use super::*;
use serde_json::json;
use std::sync::atomic::{AtomicU64, Ordering};

const ACCOUNT: &str = "123456789012";
const REGION: &str = "us-east-1";
const PARENT_AMI: &str = "ami-0123456789abcdef0";

#[derive(Clone, Debug, PartialEq)]
enum Call {
    Create(AmiRequest),
    Copy {
        source_region: String,
        source_image_id: String,
        dest_region: String,
        name: String,
    },
}

#[derive(Default)]
struct FakeBackend {
    calls: Mutex<Vec<Call>>,
    events: Mutex<Vec<Value>>,
    fail_with: Mutex<Option<String>>,
    made: AtomicU64,
}

impl FakeBackend {
    fn new_ami(&self) -> Result<String, String> {
        match self.fail_with.lock().unwrap().clone() {
            Some(e) => Err(e),
            None => Ok(format!(
                "ami-{:017x}",
                0xa000 + self.made.fetch_add(1, Ordering::SeqCst)
            )),
        }
    }
    fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }
    fn events(&self) -> Vec<Value> {
        self.events.lock().unwrap().clone()
    }
}

#[async_trait::async_trait]
impl Backend for FakeBackend {
    async fn create_ami(&self, req: AmiRequest) -> Result<String, String> {
        self.calls.lock().unwrap().push(Call::Create(req));
        self.new_ami()
    }
    async fn copy_ami(
        &self,
        source_region: &str,
        source_image_id: &str,
        dest_region: &str,
        name: &str,
        _tags: BTreeMap<String, String>,
    ) -> Result<String, String> {
        self.calls.lock().unwrap().push(Call::Copy {
            source_region: source_region.into(),
            source_image_id: source_image_id.into(),
            dest_region: dest_region.into(),
            name: name.into(),
        });
        self.new_ami()
    }
    async fn put_event(&self, event: Value) {
        self.events.lock().unwrap().push(event);
    }
}

fn emulator() -> (Arc<Emulator>, Arc<FakeBackend>) {
    let backend = Arc::new(FakeBackend::default());
    let config = EmulatorConfig {
        account_id: ACCOUNT.into(),
        region: REGION.into(),
        phases: PhaseDurations::default(),
    };
    (Emulator::new(config, backend.clone()), backend)
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Value,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Asserts an error as SDKs read it: status, x-amzn-ErrorType, `__type` and a message.
    fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(
            (self.status, self.header("x-amzn-ErrorType")),
            (status, Some(code)),
            "{}",
            self.body
        );
        assert_eq!(self.body["__type"], code);
        assert!(self.body["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
}

/// Percent-encodes as SDKs do for query values and path labels.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn call(em: &Arc<Emulator>, method: &str, path: &str, query: &str, body: &[u8]) -> Reply {
    let r = em.handle(method, path, query, body).await;
    let reply = Reply {
        status: r.status,
        body: serde_json::from_slice(&r.body).unwrap(),
        headers: r.headers,
    };
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert!(reply.header("x-amzn-RequestId").is_some());
    reply
}

/// A PUT/POST operation with a JSON body.
async fn send(em: &Arc<Emulator>, method: &str, op: &str, body: Value) -> Reply {
    call(em, method, &format!("/{op}"), "", &serde_json::to_vec(&body).unwrap()).await
}

async fn ok(em: &Arc<Emulator>, method: &str, op: &str, body: Value) -> Value {
    let r = send(em, method, op, body).await;
    assert_eq!(r.status, 200, "{op}: {}", r.body);
    assert!(r.body["requestId"].is_string());
    r.body
}

/// A GET/DELETE operation whose one member is in the query string.
async fn query(em: &Arc<Emulator>, method: &str, op: &str, member: &str, arn: &str) -> Reply {
    call(em, method, &format!("/{op}"), &format!("{member}={}", encode(arn)), b"").await
}

async fn image(em: &Arc<Emulator>, arn: &str) -> Value {
    let r = query(em, "GET", "GetImage", "imageBuildVersionArn", arn).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body["image"].clone()
}

fn token() -> String {
    wire::uuid()
}

fn arn(path: &str) -> String {
    format!("arn:aws:imagebuilder:{REGION}:{ACCOUNT}:{path}")
}

async fn recipe(em: &Arc<Emulator>, name: &str, parent: &str) -> String {
    let body = json!({
        "name": name, "semanticVersion": "1.0.0", "parentImage": parent,
        "components": [{ "componentArn": "arn:aws:imagebuilder:us-east-1:aws:component/update-linux/x.x.x" }],
        "amiTags": { "Team": "platform" },
        "clientToken": token(),
    });
    ok(em, "PUT", "CreateImageRecipe", body).await["imageRecipeArn"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A pipeline building `recipe_arn`, distributing to the build region and eu-west-1; `extra`
/// members go into CreateImagePipeline. Returns the pipeline ARN.
async fn pipeline_for(em: &Arc<Emulator>, name: &str, recipe_arn: &str, extra: Value) -> String {
    let infra = json!({ "name": format!("{name}-infra"), "instanceProfileName": "ib-role", "clientToken": token() });
    let infra = ok(em, "PUT", "CreateInfrastructureConfiguration", infra).await;
    let dist = json!({
        "name": format!("{name}-dist"),
        "distributions": [
            { "region": "us-east-1", "amiDistributionConfiguration": {
                "name": "bakery-{{imagebuilder:buildVersion}}-{{imagebuilder:buildDate}}",
                "description": "Baked", "amiTags": { "Stage": "candidate" } } },
            { "region": "eu-west-1",
              "amiDistributionConfiguration": { "name": "bakery-eu-{{imagebuilder:buildVersion}}" } },
        ],
        "clientToken": token(),
    });
    let dist = ok(em, "PUT", "CreateDistributionConfiguration", dist).await;
    let mut body = json!({
        "name": name,
        "imageRecipeArn": recipe_arn,
        "infrastructureConfigurationArn": infra["infrastructureConfigurationArn"],
        "distributionConfigurationArn": dist["distributionConfigurationArn"],
        "clientToken": token(),
    });
    if let (Value::Object(body), Value::Object(extra)) = (&mut body, extra) {
        body.extend(extra);
    }
    ok(em, "PUT", "CreateImagePipeline", body).await["imagePipelineArn"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn pipeline(em: &Arc<Emulator>, name: &str, extra: Value) -> String {
    let recipe_arn = recipe(em, &format!("{name} recipe"), PARENT_AMI).await;
    pipeline_for(em, name, &recipe_arn, extra).await
}

async fn start(em: &Arc<Emulator>, pipeline_arn: &str) -> String {
    let body = json!({ "imagePipelineArn": pipeline_arn, "clientToken": token() });
    ok(em, "PUT", "StartImagePipelineExecution", body).await["imageBuildVersionArn"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn wait_for(em: &Arc<Emulator>, arn: &str, status: &str) -> Value {
    for _ in 0..500 {
        let image = image(em, arn).await;
        if image["state"]["status"] == status {
            return image;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{arn} never became {status}: {}", image(em, arn).await);
}

/// The (previous, new) statuses of the events about `arn`, once delivery has settled.
async fn transitions(backend: &FakeBackend, arn: &str) -> Vec<(Option<String>, String)> {
    tokio::time::sleep(Duration::from_millis(50)).await;
    let status = |v: &Value| v["status"].as_str().map(str::to_owned);
    backend
        .events()
        .iter()
        .filter(|e| e["resources"][0] == arn)
        .map(|e| {
            (
                status(&e["detail"]["previous-state"]),
                status(&e["detail"]["state"]).unwrap(),
            )
        })
        .collect()
}

fn chain(statuses: &[&str]) -> Vec<(Option<String>, String)> {
    let mut previous = None;
    statuses
        .iter()
        .map(|s| {
            let step = (previous.clone(), s.to_string());
            previous = Some(s.to_string());
            step
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn recipe_versions_are_immutable() {
    let (em, _) = emulator();
    let body =
        json!({ "name": "Bakery Base", "semanticVersion": "1.0.0", "parentImage": PARENT_AMI, "clientToken": "t-1" });
    let created = ok(&em, "PUT", "CreateImageRecipe", body.clone()).await;
    let recipe_arn = arn("image-recipe/bakery-base/1.0.0");
    assert_eq!(created["imageRecipeArn"], recipe_arn);
    assert_eq!(created["clientToken"], "t-1");

    // The same request again is the same answer; the same version under another token exists.
    assert_eq!(
        ok(&em, "PUT", "CreateImageRecipe", body.clone()).await["imageRecipeArn"],
        recipe_arn
    );
    let mut again = body.clone();
    again["clientToken"] = "t-2".into();
    let conflict = send(&em, "PUT", "CreateImageRecipe", again.clone()).await;
    conflict.assert_error(400, "ResourceAlreadyExistsException");
    assert!(conflict.body["message"].as_str().unwrap().contains(&recipe_arn));

    again["semanticVersion"] = "1.0".into();
    send(&em, "PUT", "CreateImageRecipe", again.clone())
        .await
        .assert_error(400, "InvalidVersionNumberException");
    again["semanticVersion"] = "1.0.1".into();
    again.as_object_mut().unwrap().remove("parentImage");
    send(&em, "PUT", "CreateImageRecipe", again.clone())
        .await
        .assert_error(400, "InvalidRequestException");
    again["parentImage"] = "ami-0fedcba9876543210".into();
    ok(&em, "PUT", "CreateImageRecipe", again).await;

    let got = query(&em, "GET", "GetImageRecipe", "imageRecipeArn", &recipe_arn)
        .await
        .body;
    let r = &got["imageRecipe"];
    assert_eq!(
        (&r["name"], &r["version"], &r["parentImage"], &r["owner"]),
        (
            &json!("Bakery Base"),
            &json!("1.0.0"),
            &json!(PARENT_AMI),
            &json!(ACCOUNT)
        )
    );
    assert!(r.get("clientToken").is_none() && r.get("semanticVersion").is_none());

    let list = ok(&em, "POST", "ListImageRecipes", json!({})).await;
    assert_eq!(list["imageRecipeSummaryList"].as_array().unwrap().len(), 2);
    let filtered = json!({ "filters": [{ "name": "parentImage", "values": [PARENT_AMI] }], "maxResults": 1 });
    let list = ok(&em, "POST", "ListImageRecipes", filtered).await;
    assert_eq!(list["imageRecipeSummaryList"][0]["arn"], recipe_arn);
    assert!(list.get("nextToken").is_none());
}

#[tokio::test(start_paused = true)]
async fn other_resources_create_and_get() {
    let (em, _) = emulator();
    let component = json!({
        "name": "hello", "semanticVersion": "2.1.0", "platform": "Linux", "data": "name: hello", "clientToken": token(),
    });
    let created = ok(&em, "PUT", "CreateComponent", component.clone()).await;
    assert_eq!(created["componentBuildVersionArn"], arn("component/hello/2.1.0/1"));
    // A version ARN names its latest build.
    let got = query(
        &em,
        "GET",
        "GetComponent",
        "componentBuildVersionArn",
        &arn("component/hello/2.1.0"),
    )
    .await;
    assert_eq!(got.body["component"]["version"], "2.1.0");
    let mut again = component.clone();
    again["clientToken"] = token().into();
    send(&em, "PUT", "CreateComponent", again.clone())
        .await
        .assert_error(400, "ResourceInUseException");
    again["uri"] = "s3://bucket/hello.yaml".into();
    send(&em, "PUT", "CreateComponent", again)
        .await
        .assert_error(400, "InvalidParameterCombinationException");

    let pipeline_arn = pipeline(&em, "other", json!({})).await;
    let p = query(&em, "GET", "GetImagePipeline", "imagePipelineArn", &pipeline_arn)
        .await
        .body;
    let dist_arn = p["imagePipeline"]["distributionConfigurationArn"]
        .as_str()
        .unwrap()
        .to_owned();
    let dist = query(
        &em,
        "GET",
        "GetDistributionConfiguration",
        "distributionConfigurationArn",
        &dist_arn,
    )
    .await;
    assert_eq!(dist.body["distributionConfiguration"]["timeoutMinutes"], 720);
    let infra_arn = p["imagePipeline"]["infrastructureConfigurationArn"]
        .as_str()
        .unwrap()
        .to_owned();
    let infra = query(
        &em,
        "GET",
        "GetInfrastructureConfiguration",
        "infrastructureConfigurationArn",
        &infra_arn,
    )
    .await;
    assert_eq!(
        infra.body["infrastructureConfiguration"]["instanceProfileName"],
        "ib-role"
    );
    let second = json!({ "name": "other-infra", "instanceProfileName": "x", "clientToken": token() });
    send(&em, "PUT", "CreateInfrastructureConfiguration", second)
        .await
        .assert_error(400, "ResourceAlreadyExistsException");
}

#[tokio::test(start_paused = true)]
async fn start_is_idempotent_per_client_token() {
    let (em, _) = emulator();
    let pipeline_arn = pipeline(&em, "idem", json!({})).await;
    let body = json!({ "imagePipelineArn": pipeline_arn, "clientToken": "start-1" });
    let first = ok(&em, "PUT", "StartImagePipelineExecution", body.clone()).await;
    let image_arn = first["imageBuildVersionArn"].as_str().unwrap().to_owned();
    assert_eq!(image_arn, arn("image/idem-recipe/1.0.0/1"));
    assert_eq!(first["clientToken"], "start-1");
    let second = ok(&em, "PUT", "StartImagePipelineExecution", body.clone()).await;
    assert_eq!(second["imageBuildVersionArn"], image_arn);
    assert_ne!(second["requestId"], first["requestId"]);

    let mut other = body.clone();
    other["tags"] = json!({ "k": "v" });
    send(&em, "PUT", "StartImagePipelineExecution", other)
        .await
        .assert_error(400, "IdempotentParameterMismatchException");
    // A pipeline builds one image at a time.
    let busy = json!({ "imagePipelineArn": pipeline_arn, "clientToken": "start-2" });
    send(&em, "PUT", "StartImagePipelineExecution", busy.clone())
        .await
        .assert_error(400, "ResourceInUseException");

    let images = ok(
        &em,
        "POST",
        "ListImagePipelineImages",
        json!({ "imagePipelineArn": pipeline_arn }),
    )
    .await;
    assert_eq!(images["imageSummaryList"].as_array().unwrap().len(), 1);
    wait_for(&em, &image_arn, "AVAILABLE").await;
    // The refused start left no answer behind: its token works now.
    let next = ok(&em, "PUT", "StartImagePipelineExecution", busy).await;
    assert_eq!(next["imageBuildVersionArn"], arn("image/idem-recipe/1.0.0/2"));
}

#[tokio::test(start_paused = true)]
async fn build_reaches_available_with_amis_and_events() {
    let (em, backend) = emulator();
    let pipeline_arn = pipeline(&em, "happy", json!({})).await;
    let started = tokio::time::Instant::now();
    let image_arn = start(&em, &pipeline_arn).await;
    assert_eq!(image(&em, &image_arn).await["state"]["status"], "PENDING");
    let done = wait_for(&em, &image_arn, "AVAILABLE").await;
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(800) && elapsed < Duration::from_millis(1000),
        "{elapsed:?}"
    );

    let calls = backend.calls();
    let Call::Create(req) = &calls[0] else {
        panic!("{calls:?}")
    };
    assert_eq!(
        (req.region.as_str(), req.parent_image_id.as_str()),
        (REGION, PARENT_AMI)
    );
    assert!(
        req.name.starts_with("bakery-1-") && !req.name.contains("{{"),
        "{}",
        req.name
    );
    assert_eq!(req.description.as_deref(), Some("Baked"));
    assert_eq!(req.tags.get("Team").map(String::as_str), Some("platform"));
    assert_eq!(req.tags.get("Stage").map(String::as_str), Some("candidate"));
    assert_eq!(req.tags.get("Ec2ImageBuilderArn"), Some(&image_arn));
    let amis = done["outputResources"]["amis"].as_array().unwrap();
    let build_ami = amis[0]["image"].as_str().unwrap();
    assert_eq!(
        calls[1],
        Call::Copy {
            source_region: REGION.into(),
            source_image_id: build_ami.into(),
            dest_region: "eu-west-1".into(),
            name: "bakery-eu-1".into(),
        }
    );
    assert_eq!(calls.len(), 2);
    assert_eq!(
        amis[0],
        json!({ "region": REGION, "image": build_ami, "name": req.name, "description": "Baked", "accountId": ACCOUNT })
    );
    assert_eq!(amis[1]["region"], "eu-west-1");
    assert!(amis[1]["image"].as_str().unwrap().len() == "ami-".len() + 17);
    assert_eq!(done["sourcePipelineArn"], pipeline_arn);
    assert_eq!(done["imageRecipe"]["parentImage"], PARENT_AMI);

    let expected = chain(&["PENDING", "BUILDING", "TESTING", "DISTRIBUTING", "AVAILABLE"]);
    assert_eq!(transitions(&backend, &image_arn).await, expected);
    for event in backend.events() {
        assert_eq!(event["version"], "0");
        assert_eq!(event["source"], "aws.imagebuilder");
        assert_eq!(event["detail-type"], "EC2 Image Builder Image State Change");
        assert_eq!((&event["account"], &event["region"]), (&json!(ACCOUNT), &json!(REGION)));
        assert_eq!(event["resources"], json!([image_arn]));
        assert_eq!(event["id"].as_str().unwrap().len(), 36);
        let time = event["time"].as_str().unwrap();
        assert!(
            time.ends_with('Z') && chrono::DateTime::parse_from_rfc3339(time).is_ok(),
            "{time}"
        );
    }

    let p = query(&em, "GET", "GetImagePipeline", "imagePipelineArn", &pipeline_arn)
        .await
        .body;
    assert_eq!(p["imagePipeline"]["lastRunStatus"], "AVAILABLE");
    assert!(p["imagePipeline"]["dateLastRun"].is_string());
}

#[tokio::test(start_paused = true)]
async fn failure_in_testing_carries_the_reason() {
    let (em, backend) = emulator();
    let pipeline_arn = pipeline(&em, "flaky", json!({})).await;
    em.fail_next_build(FailPhase::Testing, "reboot test failed".into());
    let image_arn = start(&em, &pipeline_arn).await;
    let failed = wait_for(&em, &image_arn, "FAILED").await;
    assert_eq!(failed["state"]["reason"], "reboot test failed");
    // The image was made before the tests ran: it stays, in the build region only.
    assert_eq!(backend.calls().len(), 1, "{:?}", backend.calls());
    assert_eq!(failed["outputResources"]["amis"].as_array().unwrap().len(), 1);
    assert_eq!(
        transitions(&backend, &image_arn).await,
        chain(&["PENDING", "BUILDING", "TESTING", "FAILED"])
    );
    let last = backend.events().pop().unwrap();
    assert_eq!(
        last["detail"]["state"],
        json!({ "status": "FAILED", "reason": "reboot test failed" })
    );

    // The knob was for one build.
    let next = start(&em, &pipeline_arn).await;
    wait_for(&em, &next, "AVAILABLE").await;
}

#[tokio::test(start_paused = true)]
async fn without_tests_there_is_no_testing_phase() {
    let (em, backend) = emulator();
    let pipeline_arn = pipeline(
        &em,
        "untested",
        json!({ "imageTestsConfiguration": { "imageTestsEnabled": false } }),
    )
    .await;
    em.fail_next_build(FailPhase::Building, "component update-linux failed".into());
    let failed = start(&em, &pipeline_arn).await;
    assert_eq!(
        wait_for(&em, &failed, "FAILED").await["state"]["reason"],
        "component update-linux failed"
    );
    assert_eq!(
        transitions(&backend, &failed).await,
        chain(&["PENDING", "BUILDING", "FAILED"])
    );

    let built = start(&em, &pipeline_arn).await;
    wait_for(&em, &built, "AVAILABLE").await;
    assert_eq!(
        transitions(&backend, &built).await,
        chain(&["PENDING", "BUILDING", "DISTRIBUTING", "AVAILABLE"])
    );
}

#[tokio::test(start_paused = true)]
async fn cancel_stops_the_build() {
    let (em, backend) = emulator();
    let pipeline_arn = pipeline(&em, "cancelled", json!({})).await;
    let image_arn = start(&em, &pipeline_arn).await;
    wait_for(&em, &image_arn, "BUILDING").await;
    let body = json!({ "imageBuildVersionArn": image_arn, "clientToken": token() });
    assert_eq!(
        ok(&em, "PUT", "CancelImageCreation", body).await["imageBuildVersionArn"],
        image_arn
    );
    assert_eq!(image(&em, &image_arn).await["state"]["status"], "CANCELLED");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(image(&em, &image_arn).await["state"]["status"], "CANCELLED");
    assert!(backend.calls().is_empty());
    assert_eq!(
        transitions(&backend, &image_arn).await,
        chain(&["PENDING", "BUILDING", "CANCELLED"])
    );

    let body = json!({ "imageBuildVersionArn": image_arn, "clientToken": token() });
    send(&em, "PUT", "CancelImageCreation", body)
        .await
        .assert_error(400, "InvalidRequestException");
    start(&em, &pipeline_arn).await;
}

#[tokio::test(start_paused = true)]
async fn dropped_events_are_never_sent() {
    let (em, backend) = emulator();
    let pipeline_arn = pipeline(&em, "lossy", json!({})).await;
    em.drop_next_state_change_events(2);
    let image_arn = start(&em, &pipeline_arn).await;
    wait_for(&em, &image_arn, "AVAILABLE").await;
    let statuses: Vec<String> = transitions(&backend, &image_arn)
        .await
        .into_iter()
        .map(|(_, s)| s)
        .collect();
    assert_eq!(statuses, ["TESTING", "DISTRIBUTING", "AVAILABLE"]);
}

#[tokio::test(start_paused = true)]
async fn phase_durations_can_change() {
    let (em, _) = emulator();
    let pipeline_arn = pipeline(&em, "quick", json!({})).await;
    let d = Duration::from_secs(2);
    em.set_phase_durations(PhaseDurations {
        pending: d,
        building: d,
        testing: d,
        distributing: d,
    });
    let started = tokio::time::Instant::now();
    let image_arn = start(&em, &pipeline_arn).await;
    wait_for(&em, &image_arn, "BUILDING").await;
    assert!(started.elapsed() >= d);
}

#[tokio::test(start_paused = true)]
async fn scan_findings_come_from_the_knob() {
    let (em, _) = emulator();
    let scanned = pipeline(
        &em,
        "scanned",
        json!({ "imageScanningConfiguration": { "imageScanningEnabled": true } }),
    )
    .await;
    let unscanned = pipeline(&em, "unscanned", json!({})).await;
    let counts = FindingCounts {
        critical: 1,
        high: 2,
        medium: 3,
        low: 4,
        informational: 0,
        untriaged: 1,
    };
    em.set_next_scan_findings(counts);
    let image_arn = start(&em, &scanned).await;
    let other_arn = start(&em, &unscanned).await;
    assert_eq!(
        wait_for(&em, &image_arn, "AVAILABLE").await["scanState"]["status"],
        "COMPLETED"
    );
    wait_for(&em, &other_arn, "AVAILABLE").await;

    let by_image = |extra: Value| {
        let mut body = json!({ "filters": [{ "name": "imageBuildVersionArn", "values": [image_arn] }] });
        if let (Value::Object(b), Value::Object(e)) = (&mut body, extra) {
            b.extend(e);
        }
        body
    };
    let all = ok(&em, "POST", "ListImageScanFindings", by_image(json!({}))).await;
    let findings = all["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 11);
    assert!(all.get("nextToken").is_none());
    assert_eq!(findings[0]["imagePipelineArn"], scanned);
    assert_eq!(findings[0]["severity"], "CRITICAL");
    assert!(findings[0]["firstObservedAt"].is_f64());
    let first_page = ok(
        &em,
        "POST",
        "ListImageScanFindings",
        by_image(json!({ "maxResults": 5 })),
    )
    .await;
    assert_eq!(
        (
            first_page["findings"].as_array().unwrap().len(),
            &first_page["nextToken"]
        ),
        (5, &json!("5"))
    );
    let last_page = ok(
        &em,
        "POST",
        "ListImageScanFindings",
        by_image(json!({ "maxResults": 10, "nextToken": "5" })),
    )
    .await;
    assert_eq!(last_page["findings"].as_array().unwrap().len(), 6);

    let high = json!({ "filters": [{ "name": "severity", "values": ["HIGH"] }] });
    let high = ok(&em, "POST", "ListImageScanFindings", high).await;
    assert_eq!(high["findings"].as_array().unwrap().len(), 2);
    let id = &findings[0]["packageVulnerabilityDetails"]["vulnerabilityId"];
    let by_id = json!({ "filters": [{ "name": "vulnerabilityId", "values": [id] }] });
    assert_eq!(
        ok(&em, "POST", "ListImageScanFindings", by_id).await["findings"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let two = json!({ "filters": [{ "name": "severity", "values": ["HIGH", "LOW"] }] });
    send(&em, "POST", "ListImageScanFindings", two)
        .await
        .assert_error(400, "InvalidRequestException");

    let counts = json!({ "all": 11, "critical": 1, "high": 2, "medium": 3 });
    let account = ok(&em, "POST", "ListImageScanFindingAggregations", json!({})).await;
    assert_eq!(account["aggregationType"], "accountId");
    assert_eq!(
        account["responses"],
        json!([{ "accountAggregation": { "accountId": ACCOUNT, "severityCounts": counts } }])
    );
    let filter = json!({ "filter": { "name": "imageBuildVersionArn", "values": [image_arn, other_arn] } });
    let per_image = ok(&em, "POST", "ListImageScanFindingAggregations", filter).await;
    assert_eq!(per_image["aggregationType"], "imageBuildVersionArn");
    assert_eq!(
        per_image["responses"],
        json!([{ "imageAggregation": { "imageBuildVersionArn": image_arn, "severityCounts": counts } }])
    );
    let filter = json!({ "filter": { "name": "imagePipelineArn", "values": [scanned] } });
    let per_pipeline = ok(&em, "POST", "ListImageScanFindingAggregations", filter).await;
    assert_eq!(
        per_pipeline["responses"][0]["imagePipelineAggregation"]["severityCounts"],
        counts
    );
    let filter = json!({ "filter": { "name": "vulnerabilityId", "values": [id] } });
    let per_id = ok(&em, "POST", "ListImageScanFindingAggregations", filter).await;
    let one_critical = json!({ "all": 1, "critical": 1, "high": 0, "medium": 0 });
    assert_eq!(
        per_id["responses"][0]["vulnerabilityIdAggregation"]["severityCounts"],
        one_critical
    );
    let filter = json!({ "filter": { "name": "severity", "values": ["HIGH"] } });
    send(&em, "POST", "ListImageScanFindingAggregations", filter)
        .await
        .assert_error(400, "InvalidRequestException");
}

#[tokio::test(start_paused = true)]
async fn update_replaces_every_member() {
    let (em, _) = emulator();
    let extra = json!({
        "description": "nightly", "status": "DISABLED",
        "schedule": { "scheduleExpression": "cron(0 0 * * ? *)" },
        "imageTestsConfiguration": { "imageTestsEnabled": false },
        "tags": { "owner": "platform" },
    });
    let pipeline_arn = pipeline(&em, "updated", extra).await;
    let before = query(&em, "GET", "GetImagePipeline", "imagePipelineArn", &pipeline_arn)
        .await
        .body["imagePipeline"]
        .clone();
    assert_eq!(
        before["imageTestsConfiguration"],
        json!({ "imageTestsEnabled": false, "timeoutMinutes": 720 })
    );

    let update = json!({
        "imagePipelineArn": pipeline_arn,
        "imageRecipeArn": before["imageRecipeArn"],
        "infrastructureConfigurationArn": before["infrastructureConfigurationArn"],
        "clientToken": token(),
    });
    assert_eq!(
        ok(&em, "PUT", "UpdateImagePipeline", update.clone()).await["imagePipelineArn"],
        pipeline_arn
    );
    let after = query(&em, "GET", "GetImagePipeline", "imagePipelineArn", &pipeline_arn)
        .await
        .body["imagePipeline"]
        .clone();
    for cleared in ["description", "schedule", "distributionConfigurationArn"] {
        assert!(after.get(cleared).is_none(), "{cleared} survived: {after}");
    }
    assert_eq!(after["imageTestsConfiguration"]["imageTestsEnabled"], true);
    assert_eq!(after["status"], "ENABLED");
    assert_eq!(
        (&after["name"], &after["arn"], &after["dateCreated"]),
        (&before["name"], &before["arn"], &before["dateCreated"])
    );
    assert_eq!(after["tags"], json!({ "owner": "platform" }));
    assert!(after["dateUpdated"].is_string());

    // While a build runs the pipeline can be neither changed nor deleted.
    let image_arn = start(&em, &pipeline_arn).await;
    let mut again = update.clone();
    again["clientToken"] = token().into();
    send(&em, "PUT", "UpdateImagePipeline", again)
        .await
        .assert_error(400, "ResourceInUseException");
    let delete = query(&em, "DELETE", "DeleteImagePipeline", "imagePipelineArn", &pipeline_arn).await;
    delete.assert_error(400, "ResourceDependencyException");
    wait_for(&em, &image_arn, "AVAILABLE").await;
    let deleted = query(&em, "DELETE", "DeleteImagePipeline", "imagePipelineArn", &pipeline_arn).await;
    assert_eq!(
        (deleted.status, &deleted.body["imagePipelineArn"]),
        (200, &json!(pipeline_arn))
    );
    query(&em, "GET", "GetImagePipeline", "imagePipelineArn", &pipeline_arn)
        .await
        .assert_error(404, "ResourceNotFoundException");
}

#[tokio::test(start_paused = true)]
async fn parent_image_can_be_an_image_built_here() {
    let (em, backend) = emulator();
    let base_pipeline = pipeline(&em, "base", json!({})).await;
    let base = start(&em, &base_pipeline).await;
    let base_ami = wait_for(&em, &base, "AVAILABLE").await["outputResources"]["amis"][0]["image"].clone();

    // A version ARN names the latest build.
    let app_recipe = recipe(&em, "app", &arn("image/base-recipe/1.0.0")).await;
    let app_pipeline = pipeline_for(&em, "app", &app_recipe, json!({})).await;
    let app = start(&em, &app_pipeline).await;
    wait_for(&em, &app, "AVAILABLE").await;
    let creates: Vec<String> = backend
        .calls()
        .into_iter()
        .filter_map(|c| match c {
            Call::Create(req) => Some(req.parent_image_id),
            Call::Copy { .. } => None,
        })
        .collect();
    assert_eq!(creates, [PARENT_AMI.to_owned(), base_ami.as_str().unwrap().to_owned()]);

    let stray_recipe = recipe(
        &em,
        "stray",
        "arn:aws:imagebuilder:us-east-1:aws:image/amazon-linux-2-x86/x.x.x",
    )
    .await;
    let stray_pipeline = pipeline_for(&em, "stray", &stray_recipe, json!({})).await;
    let stray = start(&em, &stray_pipeline).await;
    assert_eq!(
        wait_for(&em, &stray, "FAILED").await["state"]["reason"],
        "parent image not found"
    );
}

#[tokio::test(start_paused = true)]
async fn backend_errors_fail_the_build() {
    let (em, backend) = emulator();
    *backend.fail_with.lock().unwrap() = Some("InvalidAMIID.NotFound".into());
    let pipeline_arn = pipeline(&em, "broken", json!({})).await;
    let image_arn = start(&em, &pipeline_arn).await;
    let failed = wait_for(&em, &image_arn, "FAILED").await;
    let reason = failed["state"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("InvalidAMIID.NotFound") && reason.contains(REGION),
        "{reason}"
    );
    assert_eq!(failed["outputResources"]["amis"], json!([]));
}

#[tokio::test(start_paused = true)]
async fn tags_round_trip() {
    let (em, _) = emulator();
    let pipeline_arn = pipeline(&em, "tagged", json!({ "tags": { "a": "1" } })).await;
    let path = format!("/tags/{}", encode(&pipeline_arn));
    let tagged = call(&em, "POST", &path, "", br#"{"tags":{"b":"2","c":"3"}}"#).await;
    assert_eq!((tagged.status, &tagged.body), (200, &json!({})));
    call(&em, "DELETE", &path, "tagKeys=a&tagKeys=c", b"").await;
    assert_eq!(
        call(&em, "GET", &path, "", b"").await.body,
        json!({ "tags": { "b": "2" } })
    );
}

#[tokio::test(start_paused = true)]
async fn unknown_and_malformed_requests() {
    let (em, _) = emulator();
    let missing = arn("image-pipeline/nope");
    query(&em, "GET", "GetImagePipeline", "imagePipelineArn", &missing)
        .await
        .assert_error(404, "ResourceNotFoundException");
    query(
        &em,
        "GET",
        "GetImage",
        "imageBuildVersionArn",
        &arn("image/nope/1.0.0/1"),
    )
    .await
    .assert_error(404, "ResourceNotFoundException");
    let start = json!({ "imagePipelineArn": missing, "clientToken": token() });
    send(&em, "PUT", "StartImagePipelineExecution", start)
        .await
        .assert_error(404, "ResourceNotFoundException");
    call(&em, "GET", &format!("/tags/{}", encode(&missing)), "", b"")
        .await
        .assert_error(404, "ResourceNotFoundException");
    call(&em, "GET", "/tags/not-an-arn", "", b"")
        .await
        .assert_error(400, "InvalidParameterException");
    query(&em, "GET", "GetImagePipeline", "imagePipelineArn", "pipeline")
        .await
        .assert_error(400, "InvalidRequestException");

    call(&em, "PUT", "/CreateImageRecipe", "", b"{\"name\":")
        .await
        .assert_error(400, "SerializationException");
    call(&em, "PUT", "/CreateImageRecipe", "", b"[1]")
        .await
        .assert_error(400, "SerializationException");
    let wrong_type =
        json!({ "name": 7, "semanticVersion": "1.0.0", "parentImage": PARENT_AMI, "clientToken": token() });
    send(&em, "PUT", "CreateImageRecipe", wrong_type)
        .await
        .assert_error(400, "SerializationException");
    let no_token = json!({ "name": "abc", "semanticVersion": "1.0.0", "parentImage": PARENT_AMI });
    send(&em, "PUT", "CreateImageRecipe", no_token)
        .await
        .assert_error(400, "InvalidRequestException");
    let bad_name =
        json!({ "name": " x", "semanticVersion": "1.0.0", "parentImage": PARENT_AMI, "clientToken": token() });
    send(&em, "PUT", "CreateImageRecipe", bad_name)
        .await
        .assert_error(400, "InvalidRequestException");
    send(&em, "POST", "ListImagePipelines", json!({ "maxResults": 26 }))
        .await
        .assert_error(400, "InvalidRequestException");
    let bad_token = json!({ "nextToken": "zzz" });
    send(&em, "POST", "ListImagePipelines", bad_token)
        .await
        .assert_error(400, "InvalidPaginationTokenException");
    let bad_filter = json!({ "filters": [{ "name": "colour", "values": ["red"] }] });
    send(&em, "POST", "ListImagePipelines", bad_filter)
        .await
        .assert_error(400, "InvalidRequestException");
    call(&em, "GET", "/CreateImageRecipe", "", b"")
        .await
        .assert_error(404, "UnknownOperationException");
}
