//! The in-memory read model of every torrent, fed by the engine's snapshot
//! and events and joined with the SQLite catalog (tags, category, added
//! time, FsOps status). `GET /v1/torrents` is served from here and never
//! touches the engine or the disk.
//!
//! Pagination is a keyset cursor over a sorted index of `(added_at, id)`:
//! a page starts right after the cursor's key, so listing costs the page
//! (plus the rows a filter skips), not the whole set, and pages stay stable
//! while torrents come and go. When the engine's event stream is down the
//! model keeps serving the last known state and says `stale`.
//!
//! Per-torrent metadata the events do not carry (tracker hosts, file
//! extensions, the full detail) is fetched from the engine in the
//! background after a torrent appears or its metadata arrives.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::ops::Bound;
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use revaer_api_models::torrents::{Torrent, TorrentState as PublicState};
use revaer_ipc::engine::{
    EngineEvent, EngineRequest, EngineResponse, TorrentDetail, TorrentId, TorrentState,
    TorrentSummary,
};
use revaer_ipc::{WorkerRequest, WorkerResponse};
use tokio::sync::{broadcast, mpsc, watch};

use crate::engine_events::EngineEvents;
use crate::links::WorkerLink;
use crate::store::{Store, StoreError, now_unix};

/// Position in the listing order.
pub type SortKey = (i64, TorrentId);

/// The API's own labels for a torrent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Catalog {
    pub tags: Vec<String>,
    pub category: Option<String>,
    pub added_at: i64,
    pub fsops: Option<String>,
}

/// What the engine's detail tells us beyond the summary.
#[derive(Debug)]
pub struct Meta {
    /// Lower-case tracker host names.
    pub tracker_hosts: Vec<String>,
    /// Lower-case file extensions without the dot, deduplicated.
    pub extensions: Vec<String>,
    /// The last detail fetched (served when the engine is away).
    pub detail: TorrentDetail,
}

#[derive(Debug)]
struct Entry {
    summary: TorrentSummary,
    meta: Option<Arc<Meta>>,
}

#[derive(Debug, Default)]
struct Inner {
    torrents: HashMap<TorrentId, Entry>,
    /// `(added_at, id)` of every entry in `torrents`.
    order: BTreeSet<SortKey>,
    /// Catalog rows, including torrents the engine does not report (yet).
    catalog: HashMap<TorrentId, Catalog>,
}

/// A listing request after validation.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    /// Any of these states.
    pub states: Vec<PublicState>,
    /// Host name (or a parent domain of it) of any tracker, lower-case.
    pub tracker: Option<String>,
    /// Any file with one of these extensions, lower-case, no dot.
    pub extensions: Vec<String>,
    /// All of these tags.
    pub tags: Vec<String>,
    /// Case-insensitive substring of the name, already lower-case.
    pub name: Option<String>,
}

/// One page of the listing.
#[derive(Debug, Clone)]
pub struct Page {
    pub items: Vec<Torrent>,
    /// Key of the last item when more may follow.
    pub next: Option<SortKey>,
}

/// One torrent as the model has it.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub torrent: Torrent,
    pub meta: Option<Arc<Meta>>,
}

/// Every torrent the API knows.
#[derive(Debug)]
pub struct ReadModel {
    inner: RwLock<Inner>,
    store: Arc<Store>,
    connected: watch::Receiver<bool>,
    meta_queue: mpsc::UnboundedSender<TorrentId>,
    meta_pending: Mutex<HashSet<TorrentId>>,
}

/// The public name of an engine state.
#[must_use]
pub fn public_state(state: TorrentState) -> PublicState {
    match state {
        TorrentState::CheckingResumeData => PublicState::CheckingResumeData,
        TorrentState::CheckingFiles => PublicState::CheckingFiles,
        TorrentState::DownloadingMetadata => PublicState::DownloadingMetadata,
        TorrentState::Downloading => PublicState::Downloading,
        TorrentState::Finished => PublicState::Finished,
        TorrentState::Seeding => PublicState::Seeding,
        TorrentState::Paused => PublicState::Paused,
        TorrentState::Error => PublicState::Error,
    }
}

/// The public view of one torrent.
#[must_use]
pub fn torrent_view(summary: &TorrentSummary, catalog: &Catalog) -> Torrent {
    Torrent {
        id: summary.id.to_string(),
        name: summary.name.clone(),
        state: public_state(summary.state),
        progress: f64::from(summary.progress_ppm.min(1_000_000)) / 1_000_000.0,
        download_bps: summary.download_bps,
        upload_bps: summary.upload_bps,
        peers: summary.peers,
        seeds: summary.seeds,
        size_wanted: summary.total_wanted,
        size_done: summary.total_done,
        downloaded: summary.downloaded,
        uploaded: summary.uploaded,
        paused: summary.paused,
        sequential: summary.sequential,
        has_metadata: summary.has_metadata,
        error: summary.error.clone(),
        tags: catalog.tags.clone(),
        category: catalog.category.clone(),
        added_at: catalog.added_at,
        fsops: catalog.fsops.clone(),
    }
}

/// The host of a tracker URL, lower-case (`udp://Tracker.Example:80/x` →
/// `tracker.example`).
#[must_use]
pub fn tracker_host(url: &str) -> Option<String> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(v6) = host_port.strip_prefix('[') {
        v6.split(']').next()?
    } else {
        host_port.split(':').next()?
    };
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

/// The extension of a path inside a torrent, lower-case, without the dot.
#[must_use]
pub fn extension(path: &str) -> Option<String> {
    let name = path.rsplit('/').next()?;
    let (stem, ext) = name.rsplit_once('.')?;
    (!stem.is_empty() && !ext.is_empty()).then(|| ext.to_ascii_lowercase())
}

fn meta_from(detail: TorrentDetail) -> Meta {
    let mut tracker_hosts: Vec<String> = detail
        .trackers
        .iter()
        .filter_map(|t| tracker_host(&t.url))
        .collect();
    tracker_hosts.sort();
    tracker_hosts.dedup();
    let mut extensions: Vec<String> = detail
        .files
        .iter()
        .filter_map(|f| extension(&f.path))
        .collect();
    extensions.sort();
    extensions.dedup();
    Meta {
        tracker_hosts,
        extensions,
        detail,
    }
}

impl ListFilter {
    fn matches(&self, entry: &Entry, catalog: &Catalog) -> bool {
        let s = &entry.summary;
        if !self.states.is_empty() && !self.states.contains(&public_state(s.state)) {
            return false;
        }
        if let Some(name) = &self.name
            && !s.name.to_lowercase().contains(name.as_str())
        {
            return false;
        }
        if !self.tags.iter().all(|t| catalog.tags.contains(t)) {
            return false;
        }
        if let Some(tracker) = &self.tracker {
            let Some(meta) = &entry.meta else {
                return false;
            };
            let suffix = format!(".{tracker}");
            if !meta
                .tracker_hosts
                .iter()
                .any(|h| h == tracker || h.ends_with(&suffix))
            {
                return false;
            }
        }
        if !self.extensions.is_empty() {
            let Some(meta) = &entry.meta else {
                return false;
            };
            if !meta.extensions.iter().any(|e| self.extensions.contains(e)) {
                return false;
            }
        }
        true
    }
}

fn default_catalog(added_at: i64) -> Catalog {
    Catalog {
        tags: Vec::new(),
        category: None,
        added_at,
        fsops: None,
    }
}

impl ReadModel {
    /// Loads the catalog and starts following the engine. Must run inside
    /// the Tokio runtime.
    pub fn start(
        store: Arc<Store>,
        engine: WorkerLink,
        engine_events: &Arc<EngineEvents>,
    ) -> Result<Arc<Self>, StoreError> {
        let mut catalog = HashMap::new();
        for row in store.catalog_all()? {
            if let Ok(id) = row.id.parse::<TorrentId>() {
                catalog.insert(
                    id,
                    Catalog {
                        tags: row.tags,
                        category: row.category,
                        added_at: row.added_at,
                        fsops: row.fsops_status,
                    },
                );
            }
        }
        let (meta_queue, meta_rx) = mpsc::unbounded_channel();
        let model = Arc::new(Self {
            inner: RwLock::new(Inner {
                catalog,
                ..Inner::default()
            }),
            store,
            connected: engine_events.connected(),
            meta_queue,
            meta_pending: Mutex::new(HashSet::new()),
        });
        let events = engine_events.subscribe();
        tokio::spawn(Arc::clone(&model).follow(events, engine.clone()));
        tokio::spawn(Arc::clone(&model).fetch_meta(meta_rx, engine));
        Ok(model)
    }

    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        self.inner
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// True while the engine's state cannot be followed: answers are the
    /// last known state.
    #[must_use]
    pub fn is_stale(&self) -> bool {
        !*self.connected.borrow()
    }

    /// Number of torrents.
    #[must_use]
    pub fn len(&self) -> usize {
        self.read().torrents.len()
    }

    /// Whether no torrent is known.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// One page of torrents after `after`, in `(added_at, id)` order.
    #[must_use]
    pub fn list(&self, filter: &ListFilter, after: Option<SortKey>, limit: usize) -> Page {
        let inner = self.read();
        let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
        let mut items = Vec::with_capacity(limit.min(512));
        let mut last = None;
        let mut more = false;
        for key in inner.order.range((lower, Bound::Unbounded)) {
            let (Some(entry), Some(catalog)) =
                (inner.torrents.get(&key.1), inner.catalog.get(&key.1))
            else {
                continue;
            };
            // Only the torrent's current place counts: never list it twice.
            if catalog.added_at != key.0 {
                continue;
            }
            if !filter.matches(entry, catalog) {
                continue;
            }
            if items.len() == limit {
                more = true;
                break;
            }
            items.push(torrent_view(&entry.summary, catalog));
            last = Some(*key);
        }
        Page {
            items,
            next: if more { last } else { None },
        }
    }

    /// One torrent.
    #[must_use]
    pub fn get(&self, id: &TorrentId) -> Option<Snapshot> {
        let inner = self.read();
        let entry = inner.torrents.get(id)?;
        let catalog = inner.catalog.get(id)?;
        Some(Snapshot {
            torrent: torrent_view(&entry.summary, catalog),
            meta: entry.meta.clone(),
        })
    }

    /// The catalog row of a torrent, also for one the engine does not
    /// report right now.
    #[must_use]
    pub fn catalog(&self, id: &TorrentId) -> Option<Catalog> {
        self.read().catalog.get(id).cloned()
    }

    /// Replaces a torrent's labels, durably first.
    pub fn set_labels(
        &self,
        id: TorrentId,
        tags: Vec<String>,
        category: Option<String>,
    ) -> Result<Catalog, StoreError> {
        let added_at = self.catalog(&id).map_or_else(now_unix, |c| c.added_at);
        // The row may have been created meanwhile (the `Added` event): the
        // stored time wins, in memory and in the listing order alike, so a
        // torrent never holds two places in the index.
        let added_at =
            self.store
                .catalog_set_labels(&id.to_string(), &tags, category.as_deref(), added_at)?;
        let mut inner = self.write();
        let previous = inner.catalog.get(&id).map(|c| c.added_at);
        let catalog = inner
            .catalog
            .entry(id)
            .or_insert_with(|| default_catalog(added_at));
        catalog.added_at = added_at;
        catalog.tags = tags;
        catalog.category = category;
        let result = catalog.clone();
        if let Some(previous) = previous.filter(|p| *p != added_at) {
            inner.order.remove(&(previous, id));
        }
        if inner.torrents.contains_key(&id) {
            inner.order.insert((added_at, id));
        }
        Ok(result)
    }

    /// Takes in a detail fetched by a handler: updates the torrent, or adds
    /// it when its `Added` event has not arrived yet (a GET right after a
    /// successful add must find it). Needs the torrent's catalog row, so a
    /// torrent removed meanwhile is not brought back.
    pub fn observe(&self, detail: TorrentDetail) {
        let id = detail.summary.id;
        let meta = Arc::new(meta_from(detail));
        let mut inner = self.write();
        let Some(added_at) = inner.catalog.get(&id).map(|c| c.added_at) else {
            return;
        };
        inner.order.insert((added_at, id));
        let summary = meta.detail.summary.clone();
        match inner.torrents.get_mut(&id) {
            Some(entry) => {
                entry.summary = summary;
                entry.meta = Some(meta);
            }
            None => {
                inner.torrents.insert(
                    id,
                    Entry {
                        summary,
                        meta: Some(meta),
                    },
                );
            }
        }
    }

    /// Stores a freshly fetched detail.
    pub fn record_detail(&self, detail: TorrentDetail) {
        let id = detail.summary.id;
        let meta = Arc::new(meta_from(detail));
        if let Some(entry) = self.write().torrents.get_mut(&id) {
            entry.summary = meta.detail.summary.clone();
            entry.meta = Some(meta);
        }
    }

    fn want_meta(&self, id: TorrentId) {
        let fresh = self.meta_pending.lock().is_ok_and(|mut p| p.insert(id));
        if fresh {
            let _ = self.meta_queue.send(id);
        }
    }

    /// Applies the engine's full state: torrents it no longer reports are
    /// dropped from the listing (their catalog rows stay).
    async fn apply_snapshot(&self, summaries: Vec<TorrentSummary>) {
        let now = now_unix();
        let unknown: Vec<String> = {
            let inner = self.read();
            summaries
                .iter()
                .filter(|s| !inner.catalog.contains_key(&s.id))
                .map(|s| s.id.to_string())
                .collect()
        };
        self.persist_new(unknown, now).await;
        let mut need_meta = Vec::new();
        {
            let mut inner = self.write();
            let mut old = std::mem::take(&mut inner.torrents);
            inner.order.clear();
            for summary in summaries {
                let id = summary.id;
                let added_at = inner
                    .catalog
                    .entry(id)
                    .or_insert_with(|| default_catalog(now))
                    .added_at;
                let meta = old.remove(&id).and_then(|e| e.meta);
                if meta.is_none() {
                    need_meta.push(id);
                }
                inner.order.insert((added_at, id));
                inner.torrents.insert(id, Entry { summary, meta });
            }
        }
        for id in need_meta {
            self.want_meta(id);
        }
    }

    async fn persist_new(&self, ids: Vec<String>, now: i64) {
        if ids.is_empty() {
            return;
        }
        let store = Arc::clone(&self.store);
        let result = tokio::task::spawn_blocking(move || store.catalog_ensure(&ids, now)).await;
        if let Err(e) = result
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()))
        {
            tracing::error!(error = %e, "cannot record new torrents in the catalog");
        }
    }

    async fn upsert(&self, summary: TorrentSummary) {
        let id = summary.id;
        let now = now_unix();
        let known = self.read().catalog.contains_key(&id);
        if !known {
            self.persist_new(vec![id.to_string()], now).await;
        }
        {
            let mut inner = self.write();
            let added_at = inner
                .catalog
                .entry(id)
                .or_insert_with(|| default_catalog(now))
                .added_at;
            inner.order.insert((added_at, id));
            match inner.torrents.get_mut(&id) {
                Some(entry) => entry.summary = summary,
                None => {
                    inner.torrents.insert(
                        id,
                        Entry {
                            summary,
                            meta: None,
                        },
                    );
                }
            }
        }
        self.want_meta(id);
    }

    fn update(&self, id: TorrentId, change: impl FnOnce(&mut TorrentSummary)) {
        if let Some(entry) = self.write().torrents.get_mut(&id) {
            change(&mut entry.summary);
        }
    }

    /// Drops a torrent (the engine removed it): catalog row first, then
    /// the listing. Idempotent; called by the remove action for
    /// read-your-writes and again when the `Removed` event arrives.
    pub async fn removed(&self, id: TorrentId) {
        // Durable first: once the listing stops showing it, it is gone.
        let store = Arc::clone(&self.store);
        let key = id.to_string();
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || store.catalog_delete(&key)).await {
            tracing::error!(id = %id, error = %e, "cannot delete the catalog row");
        }
        let mut inner = self.write();
        if let Some(catalog) = inner.catalog.remove(&id) {
            inner.order.remove(&(catalog.added_at, id));
        }
        inner.torrents.remove(&id);
    }

    /// The FsOps job state shown with the torrent.
    pub fn set_fsops(&self, id: TorrentId, status: Option<String>) {
        if let Some(catalog) = self.write().catalog.get_mut(&id) {
            catalog.fsops = status;
        }
    }

    async fn apply(&self, event: EngineEvent) {
        match event {
            EngineEvent::Snapshot(summaries) => self.apply_snapshot(summaries).await,
            EngineEvent::Added(summary) | EngineEvent::Progress(summary) => {
                self.upsert(*summary).await;
            }
            EngineEvent::MetadataReceived { id, name } => {
                self.update(id, |s| {
                    s.name = name;
                    s.has_metadata = true;
                });
                self.want_meta(id);
            }
            EngineEvent::StateChanged { id, state } => self.update(id, |s| s.state = state),
            EngineEvent::Removed { id } => self.removed(id).await,
            EngineEvent::Error { id, message } => self.update(id, |s| s.error = Some(message)),
            EngineEvent::FilesSelected { id, .. } | EngineEvent::TrackerError { id, .. } => {
                self.want_meta(id);
            }
            // FsOps jobs are the dispatcher's (`fsops_dispatch`).
            EngineEvent::StateQuarantined { .. } | EngineEvent::Completed { .. } => {}
        }
    }

    /// [`Self::resync`] until it succeeds (the request link may still be
    /// connecting), bounded in attempts.
    async fn catch_up(&self, engine: &WorkerLink) {
        for _ in 0..100 {
            if let Ok(WorkerResponse::Engine(EngineResponse::List(list))) = engine
                .request(WorkerRequest::Engine(EngineRequest::List))
                .await
            {
                self.apply_snapshot(list).await;
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        tracing::warn!("cannot read the engine's list at start; waiting for its next snapshot");
    }

    /// Re-reads the engine's full list after this subscriber fell behind.
    async fn resync(&self, engine: &WorkerLink) {
        match engine
            .request(WorkerRequest::Engine(EngineRequest::List))
            .await
        {
            Ok(WorkerResponse::Engine(EngineResponse::List(list))) => {
                self.apply_snapshot(list).await;
            }
            Ok(other) => tracing::warn!(?other, "unexpected answer to List"),
            Err(e) => tracing::warn!(error = %e, "cannot resynchronise the read model"),
        }
    }

    async fn follow(
        self: Arc<Self>,
        mut events: broadcast::Receiver<EngineEvent>,
        engine: WorkerLink,
    ) {
        // The engine stream may have delivered its snapshot before this
        // subscription existed (other subscribers start first): then no
        // snapshot is coming, so fetch the list. Subscribed first, nothing
        // after the list is missed; a snapshot arriving anyway is applied
        // again, harmlessly.
        if *self.connected.borrow() {
            self.catch_up(&engine).await;
        }
        loop {
            match events.recv().await {
                Ok(event) => self.apply(event).await,
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "read model fell behind the engine; resynchronising");
                    self.resync(&engine).await;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }

    async fn fetch_meta(
        self: Arc<Self>,
        mut queue: mpsc::UnboundedReceiver<TorrentId>,
        engine: WorkerLink,
    ) {
        while let Some(id) = queue.recv().await {
            if let Ok(mut pending) = self.meta_pending.lock() {
                pending.remove(&id);
            }
            if !self.read().torrents.contains_key(&id) {
                continue;
            }
            match engine
                .request(WorkerRequest::Engine(EngineRequest::Detail { id }))
                .await
            {
                Ok(WorkerResponse::Engine(EngineResponse::Detail(detail))) => {
                    self.record_detail(*detail);
                }
                Ok(_) => {}
                Err(e) => tracing::debug!(id = %id, error = %e, "torrent detail unavailable"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracker_hosts_and_extensions_are_normalised() {
        assert_eq!(
            tracker_host("udp://Tracker.Example.org:6969/announce").as_deref(),
            Some("tracker.example.org")
        );
        assert_eq!(
            tracker_host("http://user:pw@10.0.0.1/a").as_deref(),
            Some("10.0.0.1")
        );
        assert_eq!(tracker_host("http://[::1]:80/a").as_deref(), Some("::1"));
        assert_eq!(tracker_host("http:///x"), None);
        assert_eq!(extension("dir/Movie.MKV").as_deref(), Some("mkv"));
        assert_eq!(extension("dir/.hidden"), None);
        assert_eq!(extension("noext"), None);
        assert_eq!(extension("a.tar.gz").as_deref(), Some("gz"));
    }
}
