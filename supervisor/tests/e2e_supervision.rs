//! End-to-end: the real `revaerd` with the real worker binaries. Health is
//! ok with three sandboxed workers; killing any worker degrades health and
//! the supervisor brings it back; SIGTERM stops everything with exit 0 and
//! no process left behind; a crash-looping worker backs off; a bad config
//! edit degrades health until fixed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::{Duration, Instant};

use common::{Daemon, POLL, TempDir, bin_dir, kill9, process_exists, test_config, wait_gone};
use nix::sys::signal::Signal;
use revaer_api_models::HealthStatus;

#[test]
fn healthy_daemon_reports_three_sandboxed_workers() {
    let daemon = Daemon::start();
    let health = daemon.wait_ok();
    assert!(health.degraded.is_empty());
    let mut pids = Vec::new();
    for name in ["api", "engine", "fsops"] {
        let w = &health.workers[name];
        assert!(w.up, "{name} not up: {w:?}");
        assert_eq!(w.restarts, 0);
        let pid = w.pid.unwrap();
        assert!(process_exists(pid));
        pids.push(pid);
        let sandbox = w.sandbox.as_ref().unwrap();
        assert!(sandbox.no_new_privs, "{name}");
        assert!(sandbox.seccomp, "{name}");
        assert!(
            sandbox.capabilities.is_empty(),
            "{name} kept {:?}",
            sandbox.capabilities
        );
        assert_eq!(sandbox.umask, "0077", "{name}");
        assert!(!sandbox.core_dumps);
        assert_ne!(sandbox.landlock_status, "not_enforced", "{name}");
        assert_eq!(w.config_revision, Some(health.config.revision));
    }
    pids.sort_unstable();
    pids.dedup();
    assert_eq!(pids.len(), 3, "workers must be distinct processes");
    let fsops_denied = &health.workers["fsops"]
        .sandbox
        .as_ref()
        .unwrap()
        .seccomp_denied;
    assert!(
        fsops_denied.iter().any(|s| s.contains("AF_INET")),
        "{fsops_denied:?}"
    );
    assert!(!health.build.version.is_empty());
    assert!(!health.build.revision.is_empty());

    // Liveness needs no key and always answers while the API is up.
    let url = daemon.url().unwrap();
    let live = daemon.client().get(format!("{url}/health")).send().unwrap();
    assert_eq!(live.status().as_u16(), 200);
    // Unknown routes answer Problem+JSON, never a bare error.
    let missing = daemon
        .client()
        .get(format!("{url}/nope"))
        .bearer_auth(daemon.admin_key())
        .send()
        .unwrap();
    assert_eq!(missing.status().as_u16(), 404);
    assert_eq!(
        missing.headers()["content-type"],
        "application/problem+json"
    );
    let problem: revaer_api_models::Problem = missing.json().unwrap();
    assert_eq!(problem.status, 404);
    let wrong_method = daemon
        .client()
        .delete(format!("{url}/health"))
        .send()
        .unwrap();
    assert_eq!(wrong_method.status().as_u16(), 405);
    assert_eq!(
        wrong_method.headers()["content-type"],
        "application/problem+json"
    );
}

/// Kills `worker` with SIGKILL and checks degraded → restarted → ok.
fn kill_and_recover(worker: &str) {
    let daemon = Daemon::start();
    let before = daemon.wait_ok();
    let old_pid = Daemon::worker_pid(&before, worker);
    kill9(old_pid);

    // The API may notice the closed data channel a moment before the
    // supervisor's exit notice lands; wait for the notice.
    let degraded = daemon.wait_health("degraded naming the worker, with its exit", |code, h| {
        code == 503
            && h.degraded.iter().any(|d| d == worker)
            && h.workers[worker]
                .last_exit
                .as_ref()
                .is_some_and(|e| e.pid == old_pid)
    });
    assert_eq!(degraded.status, HealthStatus::Degraded);
    let w = &degraded.workers[worker];
    assert!(!w.up);
    let exit = w.last_exit.as_ref().unwrap();
    assert_eq!(exit.pid, old_pid);
    assert_eq!(exit.signal, Some(9), "{exit:?}");
    assert!(exit.reason.contains("SIGKILL"), "{exit:?}");

    let after = daemon.wait_ok();
    let w = &after.workers[worker];
    assert_eq!(w.restarts, 1);
    let new_pid = w.pid.unwrap();
    assert_ne!(new_pid, old_pid);
    assert!(w.sandbox.as_ref().unwrap().seccomp);
    // The killed process was reaped, not left as a zombie.
    wait_gone(old_pid);
    // The other workers were untouched.
    for other in ["api", "engine", "fsops"]
        .into_iter()
        .filter(|o| *o != worker)
    {
        assert_eq!(
            after.workers[other].pid, before.workers[other].pid,
            "{other}"
        );
        assert_eq!(after.workers[other].restarts, 0, "{other}");
    }
}

#[test]
fn killed_engine_degrades_health_then_recovers() {
    kill_and_recover("engine");
}

#[test]
fn killed_fsops_degrades_health_then_recovers() {
    kill_and_recover("fsops");
}

#[test]
fn killed_api_is_restarted_and_answers_again() {
    let daemon = Daemon::start();
    let before = daemon.wait_ok();
    let old_pid = Daemon::worker_pid(&before, "api");
    kill9(old_pid);
    wait_gone(old_pid);
    let after = daemon.wait_health("api restarted", |code, h| {
        code == 200 && h.workers["api"].restarts == 1
    });
    let api = &after.workers["api"];
    assert_ne!(api.pid, Some(old_pid));
    assert_eq!(api.last_exit.as_ref().unwrap().signal, Some(9));
    let url = daemon.url().unwrap();
    let live = daemon.client().get(format!("{url}/health")).send().unwrap();
    assert_eq!(live.status().as_u16(), 200);
}

#[test]
fn sigterm_stops_everything_with_exit_zero_and_no_leftovers() {
    let mut daemon = Daemon::start();
    let health = daemon.wait_ok();
    let pids: Vec<u32> = ["api", "engine", "fsops"]
        .iter()
        .map(|w| Daemon::worker_pid(&health, w))
        .collect();
    let status = daemon.signal_and_wait(Signal::SIGTERM);
    assert_eq!(status.code(), Some(0), "{status:?}");
    // Workers are reaped by revaerd before it exits: none is left running,
    // orphaned or as a zombie.
    for pid in pids {
        assert!(!process_exists(pid), "worker {pid} outlived the supervisor");
    }
    assert!(!daemon.data.0.join("run/engine.sock").exists());
}

#[test]
fn workers_die_with_a_killed_supervisor() {
    let mut daemon = Daemon::start();
    let health = daemon.wait_ok();
    let pids: Vec<u32> = ["api", "engine", "fsops"]
        .iter()
        .map(|w| Daemon::worker_pid(&health, w))
        .collect();
    daemon.child.kill().unwrap();
    daemon.child.wait().unwrap();
    for pid in pids {
        // PR_SET_PDEATHSIG kills them; PID 1 here does not reap orphans, so
        // a dead worker may linger as a zombie: check it is not running.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let state = stat
                .rsplit(')')
                .next()
                .unwrap_or("")
                .split_whitespace()
                .next();
            if stat.is_empty() || state == Some("Z") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "worker {pid} survived its supervisor: {stat}"
            );
            std::thread::sleep(POLL);
        }
    }
}

#[test]
fn crash_looping_worker_backs_off_with_capped_delays() {
    // A bin dir holding a copy of revaerd, the real API and engine, and an
    // FsOps that exits at once.
    let bins = TempDir::new("bins");
    std::fs::copy(bin_dir().join("revaerd"), bins.0.join("revaerd")).unwrap();
    for name in ["revaer-api", "revaer-engine"] {
        std::os::unix::fs::symlink(bin_dir().join(name), bins.0.join(name)).unwrap();
    }
    let fsops = bins.0.join("revaer-fsops");
    std::fs::write(&fsops, "#!/bin/sh\nexit 3\n").unwrap();
    std::fs::set_permissions(&fsops, std::fs::Permissions::from_mode(0o755)).unwrap();

    let config = format!(
        "[api]\nlisten = \"127.0.0.1:0\"\n{}[supervisor]\nrestart_backoff_initial_ms = 40\nrestart_backoff_max_ms = 400\n",
        common::LOOPBACK_ENGINE
    );
    let daemon = Daemon::start_with(&bins.0, &config);

    // Record the delay chosen after each restart.
    let mut delays: std::collections::BTreeMap<u32, u64> = std::collections::BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while delays.keys().next_back().copied().unwrap_or(0) < 8 {
        assert!(
            Instant::now() < deadline,
            "too few restarts seen: {delays:?}"
        );
        if let Some((code, h)) = daemon.health_full() {
            assert_eq!(code, 503, "a crash-looping fsops must keep health degraded");
            let f = &h.workers["fsops"];
            if let Some(exit) = &f.last_exit {
                assert_eq!(exit.code, Some(3));
                if let Some(delay) = exit.restart_delay_ms {
                    delays.insert(f.restarts, delay);
                }
            }
            assert!(h.degraded.contains(&"fsops".to_owned()));
        }
        std::thread::sleep(POLL);
    }
    // Jitter shortens by at most 20 %: 40 → [32, 40], ... capped at [320, 400].
    for (&restart, &delay) in &delays {
        assert!(
            delay <= 400,
            "restart {restart}: delay {delay} above the cap"
        );
        let expected = (40_u64 << (restart - 1).min(10)).min(400);
        assert!(
            delay * 10 >= expected * 8 && delay <= expected,
            "restart {restart}: delay {delay}, expected within 80..100 % of {expected}; all: {delays:?}"
        );
    }
    assert!(
        delays.values().any(|&d| d >= 320),
        "delays never grew to the cap: {delays:?}"
    );
    // The supervisor itself stayed up throughout.
    let pid = daemon.child.id();
    assert!(process_exists(pid));
}

#[test]
fn invalid_config_edit_degrades_until_fixed_and_fix_reaches_workers() {
    let daemon = Daemon::start();
    let before = daemon.wait_ok();
    let config_path = daemon.data.0.join("revaer.toml");

    std::fs::write(&config_path, test_config("bogus_key = 1\n")).unwrap();
    let bad = daemon.wait_health("config error", |code, h| {
        code == 503 && h.degraded == vec!["config".to_owned()]
    });
    let error = bad.config.error.clone().unwrap();
    assert!(error.contains("bogus_key"), "{error}");
    assert_eq!(bad.config.revision, before.config.revision);
    assert!(bad.config.failures >= 1);

    // A valid change: new revision, pushed to and acknowledged by every worker.
    std::fs::write(
        &config_path,
        test_config("restart_backoff_reset_after_ms = 1234\n"),
    )
    .unwrap();
    let fixed = daemon.wait_health("config fixed and applied", |code, h| {
        code == 200
            && h.config.revision == before.config.revision + 1
            && h.workers
                .values()
                .all(|w| w.config_revision == Some(h.config.revision))
    });
    assert_eq!(fixed.config.error, None);
    assert!(fixed.config.watch_latency_ms.is_some());

    // Both transitions and the new revision are on the durable event log.
    let events = common::follow_events(
        &daemon.url().unwrap(),
        &daemon.admin_key(),
        "?last_event_id=0&kind=health_changed,config_applied",
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let (mut degraded_config, mut recovered, mut applied) = (false, false, false);
    while !(degraded_config && recovered && applied) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let Ok(m) = events.recv_timeout(left) else {
            panic!(
                "missing events: degraded={degraded_config} recovered={recovered} applied={applied}"
            );
        };
        let event = &m.data["event"];
        match m.event.as_str() {
            "health_changed" if event["degraded"] == serde_json::json!(["config"]) => {
                degraded_config = true;
            }
            "health_changed" if degraded_config && event["status"] == "ok" => recovered = true,
            "config_applied" => {
                assert_eq!(event["revision"], fixed.config.revision);
                applied = true;
            }
            _ => {}
        }
    }
}

/// A `revaer.toml` refused at start stops `revaerd` with `EX_CONFIG` (78)
/// and the reason before any worker starts; it never runs on defaults.
#[test]
fn invalid_config_at_start_exits_78_before_any_worker_starts() {
    let data = TempDir::new("badstart");
    std::fs::write(
        data.0.join("revaer.toml"),
        test_config("").replace("listen = \"127.0.0.1:0\"", "listen = \"not-an-address\""),
    )
    .unwrap();
    let out = std::process::Command::new(bin_dir().join("revaerd"))
        .arg("--data-dir")
        .arg(&data.0)
        .env("RUST_LOG", "info")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "stderr: {stderr}");
    assert!(
        stderr.contains("api.listen"),
        "the reason names the key: {stderr}"
    );
    assert!(
        !stderr.contains("worker spawned"),
        "no worker may start: {stderr}"
    );
    assert!(!data.0.join("run/api.url").exists());
    assert!(!data.0.join("bootstrap-admin.key").exists());
    // The operator's file is left exactly as it was.
    assert!(
        std::fs::read_to_string(data.0.join("revaer.toml"))
            .unwrap()
            .contains("not-an-address")
    );
}

#[test]
fn workers_switch_to_the_configured_identity_when_started_as_root() {
    if !nix::unistd::geteuid().is_root() {
        // Without root there is no identity to switch from; the sandbox
        // crate's own tests cover the unprivileged path.
        eprintln!("not root: identity switch does not apply");
        return;
    }
    let daemon = Daemon::start_with(
        &bin_dir(),
        &test_config("[sandbox]\nworker_uid = 65534\nworker_gid = 65534\n"),
    );
    let health = daemon.wait_ok();
    for name in ["api", "engine", "fsops"] {
        let sandbox = health.workers[name].sandbox.as_ref().unwrap();
        assert_eq!((sandbox.uid, sandbox.gid), (65534, 65534), "{name}");
        assert!(sandbox.capabilities.is_empty(), "{name}");
        let status = std::fs::read_to_string(format!(
            "/proc/{}/status",
            health.workers[name].pid.unwrap()
        ))
        .unwrap();
        let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
        assert!(
            uid_line.split_whitespace().skip(1).all(|u| u == "65534"),
            "{name}: {uid_line}"
        );
    }
    // The engine, running as 65534, owns the socket it created.
    let meta = std::fs::metadata(daemon.data.0.join("run/engine.sock")).unwrap();
    assert_eq!(meta.uid(), 65534);
}

#[test]
fn cli_health_reports_the_daemon_and_exit_codes_follow_the_outcome() {
    let daemon = Daemon::start();
    daemon.wait_ok();
    let url = daemon.url().unwrap();
    let ok = std::process::Command::new(bin_dir().join("revaer"))
        .args(["--api-url", &url, "health"])
        .output()
        .unwrap();
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let body: revaer_api_models::HealthFull = serde_json::from_slice(&ok.stdout).unwrap();
    assert_eq!(body.status, HealthStatus::Ok);

    // Degraded → exit 5, with the document still printed.
    std::fs::write(daemon.data.0.join("revaer.toml"), "[api]\nlisten = 7\n").unwrap();
    daemon.wait_health("config degraded", |code, _| code == 503);
    let degraded = std::process::Command::new(bin_dir().join("revaer"))
        .args(["--api-url", &url, "health"])
        .output()
        .unwrap();
    assert_eq!(degraded.status.code(), Some(5));
    let body: revaer_api_models::HealthFull = serde_json::from_slice(&degraded.stdout).unwrap();
    assert_eq!(body.degraded, vec!["config".to_owned()]);

    // Nothing listening → exit 6 (transport).
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let unreachable = std::process::Command::new(bin_dir().join("revaer"))
        .args(["--api-url", &dead_url, "--timeout", "2", "health"])
        .output()
        .unwrap();
    assert_eq!(unreachable.status.code(), Some(6));
}

#[test]
fn first_start_writes_a_private_bootstrap_admin_key_once_and_never_logs_it() {
    let data = TempDir::new("bootstrap");
    std::fs::write(data.0.join("revaer.toml"), test_config("")).unwrap();
    let log_path = data.0.join("daemon.log");
    let start = || {
        std::process::Command::new(bin_dir().join("revaerd"))
            .arg("--data-dir")
            .arg(&data.0)
            .env("RUST_LOG", "debug")
            .stdout(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log_path)
                    .unwrap(),
            )
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log_path)
                    .unwrap(),
            )
            .spawn()
            .unwrap()
    };
    let key_file = data.0.join("bootstrap-admin.key");
    let wait_key = || {
        let deadline = Instant::now() + common::DEADLINE;
        loop {
            if let Ok(text) = std::fs::read_to_string(&key_file)
                && !text.is_empty()
            {
                return text.trim().to_owned();
            }
            assert!(Instant::now() < deadline, "no bootstrap key written");
            std::thread::sleep(POLL);
        }
    };
    let stop = |mut child: std::process::Child| {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
        nix::sys::signal::kill(pid, Signal::SIGTERM).unwrap();
        assert_eq!(child.wait().unwrap().code(), Some(0));
    };

    let first = start();
    let key = wait_key();
    assert!(key.starts_with("rvk_") && key.len() == 68, "{key}");
    let mode = std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // The key is registered (the database holds its hash, not the key).
    let db = data.0.join("state/api/revaer.db");
    let deadline = Instant::now() + common::DEADLINE;
    while !std::fs::read(&db).is_ok_and(|b| !b.is_empty()) {
        assert!(Instant::now() < deadline, "no database");
        std::thread::sleep(POLL);
    }
    stop(first);

    // A second start finds the admin key and leaves the file alone.
    let second = start();
    let url_deadline = Instant::now() + common::DEADLINE;
    while !data.0.join("run/api.url").exists() {
        assert!(Instant::now() < url_deadline, "second start never served");
        std::thread::sleep(POLL);
    }
    stop(second);
    assert_eq!(std::fs::read_to_string(&key_file).unwrap().trim(), key);

    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(log.contains("bootstrap-admin.key"), "the path is reported");
    assert!(
        !log.contains(&key[4..]),
        "the key itself leaked into the logs"
    );
    let database = std::fs::read(&db).unwrap();
    assert!(
        !database.windows(64).any(|w| w == &key.as_bytes()[4..]),
        "plain key in the database"
    );
}

/// The bootstrap key file appears only once the key works, and health is
/// never ok before that: a script that reads the file the moment it exists
/// (woken by inotify, microseconds after the rename), or as soon as
/// `/health/full` is ok, always gets in. Three first starts; the
/// key's registration is slowed down by a test probe, as a slow state disk
/// would, so the old order (file first, registration later) fails every time.
#[test]
fn bootstrap_key_file_appears_only_once_the_key_works() {
    use notify::Watcher as _;
    for round in 0..3 {
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            probe.local_addr().unwrap().port()
        };
        let config = test_config("").replacen(
            "listen = \"127.0.0.1:0\"",
            &format!("listen = \"127.0.0.1:{port}\""),
            1,
        );
        let data = TempDir::new("bootkey");
        std::fs::write(data.0.join("revaer.toml"), &config).unwrap();
        let (events_tx, events_rx) = std::sync::mpsc::channel();
        let mut watcher = notify::recommended_watcher(move |event| {
            let _ = events_tx.send(event);
        })
        .unwrap();
        watcher
            .watch(&data.0, notify::RecursiveMode::NonRecursive)
            .unwrap();
        // Registering the key takes 300 ms, as on a slow state disk: with
        // the file written first, the check below sees an unknown key.
        let mut daemon = Daemon::start_in(
            &bin_dir(),
            data,
            &[("REVAER_TEST_SLOW_KEY_REGISTER_MS", "300")],
        );
        let key_file = daemon.data.0.join("bootstrap-admin.key");
        let url = format!("http://127.0.0.1:{port}");
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(5))
            .no_proxy()
            .build()
            .unwrap();

        // Health, polled from the start, must not be ok before the key works.
        let deadline = Instant::now() + common::DEADLINE;
        let key = loop {
            assert!(Instant::now() < deadline, "round {round}: no key file");
            if let Ok(Ok(event)) = events_rx.recv_timeout(Duration::from_millis(5))
                && event.paths.iter().any(|p| p == &key_file)
                && let Ok(text) = std::fs::read_to_string(&key_file)
                && !text.trim().is_empty()
            {
                let key = text.trim().to_owned();
                // Checked within microseconds of the rename: the key must
                // already be registered (its hash in the API's key table).
                assert_eq!(
                    active_keys_with(&daemon.data.0, &key),
                    1,
                    "round {round}: the key file appeared before the key was registered"
                );
                break key;
            }
            if let Ok(resp) = client.get(format!("{url}/health/full")).send()
                && resp.status().as_u16() == 200
            {
                assert!(
                    key_file.exists(),
                    "round {round}: health ok before the key file exists"
                );
            }
        };
        // The first answered request with the key is a success, never a 401.
        let deadline = Instant::now() + common::DEADLINE;
        let status = loop {
            match client
                .get(format!("{url}/v1/keys"))
                .bearer_auth(&key)
                .send()
            {
                Ok(resp) => break resp.status().as_u16(),
                Err(e) if e.is_connect() => {
                    assert!(
                        Instant::now() < deadline,
                        "round {round}: API never listened"
                    );
                    std::thread::yield_now();
                }
                Err(e) => panic!("round {round}: {e}"),
            }
        };
        assert_eq!(
            status, 200,
            "round {round}: the published key did not work yet"
        );
        assert!(
            !daemon.data.0.join("bootstrap-admin.key.pending").exists(),
            "round {round}: the pending file was left behind"
        );
        drop(watcher);
        assert_eq!(daemon.signal_and_wait(Signal::SIGTERM).code(), Some(0));
    }
}

/// How many unrevoked keys in the API's database have `key`'s hash.
fn active_keys_with(data: &std::path::Path, key: &str) -> i64 {
    use sha2::Digest as _;
    let db = rusqlite::Connection::open_with_flags(
        data.join("state/api/revaer.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let hash: [u8; 32] = sha2::Sha256::digest(key.as_bytes()).into();
    db.query_row(
        "SELECT count(*) FROM api_keys WHERE secret_hash = ?1 AND revoked_at IS NULL",
        [&hash[..]],
        |row| row.get(0),
    )
    .unwrap()
}
