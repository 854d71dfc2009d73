//! The HTTP server loop of the API: binding, moving the listener when
//! `[api] listen` changes, stopping gracefully, and the limits that keep
//! hostile or broken clients from exhausting the process.
//!
//! A new address is bound before the old listener is released, so a config
//! edit naming an unusable address leaves the API reachable where it was.
//! Connections accepted on the old listener are asked to finish (keep-alive
//! off; idle ones close at once) while the new listener already serves.
//!
//! Every limit is a constant below, with the reason for its value; none is
//! configurable. Per connection (hyper's HTTP/1 server, driven here rather
//! than through `axum::serve`, which sets no timer and so no timeout):
//! - a request head must arrive within [`HEADER_READ_TIMEOUT`], counted
//!   from accept or from the end of the previous response, which makes it
//!   the idle keep-alive timeout too (slowloris, idle floods);
//! - a request head larger than [`MAX_HEADER_BYTES`] is answered `431` and
//!   the connection closed;
//! - a request body, once a handler reads it, must keep up
//!   [`MIN_BODY_BYTES_PER_SEC`] on average after [`BODY_RATE_GRACE`], or
//!   the request is answered `408` and the connection closed (the route
//!   stack's 30 s request timeout alone would let 512 trickled bodies hold
//!   every request slot for 30 s each).
//!
//! Across connections, at most [`MAX_CONNECTIONS`] are open (fewer when
//! `RLIMIT_NOFILE` cannot be raised far enough). At the cap a new
//! connection takes the place of the oldest one that has not sent a single
//! byte yet, which is closed; when every open connection has spoken, the
//! new one gets a `503` and is closed. So a flood of silent connections
//! cannot lock legitimate clients out, and a flood of slow ones is bounded
//! by the cap and the header timeout. The figures are in `/metrics`:
//! `revaer_http_connections_open`, `revaer_http_connections_rejected_total`,
//! `revaer_http_connections_evicted_total`.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, Request, StatusCode, header};
use axum::response::Response;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus::{IntCounter, IntGauge};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{Notify, mpsc, watch};
use tokio::time::{Instant, Sleep};
use tower::ServiceExt as _;

use crate::metrics::Metrics;
use crate::problem::problem_response;

/// Most connections open at once. An idle connection costs a task and a
/// few KiB of buffers, so 4096 bound the memory they can pin to tens of
/// MiB, while a single-user daemon's clients (CLI, web UI, *arr apps,
/// dashboards with SSE) need a few dozen.
pub const MAX_CONNECTIONS: usize = 4096;
/// File descriptors kept for everything but client connections (`SQLite`,
/// IPC sockets, the listener, logs) when [`MAX_CONNECTIONS`] is fitted to
/// `RLIMIT_NOFILE`.
pub const FD_RESERVE: usize = 256;
/// Longest a client may take to send a whole request head: from accept on
/// a new connection, from the end of the previous response on a kept-alive
/// one (so also the idle keep-alive timeout). A client on any real network
/// sends a head in well under a second; 10 s leaves room for a stalled
/// phone link while bounding how long a slowloris connection lives.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request head (request line and headers). Revaer's requests
/// carry a key and a few standard headers (< 2 KiB); 32 KiB is what common
/// servers allow (nginx: 4 × 8 KiB) for browsers with large cookies.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;
/// Slowest average request body accepted once [`BODY_RATE_GRACE`] has
/// passed. Any client not trickling on purpose is orders of magnitude
/// faster; Kestrel's default for the same guard is 240 B/s.
pub const MIN_BODY_BYTES_PER_SEC: u64 = 1024;
/// Time a request body may take before [`MIN_BODY_BYTES_PER_SEC`] applies
/// (a slow start, a client computing its multipart form).
pub const BODY_RATE_GRACE: Duration = Duration::from_secs(5);
/// Pause after an accept error that is not about one connection (out of
/// file descriptors or memory): short enough to resume quickly, long
/// enough not to spin.
pub const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);
/// Pending connections the kernel queues until accepted (capped by
/// `net.core.somaxconn`). Tokio's default of 1024 overflowed when 1,000
/// SSE clients reconnected at once (`just bench-hostile`): the dropped
/// SYNs were retried a second later. One cap's worth absorbs such a burst.
pub const LISTEN_BACKLOG: u32 = 4096;
/// Least time between two warnings that the connection cap was reached.
const FULL_WARNING_INTERVAL: Duration = Duration::from_secs(10);

/// The limits one server applies (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub max_header_bytes: usize,
    pub min_body_bytes_per_sec: u64,
    pub body_rate_grace: Duration,
}

impl Limits {
    /// The constants above.
    pub const DEFAULT: Self = Self {
        max_connections: MAX_CONNECTIONS,
        header_read_timeout: HEADER_READ_TIMEOUT,
        max_header_bytes: MAX_HEADER_BYTES,
        min_body_bytes_per_sec: MIN_BODY_BYTES_PER_SEC,
        body_rate_grace: BODY_RATE_GRACE,
    };
}

/// Serves `router` on the address in `listen` with [`Limits::DEFAULT`]
/// (the connection cap fitted to `RLIMIT_NOFILE`), re-binding when it
/// changes, until `shutdown` flips to true; then waits for the open
/// connections to finish. Each successful bind is reported on `bound`.
pub async fn serve(
    router: Router,
    listen: watch::Receiver<SocketAddr>,
    shutdown: watch::Receiver<bool>,
    bound: mpsc::UnboundedSender<SocketAddr>,
    metrics: &Metrics,
) -> io::Result<()> {
    let limits = Limits {
        max_connections: fit_to_fd_limit(MAX_CONNECTIONS),
        ..Limits::DEFAULT
    };
    serve_with(router, listen, shutdown, bound, metrics, limits).await
}

/// [`serve`] with explicit `limits` (tests use small ones).
pub async fn serve_with(
    router: Router,
    mut listen: watch::Receiver<SocketAddr>,
    mut shutdown: watch::Receiver<bool>,
    bound: mpsc::UnboundedSender<SocketAddr>,
    metrics: &Metrics,
    limits: Limits,
) -> io::Result<()> {
    let server = Server::new(router, metrics, limits);
    // Every connection task holds a clone of `drain_rx`; the final stop
    // waits until all are gone.
    let (drain_tx, drain_rx) = watch::channel(());
    let mut addr = *listen.borrow_and_update();
    let mut listener = bind(addr)?;
    let mut last_full_warning: Option<std::time::Instant> = None;
    loop {
        let local = listener.local_addr()?;
        tracing::info!(%local, max_connections = limits.max_connections, "HTTP API listening");
        let _ = bound.send(local);
        // Tells this listener's connections to finish.
        let (stop_tx, stop_rx) = watch::channel(false);
        let next = loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        if !server.admit(stream, peer, &stop_rx, &drain_rx)
                            && last_full_warning.is_none_or(|at| at.elapsed() >= FULL_WARNING_INTERVAL)
                        {
                            last_full_warning = Some(std::time::Instant::now());
                            tracing::warn!(
                                max_connections = limits.max_connections,
                                "HTTP connection cap reached and every open connection is active; refusing new ones (503)"
                            );
                        }
                    }
                    Err(e) if is_connection_error(&e) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "accepting an HTTP connection failed; pausing accepts");
                        tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                    }
                },
                Ok(()) = listen.changed() => {
                    let wanted = *listen.borrow_and_update();
                    if wanted == addr { continue; }
                    match bind(wanted) {
                        Ok(new_listener) => { addr = wanted; break Some(new_listener); }
                        Err(e) => tracing::error!(%wanted, error = %e, "cannot bind the new API address; staying on the old one"),
                    }
                }
                Ok(()) = shutdown.changed() => if *shutdown.borrow() { break None },
            }
        };
        let _ = stop_tx.send(true);
        match next {
            Some(new_listener) => listener = new_listener,
            None => break,
        }
    }
    drop(listener);
    drop(drain_rx);
    drain_tx.closed().await;
    Ok(())
}

/// A listener on `addr` with [`LISTEN_BACKLOG`] (and `SO_REUSEADDR`, as
/// `TcpListener::bind` sets it).
fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Errors about one connection (the client gave up before accept).
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Raises the soft `RLIMIT_NOFILE` (never above the hard limit) so that
/// `wanted` connections fit beside [`FD_RESERVE`]; returns how many fit.
fn fit_to_fd_limit(wanted: usize) -> usize {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let need = u64::try_from(wanted.saturating_add(FD_RESERVE)).unwrap_or(u64::MAX);
    let Ok((mut soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return wanted;
    };
    if soft < need {
        let target = need.min(hard);
        match setrlimit(Resource::RLIMIT_NOFILE, target, hard) {
            Ok(()) => soft = target,
            Err(e) => tracing::warn!(error = %e, "cannot raise RLIMIT_NOFILE"),
        }
    }
    let fit = usize::try_from(soft)
        .unwrap_or(usize::MAX)
        .saturating_sub(FD_RESERVE)
        .max(1);
    if fit < wanted {
        tracing::warn!(
            fit,
            wanted,
            "RLIMIT_NOFILE is too low for the default connection cap; lowering the cap"
        );
    }
    wanted.min(fit)
}

/// State shared by the accept loop and the connection tasks.
#[derive(Debug)]
struct Server {
    router: Router,
    builder: http1::Builder,
    table: Arc<Table>,
    metrics: ConnMetrics,
    rate: BodyRate,
}

impl Server {
    fn new(router: Router, metrics: &Metrics, limits: Limits) -> Self {
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .max_header_size(limits.max_header_bytes);
        Self {
            router,
            builder,
            table: Arc::new(Table::new(limits.max_connections)),
            metrics: ConnMetrics::new(metrics),
            rate: BodyRate {
                bytes_per_sec: limits.min_body_bytes_per_sec.max(1),
                grace: limits.body_rate_grace,
            },
        }
    }

    /// Takes `stream` into a connection task, or refuses it with a `503`
    /// when the cap is reached and no silent connection can make room.
    /// Returns false when refused.
    fn admit(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        stop: &watch::Receiver<bool>,
        drain: &watch::Receiver<()>,
    ) -> bool {
        let slot = match self.table.admit() {
            Admission::Admitted(slot) => slot,
            Admission::Evicted(slot) => {
                self.metrics.evicted();
                slot
            }
            Admission::Full => {
                self.metrics.rejected();
                // Best effort, never waits: a fresh socket's send buffer
                // takes these few bytes.
                let _ = stream.try_write(FULL_RESPONSE.as_bytes());
                return false;
            }
        };
        let shared = Arc::clone(&slot.shared);
        let io = TokioIo::new(TrackedStream {
            stream,
            slot,
            spoke: false,
        });
        let router = self.router.clone();
        let rate = self.rate;
        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
            let router = router.clone();
            async move { Ok::<_, Infallible>(handle(router, peer, rate, request).await) }
        });
        let conn = self.builder.serve_connection(io, service);
        let mut stop = stop.clone();
        let drain = drain.clone();
        let open = self.metrics.opened();
        tokio::spawn(async move {
            let _drain = drain;
            let _open = open;
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(%peer, error = %e, "HTTP connection ended with an error");
                    }
                    return;
                }
                () = stop_or_evicted(&mut stop, &shared) => conn.as_mut().graceful_shutdown(),
            }
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "HTTP connection ended with an error");
            }
        });
        true
    }
}

/// Resolves when the connection's listener stops or the connection was
/// evicted to make room.
async fn stop_or_evicted(stop: &mut watch::Receiver<bool>, shared: &SlotShared) {
    tokio::select! {
        _ = stop.wait_for(|&stopped| stopped) => {}
        () = shared.evict.notified() => {}
    }
}

/// Answer to a connection refused at the cap.
static FULL_RESPONSE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let body = r#"{"type":"about:blank","title":"Service Unavailable","status":503,"detail":"too many open connections; retry later"}"#;
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/problem+json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
});

/// Runs one request through the router, with the peer address as
/// [`ConnectInfo`] and the body under the minimum-rate guard.
async fn handle(
    router: Router,
    peer: SocketAddr,
    rate: BodyRate,
    request: Request<Incoming>,
) -> Response {
    let too_slow = Arc::new(AtomicBool::new(false));
    let mut request =
        request.map(|body| Body::new(MinRateBody::new(body, rate, Arc::clone(&too_slow))));
    request.extensions_mut().insert(ConnectInfo(peer));
    let response = match router.oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    if too_slow.load(Ordering::Acquire) {
        let mut response = problem_response(
            StatusCode::REQUEST_TIMEOUT,
            Some(format!(
                "the request body arrived slower than {} bytes/s",
                rate.bytes_per_sec
            )),
        );
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return response;
    }
    response
}

// ---------------------------------------------------------------------------
// Connection cap
// ---------------------------------------------------------------------------

/// Counts open connections against the cap and remembers, oldest first,
/// those that have not sent a byte yet (the ones that may be evicted).
#[derive(Debug)]
struct Table {
    cap: usize,
    state: Mutex<TableState>,
}

#[derive(Debug, Default)]
struct TableState {
    next_id: u64,
    /// Connections counted against the cap.
    open: usize,
    /// Silent connections by admission order.
    silent: BTreeMap<u64, Arc<SlotShared>>,
}

/// What a connection task and the table share.
#[derive(Debug, Default)]
struct SlotShared {
    /// Woken when the connection is evicted.
    evict: Notify,
    /// Set (under the table lock) when evicted: its place in the count
    /// went to the newcomer.
    evicted: AtomicBool,
}

/// A connection's place in the [`Table`], released on drop.
#[derive(Debug)]
struct Slot {
    id: u64,
    shared: Arc<SlotShared>,
    table: Arc<Table>,
}

#[derive(Debug)]
enum Admission {
    Admitted(Slot),
    /// Admitted in place of the oldest silent connection.
    Evicted(Slot),
    Full,
}

fn lock(state: &Mutex<TableState>) -> MutexGuard<'_, TableState> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Table {
    fn new(cap: usize) -> Self {
        Self {
            cap: cap.max(1),
            state: Mutex::new(TableState::default()),
        }
    }

    fn admit(self: &Arc<Self>) -> Admission {
        let mut state = lock(&self.state);
        let evicted = if state.open < self.cap {
            state.open += 1;
            false
        } else if let Some((_, victim)) = state.silent.pop_first() {
            victim.evicted.store(true, Ordering::Release);
            victim.evict.notify_one();
            true
        } else {
            return Admission::Full;
        };
        let id = state.next_id;
        state.next_id += 1;
        let shared = Arc::new(SlotShared::default());
        state.silent.insert(id, Arc::clone(&shared));
        let slot = Slot {
            id,
            shared,
            table: Arc::clone(self),
        };
        if evicted {
            Admission::Evicted(slot)
        } else {
            Admission::Admitted(slot)
        }
    }

    /// The connection sent its first byte: it can no longer be evicted.
    fn spoke(&self, id: u64) {
        lock(&self.state).silent.remove(&id);
    }

    #[cfg(test)]
    fn open(&self) -> usize {
        lock(&self.state).open
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut state = lock(&self.table.state);
        state.silent.remove(&self.id);
        if !self.shared.evicted.load(Ordering::Acquire) {
            state.open = state.open.saturating_sub(1);
        }
    }
}

/// The accepted socket, holding the connection's [`Slot`] for as long as
/// hyper holds the socket, and telling the table when the first byte
/// arrives.
#[derive(Debug)]
struct TrackedStream {
    stream: TcpStream,
    slot: Slot,
    spoke: bool,
}

impl AsyncRead for TrackedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.stream).poll_read(cx, buf);
        if !this.spoke && matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.spoke = true;
            this.slot.table.spoke(this.slot.id);
        }
        polled
    }
}

impl AsyncWrite for TrackedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

// ---------------------------------------------------------------------------
// Metrics
// ---------------------------------------------------------------------------

/// The connection families, registered in the API's registry.
#[derive(Debug, Clone)]
struct ConnMetrics(Option<ConnFamilies>);

#[derive(Debug, Clone)]
struct ConnFamilies {
    open: IntGauge,
    rejected: IntCounter,
    evicted: IntCounter,
}

impl ConnMetrics {
    fn new(metrics: &Metrics) -> Self {
        let build = || -> Result<ConnFamilies, prometheus::Error> {
            let families = ConnFamilies {
                open: IntGauge::new(
                    "revaer_http_connections_open",
                    "HTTP connections currently open.",
                )?,
                rejected: IntCounter::new(
                    "revaer_http_connections_rejected_total",
                    "HTTP connections refused (503, then closed) because the connection cap was reached and every open connection was active.",
                )?,
                evicted: IntCounter::new(
                    "revaer_http_connections_evicted_total",
                    "Silent HTTP connections (no byte sent yet) closed at the connection cap to make room for a new one.",
                )?,
            };
            metrics.register(Box::new(families.open.clone()))?;
            metrics.register(Box::new(families.rejected.clone()))?;
            metrics.register(Box::new(families.evicted.clone()))?;
            Ok(families)
        };
        match build() {
            Ok(families) => Self(Some(families)),
            Err(e) => {
                tracing::error!(error = %e, "cannot register the HTTP connection metrics");
                Self(None)
            }
        }
    }

    fn rejected(&self) {
        if let Some(f) = &self.0 {
            f.rejected.inc();
        }
    }

    fn evicted(&self) {
        if let Some(f) = &self.0 {
            f.evicted.inc();
        }
    }

    /// Counts one open connection until the guard drops.
    fn opened(&self) -> OpenGuard {
        let gauge = self.0.as_ref().map(|f| f.open.clone());
        if let Some(g) = &gauge {
            g.inc();
        }
        OpenGuard(gauge)
    }
}

/// Keeps `revaer_http_connections_open` one higher while it lives.
#[derive(Debug)]
struct OpenGuard(Option<IntGauge>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        if let Some(g) = &self.0 {
            g.dec();
        }
    }
}

// ---------------------------------------------------------------------------
// Request body minimum rate
// ---------------------------------------------------------------------------

/// The minimum-rate rule of request bodies.
#[derive(Debug, Clone, Copy)]
struct BodyRate {
    bytes_per_sec: u64,
    grace: Duration,
}

impl BodyRate {
    /// How long after the first read `received` bytes are enough.
    fn enough_until(self, received: u64) -> Duration {
        let earned = Duration::from_millis(received.saturating_mul(1000) / self.bytes_per_sec);
        self.grace.max(earned)
    }
}

/// The body is too slow (see [`MIN_BODY_BYTES_PER_SEC`]).
#[derive(Debug, thiserror::Error)]
#[error("the request body arrived slower than {0} bytes/s")]
struct BodyTooSlow(u64);

/// A request body that fails with [`BodyTooSlow`] (and sets `too_slow`)
/// when its average rate since the handler first read it falls below the
/// minimum after the grace period. A body nobody reads is never timed.
#[derive(Debug)]
struct MinRateBody {
    inner: Incoming,
    rate: BodyRate,
    received: u64,
    started: Option<Instant>,
    timer: Option<Pin<Box<Sleep>>>,
    too_slow: Arc<AtomicBool>,
}

impl MinRateBody {
    fn new(inner: Incoming, rate: BodyRate, too_slow: Arc<AtomicBool>) -> Self {
        Self {
            inner,
            rate,
            received: 0,
            started: None,
            timer: None,
            too_slow,
        }
    }
}

impl http_body::Body for MinRateBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        let started = *this.started.get_or_insert_with(Instant::now);
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let len = u64::try_from(data.len()).unwrap_or(u64::MAX);
                    this.received = this.received.saturating_add(len);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(axum::Error::new(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let deadline = started + this.rate.enough_until(this.received);
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if timer.deadline() != deadline {
                    timer.as_mut().reset(deadline);
                }
                if timer.as_mut().poll(cx).is_ready() {
                    this.too_slow.store(true, Ordering::Release);
                    return Poll::Ready(Some(Err(axum::Error::new(BodyTooSlow(
                        this.rate.bytes_per_sec,
                    )))));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
#[path = "server_tests.rs"]
mod tests;
