//! Traces of Revaer's daemon processes (DESIGN §7, ADR 008).
//!
//! One process-wide exporter, initialised once per process by [`init`]
//! when `REVAER_TELEMETRY_ENDPOINT` (or the standard
//! `OTEL_EXPORTER_OTLP_ENDPOINT`) names an OTLP/HTTP collector. Without an
//! endpoint nothing is initialised and every call here is a cheap no-op
//! that still forwards the caller's `traceparent`, so the W3C context keeps
//! flowing (CLI → API → engine → FsOps) for log correlation.
//!
//! Why not `tracing-opentelemetry`: our spans cross process boundaries at
//! points we choose (an HTTP request, one IPC envelope, a torrent's
//! completion, an FsOps job), each with an explicit remote parent. Starting
//! those few spans directly against the SDK keeps their parent links
//! obvious and keeps the hot paths (list requests, alerts) free of any
//! per-span cost when tracing is off.
//!
//! FsOps has no network sockets (its sandbox refuses `AF_INET`), so it
//! records its spans itself and sends them to the API over IPC; the API
//! hands them to [`relay`], which exports them under FsOps' own service
//! name with the ids FsOps chose. The parent links stay exactly as FsOps
//! recorded them.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use opentelemetry::trace::{
    Span as _, SpanContext, SpanId, SpanKind, Status, TraceContextExt as _, TraceFlags, TraceId,
    TraceState, Tracer as _,
};
use opentelemetry::{Context, InstrumentationScope, KeyValue};
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{
    BatchSpanProcessor, SdkTracer, SdkTracerProvider, SpanData, SpanEvents, SpanLinks,
    SpanProcessor as _,
};
use revaer_ipc::trace::SpanRecord;

/// How long one export may take before it is abandoned; a slow collector
/// never holds a daemon process up.
pub const EXPORT_TIMEOUT: Duration = Duration::from_secs(3);

/// The variables that name the collector, in order of preference.
pub const ENDPOINT_VARS: [&str; 2] = ["REVAER_TELEMETRY_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"];

/// Why telemetry could not be started. The process runs on without it.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("{var} must be an http:// URL of an OTLP/HTTP collector (no TLS), not `{value}`")]
    BadEndpoint { var: &'static str, value: String },
    #[error("cannot build the OTLP exporter: {0}")]
    Exporter(String),
    #[error("telemetry is already initialised in this process")]
    AlreadyInitialised,
}

/// The collector's base URL from the environment: `(variable, value)`.
#[must_use]
pub fn endpoint_from_env() -> Option<(&'static str, String)> {
    ENDPOINT_VARS.iter().find_map(|var| {
        std::env::var(var)
            .ok()
            .filter(|v| !v.trim().is_empty())
            .map(|v| (*var, v))
    })
}

/// Checks an endpoint and returns its base (no trailing `/`).
pub fn validate_endpoint(var: &'static str, value: &str) -> Result<String, TelemetryError> {
    let base = value.trim().trim_end_matches('/');
    // The exporter's HTTP client is built without TLS: point it at a
    // local collector or agent that forwards.
    let host = base.strip_prefix("http://").unwrap_or_default();
    if host.is_empty() || host.len() > 2048 || host.chars().any(char::is_whitespace) {
        return Err(TelemetryError::BadEndpoint {
            var,
            value: value.to_owned(),
        });
    }
    Ok(base.to_owned())
}

struct Exporter {
    endpoint: String,
    provider: SdkTracerProvider,
    tracer: SdkTracer,
    /// One batch processor per relayed service name.
    relays: Mutex<HashMap<&'static str, BatchSpanProcessor>>,
}

static EXPORTER: OnceLock<Exporter> = OnceLock::new();

fn span_exporter(base: &str) -> Result<opentelemetry_otlp::SpanExporter, TelemetryError> {
    opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(format!("{base}/v1/traces"))
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        .map_err(|e| TelemetryError::Exporter(e.to_string()))
}

/// Starts exporting this process's spans as `service` when an endpoint is
/// configured; returns whether it did. Call it once, from the main thread,
/// before the async runtime exists (the exporter owns a blocking HTTP
/// client and a background thread), and call [`shutdown`] at exit.
pub fn init(service: &'static str) -> Result<bool, TelemetryError> {
    let Some((var, value)) = endpoint_from_env() else {
        return Ok(false);
    };
    let base = validate_endpoint(var, &value)?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(span_exporter(&base)?)
        .with_resource(Resource::builder().with_service_name(service).build())
        .build();
    let tracer = opentelemetry::trace::TracerProvider::tracer(&provider, service);
    EXPORTER
        .set(Exporter {
            endpoint: base.clone(),
            provider,
            tracer,
            relays: Mutex::new(HashMap::new()),
        })
        .map_err(|_| TelemetryError::AlreadyInitialised)?;
    tracing::info!(endpoint = %base, service, "exporting traces over OTLP/HTTP");
    Ok(true)
}

/// Whether spans are exported.
#[must_use]
pub fn enabled() -> bool {
    EXPORTER.get().is_some()
}

/// Flushes and stops every exporter (bounded by [`EXPORT_TIMEOUT`] each).
/// Call outside the async runtime, at exit.
pub fn shutdown() {
    let Some(exporter) = EXPORTER.get() else {
        return;
    };
    if let Ok(relays) = exporter.relays.lock() {
        for relay in relays.values() {
            let _ = relay.shutdown_with_timeout(EXPORT_TIMEOUT);
        }
    }
    let _ = exporter.provider.shutdown_with_timeout(EXPORT_TIMEOUT);
}

/// A parsed version-`00` W3C `traceparent`.
#[must_use]
pub fn parse_traceparent(value: &str) -> Option<SpanContext> {
    if !revaer_ipc::trace::validate_traceparent(value) {
        return None;
    }
    let trace_id = TraceId::from_hex(&value[3..35]).ok()?;
    let span_id = SpanId::from_hex(&value[36..52]).ok()?;
    let flags = u8::from_str_radix(&value[53..55], 16).ok()?;
    Some(SpanContext::new(
        trace_id,
        span_id,
        TraceFlags::new(flags),
        true,
        TraceState::default(),
    ))
}

/// The `traceparent` naming `cx` as the parent.
#[must_use]
pub fn format_traceparent(cx: &SpanContext) -> String {
    format!(
        "00-{:032x}-{:016x}-{:02x}",
        cx.trace_id(),
        cx.span_id(),
        cx.trace_flags().to_u8()
    )
}

/// What kind of work a span is (the OpenTelemetry span kinds we use).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Answers a request from another process.
    Server,
    /// Work inside this process.
    Internal,
}

/// One span of this process, ended (and exported) on drop.
#[derive(Debug)]
pub struct SpanGuard {
    /// `None` when nothing is exported.
    cx: Option<Context>,
    /// What children should name as their parent.
    traceparent: Option<String>,
}

/// Starts a span, a child of `parent` (a `traceparent`, usually from another
/// process). Without telemetry, nothing is recorded and the returned
/// guard's [`SpanGuard::traceparent`] is `parent` itself, so the context
/// still flows onwards.
#[must_use]
pub fn start(name: impl Into<Cow<'static, str>>, kind: Kind, parent: Option<&str>) -> SpanGuard {
    start_at(name, kind, parent, None)
}

/// [`start`] with an explicit start time (a span covering work that began
/// before it could be started, such as a whole download).
#[must_use]
pub fn start_at(
    name: impl Into<Cow<'static, str>>,
    kind: Kind,
    parent: Option<&str>,
    started: Option<SystemTime>,
) -> SpanGuard {
    let Some(exporter) = EXPORTER.get() else {
        return SpanGuard {
            cx: None,
            traceparent: parent
                .filter(|p| parse_traceparent(p).is_some())
                .map(str::to_owned),
        };
    };
    let parent_cx = match parent.and_then(parse_traceparent) {
        Some(remote) => Context::new().with_remote_span_context(remote),
        None => Context::new(),
    };
    let mut builder = exporter.tracer.span_builder(name).with_kind(match kind {
        Kind::Server => SpanKind::Server,
        Kind::Internal => SpanKind::Internal,
    });
    if let Some(at) = started {
        builder = builder.with_start_time(at);
    }
    let span = exporter.tracer.build_with_context(builder, &parent_cx);
    let traceparent = Some(format_traceparent(span.span_context()));
    SpanGuard {
        cx: Some(parent_cx.with_span(span)),
        traceparent,
    }
}

impl SpanGuard {
    /// The `traceparent` that makes a receiver's span a child of this one.
    #[must_use]
    pub fn traceparent(&self) -> Option<&str> {
        self.traceparent.as_deref()
    }

    /// Records an attribute (no-op without telemetry).
    pub fn set_attribute(&self, key: &'static str, value: impl Into<opentelemetry::Value>) {
        if let Some(cx) = &self.cx {
            cx.span().set_attribute(KeyValue::new(key, value));
        }
    }

    /// Marks the span failed.
    pub fn set_error(&self, message: impl Into<Cow<'static, str>>) {
        if let Some(cx) = &self.cx {
            cx.span().set_status(Status::error(message));
        }
    }

    /// Ends the span now (dropping it does the same).
    pub fn end(self) {}
}

impl Drop for SpanGuard {
    fn drop(&mut self) {
        if let Some(cx) = &self.cx {
            cx.span().end();
        }
    }
}

/// Exports spans recorded by `service` (another process) through this
/// process's collector connection. Dropped silently without telemetry;
/// spans with invalid ids are skipped.
pub fn relay(service: &'static str, spans: impl IntoIterator<Item = SpanRecord>) {
    let Some(exporter) = EXPORTER.get() else {
        return;
    };
    let Ok(mut relays) = exporter.relays.lock() else {
        return;
    };
    let processor = match relays.entry(service) {
        std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
        std::collections::hash_map::Entry::Vacant(e) => {
            let mut span_exporter = match span_exporter(&exporter.endpoint) {
                Ok(x) => x,
                Err(err) => {
                    tracing::warn!(error = %err, service, "cannot relay spans");
                    return;
                }
            };
            opentelemetry_sdk::trace::SpanExporter::set_resource(
                &mut span_exporter,
                &Resource::builder().with_service_name(service).build(),
            );
            e.insert(BatchSpanProcessor::builder(span_exporter).build())
        }
    };
    let scope = InstrumentationScope::builder(service).build();
    for span in spans {
        let trace_id = TraceId::from_bytes(span.trace_id);
        let span_id = SpanId::from_bytes(span.span_id);
        if trace_id == TraceId::INVALID || span_id == SpanId::INVALID {
            continue;
        }
        let mut attributes: Vec<KeyValue> = span
            .attributes
            .into_iter()
            .map(|(k, v)| KeyValue::new(k, v))
            .collect();
        attributes.push(KeyValue::new("revaer.relayed", true));
        processor.on_end(SpanData {
            span_context: SpanContext::new(
                trace_id,
                span_id,
                TraceFlags::SAMPLED,
                false,
                TraceState::default(),
            ),
            parent_span_id: SpanId::from_bytes(span.parent_span_id),
            parent_span_is_remote: span.parent_is_remote,
            span_kind: SpanKind::Internal,
            name: Cow::Owned(span.name),
            start_time: from_unix_nanos(span.start_unix_nanos),
            end_time: from_unix_nanos(span.end_unix_nanos.max(span.start_unix_nanos)),
            attributes,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: match span.error {
                Some(message) => Status::error(message),
                None => Status::Ok,
            },
            instrumentation_scope: scope.clone(),
        });
    }
}

fn from_unix_nanos(nanos: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_nanos(nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn traceparents_round_trip() {
        let cx = parse_traceparent(VALID).expect("valid");
        assert!(cx.is_remote());
        assert!(cx.is_sampled());
        assert_eq!(format_traceparent(&cx), VALID);
    }

    #[test]
    fn bad_traceparents_are_refused() {
        for bad in [
            "",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert!(parse_traceparent(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn without_an_exporter_the_context_is_forwarded_unchanged() {
        let span = start("x", Kind::Server, Some(VALID));
        assert_eq!(span.traceparent(), Some(VALID));
        let root = start("x", Kind::Internal, None);
        assert_eq!(root.traceparent(), None);
        let junk = start("x", Kind::Internal, Some("junk"));
        assert_eq!(junk.traceparent(), None);
        span.set_attribute("k", "v");
        span.set_error("e");
        span.end();
        relay("revaer-test", Vec::new());
        assert!(!enabled());
    }

    #[test]
    fn endpoints_must_be_plain_http() {
        let var = ENDPOINT_VARS[0];
        assert_eq!(
            validate_endpoint(var, "http://127.0.0.1:4318/").expect("ok"),
            "http://127.0.0.1:4318"
        );
        for bad in [
            "127.0.0.1:4318",
            "https://collector:4318",
            "http://",
            "http://a b",
        ] {
            assert!(validate_endpoint(var, bad).is_err(), "{bad}");
        }
    }
}
