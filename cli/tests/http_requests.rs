//! Every command against a mock API: the exact HTTP request it sends (method,
//! path, query, body, key, `traceparent`) and what it makes of the answer,
//! including the exit code of each class of error.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{
    ID, ID2, KEY, detail, exact, health, key_summary, problem, revaer, revaer_at, torrent,
};
use std::os::unix::fs::PermissionsExt as _;

use httpmock::prelude::*;
use serde_json::json;

#[test]
fn ls_sends_every_filter_once_and_prints_the_page() {
    let server = MockServer::start();
    let page = json!({"items": [torrent(ID, "debian", "downloading", 0.5)], "next": "00ff", "stale": false});
    let mock = server.mock(|when, then| {
        exact(
            when,
            GET,
            "/v1/torrents",
            &[
                ("limit", "10"),
                ("state", "downloading,seeding"),
                ("tracker", "tracker.example.org"),
                ("extension", "mkv,nfo"),
                ("tags", "tv,hd"),
                ("name", "show"),
            ],
        );
        then.status(200).json_body(page.clone());
    });
    let run = revaer_at(
        &server,
        &[
            "--output",
            "json",
            "ls",
            "--limit",
            "10",
            "--state",
            "downloading,seeding",
            "--tracker",
            "Tracker.Example.org",
            "--extension",
            "mkv",
            "--extension",
            ".NFO",
            "--tag",
            "tv",
            "--tag",
            "hd",
            "--name",
            "show",
        ],
    );
    mock.assert();
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.json(), page);
}

#[test]
fn ls_all_follows_next_to_the_last_page() {
    let server = MockServer::start();
    let first = server.mock(|when, then| {
        exact(
            when,
            GET,
            "/v1/torrents",
            &[("limit", "500"), ("state", "seeding")],
        );
        then.status(200).json_body(json!({
            "items": [torrent(ID, "a", "seeding", 1.0)], "next": "00aa", "stale": false
        }));
    });
    let second = server.mock(|when, then| {
        exact(
            when,
            GET,
            "/v1/torrents",
            &[("limit", "500"), ("cursor", "00aa"), ("state", "seeding")],
        );
        then.status(200).json_body(json!({
            "items": [torrent(ID2, "b", "seeding", 1.0)], "next": null, "stale": true
        }));
    });
    let run = revaer_at(
        &server,
        &["--output", "json", "ls", "--all", "--state", "seeding"],
    );
    first.assert();
    second.assert();
    assert_eq!(run.code, 0, "{run:?}");
    let body = run.json();
    assert_eq!(body["items"].as_array().unwrap().len(), 2);
    assert_eq!(body["items"][1]["id"], ID2);
    assert_eq!(body["next"], json!(null));
    assert_eq!(body["stale"], true);
}

#[test]
fn ls_table_points_to_the_next_page_and_says_when_empty() {
    let server = MockServer::start();
    server.mock(|when, then| {
        exact(when, GET, "/v1/torrents", &[("cursor", "00bb")]);
        then.status(200)
            .json_body(json!({"items": [], "next": null, "stale": true}));
    });
    server.mock(|when, then| {
        exact(when, GET, "/v1/torrents", &[]);
        then.status(200).json_body(
            json!({"items": [torrent(ID, "a", "error", 0.1)], "next": "00bb", "stale": false}),
        );
    });
    let run = revaer_at(&server, &["--output", "table", "ls"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.out.contains(ID), "{}", run.out);
    assert!(run.err.contains("revaer ls --cursor 00bb"), "{}", run.err);
    let run = revaer_at(&server, &["--output", "table", "ls", "--cursor", "00bb"]);
    assert_eq!(run.out, "No torrents.\n");
    assert!(run.err.contains("last known state"));
}

#[test]
fn status_prints_the_detail() {
    let server = MockServer::start();
    let d = detail(ID, "downloading", 0.5);
    let mock = server.mock(|when, then| {
        exact(when, GET, &format!("/v1/torrents/{ID}"), &[]);
        then.status(200).json_body(d.clone());
    });
    // Upper-case ids are accepted and normalised.
    let run = revaer_at(&server, &["--output", "json", "status", &ID.to_uppercase()]);
    mock.assert();
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.json(), d);
}

#[test]
fn status_follow_redraws_until_complete() {
    let server = MockServer::start();
    let path = format!("/v1/torrents/{ID}");
    let downloading = server.mock(|when, then| {
        exact(when, GET, &path, &[]);
        then.status(200).json_body(detail(ID, "downloading", 0.5));
    });
    downloading.up_to_n_times(1);
    let busy = server.mock(|when, then| {
        exact(when, GET, &path, &[]);
        then.status(503)
            .header("retry-after", "0")
            .header("content-type", "application/problem+json")
            .json_body(problem(503, "Service Unavailable", "engine restarting"));
    });
    busy.up_to_n_times(1);
    let done = server.mock(|when, then| {
        exact(when, GET, &path, &[]);
        then.status(200).json_body(detail(ID, "seeding", 1.0));
    });
    let run = revaer_at(
        &server,
        &[
            "--output",
            "table",
            "status",
            ID,
            "--follow",
            "--interval",
            "100ms",
            "--max-backoff",
            "100ms",
        ],
    );
    assert_eq!(run.code, 0, "{run:?}");
    downloading.assert_calls(1);
    busy.assert_calls(1);
    done.assert_calls(1);
    let lines: Vec<&str> = run.out.lines().collect();
    assert_eq!(lines.len(), 2, "{}", run.out);
    assert!(lines[0].starts_with("downloading  50.0%"), "{}", lines[0]);
    assert!(lines[1].starts_with("seeding  100.0%"), "{}", lines[1]);
    assert!(run.err.contains("Complete: debian-12.5.0-amd64"));

    // JSON: one document per change.
    let run = revaer_at(&server, &["--output", "json", "status", ID, "--follow"]);
    assert_eq!(run.code, 0, "{run:?}");
    let doc: serde_json::Value = serde_json::from_str(run.out.trim()).unwrap();
    assert_eq!(doc["state"], "seeding");
}

#[test]
fn status_follow_stops_on_removal_and_on_error() {
    let server = MockServer::start();
    server.mock(|when, then| {
        exact(when, GET, &format!("/v1/torrents/{ID}"), &[]);
        then.status(404)
            .json_body(problem(404, "Not Found", "no torrent 0123"));
    });
    let mut broken = detail(ID2, "error", 0.3);
    broken["error"] = json!("disk full");
    server.mock(|when, then| {
        exact(when, GET, &format!("/v1/torrents/{ID2}"), &[]);
        then.status(200).json_body(broken.clone());
    });
    let run = revaer_at(&server, &["status", ID, "--follow"]);
    assert_eq!(run.code, 4, "{run:?}");
    let run = revaer_at(&server, &["status", ID2, "--follow"]);
    assert_eq!(run.code, 7, "{run:?}");
    assert!(run.err.contains("disk full"));
}

#[test]
fn add_sends_a_magnet_as_json() {
    let server = MockServer::start();
    let magnet = format!("magnet:?xt=urn:btih:{ID}&dn=debian");
    let mock = server.mock(|when, then| {
        exact(when, POST, "/v1/torrents", &[])
            .header("content-type", "application/json")
            .json_body(json!({
                "magnet": magnet,
                "tags": ["linux", "iso"],
                "category": "distros",
                "paused": true,
                "sequential": true,
                "save_path": "isos/debian"
            }));
        then.status(201)
            .header("location", format!("/v1/torrents/{ID}"))
            .json_body(json!({"id": ID}));
    });
    let run = revaer_at(
        &server,
        &[
            "--output",
            "json",
            "add",
            &magnet,
            "--tag",
            "linux,iso",
            "--category",
            "distros",
            "--paused",
            "--sequential",
            "--save-path",
            "isos/debian",
        ],
    );
    mock.assert();
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.json(), json!({"id": ID}));
}

#[test]
fn add_uploads_a_torrent_file_as_multipart() {
    let dir = std::env::temp_dir().join(format!("revaer-cli-add-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("debian.torrent");
    std::fs::write(&file, b"d4:infod4:name6:debianee").unwrap();
    let server = MockServer::start();
    let with_options = server.mock(|when, then| {
        exact(when, POST, "/v1/torrents", &[])
            .header_includes("content-type", "multipart/form-data; boundary=")
            .body_includes("name=\"torrent\"; filename=\"debian.torrent\"")
            .body_includes("Content-Type: application/x-bittorrent")
            .body_includes("d4:infod4:name6:debianee")
            .body_includes("name=\"options\"")
            .body_includes(r#"{"paused":true,"sequential":false,"tags":["tv"]}"#);
        then.status(201).json_body(json!({"id": ID}));
    });
    let run = revaer_at(
        &server,
        &[
            "--output",
            "table",
            "add",
            file.to_str().unwrap(),
            "--tag",
            "tv",
            "--paused",
        ],
    );
    with_options.assert();
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.out, format!("Added {ID}\n"));

    let plain = server.mock(|when, then| {
        exact(when, POST, "/v1/torrents", &[])
            .body_includes("d4:infod4:name6:debianee")
            .body_excludes("name=\"options\"");
        then.status(409)
            .json_body(problem(409, "Conflict", "the torrent is already present"));
    });
    let run = revaer_at(&server, &["add", file.to_str().unwrap()]);
    plain.assert();
    assert_eq!(run.code, 4, "{run:?}");
    assert!(run.err.contains("Conflict (HTTP 409)"));

    // Refused locally: not a .torrent, missing file, bad magnet.
    std::fs::write(&file, b"<html>").unwrap();
    assert_eq!(revaer_at(&server, &["add", file.to_str().unwrap()]).code, 2);
    assert_eq!(revaer_at(&server, &["add", "/nonexistent.torrent"]).code, 2);
    assert_eq!(revaer_at(&server, &["add", "magnet:xt"]).code, 2);
    assert_eq!(
        revaer_at(&server, &["add", "magnet:?x", "--tag", "a,"]).code,
        2
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn select_checks_rules_locally_then_submits_them() {
    let server = MockServer::start();
    let path = format!("/v1/torrents/{ID}");
    let get = server.mock(|when, then| {
        exact(when, GET, &path, &[]);
        then.status(200).json_body(detail(ID, "downloading", 0.5));
    });
    let post = server.mock(|when, then| {
        exact(when, POST, &format!("{path}/select"), &[]).json_body(json!({"rules": [
            {"glob": "*", "priority": 0},
            {"glob": "*.iso", "priority": 7},
            {"glob": "*SUMS", "priority": 7},
            {"glob": "*.nfo", "priority": 0}
        ]}));
        then.status(204);
    });
    let run = revaer_at(
        &server,
        &[
            "--output",
            "json",
            "select",
            ID,
            "--only",
            "*.iso",
            "--only",
            "*SUMS",
            "--skip",
            "*.nfo",
            "--priority",
            "7",
        ],
    );
    assert_eq!(run.code, 0, "{run:?}");
    get.assert();
    post.assert();
    let out = run.json();
    assert_eq!(out["applied"], true);
    let prio: Vec<u64> = out["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["priority"].as_u64().unwrap())
        .collect();
    assert_eq!(prio, vec![7, 7, 0]);

    // --dry-run sends nothing; JSON rules from --json and --file.
    let run = revaer_at(
        &server,
        &[
            "select",
            ID,
            "--json",
            r#"[{"index": 2, "priority": 1}]"#,
            "--dry-run",
        ],
    );
    assert_eq!(run.code, 0, "{run:?}");
    post.assert_calls(1);
    let dir = std::env::temp_dir().join(format!("revaer-cli-rules-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let rules = dir.join("rules.json");
    std::fs::write(&rules, r#"{"rules": [{"index": 2, "priority": 4}]}"#).unwrap();
    let by_file = server.mock(|when, then| {
        exact(when, POST, &format!("{path}/select"), &[])
            .json_body(json!({"rules": [{"index": 2, "priority": 4}]}));
        then.status(204);
    });
    let run = revaer_at(&server, &["select", ID, "--file", rules.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{run:?}");
    by_file.assert();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn select_refuses_rules_that_do_not_fit_before_sending_them() {
    let server = MockServer::start();
    let path = format!("/v1/torrents/{ID}");
    server.mock(|when, then| {
        exact(when, GET, &path, &[]);
        then.status(200).json_body(detail(ID, "downloading", 0.5));
    });
    let post = server.mock(|when, then| {
        when.method(POST);
        then.status(204);
    });
    let run = revaer_at(&server, &["select", ID, "--skip", "*.mkv"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.err.contains("--skip *.mkv: `*.mkv` matches no file"),
        "{}",
        run.err
    );
    let run = revaer_at(
        &server,
        &["select", ID, "--json", r#"[{"index": 7, "priority": 9}]"#],
    );
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.err.contains("/rules/0/index: no file has index 7"),
        "{}",
        run.err
    );
    assert!(
        run.err.contains("/rules/0/priority: must be 0 to 7"),
        "{}",
        run.err
    );
    assert_eq!(revaer_at(&server, &["select", ID, "--json", "{"]).code, 2);
    assert_eq!(revaer_at(&server, &["select", ID]).code, 2);
    post.assert_calls(0);

    // No metadata yet: the files are unknown (exit 4, like the API's 409).
    let mut magnet = detail(ID2, "downloading_metadata", 0.0);
    magnet["has_metadata"] = json!(false);
    magnet["files"] = json!([]);
    server.mock(|when, then| {
        exact(when, GET, &format!("/v1/torrents/{ID2}"), &[]);
        then.status(200).json_body(magnet.clone());
    });
    let run = revaer_at(&server, &["select", ID2, "--only", "*.iso"]);
    assert_eq!(run.code, 4, "{run:?}");
    assert!(run.err.contains("metadata"));
}

#[test]
fn every_action_sends_its_documented_body() {
    let server = MockServer::start();
    let path = format!("/v1/torrents/{ID}/action");
    let cases: Vec<(Vec<&str>, serde_json::Value)> = vec![
        (vec!["pause"], json!({"action": "pause"})),
        (vec!["resume"], json!({"action": "resume"})),
        (vec!["remove"], json!({"action": "remove"})),
        (vec!["remove-data"], json!({"action": "remove_data"})),
        (vec!["reannounce"], json!({"action": "reannounce"})),
        (vec!["recheck"], json!({"action": "recheck"})),
        (vec!["fsops-retry"], json!({"action": "fsops_retry"})),
        (
            vec!["sequential", "on"],
            json!({"action": "sequential", "enabled": true}),
        ),
        (
            vec!["sequential", "off"],
            json!({"action": "sequential", "enabled": false}),
        ),
        (
            vec!["rate", "--down", "5MiB/s", "--up", "1MiB/s"],
            json!({"action": "rate", "download_bps": 5_242_880, "upload_bps": 1_048_576}),
        ),
        (
            vec!["rate", "--down", "unlimited", "--up", "500kB/s"],
            json!({"action": "rate", "download_bps": null, "upload_bps": 500_000}),
        ),
    ];
    for (args, body) in cases {
        let mut mock = server.mock(|when, then| {
            exact(when, POST, &path, &[]).json_body(body.clone());
            then.status(204);
        });
        let mut all = vec!["--output", "json", "action", ID];
        all.extend(args.iter().copied());
        let run = revaer_at(&server, &all);
        assert_eq!(run.code, 0, "{args:?}: {run:?}");
        mock.assert();
        assert_eq!(run.json(), json!({"id": ID, "action": body}));
        mock.delete();
    }
}

#[test]
fn a_rate_for_one_side_keeps_the_other_sides_limit() {
    let server = MockServer::start();
    let get = server.mock(|when, then| {
        exact(when, GET, &format!("/v1/torrents/{ID}"), &[]);
        then.status(200).json_body(detail(ID, "downloading", 0.5));
    });
    let post = server.mock(|when, then| {
        exact(when, POST, &format!("/v1/torrents/{ID}/action"), &[]).json_body(json!({
            "action": "rate", "download_bps": 5_242_880, "upload_bps": 2_000_000
        }));
        then.status(204);
    });
    let run = revaer_at(
        &server,
        &["--output", "table", "action", ID, "rate", "--up", "2MB/s"],
    );
    assert_eq!(run.code, 0, "{run:?}");
    get.assert();
    post.assert();
    assert_eq!(
        run.out,
        format!("Limits down 5.0 MiB/s, up 1.9 MiB/s for {ID}\n")
    );
    // Invalid rates never leave the machine.
    for bad in ["0", "fast", "3GiB/s"] {
        assert_eq!(
            revaer_at(&server, &["action", ID, "rate", "--down", bad]).code,
            2
        );
    }
    assert_eq!(revaer_at(&server, &["action", ID, "rate"]).code, 2);
    post.assert_calls(1);
}

#[test]
fn label_patches_tags_and_category() {
    let server = MockServer::start();
    let path = format!("/v1/torrents/{ID}");
    let set = server.mock(|when, then| {
        exact(when, PATCH, &path, &[])
            .json_body(json!({"tags": ["tv", "hd"], "category": "shows"}));
        then.status(200)
            .json_body(torrent(ID, "show", "seeding", 1.0));
    });
    let run = revaer_at(
        &server,
        &[
            "--output",
            "json",
            "label",
            ID,
            "--tag",
            "tv,hd",
            "--category",
            "shows",
        ],
    );
    assert_eq!(run.code, 0, "{run:?}");
    set.assert();
    assert_eq!(run.json()["id"], ID);
    let clear = server.mock(|when, then| {
        exact(when, PATCH, &path, &[]).json_body(json!({"tags": [], "category": ""}));
        then.status(204);
    });
    let run = revaer_at(
        &server,
        &[
            "--output",
            "json",
            "label",
            ID,
            "--no-tags",
            "--category",
            "",
        ],
    );
    assert_eq!(run.code, 0, "{run:?}");
    clear.assert();
    assert_eq!(run.json(), json!({"id": ID, "tags": [], "category": ""}));
    assert_eq!(revaer_at(&server, &["label", ID]).code, 2);
}

#[test]
#[allow(clippy::too_many_lines, reason = "one scenario, step by step")]
fn keys_issue_list_rotate_and_revoke() {
    let server = MockServer::start();
    let secret = format!("rvk_{}", "ab".repeat(32));
    let created = {
        let mut k = key_summary("0a1b2c3d4e5f", "ci", "read");
        k["rate_per_minute"] = json!(600);
        k["key"] = json!(secret);
        k
    };
    let issue = server.mock(|when, then| {
        exact(when, POST, "/v1/keys", &[])
            .json_body(json!({"name": "ci", "scope": "read", "rate_per_minute": 600}));
        then.status(201).json_body(created.clone());
    });
    let run = revaer_at(
        &server,
        &[
            "--output",
            "json",
            "keys",
            "issue",
            "--name",
            "ci",
            "--scope",
            "read",
            "--rate-per-minute",
            "600",
        ],
    );
    assert_eq!(run.code, 0, "{run:?}");
    issue.assert();
    assert_eq!(run.json(), created);

    // --save-to: the secret goes to a new 0600 file, not to stdout.
    let dir = std::env::temp_dir().join(format!("revaer-cli-keys-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("ci.key");
    let rotate = server.mock(|when, then| {
        exact(when, POST, "/v1/keys/0a1b2c3d4e5f/rotate", &[])
            .json_body(json!({"grace_seconds": 600}));
        then.status(200).json_body(created.clone());
    });
    let run = revaer_at(
        &server,
        &[
            "--output",
            "json",
            "keys",
            "rotate",
            "0a1b2c3d4e5f",
            "--grace",
            "10m",
            "--save-to",
            file.to_str().unwrap(),
        ],
    );
    assert_eq!(run.code, 0, "{run:?}");
    rotate.assert();
    assert!(!run.out.contains(&secret), "{}", run.out);
    assert_eq!(run.json()["saved_to"], file.to_str().unwrap());
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        format!("{secret}\n")
    );
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // An existing file is never overwritten, and then nothing is issued.
    let run = revaer_at(
        &server,
        &[
            "keys",
            "issue",
            "--name",
            "ci",
            "--scope",
            "read",
            "--save-to",
            file.to_str().unwrap(),
        ],
    );
    assert_eq!(run.code, 2, "{run:?}");
    issue.assert_calls(1);
    let _ = std::fs::remove_dir_all(&dir);

    let list = server.mock(|when, then| {
        exact(when, GET, "/v1/keys", &[]);
        then.status(200)
            .json_body(json!([key_summary("0a1b2c3d4e5f", "ci", "read")]));
    });
    let run = revaer_at(&server, &["--output", "json", "keys", "ls"]);
    assert_eq!(run.code, 0, "{run:?}");
    list.assert();
    assert_eq!(run.json()[0]["name"], "ci");

    let revoke = server.mock(|when, then| {
        exact(when, DELETE, "/v1/keys/0a1b2c3d4e5f", &[]);
        then.status(204);
    });
    let run = revaer_at(
        &server,
        &["--output", "json", "keys", "revoke", "0a1b2c3d4e5f"],
    );
    assert_eq!(run.code, 0, "{run:?}");
    revoke.assert();
    assert_eq!(run.json(), json!({"id": "0a1b2c3d4e5f", "revoked": true}));
    assert_eq!(revaer_at(&server, &["keys", "revoke", "../x"]).code, 2);
    assert_eq!(
        revaer_at(
            &server,
            &["keys", "issue", "--name", "x", "--scope", "root"]
        )
        .code,
        2
    );
}

#[test]
fn health_prints_the_document_and_exits_5_when_degraded() {
    let server = MockServer::start();
    let mut ok = server.mock(|when, then| {
        exact(when, GET, "/health/full", &[]);
        then.status(200).json_body(health(&[]));
    });
    let run = revaer_at(&server, &["health"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.json(), health(&[]));
    ok.delete();
    server.mock(|when, then| {
        exact(when, GET, "/health/full", &[]);
        then.status(503).json_body(health(&["engine"]));
    });
    let run = revaer_at(&server, &["health"]);
    assert_eq!(run.code, 5, "{run:?}");
    assert_eq!(run.json()["degraded"], json!(["engine"]));
    assert!(run.err.contains("degraded: engine"));
}

#[test]
fn each_error_class_has_its_exit_code_and_problems_are_printed_in_full() {
    let cases = [
        (400, 2),
        (413, 2),
        (415, 2),
        (422, 2),
        (401, 3),
        (403, 3),
        (404, 4),
        (409, 4),
        (429, 5),
        (502, 5),
        (503, 5),
        (500, 7),
    ];
    for (status, code) in cases {
        let server = MockServer::start();
        server.mock(|when, then| {
            exact(when, GET, &format!("/v1/torrents/{ID}"), &[]);
            then.status(status)
                .header("content-type", "application/problem+json")
                .header("retry-after", "7")
                .json_body(json!({
                    "type": "about:blank",
                    "title": "Something",
                    "status": status,
                    "detail": format!("it went wrong; the key was {KEY}"),
                    "invalid_params": [{"pointer": "/path/id", "message": "bad id"}]
                }));
        });
        let run = revaer_at(&server, &["status", ID]);
        assert_eq!(run.code, code, "HTTP {status}: {run:?}");
        assert!(
            run.err.contains(&format!("Something (HTTP {status})")),
            "{}",
            run.err
        );
        assert!(run.err.contains("/path/id: bad id"), "{}", run.err);
        assert!(run.err.contains("retry after 7 s"), "{}", run.err);
        assert!(run.err.contains("rvk_…eeff"), "{}", run.err);
    }
    // A non-problem error body still says what happened.
    let server = MockServer::start();
    server.mock(|when, then| {
        when.any_request();
        then.status(502).body("bad gateway from the proxy");
    });
    let run = revaer_at(&server, &["ls"]);
    assert_eq!(run.code, 5);
    assert!(
        run.err
            .contains("Bad Gateway (HTTP 502)\n  bad gateway from the proxy"),
        "{}",
        run.err
    );
    // A 200 that breaks the contract.
    let server = MockServer::start();
    server.mock(|when, then| {
        when.any_request();
        then.status(200).body("{\"items\": 3}");
    });
    let run = revaer_at(&server, &["ls"]);
    assert_eq!(run.code, 7, "{run:?}");
    assert!(run.err.contains("unexpected answer"));
    // Nothing listening: transport (6).
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let run = revaer(&["--api-url", &url, "--api-key", KEY, "--timeout", "2", "ls"]);
    assert_eq!(run.code, 6, "{run:?}");
    assert!(run.err.contains("cannot reach"));
    // Usage errors (2): clap's and ours.
    assert_eq!(revaer(&["ls", "--limit", "0"]).code, 2);
    assert_eq!(revaer(&["status", "nothex"]).code, 2);
    assert_eq!(revaer(&["--api-url", "ftp://x", "ls"]).code, 2);
    assert_eq!(revaer(&["frobnicate"]).code, 2);
    let help = revaer(&["--help"]);
    assert_eq!(help.code, 0);
    assert!(help.out.contains("Exit codes:"));
}

#[test]
fn keys_come_from_flag_then_file_then_environment_and_are_never_shown() {
    let server = MockServer::start();
    let dir = std::env::temp_dir().join(format!("revaer-cli-keyfile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("admin.key");
    std::fs::write(&file, format!("{KEY}\n")).unwrap();
    let mock = server.mock(|when, then| {
        exact(when, GET, "/v1/keys", &[]);
        then.status(200).json_body(json!([]));
    });
    let url = server.base_url();
    let run = revaer(&[
        "--api-url",
        &url,
        "--api-key-file",
        file.to_str().unwrap(),
        "-v",
        "keys",
        "ls",
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    mock.assert();
    assert!(run.err.contains("GET http://"), "verbose log: {}", run.err);

    // No key at all: the API's 401 comes with a hint.
    server.mock(|when, then| {
        when.method(GET)
            .path("/v1/torrents")
            .header_missing("authorization");
        then.status(401)
            .json_body(problem(401, "Unauthorized", "missing API key"));
    });
    let run = revaer(&["--api-url", &url, "ls"]);
    assert_eq!(run.code, 3, "{run:?}");
    assert!(run.err.contains("hint: give a key"), "{}", run.err);

    std::fs::write(&file, "\n").unwrap();
    assert_eq!(
        revaer(&[
            "--api-url",
            &url,
            "--api-key-file",
            file.to_str().unwrap(),
            "ls"
        ])
        .code,
        2
    );
    assert_eq!(
        revaer(&[
            "--api-url",
            &url,
            "--api-key-file",
            "/nonexistent/key",
            "ls"
        ])
        .code,
        2
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn completions_and_man_pages_are_generated() {
    let run = revaer(&["completions", "bash"]);
    assert_eq!(run.code, 0);
    assert!(run.out.contains("revaer"));
    assert!(run.out.contains("tail"));
    let run = revaer(&["man"]);
    assert_eq!(run.code, 0);
    assert!(run.out.starts_with(".ie"), "{}", &run.out[..40]);
    let dir = std::env::temp_dir().join(format!("revaer-cli-man-{}", std::process::id()));
    let run = revaer(&["man", "--out-dir", dir.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(dir.join("revaer.1").exists());
    assert!(dir.join("revaer-tail.1").exists());
    let _ = std::fs::remove_dir_all(&dir);
}
