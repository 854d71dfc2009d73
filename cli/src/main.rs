//! `revaer`: command-line client for the Revaer daemon. Everything lives in
//! the library ([`revaer_cli::run`]); this only connects it to the process.

use std::process::ExitCode;

fn main() -> ExitCode {
    let io = revaer_cli::output::Io::stdio();
    ExitCode::from(revaer_cli::run(std::env::args_os(), &io))
}
