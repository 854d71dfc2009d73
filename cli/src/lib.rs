//! `revaer`: the command-line client of the Revaer daemon.
//!
//! It speaks only the public HTTP API and reuses its DTOs
//! (`revaer-api-models`). [`run`] is the whole program: it parses the
//! arguments, runs one command and returns the exit code (see
//! [`error::exit`]); `main` only wires it to the real stdout and stderr, so
//! tests run every command in-process against a mock server.

use std::ffi::OsString;

use clap::parser::ValueSource;
use clap::{CommandFactory as _, FromArgMatches as _};

pub mod cli;
pub mod client;
pub mod commands;
pub mod error;
pub mod output;
pub mod retry;
pub mod rules;
pub mod secret;
pub mod sse;
pub mod telemetry;
pub mod units;

use cli::{Cli, Command, GlobalArgs, OutputArg};
use error::{CliError, exit};
use output::{Format, Io, Out};
use secret::{Secret, redact};
use telemetry::Telemetry;

/// Runs the CLI with `args` (the first is the program name) and returns
/// the exit code.
pub fn run<I, T>(args: I, io: &Io) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let color_allowed = io.out_is_terminal && !io.no_color_env;
    let command = Cli::command().color(if color_allowed {
        clap::ColorChoice::Auto
    } else {
        clap::ColorChoice::Never
    });
    let matches = match command.try_get_matches_from(args) {
        Ok(m) => m,
        Err(e) => {
            let code = if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            };
            let text = if color_allowed {
                e.render().ansi().to_string()
            } else {
                e.render().to_string()
            };
            let target = if e.use_stderr() { &io.err } else { &io.out };
            let _ = target.write_str(&text);
            return code;
        }
    };
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => {
            let _ = io.err.write_str(&e.render().to_string());
            return exit::USAGE;
        }
    };
    let key_from_flag = matches.value_source("api_key") == Some(ValueSource::CommandLine);
    let key = match resolve_key(&cli.global, key_from_flag) {
        Ok(k) => k,
        Err(e) => return report(io, &e, None),
    };
    match &cli.command {
        Command::Completions { shell } => return completions(io, *shell),
        Command::Man { out_dir } => return man(io, out_dir.as_deref()),
        _ => {}
    }
    let format = match cli.global.output {
        OutputArg::Table => Format::Table,
        OutputArg::Auto if io.out_is_terminal => Format::Table,
        OutputArg::Json | OutputArg::Auto => Format::Json,
    };
    let out = Out {
        io: io.clone(),
        format,
        color: color_allowed && !cli.global.no_color && format == Format::Table,
    };
    let name = cli.command.name();
    let telemetry = match cli.global.telemetry_endpoint.as_deref() {
        Some(endpoint) if !endpoint.trim().is_empty() => Telemetry::start(name, endpoint)
            .unwrap_or_else(|e| {
                let _ = io
                    .err
                    .write_str(&format!("revaer: {e}; telemetry is off\n"));
                Telemetry::disabled(name)
            }),
        _ => Telemetry::disabled(name),
    };
    let (result, telemetry) = execute(&cli, key.clone(), out, telemetry);
    let code = match &result {
        Ok(()) => exit::OK,
        Err(e) => report(io, e, key.as_ref()),
    };
    if let Some(t) = telemetry {
        t.finish(code);
    }
    code
}

/// Builds the client and the runtime and runs the command.
fn execute(
    cli: &Cli,
    key: Option<Secret>,
    out: Out,
    telemetry: Telemetry,
) -> (Result<(), CliError>, Option<Telemetry>) {
    let base = match client::parse_base_url(&cli.global.api_url) {
        Ok(b) => b,
        Err(e) => return (Err(e), Some(telemetry)),
    };
    let log = cli.global.verbose.then(|| out.io.err.clone());
    let api = match client::Api::new(base, key, cli.global.timeout, telemetry, log) {
        Ok(a) => a,
        Err(e) => return (Err(e), None),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return (Err(CliError::Io(format!("cannot start: {e}"))), None),
    };
    let ctx = commands::Ctx { api, out };
    let result = runtime.block_on(commands::run(&cli.command, &ctx));
    drop(runtime);
    (result, Some(ctx.api.into_telemetry()))
}

/// The key to send: `--api-key` on the command line, else the key file
/// (`--api-key-file` or `REVAER_API_KEY_FILE`), else `REVAER_API_KEY`.
fn resolve_key(global: &GlobalArgs, key_from_flag: bool) -> Result<Option<Secret>, CliError> {
    let (key, source) = match (&global.api_key, &global.api_key_file) {
        (Some(key), _) if key_from_flag => (key.clone(), "--api-key".to_owned()),
        (_, Some(path)) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                CliError::usage(format!("cannot read the key file {}: {e}", path.display()))
            })?;
            (
                Secret::new(&text),
                format!("the key file {}", path.display()),
            )
        }
        (Some(key), None) => (key.clone(), "REVAER_API_KEY".to_owned()),
        (None, None) => return Ok(None),
    };
    cli::check_key(&key, &source).map_err(CliError::usage)?;
    Ok(Some(key))
}

/// Prints a failure to stderr, the key masked; returns its exit code.
fn report(io: &Io, e: &CliError, key: Option<&Secret>) -> u8 {
    let _ = io.err.write_str(&redact(&e.render(), key));
    e.exit_code()
}

fn completions(io: &Io, shell: clap_complete::Shell) -> u8 {
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "revaer", &mut buf);
    match io.out.write_str(&String::from_utf8_lossy(&buf)) {
        Ok(()) => exit::OK,
        Err(e) => report(io, &e, None),
    }
}

fn man(io: &Io, out_dir: Option<&std::path::Path>) -> u8 {
    let written = if let Some(dir) = out_dir {
        std::fs::create_dir_all(dir)
            .and_then(|()| clap_mangen::generate_to(Cli::command(), dir))
            .map(|()| format!("wrote man pages to {}\n", dir.display()))
            .map_err(|e| format!("writing man pages to {}: {e}", dir.display()))
    } else {
        let mut buf = Vec::new();
        clap_mangen::Man::new(Cli::command())
            .render(&mut buf)
            .map(|()| String::from_utf8_lossy(&buf).into_owned())
            .map_err(|e| e.to_string())
    };
    match written
        .map_err(CliError::Io)
        .and_then(|text| io.out.write_str(&text))
    {
        Ok(()) => exit::OK,
        Err(e) => report(io, &e, None),
    }
}
