//! Test helper (run by `tests/sandbox.rs`, never shipped): applies FsOps'
//! real sandbox profile (`revaer_worker_bootstrap::profile_for`) to this
//! process, then runs a real job, a crafted one, and direct attempts to
//! write outside the roots and to open a network socket, printing one
//! `key=value` line per probe.
//!
//! Usage: `sandboxed_job <data-dir> <outside-dir>`; `<data-dir>/downloads`
//! must hold a torrent folder `Show/`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;

use revaer_config::{Config, DataLayout};
use revaer_fsops::metrics::FsopsMetrics;
use revaer_fsops::{JobOutcome, Policy, RunEnv, run_job};
use revaer_ipc::engine::TorrentId;
use revaer_ipc::fsops::{FsopsJob, JobFile};
use revaer_ipc::{BootSecret, PROTOCOL_VERSION, Role, WorkerInit};

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1).map(PathBuf::from);
    let (Some(data), Some(outside)) = (args.next(), args.next()) else {
        eprintln!("usage: sandboxed_job <data-dir> <outside-dir>");
        return ExitCode::from(2);
    };
    let layout = DataLayout::new(&data);
    let init = WorkerInit {
        protocol_version: PROTOCOL_VERSION,
        build_id: revaer_ipc::build_info::build_id(),
        role: Role::Fsops,
        secret: BootSecret::from_bytes([1; 32]),
        data_dir: data.clone(),
        config_revision: 1,
        config: Config::default(),
    };
    let profile = revaer_worker_bootstrap::profile_for(Role::Fsops, &layout, &init, 0);
    let report = match revaer_sandbox::apply(&profile) {
        Ok(r) => r,
        Err(e) => {
            println!("sandbox=error {e}");
            return ExitCode::from(1);
        }
    };
    println!("landlock={}", report.landlock_status);

    let Ok(policy) = Policy::from_config(&init.config.fsops, &layout, false) else {
        println!("policy=refused");
        return ExitCode::from(1);
    };
    let metrics = FsopsMetrics::new();
    let stop = AtomicBool::new(false);
    let downloads = layout.downloads();
    let env = RunEnv {
        policy: &policy,
        downloads: &downloads,
        metrics: &metrics,
        stop: &stop,
        crash_at: None,
    };
    let size = std::fs::metadata(downloads.join("Show/e01.mkv")).map_or(0, |m| m.len());
    let mut job = FsopsJob {
        job_id: 1,
        torrent: TorrentId([9; 20]),
        name: "Show".into(),
        source: "Show".into(),
        files: vec![JobFile {
            path: "Show/e01.mkv".into(),
            size,
        }],
        category: None,
        resume_at: None,
        attempt: 1,
        traceparent: None,
    };
    let mut sink = |_p| {};
    match run_job(&job, &env, &mut sink) {
        JobOutcome::Completed { library_path } => println!("job=completed {library_path}"),
        other => println!("job={other:?}"),
    }
    // A crafted job: its paths climb out of the downloads dir.
    job.torrent = TorrentId([8; 20]);
    job.source = "../../outside/Show".into();
    match run_job(&job, &env, &mut sink) {
        JobOutcome::Failed { step, .. } => println!("crafted=failed {}", step.as_str()),
        other => println!("crafted={other:?}"),
    }
    // Whatever a bug in FsOps might try: Landlock refuses it.
    let outside_file = outside.join("evil.txt");
    match std::fs::write(&outside_file, b"evil") {
        Ok(()) => println!("outside_write=ok"),
        Err(e) => println!("outside_write=error {}", e.raw_os_error().unwrap_or(0)),
    }
    match std::fs::write(data.join("state-evil.txt"), b"evil") {
        Ok(()) => println!("data_write=ok"),
        Err(e) => println!("data_write=error {}", e.raw_os_error().unwrap_or(0)),
    }
    match std::net::TcpListener::bind("127.0.0.1:0") {
        Ok(_) => println!("inet=ok"),
        Err(e) => println!("inet=error {}", e.raw_os_error().unwrap_or(0)),
    }
    ExitCode::SUCCESS
}
