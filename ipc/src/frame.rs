//! Length-delimited framing with a hard size bound.
//!
//! Every IPC byte stream is a sequence of frames: a big-endian `u32` payload
//! length followed by that many bytes. [`frame_codec`] is the plain
//! `tokio-util` codec configured for this; [`FrameCodec`] wraps it to report
//! oversized and truncated frames as typed [`IpcError`]s (with the claimed
//! length) instead of opaque I/O errors. A header claiming more than
//! [`MAX_FRAME_BYTES`] is refused before any buffer is reserved for it.

use bytes::{Buf, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder, LengthDelimitedCodec};

use crate::error::IpcError;

/// Largest payload a frame may carry (16 MiB). Applies in both directions.
pub const MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;

/// Size of the length prefix.
pub const FRAME_HEADER_BYTES: usize = 4;

/// The raw frame codec: `u32` big-endian length prefix (not counting
/// itself), payload at most [`MAX_FRAME_BYTES`].
#[must_use]
pub fn frame_codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .length_field_type::<u32>()
        .big_endian()
        .max_frame_length(MAX_FRAME_BYTES)
        .new_codec()
}

/// [`frame_codec`] with typed errors; what [`Connection`](crate::Connection)
/// uses. Wire format is identical.
#[derive(Debug)]
pub struct FrameCodec {
    inner: LengthDelimitedCodec,
    /// True while the next bytes in the buffer are a length header (the
    /// inner codec has not consumed the header of a pending frame).
    at_header: bool,
}

impl Default for FrameCodec {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameCodec {
    #[must_use]
    pub fn new() -> Self {
        Self {
            inner: frame_codec(),
            at_header: true,
        }
    }
}

impl Decoder for FrameCodec {
    type Item = BytesMut;
    type Error = IpcError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<BytesMut>, IpcError> {
        if self.at_header
            && let Some(header) = src.get(..FRAME_HEADER_BYTES)
        {
            let mut header = header;
            let claimed = usize::try_from(header.get_u32()).unwrap_or(usize::MAX);
            if claimed > MAX_FRAME_BYTES {
                return Err(IpcError::FrameTooLarge {
                    len: claimed,
                    max: MAX_FRAME_BYTES,
                });
            }
        }
        let before = src.len();
        let frame = self.inner.decode(src)?;
        if frame.is_some() {
            self.at_header = true;
        } else if src.len() < before {
            // The inner codec consumed a header and waits for the payload.
            self.at_header = false;
        }
        Ok(frame)
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<BytesMut>, IpcError> {
        match self.decode(src)? {
            Some(frame) => Ok(Some(frame)),
            None if src.is_empty() && self.at_header => Ok(None),
            None => Err(IpcError::TruncatedFrame {
                buffered: src.len(),
            }),
        }
    }
}

impl Encoder<Bytes> for FrameCodec {
    type Error = IpcError;

    fn encode(&mut self, item: Bytes, dst: &mut BytesMut) -> Result<(), IpcError> {
        if item.len() > MAX_FRAME_BYTES {
            return Err(IpcError::FrameTooLarge {
                len: item.len(),
                max: MAX_FRAME_BYTES,
            });
        }
        self.inner.encode(item, dst)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(len: u32) -> BytesMut {
        BytesMut::from(&len.to_be_bytes()[..])
    }

    #[test]
    fn round_trips_a_frame() {
        let mut codec = FrameCodec::new();
        let mut buf = BytesMut::new();
        codec
            .encode(Bytes::from_static(b"hello"), &mut buf)
            .unwrap();
        assert_eq!(&buf[..], b"\0\0\0\x05hello");
        let frame = codec.decode(&mut buf).unwrap().unwrap();
        assert_eq!(&frame[..], b"hello");
        assert!(buf.is_empty());
    }

    #[test]
    fn rejects_a_4_gib_header_without_allocating() {
        let mut codec = FrameCodec::new();
        let mut buf = header(u32::MAX);
        let err = codec.decode(&mut buf).unwrap_err();
        assert!(matches!(
            err,
            IpcError::FrameTooLarge { len, max: MAX_FRAME_BYTES } if len == u32::MAX as usize
        ));
        assert!(buf.capacity() < 1024, "no buffer was reserved");
        // The raw codec refuses it too.
        let mut raw = frame_codec();
        let mut buf = header(u32::MAX);
        assert!(raw.decode(&mut buf).is_err());
    }

    #[test]
    fn rejects_max_plus_one_header_and_accepts_max() {
        let mut codec = FrameCodec::new();
        let mut buf = header(u32::try_from(MAX_FRAME_BYTES + 1).unwrap());
        assert!(matches!(
            codec.decode(&mut buf),
            Err(IpcError::FrameTooLarge { .. })
        ));
        let mut codec = FrameCodec::new();
        let mut buf = header(u32::try_from(MAX_FRAME_BYTES).unwrap());
        assert!(codec.decode(&mut buf).unwrap().is_none());
    }

    #[test]
    fn refuses_to_encode_max_plus_one() {
        let mut codec = FrameCodec::new();
        let mut buf = BytesMut::new();
        let big = Bytes::from(vec![0u8; MAX_FRAME_BYTES + 1]);
        assert!(matches!(
            codec.encode(big, &mut buf),
            Err(IpcError::FrameTooLarge { len, .. }) if len == MAX_FRAME_BYTES + 1
        ));
        assert!(buf.is_empty(), "nothing was written");
    }

    #[test]
    fn payload_bytes_that_look_like_a_huge_header_are_not_misread() {
        let mut codec = FrameCodec::new();
        // Header for an 8-byte payload, then only the first 4 payload bytes,
        // which happen to read as 0xFFFF_FFFF.
        let mut buf = header(8);
        buf.extend_from_slice(&[0xff; 4]);
        assert!(codec.decode(&mut buf).unwrap().is_none());
        buf.extend_from_slice(&[0xff; 4]);
        let frame = codec.decode(&mut buf).unwrap().unwrap();
        assert_eq!(&frame[..], &[0xff; 8]);
    }

    #[test]
    fn truncated_frames_are_errors_at_eof() {
        // Partial header.
        let mut codec = FrameCodec::new();
        let mut buf = BytesMut::from(&[0u8, 0][..]);
        assert!(matches!(
            codec.decode_eof(&mut buf),
            Err(IpcError::TruncatedFrame { buffered: 2 })
        ));
        // Full header, partial payload.
        let mut codec = FrameCodec::new();
        let mut buf = header(10);
        buf.extend_from_slice(b"abc");
        assert!(matches!(
            codec.decode_eof(&mut buf),
            Err(IpcError::TruncatedFrame { buffered: 3 })
        ));
        // Clean EOF.
        let mut codec = FrameCodec::new();
        let mut buf = BytesMut::new();
        assert!(codec.decode_eof(&mut buf).unwrap().is_none());
    }
}
