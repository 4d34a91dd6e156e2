//! Opening a real environment, shared by both faces: where the data dir, store and key file
//! are, creating them with private permissions, reading or creating the master key, binding it
//! to the store, and building the [`Service`]. Owns every file-system decision outside the store
//! itself. Must never create a new key over a store that already has one.

use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::core::clock::{Clock, SystemClock};
use crate::core::entropy::{Entropy, OsEntropy};
use crate::core::error::Error;
use crate::core::keys::{MASTER_KEY_LEN, MasterKey};
use crate::core::service::{Config, Service};
use crate::core::store::{KeyBinding, Store, StoreError};
use crate::store::sled_store::SledStore;

/// Environment variable naming the data dir (overridden by `--data-dir`).
pub const DATA_DIR_ENV: &str = "SPAREKEY_DATA_DIR";
/// Environment variable naming the key file (overridden by `--key-file`).
pub const KEY_FILE_ENV: &str = "SPAREKEY_KEY_FILE";
/// How long to wait for a store held by another sparekey process before giving up.
pub const LOCK_WAIT: Duration = Duration::from_secs(2);

/// Where things live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    pub data_dir: PathBuf,
    pub store: PathBuf,
    pub key_file: PathBuf,
}

fn project_dirs() -> Option<directories::ProjectDirs> {
    directories::ProjectDirs::from("", "", "sparekey")
}

impl Paths {
    /// Resolves the paths: explicit values win, then the environment variables (read by the
    /// caller, e.g. clap), then the platform's data and config dirs.
    pub fn resolve(data_dir: Option<PathBuf>, key_file: Option<PathBuf>) -> Result<Self, Error> {
        let dirs = project_dirs();
        let data_dir = match data_dir.or_else(|| dirs.as_ref().map(|d| d.data_dir().to_path_buf()))
        {
            Some(d) => d,
            None => {
                return Err(Error::Invalid(
                    "no home directory found: pass --data-dir or set SPAREKEY_DATA_DIR".into(),
                ));
            }
        };
        let key_file = match key_file.or_else(|| dirs.as_ref().map(|d| d.config_dir().join("key")))
        {
            Some(k) => k,
            None => {
                return Err(Error::Invalid(
                    "no home directory found: pass --key-file or set SPAREKEY_KEY_FILE".into(),
                ));
            }
        };
        Ok(Self {
            store: data_dir.join("store"),
            data_dir,
            key_file,
        })
    }
}

fn io_err(what: &str, path: &Path, e: std::io::Error) -> Error {
    Error::Store(StoreError::Io(format!("{what} {}: {e}", path.display())))
}

/// Creates a directory (and parents) readable by its owner only.
pub fn create_private_dir(dir: &Path) -> Result<(), Error> {
    if !dir.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| io_err("cannot create the directory", dir, e))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .map_err(|e| io_err("cannot set permissions on", dir, e))?;
    }
    Ok(())
}

/// Writes a new file with mode 0600 whatever the umask; refuses to overwrite.
pub fn write_new_private_file(path: &Path, contents: &[u8]) -> Result<(), std::io::Error> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.set_permissions(fs::Permissions::from_mode(0o600))?;
    file.write_all(contents)?;
    file.sync_all()
}

fn read_key(path: &Path) -> Result<MasterKey, Error> {
    let mut text = zeroize::Zeroizing::new(String::new());
    fs::File::open(path)
        .and_then(|f| f.take(1024).read_to_string(&mut text))
        .map_err(|e| {
            Error::Store(StoreError::Key(format!(
                "cannot read the key file {}: {e}",
                path.display()
            )))
        })?;
    let bytes = zeroize::Zeroizing::new(
        data_encoding::HEXLOWER_PERMISSIVE
            .decode(text.trim().as_bytes())
            .unwrap_or_default(),
    );
    let key: [u8; MASTER_KEY_LEN] = bytes.as_slice().try_into().map_err(|_| {
        Error::Store(StoreError::Key(format!(
            "the key file {} is not a sparekey key (64 hex characters)",
            path.display()
        )))
    })?;
    Ok(MasterKey::from_bytes(key))
}

/// Reads the key file, or creates it when neither it nor a key-bound store exists yet, and
/// checks that it belongs to the store.
pub fn load_or_create_key(
    key_file: &Path,
    store: &dyn Store,
    entropy: &mut dyn Entropy,
) -> Result<MasterKey, Error> {
    let (key, created) = if key_file.exists() {
        (read_key(key_file)?, false)
    } else {
        let key = MasterKey::generate(entropy);
        if let Some(parent) = key_file.parent() {
            create_private_dir(parent)?;
        }
        let text = zeroize::Zeroizing::new(format!(
            "{}\n",
            data_encoding::HEXLOWER.encode(key.as_bytes())
        ));
        write_new_private_file(key_file, text.as_bytes())
            .map_err(|e| io_err("cannot create the key file", key_file, e))?;
        (key, true)
    };
    match store.bind_key(&key.fingerprint())? {
        KeyBinding::Matches | KeyBinding::Bound => Ok(key),
        KeyBinding::Mismatch { stored } => {
            if created {
                // The store already belongs to another key: the new file is useless and would
                // mislead the next run, so take it back.
                let _ = fs::remove_file(key_file);
                Err(Error::Store(StoreError::Key(format!(
                    "the key file {} is missing, and this store was made with a key (fingerprint {stored}): restore that key file or point --key-file at it",
                    key_file.display()
                ))))
            } else {
                Err(Error::Store(StoreError::Key(format!(
                    "the key file {} (fingerprint {}) does not belong to this store (fingerprint {stored})",
                    key_file.display(),
                    key.fingerprint()
                ))))
            }
        }
    }
}

/// Opens the sled store at `paths` and builds the production service (system clock, OS RNG).
pub fn open(paths: &Paths, config: Config) -> Result<Service, Error> {
    open_with(paths, config, Arc::new(SystemClock), Box::new(OsEntropy))
}

/// Like [`open`] with an injected clock and entropy (for tests and deterministic runs).
pub fn open_with(
    paths: &Paths,
    config: Config,
    clock: Arc<dyn Clock>,
    mut entropy: Box<dyn Entropy>,
) -> Result<Service, Error> {
    config.validate()?;
    create_private_dir(&paths.data_dir)?;
    let store = SledStore::open(&paths.store, LOCK_WAIT)?;
    let key = load_or_create_key(&paths.key_file, &store, entropy.as_mut())?;
    Service::new(Box::new(store), clock, entropy, key, config)
}

/// A service on an in-memory store, with a key drawn from `entropy`: for tests, snapshot runs
/// and benchmarks. Nothing touches disk.
pub fn open_in_memory(
    config: Config,
    clock: Arc<dyn Clock>,
    mut entropy: Box<dyn Entropy>,
) -> Service {
    let key = MasterKey::generate(entropy.as_mut());
    let store = crate::store::memory::MemoryStore::new();
    Service::new(Box::new(store), clock, entropy, key, config).expect("the configuration is valid")
}
