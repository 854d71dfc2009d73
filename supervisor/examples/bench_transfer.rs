//! `just bench-transfer`: download throughput of Revaer on loopback, against
//! a bare libtorrent session and three other clients. Not part of CI.
//!
//! One libtorrent seed session (our `revaer-libtorrent-sys` bridge, TCP only,
//! no DHT/LSD/UPnP/NAT-PMP, no rate limits) serves a 512 MiB single-file
//! v1 torrent of pseudo-random data for the whole bench. Downloaders:
//! (a) a bare libtorrent session over the same bridge in a child process
//! (`bench_transfer --bare-download …`), (b) `revaerd` (release, fresh data
//! dir; torrent added through the API's test route, measured on its engine
//! worker), (c) `qbittorrent-nox`, (d) `transmission-daemon` inside a network
//! namespace the bench makes (Transmission refuses 127.0.0.0/8 peers), (e)
//! `aria2c`. Runs are interleaved (a, b, c, d, e) × 3, each with a fresh
//! process and directories, deleted afterwards.
//!
//! Per run: the downloader is started and answering first; wall time runs
//! from the add request to the first 50 ms status poll that shows every byte
//! verified (MB/s with MB = 10^6 bytes); CPU is utime+stime of the measured
//! process over that interval (`/proc/<pid>/stat`), peak RSS its `VmHWM` at
//! completion. Every wait is a poll with a deadline; every child is stopped
//! and reaped, the namespace deleted, also on error or Ctrl-C.
//!
//! Revaer's requests carry its bootstrap admin key (`Authorization:
//! Bearer`), read from `<data>/bootstrap-admin.key` once the API accepts it.
//!
//! Writes `bench/results/transfer.md`, whose last line is
//! `ratio revaer/bare=X.XX revaer/qbittorrent=Y.YY`.
//!
//! `--smoke`: 16 MiB, one run each of bare libtorrent, Revaer, aria2c and
//! qbittorrent-nox (the last two when installed; Transmission only if named
//! in `--only`: its 10-second rechoke pulse makes every run ≥ 11 s), the
//! report in a temp file (or `--out`): proves the bench still runs
//! (`just bench-smoke`, part of `./x test`).

#[path = "bench_transfer/clients.rs"]
mod clients;
#[path = "bench_transfer/netns.rs"]
mod netns;
#[path = "bench_transfer/report.rs"]
mod report;
#[path = "bench_transfer/seed.rs"]
mod seed;
#[path = "support/mod.rs"]
mod support;
#[path = "bench_transfer/util.rs"]
mod util;

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;

use clients::{Ctx, Downloader};
use netns::Netns;
use report::{Entry, Meta, RunRecord};
use util::{BoxError, TempDir, command_output, on_path, reap_orphans, stop_requested};

#[derive(Debug, Parser)]
#[command(
    about = "Loopback download throughput: Revaer vs bare libtorrent, qBittorrent, Transmission, aria2"
)]
struct Args {
    /// Runs per downloader.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=20))]
    runs: u16,
    /// Size of the torrent's file in MiB.
    #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u64).range(16..=8192))]
    size_mib: u64,
    /// Only these downloaders (comma-separated: bare,revaer,qbittorrent,transmission,aria2).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Status poll interval in milliseconds.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(5..=1000))]
    poll_ms: u64,
    /// Where to write the report (default: bench/results/transfer.md in the workspace).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Smoke run: 16 MiB, 1 run, bare,revaer,qbittorrent,aria2 unless
    /// `--only`, report in a temp file unless `--out`.
    #[arg(long)]
    smoke: bool,

    /// Internal: run as the bare libtorrent downloader (a).
    #[arg(long, hide = true)]
    bare_download: bool,
    #[arg(long, hide = true)]
    torrent: Option<PathBuf>,
    #[arg(long, hide = true)]
    save: Option<PathBuf>,
    #[arg(long, hide = true)]
    peer: Option<SocketAddr>,
}

fn main() -> ExitCode {
    let mut args = Args::parse();
    if args.smoke && !args.bare_download {
        args.runs = 1;
        args.size_mib = 16;
        if args.only.is_empty() {
            args.only = ["bare", "revaer", "qbittorrent", "aria2"]
                .map(str::to_owned)
                .to_vec();
        }
    }
    let result = if args.bare_download {
        bare_child(&args)
    } else {
        bench(&args)
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if args.bare_download {
                println!("error {e}");
            }
            eprintln!("bench-transfer: {e}");
            ExitCode::FAILURE
        }
    }
}

fn bare_child(args: &Args) -> Result<(), BoxError> {
    clients::bare_child(
        args.torrent.as_deref().ok_or("--torrent is required")?,
        args.save.as_deref().ok_or("--save is required")?,
        args.peer.ok_or("--peer is required")?,
        Duration::from_millis(args.poll_ms),
    )
}

fn selected(args: &Args) -> Result<Vec<Downloader>, BoxError> {
    if args.only.is_empty() {
        return Ok(Downloader::ALL.to_vec());
    }
    for name in &args.only {
        if !Downloader::ALL.iter().any(|d| d.key() == name) {
            return Err(format!("unknown downloader `{name}`").into());
        }
    }
    Ok(Downloader::ALL
        .into_iter()
        .filter(|d| args.only.iter().any(|n| n == d.key()))
        .collect())
}

fn workspace_root() -> Result<PathBuf, BoxError> {
    support::workspace_root().map_err(|e| e.to_string().into())
}

/// `just bench-transfer` with the options that differ from the defaults.
fn command_line(args: &Args) -> String {
    let mut line = "just bench-transfer".to_owned();
    if args.smoke {
        line.push_str(" --smoke");
    }
    if args.runs != 3 {
        let _ = write!(line, " --runs {}", args.runs);
    }
    if args.size_mib != 512 {
        let _ = write!(line, " --size-mib {}", args.size_mib);
    }
    if !args.only.is_empty() {
        let _ = write!(line, " --only {}", args.only.join(","));
    }
    if args.poll_ms != 50 {
        let _ = write!(line, " --poll-ms {}", args.poll_ms);
    }
    line
}

#[allow(
    clippy::too_many_lines,
    reason = "one straight sequence: prepare, run the rounds, report, clean up"
)]
fn bench(args: &Args) -> Result<(), BoxError> {
    let started = Instant::now();
    util::install_stop_handler()?;
    util::become_subreaper()?;
    // Dropped last: collects any orphan left behind, on every way out.
    let _reaper = util::ReapOnDrop;
    let chosen = selected(args)?;
    let runs = usize::from(args.runs);
    let size = args.size_mib << 20;
    let poll = Duration::from_millis(args.poll_ms);
    let self_exe = std::env::current_exe()?;
    // target/release/examples/bench_transfer → target/release
    let bin_dir = self_exe
        .parent()
        .and_then(Path::parent)
        .ok_or("cannot locate target/<profile>")?
        .to_path_buf();
    let out_path = match &args.out {
        Some(p) => p.clone(),
        None if args.smoke => support::smoke_report("transfer.md").map_err(|e| e.to_string())?,
        None => workspace_root()?.join("bench/results/transfer.md"),
    };
    let meta_base = machine_facts();
    let load_before = load_average();
    let started_utc = command_output("date", &["-u", "+%Y-%m-%d %H:%M"])
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();

    let work = TempDir::new(
        std::env::temp_dir().join(format!("revaer-bench-transfer-{}", std::process::id())),
    )?;
    eprintln!("bench-transfer: working in {}", work.path().display());

    // Transmission needs a namespace; made before the seed, which must listen
    // on its veth address too.
    let wants_transmission = chosen.contains(&Downloader::Transmission);
    let netns: Result<Netns, String> = if !wants_transmission {
        Err("not selected".to_owned())
    } else if on_path("transmission-daemon").is_none() {
        Err("transmission-daemon is not installed (apt package transmission-daemon)".to_owned())
    } else {
        Netns::create().map_err(|e| format!("cannot create the network namespace: {e}"))
    };

    // Content, tracker, .torrent(s), seed.
    let seed_dir = work.path().join("seed");
    std::fs::create_dir_all(&seed_dir)?;
    let file_name = format!("revaer-bench-{}MiB.bin", args.size_mib);
    let content = seed_dir.join(&file_name);
    eprintln!("bench-transfer: writing {size} bytes of content");
    seed::write_content(&content, size)?;
    let localhost = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let seed_port = util::free_port(localhost)?;
    let mut listen = format!("127.0.0.1:{seed_port}");
    let mut tracker_listeners = vec![(localhost, SocketAddr::new(localhost, seed_port))];
    if netns.is_ok() {
        let host = Netns::host_ip();
        write!(listen, ",{host}:{seed_port}")?;
        tracker_listeners.push((host, SocketAddr::new(host, seed_port)));
    }
    let tracker = seed::Tracker::start(&tracker_listeners)?;
    eprintln!("bench-transfer: hashing the content into a .torrent");
    let torrent = seed::make_torrent(&content, &tracker.urls[0])?;
    let info = libtorrent_sys::parse_torrent(&torrent)?;
    let torrent_netns = match (&netns, tracker.urls.get(1)) {
        (Ok(_), Some(url)) => {
            let t = seed::make_torrent(&content, url)?;
            if libtorrent_sys::parse_torrent(&t)?.id != info.id {
                return Err("the namespace-side .torrent has another info-hash".into());
            }
            Some(t)
        }
        _ => None,
    };
    let torrent_path = work.path().join("bench.torrent");
    std::fs::write(&torrent_path, &torrent)?;
    eprintln!("bench-transfer: starting the seed on {listen}");
    let seed = seed::Seed::start(&seed_dir, &torrent, &listen)?;
    if seed.port != seed_port {
        return Err(format!("the seed listens on {}, not {seed_port}", seed.port).into());
    }
    let prepare_secs = started.elapsed().as_secs_f64();

    // Who takes part.
    let entries: Vec<Entry> = chosen
        .iter()
        .map(|&which| Entry {
            which,
            available: availability(which, &bin_dir, netns.as_ref().err()),
        })
        .collect();
    for e in &entries {
        match &e.available {
            Ok(v) => eprintln!("bench-transfer: {} — {v}", e.which.label()),
            Err(why) => eprintln!("bench-transfer: {} — n/a: {why}", e.which.label()),
        }
    }
    let ctx = Ctx {
        torrent,
        torrent_path,
        torrent_netns,
        info_hash: info.id.to_string(),
        file_name,
        size,
        seed: SocketAddr::new(localhost, seed.port),
        netns: netns.as_ref().ok().map(|ns| ns.name.clone()),
        bin_dir,
        self_exe,
        http: util::http_client()?,
        poll,
    };

    let mut records = Vec::new();
    for round in 1..=runs {
        for entry in entries.iter().filter(|e| e.available.is_ok()) {
            if stop_requested() {
                return Err("interrupted".into());
            }
            seed.check()?;
            let dir = TempDir::new(
                work.path()
                    .join(format!("run-{round}-{}", entry.which.key())),
            )?;
            eprintln!(
                "bench-transfer: round {round}/{runs}: {}",
                entry.which.label()
            );
            let load = load_average()
                .split(' ')
                .next()
                .unwrap_or_default()
                .to_owned();
            let result = clients::run(entry.which, &ctx, dir.path()).map(|mut s| {
                s.note = format!("{}; load before {load}", s.note);
                s
            });
            match &result {
                Ok(s) => eprintln!(
                    "bench-transfer:   {:.3} s, {:.1} MB/s, {:.2} CPU s, peak RSS {:.0} MB",
                    s.wall.as_secs_f64(),
                    report::mbps(size, s),
                    s.cpu,
                    f64_from(s.rss) / 1e6
                ),
                Err(e) => eprintln!("bench-transfer:   failed: {e}"),
            }
            // Every process of this run has been stopped and reaped by now.
            drop(dir);
            reap_orphans(Duration::from_secs(10));
            nix::unistd::sync();
            if stop_requested() {
                return Err("interrupted".into());
            }
            std::thread::sleep(Duration::from_secs(1));
            records.push(RunRecord {
                round,
                which: entry.which,
                result: result.map_err(|e| e.to_string()),
            });
        }
    }
    seed.check()?;

    let meta = Meta {
        command: command_line(args),
        revision: revision(),
        build: if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        smoke: args.smoke,
        machine: meta_base,
        load_before,
        load_after: load_average(),
        started_utc,
        total_secs: started.elapsed().as_secs_f64(),
        prepare_secs,
        size,
        pieces: size.div_ceil(u64::try_from(seed::PIECE_SIZE)?),
        piece_size: u64::try_from(seed::PIECE_SIZE)?,
        poll_ms: poll.as_millis(),
        runs,
        libtorrent: command_output("pkg-config", &["--modversion", "libtorrent-rasterbar"])
            .map_or_else(|_| "2.0".to_owned(), |s| s.trim().to_owned()),
        tracker_announces: tracker
            .urls
            .iter()
            .zip(&tracker.announces)
            .map(|(url, n)| format!("{} on {url}", n.load(std::sync::atomic::Ordering::Relaxed)))
            .collect::<Vec<_>>()
            .join(", "),
    };
    let text = report::render(&meta, &entries, &records);
    if let Some(dir) = out_path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&out_path, &text)?;
    println!("{text}");
    eprintln!("bench-transfer: wrote {}", out_path.display());

    drop(seed);
    drop(tracker);
    drop(ctx);
    let failed: Vec<&str> = entries
        .iter()
        .filter(|e| e.available.is_ok())
        .filter(|e| {
            !records
                .iter()
                .any(|r| r.which == e.which && r.result.is_ok())
        })
        .map(|e| e.which.key())
        .collect();
    if !failed.is_empty() {
        return Err(format!("no successful run of: {}", failed.join(", ")).into());
    }
    Ok(())
}

#[allow(clippy::cast_precision_loss)]
fn f64_from(v: u64) -> f64 {
    v as f64
}

/// The version of a downloader, or why it cannot run here.
fn availability(
    which: Downloader,
    bin_dir: &Path,
    netns_error: Option<&String>,
) -> Result<String, String> {
    let first_line = |s: String| s.lines().next().unwrap_or_default().trim().to_owned();
    match which {
        Downloader::Bare => command_output("pkg-config", &["--modversion", "libtorrent-rasterbar"])
            .map(|v| format!("libtorrent {} (our bridge)", v.trim())),
        Downloader::Revaer => {
            let revaerd = bin_dir.join("revaerd");
            for worker in ["revaerd", "revaer-api", "revaer-engine", "revaer-fsops"] {
                if !bin_dir.join(worker).is_file() {
                    return Err(format!(
                        "{} is missing: build with `cargo build --release --bins --features revaer-api/test-probes,revaer-engine/test-probes,revaer-fsops/test-probes`",
                        bin_dir.join(worker).display()
                    ));
                }
            }
            command_output(&revaerd.to_string_lossy(), &["--version"]).map(first_line)
        }
        Downloader::Qbittorrent => {
            if on_path("qbittorrent-nox").is_none() {
                return Err(
                    "qbittorrent-nox is not installed (apt package qbittorrent-nox)".to_owned(),
                );
            }
            command_output("qbittorrent-nox", &["--version"]).map(first_line)
        }
        Downloader::Transmission => {
            if let Some(e) = netns_error {
                return Err(e.clone());
            }
            command_output("transmission-daemon", &["-V"]).map(first_line)
        }
        Downloader::Aria2 => {
            if on_path("aria2c").is_none() {
                return Err("aria2c is not installed (apt package aria2)".to_owned());
            }
            command_output("aria2c", &["--version"]).map(first_line)
        }
    }
}

/// CPUs, memory, kernel, distribution.
fn machine_facts() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_default();
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kib| kib.parse::<u64>().ok())
        })
        .map_or(0, |kib| kib.div_ceil(1 << 20));
    let kernel = command_output("uname", &["-r"]).unwrap_or_default();
    let distro = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                .map(|v| v.trim_matches('"').to_owned())
        })
        .unwrap_or_default();
    format!(
        "{cpus} vCPU ({model}), {mem_gib} GiB RAM, {distro}, Linux {}",
        kernel.trim()
    )
}

/// The commit measured (`+dirty` and the changed paths when the working
/// tree differs from it).
fn revision() -> String {
    match support::workspace_root() {
        Ok(root) => format!("commit {}", support::revision(&root)),
        Err(_) => "(unknown revision)".to_owned(),
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" / "))
        .unwrap_or_default()
}
