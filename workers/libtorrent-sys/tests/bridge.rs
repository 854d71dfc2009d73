//! End-to-end tests of the bridge with real libtorrent sessions on
//! 127.0.0.1 only: every session listens on `127.0.0.1:0` with DHT, LSD,
//! `UPnP`, NAT-PMP and uTP off (`SessionSettings::loopback`). Fixtures are a
//! few MiB of pseudo-random bytes in temp dirs. Every wait is a bounded
//! poll on alerts/status with a deadline (`Peer::wait_until`); there are no
//! sleeps.

// Helpers outside `#[test]` fns are not covered by clippy's
// allow-*-in-tests settings; in this file a panic is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::fs;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use libtorrent_sys::{
    AddTorrentParams, Alert, CreateTorrentOptions, Error, Session, SessionSettings, TorrentFormat,
    TorrentId, TorrentInfo, TorrentSource, TorrentState, TorrentStatus, create_torrent,
    create_torrent_with, parse_magnet, parse_torrent,
};
use tempfile::TempDir;

/// Upper bound for any single wait; transfers of a few MiB on loopback take
/// well under a second, the rest is headroom for a loaded 2-core machine.
const DEADLINE: Duration = Duration::from_secs(60);
const PIECE_SIZE: i32 = 64 * 1024;

/// (file name, size) of the multi-file fixture.
const FILES: [(&str, usize); 3] = [
    ("a.bin", 1024 * 1024),
    ("b.bin", 3 * 1024 * 1024),
    ("c.bin", 200 * 1024),
];

// ------------------------------------------------------------- fixtures --

/// Deterministic pseudo-random bytes (xorshift64*).
fn pseudo_random(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

struct Fixture {
    _dir: TempDir,
    /// Directory holding the content directory (the seed's save path).
    parent: PathBuf,
    /// `parent/<name>`: the torrent's content.
    content: PathBuf,
    torrent: Vec<u8>,
    info: TorrentInfo,
}

impl Fixture {
    fn new(name: &str, format: TorrentFormat) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let parent = dir.path().join("seed");
        let content = parent.join(name);
        fs::create_dir_all(&content).unwrap();
        for (seed, (file, size)) in (1_u64..).zip(FILES) {
            fs::write(content.join(file), pseudo_random(seed, size)).unwrap();
        }
        let torrent = create_torrent_with(
            &content,
            &CreateTorrentOptions {
                piece_size: PIECE_SIZE,
                format,
                ..CreateTorrentOptions::default()
            },
        )
        .unwrap();
        let info = parse_torrent(&torrent).unwrap();
        Self {
            _dir: dir,
            parent,
            content,
            torrent,
            info,
        }
    }

    fn id(&self) -> TorrentId {
        self.info.id
    }

    /// Index of the (non-pad) file with this name.
    fn file_index(&self, file: &str) -> usize {
        self.info
            .files
            .iter()
            .position(|f| !f.pad && f.path.ends_with(file))
            .unwrap()
    }

    /// Asserts every fixture file under `save_path` equals the original,
    /// except those in `skip`.
    fn assert_copied(&self, save_path: &Path, skip: &[&str]) {
        let name = self.content.file_name().unwrap();
        for (file, size) in FILES {
            if skip.contains(&file) {
                continue;
            }
            let got = fs::read(save_path.join(name).join(file)).unwrap();
            assert_eq!(got.len(), size, "{file} size");
            assert!(
                got == fs::read(self.content.join(file)).unwrap(),
                "{file} content differs"
            );
        }
    }
}

// ---------------------------------------------------------------- peers --

/// A session plus every alert it has delivered so far.
struct Peer {
    session: Session,
    log: Vec<Alert>,
}

impl Peer {
    fn new() -> Self {
        let session = Session::new(&SessionSettings::loopback()).unwrap();
        Self {
            session,
            log: Vec::new(),
        }
    }

    fn addr(&self) -> SocketAddr {
        let port = self.session.listen_port();
        assert_ne!(port, 0, "session is not listening");
        SocketAddr::from((Ipv4Addr::LOCALHOST, port))
    }

    fn pump(&mut self, wait: Duration) {
        if self.session.wait_for_alert(wait) {
            self.log.extend(self.session.pop_alerts());
        }
    }

    /// Polls until `done` holds, pumping alerts between polls; panics with
    /// the alert log after `DEADLINE`.
    fn wait_until(&mut self, what: &str, mut done: impl FnMut(&mut Self) -> bool) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if done(self) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; alerts: {:#?}",
                self.log
            );
            self.pump(Duration::from_millis(100));
        }
    }

    fn wait_for_alert(&mut self, what: &str, pred: impl Fn(&Alert) -> bool) -> Alert {
        let mut found = None;
        self.wait_until(what, |peer| {
            found = peer.log.iter().find(|a| pred(a)).cloned();
            found.is_some()
        });
        found.unwrap()
    }

    fn status(&self, id: &TorrentId) -> TorrentStatus {
        self.session.status(id).unwrap()
    }

    fn add(&self, params: &AddTorrentParams) -> TorrentId {
        self.session.add_torrent(params).unwrap()
    }

    /// Adds the fixture from its own directory and waits until it seeds.
    fn seed(fx: &Fixture) -> Self {
        let mut seed = Self::new();
        let id = seed.add(&AddTorrentParams::new(
            TorrentSource::TorrentFile(fx.torrent.clone()),
            &fx.parent,
        ));
        assert_eq!(id, fx.id());
        seed.wait_until("seed to check its files", |p| p.status(&id).is_seeding);
        seed
    }

    /// Waits until the torrent has finished downloading what it wants,
    /// (re)connecting it to `seed` whenever it has no peer.
    fn download_from(&mut self, id: &TorrentId, seed: SocketAddr) {
        self.wait_until("download to finish", |p| {
            let st = p.status(id);
            if st.is_finished {
                return true;
            }
            if st.num_peers == 0
                && matches!(
                    st.state,
                    TorrentState::Downloading | TorrentState::DownloadingMetadata
                )
            {
                p.session.connect_peer(id, seed).unwrap();
            }
            false
        });
        // Alerts name the torrent by the id it was added under, whichever
        // hash `id` is (see the btmh test).
        let added_as = self.status(id).id;
        self.wait_for_alert(
            "TorrentFinished",
            |a| matches!(a, Alert::TorrentFinished { id: got } if *got == added_as),
        );
    }

    fn states_of(&self, id: &TorrentId) -> Vec<TorrentState> {
        self.log
            .iter()
            .filter_map(|a| match a {
                Alert::StateChanged { id: got, state, .. } if got == id => Some(*state),
                _ => None,
            })
            .collect()
    }
}

// ---------------------------------------------------------------- tests --

#[test]
fn transfers_a_multi_file_torrent_over_loopback() {
    let fx = Fixture::new("multi", TorrentFormat::Hybrid);
    let real: Vec<_> = fx.info.files.iter().filter(|f| !f.pad).collect();
    assert_eq!(real.len(), 3);
    assert_eq!(
        fx.info.total_size,
        fx.info.files.iter().map(|f| f.size).sum::<i64>()
    );
    assert!(fx.info.info_hash_v1.is_some() && fx.info.info_hash_v2.is_some());
    assert_eq!(fx.info.info_hash_v1.as_deref(), Some(&*fx.id().to_string()));
    assert_eq!(fx.info.piece_length, PIECE_SIZE);

    let seed = Peer::seed(&fx);
    let dest = tempfile::tempdir().unwrap();
    let mut leech = Peer::new();
    let id = leech.add(&AddTorrentParams::new(
        TorrentSource::TorrentFile(fx.torrent.clone()),
        dest.path(),
    ));
    assert_eq!(id, fx.id());
    assert_eq!(leech.session.torrents().unwrap(), vec![id]);
    leech.wait_for_alert(
        "AddTorrent",
        |a| matches!(a, Alert::AddTorrent { id: got, error: None } if *got == id),
    );

    leech.download_from(&id, seed.addr());
    leech.wait_until("leech to seed", |p| p.status(&id).is_seeding);
    fx.assert_copied(dest.path(), &[]);

    let st = leech.status(&id);
    assert_eq!(st.name, "multi");
    assert_eq!(st.progress_ppm, 1_000_000);
    assert_eq!(st.total_wanted, fx.info.total_size - pad_bytes(&fx.info));
    assert_eq!(st.total_wanted_done, st.total_wanted);
    assert_eq!(st.num_pieces_have, fx.info.num_pieces);
    assert!(st.total_download >= st.total_wanted);
    assert_eq!(st.save_path, dest.path().to_str().unwrap());
    assert_eq!(st.error, None);
    assert_eq!(
        leech.session.torrent_info(&id).unwrap().as_ref(),
        Some(&fx.info)
    );
}

fn pad_bytes(info: &TorrentInfo) -> i64 {
    info.files.iter().filter(|f| f.pad).map(|f| f.size).sum()
}

#[test]
fn magnet_link_fetches_metadata_then_completes() {
    let fx = Fixture::new("magnet", TorrentFormat::Hybrid);
    let seed = Peer::seed(&fx);
    let uri = format!("magnet:?xt=urn:btih:{}&dn=magnet", fx.id());
    let parsed = parse_magnet(&uri).unwrap();
    assert_eq!(parsed.id, fx.id());
    assert_eq!(parsed.name.as_deref(), Some("magnet"));

    let dest = tempfile::tempdir().unwrap();
    let mut leech = Peer::new();
    let id = leech.add(&AddTorrentParams::new(
        TorrentSource::Magnet(uri),
        dest.path(),
    ));
    assert_eq!(id, fx.id());
    // No peer yet, so no metadata.
    assert_eq!(leech.session.torrent_info(&id).unwrap(), None);
    assert!(!leech.status(&id).has_metadata);

    leech.session.connect_peer(&id, seed.addr()).unwrap();
    leech.wait_for_alert(
        "MetadataReceived",
        |a| matches!(a, Alert::MetadataReceived { id: got } if *got == id),
    );
    let info = leech.session.torrent_info(&id).unwrap().unwrap();
    assert_eq!(info.id, fx.id());
    assert_eq!(info.files, fx.info.files);

    leech.download_from(&id, seed.addr());
    fx.assert_copied(dest.path(), &[]);
}

#[test]
fn resume_data_restores_the_torrent_without_a_recheck() {
    let fx = Fixture::new("resume", TorrentFormat::Hybrid);
    let seed = Peer::seed(&fx);
    let dest = tempfile::tempdir().unwrap();
    let id = fx.id();

    let data = {
        let mut leech = Peer::new();
        leech.add(&AddTorrentParams::new(
            TorrentSource::Magnet(format!("magnet:?xt=urn:btih:{id}")),
            dest.path(),
        ));
        leech.download_from(&id, seed.addr());
        leech.wait_until("leech to seed", |p| p.status(&id).is_seeding);
        leech
            .session
            .set_torrent_limits(&id, 123_456, 65_536)
            .unwrap();
        leech.session.save_resume_data(&id).unwrap();
        match leech.wait_for_alert("SaveResumeData", |a| {
            matches!(a, Alert::SaveResumeData { id: got, .. } | Alert::SaveResumeDataFailed { id: got, .. } if *got == id)
        }) {
            Alert::SaveResumeData { data, .. } => data,
            other => panic!("save_resume_data failed: {other:?}"),
        }
        // The leech session is dropped (and shut down) here.
    };
    assert!(!data.is_empty());

    // Control: a plain add of existing data does a full check.
    assert!(seed.states_of(&id).contains(&TorrentState::CheckingFiles));

    let mut again = Peer::new();
    // An empty save path keeps the saved one.
    let params = AddTorrentParams::new(TorrentSource::ResumeData(data), PathBuf::new());
    assert_eq!(again.add(&params), id);
    let st = again.status(&id);
    assert!(st.has_metadata, "resume data carried the info dict");
    assert_eq!(st.save_path, dest.path().to_str().unwrap());
    // Only the info dict travels (no comment / creator outside it).
    let info = again.session.torrent_info(&id).unwrap().unwrap();
    assert_eq!(
        (info.id, &info.files, info.num_pieces),
        (id, &fx.info.files, fx.info.num_pieces)
    );
    assert_eq!(
        again.session.torrent_limits(&id).unwrap(),
        (123_456, 65_536)
    );

    again.wait_until("restored torrent to seed", |p| p.status(&id).is_seeding);
    let states = again.states_of(&id);
    assert!(
        !states.contains(&TorrentState::CheckingFiles),
        "full recheck after resume: {states:?}"
    );
    assert!(
        !again
            .log
            .iter()
            .any(|a| matches!(a, Alert::FastresumeRejected { .. })),
        "resume data rejected: {:#?}",
        again.log
    );
    assert_eq!(again.status(&id).num_pieces_have, fx.info.num_pieces);
}

#[test]
fn file_priorities_skip_a_file() {
    let fx = Fixture::new("prio", TorrentFormat::Hybrid);
    let seed = Peer::seed(&fx);
    let skipped = fx.file_index("b.bin");
    // Pad files get priority 0: libtorrent reports them as 0 anyway once it
    // has applied a priority change.
    let mut priorities: Vec<u8> = fx
        .info
        .files
        .iter()
        .map(|f| if f.pad { 0 } else { 4 })
        .collect();
    priorities[skipped] = 0;

    let dest = tempfile::tempdir().unwrap();
    let mut leech = Peer::new();
    let id = leech.add(&AddTorrentParams {
        file_priorities: priorities.clone(),
        ..AddTorrentParams::new(TorrentSource::TorrentFile(fx.torrent.clone()), dest.path())
    });
    assert_eq!(leech.session.file_priorities(&id).unwrap(), priorities);

    leech.download_from(&id, seed.addr());
    let st = leech.status(&id);
    assert!(st.is_finished && !st.is_seeding, "{st:?}");
    assert_eq!(st.total_wanted, 1024 * 1024 + 200 * 1024);
    fx.assert_copied(dest.path(), &["b.bin"]);
    let progress = leech.session.file_progress(&id).unwrap();
    assert_eq!(progress.len(), fx.info.files.len());
    for (index, file) in fx.info.files.iter().enumerate() {
        if !file.pad && index != skipped {
            assert_eq!(progress[index], file.size, "file {} progress", file.path);
        }
    }
    assert!(
        progress[skipped] < fx.info.files[skipped].size,
        "the skipped file reads as complete"
    );
    let b = dest.path().join("prio").join("b.bin");
    if let Ok(bytes) = fs::read(&b) {
        let original = fs::read(fx.content.join("b.bin")).unwrap();
        assert!(bytes != original, "skipped file was downloaded");
    }

    // Read back after a change, too.
    priorities[skipped] = 7;
    priorities[fx.file_index("c.bin")] = 1;
    let mark = leech.log.len();
    leech.session.set_file_priorities(&id, &priorities).unwrap();
    leech.wait_until("FilePrioritiesUpdated", |p| {
        p.log[mark..]
            .iter()
            .any(|a| matches!(a, Alert::FilePrioritiesUpdated { id: got } if *got == id))
    });
    assert_eq!(leech.session.file_priorities(&id).unwrap(), priorities);
}

#[test]
fn pause_resume_limits_and_sequential_read_back() {
    let fx = Fixture::new("controls", TorrentFormat::V1Only);
    assert!(fx.info.info_hash_v2.is_none());
    assert!(fx.info.files.iter().all(|f| !f.pad));
    let mut peer = Peer::seed(&fx);
    let id = fx.id();
    assert!(peer.status(&id).auto_managed);

    peer.session.pause(&id).unwrap();
    let st = peer.status(&id);
    assert!(st.paused && !st.auto_managed, "{st:?}");
    peer.wait_for_alert(
        "TorrentPaused",
        |a| matches!(a, Alert::TorrentPaused { id: got } if *got == id),
    );
    peer.session.resume(&id).unwrap();
    assert!(!peer.status(&id).paused);
    peer.wait_for_alert(
        "TorrentResumed",
        |a| matches!(a, Alert::TorrentResumed { id: got } if *got == id),
    );

    assert_eq!(peer.session.torrent_limits(&id).unwrap(), (0, 0));
    peer.session
        .set_torrent_limits(&id, 500_000, 250_000)
        .unwrap();
    assert_eq!(
        peer.session.torrent_limits(&id).unwrap(),
        (500_000, 250_000)
    );
    peer.session.set_torrent_limits(&id, 0, 0).unwrap();
    assert_eq!(peer.session.torrent_limits(&id).unwrap(), (0, 0));

    assert!(!peer.status(&id).sequential);
    peer.session.set_sequential(&id, true).unwrap();
    assert!(peer.status(&id).sequential);
    peer.session.set_sequential(&id, false).unwrap();
    assert!(!peer.status(&id).sequential);

    peer.session.force_reannounce(&id).unwrap();
    let mark = peer.log.len();
    peer.session.force_recheck(&id).unwrap();
    peer.wait_until("recheck to finish", |p| {
        p.log[mark..].iter().any(|a| {
            matches!(a, Alert::StateChanged { id: got, state: TorrentState::CheckingFiles, .. } if *got == id)
        }) && p.status(&id).is_seeding
    });

    peer.session.post_torrent_updates();
    let update = peer.wait_for_alert("StateUpdate", |a| matches!(a, Alert::StateUpdate(_)));
    let Alert::StateUpdate(statuses) = update else {
        unreachable!()
    };
    assert!(statuses.iter().any(|s| s.id == id && s.name == "controls"));
}

#[test]
fn remove_with_delete_files_removes_the_data() {
    let fx = Fixture::new("doomed", TorrentFormat::Hybrid);
    let mut peer = Peer::seed(&fx);
    let id = fx.id();
    peer.session.remove_torrent(&id, true).unwrap();
    peer.wait_for_alert(
        "TorrentRemoved",
        |a| matches!(a, Alert::TorrentRemoved { id: got } if *got == id),
    );
    peer.wait_for_alert(
        "TorrentDeleted",
        |a| matches!(a, Alert::TorrentDeleted { id: got } if *got == id),
    );
    for (file, _) in FILES {
        assert!(!fx.content.join(file).exists(), "{file} still exists");
    }
    assert_eq!(peer.session.torrents().unwrap(), vec![]);
    assert_eq!(peer.session.status(&id), Err(Error::NotFound(id)));
}

#[test]
fn v2_only_torrent_is_found_by_its_truncated_v2_hash() {
    let fx = Fixture::new("v2", TorrentFormat::V2Only);
    assert_eq!(fx.info.info_hash_v1, None);
    let v2 = fx.info.info_hash_v2.clone().unwrap();
    assert_eq!(v2.len(), 64);
    assert_eq!(fx.id().to_string(), v2[..40]);

    let peer = Peer::seed(&fx);
    assert_eq!(peer.session.torrents().unwrap(), vec![fx.id()]);
    assert_eq!(peer.status(&fx.id()).id, fx.id());
}

#[test]
fn bad_inputs_are_errors_not_crashes() {
    // parse_torrent
    assert!(matches!(
        parse_torrent(b"this is not bencode"),
        Err(Error::InvalidTorrent(_))
    ));
    assert!(matches!(parse_torrent(b""), Err(Error::InvalidTorrent(_))));
    let fx = Fixture::new("errors", TorrentFormat::Hybrid);
    let truncated = &fx.torrent[..fx.torrent.len() / 2];
    assert!(matches!(
        parse_torrent(truncated),
        Err(Error::InvalidTorrent(_))
    ));
    let huge = vec![b'd'; 11 * 1024 * 1024];
    assert!(matches!(
        parse_torrent(&huge),
        Err(Error::TooLarge { size, .. }) if size == huge.len()
    ));
    // Deep nesting within the size limit is refused by the decoder limits.
    let deep = format!("{}{}", "l".repeat(100_000), "e".repeat(100_000));
    assert!(matches!(
        parse_torrent(deep.as_bytes()),
        Err(Error::InvalidTorrent(_))
    ));

    // parse_magnet
    for bad in [
        "magnet:?xt=urn:btih:zz",
        "magnet:?dn=no-hash",
        "http://example.invalid/x.torrent",
        "",
        "not a uri at all",
    ] {
        assert!(
            matches!(parse_magnet(bad), Err(Error::InvalidMagnet(_))),
            "{bad}: {:?}",
            parse_magnet(bad)
        );
    }
    let long = format!("magnet:?xt=urn:btih:{}&dn={}", fx.id(), "x".repeat(9000));
    assert!(matches!(parse_magnet(&long), Err(Error::TooLarge { .. })));

    // create_torrent
    let empty = tempfile::tempdir().unwrap();
    assert!(create_torrent(&empty.path().join("missing"), 0, &[], false).is_err());
    assert!(matches!(
        create_torrent(&fx.content, 1000, &[], false),
        Err(Error::InvalidArgument(_))
    ));

    // add_torrent and friends
    let peer = Peer::new();
    let dest = tempfile::tempdir().unwrap();
    let add = |source| {
        peer.session
            .add_torrent(&AddTorrentParams::new(source, dest.path()))
    };
    assert!(matches!(
        add(TorrentSource::TorrentFile(b"garbage".to_vec())),
        Err(Error::InvalidTorrent(_))
    ));
    assert!(matches!(
        add(TorrentSource::ResumeData(b"garbage".to_vec())),
        Err(Error::InvalidResumeData(_))
    ));
    assert!(matches!(
        add(TorrentSource::Magnet("magnet:?xt=urn:btih:zz".to_owned())),
        Err(Error::InvalidMagnet(_))
    ));
    assert!(matches!(
        add(TorrentSource::TorrentFile(huge)),
        Err(Error::TooLarge { .. })
    ));
    let bad_priorities = AddTorrentParams {
        file_priorities: vec![8],
        ..AddTorrentParams::new(TorrentSource::TorrentFile(fx.torrent.clone()), dest.path())
    };
    assert!(matches!(
        peer.session.add_torrent(&bad_priorities),
        Err(Error::InvalidArgument(_))
    ));
    let id = add(TorrentSource::TorrentFile(fx.torrent.clone())).unwrap();
    assert_eq!(
        add(TorrentSource::Magnet(format!("magnet:?xt=urn:btih:{id}"))),
        Err(Error::AlreadyExists(id))
    );
    assert!(matches!(
        peer.session.set_torrent_limits(&id, -1, 0),
        Err(Error::InvalidArgument(_))
    ));

    // Every per-torrent operation on an unknown id.
    let unknown = TorrentId::new([0xab; 20]);
    let nf = Err(Error::NotFound(unknown));
    let s = &peer.session;
    let seed_addr = SocketAddr::from((Ipv4Addr::LOCALHOST, 1));
    assert_eq!(s.remove_torrent(&unknown, false), nf);
    assert_eq!(s.pause(&unknown), nf);
    assert_eq!(s.resume(&unknown), nf);
    assert_eq!(s.force_reannounce(&unknown), nf);
    assert_eq!(s.force_recheck(&unknown), nf);
    assert_eq!(s.set_sequential(&unknown, true), nf);
    assert_eq!(s.set_torrent_limits(&unknown, 1, 1), nf);
    assert_eq!(s.torrent_limits(&unknown), Err(Error::NotFound(unknown)));
    assert_eq!(s.set_file_priorities(&unknown, &[1]), nf);
    assert_eq!(s.file_priorities(&unknown), Err(Error::NotFound(unknown)));
    assert_eq!(s.status(&unknown), Err(Error::NotFound(unknown)));
    assert_eq!(s.torrent_info(&unknown), Err(Error::NotFound(unknown)));
    assert_eq!(s.save_resume_data(&unknown), nf);
    assert_eq!(s.connect_peer(&unknown, seed_addr), nf);
}

#[test]
fn session_stats_match_the_metric_names_and_listen_port_is_real() {
    let names = Session::session_stats_metric_names();
    assert!(!names.is_empty());
    assert!(names.iter().any(|(n, _)| n == "net.sent_payload_bytes"));
    let mut indices: Vec<usize> = names.iter().map(|(_, i)| *i).collect();
    indices.sort_unstable();
    indices.dedup();
    assert_eq!(indices.len(), names.len(), "counter indices are unique");

    let mut peer = Peer::new();
    let port = peer.addr().port();
    let listen = peer.wait_for_alert("ListenSucceeded", |a| {
        matches!(a, Alert::ListenSucceeded { .. })
    });
    assert_eq!(
        listen,
        Alert::ListenSucceeded {
            address: "127.0.0.1".to_owned(),
            port
        }
    );

    peer.session.post_session_stats();
    let stats = peer.wait_for_alert("SessionStats", |a| matches!(a, Alert::SessionStats { .. }));
    let Alert::SessionStats { counters } = stats else {
        unreachable!()
    };
    assert_eq!(counters.len(), names.len());
    assert!(indices.iter().all(|&i| i < counters.len()));

    // Settings can be re-applied on a live session.
    let mut settings = SessionSettings::loopback();
    settings.upload_rate_limit = 1_000_000;
    peer.session.apply_settings(&settings).unwrap();
    settings.upload_rate_limit = -1;
    assert!(matches!(
        peer.session.apply_settings(&settings),
        Err(Error::InvalidArgument(_))
    ));
}

/// Every torrent id the alerts in `log` carry, status updates included.
fn ids_in(log: &[Alert]) -> BTreeSet<TorrentId> {
    log.iter()
        .flat_map(|a| match a {
            Alert::StateUpdate(statuses) => statuses.iter().map(|s| s.id).collect(),
            other => other.torrent_id().into_iter().collect::<Vec<_>>(),
        })
        .collect()
}

/// Asks for a status update and returns the ids it reports.
fn updated_ids(peer: &mut Peer) -> Vec<TorrentId> {
    let mark = peer.log.len();
    peer.session.post_torrent_updates();
    peer.wait_until("StateUpdate", |p| {
        p.log[mark..]
            .iter()
            .any(|a| matches!(a, Alert::StateUpdate(_)))
    });
    peer.log[mark..]
        .iter()
        .filter_map(|a| match a {
            Alert::StateUpdate(statuses) => Some(statuses.iter().map(|s| s.id)),
            _ => None,
        })
        .flatten()
        .collect()
}

/// The truncated v2 hash of a hybrid fixture as a `TorrentId`.
fn v2_id_of(fx: &Fixture) -> TorrentId {
    fx.info.info_hash_v2.as_ref().unwrap()[..40]
        .parse()
        .unwrap()
}

/// Downloads `fx` from `seed` by its v2 magnet `uri` into `dest`, checking
/// that the torrent keeps its truncated v2 id when the metadata brings the
/// v1 hash; returns its resume data.
fn fetch_by_v2_magnet(fx: &Fixture, seed: &Peer, uri: &str, dest: &Path) -> Vec<u8> {
    let (v1_id, v2_id) = (fx.id(), v2_id_of(fx));
    let mut leech = Peer::new();
    let id = leech.add(&AddTorrentParams::new(
        TorrentSource::Magnet(uri.to_owned()),
        dest,
    ));
    assert_eq!(id, v2_id);
    assert_eq!(leech.status(&v2_id).id, v2_id);
    assert_eq!(leech.session.status(&v1_id), Err(Error::NotFound(v1_id)));

    leech.download_from(&id, seed.addr());
    leech.wait_until("leech to seed", |p| p.status(&id).is_seeding);
    fx.assert_copied(dest, &[]);
    // libtorrent knows the v1 hash now (it finds the torrent by it) ...
    assert_eq!(leech.status(&v1_id).id, v2_id);
    assert_eq!(leech.status(&v2_id).id, v2_id);
    assert_eq!(leech.session.torrents().unwrap(), vec![v2_id]);
    let info = leech.session.torrent_info(&v1_id).unwrap().unwrap();
    assert_eq!(info.id, v2_id);
    assert_eq!(
        info.info_hash_v1.as_deref(),
        Some(&*v1_id.to_string()),
        "the metadata is the hybrid's"
    );
    assert_eq!(updated_ids(&mut leech), vec![v2_id]);
    // ... and every alert about it names it by the id it was added under.
    for (what, alert) in [
        (
            "AddTorrent",
            Alert::AddTorrent {
                id: v2_id,
                error: None,
            },
        ),
        ("MetadataReceived", Alert::MetadataReceived { id: v2_id }),
        ("TorrentFinished", Alert::TorrentFinished { id: v2_id }),
    ] {
        assert!(leech.log.contains(&alert), "no {what}: {:#?}", leech.log);
    }
    leech.session.save_resume_data(&v1_id).unwrap();
    let saved = leech.wait_for_alert("SaveResumeData", |a| {
        matches!(
            a,
            Alert::SaveResumeData { .. } | Alert::SaveResumeDataFailed { .. }
        )
    });
    assert_eq!(ids_in(&leech.log), BTreeSet::from([v2_id]));
    match saved {
        Alert::SaveResumeData { data, .. } => data,
        other => panic!("save_resume_data failed: {other:?}"),
    }
}

/// A v2 magnet (`urn:btmh:`) only knows the v2 hash, so the torrent is added
/// under its truncated v2 id. The metadata shows a hybrid torrent and
/// libtorrent learns its v1 hash; the torrent keeps the id it was added
/// under all the same — in statuses, status updates, alerts, `torrents()`
/// and its metadata — and keeps it when its resume data (which knows both
/// hashes) is re-added under that id in a fresh session, through to the
/// alerts of its removal. Both hashes find it.
#[test]
fn v2_magnet_of_a_hybrid_torrent_keeps_its_truncated_v2_id() {
    let fx = Fixture::new("btmh", TorrentFormat::Hybrid);
    let seed = Peer::seed(&fx);
    let v2 = fx.info.info_hash_v2.clone().unwrap();
    let v1_id = fx.id();
    let v2_id = v2_id_of(&fx);
    assert_ne!(v1_id, v2_id);
    let uri = format!("magnet:?xt=urn:btmh:1220{v2}");
    assert_eq!(parse_magnet(&uri).unwrap().id, v2_id);

    let dest = tempfile::tempdir().unwrap();
    let data = fetch_by_v2_magnet(&fx, &seed, &uri, dest.path());

    // Control: resume data with metadata knows both hashes, so re-added
    // without an id it comes back under the default one, the v1 hash.
    {
        let other = Peer::new();
        let plain = AddTorrentParams::new(TorrentSource::ResumeData(data.clone()), PathBuf::new());
        assert_eq!(other.add(&plain), v1_id);
        assert_eq!(other.session.torrents().unwrap(), vec![v1_id]);
        // An id that is neither of its hashes is refused.
        let wrong = AddTorrentParams {
            id: Some(TorrentId::new([0xab; 20])),
            ..plain
        };
        assert!(matches!(
            other.session.add_torrent(&wrong),
            Err(Error::InvalidArgument(_))
        ));
    }

    // A fresh session, as after a restart: re-added under the id it had.
    let mut again = Peer::new();
    let params = AddTorrentParams {
        id: Some(v2_id),
        ..AddTorrentParams::new(TorrentSource::ResumeData(data), PathBuf::new())
    };
    assert_eq!(again.add(&params), v2_id);
    assert_eq!(again.status(&v1_id).id, v2_id);
    assert_eq!(again.status(&v2_id).id, v2_id);
    assert_eq!(again.session.torrents().unwrap(), vec![v2_id]);
    assert_eq!(
        again.session.torrent_info(&v2_id).unwrap().unwrap().id,
        v2_id
    );
    again.wait_until("restored torrent to seed", |p| p.status(&v2_id).is_seeding);
    assert_eq!(updated_ids(&mut again), vec![v2_id]);
    // Either hash is the same torrent.
    for form in [format!("magnet:?xt=urn:btih:{v1_id}"), uri] {
        assert_eq!(
            again.session.add_torrent(&AddTorrentParams::new(
                TorrentSource::Magnet(form.clone()),
                dest.path()
            )),
            Err(Error::AlreadyExists(parse_magnet(&form).unwrap().id)),
            "{form}"
        );
    }
    assert_eq!(ids_in(&again.log), BTreeSet::from([v2_id]));

    // Its removal (files included) is reported under that id too.
    again.session.remove_torrent(&v1_id, true).unwrap();
    again.wait_for_alert(
        "TorrentRemoved",
        |a| matches!(a, Alert::TorrentRemoved { id } if *id == v2_id),
    );
    again.wait_for_alert(
        "TorrentDeleted",
        |a| matches!(a, Alert::TorrentDeleted { id } if *id == v2_id),
    );
    assert_eq!(again.session.torrents().unwrap(), vec![]);
    assert!(!dest.path().join("btmh").join("a.bin").exists());
}

#[test]
fn applied_settings_read_back_from_libtorrent() {
    let session = Session::new(&SessionSettings::loopback()).unwrap();
    let mut settings = SessionSettings::loopback();
    settings.download_rate_limit = 123_456;
    settings.upload_rate_limit = 654_321;
    settings.connections_limit = 77;
    session.apply_settings(&settings).unwrap();
    let back = session.current_settings().unwrap();
    assert_eq!(back.download_rate_limit, 123_456);
    assert_eq!(back.upload_rate_limit, 654_321);
    assert_eq!(back.connections_limit, 77);
    assert_eq!(back.listen_interfaces, "127.0.0.1:0");
    assert!(!back.enable_dht && !back.enable_utp);
}

/// A finished torrent's pieces are verified before every block is
/// necessarily in its files (2.0 keeps written blocks in memory for a
/// while); `flush_cache` writes them and `CacheFlushed` says when, after
/// which the files are complete. The engine announces `Completed` only
/// then, because FsOps reads those files.
#[test]
fn flush_cache_confirms_a_finished_download_is_in_its_files() {
    let fx = Fixture::new("flushed", TorrentFormat::V1Only);
    let seed = Peer::seed(&fx);
    let dest = tempfile::tempdir().unwrap();
    let mut leech = Peer::new();
    let id = leech.add(&AddTorrentParams::new(
        TorrentSource::TorrentFile(fx.torrent.clone()),
        dest.path(),
    ));
    leech.download_from(&id, seed.addr());
    leech.session.flush_cache(&id).unwrap();
    leech.wait_for_alert(
        "CacheFlushed",
        |a| matches!(a, Alert::CacheFlushed { id: got } if *got == id),
    );
    fx.assert_copied(dest.path(), &[]);
    assert!(leech.session.flush_cache(&TorrentId::new([7; 20])).is_err());
}
