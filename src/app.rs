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
pub const LOCK_WAIT: Duration = Duration::from_secs(3);

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
#[cfg(any(test, feature = "test-support"))]
pub fn open_in_memory(
    config: Config,
    clock: Arc<dyn Clock>,
    mut entropy: Box<dyn Entropy>,
) -> Service {
    let key = MasterKey::generate(entropy.as_mut());
    let store = crate::store::memory::MemoryStore::new();
    Service::new(Box::new(store), clock, entropy, key, config).expect("the configuration is valid")
}

// ----- backup and restore -------------------------------------------------------------------

const BACKUP_MAGIC: &[u8] = b"SPAREKEY-BACKUP\x00\x01";

fn checksum(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).into()
}

/// What a backup or restore did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupSummary {
    pub accounts: usize,
    pub audit_events: usize,
    /// Where a restore moved the store it replaced, if there was one.
    pub previous_store: Option<PathBuf>,
}

/// Writes a consistent copy of the store to `file` (new, mode 0600, never overwritten). The copy
/// holds only what the store holds (hashes and sealed secrets): it is useless without the key
/// file, which must be backed up separately.
pub fn backup(store: &dyn Store, file: &Path) -> Result<BackupSummary, Error> {
    let image = store.export_image()?;
    let mut bytes = BACKUP_MAGIC.to_vec();
    bytes.extend(crate::store::encode(&image));
    let sum = checksum(&bytes);
    bytes.extend(sum);
    write_new_private_file(file, &bytes)
        .map_err(|e| io_err("cannot write the backup file", file, e))?;
    Ok(BackupSummary {
        accounts: image.accounts.len(),
        audit_events: image.audit.len(),
        previous_store: None,
    })
}

/// Opens the store at `paths` (waiting briefly for another process) and backs it up.
pub fn backup_store(paths: &Paths, file: &Path) -> Result<BackupSummary, Error> {
    if !paths.store.exists() {
        return Err(Error::NotFound(format!(
            "there is no store at {} to back up",
            paths.store.display()
        )));
    }
    let store = SledStore::open(&paths.store, LOCK_WAIT)?;
    backup(&store, file)
}

/// Reads and checks a backup file.
pub fn read_backup(file: &Path) -> Result<crate::core::store::StoreImage, Error> {
    let bytes = fs::read(file).map_err(|e| io_err("cannot read the backup file", file, e))?;
    let bad = |why: &str| {
        Error::Invalid(format!(
            "{} is not a usable sparekey backup: {why}",
            file.display()
        ))
    };
    if bytes.len() < BACKUP_MAGIC.len() + 32 || !bytes.starts_with(BACKUP_MAGIC) {
        return Err(bad("unknown format"));
    }
    let (body, sum) = bytes.split_at(bytes.len() - 32);
    if checksum(body) != sum {
        return Err(bad("its checksum does not match (truncated or altered)"));
    }
    crate::store::decode(&body[BACKUP_MAGIC.len()..], "the backup").map_err(|e| bad(&e.to_string()))
}

/// Restores a backup into the store at `paths`. An existing store is never deleted: it is moved
/// aside to `store.replaced-<time>` first. The backup must belong to the key file in use.
pub fn restore(paths: &Paths, file: &Path, now: i64) -> Result<BackupSummary, Error> {
    let image = read_backup(file)?;
    create_private_dir(&paths.data_dir)?;
    let mut previous_store = None;
    if paths.store.exists() {
        // Holding the lock proves no other process uses the store; a damaged one that cannot
        // be opened is exactly what a restore is for, so only "in use" stops us.
        match SledStore::open(&paths.store, LOCK_WAIT) {
            Err(e @ StoreError::InUse { .. }) => return Err(e.into()),
            Ok(store) => drop(store),
            Err(_) => {}
        }
        let aside = paths.data_dir.join(format!("store.replaced-{now}"));
        fs::rename(&paths.store, &aside)
            .map_err(|e| io_err("cannot move the current store aside from", &paths.store, e))?;
        previous_store = Some(aside);
    }
    let store = SledStore::open(&paths.store, LOCK_WAIT)?;
    if paths.key_file.exists() {
        let key = read_key(&paths.key_file)?;
        if image
            .key_fingerprint
            .as_deref()
            .is_some_and(|fp| fp != key.fingerprint())
        {
            drop(store);
            if let Some(aside) = &previous_store {
                let _ = fs::remove_dir_all(&paths.store);
                let _ = fs::rename(aside, &paths.store);
            }
            return Err(Error::Store(StoreError::Key(format!(
                "the backup was made with another key (fingerprint {}) than {}: point --key-file at the right key",
                image.key_fingerprint.unwrap_or_default(),
                paths.key_file.display()
            ))));
        }
    }
    store.import_image(&image)?;
    Ok(BackupSummary {
        accounts: image.accounts.len(),
        audit_events: image.audit.len(),
        previous_store,
    })
}

// ----- doctor -------------------------------------------------------------------------------

/// One finding of `sparekey doctor`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    /// What was found, and when not ok, what to do about it.
    pub detail: String,
}

fn mode_of(path: &Path) -> Option<u32> {
    fs::metadata(path)
        .ok()
        .map(|m| m.permissions().mode() & 0o777)
}

/// Whether every stored hash costs at least the OWASP minimum, and if not, which are cheaper.
fn hash_strength(image: &crate::core::store::StoreImage) -> (bool, String) {
    let weak = |phc: &str| crate::core::password::phc_params(phc).is_none_or(|p| p.below_owasp());
    let accounts = image.accounts.iter();
    let passwords: Vec<&str> = (accounts.clone())
        .filter(|a| weak(&a.password))
        .map(|a| a.name.as_str())
        .collect();
    let codes: Vec<&str> = accounts
        .filter(|a| a.codes.as_ref().is_some_and(|c| c.params.below_owasp()))
        .map(|a| a.name.as_str())
        .collect();
    let mut found = Vec::new();
    if !passwords.is_empty() {
        found.push(format!("the passwords of {}", passwords.join(", ")));
    }
    if !codes.is_empty() {
        let names = codes.join(", ");
        found.push(format!(
            "the backup codes of {names} (run 'sparekey codes regenerate NAME')"
        ));
    }
    if image.operator_password.as_deref().is_some_and(weak) {
        found.push("the operator password".to_string());
    }
    if found.is_empty() {
        let detail = "every stored hash meets the OWASP minimum (Argon2id, 19 MiB, 2 passes)";
        (true, detail.into())
    } else {
        (
            false,
            format!("hashed below the OWASP minimum: {}", found.join("; ")),
        )
    }
}

/// Checks permissions, the key file, the store (lock, schema, key binding, every record, hash
/// strength) and the system clock, and says what to fix. Changes nothing.
pub fn doctor(paths: &Paths, now: i64) -> Vec<Check> {
    let mut checks = Vec::new();
    let mut check = |name, ok, detail: String| checks.push(Check { name, ok, detail });

    match mode_of(&paths.data_dir) {
        None => check(
            "data dir",
            false,
            format!(
                "{} does not exist yet: it is created on first use",
                paths.data_dir.display()
            ),
        ),
        Some(0o700) => check(
            "data dir",
            true,
            format!("{} (0700)", paths.data_dir.display()),
        ),
        Some(m) => check(
            "data dir",
            false,
            format!(
                "{} is {m:04o}: run chmod 700 {}",
                paths.data_dir.display(),
                paths.data_dir.display()
            ),
        ),
    }
    let key = match mode_of(&paths.key_file) {
        None => {
            check(
                "key file",
                false,
                format!(
                    "{} is missing: if a store exists it cannot be used without it; restore it from your backup",
                    paths.key_file.display()
                ),
            );
            None
        }
        Some(m) => match read_key(&paths.key_file) {
            Err(e) => {
                check("key file", false, e.to_string());
                None
            }
            Ok(key) if m == 0o600 || m == 0o400 => {
                check(
                    "key file",
                    true,
                    format!(
                        "{} ({m:04o}, fingerprint {})",
                        paths.key_file.display(),
                        key.fingerprint()
                    ),
                );
                Some(key)
            }
            Ok(key) => {
                check(
                    "key file",
                    false,
                    format!(
                        "{} is {m:04o}: run chmod 600 {}",
                        paths.key_file.display(),
                        paths.key_file.display()
                    ),
                );
                Some(key)
            }
        },
    };
    if paths.store.exists() {
        match SledStore::open(&paths.store, Duration::from_millis(500)) {
            Err(e @ StoreError::InUse { .. }) => check(
                "store",
                true,
                format!("{e}: checks of its contents skipped"),
            ),
            Err(e) => check(
                "store",
                false,
                format!("{e}: restore it with 'sparekey restore FILE' from a backup"),
            ),
            Ok(store) => {
                check(
                    "schema",
                    true,
                    format!("version {}", crate::store::SCHEMA_VERSION),
                );
                let bound = store.export_image();
                if let (Ok(image), Some(key)) = (&bound, &key) {
                    match &image.key_fingerprint {
                        Some(fp) if *fp != key.fingerprint() => check(
                            "key binding",
                            false,
                            format!(
                                "the store belongs to key {fp}, not to {}: use the right --key-file",
                                key.fingerprint()
                            ),
                        ),
                        _ => check(
                            "key binding",
                            true,
                            "the key file belongs to this store".into(),
                        ),
                    }
                }
                match bound {
                    Ok(image) => {
                        let sealed_ok = key.as_ref().is_none_or(|key| {
                            image.accounts.iter().all(|a| {
                                a.totp
                                    .as_ref()
                                    .is_none_or(|t| key.open(&t.secret, &a.name).is_ok())
                            })
                        });
                        if sealed_ok {
                            check(
                                "records",
                                true,
                                format!(
                                    "{} accounts, {} audit events, all readable",
                                    image.accounts.len(),
                                    image.audit.len()
                                ),
                            );
                        } else {
                            check("records", false, "some TOTP secrets do not open with this key: wrong key file or altered records".into());
                        }
                        let (ok, detail) = hash_strength(&image);
                        check("hash parameters", ok, detail);
                    }
                    Err(e) => check("records", false, format!("{e}: restore from a backup")),
                }
            }
        }
    } else {
        check(
            "store",
            true,
            format!(
                "{} does not exist yet: it is created on first use",
                paths.store.display()
            ),
        );
    }
    // 2024-01-01 .. 2100-01-01: outside that the clock is surely wrong, and TOTP codes with it.
    if (1_704_067_200..4_102_444_800).contains(&now) {
        check(
            "clock",
            true,
            "the system clock looks sane (TOTP needs it within a minute of real time)".into(),
        );
    } else {
        check("clock", false, "the system clock is far off (not between 2024 and 2100): TOTP codes will not match; set the time (e.g. enable NTP)".into());
    }
    checks
}
