//! `just bench-api`: Revaer's control plane under load. Not part of CI.
//!
//! 10,000 small generated `.torrent` files (paused) are loaded into a
//! release `revaerd` through `POST /v1/torrents`; then, in one run:
//! `wrk --latency -t2 -c32` on `GET /v1/torrents?limit=100` and on a
//! filtered list; SSE fan-out latency with 1,000 subscribers on
//! `GET /v1/events` while torrents are resumed; the idle RSS of every Revaer
//! process. For comparison, in the same run: (a) the HTTP ceiling of this
//! machine — a minimal axum server (a child process of this program)
//! answering with a precomputed body of the same size as Revaer's
//! `limit=100` answer, measured with the same `wrk` parameters — and (b)
//! `qbittorrent-nox` holding the same torrents, measured on
//! `/api/v2/torrents/info?limit=100` with one connection and a long timeout
//! (it spends ~1.4 s of CPU per such request), plus its idle RSS.
//!
//! Everything listens on 127.0.0.1; every loop is bounded in count and
//! time; every child is stopped and reaped, also on error or Ctrl-C. Writes
//! `bench/results/api.md`, whose last line is
//! `ratio revaer/axum_ceiling=A.AA revaer/qbittorrent_rps=X.XX p99_ms=Y.YY sse_p99_ms=Z.ZZ rss_ratio=W.WW`.

#[path = "bench_api/ceiling.rs"]
mod ceiling;
#[path = "bench_api/profile.rs"]
mod profile;
#[path = "bench_api/qbittorrent.rs"]
mod qbittorrent;
#[path = "bench_api/report.rs"]
mod report;
#[path = "bench_api/revaer.rs"]
mod revaer;
#[path = "bench_api/sse.rs"]
mod sse;
#[path = "support/mod.rs"]
mod support;
#[path = "bench_api/torrents.rs"]
mod torrents;
#[allow(dead_code)]
#[path = "bench_api/util.rs"]
mod util;
#[path = "bench_api/wrk.rs"]
mod wrk;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;

use report::{CpuSplit, Measured, Meta, RevaerPart};
use util::{BoxError, TempDir, command_output};
use wrk::WrkSpec;

#[derive(Debug, Parser)]
#[command(about = "Revaer's HTTP API under load vs a minimal axum server and qBittorrent")]
#[allow(clippy::struct_excessive_bools)]
struct Args {
    /// Torrents to load (paused).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(100..=100_000))]
    torrents: u32,
    /// Seconds of each `wrk` run on Revaer and on the ceiling.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=300))]
    duration: u64,
    /// Seconds of the `wrk` run on qBittorrent.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=600))]
    qbt_duration: u64,
    /// `wrk` threads and connections (Revaer and ceiling).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=64))]
    threads: u32,
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=4096))]
    connections: u32,
    /// SSE subscribers.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    subscribers: u32,
    /// SSE rounds (one resumed torrent each).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=500))]
    sse_rounds: u32,
    /// Uploads in flight while loading Revaer.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=256))]
    concurrency: u32,
    /// Only these parts (comma-separated: revaer,ceiling,qbittorrent).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Body size of the ceiling when Revaer is not measured.
    #[arg(long, default_value_t = 50_000)]
    ceiling_bytes: usize,
    /// Scheduling priority (nice value) of the bench and everything it
    /// starts — servers and `wrk` alike; a negative value (root) keeps other
    /// work on a shared machine from disturbing the runs.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true, value_parser = clap::value_parser!(i32).range(-20..=19))]
    nice: i32,
    /// Also profile Revaer's API worker with `perf` during an extra,
    /// unmeasured `wrk` run of each list, and add the hottest symbols to
    /// the report.
    #[arg(long)]
    perf: bool,
    /// Where to write the report (default: bench/results/api.md in the workspace).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Smoke run: 100 torrents, 1-second `wrk` runs, 10 SSE subscribers
    /// for 3 rounds, no waiting for a quiet machine, no repeated runs;
    /// revaer,ceiling (and qbittorrent when installed) unless `--only`;
    /// report in a temp file unless `--out`.
    #[arg(long)]
    smoke: bool,

    /// Internal: run as the ceiling server, answering with this file.
    #[arg(long, hide = true)]
    ceiling_body: Option<PathBuf>,
}

impl Args {
    fn wants(&self, part: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|p| p == part)
    }

    fn spec(&self, url: String, bearer: Option<String>) -> WrkSpec {
        WrkSpec {
            threads: self.threads,
            connections: self.connections,
            duration: Duration::from_secs(self.duration),
            timeout: Duration::from_secs(30),
            url,
            bearer,
        }
    }

    /// `just bench-api` with the options that differ from the defaults.
    fn command_line(&self) -> String {
        let mut line = "just bench-api".to_owned();
        if self.smoke {
            line.push_str(" --smoke");
        }
        let defaults = Self::parse_from(["bench_api"]);
        let mut opt = |name: &str, value: String, default: String| {
            if value != default {
                let _ = write!(line, " --{name} {value}");
            }
        };
        opt(
            "torrents",
            self.torrents.to_string(),
            defaults.torrents.to_string(),
        );
        opt(
            "duration",
            self.duration.to_string(),
            defaults.duration.to_string(),
        );
        opt(
            "qbt-duration",
            self.qbt_duration.to_string(),
            defaults.qbt_duration.to_string(),
        );
        opt(
            "threads",
            self.threads.to_string(),
            defaults.threads.to_string(),
        );
        opt(
            "connections",
            self.connections.to_string(),
            defaults.connections.to_string(),
        );
        opt(
            "subscribers",
            self.subscribers.to_string(),
            defaults.subscribers.to_string(),
        );
        opt(
            "sse-rounds",
            self.sse_rounds.to_string(),
            defaults.sse_rounds.to_string(),
        );
        opt(
            "concurrency",
            self.concurrency.to_string(),
            defaults.concurrency.to_string(),
        );
        opt("nice", self.nice.to_string(), defaults.nice.to_string());
        opt("only", self.only.join(","), String::new());
        if self.perf {
            line.push_str(" --perf");
        }
        line
    }
}

fn main() -> ExitCode {
    let mut args = Args::parse();
    if args.smoke && args.ceiling_body.is_none() {
        util::set_smoke();
        args.torrents = 100;
        args.duration = 1;
        args.qbt_duration = 1;
        args.subscribers = 10;
        args.sse_rounds = 3;
        args.concurrency = 4;
        if args.only.is_empty() {
            args.only = vec!["revaer".to_owned(), "ceiling".to_owned()];
            if util::on_path("qbittorrent-nox") {
                args.only.push("qbittorrent".to_owned());
            }
        }
    }
    let result = match &args.ceiling_body {
        Some(body) => ceiling::serve(body),
        None => bench(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench-api: {e}");
            ExitCode::FAILURE
        }
    }
}

/// CPU seconds used by each of `pids` (and `wrk`) between two samples.
fn cpu_split(before: &[(u32, f64)], after: &[(u32, f64)], wrk_cpu: Option<f64>) -> CpuSplit {
    let mut split: Vec<(String, f64)> = after
        .iter()
        .map(|&(pid, cpu)| {
            let was = before
                .iter()
                .find(|(p, _)| *p == pid)
                .map_or(0.0, |&(_, c)| c);
            (util::comm(pid), cpu - was)
        })
        .collect();
    if let Some(w) = wrk_cpu {
        split.push(("wrk".to_owned(), w));
    }
    CpuSplit(split)
}

/// Most `wrk` attempts per measurement.
pub const ATTEMPTS: u32 = 3;
/// Share of one CPU other processes may use during a run before it is
/// repeated (this machine is shared).
pub const MAX_INTERFERENCE: f64 = 0.25;

/// A `wrk` run against a server whose processes are `pids` (`label` names
/// them when their executable name would not). Repeated (up to
/// [`ATTEMPTS`]) while other processes used more than
/// [`MAX_INTERFERENCE`] of a CPU during it; the least disturbed run is kept.
fn measure(
    spec: &WrkSpec,
    server: (&[u32], Option<&str>),
    dir: &Path,
    tag: &str,
    body_bytes: usize,
) -> Result<Measured, BoxError> {
    let (pids, label) = server;
    let mut best: Option<(f64, Measured)> = None;
    let mut made = 0;
    for attempt in 1..=ATTEMPTS {
        made = attempt;
        let busy = util::wait_machine_quiet(0.2, Duration::from_secs(60));
        eprintln!(
            "bench-api: {} (attempt {attempt}, machine busy {busy:.2} CPUs before)",
            spec.display()
        );
        let before = util::cpu_of(pids);
        let machine_before = util::machine_cpu().unwrap_or_default();
        let result = wrk::run(spec, dir, &format!("{tag}-{attempt}"))?;
        let machine_after = util::machine_cpu().unwrap_or_default();
        let after = util::cpu_of(pids);
        let in_processes = machine_after.0 - machine_before.0;
        let in_interrupts = machine_after.1 - machine_before.1;
        if result.non_2xx > 0 {
            return Err(format!("{tag}: {} answers were not 2xx", result.non_2xx).into());
        }
        let mut cpu = cpu_split(&before, &after, Some(result.wrk_cpu));
        if let Some(label) = label {
            for (name, _) in &mut cpu.0 {
                if name != "wrk" {
                    label.clone_into(name);
                }
            }
        }
        let ours: f64 = cpu.0.iter().map(|(_, c)| c).sum();
        let others = (in_processes - ours).max(0.0);
        cpu.0.push(("other processes".to_owned(), others));
        cpu.0
            .push(("interrupts (loopback delivery)".to_owned(), in_interrupts));
        let interference = others / result.seconds.max(1.0);
        eprintln!(
            "bench-api:   {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, socket errors: {}; other processes {:.0} % of a CPU",
            result.rps,
            result.p50_ms,
            result.p99_ms,
            result.socket_errors,
            interference * 100.0
        );
        let measured = Measured {
            spec: spec.clone(),
            result,
            body_bytes,
            cpu,
            attempts: attempt,
        };
        if best.as_ref().is_none_or(|(b, _)| interference < *b) {
            best = Some((interference, measured));
        }
        if interference <= MAX_INTERFERENCE || util::stop_requested() || util::smoke() {
            break;
        }
    }
    let (_, mut measured) = best.ok_or("no wrk run")?;
    measured.attempts = made;
    Ok(measured)
}

/// The Revaer part; also saves its `limit=100` answer to `body_file`.
#[allow(
    clippy::too_many_lines,
    reason = "one straight sequence: start, load, measure, stop"
)]
fn run_revaer(
    args: &Args,
    all: &Arc<Vec<torrents::BenchTorrent>>,
    bin_dir: &Path,
    work: &Path,
    body_file: &Path,
) -> Result<RevaerPart, BoxError> {
    for bin in ["revaerd", "revaer-api", "revaer-engine", "revaer-fsops"] {
        if !bin_dir.join(bin).is_file() {
            return Err(format!(
                "{} is missing: run `just bench-api` (it builds the release binaries)",
                bin_dir.join(bin).display()
            )
            .into());
        }
    }
    let version = command_output(&bin_dir.join("revaerd").to_string_lossy(), &["--version"])
        .map_or_else(
            |e| e,
            |s| s.lines().next().unwrap_or_default().trim().to_owned(),
        );
    let mut daemon = revaer::Revaer::start(
        bin_dir,
        &work.join("revaer-data"),
        &work.join("revaerd.log"),
    )?;
    eprintln!(
        "bench-api: Revaer at {} (pids {:?}); loading {} torrents",
        daemon.url,
        daemon.pids(),
        all.len()
    );
    let load = revaer::load(&mut daemon, all, usize::try_from(args.concurrency)?)?;
    eprintln!(
        "bench-api: Revaer: every torrent listed paused after {:.1} s",
        load.listed_secs
    );

    let resp = daemon.get("/v1/torrents?limit=100")?;
    if !resp.status().is_success() {
        return Err(format!("GET /v1/torrents?limit=100: {}", resp.status()).into());
    }
    let body = resp.bytes()?;
    let page: serde_json::Value = serde_json::from_slice(&body)?;
    let items = page["items"].as_array().map_or(0, Vec::len);
    if items != 100 || page["stale"] != serde_json::json!(false) {
        return Err(format!("limit=100 answered {items} items, stale={}", page["stale"]).into());
    }
    std::fs::write(body_file, &body)?;
    let filtered_query = format!("/v1/torrents?{}", torrents::FILTER_QUERY);
    let (filtered_page, filtered_bytes) = daemon.get_json(&filtered_query)?;
    let filtered_matches = torrents::filter_matches(all.len());
    let filtered_items = filtered_page["items"].as_array().map_or(0, Vec::len);
    let wrong = filtered_page["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| {
            let mkv = t["name"]
                .as_str()
                .is_some_and(|n| n.to_ascii_lowercase().rsplit('.').next() == Some("mkv"));
            let tagged = t["tags"]
                .as_array()
                .is_some_and(|tags| tags.contains(&serde_json::json!("group-2")));
            !(mkv && tagged)
        })
        .count();
    if filtered_items != filtered_matches.min(100) || wrong > 0 {
        return Err(format!(
            "the filtered list answered {filtered_items} items ({wrong} not matching), expected {}",
            filtered_matches.min(100)
        )
        .into());
    }

    let pids = daemon.pids();
    let quiet_after = util::wait_quiet(
        &pids,
        0.05,
        Duration::from_secs(1),
        Duration::from_secs(180),
    );
    let idle = util::tree_rss(daemon.proc.pid());
    eprintln!(
        "bench-api: Revaer idle RSS {} MiB over {} processes",
        idle.iter().map(|s| s.rss_kib).sum::<u64>() / 1024,
        idle.len()
    );

    let base = daemon.url.clone();
    let list = measure(
        &args.spec(
            format!("{base}/v1/torrents?limit=100"),
            Some(daemon.key.clone()),
        ),
        (&pids, None),
        work,
        "revaer-list",
        body.len(),
    )?;
    daemon.proc.check_alive()?;
    let filtered = measure(
        &args.spec(format!("{base}{filtered_query}"), Some(daemon.key.clone())),
        (&pids, None),
        work,
        "revaer-filtered",
        filtered_bytes,
    )?;
    daemon.proc.check_alive()?;

    let mut profiles = Vec::new();
    if args.perf {
        let api = pids
            .iter()
            .copied()
            .find(|&p| util::comm(p) == "revaer-api")
            .ok_or("no revaer-api process")?;
        for (tag, spec) in [("list", &list.spec), ("filtered", &filtered.spec)] {
            match profile::profile(spec, api, work, tag) {
                Ok(summary) => profiles.push(summary),
                Err(e) => profiles.push(format!("`perf` failed: {e}\n")),
            }
        }
        daemon.proc.check_alive()?;
    }

    let rounds = usize::try_from(args.sse_rounds)?;
    let me = std::process::id();
    let busy = util::wait_machine_quiet(0.2, Duration::from_secs(60));
    eprintln!("bench-api: SSE (machine busy {busy:.2} CPUs before)");
    let sse_before = util::cpu_of(&[pids.as_slice(), &[me]].concat());
    let sse_machine_before = util::machine_cpu().unwrap_or_default();
    let sse_started = Instant::now();
    let sse = daemon
        .first_ids(rounds)
        .and_then(|ids| {
            if ids.len() < rounds {
                return Err(format!("only {} torrents for {rounds} SSE rounds", ids.len()).into());
            }
            sse::run(
                &base,
                &daemon.key,
                &ids,
                usize::try_from(args.subscribers)?,
                Duration::from_secs(10),
            )
        })
        .map_err(|e| e.to_string());
    let sse_secs = sse_started.elapsed().as_secs_f64();
    let mut sse_cpu = cpu_split(
        &sse_before,
        &util::cpu_of(&[pids.as_slice(), &[me]].concat()),
        None,
    );
    if let Some(last) = sse_cpu.0.last_mut() {
        "bench_api (the subscribers)".clone_into(&mut last.0);
    }
    let sse_machine = util::machine_cpu().unwrap_or_default();
    let ours: f64 = sse_cpu.0.iter().map(|(_, c)| c).sum();
    sse_cpu.0.push((
        "other processes".to_owned(),
        (sse_machine.0 - sse_machine_before.0 - ours).max(0.0),
    ));
    sse_cpu.0.push((
        "interrupts".to_owned(),
        sse_machine.1 - sse_machine_before.1,
    ));
    match &sse {
        Ok(s) => eprintln!(
            "bench-api: SSE: {} pairs, p50 {:.2} ms, p99 {:.2} ms, missing {}",
            s.pairs, s.p50_ms, s.p99_ms, s.missing
        ),
        Err(e) => eprintln!("bench-api: SSE failed: {e}"),
    }
    daemon.proc.check_alive()?;
    let after = util::tree_rss(daemon.proc.pid());
    let stop_secs = daemon.proc.stop()?.as_secs_f64();
    Ok(RevaerPart {
        version,
        load,
        quiet_after,
        idle,
        after,
        list,
        filtered,
        filtered_matches,
        sse,
        sse_cpu,
        sse_secs,
        stop_secs,
        profiles,
    })
}

fn run_ceiling(args: &Args, work: &Path, body_file: &Path) -> Result<Measured, BoxError> {
    let self_exe = std::env::current_exe()?;
    let body_bytes = usize::try_from(std::fs::metadata(body_file)?.len())?;
    let (mut proc, port) = ceiling::start(&self_exe, body_file)?;
    let pids = [proc.pid()];
    let measured = measure(
        &args.spec(
            format!("http://127.0.0.1:{port}/v1/torrents?limit=100"),
            None,
        ),
        (&pids, Some("axum ceiling")),
        work,
        "ceiling",
        body_bytes,
    );
    proc.check_alive()?;
    proc.stop()?;
    measured
}

/// Puts the scheduler autogroup's nice value back when dropped.
struct AutogroupRestore(Option<String>);

impl AutogroupRestore {
    fn new() -> Self {
        // `/autogroup-44 nice 0`
        Self(
            std::fs::read_to_string("/proc/self/autogroup")
                .ok()
                .and_then(|s| s.split_whitespace().nth(2).map(str::to_owned)),
        )
    }
}

impl Drop for AutogroupRestore {
    fn drop(&mut self) {
        if let Some(nice) = &self.0 {
            let _ = std::fs::write("/proc/self/autogroup", nice);
        }
    }
}

/// `wrk --version` prints its version and exits 1.
fn wrk_version() -> String {
    let Ok(out) = std::process::Command::new("wrk")
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .output()
    else {
        return "wrk (unknown version)".to_owned();
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    text.lines()
        .find(|l| l.starts_with("wrk "))
        .and_then(|l| l.split(" Copyright").next().map(|v| v.trim().to_owned()))
        .unwrap_or_else(|| "wrk (unknown version)".to_owned())
}

/// The commit measured, and whether the working tree differs from it apart
/// from this bench's own files.
fn revision() -> String {
    let Ok(root) = util::workspace_root().map(|p| p.display().to_string()) else {
        return "unknown revision".to_owned();
    };
    let Ok(head) = command_output("git", &["-C", &root, "rev-parse", "--short=7", "HEAD"]) else {
        return "unknown revision".to_owned();
    };
    let changed = command_output(
        "git",
        &[
            "-C",
            &root,
            "status",
            "--porcelain",
            "--untracked-files=no",
            "--",
            ".",
            ":(exclude)supervisor/examples/bench_api.rs",
            ":(exclude)supervisor/examples/bench_api",
            ":(exclude)supervisor/examples/support",
            ":(exclude)supervisor/Cargo.toml",
            ":(exclude)justfile",
            ":(exclude)bench/results",
        ],
    )
    .unwrap_or_default();
    let changed: Vec<&str> = changed.lines().filter_map(|l| l.get(3..)).collect();
    if changed.is_empty() {
        format!("commit {}", head.trim())
    } else {
        let shown = changed
            .iter()
            .take(6)
            .copied()
            .collect::<Vec<_>>()
            .join(", ");
        let more = changed.len().saturating_sub(6);
        let more = if more > 0 {
            format!(" and {more} more files")
        } else {
            String::new()
        };
        format!(
            "commit {} with uncommitted changes to {shown}{more}",
            head.trim()
        )
    }
}

#[allow(
    clippy::too_many_lines,
    reason = "one straight sequence: prepare, measure, report"
)]
fn bench(args: &Args) -> Result<(), BoxError> {
    for part in &args.only {
        if !["revaer", "ceiling", "qbittorrent"].contains(&part.as_str()) {
            return Err(format!("unknown part `{part}` (revaer, ceiling, qbittorrent)").into());
        }
    }
    let started = Instant::now();
    util::install_stop_handler()?;
    util::become_subreaper()?;
    // Dropped last: collects any orphan left behind, on every way out.
    let _reaper = util::ReapOnDrop;
    if !util::on_path("wrk") {
        return Err("wrk is not installed (apt package wrk; `just bench-api` installs it)".into());
    }
    let nofile = util::raise_nofile()?;
    let mut priority = String::new();
    let _restore = AutogroupRestore::new();
    if args.nice != 0 {
        // Inherited by every child started from here on.
        let pid = std::process::id().to_string();
        command_output("renice", &["-n", &args.nice.to_string(), "-p", &pid])?;
        // With autogroup scheduling, CPU is shared between sessions first
        // and nice only ranks processes within one: give this session's
        // group the same nice value.
        priority = match std::fs::write("/proc/self/autogroup", args.nice.to_string()) {
            Ok(()) => format!(
                "nice {} for the bench's processes and its scheduler autogroup ({})",
                args.nice,
                std::fs::read_to_string("/proc/self/autogroup")
                    .unwrap_or_default()
                    .trim()
            ),
            Err(e) => format!(
                "nice {} for the bench's processes (its scheduler autogroup kept its weight: {e})",
                args.nice
            ),
        };
        eprintln!("bench-api: {priority}");
    }
    let bin_dir = support::release_dir().map_err(|e| e.to_string())?;
    let out_path = match &args.out {
        Some(p) => p.clone(),
        None if args.smoke => support::smoke_report("api.md").map_err(|e| e.to_string())?,
        None => util::workspace_root()?.join("bench/results/api.md"),
    };
    let started_utc = command_output("date", &["-u", "+%Y-%m-%d %H:%M"])
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    let load_before = util::load_average();
    let work = TempDir::new(
        std::env::temp_dir().join(format!("revaer-bench-api-{}", std::process::id())),
    )?;
    eprintln!("bench-api: working in {}", work.path().display());

    let t = Instant::now();
    let all = Arc::new(torrents::make_all(usize::try_from(args.torrents)?));
    let generate_ms = t.elapsed().as_secs_f64() * 1000.0;
    let torrent_bytes = all.iter().map(|t| t.bytes.len()).sum();
    eprintln!(
        "bench-api: generated {} torrents ({torrent_bytes} bytes) in {generate_ms:.0} ms",
        all.len()
    );

    let body_file = work.path().join("limit100.json");
    let revaer = if args.wants("revaer") {
        run_revaer(args, &all, &bin_dir, work.path(), &body_file).map_err(|e| e.to_string())
    } else {
        Err("not selected".to_owned())
    };
    if let Err(e) = &revaer {
        eprintln!("bench-api: Revaer: {e}");
    }
    util::reap_orphans(Duration::from_secs(10));
    if util::stop_requested() {
        return Err("interrupted".into());
    }

    let ceiling = if args.wants("ceiling") {
        if revaer.is_err() {
            let filler = format!(
                "{{\"items\":[],\"pad\":\"{}\"}}",
                "x".repeat(args.ceiling_bytes.saturating_sub(22))
            );
            std::fs::write(&body_file, filler)?;
        }
        run_ceiling(args, work.path(), &body_file).map_err(|e| e.to_string())
    } else {
        Err("not selected".to_owned())
    };
    if let Err(e) = &ceiling {
        eprintln!("bench-api: ceiling: {e}");
    }
    if util::stop_requested() {
        return Err("interrupted".into());
    }

    let qbt = if !args.wants("qbittorrent") {
        Err("not selected".to_owned())
    } else if util::on_path("qbittorrent-nox") {
        qbittorrent::run(
            &all,
            work.path(),
            Duration::from_secs(args.qbt_duration),
            Duration::from_secs(30),
        )
        .map_err(|e| e.to_string())
    } else {
        Err("qbittorrent-nox is not installed (apt package qbittorrent-nox)".to_owned())
    };
    if let Err(e) = &qbt {
        eprintln!("bench-api: qBittorrent: {e}");
    }
    util::reap_orphans(Duration::from_secs(10));

    let meta = Meta {
        command: args.command_line(),
        revision: revision(),
        machine: util::machine_facts(),
        started_utc,
        load_before,
        load_after: util::load_average(),
        total_secs: started.elapsed().as_secs_f64(),
        torrents: all.len(),
        generate_ms,
        torrent_bytes,
        nofile,
        priority,
        wrk_version: wrk_version(),
        smoke: args.smoke,
    };
    let text = report::render(&meta, revaer.as_ref(), ceiling.as_ref(), qbt.as_ref());
    if let Some(dir) = out_path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&out_path, &text)?;
    println!("{text}");
    eprintln!("bench-api: wrote {}", out_path.display());
    let failed: Vec<String> = [
        ("revaer", revaer.err()),
        ("ceiling", ceiling.err()),
        ("qbittorrent", qbt.err()),
    ]
    .into_iter()
    .filter(|(name, e)| args.wants(name) && e.is_some())
    .map(|(name, e)| format!("{name}: {}", e.unwrap_or_default()))
    .collect();
    if !failed.is_empty() {
        return Err(format!("parts failed: {}", failed.join("; ")).into());
    }
    Ok(())
}
