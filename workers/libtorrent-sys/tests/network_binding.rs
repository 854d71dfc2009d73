//! The bridge's controls for `[engine] interface` (ADR 011): the outgoing
//! interface setting reaches libtorrent and reads back, a listen interface
//! named by device opens sockets on it, and the whole session pauses and
//! resumes (the kill switch) without touching each torrent's own state.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use libtorrent_sys::{Session, SessionSettings};

#[test]
fn outgoing_interfaces_and_a_device_listen_interface_reach_libtorrent() {
    let mut settings = SessionSettings::loopback();
    settings.listen_interfaces = "lo:0".to_owned();
    settings.outgoing_interfaces = "lo".to_owned();
    let session = Session::new(&settings).unwrap();
    let back = session.current_settings().unwrap();
    assert_eq!(back.outgoing_interfaces, "lo");
    assert_eq!(back.listen_interfaces, "lo:0");
    // Listening on the device's address: a port is bound (asynchronously).
    let deadline = Instant::now() + Duration::from_secs(20);
    while session.listen_port() == 0 {
        assert!(Instant::now() < deadline, "no listen socket on lo");
        std::thread::sleep(Duration::from_millis(20));
    }

    settings.outgoing_interfaces = String::new();
    session.apply_settings(&settings).unwrap();
    assert_eq!(session.current_settings().unwrap().outgoing_interfaces, "");

    settings.outgoing_interfaces = "lo\0eth0".to_owned();
    assert!(session.apply_settings(&settings).is_err());
}

#[test]
fn the_whole_session_pauses_and_resumes() {
    let session = Session::new(&SessionSettings::loopback()).unwrap();
    assert!(!session.session_paused().unwrap());
    session.pause_session().unwrap();
    assert!(session.session_paused().unwrap());
    session.reopen_network_sockets().unwrap();
    session.resume_session().unwrap();
    assert!(!session.session_paused().unwrap());
}
