//! Proves each restriction of `revaer_sandbox::apply` bites, in real
//! processes: every test runs `examples/sandbox_probe` (built by
//! `cargo test`; a bare `cargo test --test sandbox` does not rebuild it, so
//! the tests refuse a probe older than the sources) with fresh temp dirs
//! and checks what the probe could and could not do. The test runner itself
//! is never sandboxed.
//!
//! A control test runs the same probes without a sandbox, so every "denied"
//! below is known to come from the sandbox, not from the environment.
//! These tests expect root (as here and on CI): the identity switch and
//! kept-capability paths only exist for root; unprivileged runs check the
//! documented fallbacks instead.

// Helpers outside `#[test]` fns are not covered by clippy's
// allow-*-in-tests settings; in this file a panic is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::SystemTime;

use revaer_sandbox::SandboxReport;

const NOBODY: u32 = 65534;

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "revaer-sandbox-{tag}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    /// A subdirectory with the given mode.
    fn dir(&self, name: &str, mode: u32) -> PathBuf {
        let p = self.0.join(name);
        std::fs::create_dir(&p).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The layout every test uses: a read-write tree, a read-only tree with a
/// file, and an "outside" tree with a file. `outside` is world-writable so
/// that only Landlock can be the reason a write there fails.
struct Layout {
    _tmp: TempDir,
    rw: PathBuf,
    ro: PathBuf,
    outside: PathBuf,
    /// A lone file granted read-only (like `/etc/resolv.conf`).
    single: PathBuf,
}

impl Layout {
    fn new(tag: &str) -> Self {
        let tmp = TempDir::new(tag);
        std::fs::set_permissions(&tmp.0, std::fs::Permissions::from_mode(0o755)).unwrap();
        let rw = tmp.dir("rw", 0o777);
        let ro = tmp.dir("ro", 0o755);
        let outside = tmp.dir("outside", 0o777);
        std::fs::write(ro.join("file"), b"ro").unwrap();
        std::fs::write(outside.join("file"), b"outside").unwrap();
        let single = tmp.0.join("single");
        std::fs::write(&single, b"single").unwrap();
        for f in [ro.join("file"), outside.join("file"), single.clone()] {
            std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        Layout {
            _tmp: tmp,
            rw,
            ro,
            outside,
            single,
        }
    }
}

fn probe_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(Path::parent).unwrap();
    let probe = profile_dir.join("examples").join("sandbox_probe");
    assert!(
        probe.is_file(),
        "{} missing: run `cargo test -p revaer-sandbox` (it builds examples) or \
         `cargo build -p revaer-sandbox --examples`",
        probe.display()
    );
    // `cargo test --test sandbox` rebuilds this test but not the example:
    // refuse to pass against a probe built from older sources.
    let built = std::fs::metadata(&probe).unwrap().modified().unwrap();
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let sources = ["src", "examples", "Cargo.toml"].map(|p| crate_dir.join(p));
    let newest = sources.iter().map(|p| newest_mtime(p)).max().unwrap();
    assert!(
        built >= newest,
        "{} is older than the crate's sources: run `cargo test -p revaer-sandbox` \
         without `--test` (or `cargo build -p revaer-sandbox --examples`) to rebuild it",
        probe.display()
    );
    probe
}

fn newest_mtime(path: &Path) -> SystemTime {
    let meta = std::fs::metadata(path).unwrap();
    let own = meta.modified().unwrap();
    if !meta.is_dir() {
        return own;
    }
    std::fs::read_dir(path)
        .unwrap()
        .map(|e| newest_mtime(&e.unwrap().path()))
        .fold(own, SystemTime::max)
}

/// Parsed output of one probe run.
struct Probe {
    lines: HashMap<String, String>,
    raw: String,
}

impl Probe {
    fn get(&self, key: &str) -> &str {
        self.lines
            .get(key)
            .unwrap_or_else(|| panic!("probe printed no `{key}=` line; output:\n{}", self.raw))
    }

    fn expect(&self, key: &str, want: &str) {
        assert_eq!(
            self.get(key),
            want,
            "`{key}`; full probe output:\n{}",
            self.raw
        );
    }

    fn report(&self, key: &str) -> SandboxReport {
        serde_json::from_str(self.get(key)).unwrap()
    }

    fn fds(&self, key: &str) -> Vec<i32> {
        self.get(key)
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().unwrap())
            .collect()
    }
}

fn run_with(mut cmd: Command, args: &[String]) -> Probe {
    let out = cmd.args(args).output().unwrap();
    let raw = format!(
        "{}\n--- stderr ---\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "probe {args:?} failed ({}):\n{raw}",
        out.status
    );
    let lines = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    Probe { lines, raw }
}

fn run(args: &[String]) -> Probe {
    run_with(Command::new(probe_binary()), args)
}

fn s(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|p| (*p).to_owned()).collect()
}

fn p(prefix: &str, path: &Path) -> String {
    format!("{prefix}:{}", path.display())
}

fn assert_fully_sandboxed(probe: &Probe, report: &SandboxReport) {
    assert!(report.no_new_privs, "{}", probe.raw);
    assert!(report.seccomp, "{}", probe.raw);
    assert_eq!(report.landlock_status, "fully_enforced", "{}", probe.raw);
    assert!(
        report.landlock_abi.is_some_and(|abi| abi >= 5),
        "{}",
        probe.raw
    );
    assert_eq!(report.umask, 0o077);
    assert!(!report.core_dumps);
    for name in [
        "ptrace",
        "mount",
        "unshare",
        "setns",
        "bpf",
        "kexec_load",
        "init_module",
    ] {
        assert!(
            report.seccomp_denied.iter().any(|d| d == name),
            "{name} not denied"
        );
    }
    probe.expect("status.NoNewPrivs", "1");
    probe.expect("status.Seccomp", "2");
    probe.expect("status.Umask", "0077");
    probe.expect("status.CapInh", "0000000000000000");
    probe.expect("status.CapAmb", "0000000000000000");
    probe.expect("unshare", "EPERM");
    probe.expect("ptrace", "EPERM");
    probe.expect("thread", "ok");
    probe.expect("dumpable", "0");
    probe.expect("rlimit_core", "0:0");
}

/// The common probes, in an order that keeps `unshare` last (if it were
/// allowed it would change the probe's user namespace).
fn common_probes(l: &Layout) -> Vec<String> {
    vec![
        p("write", &l.rw.join("new")),
        p("mkfile", &l.rw.join("made")),
        p("write", &l.outside.join("new")),
        p("read", &l.outside.join("file")),
        p("read", &l.ro.join("file")),
        p("write", &l.ro.join("new")),
        "inet".into(),
        "inet6".into(),
        "unix".into(),
        "ptrace".into(),
        "thread".into(),
        "dumpable".into(),
        "rlimit_core".into(),
        "status".into(),
        "fds".into(),
        "unshare".into(),
    ]
}

#[test]
fn control_without_sandbox_every_probe_succeeds() {
    let l = Layout::new("control");
    let mut args = s(&["--no-apply"]);
    args.extend(common_probes(&l));
    let probe = run(&args);

    probe.expect(&p("write", &l.outside.join("new")), "ok");
    probe.expect(&p("read", &l.outside.join("file")), "ok");
    probe.expect(&p("write", &l.ro.join("new")), "ok");
    probe.expect("inet", "ok");
    probe.expect("unix", "ok");
    // Not traced by us: the kernel itself answers ESRCH, seccomp answers EPERM.
    probe.expect("ptrace", "ESRCH");
    probe.expect("unshare", "ok");
    probe.expect("status.NoNewPrivs", "0");
    probe.expect("status.Seccomp", "0");
    probe.expect("dumpable", "1");
    if is_root() {
        assert_ne!(
            probe.get("status.CapEff"),
            "0000000000000000",
            "root starts with capabilities"
        );
        assert_ne!(probe.get("status.CapBnd"), "0000000000000000");
    }
}

#[test]
fn engine_like_profile_confines_files_and_syscalls() {
    let l = Layout::new("engine");
    let mut args = vec![
        "--rw".into(),
        l.rw.display().to_string(),
        "--ro".into(),
        l.ro.display().to_string(),
        // Missing trees are skipped, not fatal.
        "--ro".into(),
        "/nonexistent/revaer-sandbox".into(),
        "--ro".into(),
        l.single.display().to_string(),
        "--apply-twice".into(),
        p("read", &l.single),
        p("write", &l.single),
    ];
    args.extend(common_probes(&l));
    let probe = run(&args);
    let report = probe.report("report");
    assert_fully_sandboxed(&probe, &report);

    // Landlock: rw tree writable, ro tree readable only, everything else denied.
    probe.expect(&p("write", &l.rw.join("new")), "ok");
    probe.expect(&p("mkfile", &l.rw.join("made")), "ok");
    probe.expect(&p("write", &l.outside.join("new")), "EACCES");
    probe.expect(&p("read", &l.outside.join("file")), "EACCES");
    probe.expect(&p("read", &l.ro.join("file")), "ok");
    probe.expect(&p("write", &l.ro.join("new")), "EACCES");
    probe.expect(&p("read", &l.single), "ok");
    probe.expect(&p("write", &l.single), "EACCES");
    assert!(!l.outside.join("new").exists());
    assert!(!l.ro.join("new").exists());

    // umask 077: a file created with 0666 ends up 0600.
    let made = std::fs::metadata(l.rw.join("made")).unwrap();
    assert_eq!(made.mode() & 0o777, 0o600);

    // The engine keeps the network.
    probe.expect("inet", "ok");
    probe.expect("unix", "ok");
    let inet6 = probe.get("inet6");
    assert!(inet6 != "EACCES" && inet6 != "EPERM", "inet6={inet6}");
    assert!(
        !report
            .seccomp_denied
            .iter()
            .any(|d| d.starts_with("socket"))
    );

    // No capabilities left anywhere (root started with all of them).
    assert!(report.capabilities.is_empty(), "{:?}", report.capabilities);
    probe.expect("status.CapEff", "0000000000000000");
    probe.expect("status.CapPrm", "0000000000000000");
    if is_root() {
        probe.expect("status.CapBnd", "0000000000000000");
    }

    // No identity switch requested: still whoever we started as.
    assert_eq!(report.uid, nix::unistd::getuid().as_raw());

    // apply is once-only; current_report re-reads the same state.
    probe.expect("second_apply", "AlreadyApplied");
    assert_eq!(probe.report("current"), report);
}

#[test]
fn fsops_like_profile_refuses_inet_sockets_only() {
    let l = Layout::new("fsops");
    let args = vec![
        "--rw".into(),
        l.rw.display().to_string(),
        "--deny-inet".into(),
        "inet".into(),
        "inet6".into(),
        "unix".into(),
        p("write", &l.rw.join("new")),
        p("write", &l.outside.join("new")),
        "status".into(),
        "thread".into(),
        "ptrace".into(),
        "dumpable".into(),
        "rlimit_core".into(),
        "unshare".into(),
    ];
    let probe = run(&args);
    let report = probe.report("report");
    assert_fully_sandboxed(&probe, &report);

    probe.expect("inet", "EACCES");
    probe.expect("inet6", "EACCES");
    probe.expect("unix", "ok");
    probe.expect(&p("write", &l.rw.join("new")), "ok");
    probe.expect(&p("write", &l.outside.join("new")), "EACCES");
    for entry in ["socket(AF_INET)", "socket(AF_INET6)"] {
        assert!(report.seccomp_denied.iter().any(|d| d == entry), "{entry}");
    }
}

#[test]
fn inherited_descriptors_are_closed() {
    let l = Layout::new("fds");
    let args = vec![
        "--leak".into(),
        "3".into(),
        "--rw".into(),
        l.rw.display().to_string(),
        "fds".into(),
    ];
    let probe = run(&args);
    let leaked = probe.fds("leaked");
    let keep = probe.fds("keep_fds");
    let before = probe.fds("fds_before");
    assert_eq!(leaked.len(), 3);
    assert!(
        leaked.iter().all(|fd| before.contains(fd)),
        "really inherited: {before:?}"
    );

    let mut expected = vec![0, 1, 2];
    expected.extend(&keep);
    expected.sort_unstable();
    assert_eq!(
        probe.fds("fds"),
        expected,
        "only stdio and keep_fds survive"
    );

    let closed = probe.report("report").inherited_fds_closed;
    assert!(closed >= 3, "reported {closed} closed; before={before:?}");
    assert_eq!(
        usize::try_from(closed).unwrap(),
        before.len() - expected.len()
    );
}

#[test]
fn root_switches_identity_and_drops_everything() {
    let l = Layout::new("identity");
    let args = vec![
        "--rw".into(),
        l.rw.display().to_string(),
        "--switch".into(),
        format!("{NOBODY}:{NOBODY}"),
        p("mkfile", &l.rw.join("owned")),
        p("chown", &l.rw.join("owned")) + ":4242",
        p("write", &l.outside.join("new")),
        "status".into(),
        "thread".into(),
        "ptrace".into(),
        "dumpable".into(),
        "rlimit_core".into(),
        "unshare".into(),
    ];
    let probe = run(&args);
    let report = probe.report("report");
    assert_fully_sandboxed(&probe, &report);
    probe.expect(&p("write", &l.outside.join("new")), "EACCES");
    probe.expect(&p("mkfile", &l.rw.join("owned")), "ok");
    let owned = std::fs::metadata(l.rw.join("owned")).unwrap();

    if is_root() {
        assert_eq!((report.uid, report.gid), (NOBODY, NOBODY));
        probe.expect("status.Uid", "65534 65534 65534 65534");
        probe.expect("status.Gid", "65534 65534 65534 65534");
        probe.expect("status.Groups", "65534");
        assert_eq!((owned.uid(), owned.gid()), (NOBODY, NOBODY));
        // No CAP_CHOWN kept: giving the file away is refused.
        probe.expect(&(p("chown", &l.rw.join("owned")) + ":4242"), "EPERM");
        probe.expect("status.CapPrm", "0000000000000000");
        probe.expect("status.CapEff", "0000000000000000");
        probe.expect("status.CapBnd", "0000000000000000");
    } else {
        // Not root: the switch is ignored with a warning, apply still succeeds.
        assert_eq!(report.uid, nix::unistd::getuid().as_raw());
    }
}

#[test]
fn fsops_keeps_chown_and_fowner_across_the_switch() {
    let l = Layout::new("keepcaps");
    let args = vec![
        "--rw".into(),
        l.rw.display().to_string(),
        "--deny-inet".into(),
        "--switch".into(),
        format!("{NOBODY}:{NOBODY}"),
        "--keep-cap".into(),
        "CAP_CHOWN".into(),
        "--keep-cap".into(),
        "CAP_FOWNER".into(),
        p("mkfile", &l.rw.join("job")),
        p("chown", &l.rw.join("job")) + ":4242",
        "inet".into(),
        "status".into(),
        "thread".into(),
        "ptrace".into(),
        "dumpable".into(),
        "rlimit_core".into(),
        "unshare".into(),
    ];
    let probe = run(&args);
    let report = probe.report("report");
    assert_fully_sandboxed(&probe, &report);
    probe.expect("inet", "EACCES");

    if is_root() {
        assert_eq!((report.uid, report.gid), (NOBODY, NOBODY));
        assert_eq!(report.capabilities, ["CAP_CHOWN", "CAP_FOWNER"]);
        // CAP_CHOWN (bit 0) and CAP_FOWNER (bit 3), and nothing else anywhere.
        probe.expect("status.CapEff", "0000000000000009");
        probe.expect("status.CapPrm", "0000000000000009");
        probe.expect("status.CapBnd", "0000000000000009");
        probe.expect(&(p("chown", &l.rw.join("job")) + ":4242"), "ok");
        assert_eq!(std::fs::metadata(l.rw.join("job")).unwrap().uid(), 4242);
    } else {
        // Nothing to keep when nothing was permitted.
        assert!(report.capabilities.is_empty());
    }
}

#[test]
fn unprivileged_worker_gets_the_same_confinement() {
    let l = Layout::new("unpriv");
    // A copy nobody can execute, wherever the target dir lives.
    let bin_dir = TempDir::new("unpriv-bin");
    std::fs::set_permissions(&bin_dir.0, std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = bin_dir.0.join("sandbox_probe");
    std::fs::copy(probe_binary(), &bin).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();

    let mut cmd = Command::new(&bin);
    if is_root() {
        cmd.uid(NOBODY).gid(NOBODY);
    }
    let mut args = vec![
        "--rw".into(),
        l.rw.display().to_string(),
        "--ro".into(),
        l.ro.display().to_string(),
        // Ignored (with a warning) when not root.
        "--switch".into(),
        "1234:1234".into(),
    ];
    args.extend(common_probes(&l));
    let probe = run_with(cmd, &args);
    let report = probe.report("report");
    assert_fully_sandboxed(&probe, &report);

    let expected_uid = if is_root() {
        NOBODY
    } else {
        nix::unistd::getuid().as_raw()
    };
    assert_eq!(
        report.uid, expected_uid,
        "switch_identity ignored when unprivileged"
    );
    assert!(report.capabilities.is_empty());
    probe.expect("status.CapEff", "0000000000000000");
    // `outside` is world-writable: only Landlock can refuse these.
    probe.expect(&p("write", &l.outside.join("new")), "EACCES");
    probe.expect(&p("read", &l.outside.join("file")), "EACCES");
    probe.expect(&p("write", &l.rw.join("new")), "ok");
    probe.expect(&p("read", &l.ro.join("file")), "ok");
    probe.expect(&p("write", &l.ro.join("new")), "EACCES");
    probe.expect("inet", "ok");
}
