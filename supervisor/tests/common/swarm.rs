//! Real swarms for interoperability tests: Debian's `opentracker` (HTTP and
//! UDP announces on one port, whitelist mode) and `aria2c` seeding or
//! leeching, all on 127.0.0.1. Peers are learned only the way users' peers
//! are (from the tracker, or from a magnet's `tr=`), never injected. Every
//! process is killed and reaped on drop; every wait polls with a deadline.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sha2::Digest as _;

use super::{DEADLINE, POLL, TempDir, fixture_bytes};

/// A port that was free a moment ago on 127.0.0.1 (TCP and UDP).
pub fn free_port() -> u16 {
    loop {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = tcp.local_addr().unwrap().port();
        if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

fn wait_listening(port: u16, what: &str, child: &mut Child) {
    let deadline = Instant::now() + DEADLINE;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("{what} exited before listening: {status}");
        }
        assert!(Instant::now() < deadline, "{what} never listened on {port}");
        std::thread::sleep(POLL);
    }
}

fn stop(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// `opentracker` from Debian, announcing over HTTP and UDP (BEP 15) on the
/// same port, for the whitelisted info-hashes only.
pub struct Opentracker {
    child: Child,
    pub port: u16,
    _dir: TempDir,
}

impl Opentracker {
    /// `info_hashes`: v1 info-hashes (hex) it will track.
    pub fn start(info_hashes: &[&str]) -> Self {
        Self::start_on(free_port(), info_hashes)
    }

    /// [`Self::start`] on `port` (e.g. one already written into a torrent).
    pub fn start_on(port: u16, info_hashes: &[&str]) -> Self {
        let dir = TempDir::new("opentracker");
        std::fs::write(dir.0.join("whitelist"), info_hashes.join("\n") + "\n").unwrap();
        let mut child = Command::new("opentracker")
            .args(["-i", "127.0.0.1", "-p", &port.to_string()])
            .args(["-P", &port.to_string(), "-d"])
            .arg(&dir.0)
            .args(["-w", "/whitelist"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("opentracker (Debian package) is installed by ./x");
        wait_listening(port, "opentracker", &mut child);
        Self {
            child,
            port,
            _dir: dir,
        }
    }

    pub fn http_url(&self) -> String {
        format!("http://127.0.0.1:{}/announce", self.port)
    }

    pub fn udp_url(&self) -> String {
        format!("udp://127.0.0.1:{}/announce", self.port)
    }
}

impl Drop for Opentracker {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// A payload on disk with its `.torrent`.
pub struct Payload {
    pub dir: TempDir,
    /// Top folder (multi-file) or file name (single file).
    pub name: String,
    pub files: Vec<(String, Vec<u8>)>,
    pub torrent: Vec<u8>,
    pub id: String,
}

impl Payload {
    /// Writes `files` (relative path, size) under `<dir>/<name>/` (or one
    /// file `<dir>/<name>` when `files` is a single `("", size)`), and makes
    /// a v1 torrent announcing to `trackers`.
    pub fn new(name: &str, files: &[(&str, usize)], trackers: Vec<String>) -> Self {
        let dir = TempDir::new("payload");
        let contents: Vec<(String, Vec<u8>)> = files
            .iter()
            .enumerate()
            .map(|(i, (path, size))| ((*path).to_owned(), fixture_bytes(*size, 0x1a7e + i as u64)))
            .collect();
        let root = dir.0.join(name);
        for (path, bytes) in &contents {
            let full = if path.is_empty() {
                root.clone()
            } else {
                root.join(path)
            };
            std::fs::create_dir_all(full.parent().unwrap()).unwrap();
            std::fs::write(&full, bytes).unwrap();
        }
        let torrent = libtorrent_sys::create_torrent_with(
            &root,
            &libtorrent_sys::CreateTorrentOptions {
                piece_size: 64 * 1024,
                trackers,
                format: libtorrent_sys::TorrentFormat::V1Only,
                ..libtorrent_sys::CreateTorrentOptions::default()
            },
        )
        .unwrap();
        let id = libtorrent_sys::parse_torrent(&torrent)
            .unwrap()
            .id
            .to_string();
        Self {
            dir,
            name: name.to_owned(),
            files: contents,
            torrent,
            id,
        }
    }

    pub fn torrent_path(&self) -> PathBuf {
        let path = self.dir.0.join(format!("{}.torrent", self.name));
        if !path.exists() {
            std::fs::write(&path, &self.torrent).unwrap();
        }
        path
    }

    /// Asserts that `root` holds every file of the payload, byte for byte
    /// (compared by SHA-256).
    pub fn assert_copy_in(&self, root: &Path, who: &str) {
        for (path, bytes) in &self.files {
            let full = if path.is_empty() {
                root.join(&self.name)
            } else {
                root.join(&self.name).join(path)
            };
            let got = std::fs::read(&full)
                .unwrap_or_else(|e| panic!("{who}: cannot read {}: {e}", full.display()));
            assert_eq!(
                sha2::Sha256::digest(&got),
                sha2::Sha256::digest(bytes),
                "{who}: {} differs ({} vs {} bytes)",
                full.display(),
                got.len(),
                bytes.len()
            );
        }
    }
}

/// `aria2c` (Debian) as a third-party BitTorrent client: DHT, LPD and PEX
/// off, so it meets peers only through trackers.
pub struct Aria2 {
    child: Child,
    pub port: u16,
    pub dir: PathBuf,
}

impl Aria2 {
    fn spawn(torrent: &Path, dir: &Path, extra: &[&str]) -> Self {
        let port = free_port();
        let mut child = Command::new("aria2c")
            .arg(format!("--listen-port={port}"))
            .arg(format!("--dir={}", dir.display()))
            .args([
                "--enable-dht=false",
                "--enable-dht6=false",
                "--enable-peer-exchange=false",
                "--bt-enable-lpd=false",
                "--bt-external-ip=127.0.0.1",
                "--disable-ipv6=true",
                "--file-allocation=none",
                "--summary-interval=0",
                "--console-log-level=warn",
                "--check-integrity=true",
            ])
            .args(extra)
            .arg(torrent)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("aria2c (Debian package aria2) is installed by ./x");
        wait_listening(port, "aria2c", &mut child);
        Self {
            child,
            port,
            dir: dir.to_path_buf(),
        }
    }

    /// Seeds `payload` (its files are already in place) forever.
    pub fn seed(payload: &Payload) -> Self {
        Self::spawn(
            &payload.torrent_path(),
            &payload.dir.0,
            &["--seed-ratio=0.0"],
        )
    }

    /// Downloads `torrent` into `dir`, then exits (no seeding).
    pub fn leech(torrent: &Path, dir: &Path) -> Self {
        Self::spawn(torrent, dir, &["--seed-time=0"])
    }

    /// Waits until the download finished and aria2c exited 0.
    pub fn wait_done(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "aria2c failed: {status}");
                return;
            }
            assert!(
                Instant::now() < deadline,
                "aria2c did not finish within {limit:?}"
            );
            std::thread::sleep(POLL);
        }
    }
}

impl Drop for Aria2 {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}
