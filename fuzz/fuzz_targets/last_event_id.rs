//! `GET /v1/events`: the `Last-Event-ID` header (any bytes a client may
//! send) and the query filters parse or are refused with pointers.
#![no_main]

use axum::http::{HeaderMap, HeaderValue};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let (header, query) = data.split_at(data.len() / 2);
    let mut headers = HeaderMap::new();
    if let Ok(value) = HeaderValue::from_bytes(header) {
        headers.insert("last-event-id", value);
    }
    let text = String::from_utf8_lossy(query);
    let pairs: Vec<(String, String)> = text
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_owned(), v.to_owned())
        })
        .collect();
    if let Err(invalid) = revaer_api::sse::parse_request(&headers, &pairs) {
        assert!(!invalid.is_empty());
    }
});
