//! `just bench-seeding-recovery`: time from `kill -9` of the engine worker
//! to every torrent seeding again, with N seeding torrents (default 100).
//!
//! Runs the real release daemon (built with the test-only engine route,
//! which adds routes and nothing to the data path). Torrents are created
//! over content placed in the downloads dir, added, and left to reach
//! Seeding; once each has resume data on disk the engine is killed, and the
//! engine list is polled (every 5 ms) until all N are seeding again. Writes
//! `bench/results/seeding-recovery.md`.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

#[path = "support/mod.rs"]
mod support;

use support::{BoxError, Daemon, wait_for};

const DEADLINE: Duration = Duration::from_secs(300);

fn arg(name: &str, default: usize) -> Result<usize, BoxError> {
    Ok(std::env::args()
        .skip_while(|a| a != name)
        .nth(1)
        .map_or(Ok(default), |v| v.parse())?)
}

fn main() -> Result<(), BoxError> {
    let count = arg("--torrents", 100)?.clamp(1, 10_000);
    let rounds = arg("--rounds", 5)?.clamp(1, 100);
    let data = std::env::temp_dir().join(format!("revaer-bench-seeding-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    std::fs::create_dir_all(data.join("downloads"))?;
    std::fs::write(
        data.join("revaer.toml"),
        "[api]\nlisten = \"127.0.0.1:0\"\n[engine]\nlisten_interfaces = \"127.0.0.1:0\"\nenable_dht = false\nenable_utp = false\n[supervisor]\nrestart_backoff_initial_ms = 100\nrestart_backoff_reset_after_ms = 1\n",
    )?;
    let mut daemon = Daemon::start(&data)?;
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .no_proxy()
        .build()?;
    let url = wait_for(DEADLINE, Duration::from_millis(5), || {
        support::api_url(&data)
    })?;
    wait_for(DEADLINE, Duration::from_millis(5), || {
        let code = client
            .get(format!("{url}/health/full"))
            .send()
            .ok()?
            .status();
        code.is_success().then_some(())
    })?;
    let engine = |request: &Value| -> Result<Value, BoxError> {
        Ok(client
            .post(format!("{url}/v1/_test/engine"))
            .json(request)
            .send()?
            .json()?)
    };

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
    wait_for(DEADLINE, Duration::from_millis(5), all_seeding)?;
    let resume_files = |since: std::time::SystemTime| -> Option<usize> {
        let n = std::fs::read_dir(data.join("state/engine"))
            .ok()?
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().ends_with(".resume"))
            .filter(|e| {
                e.metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|m| m >= since)
            })
            .count();
        (n == count).then_some(n)
    };
    wait_for(DEADLINE, Duration::from_millis(5), || {
        resume_files(std::time::UNIX_EPOCH)
    })?;

    let mut samples = Vec::new();
    for _ in 0..rounds {
        let health: Value = client.get(format!("{url}/health/full")).send()?.json()?;
        let pid = health["workers"]["engine"]["pid"]
            .as_u64()
            .ok_or("no engine pid")?;
        let killed_at = Instant::now();
        Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()?;
        // Wait until the list is served by the new engine process and all seed.
        wait_for(DEADLINE, Duration::from_millis(5), || {
            let h: Value = client
                .get(format!("{url}/health/full"))
                .send()
                .ok()?
                .json()
                .ok()?;
            (h["workers"]["engine"]["pid"].as_u64() != Some(pid)
                && h["workers"]["engine"]["up"] == json!(true))
            .then_some(())
        })?;
        wait_for(DEADLINE, Duration::from_millis(5), all_seeding)?;
        samples.push(killed_at.elapsed());
    }
    daemon.stop();
    let _ = std::fs::remove_dir_all(&data);

    write_report(count, rounds, &mut samples)
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

fn write_report(count: usize, rounds: usize, samples: &mut [Duration]) -> Result<(), BoxError> {
    samples.sort_unstable();
    let ms = |d: &Duration| d.as_secs_f64() * 1000.0;
    let median = ms(&samples[samples.len() / 2]);
    let max = ms(samples.last().ok_or("no samples")?);
    let mut report = format!(
        "# Seeding recovery benchmark\n\nCommand: `just bench-seeding-recovery` ({count} seeding torrents, {rounds} rounds, release build, 2 vCPU).\nMeasured: `kill -9` of the engine worker → supervisor restart → every torrent reported `Seeding` again by the new engine (polled every 5 ms).\n\n| torrents | median | max |\n|---|---|---|\n| {count} | {median:.0} ms | {max:.0} ms |\n\nRuns (ms):"
    );
    for s in samples.iter() {
        let _ = write!(report, " {:.0}", ms(s));
    }
    report.push('\n');
    println!("{report}");
    std::fs::create_dir_all("bench/results")?;
    std::fs::write("bench/results/seeding-recovery.md", &report)?;
    Ok(())
}
