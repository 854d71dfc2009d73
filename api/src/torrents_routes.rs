//! `/v1/torrents`: add, list, inspect and steer torrents (DESIGN §5).
//!
//! Reads are served from the [`ReadModel`](crate::read_model::ReadModel);
//! writes go to the engine over its data channel and, for labels, to the
//! SQLite catalog — durably before the API answers. While the engine is
//! unreachable, reads answer the last known state with `stale: true` and
//! writes that need the engine answer 503 with `Retry-After`. All input is
//! validated here first; failures name the offending field by JSON pointer.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::Json;
use axum::extract::{FromRequest, Multipart, Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use globset::GlobBuilder;
use revaer_api_models::InvalidParam;
use revaer_api_models::Problem;
use revaer_api_models::torrents::{
    AddTorrentRequest, DEFAULT_PAGE_LIMIT, FileRule, FsopsStatus, MAX_LABEL_BYTES, MAX_PAGE_LIMIT,
    MAX_TAGS, SelectRequest, Torrent, TorrentAction, TorrentCreated,
    TorrentDetail as TorrentDetailView, TorrentFile, TorrentList, TorrentPatch, TorrentPeer,
    TorrentPeers, TorrentState as PublicState, TorrentTracker,
};
use revaer_ipc::engine::{
    AddTorrent, EngineError, EngineErrorKind, EngineRequest, EngineResponse, FileDetail,
    MAX_MAGNET_BYTES, MAX_TORRENT_FILE_BYTES, TorrentDetail, TorrentId, TorrentSource,
    TrackerStatus,
};
use revaer_ipc::{WorkerRequest, WorkerResponse};

use crate::AppState;
use crate::links::LinkError;
use crate::problem::{
    InvalidRequest, StoreFailure, ValidJson, failures, invalid, parse_json, store_write,
};
use crate::read_model::{ListFilter, SortKey};

/// Largest `POST /v1/torrents` body: a `.torrent` plus its options.
pub const MAX_ADD_BODY_BYTES: usize = MAX_TORRENT_FILE_BYTES + MAX_OPTIONS_BYTES;
/// Largest JSON body or multipart `options` part.
pub const MAX_OPTIONS_BYTES: usize = 64 * 1024;
/// Most file-selection rules in one request.
pub const MAX_RULES: usize = 10_000;
/// Longest save sub-path, in bytes.
pub const MAX_SAVE_PATH_BYTES: usize = 1024;
/// Longest name filter, in bytes.
const MAX_NAME_FILTER_BYTES: usize = 256;
/// Most values of one multi-valued filter.
const MAX_FILTER_VALUES: usize = 32;

// ---------------------------------------------------------------- errors

failures! {
    /// An engine command that failed: the engine refused it (400, 404,
    /// 409), is away or busy (503), or answered out of protocol (500).
    pub enum EngineFailure { BadRequest, NotFound, Conflict, Unavailable, Internal }

    /// A `POST /v1/torrents` body that cannot be read.
    pub enum UploadFailure { BadRequest, Invalid, PayloadTooLarge } from { InvalidRequest }

    /// Why `POST /v1/torrents` fails.
    pub enum AddError {
        BadRequest,
        Invalid,
        NotFound,
        Conflict,
        PayloadTooLarge,
        UnsupportedMediaType,
        Unavailable,
        InsufficientStorage,
        Internal,
    } from { InvalidRequest, EngineFailure, UploadFailure, StoreFailure }

    /// Why `GET /v1/torrents/{id}` fails.
    pub enum DetailError { Invalid, NotFound } from { InvalidRequest }

    /// Why `GET /v1/torrents/{id}/peers` fails.
    pub enum PeersError { Invalid, NotFound, Unavailable } from { InvalidRequest }

    /// Why `PATCH /v1/torrents/{id}` fails.
    pub enum PatchError { Invalid, NotFound, Unavailable, InsufficientStorage, Internal }
        from { InvalidRequest, StoreFailure }

    /// Why `POST /v1/torrents/{id}/select` fails.
    pub enum SelectError { BadRequest, Invalid, NotFound, Conflict, Unavailable, Internal }
        from { InvalidRequest, EngineFailure }

    /// Why `POST /v1/torrents/{id}/action` fails.
    pub enum ActionError { BadRequest, Invalid, NotFound, Conflict, Unavailable, Internal }
        from { InvalidRequest, EngineFailure }
}

// ---------------------------------------------------------------- engine

/// Sends one command to the engine; refuses at once while it is away.
async fn engine_call(
    state: &AppState,
    request: EngineRequest,
) -> Result<EngineResponse, EngineFailure> {
    if state.torrents.is_stale() {
        return Err(EngineFailure::Unavailable(
            "the engine is unavailable; retry shortly".to_owned(),
        ));
    }
    match state.engine.request(WorkerRequest::Engine(request)).await {
        Ok(WorkerResponse::Engine(EngineResponse::Error(e))) => Err(engine_error(e)),
        Ok(WorkerResponse::Engine(response)) => Ok(response),
        Ok(other) => Err(EngineFailure::Internal(format!(
            "engine answered {other:?}"
        ))),
        Err(LinkError::Busy(_)) => Err(EngineFailure::Unavailable(
            "the engine is busy; retry shortly".to_owned(),
        )),
        Err(e) => Err(EngineFailure::Unavailable(format!(
            "the engine is unavailable: {e}"
        ))),
    }
}

fn engine_error(e: EngineError) -> EngineFailure {
    match e.kind {
        EngineErrorKind::Invalid => EngineFailure::BadRequest(e.message),
        EngineErrorKind::NotFound => EngineFailure::NotFound(e.message),
        EngineErrorKind::Duplicate => EngineFailure::Conflict(e.message),
        EngineErrorKind::Internal => EngineFailure::Unavailable(e.message),
    }
}

async fn engine_done(state: &AppState, request: EngineRequest) -> Result<(), EngineFailure> {
    match engine_call(state, request).await? {
        EngineResponse::Done => Ok(()),
        other => Err(EngineFailure::Internal(format!(
            "engine answered {other:?}"
        ))),
    }
}

async fn engine_detail(state: &AppState, id: TorrentId) -> Result<TorrentDetail, EngineFailure> {
    match engine_call(state, EngineRequest::Detail { id }).await? {
        EngineResponse::Detail(detail) => Ok(*detail),
        other => Err(EngineFailure::Internal(format!(
            "engine answered {other:?}"
        ))),
    }
}

// ------------------------------------------------------------ validation

fn label_problem(label: &str) -> Option<String> {
    if label.is_empty() {
        Some("must not be empty".to_owned())
    } else if label.len() > MAX_LABEL_BYTES {
        Some(format!("longer than {MAX_LABEL_BYTES} bytes"))
    } else if label.chars().any(|c| c.is_control() || c == ',') {
        Some("must not contain commas or control characters".to_owned())
    } else if label.trim() != label {
        Some("must not start or end with whitespace".to_owned())
    } else {
        None
    }
}

/// Checks and deduplicates tags (order kept).
fn validate_tags(tags: &[String], pointer: &str, errors: &mut Vec<InvalidParam>) -> Vec<String> {
    if tags.len() > MAX_TAGS {
        errors.push(param(pointer, format!("at most {MAX_TAGS} tags")));
    }
    let mut out: Vec<String> = Vec::with_capacity(tags.len());
    for (i, tag) in tags.iter().enumerate() {
        if let Some(problem) = label_problem(tag) {
            errors.push(param(format!("{pointer}/{i}"), problem));
        } else if !out.contains(tag) {
            out.push(tag.clone());
        }
    }
    out
}

fn validate_category(category: &str, pointer: &str, errors: &mut Vec<InvalidParam>) {
    if let Some(problem) = label_problem(category) {
        errors.push(param(pointer, problem));
    }
}

fn validate_save_path(path: &str, pointer: &str, errors: &mut Vec<InvalidParam>) {
    let plain = std::path::Path::new(path)
        .components()
        .all(|c| matches!(c, std::path::Component::Normal(_)));
    if path.is_empty() || path.len() > MAX_SAVE_PATH_BYTES || path.contains('\0') {
        errors.push(param(
            pointer,
            format!("must be 1 to {MAX_SAVE_PATH_BYTES} bytes"),
        ));
    } else if !plain {
        errors.push(param(
            pointer,
            "must be a relative path below the downloads dir, without `.` or `..`",
        ));
    }
}

/// Syntax of file rules (their targets are checked against the file list
/// later).
fn validate_rules(rules: &[FileRule], pointer: &str, errors: &mut Vec<InvalidParam>) {
    if rules.len() > MAX_RULES {
        errors.push(param(pointer, format!("at most {MAX_RULES} rules")));
        return;
    }
    for (i, rule) in rules.iter().enumerate() {
        let at = format!("{pointer}/{i}");
        match (&rule.index, &rule.glob) {
            (Some(_), Some(_)) | (None, None) => {
                errors.push(param(&at, "give exactly one of `index` and `glob`"));
            }
            (None, Some(glob)) => {
                if glob.is_empty() || glob.len() > 1024 {
                    errors.push(param(format!("{at}/glob"), "must be 1 to 1024 bytes"));
                } else if let Err(e) = GlobBuilder::new(glob).build() {
                    errors.push(param(format!("{at}/glob"), e.kind().to_string()));
                }
            }
            (Some(_), None) => {}
        }
        if rule.priority > 7 {
            errors.push(param(format!("{at}/priority"), "must be 0 to 7"));
        }
    }
}

fn param(pointer: impl Into<String>, message: impl Into<String>) -> InvalidParam {
    InvalidParam {
        pointer: pointer.into(),
        message: message.into(),
    }
}

fn check(errors: Vec<InvalidParam>) -> Result<(), InvalidRequest> {
    if errors.is_empty() {
        Ok(())
    } else {
        Err(InvalidRequest::Invalid(errors))
    }
}

/// Applies rules over the current priorities of `files`; the result has
/// one entry per file including padding (`total_files`).
pub fn apply_rules(
    rules: &[FileRule],
    files: &[FileDetail],
    total_files: u32,
    pointer: &str,
) -> Result<Vec<u8>, InvalidRequest> {
    let total = usize::try_from(total_files).unwrap_or(usize::MAX);
    let mut priorities = vec![0_u8; total];
    for f in files {
        if let Some(slot) = usize::try_from(f.index)
            .ok()
            .and_then(|i| priorities.get_mut(i))
        {
            *slot = f.priority;
        }
    }
    let mut errors = Vec::new();
    for (i, rule) in rules.iter().enumerate() {
        let at = format!("{pointer}/{i}");
        if let Some(index) = rule.index {
            match files.iter().find(|f| f.index == index) {
                Some(f) => set_priority(&mut priorities, f.index, rule.priority),
                None => errors.push(param(
                    format!("{at}/index"),
                    format!("no file has index {index} ({} files)", files.len()),
                )),
            }
        } else if let Some(glob) = &rule.glob {
            let matcher = match GlobBuilder::new(glob).build() {
                Ok(g) => g.compile_matcher(),
                Err(e) => {
                    errors.push(param(format!("{at}/glob"), e.kind().to_string()));
                    continue;
                }
            };
            let mut hits = 0_usize;
            for f in files.iter().filter(|f| matcher.is_match(&f.path)) {
                set_priority(&mut priorities, f.index, rule.priority);
                hits += 1;
            }
            if hits == 0 {
                errors.push(param(format!("{at}/glob"), "matches no file"));
            }
        }
    }
    check(errors)?;
    Ok(priorities)
}

fn set_priority(priorities: &mut [u8], index: u32, priority: u8) {
    if let Some(slot) = usize::try_from(index)
        .ok()
        .and_then(|i| priorities.get_mut(i))
    {
        *slot = priority;
    }
}

fn parse_id(text: &str) -> Result<TorrentId, InvalidRequest> {
    text.parse()
        .map_err(|_| invalid("/path/id", "a torrent id is 40 hexadecimal characters"))
}

// ---------------------------------------------------------------- cursor

/// Encodes a listing position as an opaque token.
#[must_use]
pub fn encode_cursor(key: SortKey) -> String {
    let mut bytes = Vec::with_capacity(28);
    bytes.extend_from_slice(&key.0.to_be_bytes());
    bytes.extend_from_slice(&key.1.0);
    hex::encode(bytes)
}

/// Decodes a token made by [`encode_cursor`].
#[must_use]
pub fn decode_cursor(text: &str) -> Option<SortKey> {
    if text.len() != 56 {
        return None;
    }
    let bytes = hex::decode(text).ok()?;
    let added_at = i64::from_be_bytes(bytes.get(..8)?.try_into().ok()?);
    let id: [u8; 20] = bytes.get(8..)?.try_into().ok()?;
    Some((added_at, TorrentId(id)))
}

// ------------------------------------------------------------ list query

/// A validated `GET /v1/torrents` query.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub filter: ListFilter,
    pub cursor: Option<SortKey>,
    pub limit: usize,
}

fn split_values(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim)
}

/// Parses and validates the listing query; every problem is reported with
/// a `/query/<name>` pointer. Single-valued parameters given twice with
/// different values are contradictory.
pub fn parse_list_query(pairs: &[(String, String)]) -> Result<ListQuery, InvalidRequest> {
    let mut errors = Vec::new();
    let mut query = ListQuery {
        limit: DEFAULT_PAGE_LIMIT as usize,
        ..ListQuery::default()
    };
    let mut singles: Vec<(&str, &str)> = Vec::new();
    for (key, value) in pairs {
        let at = format!("/query/{key}");
        match key.as_str() {
            "limit" | "cursor" | "tracker" | "name" => {
                if let Some((_, before)) = singles.iter().find(|(k, _)| k == key) {
                    if before != value {
                        errors.push(param(&at, "given twice with different values"));
                    }
                    continue;
                }
                singles.push((key.as_str(), value.as_str()));
                parse_single(key, value, &at, &mut query, &mut errors);
            }
            "state" => {
                for v in split_values(value) {
                    match PublicState::parse(v) {
                        Some(s) if !query.filter.states.contains(&s) => query.filter.states.push(s),
                        Some(_) => {}
                        None => errors.push(param(&at, format!("unknown state `{v}`"))),
                    }
                }
            }
            "extension" => {
                for v in split_values(value) {
                    let ext = v.trim_start_matches('.').to_ascii_lowercase();
                    if ext.is_empty()
                        || ext.len() > 16
                        || !ext.chars().all(|c| c.is_ascii_alphanumeric())
                    {
                        errors.push(param(&at, format!("`{v}` is not a file extension")));
                    } else if !query.filter.extensions.contains(&ext) {
                        query.filter.extensions.push(ext);
                    }
                }
            }
            "tags" | "tag" => {
                for v in split_values(value) {
                    if let Some(problem) = label_problem(v) {
                        errors.push(param(&at, format!("tag `{v}`: {problem}")));
                    } else if !query.filter.tags.iter().any(|t| t == v) {
                        query.filter.tags.push(v.to_owned());
                    }
                }
            }
            _ => errors.push(param(&at, "unknown parameter")),
        }
    }
    let f = &query.filter;
    for (name, count) in [
        ("state", f.states.len()),
        ("extension", f.extensions.len()),
        ("tags", f.tags.len()),
    ] {
        if count > MAX_FILTER_VALUES {
            errors.push(param(
                format!("/query/{name}"),
                format!("at most {MAX_FILTER_VALUES} values"),
            ));
        }
    }
    check(errors)?;
    Ok(query)
}

fn parse_single(
    key: &str,
    value: &str,
    at: &str,
    query: &mut ListQuery,
    errors: &mut Vec<InvalidParam>,
) {
    match key {
        "limit" => match value.parse::<u32>() {
            Ok(n) if (1..=MAX_PAGE_LIMIT).contains(&n) => {
                query.limit = usize::try_from(n).unwrap_or(usize::MAX);
            }
            _ => errors.push(param(at, format!("must be 1 to {MAX_PAGE_LIMIT}"))),
        },
        "cursor" => match decode_cursor(value) {
            Some(key) => query.cursor = Some(key),
            None => errors.push(param(at, "not a cursor returned by this API")),
        },
        "tracker" => {
            let host = value.trim().trim_end_matches('.').to_ascii_lowercase();
            if host.is_empty() || host.len() > 253 || host.contains(['/', ' ']) {
                errors.push(param(at, "must be a tracker host name"));
            } else {
                query.filter.tracker = Some(host);
            }
        }
        _ => {
            if value.is_empty() || value.len() > MAX_NAME_FILTER_BYTES {
                errors.push(param(
                    at,
                    format!("must be 1 to {MAX_NAME_FILTER_BYTES} bytes"),
                ));
            } else {
                query.filter.name = Some(value.to_lowercase());
            }
        }
    }
}

/// Query of `GET /v1/torrents` (documentation; parsing is
/// [`parse_list_query`]).
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code, reason = "describes the query for OpenAPI only")]
pub struct ListParams {
    /// Page size, 1–500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    /// `next` of the previous page.
    cursor: Option<String>,
    /// Any of these states, comma-separated.
    #[param(example = "downloading,seeding")]
    state: Option<String>,
    /// A tracker host name or a parent domain of it.
    tracker: Option<String>,
    /// Any file with one of these extensions, comma-separated.
    #[param(example = "mkv")]
    extension: Option<String>,
    /// All of these tags, comma-separated.
    tags: Option<String>,
    /// Case-insensitive substring of the name.
    name: Option<String>,
}

/// `multipart/form-data` body of `POST /v1/torrents` (documentation).
#[derive(Debug, utoipa::ToSchema)]
#[allow(dead_code, reason = "describes the upload for OpenAPI only")]
pub struct UploadForm {
    /// The `.torrent` file, at most 10 MiB.
    #[schema(value_type = String, format = Binary)]
    torrent: Vec<u8>,
    /// JSON options: the add request without `magnet`.
    options: Option<AddTorrentRequest>,
}

// -------------------------------------------------------------- handlers

#[utoipa::path(
    get,
    path = "/v1/torrents",
    tag = "torrents",
    operation_id = "list_torrents",
    summary = "List torrents, a page at a time",
    description = "Served from memory; a page costs its size, not the number of torrents. Follow `next` (or the `Link: rel=next` header) until it is absent. Unknown parameters, bad values and single-valued parameters repeated with different values are 400 with `invalid_params` pointers such as `/query/limit`.",
    params(ListParams),
    responses(
        (status = 200, description = "One page", body = TorrentList,
            headers(("Link" = String, description = "`</v1/torrents?...&cursor=...>; rel=\"next\"` when more follow"))),
        (status = 400, description = "Invalid query", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid key", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited", body = Problem, content_type = "application/problem+json"),
    )
)]
/// `GET /v1/torrents`.
///
/// The answer to a query string is kept (see
/// [`crate::read_model::ReadModel::cached_page`]) and served again while
/// nothing listed changed and `stale` stayed the same.
pub async fn list(
    State(state): State<Arc<AppState>>,
    uri: axum::http::Uri,
) -> Result<Response, InvalidRequest> {
    let raw = uri.query().unwrap_or("");
    let was_stale = state.torrents.is_stale();
    if let Some(page) = state.torrents.cached_page(raw, was_stale) {
        return Ok(list_response(page));
    }
    let Query(pairs) = Query::<Vec<(String, String)>>::try_from_uri(&uri)
        .map_err(|rejection| invalid::<InvalidRequest>("/query", rejection.body_text()))?;
    let query = parse_list_query(&pairs)?;
    let page = state
        .torrents
        .list(&query.filter, query.cursor, query.limit);
    let generation = page.generation;
    let next = page.next.map(encode_cursor);
    let link = next
        .as_ref()
        .and_then(|cursor| HeaderValue::from_str(&next_link(&pairs, cursor)).ok());
    // The items are serialized already: the body is a `TorrentList`.
    let body = page.finish(next.as_deref(), was_stale);
    let page = crate::read_model::CachedPage {
        body: axum::body::Bytes::from(body),
        link,
    };
    state
        .torrents
        .cache_page(raw, generation, was_stale, page.clone());
    Ok(list_response(page))
}

fn list_response(page: crate::read_model::CachedPage) -> Response {
    let mut response = (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        page.body,
    )
        .into_response();
    if let Some(link) = page.link {
        response.headers_mut().insert(header::LINK, link);
    }
    response
}

/// `</v1/torrents?...&cursor=...>; rel="next"`, keeping the caller's filters.
fn next_link(pairs: &[(String, String)], cursor: &str) -> String {
    let mut query: Vec<String> = pairs
        .iter()
        .filter(|(k, _)| k != "cursor")
        .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
        .collect();
    query.push(format!("cursor={cursor}"));
    format!("</v1/torrents?{}>; rel=\"next\"", query.join("&"))
}

fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b',') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// What a `POST /v1/torrents` carried, before validation against the
/// engine.
struct AddInput {
    options: AddTorrentRequest,
    source: TorrentSource,
}

#[utoipa::path(
    post,
    path = "/v1/torrents",
    tag = "torrents",
    operation_id = "add_torrent",
    summary = "Add a torrent",
    description = "A magnet link as JSON, or a `.torrent` file (at most 10 MiB, streamed) as `multipart/form-data` with part `torrent` and an optional JSON part `options`. File selection rules need the file list, so only `.torrent` uploads take `files`: the torrent is added paused, the rules applied, then started unless `paused`. Labels are stored durably before the answer.",
    request_body(content(
        (AddTorrentRequest = "application/json",
            example = json!({"magnet": "magnet:?xt=urn:btih:0123456789abcdef0123456789abcdef01234567&dn=example", "tags": ["tv"], "category": "shows", "paused": false})),
        (UploadForm = "multipart/form-data"),
    )),
    responses(
        (status = 201, description = "Added", body = TorrentCreated,
            headers(("Location" = String, description = "`/v1/torrents/{id}`"))),
        (status = 400, description = "Invalid input, located by `invalid_params`", body = Problem, content_type = "application/problem+json",
            example = json!({"type": "https://revaer.dev/problems/invalid-params", "title": "Invalid request", "status": 400, "detail": "one or more parameters are invalid", "invalid_params": [{"pointer": "/tags/0", "message": "must not be empty"}]})),
        (status = 401, description = "Missing or invalid key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Read-only key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "The torrent was removed by another request while it was being added", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already present", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Neither JSON nor multipart", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Engine unavailable; see `Retry-After`", body = Problem, content_type = "application/problem+json"),
        (status = 507, description = "The state directory is full; nothing was stored", body = Problem, content_type = "application/problem+json"),
    )
)]
/// `POST /v1/torrents`: a magnet as JSON, or a `.torrent` as multipart.
pub async fn add(
    State(state): State<Arc<AppState>>,
    request: Request,
) -> Result<Response, AddError> {
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    // Remembered with the torrent: FsOps joins this trace at completion.
    let traceparent = request
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .filter(|v| revaer_ipc::trace::validate_traceparent(v))
        .map(str::to_owned);
    let input = if content_type.starts_with("multipart/form-data") {
        read_multipart(request).await?
    } else if content_type.starts_with("application/json") {
        read_json_add(request).await?
    } else {
        return Err(AddError::UnsupportedMediaType(
            "send a magnet as application/json or a .torrent as multipart/form-data".to_owned(),
        ));
    };
    let is_file = matches!(input.source, TorrentSource::TorrentFile(_));
    let options = input.options;
    let mut errors = Vec::new();
    let prefix = if is_file { "/options" } else { "" };
    let tags = validate_tags(&options.tags, &format!("{prefix}/tags"), &mut errors);
    if let Some(category) = &options.category {
        validate_category(category, &format!("{prefix}/category"), &mut errors);
    }
    if let Some(path) = &options.save_path {
        validate_save_path(path, &format!("{prefix}/save_path"), &mut errors);
    }
    validate_rules(&options.files, &format!("{prefix}/files"), &mut errors);
    if !is_file && !options.files.is_empty() {
        errors.push(param(
            "/files",
            "a magnet's file list is unknown until its metadata arrives; use /select then",
        ));
    }
    check(errors)?;

    let select = !options.files.is_empty();
    let add = AddTorrent {
        source: input.source,
        paused: options.paused || select,
        sequential: options.sequential,
        file_priorities: Vec::new(),
        peers: Vec::new(),
        save_subdir: options.save_path.clone(),
    };
    let id = match engine_call(&state, EngineRequest::Add(Box::new(add))).await {
        Ok(EngineResponse::Added { id }) => id,
        Ok(other) => return Err(AddError::Internal(format!("engine answered {other:?}"))),
        Err(EngineFailure::BadRequest(message)) => {
            let pointer = if is_file {
                "/multipart/torrent"
            } else {
                "/magnet"
            };
            return Err(invalid(pointer, message));
        }
        Err(e) => return Err(e.into()),
    };
    if let Err(e) = finish_add(&state, id, &options, tags, select, traceparent).await {
        // Acknowledge nothing half-done: take the torrent back out, and out
        // of the listing at once (not only when the engine's event lands).
        if let Ok(EngineResponse::Done) = engine_call(
            &state,
            EngineRequest::Remove {
                id,
                delete_data: true,
            },
        )
        .await
        {
            state.torrents.removed(id).await;
        }
        return Err(e);
    }
    let location = format!("/v1/torrents/{id}");
    let mut response = (
        StatusCode::CREATED,
        Json(TorrentCreated { id: id.to_string() }),
    )
        .into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}

/// After the engine accepted an add: initial file selection, labels (made
/// durable), and the read model primed so a GET right after sees it.
async fn finish_add(
    state: &Arc<AppState>,
    id: TorrentId,
    options: &AddTorrentRequest,
    tags: Vec<String>,
    select: bool,
    traceparent: Option<String>,
) -> Result<(), AddError> {
    if select {
        let detail = engine_detail(state, id).await?;
        let priorities = apply_rules(
            &options.files,
            &detail.files,
            detail.total_files,
            "/options/files",
        )?;
        engine_done(state, EngineRequest::SelectFiles { id, priorities }).await?;
        if !options.paused {
            engine_done(state, EngineRequest::Resume { id }).await?;
        }
    }
    let model = Arc::clone(&state.torrents);
    let store = Arc::clone(&state.store);
    let category = options.category.clone();
    tokio::task::spawn_blocking(move || {
        model.set_labels(id, tags, category)?;
        match traceparent {
            Some(tp) => store.catalog_set_traceparent(&id.to_string(), &tp),
            None => Ok(()),
        }
    })
    .await
    .map_err(|e| AddError::Internal(e.to_string()))?
    .map_err(|e| store_write(&e, "the catalog cannot be written"))?;
    if let Ok(detail) = engine_detail(state, id).await {
        state.torrents.observe(detail);
    }
    Ok(())
}

async fn read_json_add(request: Request) -> Result<AddInput, UploadFailure> {
    let bytes = axum::body::to_bytes(request.into_body(), MAX_OPTIONS_BYTES)
        .await
        .map_err(|_| {
            UploadFailure::PayloadTooLarge(format!(
                "a JSON body is at most {MAX_OPTIONS_BYTES} bytes"
            ))
        })?;
    let options: AddTorrentRequest = parse_json(&bytes)?;
    let Some(magnet) = options.magnet.clone() else {
        return Err(invalid(
            "/magnet",
            "required (or send a .torrent as multipart/form-data)",
        ));
    };
    if magnet.len() > MAX_MAGNET_BYTES || !magnet.starts_with("magnet:?") {
        return Err(invalid(
            "/magnet",
            format!("must be a magnet: link of at most {MAX_MAGNET_BYTES} bytes"),
        ));
    }
    Ok(AddInput {
        options,
        source: TorrentSource::Magnet(magnet),
    })
}

async fn read_multipart(request: Request) -> Result<AddInput, UploadFailure> {
    let mut multipart = Multipart::from_request(request, &())
        .await
        .map_err(|e| UploadFailure::BadRequest(e.body_text()))?;
    let mut torrent: Option<Vec<u8>> = None;
    let mut options = AddTorrentRequest::default();
    let mut seen_options = false;
    while let Some(mut field) = multipart.next_field().await.map_err(multipart_error)? {
        let name = field.name().unwrap_or_default().to_owned();
        match name.as_str() {
            "torrent" if torrent.is_none() => {
                let mut bytes = Vec::new();
                while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
                    if bytes.len() + chunk.len() > MAX_TORRENT_FILE_BYTES {
                        return Err(UploadFailure::PayloadTooLarge(format!(
                            "a .torrent file is at most {MAX_TORRENT_FILE_BYTES} bytes"
                        )));
                    }
                    bytes.extend_from_slice(&chunk);
                }
                torrent = Some(bytes);
            }
            "options" if !seen_options => {
                let mut bytes = Vec::new();
                while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
                    if bytes.len() + chunk.len() > MAX_OPTIONS_BYTES {
                        return Err(UploadFailure::PayloadTooLarge(format!(
                            "the options part is at most {MAX_OPTIONS_BYTES} bytes"
                        )));
                    }
                    bytes.extend_from_slice(&chunk);
                }
                options = parse_json(&bytes).map_err(|InvalidRequest::Invalid(params)| {
                    UploadFailure::Invalid(
                        params
                            .into_iter()
                            .map(|p| param(format!("/options{}", p.pointer), p.message))
                            .collect(),
                    )
                })?;
                seen_options = true;
            }
            "torrent" | "options" => {
                return Err(invalid(
                    format!("/multipart/{name}"),
                    "given more than once",
                ));
            }
            _ => {
                return Err(invalid(
                    format!("/multipart/{}", name.chars().take(64).collect::<String>()),
                    "unknown part; expected `torrent` and optionally `options`",
                ));
            }
        }
    }
    let Some(torrent) = torrent else {
        return Err(invalid("/multipart/torrent", "required"));
    };
    if options.magnet.is_some() {
        return Err(invalid(
            "/options/magnet",
            "send either a magnet (JSON) or a .torrent (multipart), not both",
        ));
    }
    Ok(AddInput {
        options,
        source: TorrentSource::TorrentFile(torrent),
    })
}

#[allow(clippy::needless_pass_by_value, reason = "used with map_err")]
fn multipart_error(e: axum::extract::multipart::MultipartError) -> UploadFailure {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        UploadFailure::PayloadTooLarge(format!(
            "the upload is larger than {MAX_ADD_BODY_BYTES} bytes"
        ))
    } else {
        UploadFailure::BadRequest(format!("malformed multipart body: {}", e.body_text()))
    }
}

#[utoipa::path(
    get,
    path = "/v1/torrents/{id}/peers",
    tag = "torrents",
    operation_id = "get_torrent_peers",
    summary = "The torrent's connected peers: address, client, flags, progress and rates",
    params(("id" = String, Path, description = "Info-hash, 40 hex digits")),
    responses(
        (status = 200, description = "Connected peers, as the engine sees them now", body = TorrentPeers),
        (status = 400, description = "Malformed id", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such torrent", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The engine is unavailable (peers are live state, never cached)", body = Problem, content_type = "application/problem+json"),
    )
)]
/// `GET /v1/torrents/{id}/peers`.
pub async fn peers(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<TorrentPeers>, PeersError> {
    let id = parse_id(&id)?;
    let peers = match engine_call(&state, EngineRequest::Peers { id }).await {
        Ok(EngineResponse::Peers(peers)) => peers,
        Ok(other) => {
            tracing::warn!(id = %id, "engine answered {other:?} to a peer list");
            return Err(PeersError::Unavailable(
                "the engine gave no peer list; retry shortly".to_owned(),
            ));
        }
        Err(EngineFailure::NotFound(_)) => {
            return Err(PeersError::NotFound(format!("no torrent {id}")));
        }
        Err(e) => return Err(PeersError::Unavailable(e.to_string())),
    };
    Ok(Json(TorrentPeers {
        peers: peers
            .into_iter()
            .map(|p| TorrentPeer {
                address: p.addr.to_string(),
                client: p.client,
                seed: p.seed,
                interested: p.interested,
                choked: p.choked,
                remote_interested: p.remote_interested,
                remote_choked: p.remote_choked,
                encrypted: p.encrypted,
                transport: if p.utp { "utp" } else { "tcp" }.to_owned(),
                direction: if p.outgoing { "outgoing" } else { "incoming" }.to_owned(),
                progress: f64::from(p.progress_ppm.min(1_000_000)) / 1_000_000.0,
                download_bps: p.download_bps,
                upload_bps: p.upload_bps,
                downloaded: p.downloaded,
                uploaded: p.uploaded,
            })
            .collect(),
    }))
}

#[utoipa::path(
    get,
    path = "/v1/torrents/{id}",
    tag = "torrents",
    operation_id = "get_torrent",
    summary = "One torrent with files, trackers and FsOps status",
    params(("id" = String, Path, description = "Info-hash, 40 hex digits")),
    responses(
        (status = 200, description = "The torrent; `stale` when the engine is away", body = TorrentDetailView),
        (status = 400, description = "Malformed id", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such torrent", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited", body = Problem, content_type = "application/problem+json"),
    )
)]
/// `GET /v1/torrents/{id}`.
pub async fn detail(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<TorrentDetailView>, DetailError> {
    let id = parse_id(&id)?;
    let was_stale = state.torrents.is_stale();
    if !was_stale {
        match engine_detail(&state, id).await {
            Ok(detail) => state.torrents.observe(detail),
            Err(EngineFailure::NotFound(_)) => {
                return Err(DetailError::NotFound(format!("no torrent {id}")));
            }
            Err(e) => tracing::debug!(id = %id, error = %e, "serving the cached detail"),
        }
    }
    let snapshot = state
        .torrents
        .get(&id)
        .ok_or_else(|| DetailError::NotFound(format!("no torrent {id}")))?;
    let fsops_job = fsops_status(&state, id).await;
    let detail = snapshot.meta.as_ref().map(|m| &m.detail);
    let files = detail.map_or_else(Vec::new, |d| {
        d.files
            .iter()
            .map(|f| TorrentFile {
                index: f.index,
                path: f.path.clone(),
                size: f.size,
                priority: f.priority,
                done: f.done.min(f.size),
                progress: if f.size == 0 {
                    1.0
                } else {
                    ratio(f.done.min(f.size), f.size)
                },
            })
            .collect()
    });
    let trackers = detail.map_or_else(Vec::new, |d| {
        d.trackers
            .iter()
            .map(|t| TorrentTracker {
                url: t.url.clone(),
                status: match t.status {
                    TrackerStatus::NotContacted => "not_contacted",
                    TrackerStatus::Announcing => "announcing",
                    TrackerStatus::Working => "working",
                    TrackerStatus::Error => "error",
                }
                .to_owned(),
                message: t.message.clone(),
                peers: t.peers,
                tier: t.tier,
                next_announce_secs: t.next_announce_secs,
                last_error: t.last_error.clone(),
                fails: t.fails,
                seeders: t.seeders,
                leechers: t.leechers,
            })
            .collect()
    });
    Ok(Json(TorrentDetailView {
        torrent: snapshot.torrent,
        files,
        trackers,
        piece_length: detail.map_or(0, |d| d.piece_length),
        private: detail.is_some_and(|d| d.private),
        download_limit_bps: detail.and_then(|d| d.download_limit),
        upload_limit_bps: detail.and_then(|d| d.upload_limit),
        fsops_job,
        stale: was_stale || state.torrents.is_stale(),
    }))
}

#[allow(clippy::cast_precision_loss, reason = "a progress fraction")]
fn ratio(done: u64, size: u64) -> f64 {
    done as f64 / size as f64
}

async fn fsops_status(state: &AppState, id: TorrentId) -> Option<FsopsStatus> {
    let store = Arc::clone(&state.store);
    let key = id.to_string();
    let row = tokio::task::spawn_blocking(move || store.fsops_job_latest(&key))
        .await
        .ok()?
        .map_err(|e| tracing::warn!(id = %id, error = %e, "cannot read the FsOps job"))
        .ok()??;
    Some(FsopsStatus {
        state: row.state,
        step: row.step,
        attempts: row.attempts,
        updated_at: row.updated_at,
        steps: row
            .steps
            .into_iter()
            .map(|(step, outcome)| revaer_api_models::torrents::FsopsStep { step, outcome })
            .collect(),
        library_path: row.library_path,
        error: row.error,
    })
}

#[utoipa::path(
    post,
    path = "/v1/torrents/{id}/select",
    tag = "torrents",
    operation_id = "select_files",
    summary = "Set file priorities by index or glob",
    description = "Rules apply in order over the current priorities; every index must exist and every glob must match at least one file, otherwise nothing changes.",
    params(("id" = String, Path, description = "Info-hash, 40 hex digits")),
    request_body(content = SelectRequest, example = json!({"rules": [{"glob": "*.nfo", "priority": 0}, {"index": 0, "priority": 7}]})),
    responses(
        (status = 204, description = "Applied"),
        (status = 400, description = "Invalid rules", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Read-only key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such torrent", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Metadata not there yet", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body larger than 64 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Engine unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
/// `POST /v1/torrents/{id}/select`.
pub async fn select(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    ValidJson(body): ValidJson<SelectRequest>,
) -> Result<StatusCode, SelectError> {
    let id = parse_id(&id)?;
    let mut errors = Vec::new();
    if body.rules.is_empty() {
        errors.push(param("/rules", "give at least one rule"));
    }
    validate_rules(&body.rules, "/rules", &mut errors);
    check(errors)?;
    let detail = engine_detail(&state, id).await?;
    if !detail.summary.has_metadata {
        return Err(SelectError::Conflict(
            "the torrent's metadata has not arrived yet; its files are unknown".to_owned(),
        ));
    }
    let priorities = apply_rules(&body.rules, &detail.files, detail.total_files, "/rules")?;
    engine_done(&state, EngineRequest::SelectFiles { id, priorities }).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    post,
    path = "/v1/torrents/{id}/action",
    tag = "torrents",
    operation_id = "torrent_action",
    summary = "Pause, resume, remove, reannounce, recheck, sequential, rate",
    params(("id" = String, Path, description = "Info-hash, 40 hex digits")),
    request_body(content = TorrentAction, example = json!({"action": "rate", "download_bps": 5_000_000, "upload_bps": null})),
    responses(
        (status = 204, description = "Done"),
        (status = 400, description = "Unknown action or bad value", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Read-only key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such torrent", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`fsops_retry`: the torrent has no failed FsOps job to retry", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body larger than 64 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Engine (or, for `fsops_retry`, the job store) unavailable; see `Retry-After`", body = Problem, content_type = "application/problem+json"),
    )
)]
/// `POST /v1/torrents/{id}/action`.
pub async fn action(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    ValidJson(action): ValidJson<TorrentAction>,
) -> Result<StatusCode, ActionError> {
    let id = parse_id(&id)?;
    let request = match action {
        TorrentAction::FsopsRetry => {
            if state.torrents.catalog(&id).is_none() {
                return Err(ActionError::NotFound(format!("no torrent {id}")));
            }
            return match state.fsops_jobs.retry(id).await {
                Ok(Some(_)) => Ok(StatusCode::NO_CONTENT),
                Ok(None) => Err(ActionError::Conflict(
                    "the torrent has no failed FsOps job to retry".to_owned(),
                )),
                Err(e) => {
                    tracing::error!(id = %id, error = %e, "cannot retry the FsOps job");
                    Err(ActionError::Unavailable(
                        "the job store is unavailable".to_owned(),
                    ))
                }
            };
        }
        TorrentAction::Pause => EngineRequest::Pause { id },
        TorrentAction::Resume => EngineRequest::Resume { id },
        TorrentAction::Remove => EngineRequest::Remove {
            id,
            delete_data: false,
        },
        TorrentAction::RemoveData => EngineRequest::Remove {
            id,
            delete_data: true,
        },
        TorrentAction::Reannounce => EngineRequest::Reannounce { id },
        TorrentAction::Recheck => EngineRequest::Recheck { id },
        TorrentAction::Sequential { enabled } => EngineRequest::SetSequential { id, enabled },
        TorrentAction::Rate {
            download_bps,
            upload_bps,
        } => {
            let max = u64::try_from(i32::MAX).unwrap_or(u64::MAX);
            let mut errors = Vec::new();
            for (name, value) in [("download_bps", download_bps), ("upload_bps", upload_bps)] {
                if value.is_some_and(|v| v > max) {
                    errors.push(param(format!("/{name}"), format!("at most {max}")));
                }
            }
            check(errors)?;
            EngineRequest::SetTorrentRate {
                id,
                download: download_bps,
                upload: upload_bps,
            }
        }
    };
    let removes = matches!(request, EngineRequest::Remove { .. });
    engine_done(&state, request).await?;
    // Read your writes: the listing reflects the action before we answer.
    if removes {
        state.torrents.removed(id).await;
    } else if let Ok(detail) = engine_detail(&state, id).await {
        state.torrents.observe(detail);
    }
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    patch,
    path = "/v1/torrents/{id}",
    tag = "torrents",
    operation_id = "patch_torrent",
    summary = "Replace tags and/or category",
    params(("id" = String, Path, description = "Info-hash, 40 hex digits")),
    request_body(content = TorrentPatch, example = json!({"tags": ["tv", "hd"], "category": "shows"})),
    responses(
        (status = 200, description = "Updated", body = Torrent),
        (status = 204, description = "Updated (the engine does not report the torrent right now)"),
        (status = 400, description = "Invalid labels", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Read-only key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such torrent", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body larger than 64 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The catalog cannot be written now; nothing was stored; see `Retry-After`", body = Problem, content_type = "application/problem+json"),
        (status = 507, description = "The state directory is full; nothing was stored", body = Problem, content_type = "application/problem+json"),
    )
)]
/// `PATCH /v1/torrents/{id}`: tags and category (works while the engine is
/// away: labels live in the API's catalog).
pub async fn patch(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    ValidJson(body): ValidJson<TorrentPatch>,
) -> Result<Response, PatchError> {
    let id = parse_id(&id)?;
    let mut errors = Vec::new();
    let tags = body
        .tags
        .as_ref()
        .map(|t| validate_tags(t, "/tags", &mut errors));
    if let Some(category) = body.category.as_deref().filter(|c| !c.is_empty()) {
        validate_category(category, "/category", &mut errors);
    }
    if body.tags.is_none() && body.category.is_none() {
        errors.push(param("", "give `tags`, `category` or both"));
    }
    check(errors)?;
    let current = state
        .torrents
        .catalog(&id)
        .ok_or_else(|| PatchError::NotFound(format!("no torrent {id}")))?;
    let tags = tags.unwrap_or(current.tags);
    let category = match body.category {
        Some(c) if c.is_empty() => None,
        Some(c) => Some(c),
        None => current.category,
    };
    let model = Arc::clone(&state.torrents);
    tokio::task::spawn_blocking(move || model.set_labels(id, tags, category))
        .await
        .map_err(|e| PatchError::Internal(e.to_string()))?
        .map_err(|e| store_write(&e, "the catalog cannot be written"))?;
    match state.torrents.get(&id) {
        Some(snapshot) => Ok(Json(snapshot.torrent).into_response()),
        None => Ok(StatusCode::NO_CONTENT.into_response()),
    }
}

/// Body-limit override for the add route (the router's default is small).
pub fn add_body_limit() -> axum::extract::DefaultBodyLimit {
    axum::extract::DefaultBodyLimit::max(MAX_ADD_BODY_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(query: &str) -> Vec<(String, String)> {
        query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (k.to_owned(), v.to_owned())
            })
            .collect()
    }

    fn pointers(result: Result<ListQuery, InvalidRequest>) -> Vec<String> {
        match result {
            Err(InvalidRequest::Invalid(params)) => params.into_iter().map(|p| p.pointer).collect(),
            other => panic!("expected invalid params, got {other:?}"),
        }
    }

    #[test]
    fn list_query_defaults_and_filters() {
        let q = parse_list_query(&[]).unwrap();
        assert_eq!(q.limit, 50);
        assert!(q.cursor.is_none());
        let q = parse_list_query(&pairs(
            "limit=500&state=paused,seeding&state=paused&tags=a,b&tag=c&extension=.MKV&name=Foo&tracker=Tracker.Example.",
        ))
        .unwrap();
        assert_eq!(q.limit, 500);
        assert_eq!(
            q.filter.states,
            vec![PublicState::Paused, PublicState::Seeding]
        );
        assert_eq!(q.filter.tags, vec!["a", "b", "c"]);
        assert_eq!(q.filter.extensions, vec!["mkv"]);
        assert_eq!(q.filter.name.as_deref(), Some("foo"));
        assert_eq!(q.filter.tracker.as_deref(), Some("tracker.example"));
    }

    #[test]
    fn bad_list_queries_name_each_parameter() {
        assert_eq!(
            pointers(parse_list_query(&pairs("limit=0"))),
            ["/query/limit"]
        );
        assert_eq!(
            pointers(parse_list_query(&pairs("limit=501"))),
            ["/query/limit"]
        );
        assert_eq!(
            pointers(parse_list_query(&pairs("limit=x"))),
            ["/query/limit"]
        );
        assert_eq!(
            pointers(parse_list_query(&pairs("limit=5&limit=6"))),
            ["/query/limit"]
        );
        assert!(parse_list_query(&pairs("limit=5&limit=5")).is_ok());
        assert_eq!(
            pointers(parse_list_query(&pairs("state=sleeping&colour=red"))),
            ["/query/state", "/query/colour"]
        );
        assert_eq!(
            pointers(parse_list_query(&pairs("cursor=zz"))),
            ["/query/cursor"]
        );
        assert_eq!(pointers(parse_list_query(&pairs("name="))), ["/query/name"]);
        assert_eq!(
            pointers(parse_list_query(&pairs("tags=a,,b"))),
            ["/query/tags"]
        );
        assert_eq!(
            pointers(parse_list_query(&pairs("extension=m/v"))),
            ["/query/extension"]
        );
        assert_eq!(
            pointers(parse_list_query(&pairs("name=a&name=b"))),
            ["/query/name"]
        );
    }

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let key = (-5_i64, TorrentId([7; 20]));
        let text = encode_cursor(key);
        assert_eq!(decode_cursor(&text), Some(key));
        assert_eq!(decode_cursor(&text[1..]), None);
        assert_eq!(decode_cursor(&"g".repeat(56)), None);
        assert_eq!(decode_cursor(""), None);
    }

    fn file(index: u32, path: &str, priority: u8) -> FileDetail {
        FileDetail {
            index,
            path: path.to_owned(),
            size: 10,
            priority,
            done: 0,
        }
    }

    fn rule(index: Option<u32>, glob: Option<&str>, priority: u8) -> FileRule {
        FileRule {
            index,
            glob: glob.map(str::to_owned),
            priority,
        }
    }

    #[test]
    fn rules_apply_in_order_over_current_priorities() {
        // Index 1 is a padding file: not listed, priority 0.
        let files = [
            file(0, "d/a.mkv", 4),
            file(2, "d/b.nfo", 4),
            file(3, "d/c.mkv", 1),
        ];
        let out = apply_rules(
            &[rule(None, Some("*.mkv"), 7), rule(Some(3), None, 0)],
            &files,
            4,
            "/rules",
        )
        .unwrap();
        assert_eq!(out, vec![7, 0, 4, 0]);
        let err = apply_rules(
            &[rule(Some(1), None, 1), rule(None, Some("*.iso"), 1)],
            &files,
            4,
            "/rules",
        );
        match err {
            Err(InvalidRequest::Invalid(p)) => {
                let pointers: Vec<_> = p.iter().map(|p| p.pointer.as_str()).collect();
                assert_eq!(pointers, ["/rules/0/index", "/rules/1/glob"]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rule_syntax_and_labels_are_checked() {
        let mut errors = Vec::new();
        validate_rules(
            &[
                rule(Some(1), Some("*"), 1),
                rule(None, None, 1),
                rule(None, Some("a[b"), 1),
                rule(Some(0), None, 8),
            ],
            "/files",
            &mut errors,
        );
        let pointers: Vec<_> = errors.iter().map(|p| p.pointer.as_str()).collect();
        assert_eq!(
            pointers,
            ["/files/0", "/files/1", "/files/2/glob", "/files/3/priority"]
        );
        let mut errors = Vec::new();
        let tags = validate_tags(
            &[
                "a".into(),
                "a".into(),
                " b".into(),
                "x,y".into(),
                String::new(),
            ],
            "/tags",
            &mut errors,
        );
        assert_eq!(tags, vec!["a"]);
        assert_eq!(errors.len(), 3);
        let mut errors = Vec::new();
        for bad in ["/abs", "../up", "a/../../b", ""] {
            validate_save_path(bad, "/save_path", &mut errors);
        }
        validate_save_path("tv/show", "/save_path", &mut errors);
        assert_eq!(errors.len(), 4);
    }

    #[test]
    fn next_link_keeps_filters_and_replaces_the_cursor() {
        let link = next_link(&pairs("state=paused&cursor=old&name=a b"), "NEW");
        assert_eq!(
            link,
            "</v1/torrents?state=paused&name=a%20b&cursor=NEW>; rel=\"next\""
        );
    }
}
