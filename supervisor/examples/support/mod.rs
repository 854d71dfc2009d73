//! Shared plumbing of the benchmark programs: locating the release
//! binaries, owning a `revaerd` child (SIGTERM on stop, SIGKILL if dropped
//! while running, always reaped), bounded polling, the bootstrap admin key,
//! the revision measured, and where a `--smoke` run writes its report.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub type BoxError = Box<dyn std::error::Error>;

/// A running `revaerd`.
pub struct Daemon(pub Child);

impl Daemon {
    /// Starts the release `revaerd` on `data` with warnings-only logging.
    pub fn start(data: &Path) -> Result<Self, BoxError> {
        Ok(Self(
            Command::new(release_dir()?.join("revaerd"))
                .arg("--data-dir")
                .arg(data)
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null())
                .spawn()?,
        ))
    }

    /// Orderly stop (SIGTERM) and reap.
    pub fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// `target/<profile>` (`release` for the benches, `debug` for their smoke
/// runs), where the example itself lives one level down.
pub fn release_dir() -> Result<PathBuf, BoxError> {
    let exe = std::env::current_exe()?;
    Ok(exe
        .parent()
        .and_then(Path::parent)
        .ok_or("cannot locate target/release")?
        .to_path_buf())
}

/// Polls `f` every `every` until it yields, or fails after `deadline`.
pub fn wait_for<T>(
    deadline: Duration,
    every: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> Result<T, BoxError> {
    let until = Instant::now() + deadline;
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if Instant::now() > until {
            return Err("deadline passed".into());
        }
        std::thread::sleep(every);
    }
}

/// The API URL the supervisor recorded in `run/api.url`.
pub fn api_url(data: &Path) -> Option<String> {
    let url = std::fs::read_to_string(data.join("run/api.url")).ok()?;
    let url = url.trim().to_owned();
    (!url.is_empty()).then_some(url)
}

impl Daemon {
    /// Starts the `revaerd` found in `bin_dir` on `data`, appending its
    /// stderr (the daemon's log) to `log`, with `RUST_LOG` from the
    /// environment or `info`, without colours.
    pub fn start_logged(bin_dir: &Path, data: &Path, log: &Path) -> Result<Self, BoxError> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)?;
        Ok(Self(
            Command::new(bin_dir.join("revaerd"))
                .arg("--data-dir")
                .arg(data)
                .env(
                    "RUST_LOG",
                    std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_owned()),
                )
                .env("NO_COLOR", "1")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::from(log))
                .spawn()?,
        ))
    }

    /// SIGTERM, then waits up to `deadline` for the exit; its code (`None`
    /// when killed by a signal). Fails if it does not exit in time.
    pub fn terminate(&mut self, deadline: Duration) -> Result<Option<i32>, BoxError> {
        Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status()?;
        let status = wait_for(deadline, Duration::from_millis(20), || {
            self.0.try_wait().ok().flatten()
        })?;
        Ok(status.code())
    }
}

/// The bootstrap admin key of the daemon on `data` (API at `url`), once the
/// API accepts it: reads `<data>/bootstrap-admin.key`, which the daemon
/// writes on first start, and polls an authenticated `GET /v1/keys` until
/// it answers 200 (a key read the moment its file appears may not be
/// registered yet). The key itself is never printed.
pub fn admin_key(
    http: &reqwest::blocking::Client,
    url: &str,
    data: &Path,
    deadline: Duration,
) -> Result<String, BoxError> {
    let file = data.join("bootstrap-admin.key");
    let until = Instant::now() + deadline;
    loop {
        let last = match std::fs::read_to_string(&file) {
            Ok(text) if !text.trim().is_empty() => {
                let key = text.trim().to_owned();
                match http.get(format!("{url}/v1/keys")).bearer_auth(&key).send() {
                    Ok(r) if r.status().is_success() => return Ok(key),
                    Ok(r) => format!("`GET /v1/keys` with it answers {}", r.status()),
                    Err(e) => format!("`GET /v1/keys`: {e}"),
                }
            }
            Ok(_) => format!("{} is empty", file.display()),
            Err(e) => format!("{}: {e}", file.display()),
        };
        if Instant::now() >= until {
            return Err(format!(
                "the bootstrap admin key did not work within {} s: {last}",
                deadline.as_secs()
            )
            .into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The workspace root (the parent of the `supervisor` crate).
pub fn workspace_root() -> Result<PathBuf, BoxError> {
    Ok(Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or("no workspace root")?
        .to_path_buf())
}

/// The commit measured: `git rev-parse --short HEAD`, with `+dirty` when
/// the working tree differs from it, naming the changed paths that go into
/// the daemon's build (anything but benches, tests, docs, scripts and
/// recipes) and counting the others.
pub fn revision(root: &Path) -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(root)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .ok()
            .filter(|out| out.status.success())
            .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let Some(head) = git(&["rev-parse", "--short", "HEAD"]) else {
        return "unknown commit".to_owned();
    };
    let head = head.trim();
    let status = git(&["status", "--porcelain"]).unwrap_or_default();
    let changed: Vec<&str> = status.lines().filter_map(|l| l.get(3..)).collect();
    if changed.is_empty() {
        return head.to_owned();
    }
    let outside_build = |path: &str| {
        ["bench/", "docs/", "scripts/", "fuzz/", ".github/"]
            .iter()
            .any(|dir| path.starts_with(dir))
            || path.contains("examples/")
            || path.contains("tests/")
            || Path::new(path)
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("md"))
            || path == "justfile"
            || path == "x"
    };
    let (others, build): (Vec<&str>, Vec<&str>) =
        changed.iter().copied().partition(|p| outside_build(p));
    if build.is_empty() {
        format!(
            "{head}+dirty (the daemon's sources as committed; uncommitted changes to {} file(s) \
             outside its build: benches, tests, docs, scripts)",
            others.len()
        )
    } else {
        format!(
            "{head}+dirty (uncommitted changes to the daemon's sources: {}; and to {} other file(s))",
            build.join(", "),
            others.len()
        )
    }
}

/// Where a `--smoke` run writes its report when not told (`--out`): a temp
/// dir, never `bench/results/`.
pub fn smoke_report(file: &str) -> Result<PathBuf, BoxError> {
    let dir = std::env::temp_dir().join("revaer-bench-smoke");
    std::fs::create_dir_all(&dir)?;
    Ok(dir.join(file))
}
