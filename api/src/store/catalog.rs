//! The torrent catalog and FsOps job rows: what the API itself knows about
//! a torrent beyond the engine's view — tags, category, when it was added,
//! and the post-processing job created when it completed.

use rusqlite::{OptionalExtension, params};

use super::{Store, StoreError, now_unix};

/// The API's own labels for one torrent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogRow {
    pub id: String,
    pub tags: Vec<String>,
    pub category: Option<String>,
    pub added_at: i64,
    pub fsops_status: Option<String>,
}

/// One FsOps job row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsopsJobRow {
    pub id: i64,
    pub torrent: String,
    pub state: String,
    pub step: Option<String>,
    pub attempts: u32,
    pub created_at: i64,
    pub updated_at: i64,
}

fn tags_from_json(text: &str) -> Vec<String> {
    serde_json::from_str(text).unwrap_or_default()
}

fn tags_to_json(tags: &[String]) -> String {
    serde_json::to_string(tags).unwrap_or_else(|_| "[]".to_owned())
}

impl Store {
    /// Every catalog row.
    pub fn catalog_all(&self) -> Result<Vec<CatalogRow>, StoreError> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare("SELECT id, tags, category, added_at, fsops_status FROM torrents")?;
        let rows = stmt.query_map([], |r| {
            Ok(CatalogRow {
                id: r.get(0)?,
                tags: tags_from_json(&r.get::<_, String>(1)?),
                category: r.get(2)?,
                added_at: r.get(3)?,
                fsops_status: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Creates rows for torrents the catalog has not seen, added now; rows
    /// that exist are left alone. One transaction for the whole batch.
    pub fn catalog_ensure(&self, ids: &[String], added_at: i64) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        {
            let mut stmt =
                tx.prepare("INSERT OR IGNORE INTO torrents (id, added_at) VALUES (?1, ?2)")?;
            for id in ids {
                stmt.execute(params![id, added_at])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Sets a torrent's labels (creating its row when missing); `added_at`
    /// only applies to a new row.
    pub fn catalog_set_labels(
        &self,
        id: &str,
        tags: &[String],
        category: Option<&str>,
        added_at: i64,
    ) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT INTO torrents (id, tags, category, added_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (id) DO UPDATE SET tags = excluded.tags, category = excluded.category",
            params![id, tags_to_json(tags), category, added_at],
        )?;
        Ok(())
    }

    /// Forgets a removed torrent (its FsOps job rows stay as history).
    pub fn catalog_delete(&self, id: &str) -> Result<(), StoreError> {
        self.conn()
            .execute("DELETE FROM torrents WHERE id = ?1", params![id])?;
        Ok(())
    }

    /// Records a `pending` FsOps job for a completed torrent unless one
    /// exists already (completion can be reported again after a restart).
    /// Returns whether a job was created.
    pub fn fsops_job_create(&self, torrent: &str) -> Result<bool, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let exists: Option<i64> = tx
            .query_row(
                "SELECT id FROM fsops_jobs WHERE torrent = ?1 LIMIT 1",
                params![torrent],
                |r| r.get(0),
            )
            .optional()?;
        if exists.is_some() {
            return Ok(false);
        }
        let now = now_unix();
        tx.execute(
            "INSERT INTO fsops_jobs (torrent, state, created_at, updated_at)
             VALUES (?1, 'pending', ?2, ?2)",
            params![torrent, now],
        )?;
        tx.execute(
            "UPDATE torrents SET fsops_status = 'pending' WHERE id = ?1",
            params![torrent],
        )?;
        tx.commit()?;
        Ok(true)
    }

    /// The newest FsOps job of a torrent.
    pub fn fsops_job_latest(&self, torrent: &str) -> Result<Option<FsopsJobRow>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT id, torrent, state, step, attempts, created_at, updated_at
                 FROM fsops_jobs WHERE torrent = ?1 ORDER BY id DESC LIMIT 1",
                params![torrent],
                |r| {
                    Ok(FsopsJobRow {
                        id: r.get(0)?,
                        torrent: r.get(1)?,
                        state: r.get(2)?,
                        step: r.get(3)?,
                        attempts: r.get(4)?,
                        created_at: r.get(5)?,
                        updated_at: r.get(6)?,
                    })
                },
            )
            .optional()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    #[test]
    fn ensure_keeps_existing_labels_and_set_labels_keeps_added_at() {
        let store = Store::in_memory().unwrap();
        store
            .catalog_set_labels(A, &["tv".to_owned()], Some("shows"), 100)
            .unwrap();
        store
            .catalog_ensure(&[A.to_owned(), B.to_owned()], 200)
            .unwrap();
        store.catalog_set_labels(B, &[], None, 300).unwrap();
        let mut rows = store.catalog_all().unwrap();
        rows.sort_by(|x, y| x.id.cmp(&y.id));
        assert_eq!(rows[0].tags, vec!["tv".to_owned()]);
        assert_eq!(rows[0].category.as_deref(), Some("shows"));
        assert_eq!(rows[0].added_at, 100);
        assert_eq!(rows[1].added_at, 200, "labels must not move added_at");
        store.catalog_delete(A).unwrap();
        assert_eq!(store.catalog_all().unwrap().len(), 1);
    }

    #[test]
    fn a_completed_torrent_gets_exactly_one_job() {
        let store = Store::in_memory().unwrap();
        store.catalog_ensure(&[A.to_owned()], 1).unwrap();
        assert!(store.fsops_job_latest(A).unwrap().is_none());
        assert!(store.fsops_job_create(A).unwrap());
        assert!(!store.fsops_job_create(A).unwrap(), "second completion");
        let job = store.fsops_job_latest(A).unwrap().unwrap();
        assert_eq!(job.state, "pending");
        assert_eq!(job.attempts, 0);
        let row = &store.catalog_all().unwrap()[0];
        assert_eq!(row.fsops_status.as_deref(), Some("pending"));
    }
}
