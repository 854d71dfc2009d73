//! The `extract` step's archive readers: zip, tar (plain, gzip, xz, zstd,
//! bzip2) and 7z, writing beneath one folder of the library with hard caps.
//!
//! Refused, failing the step (and removing what this archive had written):
//! entry names that are absolute, contain `..`, NUL or FsOps' reserved
//! prefix, or are not UTF-8; device files, FIFOs and sockets; symlinks whose
//! target is absolute or climbs out of the extraction folder; encrypted
//! entries; more entries than `max_extract_entries`, more bytes than
//! `max_extract_bytes`, or an unpacked/packed ratio above
//! `max_compression_ratio` (checked as bytes stream out, per archive and,
//! where the format knows it, per entry). Symlinks that stay inside and
//! hard links are not created (skipped and counted): the library never holds
//! a link an archive chose. Decoders are memory-bounded (xz 256 MiB, zstd
//! window 128 MiB). Every write is relative to the library's `Dir`, so even
//! a bug here cannot reach outside it. RAR is not supported (ADR 007).

use std::io::{self, Read, Write};

use cap_std::fs::Dir;

use crate::error::{IoContext as _, StepError, StepResult};
use crate::policy::ExtractCaps;
use crate::roots::{RESERVED_PREFIX, RelPath, create_dirs, lstat, open_file_nofollow};

/// Ratio checks start once this much has been unpacked (tiny archives of
/// repetitive text legitimately compress very well).
const RATIO_FLOOR_BYTES: u64 = 1 << 20;
/// xz decoder memory limit.
const XZ_MEMLIMIT: u64 = 256 << 20;
/// zstd window limit (2^27 = 128 MiB).
const ZSTD_WINDOW_LOG_MAX: u32 = 27;
/// Longest symlink target read from an archive.
const MAX_LINK_TARGET: u64 = 4096;

/// A tar stream's compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TarCompression {
    None,
    Gzip,
    Xz,
    Zstd,
    Bzip2,
}

/// Archive formats, by file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Zip,
    Tar(TarCompression),
    SevenZ,
    /// Recognised but not supported (ADR 007): left as it is.
    Rar,
}

/// Suffixes, longest first; matched case-insensitively.
const SUFFIXES: &[(&str, Format)] = &[
    (".tar.gz", Format::Tar(TarCompression::Gzip)),
    (".tar.xz", Format::Tar(TarCompression::Xz)),
    (".tar.zst", Format::Tar(TarCompression::Zstd)),
    (".tar.zstd", Format::Tar(TarCompression::Zstd)),
    (".tar.bz2", Format::Tar(TarCompression::Bzip2)),
    (".tgz", Format::Tar(TarCompression::Gzip)),
    (".txz", Format::Tar(TarCompression::Xz)),
    (".tzst", Format::Tar(TarCompression::Zstd)),
    (".tbz2", Format::Tar(TarCompression::Bzip2)),
    (".tbz", Format::Tar(TarCompression::Bzip2)),
    (".tar", Format::Tar(TarCompression::None)),
    (".zip", Format::Zip),
    (".7z", Format::SevenZ),
    (".rar", Format::Rar),
];

/// The format of a file named `name`, and its name without the suffix.
#[must_use]
pub fn detect(name: &str) -> Option<(Format, &str)> {
    let lower = name.to_ascii_lowercase();
    SUFFIXES.iter().find_map(|(suffix, format)| {
        lower
            .ends_with(suffix)
            .then(|| (*format, &name[..name.len() - suffix.len()]))
    })
}

/// What one archive produced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExtractReport {
    pub entries: u64,
    pub bytes: u64,
    /// Files found already unpacked by an earlier attempt.
    pub already_there: u64,
    /// Symlinks and hard links not created.
    pub links_skipped: u64,
}

/// Unpacks `archive` (in `library`) into the folder `target`.
pub fn extract(
    library: &Dir,
    archive: &RelPath,
    format: Format,
    target: &RelPath,
    caps: ExtractCaps,
    tmp_name: &str,
) -> StepResult<ExtractReport> {
    let file = open_file_nofollow(library, archive).ctx(|| format!("opening {archive}"))?;
    let packed = file
        .metadata()
        .ctx(|| format!("inspecting {archive}"))?
        .len();
    create_dirs(library, target).ctx(|| format!("creating {target}"))?;
    let mut sink = Sink {
        dir: library,
        target: target.clone(),
        archive: archive.display(),
        caps,
        packed: packed.max(1),
        tmp_name: tmp_name.to_owned(),
        report: ExtractReport::default(),
        created: Vec::new(),
    };
    let file = file.into_std();
    let result = match format {
        Format::Zip => extract_zip(file, &mut sink),
        Format::Tar(compression) => extract_tar(file, compression, &mut sink),
        Format::SevenZ => extract_7z(file, &mut sink),
        Format::Rar => Err(sink.refuse("RAR archives are not supported")),
    };
    match result {
        Ok(()) => Ok(sink.report),
        Err(e) => {
            sink.undo();
            Err(e)
        }
    }
}

/// Writes entries beneath `target`, enforcing the caps.
struct Sink<'a> {
    dir: &'a Dir,
    target: RelPath,
    archive: String,
    caps: ExtractCaps,
    packed: u64,
    tmp_name: String,
    report: ExtractReport,
    /// Files and folders this run created, to remove on refusal.
    created: Vec<RelPath>,
}

impl Sink<'_> {
    fn refuse(&self, reason: impl Into<String>) -> StepError {
        StepError::Archive {
            archive: self.archive.clone(),
            reason: reason.into(),
        }
    }

    /// Counts an entry and checks its name.
    fn entry(&mut self, raw: &str) -> StepResult<RelPath> {
        self.report.entries += 1;
        if self.report.entries > self.caps.max_entries {
            return Err(self.refuse(format!(
                "more than {} entries (max_extract_entries)",
                self.caps.max_entries
            )));
        }
        let rel = RelPath::parse_non_empty(raw)
            .map_err(|e| self.refuse(format!("unsafe entry name: {e}")))?;
        if rel
            .as_path()
            .components()
            .any(|c| c.as_os_str().to_string_lossy().starts_with(RESERVED_PREFIX))
        {
            return Err(self.refuse(format!("entry `{raw}` uses a reserved name")));
        }
        Ok(rel)
    }

    fn directory(&mut self, rel: &RelPath) -> StepResult<()> {
        let path = self.target.join(rel);
        if lstat(self.dir, &path)
            .ctx(|| format!("inspecting {path}"))?
            .is_none()
        {
            create_dirs(self.dir, &path).ctx(|| format!("creating {path}"))?;
            self.created.push(path);
        }
        Ok(())
    }

    /// Checks a symlink entry and skips it: refused when it would point
    /// outside the extraction folder.
    fn symlink(&mut self, rel: &RelPath, target: &str) -> StepResult<()> {
        if target.starts_with('/') || target.contains('\0') {
            return Err(self.refuse(format!("symlink `{rel}` points to an absolute path")));
        }
        let mut depth: usize = rel.as_path().components().count().saturating_sub(1);
        for part in target.split('/') {
            match part {
                "" | "." => {}
                ".." => {
                    depth = depth.checked_sub(1).ok_or_else(|| {
                        self.refuse(format!("symlink `{rel}` points outside the archive"))
                    })?;
                }
                _ => depth += 1,
            }
        }
        self.report.links_skipped += 1;
        tracing::info!(archive = %self.archive, entry = %rel, "symlink in archive not created");
        Ok(())
    }

    fn special(&self, rel: &RelPath) -> StepError {
        self.refuse(format!("`{rel}` is a device, FIFO or socket"))
    }

    /// Streams one file entry into place. `packed_entry`: the entry's
    /// compressed size, when the format records it.
    fn file(
        &mut self,
        rel: &RelPath,
        reader: &mut dyn Read,
        executable: bool,
        packed_entry: Option<u64>,
    ) -> StepResult<()> {
        let path = self.target.join(rel);
        let parent = path.parent();
        if lstat(self.dir, &parent)
            .ctx(|| format!("inspecting {parent}"))?
            .is_none()
        {
            create_dirs(self.dir, &parent).ctx(|| format!("creating {parent}"))?;
            self.created.push(parent.clone());
        }
        if let Some(existing) = lstat(self.dir, &path).ctx(|| format!("inspecting {path}"))? {
            // Unpacked by an earlier attempt (writes are atomic), unless the
            // size differs: then it is not ours to overwrite.
            let size = self.pump(reader, &mut io::sink(), packed_entry)?;
            if !existing.is_file() || existing.len() != size {
                return Err(self.refuse(format!("`{rel}` would overwrite {path}")));
            }
            self.report.already_there += 1;
            return Ok(());
        }
        let tmp = parent.child(&self.tmp_name).map_err(|e| self.refuse(e))?;
        let mut out = self
            .dir
            .create(tmp.as_path())
            .ctx(|| format!("creating {tmp}"))?
            .into_std();
        let written = self.pump(reader, &mut out, packed_entry).and_then(|_| {
            (|| -> io::Result<()> {
                if executable {
                    out.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
                }
                out.sync_all()?;
                self.dir.rename(tmp.as_path(), self.dir, path.as_path())
            })()
            .ctx(|| format!("writing {path}"))
        });
        if let Err(e) = written {
            let _ = self.dir.remove_file(tmp.as_path());
            return Err(e);
        }
        self.created.push(path);
        Ok(())
    }

    /// Copies with the byte and ratio caps; returns the entry's size.
    fn pump(
        &mut self,
        reader: &mut dyn Read,
        out: &mut dyn Write,
        packed_entry: Option<u64>,
    ) -> StepResult<u64> {
        let mut buf = vec![0_u8; 256 * 1024];
        let mut entry_bytes: u64 = 0;
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => return Ok(entry_bytes),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.refuse(format!("cannot be read: {e}"))),
            };
            let n64 = n as u64;
            entry_bytes += n64;
            self.report.bytes += n64;
            if self.report.bytes > self.caps.max_bytes {
                return Err(self.refuse(format!(
                    "unpacks to more than {} bytes (max_extract_bytes)",
                    self.caps.max_bytes
                )));
            }
            let over = |out: u64, packed: u64| {
                out > RATIO_FLOOR_BYTES && out / packed.max(1) > self.caps.max_ratio
            };
            if over(self.report.bytes, self.packed)
                || packed_entry.is_some_and(|p| over(entry_bytes, p))
            {
                return Err(self.refuse(format!(
                    "compression ratio above {} (max_compression_ratio): a decompression bomb?",
                    self.caps.max_ratio
                )));
            }
            out.write_all(&buf[..n])
                .map_err(|e| StepError::io(format!("writing into {}", self.target), e))?;
        }
    }

    /// Removes what this run created, newest first (best effort).
    fn undo(&mut self) {
        for path in self.created.drain(..).rev() {
            if self.dir.remove_file(path.as_path()).is_err() {
                let _ = self.dir.remove_dir(path.as_path());
            }
        }
    }
}

/// File-type bits of a Unix mode.
fn unix_kind(mode: u32) -> u32 {
    mode & 0o170_000
}
const S_IFREG: u32 = 0o100_000;
const S_IFDIR: u32 = 0o040_000;
const S_IFLNK: u32 = 0o120_000;

fn read_link_target(reader: &mut dyn Read) -> io::Result<String> {
    let mut target = String::new();
    reader.take(MAX_LINK_TARGET).read_to_string(&mut target)?;
    Ok(target)
}

fn extract_zip(file: std::fs::File, sink: &mut Sink<'_>) -> StepResult<()> {
    let mut zip =
        zip::ZipArchive::new(file).map_err(|e| sink.refuse(format!("not a readable zip: {e}")))?;
    if zip.len() as u64 > sink.caps.max_entries {
        return Err(sink.refuse(format!(
            "{} entries, more than {} (max_extract_entries)",
            zip.len(),
            sink.caps.max_entries
        )));
    }
    for index in 0..zip.len() {
        let mut entry = zip
            .by_index(index)
            .map_err(|e| sink.refuse(format!("entry {index}: {e}")))?;
        let name = entry
            .name()
            .map_err(|e| sink.refuse(format!("entry {index}: {e}")))?
            .into_owned();
        let rel = sink.entry(&name)?;
        if entry.encrypted() {
            return Err(sink.refuse(format!("`{rel}` is encrypted")));
        }
        let mode = entry.unix_mode();
        let kind = mode.map(unix_kind).filter(|k| *k != 0);
        if entry.is_symlink() || kind == Some(S_IFLNK) {
            let target =
                read_link_target(&mut entry).map_err(|e| sink.refuse(format!("`{rel}`: {e}")))?;
            sink.symlink(&rel, &target)?;
        } else if entry.is_dir() || kind == Some(S_IFDIR) {
            sink.directory(&rel)?;
        } else if kind.is_some_and(|k| k != S_IFREG) {
            return Err(sink.special(&rel));
        } else {
            let executable = mode.is_some_and(|m| m & 0o100 != 0);
            let packed = entry.compressed_size();
            sink.file(&rel, &mut entry, executable, Some(packed))?;
        }
    }
    Ok(())
}

fn tar_reader(file: std::fs::File, compression: TarCompression) -> io::Result<Box<dyn Read>> {
    let file = io::BufReader::new(file);
    Ok(match compression {
        TarCompression::None => Box::new(file),
        TarCompression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(file)),
        TarCompression::Bzip2 => Box::new(bzip2::bufread::MultiBzDecoder::new(file)),
        TarCompression::Xz => {
            let stream = liblzma::stream::Stream::new_stream_decoder(
                XZ_MEMLIMIT,
                liblzma::stream::CONCATENATED,
            )
            .map_err(io::Error::other)?;
            Box::new(liblzma::bufread::XzDecoder::new_stream(file, stream))
        }
        TarCompression::Zstd => {
            let mut decoder = zstd::stream::read::Decoder::with_buffer(file)?;
            decoder.window_log_max(ZSTD_WINDOW_LOG_MAX)?;
            Box::new(decoder)
        }
    })
}

fn extract_tar(
    file: std::fs::File,
    compression: TarCompression,
    sink: &mut Sink<'_>,
) -> StepResult<()> {
    use tar::EntryType;
    let reader = tar_reader(file, compression).map_err(|e| sink.refuse(e.to_string()))?;
    let mut archive = tar::Archive::new(reader);
    let entries = archive
        .entries()
        .map_err(|e| sink.refuse(format!("not a readable tar: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| sink.refuse(format!("not a readable tar: {e}")))?;
        let name = std::str::from_utf8(&entry.path_bytes())
            .map_err(|_| sink.refuse("an entry name is not UTF-8"))?
            .to_owned();
        let rel = sink.entry(&name)?;
        let entry_type = entry.header().entry_type();
        match entry_type {
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                let executable = entry.header().mode().is_ok_and(|m| m & 0o100 != 0);
                sink.file(&rel, &mut entry, executable, None)?;
            }
            EntryType::Directory => sink.directory(&rel)?,
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default();
                sink.symlink(&rel, &target)?;
            }
            EntryType::Link => {
                sink.report.links_skipped += 1;
                tracing::info!(archive = %sink.archive, entry = %rel, "hard link in archive not created");
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => return Err(sink.special(&rel)),
            other => {
                tracing::info!(archive = %sink.archive, entry = %rel, kind = ?other, "tar entry type skipped");
            }
        }
    }
    Ok(())
}

/// 7z stores Unix modes in the high 16 bits of the Windows attributes when
/// this bit is set.
const FILE_ATTRIBUTE_UNIX_EXTENSION: u32 = 0x8000;
const FILE_ATTRIBUTE_REPARSE_POINT: u32 = 0x400;

fn extract_7z(file: std::fs::File, sink: &mut Sink<'_>) -> StepResult<()> {
    use sevenz_rust2::{ArchiveReader, Password};
    let mut reader = ArchiveReader::new(file, Password::empty())
        .map_err(|e| sink.refuse(format!("not a readable 7z: {e}")))?;
    reader.set_thread_count(1);
    let count = reader.archive().files.len() as u64;
    if count > sink.caps.max_entries {
        return Err(sink.refuse(format!(
            "{count} entries, more than {} (max_extract_entries)",
            sink.caps.max_entries
        )));
    }
    let declared: u64 = reader.archive().files.iter().map(|f| f.size).sum();
    if declared > sink.caps.max_bytes {
        return Err(sink.refuse(format!(
            "declares {declared} bytes, more than {} (max_extract_bytes)",
            sink.caps.max_bytes
        )));
    }
    let mut failure: Option<StepError> = None;
    let walked = reader.for_each_entries(|entry, data| match seven_z_entry(sink, entry, data) {
        Ok(()) => Ok(true),
        Err(e) => {
            failure = Some(e);
            Ok(false)
        }
    });
    if let Some(e) = failure {
        return Err(e);
    }
    walked.map_err(|e| sink.refuse(format!("cannot be unpacked: {e}")))
}

fn seven_z_entry(
    sink: &mut Sink<'_>,
    entry: &sevenz_rust2::ArchiveEntry,
    data: &mut dyn Read,
) -> StepResult<()> {
    let rel = sink.entry(&entry.name)?;
    if entry.is_anti_item {
        return Ok(());
    }
    let attributes = entry
        .has_windows_attributes
        .then_some(entry.windows_attributes);
    let mode = attributes
        .filter(|a| a & FILE_ATTRIBUTE_UNIX_EXTENSION != 0)
        .map(|a| a >> 16);
    let kind = mode.map(unix_kind).filter(|k| *k != 0);
    if kind == Some(S_IFLNK) {
        let target = read_link_target(data).map_err(|e| sink.refuse(format!("`{rel}`: {e}")))?;
        return sink.symlink(&rel, &target);
    }
    if attributes.is_some_and(|a| a & FILE_ATTRIBUTE_REPARSE_POINT != 0) {
        sink.report.links_skipped += 1;
        return Ok(());
    }
    if entry.is_directory || kind == Some(S_IFDIR) {
        return sink.directory(&rel);
    }
    if kind.is_some_and(|k| k != S_IFREG) {
        return Err(sink.special(&rel));
    }
    let executable = mode.is_some_and(|m| m & 0o100 != 0);
    sink.file(&rel, data, executable, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_detected_by_suffix() {
        assert_eq!(detect("a.ZIP"), Some((Format::Zip, "a")));
        assert_eq!(
            detect("x.tar.zst"),
            Some((Format::Tar(TarCompression::Zstd), "x"))
        );
        assert_eq!(
            detect("x.tgz"),
            Some((Format::Tar(TarCompression::Gzip), "x"))
        );
        assert_eq!(detect("x.7z"), Some((Format::SevenZ, "x")));
        assert_eq!(detect("x.part01.rar"), Some((Format::Rar, "x.part01")));
        assert_eq!(detect("x.7z.001"), None);
        assert_eq!(detect("movie.mkv"), None);
    }
}
