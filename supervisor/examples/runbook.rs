//! `just runbook`: the operator runbook (`docs/runbook.md`) executed
//! against the real release binaries, start to finish:
//!
//! bootstrap → add a torrent (served by a local seed found through a local
//! tracker) → download → FsOps into the library → restart (resume without a
//! recheck) → rate throttling observed and the default rate raised live →
//! degraded health (engine `kill -9`, a broken `revaer.toml`) → recovery.
//!
//! Everything listens on 127.0.0.1 (DHT/LSD/UPnP/NAT-PMP/uTP off). User
//! facing steps go through the `revaer` CLI, the rest through HTTP. Every
//! wait is a bounded poll for an observable condition. Writes
//! `docs/runbook-results/`: `summary.md`, `health-*.json`, `metrics-*.txt`
//! and `revaerd.log` (the daemon's stderr, checked to hold no API key).
//!
//! `--smoke`: the same scenario with the results in a temp dir (or
//! `--out <dir>`) instead of `docs/runbook-results/`: proves the runbook
//! still runs (`just bench-smoke`, part of `./x test`).

#[path = "support/mod.rs"]
mod support;

#[allow(dead_code)]
#[path = "bench_transfer/util.rs"]
mod util;

#[allow(dead_code)]
#[path = "bench_transfer/seed.rs"]
mod seed;

#[path = "runbook/ops.rs"]
mod ops;

#[path = "runbook/scenario.rs"]
mod scenario;

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Parser;

use support::BoxError;

#[derive(Debug, Parser)]
#[command(about = "The operator runbook (docs/runbook.md) executed end to end")]
struct Args {
    /// Smoke run: results in a temp dir unless `--out`.
    #[arg(long)]
    smoke: bool,
    /// Where to write the results (default: docs/runbook-results/; its
    /// content is replaced).
    #[arg(long)]
    out: Option<PathBuf>,
}

fn main() -> Result<(), BoxError> {
    let args = Args::parse();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or("no workspace root")?
        .to_path_buf();
    let results = match (&args.out, args.smoke) {
        (Some(dir), _) => dir.clone(),
        (None, true) => {
            std::env::temp_dir().join(format!("revaer-bench-smoke/runbook-{}", std::process::id()))
        }
        (None, false) => root.join("docs/runbook-results"),
    };
    let _ = std::fs::remove_dir_all(&results);
    std::fs::create_dir_all(&results)?;
    let work = std::env::temp_dir().join(format!("revaer-runbook-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;

    let started_at = utc_now();
    let started = Instant::now();
    let mut ops = ops::Ops::new(support::release_dir()?, work.join("data"), results.clone())?;
    let outcome = scenario::run(&mut ops, &work);
    // Whatever happened, the daemon is stopped before the log is checked.
    if ops.daemon.is_some() {
        let _ = ops.stop_daemon();
    }
    let leak = scenario::check_log(&ops);
    let total = started.elapsed();
    let extra = match &leak {
        Ok(note) => note.clone(),
        Err(e) => format!("\n**Log check FAILED**: {e}\n"),
    };
    ops.write_summary(&started_at, total, &revision(&root), &extra)?;
    let _ = std::fs::remove_dir_all(&work);
    eprintln!(
        "runbook: {} in {:.1} s; results in {}",
        if outcome.is_ok() && leak.is_ok() {
            "passed"
        } else {
            "FAILED"
        },
        total.as_secs_f64(),
        results.display()
    );
    outcome?;
    leak.map(|_| ())
}

fn utc_now() -> String {
    command_output("date", &["-u", "+%Y-%m-%d %H:%M:%S UTC"]).unwrap_or_default()
}

fn command_output(program: &str, args: &[&str]) -> Option<String> {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim_end().to_owned())
}

/// The commit run, and which files differ from it apart from the runbook's
/// own (this program, the justfile, the runbook and its results).
fn revision(root: &Path) -> String {
    let root = root.display().to_string();
    let Some(head) = command_output("git", &["-C", &root, "rev-parse", "--short=7", "HEAD"]) else {
        return "(unknown revision)".to_owned();
    };
    let changed = command_output(
        "git",
        &[
            "-C",
            &root,
            "status",
            "--porcelain",
            "--",
            ".",
            ":(exclude)supervisor/examples/runbook.rs",
            ":(exclude)supervisor/examples/runbook",
            ":(exclude)supervisor/examples/support",
            ":(exclude)justfile",
            ":(exclude)docs/runbook.md",
            ":(exclude)docs/runbook-results",
        ],
    )
    .unwrap_or_default();
    let changed: Vec<&str> = changed.lines().filter_map(|l| l.get(3..)).collect();
    if changed.is_empty() {
        format!("commit {head}")
    } else {
        format!(
            "commit {head} with uncommitted changes to {}",
            changed.join(", ")
        )
    }
}
