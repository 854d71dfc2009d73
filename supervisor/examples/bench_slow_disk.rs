//! `just bench-slow-disk`: the control plane on a slow disk (issue 8,
//! item 4). Not part of CI; needs root (loop device, mount, cgroup).
//!
//! The promise under test: `GET /v1/torrents` and `/health` never wait on
//! disk I/O. The bench makes a small ext4 filesystem on a loop device,
//! puts the whole data dir on it (state, downloads, library) and starts a
//! release `revaerd` in a blkio cgroup of its own, so every Revaer process
//! reads and writes that device at a throttled rate (default 16 MiB/s),
//! like a busy USB disk or a shared spinning disk. It then:
//! 1. loads `--torrents` paused torrents (so the list has pages to serve)
//!    and writes one large torrent's content into `downloads/`;
//! 2. **baseline**: with the throttle on and the disk idle, `wrk` drives
//!    `GET /v1/torrents?limit=100` while a probe client requests
//!    `/health`, `/health/full` and the list every 20 ms and a writer
//!    `PATCH`es a torrent's tags every 250 ms;
//! 3. **copy**: adds the large torrent (FsOps `move_mode = "copy"`), waits
//!    for FsOps to start copying it into the library, evicts the content
//!    from the page cache so the copy really reads the throttled disk, and
//!    measures the same way while the copy runs;
//! 4. waits for the copy to finish and records how long it took.
//!
//! Writes its section of `bench/results/reliability.md` between
//! `<!-- slowdisk:start -->` and `<!-- slowdisk:end -->`. Everything is on
//! 127.0.0.1; every loop is bounded in count and time; the daemon is
//! stopped and reaped and the filesystem, loop device and cgroup are
//! removed on error or Ctrl-C too.
//!
//! `--smoke`: 64 MiB, 64 MiB/s, 10 torrents, 2-second phases, the section
//! written to a temp file (or `--out`): proves the bench still runs
//! (`just bench-smoke`, part of `./x test`). Where the slow disk cannot be
//! made (not root, no loop device, no cgroup v1 blkio controller) a smoke
//! run says so and goes on without it: a plain directory, no throttle.

#[path = "bench_api/revaer.rs"]
#[allow(dead_code)]
mod revaer;
#[path = "support/mod.rs"]
mod support;
#[path = "bench_api/torrents.rs"]
#[allow(dead_code)]
mod torrents;
#[allow(dead_code)]
#[path = "bench_api/util.rs"]
mod util;
#[path = "bench_api/wrk.rs"]
#[allow(dead_code)]
mod wrk;

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use clap::Parser;
use reqwest::blocking::Client;
use serde_json::{Value, json};

use revaer::Revaer;
use util::{BoxError, TempDir, poll_until};

#[derive(Debug, Parser)]
#[command(about = "Revaer's control plane while FsOps copies a large torrent on a throttled disk")]
struct Args {
    /// Size of the torrent FsOps copies, in MiB.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(64..=16_384))]
    size_mib: u64,
    /// Read and write limit of the disk, in MiB/s.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=1_000))]
    throttle_mib: u64,
    /// Paused torrents loaded first, for the list to page through.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=20_000))]
    torrents: u64,
    /// Seconds of measurement with the disk idle.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(2..=300))]
    baseline: u64,
    /// Seconds of measurement while the copy runs (must end before it).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(2..=600))]
    duration: u64,
    /// `wrk` connections (one thread).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=256))]
    connections: u32,
    /// Where to write the report (default: bench/results/reliability.md in the workspace).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Smoke run: 64 MiB at 64 MiB/s, 10 torrents, 2 s phases; without
    /// root, a loop device or blkio it goes on unthrottled on a plain
    /// directory; report in a temp file unless `--out`.
    #[arg(long)]
    smoke: bool,
}

/// `revaer.toml` of the bench: loopback only, no DHT/LSD/UPnP/NAT-PMP, TCP
/// only, a rate far above what the bench needs, and FsOps copying.
const CONFIG: &str = "[api]\nlisten = \"127.0.0.1:0\"\ndefault_rate_per_minute = 1000000\n\n\
[engine]\nlisten_interfaces = \"127.0.0.1:0\"\nenable_dht = false\nenable_lsd = false\n\
enable_upnp = false\nenable_natpmp = false\nenable_utp = false\n\n\
[fsops]\nmove_mode = \"copy\"\n";
/// Name of the large torrent (its folder in `downloads/`).
const BIG_NAME: &str = "slow-disk-bench";
/// Pause between two probe requests.
const PROBE_EVERY: Duration = Duration::from_millis(20);
/// Pause between two tag writes.
const WRITE_EVERY: Duration = Duration::from_millis(250);
/// Timeout of one probe: slower counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Timeout of one write: it waits for the slow disk, by design.
const WRITE_TIMEOUT: Duration = Duration::from_secs(60);
/// Where cgroup v1 mounts the blkio controller.
const BLKIO_ROOT: &str = "/sys/fs/cgroup/blkio";
const START_MARK: &str = "<!-- slowdisk:start -->";
const END_MARK: &str = "<!-- slowdisk:end -->";
const MIB: u64 = 1024 * 1024;

fn main() -> ExitCode {
    let mut args = Args::parse();
    if args.smoke {
        args.size_mib = 64;
        args.throttle_mib = 64;
        args.torrents = 10;
        args.baseline = 2;
        args.duration = 2;
        args.connections = 2;
    }
    util::run_bench("bench-slow-disk", || bench(&args))
}

fn bench(args: &Args) -> Result<(), BoxError> {
    let is_root = nix::unistd::geteuid().is_root();
    if !is_root && !args.smoke {
        return Err(
            "needs root: it makes a loop device, mounts it and throttles it with a blkio cgroup"
                .into(),
        );
    }
    let root = util::workspace_root()?;
    let bin_dir = support::release_dir().map_err(|e| e.to_string())?;
    let work = TempDir::new(
        std::env::temp_dir().join(format!("revaer-bench-slow-disk-{}", std::process::id())),
    )?;
    let mut report = Report {
        command: command_line(args),
        machine: util::machine_facts(),
        revision: util::revision(&root),
        load: util::load_average(),
        throttle_mib: args.throttle_mib,
        size_mib: args.size_mib,
        torrents: args.torrents,
        connections: args.connections,
        smoke: args.smoke,
        ..Report::default()
    };

    let (disk, cgroup) = slow_disk(args, is_root, work.path(), &mut report.skipped)?;
    let data = disk
        .as_ref()
        .map_or_else(|| work.path().join("data"), |d| d.mount.join("data"));
    let mut revaer = Revaer::start_with(
        &bin_dir,
        &data,
        &work.path().join("revaerd.log"),
        CONFIG,
        cgroup
            .as_ref()
            .map(|c| c.dir.join("cgroup.procs"))
            .as_deref(),
    )?;
    if let Some(cgroup) = &cgroup {
        cgroup.check_holds(&revaer)?;
    }
    eprintln!(
        "bench-slow-disk: revaerd up at {}, loading {} torrents",
        revaer.url, args.torrents
    );
    let count = usize::try_from(args.torrents)?;
    let load = revaer::load(&mut revaer, &Arc::new(torrents::make_all(count)), 16)?;
    let victim = revaer
        .first_ids(1)?
        .into_iter()
        .next()
        .ok_or("no torrent to write tags to")?;
    eprintln!(
        "bench-slow-disk: {} torrents listed; writing {} MiB of content",
        load.listed_rows, args.size_mib
    );
    let content = data.join("downloads").join(BIG_NAME);
    let torrent = write_content(&content, args.size_mib)?;
    util::command_output("sync", &[])?;

    let throttled = disk.as_ref().zip(cgroup.as_ref());
    if let Some((disk, cgroup)) = throttled {
        cgroup.limit(&disk.major_minor, args.throttle_mib * MIB)?;
    }
    report.baseline = Some(measure(
        &revaer,
        args,
        &victim,
        args.baseline,
        "baseline",
        work.path(),
    )?);

    copy_phase(
        &mut revaer,
        args,
        &Copy {
            torrent: &torrent,
            content: &content,
            victim: &victim,
            throttled,
            out_dir: work.path(),
        },
        &mut report,
    )?;
    if let Some((disk, cgroup)) = throttled {
        cgroup.limit(&disk.major_minor, 0)?;
    }
    revaer.proc.stop()?;
    drop(revaer);

    let out = match &args.out {
        Some(p) => p.clone(),
        None if args.smoke => support::smoke_report("reliability.md").map_err(|e| e.to_string())?,
        None => root.join("bench/results/reliability.md"),
    };
    util::write_section(&out, START_MARK, END_MARK, &report.render())?;
    eprintln!("bench-slow-disk: wrote {}", out.display());
    drop(cgroup);
    drop(disk);
    Ok(())
}

/// The loop device and the blkio group throttling it, or why a smoke run
/// goes on without them (pushed to `skipped`, and printed).
fn slow_disk(
    args: &Args,
    is_root: bool,
    work: &Path,
    skipped: &mut Vec<String>,
) -> Result<(Option<SlowDisk>, Option<Blkio>), BoxError> {
    let made = make_slow_disk(args, is_root, work, skipped);
    for why in skipped.iter() {
        eprintln!("bench-slow-disk: smoke run without the slow disk: {why}");
    }
    made
}

fn make_slow_disk(
    args: &Args,
    is_root: bool,
    work: &Path,
    skipped: &mut Vec<String>,
) -> Result<(Option<SlowDisk>, Option<Blkio>), BoxError> {
    if !is_root {
        skipped.push(
            "not root, so no loop device, mount or blkio cgroup: the data dir is a plain \
             directory and nothing is throttled"
                .to_owned(),
        );
        return Ok((None, None));
    }
    // Room for the content, its copy, the state and ext4's own overhead.
    let disk = match SlowDisk::create(work, (2 * args.size_mib + 1024) * MIB) {
        Ok(disk) => disk,
        Err(e) if args.smoke => {
            skipped.push(format!(
                "no loop device ({e}): the data dir is a plain directory and nothing is throttled"
            ));
            return Ok((None, None));
        }
        Err(e) => return Err(e),
    };
    let cgroup = match Blkio::create() {
        Ok(cgroup) => cgroup,
        Err(e) if args.smoke => {
            skipped.push(format!(
                "{e}: the data dir is on the loop device, but nothing is throttled"
            ));
            eprintln!(
                "bench-slow-disk: {} ({}) mounted on {}, no cgroup",
                disk.device,
                disk.major_minor,
                disk.mount.display()
            );
            return Ok((Some(disk), None));
        }
        Err(e) => return Err(e),
    };
    eprintln!(
        "bench-slow-disk: {} ({}) mounted on {}, cgroup {}",
        disk.device,
        disk.major_minor,
        disk.mount.display(),
        cgroup.dir.display()
    );
    Ok((Some(disk), Some(cgroup)))
}

/// What the copy phase works on.
struct Copy<'a> {
    torrent: &'a [u8],
    content: &'a Path,
    victim: &'a str,
    /// The loop device and its blkio group (none in a smoke run that could
    /// not make them).
    throttled: Option<(&'a SlowDisk, &'a Blkio)>,
    out_dir: &'a Path,
}

impl Copy<'_> {
    /// Bytes read and written on the loop device by the group so far.
    fn service_bytes(&self) -> (u64, u64) {
        self.throttled.map_or((0, 0), |(disk, cgroup)| {
            cgroup.service_bytes(&disk.major_minor)
        })
    }
}

/// Adds the large torrent, waits for FsOps to start copying it, measures
/// while it copies, then waits for the copy to finish.
fn copy_phase(
    revaer: &mut Revaer,
    args: &Args,
    copy: &Copy<'_>,
    report: &mut Report,
) -> Result<(), BoxError> {
    let id = add(revaer, copy.torrent)?;
    eprintln!("bench-slow-disk: added {id}; waiting for FsOps to start copying");
    // Small and unthrottled, or small enough to fit the page cache (a smoke
    // run), the copy may be over before a poll sees it running.
    let may_be_over = args.smoke || copy.throttled.is_none();
    let start_deadline = Duration::from_secs(if args.smoke { 120 } else { 600 });
    let mut last = Value::Null;
    poll_until(
        "FsOps to start copying",
        start_deadline,
        Duration::from_millis(50),
        || {
            revaer.proc.check_alive()?;
            let job = fsops_job(revaer, &id)?;
            if job["state"] == "failed" {
                return Err(format!("the FsOps job failed: {job}").into());
            }
            let started = (job["state"] == "running" && job["step"] == "transfer")
                || (may_be_over && job["state"] == "completed");
            last = job;
            Ok(started.then_some(()))
        },
    )
    .map_err(|e| format!("{e}; last fsops_job: {last}"))?;
    let copy_started = Instant::now();
    // The content is still in the page cache from the check: evict it so
    // the copy reads the throttled device (the rest of the cache, the
    // state database's included, stays as a running system would have it).
    evict(copy.content)?;
    let io_before = copy.service_bytes();
    let mut phase = measure(
        revaer,
        args,
        copy.victim,
        args.duration,
        "copy",
        copy.out_dir,
    )?;
    let job = fsops_job(revaer, &id)?;
    phase.copy_running_at_end = job["state"] == "running" && job["step"] == "transfer";
    report.copy = Some(phase);
    let slack = if args.smoke { 60 } else { 600 };
    let deadline = Duration::from_secs(args.size_mib * 4 / args.throttle_mib + slack);
    let job = poll_until(
        "the copy to finish",
        deadline,
        Duration::from_millis(100),
        || {
            revaer.proc.check_alive()?;
            let job = fsops_job(revaer, &id)?;
            match job["state"].as_str() {
                Some("completed") => Ok(Some(job)),
                Some("failed") => Err(format!("the FsOps job failed: {job}").into()),
                _ => Ok(None),
            }
        },
    )?;
    report.copy_seconds = copy_started.elapsed().as_secs_f64();
    let io_after = copy.service_bytes();
    report.io_read = io_after.0.saturating_sub(io_before.0);
    report.io_write = io_after.1.saturating_sub(io_before.1);
    report.job_attempts = job["attempts"].as_u64().unwrap_or(0);
    report.restarts = metric_total(revaer, "revaer_worker_restarts_total");
    report.events_dropped = metric_total(revaer, "revaer_event_log_appends_dropped_total");
    Ok(())
}

// ---------------------------------------------------------------------------
// Slow disk
// ---------------------------------------------------------------------------

/// An ext4 filesystem on a loop device over a sparse file, unmounted and
/// detached when dropped.
struct SlowDisk {
    image: PathBuf,
    device: String,
    mount: PathBuf,
    /// `major:minor` of the loop device, as the cgroup wants it.
    major_minor: String,
    mounted: bool,
}

impl SlowDisk {
    fn create(dir: &Path, bytes: u64) -> Result<Self, BoxError> {
        let image = dir.join("slow-disk.img");
        std::fs::File::create(&image)?.set_len(bytes)?;
        let device =
            util::command_output("losetup", &["--find", "--show", &image.to_string_lossy()])?
                .trim()
                .to_owned();
        let mut disk = Self {
            image,
            mount: dir.join("slow"),
            major_minor: String::new(),
            device,
            mounted: false,
        };
        let name = disk
            .device
            .strip_prefix("/dev/")
            .ok_or_else(|| format!("unexpected loop device {}", disk.device))?;
        let major_minor = std::fs::read_to_string(format!("/sys/block/{name}/dev"))?;
        major_minor.trim().clone_into(&mut disk.major_minor);
        // Initialise inode tables and journal now, so no background
        // `ext4lazyinit` writes compete with the measurement.
        util::command_output(
            "mkfs.ext4",
            &[
                "-q",
                "-F",
                "-E",
                "lazy_itable_init=0,lazy_journal_init=0",
                &disk.device,
            ],
        )?;
        std::fs::create_dir_all(&disk.mount)?;
        util::command_output("mount", &[&disk.device, &disk.mount.to_string_lossy()])?;
        disk.mounted = true;
        Ok(disk)
    }
}

impl Drop for SlowDisk {
    fn drop(&mut self) {
        if self.mounted {
            let mount = self.mount.to_string_lossy();
            if util::command_output("umount", &[&mount]).is_err() {
                let _ = util::command_output("umount", &["--lazy", &mount]);
            }
        }
        let _ = util::command_output("losetup", &["--detach", &self.device]);
        let _ = std::fs::remove_file(&self.image);
    }
}

/// A cgroup v1 blkio group of the bench's own, removed when dropped.
struct Blkio {
    dir: PathBuf,
}

impl Blkio {
    fn create() -> Result<Self, BoxError> {
        let root = Path::new(BLKIO_ROOT);
        if !root.join("blkio.throttle.read_bps_device").exists() {
            return Err(format!(
                "no cgroup v1 blkio controller at {BLKIO_ROOT} (this bench throttles with \
                 blkio.throttle.*_bps_device; cgroup v2's io.max is not supported)"
            )
            .into());
        }
        let dir = root.join(format!("revaer-bench-slow-disk-{}", std::process::id()));
        std::fs::create_dir(&dir)?;
        Ok(Self { dir })
    }

    /// Read and write limit of `device` in bytes/s (0 lifts it).
    fn limit(&self, device: &str, bytes_per_second: u64) -> Result<(), BoxError> {
        for file in [
            "blkio.throttle.read_bps_device",
            "blkio.throttle.write_bps_device",
        ] {
            std::fs::write(
                self.dir.join(file),
                format!("{device} {bytes_per_second}\n"),
            )?;
        }
        Ok(())
    }

    /// Bytes read and written on `device` by the group so far.
    fn service_bytes(&self, device: &str) -> (u64, u64) {
        let text = std::fs::read_to_string(self.dir.join("blkio.throttle.io_service_bytes"))
            .unwrap_or_default();
        let field = |op: &str| {
            text.lines()
                .filter_map(|l| {
                    let mut parts = l.split_whitespace();
                    (parts.next()? == device && parts.next()? == op)
                        .then(|| parts.next()?.parse::<u64>().ok())?
                })
                .sum()
        };
        (field("Read"), field("Write"))
    }

    /// Fails unless every process of `revaer` is in the group.
    fn check_holds(&self, revaer: &Revaer) -> Result<(), BoxError> {
        let in_cgroup = self.members();
        let tree = revaer.pids();
        if tree.iter().all(|p| in_cgroup.contains(p)) {
            Ok(())
        } else {
            Err(
                format!("not every Revaer process is in the cgroup: {tree:?} vs {in_cgroup:?}")
                    .into(),
            )
        }
    }

    fn members(&self) -> Vec<u32> {
        std::fs::read_to_string(self.dir.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }
}

impl Drop for Blkio {
    fn drop(&mut self) {
        // The daemon's processes leave the group as they are reaped.
        for _ in 0..100 {
            if std::fs::remove_dir(&self.dir).is_ok() || !self.dir.exists() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!("bench-slow-disk: could not remove {}", self.dir.display());
    }
}

/// Writes `mib` MiB of pseudo-random content to `<dir>/movie.mkv` and
/// makes its `.torrent` (v1, 4 MiB pieces, no tracker).
fn write_content(dir: &Path, mib: u64) -> Result<Vec<u8>, BoxError> {
    std::fs::create_dir_all(dir)?;
    let mut file = std::fs::File::create(dir.join("movie.mkv"))?;
    let mut state = 0x5eed_u64;
    let mut chunk = vec![0_u8; usize::try_from(MIB)?];
    for _ in 0..mib {
        for word in chunk.chunks_exact_mut(8) {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            word.copy_from_slice(&(z ^ (z >> 31)).to_le_bytes());
        }
        file.write_all(&chunk)?;
    }
    file.sync_all()?;
    Ok(libtorrent_sys::create_torrent_with(
        dir,
        &libtorrent_sys::CreateTorrentOptions {
            piece_size: 4 * 1024 * 1024,
            format: libtorrent_sys::TorrentFormat::V1Only,
            ..libtorrent_sys::CreateTorrentOptions::default()
        },
    )?)
}

/// Drops the clean cached pages of every file under `dir`.
fn evict(dir: &Path) -> Result<(), BoxError> {
    use nix::fcntl::{PosixFadviseAdvice, posix_fadvise};
    for entry in std::fs::read_dir(dir)? {
        let file = std::fs::File::open(entry?.path())?;
        posix_fadvise(&file, 0, 0, PosixFadviseAdvice::POSIX_FADV_DONTNEED)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Daemon
// ---------------------------------------------------------------------------

/// Adds the large torrent, not paused; its id.
fn add(revaer: &Revaer, torrent: &[u8]) -> Result<String, BoxError> {
    let mut form = torrents::Multipart::new();
    form.file("torrent", &format!("{BIG_NAME}.torrent"), torrent)?;
    form.json("options", &json!({ "paused": false }).to_string())?;
    let (body, content_type) = form.finish();
    let resp = revaer
        .http
        .post(format!("{}/v1/torrents", revaer.url))
        .bearer_auth(&revaer.key)
        .header("Content-Type", content_type)
        .body(body)
        .send()?;
    let status = resp.status();
    let answer: Value = resp.json().unwrap_or(Value::Null);
    answer["id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("POST /v1/torrents: {status} {answer}").into())
}

/// The torrent's `fsops_job` (null until FsOps has one).
fn fsops_job(revaer: &Revaer, id: &str) -> Result<Value, BoxError> {
    let (detail, _) = revaer.get_json(&format!("/v1/torrents/{id}"))?;
    Ok(detail["fsops_job"].clone())
}

/// The sum of every sample of the metric family `name` on `/metrics`.
fn metric_total(revaer: &Revaer, name: &str) -> Option<u64> {
    let text = revaer.get("/metrics").ok()?.text().ok()?;
    let total: f64 = text
        .lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(['{', ' ']))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Some(total as u64)
}

// ---------------------------------------------------------------------------
// Measurement
// ---------------------------------------------------------------------------

/// Latencies of one kind of request, in ms, and how many failed.
#[derive(Debug, Default)]
struct Samples {
    ms: Vec<f64>,
    failed: usize,
}

impl Samples {
    fn push(&mut self, started: Instant, ok: bool) {
        if ok {
            self.ms.push(started.elapsed().as_secs_f64() * 1000.0);
        } else {
            self.failed += 1;
        }
    }

    fn summary(&self) -> String {
        let mut sorted = self.ms.clone();
        sorted.sort_by(f64::total_cmp);
        let q =
            |q| util::quantile(&sorted, q).map_or_else(|| "—".to_owned(), |v| format!("{v:.1}"));
        format!(
            "{} / {} / {} ({} ok, {} failed)",
            q(0.5),
            q(0.99),
            q(1.0),
            sorted.len(),
            self.failed
        )
    }
}

/// What one phase measured.
#[derive(Debug, Default)]
struct Phase {
    wrk: wrk::WrkResult,
    health: Samples,
    health_full: Samples,
    list: Samples,
    writes: Samples,
    copy_running_at_end: bool,
}

/// Background clients of a phase: a probe cycling through `/health`,
/// `/health/full` and the list every [`PROBE_EVERY`], and a writer
/// `PATCH`ing `victim`'s tags every [`WRITE_EVERY`].
struct Clients {
    stop: Arc<AtomicBool>,
    probe: JoinHandle<(Samples, Samples, Samples)>,
    writer: JoinHandle<Samples>,
}

impl Clients {
    fn start(revaer: &Revaer, victim: &str, seconds: u64) -> Result<Self, BoxError> {
        let stop = Arc::new(AtomicBool::new(false));
        let client = Client::builder()
            .no_proxy()
            .timeout(REQUEST_TIMEOUT)
            .build()?;
        // Bounded: the phase's length plus a minute, at the probe's pace.
        let limit = usize::try_from((seconds + 60) * 1000 / 20)?;
        let probe = {
            let (stop, client, url, key) = (
                Arc::clone(&stop),
                client.clone(),
                revaer.url.clone(),
                revaer.key.clone(),
            );
            std::thread::spawn(move || {
                let mut out = (Samples::default(), Samples::default(), Samples::default());
                for i in 0..limit {
                    if stop.load(Ordering::Acquire) || util::stop_requested() {
                        break;
                    }
                    let (path, samples) = match i % 3 {
                        0 => ("/health", &mut out.0),
                        1 => ("/health/full", &mut out.1),
                        _ => ("/v1/torrents?limit=100", &mut out.2),
                    };
                    let started = Instant::now();
                    let ok = client
                        .get(format!("{url}{path}"))
                        .bearer_auth(&key)
                        .send()
                        .and_then(reqwest::blocking::Response::bytes)
                        .is_ok();
                    samples.push(started, ok);
                    std::thread::sleep(PROBE_EVERY);
                }
                out
            })
        };
        let writer = {
            let (stop, url, key) = (
                Arc::clone(&stop),
                format!("{}/v1/torrents/{victim}", revaer.url),
                revaer.key.clone(),
            );
            std::thread::spawn(move || {
                let mut out = Samples::default();
                for i in 0..limit / 12 {
                    if stop.load(Ordering::Acquire) || util::stop_requested() {
                        break;
                    }
                    let started = Instant::now();
                    let ok = client
                        .patch(&url)
                        .timeout(WRITE_TIMEOUT)
                        .bearer_auth(&key)
                        .json(&json!({ "tags": ["bench", format!("write-{i}")] }))
                        .send()
                        .is_ok_and(|r| r.status().is_success());
                    out.push(started, ok);
                    std::thread::sleep(WRITE_EVERY);
                }
                out
            })
        };
        Ok(Self {
            stop,
            probe,
            writer,
        })
    }

    fn finish(self, phase: &mut Phase) {
        self.stop.store(true, Ordering::Release);
        if let Ok((health, health_full, list)) = self.probe.join() {
            phase.health = health;
            phase.health_full = health_full;
            phase.list = list;
        }
        if let Ok(writes) = self.writer.join() {
            phase.writes = writes;
        }
    }
}

/// `wrk` on the list for `seconds`, with the probe and the writer running.
fn measure(
    revaer: &Revaer,
    args: &Args,
    victim: &str,
    seconds: u64,
    tag: &str,
    out_dir: &Path,
) -> Result<Phase, BoxError> {
    eprintln!("bench-slow-disk: {tag}: measuring for {seconds} s");
    let clients = Clients::start(revaer, victim, seconds)?;
    let spec = wrk::WrkSpec {
        threads: 1,
        connections: args.connections,
        duration: Duration::from_secs(seconds),
        timeout: REQUEST_TIMEOUT,
        url: format!("{}/v1/torrents?limit=100", revaer.url),
        bearer: Some(revaer.key.clone()),
    };
    let result = wrk::run(&spec, out_dir, tag);
    let mut phase = Phase::default();
    clients.finish(&mut phase);
    phase.wrk = result?;
    Ok(phase)
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
    throttle_mib: u64,
    size_mib: u64,
    torrents: u64,
    connections: u32,
    baseline: Option<Phase>,
    copy: Option<Phase>,
    copy_seconds: f64,
    io_read: u64,
    io_write: u64,
    job_attempts: u64,
    restarts: Option<u64>,
    events_dropped: Option<u64>,
    /// A `--smoke` run.
    smoke: bool,
    /// What a smoke run went on without, and why.
    skipped: Vec<String>,
}

impl Report {
    fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "## Slow disk (`just bench-slow-disk`)\n");
        let _ = writeln!(
            s,
            "Command: `{}` · revision {} · {} · load average before: {}\n",
            self.command, self.revision, self.machine, self.load
        );
        if self.smoke {
            let _ = write!(
                s,
                "**Smoke run** ({} build): it proves the bench runs; its figures measure nothing.",
                if cfg!(debug_assertions) {
                    "debug"
                } else {
                    "release"
                }
            );
            for why in &self.skipped {
                let _ = write!(s, " Went on without the slow disk: {why}.");
            }
            s.push_str("\n\n");
        }
        let _ = writeln!(
            s,
            "The whole data dir (state and event log, downloads, library) on an ext4 loop device \
             throttled to {t} MiB/s read and {t} MiB/s write for every Revaer process (a cgroup v1 \
             blkio group `revaerd` joins before it starts its workers); a release build with {n} \
             paused torrents. **Copy** phase: FsOps (`move_mode = \"copy\"`) copies a {m} MiB \
             torrent into the library; its pages are evicted from the page cache when the copy \
             starts, so the copy reads the device. In each phase `wrk -t1 -c{c}` drives `GET /v1/torrents?limit=100` \
             while a probe client requests `/health`, `/health/full` and the list in turn every \
             20 ms (keep-alive) and a writer `PATCH`es one torrent's tags every 250 ms (a write \
             to the state database on the slow disk, acknowledged once durable; 60 s timeout). Latencies in ms.\n",
            t = self.throttle_mib,
            n = self.torrents,
            m = self.size_mib,
            c = self.connections,
        );
        let _ = writeln!(
            s,
            "| phase | wrk list req/s | wrk list p50 / p99 / max | probe `/health` p50 / p99 / max | probe `/health/full` | probe list | `PATCH` tags (write) |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|---|");
        for (name, phase) in [
            ("disk idle (baseline)", &self.baseline),
            ("during the copy", &self.copy),
        ] {
            let Some(p) = phase else { continue };
            let _ = writeln!(
                s,
                "| {name} | {:.0} ({} non-2xx, socket errors: {}) | {:.2} / {:.2} / {:.1} | {} | {} | {} | {} |",
                p.wrk.rps,
                p.wrk.non_2xx,
                p.wrk.socket_errors,
                p.wrk.p50_ms,
                p.wrk.p99_ms,
                p.wrk.max_ms,
                p.health.summary(),
                p.health_full.summary(),
                p.list.summary(),
                p.writes.summary(),
            );
        }
        #[allow(clippy::cast_precision_loss)]
        let rate = self.size_mib as f64 / self.copy_seconds.max(0.001);
        #[allow(clippy::cast_precision_loss)]
        let mib = |b: u64| b as f64 / MIB as f64;
        let running = self.copy.as_ref().is_some_and(|p| p.copy_running_at_end);
        let _ = writeln!(
            s,
            "\nThe copy of {} MiB took {:.1} s ({rate:.1} MiB/s) in {} attempt(s); the group read \
             {:.0} MiB and wrote {:.0} MiB on the device meanwhile. FsOps was {} copying when the \
             copy phase's measurement ended. Worker restarts during the bench: {}; events the \
             event log dropped (queue full): {}.",
            self.size_mib,
            self.copy_seconds,
            self.job_attempts,
            mib(self.io_read),
            mib(self.io_write),
            if running { "still" } else { "**no longer**" },
            self.restarts
                .map_or_else(|| "unknown".to_owned(), |r| r.to_string()),
            self.events_dropped
                .map_or_else(|| "unknown".to_owned(), |r| r.to_string()),
        );
        let _ = writeln!(
            s,
            "\nWhy the list and health do not move: they are served from memory, and no SQLite call \
             runs on a runtime thread (ADR 009). Regression test: \
             `route_tests::a_stuck_state_database_never_stalls_health_or_the_list`."
        );
        s
    }
}

fn command_line(args: &Args) -> String {
    if args.smoke {
        return "just bench-slow-disk --smoke".to_owned();
    }
    format!(
        "just bench-slow-disk --size-mib {} --throttle-mib {} --torrents {} --baseline {} --duration {} --connections {}",
        args.size_mib,
        args.throttle_mib,
        args.torrents,
        args.baseline,
        args.duration,
        args.connections
    )
}
