//! The FsOps pipeline on real files: transfer modes, extraction, cleanup,
//! flattening, permissions, resume after an interruption at every step, and
//! the refusals (malicious archives, crafted jobs).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::too_many_lines,
    reason = "tests"
)]

mod common;

use common::{Fixture, ino, mode, noise, snapshot};
use revaer_config::MoveMode;
use revaer_fsops::CrashPoint;
use revaer_fsops::JobOutcome;
use revaer_ipc::fsops::{FsopsProgress, FsopsStep, StepOutcome};

#[test]
fn hardlink_shares_the_inode_and_sets_modes() {
    let fx = Fixture::new();
    fx.write("tv/Show/e01.mkv", &noise(100_000, 1));
    fx.write("tv/Show/Subs/en.srt", b"1\n00:00 --> 00:01\nhi\n");
    let job = fx.job(1, "tv", "Show");
    let run = fx.run(&job, None);
    assert_eq!(run.library_path(), "Show");
    // The whole frame sequence: Started, each step, Completed.
    assert_eq!(
        run.frames[0],
        FsopsProgress::Started {
            job_id: 1,
            step: FsopsStep::Validate
        }
    );
    for (i, step) in FsopsStep::ALL.into_iter().enumerate() {
        assert_eq!(
            run.frames[1 + 2 * i],
            FsopsProgress::StepStarted { job_id: 1, step }
        );
        assert!(
            matches!(run.frames[2 + 2 * i], FsopsProgress::StepFinished { step: s, .. } if s == step)
        );
    }
    assert_eq!(run.frames.len(), 20);
    assert_eq!(run.completed(), 1);
    let lib = fx.library();
    let src = fx.downloads().join("tv/Show/e01.mkv");
    assert_eq!(ino(&lib.join("Show/e01.mkv")), ino(&src));
    assert_eq!(
        ino(&lib.join("Show/Subs/en.srt")),
        ino(&fx.downloads().join("tv/Show/Subs/en.srt"))
    );
    assert_eq!(mode(&lib.join("Show/e01.mkv")), 0o644);
    assert_eq!(mode(&lib.join("Show")), 0o755);
    assert_eq!(mode(&lib.join("Show/Subs")), 0o755);
    assert!(
        run.metrics
            .contains("revaer_fsops_bytes_total{method=\"link\"} 100021"),
        "{}",
        run.metrics
    );
    assert!(
        run.metrics
            .contains("revaer_fsops_steps_total{outcome=\"done\",step=\"transfer\"} 1")
    );
    let record =
        std::fs::read_to_string(lib.join(format!(".revaer/{}.json", job.torrent))).unwrap();
    assert!(record.contains("\"status\": \"completed\""), "{record}");

    // Explicit modes and a category sub-path; a single-file torrent.
    let mut fx = Fixture::new();
    fx.config.chmod_file = Some("0640".into());
    fx.config.chmod_dir = Some("0750".into());
    fx.config
        .category_paths
        .insert("movies".into(), "Media/Movies".into());
    fx.write("film.mkv", &noise(5000, 2));
    let mut job = fx.job(2, "", "film.mkv");
    job.category = Some("movies".into());
    let run = fx.run(&job, None);
    assert_eq!(run.library_path(), "Media/Movies/film.mkv");
    let film = fx.library().join("Media/Movies/film.mkv");
    assert_eq!(ino(&film), ino(&fx.downloads().join("film.mkv")));
    assert_eq!(mode(&film), 0o640);
    // Category folders FsOps created get the folder mode.
    assert_eq!(mode(&fx.library().join("Media")), 0o750);
    assert_eq!(mode(&fx.library().join("Media/Movies")), 0o750);
}

#[test]
fn hardlink_falls_back_to_a_copy_across_filesystems() {
    let shm = std::path::Path::new("/dev/shm");
    assert!(shm.is_dir(), "this test needs a tmpfs at /dev/shm");
    let library = tempfile::tempdir().unwrap();
    let mut fx = Fixture::in_dir(shm);
    fx.config.library_root = Some(library.path().join("lib"));
    std::fs::create_dir(fx.library()).unwrap();
    assert_ne!(
        ino(&fx.downloads()).0,
        ino(&fx.library()).0,
        "need two filesystems"
    );
    fx.write("Show/e01.mkv", &noise(300_000, 3));
    fx.write("Show/run.sh", b"#!/bin/sh\n");
    std::fs::set_permissions(
        fx.downloads().join("Show/run.sh"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let job = fx.job(3, "", "Show");
    let run = fx.run(&job, None);
    assert_eq!(run.library_path(), "Show");
    let copied = fx.library().join("Show/e01.mkv");
    assert_ne!(ino(&copied), ino(&fx.downloads().join("Show/e01.mkv")));
    assert_eq!(std::fs::read(&copied).unwrap(), noise(300_000, 3));
    assert_eq!(mode(&copied), 0o644);
    assert_eq!(
        mode(&fx.library().join("Show/run.sh")),
        0o755,
        "execute bits survive a copy"
    );
    assert!(
        run.metrics
            .contains("revaer_fsops_bytes_total{method=\"copy\"}"),
        "{}",
        run.metrics
    );
    // No temporary file is left behind.
    let names: Vec<_> = std::fs::read_dir(fx.library().join("Show"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.starts_with(".revaer")), "{names:?}");
}

#[test]
fn copy_and_move_modes() {
    let mut fx = Fixture::new();
    fx.config.move_mode = MoveMode::Copy;
    fx.write("Show/a.mkv", &noise(10_000, 4));
    let run = fx.run(&fx.job(4, "", "Show"), None);
    assert_eq!(run.library_path(), "Show");
    assert_ne!(
        ino(&fx.library().join("Show/a.mkv")),
        ino(&fx.downloads().join("Show/a.mkv"))
    );
    assert!(fx.downloads().join("Show/a.mkv").exists());

    let mut fx = Fixture::new();
    fx.config.move_mode = MoveMode::Move;
    fx.write("dl/Show/a.mkv", &noise(10_000, 5));
    fx.write("dl/Show/deep/b.mkv", &noise(20_000, 6));
    let src_inode = ino(&fx.downloads().join("dl/Show/a.mkv"));
    let run = fx.run(&fx.job(5, "dl", "Show"), None);
    assert_eq!(run.library_path(), "Show");
    assert_eq!(
        ino(&fx.library().join("Show/a.mkv")),
        src_inode,
        "renamed, not copied"
    );
    assert_eq!(
        std::fs::read(fx.library().join("Show/deep/b.mkv")).unwrap(),
        noise(20_000, 6)
    );
    assert!(
        !fx.downloads().join("dl/Show").exists(),
        "moved folders are removed"
    );
    assert!(fx.downloads().join("dl").is_dir(), "the save dir stays");
}

#[test]
fn zip_and_tar_zst_are_unpacked_beside_them() {
    let fx = Fixture::new();
    let zip = common::zip_bytes(&[
        ("episode1.mkv", &noise(50_000, 7)),
        ("extras/", b""),
        ("extras/making-of.mkv", &noise(20_000, 8)),
    ]);
    let tar = common::tar_bytes(&[
        ("part2/episode2.mkv", &noise(40_000, 9)),
        ("part2/notes.dat", b"notes"),
    ]);
    fx.write("Show/content.zip", &zip);
    fx.write("Show/more.tar.zst", &common::zstd_bytes(&tar));
    fx.write("Show/keep.mkv", b"plain");
    let run = fx.run(&fx.job(6, "", "Show"), None);
    assert_eq!(run.library_path(), "Show", "{:?}", run.outcome);
    let lib = fx.library().join("Show");
    assert_eq!(
        std::fs::read(lib.join("episode1.mkv")).unwrap(),
        noise(50_000, 7)
    );
    assert_eq!(
        std::fs::read(lib.join("extras/making-of.mkv")).unwrap(),
        noise(20_000, 8)
    );
    assert_eq!(
        std::fs::read(lib.join("part2/episode2.mkv")).unwrap(),
        noise(40_000, 9)
    );
    assert_eq!(
        std::fs::read(lib.join("part2/notes.dat")).unwrap(),
        b"notes"
    );
    assert_eq!(mode(&lib.join("part2/notes.dat")), 0o644);
    assert_eq!(mode(&lib.join("extras")), 0o755);
    // Archives leave the library, never the downloads dir.
    assert!(!lib.join("content.zip").exists());
    assert!(!lib.join("more.tar.zst").exists());
    assert!(fx.downloads().join("Show/content.zip").exists());
    assert!(run.frames.contains(&FsopsProgress::StepFinished {
        job_id: 6,
        step: FsopsStep::Extract,
        outcome: StepOutcome::Done
    }));
}

#[test]
fn every_supported_format_unpacks() {
    let payload = noise(30_000, 10);
    let tar = common::tar_bytes(&[("inner/data.bin", &payload)]);
    for (name, bytes) in [
        ("a.tar", tar.clone()),
        ("a.tar.gz", common::gzip_bytes(&tar)),
        ("a.tgz", common::gzip_bytes(&tar)),
        ("a.tar.xz", common::xz_bytes(&tar)),
        ("a.tar.bz2", common::bzip2_bytes(&tar)),
        ("a.tar.zst", common::zstd_bytes(&tar)),
        ("a.zip", common::zip_bytes(&[("inner/data.bin", &payload)])),
        (
            "a.7z",
            common::sevenz_bytes(&[("inner/data.bin", &payload)]),
        ),
    ] {
        let mut fx = Fixture::new();
        fx.config.flatten = false;
        fx.write(name, &bytes);
        let run = fx.run(&fx.job(11, "", name), None);
        // A single-file archive torrent unpacks into a folder named after it.
        assert_eq!(run.library_path(), "a", "{name}: {:?}", run.outcome);
        assert_eq!(
            std::fs::read(fx.library().join("a/inner/data.bin")).unwrap(),
            payload,
            "{name}"
        );
        assert!(!fx.library().join(name).exists(), "{name}");
    }
    // RAR is recognised but left as it is (ADR 007).
    let fx = Fixture::new();
    fx.write("Show/a.rar", b"Rar!\x1a\x07\x00not really");
    fx.write("Show/b.mkv", b"video");
    let run = fx.run(&fx.job(12, "", "Show"), None);
    assert_eq!(run.library_path(), "Show");
    assert!(fx.library().join("Show/a.rar").exists());
}

#[test]
fn skip_fluff_cleanup_and_flatten() {
    let fx = Fixture::new();
    fx.write("Movie/Movie.2020/movie.mkv", &noise(300_000, 12));
    fx.write("Movie/Movie.2020/movie.nfo", b"nfo");
    fx.write("Movie/Movie.2020/RARBG.txt", b"junk");
    fx.write("Movie/Movie.2020/Torrent.url", b"[InternetShortcut]");
    fx.write("Movie/Movie.2020/Sample/movie-sample.mkv", &noise(1000, 13));
    fx.write("Movie/Movie.2020/Proof/proof.jpg", b"jpg");
    fx.write("Movie/Movie.2020/Screens/screen01.png", b"png");
    fx.write("Movie/Movie.2020/Subs/en.srt", b"srt");
    let run = fx.run(&fx.job(13, "", "Movie"), None);
    assert_eq!(run.library_path(), "Movie");
    let snap = snapshot(&fx.library().join("Movie"));
    let names: Vec<_> = snap.keys().cloned().collect();
    // Flattened (Movie/Movie.2020/x → Movie/x), junk gone, content kept.
    assert_eq!(names, ["Subs", "Subs/en.srt", "movie.mkv"], "{names:?}");
    // Junk is only removed from the library.
    assert!(fx.downloads().join("Movie/Movie.2020/movie.nfo").exists());

    // Keep wins; cleanup and flatten can be turned off.
    let mut fx = Fixture::new();
    fx.config.cleanup_keep = vec!["*.nfo".into()];
    fx.config.flatten = false;
    fx.write("M/M/movie.mkv", b"m");
    fx.write("M/M/movie.nfo", b"n");
    fx.write("M/M/junk.txt", b"j");
    let run = fx.run(&fx.job(14, "", "M"), None);
    assert_eq!(run.library_path(), "M");
    let names: Vec<_> = snapshot(&fx.library().join("M")).keys().cloned().collect();
    assert_eq!(names, ["M", "M/movie.mkv", "M/movie.nfo"]);
}

/// A torrent that exercises every step: nested single folder, an archive,
/// junk.
fn busy_fixture(mode: MoveMode) -> (Fixture, revaer_ipc::fsops::FsopsJob) {
    let mut fx = Fixture::new();
    fx.config.move_mode = mode;
    let zip = common::zip_bytes(&[
        ("bonus/clip.mkv", &noise(40_000, 14)),
        ("bonus/readme.txt", b"x"),
    ]);
    fx.write("tv/Show/Show.S01/e01.mkv", &noise(200_000, 15));
    fx.write("tv/Show/Show.S01/e02.mkv", &noise(150_000, 16));
    fx.write("tv/Show/Show.S01/bonus.zip", &zip);
    fx.write("tv/Show/Show.S01/info.nfo", b"nfo");
    fx.write("tv/Show/Show.S01/Sample/sample.mkv", &noise(3000, 17));
    let job = fx.job(20, "tv", "Show");
    (fx, job)
}

/// A single-file torrent that is an archive holding one folder.
fn archive_fixture() -> (Fixture, revaer_ipc::fsops::FsopsJob) {
    let fx = Fixture::new();
    let tar = common::tar_bytes(&[("Pack/a.mkv", &noise(60_000, 18)), ("Pack/b.nfo", b"nfo")]);
    fx.write("pack.tar.gz", &common::gzip_bytes(&tar));
    let job = fx.job(20, "", "pack.tar.gz");
    (fx, job)
}

/// Interrupts the job after every step (before and after its journal
/// entry), resumes it, and compares the library with an uninterrupted run.
fn resume_everywhere(make: &dyn Fn() -> (Fixture, revaer_ipc::fsops::FsopsJob), scratch: bool) {
    let (reference, job) = make();
    let run = reference.run(&job, None);
    let library_path = run.library_path();
    let expected = snapshot(&reference.library());
    for step in FsopsStep::ALL {
        for journaled in [false, true] {
            for from_scratch in [false, scratch] {
                let (fx, job) = make();
                let first = fx.run(&job, Some(CrashPoint { step, journaled }));
                assert_eq!(first.outcome, JobOutcome::Interrupted { before: step });
                assert_eq!(first.completed(), 0);
                // The API resumes at the step it last saw start (or, after a
                // failure-retry, from the beginning).
                let mut again = job.clone();
                again.resume_at = (!from_scratch).then_some(step);
                again.attempt = 2;
                let second = fx.run(&again, None);
                let ctx = format!("{step:?} journaled={journaled} from_scratch={from_scratch}");
                assert_eq!(
                    second.library_path(),
                    library_path,
                    "{ctx}: {:?}",
                    second.outcome
                );
                assert_eq!(second.completed(), 1, "{ctx}");
                if !from_scratch {
                    assert_eq!(
                        second.frames[0],
                        FsopsProgress::Started { job_id: 20, step },
                        "{ctx}"
                    );
                }
                assert_eq!(snapshot(&fx.library()), expected, "{ctx}");
                // Done is done: a third run changes nothing.
                let third = fx.run(&job, None);
                assert_eq!(
                    third.frames,
                    vec![
                        FsopsProgress::Started {
                            job_id: 20,
                            step: FsopsStep::Validate
                        },
                        FsopsProgress::Completed {
                            job_id: 20,
                            library_path: library_path.clone()
                        },
                    ],
                    "{ctx}"
                );
                assert!(matches!(third.outcome, JobOutcome::AlreadyDone { .. }));
            }
        }
    }
}

#[test]
fn a_job_interrupted_at_any_step_resumes_and_completes_once() {
    let (reference, job) = busy_fixture(MoveMode::Hardlink);
    let run = reference.run(&job, None);
    assert_eq!(run.library_path(), "Show");
    let expected = snapshot(&reference.library());
    assert!(
        expected.contains_key("Show/bonus/clip.mkv"),
        "{:?}",
        expected.keys()
    );
    assert!(!expected.contains_key("Show/info.nfo"));
    resume_everywhere(&|| busy_fixture(MoveMode::Hardlink), true);
}

#[test]
fn a_moving_job_interrupted_at_any_step_resumes() {
    resume_everywhere(&|| busy_fixture(MoveMode::Move), false);
}

#[test]
fn a_single_archive_job_interrupted_at_any_step_resumes() {
    let (fx, job) = archive_fixture();
    let run = fx.run(&job, None);
    assert_eq!(run.library_path(), "pack");
    let names: Vec<_> = snapshot(&fx.library()).into_keys().collect();
    assert_eq!(
        names,
        ["pack", "pack/a.mkv"],
        "unpacked, flattened, cleaned"
    );
    resume_everywhere(&archive_fixture, false);
}

/// Runs a single-archive torrent and expects the archive to be refused.
fn refused(fx: &Fixture, name: &str, bytes: &[u8], why: &str) {
    fx.write(&format!("Evil/{name}"), bytes);
    fx.write("Evil/ok.mkv", b"fine");
    let run = fx.run(&fx.job(30, "", "Evil"), None);
    let (step, reason) = run
        .failed()
        .unwrap_or_else(|| panic!("{name}: {:?}", run.outcome));
    assert_eq!(step, FsopsStep::Extract, "{name}: {reason}");
    assert!(
        reason.contains("refused") && reason.contains(why),
        "{name}: {reason}"
    );
    assert_eq!(run.completed(), 0);
    // Nothing outside, and nothing of the archive left inside.
    let outside = fx.tmp.path();
    for path in [
        "evil.txt",
        "escaped",
        "etc",
        "data/evil.txt",
        "data/escaped",
    ] {
        assert!(!outside.join(path).exists(), "{name}: {path} written");
    }
    let left: Vec<_> = snapshot(&fx.library().join("Evil")).into_keys().collect();
    let mut expected = vec![name.to_owned(), "ok.mkv".to_owned()];
    expected.sort();
    assert_eq!(left, expected, "{name}");
}

#[test]
fn malicious_archives_are_refused() {
    let fx = Fixture::new();
    refused(
        &fx,
        "slip.zip",
        &common::zip_bytes(&[("ok.dat", b"ok"), ("../../../evil.txt", b"x")]),
        "..",
    );
    let fx = Fixture::new();
    refused(
        &fx,
        "slip.tar",
        &common::tar_bytes(&[("a/../../evil.txt", b"x")]),
        "..",
    );
    let fx = Fixture::new();
    let absolute = fx
        .tmp
        .path()
        .join("evil.txt")
        .to_string_lossy()
        .into_owned();
    refused(
        &fx,
        "abs.tar",
        &common::tar_bytes(&[(absolute.as_str(), b"x")]),
        "absolute",
    );
    let fx = Fixture::new();
    refused(
        &fx,
        "abs.zip",
        &common::zip_bytes(&[(absolute.as_str(), b"x")]),
        "absolute",
    );
    let fx = Fixture::new();
    let outside = fx.tmp.path().to_string_lossy().into_owned();
    refused(
        &fx,
        "link.tar",
        &common::tar_special(tar::EntryType::Symlink, "escaped", &outside),
        "absolute",
    );
    let fx = Fixture::new();
    refused(
        &fx,
        "climb.tar",
        &common::tar_special(tar::EntryType::Symlink, "escaped", "../../../.."),
        "outside",
    );
    let fx = Fixture::new();
    refused(
        &fx,
        "link.zip",
        &common::zip_with_symlink("escaped", "../../../../etc"),
        "outside",
    );
    let fx = Fixture::new();
    refused(
        &fx,
        "dev.tar",
        &common::tar_special(tar::EntryType::Char, "null", ""),
        "device",
    );
    let fx = Fixture::new();
    refused(
        &fx,
        "fifo.tar",
        &common::tar_special(tar::EntryType::Fifo, "pipe", ""),
        "device",
    );
    // A bomb: 64 MiB of zeros deflate to ~64 KiB (ratio ~1000 > 200).
    let fx = Fixture::new();
    refused(
        &fx,
        "bomb.zip",
        &common::zip_bytes(&[("zeros.bin", &vec![0; 64 << 20])]),
        "ratio",
    );
    let fx = Fixture::new();
    let tar = common::tar_bytes(&[("zeros.bin", &vec![0; 64 << 20])]);
    refused(&fx, "bomb.tar.zst", &common::zstd_bytes(&tar), "ratio");
    // Byte and entry caps.
    let mut fx = Fixture::new();
    fx.config.max_extract_bytes = 1 << 20;
    refused(
        &fx,
        "big.tar",
        &common::tar_bytes(&[("big.bin", &noise(2 << 20, 18))]),
        "max_extract_bytes",
    );
    let mut fx = Fixture::new();
    fx.config.max_extract_entries = 3;
    let many: Vec<(String, Vec<u8>)> = (0..5).map(|i| (format!("f{i}.dat"), vec![1])).collect();
    let many: Vec<(&str, &[u8])> = many
        .iter()
        .map(|(n, d)| (n.as_str(), d.as_slice()))
        .collect();
    refused(
        &fx,
        "many.zip",
        &common::zip_bytes(&many),
        "max_extract_entries",
    );
    let fx = Fixture::new();
    refused(
        &fx,
        "slip.7z",
        &common::sevenz_bytes(&[("../evil.txt", b"x")]),
        "..",
    );
    // A partly unpacked archive is undone when a later entry is refused.
    let fx = Fixture::new();
    refused(
        &fx,
        "late.zip",
        &common::zip_bytes(&[("first/a.dat", b"a"), ("/abs.txt", b"x")]),
        "absolute",
    );
}

#[test]
fn crafted_jobs_cannot_leave_the_roots() {
    let fx = Fixture::new();
    fx.write("Show/a.mkv", b"a");
    let good = fx.job(40, "", "Show");
    let sentinel = fx.tmp.path().join("escaped");
    for (what, job) in [
        ("source /etc", {
            let mut j = good.clone();
            j.source = "/etc".into();
            j.name = "etc".into();
            j.files[0].path = "etc/passwd".into();
            j
        }),
        ("source ../", {
            let mut j = good.clone();
            j.source = "../../Show".into();
            j
        }),
        ("file ../", {
            let mut j = good.clone();
            j.files[0].path = "Show/../../../escaped".into();
            j
        }),
        ("file /etc", {
            let mut j = good.clone();
            j.files[0].path = "/etc/passwd".into();
            j
        }),
        ("category", {
            let mut j = good.clone();
            j.category = Some("x".repeat(300));
            j
        }),
    ] {
        let run = fx.run(&job, None);
        let (step, reason) = run
            .failed()
            .unwrap_or_else(|| panic!("{what}: {:?}", run.outcome));
        assert_eq!(step, FsopsStep::Validate, "{what}: {reason}");
        assert!(reason.starts_with("invalid job"), "{what}: {reason}");
        assert!(!sentinel.exists());
    }
    assert!(snapshot(&fx.library()).is_empty(), "nothing was written");

    // A symlink planted in the downloads dir is not followed out of it.
    let fx = Fixture::new();
    std::fs::create_dir_all(fx.downloads().join("Show")).unwrap();
    std::fs::write(fx.tmp.path().join("secret"), b"secret").unwrap();
    std::os::unix::fs::symlink(
        fx.tmp.path().join("secret"),
        fx.downloads().join("Show/a.mkv"),
    )
    .unwrap();
    let mut job = good.clone();
    job.files[0].size = 6;
    let run = fx.run(&job, None);
    let (step, reason) = run.failed().unwrap();
    assert_eq!(step, FsopsStep::LocateSource, "{reason}");
    assert!(snapshot(&fx.library()).is_empty());
}

#[test]
fn an_existing_library_item_is_not_overwritten() {
    let fx = Fixture::new();
    fx.write("Show/a.mkv", b"new");
    std::fs::create_dir_all(fx.library().join("Show")).unwrap();
    std::fs::write(fx.library().join("Show/a.mkv"), b"someone else's").unwrap();
    let run = fx.run(&fx.job(41, "", "Show"), None);
    let (step, reason) = run.failed().unwrap();
    assert_eq!(step, FsopsStep::Prepare, "{reason}");
    assert!(reason.contains("did not create"), "{reason}");
    assert_eq!(
        std::fs::read(fx.library().join("Show/a.mkv")).unwrap(),
        b"someone else's"
    );
}
