//! End-to-end: hostile HTTP clients against the real daemon (issue 8,
//! item 5). At the same time, on 127.0.0.1: a slowloris connection sending
//! one header byte per second, a silent connection, a 64 KiB header block,
//! and a request body trickled one byte per second. Each must be cut by
//! the server (closed, or answered 431/408 and closed) well before the
//! loop that feeds it gives up, while `GET /health` and `GET /v1/torrents`
//! keep succeeding. Limits: `api/src/server.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{DEADLINE, Daemon};

/// Most bytes (one per second) a trickling client sends before the test
/// calls the server's timeouts broken. The header timeout is 10 s, the
/// body's minimum rate applies after 5 s; the 30 s request timeout alone
/// would not be enough.
const MAX_TRICKLE_BYTES: usize = 25;
/// Pace of the trickling clients (also their read timeout).
const TRICKLE_EVERY: Duration = Duration::from_secs(1);

/// How a hostile connection ended.
#[derive(Debug)]
struct Ended {
    /// Whether the server closed it (or answered and closed).
    closed: bool,
    /// What the server sent before closing.
    answer: String,
    /// Bytes trickled before the end.
    trickled: usize,
}

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(TRICKLE_EVERY)).unwrap();
    stream.set_write_timeout(Some(DEADLINE)).unwrap();
    stream
}

/// Reads what is there within one read timeout. `Some(true)` when the
/// server closed the connection (EOF or reset), `Some(false)` when it sent
/// bytes, `None` when nothing happened.
fn read_some(stream: &mut TcpStream, answer: &mut Vec<u8>) -> Option<bool> {
    let mut buf = [0_u8; 4096];
    match stream.read(&mut buf) {
        Ok(0) => Some(true),
        Ok(n) => {
            answer.extend_from_slice(&buf[..n]);
            Some(false)
        }
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => None,
        Err(_) => Some(true),
    }
}

/// Sends `head`, then one byte of `filler` per [`TRICKLE_EVERY`] until the
/// server closes the connection or [`MAX_TRICKLE_BYTES`] were sent.
fn trickle(addr: SocketAddr, head: &[u8]) -> Ended {
    let mut stream = connect(addr);
    let mut answer = Vec::new();
    let mut closed = stream.write_all(head).is_err();
    let mut trickled = 0;
    while !closed && trickled < MAX_TRICKLE_BYTES {
        if stream.write_all(b"a").is_err() {
            closed = true;
            break;
        }
        trickled += 1;
        // Waits at most one pace for the server's answer or close.
        closed = read_some(&mut stream, &mut answer) == Some(true);
    }
    if !closed && !answer.is_empty() {
        // Answered: the close follows.
        closed = drain_until_closed(&mut stream, &mut answer);
    }
    Ended {
        closed,
        answer: String::from_utf8_lossy(&answer).into_owned(),
        trickled,
    }
}

/// Reads until the server closes, for at most [`DEADLINE`].
fn drain_until_closed(stream: &mut TcpStream, answer: &mut Vec<u8>) -> bool {
    let deadline = Instant::now() + DEADLINE;
    while Instant::now() < deadline {
        if read_some(stream, answer) == Some(true) {
            return true;
        }
    }
    false
}

fn spawn(name: &str, f: impl FnOnce() -> Ended + Send + 'static) -> JoinHandle<Ended> {
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(f)
        .unwrap()
}

/// Starts the four hostile clients, each on a thread of its own.
fn start_hostile(addr: SocketAddr, key: &str) -> [JoinHandle<Ended>; 4] {
    let slowloris = spawn("slowloris", move || {
        trickle(addr, b"GET /health HTTP/1.1\r\nhost: 127.0.0.1\r\nx-slow: ")
    });
    let silent = spawn("silent", move || {
        let mut stream = connect(addr);
        let mut answer = Vec::new();
        let closed = drain_until_closed(&mut stream, &mut answer);
        Ended {
            closed,
            answer: String::from_utf8_lossy(&answer).into_owned(),
            trickled: 0,
        }
    });
    let oversized = spawn("oversized", move || {
        let mut stream = connect(addr);
        let mut head = b"GET /health HTTP/1.1\r\nhost: 127.0.0.1\r\nx-big: ".to_vec();
        head.extend(std::iter::repeat_n(b'a', 64 * 1024));
        head.extend_from_slice(b"\r\n\r\n");
        // The server may refuse and close before reading it all.
        let _ = stream.write_all(&head);
        let mut answer = Vec::new();
        let closed = drain_until_closed(&mut stream, &mut answer);
        Ended {
            closed,
            answer: String::from_utf8_lossy(&answer).into_owned(),
            trickled: 0,
        }
    });
    let body_key = key.to_owned();
    let trickled_body = spawn("trickled-body", move || {
        let head = format!(
            "POST /v1/torrents HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer {body_key}\r\n\
             content-type: application/json\r\ncontent-length: 1000\r\n\r\n"
        );
        trickle(addr, head.as_bytes())
    });
    [slowloris, silent, oversized, trickled_body]
}

#[test]
fn hostile_clients_are_cut_while_others_are_served() {
    let daemon = Daemon::start();
    daemon.wait_ok();
    let key = daemon.admin_key();
    let url = daemon.url().unwrap();
    let addr: SocketAddr = url.strip_prefix("http://").unwrap().parse().unwrap();
    assert!(addr.ip().is_loopback());

    let hostile = start_hostile(addr, &key);

    // Meanwhile, ordinary clients keep being served.
    let deadline = Instant::now() + DEADLINE * 2;
    let mut rounds = 0;
    while hostile.iter().any(|h| !h.is_finished()) && rounds < 2_000 {
        assert!(Instant::now() < deadline, "hostile clients still running");
        let health = daemon.client().get(format!("{url}/health")).send().unwrap();
        assert_eq!(health.status().as_u16(), 200);
        let list = daemon
            .client()
            .get(format!("{url}/v1/torrents"))
            .bearer_auth(&key)
            .send()
            .unwrap();
        assert_eq!(list.status().as_u16(), 200);
        rounds += 1;
        std::thread::sleep(common::POLL * 5);
    }
    let [slowloris, silent, oversized, trickled_body] = hostile.map(|h| h.join().unwrap());
    eprintln!(
        "slowloris {slowloris:?}\nsilent {silent:?}\noversized {oversized:?}\ntrickled body {trickled_body:?}\nordinary rounds {rounds}"
    );

    assert!(slowloris.closed, "slowloris not cut: {slowloris:?}");
    assert!(
        slowloris.trickled < MAX_TRICKLE_BYTES,
        "slowloris not cut: {slowloris:?}"
    );
    assert!(
        !slowloris.answer.starts_with("HTTP/1.1 2"),
        "slowloris served: {slowloris:?}"
    );
    assert!(silent.closed, "silent connection not closed: {silent:?}");
    assert!(
        oversized.closed,
        "oversized head not refused: {oversized:?}"
    );
    assert!(
        oversized.answer.is_empty() || oversized.answer.starts_with("HTTP/1.1 431"),
        "oversized head not refused: {oversized:?}"
    );
    assert!(
        trickled_body.closed,
        "trickled body not cut: {trickled_body:?}"
    );
    assert!(
        trickled_body.trickled < MAX_TRICKLE_BYTES,
        "trickled body not cut: {trickled_body:?}"
    );
    assert!(
        trickled_body.answer.is_empty() || trickled_body.answer.starts_with("HTTP/1.1 408"),
        "trickled body not refused: {trickled_body:?}"
    );
    assert!(rounds > 0, "no ordinary request was made");

    // The daemon is still healthy and counts its connections.
    daemon.wait_ok();
    let metrics = daemon
        .client()
        .get(format!("{url}/metrics"))
        .bearer_auth(&key)
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        metrics.contains("revaer_http_connections_open"),
        "{metrics}"
    );
    assert!(
        metrics.contains("revaer_http_connections_rejected_total 0"),
        "{metrics}"
    );
}
