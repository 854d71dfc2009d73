//! The API's durable store: one SQLite database (bundled SQLite, WAL) at
//! `<data>/state/api/revaer.db`.
//!
//! It holds API keys, the torrent catalog (tags, category, FsOps status),
//! the durable event log and FsOps jobs. Schema changes are numbered
//! migrations applied in one transaction each and recorded in
//! `PRAGMA user_version`, so opening an older database upgrades it and
//! opening a newer one is refused rather than misread. `synchronous = FULL`:
//! whatever the API acknowledges survives a power cut.

pub mod catalog;
pub mod keys;

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use rusqlite::{Connection, OpenFlags};

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("database schema version {found} is newer than this build understands ({known})")]
    TooNew { found: i64, known: i64 },
    #[error("{0}")]
    Invalid(String),
}

impl StoreError {
    /// Whether SQLite failed because the disk (or the filesystem holding
    /// the state directory) is full.
    #[must_use]
    pub fn is_disk_full(&self) -> bool {
        match self {
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => {
                e.code == rusqlite::ErrorCode::DiskFull
            }
            _ => false,
        }
    }
}

/// Ordered schema migrations; entry `n` upgrades version `n` to `n + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: keys, catalog, event log, FsOps jobs.
    "CREATE TABLE api_keys (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        scope TEXT NOT NULL CHECK (scope IN ('read', 'admin')),
        secret_hash BLOB NOT NULL UNIQUE,
        rate_per_minute INTEGER,
        created_at INTEGER NOT NULL,
        revoked_at INTEGER,
        previous_hash BLOB UNIQUE,
        previous_valid_until INTEGER
     );
     CREATE TABLE torrents (
        id TEXT PRIMARY KEY,
        tags TEXT NOT NULL DEFAULT '[]',
        category TEXT,
        added_at INTEGER NOT NULL,
        fsops_status TEXT
     );
     CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at INTEGER NOT NULL,
        kind TEXT NOT NULL,
        torrent TEXT,
        payload TEXT NOT NULL
     );
     CREATE INDEX events_torrent ON events (torrent, id);
     CREATE TABLE fsops_jobs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        torrent TEXT NOT NULL,
        state TEXT NOT NULL,
        step TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
     );
     CREATE INDEX fsops_jobs_torrent ON fsops_jobs (torrent);",
    // 2: FsOps journal details and the trace context of each add.
    "ALTER TABLE torrents ADD COLUMN traceparent TEXT;
     ALTER TABLE fsops_jobs ADD COLUMN steps TEXT NOT NULL DEFAULT '[]';
     ALTER TABLE fsops_jobs ADD COLUMN library_path TEXT;
     ALTER TABLE fsops_jobs ADD COLUMN error TEXT;
     CREATE INDEX fsops_jobs_state ON fsops_jobs (state);",
];

/// The open database.
#[derive(Debug)]
pub struct Store {
    conn: Mutex<Connection>,
    /// A second, read-only connection for reads that must not queue behind
    /// a write waiting on a slow disk: in WAL mode it reads the last
    /// committed state while the writer is busy (ADR 009). `None` for an
    /// in-memory database, which reads through `conn`.
    reader: Option<Mutex<Connection>>,
}

impl Store {
    /// Opens (creating and migrating) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open(path)?;
        let mut store = Self::configure(conn)?;
        let reader = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        reader.busy_timeout(std::time::Duration::from_secs(5))?;
        reader.pragma_update(None, "query_only", true)?;
        store.reader = Some(Mutex::new(reader));
        Ok(store)
    }

    /// An in-memory database (tests).
    pub fn in_memory() -> Result<Self, StoreError> {
        Self::configure(Connection::open_in_memory()?)
    }

    fn configure(mut conn: Connection) -> Result<Self, StoreError> {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        migrate(&mut conn)?;
        Ok(Self {
            conn: Mutex::new(conn),
            reader: None,
        })
    }

    /// The read-write connection; SQLite calls are short, so one
    /// mutex-guarded connection takes every write (reads of hot data come
    /// from memory).
    pub(crate) fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The connection for reads that answer requests (a torrent's FsOps
    /// job, the key list, the event-log replay): the read-only one, so a
    /// write stuck on the disk does not hold them up. Never call while
    /// holding [`Store::conn`]: without a reader it is the same mutex.
    pub(crate) fn read_conn(&self) -> MutexGuard<'_, Connection> {
        self.reader
            .as_ref()
            .unwrap_or(&self.conn)
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Current schema version.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        Ok(self
            .conn()
            .pragma_query_value(None, "user_version", |r| r.get(0))?)
    }
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let known = i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX);
    let found: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if found > known {
        return Err(StoreError::TooNew { found, known });
    }
    for (index, sql) in MIGRATIONS
        .iter()
        .enumerate()
        .skip(usize::try_from(found).unwrap_or(0))
    {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(
            None,
            "user_version",
            i64::try_from(index + 1).unwrap_or(i64::MAX),
        )?;
        tx.commit()?;
        tracing::info!(version = index + 1, "store migrated");
    }
    Ok(())
}

/// Seconds since the Unix epoch.
pub(crate) fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_migrates_and_reopens_idempotently() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("revaer.db");
        let store = Store::open(&path).unwrap();
        assert_eq!(store.schema_version().unwrap(), 2);
        drop(store);
        let again = Store::open(&path).unwrap();
        assert_eq!(again.schema_version().unwrap(), 2);
        let mode: String = again
            .conn()
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("revaer.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.pragma_update(None, "user_version", 99).unwrap();
        }
        assert!(matches!(
            Store::open(&path),
            Err(StoreError::TooNew { found: 99, .. })
        ));
    }
}
