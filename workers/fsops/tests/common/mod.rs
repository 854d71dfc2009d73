//! Shared helpers of the FsOps integration tests: a data dir in a temp
//! folder, jobs for files written there, a runner that collects progress,
//! archive fixtures built with the same crates FsOps reads them with
//! (no binary fixtures in the tree), and a tree snapshot for comparisons.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    dead_code,
    reason = "test helpers"
)]

use std::collections::BTreeMap;
use std::io::Write as _;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use revaer_config::{DataLayout, FsopsConfig};
use revaer_fsops::metrics::FsopsMetrics;
use revaer_fsops::{CrashPoint, JobOutcome, Policy, RunEnv, run_job};
use revaer_ipc::engine::TorrentId;
use revaer_ipc::fsops::{FsopsJob, FsopsProgress, FsopsStep, JobFile};

/// A data dir with `downloads/` and `library/`.
pub struct Fixture {
    pub tmp: tempfile::TempDir,
    pub layout: DataLayout,
    pub config: FsopsConfig,
}

impl Fixture {
    pub fn new() -> Self {
        Self::in_dir(std::env::temp_dir().as_path())
    }

    pub fn in_dir(parent: &Path) -> Self {
        let tmp = tempfile::tempdir_in(parent).unwrap();
        let layout = DataLayout::new(tmp.path().join("data"));
        std::fs::create_dir_all(layout.downloads()).unwrap();
        std::fs::create_dir_all(layout.library()).unwrap();
        Self {
            tmp,
            layout,
            config: FsopsConfig::default(),
        }
    }

    pub fn downloads(&self) -> PathBuf {
        self.layout.downloads()
    }

    pub fn library(&self) -> PathBuf {
        self.config.effective_library_root(&self.layout)
    }

    /// Writes a downloaded file (relative to the downloads dir).
    pub fn write(&self, rel: &str, data: &[u8]) {
        let path = self.downloads().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, data).unwrap();
    }

    pub fn policy(&self) -> Policy {
        Policy::from_config(&self.config, &self.layout, true).unwrap()
    }

    /// A job for torrent `name` saved in `save` (may be ""), listing the
    /// files now present under it.
    pub fn job(&self, id: u8, save: &str, name: &str) -> FsopsJob {
        let save_dir = self.downloads().join(save);
        let top = save_dir.join(name);
        let mut files = Vec::new();
        if top.is_file() {
            files.push(JobFile {
                path: name.to_owned(),
                size: std::fs::metadata(&top).unwrap().len(),
            });
        } else {
            for path in files_under(&top) {
                let rel = path.strip_prefix(&save_dir).unwrap();
                files.push(JobFile {
                    path: rel.to_string_lossy().into_owned(),
                    size: std::fs::metadata(&path).unwrap().len(),
                });
            }
        }
        let source = if save.is_empty() {
            name.to_owned()
        } else {
            format!("{save}/{name}")
        };
        FsopsJob {
            job_id: i64::from(id),
            torrent: TorrentId([id; 20]),
            name: name.to_owned(),
            source,
            files,
            category: None,
            resume_at: None,
            attempt: 1,
            traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
        }
    }

    /// Runs `job` to its end (or the crash point) with this fixture's config.
    pub fn run(&self, job: &FsopsJob, crash_at: Option<CrashPoint>) -> Run {
        let policy = self.policy();
        let metrics = FsopsMetrics::new();
        let stop = AtomicBool::new(false);
        let mut frames = Vec::new();
        let downloads = self.downloads();
        let outcome = run_job(
            job,
            &RunEnv {
                policy: &policy,
                downloads: &downloads,
                metrics: &metrics,
                stop: &stop,
                crash_at,
            },
            &mut |p: FsopsProgress| frames.push(p),
        );
        Run {
            outcome,
            frames,
            metrics: metrics.render(),
        }
    }
}

pub struct Run {
    pub outcome: JobOutcome,
    pub frames: Vec<FsopsProgress>,
    pub metrics: String,
}

impl Run {
    pub fn completed(&self) -> usize {
        self.frames
            .iter()
            .filter(|f| matches!(f, FsopsProgress::Completed { .. }))
            .count()
    }

    pub fn failed(&self) -> Option<(FsopsStep, String)> {
        match &self.outcome {
            JobOutcome::Failed { step, reason } => Some((*step, reason.clone())),
            _ => None,
        }
    }

    pub fn library_path(&self) -> String {
        match &self.outcome {
            JobOutcome::Completed { library_path } | JobOutcome::AlreadyDone { library_path } => {
                library_path.clone()
            }
            other => panic!("not completed: {other:?}"),
        }
    }
}

/// Every regular file beneath `dir`, sorted.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let entry = entry.unwrap();
            let ft = entry.file_type().unwrap();
            if ft.is_dir() {
                stack.push(entry.path());
            } else if ft.is_file() {
                out.push(entry.path());
            }
        }
    }
    out.sort();
    out
}

/// `relative path → (kind, mode, content)` of everything beneath `dir`
/// (symlinks not followed), `.revaer` excluded.
pub fn snapshot(dir: &Path) -> BTreeMap<String, (char, u32, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            let rel = path
                .strip_prefix(dir)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if rel.starts_with(".revaer") {
                continue;
            }
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let mode = meta.permissions().mode() & 0o7777;
            if meta.is_dir() {
                out.insert(rel, ('d', mode, Vec::new()));
                stack.push(path);
            } else if meta.is_file() {
                out.insert(rel, ('f', mode, std::fs::read(&path).unwrap()));
            } else {
                out.insert(rel, ('l', 0, Vec::new()));
            }
        }
    }
    out
}

pub fn ino(path: &Path) -> (u64, u64) {
    let m = std::fs::metadata(path).unwrap();
    (m.dev(), m.ino())
}

pub fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o7777
}

/// Pseudo-random bytes that do not compress (a tiny xorshift).
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[3]
        })
        .collect()
}

// ----- archive fixtures -------------------------------------------------

/// A zip of `(name, data)` entries (deflated).
pub fn zip_bytes(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .unix_permissions(0o644);
    for (name, data) in entries {
        if let Some(dir) = name.strip_suffix('/') {
            zip.add_directory(dir, options).unwrap();
        } else {
            zip.start_file(*name, options).unwrap();
            zip.write_all(data).unwrap();
        }
    }
    zip.finish().unwrap().into_inner()
}

/// A zip holding a symlink `name → target`, then a file.
pub fn zip_with_symlink(name: &str, target: &str) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default();
    zip.add_symlink(name, target, options).unwrap();
    zip.start_file("after.dat", options).unwrap();
    zip.write_all(b"after").unwrap();
    zip.finish().unwrap().into_inner()
}

/// A plain tar of `(name, data)` files, with names written raw (so that
/// `..` and absolute names can be built for refusal tests).
pub fn tar_bytes(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, data) in entries {
        let mut header = tar::Header::new_gnu();
        raw_name(&mut header, name);
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_cksum();
        builder.append(&header, *data).unwrap();
    }
    builder.into_inner().unwrap()
}

fn raw_name(header: &mut tar::Header, name: &str) {
    let field = &mut header.as_old_mut().name;
    field.fill(0);
    field[..name.len()].copy_from_slice(name.as_bytes());
}

/// A tar with one special entry (`kind`) named `name`, optionally linking
/// to `link`, then an ordinary file `name/inner`.
pub fn tar_special(kind: tar::EntryType, name: &str, link: &str) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    raw_name(&mut header, name);
    header.set_size(0);
    header.set_mode(0o777);
    header.set_entry_type(kind);
    if !link.is_empty() {
        header.set_link_name(link).unwrap();
    }
    header.set_cksum();
    builder.append(&header, std::io::empty()).unwrap();
    let mut file = tar::Header::new_gnu();
    raw_name(&mut file, &format!("{name}/inner"));
    file.set_size(5);
    file.set_mode(0o644);
    file.set_cksum();
    builder.append(&file, &b"inner"[..]).unwrap();
    builder.into_inner().unwrap()
}

pub fn zstd_bytes(data: &[u8]) -> Vec<u8> {
    zstd::encode_all(data, 3).unwrap()
}

pub fn gzip_bytes(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

pub fn xz_bytes(data: &[u8]) -> Vec<u8> {
    let mut e = liblzma::write::XzEncoder::new(Vec::new(), 6);
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

pub fn bzip2_bytes(data: &[u8]) -> Vec<u8> {
    let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// A 7z of `(name, data)` files.
pub fn sevenz_bytes(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut writer = sevenz_rust2::ArchiveWriter::new(std::io::Cursor::new(Vec::new())).unwrap();
    for (name, data) in entries {
        writer
            .push_archive_entry(sevenz_rust2::ArchiveEntry::new_file(name), Some(*data))
            .unwrap();
    }
    writer.finish().unwrap().into_inner()
}
