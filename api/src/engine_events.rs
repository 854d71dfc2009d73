//! The API's subscription to the engine's event stream.
//!
//! A dedicated connection sends `Subscribe` and then only receives: first a
//! full snapshot, then every event. It reconnects (snapshot again) whenever
//! the engine restarts. Events are re-broadcast inside the API and the most
//! recent ones kept in a bounded log; the torrent read model and SSE build on
//! this.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use revaer_ipc::engine::{EngineEvent, EngineRequest};
use revaer_ipc::{Envelope, IpcError, WorkerRequest, WorkerResponse};
use tokio::sync::{Notify, broadcast, watch};

use crate::links::{LinkParams, open};

/// Events kept in memory for late readers.
const RECENT_EVENTS: usize = 10_000;
const RECONNECT_MIN: Duration = Duration::from_millis(10);
const RECONNECT_MAX: Duration = Duration::from_millis(500);

/// Shared view of the engine's events.
#[derive(Debug)]
pub struct EngineEvents {
    recent: Mutex<VecDeque<EngineEvent>>,
    live: broadcast::Sender<EngineEvent>,
    wake: Notify,
    /// True while a subscription is open (between the snapshot and the
    /// engine going away).
    connected: watch::Sender<bool>,
}

impl EngineEvents {
    /// Starts the subscription task.
    #[must_use]
    pub fn spawn(params: LinkParams) -> Arc<Self> {
        let (live, _) = broadcast::channel(4096);
        let events = Arc::new(Self {
            recent: Mutex::new(VecDeque::new()),
            live,
            wake: Notify::new(),
            connected: watch::Sender::new(false),
        });
        tokio::spawn(Arc::clone(&events).run(params));
        events
    }

    /// The most recent events, oldest first.
    #[must_use]
    pub fn recent(&self) -> Vec<EngineEvent> {
        self.recent
            .lock()
            .map(|r| r.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Live events from now on.
    #[must_use]
    pub fn subscribe(&self) -> broadcast::Receiver<EngineEvent> {
        self.live.subscribe()
    }

    /// Whether the engine's event stream is open right now.
    #[must_use]
    pub fn connected(&self) -> watch::Receiver<bool> {
        self.connected.subscribe()
    }

    /// Reconnect now (the engine was restarted).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    fn record(&self, event: EngineEvent) {
        if let Ok(mut recent) = self.recent.lock() {
            if recent.len() == RECENT_EVENTS {
                recent.pop_front();
            }
            recent.push_back(event.clone());
        }
        let _ = self.live.send(event);
    }

    async fn run(self: Arc<Self>, params: LinkParams) {
        let mut delay = RECONNECT_MIN;
        loop {
            let result = self.follow(&params).await;
            self.connected.send_replace(false);
            match result {
                Ok(()) => delay = RECONNECT_MIN,
                Err(e) => tracing::debug!(error = %e, "engine event stream unavailable"),
            }
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = self.wake.notified() => {}
            }
            delay = (delay * 2).min(RECONNECT_MAX);
        }
    }

    /// One subscription, until the engine goes away.
    async fn follow(&self, params: &LinkParams) -> Result<(), IpcError> {
        let mut conn = open(params).await?;
        conn.send(&Envelope {
            request_id: 0,
            traceparent: None,
            body: WorkerRequest::Engine(EngineRequest::Subscribe),
        })
        .await?;
        tracing::info!("subscribed to engine events");
        while let Some(frame) = conn.recv::<Envelope<WorkerResponse>>().await? {
            match frame.body {
                WorkerResponse::Event(event) => {
                    // Connected first: a subscriber that sees `true` either
                    // gets this snapshot or knows to fetch the list itself.
                    if matches!(event, EngineEvent::Snapshot(_)) {
                        self.connected.send_replace(true);
                    }
                    self.record(event);
                }
                _ => return Err(IpcError::UnexpectedMessage("non-event on the event stream")),
            }
        }
        Ok(())
    }
}
