//! `GET /v1/events`: Server-Sent Events over the durable event log.
//!
//! Skeleton; filled in by the SSE work.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::AppState;

/// The SSE stream.
pub async fn events(State(_state): State<Arc<AppState>>) -> Response {
    StatusCode::NOT_IMPLEMENTED.into_response()
}
