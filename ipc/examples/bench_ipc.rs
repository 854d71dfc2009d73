//! IPC round-trip benchmark over a real named socket between two processes.
//!
//! `cargo run --release -p revaer-ipc --example bench_ipc`
//!
//! The parent spawns a copy of itself (`--echo-server <socket>`) the way the
//! supervisor spawns a worker: a control socketpair as the child's stdin
//! carries the boot secret. The child binds the socket and answers each
//! `Envelope<WorkerRequest::Ping>` with a `WorkerResponse::Pong`. The parent
//! checks the peer uid, runs the handshake, does `warmup` then `round_trips`
//! sequential round trips, then `pipelined` requests without waiting for
//! answers, and prints one line of `key=value` results. Both sides use
//! current-thread runtimes. Every phase is bounded in count and in time, and
//! the child is always reaped.
//!
//! `--smoke`: a twentieth of the counts, to prove the bench still runs
//! (`just bench-smoke`, part of `./x test`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use revaer_ipc::control::{adopt_stdin_control, control_pair, into_tokio};
use revaer_ipc::handshake::{HandshakeParams, client_handshake, server_handshake};
use revaer_ipc::transport::{Listener, check_peer_uid, connect, ensure_run_dir};
use revaer_ipc::{
    BootSecret, Connection, Envelope, IpcError, Pong, Role, SandboxReport, WorkerRequest,
    WorkerResponse,
};

/// How many messages each phase sends.
#[derive(Debug, Clone, Copy)]
struct Counts {
    warmup: u64,
    round_trips: u64,
    pipelined: u64,
}

const FULL: Counts = Counts {
    warmup: 1_000,
    round_trips: 20_000,
    pipelined: 200_000,
};
const SMOKE: Counts = Counts {
    warmup: 50,
    round_trips: 1_000,
    pipelined: 10_000,
};
const RTT_DEADLINE: Duration = Duration::from_secs(60);
const PIPELINE_DEADLINE: Duration = Duration::from_secs(30);
const IO_TIMEOUT: Duration = Duration::from_secs(10);

fn runtime() -> Result<tokio::runtime::Runtime, IpcError> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

fn params(role: Role, peer_role: Role, secret: &BootSecret) -> HandshakeParams<'_> {
    HandshakeParams {
        role,
        peer_role,
        build_id: BUILD_ID,
        secret,
        timeout: IO_TIMEOUT,
    }
}

const BUILD_ID: &str = "bench_ipc";

fn euid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if let [_, flag, path] = args.as_slice()
        && flag == "--echo-server"
    {
        return Ok(runtime()?.block_on(echo_server(Path::new(path)))?);
    }
    let counts = match args.get(1..).unwrap_or_default() {
        [] => FULL,
        [flag] if flag == "--smoke" => SMOKE,
        _ => return Err("usage: bench_ipc [--smoke]".into()),
    };
    let dir = std::env::temp_dir().join(format!("revaer-bench-ipc-{}", std::process::id()));
    ensure_run_dir(&dir)?;
    let result = runtime()?.block_on(parent(&dir, counts));
    let _ = std::fs::remove_dir_all(&dir);
    result
}

// ---------------------------------------------------------------------------
// Child: echo server
// ---------------------------------------------------------------------------

async fn echo_server(path: &Path) -> Result<(), IpcError> {
    let mut control = Connection::new(into_tokio(adopt_stdin_control()?)?);
    let secret: BootSecret = control.recv_timeout(IO_TIMEOUT).await?;
    let listener = Listener::bind(path)?;
    control.send(&"ready").await?;
    tokio::select! {
        // The parent closing the control channel means "exit now".
        _ = control.recv::<()>() => Ok(()),
        res = serve(&listener, &secret) => res,
    }
}

async fn serve(listener: &Listener, secret: &BootSecret) -> Result<(), IpcError> {
    let started = Instant::now();
    loop {
        let stream = listener.accept().await?;
        check_peer_uid(&stream, euid())?;
        let mut conn = Connection::new(stream);
        server_handshake(&mut conn, &params(Role::Engine, Role::Api, secret)).await?;
        loop {
            // Answer everything already buffered, flush only when the next
            // request is not there yet: one write per batch when pipelined.
            let next = if let Some(next) = conn.recv::<Envelope<WorkerRequest>>().now_or_never() {
                next
            } else {
                conn.flush().await?;
                conn.recv().await
            };
            let Some(req) = next? else { break };
            let body = match req.body {
                WorkerRequest::Ping => WorkerResponse::Pong(Box::new(Pong {
                    role: Role::Engine,
                    pid: std::process::id(),
                    uptime_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                    config_revision: 0,
                    sandbox: SandboxReport::default(),
                    degraded: None,
                })),
                WorkerRequest::Probe(_)
                | WorkerRequest::Engine(_)
                | WorkerRequest::Metrics
                | WorkerRequest::Fsops(_) => WorkerResponse::Error(revaer_ipc::RemoteError {
                    kind: revaer_ipc::ErrorKind::Unsupported,
                    message: "the bench answers only pings".to_owned(),
                }),
            };
            conn.feed(&Envelope {
                request_id: req.request_id,
                traceparent: req.traceparent,
                body,
            })
            .await?;
        }
    }
}

// ---------------------------------------------------------------------------
// Parent: client and measurements
// ---------------------------------------------------------------------------

fn ping(request_id: u64) -> Envelope<WorkerRequest> {
    Envelope {
        request_id,
        traceparent: None,
        body: WorkerRequest::Ping,
    }
}

fn check_pong(resp: &Envelope<WorkerResponse>, request_id: u64) -> Result<(), IpcError> {
    match resp.body {
        WorkerResponse::Pong(_) if resp.request_id == request_id => Ok(()),
        _ => Err(IpcError::UnexpectedMessage("expected the matching Pong")),
    }
}

/// Kills (if needed) and always reaps the child.
fn reap(mut child: Child) -> std::io::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if child.try_wait()?.is_some() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill()?;
    child.wait().map(drop)
}

async fn parent(dir: &Path, counts: Counts) -> Result<(), Box<dyn std::error::Error>> {
    let socket: PathBuf = dir.join("echo.sock");
    let secret = BootSecret::generate()?;
    let (control, child_end) = control_pair()?;
    let child = Command::new(std::env::current_exe()?)
        .arg("--echo-server")
        .arg(&socket)
        .stdin(Stdio::from(child_end))
        .spawn()?;
    let result = measure(control, &socket, &secret, counts).await;
    reap(child)?;
    let line = result?;
    println!("{line}");
    Ok(())
}

async fn measure(
    control: tokio::net::UnixStream,
    socket: &Path,
    secret: &BootSecret,
    counts: Counts,
) -> Result<String, IpcError> {
    let Counts {
        warmup,
        round_trips,
        pipelined,
    } = counts;
    let mut control = Connection::new(control);
    control.send(secret).await?;
    let ready: String = control.recv_timeout(IO_TIMEOUT).await?;
    if ready != "ready" {
        return Err(IpcError::UnexpectedMessage("expected ready"));
    }

    let stream = connect(socket).await?;
    check_peer_uid(&stream, euid())?;
    let mut conn = Connection::new(stream);
    client_handshake(&mut conn, &params(Role::Api, Role::Engine, secret)).await?;

    // Sequential round trips.
    let mut id = 0u64;
    for _ in 0..warmup {
        id += 1;
        conn.send(&ping(id)).await?;
        check_pong(&conn.recv_timeout(IO_TIMEOUT).await?, id)?;
    }
    let mut rtts_ns: Vec<u64> = Vec::with_capacity(usize::try_from(round_trips).unwrap_or(0));
    let started = Instant::now();
    for _ in 0..round_trips {
        if started.elapsed() > RTT_DEADLINE {
            break;
        }
        id += 1;
        let t = Instant::now();
        conn.send(&ping(id)).await?;
        let resp = conn.recv_timeout(IO_TIMEOUT).await?;
        rtts_ns.push(u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX));
        check_pong(&resp, id)?;
    }
    rtts_ns.sort_unstable();
    let pct = |p: usize| -> f64 {
        let idx = (rtts_ns.len().saturating_sub(1) * p) / 100;
        #[allow(clippy::cast_precision_loss)]
        let us = rtts_ns.get(idx).copied().unwrap_or(0) as f64 / 1000.0;
        us
    };
    let (p50, p99, max) = (pct(50), pct(99), pct(100));

    // Pipelined: one side sends as fast as it can, the other counts answers.
    let (mut reader, mut writer) = conn.into_split();
    let first = id + 1;
    let t = Instant::now();
    let send_all = async {
        for i in 0..pipelined {
            writer.feed(&ping(first + i)).await?;
        }
        writer.flush().await
    };
    let recv_all = async {
        for i in 0..pipelined {
            let resp = reader.recv_timeout(IO_TIMEOUT).await?;
            check_pong(&resp, first + i)?;
        }
        Ok::<(), IpcError>(())
    };
    let (sent, received) = tokio::time::timeout(PIPELINE_DEADLINE, async {
        tokio::join!(send_all, recv_all)
    })
    .await
    .map_err(|_| IpcError::Timeout)?;
    sent?;
    received?;
    let secs = t.elapsed().as_secs_f64();
    #[allow(clippy::cast_precision_loss)]
    let msgs_per_s = pipelined as f64 / secs;

    Ok(format!(
        "ipc_rtt_p50_us={p50:.1} ipc_rtt_p99_us={p99:.1} ipc_rtt_max_us={max:.1} n={} \
         ipc_pipelined_msgs_per_s={msgs_per_s:.0} pipelined_n={pipelined}",
        rtts_ns.len()
    ))
}
