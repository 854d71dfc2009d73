//! SSE fan-out latency: N subscribers on `GET /v1/events` (tokio tasks,
//! one connection each), then rounds of `POST /v1/torrents/{id}/action`
//! `{"action":"resume"}`, each on a torrent not touched before. Latency of a
//! (subscriber, round) pair = from the moment just before the action is
//! sent to that subscriber parsing the first `state_changed` event of that
//! torrent. Every round waits for all subscribers (bounded), then the next
//! starts; at the end the resumed torrents are paused again.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::util::{self, BoxError};

/// What was measured.
#[derive(Debug, Clone, Default)]
pub struct SseResult {
    pub subscribers: usize,
    pub connect_secs: f64,
    pub rounds: usize,
    /// (subscriber, round) pairs that received their event.
    pub pairs: usize,
    /// Pairs whose event did not arrive within the round timeout.
    pub missing: usize,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// The same pairs measured from the action's 2xx answer instead.
    pub from_ack_p50_ms: f64,
    pub from_ack_p99_ms: f64,
    /// The action requests themselves.
    pub action_p50_ms: f64,
    pub action_p99_ms: f64,
    /// Other events the subscribers received meanwhile (all kinds).
    pub other_events: usize,
    /// Per round, the latency of its slowest subscriber: median over rounds.
    pub round_max_p50_ms: f64,
    /// Rounds whose slowest subscriber waited more than 50 ms.
    pub slow_rounds: usize,
    /// The three slowest rounds: (round, slowest subscriber's ms).
    pub worst_rounds: Vec<(usize, f64)>,
}

/// A `state_changed` event one subscriber parsed.
struct Receipt {
    torrent: String,
    at: Instant,
}

/// The torrent id of a `StoredEvent` (`{"id", "at", "event": {"type",
/// "torrent", ...}}`), tolerating a flat layout too.
fn torrent_of(data: &Value) -> Option<&str> {
    data["event"]["torrent"]
        .as_str()
        .or_else(|| data["torrent"].as_str())
}

fn is_state_changed(event: &str, data: &Value) -> bool {
    event == "state_changed" || data["event"]["type"] == json!("state_changed")
}

/// One subscriber: reads the stream until the connection ends or the task
/// is aborted; reports each `state_changed` receipt.
async fn subscriber(
    http: reqwest::Client,
    url: String,
    key: String,
    connected: Arc<AtomicUsize>,
    others: Arc<AtomicUsize>,
    tx: mpsc::UnboundedSender<(usize, Receipt)>,
    index: usize,
) -> Result<(), BoxError> {
    let mut resp = http
        .get(url)
        .bearer_auth(key)
        .header("Accept", "text/event-stream")
        .send()
        .await?;
    if !resp.status().is_success() {
        return Err(format!("GET /v1/events: {}", resp.status()).into());
    }
    connected.fetch_add(1, Ordering::AcqRel);
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut event = String::new();
    let mut data = String::new();
    while let Some(chunk) = resp.chunk().await? {
        let at = Instant::now();
        buf.extend_from_slice(&chunk);
        let mut start = 0;
        while let Some(pos) = buf[start..].iter().position(|&b| b == b'\n') {
            let line = &buf[start..start + pos];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            start += pos + 1;
            if line.is_empty() {
                // Only `state_changed` (or unnamed) messages are parsed.
                if !data.is_empty() && (event.is_empty() || event == "state_changed") {
                    let parsed: Value = serde_json::from_str(&data).unwrap_or(Value::Null);
                    match torrent_of(&parsed) {
                        Some(torrent) if is_state_changed(&event, &parsed) => {
                            let receipt = Receipt {
                                torrent: torrent.to_owned(),
                                at,
                            };
                            if tx.send((index, receipt)).is_err() {
                                return Ok(());
                            }
                        }
                        _ => {
                            others.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                } else if !data.is_empty() {
                    others.fetch_add(1, Ordering::Relaxed);
                }
                event.clear();
                data.clear();
            } else if let Some(v) = line.strip_prefix(b"event:") {
                event = String::from_utf8_lossy(v).trim().to_owned();
            } else if let Some(v) = line.strip_prefix(b"data:") {
                if !data.is_empty() {
                    data.push('\n');
                }
                data.push_str(String::from_utf8_lossy(v).trim_start());
            }
        }
        buf.drain(..start);
    }
    Ok(())
}

fn quantile_ms(sorted: &[f64], q: f64) -> f64 {
    util::quantile(sorted, q).unwrap_or(f64::NAN)
}

async fn action(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    id: &str,
    what: &str,
) -> Result<(), BoxError> {
    let resp = http
        .post(format!("{base}/v1/torrents/{id}/action"))
        .bearer_auth(key)
        .json(&json!({ "action": what }))
        .send()
        .await?;
    let status = resp.status();
    if !status.is_success() {
        let text = resp.text().await.unwrap_or_default();
        return Err(format!("action {what} on {id}: {status} {text}").into());
    }
    Ok(())
}

/// Runs the SSE measurement against `base` with `ids` (one per round, never
/// touched before).
#[allow(
    clippy::too_many_lines,
    reason = "one straight sequence: connect, rounds, statistics"
)]
pub fn run(
    base: &str,
    key: &str,
    ids: &[String],
    subscribers: usize,
    round_timeout: Duration,
) -> Result<SseResult, BoxError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let http = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(0)
            .build()?;
        let actions = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()?;
        let connected = Arc::new(AtomicUsize::new(0));
        let others = Arc::new(AtomicUsize::new(0));
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut tasks = tokio::task::JoinSet::new();
        let t0 = Instant::now();
        for index in 0..subscribers {
            tasks.spawn(subscriber(
                http.clone(),
                format!("{base}/v1/events"),
                key.to_owned(),
                Arc::clone(&connected),
                Arc::clone(&others),
                tx.clone(),
                index,
            ));
            // Connect in waves of 100, each answered before the next.
            if (index + 1) % 100 == 0 {
                let deadline = Instant::now() + Duration::from_secs(30);
                while connected.load(Ordering::Acquire) < index + 1 {
                    if let Some(Ok(Err(e))) = tasks.try_join_next() {
                        return Err(format!("a subscriber failed: {e}").into());
                    }
                    if Instant::now() > deadline || util::stop_requested() {
                        return Err("SSE subscribers did not connect within 30 s".into());
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }
        drop(tx);
        let deadline = Instant::now() + Duration::from_secs(60);
        while connected.load(Ordering::Acquire) < subscribers {
            if Instant::now() > deadline || util::stop_requested() {
                return Err(format!(
                    "only {} of {subscribers} SSE subscribers connected",
                    connected.load(Ordering::Acquire)
                )
                .into());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let connect_secs = t0.elapsed().as_secs_f64();
        eprintln!("bench-api: SSE: {subscribers} subscribers connected in {connect_secs:.1} s");
        // Let any replay or greeting drain.
        tokio::time::sleep(Duration::from_secs(2)).await;
        while rx.try_recv().is_ok() {}
        others.store(0, Ordering::Release);

        let mut latencies = Vec::with_capacity(ids.len() * subscribers);
        let mut from_ack = Vec::with_capacity(ids.len() * subscribers);
        let mut action_ms = Vec::with_capacity(ids.len());
        let mut missing = 0;
        let mut round_max: Vec<(usize, f64)> = Vec::with_capacity(ids.len());
        for (round, id) in ids.iter().enumerate() {
            if util::stop_requested() {
                return Err("interrupted".into());
            }
            let mut seen = vec![false; subscribers];
            let mut got = 0;
            let sent = Instant::now();
            action(&actions, base, key, id, "resume").await?;
            let acked = Instant::now();
            action_ms.push((acked - sent).as_secs_f64() * 1000.0);
            let until = sent + round_timeout;
            let mut slowest: f64 = 0.0;
            while got < subscribers {
                let left = until.saturating_duration_since(Instant::now());
                let Ok(Some((sub, receipt))) = tokio::time::timeout(left, rx.recv()).await else {
                    break;
                };
                if receipt.torrent != *id || seen[sub] {
                    continue;
                }
                seen[sub] = true;
                got += 1;
                let ms = (receipt.at - sent).as_secs_f64() * 1000.0;
                slowest = slowest.max(ms);
                latencies.push(ms);
                from_ack.push(receipt.at.saturating_duration_since(acked).as_secs_f64() * 1000.0);
            }
            round_max.push((round, slowest));
            missing += subscribers - got;
            if got < subscribers {
                eprintln!(
                    "bench-api: SSE round {round}: {got} of {subscribers} subscribers got the event within {} s",
                    round_timeout.as_secs()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let other_events = others.load(Ordering::Acquire);
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
        for id in ids {
            action(&actions, base, key, id, "pause").await?;
        }
        latencies.sort_by(f64::total_cmp);
        from_ack.sort_by(f64::total_cmp);
        let mut maxima: Vec<f64> = round_max.iter().map(|&(_, ms)| ms).collect();
        maxima.sort_by(f64::total_cmp);
        round_max.sort_by(|a, b| b.1.total_cmp(&a.1));
        let slow_rounds = round_max.iter().filter(|&&(_, ms)| ms > 50.0).count();
        round_max.truncate(3);
        action_ms.sort_by(f64::total_cmp);
        Ok(SseResult {
            subscribers,
            connect_secs,
            rounds: ids.len(),
            pairs: latencies.len(),
            missing,
            p50_ms: quantile_ms(&latencies, 0.50),
            p90_ms: quantile_ms(&latencies, 0.90),
            p99_ms: quantile_ms(&latencies, 0.99),
            max_ms: latencies.last().copied().unwrap_or(f64::NAN),
            from_ack_p50_ms: quantile_ms(&from_ack, 0.50),
            from_ack_p99_ms: quantile_ms(&from_ack, 0.99),
            action_p50_ms: quantile_ms(&action_ms, 0.50),
            action_p99_ms: quantile_ms(&action_ms, 0.99),
            other_events,
            round_max_p50_ms: quantile_ms(&maxima, 0.5),
            slow_rounds,
            worst_rounds: round_max,
        })
    })
}
