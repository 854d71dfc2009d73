//! The sandbox report: what the process actually got, for the `Ready`
//! handshake and every later health ping (`/health/full`).
//!
//! Live state (uid/gid, capabilities, umask, `no_new_privs`, core dumps) is
//! re-read on every call with syscalls only: after Landlock, `/proc` is out
//! of reach unless a profile allows it. Landlock and seccomp cannot be read
//! back, so `apply` records them once in a `OnceLock`.

use std::sync::OnceLock;

use nix::unistd::{getgid, getuid};
use revaer_ipc::protocol::SandboxReport;

use crate::{capabilities, hygiene};

/// What `apply` recorded about the parts that cannot be re-read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Recorded {
    pub landlock_abi: Option<u8>,
    pub landlock_status: String,
    pub seccomp_denied: Vec<String>,
    pub inherited_fds_closed: u32,
}

static RECORDED: OnceLock<Recorded> = OnceLock::new();

/// `landlock_status` before `apply` has run (or when it failed).
pub const NOT_APPLIED: &str = "not_applied";

pub(crate) fn record(recorded: Recorded) {
    if RECORDED.set(recorded).is_err() {
        tracing::warn!("sandbox report recorded twice; keeping the first");
    }
}

/// The sandbox as it stands now: live process state plus what [`crate::apply`]
/// recorded about Landlock and seccomp. Before `apply` (or after it failed)
/// `landlock_status` is `"not_applied"` and `seccomp` is false.
#[must_use]
pub fn current_report() -> SandboxReport {
    let recorded = RECORDED.get();
    SandboxReport {
        no_new_privs: nix::sys::prctl::get_no_new_privs().unwrap_or(false),
        landlock_abi: recorded.and_then(|r| r.landlock_abi),
        landlock_status: recorded
            .map_or_else(|| NOT_APPLIED.to_owned(), |r| r.landlock_status.clone()),
        seccomp: recorded.is_some(),
        seccomp_denied: recorded
            .map(|r| r.seccomp_denied.clone())
            .unwrap_or_default(),
        capabilities: capabilities::effective_names(),
        uid: getuid().as_raw(),
        gid: getgid().as_raw(),
        umask: hygiene::current_umask(),
        core_dumps: hygiene::core_dumps_possible(),
        inherited_fds_closed: recorded.map_or(0, |r| r.inherited_fds_closed),
    }
}
