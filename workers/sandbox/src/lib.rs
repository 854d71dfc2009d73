//! The sandbox every Revaer worker (api, engine, fsops) applies to itself as
//! the first thing in `main`, before any thread or async runtime exists
//! (DESIGN §3, ADR 003). This crate owns the whole sequence so the three
//! workers cannot drift apart; each worker only supplies its
//! [`SandboxProfile`].
//!
//! # Order of [`apply`], and why
//!
//! 0. **Preflight**: refuse to run unless the process has exactly one thread.
//!    Capabilities and Landlock apply to the calling thread (and its future
//!    children) only; a thread started earlier would escape them.
//! 1. **Close inherited fds** (all but 0, 1, 2 and `keep_fds`). First, because
//!    later steps only restrict *opening* things: a leaked descriptor would
//!    survive all of them. Done before this crate opens anything itself.
//! 2. **Hygiene**: `umask 077`, `RLIMIT_CORE` 0, `PR_SET_DUMPABLE` 0. Needs
//!    no privilege; early so that nothing created later is group/world
//!    readable and no crash from here on can dump memory.
//! 3. **Identity** (root only, when asked): `setgroups` → `setgid` →
//!    `setuid`, holding `PR_SET_KEEPCAPS` so step 4 still has the permitted
//!    set to choose from. Before step 4 because switching ids needs
//!    `CAP_SETUID`/`CAP_SETGID`, which step 4 removes.
//! 4. **Capabilities**: everything not in `keep_capabilities` leaves the
//!    bounding, ambient, inheritable, permitted and effective sets. Bounding
//!    needs `CAP_SETPCAP`, so this happens while we may still hold it.
//! 5. **`no_new_privs`**: no later `execve` can gain privileges (setuid
//!    bits, file capabilities). It is also what lets an unprivileged process
//!    install the Landlock ruleset and seccomp filters that follow.
//! 6. **Landlock**: filesystem access limited to the profile's trees.
//!    Before seccomp so that the syscalls Landlock itself needs are not
//!    subject to any filter.
//! 7. **seccomp** (deny-list, TSYNC): last, because it is the step that
//!    could refuse something an earlier step needs (`prctl`, `capset`,
//!    `landlock_*`); nothing in the sequence runs after it except reading
//!    the report back.
//!
//! Everything works unprivileged (step 3 is skipped with a warning, the
//! bounding set is left alone); more is possible when started as root.
//! Landlock is best effort: a kernel without it yields a report saying so
//! (`landlock_status: "not_enforced"`), not an error. Every other failure is
//! an error naming its step, and a worker must exit on it.
//!
//! The environment is *not* scrubbed here: mutating it in-process is
//! `unsafe` in Rust 2024 (and forbidden in this workspace); the supervisor
//! spawns workers with a cleared environment instead.

mod capabilities;
mod error;
mod fds;
mod hygiene;
mod identity;
mod landlock_fs;
mod report;
mod seccomp;

use std::os::fd::RawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

pub use caps;
pub use caps::Capability;
pub use error::SandboxError;
pub use report::{NOT_APPLIED, current_report};
pub use revaer_ipc::protocol::SandboxReport;

/// What one worker may do; see ADR 003 for the per-worker values.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SandboxProfile {
    /// `"api"`, `"engine"` or `"fsops"`; used in logs.
    pub name: &'static str,
    /// Trees with full filesystem access (Landlock). Missing paths are
    /// skipped with a warning.
    pub read_write: Vec<PathBuf>,
    /// Trees (or single files) with read/execute access, e.g. `/etc/ssl`,
    /// `/etc/resolv.conf`. Missing paths are skipped with a warning.
    pub read_only: Vec<PathBuf>,
    /// Also refuse `socket(AF_INET | AF_INET6, ..)` with `EACCES` (fsops).
    pub deny_inet_sockets: bool,
    /// Capabilities to keep in the permitted and effective sets; normally
    /// empty. The fsops worker may keep `CAP_CHOWN`/`CAP_FOWNER` when started as root.
    pub keep_capabilities: Vec<caps::Capability>,
    /// `(uid, gid)` to become when running as root; ignored with a warning
    /// otherwise.
    pub switch_identity: Option<(u32, u32)>,
    /// Descriptors to keep open besides 0, 1 and 2 (e.g. the control
    /// socketpair when it is not stdin).
    pub keep_fds: Vec<RawFd>,
}

static STARTED: AtomicBool = AtomicBool::new(false);

/// Applies `profile` to the calling process, irreversibly, and reports what
/// it actually got. Call once, first thing in `main`, while the process is
/// single-threaded. A second call fails with [`SandboxError::AlreadyApplied`].
pub fn apply(profile: &SandboxProfile) -> Result<SandboxReport, SandboxError> {
    if STARTED.swap(true, Ordering::SeqCst) {
        return Err(SandboxError::AlreadyApplied);
    }
    preflight()?;
    let inherited_fds_closed = fds::close_inherited(&profile.keep_fds)?;
    hygiene::apply()?;
    identity::switch(profile.switch_identity)?;
    capabilities::restrict(&profile.keep_capabilities)?;
    nix::sys::prctl::set_no_new_privs().map_err(SandboxError::NoNewPrivs)?;
    let landlock = landlock_fs::restrict(&profile.read_write, &profile.read_only)?;
    let seccomp_denied = seccomp::install(profile.deny_inet_sockets)?;
    report::record(report::Recorded {
        landlock_abi: landlock.abi,
        landlock_status: landlock.status.to_owned(),
        seccomp_denied,
        inherited_fds_closed,
    });
    let report = current_report();
    tracing::info!(
        worker = profile.name,
        uid = report.uid,
        gid = report.gid,
        landlock_abi = ?report.landlock_abi,
        landlock = %report.landlock_status,
        seccomp = report.seccomp,
        capabilities = ?report.capabilities,
        inherited_fds_closed,
        "sandbox applied"
    );
    Ok(report)
}

/// Step 0: the process must be single-threaded.
fn preflight() -> Result<(), SandboxError> {
    let threads = std::fs::read_dir("/proc/self/task")
        .map_err(SandboxError::Preflight)?
        .count();
    if threads == 1 {
        Ok(())
    } else {
        Err(SandboxError::NotSingleThreaded { threads })
    }
}
