//! `revaerd`: start the Revaer daemon on a data dir.
//!
//! Everything except the data dir has an embedded default; see
//! `<data>/revaer.toml`, written on first start.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

/// Revaer: a privilege-separated, headless BitTorrent daemon.
#[derive(Debug, Parser)]
#[command(name = "revaerd", version)]
struct Args {
    /// Directory holding config, state, downloads and the library.
    #[arg(long, env = "REVAER_DATA_DIR", value_name = "DIR")]
    data_dir: PathBuf,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    // One thread: PR_SET_PDEATHSIG in the workers is tied to the thread that
    // spawned them, so that thread must live as long as the supervisor.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("revaerd: cannot start the async runtime: {e}");
            return ExitCode::from(71);
        }
    };
    match runtime.block_on(revaer_supervisor::run(&args.data_dir)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "revaerd failed");
            eprintln!("revaerd: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
