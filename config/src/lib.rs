//! The `revaer.toml` schema, its embedded defaults, and the one place that
//! parses and validates it.
//!
//! The supervisor reads the file and pushes the parsed [`Config`] to every
//! worker over IPC, so workers never touch the file themselves. Every field
//! has a default: an absent file, or an absent section, means "embedded
//! defaults". Unknown keys are rejected so that a typo never silently falls
//! back to a default.

pub mod layout;

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

pub use layout::DataLayout;

/// Largest config file we accept. A real config is a few KiB; anything larger
/// is a mistake (or an attack) and is refused before parsing.
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// The file name of the config inside the data dir.
pub const CONFIG_FILE_NAME: &str = "revaer.toml";

/// Why a config could not be accepted. The message is shown to operators in
/// logs and in `/health/full`, so it names the offending key.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("config file is {size} bytes; the limit is {limit} bytes")]
    TooLarge { size: u64, limit: u64 },
    #[error("config is not valid UTF-8")]
    NotUtf8,
    #[error("config does not parse: {0}")]
    Parse(String),
    #[error("invalid value for `{key}`: {reason}")]
    Invalid { key: &'static str, reason: String },
}

/// The whole configuration. Cloned and pushed to workers on every change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub api: ApiConfig,
    pub engine: EngineConfig,
    pub supervisor: SupervisorConfig,
    pub sandbox: SandboxConfig,
}

/// `[api]`: the HTTP control plane.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// Address the HTTP API binds to. Loopback by default: exposing the API
    /// to a network is an explicit operator decision.
    pub listen: String,
    /// Requests per minute allowed to a key that has no rate of its own
    /// (a token bucket: bursts up to this many).
    pub default_rate_per_minute: u32,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:7070".to_owned(),
            default_rate_per_minute: 6000,
        }
    }
}

/// `[engine]`: the BitTorrent session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[allow(
    clippy::struct_excessive_bools,
    reason = "independent protocol switches"
)]
pub struct EngineConfig {
    /// libtorrent `listen_interfaces`: comma-separated `IP:port` entries.
    pub listen_interfaces: String,
    pub enable_dht: bool,
    pub enable_lsd: bool,
    pub enable_upnp: bool,
    pub enable_natpmp: bool,
    /// uTP in both directions (TCP is always on).
    pub enable_utp: bool,
    /// Global limits in bytes per second; 0 = unlimited.
    pub download_rate_limit: u64,
    pub upload_rate_limit: u64,
    pub connections_limit: u32,
    /// Longest time a torrent's changed state may stay unsaved.
    pub resume_flush_interval_secs: u64,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            listen_interfaces: "0.0.0.0:6881,[::]:6881".to_owned(),
            enable_dht: true,
            enable_lsd: false,
            enable_upnp: false,
            enable_natpmp: false,
            enable_utp: true,
            download_rate_limit: 0,
            upload_rate_limit: 0,
            connections_limit: 500,
            resume_flush_interval_secs: 15,
        }
    }
}

/// `[supervisor]`: how crashed workers are restarted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SupervisorConfig {
    /// Delay before the first restart of a crashed worker.
    pub restart_backoff_initial_ms: u64,
    /// Upper bound of the (doubling) restart delay.
    pub restart_backoff_max_ms: u64,
    /// A worker that stays up this long has its backoff reset.
    pub restart_backoff_reset_after_ms: u64,
    /// How long a worker gets to exit after it is asked to shut down before
    /// it is killed.
    pub shutdown_grace_ms: u64,
}

impl Default for SupervisorConfig {
    fn default() -> Self {
        Self {
            restart_backoff_initial_ms: 100,
            restart_backoff_max_ms: 30_000,
            restart_backoff_reset_after_ms: 60_000,
            shutdown_grace_ms: 10_000,
        }
    }
}

/// `[sandbox]`: optional identity switch for workers when started as root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct SandboxConfig {
    /// Numeric uid the workers switch to when the daemon runs as root.
    pub worker_uid: Option<u32>,
    /// Numeric gid the workers switch to when the daemon runs as root.
    pub worker_gid: Option<u32>,
}

impl Config {
    /// Parses and validates a config file's bytes.
    pub fn from_toml_bytes(bytes: &[u8]) -> Result<Self, ConfigError> {
        let size = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
        if size > MAX_CONFIG_BYTES {
            return Err(ConfigError::TooLarge {
                size,
                limit: MAX_CONFIG_BYTES,
            });
        }
        let text = std::str::from_utf8(bytes).map_err(|_| ConfigError::NotUtf8)?;
        let config: Self =
            toml::from_str(text).map_err(|e| ConfigError::Parse(e.message().to_owned()))?;
        config.validate()?;
        Ok(config)
    }

    /// The commented default file written on first start.
    #[must_use]
    pub fn default_file_contents() -> &'static str {
        DEFAULT_FILE
    }

    /// The API listen address, already validated.
    pub fn api_listen(&self) -> Result<SocketAddr, ConfigError> {
        self.api.listen.parse().map_err(|e| ConfigError::Invalid {
            key: "api.listen",
            reason: format!("`{}` is not an IP:port address ({e})", self.api.listen),
        })
    }

    /// Checks cross-field rules that serde cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.api_listen()?;
        if !(1..=1_000_000).contains(&self.api.default_rate_per_minute) {
            return Err(ConfigError::Invalid {
                key: "api.default_rate_per_minute",
                reason: "must be between 1 and 1000000".to_owned(),
            });
        }
        let s = &self.supervisor;
        if s.restart_backoff_initial_ms == 0 {
            return Err(ConfigError::Invalid {
                key: "supervisor.restart_backoff_initial_ms",
                reason: "must be at least 1".to_owned(),
            });
        }
        if s.restart_backoff_max_ms < s.restart_backoff_initial_ms {
            return Err(ConfigError::Invalid {
                key: "supervisor.restart_backoff_max_ms",
                reason: format!(
                    "{} is below restart_backoff_initial_ms ({})",
                    s.restart_backoff_max_ms, s.restart_backoff_initial_ms
                ),
            });
        }
        if s.restart_backoff_max_ms > 3_600_000 {
            return Err(ConfigError::Invalid {
                key: "supervisor.restart_backoff_max_ms",
                reason: "must be at most one hour (3600000)".to_owned(),
            });
        }
        if s.shutdown_grace_ms == 0 || s.shutdown_grace_ms > 600_000 {
            return Err(ConfigError::Invalid {
                key: "supervisor.shutdown_grace_ms",
                reason: "must be between 1 and 600000".to_owned(),
            });
        }
        self.engine.validate()?;
        if self.sandbox.worker_uid.is_some() != self.sandbox.worker_gid.is_some() {
            return Err(ConfigError::Invalid {
                key: "sandbox.worker_uid",
                reason: "worker_uid and worker_gid must be set together".to_owned(),
            });
        }
        if self.sandbox.worker_uid == Some(0) || self.sandbox.worker_gid == Some(0) {
            return Err(ConfigError::Invalid {
                key: "sandbox.worker_uid",
                reason: "workers may not be configured to run as uid/gid 0".to_owned(),
            });
        }
        Ok(())
    }
}

impl EngineConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, reason: &str| {
            Err(ConfigError::Invalid {
                key,
                reason: reason.to_owned(),
            })
        };
        let interfaces = self.listen_interfaces.trim();
        if interfaces.is_empty() || interfaces.len() > 1024 {
            return invalid(
                "engine.listen_interfaces",
                "must list 1 to 1024 characters of IP:port entries",
            );
        }
        for entry in interfaces.split(',') {
            let entry = entry.trim();
            let port = entry.rsplit_once(':').map(|(_, p)| p.trim_end_matches('s'));
            if port.and_then(|p| p.parse::<u16>().ok()).is_none() {
                return Err(ConfigError::Invalid {
                    key: "engine.listen_interfaces",
                    reason: format!("`{entry}` is not IP:port"),
                });
            }
        }
        let max_rate = u64::try_from(i32::MAX).unwrap_or(u64::MAX);
        if self.download_rate_limit > max_rate {
            return invalid(
                "engine.download_rate_limit",
                "must be at most 2147483647 bytes/s",
            );
        }
        if self.upload_rate_limit > max_rate {
            return invalid(
                "engine.upload_rate_limit",
                "must be at most 2147483647 bytes/s",
            );
        }
        if self.connections_limit == 0 || self.connections_limit > 65_535 {
            return invalid("engine.connections_limit", "must be between 1 and 65535");
        }
        if !(1..=30).contains(&self.resume_flush_interval_secs) {
            return invalid(
                "engine.resume_flush_interval_secs",
                "must be between 1 and 30",
            );
        }
        Ok(())
    }
}

const DEFAULT_FILE: &str = r#"# Revaer configuration. Every key is optional; shown values are the defaults.
# The daemon watches this file: edits apply live. An invalid edit is refused,
# the previous configuration stays in force and /health/full reports why.

[api]
# Address of the HTTP API. Keep it on loopback unless a reverse proxy or a
# firewall protects it.
listen = "127.0.0.1:7070"
# Requests per minute for API keys issued without a rate of their own.
default_rate_per_minute = 6000

[engine]
# Where the BitTorrent engine listens for peers (comma-separated IP:port).
listen_interfaces = "0.0.0.0:6881,[::]:6881"
enable_dht = true
enable_lsd = false
enable_upnp = false
enable_natpmp = false
enable_utp = true
# Global limits in bytes per second; 0 means unlimited.
download_rate_limit = 0
upload_rate_limit = 0
connections_limit = 500
# A torrent's progress is saved at least this often (1-30 s), and at once on
# every add, pause, resume, selection, metadata arrival and completion.
resume_flush_interval_secs = 15

[supervisor]
# Crashed workers are restarted after a delay that doubles on each crash
# (with jitter) up to the maximum, and resets once a worker stays up.
restart_backoff_initial_ms = 100
restart_backoff_max_ms = 30000
restart_backoff_reset_after_ms = 60000
# Time a worker gets to stop cleanly on shutdown before it is killed.
shutdown_grace_ms = 10000

[sandbox]
# When the daemon is started as root, workers switch to this uid/gid.
# worker_uid = 65534
# worker_gid = 65534
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_file_parses_to_defaults() {
        let parsed = Config::from_toml_bytes(DEFAULT_FILE.as_bytes()).unwrap();
        assert_eq!(parsed, Config::default());
    }

    #[test]
    fn empty_file_means_defaults() {
        assert_eq!(Config::from_toml_bytes(b"").unwrap(), Config::default());
    }

    #[test]
    fn unknown_key_is_refused() {
        let err = Config::from_toml_bytes(b"[api]\nlisten_typo = \"x\"\n").unwrap_err();
        assert!(
            matches!(err, ConfigError::Parse(ref m) if m.contains("listen_typo")),
            "{err}"
        );
    }

    #[test]
    fn bad_listen_is_refused_with_key() {
        let err = Config::from_toml_bytes(b"[api]\nlisten = \"nope\"\n").unwrap_err();
        assert!(
            matches!(
                err,
                ConfigError::Invalid {
                    key: "api.listen",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn backoff_max_below_initial_is_refused() {
        let err = Config::from_toml_bytes(
            b"[supervisor]\nrestart_backoff_initial_ms = 500\nrestart_backoff_max_ms = 100\n",
        )
        .unwrap_err();
        assert!(matches!(
            err,
            ConfigError::Invalid {
                key: "supervisor.restart_backoff_max_ms",
                ..
            }
        ));
    }

    #[test]
    fn oversized_and_non_utf8_are_refused() {
        let big = vec![b'#'; usize::try_from(MAX_CONFIG_BYTES).unwrap() + 1];
        assert!(matches!(
            Config::from_toml_bytes(&big),
            Err(ConfigError::TooLarge { .. })
        ));
        assert_eq!(
            Config::from_toml_bytes(&[0xff, 0xfe]),
            Err(ConfigError::NotUtf8)
        );
    }

    #[test]
    fn engine_values_are_validated() {
        for (text, key) in [
            (
                "[engine]\nlisten_interfaces = \"\"\n",
                "engine.listen_interfaces",
            ),
            (
                "[engine]\nlisten_interfaces = \"0.0.0.0\"\n",
                "engine.listen_interfaces",
            ),
            (
                "[engine]\nresume_flush_interval_secs = 31\n",
                "engine.resume_flush_interval_secs",
            ),
            (
                "[engine]\nconnections_limit = 0\n",
                "engine.connections_limit",
            ),
            (
                "[engine]\nupload_rate_limit = 3000000000\n",
                "engine.upload_rate_limit",
            ),
        ] {
            let err = Config::from_toml_bytes(text.as_bytes()).unwrap_err();
            assert!(
                matches!(err, ConfigError::Invalid { key: k, .. } if k == key),
                "{text}: {err}"
            );
        }
        let ok =
            Config::from_toml_bytes(b"[engine]\nlisten_interfaces = \"127.0.0.1:0,[::1]:6881\"\n")
                .unwrap();
        assert_eq!(ok.engine.listen_interfaces, "127.0.0.1:0,[::1]:6881");
    }

    #[test]
    fn root_worker_identity_is_refused() {
        let err =
            Config::from_toml_bytes(b"[sandbox]\nworker_uid = 0\nworker_gid = 0\n").unwrap_err();
        assert!(matches!(
            err,
            ConfigError::Invalid {
                key: "sandbox.worker_uid",
                ..
            }
        ));
    }
}
