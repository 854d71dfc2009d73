//! FsOps: post-processing of completed torrents into the library.
//!
//! A job (`revaer_ipc::fsops::FsopsJob`) runs the pipeline
//! `validate → locate_source → prepare → transfer → extract → flatten →
//! permissions → cleanup → record` ([`pipeline`]); every step is idempotent
//! and journaled in the library's `.revaer/<info-hash>.json` ([`record`]) so
//! that an interrupted job resumes and finishes exactly once. All file work
//! goes through directories opened once ([`roots`], `cap-std`), so no name a
//! torrent or an archive chose can leave them. [`service`] schedules jobs
//! and streams their progress over the data channel; [`policy`] turns the
//! `[fsops]` config into what the steps need. Design: ADR 007.

pub mod cleanup;
pub mod error;
pub mod extract;
pub mod metrics;
pub mod pipeline;
pub mod plan;
pub mod policy;
pub mod record;
pub mod roots;
pub mod service;
pub mod spans;

pub use service::FsopsService;
pub mod transfer;

pub use error::StepError;
pub use pipeline::{CrashPoint, Emit, JobOutcome, RunEnv, run_job};
pub use policy::Policy;
pub use roots::Roots;

/// Exit code of an FsOps process that stops so the supervisor restarts it
/// under a new sandbox (`library_root` or ownership settings changed).
/// The supervisor restarts every worker that exits without being asked to;
/// this code (sysexits' `EX_CONFIG`) only tells the logs why.
pub const EXIT_RESTART_FOR_CONFIG: u8 = 78;
