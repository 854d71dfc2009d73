//! The inherited control channel between the supervisor and one worker.
//!
//! The supervisor creates a connected socketpair per worker
//! ([`control_pair`]), keeps one end and passes the other as the worker's
//! **stdin**. The worker takes it over first thing ([`adopt_stdin_control`]).
//!
//! Why stdin rather than "fd 3": adopting an arbitrary inherited fd number
//! needs `unsafe { OwnedFd::from_raw_fd(n) }`, and `unsafe` is forbidden in
//! this workspace outside the `-sys` crate. Stdin is reachable through the
//! safe `std::io::stdin().as_fd()`, and `Command::stdin(Stdio::from(fd))`
//! places the fd there on the spawning side without any `unsafe` either.
//! Both ends are created close-on-exec, so they never leak into other
//! children; the `dup2` onto fd 0 at spawn clears that flag for the one
//! child that must inherit it.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream as StdUnixStream;

use nix::sys::socket::{SockType, getsockopt, sockopt};

use crate::error::IpcError;

/// Creates a control socketpair: the supervisor's end (Tokio, non-blocking)
/// and the worker's end as an [`OwnedFd`] to hand to
/// `Command::stdin(Stdio::from(fd))`. Must be called inside a Tokio runtime.
pub fn control_pair() -> Result<(tokio::net::UnixStream, OwnedFd), IpcError> {
    let (parent, child) = StdUnixStream::pair()?;
    Ok((into_tokio(parent)?, OwnedFd::from(child)))
}

/// In a worker: takes the control channel from stdin and points fd 0 at
/// `/dev/null`, so the socket is held exactly once (by the returned stream).
///
/// Fails with [`IpcError::Control`] when stdin is not a Unix stream socket,
/// which means the worker was not started by the supervisor.
pub fn adopt_stdin_control() -> Result<StdUnixStream, IpcError> {
    let not_ours = |what: &str| {
        IpcError::Control(format!(
            "stdin is {what}, not the supervisor's control socket; \
             Revaer workers (e.g. revaer-engine) must be started by revaerd"
        ))
    };
    let fd = std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| not_ours(&format!("unusable ({e})")))?;
    match getsockopt(&fd, sockopt::SockType) {
        Ok(SockType::Stream) => {}
        Ok(_) => return Err(not_ours("a non-stream socket")),
        Err(_) => return Err(not_ours("not a socket")),
    }
    let stream = StdUnixStream::from(fd);
    // Refuses non-Unix (e.g. TCP) sockets.
    stream
        .local_addr()
        .map_err(|_| not_ours("a non-Unix socket"))?;

    let dev_null = std::fs::File::open("/dev/null")?;
    nix::unistd::dup2_stdin(&dev_null).map_err(|e| IpcError::Io(e.into()))?;
    Ok(stream)
}

/// Converts a blocking std Unix stream into a Tokio one (sets non-blocking).
/// Must be called inside a Tokio runtime.
pub fn into_tokio(std: StdUnixStream) -> Result<tokio::net::UnixStream, IpcError> {
    std.set_nonblocking(true)?;
    Ok(tokio::net::UnixStream::from_std(std)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Connection;
    use crate::protocol::{SupervisorToWorker, WorkerToSupervisor};
    use std::process::{Command, Stdio};

    const CHILD_ENV: &str = "REVAER_IPC_CONTROL_TEST_CHILD";

    #[tokio::test]
    async fn pair_round_trip() {
        let (parent, child) = control_pair().unwrap();
        let child = into_tokio(StdUnixStream::from(child)).unwrap();
        let (mut parent, mut child) = (Connection::new(parent), Connection::new(child));
        parent.send(&SupervisorToWorker::Shutdown).await.unwrap();
        assert_eq!(
            child.recv::<SupervisorToWorker>().await.unwrap(),
            Some(SupervisorToWorker::Shutdown)
        );
        let applied = WorkerToSupervisor::ConfigApplied { revision: 3 };
        child.send(&applied).await.unwrap();
        assert_eq!(parent.recv().await.unwrap(), Some(applied));
        drop(child);
        assert_eq!(parent.recv::<WorkerToSupervisor>().await.unwrap(), None);
    }

    /// Runs this test binary again as a "worker", filtered to
    /// [`child_entry`], with the given stdin.
    fn run_child(mode: &str, stdin: Stdio) -> std::process::Output {
        Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "control::tests::child_entry", "--nocapture"])
            .env(CHILD_ENV, mode)
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .unwrap()
    }

    fn assert_child_ok(out: &std::process::Output) {
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("1 passed"),
            "child failed: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The worker side of the tests below; a no-op in a normal test run.
    #[test]
    fn child_entry() {
        let Ok(mode) = std::env::var(CHILD_ENV) else {
            return;
        };
        match mode.as_str() {
            "adopt" => {
                let stream = adopt_stdin_control().unwrap();
                // fd 0 is now /dev/null, a character device.
                let st = nix::sys::stat::fstat(std::io::stdin().as_fd()).unwrap();
                assert_eq!(
                    st.st_mode & nix::libc::S_IFMT,
                    nix::libc::S_IFCHR,
                    "stdin points at /dev/null"
                );
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    let mut conn = Connection::new(into_tokio(stream).unwrap());
                    let msg = conn.recv::<SupervisorToWorker>().await.unwrap();
                    assert_eq!(msg, Some(SupervisorToWorker::Shutdown));
                    conn.send(&WorkerToSupervisor::ConfigApplied { revision: 11 })
                        .await
                        .unwrap();
                });
            }
            "refuse" => {
                let err = adopt_stdin_control().unwrap_err();
                assert!(matches!(err, IpcError::Control(_)), "{err}");
                assert!(err.to_string().contains("started by revaerd"), "{err}");
            }
            other => panic!("unknown child mode {other}"),
        }
    }

    #[tokio::test]
    async fn worker_adopts_stdin_control() {
        let (parent, child_fd) = control_pair().unwrap();
        let mut parent = Connection::new(parent);
        parent.send(&SupervisorToWorker::Shutdown).await.unwrap();
        let out = tokio::task::spawn_blocking(move || run_child("adopt", Stdio::from(child_fd)))
            .await
            .unwrap();
        assert_child_ok(&out);
        assert_eq!(
            parent.recv().await.unwrap(),
            Some(WorkerToSupervisor::ConfigApplied { revision: 11 })
        );
        // The child exited and held the socket only once: clean EOF.
        assert_eq!(parent.recv::<WorkerToSupervisor>().await.unwrap(), None);
    }

    #[test]
    fn worker_refuses_a_non_socket_stdin() {
        for stdin in [Stdio::null(), Stdio::piped()] {
            let out = run_child("refuse", stdin);
            assert_child_ok(&out);
        }
    }

    #[test]
    fn worker_refuses_a_datagram_socket() {
        let (a, b) = std::os::unix::net::UnixDatagram::pair().unwrap();
        let out = run_child("refuse", Stdio::from(OwnedFd::from(b)));
        drop(a);
        assert_child_ok(&out);
    }
}
