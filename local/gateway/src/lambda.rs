//! Lambda, locally: the Invoke API runs the real function binaries through the Lambda Runtime
//! API. Each function keeps warm processes (one invocation at a time each, as a Lambda
//! execution environment does), started on demand up to a cap, each with its own Runtime API
//! listener so that a crash is pinned on the invocation it was running.

use crate::http::{full, json_response, Body};
use crate::template::Function;
use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, Mutex as AsyncMutex};

/// Warm processes per function at most; more concurrent invocations queue.
const MAX_PROCESSES: usize = 6;

/// What an invocation ended with.
#[derive(Debug, Clone)]
pub enum Outcome {
    Success(Bytes),
    /// `{"errorType": ..., "errorMessage": ...}` as the function (or the sandbox) reported it.
    FunctionError(Bytes),
}

impl Outcome {
    fn sandbox(error_type: &str, message: String) -> Self {
        Outcome::FunctionError(Bytes::from(
            serde_json::json!({"errorType": error_type, "errorMessage": message}).to_string(),
        ))
    }
}

struct Invocation {
    request_id: String,
    /// The X-Ray trace root it runs under: the runtime puts it in `_X_AMZN_TRACE_ID`, and the
    /// SDK sends it with every AWS call the invocation makes (`X-Amzn-Trace-Id`).
    trace_root: String,
    payload: Bytes,
    respond: oneshot::Sender<Outcome>,
}

/// One execution environment: its process and the invocation it is running.
struct Process {
    pid: u32,
    current: Mutex<Option<Invocation>>,
    /// Set when the process has exited.
    exited: tokio::sync::watch::Sender<bool>,
}

impl Process {
    /// Takes the invocation it is running, if that is `request_id`.
    fn take(&self, request_id: &str) -> Option<Invocation> {
        let mut c = self.current.lock().ok()?;
        c.as_ref().filter(|i| i.request_id == request_id)?;
        c.take()
    }
}

/// The environment every function process gets besides its template variables.
#[derive(Debug, Clone)]
pub struct Host {
    pub binaries: PathBuf,
    pub logs: PathBuf,
    pub region: String,
    pub account: String,
    /// The gateway's URL: functions reach every AWS service through it.
    pub endpoint: String,
    /// Each function's credentials (access key, secret, session token): a session of its role.
    pub credentials: HashMap<String, (String, String, String)>,
}

struct FunctionRuntime {
    spec: Function,
    host: Host,
    queue_tx: mpsc::UnboundedSender<Invocation>,
    queue_rx: Arc<AsyncMutex<mpsc::UnboundedReceiver<Invocation>>>,
    /// Processes started (alive or starting).
    processes: AtomicUsize,
    /// Processes running an invocation. A process that has just answered counts as free at
    /// once: it is on its way back to `/next`, and the next invocation waits for it.
    busy: AtomicUsize,
    /// Invocations queued and not yet taken.
    queued: AtomicUsize,
    /// Live processes.
    live: Mutex<Vec<Arc<Process>>>,
}

pub struct Lambdas {
    functions: HashMap<String, Arc<FunctionRuntime>>,
    children: Arc<Mutex<Vec<u32>>>,
}

impl Lambdas {
    pub fn new(specs: Vec<Function>, host: Host) -> Self {
        let functions = specs
            .into_iter()
            .map(|spec| {
                let (queue_tx, queue_rx) = mpsc::unbounded_channel();
                let rt = FunctionRuntime {
                    spec: spec.clone(),
                    host: host.clone(),
                    queue_tx,
                    queue_rx: Arc::new(AsyncMutex::new(queue_rx)),
                    processes: AtomicUsize::new(0),
                    busy: AtomicUsize::new(0),
                    queued: AtomicUsize::new(0),
                    live: Mutex::new(Vec::new()),
                };
                (spec.name, Arc::new(rt))
            })
            .collect();
        Self {
            functions,
            children: Arc::new(Mutex::new(Vec::new())),
        }
    }

    pub fn names(&self) -> impl Iterator<Item = &String> {
        self.functions.keys()
    }

    pub fn spec(&self, name: &str) -> Option<&Function> {
        self.functions.get(name).map(|f| &f.spec)
    }

    /// Process ids of every function process started, for shutdown.
    pub fn child_pids(&self) -> Vec<u32> {
        self.children.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// Runs one invocation to its end. `None` when no such function exists. The function's
    /// Timeout counts from the moment its runtime takes the invocation (`/next`), as Lambda
    /// counts it; waiting for a free execution environment does not count.
    pub async fn invoke(&self, name: &str, payload: Bytes) -> Option<Outcome> {
        let f = self.functions.get(name)?.clone();
        let (respond, outcome) = oneshot::channel();
        let request_id = uuid::Uuid::new_v4().to_string();
        let trace_root = format!(
            "1-{:08x}-{}",
            chrono::Utc::now().timestamp(),
            &request_id.replace('-', "")[..24]
        );
        f.queued.fetch_add(1, Ordering::SeqCst);
        if f.queue_tx
            .send(Invocation {
                request_id,
                trace_root,
                payload,
                respond,
            })
            .is_err()
        {
            return Some(Outcome::sandbox(
                "ServiceException",
                "the function's queue is closed".into(),
            ));
        }
        f.scale(&self.children).await;
        Some(
            outcome.await.unwrap_or_else(|_| {
                Outcome::sandbox("Runtime.ExitError", "the runtime exited without answering".into())
            }),
        )
    }

    /// The function running the invocation whose trace root is `trace_root`.
    pub fn function_of(&self, trace_root: &str) -> Option<String> {
        self.functions
            .iter()
            .find(|(_, f)| f.running(trace_root).is_some())
            .map(|(name, _)| name.clone())
    }

    /// Kills the execution environment running the invocation traced `trace_root` (as a crash
    /// of the sandbox would), and waits until it has exited: the invocation ends with
    /// `Runtime.ExitError`. False when no invocation runs under that trace.
    pub async fn kill(&self, trace_root: &str) -> bool {
        let Some(process) = self.functions.values().find_map(|f| f.running(trace_root)) else {
            return false;
        };
        let mut exited = process.exited.subscribe();
        kill(process.pid);
        let _ = exited.wait_for(|gone| *gone).await;
        true
    }
}

/// SIGKILL to a function process this gateway started.
fn kill(pid: u32) {
    // SAFETY: kill(2) on a pid this process started; one that already exited is harmless here.
    unsafe {
        libc::kill(pid as i32, libc::SIGKILL);
    }
}

/// How Lambda reports a runtime that exited: `Runtime exited with error: signal: killed`.
fn exit_reason(status: &std::io::Result<std::process::ExitStatus>) -> String {
    use std::os::unix::process::ExitStatusExt;
    match status {
        Ok(s) => match (s.code(), s.signal()) {
            (Some(code), _) => format!("Runtime exited with error: exit status {code}"),
            (None, Some(libc::SIGKILL)) => "Runtime exited with error: signal: killed".into(),
            (None, Some(sig)) => format!("Runtime exited with error: signal {sig}"),
            (None, None) => "Runtime exited".into(),
        },
        Err(e) => format!("Runtime exited: {e}"),
    }
}

impl FunctionRuntime {
    /// The live process running the invocation traced `trace_root`.
    fn running(&self, trace_root: &str) -> Option<Arc<Process>> {
        let live = self.live.lock().ok()?;
        live.iter()
            .find(|p| {
                p.current
                    .lock()
                    .is_ok_and(|c| c.as_ref().is_some_and(|i| i.trace_root == trace_root))
            })
            .cloned()
    }

    /// Starts another process when every live one is busy and the cap allows.
    async fn scale(self: &Arc<Self>, children: &Arc<Mutex<Vec<u32>>>) {
        let processes = self.processes.load(Ordering::SeqCst);
        let free = processes.saturating_sub(self.busy.load(Ordering::SeqCst));
        if self.queued.load(Ordering::SeqCst) > free && processes < MAX_PROCESSES {
            self.processes.fetch_add(1, Ordering::SeqCst);
            if let Err(e) = self.clone().start_process(children.clone()).await {
                self.processes.fetch_sub(1, Ordering::SeqCst);
                tracing::error!(function = %self.spec.name, error = %e, "cannot start the function");
                // Fail what is queued rather than let it wait for the timeout.
                self.fail_queued(|_| Outcome::sandbox("Runtime.InvalidEntrypoint", e.clone()));
            }
        }
    }

    /// Ends every invocation still queued with `outcome`.
    fn fail_queued(&self, outcome: impl Fn(&Invocation) -> Outcome) {
        if let Ok(mut rx) = self.queue_rx.try_lock() {
            while let Ok(inv) = rx.try_recv() {
                self.queued.fetch_sub(1, Ordering::SeqCst);
                let answer = outcome(&inv);
                let _ = inv.respond.send(answer);
            }
        }
    }

    async fn start_process(self: Arc<Self>, children: Arc<Mutex<Vec<u32>>>) -> Result<(), String> {
        let listener = TcpListener::bind("127.0.0.1:0").await.map_err(|e| e.to_string())?;
        let api = listener.local_addr().map_err(|e| e.to_string())?;
        let binary = self.host.binaries.join(&self.spec.binary);
        let log_path = self.host.logs.join(format!("{}.log", self.spec.name));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| format!("{}: {e}", log_path.display()))?;
        let log_err = log.try_clone().map_err(|e| e.to_string())?;
        let mut cmd = tokio::process::Command::new(&binary);
        cmd.env_clear()
            .envs(std::env::vars().filter(|(k, _)| matches!(k.as_str(), "PATH" | "HOME" | "TMPDIR" | "RUST_BACKTRACE")))
            .envs(&self.spec.environment)
            .envs(lambda_env(&self.spec, &self.host, &api.to_string()))
            .stdin(std::process::Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .kill_on_drop(true);
        crate::process::die_with_parent(&mut cmd);
        let mut child = cmd.spawn().map_err(|e| format!("{}: {e}", binary.display()))?;
        let pid = child.id().unwrap_or_default();
        if let Ok(mut c) = children.lock() {
            c.push(pid);
        }
        tracing::info!(function = %self.spec.name, runtime_api = %api, "started function process");

        let process = Arc::new(Process {
            pid,
            current: Mutex::new(None),
            exited: tokio::sync::watch::channel(false).0,
        });
        if let Ok(mut live) = self.live.lock() {
            live.push(process.clone());
        }
        let server = {
            let this = self.clone();
            let process = process.clone();
            tokio::spawn(async move { this.serve_runtime_api(listener, process).await })
        };
        let this = self.clone();
        tokio::spawn(async move {
            let status = child.wait().await;
            server.abort();
            if let Ok(mut live) = this.live.lock() {
                live.retain(|p| !Arc::ptr_eq(p, &process));
            }
            this.processes.fetch_sub(1, Ordering::SeqCst);
            let running = process.current.lock().ok().and_then(|mut c| c.take());
            if running.is_some() {
                this.busy.fetch_sub(1, Ordering::SeqCst);
            }
            tracing::info!(function = %this.spec.name, ?status, "function process exited");
            if let Some(inv) = running {
                let _ = inv.respond.send(Outcome::sandbox(
                    "Runtime.ExitError",
                    format!("RequestId: {} Error: {}", inv.request_id, exit_reason(&status)),
                ));
            } else if this.processes.load(Ordering::SeqCst) == 0 {
                // It died before it asked for work (an init failure) and no other environment
                // is left to take what waits: Lambda fails those invocations with the exit.
                this.fail_queued(|inv| {
                    Outcome::sandbox(
                        "Runtime.ExitError",
                        format!("RequestId: {} Error: {}", inv.request_id, exit_reason(&status)),
                    )
                });
            }
            process.exited.send_replace(true);
        });
        Ok(())
    }

    async fn serve_runtime_api(self: Arc<Self>, listener: TcpListener, process: Arc<Process>) {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let this = self.clone();
            let process = process.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let this = this.clone();
                    let process = process.clone();
                    async move { Ok::<_, std::convert::Infallible>(this.runtime_api(req, &process).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    }

    /// The Runtime API: `/next`, `/{id}/response`, `/{id}/error`, `/init/error`.
    async fn runtime_api(self: &Arc<Self>, req: Request<Incoming>, process: &Arc<Process>) -> Response<Body> {
        let path = req.uri().path().to_owned();
        let Some(rest) = path.strip_prefix("/2018-06-01/runtime/") else {
            return json_response(404, &serde_json::json!({"errorMessage": "not a Runtime API path"}));
        };
        if rest == "invocation/next" {
            return self.next(process).await;
        }
        let body = crate::http::read_body(req).await.unwrap_or_default();
        if rest == "init/error" {
            tracing::error!(function = %self.spec.name, error = %String::from_utf8_lossy(&body), "init error");
            return json_response(202, &serde_json::json!({"status": "OK"}));
        }
        let outcome = match rest.strip_prefix("invocation/").and_then(|r| r.rsplit_once('/')) {
            Some((_, "response")) => Outcome::Success(body),
            Some((_, "error")) => Outcome::FunctionError(body),
            _ => return json_response(404, &serde_json::json!({"errorMessage": "unknown Runtime API path"})),
        };
        if let Some(inv) = process.current.lock().ok().and_then(|mut c| c.take()) {
            self.busy.fetch_sub(1, Ordering::SeqCst);
            let _ = inv.respond.send(outcome);
        }
        json_response(202, &serde_json::json!({"status": "OK"}))
    }

    /// Hands the next invocation to the runtime and starts its clock: when the function's
    /// Timeout passes before it answers, the invocation ends as Lambda ends it
    /// (`Sandbox.Timedout`) and the execution environment is stopped.
    async fn next(self: &Arc<Self>, process: &Arc<Process>) -> Response<Body> {
        let Some(inv) = self.queue_rx.lock().await.recv().await else {
            return json_response(500, &serde_json::json!({"errorMessage": "shutting down"}));
        };
        self.queued.fetch_sub(1, Ordering::SeqCst);
        self.busy.fetch_add(1, Ordering::SeqCst);
        let timeout = Duration::from_secs(self.spec.timeout_secs);
        let deadline = chrono::Utc::now().timestamp_millis() + timeout.as_millis() as i64;
        let arn = format!(
            "arn:aws:lambda:{}:{}:function:{}",
            self.host.region, self.host.account, self.spec.name
        );
        let response = Response::builder()
            .status(200)
            .header("Lambda-Runtime-Aws-Request-Id", &inv.request_id)
            .header("Lambda-Runtime-Deadline-Ms", deadline.to_string())
            .header("Lambda-Runtime-Invoked-Function-Arn", arn)
            .header("Lambda-Runtime-Trace-Id", format!("Root={};Sampled=0", inv.trace_root))
            .header("Content-Type", "application/json")
            .body(full(inv.payload.clone()));
        let request_id = inv.request_id.clone();
        if let Ok(mut c) = process.current.lock() {
            *c = Some(inv);
        }
        let (this, process) = (self.clone(), process.clone());
        tokio::spawn(async move {
            tokio::time::sleep(timeout).await;
            let Some(inv) = process.take(&request_id) else {
                return;
            };
            this.busy.fetch_sub(1, Ordering::SeqCst);
            tracing::warn!(function = %this.spec.name, %request_id, "invocation timed out");
            let _ = inv.respond.send(Outcome::sandbox(
                "Sandbox.Timedout",
                format!(
                    "RequestId: {request_id} Error: Task timed out after {:.2} seconds",
                    timeout.as_secs_f64()
                ),
            ));
            kill(process.pid);
        });
        response.unwrap_or_else(|_| json_response(500, &serde_json::json!({})))
    }
}

/// The variables Lambda sets in every execution environment (the runtime crate panics without some).
fn lambda_env(spec: &Function, host: &Host, runtime_api: &str) -> BTreeMap<String, String> {
    // A function without credentials gets none that work: every call it makes is refused.
    let (key, secret, token) = host
        .credentials
        .get(&spec.name)
        .cloned()
        .unwrap_or_else(|| ("none".into(), "none".into(), "none".into()));
    [
        ("AWS_LAMBDA_RUNTIME_API", runtime_api.to_owned()),
        ("AWS_LAMBDA_FUNCTION_NAME", spec.name.clone()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", spec.memory_mb.to_string()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_owned()),
        ("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{}", spec.name)),
        ("AWS_LAMBDA_LOG_FORMAT", "JSON".to_owned()),
        ("AWS_REGION", host.region.clone()),
        ("AWS_DEFAULT_REGION", host.region.clone()),
        ("AWS_ACCESS_KEY_ID", key),
        ("AWS_SECRET_ACCESS_KEY", secret),
        ("AWS_SESSION_TOKEN", token),
        ("AWS_ENDPOINT_URL", host.endpoint.clone()),
        ("_HANDLER", "bootstrap".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A function whose process exits before it asks for work (a failed init: a missing
    /// environment variable) fails the invocation at once with the exit, as Lambda does,
    /// instead of leaving the caller waiting.
    #[tokio::test]
    async fn a_runtime_that_dies_at_init_fails_the_invocation() {
        let logs = std::env::temp_dir().join(format!("bakery-lambda-test-{}", std::process::id()));
        std::fs::create_dir_all(&logs).unwrap();
        let spec = Function {
            logical_id: "Broken".into(),
            name: "broken".into(),
            binary: "/bin/false".into(),
            timeout_secs: 600,
            memory_mb: 128,
            environment: BTreeMap::new(),
            on_failure: None,
            role_arn: "arn:aws:iam::123456789012:role/broken".into(),
        };
        let host = Host {
            binaries: PathBuf::from("/"),
            logs,
            region: "us-east-1".into(),
            account: "123456789012".into(),
            endpoint: "http://127.0.0.1:9".into(),
            credentials: HashMap::new(),
        };
        let lambdas = Lambdas::new(vec![spec], host);
        let outcome = tokio::time::timeout(Duration::from_secs(30), lambdas.invoke("broken", Bytes::from("{}")))
            .await
            .expect("the invocation waited for a runtime that had died")
            .unwrap();
        let Outcome::FunctionError(body) = outcome else {
            panic!("a dead runtime answered");
        };
        let error: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(error["errorType"], "Runtime.ExitError");
        assert!(
            error["errorMessage"]
                .as_str()
                .unwrap()
                .ends_with("Runtime exited with error: exit status 1"),
            "{error}"
        );
    }
}
