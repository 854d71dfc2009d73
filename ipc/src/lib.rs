//! Revaer's inter-process communication: the protocol every process speaks.
//!
//! - [`protocol`]: wire types only, no I/O.
//! - [`codec`]: the one module that knows the serialization format (bincode
//!   2, see ADR 002), so it can be swapped without touching callers.
//! - [`frame`] / [`connection`]: length-delimited frames with a hard size
//!   bound, and a typed connection over any async byte stream.
//! - [`secret`] / [`handshake`]: the per-boot secret and the versioned,
//!   authenticated handshake of data channels.
//! - [`transport`]: named Unix sockets under `<data>/run/` and peer
//!   credential checks; [`control`]: the inherited control socketpair.

pub mod build_info;
pub mod codec;
pub mod connection;
pub mod control;
pub mod engine;
pub mod error;
pub mod frame;
pub mod fsops;
pub mod handshake;
pub mod protocol;
pub mod secret;
pub mod trace;
pub mod transport;

pub use connection::Connection;
pub use error::IpcError;
pub use protocol::*;
pub use secret::BootSecret;
