//! `just bench-interop`: the interoperability matrix of Revaer against
//! three third-party BitTorrent clients from Debian, timed. Not part of CI.
//!
//! Cells: client × direction × discovery × shape. Clients: `aria2c` and
//! `qbittorrent-nox` on 127.0.0.1, `transmission-daemon` inside a network
//! namespace the bench makes (it refuses peers on 127.0.0.0/8; Revaer's
//! BitTorrent socket and the tracker are then on the host side of the veth
//! pair). Directions: Revaer downloads from the client, or the client
//! downloads from Revaer; the other side seeds alone. Discovery: Debian's
//! `opentracker` over HTTP, over UDP (BEP 15), or a magnet whose `tr=`
//! names the HTTP tracker (metadata from the peer, BEP 9). Shapes: a single
//! file and a multi-file torrent with nested folders, both v1, and for
//! qBittorrent (the one client here with BEP 52) the multi-file layout as a
//! hybrid v1+v2 torrent over HTTP. aria2c speaks UDP trackers only with its
//! DHT on: as the seeder it announces over HTTP while Revaer's `.torrent`
//! names only the `udp://` URL of the same tracker; as the downloader that
//! cell is not run. Peers are learned only from the tracker (or the
//! magnet): no `peers` at add time, no `ConnectPeer`.
//!
//! Each cell starts everything fresh: a tracker whitelisting the payload's
//! info-hashes, the seeder (which checks the payload and announces; the
//! bench waits until the tracker's scrape lists it), the downloader (up and
//! answering). Time zero is the downloader's add request (Revaer:
//! `POST /v1/torrents`; aria2c: `aria2.addTorrent`/`addUri` over its
//! JSON-RPC; qBittorrent: `/api/v2/torrents/add`; Transmission:
//! `torrent-add`). Time to first byte: to the first poll (every 50 ms) that
//! shows a nonzero downloaded count; completion: to the first poll that
//! shows every byte. MB/s = payload / (completion − first byte), MB = 10^6
//! bytes. A cell passes when the download completes within its deadline
//! and the SHA-256 of every downloaded file matches the payload's.
//!
//! Revaer is a release `revaerd` on a fresh data dir per cell, driven only
//! through its public `/v1` API with the bootstrap admin key
//! (`<data>/bootstrap-admin.key`). The test suite's harness
//! (`supervisor/tests/common/`) provides the tracker, aria2c as a seeder,
//! qBittorrent, Transmission, the namespace and the payloads.
//!
//! Writes `bench/results/interop.md`, whose last line is
//! `interop cells=N passed=P`.
//!
//! `--smoke`: 4 MiB, three cells (aria2c → Revaer over UDP, single file;
//! Revaer → aria2c over HTTP, multi-file; a magnet from qBittorrent, or
//! from aria2c when qBittorrent is not installed), the report in a temp
//! file (or `--out`): proves the bench still runs (`just bench-smoke`).

#[path = "bench_interop/common.rs"]
mod common;
#[path = "bench_interop/peers.rs"]
mod peers;
#[path = "support/mod.rs"]
mod support;

use std::fmt::Write as _;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::{Value, json};
use sha2::Digest as _;

use common::clients::{Netns, Qbittorrent, Transmission};
use common::swarm::{Aria2, LOCALHOST, Opentracker, Payload, free_port_on};
use peers::{Aria2Leech, Revaer, poll_until, sha256_file, stop_requested, wait_seeder_known};
use support::BoxError;

#[derive(Debug, Parser)]
#[command(
    about = "Interoperability matrix: Revaer against aria2c, qBittorrent and Transmission, timed"
)]
struct Args {
    /// Payload size of every cell in MiB.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=8192))]
    size_mib: u64,
    /// Only these clients (comma-separated: aria2,qbittorrent,transmission).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Progress poll interval in milliseconds.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(5..=1000))]
    poll_ms: u64,
    /// Where to write the report (default: bench/results/interop.md in the workspace).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Smoke run: 4 MiB, three cells, report in a temp file unless `--out`.
    #[arg(long)]
    smoke: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Client {
    Aria2,
    Qbittorrent,
    Transmission,
}

impl Client {
    const ALL: [Self; 3] = [Self::Aria2, Self::Qbittorrent, Self::Transmission];

    /// Name on the command line (`--only`).
    fn key(self) -> &'static str {
        match self {
            Self::Aria2 => "aria2",
            Self::Qbittorrent => "qbittorrent",
            Self::Transmission => "transmission",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::Aria2 => "aria2c",
            Self::Qbittorrent => "qbittorrent-nox",
            Self::Transmission => "transmission-daemon",
        }
    }

    /// Its version, or why it cannot run here.
    fn version(self) -> Result<String, String> {
        let flag = if self == Self::Transmission {
            "-V"
        } else {
            "--version"
        };
        let out = Command::new(self.label())
            .arg(flag)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("{} is not installed: {e}", self.label()))?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(text.lines().next().unwrap_or_default().trim().to_owned())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// Revaer downloads from the client.
    ToRevaer,
    /// The client downloads from Revaer.
    FromRevaer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Discovery {
    Http,
    Udp,
    Magnet,
}

impl Discovery {
    fn label(self) -> &'static str {
        match self {
            Self::Http => "HTTP tracker",
            Self::Udp => "UDP tracker",
            Self::Magnet => "magnet (BEP 9)",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Shape {
    Single,
    Multi,
    Hybrid,
}

impl Shape {
    fn label(self) -> &'static str {
        match self {
            Self::Single => "single file, v1",
            Self::Multi => "multi-file, v1",
            Self::Hybrid => "multi-file, hybrid v1+v2",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cell {
    client: Client,
    direction: Direction,
    discovery: Discovery,
    shape: Shape,
}

impl Cell {
    fn direction_label(self) -> String {
        match self.direction {
            Direction::ToRevaer => format!("{} → Revaer", self.client.label()),
            Direction::FromRevaer => format!("Revaer → {}", self.client.label()),
        }
    }

    fn describe(self) -> String {
        format!(
            "{}, {}, {}",
            self.direction_label(),
            self.discovery.label(),
            self.shape.label()
        )
    }
}

/// The full matrix for `clients`, and the cells left out with why.
fn full_matrix(clients: &[Client]) -> (Vec<Cell>, Vec<(Cell, &'static str)>) {
    let mut cells = Vec::new();
    let mut skipped = Vec::new();
    for &client in clients {
        let mut shapes = vec![Shape::Single, Shape::Multi];
        if client == Client::Qbittorrent {
            shapes.push(Shape::Hybrid);
        }
        for shape in shapes {
            for direction in [Direction::ToRevaer, Direction::FromRevaer] {
                let discoveries: &[Discovery] = if shape == Shape::Hybrid {
                    &[Discovery::Http]
                } else {
                    &[Discovery::Http, Discovery::Udp, Discovery::Magnet]
                };
                for &discovery in discoveries {
                    let cell = Cell {
                        client,
                        direction,
                        discovery,
                        shape,
                    };
                    if client == Client::Aria2
                        && direction == Direction::FromRevaer
                        && discovery == Discovery::Udp
                    {
                        skipped.push((
                            cell,
                            "aria2c speaks UDP trackers only with its DHT on, and the bench keeps DHT off",
                        ));
                    } else {
                        cells.push(cell);
                    }
                }
            }
        }
    }
    (cells, skipped)
}

/// The three smoke cells, over the first and last of `clients`.
fn smoke_matrix(clients: &[Client]) -> Vec<Cell> {
    let first = clients.first().copied().unwrap_or(Client::Aria2);
    let last = clients.last().copied().unwrap_or(Client::Aria2);
    vec![
        Cell {
            client: first,
            direction: Direction::ToRevaer,
            discovery: Discovery::Udp,
            shape: Shape::Single,
        },
        Cell {
            client: first,
            direction: Direction::FromRevaer,
            discovery: if first == Client::Aria2 {
                Discovery::Http
            } else {
                Discovery::Udp
            },
            shape: Shape::Multi,
        },
        Cell {
            client: last,
            direction: Direction::ToRevaer,
            discovery: Discovery::Magnet,
            shape: Shape::Multi,
        },
    ]
}

/// A payload on disk, its `.torrent` without trackers (each cell adds its
/// own) and the SHA-256 of every file (its bytes are not kept in memory).
struct Prepared {
    shape: Shape,
    payload: Payload,
    base: Vec<u8>,
    /// v1 info-hash (hex): the id Revaer gives it, what the magnet names.
    v1: String,
    /// (path relative to the save dir, SHA-256).
    digests: Vec<(PathBuf, [u8; 32])>,
}

fn prepare(shape: Shape, size: u64) -> Result<Prepared, BoxError> {
    let size = usize::try_from(size)?;
    // Sizes off piece boundaries, adding up to `size`.
    let big = size / 2 + size.min(12_345) / 2;
    let mid = size / 4;
    let note = size.min(999) / 2;
    let multi = [
        ("a/b/one.bin", big),
        ("a/two.bin", mid),
        ("three.bin", size - big - mid - note),
        ("notes.txt", note),
    ];
    let (name, files, format) = match shape {
        Shape::Single => (
            "interop-single.bin",
            vec![("", size)],
            libtorrent_sys::TorrentFormat::V1Only,
        ),
        Shape::Multi => (
            "interop-multi",
            multi.to_vec(),
            libtorrent_sys::TorrentFormat::V1Only,
        ),
        Shape::Hybrid => (
            "interop-hybrid",
            multi.to_vec(),
            libtorrent_sys::TorrentFormat::Hybrid,
        ),
    };
    let files: Vec<(&str, usize)> = files.into_iter().filter(|(_, n)| *n > 0).collect();
    let mut payload = catch(|| Payload::build(name, &files, Vec::new(), format, |t| t))?;
    let mut digests = Vec::new();
    for (path, bytes) in &mut payload.files {
        let rel = if path.is_empty() {
            PathBuf::from(name)
        } else {
            Path::new(name).join(&*path)
        };
        digests.push((rel, sha2::Sha256::digest(&bytes[..]).into()));
        *bytes = Vec::new();
    }
    let info = libtorrent_sys::parse_torrent(&payload.torrent)?;
    let v1 = info
        .info_hash_v1
        .clone()
        .ok_or("the payload's torrent has no v1 info-hash")?;
    Ok(Prepared {
        shape,
        base: payload.torrent.clone(),
        payload,
        v1,
        digests,
    })
}

/// Runs `f`, turning a panic of the harness into an error with its message.
fn catch<T>(f: impl FnOnce() -> T) -> Result<T, BoxError> {
    std::panic::catch_unwind(AssertUnwindSafe(f)).map_err(|panic| {
        let text = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_else(|| "panic".to_owned());
        text.into()
    })
}

/// What every cell needs.
struct Env {
    bin_dir: PathBuf,
    http: reqwest::blocking::Client,
    netns: Option<Netns>,
    size: u64,
    poll: Duration,
    /// Deadline of a seeder checking the payload and announcing.
    check_timeout: Duration,
    /// Deadline of one transfer, add to completion.
    transfer_timeout: Duration,
}

/// One measured transfer.
#[derive(Debug, Clone)]
struct Measured {
    first_byte: Duration,
    done: Duration,
}

impl Measured {
    /// `None` when the first byte and the last showed up in the same poll.
    fn mbps(&self, size: u64) -> Option<f64> {
        let secs = self.done.saturating_sub(self.first_byte).as_secs_f64();
        (secs > 0.0).then(|| f64_from(size) / 1e6 / secs)
    }
}

/// MB/s for the report and the log.
fn show_mbps(mbps: Option<f64>) -> String {
    mbps.map_or_else(|| "– (one poll)".to_owned(), |v| format!("{v:.1}"))
}

#[allow(clippy::cast_precision_loss, reason = "byte counts far below 2^52")]
fn f64_from(v: u64) -> f64 {
    v as f64
}

/// What the downloader is given.
enum Source {
    Torrent(Vec<u8>),
    Magnet(String),
}

/// The third-party seeder of a cell, kept alive (and stopped on drop).
#[allow(dead_code, reason = "held for its drop, which stops the seeder")]
enum Seeder {
    Aria2(Aria2),
    Qbittorrent(Qbittorrent),
    Transmission(Transmission),
}

/// From time zero: the first poll with a nonzero downloaded count and the
/// first with every byte. `progress` answers (downloaded bytes, complete).
fn watch(
    t0: Instant,
    env: &Env,
    what: &str,
    mut progress: impl FnMut() -> Result<(u64, bool), BoxError>,
) -> Result<Measured, BoxError> {
    let mut first = None;
    let done = poll_until(what, env.transfer_timeout, env.poll, || {
        let (bytes, complete) = progress()?;
        let now = t0.elapsed();
        if first.is_none() && bytes > 0 {
            first = Some(now);
        }
        Ok(complete.then_some(now))
    })?;
    Ok(Measured {
        first_byte: first.unwrap_or(done),
        done,
    })
}

/// Every file of the payload under `root`, compared by SHA-256.
fn verify(prepared: &Prepared, root: &Path, who: &str) -> Result<(), BoxError> {
    for (rel, digest) in &prepared.digests {
        if sha256_file(&root.join(rel))? != *digest {
            return Err(format!(
                "{who}: {} differs from the payload (SHA-256)",
                rel.display()
            )
            .into());
        }
    }
    Ok(())
}

fn run_cell(
    env: &Env,
    prepared: &mut Prepared,
    cell: Cell,
    dir: &Path,
) -> Result<Measured, BoxError> {
    let host = match (cell.client, &env.netns) {
        (Client::Transmission, Some(ns)) => ns.host,
        (Client::Transmission, None) => return Err("no network namespace".into()),
        _ => LOCALHOST,
    };
    let port = free_port_on(host);
    let hashes = prepared.payload.hash_refs();
    let tracker = catch(|| Opentracker::start_at(host, port, &hashes))?;
    let http_torrent = peers::with_tracker(&prepared.base, &tracker.http_url())?;
    let udp_torrent = peers::with_tracker(&prepared.base, &tracker.udp_url())?;
    // The seeder announces over UDP when the cell is about UDP, except
    // aria2c (UDP trackers only with its DHT on).
    let seeder_torrent = if cell.discovery == Discovery::Udp && cell.client != Client::Aria2 {
        udp_torrent.clone()
    } else {
        http_torrent.clone()
    };
    let source = match cell.discovery {
        Discovery::Http => Source::Torrent(http_torrent),
        Discovery::Udp => Source::Torrent(udp_torrent),
        Discovery::Magnet => Source::Magnet(peers::magnet(
            &prepared.v1,
            &prepared.payload.name,
            &tracker.http_url(),
        )),
    };
    let announce = tracker.http_url();
    match cell.direction {
        Direction::ToRevaer => {
            let _seeder = start_seeder(env, prepared, cell.client, &seeder_torrent, dir)?;
            wait_seeder_known(&env.http, &announce, &prepared.v1, env.check_timeout)?;
            let revaer = Revaer::start(&env.bin_dir, dir, host)?;
            let t0 = Instant::now();
            let id = match &source {
                Source::Torrent(t) => revaer.add_torrent(t)?,
                Source::Magnet(m) => revaer.add_magnet(m)?,
            };
            let measured = watch(t0, env, "Revaer's download", || {
                let Some(d) = revaer.detail(&id)? else {
                    return Ok((0, false));
                };
                if let Some(error) = d["error"].as_str() {
                    return Err(format!("Revaer: torrent error: {error}").into());
                }
                let wanted = d["size_wanted"].as_u64().unwrap_or(0);
                let complete = d["has_metadata"] == json!(true)
                    && wanted > 0
                    && d["size_done"].as_u64() == Some(wanted);
                // `downloaded` (libtorrent's all-time counter) lags by up
                // to its one-second tick; `size_done` counts verified
                // bytes as they come.
                let bytes = d["downloaded"]
                    .as_u64()
                    .unwrap_or(0)
                    .max(d["size_done"].as_u64().unwrap_or(0));
                Ok((bytes, complete))
            })
            .map_err(|e| format!("{e}\nrevaerd log tail:\n{}", peers::tail(&revaer.log, 8)))?;
            verify(prepared, &revaer.downloads(), "Revaer")?;
            Ok(measured)
        }
        Direction::FromRevaer => {
            let revaer = Revaer::start(&env.bin_dir, dir, host)?;
            revaer.seed(
                &prepared.payload.dir.0,
                &prepared.payload.name,
                &seeder_torrent,
                env.check_timeout,
            )?;
            wait_seeder_known(&env.http, &announce, &prepared.v1, env.check_timeout)?;
            client_downloads(env, prepared, cell.client, &source, dir)
        }
    }
}

/// Starts `client` seeding the payload from where it lies, with `torrent`;
/// returns once it says it seeds.
fn start_seeder(
    env: &Env,
    prepared: &mut Prepared,
    client: Client,
    torrent: &[u8],
    dir: &Path,
) -> Result<Seeder, BoxError> {
    match client {
        Client::Aria2 => {
            // The harness seeds `payload.torrent` from `<dir>/<name>.torrent`.
            let payload = &mut prepared.payload;
            payload.torrent = torrent.to_vec();
            let _ = std::fs::remove_file(payload.dir.0.join(format!("{}.torrent", payload.name)));
            Ok(Seeder::Aria2(catch(|| Aria2::seed(payload))?))
        }
        Client::Qbittorrent => {
            let save = prepared.payload.dir.0.clone();
            let limit = env.check_timeout;
            let qbt = catch(move || {
                let mut qbt = Qbittorrent::start();
                qbt.add(torrent, &save);
                qbt.wait_seeding("qBittorrent checking the payload", limit);
                qbt
            })?;
            Ok(Seeder::Qbittorrent(qbt))
        }
        Client::Transmission => {
            let netns = env.netns.as_ref().ok_or("no network namespace")?;
            let path = dir.join("seed.torrent");
            std::fs::write(&path, torrent)?;
            let save = prepared.payload.dir.0.clone();
            let limit = env.check_timeout;
            let transmission = catch(move || {
                let mut transmission = Transmission::start(netns);
                let id = transmission.add(&path, &save);
                transmission.wait_seeding(id, "Transmission checking the payload", limit);
                transmission
            })?;
            Ok(Seeder::Transmission(transmission))
        }
    }
}

/// `client` downloads from Revaer (already seeding and announced): started
/// and answering first, then timed from its add.
fn client_downloads(
    env: &Env,
    prepared: &Prepared,
    client: Client,
    source: &Source,
    dir: &Path,
) -> Result<Measured, BoxError> {
    let size = env.size;
    match client {
        Client::Aria2 => {
            let mut leech = Aria2Leech::start(&dir.join("aria2"))?;
            let t0 = Instant::now();
            match source {
                Source::Torrent(t) => leech.add_torrent(t)?,
                Source::Magnet(m) => leech.add_magnet(m)?,
            }
            let measured = watch(t0, env, "aria2c's download", || leech.progress(size))?;
            verify(prepared, &leech.dir, "aria2c")?;
            Ok(measured)
        }
        Client::Qbittorrent => {
            let qbt = catch(Qbittorrent::start)?;
            let save = qbt.save.0.clone();
            let t0 = Instant::now();
            match source {
                Source::Torrent(t) => catch(|| qbt.add(t, &save))?,
                Source::Magnet(m) => peers::qbittorrent_add_magnet(&env.http, &qbt.api, m, &save)?,
            }
            let measured = watch(t0, env, "qBittorrent's download", || {
                let list = qbt.torrents();
                let t = &list[0];
                if matches!(t["state"].as_str(), Some("error" | "missingFiles")) {
                    return Err(format!("qBittorrent: {t}").into());
                }
                let complete = t["amount_left"] == json!(0)
                    && t["progress"].as_f64() == Some(1.0)
                    && matches!(
                        t["state"].as_str(),
                        Some("uploading" | "stalledUP" | "forcedUP" | "queuedUP")
                    );
                // `downloaded` lags like Revaer's; `completed` counts
                // verified bytes.
                let bytes = t["downloaded"]
                    .as_u64()
                    .unwrap_or(0)
                    .max(t["completed"].as_u64().unwrap_or(0));
                Ok((bytes, complete))
            })?;
            verify(prepared, &save, "qBittorrent")?;
            Ok(measured)
        }
        Client::Transmission => {
            let netns = env.netns.as_ref().ok_or("no network namespace")?;
            let transmission = catch(|| Transmission::start(netns))?;
            let save = transmission.save.0.clone();
            let path = dir.join("leech.torrent");
            if let Source::Torrent(t) = source {
                std::fs::write(&path, t)?;
            }
            let t0 = Instant::now();
            let id = match source {
                Source::Torrent(_) => catch(|| transmission.add(&path, &save))?,
                Source::Magnet(m) => {
                    let added = catch(|| {
                        transmission.call(
                            "torrent-add",
                            &json!({ "filename": m, "download-dir": save, "paused": false }),
                        )
                    })?;
                    added["torrent-added"]["id"]
                        .as_u64()
                        .ok_or_else(|| format!("Transmission refused the magnet: {added}"))?
                }
            };
            let measured = watch(t0, env, "Transmission's download", || {
                let t: Value = catch(|| transmission.torrent(id))?;
                if t["error"] == json!(3) {
                    return Err(format!("Transmission: {}", t["errorString"]).into());
                }
                let complete = t["status"] == json!(6)
                    && t["leftUntilDone"] == json!(0)
                    && t["percentDone"].as_f64() == Some(1.0)
                    && t["sizeWhenDone"].as_u64().unwrap_or(0) > 0;
                Ok((t["downloadedEver"].as_u64().unwrap_or(0), complete))
            })?;
            verify(prepared, &save, "Transmission")?;
            Ok(measured)
        }
    }
}

fn main() -> ExitCode {
    let mut args = Args::parse();
    if args.smoke {
        args.size_mib = 4;
    }
    match bench(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench-interop: {e}");
            ExitCode::FAILURE
        }
    }
}

fn selected(args: &Args) -> Result<Vec<Client>, BoxError> {
    for name in &args.only {
        if !Client::ALL.iter().any(|c| c.key() == name) {
            return Err(
                format!("unknown client `{name}` (aria2, qbittorrent, transmission)").into(),
            );
        }
    }
    Ok(Client::ALL
        .into_iter()
        .filter(|c| args.only.is_empty() || args.only.iter().any(|n| n == c.key()))
        .collect())
}

/// `just bench-interop` with the options that differ from the defaults.
fn command_line(args: &Args) -> String {
    let mut line = "just bench-interop".to_owned();
    if args.smoke {
        line.push_str(" --smoke");
    } else if args.size_mib != 256 {
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

struct Record {
    cell: Cell,
    result: Result<Measured, String>,
    /// The whole cell: start-up, checks, transfer, SHA-256, teardown.
    wall: Duration,
}

#[allow(
    clippy::too_many_lines,
    reason = "one straight sequence: prepare, run the cells, report, clean up"
)]
fn bench(args: &Args) -> Result<(), BoxError> {
    let started = Instant::now();
    peers::install_stop_handler()?;
    let chosen = selected(args)?;
    let size = args.size_mib << 20;
    let bin_dir = support::release_dir()?;
    for bin in ["revaerd", "revaer-api", "revaer-engine", "revaer-fsops"] {
        if !bin_dir.join(bin).is_file() {
            return Err(format!(
                "{} is missing: build with `cargo build --release --bins --features revaer-api/test-probes,revaer-engine/test-probes,revaer-fsops/test-probes`",
                bin_dir.join(bin).display()
            )
            .into());
        }
    }
    let root = support::workspace_root()?;
    let out_path = match &args.out {
        Some(p) => p.clone(),
        None if args.smoke => support::smoke_report("interop.md")?,
        None => root.join("bench/results/interop.md"),
    };
    let started_utc = output("date", &["-u", "+%Y-%m-%d %H:%M"]);

    // Dropped last: everything the harness makes lives under it.
    let work = common::TempDir(
        std::env::temp_dir().join(format!("revaer-bench-interop-{}", std::process::id())),
    );
    std::fs::create_dir_all(&work.0)?;
    common::set_root(work.0.clone());
    eprintln!("bench-interop: working in {}", work.0.display());

    // Who can take part.
    let mut versions = Vec::new();
    let mut unavailable = Vec::new();
    for &client in &chosen {
        match client.version() {
            Ok(v) => versions.push((client, v)),
            Err(why) => unavailable.push((client, why)),
        }
    }
    let mut netns = None;
    if versions.iter().any(|(c, _)| *c == Client::Transmission) {
        match catch(Netns::create) {
            Ok(ns) => netns = Some(ns),
            Err(e) => {
                versions.retain(|(c, _)| *c != Client::Transmission);
                unavailable.push((
                    Client::Transmission,
                    format!("cannot make a network namespace (needs root): {e}"),
                ));
            }
        }
    }
    let available: Vec<Client> = versions.iter().map(|(c, _)| *c).collect();
    let (cells, mut skipped) = if args.smoke {
        let mut smoke_clients = available.clone();
        if args.only.is_empty() {
            // aria2c first; qBittorrent (if installed) for the magnet.
            smoke_clients.retain(|c| *c != Client::Transmission);
        }
        (smoke_matrix(&smoke_clients), Vec::new())
    } else {
        full_matrix(&available)
    };
    let mut unavailable_cells = Vec::new();
    if !args.smoke {
        for (client, why) in &unavailable {
            let (missing, _) = full_matrix(&[*client]);
            unavailable_cells.extend(missing.into_iter().map(|c| (c, why.clone())));
        }
    }
    if cells.is_empty() {
        return Err("no client available to run any cell".into());
    }

    let mut shapes: Vec<Shape> = cells.iter().map(|c| c.shape).collect();
    shapes.sort_unstable();
    shapes.dedup();
    let mut prepared = Vec::new();
    for shape in shapes {
        eprintln!(
            "bench-interop: writing and hashing the {} payload",
            shape.label()
        );
        prepared.push(prepare(shape, size)?);
    }
    let prepare_secs = started.elapsed().as_secs_f64();
    let env = Env {
        bin_dir,
        http: peers::http_client()?,
        netns,
        size,
        poll: Duration::from_millis(args.poll_ms),
        check_timeout: Duration::from_secs(60 + args.size_mib / 2),
        transfer_timeout: Duration::from_secs(60 + args.size_mib),
    };

    let mut records = Vec::new();
    for (i, &cell) in cells.iter().enumerate() {
        if stop_requested() {
            return Err("interrupted".into());
        }
        eprintln!(
            "bench-interop: cell {}/{}: {}",
            i + 1,
            cells.len(),
            cell.describe()
        );
        let prepared = prepared
            .iter_mut()
            .find(|p| p.shape == cell.shape)
            .ok_or("payload not prepared")?;
        let dir = common::TempDir(work.0.join(format!("cell-{}", i + 1)));
        std::fs::create_dir_all(&dir.0)?;
        let t = Instant::now();
        let result = catch(|| run_cell(&env, prepared, cell, &dir.0))
            .and_then(|r| r)
            .map_err(|e| e.to_string());
        // Every process of the cell has been stopped and reaped by now.
        drop(dir);
        nix::unistd::sync();
        let wall = t.elapsed();
        match &result {
            Ok(m) => eprintln!(
                "bench-interop:   pass: first byte {:.3} s, done {:.3} s, {} MB/s (cell {:.1} s)",
                m.first_byte.as_secs_f64(),
                m.done.as_secs_f64(),
                show_mbps(m.mbps(size)),
                wall.as_secs_f64()
            ),
            Err(e) => eprintln!("bench-interop:   FAIL: {e}"),
        }
        if stop_requested() {
            return Err("interrupted".into());
        }
        records.push(Record { cell, result, wall });
    }
    skipped.sort_by_key(|(c, _)| c.client.key());

    let meta = Meta {
        command: command_line(args),
        revision: revision(&root),
        build: if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        smoke: args.smoke,
        machine: machine_facts(),
        started_utc,
        total_secs: started.elapsed().as_secs_f64(),
        prepare_secs,
        size,
        poll_ms: args.poll_ms,
        versions,
        opentracker: output("dpkg-query", &["-W", "-f=${Version}", "opentracker"]),
    };
    let text = render(&meta, &records, &skipped, &unavailable_cells);
    if let Some(dir) = out_path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&out_path, &text)?;
    println!("{text}");
    eprintln!("bench-interop: wrote {}", out_path.display());
    drop(prepared);
    drop(env);
    drop(work);
    let failed = records.iter().filter(|r| r.result.is_err()).count();
    if failed > 0 {
        return Err(format!("{failed} of {} cells failed", records.len()).into());
    }
    Ok(())
}

/// First line of a command's output, or "".
fn output(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or_default()
                .trim()
                .to_owned()
        })
        .unwrap_or_default()
}

/// The commit measured, `+ uncommitted bench code` while this bench is
/// not committed, and the uncommitted changes outside examples, reports
/// and the justfile (those could change what is measured).
fn revision(root: &Path) -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(root)
            .args(args)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
    };
    let head = git(&["rev-parse", "--short", "HEAD"]).unwrap_or_default();
    let mut text = format!("commit {}", head.trim());
    if git(&[
        "ls-files",
        "--error-unmatch",
        "supervisor/examples/bench_interop.rs",
    ])
    .is_none()
    {
        text.push_str(" + uncommitted bench code");
    }
    let status = git(&["status", "--porcelain"]).unwrap_or_default();
    let other: Vec<&str> = status
        .lines()
        .filter_map(|l| l.get(3..))
        .filter(|p| {
            !(p.contains("examples/")
                || p.starts_with("bench/results/")
                || *p == "justfile"
                || Path::new(p)
                    .extension()
                    .is_some_and(|e| e.eq_ignore_ascii_case("md")))
        })
        .collect();
    if !other.is_empty() {
        let _ = write!(text, " + uncommitted changes to {}", other.join(", "));
    }
    text
}

/// CPUs, memory, kernel, distribution.
fn machine_facts() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, m)| m.trim().to_owned())
        .unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_gib = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kib| kib.parse::<u64>().ok())
        .map_or(0, |kib| kib.div_ceil(1 << 20));
    let os = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    let distro = os
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_owned())
        .unwrap_or_default();
    format!(
        "{cpus} vCPU ({model}), {mem_gib} GiB RAM, {distro}, Linux {}",
        output("uname", &["-r"])
    )
}

struct Meta {
    command: String,
    revision: String,
    build: &'static str,
    smoke: bool,
    machine: String,
    started_utc: String,
    total_secs: f64,
    prepare_secs: f64,
    size: u64,
    poll_ms: u64,
    versions: Vec<(Client, String)>,
    opentracker: String,
}

#[allow(
    clippy::too_many_lines,
    reason = "the report top to bottom, one section after the other"
)]
fn render(
    meta: &Meta,
    records: &[Record],
    skipped: &[(Cell, &str)],
    unavailable: &[(Cell, String)],
) -> String {
    let mut s = String::new();
    let passed = records.iter().filter(|r| r.result.is_ok()).count();
    let _ = writeln!(
        s,
        "# Interoperability: Revaer against aria2c, qBittorrent and Transmission\n"
    );
    if meta.smoke {
        let _ = writeln!(
            s,
            "**Smoke run** (`--smoke`: a 4 MiB payload, three cells): proves the bench runs; the numbers mean nothing.\n"
        );
    }
    let _ = writeln!(s, "- Command: `{}`", meta.command);
    let _ = writeln!(s, "- Revision: {}", meta.revision);
    let _ = writeln!(s, "- Build: {} binaries of Revaer", meta.build);
    let _ = writeln!(s, "- Machine: {}", meta.machine);
    let _ = writeln!(
        s,
        "- Run: started {} UTC, {:.0} s in all ({:.0} s writing and hashing the payloads)",
        meta.started_utc, meta.total_secs, meta.prepare_secs
    );
    let _ = writeln!(
        s,
        "- Payload: {} MiB ({} bytes) per cell, 64 KiB pieces; single file = one file; multi-file = 4 files in nested folders, sizes off piece boundaries; hybrid = the multi-file layout as a v1+v2 torrent (BEP 52)",
        meta.size >> 20,
        meta.size
    );
    let mut versions: Vec<String> = meta
        .versions
        .iter()
        .map(|(c, v)| format!("{}: {v}", c.label()))
        .collect();
    versions.push(format!("opentracker (Debian) {}", meta.opentracker));
    let _ = writeln!(s, "- Versions: {}", versions.join("; "));
    let _ = writeln!(s, "- Results: {passed} of {} cells passed\n", records.len());

    let _ = writeln!(s, "## Method\n");
    let _ = writeln!(
        s,
        "Each cell starts everything fresh on this machine: Debian's `opentracker` (HTTP and UDP on one port, whitelisting the payload's info-hashes), the seeder (which checks the payload and announces; the bench waits until the tracker's scrape lists it), then the downloader, up and answering. \
         Revaer is a `revaerd` on a fresh data dir, driven only through its public `/v1` API with the bootstrap admin key; aria2c and qBittorrent run on 127.0.0.1, Transmission inside a network namespace (it refuses peers on 127.0.0.0/8), with Revaer's BitTorrent socket and the tracker on the host side of the veth pair. \
         DHT, PEX, LSD, UPnP/NAT-PMP and uTP are off everywhere: peers are learned only from the tracker or the magnet (no peers given at add time). \
         Time zero is the downloader's add request (Revaer `POST /v1/torrents`, aria2c `aria2.addTorrent`/`addUri` over JSON-RPC, qBittorrent `/api/v2/torrents/add`, Transmission `torrent-add`). \
         **First byte**: to the first {poll} ms poll of the downloader showing a nonzero downloaded count (Revaer: `downloaded` or `size_done` of `GET /v1/torrents/{{id}}`, the first because libtorrent's all-time counter moves only on its one-second tick; qBittorrent: `downloaded` or `completed`; aria2c: `completedLength`; Transmission: `downloadedEver`; a magnet's includes fetching the metadata from the peer); **done**: to the first poll showing every byte. \
         **MB/s** = payload / (done − first byte), MB = 10^6 bytes. A cell **passes** when the download completes within its deadline and the SHA-256 of every file matches the payload's. \
         UDP cells: both sides announce over UDP, except aria2c as the seeder, which announces over HTTP (it speaks UDP trackers only with its DHT on) while Revaer's `.torrent` names only the `udp://` URL of the same tracker. \
         Magnet cells: the magnet names the v1 info-hash and the HTTP tracker; the seeder announces over HTTP. \
         Poll granularity also bounds the clients' own counters: qBittorrent refreshes its numbers every 200 ms, Transmission about once a second, so their short times are coarse. \
         Transmission unchokes a new peer, and declares interest in one, only at its 10-second rechoke pulse (see `bench/results/transfer.md`): hence its first byte after about 10 s in both directions.\n",
        poll = meta.poll_ms
    );

    let _ = writeln!(s, "## Matrix\n");
    let _ = writeln!(
        s,
        "| # | client | direction | discovery | shape | result | first byte (s) | done (s) | MB/s | cell (s) |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---:|---:|---:|---:|");
    for (i, r) in records.iter().enumerate() {
        let c = r.cell;
        let (result, first, done, mbps) = match &r.result {
            Ok(m) => (
                "pass".to_owned(),
                format!("{:.3}", m.first_byte.as_secs_f64()),
                format!("{:.3}", m.done.as_secs_f64()),
                show_mbps(m.mbps(meta.size)),
            ),
            Err(_) => ("**FAIL**".to_owned(), "–".into(), "–".into(), "–".into()),
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {result} | {first} | {done} | {mbps} | {:.1} |",
            i + 1,
            c.client.label(),
            c.direction_label(),
            c.discovery.label(),
            c.shape.label(),
            r.wall.as_secs_f64()
        );
    }
    let _ = writeln!(s);

    let failures: Vec<(usize, &Record, &String)> = records
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.result.as_ref().err().map(|e| (i + 1, r, e)))
        .collect();
    if !failures.is_empty() {
        let _ = writeln!(s, "## Failures\n");
        for (i, r, e) in failures {
            let first_lines: Vec<&str> = e.lines().take(12).collect();
            let _ = writeln!(
                s,
                "- Cell {i} ({}):\n\n  ```text\n  {}\n  ```\n",
                r.cell.describe(),
                first_lines.join("\n  ")
            );
        }
    }
    if !skipped.is_empty() || !unavailable.is_empty() || !meta.smoke {
        let _ = writeln!(s, "## Not run\n");
        for (c, why) in skipped {
            let _ = writeln!(s, "- {}: {why}.", c.describe());
        }
        for (c, why) in unavailable {
            let _ = writeln!(s, "- {}: {why}.", c.describe());
        }
        if !meta.smoke {
            let _ = writeln!(
                s,
                "- The hybrid shape with aria2c (no BEP 52 support) and Transmission (3.00 has none either); magnet and UDP with the hybrid shape (one hybrid cell per direction keeps the run short)."
            );
        }
        let _ = writeln!(s);
    }
    let _ = writeln!(s, "interop cells={} passed={passed}", records.len());
    s
}
