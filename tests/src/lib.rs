//! Shared set-up for the integration tests: a local AWS per test, on free ports, stopped
//! (moto and every function process) when the test ends, pass or fail.

use gateway::{LocalAws, Options};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub fn repo() -> PathBuf {
    gateway::repo_root(Path::new(env!("CARGO_MANIFEST_DIR")))
}

/// Starts a local AWS with short build phases. The function binaries must be built
/// (`make test` builds them first).
pub async fn local_aws() -> LocalAws {
    let mut opts = Options::for_repo(repo());
    let trigger = opts.binaries.join("trigger");
    assert!(trigger.exists(), "{} is missing: run `cargo build --workspace --bins` first", trigger.display());
    opts.phases = gateway::PhaseDurations {
        pending: Duration::from_millis(50),
        building: Duration::from_millis(50),
        testing: Duration::from_millis(50),
        distributing: Duration::from_millis(50),
    };
    LocalAws::start(opts).await.unwrap_or_else(|e| panic!("cannot start the local AWS: {e}"))
}

/// Polls `check` until it returns Some, or fails the test after `limit`.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(start.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
