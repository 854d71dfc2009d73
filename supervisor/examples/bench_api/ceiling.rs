//! The HTTP ceiling: a minimal axum server answering every GET with one
//! precomputed body (`Content-Type: application/json`), on the same runtime
//! shape as Revaer's API worker (multi-thread, 2 workers). Runs as a child
//! process (`bench_api --ceiling-body FILE`) so that it shares nothing with
//! the bench.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;

use crate::util::{BoxError, Proc};

/// The child: serves `body` on 127.0.0.1 (ephemeral port, printed as
/// `listening <port>` on stdout) until SIGTERM.
pub fn serve(body_file: &Path) -> Result<(), BoxError> {
    let body = Bytes::from(std::fs::read(body_file)?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let port = listener.local_addr()?.port();
        println!("listening {port}");
        let router = Router::new().fallback(axum::routing::get(move || {
            let body = body.clone();
            async move { ([(CONTENT_TYPE, "application/json")], body).into_response() }
        }));
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = term.recv().await;
            })
            .await?;
        Ok::<(), BoxError>(())
    })
}

/// Starts the ceiling child with `body_file`; returns it and its port.
pub fn start(self_exe: &Path, body_file: &Path) -> Result<(Proc, u16), BoxError> {
    let child = Command::new(self_exe)
        .arg("--ceiling-body")
        .arg(body_file)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut proc = Proc::adopt("axum ceiling", child, Duration::from_secs(10));
    let stdout = proc.child_mut().stdout.take().ok_or("no stdout")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("ceiling-stdout".to_owned())
        .spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        })?;
    let deadline = Instant::now() + Duration::from_secs(20);
    let line = rx
        .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        .map_err(|_| "the ceiling server did not report its port")?;
    let port = line
        .trim()
        .strip_prefix("listening ")
        .ok_or_else(|| format!("unexpected line from the ceiling server: {line:?}"))?
        .parse()?;
    Ok((proc, port))
}
