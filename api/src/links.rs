//! The API's data-channel links to the engine and FsOps.
//!
//! One task per worker keeps a connection open: connect to the worker's
//! socket, check the peer's uid, run the authenticated handshake, then ping
//! every second. The link's status (connected, last pong, last error) feeds
//! `/health/full`. Requests from handlers are queued to the task, which
//! sends them one at a time and returns exactly one response each. When the
//! worker dies the task reconnects with a short capped backoff, and is woken
//! at once when the supervisor reports a new process.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use revaer_ipc::handshake::{HandshakeParams, client_handshake};
use revaer_ipc::transport::{Stream, check_peer_uid, connect};
use revaer_ipc::{
    BootSecret, Connection, Envelope, IpcError, Pong, Role, WorkerRequest, WorkerResponse,
};
use tokio::sync::{Notify, mpsc, oneshot, watch};

const PING_EVERY: Duration = Duration::from_secs(1);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
const RECONNECT_MIN: Duration = Duration::from_millis(10);
const RECONNECT_MAX: Duration = Duration::from_millis(500);
/// Queued requests per worker before callers are told the link is busy.
const QUEUE_DEPTH: usize = 64;

/// What the API currently knows about one worker over its data channel.
#[derive(Debug, Clone, Default)]
pub struct LinkStatus {
    pub connected: bool,
    pub last_pong: Option<Pong>,
    pub last_pong_at: Option<Instant>,
    pub last_error: Option<String>,
}

/// Why a request to a worker failed.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("{0} is not connected")]
    NotConnected(Role),
    #[error("{0} request queue is full")]
    Busy(Role),
    #[error("{0}: {1}")]
    Ipc(Role, IpcError),
}

type Request = (
    WorkerRequest,
    Option<String>,
    oneshot::Sender<Result<WorkerResponse, LinkError>>,
);

/// Handle to one worker link.
#[derive(Debug, Clone)]
pub struct WorkerLink {
    role: Role,
    status: watch::Receiver<LinkStatus>,
    requests: mpsc::Sender<Request>,
    wake: Arc<Notify>,
}

/// Everything a link task needs to authenticate.
#[derive(Debug, Clone)]
pub struct LinkParams {
    pub role: Role,
    pub socket: PathBuf,
    pub secret: BootSecret,
    pub build_id: String,
    pub uid: u32,
}

impl WorkerLink {
    /// Starts the link task for `params.role`.
    #[must_use]
    pub fn spawn(params: LinkParams) -> Self {
        let (status_tx, status) = watch::channel(LinkStatus::default());
        let (requests, rx) = mpsc::channel(QUEUE_DEPTH);
        let wake = Arc::new(Notify::new());
        let link = Self {
            role: params.role,
            status,
            requests,
            wake: Arc::clone(&wake),
        };
        tokio::spawn(run(params, status_tx, rx, wake));
        link
    }

    #[must_use]
    pub fn status(&self) -> LinkStatus {
        self.status.borrow().clone()
    }

    /// Retry the connection now (the supervisor reported a new process).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Sends one request and waits for its response. Made while serving
    /// an HTTP request, it carries that request's trace context.
    pub async fn request(&self, request: WorkerRequest) -> Result<WorkerResponse, LinkError> {
        let (tx, rx) = oneshot::channel();
        self.requests
            .try_send((request, crate::otel::current_traceparent(), tx))
            .map_err(|_| LinkError::Busy(self.role))?;
        rx.await.map_err(|_| LinkError::NotConnected(self.role))?
    }
}

async fn run(
    params: LinkParams,
    status: watch::Sender<LinkStatus>,
    mut requests: mpsc::Receiver<Request>,
    wake: Arc<Notify>,
) {
    let mut delay = RECONNECT_MIN;
    let mut next_id: u64 = 0;
    loop {
        match open(&params).await {
            Ok(conn) => {
                delay = RECONNECT_MIN;
                tracing::info!(worker = params.role.as_str(), "data channel connected");
                status.send_modify(|s| {
                    s.connected = true;
                    s.last_error = None;
                });
                let err = serve(&params, conn, &status, &mut requests, &mut next_id).await;
                tracing::warn!(worker = params.role.as_str(), error = %err, "data channel lost");
                status.send_modify(|s| {
                    s.connected = false;
                    s.last_error = Some(err.to_string());
                });
            }
            Err(e) => {
                status.send_modify(|s| {
                    s.connected = false;
                    s.last_error = Some(e.to_string());
                });
                // Refuse queued requests rather than letting them wait.
                while let Ok((_, _, reply)) = requests.try_recv() {
                    let _ = reply.send(Err(LinkError::NotConnected(params.role)));
                }
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = wake.notified() => {}
                }
                delay = (delay * 2).min(RECONNECT_MAX);
            }
        }
    }
}

pub(crate) async fn open(params: &LinkParams) -> Result<Connection<Stream>, IpcError> {
    let stream = connect(&params.socket).await?;
    check_peer_uid(&stream, params.uid)?;
    let mut conn = Connection::new(stream);
    client_handshake(
        &mut conn,
        &HandshakeParams {
            role: Role::Api,
            peer_role: params.role,
            build_id: &params.build_id,
            secret: &params.secret,
            timeout: HANDSHAKE_TIMEOUT,
        },
    )
    .await?;
    Ok(conn)
}

/// Serves one live connection until it fails; returns the failure.
async fn serve(
    params: &LinkParams,
    mut conn: Connection<Stream>,
    status: &watch::Sender<LinkStatus>,
    requests: &mut mpsc::Receiver<Request>,
    next_id: &mut u64,
) -> IpcError {
    let mut ping_timer = tokio::time::interval(PING_EVERY);
    ping_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ping_timer.tick() => {
                match round_trip(&mut conn, WorkerRequest::Ping, None, next_id).await {
                    Ok(WorkerResponse::Pong(pong)) => status.send_modify(|s| {
                        s.last_pong = Some(*pong);
                        s.last_pong_at = Some(Instant::now());
                    }),
                    Ok(_) => return IpcError::UnexpectedMessage("answer to Ping was not Pong"),
                    Err(e) => return e,
                }
            }
            // Between requests nothing may arrive: a frame is a protocol
            // error and EOF means the worker died; notice either at once.
            idle = conn.recv::<Envelope<WorkerResponse>>() => {
                return match idle {
                    Ok(Some(_)) => IpcError::UnexpectedMessage("unsolicited frame from worker"),
                    Ok(None) => IpcError::Closed,
                    Err(e) => e,
                };
            }
            Some((request, traceparent, reply)) = requests.recv() => {
                match round_trip(&mut conn, request, traceparent, next_id).await {
                    Ok(response) => { let _ = reply.send(Ok(response)); }
                    Err(e) => {
                        let _ = reply.send(Err(LinkError::NotConnected(params.role)));
                        return e;
                    }
                }
            }
        }
    }
}

async fn round_trip(
    conn: &mut Connection<Stream>,
    body: WorkerRequest,
    traceparent: Option<String>,
    next_id: &mut u64,
) -> Result<WorkerResponse, IpcError> {
    *next_id = next_id.wrapping_add(1);
    let request_id = *next_id;
    conn.send(&Envelope {
        request_id,
        traceparent,
        body,
    })
    .await?;
    let response: Envelope<WorkerResponse> = conn.recv_timeout(REQUEST_TIMEOUT).await?;
    if response.request_id != request_id {
        return Err(IpcError::UnexpectedMessage(
            "response id does not match request",
        ));
    }
    Ok(response.body)
}
