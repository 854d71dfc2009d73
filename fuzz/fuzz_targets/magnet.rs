//! Magnet links (`POST /v1/torrents` JSON) through the bridge's parser.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = libtorrent_sys::parse_magnet(text);
    }
});
