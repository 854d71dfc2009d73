//! `revaer-libtorrent-sys`: Revaer's own safe bridge (built with `cxx`) to the
//! system's libtorrent-rasterbar 2.0. The engine worker drives libtorrent
//! only through this crate; it is the one crate of the workspace that
//! contains `unsafe` (confined to `ffi.rs`). See `docs/adr/004-libtorrent-bridge.md`.
//!
//! - [`Session`] owns an `lt::session` (`Send + Sync`); torrents are named by
//!   [`TorrentId`] (v1 info-hash, or truncated v2 hash for v2-only torrents).
//! - [`Alert`] is an owned copy of a libtorrent alert, drained with
//!   [`Session::wait_for_alert`] / [`Session::pop_alerts`].
//! - [`parse_torrent`], [`parse_magnet`] and [`create_torrent`] work without a
//!   session.
//! - Every C++ exception and libtorrent `error_code` comes back as [`Error`].
//!
//! Build: needs `libtorrent-rasterbar-dev` and `pkg-config` (see `build.rs`).

mod alert;
mod error;
mod ffi;
mod metainfo;
mod session;
mod types;

pub use alert::{Alert, TrackerErrorKind};
pub use error::Error;
pub use metainfo::{
    CreateTorrentOptions, TorrentFormat, create_torrent, create_torrent_with, parse_magnet,
    parse_torrent,
};
pub use session::Session;
pub use types::{
    AddTorrentParams, FileEntry, MagnetInfo, ParseTorrentIdError, PeerInfo, SessionSettings,
    TorrentId, TorrentInfo, TorrentSource, TorrentState, TorrentStatus, TrackerInfo,
};

/// Largest `.torrent` file accepted (10 MiB).
pub const MAX_TORRENT_BYTES: usize = 10 * 1024 * 1024;
/// Largest resume data accepted (16 MiB: an embedded info dictionary of up to
/// 10 MiB plus piece bitfields and peer lists).
pub const MAX_RESUME_DATA_BYTES: usize = 16 * 1024 * 1024;
/// Longest magnet link accepted (8 KiB).
pub const MAX_MAGNET_BYTES: usize = 8 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn session_is_send_and_sync() {
        assert_send_sync::<Session>();
    }
}
