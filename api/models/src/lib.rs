//! The public HTTP contract of Revaer (DESIGN §5), as plain serde types.
//!
//! The API server renders these and the CLI parses them, so a field renamed
//! here is renamed for both. Nothing in this crate performs I/O.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub mod events;
pub mod torrents;

/// Media type of RFC 9457 problem documents.
pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";

/// An RFC 9457 problem document. Every error the API returns has this shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Problem {
    /// URI reference naming the problem type; `about:blank` for plain HTTP errors.
    #[serde(rename = "type")]
    pub type_uri: String,
    pub title: String,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// Field-level validation failures.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub invalid_params: Vec<InvalidParam>,
}

/// One invalid input, located by a JSON pointer (RFC 6901).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct InvalidParam {
    pub pointer: String,
    pub message: String,
}

/// `GET /health`: liveness only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Liveness {
    pub status: String,
}

/// Overall readiness.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    Ok,
    Degraded,
}

/// `GET /health/full`: readiness of every component. Served with 503 when
/// `status` is `degraded`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HealthFull {
    pub status: HealthStatus,
    /// Names of the components that are not healthy (`engine`, `fsops`,
    /// `api`, `config`, `supervisor`, `downloads`: a torrent stopped on a
    /// full downloads filesystem), sorted.
    pub degraded: Vec<String>,
    /// Keyed by worker name: `api`, `engine`, `fsops`.
    pub workers: BTreeMap<String, WorkerHealth>,
    pub config: ConfigHealth,
    /// The API's SQLite store; when it fails, `api` is degraded.
    pub store: StoreHealth,
    /// Id of the newest event in the durable event log (`None` while it
    /// is empty): where a `GET /v1/events` client resuming now would be.
    pub event_log_head: Option<u64>,
    pub build: BuildInfo,
}

/// The API's durable store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StoreHealth {
    /// The database answers and the last event-log write succeeded.
    pub ok: bool,
    /// What failed, while something does.
    pub error: Option<String>,
}

/// One worker process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WorkerHealth {
    pub up: bool,
    /// `starting`, `running`, `restarting` or `stopped`, as the supervisor sees it.
    pub state: String,
    pub pid: Option<u32>,
    pub restarts: u32,
    pub last_exit: Option<WorkerExitInfo>,
    /// Why the worker counts as down, while it does.
    pub reason: Option<String>,
    /// Config revision the worker acknowledged.
    pub config_revision: Option<u64>,
    pub sandbox: Option<SandboxInfo>,
}

/// How the previous process of a worker ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WorkerExitInfo {
    pub pid: u32,
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub reason: String,
    pub at_unix_ms: u64,
    pub restart_delay_ms: Option<u64>,
}

/// The sandbox a worker actually got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SandboxInfo {
    pub no_new_privs: bool,
    pub landlock_abi: Option<u8>,
    pub landlock_status: String,
    pub seccomp: bool,
    pub seccomp_denied: Vec<String>,
    pub capabilities: Vec<String>,
    pub uid: u32,
    pub gid: u32,
    pub umask: String,
    pub core_dumps: bool,
    pub inherited_fds_closed: u32,
}

/// The config file watcher.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ConfigHealth {
    pub revision: u64,
    pub watch_latency_ms: Option<u64>,
    pub error: Option<String>,
    pub failures: u64,
}

/// What is running.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BuildInfo {
    pub version: String,
    pub revision: String,
}

impl Problem {
    /// A problem with the standard `about:blank` type.
    #[must_use]
    pub fn new(status: u16, title: impl Into<String>) -> Self {
        Self {
            type_uri: "about:blank".to_owned(),
            title: title.into(),
            status,
            detail: None,
            instance: None,
            invalid_params: Vec::new(),
        }
    }

    #[must_use]
    pub fn with_type(mut self, type_uri: impl Into<String>) -> Self {
        self.type_uri = type_uri.into();
        self
    }

    #[must_use]
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }
}

/// Scope of an API key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum KeyScope {
    /// Read-only routes (GET).
    Read,
    /// Everything, including key management.
    Admin,
}

/// `POST /v1/keys` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyIssueRequest {
    pub name: String,
    pub scope: KeyScope,
    /// Requests per minute for this key; absent = the configured default.
    #[serde(default)]
    pub rate_per_minute: Option<u32>,
}

/// A key as listed (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct KeySummary {
    pub id: String,
    pub name: String,
    pub scope: KeyScope,
    pub rate_per_minute: Option<u32>,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

/// Answer to issue and rotate: the only time the secret is shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct KeyCreated {
    #[serde(flatten)]
    pub summary: KeySummary,
    pub key: String,
}

/// `POST /v1/keys/{id}/rotate` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyRotateRequest {
    /// How long the old secret keeps working (0–604800 s, default 3600).
    #[serde(default = "default_grace")]
    pub grace_seconds: u64,
}

fn default_grace() -> u64 {
    3600
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problem_serializes_rfc9457_names() {
        let p = Problem::new(404, "Not Found").with_detail("no route /x");
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(v["type"], "about:blank");
        assert_eq!(v["status"], 404);
        assert_eq!(v["detail"], "no route /x");
        assert!(v.get("invalid_params").is_none());
        assert!(v.get("instance").is_none());
    }

    #[test]
    fn health_status_is_snake_case() {
        assert_eq!(
            serde_json::to_value(HealthStatus::Degraded).unwrap(),
            "degraded"
        );
    }
}
