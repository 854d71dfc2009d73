//! `ls`, `status` (without `--follow`), `peers`, `add` and `label`.

use std::fmt::Write as _;
use std::io::Read as _;

use reqwest::{Method, StatusCode};
use revaer_api_models::torrents::{
    AddTorrentRequest, FsopsStatus, MAX_PAGE_LIMIT, Torrent, TorrentCreated, TorrentDetail,
    TorrentList, TorrentPatch, TorrentPeers,
};
use serde::Serialize;

use super::{Ctx, state_color, torrent_path};
use crate::cli::{AddArgs, LabelArgs, LsArgs, PeersArgs, StatusArgs};
use crate::client::{Body, to_value};
use crate::error::CliError;
use crate::output::{Cell, Column, Format, Out, render_fields, render_table};
use crate::units::{format_bytes, format_progress, format_rate, format_time};

/// Most pages `ls --all` follows (500 torrents each).
pub const MAX_PAGES: usize = 10_000;
/// Largest `.torrent` the API accepts.
pub const MAX_TORRENT_BYTES: usize = 10 * 1024 * 1024;
/// Longest magnet link the API accepts.
pub const MAX_MAGNET_BYTES: usize = 8 * 1024;

fn join<T: AsRef<str>>(values: &[T]) -> String {
    values
        .iter()
        .map(AsRef::as_ref)
        .collect::<Vec<_>>()
        .join(",")
}

/// The query of `GET /v1/torrents`, in a fixed order.
#[must_use]
pub fn list_query(args: &LsArgs) -> Vec<(&'static str, String)> {
    let mut query = Vec::new();
    let limit = args.limit.or(args.all.then_some(MAX_PAGE_LIMIT));
    if let Some(limit) = limit {
        query.push(("limit", limit.to_string()));
    }
    if let Some(cursor) = &args.cursor {
        query.push(("cursor", cursor.clone()));
    }
    if !args.state.is_empty() {
        let states: Vec<&str> = args.state.iter().map(|s| s.as_str()).collect();
        query.push(("state", join(&states)));
    }
    if let Some(tracker) = &args.tracker {
        query.push(("tracker", tracker.clone()));
    }
    if !args.extension.is_empty() {
        query.push(("extension", join(&args.extension)));
    }
    if !args.tag.is_empty() {
        query.push(("tags", join(&args.tag)));
    }
    if let Some(name) = &args.name {
        query.push(("name", name.clone()));
    }
    query
}

/// `revaer ls`.
pub async fn ls(ctx: &Ctx, args: &LsArgs) -> Result<(), CliError> {
    let query = list_query(args);
    let mut page: TorrentList = ctx.api.get("/v1/torrents", &query).await?;
    if args.all {
        let mut items = std::mem::take(&mut page.items);
        let mut stale = page.stale;
        let mut next = page.next.take();
        let mut pages = 1;
        while let Some(cursor) = next {
            if pages >= MAX_PAGES {
                return Err(CliError::Failed(format!(
                    "more than {MAX_PAGES} pages; narrow the listing with filters"
                )));
            }
            let mut q: Vec<(&str, String)> = query
                .iter()
                .filter(|(k, _)| *k != "cursor")
                .cloned()
                .collect();
            q.insert(1, ("cursor", cursor.clone()));
            let mut more: TorrentList = ctx.api.get("/v1/torrents", &q).await?;
            if more.next.as_deref() == Some(cursor.as_str()) {
                return Err(CliError::Protocol {
                    url: ctx.api.shown_base(),
                    message: "the listing returned the same cursor twice".to_owned(),
                });
            }
            items.append(&mut more.items);
            stale |= more.stale;
            next = more.next;
            pages += 1;
        }
        page = TorrentList {
            items,
            next: None,
            stale,
        };
    }
    let out = &ctx.out;
    if out.format == Format::Json {
        return out.json(&page);
    }
    if page.items.is_empty() {
        out.text("No torrents.\n")?;
    } else {
        out.text(&list_table(out, &page.items))?;
    }
    if page.stale {
        out.note("note: the engine is unreachable; this is the last known state")?;
    }
    if let Some(next) = &page.next {
        out.note(&format!(
            "more: revaer ls --cursor {next}   (or --all for everything)"
        ))?;
    }
    Ok(())
}

/// The `ls` table.
#[must_use]
pub fn list_table(out: &Out, items: &[Torrent]) -> String {
    let columns = [
        Column::left("ID", 10),
        Column::left("NAME", 9).flexible(),
        Column::left("STATE", 8),
        Column::right("DONE", 7),
        Column::right("SIZE", 5),
        Column::right("DOWN", 6),
        Column::right("UP", 4),
        Column::right("PEERS", 2),
        Column::left("TAGS", 3),
    ];
    let rows: Vec<Vec<Cell>> = items
        .iter()
        .map(|t| {
            vec![
                Cell::from(t.id.as_str()),
                Cell::from(t.name.as_str()),
                Cell::colored(t.state.as_str(), state_color(t.state)),
                Cell::from(format_progress(t.progress)),
                Cell::from(format_bytes(t.size_wanted)),
                Cell::from(format_rate(t.download_bps)),
                Cell::from(format_rate(t.upload_bps)),
                Cell::from(format!("{}/{}", t.peers, t.seeds)),
                Cell::from(t.tags.join(",")),
            ]
        })
        .collect();
    render_table(out, &columns, &rows)
}

fn limit_text(limit: Option<u64>) -> String {
    limit.map_or_else(|| "unlimited".to_owned(), format_rate)
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.to_owned()
}

fn fsops_text(job: &FsopsStatus) -> String {
    let steps: Vec<String> = job
        .steps
        .iter()
        .map(|s| format!("{} {}", s.step, s.outcome))
        .collect();
    let mut text = job.state.clone();
    if let Some(step) = &job.step {
        let _ = write!(text, ", step {step}");
    }
    let _ = write!(text, " (attempts {})", job.attempts);
    if !steps.is_empty() {
        let _ = write!(text, ": {}", steps.join(", "));
    }
    if let Some(path) = &job.library_path {
        let _ = write!(text, "; library {path}");
    }
    if let Some(error) = &job.error {
        let _ = write!(text, "; error: {error}");
    }
    text
}

/// The `status` view for people.
#[must_use]
pub fn detail_text(out: &Out, d: &TorrentDetail) -> String {
    let t = &d.torrent;
    let mut fields: Vec<(&str, String)> = vec![
        ("id", t.id.clone()),
        ("name", t.name.clone()),
        (
            "state",
            match state_color(t.state) {
                Some(c) => out.paint(t.state.as_str(), c),
                None => t.state.as_str().to_owned(),
            },
        ),
        (
            "progress",
            format!(
                "{} of {} ({} done)",
                format_progress(t.progress),
                format_bytes(t.size_wanted),
                format_bytes(t.size_done)
            ),
        ),
        (
            "rates",
            format!(
                "down {}, up {}",
                format_rate(t.download_bps),
                format_rate(t.upload_bps)
            ),
        ),
        (
            "limits",
            format!(
                "down {}, up {}",
                limit_text(d.download_limit_bps),
                limit_text(d.upload_limit_bps)
            ),
        ),
        ("peers", format!("{} ({} seeds)", t.peers, t.seeds)),
        (
            "transferred",
            format!(
                "{} down, {} up",
                format_bytes(t.downloaded),
                format_bytes(t.uploaded)
            ),
        ),
        ("tags", t.tags.join(", ")),
        ("category", t.category.clone().unwrap_or_default()),
        ("added", format_time(t.added_at)),
        ("sequential", yes_no(t.sequential)),
        ("private", yes_no(d.private)),
        ("pieces", format_bytes(u64::from(d.piece_length))),
    ];
    if let Some(job) = &d.fsops_job {
        fields.push(("fsops", fsops_text(job)));
    }
    if let Some(error) = &t.error {
        fields.push(("error", error.clone()));
    }
    if let Some(why) = &t.stalled_reason {
        fields.push(("stalled", why.clone()));
    }
    if d.stale {
        fields.push((
            "stale",
            "yes: the engine is unreachable; last known state".to_owned(),
        ));
    }
    let mut text = render_fields(out, &fields);
    if !d.files.is_empty() {
        text.push('\n');
        text.push_str(&files_table(out, d));
    }
    if !d.trackers.is_empty() {
        text.push('\n');
        text.push_str(&trackers_table(out, d));
    }
    text
}

fn files_table(out: &Out, d: &TorrentDetail) -> String {
    let columns = [
        Column::right("#", 9),
        Column::left("FILE", 8).flexible(),
        Column::right("SIZE", 7),
        Column::right("PRIO", 6),
        Column::right("DONE", 5),
    ];
    let rows: Vec<Vec<Cell>> = d
        .files
        .iter()
        .map(|f| {
            vec![
                Cell::from(f.index.to_string()),
                Cell::from(f.path.as_str()),
                Cell::from(format_bytes(f.size)),
                Cell::from(if f.priority == 0 {
                    "skip".to_owned()
                } else {
                    f.priority.to_string()
                }),
                Cell::from(format_progress(f.progress)),
            ]
        })
        .collect();
    render_table(out, &columns, &rows)
}

fn trackers_table(out: &Out, d: &TorrentDetail) -> String {
    let columns = [
        Column::left("TRACKER", 9).flexible(),
        Column::left("STATUS", 8),
        Column::right("PEERS", 6),
        Column::right("SEEDS/LEECH", 4),
        Column::right("NEXT", 3),
        Column::left("MESSAGE", 5),
    ];
    let rows: Vec<Vec<Cell>> = d
        .trackers
        .iter()
        .map(|tr| {
            vec![
                Cell::from(tr.url.as_str()),
                Cell::from(tr.status.as_str()),
                Cell::from(tr.peers.map_or_else(String::new, |p| p.to_string())),
                Cell::from(match (tr.seeders, tr.leechers) {
                    (None, None) => String::new(),
                    (s, l) => format!(
                        "{}/{}",
                        s.map_or_else(|| "?".to_owned(), |s| s.to_string()),
                        l.map_or_else(|| "?".to_owned(), |l| l.to_string())
                    ),
                }),
                Cell::from(
                    tr.next_announce_secs
                        .map_or_else(String::new, |s| format!("{s}s")),
                ),
                Cell::from(
                    tr.message
                        .clone()
                        .or_else(|| tr.last_error.clone())
                        .unwrap_or_default(),
                ),
            ]
        })
        .collect();
    render_table(out, &columns, &rows)
}

/// `revaer status <id>`.
pub async fn status(ctx: &Ctx, args: &StatusArgs) -> Result<(), CliError> {
    let detail: TorrentDetail = ctx.api.get(&torrent_path(&args.id.0), &[]).await?;
    if ctx.out.format == Format::Json {
        ctx.out.json(&detail)
    } else {
        ctx.out.text(&detail_text(&ctx.out, &detail))
    }
}

/// `revaer peers`.
pub async fn peers(ctx: &Ctx, args: &PeersArgs) -> Result<(), CliError> {
    let path = format!("{}/peers", torrent_path(&args.id.0));
    let peers: TorrentPeers = ctx.api.get(&path, &[]).await?;
    if ctx.out.format == Format::Json {
        ctx.out.json(&peers)
    } else if peers.peers.is_empty() {
        ctx.out.text("No connected peers.\n")
    } else {
        ctx.out.text(&peers_table(&ctx.out, &peers))
    }
}

/// The `peers` table. FLAGS: `S` seed, `I` we are interested, `C` it
/// chokes us, `i` it is interested, `c` we choke it, `E` encrypted, `U`
/// uTP, `O` outgoing.
#[must_use]
pub fn peers_table(out: &Out, peers: &TorrentPeers) -> String {
    let columns = [
        Column::left("ADDRESS", 10),
        Column::left("CLIENT", 6).flexible(),
        Column::left("FLAGS", 9),
        Column::right("DONE", 8),
        Column::right("DOWN", 7),
        Column::right("UP", 7),
    ];
    let rows: Vec<Vec<Cell>> = peers
        .peers
        .iter()
        .map(|p| {
            let flags: String = [
                (p.seed, 'S'),
                (p.interested, 'I'),
                (p.choked, 'C'),
                (p.remote_interested, 'i'),
                (p.remote_choked, 'c'),
                (p.encrypted, 'E'),
                (p.transport == "utp", 'U'),
                (p.direction == "outgoing", 'O'),
            ]
            .iter()
            .map(|&(on, c)| if on { c } else { '.' })
            .collect();
            vec![
                Cell::from(p.address.as_str()),
                Cell::from(p.client.as_str()),
                Cell::from(flags),
                Cell::from(format_progress(p.progress)),
                Cell::from(format_rate(p.download_bps)),
                Cell::from(format_rate(p.upload_bps)),
            ]
        })
        .collect();
    render_table(out, &columns, &rows)
}

/// Reads a `.torrent` from `path` (`-` = stdin) with the API's limits.
fn read_torrent(path: &str) -> Result<(Vec<u8>, String), CliError> {
    let limit = u64::try_from(MAX_TORRENT_BYTES).unwrap_or(u64::MAX) + 1;
    let mut bytes = Vec::new();
    let name = if path == "-" {
        std::io::stdin()
            .take(limit)
            .read_to_end(&mut bytes)
            .map_err(|e| CliError::usage(format!("reading the .torrent from stdin: {e}")))?;
        "stdin.torrent".to_owned()
    } else {
        let file = std::fs::File::open(path).map_err(|e| {
            CliError::usage(format!(
                "`{path}` is neither a magnet link nor a readable .torrent file ({e})"
            ))
        })?;
        file.take(limit)
            .read_to_end(&mut bytes)
            .map_err(|e| CliError::usage(format!("reading `{path}`: {e}")))?;
        std::path::Path::new(path).file_name().map_or_else(
            || "upload.torrent".to_owned(),
            |n| n.to_string_lossy().into_owned(),
        )
    };
    if bytes.len() > MAX_TORRENT_BYTES {
        return Err(CliError::usage(format!(
            "`{path}` is larger than {} (the API's limit for a .torrent)",
            format_bytes(MAX_TORRENT_BYTES as u64)
        )));
    }
    if bytes.first() != Some(&b'd') {
        return Err(CliError::usage(format!(
            "`{path}` is not a .torrent file (not a bencoded dictionary)"
        )));
    }
    Ok((bytes, name))
}

/// `revaer add`.
pub async fn add(ctx: &Ctx, args: &AddArgs) -> Result<(), CliError> {
    let options = AddTorrentRequest {
        magnet: None,
        tags: args.tag.clone(),
        category: args.category.clone(),
        paused: args.paused,
        sequential: args.sequential,
        files: Vec::new(),
        save_path: args.save_path.clone(),
    };
    let response = if args.source.starts_with("magnet:") {
        if !args.source.starts_with("magnet:?") || args.source.len() > MAX_MAGNET_BYTES {
            return Err(CliError::usage(format!(
                "a magnet link starts with `magnet:?` and is at most {MAX_MAGNET_BYTES} bytes"
            )));
        }
        let body = AddTorrentRequest {
            magnet: Some(args.source.clone()),
            ..options
        };
        ctx.api
            .send(
                Method::POST,
                "/v1/torrents",
                &[],
                Body::Json(to_value(&body)?),
                &[],
                false,
            )
            .await?
    } else {
        let (torrent, filename) = read_torrent(&args.source)?;
        let has_options = options != AddTorrentRequest::default();
        ctx.api
            .send(
                Method::POST,
                "/v1/torrents",
                &[],
                Body::Multipart {
                    torrent,
                    filename,
                    options: if has_options {
                        Some(to_value(&options)?)
                    } else {
                        None
                    },
                },
                &[],
                false,
            )
            .await?
    };
    let created: TorrentCreated = ctx.api.decode(response, "/v1/torrents").await?;
    if ctx.out.format == Format::Json {
        ctx.out.json(&created)
    } else {
        ctx.out.text(&format!("Added {}\n", created.id))
    }
}

/// What `label` prints when the API answers 204 (the engine does not
/// report the torrent right now): the labels that were set.
#[derive(Debug, Serialize)]
struct Labelled<'a> {
    id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    tags: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    category: Option<&'a str>,
}

/// `revaer label`.
pub async fn label(ctx: &Ctx, args: &LabelArgs) -> Result<(), CliError> {
    let patch = TorrentPatch {
        tags: (args.no_tags || !args.tag.is_empty()).then(|| args.tag.clone()),
        category: args.category.clone(),
    };
    let url_path = torrent_path(&args.id.0);
    let response = ctx
        .api
        .send(
            Method::PATCH,
            &url_path,
            &[],
            Body::Json(to_value(&patch)?),
            &[],
            false,
        )
        .await?;
    let torrent: Option<Torrent> = if response.status() == StatusCode::NO_CONTENT {
        None
    } else {
        Some(ctx.api.decode(response, &url_path).await?)
    };
    let out = &ctx.out;
    match (&torrent, out.format) {
        (Some(t), Format::Json) => out.json(t),
        (None, Format::Json) => out.json(&Labelled {
            id: &args.id.0,
            tags: patch.tags.as_deref(),
            category: patch.category.as_deref(),
        }),
        (Some(t), Format::Table) => out.text(&format!(
            "Labelled {}: tags [{}], category {}\n",
            t.id,
            t.tags.join(", "),
            t.category.as_deref().unwrap_or("-")
        )),
        (None, Format::Table) => out.text(&format!("Labelled {}\n", args.id.0)),
    }
}
