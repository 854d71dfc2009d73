//! `just bench-hostile`: the HTTP API under hostile clients (issue 8,
//! item 5). Not part of CI.
//!
//! A release `revaerd` on a fresh data dir; then, one after the other:
//! 1. **Idle flood**: 10,000 TCP connections to the API that never send a
//!    byte, kept at 10,000 for `--hold` seconds (closed ones reopened once a
//!    second).
//! 2. **SSE reconnect storm**: 1,000 `GET /v1/events` subscribers catch up,
//!    are all dropped at once, events happen, and all reconnect at once with
//!    `Last-Event-ID` (one in ten with a malformed id).
//! 3. **Slowloris**: 500 connections each sending one header byte per
//!    second for `--hold` seconds (reopened when cut).
//!
//! Before and during each phase a probe client makes one request every
//! 20 ms (`GET /health` and `GET /v1/torrents?limit=100` alternately, each
//! on a new connection, as a newcomer would) and records its latency; the
//! resident memory of `revaer-api` is sampled before, during (peak) and
//! after each phase. Writes its section of `bench/results/reliability.md`
//! between `<!-- hostile:start -->` and `<!-- hostile:end -->`, leaving the
//! rest of the file alone. Everything is on 127.0.0.1; every loop is
//! bounded in count and time; the daemon is stopped and reaped on error or
//! Ctrl-C too.
//!
//! `--smoke`: 50 idle connections, 10 SSE clients, 10 slowloris
//! connections, 2-second holds, the section written to a temp file (or
//! `--out`): proves the bench still runs (`just bench-smoke`, part of
//! `./x test`).

#[path = "support/mod.rs"]
mod support;
#[allow(dead_code)]
#[path = "bench_api/util.rs"]
mod util;

use std::fmt::Write as _;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use clap::Parser;
use reqwest::blocking::Client;
use serde_json::{Value, json};

use util::{BoxError, Proc, TempDir, poll_until};

#[derive(Debug, Parser)]
#[command(about = "Revaer's HTTP API under idle floods, SSE reconnect storms and slowloris")]
struct Args {
    /// Idle connections held open at once.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=50_000))]
    idle: u32,
    /// SSE clients reconnecting at once.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    sse: u32,
    /// Slowloris connections.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    slowloris: u32,
    /// Seconds each flood is held.
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u64).range(2..=300))]
    hold: u64,
    /// Seconds of probing before the first phase (baseline).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=120))]
    baseline: u64,
    /// Where to write the report (default: bench/results/reliability.md in the workspace).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Smoke run: 50 idle, 10 SSE, 10 slowloris, 2 s holds, 1 s baseline;
    /// report in a temp file unless `--out`.
    #[arg(long)]
    smoke: bool,
}

/// `revaer.toml` of the bench: loopback only, no DHT/LSD/UPnP/NAT-PMP, and
/// a default rate far above what the probes and SSE clients need.
const CONFIG: &str = "[api]\nlisten = \"127.0.0.1:0\"\ndefault_rate_per_minute = 1000000\n\n\
[engine]\nlisten_interfaces = \"127.0.0.1:0\"\nenable_dht = false\nenable_lsd = false\n\
enable_upnp = false\nenable_natpmp = false\nenable_utp = false\n";
/// Pause between two probe requests.
const PROBE_EVERY: Duration = Duration::from_millis(20);
/// Timeout of one probe request: a probe slower than this counts as failed.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);
/// Events generated before the SSE clients connect, and while they are away.
const SSE_EVENTS: usize = 20;
/// Longest an SSE phase may take to connect / catch up.
const SSE_DEADLINE: Duration = Duration::from_secs(120);
const START_MARK: &str = "<!-- hostile:start -->";
const END_MARK: &str = "<!-- hostile:end -->";

fn main() -> ExitCode {
    let mut args = Args::parse();
    if args.smoke {
        args.idle = 50;
        args.sse = 10;
        args.slowloris = 10;
        args.hold = 2;
        args.baseline = 1;
    }
    util::run_bench("bench-hostile", || bench(&args))
}

/// The running daemon and what the phases need from it.
struct Target {
    proc: Proc,
    url: String,
    addr: SocketAddr,
    key: String,
    api_pid: u32,
    http: Client,
}

fn bench(args: &Args) -> Result<(), BoxError> {
    let nofile = raise_nofile(u64::from(args.idle + args.sse + args.slowloris) + 4096)?;
    let root = util::workspace_root()?;
    let work = TempDir::new(
        std::env::temp_dir().join(format!("revaer-bench-hostile-{}", std::process::id())),
    )?;
    let bin_dir = support::release_dir().map_err(|e| e.to_string())?;
    let target = start(&bin_dir, work.path())?;
    eprintln!(
        "bench-hostile: revaerd up at {}, revaer-api pid {}, RLIMIT_NOFILE {nofile}",
        target.url, target.api_pid
    );
    let mut report = Report {
        command: command_line(args),
        machine: util::machine_facts(),
        revision: util::revision(&root),
        load: util::load_average(),
        smoke: args.smoke,
        ..Report::default()
    };
    let probe = Probe::start(&target, "baseline");
    std::thread::sleep(Duration::from_secs(args.baseline));
    report.baseline = probe.finish();
    report.idle = Some(idle_flood(&target, args)?);
    report.sse = Some(sse_storm(&target, args)?);
    report.slowloris = Some(slowloris(&target, args));
    report.final_rss_kib = rss_kib(target.api_pid);
    report.final_metrics = connection_metrics(&target);
    report.api_restarts = api_restarts(&target);
    let mut target = target;
    target.proc.stop()?;
    let out = match &args.out {
        Some(p) => p.clone(),
        None if args.smoke => support::smoke_report("reliability.md").map_err(|e| e.to_string())?,
        None => root.join("bench/results/reliability.md"),
    };
    util::write_section(&out, START_MARK, END_MARK, &report.render())?;
    eprintln!("bench-hostile: wrote {}", out.display());
    Ok(())
}

// ---------------------------------------------------------------------------
// Daemon
// ---------------------------------------------------------------------------

fn start(bin_dir: &Path, work: &Path) -> Result<Target, BoxError> {
    let data = work.join("data");
    std::fs::create_dir_all(&data)?;
    std::fs::write(data.join("revaer.toml"), CONFIG)?;
    let mut cmd = Command::new(bin_dir.join("revaerd"));
    cmd.arg("--data-dir").arg(&data).env("RUST_LOG", "warn");
    let mut proc = Proc::spawn(
        "revaerd",
        &mut cmd,
        Some(&work.join("revaerd.log")),
        Duration::from_secs(60),
    )?;
    let http = Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()?;
    let (url, health) = poll_until(
        "revaerd to report ok on /health/full",
        Duration::from_secs(60),
        Duration::from_millis(20),
        || {
            proc.check_alive()?;
            let Some(url) = support::api_url(&data) else {
                return Ok(None);
            };
            let Ok(resp) = http.get(format!("{url}/health/full")).send() else {
                return Ok(None);
            };
            if resp.status().as_u16() != 200 {
                return Ok(None);
            }
            Ok(Some((url, resp.json::<Value>()?)))
        },
    )?;
    let api_pid = health["workers"]["api"]["pid"]
        .as_u64()
        .and_then(|p| u32::try_from(p).ok())
        .ok_or_else(|| format!("no API pid in /health/full: {health}"))?;
    // Read once the API accepts it (the file may appear a moment before).
    let key = support::admin_key(&http, &url, &data, Duration::from_secs(30))
        .map_err(|e| format!("{e}{}", proc.log_tail()))?;
    let addr: SocketAddr = url
        .strip_prefix("http://")
        .ok_or("API URL is not http://")?
        .parse()?;
    Ok(Target {
        proc,
        url,
        addr,
        key,
        api_pid,
        http,
    })
}

/// Issues `n` keys: `n` `key_issued` events. Returns the last event id.
fn make_events(target: &Target, n: usize) -> Result<u64, BoxError> {
    for i in 0..n {
        let resp = target
            .http
            .post(format!("{}/v1/keys", target.url))
            .bearer_auth(&target.key)
            .json(&json!({ "name": format!("bench-hostile-{i}"), "scope": "read" }))
            .send()?;
        if !resp.status().is_success() {
            return Err(format!("issuing a key: {}", resp.status()).into());
        }
    }
    event_head(target)
}

/// The newest event id (`/health/full` → `event_log_head`).
fn event_head(target: &Target) -> Result<u64, BoxError> {
    let health: Value = target
        .http
        .get(format!("{}/health/full", target.url))
        .send()?
        .json()?;
    health["event_log_head"]
        .as_u64()
        .or_else(|| health["store"]["event_log_head"].as_u64())
        .ok_or_else(|| format!("no event_log_head in /health/full: {health}").into())
}

/// `revaer_http_connections_*` from `/metrics` (name → value).
fn connection_metrics(target: &Target) -> Vec<(String, f64)> {
    let Ok(text) = target
        .http
        .get(format!("{}/metrics", target.url))
        .bearer_auth(&target.key)
        .send()
        .and_then(reqwest::blocking::Response::text)
    else {
        return Vec::new();
    };
    text.lines()
        .filter(|l| l.starts_with("revaer_http_connections_"))
        .filter_map(|l| {
            let (name, value) = l.split_once(' ')?;
            Some((name.to_owned(), value.trim().parse().ok()?))
        })
        .collect()
}

/// `revaer_worker_restarts_total{worker="api"}` — must stay 0.
fn api_restarts(target: &Target) -> Option<u64> {
    let text = target
        .http
        .get(format!("{}/metrics", target.url))
        .bearer_auth(&target.key)
        .send()
        .ok()?
        .text()
        .ok()?;
    text.lines()
        .find(|l| l.starts_with("revaer_worker_restarts_total{worker=\"api\"}"))?
        .rsplit(' ')
        .next()?
        .parse()
        .ok()
}

fn rss_kib(pid: u32) -> u64 {
    util::status_kib(pid, "VmRSS").unwrap_or(0)
}

/// Samples the peak `VmRSS` of `pid` every 100 ms until stopped.
struct RssSampler {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<u64>,
}

impl RssSampler {
    fn start(pid: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = std::thread::spawn(move || {
            let mut peak = 0;
            // Bounded: at most an hour of samples.
            for _ in 0..36_000 {
                peak = peak.max(rss_kib(pid));
                if flag.load(Ordering::Acquire) || util::stop_requested() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            peak
        });
        Self { stop, handle }
    }

    fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Release);
        self.handle.join().unwrap_or(0)
    }
}

/// Waits until `revaer_http_connections_open` is at most `n` (connections
/// the phase opened are gone), bounded; returns how long it took.
fn wait_connections_below(target: &Target, n: f64) -> Option<Duration> {
    let started = Instant::now();
    poll_until(
        "the API's open connections to drain",
        Duration::from_secs(60),
        Duration::from_millis(100),
        || {
            let open = connection_metrics(target)
                .into_iter()
                .find(|(k, _)| k == "revaer_http_connections_open")
                .map_or(f64::MAX, |(_, v)| v);
            Ok((open <= n).then_some(()))
        },
    )
    .ok()
    .map(|()| started.elapsed())
}

// ---------------------------------------------------------------------------
// Probe client
// ---------------------------------------------------------------------------

/// Latency of the probe requests during one phase.
#[derive(Debug, Clone, Default)]
struct ProbeStats {
    ok: usize,
    failed: usize,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    first_error: Option<String>,
}

struct Probe {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<ProbeStats>,
}

impl Probe {
    fn start(target: &Target, phase: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let url = target.url.clone();
        let key = target.key.clone();
        let phase = phase.to_owned();
        let handle = std::thread::spawn(move || {
            let Ok(http) = Client::builder()
                .no_proxy()
                .pool_max_idle_per_host(0)
                .timeout(PROBE_TIMEOUT)
                .build()
            else {
                return ProbeStats::default();
            };
            let mut latencies = Vec::new();
            let mut probe = ProbeStats::default();
            // Bounded: at most 100,000 requests.
            for i in 0..100_000_u32 {
                if flag.load(Ordering::Acquire) || util::stop_requested() {
                    break;
                }
                let request = if i % 2 == 0 {
                    http.get(format!("{url}/health"))
                } else {
                    http.get(format!("{url}/v1/torrents?limit=100"))
                        .bearer_auth(&key)
                };
                let t0 = Instant::now();
                match request.send().and_then(|r| {
                    let status = r.status();
                    r.bytes().map(|_| status)
                }) {
                    Ok(status) if status.is_success() => {
                        latencies.push(t0.elapsed().as_secs_f64() * 1000.0);
                        probe.ok += 1;
                    }
                    Ok(status) => {
                        probe.failed += 1;
                        probe
                            .first_error
                            .get_or_insert_with(|| format!("status {status}"));
                    }
                    Err(e) => {
                        probe.failed += 1;
                        probe.first_error.get_or_insert_with(|| e.to_string());
                    }
                }
                std::thread::sleep(PROBE_EVERY);
            }
            latencies.sort_by(f64::total_cmp);
            probe.p50_ms = util::quantile(&latencies, 0.5).unwrap_or(f64::NAN);
            probe.p99_ms = util::quantile(&latencies, 0.99).unwrap_or(f64::NAN);
            probe.max_ms = latencies.last().copied().unwrap_or(f64::NAN);
            eprintln!(
                "bench-hostile: probe {phase}: {} ok, {} failed, p50 {:.1} ms, p99 {:.1} ms",
                probe.ok, probe.failed, probe.p50_ms, probe.p99_ms
            );
            probe
        });
        Self { stop, handle }
    }

    fn finish(self) -> ProbeStats {
        self.stop.store(true, Ordering::Release);
        self.handle.join().unwrap_or_default()
    }
}

// ---------------------------------------------------------------------------
// Phase 1: idle flood
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Default)]
struct IdleResult {
    wanted: u32,
    hold_secs: u64,
    connects: usize,
    connect_failures: usize,
    closed_by_server: usize,
    open_at_end: usize,
    server_open_mid: f64,
    rss_before_kib: u64,
    rss_peak_kib: u64,
    rss_after_kib: u64,
    drain_secs: Option<f64>,
    metrics_after: Vec<(String, f64)>,
    probe: ProbeStats,
}

/// Whether the server closed `stream` (EOF or error on a non-blocking read).
fn closed_by_peer(stream: &TcpStream) -> bool {
    let mut byte = [0_u8; 1];
    match stream.peek(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != ErrorKind::WouldBlock,
    }
}

fn connect_nonblocking(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_nonblocking(true)?;
    Ok(stream)
}

fn idle_flood(target: &Target, args: &Args) -> Result<IdleResult, BoxError> {
    eprintln!(
        "bench-hostile: idle flood: {} connections for {} s",
        args.idle, args.hold
    );
    let mut result = IdleResult {
        wanted: args.idle,
        hold_secs: args.hold,
        rss_before_kib: rss_kib(target.api_pid),
        ..IdleResult::default()
    };
    let sampler = RssSampler::start(target.api_pid);
    let probe = Probe::start(target, "idle flood");
    let mut streams: Vec<Option<TcpStream>> = Vec::with_capacity(args.idle as usize);
    for _ in 0..args.idle {
        result.connects += 1;
        let stream = connect_nonblocking(target.addr).ok();
        if stream.is_none() {
            result.connect_failures += 1;
        }
        streams.push(stream);
        if util::stop_requested() {
            return Err("interrupted".into());
        }
    }
    let started = Instant::now();
    let hold = Duration::from_secs(args.hold);
    let mut mid_sampled = false;
    // Once a second: reopen what the server closed (bounded by `hold`).
    while started.elapsed() < hold && !util::stop_requested() {
        std::thread::sleep(Duration::from_secs(1));
        if !mid_sampled && started.elapsed() >= hold / 2 {
            mid_sampled = true;
            result.server_open_mid = connection_metrics(target)
                .into_iter()
                .find(|(k, _)| k == "revaer_http_connections_open")
                .map_or(f64::NAN, |(_, v)| v);
        }
        for slot in &mut streams {
            if slot.as_ref().is_some_and(closed_by_peer) {
                result.closed_by_server += 1;
                *slot = None;
            }
            if slot.is_none() {
                result.connects += 1;
                match connect_nonblocking(target.addr) {
                    Ok(s) => *slot = Some(s),
                    Err(_) => result.connect_failures += 1,
                }
            }
        }
    }
    result.open_at_end = streams
        .iter()
        .filter(|s| s.as_ref().is_some_and(|s| !closed_by_peer(s)))
        .count();
    result.probe = probe.finish();
    drop(streams);
    result.drain_secs = wait_connections_below(target, 1.0).map(|d| d.as_secs_f64());
    result.rss_peak_kib = sampler.finish();
    std::thread::sleep(Duration::from_secs(2));
    result.rss_after_kib = rss_kib(target.api_pid);
    result.metrics_after = connection_metrics(target);
    Ok(result)
}

// ---------------------------------------------------------------------------
// Phase 2: SSE reconnect storm
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Default)]
struct SseResult {
    clients: u32,
    malformed: u32,
    events_missed: usize,
    first_connected: usize,
    served: usize,
    malformed_400: usize,
    failed: usize,
    first_error: Option<String>,
    connect_p50_ms: f64,
    connect_p99_ms: f64,
    recovery_ms: f64,
    caught_up: usize,
    rss_before_kib: u64,
    rss_peak_kib: u64,
    rss_after_kib: u64,
    probe: ProbeStats,
}

/// What one SSE client saw.
#[derive(Debug, Clone)]
struct SseOutcome {
    status: u16,
    headers_ms: f64,
    caught_up_ms: Option<f64>,
    last_id: u64,
    error: Option<String>,
}

/// Opens `GET /v1/events` with `last_event_id` and reads until an event id
/// at least `target` arrives or the deadline passes. Returns the open
/// stream too once caught up.
async fn sse_client(
    http: reqwest::Client,
    url: String,
    key: String,
    last_event_id: String,
    target: u64,
    t0: Instant,
) -> (SseOutcome, Option<reqwest::Response>) {
    let mut outcome = SseOutcome {
        status: 0,
        headers_ms: f64::NAN,
        caught_up_ms: None,
        last_id: 0,
        error: None,
    };
    let sent = http
        .get(url)
        .bearer_auth(key)
        .header("Accept", "text/event-stream")
        .header("Last-Event-ID", last_event_id)
        .send();
    let mut resp = match tokio::time::timeout(SSE_DEADLINE, sent).await {
        Ok(Ok(resp)) => resp,
        Ok(Err(e)) => {
            outcome.error = Some(e.to_string());
            return (outcome, None);
        }
        Err(_) => {
            outcome.error = Some("no answer in time".to_owned());
            return (outcome, None);
        }
    };
    outcome.status = resp.status().as_u16();
    outcome.headers_ms = t0.elapsed().as_secs_f64() * 1000.0;
    if !resp.status().is_success() {
        return (outcome, None);
    }
    let deadline = tokio::time::Instant::now() + SSE_DEADLINE;
    let mut buf: Vec<u8> = Vec::new();
    while outcome.last_id < target {
        match tokio::time::timeout_at(deadline, resp.chunk()).await {
            Ok(Ok(Some(chunk))) => buf.extend_from_slice(&chunk),
            Ok(Ok(None)) => {
                outcome.error = Some("stream ended".to_owned());
                return (outcome, None);
            }
            Ok(Err(e)) => {
                outcome.error = Some(e.to_string());
                return (outcome, None);
            }
            Err(_) => {
                outcome.error = Some("did not catch up in time".to_owned());
                return (outcome, None);
            }
        }
        let mut start = 0;
        while let Some(pos) = buf[start..].iter().position(|&b| b == b'\n') {
            let line = &buf[start..start + pos];
            if let Some(id) = line.strip_prefix(b"id:")
                && let Ok(id) = String::from_utf8_lossy(id).trim().parse::<u64>()
            {
                outcome.last_id = outcome.last_id.max(id);
            }
            start += pos + 1;
        }
        buf.drain(..start);
    }
    outcome.caught_up_ms = Some(t0.elapsed().as_secs_f64() * 1000.0);
    (outcome, Some(resp))
}

/// Starts `n` SSE clients at once; `last_id(i)` gives client i's
/// `Last-Event-ID`. Returns their outcomes once all are caught up or
/// failed (bounded by [`SSE_DEADLINE`]).
fn sse_wave(
    runtime: &tokio::runtime::Runtime,
    target: &Target,
    n: u32,
    last_id: impl Fn(u32) -> String,
    head: u64,
) -> Vec<SseOutcome> {
    runtime.block_on(async {
        let Ok(http) = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(0)
            .build()
        else {
            return Vec::new();
        };
        let release = Arc::new(tokio::sync::Notify::new());
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let t0 = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..n {
            let tx = tx.clone();
            let client = sse_client(
                http.clone(),
                format!("{}/v1/events", target.url),
                target.key.clone(),
                last_id(i),
                head,
                t0,
            );
            let release = Arc::clone(&release);
            tasks.spawn(async move {
                let (outcome, stream) = client.await;
                let _ = tx.send(outcome);
                // Hold the stream until every client is done, so that all
                // of them are connected at once.
                if stream.is_some() {
                    tokio::select! {
                        () = release.notified() => {}
                        () = tokio::time::sleep(SSE_DEADLINE) => {}
                    }
                }
                drop(stream);
            });
        }
        drop(tx);
        let mut outcomes = Vec::new();
        let deadline = tokio::time::Instant::now() + SSE_DEADLINE * 2;
        while outcomes.len() < n as usize {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(outcome)) => outcomes.push(outcome),
                Ok(None) | Err(_) => break,
            }
        }
        release.notify_waiters();
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
        outcomes
    })
}

#[allow(clippy::too_many_lines, reason = "one straight sequence of the phase")]
fn sse_storm(target: &Target, args: &Args) -> Result<SseResult, BoxError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let malformed = args.sse / 10;
    let mut result = SseResult {
        clients: args.sse,
        malformed,
        events_missed: SSE_EVENTS,
        rss_before_kib: rss_kib(target.api_pid),
        ..SseResult::default()
    };
    // The clients first catch up on the last few events, then go away.
    let head = make_events(target, SSE_EVENTS)?;
    let from = head.saturating_sub(u64::try_from(SSE_EVENTS)?);
    eprintln!(
        "bench-hostile: SSE: {} clients connect and catch up to event {head}",
        args.sse
    );
    let first = sse_wave(&runtime, target, args.sse, |_| from.to_string(), head);
    result.first_connected = first.iter().filter(|o| o.caught_up_ms.is_some()).count();
    let seen = first.iter().map(|o| o.last_id).min().unwrap_or(from);
    wait_connections_below(target, 1.0);
    // While they are away, more events happen.
    let head = make_events(target, SSE_EVENTS)?;
    eprintln!(
        "bench-hostile: SSE storm: {} clients reconnect at once with Last-Event-ID ({malformed} malformed), catch up to {head}",
        args.sse
    );
    let sampler = RssSampler::start(target.api_pid);
    let probe = Probe::start(target, "SSE storm");
    let bad = [
        "not-a-number",
        "-1",
        "99999999999999999999999",
        "1e9",
        "12abc",
    ];
    let storm = sse_wave(
        &runtime,
        target,
        args.sse,
        |i| {
            if i % 10 == 9 {
                bad[(i as usize / 10) % bad.len()].to_owned()
            } else {
                seen.to_string()
            }
        },
        head,
    );
    result.probe = probe.finish();
    for o in &storm {
        if o.caught_up_ms.is_some() {
            result.served += 1;
        } else if o.status == 400 {
            result.malformed_400 += 1;
        } else {
            result.failed += 1;
            if result.first_error.is_none() {
                result.first_error = Some(format!(
                    "status {} {}",
                    o.status,
                    o.error.clone().unwrap_or_default()
                ));
            }
        }
    }
    result.caught_up = result.served;
    let mut connect: Vec<f64> = storm
        .iter()
        .filter(|o| o.status != 0)
        .map(|o| o.headers_ms)
        .collect();
    connect.sort_by(f64::total_cmp);
    result.connect_p50_ms = util::quantile(&connect, 0.5).unwrap_or(f64::NAN);
    result.connect_p99_ms = util::quantile(&connect, 0.99).unwrap_or(f64::NAN);
    result.recovery_ms = storm
        .iter()
        .filter_map(|o| o.caught_up_ms)
        .fold(f64::NAN, f64::max);
    wait_connections_below(target, 1.0);
    result.rss_peak_kib = sampler.finish();
    std::thread::sleep(Duration::from_secs(2));
    result.rss_after_kib = rss_kib(target.api_pid);
    Ok(result)
}

// ---------------------------------------------------------------------------
// Phase 3: slowloris
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Default)]
struct SlowResult {
    connections: u32,
    hold_secs: u64,
    connects: usize,
    cut_by_server: usize,
    bytes_sent: usize,
    longest_lived_secs: f64,
    rss_before_kib: u64,
    rss_peak_kib: u64,
    rss_after_kib: u64,
    probe: ProbeStats,
}

fn slowloris(target: &Target, args: &Args) -> SlowResult {
    eprintln!(
        "bench-hostile: slowloris: {} connections, one header byte per second each, for {} s",
        args.slowloris, args.hold
    );
    let mut result = SlowResult {
        connections: args.slowloris,
        hold_secs: args.hold,
        rss_before_kib: rss_kib(target.api_pid),
        ..SlowResult::default()
    };
    let sampler = RssSampler::start(target.api_pid);
    let probe = Probe::start(target, "slowloris");
    let head = b"GET /health HTTP/1.1\r\nhost: 127.0.0.1\r\nx-slow: ";
    let open = |result: &mut SlowResult| -> Option<(TcpStream, Instant)> {
        result.connects += 1;
        let mut s = connect_nonblocking(target.addr).ok()?;
        s.write_all(head).ok()?;
        Some((s, Instant::now()))
    };
    let mut streams: Vec<Option<(TcpStream, Instant)>> =
        (0..args.slowloris).map(|_| open(&mut result)).collect();
    let started = Instant::now();
    let hold = Duration::from_secs(args.hold);
    while started.elapsed() < hold && !util::stop_requested() {
        std::thread::sleep(Duration::from_secs(1));
        for slot in &mut streams {
            let cut = match slot {
                Some((s, born)) => {
                    let mut sink = [0_u8; 512];
                    let gone = matches!(s.read(&mut sink), Ok(0))
                        || matches!(s.read(&mut sink), Err(ref e) if e.kind() != ErrorKind::WouldBlock)
                        || s.write_all(b"a").is_err();
                    if gone {
                        result.longest_lived_secs =
                            result.longest_lived_secs.max(born.elapsed().as_secs_f64());
                    } else {
                        result.bytes_sent += 1;
                    }
                    gone
                }
                None => true,
            };
            if cut {
                if slot.is_some() {
                    result.cut_by_server += 1;
                }
                *slot = open(&mut result);
            }
        }
    }
    result.probe = probe.finish();
    drop(streams);
    wait_connections_below(target, 1.0);
    result.rss_peak_kib = sampler.finish();
    std::thread::sleep(Duration::from_secs(2));
    result.rss_after_kib = rss_kib(target.api_pid);
    result
}

// ---------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------

#[derive(Debug, Default)]
struct Report {
    command: String,
    machine: String,
    revision: String,
    load: String,
    baseline: ProbeStats,
    idle: Option<IdleResult>,
    sse: Option<SseResult>,
    slowloris: Option<SlowResult>,
    final_rss_kib: u64,
    final_metrics: Vec<(String, f64)>,
    api_restarts: Option<u64>,
    /// A `--smoke` run.
    smoke: bool,
}

#[allow(clippy::cast_precision_loss)]
fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn probe_row(phase: &str, p: &ProbeStats) -> String {
    format!(
        "| {phase} | {} | {} | {:.1} | {:.1} | {:.1} | {} |\n",
        p.ok,
        p.failed,
        p.p50_ms,
        p.p99_ms,
        p.max_ms,
        p.first_error.as_deref().unwrap_or("—")
    )
}

impl Report {
    #[allow(clippy::too_many_lines, reason = "one straight document")]
    fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "## Hostile clients (`just bench-hostile`)\n");
        let _ = writeln!(
            s,
            "Command: `{}` · revision {} · {} · load average before: {}\n",
            self.command, self.revision, self.machine, self.load
        );
        if self.smoke {
            let _ = writeln!(
                s,
                "**Smoke run** ({} build): it proves the bench runs; its figures measure nothing.\n",
                if cfg!(debug_assertions) {
                    "debug"
                } else {
                    "release"
                }
            );
        }
        let _ = writeln!(
            s,
            "A release `revaerd` on 127.0.0.1; limits from `api/src/server.rs` (4096 connections, 10 s header/idle timeout, 32 KiB head, body ≥ 1 KiB/s after 5 s). \
             A probe client makes one request every 20 ms (`GET /health` and `GET /v1/torrents?limit=100` alternately), **each on a new connection**, during every phase. \
             RSS is `VmRSS` of `revaer-api`: before the phase, peak during it (sampled every 100 ms), 2 s after its connections are gone; \
             memory freed by closed connections stays with the allocator for reuse, so growth from one phase to the next, not `after` against `before`, would show a leak.\n"
        );
        let _ = writeln!(
            s,
            "| phase | probe ok | probe failed | p50 ms | p99 ms | max ms | first failure |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|---|");
        s.push_str(&probe_row("baseline (quiet)", &self.baseline));
        if let Some(i) = &self.idle {
            s.push_str(&probe_row(
                &format!("{} idle connections", i.wanted),
                &i.probe,
            ));
        }
        if let Some(r) = &self.sse {
            s.push_str(&probe_row(
                &format!("{} SSE clients reconnecting", r.clients),
                &r.probe,
            ));
        }
        if let Some(r) = &self.slowloris {
            s.push_str(&probe_row(
                &format!("{} slowloris", r.connections),
                &r.probe,
            ));
        }
        s.push('\n');
        let _ = writeln!(
            s,
            "| phase | RSS before MiB | RSS peak MiB | RSS after MiB |"
        );
        let _ = writeln!(s, "|---|---|---|---|");
        if let Some(i) = &self.idle {
            let _ = writeln!(
                s,
                "| idle flood | {:.1} | {:.1} | {:.1} |",
                mib(i.rss_before_kib),
                mib(i.rss_peak_kib),
                mib(i.rss_after_kib)
            );
        }
        if let Some(r) = &self.sse {
            let _ = writeln!(
                s,
                "| SSE reconnect storm | {:.1} | {:.1} | {:.1} |",
                mib(r.rss_before_kib),
                mib(r.rss_peak_kib),
                mib(r.rss_after_kib)
            );
        }
        if let Some(r) = &self.slowloris {
            let _ = writeln!(
                s,
                "| slowloris | {:.1} | {:.1} | {:.1} |",
                mib(r.rss_before_kib),
                mib(r.rss_peak_kib),
                mib(r.rss_after_kib)
            );
        }
        s.push('\n');
        if let Some(i) = &self.idle {
            let _ = writeln!(
                s,
                "**Idle flood.** {} connections that never send a byte, held {} s (the ones the server closed were reopened once a second): {} connects, {} failed, {} closed by the server; \
                 the server had {} open at mid-phase and the bench {} still open at the end. Open connections back to ≤ 1 in {} after the bench let go. Connection counters afterwards: {}.\n",
                i.wanted,
                i.hold_secs,
                i.connects,
                i.connect_failures,
                i.closed_by_server,
                i.server_open_mid,
                i.open_at_end,
                i.drain_secs.map_or_else(
                    || "(did not drain in 60 s)".to_owned(),
                    |d| format!("{d:.1} s")
                ),
                i.metrics_after
                    .iter()
                    .map(|(k, v)| format!("`{k}` {v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        if let Some(r) = &self.sse {
            let _ = writeln!(
                s,
                "**SSE reconnect storm.** {} clients first caught up ({} did), were all dropped at once, {} events happened, then all reconnected at once to `GET /v1/events` with `Last-Event-ID` — {} with a malformed id (`not-a-number`, `-1`, 10^23, `1e9`, `12abc`). \
                 {} of {} valid clients were served and replayed every missed event; {} malformed ones got `400`; {} failed{}. \
                 Response head p50 {:.0} ms, p99 {:.0} ms; recovery (last valid client caught up) {:.0} ms.\n",
                r.clients,
                r.first_connected,
                r.events_missed,
                r.malformed,
                r.served,
                r.clients - r.malformed,
                r.malformed_400,
                r.failed,
                r.first_error
                    .as_ref()
                    .map(|e| format!(" (first: {e})"))
                    .unwrap_or_default(),
                r.connect_p50_ms,
                r.connect_p99_ms,
                r.recovery_ms
            );
        }
        if let Some(r) = &self.slowloris {
            let _ = writeln!(
                s,
                "**Slowloris.** {} connections sending one header byte per second each, held {} s and reopened when cut: {} connects, {} cut by the server, the longest-lived lasted {:.1} s, {} bytes trickled in all.\n",
                r.connections,
                r.hold_secs,
                r.connects,
                r.cut_by_server,
                r.longest_lived_secs,
                r.bytes_sent
            );
        }
        let _ = writeln!(
            s,
            "After all phases: `revaer-api` RSS {:.1} MiB, API restarts {} (the daemon stayed up throughout), counters: {}.",
            mib(self.final_rss_kib),
            self.api_restarts
                .map_or_else(|| "unknown".to_owned(), |n| n.to_string()),
            self.final_metrics
                .iter()
                .map(|(k, v)| format!("`{k}` {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        s
    }
}

// ---------------------------------------------------------------------------
// Environment
// ---------------------------------------------------------------------------

/// Raises `RLIMIT_NOFILE` to at least `want` (root may raise the hard
/// limit too); returns the soft limit in force.
fn raise_nofile(want: u64) -> Result<u64, BoxError> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if hard < want && setrlimit(Resource::RLIMIT_NOFILE, want, want).is_ok() {
        return Ok(want);
    }
    util::raise_nofile()
}

fn command_line(args: &Args) -> String {
    let mut cmd = "just bench-hostile".to_owned();
    if args.smoke {
        cmd.push_str(" --smoke");
    }
    let _ = write!(
        cmd,
        " --idle {} --sse {} --slowloris {} --hold {} --baseline {}",
        args.idle, args.sse, args.slowloris, args.hold, args.baseline
    );
    cmd
}
