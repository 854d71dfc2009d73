//! The in-memory read model of every torrent, fed by the engine's snapshot
//! and events and joined with the SQLite catalog (tags, category, added
//! time, FsOps status). `GET /v1/torrents` is served from here.
//!
//! Skeleton; filled in by the torrents work.

use std::sync::Arc;

use crate::engine_events::EngineEvents;
use crate::store::Store;

/// Every torrent the API knows.
#[derive(Debug)]
pub struct ReadModel {
    #[allow(dead_code, reason = "skeleton")]
    store: Arc<Store>,
}

impl ReadModel {
    /// Builds the model and starts following the engine. Must run inside
    /// the Tokio runtime.
    #[must_use]
    pub fn start(store: Arc<Store>, engine_events: &Arc<EngineEvents>) -> Arc<Self> {
        let _ = engine_events;
        Arc::new(Self { store })
    }
}
