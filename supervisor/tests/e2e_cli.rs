//! End to end through the `revaer` CLI only: a real `revaerd` downloading
//! from a real seed found through an in-test tracker on 127.0.0.1, driven
//! by `revaer add`, `ls`, `status`, `select`, `action` and `keys`, and
//! watched by `revaer tail` running alongside.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{Daemon, POLL, Seed, TempDir, Tracker, bin_dir};
use serde_json::Value;

const DEADLINE: Duration = Duration::from_secs(60);

/// What one `revaer` run produced.
#[derive(Debug)]
struct Run {
    code: Option<i32>,
    out: String,
    err: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.out).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }
}

/// `revaer` against this daemon, authenticated by the bootstrap key file.
struct Cli {
    url: String,
    key_file: String,
}

impl Cli {
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(bin_dir().join("revaer"));
        command
            .args(["--api-url", &self.url, "--api-key-file", &self.key_file])
            .args(args)
            .env_remove("REVAER_API_KEY")
            .env_remove("REVAER_OUTPUT")
            .env_remove("REVAER_TELEMETRY_ENDPOINT")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }

    /// Runs to completion (killed and failed after [`DEADLINE`]).
    fn run(&self, args: &[&str]) -> Run {
        let mut child = self.command(args).spawn().unwrap();
        let out = drain(child.stdout.take().unwrap());
        let err = drain(child.stderr.take().unwrap());
        let deadline = Instant::now() + DEADLINE;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("revaer {args:?} did not finish");
            }
            std::thread::sleep(POLL);
        };
        Run {
            code: status.code(),
            out: out.recv().unwrap(),
            err: err.recv().unwrap(),
        }
    }

    /// Runs and expects exit 0.
    fn ok(&self, args: &[&str]) -> Run {
        let run = self.run(args);
        assert_eq!(run.code, Some(0), "revaer {args:?}: {run:?}");
        run
    }
}

/// Reads a pipe to its end on a thread.
fn drain(mut pipe: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = pipe.read_to_string(&mut text);
        let _ = tx.send(text);
    });
    rx
}

/// A background process, killed and reaped if the test ends early.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// `revaer tail` in the background: its stdout lines on a channel.
fn tail(cli: &Cli, args: &[&str]) -> (Reaped, mpsc::Receiver<Value>) {
    let mut child = cli.command(args).stderr(Stdio::inherit()).spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            let Ok(value) = serde_json::from_str(&line) else {
                panic!("tail printed a line that is not JSON: {line}")
            };
            if tx.send(value).is_err() {
                return;
            }
        }
    });
    (Reaped(child), rx)
}

fn event_type(e: &Value) -> &str {
    e["event"]["type"].as_str().unwrap_or("")
}

#[test]
#[allow(clippy::too_many_lines, reason = "one scenario, step by step")]
fn add_ls_status_select_action_through_the_cli_and_tail_sees_it_all() {
    let tracker = Tracker::start();
    let seed = Seed::build(
        "show",
        &[
            ("e01.mkv", 300 * 1024),
            ("e02.mkv", 200 * 1024),
            ("info.nfo", 2 * 1024),
        ],
        0,
        vec![tracker.announce_url()],
    );
    let daemon = Daemon::start();
    daemon.wait_ok();
    let _ = daemon.admin_key();
    let cli = Cli {
        url: daemon.url().unwrap(),
        key_file: daemon
            .data
            .0
            .join("bootstrap-admin.key")
            .to_string_lossy()
            .into_owned(),
    };
    let work = TempDir::new("cli");
    let torrent_file = work.0.join("show.torrent");
    std::fs::write(&torrent_file, &seed.torrent).unwrap();
    let state_file = work.0.join("tail.json");

    // Tail from the start of the log, only this torrent's lifecycle.
    let (mut tail_child, events) = tail(
        &cli,
        &[
            "--output",
            "json",
            "tail",
            "--since",
            "0",
            "--torrent",
            &seed.id,
            "--kind",
            "torrent_added,files_selected,state_changed,completed,torrent_removed",
            "--state-file",
            state_file.to_str().unwrap(),
        ],
    );

    // add (a .torrent upload with labels) → the id; twice → exit 4.
    let added = cli.ok(&[
        "--output",
        "json",
        "add",
        torrent_file.to_str().unwrap(),
        "--tag",
        "e2e,tv",
        "--category",
        "shows",
    ]);
    let id = added.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(id, seed.id);
    let again = cli.run(&["add", torrent_file.to_str().unwrap()]);
    assert_eq!(again.code, Some(4), "{again:?}");

    // ls finds it by tag; status shows its files.
    let listed = cli.ok(&["--output", "json", "ls", "--tag", "e2e", "--all"]);
    assert_eq!(listed.json()["items"][0]["id"], id.as_str());
    assert_eq!(listed.json()["items"][0]["category"], "shows");
    let table = cli.ok(&["--output", "table", "ls"]);
    assert!(table.out.contains(&id), "{table:?}");
    let status = cli.ok(&["--output", "json", "status", &id]);
    assert_eq!(status.json()["files"].as_array().unwrap().len(), 3);

    // select: a glob that matches nothing is refused locally (exit 2);
    // skipping the .nfo is applied.
    let refused = cli.run(&["select", &id, "--skip", "*.iso"]);
    assert_eq!(refused.code, Some(2), "{refused:?}");
    let selected = cli.ok(&["--output", "json", "select", &id, "--skip", "*.nfo"]);
    assert_eq!(selected.json()["applied"], true);

    // status --follow waits for the download to complete.
    let followed = cli.ok(&[
        "--output",
        "table",
        "status",
        &id,
        "--follow",
        "--interval",
        "200ms",
    ]);
    assert!(followed.err.contains("Complete: show"), "{followed:?}");
    let done = cli.ok(&["--output", "json", "status", &id]).json();
    let nfo = done["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"].as_str().unwrap().ends_with("info.nfo"))
        .unwrap()
        .clone();
    assert_eq!(nfo["priority"], 0);
    let on_disk = daemon.data.0.join("downloads/show/e01.mkv");
    assert_eq!(std::fs::read(&on_disk).unwrap(), seed.files[0].1);

    // A read-only key may look but not act (exit 3).
    let read_key = work.0.join("read.key");
    cli.ok(&[
        "keys",
        "issue",
        "--name",
        "e2e-read",
        "--scope",
        "read",
        "--save-to",
        read_key.to_str().unwrap(),
    ]);
    let reader = Cli {
        url: cli.url.clone(),
        key_file: read_key.to_string_lossy().into_owned(),
    };
    reader.ok(&["--output", "json", "status", &id]);
    let denied = reader.run(&["action", &id, "pause"]);
    assert_eq!(denied.code, Some(3), "{denied:?}");

    // Actions.
    cli.ok(&["action", &id, "pause"]);
    cli.ok(&["action", &id, "resume"]);
    cli.ok(&["action", &id, "rate", "--down", "2MB/s", "--up", "1MB/s"]);
    cli.ok(&["action", &id, "rate", "--up", "unlimited"]);
    let limited = cli.ok(&["--output", "json", "status", &id]).json();
    assert_eq!(limited["download_limit_bps"], 2_000_000);
    assert_eq!(limited["upload_limit_bps"], Value::Null);
    cli.ok(&["action", &id, "remove-data"]);
    let gone = cli.run(&["status", &id]);
    assert_eq!(gone.code, Some(4), "{gone:?}");
    let deadline = Instant::now() + DEADLINE;
    while on_disk.exists() {
        assert!(Instant::now() < deadline, "data not deleted");
        std::thread::sleep(POLL);
    }

    // tail printed the whole lifecycle, each event once, in order.
    let mut printed: Vec<Value> = Vec::new();
    let deadline = Instant::now() + DEADLINE;
    while !printed.iter().any(|e| event_type(e) == "torrent_removed") {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "no torrent_removed from tail; saw {printed:#?}"
        );
        if let Ok(e) = events.recv_timeout(left) {
            printed.push(e);
        }
    }
    let ids: Vec<u64> = printed.iter().map(|e| e["id"].as_u64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids: {ids:?}");
    assert!(printed.iter().all(|e| e["event"]["torrent"] == id.as_str()));
    let kinds: Vec<&str> = printed.iter().map(event_type).collect();
    for kind in [
        "torrent_added",
        "files_selected",
        "state_changed",
        "completed",
        "torrent_removed",
    ] {
        assert!(kinds.contains(&kind), "no {kind} in {kinds:?}");
    }

    // Ctrl-C ends tail cleanly; its position is the last printed id.
    let pid = nix::unistd::Pid::from_raw(i32::try_from(tail_child.0.id()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let deadline = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(status) = tail_child.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "tail did not stop on SIGINT");
        std::thread::sleep(POLL);
    };
    assert_eq!(status.code(), Some(0));
    let saved: Value =
        serde_json::from_str(&std::fs::read_to_string(&state_file).unwrap()).unwrap();
    assert_eq!(saved["last_event_id"], *ids.last().unwrap());
}
