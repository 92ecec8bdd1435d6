//! `bakery`: classify an event, validate bake policies, run the local AWS.
//!
//! Exit codes: 0 done; 2 bad input (malformed event, invalid policy, unreadable file, bad usage).

mod approval;
mod demo;
mod iam_report;
mod invoke;
mod ledger;
mod lineage;
mod ops;
mod replay;
mod retention;
mod revoke;
mod stale;

use bakery_core::{classify, Policy};
use clap::{Parser, Subcommand};
use std::io::{Read, Write};
use std::process::ExitCode;

/// The SDK configuration of an operator's command: the SDK's default chain (environment,
/// profiles, assumed roles, web identity, containers, IMDS) and its default HTTPS client, which
/// trusts the platform's roots and `SSL_CERT_FILE` / `SSL_CERT_DIR` (a proxy's own CA, say).
/// The functions use `bakery_aws::sdk_config`, whose roots are built in.
async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await
}

const POLICY_SCHEMA: &str = include_str!("../../schema/bake-policy.schema.json");

#[derive(Parser)]
#[command(
    name = "bakery",
    version,
    about = "Bakery: event-driven AMI bakes on EC2 Image Builder"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Classify an event as the trigger function would: prints {"action":"bake",...} or {"action":"ignore",...}.
    Classify {
        /// The event file; `-` reads standard input.
        file: String,
    },
    /// Bake policy documents.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// An SOE release rippling through 3 pipelines on the local AWS: release → trigger → build → gate → 3 regions → shares → notification → the downstream pipeline.
    Demo {
        /// Print the result as one JSON object instead of the readable report.
        #[arg(long)]
        json: bool,
        #[arg(long)]
        repo: Option<std::path::PathBuf>,
    },
    /// Send what waits in the trigger's dead-letter queue to the trigger function again
    /// (the AWS endpoint, region and credentials come from the environment).
    Replay {
        /// The dead-letter queue (stack output TriggerDeadLetterQueueUrl).
        #[arg(long)]
        queue_url: String,
        /// The trigger function's name or ARN (stack output TriggerFunctionArn).
        #[arg(long)]
        function: String,
        /// Replay at most this many messages.
        #[arg(long, default_value_t = 1000)]
        max: usize,
    },
    /// Per role of the template, each granted action and whether any scenario used it (from the
    /// decisions the local AWS wrote where BAKERY_IAM_USAGE pointed; `make iam-report` runs it all).
    IamReport {
        /// The directory of decision files.
        #[arg(long)]
        usage: std::path::PathBuf,
        #[arg(long)]
        repo: Option<std::path::PathBuf>,
    },
    /// What retention (`retention.keep`, `retention.minAgeDays` of each bake policy) would
    /// deregister (`--plan`), or deregisters with the snapshots (`--apply`), in every region a
    /// pipeline publishes to (the AWS endpoint, region and credentials come from the environment).
    Retention {
        /// Show what would go; change nothing.
        #[arg(long, conflicts_with = "apply", required_unless_present = "apply")]
        plan: bool,
        /// Deregister what the plan lets go, and delete its snapshots.
        #[arg(long)]
        apply: bool,
        /// Only this pipeline (its name or ARN); every pipeline with a policy by default.
        #[arg(long)]
        pipeline: Option<String>,
        /// Where the bake policies are (the stack's PolicyPrefix).
        #[arg(long, default_value = "/bakery/policies/")]
        policy_prefix: String,
        /// Print one JSON object instead of the readable report.
        #[arg(long)]
        json: bool,
    },
    /// Start a manual bake of a pipeline (its name, with a bake policy, or its ARN) through the
    /// trigger function, as a "Bake Requested" event would; `--wait` follows it to its end.
    Bake {
        pipeline: String,
        /// The source AMI (in the pipeline's region); the recipe's current parent by default.
        #[arg(long)]
        source: Option<String>,
        /// The trigger function's name or ARN (stack output TriggerFunctionArn).
        #[arg(long)]
        function: String,
        /// Why (kept in the trigger's log and the bake's request).
        #[arg(long, default_value = "manual bake (bakery bake)")]
        reason: String,
        /// Wait until the bake ends; exit 2 unless it succeeded.
        #[arg(long)]
        wait: bool,
        /// How long --wait waits, in minutes.
        #[arg(long, default_value_t = 240)]
        wait_minutes: u64,
        /// Where the bake policies are (the stack's PolicyPrefix), to find a pipeline by name.
        #[arg(long, default_value = "/bakery/policies/")]
        policy_prefix: String,
        /// Print one JSON object instead of the readable report.
        #[arg(long)]
        json: bool,
    },
    /// An AMI's bake, ancestors and descendants, with each bake's AMI in every region and its
    /// state, from the ledger (stack output LedgerTableName).
    Lineage {
        /// Any region's AMI of a bake.
        ami: String,
        #[arg(long)]
        table: String,
        /// Print one JSON object instead of the readable report.
        #[arg(long, conflicts_with = "mermaid")]
        json: bool,
        /// Print the ancestry as a Mermaid graph.
        #[arg(long)]
        mermaid: bool,
    },
    /// Approve a bake that waits for approval: it goes on to copy, share and announce.
    Approve {
        /// The bake's execution ARN (in its AWAITING_APPROVAL message).
        execution: String,
        /// The ledger (stack output LedgerTableName).
        #[arg(long)]
        table: String,
        /// Who approves (kept in the execution's state).
        #[arg(long, default_value = "operator")]
        by: String,
        /// Print one JSON object instead of the readable line.
        #[arg(long)]
        json: bool,
    },
    /// Reject a bake that waits for approval: it fails with the reason, nothing copied or shared.
    Reject {
        execution: String,
        #[arg(long)]
        table: String,
        #[arg(long)]
        reason: String,
        #[arg(long, default_value = "operator")]
        by: String,
        /// Print one JSON object instead of the readable line.
        #[arg(long)]
        json: bool,
    },
    /// Withdraw a published AMI: in every region its bake published to, deprecate it (and with
    /// --disable disable it), remove its launch and snapshot permissions, point the pipeline's
    /// parameters back at the previous good AMI, mark it revoked in the ledger (no trigger bakes
    /// on it again), and announce one REVOKED message. --cascade does the same for every bake
    /// built on it.
    Revoke {
        /// Any region's AMI of the bake.
        ami: String,
        /// Why (in the message, the ledger and the AMI's tags).
        #[arg(long)]
        reason: String,
        /// Revoke every descendant the ledger knows too.
        #[arg(long)]
        cascade: bool,
        /// Disable the AMIs (DisableImage) as well as deprecate them.
        #[arg(long)]
        disable: bool,
        /// The ledger (stack output LedgerTableName).
        #[arg(long)]
        table: String,
        /// The announce function's name or ARN (stack output AnnounceFunctionArn).
        #[arg(long)]
        function: String,
        /// Who revokes (in the message and the ledger).
        #[arg(long, default_value = "operator")]
        by: String,
        /// Where the bake policies are (the stack's PolicyPrefix).
        #[arg(long, default_value = "/bakery/policies/")]
        policy_prefix: String,
        /// Print one JSON object instead of the readable report.
        #[arg(long)]
        json: bool,
    },
    /// The published images whose parent has a newer trusted release than the one they were
    /// built on, and how far behind they are (the report the daily STALE message carries).
    Stale {
        /// The trigger function's name or ARN (stack output TriggerFunctionArn), which knows
        /// where each policy's base comes from.
        #[arg(long)]
        function: String,
        /// Print one JSON object instead of the readable report.
        #[arg(long)]
        json: bool,
    },
    /// The running and recent bakes, newest first, with each one's step timeline.
    Status {
        /// Only this pipeline's bakes (its name or ARN).
        pipeline: Option<String>,
        /// The bake state machine (stack output BakeStateMachineArn).
        #[arg(long)]
        state_machine: String,
        /// At most this many bakes.
        #[arg(long, default_value_t = 20)]
        max: usize,
        /// Print one JSON object instead of the readable report.
        #[arg(long)]
        json: bool,
    },
    /// The local AWS (moto and the gateway) that the demo and the tests run on.
    Local {
        #[command(subcommand)]
        command: LocalCommand,
    },
}

#[derive(Subcommand)]
enum LocalCommand {
    /// Start moto and the gateway on free ports, print the environment to use, run until interrupted.
    Up {
        /// The repository (template.yaml, local/); found from the current directory by default.
        #[arg(long)]
        repo: Option<std::path::PathBuf>,
        /// Also seed the demo's world (the SOE topic and base AMI, three pipelines and their
        /// policies, the demo's short waits) and print the stack's names, so every command can be
        /// tried by hand.
        #[arg(long)]
        demo: bool,
    },
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Check policy documents; every error is listed with its path. Besides the schema, a policy
    /// must ask only for what the stack's template parameters let it do (regions, parameter
    /// paths, topics): pass the parameters the stack is deployed with.
    Validate {
        /// Policy files; `-` reads standard input.
        #[arg(required = true)]
        files: Vec<String>,
        /// The stack's template (template.yaml of the repository by default).
        #[arg(long)]
        template: Option<std::path::PathBuf>,
        /// The stack's name (its publication topic is `<stack>-publications`).
        #[arg(long, default_value = "bakery")]
        stack: String,
        /// A template parameter as the stack is deployed with it, e.g. `PublishRegions=us-east-1,eu-west-1`.
        #[arg(long = "parameter", value_name = "KEY=VALUE")]
        parameters: Vec<String>,
        /// Also check the pipeline itself, against AWS (the ordinary credential chain and
        /// endpoint): every policy must be for it, and its own distribution must not let the
        /// image leave before the gate.
        #[arg(long, value_name = "ARN")]
        pipeline: Option<String>,
    },
    /// Print the policy's JSON schema.
    Schema,
}

/// What a command prints: results on stdout, problems on stderr one line each (exit 2 if any).
#[derive(Default)]
pub(crate) struct Outcome {
    pub(crate) out: String,
    pub(crate) problems: Vec<String>,
}

impl Outcome {
    pub(crate) fn problem(message: String) -> Self {
        Self {
            out: String::new(),
            problems: vec![message],
        }
    }
}

fn read_input(file: &str) -> Result<Vec<u8>, String> {
    let mut buf = Vec::new();
    let read = if file == "-" {
        std::io::stdin().lock().read_to_end(&mut buf)
    } else {
        std::fs::File::open(file).and_then(|mut f| f.read_to_end(&mut buf))
    };
    read.map(|_| buf).map_err(|e| format!("{file}: cannot read: {e}"))
}

fn classify_file(file: &str) -> Outcome {
    let input = match read_input(file) {
        Ok(input) => input,
        Err(e) => return Outcome::problem(e),
    };
    match classify(&input) {
        Ok(c) => match serde_json::to_string(&c) {
            Ok(json) => Outcome {
                out: json + "\n",
                problems: Vec::new(),
            },
            Err(e) => Outcome::problem(format!("{file}: cannot print the result: {e}")),
        },
        Err(e) => Outcome::problem(format!("{file}: {}: {e}", e.error_type())),
    }
}

fn validate_files(files: &[String], stack: &StackParameters) -> Outcome {
    let mut outcome = Outcome::default();
    for file in files {
        let checked =
            read_input(file).map(|text| Policy::parse(&text).and_then(|p| stack.grants(&p).check(&p).map(|()| p)));
        match checked {
            Ok(Ok(p)) => outcome
                .out
                .push_str(&format!("{file}: valid policy for {}\n", p.pipeline_arn)),
            Ok(Err(errors)) => outcome.problems.extend(errors.0.iter().map(|e| format!("{file}: {e}"))),
            Err(e) => outcome.problems.push(e),
        }
    }
    outcome
}

/// What `--pipeline` adds: each policy is for that pipeline, and the pipeline's distribution
/// keeps its image home until the gate (read from AWS, as start-build reads it).
async fn check_pipeline(files: &[String], arn: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let parsed = match bakery_core::ids::Arn::parse_kind(arn, "imagebuilder", "image-pipeline", "an image pipeline ARN")
    {
        Ok(a) => (a.region.to_owned(), a.account.to_owned()),
        Err(e) => return vec![format!("--pipeline {arn}: {e}")],
    };
    let (region, account) = parsed;
    for file in files {
        if let Ok(Ok(p)) = read_input(file).map(|text| Policy::parse(&text)) {
            if p.pipeline_arn != arn {
                problems.push(format!("{file}: the policy is for {}, not {arn}", p.pipeline_arn));
            }
        }
    }
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(region.clone()))
        .load()
        .await;
    let ib = aws_sdk_imagebuilder::Client::new(&sdk);
    let checked = async {
        let pipeline = bakery_aws::imagebuilder::get_pipeline(&ib, arn).await?;
        bakery_aws::imagebuilder::check_distribution(&ib, &pipeline, &region, &account).await
    };
    if let Err(e) = checked.await {
        problems.push(format!("--pipeline: {}: {e}", e.error_type()));
    }
    problems
}

/// The stack's template parameters: the template's defaults, overridden as deployed.
struct StackParameters {
    stack: String,
    values: std::collections::BTreeMap<String, String>,
}

impl StackParameters {
    fn read(template: Option<std::path::PathBuf>, stack: String, overrides: &[String]) -> Result<Self, String> {
        let path = template
            .unwrap_or_else(|| gateway::repo_root(&std::env::current_dir().unwrap_or_default()).join("template.yaml"));
        let text = std::fs::read_to_string(&path).map_err(|e| {
            format!(
                "policy validate: {}: {e} (give the stack's template with --template)",
                path.display()
            )
        })?;
        let t = gateway::template::Template::parse(&text)
            .map_err(|e| format!("policy validate: {}: {e}", path.display()))?;
        let mut given = std::collections::BTreeMap::new();
        for o in overrides {
            let (k, v) = o
                .split_once('=')
                .ok_or_else(|| format!("policy validate: --parameter {o}: not KEY=VALUE"))?;
            if t.root.pointer(&format!("/Parameters/{k}")).is_none() {
                return Err(format!(
                    "policy validate: --parameter {k}: the template has no such parameter"
                ));
            }
            given.insert(k.to_owned(), v.to_owned());
        }
        Ok(Self {
            stack,
            values: t.parameters(&given),
        })
    }

    /// What the stack may do for `policy` (its pipeline's region and account are the stack's).
    fn grants(&self, policy: &Policy) -> bakery_core::grants::StackGrants {
        use bakery_core::grants::StackGrants;
        let parts: Vec<&str> = policy.pipeline_arn.split(':').collect();
        let (region, account) = (
            parts.get(3).copied().unwrap_or_default(),
            parts.get(4).copied().unwrap_or_default(),
        );
        let value = |k: &str| self.values.get(k).cloned().unwrap_or_default();
        let mut publish_regions = StackGrants::list(&value("PublishRegions"));
        if publish_regions.is_empty() {
            publish_regions.push(region.to_owned());
        }
        StackGrants {
            policy_prefix: value("PolicyPrefix"),
            published_parameter_prefix: value("PublishedParameterPrefix"),
            publication_topic: format!("arn:aws:sns:{region}:{account}:{}-publications", self.stack),
            notify_topics: StackGrants::list(&value("NotifyTopicArns")),
            publish_regions,
        }
    }
}

/// Runs the local AWS until Ctrl-C or SIGTERM; dropping it stops moto and every function process.
async fn local_up(repo: Option<std::path::PathBuf>, demo: bool) -> Outcome {
    let cwd = std::env::current_dir().unwrap_or_default();
    let repo = repo.unwrap_or_else(|| gateway::repo_root(&cwd));
    let options = if demo {
        demo::options(repo)
    } else {
        gateway::Options::for_repo(repo)
    };
    let aws = match gateway::LocalAws::start(options).await {
        Ok(aws) => aws,
        Err(e) => return Outcome::problem(format!("local up: {e}")),
    };
    let mut names = Vec::new();
    if demo {
        let seeded = match demo::seed(&aws).await {
            Ok(s) => s,
            Err(e) => return Outcome::problem(format!("local up --demo: {e}")),
        };
        let resource = |id: &str| aws.resource(id).unwrap_or_default().to_owned();
        let pipelines: Vec<&str> = seeded.worlds.iter().map(|w| w.pipeline_name.as_str()).collect();
        names = vec![
            (
                "BAKERY_STATE_MACHINE_ARN",
                seeded
                    .worlds
                    .first()
                    .map(|w| w.state_machine_arn.clone())
                    .unwrap_or_default(),
            ),
            ("BAKERY_TRIGGER_FUNCTION", resource("TriggerFunction")),
            ("BAKERY_ANNOUNCE_FUNCTION", resource("AnnounceFunction")),
            ("BAKERY_LEDGER_TABLE", resource("LedgerTable")),
            ("BAKERY_SOE_TOPIC_ARN", seeded.soe_topic),
            ("BAKERY_SOE_BASE_AMI", seeded.base),
            ("BAKERY_PIPELINES", pipelines.join(",")),
        ];
    }
    // Listen for SIGTERM before saying we are up: a supervisor may stop us right after.
    use tokio::signal::unix::{signal, SignalKind};
    let (mut term, mut interrupt) = match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(t), Ok(i)) => (t, i),
        (Err(e), _) | (_, Err(e)) => return Outcome::problem(format!("local up: {e}")),
    };
    let mut env = String::new();
    for (k, v) in aws.env() {
        env.push_str(&format!("export {k}={v}\n"));
    }
    for (k, v) in &names {
        env.push_str(&format!("export {k}={v}\n"));
    }
    // Not needed by clients; for looking at moto directly.
    env.push_str(&format!("export BAKERY_MOTO_ENDPOINT={}\n", aws.moto_endpoint));
    let _ = std::io::stdout()
        .lock()
        .write_all(env.as_bytes())
        .and_then(|()| std::io::stdout().flush());
    let _ = writeln!(
        std::io::stderr(),
        "bakery: local AWS up (logs in {}); Ctrl-C to stop",
        aws.logs.display()
    );
    tokio::select! {
        _ = interrupt.recv() => {}
        _ = term.recv() => {}
    }
    drop(aws);
    let _ = writeln!(std::io::stderr(), "bakery: local AWS stopped");
    Outcome::default()
}

/// `bakery demo`: exit 0 only when the bake succeeded.
async fn run_demo(json: bool, repo: Option<std::path::PathBuf>) -> Outcome {
    let repo = repo.unwrap_or_else(|| gateway::repo_root(&std::env::current_dir().unwrap_or_default()));
    match demo::run(repo).await {
        Ok(report) => {
            let out = if json {
                format!("{report}\n")
            } else {
                demo::render(&report)
            };
            let mut problems = match report["status"].as_str() {
                Some("SUCCEEDED") => Vec::new(),
                other => vec![format!("demo: the bakes ended {}", other.unwrap_or("without a status"))],
            };
            for d in report["denials"].as_array().into_iter().flatten() {
                let who = d["function"].as_str().or(d["principal"].as_str()).unwrap_or("?");
                problems.push(format!(
                    "demo: AccessDenied: {who} may not {} on {}",
                    d["action"].as_str().unwrap_or("?"),
                    d["resource"].as_str().unwrap_or("?")
                ));
            }
            Outcome { out, problems }
        }
        Err(e) => Outcome::problem(format!("demo: {e}")),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into());
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .init();
    let outcome = match cli.command {
        Command::Classify { file } => classify_file(&file),
        Command::Policy {
            command:
                PolicyCommand::Validate {
                    files,
                    template,
                    stack,
                    parameters,
                    pipeline,
                },
        } => match StackParameters::read(template, stack, &parameters) {
            Ok(stack) => {
                let mut outcome = validate_files(&files, &stack);
                if let Some(arn) = pipeline {
                    outcome.problems.extend(check_pipeline(&files, &arn).await);
                }
                outcome
            }
            Err(e) => Outcome::problem(e),
        },
        Command::Policy {
            command: PolicyCommand::Schema,
        } => Outcome {
            out: POLICY_SCHEMA.to_owned(),
            problems: Vec::new(),
        },
        Command::Local {
            command: LocalCommand::Up { repo, demo },
        } => local_up(repo, demo).await,
        Command::Demo { json, repo } => run_demo(json, repo).await,
        Command::IamReport { usage, repo } => {
            let repo = repo.unwrap_or_else(|| gateway::repo_root(&std::env::current_dir().unwrap_or_default()));
            match iam_report::run(&repo, &usage).await {
                Ok(r) => Outcome {
                    out: r.text,
                    problems: r
                        .unjustified
                        .into_iter()
                        .map(|g| format!("iam-report: unused and unexplained: {g}"))
                        .collect(),
                },
                Err(e) => Outcome::problem(format!("iam-report: {e}")),
            }
        }
        Command::Bake {
            pipeline,
            source,
            function,
            reason,
            wait,
            wait_minutes,
            policy_prefix,
            json,
        } => {
            ops::bake(ops::Bake {
                pipeline: &pipeline,
                source: source.as_deref(),
                function: &function,
                policy_prefix: &policy_prefix,
                reason: &reason,
                wait: wait.then(|| std::time::Duration::from_secs(wait_minutes * 60)),
                json,
            })
            .await
        }
        Command::Approve {
            execution,
            table,
            by,
            json,
        } => approval::answer(&execution, &table, None, &by, json).await,
        Command::Reject {
            execution,
            table,
            reason,
            by,
            json,
        } => approval::answer(&execution, &table, Some(&reason), &by, json).await,
        Command::Lineage {
            ami,
            table,
            json,
            mermaid,
        } => lineage::run(&ami, &table, json, mermaid).await,
        Command::Revoke {
            ami,
            reason,
            cascade,
            disable,
            table,
            function,
            by,
            policy_prefix,
            json,
        } => {
            revoke::run(revoke::Revoke {
                ami: &ami,
                reason: &reason,
                cascade,
                disable,
                by: &by,
                table: &table,
                function: &function,
                policy_prefix: &policy_prefix,
                json,
            })
            .await
        }
        Command::Stale { function, json } => stale::run(&function, json).await,
        Command::Status {
            pipeline,
            state_machine,
            max,
            json,
        } => ops::status(&state_machine, pipeline.as_deref(), max, json).await,
        Command::Retention {
            plan: _,
            apply,
            pipeline,
            policy_prefix,
            json,
        } => retention::run(apply, pipeline.as_deref(), &policy_prefix, json).await,
        Command::Replay {
            queue_url,
            function,
            max,
        } => replay::run(&queue_url, &function, max).await,
    };
    // A closed stdout or stderr (`| head`) is not worth a panic: write errors are dropped.
    let _ = std::io::stdout().lock().write_all(outcome.out.as_bytes());
    let mut stderr = std::io::stderr().lock();
    for problem in &outcome.problems {
        // One line per problem, whatever the input held.
        let _ = writeln!(stderr, "bakery: {}", problem.replace(['\n', '\r'], " "));
    }
    if outcome.problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    }
}
