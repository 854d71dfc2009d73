//! The `[fsops]` config turned into what the pipeline needs: resolved
//! library root, compiled cleanup globs, modes, ownership, archive caps.
//!
//! A [`Policy`] is immutable; a config push builds a new one and swaps it in
//! only if it is valid (an invalid one is refused with its reason and the
//! old policy stays). Running jobs keep the policy they started with.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use revaer_config::{DataLayout, FsopsConfig, MoveMode};

use crate::cleanup::Cleanup;
use crate::roots::RelPath;

/// Caps on what one archive may unpack to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtractCaps {
    pub max_bytes: u64,
    pub max_entries: u64,
    pub max_ratio: u64,
}

/// A validated FsOps policy.
#[derive(Debug, Clone)]
pub struct Policy {
    pub library_root: PathBuf,
    pub move_mode: MoveMode,
    pub extract: bool,
    pub keep_archives: bool,
    pub flatten: bool,
    pub file_mode: Option<u32>,
    pub dir_mode: Option<u32>,
    pub umask: u32,
    pub owner: Option<u32>,
    pub group: Option<u32>,
    pub cleanup: Cleanup,
    pub category_paths: BTreeMap<String, RelPath>,
    pub caps: ExtractCaps,
}

/// What of a policy shapes FsOps' sandbox; when it changes, FsOps restarts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxKey {
    pub library_root: PathBuf,
    pub chown: bool,
}

impl SandboxKey {
    #[must_use]
    pub fn of(config: &FsopsConfig, layout: &DataLayout) -> Self {
        Self {
            library_root: config.effective_library_root(layout),
            chown: config.wants_chown(),
        }
    }
}

impl Policy {
    /// Builds a policy for the data dir `layout`. `can_chown`: whether this
    /// process holds `CAP_CHOWN` (owner/group are refused otherwise).
    pub fn from_config(
        config: &FsopsConfig,
        layout: &DataLayout,
        can_chown: bool,
    ) -> Result<Self, String> {
        config.validate(None).map_err(|e| e.to_string())?;
        let library_root = config.effective_library_root(layout);
        let downloads = layout.downloads();
        if !config.allowed_roots.is_empty()
            && !config
                .allowed_roots
                .iter()
                .any(|a| library_root.starts_with(a))
        {
            return Err(format!(
                "library {} is not beneath any of fsops.allowed_roots",
                library_root.display()
            ));
        }
        if overlaps(&library_root, &downloads) {
            return Err(format!(
                "library {} and downloads {} may not contain one another",
                library_root.display(),
                downloads.display()
            ));
        }
        if config.wants_chown() && !can_chown {
            return Err(
                "fsops.owner/group need CAP_CHOWN, which this FsOps process does not hold \
                 (the daemon must run as root)"
                    .to_owned(),
            );
        }
        let cleanup = Cleanup::new(&config.cleanup_keep, &config.cleanup_drop)?;
        let mut category_paths = BTreeMap::new();
        for (category, sub) in &config.category_paths {
            let rel = RelPath::parse(sub)
                .map_err(|e| format!("fsops.category_paths `{category}`: {e}"))?;
            category_paths.insert(category.clone(), rel);
        }
        Ok(Self {
            library_root,
            move_mode: config.move_mode,
            extract: config.extract,
            keep_archives: config.keep_archives,
            flatten: config.flatten,
            file_mode: config.file_mode().map_err(|e| e.to_string())?,
            dir_mode: config.dir_mode().map_err(|e| e.to_string())?,
            umask: config.umask_bits().map_err(|e| e.to_string())?,
            owner: config.owner,
            group: config.group,
            cleanup,
            category_paths,
            caps: ExtractCaps {
                max_bytes: config.max_extract_bytes,
                max_entries: u64::from(config.max_extract_entries),
                max_ratio: u64::from(config.max_compression_ratio),
            },
        })
    }

    /// The mode a library file gets, given its current mode: `chmod_file`,
    /// or `0666 & !umask` (`0777` when it is executable).
    #[must_use]
    pub fn file_mode_for(&self, current: u32) -> u32 {
        self.file_mode.unwrap_or_else(|| {
            let base = if current & 0o111 == 0 { 0o666 } else { 0o777 };
            base & !self.umask
        })
    }

    /// The mode a library directory gets.
    #[must_use]
    pub fn dir_mode(&self) -> u32 {
        self.dir_mode.unwrap_or(0o777 & !self.umask)
    }

    /// Whether ownership is changed.
    #[must_use]
    pub fn chown(&self) -> bool {
        self.owner.is_some() || self.group.is_some()
    }

    /// The library sub-path for a category (the root when unmapped).
    #[must_use]
    pub fn category_dir(&self, category: Option<&str>) -> RelPath {
        category
            .and_then(|c| self.category_paths.get(c))
            .cloned()
            .unwrap_or_default()
    }
}

fn overlaps(a: &Path, b: &Path) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

/// Whether this process may change file ownership.
#[must_use]
pub fn process_can_chown() -> bool {
    revaer_sandbox::caps::has_cap(
        None,
        revaer_sandbox::caps::CapSet::Effective,
        revaer_sandbox::Capability::CAP_CHOWN,
    )
    .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> DataLayout {
        DataLayout::new("/data")
    }

    #[test]
    fn defaults_make_a_policy() {
        let p = Policy::from_config(&FsopsConfig::default(), &layout(), false).unwrap();
        assert_eq!(p.library_root, PathBuf::from("/data/library"));
        assert_eq!(p.move_mode, MoveMode::Hardlink);
        assert_eq!(p.file_mode_for(0o600), 0o644);
        assert_eq!(p.file_mode_for(0o700), 0o755);
        assert_eq!(p.dir_mode(), 0o755);
        assert!(p.category_dir(Some("tv")).is_root());
    }

    #[test]
    fn refusals_name_the_problem() {
        let cfg = FsopsConfig {
            cleanup_drop: vec!["a[".to_owned()],
            ..FsopsConfig::default()
        };
        assert!(
            Policy::from_config(&cfg, &layout(), true)
                .unwrap_err()
                .contains("cleanup_drop")
        );
        let cfg = FsopsConfig {
            owner: Some(1000),
            ..FsopsConfig::default()
        };
        assert!(
            Policy::from_config(&cfg, &layout(), false)
                .unwrap_err()
                .contains("CAP_CHOWN")
        );
        assert!(Policy::from_config(&cfg, &layout(), true).is_ok());
        let cfg = FsopsConfig {
            library_root: Some("/data/downloads/lib".into()),
            ..FsopsConfig::default()
        };
        assert!(
            Policy::from_config(&cfg, &layout(), true)
                .unwrap_err()
                .contains("one another")
        );
        let cfg = FsopsConfig {
            allowed_roots: vec!["/srv".into()],
            ..FsopsConfig::default()
        };
        assert!(
            Policy::from_config(&cfg, &layout(), true)
                .unwrap_err()
                .contains("allowed_roots")
        );
    }

    #[test]
    fn sandbox_key_tracks_root_and_chown_only() {
        let a = FsopsConfig::default();
        let b = FsopsConfig {
            extract: false,
            ..FsopsConfig::default()
        };
        let c = FsopsConfig {
            library_root: Some("/srv/lib".into()),
            ..FsopsConfig::default()
        };
        let d = FsopsConfig {
            group: Some(100),
            ..FsopsConfig::default()
        };
        assert_eq!(SandboxKey::of(&a, &layout()), SandboxKey::of(&b, &layout()));
        assert_ne!(SandboxKey::of(&a, &layout()), SandboxKey::of(&c, &layout()));
        assert_ne!(SandboxKey::of(&a, &layout()), SandboxKey::of(&d, &layout()));
    }
}
