//! `GET /v1/torrents` query pairs and cursors: parse or refuse with
//! pointers, and a cursor we issue always decodes to itself.
#![no_main]

use revaer_api::torrents_routes::{decode_cursor, encode_cursor, parse_list_query};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let pairs: Vec<(String, String)> = text
        .split('&')
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_owned(), v.to_owned())
        })
        .collect();
    if let Ok(query) = parse_list_query(&pairs) {
        assert!((1..=500).contains(&query.limit));
        if let Some(cursor) = query.cursor {
            assert_eq!(decode_cursor(&encode_cursor(cursor)), Some(cursor));
        }
    }
});
