//! `revaer-engine`: the BitTorrent engine worker, only ever started by
//! `revaerd`. It sandboxes itself, runs one libtorrent session over the
//! downloads dir, keeps every torrent's resume data in `state/engine/`, and
//! serves commands and events to the API on `run/engine.sock`. It keeps
//! seeding whether or not the API is connected.

use std::process::ExitCode;

fn main() -> ExitCode {
    revaer_worker_bootstrap::run_data_worker(
        revaer_ipc::Role::Engine,
        revaer_engine::EngineService::start,
    )
}
