//! `revaer-api`: the HTTP control plane worker, only ever started by
//! `revaerd`. Sandboxes itself, connects to the engine and FsOps, serves
//! HTTP, and stops intake first when the daemon shuts down.

use std::process::ExitCode;

use revaer_api::control::{self, ControlEnd, ControlOutputs};
use revaer_api::engine_events::EngineEvents;
use revaer_api::event_log::EventLog;
use revaer_api::fsops_dispatch::FsopsDispatcher;
use revaer_api::links::{LinkParams, WorkerLink};
use revaer_api::read_model::ReadModel;
use revaer_api::store::Store;
use revaer_api::store::keys::Keys;
use revaer_api::{AppParts, AppState, routes, server};
use revaer_ipc::{Connection, Role};
use revaer_worker_bootstrap::{Bootstrapped, bootstrap, data_server, logging, worker_runtime};
use std::sync::Arc;
use tokio::sync::{mpsc, watch};

/// mimalloc instead of glibc's malloc: the request path allocates and frees
/// many small buffers across threads. `just bench-api` (8 s runs, same
/// build otherwise): 0.69× the axum ceiling with glibc, 0.81× with
/// mimalloc, for ~20 MB more RSS.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    logging::init("api");
    // Sandbox first: no thread or runtime exists yet.
    let boot = match bootstrap(Role::Api) {
        Ok(boot) => boot,
        Err(e) => {
            tracing::error!(error = %e, "revaer-api cannot start");
            return ExitCode::from(70);
        }
    };
    let runtime = match worker_runtime() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the async runtime");
            return ExitCode::from(71);
        }
    };
    let ended = runtime.block_on(run(boot));
    drop(runtime);
    revaer_telemetry::shutdown();
    match ended {
        Ok(ControlEnd::Shutdown) => ExitCode::SUCCESS,
        Ok(ControlEnd::SupervisorGone) => ExitCode::from(75),
        Err(e) => {
            tracing::error!(error = %e, "revaer-api failed");
            ExitCode::from(74)
        }
    }
}

async fn run(boot: Bootstrapped) -> Result<ControlEnd, Box<dyn std::error::Error>> {
    let listen_addr = boot.init.config.api_listen()?;
    let uid = nix::unistd::geteuid().as_raw();
    let params = |role: Role, socket| LinkParams {
        role,
        socket,
        secret: boot.init.secret.clone(),
        build_id: revaer_ipc::build_info::build_id(),
        uid,
    };
    let engine = WorkerLink::spawn(params(Role::Engine, boot.layout.engine_socket()));
    let engine_events = EngineEvents::spawn(params(Role::Engine, boot.layout.engine_socket()));
    let fsops = WorkerLink::spawn(params(Role::Fsops, boot.layout.fsops_socket()));
    let store = Arc::new(Store::open(&boot.layout.api_database())?);
    let keys = Arc::new(Keys::load(Arc::clone(&store))?);
    let (supervision_tx, supervision_rx) = watch::channel(None);
    let events = EventLog::start(Arc::clone(&store), &engine_events)?;
    let torrents = ReadModel::start(Arc::clone(&store), engine.clone(), &engine_events)?;
    let fsops_jobs = FsopsDispatcher::start(
        Arc::clone(&store),
        Arc::clone(&events),
        Arc::clone(&torrents),
        engine.clone(),
        &engine_events,
        params(Role::Fsops, boot.layout.fsops_socket()),
    )?;
    fsops_jobs.set_moves(boot.init.config.fsops.move_mode == revaer_config::MoveMode::Move);
    let state = AppState::new(AppParts {
        engine,
        engine_events,
        fsops,
        supervision: supervision_rx,
        sandbox: boot.sandbox.clone(),
        store,
        keys,
        events,
        torrents,
        fsops_jobs,
        default_rate_per_minute: boot.init.config.api.default_rate_per_minute,
        config_revision: boot.init.config_revision,
    });
    state.spawn_store_probe();
    revaer_api::health_events::spawn(Arc::clone(&state));

    let control = revaer_ipc::control::into_tokio(boot.control)?;
    let (rx, mut tx) = Connection::new(control).into_split();
    data_server::send_ready(&mut tx, Role::Api, boot.sandbox).await?;

    let (listen_tx, listen_rx) = watch::channel(listen_addr);
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (bound_tx, bound_rx) = mpsc::unbounded_channel();
    let router = routes::router(Arc::clone(&state));
    let metrics = Arc::clone(&state.metrics);
    let mut http = tokio::spawn(async move {
        server::serve(router, listen_rx, shutdown_rx, bound_tx, &metrics).await
    });

    let outputs = ControlOutputs {
        supervision: supervision_tx,
        listen: listen_tx,
    };
    let mut control_task = tokio::spawn(control::run(rx, tx, state, outputs, bound_rx));
    tokio::select! {
        result = &mut control_task => {
            let end = result??;
            // Stop intake: refuse new connections, finish in-flight requests.
            let _ = shutdown_tx.send(true);
            http.await??;
            tracing::info!(?end, "API stopped");
            Ok(end)
        }
        result = &mut http => {
            control_task.abort();
            result??;
            Err("HTTP server ended unexpectedly".into())
        }
    }
}
