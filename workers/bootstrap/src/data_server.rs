//! The data-channel server of the engine and FsOps workers, and the control
//! loop that keeps them attached to the supervisor.
//!
//! Each accepted connection must come from our own uid (`SO_PEERCRED`) and pass
//! the authenticated handshake before a single request is read. Requests get
//! exactly one response each. The control loop applies config pushes, stops
//! the worker on `Shutdown`, and exits it when the supervisor disappears.
//! `Metrics` requests are answered from [`Service::metrics`], with every
//! line outside the worker's metric prefix dropped and the text bounded
//! (`revaer_ipc::MAX_METRICS_BYTES`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::broadcast;

use revaer_config::Config;
use revaer_ipc::connection::ConnectionWriter;
use revaer_ipc::engine::{
    EngineError, EngineErrorKind, EngineEvent, EngineRequest, EngineResponse, TorrentSummary,
};
use revaer_ipc::handshake::{HandshakeParams, server_handshake};
use revaer_ipc::transport::{Listener, Stream, check_peer_uid};
use revaer_ipc::{
    BootSecret, Connection, Envelope, ErrorKind, IpcError, PROTOCOL_VERSION, Pong, RemoteError,
    Role, SupervisorToWorker, WorkerReady, WorkerRequest, WorkerResponse, WorkerToSupervisor,
    bound_metrics_text, metrics_prefix,
};

use crate::{BootstrapError, Bootstrapped};

/// The role-specific half of a worker's data channel. The generic server
/// answers pings and probes itself and hands everything else here.
pub trait Service: Send + Sync + 'static {
    /// Answers one engine command (exactly one response per request).
    /// `traceparent` is the caller's span (already validated), from the
    /// request's envelope.
    fn handle(
        &self,
        request: EngineRequest,
        traceparent: Option<String>,
    ) -> impl Future<Output = EngineResponse> + Send;

    /// Starts an event subscription. `None` when this worker has no events.
    fn subscribe(&self) -> Option<Subscription>;

    /// Applies a configuration pushed by the supervisor.
    fn apply_config(&self, config: &Config) -> impl Future<Output = ()> + Send;

    /// Persists state before an orderly exit.
    fn shutdown(&self) -> impl Future<Output = ()> + Send;

    /// Starts (or attaches to) an FsOps job; its progress arrives on the
    /// receiver, which closes after `Completed` or `Failed`. `None` when
    /// this worker runs no jobs (everyone but FsOps). A job keeps running
    /// when the receiver is dropped (the API went away); the API
    /// re-dispatches it and must be attached to the running job, not given
    /// a second one.
    fn run_fsops(
        &self,
        request: revaer_ipc::fsops::FsopsRequest,
    ) -> Option<tokio::sync::mpsc::Receiver<revaer_ipc::fsops::FsopsProgress>> {
        let _ = request;
        None
    }

    /// Why the worker runs but cannot do its whole job now (reported in
    /// every pong, so `/health/full` degrades with the reason). `None`
    /// when it can.
    fn degraded(&self) -> Option<String> {
        None
    }

    /// This worker's own metrics as Prometheus text exposition (format
    /// 0.0.4). Every metric name must start with the role's prefix
    /// (`revaer_engine_`, `revaer_fsops_`); anything else is dropped before
    /// it is sent. Empty when the worker has none.
    fn metrics(&self) -> String;
}

/// What a new subscriber receives: the full state now, events that happened
/// while nobody was subscribed (start-up reports), then everything live.
#[derive(Debug)]
pub struct Subscription {
    pub snapshot: Vec<TorrentSummary>,
    pub backlog: Vec<EngineEvent>,
    pub events: broadcast::Receiver<EngineEvent>,
}

/// A worker with no role-specific requests yet (FsOps at this stage).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoService;

impl Service for NoService {
    async fn handle(
        &self,
        _request: EngineRequest,
        _traceparent: Option<String>,
    ) -> EngineResponse {
        EngineResponse::Error(EngineError {
            kind: EngineErrorKind::Invalid,
            message: "this worker does not take engine commands".to_owned(),
        })
    }

    fn subscribe(&self) -> Option<Subscription> {
        None
    }

    async fn apply_config(&self, _config: &Config) {}

    async fn shutdown(&self) {}

    fn metrics(&self) -> String {
        String::new()
    }
}

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
pub async fn serve<S: Service>(
    boot: Bootstrapped,
    service: Arc<S>,
) -> Result<Stop, BootstrapError> {
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
    let accept_service = Arc::clone(&service);
    let acceptor =
        tokio::spawn(async move { accept_loop(listener, accept_shared, accept_service).await });

    let stop = loop {
        match control_rx.recv::<SupervisorToWorker>().await {
            Ok(Some(SupervisorToWorker::ConfigUpdate { revision, config })) => {
                service.apply_config(&config).await;
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
    if stop == Stop::Shutdown {
        service.shutdown().await;
    }
    let _ = std::fs::remove_file(&socket);
    tracing::info!(worker = role.as_str(), ?stop, "stopping");
    Ok(stop)
}

/// Serves `service` on `socket` without a supervisor: no control channel,
/// no sandbox. For in-process harnesses (the API's route tests drive a
/// scripted engine through the real socket, handshake and codec).
pub fn spawn_data_server<S: Service>(
    socket: &std::path::Path,
    role: Role,
    secret: BootSecret,
    service: Arc<S>,
) -> Result<tokio::task::JoinHandle<()>, BootstrapError> {
    let listener = Listener::bind(socket)?;
    let shared = Arc::new(Shared {
        role,
        secret,
        build_id: revaer_ipc::build_info::build_id(),
        started: std::time::Instant::now(),
        config_revision: AtomicU64::new(0),
        uid: nix::unistd::geteuid().as_raw(),
    });
    Ok(tokio::spawn(accept_loop(listener, shared, service)))
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
        SupervisorToWorker::BootstrapKeyStored(_) => "BootstrapKeyStored",
        SupervisorToWorker::BootstrapKeyPublished(_) => "BootstrapKeyPublished",
    }
}

async fn accept_loop<S: Service>(listener: Listener, shared: Arc<Shared>, service: Arc<S>) {
    loop {
        match listener.accept().await {
            Ok(stream) => {
                let shared = Arc::clone(&shared);
                let service = Arc::clone(&service);
                tokio::spawn(async move {
                    if let Err(e) = serve_connection(stream, &shared, &*service).await {
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

async fn serve_connection<S: Service>(
    stream: Stream,
    shared: &Shared,
    service: &S,
) -> Result<(), IpcError> {
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
        let body = match request.body {
            WorkerRequest::Engine(EngineRequest::Subscribe) => match service.subscribe() {
                Some(subscription) => {
                    return stream_events(conn, request.request_id, subscription, service).await;
                }
                None => {
                    WorkerResponse::Engine(NoService.handle(EngineRequest::Subscribe, None).await)
                }
            },
            WorkerRequest::Engine(command) => {
                let traceparent = request
                    .traceparent
                    .clone()
                    .filter(|t| revaer_ipc::trace::validate_traceparent(t));
                WorkerResponse::Engine(service.handle(command, traceparent).await)
            }
            WorkerRequest::Metrics => {
                WorkerResponse::Metrics(own_metrics(shared.role, &service.metrics()))
            }
            WorkerRequest::Fsops(job) => match service.run_fsops(job) {
                Some(progress) => {
                    return stream_progress(
                        conn,
                        request.request_id,
                        request.traceparent,
                        progress,
                    )
                    .await;
                }
                None => WorkerResponse::Error(RemoteError {
                    kind: ErrorKind::Unsupported,
                    message: format!("{} runs no FsOps jobs", shared.role.as_str()),
                }),
            },
            other => answer(&other, shared, service.degraded()),
        };
        conn.send(&Envelope {
            request_id: request.request_id,
            traceparent: request.traceparent,
            body,
        })
        .await?;
    }
    Ok(())
}

/// Forwards a job's progress until it ends, then closes the connection
/// (one job per connection).
async fn stream_progress(
    mut conn: Connection<Stream>,
    request_id: u64,
    traceparent: Option<String>,
    mut progress: tokio::sync::mpsc::Receiver<revaer_ipc::fsops::FsopsProgress>,
) -> Result<(), IpcError> {
    while let Some(step) = progress.recv().await {
        conn.send(&Envelope {
            request_id,
            traceparent: traceparent.clone(),
            body: WorkerResponse::Fsops(step),
        })
        .await?;
    }
    Ok(())
}

/// Pushes the snapshot, then every event, until the subscriber goes away.
/// A subscriber that falls behind gets a fresh snapshot rather than a gap.
async fn stream_events<S: Service>(
    mut conn: Connection<Stream>,
    request_id: u64,
    subscription: Subscription,
    service: &S,
) -> Result<(), IpcError> {
    let push = |event| Envelope {
        request_id,
        traceparent: None,
        body: WorkerResponse::Event(event),
    };
    let Subscription {
        snapshot,
        backlog,
        mut events,
    } = subscription;
    conn.send(&push(EngineEvent::Snapshot(snapshot))).await?;
    for event in backlog {
        conn.send(&push(event)).await?;
    }
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Ok(event) => conn.send(&push(event)).await?,
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "event subscriber lagged; resending a snapshot");
                    if let Some(fresh) = service.subscribe() {
                        events = fresh.events;
                        conn.send(&push(EngineEvent::Snapshot(fresh.snapshot))).await?;
                        for event in fresh.backlog {
                            conn.send(&push(event)).await?;
                        }
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return Ok(()),
            },
            // A subscriber sends nothing; EOF means it left.
            inbound = conn.recv::<Envelope<WorkerRequest>>() => match inbound? {
                None => return Ok(()),
                Some(_) => return Err(IpcError::UnexpectedMessage("request on a subscribed connection")),
            },
        }
    }
}

/// Keeps only the lines of `text` that belong to `role`'s metric families
/// (samples, `# HELP` and `# TYPE` of names with the role's prefix), so a
/// worker can never publish a family the API or another worker owns, then
/// bounds the result.
#[must_use]
pub fn own_metrics(role: Role, text: &str) -> String {
    let prefix = metrics_prefix(role);
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let name = line
            .strip_prefix("# HELP ")
            .or_else(|| line.strip_prefix("# TYPE "))
            .unwrap_or(line);
        if name.starts_with(prefix) {
            out.push_str(line);
            out.push('\n');
        }
    }
    let len = out.len();
    let bounded = bound_metrics_text(out);
    if bounded.len() < len {
        tracing::warn!(
            worker = role.as_str(),
            len,
            kept = bounded.len(),
            "metrics text cut to the IPC bound"
        );
    }
    bounded
}

fn answer(request: &WorkerRequest, shared: &Shared, degraded: Option<String>) -> WorkerResponse {
    match request {
        WorkerRequest::Engine(_) | WorkerRequest::Metrics | WorkerRequest::Fsops(_) => {
            WorkerResponse::Error(RemoteError {
                kind: ErrorKind::Invalid,
                message: "engine and metrics requests are routed before this point".to_owned(),
            })
        }
        WorkerRequest::Ping => WorkerResponse::Pong(Box::new(Pong {
            role: shared.role,
            pid: std::process::id(),
            uptime_ms: u64::try_from(shared.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            config_revision: shared.config_revision.load(Ordering::Acquire),
            sandbox: revaer_sandbox::current_report(),
            degraded,
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
    WorkerResponse::Error(RemoteError {
        kind: ErrorKind::Unsupported,
        message: "sandbox probes are compiled only into test builds".to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_service_has_no_metrics() {
        assert_eq!(NoService.metrics(), "");
        assert_eq!(own_metrics(Role::Fsops, &NoService.metrics()), "");
    }

    #[test]
    fn only_the_roles_own_families_pass() {
        let text = "# HELP revaer_engine_torrents Torrents.\n\
                    # TYPE revaer_engine_torrents gauge\n\
                    revaer_engine_torrents{state=\"seeding\"} 2\n\
                    \n\
                    # HELP revaer_worker_up Spoofed.\n\
                    # TYPE revaer_worker_up gauge\n\
                    revaer_worker_up{worker=\"engine\"} 1\n\
                    # a free comment\n\
                    revaer_fsops_steps_total 3\n";
        assert_eq!(
            own_metrics(Role::Engine, text),
            "# HELP revaer_engine_torrents Torrents.\n\
             # TYPE revaer_engine_torrents gauge\n\
             revaer_engine_torrents{state=\"seeding\"} 2\n"
        );
        assert_eq!(
            own_metrics(Role::Fsops, text),
            "revaer_fsops_steps_total 3\n"
        );
    }

    #[test]
    fn oversized_metrics_are_bounded() {
        let line = "revaer_engine_x 1\n";
        let text = line.repeat(revaer_ipc::MAX_METRICS_BYTES / line.len() + 10);
        let out = own_metrics(Role::Engine, &text);
        assert!(out.len() <= revaer_ipc::MAX_METRICS_BYTES);
        assert!(out.ends_with('\n'));
        assert!(out.len() > revaer_ipc::MAX_METRICS_BYTES - line.len());
    }
}
