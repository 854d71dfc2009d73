//! FsOps inside its real sandbox: a job works, while a crafted job and
//! direct writes outside the downloads dir and the library are refused, and
//! no network socket can be opened. Runs `examples/sandboxed_job` in a
//! child process (the sandbox is irreversible; the test runner is never
//! sandboxed).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::os::unix::fs::MetadataExt as _;
use std::path::PathBuf;

fn helper() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(std::path::Path::parent).unwrap();
    let helper = profile_dir.join("examples").join("sandboxed_job");
    assert!(
        helper.exists(),
        "{} missing: run `cargo test -p revaer-fsops` (it builds examples) or \
         `cargo build -p revaer-fsops --examples`",
        helper.display()
    );
    // `cargo test --test sandbox` rebuilds this test but not the example.
    let built = std::fs::metadata(&helper).unwrap().modified().unwrap();
    let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    for dir in ["src", "examples"] {
        for entry in std::fs::read_dir(crate_dir.join(dir)).unwrap() {
            let modified = entry.unwrap().metadata().unwrap().modified().unwrap();
            assert!(
                modified <= built,
                "{} is older than the sources: run `cargo test -p revaer-fsops` without \
                 `--test` (or `cargo build -p revaer-fsops --examples`)",
                helper.display()
            );
        }
    }
    helper
}

#[test]
fn the_sandbox_confines_fsops_to_its_roots() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let outside = tmp.path().join("outside");
    for dir in [
        data.join("downloads/Show"),
        data.join("library"),
        data.join("run"),
        outside.clone(),
    ] {
        std::fs::create_dir_all(dir).unwrap();
    }
    std::fs::write(data.join("downloads/Show/e01.mkv"), b"episode one").unwrap();
    std::fs::create_dir_all(outside.join("Show")).unwrap();
    std::fs::write(outside.join("Show/e01.mkv"), b"episode one").unwrap();

    let out = std::process::Command::new(helper())
        .arg(&data)
        .arg(&outside)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = |key: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("no {key} in {stdout}"))
            .to_owned()
    };
    assert_eq!(line("job"), "completed Show", "{stdout}");
    let linked = data.join("library/Show/e01.mkv");
    assert_eq!(
        std::fs::metadata(&linked).unwrap().ino(),
        std::fs::metadata(data.join("downloads/Show/e01.mkv"))
            .unwrap()
            .ino()
    );
    assert_eq!(line("crafted"), "failed validate", "{stdout}");
    assert!(
        !data
            .join("library/.revaer")
            .join(format!("{}.json", "08".repeat(20)))
            .exists()
    );
    let eacces = format!("error {}", nix::libc::EACCES);
    let landlock = line("landlock");
    if landlock == "not_enforced" {
        eprintln!("Landlock is not available on this kernel: outside writes not checked");
    } else {
        assert_eq!(line("outside_write"), eacces, "{stdout}");
        assert_eq!(line("data_write"), eacces, "{stdout}");
        assert!(!outside.join("evil.txt").exists());
    }
    assert_eq!(line("inet"), eacces, "{stdout}");
}
