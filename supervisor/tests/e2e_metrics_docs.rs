//! End-to-end: `docs/guides/metrics.md` cannot drift from `GET /metrics`.
//!
//! Starts the real daemon, does a little work so the families appear
//! (requests, a throttled key, the engine and FsOps registries fetched over
//! IPC), scrapes `/metrics` and compares it with the guide's table: every
//! family in the scrape must be documented with its type and labels, and
//! every documented family must be in the scrape unless the guide marks it
//! as appearing only after an event *and* it is in [`AFTER_EVENT`]. When
//! `promtool` is on `PATH` (Debian's `prometheus` package; the GitHub
//! workflow installs it) the scrape must also pass `promtool check metrics`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Instant;

use common::{DEADLINE, Daemon, POLL};
use serde_json::{Value, json};

/// Families that exist only after an event the test does not cause (no
/// torrent completes here, so FsOps runs no job). The guide must mark each
/// of them with "after" in its "appears" column.
const AFTER_EVENT: &[&str] = &[
    "revaer_fsops_bytes_total",
    "revaer_fsops_job_duration_seconds",
    "revaer_fsops_jobs_total",
    "revaer_fsops_steps_total",
];

/// One row of the guide's table.
#[derive(Debug)]
struct Documented {
    kind: String,
    labels: BTreeSet<String>,
    appears: String,
}

/// One family of the scrape.
#[derive(Debug, Default)]
struct Scraped {
    kind: String,
    labels: BTreeSet<String>,
}

/// The backticked spans of a table cell, in order.
fn backticked(cell: &str) -> Vec<String> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// The guide's metric table: rows whose first cell is a backticked
/// `revaer_*` name; columns name, type, labels, appears, meaning.
fn documented(guide: &str) -> BTreeMap<String, Documented> {
    let mut out = BTreeMap::new();
    for line in guide.lines() {
        let Some(row) = line.trim().strip_prefix('|') else {
            continue;
        };
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let Some(name) = backticked(cells[0]).into_iter().next() else {
            continue;
        };
        if !name.starts_with("revaer_") {
            continue;
        }
        assert!(cells.len() >= 5, "metric row with too few cells: {line}");
        let labels = backticked(cells[2]).into_iter().collect();
        let previous = out.insert(
            name.clone(),
            Documented {
                kind: cells[1].to_owned(),
                labels,
                appears: cells[3].to_owned(),
            },
        );
        assert!(previous.is_none(), "{name} is documented twice");
    }
    out
}

/// Families in a Prometheus text exposition: type from `# TYPE`, label
/// names from the samples (histogram `le` left out).
fn scraped(text: &str) -> BTreeMap<String, Scraped> {
    let mut out: BTreeMap<String, Scraped> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            let name = parts.next().unwrap().to_owned();
            let kind = parts.next().unwrap();
            kind.clone_into(&mut out.entry(name).or_default().kind);
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let series = line.rsplit_once(' ').unwrap().0;
        let (metric, labels) = match series.split_once('{') {
            Some((metric, labels)) => (metric, labels.trim_end_matches('}')),
            None => (series, ""),
        };
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| {
                let base = metric.strip_suffix(suffix)?;
                out.get(base)
                    .is_some_and(|f| f.kind == "histogram" || f.kind == "summary")
                    .then_some(base)
            })
            .unwrap_or(metric);
        let entry = out.entry(family.to_owned()).or_default();
        for pair in labels.split(',').filter(|p| !p.is_empty()) {
            let label = pair.split_once('=').unwrap().0;
            if label != "le" && label != "quantile" {
                entry.labels.insert(label.to_owned());
            }
        }
    }
    out
}

/// `GET /metrics` with the admin key.
fn scrape(daemon: &Daemon, key: &str) -> String {
    let url = daemon.url().unwrap();
    let resp = daemon
        .client()
        .get(format!("{url}/metrics"))
        .bearer_auth(key)
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    resp.text().unwrap()
}

/// Runs `promtool check metrics` on `text` when promtool is installed.
fn promtool_check(text: &str) {
    let Ok(mut child) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    else {
        eprintln!("promtool not on PATH: skipping `promtool check metrics`");
        return;
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\n--- scrape ---\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn metrics_guide_matches_the_live_scrape() {
    let guide_path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/guides/metrics.md");
    let guide = std::fs::read_to_string(guide_path).unwrap();
    let docs = documented(&guide);
    assert!(!docs.is_empty(), "no metric table in {guide_path}");

    let daemon = Daemon::start();
    daemon.wait_ok();
    let url = daemon.url().unwrap();
    let client = daemon.client();
    let admin = daemon.admin_key();

    // A little work: requests to count, and a key that gets throttled.
    let issued: Value = client
        .post(format!("{url}/v1/keys"))
        .bearer_auth(&admin)
        .json(&json!({"name": "docs", "scope": "read", "rate_per_minute": 1}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let tiny = issued["key"].as_str().unwrap();
    for _ in 0..3 {
        client
            .get(format!("{url}/v1/torrents"))
            .bearer_auth(tiny)
            .send()
            .unwrap();
    }

    // Worker registries come over IPC: poll until every source is there.
    let deadline = Instant::now() + DEADLINE;
    let text = loop {
        let text = scrape(&daemon, &admin);
        let families = scraped(&text);
        let ready = [
            "revaer_http_requests_total",
            "revaer_worker_up",
            "revaer_rate_limit_throttled_total",
            "revaer_engine_torrents",
            "revaer_fsops_jobs_running",
        ]
        .iter()
        .all(|f| families.contains_key(*f));
        if ready {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "metric families never all appeared; last scrape:\n{text}"
        );
        std::thread::sleep(POLL);
    };
    let live = scraped(&text);

    let mut problems = Vec::new();
    for (name, family) in &live {
        match docs.get(name) {
            None => problems.push(format!(
                "{name} ({}, labels {:?}) is in /metrics but not in the guide",
                family.kind, family.labels
            )),
            Some(doc) => {
                if doc.kind != family.kind {
                    problems.push(format!(
                        "{name}: guide says type {:?}, /metrics says {:?}",
                        doc.kind, family.kind
                    ));
                }
                if doc.labels != family.labels {
                    problems.push(format!(
                        "{name}: guide says labels {:?}, /metrics has {:?}",
                        doc.labels, family.labels
                    ));
                }
            }
        }
    }
    for (name, doc) in &docs {
        if live.contains_key(name) {
            continue;
        }
        if !AFTER_EVENT.contains(&name.as_str()) {
            problems.push(format!(
                "{name} is in the guide but not in /metrics (if it appears only after an event, mark it and add it to AFTER_EVENT)"
            ));
        } else if !doc.appears.to_lowercase().contains("after") {
            problems.push(format!(
                "{name} is absent until an event, but the guide does not say so ({:?})",
                doc.appears
            ));
        }
    }
    for name in AFTER_EVENT {
        if !docs.contains_key(*name) {
            problems.push(format!("AFTER_EVENT names {name}, which the guide lacks"));
        }
    }
    assert!(
        problems.is_empty(),
        "docs/guides/metrics.md is out of date:\n  {}\n--- scrape ---\n{text}",
        problems.join("\n  ")
    );

    promtool_check(&text);
}
