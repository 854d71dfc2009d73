//! `GET /v1/events` through the real handler (`revaer_api::sse::log_events`
//! on a router whose state is an `EventLog` over an in-memory store):
//! replay and the live seam, reconnects at random points, retention resets,
//! keep-alive, slow consumers, filters and validation.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use axum::routing::get;
use http_body_util::BodyExt;
use revaer_api::event_log::{EventFilter, EventLog, EventLogConfig};
use revaer_api::store::Store;
use revaer_api_models::events::Event;
use revaer_api_models::torrents::TorrentState;
use revaer_api_models::{PROBLEM_CONTENT_TYPE, Problem};
use tower::ServiceExt;

/// One SSE message.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Msg {
    Retry(u64),
    Comment(String),
    Event {
        id: Option<u64>,
        event: String,
        data: String,
    },
}

/// A client reading one response body.
struct Client {
    body: Body,
    buffer: String,
}

impl Client {
    async fn open(app: &Router, query: &str, last_event_id: Option<u64>) -> Client {
        let mut request = Request::get(format!("/v1/events{query}"));
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id.to_string());
        }
        let response = app
            .clone()
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "text/event-stream"
        );
        let mut client = Client {
            body: response.into_body(),
            buffer: String::new(),
        };
        assert_eq!(client.next().await, Some(Msg::Retry(1000)));
        client
    }

    /// The next complete message; `None` when the server ended the stream.
    async fn next(&mut self) -> Option<Msg> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                return Some(parse_block(&block));
            }
            let frame = self.body.frame().await?.unwrap();
            if let Ok(data) = frame.into_data() {
                self.buffer.push_str(std::str::from_utf8(&data).unwrap());
            }
        }
    }

    /// The next event, skipping keep-alive comments.
    async fn next_event(&mut self) -> Option<(Option<u64>, String, String)> {
        loop {
            match self.next().await? {
                Msg::Event { id, event, data } => return Some((id, event, data)),
                Msg::Comment(_) => {}
                Msg::Retry(r) => panic!("unexpected retry {r}"),
            }
        }
    }
}

fn parse_block(block: &str) -> Msg {
    let mut id = None;
    let mut event = None;
    let mut data = Vec::new();
    for line in block.lines().filter(|l| !l.is_empty()) {
        if let Some(comment) = line.strip_prefix(':') {
            return Msg::Comment(comment.trim().to_owned());
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "retry" => return Msg::Retry(value.parse().unwrap()),
            "id" => id = Some(value.parse().unwrap()),
            "event" => event = Some(value.to_owned()),
            "data" => data.push(value.to_owned()),
            other => panic!("unexpected field {other} in {block:?}"),
        }
    }
    Msg::Event {
        id,
        event: event.unwrap_or_else(|| "message".to_owned()),
        data: data.join("\n"),
    }
}

/// Checks an event message against its envelope and returns its id.
fn checked_id((id, event, data): &(Option<u64>, String, String)) -> u64 {
    let id = id.unwrap();
    let v: serde_json::Value = serde_json::from_str(data).unwrap();
    assert_eq!(v["id"], id, "{data}");
    assert_eq!(v["event"]["type"], event.as_str(), "{data}");
    assert!(v["at"].as_i64().unwrap() > 0);
    id
}

fn log_with(config: &EventLogConfig) -> Arc<EventLog> {
    EventLog::open(Arc::new(Store::in_memory().unwrap()), config).unwrap()
}

fn app(log: &Arc<EventLog>) -> Router {
    Router::new()
        .route("/v1/events", get(revaer_api::sse::log_events))
        .with_state(Arc::clone(log))
}

fn torrent(n: u64) -> String {
    format!("{n:040x}")
}

fn sample(n: u64) -> Event {
    match n % 3 {
        0 => Event::StateChanged {
            torrent: torrent(n % 5),
            state: if n.is_multiple_of(2) {
                TorrentState::Seeding
            } else {
                TorrentState::Paused
            },
        },
        1 => Event::Completed {
            torrent: torrent(n % 5),
        },
        _ => Event::ConfigApplied { revision: n },
    }
}

async fn append_n(log: &EventLog, range: std::ops::RangeInclusive<u64>) {
    for n in range {
        let id = log.append_durable(sample(n)).await.unwrap();
        assert_eq!(id, n);
    }
}

/// Small deterministic PRNG (xorshift64*).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

#[tokio::test]
async fn replays_after_the_last_event_id_then_continues_live() {
    let log = log_with(&EventLogConfig::default());
    let app = app(&log);
    append_n(&log, 1..=10).await;

    let mut client = Client::open(&app, "", Some(4)).await;
    for expected in 5..=10 {
        let e = client.next_event().await.unwrap();
        assert_eq!(checked_id(&e), expected);
        assert_eq!(e.1, sample(expected).kind().as_str());
    }
    append_n(&log, 11..=12).await;
    for expected in 11..=12 {
        assert_eq!(checked_id(&client.next_event().await.unwrap()), expected);
    }

    // Without an id: live only. The query parameter works like the header.
    let mut live = Client::open(&app, "", None).await;
    let mut from_query = Client::open(&app, "?last_event_id=11", None).await;
    append_n(&log, 13..=13).await;
    assert_eq!(checked_id(&live.next_event().await.unwrap()), 13);
    assert_eq!(checked_id(&from_query.next_event().await.unwrap()), 12);
    assert_eq!(checked_id(&from_query.next_event().await.unwrap()), 13);
    assert_eq!(log.sse_subscribers(), 3);
    drop((client, live, from_query));
    assert_eq!(log.sse_subscribers(), 0);
}

/// A producer appends `total` events in random bursts while a client
/// reads a random number of messages, disconnects, and resumes with the
/// last id it saw (header or query, at random). It must see every
/// matching id exactly once, in order.
async fn reconnecting_client_sees_every_id_once(
    config: EventLogConfig,
    total: u64,
    seed: u64,
    query: &str,
    wanted: impl Fn(&Event) -> bool,
) -> u32 {
    let log = log_with(&config);
    let app = app(&log);
    let producer = {
        let log = Arc::clone(&log);
        tokio::spawn(async move {
            let mut rng = Rng(seed ^ 0x9E37_79B9_7F4A_7C15);
            let mut n = 1;
            while n <= total {
                let burst = 1 + rng.below(40);
                for _ in 0..burst.min(total - n + 1) {
                    if rng.below(4) == 0 {
                        assert_eq!(log.append_durable(sample(n)).await.unwrap(), n);
                    } else {
                        log.append(sample(n));
                    }
                    n += 1;
                }
                for _ in 0..rng.below(20) {
                    tokio::task::yield_now().await;
                }
            }
        })
    };
    let expected: Vec<u64> = (1..=total).filter(|n| wanted(&sample(*n))).collect();
    let mut received: Vec<u64> = Vec::new();
    let mut last: Option<u64> = Some(0);
    let mut rng = Rng(seed);
    let mut connections = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while received.len() < expected.len() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "stuck after {} of {}",
            received.len(),
            expected.len()
        );
        connections += 1;
        let mut client = if rng.below(2) == 0 {
            Client::open(&app, query, last).await
        } else {
            let sep = if query.is_empty() { "?" } else { "&" };
            let q = format!("{query}{sep}last_event_id={}", last.unwrap_or(0));
            Client::open(&app, &q, None).await
        };
        let budget = 1 + rng.below(60);
        for _ in 0..budget {
            // Events flow until the producer is done; a long silence means
            // an event was lost.
            let next = tokio::time::timeout(Duration::from_secs(10), client.next_event()).await;
            let Ok(next) = next else {
                panic!(
                    "stuck after {} of {} (lost event?)",
                    received.len(),
                    expected.len()
                );
            };
            let Some(e) = next else {
                break; // dropped by the server (lagging): resume
            };
            let id = checked_id(&e);
            assert!(
                last.is_none_or(|l| id > l),
                "id {id} after {last:?} (duplicate or out of order)"
            );
            received.push(id);
            last = Some(id);
            if received.len() == expected.len() {
                break;
            }
            if rng.below(8) == 0 {
                tokio::task::yield_now().await;
            }
        }
        drop(client);
    }
    assert_eq!(received, expected);
    producer.await.unwrap();
    assert_eq!(log.sse_subscribers(), 0);
    connections
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnecting_at_random_points_receives_every_id_exactly_once_in_order() {
    for seed in [1, 7, 42] {
        let connections = reconnecting_client_sees_every_id_once(
            EventLogConfig::default(),
            600,
            seed,
            "",
            |_| true,
        )
        .await;
        assert!(connections > 5, "{connections}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_holds_when_streams_lag_and_are_dropped() {
    // A tiny live buffer: streams fall behind during replays (and catch up
    // from the log) and while the client dawdles (and are dropped).
    let config = EventLogConfig {
        live_capacity: 4,
        ..EventLogConfig::default()
    };
    for seed in [3, 11] {
        reconnecting_client_sees_every_id_once(config.clone(), 500, seed, "", |_| true).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filtered_streams_resume_exactly_once() {
    let t = torrent(2);
    let query = format!("?torrent={t}&kind=state_changed,completed&state=seeding");
    reconnecting_client_sees_every_id_once(EventLogConfig::default(), 600, 5, &query, |e| {
        e.torrent() == Some(t.as_str())
            && matches!(
                e,
                Event::Completed { .. }
                    | Event::StateChanged {
                        state: TorrentState::Seeding,
                        ..
                    }
            )
    })
    .await;
}

/// Waits until pruning left `oldest` as the oldest id.
async fn wait_pruned_to(log: &EventLog, oldest: u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let page = log
            .replay_page(0, Arc::new(EventFilter::default()), 1)
            .await
            .unwrap();
        if page.oldest == Some(oldest) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "oldest is {:?}",
            page.oldest
        );
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn an_id_older_than_retention_or_unknown_gets_a_reset_then_the_oldest_onwards() {
    for (asked, reset) in [(3, true), (0, true), (999, true), (15, false), (17, false)] {
        let log = log_with(&EventLogConfig {
            retention: 5,
            ..EventLogConfig::default()
        });
        let app = app(&log);
        append_n(&log, 1..=20).await;
        wait_pruned_to(&log, 16).await;
        let mut client = Client::open(&app, "", Some(asked)).await;
        if reset {
            assert_eq!(
                client.next().await,
                Some(Msg::Event {
                    id: None,
                    event: "reset".to_owned(),
                    data: "16".to_owned()
                }),
                "asked {asked}"
            );
        }
        let first = if reset { 16 } else { asked + 1 };
        for expected in first..=20 {
            assert_eq!(
                checked_id(&client.next_event().await.unwrap()),
                expected,
                "asked {asked}"
            );
        }
        append_n(&log, 21..=21).await;
        assert_eq!(checked_id(&client.next_event().await.unwrap()), 21);
    }
}

#[tokio::test(start_paused = true)]
async fn an_idle_stream_carries_a_keep_alive_comment_every_15_seconds() {
    let log = log_with(&EventLogConfig::default());
    let app = app(&log);
    let mut client = Client::open(&app, "", None).await;
    let start = tokio::time::Instant::now();
    assert!(
        tokio::time::timeout(Duration::from_secs(14), client.next())
            .await
            .is_err(),
        "something arrived before 15 s"
    );
    assert_eq!(
        client.next().await,
        Some(Msg::Comment("keep-alive".to_owned()))
    );
    assert!(start.elapsed() >= Duration::from_secs(15));
    // An event restarts the clock.
    append_n(&log, 1..=1).await;
    let sent = tokio::time::Instant::now();
    assert_eq!(checked_id(&client.next_event().await.unwrap()), 1);
    assert_eq!(
        client.next().await,
        Some(Msg::Comment("keep-alive".to_owned()))
    );
    assert!(sent.elapsed() >= Duration::from_secs(15));
}

#[tokio::test]
async fn a_slow_consumer_is_dropped_and_counted_and_can_resume() {
    let log = log_with(&EventLogConfig {
        live_capacity: 4,
        ..EventLogConfig::default()
    });
    let app = app(&log);
    let mut slow = Client::open(&app, "", None).await;
    let mut fast = Client::open(&app, "", None).await;
    assert_eq!(log.sse_subscribers(), 2);
    for n in 1..=20 {
        append_n(&log, n..=n).await;
        assert_eq!(checked_id(&fast.next_event().await.unwrap()), n);
    }
    // The slow one fell 20 behind a buffer of 4: its stream ends.
    assert_eq!(slow.next().await, None);
    assert_eq!(log.sse_dropped_total(), 1);
    assert_eq!(log.sse_subscribers(), 1);
    // The fast one is unaffected.
    append_n(&log, 21..=21).await;
    assert_eq!(checked_id(&fast.next_event().await.unwrap()), 21);
    // Resuming from the last id it saw (none: 0) replays everything.
    let mut resumed = Client::open(&app, "", Some(0)).await;
    for expected in 1..=21 {
        assert_eq!(checked_id(&resumed.next_event().await.unwrap()), expected);
    }
    assert_eq!(log.sse_dropped_total(), 1);
}

#[tokio::test]
async fn invalid_filters_and_ids_are_400_problems_naming_each_input() {
    let log = log_with(&EventLogConfig::default());
    let app = app(&log);
    let request = Request::get("/v1/events?kind=progress,nope&torrent=xyz&state=seeding")
        .header("last-event-id", "abc")
        .body(Body::empty())
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        PROBLEM_CONTENT_TYPE
    );
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let problem: Problem = serde_json::from_slice(&body).unwrap();
    let pointers: Vec<&str> = problem
        .invalid_params
        .iter()
        .map(|p| p.pointer.as_str())
        .collect();
    assert_eq!(
        pointers,
        vec!["/query/kind", "/query/torrent", "/header/last-event-id"]
    );
    assert_eq!(log.sse_subscribers(), 0);
}
