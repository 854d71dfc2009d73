//! The job journal FsOps keeps in the library: `.revaer/<info-hash>.json`.
//!
//! Written first thing in `prepare` (so everything in the library that a
//! job created is known to be its own) and after every later step, atomically
//! (temporary file, `fsync`, rename, `fsync` of the directory). It holds what
//! a resumed attempt must reuse rather than recompute (the library item and
//! move mode chosen when the job started) and which steps are done. Once
//! `status` is `completed`, a new run of the same torrent is a no-op.

use std::io::{Read as _, Write as _};
use std::time::{SystemTime, UNIX_EPOCH};

use cap_std::fs::Dir;
use revaer_ipc::fsops::FsopsStep;
use serde::{Deserialize, Serialize};

use crate::error::{IoContext as _, StepError, StepResult};
use crate::roots::{RelPath, lstat, sync_dir};

/// The directory of records, at the top of the library.
pub const RECORD_DIR: &str = ".revaer";
/// Largest record read back.
const MAX_RECORD_BYTES: u64 = 1 << 20;
/// Format version of the record.
pub const RECORD_VERSION: u32 = 1;

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordStatus {
    InProgress,
    Completed,
}

/// One job's journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRecord {
    pub version: u32,
    /// 40 hex digits.
    pub torrent: String,
    pub job_id: i64,
    pub name: String,
    /// The library directory the item went into (relative to the library).
    pub dest_parent: String,
    /// What the job reports as done: the item, or the folder a single
    /// archive was unpacked into.
    pub library_path: String,
    /// `hardlink`, `copy` or `move`, fixed when the job started.
    pub move_mode: String,
    pub status: RecordStatus,
    /// Steps finished, by name.
    pub done: Vec<String>,
    /// Category folders this job created (their modes are set by
    /// `permissions`; folders that existed before are left alone).
    #[serde(default)]
    pub created_dirs: Vec<String>,
    pub started_unix_ms: u64,
    pub finished_unix_ms: Option<u64>,
}

impl JobRecord {
    #[must_use]
    pub fn is_done(&self, step: FsopsStep) -> bool {
        self.done.iter().any(|s| s == step.as_str())
    }

    pub fn mark_done(&mut self, step: FsopsStep) {
        if !self.is_done(step) {
            self.done.push(step.as_str().to_owned());
        }
    }

    /// `dest_parent` as a checked path (it came from a file).
    pub fn dest_parent(&self) -> StepResult<RelPath> {
        RelPath::parse(&self.dest_parent)
            .map_err(|e| StepError::Conflict(format!("record names a bad library folder: {e}")))
    }

    /// `library_path` as a checked path.
    pub fn library_path(&self) -> StepResult<RelPath> {
        RelPath::parse(&self.library_path)
            .map_err(|e| StepError::Conflict(format!("record names a bad library path: {e}")))
    }
}

/// Milliseconds since the epoch.
#[must_use]
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn record_name(hash: &str) -> RelPath {
    RelPath::parse(&format!("{RECORD_DIR}/{hash}.json")).unwrap_or_default()
}

/// Reads the record of torrent `hash`, if any. A record that cannot be
/// parsed, or names another torrent, is an error: FsOps will not guess
/// what a damaged journal meant.
pub fn read(library: &Dir, hash: &str) -> StepResult<Option<JobRecord>> {
    let path = record_name(hash);
    if lstat(library, &path)
        .ctx(|| format!("reading {path}"))?
        .is_none()
    {
        return Ok(None);
    }
    let file =
        crate::roots::open_file_nofollow(library, &path).ctx(|| format!("opening {path}"))?;
    let mut text = String::new();
    file.take(MAX_RECORD_BYTES)
        .read_to_string(&mut text)
        .ctx(|| format!("reading {path}"))?;
    let record: JobRecord = serde_json::from_str(&text)
        .map_err(|e| StepError::Conflict(format!("record {path} is damaged: {e}")))?;
    if record.torrent != hash {
        return Err(StepError::Conflict(format!(
            "record {path} belongs to torrent {}",
            record.torrent
        )));
    }
    Ok(Some(record))
}

/// Writes `record` atomically.
pub fn write(library: &Dir, record: &JobRecord) -> StepResult<()> {
    let dir = RelPath::parse(RECORD_DIR).unwrap_or_default();
    crate::roots::create_dirs(library, &dir).ctx(|| format!("creating {RECORD_DIR}"))?;
    let path = record_name(&record.torrent);
    let tmp =
        RelPath::parse(&format!("{RECORD_DIR}/{}.json.tmp", record.torrent)).unwrap_or_default();
    let text = serde_json::to_vec_pretty(record)
        .map_err(|e| StepError::io("encoding the record", std::io::Error::other(e)))?;
    let written = (|| -> std::io::Result<()> {
        let mut file = library.create(tmp.as_path())?;
        file.write_all(&text)?;
        file.sync_all()?;
        library.rename(tmp.as_path(), library, path.as_path())?;
        sync_dir(library, &dir)
    })();
    written.ctx(|| format!("writing {path}"))
}
