//! Interoperability, as users meet it: the real daemon and third-party
//! BitTorrent software from Debian on 127.0.0.1 — `opentracker` as the
//! tracker (HTTP and UDP) and `aria2c` as the other client, seeding to and
//! downloading from Revaer. Peers are learned only from the tracker (or a
//! magnet's `tr=`): no `peers` at add time, no `ConnectPeer`. Everything is
//! driven through the public `/v1` API and checked byte for byte.
//!
//! The first test is the regression test of the tracker defect (ADR 005):
//! a tracker lists every peer including the one asking, libtorrent connects
//! to itself, detects it and bans the peer entry — which, with one peer
//! allowed per IP, meant the whole address, so a seeder on the same host or
//! behind the same NAT was refused forever.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::swarm::{Aria2, Opentracker, Payload};
use common::{DEADLINE, Daemon, POLL, TempDir};
use serde_json::{Value, json};

/// A transfer of a few MiB on loopback takes well under a second; this is
/// room for a busy 2-core machine, not an expected duration.
const TRANSFER_DEADLINE: Duration = Duration::from_secs(90);

struct Api<'a> {
    daemon: &'a Daemon,
    url: String,
    key: String,
}

impl<'a> Api<'a> {
    fn new(daemon: &'a Daemon) -> Self {
        daemon.wait_ok();
        Self {
            url: daemon.url().unwrap(),
            key: daemon.admin_key(),
            daemon,
        }
    }

    fn add_torrent(&self, torrent: &[u8]) -> String {
        let (content_type, body) = common::torrent_form(torrent, None);
        let resp = self
            .daemon
            .client()
            .post(format!("{}/v1/torrents", self.url))
            .bearer_auth(&self.key)
            .header("content-type", content_type)
            .body(body)
            .send()
            .unwrap();
        let status = resp.status().as_u16();
        let body: Value = resp.json().unwrap();
        assert_eq!(status, 201, "add refused: {body}");
        body["id"].as_str().unwrap().to_owned()
    }

    fn add_magnet(&self, magnet: &str) -> String {
        let resp = self
            .daemon
            .client()
            .post(format!("{}/v1/torrents", self.url))
            .bearer_auth(&self.key)
            .json(&json!({ "magnet": magnet }))
            .send()
            .unwrap();
        let status = resp.status().as_u16();
        let body: Value = resp.json().unwrap();
        assert_eq!(status, 201, "add refused: {body}");
        body["id"].as_str().unwrap().to_owned()
    }

    fn detail(&self, id: &str) -> Option<Value> {
        let resp = self
            .daemon
            .client()
            .get(format!("{}/v1/torrents/{id}", self.url))
            .bearer_auth(&self.key)
            .send()
            .ok()?;
        (resp.status().as_u16() == 200).then(|| resp.json().ok())?
    }

    /// Polls the torrent's detail until `pred` holds.
    fn wait(&self, id: &str, what: &str, limit: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + limit;
        let mut last = None;
        loop {
            if let Some(detail) = self.detail(id) {
                if pred(&detail) {
                    return detail;
                }
                last = Some(detail);
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not within {limit:?}; last detail: {last:#?}"
            );
            std::thread::sleep(POLL);
        }
    }

    fn wait_seeding(&self, id: &str, what: &str) -> Value {
        self.wait(id, what, TRANSFER_DEADLINE, |d| d["state"] == "seeding")
    }
}

fn tracker_working(detail: &Value) -> bool {
    detail["trackers"]
        .as_array()
        .is_some_and(|t| t.iter().any(|t| t["status"] == "working"))
}

/// Regression test of the tracker defect: Revaer announces first (the
/// tracker answers with Revaer's own address), then a third-party seeder
/// appears and connects in. Before the fix, Revaer's self-connection got
/// 127.0.0.1 banned and the seeder was refused forever.
#[test]
fn revaer_downloads_from_a_late_seeder_that_announced_after_it() {
    let (tracker, payload) = whitelisted_payload(
        "late-seeder",
        &[
            ("a.bin", 3 << 20),
            ("deep/er/b.bin", 1 << 20),
            ("c.txt", 70_001),
        ],
        false,
    );
    assert_eq!(
        libtorrent_sys::parse_torrent(&payload.torrent)
            .unwrap()
            .trackers,
        vec![tracker.http_url()]
    );

    let daemon = Daemon::start();
    let api = Api::new(&daemon);
    let id = api.add_torrent(&payload.torrent);
    assert_eq!(id, payload.id);
    // Revaer's first announce is answered (with itself as the only peer).
    api.wait(&id, "first announce", DEADLINE, tracker_working);

    let _seeder = Aria2::seed(&payload);
    api.wait_seeding(&id, "download from the late aria2c seeder");
    payload.assert_copy_in(&daemon.data.0.join("downloads"), "revaer");
}

fn whitelisted_payload(name: &str, files: &[(&str, usize)], udp: bool) -> (Opentracker, Payload) {
    // The whitelist needs the id, the id needs the URL, the URL needs the
    // port: reserve the port first, then start the tracker on it.
    let port = common::swarm::free_port();
    let url = if udp {
        format!("udp://127.0.0.1:{port}/announce")
    } else {
        format!("http://127.0.0.1:{port}/announce")
    };
    let payload = Payload::new(name, files, vec![url]);
    let tracker = Opentracker::start_on(port, &[&payload.id]);
    (tracker, payload)
}

/// Revaer finds an aria2c seeder through a UDP tracker (BEP 15) and
/// downloads a single-file torrent. aria2c announces over HTTP (it speaks
/// UDP trackers only with its DHT on); Revaer gets a magnet naming only the
/// UDP URL of the same opentracker, so the seeder's address can only have
/// come from the UDP announce.
#[test]
fn revaer_downloads_from_aria2c_found_through_a_udp_tracker() {
    let (tracker, payload) = whitelisted_payload("single.bin", &[("", 2 << 20)], false);
    let _seeder = Aria2::seed(&payload);
    let daemon = Daemon::start();
    let api = Api::new(&daemon);
    let magnet = format!(
        "magnet:?xt=urn:btih:{}&dn=single.bin&tr={}",
        payload.id,
        url_encode(&tracker.udp_url())
    );
    let id = api.add_magnet(&magnet);
    let done = api.wait_seeding(&id, "download over the UDP tracker");
    let trackers = done["trackers"].as_array().unwrap();
    assert_eq!(trackers.len(), 1, "{done}");
    assert_eq!(trackers[0]["url"], json!(tracker.udp_url()), "{done}");
    payload.assert_copy_in(&daemon.data.0.join("downloads"), "revaer");
}

fn url_encode(text: &str) -> String {
    text.replace('%', "%25")
        .replace(':', "%3A")
        .replace('/', "%2F")
}

/// A magnet with the tracker in `tr=`: the metadata comes from the aria2c
/// seeder (BEP 9), then the data.
#[test]
fn revaer_fetches_metadata_and_data_from_a_magnet_through_the_tracker() {
    let (tracker, payload) = whitelisted_payload(
        "magnetic",
        &[("x/one.bin", 1 << 20), ("two.bin", 300_000)],
        false,
    );
    let _seeder = Aria2::seed(&payload);
    let daemon = Daemon::start();
    let api = Api::new(&daemon);
    let magnet = format!(
        "magnet:?xt=urn:btih:{}&dn=magnetic&tr={}",
        payload.id,
        url_encode(&tracker.http_url())
    );
    let id = api.add_magnet(&magnet);
    assert_eq!(id, payload.id);
    let done = api.wait_seeding(&id, "magnet download");
    assert_eq!(done["has_metadata"], json!(true));
    payload.assert_copy_in(&daemon.data.0.join("downloads"), "revaer");
}

/// aria2c finds Revaer through the HTTP tracker and downloads everything
/// from it: Revaer is the only seeder.
#[test]
fn aria2c_downloads_from_revaer_found_through_the_tracker() {
    let (_tracker, payload) = whitelisted_payload(
        "shared",
        &[("s1.bin", 2 << 20), ("sub/s2.bin", 1 << 20)],
        false,
    );
    let daemon = Daemon::start();
    let api = Api::new(&daemon);
    // The data is already in place: Revaer checks it and seeds.
    let downloads = daemon.data.0.join("downloads");
    for (path, bytes) in &payload.files {
        let full = downloads.join(&payload.name).join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, bytes).unwrap();
    }
    let id = api.add_torrent(&payload.torrent);
    api.wait(&id, "seeding and announced", DEADLINE, |d| {
        d["state"] == "seeding" && tracker_working(d)
    });

    let out = TempDir::new("aria2-leech");
    let mut leech = Aria2::leech(&payload.torrent_path(), &out.0);
    leech.wait_done(TRANSFER_DEADLINE);
    payload.assert_copy_in(&out.0, "aria2c");
    let detail = api.detail(&id).unwrap();
    assert!(
        detail["uploaded"].as_u64().unwrap() >= 3 << 20,
        "Revaer did not do the uploading: {detail}"
    );
}
