//! Traces end to end (ADR 008): `revaer add` → API → engine → the download
//! completes from a real seed on 127.0.0.1 → FsOps puts it in the library.
//! Every process exports to an in-test OTLP/HTTP collector (FsOps through
//! the API's relay), and the test checks that the spans of the CLI, API,
//! engine and FsOps share one trace id, each with the right parent.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{Daemon, POLL, Seed, TempDir, Tracker, bin_dir, test_config};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message as _;

const DEADLINE: Duration = Duration::from_secs(90);
/// Largest export the collector accepts.
const MAX_EXPORT: usize = 8 << 20;

/// One span as the collector saw it.
#[derive(Debug, Clone)]
struct Seen {
    service: String,
    name: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
}

/// A minimal OTLP/HTTP collector on 127.0.0.1: decodes every
/// `POST /v1/traces` and reports its spans.
fn collector() -> (String, mpsc::Receiver<Vec<Seen>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            let mut length = 0_usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some((name, value)) = line.split_once(':')
                    && name.eq_ignore_ascii_case("content-length")
                {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0_u8; length.min(MAX_EXPORT)];
            let _ = reader.read_exact(&mut body);
            let _ = stream.write_all(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            );
            if !request_line.contains("/v1/traces") {
                continue;
            }
            let Ok(export) = ExportTraceServiceRequest::decode(body.as_slice()) else {
                continue;
            };
            if tx.send(spans_of(&export)).is_err() {
                return;
            }
        }
    });
    (url, rx)
}

fn spans_of(export: &ExportTraceServiceRequest) -> Vec<Seen> {
    let mut out = Vec::new();
    for resource_spans in &export.resource_spans {
        let service = resource_spans
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .find(|kv| kv.key == "service.name")
            .and_then(|kv| kv.value.as_ref()?.value.as_ref())
            .map(|v| match v {
                AnyValue::StringValue(s) => s.clone(),
                other => format!("{other:?}"),
            })
            .unwrap_or_default();
        for scope in &resource_spans.scope_spans {
            for span in &scope.spans {
                out.push(Seen {
                    service: service.clone(),
                    name: span.name.clone(),
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                });
            }
        }
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The one span of `service` named `name` in `trace`.
fn find<'a>(spans: &'a [Seen], trace: &str, service: &str, name: &str) -> Option<&'a Seen> {
    spans
        .iter()
        .find(|s| s.trace_id == trace && s.service == service && s.name == name)
}

#[test]
#[allow(clippy::too_many_lines, reason = "one scenario, step by step")]
fn one_trace_runs_from_the_cli_through_the_api_and_engine_to_fsops() {
    let (endpoint, exports) = collector();
    let tracker = Tracker::start();
    let seed = Seed::build(
        "traced",
        &[("a.mkv", 256 * 1024), ("b.mkv", 128 * 1024)],
        0,
        vec![tracker.announce_url()],
    );
    let daemon = Daemon::start_with_env(
        &bin_dir(),
        &test_config(""),
        &[
            ("REVAER_TELEMETRY_ENDPOINT", &endpoint),
            ("OTEL_BSP_SCHEDULE_DELAY", "200"),
        ],
    );
    daemon.wait_ok();
    let key = daemon.admin_key();
    let work = TempDir::new("traces");
    let torrent_file = work.0.join("traced.torrent");
    std::fs::write(&torrent_file, &seed.torrent).unwrap();

    // `revaer add` exports its own spans and sends a sampled traceparent.
    let output = Command::new(bin_dir().join("revaer"))
        .args(["--api-url", &daemon.url().unwrap(), "--api-key", &key])
        .args(["--telemetry-endpoint", &endpoint, "--output", "json", "add"])
        .arg(&torrent_file)
        .env_remove("REVAER_API_KEY")
        .env_remove("REVAER_TELEMETRY_ENDPOINT")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(output.status.success(), "revaer add: {output:?}");
    let added: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let id = added["id"].as_str().unwrap().to_owned();
    assert_eq!(id, seed.id);

    // The download completes and FsOps puts it in the library.
    let deadline = Instant::now() + DEADLINE;
    loop {
        let detail: serde_json::Value = daemon
            .client()
            .get(format!("{}/v1/torrents/{id}", daemon.url().unwrap()))
            .bearer_auth(&key)
            .send()
            .unwrap()
            .json()
            .unwrap_or_default();
        if detail["fsops_job"]["state"] == "completed" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "FsOps never completed: {detail:#}"
        );
        std::thread::sleep(POLL);
    }

    // Collect until the whole chain is there (or the deadline).
    let deadline = Instant::now() + DEADLINE;
    let mut spans: Vec<Seen> = Vec::new();
    let chain = loop {
        let trace = spans
            .iter()
            .find(|s| s.service == "revaer-cli" && s.name == "revaer add")
            .map(|s| s.trace_id.clone());
        if let Some(trace) = trace {
            let job = find(&spans, &trace, "revaer-fsops", "fsops job");
            let download = find(&spans, &trace, "revaer-engine", "engine torrent download");
            if job.is_some() && download.is_some() {
                break trace;
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "the chain never completed; spans seen: {spans:#?}"
        );
        if let Ok(batch) = exports.recv_timeout(left.min(POLL * 10)) {
            spans.extend(batch);
        }
    };
    // Let the last batches (FsOps' steps are in the same frame as its job
    // span, so they are already here) settle into one view.
    while let Ok(batch) = exports.try_recv() {
        spans.extend(batch);
    }
    let get = |service: &str, name: &str| {
        find(&spans, &chain, service, name)
            .unwrap_or_else(|| panic!("no {service} span `{name}` in {spans:#?}"))
            .clone()
    };

    let command = get("revaer-cli", "revaer add");
    let cli_request = spans
        .iter()
        .find(|s| {
            s.trace_id == chain
                && s.service == "revaer-cli"
                && s.name.starts_with("POST")
                && s.parent_span_id == command.span_id
        })
        .unwrap_or_else(|| panic!("no CLI request span in {spans:#?}"))
        .clone();
    let api = get("revaer-api", "POST /v1/torrents");
    let engine_add = get("revaer-engine", "engine add");
    let download = get("revaer-engine", "engine torrent download");
    // One download, one span: libtorrent may report the torrent finished
    // more than once (files selected after the add), and each `Completed`
    // must name the same span, or the job hangs off one the trace view
    // does not show as the download.
    let downloads = spans
        .iter()
        .filter(|s| {
            s.trace_id == chain
                && s.service == "revaer-engine"
                && s.name == "engine torrent download"
        })
        .count();
    assert_eq!(downloads, 1, "download spans in {spans:#?}");
    let job = get("revaer-fsops", "fsops job");

    // CLI → API (HTTP header) → engine (IPC envelope) → completion
    // (remembered per torrent) → FsOps (relayed by the API).
    assert_eq!(api.parent_span_id, cli_request.span_id, "API ← CLI");
    assert_eq!(engine_add.parent_span_id, api.span_id, "engine add ← API");
    assert_eq!(
        download.parent_span_id, engine_add.span_id,
        "download ← engine add"
    );
    assert_eq!(job.parent_span_id, download.span_id, "FsOps job ← download");
    let steps: Vec<&Seen> = spans
        .iter()
        .filter(|s| s.trace_id == chain && s.parent_span_id == job.span_id)
        .collect();
    assert!(
        steps
            .iter()
            .all(|s| s.service == "revaer-fsops" && s.name.starts_with("fsops ")),
        "{steps:#?}"
    );
    let step_names: Vec<&str> = steps.iter().map(|s| s.name.as_str()).collect();
    for expected in ["fsops validate", "fsops transfer", "fsops record"] {
        assert!(step_names.contains(&expected), "{step_names:?}");
    }

    // Every span id of the chain is distinct and all four processes took
    // part under one trace id.
    let mut ids: HashMap<&str, &str> = HashMap::new();
    for s in spans.iter().filter(|s| s.trace_id == chain) {
        assert!(
            ids.insert(&s.span_id, &s.name).is_none(),
            "span id {} used twice",
            s.span_id
        );
    }
    let mut services: Vec<&str> = spans
        .iter()
        .filter(|s| s.trace_id == chain)
        .map(|s| s.service.as_str())
        .collect();
    services.sort_unstable();
    services.dedup();
    assert_eq!(
        services,
        ["revaer-api", "revaer-cli", "revaer-engine", "revaer-fsops"]
    );
}
