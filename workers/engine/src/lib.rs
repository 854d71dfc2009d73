//! The engine worker's library: everything `revaer-engine` runs, split out
//! so it can be tested without spawning the process.
//!
//! - [`engine`]: the libtorrent session, commands, events, resume policy.
//! - [`store`]: atomic, quarantining persistence of .torrent and resume data.
//! - [`metrics`]: the engine's Prometheus registry, fetched by the API.
//! - [`network_guard`]: the kill switch of `[engine] interface`.

pub mod engine;
pub mod metrics;
pub mod network_guard;
pub mod store;

use std::sync::Arc;

use revaer_config::Config;
use revaer_ipc::engine::{EngineRequest, EngineResponse};
use revaer_worker_bootstrap::Bootstrapped;
use revaer_worker_bootstrap::data_server::{Service, Subscription};

use crate::engine::Engine;

/// The engine as the data-channel server sees it.
#[derive(Debug, Clone)]
pub struct EngineService(pub Arc<Engine>);

impl EngineService {
    /// Starts the engine on the worker's data dir and config.
    pub fn start(boot: &Bootstrapped) -> Result<Self, String> {
        Engine::start(
            &boot.init.config,
            boot.layout.state_engine(),
            boot.layout.downloads(),
        )
        .map(Self)
    }
}

impl Service for EngineService {
    async fn handle(&self, request: EngineRequest, traceparent: Option<String>) -> EngineResponse {
        self.0.handle_traced(request, traceparent).await
    }

    fn subscribe(&self) -> Option<Subscription> {
        Some(self.0.subscribe())
    }

    async fn apply_config(&self, config: &Config) {
        self.0.apply_config(config);
    }

    async fn shutdown(&self) {
        self.0.shutdown().await;
    }

    fn degraded(&self) -> Option<String> {
        self.0.degraded()
    }

    fn metrics(&self) -> String {
        self.0
            .metrics
            .render(self.0.snapshot().into_iter().map(|t| t.state))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_running_engine_serves_its_metrics() {
        let dir =
            std::env::temp_dir().join(format!("revaer-engine-metrics-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let config = crate::engine::tests::loopback_config();
        let engine = Engine::start(&config, dir.join("state"), dir.join("downloads")).unwrap();
        let service = EngineService(Arc::clone(&engine));

        let text = service.metrics();
        assert!(
            text.contains("# TYPE revaer_engine_torrents gauge"),
            "{text}"
        );
        assert!(
            text.contains("revaer_engine_torrents{state=\"seeding\"} 0"),
            "{text}"
        );
        // Everything the engine exposes survives the data server's filter.
        assert_eq!(
            revaer_worker_bootstrap::data_server::own_metrics(revaer_ipc::Role::Engine, &text),
            text
        );

        // The ticker asks for session stats; their answer reaches the registry.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let text = service.metrics();
            if text.contains("revaer_engine_alerts_total{kind=\"session_stats\"}")
                && text.contains("revaer_engine_peers_connected 0")
            {
                break;
            }
            assert!(Instant::now() < deadline, "no session stats: {text}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        engine.shutdown().await;
        let _ = std::fs::remove_dir_all(&dir);
    }
}
