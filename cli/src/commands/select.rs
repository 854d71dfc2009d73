//! `revaer select`: file selection, checked locally against the torrent's
//! file list before it is submitted.

use std::fmt::Write as _;

use reqwest::Method;
use revaer_api_models::Problem;
use revaer_api_models::torrents::{FileRule, SelectRequest, TorrentDetail};
use serde::Serialize;

use super::{Ctx, torrent_path};
use crate::cli::SelectArgs;
use crate::client::to_value;
use crate::error::CliError;
use crate::output::{Cell, Column, Format, render_table};
use crate::rules::{self, Planned, Rules};
use crate::units::format_bytes;

/// `select --output json`.
#[derive(Debug, Serialize)]
pub struct SelectOutput<'a> {
    pub id: &'a str,
    /// False with `--dry-run`.
    pub applied: bool,
    pub rules: &'a [FileRule],
    /// Every file with its priority before and after.
    pub files: &'a [Planned],
}

fn load_rules(args: &SelectArgs) -> Result<Rules, CliError> {
    if let Some(path) = &args.file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| CliError::usage(format!("reading {}: {e}", path.display())))?;
        rules::from_json(&text, &path.display().to_string())
    } else if let Some(json) = &args.json {
        rules::from_json(json, "--json")
    } else {
        Ok(rules::from_globs(&args.only, &args.skip, args.priority))
    }
}

/// `revaer select`.
pub async fn select(ctx: &Ctx, args: &SelectArgs) -> Result<(), CliError> {
    let rules = load_rules(args)?;
    let path = torrent_path(&args.id.0);
    let detail: TorrentDetail = ctx.api.get(&path, &[]).await?;
    if !detail.torrent.has_metadata {
        return Err(CliError::Api {
            problem: Box::new(
                Problem::new(409, "Conflict").with_detail(
                    "the torrent's metadata has not arrived yet; its files are unknown",
                ),
            ),
            retry_after: None,
            had_key: ctx.api.has_key(),
        });
    }
    let planned = rules::plan(&rules, &detail.files)?;
    if !args.dry_run {
        let body = SelectRequest {
            rules: rules.rules.clone(),
        };
        ctx.api
            .call_no_content(
                Method::POST,
                &format!("{path}/select"),
                Some(to_value(&body)?),
            )
            .await?;
    }
    let out = &ctx.out;
    if out.format == Format::Json {
        return out.json(&SelectOutput {
            id: &args.id.0,
            applied: !args.dry_run,
            rules: &rules.rules,
            files: &planned,
        });
    }
    let columns = [
        Column::right("#", 9),
        Column::left("FILE", 8).flexible(),
        Column::right("SIZE", 6),
        Column::left("PRIORITY", 7),
    ];
    let prio = |p: u8| {
        if p == 0 {
            "skip".to_owned()
        } else {
            p.to_string()
        }
    };
    let rows: Vec<Vec<Cell>> = planned
        .iter()
        .map(|p| {
            let change = if p.before == p.priority {
                prio(p.priority)
            } else {
                format!("{} -> {}", prio(p.before), prio(p.priority))
            };
            vec![
                Cell::from(p.index.to_string()),
                Cell::from(p.path.as_str()),
                Cell::from(format_bytes(p.size)),
                Cell::from(change),
            ]
        })
        .collect();
    let wanted: Vec<&Planned> = planned.iter().filter(|p| p.priority > 0).collect();
    let bytes: u64 = wanted.iter().map(|p| p.size).sum();
    let mut text = render_table(out, &columns, &rows);
    let _ = writeln!(
        text,
        "{} {} of {} files ({}), {} skipped",
        if args.dry_run {
            "Would download"
        } else {
            "Downloading"
        },
        wanted.len(),
        planned.len(),
        format_bytes(bytes),
        planned.len() - wanted.len()
    );
    out.text(&text)
}
