//! Step 1: close every file descriptor the process inherited, except stdio
//! and the ones the caller names (e.g. the control socketpair).
//!
//! A descriptor leaked by whoever spawned us (a shell, a service manager, a
//! buggy parent) would outlive every later restriction: Landlock and seccomp
//! check *opening* things, not using what is already open. So this runs
//! first, before anything else opens a descriptor of its own.

use std::os::fd::{AsRawFd, RawFd};

use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use crate::SandboxError;

/// Descriptors always kept: stdin, stdout, stderr.
const STDIO: [RawFd; 3] = [0, 1, 2];

/// Closes every open descriptor except stdio and `keep`; returns how many
/// were closed.
///
/// The numbers are collected first and closed after the listing handle is
/// gone; the listing's own descriptor is skipped by number. Must run while
/// nothing else in the process owns one of the closed descriptors (i.e.
/// first thing in `main`).
pub(crate) fn close_inherited(keep: &[RawFd]) -> Result<u32, SandboxError> {
    let open = list_open_fds().map_err(SandboxError::CloseFds)?;
    let mut closed = 0_u32;
    for fd in open {
        if STDIO.contains(&fd) || keep.contains(&fd) {
            continue;
        }
        match nix::unistd::close(fd) {
            Ok(()) => closed = closed.saturating_add(1),
            // Already gone (e.g. closed by a destructor in between): nothing to do.
            Err(Errno::EBADF) => {}
            // Linux releases the descriptor even when close reports EINTR/EIO.
            Err(err) => {
                tracing::warn!(fd, %err, "close of inherited fd reported an error (fd is released anyway)");
                closed = closed.saturating_add(1);
            }
        }
    }
    Ok(closed)
}

/// Numbers of all open descriptors, excluding the one used to list them.
pub(crate) fn list_open_fds() -> Result<Vec<RawFd>, nix::Error> {
    let mut dir = Dir::open(
        "/proc/self/fd",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let own = dir.as_raw_fd();
    let mut fds = Vec::new();
    for entry in dir.iter() {
        let entry = entry?;
        if let Some(fd) = parse_fd(entry.file_name().to_bytes())
            && fd != own
        {
            fds.push(fd);
        }
    }
    fds.sort_unstable();
    Ok(fds)
}

/// `"17"` → `Some(17)`; `"."`, `".."` and anything else → `None`.
fn parse_fd(name: &[u8]) -> Option<RawFd> {
    std::str::from_utf8(name).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_fd_accepts_numbers_only() {
        assert_eq!(parse_fd(b"0"), Some(0));
        assert_eq!(parse_fd(b"123"), Some(123));
        assert_eq!(parse_fd(b"."), None);
        assert_eq!(parse_fd(b".."), None);
        assert_eq!(parse_fd(b"-1x"), None);
    }

    #[test]
    fn listing_sees_an_open_file() {
        // Read-only: never closes anything in the test runner.
        let file = std::fs::File::open("/proc/self/status").unwrap();
        let fds = list_open_fds().unwrap();
        assert!(fds.contains(&file.as_raw_fd()));
        assert!(
            fds.windows(2).all(|w| w[0] < w[1]),
            "sorted and unique: {fds:?}"
        );
    }
}
