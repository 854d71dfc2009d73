//! Writes the seed corpus of the `decode_frame` fuzz target: one file per
//! message kind, each a valid frame (length prefix + encoding) as it appears
//! on the wire, plus a few multi-frame streams.
//!
//! `cargo run -p revaer-ipc --example fuzz_seeds` (rerun after protocol changes).

use std::path::PathBuf;

use bytes::BytesMut;
use revaer_config::Config;
use revaer_ipc::codec::encode;
use revaer_ipc::frame::FrameCodec;
use revaer_ipc::{
    BootSecret, ClientHello, ConfigStatus, Envelope, ErrorKind, HandshakeOutcome, IpcError, Pong,
    Probe, ProbeOutcome, RemoteError, Role, SandboxReport, ServerHello, SupervisionSnapshot,
    SupervisorToWorker, WorkerExit, WorkerInit, WorkerReady, WorkerRequest, WorkerResponse,
    WorkerState, WorkerStatus, WorkerToSupervisor,
};
use serde::Serialize;
use tokio_util::codec::Encoder;

fn frame<T: Serialize>(value: &T, wire: &mut BytesMut) -> Result<(), IpcError> {
    FrameCodec::new().encode(encode(value)?, wire)
}

fn sandbox() -> SandboxReport {
    SandboxReport {
        no_new_privs: true,
        landlock_abi: Some(7),
        landlock_status: "fully_enforced".to_owned(),
        seccomp: true,
        seccomp_denied: vec!["ptrace".to_owned(), "mount".to_owned()],
        capabilities: vec![],
        uid: 1000,
        gid: 1000,
        umask: 0o077,
        core_dumps: false,
        inherited_fds_closed: 2,
    }
}

fn envelope<T>(request_id: u64, body: T) -> Envelope<T> {
    Envelope {
        request_id,
        traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned()),
        body,
    }
}

type Seeds = Vec<(&'static str, BytesMut)>;

/// Control-channel frames.
fn control_seeds(seeds: &mut Seeds) -> Result<(), IpcError> {
    let mut add = |name: &'static str, write: &dyn Fn(&mut BytesMut) -> Result<(), IpcError>| {
        let mut wire = BytesMut::new();
        write(&mut wire)?;
        seeds.push((name, wire));
        Ok::<(), IpcError>(())
    };

    add("init", &|w| {
        frame(
            &SupervisorToWorker::Init(Box::new(WorkerInit {
                protocol_version: revaer_ipc::PROTOCOL_VERSION,
                build_id: "0.1.0+seed".to_owned(),
                role: Role::Engine,
                secret: BootSecret::from_bytes([0x5a; 32]),
                data_dir: PathBuf::from("/var/lib/revaer"),
                config_revision: 1,
                config: Config::default(),
            })),
            w,
        )
    })?;
    add("config_update", &|w| {
        frame(
            &SupervisorToWorker::ConfigUpdate {
                revision: 2,
                config: Box::default(),
            },
            w,
        )
    })?;
    add("supervision", &|w| {
        frame(
            &SupervisorToWorker::Supervision(Box::new(SupervisionSnapshot {
                supervisor_pid: 1,
                workers: vec![
                    WorkerStatus {
                        role: Role::Engine,
                        state: WorkerState::Running,
                        pid: Some(42),
                        restarts: 0,
                        last_exit: None,
                        sandbox: Some(sandbox()),
                    },
                    WorkerStatus {
                        role: Role::Fsops,
                        state: WorkerState::Restarting { delay_ms: 200 },
                        pid: None,
                        restarts: 3,
                        last_exit: Some(WorkerExit {
                            pid: 43,
                            code: None,
                            signal: Some(9),
                            reason: "killed by SIGKILL".to_owned(),
                            at_unix_ms: 1_700_000_000_000,
                            restart_delay_ms: Some(200),
                        }),
                        sandbox: None,
                    },
                ],
                config: ConfigStatus {
                    revision: 2,
                    error: Some("invalid value for `api.listen`".to_owned()),
                    watch_latency_ms: Some(12),
                    failures: 1,
                },
            })),
            w,
        )
    })?;
    add("shutdown", &|w| frame(&SupervisorToWorker::Shutdown, w))?;
    add("ready", &|w| {
        frame(
            &WorkerToSupervisor::Ready(Box::new(WorkerReady {
                protocol_version: revaer_ipc::PROTOCOL_VERSION,
                build_id: "0.1.0+seed".to_owned(),
                role: Role::Api,
                pid: 4242,
                sandbox: sandbox(),
            })),
            w,
        )
    })?;
    add("api_listening", &|w| {
        frame(
            &WorkerToSupervisor::ApiListening {
                addr: "127.0.0.1:7070".to_owned(),
            },
            w,
        )
    })?;
    Ok(())
}

/// Data-channel frames: handshake and envelopes.
fn data_seeds(seeds: &mut Seeds) -> Result<(), IpcError> {
    let mut add = |name: &'static str, write: &dyn Fn(&mut BytesMut) -> Result<(), IpcError>| {
        let mut wire = BytesMut::new();
        write(&mut wire)?;
        seeds.push((name, wire));
        Ok::<(), IpcError>(())
    };
    add("server_hello", &|w| {
        frame(
            &ServerHello {
                protocol_version: revaer_ipc::PROTOCOL_VERSION,
                build_id: "0.1.0+seed".to_owned(),
                role: Role::Engine,
                nonce: [0x11; 32],
            },
            w,
        )
    })?;
    add("client_hello", &|w| {
        frame(
            &ClientHello {
                protocol_version: revaer_ipc::PROTOCOL_VERSION,
                build_id: "0.1.0+seed".to_owned(),
                role: Role::Api,
                proof: BootSecret::from_bytes([0x5a; 32]).proof(&[0x11; 32], Role::Api),
            },
            w,
        )
    })?;
    add("handshake_rejected", &|w| {
        frame(
            &HandshakeOutcome::Rejected {
                reason: "bad boot-secret proof".to_owned(),
            },
            w,
        )
    })?;
    add("request_ping", &|w| {
        frame(&envelope(1, WorkerRequest::Ping), w)
    })?;
    add("request_probe", &|w| {
        frame(
            &envelope(
                2,
                WorkerRequest::Probe(Probe::WriteFile {
                    path: PathBuf::from("/etc/passwd"),
                }),
            ),
            w,
        )
    })?;
    add("response_pong", &|w| {
        frame(
            &envelope(
                1,
                WorkerResponse::Pong(Box::new(Pong {
                    role: Role::Engine,
                    pid: 42,
                    uptime_ms: 1000,
                    config_revision: 2,
                    sandbox: sandbox(),
                    degraded: Some("interface wg0 is missing".to_owned()),
                })),
            ),
            w,
        )
    })?;
    add("response_denied", &|w| {
        frame(
            &envelope(
                2,
                WorkerResponse::Probe(ProbeOutcome::Denied {
                    errno: 13,
                    message: "Permission denied".to_owned(),
                }),
            ),
            w,
        )
    })?;
    add("response_error", &|w| {
        frame(
            &envelope(
                3,
                WorkerResponse::Error(RemoteError {
                    kind: ErrorKind::Unsupported,
                    message: "probes are not built in".to_owned(),
                }),
            ),
            w,
        )
    })?;
    add("stream_handshake_then_requests", &|w| {
        frame(&HandshakeOutcome::Accepted, w)?;
        frame(&envelope(1, WorkerRequest::Ping), w)?;
        frame(&envelope(2, WorkerRequest::Probe(Probe::InetSocket)), w)?;
        frame(&envelope(3, WorkerRequest::Probe(Probe::Unshare)), w)
    })?;

    Ok(())
}

fn main() -> Result<(), IpcError> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/decode_frame");
    std::fs::create_dir_all(&dir)?;
    let mut seeds = Seeds::new();
    control_seeds(&mut seeds)?;
    data_seeds(&mut seeds)?;
    for (name, wire) in &seeds {
        std::fs::write(dir.join(name), wire)?;
    }
    println!("wrote {} seeds to {}", seeds.len(), dir.display());
    Ok(())
}
