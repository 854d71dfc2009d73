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

/// One FsOps job row: its state (`pending`, `running`, `completed`,
/// `failed`, `cancelled`), the step running or last run, and the journal
/// of finished steps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsopsJobRow {
    pub id: i64,
    pub torrent: String,
    pub state: String,
    pub step: Option<String>,
    pub attempts: u32,
    pub created_at: i64,
    pub updated_at: i64,
    /// `(step, outcome)` in the order they finished.
    pub steps: Vec<(String, String)>,
    pub library_path: Option<String>,
    pub error: Option<String>,
}

const JOB_COLUMNS: &str =
    "id, torrent, state, step, attempts, created_at, updated_at, steps, library_path, error";

fn job_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<FsopsJobRow> {
    Ok(FsopsJobRow {
        id: r.get(0)?,
        torrent: r.get(1)?,
        state: r.get(2)?,
        step: r.get(3)?,
        attempts: r.get(4)?,
        created_at: r.get(5)?,
        updated_at: r.get(6)?,
        steps: serde_json::from_str(&r.get::<_, String>(7)?).unwrap_or_default(),
        library_path: r.get(8)?,
        error: r.get(9)?,
    })
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
    /// only applies to a new row. Returns the row's `added_at`.
    pub fn catalog_set_labels(
        &self,
        id: &str,
        tags: &[String],
        category: Option<&str>,
        added_at: i64,
    ) -> Result<i64, StoreError> {
        // An explicit transaction: with `RETURNING` in autocommit mode the
        // commit happens when the statement is reset, where a failure (a
        // full disk) is not reported — the caller would acknowledge a write
        // that never happened. `commit` reports it.
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let added_at = tx.query_row(
            "INSERT INTO torrents (id, tags, category, added_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (id) DO UPDATE SET tags = excluded.tags, category = excluded.category
             RETURNING added_at",
            params![id, tags_to_json(tags), category, added_at],
            |r| r.get(0),
        )?;
        tx.commit()?;
        Ok(added_at)
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
            .read_conn()
            .query_row(
                &format!(
                    "SELECT {JOB_COLUMNS} FROM fsops_jobs WHERE torrent = ?1 ORDER BY id DESC LIMIT 1"
                ),
                params![torrent],
                job_row,
            )
            .optional()?)
    }

    /// One job by id.
    pub fn fsops_job(&self, job_id: i64) -> Result<Option<FsopsJobRow>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                &format!("SELECT {JOB_COLUMNS} FROM fsops_jobs WHERE id = ?1"),
                params![job_id],
                job_row,
            )
            .optional()?)
    }

    /// Jobs not finished: `pending`, and `running` ones an interruption left
    /// behind (resumed at their journaled step).
    pub fn fsops_jobs_unfinished(&self) -> Result<Vec<FsopsJobRow>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {JOB_COLUMNS} FROM fsops_jobs WHERE state IN ('pending', 'running') ORDER BY id"
        ))?;
        let rows = stmt.query_map([], job_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Jobs that failed and were neither retried nor cancelled.
    pub fn fsops_jobs_failed(&self) -> Result<u64, StoreError> {
        let n: i64 = self.conn().query_row(
            "SELECT COUNT(*) FROM fsops_jobs WHERE state = 'failed'",
            [],
            |r| r.get(0),
        )?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    fn set_job_state(
        &self,
        job_id: i64,
        state: &str,
        extra: &str,
        values: &[&dyn rusqlite::ToSql],
    ) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let mut all: Vec<&dyn rusqlite::ToSql> = vec![&job_id, &state];
        let now = now_unix();
        all.push(&now);
        all.extend_from_slice(values);
        tx.execute(
            &format!("UPDATE fsops_jobs SET state = ?2, updated_at = ?3{extra} WHERE id = ?1"),
            all.as_slice(),
        )?;
        tx.execute(
            "UPDATE torrents SET fsops_status = ?2
             WHERE id = (SELECT torrent FROM fsops_jobs WHERE id = ?1)",
            params![job_id, state],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// A dispatch (first run, resume or retry): counts the attempt.
    pub fn fsops_job_dispatched(&self, job_id: i64) -> Result<u32, StoreError> {
        let conn = self.conn();
        conn.execute(
            "UPDATE fsops_jobs SET attempts = attempts + 1, updated_at = ?2 WHERE id = ?1",
            params![job_id, now_unix()],
        )?;
        Ok(conn.query_row(
            "SELECT attempts FROM fsops_jobs WHERE id = ?1",
            params![job_id],
            |r| r.get(0),
        )?)
    }

    /// Journals the step about to run: an interruption resumes here.
    pub fn fsops_job_step_started(&self, job_id: i64, step: &str) -> Result<(), StoreError> {
        self.set_job_state(job_id, "running", ", step = ?4", &[&step])
    }

    /// Records a finished step (replacing an earlier record of the same
    /// step from an interrupted attempt).
    pub fn fsops_job_step_finished(
        &self,
        job_id: i64,
        step: &str,
        outcome: &str,
    ) -> Result<(), StoreError> {
        let mut steps = self.fsops_job(job_id)?.map(|j| j.steps).unwrap_or_default();
        steps.retain(|(s, _)| s != step);
        steps.push((step.to_owned(), outcome.to_owned()));
        let json = serde_json::to_string(&steps).unwrap_or_else(|_| "[]".to_owned());
        self.set_job_state(job_id, "running", ", steps = ?4", &[&json])
    }

    pub fn fsops_job_completed(&self, job_id: i64, library_path: &str) -> Result<(), StoreError> {
        self.set_job_state(
            job_id,
            "completed",
            ", library_path = ?4, error = NULL",
            &[&library_path],
        )
    }

    pub fn fsops_job_failed(
        &self,
        job_id: i64,
        step: &str,
        reason: &str,
    ) -> Result<(), StoreError> {
        self.set_job_state(
            job_id,
            "failed",
            ", step = ?4, error = ?5",
            &[&step, &reason],
        )
    }

    /// Puts a torrent's failed job back in line; `None` when its newest job
    /// did not fail.
    pub fn fsops_job_retry(&self, torrent: &str) -> Result<Option<FsopsJobRow>, StoreError> {
        match self.fsops_job_latest(torrent)? {
            Some(job) if job.state == "failed" => {
                self.set_job_state(job.id, "pending", "", &[])?;
                self.fsops_job(job.id)
            }
            _ => Ok(None),
        }
    }

    /// A removed torrent's unfinished or failed jobs will never run.
    pub fn fsops_jobs_cancel(&self, torrent: &str) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE fsops_jobs SET state = 'cancelled', updated_at = ?2
             WHERE torrent = ?1 AND state IN ('pending', 'running', 'failed')",
            params![torrent, now_unix()],
        )?;
        Ok(())
    }

    /// Remembers the trace context of a torrent's add request.
    pub fn catalog_set_traceparent(&self, id: &str, traceparent: &str) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE torrents SET traceparent = ?2 WHERE id = ?1",
            params![id, traceparent],
        )?;
        Ok(())
    }

    /// The trace context of a torrent's add request, if recorded.
    pub fn catalog_traceparent(&self, id: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT traceparent FROM torrents WHERE id = ?1",
                params![id],
                |r| r.get(0),
            )
            .optional()?
            .flatten())
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
        assert_eq!(store.catalog_set_labels(B, &[], None, 300).unwrap(), 200);
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

    #[test]
    fn the_job_journal_tracks_steps_outcomes_and_retries() {
        let store = Store::in_memory().unwrap();
        store.catalog_ensure(&[A.to_owned()], 1).unwrap();
        store.fsops_job_create(A).unwrap();
        let id = store.fsops_job_latest(A).unwrap().unwrap().id;
        assert_eq!(store.fsops_job_dispatched(id).unwrap(), 1);
        store.fsops_job_step_started(id, "validate").unwrap();
        store
            .fsops_job_step_finished(id, "validate", "done")
            .unwrap();
        store.fsops_job_step_started(id, "transfer").unwrap();
        // Interrupted: still running at transfer, found again at start-up.
        let unfinished = store.fsops_jobs_unfinished().unwrap();
        assert_eq!(unfinished.len(), 1);
        assert_eq!(unfinished[0].step.as_deref(), Some("transfer"));
        assert_eq!(unfinished[0].state, "running");
        store
            .fsops_job_step_finished(id, "transfer", "done")
            .unwrap();
        store
            .fsops_job_step_finished(id, "transfer", "skipped")
            .unwrap();
        store.fsops_job_failed(id, "extract", "bomb").unwrap();
        assert_eq!(store.fsops_jobs_failed().unwrap(), 1);
        let job = store.fsops_job(id).unwrap().unwrap();
        assert_eq!(
            job.steps,
            vec![
                ("validate".to_owned(), "done".to_owned()),
                ("transfer".to_owned(), "skipped".to_owned())
            ]
        );
        assert_eq!(job.error.as_deref(), Some("bomb"));
        assert_eq!(
            store.catalog_all().unwrap()[0].fsops_status.as_deref(),
            Some("failed")
        );
        let retried = store.fsops_job_retry(A).unwrap().unwrap();
        assert_eq!(retried.state, "pending");
        assert_eq!(retried.step.as_deref(), Some("extract"));
        assert!(
            store.fsops_job_retry(A).unwrap().is_none(),
            "not failed any more"
        );
        store.fsops_job_completed(id, "tv/show").unwrap();
        assert_eq!(store.fsops_jobs_failed().unwrap(), 0);
        assert!(store.fsops_jobs_unfinished().unwrap().is_empty());
        store.fsops_job_failed(id, "record", "x").unwrap();
        store.fsops_jobs_cancel(A).unwrap();
        assert_eq!(store.fsops_jobs_failed().unwrap(), 0);
        store.catalog_set_traceparent(A, "00-abc-def-01").unwrap();
        assert_eq!(
            store.catalog_traceparent(A).unwrap().as_deref(),
            Some("00-abc-def-01")
        );
    }
}
