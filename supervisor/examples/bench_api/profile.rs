//! `--perf`: where a server process spends its CPU under the same `wrk`
//! load, from `perf record` (sampling at 499 Hz, 8 s) during an extra,
//! unmeasured `wrk` run, so the measured runs are not disturbed.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::util::{self, BoxError};
use crate::wrk::{self, WrkSpec};

/// Lines of `perf report` kept per profile.
const TOP: usize = 15;

/// Profiles `pid` while `spec` loads it; the summary as Markdown.
pub fn profile(spec: &WrkSpec, pid: u32, dir: &Path, tag: &str) -> Result<String, BoxError> {
    let data = dir.join(format!("perf-{tag}.data"));
    let mut load = spec.clone();
    load.duration = Duration::from_secs(12);
    let wrk_dir = dir.to_path_buf();
    let wrk_tag = format!("perf-{tag}");
    let wrk = std::thread::Builder::new()
        .name("perf-load".to_owned())
        .spawn(move || wrk::run(&load, &wrk_dir, &wrk_tag).map(|r| r.rps))?;
    std::thread::sleep(Duration::from_secs(2));
    let recorded = util::command_output(
        "perf",
        &[
            "record",
            "-F",
            "499",
            "-g",
            "-p",
            &pid.to_string(),
            "-o",
            &data.to_string_lossy(),
            "--",
            "sleep",
            "8",
        ],
    );
    let rps = wrk.join().map_err(|_| "the perf load thread panicked")??;
    recorded?;
    let report = |sort: &str| -> Result<Vec<String>, BoxError> {
        let out = Command::new("perf")
            .args(["report", "-i"])
            .arg(&data)
            .args(["--no-children", "--sort", sort, "--stdio", "-g", "none"])
            .output()?;
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::trim)
            .filter(|l| !l.starts_with('#') && l.contains('%'))
            .take(TOP)
            .map(|l| {
                l.split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
                    .trim_end_matches(" - -")
                    .to_owned()
            })
            .collect())
    };
    let by_dso = report("dso")?;
    let by_symbol = report("symbol")?;
    let _ = std::fs::remove_file(&data);
    Ok(format!(
        "`{}` ({rps:.0} req/s with `perf` attached), `perf record -F 499 -g -p <pid> -- sleep 8` on `{}`:\n\n```text\n{}\n\n{}\n```\n",
        load_display(spec),
        util::comm(pid),
        by_dso
            .iter()
            .take(4)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n"),
        by_symbol.join("\n")
    ))
}

fn load_display(spec: &WrkSpec) -> String {
    let mut shown = spec.clone();
    shown.duration = Duration::from_secs(12);
    shown.display()
}
