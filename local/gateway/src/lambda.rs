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
    payload: Bytes,
    respond: oneshot::Sender<Outcome>,
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

    /// Runs one invocation to its end. `None` when no such function exists.
    pub async fn invoke(&self, name: &str, payload: Bytes) -> Option<Outcome> {
        let f = self.functions.get(name)?.clone();
        let (respond, outcome) = oneshot::channel();
        let request_id = uuid::Uuid::new_v4().to_string();
        f.queued.fetch_add(1, Ordering::SeqCst);
        if f.queue_tx
            .send(Invocation {
                request_id,
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
        // Startup plus the function's own timeout, as Lambda counts it.
        let limit = Duration::from_secs(f.spec.timeout_secs) + Duration::from_secs(10);
        Some(match tokio::time::timeout(limit, outcome).await {
            Ok(Ok(o)) => o,
            Ok(Err(_)) => Outcome::sandbox("Runtime.ExitError", "the runtime exited without answering".into()),
            Err(_) => Outcome::sandbox(
                "Sandbox.Timedout",
                format!("Task timed out after {}.00 seconds", f.spec.timeout_secs),
            ),
        })
    }
}

impl FunctionRuntime {
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
                if let Ok(mut rx) = self.queue_rx.try_lock() {
                    while let Ok(inv) = rx.try_recv() {
                        self.queued.fetch_sub(1, Ordering::SeqCst);
                        let _ = inv
                            .respond
                            .send(Outcome::sandbox("Runtime.InvalidEntrypoint", e.clone()));
                    }
                }
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
        if let (Some(pid), Ok(mut c)) = (child.id(), children.lock()) {
            c.push(pid);
        }
        tracing::info!(function = %self.spec.name, runtime_api = %api, "started function process");

        let current: Arc<Mutex<Option<Invocation>>> = Arc::new(Mutex::new(None));
        let server = {
            let this = self.clone();
            let current = current.clone();
            tokio::spawn(async move { this.serve_runtime_api(listener, current).await })
        };
        let this = self.clone();
        tokio::spawn(async move {
            let status = child.wait().await;
            server.abort();
            this.processes.fetch_sub(1, Ordering::SeqCst);
            let running = current.lock().ok().and_then(|mut c| c.take());
            if running.is_some() {
                this.busy.fetch_sub(1, Ordering::SeqCst);
            }
            tracing::info!(function = %this.spec.name, ?status, "function process exited");
            if let Some(inv) = running {
                let _ = inv.respond.send(Outcome::sandbox(
                    "Runtime.ExitError",
                    format!("RequestId: {} Error: Runtime exited with {status:?}", inv.request_id),
                ));
            }
        });
        Ok(())
    }

    async fn serve_runtime_api(self: Arc<Self>, listener: TcpListener, current: Arc<Mutex<Option<Invocation>>>) {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let this = self.clone();
            let current = current.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let this = this.clone();
                    let current = current.clone();
                    async move { Ok::<_, std::convert::Infallible>(this.runtime_api(req, &current).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    }

    /// The Runtime API: `/next`, `/{id}/response`, `/{id}/error`, `/init/error`.
    async fn runtime_api(&self, req: Request<Incoming>, current: &Mutex<Option<Invocation>>) -> Response<Body> {
        let path = req.uri().path().to_owned();
        let Some(rest) = path.strip_prefix("/2018-06-01/runtime/") else {
            return json_response(404, &serde_json::json!({"errorMessage": "not a Runtime API path"}));
        };
        if rest == "invocation/next" {
            return self.next(current).await;
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
        if let Some(inv) = current.lock().ok().and_then(|mut c| c.take()) {
            self.busy.fetch_sub(1, Ordering::SeqCst);
            let _ = inv.respond.send(outcome);
        }
        json_response(202, &serde_json::json!({"status": "OK"}))
    }

    async fn next(&self, current: &Mutex<Option<Invocation>>) -> Response<Body> {
        let Some(inv) = self.queue_rx.lock().await.recv().await else {
            return json_response(500, &serde_json::json!({"errorMessage": "shutting down"}));
        };
        self.queued.fetch_sub(1, Ordering::SeqCst);
        self.busy.fetch_add(1, Ordering::SeqCst);
        let deadline = chrono::Utc::now().timestamp_millis() + (self.spec.timeout_secs as i64) * 1000;
        let arn = format!(
            "arn:aws:lambda:{}:{}:function:{}",
            self.host.region, self.host.account, self.spec.name
        );
        let response = Response::builder()
            .status(200)
            .header("Lambda-Runtime-Aws-Request-Id", &inv.request_id)
            .header("Lambda-Runtime-Deadline-Ms", deadline.to_string())
            .header("Lambda-Runtime-Invoked-Function-Arn", arn)
            .header(
                "Lambda-Runtime-Trace-Id",
                format!("Root=1-{:08x}-{}", deadline / 1000, &inv.request_id[..8]),
            )
            .header("Content-Type", "application/json")
            .body(full(inv.payload.clone()));
        if let Ok(mut c) = current.lock() {
            *c = Some(inv);
        }
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
