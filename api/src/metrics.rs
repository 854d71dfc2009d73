//! `/metrics`: Prometheus text exposition (format 0.0.4) of the API's own
//! registry, the supervisor's view of the workers, and every worker's own
//! registry fetched over IPC.
//!
//! - [`Metrics`] owns the API's registry: HTTP requests by matched route
//!   template (never the raw path, so ids cannot explode the series count),
//!   their latency, and SSE subscribers and drops for the SSE code.
//! - [`track`] times and counts every routed request.
//! - [`render`] adds, at scrape time, `revaer_worker_up` and
//!   `revaer_worker_restarts_total` (the same verdict as `/health/full`),
//!   `revaer_rate_limit_throttled_total` (from [`crate::rate_limit`]), and
//!   the engine's and `FsOps`' text, fetched concurrently with a short
//!   timeout. A worker that does not answer contributes nothing; its
//!   `revaer_worker_up` says why the text is missing. Worker text is kept
//!   only for the worker's own prefix (`revaer_engine_`, `revaer_fsops_`),
//!   so no worker can publish or duplicate a family the API owns.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus::core::Collector;
use prometheus::proto::MetricFamily;
use prometheus::{
    Gauge, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use revaer_ipc::{Role, WorkerRequest, WorkerResponse};
use revaer_worker_bootstrap::data_server::own_metrics;

use crate::AppState;
use crate::links::WorkerLink;
use crate::problem::failures;

/// `route` label of requests no route matched.
pub const UNMATCHED_ROUTE: &str = "unmatched";
/// Longest wait for one worker's metrics during a scrape.
pub const WORKER_SCRAPE_TIMEOUT: Duration = Duration::from_secs(1);
/// Content type of the exposition.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// Latency buckets in seconds, up to the request timeout.
const DURATION_BUCKETS: [f64; 13] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The API's metrics. Every method is cheap and never fails; when the
/// registry could not be built (logged once) they do nothing.
#[derive(Debug)]
pub struct Metrics {
    families: Option<Families>,
}

#[derive(Debug)]
struct Families {
    registry: Registry,
    http_requests: IntCounterVec,
    http_duration: HistogramVec,
    sse_subscribers: IntGauge,
    sse_dropped: IntCounter,
    event_log_dropped: IntCounter,
    event_log_engine_lagged: IntCounter,
    store_response: Gauge,
}

impl Families {
    fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let http_requests = IntCounterVec::new(
            Opts::new(
                "revaer_http_requests_total",
                "HTTP requests answered, by route template, method and status.",
            ),
            &["route", "method", "status"],
        )?;
        let http_duration = HistogramVec::new(
            HistogramOpts::new(
                "revaer_http_request_duration_seconds",
                "Time to answer an HTTP request (to the response head), by route template and method.",
            )
            .buckets(DURATION_BUCKETS.to_vec()),
            &["route", "method"],
        )?;
        let sse_subscribers = IntGauge::new(
            "revaer_sse_subscribers",
            "Clients currently subscribed to GET /v1/events.",
        )?;
        let sse_dropped = IntCounter::new(
            "revaer_sse_dropped_total",
            "SSE events not delivered to a subscriber that fell behind.",
        )?;
        let event_log_dropped = IntCounter::new(
            "revaer_event_log_appends_dropped_total",
            "Events not written to the event log because its write queue was full (the state disk is slow or stuck).",
        )?;
        let event_log_engine_lagged = IntCounter::new(
            "revaer_event_log_engine_lagged_total",
            "Engine events the event log missed because its feed fell behind the engine.",
        )?;
        let store_response = Gauge::new(
            "revaer_store_response_seconds",
            "How long the state database took to answer the last background probe, or has been waiting for the current one when that is longer (a slow or stuck state disk).",
        )?;
        registry.register(Box::new(http_requests.clone()))?;
        registry.register(Box::new(http_duration.clone()))?;
        registry.register(Box::new(sse_subscribers.clone()))?;
        registry.register(Box::new(sse_dropped.clone()))?;
        registry.register(Box::new(event_log_dropped.clone()))?;
        registry.register(Box::new(event_log_engine_lagged.clone()))?;
        registry.register(Box::new(store_response.clone()))?;
        Ok(Self {
            registry,
            http_requests,
            http_duration,
            sse_subscribers,
            sse_dropped,
            event_log_dropped,
            event_log_engine_lagged,
            store_response,
        })
    }
}

impl Metrics {
    /// Builds the registry; on failure logs it and keeps metrics off.
    #[must_use]
    pub fn new() -> Arc<Self> {
        let families = match Families::new() {
            Ok(families) => Some(families),
            Err(e) => {
                tracing::error!(error = %e, "cannot build the API metrics registry; metrics are off");
                None
            }
        };
        Arc::new(Self { families })
    }

    /// Records one answered request. `route` is a route template (or
    /// [`UNMATCHED_ROUTE`]), never a raw path.
    pub fn record(&self, route: &str, method: &Method, status: StatusCode, elapsed: Duration) {
        let Some(f) = &self.families else { return };
        let method = method_label(method);
        if let Ok(counter) =
            f.http_requests
                .get_metric_with_label_values(&[route, method, status.as_str()])
        {
            counter.inc();
        }
        if let Ok(histogram) = f
            .http_duration
            .get_metric_with_label_values(&[route, method])
        {
            histogram.observe(elapsed.as_secs_f64());
        }
    }

    /// Runs `request` and records it under its matched route template.
    pub async fn track_request(&self, request: Request, next: Next) -> Response {
        // `MatchedPath` is a shared string: cloning it allocates nothing.
        let route = request.extensions().get::<MatchedPath>().cloned();
        let method = request.method().clone();
        let started = Instant::now();
        let response = next.run(request).await;
        let route = route.as_ref().map_or(UNMATCHED_ROUTE, MatchedPath::as_str);
        self.record(route, &method, response.status(), started.elapsed());
        response
    }

    /// Copies the figures the event log keeps (it counts them itself,
    /// where streams are built and events queued) into the registry.
    pub fn sync_event_log(&self, log: &crate::event_log::EventLog) {
        if let Some(f) = &self.families {
            f.sse_subscribers
                .set(i64::try_from(log.sse_subscribers()).unwrap_or(i64::MAX));
            for (counter, total) in [
                (&f.sse_dropped, log.sse_dropped_total()),
                (&f.event_log_dropped, log.appends_dropped_total()),
                (&f.event_log_engine_lagged, log.engine_lagged_total()),
            ] {
                let shown = counter.get();
                if total > shown {
                    counter.inc_by(total - shown);
                }
            }
        }
    }

    /// Records how long the state database takes to answer (see
    /// [`crate::health::StoreProbe::response_time`]).
    pub fn set_store_response(&self, took: Duration) {
        if let Some(f) = &self.families {
            f.store_response.set(took.as_secs_f64());
        }
    }

    /// An SSE client subscribed (pair with [`Self::sse_subscriber_removed`],
    /// or hold a [`Self::sse_subscriber`] guard instead).
    pub fn sse_subscriber_added(&self) {
        if let Some(f) = &self.families {
            f.sse_subscribers.inc();
        }
    }

    /// An SSE client went away.
    pub fn sse_subscriber_removed(&self) {
        if let Some(f) = &self.families {
            f.sse_subscribers.dec();
        }
    }

    /// Counts an SSE subscriber for as long as the guard lives.
    #[must_use]
    pub fn sse_subscriber(&self) -> SseSubscriber {
        let gauge = self.families.as_ref().map(|f| f.sse_subscribers.clone());
        if let Some(g) = &gauge {
            g.inc();
        }
        SseSubscriber { gauge }
    }

    /// One SSE event was not delivered to a lagging subscriber.
    pub fn sse_dropped_inc(&self) {
        if let Some(f) = &self.families {
            f.sse_dropped.inc();
        }
    }

    /// Registers a family owned elsewhere (the HTTP server's connection
    /// figures, [`crate::server`]) in the API's registry.
    pub fn register(&self, collector: Box<dyn Collector>) -> Result<(), prometheus::Error> {
        match &self.families {
            Some(f) => f.registry.register(collector),
            None => Ok(()),
        }
    }

    /// The API's own families.
    fn gather(&self) -> Vec<MetricFamily> {
        self.families
            .as_ref()
            .map(|f| f.registry.gather())
            .unwrap_or_default()
    }

    /// The whole exposition: the API's registry, the scrape-time families
    /// built from `workers` and `throttled`, then each worker's own text
    /// (filtered to its prefix; `None` = the worker did not answer).
    pub fn exposition(
        &self,
        workers: &[WorkerView<'_>],
        throttled: &[(String, u64)],
        worker_texts: &[(Role, Option<String>)],
    ) -> Result<String, prometheus::Error> {
        let mut families = self.gather();
        families.extend(scrape_families(workers, throttled)?);
        let mut text = TextEncoder::new().encode_to_string(&families)?;
        for (role, worker_text) in worker_texts {
            if let Some(worker_text) = worker_text {
                text.push_str(&own_metrics(*role, worker_text));
            }
        }
        Ok(text)
    }
}

/// Keeps `revaer_sse_subscribers` one higher while it lives.
#[derive(Debug)]
pub struct SseSubscriber {
    gauge: Option<IntGauge>,
}

impl Drop for SseSubscriber {
    fn drop(&mut self) {
        if let Some(g) = &self.gauge {
            g.dec();
        }
    }
}

/// One worker as `revaer_worker_up` / `revaer_worker_restarts_total` show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerView<'a> {
    pub name: &'a str,
    pub up: bool,
    pub restarts: u32,
}

/// Families computed from state owned elsewhere, built fresh per scrape.
fn scrape_families(
    workers: &[WorkerView<'_>],
    throttled: &[(String, u64)],
) -> Result<Vec<MetricFamily>, prometheus::Error> {
    let up = IntGaugeVec::new(
        Opts::new(
            "revaer_worker_up",
            "1 when the worker is running and answering its health pings (as in /health/full), else 0.",
        ),
        &["worker"],
    )?;
    let restarts = IntCounterVec::new(
        Opts::new(
            "revaer_worker_restarts_total",
            "Times the supervisor restarted the worker since it started.",
        ),
        &["worker"],
    )?;
    let throttle_counts = IntCounterVec::new(
        Opts::new(
            "revaer_rate_limit_throttled_total",
            "Requests refused with 429 because the API key's token bucket was empty, by key id.",
        ),
        &["key_id"],
    )?;
    for w in workers {
        up.get_metric_with_label_values(&[w.name])?
            .set(i64::from(w.up));
        restarts
            .get_metric_with_label_values(&[w.name])?
            .inc_by(u64::from(w.restarts));
    }
    for (key_id, count) in throttled {
        throttle_counts
            .get_metric_with_label_values(&[key_id.as_str()])?
            .inc_by(*count);
    }
    let mut families = up.collect();
    families.extend(restarts.collect());
    families.extend(throttle_counts.collect());
    // A vector without children collects to a family without samples,
    // which the text format cannot express (and the encoder refuses).
    families.retain(|f| !f.get_metric().is_empty());
    Ok(families)
}

/// A bounded `method` label: the standard methods, else `other`.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Middleware: counts and times every request by matched route.
pub async fn track(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    state.metrics.track_request(request, next).await
}

/// Asks one worker for its metrics text; `None` when it does not answer in
/// time or answers something else.
async fn fetch_worker(link: &WorkerLink, role: Role) -> Option<String> {
    match tokio::time::timeout(WORKER_SCRAPE_TIMEOUT, link.request(WorkerRequest::Metrics)).await {
        Ok(Ok(WorkerResponse::Metrics(text))) => Some(text),
        Ok(Ok(other)) => {
            tracing::warn!(worker = role.as_str(), answer = ?other, "unexpected answer to a metrics request");
            None
        }
        Ok(Err(e)) => {
            tracing::debug!(worker = role.as_str(), error = %e, "no metrics from worker");
            None
        }
        Err(_) => {
            tracing::warn!(
                worker = role.as_str(),
                "metrics request timed out after {WORKER_SCRAPE_TIMEOUT:?}"
            );
            None
        }
    }
}

/// `GET /metrics`.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    operation_id = "metrics",
    summary = "Prometheus metrics of the API and every worker",
    description = "Prometheus text exposition 0.0.4: the API's own metrics, `revaer_worker_up{worker}` and `revaer_worker_restarts_total{worker}`, plus each worker's registry fetched over IPC (a worker that does not answer within 1 s contributes nothing). Needs a key like every route; Prometheus sends it with `authorization: {credentials: ...}`.",
    responses(
        (status = 200, description = "Metrics", body = String, content_type = "text/plain; version=0.0.4",
            example = "# TYPE revaer_worker_up gauge\nrevaer_worker_up{worker=\"engine\"} 1\n"),
        (status = 401, description = "Missing or invalid key", body = revaer_api_models::Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited", body = revaer_api_models::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn render(State(state): State<Arc<AppState>>) -> Result<Response, RenderError> {
    let (engine, fsops) = tokio::join!(
        fetch_worker(&state.engine, Role::Engine),
        fetch_worker(&state.fsops, Role::Fsops),
    );
    let health = crate::routes::current_health(&state);
    let workers: Vec<WorkerView<'_>> = health
        .workers
        .iter()
        .map(|(name, w)| WorkerView {
            name,
            up: w.up,
            restarts: w.restarts,
        })
        .collect();
    let throttled = state.rate_limits.throttled();
    state.metrics.sync_event_log(&state.events);
    state
        .metrics
        .set_store_response(state.store_probe.response_time(Instant::now()));
    match state.metrics.exposition(
        &workers,
        &throttled,
        &[(Role::Engine, engine), (Role::Fsops, fsops)],
    ) {
        Ok(body) => Ok((
            [(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE))],
            body,
        )
            .into_response()),
        Err(e) => Err(RenderError::Internal(format!(
            "cannot encode the metrics: {e}"
        ))),
    }
}

failures! {
    /// Why `GET /metrics` fails: the registry cannot be encoded (a bug).
    pub enum RenderError { Internal }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::body::Body;
    use axum::routing::{get, post};
    use tower::ServiceExt;

    /// The value of the sample line `series` (exact name and labels).
    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    }

    fn own_text(metrics: &Metrics) -> String {
        metrics.exposition(&[], &[], &[]).unwrap()
    }

    async fn call(app: &Router, method: Method, uri: &str) -> StatusCode {
        app.clone()
            .oneshot(
                axum::http::Request::builder()
                    .method(method)
                    .uri(uri)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap()
            .status()
    }

    fn tracked(router: Router<Arc<Metrics>>, metrics: &Arc<Metrics>, route_only: bool) -> Router {
        let layer = axum::middleware::from_fn_with_state(
            Arc::clone(metrics),
            |State(m): State<Arc<Metrics>>, request: Request, next: Next| async move {
                m.track_request(request, next).await
            },
        );
        let router = if route_only {
            router.route_layer(layer)
        } else {
            router.layer(layer)
        };
        router.with_state(Arc::clone(metrics))
    }

    fn app() -> Router<Arc<Metrics>> {
        Router::new()
            .route("/v1/torrents/{id}", get(|| async { "ok" }))
            .route(
                "/v1/torrents/{id}/action",
                post(|| async { StatusCode::SERVICE_UNAVAILABLE }),
            )
            .fallback(|| async { StatusCode::NOT_FOUND })
    }

    #[tokio::test]
    async fn requests_are_counted_by_route_template_never_raw_path() {
        let metrics = Metrics::new();
        // As wired in `routes::router`: a route layer.
        let app = tracked(app(), &metrics, true);
        for id in ["aaa", "bbb", "aaa"] {
            assert_eq!(
                call(&app, Method::GET, &format!("/v1/torrents/{id}")).await,
                StatusCode::OK
            );
        }
        assert_eq!(
            call(&app, Method::POST, "/v1/torrents/ccc/action").await,
            StatusCode::SERVICE_UNAVAILABLE
        );
        let text = own_text(&metrics);
        assert_eq!(
            sample(
                &text,
                "revaer_http_requests_total{method=\"GET\",route=\"/v1/torrents/{id}\",status=\"200\"}"
            ),
            Some(3.0),
            "{text}"
        );
        assert_eq!(
            sample(
                &text,
                "revaer_http_requests_total{method=\"POST\",route=\"/v1/torrents/{id}/action\",status=\"503\"}"
            ),
            Some(1.0),
            "{text}"
        );
        assert_eq!(
            sample(
                &text,
                "revaer_http_request_duration_seconds_count{method=\"GET\",route=\"/v1/torrents/{id}\"}"
            ),
            Some(3.0),
            "{text}"
        );
        assert!(
            text.contains("# TYPE revaer_http_request_duration_seconds histogram"),
            "{text}"
        );
        for raw in ["aaa", "bbb", "ccc"] {
            assert!(!text.contains(raw), "raw path segment {raw} leaked: {text}");
        }
    }

    #[tokio::test]
    async fn unmatched_requests_get_one_label() {
        let metrics = Metrics::new();
        // A router-wide layer also sees the fallback.
        let app = tracked(app(), &metrics, false);
        assert_eq!(call(&app, Method::GET, "/x/1").await, StatusCode::NOT_FOUND);
        assert_eq!(call(&app, Method::GET, "/x/2").await, StatusCode::NOT_FOUND);
        assert_eq!(
            call(&app, Method::GET, "/v1/torrents/zzz").await,
            StatusCode::OK
        );
        let text = own_text(&metrics);
        assert_eq!(
            sample(
                &text,
                "revaer_http_requests_total{method=\"GET\",route=\"unmatched\",status=\"404\"}"
            ),
            Some(2.0),
            "{text}"
        );
        assert_eq!(
            sample(
                &text,
                "revaer_http_requests_total{method=\"GET\",route=\"/v1/torrents/{id}\",status=\"200\"}"
            ),
            Some(1.0),
            "{text}"
        );
        assert!(!text.contains("/x/"), "{text}");
    }

    #[test]
    fn record_bounds_the_method_label_and_sums_durations() {
        let metrics = Metrics::new();
        let odd = Method::from_bytes(b"BREW").unwrap();
        metrics.record(
            "/metrics",
            &odd,
            StatusCode::METHOD_NOT_ALLOWED,
            Duration::from_millis(250),
        );
        metrics.record(
            "/metrics",
            &Method::GET,
            StatusCode::OK,
            Duration::from_millis(500),
        );
        let text = own_text(&metrics);
        assert_eq!(
            sample(
                &text,
                "revaer_http_requests_total{method=\"other\",route=\"/metrics\",status=\"405\"}"
            ),
            Some(1.0),
            "{text}"
        );
        assert!(!text.contains("BREW"));
        assert_eq!(
            sample(
                &text,
                "revaer_http_request_duration_seconds_sum{method=\"GET\",route=\"/metrics\"}"
            ),
            Some(0.5),
            "{text}"
        );
        assert_eq!(
            sample(
                &text,
                "revaer_http_request_duration_seconds_bucket{method=\"GET\",route=\"/metrics\",le=\"0.25\"}"
            ),
            Some(0.0),
            "{text}"
        );
        assert_eq!(
            sample(
                &text,
                "revaer_http_request_duration_seconds_bucket{method=\"GET\",route=\"/metrics\",le=\"0.5\"}"
            ),
            Some(1.0),
            "{text}"
        );
    }

    #[tokio::test]
    async fn event_log_and_store_figures_are_exported() {
        let store = std::sync::Arc::new(crate::store::Store::in_memory().unwrap());
        let log = crate::event_log::EventLog::open(
            store,
            &crate::event_log::EventLogConfig {
                queue_capacity: 1,
                ..crate::event_log::EventLogConfig::default()
            },
        )
        .unwrap();
        let metrics = Metrics::new();
        metrics.sync_event_log(&log);
        let text = own_text(&metrics);
        assert_eq!(
            sample(&text, "revaer_event_log_appends_dropped_total"),
            Some(0.0),
            "{text}"
        );
        assert_eq!(
            sample(&text, "revaer_event_log_engine_lagged_total"),
            Some(0.0)
        );
        // Current-thread runtime: the writer cannot drain before we yield,
        // so one event fits in the queue and four are dropped.
        for revision in 0..5 {
            log.append(revaer_api_models::events::Event::ConfigApplied { revision });
        }
        metrics.sync_event_log(&log);
        metrics.sync_event_log(&log);
        let text = own_text(&metrics);
        assert_eq!(
            sample(&text, "revaer_event_log_appends_dropped_total"),
            Some(4.0),
            "{text}"
        );
        assert!(text.contains("# TYPE revaer_event_log_appends_dropped_total counter"));
        assert_eq!(sample(&text, "revaer_store_response_seconds"), Some(0.0));
        metrics.set_store_response(Duration::from_millis(1500));
        let text = own_text(&metrics);
        assert_eq!(sample(&text, "revaer_store_response_seconds"), Some(1.5));
        assert!(text.contains("# TYPE revaer_store_response_seconds gauge"));
    }

    #[test]
    fn sse_subscribers_and_drops() {
        let metrics = Metrics::new();
        let text = own_text(&metrics);
        assert_eq!(sample(&text, "revaer_sse_subscribers"), Some(0.0), "{text}");
        assert_eq!(sample(&text, "revaer_sse_dropped_total"), Some(0.0));
        let first = metrics.sse_subscriber();
        let second = metrics.sse_subscriber();
        metrics.sse_subscriber_added();
        assert_eq!(
            sample(&own_text(&metrics), "revaer_sse_subscribers"),
            Some(3.0)
        );
        drop(first);
        metrics.sse_subscriber_removed();
        assert_eq!(
            sample(&own_text(&metrics), "revaer_sse_subscribers"),
            Some(1.0)
        );
        drop(second);
        metrics.sse_dropped_inc();
        metrics.sse_dropped_inc();
        let text = own_text(&metrics);
        assert_eq!(sample(&text, "revaer_sse_subscribers"), Some(0.0));
        assert_eq!(sample(&text, "revaer_sse_dropped_total"), Some(2.0));
        assert!(text.contains("# TYPE revaer_sse_dropped_total counter"));
    }

    #[test]
    fn workers_throttles_and_worker_text_are_merged_without_duplicate_families() {
        let metrics = Metrics::new();
        let workers = [
            WorkerView {
                name: "api",
                up: true,
                restarts: 0,
            },
            WorkerView {
                name: "engine",
                up: false,
                restarts: 2,
            },
            WorkerView {
                name: "fsops",
                up: true,
                restarts: 1,
            },
        ];
        let throttled = vec![("k1".to_owned(), 5), ("k2".to_owned(), 1)];
        let engine = "# HELP revaer_engine_torrents Torrents.\n\
                      # TYPE revaer_engine_torrents gauge\n\
                      revaer_engine_torrents{state=\"seeding\"} 4\n\
                      # HELP revaer_worker_up Spoofed.\n\
                      # TYPE revaer_worker_up gauge\n\
                      revaer_worker_up{worker=\"engine\"} 1\n"
            .to_owned();
        let text = metrics
            .exposition(
                &workers,
                &throttled,
                &[(Role::Engine, Some(engine)), (Role::Fsops, None)],
            )
            .unwrap();
        assert_eq!(
            sample(&text, "revaer_worker_up{worker=\"engine\"}"),
            Some(0.0),
            "{text}"
        );
        assert_eq!(sample(&text, "revaer_worker_up{worker=\"api\"}"), Some(1.0));
        assert_eq!(
            sample(&text, "revaer_worker_restarts_total{worker=\"engine\"}"),
            Some(2.0)
        );
        assert_eq!(
            sample(&text, "revaer_worker_restarts_total{worker=\"fsops\"}"),
            Some(1.0)
        );
        assert_eq!(
            sample(&text, "revaer_rate_limit_throttled_total{key_id=\"k1\"}"),
            Some(5.0)
        );
        assert_eq!(
            sample(&text, "revaer_engine_torrents{state=\"seeding\"}"),
            Some(4.0)
        );
        assert!(text.contains("# TYPE revaer_worker_restarts_total counter"));
        let mut types: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split(' ').next())
            .collect();
        let all = types.len();
        types.sort_unstable();
        types.dedup();
        assert_eq!(types.len(), all, "duplicate families: {text}");
        assert!(!text.contains("Spoofed"));
        // No throttle yet: no empty family.
        let quiet = metrics.exposition(&workers, &[], &[]).unwrap();
        assert!(
            !quiet.contains("revaer_rate_limit_throttled_total"),
            "{quiet}"
        );
    }
}
