//! The five downloaders. Each run starts its downloader fresh (own process,
//! own config and download directory), waits until it is ready, then
//! measures from the add request to the first poll that sees the download
//! complete.

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use libtorrent_sys as lt;
use reqwest::blocking::Client;
use serde_json::{Value, json};

use crate::netns::NS_ADDR;
use crate::util::{
    BoxError, Proc, base64, comm, cpu_seconds, free_port, peak_rss, poll_until, seed_cpu_seconds,
    stop_requested,
};

/// Longest time one download may take (Transmission is the slow one).
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(300);
/// Longest time a downloader may take to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a downloader gets to exit after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(30);
const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Downloader {
    Bare,
    Revaer,
    Qbittorrent,
    Transmission,
    Aria2,
}

impl Downloader {
    pub const ALL: [Self; 5] = [
        Self::Bare,
        Self::Revaer,
        Self::Qbittorrent,
        Self::Transmission,
        Self::Aria2,
    ];

    /// Name used on the command line (`--only`) and in the last line.
    pub fn key(self) -> &'static str {
        match self {
            Self::Bare => "bare",
            Self::Revaer => "revaer",
            Self::Qbittorrent => "qbittorrent",
            Self::Transmission => "transmission",
            Self::Aria2 => "aria2",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Bare => "(a) bare libtorrent",
            Self::Revaer => "(b) Revaer",
            Self::Qbittorrent => "(c) qbittorrent-nox",
            Self::Transmission => "(d) transmission-daemon",
            Self::Aria2 => "(e) aria2c",
        }
    }

    /// Which process is measured.
    pub fn measured_process(self) -> &'static str {
        match self {
            Self::Bare => "child `bench_transfer --bare-download`",
            Self::Revaer => "`revaer-engine` worker (pid from `/health/full`)",
            Self::Qbittorrent => "`qbittorrent-nox`",
            Self::Transmission => "`transmission-daemon`",
            Self::Aria2 => "`aria2c`",
        }
    }
}

/// What every run needs.
#[derive(Debug)]
pub struct Ctx {
    /// The `.torrent` (tracker on 127.0.0.1).
    pub torrent: Vec<u8>,
    pub torrent_path: PathBuf,
    /// Same info dictionary (same info-hash), tracker on the veth address.
    pub torrent_netns: Option<Vec<u8>>,
    pub info_hash: String,
    pub file_name: String,
    pub size: u64,
    /// The seed on 127.0.0.1.
    pub seed: SocketAddr,
    /// The network namespace for Transmission (owned by `main`, which
    /// deletes it after the seed and tracker have stopped).
    pub netns: Option<String>,
    /// `target/release`, holding `revaerd` and the workers.
    pub bin_dir: PathBuf,
    pub self_exe: PathBuf,
    pub http: Client,
    pub poll: Duration,
}

/// One measured download.
#[derive(Debug, Clone)]
pub struct Sample {
    pub wall: Duration,
    /// CPU seconds of the measured process between add and completion.
    pub cpu: f64,
    /// Its peak RSS (`VmHWM`) at completion, bytes.
    pub rss: u64,
    /// When the first verified bytes showed up (at poll granularity).
    pub first_data: Option<Duration>,
    /// What the downloader reports about its own set-up (Revaer: its
    /// engine's libtorrent session).
    pub context: Option<String>,
    pub note: String,
}

/// CPU and time from the add request on.
struct Meter {
    pid: u32,
    cpu0: f64,
    seed_cpu0: f64,
    t0: Instant,
}

impl Meter {
    fn start(pid: u32) -> Result<Self, BoxError> {
        Ok(Self {
            pid,
            cpu0: cpu_seconds(pid)?,
            seed_cpu0: seed_cpu_seconds()?,
            t0: Instant::now(),
        })
    }

    fn elapsed(&self) -> Duration {
        self.t0.elapsed()
    }

    /// Samples at completion: time first, then CPU and peak RSS.
    /// `first_data`: when the first verified bytes showed up.
    fn finish(&self, first_data: Option<Duration>) -> Result<Sample, BoxError> {
        let wall = self.t0.elapsed();
        let cpu = cpu_seconds(self.pid)? - self.cpu0;
        let rss = peak_rss(self.pid)?;
        let seed = seed_cpu_seconds()? - self.seed_cpu0;
        Ok(Sample {
            wall,
            cpu,
            rss,
            first_data,
            context: None,
            note: format!("seed {seed:.2} CPU s"),
        })
    }
}

pub fn run(which: Downloader, ctx: &Ctx, dir: &Path) -> Result<Sample, BoxError> {
    let sample = match which {
        Downloader::Bare => bare(ctx, dir),
        Downloader::Revaer => revaer(ctx, dir),
        Downloader::Qbittorrent => qbittorrent(ctx, dir),
        Downloader::Transmission => transmission(ctx, dir),
        Downloader::Aria2 => aria2(ctx, dir),
    }?;
    Ok(sample)
}

/// The downloaded file must be there, whole.
fn check_file(path: &Path, size: u64) -> Result<(), BoxError> {
    let len = std::fs::metadata(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .len();
    if len != size {
        return Err(format!("{}: {len} bytes, expected {size}", path.display()).into());
    }
    Ok(())
}

// ---------------------------------------------------------------- (a) bare

fn line_channel(stdout: ChildStdout) -> Result<mpsc::Receiver<String>, BoxError> {
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("bare-stdout".to_owned())
        .spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        })?;
    Ok(rx)
}

fn expect_line(
    lines: &mpsc::Receiver<String>,
    proc: &mut Proc,
    prefix: &str,
    timeout: Duration,
) -> Result<String, BoxError> {
    let deadline = Instant::now() + timeout;
    loop {
        if stop_requested() {
            return Err("interrupted".into());
        }
        match lines.recv_timeout(Duration::from_millis(100)) {
            Ok(line) if line.starts_with(prefix) => return Ok(line),
            Ok(line) if line.starts_with("error") => {
                return Err(format!("bare child: {line}").into());
            }
            Ok(_) => {}
            Err(mpsc::RecvTimeoutError::Timeout) => {
                proc.check_alive()?;
                if Instant::now() >= deadline {
                    return Err(format!("bare child: no `{prefix}` within {timeout:?}").into());
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                proc.check_alive()?;
                return Err("bare child closed its stdout".into());
            }
        }
    }
}

fn bare(ctx: &Ctx, dir: &Path) -> Result<Sample, BoxError> {
    let save = dir.join("download");
    std::fs::create_dir_all(&save)?;
    let mut cmd = Command::new(&ctx.self_exe);
    cmd.arg("--bare-download")
        .arg("--torrent")
        .arg(&ctx.torrent_path)
        .arg("--save")
        .arg(&save)
        .arg("--peer")
        .arg(ctx.seed.to_string())
        .arg("--poll-ms")
        .arg(ctx.poll.as_millis().to_string());
    let mut proc = Proc::spawn_piped("bare libtorrent child", &mut cmd, &dir.join("bare.log"))?;
    let stdout = proc.child_mut().stdout.take().ok_or("no stdout")?;
    let mut stdin = proc.child_mut().stdin.take().ok_or("no stdin")?;
    let lines = line_channel(stdout)?;
    expect_line(&lines, &mut proc, "ready", READY_TIMEOUT)?;
    let meter = Meter::start(proc.pid())?;
    writeln!(stdin, "go")?;
    stdin.flush()?;
    let done = expect_line(&lines, &mut proc, "done", DOWNLOAD_TIMEOUT)?;
    // `done <bytes> <ms to first data>` (both measured by the child).
    let first = done
        .split_whitespace()
        .nth(2)
        .and_then(|ms| ms.parse::<u64>().ok())
        .map(Duration::from_millis);
    let sample = meter.finish(first)?;
    check_file(&save.join(&ctx.file_name), ctx.size)?;
    drop(stdin); // EOF: the child drops its session and exits.
    if proc.wait_exit(STOP_GRACE)?.is_none() {
        proc.stop()?;
    }
    Ok(sample)
}

/// `bench_transfer --bare-download`: a libtorrent session over our bridge
/// with the settings the seed uses (`SessionSettings::loopback()`), adding
/// the torrent the way the engine does (not auto-managed, peers given at
/// add). Talks to the bench over stdin/stdout: `ready` → `go` → `done` →
/// EOF.
pub fn bare_child(
    torrent: &Path,
    save: &Path,
    peer: SocketAddr,
    poll: Duration,
) -> Result<(), BoxError> {
    let bytes = std::fs::read(torrent)?;
    let session = lt::Session::new(&lt::SessionSettings::loopback())?;
    let mut out = std::io::stdout().lock();
    let mut input = std::io::stdin().lock();
    writeln!(out, "ready")?;
    out.flush()?;
    let mut line = String::new();
    input.read_line(&mut line)?;
    if line.trim() != "go" {
        return Err(format!("expected `go`, got {line:?}").into());
    }
    let mut params = lt::AddTorrentParams::new(lt::TorrentSource::TorrentFile(bytes), save);
    params.auto_managed = false;
    params.peers = vec![peer];
    let t0 = Instant::now();
    let id = session.add_torrent(&params)?;
    let mut first = None;
    let status = poll_until("the download", DOWNLOAD_TIMEOUT, poll, || {
        let _ = session.pop_alerts();
        let st = session.status(&id)?;
        if let Some(error) = &st.error {
            return Err(format!("torrent error: {error}").into());
        }
        if first.is_none() && st.total_wanted_done > 0 {
            first = Some(t0.elapsed());
        }
        let complete = st.total_wanted > 0 && st.total_wanted_done == st.total_wanted;
        Ok((st.is_seeding || complete).then_some(st))
    })?;
    writeln!(
        out,
        "done {} {}",
        status.total_wanted_done,
        first.unwrap_or_default().as_millis()
    )?;
    out.flush()?;
    // Stay alive (and measurable) until the bench has sampled us.
    line.clear();
    let _ = input.read_line(&mut line);
    drop(session);
    Ok(())
}

// -------------------------------------------------------------- (b) Revaer

/// A running `revaerd` and what the bench needs to talk to it.
struct Revaerd {
    proc: Proc,
    url: String,
    /// `/health/full` once it answered 200.
    health: Value,
    /// The bootstrap admin key, once the API accepts it.
    key: String,
}

/// Starts `revaerd` on `data`, waits for `/health/full` to answer 200 and
/// for the bootstrap admin key to work.
fn start_revaerd(ctx: &Ctx, dir: &Path, data: &Path) -> Result<Revaerd, BoxError> {
    std::fs::create_dir_all(data)?;
    // The e2e tests' loopback engine config, and a default rate far above
    // the bench's polls (the bootstrap key has no rate of its own);
    // everything else at defaults.
    std::fs::write(
        data.join("revaer.toml"),
        "[api]\nlisten = \"127.0.0.1:0\"\ndefault_rate_per_minute = 1000000\n\n[engine]\nlisten_interfaces = \"127.0.0.1:0\"\nenable_dht = false\nenable_lsd = false\nenable_upnp = false\nenable_natpmp = false\nenable_utp = false\n",
    )?;
    let mut cmd = Command::new(ctx.bin_dir.join("revaerd"));
    cmd.arg("--data-dir")
        .arg(data)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null());
    let mut proc = Proc::spawn(
        "revaerd",
        &mut cmd,
        Some(&dir.join("revaerd.log")),
        STOP_GRACE,
    )?;
    let (url, health) = poll_until(
        "revaerd to report ok on /health/full",
        READY_TIMEOUT,
        Duration::from_millis(20),
        || {
            proc.check_alive()?;
            let Ok(text) = std::fs::read_to_string(data.join("run/api.url")) else {
                return Ok(None);
            };
            let url = text.trim().to_owned();
            if url.is_empty() {
                return Ok(None);
            }
            // No key needed from loopback.
            let Ok(resp) = ctx.http.get(format!("{url}/health/full")).send() else {
                return Ok(None);
            };
            if resp.status().as_u16() != 200 {
                return Ok(None);
            }
            Ok(resp.json::<Value>().ok().map(|body| (url, body)))
        },
    )?;
    let key = crate::support::admin_key(&ctx.http, &url, data, READY_TIMEOUT)
        .map_err(|e| format!("{e}{}", proc.log_tail()))?;
    Ok(Revaerd {
        proc,
        url,
        health,
        key,
    })
}

/// What the engine's libtorrent session reports about itself
/// (`SessionInfo`); `None` if the engine does not answer it.
fn engine_session(ctx: &Ctx, route: &str, key: &str) -> Option<String> {
    let answer = ctx
        .http
        .post(route)
        .bearer_auth(key)
        .json(&json!("SessionInfo"))
        .send()
        .ok()
        .and_then(|r| r.json::<Value>().ok())?;
    let s = &answer["Session"];
    if !s.is_object() {
        return None;
    }
    let on_off = |key: &str| match s[key].as_bool() {
        Some(true) => "on",
        Some(false) => "off",
        None => "?",
    };
    let limit = |key: &str| {
        s[key]
            .as_u64()
            .map_or("none".to_owned(), |l| format!("{l} B/s"))
    };
    Some(format!(
        "listen {}, uTP {}, DHT {}, LSD {}, UPnP {}, NAT-PMP {}, rate limits {}/{} (down/up), connections_limit {}",
        s["listen_interfaces"].as_str().unwrap_or("?"),
        on_off("utp"),
        on_off("dht"),
        on_off("lsd"),
        on_off("upnp"),
        on_off("natpmp"),
        limit("download_rate_limit"),
        limit("upload_rate_limit"),
        s["connections_limit"]
    ))
}

/// Adds the bench torrent through the test route; its id.
fn revaer_add(ctx: &Ctx, route: &str, key: &str) -> Result<String, BoxError> {
    let add = json!({ "Add": {
        "source": { "TorrentFile": ctx.torrent },
        "paused": false,
        "sequential": false,
        "file_priorities": [],
        "peers": [ctx.seed.to_string()],
    }});
    let resp = ctx.http.post(route).bearer_auth(key).json(&add).send()?;
    let status = resp.status();
    if status.as_u16() == 404 {
        return Err("the API has no test route: build with `cargo build --release --bins --features revaer-api/test-probes,revaer-engine/test-probes,revaer-fsops/test-probes`".into());
    }
    let answer: Value = resp.json()?;
    if !status.is_success() {
        return Err(format!("Revaer refused the add: {status} {answer}").into());
    }
    Ok(answer["Added"]["id"]
        .as_str()
        .ok_or_else(|| format!("Revaer refused the add: {answer}"))?
        .to_owned())
}

fn revaer(ctx: &Ctx, dir: &Path) -> Result<Sample, BoxError> {
    let data = dir.join("revaer-data");
    let Revaerd {
        mut proc,
        url,
        health,
        key,
    } = start_revaerd(ctx, dir, &data)?;
    let pid_of = |worker: &str| {
        health["workers"][worker]["pid"]
            .as_u64()
            .and_then(|p| u32::try_from(p).ok())
    };
    let engine = pid_of("engine").ok_or("no engine pid in /health/full")?;
    if comm(engine).as_deref() != Some("revaer-engine") {
        return Err(format!("pid {engine} is not revaer-engine: {:?}", comm(engine)).into());
    }
    proc.descendants = ["engine", "api", "fsops"]
        .into_iter()
        .filter_map(pid_of)
        .collect();
    let others: Vec<u32> = std::iter::once(proc.pid())
        .chain(["api", "fsops"].into_iter().filter_map(pid_of))
        .collect();
    let others_cpu = || -> Result<f64, BoxError> {
        others
            .iter()
            .map(|&pid| cpu_seconds(pid))
            .sum::<Result<f64, BoxError>>()
    };
    let route = format!("{url}/v1/_test/engine");
    let session = engine_session(ctx, &route, &key);
    let others_cpu0 = others_cpu()?;

    let meter = Meter::start(engine)?;
    let id = revaer_add(ctx, &route, &key)?;
    let detail = json!({ "Detail": { "id": id } });
    let mut first = None;
    let mut sample = poll_until(
        "Revaer to finish the download",
        DOWNLOAD_TIMEOUT,
        ctx.poll,
        || {
            proc.check_alive()?;
            let resp = ctx
                .http
                .post(&route)
                .bearer_auth(&key)
                .json(&detail)
                .send()?;
            let status = resp.status();
            if matches!(status.as_u16(), 404 | 503) {
                // Not known yet, or the engine briefly unreachable.
                return Ok(None);
            }
            let answer: Value = resp.json()?;
            if !status.is_success() {
                return Err(format!("Revaer's `Detail`: {status} {answer}").into());
            }
            let summary = &answer["Detail"]["summary"];
            let state = summary["state"].as_str().unwrap_or_default();
            if state == "Error" || summary["error"].is_string() {
                return Err(format!("Revaer reports an error: {summary}").into());
            }
            let wanted = summary["total_wanted"].as_u64().unwrap_or(0);
            let done = summary["total_done"].as_u64().unwrap_or(0);
            if first.is_none() && done > 0 {
                first = Some(meter.elapsed());
            }
            if state == "Seeding" || state == "Finished" || (wanted > 0 && done == wanted) {
                Ok(Some(meter.finish(first)?))
            } else {
                Ok(None)
            }
        },
    )?;
    let others_used = others_cpu()? - others_cpu0;
    sample.note = format!(
        "revaerd+API+FsOps {others_used:.2} CPU s (engine + these {:.2}); {}",
        sample.cpu + others_used,
        sample.note
    );
    sample.context = session;
    check_file(&data.join("downloads").join(&ctx.file_name), ctx.size)?;
    proc.stop()?;
    Ok(sample)
}

// -------------------------------------------------------- (c) qBittorrent

/// Writes the profile's `qBittorrent.conf`.
fn qbittorrent_config(
    profile: &Path,
    save: &Path,
    webui: u16,
    listen: u16,
    refresh: Duration,
) -> Result<(), BoxError> {
    let config_dir = profile.join("qBittorrent/config");
    std::fs::create_dir_all(&config_dir)?;
    // Networking as for the others (loopback, TCP only, no DHT/PeX/LSD/
    // UPnP/NAT-PMP); encryption off, because its default ("allow") makes it
    // negotiate RC4 for the payload with a libtorrent seed while the other
    // clients exchange plaintext with it; the status refresh at the bench's
    // poll interval, so the WebUI reports completion as promptly as the
    // other clients' APIs (default 1500 ms). Everything else at defaults.
    let config = format!(
        "[LegalNotice]\nAccepted=true\n\n\
         [Preferences]\nWebUI\\Address=127.0.0.1\nWebUI\\Port={webui}\nWebUI\\LocalHostAuth=false\n\
         WebUI\\UseUPnP=false\nConnection\\ResolvePeerCountries=false\nConnection\\UPnP=false\n\n\
         [Network]\nPortForwardingEnabled=false\n\n\
         [BitTorrent]\nSession\\DHTEnabled=false\nSession\\PeXEnabled=false\nSession\\LSDEnabled=false\n\
         Session\\BTProtocol=TCP\nSession\\Interface=lo\nSession\\InterfaceName=lo\n\
         Session\\InterfaceAddress=127.0.0.1\nSession\\Port={listen}\n\
         Session\\DefaultSavePath={save}\nSession\\QueueingSystemEnabled=false\n\
         Session\\RefreshInterval={refresh}\nSession\\Encryption=2\n",
        save = save.display(),
        refresh = refresh.as_millis(),
    );
    std::fs::write(config_dir.join("qBittorrent.conf"), config)?;
    Ok(())
}

/// A `multipart/form-data` body: text fields, then the `.torrent` as
/// `torrents`. Returns the body and its content type.
fn multipart(fields: &[(&str, String)], torrent: &[u8]) -> Result<(Vec<u8>, String), BoxError> {
    let boundary = format!("revaer-bench-{}", std::process::id());
    let mut body = Vec::new();
    for (name, value) in fields {
        write!(
            body,
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
        )?;
    }
    write!(
        body,
        "--{boundary}\r\nContent-Disposition: form-data; name=\"torrents\"; filename=\"bench.torrent\"\r\nContent-Type: application/x-bittorrent\r\n\r\n"
    )?;
    body.extend_from_slice(torrent);
    write!(body, "\r\n--{boundary}--\r\n")?;
    Ok((body, format!("multipart/form-data; boundary={boundary}")))
}

/// `addPeers` with the seed. The add is asynchronous: retries until the
/// torrent exists and takes the peer.
fn qbittorrent_add_peer(ctx: &Ctx, proc: &mut Proc, base: &str) -> Result<(), BoxError> {
    poll_until(
        "qBittorrent to take the seed as a peer",
        Duration::from_secs(30),
        Duration::from_millis(10),
        || {
            proc.check_alive()?;
            let answer: Value = ctx
                .http
                .post(format!("{base}/torrents/addPeers"))
                .form(&[
                    ("hashes", ctx.info_hash.as_str()),
                    ("peers", &ctx.seed.to_string()),
                ])
                .send()?
                .json()
                .unwrap_or(Value::Null);
            Ok(answer[&ctx.info_hash]["added"]
                .as_u64()
                .filter(|&n| n > 0)
                .map(|_| ()))
        },
    )?;
    Ok(())
}

fn qbittorrent(ctx: &Ctx, dir: &Path) -> Result<Sample, BoxError> {
    let profile = dir.join("qbt-profile");
    let save = dir.join("download");
    std::fs::create_dir_all(&save)?;
    let webui = free_port(LOCALHOST)?;
    let listen = free_port(LOCALHOST)?;
    qbittorrent_config(&profile, &save, webui, listen, ctx.poll)?;
    let mut cmd = Command::new("qbittorrent-nox");
    cmd.arg(format!("--profile={}", profile.display()))
        .stdin(Stdio::null());
    let mut proc = Proc::spawn(
        "qbittorrent-nox",
        &mut cmd,
        Some(&dir.join("qbittorrent.log")),
        STOP_GRACE,
    )?;
    let base = format!("http://127.0.0.1:{webui}/api/v2");
    poll_until(
        "qBittorrent's WebUI",
        READY_TIMEOUT,
        Duration::from_millis(50),
        || {
            proc.check_alive()?;
            Ok(ctx
                .http
                .get(format!("{base}/app/version"))
                .send()
                .ok()
                .filter(|r| r.status().is_success())
                .map(|_| ()))
        },
    )?;

    let (body, content_type) = multipart(
        &[
            ("savepath", save.display().to_string()),
            ("paused", "false".to_owned()),
            ("autoTMM", "false".to_owned()),
            ("contentLayout", "Original".to_owned()),
        ],
        &ctx.torrent,
    )?;
    let meter = Meter::start(proc.pid())?;
    let resp = ctx
        .http
        .post(format!("{base}/torrents/add"))
        .header("Content-Type", content_type)
        .body(body)
        .send()?;
    let status = resp.status();
    let text = resp.text()?;
    if !status.is_success() || text.trim() != "Ok." {
        return Err(format!("qBittorrent refused the torrent: {status} {text}").into());
    }
    qbittorrent_add_peer(ctx, &mut proc, &base)?;
    let info = format!("{base}/torrents/info?hashes={}", ctx.info_hash);
    let mut first = None;
    let sample = poll_until(
        "qBittorrent to finish the download",
        DOWNLOAD_TIMEOUT,
        ctx.poll,
        || {
            proc.check_alive()?;
            let list: Value = ctx.http.get(&info).send()?.json()?;
            let torrent = &list[0];
            let state = torrent["state"].as_str().unwrap_or_default();
            if state == "error" || state == "missingFiles" {
                return Err(format!("qBittorrent reports {state}: {torrent}").into());
            }
            let size = torrent["size"].as_u64().unwrap_or(0);
            let left = torrent["amount_left"].as_u64().unwrap_or(u64::MAX);
            if first.is_none() && size > 0 && left < size {
                first = Some(meter.elapsed());
            }
            if size > 0 && left == 0 {
                Ok(Some(meter.finish(first)?))
            } else {
                Ok(None)
            }
        },
    )?;
    check_file(&save.join(&ctx.file_name), ctx.size)?;
    proc.stop()?;
    Ok(sample)
}

// ------------------------------------------------------- (d) Transmission

/// Transmission's RPC, with its `X-Transmission-Session-Id` handshake.
struct TransmissionRpc<'a> {
    http: &'a Client,
    url: String,
    session_id: String,
}

impl TransmissionRpc<'_> {
    fn call(&mut self, method: &str, arguments: &Value) -> Result<Value, BoxError> {
        let request = json!({ "method": method, "arguments": arguments });
        for _ in 0..3 {
            let resp = self
                .http
                .post(&self.url)
                .header("X-Transmission-Session-Id", &self.session_id)
                .json(&request)
                .send()?;
            if resp.status().as_u16() == 409 {
                resp.headers()
                    .get("X-Transmission-Session-Id")
                    .and_then(|v| v.to_str().ok())
                    .ok_or("409 without a session id")?
                    .clone_into(&mut self.session_id);
                continue;
            }
            let answer: Value = resp.json()?;
            if answer["result"] != "success" {
                return Err(format!("transmission {method}: {answer}").into());
            }
            return Ok(answer["arguments"].clone());
        }
        Err(format!("transmission {method}: session id handshake failed").into())
    }
}

/// Writes `settings.json`: networking as for the others (no DHT/PeX/LPD/uTP/
/// port forwarding), bound to the namespace's address, RPC without auth.
fn transmission_settings(config: &Path, save: &Path) -> Result<(), BoxError> {
    std::fs::create_dir_all(config)?;
    std::fs::create_dir_all(save)?;
    let settings = json!({
        "dht-enabled": false,
        "pex-enabled": false,
        "lpd-enabled": false,
        "utp-enabled": false,
        "port-forwarding-enabled": false,
        "blocklist-enabled": false,
        "bind-address-ipv4": NS_ADDR.to_string(),
        "bind-address-ipv6": "::1",
        "peer-port": 51413,
        "peer-port-random-on-start": false,
        "rpc-enabled": true,
        "rpc-bind-address": NS_ADDR.to_string(),
        "rpc-port": 9091,
        "rpc-whitelist-enabled": false,
        "rpc-host-whitelist-enabled": false,
        "rpc-authentication-required": false,
        "download-dir": save,
        "incomplete-dir-enabled": false,
        "speed-limit-down-enabled": false,
        "speed-limit-up-enabled": false,
        "alt-speed-enabled": false,
        "ratio-limit-enabled": false,
        "start-added-torrents": true,
        // Plaintext payload, as between the seed and the other clients
        // (the default, 1, offers only RC4 in the handshake).
        "encryption": 0,
        "message-level": 1,
    });
    std::fs::write(
        config.join("settings.json"),
        serde_json::to_vec_pretty(&settings)?,
    )?;
    Ok(())
}

fn transmission(ctx: &Ctx, dir: &Path) -> Result<Sample, BoxError> {
    let netns = ctx
        .netns
        .as_ref()
        .ok_or("no network namespace for Transmission")?;
    let torrent = ctx
        .torrent_netns
        .as_ref()
        .ok_or("no namespace-side torrent")?;
    let config = dir.join("transmission-config");
    let save = dir.join("download");
    transmission_settings(&config, &save)?;
    let mut cmd = crate::netns::command(netns, "transmission-daemon");
    cmd.arg("-f").arg("-g").arg(&config).stdin(Stdio::null());
    let mut proc = Proc::spawn(
        "transmission-daemon",
        &mut cmd,
        Some(&dir.join("transmission.log")),
        STOP_GRACE,
    )?;
    let mut rpc = TransmissionRpc {
        http: &ctx.http,
        url: format!("http://{NS_ADDR}:9091/transmission/rpc"),
        session_id: String::new(),
    };
    poll_until(
        "Transmission's RPC",
        READY_TIMEOUT,
        Duration::from_millis(50),
        || {
            proc.check_alive()?;
            Ok(rpc.call("session-get", &json!({})).ok().map(|_| ()))
        },
    )?;
    let pid = proc.pid();
    if comm(pid).as_deref() != Some("transmission-da") {
        return Err(format!("pid {pid} is not transmission-daemon: {:?}", comm(pid)).into());
    }

    let meter = Meter::start(pid)?;
    let added = rpc.call(
        "torrent-add",
        &json!({ "metainfo": base64(torrent), "download-dir": save, "paused": false }),
    )?;
    let id = added["torrent-added"]["id"]
        .as_u64()
        .ok_or_else(|| format!("Transmission refused the torrent: {added}"))?;
    let get = json!({
        "ids": [id],
        "fields": ["leftUntilDone", "sizeWhenDone", "error", "errorString"],
    });
    let mut first = None;
    let sample = poll_until(
        "Transmission to finish the download",
        DOWNLOAD_TIMEOUT,
        ctx.poll,
        || {
            proc.check_alive()?;
            let answer = rpc.call("torrent-get", &get)?;
            let torrent = &answer["torrents"][0];
            // 1 and 2 are tracker warnings/errors; 3 is a local error.
            if torrent["error"].as_u64() == Some(3) {
                return Err(format!("Transmission reports an error: {torrent}").into());
            }
            let size = torrent["sizeWhenDone"].as_u64().unwrap_or(0);
            let left = torrent["leftUntilDone"].as_u64().unwrap_or(u64::MAX);
            if first.is_none() && size > 0 && left < size {
                first = Some(meter.elapsed());
            }
            if size > 0 && left == 0 {
                Ok(Some(meter.finish(first)?))
            } else {
                Ok(None)
            }
        },
    )?;
    check_file(&save.join(&ctx.file_name), ctx.size)?;
    proc.stop()?;
    Ok(sample)
}

// --------------------------------------------------------------- (e) aria2

fn aria2_call(ctx: &Ctx, url: &str, method: &str, params: &Value) -> Result<Value, BoxError> {
    let request = json!({ "jsonrpc": "2.0", "id": "bench", "method": method, "params": params });
    let answer: Value = ctx.http.post(url).json(&request).send()?.json()?;
    if !answer["error"].is_null() {
        return Err(format!("aria2 {method}: {}", answer["error"]).into());
    }
    Ok(answer["result"].clone())
}

fn aria2(ctx: &Ctx, dir: &Path) -> Result<Sample, BoxError> {
    let save = dir.join("download");
    std::fs::create_dir_all(&save)?;
    let rpc_port = free_port(LOCALHOST)?;
    let listen = free_port(LOCALHOST)?;
    let mut cmd = Command::new("aria2c");
    cmd.args([
        "--no-conf=true",
        "--enable-rpc=true",
        "--rpc-listen-all=false",
        "--interface=127.0.0.1",
        "--disable-ipv6=true",
        "--enable-dht=false",
        "--enable-dht6=false",
        "--enable-peer-exchange=false",
        "--bt-enable-lpd=false",
        "--seed-time=0",
        "--summary-interval=0",
        "--console-log-level=warn",
    ])
    .arg(format!("--rpc-listen-port={rpc_port}"))
    .arg(format!("--listen-port={listen}"))
    .arg(format!("--dir={}", save.display()))
    .arg(format!("--stop-with-process={}", std::process::id()))
    .stdin(Stdio::null());
    let mut proc = Proc::spawn("aria2c", &mut cmd, Some(&dir.join("aria2.log")), STOP_GRACE)?;
    let url = format!("http://127.0.0.1:{rpc_port}/jsonrpc");
    poll_until(
        "aria2's RPC",
        READY_TIMEOUT,
        Duration::from_millis(50),
        || {
            proc.check_alive()?;
            Ok(aria2_call(ctx, &url, "aria2.getVersion", &json!([]))
                .ok()
                .map(|_| ()))
        },
    )?;

    let meter = Meter::start(proc.pid())?;
    let gid = aria2_call(
        ctx,
        &url,
        "aria2.addTorrent",
        &json!([base64(&ctx.torrent), [], { "dir": save }]),
    )?;
    let gid = gid.as_str().ok_or("aria2 returned no gid")?.to_owned();
    let fields = json!([
        gid,
        ["status", "completedLength", "totalLength", "errorMessage"]
    ]);
    let mut first = None;
    let sample = poll_until(
        "aria2 to finish the download",
        DOWNLOAD_TIMEOUT,
        ctx.poll,
        || {
            proc.check_alive()?;
            let status = aria2_call(ctx, &url, "aria2.tellStatus", &fields)?;
            let state = status["status"].as_str().unwrap_or_default();
            if state == "error" || state == "removed" {
                return Err(format!("aria2 reports {state}: {status}").into());
            }
            let number = |key: &str| status[key].as_str().and_then(|s| s.parse::<u64>().ok());
            let total = number("totalLength").unwrap_or(0);
            let done = number("completedLength").unwrap_or(0);
            if first.is_none() && done > 0 {
                first = Some(meter.elapsed());
            }
            if state == "complete" || (total > 0 && done == total) {
                Ok(Some(meter.finish(first)?))
            } else {
                Ok(None)
            }
        },
    )?;
    check_file(&save.join(&ctx.file_name), ctx.size)?;
    proc.stop()?;
    Ok(sample)
}
