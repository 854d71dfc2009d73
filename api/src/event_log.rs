//! The durable event log (DESIGN §6): every public event gets an id from the
//! SQLite `events` table before any SSE client sees it.
//!
//! - **Writing.** [`EventLog::append`] enqueues without waiting (bounded
//!   queue; when it is full the event is counted and dropped), and
//!   [`EventLog::append_durable`] waits for the id. One writer task takes
//!   whatever is queued, up to [`BATCH_MAX`] events, and inserts it in one
//!   transaction, so a burst costs one fsync (`synchronous = FULL`). Only
//!   after the commit are the events broadcast to live subscribers, in id
//!   order; a subscriber therefore never sees an event the log could lose.
//!   A batch that fails to commit is lost: counted, logged, reported by
//!   [`EventLog::last_write_error`] (which `/health/full` shows) until a
//!   later write succeeds, and answered with an error to durable callers.
//! - **Retention.** The newest [`EventLogConfig::retention`] events are
//!   kept; older ones are pruned at start, every tenth of the retention
//!   (at most every 1 000 events) and every [`EventLogConfig::prune_interval`].
//!   Ids are `AUTOINCREMENT`, so they are never reused, and the only gaps
//!   are at the front, where pruning happened.
//! - **Replay.** [`EventLog::replay_page`] reads a bounded page after an id
//!   and reports the oldest retained id, so SSE can tell a pruned gap.
//! - **Engine feed.** [`EventLog::follow_engine`] turns the engine's events
//!   into public ones: snapshots (sent again after every reconnect) produce
//!   nothing, progress is coalesced to one event per torrent per
//!   [`PROGRESS_INTERVAL`] (the newest figures win and are flushed when
//!   due), and a torrent's held-back progress is flushed ahead of any other
//!   event for it so its events stay in order. Engine errors, tracker errors
//!   and quarantined state files become `torrent_error` events.
//! - **Counters** for `/metrics`: dropped appends, engine lag, write
//!   failures, SSE subscribers and SSE subscribers dropped for lagging.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use revaer_api_models::events::{Event, EventKind, TorrentErrorSource};
use revaer_api_models::torrents::TorrentState;
use revaer_ipc::engine::{EngineEvent, TorrentId, TorrentSummary};
use rusqlite::{params, params_from_iter};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::engine_events::EngineEvents;
use crate::read_model::public_state;
use crate::store::{Store, StoreError, now_unix};

/// Events kept by default.
pub const DEFAULT_RETENTION: u64 = 100_000;
/// Most events committed in one transaction.
pub const BATCH_MAX: usize = 1024;
/// At most one `progress` event per torrent per this interval.
pub const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);
/// Most rows a replay page reads.
pub const REPLAY_PAGE: usize = 256;

/// Tunables of the log (tests shrink them).
#[derive(Debug, Clone)]
pub struct EventLogConfig {
    /// Newest events kept in SQLite.
    pub retention: u64,
    /// Events waiting for the writer before [`EventLog::append`] drops.
    pub queue_capacity: usize,
    /// Committed events a live subscriber may fall behind by before it
    /// counts as lagging.
    pub live_capacity: usize,
    /// Pruning also runs this often.
    pub prune_interval: Duration,
}

impl Default for EventLogConfig {
    fn default() -> Self {
        Self {
            retention: DEFAULT_RETENTION,
            queue_capacity: 8192,
            live_capacity: 1024,
            prune_interval: Duration::from_secs(60),
        }
    }
}

/// Why an event could not be logged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventLogError {
    #[error("the event log is not running")]
    Closed,
    #[error("the event could not be written: {0}")]
    Write(String),
}

/// One committed event, with its SSE `data` (the JSON of
/// [`revaer_api_models::events::StoredEvent`]) rendered once.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedEvent {
    pub id: u64,
    pub at: i64,
    pub event: Event,
    data: String,
}

impl LoggedEvent {
    fn new(id: u64, at: i64, event: Event, payload: &str) -> Self {
        let data = format!(r#"{{"id":{id},"at":{at},"event":{payload}}}"#);
        Self {
            id,
            at,
            event,
            data,
        }
    }

    /// The SSE `data`: `{"id":…,"at":…,"event":{…}}`.
    #[must_use]
    pub fn data(&self) -> &str {
        &self.data
    }
}

/// Which events a reader wants; `None` = no restriction. An event must
/// pass every restriction given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    /// Lowercase 40-hex torrent ids; events without a torrent never match.
    pub torrents: Option<HashSet<String>>,
    pub kinds: Option<Vec<EventKind>>,
    /// Restricts `state_changed` events to these new states; other kinds
    /// are not affected (combine with `kinds` to get only transitions).
    pub states: Option<Vec<TorrentState>>,
}

impl EventFilter {
    /// Whether `event` passes.
    #[must_use]
    pub fn matches(&self, event: &Event) -> bool {
        if let Some(torrents) = &self.torrents
            && !event.torrent().is_some_and(|t| torrents.contains(t))
        {
            return false;
        }
        if let Some(kinds) = &self.kinds
            && !kinds.contains(&event.kind())
        {
            return false;
        }
        if let (Some(states), Some(state)) = (&self.states, event.new_state())
            && !states.contains(&state)
        {
            return false;
        }
        true
    }
}

/// One page of a replay.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayPage {
    /// Oldest id still in the log, when it is not empty.
    pub oldest: Option<u64>,
    /// Newest id in the log, when it is not empty.
    pub head: Option<u64>,
    /// Matching events after the asked id, in id order.
    pub events: Vec<LoggedEvent>,
    /// Highest id this page examined (a reader continues after it), when
    /// it examined any.
    pub scanned_to: Option<u64>,
    /// The page reached the newest event.
    pub exhausted: bool,
}

#[derive(Debug, Default)]
struct Stats {
    appends_dropped: AtomicU64,
    engine_lagged: AtomicU64,
    write_errors: AtomicU64,
    sse_subscribers: AtomicU64,
    sse_dropped: AtomicU64,
}

/// What the log shares with its writer task.
#[derive(Debug)]
struct Shared {
    store: Arc<Store>,
    live: broadcast::Sender<Arc<LoggedEvent>>,
    /// Newest committed id; 0 while the log is empty.
    head: AtomicU64,
    stats: Stats,
    last_write_error: Mutex<Option<String>>,
    retention: u64,
}

struct Command {
    at: i64,
    event: Event,
    done: Option<oneshot::Sender<Result<u64, EventLogError>>>,
}

/// The log and its live fan-out.
#[derive(Debug)]
pub struct EventLog {
    shared: Arc<Shared>,
    queue: mpsc::Sender<Command>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Command")
            .field("at", &self.at)
            .field("event", &self.event)
            .finish_non_exhaustive()
    }
}

impl EventLog {
    /// Opens the log and starts feeding it from the engine's events.
    /// Must run inside the Tokio runtime.
    pub fn start(
        store: Arc<Store>,
        engine_events: &Arc<EngineEvents>,
    ) -> Result<Arc<Self>, StoreError> {
        let log = Self::open(store, &EventLogConfig::default())?;
        // Runs as long as the engine's broadcast exists.
        drop(log.follow_engine(engine_events.subscribe()));
        Ok(log)
    }

    /// Opens the log and starts its writer, without an engine feed.
    /// Must run inside the Tokio runtime.
    pub fn open(store: Arc<Store>, config: &EventLogConfig) -> Result<Arc<Self>, StoreError> {
        let head: Option<i64> = store
            .conn()
            .query_row("SELECT MAX(id) FROM events", [], |r| r.get(0))?;
        let (live, _) = broadcast::channel(config.live_capacity.max(1));
        let (queue, rx) = mpsc::channel(config.queue_capacity.max(1));
        let shared = Arc::new(Shared {
            store,
            live,
            head: AtomicU64::new(head.and_then(|h| u64::try_from(h).ok()).unwrap_or(0)),
            stats: Stats::default(),
            last_write_error: Mutex::new(None),
            retention: config.retention.max(1),
        });
        tokio::spawn(write_loop(Arc::clone(&shared), rx, config.prune_interval));
        Ok(Arc::new(Self { shared, queue }))
    }

    /// Id of the newest event, if any.
    #[must_use]
    pub fn head_id(&self) -> Option<u64> {
        match self.shared.head.load(Ordering::Acquire) {
            0 => None,
            id => Some(id),
        }
    }

    /// Queues `event` without waiting. When the queue is full (or the
    /// writer is gone) the event is dropped, logged and counted.
    pub fn append(&self, event: Event) {
        let command = Command {
            at: now_unix(),
            event,
            done: None,
        };
        if let Err(e) = self.queue.try_send(command) {
            let total = self
                .shared
                .stats
                .appends_dropped
                .fetch_add(1, Ordering::Relaxed)
                + 1;
            let (why, command) = match e {
                mpsc::error::TrySendError::Full(c) => ("queue full", c),
                mpsc::error::TrySendError::Closed(c) => ("writer stopped", c),
            };
            // Logged at 1, 2, 4, 8, ... drops: a full queue must not flood the log.
            if total.is_power_of_two() {
                tracing::warn!(
                    kind = command.event.kind().as_str(),
                    why,
                    total,
                    "event dropped"
                );
            }
        }
    }

    /// Logs `event` and returns its id once it is committed.
    pub async fn append_durable(&self, event: Event) -> Result<u64, EventLogError> {
        let (done, answer) = oneshot::channel();
        let command = Command {
            at: now_unix(),
            event,
            done: Some(done),
        };
        self.queue
            .send(command)
            .await
            .map_err(|_| EventLogError::Closed)?;
        answer.await.map_err(|_| EventLogError::Closed)?
    }

    /// Live committed events from now on, in id order.
    #[must_use]
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<LoggedEvent>> {
        self.shared.live.subscribe()
    }

    /// Reads up to `limit` events with an id above `after` that pass
    /// `filter`. Runs on the blocking pool.
    pub async fn replay_page(
        &self,
        after: u64,
        filter: Arc<EventFilter>,
        limit: usize,
    ) -> Result<ReplayPage, StoreError> {
        let store = Arc::clone(&self.shared.store);
        tokio::task::spawn_blocking(move || read_page(&store, after, &filter, limit))
            .await
            .map_err(|e| StoreError::Invalid(format!("replay task failed: {e}")))?
    }

    /// Starts turning engine events into public events; the task ends when
    /// the engine broadcast closes.
    #[must_use = "dropping the handle detaches the task"]
    pub fn follow_engine(
        self: &Arc<Self>,
        events: broadcast::Receiver<EngineEvent>,
    ) -> JoinHandle<()> {
        tokio::spawn(feed(Arc::clone(self), events))
    }

    /// The last failed write, until a write succeeds again.
    #[must_use]
    pub fn last_write_error(&self) -> Option<String> {
        self.shared
            .last_write_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Events [`append`](Self::append) dropped because the queue was full.
    #[must_use]
    pub fn appends_dropped_total(&self) -> u64 {
        self.shared.stats.appends_dropped.load(Ordering::Relaxed)
    }

    /// Engine events missed because the feed lagged the engine broadcast.
    #[must_use]
    pub fn engine_lagged_total(&self) -> u64 {
        self.shared.stats.engine_lagged.load(Ordering::Relaxed)
    }

    /// Batches that failed to commit.
    #[must_use]
    pub fn write_errors_total(&self) -> u64 {
        self.shared.stats.write_errors.load(Ordering::Relaxed)
    }

    /// `revaer_sse_subscribers`: SSE streams open now.
    #[must_use]
    pub fn sse_subscribers(&self) -> u64 {
        self.shared.stats.sse_subscribers.load(Ordering::Relaxed)
    }

    /// `revaer_sse_dropped_total`: SSE streams ended for lagging.
    #[must_use]
    pub fn sse_dropped_total(&self) -> u64 {
        self.shared.stats.sse_dropped.load(Ordering::Relaxed)
    }

    /// Counts an SSE stream ended for lagging.
    pub fn record_sse_dropped(&self) {
        self.shared
            .stats
            .sse_dropped
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an open SSE stream until the guard drops.
    #[must_use]
    pub fn sse_subscriber(&self) -> SubscriberGuard {
        self.shared
            .stats
            .sse_subscribers
            .fetch_add(1, Ordering::Relaxed);
        SubscriberGuard {
            shared: Arc::clone(&self.shared),
        }
    }
}

/// Holds one count in [`EventLog::sse_subscribers`].
#[derive(Debug)]
pub struct SubscriberGuard {
    shared: Arc<Shared>,
}

impl Drop for SubscriberGuard {
    fn drop(&mut self) {
        self.shared
            .stats
            .sse_subscribers
            .fetch_sub(1, Ordering::Relaxed);
    }
}

// ---------------------------------------------------------------- writer

/// One row to insert.
struct NewRow {
    at: i64,
    kind: &'static str,
    torrent: Option<String>,
    payload: String,
}

async fn write_loop(shared: Arc<Shared>, mut queue: mpsc::Receiver<Command>, every: Duration) {
    let prune_every = (shared.retention / 10).clamp(1, 1000);
    let mut since_prune = 0_u64;
    // The first tick is immediate: prune at start.
    let mut prune_timer = tokio::time::interval(every.max(Duration::from_millis(1)));
    prune_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let first = tokio::select! {
            command = queue.recv() => match command {
                Some(command) => command,
                None => break,
            },
            _ = prune_timer.tick() => {
                prune(&shared).await;
                since_prune = 0;
                continue;
            }
        };
        let mut batch = vec![first];
        while batch.len() < BATCH_MAX {
            match queue.try_recv() {
                Ok(command) => batch.push(command),
                Err(_) => break,
            }
        }
        since_prune += batch.len() as u64;
        commit(&shared, batch).await;
        if since_prune >= prune_every {
            prune(&shared).await;
            since_prune = 0;
        }
    }
    tracing::debug!("event log writer stopped");
}

/// Writes one batch in one transaction, then publishes it.
async fn commit(shared: &Arc<Shared>, batch: Vec<Command>) {
    let mut rows = Vec::with_capacity(batch.len());
    let mut meta = Vec::with_capacity(batch.len());
    for command in batch {
        match serde_json::to_string(&command.event) {
            Ok(payload) => {
                rows.push(NewRow {
                    at: command.at,
                    kind: command.event.kind().as_str(),
                    torrent: command.event.torrent().map(str::to_owned),
                    payload,
                });
                meta.push(command);
            }
            Err(e) => {
                tracing::error!(error = %e, "event not serializable");
                if let Some(done) = command.done {
                    let _ = done.send(Err(EventLogError::Write(e.to_string())));
                }
            }
        }
    }
    if rows.is_empty() {
        return;
    }
    let store = Arc::clone(&shared.store);
    let written = tokio::task::spawn_blocking(move || {
        let ids = insert_rows(&store, &rows);
        (rows, ids)
    })
    .await;
    let (rows, ids) = match written {
        Ok((rows, Ok(ids))) => (rows, ids),
        Ok((_, Err(e))) => {
            write_failed(shared, meta, &e.to_string());
            return;
        }
        Err(e) => {
            write_failed(shared, meta, &format!("writer task failed: {e}"));
            return;
        }
    };
    if let Ok(mut last) = shared.last_write_error.lock() {
        *last = None;
    }
    for ((command, row), id) in meta.into_iter().zip(rows).zip(ids) {
        let logged = Arc::new(LoggedEvent::new(
            id,
            command.at,
            command.event,
            &row.payload,
        ));
        shared.head.store(id, Ordering::Release);
        // No receiver is not an error: nobody is listening.
        let _ = shared.live.send(logged);
        if let Some(done) = command.done {
            let _ = done.send(Ok(id));
        }
    }
}

fn write_failed(shared: &Shared, meta: Vec<Command>, error: &str) {
    let total = shared.stats.write_errors.fetch_add(1, Ordering::Relaxed) + 1;
    tracing::error!(error, lost = meta.len(), total, "event log write failed");
    *shared
        .last_write_error
        .lock()
        .unwrap_or_else(PoisonError::into_inner) = Some(error.to_owned());
    for command in meta {
        if let Some(done) = command.done {
            let _ = done.send(Err(EventLogError::Write(error.to_owned())));
        }
    }
}

fn insert_rows(store: &Store, rows: &[NewRow]) -> Result<Vec<u64>, StoreError> {
    let mut conn = store.conn();
    let tx = conn.transaction()?;
    let mut ids = Vec::with_capacity(rows.len());
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO events (at, kind, torrent, payload) VALUES (?1, ?2, ?3, ?4)",
        )?;
        for row in rows {
            let id = insert.insert(params![row.at, row.kind, row.torrent, row.payload])?;
            ids.push(
                u64::try_from(id)
                    .map_err(|_| StoreError::Invalid(format!("negative event id {id}")))?,
            );
        }
    }
    tx.commit()?;
    Ok(ids)
}

async fn prune(shared: &Arc<Shared>) {
    let store = Arc::clone(&shared.store);
    let keep = i64::try_from(shared.retention).unwrap_or(i64::MAX);
    let pruned = tokio::task::spawn_blocking(move || {
        store.conn().execute(
            "DELETE FROM events WHERE id <= (SELECT MAX(id) FROM events) - ?1",
            [keep],
        )
    })
    .await;
    match pruned {
        Ok(Ok(0)) => {}
        Ok(Ok(n)) => tracing::debug!(pruned = n, "event log pruned"),
        Ok(Err(e)) => tracing::warn!(error = %e, "event log prune failed"),
        Err(e) => tracing::warn!(error = %e, "event log prune task failed"),
    }
}

// ---------------------------------------------------------------- replay

fn read_page(
    store: &Store,
    after: u64,
    filter: &EventFilter,
    limit: usize,
) -> Result<ReplayPage, StoreError> {
    let after = i64::try_from(after).unwrap_or(i64::MAX);
    let limit = limit.max(1);
    let mut sql = "SELECT id, at, payload FROM events WHERE id > ?".to_owned();
    let mut args: Vec<rusqlite::types::Value> = vec![after.into()];
    if let Some(kinds) = &filter.kinds {
        sql.push_str(&in_list(" AND kind IN (", kinds.len()));
        args.extend(kinds.iter().map(|k| k.as_str().to_owned().into()));
    }
    if let Some(torrents) = &filter.torrents {
        sql.push_str(&in_list(" AND torrent IN (", torrents.len()));
        args.extend(torrents.iter().map(|t| t.clone().into()));
    }
    sql.push_str(" ORDER BY id LIMIT ?");
    args.push(i64::try_from(limit).unwrap_or(i64::MAX).into());

    // One read transaction for the bounds and the rows, so they describe
    // the same moment (a write may commit in between on the writer
    // connection); parsing happens after it ends.
    let (oldest, head, rows) = {
        let mut conn = store.read_conn();
        let snapshot = conn.transaction()?;
        let (oldest, head): (Option<i64>, Option<i64>) =
            snapshot.query_row("SELECT MIN(id), MAX(id) FROM events", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?;
        let mut select = snapshot.prepare(&sql)?;
        let rows = select
            .query_map(params_from_iter(args), |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        (oldest, head, rows)
    };
    let scanned = rows.len();
    let mut events = Vec::new();
    let mut scanned_to = None;
    for (id, at, payload) in rows {
        let id = u64::try_from(id).unwrap_or(0);
        scanned_to = Some(id);
        match serde_json::from_str::<Event>(&payload) {
            Ok(event) if filter.matches(&event) => {
                events.push(LoggedEvent::new(id, at, event, &payload));
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(id, error = %e, "unreadable event skipped"),
        }
    }
    let to_u64 = |v: Option<i64>| v.and_then(|v| u64::try_from(v).ok());
    Ok(ReplayPage {
        oldest: to_u64(oldest),
        head: to_u64(head),
        events,
        scanned_to,
        exhausted: scanned < limit,
    })
}

fn in_list(prefix: &str, n: usize) -> String {
    let mut s = prefix.to_owned();
    // SQLite accepts an empty list.
    s.push_str(&vec!["?"; n].join(","));
    s.push(')');
    s
}

// ---------------------------------------------------------------- engine feed

async fn feed(log: Arc<EventLog>, mut events: broadcast::Receiver<EngineEvent>) {
    let mut coalescer = Coalescer::new(PROGRESS_INTERVAL);
    loop {
        let due = coalescer.next_due();
        tokio::select! {
            received = events.recv() => match received {
                Ok(event) => {
                    for public in translate(&mut coalescer, event, Instant::now()) {
                        log.append(public);
                    }
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    let total = log
                        .shared
                        .stats
                        .engine_lagged
                        .fetch_add(missed, Ordering::Relaxed)
                        + missed;
                    tracing::warn!(missed, total, "event log lagged the engine's events");
                }
                Err(broadcast::error::RecvError::Closed) => break,
            },
            () = tokio::time::sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => {
                for public in coalescer.due(Instant::now()) {
                    log.append(public);
                }
            }
        }
    }
    for public in coalescer.drain() {
        log.append(public);
    }
}

/// Public events for one engine event.
fn translate(coalescer: &mut Coalescer, event: EngineEvent, now: Instant) -> Vec<Event> {
    let mut out = Vec::new();
    // A torrent's held-back progress goes out ahead of its next event.
    let ordered = |coalescer: &mut Coalescer, id: TorrentId, out: &mut Vec<Event>| {
        if let Some(pending) = coalescer.take(id, now) {
            out.push(pending);
        }
        id.to_string()
    };
    match event {
        EngineEvent::Snapshot(torrents) => {
            // Sent again after every reconnect: describes, never announces.
            coalescer.retain(&torrents.iter().map(|t| t.id).collect());
        }
        EngineEvent::Added(summary) => {
            let torrent = ordered(coalescer, summary.id, &mut out);
            out.push(Event::TorrentAdded {
                torrent,
                name: summary.name,
                state: public_state(summary.state),
            });
        }
        EngineEvent::MetadataReceived { id, name } => {
            let torrent = ordered(coalescer, id, &mut out);
            out.push(Event::MetadataReceived { torrent, name });
        }
        EngineEvent::StateChanged { id, state } => {
            let torrent = ordered(coalescer, id, &mut out);
            out.push(Event::StateChanged {
                torrent,
                state: public_state(state),
            });
        }
        EngineEvent::Progress(summary) => {
            if let Some(progress) = coalescer.progress(&summary, now) {
                out.push(progress);
            }
        }
        EngineEvent::Completed { id, .. } => {
            let torrent = ordered(coalescer, id, &mut out);
            out.push(Event::Completed { torrent });
        }
        EngineEvent::Removed { id } => {
            coalescer.forget(id);
            out.push(Event::TorrentRemoved {
                torrent: id.to_string(),
            });
        }
        EngineEvent::Error { id, message } => {
            let torrent = ordered(coalescer, id, &mut out);
            out.push(Event::TorrentError {
                torrent,
                source: TorrentErrorSource::Torrent,
                message,
                url: None,
            });
        }
        EngineEvent::TrackerError { id, url, message } => {
            let torrent = ordered(coalescer, id, &mut out);
            out.push(Event::TorrentError {
                torrent,
                source: TorrentErrorSource::Tracker,
                message,
                url: Some(url),
            });
        }
        EngineEvent::FilesSelected { id, priorities } => {
            let torrent = ordered(coalescer, id, &mut out);
            out.push(Event::FilesSelected {
                torrent,
                priorities,
            });
        }
        EngineEvent::StateQuarantined { id, reason } => {
            let torrent = ordered(coalescer, id, &mut out);
            out.push(Event::TorrentError {
                torrent,
                source: TorrentErrorSource::StateFile,
                message: reason,
                url: None,
            });
        }
    }
    out
}

fn progress_event(s: &TorrentSummary) -> Event {
    Event::Progress {
        torrent: s.id.to_string(),
        state: public_state(s.state),
        progress: f64::from(s.progress_ppm.min(1_000_000)) / 1_000_000.0,
        download_bps: s.download_bps,
        upload_bps: s.upload_bps,
        peers: s.peers,
        seeds: s.seeds,
        size_wanted: s.total_wanted,
        size_done: s.total_done,
        downloaded: s.downloaded,
        uploaded: s.uploaded,
    }
}

/// Holds back `progress` so each torrent gets at most one per interval,
/// the newest figures winning.
#[derive(Debug)]
struct Coalescer {
    interval: Duration,
    last_sent: HashMap<TorrentId, Instant>,
    pending: HashMap<TorrentId, Event>,
}

impl Coalescer {
    fn new(interval: Duration) -> Self {
        Self {
            interval,
            last_sent: HashMap::new(),
            pending: HashMap::new(),
        }
    }

    /// The progress event to send now, or `None` when it is held back.
    fn progress(&mut self, summary: &TorrentSummary, now: Instant) -> Option<Event> {
        let event = progress_event(summary);
        let free = self
            .last_sent
            .get(&summary.id)
            .is_none_or(|at| now.saturating_duration_since(*at) >= self.interval);
        if free {
            self.pending.remove(&summary.id);
            self.last_sent.insert(summary.id, now);
            Some(event)
        } else {
            self.pending.insert(summary.id, event);
            None
        }
    }

    /// The held-back progress of `id`, to send ahead of another event.
    fn take(&mut self, id: TorrentId, now: Instant) -> Option<Event> {
        let event = self.pending.remove(&id)?;
        self.last_sent.insert(id, now);
        Some(event)
    }

    fn forget(&mut self, id: TorrentId) {
        self.pending.remove(&id);
        self.last_sent.remove(&id);
    }

    /// Keeps only the torrents in `ids` (after a snapshot).
    fn retain(&mut self, ids: &HashSet<TorrentId>) {
        self.pending.retain(|id, _| ids.contains(id));
        self.last_sent.retain(|id, _| ids.contains(id));
    }

    /// When the earliest held-back event is due.
    fn next_due(&self) -> Option<Instant> {
        self.pending
            .keys()
            .filter_map(|id| self.last_sent.get(id))
            .min()
            .map(|at| *at + self.interval)
    }

    /// Held-back events that are due, oldest torrent first.
    fn due(&mut self, now: Instant) -> Vec<Event> {
        let mut ready: Vec<(Instant, TorrentId)> = self
            .pending
            .keys()
            .filter_map(|id| {
                let at = *self.last_sent.get(id)?;
                (now.saturating_duration_since(at) >= self.interval).then_some((at, *id))
            })
            .collect();
        ready.sort();
        ready
            .into_iter()
            .filter_map(|(_, id)| self.take(id, now))
            .collect()
    }

    /// Everything held back (shutdown).
    fn drain(&mut self) -> Vec<Event> {
        self.pending.drain().map(|(_, event)| event).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tid(n: u8) -> TorrentId {
        TorrentId([n; 20])
    }

    fn summary(n: u8, ppm: u32) -> TorrentSummary {
        TorrentSummary {
            id: tid(n),
            name: format!("t{n}"),
            state: revaer_ipc::engine::TorrentState::Downloading,
            progress_ppm: ppm,
            download_bps: 0,
            upload_bps: 0,
            peers: 0,
            seeds: 0,
            total_wanted: 100,
            total_done: 0,
            downloaded: 0,
            uploaded: 0,
            paused: false,
            sequential: false,
            has_metadata: true,
            error: None,
            stalled_reason: None,
        }
    }

    fn completed(n: u8) -> Event {
        Event::Completed {
            torrent: tid(n).to_string(),
        }
    }

    fn progress_of(e: &Event) -> Option<f64> {
        match e {
            Event::Progress { progress, .. } => Some(*progress),
            _ => None,
        }
    }

    fn open(retention: u64) -> Arc<EventLog> {
        let store = Arc::new(Store::in_memory().unwrap());
        EventLog::open(
            store,
            &EventLogConfig {
                retention,
                ..EventLogConfig::default()
            },
        )
        .unwrap()
    }

    async fn all_after(log: &EventLog, after: u64) -> ReplayPage {
        log.replay_page(after, Arc::new(EventFilter::default()), 10_000)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn appends_get_increasing_ids_and_replay_after_an_id() {
        let log = open(1000);
        assert_eq!(log.head_id(), None);
        let mut live = log.subscribe();
        let mut ids = Vec::new();
        for n in 0..5 {
            ids.push(log.append_durable(completed(n)).await.unwrap());
        }
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
        assert_eq!(log.head_id(), ids.last().copied());
        for (n, id) in (0..5).zip(&ids) {
            let e = live.recv().await.unwrap();
            assert_eq!(e.id, *id);
            assert_eq!(e.event, completed(n));
            let data: serde_json::Value = serde_json::from_str(e.data()).unwrap();
            assert_eq!(data["id"], *id);
            assert_eq!(data["event"]["type"], "completed");
        }
        let page = all_after(&log, ids[1]).await;
        let got: Vec<u64> = page.events.iter().map(|e| e.id).collect();
        assert_eq!(got, ids[2..]);
        assert!(page.exhausted);
        assert_eq!(page.oldest, Some(ids[0]));
        assert_eq!(page.head, Some(ids[4]));
    }

    #[tokio::test]
    async fn non_blocking_appends_are_committed_in_order() {
        let log = open(1000);
        let mut live = log.subscribe();
        for n in 0..50 {
            log.append(completed(n));
        }
        let mut last = 0;
        for n in 0..50 {
            let e = live.recv().await.unwrap();
            assert!(e.id > last);
            last = e.id;
            assert_eq!(e.event, completed(n));
        }
        assert_eq!(log.appends_dropped_total(), 0);
    }

    #[tokio::test]
    async fn ids_survive_reopen_and_are_never_reused_after_pruning() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("revaer.db");
        let last = {
            let store = Arc::new(Store::open(&path).unwrap());
            let log = EventLog::open(
                store,
                &EventLogConfig {
                    retention: 2,
                    ..EventLogConfig::default()
                },
            )
            .unwrap();
            let mut last = 0;
            for n in 0..6 {
                last = log.append_durable(completed(n)).await.unwrap();
            }
            last
        };
        let store = Arc::new(Store::open(&path).unwrap());
        let log = EventLog::open(store, &EventLogConfig::default()).unwrap();
        assert_eq!(log.head_id(), Some(last));
        let next = log.append_durable(completed(9)).await.unwrap();
        assert_eq!(next, last + 1);
    }

    #[tokio::test]
    async fn retention_prunes_the_oldest() {
        let log = open(3);
        let mut last = 0;
        for n in 0..10 {
            last = log.append_durable(completed(n)).await.unwrap();
        }
        // At this retention pruning follows every batch; wait for the one
        // after the last commit.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let page = loop {
            let page = all_after(&log, 0).await;
            if page.events.len() == 3 || std::time::Instant::now() > deadline {
                break page;
            }
            tokio::task::yield_now().await;
        };
        let ids: Vec<u64> = page.events.iter().map(|e| e.id).collect();
        assert_eq!(ids, vec![last - 2, last - 1, last]);
        assert_eq!(page.oldest, Some(last - 2));
        assert_eq!(page.head, Some(last));
    }

    #[tokio::test]
    async fn replay_filters_by_kind_torrent_and_state_in_pages() {
        let log = open(1000);
        let a = tid(1).to_string();
        let b = tid(2).to_string();
        for n in 0..10_u8 {
            let torrent = if n % 2 == 0 { a.clone() } else { b.clone() };
            let state = if n % 3 == 0 {
                TorrentState::Seeding
            } else {
                TorrentState::Paused
            };
            log.append(Event::StateChanged { torrent, state });
        }
        log.append(Event::ConfigApplied { revision: 2 });
        let last = log
            .append_durable(Event::Completed { torrent: a.clone() })
            .await
            .unwrap();
        assert_eq!(last, 12);

        let filter = Arc::new(EventFilter {
            torrents: Some(HashSet::from([a.clone()])),
            kinds: Some(vec![EventKind::StateChanged]),
            states: Some(vec![TorrentState::Seeding]),
        });
        // n = 0 and 6 are torrent a, seeding.
        let page = log.replay_page(0, Arc::clone(&filter), 100).await.unwrap();
        let ids: Vec<u64> = page.events.iter().map(|e| e.id).collect();
        assert_eq!(ids, vec![1, 7]);

        // Small pages: the reader walks on with scanned_to.
        let everything = Arc::new(EventFilter::default());
        let mut after = 0;
        let mut seen = Vec::new();
        loop {
            let page = log
                .replay_page(after, Arc::clone(&everything), 5)
                .await
                .unwrap();
            seen.extend(page.events.iter().map(|e| e.id));
            after = page.scanned_to.unwrap_or(after);
            if page.exhausted {
                break;
            }
        }
        assert_eq!(seen, (1..=12).collect::<Vec<_>>());

        // The state filter leaves other kinds alone; the torrent filter
        // excludes events without a torrent.
        let states_only = EventFilter {
            states: Some(vec![TorrentState::Paused]),
            ..EventFilter::default()
        };
        assert!(states_only.matches(&Event::ConfigApplied { revision: 1 }));
        assert!(!states_only.matches(&Event::StateChanged {
            torrent: a.clone(),
            state: TorrentState::Seeding
        }));
        let torrent_only = EventFilter {
            torrents: Some(HashSet::from([a])),
            ..EventFilter::default()
        };
        assert!(!torrent_only.matches(&Event::ConfigApplied { revision: 1 }));
    }

    /// A replay (an SSE client catching up) reads through the store's
    /// read-only connection: a write holding the database does not delay it,
    /// and it sees everything committed before.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn replay_reads_while_a_write_holds_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("revaer.db")).unwrap());
        let log = EventLog::open(Arc::clone(&store), &EventLogConfig::default()).unwrap();
        for n in 0..3 {
            log.append_durable(completed(n)).await.unwrap();
        }
        let (held_tx, held_rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let released = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let holder = {
            let (store, released) = (Arc::clone(&store), Arc::clone(&released));
            std::thread::spawn(move || {
                let conn = store.conn();
                held_tx.send(()).unwrap();
                let _ = done_rx.recv_timeout(std::time::Duration::from_secs(60));
                released.store(true, std::sync::atomic::Ordering::SeqCst);
                drop(conn);
            })
        };
        held_rx.recv().unwrap();
        let page = log
            .replay_page(0, Arc::new(EventFilter::default()), 10)
            .await
            .unwrap();
        assert!(
            !released.load(std::sync::atomic::Ordering::SeqCst),
            "the replay waited for the writer"
        );
        let got: Vec<_> = page.events.iter().map(|e| e.event.clone()).collect();
        assert_eq!(got, vec![completed(0), completed(1), completed(2)]);
        done_tx.send(()).unwrap();
        holder.join().unwrap();
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts() {
        let store = Arc::new(Store::in_memory().unwrap());
        let log = EventLog::open(
            store,
            &EventLogConfig {
                queue_capacity: 2,
                ..EventLogConfig::default()
            },
        )
        .unwrap();
        // The writer cannot run before this test yields (current-thread
        // runtime): two fit in the queue, the rest are dropped.
        for n in 0..20 {
            log.append(completed(n));
        }
        assert_eq!(log.appends_dropped_total(), 18);
        let mut live = log.subscribe();
        assert_eq!(live.recv().await.unwrap().event, completed(0));
        assert_eq!(live.recv().await.unwrap().event, completed(1));
    }

    #[tokio::test]
    async fn a_failed_write_is_reported_and_clears_on_success() {
        let store = Arc::new(Store::in_memory().unwrap());
        let log = EventLog::open(Arc::clone(&store), &EventLogConfig::default()).unwrap();
        store
            .conn()
            .execute_batch(
                "CREATE TRIGGER refuse BEFORE INSERT ON events
                 BEGIN SELECT RAISE(ABORT, 'disk on fire'); END;",
            )
            .unwrap();
        let err = log.append_durable(completed(1)).await.unwrap_err();
        assert!(matches!(&err, EventLogError::Write(m) if m.contains("disk on fire")));
        assert!(log.last_write_error().is_some());
        assert_eq!(log.write_errors_total(), 1);
        store.conn().execute_batch("DROP TRIGGER refuse").unwrap();
        assert!(log.append_durable(completed(1)).await.is_ok());
        assert_eq!(log.last_write_error(), None);
    }

    #[test]
    fn progress_is_coalesced_to_one_per_interval_and_the_newest_flushed() {
        let mut c = Coalescer::new(Duration::from_secs(1));
        let t0 = Instant::now();
        assert!(c.progress(&summary(1, 100), t0).is_some());
        for ppm in [200, 300, 400] {
            assert!(
                c.progress(&summary(1, ppm), t0 + Duration::from_millis(100))
                    .is_none()
            );
        }
        // Another torrent is independent.
        assert!(
            c.progress(&summary(2, 1), t0 + Duration::from_millis(200))
                .is_some()
        );
        assert_eq!(c.next_due(), Some(t0 + Duration::from_secs(1)));
        assert!(c.due(t0 + Duration::from_millis(999)).is_empty());
        let flushed = c.due(t0 + Duration::from_secs(1));
        assert_eq!(flushed.len(), 1);
        assert_eq!(progress_of(&flushed[0]), Some(0.0004));
        assert_eq!(c.next_due(), None);
        // Right after a flush, the next one is held again.
        assert!(
            c.progress(&summary(1, 500), t0 + Duration::from_millis(1500))
                .is_none()
        );
        assert!(
            c.progress(&summary(1, 600), t0 + Duration::from_secs(2))
                .is_some()
        );
        assert_eq!(c.next_due(), None);
    }

    #[test]
    fn held_progress_goes_out_before_the_torrents_next_event_and_removal_drops_it() {
        let mut c = Coalescer::new(Duration::from_secs(1));
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let first = translate(&mut c, EngineEvent::Progress(Box::new(summary(1, 10))), t0);
        assert_eq!(first.len(), 1);
        assert!(
            translate(
                &mut c,
                EngineEvent::Progress(Box::new(summary(1, 20))),
                ms(10)
            )
            .is_empty()
        );
        let out = translate(
            &mut c,
            EngineEvent::Completed {
                id: tid(1),
                traceparent: None,
            },
            ms(20),
        );
        assert_eq!(out.len(), 2);
        assert_eq!(progress_of(&out[0]), Some(0.00002));
        assert_eq!(out[1], completed(1));
        assert!(
            translate(
                &mut c,
                EngineEvent::Progress(Box::new(summary(1, 30))),
                ms(30)
            )
            .is_empty()
        );
        let out = translate(&mut c, EngineEvent::Removed { id: tid(1) }, ms(40));
        assert_eq!(
            out,
            vec![Event::TorrentRemoved {
                torrent: tid(1).to_string()
            }]
        );
        assert_eq!(c.next_due(), None);
    }

    #[test]
    fn snapshots_announce_nothing_and_forget_torrents_that_are_gone() {
        let mut c = Coalescer::new(Duration::from_secs(1));
        let t0 = Instant::now();
        let _ = translate(&mut c, EngineEvent::Progress(Box::new(summary(1, 10))), t0);
        let _ = translate(&mut c, EngineEvent::Progress(Box::new(summary(1, 20))), t0);
        let _ = translate(&mut c, EngineEvent::Progress(Box::new(summary(2, 10))), t0);
        let _ = translate(&mut c, EngineEvent::Progress(Box::new(summary(2, 20))), t0);
        let out = translate(&mut c, EngineEvent::Snapshot(vec![summary(2, 30)]), t0);
        assert!(out.is_empty());
        let flushed = c.due(t0 + Duration::from_secs(1));
        assert_eq!(flushed.len(), 1);
        assert_eq!(flushed[0].torrent(), Some(tid(2).to_string().as_str()));
    }

    #[test]
    fn engine_errors_become_torrent_errors() {
        let mut c = Coalescer::new(Duration::from_secs(1));
        let now = Instant::now();
        let out = translate(
            &mut c,
            EngineEvent::TrackerError {
                id: tid(3),
                url: "http://tracker".to_owned(),
                message: "refused".to_owned(),
            },
            now,
        );
        assert_eq!(
            out,
            vec![Event::TorrentError {
                torrent: tid(3).to_string(),
                source: TorrentErrorSource::Tracker,
                message: "refused".to_owned(),
                url: Some("http://tracker".to_owned()),
            }]
        );
        let out = translate(
            &mut c,
            EngineEvent::StateQuarantined {
                id: tid(3),
                reason: "bad resume".to_owned(),
            },
            now,
        );
        assert!(matches!(
            &out[..],
            [Event::TorrentError {
                source: TorrentErrorSource::StateFile,
                ..
            }]
        ));
        let added = translate(&mut c, EngineEvent::Added(Box::new(summary(4, 0))), now);
        assert_eq!(
            added,
            vec![Event::TorrentAdded {
                torrent: tid(4).to_string(),
                name: "t4".to_owned(),
                state: TorrentState::Downloading,
            }]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_engine_feed_flushes_held_progress_when_due_and_counts_lag() {
        let log = open(1000);
        let mut live = log.subscribe();
        let (engine, rx) = broadcast::channel(4);
        let task = log.follow_engine(rx);
        let started = Instant::now();
        engine
            .send(EngineEvent::Snapshot(vec![summary(1, 0)]))
            .unwrap();
        engine
            .send(EngineEvent::Progress(Box::new(summary(1, 10))))
            .unwrap();
        engine
            .send(EngineEvent::Progress(Box::new(summary(1, 20))))
            .unwrap();
        let first = live.recv().await.unwrap();
        assert_eq!(progress_of(&first.event), Some(0.00001));
        let second = live.recv().await.unwrap();
        assert_eq!(progress_of(&second.event), Some(0.00002));
        assert!(started.elapsed() >= PROGRESS_INTERVAL);

        // Overflow the engine broadcast before the feed can run.
        for n in 0..10 {
            engine
                .send(EngineEvent::Completed {
                    id: tid(n),
                    traceparent: None,
                })
                .unwrap();
        }
        let after_lag = live.recv().await.unwrap();
        assert!(matches!(after_lag.event, Event::Completed { .. }));
        assert_eq!(log.engine_lagged_total(), 6);
        drop(engine);
        task.await.unwrap();
    }
}
