//! The runbook's plumbing: the daemon under test, its API (HTTP and the
//! `revaer` CLI), snapshots into the results dir, and the step log.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{self, BoxError, Daemon, wait_for};

/// Deadline for anything that should happen "soon".
pub const DEADLINE: Duration = Duration::from_secs(60);
/// Interval between polls.
pub const POLL: Duration = Duration::from_millis(50);

/// One step of the scenario as recorded in `summary.md`.
pub struct StepRecord {
    pub name: String,
    pub ok: bool,
    pub outcome: String,
    pub duration: Duration,
}

/// The daemon under test and everything needed to talk to it.
pub struct Ops {
    pub bin_dir: PathBuf,
    pub data: PathBuf,
    pub results: PathBuf,
    pub daemon: Option<Daemon>,
    pub client: reqwest::blocking::Client,
    snapshots: usize,
    pub steps: Vec<StepRecord>,
    /// Secrets that must never show up in the daemon's log.
    pub secrets: Vec<String>,
}

impl Ops {
    pub fn new(bin_dir: PathBuf, data: PathBuf, results: PathBuf) -> Result<Self, BoxError> {
        Ok(Self {
            bin_dir,
            data,
            results,
            daemon: None,
            client: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(10))
                .no_proxy()
                .build()?,
            snapshots: 0,
            steps: Vec::new(),
            secrets: Vec::new(),
        })
    }

    /// Runs one step, timing it and recording its outcome.
    pub fn step(
        &mut self,
        name: &str,
        f: impl FnOnce(&mut Self) -> Result<String, BoxError>,
    ) -> Result<(), BoxError> {
        eprintln!("runbook: {name} ...");
        let started = Instant::now();
        let result = f(self);
        let duration = started.elapsed();
        let (ok, outcome) = match &result {
            Ok(outcome) => (true, outcome.clone()),
            Err(e) => (false, format!("FAILED: {e}")),
        };
        eprintln!(
            "runbook: {name}: {} ({:.1} s) {outcome}",
            if ok { "ok" } else { "FAILED" },
            duration.as_secs_f64()
        );
        self.steps.push(StepRecord {
            name: name.to_owned(),
            ok,
            outcome,
            duration,
        });
        result.map(|_| ())
    }

    pub fn log_path(&self) -> PathBuf {
        self.results.join("revaerd.log")
    }

    pub fn key_file(&self) -> PathBuf {
        self.data.join("bootstrap-admin.key")
    }

    pub fn start_daemon(&mut self) -> Result<(), BoxError> {
        let _ = std::fs::remove_file(self.data.join("run/api.url"));
        self.daemon = Some(Daemon::start_logged(
            &self.bin_dir,
            &self.data,
            &self.log_path(),
        )?);
        Ok(())
    }

    /// SIGTERM to `revaerd`; its exit code.
    pub fn stop_daemon(&mut self) -> Result<Option<i32>, BoxError> {
        let mut daemon = self.daemon.take().ok_or("the daemon is not running")?;
        daemon.terminate(DEADLINE)
    }

    pub fn url(&self) -> Result<String, BoxError> {
        support::api_url(&self.data).ok_or_else(|| "no run/api.url".into())
    }

    pub fn admin_key(&self) -> Result<String, BoxError> {
        Ok(std::fs::read_to_string(self.key_file())?.trim().to_owned())
    }

    /// `GET /health/full` (no key: loopback): status and body.
    pub fn health(&self) -> Option<(u16, Value)> {
        let url = self.url().ok()?;
        let response = self.client.get(format!("{url}/health/full")).send().ok()?;
        let code = response.status().as_u16();
        Some((code, response.json().ok()?))
    }

    /// Polls `/health/full` until `pred` holds.
    pub fn wait_health(
        &self,
        what: &str,
        pred: impl Fn(u16, &Value) -> bool,
    ) -> Result<(u16, Value), BoxError> {
        let mut last = None;
        let found = wait_for(DEADLINE, POLL, || {
            let (code, body) = self.health()?;
            if pred(code, &body) {
                return Some((code, body));
            }
            last = Some((code, body));
            None
        });
        found.map_err(|_| {
            format!("timed out waiting for {what}; last /health/full: {last:?}").into()
        })
    }

    pub fn wait_ok(&self) -> Result<Value, BoxError> {
        self.wait_health("/health/full ok", |code, body| {
            code == 200 && body["status"] == "ok"
        })
        .map(|(_, body)| body)
    }

    /// An authenticated GET with `key`: status, headers' `Retry-After`, body.
    pub fn get(&self, key: &str, path: &str) -> Result<(u16, Option<String>, String), BoxError> {
        let response = self
            .client
            .get(format!("{}{path}", self.url()?))
            .bearer_auth(key)
            .send()?;
        let code = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Ok((code, retry_after, response.text()?))
    }

    /// The torrent's detail as the admin sees it.
    pub fn detail(&self, id: &str) -> Option<Value> {
        let key = self.admin_key().ok()?;
        let (code, _, body) = self.get(&key, &format!("/v1/torrents/{id}")).ok()?;
        (code == 200).then(|| serde_json::from_str(&body).ok())?
    }

    /// Polls the torrent's detail until `pred` holds.
    pub fn wait_torrent(
        &self,
        id: &str,
        what: &str,
        deadline: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Result<Value, BoxError> {
        let mut last = None;
        wait_for(deadline, POLL, || {
            let detail = self.detail(id)?;
            if pred(&detail) {
                return Some(detail);
            }
            last = Some(detail);
            None
        })
        .map_err(|_| {
            let last = last.map(|d| summary(&d)).unwrap_or_default();
            format!("timed out waiting for {what}; last detail: {last}").into()
        })
    }

    /// Runs the `revaer` CLI against the daemon with the bootstrap admin key
    /// (from its file) and JSON output: exit code, stdout, stderr.
    pub fn cli(&self, args: &[&str]) -> Result<(i32, String, String), BoxError> {
        self.cli_with(
            args,
            &[("REVAER_API_KEY_FILE", self.key_file().display().to_string())],
        )
    }

    /// Like [`Ops::cli`] with other environment variables.
    pub fn cli_with(
        &self,
        args: &[&str],
        env: &[(&str, String)],
    ) -> Result<(i32, String, String), BoxError> {
        let mut cmd = self.cli_command(args, env)?;
        let out = cmd.output()?;
        Ok((
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    }

    fn cli_command(&self, args: &[&str], env: &[(&str, String)]) -> Result<Command, BoxError> {
        let mut cmd = Command::new(self.bin_dir.join("revaer"));
        cmd.args(args)
            .env_remove("REVAER_API_KEY")
            .env_remove("REVAER_API_KEY_FILE")
            .env("REVAER_API_URL", self.url()?)
            .env("REVAER_OUTPUT", "json")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        Ok(cmd)
    }

    /// Runs a CLI command that ends by itself (e.g. `tail --count 1`),
    /// killing it if it has not within `deadline`: exit code and stdout.
    pub fn cli_bounded(
        &self,
        args: &[&str],
        deadline: Duration,
    ) -> Result<(i32, String), BoxError> {
        let mut cmd = self.cli_command(
            args,
            &[("REVAER_API_KEY_FILE", self.key_file().display().to_string())],
        )?;
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::null()).spawn()?;
        let status = wait_for(deadline, POLL, || child.try_wait().ok().flatten());
        let Ok(status) = status else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(
                format!("`revaer {}` did not finish in {deadline:?}", args.join(" ")).into(),
            );
        };
        let mut out = String::new();
        if let Some(mut stdout) = child.stdout.take() {
            std::io::Read::read_to_string(&mut stdout, &mut out)?;
        }
        Ok((status.code().unwrap_or(-1), out))
    }

    /// Writes `health-NN-<label>.json` (pretty) into the results dir.
    pub fn snapshot_health(&mut self, label: &str) -> Result<(u16, Value), BoxError> {
        let (code, body) = self.health().ok_or("/health/full did not answer")?;
        self.snapshots += 1;
        let name = format!("health-{:02}-{label}.json", self.snapshots);
        let text = format!("{}\n", serde_json::to_string_pretty(&body)?);
        std::fs::write(self.results.join(&name), text)?;
        Ok((code, body))
    }

    /// Writes `metrics-NN-<label>.txt` into the results dir; returns the text.
    pub fn snapshot_metrics(&mut self, label: &str) -> Result<String, BoxError> {
        let (code, _, text) = self.get(&self.admin_key()?, "/metrics")?;
        if code != 200 {
            return Err(format!("/metrics answered {code}").into());
        }
        self.snapshots += 1;
        let name = format!("metrics-{:02}-{label}.txt", self.snapshots);
        std::fs::write(self.results.join(name), &text)?;
        Ok(text)
    }

    /// Events after `after` (exclusive) up to and including `until`, read
    /// from `/v1/events` with `Last-Event-ID`.
    pub fn events_between(&self, after: u64, until: u64) -> Result<Vec<Value>, BoxError> {
        let response = reqwest::blocking::Client::builder()
            .timeout(None)
            .no_proxy()
            .build()?
            .get(format!("{}/v1/events", self.url()?))
            .bearer_auth(self.admin_key()?)
            .header("last-event-id", after.to_string())
            .send()?;
        if response.status().as_u16() != 200 {
            return Err(format!("/v1/events answered {}", response.status()).into());
        }
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(response).lines() {
                let Ok(line) = line else { return };
                if let Some(data) = line.strip_prefix("data:")
                    && let Ok(value) = serde_json::from_str::<Value>(data.trim_start())
                    && tx.send(value).is_err()
                {
                    return;
                }
            }
        });
        let mut events = Vec::new();
        let until_at = Instant::now() + DEADLINE;
        loop {
            let left = until_at.saturating_duration_since(Instant::now());
            let event = rx
                .recv_timeout(left)
                .map_err(|_| format!("events up to {until} did not arrive"))?;
            let id = event["id"].as_u64().unwrap_or(0);
            events.push(event);
            if id >= until {
                return Ok(events);
            }
        }
    }

    /// `summary.md`.
    pub fn write_summary(
        &self,
        started_at: &str,
        total: Duration,
        revision: &str,
        extra: &str,
    ) -> Result<(), BoxError> {
        let passed = self.steps.iter().all(|s| s.ok);
        let mut md = String::new();
        let _ = writeln!(
            md,
            "# Runbook execution: {}\n",
            if passed { "passed" } else { "FAILED" }
        );
        let _ = writeln!(
            md,
            "Command: `just runbook` ({} binaries, scenario in `supervisor/examples/runbook.rs`).\n",
            if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            }
        );
        let _ = writeln!(md, "- Date: {started_at}");
        let _ = writeln!(md, "- Revision: {revision}");
        let _ = writeln!(md, "- Total duration: {:.1} s", total.as_secs_f64());
        let _ = writeln!(md, "- Host: {}", host_facts());
        let _ = writeln!(
            md,
            "\nSnapshots (`health-*.json`, `metrics-*.txt`) are numbered in the order taken; `revaerd.log` is the daemon's stderr over the whole run (all three starts), checked to contain no API key.\n"
        );
        let _ = writeln!(
            md,
            "| # | step | result | duration | outcome |\n|---|---|---|---|---|"
        );
        for (i, s) in self.steps.iter().enumerate() {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {:.2} s | {} |",
                i + 1,
                s.name,
                if s.ok { "ok" } else { "**FAILED**" },
                s.duration.as_secs_f64(),
                s.outcome.replace('|', "\\|").replace('\n', " ")
            );
        }
        md.push_str(extra);
        std::fs::write(self.results.join("summary.md"), md)?;
        Ok(())
    }
}

/// One line about a torrent detail, for error messages.
pub fn summary(detail: &Value) -> String {
    format!(
        "state={} progress={} fsops_job={}",
        detail["state"], detail["progress"], detail["fsops_job"]
    )
}

/// Value of the sample `name` (e.g. `x_total{key_id="k"}`) in Prometheus
/// text, 0 when absent.
pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (n, v) = l.rsplit_once(' ')?;
            (n == name).then(|| v.parse().ok())?
        })
        .unwrap_or(0.0)
}

/// Whether `text` holds anything shaped like an API key (`rvk_` + 64 hex).
pub fn contains_key_shape(text: &str) -> bool {
    text.match_indices("rvk_").any(|(at, _)| {
        let hex = &text.as_bytes()[at + 4..];
        hex.len() >= 64 && hex[..64].iter().all(u8::is_ascii_hexdigit)
    })
}

fn host_facts() -> String {
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cores} cores, Linux {}", kernel.trim())
}

/// Whether `path` has exactly mode `mode` (permission bits).
pub fn mode_of(path: &Path) -> Result<u32, BoxError> {
    use std::os::unix::fs::PermissionsExt as _;
    Ok(std::fs::metadata(path)?.permissions().mode() & 0o777)
}
