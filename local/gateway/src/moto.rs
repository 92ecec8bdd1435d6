//! moto server: installed by `local/moto-venv.sh` into the project's virtual environment,
//! started on its own port with `MOTO_PORT` pointing at the gateway (moto's Step Functions
//! interpreter sends every Task's service call to localhost:$MOTO_PORT). It runs through
//! `moto_patches.py`, which gives moto's Step Functions the RedriveExecution and history paging it lacks.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

#[derive(Debug, thiserror::Error)]
pub enum MotoError {
    #[error("cannot install moto (local/moto-venv.sh): {0}")]
    Install(String),
    #[error("cannot start moto: {0}")]
    Start(String),
}

/// Installs moto if needed; returns the `moto_server` executable.
pub async fn install(repo: &Path) -> Result<String, MotoError> {
    let out = Command::new("bash")
        .arg(repo.join("local/moto-venv.sh"))
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| MotoError::Install(e.to_string()))?;
    if !out.status.success() {
        return Err(MotoError::Install(String::from_utf8_lossy(&out.stderr).into_owned()));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .last()
        .map(str::to_owned)
        .ok_or_else(|| MotoError::Install("no moto_server path printed".into()))
}

/// moto with what its Step Functions lacks (RedriveExecution, history paging); see the file.
const PATCHES: &str = include_str!("moto_patches.py");

/// Starts moto on `port` and waits until it answers, then turns Step Functions execution on
/// (it must be on before any state machine is created). moto runs under the venv's python,
/// through `moto_patches.py` (written beside the log).
pub async fn start(moto_server: &str, port: u16, gateway_port: u16, log: &Path) -> Result<Child, MotoError> {
    let python = Path::new(moto_server).with_file_name("python");
    let patched = log.with_file_name("moto_patches.py");
    std::fs::write(&patched, PATCHES).map_err(|e| MotoError::Start(format!("{}: {e}", patched.display())))?;
    let log = std::fs::File::create(log).map_err(|e| MotoError::Start(e.to_string()))?;
    let log_err = log.try_clone().map_err(|e| MotoError::Start(e.to_string()))?;
    let mut cmd = Command::new(&python);
    cmd.arg(&patched)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .env("MOTO_PORT", gateway_port.to_string())
        // The demo and tests register their own base AMIs; 1,300 public ones slow every start.
        .env("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .kill_on_drop(true);
    crate::process::die_with_parent(&mut cmd);
    let mut child = cmd
        .spawn()
        .map_err(|e| MotoError::Start(format!("{}: {e}", python.display())))?;

    let base = format!("http://127.0.0.1:{port}");
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    for _ in 0..300 {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(MotoError::Start(format!("moto exited at start: {status}")));
        }
        let req = hyper::Request::post(format!("{base}/moto-api/config"))
            .header("Content-Type", "application/json")
            .body(crate::http::full(
                r#"{"stepfunctions": {"execute_state_machine": true}}"#,
            ));
        if let Ok(req) = req {
            if let Ok(resp) = client.request(req).await {
                if resp.status().is_success() {
                    return Ok(child);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(MotoError::Start("moto did not answer within 15 s".into()))
}
