//! Start-up shared by every Revaer worker (API, engine, FsOps).
//!
//! A worker is only ever started by `revaerd`. Before it runs a single line
//! of its own logic it must: die with its parent, take the control channel
//! from its stdin, read its [`WorkerInit`] (boot secret, data dir, config),
//! and lock itself into its sandbox. Doing this in one place means no worker
//! can forget a step or do them in the wrong order.
//!
//! [`data_server`] then serves the engine's and FsOps' data channel (ping,
//! sandbox report, test probes) until a real protocol replaces it.

pub mod data_server;
pub mod logging;
#[cfg(feature = "test-probes")]
pub mod probes;

use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use revaer_config::DataLayout;
use revaer_ipc::frame::MAX_FRAME_BYTES;
use revaer_ipc::{PROTOCOL_VERSION, Role, SandboxReport, SupervisorToWorker, WorkerInit};
use revaer_sandbox::SandboxProfile;

/// Environment variable through which the supervisor names itself, so a
/// worker can tell whether its parent is already gone.
pub const SUPERVISOR_PID_ENV: &str = "REVAER_SUPERVISOR_PID";

/// How long a worker waits for its `Init` frame.
const INIT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a worker could not start. Each is fatal: the supervisor logs the exit
/// and restarts the worker with backoff.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("{0} must be started by revaerd (missing {SUPERVISOR_PID_ENV})")]
    NotSupervised(&'static str),
    #[error("the supervisor (pid {expected}) is already gone; parent is now {actual}")]
    ParentGone { expected: i32, actual: i32 },
    #[error("cannot arrange to die with the supervisor: {0}")]
    DeathSignal(nix::Error),
    #[error("control channel: {0}")]
    Control(#[from] revaer_ipc::IpcError),
    #[error("reading the init frame: {0}")]
    InitRead(std::io::Error),
    #[error("init frame of {0} bytes exceeds the frame bound")]
    InitTooLarge(usize),
    #[error("init frame rejected: {0}")]
    InitInvalid(String),
    #[error("sandbox: {0}")]
    Sandbox(#[from] revaer_sandbox::SandboxError),
    #[error("runtime: {0}")]
    Runtime(std::io::Error),
    #[error("cannot start the service: {0}")]
    Service(String),
}

/// Everything a worker has once it is sandboxed.
#[derive(Debug)]
pub struct Bootstrapped {
    pub init: WorkerInit,
    pub layout: DataLayout,
    /// The control channel to the supervisor (blocking std socket; convert
    /// with [`revaer_ipc::control::into_tokio`] inside a runtime).
    pub control: UnixStream,
    pub sandbox: SandboxReport,
    pub started: Instant,
}

/// Runs the start-up sequence for `role`. Must be called first thing in
/// `main`, before any thread or runtime exists, so the sandbox covers every
/// thread the worker will ever have.
pub fn bootstrap(role: Role) -> Result<Bootstrapped, BootstrapError> {
    let started = Instant::now();
    die_with_supervisor(role)?;
    let mut control = revaer_ipc::control::adopt_stdin_control()?;
    let init = read_init(&mut control, role)?;
    let layout = DataLayout::new(&init.data_dir);
    let profile = profile_for(role, &layout, &init, control.as_raw_fd());
    let sandbox = revaer_sandbox::apply(&profile)?;
    tracing::info!(
        worker = role.as_str(),
        landlock = %sandbox.landlock_status,
        seccomp = sandbox.seccomp,
        uid = sandbox.uid,
        "sandbox applied"
    );
    // Traces leave over TCP: a worker without network (FsOps) relays its
    // spans through the API instead (ADR 008). Still before any thread.
    if !profile.deny_inet_sockets
        && let Err(e) = revaer_telemetry::init(role.binary_name())
    {
        tracing::warn!(worker = role.as_str(), error = %e, "traces are not exported");
    }
    Ok(Bootstrapped {
        init,
        layout,
        control,
        sandbox,
        started,
    })
}

/// Makes the kernel kill us if the supervisor dies, then checks it has not
/// died already (the classic race between fork and `PR_SET_PDEATHSIG`).
fn die_with_supervisor(role: Role) -> Result<(), BootstrapError> {
    nix::sys::prctl::set_pdeathsig(Some(Signal::SIGKILL)).map_err(BootstrapError::DeathSignal)?;
    let expected: i32 = std::env::var(SUPERVISOR_PID_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .ok_or(BootstrapError::NotSupervised(role.binary_name()))?;
    let actual = nix::unistd::getppid().as_raw();
    if actual != expected {
        return Err(BootstrapError::ParentGone { expected, actual });
    }
    Ok(())
}

/// Reads exactly one frame (the `Init`) with blocking I/O, before any async
/// runtime exists. Reads no byte beyond that frame, so the async connection
/// built afterwards starts at a frame boundary.
fn read_init(control: &mut UnixStream, role: Role) -> Result<WorkerInit, BootstrapError> {
    control
        .set_read_timeout(Some(INIT_TIMEOUT))
        .map_err(BootstrapError::InitRead)?;
    let mut len_bytes = [0_u8; 4];
    control
        .read_exact(&mut len_bytes)
        .map_err(BootstrapError::InitRead)?;
    let len = usize::try_from(u32::from_be_bytes(len_bytes)).unwrap_or(usize::MAX);
    if len > MAX_FRAME_BYTES {
        return Err(BootstrapError::InitTooLarge(len));
    }
    let mut frame = vec![0_u8; len];
    control
        .read_exact(&mut frame)
        .map_err(BootstrapError::InitRead)?;
    control
        .set_read_timeout(None)
        .map_err(BootstrapError::InitRead)?;
    let SupervisorToWorker::Init(init) = revaer_ipc::codec::decode::<SupervisorToWorker>(&frame)?
    else {
        return Err(BootstrapError::InitInvalid(
            "first control frame is not Init".to_owned(),
        ));
    };
    if init.protocol_version != PROTOCOL_VERSION {
        return Err(BootstrapError::InitInvalid(format!(
            "protocol version {} (this worker speaks {PROTOCOL_VERSION})",
            init.protocol_version
        )));
    }
    let ours = revaer_ipc::build_info::build_id();
    if init.build_id != ours {
        return Err(BootstrapError::InitInvalid(format!(
            "supervisor build {} differs from worker build {ours}",
            init.build_id
        )));
    }
    if init.role != role {
        return Err(BootstrapError::InitInvalid(format!(
            "started as {} but told to be {}",
            role, init.role
        )));
    }
    Ok(*init)
}

/// The per-worker sandbox of DESIGN §3 / ADR 003.
#[must_use]
pub fn profile_for(
    role: Role,
    layout: &DataLayout,
    init: &WorkerInit,
    control_fd: std::os::fd::RawFd,
) -> SandboxProfile {
    let identity = init
        .config
        .sandbox
        .worker_uid
        .zip(init.config.sandbox.worker_gid);
    let mut keep_capabilities = Vec::new();
    let (name, read_write, read_only, deny_inet_sockets): (_, Vec<PathBuf>, Vec<PathBuf>, _) =
        match role {
            Role::Engine => (
                "engine",
                vec![layout.downloads(), layout.state_engine(), layout.run_dir()],
                vec![
                    PathBuf::from("/etc/ssl"),
                    PathBuf::from("/etc/resolv.conf"),
                    PathBuf::from("/etc/hosts"),
                    PathBuf::from("/etc/nsswitch.conf"),
                    PathBuf::from("/etc/gai.conf"),
                    PathBuf::from("/etc/host.conf"),
                ],
                false,
            ),
            Role::Fsops => {
                // The library may live outside the data dir (`[fsops]
                // library_root`); Landlock can only grant what exists, so
                // it is created here, before the sandbox, as the supervisor
                // creates `<data>/library`. Changing it later restarts
                // FsOps (ADR 007).
                let library = init.config.fsops.effective_library_root(layout);
                if let Err(e) = std::fs::create_dir_all(&library) {
                    tracing::warn!(library = %library.display(), error = %e, "cannot create the library root");
                }
                // chown needs CAP_CHOWN (and CAP_FOWNER to chmod what it
                // handed over); only root can keep them.
                if init.config.fsops.wants_chown() && nix::unistd::geteuid().is_root() {
                    keep_capabilities = vec![
                        revaer_sandbox::Capability::CAP_CHOWN,
                        revaer_sandbox::Capability::CAP_FOWNER,
                    ];
                }
                (
                    "fsops",
                    vec![layout.downloads(), library, layout.run_dir()],
                    vec![],
                    true,
                )
            }
            Role::Api | Role::Supervisor => (
                "api",
                vec![layout.state_api()],
                // Served docs, when installed beside the data.
                vec![layout.root().join("docs")]
                    .into_iter()
                    .filter(|p| p.exists())
                    .collect(),
                false,
            ),
        };
    #[cfg(feature = "test-probes")]
    let read_write = with_coverage_output(read_write);
    SandboxProfile {
        name,
        read_write,
        read_only,
        deny_inet_sockets,
        keep_capabilities,
        switch_identity: identity,
        keep_fds: vec![control_fd],
    }
}

/// `main` of the engine and FsOps workers at this stage: bootstrap, then
/// serve the data channel until shutdown. Exit codes: 0 orderly shutdown,
/// 70 could not start, 71 no runtime, 74 failed while serving, 75 the
/// supervisor vanished.
#[must_use]
pub fn run_data_worker<S, F>(role: Role, make_service: F) -> std::process::ExitCode
where
    S: data_server::Service,
    F: FnOnce(&Bootstrapped) -> Result<S, String>,
{
    use std::process::ExitCode;
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
    let served = runtime.block_on(async {
        let service = make_service(&boot).map_err(BootstrapError::Service)?;
        data_server::serve(boot, std::sync::Arc::new(service)).await
    });
    drop(runtime);
    revaer_telemetry::shutdown();
    match served {
        Ok(data_server::Stop::Shutdown) => ExitCode::SUCCESS,
        Ok(data_server::Stop::SupervisorGone) => ExitCode::from(75),
        Err(e) => {
            tracing::error!(worker = role.as_str(), error = %e, "failed");
            ExitCode::from(74)
        }
    }
}

/// The multi-threaded runtime every worker runs on, built after the sandbox.
pub fn worker_runtime() -> Result<tokio::runtime::Runtime, BootstrapError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(BootstrapError::Runtime)
}

/// Test builds only: a coverage-instrumented worker must be able to write its
/// profile when it exits, so the directory named by `LLVM_PROFILE_FILE` (set
/// by `just cov`, passed through by the supervisor) joins its writable set.
#[cfg(feature = "test-probes")]
fn with_coverage_output(mut read_write: Vec<PathBuf>) -> Vec<PathBuf> {
    if let Some(dir) = std::env::var_os("LLVM_PROFILE_FILE")
        .map(PathBuf::from)
        .and_then(|p| p.parent().map(std::path::Path::to_path_buf))
        .filter(|dir| dir.is_dir())
    {
        read_write.push(dir);
    }
    read_write
}
