//! Why a pipeline step failed. The `Display` text becomes the `reason` of
//! `FsopsProgress::Failed`, so it names the file and the rule involved, but
//! never an absolute path outside the roots.

use std::io;

/// A step's failure.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// The job itself is malformed or names something it may not.
    #[error("invalid job: {0}")]
    InvalidJob(String),
    /// No usable policy (the `[fsops]` config was refused).
    #[error("fsops policy: {0}")]
    Policy(String),
    /// A file operation failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    /// A source file is missing or not what the job says.
    #[error("source: {0}")]
    Source(String),
    /// The library already holds something this job did not create.
    #[error("conflict: {0}")]
    Conflict(String),
    /// An archive was refused (unsafe entry, caps exceeded, unreadable).
    #[error("archive `{archive}` refused: {reason}")]
    Archive { archive: String, reason: String },
    /// Not enough free space in the library for copies.
    #[error("not enough space in the library: {needed} bytes needed, {available} available")]
    NoSpace { needed: u64, available: u64 },
}

impl StepError {
    /// Wraps an I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        StepError::Io {
            context: context.into(),
            source,
        }
    }
}

/// `Result` with a [`StepError`].
pub type StepResult<T> = Result<T, StepError>;

/// Adds context to I/O results.
pub trait IoContext<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> StepResult<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> StepResult<T> {
        self.map_err(|e| StepError::io(context(), e))
    }
}
