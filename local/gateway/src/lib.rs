//! Bakery's local AWS: moto for EC2, SNS, SQS, SSM, STS, DynamoDB and Step Functions, and in
//! front of it the gateway, which runs the template's Lambda functions from their real
//! binaries, emulates EC2 Image Builder, delivers EventBridge events by the template's rules and
//! SNS messages to the template's Lambda subscriptions.
//! [`LocalAws::start`] brings it all up on free ports; dropping it stops every process it started.

pub mod admin;
mod authz;
mod backend;
mod copies;
pub mod deploy;
mod deprecation;
pub mod gateway;
mod http;
pub mod iam;
pub mod lambda;
pub mod moto;
pub mod pattern;
mod process;
pub mod service_events;
mod shared_images;
pub mod sns;
pub mod template;
pub mod world;

pub use admin::AdminClient;
pub use imagebuilder_emulator::{FindingCounts, PhaseDurations};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use gateway::Gateway;
use hyper_util::rt::TokioIo;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use template::{Names, Template};
use tokio::net::TcpListener;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Moto(#[from] moto::MotoError),
    #[error(transparent)]
    Template(#[from] template::TemplateError),
    #[error(transparent)]
    Deploy(#[from] deploy::DeployError),
    #[error(transparent)]
    Iam(#[from] iam::IamError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// What to start.
#[derive(Debug, Clone)]
pub struct Options {
    /// The repository: `template.yaml`, `local/moto-venv.sh` and `DefinitionUri` paths are found from here.
    pub repo: PathBuf,
    /// Where the function binaries are (`target/debug` by default).
    pub binaries: PathBuf,
    pub stack: String,
    pub region: String,
    /// moto's default account.
    pub account: String,
    /// Template parameter overrides.
    pub parameters: BTreeMap<String, String>,
    /// The template to deploy: `template.yaml` in the repository by default.
    pub template: Option<PathBuf>,
    pub phases: PhaseDurations,
}

impl Options {
    pub fn for_repo(repo: impl Into<PathBuf>) -> Self {
        let repo = repo.into();
        Self {
            binaries: repo.join("target/debug"),
            repo,
            stack: "bakery".into(),
            region: "us-east-1".into(),
            account: "123456789012".into(),
            // Deployed as the demo's world needs it: publishing to the world's regions.
            parameters: [("PublishRegions".to_owned(), world::REGIONS.join(","))].into(),
            template: None,
            phases: PhaseDurations::default(),
        }
    }
}

pub struct LocalAws {
    /// The gateway's URL: use it as `AWS_ENDPOINT_URL`.
    pub endpoint: String,
    pub moto_endpoint: String,
    pub region: String,
    pub account: String,
    /// The template's resources as created here (Ref and GetAtt values).
    pub names: Names,
    /// Function logs and moto's log.
    pub logs: PathBuf,
    pub gateway: Arc<Gateway>,
    moto: tokio::process::Child,
    server: tokio::task::JoinHandle<()>,
}

impl LocalAws {
    pub async fn start(opts: Options) -> Result<Self, StartError> {
        let moto_server = moto::install(&opts.repo).await?;
        let logs = std::env::temp_dir().join(format!("bakery-local-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&logs)?;

        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let gateway_port = listener.local_addr()?.port();
        let endpoint = format!("http://127.0.0.1:{gateway_port}");
        let moto_port = free_port()?;
        let moto = moto::start(&moto_server, moto_port, gateway_port, &logs.join("moto.log")).await?;
        let moto_endpoint = format!("http://127.0.0.1:{moto_port}");

        // The parameters as a deploy sets them: defaults, overridden, and the pseudo parameters.
        let template_path = opts.template.clone().unwrap_or_else(|| opts.repo.join("template.yaml"));
        let sam = Template::parse(&std::fs::read_to_string(&template_path)?)?;
        let parameters = sam.parameters(&opts.parameters);
        let mut translate_with = parameters.clone();
        translate_with.insert("AWS::Region".into(), opts.region.clone());
        translate_with.insert("AWS::AccountId".into(), opts.account.clone());
        translate_with.insert("AWS::StackName".into(), opts.stack.clone());
        let template = Template::translate(&opts.repo, &template_path, &translate_with).await?;
        let mut names = Names {
            stack: opts.stack.clone(),
            region: opts.region.clone(),
            account: opts.account.clone(),
            parameters,
            lists: template.list_parameters(),
            resources: BTreeMap::new(),
        };
        deploy::name_resources(&template, &mut names)?;
        let moto_sdk = sdk_config(&moto_endpoint, &opts.region).await;
        deploy::create_resources(&template, &mut names, &moto_sdk, &opts.repo).await?;

        let iam = iam::Iam::start(&opts.repo, &template, &names, &moto_endpoint).await?;
        let functions = template.functions(&names)?;
        let host = lambda::Host {
            binaries: opts.binaries.clone(),
            logs: logs.clone(),
            region: opts.region.clone(),
            account: opts.account.clone(),
            endpoint: endpoint.clone(),
            credentials: functions
                .iter()
                .filter_map(|f| Some((f.name.clone(), iam.function_credentials(&f.name)?)))
                .collect(),
        };
        let lambdas = lambda::Lambdas::new(functions, host);
        let (events_tx, mut events_rx) = tokio::sync::mpsc::unbounded_channel();
        let backend = Arc::new(backend::Ec2Backend::new(
            moto_endpoint.clone(),
            opts.account.clone(),
            events_tx,
        ));
        let emulator = imagebuilder_emulator::Emulator::new(
            imagebuilder_emulator::EmulatorConfig {
                account_id: opts.account.clone(),
                region: opts.region.clone(),
                phases: opts.phases,
            },
            backend,
        );
        let gateway = Gateway::new(
            lambdas,
            iam,
            emulator,
            template.rules(&names)?,
            template.schedules(&names)?,
            template.sns_subscriptions(&names)?,
            opts.region.clone(),
            opts.account.clone(),
            moto_endpoint.clone(),
            aws_sdk_sqs::Client::new(&moto_sdk),
        );
        let bus = gateway.clone();
        tokio::spawn(async move {
            while let Some(event) = events_rx.recv().await {
                bus.deliver(event);
            }
        });
        let server = tokio::spawn(serve(listener, gateway.clone()));
        tracing::info!(%endpoint, %moto_endpoint, logs = %logs.display(), "local AWS up");
        Ok(Self {
            endpoint,
            moto_endpoint,
            region: opts.region,
            account: opts.account,
            names,
            logs,
            gateway,
            moto,
            server,
        })
    }

    /// The environment a client needs: `export` these and any AWS SDK or CLI talks to this local AWS.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_REGION", self.region.clone()),
            ("AWS_DEFAULT_REGION", self.region.clone()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_SESSION_TOKEN", "testing".into()),
        ]
    }

    /// An SDK configuration for this local AWS, in `region`.
    pub async fn sdk_config(&self, region: &str) -> SdkConfig {
        sdk_config(&self.endpoint, region).await
    }

    pub fn admin(&self) -> AdminClient {
        AdminClient::new(&self.endpoint)
    }

    /// The Ref value of a template resource (a queue URL, a topic ARN, a function name, ...).
    pub fn resource(&self, logical_id: &str) -> Option<&str> {
        self.names.resources.get(logical_id).map(|p| p.reference.as_str())
    }
}

impl Drop for LocalAws {
    fn drop(&mut self) {
        self.server.abort();
        for pid in self.gateway.lambdas.child_pids() {
            // SAFETY: kill(2) on a pid this process started; a pid that already exited is harmless here.
            unsafe {
                libc::kill(pid as i32, libc::SIGKILL);
            }
        }
        let _ = self.moto.start_kill();
    }
}

async fn serve(listener: TcpListener, gateway: Arc<Gateway>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let gateway = gateway.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let gateway = gateway.clone();
                async move { Ok::<_, std::convert::Infallible>(gateway.handle(req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Dummy credentials and a fixed endpoint: nothing here can reach a real AWS endpoint.
pub async fn sdk_config(endpoint: &str, region: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(region.to_owned()))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "testing",
            "testing",
            None,
            None,
            "bakery-local",
        ))
        .load()
        .await
}

/// The repository root, found from a crate's manifest directory (tests, the CLI).
pub fn repo_root(start: &Path) -> PathBuf {
    start
        .ancestors()
        .find(|p| p.join("template.yaml").exists())
        .unwrap_or(start)
        .to_path_buf()
}
