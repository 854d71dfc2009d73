//! Orchestration of FsOps jobs: the API side of post-processing.
//!
//! When the engine reports a torrent `completed`, a `pending` job row is
//! recorded in SQLite (once per torrent) and dispatched to the FsOps worker
//! on a dedicated data connection. That report is sent once, live: one the
//! API never recorded (it was killed, or had not subscribed yet) is not
//! sent again, by the engine or after an API restart. So the engine's state
//! is the backstop: every snapshot of the event stream (each connection,
//! API start, falling behind) records a job for every complete torrent that
//! has none, and a torrent the snapshot shows still checking or paused is
//! watched until it settles. Every progress frame FsOps streams back
//! is journaled before anything else happens: `step` holds the step that is
//! running, `steps` the finished ones. If the connection drops before the
//! job ends (FsOps killed, API restarted), the job is still `running` at
//! its journaled step; it is dispatched again — at start-up, or when FsOps
//! is back — with `resume_at` set to that step. Steps are idempotent on the
//! FsOps side, so the job finishes exactly once. Each transition becomes a
//! public event (`fsops_started`, `fsops_step`, `fsops_completed`,
//! `fsops_failed`); failed jobs degrade `/health/full` until retried
//! (`fsops_retry`) or their torrent is removed. `fsops_completed` is
//! committed to the event log *before* the job is marked completed: a crash
//! in between leaves the job running, and its re-dispatch finds the event
//! (a torrent has one job, so one such event) instead of adding a second.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use revaer_api_models::events::{Event, EventKind};
use revaer_ipc::engine::{
    EngineEvent, EngineRequest, EngineResponse, TorrentDetail, TorrentId, TorrentState,
    TorrentSummary,
};
use revaer_ipc::fsops::{FsopsJob, FsopsProgress, FsopsRequest, FsopsStep, JobFile};
use revaer_ipc::{Envelope, IpcError, WorkerRequest, WorkerResponse};
use tokio::sync::{broadcast, mpsc};

use crate::engine_events::EngineEvents;
use crate::event_log::{EventFilter, EventLog, EventLogError};
use crate::links::{LinkParams, WorkerLink, open};
use crate::read_model::ReadModel;
use crate::store::catalog::FsopsJobRow;
use crate::store::{Store, StoreError};

/// Dispatches of one job before it is declared failed.
pub const MAX_ATTEMPTS: u32 = 10;
/// Wait before dispatching an interrupted job again.
const REDISPATCH_AFTER: Duration = Duration::from_millis(500);
/// Longest a job may stay silent (FsOps sends progress at every step).
const SILENCE_LIMIT: Duration = Duration::from_secs(6 * 3600);
/// Tries to read the engine's list when the dispatcher starts after the
/// snapshot went by (the request link may still be connecting).
const CATCH_UP_TRIES: u32 = 100;
const CATCH_UP_RETRY: Duration = Duration::from_millis(50);

/// Why a dispatch did not reach an end.
#[derive(Debug, thiserror::Error)]
enum DispatchError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("FsOps link: {0}")]
    Ipc(#[from] IpcError),
    #[error("event log: {0}")]
    EventLog(#[from] EventLogError),
    #[error("engine: {0}")]
    Engine(String),
    #[error("FsOps: {0}")]
    Remote(String),
    #[error("FsOps went quiet for {0:?}")]
    Silent(Duration),
    #[error("the job vanished from the store")]
    Gone,
}

/// The dispatcher shared by the API.
#[derive(Debug)]
pub struct FsopsDispatcher {
    store: Arc<Store>,
    events: Arc<EventLog>,
    torrents: Arc<ReadModel>,
    engine: WorkerLink,
    params: LinkParams,
    queue: mpsc::UnboundedSender<i64>,
    running: Mutex<HashSet<i64>>,
    failed_jobs: AtomicU64,
    /// `[fsops] move_mode = "move"`: the files left the downloads dir, so
    /// a completed job also removes its torrent from the engine.
    moves: AtomicBool,
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Invalid(format!("store task failed: {e}")))?
}

impl FsopsDispatcher {
    /// Starts following completions and dispatches every unfinished job
    /// (those an interruption left `running` resume at their step). Must run
    /// inside the Tokio runtime.
    #[allow(
        clippy::needless_pass_by_value,
        reason = "takes ownership like the other start functions"
    )]
    pub fn start(
        store: Arc<Store>,
        events: Arc<EventLog>,
        torrents: Arc<ReadModel>,
        engine: WorkerLink,
        engine_events: &Arc<EngineEvents>,
        fsops: LinkParams,
    ) -> Result<Arc<Self>, StoreError> {
        let (queue, rx) = mpsc::unbounded_channel();
        let failed = store.fsops_jobs_failed()?;
        let dispatcher = Arc::new(Self {
            store: Arc::clone(&store),
            events,
            torrents,
            engine,
            params: fsops,
            queue,
            running: Mutex::new(HashSet::new()),
            failed_jobs: AtomicU64::new(failed),
            moves: AtomicBool::new(false),
        });
        for job in store.fsops_jobs_unfinished()? {
            let _ = dispatcher.queue.send(job.id);
        }
        tokio::spawn(Arc::clone(&dispatcher).dispatch_loop(rx));
        // Subscribed first, then asked whether the snapshot went by already
        // (`connected` turns true before the snapshot is broadcast): either
        // the snapshot is still to come, or the list is read instead.
        let events = engine_events.subscribe();
        let missed_snapshot = *engine_events.connected().borrow();
        tokio::spawn(Arc::clone(&dispatcher).follow(events, missed_snapshot));
        Ok(dispatcher)
    }

    /// Follows `[fsops] move_mode` (at start and on every config push).
    pub fn set_moves(&self, moves: bool) {
        self.moves.store(moves, Ordering::Release);
    }

    /// Jobs that failed and await a retry (they degrade health).
    #[must_use]
    pub fn failed_jobs(&self) -> u64 {
        self.failed_jobs.load(Ordering::Acquire)
    }

    async fn refresh_failed(&self) {
        let store = Arc::clone(&self.store);
        if let Ok(n) = blocking(move || store.fsops_jobs_failed()).await {
            self.failed_jobs.store(n, Ordering::Release);
        }
    }

    /// `fsops_retry`: puts the torrent's failed job back in line. `None`
    /// when its newest job did not fail.
    pub async fn retry(&self, torrent: TorrentId) -> Result<Option<i64>, StoreError> {
        let store = Arc::clone(&self.store);
        let key = torrent.to_string();
        let job = blocking(move || store.fsops_job_retry(&key)).await?;
        self.refresh_failed().await;
        Ok(job.map(|job| {
            self.torrents.set_fsops(torrent, Some("pending".to_owned()));
            let _ = self.queue.send(job.id);
            job.id
        }))
    }

    async fn follow(
        self: Arc<Self>,
        mut events: broadcast::Receiver<EngineEvent>,
        missed_snapshot: bool,
    ) {
        // Torrents a snapshot showed checking or paused: complete or not is
        // known once they settle.
        let mut unsettled = HashSet::new();
        if missed_snapshot {
            self.catch_up(&mut unsettled).await;
        }
        loop {
            match events.recv().await {
                Ok(EngineEvent::Completed { id, traceparent }) => {
                    unsettled.remove(&id);
                    self.completed(id, traceparent).await;
                }
                Ok(EngineEvent::Removed { id }) => {
                    unsettled.remove(&id);
                    let store = Arc::clone(&self.store);
                    let key = id.to_string();
                    if let Err(e) = blocking(move || store.fsops_jobs_cancel(&key)).await {
                        tracing::error!(id = %id, error = %e, "cannot cancel FsOps jobs");
                    }
                    self.refresh_failed().await;
                }
                Ok(EngineEvent::Snapshot(summaries)) => {
                    self.reconcile(&summaries, &mut unsettled).await;
                }
                Ok(EngineEvent::Added(summary) | EngineEvent::Progress(summary))
                    if unsettled.contains(&summary.id) =>
                {
                    if is_complete(&summary) {
                        unsettled.remove(&summary.id);
                        self.record_missed(vec![summary.id]).await;
                    } else if !may_be_settling(summary.state) {
                        unsettled.remove(&summary.id);
                    }
                }
                Ok(EngineEvent::StateChanged { id, state }) if unsettled.contains(&id) => {
                    if matches!(state, TorrentState::Finished | TorrentState::Seeding) {
                        unsettled.remove(&id);
                        self.record_missed(vec![id]).await;
                    } else if !may_be_settling(state) {
                        unsettled.remove(&id);
                    }
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    // Completions may be among the missed events: the
                    // engine's list tells which torrents are complete.
                    tracing::warn!(
                        missed,
                        "FsOps dispatcher fell behind the engine's events; re-reading its list"
                    );
                    self.catch_up(&mut unsettled).await;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }

    /// Reconciles with the engine's list, read now (the snapshot went by
    /// before this subscription, or events were missed). Bounded in tries:
    /// the request link may still be connecting.
    async fn catch_up(&self, unsettled: &mut HashSet<TorrentId>) {
        for _ in 0..CATCH_UP_TRIES {
            match self
                .engine
                .request(WorkerRequest::Engine(EngineRequest::List))
                .await
            {
                Ok(WorkerResponse::Engine(EngineResponse::List(list))) => {
                    self.reconcile(&list, unsettled).await;
                    return;
                }
                Ok(other) => {
                    tracing::warn!(?other, "unexpected answer to List");
                    return;
                }
                Err(e) => tracing::debug!(error = %e, "engine list unavailable; retrying"),
            }
            tokio::time::sleep(CATCH_UP_RETRY).await;
        }
        tracing::warn!(
            "cannot read the engine's list; completions it holds are recorded at its next snapshot"
        );
    }

    /// A snapshot replaces what is known of the engine: every complete
    /// torrent without a job gets one; those still checking or paused are
    /// watched until they settle.
    async fn reconcile(&self, summaries: &[TorrentSummary], unsettled: &mut HashSet<TorrentId>) {
        unsettled.clear();
        let mut complete = Vec::new();
        for summary in summaries {
            if is_complete(summary) {
                complete.push(summary.id);
            } else if may_be_settling(summary.state) {
                unsettled.insert(summary.id);
            }
        }
        self.record_missed(complete).await;
    }

    /// Records a job for each of these complete torrents that has none:
    /// their live completion was never recorded.
    async fn record_missed(&self, complete: Vec<TorrentId>) {
        // The catalog knows most jobs already; the store answers for the
        // rest (e.g. a torrent removed and added again keeps its old job).
        let unknown: Vec<TorrentId> = complete
            .into_iter()
            .filter(|id| {
                self.torrents
                    .catalog(id)
                    .is_none_or(|catalog| catalog.fsops.is_none())
            })
            .collect();
        if unknown.is_empty() {
            return;
        }
        let store = Arc::clone(&self.store);
        let without_job = blocking(move || {
            let mut out = Vec::new();
            for id in unknown {
                if store.fsops_job_latest(&id.to_string())?.is_none() {
                    out.push(id);
                }
            }
            Ok(out)
        })
        .await;
        match without_job {
            Ok(ids) => {
                for id in ids {
                    tracing::info!(id = %id, "complete torrent without an FsOps job (its completion was missed); recording one");
                    self.completed(id, None).await;
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot look up FsOps jobs"),
        }
    }

    /// Records the job for a completed torrent (once) and dispatches it.
    /// The engine's download span (when it has one) becomes the torrent's
    /// remembered trace, so the job — and any resumption of it after a
    /// restart — is its child (ADR 008).
    async fn completed(&self, id: TorrentId, traceparent: Option<String>) {
        let store = Arc::clone(&self.store);
        let key = id.to_string();
        let traceparent = traceparent.filter(|t| revaer_ipc::trace::validate_traceparent(t));
        let created = blocking(move || {
            if let Some(tp) = &traceparent {
                store.catalog_set_traceparent(&key, tp)?;
            }
            let created = store.fsops_job_create(&key)?;
            Ok((created, store.fsops_job_latest(&key)?))
        })
        .await;
        match created {
            Ok((true, Some(job))) => {
                tracing::info!(id = %id, job = job.id, "FsOps job recorded");
                self.torrents.set_fsops(id, Some("pending".to_owned()));
                let _ = self.queue.send(job.id);
            }
            Ok(_) => {}
            Err(e) => tracing::error!(id = %id, error = %e, "cannot record the FsOps job"),
        }
    }

    async fn dispatch_loop(self: Arc<Self>, mut queue: mpsc::UnboundedReceiver<i64>) {
        while let Some(job_id) = queue.recv().await {
            let fresh = self
                .running
                .lock()
                .is_ok_and(|mut running| running.insert(job_id));
            if fresh {
                tokio::spawn(Arc::clone(&self).run(job_id));
            }
        }
    }

    /// Runs one job until it ends, re-dispatching after interruptions.
    async fn run(self: Arc<Self>, job_id: i64) {
        loop {
            match self.dispatch(job_id).await {
                Ok(()) => break,
                Err(e) => {
                    let store = Arc::clone(&self.store);
                    let job = blocking(move || store.fsops_job(job_id)).await;
                    let attempts = job.ok().flatten().map_or(0, |j| j.attempts);
                    if attempts >= MAX_ATTEMPTS {
                        let reason = format!("gave up after {attempts} attempts; last: {e}");
                        self.finish_failed(job_id, None, &reason).await;
                        break;
                    }
                    tracing::warn!(job = job_id, attempts, error = %e, "FsOps job interrupted; will resume");
                    tokio::time::sleep(REDISPATCH_AFTER).await;
                }
            }
        }
        if let Ok(mut running) = self.running.lock() {
            running.remove(&job_id);
        }
    }

    /// The job description FsOps needs, from the engine's view of the
    /// torrent and the catalog.
    async fn describe(&self, row: &FsopsJobRow) -> Result<FsopsJob, DispatchError> {
        let torrent: TorrentId = row
            .torrent
            .parse()
            .map_err(|_| DispatchError::Engine(format!("bad torrent id {}", row.torrent)))?;
        let detail: TorrentDetail = match self
            .engine
            .request(WorkerRequest::Engine(EngineRequest::Detail { id: torrent }))
            .await
        {
            Ok(WorkerResponse::Engine(EngineResponse::Detail(detail))) => *detail,
            Ok(other) => return Err(DispatchError::Engine(format!("answered {other:?}"))),
            Err(e) => return Err(DispatchError::Engine(e.to_string())),
        };
        let store = Arc::clone(&self.store);
        let key = row.torrent.clone();
        let traceparent = blocking(move || store.catalog_traceparent(&key)).await?;
        let name = detail.summary.name.clone();
        let source = match &detail.save_subdir {
            Some(sub) => format!("{sub}/{name}"),
            None => name.clone(),
        };
        let resume_at = match row.state.as_str() {
            "running" | "pending" => row.step.as_deref().and_then(FsopsStep::parse),
            _ => None,
        };
        Ok(FsopsJob {
            job_id: row.id,
            torrent,
            name,
            source,
            files: detail
                .files
                .iter()
                .filter(|f| f.priority > 0)
                .map(|f| JobFile {
                    path: f.path.clone(),
                    size: f.size,
                })
                .collect(),
            category: self.torrents.catalog(&torrent).and_then(|c| c.category),
            resume_at,
            attempt: row.attempts + 1,
            traceparent,
        })
    }

    /// One dispatch: `Ok` when the job reached an end (completed, failed,
    /// or no longer wanted), `Err` when it was interrupted.
    async fn dispatch(&self, job_id: i64) -> Result<(), DispatchError> {
        let store = Arc::clone(&self.store);
        let row = blocking(move || store.fsops_job(job_id))
            .await?
            .ok_or(DispatchError::Gone)?;
        if !matches!(row.state.as_str(), "pending" | "running") {
            return Ok(());
        }
        let mut job = self.describe(&row).await?;
        let torrent = job.torrent;
        let mut conn = open(&self.params).await?;
        // Only a dispatch that reaches FsOps counts as an attempt: FsOps
        // being down for a while must not use up a job's attempts.
        let store = Arc::clone(&self.store);
        job.attempt = blocking(move || store.fsops_job_dispatched(job_id)).await?;
        conn.send(&Envelope {
            request_id: u64::try_from(job_id).unwrap_or(0),
            traceparent: job.traceparent.clone(),
            body: WorkerRequest::Fsops(FsopsRequest::Run(Box::new(job))),
        })
        .await?;
        loop {
            let frame =
                tokio::time::timeout(SILENCE_LIMIT, conn.recv::<Envelope<WorkerResponse>>())
                    .await
                    .map_err(|_| DispatchError::Silent(SILENCE_LIMIT))??;
            let Some(frame) = frame else {
                return Err(DispatchError::Ipc(IpcError::UnexpectedMessage(
                    "FsOps closed the job stream before its end",
                )));
            };
            match frame.body {
                WorkerResponse::Fsops(progress) => {
                    if self.journal(job_id, torrent, progress).await? {
                        return Ok(());
                    }
                }
                WorkerResponse::Error(e) => return Err(DispatchError::Remote(e.message)),
                _ => {
                    return Err(DispatchError::Ipc(IpcError::UnexpectedMessage(
                        "non-progress frame on a job stream",
                    )));
                }
            }
        }
    }

    /// Journals one progress frame, then publishes it. `true` at the end.
    async fn journal(
        &self,
        job_id: i64,
        torrent: TorrentId,
        progress: FsopsProgress,
    ) -> Result<bool, DispatchError> {
        let id = torrent.to_string();
        match progress {
            FsopsProgress::Started { step, .. } => {
                let store = Arc::clone(&self.store);
                let name = step.as_str();
                blocking(move || store.fsops_job_step_started(job_id, name)).await?;
                self.torrents.set_fsops(torrent, Some("running".to_owned()));
                self.events.append(Event::FsopsStarted { torrent: id });
                Ok(false)
            }
            FsopsProgress::StepStarted { step, .. } => {
                let store = Arc::clone(&self.store);
                blocking(move || store.fsops_job_step_started(job_id, step.as_str())).await?;
                Ok(false)
            }
            FsopsProgress::StepFinished { step, outcome, .. } => {
                let store = Arc::clone(&self.store);
                let outcome_name = outcome.as_str();
                blocking(move || {
                    store.fsops_job_step_finished(job_id, step.as_str(), outcome_name)
                })
                .await?;
                self.events.append(Event::FsopsStep {
                    torrent: id,
                    step: step.as_str().to_owned(),
                    outcome: outcome.as_str().to_owned(),
                });
                Ok(false)
            }
            FsopsProgress::Completed { library_path, .. } => {
                // Announced durably, then recorded (see the module docs).
                if !self.completion_announced(&id).await? {
                    self.events
                        .append_durable(Event::FsopsCompleted {
                            torrent: id,
                            library_path: library_path.clone(),
                        })
                        .await?;
                }
                let store = Arc::clone(&self.store);
                let path = library_path;
                blocking(move || store.fsops_job_completed(job_id, &path)).await?;
                self.torrents
                    .set_fsops(torrent, Some("completed".to_owned()));
                self.refresh_failed().await;
                tracing::info!(job = job_id, torrent = %torrent, "FsOps job completed");
                if self.moves.load(Ordering::Acquire) {
                    self.stop_seeding(torrent).await;
                }
                Ok(true)
            }
            FsopsProgress::Failed { step, reason, .. } => {
                self.finish_failed(job_id, Some(step), &reason).await;
                Ok(true)
            }
            FsopsProgress::Spans(spans) => {
                relay_spans(spans);
                Ok(false)
            }
        }
    }

    /// Whether the log holds the torrent's `fsops_completed` already: its
    /// job was announced, then interrupted before it was marked completed.
    async fn completion_announced(&self, torrent: &str) -> Result<bool, DispatchError> {
        let filter = EventFilter {
            torrents: Some(HashSet::from([torrent.to_owned()])),
            kinds: Some(vec![EventKind::FsopsCompleted]),
            states: None,
        };
        let page = self.events.replay_page(0, Arc::new(filter), 1).await?;
        Ok(!page.events.is_empty())
    }

    /// After a `move` job the files live in the library only: the torrent
    /// leaves the engine (its data is gone from the downloads dir anyway).
    async fn stop_seeding(&self, torrent: TorrentId) {
        tracing::info!(torrent = %torrent, "files moved to the library; removing the torrent from seeding");
        let request = EngineRequest::Remove {
            id: torrent,
            delete_data: false,
        };
        match self.engine.request(WorkerRequest::Engine(request)).await {
            Ok(WorkerResponse::Engine(EngineResponse::Done)) => {
                self.torrents.removed(torrent).await;
            }
            Ok(other) => {
                tracing::warn!(torrent = %torrent, ?other, "engine refused the removal after a move");
            }
            Err(e) => {
                tracing::warn!(torrent = %torrent, error = %e, "cannot remove the torrent after a move");
            }
        }
    }

    async fn finish_failed(&self, job_id: i64, step: Option<FsopsStep>, reason: &str) {
        let store = Arc::clone(&self.store);
        let step_name = step.map_or("dispatch", FsopsStep::as_str);
        let why = reason.to_owned();
        let row = blocking(move || {
            store.fsops_job_failed(job_id, step_name, &why)?;
            store.fsops_job(job_id)
        })
        .await;
        match row {
            Ok(Some(row)) => {
                if let Ok(torrent) = row.torrent.parse() {
                    self.torrents.set_fsops(torrent, Some("failed".to_owned()));
                }
                self.events.append(Event::FsopsFailed {
                    torrent: row.torrent,
                    step: step.map(|s| s.as_str().to_owned()),
                    message: reason.to_owned(),
                });
                tracing::warn!(job = job_id, step = step_name, reason, "FsOps job failed");
            }
            Ok(None) => {}
            Err(e) => tracing::error!(job = job_id, error = %e, "cannot record the FsOps failure"),
        }
        self.refresh_failed().await;
    }
}

/// Whether the engine holds every wanted byte of the torrent, checked: its
/// completion has happened, reported or not.
fn is_complete(summary: &TorrentSummary) -> bool {
    summary.has_metadata
        && summary.total_wanted > 0
        && summary.total_done >= summary.total_wanted
        && !matches!(
            summary.state,
            TorrentState::CheckingResumeData
                | TorrentState::CheckingFiles
                | TorrentState::DownloadingMetadata
        )
}

/// States in which a torrent's completeness may still change without a
/// `Completed`: checking (a restored torrent reaches seeding without one)
/// and paused (its counters may predate the check).
fn may_be_settling(state: TorrentState) -> bool {
    matches!(
        state,
        TorrentState::CheckingResumeData | TorrentState::CheckingFiles | TorrentState::Paused
    )
}

/// Exports FsOps' spans (it has no network, ADR 008), bounded in count and
/// size whatever FsOps sent.
fn relay_spans(spans: Vec<revaer_ipc::trace::SpanRecord>) {
    use revaer_ipc::trace::{MAX_RELAYED_SPANS, MAX_RELAYED_TEXT};
    let bounded = spans
        .into_iter()
        .take(MAX_RELAYED_SPANS)
        .filter(|s| s.name.len() <= MAX_RELAYED_TEXT && s.attributes.len() <= 16)
        .map(|mut s| {
            s.attributes
                .retain(|(k, v)| k.len() <= MAX_RELAYED_TEXT && v.len() <= MAX_RELAYED_TEXT);
            if let Some(e) = &mut s.error
                && e.len() > MAX_RELAYED_TEXT
            {
                let mut cut = MAX_RELAYED_TEXT;
                while !e.is_char_boundary(cut) {
                    cut -= 1;
                }
                e.truncate(cut);
            }
            s
        });
    revaer_telemetry::relay("revaer-fsops", bounded);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::time::Instant;

    use axum::http::StatusCode;

    use super::*;
    use crate::store::catalog::FsopsJobRow;
    use crate::test_harness::Harness;

    /// Uploads a scripted torrent (three files of 100 bytes) named `name`.
    async fn upload(h: &Harness, name: &[u8]) -> TorrentId {
        let mut torrent = b"d".to_vec();
        torrent.extend_from_slice(name);
        let (status, _, value) = h.upload(&torrent, None).await;
        assert_eq!(status, StatusCode::CREATED, "{value}");
        value["id"].as_str().unwrap().parse().unwrap()
    }

    /// The engine's summary of a torrent holding `done` of its 300 bytes.
    fn summary(id: TorrentId, state: TorrentState, done: u64) -> TorrentSummary {
        TorrentSummary {
            id,
            name: id.to_string(),
            state,
            progress_ppm: u32::try_from(done * 1_000_000 / 300).unwrap(),
            download_bps: 0,
            upload_bps: 0,
            peers: 0,
            seeds: 0,
            total_wanted: 300,
            total_done: done,
            downloaded: done,
            uploaded: 0,
            paused: state == TorrentState::Paused,
            sequential: false,
            has_metadata: true,
            error: None,
            stalled_reason: None,
        }
    }

    fn job(h: &Harness, id: TorrentId) -> Option<FsopsJobRow> {
        h.state.store.fsops_job_latest(&id.to_string()).unwrap()
    }

    /// Polls until the torrent's job is `completed` (10 s deadline).
    async fn wait_completed(h: &Harness, id: TorrentId) -> FsopsJobRow {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let row = job(h, id);
            if let Some(row) = row.as_ref().filter(|j| j.state == "completed") {
                return row.clone();
            }
            assert!(
                Instant::now() < deadline,
                "the FsOps job of {id} never completed: {row:?}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// The torrent's `fsops_completed` events in the log.
    async fn completions(h: &Harness, id: TorrentId) -> usize {
        let filter = EventFilter {
            torrents: Some(HashSet::from([id.to_string()])),
            kinds: Some(vec![EventKind::FsopsCompleted]),
            states: None,
        };
        let page = h
            .state
            .events
            .replay_page(0, Arc::new(filter), 100)
            .await
            .unwrap();
        page.events.len()
    }

    /// The chaos soak's finding: a torrent whose `Completed` the API never
    /// recorded (killed first) got no job, ever: neither the engine nor a
    /// restarted API reports it again. The snapshot that opens every
    /// subscription now brings it in; a torrent the snapshot shows checking
    /// gets its job once it settles complete, and an unfinished one none.
    #[tokio::test]
    async fn a_completion_missed_by_the_api_is_recorded_from_the_engine_snapshot() {
        let h = Harness::start().await;
        h.fsops.release();
        let missed = upload(&h, b"4:info-missed").await;
        let checking = upload(&h, b"4:info-checking").await;
        let downloading = upload(&h, b"4:info-downloading").await;
        // What a restarted API's subscription starts with: no `Completed`
        // will follow for `missed`, nor for `checking` when its check of
        // resume data ends.
        h.engine.emit(EngineEvent::Snapshot(vec![
            summary(missed, TorrentState::Seeding, 300),
            summary(checking, TorrentState::CheckingResumeData, 0),
            summary(downloading, TorrentState::Downloading, 100),
        ]));
        wait_completed(&h, missed).await;
        assert_eq!(completions(&h, missed).await, 1);
        // The snapshot was reconciled as one: the others got no job.
        assert!(job(&h, checking).is_none());
        assert!(job(&h, downloading).is_none());
        // The incomplete one progressing is not a completion…
        h.engine.emit(EngineEvent::Progress(Box::new(summary(
            downloading,
            TorrentState::Downloading,
            200,
        ))));
        // …the checked one settling complete is.
        h.engine.emit(EngineEvent::StateChanged {
            id: checking,
            state: TorrentState::Seeding,
        });
        wait_completed(&h, checking).await;
        assert_eq!(completions(&h, checking).await, 1);
        assert!(job(&h, downloading).is_none());
        // The same snapshot again (another reconnection): nothing new.
        h.engine.emit(EngineEvent::Snapshot(vec![summary(
            missed,
            TorrentState::Seeding,
            300,
        )]));
        h.engine.emit(EngineEvent::Completed {
            id: downloading,
            traceparent: None,
        });
        wait_completed(&h, downloading).await;
        assert_eq!(h.fsops.jobs.lock().unwrap().len(), 3);
        assert_eq!(completions(&h, missed).await, 1);
    }

    /// A crash between marking a job completed and logging its
    /// `fsops_completed` lost the event for good (the job, completed, never
    /// ran again). Here the log refuses that event on the first attempt, as
    /// a crash before its commit would leave it: the job must stay
    /// unfinished and announce its completion on the next one.
    #[tokio::test]
    async fn a_completion_is_never_recorded_without_its_event() {
        let h = Harness::start().await;
        h.fsops.release();
        h.state
            .store
            .conn()
            .execute_batch(
                "CREATE TEMP TRIGGER refuse_first_completion BEFORE INSERT ON events
                 WHEN NEW.kind = 'fsops_completed'
                  AND (SELECT attempts FROM fsops_jobs ORDER BY id DESC LIMIT 1) = 1
                 BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END;",
            )
            .unwrap();
        let id = upload(&h, b"4:info-refused").await;
        h.engine.emit(EngineEvent::Completed {
            id,
            traceparent: None,
        });
        let row = wait_completed(&h, id).await;
        assert!(
            h.state.events.write_errors_total() >= 1,
            "the log never refused the event"
        );
        assert_eq!(
            completions(&h, id).await,
            1,
            "completed without its fsops_completed: {row:?}"
        );
        assert_eq!(row.attempts, 2);
    }

    /// The other side of announcing first: a crash after the event's commit
    /// and before the job is marked completed (here: that write fails once)
    /// leaves the job running; its re-dispatch must not announce it again.
    #[tokio::test]
    async fn a_resumed_job_does_not_announce_its_completion_twice() {
        let h = Harness::start().await;
        h.fsops.release();
        h.state
            .store
            .conn()
            .execute_batch(
                "CREATE TEMP TRIGGER refuse_first_record BEFORE UPDATE ON fsops_jobs
                 WHEN NEW.state = 'completed' AND OLD.attempts = 1
                 BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END;",
            )
            .unwrap();
        let id = upload(&h, b"4:info-twice").await;
        h.engine.emit(EngineEvent::Completed {
            id,
            traceparent: None,
        });
        let row = wait_completed(&h, id).await;
        assert_eq!(row.attempts, 2, "{row:?}");
        assert_eq!(h.fsops.jobs.lock().unwrap().len(), 2);
        assert_eq!(completions(&h, id).await, 1);
    }
}
