//! End-to-end: API keys against the real daemon. Every route but `/health`
//! needs a key (`/health/full` not from loopback); `read` keys cannot
//! write; issue, rotate (grace period) and revoke (refused at once) work;
//! failures are Problem+JSON.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::Daemon;
use serde_json::{Value, json};

fn problem_status(resp: reqwest::blocking::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    (status, resp.json().unwrap())
}

#[test]
fn keys_gate_every_route_and_follow_their_life_cycle() {
    let daemon = Daemon::start();
    daemon.wait_ok();
    let url = daemon.url().unwrap();
    let client = daemon.client();
    let admin = daemon.admin_key();

    // No key, a malformed key, an unknown key: 401 Problem with a challenge.
    let none = client.get(format!("{url}/v1/keys")).send().unwrap();
    assert_eq!(none.headers()["www-authenticate"], "Bearer");
    assert_eq!(problem_status(none).0, 401);
    let bad = client
        .get(format!("{url}/v1/keys"))
        .bearer_auth("nope")
        .send()
        .unwrap();
    assert_eq!(problem_status(bad).0, 401);
    let unknown = client
        .get(format!("{url}/v1/keys"))
        .header("x-revaer-api-key", format!("rvk_{}", "ab".repeat(32)))
        .send()
        .unwrap();
    assert_eq!(problem_status(unknown).0, 401);
    // Liveness and loopback health need none.
    assert_eq!(
        client
            .get(format!("{url}/health"))
            .send()
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    assert_eq!(
        client
            .get(format!("{url}/health/full"))
            .send()
            .unwrap()
            .status()
            .as_u16(),
        200
    );

    // Admin issues a read key; both header forms work.
    let issued: Value = client
        .post(format!("{url}/v1/keys"))
        .header("x-revaer-api-key", &admin)
        .json(&json!({"name": "dashboard", "scope": "read", "rate_per_minute": 600}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let read_key = issued["key"].as_str().unwrap().to_owned();
    assert_eq!(issued["scope"], json!("read"));
    assert_eq!(issued["rate_per_minute"], json!(600));

    // The read key may read but not write.
    let listed: Vec<Value> = client
        .get(format!("{url}/v1/keys"))
        .bearer_auth(&admin)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(listed.len(), 2);
    assert!(
        listed.iter().all(|k| k.get("key").is_none()),
        "secrets are never listed"
    );
    let forbidden = client
        .post(format!("{url}/v1/keys"))
        .bearer_auth(&read_key)
        .json(&json!({"name": "x", "scope": "admin"}))
        .send()
        .unwrap();
    assert_eq!(problem_status(forbidden).0, 403);
    let read_list = client
        .get(format!("{url}/v1/keys"))
        .bearer_auth(&read_key)
        .send()
        .unwrap();
    assert_eq!(
        problem_status(read_list).0,
        403,
        "listing keys is admin-only"
    );

    // Validation failures are Problem+JSON.
    let invalid = client
        .post(format!("{url}/v1/keys"))
        .bearer_auth(&admin)
        .json(&json!({"name": "", "scope": "read"}))
        .send()
        .unwrap();
    assert_eq!(problem_status(invalid).0, 400);
    let wrong_shape = client
        .post(format!("{url}/v1/keys"))
        .bearer_auth(&admin)
        .json(&json!({"name": "x", "scope": "root"}))
        .send()
        .unwrap();
    assert!(matches!(problem_status(wrong_shape).0, 400 | 422));
}

fn issue_read_key(daemon: &Daemon) -> (String, String) {
    let url = daemon.url().unwrap();
    let issued: Value = daemon
        .client()
        .post(format!("{url}/v1/keys"))
        .bearer_auth(daemon.admin_key())
        .json(&json!({"name": "rotating", "scope": "read"}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    (
        issued["key"].as_str().unwrap().to_owned(),
        issued["id"].as_str().unwrap().to_owned(),
    )
}

#[test]
fn rotation_keeps_a_grace_period_and_revocation_is_immediate() {
    let daemon = Daemon::start();
    daemon.wait_ok();
    let url = daemon.url().unwrap();
    let client = daemon.client();
    let admin = daemon.admin_key();
    let (read_key, read_id) = issue_read_key(&daemon);

    // Rotation: new secret works, old one works during the grace period.
    let rotated: Value = client
        .post(format!("{url}/v1/keys/{read_id}/rotate"))
        .bearer_auth(&admin)
        .json(&json!({"grace_seconds": 3600}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let new_key = rotated["key"].as_str().unwrap().to_owned();
    assert_ne!(new_key, read_key);
    for key in [&new_key, &read_key] {
        let ok = client
            .get(format!("{url}/health/full"))
            .bearer_auth(key)
            .send()
            .unwrap();
        assert_eq!(ok.status().as_u16(), 200);
    }

    // Revocation: refused by the very next request.
    let revoked = client
        .delete(format!("{url}/v1/keys/{read_id}"))
        .bearer_auth(&admin)
        .send()
        .unwrap();
    assert_eq!(revoked.status().as_u16(), 204);
    for key in [&new_key, &read_key] {
        let refused = client
            .get(format!("{url}/health/full"))
            .bearer_auth(key)
            .send()
            .unwrap();
        assert_eq!(problem_status(refused).0, 401);
    }
    let again = client
        .delete(format!("{url}/v1/keys/{read_id}"))
        .bearer_auth(&admin)
        .send()
        .unwrap();
    assert_eq!(problem_status(again).0, 404);
}

#[test]
fn keys_survive_an_api_restart() {
    let daemon = Daemon::start();
    let health = daemon.wait_ok();
    let admin = daemon.admin_key();
    common::kill9(Daemon::worker_pid(&health, "api"));
    daemon.wait_health("api back", |code, h| {
        code == 200 && h.workers["api"].restarts == 1
    });
    let url = daemon.url().unwrap();
    let listed = daemon
        .client()
        .get(format!("{url}/v1/keys"))
        .bearer_auth(&admin)
        .send()
        .unwrap();
    assert_eq!(listed.status().as_u16(), 200);
}

#[test]
fn a_key_over_its_rate_gets_429_and_other_keys_are_not_slowed() {
    let daemon = Daemon::start();
    daemon.wait_ok();
    let url = daemon.url().unwrap();
    let client = daemon.client();
    let admin = daemon.admin_key();
    let issued: Value = client
        .post(format!("{url}/v1/keys"))
        .bearer_auth(&admin)
        .json(&json!({"name": "tiny", "scope": "read", "rate_per_minute": 3}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let tiny = issued["key"].as_str().unwrap().to_owned();
    let get = |key: &str| {
        client
            .get(format!("{url}/health/full"))
            .bearer_auth(key)
            .send()
            .unwrap()
    };
    for _ in 0..3 {
        assert_eq!(get(&tiny).status().as_u16(), 200);
    }
    let limited = get(&tiny);
    let retry_after: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=20).contains(&retry_after), "{retry_after}");
    let (status, problem) = problem_status(limited);
    assert_eq!(status, 429);
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains(issued["id"].as_str().unwrap())
    );
    // The admin key has its own bucket.
    for _ in 0..20 {
        assert_eq!(get(&admin).status().as_u16(), 200);
    }
}
