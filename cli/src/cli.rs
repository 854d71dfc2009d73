//! The command line: every command, option and environment variable, with
//! the validation that can happen before anything is sent.

use std::path::PathBuf;
use std::time::Duration;

use clap::builder::{PossibleValuesParser, TypedValueParser as _};
use clap::{Args, Parser, Subcommand, ValueEnum};
use revaer_api_models::KeyScope;
use revaer_api_models::events::EventKind;
use revaer_api_models::torrents::{MAX_PAGE_LIMIT, TorrentState};

use crate::error::EXIT_CODES_HELP;
use crate::secret::Secret;
use crate::units::{Rate, parse_duration, parse_rate};

const ENV_HELP: &str = "\
Environment:
  REVAER_API_URL             base URL of the API (--api-url)
  REVAER_API_KEY             API key (--api-key); never printed
  REVAER_API_KEY_FILE        file holding the API key (--api-key-file)
  REVAER_OUTPUT              auto, table or json (--output)
  REVAER_TELEMETRY_ENDPOINT  OTLP/HTTP collector, e.g. http://127.0.0.1:4318
  NO_COLOR                   no colours when set (--no-color)
  XDG_STATE_HOME             where `tail` keeps its position (default ~/.local/state)";

/// Administer a Revaer daemon over its HTTP API.
///
/// Output is a table on a terminal and JSON otherwise (`--output` pins it);
/// errors go to stderr, and the exit code says what kind of failure it was.
#[derive(Debug, Parser)]
#[command(
    name = "revaer",
    version,
    after_help = EXIT_CODES_HELP,
    after_long_help = format!("{EXIT_CODES_HELP}\n\n{ENV_HELP}"),
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Base URL of the Revaer API.
    #[arg(
        long,
        env = "REVAER_API_URL",
        default_value = "http://127.0.0.1:7070",
        global = true,
        value_name = "URL"
    )]
    pub api_url: String,
    /// API key. Prefer --api-key-file or the environment: arguments are
    /// visible to other users.
    #[arg(
        long,
        env = "REVAER_API_KEY",
        hide_env_values = true,
        global = true,
        value_name = "KEY",
        value_parser = parse_secret
    )]
    pub api_key: Option<Secret>,
    /// File holding the API key (such as <data>/bootstrap-admin.key).
    #[arg(long, env = "REVAER_API_KEY_FILE", global = true, value_name = "PATH")]
    pub api_key_file: Option<PathBuf>,
    /// Time allowed for each request (`10`, `30s`, `2m`).
    #[arg(long, default_value = "10s", global = true, value_name = "DURATION", value_parser = parse_timeout)]
    pub timeout: Duration,
    /// `table` for people, `json` for scripts; `auto` is table on a
    /// terminal and json otherwise.
    #[arg(
        long,
        value_enum,
        env = "REVAER_OUTPUT",
        default_value_t = OutputArg::Auto,
        global = true
    )]
    pub output: OutputArg,
    /// No colours (also when `NO_COLOR` is set).
    #[arg(long, global = true)]
    pub no_color: bool,
    /// Log every request (method, URL, status, time) to stderr.
    #[arg(short, long, global = true)]
    pub verbose: bool,
    /// OTLP/HTTP collector to export the command's span and counters to.
    #[arg(
        long,
        env = "REVAER_TELEMETRY_ENDPOINT",
        global = true,
        value_name = "URL",
        hide = true
    )]
    pub telemetry_endpoint: Option<String>,
}

/// `--output`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputArg {
    Auto,
    Table,
    Json,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List torrents (a page, or every page with --all).
    #[command(visible_alias = "list")]
    Ls(LsArgs),
    /// Show one torrent: files, trackers, limits, FsOps; --follow redraws
    /// with progress bars until it is complete.
    Status(StatusArgs),
    /// The peers a torrent is connected to: address, client, flags,
    /// progress and rates (why a swarm is stuck).
    Peers(PeersArgs),
    /// Add a magnet link or a .torrent file.
    Add(AddArgs),
    /// Choose which files of a torrent download, checked against its file
    /// list before anything is sent.
    Select(SelectArgs),
    /// Pause, resume, remove, reannounce, recheck, retry FsOps, sequential,
    /// rate limits.
    Action(ActionArgs),
    /// Replace a torrent's tags and/or category.
    Label(LabelArgs),
    /// Follow the event stream; resumes where the last run stopped.
    Tail(TailArgs),
    /// Issue, list, rotate and revoke API keys (admin key needed).
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Readiness of every worker (/health/full): exit 0 when ok, 5 when
    /// degraded, 6 when unreachable.
    Health,
    /// Print a shell completion script.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page, or write one per command into a directory.
    Man {
        /// Write `revaer.1`, `revaer-ls.1`, ... here instead of printing.
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
    },
}

impl Command {
    /// The command's name, for telemetry.
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            Command::Ls(_) => "ls",
            Command::Status(_) => "status",
            Command::Peers(_) => "peers",
            Command::Add(_) => "add",
            Command::Select(_) => "select",
            Command::Action(_) => "action",
            Command::Label(_) => "label",
            Command::Tail(_) => "tail",
            Command::Keys(KeysCommand::Issue(_)) => "keys issue",
            Command::Keys(KeysCommand::Ls) => "keys ls",
            Command::Keys(KeysCommand::Rotate(_)) => "keys rotate",
            Command::Keys(KeysCommand::Revoke { .. }) => "keys revoke",
            Command::Health => "health",
            Command::Completions { .. } => "completions",
            Command::Man { .. } => "man",
        }
    }
}

/// `revaer peers`.
#[derive(Debug, Args)]
pub struct PeersArgs {
    /// Torrent id (40 hex digits).
    #[arg(value_parser = parse_torrent_id)]
    pub id: TorrentId,
    #[command(flatten)]
    pub retry: RetryArgs,
}

/// `revaer ls`.
#[derive(Debug, Args)]
pub struct LsArgs {
    /// Start at this page (the `next` of an earlier answer).
    #[arg(long, value_name = "CURSOR", value_parser = parse_cursor)]
    pub cursor: Option<String>,
    /// Page size, 1–500 (API default 50; 500 with --all).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_PAGE_LIMIT)))]
    pub limit: Option<u32>,
    /// Follow `next` until the last page and print everything.
    #[arg(long)]
    pub all: bool,
    /// Any of these states (repeatable or comma-separated).
    #[arg(long, value_delimiter = ',', value_parser = state_parser())]
    pub state: Vec<TorrentState>,
    /// A tracker host or a parent domain of it.
    #[arg(long, value_name = "HOST", value_parser = parse_tracker)]
    pub tracker: Option<String>,
    /// Any file with one of these extensions (repeatable or comma-separated).
    #[arg(long, value_delimiter = ',', value_name = "EXT", value_parser = parse_extension)]
    pub extension: Vec<String>,
    /// All of these tags (repeatable or comma-separated).
    #[arg(long, value_delimiter = ',', value_name = "TAG", value_parser = parse_label)]
    pub tag: Vec<String>,
    /// Case-insensitive substring of the name.
    #[arg(long, value_parser = parse_name_filter)]
    pub name: Option<String>,
}

/// Torrent id argument: 40 hexadecimal digits (any case).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TorrentId(pub String);

/// `revaer status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Torrent id (40 hex digits).
    #[arg(value_parser = parse_torrent_id)]
    pub id: TorrentId,
    /// Redraw until the torrent is complete (or Ctrl-C, exit 130).
    #[arg(short, long)]
    pub follow: bool,
    /// How often --follow asks.
    #[arg(long, default_value = "1s", value_name = "DURATION", value_parser = parse_interval)]
    pub interval: Duration,
    #[command(flatten)]
    pub retry: RetryArgs,
}

/// Bounds of the loops that wait on the network (`status --follow`, `tail`).
#[derive(Debug, Clone, Args)]
pub struct RetryArgs {
    /// Consecutive failed attempts before giving up (exit 6, or 5 when the
    /// API kept answering 429/503).
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub max_retries: u32,
    /// Longest outage to ride out before giving up.
    #[arg(long, default_value = "5m", value_name = "DURATION", value_parser = parse_duration)]
    pub max_retry_time: Duration,
    /// Longest wait between two attempts (the backoff doubles up to it,
    /// with jitter).
    #[arg(long, default_value = "30s", value_name = "DURATION", value_parser = parse_backoff)]
    pub max_backoff: Duration,
}

/// `revaer add`.
#[derive(Debug, Args)]
pub struct AddArgs {
    /// `magnet:?xt=urn:btih:...`, a path to a .torrent file, or `-` to read
    /// the .torrent from stdin.
    #[arg(value_name = "MAGNET|FILE")]
    pub source: String,
    /// Tag (repeatable or comma-separated).
    #[arg(long, value_delimiter = ',', value_parser = parse_label)]
    pub tag: Vec<String>,
    /// Category.
    #[arg(long, value_parser = parse_label)]
    pub category: Option<String>,
    /// Add without starting.
    #[arg(long)]
    pub paused: bool,
    /// Download pieces in order.
    #[arg(long)]
    pub sequential: bool,
    /// Sub-directory of the downloads dir to save into.
    #[arg(long, value_name = "DIR", value_parser = parse_save_path)]
    pub save_path: Option<String>,
}

/// `revaer select`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("rules").required(true).multiple(true).args(["file", "json", "only", "skip"])))]
pub struct SelectArgs {
    /// Torrent id (40 hex digits).
    #[arg(value_parser = parse_torrent_id)]
    pub id: TorrentId,
    /// Rules from a JSON file: `{"rules": [...]}` or just the array.
    #[arg(long, value_name = "PATH", conflicts_with_all = ["json", "only", "skip"])]
    pub file: Option<PathBuf>,
    /// Rules as JSON: `[{"glob": "*.nfo", "priority": 0}, {"index": 2, "priority": 7}]`.
    #[arg(long, value_name = "RULES", conflicts_with_all = ["only", "skip"])]
    pub json: Option<String>,
    /// Download only files matching GLOB (repeatable); all others are skipped.
    #[arg(long, value_name = "GLOB")]
    pub only: Vec<String>,
    /// Skip files matching GLOB (repeatable), applied after --only.
    #[arg(long, value_name = "GLOB")]
    pub skip: Vec<String>,
    /// Priority for files chosen by --only, 1–7.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u8).range(1..=7))]
    pub priority: u8,
    /// Check the rules and show the outcome without applying it.
    #[arg(long)]
    pub dry_run: bool,
}

/// `revaer action`.
#[derive(Debug, Args)]
pub struct ActionArgs {
    /// Torrent id (40 hex digits).
    #[arg(value_parser = parse_torrent_id)]
    pub id: TorrentId,
    #[command(subcommand)]
    pub action: ActionCommand,
}

/// The actions.
#[derive(Debug, Clone, Subcommand)]
pub enum ActionCommand {
    /// Stop transferring.
    Pause,
    /// Start again.
    Resume,
    /// Forget the torrent, keep its data.
    Remove,
    /// Forget the torrent and delete its downloaded data.
    RemoveData,
    /// Announce to every tracker now.
    Reannounce,
    /// Verify the data on disk.
    Recheck,
    /// Run the torrent's failed FsOps (post-processing) job again.
    FsopsRetry,
    /// Download pieces in order (`on`) or rarest first (`off`).
    Sequential {
        #[arg(value_enum)]
        mode: OnOff,
    },
    /// Per-torrent limits, e.g. `--down 5MiB/s --up 1MiB/s`; `unlimited`
    /// lifts one. A side not given keeps its current limit.
    #[command(group(clap::ArgGroup::new("side").required(true).multiple(true).args(["down", "up"])))]
    Rate {
        /// Download limit.
        #[arg(long, value_name = "RATE", value_parser = parse_rate)]
        down: Option<Rate>,
        /// Upload limit.
        #[arg(long, value_name = "RATE", value_parser = parse_rate)]
        up: Option<Rate>,
    },
}

/// `on` / `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnOff {
    On,
    Off,
}

/// `revaer label`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("labels").required(true).multiple(true).args(["tag", "no_tags", "category"])))]
pub struct LabelArgs {
    /// Torrent id (40 hex digits).
    #[arg(value_parser = parse_torrent_id)]
    pub id: TorrentId,
    /// The new tags (repeatable or comma-separated), replacing the old.
    #[arg(long, value_delimiter = ',', value_parser = parse_label, conflicts_with = "no_tags")]
    pub tag: Vec<String>,
    /// Remove every tag.
    #[arg(long)]
    pub no_tags: bool,
    /// The new category; `""` clears it.
    #[arg(long, value_parser = parse_category_patch)]
    pub category: Option<String>,
}

/// `revaer tail`.
#[derive(Debug, Args)]
pub struct TailArgs {
    /// Only events of these torrents (repeatable or comma-separated).
    #[arg(long, value_delimiter = ',', value_parser = parse_torrent_id)]
    pub torrent: Vec<TorrentId>,
    /// Only these event types (repeatable or comma-separated).
    #[arg(long, value_delimiter = ',', value_parser = kind_parser())]
    pub kind: Vec<EventKind>,
    /// `state_changed` events only to these states.
    #[arg(long, value_delimiter = ',', value_parser = state_parser())]
    pub state: Vec<TorrentState>,
    /// Where the last printed event id is kept [default:
    /// `$XDG_STATE_HOME/revaer/tail-<hash of URL and filters>.json`].
    #[arg(long, value_name = "PATH")]
    pub state_file: Option<PathBuf>,
    /// Neither read nor write a state file.
    #[arg(long, conflicts_with = "state_file")]
    pub no_state: bool,
    /// Replay the events after this id, whatever the state file says.
    #[arg(long, value_name = "ID")]
    pub since: Option<u64>,
    /// Exit 0 after printing this many events.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
    /// Reconnect when nothing (not even a keep-alive) arrived for this long.
    #[arg(long, default_value = "45s", value_name = "DURATION", value_parser = parse_interval)]
    pub idle_timeout: Duration,
    #[command(flatten)]
    pub retry: RetryArgs,
}

/// `revaer keys`.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Issue a key; its secret is shown once.
    Issue(KeyIssueArgs),
    /// List keys (never their secrets).
    Ls,
    /// New secret for a key; the old one keeps working for --grace.
    Rotate(KeyRotateArgs),
    /// Revoke a key; it is refused from the next request on.
    Revoke {
        /// Key id (as `keys ls` shows it).
        #[arg(value_parser = parse_key_id)]
        id: String,
    },
}

/// `revaer keys issue`.
#[derive(Debug, Args)]
pub struct KeyIssueArgs {
    /// A name for people (1–100 characters).
    #[arg(long, value_parser = parse_key_name)]
    pub name: String,
    /// `read` (GET routes only) or `admin` (everything).
    #[arg(long, value_parser = scope_parser())]
    pub scope: KeyScope,
    /// Requests per minute for this key (default: the daemon's).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub rate_per_minute: Option<u32>,
    /// Write the secret to this new file (mode 0600) instead of stdout.
    #[arg(long, value_name = "PATH")]
    pub save_to: Option<PathBuf>,
}

/// `revaer keys rotate`.
#[derive(Debug, Args)]
pub struct KeyRotateArgs {
    /// Key id (as `keys ls` shows it).
    #[arg(value_parser = parse_key_id)]
    pub id: String,
    /// How long the old secret keeps working (at most 7d).
    #[arg(long, default_value = "1h", value_name = "DURATION", value_parser = parse_grace)]
    pub grace: Duration,
    /// Write the new secret to this new file (mode 0600) instead of stdout.
    #[arg(long, value_name = "PATH")]
    pub save_to: Option<PathBuf>,
}

// ------------------------------------------------------------ validation

/// Never fails: clap would echo a refused value, and this one is a secret.
/// [`check_key`] validates it later with a masked message.
#[allow(clippy::unnecessary_wraps, reason = "clap's value parser signature")]
fn parse_secret(text: &str) -> Result<Secret, String> {
    Ok(Secret::new(text))
}

/// A key is one non-empty word.
pub fn check_key(key: &Secret, source: &str) -> Result<(), String> {
    if key.expose().is_empty() {
        return Err(format!("{source}: the API key is empty"));
    }
    if key
        .expose()
        .chars()
        .any(|c| c.is_control() || c.is_whitespace())
    {
        return Err(format!(
            "{source}: the API key ({}) contains whitespace or control characters",
            key.masked()
        ));
    }
    Ok(())
}

fn parse_timeout(text: &str) -> Result<Duration, String> {
    let d = parse_duration(text)?;
    if d < Duration::from_millis(100) || d > Duration::from_secs(3600) {
        return Err("the timeout must be between 100ms and 1h".to_owned());
    }
    Ok(d)
}

fn parse_interval(text: &str) -> Result<Duration, String> {
    let d = parse_duration(text)?;
    if d < Duration::from_millis(100) || d > Duration::from_secs(3600) {
        return Err("must be between 100ms and 1h".to_owned());
    }
    Ok(d)
}

fn parse_backoff(text: &str) -> Result<Duration, String> {
    let d = parse_duration(text)?;
    if d < Duration::from_millis(10) || d > Duration::from_secs(3600) {
        return Err("must be between 10ms and 1h".to_owned());
    }
    Ok(d)
}

fn parse_grace(text: &str) -> Result<Duration, String> {
    let d = parse_duration(text)?;
    if d > Duration::from_secs(604_800) {
        return Err("the grace period is at most 7d".to_owned());
    }
    Ok(d)
}

/// A torrent id: 40 hexadecimal digits, normalised to lower case.
pub fn parse_torrent_id(text: &str) -> Result<TorrentId, String> {
    let t = text.trim();
    if t.len() == 40 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(TorrentId(t.to_ascii_lowercase()))
    } else {
        Err(format!(
            "`{text}` is not a torrent id (40 hexadecimal digits)"
        ))
    }
}

fn parse_key_id(text: &str) -> Result<String, String> {
    if !text.is_empty()
        && text.len() <= 64
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        Ok(text.to_owned())
    } else {
        Err(format!("`{text}` is not a key id"))
    }
}

fn parse_key_name(text: &str) -> Result<String, String> {
    let n = text.chars().count();
    if (1..=100).contains(&n) && !text.chars().any(char::is_control) {
        Ok(text.to_owned())
    } else {
        Err("a key name is 1 to 100 characters, without control characters".to_owned())
    }
}

fn parse_cursor(text: &str) -> Result<String, String> {
    if !text.is_empty() && text.len() <= 128 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "`{text}` is not a cursor (use the `next` of a page)"
        ))
    }
}

/// A tag or category, with the API's rules (1–64 bytes, no commas or
/// control characters, no surrounding whitespace).
pub fn parse_label(text: &str) -> Result<String, String> {
    let max = revaer_api_models::torrents::MAX_LABEL_BYTES;
    if text.is_empty() {
        Err("a label must not be empty".to_owned())
    } else if text.len() > max {
        Err(format!("`{text}` is longer than {max} bytes"))
    } else if text.chars().any(|c| c.is_control() || c == ',') {
        Err(format!("`{text}` contains a comma or a control character"))
    } else if text.trim() != text {
        Err(format!("`{text}` starts or ends with whitespace"))
    } else {
        Ok(text.to_owned())
    }
}

fn parse_category_patch(text: &str) -> Result<String, String> {
    if text.is_empty() {
        Ok(String::new())
    } else {
        parse_label(text)
    }
}

fn parse_tracker(text: &str) -> Result<String, String> {
    if !text.is_empty()
        && text.len() <= 253
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
    {
        Ok(text.to_ascii_lowercase())
    } else {
        Err(format!("`{text}` is not a host name"))
    }
}

fn parse_extension(text: &str) -> Result<String, String> {
    let ext = text.trim().trim_start_matches('.');
    if !ext.is_empty() && ext.len() <= 32 && ext.bytes().all(|b| b.is_ascii_alphanumeric()) {
        Ok(ext.to_ascii_lowercase())
    } else {
        Err(format!("`{text}` is not a file extension"))
    }
}

fn parse_name_filter(text: &str) -> Result<String, String> {
    if !text.is_empty() && text.len() <= 256 && !text.chars().any(char::is_control) {
        Ok(text.to_owned())
    } else {
        Err("a name filter is 1 to 256 bytes, without control characters".to_owned())
    }
}

fn parse_save_path(text: &str) -> Result<String, String> {
    let plain = std::path::Path::new(text)
        .components()
        .all(|c| matches!(c, std::path::Component::Normal(_)));
    if text.is_empty() || text.len() > 1024 || text.contains('\0') || !plain {
        Err(
            "the save path must be a relative path below the downloads dir, without `.` or `..`"
                .to_owned(),
        )
    } else {
        Ok(text.to_owned())
    }
}

fn state_parser() -> impl clap::builder::TypedValueParser<Value = TorrentState> {
    PossibleValuesParser::new(TorrentState::ALL.map(TorrentState::as_str))
        .try_map(|s| TorrentState::parse(&s).ok_or("unknown state"))
}

fn kind_parser() -> impl clap::builder::TypedValueParser<Value = EventKind> {
    PossibleValuesParser::new(EventKind::ALL.map(EventKind::as_str))
        .try_map(|s| EventKind::parse(&s).ok_or("unknown event type"))
}

fn scope_parser() -> impl clap::builder::TypedValueParser<Value = KeyScope> {
    PossibleValuesParser::new(["read", "admin"]).map(|s| {
        if s == "admin" {
            KeyScope::Admin
        } else {
            KeyScope::Read
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn ids_and_labels_are_validated() {
        let id = "AB".repeat(20);
        assert_eq!(parse_torrent_id(&id), Ok(TorrentId("ab".repeat(20))));
        assert!(parse_torrent_id("abc").is_err());
        assert!(parse_torrent_id(&"zz".repeat(20)).is_err());
        assert!(parse_key_id("0a1b2c").is_ok());
        assert!(parse_key_id("../x").is_err());
        assert!(parse_key_id("").is_err());
        assert!(parse_label("tv").is_ok());
        assert!(parse_label("a,b").is_err());
        assert!(parse_label(" a").is_err());
        assert!(parse_label("").is_err());
        assert!(parse_label(&"x".repeat(65)).is_err());
        assert_eq!(parse_category_patch(""), Ok(String::new()));
        assert_eq!(parse_extension(".MKV"), Ok("mkv".to_owned()));
        assert!(parse_extension("a/b").is_err());
        assert!(parse_tracker("tracker.example.org").is_ok());
        assert!(parse_tracker("a b").is_err());
        assert!(parse_save_path("shows/x").is_ok());
        assert!(parse_save_path("../x").is_err());
        assert!(parse_save_path("/abs").is_err());
        assert!(parse_cursor("00ff").is_ok());
        assert!(parse_cursor("nope").is_err());
        assert!(parse_name_filter("").is_err());
        assert!(parse_key_name("ci").is_ok());
        assert!(parse_key_name("").is_err());
        assert!(check_key(&parse_secret(" ").unwrap(), "--api-key").is_err());
        let err = check_key(&parse_secret("rvk_secret secretsecretsecret").unwrap(), "x");
        assert!(!err.unwrap_err().contains("secret "));
        assert!(check_key(&parse_secret("rvk_ok").unwrap(), "x").is_ok());
        assert!(parse_timeout("1ms").is_err());
        assert!(parse_timeout("5s").is_ok());
        assert!(parse_interval("2h").is_err());
        assert!(parse_backoff("1ms").is_err());
        assert!(parse_grace("8d").is_err());
        assert!(parse_grace("0").is_ok());
    }
}
