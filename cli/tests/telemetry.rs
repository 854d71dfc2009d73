//! With `REVAER_TELEMETRY_ENDPOINT` set, a command exports its span and
//! counters over OTLP/HTTP, and the `traceparent` it sent to the API names
//! the exported trace. The collector is a listener on 127.0.0.1 in the test.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{KEY, revaer};
use httpmock::prelude::*;

/// One request the collector received: path and body.
type Export = (String, Vec<u8>);

/// A minimal OTLP/HTTP collector: answers 200 to every POST and reports it.
fn collector() -> (String, mpsc::Receiver<Export>) {
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
            let path = request_line
                .split_whitespace()
                .nth(1)
                .unwrap_or("")
                .to_owned();
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
            let mut body = vec![0_u8; length];
            let _ = reader.read_exact(&mut body);
            let _ = stream.write_all(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            );
            if tx.send((path, body)).is_err() {
                return;
            }
        }
    });
    (url, rx)
}

#[test]
fn commands_export_a_span_and_counters_that_share_the_request_trace() {
    let (endpoint, exports) = collector();
    let server = MockServer::start();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(None::<String>));
    let record = std::sync::Arc::clone(&seen);
    let api = server.mock(|when, then| {
        when.method(GET).path("/v1/keys").is_true(move |req| {
            let tp = req
                .headers()
                .get("traceparent")
                .map(|v| v.to_str().unwrap().to_owned());
            *record.lock().unwrap() = tp;
            true
        });
        then.status(200).json_body(serde_json::json!([]));
    });
    let url = server.base_url();
    let run = revaer(&[
        "--api-url",
        &url,
        "--api-key",
        KEY,
        "--telemetry-endpoint",
        &endpoint,
        "keys",
        "ls",
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    api.assert();
    // The traceparent the API saw is sampled...
    let traceparent = seen.lock().unwrap().clone().expect("no traceparent");
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "{traceparent}");
    assert_eq!(parts[3], "01", "{traceparent}");
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while !(got.iter().any(|(p, _): &Export| p == "/v1/traces")
        && got.iter().any(|(p, _)| p == "/v1/metrics"))
    {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "exports seen: {:?}",
            got.iter().map(|e| &e.0).collect::<Vec<_>>()
        );
        if let Ok(export) = exports.recv_timeout(left) {
            got.push(export);
        }
    }
    let traces: Vec<u8> = got
        .iter()
        .filter(|(p, _)| p == "/v1/traces")
        .flat_map(|(_, b)| b.clone())
        .collect();
    let metrics: Vec<u8> = got
        .iter()
        .filter(|(p, _)| p == "/v1/metrics")
        .flat_map(|(_, b)| b.clone())
        .collect();
    let contains =
        |haystack: &[u8], needle: &[u8]| haystack.windows(needle.len()).any(|w| w == needle);
    // ...and its trace id and span id are those of the exported spans.
    let bytes = |hex: &str| -> Vec<u8> {
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect()
    };
    assert!(contains(&traces, &bytes(parts[1])), "trace id not exported");
    assert!(
        contains(&traces, &bytes(parts[2])),
        "request span not exported"
    );
    assert!(contains(&traces, b"revaer keys ls"), "no command span");
    assert!(contains(&traces, b"GET /v1/keys"), "no request span");
    assert!(contains(&metrics, b"revaer_cli_commands_total"));
    assert!(contains(&metrics, b"success"));
}

#[test]
fn without_an_endpoint_nothing_is_exported_but_requests_carry_a_traceparent() {
    let server = MockServer::start();
    let api = server.mock(|when, then| {
        when.method(GET)
            .path("/v1/keys")
            .header_matches("traceparent", "^00-[0-9a-f]{32}-[0-9a-f]{16}-00$");
        then.status(200).json_body(serde_json::json!([]));
    });
    let url = server.base_url();
    let run = revaer(&["--api-url", &url, "--api-key", KEY, "keys", "ls"]);
    assert_eq!(run.code, 0, "{run:?}");
    api.assert();
    let run = revaer(&[
        "--api-url",
        &url,
        "--api-key",
        KEY,
        "--telemetry-endpoint",
        "nope",
        "keys",
        "ls",
    ]);
    assert_eq!(run.code, 0);
    assert!(run.err.contains("telemetry is off"), "{}", run.err);
}
