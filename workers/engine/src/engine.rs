//! The engine service: one libtorrent session, the torrents' durable state,
//! and the translation between IPC commands/events and libtorrent.
//!
//! Threads and tasks (see ADR 005):
//! - an **alert pump** thread blocks in `wait_for_alert` and forwards popped
//!   alert batches to the async side, so libtorrent's alert queue never
//!   waits on us;
//! - the **alert task** applies alerts in order: status updates refresh the
//!   in-memory summaries, state changes and completions become events,
//!   progress events are coalesced to ≤ 2 Hz per torrent, and resume data is
//!   written atomically to `state/engine/`;
//! - a **ticker** asks for status updates every 500 ms and flushes the resume
//!   data of torrents whose progress changed, at most
//!   `resume_flush_interval_secs` after the change.
//!
//! Resume data is also requested at once after every meaningful change
//! (add, metadata, pause/resume, selection, rate, sequential, completion), so
//! a `kill -9` loses at most the pieces downloaded since the last flush —
//! and those are found again by libtorrent's own piece check of partial data.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use libtorrent_sys as lt;
use revaer_config::{BindTarget, Config, EngineConfig};
use revaer_ipc::engine::{
    AddTorrent, DISK_FULL_ERROR_PREFIX, EngineError, EngineErrorKind, EngineEvent, EngineRequest,
    EngineResponse, FileDetail, MAX_MAGNET_BYTES, MAX_TORRENT_FILE_BYTES, PeerDetail, Rate,
    SessionInfo, TorrentDetail, TorrentId, TorrentSource, TorrentState, TorrentSummary,
    TrackerDetail, TrackerStatus,
};
use revaer_worker_bootstrap::data_server::Subscription;
use tokio::sync::{Notify, broadcast, mpsc};

use crate::store::{StateKind, StateStore};

/// Locks a mutex, tolerating poisoning (the data stays consistent: every
/// critical section is a single insert or remove).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The span name of a command (`engine <name>`).
fn command_name(request: &EngineRequest) -> &'static str {
    match request {
        EngineRequest::Add(_) => "add",
        EngineRequest::Remove { .. } => "remove",
        EngineRequest::Pause { .. } => "pause",
        EngineRequest::Resume { .. } => "resume",
        EngineRequest::Reannounce { .. } => "reannounce",
        EngineRequest::Recheck { .. } => "recheck",
        EngineRequest::SetSequential { .. } => "set_sequential",
        EngineRequest::SetTorrentRate { .. } => "set_torrent_rate",
        EngineRequest::SelectFiles { .. } => "select_files",
        EngineRequest::SetGlobalRate { .. } => "set_global_rate",
        EngineRequest::ConnectPeer { .. } => "connect_peer",
        EngineRequest::List => "list",
        EngineRequest::Detail { .. } => "detail",
        EngineRequest::SessionInfo => "session_info",
        EngineRequest::Subscribe => "subscribe",
        EngineRequest::Peers { .. } => "peers",
    }
}

/// Progress events per torrent are at most this frequent.
const PROGRESS_EVERY: Duration = Duration::from_millis(500);
/// How often libtorrent is asked for status updates.
const STATUS_EVERY: Duration = Duration::from_millis(500);
/// Events buffered per subscriber before it is re-synchronised.
const EVENT_BUFFER: usize = 4096;
/// Longest wait for a finished torrent's files to be flushed before it is
/// announced complete anyway.
const FLUSH_DEADLINE: Duration = Duration::from_secs(10);
/// Longest wait for resume data at shutdown.
const SHUTDOWN_SAVE_DEADLINE: Duration = Duration::from_secs(8);

/// One torrent as the engine tracks it.
#[derive(Debug, Clone)]
struct Tracked {
    summary: TorrentSummary,
    last_progress_event: Option<Instant>,
    /// Bytes done when resume data was last requested.
    saved_done: u64,
    /// Last announce outcome per tracker URL (from tracker alerts).
    trackers: BTreeMap<String, TrackerDetail>,
}

/// The engine: shared by the data-channel server and the background tasks.
#[derive(Debug)]
pub struct Engine {
    session: Arc<lt::Session>,
    store: StateStore,
    downloads: PathBuf,
    torrents: Mutex<BTreeMap<TorrentId, Tracked>>,
    events: broadcast::Sender<EngineEvent>,
    settings: Mutex<lt::SessionSettings>,
    flush_every_secs: AtomicU64,
    /// Torrents whose resume data is awaited (shutdown).
    awaiting_save: Mutex<HashSet<TorrentId>>,
    /// Per torrent: resume-data requests made, answered, and the newest
    /// request whose data reached the disk. libtorrent answers a torrent's
    /// requests in order, so a command waits for *its* request, not for an
    /// older one carrying the state from before the command.
    saves: Mutex<HashMap<TorrentId, SaveTickets>>,
    saved: Notify,
    stopping: Arc<AtomicBool>,
    /// Reports from start-up (quarantined state), delivered to the first
    /// subscriber: at start-up nobody is listening yet.
    startup_reports: Mutex<Vec<EngineEvent>>,
    /// Counters for `/metrics` (see [`crate::metrics`]).
    pub(crate) metrics: crate::metrics::EngineMetrics,
    /// The span each traced add ran in, so the download's completion joins
    /// that trace (ADR 008). Memory only: after a restart the API falls
    /// back to the trace it stored with the torrent.
    traces: Mutex<HashMap<TorrentId, AddTrace>>,
    /// Each torrent's last disk error, shown while libtorrent holds it in
    /// upload mode because of it.
    file_errors: Mutex<HashMap<TorrentId, String>>,
    /// Finished torrents whose blocks are being written to their files;
    /// `Completed` follows once they are (FsOps reads those files).
    flushing: Mutex<HashSet<TorrentId>>,
    /// `[engine] interface`: the interface every connection is bound to.
    bind_target: Mutex<Option<BindTarget>>,
    /// Why the kill switch holds the session paused (the bound interface
    /// is missing); `None` while traffic may flow. Held across the
    /// session's pause/resume so concurrent checks cannot interleave them.
    network_blocked: Mutex<Option<String>>,
}

/// See [`Engine::saves`].
#[derive(Debug, Clone, Copy, Default)]
struct SaveTickets {
    requested: u64,
    answered: u64,
    written: u64,
}

/// How long a command waits for its state to reach the disk before it is
/// refused (the change stays applied; the next save persists it).
const DURABLE_ACK_DEADLINE: Duration = Duration::from_secs(10);

/// Where a traced add happened, remembered per torrent.
#[derive(Debug, Clone)]
struct AddTrace {
    traceparent: String,
    added: SystemTime,
    /// The download's span, once it finished: libtorrent may report a
    /// torrent finished more than once (e.g. files selected after the add),
    /// and every `Completed` must name the same span.
    download: Option<String>,
}

fn to_lt(id: TorrentId) -> lt::TorrentId {
    lt::TorrentId::new(id.0)
}

fn to_ipc(id: lt::TorrentId) -> TorrentId {
    TorrentId(*id.as_bytes())
}

fn session_settings(config: &EngineConfig) -> lt::SessionSettings {
    lt::SessionSettings {
        listen_interfaces: config.effective_listen_interfaces(),
        outgoing_interfaces: config.outgoing_interfaces(),
        enable_dht: config.enable_dht,
        enable_lsd: config.enable_lsd,
        enable_upnp: config.enable_upnp,
        enable_natpmp: config.enable_natpmp,
        enable_utp: config.enable_utp,
        download_rate_limit: rate_to_lt(Some(config.download_rate_limit)).unwrap_or(0),
        upload_rate_limit: rate_to_lt(Some(config.upload_rate_limit)).unwrap_or(0),
        connections_limit: i32::try_from(config.connections_limit).unwrap_or(i32::MAX),
        allow_multiple_connections_per_ip: config.allow_multiple_connections_per_ip,
        user_agent: format!("Revaer/{}", revaer_ipc::build_info::VERSION),
    }
}

/// Bytes/s to libtorrent's `int` limit (0 = unlimited). `None` when too big.
fn rate_to_lt(rate: Rate) -> Option<i32> {
    match rate {
        None | Some(0) => Some(0),
        Some(r) => i32::try_from(r).ok(),
    }
}

fn rate_from_lt(limit: i32) -> Rate {
    u64::try_from(limit).ok().filter(|&l| l > 0)
}

/// Longest save sub-directory, in bytes.
const MAX_SAVE_SUBDIR_BYTES: usize = 1024;

/// Checks a save sub-directory: relative, plain names only, so it can never
/// leave the downloads dir.
fn save_subdir(text: &str) -> Result<&Path, String> {
    if text.is_empty() || text.len() > MAX_SAVE_SUBDIR_BYTES || text.contains('\0') {
        return Err(format!(
            "save path must be 1 to {MAX_SAVE_SUBDIR_BYTES} bytes without NUL"
        ));
    }
    let path = Path::new(text);
    if path
        .components()
        .all(|c| matches!(c, std::path::Component::Normal(_)))
    {
        Ok(path)
    } else {
        Err("save path must be relative and must not contain `..` or `.`".to_owned())
    }
}

fn non_negative(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn state_of(st: &lt::TorrentStatus) -> TorrentState {
    if st.error.is_some() {
        return TorrentState::Error;
    }
    if st.paused {
        return TorrentState::Paused;
    }
    lifecycle_state(st.state)
}

/// libtorrent's life-cycle state in Revaer's terms (pause and error aside).
fn lifecycle_state(state: lt::TorrentState) -> TorrentState {
    match state {
        lt::TorrentState::CheckingFiles => TorrentState::CheckingFiles,
        lt::TorrentState::CheckingResumeData => TorrentState::CheckingResumeData,
        lt::TorrentState::DownloadingMetadata => TorrentState::DownloadingMetadata,
        lt::TorrentState::Finished => TorrentState::Finished,
        lt::TorrentState::Seeding => TorrentState::Seeding,
        lt::TorrentState::Downloading | lt::TorrentState::Unknown(_) => TorrentState::Downloading,
    }
}

/// Below this much free space, a storage error is explained as a full disk.
const FULL_DISK_BYTES: u64 = 4 * 1024 * 1024;

/// libtorrent's error text, with the cause spelled out when the downloads
/// filesystem is full: writes through memory-mapped files then fail as
/// "Bad address" (a `SIGBUS` turned into `EFAULT`), which tells an operator
/// nothing. Checked only for torrents in error.
fn explain_error(error: &str, downloads: &Path) -> String {
    let free = nix::sys::statvfs::statvfs(downloads)
        .ok()
        .map(|v| v.blocks_available().saturating_mul(v.fragment_size()));
    match free {
        Some(free) if free < FULL_DISK_BYTES => format!(
            "{DISK_FULL_ERROR_PREFIX} ({free} bytes free); free some, then resume ({error})"
        ),
        _ => error.to_owned(),
    }
}

/// `file_error` is the torrent's last disk error (from its alert): shown
/// when libtorrent went to upload mode over it, which otherwise looks like
/// a download that merely stalled.
/// `network_blocked`: why the whole session is held paused, shown on every
/// torrent that is not paused itself.
fn summarize(
    st: &lt::TorrentStatus,
    downloads: &Path,
    file_error: Option<&str>,
    network_blocked: Option<&str>,
) -> TorrentSummary {
    let error = match &st.error {
        Some(e) => Some(e.clone()),
        None if st.upload_mode && !st.is_finished => Some(format!(
            "stopped downloading after a disk write failed: {}",
            file_error.unwrap_or("unknown error")
        )),
        None => None,
    };
    TorrentSummary {
        id: to_ipc(st.id),
        name: st.name.clone(),
        state: if error.is_some() {
            TorrentState::Error
        } else {
            state_of(st)
        },
        progress_ppm: st.progress_ppm,
        download_bps: non_negative(st.download_rate),
        upload_bps: non_negative(st.upload_rate),
        peers: u32::try_from(st.num_peers).unwrap_or(0),
        seeds: u32::try_from(st.num_seeds).unwrap_or(0),
        total_wanted: non_negative(st.total_wanted),
        total_done: non_negative(st.total_wanted_done),
        downloaded: non_negative(st.all_time_download),
        uploaded: non_negative(st.all_time_upload),
        paused: st.paused,
        sequential: st.sequential,
        has_metadata: st.has_metadata,
        error: error.as_deref().map(|e| explain_error(e, downloads)),
        stalled_reason: network_blocked.filter(|_| !st.paused).map(str::to_owned),
    }
}

fn error(kind: EngineErrorKind, message: impl Into<String>) -> EngineResponse {
    EngineResponse::Error(EngineError {
        kind,
        message: message.into(),
    })
}

/// A tracker nothing is known of yet.
fn not_contacted(url: &str) -> TrackerDetail {
    TrackerDetail {
        url: url.to_owned(),
        status: TrackerStatus::NotContacted,
        message: None,
        peers: None,
        tier: 0,
        next_announce_secs: None,
        last_error: None,
        fails: 0,
        seeders: None,
        leechers: None,
    }
}

fn lt_error(e: &lt::Error) -> EngineResponse {
    let kind = match e {
        lt::Error::NotFound(_) => EngineErrorKind::NotFound,
        lt::Error::AlreadyExists(_) => EngineErrorKind::Duplicate,
        lt::Error::InvalidTorrent(_)
        | lt::Error::InvalidMagnet(_)
        | lt::Error::InvalidArgument(_)
        | lt::Error::TooLarge { .. } => EngineErrorKind::Invalid,
        _ => EngineErrorKind::Internal,
    };
    error(kind, e.to_string())
}

impl Engine {
    /// Creates the session, reloads every stored torrent, and starts the
    /// alert pump, alert task and ticker. Must run inside a tokio runtime.
    pub fn start(
        config: &Config,
        state_dir: PathBuf,
        downloads: PathBuf,
    ) -> Result<Arc<Self>, String> {
        let settings = session_settings(&config.engine);
        let session =
            Arc::new(lt::Session::new(&settings).map_err(|e| format!("libtorrent session: {e}"))?);
        let store = StateStore::open(state_dir).map_err(|e| format!("state directory: {e}"))?;
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let engine = Arc::new(Self {
            session,
            store,
            downloads,
            torrents: Mutex::new(BTreeMap::new()),
            events,
            settings: Mutex::new(settings),
            flush_every_secs: AtomicU64::new(config.engine.resume_flush_interval_secs),
            awaiting_save: Mutex::new(HashSet::new()),
            saves: Mutex::new(HashMap::new()),
            saved: Notify::new(),
            stopping: Arc::new(AtomicBool::new(false)),
            startup_reports: Mutex::new(Vec::new()),
            traces: Mutex::new(HashMap::new()),
            file_errors: Mutex::new(HashMap::new()),
            flushing: Mutex::new(HashSet::new()),
            bind_target: Mutex::new(config.engine.bind_target()),
            network_blocked: Mutex::new(None),
            metrics: crate::metrics::EngineMetrics::new(),
        });
        // Before any torrent is added: with the bound interface missing,
        // nothing may start announcing.
        engine.check_network();
        let watched = Arc::downgrade(&engine);
        if let Err(e) = crate::network_guard::spawn_watch(Arc::clone(&engine.stopping), move || {
            if let Some(engine) = watched.upgrade() {
                engine.check_network();
            }
        }) {
            tracing::error!(error = %e, "cannot start the network watch");
        }
        engine.restore();
        let (alert_tx, alert_rx) = mpsc::channel(256);
        spawn_alert_pump(
            Arc::clone(&engine.session),
            alert_tx,
            Arc::clone(&engine.stopping),
        );
        tokio::spawn(Arc::clone(&engine).alert_task(alert_rx));
        tokio::spawn(Arc::clone(&engine).ticker());
        Ok(engine)
    }

    /// A status as the API sees it (see [`summarize`]).
    fn summary_of(&self, status: &lt::TorrentStatus) -> TorrentSummary {
        let file_error = lock(&self.file_errors).get(&to_ipc(status.id)).cloned();
        let blocked = lock(&self.network_blocked).clone();
        summarize(
            status,
            &self.downloads,
            file_error.as_deref(),
            blocked.as_deref(),
        )
    }

    /// Why the engine cannot transfer now (the kill switch of `[engine]
    /// interface`), for the health pong.
    #[must_use]
    pub fn degraded(&self) -> Option<String> {
        lock(&self.network_blocked).clone()
    }

    /// The kill switch: pauses the whole session while the bound interface
    /// is missing and resumes it (sockets reopened) when it is back; every
    /// torrent's summary says why, sent to subscribers as a fresh snapshot.
    /// Called at start, on every network change and on config changes.
    pub(crate) fn check_network(&self) {
        let target = lock(&self.bind_target).clone();
        let blocked = target
            .as_ref()
            .and_then(|t| crate::network_guard::check(t).err());
        {
            let mut current = lock(&self.network_blocked);
            if *current == blocked {
                return;
            }
            current.clone_from(&blocked);
            if let Some(reason) = &blocked {
                tracing::warn!(reason, "kill switch engaged: session paused");
                if let Err(e) = self.session.pause_session() {
                    tracing::error!(error = %e, "cannot pause the session");
                }
            } else {
                tracing::info!("bound network interface is back: session resumed");
                if let Err(e) = self.session.reopen_network_sockets() {
                    tracing::error!(error = %e, "cannot reopen the network sockets");
                }
                if let Err(e) = self.session.resume_session() {
                    tracing::error!(error = %e, "cannot resume the session");
                }
            }
            self.metrics.set_network_blocked(blocked.is_some());
        }
        let snapshot: Vec<TorrentSummary> = self
            .torrents()
            .values_mut()
            .map(|t| {
                t.summary.stalled_reason = blocked.clone().filter(|_| !t.summary.paused);
                t.summary.clone()
            })
            .collect();
        self.emit(EngineEvent::Snapshot(snapshot));
    }

    fn torrents(&self) -> MutexGuard<'_, BTreeMap<TorrentId, Tracked>> {
        self.torrents
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn emit(&self, event: EngineEvent) {
        // No subscriber is fine: the engine keeps running without the API.
        let _ = self.events.send(event);
    }

    /// Loads every stored torrent. Resume data first; if libtorrent refuses
    /// it, it is quarantined and the torrent is re-added from its original
    /// .torrent or magnet (which costs a recheck, not the torrent).
    ///
    /// Each comes back under the id its state files are stored under, the
    /// one it was added under: resume data with metadata knows both hashes
    /// of a hybrid torrent, so one added by a `urn:btmh:` magnet would
    /// otherwise return under its v1 hash, a different torrent to the
    /// API and to its users.
    fn restore(&self) {
        let (stored, quarantined) = match self.store.load_all() {
            Ok(found) => found,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the state directory; starting empty");
                return;
            }
        };
        for q in quarantined {
            if let Ok(id) = q.id.parse() {
                self.report(EngineEvent::StateQuarantined {
                    id,
                    reason: q.reason,
                });
            }
        }
        let mut restored = 0_usize;
        for item in stored {
            let Ok(id) = item.id.parse::<TorrentId>() else {
                continue;
            };
            let mut added = false;
            if let Some(resume) = item.resume {
                // An empty save path keeps the saved one (a torrent added
                // with `save_subdir` stays there); paused/sequential come
                // from the resume data too.
                let mut params =
                    lt::AddTorrentParams::new(lt::TorrentSource::ResumeData(resume), "");
                params.auto_managed = false;
                params.id = Some(to_lt(id));
                match self.session.add_torrent(&params) {
                    Ok(_) => added = true,
                    Err(e) => {
                        let reason = format!("libtorrent refused the resume data: {e}");
                        if let Ok(q) = self.store.quarantine(&item.id, StateKind::Resume, &reason) {
                            self.report(EngineEvent::StateQuarantined {
                                id,
                                reason: q.reason,
                            });
                        }
                    }
                }
            }
            if !added {
                let source = match (item.torrent, item.magnet) {
                    (Some(bytes), _) => Some(lt::TorrentSource::TorrentFile(bytes)),
                    (None, Some(uri)) => Some(lt::TorrentSource::Magnet(uri)),
                    (None, None) => None,
                };
                if let Some(source) = source {
                    let mut params = lt::AddTorrentParams::new(source, &self.downloads);
                    params.auto_managed = false;
                    params.id = Some(to_lt(id));
                    match self.session.add_torrent(&params) {
                        Ok(_) => added = true,
                        Err(e) => {
                            tracing::error!(id = %id, error = %e, "cannot restore torrent");
                            let kind = if self.store.dir().join(format!("{id}.torrent")).exists() {
                                StateKind::Torrent
                            } else {
                                StateKind::Magnet
                            };
                            let reason = format!("libtorrent refused the stored source: {e}");
                            if let Ok(q) = self.store.quarantine(&item.id, kind, &reason) {
                                self.report(EngineEvent::StateQuarantined {
                                    id,
                                    reason: q.reason,
                                });
                            }
                        }
                    }
                }
            }
            if added {
                restored += 1;
                self.track(id);
            }
        }
        tracing::info!(restored, "torrents restored from state");
    }

    /// Starts tracking `id` from its current status.
    fn track(&self, id: TorrentId) -> Option<TorrentSummary> {
        let status = self.session.status(&to_lt(id)).ok()?;
        let summary = self.summary_of(&status);
        self.torrents().insert(
            id,
            Tracked {
                summary: summary.clone(),
                last_progress_event: None,
                saved_done: summary.total_done,
                trackers: BTreeMap::new(),
            },
        );
        Some(summary)
    }

    /// Records the outcome of an announce for [`Self::detail`].
    fn note_tracker(
        &self,
        id: TorrentId,
        url: String,
        status: TrackerStatus,
        message: Option<String>,
        peers: Option<u32>,
    ) {
        if let Some(tracked) = self.torrents().get_mut(&id) {
            let entry = tracked
                .trackers
                .entry(url)
                .or_insert_with_key(|url| not_contacted(url));
            entry.status = status;
            entry.message = message;
            if peers.is_some() {
                entry.peers = peers;
            }
        }
    }

    /// Asks libtorrent for resume data now (answered by an alert).
    /// Asks libtorrent for a torrent's resume data; returns the request's
    /// ticket (see [`Self::persisted`]), `None` when it was not made.
    fn request_save(&self, id: TorrentId) -> Option<u64> {
        let mut saves = lock(&self.saves);
        if let Err(e) = self.session.save_resume_data(&to_lt(id)) {
            tracing::debug!(id = %id, error = %e, "cannot request resume data");
            return None;
        }
        let tickets = saves.entry(id).or_default();
        tickets.requested += 1;
        Some(tickets.requested)
    }

    /// Saves a torrent's state now and waits until it is on disk: a
    /// command is acknowledged only once a crash can no longer undo it.
    async fn persisted(&self, id: TorrentId) -> Result<(), EngineResponse> {
        let refused = |why: &str| {
            error(
                EngineErrorKind::Internal,
                format!("applied, but not yet saved ({why}); retry to be sure it sticks"),
            )
        };
        let Some(ticket) = self.request_save(id) else {
            return Err(refused("libtorrent refused to produce resume data"));
        };
        let deadline = tokio::time::Instant::now() + DURABLE_ACK_DEADLINE;
        loop {
            let notified = self.saved.notified();
            let tickets = lock(&self.saves).get(&id).copied();
            match tickets {
                // Removed meanwhile: nothing left to persist.
                None => return Ok(()),
                Some(t) if t.written >= ticket => return Ok(()),
                Some(t) if t.answered >= ticket => {
                    return Err(refused("the resume data could not be written"));
                }
                Some(_) => {}
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(refused("timed out"));
            }
        }
    }

    /// Records the answer to a torrent's oldest open save request.
    fn save_answered(&self, id: TorrentId, written: bool) {
        if let Some(t) = lock(&self.saves).get_mut(&id) {
            t.answered = (t.answered + 1).min(t.requested);
            if written {
                t.written = t.answered;
            }
        }
        self.saved.notify_waiters();
    }

    /// Re-reads one torrent's status and emits `StateChanged` if it moved.
    fn refresh(&self, id: TorrentId) {
        if let Ok(status) = self.session.status(&to_lt(id)) {
            self.apply_status(&status, true);
        }
    }

    /// Applies a status to the tracked summary; emits state changes, and
    /// progress at most every 500 ms (always when `force`).
    fn apply_status(&self, status: &lt::TorrentStatus, force: bool) {
        let summary = self.summary_of(status);
        let id = summary.id;
        let mut events = Vec::new();
        {
            let mut torrents = self.torrents();
            let Some(tracked) = torrents.get_mut(&id) else {
                return;
            };
            if tracked.summary.state != summary.state {
                events.push(EngineEvent::StateChanged {
                    id,
                    state: summary.state,
                });
            }
            let changed = tracked.summary != summary;
            let due = tracked
                .last_progress_event
                .is_none_or(|at| at.elapsed() >= PROGRESS_EVERY);
            if changed && (due || force) {
                tracked.last_progress_event = Some(Instant::now());
                events.push(EngineEvent::Progress(Box::new(summary.clone())));
            }
            tracked.summary = summary;
        }
        for event in events {
            self.emit(event);
        }
    }

    /// Reports the transition libtorrent announced, even when it is already
    /// over by the time a status could be read (a small recheck can pass
    /// through `CheckingFiles` in a millisecond).
    fn on_state_alert(&self, id: TorrentId, state: lt::TorrentState) {
        let event = {
            let mut torrents = self.torrents();
            let Some(tracked) = torrents.get_mut(&id) else {
                return;
            };
            let checking = matches!(
                state,
                lt::TorrentState::CheckingFiles | lt::TorrentState::CheckingResumeData
            );
            let mapped = if tracked.summary.paused && !checking {
                TorrentState::Paused
            } else {
                lifecycle_state(state)
            };
            if tracked.summary.state == mapped {
                return;
            }
            tracked.summary.state = mapped;
            EngineEvent::StateChanged { id, state: mapped }
        };
        self.emit(event);
    }

    async fn alert_task(self: Arc<Self>, mut alerts: mpsc::Receiver<Vec<lt::Alert>>) {
        while let Some(batch) = alerts.recv().await {
            for alert in batch {
                self.metrics.alert(&alert);
                self.on_alert(alert).await;
            }
        }
    }

    /// Tracker announce outcomes: kept for `Detail`, errors also emitted.
    fn on_tracker_alert(&self, alert: lt::Alert) {
        match alert {
            lt::Alert::TrackerAnnounce { id, url } => {
                self.note_tracker(to_ipc(id), url, TrackerStatus::Announcing, None, None);
            }
            lt::Alert::TrackerReply { id, url, num_peers } => {
                let peers = u32::try_from(num_peers).ok();
                self.note_tracker(to_ipc(id), url, TrackerStatus::Working, None, peers);
            }
            lt::Alert::TrackerError {
                id, url, message, ..
            } => {
                self.note_tracker(
                    to_ipc(id),
                    url.clone(),
                    TrackerStatus::Error,
                    Some(message.clone()),
                    None,
                );
                self.emit(EngineEvent::TrackerError {
                    id: to_ipc(id),
                    url,
                    message,
                });
            }
            _ => {}
        }
    }

    async fn on_alert(self: &Arc<Self>, alert: lt::Alert) {
        match alert {
            lt::Alert::StateUpdate(statuses) => {
                for status in &statuses {
                    self.apply_status(status, false);
                }
            }
            lt::Alert::MetadataReceived { id } => {
                let id = to_ipc(id);
                let name = self
                    .session
                    .status(&to_lt(id))
                    .map(|s| s.name)
                    .unwrap_or_default();
                self.emit(EngineEvent::MetadataReceived { id, name });
                self.refresh(id);
                self.request_save(id);
            }
            lt::Alert::StateChanged { id, state, .. } => {
                let id = to_ipc(id);
                self.on_state_alert(id, state);
                self.refresh(id);
            }
            lt::Alert::TorrentFinished { id } => {
                let id = to_ipc(id);
                if self.torrents().contains_key(&id) {
                    self.refresh(id);
                    self.complete_once_on_disk(id);
                }
            }
            lt::Alert::CacheFlushed { id } => self.on_flushed(to_ipc(id)),
            lt::Alert::TorrentError { id, error } => {
                let id = to_ipc(id);
                self.refresh(id);
                self.emit(EngineEvent::Error { id, message: error });
            }
            lt::Alert::FileError { id, file, error } => {
                let id = to_ipc(id);
                lock(&self.file_errors).insert(id, format!("{file}: {error}"));
                self.refresh(id);
                self.emit(EngineEvent::Error {
                    id,
                    message: format!("{file}: {error}"),
                });
            }
            alert @ (lt::Alert::TrackerAnnounce { .. }
            | lt::Alert::TrackerReply { .. }
            | lt::Alert::TrackerError { .. }) => self.on_tracker_alert(alert),
            lt::Alert::SaveResumeData { id, data } => {
                let id = to_ipc(id);
                if self.torrents().contains_key(&id) {
                    let store = self.store.clone();
                    let key = id.to_string();
                    let written = tokio::task::spawn_blocking(move || {
                        store.save(&key, StateKind::Resume, &data)
                    })
                    .await;
                    let ok = matches!(written, Ok(Ok(())));
                    self.metrics.resume_write(ok);
                    self.save_answered(id, ok);
                    match written {
                        Ok(Ok(())) => tracing::debug!(id = %id, "resume data saved"),
                        Ok(Err(e)) => {
                            tracing::error!(id = %id, error = %e, "cannot save resume data");
                        }
                        Err(e) => tracing::error!(id = %id, error = %e, "resume writer failed"),
                    }
                    // Removed while the write was in flight: do not leave
                    // its state behind to be restored as a ghost.
                    if !self.torrents().contains_key(&id) {
                        let store = self.store.clone();
                        let key = id.to_string();
                        let _ = tokio::task::spawn_blocking(move || store.remove(&key)).await;
                    }
                }
                self.mark_saved(id);
            }
            lt::Alert::SaveResumeDataFailed { id, error } => {
                tracing::debug!(id = %id, %error, "resume data not saved");
                self.save_answered(to_ipc(id), false);
                self.mark_saved(to_ipc(id));
            }
            lt::Alert::ListenSucceeded { address, port } => {
                tracing::info!(%address, port, "engine listening for peers");
            }
            lt::Alert::ListenFailed {
                address,
                port,
                error,
            } => {
                tracing::error!(%address, port, %error, "engine cannot listen");
            }
            lt::Alert::FastresumeRejected { id, error } => {
                tracing::warn!(id = %id, %error, "resume data rejected; libtorrent rechecks");
            }
            _ => {}
        }
    }

    fn mark_saved(&self, id: TorrentId) {
        let removed = self
            .awaiting_save
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&id);
        if removed {
            self.saved.notify_waiters();
        }
    }

    async fn ticker(self: Arc<Self>) {
        let mut status_timer = tokio::time::interval(STATUS_EVERY);
        status_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_flush = Instant::now();
        loop {
            status_timer.tick().await;
            if self.stopping.load(Ordering::Acquire) {
                return;
            }
            self.session.post_torrent_updates();
            // For the session counters in `/metrics` (a small copy).
            self.session.post_session_stats();
            let flush_every = Duration::from_secs(self.flush_every_secs.load(Ordering::Acquire));
            if last_flush.elapsed() >= flush_every {
                last_flush = Instant::now();
                let dirty: Vec<TorrentId> = {
                    let mut torrents = self.torrents();
                    torrents
                        .iter_mut()
                        .filter(|(_, t)| t.summary.total_done != t.saved_done)
                        .map(|(id, t)| {
                            t.saved_done = t.summary.total_done;
                            *id
                        })
                        .collect()
                };
                for id in dirty {
                    self.request_save(id);
                }
            }
        }
    }

    fn require(&self, id: TorrentId) -> Result<(), EngineResponse> {
        if self.torrents().contains_key(&id) {
            Ok(())
        } else {
            Err(error(EngineErrorKind::NotFound, format!("no torrent {id}")))
        }
    }

    async fn add(&self, add: AddTorrent) -> EngineResponse {
        if add.file_priorities.iter().any(|&p| p > 7) {
            return error(EngineErrorKind::Invalid, "file priorities are 0 to 7");
        }
        let save_path = match add.save_subdir.as_deref().map(save_subdir) {
            None => self.downloads.clone(),
            Some(Ok(sub)) => self.downloads.join(sub),
            Some(Err(message)) => return error(EngineErrorKind::Invalid, message),
        };
        let (id, source, kind, bytes) = match add.source {
            TorrentSource::TorrentFile(bytes) => {
                if bytes.len() > MAX_TORRENT_FILE_BYTES {
                    return error(
                        EngineErrorKind::Invalid,
                        format!(".torrent is larger than {MAX_TORRENT_FILE_BYTES} bytes"),
                    );
                }
                let info = match lt::parse_torrent(&bytes) {
                    Ok(info) => info,
                    Err(e) => return lt_error(&e),
                };
                if !add.file_priorities.is_empty() && add.file_priorities.len() != info.files.len()
                {
                    return error(
                        EngineErrorKind::Invalid,
                        format!(
                            "{} file priorities given for {} files",
                            add.file_priorities.len(),
                            info.files.len()
                        ),
                    );
                }
                (
                    to_ipc(info.id),
                    lt::TorrentSource::TorrentFile(bytes.clone()),
                    StateKind::Torrent,
                    bytes,
                )
            }
            TorrentSource::Magnet(uri) => {
                if uri.len() > MAX_MAGNET_BYTES {
                    return error(
                        EngineErrorKind::Invalid,
                        format!("magnet link is longer than {MAX_MAGNET_BYTES} bytes"),
                    );
                }
                let info = match lt::parse_magnet(&uri) {
                    Ok(info) => info,
                    Err(e) => return lt_error(&e),
                };
                (
                    to_ipc(info.id),
                    lt::TorrentSource::Magnet(uri.clone()),
                    StateKind::Magnet,
                    uri.into_bytes(),
                )
            }
        };
        if self.torrents().contains_key(&id) {
            return error(
                EngineErrorKind::Duplicate,
                format!("torrent {id} is already present"),
            );
        }
        // Durable intent first: once we answer, a crash cannot lose the add.
        let store = self.store.clone();
        let key = id.to_string();
        let persisted = tokio::task::spawn_blocking(move || store.save(&key, kind, &bytes)).await;
        if let Err(e) = persisted
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()))
        {
            return error(
                EngineErrorKind::Internal,
                format!("cannot persist the torrent: {e}"),
            );
        }
        let mut params = lt::AddTorrentParams::new(source, &save_path);
        params.paused = add.paused;
        params.auto_managed = false;
        params.sequential = add.sequential;
        params.file_priorities = add.file_priorities;
        params.peers = add.peers;
        // The id the state files are stored under, for the torrent's life.
        params.id = Some(to_lt(id));
        match self.session.add_torrent(&params) {
            Ok(added) => {
                let id = to_ipc(added);
                if let Some(summary) = self.track(id) {
                    self.emit(EngineEvent::Added(Box::new(summary)));
                }
                // Its options (paused, save path, priorities) live in the
                // resume data: answer once that is on disk too.
                if let Err(refused) = self.persisted(id).await {
                    return refused;
                }
                EngineResponse::Added { id }
            }
            Err(e) => {
                let _ = self.store.remove(&id.to_string());
                lt_error(&e)
            }
        }
    }

    async fn remove(&self, id: TorrentId, delete_data: bool) -> EngineResponse {
        if let Err(e) = self.require(id) {
            return e;
        }
        if let Err(e) = self.session.remove_torrent(&to_lt(id), delete_data) {
            return lt_error(&e);
        }
        self.torrents().remove(&id);
        self.mark_saved(id);
        let store = self.store.clone();
        let key = id.to_string();
        match tokio::task::spawn_blocking(move || store.remove(&key)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(id = %id, error = %e, "cannot delete torrent state"),
            Err(e) => tracing::error!(id = %id, error = %e, "state remover failed"),
        }
        lock(&self.traces).remove(&id);
        lock(&self.saves).remove(&id);
        lock(&self.file_errors).remove(&id);
        self.saved.notify_waiters();
        self.emit(EngineEvent::Removed { id });
        EngineResponse::Done
    }

    /// Runs a session operation on a known torrent, then refreshes it and,
    /// when `persist`, answers only once its resume data is on disk.
    async fn act(
        &self,
        id: TorrentId,
        persist: bool,
        op: impl FnOnce(&lt::Session, &lt::TorrentId) -> Result<(), lt::Error>,
    ) -> EngineResponse {
        if let Err(e) = self.require(id) {
            return e;
        }
        if let Err(e) = op(&self.session, &to_lt(id)) {
            return lt_error(&e);
        }
        self.refresh(id);
        if persist && let Err(refused) = self.persisted(id).await {
            return refused;
        }
        EngineResponse::Done
    }

    /// The torrent's connected peers, as libtorrent sees them now.
    fn peers(&self, id: TorrentId) -> EngineResponse {
        if let Err(e) = self.require(id) {
            return e;
        }
        match self.session.peers(&to_lt(id)) {
            Ok(peers) => EngineResponse::Peers(
                peers
                    .into_iter()
                    .filter_map(|p| {
                        let ip = p.ip.parse::<std::net::IpAddr>().ok()?;
                        Some(PeerDetail {
                            addr: std::net::SocketAddr::new(ip, p.port),
                            client: p.client,
                            seed: p.seed,
                            interested: p.interested,
                            choked: p.choked,
                            remote_interested: p.remote_interested,
                            remote_choked: p.remote_choked,
                            encrypted: p.encrypted,
                            utp: p.utp,
                            outgoing: p.outgoing,
                            progress_ppm: p.progress_ppm,
                            download_bps: p.download_rate,
                            upload_bps: p.upload_rate,
                            downloaded: p.downloaded,
                            uploaded: p.uploaded,
                        })
                    })
                    .collect(),
            ),
            Err(e) => lt_error(&e),
        }
    }

    /// The torrent's trackers: libtorrent's live announce state (merged over
    /// its listen sockets, so one socket that cannot reach the tracker does
    /// not hide another that can), plus the peer count of the last reply.
    fn tracker_details(&self, id: TorrentId, info: Option<&lt::TorrentInfo>) -> Vec<TrackerDetail> {
        let known = self
            .torrents()
            .get(&id)
            .map(|t| t.trackers.clone())
            .unwrap_or_default();
        let Ok(live) = self.session.trackers(&to_lt(id)) else {
            return info
                .map(|i| {
                    i.trackers
                        .iter()
                        .map(|url| {
                            known
                                .get(url)
                                .cloned()
                                .unwrap_or_else(|| not_contacted(url))
                        })
                        .collect()
                })
                .unwrap_or_default();
        };
        live.into_iter()
            .map(|t| {
                let seen = known.get(&t.url);
                let status = if t.working {
                    TrackerStatus::Working
                } else if t.updating {
                    TrackerStatus::Announcing
                } else if t.last_error.is_some() || t.fails > 0 {
                    TrackerStatus::Error
                } else {
                    seen.map_or(TrackerStatus::NotContacted, |s| s.status)
                };
                TrackerDetail {
                    status,
                    message: if status == TrackerStatus::Error {
                        t.last_error.clone().or_else(|| t.message.clone())
                    } else {
                        t.message.clone()
                    },
                    peers: seen.and_then(|s| s.peers),
                    tier: t.tier,
                    next_announce_secs: t.next_announce_secs,
                    last_error: t.last_error,
                    fails: t.fails,
                    seeders: t.seeders,
                    leechers: t.leechers,
                    url: t.url,
                }
            })
            .collect()
    }

    fn detail(&self, id: TorrentId) -> EngineResponse {
        if let Err(e) = self.require(id) {
            return e;
        }
        let lid = to_lt(id);
        let status = match self.session.status(&lid) {
            Ok(s) => s,
            Err(e) => return lt_error(&e),
        };
        let info = self.session.torrent_info(&lid).ok().flatten();
        let priorities = self.session.file_priorities(&lid).unwrap_or_default();
        let progress = self.session.file_progress(&lid).unwrap_or_default();
        let (download, upload) = self.session.torrent_limits(&lid).unwrap_or((0, 0));
        let files = info
            .as_ref()
            .map(|i| {
                i.files
                    .iter()
                    .filter(|f| !f.pad)
                    .map(|f| {
                        let slot = usize::try_from(f.index).unwrap_or(usize::MAX);
                        FileDetail {
                            index: f.index,
                            path: f.path.clone(),
                            size: non_negative(f.size),
                            priority: priorities.get(slot).copied().unwrap_or(4),
                            done: progress.get(slot).copied().map_or(0, non_negative),
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        let trackers = self.tracker_details(id, info.as_ref());
        EngineResponse::Detail(Box::new(TorrentDetail {
            summary: self.summary_of(&status),
            files,
            save_subdir: std::path::Path::new(&status.save_path)
                .strip_prefix(&self.downloads)
                .ok()
                .and_then(|p| p.to_str())
                .filter(|p| !p.is_empty())
                .map(str::to_owned),
            total_files: info
                .as_ref()
                .map_or(0, |i| u32::try_from(i.files.len()).unwrap_or(u32::MAX)),
            trackers,
            piece_length: info
                .as_ref()
                .and_then(|i| u32::try_from(i.piece_length).ok())
                .unwrap_or(0),
            private: info.as_ref().is_some_and(|i| i.private),
            download_limit: rate_from_lt(download),
            upload_limit: rate_from_lt(upload),
        }))
    }

    async fn select_files(&self, id: TorrentId, priorities: &[u8]) -> EngineResponse {
        if let Err(e) = self.require(id) {
            return e;
        }
        if priorities.iter().any(|&p| p > 7) {
            return error(EngineErrorKind::Invalid, "file priorities are 0 to 7");
        }
        let lid = to_lt(id);
        match self.session.torrent_info(&lid) {
            Ok(Some(info)) if info.files.len() == priorities.len() => {}
            Ok(Some(info)) => {
                return error(
                    EngineErrorKind::Invalid,
                    format!(
                        "{} priorities given for {} files",
                        priorities.len(),
                        info.files.len()
                    ),
                );
            }
            Ok(None) => {
                return error(
                    EngineErrorKind::Invalid,
                    "the torrent's metadata has not arrived yet",
                );
            }
            Err(e) => return lt_error(&e),
        }
        if let Err(e) = self.session.set_file_priorities(&lid, priorities) {
            return lt_error(&e);
        }
        self.emit(EngineEvent::FilesSelected {
            id,
            priorities: priorities.to_vec(),
        });
        if let Err(refused) = self.persisted(id).await {
            return refused;
        }
        EngineResponse::Done
    }

    fn set_global_rate(&self, download: Rate, upload: Rate) -> EngineResponse {
        let (Some(down), Some(up)) = (rate_to_lt(download), rate_to_lt(upload)) else {
            return error(
                EngineErrorKind::Invalid,
                "rate limits are at most 2147483647 bytes/s",
            );
        };
        let settings = {
            let mut settings = self
                .settings
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            settings.download_rate_limit = down;
            settings.upload_rate_limit = up;
            settings.clone()
        };
        match self.session.apply_settings(&settings) {
            Ok(()) => EngineResponse::Done,
            Err(e) => lt_error(&e),
        }
    }

    /// Handles one command made on behalf of a traced caller: the command
    /// runs in a span that is a child of `traceparent`, and an add's span
    /// is remembered with the torrent. Untraced commands (the API's own
    /// background reads) cost nothing extra.
    pub async fn handle_traced(
        &self,
        request: EngineRequest,
        traceparent: Option<String>,
    ) -> EngineResponse {
        let Some(parent) = traceparent else {
            return self.handle(request).await;
        };
        let span = revaer_telemetry::start(
            format!("engine {}", command_name(&request)),
            revaer_telemetry::Kind::Server,
            Some(&parent),
        );
        let response = self.handle(request).await;
        match &response {
            EngineResponse::Added { id } => {
                span.set_attribute("revaer.torrent", id.to_string());
                if let Some(tp) = span.traceparent() {
                    lock(&self.traces).insert(
                        *id,
                        AddTrace {
                            traceparent: tp.to_owned(),
                            added: SystemTime::now(),
                            download: None,
                        },
                    );
                }
            }
            EngineResponse::Error(e) => span.set_error(e.message.clone()),
            _ => {}
        }
        response
    }

    /// A torrent finished: libtorrent verified every piece, but in 2.0 a
    /// verified block may still wait in memory for its write. FsOps copies
    /// and extracts the files as soon as it hears `Completed`, so the files
    /// are flushed first and `Completed` is announced on `CacheFlushed` —
    /// or after [`FLUSH_DEADLINE`] at the latest, so a flush that never
    /// answers cannot hold back post-processing forever.
    fn complete_once_on_disk(self: &Arc<Self>, id: TorrentId) {
        if !lock(&self.flushing).insert(id) {
            return;
        }
        if let Err(e) = self.session.flush_cache(&to_lt(id)) {
            tracing::warn!(id = %id, error = %e, "cannot flush a finished torrent; announcing it complete now");
            lock(&self.flushing).remove(&id);
            self.announce_completed(id);
            return;
        }
        let engine = Arc::downgrade(self);
        tokio::spawn(async move {
            tokio::time::sleep(FLUSH_DEADLINE).await;
            if let Some(engine) = engine.upgrade()
                && lock(&engine.flushing).remove(&id)
            {
                tracing::warn!(id = %id, "no flush confirmation in time; announcing the torrent complete");
                engine.announce_completed(id);
            }
        });
    }

    fn on_flushed(&self, id: TorrentId) {
        if lock(&self.flushing).remove(&id) {
            self.announce_completed(id);
        }
    }

    fn announce_completed(&self, id: TorrentId) {
        let traceparent = self.completion_span(id);
        self.emit(EngineEvent::Completed { id, traceparent });
        self.request_save(id);
    }

    /// The span of a finished download (from its add to its first
    /// finish), a child of the add's span; its `traceparent` travels with
    /// `Completed`. Made once per add: a torrent finishing again gets the
    /// same one.
    fn completion_span(&self, id: TorrentId) -> Option<String> {
        let mut traces = lock(&self.traces);
        let add = traces.get_mut(&id)?;
        if let Some(download) = &add.download {
            return Some(download.clone());
        }
        let span = revaer_telemetry::start_at(
            "engine torrent download",
            revaer_telemetry::Kind::Internal,
            Some(&add.traceparent),
            Some(add.added),
        );
        span.set_attribute("revaer.torrent", id.to_string());
        add.download = span.traceparent().map(str::to_owned);
        add.download.clone()
    }

    /// Handles one command.
    pub async fn handle(&self, request: EngineRequest) -> EngineResponse {
        match request {
            EngineRequest::Add(add) => self.add(*add).await,
            EngineRequest::Remove { id, delete_data } => self.remove(id, delete_data).await,
            EngineRequest::Pause { id } => self.act(id, true, lt::Session::pause).await,
            EngineRequest::Resume { id } => self.act(id, true, lt::Session::resume).await,
            EngineRequest::Reannounce { id } => {
                self.act(id, false, lt::Session::force_reannounce).await
            }
            EngineRequest::Recheck { id } => self.act(id, false, lt::Session::force_recheck).await,
            EngineRequest::SetSequential { id, enabled } => {
                self.act(id, true, |s, lid| s.set_sequential(lid, enabled))
                    .await
            }
            EngineRequest::SetTorrentRate {
                id,
                download,
                upload,
            } => {
                let (Some(down), Some(up)) = (rate_to_lt(download), rate_to_lt(upload)) else {
                    return error(
                        EngineErrorKind::Invalid,
                        "rate limits are at most 2147483647 bytes/s",
                    );
                };
                self.act(id, true, |s, lid| s.set_torrent_limits(lid, down, up))
                    .await
            }
            EngineRequest::SelectFiles { id, priorities } => {
                self.select_files(id, &priorities).await
            }
            EngineRequest::SetGlobalRate { download, upload } => {
                self.set_global_rate(download, upload)
            }
            EngineRequest::ConnectPeer { id, addr } => {
                self.act(id, false, |s, lid| s.connect_peer(lid, addr))
                    .await
            }
            EngineRequest::List => EngineResponse::List(self.snapshot()),
            EngineRequest::Detail { id } => self.detail(id),
            EngineRequest::Peers { id } => self.peers(id),
            EngineRequest::SessionInfo => self.session_info(),
            EngineRequest::Subscribe => error(
                EngineErrorKind::Invalid,
                "subscribe is handled by the connection, not as a command",
            ),
        }
    }

    /// Every tracked torrent, sorted by id.
    #[must_use]
    pub fn snapshot(&self) -> Vec<TorrentSummary> {
        self.torrents()
            .values()
            .map(|t| t.summary.clone())
            .collect()
    }

    /// A snapshot, the start-up reports nobody has seen yet, and a receiver
    /// for everything after.
    #[must_use]
    pub fn subscribe(&self) -> Subscription {
        // Subscribe first so no event between the two is lost (a duplicate
        // progress update is harmless; a gap is not).
        let events = self.events.subscribe();
        let backlog = std::mem::take(
            &mut *self
                .startup_reports
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        Subscription {
            snapshot: self.snapshot(),
            backlog,
            events,
        }
    }

    /// Emits a start-up report and keeps it for the first subscriber.
    fn report(&self, event: EngineEvent) {
        self.startup_reports
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(event.clone());
        self.emit(event);
    }

    /// Applies a new configuration live: rate limits, listen interfaces,
    /// protocol switches, connection limit, flush interval.
    pub fn apply_config(&self, config: &Config) {
        *lock(&self.bind_target) = config.engine.bind_target();
        let settings = session_settings(&config.engine);
        *self
            .settings
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = settings.clone();
        self.flush_every_secs
            .store(config.engine.resume_flush_interval_secs, Ordering::Release);
        if let Err(e) = self.session.apply_settings(&settings) {
            tracing::error!(error = %e, "cannot apply engine settings");
        }
        self.check_network();
    }

    /// Saves every torrent's resume data, waiting (bounded) for libtorrent
    /// to deliver it, then stops the background work.
    pub async fn shutdown(&self) {
        let ids: Vec<TorrentId> = self.torrents().keys().copied().collect();
        self.awaiting_save
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend(ids.iter().copied());
        for id in &ids {
            self.request_save(*id);
        }
        let deadline = tokio::time::Instant::now() + SHUTDOWN_SAVE_DEADLINE;
        loop {
            let notified = self.saved.notified();
            let remaining = self
                .awaiting_save
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .len();
            if remaining == 0 {
                break;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                tracing::warn!(remaining, "shutdown: not all resume data arrived in time");
                break;
            }
        }
        self.stopping.store(true, Ordering::Release);
        tracing::info!(torrents = ids.len(), "engine state saved");
    }

    fn session_info(&self) -> EngineResponse {
        match self.session.current_settings() {
            Ok(s) => EngineResponse::Session(Box::new(SessionInfo {
                listen_port: self.session.listen_port(),
                listen_interfaces: s.listen_interfaces,
                download_rate_limit: rate_from_lt(s.download_rate_limit),
                upload_rate_limit: rate_from_lt(s.upload_rate_limit),
                connections_limit: u32::try_from(s.connections_limit).unwrap_or(0),
                dht: s.enable_dht,
                lsd: s.enable_lsd,
                upnp: s.enable_upnp,
                natpmp: s.enable_natpmp,
                utp: s.enable_utp,
            })),
            Err(e) => lt_error(&e),
        }
    }

    /// The port libtorrent listens on.
    #[must_use]
    pub fn listen_port(&self) -> u16 {
        self.session.listen_port()
    }
}

/// Blocks on libtorrent's alert queue in a thread of its own and forwards
/// batches to the async side until the engine stops.
fn spawn_alert_pump(
    session: Arc<lt::Session>,
    tx: mpsc::Sender<Vec<lt::Alert>>,
    stopping: Arc<AtomicBool>,
) {
    let spawned = std::thread::Builder::new()
        .name("alert-pump".to_owned())
        .spawn(move || {
            while !stopping.load(Ordering::Acquire) {
                if session.wait_for_alert(Duration::from_millis(200)) {
                    let batch = session.pop_alerts();
                    if !batch.is_empty() && tx.blocking_send(batch).is_err() {
                        return;
                    }
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the alert pump");
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The default config on 127.0.0.1 with DHT, LSD, `UPnP` and NAT-PMP off.
    pub(crate) fn loopback_config() -> Config {
        let mut config = Config::default();
        config.engine.listen_interfaces = "127.0.0.1:0".to_owned();
        config.engine.enable_dht = false;
        config.engine.enable_lsd = false;
        config.engine.enable_upnp = false;
        config.engine.enable_natpmp = false;
        config
    }

    /// What a command acknowledged survives a `kill -9` right after the
    /// answer: the engine is dropped without its orderly shutdown (no
    /// final save) and a new one restores from disk.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn acknowledged_pause_and_save_path_survive_a_crash() {
        let dir = std::env::temp_dir().join(format!("revaer-engine-crash-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let config = loopback_config();
        let magnet = "magnet:?xt=urn:btih:0123456789abcdef0123456789abcdef01234567&dn=x";
        let engine = Engine::start(&config, dir.join("state"), dir.join("downloads")).unwrap();
        let added = engine
            .handle(EngineRequest::Add(Box::new(AddTorrent {
                source: TorrentSource::Magnet(magnet.to_owned()),
                paused: false,
                sequential: true,
                file_priorities: Vec::new(),
                peers: Vec::new(),
                save_subdir: Some("tv/show".to_owned()),
            })))
            .await;
        let EngineResponse::Added { id } = added else {
            panic!("{added:?}");
        };
        assert_eq!(
            engine.handle(EngineRequest::Pause { id }).await,
            EngineResponse::Done
        );
        // The crash: no shutdown, the session just goes away.
        engine.stopping.store(true, Ordering::Release);
        drop(engine);
        let engine = Engine::start(&config, dir.join("state"), dir.join("downloads")).unwrap();
        let detail = engine.handle(EngineRequest::Detail { id }).await;
        let EngineResponse::Detail(detail) = detail else {
            panic!("{detail:?}");
        };
        assert!(detail.summary.paused, "the acknowledged pause was lost");
        assert!(detail.summary.sequential);
        assert_eq!(detail.save_subdir.as_deref(), Some("tv/show"));
        engine.shutdown().await;
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn save_subdir_accepts_plain_relative_paths_only() {
        assert_eq!(save_subdir("tv/show").unwrap(), Path::new("tv/show"));
        assert_eq!(save_subdir("a").unwrap(), Path::new("a"));
        for bad in ["", "/etc", "../x", "a/../../b", "./a", "a\0b"] {
            assert!(save_subdir(bad).is_err(), "{bad:?} accepted");
        }
        assert!(save_subdir(&"a".repeat(MAX_SAVE_SUBDIR_BYTES + 1)).is_err());
    }

    /// The kill switch of `[engine] interface` (ADR 011): with the bound
    /// interface missing the session is paused from the start, every
    /// torrent added says why and the pong reason is set; a live config
    /// naming an interface that exists lifts it, and naming a missing one
    /// again engages it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_missing_bound_interface_holds_the_session_until_the_config_names_one_that_exists() {
        let dir = std::env::temp_dir().join(format!("revaer-engine-vpn-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut config = loopback_config();
        config.engine.interface = Some("rvmissing0".to_owned());
        let engine = Engine::start(&config, dir.join("state"), dir.join("downloads")).unwrap();
        let reason = engine.degraded().expect("kill switch engaged at start");
        assert!(reason.contains("rvmissing0 is missing"), "{reason}");
        assert!(engine.session.session_paused().unwrap());
        let magnet = "magnet:?xt=urn:btih:1123456789abcdef0123456789abcdef01234567&dn=x";
        let added = engine
            .handle(EngineRequest::Add(Box::new(AddTorrent {
                source: TorrentSource::Magnet(magnet.to_owned()),
                paused: false,
                sequential: false,
                file_priorities: Vec::new(),
                peers: Vec::new(),
                save_subdir: None,
            })))
            .await;
        let EngineResponse::Added { id } = added else {
            panic!("{added:?}");
        };
        let stalled = |engine: &Engine| {
            engine
                .snapshot()
                .into_iter()
                .find(|t| t.id == id)
                .and_then(|t| t.stalled_reason)
        };
        assert_eq!(stalled(&engine).as_deref(), Some(reason.as_str()));

        config.engine.interface = Some("lo".to_owned());
        engine.apply_config(&config);
        assert_eq!(engine.degraded(), None);
        assert!(!engine.session.session_paused().unwrap());
        assert_eq!(stalled(&engine), None);
        assert_eq!(
            engine
                .session
                .current_settings()
                .unwrap()
                .outgoing_interfaces,
            "lo"
        );

        config.engine.interface = Some("rvmissing1".to_owned());
        engine.apply_config(&config);
        assert!(engine.degraded().is_some_and(|r| r.contains("rvmissing1")));
        assert!(engine.session.session_paused().unwrap());
        engine.shutdown().await;
        let _ = std::fs::remove_dir_all(&dir);
    }
}
