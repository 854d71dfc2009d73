//! `revaer status <id> --follow`: asks for the torrent every `--interval`
//! and redraws until it is complete (exit 0), removed (exit 4), in error
//! (exit 7) or Ctrl-C (exit 130). On a terminal (table output) it draws
//! progress bars on stderr: the whole torrent and its largest wanted files;
//! otherwise it prints one line (or one JSON document) per change.

use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use revaer_api_models::torrents::{TorrentDetail, TorrentState};

use super::{Ctx, torrent_path};
use crate::cli::StatusArgs;
use crate::error::CliError;
use crate::output::{Format, Out};
use crate::retry::{Budget, retry_after, retryable};
use crate::units::{format_bytes, format_progress, format_rate};

/// Files with their own bar.
const MAX_FILE_BARS: usize = 8;

/// Whether every wanted byte is there.
#[must_use]
pub fn complete(d: &TorrentDetail) -> bool {
    let t = &d.torrent;
    matches!(t.state, TorrentState::Finished | TorrentState::Seeding)
        || (t.has_metadata && t.size_wanted > 0 && t.size_done >= t.size_wanted)
}

/// The one-line form of a detail.
#[must_use]
pub fn progress_line(d: &TorrentDetail) -> String {
    let t = &d.torrent;
    format!(
        "{}  {}  {}/{}  down {}  up {}  peers {}",
        t.state.as_str(),
        format_progress(t.progress),
        format_bytes(t.size_done),
        format_bytes(t.size_wanted),
        format_rate(t.download_bps),
        format_rate(t.upload_bps),
        t.peers
    )
}

enum View {
    Bars {
        multi: MultiProgress,
        total: ProgressBar,
        files: Vec<(u32, ProgressBar)>,
    },
    Lines {
        last: Option<String>,
    },
    Json {
        last: Option<Box<TorrentDetail>>,
    },
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

impl View {
    fn new(out: &Out) -> Self {
        match out.format {
            Format::Json => View::Json { last: None },
            Format::Table if out.io.err_is_terminal => {
                let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
                let total = multi.add(ProgressBar::new(0));
                total.set_style(style(
                    "{prefix:.bold} [{bar:40}] {bytes}/{total_bytes} {msg}",
                ));
                View::Bars {
                    multi,
                    total,
                    files: Vec::new(),
                }
            }
            Format::Table => View::Lines { last: None },
        }
    }

    fn update(&mut self, out: &Out, d: &TorrentDetail) -> Result<(), CliError> {
        match self {
            View::Json { last } => {
                if last.as_deref() != Some(d) {
                    out.json_line(d)?;
                    *last = Some(Box::new(d.clone()));
                }
            }
            View::Lines { last } => {
                let line = progress_line(d);
                if last.as_deref() != Some(line.as_str()) {
                    out.text(&format!("{line}\n"))?;
                    *last = Some(line);
                }
            }
            View::Bars {
                multi,
                total,
                files,
            } => {
                let t = &d.torrent;
                total.set_prefix(t.name.clone());
                // Until the metadata arrives the size is unknown: an empty
                // bar, not a full one.
                total.set_length(t.size_wanted.max(1));
                total.set_position(t.size_done.min(t.size_wanted));
                total.set_message(format!(
                    "{} down {} up {} peers {}",
                    t.state.as_str(),
                    format_rate(t.download_bps),
                    format_rate(t.upload_bps),
                    t.peers
                ));
                if files.is_empty() {
                    let mut wanted: Vec<_> = d.files.iter().filter(|f| f.priority > 0).collect();
                    wanted.sort_by(|a, b| b.size.cmp(&a.size).then(a.index.cmp(&b.index)));
                    if wanted.len() > 1 {
                        for f in wanted.into_iter().take(MAX_FILE_BARS) {
                            let bar = multi.add(ProgressBar::new(f.size));
                            bar.set_style(style("  {prefix} [{bar:30}] {bytes}/{total_bytes}"));
                            bar.set_prefix(f.path.clone());
                            files.push((f.index, bar));
                        }
                    }
                }
                for (index, bar) in files.iter() {
                    if let Some(f) = d.files.iter().find(|f| f.index == *index) {
                        bar.set_position(f.done.min(f.size));
                    }
                }
            }
        }
        Ok(())
    }

    fn finish(&self) {
        if let View::Bars { total, files, .. } = self {
            for (_, bar) in files {
                bar.abandon();
            }
            total.abandon();
        }
    }
}

/// `revaer status <id> --follow`.
pub async fn follow(ctx: &Ctx, args: &StatusArgs) -> Result<(), CliError> {
    let path = torrent_path(&args.id.0);
    let mut view = View::new(&ctx.out);
    let mut budget = Budget::new(&args.retry);
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let result = loop {
        let ask = ctx.api.get::<TorrentDetail>(&path, &[]);
        let answer = tokio::select! {
            _ = &mut ctrl_c => break Err(CliError::Interrupted),
            a = ask => a,
        };
        let wait: Duration = match answer {
            Ok(detail) => {
                budget.success();
                view.update(&ctx.out, &detail)?;
                if complete(&detail) {
                    view.finish();
                    if ctx.out.format == Format::Table {
                        ctx.out
                            .note(&format!("Complete: {}", detail.torrent.name))?;
                    }
                    break Ok(());
                }
                if detail.torrent.state == TorrentState::Error {
                    break Err(CliError::Failed(format!(
                        "the torrent is in error: {}",
                        detail.torrent.error.as_deref().unwrap_or("no message")
                    )));
                }
                args.interval
            }
            Err(e) if retryable(&e) => match budget.failure() {
                Some(attempt) => budget.delay(args.interval, attempt, retry_after(&e)),
                None => break Err(e),
            },
            Err(e) => break Err(e),
        };
        tokio::select! {
            _ = &mut ctrl_c => break Err(CliError::Interrupted),
            () = tokio::time::sleep(wait) => {}
        }
    };
    view.finish();
    result
}
