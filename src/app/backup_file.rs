//! Backups: the backup file's format, writing one from a store as the store hands over its
//! records, and restoring one into the data dir. Format 3 (written): the magic, then frames
//! (a kind byte, a big-endian u32 length, the payload): one header (the key fingerprint and the
//! operator password), one frame per account in its frozen schema-2 form (see [`records`]), one
//! per audit event, one end frame with the counts; then an HMAC-SHA256 tag under the backup key
//! derived from the master key, computed incrementally over every byte before it. Format 2 (one
//! serialized body and its tag) is still read; format 1 (an unkeyed checksum) is refused.
//! Owns those formats, the checks a restored record must pass, and the atomic swap of the live
//! store for the restored one (see [`crate::store::swap`]). Must never delete a store,
//! overwrite a file, hold a store in memory to back it up, allocate more for a frame than
//! [`MAX_FRAME`], restore a backup whose tag does not verify with the key file in use (there
//! is no override), or leave the data dir without a whole store.

use std::fs;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::LOCK_WAIT;
use super::key_file::read_key;
use super::new_file::write_new_file_with;
use super::paths::{Paths, create_private_dir};
use crate::core::account::{Account, check_record, folded_name, printable};
use crate::core::audit::{AuditEvent, AuditKind};
use crate::core::clock::UnixTime;
use crate::core::error::Error;
use crate::core::keys::{MacKey, MacStream, MasterKey, TAG_LEN};
use crate::core::store::{ImageItem, KeyBinding, Store, StoreError, StoreImage};
use crate::store::postgres::PostgresStore;
use crate::store::records;
use crate::store::sled_store::SledStore;
use crate::store::swap;

/// Version 3: framed, written and read as a stream. Version 2: one body, read only. Version 1
/// (an unkeyed SHA-256) cannot be told from a forgery.
pub(crate) const BACKUP_MAGIC: &[u8] = b"SPAREKEY-BACKUP\x00\x03";
const BACKUP_MAGIC_V2: &[u8] = b"SPAREKEY-BACKUP\x00\x02";
const BACKUP_MAGIC_V1: &[u8] = b"SPAREKEY-BACKUP\x00\x01";
/// What each version's tag is computed for (never the same kind for two ways of tagging).
const BACKUP_KIND: &str = "sparekey backup file v3";
const BACKUP_KIND_V2: &str = "sparekey backup file v2";
/// The audit name under which a restore records itself.
pub const RESTORE_AUDIT_NAME: &str = "store:restore";

/// The longest frame payload: far above any record creation accepts (an account with a full
/// code set is under 2 KiB), so a hostile length can cost at most this much memory.
pub const MAX_FRAME: usize = 1 << 20;
/// The frame kinds of format 3, in the order a file holds them.
pub const FRAME_HEADER: u8 = 1;
pub const FRAME_ACCOUNT: u8 = 2;
pub const FRAME_AUDIT: u8 = 3;
pub const FRAME_END: u8 = 4;
/// Bytes before a frame's payload: its kind and its length.
pub const FRAME_PREFIX: usize = 5;

/// Format 2's content: the records in their schema-2 form (frozen, see [`records`]), so a
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

/// Format 3's header and end frames (postcard; the header as a pair of optional strings).
type Header = (Option<String>, Option<String>);
type Counts = (u64, u64);

/// Writes format 3 to `out` item by item, tagging every byte as it goes.
struct BackupWriter<W: Write> {
    out: W,
    mac: MacStream,
    accounts: u64,
    audit: u64,
    /// Whether the header was written: it comes first, exactly once.
    started: bool,
}

impl<W: Write> BackupWriter<W> {
    fn new(out: W, key: &MacKey) -> io::Result<Self> {
        let mut writer = Self {
            out,
            mac: key.stream(BACKUP_KIND, ""),
            accounts: 0,
            audit: 0,
            started: false,
        };
        writer.put(BACKUP_MAGIC)?;
        Ok(writer)
    }

    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.mac.update(bytes);
        self.out.write_all(bytes)
    }

    fn frame(&mut self, kind: u8, payload: &[u8]) -> io::Result<()> {
        // Refused here, or the restore would refuse the file this writes.
        let len = u32::try_from(payload.len())
            .ok()
            .filter(|_| payload.len() <= MAX_FRAME)
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "a record of {} bytes is longer than a backup frame may be ({MAX_FRAME})",
                        payload.len()
                    ),
                )
            })?;
        self.put(&[kind])?;
        self.put(&len.to_be_bytes())?;
        self.put(payload)
    }

    fn item(&mut self, item: ImageItem<'_>) -> io::Result<()> {
        let in_order = match item {
            ImageItem::Header { .. } => !self.started,
            ImageItem::Account(_) => self.started && self.audit == 0,
            ImageItem::Audit(_) => self.started,
        };
        if !in_order {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the store handed over its records out of order",
            ));
        }
        match item {
            ImageItem::Header {
                key_fingerprint,
                operator_password,
            } => {
                self.started = true;
                let header = crate::store::encode(&(key_fingerprint, operator_password));
                self.frame(FRAME_HEADER, &header)
            }
            ImageItem::Account(account) => {
                self.accounts += 1;
                self.frame(FRAME_ACCOUNT, &records::encode_account_body(account))
            }
            ImageItem::Audit(event) => {
                self.audit += 1;
                self.frame(FRAME_AUDIT, &crate::store::encode(event))
            }
        }
    }

    /// The end frame and the tag; returns the output (flushed) and the counts.
    fn finish(mut self) -> io::Result<(W, Counts)> {
        if !self.started {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the store handed over no header",
            ));
        }
        let counts = (self.accounts, self.audit);
        self.frame(FRAME_END, &crate::store::encode(&counts))?;
        let tag = self.mac.finish();
        self.out.write_all(&tag)?;
        self.out.flush()?;
        Ok((self.out, counts))
    }
}

/// The bytes of a format-3 backup of `image` tagged with `key`'s backup key, written by
/// nothing else: for tests that forge backups (with a made-up key, or with bad records under
/// the right one).
#[cfg(any(test, feature = "test-support"))]
pub fn encode_for_tests(image: &StoreImage, key: &MasterKey) -> Vec<u8> {
    let write = || -> io::Result<Vec<u8>> {
        let mut writer = BackupWriter::new(Vec::new(), key.backup_key())?;
        writer.item(ImageItem::Header {
            key_fingerprint: image.key_fingerprint.as_deref(),
            operator_password: image.operator_password.as_deref(),
        })?;
        for account in &image.accounts {
            writer.item(ImageItem::Account(account))?;
        }
        for event in &image.audit {
            writer.item(ImageItem::Audit(event))?;
        }
        Ok(writer.finish()?.0)
    };
    write().expect("writing to memory does not fail")
}

/// The bytes of a format-2 backup of `image`, as sparekey wrote them before format 3: for
/// tests that check such backups still restore.
#[cfg(any(test, feature = "test-support"))]
pub fn encode_v2_for_tests(image: &StoreImage, key: &MasterKey) -> Vec<u8> {
    let body = BackupBody {
        key_fingerprint: image.key_fingerprint.clone(),
        operator_password: image.operator_password.clone(),
        accounts: (image.accounts.iter())
            .map(records::encode_account_body)
            .collect(),
        audit: image.audit.clone(),
    };
    let mut bytes = BACKUP_MAGIC_V2.to_vec();
    bytes.extend(crate::store::encode(&body));
    let tag = key.backup_key().tag(BACKUP_KIND_V2, "", &bytes);
    bytes.extend(tag);
    bytes
}

/// Why a backup made with another key is refused: the fingerprint it names (unauthenticated,
/// so only ever used to say which fix applies, and shown escaped).
fn another_key(fingerprint: &str) -> String {
    format!(
        "it was made with another key (fingerprint {}): point --key-file at that key",
        printable(fingerprint)
    )
}

const TAG_MISMATCH: &str = "its authentication tag does not match (truncated or altered)";

/// Postcard bytes that are one whole value, nothing after it.
fn whole<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    match postcard::take_from_bytes(bytes) {
        Ok((value, [])) => Some(value),
        _ => None,
    }
}

/// Reads format 3 after its magic, tagging every byte as it is read.
struct BackupReader<R: Read> {
    input: R,
    mac: MacStream,
}

impl<R: Read> BackupReader<R> {
    fn take(&mut self, buf: &mut [u8]) -> Result<(), String> {
        self.input.read_exact(buf).map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => {
                "it is truncated or altered (it ends before its end frame and tag)".to_string()
            }
            _ => format!("it cannot be read: {e}"),
        })?;
        self.mac.update(buf);
        Ok(())
    }

    /// The next frame's kind and payload, its length checked before anything is allocated.
    fn frame(&mut self) -> Result<(u8, Vec<u8>), String> {
        let mut prefix = [0u8; FRAME_PREFIX];
        self.take(&mut prefix)?;
        let [kind, len @ ..] = prefix;
        let len = u32::from_be_bytes(len) as usize;
        if len > MAX_FRAME {
            return Err(format!(
                "it is truncated or altered (a frame claims {len} bytes, more than the {MAX_FRAME} a frame may hold)"
            ));
        }
        let mut payload = vec![0u8; len];
        self.take(&mut payload)?;
        Ok((kind, payload))
    }
}

/// The image in a format-3 backup read from `input` (just after the magic), if it is whole,
/// in order and its tag verifies with `key`. What is wrong inside a frame is only reported
/// once the tag verified: before that, the tag's verdict is the one that counts.
fn decode_v3(input: impl Read, key: &MasterKey) -> Result<StoreImage, String> {
    let mut mac = key.backup_key().stream(BACKUP_KIND, "");
    mac.update(BACKUP_MAGIC);
    let mut reader = BackupReader { input, mac };
    // The first thing wrong with the content, reported only if the tag verifies.
    let mut wrong: Option<String> = None;
    let mut note = |why: &str| {
        wrong.get_or_insert_with(|| why.to_string());
    };
    let (kind, payload) = reader.frame()?;
    let header = match kind {
        FRAME_HEADER => whole::<Header>(&payload),
        _ => None,
    };
    let Some((key_fingerprint, operator_password)) = header else {
        return Err("it is truncated or altered (it does not start with its header)".into());
    };
    // Refused before reading on: a backup of another key never verifies.
    if let Some(fp) = key_fingerprint
        .as_deref()
        .filter(|fp| *fp != key.fingerprint())
    {
        return Err(another_key(fp));
    }
    let mut image = StoreImage {
        key_fingerprint,
        operator_password,
        accounts: Vec::new(),
        audit: Vec::new(),
    };
    let counts = loop {
        let (kind, payload) = reader.frame()?;
        match kind {
            FRAME_ACCOUNT if image.audit.is_empty() => match records::decode_account_body(&payload)
            {
                Some(account) => image.accounts.push(account),
                None => note("an account record in it cannot be decoded"),
            },
            FRAME_AUDIT => match whole::<AuditEvent>(&payload) {
                Some(event) => image.audit.push(event),
                None => note("an audit event in it cannot be decoded"),
            },
            FRAME_END => break whole::<Counts>(&payload),
            _ => note("its frames are out of order"),
        }
    };
    let mut tag = [0u8; TAG_LEN];
    reader
        .input
        .read_exact(&mut tag)
        .map_err(|_| "it is truncated or altered (it ends before its tag)".to_string())?;
    let mut rest = [0u8; 1];
    if reader
        .input
        .read(&mut rest)
        .map_err(|e| format!("it cannot be read: {e}"))?
        != 0
    {
        return Err("it is truncated or altered (more follows its tag)".into());
    }
    if !reader.mac.verify(&tag) {
        return Err(TAG_MISMATCH.into());
    }
    if let Some(why) = wrong {
        return Err(why);
    }
    let held = (image.accounts.len() as u64, image.audit.len() as u64);
    match counts {
        Some(counts) if counts == held => Ok(image),
        _ => Err(format!(
            "its end frame does not count the {} accounts and {} events it holds",
            held.0, held.1
        )),
    }
}

/// The image in a format-2 backup's bytes, if they are a whole backup whose tag verifies with
/// `key` (made with this key, and not altered since).
fn decode_v2(bytes: &[u8], key: &MasterKey) -> Result<StoreImage, String> {
    if bytes.len() < BACKUP_MAGIC_V2.len() + TAG_LEN {
        return Err("unknown format".into());
    }
    let (signed, tag) = bytes.split_at(bytes.len() - TAG_LEN);
    let body: Option<BackupBody> = postcard::from_bytes(&signed[BACKUP_MAGIC_V2.len()..]).ok();
    if !key.backup_key().verify(BACKUP_KIND_V2, "", signed, tag) {
        // Only now look at the unauthenticated fingerprint, to say which fix applies.
        let fingerprint = body.and_then(|b| b.key_fingerprint);
        return Err(match fingerprint {
            Some(fp) if fp != key.fingerprint() => another_key(&fp),
            _ => TAG_MISMATCH.into(),
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

/// The image in a backup read from `input`, of whichever format it is.
pub(crate) fn decode(mut input: impl Read, key: &MasterKey) -> Result<StoreImage, String> {
    let mut magic = [0u8; BACKUP_MAGIC.len()];
    if input.read_exact(&mut magic).is_err() {
        return Err("unknown format".into());
    }
    match &magic[..] {
        BACKUP_MAGIC => decode_v3(input, key),
        BACKUP_MAGIC_V2 => {
            let mut bytes = magic.to_vec();
            input
                .read_to_end(&mut bytes)
                .map_err(|e| format!("it cannot be read: {e}"))?;
            decode_v2(&bytes, key)
        }
        BACKUP_MAGIC_V1 => Err("it was made by an older sparekey with an unauthenticated checksum, so it cannot be told from a forgery: make a new backup".into()),
        _ => Err("unknown format".into()),
    }
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
/// with `key`'s backup key, as the store hands its records over: a backup holds one record in
/// memory at a time (one batch, on PostgreSQL). The copy holds only what the store holds
/// (hashes and sealed secrets): it is useless without the key file, which must be backed up
/// separately.
pub fn backup(store: &dyn Store, key: &MasterKey, file: &Path) -> Result<BackupSummary, Error> {
    let mut export_failed: Option<StoreError> = None;
    let mut counts: Counts = (0, 0);
    let written = write_new_file_with(file, |f| {
        let out = BufWriter::with_capacity(64 * 1024, f);
        let mut writer = BackupWriter::new(out, key.backup_key())?;
        let mut write_failed: Option<io::Error> = None;
        let exported = store.export_to(&mut |item| {
            writer.item(item).map_err(|e| {
                let stop = StoreError::Io(format!("the backup file was not written: {e}"));
                write_failed = Some(e);
                stop
            })
        });
        if let Err(e) = exported {
            // The file's own error is reported as the file's; the store's as the store's.
            return Err(write_failed.take().unwrap_or_else(|| {
                export_failed = Some(e);
                io::Error::other("the export stopped")
            }));
        }
        counts = writer.finish()?.1;
        Ok(())
    });
    if let Some(e) = export_failed {
        return Err(e.into());
    }
    // Exit 4 also for a taken name, as before: the CLI documents a refused backup so.
    written.map_err(|e| Error::Io(e.to_string()))?;
    Ok(BackupSummary {
        accounts: counts.0 as usize,
        audit_events: counts.1 as usize,
        previous_store: None,
        codes_revived: Vec::new(),
    })
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
    let input = fs::File::open(file).map_err(|e| {
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
    let image = decode(BufReader::with_capacity(64 * 1024, input), key).map_err(unusable)?;
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
