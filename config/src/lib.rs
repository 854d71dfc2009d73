//! The `revaer.toml` schema, its embedded defaults, and the one place that
//! parses and validates it.
//!
//! The supervisor reads the file and pushes the parsed [`Config`] to every
//! worker over IPC, so workers never touch the file themselves. Every field
//! has a default: an absent file, or an absent section, means "embedded
//! defaults". Unknown keys are rejected so that a typo never silently falls
//! back to a default.

pub mod layout;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Component, Path, PathBuf};

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
    pub fsops: FsopsConfig,
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
    /// Accept more than one peer from the same IP address (distinct ports).
    /// On by default: peers behind one NAT, CGNAT or host share an address,
    /// and with it off a tracker that lists our own address (most do) gets
    /// that whole address banned after libtorrent's self-connection check,
    /// so every other peer there is refused (see ADR 005).
    pub allow_multiple_connections_per_ip: bool,
    /// Bind every peer, tracker and DHT connection to this network
    /// interface (a device name such as `wg0`, or one of its addresses),
    /// e.g. a VPN's. Listening moves onto it (the ports of
    /// `listen_interfaces` are kept) and outgoing connections are bound to
    /// it; while it is missing the engine stops transferring rather than
    /// use another interface (a kill switch). Unset: any interface.
    pub interface: Option<String>,
    /// Longest time a torrent's changed state may stay unsaved.
    pub resume_flush_interval_secs: u64,
}

/// What `[engine] interface` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindTarget {
    /// A network device, e.g. `wg0`.
    Device(String),
    /// An address one of the host's interfaces holds.
    Address(IpAddr),
}

impl std::fmt::Display for BindTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Device(name) => write!(f, "interface {name}"),
            Self::Address(ip) => write!(f, "address {ip}"),
        }
    }
}

/// Longest device name Linux accepts (`IFNAMSIZ` - 1).
const MAX_DEVICE_NAME: usize = 15;

/// `interface` as a [`BindTarget`], or why it is not one.
fn parse_bind_target(text: &str) -> Result<BindTarget, String> {
    let text = text.trim();
    if let Ok(ip) = text.parse::<IpAddr>() {
        if ip.is_unspecified() {
            return Err(format!(
                "`{ip}` is every address; leave `interface` unset for that"
            ));
        }
        return Ok(BindTarget::Address(ip));
    }
    let valid_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if text.is_empty()
        || text.len() > MAX_DEVICE_NAME
        || text == "."
        || text == ".."
        || !text.chars().all(valid_char)
    {
        return Err(format!(
            "`{text}` is neither an IP address nor a device name (1 to {MAX_DEVICE_NAME} of A-Z a-z 0-9 - _ .)"
        ));
    }
    Ok(BindTarget::Device(text.to_owned()))
}

impl EngineConfig {
    /// The interface every connection is bound to, if `interface` is set
    /// (and valid: [`Config::validate`] refuses it otherwise).
    #[must_use]
    pub fn bind_target(&self) -> Option<BindTarget> {
        self.interface
            .as_deref()
            .and_then(|text| parse_bind_target(text).ok())
    }

    /// libtorrent's `listen_interfaces`: as configured, or, with
    /// `interface` set, each configured port on that interface only.
    #[must_use]
    pub fn effective_listen_interfaces(&self) -> String {
        let Some(target) = self.bind_target() else {
            return self.listen_interfaces.trim().to_owned();
        };
        let host = match &target {
            BindTarget::Device(name) => name.clone(),
            BindTarget::Address(IpAddr::V4(ip)) => ip.to_string(),
            BindTarget::Address(IpAddr::V6(ip)) => format!("[{ip}]"),
        };
        let mut ports: Vec<&str> = Vec::new();
        for entry in self.listen_interfaces.split(',') {
            if let Some((_, port)) = entry.trim().rsplit_once(':')
                && !ports.contains(&port)
            {
                ports.push(port);
            }
        }
        ports
            .iter()
            .map(|port| format!("{host}:{port}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// libtorrent's `outgoing_interfaces`: `interface`, or empty (the
    /// routing table chooses).
    #[must_use]
    pub fn outgoing_interfaces(&self) -> String {
        match self.bind_target() {
            None => String::new(),
            Some(BindTarget::Device(name)) => name,
            Some(BindTarget::Address(ip)) => ip.to_string(),
        }
    }
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
            allow_multiple_connections_per_ip: true,
            interface: None,
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

/// `[fsops]`: post-processing of completed torrents into the library
/// (ADR 007). Applied live by the FsOps worker, except `library_root` and
/// whether `owner`/`group` are set: those shape FsOps' sandbox, so a change
/// restarts the worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[allow(
    clippy::struct_excessive_bools,
    reason = "independent pipeline switches"
)]
pub struct FsopsConfig {
    /// Absolute library directory; `None` means `<data>/library`.
    pub library_root: Option<PathBuf>,
    /// When non-empty, the library must lie beneath one of these.
    pub allowed_roots: Vec<PathBuf>,
    pub move_mode: MoveMode,
    /// Unpack archives found in the torrent.
    pub extract: bool,
    /// Keep archives in the library after unpacking them.
    pub keep_archives: bool,
    /// Collapse a library folder holding nothing but one folder.
    pub flatten: bool,
    /// File mode as an octal string (`"0644"`); `None`: `0666 & !umask`,
    /// execute bits kept.
    pub chmod_file: Option<String>,
    /// Directory mode as an octal string; `None`: `0777 & !umask`.
    pub chmod_dir: Option<String>,
    /// Octal umask applied when a `chmod_*` is unset.
    pub umask: String,
    /// Numeric owner of library content (needs root).
    pub owner: Option<u32>,
    /// Numeric group of library content (needs root).
    pub group: Option<u32>,
    /// Globs never removed by cleanup (they win over `cleanup_drop`).
    pub cleanup_keep: Vec<String>,
    /// Globs removed from the library; may name presets (`@skip_fluff`).
    pub cleanup_drop: Vec<String>,
    /// Category → library sub-path (relative).
    pub category_paths: BTreeMap<String, String>,
    /// Most bytes one archive may unpack to.
    pub max_extract_bytes: u64,
    /// Most entries one archive may hold.
    pub max_extract_entries: u32,
    /// Largest allowed ratio of unpacked to packed bytes.
    pub max_compression_ratio: u32,
}

/// How FsOps puts a torrent's files into the library.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum MoveMode {
    /// Hard links (same inode, seeding continues); a copy across
    /// filesystems.
    #[default]
    Hardlink,
    /// Independent copies.
    Copy,
    /// Rename (a copy then delete across filesystems); the API then removes
    /// the torrent from the engine.
    Move,
}

impl MoveMode {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            MoveMode::Hardlink => "hardlink",
            MoveMode::Copy => "copy",
            MoveMode::Move => "move",
        }
    }
}

/// Cleanup presets that `cleanup_drop`/`cleanup_keep` may name; FsOps
/// expands them (ADR 007).
pub const CLEANUP_PRESETS: &[&str] = &["@skip_fluff"];

/// Most glob patterns in each cleanup list, and the longest one.
const MAX_CLEANUP_PATTERNS: usize = 256;
const MAX_PATTERN_BYTES: usize = 1024;
/// Longest configured path, in bytes.
const MAX_CONFIG_PATH_BYTES: usize = 4096;
/// Most library categories.
const MAX_CATEGORIES: usize = 1024;

/// System directories the library may never be (or, for the first group,
/// lie beneath).
const FORBIDDEN_LIBRARY_TREES: &[&str] = &[
    "/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/proc", "/run", "/sbin", "/sys",
    "/usr",
];
const FORBIDDEN_LIBRARY_DIRS: &[&str] = &[
    "/", "/home", "/media", "/mnt", "/opt", "/root", "/srv", "/tmp", "/var",
];

impl Default for FsopsConfig {
    fn default() -> Self {
        Self {
            library_root: None,
            allowed_roots: Vec::new(),
            move_mode: MoveMode::Hardlink,
            extract: true,
            keep_archives: false,
            flatten: true,
            chmod_file: None,
            chmod_dir: None,
            umask: "022".to_owned(),
            owner: None,
            group: None,
            cleanup_keep: Vec::new(),
            cleanup_drop: vec!["@skip_fluff".to_owned()],
            category_paths: BTreeMap::new(),
            max_extract_bytes: 64 << 30,
            max_extract_entries: 100_000,
            max_compression_ratio: 200,
        }
    }
}

impl FsopsConfig {
    /// The library directory for a data dir.
    #[must_use]
    pub fn effective_library_root(&self, layout: &DataLayout) -> PathBuf {
        self.library_root
            .clone()
            .unwrap_or_else(|| layout.library())
    }

    /// Whether ownership changes are configured (FsOps then keeps
    /// `CAP_CHOWN`/`CAP_FOWNER` when the daemon runs as root).
    #[must_use]
    pub fn wants_chown(&self) -> bool {
        self.owner.is_some() || self.group.is_some()
    }

    /// `chmod_file` as a mode.
    pub fn file_mode(&self) -> Result<Option<u32>, ConfigError> {
        self.chmod_file
            .as_deref()
            .map(|m| parse_mode("fsops.chmod_file", m, 0o777, 0o400))
            .transpose()
    }

    /// `chmod_dir` as a mode (setgid and sticky allowed, never setuid).
    pub fn dir_mode(&self) -> Result<Option<u32>, ConfigError> {
        self.chmod_dir
            .as_deref()
            .map(|m| parse_mode("fsops.chmod_dir", m, 0o3777, 0o700))
            .transpose()
    }

    /// `umask` as a mask; it may not take the owner's bits away.
    pub fn umask_bits(&self) -> Result<u32, ConfigError> {
        let mask = parse_mode("fsops.umask", &self.umask, 0o777, 0)?;
        if mask & 0o700 != 0 {
            return Err(ConfigError::Invalid {
                key: "fsops.umask",
                reason: format!(
                    "`{}` would take the owner's own access away; use at most 077",
                    self.umask
                ),
            });
        }
        Ok(mask)
    }

    /// Checks the section. `running_as_root`: `Some(false)` when the
    /// validating process (the supervisor) is known not to run as root,
    /// which makes `owner`/`group` an error; `None` when unknown (FsOps
    /// then refuses them itself when it lacks `CAP_CHOWN`).
    pub fn validate(&self, running_as_root: Option<bool>) -> Result<(), ConfigError> {
        let invalid = |key: &'static str, reason: String| Err(ConfigError::Invalid { key, reason });
        if let Some(root) = &self.library_root {
            check_library_root(root)?;
        }
        for dir in &self.allowed_roots {
            if !is_clean_absolute(dir) {
                return invalid(
                    "fsops.allowed_roots",
                    format!(
                        "`{}` must be an absolute path without `.` or `..`",
                        dir.display()
                    ),
                );
            }
        }
        if let Some(root) = &self.library_root
            && !self.allowed_roots.is_empty()
            && !self.allowed_roots.iter().any(|a| root.starts_with(a))
        {
            return invalid(
                "fsops.library_root",
                format!("`{}` is not beneath any of allowed_roots", root.display()),
            );
        }
        self.file_mode()?;
        self.dir_mode()?;
        self.umask_bits()?;
        if self.wants_chown() {
            if self.owner == Some(0) || self.group == Some(0) {
                return invalid(
                    "fsops.owner",
                    "library content may not be handed to uid/gid 0".to_owned(),
                );
            }
            if running_as_root == Some(false) {
                return invalid(
                    "fsops.owner",
                    "owner/group need the daemon to run as root (FsOps then keeps \
                     CAP_CHOWN and CAP_FOWNER); unset them or start revaerd as root"
                        .to_owned(),
                );
            }
        }
        self.validate_lists()?;
        if self.max_extract_bytes < 1 << 20 {
            return invalid(
                "fsops.max_extract_bytes",
                "must be at least 1048576 (1 MiB)".to_owned(),
            );
        }
        if !(1..=10_000_000).contains(&self.max_extract_entries) {
            return invalid(
                "fsops.max_extract_entries",
                "must be between 1 and 10000000".to_owned(),
            );
        }
        if !(2..=1_000_000).contains(&self.max_compression_ratio) {
            return invalid(
                "fsops.max_compression_ratio",
                "must be between 2 and 1000000".to_owned(),
            );
        }
        Ok(())
    }

    /// Cleanup globs and category sub-paths.
    fn validate_lists(&self) -> Result<(), ConfigError> {
        let invalid = |key: &'static str, reason: String| Err(ConfigError::Invalid { key, reason });
        for (key, list) in [
            ("fsops.cleanup_keep", &self.cleanup_keep),
            ("fsops.cleanup_drop", &self.cleanup_drop),
        ] {
            if list.len() > MAX_CLEANUP_PATTERNS {
                return invalid(key, format!("at most {MAX_CLEANUP_PATTERNS} patterns"));
            }
            for pattern in list {
                if pattern.is_empty() || pattern.len() > MAX_PATTERN_BYTES {
                    return invalid(key, format!("patterns are 1 to {MAX_PATTERN_BYTES} bytes"));
                }
                if pattern.starts_with('@') && !CLEANUP_PRESETS.contains(&pattern.as_str()) {
                    return invalid(
                        key,
                        format!(
                            "unknown preset `{pattern}` (known: {})",
                            CLEANUP_PRESETS.join(", ")
                        ),
                    );
                }
            }
        }
        if self.category_paths.len() > MAX_CATEGORIES {
            return invalid(
                "fsops.category_paths",
                format!("at most {MAX_CATEGORIES} categories"),
            );
        }
        for (category, sub) in &self.category_paths {
            if category.is_empty() || category.len() > 255 {
                return invalid(
                    "fsops.category_paths",
                    "category names are 1 to 255 bytes".to_owned(),
                );
            }
            if let Err(reason) = check_sub_path(sub) {
                return invalid(
                    "fsops.category_paths",
                    format!("`{category}` = `{sub}`: {reason}"),
                );
            }
        }
        Ok(())
    }
}

/// Parses an octal mode string (`"644"`, `"0644"`, `"0o644"`) no larger than
/// `max` and containing every bit of `required`.
fn parse_mode(key: &'static str, text: &str, max: u32, required: u32) -> Result<u32, ConfigError> {
    let digits = text.strip_prefix("0o").unwrap_or(text);
    let mode = (!digits.is_empty() && digits.len() <= 5)
        .then(|| u32::from_str_radix(digits, 8).ok())
        .flatten()
        .filter(|m| *m <= max)
        .ok_or_else(|| ConfigError::Invalid {
            key,
            reason: format!("`{text}` is not an octal mode of at most {max:o}"),
        })?;
    if mode & required != required {
        return Err(ConfigError::Invalid {
            key,
            reason: format!(
                "`{text}` must include {required:o}: FsOps must keep access to what it manages"
            ),
        });
    }
    Ok(mode)
}

fn is_clean_absolute(path: &Path) -> bool {
    path.is_absolute()
        && path.as_os_str().len() <= MAX_CONFIG_PATH_BYTES
        && path
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
}

fn check_library_root(root: &Path) -> Result<(), ConfigError> {
    let invalid = |reason: String| {
        Err(ConfigError::Invalid {
            key: "fsops.library_root",
            reason,
        })
    };
    if !is_clean_absolute(root) {
        return invalid(format!(
            "`{}` must be an absolute path without `.` or `..`",
            root.display()
        ));
    }
    if FORBIDDEN_LIBRARY_DIRS.iter().any(|d| root == Path::new(d))
        || FORBIDDEN_LIBRARY_TREES
            .iter()
            .any(|d| root.starts_with(Path::new(d)))
    {
        return invalid(format!(
            "`{}` is a system directory; name a directory of its own",
            root.display()
        ));
    }
    Ok(())
}

/// A library sub-path: relative, plain names only, not the FsOps record
/// directory.
fn check_sub_path(sub: &str) -> Result<(), String> {
    if sub.len() > MAX_CONFIG_PATH_BYTES {
        return Err(format!("longer than {MAX_CONFIG_PATH_BYTES} bytes"));
    }
    if sub.contains('\0') {
        return Err("contains a NUL byte".to_owned());
    }
    let path = Path::new(sub);
    if path.is_absolute() {
        return Err("must be relative to the library".to_owned());
    }
    for (i, component) in path.components().enumerate() {
        match component {
            Component::Normal(name) if i == 0 && name == ".revaer" => {
                return Err("`.revaer` is reserved for FsOps records".to_owned());
            }
            Component::Normal(_) => {}
            _ => return Err("may contain only plain names (no `.`, `..` or `/`)".to_owned()),
        }
    }
    Ok(())
}

/// Whether this process's effective uid is 0, read from
/// `/proc/self/status` (the config crate has no libc binding); `None` when
/// that cannot be read.
fn effective_uid_is_root() -> Option<bool> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let uids = status.lines().find_map(|l| l.strip_prefix("Uid:"))?;
    let effective = uids.split_whitespace().nth(1)?;
    Some(effective == "0")
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
        self.fsops.validate(effective_uid_is_root())
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
        if let Some(interface) = &self.interface {
            parse_bind_target(interface).map_err(|reason| ConfigError::Invalid {
                key: "engine.interface",
                reason,
            })?;
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
# Accept several peers from one IP address (different ports): peers behind
# one NAT or on one host share an address. Off means one peer per address.
allow_multiple_connections_per_ip = true
# Bind all peer, tracker and DHT traffic to one network interface (a device
# name or one of its addresses), e.g. a VPN's. While it is missing, nothing
# is transferred (kill switch) and /health/full says why; traffic resumes by
# itself when it returns. Unset: any interface.
# interface = "wg0"
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

[fsops]
# Post-processing of completed torrents into the library (ADR 007).
# Absolute path of the library; unset means <data>/library. Changing it
# restarts the FsOps worker, whose sandbox covers only the downloads dir and
# the library.
# library_root = "/srv/media"
# When non-empty, library_root must lie beneath one of these directories.
allowed_roots = []
# "hardlink" (keeps seeding, no extra space; falls back to a copy across
# filesystems), "copy", or "move" (the torrent is removed from the engine
# afterwards: it stops seeding).
move_mode = "hardlink"
# Unpack zip, tar (.gz .xz .zst .bz2) and 7z archives found in the torrent.
extract = true
# Keep the archives in the library after unpacking them (the downloads copy
# is never touched).
keep_archives = false
# Collapse a library folder that contains nothing but one folder.
flatten = true
# Modes as octal strings. Unset chmod_* means "0666/0777 minus umask" (files
# keep their execute bits).
# chmod_file = "0644"
# chmod_dir = "0755"
umask = "022"
# Numeric owner and group of library content. Needs the daemon to run as
# root (FsOps then keeps CAP_CHOWN and CAP_FOWNER, nothing else).
# owner = 1000
# group = 1000
# Globs removed from the library after the transfer. A pattern without "/"
# matches a file name at any depth, one with "/" the path inside the
# torrent's folder; case-insensitive. "@skip_fluff" stands for samples,
# proofs, screenshots, .nfo, .url, .txt and similar junk. Keep wins over drop.
cleanup_keep = []
cleanup_drop = ["@skip_fluff"]
# Caps on what one archive may unpack to.
max_extract_bytes = 68719476736
max_extract_entries = 100000
max_compression_ratio = 200

# Library sub-folder per torrent category; other torrents land at the top.
[fsops.category_paths]
# tv = "TV"
# movies = "Movies"
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
    fn interface_moves_listening_and_outgoing_traffic_onto_it() {
        let config = Config::from_toml_bytes(
            b"[engine]\nlisten_interfaces = \"0.0.0.0:6881,[::]:6881,0.0.0.0:6882s\"\ninterface = \"wg0\"\n",
        )
        .unwrap();
        assert_eq!(
            config.engine.bind_target(),
            Some(BindTarget::Device("wg0".to_owned()))
        );
        assert_eq!(
            config.engine.effective_listen_interfaces(),
            "wg0:6881,wg0:6882s"
        );
        assert_eq!(config.engine.outgoing_interfaces(), "wg0");

        let v6 = Config::from_toml_bytes(b"[engine]\ninterface = \" fd00::2 \"\n").unwrap();
        assert_eq!(v6.engine.effective_listen_interfaces(), "[fd00::2]:6881");
        assert_eq!(v6.engine.outgoing_interfaces(), "fd00::2");

        let unset = Config::default();
        assert_eq!(unset.engine.bind_target(), None);
        assert_eq!(
            unset.engine.effective_listen_interfaces(),
            unset.engine.listen_interfaces
        );
        assert_eq!(unset.engine.outgoing_interfaces(), "");
    }

    #[test]
    fn bad_interface_is_refused_with_key() {
        for bad in [
            "",
            "wg0,eth0",
            "a/b",
            "0.0.0.0",
            "::",
            "sixteen-chars-xx",
            "..",
            "wg 0",
        ] {
            let text = format!("[engine]\ninterface = \"{bad}\"\n");
            let err = Config::from_toml_bytes(text.as_bytes()).unwrap_err();
            assert!(
                matches!(
                    err,
                    ConfigError::Invalid {
                        key: "engine.interface",
                        ..
                    }
                ),
                "{bad:?}: {err}"
            );
        }
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
    fn fsops_section_parses_and_bad_values_name_their_key() {
        let ok = Config::from_toml_bytes(
            b"[fsops]\nmove_mode = \"copy\"\nchmod_file = \"0640\"\n\
              [fsops.category_paths]\ntv = \"Media/TV\"\n",
        )
        .unwrap();
        assert_eq!(ok.fsops.move_mode, MoveMode::Copy);
        assert_eq!(ok.fsops.file_mode().unwrap(), Some(0o640));
        assert_eq!(ok.fsops.category_paths["tv"], "Media/TV");
        let err = Config::from_toml_bytes(b"[fsops]\nmove_mode = \"symlink\"\n").unwrap_err();
        assert!(
            matches!(err, ConfigError::Parse(ref m) if m.contains("symlink")),
            "{err}"
        );
        let err = Config::from_toml_bytes(b"[fsops]\nlibrary_root = \"/etc\"\n").unwrap_err();
        assert!(
            matches!(
                err,
                ConfigError::Invalid {
                    key: "fsops.library_root",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn fsops_values_are_validated() {
        for (text, key) in [
            ("library_root = \"relative/lib\"", "fsops.library_root"),
            ("library_root = \"/srv/../etc\"", "fsops.library_root"),
            ("library_root = \"/\"", "fsops.library_root"),
            ("library_root = \"/usr/share/x\"", "fsops.library_root"),
            (
                "library_root = \"/data/lib\"\nallowed_roots = [\"/srv\"]",
                "fsops.library_root",
            ),
            ("allowed_roots = [\"srv\"]", "fsops.allowed_roots"),
            ("chmod_file = \"0888\"", "fsops.chmod_file"),
            ("chmod_file = \"4755\"", "fsops.chmod_file"),
            ("chmod_file = \"0044\"", "fsops.chmod_file"),
            ("chmod_dir = \"0644\"", "fsops.chmod_dir"),
            ("umask = \"0277\"", "fsops.umask"),
            ("umask = \"abc\"", "fsops.umask"),
            ("owner = 0", "fsops.owner"),
            ("cleanup_drop = [\"@nope\"]", "fsops.cleanup_drop"),
            ("cleanup_keep = [\"\"]", "fsops.cleanup_keep"),
            ("max_extract_bytes = 10", "fsops.max_extract_bytes"),
            ("max_extract_entries = 0", "fsops.max_extract_entries"),
            ("max_compression_ratio = 1", "fsops.max_compression_ratio"),
            (
                "category_paths = { tv = \"../tv\" }",
                "fsops.category_paths",
            ),
            ("category_paths = { tv = \"/tv\" }", "fsops.category_paths"),
            (
                "category_paths = { tv = \".revaer/x\" }",
                "fsops.category_paths",
            ),
        ] {
            let toml = format!("[fsops]\n{text}\n");
            let err = Config::from_toml_bytes(toml.as_bytes()).unwrap_err();
            assert!(
                matches!(err, ConfigError::Invalid { key: k, .. } if k == key),
                "{text}: {err}"
            );
        }
        let ok = Config::from_toml_bytes(
            b"[fsops]\nlibrary_root = \"/srv/media/lib\"\nallowed_roots = [\"/srv/media\"]\n\
              chmod_dir = \"2775\"\numask = \"0o027\"\n",
        )
        .unwrap();
        assert_eq!(ok.fsops.dir_mode().unwrap(), Some(0o2775));
        assert_eq!(ok.fsops.umask_bits().unwrap(), 0o027);
        let layout = DataLayout::new("/data");
        assert_eq!(
            ok.fsops.effective_library_root(&layout),
            PathBuf::from("/srv/media/lib")
        );
        assert_eq!(
            FsopsConfig::default().effective_library_root(&layout),
            PathBuf::from("/data/library")
        );
    }

    #[test]
    fn fsops_owner_needs_root() {
        let config = FsopsConfig {
            owner: Some(1000),
            group: Some(1000),
            ..FsopsConfig::default()
        };
        assert!(config.wants_chown());
        let err = config.validate(Some(false)).unwrap_err();
        assert!(
            matches!(err, ConfigError::Invalid { key: "fsops.owner", ref reason } if reason.contains("root")),
            "{err}"
        );
        config.validate(Some(true)).unwrap();
        // Unknown (no /proc): FsOps refuses it itself if it lacks CAP_CHOWN.
        config.validate(None).unwrap();
        assert!(effective_uid_is_root().is_some());
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
