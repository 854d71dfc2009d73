//! The VPN kill switch (`[engine] interface = "wg0"`), tested the way users
//! meet it: a real download from a third-party seeder (`aria2c`, found
//! through `opentracker`) that reaches Revaer only through an interface
//! named `wg0`, which disappears mid-download and comes back.
//!
//! Two network namespaces of the test's own:
//! - the **daemon** namespace runs `revaerd` (through `ip netns exec`, so it
//!   gets the namespace's own `resolv.conf`). It has `wg0`, a veth whose
//!   far side is the swarm (the "VPN", with the route to the swarm's
//!   10.79.9.0/24), and `lan0`, another veth to the same swarm carrying the
//!   default route: the path a leak would take. The nameserver
//!   (10.79.9.53) is routed like the swarm, so a name lookup made while
//!   `wg0` is gone would leave through `lan0` too.
//! - the **swarm** namespace runs `opentracker` and the `aria2c` seeder on
//!   10.79.9.1, reachable through both veths. Nothing answers DNS there.
//!
//! The torrent announces to a tracker by host name first (its lookups go to
//! the nameserver: DNS traffic) and to the IP address of the real one.
//! While `wg0` is missing, the counters of every interface of the daemon's
//! namespace except `lo` (which cannot leave it) must not move, even when a
//! re-announce is asked for; a plain connection through `lan0` afterwards
//! proves that path was open all along and that its counters count.
//! Meanwhile `/health/full` and the torrent say why. When `wg0` returns,
//! the download completes by itself and is checked byte for byte.
//!
//! The test talks to the API from inside the daemon's namespace (its
//! thread joins it), over that namespace's loopback.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::Ipv4Addr;
use std::os::fd::AsFd as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::swarm::{Opentracker, Payload, stop, wait_listening_on};
use common::{DEADLINE, Daemon, POLL};
use revaer_api_models::HealthStatus;
use serde_json::{Value, json};

/// Where the seeder and the tracker listen (the swarm namespace's `lo`).
const SWARM_IP: Ipv4Addr = Ipv4Addr::new(10, 79, 9, 1);
/// The nameserver the daemon's namespace is told to use; routed like the
/// swarm, and nobody answers there.
const NAMESERVER: &str = "10.79.9.53";
const TRACKER_PORT: u16 = 6969;
const SEEDER_PORT: u16 = 6881;
/// The seeder's upload limit: slow enough that the download is still
/// running when `wg0` goes away.
const SEED_RATE: &str = "1M";
const PAYLOAD_BYTES: usize = 8 << 20;
/// How long the daemon is watched for leaks while `wg0` is missing. Not a
/// synchronisation: absence of traffic can only be observed over a span.
/// It covers a forced re-announce and libtorrent's peer reconnect attempts
/// (every few seconds).
const LEAK_WINDOW: Duration = Duration::from_secs(5);
/// The daemon's config: every peer connection bound to `wg0`; no DHT,
/// LSD, `UPnP` or NAT-PMP.
const CONFIG: &str = "[api]\nlisten = \"127.0.0.1:0\"\ndefault_rate_per_minute = 1000000\n\n\
     [engine]\nlisten_interfaces = \"0.0.0.0:6881\"\ninterface = \"wg0\"\n\
     enable_dht = false\nenable_lsd = false\nenable_upnp = false\nenable_natpmp = false\nenable_utp = false\n\n\
     [supervisor]\nrestart_backoff_initial_ms = 50\nshutdown_grace_ms = 5000\n";
/// Room for a busy 2-core machine, not an expected duration.
const TRANSFER_DEADLINE: Duration = Duration::from_secs(180);

/// Runs `ip args…`, panicking with its stderr on failure.
fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("ip (Debian package iproute2) is installed by ./x");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// Moves the calling thread into network namespace `ns`. Sockets it opens
/// and processes and threads it starts from then on live there.
fn enter(ns: &str) {
    let file = std::fs::File::open(format!("/run/netns/{ns}")).unwrap();
    nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
}

/// Runs `f` on a thread inside network namespace `ns`.
fn in_ns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                enter(ns);
                f()
            })
            .join()
            .unwrap()
    })
}

/// The two namespaces and their links; dropping it deletes them (and with
/// them every veth) and the namespace's `resolv.conf`.
struct Lab {
    daemon_ns: String,
    swarm_ns: String,
    etc: PathBuf,
}

impl Lab {
    fn create() -> Self {
        let pid = std::process::id();
        let lab = Self {
            daemon_ns: format!("revaer-e2e-vpnd-{pid}"),
            swarm_ns: format!("revaer-e2e-vpns-{pid}"),
            etc: PathBuf::from(format!("/etc/netns/revaer-e2e-vpnd-{pid}")),
        };
        for ns in [&lab.daemon_ns, &lab.swarm_ns] {
            ip(&["netns", "add", ns]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
            // IPv4 only: no router solicitations or neighbour discovery
            // moving the counters by themselves.
            let out = Command::new("ip")
                .args(["netns", "exec", ns, "sysctl", "-q", "-w"])
                .args([
                    "net.ipv6.conf.all.disable_ipv6=1",
                    "net.ipv6.conf.default.disable_ipv6=1",
                ])
                .output()
                .unwrap();
            assert!(out.status.success(), "sysctl: {out:?}");
        }
        ip(&[
            "-n",
            &lab.swarm_ns,
            "addr",
            "add",
            "10.79.9.1/32",
            "dev",
            "lo",
        ]);
        lab.add_link("lan0", "lan-far", 2);
        ip(&[
            "-n",
            &lab.daemon_ns,
            "route",
            "add",
            "default",
            "via",
            "10.79.2.1",
        ]);
        lab.add_wg0();
        std::fs::create_dir_all(&lab.etc).unwrap();
        std::fs::write(
            lab.etc.join("resolv.conf"),
            format!("nameserver {NAMESERVER}\noptions timeout:1 attempts:1\n"),
        )
        .unwrap();
        lab
    }

    /// A veth `near` (daemon side, 10.79.`net`.2/24) ↔ `far` (swarm side,
    /// 10.79.`net`.1/24).
    fn add_link(&self, near: &str, far: &str, net: u8) {
        let (d, s) = (&self.daemon_ns, &self.swarm_ns);
        ip(&[
            "-n", d, "link", "add", near, "type", "veth", "peer", "name", far, "netns", s,
        ]);
        ip(&[
            "-n",
            d,
            "addr",
            "add",
            &format!("10.79.{net}.2/24"),
            "dev",
            near,
        ]);
        ip(&[
            "-n",
            s,
            "addr",
            "add",
            &format!("10.79.{net}.1/24"),
            "dev",
            far,
        ]);
        ip(&["-n", d, "link", "set", near, "up"]);
        ip(&["-n", s, "link", "set", far, "up"]);
    }

    /// The "VPN": `wg0` and the route to the swarm through it.
    fn add_wg0(&self) {
        self.add_link("wg0", "vpn-far", 1);
        ip(&[
            "-n",
            &self.daemon_ns,
            "route",
            "add",
            "10.79.9.0/24",
            "via",
            "10.79.1.1",
            "dev",
            "wg0",
        ]);
    }

    /// The VPN drops: `wg0` (and its far side and route) disappear.
    fn delete_wg0(&self) {
        ip(&["-n", &self.daemon_ns, "link", "del", "wg0"]);
    }

    /// Packets sent so far by each interface of the daemon's namespace but
    /// `lo`, by name.
    fn tx_packets(&self) -> Vec<(String, u64)> {
        let out = Command::new("ip")
            .args(["-n", &self.daemon_ns, "-j", "-s", "link", "show"])
            .output()
            .unwrap();
        assert!(out.status.success(), "ip link show: {out:?}");
        let links: Value = serde_json::from_slice(&out.stdout).unwrap();
        links
            .as_array()
            .unwrap()
            .iter()
            .filter(|l| l["ifname"] != "lo")
            .map(|l| {
                (
                    l["ifname"].as_str().unwrap().to_owned(),
                    l["stats64"]["tx"]["packets"].as_u64().unwrap(),
                )
            })
            .collect()
    }

    fn rx_bytes(&self, ifname: &str) -> u64 {
        let out = Command::new("ip")
            .args([
                "-n",
                &self.daemon_ns,
                "-j",
                "-s",
                "link",
                "show",
                "dev",
                ifname,
            ])
            .output()
            .unwrap();
        let links: Value = serde_json::from_slice(&out.stdout).unwrap();
        links[0]["stats64"]["rx"]["bytes"].as_u64().unwrap()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in [&self.daemon_ns, &self.swarm_ns] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        let _ = std::fs::remove_dir_all(&self.etc);
    }
}

/// `aria2c` seeding `payload` in the current namespace, announcing only to
/// `tracker`, at most [`SEED_RATE`] up.
struct Seeder(Child);

impl Seeder {
    fn start(payload: &Payload, tracker: &str) -> Self {
        let mut child = Command::new("aria2c")
            .arg(format!("--listen-port={SEEDER_PORT}"))
            .arg(format!("--dir={}", payload.dir.0.display()))
            .args([
                "--enable-dht=false",
                "--enable-dht6=false",
                "--enable-peer-exchange=false",
                "--bt-enable-lpd=false",
                "--disable-ipv6=true",
                "--file-allocation=none",
                "--summary-interval=0",
                "--console-log-level=warn",
                "--check-integrity=true",
                "--seed-ratio=0.0",
                "--bt-exclude-tracker=*",
            ])
            .arg(format!("--bt-external-ip={SWARM_IP}"))
            .arg(format!("--bt-tracker={tracker}"))
            .arg(format!("--max-upload-limit={SEED_RATE}"))
            .arg(payload.torrent_path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("aria2c (Debian package aria2) is installed by ./x");
        wait_listening_on(SWARM_IP, SEEDER_PORT, "aria2c", &mut child);
        Self(child)
    }
}

impl Drop for Seeder {
    fn drop(&mut self) {
        stop(&mut self.0);
    }
}

struct Api<'a> {
    daemon: &'a Daemon,
    url: String,
    key: String,
}

impl Api<'_> {
    fn add_torrent(&self, torrent: &[u8]) {
        self.daemon.add_torrent_file(&self.key, torrent);
    }

    fn get(&self, path: &str) -> Option<Value> {
        let resp = self
            .daemon
            .client()
            .get(format!("{}{path}", self.url))
            .bearer_auth(&self.key)
            .send()
            .ok()?;
        (resp.status().as_u16() == 200).then(|| resp.json().ok())?
    }

    /// Polls `GET path` until `pred` holds.
    fn wait(
        &self,
        path: &str,
        what: &str,
        limit: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + limit;
        let mut last = None;
        loop {
            if let Some(body) = self.get(path) {
                if pred(&body) {
                    return body;
                }
                last = Some(body);
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not within {limit:?}; last {path}: {last:#?}"
            );
            std::thread::sleep(POLL);
        }
    }
}

/// Over [`LEAK_WINDOW`], with a re-announce asked for (tracker traffic
/// and its name lookup), no packet leaves the daemon's namespace through
/// any interface but `lo`, and no data arrives (`size_done` stays at
/// `done_before`).
/// Returns the counters at the end of the window.
fn assert_nothing_leaks(
    lab: &Lab,
    api: &Api<'_>,
    torrent: &str,
    done_before: u64,
) -> Vec<(String, u64)> {
    let before = lab.tx_packets();
    let resp = api
        .daemon
        .client()
        .post(format!("{}{torrent}/action", api.url))
        .bearer_auth(&api.key)
        .json(&json!({"action": "reannounce"}))
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 204, "{:?}", resp.text());
    let window_end = Instant::now() + LEAK_WINDOW;
    while Instant::now() < window_end {
        let now = api.get(torrent).unwrap();
        assert_eq!(
            now["size_done"].as_u64().unwrap(),
            done_before,
            "data arrived while wg0 was missing: {now}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let after = lab.tx_packets();
    assert_eq!(
        before, after,
        "packets left the daemon's namespace through another interface while wg0 was missing"
    );
    assert!(after.iter().any(|(name, _)| name == "lan0"), "{after:?}");
    after
}

#[test]
fn a_missing_vpn_interface_stops_all_traffic_and_the_download_resumes_when_it_returns() {
    let t0 = Instant::now();
    let step = |what: &str| eprintln!("e2e_vpn: {:>6.1} s  {what}", t0.elapsed().as_secs_f64());
    let lab = Lab::create();
    let ip_tracker = format!("http://{SWARM_IP}:{TRACKER_PORT}/announce");
    // Announced first: every announce starts with a name lookup.
    let named_tracker = format!("http://tracker.revaer-vpn.test:{TRACKER_PORT}/announce");
    let payload = Payload::new(
        "vpn.bin",
        &[("", PAYLOAD_BYTES)],
        vec![named_tracker, ip_tracker.clone()],
    );
    let (_tracker, _seeder) = in_ns(&lab.swarm_ns, || {
        let tracker = Opentracker::start_at(SWARM_IP, TRACKER_PORT, &[&payload.id]);
        let seeder = Seeder::start(&payload, &ip_tracker);
        (tracker, seeder)
    });

    enter(&lab.daemon_ns);
    let daemon = Daemon::start_wrapped(
        &common::bin_dir(),
        CONFIG,
        &["ip", "netns", "exec", &lab.daemon_ns],
    );
    daemon.wait_ok();
    let api = Api {
        url: daemon.url().unwrap(),
        key: daemon.admin_key(),
        daemon: &daemon,
    };
    api.add_torrent(&payload.torrent);
    let torrent = format!("/v1/torrents/{}", payload.id);

    step("torrent added");
    // Part of the payload arrives, through wg0.
    let started = api.wait(
        &torrent,
        "the download through wg0 starting",
        TRANSFER_DEADLINE,
        |t| t["progress"].as_f64().unwrap_or(0.0) >= 0.1,
    );
    assert!(
        started["progress"].as_f64().unwrap() < 0.9,
        "the download must still be running when wg0 goes away; lower SEED_RATE: {started}"
    );
    assert!(
        lab.rx_bytes("wg0") > (PAYLOAD_BYTES / 10) as u64,
        "the payload did not come through wg0"
    );

    step("download running through wg0");
    // The VPN drops.
    lab.delete_wg0();
    let health = daemon.wait_health("health naming the missing interface", |_, h| {
        h.degraded.iter().any(|d| d == "network")
    });
    assert_eq!(health.status, HealthStatus::Degraded, "{health:?}");
    let engine = &health.workers["engine"];
    assert!(engine.up, "{health:?}");
    assert!(
        engine
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("wg0 is missing")),
        "{health:?}"
    );
    let stalled = api.wait(
        &torrent,
        "the torrent saying why it stalled",
        DEADLINE,
        |t| {
            t["stalled_reason"]
                .as_str()
                .is_some_and(|r| r.contains("wg0 is missing"))
        },
    );
    assert_eq!(stalled["paused"], json!(false), "{stalled}");

    step("kill switch engaged and reported");
    // No byte leaves through any other interface, even when asked to
    // announce (tracker traffic and its name lookup), and no data arrives.
    let after = assert_nothing_leaks(&lab, &api, &torrent, stalled["size_done"].as_u64().unwrap());
    step("leak window over: no packet");
    // That path was open all along, and its counters count: a plain
    // connection to the tracker from the daemon's namespace takes it.
    std::net::TcpStream::connect_timeout(&(SWARM_IP, TRACKER_PORT).into(), Duration::from_secs(5))
        .expect("the swarm is reachable through lan0");
    let lan0 = |c: &[(String, u64)]| c.iter().find(|(n, _)| n == "lan0").map(|(_, p)| *p);
    assert!(
        lan0(&lab.tx_packets()) > lan0(&after),
        "a connection through lan0 did not move its counters"
    );

    step("wg0 restored");
    // The VPN comes back: the download resumes by itself and completes.
    lab.add_wg0();
    daemon.wait_ok();
    let done = api.wait(
        &torrent,
        "the download completing through wg0",
        TRANSFER_DEADLINE,
        |t| t["state"] == "seeding",
    );
    step("download complete");
    assert_eq!(done["stalled_reason"], Value::Null, "{done}");
    payload.assert_copy_in(&daemon.data.0.join("downloads"), "revaer");
}
