//! The `transfer` step for one file: hard link, copy or move from the
//! downloads dir into the library, each idempotent.
//!
//! Copies are written to a temporary name in the destination folder,
//! `fsync`ed and renamed into place, so a file at its final name is always
//! complete: a resumed transfer treats an existing destination of the right
//! size (or the same inode, for links) as done. `copy_file_range` does the
//! copying (through `std::io::copy`), so the kernel moves the bytes and
//! reflinks them where the filesystem can. A hard link or rename across
//! filesystems (`EXDEV`) falls back to a copy (and, for `move`, deleting
//! the source once the copy is in place).

use std::io;

use cap_std::fs::{Dir, MetadataExt as _, Permissions, PermissionsExt as _};
use revaer_config::MoveMode;

use crate::error::{IoContext as _, StepError, StepResult};
use crate::roots::{RelPath, lstat, open_file_nofollow};

/// How a file reached the library.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// An earlier attempt already put it there.
    AlreadyThere,
    Linked,
    Copied,
    Renamed,
}

impl Method {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Method::AlreadyThere => "already_there",
            Method::Linked => "link",
            Method::Copied => "copy",
            Method::Renamed => "rename",
        }
    }
}

/// One file to bring over.
#[derive(Debug)]
pub struct FileMove<'a> {
    pub downloads: &'a Dir,
    pub library: &'a Dir,
    pub src: &'a RelPath,
    pub dst: &'a RelPath,
    pub size: u64,
    /// Temporary name for a copy, unique to the job and file.
    pub tmp_name: &'a str,
}

fn is_cross_device(e: &io::Error) -> bool {
    e.raw_os_error() == Some(nix::libc::EXDEV)
}

/// Brings one file into the library with `mode`.
pub fn transfer_file(f: &FileMove<'_>, mode: MoveMode) -> StepResult<Method> {
    let src_meta = lstat(f.downloads, f.src).ctx(|| format!("inspecting {}", f.src))?;
    let dst_meta = lstat(f.library, f.dst).ctx(|| format!("inspecting library {}", f.dst))?;
    if let Some(dst) = &dst_meta {
        if !dst.is_file() {
            return Err(StepError::Conflict(format!(
                "library {} exists and is not a regular file",
                f.dst
            )));
        }
        let same_inode = src_meta
            .as_ref()
            .is_some_and(|s| s.dev() == dst.dev() && s.ino() == dst.ino());
        if !same_inode && dst.len() != f.size {
            return Err(StepError::Conflict(format!(
                "library {} exists with {} bytes, the torrent's file has {}",
                f.dst,
                dst.len(),
                f.size
            )));
        }
        // Done earlier; a `move` may still have to drop its source (a copy
        // across filesystems finished, then the process died).
        if mode == MoveMode::Move && src_meta.is_some() {
            f.downloads
                .remove_file(f.src.as_path())
                .ctx(|| format!("removing moved source {}", f.src))?;
        }
        return Ok(Method::AlreadyThere);
    }
    let Some(src) = src_meta else {
        return Err(StepError::Source(format!("{} is missing", f.src)));
    };
    if !src.is_file() || src.len() != f.size {
        return Err(StepError::Source(format!(
            "{} is not a regular file of {} bytes",
            f.src, f.size
        )));
    }
    match mode {
        MoveMode::Hardlink => {
            match f
                .downloads
                .hard_link(f.src.as_path(), f.library, f.dst.as_path())
            {
                Ok(()) => Ok(Method::Linked),
                Err(e) if is_cross_device(&e) => copy_file(f).map(|()| Method::Copied),
                Err(e) => Err(StepError::io(format!("linking {}", f.dst), e)),
            }
        }
        MoveMode::Copy => copy_file(f).map(|()| Method::Copied),
        MoveMode::Move => match f
            .downloads
            .rename(f.src.as_path(), f.library, f.dst.as_path())
        {
            Ok(()) => Ok(Method::Renamed),
            Err(e) if is_cross_device(&e) => {
                copy_file(f)?;
                f.downloads
                    .remove_file(f.src.as_path())
                    .ctx(|| format!("removing moved source {}", f.src))?;
                Ok(Method::Copied)
            }
            Err(e) => Err(StepError::io(format!("moving {}", f.dst), e)),
        },
    }
}

/// Copies `src` to `dst` through a temporary file in `dst`'s folder.
fn copy_file(f: &FileMove<'_>) -> StepResult<()> {
    let tmp = f
        .dst
        .parent()
        .child(f.tmp_name)
        .map_err(|e| StepError::io("temporary name", io::Error::other(e)))?;
    let result = (|| -> io::Result<()> {
        let src = open_file_nofollow(f.downloads, f.src)?;
        let executable = src.metadata()?.permissions().mode() & 0o100 != 0;
        let mut src = src.into_std();
        let mut out = f.library.create(tmp.as_path())?.into_std();
        let copied = io::copy(&mut src, &mut out)?;
        if copied != f.size {
            return Err(io::Error::other(format!(
                "copied {copied} bytes, expected {} (the source changed)",
                f.size
            )));
        }
        if executable {
            out.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
        }
        out.sync_all()?;
        f.library.rename(tmp.as_path(), f.library, f.dst.as_path())
    })();
    if result.is_err() {
        let _ = f.library.remove_file(tmp.as_path());
    }
    result.ctx(|| format!("copying {} to library {}", f.src, f.dst))
}

/// Removes the empty folders beneath and including `top` in `dir`
/// (after a `move`), deepest first; anything non-empty stays.
pub fn remove_empty_dirs(dir: &Dir, top: &RelPath) {
    let Ok(entries) = crate::roots::walk(dir, top, false) else {
        return;
    };
    for entry in entries.iter().rev() {
        if entry.kind == crate::roots::EntryKind::Dir {
            let _ = dir.remove_dir(top.join(&entry.path).as_path());
        }
    }
    if !top.is_root() {
        let _ = dir.remove_dir(top.as_path());
    }
}

/// Sets `mode` on a file or folder beneath `dir` without following a
/// final symlink (callers walked it as a real file or folder).
pub fn set_mode(dir: &Dir, path: &RelPath, mode: u32) -> io::Result<()> {
    dir.set_permissions(path.for_open(), Permissions::from_mode(mode))
}
