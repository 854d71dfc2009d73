//! End to end: what users see of a swarm. A real `revaerd` downloads from
//! an `aria2c` seeder it learned from `opentracker`; while the transfer is
//! held back by a rate limit, `GET /v1/torrents/{id}/peers` and `revaer
//! peers` show aria2c with its flags, the torrent's tracker shows its next
//! announce and the tracker's seed/leech counts, and `/metrics` counts the
//! peer connection. A second torrent names a tracker nobody listens on: its
//! detail shows the error and the tracker-error metric counts it by kind.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::swarm::{Aria2, Opentracker, Payload, free_port};
use common::{DEADLINE, Daemon, POLL, bin_dir};
use serde_json::{Value, json};

struct Api<'a> {
    daemon: &'a Daemon,
    url: String,
    key: String,
}

impl Api<'_> {
    fn get(&self, path: &str) -> (u16, String) {
        let resp = self
            .daemon
            .client()
            .get(format!("{}{path}", self.url))
            .bearer_auth(&self.key)
            .send()
            .unwrap();
        (resp.status().as_u16(), resp.text().unwrap())
    }

    fn json(&self, path: &str) -> Value {
        let (status, body) = self.get(path);
        assert_eq!(status, 200, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap()
    }

    fn post(&self, path: &str, body: &Value) -> Value {
        let resp = self
            .daemon
            .client()
            .post(format!("{}{path}", self.url))
            .bearer_auth(&self.key)
            .json(body)
            .send()
            .unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().unwrap();
        assert!(status < 300, "POST {path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    fn add_torrent(&self, torrent: &[u8]) -> String {
        self.daemon.add_torrent_file(&self.key, torrent)
    }

    /// Polls `GET path` until `pred` holds on its JSON.
    fn wait(&self, path: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut last = Value::Null;
        while Instant::now() < deadline {
            let (status, body) = self.get(path);
            if status == 200 {
                last = serde_json::from_str(&body).unwrap_or(Value::Null);
                if pred(&last) {
                    return last;
                }
            }
            std::thread::sleep(POLL);
        }
        panic!("{what}: not within 60 s; last: {last:#}");
    }

    /// Polls `/metrics` until `series` is at least `min`.
    fn wait_metric(&self, series: &str, min: f64) -> f64 {
        let deadline = Instant::now() + DEADLINE;
        let mut last = None;
        while Instant::now() < deadline {
            let (_, text) = self.get("/metrics");
            last = text
                .lines()
                .find_map(|l| l.strip_prefix(series)?.trim().parse::<f64>().ok());
            if last.is_some_and(|v| v >= min) {
                return last.unwrap();
            }
            std::thread::sleep(POLL);
        }
        panic!("{series} never reached {min}; last {last:?}");
    }
}

#[test]
fn peers_trackers_and_their_metrics_show_a_real_swarm() {
    let port = free_port();
    let payload = Payload::new(
        "peered",
        &[("one.bin", 2 << 20), ("two/three.bin", 1 << 20)],
        vec![format!("http://127.0.0.1:{port}/announce")],
    );
    let tracker = Opentracker::start_on(port, &[&payload.id]);
    let seeder = Aria2::seed(&payload);

    let daemon = Daemon::start();
    daemon.wait_ok();
    let api = Api {
        url: daemon.url().unwrap(),
        key: daemon.admin_key(),
        daemon: &daemon,
    };
    let id = api.add_torrent(&payload.torrent);
    // Slow enough that the peer is there to be looked at.
    api.post(
        &format!("/v1/torrents/{id}/action"),
        &json!({"action": "rate", "download_bps": 65_536, "upload_bps": null}),
    );

    let peers_path = format!("/v1/torrents/{id}/peers");
    let is_seeder = |p: &Value| p["seed"] == true;
    let peers = api.wait(&peers_path, "the aria2c seeder among the peers", |p| {
        p["peers"]
            .as_array()
            .is_some_and(|list| list.iter().any(is_seeder))
    });
    let seed = peers["peers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| is_seeder(p))
        .unwrap()
        .clone();
    // Revaer learned the seeder from the tracker and connected to its
    // listen port; only aria2c seeds this torrent.
    if seed["direction"] == "outgoing" {
        assert_eq!(
            seed["address"],
            format!("127.0.0.1:{}", seeder.port),
            "{seed}"
        );
    }
    assert_eq!(seed["seed"], true, "{seed}");
    assert_eq!(seed["progress"], 1.0, "{seed}");
    assert_eq!(seed["transport"], "tcp", "uTP is off in tests: {seed}");
    assert_eq!(seed["interested"], true, "we want its pieces: {seed}");
    assert!(
        ["outgoing", "incoming"].contains(&seed["direction"].as_str().unwrap()),
        "{seed}"
    );

    cli_shows_the_peer(&api, &daemon, &id, &seed);

    // The tracker: working, next announce scheduled, the swarm's counts.
    let detail = api.json(&format!("/v1/torrents/{id}"));
    let t = &detail["trackers"][0];
    assert_eq!(t["status"], "working", "{detail:#}");
    assert!(
        t["next_announce_secs"].as_u64().is_some_and(|s| s > 0),
        "{t}"
    );
    // The counts of the last reply (aria2c may have announced after us).
    let (seeders, leechers) = (t["seeders"].as_u64(), t["leechers"].as_u64());
    assert!(
        seeders.zip(leechers).is_some_and(|(s, l)| s + l >= 1),
        "the tracker's counts: {t}"
    );
    assert_eq!(t["last_error"], Value::Null, "{t}");

    // Lift the limit: the download completes, byte for byte.
    api.post(
        &format!("/v1/torrents/{id}/action"),
        &json!({"action": "rate", "download_bps": null, "upload_bps": null}),
    );
    api.wait(&format!("/v1/torrents/{id}"), "download", |d| {
        d["state"] == "seeding"
    });
    payload.assert_copy_in(&daemon.data.0.join("downloads"), "revaer");
    let opened = api.wait_metric(
        &format!(
            "revaer_engine_peer_connection_attempts_total{{direction=\"{}\"}}",
            seed["direction"].as_str().unwrap()
        ),
        1.0,
    );
    assert!(opened >= 1.0);

    drop(tracker);
    a_dead_tracker_is_named_and_counted(&api);
}

/// A tracker nobody listens on: a connect error, named and counted.
fn a_dead_tracker_is_named_and_counted(api: &Api<'_>) {
    let dead = free_port();
    let orphan = Payload::new(
        "orphan",
        &[("lonely.bin", 100_000)],
        vec![format!("http://127.0.0.1:{dead}/announce")],
    );
    let orphan_id = api.add_torrent(&orphan.torrent);
    let detail = api.wait(
        &format!("/v1/torrents/{orphan_id}"),
        "tracker error shown",
        |d| d["trackers"][0]["status"] == "error",
    );
    let t = &detail["trackers"][0];
    assert!(
        t["last_error"].as_str().is_some_and(|e| !e.is_empty()),
        "{t}"
    );
    assert!(t["fails"].as_u64().is_some_and(|f| f >= 1), "{t}");
    api.wait_metric("revaer_engine_tracker_errors_total{kind=\"connect\"}", 1.0);
}

/// `revaer peers` shows the same peer, as JSON and as a table.
fn cli_shows_the_peer(api: &Api<'_>, daemon: &Daemon, id: &str, seed: &Value) {
    let key_file = daemon.data.0.join("bootstrap-admin.key");
    let cli = |args: &[&str]| {
        let out = Command::new(bin_dir().join("revaer"))
            .args(["--api-url", &api.url, "--api-key-file"])
            .arg(&key_file)
            .args(args)
            .env_remove("REVAER_API_KEY")
            .env_remove("REVAER_OUTPUT")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "revaer {args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let listed: Value = serde_json::from_str(&cli(&["--output", "json", "peers", id])).unwrap();
    assert!(
        listed["peers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["address"] == seed["address"]),
        "{listed:#}"
    );
    let table = cli(&["--output", "table", "peers", id]);
    assert!(
        table.contains("ADDRESS") && table.contains("FLAGS"),
        "{table}"
    );
    assert!(table.contains(seed["address"].as_str().unwrap()), "{table}");
}
