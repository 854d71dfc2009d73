//! The alerts the bridge delivers (`Alert`) and their decoding from the
//! bridge's flattened `FfiAlert`.
//!
//! Which alerts arrive is set by the session's alert mask (see
//! `cpp/bridge.cpp`, `kAlertMask`): categories error, status, storage,
//! tracker and `performance_warning`. `SessionStats` has no category and always
//! arrives. Anything the mask lets through that has no variant of its own
//! becomes `Alert::Other`.
//!
//! Every torrent alert names the torrent by the id it was added under (see
//! `TorrentId`), also after its metadata brought another info-hash and in
//! the alerts that follow its removal.

use crate::ffi::bridge::{FfiAlert, FfiAlertKind};
use crate::types::{TorrentId, TorrentState, TorrentStatus};

/// One libtorrent alert, copied out of libtorrent's memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Alert {
    /// A torrent was added (or failed to be added: `error`).
    AddTorrent {
        id: TorrentId,
        error: Option<String>,
    },
    /// A magnet torrent received its metadata.
    MetadataReceived {
        id: TorrentId,
    },
    StateChanged {
        id: TorrentId,
        state: TorrentState,
        prev: TorrentState,
    },
    /// All wanted pieces are downloaded (verified; some blocks may still
    /// be on their way to the files: see [`Self::CacheFlushed`]).
    TorrentFinished {
        id: TorrentId,
    },
    /// Everything `Session::flush_cache` asked for is in the files.
    CacheFlushed {
        id: TorrentId,
    },
    TorrentPaused {
        id: TorrentId,
    },
    TorrentResumed {
        id: TorrentId,
    },
    /// The torrent left the session (its files may still be being deleted).
    TorrentRemoved {
        id: TorrentId,
    },
    /// The files of a torrent removed with `delete_files` are gone.
    TorrentDeleted {
        id: TorrentId,
    },
    TorrentDeleteFailed {
        id: TorrentId,
        error: String,
    },
    /// The torrent stopped on an error.
    TorrentError {
        id: TorrentId,
        error: String,
    },
    FileError {
        id: TorrentId,
        file: String,
        error: String,
    },
    TrackerAnnounce {
        id: TorrentId,
        url: String,
    },
    TrackerReply {
        id: TorrentId,
        url: String,
        num_peers: i32,
    },
    TrackerError {
        id: TorrentId,
        url: String,
        message: String,
        times_in_row: i32,
        kind: TrackerErrorKind,
    },
    /// Answer to `Session::save_resume_data`: bencoded resume data that
    /// embeds the info dictionary (re-add with `TorrentSource::ResumeData`).
    SaveResumeData {
        id: TorrentId,
        data: Vec<u8>,
    },
    SaveResumeDataFailed {
        id: TorrentId,
        error: String,
    },
    /// Answer to `Session::post_torrent_updates`: the torrents that changed
    /// since the previous call.
    StateUpdate(Vec<TorrentStatus>),
    /// Answer to `Session::post_session_stats`; index with
    /// `Session::session_stats_metric_names`.
    SessionStats {
        counters: Vec<i64>,
    },
    /// The TCP listen socket is up (one alert per listen interface).
    ListenSucceeded {
        address: String,
        port: u16,
    },
    ListenFailed {
        address: String,
        port: u16,
        error: String,
    },
    /// A downloaded piece failed its hash check.
    HashFailed {
        id: TorrentId,
        piece: i32,
    },
    /// Resume data was not accepted; the torrent is checked from scratch.
    FastresumeRejected {
        id: TorrentId,
        error: String,
    },
    /// New file priorities (`Session::set_file_priorities`) are in effect;
    /// `Session::file_priorities` returns the old ones until this alert.
    FilePrioritiesUpdated {
        id: TorrentId,
    },
    /// Any other alert the mask lets through: libtorrent's `what()` (the
    /// alert type name, e.g. `performance_alert`) and `message()`.
    Other {
        what: String,
        message: String,
    },
}

impl Alert {
    /// The torrent this alert is about, if any.
    #[must_use]
    pub fn torrent_id(&self) -> Option<TorrentId> {
        match self {
            Self::AddTorrent { id, .. }
            | Self::MetadataReceived { id }
            | Self::StateChanged { id, .. }
            | Self::TorrentFinished { id }
            | Self::CacheFlushed { id }
            | Self::TorrentPaused { id }
            | Self::TorrentResumed { id }
            | Self::TorrentRemoved { id }
            | Self::TorrentDeleted { id }
            | Self::TorrentDeleteFailed { id, .. }
            | Self::TorrentError { id, .. }
            | Self::FileError { id, .. }
            | Self::TrackerAnnounce { id, .. }
            | Self::TrackerReply { id, .. }
            | Self::TrackerError { id, .. }
            | Self::SaveResumeData { id, .. }
            | Self::SaveResumeDataFailed { id, .. }
            | Self::HashFailed { id, .. }
            | Self::FastresumeRejected { id, .. }
            | Self::FilePrioritiesUpdated { id } => Some(*id),
            Self::StateUpdate(_)
            | Self::SessionStats { .. }
            | Self::ListenSucceeded { .. }
            | Self::ListenFailed { .. }
            | Self::Other { .. } => None,
        }
    }

    /// Field use per kind mirrors `convert_alert` in `cpp/bridge.cpp`.
    pub(crate) fn from_ffi(a: FfiAlert) -> Self {
        let id = TorrentId::from_ffi(&a.id);
        match a.kind {
            FfiAlertKind::AddTorrent => Self::AddTorrent {
                id,
                error: a.has_error.then_some(a.detail),
            },
            FfiAlertKind::MetadataReceived => Self::MetadataReceived { id },
            FfiAlertKind::StateChanged => Self::StateChanged {
                id,
                state: TorrentState::from_raw(a.state),
                prev: TorrentState::from_raw(a.prev_state),
            },
            FfiAlertKind::TorrentFinished => Self::TorrentFinished { id },
            FfiAlertKind::CacheFlushed => Self::CacheFlushed { id },
            FfiAlertKind::TorrentPaused => Self::TorrentPaused { id },
            FfiAlertKind::TorrentResumed => Self::TorrentResumed { id },
            FfiAlertKind::TorrentRemoved => Self::TorrentRemoved { id },
            FfiAlertKind::TorrentDeleted => Self::TorrentDeleted { id },
            FfiAlertKind::TorrentDeleteFailed => Self::TorrentDeleteFailed { id, error: a.text },
            FfiAlertKind::TorrentError => Self::TorrentError { id, error: a.text },
            FfiAlertKind::FileError => Self::FileError {
                id,
                file: a.text,
                error: a.detail,
            },
            FfiAlertKind::TrackerAnnounce => Self::TrackerAnnounce { id, url: a.text },
            FfiAlertKind::TrackerReply => Self::TrackerReply {
                id,
                url: a.text,
                num_peers: a.number,
            },
            FfiAlertKind::TrackerError => Self::TrackerError {
                id,
                url: a.text,
                message: a.detail,
                times_in_row: a.number,
                kind: TrackerErrorKind::from_raw(a.state),
            },
            FfiAlertKind::SaveResumeData => Self::SaveResumeData { id, data: a.data },
            FfiAlertKind::SaveResumeDataFailed => Self::SaveResumeDataFailed { id, error: a.text },
            FfiAlertKind::StateUpdate => Self::StateUpdate(
                a.statuses
                    .into_iter()
                    .map(TorrentStatus::from_ffi)
                    .collect(),
            ),
            FfiAlertKind::SessionStats => Self::SessionStats {
                counters: a.counters,
            },
            FfiAlertKind::ListenSucceeded => Self::ListenSucceeded {
                address: a.text,
                port: a.port,
            },
            FfiAlertKind::ListenFailed => Self::ListenFailed {
                address: a.text,
                port: a.port,
                error: a.detail,
            },
            FfiAlertKind::HashFailed => Self::HashFailed {
                id,
                piece: a.number,
            },
            FfiAlertKind::FastresumeRejected => Self::FastresumeRejected { id, error: a.text },
            FfiAlertKind::FilePrioritiesUpdated => Self::FilePrioritiesUpdated { id },
            // `Other`, and any kind a newer bridge might add.
            _ => Self::Other {
                what: a.text,
                message: a.detail,
            },
        }
    }
}

/// Why a tracker announce failed, in classes an operator can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TrackerErrorKind {
    /// The tracker answered with a failure reason (unregistered torrent,
    /// bad passkey, ...).
    Refused,
    Timeout,
    /// No connection: refused, reset, unreachable.
    Connect,
    /// An HTTP error status.
    Http,
    /// The tracker's host name did not resolve.
    Dns,
    Other,
}

impl TrackerErrorKind {
    fn from_raw(raw: i32) -> Self {
        match raw {
            1 => Self::Refused,
            2 => Self::Timeout,
            3 => Self::Connect,
            4 => Self::Http,
            5 => Self::Dns,
            _ => Self::Other,
        }
    }

    /// A stable snake-case label (metrics).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Refused => "refused",
            Self::Timeout => "timeout",
            Self::Connect => "connect",
            Self::Http => "http",
            Self::Dns => "dns",
            Self::Other => "other",
        }
    }
}
