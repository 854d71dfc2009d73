//! Security review, end to end: a real `revaerd` at `RUST_LOG=debug` goes
//! through a key's whole life (bootstrap key, issue, use, rate limit,
//! rotate, revoke, unknown and malformed keys, SSE, the CLI) and a private
//! tracker's passkey in a downloaded torrent. Afterwards no secret appears
//! anywhere in what the daemon and its workers printed, and every private
//! file and directory of the data dir has a private mode.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Daemon, POLL, Seed, TempDir, Tracker, bin_dir, test_config};
use serde_json::{Value, json};

const DEADLINE: Duration = Duration::from_secs(60);

fn issue(daemon: &Daemon, admin: &str, body: &Value) -> (String, String) {
    let issued: Value = daemon
        .client()
        .post(format!("{}/v1/keys", daemon.url().unwrap()))
        .bearer_auth(admin)
        .json(body)
        .send()
        .unwrap()
        .json()
        .unwrap();
    (
        issued["key"].as_str().unwrap().to_owned(),
        issued["id"].as_str().unwrap().to_owned(),
    )
}

fn status(daemon: &Daemon, key: &str, path: &str) -> u16 {
    daemon
        .client()
        .get(format!("{}{path}", daemon.url().unwrap()))
        .bearer_auth(key)
        .send()
        .unwrap()
        .status()
        .as_u16()
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// Every file and directory under `dir`, recursively.
fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        out.push(path.clone());
        if entry.file_type().unwrap().is_dir() {
            walk(&path, out);
        }
    }
}

#[test]
#[allow(clippy::too_many_lines, reason = "one scenario, step by step")]
fn no_secret_reaches_the_logs_and_private_files_stay_private() {
    let work = TempDir::new("security");
    let log = work.0.join("revaerd.log");
    let tracker = Tracker::start();
    let passkey = "5e3f0c2a9b7d41e8a6c3f0d2b9e7a1c4";
    let seed = Seed::build(
        "private-show",
        &[("e01.mkv", 200 * 1024)],
        0,
        vec![format!("{}?passkey={passkey}", tracker.announce_url())],
    );
    let daemon = Daemon::start_logged(&bin_dir(), &test_config(""), &[("RUST_LOG", "debug")], &log);
    daemon.wait_ok();
    let url = daemon.url().unwrap();
    let admin = daemon.admin_key();
    let mut secrets = vec![admin.clone(), passkey.to_owned()];

    // Issue, use, throttle, rotate and revoke keys.
    let (read_key, read_id) = issue(
        &daemon,
        &admin,
        &json!({"name": "reader", "scope": "read", "rate_per_minute": 2}),
    );
    secrets.push(read_key.clone());
    let mut throttled = false;
    for _ in 0..10 {
        match status(&daemon, &read_key, "/v1/torrents") {
            200 => {}
            429 => {
                throttled = true;
                break;
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert!(throttled, "a 2/min key was never throttled");
    let (admin_key, admin_id) = issue(&daemon, &admin, &json!({"name": "ops", "scope": "admin"}));
    secrets.push(admin_key.clone());
    let rotated: Value = daemon
        .client()
        .post(format!("{url}/v1/keys/{admin_id}/rotate"))
        .bearer_auth(&admin)
        .json(&json!({"grace_seconds": 0}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let rotated_key = rotated["key"].as_str().unwrap().to_owned();
    secrets.push(rotated_key.clone());
    assert_eq!(status(&daemon, &rotated_key, "/health/full"), 200);
    for id in [&read_id, &admin_id] {
        let revoked = daemon
            .client()
            .delete(format!("{url}/v1/keys/{id}"))
            .bearer_auth(&admin)
            .send()
            .unwrap();
        assert_eq!(revoked.status().as_u16(), 204);
    }
    assert_eq!(status(&daemon, &rotated_key, "/v1/torrents"), 401);
    assert_eq!(status(&daemon, &read_key, "/v1/torrents"), 401);
    // A well-formed key nobody issued, and garbage.
    let unknown = format!("rvk_{}", "ab".repeat(32));
    secrets.push(unknown.clone());
    assert_eq!(status(&daemon, &unknown, "/v1/torrents"), 401);
    let garbage = "rvk_not-a-key-but-still-a-secret-9f8e7d6c";
    secrets.push(garbage.to_owned());
    assert_eq!(status(&daemon, garbage, "/v1/torrents"), 401);

    // SSE with a live key; the CLI with a good and a revoked key.
    let sse = daemon
        .client()
        .get(format!("{url}/v1/events?last_event_id=0"))
        .bearer_auth(&admin)
        .header("accept", "text/event-stream")
        .timeout(Duration::from_secs(1))
        .send()
        .unwrap();
    assert_eq!(sse.status().as_u16(), 200);
    drop(sse);
    for (key, ok) in [(&admin, true), (&rotated_key, false)] {
        let out = Command::new(bin_dir().join("revaer"))
            .args([
                "--api-url",
                &url,
                "--api-key",
                key,
                "--output",
                "json",
                "ls",
            ])
            .env_remove("REVAER_API_KEY")
            .env_remove("REVAER_TELEMETRY_ENDPOINT")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.success(), ok, "{out:?}");
        let printed = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !printed.contains(key.as_str()),
            "the CLI printed its key: {printed}"
        );
    }

    // A private torrent downloads; its .torrent (with the passkey) is kept
    // in the engine's state.
    let (content_type, body) = common::torrent_form(&seed.torrent, None);
    let added = daemon
        .client()
        .post(format!("{url}/v1/torrents"))
        .bearer_auth(&admin)
        .header("content-type", content_type)
        .body(body)
        .send()
        .unwrap();
    assert_eq!(added.status().as_u16(), 201);
    let deadline = Instant::now() + DEADLINE;
    loop {
        let detail: Value = daemon
            .client()
            .get(format!("{url}/v1/torrents/{}", seed.id))
            .bearer_auth(&admin)
            .send()
            .unwrap()
            .json()
            .unwrap_or_default();
        if detail["fsops_job"]["state"] == "completed" {
            break;
        }
        assert!(Instant::now() < deadline, "never completed: {detail:#}");
        std::thread::sleep(POLL);
    }
    assert!(
        !tracker.announces(&seed.id).is_empty(),
        "the private tracker was never announced to"
    );

    // Modes, while everything runs: private directories 0700, every file
    // under state/ and run/ readable by its owner only.
    let data = daemon.data.0.clone();
    for dir in ["", "run", "state", "state/api", "state/engine"] {
        let path = data.join(dir);
        assert_eq!(mode(&path), 0o700, "{} is not private", path.display());
    }
    assert_eq!(mode(&data.join("bootstrap-admin.key")), 0o600);
    let mut private = Vec::new();
    walk(&data.join("state"), &mut private);
    walk(&data.join("run"), &mut private);
    let mut files = 0;
    for path in &private {
        let meta = std::fs::symlink_metadata(path).unwrap();
        let m = mode(path);
        if meta.is_dir() {
            assert_eq!(m & 0o077, 0, "{} is {m:o}", path.display());
        } else if meta.file_type().is_socket() || meta.is_file() {
            // run/api.url is the one public file: it holds only the URL.
            if path.ends_with("run/api.url") {
                continue;
            }
            files += 1;
            assert_eq!(m & 0o077, 0, "{} is {m:o}", path.display());
        }
    }
    assert!(files >= 5, "too few private files checked: {private:?}");

    // Stop, then search everything every process printed.
    let mut daemon = daemon;
    let stopped = daemon.signal_and_wait(nix::sys::signal::Signal::SIGTERM);
    assert!(stopped.success(), "{stopped:?}");
    let text = std::fs::read_to_string(&log).unwrap();
    // The capture really holds the workers' debug logs and the auth
    // failures, so a leak there would be seen.
    for expected in ["revaer_api", "revaer_engine", "revaer_fsops", "DEBUG"] {
        assert!(text.contains(expected), "no {expected} in the log");
    }
    for secret in &secrets {
        assert!(
            !text.contains(secret.as_str()),
            "a secret ({}…) is in the log",
            &secret[..6]
        );
        // The key's random part alone must not appear either.
        if let Some(random) = secret.strip_prefix("rvk_") {
            assert!(!text.contains(random), "a key's secret part is in the log");
        }
    }
}
