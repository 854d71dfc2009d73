//! Tests of the server loop's limits on a real 127.0.0.1 socket with small
//! limits: header timeout, head size, body rate, connection cap with
//! eviction of silent connections, graceful stop with idle connections.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};

use super::{Admission, Limits, Table, serve_with};
use crate::metrics::Metrics;

/// Upper bound for anything that should happen "soon".
const DEADLINE: Duration = Duration::from_secs(10);

const SMALL: Limits = Limits {
    max_connections: 2,
    header_read_timeout: Duration::from_millis(500),
    max_header_bytes: 8 * 1024,
    min_body_bytes_per_sec: 1024,
    body_rate_grace: Duration::from_millis(300),
};

struct Running {
    addr: SocketAddr,
    listen: watch::Sender<SocketAddr>,
    bound: mpsc::UnboundedReceiver<SocketAddr>,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    metrics: Arc<Metrics>,
}

async fn start(limits: Limits) -> Running {
    let router = Router::new().route("/", get(|| async { "ok" })).route(
        "/echo",
        post(|body: String| async move { body.len().to_string() }),
    );
    let (listen, listen_rx) = watch::channel(SocketAddr::from(([127, 0, 0, 1], 0)));
    let (shutdown, shutdown_rx) = watch::channel(false);
    let (bound_tx, mut bound_rx) = mpsc::unbounded_channel();
    let metrics = Metrics::new();
    let m = Arc::clone(&metrics);
    let task = tokio::spawn(async move {
        serve_with(router, listen_rx, shutdown_rx, bound_tx, &m, limits).await
    });
    let addr = tokio::time::timeout(DEADLINE, bound_rx.recv())
        .await
        .unwrap()
        .unwrap();
    Running {
        addr,
        listen,
        bound: bound_rx,
        shutdown,
        task,
        metrics,
    }
}

/// Reads until the server closes the connection (EOF or reset); returns
/// what arrived. Fails after [`DEADLINE`].
async fn read_until_closed(stream: &mut TcpStream) -> String {
    let mut seen = Vec::new();
    let mut buf = [0_u8; 4096];
    let outcome = tokio::time::timeout(DEADLINE, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(
        outcome.is_ok(),
        "connection still open after {DEADLINE:?}; got {:?}",
        String::from_utf8_lossy(&seen)
    );
    String::from_utf8_lossy(&seen).into_owned()
}

/// Sends one complete `GET /` and reads its answer (keep-alive stays on).
async fn get_ok(stream: &mut TcpStream) {
    stream
        .write_all(b"GET / HTTP/1.1\r\nhost: t\r\n\r\n")
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0_u8; 1024];
    tokio::time::timeout(DEADLINE, async {
        while !seen.ends_with(b"ok") {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed before the answer");
            seen.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .unwrap();
    assert!(seen.starts_with(b"HTTP/1.1 200"), "{seen:?}");
}

fn exposition(metrics: &Metrics) -> String {
    metrics.exposition(&[], &[], &[]).unwrap()
}

#[test]
fn table_evicts_the_oldest_silent_connection_then_refuses() {
    let table = Arc::new(Table::new(2));
    let Admission::Admitted(a) = table.admit() else {
        panic!("first refused")
    };
    let Admission::Admitted(b) = table.admit() else {
        panic!("second refused")
    };
    let Admission::Evicted(c) = table.admit() else {
        panic!("third did not evict")
    };
    assert!(a.shared.evicted.load(std::sync::atomic::Ordering::Acquire));
    assert!(!b.shared.evicted.load(std::sync::atomic::Ordering::Acquire));
    assert_eq!(table.open(), 2);
    // The evicted slot's release does not free the place it handed over.
    drop(a);
    assert_eq!(table.open(), 2);
    table.spoke(b.id);
    table.spoke(c.id);
    assert!(matches!(table.admit(), Admission::Full));
    drop(b);
    assert_eq!(table.open(), 1);
    let Admission::Admitted(_d) = table.admit() else {
        panic!("refused below the cap")
    };
    drop(c);
    assert_eq!(table.open(), 1);
}

#[tokio::test]
async fn a_silent_connection_is_closed_after_the_header_timeout() {
    let server = start(SMALL).await;
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    read_until_closed(&mut silent).await;
    // A slowloris head (never finished) is closed the same way.
    let mut slow = TcpStream::connect(server.addr).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nx-a: ").await.unwrap();
    read_until_closed(&mut slow).await;
    // So is a kept-alive connection left idle after a request.
    let mut idle = TcpStream::connect(server.addr).await.unwrap();
    get_ok(&mut idle).await;
    read_until_closed(&mut idle).await;
}

#[tokio::test]
async fn an_oversized_head_is_refused_with_431() {
    let server = start(SMALL).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let mut head = b"GET / HTTP/1.1\r\nhost: t\r\nx-big: ".to_vec();
    head.extend(std::iter::repeat_n(b'a', 16 * 1024));
    head.extend_from_slice(b"\r\n\r\n");
    // The server may close before reading everything.
    let _ = stream.write_all(&head).await;
    let answer = read_until_closed(&mut stream).await;
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
        "{answer}"
    );
}

#[tokio::test]
async fn a_trickled_body_is_answered_408_and_closed() {
    let server = start(SMALL).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(b"POST /echo HTTP/1.1\r\nhost: t\r\ncontent-length: 100\r\n\r\nx")
        .await
        .unwrap();
    let answer = read_until_closed(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("application/problem+json"), "{answer}");
    // A body sent at once is served.
    let mut fast = TcpStream::connect(server.addr).await.unwrap();
    fast.write_all(
        b"POST /echo HTTP/1.1\r\nhost: t\r\nconnection: close\r\ncontent-length: 5\r\n\r\nhello",
    )
    .await
    .unwrap();
    let answer = read_until_closed(&mut fast).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with('5'), "{answer}");
}

#[tokio::test]
async fn at_the_cap_silent_connections_make_room_and_active_ones_do_not() {
    let server = start(Limits {
        header_read_timeout: Duration::from_secs(30),
        ..SMALL
    })
    .await;
    let mut a = TcpStream::connect(server.addr).await.unwrap();
    let mut b = TcpStream::connect(server.addr).await.unwrap();
    get_ok(&mut b).await;
    // `a` never spoke: the third connection takes its place.
    let mut c = TcpStream::connect(server.addr).await.unwrap();
    read_until_closed(&mut a).await;
    get_ok(&mut c).await;
    // Both open connections have spoken: the fourth is refused.
    let mut d = TcpStream::connect(server.addr).await.unwrap();
    let answer = read_until_closed(&mut d).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    // The kept ones still work.
    get_ok(&mut b).await;
    get_ok(&mut c).await;
    let text = exposition(&server.metrics);
    assert!(
        text.contains("revaer_http_connections_rejected_total 1"),
        "{text}"
    );
    assert!(
        text.contains("revaer_http_connections_evicted_total 1"),
        "{text}"
    );
    assert!(text.contains("revaer_http_connections_open 2"), "{text}");
}

#[tokio::test]
async fn stopping_closes_idle_connections_and_returns() {
    let server = start(Limits {
        header_read_timeout: Duration::from_secs(30),
        ..SMALL
    })
    .await;
    let mut idle = TcpStream::connect(server.addr).await.unwrap();
    get_ok(&mut idle).await;
    let _silent = TcpStream::connect(server.addr).await.unwrap();
    server.shutdown.send(true).unwrap();
    tokio::time::timeout(DEADLINE, server.task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    read_until_closed(&mut idle).await;
}

#[tokio::test]
async fn a_new_listen_address_is_served_at_once_and_old_idle_connections_close() {
    let mut server = start(Limits {
        header_read_timeout: Duration::from_secs(30),
        ..SMALL
    })
    .await;
    let mut old = TcpStream::connect(server.addr).await.unwrap();
    get_ok(&mut old).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    server
        .listen
        .send(SocketAddr::from(([127, 0, 0, 1], port)))
        .unwrap();
    let moved = tokio::time::timeout(DEADLINE, server.bound.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(moved.port(), port);
    let mut new = TcpStream::connect(moved).await.unwrap();
    get_ok(&mut new).await;
    read_until_closed(&mut old).await;
    assert!(TcpStream::connect(server.addr).await.is_err());
}
