//! End-to-end: the real engine worker (libtorrent inside its sandbox, under
//! the real supervisor) moving real bytes with a real libtorrent seed on
//! 127.0.0.1. Commands go through the API's test-only engine route, exactly
//! as the v1 API will send them over IPC.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;

use common::{Daemon, Seed, bin_dir, kill9, state};
use serde_json::json;

fn torrent_file(seed: &Seed) -> serde_json::Value {
    json!({ "TorrentFile": seed.torrent })
}

fn assert_files_match(root: &Path, seed: &Seed, skip: &[&str]) {
    for (path, bytes) in &seed.files {
        if skip.contains(&path.as_str()) {
            continue;
        }
        let got = std::fs::read(root.join(&seed.name).join(path)).unwrap();
        assert!(
            got == *bytes,
            "{path}: content differs ({} vs {} bytes)",
            got.len(),
            bytes.len()
        );
    }
}

fn seeding(d: &serde_json::Value) -> bool {
    state(d) == "Seeding"
}

#[test]
fn engine_downloads_a_multi_file_torrent_from_a_seed() {
    let seed = Seed::multi_file(
        "album",
        &[
            ("a.bin", 3 << 20),
            ("sub/b.bin", 5 << 20),
            ("c.txt", 100_000),
        ],
        0,
    );
    let daemon = Daemon::start();
    daemon.wait_ok();
    let added = daemon.add(torrent_file(&seed), json!({ "peers": [seed.addr()] }));
    assert_eq!(added["Added"]["id"], json!(seed.id), "{added}");

    let done = daemon.wait_torrent(&seed.id, "seeding", seeding);
    assert_eq!(done["summary"]["progress_ppm"], json!(1_000_000));
    assert_eq!(done["files"].as_array().unwrap().len(), 3);
    assert_files_match(&daemon.data.0.join("downloads"), &seed, &[]);

    // The durable state holds the .torrent and resume data.
    let state_dir = daemon.data.0.join("state/engine");
    assert!(state_dir.join(format!("{}.torrent", seed.id)).exists());
    let events = daemon.events();
    let kinds: Vec<String> = events
        .iter()
        .filter_map(|e| e.as_object().and_then(|o| o.keys().next().cloned()))
        .collect();
    for expected in ["Snapshot", "Added", "StateChanged", "Progress", "Completed"] {
        assert!(
            kinds.iter().any(|k| k == expected),
            "no {expected} event in {kinds:?}"
        );
    }
}

#[test]
fn engine_fetches_metadata_from_a_magnet_and_completes() {
    let seed = Seed::multi_file("magnetic", &[("one.bin", 1 << 20), ("two.bin", 2 << 20)], 0);
    let daemon = Daemon::start();
    daemon.wait_ok();
    let added = daemon.add(
        json!({ "Magnet": seed.magnet() }),
        json!({ "peers": [seed.addr()] }),
    );
    assert_eq!(added["Added"]["id"], json!(seed.id), "{added}");
    daemon.wait_torrent(&seed.id, "seeding", seeding);
    assert_files_match(&daemon.data.0.join("downloads"), &seed, &[]);
    let events = daemon.events();
    assert!(
        events
            .iter()
            .any(|e| e["MetadataReceived"]["id"] == json!(seed.id)),
        "{events:?}"
    );
}

#[test]
fn deselected_files_are_not_downloaded() {
    // 256 KiB-aligned sizes keep every file on its own pieces.
    let seed = Seed::multi_file(
        "picky",
        &[
            ("keep.bin", 1 << 20),
            ("skip.bin", 2 << 20),
            ("also.bin", 1 << 20),
        ],
        0,
    );
    let daemon = Daemon::start();
    daemon.wait_ok();
    // Priorities follow the torrent's file order, which libtorrent sorts.
    let info = libtorrent_sys::parse_torrent(&seed.torrent).unwrap();
    let priorities: Vec<u8> = info
        .files
        .iter()
        .map(|f| if f.path.ends_with("skip.bin") { 0 } else { 4 })
        .collect();
    let skip_index = priorities.iter().position(|&p| p == 0).unwrap();
    daemon.add(
        torrent_file(&seed),
        json!({ "peers": [seed.addr()], "file_priorities": priorities }),
    );
    let done = daemon.wait_torrent(&seed.id, "finished", |d| state(d) == "Finished");
    assert_eq!(done["files"][skip_index]["priority"], json!(0));
    assert_eq!(done["summary"]["total_wanted"], json!(2 << 20));
    assert_files_match(&daemon.data.0.join("downloads"), &seed, &["skip.bin"]);
    let skipped = daemon.data.0.join("downloads/picky/skip.bin");
    assert!(
        !skipped.exists() || std::fs::read(&skipped).unwrap() != seed.files[1].1,
        "a deselected file was downloaded"
    );
}

#[test]
fn malformed_torrents_and_magnets_are_refused_and_the_engine_keeps_running() {
    let daemon = Daemon::start();
    let before = daemon.wait_ok();
    for source in [
        json!({ "TorrentFile": b"this is not bencode".to_vec() }),
        json!({ "TorrentFile": Vec::<u8>::new() }),
        json!({ "TorrentFile": b"d4:infod4:name1:xee".to_vec() }),
        json!({ "Magnet": "magnet:?xt=urn:btih:zz" }),
        json!({ "Magnet": "https://example.invalid/not-a-magnet" }),
        json!({ "Magnet": format!("magnet:?xt=urn:btih:{}&dn={}", "ab".repeat(20), "x".repeat(9000)) }),
    ] {
        let answer = daemon.add(source.clone(), json!({}));
        assert_eq!(
            answer["Error"]["kind"],
            json!("Invalid"),
            "{source} → {answer}"
        );
    }
    let unknown = daemon.engine(&json!({"Pause": {"id": "ab".repeat(20)}}));
    assert_eq!(unknown["Error"]["kind"], json!("NotFound"));
    let after = daemon.wait_ok();
    assert_eq!(
        after.workers["engine"].pid, before.workers["engine"].pid,
        "the engine restarted"
    );
    assert_eq!(daemon.engine(&json!("List")), json!({"List": []}));
    assert!(
        std::fs::read_dir(daemon.data.0.join("state/engine"))
            .unwrap()
            .filter_map(Result::ok)
            .all(|e| e.file_type().unwrap().is_dir())
    );
}

#[test]
fn actions_take_effect_in_libtorrent() {
    let seed = Seed::multi_file("actions", &[("x.bin", 1 << 20), ("y.bin", 1 << 20)], 0);
    let daemon = Daemon::start();
    daemon.wait_ok();
    let id = seed.id.clone();
    daemon.add(torrent_file(&seed), json!({ "paused": true }));
    let paused = daemon.wait_torrent(&id, "paused", |d| state(d) == "Paused");
    assert_eq!(paused["summary"]["paused"], json!(true));

    assert_eq!(
        daemon.engine(&json!({"SetSequential": {"id": id, "enabled": true}})),
        json!("Done")
    );
    daemon.wait_torrent(&id, "sequential", |d| {
        d["summary"]["sequential"] == json!(true)
    });
    assert_eq!(
        daemon.engine(
            &json!({"SetTorrentRate": {"id": id, "download": 4_000_000, "upload": 1_000_000}})
        ),
        json!("Done")
    );
    let limited = daemon.detail(&id).unwrap();
    assert_eq!(limited["download_limit"], json!(4_000_000));
    assert_eq!(limited["upload_limit"], json!(1_000_000));
    let too_fast = daemon
        .engine(&json!({"SetTorrentRate": {"id": id, "download": 1_u64 << 40, "upload": null}}));
    assert_eq!(too_fast["Error"]["kind"], json!("Invalid"));

    assert_eq!(daemon.engine(&json!({"Resume": {"id": id}})), json!("Done"));
    assert_eq!(
        daemon.engine(&json!({"ConnectPeer": {"id": id, "addr": seed.addr()}})),
        json!("Done")
    );
    daemon.wait_torrent(&id, "seeding", seeding);
    assert_eq!(
        daemon.engine(&json!({"Reannounce": {"id": id}})),
        json!("Done")
    );

    // Recheck: libtorrent checks the files again and returns to seeding.
    assert_eq!(
        daemon.engine(&json!({"Recheck": {"id": id}})),
        json!("Done")
    );
    let checking = |e: &serde_json::Value| {
        e["StateChanged"]["id"] == json!(id) && e["StateChanged"]["state"] == json!("CheckingFiles")
    };
    let deadline = std::time::Instant::now() + common::DEADLINE;
    while !daemon.events().iter().any(checking) {
        assert!(
            std::time::Instant::now() < deadline,
            "recheck never entered CheckingFiles: {:?}",
            daemon.events()
        );
        std::thread::sleep(common::POLL);
    }
    daemon.wait_torrent(&id, "seeding after recheck", seeding);

    // Selection after the fact.
    assert_eq!(
        daemon.engine(&json!({"SelectFiles": {"id": id, "priorities": [7, 1]}})),
        json!("Done")
    );
    let wrong = daemon.engine(&json!({"SelectFiles": {"id": id, "priorities": [1]}}));
    assert_eq!(wrong["Error"]["kind"], json!("Invalid"));
    daemon.wait_torrent(&id, "priorities applied", |d| {
        d["files"][0]["priority"] == json!(7)
    });

    // Remove with data: files and state are gone.
    let content = daemon.data.0.join("downloads/actions");
    assert!(content.exists());
    assert_eq!(
        daemon.engine(&json!({"Remove": {"id": id, "delete_data": true}})),
        json!("Done")
    );
    assert_eq!(daemon.engine(&json!("List")), json!({"List": []}));
    let deadline = std::time::Instant::now() + common::DEADLINE;
    while content.join("x.bin").exists() {
        assert!(std::time::Instant::now() < deadline, "data not deleted");
        std::thread::sleep(common::POLL);
    }
    // State files go too (a resume write racing the removal is undone).
    for kind in ["torrent", "resume"] {
        let file = daemon.data.0.join(format!("state/engine/{id}.{kind}"));
        while file.exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "{kind} state left behind"
            );
            std::thread::sleep(common::POLL);
        }
    }
}

#[test]
fn remove_keeps_data_unless_asked() {
    let seed = Seed::multi_file("keeper", &[("k.bin", 1 << 20)], 0);
    let daemon = Daemon::start();
    daemon.wait_ok();
    daemon.add(torrent_file(&seed), json!({ "peers": [seed.addr()] }));
    daemon.wait_torrent(&seed.id, "seeding", seeding);
    assert_eq!(
        daemon.engine(&json!({"Remove": {"id": seed.id, "delete_data": false}})),
        json!("Done")
    );
    assert_files_match(&daemon.data.0.join("downloads"), &seed, &[]);
    let again = daemon.engine(&json!({"Remove": {"id": seed.id, "delete_data": false}}));
    assert_eq!(again["Error"]["kind"], json!("NotFound"));
}

#[test]
fn duplicate_add_is_refused() {
    let seed = Seed::multi_file("twice", &[("t.bin", 256 << 10)], 0);
    let daemon = Daemon::start();
    daemon.wait_ok();
    assert!(
        daemon
            .add(torrent_file(&seed), json!({"paused": true}))
            .get("Added")
            .is_some()
    );
    let second = daemon.add(json!({ "Magnet": seed.magnet() }), json!({}));
    assert_eq!(second["Error"]["kind"], json!("Duplicate"), "{second}");
}

#[test]
fn killed_engine_resumes_from_resume_data_without_a_full_recheck() {
    let seed = Seed::multi_file("resumable", &[("big.bin", 24 << 20)], 0);
    let daemon = Daemon::start_with(
        &bin_dir(),
        &common::test_config("")
            .replace("[engine]\n", "[engine]\nresume_flush_interval_secs = 1\n"),
    );
    let health = daemon.wait_ok();
    let old_engine = Daemon::worker_pid(&health, "engine");
    // Added paused, throttled to 4 MiB/s (local peers bypass global limits,
    // not per-torrent ones), then started: the kill lands mid-download.
    daemon.add(torrent_file(&seed), json!({ "paused": true }));
    assert_eq!(
        daemon.engine(
            &json!({"SetTorrentRate": {"id": seed.id, "download": 4 << 20, "upload": null}})
        ),
        json!("Done")
    );
    assert_eq!(
        daemon.engine(&json!({"Resume": {"id": seed.id}})),
        json!("Done")
    );
    assert_eq!(
        daemon.engine(&json!({"ConnectPeer": {"id": seed.id, "addr": seed.addr()}})),
        json!("Done")
    );
    // Wait for real progress, then for a resume file written after it.
    let partial = daemon.wait_torrent(&seed.id, "a third downloaded", |d| {
        d["summary"]["progress_ppm"].as_u64().unwrap_or(0) >= 330_000
    });
    let resume_file = daemon
        .data
        .0
        .join(format!("state/engine/{}.resume", seed.id));
    let before_kill = std::time::SystemTime::now();
    let deadline = std::time::Instant::now() + common::DEADLINE;
    while std::fs::metadata(&resume_file)
        .and_then(|m| m.modified())
        .map_or(true, |m| m < before_kill)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "resume data never flushed"
        );
        std::thread::sleep(common::POLL);
    }
    let done_at_kill = partial["summary"]["total_done"].as_u64().unwrap();
    assert!(
        partial["summary"]["progress_ppm"].as_u64().unwrap() < 1_000_000,
        "finished before the kill"
    );
    kill9(old_engine);

    // The supervisor restarts the engine; the torrent comes back with its
    // progress (no full recheck from zero) and completes.
    daemon.wait_health("engine restarted", |code, h| {
        code == 200 && h.workers["engine"].pid != Some(old_engine)
    });
    let back = daemon.wait_torrent(&seed.id, "restored and its resume data checked", |d| {
        d["summary"]["has_metadata"] == json!(true) && state(d) != "CheckingResumeData"
    });
    let done_after = back["summary"]["total_done"].as_u64().unwrap();
    assert!(
        done_after >= done_at_kill,
        "restored with {done_after} bytes done, had {done_at_kill} at the kill"
    );
    // The rate limit survived in the resume data; lift it and reconnect.
    let restored = daemon.detail(&seed.id).unwrap();
    assert_eq!(restored["download_limit"], json!(4 << 20));
    daemon.engine(&json!({"SetTorrentRate": {"id": seed.id, "download": null, "upload": null}}));
    assert_eq!(
        daemon.engine(&json!({"ConnectPeer": {"id": seed.id, "addr": seed.addr()}})),
        json!("Done")
    );
    daemon.wait_torrent(&seed.id, "seeding after restart", seeding);
    assert_files_match(&daemon.data.0.join("downloads"), &seed, &[]);
    // Restored from resume data: libtorrent never went through a full
    // CheckingFiles pass for this torrent after the restart.
    let events = daemon.events();
    let last_snapshot = events
        .iter()
        .rposition(|e| e.get("Snapshot").is_some())
        .unwrap();
    assert!(
        !events[last_snapshot..]
            .iter()
            .any(|e| e["StateChanged"]["state"] == json!("CheckingFiles")),
        "the restarted engine rechecked the files: {:?}",
        &events[last_snapshot..]
    );
}

#[test]
fn seeding_torrents_are_seeding_again_after_a_daemon_restart_and_corrupt_resume_is_quarantined() {
    let first = Seed::multi_file("first", &[("f.bin", 512 << 10)], 0);
    let second = Seed::multi_file("second", &[("s.bin", 512 << 10)], 0);
    let mut daemon = Daemon::start();
    daemon.wait_ok();
    for seed in [&first, &second] {
        daemon.add(torrent_file(seed), json!({ "peers": [seed.addr()] }));
    }
    for seed in [&first, &second] {
        daemon.wait_torrent(&seed.id, "seeding", seeding);
    }
    // Orderly stop writes resume data for both.
    daemon.restart(&bin_dir());
    daemon.wait_ok();
    for seed in [&first, &second] {
        daemon.wait_torrent(&seed.id, "seeding after restart", seeding);
    }

    // Corrupt one resume file while the daemon is stopped.
    let status = daemon.signal_and_wait(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(status.code(), Some(0));
    let state_dir = daemon.data.0.join("state/engine");
    std::fs::write(
        state_dir.join(format!("{}.resume", first.id)),
        b"d8:garbage",
    )
    .unwrap();
    daemon.restart_stopped(&bin_dir());
    daemon.wait_ok();
    // The other torrent loads from its resume data; the corrupt file is in
    // quarantine, reported, and the torrent itself is restored from its
    // .torrent (at the cost of a recheck, not of the torrent).
    daemon.wait_torrent(&second.id, "second seeding", seeding);
    daemon.wait_torrent(&first.id, "first restored from .torrent", seeding);
    let quarantined: Vec<_> = std::fs::read_dir(state_dir.join("quarantine"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        quarantined
            .iter()
            .any(|n| n.starts_with(&format!("{}.resume", first.id))),
        "{quarantined:?}"
    );
    let events = daemon.events();
    assert!(
        events
            .iter()
            .any(|e| e["StateQuarantined"]["id"] == json!(first.id)),
        "{events:?}"
    );
}

#[test]
fn a_third_party_client_downloads_from_the_engine_and_reannounce_reaches_the_tracker() {
    let tracker = common::Tracker::start();
    let seed = Seed::build(
        "shared",
        &[("s1.bin", 2 << 20), ("s2.bin", 1 << 20)],
        0,
        vec![tracker.announce_url()],
    );
    let daemon = Daemon::start();
    daemon.wait_ok();
    daemon.add(torrent_file(&seed), json!({ "peers": [seed.addr()] }));
    daemon.wait_torrent(&seed.id, "seeding", seeding);
    // The fixture seed leaves: from now on Revaer is the only source.
    let seed_files = seed.files.clone();
    let torrent = seed.torrent.clone();
    let (name, id) = (seed.name.clone(), seed.id.clone());
    drop(seed);

    // The engine announces itself to the tracker; a reannounce is one more.
    let deadline = std::time::Instant::now() + common::DEADLINE;
    while tracker.announces(&id).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the engine never announced"
        );
        std::thread::sleep(common::POLL);
    }
    let before = tracker.announces(&id).len();
    assert_eq!(
        daemon.engine(&json!({"Reannounce": {"id": id}})),
        json!("Done")
    );
    while tracker.announces(&id).len() <= before {
        assert!(
            std::time::Instant::now() < deadline,
            "reannounce did not reach the tracker"
        );
        std::thread::sleep(common::POLL);
    }
    let engine_port = tracker.announces(&id)[0].port;

    // aria2c (a real third-party client) finds Revaer through the tracker.
    let work = common::TempDir::new("aria2");
    let torrent_path = work.0.join("shared.torrent");
    std::fs::write(&torrent_path, &torrent).unwrap();
    let out = work.0.join("out");
    let free_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut aria = std::process::Command::new("aria2c")
        .arg(format!("--listen-port={free_port}"))
        .arg(format!("--dir={}", out.display()))
        .args([
            "--seed-time=0",
            "--enable-dht=false",
            "--enable-dht6=false",
            "--enable-peer-exchange=false",
            "--bt-enable-lpd=false",
            "--file-allocation=none",
            "--summary-interval=0",
            "--console-log-level=warn",
            "--bt-stop-timeout=60",
            "--disable-ipv6=true",
        ])
        .arg(&torrent_path)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("aria2c (apt package aria2) is installed by ./x");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    let status = loop {
        if let Some(status) = aria.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = aria.kill();
            let _ = aria.wait();
            panic!("aria2c did not finish within 90 s");
        }
        std::thread::sleep(common::POLL);
    };
    assert!(status.success(), "aria2c failed: {status}");
    for (path, bytes) in &seed_files {
        let got = std::fs::read(out.join(&name).join(path)).unwrap();
        assert!(got == *bytes, "{path}: aria2c's copy differs");
    }
    // And Revaer did the uploading.
    let detail = daemon.detail(&id).unwrap();
    assert!(
        detail["summary"]["uploaded"].as_u64().unwrap() >= 3 << 20,
        "{detail}"
    );
    assert!(engine_port > 0);
}

#[test]
fn engine_settings_follow_live_config_edits_and_global_rate_commands() {
    let daemon = Daemon::start();
    let before = daemon.wait_ok();
    let info = daemon.engine(&json!("SessionInfo"));
    assert_eq!(info["Session"]["dht"], json!(false), "{info}");
    assert_eq!(info["Session"]["utp"], json!(false));
    assert_eq!(info["Session"]["download_rate_limit"], json!(null));

    // A live edit: new listen port and global limits, no restart.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = common::test_config("").replace(
        "listen_interfaces = \"127.0.0.1:0\"\n",
        &format!("listen_interfaces = \"127.0.0.1:{port}\"\ndownload_rate_limit = 5000000\nupload_rate_limit = 2000000\nconnections_limit = 123\n"),
    );
    std::fs::write(daemon.data.0.join("revaer.toml"), config).unwrap();
    let applied = daemon.wait_health("engine acknowledged the new config", |code, h| {
        code == 200
            && h.config.revision == before.config.revision + 1
            && h.workers["engine"].config_revision == Some(h.config.revision)
    });
    assert_eq!(
        applied.workers["engine"].pid, before.workers["engine"].pid,
        "applied live, not by restart"
    );
    let info = daemon.engine(&json!("SessionInfo"));
    assert_eq!(
        info["Session"]["download_rate_limit"],
        json!(5_000_000),
        "{info}"
    );
    assert_eq!(info["Session"]["upload_rate_limit"], json!(2_000_000));
    assert_eq!(info["Session"]["connections_limit"], json!(123));
    let deadline = std::time::Instant::now() + common::DEADLINE;
    while daemon.engine(&json!("SessionInfo"))["Session"]["listen_port"] != json!(port) {
        assert!(
            std::time::Instant::now() < deadline,
            "engine never moved to port {port}"
        );
        std::thread::sleep(common::POLL);
    }
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());

    // The global-rate command.
    assert_eq!(
        daemon.engine(&json!({"SetGlobalRate": {"download": null, "upload": 1_000_000}})),
        json!("Done")
    );
    let info = daemon.engine(&json!("SessionInfo"));
    assert_eq!(info["Session"]["download_rate_limit"], json!(null));
    assert_eq!(info["Session"]["upload_rate_limit"], json!(1_000_000));
}
