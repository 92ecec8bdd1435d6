//! Cold start: process start to the first `GET /2018-06-01/runtime/invocation/next` on a tiny
//! Lambda Runtime API of our own, and the process's peak RSS at that moment (VmHWM from /proc). Nothing is ever answered: the first request for work is the end of a run.

use std::collections::BTreeMap;
use std::io::Read;
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One program to start, with everything it is started with.
#[derive(Debug, Clone)]
pub struct Subject {
    /// The row's name in the report.
    pub name: String,
    /// What it is compared with: its row group ("rust", "python", "floor").
    pub group: &'static str,
    /// The function it stands for ("" for the floors).
    pub function: String,
    pub program: PathBuf,
    pub args: Vec<String>,
    pub cwd: Option<PathBuf>,
    pub env: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub ready: Duration,
    pub max_rss_kb: i64,
}

const LIMIT: Duration = Duration::from_secs(20);

/// Starts `s` once against a fresh Runtime API port; returns when it asked for work.
pub fn run_once(s: &Subject, scratch: &Path) -> Result<Sample, String> {
    run_until_ready(s, scratch, libc::SIGKILL)
}

/// [`run_once`], ending the program with `stop` once it asked for work, and waiting for it to
/// exit (SIGTERM lets a tracer wrapped around it write what it recorded).
pub fn run_until_ready(s: &Subject, scratch: &Path, stop: libc::c_int) -> Result<Sample, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let api = listener.local_addr().map_err(|e| e.to_string())?;
    let log_path = scratch.join(format!("{}.stderr", s.name.replace(['/', ' '], "_")));
    let log = std::fs::File::create(&log_path).map_err(|e| e.to_string())?;
    let mut cmd = Command::new(&s.program);
    cmd.args(&s.args)
        .env_clear()
        .envs(&s.env)
        .env("AWS_LAMBDA_RUNTIME_API", api.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    if let Some(dir) = &s.cwd {
        cmd.current_dir(dir);
    }
    // The whole executable in the page cache first, whatever reclaimed it since the last run: the
    // kernel maps code around a fault only from cached pages, so peak RSS depends on it.
    let _ = std::fs::read(&s.program);
    let started = Instant::now();
    let child = cmd.spawn().map_err(|e| format!("{}: {e}", s.program.display()))?;
    let pid = child.id() as libc::pid_t;
    // The child is reaped with wait4 below (for its rusage), never through `Child`.
    drop(child);

    let outcome = wait_for_next(&listener, pid, started);
    let ready = started.elapsed();
    // The exec'd program's own high-water mark: wait4's ru_maxrss would also count the pages
    // the child shared with this process between fork and exec.
    let hwm = vm_hwm_kb(pid);
    // SAFETY: kill(2) on the pid this function started and has not reaped yet.
    unsafe {
        libc::kill(pid, stop);
    }
    let usage = reap(pid);
    match outcome {
        Ok(()) => Ok(Sample {
            ready,
            max_rss_kb: hwm.or(usage.map(|u| u.ru_maxrss)).unwrap_or(0),
        }),
        Err(e) => {
            let stderr = std::fs::read_to_string(&log_path).unwrap_or_default();
            Err(format!("{}: {e}; stderr: {}", s.name, tail(&stderr, 600)))
        }
    }
}

/// Accepts connections until one carries a GET of the next invocation.
fn wait_for_next(listener: &TcpListener, pid: libc::pid_t, started: Instant) -> Result<(), String> {
    loop {
        if started.elapsed() > LIMIT {
            return Err(format!("no request for work within {LIMIT:?}"));
        }
        let mut fd = libc::pollfd {
            fd: listener.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd for the listener this function owns.
        let n = unsafe { libc::poll(&mut fd, 1, 20) };
        if n <= 0 {
            if exited(pid) {
                return Err("exited before asking for work".into());
            }
            continue;
        }
        let (mut stream, _) = listener.accept().map_err(|e| e.to_string())?;
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(|e| e.to_string())?;
        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        let text = String::from_utf8_lossy(&head);
        let line = text.lines().next().unwrap_or_default();
        if line.starts_with("GET /2018-06-01/runtime/invocation/next") {
            return Ok(());
        }
        return Err(format!("first request was `{line}`, not a request for work"));
    }
}

/// VmHWM (peak resident set) of a live process, in kB.
fn vm_hwm_kb(pid: libc::pid_t) -> Option<i64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Whether the child has exited (without reaping it: WNOWAIT).
fn exited(pid: libc::pid_t) -> bool {
    // SAFETY: waitid on our own child with WNOWAIT leaves it to be reaped by `reap`.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        let r = libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        );
        r == 0 && info.si_pid() != 0
    }
}

fn reap(pid: libc::pid_t) -> Option<libc::rusage> {
    // SAFETY: wait4 on our own child, with out-parameters owned here.
    unsafe {
        let mut status = 0;
        let mut usage: libc::rusage = std::mem::zeroed();
        (libc::wait4(pid, &mut status, 0, &mut usage) == pid).then_some(usage)
    }
}

fn tail(s: &str, n: usize) -> &str {
    let start = s.len().saturating_sub(n);
    let mut i = start;
    while !s.is_char_boundary(i) {
        i += 1;
    }
    &s[i..]
}

/// Files a subject opens under the certificate stores before it asks for work, by strace
/// (None when strace is not installed). Not timed: strace slows everything it traces.
pub fn cert_files_opened(s: &Subject, scratch: &Path) -> Option<(usize, usize)> {
    let strace = ["/usr/bin/strace", "/bin/strace"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())?;
    let out = scratch.join(format!("{}.strace", s.name.replace(['/', ' '], "_")));
    let mut wrapped = s.clone();
    wrapped.program = strace;
    wrapped.args = [
        "-f",
        "-qq",
        "-e",
        "trace=open,openat,stat,statx,newfstatat,readlink",
        "-o",
    ]
    .into_iter()
    .map(String::from)
    .chain([out.display().to_string(), s.program.display().to_string()])
    .chain(s.args.iter().cloned())
    .collect();
    run_once(&wrapped, scratch).ok()?;
    let text = std::fs::read_to_string(&out).ok()?;
    let is_cert = |l: &&str| {
        l.contains("/etc/ssl")
            || l.contains("/usr/share/ca-certificates")
            || l.contains("/etc/pki")
            || l.contains("bench-al2023-certs")
    };
    let opened = text
        .lines()
        .filter(|l| l.contains("open") && !l.contains("ENOENT"))
        .filter(is_cert)
        .count();
    let looked_at = text.lines().filter(is_cert).count();
    Some((opened, looked_at))
}

/// min, median, max.
pub fn summary(mut v: Vec<f64>) -> (f64, f64, f64) {
    if v.is_empty() {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    (v[0], median, v[n - 1])
}
