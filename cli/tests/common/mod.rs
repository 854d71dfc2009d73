//! Shared by the CLI's tests: running `revaer` in-process with captured
//! output, and API documents as the daemon would send them.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use httpmock::prelude::*;
use serde_json::{Value, json};

/// The key every test authenticates with; it must never be printed.
pub const KEY: &str = "rvk_00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
/// A torrent id.
pub const ID: &str = "0123456789abcdef0123456789abcdef01234567";
/// Another one.
pub const ID2: &str = "89abcdef0123456789abcdef0123456789abcdef";

/// What a run produced.
#[derive(Debug)]
pub struct Run {
    pub code: u8,
    pub out: String,
    pub err: String,
}

impl Run {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.out).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}): {}\nstderr: {}",
                self.out, self.err
            )
        })
    }
}

/// Runs `revaer <args>` in-process with a 100-column, non-terminal stdout.
pub fn revaer(args: &[&str]) -> Run {
    revaer_width(Some(100), args)
}

/// Runs `revaer <args>` in-process with `width` columns.
pub fn revaer_width(width: Option<usize>, args: &[&str]) -> Run {
    let (io, out, err) = revaer_cli::output::Io::capture(width);
    let code = revaer_cli::run(std::iter::once("revaer").chain(args.iter().copied()), &io);
    let run = Run {
        code,
        out: out.text(),
        err: err.text(),
    };
    assert!(
        !run.out.contains(KEY) && !run.err.contains(KEY),
        "the key leaked: {run:?}"
    );
    run
}

/// `revaer --api-url <server> --api-key KEY <args>`.
pub fn revaer_at(server: &MockServer, args: &[&str]) -> Run {
    let url = server.base_url();
    let mut all = vec!["--api-url", url.as_str(), "--api-key", KEY];
    all.extend_from_slice(args);
    revaer(&all)
}

/// Matches the method and path, the exact query (no more, no less), the
/// bearer key and a well-formed `traceparent`.
pub fn exact(
    when: httpmock::When,
    method: httpmock::Method,
    path: &str,
    query: &[(&str, &str)],
) -> httpmock::When {
    let mut expected: Vec<(String, String)> = query
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    expected.sort();
    when.method(method)
        .path(path)
        .header("authorization", format!("Bearer {KEY}"))
        .is_true(move |req| {
            let mut got = req.query_params();
            got.sort();
            let traceparent_ok = req.headers().get("traceparent").is_some_and(|v| {
                let v = v.to_str().unwrap_or("");
                let parts: Vec<&str> = v.split('-').collect();
                parts.len() == 4
                    && parts[0] == "00"
                    && parts[1].len() == 32
                    && parts[2].len() == 16
                    && (parts[3] == "00" || parts[3] == "01")
            });
            got == expected && traceparent_ok
        })
}

/// A listed torrent.
pub fn torrent(id: &str, name: &str, state: &str, progress: f64) -> Value {
    json!({
        "id": id,
        "name": name,
        "state": state,
        "progress": progress,
        "download_bps": 1_572_864,
        "upload_bps": 65_536,
        "peers": 12,
        "seeds": 4,
        "size_wanted": 734_003_200,
        "size_done": 367_001_600,
        "downloaded": 367_001_600,
        "uploaded": 10_485_760,
        "paused": state == "paused",
        "sequential": false,
        "has_metadata": true,
        "error": null,
        "stalled_reason": null,
        "tags": ["linux", "iso"],
        "category": "distros",
        "added_at": 1_700_000_000,
        "fsops": null
    })
}

/// A torrent's detail.
pub fn detail(id: &str, state: &str, progress: f64) -> Value {
    let mut d = torrent(id, "debian-12.5.0-amd64", state, progress);
    let extra = json!({
        "files": [
            {"index": 0, "path": "debian/debian-12.5.0-amd64-netinst.iso", "size": 659_554_304, "priority": 4, "done": 329_777_152, "progress": 0.5},
            {"index": 1, "path": "debian/SHA256SUMS", "size": 1024, "priority": 4, "done": 1024, "progress": 1.0},
            {"index": 2, "path": "debian/README.nfo", "size": 2048, "priority": 0, "done": 0, "progress": 0.0}
        ],
        "trackers": [
            {"url": "http://tracker.example.org/announce", "status": "working", "message": null, "peers": 40,
             "tier": 0, "next_announce_secs": 1712, "last_error": null, "fails": 0, "seeders": 31, "leechers": 9},
            {"url": "udp://backup.example.net:6969", "status": "error", "message": "timed out", "peers": null,
             "tier": 1, "next_announce_secs": 95, "last_error": "timed out", "fails": 3, "seeders": null, "leechers": null}
        ],
        "piece_length": 262_144,
        "private": false,
        "download_limit_bps": 5_242_880,
        "upload_limit_bps": null,
        "fsops_job": null,
        "stale": false
    });
    for (k, v) in extra.as_object().unwrap() {
        d[k] = v.clone();
    }
    d
}

/// A problem document.
pub fn problem(status: u16, title: &str, detail: &str) -> Value {
    json!({"type": "about:blank", "title": title, "status": status, "detail": detail})
}

/// A key summary.
pub fn key_summary(id: &str, name: &str, scope: &str) -> Value {
    json!({
        "id": id,
        "name": name,
        "scope": scope,
        "rate_per_minute": null,
        "created_at": 1_700_000_000,
        "revoked_at": null
    })
}

/// `/health/full`.
pub fn health(degraded: &[&str]) -> Value {
    let worker = |name: &str, up: bool| {
        json!({
            "up": up,
            "state": if up { "running" } else { "restarting" },
            "pid": if up { json!(4242) } else { json!(null) },
            "restarts": if up { 0 } else { 3 },
            "last_exit": null,
            "reason": if up { json!(null) } else { json!(format!("{name} exited")) },
            "config_revision": 1,
            "sandbox": {
                "no_new_privs": true, "landlock_abi": 7, "landlock_status": "fully_enforced",
                "seccomp": true, "seccomp_denied": [], "capabilities": [], "uid": 65534,
                "gid": 65534, "umask": "077", "core_dumps": false, "inherited_fds_closed": 0
            }
        })
    };
    json!({
        "status": if degraded.is_empty() { "ok" } else { "degraded" },
        "degraded": degraded,
        "workers": {
            "api": worker("api", true),
            "engine": worker("engine", !degraded.contains(&"engine")),
            "fsops": worker("fsops", true)
        },
        "config": {"revision": 1, "watch_latency_ms": 12, "error": null, "failures": 0},
        "store": {"ok": true, "error": null},
        "event_log_head": 42,
        "build": {"version": "0.1.0", "revision": "abc1234"}
    })
}
