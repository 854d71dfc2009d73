//! The `validate` step: checks a job from the API (which relays what a
//! torrent chose, so treats it as hostile) and turns it into a [`Plan`]
//! of relative paths.
//!
//! Bounds: at most `MAX_JOB_FILES` files, paths at most
//! `MAX_JOB_PATH_BYTES`, plain names only. A torrent's `name` is one
//! component; every file lies beneath it (multi-file) or is it
//! (single-file); `source` is the save sub-directory joined with `name`.

use std::collections::BTreeSet;

use revaer_ipc::engine::TorrentId;
use revaer_ipc::fsops::{FsopsJob, MAX_JOB_FILES, MAX_JOB_PATH_BYTES};

use crate::error::StepError;
use crate::policy::Policy;
use crate::roots::{RESERVED_PREFIX, RelPath};

/// Longest category name.
const MAX_CATEGORY_BYTES: usize = 255;

/// One file to bring into the library.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedFile {
    /// Relative to the save dir (starts with the torrent's name).
    pub rel: RelPath,
    pub size: u64,
}

/// A validated job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub torrent: TorrentId,
    /// 40 hex digits: names the job's record.
    pub hash: String,
    pub name: String,
    /// Save dir, relative to the downloads dir (may be the root).
    pub save_dir: RelPath,
    pub files: Vec<PlannedFile>,
    /// The torrent is one file named `name`.
    pub single_file: bool,
    /// Library directory the item goes into (category sub-path).
    pub dest_parent: RelPath,
    pub total_bytes: u64,
}

impl Plan {
    /// The item in the library: `dest_parent/name`.
    #[must_use]
    pub fn item(&self) -> RelPath {
        self.dest_parent
            .join(&RelPath::parse(&self.name).unwrap_or_default())
    }

    /// Where a file is in the downloads dir.
    #[must_use]
    pub fn source_of(&self, file: &PlannedFile) -> RelPath {
        self.save_dir.join(&file.rel)
    }

    /// Where a file goes in the library, below `dest_parent`.
    #[must_use]
    pub fn dest_of(&self, dest_parent: &RelPath, file: &PlannedFile) -> RelPath {
        dest_parent.join(&file.rel)
    }
}

fn invalid(reason: impl Into<String>) -> StepError {
    StepError::InvalidJob(reason.into())
}

/// Validates `job` against `policy`.
pub fn plan(job: &FsopsJob, policy: &Policy) -> Result<Plan, StepError> {
    let name = &job.name;
    if name.is_empty() || name.len() > 255 || name.contains('/') || name.contains('\0') {
        return Err(invalid(
            "name must be one file or folder name of 1 to 255 bytes",
        ));
    }
    if name == "." || name == ".." || name.starts_with(RESERVED_PREFIX) {
        return Err(invalid(format!("name `{name}` is not allowed")));
    }
    let source =
        RelPath::parse_non_empty(&job.source).map_err(|e| invalid(format!("source: {e}")))?;
    if source.file_name() != *name {
        return Err(invalid(format!(
            "source `{}` does not end with the torrent's name",
            job.source
        )));
    }
    let save_dir = source.parent();
    if job.files.is_empty() || job.files.len() > MAX_JOB_FILES {
        return Err(invalid(format!(
            "a job lists 1 to {MAX_JOB_FILES} files, not {}",
            job.files.len()
        )));
    }
    let name_path = RelPath::parse_non_empty(name).map_err(invalid)?;
    let single_file = job.files.len() == 1 && job.files[0].path == *name;
    let mut seen = BTreeSet::new();
    let mut files = Vec::with_capacity(job.files.len());
    let mut total_bytes: u64 = 0;
    for file in &job.files {
        if file.path.len() > MAX_JOB_PATH_BYTES {
            return Err(invalid(format!(
                "a file path is longer than {MAX_JOB_PATH_BYTES} bytes"
            )));
        }
        let rel =
            RelPath::parse_non_empty(&file.path).map_err(|e| invalid(format!("file: {e}")))?;
        let inside = rel
            .strip_prefix(&name_path)
            .is_some_and(|rest| !rest.is_root());
        if !single_file && !inside {
            return Err(invalid(format!(
                "file `{}` is not inside the torrent's folder `{name}`",
                file.path
            )));
        }
        if rel
            .as_path()
            .components()
            .any(|c| c.as_os_str().to_string_lossy().starts_with(RESERVED_PREFIX))
        {
            return Err(invalid(format!(
                "file `{}` uses the reserved prefix {RESERVED_PREFIX}",
                file.path
            )));
        }
        if !seen.insert(rel.clone()) {
            return Err(invalid(format!("file `{}` is listed twice", file.path)));
        }
        total_bytes = total_bytes
            .checked_add(file.size)
            .ok_or_else(|| invalid("file sizes overflow"))?;
        files.push(PlannedFile {
            rel,
            size: file.size,
        });
    }
    // A file may not also be a folder of another (`a` and `a/b`).
    for file in &files {
        let mut parent = file.rel.parent();
        while !parent.is_root() {
            if seen.contains(&parent) {
                return Err(invalid(format!("`{parent}` is both a file and a folder")));
            }
            parent = parent.parent();
        }
    }
    if let Some(category) = &job.category
        && (category.len() > MAX_CATEGORY_BYTES || category.contains('\0'))
    {
        return Err(invalid("category longer than 255 bytes"));
    }
    Ok(Plan {
        torrent: job.torrent,
        hash: job.torrent.to_string(),
        name: name.clone(),
        save_dir,
        files,
        single_file,
        dest_parent: policy.category_dir(job.category.as_deref()),
        total_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use revaer_config::{DataLayout, FsopsConfig};
    use revaer_ipc::fsops::JobFile;

    fn policy() -> Policy {
        let mut cfg = FsopsConfig::default();
        cfg.category_paths.insert("tv".into(), "TV/Shows".into());
        Policy::from_config(&cfg, &DataLayout::new("/data"), false).unwrap()
    }

    fn job(name: &str, source: &str, files: &[&str]) -> FsopsJob {
        FsopsJob {
            job_id: 1,
            torrent: TorrentId([0xab; 20]),
            name: name.into(),
            source: source.into(),
            files: files
                .iter()
                .map(|p| JobFile {
                    path: (*p).into(),
                    size: 3,
                })
                .collect(),
            category: Some("tv".into()),
            resume_at: None,
            attempt: 1,
            traceparent: None,
        }
    }

    #[test]
    fn a_multi_file_job_plans_into_its_category() {
        let p = plan(
            &job("Show", "tv/Show", &["Show/a.mkv", "Show/sub/b.srt"]),
            &policy(),
        )
        .unwrap();
        assert_eq!(p.save_dir.display(), "tv");
        assert_eq!(p.item().display(), "TV/Shows/Show");
        assert!(!p.single_file);
        assert_eq!(p.total_bytes, 6);
        assert_eq!(p.source_of(&p.files[1]).display(), "tv/Show/sub/b.srt");
        let single = plan(&job("film.mkv", "film.mkv", &["film.mkv"]), &policy()).unwrap();
        assert!(single.single_file);
        assert!(single.save_dir.is_root());
    }

    #[test]
    fn crafted_jobs_are_refused() {
        let p = policy();
        for bad in [
            job("Show", "/etc", &["Show/a"]),
            job("Show", "../Show", &["Show/a"]),
            job("Show", "x/../../Show", &["Show/a"]),
            job("Show", "Show", &["Show/../../etc/passwd"]),
            job("Show", "Show", &["/etc/passwd"]),
            job("Show", "Show", &["Other/a"]),
            job("Show", "Show", &["Show/a", "Show/a"]),
            job("Show", "Show", &["Show/a", "Show/a/b"]),
            job("Show", "Show", &["Show/.revaer/x"]),
            job("..", "..", &["../a"]),
            job("a/b", "a/b", &["a/b/c"]),
            job("Show", "Other", &["Show/a"]),
            job("", "", &[]),
            job("Show", "Show", &[]),
        ] {
            assert!(
                matches!(plan(&bad, &p), Err(StepError::InvalidJob(_))),
                "{bad:?}"
            );
        }
        let mut many = job("S", "S", &[]);
        many.files = (0..=MAX_JOB_FILES)
            .map(|i| JobFile {
                path: format!("S/{i}"),
                size: 1,
            })
            .collect();
        assert!(plan(&many, &p).is_err());
    }
}
