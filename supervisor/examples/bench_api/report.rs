//! `bench/results/api.md`.

use std::fmt::Write as _;
use std::time::Duration;

use crate::qbittorrent::QbtResult;
use crate::revaer::LoadResult;
use crate::sse::SseResult;
use crate::util::RssSample;
use crate::wrk::{WrkResult, WrkSpec};

/// CPU seconds per process over one measured interval.
#[derive(Debug, Clone, Default)]
pub struct CpuSplit(pub Vec<(String, f64)>);

impl CpuSplit {
    pub fn render(&self, seconds: f64) -> String {
        self.0
            .iter()
            .map(|(name, cpu)| {
                let share = if seconds > 0.0 {
                    cpu / seconds * 100.0
                } else {
                    0.0
                };
                format!("{name} {cpu:.1} s ({share:.0} % of one CPU)")
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// One `wrk` measurement.
#[derive(Debug, Clone)]
pub struct Measured {
    pub spec: WrkSpec,
    pub result: WrkResult,
    pub body_bytes: usize,
    pub cpu: CpuSplit,
    /// `wrk` runs made (more than one when other processes disturbed it).
    pub attempts: u32,
}

/// Everything measured on Revaer.
#[derive(Debug, Clone)]
pub struct RevaerPart {
    pub version: String,
    pub load: LoadResult,
    pub quiet_after: Option<Duration>,
    pub idle: Vec<RssSample>,
    pub after: Vec<RssSample>,
    pub list: Measured,
    pub filtered: Measured,
    pub filtered_matches: usize,
    pub sse: Result<SseResult, String>,
    pub sse_cpu: CpuSplit,
    pub sse_secs: f64,
    pub stop_secs: f64,
    /// `--perf` summaries, one per list.
    pub profiles: Vec<String>,
}

/// Run facts.
#[derive(Debug, Clone)]
pub struct Meta {
    pub command: String,
    pub revision: String,
    pub machine: String,
    pub started_utc: String,
    pub load_before: String,
    pub load_after: String,
    pub total_secs: f64,
    pub torrents: usize,
    pub generate_ms: f64,
    pub torrent_bytes: usize,
    pub nofile: u64,
    /// How the bench raised its scheduling priority, if it did.
    pub priority: String,
    pub wrk_version: String,
    /// A `--smoke` run.
    pub smoke: bool,
}

fn kib_total(samples: &[RssSample]) -> u64 {
    samples.iter().map(|s| s.rss_kib).sum()
}

#[allow(clippy::cast_precision_loss)]
fn mb(kib: u64) -> f64 {
    kib as f64 * 1024.0 / 1e6
}

fn rss_list(samples: &[RssSample]) -> String {
    samples
        .iter()
        .map(|s| format!("{} {:.1} MB", s.name, mb(s.rss_kib)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn fmt_ms(ms: f64) -> String {
    if ms >= 1000.0 {
        format!("{:.2} s", ms / 1000.0)
    } else {
        format!("{ms:.2} ms")
    }
}

fn opt(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.2}"))
}

fn verdict(ok: Option<bool>) -> &'static str {
    match ok {
        Some(true) => "met",
        Some(false) => "**missed**",
        None => "not measured",
    }
}

/// The figures of the last line.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ratios {
    pub ceiling: Option<f64>,
    pub qbittorrent: Option<f64>,
    pub p99_ms: Option<f64>,
    pub sse_p99_ms: Option<f64>,
    pub rss: Option<f64>,
}

impl Ratios {
    pub fn compute(
        revaer: Option<&RevaerPart>,
        ceiling: Option<&Measured>,
        qbt: Option<&QbtResult>,
    ) -> Self {
        let rps = revaer.map(|r| r.list.result.rps);
        Self {
            ceiling: rps.zip(ceiling).map(|(r, c)| r / c.result.rps),
            qbittorrent: rps
                .zip(qbt)
                .filter(|(_, q)| q.wrk.rps > 0.0)
                .map(|(r, q)| r / q.wrk.rps),
            p99_ms: revaer.map(|r| r.list.result.p99_ms.max(r.filtered.result.p99_ms)),
            sse_p99_ms: revaer.and_then(|r| r.sse.as_ref().ok()).map(|s| s.p99_ms),
            rss: revaer.zip(qbt).map(|(r, q)| {
                #[allow(clippy::cast_precision_loss)]
                let ratio = kib_total(&r.idle) as f64 / kib_total(&q.idle).max(1) as f64;
                ratio
            }),
        }
    }

    pub fn last_line(&self) -> String {
        format!(
            "ratio revaer/axum_ceiling={} revaer/qbittorrent_rps={} p99_ms={} sse_p99_ms={} rss_ratio={}",
            opt(self.ceiling),
            opt(self.qbittorrent),
            opt(self.p99_ms),
            opt(self.sse_p99_ms),
            opt(self.rss)
        )
    }
}

fn wrk_row(out: &mut String, tool: &str, m: &Measured, notes: &str) {
    let r = &m.result;
    let errors = if r.non_2xx > 0 || r.socket_errors != "none" {
        format!(
            "; non-2xx {}; socket errors: {}",
            r.non_2xx, r.socket_errors
        )
    } else {
        String::new()
    };
    let _ = writeln!(
        out,
        "| {tool} | {:.2} | {} | {} | {} requests in {:.1} s, -t{} -c{}, body {} B{errors}; {notes} |",
        r.rps,
        fmt_ms(r.p50_ms),
        fmt_ms(r.p99_ms),
        r.requests,
        r.seconds,
        m.spec.threads,
        m.spec.connections,
        m.body_bytes,
    );
}

#[allow(clippy::too_many_lines, reason = "the report, section by section")]
pub fn render(
    meta: &Meta,
    revaer: Result<&RevaerPart, &String>,
    ceiling: Result<&Measured, &String>,
    qbt: Result<&QbtResult, &String>,
) -> String {
    let ratios = Ratios::compute(revaer.ok(), ceiling.ok(), qbt.ok());
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# API benchmark: `GET /v1/torrents` with {} paused torrents\n",
        meta.torrents
    );
    let _ = writeln!(
        out,
        "Written by `{}` ({}), {} UTC, {}. Not part of CI.\n",
        meta.command, meta.revision, meta.started_utc, meta.machine
    );
    if meta.smoke {
        let _ = writeln!(
            out,
            "**Smoke run** ({} build, no waiting for a quiet machine): it proves the bench runs; its figures measure nothing.\n",
            if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            }
        );
    }
    let _ = writeln!(
        out,
        "Load average before {}, after {}. Whole run {:.0} s. {}; it shares the same CPUs as the servers it measures. Each `wrk` run waits (up to 60 s) for the machine to be below 0.2 busy CPUs; the CPU seconds of every process during each run are in the notes (\"other processes\": whatever else ran on this shared machine meanwhile, from `/proc/stat`; \"interrupts\": irq + softirq time, on loopback mostly the kernel delivering the packets). A run during which other processes used more than a quarter of a CPU is repeated (at most 3 runs) and the least disturbed one kept.\n",
        meta.load_before, meta.load_after, meta.total_secs, meta.wrk_version
    );

    let _ = writeln!(out, "## Targets\n");
    let _ = writeln!(out, "| target | measured | verdict |\n|---|---|---|");
    let _ = writeln!(
        out,
        "| ≥ 0.7× the axum ceiling (req/s) | {}× | {} |",
        opt(ratios.ceiling),
        verdict(ratios.ceiling.map(|v| v >= 0.7))
    );
    let _ = writeln!(
        out,
        "| ≥ 1000× qBittorrent's req/s | {}× | {} |",
        opt(ratios.qbittorrent),
        verdict(ratios.qbittorrent.map(|v| v >= 1000.0))
    );
    let _ = writeln!(
        out,
        "| p99 ≤ 5 ms (worse of the two Revaer lists) | {} ms | {} |",
        opt(ratios.p99_ms),
        verdict(ratios.p99_ms.map(|v| v <= 5.0))
    );
    let _ = writeln!(
        out,
        "| SSE p99 ≤ 50 ms | {} ms | {} |",
        opt(ratios.sse_p99_ms),
        verdict(ratios.sse_p99_ms.map(|v| v <= 50.0))
    );
    let _ = writeln!(
        out,
        "| RSS ≤ 0.5× qBittorrent (idle, same torrents) | {}× | {} |\n",
        opt(ratios.rss),
        verdict(ratios.rss.map(|v| v <= 0.5))
    );

    let _ = writeln!(out, "## Request throughput and latency\n");
    let _ = writeln!(
        out,
        "| tool | req/s | p50 | p99 | notes |\n|---|---|---|---|---|"
    );
    match revaer {
        Ok(r) => {
            wrk_row(
                &mut out,
                "Revaer `GET /v1/torrents?limit=100`",
                &r.list,
                &format!("CPU: {}", r.list.cpu.render(r.list.result.seconds)),
            );
            wrk_row(
                &mut out,
                &format!(
                    "Revaer `GET /v1/torrents?{}`",
                    crate::torrents::FILTER_QUERY
                ),
                &r.filtered,
                &format!(
                    "{} of {} torrents match; CPU: {}",
                    r.filtered_matches,
                    meta.torrents,
                    r.filtered.cpu.render(r.filtered.result.seconds)
                ),
            );
        }
        Err(e) => {
            let _ = writeln!(out, "| Revaer | n/a | | | {e} |");
        }
    }
    match ceiling {
        Ok(c) => wrk_row(
            &mut out,
            "axum ceiling (precomputed body, same bytes)",
            c,
            &format!("CPU: {}", c.cpu.render(c.result.seconds)),
        ),
        Err(e) => {
            let _ = writeln!(out, "| axum ceiling | n/a | | | {e} |");
        }
    }
    match qbt {
        Ok(q) => wrk_row(
            &mut out,
            &format!("{} `/api/v2/torrents/info?limit=100`", q.version),
            &Measured {
                spec: q.spec.clone(),
                result: q.wrk.clone(),
                body_bytes: q.body_bytes,
                cpu: CpuSplit(vec![("qbittorrent-nox".to_owned(), q.cpu_during_wrk)]),
                attempts: q.attempts,
            },
            &format!(
                "one connection, --timeout {} s; CPU: qbittorrent-nox {:.1} s over the run ({:.2} CPU s per request), wrk {:.1} s, other processes {:.1} s; a single request before the run took {} ({:.2} CPU s)",
                q.spec.timeout.as_secs(),
                q.cpu_during_wrk,
                if q.wrk.requests > 0 {
                    #[allow(clippy::cast_precision_loss)]
                    let per = q.cpu_during_wrk / q.wrk.requests as f64;
                    per
                } else {
                    f64::NAN
                },
                q.wrk.wrk_cpu,
                q.other_cpu,
                fmt_ms(q.single_request_ms),
                q.single_request_cpu
            ),
        ),
        Err(e) => {
            let _ = writeln!(out, "| qbittorrent-nox | n/a | | | {e} |");
        }
    }
    out.push('\n');

    if let Ok(r) = revaer {
        let _ = writeln!(out, "## Where Revaer's API worker spends its CPU\n");
        #[allow(clippy::cast_precision_loss)]
        let per_request = |m: &Measured| {
            let api: f64 = m
                .cpu
                .0
                .iter()
                .filter(|(n, _)| n == "revaer-api")
                .map(|(_, c)| c)
                .sum();
            api / m.result.requests.max(1) as f64 * 1e6
        };
        let _ = writeln!(
            out,
            "CPU per request in `revaer-api`: {:.0} µs for `limit=100`, {:.0} µs for the filtered list; the ceiling spends {} µs per request on the same body.\n",
            per_request(&r.list),
            per_request(&r.filtered),
            ceiling.map_or_else(
                |_| "n/a".to_owned(),
                |c| format!("{:.0}", {
                    #[allow(clippy::cast_precision_loss)]
                    let per = c
                        .cpu
                        .0
                        .iter()
                        .filter(|(n, _)| n == "axum ceiling")
                        .map(|(_, v)| v)
                        .sum::<f64>()
                        / c.result.requests.max(1) as f64
                        * 1e6;
                    per
                })
            )
        );
        if r.profiles.is_empty() {
            let _ = writeln!(
                out,
                "(`just bench-api --perf` adds `perf` profiles of the API worker here.)\n"
            );
        }
        for p in &r.profiles {
            out.push_str(p);
            out.push('\n');
        }
    }

    let _ = writeln!(out, "## SSE fan-out\n");
    match revaer.map(|r| (&r.sse, r)) {
        Ok((Ok(s), r)) => {
            let _ = writeln!(
                out,
                "{} subscribers on `GET /v1/events` (connected in {:.1} s), {} rounds: each round sends `POST /v1/torrents/{{id}}/action {{\"action\":\"resume\"}}` on a torrent not touched before and waits until every subscriber has parsed the first `state_changed` event of that torrent (timeout 10 s). Latency is taken from just before the action is sent.\n",
                s.subscribers, s.connect_secs, s.rounds
            );
            let _ = writeln!(
                out,
                "| measure | p50 | p90 | p99 | max |\n|---|---|---|---|---|"
            );
            let _ = writeln!(
                out,
                "| event latency, {} (subscriber, event) pairs | {} | {} | {} | {} |",
                s.pairs,
                fmt_ms(s.p50_ms),
                fmt_ms(s.p90_ms),
                fmt_ms(s.p99_ms),
                fmt_ms(s.max_ms)
            );
            let _ = writeln!(
                out,
                "| same, from the action's 2xx answer | {} | | {} | |",
                fmt_ms(s.from_ack_p50_ms),
                fmt_ms(s.from_ack_p99_ms)
            );
            let _ = writeln!(
                out,
                "| the action request itself | {} | | {} | |\n",
                fmt_ms(s.action_p50_ms),
                fmt_ms(s.action_p99_ms)
            );
            let worst = s
                .worst_rounds
                .iter()
                .map(|(round, ms)| format!("round {round}: {}", fmt_ms(*ms)))
                .collect::<Vec<_>>()
                .join(", ");
            let _ = writeln!(
                out,
                "Per round, the slowest of the {} subscribers: median {} over {} rounds; {} rounds above 50 ms; slowest rounds: {worst}.\n",
                s.subscribers,
                fmt_ms(s.round_max_p50_ms),
                s.rounds,
                s.slow_rounds
            );
            let _ = writeln!(
                out,
                "Missing pairs: {}. Other events received meanwhile (all subscribers): {}. CPU over the SSE phase ({:.1} s): {}.\n",
                s.missing,
                s.other_events,
                r.sse_secs,
                r.sse_cpu.render(r.sse_secs)
            );
        }
        Ok((Err(e), _)) | Err(e) => {
            let _ = writeln!(out, "Not measured: {e}\n");
        }
    }

    let _ = writeln!(out, "## Memory (RSS)\n");
    let _ = writeln!(
        out,
        "| system | idle RSS | after its wrk run | processes |\n|---|---|---|---|"
    );
    if let Ok(r) = revaer {
        let quiet = r.quiet_after.map_or_else(
            || "not quiet within 180 s".to_owned(),
            |d| format!("quiet after {:.0} s", d.as_secs_f64()),
        );
        let _ = writeln!(
            out,
            "| Revaer, all processes ({quiet}) | {:.1} MB | {:.1} MB | idle: {}; after SSE: {} |",
            mb(kib_total(&r.idle)),
            mb(kib_total(&r.after)),
            rss_list(&r.idle),
            rss_list(&r.after)
        );
    }
    if let Ok(q) = qbt {
        let quiet = q.quiet_after.map_or_else(
            || "not quiet within 180 s".to_owned(),
            |d| format!("quiet after {:.0} s", d.as_secs_f64()),
        );
        let _ = writeln!(
            out,
            "| qbittorrent-nox ({quiet}) | {:.1} MB | {:.1} MB | peak (VmHWM) {:.1} MB |",
            mb(kib_total(&q.idle)),
            mb(kib_total(&q.after)),
            mb(q.after.iter().map(|s| s.hwm_kib).max().unwrap_or(0))
        );
    }
    let _ = writeln!(
        out,
        "\nRSS is the sum of `VmRSS` from `/proc/<pid>/status` over the process and all its descendants, sampled after the torrents were loaded and the processes had used < 5 % of a CPU for 3 s in a row (shared library pages count once per process).\n"
    );

    let _ = writeln!(out, "## Loading {} torrents\n", meta.torrents);
    let _ = writeln!(
        out,
        "Generated in {:.0} ms: v1 `.torrent` files of one small file each (unique name, so unique info-hash; pseudo-random piece hashes, never checked because they stay paused), {} bytes in all; names `revaer-bench-NNNNN.{{mkv,iso,flac,txt}}`, tags `bench` + `group-(i mod 5)`, category `cat-(i mod 4)`.\n",
        meta.generate_ms, meta.torrent_bytes
    );
    if let Ok(r) = revaer {
        let l = &r.load;
        let _ = writeln!(
            out,
            "- Revaer: {} multipart `POST /v1/torrents` (`options` {{paused, tags, category}}), {} in flight: all answered in {:.1} s ({:.0}/s; {} created, {} duplicates; per request p50 {}, p99 {}); every torrent listed paused after {:.1} s.",
            l.count,
            l.concurrency,
            l.post_secs,
            f64_count(l.count) / l.post_secs,
            l.created,
            l.duplicates,
            fmt_ms(l.post_p50_ms),
            fmt_ms(l.post_p99_ms),
            l.listed_secs
        );
        if l.listed_rows != l.count {
            let _ = writeln!(
                out,
                "- **Revaer's list is inconsistent**: walking every page (`limit=500`, `cursor`) returned {} rows for {} distinct torrents ({} duplicate rows, all `paused`).",
                l.listed_rows,
                l.count,
                l.listed_rows.saturating_sub(l.count)
            );
        }
    }
    if let Ok(q) = qbt {
        let _ = writeln!(
            out,
            "- qBittorrent: {} `/api/v2/torrents/add` requests of 100 files (`paused=true`): {:.1} s; every torrent listed after {:.1} s, every one listed paused (past its checking states) after {:.1} s.",
            q.count.div_ceil(100),
            q.add_secs,
            q.listed_secs,
            q.paused_secs
        );
    }
    out.push('\n');

    let _ = writeln!(out, "## How it was run\n");
    let _ = writeln!(
        out,
        "- `{}`: builds the release binaries, then runs `cargo run --release -p revaer-supervisor --example bench_api`.",
        meta.command
    );
    if let Ok(r) = revaer {
        let _ = writeln!(
            out,
            "- Revaer {}: `revaerd --data-dir <tmp>` (release) with `revaer.toml`:\n\n```toml\n{}```\n\n  Requests use a bench key issued through `POST /v1/keys` with `rate_per_minute = {}` (the config's default is capped at 1,000,000/min by validation), so the token bucket is checked on every request but never throttles. Stopping the daemon took {:.1} s.",
            r.version,
            crate::revaer::CONFIG,
            crate::revaer::BENCH_KEY_RATE_PER_MINUTE,
            r.stop_secs
        );
        let _ = writeln!(out, "- `{}`", r.list.spec.display());
        let _ = writeln!(out, "- `{}`", r.filtered.spec.display());
    }
    if let Ok(c) = ceiling {
        let _ = writeln!(
            out,
            "- ceiling: `bench_api --ceiling-body <file>` (axum 0.8, tokio multi-thread with 2 workers like Revaer's API worker, every GET answered with the saved body of Revaer's `limit=100` answer, `Content-Type: application/json`); `{}`",
            c.spec.display()
        );
    }
    if let Ok(q) = qbt {
        let _ = writeln!(
            out,
            "- qBittorrent: `qbittorrent-nox --profile=<tmp>`, WebUI on 127.0.0.1 (random port, `WebUI\\LocalHostAuth=false`), DHT/PeX/LSD/UPnP/NAT-PMP off, TCP only on lo; `{}`",
            q.spec.display()
        );
    }
    let _ = writeln!(
        out,
        "- Open-files limit raised to {} for the SSE subscribers. Everything on 127.0.0.1; every loop is bounded in count and time.",
        meta.nofile
    );
    if !meta.priority.is_empty() {
        let _ = writeln!(
            out,
            "- Scheduling: {}, inherited by everything it started (Revaer, the ceiling, qBittorrent and `wrk` alike), so that other work on this shared machine disturbed the runs less.",
            meta.priority
        );
    }
    out.push('\n');
    out.push_str(&ratios.last_line());
    out.push('\n');
    out
}

#[allow(clippy::cast_precision_loss)]
fn f64_count(n: usize) -> f64 {
    n as f64
}
