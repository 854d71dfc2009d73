//! Measures FsOps' copy path (the `transfer` step in `copy` mode: a job of
//! one file, run through the real pipeline) against `cp`, on one file.
//!
//! `cargo run --release -p revaer-fsops --example bench_copy -- [MiB] [dir]`
//! (default 1024 MiB in a temp dir under `dir`, default `/var/tmp`). The file
//! is random-ish data written once; each contender runs three times with the
//! page cache as the previous run left it (warm), and the best and median
//! are printed.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use revaer_config::{DataLayout, FsopsConfig, MoveMode};
use revaer_fsops::metrics::FsopsMetrics;
use revaer_fsops::{JobOutcome, Policy, RunEnv, run_job};
use revaer_ipc::engine::TorrentId;
use revaer_ipc::fsops::{FsopsJob, JobFile};

const RUNS: usize = 3;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mib: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(1024);
    let parent = args
        .next()
        .map_or_else(|| PathBuf::from("/var/tmp"), PathBuf::from);
    match bench(mib, &parent) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench_copy: {e}");
            ExitCode::FAILURE
        }
    }
}

fn bench(mib: u64, parent: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let tmp = tempfile::tempdir_in(parent)?;
    let layout = DataLayout::new(tmp.path());
    std::fs::create_dir_all(layout.downloads().join("Bench"))?;
    let source = layout.downloads().join("Bench/data.bin");
    write_file(&source, mib << 20)?;
    let size = std::fs::metadata(&source)?.len();
    let config = FsopsConfig {
        move_mode: MoveMode::Copy,
        extract: false,
        cleanup_drop: Vec::new(),
        ..FsopsConfig::default()
    };
    let policy = Policy::from_config(&config, &layout, false)?;
    let metrics = FsopsMetrics::new();
    let stop = AtomicBool::new(false);
    let downloads = layout.downloads();
    let mut fsops = Vec::new();
    let mut cp = Vec::new();
    for run in 0..RUNS {
        std::fs::remove_dir_all(layout.library()).ok();
        std::fs::create_dir_all(layout.library())?;
        let job = FsopsJob {
            job_id: 1,
            torrent: TorrentId([u8::try_from(run).unwrap_or(0); 20]),
            name: "Bench".into(),
            source: "Bench".into(),
            files: vec![JobFile {
                path: "Bench/data.bin".into(),
                size,
            }],
            category: None,
            resume_at: None,
            attempt: 1,
            traceparent: None,
        };
        let started = Instant::now();
        let outcome = run_job(
            &job,
            &RunEnv {
                policy: &policy,
                downloads: &downloads,
                metrics: &metrics,
                stop: &stop,
                crash_at: None,
            },
            &mut |_p| {},
        );
        fsops.push(started.elapsed());
        if !matches!(outcome, JobOutcome::Completed { .. }) {
            return Err(format!("job ended {outcome:?}").into());
        }
        let target = tmp.path().join("cp.bin");
        std::fs::remove_file(&target).ok();
        let started = Instant::now();
        let status = std::process::Command::new("cp")
            .arg(&source)
            .arg(&target)
            .status()?;
        let synced = std::fs::File::open(&target)?.sync_all();
        cp.push(started.elapsed());
        if !status.success() {
            return Err("cp failed".into());
        }
        synced?;
    }
    report("fsops copy (job, fsync)", size, &mut fsops);
    report("cp + fsync", size, &mut cp);
    Ok(())
}

fn write_file(path: &Path, len: u64) -> std::io::Result<()> {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut block = vec![0_u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        for chunk in block.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes());
        }
        let n = usize::try_from(left.min(block.len() as u64)).unwrap_or(block.len());
        file.write_all(&block[..n])?;
        left -= n as u64;
    }
    file.into_inner()?.sync_all()
}

#[allow(clippy::cast_precision_loss, reason = "a throughput figure")]
fn report(name: &str, size: u64, times: &mut [Duration]) {
    times.sort();
    let mib = size as f64 / f64::from(1 << 20);
    let best = times[0].as_secs_f64();
    let median = times[times.len() / 2].as_secs_f64();
    println!(
        "{name:<26} best {best:7.3} s ({:7.0} MiB/s)  median {median:7.3} s ({:7.0} MiB/s)",
        mib / best,
        mib / median
    );
}
