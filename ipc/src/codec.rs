//! Message serialization: the only module that names the wire format.
//!
//! Today that format is bincode 2 (`=2.0.1`, standard config: little-endian,
//! variable-length integers); see ADR 002 for why, and for the candidates to
//! replace it. Callers only see [`encode`] / [`decode`] and [`IpcError`], so a
//! swap touches this file alone (plus a [`PROTOCOL_VERSION`] bump).
//!
//! Decoding treats its input as hostile: it never panics, never allocates
//! past [`MAX_FRAME_BYTES`] (the bincode limit is the frame bound), rejects
//! unknown enum variants, and rejects trailing bytes after the value.
//!
//! [`PROTOCOL_VERSION`]: crate::protocol::PROTOCOL_VERSION

use bincode::config::{Configuration, Limit, LittleEndian, Varint};
use bytes::Bytes;
use serde::{Serialize, de::DeserializeOwned};

use crate::{error::IpcError, frame::MAX_FRAME_BYTES};

type WireConfig = Configuration<LittleEndian, Varint, Limit<MAX_FRAME_BYTES>>;

const fn wire_config() -> WireConfig {
    bincode::config::standard().with_limit::<MAX_FRAME_BYTES>()
}

/// Encodes one message into a frame payload.
///
/// Fails with [`IpcError::FrameTooLarge`] when the encoding exceeds
/// [`MAX_FRAME_BYTES`]; such a message can never be sent.
pub fn encode<T: Serialize>(value: &T) -> Result<Bytes, IpcError> {
    let bytes = bincode::serde::encode_to_vec(value, wire_config())
        .map_err(|e| IpcError::Encode(e.to_string()))?;
    if bytes.len() > MAX_FRAME_BYTES {
        return Err(IpcError::FrameTooLarge {
            len: bytes.len(),
            max: MAX_FRAME_BYTES,
        });
    }
    Ok(Bytes::from(bytes))
}

/// Decodes one message from a whole frame payload.
///
/// The payload must hold exactly one value: trailing bytes are an error.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, IpcError> {
    if bytes.len() > MAX_FRAME_BYTES {
        return Err(IpcError::FrameTooLarge {
            len: bytes.len(),
            max: MAX_FRAME_BYTES,
        });
    }
    let (value, read) = bincode::serde::decode_from_slice::<T, _>(bytes, wire_config())
        .map_err(|e| IpcError::Decode(e.to_string()))?;
    if read != bytes.len() {
        return Err(IpcError::Decode(format!(
            "{} trailing bytes after the message",
            bytes.len() - read
        )));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{ErrorKind, Role, WorkerRequest};

    #[test]
    fn round_trips_a_simple_value() {
        let bytes = encode(&WorkerRequest::Ping).unwrap();
        assert_eq!(
            decode::<WorkerRequest>(&bytes).unwrap(),
            WorkerRequest::Ping
        );
    }

    #[test]
    fn rejects_trailing_bytes() {
        let mut bytes = encode(&Role::Engine).unwrap().to_vec();
        bytes.push(0);
        let err = decode::<Role>(&bytes).unwrap_err();
        assert!(
            matches!(err, IpcError::Decode(ref m) if m.contains("trailing")),
            "{err}"
        );
    }

    #[test]
    fn rejects_unknown_variant() {
        // Role has 4 variants; index 200 (varint: single byte < 251) is unknown.
        assert!(matches!(decode::<Role>(&[200]), Err(IpcError::Decode(_))));
        assert!(matches!(
            decode::<ErrorKind>(&[3]),
            Err(IpcError::Decode(_))
        ));
    }

    #[test]
    fn rejects_empty_and_truncated_input() {
        assert!(decode::<Role>(&[]).is_err());
        let bytes = encode(&"a string of some length".to_owned()).unwrap();
        assert!(decode::<String>(&bytes[..bytes.len() - 1]).is_err());
    }

    #[test]
    fn huge_length_prefix_is_refused_by_the_limit() {
        // Varint u64 marker (253) followed by u64::MAX as a Vec length.
        let mut bytes = vec![253u8];
        bytes.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(decode::<Vec<u8>>(&bytes).is_err());
        assert!(decode::<String>(&bytes).is_err());
        // A length just over the frame bound.
        let mut bytes = vec![252u8];
        bytes.extend_from_slice(&(u32::try_from(MAX_FRAME_BYTES).unwrap() + 1).to_le_bytes());
        assert!(decode::<Vec<u8>>(&bytes).is_err());
    }

    #[test]
    fn encoding_past_the_bound_is_refused() {
        let big = vec![0u8; MAX_FRAME_BYTES];
        // Length prefix pushes the encoding one varint past the bound.
        assert!(matches!(encode(&big), Err(IpcError::FrameTooLarge { .. })));
    }
}
