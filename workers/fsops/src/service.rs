//! The FsOps data-channel service: schedules jobs, streams their progress,
//! applies config pushes.
//!
//! - At most [`MAX_CONCURRENT_JOBS`] jobs run at once; others wait for a
//!   slot. Each runs on its own task, its file work on a blocking thread,
//!   inside a tracing span that carries the job's W3C trace id.
//! - One run per torrent: a `Run` for a torrent whose job is queued or
//!   running attaches to it (gets `Started`, the step in progress, then the
//!   rest) instead of starting a second run.
//! - Progress fans out to every attached client with `try_send` on a channel
//!   larger than any job's frame count, so a slow or departed client (the
//!   API went away) never stalls or stops a job.
//! - A config push builds a new [`Policy`]; an invalid one is refused (logged
//!   with its reason) and the old one stays. A push that moves
//!   `library_root` or switches ownership changes on or off cannot be
//!   applied in place (Landlock cannot widen a running process): the
//!   service stops taking jobs, lets running ones stop at a step boundary
//!   and asks `main` to exit with [`crate::EXIT_RESTART_FOR_CONFIG`], so the
//!   supervisor restarts FsOps under the new sandbox.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use revaer_config::{Config, DataLayout, FsopsConfig};
use revaer_ipc::engine::{EngineError, EngineErrorKind, EngineRequest, EngineResponse, TorrentId};
use revaer_ipc::fsops::{FsopsJob, FsopsProgress, FsopsRequest, FsopsStep};
use revaer_worker_bootstrap::data_server::{Service, Subscription};
use tokio::sync::{Notify, Semaphore, mpsc};

use crate::metrics::FsopsMetrics;
use crate::pipeline::{Emit, JobOutcome, RunEnv, run_job};
use crate::policy::{Policy, SandboxKey, process_can_chown};

/// Jobs running at once.
pub const MAX_CONCURRENT_JOBS: usize = 2;
/// Progress frames buffered per client; a job sends at most 21.
const PROGRESS_BUFFER: usize = 64;
/// How long an orderly stop waits for running jobs to reach a step
/// boundary.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// FsOps' [`Service`].
#[derive(Debug, Clone)]
pub struct FsopsService {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    layout: DataLayout,
    /// What the sandbox was built for.
    sandbox_key: SandboxKey,
    can_chown: bool,
    /// The policy in force, or why there is none.
    policy: Mutex<Result<Arc<Policy>, String>>,
    jobs: Mutex<HashMap<TorrentId, Arc<Fanout>>>,
    slots: Semaphore,
    metrics: FsopsMetrics,
    /// Jobs stop at the next step boundary; new ones are not started.
    stopping: AtomicBool,
    restart: Notify,
    /// Signalled whenever a job ends.
    idle: Notify,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl FsopsService {
    /// A service for the data dir `layout` with the `[fsops]` config it
    /// started with.
    #[must_use]
    pub fn new(layout: &DataLayout, config: &FsopsConfig) -> Self {
        Self::with_chown(layout, config, process_can_chown())
    }

    /// As [`FsopsService::new`], stating whether ownership can be changed.
    #[must_use]
    pub fn with_chown(layout: &DataLayout, config: &FsopsConfig, can_chown: bool) -> Self {
        let policy = Policy::from_config(config, layout, can_chown).map(Arc::new);
        match &policy {
            Ok(p) => {
                tracing::info!(library = %p.library_root.display(), move_mode = p.move_mode.as_str(), "fsops policy in force");
            }
            Err(e) => {
                tracing::error!(error = %e, "fsops config refused; jobs fail until it is fixed");
            }
        }
        Self {
            inner: Arc::new(Inner {
                layout: layout.clone(),
                sandbox_key: SandboxKey::of(config, layout),
                can_chown,
                policy: Mutex::new(policy),
                jobs: Mutex::new(HashMap::new()),
                slots: Semaphore::new(MAX_CONCURRENT_JOBS),
                metrics: FsopsMetrics::new(),
                stopping: AtomicBool::new(false),
                restart: Notify::new(),
                idle: Notify::new(),
            }),
        }
    }

    /// The policy in force, or why there is none.
    pub fn policy(&self) -> Result<Arc<Policy>, String> {
        lock(&self.inner.policy).clone()
    }

    /// Applies a new `[fsops]` section. `Err` names why it was refused
    /// (the previous policy stays); `Ok(true)` means FsOps must restart to
    /// apply it (see the module docs), `Ok(false)` that it is in force.
    pub fn apply_fsops_config(&self, config: &FsopsConfig) -> Result<bool, String> {
        let inner = &self.inner;
        let key = SandboxKey::of(config, &inner.layout);
        let restart = key != inner.sandbox_key;
        // A restart regains CAP_CHOWN when root: judge the new config as the
        // restarted process would.
        let can_chown = inner.can_chown || (restart && nix::unistd::geteuid().is_root());
        let policy = Policy::from_config(config, &inner.layout, can_chown)?;
        if restart {
            return Ok(true);
        }
        *lock(&inner.policy) = Ok(Arc::new(policy));
        Ok(false)
    }

    /// Resolves once a config push asked for a restart.
    pub async fn restart_requested(&self) {
        self.inner.restart.notified().await;
    }

    /// Stops taking jobs and waits (at most `timeout`) for running ones to
    /// stop at a step boundary. Returns whether none is left.
    pub async fn drain(&self, timeout: Duration) -> bool {
        self.inner.stopping.store(true, Ordering::Release);
        self.idle(timeout).await
    }

    /// Waits (at most `timeout`) until no job is queued or running.
    /// Returns whether none is left.
    pub async fn idle(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let idle = self.inner.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if lock(&self.inner.jobs).is_empty() {
                return true;
            }
            if tokio::time::timeout_at(deadline, idle).await.is_err() {
                return lock(&self.inner.jobs).is_empty();
            }
        }
    }

    /// Torrents whose jobs are queued or running.
    #[must_use]
    pub fn active(&self) -> usize {
        lock(&self.inner.jobs).len()
    }

    /// Starts `job`, or attaches to its torrent's running job.
    #[must_use]
    pub fn start(&self, job: FsopsJob) -> mpsc::Receiver<FsopsProgress> {
        let (tx, rx) = mpsc::channel(PROGRESS_BUFFER);
        let inner = &self.inner;
        let mut jobs = lock(&inner.jobs);
        if let Some(running) = jobs.get(&job.torrent)
            && running.attach(job.job_id, &tx)
        {
            tracing::info!(job_id = job.job_id, torrent = %job.torrent, "attached to the running job");
            return rx;
        }
        if inner.stopping.load(Ordering::Acquire) {
            // Closed without a terminal frame: the API resumes it later.
            tracing::info!(job_id = job.job_id, "fsops is stopping; job not started");
            return rx;
        }
        let fanout = Arc::new(Fanout::new(job.job_id, tx));
        jobs.insert(job.torrent, Arc::clone(&fanout));
        drop(jobs);
        inner.metrics.queued(1);
        tokio::spawn(job_task(Arc::clone(inner), job, fanout));
        rx
    }
}

/// Runs one job: waits for a slot, runs the pipeline on a blocking thread,
/// then forgets the job (closing every client's stream).
async fn job_task(inner: Arc<Inner>, job: FsopsJob, fanout: Arc<Fanout>) {
    let torrent = job.torrent;
    let permit = inner.slots.acquire().await;
    inner.metrics.queued(-1);
    if permit.is_ok() && !inner.stopping.load(Ordering::Acquire) {
        inner.metrics.running(1);
        let span = job_span(&job);
        let policy = lock(&inner.policy).clone();
        let worker = Arc::clone(&inner);
        let emitter = Arc::clone(&fanout);
        let job_id = job.job_id;
        let ran = tokio::task::spawn_blocking(move || {
            span.in_scope(|| run_blocking(&worker, &job, policy, &emitter));
        })
        .await;
        if let Err(e) = ran {
            tracing::error!(job_id, error = %e, "fsops job crashed");
            fanout.fail_if_open(job_id, "the job crashed (see the FsOps log)");
        }
        inner.metrics.running(-1);
    }
    drop(permit);
    let mut jobs = lock(&inner.jobs);
    if jobs.get(&torrent).is_some_and(|f| Arc::ptr_eq(f, &fanout)) {
        jobs.remove(&torrent);
    }
    drop(jobs);
    fanout.close();
    inner.idle.notify_waiters();
}

fn run_blocking(
    inner: &Inner,
    job: &FsopsJob,
    policy: Result<Arc<Policy>, String>,
    fanout: &Fanout,
) {
    let mut emit = crate::spans::SpanRecorder::new(
        |p: FsopsProgress| fanout.send(&p),
        job.traceparent.as_deref(),
        vec![
            ("revaer.torrent".to_owned(), job.torrent.to_string()),
            ("revaer.fsops.job_id".to_owned(), job.job_id.to_string()),
            ("revaer.fsops.attempt".to_owned(), job.attempt.to_string()),
        ],
    );
    let policy = match policy {
        Ok(p) => p,
        Err(reason) => {
            let step = job.resume_at.unwrap_or(FsopsStep::Validate);
            emit.emit(FsopsProgress::Started {
                job_id: job.job_id,
                step,
            });
            emit.emit(FsopsProgress::Failed {
                job_id: job.job_id,
                step: FsopsStep::Validate,
                reason: format!("fsops policy: {reason}"),
            });
            inner.metrics.job("failed", 0.0);
            return;
        }
    };
    let downloads: PathBuf = inner.layout.downloads();
    tracing::info!(resume_at = ?job.resume_at, files = job.files.len(), "fsops job started");
    let outcome = run_job(
        job,
        &RunEnv {
            policy: &policy,
            downloads: &downloads,
            metrics: &inner.metrics,
            stop: &inner.stopping,
            crash_at: None,
        },
        &mut emit,
    );
    match &outcome {
        JobOutcome::Completed { library_path } | JobOutcome::AlreadyDone { library_path } => {
            tracing::info!(outcome = outcome.label(), %library_path, "fsops job completed");
        }
        JobOutcome::Failed { step, reason } => {
            tracing::warn!(step = step.as_str(), %reason, "fsops job failed");
        }
        JobOutcome::Interrupted { before } => {
            tracing::info!(
                before = before.as_str(),
                "fsops job interrupted; it resumes when re-sent"
            );
        }
    }
}

/// The job's span: its ids, and the W3C trace id of the torrent's add
/// request so that the job's logs join that trace.
fn job_span(job: &FsopsJob) -> tracing::Span {
    let span = tracing::info_span!(
        "fsops_job",
        job_id = job.job_id,
        torrent = %job.torrent,
        attempt = job.attempt,
        trace_id = tracing::field::Empty,
        parent_span_id = tracing::field::Empty,
    );
    if let Some((trace_id, parent)) = trace_ids(job.traceparent.as_deref()) {
        span.record("trace_id", trace_id);
        span.record("parent_span_id", parent);
    }
    span
}

/// `(trace id, parent span id)` of a valid version-00 `traceparent`.
#[must_use]
pub fn trace_ids(traceparent: Option<&str>) -> Option<(&str, &str)> {
    let t = traceparent.filter(|t| revaer_ipc::trace::validate_traceparent(t))?;
    Some((t.get(3..35)?, t.get(36..52)?))
}

/// A job's clients and where the job stands (for late attachers).
#[derive(Debug)]
struct Fanout {
    state: Mutex<FanoutState>,
}

#[derive(Debug)]
struct FanoutState {
    /// `(job id the client asked for, its channel)`.
    clients: Vec<(i64, mpsc::Sender<FsopsProgress>)>,
    started: Option<FsopsStep>,
    current: Option<FsopsStep>,
    /// A terminal frame was sent.
    finished: bool,
}

impl Fanout {
    fn new(job_id: i64, tx: mpsc::Sender<FsopsProgress>) -> Self {
        Self {
            state: Mutex::new(FanoutState {
                clients: vec![(job_id, tx)],
                started: None,
                current: None,
                finished: false,
            }),
        }
    }

    /// Adds a client, catching it up. `false` when the job already ended.
    fn attach(&self, job_id: i64, tx: &mpsc::Sender<FsopsProgress>) -> bool {
        let mut state = lock(&self.state);
        if state.finished {
            return false;
        }
        if let Some(started) = state.started {
            let step = state.current.unwrap_or(started);
            let _ = tx.try_send(FsopsProgress::Started { job_id, step });
            if let Some(step) = state.current {
                let _ = tx.try_send(FsopsProgress::StepStarted { job_id, step });
            }
        }
        state.clients.push((job_id, tx.clone()));
        true
    }

    /// Sends a frame to every client (each with its own job id); a client
    /// that is gone or full is dropped, the job goes on.
    fn send(&self, progress: &FsopsProgress) {
        let mut state = lock(&self.state);
        match progress {
            FsopsProgress::Started { step, .. } => state.started = Some(*step),
            FsopsProgress::StepStarted { step, .. } => state.current = Some(*step),
            FsopsProgress::StepFinished { .. } => state.current = None,
            FsopsProgress::Completed { .. } | FsopsProgress::Failed { .. } => {
                state.finished = true;
            }
            FsopsProgress::Spans(_) => {}
        }
        state
            .clients
            .retain(|(job_id, tx)| tx.try_send(with_job_id(progress.clone(), *job_id)).is_ok());
    }

    /// Sends `Failed` unless a terminal frame went out already.
    fn fail_if_open(&self, job_id: i64, reason: &str) {
        let (finished, step) = {
            let state = lock(&self.state);
            (state.finished, state.current.or(state.started))
        };
        if !finished {
            self.send(&FsopsProgress::Failed {
                job_id,
                step: step.unwrap_or(FsopsStep::Validate),
                reason: reason.to_owned(),
            });
        }
    }

    /// Drops every client's sender: their streams end.
    fn close(&self) {
        let mut state = lock(&self.state);
        state.finished = true;
        state.clients.clear();
    }
}

fn with_job_id(progress: FsopsProgress, id: i64) -> FsopsProgress {
    match progress {
        FsopsProgress::Started { step, .. } => FsopsProgress::Started { job_id: id, step },
        FsopsProgress::StepStarted { step, .. } => FsopsProgress::StepStarted { job_id: id, step },
        FsopsProgress::StepFinished { step, outcome, .. } => FsopsProgress::StepFinished {
            job_id: id,
            step,
            outcome,
        },
        FsopsProgress::Completed { library_path, .. } => FsopsProgress::Completed {
            job_id: id,
            library_path,
        },
        FsopsProgress::Failed { step, reason, .. } => FsopsProgress::Failed {
            job_id: id,
            step,
            reason,
        },
        FsopsProgress::Spans(spans) => FsopsProgress::Spans(spans),
    }
}

impl Service for FsopsService {
    async fn handle(
        &self,
        _request: EngineRequest,
        _traceparent: Option<String>,
    ) -> EngineResponse {
        EngineResponse::Error(EngineError {
            kind: EngineErrorKind::Invalid,
            message: "fsops does not take engine commands".to_owned(),
        })
    }

    fn subscribe(&self) -> Option<Subscription> {
        None
    }

    async fn apply_config(&self, config: &Config) {
        match self.apply_fsops_config(&config.fsops) {
            Ok(false) => tracing::info!("fsops policy updated"),
            Ok(true) => {
                tracing::warn!(
                    code = crate::EXIT_RESTART_FOR_CONFIG,
                    "fsops.library_root or owner/group changed: FsOps exits so that revaerd \
                     restarts it under a sandbox that covers the new settings"
                );
                self.inner.stopping.store(true, Ordering::Release);
                self.inner.restart.notify_one();
            }
            Err(e) => {
                tracing::error!(error = %e, "fsops config refused; the previous policy stays in force");
            }
        }
    }

    async fn shutdown(&self) {
        if !self.drain(DRAIN_TIMEOUT).await {
            tracing::warn!("fsops jobs still running at shutdown; they resume on the next start");
        }
    }

    fn run_fsops(&self, request: FsopsRequest) -> Option<mpsc::Receiver<FsopsProgress>> {
        let FsopsRequest::Run(job) = request;
        Some(self.start(*job))
    }

    fn metrics(&self) -> String {
        self.inner.metrics.render()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_ids_come_from_valid_traceparents_only() {
        assert_eq!(
            trace_ids(Some(
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
            )),
            Some(("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"))
        );
        assert_eq!(trace_ids(Some("garbage")), None);
        assert_eq!(trace_ids(None), None);
    }
}
