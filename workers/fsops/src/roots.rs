//! The two directories FsOps works in, opened once per job, and the
//! relative paths it may use inside them.
//!
//! Every file operation is relative to a [`cap_std::fs::Dir`]: on Linux
//! `cap-std` resolves with `openat2(RESOLVE_BENEATH)` (or an equivalent
//! component-by-component walk on older kernels), so `..`, absolute names
//! and symlinks can never reach outside a root, whatever a job or an archive
//! names. [`RelPath`] refuses such names even earlier, with a clear reason.
//! Tree walks never follow symlinks and are depth-bounded.

use std::io;
use std::path::{Component, Path, PathBuf};

use cap_std::ambient_authority;
use cap_std::fs::{Dir, File, Metadata, OpenOptions, OpenOptionsExt};
use revaer_ipc::fsops::MAX_JOB_PATH_BYTES;

/// Longest single path component (Linux `NAME_MAX`).
pub const MAX_NAME_BYTES: usize = 255;
/// Deepest directory nesting FsOps walks into.
pub const MAX_DEPTH: usize = 128;
/// Prefix of FsOps' own temporary and reserved names; a torrent or archive
/// entry may not use it.
pub const RESERVED_PREFIX: &str = ".revaer";

/// The downloads dir (read, and written only by `move`) and the library.
#[derive(Debug)]
pub struct Roots {
    pub downloads: Dir,
    pub library: Dir,
}

impl Roots {
    /// Opens both roots. The only ambient (absolute-path) opens FsOps makes.
    pub fn open(downloads: &Path, library: &Path) -> io::Result<Self> {
        Ok(Self {
            downloads: Dir::open_ambient_dir(downloads, ambient_authority())?,
            library: Dir::open_ambient_dir(library, ambient_authority())?,
        })
    }
}

/// A path relative to a root: plain names only (no `.`, `..`, root or
/// empty components), no NUL, each name at most 255 bytes, the whole at
/// most [`MAX_JOB_PATH_BYTES`]. May be empty (the root itself).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct RelPath(PathBuf);

impl RelPath {
    /// The root itself.
    #[must_use]
    pub fn root() -> Self {
        Self(PathBuf::new())
    }

    /// Parses a `/`-separated relative path. A leading `./` and repeated
    /// or trailing `/` are tolerated (archives write them); everything else
    /// that is not a plain name is refused.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.len() > MAX_JOB_PATH_BYTES {
            return Err(format!("path longer than {MAX_JOB_PATH_BYTES} bytes"));
        }
        if text.contains('\0') {
            return Err("path contains a NUL byte".to_owned());
        }
        if text.starts_with('/') {
            return Err(format!("`{text}` is absolute"));
        }
        let mut out = PathBuf::new();
        for (i, part) in text.split('/').enumerate() {
            match part {
                "" => {}
                "." if i == 0 => {}
                "." | ".." => return Err(format!("`{text}` contains `{part}`")),
                name => {
                    if name.len() > MAX_NAME_BYTES {
                        return Err(format!("a name in `{text}` is longer than 255 bytes"));
                    }
                    out.push(name);
                }
            }
        }
        Ok(Self(out))
    }

    /// Like [`RelPath::parse`], and the path must name something.
    pub fn parse_non_empty(text: &str) -> Result<Self, String> {
        let path = Self::parse(text)?;
        if path.is_root() {
            return Err(format!("`{text}` names no file"));
        }
        Ok(path)
    }

    /// Checks an already built path component by component.
    pub fn from_path(path: &Path) -> Result<Self, String> {
        let mut out = PathBuf::new();
        for component in path.components() {
            match component {
                Component::Normal(name) if name.len() <= MAX_NAME_BYTES => out.push(name),
                _ => return Err(format!("`{}` is not a plain relative path", path.display())),
            }
        }
        if out.as_os_str().len() > MAX_JOB_PATH_BYTES {
            return Err(format!("path longer than {MAX_JOB_PATH_BYTES} bytes"));
        }
        Ok(Self(out))
    }

    #[must_use]
    pub fn is_root(&self) -> bool {
        self.0.as_os_str().is_empty()
    }

    #[must_use]
    pub fn as_path(&self) -> &Path {
        &self.0
    }

    /// The path for `cap-std` calls: `.` for the root itself.
    #[must_use]
    pub fn for_open(&self) -> &Path {
        if self.is_root() {
            Path::new(".")
        } else {
            &self.0
        }
    }

    /// `self/other` (both already checked).
    #[must_use]
    pub fn join(&self, other: &RelPath) -> RelPath {
        RelPath(self.0.join(&other.0))
    }

    /// `self/name`, refusing a name that is not a single plain component.
    pub fn child(&self, name: &str) -> Result<RelPath, String> {
        let child = RelPath::parse_non_empty(name)?;
        if child.0.components().count() != 1 {
            return Err(format!("`{name}` is not a single name"));
        }
        Ok(self.join(&child))
    }

    /// The parent (the root for a single name).
    #[must_use]
    pub fn parent(&self) -> RelPath {
        RelPath(self.0.parent().map(Path::to_path_buf).unwrap_or_default())
    }

    /// The last component as text (lossy), empty for the root.
    #[must_use]
    pub fn file_name(&self) -> String {
        self.0
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// `self` without the leading `prefix`, when it starts with it.
    #[must_use]
    pub fn strip_prefix(&self, prefix: &RelPath) -> Option<RelPath> {
        self.0
            .strip_prefix(&prefix.0)
            .ok()
            .map(|p| RelPath(p.to_path_buf()))
    }

    /// `/`-separated text (lossy for non-UTF-8 names).
    #[must_use]
    pub fn display(&self) -> String {
        self.0.to_string_lossy().into_owned()
    }
}

impl std::fmt::Display for RelPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.to_string_lossy())
    }
}

/// `lstat` beneath `dir`: `None` when nothing is there.
pub fn lstat(dir: &Dir, path: &RelPath) -> io::Result<Option<Metadata>> {
    match dir.symlink_metadata(path.for_open()) {
        Ok(meta) => Ok(Some(meta)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Opens a regular file for reading without following a final symlink.
pub fn open_file_nofollow(dir: &Dir, path: &RelPath) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.read(true).custom_flags(nix::libc::O_NOFOLLOW);
    let file = dir.open_with(path.for_open(), &options)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("`{path}` is not a regular file"),
        ));
    }
    Ok(file)
}

/// Creates `path` and its parents beneath `dir` (existing directories are
/// fine; anything else in the way is an error).
pub fn create_dirs(dir: &Dir, path: &RelPath) -> io::Result<()> {
    if path.is_root() {
        return Ok(());
    }
    dir.create_dir_all(path.as_path())?;
    match lstat(dir, path)? {
        Some(meta) if meta.is_dir() => Ok(()),
        _ => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("`{path}` exists and is not a directory"),
        )),
    }
}

/// Syncs a directory (makes renames inside it durable).
pub fn sync_dir(dir: &Dir, path: &RelPath) -> io::Result<()> {
    let file = dir.open(path.for_open())?;
    file.sync_all()
}

/// What [`walk`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
    /// Device, FIFO, socket.
    Other,
}

/// One entry seen by [`walk`], relative to the walked root.
#[derive(Debug, Clone)]
pub struct WalkEntry {
    pub path: RelPath,
    pub kind: EntryKind,
    pub size: u64,
    pub mode: u32,
}

/// Lists everything beneath `base` (not `base` itself), parents before
/// children, never following symlinks, at most [`MAX_DEPTH`] deep. Names
/// starting with [`RESERVED_PREFIX`] are skipped when `skip_reserved`.
pub fn walk(dir: &Dir, base: &RelPath, skip_reserved: bool) -> io::Result<Vec<WalkEntry>> {
    let mut out = Vec::new();
    walk_into(dir, base, &RelPath::root(), 0, skip_reserved, &mut out)?;
    Ok(out)
}

fn walk_into(
    dir: &Dir,
    base: &RelPath,
    rel: &RelPath,
    depth: usize,
    skip_reserved: bool,
    out: &mut Vec<WalkEntry>,
) -> io::Result<()> {
    use cap_std::fs::PermissionsExt as _;
    if depth > MAX_DEPTH {
        return Err(io::Error::other(format!(
            "`{rel}` is nested deeper than {MAX_DEPTH} directories"
        )));
    }
    let here = base.join(rel);
    let mut names = Vec::new();
    for entry in dir.read_dir(here.for_open())? {
        let entry = entry?;
        names.push(entry.file_name());
    }
    names.sort();
    for name in names {
        let text = name.to_string_lossy();
        if skip_reserved && text.starts_with(RESERVED_PREFIX) {
            continue;
        }
        let child = RelPath::from_path(&rel.as_path().join(&name)).map_err(io::Error::other)?;
        let Some(meta) = lstat(dir, &base.join(&child))? else {
            continue;
        };
        let file_type = meta.file_type();
        let kind = if file_type.is_symlink() {
            EntryKind::Symlink
        } else if file_type.is_dir() {
            EntryKind::Dir
        } else if file_type.is_file() {
            EntryKind::File
        } else {
            EntryKind::Other
        };
        out.push(WalkEntry {
            path: child.clone(),
            kind,
            size: meta.len(),
            mode: meta.permissions().mode(),
        });
        if kind == EntryKind::Dir {
            walk_into(dir, base, &child, depth + 1, skip_reserved, out)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rel_paths_refuse_escapes() {
        for bad in [
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a/./b",
            "..",
            "a\0b",
            "",
        ] {
            assert!(RelPath::parse_non_empty(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            RelPath::parse("./a//b/").unwrap().as_path(),
            Path::new("a/b")
        );
        assert!(RelPath::parse(&"a/".repeat(3000)).is_err());
        assert!(RelPath::parse(&"x".repeat(256)).is_err());
        assert!(RelPath::root().child("a/b").is_err());
        assert!(RelPath::from_path(Path::new("/abs")).is_err());
        assert!(RelPath::from_path(Path::new("a/../b")).is_err());
    }

    #[test]
    fn cap_std_refuses_what_rel_path_would() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        std::fs::create_dir(&root).unwrap();
        std::os::unix::fs::symlink("/etc", root.join("link")).unwrap();
        let dir = Dir::open_ambient_dir(&root, ambient_authority()).unwrap();
        assert!(dir.create("../escape").is_err());
        assert!(dir.create("/tmp/escape").is_err());
        assert!(dir.create("link/escape").is_err());
        assert!(dir.open("link/passwd").is_err());
        assert!(!tmp.path().join("escape").exists());
    }
}
