//! The engine's durable state under `<data>/state/engine/`: per torrent, the
//! `.torrent` (or magnet link) it was added from and libtorrent's latest
//! resume data.
//!
//! Files are named by the torrent's id, the one it was added under, which
//! it keeps for good (a hybrid torrent added by a `urn:btmh:` magnet stays
//! under its truncated v2 hash after its metadata shows the v1 hash). On
//! restore the engine hands that id back to libtorrent with the resume
//! data, so the torrent returns under the name its files have.
//!
//! Every write is atomic — temp file, fsync, rename, fsync of the directory —
//! so a `kill -9` or power cut leaves either the old or the new file, never a
//! torn one. Loading never fails as a whole: a file that cannot be read or is
//! refused by libtorrent is moved to `quarantine/` with the reason logged and
//! reported, and the other torrents load.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// Largest state file read back (resume data with an info dict of a huge
/// torrent is a few MiB; anything bigger is not ours).
pub const MAX_STATE_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// Kinds of per-torrent state file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateKind {
    /// libtorrent resume data (bencoded, includes the info dict).
    Resume,
    /// The .torrent file the torrent was added from.
    Torrent,
    /// The magnet link the torrent was added from.
    Magnet,
}

impl StateKind {
    const ALL: [StateKind; 3] = [StateKind::Resume, StateKind::Torrent, StateKind::Magnet];

    fn extension(self) -> &'static str {
        match self {
            StateKind::Resume => "resume",
            StateKind::Torrent => "torrent",
            StateKind::Magnet => "magnet",
        }
    }
}

/// What was found on disk for one torrent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredTorrent {
    /// 40 lowercase hex characters.
    pub id: String,
    pub resume: Option<Vec<u8>>,
    pub torrent: Option<Vec<u8>>,
    pub magnet: Option<String>,
}

/// A state file that was moved aside instead of loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quarantined {
    pub id: String,
    pub kind: StateKind,
    pub moved_to: PathBuf,
    pub reason: String,
}

/// The state directory.
#[derive(Debug, Clone)]
pub struct StateStore {
    dir: PathBuf,
}

impl StateStore {
    /// Opens (creating if needed) the store at `dir`.
    pub fn open(dir: impl Into<PathBuf>) -> io::Result<Self> {
        let dir = dir.into();
        fs::create_dir_all(dir.join("quarantine"))?;
        Ok(Self { dir })
    }

    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, id: &str, kind: StateKind) -> PathBuf {
        self.dir.join(format!("{id}.{}", kind.extension()))
    }

    /// Atomically replaces one state file.
    pub fn save(&self, id: &str, kind: StateKind, bytes: &[u8]) -> io::Result<()> {
        check_id(id)?;
        write_atomically(&self.dir, &self.path(id, kind), bytes)
    }

    /// Deletes every state file of `id` (missing files are fine).
    pub fn remove(&self, id: &str) -> io::Result<()> {
        check_id(id)?;
        for kind in StateKind::ALL {
            match fs::remove_file(self.path(id, kind)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        File::open(&self.dir)?.sync_all()
    }

    /// Moves one state file to `quarantine/`, keeping it for inspection.
    pub fn quarantine(&self, id: &str, kind: StateKind, reason: &str) -> io::Result<Quarantined> {
        check_id(id)?;
        let stamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let moved_to = self
            .dir
            .join("quarantine")
            .join(format!("{id}.{}.{stamp}", kind.extension()));
        fs::rename(self.path(id, kind), &moved_to)?;
        File::open(&self.dir)?.sync_all()?;
        tracing::warn!(id, kind = kind.extension(), reason, moved_to = %moved_to.display(), "state file quarantined");
        Ok(Quarantined {
            id: id.to_owned(),
            kind,
            moved_to,
            reason: reason.to_owned(),
        })
    }

    /// Reads every torrent's state. Unreadable files are quarantined and
    /// reported; the rest load. Temp files left by an interrupted write are
    /// removed. Torrents are returned sorted by id.
    pub fn load_all(&self) -> io::Result<(Vec<StoredTorrent>, Vec<Quarantined>)> {
        let mut torrents: std::collections::BTreeMap<String, StoredTorrent> =
            std::collections::BTreeMap::new();
        let mut quarantined = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with('.') && Path::new(name).extension().is_some_and(|e| e == "tmp") {
                let _ = fs::remove_file(entry.path());
                continue;
            }
            let Some((id, ext)) = name.split_once('.') else {
                continue;
            };
            let Some(kind) = StateKind::ALL.into_iter().find(|k| k.extension() == ext) else {
                continue;
            };
            if check_id(id).is_err() || !entry.file_type()?.is_file() {
                continue;
            }
            let slot = torrents
                .entry(id.to_owned())
                .or_insert_with(|| StoredTorrent {
                    id: id.to_owned(),
                    ..StoredTorrent::default()
                });
            match read_bounded(&entry.path()) {
                Ok(bytes) => match kind {
                    StateKind::Resume => slot.resume = Some(bytes),
                    StateKind::Torrent => slot.torrent = Some(bytes),
                    StateKind::Magnet => match String::from_utf8(bytes) {
                        Ok(uri) => slot.magnet = Some(uri.trim().to_owned()),
                        Err(_) => {
                            quarantined.push(self.quarantine(
                                id,
                                kind,
                                "magnet file is not UTF-8",
                            )?);
                        }
                    },
                },
                Err(e) => quarantined.push(self.quarantine(id, kind, &e.to_string())?),
            }
        }
        let loaded = torrents
            .into_values()
            .filter(|t| t.resume.is_some() || t.torrent.is_some() || t.magnet.is_some())
            .collect();
        Ok((loaded, quarantined))
    }
}

/// Torrent ids are 40 lowercase hex characters; anything else could name a
/// path outside the store.
fn check_id(id: &str) -> io::Result<()> {
    let ok = id.len() == 40
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if ok {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("not a torrent id: {id:?}"),
        ))
    }
}

fn read_bounded(path: &Path) -> io::Result<Vec<u8>> {
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    if len > MAX_STATE_FILE_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{len} bytes exceeds the {MAX_STATE_FILE_BYTES}-byte bound"),
        ));
    }
    if len == 0 {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "empty file"));
    }
    let mut bytes = Vec::new();
    file.take(MAX_STATE_FILE_BYTES).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Temp file in the same directory, fsync, rename over the target, fsync the
/// directory so the rename itself is durable.
pub fn write_atomically(dir: &Path, target: &Path, bytes: &[u8]) -> io::Result<()> {
    let file_name = target
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "target has no file name"))?;
    let tmp = dir.join(format!(".{file_name}.tmp"));
    // Private: a .torrent's announce URLs can hold a tracker passkey.
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&tmp, target)?;
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const ID_B: &str = "0123456789abcdef0123456789abcdef01234567";

    fn temp_store(tag: &str) -> StateStore {
        let dir = std::env::temp_dir().join(format!("revaer-store-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        StateStore::open(dir).unwrap()
    }

    #[test]
    fn saves_replace_atomically_and_load_back() {
        let store = temp_store("roundtrip");
        store
            .save(ID_A, StateKind::Torrent, b"d4:infod...ee")
            .unwrap();
        store.save(ID_A, StateKind::Resume, b"first").unwrap();
        store.save(ID_A, StateKind::Resume, b"second").unwrap();
        store
            .save(ID_B, StateKind::Magnet, b"magnet:?xt=urn:btih:x\n")
            .unwrap();
        let (loaded, quarantined) = store.load_all().unwrap();
        assert!(quarantined.is_empty());
        assert_eq!(loaded.len(), 2);
        let a = loaded.iter().find(|t| t.id == ID_A).unwrap();
        assert_eq!(a.resume.as_deref(), Some(&b"second"[..]));
        assert_eq!(a.torrent.as_deref(), Some(&b"d4:infod...ee"[..]));
        let b = loaded.iter().find(|t| t.id == ID_B).unwrap();
        assert_eq!(b.magnet.as_deref(), Some("magnet:?xt=urn:btih:x"));
        // No temp files remain.
        let leftovers: Vec<_> = fs::read_dir(store.dir())
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty());
    }

    #[test]
    fn interrupted_write_leaves_old_file_and_temp_is_cleaned() {
        let store = temp_store("torn");
        store.save(ID_A, StateKind::Resume, b"good").unwrap();
        // A crash between write and rename leaves only a temp file.
        fs::write(store.dir().join(format!(".{ID_A}.resume.tmp")), b"tor").unwrap();
        let (loaded, _) = store.load_all().unwrap();
        assert_eq!(loaded[0].resume.as_deref(), Some(&b"good"[..]));
        assert!(!store.dir().join(format!(".{ID_A}.resume.tmp")).exists());
    }

    #[test]
    fn empty_file_is_quarantined_and_others_still_load() {
        let store = temp_store("quarantine");
        store.save(ID_B, StateKind::Resume, b"fine").unwrap();
        fs::write(store.dir().join(format!("{ID_A}.resume")), b"").unwrap();
        let (loaded, quarantined) = store.load_all().unwrap();
        assert_eq!(loaded.len(), 1);
        assert_eq!(loaded[0].id, ID_B);
        assert_eq!(quarantined.len(), 1);
        assert_eq!(quarantined[0].id, ID_A);
        assert!(quarantined[0].moved_to.exists());
        assert!(!store.dir().join(format!("{ID_A}.resume")).exists());
    }

    #[test]
    fn hostile_ids_and_foreign_files_are_refused_or_ignored() {
        let store = temp_store("ids");
        assert!(
            store
                .save("../../etc/passwd", StateKind::Resume, b"x")
                .is_err()
        );
        assert!(
            store
                .save(&ID_A.to_uppercase(), StateKind::Resume, b"x")
                .is_err()
        );
        fs::write(store.dir().join("notes.txt"), b"hello").unwrap();
        fs::write(store.dir().join("short.resume"), b"x").unwrap();
        let (loaded, quarantined) = store.load_all().unwrap();
        assert!(loaded.is_empty() && quarantined.is_empty());
    }

    #[test]
    fn remove_deletes_every_kind() {
        let store = temp_store("remove");
        for kind in StateKind::ALL {
            store.save(ID_A, kind, b"x").unwrap();
        }
        store.remove(ID_A).unwrap();
        store.remove(ID_A).unwrap();
        assert!(store.load_all().unwrap().0.is_empty());
    }
}
