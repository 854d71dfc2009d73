//! `/metrics`: the API's own Prometheus registry plus every worker's,
//! fetched over IPC.
//!
//! Skeleton; filled in by the metrics work.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::AppState;

/// The API's metrics.
#[derive(Debug, Default)]
pub struct Metrics {}

impl Metrics {
    #[must_use]
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }
}

/// Middleware: counts and times every request by matched route.
pub async fn track(State(_state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    next.run(request).await
}

/// `GET /metrics`.
pub async fn render(State(_state): State<Arc<AppState>>) -> Response {
    StatusCode::NOT_IMPLEMENTED.into_response()
}
