//! Identity of this build: crate version and git revision.
//!
//! The build id is part of every IPC handshake; a worker binary from another
//! build (a half-finished upgrade, a stale file) is refused rather than
//! trusted to speak the same dialect.

/// Semantic version of the workspace.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Short git revision at build time, or `unknown`.
pub const GIT_REVISION: &str = env!("REVAER_GIT_REVISION");

/// `VERSION+GIT_REVISION`, compared at every handshake.
#[must_use]
pub fn build_id() -> String {
    format!("{VERSION}+{GIT_REVISION}")
}
