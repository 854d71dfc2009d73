//! Trace context of HTTP requests (ADR 008).
//!
//! Every request with a valid W3C `traceparent` header — or every request
//! at all when traces are exported — runs in a server span named after its
//! route template (`POST /v1/torrents`), a child of the caller's span (the
//! CLI's request span). The span's own `traceparent` then:
//! - replaces the request's header, so a handler that remembers the trace
//!   (an add stores it with the torrent) remembers this span;
//! - is held in a task-local for the request's lifetime, so every IPC
//!   request the handler makes to a worker carries it in its envelope
//!   ([`current_traceparent`], read by the worker links).
//!
//! Without an exporter the caller's `traceparent` flows on unchanged and
//! no span is made: the list path pays one header lookup.

use axum::extract::{MatchedPath, Request};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;

tokio::task_local! {
    static TRACEPARENT: Option<String>;
}

/// The `traceparent` of the HTTP request this task is serving, if any.
#[must_use]
pub fn current_traceparent() -> Option<String> {
    TRACEPARENT.try_with(Clone::clone).ok().flatten()
}

/// Middleware: runs the request in its server span (see the module docs).
pub async fn trace_request(mut request: Request, next: Next) -> Response {
    let incoming = request
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .filter(|v| revaer_ipc::trace::validate_traceparent(v))
        .map(str::to_owned);
    if incoming.is_none() && !revaer_telemetry::enabled() {
        // Nothing to continue and nothing to export. A malformed header
        // must not reach handlers either.
        request.headers_mut().remove("traceparent");
        return next.run(request).await;
    }
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str);
    let span = revaer_telemetry::start(
        format!("{} {route}", request.method()),
        revaer_telemetry::Kind::Server,
        incoming.as_deref(),
    );
    span.set_attribute("http.request.method", request.method().as_str().to_owned());
    span.set_attribute("http.route", route.to_owned());
    let traceparent = span.traceparent().map(str::to_owned);
    match traceparent.as_deref().map(HeaderValue::from_str) {
        Some(Ok(value)) => {
            request.headers_mut().insert("traceparent", value);
        }
        _ => {
            request.headers_mut().remove("traceparent");
        }
    }
    let response = TRACEPARENT.scope(traceparent, next.run(request)).await;
    let status = response.status();
    span.set_attribute("http.response.status_code", i64::from(status.as_u16()));
    if status.is_server_error() {
        span.set_error(format!("HTTP {}", status.as_u16()));
    }
    response
}
