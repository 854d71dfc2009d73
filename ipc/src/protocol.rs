//! Wire types of every Revaer IPC conversation, free of any I/O.
//!
//! Two kinds of channel exist (DESIGN §1–2):
//! - the **control channel**, a socketpair the supervisor hands each worker at
//!   spawn (as the worker's stdin): [`SupervisorToWorker`] / [`WorkerToSupervisor`];
//! - **data channels**, named Unix sockets under `<data>/run/` that the engine
//!   and `FsOps` listen on and the API connects to: a handshake
//!   ([`ServerHello`], [`ClientHello`], [`HandshakeOutcome`]) followed by
//!   [`Envelope`]-wrapped [`WorkerRequest`] / [`WorkerResponse`] pairs.
//!
//! Adding a variant at the end of an enum is a protocol change: bump
//! [`PROTOCOL_VERSION`]. Peers of different versions refuse each other at the
//! handshake rather than misreading frames.

use std::path::PathBuf;

use revaer_config::Config;
use serde::{Deserialize, Serialize};

use crate::secret::BootSecret;

/// Version of this protocol. Both ends of every channel must agree exactly.
pub const PROTOCOL_VERSION: u16 = 6;

/// Which process is speaking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Role {
    Supervisor,
    Api,
    Engine,
    Fsops,
}

impl Role {
    /// The three supervised workers, in start order.
    pub const WORKERS: [Role; 3] = [Role::Engine, Role::Fsops, Role::Api];

    /// Stable lower-case name used in logs, metrics labels and JSON.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Supervisor => "supervisor",
            Role::Api => "api",
            Role::Engine => "engine",
            Role::Fsops => "fsops",
        }
    }

    /// The executable name of this role's process.
    #[must_use]
    pub fn binary_name(self) -> &'static str {
        match self {
            Role::Supervisor => "revaerd",
            Role::Api => "revaer-api",
            Role::Engine => "revaer-engine",
            Role::Fsops => "revaer-fsops",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

// ---------------------------------------------------------------------------
// Control channel
// ---------------------------------------------------------------------------

/// First frame on every control channel: everything a worker needs to start.
/// The boot secret travels only here, never on a command line or in a file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerInit {
    pub protocol_version: u16,
    pub build_id: String,
    pub role: Role,
    pub secret: BootSecret,
    pub data_dir: PathBuf,
    pub config_revision: u64,
    pub config: Config,
}

/// Frames the supervisor sends down a control channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SupervisorToWorker {
    /// Always the first frame.
    Init(Box<WorkerInit>),
    /// A new validated configuration; answered by [`WorkerToSupervisor::ConfigApplied`].
    ConfigUpdate { revision: u64, config: Box<Config> },
    /// Stop taking work, persist state, exit 0.
    Shutdown,
    /// API only: the supervisor's full view of workers and config, sent on
    /// every change (worker start, ready, exit, config status).
    Supervision(Box<SupervisionSnapshot>),
    /// API only: outcome of `StoreBootstrapKey` (the key is on disk under
    /// its pending name, not yet where users look); `Err` carries the reason.
    BootstrapKeyStored(Result<PathBuf, String>),
    /// API only: outcome of `PublishBootstrapKey`: the path the key now has,
    /// `None` when no pending key existed; `Err` carries the reason.
    BootstrapKeyPublished(Result<Option<PathBuf>, String>),
}

/// Frames a worker sends up its control channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WorkerToSupervisor {
    /// Answer to `Init` once the sandbox is applied and the worker serves.
    /// This completes the control-channel handshake.
    Ready(Box<WorkerReady>),
    /// A configuration revision was applied.
    ConfigApplied { revision: u64 },
    /// API only: the HTTP listener is bound (actual address, after port 0).
    ApiListening { addr: String },
    /// API only: no admin key exists yet; write this one to
    /// `<data>/bootstrap-admin.key.pending` (the API's sandbox cannot reach
    /// the data-dir root). Answered by [`SupervisorToWorker::BootstrapKeyStored`].
    StoreBootstrapKey { key: MaskedSecret },
    /// API only: the pending key now works (it is registered); move it to
    /// `<data>/bootstrap-admin.key`, where users read it. Sent after every
    /// API start that finds an admin key, so a crash between registering
    /// and publishing is finished by the next start. Answered by
    /// [`SupervisorToWorker::BootstrapKeyPublished`].
    PublishBootstrapKey,
}

/// A secret that crosses IPC but must never reach a log: its `Debug` is
/// masked.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaskedSecret(pub String);

impl std::fmt::Debug for MaskedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MaskedSecret(***)")
    }
}

/// Contents of [`WorkerToSupervisor::Ready`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerReady {
    pub protocol_version: u16,
    pub build_id: String,
    pub role: Role,
    pub pid: u32,
    pub sandbox: SandboxReport,
}

/// What the supervisor knows; the API turns it into `/health/full`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SupervisionSnapshot {
    pub supervisor_pid: u32,
    pub workers: Vec<WorkerStatus>,
    pub config: ConfigStatus,
}

/// One worker as the supervisor sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerStatus {
    pub role: Role,
    pub state: WorkerState,
    /// Current process id while a process exists.
    pub pid: Option<u32>,
    /// Restarts since the supervisor started.
    pub restarts: u32,
    pub last_exit: Option<WorkerExit>,
    /// Sandbox reported by the current process (after `Ready`).
    pub sandbox: Option<SandboxReport>,
}

/// Life-cycle state of a supervised worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WorkerState {
    /// Spawned, handshake not yet complete.
    Starting,
    /// Handshake done; serving.
    Running,
    /// Exited; will be restarted after the delay.
    Restarting { delay_ms: u64 },
    /// Stopped on purpose (shutdown).
    Stopped,
}

/// How and when a worker process ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerExit {
    pub pid: u32,
    pub code: Option<i32>,
    pub signal: Option<i32>,
    /// Human-readable, e.g. "killed by SIGKILL".
    pub reason: String,
    pub at_unix_ms: u64,
    /// Delay before the restart, when one is scheduled.
    pub restart_delay_ms: Option<u64>,
}

/// State of the config file watcher.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ConfigStatus {
    /// Revision of the config in force; bumps on each accepted change.
    pub revision: u64,
    /// Why the latest edit was refused, while it is refused.
    pub error: Option<String>,
    /// Time from the file's modification to the new config being pushed.
    pub watch_latency_ms: Option<u64>,
    /// Refused edits and watcher failures since start.
    pub failures: u64,
}

/// What sandbox a process actually got (not what it asked for).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SandboxReport {
    pub no_new_privs: bool,
    /// Landlock ABI version the kernel offered, if any.
    pub landlock_abi: Option<u8>,
    /// `fully_enforced`, `partially_enforced`, `not_enforced` or an error.
    pub landlock_status: String,
    pub seccomp: bool,
    /// Syscall names the seccomp filter refuses.
    pub seccomp_denied: Vec<String>,
    /// Capabilities left in the effective set (empty when all dropped).
    pub capabilities: Vec<String>,
    pub uid: u32,
    pub gid: u32,
    pub umask: u32,
    pub core_dumps: bool,
    /// Inherited file descriptors closed at start.
    pub inherited_fds_closed: u32,
}

// ---------------------------------------------------------------------------
// Data channels
// ---------------------------------------------------------------------------

/// First frame a data-channel server sends: who it is, and a fresh nonce the
/// client must prove knowledge of the boot secret against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerHello {
    pub protocol_version: u16,
    pub build_id: String,
    pub role: Role,
    pub nonce: [u8; 32],
}

/// Client's answer to [`ServerHello`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientHello {
    pub protocol_version: u16,
    pub build_id: String,
    pub role: Role,
    /// `HMAC-SHA256(secret, domain || nonce || client role)`.
    pub proof: [u8; 32],
}

/// Server's verdict; after `Rejected` the server closes the connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HandshakeOutcome {
    Accepted,
    Rejected { reason: String },
}

/// Wraps every request and response on a data channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope<T> {
    /// Chosen by the requester; echoed in the response.
    pub request_id: u64,
    /// W3C trace context (`traceparent` header value), when tracing.
    pub traceparent: Option<String>,
    pub body: T,
}

/// Requests the API sends to the engine or `FsOps`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WorkerRequest {
    Ping,
    /// Test-only sandbox probe. Workers built without the `test-probes`
    /// feature answer [`WorkerResponse::Error`] with [`ErrorKind::Unsupported`].
    Probe(Probe),
    /// Engine commands (answered only by the engine).
    Engine(crate::engine::EngineRequest),
    /// The worker's own Prometheus registry, answered by
    /// [`WorkerResponse::Metrics`].
    Metrics,
    /// FsOps jobs (answered only by FsOps, with a stream of
    /// [`WorkerResponse::Fsops`] frames).
    Fsops(crate::fsops::FsopsRequest),
}

/// Sandbox probes: try something the sandbox must refuse.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Probe {
    /// Create (or truncate) a file for writing.
    WriteFile { path: PathBuf },
    /// Open an existing file for reading.
    ReadFile { path: PathBuf },
    /// Create an `AF_INET` TCP socket.
    InetSocket,
    /// Call `ptrace(PTRACE_TRACEME)`-style forbidden syscall (`unshare`).
    Unshare,
}

/// Responses from the engine or `FsOps`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WorkerResponse {
    Pong(Box<Pong>),
    Probe(ProbeOutcome),
    Error(RemoteError),
    Engine(crate::engine::EngineResponse),
    /// Pushed on a subscribed engine connection.
    Event(crate::engine::EngineEvent),
    /// Answer to [`WorkerRequest::Metrics`]: Prometheus text exposition
    /// (format 0.0.4) whose metric names all start with the worker's prefix
    /// ([`metrics_prefix`]), at most [`MAX_METRICS_BYTES`] long (see
    /// [`bound_metrics_text`]).
    Metrics(String),
    /// Progress of a job started with [`WorkerRequest::Fsops`].
    Fsops(crate::fsops::FsopsProgress),
}

/// Largest metrics text a worker sends in [`WorkerResponse::Metrics`].
pub const MAX_METRICS_BYTES: usize = 4 * 1024 * 1024;

/// The prefix every metric name a worker exposes must carry, so worker
/// families never collide with the API's or each other's.
#[must_use]
pub fn metrics_prefix(role: Role) -> &'static str {
    match role {
        Role::Supervisor => "revaer_supervisor_",
        Role::Api => "revaer_api_",
        Role::Engine => "revaer_engine_",
        Role::Fsops => "revaer_fsops_",
    }
}

/// Cuts exposition text to at most [`MAX_METRICS_BYTES`], at the end of a
/// whole line, so an oversized registry still yields parseable text.
#[must_use]
pub fn bound_metrics_text(text: String) -> String {
    bound_lines(text, MAX_METRICS_BYTES)
}

fn bound_lines(mut text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    // `\n` is ASCII, so the byte after it is always a char boundary.
    let keep = text.as_bytes()[..max]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |newline| newline + 1);
    text.truncate(keep);
    text
}

/// Answer to [`WorkerRequest::Ping`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pong {
    pub role: Role,
    pub pid: u32,
    pub uptime_ms: u64,
    pub config_revision: u64,
    pub sandbox: SandboxReport,
    /// The worker runs but cannot do its job fully, and why (e.g. the
    /// engine's bound network interface is missing). `None` when fine.
    pub degraded: Option<String>,
}

/// Result of a [`Probe`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProbeOutcome {
    Allowed,
    Denied { errno: i32, message: String },
}

/// A typed error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteError {
    pub kind: ErrorKind,
    pub message: String,
}

/// Classes of remote error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorKind {
    Unsupported,
    Invalid,
    Internal,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{decode, encode};

    #[test]
    fn metrics_request_and_response_round_trip_in_envelopes() {
        let request = Envelope {
            request_id: 7,
            traceparent: None,
            body: WorkerRequest::Metrics,
        };
        let decoded: Envelope<WorkerRequest> = decode(&encode(&request).unwrap()).unwrap();
        assert_eq!(decoded, request);

        let text = "# HELP revaer_engine_x An x.\n# TYPE revaer_engine_x gauge\nrevaer_engine_x{state=\"a\\\"b\"} 3\n";
        let response = Envelope {
            request_id: 7,
            traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".to_owned()),
            body: WorkerResponse::Metrics(text.to_owned()),
        };
        let decoded: Envelope<WorkerResponse> = decode(&encode(&response).unwrap()).unwrap();
        assert_eq!(decoded, response);
        assert_ne!(
            decode::<WorkerResponse>(&encode(&WorkerResponse::Metrics(String::new())).unwrap())
                .unwrap(),
            WorkerResponse::Metrics("x".to_owned())
        );
    }

    #[test]
    fn the_largest_allowed_metrics_text_fits_in_a_frame() {
        let text = "a".repeat(MAX_METRICS_BYTES);
        let bytes = encode(&WorkerResponse::Metrics(text)).unwrap();
        assert!(bytes.len() <= crate::frame::MAX_FRAME_BYTES);
    }

    #[test]
    fn oversized_metrics_text_is_cut_at_a_line_end() {
        assert_eq!(bound_lines("ab\ncd\n".to_owned(), 6), "ab\ncd\n");
        assert_eq!(bound_lines("ab\ncd\nef\n".to_owned(), 7), "ab\ncd\n");
        assert_eq!(bound_lines("ab\ncd\nef\n".to_owned(), 5), "ab\n");
        assert_eq!(bound_lines("abcdef".to_owned(), 3), "");
        // Never splits a multi-byte character.
        assert_eq!(bound_lines("é\néé\n".to_owned(), 5), "é\n");
        let small = "x 1\n".to_owned();
        assert_eq!(bound_metrics_text(small.clone()), small);
        let big = "revaer_engine_x 1\n".repeat(MAX_METRICS_BYTES / 10);
        let bounded = bound_metrics_text(big);
        assert!(bounded.len() <= MAX_METRICS_BYTES);
        assert!(bounded.ends_with('\n'));
    }

    #[test]
    fn worker_prefixes_are_distinct() {
        let mut all: Vec<_> = [Role::Supervisor, Role::Api, Role::Engine, Role::Fsops]
            .into_iter()
            .map(metrics_prefix)
            .collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 4);
        assert!(
            all.iter()
                .all(|p| p.starts_with("revaer_") && p.ends_with('_'))
        );
    }
}
