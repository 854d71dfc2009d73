//! Property tests of the wire format: every protocol message round-trips
//! through the codec and the framing, and arbitrary bytes never panic the
//! decoder.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use bytes::BytesMut;
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use revaer_config::Config;
use revaer_ipc::codec::{decode, encode};
use revaer_ipc::frame::{FrameCodec, MAX_FRAME_BYTES, frame_codec};
use revaer_ipc::{
    BootSecret, ClientHello, ConfigStatus, Envelope, ErrorKind, HandshakeOutcome, IpcError, Pong,
    Probe, ProbeOutcome, RemoteError, Role, SandboxReport, ServerHello, SupervisionSnapshot,
    SupervisorToWorker, WorkerExit, WorkerInit, WorkerReady, WorkerRequest, WorkerResponse,
    WorkerState, WorkerStatus, WorkerToSupervisor,
};
use serde::{Serialize, de::DeserializeOwned};
use tokio_util::codec::{Decoder, Encoder};

fn role() -> impl Strategy<Value = Role> {
    prop_oneof![
        Just(Role::Supervisor),
        Just(Role::Api),
        Just(Role::Engine),
        Just(Role::Fsops)
    ]
}

fn text() -> impl Strategy<Value = String> {
    ".{0,40}"
}

fn path() -> impl Strategy<Value = PathBuf> {
    "(/[a-zé0-9 ._-]{1,12}){0,4}".prop_map(PathBuf::from)
}

fn config() -> impl Strategy<Value = Config> {
    (
        any::<u64>(),
        any::<u64>(),
        option::of(any::<u32>()),
        "[0-9.:]{0,21}",
    )
        .prop_map(|(initial, max, uid, listen)| {
            let mut c = Config::default();
            c.supervisor.restart_backoff_initial_ms = initial;
            c.supervisor.restart_backoff_max_ms = max;
            c.sandbox.worker_uid = uid;
            c.api.listen = listen;
            c
        })
}

prop_compose! {
    fn sandbox()(
        no_new_privs in any::<bool>(),
        landlock_abi in option::of(any::<u8>()),
        landlock_status in text(),
        seccomp in any::<bool>(),
        seccomp_denied in vec(text(), 0..4),
        capabilities in vec(text(), 0..3),
        ids in (any::<u32>(), any::<u32>(), any::<u32>()),
        core_dumps in any::<bool>(),
        inherited_fds_closed in any::<u32>(),
    ) -> SandboxReport {
        SandboxReport {
            no_new_privs, landlock_abi, landlock_status, seccomp, seccomp_denied,
            capabilities, uid: ids.0, gid: ids.1, umask: ids.2, core_dumps,
            inherited_fds_closed,
        }
    }
}

prop_compose! {
    fn worker_init()(
        protocol_version in any::<u16>(),
        build_id in text(),
        role in role(),
        secret in any::<[u8; 32]>(),
        data_dir in path(),
        config_revision in any::<u64>(),
        config in prop_oneof![Just(Config::default()), config()],
    ) -> WorkerInit {
        WorkerInit {
            protocol_version, build_id, role, secret: BootSecret::from_bytes(secret),
            data_dir, config_revision, config,
        }
    }
}

fn worker_state() -> impl Strategy<Value = WorkerState> {
    prop_oneof![
        Just(WorkerState::Starting),
        Just(WorkerState::Running),
        any::<u64>().prop_map(|delay_ms| WorkerState::Restarting { delay_ms }),
        Just(WorkerState::Stopped),
    ]
}

prop_compose! {
    fn worker_exit()(
        pid in any::<u32>(),
        code in option::of(any::<i32>()),
        signal in option::of(any::<i32>()),
        reason in text(),
        at_unix_ms in any::<u64>(),
        restart_delay_ms in option::of(any::<u64>()),
    ) -> WorkerExit {
        WorkerExit { pid, code, signal, reason, at_unix_ms, restart_delay_ms }
    }
}

prop_compose! {
    fn worker_status()(
        role in role(),
        state in worker_state(),
        pid in option::of(any::<u32>()),
        restarts in any::<u32>(),
        last_exit in option::of(worker_exit()),
        sandbox in option::of(sandbox()),
    ) -> WorkerStatus {
        WorkerStatus { role, state, pid, restarts, last_exit, sandbox }
    }
}

prop_compose! {
    fn config_status()(
        revision in any::<u64>(),
        error in option::of(text()),
        watch_latency_ms in option::of(any::<u64>()),
        failures in any::<u64>(),
    ) -> ConfigStatus {
        ConfigStatus { revision, error, watch_latency_ms, failures }
    }
}

fn supervisor_to_worker() -> impl Strategy<Value = SupervisorToWorker> {
    prop_oneof![
        worker_init().prop_map(|i| SupervisorToWorker::Init(Box::new(i))),
        (any::<u64>(), config()).prop_map(|(revision, config)| {
            SupervisorToWorker::ConfigUpdate {
                revision,
                config: Box::new(config),
            }
        }),
        Just(SupervisorToWorker::Shutdown),
        (any::<u32>(), vec(worker_status(), 0..4), config_status()).prop_map(
            |(supervisor_pid, workers, config)| {
                SupervisorToWorker::Supervision(Box::new(SupervisionSnapshot {
                    supervisor_pid,
                    workers,
                    config,
                }))
            }
        ),
    ]
}

fn worker_to_supervisor() -> impl Strategy<Value = WorkerToSupervisor> {
    prop_oneof![
        (any::<u16>(), text(), role(), any::<u32>(), sandbox()).prop_map(
            |(protocol_version, build_id, role, pid, sandbox)| {
                WorkerToSupervisor::Ready(Box::new(WorkerReady {
                    protocol_version,
                    build_id,
                    role,
                    pid,
                    sandbox,
                }))
            }
        ),
        any::<u64>().prop_map(|revision| WorkerToSupervisor::ConfigApplied { revision }),
        text().prop_map(|addr| WorkerToSupervisor::ApiListening { addr }),
    ]
}

fn envelope<T: std::fmt::Debug>(
    body: impl Strategy<Value = T>,
) -> impl Strategy<Value = Envelope<T>> {
    (any::<u64>(), option::of(text()), body).prop_map(|(request_id, traceparent, body)| Envelope {
        request_id,
        traceparent,
        body,
    })
}

fn worker_request() -> impl Strategy<Value = WorkerRequest> {
    prop_oneof![
        Just(WorkerRequest::Ping),
        path().prop_map(|path| WorkerRequest::Probe(Probe::WriteFile { path })),
        path().prop_map(|path| WorkerRequest::Probe(Probe::ReadFile { path })),
        Just(WorkerRequest::Probe(Probe::InetSocket)),
        Just(WorkerRequest::Probe(Probe::Unshare)),
    ]
}

fn error_kind() -> impl Strategy<Value = ErrorKind> {
    prop_oneof![
        Just(ErrorKind::Unsupported),
        Just(ErrorKind::Invalid),
        Just(ErrorKind::Internal)
    ]
}

fn worker_response() -> impl Strategy<Value = WorkerResponse> {
    prop_oneof![
        (
            role(),
            any::<u32>(),
            any::<u64>(),
            any::<u64>(),
            sandbox(),
            proptest::option::of(".{0,40}")
        )
            .prop_map(
                |(role, pid, uptime_ms, config_revision, sandbox, degraded)| {
                    WorkerResponse::Pong(Box::new(Pong {
                        role,
                        pid,
                        uptime_ms,
                        config_revision,
                        sandbox,
                        degraded,
                    }))
                }
            ),
        Just(WorkerResponse::Probe(ProbeOutcome::Allowed)),
        (any::<i32>(), text()).prop_map(|(errno, message)| {
            WorkerResponse::Probe(ProbeOutcome::Denied { errno, message })
        }),
        (error_kind(), text())
            .prop_map(|(kind, message)| WorkerResponse::Error(RemoteError { kind, message })),
    ]
}

fn handshake_messages() -> impl Strategy<Value = (ServerHello, ClientHello, HandshakeOutcome)> {
    (
        any::<u16>(),
        text(),
        role(),
        any::<[u8; 32]>(),
        option::of(text()),
    )
        .prop_map(|(protocol_version, build_id, role, bytes, reason)| {
            (
                ServerHello {
                    protocol_version,
                    build_id: build_id.clone(),
                    role,
                    nonce: bytes,
                },
                ClientHello {
                    protocol_version,
                    build_id,
                    role,
                    proof: bytes,
                },
                reason.map_or(HandshakeOutcome::Accepted, |reason| {
                    HandshakeOutcome::Rejected { reason }
                }),
            )
        })
}

/// Encodes, frames, unframes and decodes `value`; checks every step.
fn round_trip<T>(value: &T)
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let payload = encode(value).unwrap();
    assert_eq!(&decode::<T>(&payload).unwrap(), value);

    let mut wire = BytesMut::new();
    FrameCodec::new()
        .encode(payload.clone(), &mut wire)
        .unwrap();
    assert_eq!(wire.len(), payload.len() + 4);
    // The raw tokio-util codec reads the same wire format.
    let mut raw = wire.clone();
    let frame = frame_codec().decode(&mut raw).unwrap().unwrap();
    assert_eq!(frame, payload);

    let frame = FrameCodec::new().decode(&mut wire).unwrap().unwrap();
    assert!(wire.is_empty());
    assert_eq!(&decode::<T>(&frame).unwrap(), value);

    // Any strict prefix is an error, never a panic or a wrong value.
    if !payload.is_empty() {
        let cut = payload.len() / 2;
        assert!(decode::<T>(&payload[..cut]).is_err());
    }
    // One trailing byte is refused.
    let mut longer = payload.to_vec();
    longer.push(0);
    assert!(decode::<T>(&longer).is_err());
}

/// Tries every message type the fuzz target tries; only the absence of a
/// panic matters.
fn decode_all(bytes: &[u8]) {
    let _ = decode::<SupervisorToWorker>(bytes);
    let _ = decode::<WorkerToSupervisor>(bytes);
    let _ = decode::<Envelope<WorkerRequest>>(bytes);
    let _ = decode::<Envelope<WorkerResponse>>(bytes);
    let _ = decode::<ServerHello>(bytes);
    let _ = decode::<ClientHello>(bytes);
    let _ = decode::<HandshakeOutcome>(bytes);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn supervisor_to_worker_round_trips(msg in supervisor_to_worker()) {
        round_trip(&msg);
    }

    #[test]
    fn worker_to_supervisor_round_trips(msg in worker_to_supervisor()) {
        round_trip(&msg);
    }

    #[test]
    fn request_envelopes_round_trip(msg in envelope(worker_request())) {
        round_trip(&msg);
    }

    #[test]
    fn response_envelopes_round_trip(msg in envelope(worker_response())) {
        round_trip(&msg);
    }

    #[test]
    fn handshake_messages_round_trip((server, client, outcome) in handshake_messages()) {
        round_trip(&server);
        round_trip(&client);
        round_trip(&outcome);
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_decoder(bytes in vec(any::<u8>(), 0..512)) {
        decode_all(&bytes);
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_framer(bytes in vec(any::<u8>(), 0..512)) {
        let mut codec = FrameCodec::new();
        let mut buf = BytesMut::from(&bytes[..]);
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(frame)) => decode_all(&frame),
                Ok(None) => {
                    let _ = codec.decode_eof(&mut buf);
                    break;
                }
                Err(_) => break,
            }
        }
    }

    #[test]
    fn mutated_valid_messages_never_panic(
        msg in supervisor_to_worker(),
        flips in vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let mut bytes = encode(&msg).unwrap().to_vec();
        for (index, value) in flips {
            let i = index.index(bytes.len());
            bytes[i] = value;
        }
        decode_all(&bytes);
    }
}

#[test]
fn init_with_default_config_round_trips() {
    let init = SupervisorToWorker::Init(Box::new(WorkerInit {
        protocol_version: revaer_ipc::PROTOCOL_VERSION,
        build_id: revaer_ipc::build_info::build_id(),
        role: Role::Engine,
        secret: BootSecret::from_bytes([42; 32]),
        data_dir: PathBuf::from("/var/lib/revaer"),
        config_revision: 1,
        config: Config::default(),
    }));
    round_trip(&init);
}

#[test]
fn unknown_top_level_variant_is_an_error() {
    // Each enum's variant count is its first unknown index.
    assert!(matches!(
        decode::<SupervisorToWorker>(&[4]),
        Err(IpcError::Decode(_))
    ));
    assert!(matches!(
        decode::<WorkerToSupervisor>(&[3]),
        Err(IpcError::Decode(_))
    ));
    assert!(matches!(
        decode::<HandshakeOutcome>(&[2]),
        Err(IpcError::Decode(_))
    ));
    // Envelope { request_id: 0, traceparent: None, body: variant 2 }.
    assert!(matches!(
        decode::<Envelope<WorkerRequest>>(&[0, 0, 2]),
        Err(IpcError::Decode(_))
    ));
}

#[test]
fn frame_header_claiming_4_gib_is_rejected() {
    let mut buf = BytesMut::from(&[0xff, 0xff, 0xff, 0xff, 1, 2, 3][..]);
    let err = FrameCodec::new().decode(&mut buf).unwrap_err();
    assert!(
        matches!(err, IpcError::FrameTooLarge { len, max } if len == 0xffff_ffff && max == MAX_FRAME_BYTES),
        "{err}"
    );
}

#[test]
fn frame_of_max_plus_one_is_rejected_both_ways() {
    let over = MAX_FRAME_BYTES + 1;
    let mut wire = BytesMut::new();
    let err = FrameCodec::new()
        .encode(bytes::Bytes::from(vec![0u8; over]), &mut wire)
        .unwrap_err();
    assert!(matches!(err, IpcError::FrameTooLarge { len, .. } if len == over));
    assert!(wire.is_empty());

    let mut wire = BytesMut::from(&u32::try_from(over).unwrap().to_be_bytes()[..]);
    let err = FrameCodec::new().decode(&mut wire).unwrap_err();
    assert!(matches!(err, IpcError::FrameTooLarge { len, .. } if len == over));

    // The decoder also refuses a payload over the bound handed to it directly.
    assert!(matches!(
        decode::<Vec<u8>>(&vec![0u8; over]),
        Err(IpcError::FrameTooLarge { .. })
    ));
}

#[test]
fn frame_of_exactly_max_is_accepted() {
    let payload = bytes::Bytes::from(vec![7u8; MAX_FRAME_BYTES]);
    let mut wire = BytesMut::new();
    FrameCodec::new().encode(payload, &mut wire).unwrap();
    let frame = FrameCodec::new().decode(&mut wire).unwrap().unwrap();
    assert_eq!(frame.len(), MAX_FRAME_BYTES);
}

#[test]
fn truncated_frames_are_errors() {
    let payload = encode(&Envelope {
        request_id: 1,
        traceparent: None,
        body: WorkerRequest::Ping,
    })
    .unwrap();
    let mut wire = BytesMut::new();
    FrameCodec::new().encode(payload, &mut wire).unwrap();
    for cut in 1..wire.len() {
        let mut codec = FrameCodec::new();
        let mut partial = BytesMut::from(&wire[..cut]);
        assert!(codec.decode(&mut partial).unwrap().is_none(), "cut {cut}");
        assert!(
            matches!(
                codec.decode_eof(&mut partial),
                Err(IpcError::TruncatedFrame { .. })
            ),
            "cut {cut}"
        );
    }
}

#[test]
fn trailing_bytes_are_rejected() {
    let mut bytes = encode(&WorkerToSupervisor::ConfigApplied { revision: 9 })
        .unwrap()
        .to_vec();
    bytes.extend_from_slice(&[0, 0]);
    let err = decode::<WorkerToSupervisor>(&bytes).unwrap_err();
    assert!(
        matches!(err, IpcError::Decode(ref m) if m.contains("2 trailing")),
        "{err}"
    );
}
