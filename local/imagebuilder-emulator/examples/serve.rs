//! The emulator alone over HTTP, with a fake EC2 (AMI IDs from a counter) and events printed
//! to stdout as JSON lines. For trying SDKs against it (tests/boto3_smoke.py):
//!
//! ```sh
//! PORT=8790 cargo run -p imagebuilder-emulator --example serve
//! ```
//!
//! Builds report one HIGH and two MEDIUM findings, so the scan operations have something to show.

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use imagebuilder_emulator::{AmiRequest, Backend, Emulator, EmulatorConfig, FindingCounts, PhaseDurations};
use serde_json::Value;
use std::collections::BTreeMap;
use std::error::Error;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::net::TcpListener;

type BoxError = Box<dyn Error + Send + Sync>;

#[derive(Default)]
struct FakeEc2 {
    made: AtomicU64,
}

impl FakeEc2 {
    fn new_ami(&self) -> String {
        format!("ami-{:017x}", 0x0b00_0000 + self.made.fetch_add(1, Ordering::SeqCst))
    }
}

#[async_trait::async_trait]
impl Backend for FakeEc2 {
    async fn create_ami(&self, req: AmiRequest) -> Result<String, String> {
        let id = self.new_ami();
        eprintln!(
            "create_ami {} from {} in {}: {id}",
            req.name, req.parent_image_id, req.region
        );
        Ok(id)
    }

    async fn copy_ami(
        &self,
        source_region: &str,
        source_image_id: &str,
        dest_region: &str,
        _name: &str,
        _tags: BTreeMap<String, String>,
    ) -> Result<String, String> {
        let id = self.new_ami();
        eprintln!("copy_ami {source_image_id} {source_region} -> {dest_region}: {id}");
        Ok(id)
    }

    async fn put_event(&self, event: Value) {
        println!("{event}");
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let port: u16 = std::env::var("PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(0);
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    eprintln!("Image Builder emulator on http://{}", listener.local_addr()?);
    let config = EmulatorConfig {
        account_id: "123456789012".into(),
        region: "us-east-1".into(),
        phases: PhaseDurations::default(),
    };
    let emulator = Emulator::new(config, Arc::new(FakeEc2::default()));
    emulator.set_next_scan_findings(FindingCounts {
        high: 1,
        medium: 2,
        ..FindingCounts::default()
    });
    loop {
        let (stream, _) = listener.accept().await?;
        let emulator = Arc::clone(&emulator);
        tokio::spawn(async move {
            let service = service_fn(move |req| serve(Arc::clone(&emulator), req));
            if let Err(e) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                eprintln!("connection: {e}");
            }
        });
    }
}

async fn serve(
    emulator: Arc<Emulator>,
    req: hyper::Request<Incoming>,
) -> Result<hyper::Response<Full<Bytes>>, BoxError> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await?.to_bytes();
    let query = parts.uri.query().unwrap_or_default();
    let r = emulator
        .handle(parts.method.as_str(), parts.uri.path(), query, &body)
        .await;
    let mut response = hyper::Response::builder().status(r.status);
    for (name, value) in &r.headers {
        response = response.header(name, value);
    }
    Ok(response.body(Full::new(Bytes::from(r.body)))?)
}
