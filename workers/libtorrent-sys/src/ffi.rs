//! The raw cxx bridge: plain data structs shared with C++ and the declarations
//! of `cpp/bridge.h`. Nothing outside this crate sees these types; the safe
//! wrappers in `session.rs`, `metainfo.rs` and `alert.rs` convert them.
//!
//! Every C++ function is declared as returning `Result`: the C++ side catches
//! every exception and rethrows one encoded `std::runtime_error`, which cxx
//! hands over as `Err(cxx::Exception)` (see `error.rs`). No C++ object leaves
//! C++ except `BridgeSession`, which is always owned by a `UniquePtr`.

#[cxx::bridge(namespace = "revaer::ltb")]
pub(crate) mod bridge {
    /// Session-wide settings (mirrors `crate::SessionSettings`).
    struct FfiSettings {
        listen_interfaces: String,
        enable_dht: bool,
        enable_lsd: bool,
        enable_upnp: bool,
        enable_natpmp: bool,
        enable_utp: bool,
        download_rate_limit: i32,
        upload_rate_limit: i32,
        connections_limit: i32,
        allow_multiple_connections_per_ip: bool,
        outgoing_interfaces: String,
        user_agent: String,
    }

    /// A torrent id: v1 info-hash, or the truncated v2 hash of torrents added
    /// without a v1 hash (see `crate::TorrentId`).
    #[derive(Clone, Copy)]
    struct FfiId {
        bytes: [u8; 20],
    }

    /// An IP address (textual, v4 or v6) and a port.
    struct FfiEndpoint {
        ip: String,
        port: u16,
    }

    /// Where the torrent comes from; the bytes travel as a separate slice.
    enum FfiSourceKind {
        Magnet,
        TorrentFile,
        ResumeData,
    }

    /// `crate::AddTorrentParams` without the source bytes.
    struct FfiAddParams {
        kind: FfiSourceKind,
        save_path: String,
        paused: bool,
        auto_managed: bool,
        sequential: bool,
        file_priorities: Vec<u8>,
        download_limit: i32,
        upload_limit: i32,
        peers: Vec<FfiEndpoint>,
        trackers: Vec<String>,
        /// When set, `id` is the id the torrent is to keep (its v1 hash or
        /// its truncated v2 hash); otherwise the default one.
        has_id: bool,
        id: FfiId,
    }

    struct FfiLimits {
        download: i32,
        upload: i32,
    }

    /// A `lt::torrent_status` snapshot.
    struct FfiStatus {
        id: FfiId,
        name: String,
        state: i32,
        paused: bool,
        auto_managed: bool,
        sequential: bool,
        has_metadata: bool,
        is_finished: bool,
        is_seeding: bool,
        /// Stopped requesting pieces after a disk write failed.
        upload_mode: bool,
        progress_ppm: u32,
        download_rate: i64,
        upload_rate: i64,
        num_peers: i32,
        num_seeds: i32,
        total_done: i64,
        total_wanted: i64,
        total_wanted_done: i64,
        total_download: i64,
        total_upload: i64,
        all_time_download: i64,
        all_time_upload: i64,
        num_pieces_have: i32,
        save_path: String,
        has_error: bool,
        error: String,
    }

    struct FfiFile {
        index: u32,
        path: String,
        size: i64,
        offset: i64,
        pad: bool,
    }

    /// Metadata of a torrent. `present` is false when a session has no
    /// metadata for it yet (all other fields are then empty).
    struct FfiTorrentInfo {
        present: bool,
        id: FfiId,
        name: String,
        total_size: i64,
        piece_length: i32,
        num_pieces: i32,
        is_private: bool,
        files: Vec<FfiFile>,
        trackers: Vec<String>,
        comment: String,
        creator: String,
        has_v1: bool,
        v1_hex: String,
        has_v2: bool,
        v2_hex: String,
    }

    /// One connected peer of a torrent (`lt::peer_info`).
    struct FfiPeer {
        ip: String,
        port: u16,
        client: String,
        /// The peer has every piece.
        seed: bool,
        /// We want pieces it has.
        interested: bool,
        /// It chokes us (we may not request).
        choked: bool,
        remote_interested: bool,
        /// We choke it.
        remote_choked: bool,
        /// RC4 or plaintext-header encryption (BEP 8 / MSE).
        encrypted: bool,
        utp: bool,
        /// We opened the connection.
        outgoing: bool,
        progress_ppm: u32,
        download_rate: i32,
        upload_rate: i32,
        downloaded: i64,
        uploaded: i64,
    }

    /// One tracker of a torrent with what its announces reported, merged
    /// over the session's listen sockets (one announce each): working if
    /// any answered.
    struct FfiTracker {
        url: String,
        tier: u8,
        working: bool,
        /// An announce is in flight.
        updating: bool,
        /// Consecutive failures of the worst endpoint.
        fails: i32,
        /// Seconds until the next announce; -1 when none is scheduled.
        next_announce_secs: i64,
        /// The tracker's last error ("" when none), when no endpoint works.
        last_error: String,
        /// The tracker's warning or failure text ("" when none).
        message: String,
        /// Scrape counts (-1 = not known).
        seeders: i32,
        leechers: i32,
        downloaded: i32,
    }

    struct FfiMagnet {
        id: FfiId,
        has_name: bool,
        name: String,
        trackers: Vec<String>,
    }

    /// Which alert an `FfiAlert` carries (`Other` for everything unmapped).
    enum FfiAlertKind {
        AddTorrent,
        MetadataReceived,
        StateChanged,
        TorrentFinished,
        TorrentPaused,
        TorrentResumed,
        TorrentRemoved,
        TorrentDeleted,
        TorrentDeleteFailed,
        TorrentError,
        FileError,
        TrackerAnnounce,
        TrackerReply,
        TrackerError,
        SaveResumeData,
        SaveResumeDataFailed,
        StateUpdate,
        SessionStats,
        ListenSucceeded,
        ListenFailed,
        HashFailed,
        FastresumeRejected,
        FilePrioritiesUpdated,
        CacheFlushed,
        Other,
    }

    /// One alert, flattened. Field use per kind is documented in
    /// `alert.rs::from_ffi` and in `cpp/bridge.cpp::convert_alert`.
    struct FfiAlert {
        kind: FfiAlertKind,
        id: FfiId,
        state: i32,
        prev_state: i32,
        number: i32,
        port: u16,
        has_error: bool,
        text: String,
        detail: String,
        data: Vec<u8>,
        statuses: Vec<FfiStatus>,
        counters: Vec<i64>,
    }

    struct FfiMetric {
        name: String,
        index: usize,
    }

    /// Inputs of `create_torrent`: `format` 0 = hybrid v1+v2, 1 = v1 only,
    /// 2 = v2 only. `parent` is the directory `content` is relative to.
    struct FfiCreateOptions {
        content: String,
        parent: String,
        piece_size: i32,
        trackers: Vec<String>,
        format: u8,
        creator: String,
        comment: String,
    }

    // `unsafe extern` is cxx's way of saying "these declarations are ours to
    // get right": every signature below matches cpp/bridge.h (the generated
    // C++ fails to compile otherwise), takes only cxx-checked types, keeps no
    // reference beyond the call, and never lets an exception cross (all are
    // `Result`), so each function is safe to call from Rust.
    unsafe extern "C++" {
        include!("revaer-libtorrent-sys/cpp/bridge.h");

        /// Owns an `lt::session`; internally synchronised (see `session.rs`).
        type BridgeSession;

        fn new_session(settings: &FfiSettings) -> Result<UniquePtr<BridgeSession>>;
        fn apply_settings(self: &BridgeSession, settings: &FfiSettings) -> Result<()>;
        fn current_settings(self: &BridgeSession) -> Result<FfiSettings>;
        fn listen_port(self: &BridgeSession) -> Result<u16>;
        fn pause_session(self: &BridgeSession) -> Result<()>;
        fn resume_session(self: &BridgeSession) -> Result<()>;
        fn session_paused(self: &BridgeSession) -> Result<bool>;
        fn reopen_network_sockets(self: &BridgeSession) -> Result<()>;
        fn add_torrent(self: &BridgeSession, params: &FfiAddParams, source: &[u8])
        -> Result<FfiId>;
        fn remove_torrent(self: &BridgeSession, id: &FfiId, delete_files: bool) -> Result<()>;
        fn pause(self: &BridgeSession, id: &FfiId) -> Result<()>;
        fn resume(self: &BridgeSession, id: &FfiId) -> Result<()>;
        fn force_reannounce(self: &BridgeSession, id: &FfiId) -> Result<()>;
        fn force_recheck(self: &BridgeSession, id: &FfiId) -> Result<()>;
        fn flush_cache(self: &BridgeSession, id: &FfiId) -> Result<()>;
        fn set_sequential(self: &BridgeSession, id: &FfiId, on: bool) -> Result<()>;
        fn set_limits(self: &BridgeSession, id: &FfiId, download: i32, upload: i32) -> Result<()>;
        fn limits(self: &BridgeSession, id: &FfiId) -> Result<FfiLimits>;
        fn set_file_priorities(self: &BridgeSession, id: &FfiId, priorities: &[u8]) -> Result<()>;
        fn file_priorities(self: &BridgeSession, id: &FfiId) -> Result<Vec<u8>>;
        fn file_progress(self: &BridgeSession, id: &FfiId) -> Result<Vec<i64>>;
        fn peers(self: &BridgeSession, id: &FfiId) -> Result<Vec<FfiPeer>>;
        fn trackers(self: &BridgeSession, id: &FfiId) -> Result<Vec<FfiTracker>>;
        fn status(self: &BridgeSession, id: &FfiId) -> Result<FfiStatus>;
        fn torrent_info(self: &BridgeSession, id: &FfiId) -> Result<FfiTorrentInfo>;
        fn torrents(self: &BridgeSession) -> Result<Vec<FfiId>>;
        fn post_torrent_updates(self: &BridgeSession) -> Result<()>;
        fn post_session_stats(self: &BridgeSession) -> Result<()>;
        fn save_resume_data(self: &BridgeSession, id: &FfiId) -> Result<()>;
        fn connect_peer(self: &BridgeSession, id: &FfiId, peer: &FfiEndpoint) -> Result<()>;
        fn wait_for_alert(self: &BridgeSession, timeout_ms: i64) -> Result<bool>;
        fn pop_alerts(self: &BridgeSession) -> Result<Vec<FfiAlert>>;

        fn session_stats_metrics() -> Result<Vec<FfiMetric>>;
        fn parse_torrent(bytes: &[u8]) -> Result<FfiTorrentInfo>;
        fn parse_magnet(uri: &str) -> Result<FfiMagnet>;
        fn create_torrent(options: &FfiCreateOptions) -> Result<Vec<u8>>;
    }
}

// SAFETY: `BridgeSession` only wraps an `lt::session`, whose public API is
// documented as thread-safe: every call is marshalled onto the session's own
// network thread. The wrapper keeps no unsynchronised state of its own
// (`pop_alerts` serialises on a mutex), and its destructor may run on any
// thread, so moving it between threads is sound.
unsafe impl Send for bridge::BridgeSession {}
// SAFETY: all `BridgeSession` methods take `&self` and are safe to call
// concurrently for the reasons above; alert memory is copied into owned Rust
// values under the alert mutex before another `pop_alerts` may run.
unsafe impl Sync for bridge::BridgeSession {}
