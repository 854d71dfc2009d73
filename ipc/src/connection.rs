//! Typed, framed connections over any async byte stream.
//!
//! [`Connection`] owns a stream and speaks whole messages: [`encode`]d
//! values in bounded frames ([`FrameCodec`]). It can be split into a
//! [`ConnectionReader`] and a [`ConnectionWriter`] for full-duplex use (one
//! task reading events while another sends requests).
//!
//! Treat every error except [`IpcError::Timeout`] as the end of the
//! connection and drop it: a peer that sent a malformed message is not
//! trusted further, and after a framing error (oversized or truncated frame,
//! I/O failure) the reader has lost sync and later `recv` calls return
//! `Ok(None)`.
//!
//! Receiving is cancel-safe: dropping a pending `recv` (for example when a
//! `select!` branch or [`recv_timeout`](Connection::recv_timeout) fires)
//! loses no data; the partial frame stays buffered for the next call.
//!
//! [`encode`]: crate::codec::encode

use std::time::Duration;

use bytes::BytesMut;
use futures_util::{SinkExt, StreamExt};
use serde::{Serialize, de::DeserializeOwned};
use tokio::io::{AsyncRead, AsyncWrite, ReadHalf, WriteHalf};
use tokio_util::codec::{Framed, FramedParts, FramedWrite};

use crate::{codec, error::IpcError, frame::FrameCodec};

/// A bidirectional, message-oriented IPC connection.
#[derive(Debug)]
pub struct Connection<S> {
    framed: Framed<S, FrameCodec>,
}

/// The receiving half of a split [`Connection`].
#[derive(Debug)]
pub struct ConnectionReader<R> {
    framed: Framed<R, FrameCodec>,
}

/// The sending half of a split [`Connection`].
#[derive(Debug)]
pub struct ConnectionWriter<W> {
    framed: FramedWrite<W, FrameCodec>,
}

fn decode_frame<T: DeserializeOwned>(
    frame: Option<Result<BytesMut, IpcError>>,
) -> Result<Option<T>, IpcError> {
    match frame {
        None => Ok(None),
        Some(frame) => codec::decode(&frame?).map(Some),
    }
}

async fn with_timeout<T, F>(d: Duration, recv: F) -> Result<T, IpcError>
where
    F: Future<Output = Result<Option<T>, IpcError>>,
{
    match tokio::time::timeout(d, recv).await {
        Err(_elapsed) => Err(IpcError::Timeout),
        Ok(Ok(None)) => Err(IpcError::Closed),
        Ok(Ok(Some(v))) => Ok(v),
        Ok(Err(e)) => Err(e),
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    /// Wraps a connected byte stream.
    pub fn new(io: S) -> Self {
        Self {
            framed: Framed::new(io, FrameCodec::new()),
        }
    }

    /// Encodes, sends and flushes one message. A message whose encoding is
    /// larger than [`MAX_FRAME_BYTES`](crate::frame::MAX_FRAME_BYTES) fails
    /// with [`IpcError::FrameTooLarge`] and nothing is sent.
    pub async fn send<T: Serialize>(&mut self, msg: &T) -> Result<(), IpcError> {
        let bytes = codec::encode(msg)?;
        self.framed.send(bytes).await
    }

    /// Queues one message without flushing (it may still be written when the
    /// buffer fills). Call [`flush`](Self::flush) to push queued messages.
    pub async fn feed<T: Serialize>(&mut self, msg: &T) -> Result<(), IpcError> {
        let bytes = codec::encode(msg)?;
        self.framed.feed(bytes).await
    }

    /// Writes out every queued message.
    pub async fn flush(&mut self) -> Result<(), IpcError> {
        self.framed.flush().await
    }

    /// Receives one message; `Ok(None)` when the peer closed the stream
    /// cleanly between frames. Cancel-safe.
    pub async fn recv<T: DeserializeOwned>(&mut self) -> Result<Option<T>, IpcError> {
        decode_frame(self.framed.next().await)
    }

    /// Receives one message within `d`: end of stream is
    /// [`IpcError::Closed`], expiry is [`IpcError::Timeout`] (the connection
    /// stays usable after a timeout).
    pub async fn recv_timeout<T: DeserializeOwned>(&mut self, d: Duration) -> Result<T, IpcError> {
        with_timeout(d, self.recv()).await
    }

    /// Splits into independently usable halves (via [`tokio::io::split`]).
    /// Bytes already received but not yet decoded go to the reader.
    pub fn into_split(
        self,
    ) -> (
        ConnectionReader<ReadHalf<S>>,
        ConnectionWriter<WriteHalf<S>>,
    ) {
        let parts = self.framed.into_parts();
        let (read_half, write_half) = tokio::io::split(parts.io);
        let mut read_parts = FramedParts::new::<bytes::Bytes>(read_half, parts.codec);
        read_parts.read_buf = parts.read_buf;
        let mut writer = FramedWrite::new(write_half, FrameCodec::new());
        // Always empty (every send flushes), but keep it correct anyway.
        writer
            .write_buffer_mut()
            .extend_from_slice(&parts.write_buf);
        (
            ConnectionReader {
                framed: Framed::from_parts(read_parts),
            },
            ConnectionWriter { framed: writer },
        )
    }

    /// The underlying stream (e.g. to read peer credentials).
    pub fn get_ref(&self) -> &S {
        self.framed.get_ref()
    }
}

impl<R: AsyncRead + Unpin> ConnectionReader<R> {
    /// Wraps a readable byte stream.
    pub fn new(io: R) -> Self {
        Self {
            framed: Framed::from_parts(FramedParts::new::<bytes::Bytes>(io, FrameCodec::new())),
        }
    }

    /// Same as [`Connection::recv`].
    pub async fn recv<T: DeserializeOwned>(&mut self) -> Result<Option<T>, IpcError> {
        decode_frame(self.framed.next().await)
    }

    /// Same as [`Connection::recv_timeout`].
    pub async fn recv_timeout<T: DeserializeOwned>(&mut self, d: Duration) -> Result<T, IpcError> {
        with_timeout(d, self.recv()).await
    }

    /// The underlying stream.
    pub fn get_ref(&self) -> &R {
        self.framed.get_ref()
    }
}

impl<W: AsyncWrite + Unpin> ConnectionWriter<W> {
    /// Wraps a writable byte stream.
    pub fn new(io: W) -> Self {
        Self {
            framed: FramedWrite::new(io, FrameCodec::new()),
        }
    }

    /// Same as [`Connection::send`].
    pub async fn send<T: Serialize>(&mut self, msg: &T) -> Result<(), IpcError> {
        let bytes = codec::encode(msg)?;
        self.framed.send(bytes).await
    }

    /// Same as [`Connection::feed`].
    pub async fn feed<T: Serialize>(&mut self, msg: &T) -> Result<(), IpcError> {
        let bytes = codec::encode(msg)?;
        self.framed.feed(bytes).await
    }

    /// Same as [`Connection::flush`].
    pub async fn flush(&mut self) -> Result<(), IpcError> {
        self.framed.flush().await
    }

    /// The underlying stream.
    pub fn get_ref(&self) -> &W {
        self.framed.get_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::MAX_FRAME_BYTES;
    use crate::protocol::{Envelope, WorkerRequest};
    use tokio::io::AsyncWriteExt;

    fn ping(id: u64) -> Envelope<WorkerRequest> {
        Envelope {
            request_id: id,
            traceparent: None,
            body: WorkerRequest::Ping,
        }
    }

    #[tokio::test]
    async fn send_and_recv() {
        let (a, b) = tokio::io::duplex(1024);
        let (mut a, mut b) = (Connection::new(a), Connection::new(b));
        a.send(&ping(1)).await.unwrap();
        a.send(&ping(2)).await.unwrap();
        assert_eq!(b.recv().await.unwrap(), Some(ping(1)));
        assert_eq!(
            b.recv_timeout::<Envelope<WorkerRequest>>(Duration::from_secs(5))
                .await
                .unwrap(),
            ping(2)
        );
        drop(a);
        assert_eq!(b.recv::<Envelope<WorkerRequest>>().await.unwrap(), None);
    }

    #[tokio::test]
    async fn recv_timeout_reports_closed_on_eof() {
        let (a, b) = tokio::io::duplex(64);
        drop(a);
        let mut b = Connection::new(b);
        assert!(matches!(
            b.recv_timeout::<u8>(Duration::from_secs(5)).await,
            Err(IpcError::Closed)
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn recv_timeout_expires_and_connection_survives() {
        let (a, b) = tokio::io::duplex(64);
        let (mut a, mut b) = (Connection::new(a), Connection::new(b));
        assert!(matches!(
            b.recv_timeout::<u8>(Duration::from_millis(50)).await,
            Err(IpcError::Timeout)
        ));
        a.send(&7u8).await.unwrap();
        assert_eq!(
            b.recv_timeout::<u8>(Duration::from_millis(50))
                .await
                .unwrap(),
            7
        );
    }

    #[tokio::test]
    async fn partial_frame_survives_a_timeout() {
        let (mut raw, b) = tokio::io::duplex(64);
        let mut b = Connection::new(b);
        let payload = codec::encode(&ping(9)).unwrap();
        let len = u32::try_from(payload.len()).unwrap().to_be_bytes();
        raw.write_all(&len).await.unwrap();
        raw.write_all(&payload[..2]).await.unwrap();
        assert!(matches!(
            b.recv_timeout::<Envelope<WorkerRequest>>(Duration::from_millis(20))
                .await,
            Err(IpcError::Timeout)
        ));
        raw.write_all(&payload[2..]).await.unwrap();
        assert_eq!(b.recv().await.unwrap(), Some(ping(9)));
    }

    #[tokio::test]
    async fn truncated_frame_is_an_error_not_eof() {
        let (mut raw, b) = tokio::io::duplex(64);
        let mut b = Connection::new(b);
        raw.write_all(&[0, 0, 0, 10, 1, 2, 3]).await.unwrap();
        drop(raw);
        assert!(matches!(
            b.recv::<Vec<u8>>().await,
            Err(IpcError::TruncatedFrame { buffered: 3 })
        ));
    }

    #[tokio::test]
    async fn oversized_header_is_rejected_on_receive() {
        let (mut raw, b) = tokio::io::duplex(64);
        let mut b = Connection::new(b);
        raw.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
        assert!(matches!(
            b.recv::<u8>().await,
            Err(IpcError::FrameTooLarge { .. })
        ));
        let (mut raw, b) = tokio::io::duplex(64);
        let mut b = Connection::new(b);
        let over = u32::try_from(MAX_FRAME_BYTES + 1).unwrap();
        raw.write_all(&over.to_be_bytes()).await.unwrap();
        assert!(matches!(
            b.recv::<u8>().await,
            Err(IpcError::FrameTooLarge { len, .. }) if len == MAX_FRAME_BYTES + 1
        ));
    }

    #[tokio::test]
    async fn garbage_payload_is_a_decode_error() {
        let (mut raw, b) = tokio::io::duplex(64);
        let mut b = Connection::new(b);
        raw.write_all(&[0, 0, 0, 3, 0xff, 0xff, 0xff])
            .await
            .unwrap();
        assert!(matches!(
            b.recv::<Envelope<WorkerRequest>>().await,
            Err(IpcError::Decode(_))
        ));
    }

    #[tokio::test]
    async fn split_halves_keep_buffered_frames() {
        let (a, b) = tokio::io::duplex(4096);
        let (mut a, mut b) = (Connection::new(a), Connection::new(b));
        // Two frames arrive; the first recv buffers both.
        a.feed(&ping(1)).await.unwrap();
        a.feed(&ping(2)).await.unwrap();
        a.flush().await.unwrap();
        assert_eq!(b.recv().await.unwrap(), Some(ping(1)));
        let (mut rb, mut wb) = b.into_split();
        assert_eq!(rb.recv().await.unwrap(), Some(ping(2)));
        wb.send(&ping(3)).await.unwrap();
        assert_eq!(a.recv().await.unwrap(), Some(ping(3)));
        let (mut ra, mut wa) = a.into_split();
        wa.send(&ping(4)).await.unwrap();
        assert_eq!(
            rb.recv_timeout::<Envelope<WorkerRequest>>(Duration::from_secs(5))
                .await
                .unwrap(),
            ping(4)
        );
        drop(wb);
        drop(rb);
        assert_eq!(ra.recv::<Envelope<WorkerRequest>>().await.unwrap(), None);
    }

    #[tokio::test]
    async fn oversized_message_is_not_sent() {
        let (a, b) = tokio::io::duplex(64);
        let (mut a, mut b) = (Connection::new(a), Connection::new(b));
        let big = vec![1u8; MAX_FRAME_BYTES];
        assert!(matches!(
            a.send(&big).await,
            Err(IpcError::FrameTooLarge { .. })
        ));
        a.send(&5u8).await.unwrap();
        // The first frame on the wire is the small one.
        assert_eq!(b.recv::<u8>().await.unwrap(), Some(5));
    }
}
