//! End-to-end: each worker's sandbox bites in the real binaries. A test-only
//! probe (compiled in with the `test-probes` features that `./x test`
//! enables) asks the API, the engine and FsOps to do things their sandbox
//! must refuse, and checks the errno they got back.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::Daemon;
use serde_json::{Value, json};

const EACCES: i64 = 13;
const EPERM: i64 = 1;

fn probe(daemon: &Daemon, worker: &str, probe: &Value) -> Value {
    let url = daemon.url().unwrap();
    let resp = daemon
        .client()
        .post(format!("{url}/v1/_test/probe/{worker}"))
        .bearer_auth(daemon.admin_key())
        .json(probe)
        .send()
        .unwrap();
    let status = resp.status().as_u16();
    assert_eq!(
        status, 200,
        "probe route missing or failing ({status}); run the tests with `./x test`, which builds the test-probes features"
    );
    resp.json().unwrap()
}

fn write_file(path: &std::path::Path) -> Value {
    json!({"WriteFile": {"path": path}})
}

fn assert_denied(outcome: &Value, errno: i64, what: &str) {
    assert_eq!(
        outcome["Denied"]["errno"],
        json!(errno),
        "{what}: {outcome}"
    );
}

fn assert_allowed(outcome: &Value, what: &str) {
    assert_eq!(outcome, &json!("Allowed"), "{what}");
}

#[test]
fn each_worker_is_confined_to_its_own_directories() {
    let daemon = Daemon::start();
    daemon.wait_ok();
    let data = &daemon.data.0;
    let outside = common::TempDir::new("outside");

    // Engine: downloads and state/engine yes; library, the API's state and
    // anything outside the data dir no.
    assert_allowed(
        &probe(&daemon, "engine", &write_file(&data.join("downloads/ok"))),
        "engine → downloads",
    );
    assert_allowed(
        &probe(
            &daemon,
            "engine",
            &write_file(&data.join("state/engine/ok")),
        ),
        "engine → state/engine",
    );
    assert_denied(
        &probe(&daemon, "engine", &write_file(&data.join("library/no"))),
        EACCES,
        "engine → library",
    );
    assert_denied(
        &probe(&daemon, "engine", &write_file(&data.join("state/api/no"))),
        EACCES,
        "engine → state/api",
    );
    assert_denied(
        &probe(&daemon, "engine", &write_file(&outside.0.join("no"))),
        EACCES,
        "engine → outside",
    );
    assert_denied(
        &probe(
            &daemon,
            "engine",
            &json!({"ReadFile": {"path": "/etc/shadow"}}),
        ),
        EACCES,
        "engine reads /etc/shadow",
    );
    assert_denied(
        &probe(&daemon, "engine", &write_file(&data.join("revaer.toml"))),
        EACCES,
        "engine → config",
    );
    // FsOps: downloads and library yes; state no.
    assert_allowed(
        &probe(&daemon, "fsops", &write_file(&data.join("library/ok"))),
        "fsops → library",
    );
    assert_denied(
        &probe(&daemon, "fsops", &write_file(&data.join("state/engine/no"))),
        EACCES,
        "fsops → state/engine",
    );
    assert_denied(
        &probe(&daemon, "fsops", &write_file(&outside.0.join("no"))),
        EACCES,
        "fsops → outside",
    );

    // API: only its own state.
    assert_allowed(
        &probe(&daemon, "api", &write_file(&data.join("state/api/ok"))),
        "api → state/api",
    );
    assert_denied(
        &probe(&daemon, "api", &write_file(&data.join("downloads/no"))),
        EACCES,
        "api → downloads",
    );
    assert_denied(
        &probe(&daemon, "api", &write_file(&outside.0.join("no"))),
        EACCES,
        "api → outside",
    );

    for path in [
        data.join("library/no"),
        data.join("state/api/no"),
        outside.0.join("no"),
        data.join("downloads/no"),
    ] {
        assert!(!path.exists(), "{} was created", path.display());
    }
}

#[test]
fn engine_cannot_read_outside_its_dirs() {
    let daemon = Daemon::start();
    daemon.wait_ok();
    let data = &daemon.data.0;
    // Reads outside its dirs fail too (the API's store, the config), while
    // its read-only system files (resolver config) stay readable.
    std::fs::write(data.join("state/api/secret"), b"x").unwrap();
    assert_denied(
        &probe(
            &daemon,
            "engine",
            &json!({"ReadFile": {"path": data.join("state/api/secret")}}),
        ),
        EACCES,
        "engine reads state/api",
    );
    assert_denied(
        &probe(
            &daemon,
            "engine",
            &json!({"ReadFile": {"path": data.join("revaer.toml")}}),
        ),
        EACCES,
        "engine reads the config",
    );
    if std::path::Path::new("/etc/resolv.conf").exists() {
        assert_allowed(
            &probe(
                &daemon,
                "engine",
                &json!({"ReadFile": {"path": "/etc/resolv.conf"}}),
            ),
            "engine reads resolv.conf",
        );
    }
}

#[test]
fn fsops_cannot_open_network_sockets_but_the_engine_can() {
    let daemon = Daemon::start();
    daemon.wait_ok();
    let inet = json!("InetSocket");
    assert_denied(
        &probe(&daemon, "fsops", &inet),
        EACCES,
        "fsops AF_INET socket",
    );
    assert_allowed(&probe(&daemon, "engine", &inet), "engine AF_INET socket");
}

#[test]
fn forbidden_syscalls_are_refused_in_every_worker() {
    let daemon = Daemon::start();
    daemon.wait_ok();
    for worker in ["api", "engine", "fsops"] {
        assert_denied(&probe(&daemon, worker, &json!("Unshare")), EPERM, worker);
    }
    // The daemon is still healthy afterwards: refusals are errors, not crashes.
    daemon.wait_ok();
}
