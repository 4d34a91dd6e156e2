//! Backups: the backup file's format (magic, the store image, a SHA-256 checksum), writing one
//! from a store and restoring one into the data dir. Owns that format and the move-aside of a
//! replaced store. Must never delete a store, overwrite a file, or restore a backup made with
//! another key than the key file in use.

use std::fs;
use std::path::{Path, PathBuf};

use super::LOCK_WAIT;
use super::key_file::read_key;
use super::new_file::write_new_file;
use super::paths::{Paths, create_private_dir};
use crate::core::error::Error;
use crate::core::store::{Store, StoreError, StoreImage};
use crate::store::postgres::PostgresStore;
use crate::store::sled_store::SledStore;

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

fn summary(image: &StoreImage, previous_store: Option<PathBuf>) -> BackupSummary {
    BackupSummary {
        accounts: image.accounts.len(),
        audit_events: image.audit.len(),
        previous_store,
    }
}

/// The bytes of a backup file holding `image`.
fn encode(image: &StoreImage) -> Vec<u8> {
    let mut bytes = BACKUP_MAGIC.to_vec();
    bytes.extend(crate::store::encode(image));
    let sum = checksum(&bytes);
    bytes.extend(sum);
    bytes
}

/// The image in a backup file's bytes, if they are a whole, unaltered backup.
fn decode(bytes: &[u8]) -> Result<StoreImage, String> {
    if bytes.len() < BACKUP_MAGIC.len() + 32 || !bytes.starts_with(BACKUP_MAGIC) {
        return Err("unknown format".into());
    }
    let (body, sum) = bytes.split_at(bytes.len() - 32);
    if checksum(body) != sum {
        return Err("its checksum does not match (truncated or altered)".into());
    }
    crate::store::decode(&body[BACKUP_MAGIC.len()..], "the backup").map_err(|e| e.to_string())
}

/// Writes a consistent copy of the store to `file` (new, mode 0600, never overwritten). The copy
/// holds only what the store holds (hashes and sealed secrets): it is useless without the key
/// file, which must be backed up separately.
pub fn backup(store: &dyn Store, file: &Path) -> Result<BackupSummary, Error> {
    let image = store.export_image()?;
    // Exit 4 also for a taken name, as before: the CLI documents a refused backup so.
    write_new_file(file, &encode(&image)).map_err(|e| Error::Io(e.to_string()))?;
    Ok(summary(&image, None))
}

/// Opens the store at `paths` (waiting briefly for another process) and backs it up.
pub fn backup_store(paths: &Paths, file: &Path) -> Result<BackupSummary, Error> {
    if let Some(target) = &paths.postgres {
        // Read-only: a backup never creates the tables it would then find empty.
        return backup_streamed(&PostgresStore::open(target, false)?, file);
    }
    if !paths.store.exists() {
        return Err(Error::NotFound(format!(
            "there is no store at {} to back up",
            paths.store.display()
        )));
    }
    let store = SledStore::open(&paths.store, LOCK_WAIT)?;
    backup(&store, file)
}

/// Feeds what it writes to the backup's checksum.
struct Checksummed<W> {
    inner: W,
    hash: sha2::Sha256,
}

impl<W: std::io::Write> std::io::Write for Checksummed<W> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(bytes)?;
        sha2::Digest::update(&mut self.hash, &bytes[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// [`backup`] of a PostgreSQL store, streamed from one snapshot into the same format, so a
/// large store is never held in memory.
fn backup_streamed(store: &PostgresStore, file: &Path) -> Result<BackupSummary, Error> {
    use std::io::Write;
    let mut counts = (0, 0);
    let mut failure = None;
    let written = super::new_file::write_new_file_with(file, |f| {
        let mut out = Checksummed {
            inner: std::io::BufWriter::new(f),
            hash: <sha2::Sha256 as sha2::Digest>::new(),
        };
        out.write_all(BACKUP_MAGIC)?;
        match store.export_to(&mut out) {
            Ok(done) => counts = done,
            Err(e) => {
                failure = Some(e);
                return Err(std::io::Error::other("the store could not be read"));
            }
        }
        let sum = sha2::Digest::finalize(out.hash);
        let mut inner = out.inner;
        inner.write_all(&sum)?;
        inner.flush()
    });
    match (written, failure) {
        (Ok(()), _) => Ok(BackupSummary {
            accounts: counts.0,
            audit_events: counts.1,
            previous_store: None,
        }),
        (Err(_), Some(e)) => Err(e.into()),
        (Err(e), None) => Err(Error::Io(e.to_string())),
    }
}

/// Reads and checks a backup file.
pub fn read_backup(file: &Path) -> Result<StoreImage, Error> {
    let bytes = fs::read(file).map_err(|e| {
        Error::Io(format!(
            "cannot read the backup file {}: {e}",
            file.display()
        ))
    })?;
    decode(&bytes).map_err(|why| {
        Error::Invalid(format!(
            "{} is not a usable sparekey backup: {why}",
            file.display()
        ))
    })
}

/// Moves the store at `paths` aside to `store.replaced-<now>`, unless another process uses it.
fn move_store_aside(paths: &Paths, now: i64) -> Result<PathBuf, Error> {
    // Holding the lock proves no other process uses the store; a damaged one that cannot be
    // opened is exactly what a restore is for, so only "busy" stops us.
    match SledStore::open(&paths.store, LOCK_WAIT) {
        Err(e @ StoreError::Busy { .. }) => return Err(e.into()),
        Ok(store) => drop(store),
        Err(_) => {}
    }
    let aside = paths.data_dir.join(format!("store.replaced-{now}"));
    fs::rename(&paths.store, &aside).map_err(|e| {
        Error::Store(StoreError::Io(format!(
            "cannot move the current store aside from {}: {e}",
            paths.store.display()
        )))
    })?;
    Ok(aside)
}

/// Refuses a backup made with another key than the key file in use (if there is one yet).
fn check_backup_key(paths: &Paths, image: &StoreImage) -> Result<(), Error> {
    if !paths.key_file.exists() {
        return Ok(());
    }
    let key = read_key(&paths.key_file)?;
    match image.key_fingerprint.as_deref() {
        Some(fp) if fp != key.fingerprint() => Err(Error::Key(format!(
            "the backup was made with another key (fingerprint {fp}) than {}: point --key-file at the right key",
            paths.key_file.display()
        ))),
        _ => Ok(()),
    }
}

/// Restores a backup into the store at `paths` (a PostgreSQL store must be empty). An existing
/// sled store is never deleted: it is moved
/// aside to `store.replaced-<time>` first. The backup must belong to the key file in use.
pub fn restore(paths: &Paths, file: &Path, now: i64) -> Result<BackupSummary, Error> {
    let image = read_backup(file)?;
    check_backup_key(paths, &image)?;
    if let Some(target) = &paths.postgres {
        // A database cannot be moved aside: it must be empty, which the import checks in the
        // same transaction that fills it.
        PostgresStore::open(target, true)?.import_image(&image)?;
        return Ok(summary(&image, None));
    }
    create_private_dir(&paths.data_dir)?;
    let previous_store = match paths.store.exists() {
        true => Some(move_store_aside(paths, now)?),
        false => None,
    };
    let store = SledStore::open(&paths.store, LOCK_WAIT)?;
    store.import_image(&image)?;
    Ok(summary(&image, previous_store))
}
