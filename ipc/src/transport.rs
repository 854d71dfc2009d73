//! Named Unix sockets under `<data>/run/` and peer-credential checks.
//!
//! The engine and fsops workers [`Listener::bind`] a socket in the run directory (mode
//! `0700`, see [`ensure_run_dir`]); the API [`connect`]s to it. Right after
//! accepting, a server checks the peer's uid ([`check_peer_uid`], kernel
//! `SO_PEERCRED`) before it even starts the handshake.
//!
//! Sockets are `interprocess` local sockets on Tokio; its stream is plain
//! `AsyncRead + AsyncWrite`, so [`Connection`](crate::Connection) works on it
//! unchanged, and it reads peer credentials without any `unsafe` here.

use std::{
    io,
    os::unix::fs::{FileTypeExt, PermissionsExt},
    path::{Path, PathBuf},
};

use interprocess::local_socket::{
    GenericFilePath, ListenerOptions, ToFsName,
    tokio::{Listener as TokioListener, prelude::*},
    traits::StreamCommon,
};
use interprocess::os::unix::local_socket::ListenerOptionsExt;

use crate::error::IpcError;

/// A connected IPC socket stream (`AsyncRead + AsyncWrite + Unpin + Send`).
pub type Stream = interprocess::local_socket::tokio::Stream;

/// Permissions of the run directory: only the daemon's user may enter it.
pub const RUN_DIR_MODE: u32 = 0o700;

/// Permissions of each socket file (the directory already excludes others).
pub const SOCKET_MODE: u32 = 0o600;

/// Creates the run directory (and its parents) and sets it to mode `0700`.
/// Refuses a path that exists but is not a real directory (e.g. a symlink).
pub fn ensure_run_dir(path: &Path) -> Result<(), IpcError> {
    std::fs::create_dir_all(path)?;
    let meta = std::fs::symlink_metadata(path)?;
    if !meta.file_type().is_dir() {
        return Err(IpcError::Io(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("run dir {} exists and is not a directory", path.display()),
        )));
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(RUN_DIR_MODE))?;
    Ok(())
}

/// A listening named socket. The socket file is removed when it is dropped.
#[derive(Debug)]
pub struct Listener {
    inner: TokioListener,
    path: PathBuf,
}

/// Removes a socket file left behind by a dead process. Refuses to remove
/// anything that is not a socket, or a socket someone still listens on.
fn remove_stale_socket(path: &Path) -> Result<(), IpcError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    if !meta.file_type().is_socket() {
        return Err(IpcError::Io(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "{} exists and is not a socket; refusing to delete it",
                path.display()
            ),
        )));
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_live) => Err(IpcError::Io(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("another process is listening on {}", path.display()),
        ))),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            tracing::debug!(path = %path.display(), "removing stale socket file");
            match std::fs::remove_file(path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e.into()),
                _ => Ok(()),
            }
        }
        Err(e) => Err(e.into()),
    }
}

impl Listener {
    /// Binds a socket file at `path` (mode `0600`), replacing a stale socket
    /// left by a dead process. Must be called inside a Tokio runtime.
    pub fn bind(path: &Path) -> Result<Self, IpcError> {
        remove_stale_socket(path)?;
        let name = path.to_fs_name::<GenericFilePath>()?;
        let inner = ListenerOptions::new()
            .name(name)
            .mode(SOCKET_MODE)
            .reclaim_name(true)
            .create_tokio()?;
        Ok(Self {
            inner,
            path: path.to_owned(),
        })
    }

    /// Waits for the next client. Cancel-safe.
    pub async fn accept(&self) -> Result<Stream, IpcError> {
        Ok(self.inner.accept().await?)
    }

    /// The socket file's path.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Connects to the socket at `path`.
pub async fn connect(path: &Path) -> Result<Stream, IpcError> {
    let name = path.to_fs_name::<GenericFilePath>()?;
    Ok(Stream::connect(name).await?)
}

/// The effective uid of the process at the other end (`SO_PEERCRED`, as of
/// connect time).
pub fn peer_uid(stream: &Stream) -> Result<u32, IpcError> {
    stream.peer_creds()?.euid().ok_or_else(|| {
        IpcError::Io(io::Error::new(
            io::ErrorKind::Unsupported,
            "peer uid is not available on this platform",
        ))
    })
}

/// Fails with [`IpcError::PeerUid`] unless the peer runs as `expected`.
pub fn check_peer_uid(stream: &Stream, expected: u32) -> Result<(), IpcError> {
    let actual = peer_uid(stream)?;
    if actual == expected {
        Ok(())
    } else {
        Err(IpcError::PeerUid { expected, actual })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Connection;

    fn euid() -> u32 {
        nix::unistd::geteuid().as_raw()
    }

    #[test]
    fn stream_is_send_and_unpin() {
        fn check<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static>() {}
        check::<Stream>();
    }

    #[test]
    fn run_dir_is_created_0700() {
        let tmp = tempfile::tempdir().unwrap();
        let run = tmp.path().join("data/run");
        ensure_run_dir(&run).unwrap();
        let mode = std::fs::metadata(&run).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        // Idempotent, and fixes loose permissions.
        std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o755)).unwrap();
        ensure_run_dir(&run).unwrap();
        let mode = std::fs::metadata(&run).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }

    #[test]
    fn run_dir_refuses_a_symlink() {
        let tmp = tempfile::tempdir().unwrap();
        let real = tmp.path().join("real");
        std::fs::create_dir(&real).unwrap();
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o755)).unwrap();
        let link = tmp.path().join("run");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        assert!(ensure_run_dir(&link).is_err());
        let mode = std::fs::metadata(&real).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o755, "the link target was not touched");
    }

    #[tokio::test]
    async fn bind_connect_exchange_and_peer_uid() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("engine.sock");
        let listener = Listener::bind(&path).unwrap();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);

        let (server, client) = tokio::join!(listener.accept(), connect(&path));
        let (server, client) = (server.unwrap(), client.unwrap());
        assert_eq!(peer_uid(&server).unwrap(), euid());
        assert_eq!(peer_uid(&client).unwrap(), euid());
        check_peer_uid(&server, euid()).unwrap();
        assert!(matches!(
            check_peer_uid(&server, euid().wrapping_add(1)),
            Err(IpcError::PeerUid { actual, .. }) if actual == euid()
        ));

        let (mut server, mut client) = (Connection::new(server), Connection::new(client));
        client.send(&"hello".to_owned()).await.unwrap();
        assert_eq!(
            server.recv::<String>().await.unwrap().as_deref(),
            Some("hello")
        );
        server.send(&7u64).await.unwrap();
        assert_eq!(client.recv::<u64>().await.unwrap(), Some(7));
        drop(client);
        assert_eq!(server.recv::<u64>().await.unwrap(), None);

        drop(listener);
        assert!(!path.exists(), "socket file removed on drop");
    }

    #[tokio::test]
    async fn stale_socket_is_replaced() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("fsops.sock");
        // A socket file whose listener is gone.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(
            std::fs::symlink_metadata(&path)
                .unwrap()
                .file_type()
                .is_socket()
        );
        let listener = Listener::bind(&path).unwrap();
        let (server, client) = tokio::join!(listener.accept(), connect(&path));
        server.unwrap();
        client.unwrap();
    }

    #[tokio::test]
    async fn live_socket_is_not_stolen() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("engine.sock");
        let _first = Listener::bind(&path).unwrap();
        let err = Listener::bind(&path).unwrap_err();
        assert!(
            matches!(err, IpcError::Io(ref e) if e.kind() == io::ErrorKind::AddrInUse),
            "{err}"
        );
    }

    #[tokio::test]
    async fn regular_file_is_not_deleted() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("engine.sock");
        std::fs::write(&path, b"precious").unwrap();
        let err = Listener::bind(&path).unwrap_err();
        assert!(err.to_string().contains("not a socket"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), b"precious");
    }

    #[tokio::test]
    async fn connect_to_missing_socket_fails() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(matches!(
            connect(&tmp.path().join("nope.sock")).await,
            Err(IpcError::Io(_))
        ));
    }
}
