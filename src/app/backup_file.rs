//! Backups: the backup file's format (magic, the store's records, an HMAC-SHA256 tag under the
//! backup key derived from the master key), writing one from a store and restoring one into the
//! data dir. Owns that format, the checks a restored record must pass, and the atomic swap of
//! the live store for the restored one (see [`crate::store::swap`]). Must never delete a store,
//! overwrite a file, restore a backup whose tag does not verify with the key file in use (there
//! is no override), or leave the data dir without a whole store.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::LOCK_WAIT;
use super::key_file::read_key;
use super::new_file::write_new_file;
use super::paths::{Paths, create_private_dir};
use crate::core::account::{Account, check_record, folded_name, printable};
use crate::core::audit::{AuditEvent, AuditKind};
use crate::core::clock::UnixTime;
use crate::core::error::Error;
use crate::core::keys::{MacKey, MasterKey, TAG_LEN};
use crate::core::store::{KeyBinding, Store, StoreError, StoreImage};
use crate::store::postgres::PostgresStore;
use crate::store::records;
use crate::store::sled_store::SledStore;
use crate::store::swap;

/// Version 2: authenticated. Version 1 (an unkeyed SHA-256) cannot be told from a forgery.
const BACKUP_MAGIC: &[u8] = b"SPAREKEY-BACKUP\x00\x02";
const BACKUP_MAGIC_V1: &[u8] = b"SPAREKEY-BACKUP\x00\x01";
/// What the tag is computed for.
const BACKUP_KIND: &str = "sparekey backup file v2";
/// The audit name under which a restore records itself.
pub const RESTORE_AUDIT_NAME: &str = "store:restore";

/// A backup's content: the records in their schema-2 form (frozen, see [`records`]), so a
/// change of the domain types never changes what a backup means.
#[derive(Serialize, Deserialize)]
struct BackupBody {
    key_fingerprint: Option<String>,
    operator_password: Option<String>,
    accounts: Vec<Vec<u8>>,
    audit: Vec<AuditEvent>,
}

/// What a backup or restore did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupSummary {
    pub accounts: usize,
    pub audit_events: usize,
    /// Where a restore moved the store it replaced, if there was one.
    pub previous_store: Option<PathBuf>,
    /// Accounts whose backup codes were used after the backup was taken and work again now.
    pub codes_revived: Vec<String>,
}

fn summary(image: &StoreImage, previous_store: Option<PathBuf>) -> BackupSummary {
    BackupSummary {
        accounts: image.accounts.len(),
        audit_events: image.audit.len(),
        previous_store,
        codes_revived: Vec::new(),
    }
}

/// The bytes of a backup file holding `image`, tagged with `key`.
fn encode(image: &StoreImage, key: &MacKey) -> Vec<u8> {
    let body = BackupBody {
        key_fingerprint: image.key_fingerprint.clone(),
        operator_password: image.operator_password.clone(),
        accounts: image
            .accounts
            .iter()
            .map(records::encode_account_body)
            .collect(),
        audit: image.audit.clone(),
    };
    let mut bytes = BACKUP_MAGIC.to_vec();
    bytes.extend(crate::store::encode(&body));
    let tag = key.tag(BACKUP_KIND, "", &bytes);
    bytes.extend(tag);
    bytes
}

/// The bytes of a backup of `image` tagged with `key`'s backup key, written by nothing else:
/// for tests that forge backups (with a made-up key, or with bad records under the right one).
#[cfg(any(test, feature = "test-support"))]
pub fn encode_for_tests(image: &StoreImage, key: &MasterKey) -> Vec<u8> {
    encode(image, &key.backup_key())
}

/// The image in a backup file's bytes, if they are a whole backup whose tag verifies with
/// `key` (made with this key, and not altered since).
fn decode(bytes: &[u8], key: &MasterKey) -> Result<StoreImage, String> {
    if bytes.starts_with(BACKUP_MAGIC_V1) {
        return Err("it was made by an older sparekey with an unauthenticated checksum, so it cannot be told from a forgery: make a new backup".into());
    }
    if bytes.len() < BACKUP_MAGIC.len() + TAG_LEN || !bytes.starts_with(BACKUP_MAGIC) {
        return Err("unknown format".into());
    }
    let (signed, tag) = bytes.split_at(bytes.len() - TAG_LEN);
    let body: Option<BackupBody> = postcard::from_bytes(&signed[BACKUP_MAGIC.len()..]).ok();
    if !key.backup_key().verify(BACKUP_KIND, "", signed, tag) {
        // Only now look at the unauthenticated fingerprint, to say which fix applies.
        let fingerprint = body.and_then(|b| b.key_fingerprint);
        return Err(match fingerprint {
            Some(fp) if fp != key.fingerprint() => format!(
                "it was made with another key (fingerprint {fp}): point --key-file at that key"
            ),
            _ => "its authentication tag does not match (truncated or altered)".into(),
        });
    }
    let body = body.ok_or("it cannot be decoded")?;
    let accounts = (body.accounts.iter())
        .map(|bytes| records::decode_account_body(bytes))
        .collect::<Option<Vec<Account>>>()
        .ok_or("an account record in it cannot be decoded")?;
    Ok(StoreImage {
        key_fingerprint: body.key_fingerprint,
        operator_password: body.operator_password,
        accounts,
        audit: body.audit,
    })
}

/// Checks every record of an image as creation would, and that no two names are one account.
fn validate(image: &StoreImage) -> Result<(), String> {
    let mut seen = std::collections::HashMap::new();
    for account in &image.accounts {
        check_record(account)?;
        if let Some(other) = seen.insert(folded_name(&account.name), &account.name) {
            return Err(format!(
                "the accounts '{}' and '{}' differ only by case",
                printable(other),
                printable(&account.name)
            ));
        }
    }
    let operator_ok = (image.operator_password.as_deref())
        .is_none_or(|phc| crate::core::password::phc_params(phc).is_some_and(|p| p.is_valid()));
    if !operator_ok {
        return Err("its operator password is not a usable Argon2id hash".into());
    }
    Ok(())
}

/// Writes a consistent copy of the store to `file` (new, mode 0600, never overwritten), tagged
/// with `key`'s backup key. The copy holds only what the store holds (hashes and sealed
/// secrets): it is useless without the key file, which must be backed up separately.
pub fn backup(store: &dyn Store, key: &MasterKey, file: &Path) -> Result<BackupSummary, Error> {
    let image = store.export_image()?;
    // Exit 4 also for a taken name, as before: the CLI documents a refused backup so.
    write_new_file(file, &encode(&image, &key.backup_key()))
        .map_err(|e| Error::Io(e.to_string()))?;
    Ok(summary(&image, None))
}

/// Opens the store at `paths` (waiting briefly for another process) and backs it up.
pub fn backup_store(paths: &Paths, file: &Path) -> Result<BackupSummary, Error> {
    let store: Box<dyn Store> = match &paths.postgres {
        // Read-only: a backup never creates the tables it would then find empty.
        Some(target) => Box::new(PostgresStore::open(target, false)?),
        None if !paths.store.exists() => {
            return Err(Error::NotFound(format!(
                "there is no store at {} to back up",
                paths.store.display()
            )));
        }
        None => Box::new(SledStore::open(&paths.store, LOCK_WAIT)?),
    };
    let key = read_key(&paths.key_file)?;
    if let KeyBinding::Mismatch { stored } = store.bind_key(&key.store_key())? {
        return Err(Error::Key(format!(
            "the key file {} (fingerprint {}) does not belong to this store (fingerprint {stored})",
            paths.key_file.display(),
            key.fingerprint()
        )));
    }
    backup(store.as_ref(), &key, file)
}

/// Reads a backup file and checks its tag with `key`.
pub fn read_backup(file: &Path, key: &MasterKey) -> Result<StoreImage, Error> {
    let bytes = fs::read(file).map_err(|e| {
        Error::Io(format!(
            "cannot read the backup file {}: {e}",
            file.display()
        ))
    })?;
    let unusable = |why: String| {
        Error::Invalid(format!(
            "{} is not a usable sparekey backup: {why}",
            file.display()
        ))
    };
    let image = decode(&bytes, key).map_err(unusable)?;
    validate(&image).map_err(unusable)?;
    Ok(image)
}

/// The key file a restore checks the backup with; a restore never creates one.
fn restore_key(paths: &Paths) -> Result<MasterKey, Error> {
    if paths.key_file.symlink_metadata().is_err() {
        return Err(Error::Key(format!(
            "the key file {} is missing: a backup is checked with the key it was made with; restore that key file first",
            paths.key_file.display()
        )));
    }
    read_key(&paths.key_file)
}

/// The accounts of `old` whose backup codes were used after the image was taken: the same set
/// is in both, and a slot used in the live store is unused in the image.
fn revived_codes(old: &[Account], image: &StoreImage) -> Vec<(String, u32)> {
    let live: std::collections::HashMap<&str, &Account> =
        old.iter().map(|a| (a.name.as_str(), a)).collect();
    let mut revived = Vec::new();
    for account in &image.accounts {
        let (Some(set), Some(now)) = (
            account.codes.as_ref(),
            live.get(account.name.as_str())
                .and_then(|a| a.codes.as_ref()),
        ) else {
            continue;
        };
        if set.id != now.id {
            continue;
        }
        let count = (set.slots.iter().zip(&now.slots))
            .filter(|(then, now)| then.used_at.is_none() && now.used_at.is_some())
            .count() as u32;
        if count > 0 {
            revived.push((account.name.clone(), count));
        }
    }
    revived
}

/// Takes the live store's lock (held until the restore is done) and reads its records, if it
/// opens with the key, to compare with the backup. A store that does not open is what a
/// restore is for: then only "busy" stops us.
fn lock_live(
    paths: &Paths,
    key: &MasterKey,
) -> Result<(crate::store::lock::StoreLock, Vec<Account>), Error> {
    if !paths.store.exists() {
        return Ok((SledStore::lock(&paths.store, LOCK_WAIT)?, Vec::new()));
    }
    match SledStore::open(&paths.store, LOCK_WAIT) {
        Err(e @ StoreError::Busy { .. }) => Err(e.into()),
        Ok(store) => {
            store.attach_key(&key.store_key());
            let accounts = store.export_image().map(|i| i.accounts).unwrap_or_default();
            Ok((store.into_lock(), accounts))
        }
        Err(_) => Ok((SledStore::lock(&paths.store, LOCK_WAIT)?, Vec::new())),
    }
}

/// Builds the new store at the staging path: the image, the restore's audit events, synced;
/// then renames it to the "complete" name.
fn build_new_store(
    paths: &Paths,
    key: &MasterKey,
    image: &StoreImage,
    revived: &[(String, u32)],
    now: UnixTime,
) -> Result<(), Error> {
    let staging = swap::staging_path(&paths.store);
    let cannot = |what: &str, e: std::io::Error| {
        Error::Store(StoreError::Io(format!(
            "cannot {what} {}: {e}",
            staging.display()
        )))
    };
    // A staging store of a restore that was stopped is incomplete by definition.
    if staging.exists() {
        fs::remove_dir_all(&staging).map_err(|e| cannot("clear the unfinished restore at", e))?;
    }
    {
        let store = SledStore::open(&staging, LOCK_WAIT)?;
        store.bind_key(&key.store_key())?;
        store.import_image(image)?;
        for event in &restore_events(image, revived, now) {
            store.append_audit(event)?;
        }
        // append_audit hands its events to the OS only: make the whole new store durable
        // before it can be put in place.
        store.sync()?;
    }
    let _ = fs::remove_file(crate::store::lock::lock_path(&staging));
    let restored = swap::restored_path(&paths.store);
    fs::rename(&staging, &restored).map_err(|e| cannot("rename", e))?;
    swap::sync_dir(&paths.data_dir).map_err(|e| cannot("sync the directory of", e))
}

/// The restore's own audit events (the revived codes' among them).
fn restore_events(image: &StoreImage, revived: &[(String, u32)], now: UnixTime) -> Vec<AuditEvent> {
    let mut events = vec![AuditEvent {
        at: now,
        account: RESTORE_AUDIT_NAME.into(),
        kind: AuditKind::StoreRestored {
            accounts: image.accounts.len() as u32,
        },
    }];
    events.extend(revived.iter().map(|(name, count)| AuditEvent {
        at: now,
        account: name.clone(),
        kind: AuditKind::UsedCodesRevived { count: *count },
    }));
    events
}

/// A restore into a PostgreSQL database: it cannot be moved aside, so it must be empty, which
/// the import checks in the one transaction that fills it (with the restore's event): atomic
/// without a swap.
fn restore_postgres(
    target: &crate::store::location::PostgresTarget,
    key: &MasterKey,
    image: &StoreImage,
    now: UnixTime,
) -> Result<BackupSummary, Error> {
    let store = PostgresStore::open(target, true)?;
    if let KeyBinding::Mismatch { stored } = store.bind_key(&key.store_key())? {
        return Err(Error::Key(format!(
            "the key file (fingerprint {}) does not belong to the PostgreSQL store at {} (fingerprint {stored})",
            key.fingerprint(),
            store.display()
        )));
    }
    store.restore_image(image, &restore_events(image, &[], now))?;
    Ok(summary(image, None))
}

/// Restores a backup into the store at `paths`. The backup must verify with the key file in
/// use and every record must pass the checks of creation; then the new store is built beside
/// the old one, synced, and renamed into place while the store's lock is held throughout. The
/// old store is never deleted: it is moved aside to `store.replaced-<ISO UTC time>`.
pub fn restore(paths: &Paths, file: &Path, now: i64) -> Result<BackupSummary, Error> {
    let key = restore_key(paths)?;
    let image = read_backup(file, &key)?;
    if let Some(target) = &paths.postgres {
        return restore_postgres(target, &key, &image, now);
    }
    create_private_dir(&paths.data_dir)?;
    let (lock, live) = lock_live(paths, &key)?;
    let revived = revived_codes(&live, &image);
    build_new_store(paths, &key, &image, &revived, now)?;
    let previous_store = swap::install(&paths.store, now).map_err(|e| {
        Error::Store(StoreError::Io(format!(
            "cannot put the restored store in place of {}: {e}",
            paths.store.display()
        )))
    })?;
    drop(lock);
    let mut summary = summary(&image, previous_store);
    summary.codes_revived = revived.into_iter().map(|(name, _)| name).collect();
    Ok(summary)
}
