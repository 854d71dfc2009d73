//! `just bench-seeding-recovery`: time from `kill -9` of the engine worker
//! to every torrent seeding again, with N seeding torrents (default 100;
//! several counts, e.g. `--torrents 100,1000`, give one row each).
//!
//! Runs the real release daemon (built with the test-only engine route,
//! which adds routes and nothing to the data path), one fresh data dir per
//! count. Torrents are created over content placed in the downloads dir,
//! added, and left to reach Seeding; once each has resume data on disk the
//! engine is killed, and the engine list is polled (every 5 ms) until all N
//! are seeding again. Requests carry the bootstrap admin key. Writes
//! `bench/results/seeding-recovery.md`.
//!
//! `--smoke`: 3 torrents, 1 round, the report in a temp file (or `--out`):
//! proves the bench still runs (`just bench-smoke`, part of `./x test`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::{Value, json};

#[path = "support/mod.rs"]
mod support;

use support::{BoxError, Daemon, wait_for};

const DEADLINE: Duration = Duration::from_secs(300);
/// Poll interval of the engine list and of `/health/full`.
const POLL: Duration = Duration::from_millis(5);

#[derive(Debug, Parser)]
#[command(about = "Time from `kill -9` of the engine worker to N torrents seeding again")]
struct Args {
    /// Seeding torrents; several (comma-separated) give one row each.
    #[arg(long, default_value = "100", value_delimiter = ',',
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    torrents: Vec<u32>,
    /// Kills per count.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
    rounds: u32,
    /// Smoke run: 3 torrents, 1 round, report in a temp file unless `--out`.
    #[arg(long)]
    smoke: bool,
    /// Where to write the report (default: bench/results/seeding-recovery.md).
    #[arg(long)]
    out: Option<PathBuf>,
}

/// One count's measurements.
struct Row {
    count: usize,
    /// Time from the first add to every torrent seeding with resume data.
    ready: Duration,
    samples: Vec<Duration>,
}

fn main() -> Result<(), BoxError> {
    let mut args = Args::parse();
    if args.smoke {
        args.torrents = vec![3];
        args.rounds = 1;
    }
    let root = support::workspace_root()?;
    let out = match (&args.out, args.smoke) {
        (Some(p), _) => p.clone(),
        (None, true) => support::smoke_report("seeding-recovery.md")?,
        (None, false) => root.join("bench/results/seeding-recovery.md"),
    };
    let revision = support::revision(&root);
    let load_before = load_average();
    let work = std::env::temp_dir().join(format!("revaer-bench-seeding-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let started = Instant::now();
    let mut rows = Vec::new();
    for &count in &args.torrents {
        let count = usize::try_from(count)?;
        eprintln!(
            "bench-seeding-recovery: {count} torrents, {} rounds",
            args.rounds
        );
        match measure(&work, count, args.rounds) {
            Ok(row) => rows.push(row),
            Err(e) => {
                // The work dir (data dir, daemon log) stays for a look.
                return Err(format!("{count} torrents: {e} (left {})", work.display()).into());
            }
        }
    }
    let _ = std::fs::remove_dir_all(&work);
    let load = format!("{load_before} before, {} after", load_average());
    let report = render(&args, &revision, &load, &mut rows, started.elapsed())?;
    println!("{report}");
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&out, &report)?;
    eprintln!("bench-seeding-recovery: wrote {}", out.display());
    Ok(())
}

/// `count` seeding torrents on a fresh daemon, then `rounds` engine kills.
fn measure(work: &Path, count: usize, rounds: u32) -> Result<Row, BoxError> {
    let data = work.join(format!("data-{count}"));
    std::fs::create_dir_all(data.join("downloads"))?;
    // A default rate far above the 5 ms polls (the bootstrap key has none
    // of its own).
    std::fs::write(
        data.join("revaer.toml"),
        "[api]\nlisten = \"127.0.0.1:0\"\ndefault_rate_per_minute = 1000000\n[engine]\nlisten_interfaces = \"127.0.0.1:0\"\nenable_dht = false\nenable_utp = false\n[supervisor]\nrestart_backoff_initial_ms = 100\nrestart_backoff_reset_after_ms = 1\n",
    )?;
    let mut daemon = Daemon::start_logged(
        &support::release_dir()?,
        &data,
        &work.join(format!("revaerd-{count}.log")),
    )?;
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .no_proxy()
        .build()?;
    let url = wait_for(DEADLINE, POLL, || support::api_url(&data))?;
    // `/health/full` needs no key from loopback.
    wait_for(DEADLINE, POLL, || {
        let code = client
            .get(format!("{url}/health/full"))
            .send()
            .ok()?
            .status();
        code.is_success().then_some(())
    })?;
    let key = support::admin_key(&client, &url, &data, Duration::from_secs(30))?;
    let engine = |request: &Value| -> Result<Value, BoxError> {
        let resp = client
            .post(format!("{url}/v1/_test/engine"))
            .bearer_auth(&key)
            .json(request)
            .send()?;
        let status = resp.status();
        if status.as_u16() == 404 {
            return Err("the API has no test route: build with `--features revaer-api/test-probes,revaer-engine/test-probes,revaer-fsops/test-probes`".into());
        }
        let body = resp.text()?;
        if !status.is_success() {
            return Err(format!("POST /v1/_test/engine: {status} {body}").into());
        }
        Ok(serde_json::from_str(&body)?)
    };

    let t0 = Instant::now();
    add_torrents(&data.join("downloads"), count, &engine)?;
    let all_seeding = || -> Option<usize> {
        let list = engine(&json!("List")).ok()?;
        let items = list.get("List")?.as_array()?;
        let seeding = items
            .iter()
            .filter(|t| t["state"] == json!("Seeding"))
            .count();
        (items.len() == count && seeding == count).then_some(seeding)
    };
    wait_for(DEADLINE, POLL, all_seeding).map_err(|_| "the torrents never all seeded")?;
    let resume_files = || -> Option<usize> {
        let n = std::fs::read_dir(data.join("state/engine"))
            .ok()?
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().ends_with(".resume"))
            .count();
        (n == count).then_some(n)
    };
    wait_for(DEADLINE, POLL, resume_files).map_err(|_| "resume data never all on disk")?;
    let ready = t0.elapsed();

    let mut samples = Vec::new();
    for _ in 0..rounds {
        let health: Value = client.get(format!("{url}/health/full")).send()?.json()?;
        let pid = health["workers"]["engine"]["pid"]
            .as_u64()
            .ok_or_else(|| format!("no engine pid in /health/full: {health}"))?;
        let killed_at = Instant::now();
        Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()?;
        // Wait until the list is served by the new engine process and all seed.
        wait_for(DEADLINE, POLL, || {
            let h: Value = client
                .get(format!("{url}/health/full"))
                .send()
                .ok()?
                .json()
                .ok()?;
            (h["workers"]["engine"]["pid"].as_u64() != Some(pid)
                && h["workers"]["engine"]["up"] == json!(true))
            .then_some(())
        })
        .map_err(|_| "no new engine process came up")?;
        wait_for(DEADLINE, POLL, all_seeding).map_err(|_| "the torrents did not all seed again")?;
        samples.push(killed_at.elapsed());
    }
    daemon.terminate(Duration::from_secs(60))?;
    std::fs::remove_dir_all(&data)?;
    Ok(Row {
        count,
        ready,
        samples,
    })
}

/// Creates `count` single-file torrents over 256 KiB of content each, placed
/// in the downloads dir so the engine finds them complete, and adds them.
fn add_torrents(
    downloads: &Path,
    count: usize,
    engine: &dyn Fn(&Value) -> Result<Value, BoxError>,
) -> Result<(), BoxError> {
    for i in 0..count {
        let name = format!("item-{i:05}.bin");
        let path = downloads.join(&name);
        let content: Vec<u8> = (0..256 * 1024)
            .map(|j| u8::try_from((i * 31 + j * 7) % 251).unwrap_or(0))
            .collect();
        std::fs::write(&path, content)?;
        let torrent = libtorrent_sys::create_torrent_with(
            &path,
            &libtorrent_sys::CreateTorrentOptions {
                piece_size: 64 * 1024,
                format: libtorrent_sys::TorrentFormat::V1Only,
                ..libtorrent_sys::CreateTorrentOptions::default()
            },
        )?;
        let answer = engine(
            &json!({"Add": {"source": {"TorrentFile": torrent}, "paused": false,
            "sequential": false, "file_priorities": [], "peers": []}}),
        )?;
        if answer.get("Added").is_none() {
            return Err(format!("add {name}: {answer}").into());
        }
    }
    Ok(())
}

fn ms(d: &Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The 1/5/15-minute load average.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" / "))
        .unwrap_or_default()
}

fn render(
    args: &Args,
    revision: &str,
    load: &str,
    rows: &mut [Row],
    total: Duration,
) -> Result<String, BoxError> {
    let counts: Vec<String> = rows.iter().map(|r| r.count.to_string()).collect();
    let command = if args.smoke {
        "`bench_seeding_recovery --smoke` (from `just bench-smoke`: a smoke run, not a measurement)"
            .to_owned()
    } else {
        format!(
            "`just bench-seeding-recovery {} {}`",
            counts.join(","),
            args.rounds
        )
    };
    let cpus = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let mut report = format!(
        "# Seeding recovery benchmark\n\nCommand: {command} ({} seeding torrents, {} round(s) each, {} build, {cpus} vCPU); commit {revision}; the whole run took {:.0} s. Load average (1/5/15 min; the machine is shared with other work): {load}.\n\nMeasured: `kill -9` of the engine worker → supervisor restart → every torrent reported `Seeding` again by the new engine (`POST /v1/_test/engine` `List` with the bootstrap admin key, polled every 5 ms). Each count runs on a fresh daemon and data dir; its torrents are single-file, 256 KiB, v1, created over content already in `downloads/`, and added through the same route; the kills start once all of them seed and have resume data on disk.\n\n| torrents | median | max | added → all seeding with resume data |\n|---|---|---|---|\n",
        counts.join(" and "),
        args.rounds,
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        total.as_secs_f64()
    );
    for row in rows.iter_mut() {
        row.samples.sort_unstable();
        let median = ms(&row.samples[row.samples.len() / 2]);
        let max = ms(row.samples.last().ok_or("no samples")?);
        let _ = writeln!(
            report,
            "| {} | {median:.0} ms | {max:.0} ms | {:.1} s |",
            row.count,
            row.ready.as_secs_f64()
        );
    }
    for row in rows.iter() {
        let _ = write!(report, "\nRuns, {} torrents (ms):", row.count);
        for s in &row.samples {
            let _ = write!(report, " {:.0}", ms(s));
        }
        report.push('\n');
    }
    Ok(report)
}
