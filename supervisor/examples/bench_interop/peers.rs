//! The parties of a cell that the test harness does not provide as the
//! bench needs them: Revaer driven over its public `/v1` API (a fresh
//! `revaerd` per cell), an `aria2c` leecher driven over its JSON-RPC (so
//! that its add and its first byte can be timed), a magnet add for
//! qBittorrent, the tracker scrape that tells when a seeder is known, and
//! the SHA-256 check of a result. Every wait is a poll with a deadline that
//! also ends on Ctrl-C; every process is stopped and reaped on drop.

use std::fmt::Write as _;
use std::io::Read as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use reqwest::blocking::Client;
use serde_json::{Value, json};
use sha2::Digest as _;

use crate::common::bencode;
use crate::common::swarm::free_port;
use crate::support::{self, BoxError};

/// How long a daemon may take to answer after its start.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long `revaerd` gets to exit after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(30);

static STOP: AtomicBool = AtomicBool::new(false);

pub fn stop_requested() -> bool {
    STOP.load(Ordering::Acquire)
}

/// Turns SIGINT and SIGTERM into [`stop_requested`] (a thread of its own
/// waits for them), so that an interrupted run still stops its children,
/// deletes its namespace and its files.
pub fn install_stop_handler() -> Result<(), BoxError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (mut term, mut int) = runtime.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        Ok::<_, std::io::Error>((
            signal(SignalKind::terminate())?,
            signal(SignalKind::interrupt())?,
        ))
    })?;
    std::thread::Builder::new()
        .name("signals".to_owned())
        .spawn(move || {
            runtime.block_on(async {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            });
            STOP.store(true, Ordering::Release);
            eprintln!("bench-interop: interrupted; stopping children and cleaning up");
        })?;
    Ok(())
}

/// Polls `f` every `every` until it yields a value; fails when it fails,
/// when `timeout` passes or when the bench is interrupted.
pub fn poll_until<T>(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut f: impl FnMut() -> Result<Option<T>, BoxError>,
) -> Result<T, BoxError> {
    let deadline = Instant::now() + timeout;
    loop {
        if stop_requested() {
            return Err("interrupted".into());
        }
        if let Some(v) = f()? {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            return Err(format!("{what}: not within {} s", timeout.as_secs()).into());
        }
        std::thread::sleep(every);
    }
}

/// The bench's HTTP client: no proxy, 10 s per request.
pub fn http_client() -> Result<Client, BoxError> {
    Ok(Client::builder()
        .timeout(Duration::from_secs(10))
        .no_proxy()
        .build()?)
}

/// `text` with the characters a URL query value cannot hold as is escaped.
pub fn url_encode(text: &str) -> String {
    text.replace('%', "%25")
        .replace(':', "%3A")
        .replace('/', "%2F")
        .replace('&', "%26")
        .replace('=', "%3D")
}

/// `magnet:` link of the v1 info-hash `hash`, named `name`, with one tracker.
pub fn magnet(hash: &str, name: &str, tracker: &str) -> String {
    format!(
        "magnet:?xt=urn:btih:{hash}&dn={}&tr={}",
        url_encode(name),
        url_encode(tracker)
    )
}

/// `torrent` announcing to `url` only (`announce` replaced,
/// `announce-list` removed): both are outside the info dictionary, so the
/// info-hash is unchanged.
pub fn with_tracker(torrent: &[u8], url: &str) -> Result<Vec<u8>, BoxError> {
    let mut root = bencode::Value::decode(torrent).ok_or("the .torrent is not bencode")?;
    let bencode::Value::Dict(map) = &mut root else {
        return Err("the .torrent is not a dictionary".into());
    };
    map.remove(b"announce-list".as_slice());
    map.insert(b"announce".to_vec(), bencode::Value::str(url));
    Ok(root.encode())
}

/// Seeders the tracker at `announce_url` (HTTP) knows for `info_hash`
/// (40 hex digits), from its scrape.
pub fn scrape_seeders(http: &Client, announce_url: &str, info_hash: &str) -> Result<i64, BoxError> {
    let base = announce_url
        .strip_suffix("/announce")
        .ok_or("the announce URL does not end in /announce")?;
    let mut escaped = String::new();
    for i in (0..info_hash.len()).step_by(2) {
        escaped.push('%');
        escaped.push_str(info_hash.get(i..i + 2).ok_or("odd info-hash")?);
    }
    let body = http
        .get(format!("{base}/scrape?info_hash={escaped}"))
        .send()?
        .bytes()?;
    let answer = bencode::Value::decode(&body)
        .ok_or_else(|| format!("scrape answer: {}", String::from_utf8_lossy(&body)))?;
    let seeders = match answer.get("files") {
        Some(bencode::Value::Dict(files)) => files
            .values()
            .next()
            .and_then(|f| match f.get("complete") {
                Some(bencode::Value::Int(n)) => Some(*n),
                _ => None,
            })
            .unwrap_or(0),
        _ => 0,
    };
    Ok(seeders)
}

/// Waits until the tracker lists a seeder for `info_hash`.
pub fn wait_seeder_known(
    http: &Client,
    announce_url: &str,
    info_hash: &str,
    timeout: Duration,
) -> Result<(), BoxError> {
    poll_until(
        "the seeder's announce",
        timeout,
        Duration::from_millis(50),
        || Ok((scrape_seeders(http, announce_url, info_hash)? > 0).then_some(())),
    )
}

/// SHA-256 of the file at `path`, read in 1 MiB blocks.
pub fn sha256_file(path: &Path) -> Result<[u8; 32], BoxError> {
    let mut file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0_u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().into())
}

/// Standard base64 with padding (aria2's `addTorrent` takes the .torrent so).
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18_u32, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The last `lines` lines of the file at `path` (for failure messages).
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

// ------------------------------------------------------------------ Revaer

/// A fresh `revaerd` (its own data dir under the cell's dir), its
/// BitTorrent socket on `listen`, driven over `/v1` with the bootstrap
/// admin key. SIGTERM (then SIGKILL) and reaped on drop.
pub struct Revaer {
    daemon: support::Daemon,
    pub url: String,
    key: String,
    pub data: PathBuf,
    pub log: PathBuf,
    http: Client,
}

impl Revaer {
    pub fn start(bin_dir: &Path, dir: &Path, listen: Ipv4Addr) -> Result<Self, BoxError> {
        let data = dir.join("revaer-data");
        std::fs::create_dir_all(&data)?;
        // The e2e tests' loopback engine (no DHT/LSD/UPnP/NAT-PMP, TCP only)
        // on `listen`, and a request rate far above the bench's polls.
        std::fs::write(
            data.join("revaer.toml"),
            format!(
                "[api]\nlisten = \"127.0.0.1:0\"\ndefault_rate_per_minute = 1000000\n\n\
                 [engine]\nlisten_interfaces = \"{listen}:0\"\nenable_dht = false\nenable_lsd = false\n\
                 enable_upnp = false\nenable_natpmp = false\nenable_utp = false\n"
            ),
        )?;
        let log = dir.join("revaerd.log");
        let mut daemon = support::Daemon::start_logged(bin_dir, &data, &log)?;
        let http = http_client()?;
        let url = poll_until(
            "revaerd answering 200 on /health/full",
            READY_TIMEOUT,
            Duration::from_millis(20),
            || {
                if let Some(status) = daemon.0.try_wait()? {
                    return Err(format!("revaerd exited: {status}\n{}", tail(&log, 10)).into());
                }
                let Some(url) = support::api_url(&data) else {
                    return Ok(None);
                };
                Ok(http
                    .get(format!("{url}/health/full"))
                    .send()
                    .ok()
                    .filter(|r| r.status().as_u16() == 200)
                    .map(|_| url))
            },
        )?;
        let key = support::admin_key(&http, &url, &data, READY_TIMEOUT)?;
        Ok(Self {
            daemon,
            url,
            key,
            data,
            log,
            http,
        })
    }

    /// Where the engine saves (and seeds from).
    pub fn downloads(&self) -> PathBuf {
        self.data.join("downloads")
    }

    fn created(resp: reqwest::blocking::Response) -> Result<String, BoxError> {
        let status = resp.status().as_u16();
        let body: Value = resp.json()?;
        if status != 201 {
            return Err(format!("add refused: {status} {body}").into());
        }
        Ok(body["id"].as_str().ok_or("no id in the answer")?.to_owned())
    }

    /// `POST /v1/torrents` with the `.torrent` (multipart part `torrent`).
    pub fn add_torrent(&self, torrent: &[u8]) -> Result<String, BoxError> {
        let boundary = "revaer-bench-interop-4c1e";
        let mut body = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"torrent\"; filename=\"t.torrent\"\r\nContent-Type: application/x-bittorrent\r\n\r\n"
        )
        .into_bytes();
        body.extend_from_slice(torrent);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        Self::created(
            self.http
                .post(format!("{}/v1/torrents", self.url))
                .bearer_auth(&self.key)
                .header(
                    "content-type",
                    format!("multipart/form-data; boundary={boundary}"),
                )
                .body(body)
                .send()?,
        )
    }

    /// `POST /v1/torrents` with `{"magnet": …}`.
    pub fn add_magnet(&self, magnet: &str) -> Result<String, BoxError> {
        Self::created(
            self.http
                .post(format!("{}/v1/torrents", self.url))
                .bearer_auth(&self.key)
                .json(&json!({ "magnet": magnet }))
                .send()?,
        )
    }

    /// `GET /v1/torrents/{id}`; `None` unless 200.
    pub fn detail(&self, id: &str) -> Result<Option<Value>, BoxError> {
        if self.exited() {
            return Err(format!("revaerd exited\n{}", tail(&self.log, 10)).into());
        }
        let resp = self
            .http
            .get(format!("{}/v1/torrents/{id}", self.url))
            .bearer_auth(&self.key)
            .send()?;
        if resp.status().as_u16() != 200 {
            return Ok(None);
        }
        Ok(Some(resp.json()?))
    }

    /// Whether `revaerd` has exited (`try_wait` needs `&mut`; its
    /// `/proc/<pid>/stat` tells without reaping it).
    fn exited(&self) -> bool {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.daemon.0.id()))
            .unwrap_or_default();
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next());
        matches!(state, Some("Z" | "X") | None)
    }

    /// Copies the files under `src` (a file or a folder named `name`) to
    /// the downloads dir, adds `torrent` and waits until Revaer checked
    /// them and seeds.
    pub fn seed(
        &self,
        src: &Path,
        name: &str,
        torrent: &[u8],
        timeout: Duration,
    ) -> Result<String, BoxError> {
        copy_tree(&src.join(name), &self.downloads().join(name))?;
        let id = self.add_torrent(torrent)?;
        poll_until(
            "Revaer seeding the payload",
            timeout,
            Duration::from_millis(50),
            || {
                let detail = self.detail(&id)?;
                if let Some(error) = detail.as_ref().and_then(|d| d["error"].as_str()) {
                    return Err(format!("Revaer: torrent error: {error}").into());
                }
                Ok(detail.filter(|d| d["state"] == "seeding").map(|_| ()))
            },
        )?;
        Ok(id)
    }
}

impl Drop for Revaer {
    fn drop(&mut self) {
        // `support::Daemon`'s own drop SIGKILLs it if this did not end it.
        let _ = self.daemon.terminate(STOP_GRACE);
    }
}

/// Copies a file, or a folder recursively.
fn copy_tree(from: &Path, to: &Path) -> Result<(), BoxError> {
    if from.is_dir() {
        std::fs::create_dir_all(to)?;
        for entry in std::fs::read_dir(from)? {
            let entry = entry?;
            copy_tree(&entry.path(), &to.join(entry.file_name()))?;
        }
    } else {
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::copy(from, to).map_err(|e| format!("copy {}: {e}", from.display()))?;
    }
    Ok(())
}

// ------------------------------------------------------------------ aria2c

/// `aria2c` as a leecher with its JSON-RPC on (so the bench adds the
/// torrent after the process is up, and reads its progress): DHT, LPD and
/// PEX off as in the harness, stops seeding once complete.
pub struct Aria2Leech {
    child: Child,
    rpc: String,
    pub dir: PathBuf,
    http: Client,
}

impl Aria2Leech {
    pub fn start(dir: &Path) -> Result<Self, BoxError> {
        std::fs::create_dir_all(dir)?;
        let rpc_port = free_port();
        let listen_port = free_port();
        let child = Command::new("aria2c")
            .arg("--enable-rpc=true")
            .arg(format!("--rpc-listen-port={rpc_port}"))
            .arg("--rpc-listen-all=false")
            .arg(format!("--listen-port={listen_port}"))
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
                "--seed-time=0",
                "--bt-save-metadata=false",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("aria2c (Debian package aria2): {e}"))?;
        let mut leech = Self {
            child,
            rpc: format!("http://127.0.0.1:{rpc_port}/jsonrpc"),
            dir: dir.to_path_buf(),
            http: http_client()?,
        };
        poll_until(
            "aria2c answering its RPC",
            READY_TIMEOUT,
            Duration::from_millis(20),
            || {
                if let Some(status) = leech.child.try_wait()? {
                    return Err(format!("aria2c exited: {status}").into());
                }
                Ok(leech.call("aria2.getVersion", &json!([])).ok())
            },
        )?;
        Ok(leech)
    }

    fn call(&self, method: &str, params: &Value) -> Result<Value, BoxError> {
        let answer: Value = self
            .http
            .post(&self.rpc)
            .json(&json!({"jsonrpc": "2.0", "id": "bench", "method": method, "params": params}))
            .send()?
            .json()?;
        if let Some(error) = answer.get("error") {
            return Err(format!("aria2c {method}: {error}").into());
        }
        Ok(answer["result"].clone())
    }

    pub fn add_torrent(&self, torrent: &[u8]) -> Result<(), BoxError> {
        self.call("aria2.addTorrent", &json!([base64(torrent)]))
            .map(drop)
    }

    pub fn add_magnet(&self, magnet: &str) -> Result<(), BoxError> {
        self.call("aria2.addUri", &json!([[magnet]])).map(drop)
    }

    /// `(completed bytes, complete)` of its download of `size` bytes (a
    /// magnet's metadata download is the other, smaller entry).
    pub fn progress(&mut self, size: u64) -> Result<(u64, bool), BoxError> {
        if let Some(status) = self.child.try_wait()? {
            return Err(format!("aria2c exited: {status}").into());
        }
        let keys = json!([
            "gid",
            "status",
            "totalLength",
            "completedLength",
            "errorMessage"
        ]);
        let mut entries = Vec::new();
        for (method, params) in [
            ("aria2.tellActive", json!([keys])),
            ("aria2.tellStopped", json!([0, 100, keys])),
        ] {
            if let Value::Array(list) = self.call(method, &params)? {
                entries.extend(list);
            }
        }
        let number = |v: &Value| v.as_str().and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
        if let Some(failed) = entries.iter().find(|e| e["status"] == "error") {
            return Err(format!("aria2c: {}", failed["errorMessage"]).into());
        }
        Ok(entries
            .iter()
            .find(|e| number(&e["totalLength"]) == size)
            .map_or((0, false), |e| {
                (number(&e["completedLength"]), e["status"] == "complete")
            }))
    }
}

impl Drop for Aria2Leech {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ------------------------------------------------------------- qBittorrent

/// Adds `magnet` to the qBittorrent whose `WebUI` API is `api`, saving to
/// `save` (the harness' `add` takes `.torrent` bytes only).
pub fn qbittorrent_add_magnet(
    http: &Client,
    api: &str,
    magnet: &str,
    save: &Path,
) -> Result<(), BoxError> {
    let boundary = "revaer-bench-interop-qbt-51e2";
    let mut body = String::new();
    for (name, value) in [
        ("urls", magnet.to_owned()),
        ("savepath", save.display().to_string()),
        ("paused", "false".to_owned()),
        ("autoTMM", "false".to_owned()),
        ("contentLayout", "Original".to_owned()),
    ] {
        let _ = write!(
            body,
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
        );
    }
    let _ = write!(body, "--{boundary}--\r\n");
    let resp = http
        .post(format!("{api}/torrents/add"))
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(body)
        .send()?;
    let status = resp.status();
    let text = resp.text()?;
    if !status.is_success() || text.trim() != "Ok." {
        return Err(format!("qBittorrent refused the magnet: {status} {text}").into());
    }
    Ok(())
}
