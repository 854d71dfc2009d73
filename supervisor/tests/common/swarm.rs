//! Real swarms for interoperability tests: Debian's `opentracker` (HTTP and
//! UDP announces on one port, whitelist mode) and `aria2c` seeding or
//! leeching, all on 127.0.0.1. Peers are learned only the way users' peers
//! are (from the tracker, or from a magnet's `tr=`), never injected. Every
//! process is killed and reaped on drop; every wait polls with a deadline.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sha2::Digest as _;

use super::bencode::Value;
use super::{DEADLINE, POLL, TempDir, fixture_bytes};

/// A blocking HTTP client for third-party daemons (no proxy, 5 s timeout).
pub fn http_client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(5))
        .no_proxy()
        .build()
        .unwrap()
}

/// A port that was free a moment ago on 127.0.0.1 (TCP and UDP).
pub fn free_port() -> u16 {
    free_port_on(LOCALHOST)
}

/// A port that was free a moment ago on `ip` (TCP and UDP).
pub fn free_port_on(ip: Ipv4Addr) -> u16 {
    loop {
        let tcp = std::net::TcpListener::bind((ip, 0)).unwrap();
        let port = tcp.local_addr().unwrap().port();
        if std::net::UdpSocket::bind((ip, port)).is_ok() {
            return port;
        }
    }
}

pub const LOCALHOST: Ipv4Addr = Ipv4Addr::LOCALHOST;

pub(crate) fn wait_listening(port: u16, what: &str, child: &mut Child) {
    wait_listening_on(LOCALHOST, port, what, child);
}

pub(crate) fn wait_listening_on(ip: Ipv4Addr, port: u16, what: &str, child: &mut Child) {
    let deadline = Instant::now() + DEADLINE;
    while std::net::TcpStream::connect((ip, port)).is_err() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("{what} exited before listening: {status}");
        }
        assert!(Instant::now() < deadline, "{what} never listened on {port}");
        std::thread::sleep(POLL);
    }
}

pub(crate) fn stop(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// `opentracker` from Debian, announcing over HTTP and UDP (BEP 15) on the
/// same port, for the whitelisted info-hashes only.
pub struct Opentracker {
    child: Child,
    pub ip: Ipv4Addr,
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
        Self::start_at(LOCALHOST, port, info_hashes)
    }

    /// [`Self::start_on`], listening on `ip` (e.g. the host side of a
    /// network namespace's veth pair).
    pub fn start_at(ip: Ipv4Addr, port: u16, info_hashes: &[&str]) -> Self {
        let dir = TempDir::new("opentracker");
        std::fs::write(dir.0.join("whitelist"), info_hashes.join("\n") + "\n").unwrap();
        let mut child = Command::new("opentracker")
            .args(["-i", &ip.to_string(), "-p", &port.to_string()])
            .args(["-P", &port.to_string(), "-d"])
            .arg(&dir.0)
            .args(["-w", "/whitelist"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("opentracker (Debian package) is installed by ./x");
        wait_listening_on(ip, port, "opentracker", &mut child);
        Self {
            child,
            ip,
            port,
            _dir: dir,
        }
    }

    pub fn http_url(&self) -> String {
        format!("http://{}:{}/announce", self.ip, self.port)
    }

    pub fn udp_url(&self) -> String {
        format!("udp://{}:{}/announce", self.ip, self.port)
    }

    /// An HTTP announce for `info_hash` (40 hex digits) as a peer on
    /// `port` that has everything: the addresses the tracker lists for it
    /// (compact form). What a peer learns, and the way it learns it.
    pub fn announce(&self, info_hash: &str, port: u16, event: &str) -> Vec<SocketAddrV4> {
        let hash = (0..20).fold(String::new(), |mut hash, i| {
            hash.push('%');
            hash.push_str(&info_hash[2 * i..2 * i + 2]);
            hash
        });
        let url = format!(
            "{}?info_hash={hash}&peer_id=-RV0001-e2eprobe0001&port={port}&uploaded=0&downloaded=0&left=0&compact=1&numwant=50&event={event}",
            self.http_url()
        );
        let body = http_client().get(url).send().unwrap().bytes().unwrap();
        let answer = Value::decode(&body)
            .unwrap_or_else(|| panic!("tracker answer: {}", String::from_utf8_lossy(&body)));
        let Some(Value::Bytes(peers)) = answer.get("peers") else {
            panic!("no compact peers in {answer:?}");
        };
        peers
            .chunks_exact(6)
            .map(|c| {
                SocketAddrV4::new(
                    Ipv4Addr::new(c[0], c[1], c[2], c[3]),
                    u16::from_be_bytes([c[4], c[5]]),
                )
            })
            .collect()
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
    /// Revaer's id (the v1 info-hash, or the truncated v2 one).
    pub id: String,
    /// Every 20-byte info-hash (hex) a client announces the torrent with:
    /// the v1 one and the truncated v2 one (a hybrid torrent is announced
    /// under both).
    pub hashes: Vec<String>,
}

impl Payload {
    /// Writes `files` (relative path, size) under `<dir>/<name>/` (or one
    /// file `<dir>/<name>` when `files` is a single `("", size)`), and makes
    /// a v1 torrent announcing to `trackers`.
    pub fn new(name: &str, files: &[(&str, usize)], trackers: Vec<String>) -> Self {
        Self::build(
            name,
            files,
            trackers,
            libtorrent_sys::TorrentFormat::V1Only,
            |t| t,
        )
    }

    /// [`Self::new`] in `format`, with `edit` applied to the `.torrent`
    /// bytes (e.g. [`super::bencode::make_private`]).
    pub fn build(
        name: &str,
        files: &[(&str, usize)],
        trackers: Vec<String>,
        format: libtorrent_sys::TorrentFormat,
        edit: impl FnOnce(Vec<u8>) -> Vec<u8>,
    ) -> Self {
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
                format,
                ..libtorrent_sys::CreateTorrentOptions::default()
            },
        )
        .unwrap();
        let torrent = edit(torrent);
        let info = libtorrent_sys::parse_torrent(&torrent).unwrap();
        let hashes = info
            .info_hash_v1
            .iter()
            .cloned()
            .chain(info.info_hash_v2.iter().map(|v2| v2[..40].to_owned()))
            .collect();
        Self {
            dir,
            name: name.to_owned(),
            files: contents,
            torrent,
            id: info.id.to_string(),
            hashes,
        }
    }

    /// `hashes` as the `&str`s [`Opentracker::start_at`] takes.
    pub fn hash_refs(&self) -> Vec<&str> {
        self.hashes.iter().map(String::as_str).collect()
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

/// A BEP 19 web seed: a plain HTTP/1.1 file server on 127.0.0.1 serving
/// the files under `root` (`GET /<relative path>`), with `Range: bytes=`
/// support and keep-alive. Counts the requests and the body bytes it sent.
pub struct WebSeed {
    pub addr: std::net::SocketAddr,
    requests: std::sync::Arc<std::sync::atomic::AtomicU64>,
    bytes: std::sync::Arc<std::sync::atomic::AtomicU64>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl WebSeed {
    pub fn start(root: &Path) -> Self {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(AtomicU64::new(0));
        let bytes = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (reqs, sent, halt, root) = (
            requests.clone(),
            bytes.clone(),
            stop.clone(),
            root.to_path_buf(),
        );
        let thread = std::thread::spawn(move || {
            let mut connections = Vec::new();
            while !halt.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let (reqs, sent, halt, root) =
                            (reqs.clone(), sent.clone(), halt.clone(), root.clone());
                        connections.push(std::thread::spawn(move || {
                            Self::serve(stream, &root, &reqs, &sent, &halt);
                        }));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
            for c in connections {
                let _ = c.join();
            }
        });
        Self {
            addr,
            requests,
            bytes,
            stop,
            thread: Some(thread),
        }
    }

    /// The base URL (ends with `/`): a multi-file torrent's files are at
    /// `<base><name>/<path>`, a single file at `<base><name>`.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    pub fn requests(&self) -> u64 {
        self.requests.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn bytes_served(&self) -> u64 {
        self.bytes.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn serve(
        stream: std::net::TcpStream,
        root: &Path,
        requests: &std::sync::atomic::AtomicU64,
        sent: &std::sync::atomic::AtomicU64,
        halt: &std::sync::atomic::AtomicBool,
    ) {
        use std::sync::atomic::Ordering;
        stream.set_nonblocking(false).unwrap();
        // Short read timeouts, so the thread notices `halt` on an idle
        // keep-alive connection.
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut out = stream.try_clone().unwrap();
        let mut reader = std::io::BufReader::new(stream);
        while let Some(head) = Self::read_head(&mut reader, halt) {
            requests.fetch_add(1, Ordering::Relaxed);
            match Self::respond(&head, root, &mut out) {
                Some((body, keep_alive)) => {
                    sent.fetch_add(body, Ordering::Relaxed);
                    if !keep_alive {
                        return;
                    }
                }
                None => return,
            }
        }
    }

    /// The request line and headers of the next request; `None` when the
    /// connection ends or the server stops.
    fn read_head(
        reader: &mut std::io::BufReader<std::net::TcpStream>,
        halt: &std::sync::atomic::AtomicBool,
    ) -> Option<Vec<String>> {
        use std::io::BufRead;
        let mut head = Vec::new();
        // A line split by a read time-out is completed by the next read.
        let mut line = String::new();
        loop {
            match reader.read_line(&mut line) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    if halt.load(std::sync::atomic::Ordering::Relaxed) {
                        return None;
                    }
                    continue;
                }
                Err(_) => return None,
            }
            if line == "\r\n" || line == "\n" {
                return Some(head);
            }
            head.push(std::mem::take(&mut line));
        }
    }

    /// Answers one request: the body bytes sent and whether the connection
    /// stays open; `None` when writing failed.
    fn respond(head: &[String], root: &Path, out: &mut std::net::TcpStream) -> Option<(u64, bool)> {
        use std::fmt::Write as _;
        use std::io::{Read, Seek, SeekFrom, Write};
        let request_line = head.first().cloned().unwrap_or_default();
        let mut parts = request_line.split_whitespace();
        let method = parts.next().unwrap_or("");
        let target = parts.next().unwrap_or("/");
        let header = |name: &str| {
            head.iter().skip(1).find_map(|h| {
                let (k, v) = h.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_owned())
            })
        };
        let keep_alive = !header("connection").is_some_and(|c| c.eq_ignore_ascii_case("close"));
        let relative =
            String::from_utf8_lossy(&super::percent_decode(target.trim_start_matches('/')))
                .into_owned();
        let file = (!relative.split('/').any(|c| c == ".."))
            .then(|| std::fs::File::open(root.join(&relative)).ok())
            .flatten()
            .filter(|_| method == "GET" || method == "HEAD");
        let Some(mut file) = file else {
            out.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                .ok()?;
            return Some((0, keep_alive));
        };
        let len = file.metadata().unwrap().len();
        let range = header("range").and_then(|r| {
            let (a, b) = r.strip_prefix("bytes=")?.split_once('-')?;
            let start: u64 = a.trim().parse().ok()?;
            let end: u64 = if b.trim().is_empty() {
                len.checked_sub(1)?
            } else {
                b.trim().parse().ok()?
            };
            (start <= end && end < len).then_some((start, end))
        });
        let (status, start, count) = match range {
            Some((a, b)) => ("206 Partial Content", a, b - a + 1),
            None => ("200 OK", 0, len),
        };
        let mut response = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/octet-stream\r\nContent-Length: {count}\r\nAccept-Ranges: bytes\r\n"
        );
        if range.is_some() {
            let _ = write!(
                response,
                "Content-Range: bytes {start}-{}/{len}\r\n",
                start + count - 1
            );
        }
        response.push_str("\r\n");
        let mut body = Vec::new();
        if method == "GET" {
            body.resize(usize::try_from(count).unwrap(), 0);
            file.seek(SeekFrom::Start(start)).unwrap();
            file.read_exact(&mut body).unwrap();
        }
        out.write_all(response.as_bytes()).ok()?;
        out.write_all(&body).ok()?;
        Some((body.len() as u64, keep_alive))
    }
}

impl Drop for WebSeed {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Connects to the BitTorrent peer at `peer` as a peer of `info_hash` (40
/// hex digits), sends the handshake with the extension-protocol bit
/// (BEP 10) and returns the peer's extension handshake (a dictionary whose
/// `m` lists the extensions it runs for this torrent, e.g. `ut_pex`,
/// `ut_metadata`). This is a measuring instrument, not a client: it
/// downloads nothing and hangs up.
pub fn extension_handshake(peer: std::net::SocketAddr, info_hash: &str) -> Value {
    use std::io::{Read, Write};
    let hash: Vec<u8> = (0..20)
        .map(|i| u8::from_str_radix(&info_hash[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    let mut stream = std::net::TcpStream::connect_timeout(&peer, DEADLINE)
        .unwrap_or_else(|e| panic!("probe cannot connect to {peer}: {e}"));
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut hello = vec![19_u8];
    hello.extend_from_slice(b"BitTorrent protocol");
    hello.extend_from_slice(&[0, 0, 0, 0, 0, 0x10, 0, 0]);
    hello.extend_from_slice(&hash);
    hello.extend_from_slice(b"-RV0001-e2eprobe0002");
    stream.write_all(&hello).unwrap();
    let mut answer = [0_u8; 68];
    stream
        .read_exact(&mut answer)
        .unwrap_or_else(|e| panic!("{peer} sent no handshake for {info_hash}: {e}"));
    assert_eq!(&answer[1..20], b"BitTorrent protocol", "{answer:?}");
    assert_eq!(&answer[28..48], hash.as_slice(), "another torrent");
    assert!(
        answer[25] & 0x10 != 0,
        "{peer} does not speak the extension protocol"
    );
    let deadline = Instant::now() + DEADLINE;
    while Instant::now() < deadline {
        let mut len = [0_u8; 4];
        stream.read_exact(&mut len).unwrap();
        let len = u32::from_be_bytes(len) as usize;
        assert!(len < 1 << 20, "message of {len} bytes");
        let mut message = vec![0_u8; len];
        stream.read_exact(&mut message).unwrap();
        if len >= 2 && message[0] == 20 && message[1] == 0 {
            return Value::decode(&message[2..]).expect("a bencoded extension handshake");
        }
    }
    panic!("{peer} sent no extension handshake within {DEADLINE:?}");
}
