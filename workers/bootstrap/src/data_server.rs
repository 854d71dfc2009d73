//! The data-channel server of the engine and FsOps workers, and the control
//! loop that keeps them attached to the supervisor.
//!
//! Each accepted connection must come from our own uid (`SO_PEERCRED`) and pass
//! the authenticated handshake before a single request is read. Requests get
//! exactly one response each. The control loop applies config pushes, stops
//! the worker on `Shutdown`, and exits it when the supervisor disappears.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use revaer_ipc::connection::ConnectionWriter;
use revaer_ipc::handshake::{HandshakeParams, server_handshake};
use revaer_ipc::transport::{Listener, Stream, check_peer_uid};
use revaer_ipc::{
    BootSecret, Connection, Envelope, IpcError, PROTOCOL_VERSION, Pong, Role, SupervisorToWorker,
    WorkerReady, WorkerRequest, WorkerResponse, WorkerToSupervisor,
};

use crate::{BootstrapError, Bootstrapped};

/// Handshake deadline for data-channel clients.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// State shared by the control loop and every data connection.
#[derive(Debug)]
struct Shared {
    role: Role,
    secret: BootSecret,
    build_id: String,
    started: std::time::Instant,
    config_revision: AtomicU64,
    uid: u32,
}

/// How the worker's serving ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The supervisor asked for an orderly shutdown.
    Shutdown,
    /// The control channel closed: the supervisor is gone.
    SupervisorGone,
}

/// Serves `role`'s data socket until shutdown. Sends `Ready` to the
/// supervisor once the socket is bound.
pub async fn serve(boot: Bootstrapped) -> Result<Stop, BootstrapError> {
    let role = boot.init.role;
    let socket = match role {
        Role::Engine => boot.layout.engine_socket(),
        _ => boot.layout.fsops_socket(),
    };
    let listener = Listener::bind(&socket)?;
    let shared = Arc::new(Shared {
        role,
        secret: boot.init.secret.clone(),
        build_id: revaer_ipc::build_info::build_id(),
        started: boot.started,
        config_revision: AtomicU64::new(boot.init.config_revision),
        uid: nix::unistd::geteuid().as_raw(),
    });

    let control = revaer_ipc::control::into_tokio(boot.control)?;
    let (mut control_rx, mut control_tx) = Connection::new(control).into_split();
    send_ready(&mut control_tx, role, boot.sandbox).await?;
    tracing::info!(worker = role.as_str(), socket = %socket.display(), "serving");

    let accept_shared = Arc::clone(&shared);
    let acceptor = tokio::spawn(async move { accept_loop(listener, accept_shared).await });

    let stop = loop {
        match control_rx.recv::<SupervisorToWorker>().await {
            Ok(Some(SupervisorToWorker::ConfigUpdate { revision, .. })) => {
                shared.config_revision.store(revision, Ordering::Release);
                control_tx
                    .send(&WorkerToSupervisor::ConfigApplied { revision })
                    .await?;
                tracing::info!(worker = role.as_str(), revision, "config applied");
            }
            Ok(Some(SupervisorToWorker::Shutdown)) => break Stop::Shutdown,
            Ok(Some(other)) => {
                tracing::warn!(worker = role.as_str(), frame = ?frame_name(&other), "ignoring unexpected control frame");
            }
            Ok(None) => break Stop::SupervisorGone,
            Err(e) => {
                tracing::error!(worker = role.as_str(), error = %e, "control channel failed");
                break Stop::SupervisorGone;
            }
        }
    };
    acceptor.abort();
    let _ = std::fs::remove_file(&socket);
    tracing::info!(worker = role.as_str(), ?stop, "stopping");
    Ok(stop)
}

/// Sends the `Ready` frame that completes the control handshake.
pub async fn send_ready<W>(
    control_tx: &mut ConnectionWriter<W>,
    role: Role,
    sandbox: revaer_ipc::SandboxReport,
) -> Result<(), IpcError>
where
    W: tokio::io::AsyncWrite + Unpin,
{
    control_tx
        .send(&WorkerToSupervisor::Ready(Box::new(WorkerReady {
            protocol_version: PROTOCOL_VERSION,
            build_id: revaer_ipc::build_info::build_id(),
            role,
            pid: std::process::id(),
            sandbox,
        })))
        .await
}

fn frame_name(frame: &SupervisorToWorker) -> &'static str {
    match frame {
        SupervisorToWorker::Init(_) => "Init",
        SupervisorToWorker::ConfigUpdate { .. } => "ConfigUpdate",
        SupervisorToWorker::Shutdown => "Shutdown",
        SupervisorToWorker::Supervision(_) => "Supervision",
    }
}

async fn accept_loop(listener: Listener, shared: Arc<Shared>) {
    loop {
        match listener.accept().await {
            Ok(stream) => {
                let shared = Arc::clone(&shared);
                tokio::spawn(async move {
                    if let Err(e) = serve_connection(stream, &shared).await {
                        tracing::warn!(worker = shared.role.as_str(), error = %e, "data connection ended");
                    }
                });
            }
            Err(e) => {
                tracing::error!(worker = shared.role.as_str(), error = %e, "accept failed");
                // Accept errors (EMFILE, ...) are usually transient; do not spin.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn serve_connection(stream: Stream, shared: &Shared) -> Result<(), IpcError> {
    check_peer_uid(&stream, shared.uid)?;
    let mut conn = Connection::new(stream);
    server_handshake(
        &mut conn,
        &HandshakeParams {
            role: shared.role,
            peer_role: Role::Api,
            build_id: &shared.build_id,
            secret: &shared.secret,
            timeout: HANDSHAKE_TIMEOUT,
        },
    )
    .await?;
    while let Some(request) = conn.recv::<Envelope<WorkerRequest>>().await? {
        let body = answer(&request.body, shared);
        conn.send(&Envelope {
            request_id: request.request_id,
            traceparent: None,
            body,
        })
        .await?;
    }
    Ok(())
}

fn answer(request: &WorkerRequest, shared: &Shared) -> WorkerResponse {
    match request {
        WorkerRequest::Ping => WorkerResponse::Pong(Box::new(Pong {
            role: shared.role,
            pid: std::process::id(),
            uptime_ms: u64::try_from(shared.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            config_revision: shared.config_revision.load(Ordering::Acquire),
            sandbox: revaer_sandbox::current_report(),
        })),
        WorkerRequest::Probe(probe) => run_probe(probe),
    }
}

#[cfg(feature = "test-probes")]
fn run_probe(probe: &revaer_ipc::Probe) -> WorkerResponse {
    WorkerResponse::Probe(crate::probes::run(probe))
}

#[cfg(not(feature = "test-probes"))]
fn run_probe(_probe: &revaer_ipc::Probe) -> WorkerResponse {
    use revaer_ipc::{ErrorKind, RemoteError};
    WorkerResponse::Error(RemoteError {
        kind: ErrorKind::Unsupported,
        message: "sandbox probes are compiled only into test builds".to_owned(),
    })
}
