//! What people and scripts see: `insta` snapshots of table and JSON output
//! for fixed API answers (every field deterministic, no clocks).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{ID, ID2, KEY, detail, exact, health, key_summary, revaer_width, torrent};
use std::fmt::Write as _;

use httpmock::prelude::*;
use serde_json::json;

fn at(server: &MockServer, width: usize, args: &[&str]) -> common::Run {
    let url = server.base_url();
    let mut all = vec!["--api-url", url.as_str(), "--api-key", KEY];
    all.extend_from_slice(args);
    revaer_width(Some(width), &all)
}

fn list_server() -> MockServer {
    let server = MockServer::start();
    let mut second = torrent(
        ID2,
        "Big.Buck.Bunny.2008.1080p.BluRay.x264-GROUP",
        "seeding",
        1.0,
    );
    second["tags"] = json!(["movies"]);
    second["download_bps"] = json!(0);
    second["category"] = json!(null);
    server.mock(|when, then| {
        exact(when, GET, "/v1/torrents", &[]);
        then.status(200).json_body(json!({
            "items": [torrent(ID, "debian-12.5.0-amd64-netinst.iso", "downloading", 0.5), second],
            "next": null,
            "stale": false
        }));
    });
    server
}

#[test]
fn ls_table() {
    let server = list_server();
    let run = at(&server, 140, &["--output", "table", "ls"]);
    assert_eq!(run.code, 0, "{run:?}");
    insta::assert_snapshot!("ls_table", run.out);
}

#[test]
fn ls_table_fits_a_narrow_terminal() {
    let server = list_server();
    let run = at(&server, 80, &["--output", "table", "ls"]);
    assert!(
        run.out.lines().all(|l| l.chars().count() <= 80),
        "{}",
        run.out
    );
    insta::assert_snapshot!("ls_table_80_columns", run.out);
}

#[test]
fn ls_json() {
    let server = list_server();
    let run = at(&server, 100, &["--output", "json", "ls"]);
    insta::assert_snapshot!("ls_json", run.out);
}

fn detail_server() -> MockServer {
    let server = MockServer::start();
    let mut d = detail(ID, "downloading", 0.5);
    d["fsops_job"] = json!({
        "state": "failed", "step": "move", "attempts": 2, "updated_at": 1_700_000_100,
        "steps": [{"step": "verify", "outcome": "ok"}], "library_path": null, "error": "disk full"
    });
    server.mock(|when, then| {
        exact(when, GET, &format!("/v1/torrents/{ID}"), &[]);
        then.status(200).json_body(d.clone());
    });
    server
}

#[test]
fn status_table() {
    let run = at(&detail_server(), 100, &["--output", "table", "status", ID]);
    assert_eq!(run.code, 0, "{run:?}");
    insta::assert_snapshot!("status_table", run.out);
}

#[test]
fn status_json() {
    let run = at(&detail_server(), 100, &["--output", "json", "status", ID]);
    insta::assert_snapshot!("status_json", run.out);
}

#[test]
fn select_dry_run_table_and_json() {
    let server = detail_server();
    let run = at(
        &server,
        100,
        &[
            "--output",
            "table",
            "select",
            ID,
            "--only",
            "*.iso",
            "--dry-run",
        ],
    );
    assert_eq!(run.code, 0, "{run:?}");
    insta::assert_snapshot!("select_dry_run_table", run.out);
    let run = at(
        &server,
        100,
        &[
            "--output",
            "json",
            "select",
            ID,
            "--skip",
            "*SUMS",
            "--dry-run",
        ],
    );
    insta::assert_snapshot!("select_dry_run_json", run.out);
}

#[test]
fn keys_tables() {
    let server = MockServer::start();
    let mut revoked = key_summary("ffeeddccbbaa", "old laptop", "admin");
    revoked["revoked_at"] = json!(1_700_086_400);
    revoked["rate_per_minute"] = json!(60);
    server.mock(|when, then| {
        exact(when, GET, "/v1/keys", &[]);
        then.status(200).json_body(json!([
            key_summary("0a1b2c3d4e5f", "bootstrap", "admin"),
            revoked
        ]));
    });
    let mut created = key_summary("0a1b2c3d4e5f", "ci", "read");
    created["key"] = json!(format!("rvk_{}", "cd".repeat(32)));
    server.mock(|when, then| {
        exact(when, POST, "/v1/keys", &[]);
        then.status(201).json_body(created.clone());
    });
    let run = at(&server, 100, &["--output", "table", "keys", "ls"]);
    insta::assert_snapshot!("keys_ls_table", run.out);
    let run = at(
        &server,
        100,
        &[
            "--output", "table", "keys", "issue", "--name", "ci", "--scope", "read",
        ],
    );
    insta::assert_snapshot!("keys_issue_table", run.out);
}

#[test]
fn health_tables() {
    let server = MockServer::start();
    let mut ok = server.mock(|when, then| {
        exact(when, GET, "/health/full", &[]);
        then.status(200).json_body(health(&[]));
    });
    let run = at(&server, 120, &["--output", "table", "health"]);
    insta::assert_snapshot!("health_ok_table", run.out);
    ok.delete();
    server.mock(|when, then| {
        exact(when, GET, "/health/full", &[]);
        then.status(503).json_body(health(&["engine"]));
    });
    let run = at(&server, 120, &["--output", "table", "health"]);
    assert_eq!(run.code, 5);
    insta::assert_snapshot!("health_degraded_table", run.out);
}

#[test]
fn tail_lines() {
    let server = MockServer::start();
    let events = [
        json!({"type": "torrent_added", "torrent": ID, "name": "debian", "state": "downloading_metadata"}),
        json!({"type": "metadata_received", "torrent": ID, "name": "debian-12.5.0"}),
        json!({"type": "files_selected", "torrent": ID, "priorities": [4, 0, 4]}),
        json!({"type": "progress", "torrent": ID, "state": "downloading", "progress": 0.25,
               "download_bps": 2_097_152, "upload_bps": 1024, "peers": 7, "seeds": 3,
               "size_wanted": 100, "size_done": 25, "downloaded": 25, "uploaded": 1}),
        json!({"type": "torrent_error", "torrent": ID, "source": "tracker", "message": "timed out",
               "url": "udp://t.example:6969"}),
        json!({"type": "state_changed", "torrent": ID, "state": "seeding"}),
        json!({"type": "completed", "torrent": ID}),
        json!({"type": "fsops_step", "torrent": ID, "step": "move", "outcome": "ok"}),
        json!({"type": "fsops_failed", "torrent": ID, "step": "link", "message": "EXDEV"}),
        json!({"type": "health_changed", "status": "degraded", "degraded": ["engine"]}),
        json!({"type": "health_changed", "status": "ok", "degraded": []}),
        json!({"type": "config_applied", "revision": 4}),
        json!({"type": "key_issued", "key_id": "0a1b", "name": "ci", "scope": "read", "rotated": true, "by": "ffee"}),
        json!({"type": "key_revoked", "key_id": "0a1b", "by": "ffee"}),
        json!({"type": "rate_limited", "key_id": "0a1b"}),
        json!({"type": "torrent_removed", "torrent": ID}),
    ];
    let mut body = String::from("retry: 1000\n\n");
    for (i, e) in events.iter().enumerate() {
        let id = i + 1;
        let data = json!({"id": id, "at": 1_700_000_000 + i, "event": e});
        let _ = write!(
            body,
            "id: {id}\nevent: {}\ndata: {data}\n\n",
            e["type"].as_str().unwrap()
        );
    }
    server.mock(|when, then| {
        exact(when, GET, "/v1/events", &[]);
        then.status(200)
            .header("content-type", "text/event-stream")
            .body(body.clone());
    });
    let count = events.len().to_string();
    let run = at(
        &server,
        100,
        &["--output", "table", "tail", "--no-state", "--count", &count],
    );
    assert_eq!(run.code, 0, "{run:?}");
    insta::assert_snapshot!("tail_table", run.out);
    let run = at(
        &server,
        100,
        &["--output", "json", "tail", "--no-state", "--count", "3"],
    );
    insta::assert_snapshot!("tail_json", run.out);
}

#[test]
fn problems_on_stderr() {
    let server = MockServer::start();
    server.mock(|when, then| {
        when.any_request();
        then.status(400).json_body(json!({
            "type": "about:blank",
            "title": "Bad Request",
            "status": 400,
            "detail": "2 invalid parameters",
            "invalid_params": [
                {"pointer": "/query/limit", "message": "must be 1 to 500"},
                {"pointer": "/query/state", "message": "unknown state `sleeping`"}
            ]
        }));
    });
    let run = at(&server, 100, &["ls"]);
    assert_eq!(run.code, 2);
    insta::assert_snapshot!("problem_stderr", run.err);
}
