//! The engine worker's library: everything `revaer-engine` runs, split out
//! so it can be tested without spawning the process.
//!
//! - [`engine`]: the libtorrent session, commands, events, resume policy.
//! - [`store`]: atomic, quarantining persistence of .torrent and resume data.

pub mod engine;
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
    async fn handle(&self, request: EngineRequest) -> EngineResponse {
        self.0.handle(request).await
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
}
