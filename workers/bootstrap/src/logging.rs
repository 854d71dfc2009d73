//! Log set-up shared by all Revaer processes: human-readable lines on stderr,
//! filtered by `RUST_LOG` (default `info`), tagged with the process role so
//! interleaved output from four processes stays readable.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. Safe to call once per process.
pub fn init(role: &'static str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(true)
        .try_init();
    tracing::debug!(role, "logging initialised");
}
