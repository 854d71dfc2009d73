//! The Markdown report (`bench/results/transfer.md`).

use std::fmt::Write as _;

use crate::clients::{Downloader, Sample};
use crate::util::median;

/// One run of one downloader.
#[derive(Debug)]
pub struct RunRecord {
    pub round: usize,
    pub which: Downloader,
    pub result: Result<Sample, String>,
}

/// Whether a downloader takes part: its version, or why it is n/a.
#[derive(Debug)]
pub struct Entry {
    pub which: Downloader,
    pub available: Result<String, String>,
}

/// Everything about the run that is not a measurement.
#[derive(Debug)]
pub struct Meta {
    pub command: String,
    pub revision: String,
    /// `release` or `debug`.
    pub build: &'static str,
    /// A `--smoke` run.
    pub smoke: bool,
    pub machine: String,
    pub load_before: String,
    pub load_after: String,
    pub started_utc: String,
    pub total_secs: f64,
    pub prepare_secs: f64,
    pub size: u64,
    pub pieces: u64,
    pub piece_size: u64,
    pub poll_ms: u128,
    pub runs: usize,
    pub libtorrent: String,
    pub tracker_announces: String,
}

/// Medians of the successful runs of one downloader.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    pub mbps: f64,
    /// Slowest and fastest run.
    pub mbps_min: f64,
    pub mbps_max: f64,
    pub cpu: f64,
    pub rss_mb: f64,
    pub ok: usize,
}

#[allow(clippy::cast_precision_loss)]
pub fn mbps(size: u64, sample: &Sample) -> f64 {
    size as f64 / 1e6 / sample.wall.as_secs_f64()
}

#[allow(clippy::cast_precision_loss)]
fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

pub fn summarize(records: &[RunRecord], which: Downloader, size: u64) -> Option<Summary> {
    let ok: Vec<&Sample> = records
        .iter()
        .filter(|r| r.which == which)
        .filter_map(|r| r.result.as_ref().ok())
        .collect();
    let rates: Vec<f64> = ok.iter().map(|s| mbps(size, s)).collect();
    Some(Summary {
        mbps: median(&rates)?,
        mbps_min: rates.iter().copied().fold(f64::INFINITY, f64::min),
        mbps_max: rates.iter().copied().fold(0.0, f64::max),
        cpu: median(&ok.iter().map(|s| s.cpu).collect::<Vec<_>>())?,
        rss_mb: median(&ok.iter().map(|s| mb(s.rss)).collect::<Vec<_>>())?,
        ok: ok.len(),
    })
}

fn ratio(value: f64, base: Option<f64>) -> String {
    match base {
        Some(b) if b > 0.0 => format!("{:.2}", value / b),
        _ => "n/a".to_owned(),
    }
}

/// `ratio revaer/bare=X.XX revaer/qbittorrent=Y.YY` (n/a where a side has
/// no successful run).
pub fn last_line(records: &[RunRecord], size: u64) -> String {
    let of = |w| summarize(records, w, size).map(|s| s.mbps);
    let revaer = of(Downloader::Revaer);
    let pair = |base: Option<f64>| match revaer {
        Some(r) => ratio(r, base),
        None => "n/a".to_owned(),
    };
    format!(
        "ratio revaer/bare={} revaer/qbittorrent={}",
        pair(of(Downloader::Bare)),
        pair(of(Downloader::Qbittorrent))
    )
}

#[allow(clippy::too_many_lines, reason = "the report, top to bottom")]
pub fn render(meta: &Meta, entries: &[Entry], records: &[RunRecord]) -> String {
    let size = meta.size;
    let mut out = String::new();
    let _ = writeln!(out, "# Transfer benchmark\n");
    let _ = writeln!(
        out,
        "Command: `{}` on Revaer {}. It builds the daemon in release with \
         `cargo build --release --bins --features revaer-api/test-probes,revaer-engine/test-probes,revaer-fsops/test-probes`: \
         the probe features only add the API's test route `POST /v1/_test/engine`, which forwards \
         `Add`/`Detail` to the engine over the same Unix-socket IPC the v1 API uses; the data \
         path (sandboxed engine worker, its libtorrent session) is the production one.\n",
        meta.command, meta.revision
    );
    if meta.smoke {
        let _ = writeln!(
            out,
            "**Smoke run** ({} build): it proves the bench runs; its figures measure nothing.\n",
            meta.build
        );
    }
    let _ = writeln!(
        out,
        "Machine: {}; shared with other developers' work. Load average (1/5/15 min) before: {}, after: {}. \
         Started {} UTC; the whole bench took {:.0} s ({:.0} s of it preparing the content, .torrent and seed).\n",
        meta.machine,
        meta.load_before,
        meta.load_after,
        meta.started_utc,
        meta.total_secs,
        meta.prepare_secs
    );
    let _ = writeln!(
        out,
        "Workload: one single-file torrent of {size} bytes ({} MiB) of pseudo-random data, v1-only, \
         {} pieces of {} MiB, generated once into a temp dir. One libtorrent {} seed session over our \
         bridge (`SessionSettings::loopback()`: TCP only, no DHT/LSD/UPnP/NAT-PMP, no rate limits) \
         serves it for the whole bench on 127.0.0.1 (and on 10.77.0.1 for Transmission). Runs are \
         interleaved (a, b, c, d, e) × {}; every run starts a fresh downloader process with fresh \
         config and download directories, deleted (and `sync`ed) afterwards.\n",
        size >> 20,
        meta.pieces,
        meta.piece_size >> 20,
        meta.libtorrent,
        meta.runs
    );
    let _ = writeln!(
        out,
        "Measures: the downloader is started and answering first; **wall time** runs from the add \
         request to the first status poll (every {} ms) that shows every byte verified; **MB/s** = \
         {size} bytes / 10^6 / wall s (MB = 10^6 bytes, here and for RSS). **CPU s** = utime + stime \
         of the measured process over the same interval (`/proc/<pid>/stat`, all threads). **Peak RSS** \
         = its `VmHWM` at completion. **First data** (raw runs) = the first poll that showed verified \
         bytes: the start-up latency (peer discovery, connection, interest) inside the wall time. \
         Medians of the successful runs (and the slowest and fastest run's MB/s); × = ratio to (a).\n",
        meta.poll_ms
    );

    let base = summarize(records, Downloader::Bare, size);
    let _ = writeln!(
        out,
        "| downloader | version | measured process | MB/s | × (a) | MB/s min–max | CPU s | × (a) | peak RSS MB | × (a) | runs ok |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|---|");
    for entry in entries {
        let w = entry.which;
        match (&entry.available, summarize(records, w, size)) {
            (Ok(version), Some(s)) => {
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {:.1} | {} | {:.0}–{:.0} | {:.2} | {} | {:.0} | {} | {}/{} |",
                    w.label(),
                    version,
                    w.measured_process(),
                    s.mbps,
                    ratio(s.mbps, base.map(|b| b.mbps)),
                    s.mbps_min,
                    s.mbps_max,
                    s.cpu,
                    ratio(s.cpu, base.map(|b| b.cpu)),
                    s.rss_mb,
                    ratio(s.rss_mb, base.map(|b| b.rss_mb)),
                    s.ok,
                    meta.runs
                );
            }
            (Ok(version), None) => {
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | failed | | | | | | | 0/{} |",
                    w.label(),
                    version,
                    w.measured_process(),
                    meta.runs
                );
            }
            (Err(reason), _) => {
                let _ = writeln!(
                    out,
                    "| {} | n/a: {} | | n/a | | | | | | | — |",
                    w.label(),
                    reason.replace('|', "/")
                );
            }
        }
    }

    let _ = writeln!(out, "\n## Raw runs\n");
    let _ = writeln!(
        out,
        "| round | downloader | wall s | first data s | MB/s | CPU s | peak RSS MB | notes |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|");
    for r in records {
        match &r.result {
            Ok(s) => {
                let _ = writeln!(
                    out,
                    "| {} | {} | {:.3} | {} | {:.1} | {:.2} | {:.0} | {} |",
                    r.round,
                    r.which.label(),
                    s.wall.as_secs_f64(),
                    s.first_data
                        .map_or_else(|| "—".to_owned(), |d| format!("{:.2}", d.as_secs_f64())),
                    mbps(size, s),
                    s.cpu,
                    mb(s.rss),
                    s.note
                );
            }
            Err(e) => {
                let _ = writeln!(
                    out,
                    "| {} | {} | failed | | | | | {} |",
                    r.round,
                    r.which.label(),
                    e.replace('|', "/").replace('\n', " ")
                );
            }
        }
    }

    let _ = writeln!(out, "\n## Setup\n");
    let _ = writeln!(
        out,
        "- Peers: (a) and (b) get the seed at add time (`peers`), (c) through `/api/v2/torrents/addPeers` \
         right after the add; (d) and (e) from the bench's own HTTP tracker (a thread answering \
         `GET /announce` with the seed's compact address), which the `.torrent` names. Transmission gets \
         the same info dictionary (same info-hash) with the tracker's 10.77.0.1 address. Announces \
         answered: {}.",
        meta.tracker_announces
    );
    let _ = writeln!(
        out,
        "- (a) `bench_transfer --bare-download`, a child process: a libtorrent session over our bridge with \
         `SessionSettings::loopback()`, torrent added not auto-managed with the seed in its `peers` \
         (libtorrent connects at once, as with `connect_peer`) — what the engine does, without the \
         daemon around it. It polls its own status every {} ms.",
        meta.poll_ms
    );
    let _ = writeln!(
        out,
        "- (b) `revaerd` on a fresh data dir with the e2e tests' loopback engine config (`listen_interfaces = \
         \"127.0.0.1:0\"`, DHT/LSD/UPnP/NAT-PMP/uTP off) and `default_rate_per_minute = 1000000` \
         (so that the polls never meet the API key's rate limit), everything else at its defaults; \
         added through `POST /v1/_test/engine` `Add` (the .torrent as a JSON byte array), completion polled \
         with `Detail`, both with the bootstrap admin key (`Authorization: Bearer`, read from \
         `bootstrap-admin.key` once an authenticated `GET /v1/keys` answers 200). Notes give the CPU of the other Revaer processes (supervisor, API — which also \
         serves the bench's polls — and FsOps) over the same interval.{}",
        records
            .iter()
            .find_map(|r| r.result.as_ref().ok().and_then(|s| s.context.as_deref()))
            .map_or_else(String::new, |c| format!(
                " The engine's libtorrent session, as it reports itself (`SessionInfo`): {c}."
            ))
    );
    let _ = writeln!(
        out,
        "- (c) `qbittorrent-nox` with a profile dir of its own: WebUI on 127.0.0.1 without auth for \
         localhost, DHT/PeX/LSD/UPnP off, TCP only, bound to `lo`/127.0.0.1, queueing off, \
         encryption off (its default, \"allow encryption\", negotiates RC4 for the payload with a \
         libtorrent seed, which costs both sides CPU, while the other clients exchange plaintext with \
         it), and its status refresh interval set to the bench's poll interval ({} ms instead of \
         1500 ms) so that `/api/v2/torrents/info` reports completion as promptly as the others; \
         otherwise defaults (libtorrent's mmap disk I/O, its default cache and buffer settings).",
        meta.poll_ms
    );
    let _ = writeln!(
        out,
        "- (d) `transmission-daemon -f` in a network namespace the bench creates (`ip netns add`, veth pair \
         10.77.0.1/24 here — where the seed and the tracker also listen — and 10.77.0.2/24 inside, MTU \
         65535 like loopback), because Transmission refuses peers on 127.0.0.0/8; DHT/PeX/LPD/uTP/port \
         forwarding off, `encryption` 0 (prefer plaintext; its default offers only RC4), RPC on 10.77.0.2:9091, torrent added with `torrent-add` (`metainfo`), \
         completion from `torrent-get` `leftUntilDone`. The namespace is deleted at the end. \
         Its connection to the seed is up within a second of the add, but Transmission declares \
         interest in a new peer only at its 10-second rechoke pulse, hence its first data after \
         about 11 s."
    );
    let _ = writeln!(
        out,
        "- (e) `aria2c --enable-rpc` bound to 127.0.0.1, DHT/PeX/LPD off, `--seed-time=0`, otherwise \
         defaults; torrent added with `aria2.addTorrent`, completion from `aria2.tellStatus`; it \
         learns the seed from the tracker, which it asks about 1 s after the add, and has its first \
         data about 1 s later."
    );
    let _ = writeln!(
        out,
        "- Peak RSS of the libtorrent 2.0 clients ((a), (b), (c)) includes the pages of the downloaded file \
         they map (libtorrent 2.0 writes through `mmap`), so it grows with the torrent size; it is \
         not heap."
    );
    let _ = writeln!(
        out,
        "- The seed runs in the bench process and shares the 2 vCPUs with the downloader; the notes give \
         the CPU of its libtorrent threads over each run (the bench's own threads — polling, tracker — \
         excluded)."
    );
    let _ = writeln!(out, "\n{}", last_line(records, size));
    out
}
