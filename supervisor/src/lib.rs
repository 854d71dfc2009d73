//! `revaerd`, the supervisor: the only long-lived trusted process.
//!
//! It prepares the data dir, loads and watches the config, spawns the three
//! sandboxed workers (engine, FsOps, API), restarts them when they die, tells
//! the API about every exit, and shuts them down in order on SIGTERM/SIGINT:
//! API first (stop intake), then the engine (persist state), then FsOps. It
//! parses nothing but its config file and a handful of control frames.

pub mod backoff;
pub mod config_watch;
pub mod hub;
pub mod worker;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use revaer_config::DataLayout;
use revaer_ipc::{BootSecret, Role};
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

use crate::hub::Hub;
use crate::worker::Context;

/// Why the supervisor could not run.
#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error("cannot prepare data dir {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot locate worker binaries: {0}")]
    Binaries(String),
    #[error("cannot generate the boot secret: {0}")]
    Secret(#[from] revaer_ipc::IpcError),
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    /// The config file at start is invalid or unreadable; no worker started.
    #[error(
        "refusing to start: {0} (fix the file, or move it aside to get the commented defaults)"
    )]
    Config(#[from] config_watch::ReadError),
}

impl SupervisorError {
    /// The process exit code (sysexits.h): `EX_CONFIG` (78) for a bad config
    /// file, so service managers and scripts can tell it from a crash.
    #[must_use]
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Config(_) => 78,
            Self::DataDir { .. } => 73,
            _ => 1,
        }
    }
}

/// Runs the daemon until SIGTERM or SIGINT, then shuts down in order.
pub async fn run(data_dir: &Path) -> Result<(), SupervisorError> {
    let data_dir = std::path::absolute(data_dir).map_err(|source| SupervisorError::DataDir {
        path: data_dir.to_path_buf(),
        source,
    })?;
    let layout = DataLayout::new(data_dir);
    prepare_layout(&layout)?;
    let bin_dir = worker_bin_dir()?;

    let (config, config_status) = config_watch::load_initial(&layout)?;
    if let Some(identity) = config
        .config
        .sandbox
        .worker_uid
        .zip(config.config.sandbox.worker_gid)
    {
        hand_over_worker_dirs(&layout, identity)?;
    }
    let ctx = Arc::new(Context {
        layout: layout.clone(),
        bin_dir,
        secret: BootSecret::generate()?,
        build_id: revaer_ipc::build_info::build_id(),
        hub: Hub::new(config, config_status),
    });
    tracing::info!(
        data_dir = %layout.root().display(),
        build = %ctx.build_id,
        "revaerd starting"
    );

    let mut sigterm = signal(SignalKind::terminate()).map_err(SupervisorError::Signals)?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(SupervisorError::Signals)?;

    let watch_ctx = Arc::clone(&ctx);
    let watcher = tokio::spawn(async move {
        if let Err(e) = config_watch::watch(watch_ctx.layout.clone(), &watch_ctx.hub).await {
            tracing::error!(error = %e, "config watcher unavailable; edits need a restart");
            let mut status = watch_ctx.hub.config_status();
            status.failures = status.failures.saturating_add(1);
            status.error = Some(format!("config watcher unavailable: {e}"));
            watch_ctx.hub.set_config_status(status);
        }
    });

    // Start order: engine (keeps seeding), FsOps, then the API.
    let mut workers = Vec::new();
    for role in Role::WORKERS {
        let stop = CancellationToken::new();
        let task = tokio::spawn(worker::supervise(role, Arc::clone(&ctx), stop.clone()));
        workers.push((role, stop, task));
    }

    tokio::select! {
        _ = sigterm.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = sigint.recv() => tracing::info!("SIGINT: shutting down"),
    }
    watcher.abort();
    // Stop order: API (no new intake), engine (saves resume data), FsOps.
    for stop_role in [Role::Api, Role::Engine, Role::Fsops] {
        for (role, stop, task) in &mut workers {
            if *role == stop_role {
                stop.cancel();
                if let Err(e) = task.await {
                    tracing::error!(worker = role.as_str(), error = %e, "supervision task failed");
                }
            }
        }
    }
    let _ = std::fs::remove_file(layout.api_url_file());
    tracing::info!("revaerd stopped");
    Ok(())
}

/// Creates the data-dir tree. The root, `run/` and the state directories
/// are private (0700): they hold keys, sockets, the catalog and .torrent
/// files (whose announce URLs can carry tracker passkeys). `downloads/` and
/// the library keep the umask's mode: media servers read them.
fn prepare_layout(layout: &DataLayout) -> Result<(), SupervisorError> {
    for dir in layout.directories() {
        std::fs::create_dir_all(&dir).map_err(|source| SupervisorError::DataDir {
            path: dir.clone(),
            source,
        })?;
    }
    for private in [
        layout.root().to_path_buf(),
        layout.run_dir(),
        layout.root().join("state"),
        layout.state_api(),
        layout.state_engine(),
    ] {
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).map_err(
            |source| SupervisorError::DataDir {
                path: private.clone(),
                source,
            },
        )?;
    }
    Ok(())
}

/// When workers will switch to their own uid/gid (daemon started as root),
/// they must own the directories they write. The data-dir root becomes
/// traversable (0711) but not listable; the config stays the supervisor's.
/// Only the directories themselves change owner, not what they contain.
fn hand_over_worker_dirs(
    layout: &DataLayout,
    (uid, gid): (u32, u32),
) -> Result<(), SupervisorError> {
    if !nix::unistd::geteuid().is_root() {
        tracing::warn!("sandbox.worker_uid is set but revaerd is not root; workers keep its uid");
        return Ok(());
    }
    let owner = |path: PathBuf| {
        nix::unistd::chown(
            &path,
            Some(nix::unistd::Uid::from_raw(uid)),
            Some(nix::unistd::Gid::from_raw(gid)),
        )
        .map_err(|e| SupervisorError::DataDir {
            path,
            source: e.into(),
        })
    };
    for dir in [
        layout.run_dir(),
        layout.state_api(),
        layout.state_engine(),
        layout.downloads(),
        layout.library(),
    ] {
        owner(dir)?;
    }
    for traversable in [layout.root().to_path_buf(), layout.root().join("state")] {
        std::fs::set_permissions(&traversable, std::fs::Permissions::from_mode(0o711)).map_err(
            |source| SupervisorError::DataDir {
                path: traversable.clone(),
                source,
            },
        )?;
    }
    Ok(())
}

/// Worker binaries live beside `revaerd` itself.
fn worker_bin_dir() -> Result<PathBuf, SupervisorError> {
    let exe = std::env::current_exe().map_err(|e| SupervisorError::Binaries(e.to_string()))?;
    let dir = exe
        .parent()
        .ok_or_else(|| SupervisorError::Binaries(format!("{} has no parent", exe.display())))?
        .to_path_buf();
    let missing: Vec<&str> = Role::WORKERS
        .iter()
        .map(|r| r.binary_name())
        .filter(|name| !dir.join(name).is_file())
        .collect();
    if missing.is_empty() {
        Ok(dir)
    } else {
        Err(SupervisorError::Binaries(format!(
            "{} missing from {} (build the whole workspace)",
            missing.join(", "),
            dir.display()
        )))
    }
}
