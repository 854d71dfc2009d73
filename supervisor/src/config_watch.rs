//! Loading and live-watching `<data>/revaer.toml`.
//!
//! The file is read with a size cap and validated by `revaer-config`. An
//! accepted edit bumps the revision and is pushed to every worker; a refused
//! edit keeps the config in force, records the reason (which degrades
//! `/health/full`) and counts a failure, until a later edit fixes it. The
//! latency recorded is the time from the file's modification to the moment
//! the new config is published.

use std::io::{self, Read, Write};
use std::path::Path;
use std::time::{Duration, SystemTime};

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use revaer_config::{CONFIG_FILE_NAME, Config, ConfigError, DataLayout, MAX_CONFIG_BYTES};
use revaer_ipc::ConfigStatus;
use tokio::sync::mpsc;

use crate::hub::{Hub, Revisioned};

/// Quiet period after a file event before reading: editors write in steps.
const DEBOUNCE: Duration = Duration::from_millis(30);

/// Why the config could not be read (as opposed to parsed).
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("cannot read {path}: {source}")]
    Io { path: String, source: io::Error },
    #[error(transparent)]
    Invalid(#[from] ConfigError),
}

/// Reads and validates the config file.
pub fn read_config(path: &Path) -> Result<(Config, SystemTime), ReadError> {
    let io_err = |source| ReadError::Io {
        path: path.display().to_string(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io_err)?;
    let modified = file.metadata().and_then(|m| m.modified()).map_err(io_err)?;
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io_err)?;
    Ok((Config::from_toml_bytes(&bytes)?, modified))
}

/// Loads the config at start. Writes the commented defaults when the file
/// does not exist. An invalid or unreadable file stops the daemon before any
/// worker starts: running on defaults would silently drop the operator's
/// listen address, limits and FsOps policy (a bad *live* edit, by contrast,
/// keeps the last good config; see [`watch`]).
pub fn load_initial(layout: &DataLayout) -> Result<(Revisioned, ConfigStatus), ReadError> {
    let path = layout.config_file();
    if !path.exists() {
        match write_default(&path) {
            Ok(()) => tracing::info!(path = %path.display(), "wrote default config"),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot write default config");
            }
        }
    }
    let config = match read_config(&path) {
        Ok((config, _)) => config,
        // Only when writing the defaults failed too (read-only data dir).
        Err(ReadError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
            Config::default()
        }
        Err(e) => return Err(e),
    };
    Ok((
        Revisioned {
            revision: 1,
            config,
        },
        ConfigStatus {
            revision: 1,
            ..ConfigStatus::default()
        },
    ))
}

/// Writes the default config atomically (temp file, fsync, rename).
fn write_default(path: &Path) -> io::Result<()> {
    let tmp = path.with_extension("toml.tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)?;
    file.write_all(Config::default_file_contents().as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Watches the data dir for changes to the config file until the task is
/// dropped. Returns only if the watcher cannot be created.
pub async fn watch(layout: DataLayout, hub: &Hub) -> Result<(), notify::Error> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut watcher: RecommendedWatcher = notify::recommended_watcher(move |event| {
        let _ = tx.send(event);
    })?;
    // Watch the directory, not the file: editors replace files by rename.
    watcher.watch(layout.root(), RecursiveMode::NonRecursive)?;
    let path = layout.config_file();
    while let Some(event) = rx.recv().await {
        match event {
            Ok(event) if !touches_config(&event) => continue,
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "config watcher error");
                let mut status = hub.config_status();
                status.failures = status.failures.saturating_add(1);
                hub.set_config_status(status);
                continue;
            }
        }
        tokio::time::sleep(DEBOUNCE).await;
        while rx.try_recv().is_ok() {}
        reload(&path, hub);
    }
    Ok(())
}

fn touches_config(event: &notify::Event) -> bool {
    event
        .paths
        .iter()
        .any(|p| p.file_name().is_some_and(|n| n == CONFIG_FILE_NAME))
}

/// Re-reads the file and publishes the outcome.
pub fn reload(path: &Path, hub: &Hub) {
    let current = hub.config();
    let mut status = hub.config_status();
    match read_config(path) {
        Err(ReadError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
            tracing::warn!("config file removed; keeping the config in force");
        }
        Err(e) => {
            tracing::warn!(error = %e, revision = current.revision, "config edit refused; keeping the config in force");
            status.error = Some(format!("{e}; keeping revision {}", current.revision));
            status.failures = status.failures.saturating_add(1);
            hub.set_config_status(status);
        }
        Ok((config, modified)) => {
            let latency = SystemTime::now()
                .duration_since(modified)
                .unwrap_or_default();
            let latency_ms = u64::try_from(latency.as_millis()).unwrap_or(u64::MAX);
            status.error = None;
            status.watch_latency_ms = Some(latency_ms);
            if config == current.config {
                hub.set_config_status(status);
                return;
            }
            let revision = current.revision.saturating_add(1);
            status.revision = revision;
            tracing::info!(revision, latency_ms, "config applied");
            hub.set_config(Revisioned { revision, config }, status);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_layout(name: &str) -> DataLayout {
        let dir = std::env::temp_dir().join(format!("revaer-cw-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        DataLayout::new(dir)
    }

    #[test]
    fn first_start_writes_defaults() {
        let layout = temp_layout("first");
        let (cfg, status) = load_initial(&layout).unwrap();
        assert_eq!(cfg.config, Config::default());
        assert_eq!(status.error, None);
        let text = std::fs::read_to_string(layout.config_file()).unwrap();
        assert!(text.contains("listen = \"127.0.0.1:7070\""));
    }

    #[test]
    fn invalid_edit_keeps_config_then_fix_bumps_revision() {
        let layout = temp_layout("edit");
        let (cfg, status) = load_initial(&layout).unwrap();
        let hub = Hub::new(cfg, status);
        std::fs::write(layout.config_file(), "[api]\nlisten = \"bogus\"\n").unwrap();
        reload(&layout.config_file(), &hub);
        let st = hub.config_status();
        assert!(
            st.error.as_deref().unwrap().contains("api.listen"),
            "{st:?}"
        );
        assert_eq!(st.failures, 1);
        assert_eq!(hub.config().revision, 1);
        assert_eq!(hub.config().config, Config::default());

        std::fs::write(layout.config_file(), "[api]\nlisten = \"127.0.0.1:7071\"\n").unwrap();
        reload(&layout.config_file(), &hub);
        let st = hub.config_status();
        assert_eq!(st.error, None);
        assert_eq!(st.revision, 2);
        assert_eq!(hub.config().config.api.listen, "127.0.0.1:7071");
        assert!(st.watch_latency_ms.is_some());
    }

    #[test]
    fn invalid_file_at_start_is_an_error_naming_the_key() {
        let layout = temp_layout("badstart");
        std::fs::write(layout.config_file(), "[api]\nlisten = \"bogus\"\n").unwrap();
        let err = load_initial(&layout).unwrap_err();
        assert!(matches!(err, ReadError::Invalid(_)), "{err:?}");
        assert!(err.to_string().contains("api.listen"), "{err}");
        std::fs::write(layout.config_file(), "not = [valid").unwrap();
        assert!(matches!(load_initial(&layout), Err(ReadError::Invalid(_))));
    }
}
