//! `revaer-engine`: a worker process of Revaer, only ever started by `revaerd`.
//!
//! The engine owns the libtorrent session (see the engine issue); at this stage it
//! connects to the supervisor, locks itself into its sandbox, and answers
//! health pings and sandbox probes on `run/engine.sock`.

use std::process::ExitCode;

fn main() -> ExitCode {
    revaer_worker_bootstrap::run_data_worker(revaer_ipc::Role::Engine)
}
