//! Step 6: Landlock filesystem confinement. Every filesystem access right
//! that the requested ABI knows is *handled* (denied by default); the
//! profile's read-write trees get all of them back, its read-only trees the
//! read rights (execute, read file, read dir). Network rights are not
//! handled: the engine and the API need TCP, and fsops' "no network" is a
//! seccomp rule.
//!
//! The requested ABI is pinned ([`REQUESTED_ABI`]) rather than "the newest
//! the crate knows": every ABI bump adds rights (e.g. V9's `ResolveUnix`
//! would stop the API from connecting to `run/engine.sock` unless `run/` is
//! in its profile), so moving up is a reviewed change, not a side effect of
//! `cargo update`. Compatibility is best effort: an older kernel enforces
//! what it can and the report says `partially_enforced` / `not_enforced`.

use std::path::{Path, PathBuf};

use landlock::{
    ABI, Access, AccessFs, BitFlags, CompatLevel, Compatible, LandlockStatus, PathBeneath, PathFd,
    Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus,
};

use nix::sys::stat::SFlag;

use crate::SandboxError;

/// The Landlock ABI whose filesystem rights we handle (Linux 6.10: adds
/// `IoctlDev` to V3's `Truncate` and V2's `Refer`). ABIs 6–8 add no
/// filesystem rights, so on a 6.10+ kernel this is fully enforced.
pub(crate) const REQUESTED_ABI: ABI = ABI::V5;

/// What step 6 achieved, as it goes into the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LandlockOutcome {
    /// The kernel's Landlock ABI version; `None` when Landlock is absent or
    /// disabled.
    pub abi: Option<u8>,
    /// `fully_enforced`, `partially_enforced` or `not_enforced`.
    pub status: &'static str,
}

pub(crate) fn restrict(
    read_write: &[PathBuf],
    read_only: &[PathBuf],
) -> Result<LandlockOutcome, SandboxError> {
    let abi = REQUESTED_ABI;
    let mut ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(AccessFs::from_all(abi))
        .map_err(SandboxError::Landlock)?
        .create()
        .map_err(SandboxError::Landlock)?;
    for (paths, access, kind) in [
        (read_write, AccessFs::from_all(abi), "read-write"),
        (read_only, AccessFs::from_read(abi), "read-only"),
    ] {
        for path in paths {
            if let Some(rule) = rule_for(path, access, kind) {
                ruleset = ruleset.add_rule(rule).map_err(SandboxError::Landlock)?;
            }
        }
    }
    let status = ruleset.restrict_self().map_err(SandboxError::Landlock)?;
    let outcome = LandlockOutcome {
        abi: kernel_abi(status.landlock),
        status: status_name(&status.ruleset),
    };
    match status.landlock {
        LandlockStatus::NotEnabled => {
            tracing::warn!(
                "Landlock is built into this kernel but not enabled (lsm= boot parameter); filesystem confinement is off"
            );
        }
        LandlockStatus::NotImplemented => {
            tracing::warn!("this kernel has no Landlock; filesystem confinement is off");
        }
        LandlockStatus::Available { .. } if outcome.status != "fully_enforced" => {
            tracing::warn!(abi = ?outcome.abi, status = outcome.status, "Landlock only partly enforced on this kernel");
        }
        LandlockStatus::Available { .. } => {}
    }
    Ok(outcome)
}

/// A rule for one tree, or `None` (with a warning) when the path does not
/// exist. For a non-directory, directory-only rights are masked off (the
/// kernel refuses them on files).
fn rule_for(
    path: &Path,
    access: BitFlags<AccessFs>,
    kind: &'static str,
) -> Option<PathBeneath<PathFd>> {
    let fd = match PathFd::new(path) {
        Ok(fd) => fd,
        Err(err) => {
            tracing::warn!(path = %path.display(), kind, %err, "Landlock: path skipped (cannot open)");
            return None;
        }
    };
    // Stat the opened handle, not the path again, so the check matches the rule.
    let is_dir = nix::sys::stat::fstat(&fd)
        .is_ok_and(|st| SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR);
    let access = if is_dir {
        access
    } else {
        access & AccessFs::from_file(REQUESTED_ABI)
    };
    Some(PathBeneath::new(fd, access))
}

/// The kernel's ABI number: the crate reports the ABI it will use (the lower
/// of the kernel's and its own newest) and, separately, the kernel's when
/// that is newer than anything the crate knows.
pub(crate) fn kernel_abi(status: LandlockStatus) -> Option<u8> {
    match status {
        LandlockStatus::Available {
            effective_abi,
            kernel_abi,
        } => kernel_abi
            .and_then(|v| u8::try_from(v).ok())
            .or(Some(effective_abi as u8)),
        LandlockStatus::NotEnabled | LandlockStatus::NotImplemented => None,
    }
}

pub(crate) fn status_name(status: &RulesetStatus) -> &'static str {
    match status {
        RulesetStatus::FullyEnforced => "fully_enforced",
        RulesetStatus::PartiallyEnforced => "partially_enforced",
        RulesetStatus::NotEnforced => "not_enforced",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_names_match_the_report_contract() {
        assert_eq!(status_name(&RulesetStatus::FullyEnforced), "fully_enforced");
        assert_eq!(
            status_name(&RulesetStatus::PartiallyEnforced),
            "partially_enforced"
        );
        assert_eq!(status_name(&RulesetStatus::NotEnforced), "not_enforced");
    }

    #[test]
    fn kernel_abi_prefers_the_kernels_own_number() {
        assert_eq!(kernel_abi(LandlockStatus::NotImplemented), None);
        assert_eq!(kernel_abi(LandlockStatus::NotEnabled), None);
        assert_eq!(
            kernel_abi(LandlockStatus::Available {
                effective_abi: ABI::V7,
                kernel_abi: None
            }),
            Some(7)
        );
        assert_eq!(
            kernel_abi(LandlockStatus::Available {
                effective_abi: ABI::V10,
                kernel_abi: Some(12)
            }),
            Some(12)
        );
    }

    #[test]
    fn read_only_rights_are_a_strict_subset() {
        let all = AccessFs::from_all(REQUESTED_ABI);
        let read = AccessFs::from_read(REQUESTED_ABI);
        assert!(all.contains(read) && all != read);
        assert!(!read.contains(AccessFs::WriteFile));
        assert!(all.contains(AccessFs::Truncate | AccessFs::Refer | AccessFs::IoctlDev));
    }

    #[test]
    fn missing_paths_yield_no_rule() {
        let missing = Path::new("/nonexistent/revaer-sandbox-test");
        assert!(rule_for(missing, AccessFs::from_all(REQUESTED_ABI), "read-write").is_none());
        assert!(
            rule_for(
                Path::new("/proc/self/status"),
                AccessFs::from_all(REQUESTED_ABI),
                "read-only"
            )
            .is_some()
        );
    }
}
