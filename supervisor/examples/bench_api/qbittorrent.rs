//! `qbittorrent-nox` holding the same torrents: private profile, `WebUI` on
//! 127.0.0.1 without authentication from localhost, DHT/PeX/LSD/UPnP/NAT-PMP
//! off, every torrent added paused; then its idle RSS and `wrk` with one
//! connection on `/api/v2/torrents/info?limit=100`.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::blocking::Client;
use serde_json::Value;

use crate::torrents::{BenchTorrent, qbittorrent_batch};
use crate::util::{self, BoxError, Proc, RssSample, free_port, poll_until};
use crate::wrk::{self, WrkResult, WrkSpec};

/// Files per `/api/v2/torrents/add` request.
const BATCH: usize = 100;

/// What was measured.
#[derive(Debug, Clone)]
pub struct QbtResult {
    pub version: String,
    pub add_secs: f64,
    /// From the first add to `torrents/info` listing every torrent.
    pub listed_secs: f64,
    /// From the first add to every torrent listed paused.
    pub paused_secs: f64,
    pub count: usize,
    pub body_bytes: usize,
    /// CPU of one `torrents/info?limit=100` (first sample, before wrk).
    pub single_request_ms: f64,
    pub single_request_cpu: f64,
    pub quiet_after: Option<Duration>,
    pub idle: Vec<RssSample>,
    pub after: Vec<RssSample>,
    pub spec: WrkSpec,
    pub wrk: WrkResult,
    pub cpu_during_wrk: f64,
    /// CPU seconds of everything else on the machine during the run.
    pub other_cpu: f64,
    /// `wrk` runs made.
    pub attempts: u32,
}

/// Writes the profile's `qBittorrent.conf`.
fn write_config(profile: &Path, save: &Path, webui: u16, listen: u16) -> Result<(), BoxError> {
    let config_dir = profile.join("qBittorrent/config");
    std::fs::create_dir_all(&config_dir)?;
    let config = format!(
        "[LegalNotice]\nAccepted=true\n\n\
         [Preferences]\nWebUI\\Address=127.0.0.1\nWebUI\\Port={webui}\nWebUI\\LocalHostAuth=false\n\
         WebUI\\UseUPnP=false\nConnection\\ResolvePeerCountries=false\nConnection\\UPnP=false\n\
         General\\PreventFromSuspendWhenDownloading=false\n\n\
         [Network]\nPortForwardingEnabled=false\n\n\
         [BitTorrent]\nSession\\DHTEnabled=false\nSession\\PeXEnabled=false\nSession\\LSDEnabled=false\n\
         Session\\BTProtocol=TCP\nSession\\Interface=lo\nSession\\InterfaceName=lo\n\
         Session\\InterfaceAddress=127.0.0.1\nSession\\Port={listen}\n\
         Session\\DefaultSavePath={save}\nSession\\QueueingSystemEnabled=false\n\
         Session\\AddTorrentPaused=true\n",
        save = save.display(),
    );
    std::fs::write(config_dir.join("qBittorrent.conf"), config)?;
    Ok(())
}

/// `qbittorrent-nox --version`.
pub fn version() -> Result<String, String> {
    util::command_output("qbittorrent-nox", &["--version"])
        .map(|s| s.lines().next().unwrap_or_default().trim().to_owned())
}

/// Runs the whole qBittorrent part in `dir`.
#[allow(
    clippy::too_many_lines,
    reason = "one straight sequence: start, add, wait, measure, stop"
)]
pub fn run(
    torrents: &[BenchTorrent],
    dir: &Path,
    duration: Duration,
    timeout: Duration,
) -> Result<QbtResult, BoxError> {
    let version = version()?;
    let profile = dir.join("qbt-profile");
    let save = dir.join("qbt-downloads");
    std::fs::create_dir_all(&save)?;
    let webui = free_port()?;
    let listen = free_port()?;
    write_config(&profile, &save, webui, listen)?;
    let mut cmd = Command::new("qbittorrent-nox");
    cmd.arg(format!("--profile={}", profile.display()));
    let mut proc = Proc::spawn(
        "qbittorrent-nox",
        &mut cmd,
        Some(&dir.join("qbittorrent.log")),
        Duration::from_secs(120),
    )?;
    let pid = proc.pid();
    let http = Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(120))
        .build()?;
    let base = format!("http://127.0.0.1:{webui}/api/v2");
    poll_until(
        "qBittorrent's WebUI",
        Duration::from_secs(60),
        Duration::from_millis(100),
        || {
            proc.check_alive()?;
            Ok(http
                .get(format!("{base}/app/version"))
                .send()
                .ok()
                .filter(|r| r.status().is_success())
                .map(|_| ()))
        },
    )?;

    eprintln!(
        "bench-api: qBittorrent: adding {} torrents paused, {BATCH} per request",
        torrents.len()
    );
    let t0 = Instant::now();
    for batch in torrents.chunks(BATCH) {
        let (body, content_type) = qbittorrent_batch(batch, &save.display().to_string())?;
        let resp = http
            .post(format!("{base}/torrents/add"))
            .header("Content-Type", content_type)
            .body(body)
            .send()?;
        let status = resp.status();
        let text = resp.text()?;
        if !status.is_success() || text.trim() != "Ok." {
            return Err(format!("qBittorrent refused a batch: {status} {text}").into());
        }
    }
    let add_secs = t0.elapsed().as_secs_f64();
    let last_offset = torrents.len().saturating_sub(1);
    poll_until(
        "qBittorrent to list every torrent",
        Duration::from_secs(600),
        Duration::from_secs(1),
        || {
            proc.check_alive()?;
            let list: Value = http
                .get(format!("{base}/torrents/info?limit=1&offset={last_offset}"))
                .send()?
                .json()?;
            Ok(list.as_array().filter(|a| !a.is_empty()).map(|_| ()))
        },
    )?;
    let listed_secs = t0.elapsed().as_secs_f64();
    // Freshly added torrents pass through checking states; wait until
    // every one is listed paused.
    let mut states = std::collections::BTreeMap::<String, usize>::new();
    let count = poll_until(
        "qBittorrent to show every torrent paused",
        Duration::from_secs(600),
        Duration::from_secs(2),
        || {
            proc.check_alive()?;
            let all: Value = http.get(format!("{base}/torrents/info")).send()?.json()?;
            let all = all.as_array().ok_or("torrents/info is not an array")?;
            states.clear();
            for t in all {
                *states
                    .entry(t["state"].as_str().unwrap_or("?").to_owned())
                    .or_default() += 1;
            }
            let paused: usize = states
                .iter()
                .filter(|(s, _)| s.starts_with("paused") || s.starts_with("stopped"))
                .map(|(_, n)| n)
                .sum();
            Ok((all.len() == torrents.len() && paused == all.len()).then_some(all.len()))
        },
    )
    .map_err(|e| format!("{e}; states: {states:?}"))?;
    let paused_secs = t0.elapsed().as_secs_f64();
    eprintln!(
        "bench-api: qBittorrent: {count} torrents added in {add_secs:.1} s, listed after {listed_secs:.1} s, all paused after {paused_secs:.1} s"
    );

    let quiet_after = util::wait_quiet(
        &[pid],
        0.05,
        Duration::from_secs(1),
        Duration::from_secs(180),
    );
    let idle = util::tree_rss(pid);

    let url = format!("http://127.0.0.1:{webui}/api/v2/torrents/info?limit=100");
    let cpu0 = util::cpu_seconds(pid).unwrap_or(0.0);
    let t1 = Instant::now();
    let body = http.get(&url).send()?.bytes()?;
    let single_request_ms = t1.elapsed().as_secs_f64() * 1000.0;
    let single_request_cpu = util::cpu_seconds(pid).unwrap_or(0.0) - cpu0;
    let page: Value = serde_json::from_slice(&body)?;
    let items = page.as_array().map_or(0, Vec::len);
    if items != 100.min(count) {
        return Err(format!("qBittorrent's limit=100 answer has {items} items").into());
    }

    let spec = WrkSpec {
        threads: 1,
        connections: 1,
        duration,
        timeout,
        url,
        bearer: None,
    };
    // Same policy as for the other runs: repeated while other processes
    // used more than a quarter of a CPU, the least disturbed run kept.
    let mut best: Option<(f64, WrkResult, f64, f64)> = None;
    let mut attempts = 0;
    for attempt in 1..=crate::ATTEMPTS {
        attempts = attempt;
        let busy = util::wait_machine_quiet(0.2, Duration::from_secs(60));
        eprintln!(
            "bench-api: qBittorrent: {} (attempt {attempt}, machine busy {busy:.2} CPUs before)",
            spec.display()
        );
        let cpu1 = util::cpu_seconds(pid).unwrap_or(0.0);
        let machine_before = util::machine_cpu().unwrap_or_default();
        let run = wrk::run(&spec, dir, &format!("qbittorrent-{attempt}"))?;
        let machine = util::machine_cpu().unwrap_or_default().0 - machine_before.0;
        let cpu = util::cpu_seconds(pid).unwrap_or(0.0) - cpu1;
        let other = (machine - cpu - run.wrk_cpu).max(0.0);
        let interference = other / run.seconds.max(1.0);
        eprintln!(
            "bench-api: qBittorrent: {:.2} req/s, p50 {:.1} ms, p99 {:.1} ms; other processes {:.0} % of a CPU",
            run.rps,
            run.p50_ms,
            run.p99_ms,
            interference * 100.0
        );
        if best.as_ref().is_none_or(|(b, ..)| interference < *b) {
            best = Some((interference, run, cpu, other));
        }
        if interference <= crate::MAX_INTERFERENCE || util::stop_requested() || util::smoke() {
            break;
        }
        proc.check_alive()?;
    }
    let (_, wrk, cpu_during_wrk, other_cpu) = best.ok_or("no wrk run")?;
    proc.check_alive()?;
    let after = util::tree_rss(pid);
    let stop = proc.stop()?;
    eprintln!(
        "bench-api: qBittorrent stopped in {:.1} s",
        stop.as_secs_f64()
    );
    Ok(QbtResult {
        version,
        add_secs,
        listed_secs,
        paused_secs,
        count,
        body_bytes: body.len(),
        single_request_ms,
        single_request_cpu,
        quiet_after,
        idle,
        after,
        spec,
        wrk,
        cpu_during_wrk,
        other_cpu,
        attempts,
    })
}
