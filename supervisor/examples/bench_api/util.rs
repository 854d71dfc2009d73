//! Process, `/proc` and file helpers of the API bench.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Set by SIGINT/SIGTERM: every wait gives up and the guards clean up.
static STOP: AtomicBool = AtomicBool::new(false);

pub fn stop_requested() -> bool {
    STOP.load(Ordering::Acquire)
}

/// Set by `--smoke`: the waits for a quiet machine or process return at
/// once and measurements are not repeated.
static SMOKE: AtomicBool = AtomicBool::new(false);

pub fn set_smoke() {
    SMOKE.store(true, Ordering::Release);
}

pub fn smoke() -> bool {
    SMOKE.load(Ordering::Acquire)
}

/// Turns SIGINT and SIGTERM into [`stop_requested`] (a thread of its own
/// waits for them), so that an interrupted run still stops its children and
/// deletes its files.
pub fn install_stop_handler() -> Result<(), BoxError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (mut term, mut int) = runtime.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        Ok::<_, std::io::Error>((
            signal(SignalKind::terminate())?,
            signal(SignalKind::interrupt())?,
        ))
    })?;
    std::thread::Builder::new()
        .name("signals".to_owned())
        .spawn(move || {
            runtime.block_on(async {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            });
            STOP.store(true, Ordering::Release);
            eprintln!("bench-api: interrupted; stopping children and cleaning up");
        })?;
    Ok(())
}

/// Polls `f` every `every` until it yields a value, the deadline passes or
/// the bench is interrupted.
pub fn poll_until<T>(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut f: impl FnMut() -> Result<Option<T>, BoxError>,
) -> Result<T, BoxError> {
    let deadline = Instant::now() + timeout;
    loop {
        if stop_requested() {
            return Err(format!("interrupted while waiting for {what}").into());
        }
        if let Some(value) = f()? {
            return Ok(value);
        }
        if Instant::now() >= deadline {
            return Err(
                format!("timed out after {} s waiting for {what}", timeout.as_secs()).into(),
            );
        }
        std::thread::sleep(every);
    }
}

/// Seconds per clock tick of `/proc/<pid>/stat`.
fn tick_seconds() -> f64 {
    let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .filter(|&t| t > 0)
        .unwrap_or(100);
    #[allow(clippy::cast_precision_loss)]
    let ticks = ticks as f64;
    1.0 / ticks
}

/// The fields of `/proc/<pid>/stat` after the command name (which may
/// itself hold spaces and `)`): index 0 is field 3 (state).
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// User + system CPU seconds of `pid` so far (all its threads).
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let fields = stat_fields(pid)?;
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    #[allow(clippy::cast_precision_loss)]
    let ticks = (utime + stime) as f64;
    Some(ticks * tick_seconds())
}

/// Parent pid of `pid`.
fn parent_of(pid: u32) -> Option<u32> {
    stat_fields(pid)?.get(1)?.parse().ok()
}

/// `pid` and every live descendant of it (from `/proc`), `pid` first.
pub fn process_tree(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return vec![pid];
    };
    let all: Vec<(u32, u32)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|p| Some((p, parent_of(p)?)))
        .collect();
    let mut tree = vec![pid];
    let mut i = 0;
    while let Some(&current) = tree.get(i) {
        for &(child, parent) in &all {
            if parent == current && !tree.contains(&child) {
                tree.push(child);
            }
        }
        i += 1;
    }
    tree
}

/// A `/proc/<pid>/status` value in KiB (`VmRSS`, `VmHWM`, ...).
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The executable name of `pid` (`/proc/<pid>/comm`).
pub fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map_or_else(|_| format!("pid {pid}"), |s| s.trim().to_owned())
}

/// Resident memory of one process at one moment.
#[derive(Debug, Clone)]
pub struct RssSample {
    pub name: String,
    pub rss_kib: u64,
    pub hwm_kib: u64,
}

/// `VmRSS` (and peak `VmHWM`) of `pid` and all its descendants.
pub fn tree_rss(pid: u32) -> Vec<RssSample> {
    process_tree(pid)
        .into_iter()
        .filter_map(|p| {
            Some(RssSample {
                name: comm(p),
                rss_kib: status_kib(p, "VmRSS")?,
                hwm_kib: status_kib(p, "VmHWM").unwrap_or(0),
            })
        })
        .collect()
}

/// Total CPU seconds of `pids` (processes that vanished count 0).
pub fn cpu_of(pids: &[u32]) -> Vec<(u32, f64)> {
    pids.iter()
        .map(|&p| (p, cpu_seconds(p).unwrap_or(0.0)))
        .collect()
}

/// Waits until the processes `pids` together use less than `max_share` of
/// one CPU over `window` three windows in a row (bounded by `timeout`).
/// Returns how long it took, or `None` if they never went quiet.
pub fn wait_quiet(
    pids: &[u32],
    max_share: f64,
    window: Duration,
    timeout: Duration,
) -> Option<Duration> {
    if smoke() {
        return None;
    }
    let start = Instant::now();
    let mut quiet = 0;
    let total = || pids.iter().filter_map(|&p| cpu_seconds(p)).sum::<f64>();
    let mut before = total();
    while start.elapsed() < timeout && !stop_requested() {
        std::thread::sleep(window);
        let now = total();
        if (now - before) / window.as_secs_f64() < max_share {
            quiet += 1;
            if quiet >= 3 {
                return Some(start.elapsed());
            }
        } else {
            quiet = 0;
        }
        before = now;
    }
    None
}

/// A child process that is stopped (SIGTERM, then SIGKILL after `grace`)
/// and reaped when dropped, on success and on error alike.
#[derive(Debug)]
pub struct Proc {
    pub name: String,
    child: Child,
    grace: Duration,
    log: Option<PathBuf>,
    exited: Option<ExitStatus>,
}

impl Proc {
    /// Spawns `cmd`, its stdout and stderr appended to `log` when given.
    pub fn spawn(
        name: &str,
        cmd: &mut Command,
        log: Option<&Path>,
        grace: Duration,
    ) -> Result<Self, BoxError> {
        if let Some(log) = log {
            let out = File::options().create(true).append(true).open(log)?;
            let err = out.try_clone()?;
            cmd.stdout(out).stderr(err);
        }
        cmd.stdin(Stdio::null());
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {name} ({}): {e}", cmd.get_program().display()))?;
        Ok(Self {
            name: name.to_owned(),
            child,
            grace,
            log: log.map(Path::to_path_buf),
            exited: None,
        })
    }

    /// Wraps a child spawned elsewhere (piped stdout).
    pub fn adopt(name: &str, child: Child, grace: Duration) -> Self {
        Self {
            name: name.to_owned(),
            child,
            grace,
            log: None,
            exited: None,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }

    /// Fails (with the end of its log) if the process has exited.
    pub fn check_alive(&mut self) -> Result<(), BoxError> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait()?;
        }
        if let Some(status) = self.exited {
            return Err(format!(
                "{} exited unexpectedly ({status}){}",
                self.name,
                self.log_tail()
            )
            .into());
        }
        Ok(())
    }

    /// The last lines of the process's log, for error messages.
    pub fn log_tail(&self) -> String {
        let Some(log) = &self.log else {
            return String::new();
        };
        let mut text = String::new();
        if let Ok(mut file) = File::open(log) {
            let len = file.metadata().map_or(0, |m| m.len());
            let _ = file.seek(SeekFrom::Start(len.saturating_sub(1500)));
            let _ = file.read_to_string(&mut text);
        }
        format!("; log {}:\n{}", log.display(), text.trim_end())
    }

    /// SIGTERM, up to `grace` to exit, then SIGKILL of it and its
    /// descendants; always reaps. Returns how long the exit took.
    pub fn stop(&mut self) -> Result<Duration, BoxError> {
        let started = Instant::now();
        if self.exited.is_none() {
            self.exited = self.child.try_wait()?;
        }
        if self.exited.is_some() {
            return Ok(Duration::ZERO);
        }
        let tree = process_tree(self.pid());
        let pid = Pid::from_raw(i32::try_from(self.child.id())?);
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = started + self.grace;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                self.exited = Some(status);
                return Ok(started.elapsed());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!(
            "bench-api: {} did not stop within {} s; killing it",
            self.name,
            self.grace.as_secs()
        );
        for p in tree {
            if let Ok(raw) = i32::try_from(p) {
                let _ = kill(Pid::from_raw(raw), Signal::SIGKILL);
            }
        }
        self.exited = Some(self.child.wait()?);
        Ok(started.elapsed())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// Makes this process the reaper of orphaned descendants (revaerd's workers
/// if revaerd had to be killed), so that [`reap_orphans`] can collect them:
/// PID 1 here does not reap.
pub fn become_subreaper() -> Result<(), BoxError> {
    nix::sys::prctl::set_child_subreaper(true)?;
    Ok(())
}

/// Reaps every exited child. Call only while no [`Proc`] is alive (it would
/// steal their exit status). Waits up to `timeout` for orphans still
/// running, then kills them.
pub fn reap_orphans(timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => {
                if Instant::now() >= deadline {
                    for pid in process_tree(std::process::id()).into_iter().skip(1) {
                        if let Ok(raw) = i32::try_from(pid) {
                            let _ = kill(Pid::from_raw(raw), Signal::SIGKILL);
                        }
                    }
                    let _ = waitpid(Pid::from_raw(-1), None);
                    continue;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Ok(_) => {}
            Err(_) => return, // ECHILD: nothing left.
        }
    }
}

/// Calls [`reap_orphans`] when dropped.
#[derive(Debug)]
pub struct ReapOnDrop;

impl Drop for ReapOnDrop {
    fn drop(&mut self) {
        reap_orphans(Duration::from_secs(10));
    }
}

/// A directory removed (with its content) when dropped.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(path: PathBuf) -> Result<Self, BoxError> {
        if path.exists() {
            std::fs::remove_dir_all(&path)?;
        }
        std::fs::create_dir_all(&path)?;
        Ok(Self(path))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> Result<u16, BoxError> {
    Ok(TcpListener::bind(("127.0.0.1", 0))?.local_addr()?.port())
}

/// Output of a short command (versions), or its error text.
pub fn command_output(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        Err(format!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            out.status,
            text.trim()
        ))
    }
}

/// Whether `program` is on PATH.
pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

/// The `q`-quantile (0.0–1.0, nearest rank) of sorted `values`.
pub fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted.get(rank - 1).copied()
}

/// Raises the soft open-files limit to the hard one (1,000 SSE
/// subscribers need as many sockets).
pub fn raise_nofile() -> Result<u64, BoxError> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    Ok(hard)
}

/// CPUs, memory, kernel, distribution.
pub fn machine_facts() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_default();
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kib| kib.parse::<u64>().ok())
        })
        .map_or(0, |kib| kib.div_ceil(1 << 20));
    let kernel = command_output("uname", &["-r"]).unwrap_or_default();
    let distro = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                .map(|v| v.trim_matches('"').to_owned())
        })
        .unwrap_or_default();
    format!(
        "nproc {cpus} ({model}), {mem_gib} GiB RAM, {distro}, Linux {}",
        kernel.trim()
    )
}

pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" / "))
        .unwrap_or_default()
}

/// CPU seconds of the whole machine so far (every CPU, first line of
/// `/proc/stat`): time in processes (user, nice, system, steal), and time in
/// interrupts (irq, softirq: on loopback, mostly delivering the packets).
pub fn machine_cpu() -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let t: Vec<u64> = line
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    let at = |i: usize| t.get(i).copied().unwrap_or(0);
    // user nice system idle iowait irq softirq steal (guest is in user).
    let processes = at(0) + at(1) + at(2) + at(7);
    let interrupts = at(5) + at(6);
    #[allow(clippy::cast_precision_loss)]
    let (p, i) = (processes as f64, interrupts as f64);
    Some((p * tick_seconds(), i * tick_seconds()))
}

/// Busy CPU seconds of the whole machine so far.
pub fn machine_busy_seconds() -> Option<f64> {
    machine_cpu().map(|(p, i)| p + i)
}

/// Waits (up to `timeout`) until the machine as a whole is below
/// `max_cpus` busy CPUs over one second; returns the last reading.
pub fn wait_machine_quiet(max_cpus: f64, timeout: Duration) -> f64 {
    if smoke() {
        return 0.0;
    }
    let start = Instant::now();
    let mut before = machine_busy_seconds().unwrap_or(0.0);
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let now = machine_busy_seconds().unwrap_or(0.0);
        let busy = now - before;
        before = now;
        if busy < max_cpus || start.elapsed() >= timeout || stop_requested() {
            return busy;
        }
    }
}

/// The workspace root (the parent of the `supervisor` crate).
pub fn workspace_root() -> Result<PathBuf, BoxError> {
    Ok(Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or("no workspace root")?
        .to_path_buf())
}

/// `git rev-parse --short HEAD` of `root`, flagged when the tree has
/// uncommitted changes.
pub fn revision(root: &Path) -> String {
    let root = root.to_string_lossy();
    let rev =
        command_output("git", &["-C", &root, "rev-parse", "--short", "HEAD"]).unwrap_or_default();
    let dirty = command_output(
        "git",
        &["-C", &root, "status", "--porcelain", "--untracked-files=no"],
    )
    .is_ok_and(|s| !s.trim().is_empty());
    let flag = if dirty {
        " (uncommitted changes in the tree)"
    } else {
        ""
    };
    format!("{}{flag}", rev.trim())
}

/// Replaces the section of the report at `path` between `start_mark` and
/// `end_mark` with `section` (appending it when the marks are missing),
/// leaving the rest of the file alone; written atomically.
pub fn write_section(
    path: &Path,
    start_mark: &str,
    end_mark: &str,
    section: &str,
) -> Result<(), BoxError> {
    let existing = std::fs::read_to_string(path).unwrap_or_else(|_| {
        "# Reliability\n\nEvidence for issue 8 (reliability campaign): each section is written by the command it names.\n".to_owned()
    });
    let block = format!("{start_mark}\n{section}{end_mark}");
    let text = match (existing.find(start_mark), existing.find(end_mark)) {
        (Some(start), Some(end)) if end > start => format!(
            "{}{block}{}",
            &existing[..start],
            &existing[end + end_mark.len()..]
        ),
        _ => format!("{}\n\n{block}\n", existing.trim_end_matches('\n')),
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("md.tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// `main` of a bench program: stop handler, subreaper, `bench`, and every
/// orphan reaped; failures printed as `<name>: <error>`.
pub fn run_bench(
    name: &str,
    bench: impl FnOnce() -> Result<(), BoxError>,
) -> std::process::ExitCode {
    if let Err(e) = install_stop_handler() {
        eprintln!("{name}: {e}");
        return std::process::ExitCode::FAILURE;
    }
    let _ = become_subreaper();
    let reaper = ReapOnDrop;
    let result = bench();
    drop(reaper);
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
