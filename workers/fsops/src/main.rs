//! `revaer-fsops`: a worker process of Revaer, only ever started by `revaerd`.
//!
//! FsOps post-processes completed torrents (see the FsOps issue); at this stage
//! it connects to the supervisor, locks itself into its sandbox (no network
//! sockets at all), and answers health pings and sandbox probes on
//! `run/fsops.sock`.

use std::process::ExitCode;

fn main() -> ExitCode {
    revaer_worker_bootstrap::run_data_worker(revaer_ipc::Role::Fsops, |_| {
        Ok(revaer_worker_bootstrap::data_server::NoService)
    })
}
