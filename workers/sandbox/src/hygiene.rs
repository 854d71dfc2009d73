//! Step 2: process hygiene that needs no privilege: `umask 077`, no core
//! dumps (`RLIMIT_CORE` 0 *and* `PR_SET_DUMPABLE` 0).
//!
//! Both core-dump switches are needed: a pipe `core_pattern` (systemd-coredump,
//! apport) ignores `RLIMIT_CORE`, while the non-dumpable flag stops every
//! kind of dump and also keeps same-uid processes from ptracing us or opening
//! our `/proc/<pid>/mem`. The flag is reset by a uid change, so step 3 sets
//! it again.

use nix::sys::resource::{Resource, getrlimit, setrlimit};
use nix::sys::stat::{Mode, umask};

use crate::SandboxError;

/// The umask every worker runs with: nothing for group or others.
pub(crate) const UMASK: u32 = 0o077;

fn umask_mode() -> Mode {
    Mode::from_bits_truncate(UMASK)
}

pub(crate) fn apply() -> Result<(), SandboxError> {
    umask(umask_mode());
    setrlimit(Resource::RLIMIT_CORE, 0, 0).map_err(|source| SandboxError::Hygiene {
        what: "setrlimit(RLIMIT_CORE, 0)",
        source,
    })?;
    set_not_dumpable()
}

pub(crate) fn set_not_dumpable() -> Result<(), SandboxError> {
    nix::sys::prctl::set_dumpable(false).map_err(|source| SandboxError::Hygiene {
        what: "prctl(PR_SET_DUMPABLE, 0)",
        source,
    })
}

/// The live umask. There is no getter, so it is set and restored; the
/// temporary value is the sandbox's own `077`, so a file another thread
/// creates in that window is at worst created *more* private, never less.
pub(crate) fn current_umask() -> u32 {
    let previous = umask(umask_mode());
    if previous != umask_mode() {
        umask(previous);
    }
    previous.bits()
}

/// Whether this process could still leave a core dump: false only when both
/// the soft `RLIMIT_CORE` is 0 and the process is non-dumpable.
pub(crate) fn core_dumps_possible() -> bool {
    let limit_allows = getrlimit(Resource::RLIMIT_CORE).map_or(true, |(soft, _)| soft != 0);
    let dumpable = nix::sys::prctl::get_dumpable().unwrap_or(true);
    limit_allows || dumpable
}
