//! `make bench`: Bakery measured beside what users run today, in one run, written to
//! BENCHMARKS.md. Benchmarks, not tests: nothing here asserts a timing.
//!
//! 1. cold start and peak RSS of every function (release build) beside a Python 3.11 + boto3
//!    handler creating the same clients and a bare `lambda_runtime` function (the floor);
//! 2. the size of each release bootstrap, stripped and zipped;
//! 3. state transitions and Lambda invocations per bake against build time;
//! 4. the fan-out of one release to 500 pipelines under StartExecution throttling;
//! 5. the time Bakery adds around the build.
//!
//! Environment: BENCH_RUNS (cold-start rounds, 20), BENCH_BAKES (overhead bakes, 10),
//! BENCH_FANOUT (pipelines, 500), BENCH_THROTTLES (throttled StartExecution calls, 250),
//! BENCH_UNITS (build lengths in units of one second, "1,10,100"), BENCH_SECTIONS
//! ("cold,size,growth,overhead,fanout"), BENCH_OUT (BENCHMARKS.md), BENCH_COMMAND (the command
//! line to print), BENCH_BINARIES (target/release), BENCH_BASELINE (a directory of the same
//! binaries built another way, compared in the same run) and BENCH_BASELINE_LABEL (how they were
//! built, "previous release profile").
//!
//! `bench startup-order DIR` (`make startup-order`) writes functions/startup.ld instead.

mod bakes;
mod coldstart;
mod startup_order;

use coldstart::{summary, Subject};
use gateway::template::{Names, Template};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// The boto3 clients the Python twin of each function creates at init: the SDK clients the
/// function's main.rs (and the `Deps` it builds) creates before it asks for work.
/// publish-region creates its clients per region on first use, so its twin only imports boto3.
const PYTHON_CLIENTS: [(&str, &str); 7] = [
    ("trigger", "ssm,dynamodb,stepfunctions"),
    ("start-build", "imagebuilder,ssm"),
    ("build-watch", "imagebuilder,dynamodb,stepfunctions"),
    ("build-events", "imagebuilder,dynamodb,stepfunctions"),
    ("announce", "sns,dynamodb"),
    ("gate", "imagebuilder"),
    ("publish-region", ""),
];

/// Everything after this line of BENCHMARKS.md is written by hand and kept by `make bench`.
const MARKER: &str = "<!-- Written by hand below this line; `make bench` keeps it. -->";

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let repo = gateway::repo_root(Path::new(env!("CARGO_MANIFEST_DIR")));
    // BENCH_BINARIES: where the release binaries are (target/release).
    let release = std::env::var_os("BENCH_BINARIES")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo.join("target/release"));
    let scratch = repo.join("target/bench/scratch");
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch)?;
    let sections = std::env::var("BENCH_SECTIONS").unwrap_or_else(|_| "cold,size,growth,overhead,fanout".into());
    let want = |s: &str| sections.split(',').any(|x| x == s);
    let out_path = repo.join(std::env::var("BENCH_OUT").unwrap_or_else(|_| "BENCHMARKS.md".into()));
    let started = Instant::now();
    // `bench startup-order DIR`: functions/startup.ld from the unstripped release binaries in DIR.
    if std::env::args().nth(1).as_deref() == Some("startup-order") {
        let dir = std::env::args()
            .nth(2)
            .map(PathBuf::from)
            .ok_or("usage: bench startup-order DIR")?;
        let specs = function_specs(&repo).await?;
        return startup_order::write(
            &startup_subjects(&dir, &scratch, &specs)?,
            &scratch,
            &repo.join("functions/startup.ld"),
        );
    }

    let mut doc = String::new();
    writeln!(doc, "# Benchmarks\n")?;
    writeln!(
        doc,
        "Written by `make bench` (bench/run.sh, the `bench` crate); numbers from one run, on this machine. \
         Benchmarks, not tests: `make test` asserts no timing.\n"
    )?;
    writeln!(doc, "{}", machine(&repo))?;

    let specs = function_specs(&repo).await?;
    let names: Vec<String> = specs.iter().map(|f| f.binary.clone()).collect();
    eprintln!("bench: functions {names:?}");

    if want("cold") {
        eprintln!("bench: cold starts");
        doc.push_str(&cold_starts(&repo, &release, &scratch, &specs)?);
    }
    if want("size") {
        eprintln!("bench: sizes");
        doc.push_str(&sizes(&release, &scratch, &names)?);
    }
    if want("growth") || want("overhead") {
        doc.push_str(&bake_sections(&repo, &release, want("growth"), want("overhead")).await?);
    }
    if want("fanout") {
        eprintln!("bench: fan-out");
        doc.push_str(&fan_out_section(&repo, &release).await?);
    }
    writeln!(doc, "\nThe whole run took {:.0} s.", started.elapsed().as_secs_f64())?;
    // What was written by hand below the marker (the reading of a run) is kept.
    let kept = std::fs::read_to_string(&out_path)
        .ok()
        .and_then(|old| old.find(MARKER).map(|i| old[i..].to_owned()))
        .unwrap_or_else(|| format!("{MARKER}\n"));
    doc.push('\n');
    doc.push_str(&kept);
    std::fs::write(&out_path, &doc)?;
    eprintln!("bench: wrote {}", out_path.display());
    Ok(())
}

fn sh(cmd: &str) -> String {
    std::process::Command::new("bash")
        .args(["-c", cmd])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn machine(repo: &Path) -> String {
    let cpu = sh("lscpu | sed -n 's/^Model name: *//p' | head -1");
    let cores = sh("nproc");
    let mem = sh("free -g | awk '/^Mem:/ {print $2\" GiB\"}'");
    let kernel = sh("uname -sr");
    let rustc = sh("rustc --version");
    let python = sh(&format!("{}/target/bench/venv/bin/python --version", repo.display()));
    let load = sh("cut -d' ' -f1-3 /proc/loadavg");
    let commit = sh(&format!("git -C {} rev-parse --short HEAD", repo.display()));
    let knobs: Vec<String> = std::env::vars()
        .filter(|(k, _)| k.starts_with("BENCH_") && k != "BENCH_COMMAND")
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let command = std::env::var("BENCH_COMMAND").unwrap_or_else(|_| "make bench".into());
    let command = if knobs.is_empty() {
        command
    } else {
        format!("{} {command}", knobs.join(" "))
    };
    let mut s = String::new();
    let _ = writeln!(s, "## Machine and command\n");
    let _ = writeln!(s, "- command: `{command}` at commit {commit}");
    let _ = writeln!(
        s,
        "- machine: the workplace's `rust` kind (see the `env` tool): {cores} cores of {cpu}, {mem}, {kernel}; \
         the cores are shared with other sessions' builds, so the spread (min–max) is part of the result \
         (load average at start: {load})"
    );
    let _ = writeln!(s, "- {rustc}; {python}; release profile as in the root Cargo.toml");
    s
}

/// The template's functions as a deploy names them, with their environment.
async fn function_specs(repo: &Path) -> Result<Vec<gateway::template::Function>, Error> {
    let path = repo.join("template.yaml");
    let sam = Template::parse(&std::fs::read_to_string(&path)?)?;
    let overrides: BTreeMap<String, String> = [("PublishRegions".to_owned(), gateway::world::REGIONS.join(","))].into();
    let parameters = sam.parameters(&overrides);
    let mut with = parameters.clone();
    with.insert("AWS::Region".into(), "us-east-1".into());
    with.insert("AWS::AccountId".into(), "123456789012".into());
    with.insert("AWS::StackName".into(), "bakery".into());
    let template = Template::translate(repo, &path, &with).await?;
    let mut names = Names {
        stack: "bakery".into(),
        region: "us-east-1".into(),
        account: "123456789012".into(),
        parameters,
        lists: template.list_parameters(),
        resources: BTreeMap::new(),
    };
    gateway::deploy::name_resources(&template, &mut names)?;
    let mut functions = template.functions(&names)?;
    functions.sort_by(|a, b| a.binary.cmp(&b.binary));
    Ok(functions)
}

/// The certificate store of Lambda's provided.al2023 as rustls-native-certs finds it there:
/// /etc/ssl/certs is a link to /etc/pki/tls/certs, which holds two bundles (ca-bundle.crt
/// and ca-bundle.trust.crt, whose "TRUSTED CERTIFICATE" blocks rustls skips) and no
/// per-certificate files. Rebuilt from this machine's bundle.
fn al2023_certs(scratch: &Path) -> Result<PathBuf, Error> {
    let dir = scratch.join("bench-al2023-certs");
    std::fs::create_dir_all(&dir)?;
    let bundle = std::fs::read_to_string("/etc/ssl/certs/ca-certificates.crt")?;
    std::fs::write(dir.join("ca-bundle.crt"), &bundle)?;
    std::fs::write(
        dir.join("ca-bundle.trust.crt"),
        bundle
            .replace("BEGIN CERTIFICATE", "BEGIN TRUSTED CERTIFICATE")
            .replace("END CERTIFICATE", "END TRUSTED CERTIFICATE"),
    )?;
    Ok(dir)
}

/// Binaries built another way (the previous release profile, say), to compare in the same run
/// (BENCH_BASELINE).
fn baseline_dir() -> Option<PathBuf> {
    std::env::var_os("BENCH_BASELINE")
        .map(PathBuf::from)
        .filter(|p| p.is_dir())
}

/// How the BENCH_BASELINE binaries were built, as the report names them (BENCH_BASELINE_LABEL).
fn baseline_label() -> String {
    std::env::var("BENCH_BASELINE_LABEL").unwrap_or_else(|_| "previous release profile".into())
}

fn lambda_env(name: &str, memory_mb: u64, endpoint: &str, home: &Path) -> BTreeMap<String, String> {
    [
        ("PATH", "/usr/local/bin:/usr/bin:/bin".to_owned()),
        ("HOME", home.display().to_string()),
        ("LANG", "en_US.UTF-8".to_owned()),
        ("TZ", ":UTC".to_owned()),
        ("AWS_LAMBDA_FUNCTION_NAME", name.to_owned()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", memory_mb.to_string()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_owned()),
        ("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}")),
        ("AWS_LAMBDA_LOG_FORMAT", "JSON".to_owned()),
        ("AWS_REGION", "us-east-1".to_owned()),
        ("AWS_DEFAULT_REGION", "us-east-1".to_owned()),
        ("AWS_ACCESS_KEY_ID", "testing".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "testing".to_owned()),
        ("AWS_SESSION_TOKEN", "testing".to_owned()),
        // A local port that accepts nothing: no request can leave this machine.
        ("AWS_ENDPOINT_URL", endpoint.to_owned()),
        ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
        ("_HANDLER", "bootstrap".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// Every function as Lambda starts it, and the bare floor, from the binaries in `dir`; their AWS
/// endpoint a port that accepts nothing.
fn startup_subjects(dir: &Path, scratch: &Path, specs: &[gateway::template::Function]) -> Result<Vec<Subject>, Error> {
    let endpoint = std::net::TcpListener::bind("127.0.0.1:0")?;
    let endpoint_url = format!("http://{}", endpoint.local_addr()?);
    // Kept bound (and never accepted) for the whole run: leaked, as the run is the process.
    std::mem::forget(endpoint);
    let home = scratch.join("home");
    std::fs::create_dir_all(&home)?;
    let mut subjects: Vec<Subject> = specs
        .iter()
        .map(|f| {
            let mut env = lambda_env(&f.name, f.memory_mb, &endpoint_url, &home);
            env.extend(f.environment.clone());
            Subject {
                name: f.binary.clone(),
                group: "rust",
                function: f.binary.clone(),
                program: dir.join(&f.binary),
                args: vec![],
                cwd: None,
                env,
            }
        })
        .collect();
    subjects.push(Subject {
        name: "bench-bare".into(),
        group: "floor",
        function: String::new(),
        program: dir.join("bench-bare"),
        args: vec![],
        cwd: None,
        env: lambda_env("bench-bare", 256, &endpoint_url, &home),
    });
    Ok(subjects)
}

fn cold_starts(
    repo: &Path,
    release: &Path,
    scratch: &Path,
    specs: &[gateway::template::Function],
) -> Result<String, Error> {
    let runs: usize = env_or("BENCH_RUNS", 20);
    // The AWS endpoint: bound, never accepted; whatever connects during init is counted below.
    let endpoint = std::net::TcpListener::bind("127.0.0.1:0")?;
    endpoint.set_nonblocking(true)?;
    let endpoint_url = format!("http://{}", endpoint.local_addr()?);
    let home = scratch.join("home");
    std::fs::create_dir_all(&home)?;
    let certs = al2023_certs(scratch)?;
    let python = repo.join("target/bench/venv/bin/python");

    let mut subjects = Vec::new();
    subjects.push(Subject {
        name: "bare lambda_runtime (no SDK)".into(),
        group: "floor",
        function: String::new(),
        program: release.join("bench-bare"),
        args: vec![],
        cwd: None,
        env: lambda_env("bench-bare", 256, &endpoint_url, &home),
    });
    subjects.push(Subject {
        name: "Python 3.11 awslambdaric (no boto3)".into(),
        group: "python-floor",
        function: String::new(),
        program: python.clone(),
        args: vec!["-m".into(), "awslambdaric".into(), "handler.handler".into()],
        cwd: Some(repo.join("bench/python")),
        env: {
            let mut e = lambda_env("python-bare", 256, &endpoint_url, &home);
            e.insert("BENCH_BOTO3_CLIENTS".into(), "-".into());
            e
        },
    });
    // Where a function's start-up goes: the bare function plus the SDK's set-up alone, with the
    // functions' configuration (bench-sdk) and with one built from Lambda's environment alone
    // (bench-sdk-env); both send through bakery_aws::http. The AL2023 store, as the functions get.
    let sdk_rows = [
        ("bench-sdk", "bakery_aws::sdk_config", "config"),
        (
            "bench-sdk",
            "bakery_aws::sdk_config + SSM, DynamoDB, SFN clients",
            "clients",
        ),
        ("bench-sdk-env", "env-only config", "config"),
        (
            "bench-sdk-env",
            "env-only config + SSM, DynamoDB, SFN clients",
            "clients",
        ),
    ];
    for (binary, label, variant) in sdk_rows {
        let mut env = lambda_env(binary, 256, &endpoint_url, &home);
        env.insert("BENCH_SDK".into(), variant.into());
        env.insert(
            "SSL_CERT_FILE".into(),
            certs.join("ca-bundle.crt").display().to_string(),
        );
        env.insert("SSL_CERT_DIR".into(), certs.display().to_string());
        subjects.push(Subject {
            name: format!("bare + {label} ({binary})"),
            group: "sdk",
            function: label.into(),
            program: release.join(binary),
            args: vec![],
            cwd: None,
            env,
        });
    }
    let pycache = scratch.join("pycache");
    for s in subjects.iter_mut().filter(|s| s.group == "python-floor") {
        s.env
            .insert("PYTHONPYCACHEPREFIX".into(), pycache.display().to_string());
    }
    for f in specs {
        let mut env = lambda_env(&f.name, f.memory_mb, &endpoint_url, &home);
        env.extend(f.environment.clone());
        subjects.push(Subject {
            name: format!("{} (this machine's /etc/ssl/certs)", f.binary),
            group: "rust-debian",
            function: f.binary.clone(),
            program: release.join(&f.binary),
            args: vec![],
            cwd: None,
            env: env.clone(),
        });
        let mut al = env.clone();
        al.insert(
            "SSL_CERT_FILE".into(),
            certs.join("ca-bundle.crt").display().to_string(),
        );
        al.insert("SSL_CERT_DIR".into(), certs.display().to_string());
        subjects.push(Subject {
            name: format!("{} (AL2023 bundle)", f.binary),
            group: "rust",
            function: f.binary.clone(),
            program: release.join(&f.binary),
            args: vec![],
            cwd: None,
            env: al.clone(),
        });
        if let Some(dir) = baseline_dir() {
            subjects.push(Subject {
                name: format!("{} ({}, AL2023 bundle)", f.binary, baseline_label()),
                group: "before",
                function: f.binary.clone(),
                program: dir.join(&f.binary),
                args: vec![],
                cwd: None,
                env: al.clone(),
            });
        }
        let clients = PYTHON_CLIENTS
            .iter()
            .find(|(n, _)| *n == f.binary)
            .map(|(_, c)| *c)
            .unwrap_or("");
        let mut py = env;
        py.insert("BENCH_BOTO3_CLIENTS".into(), clients.into());
        py.insert("PYTHONPYCACHEPREFIX".into(), pycache.display().to_string());
        subjects.push(Subject {
            name: format!("{} Python twin", f.binary),
            group: "python",
            function: f.binary.clone(),
            program: python.clone(),
            args: vec!["-m".into(), "awslambdaric".into(), "handler.handler".into()],
            cwd: Some(repo.join("bench/python")),
            env: py,
        });
    }

    // One untimed start each (page cache, Python's bytecode cache), failing early on a broken subject.
    for s in &subjects {
        coldstart::run_once(s, scratch)?;
    }
    let mut samples: Vec<Vec<coldstart::Sample>> = vec![Vec::new(); subjects.len()];
    for round in 0..runs {
        // Interleaved, and rotated so that no subject always follows the same one.
        for i in 0..subjects.len() {
            let k = (i + round) % subjects.len();
            samples[k].push(coldstart::run_once(&subjects[k], scratch)?);
        }
    }
    let mut leaked = 0;
    while endpoint.accept().is_ok() {
        leaked += 1;
    }

    let ms = |v: &[coldstart::Sample]| summary(v.iter().map(|s| s.ready.as_secs_f64() * 1000.0).collect());
    let mb = |v: &[coldstart::Sample]| summary(v.iter().map(|s| s.max_rss_kb as f64 / 1024.0).collect());
    let idx = |group: &str, function: &str| subjects.iter().position(|s| s.group == group && s.function == function);
    let bare = idx("floor", "").ok_or("no floor")?;
    let (_, bare_ms, _) = ms(&samples[bare]);
    let (_, bare_mb, _) = mb(&samples[bare]);

    let mut s = String::new();
    writeln!(s, "\n## 1. Cold start and peak RSS\n")?;
    writeln!(
        s,
        "Process start (fork/exec) to its first `GET /2018-06-01/runtime/invocation/next` on the bench's own \
         Runtime API; peak RSS is the process's VmHWM (/proc/<pid>/status) at that moment, then SIGKILL. {runs} interleaved rounds after one \
         untimed start each; ms and MB as min / **median** / max. Every function gets the environment template.yaml \
         gives it, Lambda's own variables and dummy credentials; `AWS_ENDPOINT_URL` is a local port that accepts \
         nothing (connections made to it during every start: {leaked})."
    )?;
    writeln!(
        s,
        "The Python twin of each function is Python 3.11 with boto3 (bench/requirements.txt, pinned) under \
         awslambdaric (the runtime interface client of Lambda's Python images), creating at import the boto3 \
         clients the function creates before it asks for work.\n"
    )?;
    writeln!(
        s,
        "| function | ready ms (AL2023 bundle) | ready ms (/etc/ssl/certs) | peak RSS MB | × bare ready | × bare RSS | Python twin ready ms | Python RSS MB | Python ÷ Rust ready | Python ÷ Rust RSS |"
    )?;
    writeln!(s, "|---|---|---|---|---|---|---|---|---|---|")?;
    let fmt3 = |(a, b, c): (f64, f64, f64), p: usize| format!("{a:.p$} / **{b:.p$}** / {c:.p$}");
    for f in specs {
        let (Some(r), Some(d), Some(p)) = (
            idx("rust", &f.binary),
            idx("rust-debian", &f.binary),
            idx("python", &f.binary),
        ) else {
            continue;
        };
        let (rm, pm) = (ms(&samples[r]), ms(&samples[p]));
        let (rr, pr) = (mb(&samples[r]), mb(&samples[p]));
        writeln!(
            s,
            "| {} | {} | {} | {} | {:.1} | {:.1} | {} | {:.1} | {:.0} | {:.1} |",
            f.binary,
            fmt3(rm, 1),
            fmt3(ms(&samples[d]), 1),
            fmt3(rr, 1),
            rm.1 / bare_ms,
            rr.1 / bare_mb,
            fmt3(pm, 0),
            pr.1,
            pm.1 / rm.1,
            pr.1 / rr.1,
        )?;
    }
    let py_floor = idx("python-floor", "").ok_or("no python floor")?;
    writeln!(
        s,
        "| *bare lambda_runtime, no SDK (floor)* | {} | | {} | 1.0 | 1.0 | | | | |",
        fmt3(ms(&samples[bare]), 1),
        fmt3(mb(&samples[bare]), 1)
    )?;
    writeln!(
        s,
        "| *Python awslambdaric, no boto3* | | | | | | {} | {:.1} | | |",
        fmt3(ms(&samples[py_floor]), 0),
        mb(&samples[py_floor]).1
    )?;

    if baseline_dir().is_some() {
        let label = baseline_label();
        writeln!(
            s,
            "\nThe same functions built with the {label} (BENCH_BASELINE), in the same rounds:\n"
        )?;
        writeln!(
            s,
            "| function | ready ms, {label} | ready ms, as built | peak RSS MB, {label} | peak RSS MB, as built |\n|---|---|---|---|---|"
        )?;
        for f in specs {
            let (Some(b), Some(r)) = (idx("before", &f.binary), idx("rust", &f.binary)) else {
                continue;
            };
            writeln!(
                s,
                "| {} | {} | {} | {} | {} |",
                f.binary,
                fmt3(ms(&samples[b]), 1),
                fmt3(ms(&samples[r]), 1),
                fmt3(mb(&samples[b]), 1),
                fmt3(mb(&samples[r]), 1)
            )?;
        }
        writeln!(s)?;
    }
    writeln!(s, "\n### Where the functions' extra start-up goes\n")?;
    writeln!(
        s,
        "bench-sdk (bench/bare/src/sdk.rs) is the bare function plus what every function does before it asks for \
         work: `bakery_aws::sdk_config` (the SDK's defaults, sending through bakery_aws::http), then optionally the \
         trigger's three clients. bench-sdk-env (bench/bare/src/sdk_env.rs) builds the configuration from Lambda's \
         environment alone (region, environment credentials, endpoint), with the same HTTP client.\n"
    )?;
    writeln!(
        s,
        "| subject | ready ms | peak RSS MB | × bare ready | × bare RSS |\n|---|---|---|---|---|"
    )?;
    for (k, x) in subjects.iter().enumerate().filter(|(_, x)| x.group == "sdk") {
        let (m, r) = (ms(&samples[k]), mb(&samples[k]));
        writeln!(
            s,
            "| {} | {} | {} | {:.1} | {:.1} |",
            x.name,
            fmt3(m, 1),
            fmt3(r, 1),
            m.1 / bare_ms,
            r.1 / bare_mb
        )?;
    }

    // Certificates: what each layout makes a function read before it asks for work.
    writeln!(s, "\n### Certificates read before the first request\n")?;
    writeln!(
        s,
        "The functions send through bakery_aws::http, whose trust anchors are Mozilla's roots compiled in \
         (webpki-roots): no certificate store is read or parsed before the first request, whatever the platform's \
         layout. The SDK's default HTTPS client, which the functions used before, loads the platform's roots with \
         rustls-native-certs when the first client is built: on Debian, without `SSL_CERT_FILE` / `SSL_CERT_DIR`, the \
         bundle /etc/ssl/certs/ca-certificates.crt **and** every file of /etc/ssl/certs, each certificate parsed \
         twice; on Lambda's provided.al2023 the two bundles of /etc/pki/tls/certs. The \"AL2023 bundle\" column of \
         section 1 points `SSL_CERT_FILE`/`SSL_CERT_DIR` at a copy of that layout, the /etc/ssl/certs column leaves \
         them unset; the ratios use the first. strace counts what each start touches:\n"
    )?;
    writeln!(
        s,
        "| subject | certificate-store files opened (strace) | certificate-store paths touched |"
    )?;
    writeln!(s, "|---|---|---|")?;
    let traced: Vec<&Subject> = subjects
        .iter()
        .filter(|x| x.function == "trigger" || x.group == "floor")
        .collect();
    for t in traced {
        match coldstart::cert_files_opened(t, scratch) {
            Some((opened, touched)) => writeln!(s, "| {} | {opened} | {touched} |", t.name)?,
            None => writeln!(s, "| {} | (strace not installed) | |", t.name)?,
        }
    }
    Ok(s)
}

fn sizes(release: &Path, scratch: &Path, names: &[String]) -> Result<String, Error> {
    let mut s = String::new();
    writeln!(s, "\n## 2. Size of each bootstrap\n")?;
    writeln!(
        s,
        "target/release/<function> as built (the profile strips it), copied as `bootstrap`, run through `strip` \
         again (no change expected), and zipped (deflate, level 9) as `sam build` / cargo-lambda zip it. Target: \
         at most 8 MB unzipped (1 MB = 10^6 bytes here). \"Start-up code first\" is the size of the section \
         functions/startup.ld gathers the code a function runs before its first request for work in, at the \
         front of the executable (`make startup-order`). The last two columns are the same binaries built with \
         the {} (BENCH_BASELINE), where given.\n",
        baseline_label()
    )?;
    writeln!(
        s,
        "| bootstrap | stripped MB | zipped MB | ≤ 8 MB | start-up code first KB | baseline: stripped MB | zipped MB |"
    )?;
    writeln!(s, "|---|---|---|---|---|---|---|")?;
    let mut all: Vec<String> = names.to_vec();
    all.extend(["bench-bare", "bench-sdk", "bench-sdk-env"].map(String::from));
    for n in &all {
        let before = match baseline_dir().filter(|d| d.join(n).exists()) {
            Some(d) => Some(measure_size(&d.join(n), &scratch.join("zip-before").join(n))?),
            None => None,
        };
        let (bu, bz) = before.map(|(u, z)| (format!("{u:.2}"), z)).unwrap_or_default();
        let (unzipped, zipped) = measure_size(&release.join(n), &scratch.join("zip").join(n))?;
        let label = match n.as_str() {
            "bench-bare" => "*bare lambda_runtime (floor)*".to_owned(),
            "bench-sdk" => "*bench-sdk: bare + bakery_aws::sdk_config + 3 clients*".to_owned(),
            "bench-sdk-env" => "*bench-sdk-env: bare + env-only config + 3 clients*".to_owned(),
            _ => n.clone(),
        };
        let startup = startup_order::section_range(
            &sh(&format!("readelf -SW {}", release.join(n).display())),
            startup_order::SECTION,
        )
        .map(|(lo, hi)| format!("{:.0}", (hi - lo) as f64 / 1024.0))
        .unwrap_or_else(|| "none".into());
        writeln!(
            s,
            "| {label} | {unzipped:.2} | {zipped} | {} | {startup} | {bu} | {bz} |",
            if unzipped <= 8.0 { "yes" } else { "no" }
        )?;
    }
    let profile = sh("sed -n '/^\\[profile.release\\]/,/^$/p' Cargo.toml");
    writeln!(
        s,
        "\nThe release profile these were built with:\n\n```toml\n{profile}\n```"
    )?;
    Ok(s)
}

/// (stripped MB, zipped MB as text) of one binary, copied into `dir` as `bootstrap`.
fn measure_size(binary: &Path, dir: &Path) -> Result<(f64, String), Error> {
    std::fs::create_dir_all(dir)?;
    let bootstrap = dir.join("bootstrap");
    std::fs::copy(binary, &bootstrap)?;
    let _ = std::process::Command::new("strip").arg(&bootstrap).status();
    let unzipped = std::fs::metadata(&bootstrap)?.len() as f64 / 1e6;
    let zip = dir.join("bootstrap.zip");
    let ok = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys, zipfile\nwith zipfile.ZipFile(sys.argv[1], 'w', zipfile.ZIP_DEFLATED, compresslevel=9) as z: z.write(sys.argv[2], 'bootstrap')",
        ])
        .arg(&zip)
        .arg(&bootstrap)
        .status()?
        .success();
    let zipped = if ok {
        format!("{:.2}", std::fs::metadata(&zip)?.len() as f64 / 1e6)
    } else {
        "?".into()
    };
    Ok((unzipped, zipped))
}

async fn bake_sections(repo: &Path, release: &Path, growth: bool, overhead: bool) -> Result<String, Error> {
    let unit = Duration::from_secs(1);
    let units: Vec<u32> = std::env::var("BENCH_UNITS")
        .unwrap_or_else(|_| "1,10,100".into())
        .split(',')
        .filter_map(|u| u.trim().parse().ok())
        .collect();
    let bakes: usize = env_or("BENCH_BAKES", 10);
    let topic = bakes::soe_topic("123456789012");
    let params = |wait: &'static str| -> Vec<(&str, &str)> {
        vec![
            ("SoeReleaseTopicArn", topic.as_str()),
            ("BuildWaitSeconds", wait),
            ("BusyRetrySeconds", "1"),
            ("CopyPollSeconds", "1"),
        ]
    };
    let (ep, pp) = (params("3600"), params("1"));

    let mut s = String::new();
    eprintln!("bench: starting the local AWS (event-driven, BuildWaitSeconds=3600)");
    let aws = bakes::local_aws(repo, release, &ep, Duration::from_millis(250)).await?;
    gateway::world::create_soe_topic(&aws).await?;
    let world = gateway::world::seed(&aws, "bench").await?;
    if growth {
        eprintln!("bench: growth, builds of {units:?} s, both designs at once");
        let poller = bakes::local_aws(repo, release, &pp, Duration::from_millis(250)).await?;
        let poll_world = gateway::world::seed(&poller, "bench").await?;
        let (event, poll) = tokio::join!(
            bakes::growth(&aws, &world, unit, &units, "event"),
            bakes::growth(&poller, &poll_world, unit, &units, "poll"),
        );
        drop(poller);
        let (event, poll) = (event?, poll?);
        writeln!(
            s,
            "\n## 3. State transitions and Lambda invocations per bake, against build time\n"
        )?;
        writeln!(
            s,
            "One bake per build length on the local AWS (the real template, state machine and release binaries; \
             builds of 1, 10 and 100 units of 1 s: the emulator's four phases set to a quarter each). Counted from \
             GetExecutionHistory: states entered (what Standard workflows bill as state transitions), Lambda tasks the \
             machine scheduled, other service tasks; plus the Lambda invocations the gateway made outside the execution \
             during the bake (EventBridge and SNS deliveries, by function). Two deployments side by side, run at \
             the same time: Bakery as deployed (`BuildWaitSeconds=3600`: the task token waits for the build's \
             state-change event), and the same machine with `BuildWaitSeconds=1`, whose timeout fallback \
             (CheckBuild, BuildFinished, back to WaitForBuild) turns it into a poll every unit. The last columns are \
             the plain polling design computed: Wait N s → Task (a status Lambda) → Choice, N = 1 unit: 3 transitions \
             and 1 invocation per poll, ⌈build / N⌉ polls, on top of the same bake without its wait.\n"
        )?;
        writeln!(
            s,
            "| build (units) | event-driven: status | history events | transitions | Lambda tasks | other tasks | async invocations | Lambda total | wall s | timeout fallback every unit: transitions | Lambda total | computed polling: transitions | Lambda total |"
        )?;
        writeln!(s, "|---|---|---|---|---|---|---|---|---|---|---|---|---|")?;
        let base = event.first().cloned();
        for (e, p) in event.iter().zip(poll.iter()) {
            let (bt, bl) = base
                .as_ref()
                .map(|b| (b.cost.transitions, b.cost.lambda_total()))
                .unwrap_or_default();
            let polls = e.units as usize;
            let asyncs: Vec<String> = e
                .cost
                .async_invocations
                .iter()
                .map(|(f, n)| format!("{f} {n}"))
                .collect();
            writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {:.1} | {} | {} | {} | {} |",
                e.units,
                e.status,
                e.cost.events,
                e.cost.transitions,
                e.cost.lambda_tasks,
                e.cost.other_tasks,
                asyncs.join(", "),
                e.cost.lambda_total(),
                e.wall.as_secs_f64(),
                p.cost.transitions,
                p.cost.lambda_total(),
                bt + 3 * polls,
                bl + polls,
            )?;
        }
        writeln!(
            s,
            "\nThe computed column adds 3 transitions and 1 invocation per poll to the event-driven 1-unit bake. \
             At 30-second polls a 45-minute build is 90 polls: 270 transitions and 90 invocations per bake that the \
             event-driven machine does not make."
        )?;
    }
    if overhead {
        eprintln!("bench: overhead, {bakes} bakes");
        let build = Duration::from_secs(1);
        let o = bakes::overhead(&aws, &topic, build, bakes).await?;
        writeln!(s, "\n## 5. Time Bakery adds around the build\n")?;
        writeln!(
            s,
            "{bakes} bakes one after the other on the local AWS, each triggered by an SOE release published on the SNS \
             topic (the gateway delivers it to the trigger function), each a build of {} s (four phases), three \
             publication regions with the emulator's copy times. Times from GetExecutionHistory against the \
             moment the bench published the release; the build's end is StartBuild's end plus the build's \
             length. The local AWS is moto and the gateway (debug build); the functions are the release build. \
             Median (min–max), seconds.\n",
            build.as_secs_f64()
        )?;
        let ok = o.iter().filter(|b| b.status == "SUCCEEDED").count();
        let row = |label: &str, v: Vec<f64>| {
            let (a, b, c) = summary(v);
            format!("| {label} | **{b:.2}** ({a:.2}–{c:.2}) |\n")
        };
        writeln!(s, "| span | seconds |\n|---|---|")?;
        s.push_str(&row(
            "release published → execution started (SNS, trigger, StartExecution)",
            o.iter().map(|b| b.to_execution).collect(),
        ));
        s.push_str(&row(
            "**release published → build started** (StartBuild done)",
            o.iter().map(|b| b.to_build_start).collect(),
        ));
        s.push_str(&row(
            "build ended → WaitForBuild resumed (state-change event, build-events, SendTaskSuccess)",
            o.iter().map(|b| b.build_end_to_resumed).collect(),
        ));
        s.push_str(&row(
            "build ended → gate passed",
            o.iter().map(|b| b.build_end_to_gated).collect(),
        ));
        s.push_str(&row(
            "build ended → every region published (copies, shares, tags, parameters)",
            o.iter().map(|b| b.build_end_to_published).collect(),
        ));
        s.push_str(&row(
            "**build ended → last publication** (Announce: the SNS message)",
            o.iter().map(|b| b.build_end_to_announced).collect(),
        ));
        writeln!(s, "\n{ok} of {bakes} bakes SUCCEEDED.")?;
    }
    drop(aws);
    Ok(s)
}

async fn fan_out_section(repo: &Path, release: &Path) -> Result<String, Error> {
    let pipelines: usize = env_or("BENCH_FANOUT", 500);
    let throttles: u32 = env_or("BENCH_THROTTLES", 250);
    let topic = bakes::soe_topic("123456789012");
    let aws = bakes::local_aws(
        repo,
        release,
        &[
            ("SoeReleaseTopicArn", topic.as_str()),
            ("BuildWaitSeconds", "20"),
            ("BusyRetrySeconds", "1"),
            ("CopyPollSeconds", "1"),
        ],
        Duration::from_millis(50),
    )
    .await?;
    let f = bakes::fan_out(&aws, pipelines, throttles).await?;
    drop(aws);
    let mut s = String::new();
    writeln!(
        s,
        "\n## 4. Fan-out: one release, {pipelines} pipelines, StartExecution throttled\n"
    )?;
    writeln!(
        s,
        "{pipelines} pipelines whose policies follow the SOE topic (seeded as tests/tests/scenarios/triggers.rs seeds \
         its fan-out), the next {throttles} StartExecution calls throttled by the gateway's `/_bakery/throttle` knob, \
         then the release's SNS event given to the trigger function (release build) by an asynchronous Invoke, as the SNS subscription gives it (a failed invocation is retried twice, as Lambda retries, then dead-lettered); the bench waits until every pipeline has its execution. \
         StartExecution calls are counted from the gateway's authorization log (every call is authorized before a \
         knob answers it).\n"
    )?;
    writeln!(s, "| measure | value |\n|---|---|")?;
    writeln!(
        s,
        "| time until all started (Invoke to the last execution's start) | **{:.1} s** |",
        f.took.as_secs_f64()
    )?;
    writeln!(
        s,
        "| starts per second | {:.0} |",
        f.started as f64 / f.took.as_secs_f64()
    )?;
    writeln!(s, "| pipelines started / not started | {} / {} |", f.started, f.refused)?;
    writeln!(
        s,
        "| executions of the state machine / distinct pipelines | {} / {} (lost: {}) |",
        f.executions,
        f.distinct_pipelines,
        f.pipelines.saturating_sub(f.distinct_pipelines)
    )?;
    writeln!(
        s,
        "| throttles injected / met | {} / {} |",
        f.throttles_injected, f.throttles_met
    )?;
    writeln!(
        s,
        "| StartExecution calls / per start | {} / **{:.2}** |",
        f.start_calls,
        f.start_calls as f64 / f.started.max(1) as f64
    )?;
    if let Some(e) = &f.trigger_error {
        writeln!(s, "\nThe trigger's invocations: {e}")?;
    }
    Ok(s)
}
