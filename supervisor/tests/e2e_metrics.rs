//! End-to-end: `GET /metrics` on the real daemon. It needs a key; it shows
//! the API's request counters by route template, every worker's up/restart
//! state, per-key throttles, and the engine's own registry fetched over
//! IPC; after `kill -9` of the engine it reports the engine down or
//! restarted, and the new engine's metrics come back.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Instant;

use common::{DEADLINE, Daemon, POLL, kill9};
use serde_json::{Value, json};

/// `GET /metrics` with `key`: status, content type, body.
fn scrape(daemon: &Daemon, key: Option<&str>) -> (u16, String, String) {
    let url = daemon.url().unwrap();
    let mut request = daemon.client().get(format!("{url}/metrics"));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let resp = request.send().unwrap();
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, content_type, resp.text().unwrap())
}

/// The value of the sample line `series` (exact name and labels).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// Scrapes until `pred` holds; panics with the last body after the deadline.
fn wait_metrics(daemon: &Daemon, key: &str, what: &str, pred: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let (status, _, text) = scrape(daemon, Some(key));
        if status == 200 && pred(&text) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; last scrape: HTTP {status}\n{text}"
        );
        std::thread::sleep(POLL);
    }
}

const ENGINE_UP: &str = "revaer_worker_up{worker=\"engine\"}";
const ENGINE_RESTARTS: &str = "revaer_worker_restarts_total{worker=\"engine\"}";
const ENGINE_TORRENTS: &str = "revaer_engine_torrents{state=\"downloading\"}";

#[test]
#[allow(clippy::too_many_lines, reason = "one scenario, step by step")]
fn metrics_show_requests_workers_throttles_and_the_engine() {
    let daemon = Daemon::start();
    daemon.wait_ok();
    let url = daemon.url().unwrap();
    let client = daemon.client();
    let admin = daemon.admin_key();

    // Like every route but /health, a key is required.
    let (status, _, _) = scrape(&daemon, None);
    assert_eq!(status, 401);

    // Calls to count: a listed route, a templated route with an id that
    // must not leak into a label, and a throttled key.
    let list = client
        .get(format!("{url}/v1/keys"))
        .bearer_auth(&admin)
        .send()
        .unwrap();
    assert_eq!(list.status().as_u16(), 200);
    let odd_id = "no-such-key-4242";
    let revoke = client
        .delete(format!("{url}/v1/keys/{odd_id}"))
        .bearer_auth(&admin)
        .send()
        .unwrap();
    let revoke_status = revoke.status().as_u16();
    assert!(revoke_status >= 400, "{revoke_status}");
    let issued: Value = client
        .post(format!("{url}/v1/keys"))
        .bearer_auth(&admin)
        .json(&json!({"name": "tiny", "scope": "read", "rate_per_minute": 1}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let tiny = issued["key"].as_str().unwrap();
    let tiny_id = issued["id"].as_str().unwrap();
    let mut throttled = 0;
    for _ in 0..3 {
        let status = client
            .get(format!("{url}/v1/keys"))
            .bearer_auth(tiny)
            .send()
            .unwrap()
            .status()
            .as_u16();
        if status == 429 {
            throttled += 1;
        }
    }
    assert!(throttled >= 1, "the 1/minute key was never throttled");

    // The engine link may still be settling: poll for its metrics.
    let text = wait_metrics(&daemon, &admin, "engine metrics and engine up", |t| {
        sample(t, ENGINE_UP) == Some(1.0) && sample(t, ENGINE_TORRENTS).is_some()
    });
    let (status, content_type, _) = scrape(&daemon, Some(&admin));
    assert_eq!(status, 200);
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );

    for worker in ["api", "engine", "fsops"] {
        assert_eq!(
            sample(&text, &format!("revaer_worker_up{{worker=\"{worker}\"}}")),
            Some(1.0),
            "{worker}\n{text}"
        );
        assert_eq!(
            sample(
                &text,
                &format!("revaer_worker_restarts_total{{worker=\"{worker}\"}}")
            ),
            Some(0.0),
            "{worker}\n{text}"
        );
    }
    let listed = sample(
        &text,
        "revaer_http_requests_total{method=\"GET\",route=\"/v1/keys\",status=\"200\"}",
    );
    assert!(listed.is_some_and(|n| n >= 1.0), "{text}");
    assert!(
        text.contains(&format!(
            "revaer_http_requests_total{{method=\"DELETE\",route=\"/v1/keys/{{id}}\",status=\"{revoke_status}\"}} 1"
        )),
        "{text}"
    );
    assert!(
        !text.contains(odd_id),
        "raw path leaked into a label:\n{text}"
    );
    assert!(
        text.contains(
            "revaer_http_request_duration_seconds_count{method=\"GET\",route=\"/v1/keys\"}"
        ),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            &format!("revaer_rate_limit_throttled_total{{key_id=\"{tiny_id}\"}}")
        ),
        Some(f64::from(throttled)),
        "{text}"
    );
    assert!(!text.contains(tiny), "a key secret leaked:\n{text}");
    assert!(
        text.contains("# TYPE revaer_sse_subscribers gauge"),
        "{text}"
    );
    // The engine's own registry, fetched over IPC.
    assert!(
        text.contains("# TYPE revaer_engine_torrents gauge"),
        "{text}"
    );
    assert!(
        text.contains("# TYPE revaer_engine_alerts_total counter"),
        "{text}"
    );
    // Each family appears once.
    let mut families: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .collect();
    let all = families.len();
    families.sort_unstable();
    families.dedup();
    assert_eq!(families.len(), all, "duplicate families:\n{text}");
}

#[test]
fn killed_engine_reads_down_or_restarted_then_serves_metrics_again() {
    let daemon = Daemon::start();
    let before = daemon.wait_ok();
    let admin = daemon.admin_key();
    wait_metrics(&daemon, &admin, "engine up with its metrics", |t| {
        sample(t, ENGINE_UP) == Some(1.0)
            && sample(t, ENGINE_RESTARTS) == Some(0.0)
            && sample(t, ENGINE_TORRENTS).is_some()
    });

    kill9(Daemon::worker_pid(&before, "engine"));
    // The restart backoff is 50 ms in tests: a scrape may land in the
    // down window or just after the restart.
    wait_metrics(&daemon, &admin, "engine down or restarted", |t| {
        sample(t, ENGINE_UP) == Some(0.0) || sample(t, ENGINE_RESTARTS).is_some_and(|n| n >= 1.0)
    });
    let text = wait_metrics(&daemon, &admin, "the new engine up with its metrics", |t| {
        sample(t, ENGINE_UP) == Some(1.0)
            && sample(t, ENGINE_RESTARTS) == Some(1.0)
            && sample(t, ENGINE_TORRENTS).is_some()
    });
    assert_eq!(
        sample(&text, "revaer_worker_restarts_total{worker=\"fsops\"}"),
        Some(0.0),
        "{text}"
    );
}
