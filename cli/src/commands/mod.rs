//! The commands that talk to the API. Each prints a JSON document (the
//! API's own shapes from `api/models`, or a small documented wrapper) with
//! `--output json`, and tables or fields for people otherwise.

use revaer_api_models::torrents::TorrentState;

use crate::cli::Command;
use crate::client::Api;
use crate::error::CliError;
use crate::output::{Color, Out};

pub mod action;
pub mod follow;
pub mod health;
pub mod keys;
pub mod select;
pub mod tail;
pub mod torrents;

/// What a command works with.
#[derive(Debug)]
pub struct Ctx {
    pub api: Api,
    pub out: Out,
}

/// Runs one API command.
pub async fn run(command: &Command, ctx: &Ctx) -> Result<(), CliError> {
    match command {
        Command::Ls(args) => torrents::ls(ctx, args).await,
        Command::Status(args) if args.follow => follow::follow(ctx, args).await,
        Command::Status(args) => torrents::status(ctx, args).await,
        Command::Peers(args) => torrents::peers(ctx, args).await,
        Command::Add(args) => torrents::add(ctx, args).await,
        Command::Label(args) => torrents::label(ctx, args).await,
        Command::Select(args) => select::select(ctx, args).await,
        Command::Action(args) => action::action(ctx, args).await,
        Command::Tail(args) => tail::tail(ctx, args).await,
        Command::Keys(command) => keys::keys(ctx, command).await,
        Command::Health => health::health(ctx).await,
        Command::Completions { .. } | Command::Man { .. } => Ok(()),
    }
}

/// The colour of a state in tables.
#[must_use]
pub fn state_color(state: TorrentState) -> Option<Color> {
    match state {
        TorrentState::Seeding | TorrentState::Finished => Some(Color::Green),
        TorrentState::Downloading | TorrentState::DownloadingMetadata => Some(Color::Blue),
        TorrentState::Paused => Some(Color::Yellow),
        TorrentState::Error => Some(Color::Red),
        TorrentState::CheckingFiles | TorrentState::CheckingResumeData => None,
    }
}

/// `/v1/torrents/{id}`.
#[must_use]
pub fn torrent_path(id: &str) -> String {
    format!("/v1/torrents/{id}")
}
