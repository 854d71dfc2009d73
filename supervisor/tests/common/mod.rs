//! Test harness: runs the real `revaerd` (and through it the real worker
//! binaries) on a throw-away data dir, and polls its HTTP API with
//! deadlines. Nothing here sleeps to synchronise: every wait is a poll for
//! an observable condition with a generous deadline.

#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::needless_pass_by_value
)]

pub mod bencode;
pub mod clients;
pub mod swarm;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use revaer_api_models::HealthFull;

/// Deadline for anything that should happen "soon".
pub const DEADLINE: Duration = Duration::from_secs(30);
/// Interval between polls.
pub const POLL: Duration = Duration::from_millis(20);

/// Where cargo put the binaries (`target/<profile>/`).
pub fn bin_dir() -> PathBuf {
    let revaerd = PathBuf::from(env!("CARGO_BIN_EXE_revaerd"));
    revaerd.parent().unwrap().to_path_buf()
}

/// A unique, empty temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir =
            std::env::temp_dir().join(format!("revaer-e2e-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running daemon.
pub struct Daemon {
    pub child: Child,
    pub data: TempDir,
    client: reqwest::blocking::Client,
}

/// Engine settings for tests: loopback only, no DHT/LSD/UPnP/NAT-PMP, TCP
/// only (uTP over loopback is ~28x slower).
pub const LOOPBACK_ENGINE: &str = "[engine]\nlisten_interfaces = \"127.0.0.1:0\"\nenable_dht = false\nenable_lsd = false\nenable_upnp = false\nenable_natpmp = false\nenable_utp = false\n";

/// Config used by tests: ephemeral ports, loopback only, quick restarts.
pub fn test_config(extra: &str) -> String {
    format!(
        "[api]\nlisten = \"127.0.0.1:0\"\ndefault_rate_per_minute = 1000000\n\n{LOOPBACK_ENGINE}\n[supervisor]\nrestart_backoff_initial_ms = 50\nrestart_backoff_max_ms = 2000\nshutdown_grace_ms = 5000\n{extra}"
    )
}

/// Spawns `revaerd` from `bin_dir` on the data dir `data`, with `env`
/// added to its environment.
fn spawn_revaerd(bin_dir: &Path, data: &Path, env: &[(&str, &str)]) -> Child {
    spawn_revaerd_to(bin_dir, data, env, Stdio::null(), Stdio::inherit())
}

fn spawn_revaerd_to(
    bin_dir: &Path,
    data: &Path,
    env: &[(&str, &str)],
    stdout: Stdio,
    stderr: Stdio,
) -> Child {
    revaerd_command(bin_dir, &[])
        .arg("--data-dir")
        .arg(data)
        .env("RUST_LOG", "info")
        .env_remove("REVAER_TELEMETRY_ENDPOINT")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .unwrap()
}

/// `revaerd` from `bin_dir`, run through `wrapper` (e.g. `ip netns exec
/// NAME`, which execs it in place) when that is not empty.
fn revaerd_command(bin_dir: &Path, wrapper: &[&str]) -> Command {
    let revaerd = bin_dir.join("revaerd");
    match wrapper.split_first() {
        None => Command::new(revaerd),
        Some((program, args)) => {
            let mut cmd = Command::new(program);
            cmd.args(args).arg(revaerd);
            cmd
        }
    }
}

impl Daemon {
    /// [`Self::start_with`], with `revaerd` run through `wrapper`, e.g.
    /// `["ip", "netns", "exec", NAME]` to run it in a network namespace.
    pub fn start_wrapped(bin_dir: &Path, config: &str, wrapper: &[&str]) -> Self {
        let data = TempDir::new("data");
        std::fs::write(data.0.join("revaer.toml"), config).unwrap();
        let child = revaerd_command(bin_dir, wrapper)
            .arg("--data-dir")
            .arg(&data.0)
            .env("RUST_LOG", "info")
            .env_remove("REVAER_TELEMETRY_ENDPOINT")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        Self::around(child, data)
    }

    /// The handle of a `revaerd` just spawned on `data`, with the HTTP
    /// client the tests use (5 s timeout, no proxy).
    fn around(child: Child, data: TempDir) -> Self {
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(5))
            .no_proxy()
            .build()
            .unwrap();
        Self {
            child,
            data,
            client,
        }
    }

    /// Starts `revaerd` from `bin_dir` with `config` as `revaer.toml`.
    pub fn start_with(bin_dir: &Path, config: &str) -> Self {
        Self::start_with_env(bin_dir, config, &[])
    }

    /// [`Self::start_with`], after `prepare` ran on the (still empty) data
    /// dir: e.g. to mount a filesystem where the daemon will write (the
    /// sandbox binds to the directories that exist when it starts).
    pub fn start_prepared<T>(
        bin_dir: &Path,
        config: &str,
        prepare: impl FnOnce(&Path) -> T,
    ) -> (Self, T) {
        let data = TempDir::new("data");
        std::fs::write(data.0.join("revaer.toml"), config).unwrap();
        let prepared = prepare(&data.0);
        let child = spawn_revaerd(bin_dir, &data.0, &[]);
        (Self::around(child, data), prepared)
    }

    /// [`Self::start_with`], with `env` added to the daemon's environment.
    pub fn start_with_env(bin_dir: &Path, config: &str, env: &[(&str, &str)]) -> Self {
        let data = TempDir::new("data");
        std::fs::write(data.0.join("revaer.toml"), config).unwrap();
        let child = spawn_revaerd(bin_dir, &data.0, env);
        Self::around(child, data)
    }

    /// Starts `revaerd` on `data`, which already holds its `revaer.toml`
    /// (e.g. a dir the test watches from before the first write).
    pub fn start_in(bin_dir: &Path, data: TempDir, env: &[(&str, &str)]) -> Self {
        let child = spawn_revaerd(bin_dir, &data.0, env);
        Self::around(child, data)
    }

    pub fn start() -> Self {
        Self::start_with(&bin_dir(), &test_config(""))
    }

    /// [`Self::start_with_env`], with everything the daemon (and its
    /// workers) print to stdout and stderr written to `log`.
    pub fn start_logged(bin_dir: &Path, config: &str, env: &[(&str, &str)], log: &Path) -> Self {
        let data = TempDir::new("data");
        std::fs::write(data.0.join("revaer.toml"), config).unwrap();
        let out = std::fs::File::create(log).unwrap();
        let err = out.try_clone().unwrap();
        let child = spawn_revaerd_to(bin_dir, &data.0, env, out.into(), err.into());
        Self::around(child, data)
    }

    /// The API base URL, as the supervisor recorded it (changes when the API
    /// restarts on port 0).
    pub fn url(&self) -> Option<String> {
        let text = std::fs::read_to_string(self.data.0.join("run/api.url")).ok()?;
        let url = text.trim().to_owned();
        (!url.is_empty()).then_some(url)
    }

    /// `GET /health/full`: status code and body, if the API answers.
    pub fn health_full(&self) -> Option<(u16, HealthFull)> {
        let url = self.url()?;
        let resp = self.client.get(format!("{url}/health/full")).send().ok()?;
        let status = resp.status().as_u16();
        let body = resp.json::<HealthFull>().ok()?;
        Some((status, body))
    }

    /// Polls `/health/full` until `pred` holds; panics with the last body
    /// seen when the deadline passes.
    pub fn wait_health(&self, what: &str, pred: impl Fn(u16, &HealthFull) -> bool) -> HealthFull {
        let deadline = Instant::now() + DEADLINE;
        let mut last = None;
        loop {
            if let Some((status, body)) = self.health_full() {
                if pred(status, &body) {
                    return body;
                }
                last = Some((status, body));
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; last: {last:#?}"
            );
            std::thread::sleep(POLL);
        }
    }

    pub fn wait_ok(&self) -> HealthFull {
        self.wait_health("status ok", |code, h| {
            code == 200 && h.status == revaer_api_models::HealthStatus::Ok
        })
    }

    pub fn client(&self) -> &reqwest::blocking::Client {
        &self.client
    }

    /// The bootstrap admin key the daemon wrote on first start.
    pub fn admin_key(&self) -> String {
        let path = self.data.0.join("bootstrap-admin.key");
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Ok(key) = std::fs::read_to_string(&path)
                && !key.trim().is_empty()
            {
                return key.trim().to_owned();
            }
            assert!(Instant::now() < deadline, "no bootstrap admin key");
            std::thread::sleep(POLL);
        }
    }

    pub fn worker_pid(health: &HealthFull, worker: &str) -> u32 {
        health.workers[worker].pid.unwrap()
    }

    /// Sends `sig` to the supervisor and waits for it to exit.
    pub fn signal_and_wait(&mut self, sig: nix::sys::signal::Signal) -> ExitStatus {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).unwrap());
        nix::sys::signal::kill(pid, sig).unwrap();
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "revaerd did not exit after {sig}"
            );
            std::thread::sleep(POLL);
        }
    }
}

impl Drop for Daemon {
    /// Stops the daemon the way an operator would (SIGTERM, so workers exit
    /// cleanly and coverage profiles are written), killing it only if it
    /// does not stop within the deadline.
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_some() {
            return;
        }
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        let deadline = Instant::now() + DEADLINE;
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(POLL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `kill -9 pid`.
pub fn kill9(pid: u32) {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
}

/// Whether `pid` still exists in any form, zombie included.
pub fn process_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Polls until `pid` no longer exists (not even as a zombie).
pub fn wait_gone(pid: u32) {
    let deadline = Instant::now() + DEADLINE;
    while process_exists(pid) {
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        assert!(
            Instant::now() < deadline,
            "process {pid} still exists: {state}"
        );
        std::thread::sleep(POLL);
    }
}

// ---------------------------------------------------------------------------
// BitTorrent fixtures
// ---------------------------------------------------------------------------

/// Deterministic pseudo-random bytes (xorshift), so fixtures differ per file
/// without a RNG dependency.
pub fn fixture_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A libtorrent session in the test process seeding one torrent on
/// 127.0.0.1, with DHT/LSD/UPnP/NAT-PMP and uTP off.
pub struct Seed {
    pub session: libtorrent_sys::Session,
    pub dir: TempDir,
    /// Name of the torrent's top folder (multi-file) or file (single-file).
    pub name: String,
    pub files: Vec<(String, Vec<u8>)>,
    pub torrent: Vec<u8>,
    pub id: String,
    pub port: u16,
}

impl Seed {
    /// Seeds a multi-file v1 torrent named `name` with the given files
    /// (relative path, size). `upload_limit` in bytes/s (0 = unlimited).
    pub fn multi_file(name: &str, files: &[(&str, usize)], upload_limit: i32) -> Self {
        Self::build(name, files, upload_limit, Vec::new())
    }

    /// Like [`Seed::multi_file`], with the torrent announcing to `trackers`.
    pub fn build(
        name: &str,
        files: &[(&str, usize)],
        upload_limit: i32,
        trackers: Vec<String>,
    ) -> Self {
        let contents = files
            .iter()
            .enumerate()
            .map(|(i, (path, size))| ((*path).to_owned(), fixture_bytes(*size, 0x5eed + i as u64)))
            .collect();
        Self::with_contents(name, contents, upload_limit, trackers)
    }

    /// Seeds a multi-file v1 torrent named `name` holding exactly
    /// `contents` (relative path, bytes).
    pub fn with_contents(
        name: &str,
        contents: Vec<(String, Vec<u8>)>,
        upload_limit: i32,
        trackers: Vec<String>,
    ) -> Self {
        let dir = TempDir::new("seed");
        let root = dir.0.join(name);
        for (path, bytes) in &contents {
            let full = root.join(path);
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
        let mut settings = libtorrent_sys::SessionSettings::loopback();
        settings.upload_rate_limit = upload_limit;
        let session = libtorrent_sys::Session::new(&settings).unwrap();
        let params = libtorrent_sys::AddTorrentParams::new(
            libtorrent_sys::TorrentSource::TorrentFile(torrent.clone()),
            &dir.0,
        );
        let id = session.add_torrent(&params).unwrap();
        let seed = Self {
            port: session.listen_port(),
            session,
            dir,
            name: name.to_owned(),
            files: contents,
            torrent,
            id: id.to_string(),
        };
        let deadline = Instant::now() + DEADLINE;
        while !seed.session.status(&id).unwrap().is_seeding {
            assert!(Instant::now() < deadline, "seed never started seeding");
            let _ = seed.session.pop_alerts();
            std::thread::sleep(POLL);
        }
        seed
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn magnet(&self) -> String {
        format!("magnet:?xt=urn:btih:{}&dn={}", self.id, self.name)
    }
}

impl Daemon {
    /// Sends one engine command through the API's test route.
    pub fn engine(&self, request: &serde_json::Value) -> serde_json::Value {
        let url = self.url().unwrap();
        let resp = self
            .client()
            .post(format!("{url}/v1/_test/engine"))
            .bearer_auth(self.admin_key())
            .json(request)
            .send()
            .unwrap();
        assert_eq!(
            resp.status().as_u16(),
            200,
            "engine route: {:?}",
            resp.text()
        );
        resp.json().unwrap()
    }

    /// `POST /v1/torrents` with `torrent` as the multipart `.torrent` part,
    /// as `key`; asserts `201 Created` and returns the new torrent's id.
    pub fn add_torrent_file(&self, key: &str, torrent: &[u8]) -> String {
        let url = self.url().unwrap();
        let (content_type, body) = torrent_form(torrent, None);
        let resp = self
            .client()
            .post(format!("{url}/v1/torrents"))
            .bearer_auth(key)
            .header("content-type", content_type)
            .body(body)
            .send()
            .unwrap();
        let status = resp.status().as_u16();
        let body: serde_json::Value = resp.json().unwrap();
        assert_eq!(status, 201, "add refused: {body}");
        body["id"].as_str().unwrap().to_owned()
    }

    /// Adds a torrent; returns the engine's answer.
    pub fn add(&self, source: serde_json::Value, extra: serde_json::Value) -> serde_json::Value {
        let mut add = serde_json::json!({
            "source": source,
            "paused": false,
            "sequential": false,
            "file_priorities": [],
            "peers": [],
        });
        if let (Some(add), Some(extra)) = (add.as_object_mut(), extra.as_object()) {
            for (k, v) in extra {
                add.insert(k.clone(), v.clone());
            }
        }
        self.engine(&serde_json::json!({ "Add": add }))
    }

    /// The torrent's detail, if the engine answers with one.
    pub fn detail(&self, id: &str) -> Option<serde_json::Value> {
        let answer = self.engine(&serde_json::json!({"Detail": {"id": id}}));
        answer.get("Detail").cloned()
    }

    /// Polls the torrent's detail until `pred` holds.
    pub fn wait_torrent(
        &self,
        id: &str,
        what: &str,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut last = None;
        loop {
            if let Ok(Some(detail)) =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.detail(id)))
            {
                if pred(&detail) {
                    return detail;
                }
                last = Some(detail);
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; last: {last:#?}"
            );
            std::thread::sleep(POLL);
        }
    }

    /// Engine events the API has recorded.
    pub fn events(&self) -> Vec<serde_json::Value> {
        let url = self.url().unwrap();
        self.client()
            .get(format!("{url}/v1/_test/engine/events"))
            .bearer_auth(self.admin_key())
            .send()
            .unwrap()
            .json()
            .unwrap()
    }

    /// Stops the daemon with SIGTERM and starts it again on the same data dir.
    pub fn restart(&mut self, bin_dir: &Path) {
        let status = self.signal_and_wait(nix::sys::signal::Signal::SIGTERM);
        assert_eq!(status.code(), Some(0));
        self.restart_stopped(bin_dir);
    }

    /// Starts the (already stopped) daemon again on the same data dir.
    pub fn restart_stopped(&mut self, bin_dir: &Path) {
        let _ = std::fs::remove_file(self.data.0.join("run/api.url"));
        self.child = spawn_revaerd(bin_dir, &self.data.0, &[]);
    }
}

/// Summary state of a detail document.
pub fn state(detail: &serde_json::Value) -> &str {
    detail["summary"]["state"].as_str().unwrap_or("")
}

// ---------------------------------------------------------------------------
// A tiny HTTP tracker on 127.0.0.1
// ---------------------------------------------------------------------------

/// One announce the tracker received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announce {
    pub info_hash: String,
    pub port: u16,
    pub event: Option<String>,
}

/// A BitTorrent HTTP tracker good enough for tests: records every announce
/// and answers with the compact list of the other peers (all on 127.0.0.1)
/// that announced the same info-hash.
pub struct Tracker {
    pub addr: std::net::SocketAddr,
    announces: std::sync::Arc<std::sync::Mutex<Vec<Announce>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Tracker {
    pub fn start() -> Self {
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let announces = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (rec, halt) = (announces.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !halt.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => Self::serve(stream, &rec),
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Self {
            addr,
            announces,
            stop,
            thread: Some(thread),
        }
    }

    pub fn announce_url(&self) -> String {
        format!("http://{}/announce", self.addr)
    }

    pub fn announces(&self, info_hash: &str) -> Vec<Announce> {
        self.announces
            .lock()
            .unwrap()
            .iter()
            .filter(|a| a.info_hash == info_hash)
            .cloned()
            .collect()
    }

    fn serve(mut stream: std::net::TcpStream, record: &std::sync::Mutex<Vec<Announce>>) {
        use std::io::{Read, Write};
        stream.set_nonblocking(false).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let mut buf = vec![0_u8; 8192];
        let mut len = 0;
        while len < buf.len() {
            match stream.read(&mut buf[len..]) {
                Ok(0) | Err(_) => break,
                Ok(n) => len += n,
            }
            if buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
        let request = String::from_utf8_lossy(&buf[..len]).into_owned();
        let target = request.split_whitespace().nth(1).unwrap_or("");
        let query = target.split_once('?').map_or("", |(_, q)| q);
        let mut info_hash = None;
        let mut port = None;
        let mut event = None;
        for pair in query.split('&') {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "info_hash" => {
                    info_hash = Some(percent_decode(value).iter().fold(
                        String::new(),
                        |mut hex, b| {
                            use std::fmt::Write as _;
                            let _ = write!(hex, "{b:02x}");
                            hex
                        },
                    ));
                }
                "port" => port = value.parse().ok(),
                "event" => event = Some(value.to_owned()),
                _ => {}
            }
        }
        let body = match (info_hash, port) {
            (Some(info_hash), Some(port)) => {
                let mut all = record.lock().unwrap();
                all.push(Announce {
                    info_hash: info_hash.clone(),
                    port,
                    event,
                });
                let mut peers: Vec<u16> = all
                    .iter()
                    .filter(|a| {
                        a.info_hash == info_hash
                            && a.port != port
                            && a.event.as_deref() != Some("stopped")
                    })
                    .map(|a| a.port)
                    .collect();
                peers.sort_unstable();
                peers.dedup();
                let mut compact = Vec::new();
                for p in peers {
                    compact.extend_from_slice(&[127, 0, 0, 1]);
                    compact.extend_from_slice(&p.to_be_bytes());
                }
                let mut body = format!("d8:intervali5e5:peers{}:", compact.len()).into_bytes();
                body.extend_from_slice(&compact);
                body.push(b'e');
                body
            }
            _ => b"d14:failure reason13:bad announcee".to_vec(),
        };
        let _ = write!(
            stream,
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let _ = stream.write_all(&body);
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn percent_decode(s: &str) -> Vec<u8> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    out
}

/// One SSE message.
#[derive(Debug, Clone)]
pub struct SseMessage {
    pub id: u64,
    pub event: String,
    pub data: serde_json::Value,
}

/// Reads `/v1/events` on a thread until the connection ends.
/// `query` is appended to `/v1/events` as is (e.g. `?last_event_id=0`).
pub fn follow_events(url: &str, key: &str, query: &str) -> std::sync::mpsc::Receiver<SseMessage> {
    use std::io::{BufRead, BufReader};
    let (tx, rx) = std::sync::mpsc::channel();
    let client = reqwest::blocking::Client::builder()
        .timeout(None)
        .no_proxy()
        .build()
        .unwrap();
    let response = client
        .get(format!("{url}/v1/events{query}"))
        .bearer_auth(key)
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    std::thread::spawn(move || {
        let (mut id, mut event, mut data) = (None, String::new(), String::new());
        for line in BufReader::new(response).lines() {
            let Ok(line) = line else { return };
            if line.is_empty() {
                if let (Some(id), Ok(value)) = (id.take(), serde_json::from_str(&data)) {
                    let message = SseMessage {
                        id,
                        event: std::mem::take(&mut event),
                        data: value,
                    };
                    if tx.send(message).is_err() {
                        return;
                    }
                }
                event.clear();
                data.clear();
            } else if let Some(v) = line.strip_prefix("id:") {
                id = v.trim().parse().ok();
            } else if let Some(v) = line.strip_prefix("event:") {
                v.trim().clone_into(&mut event);
            } else if let Some(v) = line.strip_prefix("data:") {
                data.push_str(v.trim_start());
            }
        }
    });
    rx
}

/// A `POST /v1/torrents` multipart body: part `torrent` (the `.torrent`
/// bytes) and, when given, part `options` (JSON). Its content type and the
/// body.
pub fn torrent_form(torrent: &[u8], options: Option<&serde_json::Value>) -> (String, Vec<u8>) {
    let boundary = "revaer-e2e-boundary-7d1f";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"torrent\"; filename=\"t.torrent\"\r\nContent-Type: application/x-bittorrent\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(torrent);
    body.extend_from_slice(b"\r\n");
    if let Some(options) = options {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"options\"\r\nContent-Type: application/json\r\n\r\n{options}\r\n"
            )
            .as_bytes(),
        );
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}
