//! Third-party BitTorrent daemons from Debian for interoperability tests:
//! `qbittorrent-nox` (libtorrent-based, on 127.0.0.1, driven over its `WebUI`
//! API) and `transmission-daemon` (its own BitTorrent stack, inside a
//! network namespace the test makes, because it refuses peers on
//! 127.0.0.0/8; driven over its RPC). DHT, PEX, LSD, UPnP/NAT-PMP and uTP
//! are off in both: they meet peers only through trackers. Every process
//! is killed and reaped on drop, the namespace deleted.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::swarm::{free_port, http_client, stop, wait_listening, wait_listening_on};
use super::{DEADLINE, POLL, TempDir};

/// Runs `ip args…`; the error is its stderr.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("ip (Debian package iproute2): {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn ip_output(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

const NETNS_PREFIX: &str = "revaer-e2e-";

/// A network namespace of the test's own: a veth pair with `10.78.N.1/24`
/// on this side and `10.78.N.2/24` inside (`N` is unique among the tests
/// running at the same time: the host-side link `rveN` is the lock).
/// Nothing is routed anywhere else. Dropping it deletes the namespace,
/// which destroys the veth pair.
pub struct Netns {
    pub name: String,
    host_if: String,
    pub host: Ipv4Addr,
    pub inside: Ipv4Addr,
}

impl Netns {
    pub fn create() -> Self {
        remove_stale();
        let pid = std::process::id();
        let start = pid % 250;
        for step in 0..250 {
            let n = u8::try_from((start + step) % 250 + 1).unwrap();
            let host_if = format!("rve{n}");
            let ns_if = format!("rvn{n}");
            // Creating the link fails when another test holds `n`.
            if ip(&[
                "link", "add", &host_if, "type", "veth", "peer", "name", &ns_if,
            ])
            .is_err()
            {
                continue;
            }
            if ip_output(&["-o", "-4", "addr", "show"]).contains(&format!("10.78.{n}.")) {
                let _ = ip(&["link", "del", &host_if]);
                continue;
            }
            let ns = Self {
                name: format!("{NETNS_PREFIX}{n}-{pid}"),
                host_if,
                host: Ipv4Addr::new(10, 78, n, 1),
                inside: Ipv4Addr::new(10, 78, n, 2),
            };
            if let Err(e) = ip(&["netns", "add", &ns.name]) {
                let _ = ip(&["link", "del", &ns.host_if]);
                panic!("cannot make a network namespace (needs root): {e}");
            }
            // From here on, dropping `ns` removes what was made.
            let host_cidr = format!("{}/24", ns.host);
            let ns_cidr = format!("{}/24", ns.inside);
            let steps: [&[&str]; 6] = [
                &["link", "set", &ns_if, "netns", &ns.name],
                &["addr", "add", &host_cidr, "dev", &ns.host_if],
                &["link", "set", &ns.host_if, "up"],
                &["-n", &ns.name, "addr", "add", &ns_cidr, "dev", &ns_if],
                &["-n", &ns.name, "link", "set", &ns_if, "up"],
                &["-n", &ns.name, "link", "set", "lo", "up"],
            ];
            for args in steps {
                ip(args).unwrap();
            }
            ns.wait_reachable();
            return ns;
        }
        panic!("no free 10.78.N.0/24 for a network namespace");
    }

    /// The veth pair is up once the inside address answers (a refused TCP
    /// connection is an answer).
    fn wait_reachable(&self) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            match std::net::TcpStream::connect_timeout(
                &(self.inside, 9).into(),
                Duration::from_millis(500),
            ) {
                Ok(_) => return,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return,
                Err(_) => {}
            }
            assert!(Instant::now() < deadline, "{} never came up", self.name);
            std::thread::sleep(POLL);
        }
    }

    /// `ip netns exec <namespace> program`: `ip` execs the program in
    /// place, so the child's pid is the program's.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]);
        cmd
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.name]);
        let _ = ip(&["link", "del", &self.host_if]);
    }
}

/// Deletes `revaer-e2e-N-<pid>` namespaces whose test process is gone
/// (left by a run that was killed); that also destroys their veth pairs.
fn remove_stale() {
    for line in ip_output(&["netns", "list"]).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(pid) = name
            .strip_prefix(NETNS_PREFIX)
            .and_then(|rest| rest.split_once('-'))
            .and_then(|(_, pid)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = ip(&["netns", "del", name]);
        }
    }
}

// ------------------------------------------------------------ qBittorrent

/// `qbittorrent-nox` 4.5 (Debian) with a profile of its own, on 127.0.0.1.
pub struct Qbittorrent {
    child: Child,
    pub api: String,
    pub listen_port: u16,
    pub save: TempDir,
    _profile: TempDir,
    http: reqwest::blocking::Client,
}

impl Qbittorrent {
    pub fn start() -> Self {
        let profile = TempDir::new("qbt-profile");
        let save = TempDir::new("qbt-save");
        let webui = free_port();
        let listen_port = free_port();
        let config_dir = profile.0.join("qBittorrent/config");
        std::fs::create_dir_all(&config_dir).unwrap();
        // Trackers only (no DHT/PeX/LSD/UPnP/NAT-PMP), TCP only, bound to
        // loopback. Several connections per IP: every peer here is
        // 127.0.0.1, and the tracker also lists qBittorrent itself, whose
        // self-connection would otherwise get the whole address banned.
        let config = format!(
            "[LegalNotice]\nAccepted=true\n\n\
             [Preferences]\nWebUI\\Address=127.0.0.1\nWebUI\\Port={webui}\nWebUI\\LocalHostAuth=false\n\
             WebUI\\UseUPnP=false\nConnection\\ResolvePeerCountries=false\nConnection\\UPnP=false\n\
             General\\Locale=en\n\n\
             [Network]\nPortForwardingEnabled=false\n\n\
             [BitTorrent]\nSession\\DHTEnabled=false\nSession\\PeXEnabled=false\nSession\\LSDEnabled=false\n\
             Session\\BTProtocol=TCP\nSession\\Interface=lo\nSession\\InterfaceName=lo\n\
             Session\\InterfaceAddress=127.0.0.1\nSession\\Port={listen_port}\n\
             Session\\MultiConnectionsPerIp=true\nSession\\AnonymousModeEnabled=false\n\
             Session\\DefaultSavePath={save}\nSession\\QueueingSystemEnabled=false\n\
             Session\\RefreshInterval=200\nSession\\Encryption=0\n",
            save = save.0.display(),
        );
        std::fs::write(config_dir.join("qBittorrent.conf"), config).unwrap();
        let mut child = Command::new("qbittorrent-nox")
            .arg(format!("--profile={}", profile.0.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("qbittorrent-nox (Debian package) is installed by ./x");
        wait_listening(webui, "qbittorrent-nox", &mut child);
        Self {
            child,
            api: format!("http://127.0.0.1:{webui}/api/v2"),
            listen_port,
            save,
            _profile: profile,
            http: http_client(),
        }
    }

    /// Adds `torrent`, saving to (or seeding from) `save_path`; it checks
    /// what is there first.
    pub fn add(&self, torrent: &[u8], save_path: &Path) {
        let boundary = "revaer-e2e-qbt-7d1f";
        let mut body = Vec::new();
        for (name, value) in [
            ("savepath", save_path.display().to_string()),
            ("paused", "false".to_owned()),
            ("autoTMM", "false".to_owned()),
            ("contentLayout", "Original".to_owned()),
        ] {
            body.extend_from_slice(
                format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n")
                    .as_bytes(),
            );
        }
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"torrents\"; filename=\"t.torrent\"\r\nContent-Type: application/x-bittorrent\r\n\r\n")
                .as_bytes(),
        );
        body.extend_from_slice(torrent);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let resp = self
            .http
            .post(format!("{}/torrents/add", self.api))
            .header(
                "content-type",
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(body)
            .send()
            .unwrap();
        let status = resp.status();
        let text = resp.text().unwrap();
        assert!(
            status.is_success() && text.trim() == "Ok.",
            "qBittorrent refused the torrent: {status} {text}"
        );
    }

    /// qBittorrent's view of its torrents (`/torrents/info`), for
    /// diagnostics and polling.
    pub fn torrents(&self) -> Value {
        self.http
            .get(format!("{}/torrents/info", self.api))
            .send()
            .and_then(reqwest::blocking::Response::json)
            .unwrap_or(Value::Null)
    }

    /// Its trackers' state for `hash`, for diagnostics.
    pub fn trackers(&self, hash: &str) -> Value {
        self.http
            .get(format!("{}/torrents/trackers?hash={hash}", self.api))
            .send()
            .and_then(reqwest::blocking::Response::json)
            .unwrap_or(Value::Null)
    }

    /// Polls until its only torrent satisfies `pred`; panics with its state.
    pub fn wait_torrent(&mut self, what: &str, limit: Duration, pred: impl Fn(&Value) -> bool) {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("qbittorrent-nox exited: {status}");
            }
            let list = self.torrents();
            if list.get(0).is_some_and(&pred) {
                return;
            }
            if Instant::now() >= deadline {
                let hash = list[0]["hash"].as_str().unwrap_or_default().to_owned();
                panic!(
                    "qBittorrent: {what} not within {limit:?}; torrents: {list:#}; trackers: {:#}",
                    self.trackers(&hash)
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// Waits until it seeds (all checked, or all downloaded).
    pub fn wait_seeding(&mut self, what: &str, limit: Duration) {
        self.wait_torrent(what, limit, |t| {
            t["amount_left"] == 0
                && t["progress"].as_f64() == Some(1.0)
                && matches!(
                    t["state"].as_str(),
                    Some("uploading" | "stalledUP" | "forcedUP" | "queuedUP")
                )
        });
    }
}

impl Drop for Qbittorrent {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

// ----------------------------------------------------------- Transmission

/// `transmission-daemon` 3.00 (Debian) inside `netns`, listening for peers
/// and RPC on the namespace's address.
pub struct Transmission {
    child: Child,
    rpc: String,
    session_id: std::cell::RefCell<String>,
    pub peer_port: u16,
    pub save: TempDir,
    _config: TempDir,
    http: reqwest::blocking::Client,
}

impl Transmission {
    pub fn start(netns: &Netns) -> Self {
        let config = TempDir::new("transmission-config");
        let save = TempDir::new("transmission-save");
        let peer_port = 51413;
        let rpc_port = 9091;
        let settings = json!({
            "dht-enabled": false,
            "pex-enabled": false,
            "lpd-enabled": false,
            "utp-enabled": false,
            "port-forwarding-enabled": false,
            "blocklist-enabled": false,
            "bind-address-ipv4": netns.inside.to_string(),
            "bind-address-ipv6": "::1",
            "peer-port": peer_port,
            "peer-port-random-on-start": false,
            "rpc-enabled": true,
            "rpc-bind-address": netns.inside.to_string(),
            "rpc-port": rpc_port,
            "rpc-whitelist-enabled": false,
            "rpc-host-whitelist-enabled": false,
            "rpc-authentication-required": false,
            "download-dir": save.0,
            "incomplete-dir-enabled": false,
            // Files keep their names while downloading, so a finished
            // download is on disk under its name when Transmission says so.
            "rename-partial-files": false,
            "speed-limit-down-enabled": false,
            "speed-limit-up-enabled": false,
            "alt-speed-enabled": false,
            "ratio-limit-enabled": false,
            "idle-seeding-limit-enabled": false,
            "start-added-torrents": true,
            "encryption": 0,
            "message-level": 1,
        });
        std::fs::write(
            config.0.join("settings.json"),
            serde_json::to_vec_pretty(&settings).unwrap(),
        )
        .unwrap();
        let mut child = netns
            .command("transmission-daemon")
            .arg("-f")
            .arg("-g")
            .arg(&config.0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("transmission-daemon (Debian package) is installed by ./x");
        wait_listening_on(netns.inside, rpc_port, "transmission-daemon", &mut child);
        Self {
            child,
            rpc: format!("http://{}:{rpc_port}/transmission/rpc", netns.inside),
            session_id: std::cell::RefCell::new(String::new()),
            peer_port,
            save,
            _config: config,
            http: http_client(),
        }
    }

    /// One RPC call, with the `X-Transmission-Session-Id` handshake (a 409
    /// carries the id to send).
    pub fn call(&self, method: &str, arguments: &Value) -> Value {
        let request = json!({ "method": method, "arguments": arguments });
        for _ in 0..3 {
            let resp = self
                .http
                .post(&self.rpc)
                .header(
                    "X-Transmission-Session-Id",
                    self.session_id.borrow().as_str(),
                )
                .json(&request)
                .send()
                .unwrap();
            if resp.status().as_u16() == 409 {
                let id = resp.headers()["X-Transmission-Session-Id"]
                    .to_str()
                    .unwrap()
                    .to_owned();
                *self.session_id.borrow_mut() = id;
                continue;
            }
            let answer: Value = resp.json().unwrap();
            assert_eq!(
                answer["result"], "success",
                "transmission {method}: {answer}"
            );
            return answer["arguments"].clone();
        }
        panic!("transmission {method}: the session id handshake failed");
    }

    /// Adds the `.torrent` at `path`, saving to (or seeding from)
    /// `download_dir`; returns Transmission's id for it.
    pub fn add(&self, path: &Path, download_dir: &Path) -> u64 {
        let added = self.call(
            "torrent-add",
            &json!({ "filename": path, "download-dir": download_dir, "paused": false }),
        );
        added["torrent-added"]["id"]
            .as_u64()
            .unwrap_or_else(|| panic!("Transmission refused the torrent: {added}"))
    }

    /// Transmission's view of torrent `id`.
    pub fn torrent(&self, id: u64) -> Value {
        let answer = self.call(
            "torrent-get",
            &json!({ "ids": [id], "fields": [
                "name", "status", "percentDone", "leftUntilDone", "sizeWhenDone",
                "error", "errorString", "isPrivate", "peersConnected", "uploadedEver",
                "downloadedEver", "trackerStats", "peers", "recheckProgress",
            ]}),
        );
        answer["torrents"][0].clone()
    }

    /// Polls torrent `id` until `pred` holds; panics with its state.
    pub fn wait_torrent(
        &mut self,
        id: u64,
        what: &str,
        limit: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("transmission-daemon exited: {status}");
            }
            let torrent = self.torrent(id);
            if pred(&torrent) {
                return torrent;
            }
            assert!(
                Instant::now() < deadline,
                "Transmission: {what} not within {limit:?}; torrent: {torrent:#}"
            );
            std::thread::sleep(POLL);
        }
    }

    /// Waits until torrent `id` is complete and seeding (status 6).
    pub fn wait_seeding(&mut self, id: u64, what: &str, limit: Duration) -> Value {
        self.wait_torrent(id, what, limit, |t| {
            t["status"] == 6 && t["leftUntilDone"] == 0 && t["percentDone"].as_f64() == Some(1.0)
        })
    }
}

impl Drop for Transmission {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}
