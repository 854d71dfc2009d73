//! The one error type of the IPC crate, [`IpcError`].
//!
//! Messages are meant for operators' logs: they say what went wrong on the
//! wire without ever including secrets, proofs or frame contents.

/// Everything that can go wrong while speaking Revaer IPC.
#[derive(Debug, thiserror::Error)]
pub enum IpcError {
    /// An operating-system level I/O failure (socket, file, fd).
    #[error("ipc i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// A frame (incoming header or outgoing payload) exceeds the hard bound.
    #[error("frame of {len} bytes exceeds the {max}-byte limit")]
    FrameTooLarge { len: usize, max: usize },
    /// The stream ended in the middle of a frame.
    #[error("stream ended inside a frame ({buffered} bytes of it were received)")]
    TruncatedFrame { buffered: usize },
    /// A frame's payload is not a valid encoding of the expected message.
    #[error("cannot decode message: {0}")]
    Decode(String),
    /// A message could not be encoded.
    #[error("cannot encode message: {0}")]
    Encode(String),
    /// The peer closed the connection while a message was still expected.
    #[error("peer closed the connection")]
    Closed,
    /// The handshake was refused (by us or by the peer); the message says why.
    #[error("handshake failed: {0}")]
    Handshake(String),
    /// The peer process runs as another user than expected.
    #[error("peer runs as uid {actual}, expected uid {expected}")]
    PeerUid { expected: u32, actual: u32 },
    /// The peer did not answer in time.
    #[error("timed out waiting for the peer")]
    Timeout,
    /// A well-formed message arrived where another was expected.
    #[error("unexpected message: {0}")]
    UnexpectedMessage(&'static str),
    /// The control channel handed to a worker is not what it must be.
    #[error("control channel: {0}")]
    Control(String),
}
