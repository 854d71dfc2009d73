//! `.torrent` bytes as `POST /v1/torrents` hands them to the engine:
//! libtorrent's bdecoder behind our bridge must return an error, never
//! crash or abort.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(info) = libtorrent_sys::parse_torrent(data) {
        assert!(info.files.len() < 10_000_000);
    }
});
