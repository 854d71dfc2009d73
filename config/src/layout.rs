//! Where everything lives under the data dir (DESIGN §4).
//!
//! One type names every path so that the supervisor (which creates the tree),
//! the sandbox profiles (which grant access to parts of it) and the workers
//! (which use it) can never disagree.

use std::path::{Path, PathBuf};

/// The data-dir layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataLayout {
    root: PathBuf,
}

impl DataLayout {
    #[must_use]
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    #[must_use]
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `<data>/revaer.toml`.
    #[must_use]
    pub fn config_file(&self) -> PathBuf {
        self.root.join(crate::CONFIG_FILE_NAME)
    }

    /// `<data>/run/`: sockets and runtime files, mode 0700.
    #[must_use]
    pub fn run_dir(&self) -> PathBuf {
        self.root.join("run")
    }

    /// `<data>/state/api/`: the API's SQLite store.
    #[must_use]
    pub fn state_api(&self) -> PathBuf {
        self.root.join("state").join("api")
    }

    /// `<data>/state/engine/`: resume data and .torrent files.
    #[must_use]
    pub fn state_engine(&self) -> PathBuf {
        self.root.join("state").join("engine")
    }

    /// `<data>/downloads/`: the engine writes here.
    #[must_use]
    pub fn downloads(&self) -> PathBuf {
        self.root.join("downloads")
    }

    /// `<data>/library/`: FsOps writes here.
    #[must_use]
    pub fn library(&self) -> PathBuf {
        self.root.join("library")
    }

    /// The engine's data-channel socket.
    #[must_use]
    pub fn engine_socket(&self) -> PathBuf {
        self.run_dir().join("engine.sock")
    }

    /// FsOps' data-channel socket.
    #[must_use]
    pub fn fsops_socket(&self) -> PathBuf {
        self.run_dir().join("fsops.sock")
    }

    /// The URL the API actually listens on, written by the supervisor once
    /// the API reports it (useful with `listen = "127.0.0.1:0"`).
    #[must_use]
    pub fn api_url_file(&self) -> PathBuf {
        self.run_dir().join("api.url")
    }

    /// The first admin key, written (0600) when no admin key exists.
    #[must_use]
    pub fn bootstrap_key_file(&self) -> PathBuf {
        self.root.join("bootstrap-admin.key")
    }

    /// Where the first admin key waits until the API has registered it; it
    /// is renamed to [`Self::bootstrap_key_file`] only once it works.
    #[must_use]
    pub fn bootstrap_key_pending_file(&self) -> PathBuf {
        self.root.join("bootstrap-admin.key.pending")
    }

    /// The API's database.
    #[must_use]
    pub fn api_database(&self) -> PathBuf {
        self.state_api().join("revaer.db")
    }

    /// Every directory the supervisor creates at start, parents first.
    #[must_use]
    pub fn directories(&self) -> Vec<PathBuf> {
        vec![
            self.root.clone(),
            self.run_dir(),
            self.root.join("state"),
            self.state_api(),
            self.state_engine(),
            self.downloads(),
            self.library(),
        ]
    }
}
