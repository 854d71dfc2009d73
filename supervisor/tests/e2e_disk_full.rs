//! Full disks, end to end, on small tmpfs mounts the test makes inside its
//! own data dir (needs root, as `./x test` has here; without it the tests
//! say so and do nothing).
//!
//! - The **downloads** filesystem fills up mid-download: the torrent stops
//!   in an error state that names the cause, the daemon keeps running, and
//!   once space is freed a `resume` finishes it with every byte intact.
//! - The **state** filesystem (the API's SQLite) fills up: writes are
//!   refused with a 507 Problem+JSON, nothing refused is there afterwards,
//!   everything acknowledged is, health says the API is degraded, and once
//!   space is freed writes are accepted again and health recovers.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Daemon, POLL, Seed, Tracker, bin_dir, test_config};
use serde_json::{Value, json};

const DEADLINE: Duration = Duration::from_secs(60);

/// A tmpfs mounted at a path for the test's lifetime.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// `None` when this process may not mount (not root).
    fn mount(at: &Path, size: &str) -> Option<Self> {
        std::fs::create_dir_all(at).unwrap();
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Self(at.to_path_buf()))
    }

    fn resize(&self, size: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(status.success(), "remount {}", self.0.display());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn can_mount() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    eprintln!("not root: cannot mount the small filesystems this test needs");
    false
}

/// Writes zeros into `path` until the filesystem refuses (bounded).
fn fill(path: &Path) {
    let mut file = std::fs::File::create(path).unwrap();
    let chunk = vec![0_u8; 64 * 1024];
    for _ in 0..100_000 {
        if file
            .write_all(&chunk)
            .and_then(|()| file.sync_all())
            .is_err()
        {
            break;
        }
    }
    // Fill the last partial block too.
    for _ in 0..100_000 {
        if file.write_all(&[0]).and_then(|()| file.flush()).is_err() {
            return;
        }
    }
}

fn send(daemon: &Daemon, request: reqwest::blocking::RequestBuilder) -> (u16, Value, String) {
    let response = request.bearer_auth(daemon.admin_key()).send().unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, response.json().unwrap_or(Value::Null), content_type)
}

fn torrent(daemon: &Daemon, id: &str) -> Value {
    let url = daemon.url().unwrap();
    send(
        daemon,
        daemon.client().get(format!("{url}/v1/torrents/{id}")),
    )
    .1
}

fn wait_for(what: &str, mut pred: impl FnMut() -> Option<Value>) -> Value {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = pred() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(POLL);
    }
}

/// The largest labels an add may carry (32 tags of 60 bytes): each add
/// needs new pages in the catalog, so a full disk refuses it.
fn big_tags(n: u32) -> Vec<String> {
    (0..32)
        .map(|i| format!("t{n:05}-{i:02}-{}", "x".repeat(50)))
        .collect()
}

fn magnet(n: u32) -> String {
    format!(
        "magnet:?xt=urn:btih:{:040x}&dn=full-{n}",
        0xd15c_0000_u64 + u64::from(n)
    )
}

#[test]
fn a_full_downloads_disk_stops_the_torrent_with_a_reason_and_resume_finishes_it() {
    if !can_mount() {
        return;
    }
    let tracker = Tracker::start();
    let seed = Seed::build(
        "big",
        &[("part1.bin", 1536 * 1024), ("part2.bin", 1536 * 1024)],
        0,
        vec![tracker.announce_url()],
    );
    let (daemon, downloads) = Daemon::start_prepared(&bin_dir(), &test_config(""), |data| {
        Tmpfs::mount(&data.join("downloads"), "1m").expect("mount")
    });
    daemon.wait_ok();
    let url = daemon.url().unwrap();
    let (content_type, body) = common::torrent_form(&seed.torrent, None);
    let (status, _, _) = send(
        &daemon,
        daemon
            .client()
            .post(format!("{url}/v1/torrents"))
            .header("content-type", content_type)
            .body(body),
    );
    assert_eq!(status, 201);
    // Not `wait_ok`: the 1 MiB disk may already be full, and health then
    // (rightly) names `downloads` until space is freed.
    let up = daemon.wait_health("the engine to be up", |_, h| {
        h.workers.get("engine").is_some_and(|w| w.up)
    });
    let engine_pid = Daemon::worker_pid(&up, "engine");

    // The disk fills: the torrent stops with the cause in its error.
    let stopped = wait_for("the torrent to fail on the full disk", || {
        let t = torrent(&daemon, &seed.id);
        let error = t["error"].as_str().unwrap_or_default().to_lowercase();
        (error.contains("space")).then_some(t)
    });
    assert_eq!(stopped["state"], "error", "{stopped:#}");
    // Health names the full disk; the engine did not crash over it.
    let health = daemon.wait_health("health to name the full disk", |code, h| {
        code == 503 && h.degraded == ["downloads"]
    });
    assert_eq!(Daemon::worker_pid(&health, "engine"), engine_pid);

    // Space is freed; resume is the retry, and every byte arrives intact.
    downloads.resize("16m");
    let (status, _, _) = send(
        &daemon,
        daemon
            .client()
            .post(format!("{url}/v1/torrents/{}/action", seed.id))
            .json(&json!({"action": "resume"})),
    );
    assert_eq!(status, 204);
    wait_for("the download to finish after resume", || {
        let t = torrent(&daemon, &seed.id);
        (t["progress"].as_f64() == Some(1.0) && t["error"].is_null()).then_some(t)
    });
    for (path, bytes) in &seed.files {
        let got = std::fs::read(daemon.data.0.join("downloads/big").join(path)).unwrap();
        assert!(got == *bytes, "{path} differs from the seed");
    }
    daemon.wait_ok();
    drop(daemon);
    drop(downloads);
}

#[test]
#[allow(clippy::too_many_lines, reason = "one scenario, step by step")]
fn a_full_state_disk_refuses_writes_with_507_and_acknowledges_only_what_it_stored() {
    if !can_mount() {
        return;
    }
    // The API's SQLite lives in state/api; a few MiB leave room for the
    // schema.
    let (daemon, state) = Daemon::start_prepared(&bin_dir(), &test_config(""), |data| {
        Tmpfs::mount(&data.join("state/api"), "4m").expect("mount")
    });
    daemon.wait_ok();
    let url = daemon.url().unwrap();
    let client = daemon.client();

    // One torrent with labels before the disk fills.
    let (status, created, _) = send(
        &daemon,
        client
            .post(format!("{url}/v1/torrents"))
            .json(&json!({"magnet": magnet(0), "tags": ["before"], "paused": true})),
    );
    assert_eq!(status, 201);
    let first = created["id"].as_str().unwrap().to_owned();

    fill(&state.0.join("filler"));

    // Keep writing while the disk is full, one kind of write at a time,
    // until the store refuses it. A write may still fit for a while (SQLite
    // reuses WAL space), so the rule checked is: every answer is an
    // acknowledgement or a 507 problem; acknowledged writes are kept,
    // refused ones leave nothing.
    let mut acked_keys = Vec::new();
    let mut acked_adds = Vec::new();
    let mut refused_adds = Vec::new();
    let mut refusals = 0;
    let mut last_tags = json!(["before"]);
    let started = Instant::now();
    for what in ["key", "add", "patch"] {
        let mut refused = false;
        for n in 0..3_000_u32 {
            let request = match what {
                "key" => client
                    .post(format!("{url}/v1/keys"))
                    .json(&json!({"name": format!("k{n}"), "scope": "read"})),
                "add" => client.post(format!("{url}/v1/torrents")).json(
                    &json!({"magnet": magnet(n + 10), "tags": big_tags(n + 10), "paused": true}),
                ),
                _ => client
                    .patch(format!("{url}/v1/torrents/{first}"))
                    .json(&json!({"tags": big_tags(100_000 + n)})),
            };
            let (status, body, content_type) = send(&daemon, request);
            match (status, what) {
                (201, "key") => acked_keys.push(body["id"].as_str().unwrap().to_owned()),
                (201, "add") => acked_adds.push((body["id"].as_str().unwrap().to_owned(), n + 10)),
                (200 | 204, "patch") => last_tags = json!(big_tags(100_000 + n)),
                (507, _) => {
                    assert_eq!(content_type, "application/problem+json");
                    assert!(
                        body["detail"].as_str().unwrap().contains("full"),
                        "{body:#}"
                    );
                    refusals += 1;
                    if what == "add" {
                        refused_adds.push(format!("{:040x}", 0xd15c_0000_u64 + u64::from(n + 10)));
                    }
                    refused = true;
                    break;
                }
                (other, _) => panic!("{what} {n}: unexpected {other}: {body:#}"),
            }
        }
        assert!(
            refused,
            "the full disk never refused a {what} ({:?})",
            started.elapsed()
        );
    }
    assert!(refusals > 0, "the full disk never refused a write");
    assert!(!refused_adds.is_empty(), "no add was refused");
    let (_, listed, _) = send(&daemon, client.get(format!("{url}/v1/torrents?limit=500")));
    let listed: Vec<String> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .collect();
    for id in &refused_adds {
        assert!(!listed.contains(id), "refused add {id} is listed");
    }
    assert_eq!(torrent(&daemon, &first)["tags"], last_tags);

    // Health names the API while its store cannot write.
    wait_for("health to degrade", || {
        let (code, health) = daemon.health_full()?;
        (code == 503 && health.degraded.contains(&"api".to_owned())).then_some(Value::Null)
    });

    // Space comes back: writes are accepted again, health recovers, and
    // everything acknowledged is there after a restart.
    std::fs::remove_file(state.0.join("filler")).unwrap();
    let (status, created, _) = send(
        &daemon,
        client
            .post(format!("{url}/v1/torrents"))
            .json(&json!({"magnet": magnet(2), "tags": ["after"], "paused": true})),
    );
    assert_eq!(status, 201);
    let after = created["id"].as_str().unwrap().to_owned();
    daemon.wait_ok();
    let mut daemon = daemon;
    let stopped = daemon.signal_and_wait(nix::sys::signal::Signal::SIGTERM);
    assert!(stopped.success());
    daemon.restart_stopped(&bin_dir());
    daemon.wait_ok();
    let url = daemon.url().unwrap();
    let (_, keys, _) = send(&daemon, daemon.client().get(format!("{url}/v1/keys")));
    let known: Vec<&str> = keys
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["id"].as_str().unwrap())
        .collect();
    for id in &acked_keys {
        assert!(known.contains(&id.as_str()), "acknowledged key {id} lost");
    }
    assert_eq!(torrent(&daemon, &first)["tags"], last_tags);
    for (id, n) in &acked_adds {
        assert_eq!(torrent(&daemon, id)["tags"], json!(big_tags(*n)), "{id}");
    }
    let (_, listed, _) = send(
        &daemon,
        daemon.client().get(format!("{url}/v1/torrents?limit=500")),
    );
    for id in &refused_adds {
        let present = listed["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["id"] == id.as_str());
        assert!(!present, "refused add {id} came back after the restart");
    }
    assert_eq!(torrent(&daemon, &after)["tags"], json!(["after"]));
    drop(daemon);
    drop(state);
}
