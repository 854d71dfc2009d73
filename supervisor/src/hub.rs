//! The supervisor's single source of truth: what each worker is doing and
//! which config is in force.
//!
//! Both live in `tokio::sync::watch` channels: mutating them notifies every
//! subscriber at once, which is how the API learns of a worker crash within
//! milliseconds and how every worker receives a new config.

use std::time::{SystemTime, UNIX_EPOCH};

use revaer_config::Config;
use revaer_ipc::{
    ConfigStatus, Role, SandboxReport, SupervisionSnapshot, WorkerExit, WorkerState, WorkerStatus,
};
use tokio::sync::watch;

/// A config and its revision number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revisioned {
    pub revision: u64,
    pub config: Config,
}

/// Shared supervisor state.
#[derive(Debug)]
pub struct Hub {
    snapshot: watch::Sender<SupervisionSnapshot>,
    config: watch::Sender<Revisioned>,
}

impl Hub {
    #[must_use]
    pub fn new(config: Revisioned, config_status: ConfigStatus) -> Self {
        let workers = Role::WORKERS
            .iter()
            .map(|&role| WorkerStatus {
                role,
                state: WorkerState::Starting,
                pid: None,
                restarts: 0,
                last_exit: None,
                sandbox: None,
            })
            .collect();
        let snapshot = SupervisionSnapshot {
            supervisor_pid: std::process::id(),
            workers,
            config: config_status,
        };
        Self {
            snapshot: watch::Sender::new(snapshot),
            config: watch::Sender::new(config),
        }
    }

    #[must_use]
    pub fn subscribe_snapshot(&self) -> watch::Receiver<SupervisionSnapshot> {
        self.snapshot.subscribe()
    }

    #[must_use]
    pub fn subscribe_config(&self) -> watch::Receiver<Revisioned> {
        self.config.subscribe()
    }

    /// The config in force.
    #[must_use]
    pub fn config(&self) -> Revisioned {
        self.config.borrow().clone()
    }

    #[must_use]
    pub fn config_status(&self) -> ConfigStatus {
        self.snapshot.borrow().config.clone()
    }

    /// Publishes a newly accepted config.
    pub fn set_config(&self, config: Revisioned, status: ConfigStatus) {
        self.config.send_replace(config);
        self.set_config_status(status);
    }

    pub fn set_config_status(&self, status: ConfigStatus) {
        self.snapshot.send_modify(|s| s.config = status);
    }

    /// A process for `role` was spawned.
    pub fn worker_spawned(&self, role: Role, pid: u32) {
        self.modify_worker(role, |w| {
            w.state = WorkerState::Starting;
            w.pid = Some(pid);
            w.sandbox = None;
        });
    }

    /// The worker completed its handshake.
    pub fn worker_ready(&self, role: Role, sandbox: SandboxReport) {
        self.modify_worker(role, |w| {
            w.state = WorkerState::Running;
            w.sandbox = Some(sandbox);
        });
    }

    /// The worker's process ended; `restart_delay_ms` is set when a restart
    /// is scheduled (and then counts as one restart).
    pub fn worker_exited(&self, role: Role, mut exit: WorkerExit, restart_delay_ms: Option<u64>) {
        exit.restart_delay_ms = restart_delay_ms;
        self.modify_worker(role, |w| {
            w.pid = None;
            w.sandbox = None;
            w.state = match restart_delay_ms {
                Some(delay_ms) => {
                    w.restarts = w.restarts.saturating_add(1);
                    WorkerState::Restarting { delay_ms }
                }
                None => WorkerState::Stopped,
            };
            w.last_exit = Some(exit);
        });
    }

    /// The worker was stopped on purpose and is not coming back.
    pub fn worker_stopped(&self, role: Role) {
        self.modify_worker(role, |w| {
            w.state = WorkerState::Stopped;
            w.pid = None;
        });
    }

    fn modify_worker(&self, role: Role, f: impl FnOnce(&mut WorkerStatus)) {
        self.snapshot.send_modify(|s| {
            if let Some(w) = s.workers.iter_mut().find(|w| w.role == role) {
                f(w);
            }
        });
    }
}

/// Milliseconds since the Unix epoch (0 if the clock is before 1970).
#[must_use]
pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
