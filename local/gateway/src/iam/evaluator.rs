//! The IAM evaluator: `local/tools/authorize.mjs`, one Node process per local AWS, running
//! @cloud-copilot/iam-simulate. Requests go one JSON line each on its stdin; answers come back
//! on its stdout with the request's id, in any order.

use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::{oneshot, Mutex as AsyncMutex};

#[derive(Debug, thiserror::Error)]
pub enum EvaluatorError {
    #[error("cannot start the IAM evaluator (node local/tools/authorize.mjs): {0}")]
    Start(String),
    #[error("the IAM evaluator failed: {0}")]
    Failed(String),
}

/// iam-simulate's answer for one request.
#[derive(Debug, Clone, Deserialize)]
pub struct Answer {
    /// `Allowed`, `ImplicitlyDenied` or `ExplicitlyDenied`.
    pub result: String,
    #[serde(default)]
    pub denials: Vec<Value>,
    /// The statements that allowed it: `{"policyType", "policyIdentifier", "statementIndex", "statementId"}`.
    #[serde(default)]
    pub grants: Vec<Value>,
}

impl Answer {
    pub fn allowed(&self) -> bool {
        self.result == "Allowed"
    }
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Result<Answer, String>>>>>;

pub struct Evaluator {
    stdin: AsyncMutex<ChildStdin>,
    pending: Pending,
    next: AtomicU64,
    _child: Child,
}

impl Evaluator {
    pub async fn start(repo: &Path) -> Result<Self, EvaluatorError> {
        let script = repo.join("local/tools/authorize.mjs");
        let mut cmd = Command::new("node");
        cmd.arg(&script)
            .current_dir(repo.join("local/tools"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        crate::process::die_with_parent(&mut cmd);
        let mut child = cmd.spawn().map_err(|e| EvaluatorError::Start(e.to_string()))?;
        let stdin = child
            .stdin
            .take()
            .ok_or_else(|| EvaluatorError::Start("no stdin".into()))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| EvaluatorError::Start("no stdout".into()))?;
        let pending: Pending = Arc::new(Mutex::new(HashMap::new()));
        let answers = pending.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let Ok(v) = serde_json::from_str::<Value>(&line) else {
                    tracing::error!(%line, "the IAM evaluator wrote something that is not JSON");
                    continue;
                };
                let Some(id) = v["id"].as_u64() else {
                    tracing::error!(%line, "the IAM evaluator answered without an id");
                    continue;
                };
                let answer = match v.get("error") {
                    Some(e) => Err(e.as_str().map_or_else(|| e.to_string(), str::to_owned)),
                    None => serde_json::from_value::<Answer>(v).map_err(|e| e.to_string()),
                };
                if let Some(tx) = answers.lock().ok().and_then(|mut p| p.remove(&id)) {
                    let _ = tx.send(answer);
                }
            }
            // The process ended: every request still waiting fails.
            if let Ok(mut p) = answers.lock() {
                p.clear();
            }
        });
        Ok(Self {
            stdin: AsyncMutex::new(stdin),
            pending,
            next: AtomicU64::new(1),
            _child: child,
        })
    }

    /// Evaluates one iam-simulate `Simulation`.
    pub async fn evaluate(&self, simulation: Value) -> Result<Answer, EvaluatorError> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        if let Ok(mut p) = self.pending.lock() {
            p.insert(id, tx);
        }
        let mut line = json!({"id": id, "simulation": simulation}).to_string();
        line.push('\n');
        {
            let mut stdin = self.stdin.lock().await;
            stdin
                .write_all(line.as_bytes())
                .await
                .map_err(|e| EvaluatorError::Failed(e.to_string()))?;
            stdin.flush().await.map_err(|e| EvaluatorError::Failed(e.to_string()))?;
        }
        match rx.await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(e)) => Err(EvaluatorError::Failed(e)),
            Err(_) => Err(EvaluatorError::Failed("the evaluator exited".into())),
        }
    }
}
