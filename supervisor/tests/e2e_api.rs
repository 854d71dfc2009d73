//! End to end through the public API only: a real `revaerd`, its real
//! engine (libtorrent) downloading from a real seed found through an
//! in-test tracker on 127.0.0.1, driven by `/v1/torrents` and watched on
//! `/v1/events`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::{Daemon, Seed, SseMessage, Tracker, follow_events};
use serde_json::{Value, json};

const DEADLINE: Duration = Duration::from_secs(60);

struct Api<'a> {
    daemon: &'a Daemon,
    url: String,
    key: String,
}

impl Api<'_> {
    fn get(&self, path: &str) -> (u16, Value) {
        let response = self
            .daemon
            .client()
            .get(format!("{}{path}", self.url))
            .bearer_auth(&self.key)
            .send()
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().unwrap_or(Value::Null))
    }

    fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let response = self
            .daemon
            .client()
            .post(format!("{}{path}", self.url))
            .bearer_auth(&self.key)
            .json(body)
            .send()
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().unwrap_or(Value::Null))
    }

    fn upload(&self, torrent: &[u8], options: &Value) -> (u16, Option<String>, Value) {
        let (content_type, body) = common::torrent_form(torrent, Some(options));
        let response = self
            .daemon
            .client()
            .post(format!("{}/v1/torrents", self.url))
            .bearer_auth(&self.key)
            .header("content-type", content_type)
            .body(body)
            .send()
            .unwrap();
        let status = response.status().as_u16();
        let location = response
            .headers()
            .get("location")
            .map(|v| v.to_str().unwrap().to_owned());
        (status, location, response.json().unwrap_or(Value::Null))
    }

    /// Polls `GET path` until `pred` holds.
    fn wait(&self, path: &str, what: &str, pred: impl Fn(u16, &Value) -> bool) -> Value {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let (status, body) = self.get(path);
            if pred(status, &body) {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; last: {status} {body:#}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn file<'a>(detail: &'a Value, suffix: &str) -> &'a Value {
    detail["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"].as_str().unwrap().ends_with(suffix))
        .unwrap_or_else(|| panic!("no file {suffix} in {detail:#}"))
}

#[test]
#[allow(clippy::too_many_lines, reason = "one scenario, step by step")]
fn add_list_detail_select_act_remove_and_see_it_all_on_sse() {
    let tracker = Tracker::start();
    let seed = Seed::build(
        "show",
        &[
            ("e01.mkv", 400 * 1024),
            ("e02.mkv", 300 * 1024),
            ("info.nfo", 2 * 1024),
        ],
        0,
        vec![tracker.announce_url()],
    );
    let daemon = Daemon::start();
    daemon.wait_ok();
    let api = Api {
        daemon: &daemon,
        url: daemon.url().unwrap(),
        key: daemon.admin_key(),
    };
    let events = follow_events(&api.url, &api.key, "");

    // Add the .torrent with labels and the .nfo deselected.
    let (status, location, created) = api.upload(
        &seed.torrent,
        &json!({"tags": ["e2e", "tv"], "category": "shows", "files": [{"glob": "*.nfo", "priority": 0}]}),
    );
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(id, seed.id);
    assert_eq!(
        location.as_deref(),
        Some(format!("/v1/torrents/{id}").as_str())
    );
    let (status, dup, _) = api.upload(&seed.torrent, &json!({}));
    assert_eq!(status, 409, "{dup:?}");

    // Listed with its labels; filters find it.
    let (status, list) = api.get("/v1/torrents?tags=e2e,tv");
    assert_eq!(status, 200);
    assert_eq!(list["items"][0]["id"], id.as_str());
    assert_eq!(list["items"][0]["category"], "shows");
    api.wait(
        "/v1/torrents?extension=nfo&tracker=127.0.0.1",
        "metadata filters",
        |_, l| l["items"].as_array().is_some_and(|i| i.len() == 1),
    );
    let (_, none) = api.get("/v1/torrents?extension=iso");
    assert_eq!(none["items"].as_array().unwrap().len(), 0);

    // Downloads from the seed the tracker named; the .nfo stays skipped.
    let path = format!("/v1/torrents/{id}");
    let detail = api.wait(&path, "the download to finish", |s, d| {
        s == 200 && matches!(d["state"].as_str(), Some("finished" | "seeding"))
    });
    assert_eq!(file(&detail, "e01.mkv")["progress"], 1.0);
    assert_eq!(file(&detail, "info.nfo")["priority"], 0);
    assert_eq!(
        detail["trackers"][0]["url"],
        tracker.announce_url().as_str()
    );
    assert_eq!(detail["stale"], false);
    // The completion announce may still be in flight.
    api.wait(&path, "the tracker to answer", |_, d| {
        d["trackers"][0]["status"] == "working" && d["trackers"][0]["peers"].is_u64()
    });
    let on_disk = daemon.data.0.join("downloads/show/e01.mkv");
    assert_eq!(std::fs::read(&on_disk).unwrap(), seed.files[0].1);

    // Completion started an FsOps job, which puts it in the library.
    let detail = api.wait(&path, "the FsOps job", |_, d| {
        d["fsops_job"]["state"] == "completed" && d["fsops"] == "completed"
    });
    assert_eq!(detail["fsops_job"]["steps"].as_array().unwrap().len(), 9);
    let library = daemon
        .data
        .0
        .join("library")
        .join(detail["fsops_job"]["library_path"].as_str().unwrap());
    assert_eq!(
        std::fs::read(library.join("e01.mkv")).unwrap(),
        seed.files[0].1
    );

    // Select the .nfo after all: it downloads too.
    let (status, body) = api.post(
        &format!("{path}/select"),
        &json!({"rules": [{"glob": "*.nfo", "priority": 4}]}),
    );
    assert_eq!(status, 204, "{body}");
    api.wait(&path, "the .nfo to download", |_, d| {
        file(d, "info.nfo")["progress"] == 1.0
    });
    let (status, problem) = api.post(
        &format!("{path}/select"),
        &json!({"rules": [{"index": 99, "priority": 4}]}),
    );
    assert_eq!(status, 400);
    assert_eq!(problem["invalid_params"][0]["pointer"], "/rules/0/index");

    // Actions.
    let action = |body: Value| {
        let (status, answer) = api.post(&format!("{path}/action"), &body);
        assert_eq!(status, 204, "{body}: {answer}");
    };
    action(json!({"action": "pause"}));
    api.wait(&path, "paused", |_, d| d["state"] == "paused");
    action(json!({"action": "resume"}));
    api.wait(&path, "resumed", |_, d| d["state"] != "paused");
    action(json!({"action": "reannounce"}));
    action(json!({"action": "recheck"}));
    action(json!({"action": "sequential", "enabled": true}));
    action(json!({"action": "rate", "download_bps": 2_000_000, "upload_bps": 1_000_000}));
    let detail = api.wait(&path, "limits", |_, d| d["upload_limit_bps"] == 1_000_000);
    assert_eq!(detail["download_limit_bps"], 2_000_000);
    assert_eq!(detail["sequential"], true);

    // Remove with data: gone from the API and from disk.
    action(json!({"action": "remove_data"}));
    api.wait(&path, "removal", |s, _| s == 404);
    let (_, list) = api.get("/v1/torrents");
    assert_eq!(list["items"].as_array().unwrap().len(), 0);
    let deadline = Instant::now() + DEADLINE;
    while on_disk.exists() {
        assert!(Instant::now() < deadline, "data not deleted");
        std::thread::sleep(Duration::from_millis(50));
    }

    // Everything was on the event stream, in order, each id once.
    let mut received = Vec::new();
    let deadline = Instant::now() + DEADLINE;
    while !received
        .iter()
        .any(|m: &SseMessage| m.event == "torrent_removed")
    {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "no torrent_removed event; saw {received:#?}"
        );
        if let Ok(message) = events.recv_timeout(left) {
            received.push(message);
        }
    }
    let ids: Vec<u64> = received.iter().map(|m| m.id).collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "ids not increasing: {ids:?}"
    );
    let for_torrent: Vec<&str> = received
        .iter()
        .filter(|m| m.data["event"]["torrent"] == id.as_str() || m.data["torrent"] == id.as_str())
        .map(|m| m.event.as_str())
        .collect();
    for kind in [
        "torrent_added",
        "state_changed",
        "files_selected",
        "completed",
        "fsops_started",
        "fsops_step",
        "fsops_completed",
        "torrent_removed",
    ] {
        assert!(for_torrent.contains(&kind), "no {kind} in {for_torrent:?}");
    }
}
