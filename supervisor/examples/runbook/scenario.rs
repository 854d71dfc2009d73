//! The runbook's steps, in order. Each returns a one-line outcome for
//! `summary.md` or fails with what it saw.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::ops::{DEADLINE, Ops, contains_key_shape, metric, mode_of, summary};
use crate::seed;
use crate::support::{BoxError, wait_for};
use crate::util;

/// Size of the torrent's single file.
const CONTENT_BYTES: u64 = 16 << 20;
const CONTENT_NAME: &str = "runbook-sample.bin";
/// The per-minute budget of the throttled key.
const THROTTLED_RATE: u32 = 5;

/// `revaer.toml` for the run: loopback only, quick resume flushes, and a
/// restart backoff long enough (2 s) to observe the engine being down.
fn config(default_rate: u32, extra_api: &str) -> String {
    format!(
        "# revaer.toml written by `just runbook`\n\
         [api]\n\
         listen = \"127.0.0.1:0\"\n\
         default_rate_per_minute = {default_rate}\n\
         {extra_api}\n\
         [engine]\n\
         listen_interfaces = \"127.0.0.1:0\"\n\
         enable_dht = false\n\
         enable_lsd = false\n\
         enable_upnp = false\n\
         enable_natpmp = false\n\
         enable_utp = false\n\
         resume_flush_interval_secs = 1\n\
         \n\
         [supervisor]\n\
         restart_backoff_initial_ms = 2000\n\
         shutdown_grace_ms = 10000\n"
    )
}

/// Replaces `revaer.toml` atomically (what an editor saving in place or a
/// config-management tool does); the daemon picks it up live.
fn write_config(data: &Path, text: &str) -> Result<(), BoxError> {
    let tmp = data.join("revaer.toml.runbook-tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, data.join("revaer.toml"))?;
    Ok(())
}

/// The content, a tracker handing out the seed, the `.torrent` (written
/// to `torrent_file`) and the seed itself, all on 127.0.0.1.
fn start_seed(
    dir: &Path,
    content: &Path,
    torrent_file: &Path,
) -> Result<(seed::Tracker, seed::Seed), util::BoxError> {
    let localhost = IpAddr::V4(Ipv4Addr::LOCALHOST);
    seed::write_content(content, CONTENT_BYTES)?;
    let seed_port = util::free_port(localhost)?;
    let tracker = seed::Tracker::start(&[(localhost, SocketAddr::new(localhost, seed_port))])?;
    let torrent = seed::make_torrent(content, &tracker.urls[0])?;
    std::fs::write(torrent_file, &torrent)?;
    let seed = seed::Seed::start(dir, &torrent, &format!("127.0.0.1:{seed_port}"))?;
    Ok((tracker, seed))
}

fn check(cond: bool, what: impl Into<String>) -> Result<(), BoxError> {
    if cond {
        Ok(())
    } else {
        Err(what.into().into())
    }
}

fn degraded(body: &Value) -> Vec<String> {
    body["degraded"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

fn json(text: &str) -> Result<Value, BoxError> {
    Ok(serde_json::from_str(text)?)
}

#[allow(clippy::too_many_lines)]
pub fn run(ops: &mut Ops, work: &Path) -> Result<(), BoxError> {
    let default_rate = 6000;

    // 1. Bootstrap: first start on an empty data dir.
    ops.step("Bootstrap: first start, admin key file, health ok", |ops| {
        std::fs::create_dir_all(&ops.data)?;
        std::fs::write(ops.data.join("revaer.toml"), config(default_rate, ""))?;
        ops.start_daemon()?;
        wait_for(DEADLINE, Duration::from_millis(20), || {
            ops.key_file().exists().then_some(())
        })
        .map_err(|_| "no bootstrap-admin.key")?;
        let mode = mode_of(&ops.key_file())?;
        check(mode == 0o600, format!("bootstrap-admin.key has mode {mode:o}"))?;
        let key = ops.admin_key()?;
        check(contains_key_shape(&key), "bootstrap-admin.key holds no rvk_ key")?;
        ops.secrets.push(key);
        let health = ops.wait_ok()?;
        ops.snapshot_health("bootstrap")?;
        let (code, _, _) = ops.cli(&["health"])?;
        check(code == 0, format!("`revaer health` exit {code}"))?;
        let layout = ["state/api", "state/engine", "downloads", "library", "run"];
        for dir in layout {
            check(ops.data.join(dir).is_dir(), format!("no {dir}/ in the data dir"))?;
        }
        Ok(format!(
            "bootstrap-admin.key mode 0600; /health/full 200 ok (config revision {}); `revaer health` exit 0; data dir layout {}",
            health["config"]["revision"],
            layout.join(", ")
        ))
    })?;

    // 2. A local seed and tracker, and the .torrent to add.
    let content_dir = work.join("seed");
    std::fs::create_dir_all(&content_dir)?;
    let content = content_dir.join(CONTENT_NAME);
    let mut tracker_and_seed = None;
    let torrent_file = work.join("runbook-sample.torrent");
    ops.step("Local seed and tracker on 127.0.0.1", |_| {
        let (tracker, seed) =
            start_seed(&content_dir, &content, &torrent_file).map_err(|e| e.to_string())?;
        let outcome = format!(
            "seed on 127.0.0.1:{} serving {} MiB ({CONTENT_NAME}), tracker {}",
            seed.port,
            CONTENT_BYTES >> 20,
            tracker.urls[0]
        );
        tracker_and_seed = Some((tracker, seed));
        Ok(outcome)
    })?;

    // 3. Add it with the CLI.
    let mut id = String::new();
    ops.step("Add the torrent (`revaer add`, `revaer ls`)", |ops| {
        let path = torrent_file.display().to_string();
        let (code, out, err) = ops.cli(&["add", &path, "--tag", "runbook", "--category", "runbook"])?;
        check(code == 0, format!("`revaer add` exit {code}: {err}"))?;
        json(&out)?["id"]
            .as_str()
            .ok_or("no id in `revaer add` output")?
            .clone_into(&mut id);
        let (code, out, err) = ops.cli(&["ls", "--tag", "runbook"])?;
        check(code == 0, format!("`revaer ls` exit {code}: {err}"))?;
        let listed = json(&out)?["items"]
            .as_array()
            .is_some_and(|items| items.iter().any(|t| t["id"] == id.as_str()));
        check(listed, "`revaer ls --tag runbook` does not list the torrent")?;
        let (code, _, _) = ops.cli(&["add", &path])?;
        check(code == 4, format!("adding it again: exit {code}, expected 4"))?;
        Ok(format!("`revaer add` exit 0, id {id}; listed by `revaer ls --tag runbook`; adding it again exits 4 (conflict)"))
    })?;

    // 4. Download.
    ops.step("Download from the local seed", |ops| {
        let (code, out) = ops.cli_bounded(
            &["tail", "--torrent", &id, "--kind", "completed", "--count", "1", "--since", "0", "--no-state"],
            Duration::from_secs(120),
        )?;
        check(code == 0, format!("`revaer tail --kind completed --count 1` exit {code}"))?;
        let (code, out2, err) = ops.cli(&["status", &id])?;
        check(code == 0, format!("`revaer status` exit {code}: {err}"))?;
        let detail = json(&out2)?;
        let done = ops.data.join("downloads").join(CONTENT_NAME);
        let size = std::fs::metadata(&done)?.len();
        check(size == CONTENT_BYTES, format!("downloaded file has {size} bytes"))?;
        Ok(format!(
            "`revaer tail --kind completed --count 1` saw `{}`; `revaer status`: state {}, progress {}; downloads/{CONTENT_NAME} {size} bytes",
            out.trim().chars().take(120).collect::<String>(),
            detail["state"],
            detail["progress"]
        ))
    })?;

    // 5. FsOps puts it in the library.
    ops.step("FsOps: job completed, hardlinked into the library", |ops| {
        let detail = ops.wait_torrent(&id, "the FsOps job", DEADLINE, |d| {
            d["fsops_job"]["state"] == "completed" || d["fsops_job"]["state"] == "failed"
        })?;
        check(detail["fsops_job"]["state"] == "completed", format!("FsOps job: {}", summary(&detail)))?;
        let library_path = detail["fsops_job"]["library_path"].as_str().ok_or("no library_path")?;
        let library = ops.data.join("library").join(library_path);
        let file = if library.is_dir() { library.join(CONTENT_NAME) } else { library };
        let linked = std::fs::metadata(&file)?;
        let original = std::fs::metadata(ops.data.join("downloads").join(CONTENT_NAME))?;
        check(linked.ino() == original.ino(), "the library file is not a hardlink of the download")?;
        ops.snapshot_health("after-fsops")?;
        ops.snapshot_metrics("after-fsops")?;
        Ok(format!(
            "fsops_job completed; library/{library_path} shares the inode of downloads/{CONTENT_NAME} (hardlink, nlink {})",
            linked.nlink()
        ))
    })?;

    // 6. Restart: SIGTERM, start again, resumes without a recheck.
    ops.step("Restart (SIGTERM, start again): seeding without a recheck", |ops| {
        let head = ops.wait_ok()?["event_log_head"].as_u64().unwrap_or(0);
        let code = ops.stop_daemon()?;
        check(code == Some(0), format!("revaerd exited with {code:?} on SIGTERM"))?;
        ops.start_daemon()?;
        let health = ops.wait_ok()?;
        // The first fresh (not stale) detail after the restart: restored
        // from resume data, it is complete at once.
        let first = ops.wait_torrent(&id, "a fresh detail after the restart", DEADLINE, |d| {
            d["stale"] == false
        })?;
        let detail = ops.wait_torrent(&id, "seeding after the restart", DEADLINE, |d| {
            d["state"] == "seeding" && d["stale"] == false
        })?;
        let now = ops.wait_ok()?["event_log_head"].as_u64().unwrap_or(0);
        let events = if now > head { ops.events_between(head, now)? } else { Vec::new() };
        let mine: Vec<&Value> = events
            .iter()
            .filter(|e| e["event"]["torrent"] == id.as_str())
            .collect();
        let states: Vec<String> = mine
            .iter()
            .filter_map(|e| e["event"]["state"].as_str().map(str::to_owned))
            .collect();
        let kinds: Vec<&str> = mine.iter().filter_map(|e| e["event"]["type"].as_str()).collect();
        check(
            !states.iter().any(|s| s == "checking_files"),
            format!("the restarted engine rechecked the files: {states:?}"),
        )?;
        check(
            first["progress"].as_f64().is_some_and(|p| p >= 1.0),
            format!("first detail after the restart: {}", summary(&first)),
        )?;
        check(
            detail["progress"].as_f64().is_some_and(|p| p >= 1.0),
            format!("progress after restart {}", detail["progress"]),
        )?;
        let log = std::fs::read_to_string(ops.log_path())?;
        check(
            log.contains("torrents restored from state"),
            "no `torrents restored from state` in the log",
        )?;
        ops.snapshot_health("after-restart")?;
        Ok(format!(
            "revaerd exit 0 on SIGTERM; after restart /health/full ok (engine pid {}); engine log `torrents restored from state restored=1`; first fresh detail: state {}, progress {}; the torrent's events since event {head}: {kinds:?}, states {states:?} (no checking_files, no recheck)",
            health["workers"]["engine"]["pid"],
            first["state"],
            first["progress"]
        ))
    })?;

    // 7. Rate limiting: a key with a small budget gets 429, then the default
    //    rate is raised live in revaer.toml.
    ops.step("Rate limiting: 429 on a throttled key, metric, per-torrent limit", |ops| {
        let key_out = work.join("throttled.key");
        let save = key_out.display().to_string();
        let rate = THROTTLED_RATE.to_string();
        let (code, out, err) = ops.cli(&[
            "keys", "issue", "--name", "runbook-throttled", "--scope", "read",
            "--rate-per-minute", &rate, "--save-to", &save,
        ])?;
        check(code == 0, format!("`revaer keys issue` exit {code}: {err}"))?;
        let key_id = json(&out)?["id"].as_str().ok_or("no key id")?.to_owned();
        let key = std::fs::read_to_string(&key_out)?.trim().to_owned();
        ops.secrets.push(key.clone());
        let sample = format!("revaer_rate_limit_throttled_total{{key_id=\"{key_id}\"}}");
        let before = metric(&ops.snapshot_metrics("before-throttle")?, &sample);
        let mut answered = 0;
        let mut throttled = None;
        for _ in 0..(THROTTLED_RATE * 4) {
            let (code, retry_after, _) = ops.get(&key, "/v1/torrents")?;
            if code == 429 {
                throttled = Some(retry_after);
                break;
            }
            check(code == 200, format!("GET /v1/torrents with the throttled key: {code}"))?;
            answered += 1;
        }
        let retry_after = throttled.ok_or("the throttled key was never answered 429")?;
        check(retry_after.is_some(), "429 without Retry-After")?;
        let (code, _, _) = ops.cli_with(&["ls"], &[("REVAER_API_KEY", key.clone())])?;
        check(code == 5, format!("`revaer ls` with the throttled key: exit {code}, expected 5"))?;
        let after = metric(&ops.snapshot_metrics("after-throttle")?, &sample);
        check(after > before, format!("{sample} went from {before} to {after}"))?;
        // A per-torrent limit, set and read back with the CLI.
        let (code, _, err) = ops.cli(&["action", &id, "rate", "--down", "1MiB/s", "--up", "512KiB/s"])?;
        check(code == 0, format!("`revaer action rate` exit {code}: {err}"))?;
        let detail = ops.wait_torrent(&id, "the per-torrent limits", DEADLINE, |d| {
            d["download_limit_bps"] == 1_048_576 && d["upload_limit_bps"] == 524_288
        })?;
        Ok(format!(
            "key {key_id} ({THROTTLED_RATE}/min): {answered} answers, then 429 with Retry-After {}; `revaer ls` with it exit 5; {sample} {before} → {after}; `revaer action rate --down 1MiB/s --up 512KiB/s` → limits {} / {} B/s",
            retry_after.unwrap_or_default(),
            detail["download_limit_bps"],
            detail["upload_limit_bps"]
        ))
    })?;

    let raised_rate = default_rate * 2;
    ops.step("Raise [api] default_rate_per_minute live (config_applied)", |ops| {
        let before = ops.wait_ok()?;
        let revision = before["config"]["revision"].as_u64().unwrap_or(0);
        let head = before["event_log_head"].as_u64().unwrap_or(0);
        write_config(&ops.data, &config(raised_rate, ""))?;
        let (_, after) = ops.wait_health("a new config revision acknowledged by every worker", |code, h| {
            let rev = h["config"]["revision"].as_u64().unwrap_or(0);
            code == 200
                && rev > revision
                && ["api", "engine", "fsops"]
                    .iter()
                    .all(|w| h["workers"][*w]["config_revision"].as_u64() == Some(rev))
        })?;
        let new_revision = after["config"]["revision"].as_u64().unwrap_or(0);
        let since = head.to_string();
        let (code, out) = ops.cli_bounded(
            &["tail", "--kind", "config_applied", "--count", "1", "--since", &since, "--no-state"],
            DEADLINE,
        )?;
        check(code == 0, format!("`revaer tail --kind config_applied` exit {code}"))?;
        let applied = json(out.trim())?;
        check(
            applied["event"]["revision"].as_u64() == Some(new_revision),
            format!("config_applied {applied}, expected revision {new_revision}"),
        )?;
        ops.snapshot_health("after-rate-raise")?;
        Ok(format!(
            "default_rate_per_minute {default_rate} → {raised_rate}: config revision {revision} → {new_revision}, acknowledged by api/engine/fsops; `revaer tail --kind config_applied` printed revision {new_revision}"
        ))
    })?;

    // 8. Degraded: the engine is killed.
    ops.step("Degraded: kill -9 the engine → 503, stale reads, 503 writes → ok", |ops| {
        let before = ops.wait_ok()?;
        let pid = before["workers"]["engine"]["pid"].as_u64().ok_or("no engine pid")?;
        let restarts = before["workers"]["engine"]["restarts"].as_u64().unwrap_or(0);
        std::process::Command::new("kill").args(["-9", &pid.to_string()]).status()?;
        ops.wait_health("engine degraded", |code, h| {
            code == 503 && degraded(h).iter().any(|d| d == "engine")
        })?;
        let (code, down) = ops.snapshot_health("engine-killed")?;
        check(code == 503, format!("/health/full {code} while the engine is down"))?;
        let key = ops.admin_key()?;
        let (read_code, _, read) = ops.get(&key, &format!("/v1/torrents/{id}"))?;
        let stale = json(&read).is_ok_and(|d| d["stale"] == true);
        let (write_code, _, _) = ops.cli(&["action", &id, "reannounce"])?;
        let (health_code, _, _) = ops.cli(&["health"])?;
        check(health_code == 5, format!("`revaer health` exit {health_code} while degraded"))?;
        let after = ops.wait_ok()?;
        let new_pid = after["workers"]["engine"]["pid"].as_u64().unwrap_or(0);
        let last_exit = &after["workers"]["engine"]["last_exit"];
        check(new_pid != pid, "the engine pid did not change")?;
        check(last_exit["signal"] == 9, format!("last_exit {last_exit}"))?;
        check(
            after["workers"]["engine"]["restarts"].as_u64().unwrap_or(0) > restarts,
            "restart count did not grow",
        )?;
        ops.wait_torrent(&id, "seeding after the engine restart", DEADLINE, |d| {
            d["state"] == "seeding" && d["stale"] == false
        })?;
        ops.snapshot_health("engine-recovered")?;
        ops.snapshot_metrics("engine-recovered")?;
        check(read_code == 200 && stale, format!("read while the engine was down: {read_code}, stale {stale}"))?;
        check(write_code == 5, format!("`revaer action reannounce` while the engine was down: exit {write_code}, expected 5"))?;
        Ok(format!(
            "/health/full 503, degraded {:?}, engine reason {}; GET detail 200 with stale: true; `revaer action reannounce` exit 5 (503); `revaer health` exit 5; back to ok with engine pid {pid} → {new_pid}, restarts {restarts} → {}, last_exit signal 9; torrent seeding again",
            degraded(&down),
            down["workers"]["engine"]["reason"],
            after["workers"]["engine"]["restarts"]
        ))
    })?;

    // 9. Degraded: a broken revaer.toml is refused, the old one stays.
    ops.step("Degraded: unknown key in revaer.toml refused → fixed → ok", |ops| {
        let before = ops.wait_ok()?;
        let revision = before["config"]["revision"].as_u64().unwrap_or(0);
        write_config(&ops.data, &config(raised_rate, "default_rate_per_hour = 10"))?;
        ops.wait_health("config degraded", |code, h| {
            code == 503 && degraded(h).iter().any(|d| d == "config") && !h["config"]["error"].is_null()
        })?;
        let (_, broken) = ops.snapshot_health("config-broken")?;
        let kept = broken["config"]["revision"].as_u64() == Some(revision);
        check(kept, format!("revision moved to {} on a refused config", broken["config"]["revision"]))?;
        let (code, _, _) = ops.cli(&["ls"])?;
        check(code == 0, format!("`revaer ls` exit {code} with the old config kept"))?;
        write_config(&ops.data, &config(raised_rate, ""))?;
        let after = ops.wait_ok()?;
        ops.snapshot_health("config-fixed")?;
        ops.snapshot_metrics("final")?;
        Ok(format!(
            "config.error {}; degraded {:?}; revision stayed {revision} and the API kept serving (`revaer ls` exit 0); fixed (the revision-{revision} text again) → ok at revision {}",
            broken["config"]["error"],
            degraded(&broken),
            after["config"]["revision"]
        ))
    })?;

    // 10. Orderly stop.
    ops.step("Orderly stop (SIGTERM)", |ops| {
        let code = ops.stop_daemon()?;
        check(code == Some(0), format!("revaerd exited with {code:?}"))?;
        Ok("revaerd exit 0".to_owned())
    })?;
    drop(tracker_and_seed);

    // 11. Lost admin key, none left: revoke every admin key in the stopped
    //     daemon's store; the next start issues a new bootstrap key.
    let sqlite = std::process::Command::new("sqlite3")
        .arg("-version")
        .output();
    if sqlite.is_ok_and(|o| o.status.success()) {
        ops.step("Lost admin key: revoke admin keys offline (sqlite3) → new bootstrap key", |ops| {
            let old = ops.admin_key()?;
            let db = ops.data.join("state/api/revaer.db");
            let out = std::process::Command::new("sqlite3")
                .arg(&db)
                .arg("UPDATE api_keys SET revoked_at = strftime('%s','now') WHERE scope = 'admin' AND revoked_at IS NULL; SELECT changes();")
                .output()?;
            check(out.status.success(), format!("sqlite3: {}", String::from_utf8_lossy(&out.stderr)))?;
            let revoked = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            ops.start_daemon()?;
            wait_for(DEADLINE, Duration::from_millis(20), || {
                let key = ops.admin_key().ok()?;
                (contains_key_shape(&key) && key != old).then_some(())
            })
            .map_err(|_| "no new bootstrap-admin.key")?;
            ops.secrets.push(ops.admin_key()?);
            ops.wait_ok()?;
            let (old_code, _, _) = ops.get(&old, "/v1/keys")?;
            check(old_code == 401, format!("the revoked key got {old_code}"))?;
            let (code, out, err) = ops.cli(&["keys", "ls"])?;
            check(code == 0, format!("`revaer keys ls` with the new key exit {code}: {err}"))?;
            let keys = json(&out)?;
            let admins = keys
                .as_array()
                .map_or(0, |a| a.iter().filter(|k| k["scope"] == "admin" && k["revoked_at"].is_null()).count());
            check(admins == 1, format!("{admins} active admin keys"))?;
            let code = ops.stop_daemon()?;
            check(code == Some(0), format!("revaerd exited with {code:?}"))?;
            Ok(format!(
                "{revoked} admin key(s) revoked in state/api/revaer.db while stopped; next start wrote a new bootstrap-admin.key (mode {:o}); old key 401, new key lists {admins} active admin key; revaerd exit 0",
                mode_of(&ops.key_file())?
            ))
        })?;
    } else {
        eprintln!("runbook: sqlite3 not installed; the lost-admin-key step is skipped");
    }
    Ok(())
}

/// The daemon's log must hold no API key (none of the ones in play, nor
/// anything shaped like one).
pub fn check_log(ops: &Ops) -> Result<String, BoxError> {
    let log = std::fs::read_to_string(ops.log_path())?;
    if ops
        .secrets
        .iter()
        .any(|s| !s.is_empty() && log.contains(s.as_str()))
    {
        return Err("revaerd.log contains an API key".into());
    }
    if contains_key_shape(&log) {
        return Err("revaerd.log contains something shaped like an API key (rvk_ + 64 hex)".into());
    }
    let data = ops.data.display().to_string();
    let masked = strip_ansi(&log).replace(&data, "<data>");
    std::fs::write(ops.log_path(), &masked)?;
    Ok(format!(
        "\n`revaerd.log`: {} lines; checked for the {} API keys used in the run and for anything shaped like a key (`rvk_` + 64 hex): none found. The temporary data dir is shown as `<data>`.\n",
        masked.lines().count(),
        ops.secrets.len()
    ))
}

/// `text` without ANSI escape sequences (`ESC [ ... letter`).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
