//! `just bench-recovery`: how fast health degrades after a worker is
//! `kill -9`ed and how fast it is `ok` again, measured against the real
//! release binaries. Also measures cold start to healthy.
//!
//! Polls `/health/full` in a tight loop (about every millisecond) over one
//! keep-alive connection, so the figures include the poll granularity.
//! Prints a summary and writes `bench/results/recovery.md`.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

#[path = "support/mod.rs"]
mod support;

use support::{BoxError, Daemon, wait_for};

const DEADLINE: Duration = Duration::from_secs(30);

fn main() -> Result<(), BoxError> {
    let rounds: usize = std::env::args()
        .skip_while(|a| a != "--rounds")
        .nth(1)
        .map_or(Ok(20), |r| r.parse())?
        .clamp(1, 1000);
    let data = std::env::temp_dir().join(format!("revaer-bench-recovery-{}", std::process::id()));
    std::fs::create_dir_all(&data)?;
    std::fs::write(
        data.join("revaer.toml"),
        "[api]\nlisten = \"127.0.0.1:0\"\n[engine]\nlisten_interfaces = \"127.0.0.1:0\"\nenable_dht = false\nenable_utp = false\n[supervisor]\nrestart_backoff_initial_ms = 100\nrestart_backoff_reset_after_ms = 1\n",
    )?;

    let started = Instant::now();
    let mut daemon = Daemon::start(&data)?;
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
    let _ = std::fs::remove_dir_all(&data);

    let mut report = format!(
        "# Recovery benchmark\n\nCommand: `just bench-recovery {rounds}` (release binaries, restart_backoff_initial_ms = 100).\n\nCold start to `/health/full` ok: {:.1} ms\n\n| worker | kill → degraded p50 | p99 | max | kill → ok p50 | p99 | max |\n|---|---|---|---|---|---|---|\n",
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
    std::fs::create_dir_all("bench/results")?;
    std::fs::write("bench/results/recovery.md", &report)?;
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
