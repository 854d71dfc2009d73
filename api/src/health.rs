//! `/health/full`: turns what the supervisor reports and what the data
//! channels observe into one readiness verdict.
//!
//! A worker is up only when the supervisor says it is running *and* the API
//! holds an authenticated data channel to it with a recent pong; the
//! supervisor's crash notice therefore degrades health immediately, without
//! waiting for a ping to time out.
//!
//! The API's own store counts too: when SQLite does not answer, or the last
//! event-log write failed, `api` is degraded. SQLite is asked in the
//! background ([`StoreProbe`]), never by a health request: on a slow disk a
//! write can hold the database for seconds, and the control plane must
//! keep answering meanwhile.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use revaer_api_models::{
    BuildInfo, ConfigHealth, HealthFull, HealthStatus, SandboxInfo, StoreHealth, WorkerExitInfo,
    WorkerHealth,
};
use revaer_ipc::{Role, SandboxReport, SupervisionSnapshot, WorkerState, WorkerStatus};

use crate::event_log::EventLog;
use crate::links::LinkStatus;
use crate::store::Store;

/// A pong older than this counts as a missed health ping.
pub const PONG_STALE_AFTER: Duration = Duration::from_secs(3);

/// Everything `/health/full` is computed from.
#[derive(Debug)]
pub struct HealthInputs<'a> {
    pub snapshot: Option<&'a SupervisionSnapshot>,
    pub engine: &'a LinkStatus,
    pub fsops: &'a LinkStatus,
    pub api_sandbox: &'a SandboxReport,
    pub api_config_revision: u64,
    /// See [`StoreProbe::health`].
    pub store: &'a StoreHealth,
    pub event_log_head: Option<u64>,
    /// FsOps jobs that failed and await a retry.
    pub fsops_failed_jobs: u64,
    /// A torrent stopped because the downloads filesystem is full.
    pub downloads_full: bool,
    pub now: Instant,
}

/// How often [`StoreProbe`] asks SQLite for `SELECT 1`.
pub const STORE_PROBE_EVERY: Duration = Duration::from_secs(2);
/// A probe still unanswered after this long (queued behind a write the
/// disk is not finishing) degrades health.
pub const STORE_STALL_AFTER: Duration = Duration::from_secs(10);

/// What the background probe of the store last saw, read by `/health/full`
/// without touching the database.
#[derive(Debug, Default)]
pub struct StoreProbe {
    state: Mutex<ProbeState>,
}

#[derive(Debug, Default)]
struct ProbeState {
    /// The last finished probe's error, if it failed.
    error: Option<String>,
    /// How long the last finished probe waited for its answer.
    last_took: Duration,
    /// When the probe now waiting for SQLite started.
    pending_since: Option<Instant>,
}

impl StoreProbe {
    #[must_use]
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ProbeState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Probes `store` every [`STORE_PROBE_EVERY`] on the blocking pool
    /// until the probe itself is dropped. Must run inside the Tokio runtime.
    pub fn spawn(self: &Arc<Self>, store: Arc<Store>) {
        let probe = Arc::downgrade(self);
        tokio::spawn(probe_loop(probe, store));
    }

    /// One probe: waits for the database (on the blocking pool) and
    /// records the answer.
    pub async fn probe_once(&self, store: &Arc<Store>) {
        let started = Instant::now();
        self.lock().pending_since = Some(started);
        let store = Arc::clone(store);
        let answer = tokio::task::spawn_blocking(move || {
            store
                .conn()
                .query_row("SELECT 1", [], |r| r.get::<_, i64>(0))
                .map(drop)
                .map_err(|e| format!("database: {e}"))
        })
        .await
        .unwrap_or_else(|e| Err(format!("database probe failed: {e}")));
        let mut state = self.lock();
        state.pending_since = None;
        state.last_took = started.elapsed();
        state.error = answer.err();
    }

    /// How long the database takes to answer, as of `now`: the last
    /// probe's wait, or the current probe's wait so far when that is
    /// longer (a stuck disk shows as a growing value).
    #[must_use]
    pub fn response_time(&self, now: Instant) -> Duration {
        let state = self.lock();
        let waiting = state
            .pending_since
            .map_or(Duration::ZERO, |since| now.saturating_duration_since(since));
        state.last_took.max(waiting)
    }

    /// The store's health at `now`: the last probe's error, a probe
    /// waiting longer than [`STORE_STALL_AFTER`], or the event log's last
    /// write failure if it has not recovered since.
    #[must_use]
    pub fn health(&self, events: &EventLog, now: Instant) -> StoreHealth {
        let (error, pending_since) = {
            let state = self.lock();
            (state.error.clone(), state.pending_since)
        };
        let stalled = pending_since
            .map(|since| now.saturating_duration_since(since))
            .filter(|waited| *waited > STORE_STALL_AFTER)
            .map(|waited| {
                format!(
                    "database has not answered for {} s (the state directory's disk is slow or stuck)",
                    waited.as_secs()
                )
            });
        let error = stalled.or(error).or_else(|| {
            events
                .last_write_error()
                .map(|e| format!("event log write failed: {e}"))
        });
        StoreHealth {
            ok: error.is_none(),
            error,
        }
    }
}

async fn probe_loop(probe: Weak<StoreProbe>, store: Arc<Store>) {
    let mut every = tokio::time::interval(STORE_PROBE_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let Some(probe) = probe.upgrade() else {
            return;
        };
        probe.probe_once(&store).await;
    }
}

/// Computes the readiness document.
#[must_use]
pub fn health_full(inputs: &HealthInputs<'_>) -> HealthFull {
    let mut degraded = Vec::new();
    let mut workers = BTreeMap::new();
    for role in Role::WORKERS {
        let status = inputs
            .snapshot
            .and_then(|s| s.workers.iter().find(|w| w.role == role));
        let health = match role {
            Role::Api => api_health(status, inputs),
            Role::Engine => linked_health(status, inputs.engine, inputs.now),
            _ => linked_health(status, inputs.fsops, inputs.now),
        };
        if !health.up {
            degraded.push(role.as_str().to_owned());
        }
        workers.insert(role.as_str().to_owned(), health);
    }
    let config = if let Some(s) = inputs.snapshot {
        ConfigHealth {
            revision: s.config.revision,
            watch_latency_ms: s.config.watch_latency_ms,
            error: s.config.error.clone(),
            failures: s.config.failures,
        }
    } else {
        degraded.push("supervisor".to_owned());
        ConfigHealth {
            revision: 0,
            watch_latency_ms: None,
            error: Some("no report from the supervisor yet".to_owned()),
            failures: 0,
        }
    };
    if inputs.snapshot.is_some() && config.error.is_some() {
        degraded.push("config".to_owned());
    }
    if inputs.downloads_full {
        degraded.push("downloads".to_owned());
    }
    // The engine runs but its kill switch holds every transfer (the bound
    // network interface is missing): `network`, with the reason on the
    // engine.
    if let Some(reason) = engine_degraded(inputs) {
        degraded.push("network".to_owned());
        if let Some(engine) = workers.get_mut(Role::Engine.as_str())
            && engine.reason.is_none()
        {
            engine.reason = Some(reason);
        }
    }
    if inputs.fsops_failed_jobs > 0 {
        degraded.push("fsops".to_owned());
        if let Some(fsops) = workers.get_mut(Role::Fsops.as_str())
            && fsops.reason.is_none()
        {
            fsops.reason = Some(format!(
                "{} post-processing job(s) failed; see the torrent's fsops_job and retry with the fsops_retry action",
                inputs.fsops_failed_jobs
            ));
        }
    }
    degraded.sort();
    degraded.dedup();
    HealthFull {
        status: if degraded.is_empty() {
            HealthStatus::Ok
        } else {
            HealthStatus::Degraded
        },
        degraded,
        workers,
        config,
        store: inputs.store.clone(),
        event_log_head: inputs.event_log_head,
        build: BuildInfo {
            version: revaer_ipc::build_info::VERSION.to_owned(),
            revision: revaer_ipc::build_info::GIT_REVISION.to_owned(),
        },
    }
}

/// What the engine's latest pong says it cannot do, if the pong is fresh
/// (a stale one degrades health as "no recent health ping answer" instead).
fn engine_degraded(inputs: &HealthInputs<'_>) -> Option<String> {
    let fresh = inputs
        .engine
        .last_pong_at
        .is_some_and(|at| inputs.now.saturating_duration_since(at) <= PONG_STALE_AFTER);
    inputs
        .engine
        .last_pong
        .as_ref()
        .filter(|_| fresh && inputs.engine.connected)
        .and_then(|p| p.degraded.clone())
}

fn api_health(status: Option<&WorkerStatus>, inputs: &HealthInputs<'_>) -> WorkerHealth {
    let reason = (!inputs.store.ok).then(|| {
        format!(
            "store: {}",
            inputs.store.error.as_deref().unwrap_or("unavailable")
        )
    });
    WorkerHealth {
        up: reason.is_none(),
        state: "running".to_owned(),
        pid: Some(std::process::id()),
        restarts: status.map_or(0, |s| s.restarts),
        last_exit: status.and_then(|s| s.last_exit.as_ref()).map(exit_info),
        reason,
        config_revision: Some(inputs.api_config_revision),
        sandbox: Some(sandbox_info(inputs.api_sandbox)),
    }
}

fn linked_health(status: Option<&WorkerStatus>, link: &LinkStatus, now: Instant) -> WorkerHealth {
    let state = status.map(|s| s.state);
    let fresh_pong = link
        .last_pong_at
        .is_some_and(|at| now.saturating_duration_since(at) <= PONG_STALE_AFTER);
    let pong = link.last_pong.as_ref();
    let supervisor_pid = status.and_then(|s| s.pid);
    let same_process = pong.is_some_and(|p| Some(p.pid) == supervisor_pid);
    let reason = match state {
        None => Some("no report from the supervisor yet".to_owned()),
        Some(WorkerState::Starting) => Some("starting".to_owned()),
        Some(WorkerState::Restarting { delay_ms }) => {
            let why = status
                .and_then(|s| s.last_exit.as_ref())
                .map_or_else(|| "exited".to_owned(), |e| e.reason.clone());
            Some(format!("{why}; restarting in {delay_ms} ms"))
        }
        Some(WorkerState::Stopped) => Some("stopped".to_owned()),
        Some(WorkerState::Running) if !link.connected => Some(format!(
            "data channel down: {}",
            link.last_error.as_deref().unwrap_or("connecting")
        )),
        Some(WorkerState::Running) if !fresh_pong || !same_process => {
            Some("no recent health ping answer".to_owned())
        }
        Some(WorkerState::Running) => None,
    };
    WorkerHealth {
        up: reason.is_none(),
        state: state.map_or("unknown", state_name).to_owned(),
        pid: supervisor_pid,
        restarts: status.map_or(0, |s| s.restarts),
        last_exit: status.and_then(|s| s.last_exit.as_ref()).map(exit_info),
        reason,
        config_revision: pong.filter(|_| same_process).map(|p| p.config_revision),
        sandbox: pong
            .filter(|_| same_process)
            .map(|p| &p.sandbox)
            .or_else(|| status.and_then(|s| s.sandbox.as_ref()))
            .map(sandbox_info),
    }
}

fn state_name(state: WorkerState) -> &'static str {
    match state {
        WorkerState::Starting => "starting",
        WorkerState::Running => "running",
        WorkerState::Restarting { .. } => "restarting",
        WorkerState::Stopped => "stopped",
    }
}

fn exit_info(e: &revaer_ipc::WorkerExit) -> WorkerExitInfo {
    WorkerExitInfo {
        pid: e.pid,
        code: e.code,
        signal: e.signal,
        reason: e.reason.clone(),
        at_unix_ms: e.at_unix_ms,
        restart_delay_ms: e.restart_delay_ms,
    }
}

/// The public form of a sandbox report.
#[must_use]
pub fn sandbox_info(r: &SandboxReport) -> SandboxInfo {
    SandboxInfo {
        no_new_privs: r.no_new_privs,
        landlock_abi: r.landlock_abi,
        landlock_status: r.landlock_status.clone(),
        seccomp: r.seccomp,
        seccomp_denied: r.seccomp_denied.clone(),
        capabilities: r.capabilities.clone(),
        uid: r.uid,
        gid: r.gid,
        umask: format!("{:04o}", r.umask),
        core_dumps: r.core_dumps,
        inherited_fds_closed: r.inherited_fds_closed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use revaer_ipc::{ConfigStatus, Pong, WorkerExit};

    fn snapshot(engine: WorkerState, config_error: Option<&str>) -> SupervisionSnapshot {
        let status = |role, state, pid| WorkerStatus {
            role,
            state,
            pid,
            restarts: 0,
            last_exit: None,
            sandbox: None,
        };
        SupervisionSnapshot {
            supervisor_pid: 1,
            workers: vec![
                status(Role::Engine, engine, Some(10)),
                status(Role::Fsops, WorkerState::Running, Some(11)),
                status(Role::Api, WorkerState::Running, Some(12)),
            ],
            config: ConfigStatus {
                revision: 1,
                error: config_error.map(str::to_owned),
                ..ConfigStatus::default()
            },
        }
    }

    fn link(pid: u32, at: Instant) -> LinkStatus {
        LinkStatus {
            connected: true,
            last_pong: Some(Pong {
                role: Role::Engine,
                pid,
                uptime_ms: 1,
                config_revision: 1,
                sandbox: SandboxReport::default(),
                degraded: None,
            }),
            last_pong_at: Some(at),
            last_error: None,
        }
    }

    fn compute(
        snap: Option<&SupervisionSnapshot>,
        engine: &LinkStatus,
        now: Instant,
    ) -> HealthFull {
        compute_with_store(snap, engine, now, &healthy_store())
    }

    fn healthy_store() -> StoreHealth {
        StoreHealth {
            ok: true,
            error: None,
        }
    }

    fn compute_with_store(
        snap: Option<&SupervisionSnapshot>,
        engine: &LinkStatus,
        now: Instant,
        store: &StoreHealth,
    ) -> HealthFull {
        let fsops = link(11, now);
        health_full(&HealthInputs {
            snapshot: snap,
            engine,
            fsops: &fsops,
            api_sandbox: &SandboxReport::default(),
            api_config_revision: 1,
            store,
            event_log_head: Some(42),
            fsops_failed_jobs: 0,
            downloads_full: false,
            now,
        })
    }

    #[test]
    fn failed_fsops_jobs_degrade_fsops_until_retried() {
        let now = Instant::now();
        let snapshot = snapshot(WorkerState::Running, None);
        let engine = link(10, now);
        let fsops = link(11, now);
        let store = StoreHealth {
            ok: true,
            error: None,
        };
        let sandbox = SandboxReport::default();
        let inputs = |failed| HealthInputs {
            snapshot: Some(&snapshot),
            engine: &engine,
            fsops: &fsops,
            api_sandbox: &sandbox,
            api_config_revision: 1,
            store: &store,
            event_log_head: None,
            fsops_failed_jobs: failed,
            downloads_full: false,
            now,
        };
        let ok = health_full(&inputs(0));
        assert_eq!(ok.status, HealthStatus::Ok, "{ok:?}");
        let bad = health_full(&inputs(2));
        assert_eq!(bad.degraded, vec!["fsops".to_owned()]);
        let reason = bad.workers["fsops"].reason.clone().unwrap();
        assert!(
            reason.contains("2 post-processing job(s) failed"),
            "{reason}"
        );
        assert!(bad.workers["fsops"].up, "the worker itself is fine");
    }

    #[test]
    fn a_full_downloads_disk_is_named() {
        let now = Instant::now();
        let snap = snapshot(WorkerState::Running, None);
        let engine = link(10, now);
        let fsops = link(11, now);
        let report = SandboxReport::default();
        let store = healthy_store();
        let h = health_full(&HealthInputs {
            snapshot: Some(&snap),
            engine: &engine,
            fsops: &fsops,
            api_sandbox: &report,
            api_config_revision: 1,
            store: &store,
            event_log_head: None,
            fsops_failed_jobs: 0,
            downloads_full: true,
            now,
        });
        assert_eq!(h.status, HealthStatus::Degraded);
        assert_eq!(h.degraded, vec!["downloads".to_owned()]);
    }

    #[test]
    fn an_engine_whose_kill_switch_holds_degrades_network_with_the_reason() {
        let now = Instant::now();
        let snap = snapshot(WorkerState::Running, None);
        let mut engine = link(10, now);
        if let Some(pong) = engine.last_pong.as_mut() {
            pong.degraded = Some("network interface wg0 is missing".to_owned());
        }
        let h = compute(Some(&snap), &engine, now);
        assert_eq!(h.status, HealthStatus::Degraded);
        assert_eq!(h.degraded, vec!["network".to_owned()]);
        let worker = &h.workers["engine"];
        assert!(worker.up, "the engine itself runs: {worker:?}");
        assert_eq!(
            worker.reason.as_deref(),
            Some("network interface wg0 is missing")
        );

        // A stale pong's claim is not repeated: that is a ping problem.
        let stale = compute(Some(&snap), &engine, now + PONG_STALE_AFTER * 2);
        assert!(!stale.degraded.contains(&"network".to_owned()), "{stale:?}");

        // Once the pong no longer says so, health is ok again.
        if let Some(pong) = engine.last_pong.as_mut() {
            pong.degraded = None;
        }
        assert_eq!(compute(Some(&snap), &engine, now).status, HealthStatus::Ok);
    }

    #[test]
    fn all_running_and_answering_is_ok() {
        let now = Instant::now();
        let h = compute(
            Some(&snapshot(WorkerState::Running, None)),
            &link(10, now),
            now,
        );
        assert_eq!(h.status, HealthStatus::Ok, "{h:?}");
        assert!(h.degraded.is_empty());
    }

    #[test]
    fn supervisor_crash_notice_degrades_even_with_a_fresh_pong() {
        let now = Instant::now();
        let mut snap = snapshot(WorkerState::Restarting { delay_ms: 100 }, None);
        snap.workers[0].last_exit = Some(WorkerExit {
            pid: 10,
            code: None,
            signal: Some(9),
            reason: "killed by SIGKILL".to_owned(),
            at_unix_ms: 0,
            restart_delay_ms: Some(100),
        });
        let h = compute(Some(&snap), &link(10, now), now);
        assert_eq!(h.status, HealthStatus::Degraded);
        assert_eq!(h.degraded, vec!["engine"]);
        let reason = h.workers["engine"].reason.clone().unwrap();
        assert!(reason.contains("SIGKILL"), "{reason}");
    }

    #[test]
    fn stale_pong_or_pong_from_old_process_degrades() {
        let now = Instant::now();
        let snap = snapshot(WorkerState::Running, None);
        let stale = link(10, now.checked_sub(Duration::from_secs(10)).unwrap());
        assert_eq!(compute(Some(&snap), &stale, now).degraded, vec!["engine"]);
        let old_pid = link(9, now);
        assert_eq!(compute(Some(&snap), &old_pid, now).degraded, vec!["engine"]);
    }

    #[test]
    fn config_error_and_missing_supervisor_are_named() {
        let now = Instant::now();
        let h = compute(
            Some(&snapshot(WorkerState::Running, Some("bad"))),
            &link(10, now),
            now,
        );
        assert_eq!(h.degraded, vec!["config"]);
        let h = compute(None, &link(10, now), now);
        assert!(h.degraded.contains(&"supervisor".to_owned()));
        assert!(h.degraded.contains(&"engine".to_owned()));
    }

    #[test]
    fn a_failing_store_degrades_the_api_and_is_reported() {
        let now = Instant::now();
        let snap = snapshot(WorkerState::Running, None);
        let h = compute(Some(&snap), &link(10, now), now);
        assert!(h.store.ok);
        assert_eq!(h.event_log_head, Some(42));
        let failing = StoreHealth {
            ok: false,
            error: Some("disk I/O error".to_owned()),
        };
        let h = compute_with_store(Some(&snap), &link(10, now), now, &failing);
        assert_eq!(h.status, HealthStatus::Degraded);
        assert_eq!(h.degraded, vec!["api"]);
        assert!(!h.workers["api"].up);
        let reason = h.workers["api"].reason.clone().unwrap();
        assert!(reason.contains("disk I/O error"), "{reason}");
        assert_eq!(h.store, failing);
    }

    /// An in-memory store and its event log (needs the runtime).
    fn store_and_events() -> (Arc<Store>, Arc<EventLog>) {
        let store = Arc::new(Store::in_memory().unwrap());
        let events = EventLog::open(
            Arc::clone(&store),
            &crate::event_log::EventLogConfig::default(),
        )
        .unwrap();
        (store, events)
    }

    #[tokio::test]
    async fn store_health_probes_the_database_and_the_event_log() {
        let (store, events) = store_and_events();
        let probe = StoreProbe::new();
        probe.probe_once(&store).await;
        assert_eq!(probe.health(&events, Instant::now()), healthy_store());
        store
            .conn()
            .execute_batch(
                "CREATE TRIGGER refuse BEFORE INSERT ON events
                 BEGIN SELECT RAISE(ABORT, 'no space'); END;",
            )
            .unwrap();
        let failed = events
            .append_durable(revaer_api_models::events::Event::ConfigApplied { revision: 1 })
            .await;
        assert!(failed.is_err());
        let h = probe.health(&events, Instant::now());
        assert!(!h.ok);
        assert!(h.error.unwrap().contains("no space"));
    }

    /// A write holding the database (a slow disk) never blocks the health
    /// check: it answers at once from the probe's last answer, and reports
    /// the database stuck once the waiting probe passes the limit.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_database_held_by_a_slow_write_does_not_block_health() {
        let (store, events) = store_and_events();
        let probe = StoreProbe::new();
        let (held_tx, held_rx) = std::sync::mpsc::channel();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let writer = {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                let _conn = store.conn();
                held_tx.send(()).unwrap();
                release_rx.recv().unwrap();
            })
        };
        held_rx.recv().unwrap();
        let waiting = {
            let (probe, store) = (Arc::clone(&probe), Arc::clone(&store));
            tokio::spawn(async move { probe.probe_once(&store).await })
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while probe.lock().pending_since.is_none() {
            assert!(Instant::now() < deadline, "the probe never started");
            tokio::task::yield_now().await;
        }
        // Answered while the database is held: still ok just after...
        assert_eq!(probe.health(&events, Instant::now()), healthy_store());
        // ...and stuck once the probe has waited past the limit.
        let later = Instant::now() + STORE_STALL_AFTER + Duration::from_secs(1);
        let stuck = probe.health(&events, later);
        assert!(probe.response_time(later) > STORE_STALL_AFTER);
        assert!(!stuck.ok);
        assert!(
            stuck.error.as_deref().unwrap().contains("has not answered"),
            "{stuck:?}"
        );
        release_tx.send(()).unwrap();
        writer.join().unwrap();
        waiting.await.unwrap();
        assert_eq!(probe.health(&events, later), healthy_store());
        let took = probe.response_time(Instant::now());
        assert!(
            took > Duration::ZERO && took < STORE_STALL_AFTER,
            "{took:?}"
        );
    }
}
