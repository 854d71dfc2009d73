//! `revaer-api`: the HTTP control plane, run as a sandboxed worker.
//!
//! - [`routes`]: the axum router (health now; the v1 API in later issues).
//! - [`health`]: the `/health/full` verdict.
//! - [`links`]: authenticated data channels to the engine and FsOps.
//! - [`problem`]: RFC 9457 errors for every failure path.
//! - [`server`]: binding, live re-binding on config change, graceful stop.
//! - [`control`]: the control channel to the supervisor.

pub mod auth;
pub mod control;
pub mod engine_events;
pub mod health;
pub mod keys_routes;
pub mod links;
pub mod problem;
pub mod rate_limit;
pub mod routes;
pub mod server;
pub mod store;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use revaer_ipc::{SandboxReport, SupervisionSnapshot};
use tokio::sync::watch;

use crate::links::WorkerLink;

/// State shared by handlers and background tasks.
#[derive(Debug)]
pub struct AppState {
    pub engine: WorkerLink,
    pub engine_events: Arc<crate::engine_events::EngineEvents>,
    pub fsops: WorkerLink,
    /// Latest supervisor snapshot; `None` until the first arrives.
    pub supervision: watch::Receiver<Option<SupervisionSnapshot>>,
    pub sandbox: SandboxReport,
    pub keys: Arc<crate::store::keys::Keys>,
    pub rate_limits: crate::rate_limit::RateLimits,
    config_revision: AtomicU64,
}

impl AppState {
    #[must_use]
    #[allow(clippy::too_many_arguments, reason = "built once, in main")]
    pub fn new(
        engine: WorkerLink,
        engine_events: Arc<crate::engine_events::EngineEvents>,
        fsops: WorkerLink,
        supervision: watch::Receiver<Option<SupervisionSnapshot>>,
        sandbox: SandboxReport,
        keys: Arc<crate::store::keys::Keys>,
        default_rate_per_minute: u32,
        config_revision: u64,
    ) -> Arc<Self> {
        Arc::new(Self {
            engine,
            engine_events,
            fsops,
            supervision,
            sandbox,
            keys,
            rate_limits: crate::rate_limit::RateLimits::new(default_rate_per_minute),
            config_revision: AtomicU64::new(config_revision),
        })
    }

    #[must_use]
    pub fn config_revision(&self) -> u64 {
        self.config_revision.load(Ordering::Acquire)
    }

    pub fn set_config_revision(&self, revision: u64) {
        self.config_revision.store(revision, Ordering::Release);
    }
}
