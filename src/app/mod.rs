//! Opening a real environment, shared by both faces: resolve the paths, create the private data
//! dir, open the store, read or create the key and bind it to the store, and build the
//! [`Service`]. Owns every file-system decision outside the store itself, split by concern:
//! - [`paths`]: where the data dir, store and key file are;
//! - [`config_file`]: the config file and the settings of one run (flags over file over
//!   defaults);
//! - [`key_file`]: reading, creating and binding the key file, and its permission rules;
//! - [`new_file`]: the one atomic, private, no-clobber writer of files outside the store;
//! - [`backup_file`]: the backup format, backup and restore;
//! - [`doctor`]: the environment checks.
//!
//! Must never create a new key over a store that already has one, nor write a file outside the
//! store except through [`new_file`].

pub mod backup_file;
pub mod config_file;
pub mod doctor;
pub mod key_file;
pub mod new_file;
pub mod paths;

use std::sync::Arc;
use std::time::Duration;

use crate::core::clock::{Clock, SystemClock};
use crate::core::entropy::{Entropy, OsEntropy};
use crate::core::error::Error;
use crate::core::service::{Config, Service};
use crate::core::store::Store;
use crate::store::postgres::PostgresStore;
use crate::store::sled_store::SledStore;

pub use backup_file::{BackupSummary, backup, backup_store, read_backup, restore};
pub use config_file::{CONFIG_ENV, Overrides, STORE_ENV, Settings};
pub use doctor::{Check, Status, doctor};
pub use key_file::load_or_create_key;
pub use new_file::{NewFileError, write_new_file};
pub use paths::{DATA_DIR_ENV, KEY_FILE_ENV, Paths, create_private_dir};

/// How long to wait for a store held by another sparekey process before giving up.
pub const LOCK_WAIT: Duration = Duration::from_secs(3);

/// Opens the store `paths` name: the PostgreSQL database if one is set, else the sled store
/// (creating its private data dir). With `create`, a PostgreSQL database without sparekey's
/// tables gets them; a read-only use passes `false` and is refused instead.
pub fn open_store(paths: &Paths, create: bool) -> Result<Box<dyn Store>, Error> {
    if let Some(target) = &paths.postgres {
        return Ok(Box::new(PostgresStore::open(target, create)?));
    }
    create_private_dir(&paths.data_dir)?;
    Ok(Box::new(SledStore::open(&paths.store, LOCK_WAIT)?))
}

/// Opens the store at `paths` and builds the production service (system clock, OS RNG).
pub fn open(paths: &Paths, config: Config) -> Result<Service, Error> {
    open_with(paths, config, Arc::new(SystemClock), Box::new(OsEntropy))
}

/// [`open`] for a use that only reads: a PostgreSQL database without sparekey's tables is
/// refused instead of set up (a sled store is opened as by [`open`]).
pub fn open_existing(paths: &Paths, config: Config) -> Result<Service, Error> {
    config.validate()?;
    let mut entropy: Box<dyn Entropy> = Box::new(OsEntropy);
    let store = open_store(paths, false)?;
    let key = load_or_create_key(&paths.key_file, store.as_ref(), entropy.as_mut())?;
    Service::new(store, Arc::new(SystemClock), entropy, key, config)
}

/// Like [`open`] with an injected clock and entropy (for tests and deterministic runs).
pub fn open_with(
    paths: &Paths,
    config: Config,
    clock: Arc<dyn Clock>,
    mut entropy: Box<dyn Entropy>,
) -> Result<Service, Error> {
    config.validate()?;
    let store = open_store(paths, true)?;
    let key = load_or_create_key(&paths.key_file, store.as_ref(), entropy.as_mut())?;
    Service::new(store, clock, entropy, key, config)
}

/// A service on an in-memory store, with a key drawn from `entropy`: for tests, snapshot runs
/// and benchmarks. Nothing touches disk.
#[cfg(any(test, feature = "test-support"))]
pub fn open_in_memory(
    config: Config,
    clock: Arc<dyn Clock>,
    mut entropy: Box<dyn Entropy>,
) -> Service {
    let key = crate::core::keys::MasterKey::generate(entropy.as_mut());
    let store = crate::store::memory::MemoryStore::new();
    Service::new(Box::new(store), clock, entropy, key, config).expect("the configuration is valid")
}
