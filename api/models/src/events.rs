//! `GET /v1/events`: the events a client receives over SSE (DESIGN §6).
//!
//! Every event is stored in the API's durable event log before any client
//! sees it; the log assigns the id. Over SSE each event is one message:
//!
//! ```text
//! id: 42
//! event: state_changed
//! data: {"id":42,"at":1700000000,"event":{"type":"state_changed","torrent":"…","state":"seeding"}}
//! ```
//!
//! `data` is a [`StoredEvent`]; `event` repeats its `event.type`. One more
//! message type exists outside [`Event`]: `event: reset` (no `id`), whose
//! `data` is the oldest id the log still holds. It is sent when the
//! `Last-Event-ID` a client resumed from is older than the log's retention
//! (or unknown to this log); the replay then starts at that oldest id.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::torrents::TorrentState;
use crate::{HealthStatus, KeyScope};

/// SSE `event:` name of the message announcing a gap in the replay.
pub const RESET_EVENT: &str = "reset";

/// A public event. Torrent events carry `torrent`, the 40-hex-digit id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// A torrent was added.
    TorrentAdded {
        torrent: String,
        name: String,
        state: TorrentState,
    },
    /// A magnet link's metadata arrived; the name is now the real one.
    MetadataReceived { torrent: String, name: String },
    /// The torrent's lifecycle state changed.
    StateChanged {
        torrent: String,
        state: TorrentState,
    },
    /// Transfer figures; at most one per torrent per second, the newest
    /// figures winning.
    Progress {
        torrent: String,
        state: TorrentState,
        /// 0.0–1.0 of the wanted bytes.
        progress: f64,
        download_bps: u64,
        upload_bps: u64,
        peers: u32,
        seeds: u32,
        size_wanted: u64,
        size_done: u64,
        downloaded: u64,
        uploaded: u64,
    },
    /// Every wanted byte is on disk.
    Completed { torrent: String },
    /// The torrent is gone from the engine.
    TorrentRemoved { torrent: String },
    /// The file priorities changed (0 = skip, 1–7), in file order.
    FilesSelected {
        torrent: String,
        priorities: Vec<u8>,
    },
    /// An error concerning one torrent: the engine reported a torrent
    /// error, a tracker refused or failed an announce, or the torrent's
    /// state file could not be loaded and was moved to quarantine.
    TorrentError {
        torrent: String,
        source: TorrentErrorSource,
        message: String,
        /// The tracker, for `source: tracker`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        url: Option<String>,
    },
    /// FsOps began post-processing a completed torrent.
    FsopsStarted { torrent: String },
    /// One FsOps step finished.
    FsopsStep {
        torrent: String,
        step: String,
        /// `done` or `skipped` (a failing step ends the job with
        /// `fsops_failed`).
        outcome: String,
    },
    /// FsOps finished every step; `library_path` is relative to the
    /// library root.
    FsopsCompleted {
        torrent: String,
        library_path: String,
    },
    /// FsOps gave up.
    FsopsFailed {
        torrent: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        step: Option<String>,
        message: String,
    },
    /// The `/health/full` verdict changed (also sent once when the API
    /// starts). `degraded` names what is wrong, as in `/health/full`.
    HealthChanged {
        status: HealthStatus,
        degraded: Vec<String>,
    },
    /// A new config revision took effect.
    ConfigApplied { revision: u64 },
    /// An API key was issued, or a new secret was issued for it
    /// (`rotated`). `by` is the id of the admin key that did it.
    KeyIssued {
        key_id: String,
        name: String,
        scope: KeyScope,
        #[serde(default)]
        rotated: bool,
        by: String,
    },
    /// An API key was revoked.
    KeyRevoked { key_id: String, by: String },
    /// A key went over its request rate.
    RateLimited { key_id: String },
}

/// Where a [`Event::TorrentError`] comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TorrentErrorSource {
    /// The engine put the torrent in error (disk, storage, ...).
    Torrent,
    /// A tracker announce failed.
    Tracker,
    /// The torrent's saved state could not be loaded; it was quarantined.
    StateFile,
}

/// The type of an [`Event`], as used in `event:` lines and the `kind`
/// filter of `GET /v1/events`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    TorrentAdded,
    MetadataReceived,
    StateChanged,
    Progress,
    Completed,
    TorrentRemoved,
    FilesSelected,
    TorrentError,
    FsopsStarted,
    FsopsStep,
    FsopsCompleted,
    FsopsFailed,
    HealthChanged,
    ConfigApplied,
    KeyIssued,
    KeyRevoked,
    RateLimited,
}

impl EventKind {
    /// Every kind, in declaration order.
    pub const ALL: [EventKind; 17] = [
        EventKind::TorrentAdded,
        EventKind::MetadataReceived,
        EventKind::StateChanged,
        EventKind::Progress,
        EventKind::Completed,
        EventKind::TorrentRemoved,
        EventKind::FilesSelected,
        EventKind::TorrentError,
        EventKind::FsopsStarted,
        EventKind::FsopsStep,
        EventKind::FsopsCompleted,
        EventKind::FsopsFailed,
        EventKind::HealthChanged,
        EventKind::ConfigApplied,
        EventKind::KeyIssued,
        EventKind::KeyRevoked,
        EventKind::RateLimited,
    ];

    /// The wire name (`torrent_added`, ...): the event's `type`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::TorrentAdded => "torrent_added",
            EventKind::MetadataReceived => "metadata_received",
            EventKind::StateChanged => "state_changed",
            EventKind::Progress => "progress",
            EventKind::Completed => "completed",
            EventKind::TorrentRemoved => "torrent_removed",
            EventKind::FilesSelected => "files_selected",
            EventKind::TorrentError => "torrent_error",
            EventKind::FsopsStarted => "fsops_started",
            EventKind::FsopsStep => "fsops_step",
            EventKind::FsopsCompleted => "fsops_completed",
            EventKind::FsopsFailed => "fsops_failed",
            EventKind::HealthChanged => "health_changed",
            EventKind::ConfigApplied => "config_applied",
            EventKind::KeyIssued => "key_issued",
            EventKind::KeyRevoked => "key_revoked",
            EventKind::RateLimited => "rate_limited",
        }
    }

    /// Parses a wire name.
    #[must_use]
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == text)
    }
}

impl Event {
    /// This event's type.
    #[must_use]
    pub fn kind(&self) -> EventKind {
        match self {
            Event::TorrentAdded { .. } => EventKind::TorrentAdded,
            Event::MetadataReceived { .. } => EventKind::MetadataReceived,
            Event::StateChanged { .. } => EventKind::StateChanged,
            Event::Progress { .. } => EventKind::Progress,
            Event::Completed { .. } => EventKind::Completed,
            Event::TorrentRemoved { .. } => EventKind::TorrentRemoved,
            Event::FilesSelected { .. } => EventKind::FilesSelected,
            Event::TorrentError { .. } => EventKind::TorrentError,
            Event::FsopsStarted { .. } => EventKind::FsopsStarted,
            Event::FsopsStep { .. } => EventKind::FsopsStep,
            Event::FsopsCompleted { .. } => EventKind::FsopsCompleted,
            Event::FsopsFailed { .. } => EventKind::FsopsFailed,
            Event::HealthChanged { .. } => EventKind::HealthChanged,
            Event::ConfigApplied { .. } => EventKind::ConfigApplied,
            Event::KeyIssued { .. } => EventKind::KeyIssued,
            Event::KeyRevoked { .. } => EventKind::KeyRevoked,
            Event::RateLimited { .. } => EventKind::RateLimited,
        }
    }

    /// The torrent this event concerns, if any.
    #[must_use]
    pub fn torrent(&self) -> Option<&str> {
        match self {
            Event::TorrentAdded { torrent, .. }
            | Event::MetadataReceived { torrent, .. }
            | Event::StateChanged { torrent, .. }
            | Event::Progress { torrent, .. }
            | Event::Completed { torrent }
            | Event::TorrentRemoved { torrent }
            | Event::FilesSelected { torrent, .. }
            | Event::TorrentError { torrent, .. }
            | Event::FsopsStarted { torrent }
            | Event::FsopsStep { torrent, .. }
            | Event::FsopsCompleted { torrent, .. }
            | Event::FsopsFailed { torrent, .. } => Some(torrent),
            Event::HealthChanged { .. }
            | Event::ConfigApplied { .. }
            | Event::KeyIssued { .. }
            | Event::KeyRevoked { .. }
            | Event::RateLimited { .. } => None,
        }
    }

    /// The new state of a `state_changed` event (what the `state` filter
    /// of `GET /v1/events` looks at).
    #[must_use]
    pub fn new_state(&self) -> Option<TorrentState> {
        match self {
            Event::StateChanged { state, .. } => Some(*state),
            _ => None,
        }
    }
}

/// One event as the log holds it and as SSE `data:` carries it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StoredEvent {
    /// Durable, strictly increasing id; the SSE `id:`.
    pub id: u64,
    /// When the event happened, Unix seconds.
    pub at: i64,
    pub event: Event,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_tagged_by_snake_case_type() {
        let e = Event::StateChanged {
            torrent: "ab".repeat(20),
            state: TorrentState::Seeding,
        };
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["type"], "state_changed");
        assert_eq!(v["state"], "seeding");
        assert_eq!(v["torrent"], "ab".repeat(20));
        let back: Event = serde_json::from_value(v).unwrap();
        assert_eq!(back, e);

        let h = Event::HealthChanged {
            status: HealthStatus::Degraded,
            degraded: vec!["engine".to_owned()],
        };
        let v = serde_json::to_value(&h).unwrap();
        assert_eq!(v["type"], "health_changed");
        assert_eq!(v["degraded"][0], "engine");
    }

    #[test]
    fn kind_names_match_the_serde_tag_of_every_variant() {
        let t = || "00".repeat(20);
        let samples = [
            Event::TorrentAdded {
                torrent: t(),
                name: "n".to_owned(),
                state: TorrentState::Downloading,
            },
            Event::MetadataReceived {
                torrent: t(),
                name: "n".to_owned(),
            },
            Event::StateChanged {
                torrent: t(),
                state: TorrentState::Paused,
            },
            Event::Progress {
                torrent: t(),
                state: TorrentState::Downloading,
                progress: 0.5,
                download_bps: 1,
                upload_bps: 2,
                peers: 3,
                seeds: 4,
                size_wanted: 5,
                size_done: 6,
                downloaded: 7,
                uploaded: 8,
            },
            Event::Completed { torrent: t() },
            Event::TorrentRemoved { torrent: t() },
            Event::FilesSelected {
                torrent: t(),
                priorities: vec![0, 4],
            },
            Event::TorrentError {
                torrent: t(),
                source: TorrentErrorSource::Tracker,
                message: "m".to_owned(),
                url: Some("http://t".to_owned()),
            },
            Event::FsopsStarted { torrent: t() },
            Event::FsopsStep {
                torrent: t(),
                step: "move".to_owned(),
                outcome: "ok".to_owned(),
            },
            Event::FsopsCompleted {
                torrent: t(),
                library_path: "tv/show".to_owned(),
            },
            Event::FsopsFailed {
                torrent: t(),
                step: None,
                message: "m".to_owned(),
            },
            Event::HealthChanged {
                status: HealthStatus::Ok,
                degraded: vec![],
            },
            Event::ConfigApplied { revision: 3 },
            Event::KeyIssued {
                key_id: "k".to_owned(),
                name: "n".to_owned(),
                scope: KeyScope::Read,
                rotated: false,
                by: "a".to_owned(),
            },
            Event::KeyRevoked {
                key_id: "k".to_owned(),
                by: "a".to_owned(),
            },
            Event::RateLimited {
                key_id: "k".to_owned(),
            },
        ];
        assert_eq!(samples.len(), EventKind::ALL.len());
        for (sample, kind) in samples.iter().zip(EventKind::ALL) {
            assert_eq!(sample.kind(), kind);
            let v = serde_json::to_value(sample).unwrap();
            assert_eq!(v["type"], kind.as_str());
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
            assert_eq!(EventKind::parse(kind.as_str()), Some(kind));
            assert_eq!(
                sample.torrent().is_some(),
                v.get("torrent").is_some(),
                "{v}"
            );
            let back: Event = serde_json::from_value(v).unwrap();
            assert_eq!(&back, sample);
        }
        assert_eq!(EventKind::parse("reset"), None);
        assert_eq!(EventKind::parse("Progress"), None);
    }

    #[test]
    fn stored_event_nests_the_event() {
        let s = StoredEvent {
            id: 7,
            at: 1,
            event: Event::Completed {
                torrent: "ff".repeat(20),
            },
        };
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["id"], 7);
        assert_eq!(v["event"]["type"], "completed");
    }
}
