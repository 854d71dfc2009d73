//! Interoperability, as users meet it: the real daemon and third-party
//! BitTorrent software from Debian — `opentracker` as the tracker (HTTP
//! and UDP/BEP 15), `aria2c` and `qbittorrent-nox` on 127.0.0.1 and
//! `transmission-daemon` in a network namespace of the test's own (it
//! refuses peers on 127.0.0.0/8) — seeding to and downloading from Revaer.
//! Peers are learned only from the tracker (or a magnet's `tr=` and the
//! peer's metadata, BEP 9): no `peers` at add time, no `ConnectPeer`. A web
//! seed (BEP 19) is the one download without any peer. Everything is
//! driven through the public `/v1` API and checked byte for byte.
//!
//! Shapes × clients (the other side of each transfer):
//! | shape | client | direction | tracker |
//! |---|---|---|---|
//! | multi-file, nested dirs | aria2c | both | HTTP |
//! | single file | aria2c | to Revaer (magnet) | UDP |
//! | hybrid v1+v2 (BEP 52) | qBittorrent | to Revaer | HTTP |
//! | hybrid v1+v2, v2 magnet (`urn:btmh:`) | qBittorrent | to Revaer | HTTP |
//! | v2-only (BEP 52) | qBittorrent | from Revaer | UDP |
//! | private (BEP 27), nested dirs | Transmission | to Revaer | HTTP |
//! | single file | Transmission | from Revaer | UDP |
//! | web seed (BEP 19), nested dirs | HTTP server | to Revaer | none |
//!
//! The first test is the regression test of the tracker defect (ADR 005):
//! a tracker lists every peer including the one asking, libtorrent connects
//! to itself, detects it and bans the peer entry — which, with one peer
//! allowed per IP, meant the whole address, so a seeder on the same host or
//! behind the same NAT was refused forever.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::bencode;
use common::clients::{Netns, Qbittorrent, Transmission};
use common::swarm::{Aria2, Opentracker, Payload, WebSeed};
use common::{DEADLINE, Daemon, POLL, SseMessage, TempDir};
use libtorrent_sys::TorrentFormat;
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
        self.daemon.add_torrent_file(&self.key, torrent)
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

    /// `GET <path>`: status and JSON body.
    fn get(&self, path: &str) -> (u16, Value) {
        let resp = self
            .daemon
            .client()
            .get(format!("{}{path}", self.url))
            .bearer_auth(&self.key)
            .send()
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().unwrap_or(Value::Null))
    }

    /// `POST /v1/torrents/{id}/action`; the status.
    fn action(&self, id: &str, action: &str) -> u16 {
        self.daemon
            .client()
            .post(format!("{}/v1/torrents/{id}/action", self.url))
            .bearer_auth(&self.key)
            .json(&json!({ "action": action }))
            .send()
            .unwrap()
            .status()
            .as_u16()
    }

    /// The ids `GET /v1/torrents` lists.
    fn listed_ids(&self) -> Vec<String> {
        let (status, list) = self.get("/v1/torrents");
        assert_eq!(status, 200, "{list}");
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].as_str().unwrap().to_owned())
            .collect()
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

    /// `GET /v1/torrents/{id}/peers`.
    fn peers(&self, id: &str) -> Value {
        self.daemon
            .client()
            .get(format!("{}/v1/torrents/{id}/peers", self.url))
            .bearer_auth(&self.key)
            .send()
            .unwrap()
            .json()
            .unwrap()
    }

    /// Polls the torrent's detail until `pred` holds.
    fn wait(&self, id: &str, what: &str, limit: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        self.wait_or_show(id, what, limit, pred, String::new)
    }

    /// [`Self::wait`]; on time-out the panic also shows `other()` (the
    /// other client's view) and Revaer's peers.
    fn wait_or_show(
        &self,
        id: &str,
        what: &str,
        limit: Duration,
        pred: impl Fn(&Value) -> bool,
        other: impl Fn() -> String,
    ) -> Value {
        let deadline = Instant::now() + limit;
        let mut last = None;
        loop {
            if let Some(detail) = self.detail(id) {
                if pred(&detail) {
                    return detail;
                }
                last = Some(detail);
            }
            if Instant::now() >= deadline {
                let peers = self
                    .daemon
                    .client()
                    .get(format!("{}/v1/torrents/{id}/peers", self.url))
                    .bearer_auth(&self.key)
                    .send()
                    .and_then(reqwest::blocking::Response::text)
                    .unwrap_or_default();
                panic!(
                    "{what}: not within {limit:?}; last detail: {last:#?}; peers: {peers}; other side: {}",
                    other()
                );
            }
            std::thread::sleep(POLL);
        }
    }

    fn wait_seeding(&self, id: &str, what: &str) -> Value {
        self.wait(id, what, TRANSFER_DEADLINE, |d| d["state"] == "seeding")
    }

    /// Puts `payload`'s files where Revaer saves (`<data>/downloads`), adds
    /// its torrent and waits until Revaer checked them, seeds and its
    /// tracker answered.
    fn seed(&self, payload: &Payload) -> String {
        let downloads = self.daemon.data.0.join("downloads");
        for (path, bytes) in &payload.files {
            let full = if path.is_empty() {
                downloads.join(&payload.name)
            } else {
                downloads.join(&payload.name).join(path)
            };
            std::fs::create_dir_all(full.parent().unwrap()).unwrap();
            std::fs::write(full, bytes).unwrap();
        }
        let id = self.add_torrent(&payload.torrent);
        assert_eq!(id, payload.id);
        self.wait(&id, "seeding and announced", DEADLINE, |d| {
            d["state"] == "seeding" && tracker_working(d)
        });
        id
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
    // Revaer was the only seeder; its counters catch up within a tick.
    api.wait(&id, "Revaer counting the upload", DEADLINE, |d| {
        d["uploaded"].as_u64() >= Some(3 << 20)
    });
}

// ------------------------------------------------------------ qBittorrent

/// qBittorrent seeds a hybrid v1+v2 torrent (BEP 52; padding files between
/// the files of a multi-file torrent with nested directories); Revaer finds
/// it through the HTTP tracker and downloads. A hybrid torrent is announced
/// under both its v1 and its truncated v2 info-hash: the tracker tracks
/// both.
#[test]
fn revaer_downloads_a_hybrid_torrent_from_qbittorrent() {
    let port = common::swarm::free_port();
    let url = format!("http://127.0.0.1:{port}/announce");
    let payload = Payload::build(
        "hybrid",
        &[
            ("a/b/one.bin", (1 << 20) + 12_345),
            ("a/two.bin", 700_000),
            ("three.txt", 5_000),
        ],
        vec![url],
        TorrentFormat::Hybrid,
        |t| t,
    );
    let info = libtorrent_sys::parse_torrent(&payload.torrent).unwrap();
    assert!(info.info_hash_v1.is_some() && info.info_hash_v2.is_some());
    assert!(info.files.iter().any(|f| f.pad), "hybrid without padding");
    assert_eq!(payload.hashes.len(), 2);
    let _tracker = Opentracker::start_on(port, &payload.hash_refs());

    let mut qbt = Qbittorrent::start();
    qbt.add(&payload.torrent, &payload.dir.0);
    qbt.wait_seeding("checking the hybrid payload", DEADLINE);

    let daemon = Daemon::start();
    let api = Api::new(&daemon);
    let id = api.add_torrent(&payload.torrent);
    assert_eq!(id, payload.id);
    assert_eq!(Some(&id), info.info_hash_v1.as_ref());
    let done = api.wait_or_show(
        &id,
        "download of the hybrid torrent from qBittorrent",
        TRANSFER_DEADLINE,
        |d| d["state"] == "seeding",
        || qbt.torrents().to_string(),
    );
    assert_eq!(done["files"].as_array().unwrap().len(), 3, "{done}");
    payload.assert_copy_in(&daemon.data.0.join("downloads"), "revaer");
}

/// The torrent id an SSE message's event is about, if any.
fn event_torrent(message: &SseMessage) -> Option<&str> {
    message.data["event"]["torrent"].as_str()
}

/// Reads `events` until each kind in `want` was seen for torrent `id`, then
/// for as long as more keep coming within `idle`; returns every message.
fn read_events(
    events: &std::sync::mpsc::Receiver<SseMessage>,
    id: &str,
    want: &[&str],
    idle: Duration,
) -> Vec<SseMessage> {
    let deadline = Instant::now() + TRANSFER_DEADLINE;
    let mut seen = Vec::new();
    let missing = |seen: &[SseMessage]| -> Vec<String> {
        want.iter()
            .filter(|kind| {
                !seen
                    .iter()
                    .any(|m| m.event == **kind && event_torrent(m) == Some(id))
            })
            .map(|kind| (*kind).to_owned())
            .collect()
    };
    loop {
        let timeout = if missing(&seen).is_empty() {
            idle
        } else {
            deadline.saturating_duration_since(Instant::now())
        };
        match events.recv_timeout(timeout) {
            Ok(message) => seen.push(message),
            Err(_) if missing(&seen).is_empty() => return seen,
            Err(e) => panic!(
                "events {:?} for {id} not seen ({e}); got: {:#?}",
                missing(&seen),
                seen.iter()
                    .map(|m| (m.id, m.event.as_str(), event_torrent(m)))
                    .collect::<Vec<_>>()
            ),
        }
    }
}

/// Asserts that every torrent event in `messages` is about `id`.
fn assert_all_about(messages: &[SseMessage], id: &str, what: &str) {
    let others: Vec<_> = messages
        .iter()
        .filter(|m| event_torrent(m).is_some_and(|t| t != id))
        .map(|m| (m.id, m.event.as_str(), event_torrent(m)))
        .collect();
    assert!(
        others.is_empty(),
        "{what}: events under another id: {others:?}"
    );
}

/// Revaer is given only a v2 magnet (`urn:btmh:` with the tracker in
/// `tr=`) of a hybrid torrent that qBittorrent seeds. The magnet knows only
/// the v2 hash, so the torrent is added under its truncated v2 id; the
/// metadata (from qBittorrent, BEP 9) shows a hybrid and brings the v1
/// hash. Users hold the id the add answered, so the torrent keeps it:
/// through the download (detail, list, every event, live and in the log),
/// and after a daemon restart restores it from its resume data, where
/// commands keep working under it. Before the fix the engine lost track of
/// it at the metadata (libtorrent reported the v1 id from then on).
#[test]
fn revaer_keeps_the_id_of_a_v2_magnet_of_a_hybrid_torrent() {
    let port = common::swarm::free_port();
    let url = format!("http://127.0.0.1:{port}/announce");
    let payload = Payload::build(
        "btmh-hybrid",
        &[("x/y/one.bin", (1 << 20) + 4_321), ("two.bin", 500_000)],
        vec![url.clone()],
        TorrentFormat::Hybrid,
        |t| t,
    );
    let info = libtorrent_sys::parse_torrent(&payload.torrent).unwrap();
    let v1 = info.info_hash_v1.clone().unwrap();
    let v2 = info.info_hash_v2.clone().unwrap();
    let v2_id = v2[..40].to_owned();
    assert_ne!(v1, v2_id);
    assert_eq!(payload.hashes, vec![v1.clone(), v2_id.clone()]);
    let _tracker = Opentracker::start_on(port, &payload.hash_refs());

    let mut qbt = Qbittorrent::start();
    qbt.add(&payload.torrent, &payload.dir.0);
    qbt.wait_seeding("checking the hybrid payload", DEADLINE);

    let mut daemon = Daemon::start();
    let api = Api::new(&daemon);
    let live = common::follow_events(&api.url, &api.key, "");
    let magnet = format!("magnet:?xt=urn:btmh:1220{v2}&tr={}", url_encode(&url));
    let id = api.add_magnet(&magnet);
    assert_eq!(id, v2_id, "the add answers the truncated v2 id");

    let done = api.wait_or_show(
        &id,
        "download of the hybrid torrent from its v2 magnet",
        TRANSFER_DEADLINE,
        |d| d["state"] == "seeding",
        || qbt.torrents().to_string(),
    );
    assert_eq!(done["id"], json!(id), "{done}");
    assert_eq!(done["has_metadata"], json!(true), "{done}");
    assert_eq!(done["files"].as_array().unwrap().len(), 2, "{done}");
    payload.assert_copy_in(&daemon.data.0.join("downloads"), "revaer");
    assert_eq!(api.listed_ids(), vec![id.clone()]);
    let want = ["torrent_added", "metadata_received", "completed"];
    let seen = read_events(&live, &id, &want, Duration::from_millis(500));
    assert_all_about(&seen, &id, "live SSE");
    drop(api);

    daemon.restart(&common::bin_dir());
    let api = Api::new(&daemon);
    let restored = api.wait(&id, "the restored torrent seeding", DEADLINE, |d| {
        d["state"] == "seeding" && d["stale"] == json!(false)
    });
    assert_eq!(restored["id"], json!(id), "{restored}");
    assert_eq!(api.listed_ids(), vec![id.clone()], "listed once, same id");
    let state = daemon.data.0.join("state/engine");
    assert!(state.join(format!("{id}.resume")).exists());
    let v1_files: Vec<_> = std::fs::read_dir(&state)
        .unwrap()
        .filter_map(|e| Some(e.ok()?.file_name().to_string_lossy().into_owned()))
        .filter(|name| name.starts_with(&v1))
        .collect();
    assert!(
        v1_files.is_empty(),
        "state stored under the v1 id: {v1_files:?}"
    );
    // The event log, replayed after the restart, names it the same.
    let replay = common::follow_events(&api.url, &api.key, "?last_event_id=0");
    let logged = read_events(&replay, &id, &want, Duration::from_millis(500));
    assert_all_about(&logged, &id, "event log");
    // Commands work under that id.
    assert_eq!(api.action(&id, "pause"), 204);
    api.wait(&id, "paused", DEADLINE, |d| d["state"] == "paused");
    assert_eq!(api.action(&id, "resume"), 204);
    api.wait(&id, "seeding again", DEADLINE, |d| d["state"] == "seeding");
    payload.assert_copy_in(&daemon.data.0.join("downloads"), "revaer");
}

/// Revaer seeds a v2-only torrent (BEP 52: SHA-256 merkle trees, no v1
/// info-hash); qBittorrent finds it through the UDP tracker and downloads.
/// Revaer's id for it is the v2 info-hash truncated to 20 bytes, and that
/// is what both clients announce: the tracker's whitelist holds only it.
#[test]
fn qbittorrent_downloads_a_v2_only_torrent_from_revaer_over_udp() {
    let port = common::swarm::free_port();
    let url = format!("udp://127.0.0.1:{port}/announce");
    let payload = Payload::build(
        "v2only",
        &[("d/e/alpha.bin", 1_500_000), ("beta.bin", 600_001)],
        vec![url.clone()],
        TorrentFormat::V2Only,
        |t| t,
    );
    let info = libtorrent_sys::parse_torrent(&payload.torrent).unwrap();
    assert_eq!(info.info_hash_v1, None);
    let v2 = info.info_hash_v2.clone().unwrap();
    assert_eq!(payload.id, v2[..40], "the id is the truncated v2 hash");
    assert_eq!(payload.hashes, vec![payload.id.clone()]);
    let tracker = Opentracker::start_on(port, &payload.hash_refs());

    let daemon = Daemon::start();
    let api = Api::new(&daemon);
    let id = api.seed(&payload);
    // Revaer announced under the truncated v2 hash: the tracker lists it
    // to whoever asks with that hash (here a probe on a dead port, which
    // then leaves again).
    let listed = tracker.announce(&payload.id, 9, "started");
    tracker.announce(&payload.id, 9, "stopped");
    assert!(
        listed.iter().any(|a| a.port() != 9),
        "Revaer is not tracked under the truncated v2 hash: {listed:?}"
    );

    let mut qbt = Qbittorrent::start();
    let save = qbt.save.0.clone();
    qbt.add(&payload.torrent, &save);
    qbt.wait_seeding(
        "download of the v2-only torrent from Revaer",
        TRANSFER_DEADLINE,
    );
    payload.assert_copy_in(&save, "qBittorrent");
    // Revaer was the only seeder; its counters catch up within a tick.
    let detail = api.wait(&id, "Revaer counting the upload", DEADLINE, |d| {
        d["uploaded"].as_u64() >= Some(2_100_001)
    });
    assert_eq!(detail["trackers"][0]["url"], json!(url), "{detail}");
}

// ----------------------------------------------------------- Transmission

/// The test config with Revaer's BitTorrent socket on `ip` only (the
/// host side of a test namespace's veth pair).
fn config_listening_on(ip: std::net::Ipv4Addr) -> String {
    let config = common::test_config("");
    let loopback = "listen_interfaces = \"127.0.0.1:0\"";
    assert!(config.contains(loopback));
    config.replace(loopback, &format!("listen_interfaces = \"{ip}:0\""))
}

/// Transmission (in its namespace) seeds a private torrent (BEP 27) with
/// nested directories; Revaer finds it through the HTTP tracker and
/// downloads it. Then: is it treated as private?
///
/// - the API reports `private: true` (and `false` for a public torrent);
/// - every peer Revaer has for it is Transmission, the tracker's peer;
/// - PEX (and `ut_metadata`, BEP 9) are off for it: a peer that connects
///   (a probe that learns Revaer's address from the tracker, as any peer
///   would) gets an extension handshake without `ut_pex`, while for a
///   public torrent on the same engine the same probe sees `ut_pex`. That
///   contrast is what makes the check able to fail: an engine that dropped
///   the private flag, or a session that loaded PEX for every torrent,
///   would advertise `ut_pex` for both;
/// - DHT and LSD: they are off for the whole session in tests (they must
///   not leave this machine), so the private flag cannot be observed
///   switching them off. What can fail is the engine's socket table: it
///   holds no LSD socket (UDP port 6771, multicast) and no UDP socket on
///   any address but the configured one, which is where a DHT or LSD
///   turned on by a configuration regression would show.
#[test]
fn revaer_downloads_a_private_torrent_from_transmission() {
    let netns = Netns::create();
    let port = common::swarm::free_port_on(netns.host);
    let url = format!("http://{}:{port}/announce", netns.host);
    let private = Payload::build(
        "private",
        &[("x/y/secret.bin", 1_300_000), ("x/notes.txt", 40_000)],
        vec![url.clone()],
        TorrentFormat::V1Only,
        |t| bencode::make_private(&t),
    );
    assert!(
        libtorrent_sys::parse_torrent(&private.torrent)
            .unwrap()
            .private
    );
    let public = Payload::new("public.bin", &[("", 300_000)], vec![url]);
    let tracker = Opentracker::start_at(netns.host, port, &[&private.id, &public.id]);

    let mut transmission = Transmission::start(&netns);
    let tid = transmission.add(&private.torrent_path(), &private.dir.0);
    let seeding = transmission.wait_seeding(tid, "checking the private payload", DEADLINE);
    assert_eq!(seeding["isPrivate"], json!(true), "{seeding}");

    let daemon = Daemon::start_with(&common::bin_dir(), &config_listening_on(netns.host));
    let api = Api::new(&daemon);
    let public_id = api.seed(&public);
    let id = api.add_torrent(&private.torrent);
    assert_eq!(id, private.id);
    // Every peer Revaer has while it downloads, polled alongside.
    let seen = std::cell::RefCell::new(std::collections::BTreeSet::new());
    let done = api.wait_or_show(
        &id,
        "download of the private torrent from Transmission",
        TRANSFER_DEADLINE,
        |d| {
            for peer in api.peers(&id)["peers"].as_array().into_iter().flatten() {
                seen.borrow_mut()
                    .insert(peer["address"].as_str().unwrap_or("?").to_owned());
            }
            d["state"] == "seeding"
        },
        || transmission.torrent(tid).to_string(),
    );
    private.assert_copy_in(&daemon.data.0.join("downloads"), "revaer");
    assert_eq!(done["private"], json!(true), "{done}");
    assert_eq!(api.detail(&public_id).unwrap()["private"], json!(false));
    // The bytes came from Transmission, the one peer the tracker knew.
    let total: u64 = private.files.iter().map(|(_, b)| b.len() as u64).sum();
    transmission.wait_torrent(tid, "counting its upload", DEADLINE, |t| {
        t["uploadedEver"].as_u64() >= Some(total)
    });
    // Transmission is the only thing at the namespace's address (the
    // port differs when it connected out).
    let transmission_ip = format!("{}:", netns.inside);
    for peer in seen.borrow().iter() {
        assert!(
            peer.starts_with(&transmission_ip),
            "a peer other than Transmission: {peer}"
        );
    }

    // Revaer's address, learned the way any peer learns it.
    let probe_port = 9;
    let listed = tracker.announce(&private.id, probe_port, "started");
    let revaer = listed
        .iter()
        .find(|a| *a.ip() == netns.host && a.port() != probe_port)
        .unwrap_or_else(|| panic!("the tracker does not list Revaer: {listed:?}"));
    let revaer = std::net::SocketAddr::V4(*revaer);
    let private_ext = common::swarm::extension_handshake(revaer, &private.id);
    let public_ext = common::swarm::extension_handshake(revaer, &public.id);
    tracker.announce(&private.id, probe_port, "stopped");
    let extensions =
        |ext: &bencode::Value| ext.get("m").map(bencode::Value::keys).unwrap_or_default();
    assert!(
        extensions(&public_ext).contains(&"ut_pex".to_owned()),
        "the control: a public torrent runs PEX: {public_ext:?}"
    );
    let private_extensions = extensions(&private_ext);

    assert!(
        !private_extensions.contains(&"ut_pex".to_owned())
            && !private_extensions.contains(&"ut_metadata".to_owned()),
        "PEX or metadata exchange on a private torrent: {private_ext:?}"
    );

    let health = daemon.wait_ok();
    let engine = Daemon::worker_pid(&health, "engine");
    let sockets = udp_sockets(engine);
    assert!(!sockets.is_empty(), "the engine has no UDP socket at all?");

    for (ip, port) in &sockets {
        assert!(
            *port != 6771 && *ip == netns.host,
            "engine UDP socket {ip}:{port} (all: {sockets:?})"
        );
    }
}

/// The local addresses of the IPv4 and IPv6 UDP sockets process `pid`
/// holds (IPv6 ones as `0.0.0.0`, which fails the callers' checks).
fn udp_sockets(pid: u32) -> Vec<(std::net::Ipv4Addr, u16)> {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy().into_owned();
            Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned())
        })
        .collect();
    let mut out = Vec::new();
    for table in ["udp", "udp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap();
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.len() < 10 || !inodes.iter().any(|i| i == cols[9]) {
                continue;
            }
            let (addr, port) = cols[1].split_once(':').unwrap();
            let port = u16::from_str_radix(port, 16).unwrap();
            let ip = if addr.len() == 8 {
                std::net::Ipv4Addr::from(u32::from_str_radix(addr, 16).unwrap().swap_bytes())
            } else {
                std::net::Ipv4Addr::UNSPECIFIED
            };
            out.push((ip, port));
        }
    }
    out
}

/// Revaer seeds a single-file torrent; Transmission, in its namespace,
/// finds it through the UDP tracker and downloads it.
#[test]
fn transmission_downloads_from_revaer_over_udp() {
    let netns = Netns::create();
    let port = common::swarm::free_port_on(netns.host);
    let url = format!("udp://{}:{port}/announce", netns.host);
    let payload = Payload::new("for-transmission.bin", &[("", (2 << 20) + 777)], vec![url]);
    let _tracker = Opentracker::start_at(netns.host, port, &[&payload.id]);

    let daemon = Daemon::start_with(&common::bin_dir(), &config_listening_on(netns.host));
    let api = Api::new(&daemon);
    let id = api.seed(&payload);

    let mut transmission = Transmission::start(&netns);
    let save = transmission.save.0.clone();
    let tid = transmission.add(&payload.torrent_path(), &save);
    transmission.wait_seeding(tid, "download from Revaer", TRANSFER_DEADLINE);
    payload.assert_copy_in(&save, "Transmission");
    api.wait(&id, "Revaer counting the upload", DEADLINE, |d| {
        d["uploaded"].as_u64() >= Some((2 << 20) + 777)
    });
}

// --------------------------------------------------------------- web seed

/// A torrent whose only source is a web seed (BEP 19 `url-list`, served by
/// an HTTP server with Range support): no tracker, no peer. Multi-file with
/// nested directories, so the file URLs are `<base><name>/<path>`.
#[test]
fn revaer_downloads_from_a_web_seed_alone() {
    let payload = Payload::build(
        "webseeded",
        &[
            ("p/q/big.bin", (1 << 20) + 3),
            ("p/small.bin", 65_536),
            ("top.txt", 999),
        ],
        Vec::new(),
        TorrentFormat::V1Only,
        |t| t,
    );
    let server = WebSeed::start(&payload.dir.0);
    let torrent = bencode::with_web_seeds(&payload.torrent, &[server.url()]);
    assert_eq!(
        libtorrent_sys::parse_torrent(&torrent)
            .unwrap()
            .id
            .to_string(),
        payload.id,
        "url-list is outside the info dictionary"
    );

    let daemon = Daemon::start();
    let api = Api::new(&daemon);
    let id = api.add_torrent(&torrent);
    let done = api.wait_or_show(
        &id,
        "download from the web seed",
        TRANSFER_DEADLINE,
        |d| d["state"] == "seeding",
        || {
            format!(
                "web seed: {} requests, {} bytes",
                server.requests(),
                server.bytes_served()
            )
        },
    );
    payload.assert_copy_in(&daemon.data.0.join("downloads"), "revaer");
    assert_eq!(done["trackers"], json!([]), "{done}");
    let total: u64 = payload.files.iter().map(|(_, b)| b.len() as u64).sum();
    assert!(
        server.bytes_served() >= total,
        "the web seed served {} of {total} bytes",
        server.bytes_served()
    );
}
