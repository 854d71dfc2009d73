//! `revaer-api`: the HTTP control plane, run as a sandboxed worker.
//!
//! - [`routes`]: the axum router and its guards.
//! - [`read_model`]: every torrent in memory, for fast listing.
//! - [`event_log`] / [`sse`]: the durable event log and its SSE stream.
//! - [`metrics`]: Prometheus text for the API and its workers.
//! - [`health`]: the `/health/full` verdict.
//! - [`links`]: authenticated data channels to the engine and FsOps.
//! - [`problem`]: RFC 9457 errors for every failure path, typed by the
//!   statuses they answer with.
//! - [`contract`]: every status each route can answer with, read off the
//!   code and checked against the OpenAPI document.
//! - [`server`]: binding, live re-binding on config change, graceful stop,
//!   and the limits on hostile clients (timeouts, sizes, connection cap).
//! - [`control`]: the control channel to the supervisor.

pub mod auth;
pub mod contract;
pub mod control;
pub mod engine_events;
pub mod event_log;
pub mod fsops_dispatch;
pub mod health;
pub mod health_events;
pub mod keys_routes;
pub mod links;
pub mod metrics;
pub mod openapi;
pub mod otel;
pub mod problem;
pub mod rate_limit;
pub mod read_model;
pub mod routes;
pub mod server;
pub mod sse;
pub mod store;
pub mod torrents_routes;

#[cfg(test)]
mod route_tests;
#[cfg(test)]
pub mod test_harness;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use revaer_ipc::{SandboxReport, SupervisionSnapshot};
use tokio::sync::watch;

use crate::links::WorkerLink;

/// What [`AppState::new`] is built from.
#[derive(Debug)]
pub struct AppParts {
    pub engine: WorkerLink,
    pub engine_events: Arc<crate::engine_events::EngineEvents>,
    pub fsops: WorkerLink,
    pub supervision: watch::Receiver<Option<SupervisionSnapshot>>,
    pub sandbox: SandboxReport,
    pub store: Arc<crate::store::Store>,
    pub keys: Arc<crate::store::keys::Keys>,
    pub events: Arc<crate::event_log::EventLog>,
    pub torrents: Arc<crate::read_model::ReadModel>,
    pub fsops_jobs: Arc<crate::fsops_dispatch::FsopsDispatcher>,
    pub default_rate_per_minute: u32,
    pub config_revision: u64,
}

/// State shared by handlers and background tasks.
#[derive(Debug)]
pub struct AppState {
    pub engine: WorkerLink,
    pub engine_events: Arc<crate::engine_events::EngineEvents>,
    pub fsops: WorkerLink,
    /// Latest supervisor snapshot; `None` until the first arrives.
    pub supervision: watch::Receiver<Option<SupervisionSnapshot>>,
    pub sandbox: SandboxReport,
    pub store: Arc<crate::store::Store>,
    pub keys: Arc<crate::store::keys::Keys>,
    pub rate_limits: crate::rate_limit::RateLimits,
    pub events: Arc<crate::event_log::EventLog>,
    pub torrents: Arc<crate::read_model::ReadModel>,
    pub fsops_jobs: Arc<crate::fsops_dispatch::FsopsDispatcher>,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The store's health as last probed in the background
    /// ([`AppState::spawn_store_probe`]).
    pub store_probe: Arc<crate::health::StoreProbe>,
    config_revision: AtomicU64,
}

impl AppState {
    #[must_use]
    pub fn new(parts: AppParts) -> Arc<Self> {
        Arc::new(Self {
            engine: parts.engine,
            engine_events: parts.engine_events,
            fsops: parts.fsops,
            supervision: parts.supervision,
            sandbox: parts.sandbox,
            store: parts.store,
            keys: parts.keys,
            rate_limits: crate::rate_limit::RateLimits::new(parts.default_rate_per_minute),
            events: parts.events,
            torrents: parts.torrents,
            fsops_jobs: parts.fsops_jobs,
            metrics: crate::metrics::Metrics::new(),
            store_probe: crate::health::StoreProbe::new(),
            config_revision: AtomicU64::new(parts.config_revision),
        })
    }

    /// Starts probing the store in the background for `/health/full`.
    /// Must run inside the Tokio runtime.
    pub fn spawn_store_probe(&self) {
        self.store_probe.spawn(Arc::clone(&self.store));
    }

    #[must_use]
    pub fn config_revision(&self) -> u64 {
        self.config_revision.load(Ordering::Acquire)
    }

    pub fn set_config_revision(&self, revision: u64) {
        self.config_revision.store(revision, Ordering::Release);
    }
}
