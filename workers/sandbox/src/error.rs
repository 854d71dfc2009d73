//! The one error type of the sandbox: a variant per step of [`crate::apply`],
//! each naming the step, so a worker that fails to start says exactly which
//! restriction it could not put in place.

/// Why [`crate::apply`] could not finish. A worker should log it and exit
/// non-zero: a half-applied sandbox is not something to run with.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// `apply` was called a second time in this process.
    #[error("sandbox: already applied in this process")]
    AlreadyApplied,

    /// Preflight: the process must still be single-threaded (capabilities and
    /// Landlock are per-thread; seccomp uses TSYNC but the rest does not).
    #[error(
        "sandbox preflight: the process has {threads} threads; apply the sandbox before starting any thread or runtime"
    )]
    NotSingleThreaded { threads: usize },

    /// Preflight: `/proc/self/task` could not be read.
    #[error("sandbox preflight: cannot count threads in /proc/self/task: {0}")]
    Preflight(#[source] std::io::Error),

    /// Step 1: `/proc/self/fd` could not be listed.
    #[error("sandbox step 1 (close inherited fds): cannot list /proc/self/fd: {0}")]
    CloseFds(#[source] nix::Error),

    /// Step 2: umask / `RLIMIT_CORE` / `PR_SET_DUMPABLE`.
    #[error("sandbox step 2 (process hygiene: {what}): {source}")]
    Hygiene {
        what: &'static str,
        #[source]
        source: nix::Error,
    },

    /// Step 3: `setgroups` / `setgid` / `setuid` or their verification.
    #[error("sandbox step 3 (identity switch: {what}): {source}")]
    Identity {
        what: &'static str,
        #[source]
        source: nix::Error,
    },

    /// Step 4: bounding / ambient / inheritable / permitted / effective sets.
    #[error("sandbox step 4 (capabilities: {what}): {source}")]
    Capabilities {
        what: &'static str,
        #[source]
        source: caps::errors::CapsError,
    },

    /// Step 5: `prctl(PR_SET_NO_NEW_PRIVS)`.
    #[error("sandbox step 5 (no_new_privs): {0}")]
    NoNewPrivs(#[source] nix::Error),

    /// Step 6: building or enforcing the Landlock ruleset. A kernel without
    /// Landlock is *not* an error (best effort, reported as `not_enforced`).
    #[error("sandbox step 6 (landlock): {0}")]
    Landlock(#[source] landlock::RulesetError),

    /// Step 7: building or installing a seccomp filter.
    #[error("sandbox step 7 (seccomp: {what}): {source}")]
    Seccomp {
        what: &'static str,
        #[source]
        source: seccompiler::Error,
    },
}
