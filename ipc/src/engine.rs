//! The engine's data-channel protocol: commands the API sends, the answers
//! it gets, and the events the engine pushes to a subscribed connection.
//!
//! A connection either carries requests and responses, or — after
//! [`EngineRequest::Subscribe`] — only events: first a full
//! [`EngineEvent::Snapshot`], then deltas. Torrents are named by
//! [`TorrentId`], the 20-byte info-hash (v1; truncated v2 for v2-only).

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Largest .torrent file accepted over IPC (the API enforces its own, smaller
/// or equal, limit on uploads).
pub const MAX_TORRENT_FILE_BYTES: usize = 10 * 1024 * 1024;
/// Largest magnet link accepted.
pub const MAX_MAGNET_BYTES: usize = 8 * 1024;

/// A torrent's identity: its info-hash. Binary formats (IPC) carry the 20
/// bytes; human-readable ones (JSON) the 40-character lowercase hex form.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TorrentId(pub [u8; 20]);

impl Serialize for TorrentId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.collect_str(self)
        } else {
            self.0.serialize(serializer)
        }
    }
}

impl<'de> Deserialize<'de> for TorrentId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
            text.parse().map_err(serde::de::Error::custom)
        } else {
            <[u8; 20]>::deserialize(deserializer).map(TorrentId)
        }
    }
}

impl fmt::Display for TorrentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for TorrentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TorrentId({self})")
    }
}

/// The text was not 40 hex characters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a torrent id is 40 hexadecimal characters")]
pub struct InvalidTorrentId;

impl FromStr for TorrentId {
    type Err = InvalidTorrentId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = s.as_bytes();
        if bytes.len() != 40 {
            return Err(InvalidTorrentId);
        }
        let mut out = [0_u8; 20];
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            let hex = |c: u8| char::from(c).to_digit(16).ok_or(InvalidTorrentId);
            let value = hex(pair[0])? * 16 + hex(pair[1])?;
            out[i] = u8::try_from(value).map_err(|_| InvalidTorrentId)?;
        }
        Ok(TorrentId(out))
    }
}

/// Where a new torrent comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TorrentSource {
    Magnet(String),
    TorrentFile(Vec<u8>),
}

/// `Add` parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddTorrent {
    pub source: TorrentSource,
    pub paused: bool,
    pub sequential: bool,
    /// Per-file priority (0 = skip, 1–7); empty = all normal.
    pub file_priorities: Vec<u8>,
    /// Peers to connect to at once (local peers, tests).
    pub peers: Vec<SocketAddr>,
    /// Sub-directory of the downloads dir to save into: relative, normal
    /// components only (the engine refuses anything else).
    pub save_subdir: Option<String>,
}

/// A rate limit in bytes per second; `None` = unlimited.
pub type Rate = Option<u64>;

/// Commands for the engine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EngineRequest {
    Add(Box<AddTorrent>),
    Remove {
        id: TorrentId,
        delete_data: bool,
    },
    Pause {
        id: TorrentId,
    },
    Resume {
        id: TorrentId,
    },
    Reannounce {
        id: TorrentId,
    },
    Recheck {
        id: TorrentId,
    },
    SetSequential {
        id: TorrentId,
        enabled: bool,
    },
    SetTorrentRate {
        id: TorrentId,
        download: Rate,
        upload: Rate,
    },
    /// One priority per file, in file order (0 = skip, 1–7).
    SelectFiles {
        id: TorrentId,
        priorities: Vec<u8>,
    },
    SetGlobalRate {
        download: Rate,
        upload: Rate,
    },
    ConnectPeer {
        id: TorrentId,
        addr: SocketAddr,
    },
    List,
    Detail {
        id: TorrentId,
    },
    /// The session's settings as libtorrent reports them, and its port.
    SessionInfo,
    /// Turn this connection into an event stream.
    Subscribe,
    /// The torrent's connected peers.
    Peers {
        id: TorrentId,
    },
}

/// Answers to [`EngineRequest`]s.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EngineResponse {
    Done,
    Added { id: TorrentId },
    List(Vec<TorrentSummary>),
    Detail(Box<TorrentDetail>),
    Session(Box<SessionInfo>),
    Error(EngineError),
    Peers(Vec<PeerDetail>),
}

/// One connected peer of a torrent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[allow(
    clippy::struct_excessive_bools,
    reason = "independent peer flags, as libtorrent reports them"
)]
pub struct PeerDetail {
    pub addr: SocketAddr,
    /// Client name from the handshake or peer id ("" when unknown).
    pub client: String,
    pub seed: bool,
    /// We want pieces the peer has.
    pub interested: bool,
    /// The peer chokes us.
    pub choked: bool,
    /// The peer wants pieces we have.
    pub remote_interested: bool,
    /// We choke the peer.
    pub remote_choked: bool,
    pub encrypted: bool,
    /// uTP (else TCP).
    pub utp: bool,
    /// We opened the connection (else it came in).
    pub outgoing: bool,
    pub progress_ppm: u32,
    pub download_bps: u64,
    pub upload_bps: u64,
    pub downloaded: u64,
    pub uploaded: u64,
}

/// Session-wide state, read back from libtorrent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[allow(
    clippy::struct_excessive_bools,
    reason = "independent protocol switches"
)]
pub struct SessionInfo {
    pub listen_port: u16,
    pub listen_interfaces: String,
    pub download_rate_limit: Rate,
    pub upload_rate_limit: Rate,
    pub connections_limit: u32,
    pub dht: bool,
    pub lsd: bool,
    pub upnp: bool,
    pub natpmp: bool,
    pub utp: bool,
}

/// A refused or failed command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineError {
    pub kind: EngineErrorKind,
    pub message: String,
}

/// Classes of engine error, mapped to HTTP statuses by the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EngineErrorKind {
    /// Malformed .torrent, magnet or arguments (400/422).
    Invalid,
    /// No such torrent (404).
    NotFound,
    /// Already present (409).
    Duplicate,
    /// libtorrent or disk failure (500).
    Internal,
}

/// Life-cycle state of a torrent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TorrentState {
    CheckingResumeData,
    CheckingFiles,
    DownloadingMetadata,
    Downloading,
    Finished,
    Seeding,
    Paused,
    Error,
}

/// One torrent in a list or snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TorrentSummary {
    pub id: TorrentId,
    pub name: String,
    pub state: TorrentState,
    pub progress_ppm: u32,
    pub download_bps: u64,
    pub upload_bps: u64,
    pub peers: u32,
    pub seeds: u32,
    pub total_wanted: u64,
    pub total_done: u64,
    pub downloaded: u64,
    pub uploaded: u64,
    pub paused: bool,
    pub sequential: bool,
    pub has_metadata: bool,
    pub error: Option<String>,
    /// Why a torrent that is not paused cannot transfer now, e.g. the
    /// network interface the engine is bound to is missing (kill switch).
    pub stalled_reason: Option<String>,
}

/// One file of a torrent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileDetail {
    pub index: u32,
    pub path: String,
    pub size: u64,
    pub priority: u8,
    /// Bytes downloaded (piece granularity).
    pub done: u64,
}

/// What the engine last heard from one tracker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TrackerStatus {
    NotContacted,
    Announcing,
    Working,
    Error,
}

/// One tracker of a torrent and its last announce outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackerDetail {
    pub url: String,
    pub status: TrackerStatus,
    /// Last error text, while `status` is `Error`.
    pub message: Option<String>,
    /// Peers in the last successful reply.
    pub peers: Option<u32>,
    /// Tier (BEP 12): lower tiers are tried first.
    pub tier: u8,
    /// Seconds until the next announce, when one is scheduled.
    pub next_announce_secs: Option<u64>,
    /// The last announce error, kept while no announce works.
    pub last_error: Option<String>,
    /// Consecutive failed announces.
    pub fails: u32,
    /// Scrape counts, when the tracker reported them.
    pub seeders: Option<u32>,
    pub leechers: Option<u32>,
}

/// Everything known about one torrent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TorrentDetail {
    pub summary: TorrentSummary,
    /// Files without padding; `index` is the libtorrent file index.
    pub files: Vec<FileDetail>,
    /// File count including padding files: the length `SelectFiles` wants.
    pub total_files: u32,
    /// Where the torrent is saved, relative to the downloads dir (`None`:
    /// the downloads dir itself).
    pub save_subdir: Option<String>,
    pub trackers: Vec<TrackerDetail>,
    pub piece_length: u32,
    pub private: bool,
    pub download_limit: Rate,
    pub upload_limit: Rate,
}

/// How a torrent's error starts when its downloads filesystem is full: the
/// API degrades `/health/full` (`downloads`) while any torrent says so.
pub const DISK_FULL_ERROR_PREFIX: &str = "no space left on the downloads filesystem";

/// Events pushed to a subscribed connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EngineEvent {
    /// Always first on a (re)subscription: every torrent as of now.
    Snapshot(Vec<TorrentSummary>),
    Added(Box<TorrentSummary>),
    MetadataReceived {
        id: TorrentId,
        name: String,
    },
    StateChanged {
        id: TorrentId,
        state: TorrentState,
    },
    /// Coalesced to at most 2 per second per torrent.
    Progress(Box<TorrentSummary>),
    Completed {
        id: TorrentId,
        /// The engine's span of this download (ADR 008): FsOps' job joins
        /// the trace the torrent was added in. `None` when the engine does
        /// not know it (added before a restart, or added untraced).
        traceparent: Option<String>,
    },
    Removed {
        id: TorrentId,
    },
    Error {
        id: TorrentId,
        message: String,
    },
    TrackerError {
        id: TorrentId,
        url: String,
        message: String,
    },
    FilesSelected {
        id: TorrentId,
        priorities: Vec<u8>,
    },
    /// A state file could not be loaded at start and was moved aside.
    StateQuarantined {
        id: TorrentId,
        reason: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torrent_id_hex_round_trip_and_rejects_bad_text() {
        let text = "0123456789abcdef0123456789abcdef01234567";
        let id: TorrentId = text.parse().unwrap();
        assert_eq!(id.to_string(), text);
        assert_eq!(
            "0123456789ABCDEF0123456789ABCDEF01234567"
                .parse::<TorrentId>()
                .unwrap(),
            id
        );
        let json = format!("\"{text}\"");
        assert_eq!(serde_json::to_string(&id).unwrap(), json);
        assert_eq!(serde_json::from_str::<TorrentId>(&json).unwrap(), id);
        assert!(serde_json::from_str::<TorrentId>("\"nope\"").is_err());
        let binary = crate::codec::encode(&id).unwrap();
        assert_eq!(crate::codec::decode::<TorrentId>(&binary).unwrap(), id);
        for bad in [
            "",
            "zz",
            &text[..39],
            &format!("{text}0"),
            "g123456789abcdef0123456789abcdef01234567",
        ] {
            assert_eq!(bad.parse::<TorrentId>(), Err(InvalidTorrentId), "{bad}");
        }
    }
}
