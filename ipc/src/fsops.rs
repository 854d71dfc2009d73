//! FsOps protocol types: the post-processing job the API hands to the FsOps
//! worker for a completed torrent, and the progress FsOps streams back.
//!
//! One job runs on one dedicated data connection: the API sends
//! [`FsopsRequest::Run`] and FsOps answers with a stream of
//! [`FsopsProgress`] frames (same request id) ending with `Completed` or
//! `Failed`, then closes the stream. The API journals every step it hears
//! about in its `fsops_jobs` table; if the connection drops mid-job (FsOps
//! killed), the API re-dispatches the job with `resume_at` set to the step
//! that was running. Every step is idempotent, so resuming finishes the job
//! exactly once.
//!
//! Paths in a job are *relative*: `source` to the engine's downloads dir,
//! results to the library root. FsOps resolves them beneath directories it
//! opened itself and refuses anything that would leave them.

use serde::{Deserialize, Serialize};

use crate::engine::TorrentId;

/// Longest relative path in a job, in bytes.
pub const MAX_JOB_PATH_BYTES: usize = 4096;
/// Most files listed in one job.
pub const MAX_JOB_FILES: usize = 100_000;

/// The pipeline, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum FsopsStep {
    Validate,
    LocateSource,
    Prepare,
    Transfer,
    Extract,
    Flatten,
    Permissions,
    Cleanup,
    Record,
}

impl FsopsStep {
    /// Every step in pipeline order.
    pub const ALL: [FsopsStep; 9] = [
        FsopsStep::Validate,
        FsopsStep::LocateSource,
        FsopsStep::Prepare,
        FsopsStep::Transfer,
        FsopsStep::Extract,
        FsopsStep::Flatten,
        FsopsStep::Permissions,
        FsopsStep::Cleanup,
        FsopsStep::Record,
    ];

    /// The wire and metric name (`locate_source`, ...).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            FsopsStep::Validate => "validate",
            FsopsStep::LocateSource => "locate_source",
            FsopsStep::Prepare => "prepare",
            FsopsStep::Transfer => "transfer",
            FsopsStep::Extract => "extract",
            FsopsStep::Flatten => "flatten",
            FsopsStep::Permissions => "permissions",
            FsopsStep::Cleanup => "cleanup",
            FsopsStep::Record => "record",
        }
    }

    /// Parses [`FsopsStep::as_str`].
    #[must_use]
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// A post-processing job for one completed torrent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsopsJob {
    /// The API's `fsops_jobs` row id.
    pub job_id: i64,
    pub torrent: TorrentId,
    /// The torrent's name (its top folder, or its only file).
    pub name: String,
    /// Where the torrent's content is, relative to the downloads dir: the
    /// save sub-directory (if any) joined with `name`.
    pub source: String,
    /// The torrent's wanted files, relative to the save directory (so they
    /// start with `name/` for multi-file torrents), with their sizes.
    pub files: Vec<JobFile>,
    /// The torrent's category: selects a per-category library sub-path.
    pub category: Option<String>,
    /// Resume here instead of at `Validate` (the step that was running when
    /// an earlier attempt was interrupted). Steps before it are done.
    pub resume_at: Option<FsopsStep>,
    /// 1 for the first run, incremented by every retry and resume.
    pub attempt: u32,
    /// W3C trace context of the torrent's add request.
    pub traceparent: Option<String>,
}

/// One file of the job's torrent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobFile {
    pub path: String,
    pub size: u64,
}

/// API → FsOps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FsopsRequest {
    /// Run (or resume) a job; answered by a stream of [`FsopsProgress`].
    Run(Box<FsopsJob>),
}

/// How a step ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum StepOutcome {
    /// It did its work.
    Done,
    /// Nothing to do (policy off, or already done by an earlier attempt).
    Skipped,
}

impl StepOutcome {
    #[must_use]
    pub fn as_str(&self) -> &'static str {
        match self {
            StepOutcome::Done => "done",
            StepOutcome::Skipped => "skipped",
        }
    }
}

/// FsOps → API, streamed while a job runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FsopsProgress {
    /// The job started (or resumed) at `step`.
    Started { job_id: i64, step: FsopsStep },
    /// `step` is about to run: journal it, so an interruption resumes here.
    StepStarted { job_id: i64, step: FsopsStep },
    /// `step` finished.
    StepFinished {
        job_id: i64,
        step: FsopsStep,
        outcome: StepOutcome,
    },
    /// The job finished; `library_path` is relative to the library root.
    Completed { job_id: i64, library_path: String },
    /// The job stopped at `step`; retrying may help (`fsops_retry`).
    Failed {
        job_id: i64,
        step: FsopsStep,
        reason: String,
    },
    /// The job's spans, sent just before `Completed` or `Failed` when the
    /// job carried a sampled `traceparent`; the API exports them (FsOps has
    /// no network, ADR 008). At most
    /// [`MAX_RELAYED_SPANS`](crate::trace::MAX_RELAYED_SPANS).
    Spans(Vec<crate::trace::SpanRecord>),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_round_trip_by_name_in_order() {
        for (i, step) in FsopsStep::ALL.into_iter().enumerate() {
            assert_eq!(FsopsStep::parse(step.as_str()), Some(step));
            if i > 0 {
                assert!(FsopsStep::ALL[i - 1] < step);
            }
        }
        assert_eq!(FsopsStep::parse("nope"), None);
    }

    #[test]
    fn a_job_round_trips_through_the_codec() {
        let job = FsopsRequest::Run(Box::new(FsopsJob {
            job_id: 7,
            torrent: TorrentId([3; 20]),
            name: "show".into(),
            source: "tv/show".into(),
            files: vec![JobFile {
                path: "show/e01.mkv".into(),
                size: 10,
            }],
            category: Some("tv".into()),
            resume_at: Some(FsopsStep::Transfer),
            attempt: 2,
            traceparent: None,
        }));
        let bytes = crate::codec::encode(&job).unwrap();
        assert_eq!(crate::codec::decode::<FsopsRequest>(&bytes).unwrap(), job);
        let done = FsopsProgress::StepFinished {
            job_id: 7,
            step: FsopsStep::Extract,
            outcome: StepOutcome::Skipped,
        };
        let bytes = crate::codec::encode(&done).unwrap();
        assert_eq!(crate::codec::decode::<FsopsProgress>(&bytes).unwrap(), done);
    }
}
