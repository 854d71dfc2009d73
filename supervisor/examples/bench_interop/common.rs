//! The test suite's interoperability harness (`supervisor/tests/common/`:
//! opentracker, aria2c, payloads, qbittorrent-nox, transmission-daemon in a
//! network namespace, bencode), included as is, with the few items of
//! `tests/common/mod.rs` it reaches through `super::` (that file itself
//! cannot be included: it needs `CARGO_BIN_EXE_revaerd`, which cargo sets
//! for tests only). The harness panics on failure; the bench runs each cell
//! under `catch_unwind` and records the panic as that cell's failure, while
//! the harness' `Drop`s stop its processes and delete its namespace.

#![allow(dead_code)]

#[path = "../../tests/common/bencode.rs"]
pub mod bencode;
#[path = "../../tests/common/clients.rs"]
pub mod clients;
#[path = "../../tests/common/swarm.rs"]
pub mod swarm;

use std::path::PathBuf;
use std::time::Duration;

/// Deadline of the harness' own waits (a daemon listening, a namespace up,
/// a client checking a small payload); the bench's transfer waits have
/// deadlines of their own, scaled with the payload.
pub const DEADLINE: Duration = Duration::from_secs(60);
/// Interval between the harness' polls.
pub const POLL: Duration = Duration::from_millis(20);

/// A unique, empty temp dir, removed on drop (the harness' type: it
/// reaches the path as `.0`). Made under the bench's work dir when one is
/// set ([`set_root`]), else under the system temp dir.
pub struct TempDir(pub PathBuf);

static ROOT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// Where [`TempDir::new`] makes its directories from now on (once).
pub fn set_root(root: PathBuf) {
    let _ = ROOT.set(root);
}

impl TempDir {
    /// A failure to create it shows at the first use of the path (the
    /// harness' signature has no `Result`).
    pub fn new(tag: &str) -> Self {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let base = ROOT.get().cloned().unwrap_or_else(std::env::temp_dir);
        let dir = base.join(format!("{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Deterministic pseudo-random bytes (xorshift64), different per `seed`.
pub fn fixture_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// `%XX` (and `+`) decoding of a URL component, bytes out.
pub fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}
