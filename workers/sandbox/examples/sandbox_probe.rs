//! Test helper for `tests/sandbox.rs`: applies a sandbox profile described on
//! the command line to *this* process, then tries things the sandbox must
//! allow or refuse and prints one `key=value` line per result. It exists so
//! the tests can prove each restriction bites in a real process without ever
//! sandboxing the test runner. Not shipped; built by `cargo test`.
//!
//! ```text
//! sandbox_probe [--no-apply] [--rw PATH].. [--ro PATH].. [--deny-inet]
//!               [--keep-cap CAP_NAME].. [--switch UID:GID] [--leak N]
//!               [--apply-twice] [PROBE]..
//! PROBE: write:PATH read:PATH mkfile:PATH chown:PATH:UID inet inet6 unix
//!        ptrace thread status fds dumpable rlimit_core unshare
//! ```
//!
//! Output: `fds_before=`, `keep_fds=`, `leaked=`, then `report=<json>` and
//! `current=<json>` (unless `--no-apply`), then one line per probe, e.g.
//! `write:/tmp/x=EACCES`, `inet=ok`, `status.Seccomp=2`. A failed `apply`
//! prints `apply_error=...` and exits 3.
//!
//! `--leak N` first opens N descriptors *without* `O_CLOEXEC` and re-executes
//! itself, so the second image really inherits them (`leaked=` lists them).
//! `/proc/self/status` and `/proc/self/fd` are opened before `apply` and kept
//! through `keep_fds`, because Landlock forbids opening them afterwards.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, IntoRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::PathBuf;
use std::process::ExitCode;
use std::str::FromStr;

use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::socket::{AddressFamily, SockFlag, SockType, socket};
use nix::sys::stat::Mode;
use revaer_sandbox::{
    Capability, SandboxError, SandboxProfile, SandboxReport, apply, current_report,
};

#[derive(Debug, Default)]
struct Args {
    no_apply: bool,
    apply_twice: bool,
    leak: usize,
    leaked: Vec<RawFd>,
    profile: SandboxProfile,
    probes: Vec<String>,
}

fn parse(raw: &[String]) -> Result<Args, String> {
    let mut args = Args {
        profile: SandboxProfile {
            name: "probe",
            ..SandboxProfile::default()
        },
        ..Args::default()
    };
    let mut it = raw.iter();
    while let Some(arg) = it.next() {
        let mut value = || it.next().cloned().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--no-apply" => args.no_apply = true,
            "--apply-twice" => args.apply_twice = true,
            "--deny-inet" => args.profile.deny_inet_sockets = true,
            "--rw" => args.profile.read_write.push(PathBuf::from(value()?)),
            "--ro" => args.profile.read_only.push(PathBuf::from(value()?)),
            "--keep-cap" => {
                let name = value()?;
                let cap = Capability::from_str(&name).map_err(|e| format!("{name}: {e}"))?;
                args.profile.keep_capabilities.push(cap);
            }
            "--switch" => {
                let v = value()?;
                let (uid, gid) = v.split_once(':').ok_or("--switch UID:GID")?;
                let uid = uid.parse().map_err(|_| "bad uid")?;
                let gid = gid.parse().map_err(|_| "bad gid")?;
                args.profile.switch_identity = Some((uid, gid));
            }
            "--leak" => args.leak = value()?.parse().map_err(|_| "bad --leak")?,
            "--leaked" => {
                for n in value()?.split(',').filter(|s| !s.is_empty()) {
                    args.leaked.push(n.parse().map_err(|_| "bad --leaked")?);
                }
            }
            probe => args.probes.push(probe.to_owned()),
        }
    }
    Ok(args)
}

/// Opens `n` descriptors without `O_CLOEXEC` and re-executes this binary
/// with `--leaked a,b,c` in place of `--leak n`. Returns only on failure.
fn leak_and_reexec(raw: &[String], n: usize) -> String {
    let mut leaked = Vec::with_capacity(n);
    for _ in 0..n {
        match nix::fcntl::open("/dev/null", OFlag::O_RDONLY, Mode::empty()) {
            Ok(fd) => leaked.push(fd.into_raw_fd().to_string()),
            Err(e) => return format!("open /dev/null: {e}"),
        }
    }
    let mut argv = Vec::with_capacity(raw.len() + 3);
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => return format!("current_exe: {e}"),
    };
    let to_c = |bytes: &[u8]| CString::new(bytes).map_err(|e| e.to_string());
    let exe_c = match to_c(exe.as_os_str().as_bytes()) {
        Ok(c) => c,
        Err(e) => return e,
    };
    argv.push(exe_c.clone());
    let mut skip_next = false;
    for arg in raw {
        if skip_next {
            skip_next = false;
            continue;
        }
        if arg == "--leak" {
            skip_next = true;
            continue;
        }
        match to_c(arg.as_bytes()) {
            Ok(c) => argv.push(c),
            Err(e) => return e,
        }
    }
    for extra in ["--leaked".to_owned(), leaked.join(",")] {
        match to_c(extra.as_bytes()) {
            Ok(c) => argv.push(c),
            Err(e) => return e,
        }
    }
    match nix::unistd::execv(&exe_c, &argv) {
        Ok(never) => match never {},
        Err(e) => format!("execv: {e}"),
    }
}

fn io_outcome<T>(r: io::Result<T>) -> String {
    match r {
        Ok(_) => "ok".to_owned(),
        Err(e) => e
            .raw_os_error()
            .map_or_else(|| e.to_string(), |n| format!("{:?}", Errno::from_raw(n))),
    }
}

fn nix_outcome<T>(r: nix::Result<T>) -> String {
    r.map_or_else(|e| format!("{e:?}"), |_| "ok".to_owned())
}

fn list_fds(dir: &mut Dir) -> String {
    let mut fds: Vec<RawFd> = dir
        .iter()
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str().ok()?.parse().ok())
        .collect();
    fds.sort_unstable();
    fds.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

fn read_status(file: &File) -> io::Result<String> {
    let mut out = Vec::new();
    let mut buf = [0_u8; 4096];
    loop {
        let offset = u64::try_from(out.len()).map_err(io::Error::other)?;
        let n = file.read_at(&mut buf, offset)?;
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    String::from_utf8(out).map_err(io::Error::other)
}

const STATUS_KEYS: &[&str] = &[
    "Uid",
    "Gid",
    "Groups",
    "Umask",
    "NoNewPrivs",
    "Seccomp",
    "Seccomp_filters",
    "CapInh",
    "CapPrm",
    "CapEff",
    "CapBnd",
    "CapAmb",
];

fn socket_probe(family: AddressFamily) -> String {
    nix_outcome(socket(
        family,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    ))
}

fn run_probe(probe: &str, status: &File, fd_dir: &mut Dir) -> Vec<String> {
    let (kind, rest) = probe.split_once(':').unwrap_or((probe, ""));
    let line = |v: String| vec![format!("{probe}={v}")];
    match kind {
        "write" => line(io_outcome(std::fs::write(rest, b"probe"))),
        "read" => line(io_outcome(std::fs::read(rest))),
        "mkfile" => line(io_outcome(
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o666)
                .open(rest),
        )),
        "chown" => {
            let Some((path, uid)) = rest.rsplit_once(':') else {
                return line("usage chown:PATH:UID".to_owned());
            };
            match uid.parse::<u32>() {
                Ok(uid) => line(io_outcome(std::os::unix::fs::chown(path, Some(uid), None))),
                Err(e) => line(e.to_string()),
            }
        }
        "inet" => line(socket_probe(AddressFamily::Inet)),
        "inet6" => line(socket_probe(AddressFamily::Inet6)),
        "unix" => line(socket_probe(AddressFamily::Unix)),
        "ptrace" => line(nix_outcome(nix::sys::ptrace::read(
            nix::unistd::getppid(),
            std::ptr::null_mut(),
        ))),
        "unshare" => line(nix_outcome(nix::sched::unshare(
            nix::sched::CloneFlags::CLONE_NEWUSER,
        ))),
        "thread" => line(match std::thread::spawn(|| 42).join() {
            Ok(42) => "ok".to_owned(),
            other => format!("{other:?}"),
        }),
        "dumpable" => line(match nix::sys::prctl::get_dumpable() {
            Ok(d) => u8::from(d).to_string(),
            Err(e) => format!("{e:?}"),
        }),
        "rlimit_core" => line(
            match nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_CORE) {
                Ok((soft, hard)) => format!("{soft}:{hard}"),
                Err(e) => format!("{e:?}"),
            },
        ),
        "fds" => line(list_fds(fd_dir)),
        "status" => match read_status(status) {
            Ok(text) => text
                .lines()
                .filter_map(|l| l.split_once(':'))
                .filter(|(k, _)| STATUS_KEYS.contains(k))
                .map(|(k, v)| {
                    format!(
                        "status.{k}={}",
                        v.split_whitespace().collect::<Vec<_>>().join(" ")
                    )
                })
                .collect(),
            Err(e) => line(io_outcome::<()>(Err(e))),
        },
        _ => line("unknown-probe".to_owned()),
    }
}

fn json(v: &SandboxReport) -> String {
    serde_json::to_string(v).unwrap_or_else(|e| format!("\"<{e}>\""))
}

fn main() -> ExitCode {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    let mut args = match parse(&raw) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("sandbox_probe: {e}");
            return ExitCode::from(2);
        }
    };
    if args.leak > 0 {
        eprintln!("sandbox_probe: {}", leak_and_reexec(&raw, args.leak));
        return ExitCode::from(2);
    }

    let status = match File::open("/proc/self/status") {
        Ok(f) => f,
        Err(e) => {
            eprintln!("sandbox_probe: /proc/self/status: {e}");
            return ExitCode::from(2);
        }
    };
    let mut fd_dir = match Dir::open(
        "/proc/self/fd",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("sandbox_probe: /proc/self/fd: {e}");
            return ExitCode::from(2);
        }
    };
    args.profile.keep_fds = vec![status.as_raw_fd(), fd_dir.as_raw_fd()];
    let join = |fds: &[RawFd]| {
        fds.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",")
    };
    println!("fds_before={}", list_fds(&mut fd_dir));
    println!("keep_fds={}", join(&args.profile.keep_fds));
    println!("leaked={}", join(&args.leaked));

    if !args.no_apply {
        match apply(&args.profile) {
            Ok(report) => println!("report={}", json(&report)),
            Err(e) => {
                println!("apply_error={e}");
                return ExitCode::from(3);
            }
        }
        if args.apply_twice {
            let second = match apply(&args.profile) {
                Err(SandboxError::AlreadyApplied) => "AlreadyApplied".to_owned(),
                other => format!("{other:?}"),
            };
            println!("second_apply={second}");
        }
        println!("current={}", json(&current_report()));
    }

    for probe in &args.probes {
        for line in run_probe(probe, &status, &mut fd_dir) {
            println!("{line}");
        }
    }
    ExitCode::SUCCESS
}
