//! Traces and metrics of the CLI itself (DESIGN §7).
//!
//! Every request carries a W3C `traceparent`, so the API's spans join the
//! command's trace. When an OTLP/HTTP endpoint is configured
//! (`REVAER_TELEMETRY_ENDPOINT`, e.g. `http://127.0.0.1:4318`), each command
//! is exported as a span (`revaer <command>`) with one child span per
//! request, and the counter `revaer_cli_commands_total{command,outcome}`
//! plus the histogram `revaer_cli_command_duration_seconds{command}` are
//! exported once when the command ends. Without an endpoint nothing is
//! initialised: the `traceparent` then carries ids of the command's own,
//! marked as not sampled, which still correlate its requests in the API's
//! logs.

use std::time::{Duration, Instant};

use opentelemetry::trace::{Span as _, SpanKind, Status, TraceContextExt as _, Tracer as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};

/// How long an export may take before it is abandoned; the CLI never hangs
/// on a collector.
pub const EXPORT_TIMEOUT: Duration = Duration::from_secs(3);

/// Telemetry of one command.
#[derive(Debug)]
pub struct Telemetry {
    otel: Option<Otel>,
    /// Trace id used when nothing is exported.
    local_trace: [u8; 16],
    command: &'static str,
    started: Instant,
}

#[derive(Debug)]
struct Otel {
    traces: SdkTracerProvider,
    metrics: SdkMeterProvider,
    tracer: SdkTracer,
    /// Holds the command span.
    cx: Context,
}

/// A request's span: its `traceparent`, ended on drop.
#[derive(Debug)]
pub struct RequestSpan {
    pub traceparent: String,
    cx: Option<Context>,
}

impl RequestSpan {
    /// Records the HTTP status (or the transport failure) on the span.
    pub fn finish(self, status: Option<u16>) {
        if let Some(cx) = self.cx {
            let span = cx.span();
            match status {
                Some(code) => {
                    span.set_attribute(KeyValue::new("http.response.status_code", i64::from(code)));
                    if code >= 400 {
                        span.set_status(Status::error(format!("HTTP {code}")));
                    }
                }
                None => span.set_status(Status::error("transport failure")),
            }
            span.end();
        }
    }
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0_u8; N];
    if getrandom::fill(&mut bytes).is_err() || bytes.iter().all(|b| *b == 0) {
        // All-zero ids are invalid in W3C trace context.
        bytes[N - 1] = 1;
    }
    bytes
}

impl Telemetry {
    /// No export; `traceparent` with local ids only.
    #[must_use]
    pub fn disabled(command: &'static str) -> Self {
        Self {
            otel: None,
            local_trace: random_bytes(),
            command,
            started: Instant::now(),
        }
    }

    /// Exports to `endpoint` (the OTLP/HTTP base URL; `/v1/traces` and
    /// `/v1/metrics` are appended). Must be called outside any async
    /// runtime.
    pub fn start(command: &'static str, endpoint: &str) -> Result<Self, String> {
        let base = endpoint.trim_end_matches('/');
        // The exporter's HTTP client is built without TLS: send to a
        // local collector (or agent) that forwards.
        if !base.starts_with("http://") {
            return Err(format!(
                "REVAER_TELEMETRY_ENDPOINT must be an http:// URL (no TLS), not `{endpoint}`"
            ));
        }
        let resource = Resource::builder().with_service_name("revaer-cli").build();
        let spans = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(format!("{base}/v1/traces"))
            .with_timeout(EXPORT_TIMEOUT)
            .build()
            .map_err(|e| format!("telemetry: {e}"))?;
        let metrics = opentelemetry_otlp::MetricExporter::builder()
            .with_http()
            .with_endpoint(format!("{base}/v1/metrics"))
            .with_timeout(EXPORT_TIMEOUT)
            .build()
            .map_err(|e| format!("telemetry: {e}"))?;
        let traces = SdkTracerProvider::builder()
            .with_batch_exporter(spans)
            .with_resource(resource.clone())
            .build();
        let metrics = SdkMeterProvider::builder()
            .with_periodic_exporter(metrics)
            .with_resource(resource)
            .build();
        let cli_tracer = opentelemetry::trace::TracerProvider::tracer(&traces, "revaer-cli");
        let span = cli_tracer
            .span_builder(format!("revaer {command}"))
            .with_kind(SpanKind::Client)
            .with_attributes([KeyValue::new("revaer.command", command)])
            .start(&cli_tracer);
        let cx = Context::new().with_span(span);
        Ok(Self {
            otel: Some(Otel {
                traces,
                metrics,
                tracer: cli_tracer,
                cx,
            }),
            local_trace: random_bytes(),
            command,
            started: Instant::now(),
        })
    }

    /// Whether spans and metrics are exported.
    #[must_use]
    pub fn exporting(&self) -> bool {
        self.otel.is_some()
    }

    /// Starts the span of one request.
    #[must_use]
    pub fn request(&self, method: &str, route: &str) -> RequestSpan {
        match &self.otel {
            Some(otel) => {
                let span = otel
                    .tracer
                    .span_builder(format!("{method} {route}"))
                    .with_kind(SpanKind::Client)
                    .with_attributes([
                        KeyValue::new("http.request.method", method.to_owned()),
                        KeyValue::new("url.path", route.to_owned()),
                    ])
                    .start_with_context(&otel.tracer, &otel.cx);
                let sc = span.span_context().clone();
                RequestSpan {
                    traceparent: format!(
                        "00-{:032x}-{:016x}-{:02x}",
                        sc.trace_id(),
                        sc.span_id(),
                        sc.trace_flags()
                    ),
                    cx: Some(otel.cx.with_span(span)),
                }
            }
            None => RequestSpan {
                traceparent: format!(
                    "00-{}-{}-00",
                    hex::encode(self.local_trace),
                    hex::encode(random_bytes::<8>())
                ),
                cx: None,
            },
        }
    }

    /// Ends the command span, records the outcome and flushes everything
    /// (bounded by [`EXPORT_TIMEOUT`]). Must be called outside any async
    /// runtime.
    pub fn finish(self, exit_code: u8) {
        let Some(otel) = self.otel else { return };
        let outcome = if exit_code == 0 { "success" } else { "failure" };
        let meter = opentelemetry::metrics::MeterProvider::meter(&otel.metrics, "revaer-cli");
        let attributes = [
            KeyValue::new("command", self.command),
            KeyValue::new("outcome", outcome),
        ];
        meter
            .u64_counter("revaer_cli_commands_total")
            .with_description("Commands run, by outcome")
            .build()
            .add(1, &attributes);
        meter
            .f64_histogram("revaer_cli_command_duration_seconds")
            .with_unit("s")
            .build()
            .record(
                self.started.elapsed().as_secs_f64(),
                &[KeyValue::new("command", self.command)],
            );
        let span = otel.cx.span();
        span.set_attribute(KeyValue::new("process.exit.code", i64::from(exit_code)));
        if exit_code != 0 {
            span.set_status(Status::error(format!("exit code {exit_code}")));
        }
        span.end();
        let _ = otel.traces.shutdown_with_timeout(EXPORT_TIMEOUT);
        let _ = otel.metrics.shutdown_with_timeout(EXPORT_TIMEOUT);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disabled_telemetry_still_sends_a_valid_unsampled_traceparent() {
        let t = Telemetry::disabled("ls");
        assert!(!t.exporting());
        let a = t.request("GET", "/v1/torrents");
        let b = t.request("GET", "/v1/torrents");
        let parts: Vec<&str> = a.traceparent.split('-').collect();
        assert_eq!(parts.len(), 4);
        assert_eq!(parts[0], "00");
        assert_eq!(parts[1].len(), 32);
        assert_eq!(parts[2].len(), 16);
        assert_eq!(parts[3], "00");
        // One trace per command, one span id per request.
        assert_eq!(a.traceparent[..35], b.traceparent[..35]);
        assert_ne!(a.traceparent, b.traceparent);
        a.finish(Some(200));
        b.finish(None);
        t.finish(0);
    }

    #[test]
    fn a_bad_endpoint_is_refused() {
        assert!(Telemetry::start("ls", "collector:4318").is_err());
        assert!(Telemetry::start("ls", "https://collector:4318").is_err());
    }
}
