//! Test-only: the API's full router and state, wired to a scripted engine
//! served over a real Unix socket (real handshake, codec and links), so
//! route tests exercise everything but libtorrent. End-to-end tests with
//! the real engine live in `supervisor/tests/`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use revaer_config::Config;
use revaer_ipc::engine::{
    EngineError, EngineErrorKind, EngineEvent, EngineRequest, EngineResponse, FileDetail,
    PeerDetail, TorrentDetail, TorrentId, TorrentSource, TorrentState, TorrentSummary,
    TrackerDetail, TrackerStatus,
};
use revaer_ipc::fsops::{FsopsJob, FsopsProgress, FsopsRequest, FsopsStep, StepOutcome};
use revaer_ipc::{BootSecret, Role, SandboxReport};
use revaer_worker_bootstrap::data_server::{Service, Subscription, spawn_data_server};
use serde_json::Value;
use sha2::Digest;
use tokio::sync::{broadcast, watch};
use tower::ServiceExt;

use crate::engine_events::EngineEvents;
use crate::event_log::EventLog;
use crate::fsops_dispatch::FsopsDispatcher;
use crate::links::{LinkParams, WorkerLink};
use crate::read_model::ReadModel;
use crate::store::Store;
use crate::store::keys::{Keys, Scope};
use crate::{AppParts, AppState, routes};

/// Files every scripted `.torrent` has.
pub const FILES: [&str; 3] = ["show/e01.mkv", "show/e02.mkv", "show/info.nfo"];

/// A scripted engine: keeps torrents in memory and emits the events the
/// real one would.
#[derive(Debug)]
pub struct FakeEngine {
    torrents: Mutex<BTreeMap<TorrentId, TorrentDetail>>,
    events: broadcast::Sender<EngineEvent>,
    pub requests: Mutex<Vec<EngineRequest>>,
}

impl FakeEngine {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            torrents: Mutex::new(BTreeMap::new()),
            events: broadcast::channel(1024).0,
            requests: Mutex::new(Vec::new()),
        })
    }

    /// Emits an event as the engine would.
    pub fn emit(&self, event: EngineEvent) {
        let _ = self.events.send(event);
    }

    /// Current priorities of a torrent's files.
    pub fn priorities(&self, id: TorrentId) -> Vec<u8> {
        self.torrents.lock().unwrap()[&id]
            .files
            .iter()
            .map(|f| f.priority)
            .collect()
    }

    fn summary(id: TorrentId, name: &str, paused: bool, has_metadata: bool) -> TorrentSummary {
        TorrentSummary {
            id,
            name: name.to_owned(),
            state: if paused {
                TorrentState::Paused
            } else if has_metadata {
                TorrentState::Downloading
            } else {
                TorrentState::DownloadingMetadata
            },
            progress_ppm: 0,
            download_bps: 0,
            upload_bps: 0,
            peers: 0,
            seeds: 0,
            total_wanted: 300,
            total_done: 0,
            downloaded: 0,
            uploaded: 0,
            paused,
            sequential: false,
            has_metadata,
            error: None,
            stalled_reason: None,
        }
    }

    fn add(&self, source: &TorrentSource, paused: bool) -> EngineResponse {
        let (id, name, has_metadata) = match source {
            TorrentSource::Magnet(uri) => {
                let Some(hex) = uri.split("btih:").nth(1).map(|h| &h[..h.len().min(40)]) else {
                    return error(EngineErrorKind::Invalid, "not a magnet link");
                };
                let Ok(id) = hex.parse::<TorrentId>() else {
                    return error(EngineErrorKind::Invalid, "bad info-hash");
                };
                (id, format!("magnet {hex}"), false)
            }
            TorrentSource::TorrentFile(bytes) => {
                if !bytes.starts_with(b"d") {
                    return error(EngineErrorKind::Invalid, "not a bencoded dictionary");
                }
                let digest = sha2::Sha256::digest(bytes);
                let mut id = [0_u8; 20];
                id.copy_from_slice(&digest[..20]);
                (
                    TorrentId(id),
                    String::from_utf8_lossy(&bytes[1..bytes.len().min(20)]).into_owned(),
                    true,
                )
            }
        };
        let mut torrents = self.torrents.lock().unwrap();
        if torrents.contains_key(&id) {
            return error(EngineErrorKind::Duplicate, "already present");
        }
        let files = if has_metadata {
            FILES
                .iter()
                .zip(0_u32..)
                .map(|(path, index)| FileDetail {
                    index,
                    path: (*path).to_owned(),
                    size: 100,
                    priority: 4,
                    done: 0,
                })
                .collect()
        } else {
            Vec::new()
        };
        let summary = Self::summary(id, &name, paused, has_metadata);
        let total_files = u32::try_from(files.len()).unwrap();
        torrents.insert(
            id,
            TorrentDetail {
                summary: summary.clone(),
                files,
                total_files,
                save_subdir: None,
                trackers: vec![TrackerDetail {
                    url: "http://tracker.example.org:6969/announce".to_owned(),
                    status: TrackerStatus::Working,
                    message: None,
                    peers: Some(3),
                    tier: 0,
                    next_announce_secs: Some(1800),
                    last_error: None,
                    fails: 0,
                    seeders: Some(1),
                    leechers: Some(2),
                }],
                piece_length: 16384,
                private: false,
                download_limit: None,
                upload_limit: None,
            },
        );
        drop(torrents);
        self.emit(EngineEvent::Added(Box::new(summary)));
        EngineResponse::Added { id }
    }

    fn with(&self, id: TorrentId, change: impl FnOnce(&mut TorrentDetail)) -> EngineResponse {
        let mut torrents = self.torrents.lock().unwrap();
        match torrents.get_mut(&id) {
            Some(detail) => {
                change(detail);
                EngineResponse::Done
            }
            None => error(EngineErrorKind::NotFound, "no such torrent"),
        }
    }

    fn set_paused(&self, id: TorrentId, paused: bool) -> EngineResponse {
        let response = self.with(id, |d| {
            d.summary.paused = paused;
            d.summary.state = if paused {
                TorrentState::Paused
            } else {
                TorrentState::Downloading
            };
        });
        if response == EngineResponse::Done {
            let state = if paused {
                TorrentState::Paused
            } else {
                TorrentState::Downloading
            };
            self.emit(EngineEvent::StateChanged { id, state });
        }
        response
    }
}

fn error(kind: EngineErrorKind, message: &str) -> EngineResponse {
    EngineResponse::Error(EngineError {
        kind,
        message: message.to_owned(),
    })
}

impl Service for FakeEngine {
    async fn handle(&self, request: EngineRequest, _traceparent: Option<String>) -> EngineResponse {
        self.requests.lock().unwrap().push(request.clone());
        match request {
            EngineRequest::Add(add) => self.add(&add.source, add.paused),
            EngineRequest::Remove { id, .. } => {
                if self.torrents.lock().unwrap().remove(&id).is_some() {
                    self.emit(EngineEvent::Removed { id });
                    EngineResponse::Done
                } else {
                    error(EngineErrorKind::NotFound, "no such torrent")
                }
            }
            EngineRequest::Pause { id } => self.set_paused(id, true),
            EngineRequest::Resume { id } => self.set_paused(id, false),
            EngineRequest::SelectFiles { id, priorities } => {
                let response = self.with(id, |d| {
                    for (file, p) in d.files.iter_mut().zip(&priorities) {
                        file.priority = *p;
                    }
                });
                if response == EngineResponse::Done {
                    self.emit(EngineEvent::FilesSelected { id, priorities });
                }
                response
            }
            EngineRequest::SetSequential { id, enabled } => {
                self.with(id, |d| d.summary.sequential = enabled)
            }
            EngineRequest::SetTorrentRate {
                id,
                download,
                upload,
            } => self.with(id, |d| {
                d.download_limit = download;
                d.upload_limit = upload;
            }),
            EngineRequest::Reannounce { id } | EngineRequest::Recheck { id } => {
                self.with(id, |_| {})
            }
            EngineRequest::Detail { id } => match self.torrents.lock().unwrap().get(&id) {
                Some(d) => EngineResponse::Detail(Box::new(d.clone())),
                None => error(EngineErrorKind::NotFound, "no such torrent"),
            },
            EngineRequest::List => EngineResponse::List(
                self.torrents
                    .lock()
                    .unwrap()
                    .values()
                    .map(|d| d.summary.clone())
                    .collect(),
            ),
            EngineRequest::Peers { id } => {
                if self.torrents.lock().unwrap().contains_key(&id) {
                    EngineResponse::Peers(vec![PeerDetail {
                        addr: "[2001:db8::7]:51413".parse().unwrap(),
                        client: "Transmission 3.00".to_owned(),
                        seed: true,
                        interested: true,
                        choked: false,
                        remote_interested: false,
                        remote_choked: true,
                        encrypted: true,
                        utp: false,
                        outgoing: true,
                        progress_ppm: 1_000_000,
                        download_bps: 4096,
                        upload_bps: 0,
                        downloaded: 1 << 20,
                        uploaded: 0,
                    }])
                } else {
                    error(EngineErrorKind::NotFound, "no such torrent")
                }
            }
            _ => error(EngineErrorKind::Invalid, "not scripted"),
        }
    }

    fn subscribe(&self) -> Option<Subscription> {
        let events = self.events.subscribe();
        let snapshot = self
            .torrents
            .lock()
            .unwrap()
            .values()
            .map(|d| d.summary.clone())
            .collect();
        Some(Subscription {
            snapshot,
            backlog: Vec::new(),
            events,
        })
    }

    async fn apply_config(&self, _config: &Config) {}

    async fn shutdown(&self) {}

    fn metrics(&self) -> String {
        String::new()
    }
}

/// The API wired to a [`FakeEngine`].
#[allow(missing_debug_implementations, reason = "test fixture")]
pub struct Harness {
    pub router: Router,
    pub state: Arc<AppState>,
    pub engine: Arc<FakeEngine>,
    pub admin_key: String,
    pub read_key: String,
    kill: Mutex<Option<Served>>,
    supervision: watch::Sender<Option<revaer_ipc::SupervisionSnapshot>>,
    pub fsops: Arc<FakeFsops>,
    fsops_socket: std::path::PathBuf,
    secret: BootSecret,
    kill_fsops: Mutex<Option<Served>>,
    _dir: tempfile::TempDir,
}

impl Harness {
    /// Starts the scripted engine and the API state; returns once the read
    /// model follows the engine.
    pub async fn start() -> Self {
        Self::start_with(1_000_000).await
    }

    /// Like [`Harness::start`] with a default rate limit per key.
    pub async fn start_with(default_rate_per_minute: u32) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("engine.sock");
        let secret = BootSecret::from_bytes([9; 32]);
        let engine = FakeEngine::new();
        // The engine runs on its own runtime so "killing" it drops every
        // connection task and closes every socket, as a dead process would.
        let kill = serve_on_own_runtime(&socket, Role::Engine, &secret, Arc::clone(&engine));
        let fsops_service = FakeFsops::new();
        let fsops_socket = dir.path().join("fsops.sock");
        let kill_fsops = serve_on_own_runtime(
            &fsops_socket,
            Role::Fsops,
            &secret,
            Arc::clone(&fsops_service),
        );
        let uid = nix::unistd::geteuid().as_raw();
        let params = |role, socket| LinkParams {
            role,
            socket,
            secret: secret.clone(),
            build_id: revaer_ipc::build_info::build_id(),
            uid,
        };
        let engine_link = WorkerLink::spawn(params(Role::Engine, socket.clone()));
        let engine_events = EngineEvents::spawn(params(Role::Engine, socket));
        let fsops = WorkerLink::spawn(params(Role::Fsops, fsops_socket.clone()));
        let store = Arc::new(Store::open(&dir.path().join("revaer.db")).unwrap());
        let keys = Arc::new(Keys::load(Arc::clone(&store)).unwrap());
        let admin_key = keys
            .issue("admin", Scope::Admin, None)
            .unwrap()
            .secret
            .expose()
            .to_owned();
        let read_key = keys
            .issue("reader", Scope::Read, None)
            .unwrap()
            .secret
            .expose()
            .to_owned();
        let events = EventLog::start(Arc::clone(&store), &engine_events).unwrap();
        let torrents =
            ReadModel::start(Arc::clone(&store), engine_link.clone(), &engine_events).unwrap();
        let fsops_jobs = FsopsDispatcher::start(
            Arc::clone(&store),
            Arc::clone(&events),
            Arc::clone(&torrents),
            engine_link.clone(),
            &engine_events,
            params(Role::Fsops, fsops_socket.clone()),
        )
        .unwrap();
        let (supervision_tx, supervision) = watch::channel(None);
        let state = AppState::new(AppParts {
            engine: engine_link,
            engine_events,
            fsops,
            supervision,
            sandbox: SandboxReport::default(),
            store,
            keys,
            events,
            torrents,
            fsops_jobs,
            default_rate_per_minute,
            config_revision: 1,
        });
        state.spawn_store_probe();
        let router = routes::router(Arc::clone(&state));
        let harness = Self {
            router,
            state,
            engine,
            admin_key,
            read_key,
            kill: Mutex::new(Some(kill)),
            supervision: supervision_tx,
            fsops: fsops_service,
            fsops_socket,
            secret,
            kill_fsops: Mutex::new(Some(kill_fsops)),
            _dir: dir,
        };
        harness
            .wait_for("the read model to follow the engine", |h| {
                !h.state.torrents.is_stale()
            })
            .await;
        harness
    }

    /// Polls `condition` until it holds (5 s deadline).
    pub async fn wait_for(&self, what: &str, condition: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !condition(self) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Reports every worker running (they all live in this process), as
    /// the supervisor would; health then depends on the links alone.
    pub fn report_all_running(&self) {
        let pid = std::process::id();
        let status = |role| revaer_ipc::WorkerStatus {
            role,
            state: revaer_ipc::WorkerState::Running,
            pid: Some(pid),
            restarts: 0,
            last_exit: None,
            sandbox: None,
        };
        self.supervision
            .send_replace(Some(revaer_ipc::SupervisionSnapshot {
                supervisor_pid: pid,
                workers: vec![status(Role::Engine), status(Role::Fsops), status(Role::Api)],
                config: revaer_ipc::ConfigStatus {
                    revision: 1,
                    ..revaer_ipc::ConfigStatus::default()
                },
            }));
    }

    /// FsOps "dies": its listener and every connection close.
    pub fn kill_fsops(&self) {
        if let Some(served) = self.kill_fsops.lock().unwrap().take() {
            served.stop();
        }
    }

    /// FsOps comes back (same scripted service, fresh process state).
    pub fn restart_fsops(&self) {
        self.kill_fsops();
        let _ = std::fs::remove_file(&self.fsops_socket);
        let kill = serve_on_own_runtime(
            &self.fsops_socket,
            Role::Fsops,
            &self.secret,
            Arc::clone(&self.fsops),
        );
        *self.kill_fsops.lock().unwrap() = Some(kill);
    }

    /// The engine "dies": its listener and every connection close.
    pub fn kill_engine(&self) {
        if let Some(served) = self.kill.lock().unwrap().take() {
            served.stop();
        }
    }

    /// One request through the full router.
    pub async fn call(
        &self,
        method: Method,
        uri: &str,
        key: Option<&str>,
        content_type: Option<&str>,
        body: impl Into<Body>,
    ) -> (StatusCode, HeaderMap, Value) {
        let mut request = Request::builder().method(method).uri(uri);
        if let Some(key) = key {
            request = request.header("authorization", format!("Bearer {key}"));
        }
        if let Some(ct) = content_type {
            request = request.header("content-type", ct);
        }
        let response = self
            .router
            .clone()
            .oneshot(request.body(body.into()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 24)
            .await
            .unwrap();
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        (status, headers, value)
    }

    /// An admin JSON request.
    pub async fn admin(
        &self,
        method: Method,
        uri: &str,
        body: &Value,
    ) -> (StatusCode, HeaderMap, Value) {
        let body = if body.is_null() {
            Body::empty()
        } else {
            Body::from(body.to_string())
        };
        let ct = (!matches!(method, Method::GET)).then_some("application/json");
        self.call(method, uri, Some(&self.admin_key.clone()), ct, body)
            .await
    }

    /// A multipart upload of `torrent` with optional `options` JSON.
    pub async fn upload(
        &self,
        torrent: &[u8],
        options: Option<&Value>,
    ) -> (StatusCode, HeaderMap, Value) {
        let boundary = "revaer-test-boundary";
        let mut body = Vec::new();
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"torrent\"; filename=\"x.torrent\"\r\nContent-Type: application/x-bittorrent\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(torrent);
        body.extend_from_slice(b"\r\n");
        if let Some(options) = options {
            body.extend_from_slice(
                format!(
                    "--{boundary}\r\nContent-Disposition: form-data; name=\"options\"\r\nContent-Type: application/json\r\n\r\n{options}\r\n"
                )
                .as_bytes(),
            );
        }
        body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        self.call(
            Method::POST,
            "/v1/torrents",
            Some(&self.admin_key.clone()),
            Some(&format!("multipart/form-data; boundary={boundary}")),
            body,
        )
        .await
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.kill_engine();
        self.kill_fsops();
    }
}

/// A service served from a runtime on its own thread.
struct Served {
    kill: tokio::sync::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Served {
    /// Drops the runtime — closing every socket like a killed process —
    /// and waits until it is gone (its listener unlinks the socket path on
    /// the way out, which must not hit a successor's socket).
    fn stop(self) {
        let _ = self.kill.send(());
        let _ = self.thread.join();
    }
}

/// Serves `service` on `socket` from a runtime on its own thread.
fn serve_on_own_runtime<S: Service>(
    socket: &std::path::Path,
    role: Role,
    secret: &BootSecret,
    service: Arc<S>,
) -> Served {
    let (kill, killed) = tokio::sync::oneshot::channel::<()>();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (socket, secret) = (socket.to_owned(), secret.clone());
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let server = spawn_data_server(&socket, role, secret, service).unwrap();
            ready_tx.send(()).unwrap();
            let _ = killed.await;
            server.abort();
        });
    });
    ready_rx.recv().unwrap();
    Served { kill, thread }
}

/// A scripted FsOps: runs the nine steps instantly, except that a torrent
/// whose name contains `hold` waits at `transfer` until released, and one
/// whose name contains `fail` fails at `extract` on its first attempt.
#[derive(Debug)]
pub struct FakeFsops {
    /// Every job received, in order.
    pub jobs: Mutex<Vec<FsopsJob>>,
    released: watch::Sender<bool>,
}

impl FakeFsops {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            jobs: Mutex::new(Vec::new()),
            released: watch::Sender::new(false),
        })
    }

    /// Lets held jobs (and later ones) pass `transfer`.
    pub fn release(&self) {
        self.released.send_replace(true);
    }
}

impl Service for FakeFsops {
    async fn handle(
        &self,
        _request: EngineRequest,
        _traceparent: Option<String>,
    ) -> EngineResponse {
        error(EngineErrorKind::Invalid, "not an engine")
    }

    fn subscribe(&self) -> Option<Subscription> {
        None
    }

    async fn apply_config(&self, _config: &Config) {}

    async fn shutdown(&self) {}

    fn metrics(&self) -> String {
        String::new()
    }

    fn run_fsops(
        &self,
        request: FsopsRequest,
    ) -> Option<tokio::sync::mpsc::Receiver<FsopsProgress>> {
        let FsopsRequest::Run(job) = request;
        self.jobs.lock().unwrap().push((*job).clone());
        let (tx, rx) = tokio::sync::mpsc::channel(32);
        let hold = job.name.contains("hold");
        let fail = job.name.contains("fail") && job.attempt == 1;
        let job_id = job.job_id;
        let start = job.resume_at.unwrap_or(FsopsStep::Validate);
        let mut released = self.released.subscribe();
        tokio::spawn(async move {
            let _ = tx
                .send(FsopsProgress::Started {
                    job_id,
                    step: start,
                })
                .await;
            for step in FsopsStep::ALL.into_iter().filter(|s| *s >= start) {
                let _ = tx.send(FsopsProgress::StepStarted { job_id, step }).await;
                if hold && step == FsopsStep::Transfer {
                    let _ = released.wait_for(|r| *r).await;
                }
                if fail && step == FsopsStep::Extract {
                    let reason = "scripted failure".to_owned();
                    let _ = tx
                        .send(FsopsProgress::Failed {
                            job_id,
                            step,
                            reason,
                        })
                        .await;
                    return;
                }
                let outcome = StepOutcome::Done;
                let _ = tx
                    .send(FsopsProgress::StepFinished {
                        job_id,
                        step,
                        outcome,
                    })
                    .await;
            }
            let library_path = format!("lib/{job_id}");
            let _ = tx
                .send(FsopsProgress::Completed {
                    job_id,
                    library_path,
                })
                .await;
        });
        Some(rx)
    }
}
