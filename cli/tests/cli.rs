//! The `bakery` binary as a user runs it: stdout, stderr and exit codes.

use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn bakery(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_bakery"))
        .args(args)
        .current_dir(root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The command may exit before reading everything; a broken pipe here is fine.
    let _ = child.stdin.take().unwrap().write_all(stdin);
    child.wait_with_output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn fixtures(dir: &str) -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(root().join("events").join(dir))
        .unwrap()
        .map(|e| format!("events/{dir}/{}", e.unwrap().file_name().to_string_lossy()))
        .collect();
    files.sort();
    files
}

#[test]
fn classify_prints_one_json_object_with_an_action() {
    for dir in ["sns", "eventbridge", "scheduler", "manual"] {
        for file in fixtures(dir) {
            let out = bakery(&["classify", &file], b"");
            assert_eq!(out.status.code(), Some(0), "{file}: {}", text(&out.stderr));
            assert!(out.stderr.is_empty(), "{file}: {}", text(&out.stderr));
            let stdout = text(&out.stdout);
            assert_eq!(stdout.lines().count(), 1, "{file}: one line of JSON");
            let v: Value = serde_json::from_str(&stdout).unwrap();
            match v["action"].as_str() {
                Some("bake") => assert!(v["trigger"]["origin"]["kind"].is_string(), "{file}: {v}"),
                Some("ignore") => assert!(!v["reason"].as_str().unwrap_or_default().is_empty(), "{file}: {v}"),
                Some("stale") => assert!(v["publish"].is_boolean(), "{file}: {v}"),
                Some("revoked") => assert!(
                    v["revoked"]["amis"].as_array().is_some_and(|a| !a.is_empty()),
                    "{file}: {v}"
                ),
                other => panic!("{file}: action {other:?}"),
            }
        }
    }
}

#[test]
fn classify_reports_the_trigger() {
    let out = bakery(&["classify", "events/sns/soe-release.json"], b"");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["action"], "bake");
    assert_eq!(v["trigger"]["origin"]["kind"], "soeRelease");
    let amis: Vec<(&str, &str)> = v["trigger"]["sourceAmis"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["region"].as_str().unwrap(), a["imageId"].as_str().unwrap()))
        .collect();
    assert_eq!(
        amis,
        [
            ("eu-west-1", "ami-0fedcba9876543210"),
            ("us-east-1", "ami-0a1b2c3d4e5f67890")
        ]
    );

    let out = bakery(
        &["classify", "events/eventbridge/ami-state-change-deregistered.json"],
        b"",
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["action"], "ignore");
    assert!(v["reason"].as_str().unwrap().contains("deregistered"));
}

#[test]
fn classify_reads_stdin() {
    let event = std::fs::read(root().join("events/sns/imagebuilder-available.json")).unwrap();
    let out = bakery(&["classify", "-"], &event);
    assert_eq!(out.status.code(), Some(0));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["trigger"]["origin"]["semver"], "1237940039285380274899124227");
}

#[test]
fn malformed_input_is_one_line_on_stderr_and_exit_2() {
    for file in fixtures("malformed") {
        let out = bakery(&["classify", &file], b"");
        assert_eq!(out.status.code(), Some(2), "{file}");
        assert!(out.stdout.is_empty(), "{file}: nothing on stdout");
        let err = text(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{file}: {err}");
        assert!(err.starts_with(&format!("bakery: {file}: ")), "{file}: {err}");
    }
    let out = bakery(&["classify", "events/no-such-file.json"], b"");
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("cannot read"));
}

#[test]
fn policy_validate_lists_every_error() {
    let ok = bakery(
        &[
            "policy",
            "validate",
            "--parameter",
            "PublishRegions=us-east-1,eu-west-1,ap-southeast-2",
            "schema/examples/web-app.json",
            "schema/examples/minimal.json",
        ],
        b"",
    );
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok.stderr));
    assert_eq!(text(&ok.stdout).lines().count(), 2);

    let bad = bakery(&["policy", "validate", "schema/examples/broken.json"], b"");
    assert_eq!(bad.status.code(), Some(2));
    let err = text(&bad.stderr);
    assert_eq!(err.lines().count(), 19, "{err}");
    assert!(err
        .lines()
        .all(|l| l.starts_with("bakery: schema/examples/broken.json: ")));
    assert!(err.contains("publish.regions[2].kmsKeyId: not a KMS key ARN"));

    let stdin = bakery(&["policy", "validate", "-"], b"{\"schemaVersion\": 1}");
    assert_eq!(stdin.status.code(), Some(2));
    assert!(text(&stdin.stderr).contains("-: pipelineArn: missing"));
}

/// A policy that asks for more than the stack's parameters grant is refused before any bake,
/// naming the template parameter to change.
#[test]
fn policy_validate_refuses_what_the_stack_may_not_do() {
    let policy = std::fs::read_to_string(root().join("schema/examples/web-app.json")).unwrap();
    let out = bakery(&["policy", "validate", "-"], policy.as_bytes());
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("-: publish.regions[1].region: the stack may not publish to eu-west-1"),
        "{err}"
    );
    assert!(err.contains("template parameter PublishRegions"), "{err}");

    let elsewhere = policy
        .replace("/bakery/web-app/latest", "/team/web-app/latest")
        .replace("111122223333:bakery-publications", "111122223333:team-announcements");
    let args = [
        "policy",
        "validate",
        "--parameter",
        "PublishRegions=us-east-1,eu-west-1,ap-southeast-2",
        "-",
    ];
    let err = text(&bakery(&args, elsewhere.as_bytes()).stderr);
    assert!(
        err.contains("publish.ssmParameters[0]") && err.contains("template parameter PublishedParameterPrefix"),
        "{err}"
    );
    assert!(
        err.contains("notify.topicArn") && err.contains("template parameter NotifyTopicArns"),
        "{err}"
    );

    let granted = [
        "policy",
        "validate",
        "--parameter",
        "PublishRegions=us-east-1,eu-west-1,ap-southeast-2",
        "--parameter",
        "PublishedParameterPrefix=/team/",
        "--parameter",
        "NotifyTopicArns=arn:aws:sns:us-east-1:111122223333:team-announcements",
        "-",
    ];
    let ok = bakery(&granted, elsewhere.as_bytes());
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok.stderr));

    let typo = bakery(
        &["policy", "validate", "--parameter", "PublishRegion=x", "-"],
        policy.as_bytes(),
    );
    assert!(text(&typo.stderr).contains("no such parameter"));
}

#[test]
fn policy_schema_is_printed() {
    let out = bakery(&["policy", "schema"], b"");
    let schema: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(schema["title"], "Bakery bake policy");
}

/// Mutated fixtures never crash the binary: every run ends in 0 or 2. (The fuzz target goes
/// much further in-process; this checks the process boundary.)
#[test]
fn mutated_events_never_crash_the_binary() {
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let sources: Vec<Vec<u8>> = ["sns", "eventbridge"]
        .iter()
        .flat_map(|d| fixtures(d))
        .map(|f| std::fs::read(root().join(f)).unwrap())
        .collect();
    for _ in 0..120 {
        let mut input = sources[(next() % sources.len() as u64) as usize].clone();
        for _ in 0..=(next() % 4) {
            let at = (next() % input.len() as u64) as usize;
            match next() % 3 {
                0 => input[at] = next() as u8,
                1 => input.truncate(at),
                _ => input.splice(at..at, b"{\"\":[1e999,".iter().copied()).for_each(drop),
            }
            if input.is_empty() {
                break;
            }
        }
        let out = bakery(&["classify", "-"], &input);
        assert!(
            matches!(out.status.code(), Some(0 | 2)),
            "crash on {:?}: {}",
            text(&input),
            text(&out.stderr)
        );
    }
}

/// `bakery local up` prints the environment, serves until SIGTERM, then leaves nothing running.
/// The `export K=V` lines `bakery local up` prints, up to the last (BAKERY_MOTO_ENDPOINT).
fn exports(child: &mut std::process::Child) -> std::collections::HashMap<String, String> {
    use std::io::{BufRead, BufReader};
    let mut env = std::collections::HashMap::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        let (k, v) = line
            .strip_prefix("export ")
            .and_then(|l| l.split_once('='))
            .expect("export lines");
        env.insert(k.to_owned(), v.to_owned());
        if k == "BAKERY_MOTO_ENDPOINT" {
            break;
        }
    }
    env
}

#[test]
fn local_up_serves_until_interrupted_and_stops_everything() {
    use std::io::Read;
    use std::net::TcpStream;
    let mut child = Command::new(env!("CARGO_BIN_EXE_bakery"))
        .args(["local", "up"])
        .current_dir(root())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let env = exports(&mut child);
    for key in [
        "AWS_ENDPOINT_URL",
        "AWS_REGION",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
    ] {
        assert!(env.contains_key(key), "{key} missing from {env:?}");
    }
    let addr = |url: &str| url.trim_start_matches("http://").to_owned();
    let (gateway, moto) = (addr(&env["AWS_ENDPOINT_URL"]), addr(&env["BAKERY_MOTO_ENDPOINT"]));
    let mut s = TcpStream::connect(&gateway).unwrap();
    s.write_all(b"GET /_bakery/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(TcpStream::connect(&moto).is_ok(), "moto is up");

    // SIGTERM, as `kill` or a supervisor sends it.
    let status = Command::new("kill").arg(child.id().to_string()).status().unwrap();
    assert!(status.success());
    assert!(child.wait().unwrap().success(), "a clean stop exits 0");
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(TcpStream::connect(&gateway).is_err(), "the gateway is down");
    assert!(TcpStream::connect(&moto).is_err(), "moto was stopped too");
}

/// `bakery demo --json`: the SOE release ripples through every pipeline on the local AWS, under
/// the template's permissions.
#[test]
fn the_demo_bakes_every_pipeline() {
    let out = bakery(&["demo", "--json"], b"");
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}\n{stdout}", text(&out.stderr));
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["status"], "SUCCEEDED");
    assert_eq!(report["bakes"].as_array().unwrap().len(), 3);
    assert_eq!(report["denials"], serde_json::json!([]), "nothing was refused");
}

/// The same demo on a copy of the repository whose template lacks ec2:CopyImage: the bakes fail
/// at publishing, and the demo says who was refused what.
#[test]
fn the_demo_on_a_template_without_copy_image_names_the_refusal() {
    let repo = root().canonicalize().unwrap();
    let copy = std::env::temp_dir().join(format!("bakery-demo-copy-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&copy);
    std::fs::create_dir_all(&copy).unwrap();
    for shared in ["statemachine", "local", "target", ".venv", ".venv-tools"] {
        std::os::unix::fs::symlink(repo.join(shared), copy.join(shared)).unwrap();
    }
    let template = std::fs::read_to_string(repo.join("template.yaml")).unwrap();
    // The statement that grants ec2:CopyImage, cut out whole (up to the next statement's comment).
    let start = template
        .find("            - Sid: CopyImages\n")
        .expect("the template's copy grant moved: update this test");
    let end = start
        + template[start..]
            .find("            # Tags")
            .expect("the statement after the copy grant");
    assert!(template[start..end].contains("Action: ec2:CopyImage\n"));
    std::fs::write(
        copy.join("template.yaml"),
        format!("{}{}", &template[..start], &template[end..]),
    )
    .unwrap();

    let out = bakery(&["demo", "--repo", copy.to_str().unwrap()], b"");
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(!out.status.success(), "{stdout}");
    assert!(
        stdout.contains("AccessDenied") && stdout.contains("ec2:CopyImage"),
        "{stdout}"
    );
    assert!(
        stderr.contains("AccessDenied: bakery-PublishRegionFunction may not ec2:CopyImage"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&copy);
}

/// The README's Deploy section, as a platform engineer follows it: its `bakery policy validate`
/// line runs as written and accepts the example, its put-parameter stores that same file under
/// the default PolicyPrefix with the pipeline's name, and the lint and package commands it names
/// are the ones `make test` runs.
#[test]
fn the_readme_deploy_commands_are_the_ones_that_run() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let deploy = readme
        .split("\n## Deploy\n")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("README has a Deploy section");
    let validate = deploy
        .lines()
        .find(|l| l.starts_with("./target/debug/bakery policy validate "))
        .expect("the Deploy section validates a policy");
    let args: Vec<&str> = validate
        .trim_start_matches("./target/debug/bakery ")
        .split_whitespace()
        .collect();
    let out = bakery(&args, b"");
    assert!(out.status.success(), "{validate}: {}", text(&out.stderr));
    let file = args.last().unwrap();
    assert!(text(&out.stdout).contains("valid policy"), "{}", text(&out.stdout));

    let put = deploy
        .lines()
        .find(|l| l.starts_with("aws ssm put-parameter "))
        .expect("the Deploy section stores the policy");
    let policy: Value = serde_json::from_slice(&std::fs::read(root().join(file)).unwrap()).unwrap();
    let pipeline = policy["pipelineArn"].as_str().unwrap().rsplit('/').next().unwrap();
    assert!(put.contains(&format!("--name /bakery/policies/{pipeline} ")), "{put}");
    let rest = deploy.split(put).nth(1).unwrap();
    assert!(
        rest.trim_start().starts_with(&format!("--value file://{file} ")),
        "{rest}"
    );

    let makefile = std::fs::read_to_string(root().join("Makefile")).unwrap();
    assert!(deploy.contains("make package ") && makefile.contains("\tbash local/package.sh $(ARCH)"));
    assert!(deploy.contains("bash local/lint-template.sh") && makefile.contains("\tbash local/lint-template.sh"));
}

/// `bakery local up --demo`: the demo's world is there to try every command by hand, with the
/// environment and names it prints (as the README walks through): a manual bake waits for its
/// AMIs, and the ledger knows their lineage.
#[test]
fn local_up_demo_seeds_a_world_to_try_the_commands_by_hand() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_bakery"))
        .args(["local", "up", "--demo"])
        .current_dir(root())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let env = exports(&mut child);
    assert_eq!(
        env["BAKERY_PIPELINES"], "web-app,api-service,web-app-hardened",
        "{env:?}"
    );
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_bakery"))
            .args(args)
            .envs(&env)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "bakery {args:?}: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let baked = run(&[
        "bake",
        "web-app",
        "--function",
        &env["BAKERY_TRIGGER_FUNCTION"],
        "--wait",
        "--json",
    ]);
    let lineage = |ami: &str| run(&["lineage", ami, "--table", &env["BAKERY_LEDGER_TABLE"], "--json"]);
    assert_eq!(baked["status"], "SUCCEEDED", "{baked}");
    assert_eq!(baked["amis"].as_array().map(Vec::len), Some(3), "{baked}");
    let doc = lineage(baked["amis"][0]["imageId"].as_str().unwrap_or_default());
    assert_eq!(doc["bake"]["bakeId"], baked["bakeId"], "{doc}");
    assert_eq!(
        doc["ancestors"][0]["amis"][0]["imageId"],
        env["BAKERY_SOE_BASE_AMI"].as_str(),
        "{doc}"
    );

    // An operator's profile with credential_process (as SSO helpers and aws-vault use), and no
    // keys in the environment: the command signs with what the process printed. A process that
    // prints a key the local AWS does not know makes the same command fail.
    let dir = std::env::temp_dir().join(format!("bakery-cli-profile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let process = |name: &str, key: &str| {
        let script = dir.join(name);
        let doc = serde_json::json!({
            "Version": 1,
            "AccessKeyId": key,
            "SecretAccessKey": env["AWS_SECRET_ACCESS_KEY"],
        });
        std::fs::write(
            &script,
            format!("#!/bin/sh\ntouch \"$0.ran\"\ncat <<'EOF'\n{doc}\nEOF\n"),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        script
    };
    let (good, bad) = (
        process("good", &env["AWS_ACCESS_KEY_ID"]),
        process("bad", "AKIAUNKNOWNOPERATOR1"),
    );
    let config = dir.join("config");
    std::fs::write(
        &config,
        format!(
            "[profile ops]\ncredential_process = {}\n[profile stranger]\ncredential_process = {}\n",
            good.display(),
            bad.display()
        ),
    )
    .unwrap();
    let as_profile = |profile: &str, ami: &str| {
        Command::new(env!("CARGO_BIN_EXE_bakery"))
            .args(["lineage", ami, "--table", &env["BAKERY_LEDGER_TABLE"], "--json"])
            .envs(&env)
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env_remove("AWS_SESSION_TOKEN")
            .env("AWS_CONFIG_FILE", &config)
            .env("AWS_SHARED_CREDENTIALS_FILE", dir.join("none"))
            .env("AWS_PROFILE", profile)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .output()
            .unwrap()
    };
    let ami = baked["amis"][0]["imageId"].as_str().unwrap_or_default();
    let out = as_profile("ops", ami);
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    // The bake and its ancestry; its descendants may have grown meanwhile (the demo's chained
    // pipeline bakes on this one's publication).
    let signed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (&signed["bake"], &signed["ancestors"]),
        (&doc["bake"], &doc["ancestors"])
    );
    assert!(dir.join("good.ran").exists(), "the profile's credential_process ran");
    let out = as_profile("stranger", ami);
    assert!(
        !out.status.success(),
        "an unknown key is refused: {}",
        text(&out.stdout)
    );
    assert!(dir.join("bad.ran").exists());
    std::fs::remove_dir_all(&dir).unwrap();
    let status = Command::new("kill").arg(child.id().to_string()).status().unwrap();
    assert!(status.success());
    assert!(child.wait().unwrap().success(), "a clean stop exits 0");
}
