//! The API's side of its control channel to the supervisor.
//!
//! Inbound: supervision snapshots (worker crashes and restarts, config
//! status), config pushes, and the shutdown request. Outbound: `Ready`, the
//! address the HTTP listener actually bound, and config acknowledgements.

use std::net::SocketAddr;
use std::sync::Arc;

use revaer_ipc::connection::{ConnectionReader, ConnectionWriter};
use revaer_ipc::{
    IpcError, MaskedSecret, SupervisionSnapshot, SupervisorToWorker, WorkerToSupervisor,
};
use tokio::io::{ReadHalf, WriteHalf};
use tokio::net::UnixStream;
use tokio::sync::{mpsc, watch};

use crate::AppState;
use crate::store::StoreError;
use crate::store::keys::{Keys, Scope};

/// Why the control loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlEnd {
    Shutdown,
    SupervisorGone,
}

/// Channels the control loop drives.
#[derive(Debug)]
pub struct ControlOutputs {
    pub supervision: watch::Sender<Option<SupervisionSnapshot>>,
    pub listen: watch::Sender<SocketAddr>,
}

/// Runs until the supervisor asks for shutdown or disappears.
///
/// First start (no admin key): a fresh admin key is handed to the supervisor
/// to write to `<data>/bootstrap-admin.key` — the API's sandbox cannot reach
/// the data-dir root — and is registered only once the file is written, so
/// a failure or crash in between never leaves an admin key nobody holds.
pub async fn run(
    mut rx: ConnectionReader<ReadHalf<UnixStream>>,
    mut tx: ConnectionWriter<WriteHalf<UnixStream>>,
    state: Arc<AppState>,
    outputs: ControlOutputs,
    mut bound: mpsc::UnboundedReceiver<SocketAddr>,
) -> Result<ControlEnd, IpcError> {
    let keys = Arc::clone(&state.keys);
    let has_admin = tokio::task::spawn_blocking(move || keys.has_active_admin())
        .await
        .unwrap_or_else(|e| Err(StoreError::Invalid(format!("key store task failed: {e}"))));
    let mut pending_bootstrap = match has_admin {
        Ok(true) => None,
        Ok(false) => match Keys::new_secret() {
            Ok(secret) => {
                tx.send(&WorkerToSupervisor::StoreBootstrapKey {
                    key: MaskedSecret(secret.expose().to_owned()),
                })
                .await?;
                Some(secret)
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot create the bootstrap admin key");
                None
            }
        },
        Err(e) => {
            tracing::error!(error = %e, "cannot read API keys");
            None
        }
    };
    loop {
        tokio::select! {
            frame = rx.recv::<SupervisorToWorker>() => match frame? {
                Some(SupervisorToWorker::Supervision(snapshot)) => {
                    // A new worker process: reconnect now rather than at the next retry.
                    state.engine.wake();
                    state.engine_events.wake();
                    state.fsops.wake();
                    outputs.supervision.send_replace(Some(*snapshot));
                }
                Some(SupervisorToWorker::ConfigUpdate { revision, config }) => {
                    match config.api_listen() {
                        Ok(addr) => { outputs.listen.send_if_modified(|a| { let changed = *a != addr; *a = addr; changed }); }
                        Err(e) => tracing::error!(error = %e, "supervisor pushed an invalid listen address"),
                    }
                    state.rate_limits.set_default(config.api.default_rate_per_minute);
                    state.fsops_jobs.set_moves(config.fsops.move_mode == revaer_config::MoveMode::Move);
                    let previous = state.config_revision();
                    state.set_config_revision(revision);
                    tx.send(&WorkerToSupervisor::ConfigApplied { revision }).await?;
                    if revision != previous {
                        state.events.append(revaer_api_models::events::Event::ConfigApplied { revision });
                    }
                }
                Some(SupervisorToWorker::BootstrapKeyStored(outcome)) => {
                    match (outcome, pending_bootstrap.take()) {
                        (Ok(path), Some(secret)) => {
                            let keys = Arc::clone(&state.keys);
                            let registered = tokio::task::spawn_blocking(move || keys.register("bootstrap-admin", Scope::Admin, None, &secret))
                                .await
                                .unwrap_or_else(|e| Err(StoreError::Invalid(format!("key store task failed: {e}"))));
                            match registered {
                                Ok(info) => tracing::info!(key_id = %info.id, path = %path.display(), "bootstrap admin key issued"),
                                Err(e) => tracing::error!(error = %e, "cannot register the bootstrap admin key"),
                            }
                        }
                        (Err(reason), _) => tracing::error!(%reason, "bootstrap admin key not written; none issued"),
                        (Ok(_), None) => tracing::warn!("unexpected bootstrap key confirmation"),
                    }
                }
                Some(SupervisorToWorker::Shutdown) => return Ok(ControlEnd::Shutdown),
                Some(SupervisorToWorker::Init(_)) => tracing::warn!("ignoring a second Init"),
                None => return Ok(ControlEnd::SupervisorGone),
            },
            Some(addr) = bound.recv() => {
                tx.send(&WorkerToSupervisor::ApiListening { addr: addr.to_string() }).await?;
            }
        }
    }
}
