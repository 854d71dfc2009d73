//! `revaer`: command-line client for the Revaer daemon. It speaks only the
//! public HTTP API. At this stage it offers `revaer health`; the full
//! command set arrives with the CLI issue.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use revaer_api_models::{HealthFull, HealthStatus, Problem};

/// Administer a Revaer daemon over its HTTP API.
#[derive(Debug, Parser)]
#[command(name = "revaer", version)]
struct Cli {
    /// Base URL of the Revaer API.
    #[arg(
        long,
        env = "REVAER_API_URL",
        default_value = "http://127.0.0.1:7070",
        global = true
    )]
    api_url: String,
    /// Request timeout in seconds.
    #[arg(long, default_value_t = 10, global = true)]
    timeout: u64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show `/health/full`; exits 0 when healthy, 5 when degraded, 6 when unreachable.
    Health,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("revaer: cannot start: {e}");
            return ExitCode::from(7);
        }
    };
    match cli.command {
        Command::Health => runtime.block_on(health(&cli.api_url, cli.timeout)),
    }
}

async fn health(api_url: &str, timeout_s: u64) -> ExitCode {
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(timeout_s.clamp(1, 3600)))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("revaer: {e}");
            return ExitCode::from(7);
        }
    };
    let url = format!("{}/health/full", api_url.trim_end_matches('/'));
    let response = match client.get(&url).send().await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("revaer: cannot reach {url}: {e}");
            return ExitCode::from(6);
        }
    };
    let bytes = match response.bytes().await {
        Ok(b) => b,
        Err(e) => {
            eprintln!("revaer: reading the response: {e}");
            return ExitCode::from(6);
        }
    };
    if let Ok(health) = serde_json::from_slice::<HealthFull>(&bytes) {
        println!(
            "{}",
            serde_json::to_string_pretty(&health).unwrap_or_default()
        );
        return match health.status {
            HealthStatus::Ok => ExitCode::SUCCESS,
            HealthStatus::Degraded => ExitCode::from(5),
        };
    }
    match serde_json::from_slice::<Problem>(&bytes) {
        Ok(p) => eprintln!(
            "revaer: {} ({}): {}",
            p.title,
            p.status,
            p.detail.unwrap_or_default()
        ),
        Err(_) => eprintln!("revaer: unexpected answer from {url}"),
    }
    ExitCode::from(7)
}
