//! Running `wrk --latency` and reading its report.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::util::{BoxError, Proc, stop_requested};

/// One `wrk` run's parameters.
#[derive(Debug, Clone)]
pub struct WrkSpec {
    pub threads: u32,
    pub connections: u32,
    pub duration: Duration,
    pub timeout: Duration,
    pub url: String,
    /// `Authorization` header value, if any (kept out of the printed command).
    pub bearer: Option<String>,
}

impl WrkSpec {
    /// The command line as reported (the key replaced by `$KEY`).
    pub fn display(&self) -> String {
        let auth = if self.bearer.is_some() {
            " -H 'Authorization: Bearer $KEY'"
        } else {
            ""
        };
        format!(
            "wrk --latency -t{} -c{} -d{}s --timeout {}s{auth} '{}'",
            self.threads,
            self.connections,
            self.duration.as_secs(),
            self.timeout.as_secs(),
            self.url
        )
    }
}

/// What `wrk` reported.
#[derive(Debug, Clone, Default)]
pub struct WrkResult {
    pub requests: u64,
    pub seconds: f64,
    pub rps: f64,
    pub avg_ms: f64,
    pub max_ms: f64,
    pub p50_ms: f64,
    pub p75_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub non_2xx: u64,
    pub socket_errors: String,
    pub read: String,
    /// CPU seconds `wrk` itself used (it shares the machine).
    pub wrk_cpu: f64,
}

/// Runs `wrk`; fails when it does not finish within its duration plus its
/// timeout plus a margin (it is then killed).
pub fn run(spec: &WrkSpec, out_dir: &Path, tag: &str) -> Result<WrkResult, BoxError> {
    let log = out_dir.join(format!("wrk-{tag}.txt"));
    let mut cmd = Command::new("wrk");
    cmd.arg("--latency")
        .arg(format!("-t{}", spec.threads))
        .arg(format!("-c{}", spec.connections))
        .arg(format!("-d{}s", spec.duration.as_secs()))
        .arg("--timeout")
        .arg(format!("{}s", spec.timeout.as_secs()));
    if let Some(key) = &spec.bearer {
        cmd.arg("-H").arg(format!("Authorization: Bearer {key}"));
    }
    cmd.arg(&spec.url);
    let mut proc = Proc::spawn("wrk", &mut cmd, Some(&log), Duration::from_secs(5))?;
    let pid = proc.pid();
    let limit = spec.duration + spec.timeout + Duration::from_secs(30);
    let started = Instant::now();
    let mut cpu = 0.0;
    loop {
        if let Some(c) = crate::util::cpu_seconds(pid) {
            cpu = c;
        }
        if let Some(status) = proc.child_mut().try_wait()? {
            if !status.success() {
                return Err(format!("wrk failed ({status}){}", proc.log_tail()).into());
            }
            break;
        }
        if stop_requested() {
            return Err("interrupted".into());
        }
        if started.elapsed() > limit {
            return Err(format!("wrk did not finish within {} s", limit.as_secs()).into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(proc);
    let raw = std::fs::read_to_string(&log)?;
    let mut result = parse(&raw)?;
    result.wrk_cpu = cpu;
    Ok(result)
}

/// `271.00us`, `2.85ms`, `1.71s`, `1.00m` → milliseconds.
fn duration_ms(text: &str) -> Option<f64> {
    let text = text.trim();
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().ok()?;
    let scale = match unit {
        "us" => 0.001,
        "ms" => 1.0,
        "s" => 1000.0,
        "m" => 60_000.0,
        "h" => 3_600_000.0,
        _ => return None,
    };
    Some(value * scale)
}

/// Parses `wrk --latency` output.
pub fn parse(raw: &str) -> Result<WrkResult, BoxError> {
    let mut r = WrkResult {
        socket_errors: "none".to_owned(),
        ..WrkResult::default()
    };
    let mut saw_rps = false;
    let mut saw_total = false;
    for line in raw.lines() {
        let t = line.trim();
        let words: Vec<&str> = t.split_whitespace().collect();
        if let Some(v) = t.strip_prefix("Requests/sec:") {
            r.rps = v.trim().parse()?;
            saw_rps = true;
        } else if let Some(v) = t.strip_prefix("Non-2xx or 3xx responses:") {
            r.non_2xx = v.trim().parse()?;
        } else if let Some(v) = t.strip_prefix("Socket errors:") {
            v.trim().clone_into(&mut r.socket_errors);
        } else if words.len() >= 5 && words[1] == "requests" && words[2] == "in" {
            // `1498000 requests in 20.00s, 29.5GB read`
            r.requests = words[0].parse()?;
            r.seconds = duration_ms(words[3].trim_end_matches(','))
                .ok_or("bad duration in wrk output")?
                / 1000.0;
            words[4].clone_into(&mut r.read);
            saw_total = true;
        } else if words.first() == Some(&"Latency") && words.len() >= 4 {
            r.avg_ms = duration_ms(words[1]).unwrap_or(f64::NAN);
            r.max_ms = duration_ms(words[3]).unwrap_or(f64::NAN);
        } else if words.len() == 2 && words[0].ends_with('%') {
            let value = duration_ms(words[1]).ok_or("bad latency percentile in wrk output")?;
            match words[0] {
                "50%" => r.p50_ms = value,
                "75%" => r.p75_ms = value,
                "90%" => r.p90_ms = value,
                "99%" => r.p99_ms = value,
                _ => {}
            }
        }
    }
    if !saw_rps || !saw_total {
        return Err(format!("cannot read wrk's output:\n{raw}").into());
    }
    Ok(r)
}
