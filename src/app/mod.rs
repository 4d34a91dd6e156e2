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
//! The console opens its store with [`open_console`]: held only while it runs calls, so the
//! CLI can use the same store meanwhile (see [`crate::store::reopening`]).
//!
//! Must never create a new key over a store that already has one, nor write a file outside the
//! store except through [`new_file`].

pub mod backup_file;
pub(crate) mod config_file;
pub(crate) mod doctor;
pub mod key_file;
pub mod new_file;
pub mod notify;
pub(crate) mod paths;

use std::sync::Arc;
use std::time::Duration;

use crate::core::clock::{Clock, SystemClock};
use crate::core::entropy::{Entropy, OsEntropy};
use crate::core::error::Error;
use crate::core::service::{Config, Service};
use crate::core::store::{Store, StoreError};
use crate::store::postgres::PostgresStore;
use crate::store::reopening::ReopeningStore;
use crate::store::sled_store::SledStore;

pub use backup_file::{BackupSummary, backup, backup_store, read_backup, restore};
pub use config_file::{CONFIG_ENV, Overrides, STORE_ENV, Settings};
pub use doctor::{Check, Status, doctor};
pub use key_file::load_or_create_key;
pub use new_file::{NewFileError, write_new_file};
pub use paths::{DATA_DIR_ENV, KEY_FILE_ENV, Paths, create_private_dir};

/// How long to wait for a store held by another sparekey process before giving up.
pub const LOCK_WAIT: Duration = Duration::from_secs(3);

/// How long the console keeps its store open after its last call. Longer than the gaps inside
/// one burst of calls (a login's two store steps around a password hash, ~30-60 ms; the chunks
/// of a long account list, one per event-loop turn of 20 ms), so a burst reopens nothing; short
/// enough that a CLI command started beside an idle console waits at most this plus sled's
/// close, well within a second. Reopening costs little next to it (see BENCHMARKS.md).
pub const CONSOLE_IDLE_RELEASE: Duration = Duration::from_millis(250);

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

/// Opens the store at `paths` only if it is already there, with its existing key file: for the
/// commands that only read or change what exists, which must never leave a new store and key
/// behind on a mistyped path. Without a store: an error (exit 4) that names `--data-dir`.
pub fn open_existing(paths: &Paths, config: Config) -> Result<Service, Error> {
    config.validate()?;
    require_existing(paths)?;
    // A PostgreSQL database without sparekey's tables is refused instead of set up.
    let store = open_store(paths, false)?;
    service_on(
        store,
        paths,
        config,
        Arc::new(SystemClock),
        Box::new(OsEntropy),
    )
}

/// Refuses a path without a store, and a store whose key file is missing (it would otherwise
/// be created, only to be found not to belong to the store).
pub fn require_existing(paths: &Paths) -> Result<(), Error> {
    if paths.postgres.is_none() && !paths.store.exists() {
        return Err(Error::Store(StoreError::Conflict(format!(
            "no store at {}: nothing is set up there yet (create an account with `sparekey account add NAME`, or point --data-dir at the right directory)",
            paths.store.display()
        ))));
    }
    if paths.key_file.symlink_metadata().is_err() {
        return Err(Error::Key(format!(
            "the key file {} is missing: the store at {} cannot be used without it; restore it from your backup or point --key-file at it",
            paths.key_file.display(),
            paths.store.display()
        )));
    }
    Ok(())
}

/// What to tell the person who just created the key file: where it is, and that without it
/// the store (and every backup of it) is useless. Said once, when the key is created.
pub fn new_key_notice(paths: &Paths) -> String {
    format!(
        "created the key file {}: back it up now, apart from the store: without it the store at {} and every backup of it cannot be used",
        paths.key_file.display(),
        paths.store.display()
    )
}

/// Like [`open`] with an injected clock and entropy (for tests and deterministic runs).
pub fn open_with(
    paths: &Paths,
    config: Config,
    clock: Arc<dyn Clock>,
    entropy: Box<dyn Entropy>,
) -> Result<Service, Error> {
    config.validate()?;
    let store = open_store(paths, true)?;
    service_on(store, paths, config, clock, entropy)
}

/// The service of a long-running console: like [`open`], but its store is held only while
/// calls run and released after [`CONSOLE_IDLE_RELEASE`] without one, so CLI commands on the
/// same store succeed meanwhile.
pub fn open_console(paths: &Paths, config: Config) -> Result<Service, Error> {
    open_console_with(paths, config, Arc::new(SystemClock), Box::new(OsEntropy))
}

/// Like [`open_console`] with an injected clock and entropy.
pub fn open_console_with(
    paths: &Paths,
    config: Config,
    clock: Arc<dyn Clock>,
    entropy: Box<dyn Entropy>,
) -> Result<Service, Error> {
    config.validate()?;
    // A PostgreSQL store holds no lock between calls: nothing to release.
    if paths.postgres.is_some() {
        return service_on(open_store(paths, true)?, paths, config, clock, entropy);
    }
    create_private_dir(&paths.data_dir)?;
    let store = ReopeningStore::open(&paths.store, LOCK_WAIT, CONSOLE_IDLE_RELEASE)?;
    service_on(Box::new(store), paths, config, clock, entropy)
}

/// Binds the key to an opened store and builds the service on it.
fn service_on(
    store: Box<dyn Store>,
    paths: &Paths,
    config: Config,
    clock: Arc<dyn Clock>,
    mut entropy: Box<dyn Entropy>,
) -> Result<Service, Error> {
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
