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

/// Where the first admin key is on its way to `<data>/bootstrap-admin.key`.
#[derive(Debug)]
enum Bootstrap {
    /// Asked the supervisor to store this key under its pending name.
    Storing(crate::store::keys::SecretKey),
    /// Registered (or found registered); asked the supervisor to publish it.
    Publishing,
    /// Published, not needed, or given up on (logged).
    Done,
}

/// Runs until the supervisor asks for shutdown or disappears.
///
/// First start (no admin key): a fresh admin key is handed to the supervisor
/// to write under a pending name (the API's sandbox cannot reach the
/// data-dir root), registered once that file is on disk, and only then
/// published as `<data>/bootstrap-admin.key`. So a failure or crash in
/// between never leaves an admin key nobody holds, and the file users read
/// never holds a key that does not work yet. Until the key is published,
/// supervision snapshots are held back, so `/health/full` is not ok before
/// the key works (scripts wait for ok, then read the file).
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
    let mut bootstrap = match has_admin {
        // A key registered by an earlier start that died before publishing
        // it is published now; with nothing pending this is a no-op.
        Ok(true) => {
            tx.send(&WorkerToSupervisor::PublishBootstrapKey).await?;
            Bootstrap::Publishing
        }
        Ok(false) => match Keys::new_secret() {
            Ok(secret) => {
                tx.send(&WorkerToSupervisor::StoreBootstrapKey {
                    key: MaskedSecret(secret.expose().to_owned()),
                })
                .await?;
                Bootstrap::Storing(secret)
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot create the bootstrap admin key");
                Bootstrap::Done
            }
        },
        Err(e) => {
            tracing::error!(error = %e, "cannot read API keys");
            Bootstrap::Done
        }
    };
    // The newest snapshot received while the bootstrap key is in flight.
    let mut held_back: Option<SupervisionSnapshot> = None;
    loop {
        if matches!(bootstrap, Bootstrap::Done)
            && let Some(snapshot) = held_back.take()
        {
            publish_snapshot(&state, &outputs, snapshot);
        }
        tokio::select! {
            frame = rx.recv::<SupervisorToWorker>() => match frame? {
                Some(SupervisorToWorker::Supervision(snapshot)) => {
                    if matches!(bootstrap, Bootstrap::Done) {
                        publish_snapshot(&state, &outputs, *snapshot);
                    } else {
                        held_back = Some(*snapshot);
                    }
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
                    let before = std::mem::replace(&mut bootstrap, Bootstrap::Done);
                    bootstrap = on_bootstrap_key_stored(&state, &mut tx, outcome, before).await?;
                }
                Some(SupervisorToWorker::BootstrapKeyPublished(outcome)) => {
                    match outcome {
                        Ok(Some(path)) => tracing::info!(path = %path.display(), "bootstrap admin key published"),
                        Ok(None) => {}
                        Err(reason) => tracing::error!(%reason, "bootstrap admin key registered but not published"),
                    }
                    bootstrap = Bootstrap::Done;
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

/// The pending key is on disk: register it, then ask for it to be published.
async fn on_bootstrap_key_stored(
    state: &AppState,
    tx: &mut ConnectionWriter<WriteHalf<UnixStream>>,
    outcome: Result<std::path::PathBuf, String>,
    before: Bootstrap,
) -> Result<Bootstrap, IpcError> {
    match (outcome, before) {
        (Ok(path), Bootstrap::Storing(secret)) => {
            if let Some(delay) = slow_key_register_delay() {
                tokio::time::sleep(delay).await;
            }
            let keys = Arc::clone(&state.keys);
            let registered = tokio::task::spawn_blocking(move || {
                keys.register("bootstrap-admin", Scope::Admin, None, &secret)
            })
            .await
            .unwrap_or_else(|e| Err(StoreError::Invalid(format!("key store task failed: {e}"))));
            match registered {
                Ok(info) => {
                    tracing::info!(key_id = %info.id, pending = %path.display(), "bootstrap admin key issued");
                    tx.send(&WorkerToSupervisor::PublishBootstrapKey).await?;
                    Ok(Bootstrap::Publishing)
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot register the bootstrap admin key");
                    Ok(Bootstrap::Done)
                }
            }
        }
        (Err(reason), _) => {
            tracing::error!(%reason, "bootstrap admin key not written; none issued");
            Ok(Bootstrap::Done)
        }
        (Ok(_), other) => {
            tracing::warn!("unexpected bootstrap key confirmation");
            Ok(other)
        }
    }
}

/// Makes a supervision snapshot the one health is computed from.
fn publish_snapshot(state: &AppState, outputs: &ControlOutputs, snapshot: SupervisionSnapshot) {
    // A new worker process: reconnect now rather than at the next retry.
    state.engine.wake();
    state.engine_events.wake();
    state.fsops.wake();
    outputs.supervision.send_replace(Some(snapshot));
}

/// Test builds only: `REVAER_TEST_SLOW_KEY_REGISTER_MS` delays registering
/// the bootstrap key, as a slow state disk would, so a test can prove the
/// key file never appears before the key works.
fn slow_key_register_delay() -> Option<std::time::Duration> {
    #[cfg(feature = "test-probes")]
    {
        std::env::var("REVAER_TEST_SLOW_KEY_REGISTER_MS")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .map(|ms| std::time::Duration::from_millis(ms.min(10_000)))
    }
    #[cfg(not(feature = "test-probes"))]
    {
        None
    }
}
