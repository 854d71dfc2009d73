//! The engine's own Prometheus registry, served to the API over the data
//! channel (`WorkerRequest::Metrics`) and merged into its `/metrics`.
//!
//! Everything here is cheap to keep: counters bumped where the engine
//! already handles an alert or writes resume data, the torrent-state gauge
//! computed from the in-memory summaries at scrape time, and a handful of
//! libtorrent session counters copied from the session-stats alert the
//! ticker asks for. Every name starts with `revaer_engine_`, so no family
//! collides with the API's or `FsOps`'. A registry that cannot be built
//! (never expected: names and labels are constants) disables the metrics
//! and logs why; the engine itself is unaffected.

use libtorrent_sys as lt;
use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};
use revaer_ipc::engine::TorrentState;

/// Every state a torrent can be in, with its label value (the same
/// snake-case names the HTTP API uses).
const STATES: [(TorrentState, &str); 8] = [
    (TorrentState::CheckingResumeData, "checking_resume_data"),
    (TorrentState::CheckingFiles, "checking_files"),
    (TorrentState::DownloadingMetadata, "downloading_metadata"),
    (TorrentState::Downloading, "downloading"),
    (TorrentState::Finished, "finished"),
    (TorrentState::Seeding, "seeding"),
    (TorrentState::Paused, "paused"),
    (TorrentState::Error, "error"),
];

/// libtorrent session-stats counters copied into the registry.
const RECV_PAYLOAD: &str = "net.recv_payload_bytes";
const SENT_PAYLOAD: &str = "net.sent_payload_bytes";
const PEERS_CONNECTED: &str = "peer.num_peers_connected";
const DHT_NODES: &str = "dht.dht_nodes";

/// libtorrent counters of peer connections opened, by direction.
const PEER_ATTEMPTS: [(&str, &str); 2] = [
    ("peer.connection_attempts", "outgoing"),
    ("peer.incoming_connections", "incoming"),
];

/// libtorrent counters of peer connections that failed or were closed for
/// a reason worth seeing, with the `reason` label each becomes.
const PEER_FAILURES: [(&str, &str); 10] = [
    ("peer.connect_timeouts", "connect_timeout"),
    ("peer.connrefused_peers", "refused"),
    ("peer.connreset_peers", "reset"),
    ("peer.connaborted_peers", "aborted"),
    ("peer.unreachable_peers", "unreachable"),
    ("peer.timeout_peers", "timeout"),
    ("peer.eof_peers", "closed_by_peer"),
    ("peer.banned_for_hash_failure", "banned_hash_failure"),
    ("peer.too_many_peers", "too_many_peers"),
    ("peer.error_peers", "other_error"),
];

/// Tracker error classes, each exported from the start.
const TRACKER_ERROR_KINDS: [lt::TrackerErrorKind; 6] = [
    lt::TrackerErrorKind::Refused,
    lt::TrackerErrorKind::Timeout,
    lt::TrackerErrorKind::Connect,
    lt::TrackerErrorKind::Http,
    lt::TrackerErrorKind::Dns,
    lt::TrackerErrorKind::Other,
];

/// The engine's metrics. Cheap to update from any thread.
#[derive(Debug)]
pub struct EngineMetrics {
    /// `None` when the registry could not be built (logged once).
    families: Option<Families>,
}

#[derive(Debug)]
struct Families {
    registry: Registry,
    torrents: IntGaugeVec,
    alerts: IntCounterVec,
    resume_writes: IntCounterVec,
    payload_received: IntCounter,
    payload_sent: IntCounter,
    peers_connected: IntGauge,
    dht_nodes: IntGauge,
    network_blocked: IntGauge,
    peer_attempts: IntCounterVec,
    peer_failures: IntCounterVec,
    tracker_errors: IntCounterVec,
    stats: StatsIndex,
}

/// Where the counters we copy sit in `Alert::SessionStats::counters`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct StatsIndex {
    recv_payload: Option<usize>,
    sent_payload: Option<usize>,
    peers_connected: Option<usize>,
    dht_nodes: Option<usize>,
    /// Positions of [`PEER_ATTEMPTS`] and [`PEER_FAILURES`] (same order).
    peer_attempts: [Option<usize>; PEER_ATTEMPTS.len()],
    peer_failures: [Option<usize>; PEER_FAILURES.len()],
}

impl StatsIndex {
    fn from_names(names: &[(String, usize)]) -> Self {
        let find = |wanted: &str| names.iter().find(|(n, _)| n == wanted).map(|(_, i)| *i);
        Self {
            recv_payload: find(RECV_PAYLOAD),
            sent_payload: find(SENT_PAYLOAD),
            peers_connected: find(PEERS_CONNECTED),
            dht_nodes: find(DHT_NODES),
            peer_attempts: PEER_ATTEMPTS.map(|(name, _)| find(name)),
            peer_failures: PEER_FAILURES.map(|(name, _)| find(name)),
        }
    }
}

impl Families {
    #[allow(
        clippy::too_many_lines,
        reason = "one declaration and one registration per metric family, in one place"
    )]
    fn new(stats: StatsIndex) -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let torrents = IntGaugeVec::new(
            Opts::new(
                "revaer_engine_torrents",
                "Torrents in the engine, by state.",
            ),
            &["state"],
        )?;
        let alerts = IntCounterVec::new(
            Opts::new(
                "revaer_engine_alerts_total",
                "libtorrent alerts handled by the engine, by kind.",
            ),
            &["kind"],
        )?;
        let resume_writes = IntCounterVec::new(
            Opts::new(
                "revaer_engine_resume_writes_total",
                "Resume-data files written to state/engine/, by outcome (ok, error).",
            ),
            &["outcome"],
        )?;
        let payload_received = IntCounter::new(
            "revaer_engine_payload_received_bytes_total",
            "BitTorrent payload bytes received by the session (libtorrent net.recv_payload_bytes).",
        )?;
        let payload_sent = IntCounter::new(
            "revaer_engine_payload_sent_bytes_total",
            "BitTorrent payload bytes sent by the session (libtorrent net.sent_payload_bytes).",
        )?;
        let peers_connected = IntGauge::new(
            "revaer_engine_peers_connected",
            "Peer connections open in the session (libtorrent peer.num_peers_connected).",
        )?;
        let dht_nodes = IntGauge::new(
            "revaer_engine_dht_nodes",
            "Nodes in the DHT routing table (libtorrent dht.dht_nodes).",
        )?;
        let network_blocked = IntGauge::new(
            "revaer_engine_network_blocked",
            "1 while the kill switch of engine.interface holds the session paused because the bound interface is missing, else 0.",
        )?;
        let peer_attempts = IntCounterVec::new(
            Opts::new(
                "revaer_engine_peer_connection_attempts_total",
                "Peer connections opened, by direction (libtorrent peer.connection_attempts, peer.incoming_connections).",
            ),
            &["direction"],
        )?;
        let peer_failures = IntCounterVec::new(
            Opts::new(
                "revaer_engine_peer_connection_failures_total",
                "Peer connections that failed or were closed, by reason (libtorrent peer.*_peers and peer.connect_timeouts).",
            ),
            &["reason"],
        )?;
        let tracker_errors = IntCounterVec::new(
            Opts::new(
                "revaer_engine_tracker_errors_total",
                "Failed tracker announces, by kind (refused: the tracker's failure reason; timeout; connect; http; dns; other).",
            ),
            &["kind"],
        )?;
        for (_, direction) in PEER_ATTEMPTS {
            peer_attempts.get_metric_with_label_values(&[direction])?;
        }
        for (_, reason) in PEER_FAILURES {
            peer_failures.get_metric_with_label_values(&[reason])?;
        }
        for kind in TRACKER_ERROR_KINDS {
            tracker_errors.get_metric_with_label_values(&[kind.as_str()])?;
        }
        registry.register(Box::new(peer_attempts.clone()))?;
        registry.register(Box::new(peer_failures.clone()))?;
        registry.register(Box::new(tracker_errors.clone()))?;
        registry.register(Box::new(torrents.clone()))?;
        registry.register(Box::new(alerts.clone()))?;
        registry.register(Box::new(resume_writes.clone()))?;
        registry.register(Box::new(payload_received.clone()))?;
        registry.register(Box::new(payload_sent.clone()))?;
        registry.register(Box::new(peers_connected.clone()))?;
        registry.register(Box::new(dht_nodes.clone()))?;
        registry.register(Box::new(network_blocked.clone()))?;
        // Both outcomes exist from the start, so a rate is defined at once.
        for outcome in ["ok", "error"] {
            resume_writes.get_metric_with_label_values(&[outcome])?;
        }
        Ok(Self {
            registry,
            torrents,
            alerts,
            resume_writes,
            payload_received,
            payload_sent,
            peers_connected,
            dht_nodes,
            network_blocked,
            peer_attempts,
            peer_failures,
            tracker_errors,
            stats,
        })
    }
}

impl Default for EngineMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl EngineMetrics {
    /// Builds the registry; on failure logs it and keeps metrics off.
    #[must_use]
    pub fn new() -> Self {
        let stats = StatsIndex::from_names(&lt::Session::session_stats_metric_names());
        match Families::new(stats) {
            Ok(families) => Self {
                families: Some(families),
            },
            Err(e) => {
                tracing::error!(error = %e, "cannot build the engine metrics registry; metrics are off");
                Self { families: None }
            }
        }
    }

    /// Counts one alert by kind; copies the session counters out of a
    /// session-stats alert.
    pub fn alert(&self, alert: &lt::Alert) {
        let Some(f) = &self.families else { return };
        if let Ok(counter) = f.alerts.get_metric_with_label_values(&[alert_kind(alert)]) {
            counter.inc();
        }
        if let lt::Alert::SessionStats { counters } = alert {
            let value = |index: Option<usize>| index.and_then(|i| counters.get(i)).copied();
            // libtorrent's byte counters only grow within one session, and
            // this registry lives exactly as long as the session.
            if let Some(v) = value(f.stats.recv_payload) {
                advance(&f.payload_received, v);
            }
            if let Some(v) = value(f.stats.sent_payload) {
                advance(&f.payload_sent, v);
            }
            if let Some(v) = value(f.stats.peers_connected) {
                f.peers_connected.set(v);
            }
            if let Some(v) = value(f.stats.dht_nodes) {
                f.dht_nodes.set(v);
            }
            let labelled = PEER_ATTEMPTS
                .iter()
                .zip(f.stats.peer_attempts)
                .map(|((_, label), index)| (&f.peer_attempts, *label, index))
                .chain(
                    PEER_FAILURES
                        .iter()
                        .zip(f.stats.peer_failures)
                        .map(|((_, label), index)| (&f.peer_failures, *label, index)),
                );
            for (family, label, index) in labelled {
                if let (Some(v), Ok(counter)) =
                    (value(index), family.get_metric_with_label_values(&[label]))
                {
                    advance(&counter, v);
                }
            }
        }
        if let lt::Alert::TrackerError { kind, .. } = alert
            && let Ok(counter) = f
                .tracker_errors
                .get_metric_with_label_values(&[kind.as_str()])
        {
            counter.inc();
        }
    }

    /// Whether the kill switch holds the session paused.
    pub fn set_network_blocked(&self, blocked: bool) {
        if let Some(f) = &self.families {
            f.network_blocked.set(i64::from(blocked));
        }
    }

    /// Counts one resume-data file write.
    pub fn resume_write(&self, ok: bool) {
        let Some(f) = &self.families else { return };
        let outcome = if ok { "ok" } else { "error" };
        if let Ok(counter) = f.resume_writes.get_metric_with_label_values(&[outcome]) {
            counter.inc();
        }
    }

    /// The registry as text exposition, with the torrent gauge set from
    /// `states` (one item per torrent). Empty when metrics are off.
    #[must_use]
    pub fn render(&self, states: impl IntoIterator<Item = TorrentState>) -> String {
        let Some(f) = &self.families else {
            return String::new();
        };
        let mut counts = [0_i64; STATES.len()];
        for state in states {
            if let Some(slot) = STATES.iter().position(|(s, _)| *s == state) {
                counts[slot] += 1;
            }
        }
        for ((_, label), count) in STATES.iter().zip(counts) {
            if let Ok(gauge) = f.torrents.get_metric_with_label_values(&[*label]) {
                gauge.set(count);
            }
        }
        match TextEncoder::new().encode_to_string(&f.registry.gather()) {
            Ok(text) => text,
            Err(e) => {
                tracing::error!(error = %e, "cannot encode the engine metrics");
                String::new()
            }
        }
    }
}

/// Moves a counter up to libtorrent's cumulative `value` (never down).
fn advance(counter: &IntCounter, value: i64) {
    let target = u64::try_from(value).unwrap_or(0);
    let current = counter.get();
    if target > current {
        counter.inc_by(target - current);
    }
}

/// Label value for an alert's kind (bounded: one per variant).
fn alert_kind(alert: &lt::Alert) -> &'static str {
    match alert {
        lt::Alert::AddTorrent { .. } => "add_torrent",
        lt::Alert::MetadataReceived { .. } => "metadata_received",
        lt::Alert::StateChanged { .. } => "state_changed",
        lt::Alert::TorrentFinished { .. } => "torrent_finished",
        lt::Alert::TorrentPaused { .. } => "torrent_paused",
        lt::Alert::TorrentResumed { .. } => "torrent_resumed",
        lt::Alert::TorrentRemoved { .. } => "torrent_removed",
        lt::Alert::TorrentDeleted { .. } => "torrent_deleted",
        lt::Alert::TorrentDeleteFailed { .. } => "torrent_delete_failed",
        lt::Alert::TorrentError { .. } => "torrent_error",
        lt::Alert::FileError { .. } => "file_error",
        lt::Alert::TrackerAnnounce { .. } => "tracker_announce",
        lt::Alert::TrackerReply { .. } => "tracker_reply",
        lt::Alert::TrackerError { .. } => "tracker_error",
        lt::Alert::SaveResumeData { .. } => "save_resume_data",
        lt::Alert::SaveResumeDataFailed { .. } => "save_resume_data_failed",
        lt::Alert::StateUpdate(_) => "state_update",
        lt::Alert::SessionStats { .. } => "session_stats",
        lt::Alert::ListenSucceeded { .. } => "listen_succeeded",
        lt::Alert::ListenFailed { .. } => "listen_failed",
        lt::Alert::HashFailed { .. } => "hash_failed",
        lt::Alert::FastresumeRejected { .. } => "fastresume_rejected",
        lt::Alert::FilePrioritiesUpdated { .. } => "file_priorities_updated",
        lt::Alert::CacheFlushed { .. } => "cache_flushed",
        lt::Alert::Other { .. } => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    }

    #[test]
    fn torrent_gauge_counts_every_state_including_zero() {
        let m = EngineMetrics::new();
        let text = m.render([
            TorrentState::Seeding,
            TorrentState::Seeding,
            TorrentState::Paused,
        ]);
        assert!(
            text.contains("# TYPE revaer_engine_torrents gauge"),
            "{text}"
        );
        assert_eq!(
            sample(&text, "revaer_engine_torrents{state=\"seeding\"}"),
            Some(2.0)
        );
        assert_eq!(
            sample(&text, "revaer_engine_torrents{state=\"paused\"}"),
            Some(1.0)
        );
        assert_eq!(
            sample(&text, "revaer_engine_torrents{state=\"downloading\"}"),
            Some(0.0)
        );
        // The gauge follows the torrents; it does not accumulate.
        let text = m.render([TorrentState::Downloading]);
        assert_eq!(
            sample(&text, "revaer_engine_torrents{state=\"seeding\"}"),
            Some(0.0)
        );
        assert_eq!(
            sample(&text, "revaer_engine_torrents{state=\"downloading\"}"),
            Some(1.0)
        );
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            assert!(line.starts_with("revaer_engine_"), "{line}");
        }
    }

    #[test]
    fn alerts_and_resume_writes_are_counted() {
        let m = EngineMetrics::new();
        let id = lt::TorrentId::new([7; 20]);
        m.alert(&lt::Alert::TorrentFinished { id });
        m.alert(&lt::Alert::TorrentFinished { id });
        m.alert(&lt::Alert::Other {
            what: "x".to_owned(),
            message: String::new(),
        });
        m.resume_write(true);
        m.resume_write(true);
        m.resume_write(false);
        let text = m.render([]);
        assert_eq!(
            sample(
                &text,
                "revaer_engine_alerts_total{kind=\"torrent_finished\"}"
            ),
            Some(2.0)
        );
        assert_eq!(
            sample(&text, "revaer_engine_alerts_total{kind=\"other\"}"),
            Some(1.0)
        );
        assert_eq!(
            sample(&text, "revaer_engine_resume_writes_total{outcome=\"ok\"}"),
            Some(2.0)
        );
        assert_eq!(
            sample(
                &text,
                "revaer_engine_resume_writes_total{outcome=\"error\"}"
            ),
            Some(1.0)
        );
    }

    #[test]
    fn peer_counters_come_from_named_session_stats_and_tracker_errors_by_kind() {
        let m = EngineMetrics::new();
        let stats = m.families.as_ref().unwrap().stats;
        // Every counter named exists in the linked libtorrent.
        for ((name, _), index) in PEER_ATTEMPTS.iter().zip(stats.peer_attempts) {
            assert!(index.is_some(), "{name} is not a libtorrent counter");
        }
        for ((name, _), index) in PEER_FAILURES.iter().zip(stats.peer_failures) {
            assert!(index.is_some(), "{name} is not a libtorrent counter");
        }
        let refused = stats.peer_failures[1].unwrap();
        let outgoing = stats.peer_attempts[0].unwrap();
        let mut counters = vec![0_i64; refused.max(outgoing) + 1];
        counters[refused] = 4;
        counters[outgoing] = 9;
        m.alert(&lt::Alert::SessionStats { counters });
        let id = lt::TorrentId::new([3; 20]);
        for kind in [
            lt::TrackerErrorKind::Timeout,
            lt::TrackerErrorKind::Timeout,
            lt::TrackerErrorKind::Refused,
        ] {
            m.alert(&lt::Alert::TrackerError {
                id,
                url: "http://t.example/announce".to_owned(),
                message: "x".to_owned(),
                times_in_row: 1,
                kind,
            });
        }
        let text = m.render([]);
        let value = |series: &str| sample(&text, series);
        assert_eq!(
            value("revaer_engine_peer_connection_failures_total{reason=\"refused\"}"),
            Some(4.0)
        );
        assert_eq!(
            value("revaer_engine_peer_connection_failures_total{reason=\"timeout\"}"),
            Some(0.0)
        );
        assert_eq!(
            value("revaer_engine_peer_connection_attempts_total{direction=\"outgoing\"}"),
            Some(9.0)
        );
        assert_eq!(
            value("revaer_engine_tracker_errors_total{kind=\"timeout\"}"),
            Some(2.0)
        );
        assert_eq!(
            value("revaer_engine_tracker_errors_total{kind=\"refused\"}"),
            Some(1.0)
        );
        assert_eq!(
            value("revaer_engine_tracker_errors_total{kind=\"dns\"}"),
            Some(0.0)
        );
    }

    #[test]
    fn session_stats_feed_the_payload_counters_and_peer_gauge() {
        let m = EngineMetrics::new();
        let stats = m.families.as_ref().unwrap().stats;
        // The names exist in the linked libtorrent.
        assert!(stats.recv_payload.is_some(), "{stats:?}");
        assert!(stats.sent_payload.is_some(), "{stats:?}");
        assert!(stats.peers_connected.is_some(), "{stats:?}");
        let len = [
            stats.recv_payload,
            stats.sent_payload,
            stats.peers_connected,
            stats.dht_nodes,
        ]
        .into_iter()
        .flatten()
        .max()
        .unwrap()
            + 1;
        let mut counters = vec![0_i64; len];
        counters[stats.recv_payload.unwrap()] = 1000;
        counters[stats.sent_payload.unwrap()] = 10;
        counters[stats.peers_connected.unwrap()] = 3;
        m.alert(&lt::Alert::SessionStats {
            counters: counters.clone(),
        });
        counters[stats.recv_payload.unwrap()] = 1500;
        counters[stats.peers_connected.unwrap()] = 1;
        m.alert(&lt::Alert::SessionStats { counters });
        let text = m.render([]);
        assert_eq!(
            sample(&text, "revaer_engine_payload_received_bytes_total"),
            Some(1500.0)
        );
        assert_eq!(
            sample(&text, "revaer_engine_payload_sent_bytes_total"),
            Some(10.0)
        );
        assert_eq!(sample(&text, "revaer_engine_peers_connected"), Some(1.0));
        assert_eq!(
            sample(&text, "revaer_engine_alerts_total{kind=\"session_stats\"}"),
            Some(2.0)
        );
        // A short or empty counter vector is ignored, not a panic.
        m.alert(&lt::Alert::SessionStats { counters: vec![] });
        let text = m.render([]);
        assert_eq!(
            sample(&text, "revaer_engine_payload_received_bytes_total"),
            Some(1500.0)
        );
    }
}
