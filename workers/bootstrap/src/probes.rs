//! Test-only sandbox probes: each tries one thing the sandbox must refuse
//! and reports the errno it got. Compiled only with the `test-probes`
//! feature, so release binaries cannot be asked to do any of this.

use std::fs::OpenOptions;
use std::io;

use nix::sched::{CloneFlags, unshare};
use nix::sys::socket::{AddressFamily, SockFlag, SockType, socket};
use revaer_ipc::{Probe, ProbeOutcome};

/// Runs one probe in this process.
#[must_use]
pub fn run(probe: &Probe) -> ProbeOutcome {
    match probe {
        Probe::WriteFile { path } => from_io(
            OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(path)
                .map(drop),
        ),
        Probe::ReadFile { path } => from_io(OpenOptions::new().read(true).open(path).map(drop)),
        Probe::InetSocket => from_nix(
            socket(
                AddressFamily::Inet,
                SockType::Stream,
                SockFlag::SOCK_CLOEXEC,
                None,
            )
            .map(drop),
        ),
        Probe::Unshare => from_nix(unshare(CloneFlags::CLONE_NEWUSER)),
    }
}

fn from_io(result: io::Result<()>) -> ProbeOutcome {
    match result {
        Ok(()) => ProbeOutcome::Allowed,
        Err(e) => ProbeOutcome::Denied {
            errno: e.raw_os_error().unwrap_or(-1),
            message: e.to_string(),
        },
    }
}

fn from_nix(result: nix::Result<()>) -> ProbeOutcome {
    match result {
        Ok(()) => ProbeOutcome::Allowed,
        Err(e) => ProbeOutcome::Denied {
            errno: e as i32,
            message: e.desc().to_owned(),
        },
    }
}
