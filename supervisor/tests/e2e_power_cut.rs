//! Whole-tree power cut: `kill -9` of the supervisor and every worker at
//! once while clients are adding, labelling and removing torrents. After a
//! restart on the same data dir, everything the API acknowledged is there
//! (adds with their labels) or gone (removes), and no state file had to be
//! quarantined.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Daemon, bin_dir};
use serde_json::{Value, json};

/// What a client was told.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Acked {
    Added {
        tag: String,
    },
    /// A remove was sent but not answered: either outcome is correct.
    RemoveInFlight,
    Removed,
}

fn magnet(n: u32) -> (String, String) {
    let mut hash = [0_u8; 20];
    hash[..4].copy_from_slice(&n.to_be_bytes());
    hash[19] = 0x5a;
    let hex = hash.iter().fold(String::new(), |mut hex, b| {
        use std::fmt::Write as _;
        let _ = write!(hex, "{b:02x}");
        hex
    });
    (format!("magnet:?xt=urn:btih:{hex}&dn=cut{n}"), hex)
}

/// Adds (and removes every fifth) torrent from `clients` threads until
/// told to stop; records only what the API acknowledged.
fn burst(
    url: &str,
    key: &str,
    clients: u32,
    stop: &Arc<std::sync::atomic::AtomicBool>,
    acked: &Arc<Mutex<BTreeMap<String, Acked>>>,
) -> Vec<std::thread::JoinHandle<()>> {
    (0..clients)
        .map(|client| {
            let (url, key) = (url.to_owned(), key.to_owned());
            let (stop, acked) = (Arc::clone(stop), Arc::clone(acked));
            std::thread::spawn(move || {
                let http = reqwest::blocking::Client::builder()
                    .timeout(Duration::from_secs(5))
                    .no_proxy()
                    .build()
                    .unwrap();
                for i in 0..200_u32 {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        return;
                    }
                    let (link, id) = magnet(client * 1000 + i);
                    let tag = format!("c{client}-{i}");
                    let added = http
                        .post(format!("{url}/v1/torrents"))
                        .bearer_auth(&key)
                        .json(&json!({"magnet": link, "paused": true, "tags": [tag]}))
                        .send();
                    match added {
                        Ok(r) if r.status().as_u16() == 201 => {
                            acked
                                .lock()
                                .unwrap()
                                .insert(id.clone(), Acked::Added { tag });
                        }
                        Ok(_) => continue,
                        Err(_) => return, // the daemon is gone
                    }
                    if i % 5 == 4 {
                        acked
                            .lock()
                            .unwrap()
                            .insert(id.clone(), Acked::RemoveInFlight);
                        let removed = http
                            .post(format!("{url}/v1/torrents/{id}/action"))
                            .bearer_auth(&key)
                            .json(&json!({"action": "remove"}))
                            .send();
                        match removed {
                            Ok(r) if r.status().as_u16() == 204 => {
                                acked.lock().unwrap().insert(id, Acked::Removed);
                            }
                            Ok(_) => {}
                            Err(_) => return,
                        }
                    }
                }
            })
        })
        .collect()
}

/// Every torrent the API lists: id → tags.
fn listed(daemon: &Daemon, key: &str) -> BTreeMap<String, Vec<String>> {
    let url = daemon.url().unwrap();
    let mut out = BTreeMap::new();
    let mut cursor: Option<String> = None;
    for _ in 0..100 {
        let uri = match &cursor {
            Some(c) => format!("{url}/v1/torrents?limit=500&cursor={c}"),
            None => format!("{url}/v1/torrents?limit=500"),
        };
        let page: Value = daemon
            .client()
            .get(uri)
            .bearer_auth(key)
            .send()
            .unwrap()
            .json()
            .unwrap();
        for item in page["items"].as_array().unwrap() {
            let tags = item["tags"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t.as_str().unwrap().to_owned())
                .collect();
            out.insert(item["id"].as_str().unwrap().to_owned(), tags);
        }
        match page["next"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return out,
        }
    }
    panic!("more than 100 pages");
}

#[test]
fn acknowledged_writes_survive_kill_9_of_the_whole_tree() {
    let mut daemon = Daemon::start();
    daemon.wait_ok();
    let key = daemon.admin_key();
    let acked = Arc::new(Mutex::new(BTreeMap::new()));
    for round in 0..2 {
        let health = daemon.wait_ok();
        let url = daemon.url().unwrap();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let round_acked = Arc::new(Mutex::new(BTreeMap::new()));
        let clients = burst(&url, &key, 3, &stop, &round_acked);
        // Cut the power mid-burst, once some writes were acknowledged.
        let deadline = Instant::now() + Duration::from_secs(60);
        while round_acked.lock().unwrap().len() < 15 {
            assert!(Instant::now() < deadline, "round {round}: too few acks");
            std::thread::sleep(Duration::from_millis(2));
        }
        let supervisor = daemon.child.id();
        for pid in [
            supervisor,
            Daemon::worker_pid(&health, "api"),
            Daemon::worker_pid(&health, "engine"),
            Daemon::worker_pid(&health, "fsops"),
        ] {
            // Workers may already be gone (they die with the supervisor).
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap()),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        daemon.child.wait().unwrap();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for client in clients {
            client.join().unwrap();
        }
        acked
            .lock()
            .unwrap()
            .extend(round_acked.lock().unwrap().clone());

        daemon.restart_stopped(&bin_dir());
        daemon.wait_ok();
        // The read model fills from the engine's snapshot just after ready.
        let expected = acked.lock().unwrap().clone();
        let deadline = Instant::now() + Duration::from_secs(30);
        let now = loop {
            let now = listed(&daemon, &key);
            let complete = expected.iter().all(|(id, ack)| match ack {
                Acked::Added { .. } => now.contains_key(id),
                Acked::Removed => !now.contains_key(id),
                Acked::RemoveInFlight => true,
            });
            if complete || Instant::now() > deadline {
                break now;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        for (id, ack) in &expected {
            match ack {
                Acked::Added { tag } => {
                    let tags = now
                        .get(id)
                        .unwrap_or_else(|| panic!("round {round}: acknowledged add {id} lost"));
                    assert_eq!(tags, &vec![tag.clone()], "labels of {id}");
                }
                Acked::Removed => assert!(
                    !now.contains_key(id),
                    "round {round}: acknowledged remove {id} came back"
                ),
                Acked::RemoveInFlight => {}
            }
        }
    }
    let quarantine = daemon.data.0.join("state/engine/quarantine");
    let quarantined: Vec<_> = std::fs::read_dir(&quarantine)
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(quarantined.is_empty(), "state quarantined: {quarantined:?}");
}
