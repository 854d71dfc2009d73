//! Fuzz target: arbitrary bytes as they would arrive on an IPC socket.
//!
//! The input goes through the length-delimited frame decoder (both the raw
//! `tokio-util` codec and the typed `FrameCodec`), and every frame, plus the
//! whole input taken as one payload, through `codec::decode` for each message
//! type a peer may send. Any panic, abort or out-of-memory is a bug: the
//! decoder must turn hostile input into an error.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use revaer_ipc::codec::decode;
use revaer_ipc::frame::{FrameCodec, frame_codec};
use revaer_ipc::{
    ClientHello, Envelope, HandshakeOutcome, ServerHello, SupervisorToWorker, WorkerRequest,
    WorkerResponse, WorkerToSupervisor,
};
use tokio_util::codec::Decoder;

fn decode_all(payload: &[u8]) {
    let _ = decode::<SupervisorToWorker>(payload);
    let _ = decode::<WorkerToSupervisor>(payload);
    let _ = decode::<Envelope<WorkerRequest>>(payload);
    let _ = decode::<Envelope<WorkerResponse>>(payload);
    let _ = decode::<ClientHello>(payload);
    let _ = decode::<ServerHello>(payload);
    let _ = decode::<HandshakeOutcome>(payload);
}

fuzz_target!(|data: &[u8]| {
    // Framed, with the typed codec the connections use.
    let mut codec = FrameCodec::new();
    let mut buf = BytesMut::from(data);
    let mut frames = Vec::new();
    loop {
        match codec.decode(&mut buf) {
            Ok(Some(frame)) => {
                decode_all(&frame);
                frames.push(frame);
            }
            Ok(None) => {
                let _ = codec.decode_eof(&mut buf);
                break;
            }
            Err(_) => break,
        }
    }

    // The raw tokio-util codec must find exactly the same frames.
    let mut raw = frame_codec();
    let mut raw_buf = BytesMut::from(data);
    let mut raw_frames = Vec::new();
    while let Ok(Some(frame)) = raw.decode(&mut raw_buf) {
        raw_frames.push(frame);
    }
    assert_eq!(frames, raw_frames, "typed and raw framing disagree");

    // Unframed: the whole input as one payload.
    decode_all(data);
});
