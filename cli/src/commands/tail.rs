//! `revaer tail`: the event stream, resumable across runs.
//!
//! The id of the last printed event is kept in a state file and sent as
//! `Last-Event-ID` on every (re)connect, so nothing is missed between runs
//! and nothing is printed twice: ids only grow, and any id at or below the
//! last printed one is dropped. `event: reset` (the asked id is older than
//! the log's retention, or unknown to it) is reported on stderr and the
//! replay from the oldest retained id is printed. Reconnects honour the
//! server's `retry:` and `Retry-After`, back off exponentially with jitter
//! while failing, and give up after `--max-retries` consecutive failures or
//! `--max-retry-time` of outage.

use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::Method;
use revaer_api_models::events::{Event, RESET_EVENT, StoredEvent};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use super::Ctx;
use crate::cli::TailArgs;
use crate::client::{Body, display_url};
use crate::error::CliError;
use crate::output::{Format, Out};
use crate::retry::{Budget, retry_after, retryable};
use crate::sse::{Item, Parser};
use crate::units::{format_progress, format_rate, format_time};

/// Reconnection delay until the server sends `retry:`.
const DEFAULT_RETRY: Duration = Duration::from_secs(1);

/// The state file's content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TailState {
    /// The API the id belongs to (ids of another daemon mean nothing).
    pub api_url: String,
    pub last_event_id: u64,
}

/// The default state file: `$XDG_STATE_HOME/revaer/tail-<hash>.json`
/// (`~/.local/state` without `XDG_STATE_HOME`), one per API URL and filter
/// set, so that differently filtered tails do not move each other's
/// position.
#[must_use]
pub fn default_state_path(
    xdg_state_home: Option<&str>,
    home: Option<&str>,
    api_url: &str,
    query: &[(&str, String)],
) -> Option<PathBuf> {
    let dir = match (xdg_state_home.filter(|d| d.starts_with('/')), home) {
        (Some(state), _) => PathBuf::from(state),
        (None, Some(home)) if !home.is_empty() => Path::new(home).join(".local/state"),
        _ => return None,
    };
    let mut hasher = sha2::Sha256::new();
    hasher.update(api_url.as_bytes());
    for (k, v) in query {
        hasher.update(format!("\n{k}={v}").as_bytes());
    }
    let digest = hasher.finalize();
    Some(
        dir.join("revaer")
            .join(format!("tail-{}.json", hex::encode(&digest[..8]))),
    )
}

/// Reads the state file; a missing file is no state, a state of another
/// API is ignored.
pub fn read_state(path: &Path, api_url: &str) -> Result<Option<u64>, CliError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(CliError::Io(format!(
                "reading the state file {}: {e}",
                path.display()
            )));
        }
    };
    let state: TailState = serde_json::from_str(&text).map_err(|e| {
        CliError::Io(format!(
            "the state file {} is damaged ({e}); remove it or pass --since",
            path.display()
        ))
    })?;
    Ok((state.api_url == api_url).then_some(state.last_event_id))
}

/// Writes the state file atomically (temp file + rename), creating its
/// directory (mode 0700) when needed.
pub fn write_state(path: &Path, state: &TailState) -> Result<(), CliError> {
    let io =
        |e: std::io::Error| CliError::Io(format!("writing the state file {}: {e}", path.display()));
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        use std::os::unix::fs::DirBuilderExt as _;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io)?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let text = serde_json::to_string(state).map_err(|e| CliError::Io(e.to_string()))?;
    std::fs::write(&tmp, format!("{text}\n")).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

/// One event as a line for people.
#[must_use]
pub fn event_line(e: &StoredEvent) -> String {
    let detail = match &e.event {
        Event::TorrentAdded { name, state, .. } => format!("{name} ({})", state.as_str()),
        Event::MetadataReceived { name, .. } => name.clone(),
        Event::StateChanged { state, .. } => state.as_str().to_owned(),
        Event::Progress {
            progress,
            download_bps,
            upload_bps,
            peers,
            ..
        } => format!(
            "{} down {} up {} peers {peers}",
            format_progress(*progress),
            format_rate(*download_bps),
            format_rate(*upload_bps)
        ),
        Event::FilesSelected { priorities, .. } => format!(
            "{} of {} files wanted",
            priorities.iter().filter(|p| **p > 0).count(),
            priorities.len()
        ),
        Event::TorrentError {
            source,
            message,
            url,
            ..
        } => format!(
            "{}: {message}{}",
            serde_json::to_value(source)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            url.as_deref().map_or(String::new(), |u| format!(" ({u})"))
        ),
        Event::FsopsStep { step, outcome, .. } => format!("{step} {outcome}"),
        Event::FsopsFailed { step, message, .. } => match step {
            Some(s) => format!("{s}: {message}"),
            None => message.clone(),
        },
        Event::HealthChanged { degraded, .. } if degraded.is_empty() => "ok".to_owned(),
        Event::HealthChanged { degraded, .. } => format!("degraded: {}", degraded.join(", ")),
        Event::ConfigApplied { revision } => format!("revision {revision}"),
        Event::KeyIssued {
            key_id,
            name,
            rotated,
            by,
            ..
        } => format!(
            "key {key_id} \"{name}\"{} by {by}",
            if *rotated { " rotated" } else { "" }
        ),
        Event::KeyRevoked { key_id, by } => format!("key {key_id} by {by}"),
        Event::RateLimited { key_id } => format!("key {key_id}"),
        Event::Completed { .. }
        | Event::TorrentRemoved { .. }
        | Event::FsopsStarted { .. }
        | Event::FsopsCompleted { .. } => String::new(),
    };
    let mut line = format!(
        "#{}  {}  {:<17}",
        e.id,
        format_time(e.at),
        e.event.kind().as_str()
    );
    if let Some(t) = e.event.torrent() {
        line.push_str("  ");
        line.push_str(short(t));
    }
    if !detail.is_empty() {
        line.push_str("  ");
        line.push_str(&detail);
    }
    line.trim_end().to_owned()
}

/// The filters as the `/v1/events` query, in a fixed order.
#[must_use]
pub fn events_query(args: &TailArgs) -> Vec<(&'static str, String)> {
    let mut query = Vec::new();
    if !args.torrent.is_empty() {
        let ids: Vec<&str> = args.torrent.iter().map(|t| t.0.as_str()).collect();
        query.push(("torrent", ids.join(",")));
    }
    if !args.kind.is_empty() {
        let kinds: Vec<&str> = args.kind.iter().map(|k| k.as_str()).collect();
        query.push(("kind", kinds.join(",")));
    }
    if !args.state.is_empty() {
        let states: Vec<&str> = args.state.iter().map(|s| s.as_str()).collect();
        query.push(("state", states.join(",")));
    }
    query
}

/// Where printing stands.
#[derive(Debug)]
struct Position {
    /// Last printed id: sent as `Last-Event-ID`.
    last: Option<u64>,
    /// Ids at or below this are duplicates.
    floor: Option<u64>,
    printed: u64,
    state: Option<PathBuf>,
    api_url: String,
}

/// What reading one connection ended with.
enum StreamEnd {
    /// `--count` reached or Ctrl-C: stop.
    Done,
    /// The stream ended or broke; `alive` = it delivered something.
    Lost { alive: bool, why: String },
}

fn print_event(out: &Out, data: &str) -> Result<(), CliError> {
    match serde_json::from_str::<StoredEvent>(data) {
        Ok(event) if out.format == Format::Json => out.json_line(&event),
        Ok(event) => {
            let line = event_line(&event);
            let line = match out.io.width {
                Some(w) => console::truncate_str(&line, w, "…").into_owned(),
                None => line,
            };
            out.text(&format!("{line}\n"))
        }
        // An event type newer than this CLI: pass it through.
        Err(_) => match serde_json::from_str::<serde_json::Value>(data) {
            Ok(value) if out.format == Format::Json => out.json_line(&value),
            Ok(value) => out.text(&format!(
                "#{}  {}  (unknown to this revaer)\n",
                value["id"],
                value["event"]["type"].as_str().unwrap_or("?")
            )),
            Err(e) => out.note(&format!("revaer: skipping an unreadable event: {e}")),
        },
    }
}

impl Position {
    /// Handles one parsed item; `true` when `--count` is reached.
    fn handle(
        &mut self,
        item: Item,
        out: &Out,
        count: Option<u64>,
        retry: &mut Duration,
        max_backoff: Duration,
    ) -> Result<bool, CliError> {
        match item {
            Item::Retry(ms) => *retry = Duration::from_millis(ms).min(max_backoff),
            Item::Comment => {}
            Item::Message { event, data, .. } if event == RESET_EVENT => {
                let oldest: u64 = data.trim().parse().unwrap_or(0);
                out.note(&format!(
                    "revaer: reset: the daemon no longer has the events after #{}; replaying from #{oldest}",
                    self.last.map_or_else(|| "?".to_owned(), |l| l.to_string())
                ))?;
                self.floor = oldest.checked_sub(1);
            }
            Item::Message { id, data, .. } => {
                let Some(id) = id.and_then(|i| i.trim().parse::<u64>().ok()) else {
                    return Ok(false);
                };
                if self.floor.is_some_and(|f| id <= f) {
                    return Ok(false);
                }
                print_event(out, &data)?;
                self.floor = Some(id);
                self.last = Some(id);
                self.printed += 1;
                if let Some(path) = &self.state {
                    write_state(
                        path,
                        &TailState {
                            api_url: self.api_url.clone(),
                            last_event_id: id,
                        },
                    )?;
                }
                return Ok(count.is_some_and(|c| self.printed >= c));
            }
        }
        Ok(false)
    }
}

/// `revaer tail`.
pub async fn tail(ctx: &Ctx, args: &TailArgs) -> Result<(), CliError> {
    let query = events_query(args);
    let api_url = ctx.api.shown_base();
    let state = if args.no_state {
        None
    } else if let Some(p) = &args.state_file {
        Some(p.clone())
    } else {
        let xdg = std::env::var("XDG_STATE_HOME").ok();
        let home = std::env::var("HOME").ok();
        let p = default_state_path(xdg.as_deref(), home.as_deref(), &api_url, &query);
        if p.is_none() {
            ctx.out
                .note("revaer: no XDG_STATE_HOME or HOME: the position is not kept")?;
        }
        p
    };
    let stored = match &state {
        Some(p) => read_state(p, &api_url)?,
        None => None,
    };
    let start = args.since.or(stored);
    let mut pos = Position {
        last: start,
        floor: start,
        printed: 0,
        state,
        api_url,
    };
    let mut budget = Budget::new(&args.retry);
    let mut retry = DEFAULT_RETRY;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        let headers: Vec<(&str, String)> = pos
            .last
            .map(|id| ("last-event-id", id.to_string()))
            .into_iter()
            .collect();
        let connect = ctx.api.send(
            Method::GET,
            "/v1/events",
            &query,
            Body::None,
            &headers,
            true,
        );
        let connected = tokio::select! {
            _ = &mut ctrl_c => return Ok(()),
            r = connect => r,
        };
        let (alive, why, hint, last_error) = match connected {
            Ok(response) => {
                match read_stream(
                    ctx,
                    args,
                    response,
                    &mut pos,
                    &mut retry,
                    &budget,
                    &mut ctrl_c,
                )
                .await?
                {
                    StreamEnd::Done => return Ok(()),
                    StreamEnd::Lost { alive, why } => (alive, why, None, None),
                }
            }
            Err(e) if retryable(&e) => {
                let (why, hint) = (e.to_string(), retry_after(&e));
                (false, why, hint, Some(e))
            }
            Err(e) => return Err(e),
        };
        let wait = if alive {
            budget.success();
            crate::retry::backoff(retry, retry, 1)
        } else {
            let Some(attempt) = budget.failure() else {
                // The API kept refusing (429/503): say so (exit 5);
                // otherwise the network failed (exit 6).
                return Err(match last_error {
                    Some(e @ CliError::Api { .. }) => e,
                    _ => CliError::Transport {
                        url: display_url_of(ctx),
                        message: format!("gave up reconnecting: {why}"),
                    },
                });
            };
            budget.delay(retry, attempt, hint)
        };
        ctx.out.note(&format!(
            "revaer: event stream lost ({why}); reconnecting in {} ms",
            wait.as_millis()
        ))?;
        tokio::select! {
            _ = &mut ctrl_c => return Ok(()),
            () = tokio::time::sleep(wait) => {}
        }
    }
}

fn display_url_of(ctx: &Ctx) -> String {
    format!("{}/v1/events", ctx.api.shown_base())
}

async fn read_stream(
    ctx: &Ctx,
    args: &TailArgs,
    mut response: reqwest::Response,
    pos: &mut Position,
    retry: &mut Duration,
    budget: &Budget,
    ctrl_c: &mut std::pin::Pin<&mut impl std::future::Future<Output = std::io::Result<()>>>,
) -> Result<StreamEnd, CliError> {
    let mut parser = Parser::default();
    let mut alive = false;
    let url = display_url(response.url());
    loop {
        let chunk = tokio::select! {
            _ = &mut *ctrl_c => return Ok(StreamEnd::Done),
            c = tokio::time::timeout(args.idle_timeout, response.chunk()) => c,
        };
        let bytes = match chunk {
            Err(_) => {
                return Ok(StreamEnd::Lost {
                    alive,
                    why: format!("nothing for {} s", args.idle_timeout.as_secs()),
                });
            }
            Ok(Err(e)) => {
                return Ok(StreamEnd::Lost {
                    alive,
                    why: crate::client::transport(&url, &e).to_string(),
                });
            }
            Ok(Ok(None)) => {
                return Ok(StreamEnd::Lost {
                    alive,
                    why: "the server closed the stream".to_owned(),
                });
            }
            Ok(Ok(Some(b))) => b,
        };
        for item in parser.feed(&bytes) {
            if matches!(item, Item::Comment | Item::Message { .. }) {
                alive = true;
            }
            if pos.handle(item, &ctx.out, args.count, retry, budget.max_backoff)? {
                return Ok(StreamEnd::Done);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_paths_follow_xdg_and_differ_by_url_and_filters() {
        let query = vec![("kind", "completed".to_owned())];
        let xdg = default_state_path(Some("/s"), Some("/h"), "http://a", &query).unwrap();
        assert!(xdg.starts_with("/s/revaer"));
        assert!(xdg.to_string_lossy().ends_with(".json"));
        let home = default_state_path(None, Some("/h"), "http://a", &query).unwrap();
        assert!(home.starts_with("/h/.local/state/revaer"));
        assert_eq!(xdg.file_name(), home.file_name());
        let other_url = default_state_path(None, Some("/h"), "http://b", &query).unwrap();
        assert_ne!(home, other_url);
        let other_filter = default_state_path(None, Some("/h"), "http://a", &[]).unwrap();
        assert_ne!(home, other_filter);
        // A relative XDG_STATE_HOME is invalid and ignored.
        assert!(default_state_path(Some("rel"), None, "http://a", &[]).is_none());
        assert!(default_state_path(None, None, "http://a", &[]).is_none());
    }

    #[test]
    fn state_files_round_trip_and_belong_to_one_api() {
        let dir = std::env::temp_dir().join(format!("revaer-cli-state-{}", std::process::id()));
        let path = dir.join("deep/tail.json");
        assert_eq!(read_state(&path, "http://a").unwrap(), None);
        write_state(
            &path,
            &TailState {
                api_url: "http://a".into(),
                last_event_id: 42,
            },
        )
        .unwrap();
        assert_eq!(read_state(&path, "http://a").unwrap(), Some(42));
        assert_eq!(read_state(&path, "http://b").unwrap(), None);
        std::fs::write(&path, "garbage").unwrap();
        assert!(read_state(&path, "http://a").is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
