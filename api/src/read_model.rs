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
//! Every listed torrent is kept as a [`Listed`] row, rebuilt whenever its
//! data changes (engine event, labels, FsOps state, fetched detail): its
//! list item already serialized to JSON, plus the compact fields the
//! filters test. A page is the concatenation of those bytes inside the
//! small `TorrentList` envelope. Besides the full `(added_at, id)` order,
//! secondary indexes in the same order exist per state, tag, file
//! extension and tracker host; a filtered listing walks the most selective
//! of them (a union for any-of filters) and tests the other predicates on
//! the row, so it never scans unrelated torrents.
//!
//! Per-torrent metadata the events do not carry (tracker hosts, file
//! extensions, the full detail) is fetched from the engine in the
//! background after a torrent appears or its metadata arrives.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::iter::Peekable;
use std::ops::Bound;
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use axum::body::Bytes;
use axum::http::HeaderValue;
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

/// One listed torrent as the listing needs it, immutable: rebuilt (and
/// re-indexed) whenever anything it shows or is filtered by changes.
#[derive(Debug)]
struct Listed {
    key: SortKey,
    /// The list item, serialized.
    json: Bytes,
    state: PublicState,
    /// [`label_bit`]s of the tags and of the file extensions.
    tag_mask: u128,
    extension_mask: u128,
    /// The name, lower-cased, for the substring filter.
    name_lower: Box<str>,
    tags: Box<[String]>,
    /// Tracker hosts and file extensions, once the detail was fetched.
    meta: Option<Arc<Meta>>,
}

/// Listed torrents in listing order.
type Index = BTreeMap<SortKey, Arc<Listed>>;

#[derive(Debug, Default)]
struct Inner {
    torrents: HashMap<TorrentId, Entry>,
    /// Catalog rows, including torrents the engine does not report (yet).
    catalog: HashMap<TorrentId, Catalog>,
    /// The row of every torrent with both an entry and a catalog row.
    listed: HashMap<TorrentId, Arc<Listed>>,
    /// Every row of `listed`, by `(added_at, id)`.
    order: Index,
    /// The same rows, by state.
    by_state: HashMap<PublicState, Index>,
    /// ... by tag (a row is in the index of each of its tags).
    by_tag: HashMap<String, Index>,
    /// ... by file extension (rows whose detail is known).
    by_extension: HashMap<String, Index>,
    /// ... by tracker host (rows whose detail is known).
    by_host: HashMap<String, Index>,
    /// Sum of the serialized items' lengths (sizes page buffers).
    json_bytes: usize,
    /// Bumped by every change to the listing: a page built at one
    /// generation is what a fresh build gives while it stays current.
    generation: u64,
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

/// One page of the listing: a `TorrentList` JSON document being written.
#[derive(Debug, Clone)]
pub struct Page {
    /// `{"items":[` and the items, comma-separated.
    body: Vec<u8>,
    /// Items written.
    pub count: usize,
    /// Key of the last item when more may follow.
    pub next: Option<SortKey>,
    /// The listing's generation it was built from (see [`CachedPage`]).
    pub generation: u64,
}

/// A finished `GET /v1/torrents` answer kept for its raw query string.
#[derive(Debug, Clone)]
pub struct CachedPage {
    /// The `TorrentList` document.
    pub body: Bytes,
    /// The `Link: rel=next` header value.
    pub link: Option<HeaderValue>,
}

/// Most pages kept, and most bytes: clients that page through everything
/// make a new query per page, so the cache is small and simply emptied
/// when full.
const MAX_CACHED_PAGES: usize = 64;
const MAX_CACHED_BYTES: usize = 8 * 1024 * 1024;

#[derive(Debug)]
struct Cached {
    generation: u64,
    stale: bool,
    page: CachedPage,
}

/// Answers to recent list queries, valid while the listing's generation
/// and the `stale` flag are what they were built with.
#[derive(Debug, Default)]
struct PageCache {
    pages: HashMap<Box<str>, Cached>,
    bytes: usize,
}

impl PageCache {
    fn get(&self, query: &str, generation: u64, stale: bool) -> Option<CachedPage> {
        self.pages
            .get(query)
            .filter(|c| c.generation == generation && c.stale == stale)
            .map(|c| c.page.clone())
    }

    fn put(&mut self, query: &str, generation: u64, stale: bool, page: CachedPage) {
        let size = page.body.len() + query.len();
        if size > MAX_CACHED_BYTES / 4 {
            return;
        }
        if let Some(old) = self.pages.remove(query) {
            self.bytes -= old.page.body.len() + query.len();
        }
        if self.pages.len() >= MAX_CACHED_PAGES || self.bytes + size > MAX_CACHED_BYTES {
            // Outdated pages go first; if that is not enough, all of them.
            self.pages.retain(|_, c| c.generation == generation);
            self.bytes = self
                .pages
                .iter()
                .map(|(q, c)| q.len() + c.page.body.len())
                .sum();
            if self.pages.len() >= MAX_CACHED_PAGES || self.bytes + size > MAX_CACHED_BYTES {
                self.pages.clear();
                self.bytes = 0;
            }
        }
        self.bytes += size;
        self.pages.insert(
            query.into(),
            Cached {
                generation,
                stale,
                page,
            },
        );
    }
}

/// Opening of the `TorrentList` document, as `serde_json` writes it.
const PAGE_HEAD: &[u8] = b"{\"items\":[";

impl Page {
    /// The complete `TorrentList` document: the items, then `next` (the
    /// encoded cursor, or null) and `stale`, field for field what
    /// serializing a `TorrentList` gives.
    #[must_use]
    pub fn finish(self, next: Option<&str>, stale: bool) -> Vec<u8> {
        let mut body = self.body;
        body.extend_from_slice(b"],\"next\":");
        match next {
            Some(cursor) => {
                if serde_json::to_writer(&mut body, cursor).is_err() {
                    body.extend_from_slice(b"null");
                }
            }
            None => body.extend_from_slice(b"null"),
        }
        body.extend_from_slice(if stale {
            b",\"stale\":true}"
        } else {
            b",\"stale\":false}"
        });
        body
    }
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
    pages: RwLock<PageCache>,
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
        id: hex::encode(summary.id.0),
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
        stalled_reason: summary.stalled_reason.clone(),
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

/// Whether `host` is `domain` or a subdomain of it.
fn host_matches(host: &str, domain: &str) -> bool {
    host.strip_suffix(domain)
        .is_some_and(|rest| rest.is_empty() || rest.ends_with('.'))
}

/// One of 128 bits for a label value (tag, extension): masks of these
/// pre-test the tag and extension filters without reading any string;
/// rows that pass are then checked exactly.
fn label_bit(value: &str) -> u128 {
    // FNV-1a: fixed, so a row's mask and a filter's agree.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in value.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    1_u128 << (hash % 128)
}

fn label_mask<'a>(values: impl IntoIterator<Item = &'a String>) -> u128 {
    values.into_iter().fold(0, |mask, v| mask | label_bit(v))
}

/// A filter with its label masks computed once per page.
struct Prepared<'f> {
    filter: &'f ListFilter,
    tags: u128,
    extensions: u128,
}

impl ListFilter {
    fn prepare(&self) -> Prepared<'_> {
        Prepared {
            filter: self,
            tags: label_mask(&self.tags),
            extensions: label_mask(&self.extensions),
        }
    }
}

impl Prepared<'_> {
    fn matches(&self, row: &Listed) -> bool {
        let f = self.filter;
        if !f.states.is_empty() && !f.states.contains(&row.state) {
            return false;
        }
        if row.tag_mask & self.tags != self.tags
            || (self.extensions != 0 && row.extension_mask & self.extensions == 0)
        {
            return false;
        }
        f.matches_exactly(row)
    }
}

impl ListFilter {
    fn matches_exactly(&self, row: &Listed) -> bool {
        if !self.tags.iter().all(|t| row.tags.contains(t)) {
            return false;
        }
        if self.tracker.is_some() || !self.extensions.is_empty() {
            let Some(meta) = &row.meta else {
                return false;
            };
            if let Some(tracker) = &self.tracker
                && !meta.tracker_hosts.iter().any(|h| host_matches(h, tracker))
            {
                return false;
            }
            if !self.extensions.is_empty()
                && !meta.extensions.iter().any(|e| self.extensions.contains(e))
            {
                return false;
            }
        }
        if let Some(name) = &self.name
            && !row.name_lower.contains(name.as_str())
        {
            return false;
        }
        true
    }
}

impl Listed {
    fn new(entry: &Entry, catalog: &Catalog) -> Self {
        let view = torrent_view(&entry.summary, catalog);
        let json = match serde_json::to_vec(&view) {
            Ok(json) => Bytes::from(json),
            Err(e) => {
                // Cannot happen for this type; the torrent is left out of
                // pages rather than breaking them.
                tracing::error!(id = %entry.summary.id, error = %e, "cannot serialize a torrent");
                Bytes::new()
            }
        };
        Self {
            key: (catalog.added_at, entry.summary.id),
            json,
            state: view.state,
            tag_mask: label_mask(&view.tags),
            extension_mask: entry.meta.as_ref().map_or(0, |m| label_mask(&m.extensions)),
            name_lower: view.name.to_lowercase().into_boxed_str(),
            tags: view.tags.into_boxed_slice(),
            meta: entry.meta.clone(),
        }
    }
}

fn index_insert(indexes: &mut HashMap<String, Index>, value: &str, row: &Arc<Listed>) {
    match indexes.get_mut(value) {
        Some(index) => {
            index.insert(row.key, Arc::clone(row));
        }
        None => {
            indexes.insert(value.to_owned(), Index::from([(row.key, Arc::clone(row))]));
        }
    }
}

fn index_remove(indexes: &mut HashMap<String, Index>, value: &str, key: &SortKey) {
    if let Some(index) = indexes.get_mut(value) {
        index.remove(key);
        if index.is_empty() {
            indexes.remove(value);
        }
    }
}

impl Inner {
    /// Rebuilds the row of `id` from its entry and catalog row (or drops
    /// it when either is missing) and updates every index. Every change to
    /// what a torrent shows or is filtered by ends here.
    fn relist(&mut self, id: TorrentId) {
        self.generation = self.generation.wrapping_add(1);
        if let Some(old) = self.listed.remove(&id) {
            self.unindex(&old);
        }
        let (Some(entry), Some(catalog)) = (self.torrents.get(&id), self.catalog.get(&id)) else {
            return;
        };
        let row = Arc::new(Listed::new(entry, catalog));
        self.json_bytes += row.json.len();
        self.order.insert(row.key, Arc::clone(&row));
        self.by_state
            .entry(row.state)
            .or_default()
            .insert(row.key, Arc::clone(&row));
        for tag in &row.tags {
            index_insert(&mut self.by_tag, tag, &row);
        }
        if let Some(meta) = &row.meta {
            for ext in &meta.extensions {
                index_insert(&mut self.by_extension, ext, &row);
            }
            for host in &meta.tracker_hosts {
                index_insert(&mut self.by_host, host, &row);
            }
        }
        self.listed.insert(id, row);
    }

    fn unindex(&mut self, row: &Listed) {
        self.json_bytes = self.json_bytes.saturating_sub(row.json.len());
        self.order.remove(&row.key);
        if let Some(index) = self.by_state.get_mut(&row.state) {
            index.remove(&row.key);
        }
        for tag in &row.tags {
            index_remove(&mut self.by_tag, tag, &row.key);
        }
        if let Some(meta) = &row.meta {
            for ext in &meta.extensions {
                index_remove(&mut self.by_extension, ext, &row.key);
            }
            for host in &meta.tracker_hosts {
                index_remove(&mut self.by_host, host, &row.key);
            }
        }
    }

    /// Drops every row and index (a snapshot rebuilds them).
    fn clear_listing(&mut self) {
        self.generation = self.generation.wrapping_add(1);
        self.listed.clear();
        self.order.clear();
        self.by_state.clear();
        self.by_tag.clear();
        self.by_extension.clear();
        self.by_host.clear();
        self.json_bytes = 0;
    }

    /// The indexes whose union holds every row `filter` can match, the
    /// smallest such choice: the full order without filters, else the
    /// cheapest of the states' union, the rarest tag, the extensions'
    /// union and the matching tracker hosts' union. Empty when nothing
    /// can match.
    fn candidates<'a>(&'a self, filter: &ListFilter) -> Vec<&'a Index> {
        let mut best: Option<(usize, Vec<&'a Index>)> = None;
        let mut consider = |indexes: Vec<&'a Index>| {
            let size: usize = indexes.iter().map(|i| i.len()).sum();
            if best.as_ref().is_none_or(|(s, _)| size < *s) {
                best = Some((size, indexes));
            }
        };
        if !filter.states.is_empty() {
            consider(
                filter
                    .states
                    .iter()
                    .filter_map(|s| self.by_state.get(s))
                    .collect(),
            );
        }
        if !filter.tags.is_empty() {
            // All-of: any one tag's rows hold every match.
            let mut rarest: Option<&Index> = None;
            for tag in &filter.tags {
                let Some(index) = self.by_tag.get(tag) else {
                    return Vec::new();
                };
                if rarest.is_none_or(|r| index.len() < r.len()) {
                    rarest = Some(index);
                }
            }
            consider(rarest.into_iter().collect());
        }
        if !filter.extensions.is_empty() {
            consider(
                filter
                    .extensions
                    .iter()
                    .filter_map(|e| self.by_extension.get(e))
                    .collect(),
            );
        }
        if let Some(tracker) = &filter.tracker {
            consider(
                self.by_host
                    .iter()
                    .filter(|(host, _)| host_matches(host, tracker))
                    .map(|(_, index)| index)
                    .collect(),
            );
        }
        best.map_or_else(|| vec![&self.order], |(_, indexes)| indexes)
    }

    /// One page after `after` (see [`ReadModel::list`]).
    fn page(&self, filter: &ListFilter, after: Option<SortKey>, limit: usize) -> Page {
        let average = self.json_bytes / self.order.len().max(1);
        let mut body = Vec::with_capacity(PAGE_HEAD.len() + 64 + (average + 1) * limit.min(512));
        body.extend_from_slice(PAGE_HEAD);
        let mut count = 0;
        let mut last = None;
        let mut more = false;
        let candidates = self.candidates(filter);
        let prepared = filter.prepare();
        for row in Union::new(&candidates, after) {
            if row.json.is_empty() || !prepared.matches(row) {
                continue;
            }
            if count == limit {
                more = true;
                break;
            }
            if count > 0 {
                body.push(b',');
            }
            body.extend_from_slice(&row.json);
            count += 1;
            last = Some(row.key);
        }
        Page {
            body,
            count,
            next: if more { last } else { None },
            generation: self.generation,
        }
    }
}

/// The rows of several indexes after a key, in order, each once (a row
/// may be in more than one of them).
struct Union<'a> {
    heads: Vec<Peekable<std::collections::btree_map::Range<'a, SortKey, Arc<Listed>>>>,
    last: Option<SortKey>,
}

impl<'a> Union<'a> {
    fn new(indexes: &[&'a Index], after: Option<SortKey>) -> Self {
        let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
        Self {
            heads: indexes
                .iter()
                .map(|i| i.range((lower, Bound::Unbounded)).peekable())
                .collect(),
            last: None,
        }
    }
}

impl<'a> Iterator for Union<'a> {
    type Item = &'a Arc<Listed>;

    fn next(&mut self) -> Option<Self::Item> {
        if let [only] = self.heads.as_mut_slice() {
            return only.next().map(|(_, row)| row);
        }
        loop {
            let (_, head) = self
                .heads
                .iter_mut()
                .enumerate()
                .filter_map(|(i, h)| h.peek().map(|(k, _)| (**k, i)))
                .min()?;
            let (key, row) = self.heads.get_mut(head)?.next()?;
            if self.last != Some(*key) {
                self.last = Some(*key);
                return Some(row);
            }
        }
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
            pages: RwLock::new(PageCache::default()),
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

    /// One page of torrents after `after`, in `(added_at, id)` order, as
    /// the start of a `TorrentList` document ([`Page::finish`] ends it).
    #[must_use]
    pub fn list(&self, filter: &ListFilter, after: Option<SortKey>, limit: usize) -> Page {
        self.read().page(filter, after, limit)
    }

    /// Whether any torrent `filter` lists satisfies `test` (on its engine
    /// summary), found through the same indexes as a page.
    #[must_use]
    pub fn any_listed(&self, filter: &ListFilter, test: impl Fn(&TorrentSummary) -> bool) -> bool {
        let inner = self.read();
        let prepared = filter.prepare();
        let candidates = inner.candidates(filter);
        Union::new(&candidates, None)
            .filter(|row| prepared.matches(row))
            .any(|row| {
                inner
                    .torrents
                    .get(&row.key.1)
                    .is_some_and(|entry| test(&entry.summary))
            })
    }

    /// The answer last kept for `query` (the raw query string), if nothing
    /// listed has changed since it was built and `stale` is the same.
    #[must_use]
    pub fn cached_page(&self, query: &str, stale: bool) -> Option<CachedPage> {
        let generation = self.read().generation;
        self.pages
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(query, generation, stale)
    }

    /// Keeps the answer to `query` built from a [`Page`] of `generation`.
    pub fn cache_page(&self, query: &str, generation: u64, stale: bool, page: CachedPage) {
        self.pages
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .put(query, generation, stale, page);
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
        let catalog = inner
            .catalog
            .entry(id)
            .or_insert_with(|| default_catalog(added_at));
        catalog.added_at = added_at;
        catalog.tags = tags;
        catalog.category = category;
        let result = catalog.clone();
        inner.relist(id);
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
        if !inner.catalog.contains_key(&id) {
            return;
        }
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
        inner.relist(id);
    }

    /// Stores a freshly fetched detail.
    pub fn record_detail(&self, detail: TorrentDetail) {
        let id = detail.summary.id;
        let meta = Arc::new(meta_from(detail));
        let mut inner = self.write();
        if let Some(entry) = inner.torrents.get_mut(&id) {
            entry.summary = meta.detail.summary.clone();
            entry.meta = Some(meta);
            inner.relist(id);
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
            inner.clear_listing();
            for summary in summaries {
                let id = summary.id;
                inner
                    .catalog
                    .entry(id)
                    .or_insert_with(|| default_catalog(now));
                let meta = old.remove(&id).and_then(|e| e.meta);
                if meta.is_none() {
                    need_meta.push(id);
                }
                inner.torrents.insert(id, Entry { summary, meta });
                inner.relist(id);
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
            inner
                .catalog
                .entry(id)
                .or_insert_with(|| default_catalog(now));
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
            inner.relist(id);
        }
        self.want_meta(id);
    }

    fn update(&self, id: TorrentId, change: impl FnOnce(&mut TorrentSummary)) {
        let mut inner = self.write();
        if let Some(entry) = inner.torrents.get_mut(&id) {
            change(&mut entry.summary);
            inner.relist(id);
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
        inner.catalog.remove(&id);
        inner.torrents.remove(&id);
        inner.relist(id);
    }

    /// The FsOps job state shown with the torrent.
    pub fn set_fsops(&self, id: TorrentId, status: Option<String>) {
        let mut inner = self.write();
        if let Some(catalog) = inner.catalog.get_mut(&id) {
            catalog.fsops = status;
            inner.relist(id);
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

    // ------------------------------------------------ listing vs brute force

    use revaer_api_models::torrents::TorrentList;
    use revaer_ipc::engine::{FileDetail, TrackerDetail, TrackerStatus};

    /// Small deterministic generator (splitmix64): reproducible cases
    /// without a dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }

        fn below(&mut self, n: usize) -> usize {
            usize::try_from(self.next() % n as u64).unwrap()
        }

        fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
            &items[self.below(items.len())]
        }

        fn some<T: Clone>(&mut self, items: &[T], max: usize) -> Vec<T> {
            let mut out = Vec::new();
            for _ in 0..self.below(max + 1) {
                out.push(self.pick(items).clone());
            }
            out
        }
    }

    const TAGS: [&str; 5] = ["a", "b", "c", "d", "e"];
    const EXTS: [&str; 4] = ["mkv", "iso", "flac", "txt"];
    const HOSTS: [&str; 4] = [
        "tracker.example.org",
        "example.org",
        "t.other.net",
        "notexample.org",
    ];
    const DOMAINS: [&str; 5] = ["example.org", "other.net", "org", "t.other.net", "le.org"];
    const NAMES: [&str; 4] = ["Alpha Movie", "beta ÄLBUM", "Gamma \"quoted\"\n", "delta"];

    fn summary(rng: &mut Rng, id: TorrentId) -> TorrentSummary {
        TorrentSummary {
            id,
            name: format!("{} {}", rng.pick(&NAMES), rng.below(100)),
            state: *rng.pick(&[
                TorrentState::Paused,
                TorrentState::Downloading,
                TorrentState::Seeding,
                TorrentState::Error,
                TorrentState::CheckingFiles,
            ]),
            progress_ppm: u32::try_from(rng.below(1_000_001)).unwrap(),
            download_bps: rng.next() % 1000,
            upload_bps: rng.next(),
            peers: 3,
            seeds: 1,
            total_wanted: rng.next() % 1_000_000,
            total_done: 7,
            downloaded: 8,
            uploaded: 9,
            paused: rng.below(2) == 0,
            sequential: false,
            has_metadata: true,
            error: (rng.below(4) == 0).then(|| "disk \u{1} full".to_owned()),
            stalled_reason: (rng.below(4) == 0).then(|| "interface wg0 is missing".to_owned()),
        }
    }

    fn meta(rng: &mut Rng, summary: &TorrentSummary) -> Option<Arc<Meta>> {
        if rng.below(5) == 0 {
            return None;
        }
        let files = rng
            .some(&EXTS, 3)
            .into_iter()
            .enumerate()
            .map(|(i, ext)| FileDetail {
                index: u32::try_from(i).unwrap(),
                path: format!("dir/file{i}.{}", ext.to_uppercase()),
                size: 1,
                priority: 4,
                done: 0,
            })
            .collect();
        let trackers = rng
            .some(&HOSTS, 2)
            .into_iter()
            .map(|host| TrackerDetail {
                url: format!("udp://{host}:80/announce"),
                status: TrackerStatus::Working,
                message: None,
                peers: None,
                tier: 0,
                next_announce_secs: None,
                last_error: None,
                fails: 0,
                seeders: None,
                leechers: None,
            })
            .collect();
        Some(Arc::new(meta_from(TorrentDetail {
            summary: summary.clone(),
            files,
            total_files: 3,
            save_subdir: None,
            trackers,
            piece_length: 16384,
            private: false,
            download_limit: None,
            upload_limit: None,
        })))
    }

    fn catalog(rng: &mut Rng) -> Catalog {
        let mut tags: Vec<String> = rng.some(&TAGS, 3).into_iter().map(str::to_owned).collect();
        tags.dedup();
        Catalog {
            tags,
            category: (rng.below(2) == 0).then(|| "cat".to_owned()),
            // Few distinct times: ties are broken by the id.
            added_at: i64::try_from(rng.below(20)).unwrap(),
            fsops: (rng.below(3) == 0).then(|| "pending".to_owned()),
        }
    }

    fn random_id(rng: &mut Rng) -> TorrentId {
        let mut id = [0_u8; 20];
        for chunk in id.chunks_mut(8) {
            let bytes = rng.next().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
        TorrentId(id)
    }

    fn random_filter(rng: &mut Rng) -> ListFilter {
        let mut filter = ListFilter::default();
        if rng.below(3) == 0 {
            filter.states = rng.some(
                &[
                    PublicState::Paused,
                    PublicState::Seeding,
                    PublicState::Error,
                ],
                2,
            );
            filter.states.dedup();
        }
        if rng.below(3) == 0 {
            filter.tags = rng.some(&TAGS, 2).into_iter().map(str::to_owned).collect();
            filter.tags.dedup();
        }
        if rng.below(3) == 0 {
            filter.extensions = rng.some(&EXTS, 2).into_iter().map(str::to_owned).collect();
            filter.extensions.dedup();
        }
        if rng.below(4) == 0 {
            filter.tracker = Some((*rng.pick(&DOMAINS)).to_owned());
        }
        if rng.below(5) == 0 {
            filter.name = Some((*rng.pick(&["movie", "älbum", "\"", "zzz", "1"])).to_owned());
        }
        filter
    }

    /// The old way, written independently: every torrent, sorted, each
    /// tested and serialized afresh.
    fn brute_force(inner: &Inner, filter: &ListFilter) -> Vec<(SortKey, Torrent)> {
        let mut all: Vec<(SortKey, Torrent)> = inner
            .torrents
            .iter()
            .filter_map(|(id, entry)| {
                let catalog = inner.catalog.get(id)?;
                let s = &entry.summary;
                let meta = entry.meta.as_deref();
                let ok = (filter.states.is_empty()
                    || filter.states.contains(&public_state(s.state)))
                    && filter.tags.iter().all(|t| catalog.tags.contains(t))
                    && filter
                        .name
                        .as_ref()
                        .is_none_or(|n| s.name.to_lowercase().contains(n.as_str()))
                    && filter.tracker.as_ref().is_none_or(|t| {
                        meta.is_some_and(|m| {
                            m.tracker_hosts
                                .iter()
                                .any(|h| h == t || h.ends_with(&format!(".{t}")))
                        })
                    })
                    && (filter.extensions.is_empty()
                        || meta.is_some_and(|m| {
                            m.extensions.iter().any(|e| filter.extensions.contains(e))
                        }));
                ok.then(|| {
                    let mut view = torrent_view(s, catalog);
                    // The id as `Display` writes it, as before.
                    view.id = id.to_string();
                    ((catalog.added_at, *id), view)
                })
            })
            .collect();
        all.sort_by_key(|(key, _)| *key);
        all
    }

    fn cursor(key: SortKey) -> String {
        format!("{}-{}", key.0, key.1)
    }

    /// Walks every page of `filter` and checks each against the brute
    /// force, byte for byte against a serialized `TorrentList`.
    fn check_listing(inner: &Inner, filter: &ListFilter, limit: usize, stale: bool) {
        let expected = brute_force(inner, filter);
        let mut after = None;
        let mut at = 0;
        loop {
            let page = inner.page(filter, after, limit);
            let next = page.next;
            let count = page.count;
            let body = page.finish(next.map(cursor).as_deref(), stale);
            let want: Vec<_> = expected.iter().skip(at).take(limit).collect();
            let more = at + want.len() < expected.len();
            let list = TorrentList {
                items: want.iter().map(|(_, t)| t.clone()).collect(),
                next: more.then(|| cursor(want.last().unwrap().0)),
                stale,
            };
            assert_eq!(
                String::from_utf8(body.clone()).unwrap(),
                serde_json::to_string(&list).unwrap(),
                "filter {filter:?}, limit {limit}, page at {at}"
            );
            let parsed: TorrentList = serde_json::from_slice(&body).unwrap();
            assert_eq!(parsed, list);
            assert_eq!(count, want.len());
            at += count;
            assert_eq!(
                next.is_some(),
                more,
                "{filter:?}: at {at} of {}",
                expected.len()
            );
            if next.is_none() {
                break;
            }
            after = next;
        }
    }

    /// Every row and index holds exactly the listed torrents.
    fn check_indexes(inner: &Inner) {
        let listed: usize = inner
            .torrents
            .keys()
            .filter(|id| inner.catalog.contains_key(id))
            .count();
        assert_eq!(inner.listed.len(), listed);
        assert_eq!(inner.order.len(), listed);
        let in_states: usize = inner.by_state.values().map(BTreeMap::len).sum();
        assert_eq!(in_states, listed);
        for (key, row) in &inner.order {
            assert_eq!(*key, row.key);
            let catalog = &inner.catalog[&key.1];
            assert_eq!(key.0, catalog.added_at);
            for tag in &catalog.tags {
                assert!(inner.by_tag[tag].contains_key(key));
            }
        }
        for index in inner
            .by_tag
            .values()
            .chain(inner.by_extension.values())
            .chain(inner.by_host.values())
        {
            assert!(!index.is_empty(), "empty indexes are dropped");
            for (key, row) in index {
                assert!(Arc::ptr_eq(row, &inner.order[key]), "stale row in an index");
            }
        }
        let bytes: usize = inner.order.values().map(|r| r.json.len()).sum();
        assert_eq!(inner.json_bytes, bytes);
    }

    #[test]
    fn pages_equal_a_fresh_brute_force_listing_through_random_changes() {
        for seed in 0..12 {
            let mut rng = Rng(seed);
            let mut inner = Inner::default();
            let mut ids = Vec::new();
            for _ in 0..120 {
                let id = random_id(&mut rng);
                let summary = summary(&mut rng, id);
                let meta = meta(&mut rng, &summary);
                inner.torrents.insert(id, Entry { summary, meta });
                // Some catalog rows without a torrent, some torrents
                // without a row (yet): neither is listed.
                if rng.below(10) != 0 {
                    inner.catalog.insert(id, catalog(&mut rng));
                }
                inner.relist(id);
                ids.push(id);
            }
            for _ in 0..20 {
                let id = random_id(&mut rng);
                inner.catalog.insert(id, catalog(&mut rng));
                inner.relist(id);
            }
            for round in 0..8 {
                check_indexes(&inner);
                for _ in 0..6 {
                    let filter = random_filter(&mut rng);
                    let limit = 1 + rng.below(40);
                    check_listing(&inner, &filter, limit, round % 2 == 1);
                }
                // Change some torrents the ways the model does.
                for _ in 0..30 {
                    let id = *rng.pick(&ids);
                    match rng.below(6) {
                        0 => {
                            let fresh = summary(&mut rng, id);
                            if let Some(entry) = inner.torrents.get_mut(&id) {
                                entry.summary = fresh;
                            }
                        }
                        1 => {
                            let row = catalog(&mut rng);
                            inner.catalog.insert(id, row);
                        }
                        2 => {
                            inner.catalog.remove(&id);
                            inner.torrents.remove(&id);
                        }
                        3 => {
                            let fresh = summary(&mut rng, id);
                            let meta = meta(&mut rng, &fresh);
                            inner.torrents.insert(
                                id,
                                Entry {
                                    summary: fresh,
                                    meta,
                                },
                            );
                        }
                        4 => {
                            if let Some(c) = inner.catalog.get_mut(&id) {
                                c.fsops = Some("done".to_owned());
                            }
                        }
                        _ => {
                            if let Some(entry) = inner.torrents.get_mut(&id) {
                                entry.meta = None;
                            }
                        }
                    }
                    inner.relist(id);
                }
            }
            // A snapshot rebuilds everything from scratch.
            inner.clear_listing();
            let all: Vec<TorrentId> = inner.torrents.keys().copied().collect();
            for id in all {
                inner.relist(id);
            }
            check_indexes(&inner);
            check_listing(&inner, &ListFilter::default(), 7, false);
        }
    }

    #[test]
    fn a_filtered_page_walks_the_rarest_index_only() {
        let mut rng = Rng(99);
        let mut inner = Inner::default();
        for i in 0..400 {
            let id = random_id(&mut rng);
            let mut summary = summary(&mut rng, id);
            summary.state = TorrentState::Paused;
            inner.torrents.insert(
                id,
                Entry {
                    summary,
                    meta: None,
                },
            );
            let mut row = catalog(&mut rng);
            row.tags = if i % 40 == 0 {
                vec!["rare".to_owned(), "all".to_owned()]
            } else {
                vec!["all".to_owned()]
            };
            inner.catalog.insert(id, row);
            inner.relist(id);
        }
        let filter = ListFilter {
            states: vec![PublicState::Paused],
            tags: vec!["all".to_owned(), "rare".to_owned()],
            ..ListFilter::default()
        };
        let candidates = inner.candidates(&filter);
        assert_eq!(candidates.len(), 1);
        assert_eq!(candidates[0].len(), 10);
        check_listing(&inner, &filter, 3, false);
        let unknown = ListFilter {
            tags: vec!["all".to_owned(), "nope".to_owned()],
            ..ListFilter::default()
        };
        assert!(inner.candidates(&unknown).is_empty());
        assert_eq!(inner.page(&unknown, None, 10).count, 0);
    }

    #[test]
    fn tracker_domains_match_hosts_and_subdomains_only() {
        assert!(host_matches("example.org", "example.org"));
        assert!(host_matches("t.example.org", "example.org"));
        assert!(!host_matches("notexample.org", "example.org"));
        assert!(!host_matches("example.org", "t.example.org"));
    }

    // ------------------------------------------------------ the page cache

    fn cached(body: &str) -> CachedPage {
        CachedPage {
            body: Bytes::from(body.to_owned()),
            link: None,
        }
    }

    #[test]
    fn cached_pages_serve_only_their_generation_and_staleness() {
        let mut cache = PageCache::default();
        cache.put("limit=1", 5, false, cached("a"));
        assert_eq!(cache.get("limit=1", 5, false).unwrap().body, "a");
        assert!(
            cache.get("limit=1", 6, false).is_none(),
            "the listing changed"
        );
        assert!(
            cache.get("limit=1", 5, true).is_none(),
            "the engine went away"
        );
        assert!(cache.get("limit=2", 5, false).is_none());
        cache.put("limit=1", 6, false, cached("b"));
        assert_eq!(cache.get("limit=1", 6, false).unwrap().body, "b");
        assert_eq!(cache.bytes, "limit=1".len() + 1);
        // Bounded in count: outdated pages go first.
        for i in 0..MAX_CACHED_PAGES * 2 {
            cache.put(&format!("q{i}"), 7, false, cached("c"));
        }
        assert!(cache.pages.len() <= MAX_CACHED_PAGES);
        assert_eq!(
            cache.bytes,
            cache
                .pages
                .iter()
                .map(|(q, c)| q.len() + c.page.body.len())
                .sum::<usize>()
        );
        // ... and in bytes; a page too large is not kept.
        cache.put("big", 7, false, cached(&"x".repeat(MAX_CACHED_BYTES)));
        assert!(cache.get("big", 7, false).is_none());
    }

    /// Through the router: whatever changes a listed torrent shows on the
    /// very next list, even when the same query was answered (and kept)
    /// just before.
    #[tokio::test]
    async fn every_change_shows_on_the_next_list() {
        use axum::http::Method;
        use serde_json::{Value, json};

        let h = crate::test_harness::Harness::start().await;
        let get = |uri: &'static str| {
            let h = &h;
            async move {
                let (status, _, list) = h.admin(Method::GET, uri, &Value::Null).await;
                assert_eq!(status, axum::http::StatusCode::OK, "{list}");
                list
            }
        };
        let empty = get("/v1/torrents?tags=x").await;
        assert_eq!(empty["items"], json!([]));
        let magnet = format!("magnet:?xt=urn:btih:{}&dn=cached", hex::encode([4_u8; 20]));
        let (status, _, added) = h
            .admin(
                Method::POST,
                "/v1/torrents",
                &json!({"magnet": magnet, "tags": ["x"], "paused": true}),
            )
            .await;
        assert_eq!(status, axum::http::StatusCode::CREATED, "{added}");
        let id: TorrentId = added["id"].as_str().unwrap().parse().unwrap();
        let listed = get("/v1/torrents?tags=x").await;
        assert_eq!(listed["items"].as_array().unwrap().len(), 1, "{listed}");
        assert_eq!(
            get("/v1/torrents?tags=x").await,
            listed,
            "kept and served again"
        );
        assert!(h.state.torrents.cached_page("tags=x", false).is_some());

        // Labels (read-your-writes: no waiting).
        let uri = format!("/v1/torrents/{}", hex::encode([4_u8; 20]));
        let (status, _, _) = h.admin(Method::PATCH, &uri, &json!({"tags": ["y"]})).await;
        assert_eq!(status, axum::http::StatusCode::OK);
        assert_eq!(get("/v1/torrents?tags=x").await["items"], json!([]));
        assert_eq!(
            get("/v1/torrents?tags=y").await["items"][0]["tags"],
            json!(["y"])
        );

        // FsOps state.
        h.state.torrents.set_fsops(id, Some("running".to_owned()));
        assert_eq!(
            get("/v1/torrents?tags=y").await["items"][0]["fsops"],
            "running"
        );

        // Engine events.
        h.engine.emit(EngineEvent::Error {
            id,
            message: "boom".to_owned(),
        });
        h.wait_for("the error to reach the model", |h| {
            h.state.torrents.get(&id).unwrap().torrent.error.is_some()
        })
        .await;
        assert_eq!(
            get("/v1/torrents?tags=y").await["items"][0]["error"],
            "boom"
        );

        // The engine going away flips `stale` on the kept answer too.
        h.kill_engine();
        h.wait_for("the model to notice", |h| h.state.torrents.is_stale())
            .await;
        let list = get("/v1/torrents?tags=y").await;
        assert_eq!(list["stale"], true);
        assert_eq!(list["items"].as_array().unwrap().len(), 1);
    }
}
