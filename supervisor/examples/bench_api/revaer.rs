//! Revaer: the release daemon on a fresh data dir, a bench key, the bulk
//! load of the torrents through `POST /v1/torrents`, and the list checks.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use reqwest::blocking::Client;
use serde_json::{Value, json};

use crate::torrents::{BenchTorrent, revaer_upload};
use crate::util::{self, BoxError, Proc, poll_until};

/// `revaer.toml` of the bench: loopback only, no DHT/LSD/UPnP/NAT-PMP, TCP
/// only, and the highest default rate the config accepts.
pub const CONFIG: &str = "[api]\nlisten = \"127.0.0.1:0\"\ndefault_rate_per_minute = 1000000\n\n\
[engine]\nlisten_interfaces = \"127.0.0.1:0\"\nenable_dht = false\nenable_lsd = false\n\
enable_upnp = false\nenable_natpmp = false\nenable_utp = false\n";

/// The bench key's own rate: far above anything this machine can serve, so
/// that the token bucket (still checked on every request) never throttles.
pub const BENCH_KEY_RATE_PER_MINUTE: u32 = 4_000_000_000;

/// A running daemon.
#[derive(Debug)]
pub struct Revaer {
    pub proc: Proc,
    pub url: String,
    /// The bench key (admin scope, very high rate).
    pub key: String,
    pub http: Client,
}

impl Revaer {
    /// Starts `revaerd` from `bin_dir` on `data`, waits for `/health/full`
    /// to answer 200 and issues the bench key with the bootstrap admin key.
    pub fn start(bin_dir: &Path, data: &Path, log: &Path) -> Result<Self, BoxError> {
        Self::start_with(bin_dir, data, log, CONFIG, None)
    }

    /// Like [`Revaer::start`] with `config` as `revaer.toml`; with
    /// `cgroup_procs` (a `cgroup.procs` file), `revaerd` joins that cgroup
    /// before it execs, so every worker it spawns is in it too.
    pub fn start_with(
        bin_dir: &Path,
        data: &Path,
        log: &Path,
        config: &str,
        cgroup_procs: Option<&Path>,
    ) -> Result<Self, BoxError> {
        std::fs::create_dir_all(data)?;
        std::fs::write(data.join("revaer.toml"), config)?;
        let revaerd = bin_dir.join("revaerd");
        let mut cmd = if let Some(procs) = cgroup_procs {
            let mut sh = Command::new("sh");
            sh.arg("-c")
                .arg("echo $$ > \"$0\" && exec \"$@\"")
                .arg(procs)
                .arg(&revaerd);
            sh
        } else {
            Command::new(&revaerd)
        };
        cmd.arg("--data-dir").arg(data).env("RUST_LOG", "warn");
        let mut proc = Proc::spawn("revaerd", &mut cmd, Some(log), Duration::from_secs(60))?;
        let http = Client::builder()
            .no_proxy()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(60))
            .build()?;
        let url = poll_until(
            "revaerd to report ok on /health/full",
            Duration::from_secs(60),
            Duration::from_millis(20),
            || {
                proc.check_alive()?;
                let Some(url) = crate::support::api_url(data) else {
                    return Ok(None);
                };
                let ok = http
                    .get(format!("{url}/health/full"))
                    .send()
                    .is_ok_and(|r| r.status().as_u16() == 200);
                Ok(ok.then_some(url))
            },
        )
        .map_err(|e| format!("{e}{}", proc.log_tail()))?;
        // Read once the API accepts it (the file may appear a moment before).
        let admin = crate::support::admin_key(&http, &url, data, Duration::from_secs(30))
            .map_err(|e| format!("{e}{}", proc.log_tail()))?;
        let resp = http
            .post(format!("{url}/v1/keys"))
            .bearer_auth(&admin)
            .json(&json!({
                "name": "bench-api",
                "scope": "admin",
                "rate_per_minute": BENCH_KEY_RATE_PER_MINUTE,
            }))
            .send()?;
        let status = resp.status();
        let answer: Value = resp.json().unwrap_or(Value::Null);
        let key = answer["key"]
            .as_str()
            .ok_or_else(|| format!("cannot issue the bench key: {status} {answer}"))?
            .to_owned();
        Ok(Self {
            proc,
            url,
            key,
            http,
        })
    }

    /// Pids of revaerd and every process below it.
    pub fn pids(&self) -> Vec<u32> {
        util::process_tree(self.proc.pid())
    }

    pub fn get(&self, path_and_query: &str) -> Result<reqwest::blocking::Response, BoxError> {
        Ok(self
            .http
            .get(format!("{}{path_and_query}", self.url))
            .bearer_auth(&self.key)
            .send()?)
    }

    /// `GET` answering 200 with JSON.
    pub fn get_json(&self, path_and_query: &str) -> Result<(Value, usize), BoxError> {
        let resp = self.get(path_and_query)?;
        let status = resp.status();
        let body = resp.bytes()?;
        if !status.is_success() {
            return Err(format!(
                "GET {path_and_query}: {status} {}",
                String::from_utf8_lossy(&body)
            )
            .into());
        }
        Ok((serde_json::from_slice(&body)?, body.len()))
    }

    /// Walks `GET /v1/torrents?limit=500` over every page.
    pub fn walk_list(&self) -> Result<Listing, BoxError> {
        let mut listing = Listing::default();
        let mut ids = std::collections::HashSet::new();
        let mut cursor: Option<String> = None;
        for _ in 0..10_000 {
            let query = match &cursor {
                Some(c) => format!("/v1/torrents?limit=500&cursor={c}"),
                None => "/v1/torrents?limit=500".to_owned(),
            };
            let (page, _) = self.get_json(&query)?;
            let items = page["items"].as_array().ok_or("no items in the list")?;
            for t in items {
                listing.rows += 1;
                if let Some(id) = t["id"].as_str() {
                    ids.insert(id.to_owned());
                }
                *listing
                    .states
                    .entry(t["state"].as_str().unwrap_or("?").to_owned())
                    .or_insert(0) += 1;
            }
            match page["next"].as_str() {
                Some(next) if !items.is_empty() => cursor = Some(next.to_owned()),
                _ => {
                    listing.unique = ids.len();
                    return Ok(listing);
                }
            }
        }
        Err("the torrent list did not end after 10,000 pages".into())
    }

    /// Ids of the first `n` torrents of the list (for the SSE actions).
    pub fn first_ids(&self, n: usize) -> Result<Vec<String>, BoxError> {
        let (page, _) = self.get_json(&format!("/v1/torrents?limit={}", n.clamp(1, 500)))?;
        Ok(page["items"]
            .as_array()
            .ok_or("no items in the list")?
            .iter()
            .filter_map(|t| t["id"].as_str().map(str::to_owned))
            .collect())
    }
}

/// What a walk over every page of the list saw.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    /// Rows over all pages.
    pub rows: usize,
    /// Distinct torrent ids among them.
    pub unique: usize,
    /// Rows per state.
    pub states: BTreeMap<String, usize>,
}

/// The bulk load.
#[derive(Debug, Clone)]
pub struct LoadResult {
    pub count: usize,
    pub concurrency: usize,
    /// All `POST`s answered.
    pub post_secs: f64,
    /// From the first `POST` to the list showing every torrent paused.
    pub listed_secs: f64,
    pub created: usize,
    pub duplicates: usize,
    pub post_p50_ms: f64,
    pub post_p99_ms: f64,
    /// Rows the full list walk returned (more than `count` = duplicates).
    pub listed_rows: usize,
}

/// One upload; its status code.
async fn upload(
    http: &reqwest::Client,
    url: &str,
    key: &str,
    t: &BenchTorrent,
) -> Result<u16, BoxError> {
    let (body, content_type) = revaer_upload(t)?;
    let resp = http
        .post(url)
        .bearer_auth(key)
        .header("Content-Type", content_type)
        .body(body)
        .send()
        .await?;
    let status = resp.status().as_u16();
    if status != 201 && status != 409 {
        let text = resp.text().await.unwrap_or_default();
        return Err(format!("POST /v1/torrents {}: {status} {text}", t.name).into());
    }
    Ok(status)
}

/// Adds every torrent paused through `POST /v1/torrents` (multipart), with
/// `concurrency` uploads in flight, then waits for the list to show them.
pub fn load(
    revaer: &mut Revaer,
    torrents: &Arc<Vec<BenchTorrent>>,
    concurrency: usize,
) -> Result<LoadResult, BoxError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let url = format!("{}/v1/torrents", revaer.url);
    let t0 = Instant::now();
    let results: Vec<(u16, f64)> = runtime.block_on(async {
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(60))
            .build()?;
        let next = Arc::new(AtomicUsize::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..concurrency {
            let http = http.clone();
            let url = url.clone();
            let key = revaer.key.clone();
            let next = Arc::clone(&next);
            let torrents = Arc::clone(torrents);
            tasks.spawn(async move {
                let mut done = Vec::new();
                loop {
                    if util::stop_requested() {
                        return Err::<_, BoxError>("interrupted".into());
                    }
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(t) = torrents.get(i) else {
                        return Ok(done);
                    };
                    let started = Instant::now();
                    let status = upload(&http, &url, &key, t).await?;
                    done.push((status, started.elapsed().as_secs_f64() * 1000.0));
                }
            });
        }
        let mut all = Vec::with_capacity(torrents.len());
        while let Some(joined) = tasks.join_next().await {
            all.extend(joined??);
        }
        Ok::<_, BoxError>(all)
    })?;
    let post_secs = t0.elapsed().as_secs_f64();
    drop(runtime);
    let created = results.iter().filter(|(s, _)| *s == 201).count();
    let duplicates = results.iter().filter(|(s, _)| *s == 409).count();
    let mut latencies: Vec<f64> = results.iter().map(|&(_, ms)| ms).collect();
    latencies.sort_by(f64::total_cmp);
    eprintln!(
        "bench-api: Revaer: {} POSTs answered in {post_secs:.1} s ({created} created, {duplicates} duplicates)",
        results.len()
    );
    let want = torrents.len();
    let mut listing = Listing::default();
    let mut reported = Instant::now();
    poll_until(
        "Revaer to list every torrent paused",
        Duration::from_secs(600),
        Duration::from_millis(250),
        || {
            revaer.proc.check_alive()?;
            listing = revaer.walk_list()?;
            if reported.elapsed() > Duration::from_secs(15) {
                eprintln!(
                    "bench-api: Revaer lists {} rows, {} distinct torrents: {:?}",
                    listing.rows, listing.unique, listing.states
                );
                reported = Instant::now();
            }
            let paused = listing.states.get("paused").copied().unwrap_or(0);
            Ok((listing.unique == want && paused == listing.rows).then_some(()))
        },
    )
    .map_err(|e| {
        format!(
            "{e}; listed {} rows, {} distinct torrents: {:?}",
            listing.rows, listing.unique, listing.states
        )
    })?;
    if listing.rows != listing.unique {
        eprintln!(
            "bench-api: Revaer's list has {} rows for {} torrents: {} duplicates",
            listing.rows,
            listing.unique,
            listing.rows - listing.unique
        );
    }
    let listed_secs = t0.elapsed().as_secs_f64();
    Ok(LoadResult {
        count: want,
        concurrency,
        post_secs,
        listed_secs,
        created,
        duplicates,
        post_p50_ms: util::quantile(&latencies, 0.50).unwrap_or(f64::NAN),
        post_p99_ms: util::quantile(&latencies, 0.99).unwrap_or(f64::NAN),
        listed_rows: listing.rows,
    })
}
