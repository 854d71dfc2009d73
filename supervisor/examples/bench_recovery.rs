//! `just bench-recovery`: how fast health degrades after a worker is
//! `kill -9`ed and how fast it is `ok` again, measured against the real
//! release binaries. Also measures cold start to healthy.
//!
//! Polls `/health/full` (no key: loopback) in a tight loop (about every
//! millisecond), one connection per poll, so the figures include the poll
//! granularity. Prints a summary and writes `bench/results/recovery.md`.
//!
//! `--smoke`: 1 round, the report in a temp file (or `--out`): proves the
//! bench still runs (`just bench-smoke`, part of `./x test`).

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use clap::Parser;

#[path = "support/mod.rs"]
mod support;

use support::{BoxError, Daemon, wait_for};

const DEADLINE: Duration = Duration::from_secs(30);

#[derive(Debug, Parser)]
#[command(about = "Time from `kill -9` of a worker to degraded health and back to ok")]
struct Args {
    /// Kills per worker.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000))]
    rounds: u32,
    /// Smoke run: 1 round, report in a temp file unless `--out`.
    #[arg(long)]
    smoke: bool,
    /// Where to write the report (default: bench/results/recovery.md).
    #[arg(long)]
    out: Option<PathBuf>,
}

fn main() -> Result<(), BoxError> {
    let mut args = Args::parse();
    if args.smoke {
        args.rounds = 1;
    }
    let rounds = args.rounds;
    let root = support::workspace_root()?;
    let out = match (&args.out, args.smoke) {
        (Some(p), _) => p.clone(),
        (None, true) => support::smoke_report("recovery.md")?,
        (None, false) => root.join("bench/results/recovery.md"),
    };
    let work = std::env::temp_dir().join(format!("revaer-bench-recovery-{}", std::process::id()));
    let data = work.join("data");
    std::fs::create_dir_all(&data)?;
    std::fs::write(
        data.join("revaer.toml"),
        "[api]\nlisten = \"127.0.0.1:0\"\n[engine]\nlisten_interfaces = \"127.0.0.1:0\"\nenable_dht = false\nenable_utp = false\n[supervisor]\nrestart_backoff_initial_ms = 100\nrestart_backoff_reset_after_ms = 1\n",
    )?;

    let started = Instant::now();
    let mut daemon =
        Daemon::start_logged(&support::release_dir()?, &data, &work.join("revaerd.log"))?;
    let addr = wait_for(DEADLINE, Duration::from_millis(1), || api_addr(&data))?;
    wait_for(DEADLINE, Duration::from_millis(1), || {
        health(&addr).filter(|(code, _)| *code == 200)
    })?;
    let cold_start = started.elapsed();

    let mut results = Vec::new();
    for worker in ["engine", "fsops"] {
        let mut to_degraded = Vec::new();
        let mut to_ok = Vec::new();
        for _ in 0..rounds {
            let (_, body) = wait_for(DEADLINE, Duration::from_millis(1), || {
                health(&addr).filter(|(code, _)| *code == 200)
            })?;
            let pid = worker_pid(&body, worker).ok_or("no pid in /health/full")?;
            let kill_at = Instant::now();
            Command::new("kill")
                .args(["-9", &pid.to_string()])
                .status()?;
            wait_for(DEADLINE, Duration::from_millis(1), || {
                health(&addr)
                    .filter(|(code, b)| *code == 503 && b.contains(&format!("\"{worker}\"")))
            })?;
            to_degraded.push(kill_at.elapsed());
            wait_for(DEADLINE, Duration::from_millis(1), || {
                health(&addr).filter(|(code, _)| *code == 200)
            })?;
            to_ok.push(kill_at.elapsed());
        }
        results.push((worker, summarize(&mut to_degraded), summarize(&mut to_ok)));
    }
    daemon.stop();
    let _ = std::fs::remove_dir_all(&work);

    let command = if args.smoke {
        "`bench_recovery --smoke` (from `just bench-smoke`: a smoke run, not a measurement)"
            .to_owned()
    } else {
        format!("`just bench-recovery {rounds}`")
    };
    let mut report = format!(
        "# Recovery benchmark\n\nCommand: {command} ({} binaries, restart_backoff_initial_ms = 100); commit {}.\n\nCold start to `/health/full` ok: {:.1} ms\n\n| worker | kill → degraded p50 | p99 | max | kill → ok p50 | p99 | max |\n|---|---|---|---|---|---|---|\n",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        support::revision(&root),
        ms(cold_start)
    );
    for (worker, d, o) in &results {
        let _ = writeln!(
            report,
            "| {worker} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms |",
            d.0, d.1, d.2, o.0, o.1, o.2
        );
    }
    println!("{report}");
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&out, &report)?;
    eprintln!("bench-recovery: wrote {}", out.display());
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// (p50, p99, max) in milliseconds.
fn summarize(samples: &mut [Duration]) -> (f64, f64, f64) {
    samples.sort_unstable();
    let at = |q: f64| {
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
        ms(samples[i])
    };
    (at(0.5), at(0.99), at(1.0))
}

fn api_addr(data: &Path) -> Option<String> {
    support::api_url(data).map(|u| u.trim_start_matches("http://").to_owned())
}

/// A minimal HTTP/1.1 GET (one connection per poll keeps it simple and
/// independent of keep-alive behaviour).
fn health(addr: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        stream,
        "GET /health/full HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let code = response.get(9..12)?.parse().ok()?;
    let body = response.split("\r\n\r\n").nth(1)?.to_owned();
    Some((code, body))
}

fn worker_pid(body: &str, worker: &str) -> Option<u32> {
    let start = body.find(&format!("\"{worker}\":{{"))?;
    let rest = &body[start..];
    let pid_at = rest.find("\"pid\":")? + 6;
    rest[pid_at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}
