//! Life cycle of one supervised worker: spawn, handshake, relay, reap,
//! restart with backoff, and orderly stop.
//!
//! The worker's control channel is a socketpair passed as its stdin; its
//! environment is cleared except for a short allow-list (the sandbox cannot
//! scrub it from inside without `unsafe`). The supervisor parses only the
//! few control frames a worker may send.

use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use revaer_config::DataLayout;
use revaer_ipc::connection::{ConnectionReader, ConnectionWriter};
use revaer_ipc::{
    BootSecret, Connection, PROTOCOL_VERSION, Role, SupervisorToWorker, WorkerExit, WorkerInit,
    WorkerReady, WorkerToSupervisor,
};
use tokio::io::{ReadHalf, WriteHalf};
use tokio::net::UnixStream;
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::backoff::{Backoff, random_jitter};
use crate::hub::{Hub, unix_ms};

/// How long a new worker has to complete its handshake.
const READY_TIMEOUT: Duration = Duration::from_secs(15);

/// Environment variables passed through to workers; everything else is
/// dropped.
const ENV_ALLOW_LIST: &[&str] = &[
    "RUST_LOG",
    "RUST_BACKTRACE",
    "TZ",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "REVAER_TELEMETRY_ENDPOINT",
    // How often spans are batched out (standard OpenTelemetry variable).
    "OTEL_BSP_SCHEDULE_DELAY",
    // Only meaningful for coverage-instrumented test builds.
    "LLVM_PROFILE_FILE",
    // Honoured only by workers built with the `test-probes` feature.
    "REVAER_TEST_SLOW_KEY_REGISTER_MS",
];

/// What every worker task needs.
#[derive(Debug)]
pub struct Context {
    pub layout: DataLayout,
    pub bin_dir: PathBuf,
    pub secret: BootSecret,
    pub build_id: String,
    pub hub: Hub,
}

type ControlRx = ConnectionReader<ReadHalf<UnixStream>>;
type ControlTx = ConnectionWriter<WriteHalf<UnixStream>>;

/// How one process of a worker ended.
enum Ended {
    /// It exited or failed to start; a restart is due.
    Crashed(WorkerExit),
    /// It was stopped on request.
    Stopped,
}

/// Supervises `role` until `stop` is cancelled and the worker has stopped.
pub async fn supervise(role: Role, ctx: Arc<Context>, stop: CancellationToken) {
    let mut backoff = Backoff::default();
    while !stop.is_cancelled() {
        let started = Instant::now();
        let exit = match run_once(role, &ctx, &stop).await {
            Ended::Stopped => break,
            Ended::Crashed(exit) => exit,
        };
        if stop.is_cancelled() {
            ctx.hub.worker_exited(role, exit, None);
            break;
        }
        let config = ctx.hub.config().config.supervisor;
        if started.elapsed() >= Duration::from_millis(config.restart_backoff_reset_after_ms) {
            backoff.reset();
        }
        let delay = backoff.next_delay(&config, random_jitter());
        let delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        tracing::warn!(
            worker = role.as_str(),
            pid = exit.pid,
            reason = %exit.reason,
            restart_in_ms = delay_ms,
            "worker exited"
        );
        ctx.hub.worker_exited(role, exit, Some(delay_ms));
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = stop.cancelled() => break,
        }
    }
    ctx.hub.worker_stopped(role);
}

/// Runs one process of the worker, from spawn to exit.
async fn run_once(role: Role, ctx: &Context, stop: &CancellationToken) -> Ended {
    let spawned = spawn(role, ctx);
    let (mut child, control) = match spawned {
        Ok(pair) => pair,
        Err(e) => return Ended::Crashed(exit_info(0, None, format!("cannot start: {e}"))),
    };
    let pid = child.id().unwrap_or(0);
    ctx.hub.worker_spawned(role, pid);
    tracing::info!(worker = role.as_str(), pid, "worker spawned");

    let mut conn = Connection::new(control);
    let config = ctx.hub.config();
    let init = SupervisorToWorker::Init(Box::new(WorkerInit {
        protocol_version: PROTOCOL_VERSION,
        build_id: ctx.build_id.clone(),
        role,
        secret: ctx.secret.clone(),
        data_dir: ctx.layout.root().to_path_buf(),
        config_revision: config.revision,
        config: config.config,
    }));
    if let Err(e) = conn.send(&init).await {
        // The process may already be dead; its exit status says why.
        tracing::debug!(worker = role.as_str(), error = %e, "cannot send init");
    }
    let (mut rx, tx) = conn.into_split();

    let first = tokio::select! {
        frame = tokio::time::timeout(READY_TIMEOUT, rx.recv::<WorkerToSupervisor>()) => frame,
        status = child.wait() => return Ended::Crashed(describe_exit(pid, status)),
        () = stop.cancelled() => return stop_child(role, &mut child, None, ctx).await,
    };
    let refusal = match first {
        Ok(Ok(Some(WorkerToSupervisor::Ready(ready)))) => match check_ready(&ready, role, pid, ctx)
        {
            Ok(()) => {
                ctx.hub.worker_ready(role, ready.sandbox);
                tracing::info!(worker = role.as_str(), pid, "worker ready");
                None
            }
            Err(reason) => Some(reason),
        },
        Ok(Ok(Some(_))) => Some("first frame was not Ready".to_owned()),
        Ok(Ok(None)) => Some("closed the control channel before Ready".to_owned()),
        Ok(Err(e)) => Some(format!("bad control frame: {e}")),
        Err(_) => Some(format!("no Ready within {}s", READY_TIMEOUT.as_secs())),
    };
    if let Some(reason) = refusal {
        tracing::error!(worker = role.as_str(), pid, %reason, "worker handshake failed; killing it");
        let _ = child.start_kill();
        let status = child.wait().await;
        let mut exit = describe_exit(pid, status);
        exit.reason = format!("handshake failed ({reason}); {}", exit.reason);
        return Ended::Crashed(exit);
    }
    serve_running(role, ctx, stop, child, rx, tx, pid).await
}

/// Relays config (and, to the API, supervision snapshots) to a running
/// worker until it exits or the supervisor stops it.
async fn serve_running(
    role: Role,
    ctx: &Context,
    stop: &CancellationToken,
    mut child: Child,
    mut rx: ControlRx,
    mut tx: ControlTx,
    pid: u32,
) -> Ended {
    let mut config_rx = ctx.hub.subscribe_config();
    let init_revision = config_rx.borrow_and_update().revision;
    // A config accepted between Init and Ready is delivered now.
    if ctx.hub.config().revision != init_revision {
        config_rx.mark_changed();
    }
    let mut snapshot_rx = (role == Role::Api).then(|| {
        let mut rx = ctx.hub.subscribe_snapshot();
        rx.mark_changed();
        rx
    });
    let mut control_open = true;
    loop {
        tokio::select! {
            status = child.wait() => return Ended::Crashed(describe_exit(pid, status)),
            () = stop.cancelled() => return stop_child(role, &mut child, Some(&mut tx), ctx).await,
            frame = rx.recv::<WorkerToSupervisor>(), if control_open => match frame {
                Ok(Some(WorkerToSupervisor::StoreBootstrapKey { key })) if role == Role::Api => {
                    let stored = store_bootstrap_key(ctx, &key.0);
                    if let Err(e) = tx.send(&SupervisorToWorker::BootstrapKeyStored(stored)).await {
                        tracing::warn!(error = %e, "cannot confirm the bootstrap key");
                    }
                }
                Ok(Some(WorkerToSupervisor::PublishBootstrapKey)) if role == Role::Api => {
                    let published = publish_bootstrap_key(ctx);
                    if let Err(e) = tx.send(&SupervisorToWorker::BootstrapKeyPublished(published)).await {
                        tracing::warn!(error = %e, "cannot confirm the bootstrap key");
                    }
                }
                Ok(Some(frame)) => on_worker_frame(role, ctx, frame),
                Ok(None) => control_open = false,
                Err(e) => {
                    tracing::warn!(worker = role.as_str(), error = %e, "bad control frame; ignoring the channel");
                    control_open = false;
                }
            },
            Ok(()) = config_rx.changed() => {
                let next = config_rx.borrow_and_update().clone();
                let frame = SupervisorToWorker::ConfigUpdate { revision: next.revision, config: Box::new(next.config) };
                if let Err(e) = tx.send(&frame).await {
                    tracing::warn!(worker = role.as_str(), error = %e, "cannot push config");
                }
            }
            Some(snapshot) = next_snapshot(snapshot_rx.as_mut()) => {
                if let Err(e) = tx.send(&SupervisorToWorker::Supervision(Box::new(snapshot))).await {
                    tracing::debug!(worker = role.as_str(), error = %e, "cannot push supervision snapshot");
                }
            }
        }
    }
}

/// Waits for the next snapshot change; pends forever without a receiver.
async fn next_snapshot(
    rx: Option<&mut watch::Receiver<revaer_ipc::SupervisionSnapshot>>,
) -> Option<revaer_ipc::SupervisionSnapshot> {
    match rx {
        Some(rx) => match rx.changed().await {
            Ok(()) => Some(rx.borrow_and_update().clone()),
            Err(_) => std::future::pending().await,
        },
        None => std::future::pending().await,
    }
}

fn on_worker_frame(role: Role, ctx: &Context, frame: WorkerToSupervisor) {
    match frame {
        WorkerToSupervisor::ConfigApplied { revision } => {
            tracing::debug!(worker = role.as_str(), revision, "config acknowledged");
        }
        WorkerToSupervisor::ApiListening { addr } if role == Role::Api => {
            announce_api(ctx, &addr);
        }
        other => {
            tracing::warn!(worker = role.as_str(), frame = ?other, "unexpected control frame");
        }
    }
}

/// Writes the API's first admin key to `<data>/bootstrap-admin.key.pending`,
/// mode 0600, atomically. Users never look there: the key is moved to
/// `bootstrap-admin.key` by [`publish_bootstrap_key`] once the API has
/// registered it, so the file users read always holds a key that works.
/// Only paths are ever logged or printed.
fn store_bootstrap_key(ctx: &Context, key: &str) -> Result<PathBuf, String> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let well_formed = key.len() == 68
        && key.starts_with("rvk_")
        && key[4..].bytes().all(|b| b.is_ascii_hexdigit());
    if !well_formed {
        return Err("refusing a malformed bootstrap key".to_owned());
    }
    let path = ctx.layout.bootstrap_key_pending_file();
    let tmp = path.with_extension("pending.tmp");
    let written = (|| -> std::io::Result<()> {
        let _ = std::fs::remove_file(&tmp);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(format!("{key}\n").as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(ctx.layout.root())?.sync_all()
    })();
    match written {
        Ok(()) => {
            tracing::debug!(path = %path.display(), "bootstrap admin key stored, pending registration");
            Ok(path)
        }
        Err(e) => {
            tracing::error!(path = %path.display(), error = %e, "cannot write the bootstrap admin key");
            Err(format!("cannot write {}: {e}", path.display()))
        }
    }
}

/// Moves a registered pending bootstrap key to `<data>/bootstrap-admin.key`
/// (rename, then fsync of the directory). `Ok(None)` when nothing is pending.
fn publish_bootstrap_key(ctx: &Context) -> Result<Option<PathBuf>, String> {
    let pending = ctx.layout.bootstrap_key_pending_file();
    let path = ctx.layout.bootstrap_key_file();
    let moved = std::fs::rename(&pending, &path)
        .and_then(|()| std::fs::File::open(ctx.layout.root())?.sync_all());
    match moved {
        Ok(()) => {
            println!("Bootstrap admin API key written to {}", path.display());
            tracing::info!(path = %path.display(), "bootstrap admin key written");
            Ok(Some(path))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => {
            tracing::error!(path = %path.display(), error = %e, "cannot publish the bootstrap admin key");
            Err(format!(
                "cannot move {} to {}: {e}",
                pending.display(),
                path.display()
            ))
        }
    }
}

/// Records where the API listens: printed for the operator and written to
/// `run/api.url` for scripts and tests.
fn announce_api(ctx: &Context, addr: &str) {
    if addr.parse::<std::net::SocketAddr>().is_err() {
        tracing::warn!(%addr, "API reported an invalid listen address");
        return;
    }
    let url = format!("http://{addr}");
    println!("Revaer API listening on {url}");
    let path = ctx.layout.api_url_file();
    let tmp = path.with_extension("url.tmp");
    let written =
        std::fs::write(&tmp, format!("{url}\n")).and_then(|()| std::fs::rename(&tmp, &path));
    if let Err(e) = written {
        tracing::warn!(path = %path.display(), error = %e, "cannot write the API URL file");
    }
}

fn check_ready(ready: &WorkerReady, role: Role, pid: u32, ctx: &Context) -> Result<(), String> {
    if ready.protocol_version != PROTOCOL_VERSION {
        return Err(format!("protocol version {}", ready.protocol_version));
    }
    if ready.build_id != ctx.build_id {
        return Err(format!(
            "build {} differs from {}",
            ready.build_id, ctx.build_id
        ));
    }
    if ready.role != role {
        return Err(format!("claims to be {}", ready.role));
    }
    if ready.pid != pid {
        return Err(format!("claims pid {}", ready.pid));
    }
    Ok(())
}

/// Asks the worker to stop, waits up to the grace period, then kills it.
async fn stop_child(
    role: Role,
    child: &mut Child,
    tx: Option<&mut ControlTx>,
    ctx: &Context,
) -> Ended {
    let grace = Duration::from_millis(ctx.hub.config().config.supervisor.shutdown_grace_ms);
    if let Some(tx) = tx {
        let _ = tx.send(&SupervisorToWorker::Shutdown).await;
    } else {
        let _ = child.start_kill();
    }
    let status = if let Ok(status) = tokio::time::timeout(grace, child.wait()).await {
        status
    } else {
        tracing::warn!(worker = role.as_str(), "did not stop in time; killing it");
        let _ = child.start_kill();
        child.wait().await
    };
    match status {
        Ok(s) => tracing::info!(worker = role.as_str(), status = %s, "worker stopped"),
        Err(e) => tracing::warn!(worker = role.as_str(), error = %e, "cannot reap worker"),
    }
    Ended::Stopped
}

fn spawn(role: Role, ctx: &Context) -> Result<(Child, UnixStream), revaer_ipc::IpcError> {
    let (parent, child_end) = revaer_ipc::control::control_pair()?;
    let mut cmd = Command::new(ctx.bin_dir.join(role.binary_name()));
    cmd.stdin(Stdio::from(child_end))
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .env_clear()
        .env("REVAER_SUPERVISOR_PID", std::process::id().to_string())
        .current_dir("/")
        // Own process group: a terminal's Ctrl-C reaches only the supervisor,
        // which then stops the workers in order.
        .process_group(0)
        .kill_on_drop(true);
    for key in ENV_ALLOW_LIST {
        if let Some(value) = std::env::var_os(key) {
            cmd.env(key, value);
        }
    }
    let child = cmd.spawn()?;
    Ok((child, parent))
}

fn exit_info(pid: u32, status: Option<ExitStatus>, reason: String) -> WorkerExit {
    WorkerExit {
        pid,
        code: status.and_then(|s| s.code()),
        signal: status.and_then(|s| s.signal()),
        reason,
        at_unix_ms: unix_ms(SystemTime::now()),
        restart_delay_ms: None,
    }
}

fn describe_exit(pid: u32, status: std::io::Result<ExitStatus>) -> WorkerExit {
    match status {
        Ok(status) => exit_info(pid, Some(status), status_reason(status)),
        Err(e) => exit_info(pid, None, format!("cannot reap: {e}")),
    }
}

fn status_reason(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("exited with code {code}");
    }
    match status.signal() {
        Some(sig) => match nix::sys::signal::Signal::try_from(sig) {
            Ok(name) => format!("killed by {name}"),
            Err(_) => format!("killed by signal {sig}"),
        },
        None => "ended".to_owned(),
    }
}
