//! Plain Rust value types of the public API (ids, settings, add parameters,
//! status and metadata snapshots) and their conversions from the bridge's
//! shared structs.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

use crate::ffi::bridge;

/// A torrent's id: its v1 info-hash, or, when it was added without one (a
/// v2-only torrent, a `urn:btmh:` magnet), its v2 info-hash (SHA-256)
/// truncated to 20 bytes. A torrent keeps the id it was added under for its
/// whole life in a session: a `urn:btmh:` magnet of a hybrid torrent stays
/// under its truncated v2 id after the metadata shows the v1 hash (see
/// `Session::add_torrent`). libtorrent's session indexes every torrent
/// under both hashes, so either form finds it.
///
/// Displays and parses as 40 hex digits (displayed lowercase; parsing also
/// accepts uppercase).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TorrentId([u8; 20]);

impl TorrentId {
    /// Wraps raw hash bytes.
    #[must_use]
    pub const fn new(bytes: [u8; 20]) -> Self {
        Self(bytes)
    }

    /// The raw hash bytes.
    #[must_use]
    pub const fn as_bytes(&self) -> &[u8; 20] {
        &self.0
    }

    pub(crate) fn from_ffi(id: &bridge::FfiId) -> Self {
        Self(id.bytes)
    }

    pub(crate) fn to_ffi(self) -> bridge::FfiId {
        bridge::FfiId { bytes: self.0 }
    }
}

impl From<[u8; 20]> for TorrentId {
    fn from(bytes: [u8; 20]) -> Self {
        Self(bytes)
    }
}

impl fmt::Display for TorrentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for TorrentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TorrentId({self})")
    }
}

/// `TorrentId::from_str` failed: not exactly 40 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a torrent id is 40 hex digits")]
pub struct ParseTorrentIdError;

impl FromStr for TorrentId {
    type Err = ParseTorrentIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let digits = s.as_bytes();
        if digits.len() != 40 {
            return Err(ParseTorrentIdError);
        }
        let mut bytes = [0_u8; 20];
        for (byte, pair) in bytes.iter_mut().zip(digits.chunks_exact(2)) {
            let high = hex_value(pair[0]).ok_or(ParseTorrentIdError)?;
            let low = hex_value(pair[1]).ok_or(ParseTorrentIdError)?;
            *byte = (high << 4) | low;
        }
        Ok(Self(bytes))
    }
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

/// Session-wide settings. Applied whole by `Session::new` and
/// `Session::apply_settings`.
#[allow(
    clippy::struct_excessive_bools,
    reason = "mirrors libtorrent's independent on/off settings"
)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSettings {
    /// libtorrent `listen_interfaces`, e.g. `"0.0.0.0:6881"` or
    /// `"127.0.0.1:0"` (port 0: read the port back with `listen_port`).
    pub listen_interfaces: String,
    pub enable_dht: bool,
    pub enable_lsd: bool,
    pub enable_upnp: bool,
    pub enable_natpmp: bool,
    /// uTP in both directions (`enable_outgoing_utp` and
    /// `enable_incoming_utp`). Keep it off for loopback: ~28x slower there.
    pub enable_utp: bool,
    /// Bytes per second, 0 = unlimited.
    pub download_rate_limit: i32,
    /// Bytes per second, 0 = unlimited.
    pub upload_rate_limit: i32,
    /// Global connection limit; 0 lets libtorrent derive it from the
    /// process's file-descriptor limit.
    pub connections_limit: i32,
    pub allow_multiple_connections_per_ip: bool,
    /// libtorrent `outgoing_interfaces`: the device names or addresses
    /// outgoing peer and tracker connections bind to (comma-separated);
    /// empty lets the routing table choose. A named device that is missing
    /// makes those connections fail rather than leave through another one.
    pub outgoing_interfaces: String,
    /// HTTP user agent for trackers and web seeds; empty keeps libtorrent's.
    pub user_agent: String,
}

impl Default for SessionSettings {
    /// Everything off or unlimited, listening on `0.0.0.0:6881`, uTP on.
    fn default() -> Self {
        Self {
            listen_interfaces: "0.0.0.0:6881".to_owned(),
            enable_dht: false,
            enable_lsd: false,
            enable_upnp: false,
            enable_natpmp: false,
            enable_utp: true,
            download_rate_limit: 0,
            upload_rate_limit: 0,
            connections_limit: 0,
            allow_multiple_connections_per_ip: false,
            outgoing_interfaces: String::new(),
            user_agent: concat!("Revaer/", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }
}

impl SessionSettings {
    /// Settings for tests and benchmarks: listen on `127.0.0.1:0`, no DHT,
    /// LSD, `UPnP`, NAT-PMP or uTP, several connections per IP allowed.
    #[must_use]
    pub fn loopback() -> Self {
        Self {
            listen_interfaces: "127.0.0.1:0".to_owned(),
            enable_utp: false,
            allow_multiple_connections_per_ip: true,
            ..Self::default()
        }
    }

    pub(crate) fn from_ffi(s: &bridge::FfiSettings) -> Self {
        Self {
            listen_interfaces: s.listen_interfaces.clone(),
            enable_dht: s.enable_dht,
            enable_lsd: s.enable_lsd,
            enable_upnp: s.enable_upnp,
            enable_natpmp: s.enable_natpmp,
            enable_utp: s.enable_utp,
            download_rate_limit: s.download_rate_limit,
            upload_rate_limit: s.upload_rate_limit,
            connections_limit: s.connections_limit,
            allow_multiple_connections_per_ip: s.allow_multiple_connections_per_ip,
            outgoing_interfaces: s.outgoing_interfaces.clone(),
            user_agent: s.user_agent.clone(),
        }
    }

    pub(crate) fn to_ffi(&self) -> bridge::FfiSettings {
        bridge::FfiSettings {
            listen_interfaces: self.listen_interfaces.clone(),
            enable_dht: self.enable_dht,
            enable_lsd: self.enable_lsd,
            enable_upnp: self.enable_upnp,
            enable_natpmp: self.enable_natpmp,
            enable_utp: self.enable_utp,
            download_rate_limit: self.download_rate_limit,
            upload_rate_limit: self.upload_rate_limit,
            connections_limit: self.connections_limit,
            allow_multiple_connections_per_ip: self.allow_multiple_connections_per_ip,
            outgoing_interfaces: self.outgoing_interfaces.clone(),
            user_agent: self.user_agent.clone(),
        }
    }
}

/// Where a torrent comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum TorrentSource {
    /// A `magnet:` URI (at most [`crate::MAX_MAGNET_BYTES`]).
    Magnet(String),
    /// The bytes of a `.torrent` file (at most [`crate::MAX_TORRENT_BYTES`]).
    TorrentFile(Vec<u8>),
    /// Bencoded resume data from [`crate::Alert::SaveResumeData`] (at most
    /// [`crate::MAX_RESUME_DATA_BYTES`]). It embeds the info dictionary, so
    /// the torrent comes back with its metadata and without re-hashing
    /// pieces it had verified.
    ResumeData(Vec<u8>),
}

impl fmt::Debug for TorrentSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Magnet(uri) => f.debug_tuple("Magnet").field(uri).finish(),
            Self::TorrentFile(bytes) => write!(f, "TorrentFile({} bytes)", bytes.len()),
            Self::ResumeData(bytes) => write!(f, "ResumeData({} bytes)", bytes.len()),
        }
    }
}

/// Parameters of `Session::add_torrent`.
///
/// For [`TorrentSource::ResumeData`] the saved values win where this struct
/// leaves a field "unset": an empty `save_path` or `file_priorities`, and
/// limits of 0. `paused`, `auto_managed` and `sequential` always apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddTorrentParams {
    pub source: TorrentSource,
    /// Empty keeps the path saved in resume data.
    pub save_path: PathBuf,
    /// Ignored for [`TorrentSource::ResumeData`], whose saved flag wins (as
    /// for `sequential`).
    pub paused: bool,
    /// Let libtorrent's queue start and stop the torrent.
    pub auto_managed: bool,
    pub sequential: bool,
    /// One entry per file (0 = skip, 1..=7); empty = all at the default (4).
    pub file_priorities: Vec<u8>,
    /// Bytes per second, 0 = unlimited.
    pub download_limit: i32,
    /// Bytes per second, 0 = unlimited.
    pub upload_limit: i32,
    /// Peers to try right away.
    pub peers: Vec<SocketAddr>,
    /// Trackers added to those of the source.
    pub trackers: Vec<String>,
    /// The id the torrent is to keep, instead of the default one (the v1
    /// info-hash if the source knows it, else the truncated v2 one). It must
    /// be one of the torrent's two hashes, else the add fails with
    /// `InvalidArgument`. For re-adding [`TorrentSource::ResumeData`] under
    /// the id the torrent had: resume data with metadata knows both hashes,
    /// so by default a hybrid torrent first added by a `urn:btmh:` magnet
    /// would come back under its v1 id.
    pub id: Option<TorrentId>,
}

impl AddTorrentParams {
    /// Running, auto-managed, no limits, no extra peers or trackers.
    #[must_use]
    pub fn new(source: TorrentSource, save_path: impl Into<PathBuf>) -> Self {
        Self {
            source,
            save_path: save_path.into(),
            paused: false,
            auto_managed: true,
            sequential: false,
            file_priorities: Vec::new(),
            download_limit: 0,
            upload_limit: 0,
            peers: Vec::new(),
            trackers: Vec::new(),
            id: None,
        }
    }
}

/// libtorrent's `torrent_status::state_t`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TorrentState {
    CheckingFiles,
    DownloadingMetadata,
    Downloading,
    Finished,
    Seeding,
    CheckingResumeData,
    /// A value this crate does not know.
    Unknown(i32),
}

impl TorrentState {
    pub(crate) fn from_raw(raw: i32) -> Self {
        match raw {
            1 => Self::CheckingFiles,
            2 => Self::DownloadingMetadata,
            3 => Self::Downloading,
            4 => Self::Finished,
            5 => Self::Seeding,
            7 => Self::CheckingResumeData,
            other => Self::Unknown(other),
        }
    }
}

/// A snapshot of one torrent's `lt::torrent_status`.
#[allow(
    clippy::struct_excessive_bools,
    reason = "mirrors libtorrent's independent status flags"
)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TorrentStatus {
    pub id: TorrentId,
    pub name: String,
    pub state: TorrentState,
    pub paused: bool,
    pub auto_managed: bool,
    pub sequential: bool,
    pub has_metadata: bool,
    pub is_finished: bool,
    pub is_seeding: bool,
    /// libtorrent stopped requesting pieces after a disk write failed (it
    /// keeps uploading); `resume` leaves this mode.
    pub upload_mode: bool,
    /// Progress in parts per million of the wanted bytes.
    pub progress_ppm: u32,
    /// Payload bytes per second (protocol overhead excluded).
    pub download_rate: i64,
    /// Payload bytes per second (protocol overhead excluded).
    pub upload_rate: i64,
    pub num_peers: i32,
    pub num_seeds: i32,
    pub total_done: i64,
    pub total_wanted: i64,
    pub total_wanted_done: i64,
    /// Payload bytes downloaded in this session.
    pub total_download: i64,
    /// Payload bytes uploaded in this session.
    pub total_upload: i64,
    pub all_time_download: i64,
    pub all_time_upload: i64,
    pub num_pieces_have: i32,
    pub save_path: String,
    /// The torrent's error, if it is stopped by one.
    pub error: Option<String>,
}

impl TorrentStatus {
    pub(crate) fn from_ffi(s: bridge::FfiStatus) -> Self {
        Self {
            id: TorrentId::from_ffi(&s.id),
            name: s.name,
            state: TorrentState::from_raw(s.state),
            paused: s.paused,
            auto_managed: s.auto_managed,
            sequential: s.sequential,
            has_metadata: s.has_metadata,
            is_finished: s.is_finished,
            is_seeding: s.is_seeding,
            upload_mode: s.upload_mode,
            progress_ppm: s.progress_ppm,
            download_rate: s.download_rate,
            upload_rate: s.upload_rate,
            num_peers: s.num_peers,
            num_seeds: s.num_seeds,
            total_done: s.total_done,
            total_wanted: s.total_wanted,
            total_wanted_done: s.total_wanted_done,
            total_download: s.total_download,
            total_upload: s.total_upload,
            all_time_download: s.all_time_download,
            all_time_upload: s.all_time_upload,
            num_pieces_have: s.num_pieces_have,
            save_path: s.save_path,
            error: s.has_error.then_some(s.error),
        }
    }
}

/// One file of a torrent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    pub index: u32,
    /// Path relative to the save path, as in the torrent (multi-file
    /// torrents start with the torrent's directory name).
    pub path: String,
    pub size: i64,
    /// Offset of the file in the torrent's byte stream.
    pub offset: i64,
    /// A padding file (v2/hybrid alignment); never written to disk.
    pub pad: bool,
}

/// A torrent's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TorrentInfo {
    pub id: TorrentId,
    pub name: String,
    pub total_size: i64,
    pub piece_length: i32,
    pub num_pieces: i32,
    pub private: bool,
    /// All files, padding files included (see [`FileEntry::pad`]).
    pub files: Vec<FileEntry>,
    pub trackers: Vec<String>,
    pub comment: String,
    pub creator: String,
    /// 40 hex digits, when the torrent has v1 metadata.
    pub info_hash_v1: Option<String>,
    /// 64 hex digits (full SHA-256), when the torrent has v2 metadata.
    pub info_hash_v2: Option<String>,
}

impl TorrentInfo {
    /// `None` when the bridge reported no metadata.
    pub(crate) fn from_ffi(info: bridge::FfiTorrentInfo) -> Option<Self> {
        if !info.present {
            return None;
        }
        Some(Self {
            id: TorrentId::from_ffi(&info.id),
            name: info.name,
            total_size: info.total_size,
            piece_length: info.piece_length,
            num_pieces: info.num_pieces,
            private: info.is_private,
            files: info
                .files
                .into_iter()
                .map(|f| FileEntry {
                    index: f.index,
                    path: f.path,
                    size: f.size,
                    offset: f.offset,
                    pad: f.pad,
                })
                .collect(),
            trackers: info.trackers,
            comment: info.comment,
            creator: info.creator,
            info_hash_v1: info.has_v1.then_some(info.v1_hex),
            info_hash_v2: info.has_v2.then_some(info.v2_hex),
        })
    }
}

/// What a magnet link says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MagnetInfo {
    pub id: TorrentId,
    /// The `dn` parameter, when present.
    pub name: Option<String>,
    /// The `tr` parameters.
    pub trackers: Vec<String>,
}

/// One connected peer of a torrent (`lt::peer_info`).
#[allow(
    clippy::struct_excessive_bools,
    reason = "mirrors libtorrent's independent peer flags"
)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    pub ip: String,
    pub port: u16,
    /// Client name from the handshake or the peer id ("" when unknown).
    pub client: String,
    pub seed: bool,
    /// We want pieces the peer has.
    pub interested: bool,
    /// The peer chokes us.
    pub choked: bool,
    pub remote_interested: bool,
    /// We choke the peer.
    pub remote_choked: bool,
    pub encrypted: bool,
    pub utp: bool,
    /// We opened the connection.
    pub outgoing: bool,
    pub progress_ppm: u32,
    /// Payload bytes per second.
    pub download_rate: u64,
    pub upload_rate: u64,
    pub downloaded: u64,
    pub uploaded: u64,
}

impl PeerInfo {
    pub(crate) fn from_ffi(p: bridge::FfiPeer) -> Self {
        let non_negative = |v: i64| u64::try_from(v).unwrap_or(0);
        Self {
            ip: p.ip,
            port: p.port,
            client: p.client,
            seed: p.seed,
            interested: p.interested,
            choked: p.choked,
            remote_interested: p.remote_interested,
            remote_choked: p.remote_choked,
            encrypted: p.encrypted,
            utp: p.utp,
            outgoing: p.outgoing,
            progress_ppm: p.progress_ppm.min(1_000_000),
            download_rate: non_negative(i64::from(p.download_rate)),
            upload_rate: non_negative(i64::from(p.upload_rate)),
            downloaded: non_negative(p.downloaded),
            uploaded: non_negative(p.uploaded),
        }
    }
}

/// One tracker of a torrent, merged over the session's listen sockets
/// (libtorrent announces once per socket): working if any answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackerInfo {
    pub url: String,
    pub tier: u8,
    pub working: bool,
    /// An announce is in flight.
    pub updating: bool,
    pub fails: u32,
    /// Seconds until the next announce, when one is scheduled.
    pub next_announce_secs: Option<u64>,
    /// The last error, when no socket's announce works.
    pub last_error: Option<String>,
    /// The tracker's own warning or failure text.
    pub message: Option<String>,
    /// Scrape counts, when the tracker reported them.
    pub seeders: Option<u32>,
    pub leechers: Option<u32>,
    pub downloaded: Option<u32>,
}

impl TrackerInfo {
    pub(crate) fn from_ffi(t: bridge::FfiTracker) -> Self {
        let known = |v: i32| u32::try_from(v).ok();
        let text = |s: String| (!s.is_empty()).then_some(s);
        Self {
            url: t.url,
            tier: t.tier,
            working: t.working,
            updating: t.updating,
            fails: u32::try_from(t.fails).unwrap_or(0),
            next_announce_secs: u64::try_from(t.next_announce_secs).ok(),
            last_error: text(t.last_error),
            message: text(t.message),
            seeders: known(t.seeders),
            leechers: known(t.leechers),
            downloaded: known(t.downloaded),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torrent_id_round_trips_as_lowercase_hex() {
        let text = "00ff10ab0123456789abcdef0123456789abcdef";
        let id: TorrentId = text.parse().unwrap();
        assert_eq!(id.to_string(), text);
        assert_eq!(id.as_bytes()[1], 0xff);
        let upper: TorrentId = text.to_uppercase().parse().unwrap();
        assert_eq!(upper, id);
    }

    #[test]
    fn torrent_id_rejects_bad_text() {
        for bad in ["", "00", &"0".repeat(41), &"g".repeat(40), &"é".repeat(20)] {
            assert_eq!(bad.parse::<TorrentId>(), Err(ParseTorrentIdError), "{bad}");
        }
    }

    #[test]
    fn states_map_from_libtorrent_values() {
        assert_eq!(TorrentState::from_raw(1), TorrentState::CheckingFiles);
        assert_eq!(TorrentState::from_raw(5), TorrentState::Seeding);
        assert_eq!(TorrentState::from_raw(7), TorrentState::CheckingResumeData);
        assert_eq!(TorrentState::from_raw(6), TorrentState::Unknown(6));
    }
}
