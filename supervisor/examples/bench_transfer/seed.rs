//! The workload: the pseudo-random content, its `.torrent`, the one
//! libtorrent seed session that serves it for the whole run, and a tiny
//! HTTP tracker that hands out the seed's address.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use libtorrent_sys as lt;

use crate::util::{BoxError, poll_until};

/// 4 MiB pieces: 128 pieces for 512 MiB, so the `.torrent` (about 2.7 KB)
/// stays far below the API's 64 KiB JSON body limit as a JSON byte array.
pub const PIECE_SIZE: i32 = 4 << 20;

/// Writes `size` pseudo-random bytes (xorshift64, fixed seed) to `path`.
pub fn write_content(path: &Path, size: u64) -> Result<(), BoxError> {
    const CHUNK: usize = 8 << 20;
    let mut file = BufWriter::with_capacity(CHUNK, File::create(path)?);
    let mut state: u64 = 0x5eed_f00d_b1e5_5eed_u64 | 1;
    let mut buf = vec![0_u8; CHUNK];
    let mut left = size;
    while left > 0 {
        for word in buf.chunks_exact_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            word.copy_from_slice(&state.to_le_bytes());
        }
        let n = usize::try_from(left.min(CHUNK as u64))?;
        file.write_all(&buf[..n])?;
        left -= n as u64;
    }
    file.into_inner()
        .map_err(std::io::IntoInnerError::into_error)?
        .sync_all()?;
    Ok(())
}

/// A v1-only single-file `.torrent` for `content` announcing to `tracker`.
pub fn make_torrent(content: &Path, tracker: &str) -> Result<Vec<u8>, BoxError> {
    Ok(lt::create_torrent_with(
        content,
        &lt::CreateTorrentOptions {
            piece_size: PIECE_SIZE,
            trackers: vec![tracker.to_owned()],
            format: lt::TorrentFormat::V1Only,
            creator: "revaer bench_transfer".to_owned(),
            comment: String::new(),
        },
    )?)
}

/// The libtorrent session seeding the content (our bridge, TCP only, no
/// DHT/LSD/UPnP/NAT-PMP, no rate limits).
#[derive(Debug)]
pub struct Seed {
    session: lt::Session,
    id: lt::TorrentId,
    pub port: u16,
}

impl Seed {
    /// Seeds `torrent` from `dir` (which holds the content), listening on
    /// `listen` (libtorrent `listen_interfaces`), once it has verified the
    /// data.
    pub fn start(dir: &Path, torrent: &[u8], listen: &str) -> Result<Self, BoxError> {
        let settings = lt::SessionSettings {
            listen_interfaces: listen.to_owned(),
            ..lt::SessionSettings::loopback()
        };
        let session = lt::Session::new(&settings)?;
        let mut params =
            lt::AddTorrentParams::new(lt::TorrentSource::TorrentFile(torrent.to_vec()), dir);
        params.auto_managed = false;
        let id = session.add_torrent(&params)?;
        poll_until(
            "the seed to verify its data",
            Duration::from_secs(300),
            Duration::from_millis(50),
            || {
                let _ = session.pop_alerts();
                let status = session.status(&id)?;
                if let Some(error) = status.error {
                    return Err(format!("seed torrent error: {error}").into());
                }
                Ok(status.is_seeding.then_some(()))
            },
        )?;
        let port = session.listen_port();
        if port == 0 {
            return Err(format!("the seed does not listen on {listen}").into());
        }
        Ok(Self { session, id, port })
    }

    /// Fails unless the seed is still seeding; drains its alerts.
    pub fn check(&self) -> Result<lt::TorrentStatus, BoxError> {
        let _ = self.session.pop_alerts();
        let status = self.session.status(&self.id)?;
        if !status.is_seeding || status.error.is_some() {
            return Err(format!("the seed stopped seeding: {status:?}").into());
        }
        Ok(status)
    }
}

/// A minimal HTTP tracker: every `GET /announce` is answered with the seed's
/// address (compact form) — except the seed's own announce, which gets no
/// peers. One listener per address clients reach it on (loopback, and the
/// veth address Transmission reaches from its namespace).
#[derive(Debug)]
pub struct Tracker {
    stop: Arc<AtomicBool>,
    threads: Vec<(SocketAddr, JoinHandle<()>)>,
    /// Announce URL per listener, in the order given to [`Tracker::start`].
    pub urls: Vec<String>,
    /// Announces answered, per listener.
    pub announces: Vec<Arc<AtomicU64>>,
}

impl Tracker {
    /// `listeners`: (address to bind, seed address to hand out).
    pub fn start(listeners: &[(IpAddr, SocketAddr)]) -> Result<Self, BoxError> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut tracker = Self {
            stop: Arc::clone(&stop),
            threads: Vec::new(),
            urls: Vec::new(),
            announces: Vec::new(),
        };
        for &(bind, seed) in listeners {
            let listener = TcpListener::bind((bind, 0))?;
            let local = listener.local_addr()?;
            tracker.urls.push(format!("http://{local}/announce"));
            let count = Arc::new(AtomicU64::new(0));
            tracker.announces.push(Arc::clone(&count));
            let stop = Arc::clone(&stop);
            let thread = std::thread::Builder::new()
                .name(format!("tracker-{bind}"))
                .spawn(move || serve(&listener, seed, &stop, &count))?;
            tracker.threads.push((local, thread));
        }
        Ok(tracker)
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        for (local, thread) in self.threads.drain(..) {
            // Wakes the blocking accept, which then sees the flag. If the
            // address is gone, the thread is left to end with the process.
            if TcpStream::connect_timeout(&local, Duration::from_secs(1)).is_ok() {
                let _ = thread.join();
            }
        }
    }
}

fn serve(listener: &TcpListener, seed: SocketAddr, stop: &AtomicBool, count: &AtomicU64) {
    for stream in listener.incoming() {
        if stop.load(Ordering::Acquire) {
            return;
        }
        match stream {
            Ok(stream) => {
                if answer(stream, seed).is_ok() {
                    count.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

fn answer(mut stream: TcpStream, seed: SocketAddr) -> Result<(), BoxError> {
    let from = stream.peer_addr()?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.set_write_timeout(Some(Duration::from_secs(2)))?;
    let mut request = Vec::new();
    let mut buf = [0_u8; 2048];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 16 * 1024 {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        request.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&request);
    let target = text
        .lines()
        .next()
        .and_then(|line| line.strip_prefix("GET "))
        .and_then(|rest| rest.split(' ').next())
        .unwrap_or("");
    let Some(query) = target.strip_prefix("/announce") else {
        stream.write_all(
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )?;
        return Err("not an announce".into());
    };
    let port: Option<u16> = query
        .trim_start_matches('?')
        .split('&')
        .find_map(|kv| kv.strip_prefix("port="))
        .and_then(|p| p.parse().ok());
    // The seed announcing itself gets no peers (it would only connect to
    // itself).
    let is_seed = from.ip() == seed.ip() && port == Some(seed.port());
    let mut peers = Vec::new();
    if !is_seed && let IpAddr::V4(ip) = seed.ip() {
        peers.extend_from_slice(&ip.octets());
        peers.extend_from_slice(&seed.port().to_be_bytes());
    }
    let mut body = format!(
        "d8:completei1e10:incompletei0e8:intervali60e12:min intervali30e5:peers{}:",
        peers.len()
    )
    .into_bytes();
    body.extend_from_slice(&peers);
    body.push(b'e');
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(&body)?;
    Ok(())
}
