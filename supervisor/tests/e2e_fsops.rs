//! FsOps end to end: a real `revaerd` downloads from a real seed on
//! 127.0.0.1 (found through an in-test tracker) and its FsOps worker puts
//! the result in the library — hardlinked, with the configured modes, fluff
//! dropped — survives a `kill -9` mid-copy, and refuses a hostile archive.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{Daemon, Seed, Tracker, bin_dir, kill9, test_config};
use serde_json::Value;

const DEADLINE: Duration = Duration::from_secs(120);

fn get(daemon: &Daemon, key: &str, path: &str) -> (u16, Value) {
    let response = daemon
        .client()
        .get(format!("{}{path}", daemon.url().unwrap()))
        .bearer_auth(key)
        .send()
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().unwrap_or(Value::Null))
}

fn post(daemon: &Daemon, key: &str, path: &str, body: &Value) -> u16 {
    daemon
        .client()
        .post(format!("{}{path}", daemon.url().unwrap()))
        .bearer_auth(key)
        .json(body)
        .send()
        .unwrap()
        .status()
        .as_u16()
}

/// Adds `seed`'s torrent through the API; returns its id.
fn add(daemon: &Daemon, key: &str, seed: &Seed) -> String {
    let (content_type, body) = common::torrent_form(&seed.torrent, None);
    let response = daemon
        .client()
        .post(format!("{}/v1/torrents", daemon.url().unwrap()))
        .bearer_auth(key)
        .header("content-type", content_type)
        .body(body)
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 201);
    let created: Value = response.json().unwrap();
    created["id"].as_str().unwrap().to_owned()
}

/// Polls the torrent until `pred` holds on its detail.
fn wait(daemon: &Daemon, key: &str, id: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let (status, detail) = get(daemon, key, &format!("/v1/torrents/{id}"));
        if status == 200 && pred(&detail) {
            return detail;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {detail:#}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn library_dir(daemon: &Daemon, detail: &Value) -> PathBuf {
    daemon
        .data
        .0
        .join("library")
        .join(detail["fsops_job"]["library_path"].as_str().unwrap())
}

#[test]
fn a_download_lands_in_the_library_as_hardlinks_with_modes_and_without_fluff() {
    let tracker = Tracker::start();
    let seed = Seed::build(
        "show",
        &[
            ("e01.mkv", 300 * 1024),
            ("e02.mkv", 200 * 1024),
            ("info.nfo", 1024),
        ],
        0,
        vec![tracker.announce_url()],
    );
    let daemon = Daemon::start_with(
        &bin_dir(),
        &test_config("\n[fsops]\nchmod_file = \"0640\"\nchmod_dir = \"0750\"\n"),
    );
    daemon.wait_ok();
    let key = daemon.admin_key();
    let id = add(&daemon, &key, &seed);
    let detail = wait(&daemon, &key, &id, "the FsOps job", |d| {
        d["fsops_job"]["state"] == "completed"
    });
    let library = library_dir(&daemon, &detail);
    let downloads = daemon.data.0.join("downloads/show");
    for (name, bytes) in [("e01.mkv", &seed.files[0].1), ("e02.mkv", &seed.files[1].1)] {
        let linked = std::fs::metadata(library.join(name)).unwrap();
        let original = std::fs::metadata(downloads.join(name)).unwrap();
        assert_eq!(linked.ino(), original.ino(), "{name} is not a hardlink");
        assert_eq!(linked.permissions().mode() & 0o777, 0o640, "{name} mode");
        assert_eq!(&std::fs::read(library.join(name)).unwrap(), bytes);
    }
    let dir_mode = std::fs::metadata(&library).unwrap().permissions().mode() & 0o777;
    assert_eq!(dir_mode, 0o750);
    assert!(
        !library.join("info.nfo").exists(),
        "@skip_fluff kept the .nfo"
    );
    assert!(
        downloads.join("info.nfo").exists(),
        "cleanup touched the download"
    );
    // The torrent keeps seeding from the same inodes.
    let state = detail["state"].as_str().unwrap();
    assert!(matches!(state, "seeding" | "finished"), "{state}");
    let record = daemon
        .data
        .0
        .join("library/.revaer")
        .join(format!("{id}.json"));
    assert!(record.exists(), "no job record at {}", record.display());
    let metrics = daemon
        .client()
        .get(format!("{}/metrics", daemon.url().unwrap()))
        .bearer_auth(&key)
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        metrics.contains("revaer_fsops_steps_total{outcome=\"done\",step=\"transfer\"} 1"),
        "{metrics}"
    );
}

#[test]
fn fsops_killed_mid_copy_resumes_and_the_job_completes_once() {
    const SIZE: usize = 384 * 1024 * 1024;
    let tracker = Tracker::start();
    let seed = Seed::build(
        "big",
        &[("movie.mkv", SIZE)],
        0,
        vec![tracker.announce_url()],
    );
    let daemon = Daemon::start_with(
        &bin_dir(),
        &test_config("\n[fsops]\nmove_mode = \"copy\"\n"),
    );
    daemon.wait_ok();
    let key = daemon.admin_key();
    let id = add(&daemon, &key, &seed);
    wait(&daemon, &key, &id, "the copy to start", |d| {
        d["fsops_job"]["state"] == "running" && d["fsops_job"]["step"] == "transfer"
    });
    let (_, health) = get(&daemon, &key, "/health/full");
    let pid = u32::try_from(health["workers"]["fsops"]["pid"].as_u64().unwrap()).unwrap();
    kill9(pid);
    let detail = wait(&daemon, &key, &id, "the resumed job", |d| {
        d["fsops_job"]["state"] == "completed"
    });
    assert_eq!(detail["fsops_job"]["attempts"], 2, "{detail:#}");
    let steps: Vec<&str> = detail["fsops_job"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert_eq!(steps.len(), 9, "each step journaled once: {steps:?}");
    let copy = library_dir(&daemon, &detail).join("movie.mkv");
    let original = daemon.data.0.join("downloads/big/movie.mkv");
    assert_ne!(
        std::fs::metadata(&copy).unwrap().ino(),
        std::fs::metadata(&original).unwrap().ino(),
        "copy mode made a link"
    );
    assert!(
        std::fs::read(&copy).unwrap() == seed.files[0].1,
        "library copy differs"
    );
    // Nothing half-written is left beside it.
    let leftovers: Vec<_> = std::fs::read_dir(copy.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n != "movie.mkv")
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// A plain tar holding one entry named `name` with `content`.
fn tar_with(name: &str, content: &[u8]) -> Vec<u8> {
    let mut header = [0_u8; 512];
    header[..name.len()].copy_from_slice(name.as_bytes());
    header[100..107].copy_from_slice(b"0000644");
    header[108..115].copy_from_slice(b"0000000");
    header[116..123].copy_from_slice(b"0000000");
    header[124..135].copy_from_slice(format!("{:011o}", content.len()).as_bytes());
    header[136..147].copy_from_slice(b"00000000000");
    header[156] = b'0';
    header[257..263].copy_from_slice(b"ustar\0");
    header[263..265].copy_from_slice(b"00");
    header[148..156].copy_from_slice(b"        ");
    let sum: u32 = header.iter().map(|&b| u32::from(b)).sum();
    header[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
    let mut out = header.to_vec();
    out.extend_from_slice(content);
    out.resize(out.len().div_ceil(512) * 512 + 1024, 0);
    out
}

#[test]
fn a_hostile_archive_is_refused_and_nothing_escapes() {
    let tracker = Tracker::start();
    let archive = tar_with("../../../../escaped.txt", b"pwned");
    let seed = Seed::with_contents(
        "evil",
        vec![
            ("evil.tar".to_owned(), archive),
            ("readme.mkv".to_owned(), vec![7_u8; 4096]),
        ],
        0,
        vec![tracker.announce_url()],
    );
    let daemon = Daemon::start();
    daemon.wait_ok();
    let key = daemon.admin_key();
    let events = common::follow_events(
        &daemon.url().unwrap(),
        &key,
        "?kind=fsops_failed,health_changed",
    );
    let id = add(&daemon, &key, &seed);
    let detail = wait(&daemon, &key, &id, "the job to fail", |d| {
        d["fsops_job"]["state"] == "failed"
    });
    assert_eq!(detail["fsops_job"]["step"], "extract", "{detail:#}");
    let data = &daemon.data.0;
    for escaped in [
        data.join("escaped.txt"),
        data.join("library/escaped.txt"),
        data.parent().unwrap().join("escaped.txt"),
    ] {
        assert!(!escaped.exists(), "{} was written", escaped.display());
    }
    // Seen on the event stream, and health names FsOps until it is dealt with.
    let deadline = Instant::now() + DEADLINE;
    let (mut failed, mut degraded) = (false, false);
    while !(failed && degraded) {
        let m = events
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("fsops_failed and health_changed events");
        failed |= m.event == "fsops_failed" && m.data["event"]["torrent"] == id.as_str();
        degraded |= m.event == "health_changed"
            && m.data["event"]["degraded"]
                .as_array()
                .is_some_and(|d| d.iter().any(|x| x == "fsops"));
    }
    // Retrying a deterministic refusal fails again; removing the torrent
    // clears the degradation.
    let path = format!("/v1/torrents/{id}/action");
    assert_eq!(
        post(
            &daemon,
            &key,
            &path,
            &serde_json::json!({"action": "fsops_retry"})
        ),
        204
    );
    wait(&daemon, &key, &id, "the retry to fail", |d| {
        d["fsops_job"]["state"] == "failed" && d["fsops_job"]["attempts"] == 2
    });
    assert_eq!(
        post(
            &daemon,
            &key,
            &path,
            &serde_json::json!({"action": "remove"})
        ),
        204
    );
    daemon.wait_ok();
}
