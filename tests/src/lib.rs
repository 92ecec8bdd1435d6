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
    local_aws_with(&[]).await
}

/// The same, with template parameters overridden (as a deploy would set them).
pub async fn local_aws_with(parameters: &[(&str, &str)]) -> LocalAws {
    let mut opts = Options::for_repo(repo());
    for (k, v) in parameters {
        opts.parameters.insert((*k).to_owned(), (*v).to_owned());
    }
    let trigger = opts.binaries.join("trigger");
    assert!(
        trigger.exists(),
        "{} is missing: run `cargo build --workspace --bins` first",
        trigger.display()
    );
    opts.phases = short_phases();
    LocalAws::start(opts)
        .await
        .unwrap_or_else(|e| panic!("cannot start the local AWS: {e}"))
}

/// An SDK configuration acting for another `account` in `region` (STS AssumeRole of a role
/// the template does not know: an administrator of that account, which moto keeps apart).
pub async fn account_sdk(aws: &LocalAws, account: &str, region: &str) -> aws_config::SdkConfig {
    let sdk = aws.sdk_config(region).await;
    let creds = aws_sdk_sts::Client::new(&sdk)
        .assume_role()
        .role_arn(format!("arn:aws:iam::{account}:role/operator"))
        .role_session_name("operator")
        .send()
        .await
        .unwrap_or_else(|e| panic!("AssumeRole into {account}: {e}"))
        .credentials
        .expect("AssumeRole gives credentials");
    let provider = aws_sdk_sts::config::Credentials::new(
        creds.access_key_id(),
        creds.secret_access_key(),
        Some(creds.session_token().to_owned()),
        None,
        "assumed",
    );
    sdk.to_builder()
        .credentials_provider(aws_sdk_sts::config::SharedCredentialsProvider::new(provider))
        .build()
}

/// Runs the `bakery` command (the workspace's debug build) with `args` against `aws`, with the
/// environment `bakery local up` prints, as an operator would.
pub async fn bakery(aws: &LocalAws, args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(repo().join("target/debug/bakery"))
        .args(args)
        .envs(aws.env())
        .output()
        .await
        .unwrap_or_else(|e| panic!("bakery {args:?}: {e}"))
}

/// Clients of every service the tests use, all pointed at the local AWS.
pub struct Clients {
    pub ec2: aws_sdk_ec2::Client,
    pub ib: aws_sdk_imagebuilder::Client,
}

pub async fn clients(aws: &LocalAws, region: &str) -> Clients {
    let sdk = aws.sdk_config(region).await;
    Clients {
        ec2: aws_sdk_ec2::Client::new(&sdk),
        ib: aws_sdk_imagebuilder::Client::new(&sdk),
    }
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

/// A base (SOE) AMI registered in moto's EC2, as an upstream account would publish it.
pub async fn register_base_ami(ec2: &aws_sdk_ec2::Client, name: &str) -> String {
    gateway::world::register_ami_with(ec2, name).await.unwrap()
}

/// A pipeline as a platform team sets it up (see `gateway::world::create_pipeline`).
pub async fn create_pipeline(ib: &aws_sdk_imagebuilder::Client, name: &str, parent: &str, regions: &[&str]) -> String {
    gateway::world::create_pipeline(ib, name, parent, regions)
        .await
        .unwrap()
}

/// Waits for a build to leave its in-progress states; returns the image.
pub async fn wait_for_build(ib: &aws_sdk_imagebuilder::Client, image_arn: &str) -> aws_sdk_imagebuilder::types::Image {
    use aws_sdk_imagebuilder::types::ImageStatus;
    eventually("the build to finish", Duration::from_secs(30), || async {
        let image = ib
            .get_image()
            .image_build_version_arn(image_arn)
            .send()
            .await
            .ok()?
            .image?;
        let status = image.state.as_ref()?.status.clone()?;
        matches!(
            status,
            ImageStatus::Available | ImageStatus::Failed | ImageStatus::Cancelled
        )
        .then_some(image)
    })
    .await
}

/// template.yaml with one of `function`'s policies taken out: the statement whose Sid is
/// `policy`, or the policy template of that name (`SNSPublishMessagePolicy`). Written (as the
/// JSON form CloudFormation also takes) into a directory of its own; returns its path.
pub fn template_without(function: &str, policy: &str) -> PathBuf {
    let text = std::fs::read_to_string(repo().join("template.yaml")).unwrap();
    let mut t = gateway::template::Template::parse(&text).unwrap();
    let policies = t
        .root
        .pointer_mut(&format!("/Resources/{function}/Properties/Policies"))
        .and_then(serde_json::Value::as_array_mut)
        .unwrap_or_else(|| panic!("{function} has no Policies"));
    let before = policies.len();
    policies.retain(|p| p.get(policy).is_none());
    let mut found = before != policies.len();
    for p in policies.iter_mut() {
        if let Some(statements) = p.get_mut("Statement").and_then(serde_json::Value::as_array_mut) {
            let n = statements.len();
            statements.retain(|s| s["Sid"] != policy);
            found |= n != statements.len();
        }
    }
    assert!(found, "{function} has no policy or statement {policy}");
    let dir = std::env::temp_dir().join(format!("bakery-template-{}", uuid_like()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("template.json");
    std::fs::write(&path, t.root.to_string()).unwrap();
    path
}

/// A name unique to this process and moment, for scratch directories.
fn uuid_like() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    )
}

/// A local AWS deployed from `template` (see [`template_without`]) with these parameters.
pub async fn local_aws_from(template: PathBuf, parameters: &[(&str, &str)]) -> LocalAws {
    let mut opts = Options::for_repo(repo());
    opts.template = Some(template);
    for (k, v) in parameters {
        opts.parameters.insert((*k).to_owned(), (*v).to_owned());
    }
    opts.phases = short_phases();
    LocalAws::start(opts)
        .await
        .unwrap_or_else(|e| panic!("cannot start the local AWS: {e}"))
}

fn short_phases() -> gateway::PhaseDurations {
    gateway::PhaseDurations {
        pending: Duration::from_millis(50),
        building: Duration::from_millis(50),
        testing: Duration::from_millis(50),
        distributing: Duration::from_millis(50),
    }
}
