//! `Session`: the safe owner of one libtorrent session, and every operation
//! on the torrents in it.
//!
//! Threading: `lt::session` is internally synchronised (each call is posted
//! to its network thread), so `Session` is `Send + Sync` and every method
//! takes `&self`. Alerts should be drained by one pump (`wait_for_alert` +
//! `pop_alerts`); concurrent `pop_alerts` calls are serialised by the bridge
//! and each alert is delivered to exactly one caller.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use cxx::UniquePtr;

use crate::alert::Alert;
use crate::error::Error;
use crate::ffi::bridge;
use crate::types::{
    AddTorrentParams, SessionSettings, TorrentId, TorrentInfo, TorrentSource, TorrentStatus,
};
use crate::{MAX_MAGNET_BYTES, MAX_RESUME_DATA_BYTES, MAX_TORRENT_BYTES};

/// Highest libtorrent file priority.
const MAX_FILE_PRIORITY: u8 = 7;

/// One libtorrent session. Dropping it shuts the session down (blocking
/// until libtorrent's threads have stopped).
pub struct Session {
    /// Never null: `new` refuses a null pointer.
    inner: UniquePtr<bridge::BridgeSession>,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session").finish_non_exhaustive()
    }
}

impl Session {
    /// Starts a session with `settings` and Revaer's alert mask.
    pub fn new(settings: &SessionSettings) -> Result<Self, Error> {
        validate_settings(settings)?;
        let inner =
            bridge::new_session(&settings.to_ffi()).map_err(|e| Error::from_cxx(&e, None))?;
        if inner.is_null() {
            return Err(Error::Cxx("new_session returned no session".to_owned()));
        }
        Ok(Self { inner })
    }

    fn ses(&self) -> Result<&bridge::BridgeSession, Error> {
        self.inner
            .as_ref()
            .ok_or_else(|| Error::Cxx("session pointer is null".to_owned()))
    }

    /// Replaces the session-wide settings.
    pub fn apply_settings(&self, settings: &SessionSettings) -> Result<(), Error> {
        validate_settings(settings)?;
        self.ses()?
            .apply_settings(&settings.to_ffi())
            .map_err(|e| Error::from_cxx(&e, None))
    }

    /// The settings in force, read back from libtorrent (not from what was
    /// last applied), so callers can check a change really took effect.
    pub fn current_settings(&self) -> Result<SessionSettings, Error> {
        self.ses()?
            .current_settings()
            .map(|s| SessionSettings::from_ffi(&s))
            .map_err(|e| Error::from_cxx(&e, None))
    }

    /// The TCP port the session listens on (the real one after binding port
    /// 0), or 0 when it does not listen.
    #[must_use]
    pub fn listen_port(&self) -> u16 {
        self.ses()
            .and_then(|s| s.listen_port().map_err(|e| Error::from_cxx(&e, None)))
            .unwrap_or(0)
    }

    /// Pauses the whole session: every torrent stops transferring and
    /// announcing and every peer is disconnected, while each torrent keeps
    /// its own paused/resumed state for [`Self::resume_session`].
    pub fn pause_session(&self) -> Result<(), Error> {
        self.ses()?
            .pause_session()
            .map_err(|e| Error::from_cxx(&e, None))
    }

    /// Undoes [`Self::pause_session`]: torrents that were running run again.
    pub fn resume_session(&self) -> Result<(), Error> {
        self.ses()?
            .resume_session()
            .map_err(|e| Error::from_cxx(&e, None))
    }

    /// Whether the session is paused by [`Self::pause_session`].
    pub fn session_paused(&self) -> Result<bool, Error> {
        self.ses()?
            .session_paused()
            .map_err(|e| Error::from_cxx(&e, None))
    }

    /// Closes and reopens the listen sockets (and the outgoing ones' bind
    /// addresses) from the current network interfaces, e.g. after a bound
    /// interface came back.
    pub fn reopen_network_sockets(&self) -> Result<(), Error> {
        self.ses()?
            .reopen_network_sockets()
            .map_err(|e| Error::from_cxx(&e, None))
    }

    /// Adds a torrent synchronously and returns its id. Adding a torrent
    /// that is already in the session (under either of its hashes) fails
    /// with `AlreadyExists`.
    ///
    /// The id is the v1 info-hash when the source knows it, else the v2
    /// info-hash truncated to 20 bytes, or [`AddTorrentParams::id`] when
    /// given. The torrent keeps that id for as long as it is in the
    /// session: every status, alert, [`Self::torrents`] and
    /// [`Self::torrent_info`] carries it. In particular a `urn:btmh:` (v2)
    /// magnet of a hybrid torrent stays under its truncated v2 id when the
    /// metadata brings the v1 hash. Every call accepts either hash.
    ///
    /// Resume data saved with metadata knows both hashes: to re-add it
    /// under the id the torrent had, pass that id in
    /// [`AddTorrentParams::id`].
    pub fn add_torrent(&self, params: &AddTorrentParams) -> Result<TorrentId, Error> {
        let (kind, source): (bridge::FfiSourceKind, &[u8]) = match &params.source {
            TorrentSource::Magnet(uri) => {
                check_size("magnet link", uri.len(), MAX_MAGNET_BYTES)?;
                (bridge::FfiSourceKind::Magnet, uri.as_bytes())
            }
            TorrentSource::TorrentFile(bytes) => {
                check_size("torrent file", bytes.len(), MAX_TORRENT_BYTES)?;
                (bridge::FfiSourceKind::TorrentFile, bytes)
            }
            TorrentSource::ResumeData(bytes) => {
                check_size("resume data", bytes.len(), MAX_RESUME_DATA_BYTES)?;
                (bridge::FfiSourceKind::ResumeData, bytes)
            }
        };
        validate_priorities(&params.file_priorities)?;
        validate_limit("download limit", params.download_limit)?;
        validate_limit("upload limit", params.upload_limit)?;
        let save_path = params
            .save_path
            .to_str()
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "save path is not UTF-8: {}",
                    params.save_path.display()
                ))
            })?
            .to_owned();
        let ffi_params = bridge::FfiAddParams {
            kind,
            save_path,
            paused: params.paused,
            auto_managed: params.auto_managed,
            sequential: params.sequential,
            file_priorities: params.file_priorities.clone(),
            download_limit: params.download_limit,
            upload_limit: params.upload_limit,
            peers: params.peers.iter().map(endpoint).collect(),
            trackers: params.trackers.clone(),
            has_id: params.id.is_some(),
            id: params.id.unwrap_or(TorrentId::new([0; 20])).to_ffi(),
        };
        self.ses()?
            .add_torrent(&ffi_params, source)
            .map(|id| TorrentId::from_ffi(&id))
            .map_err(|e| Error::from_cxx(&e, None))
    }

    /// Removes a torrent; with `delete_files` its downloaded files go too
    /// (answered by `Alert::TorrentDeleted` / `TorrentDeleteFailed`).
    pub fn remove_torrent(&self, id: &TorrentId, delete_files: bool) -> Result<(), Error> {
        self.ses()?
            .remove_torrent(&id.to_ffi(), delete_files)
            .map_err(|e| Error::from_cxx(&e, Some(id)))
    }

    /// Pauses a torrent and takes it out of auto-management, so that the
    /// queue does not resume it.
    pub fn pause(&self, id: &TorrentId) -> Result<(), Error> {
        self.ses()?
            .pause(&id.to_ffi())
            .map_err(|e| Error::from_cxx(&e, Some(id)))
    }

    /// Resumes a torrent (it stays out of auto-management), clearing the
    /// error that stopped it, if any (e.g. the disk was full).
    pub fn resume(&self, id: &TorrentId) -> Result<(), Error> {
        self.ses()?
            .resume(&id.to_ffi())
            .map_err(|e| Error::from_cxx(&e, Some(id)))
    }

    /// Announces to all trackers now.
    pub fn force_reannounce(&self, id: &TorrentId) -> Result<(), Error> {
        self.ses()?
            .force_reannounce(&id.to_ffi())
            .map_err(|e| Error::from_cxx(&e, Some(id)))
    }

    /// Re-hashes all pieces on disk.
    pub fn force_recheck(&self, id: &TorrentId) -> Result<(), Error> {
        self.ses()?
            .force_recheck(&id.to_ffi())
            .map_err(|e| Error::from_cxx(&e, Some(id)))
    }

    /// Writes every block of the torrent libtorrent still holds in memory
    /// to its files; [`crate::Alert::CacheFlushed`] says when that is done.
    /// A finished torrent's pieces are verified before all of them are
    /// necessarily in the files: read them only after this.
    pub fn flush_cache(&self, id: &TorrentId) -> Result<(), Error> {
        self.ses()?
            .flush_cache(&id.to_ffi())
            .map_err(|e| Error::from_cxx(&e, Some(id)))
    }

    pub fn set_sequential(&self, id: &TorrentId, on: bool) -> Result<(), Error> {
        self.ses()?
            .set_sequential(&id.to_ffi(), on)
            .map_err(|e| Error::from_cxx(&e, Some(id)))
    }

    /// Per-torrent rate limits in bytes per second, 0 = unlimited.
    pub fn set_torrent_limits(
        &self,
        id: &TorrentId,
        download: i32,
        upload: i32,
    ) -> Result<(), Error> {
        validate_limit("download limit", download)?;
        validate_limit("upload limit", upload)?;
        self.ses()?
            .set_limits(&id.to_ffi(), download, upload)
            .map_err(|e| Error::from_cxx(&e, Some(id)))
    }

    /// `(download, upload)` limits in bytes per second, 0 = unlimited.
    pub fn torrent_limits(&self, id: &TorrentId) -> Result<(i32, i32), Error> {
        self.ses()?
            .limits(&id.to_ffi())
            .map(|l| (l.download, l.upload))
            .map_err(|e| Error::from_cxx(&e, Some(id)))
    }

    /// One priority per file: 0 = do not download, 1..=7 (4 is the default).
    /// Takes effect asynchronously (a disk-thread round trip), signalled by
    /// `Alert::FilePrioritiesUpdated`; `file_priorities` reads the old values
    /// until then. Priorities given at add time apply at once. Padding files
    /// ([`crate::FileEntry::pad`]) read back as 0 after a change.
    pub fn set_file_priorities(&self, id: &TorrentId, priorities: &[u8]) -> Result<(), Error> {
        validate_priorities(priorities)?;
        self.ses()?
            .set_file_priorities(&id.to_ffi(), priorities)
            .map_err(|e| Error::from_cxx(&e, Some(id)))
    }

    pub fn file_priorities(&self, id: &TorrentId) -> Result<Vec<u8>, Error> {
        self.ses()?
            .file_priorities(&id.to_ffi())
            .map_err(|e| Error::from_cxx(&e, Some(id)))
    }

    /// Bytes downloaded of each file (piece granularity: a file's share of
    /// a piece counts once the whole piece passed its hash check), indexed
    /// like [`crate::TorrentInfo::files`]; empty before metadata arrives.
    pub fn file_progress(&self, id: &TorrentId) -> Result<Vec<i64>, Error> {
        self.ses()?
            .file_progress(&id.to_ffi())
            .map_err(|e| Error::from_cxx(&e, Some(id)))
    }

    /// The torrent's connected peers.
    pub fn peers(&self, id: &TorrentId) -> Result<Vec<crate::PeerInfo>, Error> {
        self.ses()?
            .peers(&id.to_ffi())
            .map(|peers| peers.into_iter().map(crate::PeerInfo::from_ffi).collect())
            .map_err(|e| Error::from_cxx(&e, Some(id)))
    }

    /// The torrent's trackers with their announce and scrape state.
    pub fn trackers(&self, id: &TorrentId) -> Result<Vec<crate::TrackerInfo>, Error> {
        self.ses()?
            .trackers(&id.to_ffi())
            .map(|trackers| {
                trackers
                    .into_iter()
                    .map(crate::TrackerInfo::from_ffi)
                    .collect()
            })
            .map_err(|e| Error::from_cxx(&e, Some(id)))
    }

    pub fn status(&self, id: &TorrentId) -> Result<TorrentStatus, Error> {
        self.ses()?
            .status(&id.to_ffi())
            .map(TorrentStatus::from_ffi)
            .map_err(|e| Error::from_cxx(&e, Some(id)))
    }

    /// The torrent's metadata; `None` until a magnet torrent has it.
    pub fn torrent_info(&self, id: &TorrentId) -> Result<Option<TorrentInfo>, Error> {
        self.ses()?
            .torrent_info(&id.to_ffi())
            .map(TorrentInfo::from_ffi)
            .map_err(|e| Error::from_cxx(&e, Some(id)))
    }

    /// Ids of all torrents in the session.
    pub fn torrents(&self) -> Result<Vec<TorrentId>, Error> {
        self.ses()?
            .torrents()
            .map(|ids| ids.iter().map(TorrentId::from_ffi).collect())
            .map_err(|e| Error::from_cxx(&e, None))
    }

    /// Asks for an `Alert::StateUpdate` with the torrents that changed since
    /// the last call (name and save path included).
    pub fn post_torrent_updates(&self) {
        // Only fails on out-of-memory; the answer alert then simply does
        // not come, which callers already handle (they poll with deadlines).
        let _ = self.ses().map(bridge::BridgeSession::post_torrent_updates);
    }

    /// Asks for an `Alert::SessionStats`.
    pub fn post_session_stats(&self) {
        // See post_torrent_updates.
        let _ = self.ses().map(bridge::BridgeSession::post_session_stats);
    }

    /// Name and counter index of every session statistic
    /// (`lt::session_stats_metrics`); `Alert::SessionStats::counters` is
    /// indexed by these.
    #[must_use]
    pub fn session_stats_metric_names() -> Vec<(String, usize)> {
        bridge::session_stats_metrics()
            .map(|metrics| metrics.into_iter().map(|m| (m.name, m.index)).collect())
            .unwrap_or_default()
    }

    /// Asks for resume data (with the info dictionary, after flushing the
    /// disk cache), answered by `Alert::SaveResumeData` or
    /// `Alert::SaveResumeDataFailed`.
    pub fn save_resume_data(&self, id: &TorrentId) -> Result<(), Error> {
        self.ses()?
            .save_resume_data(&id.to_ffi())
            .map_err(|e| Error::from_cxx(&e, Some(id)))
    }

    /// Connects the torrent to a peer (TCP).
    pub fn connect_peer(&self, id: &TorrentId, addr: SocketAddr) -> Result<(), Error> {
        self.ses()?
            .connect_peer(&id.to_ffi(), &endpoint(&addr))
            .map_err(|e| Error::from_cxx(&e, Some(id)))
    }

    /// Blocks until an alert is pending or `timeout` passes; true when one is.
    #[must_use]
    pub fn wait_for_alert(&self, timeout: Duration) -> bool {
        let millis = i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX);
        self.ses()
            .and_then(|s| {
                s.wait_for_alert(millis)
                    .map_err(|e| Error::from_cxx(&e, None))
            })
            .unwrap_or(false)
    }

    /// Takes all pending alerts. Returns nothing if the bridge failed (only
    /// on out-of-memory); `try_pop_alerts` reports that failure.
    #[must_use]
    pub fn pop_alerts(&self) -> Vec<Alert> {
        self.try_pop_alerts().unwrap_or_default()
    }

    /// Takes all pending alerts.
    pub fn try_pop_alerts(&self) -> Result<Vec<Alert>, Error> {
        self.ses()?
            .pop_alerts()
            .map(|alerts| alerts.into_iter().map(Alert::from_ffi).collect())
            .map_err(|e| Error::from_cxx(&e, None))
    }
}

fn endpoint(addr: &SocketAddr) -> bridge::FfiEndpoint {
    bridge::FfiEndpoint {
        ip: addr.ip().to_string(),
        port: addr.port(),
    }
}

pub(crate) fn check_size(what: &'static str, size: usize, limit: usize) -> Result<(), Error> {
    if size > limit {
        return Err(Error::TooLarge { what, size, limit });
    }
    Ok(())
}

fn validate_priorities(priorities: &[u8]) -> Result<(), Error> {
    match priorities.iter().find(|&&p| p > MAX_FILE_PRIORITY) {
        Some(p) => Err(Error::InvalidArgument(format!(
            "file priority {p} is above {MAX_FILE_PRIORITY}"
        ))),
        None => Ok(()),
    }
}

fn validate_limit(what: &str, value: i32) -> Result<(), Error> {
    if value < 0 {
        return Err(Error::InvalidArgument(format!(
            "{what} {value} is negative (0 = unlimited)"
        )));
    }
    Ok(())
}

fn validate_settings(settings: &SessionSettings) -> Result<(), Error> {
    validate_limit("download rate limit", settings.download_rate_limit)?;
    validate_limit("upload rate limit", settings.upload_rate_limit)?;
    validate_limit("connections limit", settings.connections_limit)?;
    if settings.listen_interfaces.contains('\0')
        || settings.outgoing_interfaces.contains('\0')
        || settings.user_agent.contains('\0')
    {
        return Err(Error::InvalidArgument(
            "settings strings may not contain NUL".to_owned(),
        ));
    }
    Ok(())
}
