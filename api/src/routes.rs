//! The HTTP routes and the middleware stack around them.
//!
//! Guards applied to every route: a request body cap, a request timeout, a
//! concurrency limit, panic catching, request tracing, and the Problem+JSON
//! rewrite of any bare error.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use revaer_api_models::{HealthFull, HealthStatus, Liveness};
use tower::ServiceBuilder;
use tower::limit::ConcurrencyLimitLayer;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnFailure, TraceLayer};
use tracing::Level;

use crate::health::{HealthInputs, health_full};
use crate::problem::{panic_to_problem, problem_for_bare_errors};
use crate::{AppState, keys_routes, torrents_routes};

/// Largest request body a route reads unless it says otherwise (torrent
/// uploads raise it to [`torrents_routes::MAX_ADD_BODY_BYTES`]).
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Longest a request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Requests served at once; more wait in line.
pub const MAX_CONCURRENT_REQUESTS: usize = 512;

/// Builds the full router.
pub fn router(state: Arc<AppState>) -> Router {
    let router = Router::new()
        .route("/health", get(liveness))
        .route("/health/full", get(readiness))
        .route("/v1/keys", get(keys_routes::list).post(keys_routes::issue))
        .route("/v1/keys/{id}", axum::routing::delete(keys_routes::revoke))
        .route(
            "/v1/keys/{id}/rotate",
            axum::routing::post(keys_routes::rotate),
        )
        .route(
            "/v1/torrents",
            get(torrents_routes::list)
                .post(torrents_routes::add)
                .layer(torrents_routes::add_body_limit()),
        )
        .route(
            "/v1/torrents/{id}",
            get(torrents_routes::detail).patch(torrents_routes::patch),
        )
        .route("/v1/torrents/{id}/peers", get(torrents_routes::peers))
        .route(
            "/v1/torrents/{id}/select",
            axum::routing::post(torrents_routes::select),
        )
        .route(
            "/v1/torrents/{id}/action",
            axum::routing::post(torrents_routes::action),
        )
        .route("/v1/events", get(crate::sse::events))
        .route("/docs", get(docs_page))
        .route("/docs/openapi.json", get(docs_json))
        .route("/metrics", get(crate::metrics::render));
    #[cfg(feature = "test-probes")]
    let router = router
        .route(
            "/v1/_test/probe/{worker}",
            axum::routing::post(test_probes::probe),
        )
        .route("/v1/_test/engine", axum::routing::post(test_probes::engine))
        .route(
            "/v1/_test/engine/events",
            axum::routing::get(test_probes::engine_events),
        );
    let app = router
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            crate::auth::require_key,
        ))
        // Outside auth, and on the fallback too: 401s, 429s and unknown
        // paths are counted (the latter as `route="unmatched"`).
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            crate::metrics::track,
        ));
    // Outermost per-route layer: the span covers auth and rate limits.
    // Without an exporter there is no span to make, and the only context
    // that matters (an add's `traceparent`, stored with the torrent for
    // FsOps' logs) is read by its handler: skip the layer's cost.
    let app = if revaer_telemetry::enabled() {
        app.layer(axum::middleware::from_fn(crate::otel::trace_request))
    } else {
        app
    };
    let app = app.with_state(state);
    // The guards wrap the whole router once. (`Router::layer` would wrap
    // every route in each of them, boxed, and clone that stack on every
    // request.)
    let guarded = ServiceBuilder::new()
        // A 503 from /health/full is an answer, not a server failure.
        .layer(TraceLayer::new_for_http().on_failure(DefaultOnFailure::new().level(Level::WARN)))
        .layer(ConcurrencyLimitLayer::new(MAX_CONCURRENT_REQUESTS))
        // Hard cap for every route, whatever it reads.
        .layer(RequestBodyLimitLayer::new(
            torrents_routes::MAX_ADD_BODY_BYTES,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .layer(CatchPanicLayer::custom(panic_to_problem))
        .layer(axum::middleware::map_response(problem_for_bare_errors))
        .service(app);
    Router::new().fallback_service(guarded)
}

/// The OpenAPI document and its HTML rendering, built once.
static DOCS: std::sync::LazyLock<(String, String)> =
    std::sync::LazyLock::new(|| (crate::openapi::json(), crate::openapi::html()));

async fn docs_json() -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        DOCS.0.clone(),
    )
        .into_response()
}

async fn docs_page() -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "text/html; charset=utf-8")],
        DOCS.1.clone(),
    )
        .into_response()
}

/// `GET /health`.
#[utoipa::path(
    get,
    path = "/health",
    tag = "operations",
    operation_id = "liveness",
    summary = "Liveness: the API process answers",
    description = "Needs no key. Says nothing about the engine or FsOps; use `/health/full` for readiness.",
    security(()),
    responses((status = 200, description = "Alive", body = Liveness, example = json!({"status": "alive"})))
)]
pub async fn liveness() -> Json<Liveness> {
    Json(Liveness {
        status: "alive".to_owned(),
    })
}

/// `GET /health/full`.
#[utoipa::path(
    get,
    path = "/health/full",
    tag = "operations",
    operation_id = "readiness",
    summary = "Readiness of every component",
    description = "Engine, FsOps, API and config readiness, degraded reasons, restart counts, config revision and watcher latency, sandbox reports, store status, event-log head and build revision. 503 with the same document while anything is degraded. Needs no key from loopback (container health checks); from elsewhere it needs a key.",
    security((), ("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "Everything ready", body = HealthFull),
        (status = 503, description = "Degraded; `degraded` names the components", body = HealthFull),
        (status = 401, description = "Not from loopback and no valid key", body = revaer_api_models::Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited (requests with a key)", body = revaer_api_models::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn readiness(State(state): State<Arc<AppState>>) -> Readiness {
    Readiness(current_health(&state))
}

/// The `/health/full` answer: 200 while everything is ready, 503 with the
/// same document while anything is degraded.
#[derive(Debug)]
pub struct Readiness(pub HealthFull);

impl IntoResponse for Readiness {
    fn into_response(self) -> Response {
        let status = match self.0.status {
            HealthStatus::Ok => StatusCode::OK,
            HealthStatus::Degraded => StatusCode::SERVICE_UNAVAILABLE,
        };
        (status, Json(self.0)).into_response()
    }
}

impl crate::contract::Answer for Readiness {
    fn error_statuses() -> Vec<StatusCode> {
        vec![StatusCode::SERVICE_UNAVAILABLE]
    }
}

/// The readiness document as of now.
#[must_use]
pub fn current_health(state: &AppState) -> HealthFull {
    let snapshot = state.supervision.borrow().clone();
    let engine = state.engine.status();
    let fsops = state.fsops.status();
    let store = state.store_probe.health(&state.events, Instant::now());
    health_full(&HealthInputs {
        snapshot: snapshot.as_ref(),
        engine: &engine,
        fsops: &fsops,
        api_sandbox: &state.sandbox,
        api_config_revision: state.config_revision(),
        store: &store,
        event_log_head: state.events.head_id(),
        fsops_failed_jobs: state.fsops_jobs.failed_jobs(),
        downloads_full: downloads_full(state),
        now: Instant::now(),
    })
}

/// Whether a torrent stopped on a full downloads filesystem (the engine's
/// error says so; see `DISK_FULL_ERROR_PREFIX`). Reads the in-memory
/// listing of torrents in error only.
fn downloads_full(state: &AppState) -> bool {
    let filter = crate::read_model::ListFilter {
        states: vec![revaer_api_models::torrents::TorrentState::Error],
        ..crate::read_model::ListFilter::default()
    };
    state.torrents.any_listed(&filter, |t| {
        t.error
            .as_deref()
            .is_some_and(|e| e.starts_with(revaer_ipc::engine::DISK_FULL_ERROR_PREFIX))
    })
}

async fn not_found() -> StatusCode {
    StatusCode::NOT_FOUND
}

#[cfg(feature = "test-probes")]
mod test_probes {
    //! Test-only: runs a sandbox probe in the API itself or forwards it to a
    //! worker over its data channel.

    use std::sync::Arc;

    use axum::Json;
    use axum::extract::{Path, State};
    use revaer_ipc::engine::{EngineEvent, EngineRequest, EngineResponse};
    use revaer_ipc::{Probe, ProbeOutcome, WorkerRequest, WorkerResponse};

    use crate::AppState;
    use crate::problem::ApiError;

    /// Test-only: forwards one engine command as the v1 API will.
    pub async fn engine(
        State(state): State<Arc<AppState>>,
        Json(request): Json<EngineRequest>,
    ) -> Result<Json<EngineResponse>, ApiError> {
        match state.engine.request(WorkerRequest::Engine(request)).await {
            Ok(WorkerResponse::Engine(response)) => Ok(Json(response)),
            Ok(other) => Err(ApiError::BadRequest(format!("engine answered {other:?}"))),
            Err(e) => Err(ApiError::Unavailable(e.to_string())),
        }
    }

    /// Test-only: the engine events the API has received, oldest first.
    pub async fn engine_events(State(state): State<Arc<AppState>>) -> Json<Vec<EngineEvent>> {
        Json(state.engine_events.recent())
    }

    pub async fn probe(
        State(state): State<Arc<AppState>>,
        Path(worker): Path<String>,
        Json(probe): Json<Probe>,
    ) -> Result<Json<ProbeOutcome>, ApiError> {
        let link = match worker.as_str() {
            "api" => return Ok(Json(revaer_worker_bootstrap::probes::run(&probe))),
            "engine" => &state.engine,
            "fsops" => &state.fsops,
            other => return Err(ApiError::NotFound(format!("no worker named {other}"))),
        };
        match link.request(WorkerRequest::Probe(probe)).await {
            Ok(WorkerResponse::Probe(outcome)) => Ok(Json(outcome)),
            Ok(other) => Err(ApiError::BadRequest(format!("worker answered {other:?}"))),
            Err(e) => Err(ApiError::Unavailable(e.to_string())),
        }
    }
}
