//! `health_changed` events: watches the `/health/full` verdict and logs an
//! event on every transition of its status or `degraded` list, and once at
//! start.
//!
//! The verdict is re-evaluated as soon as the supervisor reports (a worker
//! crash reaches the event log within milliseconds) and every
//! [`POLL_INTERVAL`], because data-channel state (a missed pong, a dropped
//! link) and store failures are not notified.

use std::sync::Arc;
use std::time::Duration;

use revaer_api_models::HealthStatus;
use revaer_api_models::events::Event;
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

use crate::AppState;
use crate::event_log::EventLog;
use crate::routes::current_health;

/// The verdict is re-evaluated at least this often.
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// What a `health_changed` event reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub status: HealthStatus,
    pub degraded: Vec<String>,
}

/// Starts the watcher for the API's own state.
pub fn spawn(state: Arc<AppState>) {
    let supervision = state.supervision.clone();
    let log = Arc::clone(&state.events);
    tokio::spawn(watch_health(
        move || {
            let health = current_health(&state);
            Verdict {
                status: health.status,
                degraded: health.degraded,
            }
        },
        supervision,
        log,
        POLL_INTERVAL,
    ));
}

/// Logs a `health_changed` event whenever `evaluate` gives a new verdict,
/// evaluating when `supervision` changes and every `every`. Runs until
/// aborted.
pub async fn watch_health<T>(
    mut evaluate: impl FnMut() -> Verdict + Send,
    mut supervision: watch::Receiver<T>,
    log: Arc<EventLog>,
    every: Duration,
) {
    let mut last: Option<Verdict> = None;
    let mut notified = true;
    let mut tick = tokio::time::interval(every.max(Duration::from_millis(1)));
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        let verdict = evaluate();
        if last.as_ref() != Some(&verdict) {
            tracing::info!(
                status = ?verdict.status,
                degraded = ?verdict.degraded,
                "health changed"
            );
            log.append(Event::HealthChanged {
                status: verdict.status,
                degraded: verdict.degraded.clone(),
            });
            last = Some(verdict);
        }
        tokio::select! {
            _ = tick.tick() => {}
            notice = supervision.changed(), if notified => {
                // The sender is gone: polling alone from now on.
                notified = notice.is_ok();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use tokio::time::Instant;

    use super::*;
    use crate::event_log::EventLogConfig;
    use crate::store::Store;

    fn verdict(degraded: &[&str]) -> Verdict {
        Verdict {
            status: if degraded.is_empty() {
                HealthStatus::Ok
            } else {
                HealthStatus::Degraded
            },
            degraded: degraded.iter().map(|d| (*d).to_owned()).collect(),
        }
    }

    fn reported(event: &Event) -> Verdict {
        match event {
            Event::HealthChanged { status, degraded } => Verdict {
                status: *status,
                degraded: degraded.clone(),
            },
            other => Verdict {
                status: HealthStatus::Degraded,
                degraded: vec![format!("unexpected {other:?}")],
            },
        }
    }

    #[tokio::test(start_paused = true)]
    async fn transitions_are_logged_once_each_from_notifications_and_polling() {
        let store = Arc::new(Store::in_memory().unwrap());
        let log = EventLog::open(store, &EventLogConfig::default()).unwrap();
        let mut live = log.subscribe();
        let current = Arc::new(Mutex::new(verdict(&[])));
        let (tx, rx) = watch::channel(0_u32);
        let shared = Arc::clone(&current);
        let task = tokio::spawn(watch_health(
            move || shared.lock().unwrap().clone(),
            rx,
            Arc::clone(&log),
            POLL_INTERVAL,
        ));

        // Once at start.
        assert_eq!(reported(&live.recv().await.unwrap().event), verdict(&[]));

        // Nothing changes: nothing is logged, however long we wait.
        assert!(
            tokio::time::timeout(Duration::from_secs(5), live.recv())
                .await
                .is_err()
        );

        // A supervisor notice is acted on at once, not at the next poll.
        let t0 = Instant::now();
        *current.lock().unwrap() = verdict(&["engine"]);
        tx.send(1).unwrap();
        let e = live.recv().await.unwrap();
        assert_eq!(reported(&e.event), verdict(&["engine"]));
        assert!(t0.elapsed() < POLL_INTERVAL, "{:?}", t0.elapsed());

        // An unnotified change is found by polling.
        let t1 = Instant::now();
        *current.lock().unwrap() = verdict(&["engine", "fsops"]);
        let e = live.recv().await.unwrap();
        assert_eq!(reported(&e.event), verdict(&["engine", "fsops"]));
        assert!(t1.elapsed() <= POLL_INTERVAL, "{:?}", t1.elapsed());

        // The supervisor going away leaves polling working.
        drop(tx);
        *current.lock().unwrap() = verdict(&[]);
        let e = live.recv().await.unwrap();
        assert_eq!(reported(&e.event), verdict(&[]));
        assert!(
            tokio::time::timeout(Duration::from_secs(5), live.recv())
                .await
                .is_err()
        );
        task.abort();
    }

    #[tokio::test]
    async fn spawn_reports_the_apps_readiness_verdict() {
        let h = crate::test_harness::Harness::start().await;
        let mut live = h.state.events.subscribe();
        spawn(Arc::clone(&h.state));
        let first = loop {
            let e = tokio::time::timeout(Duration::from_secs(5), live.recv())
                .await
                .expect("a health_changed event within 5 s")
                .unwrap();
            if let Event::HealthChanged { .. } = e.event {
                break reported(&e.event);
            }
        };
        // The harness has no supervisor: the verdict says so, as
        // /health/full does.
        let full = current_health(&h.state);
        assert_eq!(first.status, HealthStatus::Degraded);
        assert!(
            first.degraded.contains(&"supervisor".to_owned()),
            "{first:?}"
        );
        assert_eq!(first.degraded, full.degraded);
        assert_eq!(full.event_log_head, h.state.events.head_id());
        assert!(full.store.ok);
    }
}
