//! Where sparekey's files live: the data dir, the store inside it and the key file, from
//! explicit values, the environment or the platform's dirs; and the private data dir. Owns path
//! resolution only. Must never open the store or read the key.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::core::error::Error;
use crate::core::store::StoreError;
use crate::store::location::{PostgresTarget, StoreLocation};

/// Environment variable naming the data dir (overridden by `--data-dir`).
pub const DATA_DIR_ENV: &str = "SPAREKEY_DATA_DIR";
/// Environment variable naming the key file (overridden by `--key-file`).
pub const KEY_FILE_ENV: &str = "SPAREKEY_KEY_FILE";

/// Where things live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    pub data_dir: PathBuf,
    pub store: PathBuf,
    pub key_file: PathBuf,
    /// Set when the store is a shared PostgreSQL database (`--store postgres://…`): then
    /// `store` is not used.
    pub postgres: Option<PostgresTarget>,
}

fn project_dirs() -> Option<directories::ProjectDirs> {
    directories::ProjectDirs::from("", "", "sparekey")
}

impl Paths {
    /// Resolves the paths: explicit values win, then the environment variables (read by the
    /// caller, e.g. clap), then the platform's data and config dirs.
    pub fn resolve(data_dir: Option<PathBuf>, key_file: Option<PathBuf>) -> Result<Self, Error> {
        let dirs = project_dirs();
        let no_home = |flag: &str, env: &str| {
            Error::Invalid(format!("no home directory found: pass {flag} or set {env}"))
        };
        let data_dir = data_dir
            .or_else(|| dirs.as_ref().map(|d| d.data_dir().to_path_buf()))
            .ok_or_else(|| no_home("--data-dir", DATA_DIR_ENV))?;
        let key_file = key_file
            .or_else(|| dirs.as_ref().map(|d| d.config_dir().join("key")))
            .ok_or_else(|| no_home("--key-file", KEY_FILE_ENV))?;
        Ok(Self {
            store: data_dir.join("store"),
            data_dir,
            key_file,
            postgres: None,
        })
    }

    /// These paths with the store at `location` (`--store`): a sled path replaces the store
    /// and its data dir (the directory a restore moves a replaced store into).
    pub fn with_location(mut self, location: StoreLocation) -> Self {
        match location {
            StoreLocation::Sled(path) => {
                if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                    self.data_dir = parent.to_path_buf();
                }
                self.store = path;
                self.postgres = None;
            }
            StoreLocation::Postgres(target) => self.postgres = Some(*target),
        }
        self
    }
}

/// Creates the data dir (and parents) readable by its owner only; an existing one is left as
/// it is (doctor reports a wrong mode).
pub fn create_private_dir(dir: &Path) -> Result<(), Error> {
    make_private_dir(dir).map_err(|e| {
        Error::Store(StoreError::Io(format!(
            "cannot create the directory {}: {e}",
            dir.display()
        )))
    })
}

/// Creates `dir` (and parents) with mode 0700 if it does not exist yet.
pub(super) fn make_private_dir(dir: &Path) -> std::io::Result<()> {
    if dir.exists() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
}
