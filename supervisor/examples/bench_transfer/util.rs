//! Process, polling and file helpers shared by the downloaders.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::net::{IpAddr, TcpListener};
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

/// Turns SIGINT and SIGTERM into [`stop_requested`] (a thread of its own
/// waits for them), so that an interrupted run still stops its children,
/// removes its network namespace and deletes its files.
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
            eprintln!("bench-transfer: interrupted; stopping children and cleaning up");
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

/// User + system CPU seconds of `pid` so far (all its threads).
pub fn cpu_seconds(pid: u32) -> Result<f64, BoxError> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    stat_cpu_seconds(&stat)
}

/// utime + stime of a `/proc/.../stat` line, in seconds.
fn stat_cpu_seconds(stat: &str) -> Result<f64, BoxError> {
    // Fields after the command name, which may itself contain spaces and ')'.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or("malformed /proc/<pid>/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state): utime is field 14, stime field 15.
    let utime: u64 = fields.get(11).ok_or("no utime")?.parse()?;
    let stime: u64 = fields.get(12).ok_or("no stime")?.parse()?;
    #[allow(clippy::cast_precision_loss)]
    let ticks = (utime + stime) as f64;
    Ok(ticks * tick_seconds())
}

/// CPU seconds of this process's threads that are not the bench's own
/// (main thread, HTTP client, tracker, signal and pipe-reader threads): the
/// seed's libtorrent threads.
pub fn seed_cpu_seconds() -> Result<f64, BoxError> {
    let me = std::process::id();
    let mut total = 0.0;
    for entry in std::fs::read_dir(format!("/proc/{me}/task"))? {
        let entry = entry?;
        let Some(tid) = entry
            .file_name()
            .to_str()
            .and_then(|t| t.parse::<u32>().ok())
        else {
            continue;
        };
        let name = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        let bench_thread = ["reqwest", "tracker", "signals", "bare-stdout"]
            .iter()
            .any(|prefix| name.starts_with(prefix));
        if tid == me || bench_thread {
            continue;
        }
        // A thread that ended in between simply no longer counts.
        total += thread_cpu_seconds(me, tid).unwrap_or(0.0);
    }
    Ok(total)
}

fn thread_cpu_seconds(pid: u32, tid: u32) -> Result<f64, BoxError> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat"))?;
    stat_cpu_seconds(&stat)
}

/// Peak resident set size (`VmHWM`) of `pid`, in bytes.
pub fn peak_rss(pid: u32) -> Result<u64, BoxError> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .ok_or("no VmHWM in /proc/<pid>/status")?;
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .ok_or("malformed VmHWM")?
        .parse()?;
    Ok(kib * 1024)
}

/// The executable name of `pid` (`/proc/<pid>/comm`).
pub fn comm(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim().to_owned())
}

/// A child process that is stopped (SIGTERM, then SIGKILL after `grace`)
/// and reaped when dropped, on success and on error alike.
#[derive(Debug)]
pub struct Proc {
    pub name: String,
    child: Child,
    grace: Duration,
    log: Option<PathBuf>,
    /// Processes the child spawned itself (e.g. revaerd's workers), killed
    /// too if the child has to be killed.
    pub descendants: Vec<u32>,
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
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {name} ({}): {e}", cmd.get_program().display()))?;
        Ok(Self {
            name: name.to_owned(),
            child,
            grace,
            log: log.map(Path::to_path_buf),
            descendants: Vec::new(),
            exited: None,
        })
    }

    /// Spawns with piped stdin and stdout (for the bare child).
    pub fn spawn_piped(name: &str, cmd: &mut Command, log: &Path) -> Result<Self, BoxError> {
        let err = File::options().create(true).append(true).open(log)?;
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(err);
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {name}: {e}"))?;
        Ok(Self {
            name: name.to_owned(),
            child,
            grace: Duration::from_secs(30),
            log: Some(log.to_path_buf()),
            descendants: Vec::new(),
            exited: None,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }

    /// Fails (with the end of its log) if the process has exited.
    pub fn check_alive(&mut self) -> Result<(), BoxError> {
        if let Some(status) = self.try_exited()? {
            return Err(format!(
                "{} exited unexpectedly ({status}){}",
                self.name,
                self.log_tail()
            )
            .into());
        }
        Ok(())
    }

    fn try_exited(&mut self) -> Result<Option<ExitStatus>, BoxError> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait()?;
        }
        Ok(self.exited)
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

    /// Waits up to `timeout` for the process to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<Option<ExitStatus>, BoxError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_exited()? {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, up to `grace` to exit, then SIGKILL (with its known
    /// descendants); always reaps.
    pub fn stop(&mut self) -> Result<ExitStatus, BoxError> {
        if let Some(status) = self.try_exited()? {
            return Ok(status);
        }
        let pid = Pid::from_raw(i32::try_from(self.child.id())?);
        let _ = kill(pid, Signal::SIGTERM);
        if let Some(status) = self.wait_exit(self.grace)? {
            return Ok(status);
        }
        eprintln!(
            "bench-transfer: {} did not stop within {} s; killing it",
            self.name,
            self.grace.as_secs()
        );
        let _ = self.child.kill();
        for &d in &self.descendants {
            if let Ok(raw) = i32::try_from(d) {
                let _ = kill(Pid::from_raw(raw), Signal::SIGKILL);
            }
        }
        let status = self.child.wait()?;
        self.exited = Some(status);
        Ok(status)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// Makes this process the reaper of orphaned descendants (revaerd's workers
/// if revaerd had to be killed, programs qBittorrent starts detached), so
/// that [`reap_orphans`] can collect them: PID 1 here does not reap.
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
                    for pid in children_of(std::process::id()) {
                        if let Ok(raw) = i32::try_from(pid) {
                            let _ = kill(Pid::from_raw(raw), Signal::SIGKILL);
                        }
                    }
                    // Killed children exit at once; reap them.
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

/// Pids whose parent is `parent` (from /proc).
fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    let rest = s.rsplit_once(')')?.1.to_owned();
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(parent)
        })
        .collect()
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

/// A TCP port that was free on `ip` a moment ago.
pub fn free_port(ip: IpAddr) -> Result<u16, BoxError> {
    Ok(TcpListener::bind((ip, 0))?.local_addr()?.port())
}

/// An HTTP client for the local control APIs: no proxy, bounded timeouts.
pub fn http_client() -> Result<reqwest::blocking::Client, BoxError> {
    Ok(reqwest::blocking::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(20))
        .build()?)
}

/// Standard base64 with padding (torrent uploads to aria2 and Transmission).
pub fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18_u32, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Median of `values` (mean of the middle two for an even count).
pub fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    Some(if sorted.len().is_multiple_of(2) {
        f64::midpoint(sorted[mid - 1], sorted[mid])
    } else {
        sorted[mid]
    })
}

/// Output of a short command (versions, `ip`), or its error text.
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
pub fn on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}
