//! `revaer-fsops`: the post-processing worker, only ever started by
//! `revaerd`. It sandboxes itself (downloads dir and library only, no
//! network sockets), then serves jobs on `run/fsops.sock` (see the library
//! crate and ADR 007).
//!
//! Exit codes: 0 orderly shutdown, 70 could not start, 71 no runtime, 74
//! failed while serving, 75 the supervisor vanished, 78 the config changed
//! what the sandbox must cover (`library_root`, owner/group): restart me.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use revaer_fsops::service::DRAIN_TIMEOUT;
use revaer_fsops::{EXIT_RESTART_FOR_CONFIG, FsopsService};
use revaer_ipc::Role;
use revaer_worker_bootstrap::data_server::{self, Stop};
use revaer_worker_bootstrap::{Bootstrapped, bootstrap, logging, worker_runtime};

fn main() -> ExitCode {
    let role = Role::Fsops;
    logging::init(role.as_str());
    // Sandbox first: no thread or runtime exists yet.
    let boot = match bootstrap(role) {
        Ok(boot) => boot,
        Err(e) => {
            tracing::error!(worker = role.as_str(), error = %e, "cannot start");
            return ExitCode::from(70);
        }
    };
    let runtime = match worker_runtime() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(worker = role.as_str(), error = %e, "cannot build the async runtime");
            return ExitCode::from(71);
        }
    };
    let code = runtime.block_on(serve(boot));
    // A copy cut short is resumed by the next process; do not wait for it.
    runtime.shutdown_timeout(Duration::from_millis(500));
    code
}

async fn serve(boot: Bootstrapped) -> ExitCode {
    let socket = boot.layout.fsops_socket();
    let service = Arc::new(FsopsService::new(&boot.layout, &boot.init.config.fsops));
    let restart = service.restart_requested();
    tokio::select! {
        served = data_server::serve(boot, Arc::clone(&service)) => match served {
            Ok(Stop::Shutdown) => ExitCode::SUCCESS,
            Ok(Stop::SupervisorGone) => ExitCode::from(75),
            Err(e) => {
                tracing::error!(worker = "fsops", error = %e, "failed");
                ExitCode::from(74)
            }
        },
        () = restart => {
            if !service.drain(DRAIN_TIMEOUT).await {
                tracing::warn!("fsops jobs still running; they resume after the restart");
            }
            let _ = std::fs::remove_file(&socket);
            tracing::warn!(code = EXIT_RESTART_FOR_CONFIG, "fsops exits to be restarted with its new sandbox");
            ExitCode::from(EXIT_RESTART_FOR_CONFIG)
        }
    }
}
