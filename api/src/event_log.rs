//! The durable event log (DESIGN §6): every public event gets an id from the
//! SQLite `events` table before any SSE client sees it.
//!
//! Skeleton; filled in by the SSE work.

use std::sync::Arc;

use crate::engine_events::EngineEvents;
use crate::store::{Store, StoreError};

/// The log and its live fan-out.
#[derive(Debug)]
pub struct EventLog {
    #[allow(dead_code, reason = "skeleton")]
    store: Arc<Store>,
}

impl EventLog {
    /// Opens the log and starts feeding it from the engine's events.
    /// Must run inside the Tokio runtime.
    pub fn start(
        store: Arc<Store>,
        engine_events: &Arc<EngineEvents>,
    ) -> Result<Arc<Self>, StoreError> {
        let _ = engine_events;
        Ok(Arc::new(Self { store }))
    }

    /// Id of the newest event, if any.
    #[must_use]
    pub fn head_id(&self) -> Option<u64> {
        None
    }
}
