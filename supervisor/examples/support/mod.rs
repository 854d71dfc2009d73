//! Shared plumbing of the benchmark programs: locating the release
//! binaries, owning a `revaerd` child (SIGTERM on stop, SIGKILL if dropped
//! while running, always reaped), and bounded polling.

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

/// `target/release`, where the example itself lives one level down.
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
