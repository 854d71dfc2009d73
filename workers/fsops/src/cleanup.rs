//! Cleanup rules: which library files a job removes after the transfer.
//!
//! `cleanup_drop` and `cleanup_keep` are globs (case-insensitive). A
//! pattern without `/` matches a file's name at any depth; one with `/`
//! matches the path inside the job's library folder, where `*` stops at `/`
//! and `**` crosses it. Keep wins over drop. The `@skip_fluff` preset drops
//! what release groups and indexers add around the real content: sample
//! clips (only when small, so a film whose title contains "sample" stays),
//! proof and screenshot images, `.nfo`, `.url`, `.txt`, `.lnk`, `.sfv` and
//! desktop litter, and whole `sample`/`proof`/`screens` folders.

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

/// A sample clip larger than this is content, not a sample.
pub const SAMPLE_MAX_BYTES: u64 = 200 * 1024 * 1024;

/// Folders whose whole content `@skip_fluff` drops.
const FLUFF_DIRS: &[&str] = &[
    "**/sample/**",
    "**/samples/**",
    "**/proof/**",
    "**/proofs/**",
    "**/screens/**",
    "**/screenshots/**",
];

/// File names `@skip_fluff` drops whatever their size.
const FLUFF_FILES: &[&str] = &[
    "*.nfo",
    "*.url",
    "*.txt",
    "*.lnk",
    "*.sfv",
    "*.md5",
    "thumbs.db",
    ".ds_store",
    "desktop.ini",
    "*proof*.{jpg,jpeg,png}",
    "screen*.{jpg,jpeg,png}",
    "*screenshot*.{jpg,jpeg,png}",
];

/// Sample clips, dropped only below [`SAMPLE_MAX_BYTES`].
const FLUFF_SAMPLES: &[&str] = &[
    "sample.*",
    "sample-*.*",
    "sample_*.*",
    "*.sample.*",
    "*-sample.*",
    "*_sample.*",
    "*.sample",
];

/// Compiled cleanup rules.
#[derive(Debug, Clone)]
pub struct Cleanup {
    drop_names: GlobSet,
    drop_paths: GlobSet,
    keep_names: GlobSet,
    keep_paths: GlobSet,
    /// Set when `@skip_fluff` is in the drop list.
    samples: Option<GlobSet>,
}

impl Cleanup {
    /// Compiles the configured lists.
    pub fn new(keep: &[String], drop: &[String]) -> Result<Self, String> {
        let mut drop_patterns: Vec<&str> = Vec::new();
        let mut fluff = false;
        for pattern in drop {
            match pattern.as_str() {
                "@skip_fluff" => {
                    fluff = true;
                    drop_patterns.extend(FLUFF_DIRS);
                    drop_patterns.extend(FLUFF_FILES);
                }
                p if p.starts_with('@') => return Err(format!("unknown cleanup preset `{p}`")),
                p => drop_patterns.push(p),
            }
        }
        let mut keep_patterns: Vec<&str> = Vec::new();
        for pattern in keep {
            match pattern.as_str() {
                "@skip_fluff" => {
                    keep_patterns.extend(FLUFF_DIRS);
                    keep_patterns.extend(FLUFF_FILES);
                    keep_patterns.extend(FLUFF_SAMPLES);
                }
                p if p.starts_with('@') => return Err(format!("unknown cleanup preset `{p}`")),
                p => keep_patterns.push(p),
            }
        }
        let (drop_names, drop_paths) = compile(&drop_patterns, "cleanup_drop")?;
        let (keep_names, keep_paths) = compile(&keep_patterns, "cleanup_keep")?;
        let samples = if fluff {
            Some(compile(FLUFF_SAMPLES, "@skip_fluff")?.0)
        } else {
            None
        };
        Ok(Self {
            drop_names,
            drop_paths,
            keep_names,
            keep_paths,
            samples,
        })
    }

    /// Whether the file at `path` (relative to the job's library folder,
    /// `/`-separated) of `size` bytes is removed.
    #[must_use]
    pub fn drops(&self, path: &str, size: u64) -> bool {
        let name = path.rsplit('/').next().unwrap_or(path);
        if self.keep_names.is_match(name) || self.keep_paths.is_match(path) {
            return false;
        }
        if self.drop_names.is_match(name) || self.drop_paths.is_match(path) {
            return true;
        }
        self.samples
            .as_ref()
            .is_some_and(|s| size < SAMPLE_MAX_BYTES && s.is_match(name))
    }

    /// Whether any rule is configured at all.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.drop_names.is_empty() && self.drop_paths.is_empty() && self.samples.is_none()
    }
}

/// Splits patterns into name globs (no `/`) and path globs, compiled
/// case-insensitively with `*` not crossing `/`.
fn compile(patterns: &[&str], key: &str) -> Result<(GlobSet, GlobSet), String> {
    let mut names = GlobSetBuilder::new();
    let mut paths = GlobSetBuilder::new();
    for pattern in patterns {
        let glob = GlobBuilder::new(pattern)
            .case_insensitive(true)
            .literal_separator(true)
            .build()
            .map_err(|e| format!("{key}: `{pattern}`: {e}"))?;
        if pattern.contains('/') {
            paths.add(glob);
        } else {
            names.add(glob);
        }
    }
    let names = names.build().map_err(|e| format!("{key}: {e}"))?;
    let paths = paths.build().map_err(|e| format!("{key}: {e}"))?;
    Ok((names, paths))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(keep: &[&str], drop: &[&str]) -> Cleanup {
        let owned = |l: &[&str]| l.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        Cleanup::new(&owned(keep), &owned(drop)).unwrap()
    }

    #[test]
    fn skip_fluff_drops_junk_and_keeps_content() {
        let c = rules(&[], &["@skip_fluff"]);
        for junk in [
            "Show.nfo",
            "Sample/show.sample.mkv",
            "sub/Samples/clip.mkv",
            "RARBG.txt",
            "Torrent Downloaded From.URL",
            "Proof/cover.jpg",
            "show-proof.JPG",
            "Screens/01.png",
            "screen01.png",
            "Thumbs.db",
        ] {
            assert!(c.drops(junk, 1000), "{junk}");
        }
        assert!(c.drops("show-sample.mkv", 10 << 20));
        for keep in [
            "Show.S01E01.mkv",
            "The.Sample.2020.1080p.mkv",
            "Subs/English.srt",
            "cover.jpg",
        ] {
            assert!(!c.drops(keep, 4 << 30), "{keep}");
        }
        // A big "sample" is the film itself.
        assert!(!c.drops("the.sample.mkv", 4 << 30));
    }

    #[test]
    fn keep_wins_and_paths_match_whole_paths() {
        let c = rules(
            &["readme.txt", "extras/**"],
            &["@skip_fluff", "*.exe", "extras/*.nfo"],
        );
        assert!(!c.drops("README.TXT", 10));
        assert!(c.drops("other.txt", 10));
        assert!(c.drops("setup.exe", 10));
        assert!(!c.drops("extras/info.nfo", 10));
        let c = rules(&[], &["extras/*.nfo"]);
        assert!(c.drops("extras/info.nfo", 10));
        assert!(!c.drops("extras/deeper/info.nfo", 10));
        assert!(!c.drops("info.nfo", 10));
        assert!(rules(&[], &[]).is_empty());
    }

    #[test]
    fn bad_globs_and_presets_are_refused() {
        assert!(Cleanup::new(&[], &["a{b".to_owned()]).is_err());
        assert!(Cleanup::new(&["@nope".to_owned()], &[]).is_err());
    }
}
