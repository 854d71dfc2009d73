//! `GET /v1/events`: Server-Sent Events over the durable event log.
//!
//! Each message is `id:` (the durable event id), `event:` (the event type)
//! and `data:` (the [`StoredEvent`](revaer_api_models::events::StoredEvent)
//! JSON). The stream opens with a `retry: 1000` hint and carries a comment
//! every [`KEEP_ALIVE`] while idle.
//!
//! **Resuming.** `Last-Event-ID` (the header wins over `?last_event_id=`,
//! because a browser's `EventSource` keeps the URL of its first connection
//! and sends the header on reconnect) replays every event after that id
//! from SQLite, a page at a time, then continues live. The live
//! subscription is taken *before* the replay and live events with an id at
//! or below the last one examined are skipped, so no id is sent twice or
//! lost at the seam. When events after the asked id were pruned, or the id
//! was never issued by this log, an `event: reset` (no `id:`, `data:` the
//! oldest retained id) comes first and the replay starts at the oldest
//! event. Without an id the stream is live only.
//!
//! **Filters.** `torrent` (comma-separated 40-hex ids), `kind`
//! (comma-separated event types) and `state` (restricts `state_changed`
//! events to these new states); see [`EventFilter`]. A bad filter, unknown
//! parameter or unparsable id is a `400` problem with `invalid_params`.
//!
//! **Slow consumers.** A stream that falls behind the live broadcast by
//! more than its capacity is ended (the client resumes with
//! `Last-Event-ID`) and counted in [`EventLog::sse_dropped_total`]; a
//! stream that fell behind while replaying is first given a few more
//! replay rounds from the log instead.

use std::collections::{HashSet, VecDeque};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use revaer_api_models::events::{EventKind, RESET_EVENT, StoredEvent};
use revaer_api_models::torrents::TorrentState;
use revaer_api_models::{InvalidParam, Problem};
use tokio::sync::broadcast;

use crate::AppState;
use crate::event_log::{EventFilter, EventLog, LoggedEvent, REPLAY_PAGE, SubscriberGuard};
use crate::problem::{InvalidRequest, invalid};

/// Idle streams carry a comment this often.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// The reconnection delay suggested to clients.
pub const RETRY: Duration = Duration::from_secs(1);
/// Most torrent ids one `torrent` filter may name.
pub const MAX_TORRENT_FILTER: usize = 256;
/// Replay rounds a stream that lagged while catching up gets before it
/// counts as a slow consumer.
const CATCH_UP_ROUNDS: u32 = 3;

/// What a client asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventsRequest {
    /// Replay everything after this id; `None` = live only.
    pub last_event_id: Option<u64>,
    pub filter: EventFilter,
}

/// `GET /v1/events`.
#[utoipa::path(
    get,
    path = "/v1/events",
    tag = "events",
    operation_id = "events",
    summary = "Stream events (Server-Sent Events), resumable from the durable log",
    description = "Each message is `id:` (the durable event id), `event:` (the event type) and `data:` (a `StoredEvent` JSON document). The stream opens with `retry: 1000` and carries a `: keep-alive` comment every 15 s while idle. Resume with `Last-Event-ID` (or `?last_event_id=`; the header wins): every event after that id is replayed from the log, then the stream continues live, never sending an id twice. When events after the asked id were pruned (retention), or the id is unknown to this log, an `event: reset` message without `id:` comes first, its `data:` the oldest retained id, and the replay starts there. Without an id the stream is live only. A client that falls too far behind is disconnected and should resume with `Last-Event-ID`.",
    params(
        ("Last-Event-ID" = Option<u64>, Header, description = "Replay the events after this id, then continue live"),
        ("last_event_id" = Option<u64>, Query, description = "As the `Last-Event-ID` header, for clients that cannot set headers"),
        ("torrent" = Option<String>, Query, description = "Comma-separated torrent ids (40 hex digits): only events of these torrents"),
        ("kind" = Option<String>, Query, description = "Comma-separated event types (`torrent_added`, `state_changed`, `progress`, ...): only these"),
        ("state" = Option<String>, Query, description = "Comma-separated torrent states: `state_changed` events only to these states (other types are not affected)"),
    ),
    responses(
        (status = 200, description = "The event stream; every `data:` is a `StoredEvent`", body = StoredEvent, content_type = "text/event-stream",
            example = json!("retry: 1000\n\nid: 42\nevent: state_changed\ndata: {\"id\":42,\"at\":1700000000,\"event\":{\"type\":\"state_changed\",\"torrent\":\"0123456789abcdef0123456789abcdef01234567\",\"state\":\"seeding\"}}\n\n: keep-alive\n\n")),
        (status = 400, description = "Invalid filter or event id, located by `invalid_params`", body = Problem, content_type = "application/problem+json",
            example = json!({"type": "about:blank", "title": "Bad Request", "status": 400, "detail": "the event stream request is invalid; see invalid_params", "invalid_params": [{"pointer": "/query/kind", "message": "`nope` is not an event type; expected one of torrent_added, ..."}]})),
        (status = 401, description = "Missing or invalid key", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn events(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, InvalidRequest> {
    respond(&state.events, &headers, query)
}

/// `GET /v1/events` served from a bare [`EventLog`] (a router whose state
/// is only the log; tests).
#[allow(clippy::unused_async, reason = "an axum handler")]
pub async fn log_events(
    State(log): State<Arc<EventLog>>,
    headers: HeaderMap,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, InvalidRequest> {
    respond(&log, &headers, query)
}

fn respond(
    log: &Arc<EventLog>,
    headers: &HeaderMap,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, InvalidRequest> {
    let Query(pairs) = query.map_err(|e| invalid::<InvalidRequest>("/query", e.body_text()))?;
    let request = parse_request(headers, &pairs).map_err(InvalidRequest::Invalid)?;
    let stream = event_stream(log, request);
    let mut response = Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text("keep-alive"))
        .into_response();
    // Reverse proxies must not buffer the stream.
    response
        .headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

/// A `400` problem naming every invalid input (the API's one shape for
/// validation failures).
#[must_use]
pub fn invalid_request(invalid_params: Vec<InvalidParam>) -> Response {
    InvalidRequest::Invalid(invalid_params).into_response()
}

/// Parses the `Last-Event-ID` header and the query pairs. Repeated list
/// parameters add up; items are trimmed; every problem is reported.
pub fn parse_request(
    headers: &HeaderMap,
    query: &[(String, String)],
) -> Result<EventsRequest, Vec<InvalidParam>> {
    let mut invalid = Vec::new();
    let mut request = EventsRequest::default();
    let mut query_id = None;
    let mut torrents: Option<HashSet<String>> = None;
    let mut kinds: Option<Vec<EventKind>> = None;
    let mut states: Option<Vec<TorrentState>> = None;
    for (name, value) in query {
        let pointer = format!("/query/{name}");
        match name.as_str() {
            "last_event_id" => match parse_id(value) {
                Ok(id) => query_id = id,
                Err(message) => invalid.push(param(&pointer, message)),
            },
            "torrent" => {
                let set = torrents.get_or_insert_with(HashSet::new);
                for item in items(value, &pointer, &mut invalid) {
                    if is_torrent_id(item) {
                        set.insert(item.to_ascii_lowercase());
                    } else {
                        invalid.push(param(
                            &pointer,
                            format!("`{item}` is not a torrent id (40 hexadecimal digits)"),
                        ));
                    }
                }
                if set.len() > MAX_TORRENT_FILTER {
                    invalid.push(param(
                        &pointer,
                        format!("at most {MAX_TORRENT_FILTER} torrent ids"),
                    ));
                }
            }
            "kind" => {
                let list = kinds.get_or_insert_with(Vec::new);
                for item in items(value, &pointer, &mut invalid) {
                    match EventKind::parse(item) {
                        Some(kind) if !list.contains(&kind) => list.push(kind),
                        Some(_) => {}
                        None => invalid.push(param(
                            &pointer,
                            format!("`{item}` is not an event type; expected one of {}", {
                                let names: Vec<_> =
                                    EventKind::ALL.iter().map(|k| k.as_str()).collect();
                                names.join(", ")
                            }),
                        )),
                    }
                }
            }
            "state" => {
                let list = states.get_or_insert_with(Vec::new);
                for item in items(value, &pointer, &mut invalid) {
                    match TorrentState::parse(item) {
                        Some(state) if !list.contains(&state) => list.push(state),
                        Some(_) => {}
                        None => invalid.push(param(
                            &pointer,
                            format!("`{item}` is not a torrent state; expected one of {}", {
                                let names: Vec<_> =
                                    TorrentState::ALL.iter().map(|s| s.as_str()).collect();
                                names.join(", ")
                            }),
                        )),
                    }
                }
            }
            _ => invalid.push(param(
                &pointer,
                "unknown parameter; expected torrent, kind, state or last_event_id".to_owned(),
            )),
        }
    }
    let header_id = match headers.get("last-event-id").map(HeaderValue::to_str) {
        None => None,
        Some(Ok(text)) => match parse_id(text) {
            Ok(id) => id,
            Err(message) => {
                invalid.push(param("/header/last-event-id", message));
                None
            }
        },
        Some(Err(_)) => {
            invalid.push(param(
                "/header/last-event-id",
                "must be a decimal event id".to_owned(),
            ));
            None
        }
    };
    if !invalid.is_empty() {
        return Err(invalid);
    }
    request.last_event_id = header_id.or(query_id);
    request.filter = EventFilter {
        torrents,
        kinds,
        states,
    };
    Ok(request)
}

fn param(pointer: &str, message: String) -> InvalidParam {
    InvalidParam {
        pointer: pointer.to_owned(),
        message,
    }
}

/// An event id; empty means none (what a client that saw no event sends).
fn parse_id(text: &str) -> Result<Option<u64>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("`{text}` is not an event id (a decimal number)"));
    }
    text.parse()
        .map(Some)
        .map_err(|_| format!("`{text}` is out of range for an event id"))
}

/// The non-empty, trimmed items of a comma-separated list; empty items are
/// reported.
fn items<'a>(value: &'a str, pointer: &str, invalid: &mut Vec<InvalidParam>) -> Vec<&'a str> {
    let mut out = Vec::new();
    for item in value.split(',').map(str::trim) {
        if item.is_empty() {
            invalid.push(param(pointer, "empty list item".to_owned()));
        } else {
            out.push(item);
        }
    }
    out
}

fn is_torrent_id(text: &str) -> bool {
    text.len() == 40 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The SSE messages for `request`: the retry hint, then the replay (if an
/// id was given), then live events, until the client goes away or lags.
/// Subscribes to the live broadcast before returning.
pub fn event_stream(
    log: &Arc<EventLog>,
    request: EventsRequest,
) -> impl Stream<Item = Result<SseEvent, Infallible>> + Send + 'static {
    let reader = Reader::new(log, request);
    futures_util::stream::unfold(reader, |mut reader| async move {
        let event = reader.next().await?;
        Some((Ok(event), reader))
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Replay { first: bool },
    Live,
    Done,
}

/// State of one stream.
#[derive(Debug)]
struct Reader {
    log: Arc<EventLog>,
    filter: Arc<EventFilter>,
    live: broadcast::Receiver<Arc<LoggedEvent>>,
    phase: Phase,
    /// Highest id examined (sent or filtered out).
    cursor: u64,
    /// No live event has been taken since the last replay ended.
    after_replay: bool,
    catch_up_rounds: u32,
    out: VecDeque<SseEvent>,
    _subscriber: SubscriberGuard,
}

impl Reader {
    fn new(log: &Arc<EventLog>, request: EventsRequest) -> Self {
        // Subscribe first: whatever commits from now on is either in the
        // replay or in this receiver.
        let live = log.subscribe();
        let mut out = VecDeque::new();
        out.push_back(SseEvent::default().retry(RETRY));
        Self {
            log: Arc::clone(log),
            filter: Arc::new(request.filter),
            live,
            phase: match request.last_event_id {
                Some(_) => Phase::Replay { first: true },
                None => Phase::Live,
            },
            cursor: request.last_event_id.unwrap_or(0),
            after_replay: false,
            catch_up_rounds: CATCH_UP_ROUNDS,
            out,
            _subscriber: log.sse_subscriber(),
        }
    }

    async fn next(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(event) = self.out.pop_front() {
                return Some(event);
            }
            match self.phase {
                Phase::Replay { first } => self.replay(first).await,
                Phase::Live => self.live().await,
                Phase::Done => return None,
            }
        }
    }

    async fn replay(&mut self, first: bool) {
        let page = match self
            .log
            .replay_page(self.cursor, Arc::clone(&self.filter), REPLAY_PAGE)
            .await
        {
            Ok(page) => page,
            Err(e) => {
                tracing::warn!(error = %e, "event replay failed; ending the stream");
                self.phase = Phase::Done;
                return;
            }
        };
        self.phase = Phase::Replay { first: false };
        let head = page.head.unwrap_or(0);
        if first && self.cursor > head {
            // Not an id of this log (another database?): start over.
            self.out
                .push_back(reset(page.oldest.unwrap_or(head.saturating_add(1))));
            self.cursor = page.oldest.map_or(head, |oldest| oldest.saturating_sub(1));
            return;
        }
        if let Some(oldest) = page.oldest
            && oldest > self.cursor.saturating_add(1)
        {
            // Events after the cursor were pruned.
            self.out.push_back(reset(oldest));
            self.cursor = oldest - 1;
        }
        for event in &page.events {
            self.out.push_back(render(event));
        }
        if let Some(scanned_to) = page.scanned_to {
            self.cursor = self.cursor.max(scanned_to);
        }
        if page.exhausted {
            self.phase = Phase::Live;
            self.after_replay = true;
        }
    }

    async fn live(&mut self) {
        match self.live.recv().await {
            Ok(event) => {
                if event.id <= self.cursor {
                    return;
                }
                self.cursor = event.id;
                self.after_replay = false;
                if self.filter.matches(&event.event) {
                    self.out.push_back(render(&event));
                }
            }
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                if self.after_replay && self.catch_up_rounds > 0 {
                    // Fell behind while replaying: the log still has it all.
                    self.catch_up_rounds -= 1;
                    self.live = self.live.resubscribe();
                    self.phase = Phase::Replay { first: false };
                } else {
                    self.log.record_sse_dropped();
                    tracing::info!(
                        missed,
                        last_id = self.cursor,
                        "SSE client too slow; ending its stream"
                    );
                    self.phase = Phase::Done;
                }
            }
            Err(broadcast::error::RecvError::Closed) => self.phase = Phase::Done,
        }
    }
}

fn render(event: &LoggedEvent) -> SseEvent {
    SseEvent::default()
        .id(event.id.to_string())
        .event(event.event.kind().as_str())
        .data(event.data())
}

fn reset(oldest: u64) -> SseEvent {
    SseEvent::default()
        .event(RESET_EVENT)
        .data(oldest.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{StatusCode, header};
    use revaer_api_models::PROBLEM_CONTENT_TYPE;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn header(id: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("last-event-id", HeaderValue::from_str(id).unwrap());
        h
    }

    fn pointers(e: &[InvalidParam]) -> Vec<&str> {
        e.iter().map(|p| p.pointer.as_str()).collect()
    }

    const A: &str = "0123456789abcdef0123456789abcdef01234567";

    #[test]
    fn no_parameters_means_live_and_unfiltered() {
        let r = parse_request(&HeaderMap::new(), &[]).unwrap();
        assert_eq!(r, EventsRequest::default());
    }

    #[test]
    fn filters_parse_trim_merge_and_normalise() {
        let upper = A.to_ascii_uppercase();
        let r = parse_request(
            &HeaderMap::new(),
            &pairs(&[
                ("torrent", &format!("{upper}, {A}")),
                ("kind", "state_changed,progress"),
                ("kind", "progress ,completed"),
                ("state", "seeding,paused"),
                ("last_event_id", "17"),
            ]),
        )
        .unwrap();
        assert_eq!(r.last_event_id, Some(17));
        assert_eq!(r.filter.torrents, Some(HashSet::from([A.to_owned()])));
        assert_eq!(
            r.filter.kinds,
            Some(vec![
                EventKind::StateChanged,
                EventKind::Progress,
                EventKind::Completed
            ])
        );
        assert_eq!(
            r.filter.states,
            Some(vec![TorrentState::Seeding, TorrentState::Paused])
        );
    }

    #[test]
    fn the_header_wins_over_the_query_and_empty_means_none() {
        let q = pairs(&[("last_event_id", "5")]);
        assert_eq!(
            parse_request(&header("9"), &q).unwrap().last_event_id,
            Some(9)
        );
        assert_eq!(
            parse_request(&header(""), &q).unwrap().last_event_id,
            Some(5)
        );
        assert_eq!(
            parse_request(&header(" 0 "), &[]).unwrap().last_event_id,
            Some(0)
        );
        assert_eq!(
            parse_request(&HeaderMap::new(), &pairs(&[("last_event_id", "")]))
                .unwrap()
                .last_event_id,
            None
        );
    }

    #[test]
    fn bad_ids_are_rejected_with_pointers() {
        for bad in ["-1", "1.5", "abc", "18446744073709551616", "+3"] {
            let e = parse_request(&header(bad), &[]).unwrap_err();
            assert_eq!(pointers(&e), vec!["/header/last-event-id"], "{bad}");
            let e =
                parse_request(&HeaderMap::new(), &pairs(&[("last_event_id", bad)])).unwrap_err();
            assert_eq!(pointers(&e), vec!["/query/last_event_id"], "{bad}");
        }
        let mut h = HeaderMap::new();
        h.insert(
            "last-event-id",
            HeaderValue::from_bytes(b"\xff\xfe").unwrap(),
        );
        assert_eq!(
            pointers(&parse_request(&h, &[]).unwrap_err()),
            vec!["/header/last-event-id"]
        );
    }

    #[test]
    fn every_bad_filter_is_reported() {
        let e = parse_request(
            &header("x"),
            &pairs(&[
                ("torrent", &format!("{A},{}", &A[..39])),
                ("kind", "progress,reset"),
                ("state", "running"),
                ("since", "1"),
                ("torrent", ""),
                ("kind", "completed,,progress"),
            ]),
        )
        .unwrap_err();
        assert_eq!(
            pointers(&e),
            vec![
                "/query/torrent",
                "/query/kind",
                "/query/state",
                "/query/since",
                "/query/torrent",
                "/query/kind",
                "/header/last-event-id",
            ]
        );
        assert!(e[1].message.contains("`reset`"));
        assert!(e[1].message.contains("torrent_added"));
        assert!(e[2].message.contains("seeding"));
        assert!(e[4].message.contains("empty"));
        let g = "g".repeat(40);
        let e = parse_request(&HeaderMap::new(), &pairs(&[("torrent", &g)])).unwrap_err();
        assert!(e[0].message.contains("40 hexadecimal"));
    }

    #[test]
    fn too_many_torrents_are_refused() {
        let ids: Vec<String> = (0..=MAX_TORRENT_FILTER)
            .map(|n| format!("{n:040x}"))
            .collect();
        let e =
            parse_request(&HeaderMap::new(), &pairs(&[("torrent", &ids.join(","))])).unwrap_err();
        assert_eq!(pointers(&e), vec!["/query/torrent"]);
        assert!(e[0].message.contains("at most"));
    }

    #[test]
    fn the_route_is_documented_with_its_parameters_and_event_schema() {
        use utoipa::OpenApi;

        #[derive(OpenApi)]
        #[openapi(paths(events))]
        struct Doc;

        let doc = serde_json::to_value(Doc::openapi()).unwrap();
        let op = &doc["paths"]["/v1/events"]["get"];
        let names: Vec<&str> = op["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            vec!["Last-Event-ID", "last_event_id", "torrent", "kind", "state"]
        );
        assert!(op["responses"]["200"]["content"]["text/event-stream"].is_object());
        assert!(op["responses"]["400"]["content"][PROBLEM_CONTENT_TYPE].is_object());
        let schemas = &doc["components"]["schemas"];
        assert!(schemas["StoredEvent"].is_object(), "{schemas}");
        let variants = schemas["Event"]["oneOf"].as_array().unwrap();
        assert_eq!(variants.len(), EventKind::ALL.len());
        for (variant, kind) in variants.iter().zip(EventKind::ALL) {
            assert_eq!(
                variant["properties"]["type"]["enum"][0],
                kind.as_str(),
                "{variant}"
            );
        }
    }

    #[tokio::test]
    async fn an_invalid_request_is_a_problem_document() {
        let response = invalid_request(vec![param("/query/kind", "nope".to_owned())]);
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            PROBLEM_CONTENT_TYPE
        );
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        let problem: Problem = serde_json::from_slice(&body).unwrap();
        assert_eq!(problem.status, 400);
        assert_eq!(problem.invalid_params[0].pointer, "/query/kind");
    }
}
