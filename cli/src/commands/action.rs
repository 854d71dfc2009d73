//! `revaer action <id> ...`.

use reqwest::Method;
use revaer_api_models::torrents::{TorrentAction, TorrentDetail};
use serde::Serialize;

use super::{Ctx, torrent_path};
use crate::cli::{ActionArgs, ActionCommand, OnOff};
use crate::client::to_value;
use crate::error::CliError;
use crate::output::Format;
use crate::units::{Rate, format_rate};

/// `action --output json`: the torrent and the action body that was sent.
#[derive(Debug, Serialize)]
pub struct ActionOutput<'a> {
    pub id: &'a str,
    pub action: &'a TorrentAction,
}

fn done_text(action: &TorrentAction) -> String {
    let limit = |v: Option<u64>| v.map_or_else(|| "unlimited".to_owned(), format_rate);
    match action {
        TorrentAction::Pause => "Paused".to_owned(),
        TorrentAction::Resume => "Resumed".to_owned(),
        TorrentAction::Remove => "Removed (data kept)".to_owned(),
        TorrentAction::RemoveData => "Removed with its data".to_owned(),
        TorrentAction::Reannounce => "Reannouncing".to_owned(),
        TorrentAction::Recheck => "Rechecking".to_owned(),
        TorrentAction::FsopsRetry => "Retrying post-processing of".to_owned(),
        TorrentAction::Sequential { enabled: true } => "Sequential download on for".to_owned(),
        TorrentAction::Sequential { enabled: false } => "Sequential download off for".to_owned(),
        TorrentAction::Rate {
            download_bps,
            upload_bps,
        } => format!(
            "Limits down {}, up {} for",
            limit(*download_bps),
            limit(*upload_bps)
        ),
    }
}

/// `revaer action`.
pub async fn action(ctx: &Ctx, args: &ActionArgs) -> Result<(), CliError> {
    let path = torrent_path(&args.id.0);
    let body = match &args.action {
        ActionCommand::Pause => TorrentAction::Pause,
        ActionCommand::Resume => TorrentAction::Resume,
        ActionCommand::Remove => TorrentAction::Remove,
        ActionCommand::RemoveData => TorrentAction::RemoveData,
        ActionCommand::Reannounce => TorrentAction::Reannounce,
        ActionCommand::Recheck => TorrentAction::Recheck,
        ActionCommand::FsopsRetry => TorrentAction::FsopsRetry,
        ActionCommand::Sequential { mode } => TorrentAction::Sequential {
            enabled: *mode == OnOff::On,
        },
        ActionCommand::Rate { down, up } => {
            // The API sets both limits at once (absent = unlimited): keep
            // the side that was not given.
            let current = if down.is_none() || up.is_none() {
                let d: TorrentDetail = ctx.api.get(&path, &[]).await?;
                Some((d.download_limit_bps, d.upload_limit_bps))
            } else {
                None
            };
            let pick = |given: Option<Rate>, now: Option<u64>| given.map_or(now, Rate::as_api);
            TorrentAction::Rate {
                download_bps: pick(*down, current.and_then(|c| c.0)),
                upload_bps: pick(*up, current.and_then(|c| c.1)),
            }
        }
    };
    ctx.api
        .call_no_content(
            Method::POST,
            &format!("{path}/action"),
            Some(to_value(&body)?),
        )
        .await?;
    if ctx.out.format == Format::Json {
        ctx.out.json(&ActionOutput {
            id: &args.id.0,
            action: &body,
        })
    } else {
        ctx.out
            .text(&format!("{} {}\n", done_text(&body), args.id.0))
    }
}
