//! `revaer tail` against a mocked event stream that repeats events, drops
//! the connection and sends a `reset`: every event is printed once, in
//! order, the position survives a restart, and reconnecting is bounded.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{ID, KEY, exact, revaer, revaer_at};
use httpmock::prelude::*;
use serde_json::{Value, json};

fn event(id: u64, event: &Value) -> String {
    let kind = event["type"].as_str().unwrap();
    let data = json!({"id": id, "at": 1_700_000_000 + id, "event": event});
    format!("id: {id}\nevent: {kind}\ndata: {data}\n\n")
}

fn added(id: u64) -> String {
    event(
        id,
        &json!({"type": "torrent_added", "torrent": ID, "name": "debian", "state": "downloading"}),
    )
}

fn state(id: u64, to: &str) -> String {
    event(
        id,
        &json!({"type": "state_changed", "torrent": ID, "state": to}),
    )
}

fn completed(id: u64) -> String {
    event(id, &json!({"type": "completed", "torrent": ID}))
}

const FILTERS: [(&str, &str); 2] = [
    ("torrent", ID),
    ("kind", "torrent_added,state_changed,completed"),
];

fn stream<'a>(
    server: &'a MockServer,
    last_event_id: Option<&str>,
    body: String,
) -> httpmock::Mock<'a> {
    server.mock(|when, then| {
        let when = exact(when, GET, "/v1/events", &FILTERS);
        match last_event_id {
            Some(id) => when.header("last-event-id", id),
            None => when.header_missing("last-event-id"),
        };
        then.status(200)
            .header("content-type", "text/event-stream")
            .body(body);
    })
}

fn ids(out: &str) -> Vec<u64> {
    out.lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["id"]
                .as_u64()
                .unwrap()
        })
        .collect()
}

fn temp(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("revaer-cli-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn duplicates_disconnects_and_a_reset_print_each_event_once_and_resume_after_restart() {
    let dir = temp("tail");
    let state_file = dir.join("state/tail.json");
    let server = MockServer::start();
    // The first attempt meets an engine restart (503 + Retry-After).
    let busy = server.mock(|when, then| {
        exact(when, GET, "/v1/events", &FILTERS).header_missing("last-event-id");
        then.status(503).header("retry-after", "0").json_body(
            json!({"type": "about:blank", "title": "Service Unavailable", "status": 503}),
        );
    });
    busy.up_to_n_times(1);
    let first = stream(
        &server,
        None,
        format!(
            "retry: 10\n\n: keep-alive\n\n{}{}",
            added(1),
            state(2, "downloading")
        ),
    );
    // The replay after id 2 repeats it.
    let second = stream(
        &server,
        Some("2"),
        format!("{}{}", state(2, "downloading"), state(3, "paused")),
    );
    // Events 3 and 4 were pruned: reset, then the replay from 5.
    let third = stream(
        &server,
        Some("3"),
        format!(
            "event: reset\ndata: 5\n\n{}{}{}",
            state(5, "downloading"),
            completed(6),
            completed(7)
        ),
    );
    let args = [
        "--output",
        "json",
        "tail",
        "--torrent",
        ID,
        "--kind",
        "torrent_added,state_changed",
        "--kind",
        "completed",
        "--state-file",
        state_file.to_str().unwrap(),
        "--count",
        "5",
        "--max-backoff",
        "50ms",
    ];
    let run = revaer_at(&server, &args);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(ids(&run.out), vec![1, 2, 3, 5, 6]);
    busy.assert_calls(1);
    first.assert_calls(1);
    second.assert_calls(1);
    third.assert_calls(1);
    assert!(run.err.contains("reset"), "{}", run.err);
    assert!(run.err.contains("reconnecting"), "{}", run.err);
    let saved: Value =
        serde_json::from_str(&std::fs::read_to_string(&state_file).unwrap()).unwrap();
    assert_eq!(saved["last_event_id"], 6);
    assert_eq!(saved["api_url"], server.base_url());

    // A restart resumes from the saved id; the repeated 6 is not printed.
    let fourth = stream(
        &server,
        Some("6"),
        format!("{}{}", completed(6), completed(7)),
    );
    let mut again = args.to_vec();
    let n = again.len();
    again[n - 3] = "1";
    let run = revaer_at(&server, &again);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(ids(&run.out), vec![7]);
    fourth.assert_calls(1);
    let saved: Value =
        serde_json::from_str(&std::fs::read_to_string(&state_file).unwrap()).unwrap();
    assert_eq!(saved["last_event_id"], 7);

    // --since overrides the state file.
    let since = stream(&server, Some("4"), state(5, "downloading"));
    again.extend(["--since", "4"]);
    let run = revaer_at(&server, &again);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(ids(&run.out), vec![5]);
    since.assert_calls(1);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn refusals_end_at_once_and_outages_end_after_the_retry_budget() {
    let server = MockServer::start();
    let denied = server.mock(|when, then| {
        when.method(GET).path("/v1/events");
        then.status(401)
            .json_body(json!({"type": "about:blank", "title": "Unauthorized", "status": 401}));
    });
    let run = revaer_at(&server, &["tail", "--no-state"]);
    assert_eq!(run.code, 3, "{run:?}");
    denied.assert_calls(1);

    let limited = MockServer::start();
    let mock = limited.mock(|when, then| {
        when.method(GET).path("/v1/events");
        then.status(429)
            .header("retry-after", "0")
            .json_body(json!({"type": "about:blank", "title": "Too Many Requests", "status": 429}));
    });
    let run = revaer_at(
        &limited,
        &[
            "tail",
            "--no-state",
            "--max-retries",
            "2",
            "--max-backoff",
            "10ms",
        ],
    );
    assert_eq!(run.code, 5, "{run:?}");
    mock.assert_calls(3);

    // A stream that ends without delivering anything counts as a failure.
    let empty = MockServer::start();
    let mock = empty.mock(|when, then| {
        when.method(GET).path("/v1/events");
        then.status(200)
            .header("content-type", "text/event-stream")
            .body("retry: 5\n\n");
    });
    let run = revaer_at(
        &empty,
        &[
            "tail",
            "--no-state",
            "--max-retries",
            "1",
            "--max-backoff",
            "10ms",
        ],
    );
    assert_eq!(run.code, 6, "{run:?}");
    mock.assert_calls(2);
    assert!(run.err.contains("gave up reconnecting"), "{}", run.err);

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let run = revaer(&[
        "--api-url",
        &url,
        "--api-key",
        KEY,
        "tail",
        "--no-state",
        "--max-retries",
        "2",
        "--max-backoff",
        "10ms",
    ]);
    assert_eq!(run.code, 6, "{run:?}");
}

#[test]
fn events_unknown_to_this_cli_are_passed_through() {
    let server = MockServer::start();
    let body = "id: 9\nevent: brand_new\ndata: {\"id\":9,\"at\":1,\"event\":{\"type\":\"brand_new\",\"x\":1}}\n\n";
    server.mock(|when, then| {
        when.method(GET).path("/v1/events");
        then.status(200)
            .header("content-type", "text/event-stream")
            .body(body);
    });
    let run = revaer_at(
        &server,
        &["--output", "json", "tail", "--no-state", "--count", "1"],
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        serde_json::from_str::<Value>(run.out.trim()).unwrap()["event"]["type"],
        "brand_new"
    );
    let run = revaer_at(
        &server,
        &["--output", "table", "tail", "--no-state", "--count", "1"],
    );
    assert_eq!(run.out, "#9  brand_new  (unknown to this revaer)\n");
}
