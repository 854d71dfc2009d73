//! The bench's torrents: small v1 `.torrent` files written as bencode
//! directly (one tiny file each, a unique name so every info-hash differs,
//! pseudo-random piece hashes — they stay paused, nothing is ever hashed),
//! and the multipart bodies that upload them.

use std::fmt::Write as _;
use std::io::Write as _;

use crate::util::BoxError;

/// Extensions, by torrent index modulo 4.
const EXTENSIONS: [&str; 4] = ["mkv", "iso", "flac", "txt"];
/// Groups (tag `group-N`), by torrent index modulo 5.
const GROUPS: usize = 5;
/// One piece covers each file.
const PIECE_LENGTH: u64 = 16 * 1024;

/// One generated torrent.
#[derive(Debug, Clone)]
pub struct BenchTorrent {
    pub name: String,
    pub bytes: Vec<u8>,
    pub tags: Vec<String>,
    pub category: String,
}

/// The query string of the filtered list: `.mkv` files (index ≡ 0 mod 4)
/// tagged `group-2` (index ≡ 2 mod 5), paused: one torrent in 20.
pub const FILTER_QUERY: &str = "limit=100&state=paused&extension=mkv&tags=group-2";

/// How many of `count` torrents [`FILTER_QUERY`] matches.
pub fn filter_matches(count: usize) -> usize {
    (0..count).filter(|i| i % 4 == 0 && i % GROUPS == 2).count()
}

/// splitmix64: deterministic filler for the piece hashes.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn bstring(out: &mut Vec<u8>, s: &[u8]) {
    let _ = write!(out, "{}:", s.len());
    out.extend_from_slice(s);
}

/// Torrent number `index` of the set: `revaer-bench-00042.flac`.
pub fn make(index: usize) -> BenchTorrent {
    let ext = EXTENSIONS[index % EXTENSIONS.len()];
    let name = format!("revaer-bench-{index:05}.{ext}");
    let length = 1000 + u64::try_from(index).unwrap_or(0);
    let mut seed = u64::try_from(index).unwrap_or(0) ^ 0x5265_7661_6572;
    let mut pieces = Vec::with_capacity(24);
    while pieces.len() < 20 {
        pieces.extend_from_slice(&splitmix(&mut seed).to_le_bytes());
    }
    pieces.truncate(20);
    // Keys in byte order, as bencode requires.
    let mut out = Vec::with_capacity(160);
    out.push(b'd');
    bstring(&mut out, b"created by");
    bstring(&mut out, b"revaer bench-api");
    bstring(&mut out, b"info");
    out.push(b'd');
    bstring(&mut out, b"length");
    let _ = write!(out, "i{length}e");
    bstring(&mut out, b"name");
    bstring(&mut out, name.as_bytes());
    bstring(&mut out, b"piece length");
    let _ = write!(out, "i{PIECE_LENGTH}e");
    bstring(&mut out, b"pieces");
    bstring(&mut out, &pieces);
    out.extend_from_slice(b"ee");
    BenchTorrent {
        name,
        bytes: out,
        tags: vec!["bench".to_owned(), format!("group-{}", index % GROUPS)],
        category: format!("cat-{}", index % EXTENSIONS.len()),
    }
}

/// `count` torrents.
pub fn make_all(count: usize) -> Vec<BenchTorrent> {
    (0..count).map(make).collect()
}

/// A multipart body and its content type.
#[derive(Debug)]
pub struct Multipart {
    boundary: String,
    pub body: Vec<u8>,
}

impl Multipart {
    pub fn new() -> Self {
        let mut state = u64::from(std::process::id());
        Self {
            boundary: format!("----revaer-bench-{:016x}", splitmix(&mut state)),
            body: Vec::new(),
        }
    }

    pub fn text(&mut self, name: &str, value: &str) -> Result<(), BoxError> {
        write!(
            self.body,
            "--{}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n",
            self.boundary
        )?;
        Ok(())
    }

    pub fn json(&mut self, name: &str, value: &str) -> Result<(), BoxError> {
        write!(
            self.body,
            "--{}\r\nContent-Disposition: form-data; name=\"{name}\"\r\nContent-Type: application/json\r\n\r\n{value}\r\n",
            self.boundary
        )?;
        Ok(())
    }

    pub fn file(&mut self, name: &str, filename: &str, bytes: &[u8]) -> Result<(), BoxError> {
        write!(
            self.body,
            "--{}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\nContent-Type: application/x-bittorrent\r\n\r\n",
            self.boundary
        )?;
        self.body.extend_from_slice(bytes);
        self.body.extend_from_slice(b"\r\n");
        Ok(())
    }

    /// Closes the body; returns it with its `Content-Type`.
    pub fn finish(mut self) -> (Vec<u8>, String) {
        let mut end = String::new();
        let _ = write!(end, "--{}--\r\n", self.boundary);
        self.body.extend_from_slice(end.as_bytes());
        (
            self.body,
            format!("multipart/form-data; boundary={}", self.boundary),
        )
    }
}

/// Revaer's `POST /v1/torrents` body for one torrent: part `torrent`, part
/// `options` (paused, tags, category).
pub fn revaer_upload(t: &BenchTorrent) -> Result<(Vec<u8>, String), BoxError> {
    let options = serde_json::json!({
        "paused": true,
        "tags": t.tags,
        "category": t.category,
    });
    let mut form = Multipart::new();
    form.file("torrent", &format!("{}.torrent", t.name), &t.bytes)?;
    form.json("options", &options.to_string())?;
    Ok(form.finish())
}

/// qBittorrent's `/api/v2/torrents/add` body for a batch: every file as
/// `torrents`, added paused, with the `bench` tag.
pub fn qbittorrent_batch(
    batch: &[BenchTorrent],
    save: &str,
) -> Result<(Vec<u8>, String), BoxError> {
    let mut form = Multipart::new();
    for t in batch {
        form.file("torrents", &format!("{}.torrent", t.name), &t.bytes)?;
    }
    form.text("savepath", save)?;
    form.text("paused", "true")?;
    form.text("stopped", "true")?;
    form.text("autoTMM", "false")?;
    form.text("tags", "bench")?;
    Ok(form.finish())
}
