//! `/v1/torrents`: what a client sends to add and steer torrents, and what
//! it reads back. Sizes are bytes, rates bytes per second, times Unix
//! seconds; a torrent id is the 40-hex-digit v1 info-hash.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Largest page `GET /v1/torrents` serves.
pub const MAX_PAGE_LIMIT: u32 = 500;
/// Page size when `limit` is absent.
pub const DEFAULT_PAGE_LIMIT: u32 = 50;
/// Most tags on one torrent.
pub const MAX_TAGS: usize = 32;
/// Longest tag or category, in bytes.
pub const MAX_LABEL_BYTES: usize = 64;

/// Lifecycle state of a torrent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
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

impl TorrentState {
    /// Every state, in declaration order.
    pub const ALL: [TorrentState; 8] = [
        TorrentState::CheckingResumeData,
        TorrentState::CheckingFiles,
        TorrentState::DownloadingMetadata,
        TorrentState::Downloading,
        TorrentState::Finished,
        TorrentState::Seeding,
        TorrentState::Paused,
        TorrentState::Error,
    ];

    /// The wire name (`downloading`, `seeding`, ...).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            TorrentState::CheckingResumeData => "checking_resume_data",
            TorrentState::CheckingFiles => "checking_files",
            TorrentState::DownloadingMetadata => "downloading_metadata",
            TorrentState::Downloading => "downloading",
            TorrentState::Finished => "finished",
            TorrentState::Seeding => "seeding",
            TorrentState::Paused => "paused",
            TorrentState::Error => "error",
        }
    }

    /// Parses a wire name.
    #[must_use]
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// `POST /v1/torrents` as JSON (a magnet link). A `.torrent` file is sent
/// as `multipart/form-data` instead: part `torrent` holds the file and an
/// optional part `options` holds this object without `magnet`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddTorrentRequest {
    /// `magnet:?xt=urn:btih:...`; required for JSON adds, absent in multipart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub magnet: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// Add without starting.
    #[serde(default)]
    pub paused: bool,
    /// Download pieces in order.
    #[serde(default)]
    pub sequential: bool,
    /// Initial file selection (only for `.torrent` uploads, whose file list
    /// is known up front).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileRule>,
    /// Sub-directory of the downloads dir to save into (relative, no `..`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub save_path: Option<String>,
}

/// One file-selection rule: which files (by `index` or by `glob` over the
/// path inside the torrent) get which priority. Later rules win.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FileRule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub glob: Option<String>,
    /// 0 = skip, 1–7 = download (4 is normal, 7 highest).
    pub priority: u8,
}

/// `POST /v1/torrents/{id}/select` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SelectRequest {
    /// Applied in order over the current priorities.
    pub rules: Vec<FileRule>,
}

/// `POST /v1/torrents/{id}/action` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum TorrentAction {
    Pause,
    Resume,
    /// Forget the torrent, keep its data.
    Remove,
    /// Forget the torrent and delete its downloaded data.
    RemoveData,
    Reannounce,
    Recheck,
    Sequential {
        enabled: bool,
    },
    /// Run the torrent's failed FsOps job again, from the failed step.
    FsopsRetry,
    /// Per-torrent limits; `null` or absent = unlimited.
    Rate {
        #[serde(default)]
        download_bps: Option<u64>,
        #[serde(default)]
        upload_bps: Option<u64>,
    },
}

/// `PATCH /v1/torrents/{id}` body: fields present are replaced.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TorrentPatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    /// `""` clears the category.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
}

/// FsOps post-processing of a completed torrent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FsopsStatus {
    /// `pending`, `running`, `completed`, `failed` or `cancelled`.
    pub state: String,
    /// Step now running or last run.
    pub step: Option<String>,
    pub attempts: u32,
    pub updated_at: i64,
    /// Steps finished so far, in order.
    #[serde(default)]
    pub steps: Vec<FsopsStep>,
    /// Where the result is, relative to the library root (once completed).
    pub library_path: Option<String>,
    /// Why the job failed (while failed).
    pub error: Option<String>,
}

/// One finished FsOps step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FsopsStep {
    pub step: String,
    pub outcome: String,
}

/// A torrent as listed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Torrent {
    pub id: String,
    pub name: String,
    pub state: TorrentState,
    /// 0.0–1.0 of the wanted bytes.
    pub progress: f64,
    pub download_bps: u64,
    pub upload_bps: u64,
    pub peers: u32,
    pub seeds: u32,
    pub size_wanted: u64,
    pub size_done: u64,
    pub downloaded: u64,
    pub uploaded: u64,
    pub paused: bool,
    pub sequential: bool,
    pub has_metadata: bool,
    pub error: Option<String>,
    /// Why a torrent that is not paused cannot transfer now, e.g. the
    /// network interface set in `engine.interface` is missing (kill switch).
    #[serde(default)]
    pub stalled_reason: Option<String>,
    pub tags: Vec<String>,
    pub category: Option<String>,
    pub added_at: i64,
    /// FsOps job state, once the torrent completed.
    pub fsops: Option<String>,
}

/// `GET /v1/torrents` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TorrentList {
    pub items: Vec<Torrent>,
    /// Opaque cursor of the next page; absent on the last page.
    pub next: Option<String>,
    /// True while the engine is unreachable: the data is the last known.
    pub stale: bool,
}

/// One file of a torrent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TorrentFile {
    pub index: u32,
    pub path: String,
    pub size: u64,
    pub priority: u8,
    /// Bytes of this file downloaded.
    pub done: u64,
    /// 0.0–1.0.
    pub progress: f64,
}

/// One tracker of a torrent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TorrentTracker {
    pub url: String,
    /// `not_contacted`, `announcing`, `working` or `error`.
    pub status: String,
    /// Last error or warning text.
    pub message: Option<String>,
    /// Peers in the last reply.
    pub peers: Option<u32>,
    /// Tier (BEP 12): lower tiers are tried first.
    #[serde(default)]
    pub tier: u8,
    /// Seconds until the next announce, when one is scheduled.
    pub next_announce_secs: Option<u64>,
    /// The last announce error, kept while no announce works.
    pub last_error: Option<String>,
    /// Consecutive failed announces.
    #[serde(default)]
    pub fails: u32,
    /// Seeders and leechers the tracker reported (scrape), when known.
    pub seeders: Option<u32>,
    pub leechers: Option<u32>,
}

/// One connected peer of a torrent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[allow(clippy::struct_excessive_bools, reason = "independent peer flags")]
pub struct TorrentPeer {
    /// `IP:port` (IPv6 in brackets).
    pub address: String,
    /// Client name from the handshake or peer id ("" when unknown).
    pub client: String,
    /// The peer has every piece.
    pub seed: bool,
    /// We want pieces the peer has.
    pub interested: bool,
    /// The peer chokes us: we may not request from it.
    pub choked: bool,
    /// The peer wants pieces we have.
    pub remote_interested: bool,
    /// We choke the peer.
    pub remote_choked: bool,
    /// The connection is encrypted (MSE/PE).
    pub encrypted: bool,
    /// `tcp` or `utp`.
    pub transport: String,
    /// `outgoing` (we connected) or `incoming`.
    pub direction: String,
    /// Share of the torrent the peer has, 0.0 to 1.0.
    pub progress: f64,
    /// Payload bytes per second from the peer.
    pub download_bps: u64,
    /// Payload bytes per second to the peer.
    pub upload_bps: u64,
    /// Payload bytes received from and sent to the peer on this connection.
    pub downloaded: u64,
    pub uploaded: u64,
}

/// `GET /v1/torrents/{id}/peers` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TorrentPeers {
    pub peers: Vec<TorrentPeer>,
}

/// `GET /v1/torrents/{id}` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TorrentDetail {
    #[serde(flatten)]
    pub torrent: Torrent,
    pub files: Vec<TorrentFile>,
    pub trackers: Vec<TorrentTracker>,
    pub piece_length: u32,
    pub private: bool,
    pub download_limit_bps: Option<u64>,
    pub upload_limit_bps: Option<u64>,
    pub fsops_job: Option<FsopsStatus>,
    pub stale: bool,
}

/// `201` answer to an add.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TorrentCreated {
    pub id: String,
}
