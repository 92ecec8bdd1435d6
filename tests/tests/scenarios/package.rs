//! What `make package` leaves is what would be uploaded: every function of
//! `.aws-sam/build/template.yaml` has its `bootstrap`, which starts against a Lambda Runtime API
//! with the environment the template gives it, takes an event and answers it as the function
//! should. The events need no AWS (the endpoint is a closed local port). Left out of a plain
//! test run by the default filter in `.config/nextest.toml`, since it needs an x86_64
//! `make package` first: `make package-check` runs both.

use gateway::template::Template;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tests::repo;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

const REQUEST_ID: &str = "8f507cfc-0000-4000-8000-000000000001";
const ACCOUNT: &str = "123456789012";
const REGION: &str = "us-east-1";

/// The event each function gets and how it must answer: the trigger ignores a failed AMI (a
/// response), every other function refuses an empty object as a typed error.
fn expectation(logical_id: &str) -> (Value, Answer) {
    match logical_id {
        "TriggerFunction" => {
            let event = std::fs::read(repo().join("events/eventbridge/ami-state-change-failed.json"))
                .expect("the failed AMI event");
            (
                serde_json::from_slice(&event).expect("the event is JSON"),
                Answer::Ignored,
            )
        }
        _ => (json!({}), Answer::Error("InvalidInput")),
    }
}

#[derive(Debug, PartialEq)]
enum Answer {
    /// `/response` with `{"action": "ignore"}`.
    Ignored,
    /// `/error` with this `errorType`.
    Error(&'static str),
}

/// What the function sent back on the Runtime API.
#[derive(Debug)]
enum Sent {
    Response(Value),
    Error(Value),
    InitError(Value),
}

/// One function of the packaged template.
struct Packaged {
    logical_id: String,
    bootstrap: PathBuf,
    environment: BTreeMap<String, String>,
    memory_mb: u64,
    timeout_secs: u64,
}

/// A template value as the function would see it deployed, near enough for it to start: a
/// parameter's default, a resource's logical id, `Sub` with the pseudo parameters of a stack
/// `bakery` in us-east-1.
fn resolve(v: &Value, parameters: &BTreeMap<String, String>) -> String {
    let pseudo = |name: &str| -> String {
        match name {
            "AWS::Region" => REGION.into(),
            "AWS::AccountId" => ACCOUNT.into(),
            "AWS::Partition" => "aws".into(),
            "AWS::StackName" => "bakery".into(),
            other => parameters.get(other).cloned().unwrap_or_else(|| other.into()),
        }
    };
    if let Some(s) = v.as_str() {
        return s.to_owned();
    }
    if let Some(name) = v.get("Ref").and_then(Value::as_str) {
        return pseudo(name);
    }
    if let Some(text) = v.get("Fn::Sub").and_then(Value::as_str) {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after.find('}').unwrap_or(after.len());
            out.push_str(&pseudo(&after[..end]));
            rest = after.get(end + 1..).unwrap_or("");
        }
        out.push_str(rest);
        return out;
    }
    v.to_string()
}

fn packaged(build_dir: &Path) -> Vec<Packaged> {
    let path = build_dir.join("template.yaml");
    let yaml = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run `make package ARCH=x86_64` first)", path.display()));
    let t = Template::parse(&yaml).expect("the packaged template parses");
    let parameters = t.parameters(&BTreeMap::new());
    let globals = &t.root["Globals"]["Function"];
    let setting = |f: &Value, key: &str| f.get(key).filter(|v| !v.is_null()).unwrap_or(&globals[key]).clone();
    t.of_type("AWS::Serverless::Function")
        .map(|(id, r)| {
            let f = &r["Properties"];
            let code = setting(f, "CodeUri");
            let code = code
                .as_str()
                .unwrap_or_else(|| panic!("{id}: CodeUri {code} is not a path"));
            let handler = setting(f, "Handler");
            assert_eq!(handler, "bootstrap", "{id}: a provided runtime runs `bootstrap`");
            let mut environment = BTreeMap::new();
            for vars in [&globals["Environment"]["Variables"], &f["Environment"]["Variables"]] {
                for (k, v) in vars.as_object().into_iter().flatten() {
                    environment.insert(k.clone(), resolve(v, &parameters));
                }
            }
            Packaged {
                logical_id: id.clone(),
                bootstrap: build_dir.join(code).join("bootstrap"),
                environment,
                memory_mb: setting(f, "MemorySize").as_u64().unwrap_or(128),
                timeout_secs: setting(f, "Timeout").as_u64().unwrap_or(3),
            }
        })
        .collect()
}

/// The ELF machine of a binary, refusing anything that is not an executable this host runs.
fn check_binary(path: &Path) -> u64 {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        meta.permissions().mode() & 0o111 != 0,
        "{} is not executable",
        path.display()
    );
    let head = std::fs::read(path).expect("bootstrap reads");
    assert_eq!(
        head.get(..4),
        Some(&b"\x7fELF"[..]),
        "{} is not an ELF binary",
        path.display()
    );
    // e_machine: 62 is x86_64, 183 aarch64.
    let machine = u16::from_le_bytes([head[18], head[19]]);
    assert_eq!(
        machine,
        62,
        "{} is built for ELF machine {machine}, not x86_64: this machine runs only `make package ARCH=x86_64`",
        path.display()
    );
    meta.len()
}

/// The size of an ELF64 (little-endian) file's section by name, from its section headers.
fn section_size(elf: &[u8], name: &str) -> Option<u64> {
    let u16_at = |o: usize| Some(u16::from_le_bytes(elf.get(o..o + 2)?.try_into().ok()?) as usize);
    let u32_at = |o: usize| Some(u32::from_le_bytes(elf.get(o..o + 4)?.try_into().ok()?) as usize);
    let u64_at = |o: usize| Some(u64::from_le_bytes(elf.get(o..o + 8)?.try_into().ok()?));
    let (shoff, shentsize, shnum, shstrndx) = (u64_at(0x28)? as usize, u16_at(0x3a)?, u16_at(0x3c)?, u16_at(0x3e)?);
    let header = |i: usize| shoff + i * shentsize;
    let strtab = u64_at(header(shstrndx) + 24)? as usize;
    (0..shnum).find_map(|i| {
        let start = strtab + u32_at(header(i))?;
        let end = start + elf.get(start..)?.iter().position(|&b| b == 0)?;
        (elf.get(start..end)? == name.as_bytes()).then(|| u64_at(header(i) + 32))?
    })
}

/// The section functions/startup.ld gathers each function's start-up code in (BENCHMARKS.md):
/// there, and more than a few pages, in what `sam build` made.
const STARTUP_SECTION: &str = ".text.bakery_startup";

type Slot<T> = Arc<Mutex<Option<T>>>;

/// A Lambda Runtime API for one invocation: `/next` hands out `event` once (a second `/next`,
/// the runtime's wait for more work, is held open), and the answer goes to `answer`.
async fn runtime_api(event: Value, timeout_secs: u64, arn: String, answer: oneshot::Sender<Sent>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
    let addr = listener.local_addr().expect("bound").to_string();
    let event: Slot<Value> = Arc::new(Mutex::new(Some(event)));
    let answer: Slot<oneshot::Sender<Sent>> = Arc::new(Mutex::new(Some(answer)));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (event, answer, arn) = (event.clone(), answer.clone(), arn.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let (event, answer, arn) = (event.clone(), answer.clone(), arn.clone());
                    async move {
                        let path = req.uri().path().to_owned();
                        let body = req
                            .into_body()
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        let parsed = serde_json::from_slice(&body).unwrap_or(Value::Null);
                        let sent = match path.strip_prefix("/2018-06-01/runtime/") {
                            Some("invocation/next") => {
                                let next = event.lock().unwrap().take();
                                let Some(event) = next else {
                                    return std::future::pending().await;
                                };
                                let deadline = now_millis() + timeout_secs * 1000;
                                return Ok::<_, std::convert::Infallible>(
                                    Response::builder()
                                        .header("Lambda-Runtime-Aws-Request-Id", REQUEST_ID)
                                        .header("Lambda-Runtime-Deadline-Ms", deadline.to_string())
                                        .header("Lambda-Runtime-Invoked-Function-Arn", arn)
                                        .header("Content-Type", "application/json")
                                        .body(Full::new(Bytes::from(event.to_string())))
                                        .unwrap(),
                                );
                            }
                            Some("init/error") => Sent::InitError(parsed),
                            Some(p) if p == format!("invocation/{REQUEST_ID}/response") => Sent::Response(parsed),
                            Some(p) if p == format!("invocation/{REQUEST_ID}/error") => Sent::Error(parsed),
                            _ => Sent::Error(json!({"unexpected path": path})),
                        };
                        if let Some(tx) = answer.lock().unwrap().take() {
                            let _ = tx.send(sent);
                        }
                        Ok(Response::builder()
                            .status(202)
                            .body(Full::new(Bytes::from_static(b"{\"status\":\"OK\"}")))
                            .unwrap())
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

/// Starts the bootstrap as Lambda would (env cleared, the variables Lambda sets, the template's
/// own), sends it its event and returns what it answered.
async fn invoke(f: &Packaged, event: Value) -> Sent {
    let name = format!("bakery-{}", f.logical_id);
    let arn = format!("arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}");
    let (tx, rx) = oneshot::channel();
    let api = runtime_api(event, f.timeout_secs, arn, tx).await;
    let mut child = tokio::process::Command::new(&f.bootstrap)
        .env_clear()
        .envs(&f.environment)
        .envs([
            ("AWS_LAMBDA_RUNTIME_API", api.as_str()),
            ("AWS_LAMBDA_FUNCTION_NAME", name.as_str()),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", &f.memory_mb.to_string()),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
            ("AWS_LAMBDA_LOG_FORMAT", "JSON"),
            ("AWS_REGION", REGION),
            ("AWS_DEFAULT_REGION", REGION),
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_SESSION_TOKEN", "testing"),
            // A closed local port: nothing the function might call can reach AWS.
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:9"),
            ("AWS_CONFIG_FILE", "/dev/null"),
            ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("_HANDLER", "bootstrap"),
        ])
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", f.bootstrap.display()));
    let sent = tokio::select! {
        sent = rx => sent.expect("the Runtime API keeps its answer slot"),
        status = child.wait() => panic!("{}: exited with {status:?} without answering", f.logical_id),
        _ = tokio::time::sleep(Duration::from_secs(30)) => panic!("{}: no answer within 30 s", f.logical_id),
    };
    let _ = child.kill().await;
    sent
}

#[tokio::test]
async fn every_packaged_bootstrap_starts_and_answers() {
    let build_dir = std::env::var_os("BAKERY_PACKAGE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".aws-sam/build"));
    let functions = packaged(&build_dir);
    assert!(!functions.is_empty(), "no function in {}", build_dir.display());
    for f in &functions {
        let size = check_binary(&f.bootstrap);
        let startup = section_size(&std::fs::read(&f.bootstrap).expect("bootstrap reads"), STARTUP_SECTION);
        assert!(
            startup.is_some_and(|n| n >= 64 * 1024),
            "{}: {STARTUP_SECTION} is {startup:?} bytes: not linked with functions/startup.ld",
            f.logical_id
        );
        let (event, expected) = expectation(&f.logical_id);
        let started = Instant::now();
        let sent = invoke(f, event).await;
        let took = started.elapsed();
        match (&expected, &sent) {
            (Answer::Ignored, Sent::Response(body)) => assert_eq!(body["action"], "ignore", "{}: {body}", f.logical_id),
            (Answer::Error(kind), Sent::Error(body)) => {
                assert_eq!(body["errorType"], *kind, "{}: {body}", f.logical_id)
            }
            (_, Sent::InitError(body)) => panic!("{}: failed to start: {body}", f.logical_id),
            _ => panic!("{}: expected {expected:?}, the function sent {sent:?}", f.logical_id),
        }
        println!(
            "{:<24} {:>10} bytes ({:>7} of start-up code first)  answered in {:>4} ms  {}",
            f.logical_id,
            size,
            startup.unwrap_or_default(),
            took.as_millis(),
            f.bootstrap.display()
        );
    }
}
