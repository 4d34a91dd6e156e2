//! The sled backend: one tree of accounts (name -> tagged record, see
//! [`records`](crate::store::records)), one of their list facts (name -> [`AccountFacts`], so
//! listing never decodes full records), one of case-folded names (folded -> name, so two names
//! that differ only by case cannot both exist), one of audit events (sequence number -> event),
//! one of refusal notes (name -> the event that counts refused attempts in the account's current
//! delay window), and meta keys (schema version, key fingerprint, the tagged schema marker and
//! operator values) in the default tree. Records are checked with the record key that
//! [`Store::bind_key`] hands over; a schema-1 store is migrated, atomically, by that first
//! bind, and a store that was ever bound at schema 2 is never taken for one of schema 1 (its
//! untagged version can be edited; the marker, the tagged records and the folds cannot be
//! forged). What binding writes (the fingerprint, the marker, the operator records) is never
//! written afresh over a store in use, so removing it is damage, not a reset. Every mutation
//! is one sled transaction over what it changes and the audit events that record it (and the
//! next event's number), and is flushed before it returns; a write that fails makes the store
//! [`StoreError::Unavailable`]. Must never block forever on a store held by another process,
//! never rewrite a store written by a newer schema, and never migrate one that was at schema 2.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use std::cell::Cell;

use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::core::account::{
    Account, AccountFacts, ActiveTotp, PendingTotp, folded_name, printable,
};
use crate::core::audit::{AuditEvent, AuditKind};
use crate::core::clock::UnixTime;
use crate::core::code_set::CodeSet;
use crate::core::keys::{MacKey, StoreKey};
use crate::core::kiosk::OPERATOR_AUDIT_NAME;
use crate::core::store::{
    Activation, AuditFor, CodeConsumption, CodesConfirmation, ImageItem, ImageSink, KeyBinding,
    Reservation, SettleCheck, Settlement, StepConsumption, Store, StoreError, StoreImage,
};
use crate::core::throttle::{FailureRecord, Gate, ThrottlePolicy};
use crate::store::lock::{self, StoreLock};
use crate::store::mutation::{self, Applied, RefusalNote};
use crate::store::records;
use crate::store::{SCHEMA_VERSION, decode, encode};

const META_SCHEMA: &[u8] = b"schema_version";
const META_KEY: &[u8] = b"key_fingerprint";
/// Schema 1's operator values, untagged; read only to migrate.
const META_OPERATOR_V1: &[u8] = b"operator_password";
const META_OPERATOR_FAILURES_V1: &[u8] = b"operator_failures";
/// Schema 2's, tagged (see [`records`]).
const META_OPERATOR: &[u8] = b"operator_password.v2";
const META_OPERATOR_FAILURES: &[u8] = b"operator_failures.v2";
/// The tagged schema marker (see [`records::encode_schema_marker`]): once a store was bound at
/// schema 2, it vouches for its version, so the untagged [`META_SCHEMA`] alone cannot be set
/// back to 1 to have forged schema-1 records migrated (tagged) as they stand.
const META_MARKER: &[u8] = b"schema_marker";
/// A migration's tagged note, present while it fills the schema-2 trees (see
/// [`records::encode_migration_marker`]).
const META_MIGRATING: &[u8] = b"migration_in_progress";
/// Schema 1's account tree (untagged records), read only to migrate; schema 2's has its own
/// name, so a migration fills it beside the old one and one write of the schema version
/// switches over.
const TREE_ACCOUNTS_V1: &str = "accounts";
const TREE_ACCOUNTS: &str = "accounts.v2";
const TREE_FOLDS: &str = "account_folds";
/// Present while a restore fills the store; a store that still has it was interrupted.
const META_RESTORING: &[u8] = b"restore_in_progress";
/// Accounts (or audit events) written per transaction by a restore.
const IMPORT_CHUNK: usize = 1_000;

/// Audit events kept; older ones are pruned so the log cannot grow without bound.
pub const AUDIT_RETENTION: usize = 100_000;
/// How often (in appended events: whenever the next event's number crosses a multiple of
/// it) the retention bound is enforced.
const PRUNE_EVERY: u64 = 512;
/// The key of the next audit event. sled's `generate_id` would do, but the first id a process
/// takes writes sled's id counter to the log, one more write and wait in every CLI run.
const META_AUDIT_NEXT: &[u8] = b"audit_next_id";

/// sled's page cache. Its default (1 GiB) is sized for a database server; sparekey reads one
/// account per operation and lists names, so a small cache keeps a kiosk's memory flat.
const CACHE_BYTES: u64 = 16 * 1024 * 1024;

/// sled's log segment. Every open zero-fills and fsyncs the rest of the current segment; at the
/// default 512 KiB that was ~4.5 ms of each short CLI run (median of 40 process runs: 12.4 ms
/// vs 7.9 ms with 64 KiB), with no change in size or listing speed at 100,000 accounts. Part of
/// the on-disk format: sled refuses to open a store with another segment size.
const SEGMENT_BYTES: usize = 64 * 1024;

#[derive(Debug)]
pub struct SledStore {
    db: sled::Db,
    /// sled's log file, opened again only to `fdatasync` it (see [`SledStore::flush`]).
    log_file: std::fs::File,
    accounts: sled::Tree,
    /// Schema 1's records, until migrated.
    accounts_v1: sled::Tree,
    facts: sled::Tree,
    folds: sled::Tree,
    audit: sled::Tree,
    refusals: sled::Tree,
    path: PathBuf,
    /// The schema of the data on disk: 1 until the first bind migrates it.
    schema: AtomicU32,
    /// The key records are tagged with, from [`Store::bind_key`] or [`SledStore::attach_key`].
    /// A handle to the key's one allocation (see [`StoreKey`]), never a copy of its bytes.
    key: OnceLock<StoreKey>,
    /// Declared last so that it is released only after sled has closed the store.
    _lock: StoreLock,
}

fn unix_now() -> UnixTime {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    since.map_or(0, |d| d.as_secs() as UnixTime)
}

fn io(e: sled::Error) -> StoreError {
    match e {
        sled::Error::Corruption { .. } => StoreError::Damaged(format!("{e}")),
        // sled's own Display shows the io::Error's Debug form; people want the OS sentence.
        // sled repeats a failed write's error on every later write: a full disk stays
        // Unavailable until the process starts again.
        sled::Error::Io(e) if e.kind() == std::io::ErrorKind::StorageFull => {
            StoreError::Unavailable(e.to_string())
        }
        sled::Error::Io(e) => StoreError::Io(e.to_string()),
        other => StoreError::Io(other.to_string()),
    }
}

/// A write that failed. sled repeats a failed write's error on every later one, so whatever
/// the cause the store is unavailable to this process: never read as "nothing happened, go
/// on" (an attempt whose count could not be written must not be verified).
fn write_failed(e: sled::Error) -> StoreError {
    match e {
        sled::Error::Corruption { .. } => StoreError::Damaged(format!("{e}")),
        sled::Error::Io(e) => StoreError::Unavailable(e.to_string()),
        other => StoreError::Unavailable(other.to_string()),
    }
}

/// How far a transaction's writes must get before it returns.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Flush {
    /// Nothing was written.
    No,
    /// To the OS: survives this process being killed (a refusal note).
    ToOs,
    /// To the disk: survives a power cut (every change reported done).
    ToDisk,
}

/// The trees of one transaction, with the record key and the audit numbering it continues.
struct Tx<'a> {
    /// The record key, or why the store cannot be written (see [`SledStore::writable`]).
    key: Result<&'a MacKey, &'a StoreError>,
    accounts: &'a TransactionalTree,
    facts: &'a TransactionalTree,
    folds: &'a TransactionalTree,
    events: &'a TransactionalTree,
    meta: &'a TransactionalTree,
    refusals: &'a TransactionalTree,
    first_id: u64,
    prune_due: Cell<bool>,
}

type TxResult<T> = Result<T, ConflictableTransactionError<StoreError>>;

fn abort<T>(e: StoreError) -> TxResult<T> {
    Err(ConflictableTransactionError::Abort(e))
}

impl<'a> Tx<'a> {
    /// The record key; aborts a transaction on a store that cannot be written yet.
    fn key(&self) -> TxResult<&'a MacKey> {
        self.key
            .map_err(|e| ConflictableTransactionError::Abort(e.clone()))
    }

    /// The record of `name`, its tag checked (see [`records::decode_account`]).
    fn load(&self, name: &str) -> TxResult<Option<Account>> {
        let key = self.key()?;
        match self.accounts.get(name.as_bytes())? {
            Some(bytes) => match records::decode_account(key, name, &bytes) {
                Ok(account) => Ok(Some(account)),
                Err(e) => abort(e),
            },
            None => Ok(None),
        }
    }

    /// Writes `account`'s tagged record and its list facts.
    fn put(&self, account: &Account) -> TxResult<()> {
        let record = records::encode_account(self.key()?, account);
        let name = account.name.as_bytes();
        self.accounts.insert(name, record)?;
        self.facts.insert(name, encode(&account.facts()))?;
        Ok(())
    }

    /// Appends events; returns the number of the first.
    fn write_events(&self, at: UnixTime, account: &str, kinds: Vec<AuditKind>) -> TxResult<u64> {
        let (first, due) = write_events(self.events, self.meta, self.first_id, at, account, kinds)?;
        if due {
            self.prune_due.set(true);
        }
        Ok(first)
    }

    /// Adds a refused attempt to the account's refusal event for `window`, or starts one
    /// (see [`mutation::note_refusal`]).
    fn note_refusal(
        &self,
        name: &str,
        window: FailureRecord,
        gate: Gate,
        at: UnixTime,
    ) -> TxResult<()> {
        let old: Option<RefusalNote> = match self.refusals.get(name.as_bytes())? {
            // A note that cannot be read only costs one more event.
            Some(bytes) => decode(&bytes, "a refusal note").ok(),
            None => None,
        };
        let (mut note, existing) = mutation::note_refusal(old, window, at);
        let kind = AuditKind::AttemptsRefused {
            count: note.count,
            locked: gate == Gate::Locked,
        };
        let key = note.event.to_be_bytes();
        // The event may have been pruned meanwhile: then the count goes on in a new one.
        let current = match self.events.get(key)? {
            Some(bytes) if existing => decode::<AuditEvent>(&bytes, "an audit event").ok(),
            _ => None,
        };
        let same = current.is_some_and(|e| {
            e.account == name && matches!(e.kind, AuditKind::AttemptsRefused { .. })
        });
        if same {
            let event = AuditEvent {
                at: note.first_at,
                account: name.to_string(),
                kind,
            };
            self.events.insert(&key, encode(&event))?;
        } else {
            note.event = self.write_events(at, name, vec![kind])?;
        }
        self.refusals.insert(name.as_bytes(), encode(&note))?;
        Ok(())
    }

    /// The operator's failure record, its tag checked: one that fails stops the count with
    /// an error, never restarts it from zero.
    fn operator_failures(&self) -> TxResult<FailureRecord> {
        let key = self.key()?;
        match self.meta.get(META_OPERATOR_FAILURES)? {
            Some(bytes) => match records::decode_operator_failures(key, &bytes) {
                Ok(record) => Ok(record),
                Err(e) => abort(e),
            },
            // Written when the store was bound: a missing one was removed, and reading it as
            // zero would unlock a locked operator.
            None => abort(missing_meta_record("operator's failure")),
        }
    }

    fn put_operator_failures(&self, record: &FailureRecord) -> TxResult<()> {
        let bytes = records::encode_operator_failures(self.key()?, record);
        self.meta.insert(META_OPERATOR_FAILURES, bytes)?;
        Ok(())
    }
}

/// Waits, until `deadline` at the latest, while another handle of this process still holds
/// sled's lock on the log `db`. Probes with a lock of its own, released at once; a log that
/// does not exist yet, or cannot be probed, is left for sled's open to report.
fn wait_for_sled_lock(db: &Path, deadline: Instant) {
    let Ok(file) = std::fs::File::open(db) else {
        return;
    };
    while let Err(std::fs::TryLockError::WouldBlock) = file.try_lock() {
        if Instant::now() >= deadline {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = file.unlock();
}

impl SledStore {
    /// Opens (or creates) the store at `path`. If another open store holds its lock file (see
    /// [`lock`](crate::store::lock)), retries for up to `wait`, then fails with
    /// [`StoreError::Busy`].
    pub fn open(path: &Path, wait: Duration) -> Result<Self, StoreError> {
        let deadline = Instant::now() + wait;
        let lock = Self::lock(path, wait)?;
        // A restore stopped between its renames left the complete new store beside this one.
        crate::store::swap::finish_interrupted(path, unix_now()).map_err(|e| {
            StoreError::Io(format!(
                "cannot finish the interrupted restore of {}: {e}",
                path.display()
            ))
        })?;
        // Holding the lock file, no other sparekey has the store. sled's own lock on its log
        // can still be held for a moment: a store of this process that was just dropped lets
        // go of it only when sled's last background task does. Wait for that, within `wait`.
        wait_for_sled_lock(&path.join("db"), deadline);
        let db = Self::try_open(path)?;
        let accounts = db.open_tree(TREE_ACCOUNTS).map_err(io)?;
        let accounts_v1 = db.open_tree(TREE_ACCOUNTS_V1).map_err(io)?;
        let facts = db.open_tree("account_facts").map_err(io)?;
        let folds = db.open_tree(TREE_FOLDS).map_err(io)?;
        let audit = db.open_tree("audit").map_err(io)?;
        let refusals = db.open_tree("refusals").map_err(io)?;
        let log_file = std::fs::File::open(path.join("db")).map_err(|e| {
            StoreError::Io(format!("cannot open {}: {e}", path.join("db").display()))
        })?;
        let store = Self {
            db,
            log_file,
            accounts,
            accounts_v1,
            facts,
            folds,
            audit,
            refusals,
            path: path.to_path_buf(),
            schema: AtomicU32::new(SCHEMA_VERSION),
            key: OnceLock::new(),
            _lock: lock,
        };
        store.check_schema()?;
        Ok(store)
    }

    /// Takes the lock of the store at `path` (see [`lock`](crate::store::lock)), retrying for up
    /// to `wait` while another process holds it: for a restore, which replaces the store's
    /// files and holds the lock throughout.
    pub fn lock(path: &Path, wait: Duration) -> Result<StoreLock, StoreError> {
        let deadline = Instant::now() + wait;
        loop {
            match lock::try_lock(path) {
                Err(StoreError::Busy { .. }) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                other => return other,
            }
        }
    }

    /// Closes the store and hands back its lock, still held.
    pub fn into_lock(self) -> StoreLock {
        let Self { db, _lock, .. } = self;
        drop(db);
        _lock
    }

    /// Opens the sled database under the store at `path` directly, below the `Store` trait and
    /// without the lock file: for tests and tools that must inspect or damage the raw records.
    /// Like [`open`](Self::open), it first waits (up to 5 s) for sled's own lock, which a raw
    /// database of this process that was just dropped holds until its background work ends.
    pub fn raw_open(path: &Path) -> sled::Result<sled::Db> {
        wait_for_sled_lock(&path.join("db"), Instant::now() + Duration::from_secs(5));
        Self::raw_config(path).open()
    }

    /// sled's configuration for a store at `path` (a raw sled open with other settings is
    /// refused by sled).
    fn raw_config(path: &Path) -> sled::Config {
        sled::Config::new()
            .path(path)
            .cache_capacity(CACHE_BYTES)
            .segment_size(SEGMENT_BYTES)
    }

    fn try_open(path: &Path) -> Result<sled::Db, StoreError> {
        let config = Self::raw_config(path);
        // sled panics on some kinds of damage instead of returning an error: turn that into
        // one clear line rather than a crash.
        let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| config.open()));
        match opened {
            Ok(Ok(db)) => Ok(db),
            Ok(Err(sled::Error::Io(e))) => Err(StoreError::Io(format!(
                "cannot open the store at {}: {e}",
                path.display()
            ))),
            Ok(Err(e)) => Err(StoreError::Damaged(format!(
                "cannot open the store at {}: {e}",
                path.display()
            ))),
            Err(_) => Err(StoreError::Damaged(format!(
                "the store at {} cannot be read (sled failed while opening it)",
                path.display()
            ))),
        }
    }

    fn check_schema(&self) -> Result<(), StoreError> {
        if self.db.contains_key(META_RESTORING).map_err(io)? {
            return Err(StoreError::Damaged(format!(
                "a restore into {} was interrupted, so the store is incomplete: run 'sparekey restore FILE' again",
                self.path.display()
            )));
        }
        match self.db.get(META_SCHEMA).map_err(io)? {
            Some(v) => {
                let bytes: [u8; 4] = v.as_ref().try_into().map_err(|_| {
                    StoreError::Damaged("the schema version record is malformed".into())
                })?;
                let found = u32::from_be_bytes(bytes);
                if found > SCHEMA_VERSION {
                    return Err(StoreError::NewerSchema {
                        path: self.path.display().to_string(),
                        found,
                        supported: SCHEMA_VERSION,
                    });
                }
                if found < 1 {
                    return Err(StoreError::Damaged(format!(
                        "schema version {found} is not one this sparekey can read or migrate"
                    )));
                }
                self.schema.store(found, Ordering::SeqCst);
                if found == SCHEMA_VERSION && !self.accounts_v1.is_empty() {
                    // A migration that switched over but was stopped before it dropped the old
                    // records; they are never read again.
                    let _ = self.accounts_v1.clear();
                }
                Ok(())
            }
            None if self.accounts.is_empty()
                && self.accounts_v1.is_empty()
                && self.audit.is_empty() =>
            {
                self.db
                    .insert(META_SCHEMA, &SCHEMA_VERSION.to_be_bytes())
                    .map_err(io)?;
                self.flush()
            }
            None => Err(StoreError::Damaged(
                "the store has data but no schema version".into(),
            )),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The schema of the data on disk (1 until a bind migrates it).
    pub fn schema(&self) -> u32 {
        self.schema.load(Ordering::SeqCst)
    }

    /// Hands the store its record key without binding or migrating anything: for `doctor`,
    /// which reads and checks every record but never writes.
    pub fn attach_key(&self, key: &StoreKey) {
        let _ = self.key.set(key.share());
    }

    /// The record key; an error (never a panic) if the store is used before its key is bound.
    fn mac(&self) -> Result<&MacKey, StoreError> {
        self.key.get().map(StoreKey::records).ok_or_else(|| {
            StoreError::Conflict(
                "the store's records cannot be checked before its key is bound".into(),
            )
        })
    }

    /// Refuses a write to a store still in schema 1 (its first bind migrates it).
    fn writable(&self) -> Result<&MacKey, StoreError> {
        if self.schema() != SCHEMA_VERSION {
            return Err(StoreError::Conflict(format!(
                "the store at {} is still schema {}: it is migrated when opened with its key",
                self.path.display(),
                self.schema()
            )));
        }
        self.mac()
    }

    /// Reads the record stored under `name`, in the schema on disk.
    fn read_record(&self, name: &str, bytes: &[u8]) -> Result<Account, StoreError> {
        match self.schema() {
            SCHEMA_VERSION => records::decode_account(self.mac()?, name, bytes),
            _ => records::decode_account_v1(name, bytes),
        }
    }

    /// The tree holding the records of the schema on disk.
    fn record_tree(&self) -> &sled::Tree {
        match self.schema() {
            SCHEMA_VERSION => &self.accounts,
            _ => &self.accounts_v1,
        }
    }

    /// The fingerprint of the key this store is bound to, if any (read only).
    pub fn key_fingerprint(&self) -> Result<Option<String>, StoreError> {
        let value = self.db.get(META_KEY).map_err(io)?;
        Ok(value.map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// Reads and checks every account record and operator value; returns how many accounts
    /// there are and one line for each record that fails (for `doctor`, which names them all
    /// rather than stop at the first).
    pub fn check_records(&self) -> Result<(usize, Vec<String>), StoreError> {
        let mut count = 0;
        let mut damaged = Vec::new();
        for entry in self.record_tree().iter() {
            let (name, bytes) = entry.map_err(io)?;
            count += 1;
            if let Err(e) = self.read_record(&String::from_utf8_lossy(&name), &bytes) {
                damaged.push(e.to_string());
            }
        }
        for result in [
            self.operator_password().map(|_| ()),
            self.operator_failures().map(|_| ()),
            self.check_version(),
        ] {
            if let Err(e) = result {
                damaged.push(e.to_string());
            }
        }
        if self.schema() == SCHEMA_VERSION {
            damaged.extend(self.check_folds()?);
        }
        Ok((count, damaged))
    }

    /// What a bind would refuse about the schema: a store set back to schema 1, or one of
    /// schema 2 whose marker is missing or altered (read only: for `doctor`).
    fn check_version(&self) -> Result<(), StoreError> {
        if self.schema() < SCHEMA_VERSION {
            return self.refuse_downgrade(self.key.get().map(StoreKey::records));
        }
        match (self.key_fingerprint()?, self.key.get()) {
            (Some(_), Some(key)) => self.check_marker(key.records()),
            (None, _) if self.holds_data() => Err(missing_fingerprint()),
            _ => Ok(()),
        }
    }

    /// The case-folded name index against the records: every record has its fold, and every
    /// fold names a record that folds to it. A fold removed below sparekey would let a twin
    /// differing only by case be created; one line per mismatch.
    fn check_folds(&self) -> Result<Vec<String>, StoreError> {
        let mut lines = Vec::new();
        for entry in self.accounts.iter().keys() {
            let name = entry.map_err(io)?;
            let name = String::from_utf8_lossy(&name).into_owned();
            let fold = self.folds.get(folded_name(&name).as_bytes()).map_err(io)?;
            if fold.as_deref() != Some(name.as_bytes()) {
                lines.push(format!(
                    "the case-folded name index has no entry for account '{}' (removed below sparekey): restore from a backup",
                    printable(&name)
                ));
            }
        }
        for entry in self.folds.iter() {
            let (folded, name) = entry.map_err(io)?;
            let name = String::from_utf8_lossy(&name).into_owned();
            let matches = folded_name(&name).as_bytes() == folded.as_ref();
            if !matches || !self.accounts.contains_key(name.as_bytes()).map_err(io)? {
                lines.push(format!(
                    "the case-folded name index holds an entry for '{}', which is no account (added below sparekey): restore from a backup",
                    printable(&name)
                ));
            }
        }
        Ok(lines)
    }

    /// Whether a record other than `name` folds to `folded`: a look at every record's name,
    /// not only at the fold index, which can be edited below sparekey and proves nothing by
    /// missing an entry. Read before the insert's transaction; a twin inserted meanwhile by
    /// another process is caught by its fold, which that transaction reads.
    ///
    /// One pass over the keys, no record decoded: an ASCII pair is compared in place (folding
    /// ASCII is its lower case), only other names are folded. 157 ms over 100,000 accounts in
    /// a release build: a cost of creation only, beside its Argon2id hash.
    fn twin_of(&self, name: &str, folded: &str) -> Result<Option<String>, StoreError> {
        for entry in self.accounts.iter().keys() {
            let other = entry.map_err(io)?;
            if other.as_ref() == name.as_bytes() {
                continue;
            }
            let twin = if other.is_ascii() && name.is_ascii() {
                other.eq_ignore_ascii_case(name.as_bytes())
            } else {
                folded_name(&String::from_utf8_lossy(&other)) == folded
            };
            if twin {
                return Ok(Some(String::from_utf8_lossy(&other).into_owned()));
            }
        }
        Ok(None)
    }

    /// Migrates a schema-1 store to schema 2 with `key`: every record is tagged into the new
    /// tree beside the old one, with the case-folded name index, and one transaction on the
    /// meta keys (the schema version and the tagged operator values) switches over; the list
    /// facts, derived data, are written again in their new form on the way. Stopped at any
    /// point, the store's records are still the whole schema-1 store, migrated again (facts
    /// and all) at the next open.
    fn migrate(&self, key: &MacKey) -> Result<(), StoreError> {
        // First, so that the trees filled below are known for a migration's, not for those of
        // a store that was at schema 2 (see `refuse_downgrade`).
        let note = records::encode_migration_marker(key, SCHEMA_VERSION);
        self.db.insert(META_MIGRATING, note).map_err(io)?;
        self.flush()?;
        self.accounts.clear().map_err(io)?;
        self.folds.clear().map_err(io)?;
        let mut seen = std::collections::HashMap::new();
        let mut accounts = sled::Batch::default();
        let mut folds = sled::Batch::default();
        // Schema 2's list facts carry more than schema 1's (whether the codes were confirmed):
        // written again from each migrated record. They are derived data that only listing
        // reads, and nothing lists a store before its bind migrates it: a migration stopped
        // before the switch rewrites them again with the records.
        let mut facts = sled::Batch::default();
        let mut pending = 0;
        for entry in self.accounts_v1.iter() {
            let (name, bytes) = entry.map_err(io)?;
            let name = String::from_utf8_lossy(&name).into_owned();
            let account = records::decode_account_v1(&name, &bytes)?;
            crate::core::account::validate_name(&name).map_err(|e| invalid_old_name(&name, &e))?;
            let folded = folded_name(&name);
            if let Some(other) = seen.insert(folded.clone(), name.clone()) {
                return Err(case_collision(&other, &name));
            }
            accounts.insert(name.as_bytes(), records::encode_account(key, &account));
            folds.insert(folded.as_bytes(), name.as_bytes());
            facts.insert(name.as_bytes(), encode(&account.facts()));
            pending += 1;
            if pending == IMPORT_CHUNK {
                self.accounts
                    .apply_batch(std::mem::take(&mut accounts))
                    .map_err(io)?;
                self.folds
                    .apply_batch(std::mem::take(&mut folds))
                    .map_err(io)?;
                self.facts
                    .apply_batch(std::mem::take(&mut facts))
                    .map_err(io)?;
                pending = 0;
            }
        }
        self.accounts.apply_batch(accounts).map_err(io)?;
        self.folds.apply_batch(folds).map_err(io)?;
        self.facts.apply_batch(facts).map_err(io)?;
        self.flush()?;
        let operator = self.db.get(META_OPERATOR_V1).map_err(io)?;
        let operator = operator.map(|v| String::from_utf8_lossy(&v).into_owned());
        let operator = records::encode_operator_password(key, operator.as_deref());
        // Always written, zero if schema 1 had none: from now on a missing one is damage.
        let failures = match self.db.get(META_OPERATOR_FAILURES_V1).map_err(io)? {
            Some(v) => records::decode_operator_failures_v1(&v)?,
            None => FailureRecord::default(),
        };
        let failures = records::encode_operator_failures(key, &failures);
        let marker = records::encode_schema_marker(key, SCHEMA_VERSION);
        let result = self.db.transaction(|meta| {
            meta.insert(META_SCHEMA, &SCHEMA_VERSION.to_be_bytes())?;
            meta.insert(META_MARKER, marker.clone())?;
            meta.insert(META_OPERATOR, operator.clone())?;
            meta.insert(META_OPERATOR_FAILURES, failures.clone())?;
            meta.remove(META_OPERATOR_V1)?;
            meta.remove(META_OPERATOR_FAILURES_V1)?;
            meta.remove(META_MIGRATING)?;
            Ok(((), true))
        });
        self.finish(result)?;
        self.schema.store(SCHEMA_VERSION, Ordering::SeqCst);
        let _ = self.accounts_v1.clear();
        Ok(())
    }

    /// Makes every write so far durable. sled's own flush ends in `sync_file_range`, which
    /// survives a killed process but not a power cut: it flushes neither the drive's cache nor
    /// the file's metadata (sled grows the file a segment at a time). sled's background thread
    /// fsyncs every 500 ms and sled fsyncs when the database is closed, but "accepted" cannot
    /// wait for either, so every change that is reported done also gets an `fdatasync` here.
    fn flush(&self) -> Result<(), StoreError> {
        self.db.flush().map_err(write_failed)?;
        self.log_file
            .sync_data()
            .map_err(|e| StoreError::Unavailable(format!("cannot sync the store to disk: {e}")))
    }

    /// Makes everything written so far durable (for a restore, before the store is put in
    /// place).
    pub fn sync(&self) -> Result<(), StoreError> {
        self.flush()
    }

    /// Hands writes to the OS (they survive this process being killed) without waiting for the
    /// disk: for writes no decision waits on (a refusal's note, an event appended on its own),
    /// which reach the disk with the next [`SledStore::flush`], sled's periodic fsync (500 ms)
    /// or the close.
    fn flush_to_os(&self) -> Result<(), StoreError> {
        self.db.flush().map(|_| ()).map_err(write_failed)
    }

    /// Runs `f` as one transaction over every tree, with the audit numbering, then flushes as
    /// it asks and enforces the retention bound if the numbering says it is due.
    fn transact<T>(&self, f: impl Fn(&Tx<'_>) -> TxResult<(T, Flush)>) -> Result<T, StoreError> {
        // Checked when a record is touched: an event appended on its own needs no key.
        let key = self.writable();
        let first_id = self.first_audit_id()?;
        let trees = (
            &self.accounts,
            &self.facts,
            &self.folds,
            &self.audit,
            &*self.db,
            &self.refusals,
        );
        let result = trees.transaction(|(accounts, facts, folds, events, meta, refusals)| {
            let tx = Tx {
                key: key.as_ref().copied(),
                accounts,
                facts,
                folds,
                events,
                meta,
                refusals,
                first_id,
                prune_due: Cell::new(false),
            };
            let (outcome, flush) = f(&tx)?;
            Ok((outcome, flush, tx.prune_due.get()))
        });
        let (outcome, flush, prune_due) = match result {
            Ok(done) => done,
            Err(TransactionError::Abort(e)) => return Err(e),
            Err(TransactionError::Storage(e)) => return Err(write_failed(e)),
        };
        match flush {
            Flush::No => {}
            Flush::ToOs => self.flush_to_os()?,
            Flush::ToDisk => self.flush()?,
        }
        self.prune_if(prune_due);
        Ok(outcome)
    }

    /// Runs a record mutation atomically and durably, with the events that record the change
    /// in the same transaction (see [`AuditFor`]), so one flush makes both durable; `missing`
    /// when there is no such account.
    fn modify_audited<T: Clone>(
        &self,
        name: &str,
        missing: T,
        at: UnixTime,
        audit: AuditFor<'_, T>,
        f: impl Fn(&mut Account) -> Applied<T>,
    ) -> Result<T, StoreError> {
        self.transact(|tx| {
            let Some(mut account) = tx.load(name)? else {
                return Ok((missing.clone(), Flush::No));
            };
            let applied = f(&mut account);
            if !applied.changed {
                return Ok((applied.outcome, Flush::No));
            }
            tx.put(&account)?;
            tx.write_events(at, name, audit(&applied.outcome))?;
            Ok((applied.outcome, Flush::ToDisk))
        })
    }

    /// The kiosk operator's failure record changed by `f`, with its events.
    fn modify_operator<T>(
        &self,
        at: UnixTime,
        audit: AuditFor<'_, T>,
        f: impl Fn(&mut FailureRecord) -> Applied<T>,
    ) -> Result<T, StoreError> {
        self.transact(|tx| {
            let mut record = tx.operator_failures()?;
            let applied = f(&mut record);
            if !applied.changed {
                return Ok((applied.outcome, Flush::No));
            }
            tx.put_operator_failures(&record)?;
            tx.write_events(at, OPERATOR_AUDIT_NAME, audit(&applied.outcome))?;
            Ok((applied.outcome, Flush::ToDisk))
        })
    }

    /// The number after the newest audit event's, below which no new event may go: in a store
    /// that has no [`META_AUDIT_NEXT`] yet, or whose newest events an older sparekey keyed with
    /// sled's `generate_id`, it is where numbering goes on. Read before the transaction, which
    /// cannot ask for a tree's last key.
    fn first_audit_id(&self) -> Result<u64, StoreError> {
        let newest = self.audit.last().map_err(io)?.map(|(key, _)| key);
        let newest = read_u64(newest, "the key of the newest audit event")?;
        Ok(newest.map_or(0, |id| id + 1))
    }

    /// Enforces the audit log's retention bound when [`write_events`] says it is due. Best
    /// effort: pruning late loses nothing.
    fn prune_if(&self, due: bool) {
        if due {
            let _ = self.prune_audit(AUDIT_RETENTION);
        }
    }

    /// Turns a transaction's result into ours, flushing when something was written.
    fn finish<T>(
        &self,
        result: Result<(T, bool), TransactionError<StoreError>>,
    ) -> Result<T, StoreError> {
        match result {
            Ok((outcome, changed)) => {
                if changed {
                    self.flush()?;
                }
                Ok(outcome)
            }
            Err(TransactionError::Abort(e)) => Err(e),
            Err(TransactionError::Storage(e)) => Err(write_failed(e)),
        }
    }

    /// Records `key`'s fingerprint as this store's key if it has none yet, or compares it. A
    /// store of this schema bound now also gets, in the same transaction, its tagged schema
    /// marker, "no operator password" and zero operator failures, so from then on a missing
    /// one is damage (a schema-1 store gets them from its migration). Never binds afresh a
    /// store that was in use: one with accounts, audit events or tagged meta records but no
    /// fingerprint had it removed, and fresh records would hand the kiosk over.
    fn bind_fingerprint(&self, key: &StoreKey) -> Result<KeyBinding, StoreError> {
        let fingerprint = key.fingerprint().as_bytes();
        let current = self.schema() == SCHEMA_VERSION;
        if current && self.key_fingerprint()?.is_none() && self.holds_data() {
            return Err(missing_fingerprint());
        }
        let fresh = current.then(|| {
            let k = key.records();
            [
                (
                    META_MARKER,
                    records::encode_schema_marker(k, SCHEMA_VERSION),
                ),
                (META_OPERATOR, records::encode_operator_password(k, None)),
                (
                    META_OPERATOR_FAILURES,
                    records::encode_operator_failures(k, &FailureRecord::default()),
                ),
            ]
        });
        let result = self.db.transaction(|meta| match meta.get(META_KEY)? {
            Some(stored) => Ok((Some(stored), false)),
            None => {
                for (name, record) in fresh.iter().flatten() {
                    if meta.get(name)?.is_some() {
                        return Err(ConflictableTransactionError::Abort(missing_fingerprint()));
                    }
                    meta.insert(*name, record.clone())?;
                }
                meta.insert(META_KEY, fingerprint)?;
                Ok((None, true))
            }
        });
        match self.finish(result)? {
            None => Ok(KeyBinding::Bound),
            Some(stored) if stored.as_ref() == fingerprint => Ok(KeyBinding::Matches),
            Some(stored) => Ok(KeyBinding::Mismatch {
                stored: String::from_utf8_lossy(&stored).into_owned(),
            }),
        }
    }

    /// Whether any tree holds data (checked before a store is bound afresh).
    pub fn holds_data(&self) -> bool {
        [
            &self.accounts,
            &self.facts,
            &self.folds,
            &self.audit,
            &self.refusals,
        ]
        .iter()
        .any(|t| !t.is_empty())
    }

    /// A store bound at schema 2 has its tagged schema marker, and it says schema 2.
    fn check_marker(&self, key: &MacKey) -> Result<(), StoreError> {
        match self.db.get(META_MARKER).map_err(io)? {
            Some(bytes) => match records::decode_schema_marker(key, &bytes)? {
                SCHEMA_VERSION => Ok(()),
                other => Err(StoreError::Damaged(format!(
                    "the schema marker says version {other} but the store says {SCHEMA_VERSION}: restore from a backup"
                ))),
            },
            None => Err(missing_meta_record("schema marker")),
        }
    }

    /// Refuses to take a store that says schema 1 for one: if anything only schema 2 writes is
    /// there (the marker, a tagged operator record, schema-2 records or folds without a
    /// migration's note), its version was set back, and its untagged records may be forged.
    /// Without `key` (doctor with no key file) a migration's note is taken as it stands.
    fn refuse_downgrade(&self, key: Option<&MacKey>) -> Result<(), StoreError> {
        let mut tagged = false;
        for name in [META_MARKER, META_OPERATOR, META_OPERATOR_FAILURES] {
            tagged |= self.db.contains_key(name).map_err(io)?;
        }
        let note = self.db.get(META_MIGRATING).map_err(io)?;
        let migrating = note.is_some_and(|bytes| {
            key.is_none_or(|k| records::is_migration_marker(k, &bytes, SCHEMA_VERSION))
        });
        let filled = !self.accounts.is_empty() || !self.folds.is_empty();
        if tagged || (filled && !migrating) {
            return Err(downgraded(self.schema()));
        }
        Ok(())
    }

    /// Keeps at most `retention` audit events: noise first (see [`AuditKind::is_noise`]),
    /// oldest first, and only then the oldest security events, so a flood of refusals can never
    /// rotate a login, a failure or a lock out of the log.
    pub fn prune_audit(&self, retention: usize) -> Result<(), StoreError> {
        let len = self.audit.len();
        if len <= retention {
            return Ok(());
        }
        let mut excess = len - retention;
        let mut noise = Vec::new();
        for entry in self.audit.iter() {
            if noise.len() >= excess {
                break;
            }
            let (key, bytes) = entry.map_err(io)?;
            let event: Result<AuditEvent, _> = decode(&bytes, "an audit event");
            if event.is_ok_and(|e| e.kind.is_noise()) {
                noise.push(key);
            }
        }
        excess -= noise.len();
        for key in noise {
            self.audit.remove(key).map_err(write_failed)?;
        }
        for entry in self.audit.iter().keys().take(excess) {
            self.audit
                .remove(entry.map_err(io)?)
                .map_err(write_failed)?;
        }
        Ok(())
    }
}

impl Store for SledStore {
    fn bind_key(&self, key: &StoreKey) -> Result<KeyBinding, StoreError> {
        let binding = self.bind_fingerprint(key)?;
        if matches!(binding, KeyBinding::Mismatch { .. }) {
            return Ok(binding);
        }
        self.attach_key(key);
        let mac = self.mac()?;
        if self.schema() < SCHEMA_VERSION {
            self.refuse_downgrade(Some(mac))?;
            self.migrate(mac)?;
        } else if binding == KeyBinding::Matches {
            self.check_marker(mac)?;
        }
        Ok(binding)
    }

    fn insert_account(
        &self,
        account: &Account,
        audit: AuditFor<'_, bool>,
    ) -> Result<bool, StoreError> {
        let folded = folded_name(&account.name);
        if let Some(twin) = self.twin_of(&account.name, &folded)? {
            if self.folds.contains_key(folded.as_bytes()).map_err(io)? {
                return Ok(false);
            }
            return Err(StoreError::Damaged(format!(
                "the case-folded name index has no entry for account '{}' (removed below sparekey): restore from a backup",
                printable(&twin)
            )));
        }
        self.transact(|tx| {
            tx.key()?;
            let taken = tx.accounts.get(account.name.as_bytes())?.is_some()
                || tx.folds.get(folded.as_bytes())?.is_some();
            if taken {
                return Ok((false, Flush::No));
            }
            tx.put(account)?;
            tx.folds
                .insert(folded.as_bytes(), account.name.as_bytes())?;
            tx.write_events(account.created_at, &account.name, audit(&true))?;
            Ok((true, Flush::ToDisk))
        })
    }

    fn load_account(&self, name: &str) -> Result<Option<Account>, StoreError> {
        match self.record_tree().get(name.as_bytes()).map_err(io)? {
            Some(bytes) => Ok(Some(self.read_record(name, &bytes)?)),
            None => Ok(None),
        }
    }

    fn list_accounts(&self) -> Result<Vec<AccountFacts>, StoreError> {
        self.facts
            .iter()
            .values()
            .map(|bytes| decode(&bytes.map_err(io)?, "the list facts of an account"))
            .collect()
    }

    fn list_accounts_page(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AccountFacts>, StoreError> {
        let range = match after {
            // Names are compared as bytes, the order sled keeps them in.
            Some(after) => self.facts.range::<&[u8], _>((
                std::ops::Bound::Excluded(after.as_bytes()),
                std::ops::Bound::Unbounded,
            )),
            None => self.facts.iter(),
        };
        range
            .values()
            .take(limit)
            .map(|bytes| decode(&bytes.map_err(io)?, "the list facts of an account"))
            .collect()
    }

    fn delete_account(
        &self,
        name: &str,
        at: UnixTime,
        audit: AuditFor<'_, bool>,
    ) -> Result<bool, StoreError> {
        let folded = folded_name(name);
        self.transact(|tx| {
            tx.key()?;
            if tx.accounts.remove(name.as_bytes())?.is_none() {
                return Ok((false, Flush::No));
            }
            tx.facts.remove(name.as_bytes())?;
            tx.folds.remove(folded.as_bytes())?;
            tx.refusals.remove(name.as_bytes())?;
            tx.write_events(at, name, audit(&true))?;
            Ok((true, Flush::ToDisk))
        })
    }

    fn set_pending(
        &self,
        name: &str,
        pending: &PendingTotp,
        at: UnixTime,
        audit: AuditFor<'_, bool>,
    ) -> Result<bool, StoreError> {
        self.modify_audited(name, false, at, audit, |a| {
            mutation::set_pending(a, pending)
        })
    }

    fn activate_pending(
        &self,
        name: &str,
        pending_id: u64,
        totp: &ActiveTotp,
        codes: &CodeSet,
        at: UnixTime,
        audit: AuditFor<'_, Activation>,
    ) -> Result<Activation, StoreError> {
        self.modify_audited(name, Activation::NoAccount, at, audit, |a| {
            mutation::activate_pending(a, pending_id, totp, codes)
        })
    }

    fn reserve_attempt(
        &self,
        name: &str,
        policy: &ThrottlePolicy,
        at: UnixTime,
    ) -> Result<Reservation, StoreError> {
        self.transact(|tx| {
            let Some(mut account) = tx.load(name)? else {
                // A write and a sync as for a real account: on a store that cannot be written
                // an unknown name fails as a real one does, rather than spending a dummy hash
                // and answering "wrong name or password" (which told the two apart).
                const META_PROBE: &[u8] = b"write_probe";
                tx.meta.insert(META_PROBE, &[1u8])?;
                return Ok((Reservation::NoAccount, Flush::ToDisk));
            };
            let applied = mutation::reserve_attempt(&mut account, policy, at);
            match applied.outcome {
                Reservation::Refused(gate) => {
                    tx.note_refusal(name, account.failures, gate, at)?;
                    Ok((applied.outcome, Flush::ToOs))
                }
                _ => {
                    tx.put(&account)?;
                    // Durable before anything is verified: a power cut must not give the
                    // attempt back.
                    Ok((applied.outcome, Flush::ToDisk))
                }
            }
        })
    }

    fn release_attempt(
        &self,
        name: &str,
        previous: FailureRecord,
        reserved: FailureRecord,
    ) -> Result<bool, StoreError> {
        // Handed to the OS only: a release lost to a power cut leaves one attempt too many
        // counted, the safe side, and saves a second sync on every two-step login.
        self.transact(|tx| {
            let Some(mut account) = tx.load(name)? else {
                return Ok((false, Flush::No));
            };
            let applied = mutation::release_attempt(&mut account, previous, reserved);
            if !applied.changed {
                return Ok((applied.outcome, Flush::No));
            }
            tx.put(&account)?;
            Ok((applied.outcome, Flush::ToOs))
        })
    }

    fn note_refused_attempt(&self, name: &str, gate: Gate, at: UnixTime) -> Result<(), StoreError> {
        self.transact(|tx| {
            let Some(account) = tx.load(name)? else {
                return Ok(((), Flush::No));
            };
            tx.note_refusal(name, account.failures, gate, at)?;
            Ok(((), Flush::ToOs))
        })
    }

    fn consume_totp_step(
        &self,
        name: &str,
        step: u64,
        at: UnixTime,
        check: &SettleCheck,
        audit: AuditFor<'_, StepConsumption>,
    ) -> Result<StepConsumption, StoreError> {
        self.modify_audited(name, StepConsumption::NotEnrolled, at, audit, |a| {
            mutation::consume_totp_step(a, step, at, check)
        })
    }

    fn consume_backup_code(
        &self,
        name: &str,
        set_id: u64,
        slot: usize,
        at: UnixTime,
        check: &SettleCheck,
        audit: AuditFor<'_, CodeConsumption>,
    ) -> Result<CodeConsumption, StoreError> {
        self.modify_audited(name, CodeConsumption::NoAccount, at, audit, |a| {
            mutation::consume_backup_code(a, set_id, slot, at, check)
        })
    }

    fn record_password_login(
        &self,
        name: &str,
        at: UnixTime,
        check: &SettleCheck,
        audit: AuditFor<'_, Settlement>,
    ) -> Result<Settlement, StoreError> {
        self.modify_audited(name, Settlement::NoAccount, at, audit, |a| {
            mutation::record_password_login(a, at, check)
        })
    }

    fn record_failure(
        &self,
        name: &str,
        at: UnixTime,
        burn_ahead: Option<u64>,
        audit: AuditFor<'_, bool>,
    ) -> Result<bool, StoreError> {
        self.modify_audited(name, false, at, audit, |a| {
            mutation::record_failure(a, burn_ahead)
        })
    }

    fn clear_failures(
        &self,
        name: &str,
        at: UnixTime,
        audit: AuditFor<'_, bool>,
    ) -> Result<bool, StoreError> {
        self.modify_audited(name, false, at, audit, mutation::clear_failures)
    }

    fn replace_codes(
        &self,
        name: &str,
        codes: &CodeSet,
        at: UnixTime,
        audit: AuditFor<'_, bool>,
    ) -> Result<bool, StoreError> {
        self.modify_audited(name, false, at, audit, |a| {
            mutation::replace_codes(a, codes)
        })
    }

    fn confirm_codes(
        &self,
        name: &str,
        set_id: u64,
        at: UnixTime,
        audit: AuditFor<'_, CodesConfirmation>,
    ) -> Result<CodesConfirmation, StoreError> {
        self.modify_audited(name, CodesConfirmation::NoAccount, at, audit, |a| {
            mutation::confirm_codes(a, set_id, at)
        })
    }

    fn remove_two_factor(
        &self,
        name: &str,
        at: UnixTime,
        audit: AuditFor<'_, bool>,
    ) -> Result<bool, StoreError> {
        self.modify_audited(name, false, at, audit, mutation::remove_two_factor)
    }

    fn operator_password(&self) -> Result<Option<String>, StoreError> {
        if self.schema() < SCHEMA_VERSION {
            let v = self.db.get(META_OPERATOR_V1).map_err(io)?;
            return Ok(v.map(|v| String::from_utf8_lossy(&v).into_owned()));
        }
        match self.db.get(META_OPERATOR).map_err(io)? {
            Some(v) => records::decode_operator_password(self.mac()?, &v),
            // Never bound to a key: nothing was ever set.
            None if self.key_fingerprint()?.is_none() => Ok(None),
            None => Err(missing_operator_record()),
        }
    }

    fn set_operator_password(
        &self,
        phc: &str,
        at: UnixTime,
        audit: AuditFor<'_, bool>,
    ) -> Result<bool, StoreError> {
        self.transact(|tx| {
            let key = tx.key()?;
            match tx.meta.get(META_OPERATOR)? {
                // Checked, so damage is not read as "already set".
                Some(current) => match records::decode_operator_password(key, &current) {
                    Ok(None) => {}
                    Ok(Some(_)) => return Ok((false, Flush::No)),
                    Err(e) => return abort(e),
                },
                None => return abort(missing_operator_record()),
            }
            let record = records::encode_operator_password(key, Some(phc));
            tx.meta.insert(META_OPERATOR, record)?;
            tx.write_events(at, OPERATOR_AUDIT_NAME, audit(&true))?;
            Ok((true, Flush::ToDisk))
        })
    }

    fn operator_failures(&self) -> Result<FailureRecord, StoreError> {
        if self.schema() < SCHEMA_VERSION {
            return match self.db.get(META_OPERATOR_FAILURES_V1).map_err(io)? {
                Some(bytes) => records::decode_operator_failures_v1(&bytes),
                None => Ok(FailureRecord::default()),
            };
        }
        match self.db.get(META_OPERATOR_FAILURES).map_err(io)? {
            Some(bytes) => records::decode_operator_failures(self.mac()?, &bytes),
            // Never bound to a key: no attempt was ever made.
            None if self.key_fingerprint()?.is_none() => Ok(FailureRecord::default()),
            None => Err(missing_meta_record("operator's failure")),
        }
    }

    fn reserve_operator_attempt(
        &self,
        policy: &ThrottlePolicy,
        at: UnixTime,
    ) -> Result<Reservation, StoreError> {
        self.modify_operator(at, &|_| Vec::new(), |r| mutation::reserve(r, policy, at))
    }

    fn settle_operator_attempt(
        &self,
        at: UnixTime,
        check: &SettleCheck,
        audit: AuditFor<'_, Settlement>,
    ) -> Result<Settlement, StoreError> {
        self.modify_operator(at, audit, |r| mutation::settle(r, check))
    }

    fn record_operator_failure(
        &self,
        at: UnixTime,
        audit: AuditFor<'_, FailureRecord>,
    ) -> Result<FailureRecord, StoreError> {
        self.modify_operator(at, audit, |r| Applied {
            outcome: *r,
            changed: true,
        })
    }

    fn clear_operator_failures(
        &self,
        at: UnixTime,
        audit: AuditFor<'_, ()>,
    ) -> Result<(), StoreError> {
        self.modify_operator(at, audit, |r| {
            *r = FailureRecord::default();
            Applied {
                outcome: (),
                changed: true,
            }
        })
    }

    fn export_to(&self, sink: ImageSink<'_>) -> Result<(), StoreError> {
        let fingerprint = self.key_fingerprint()?;
        let operator = self.operator_password()?;
        sink(ImageItem::Header {
            key_fingerprint: fingerprint.as_deref(),
            operator_password: operator.as_deref(),
        })?;
        for entry in self.record_tree().iter() {
            let (name, bytes) = entry.map_err(io)?;
            sink(ImageItem::Account(
                &self.read_record(&String::from_utf8_lossy(&name), &bytes)?,
            ))?;
        }
        for value in self.audit.iter().values() {
            sink(ImageItem::Audit(&decode(
                &value.map_err(io)?,
                "an audit event",
            )?))?;
        }
        Ok(())
    }

    fn import_image(&self, image: &StoreImage) -> Result<(), StoreError> {
        let key = self.writable()?;
        let mut seen = std::collections::HashMap::new();
        for account in &image.accounts {
            if let Some(other) = seen.insert(folded_name(&account.name), &account.name) {
                return Err(case_collision(other, &account.name));
            }
        }
        if !self.accounts.is_empty() || !self.audit.is_empty() {
            return Err(StoreError::Conflict(format!(
                "the store at {} is not empty: restore only fills an empty store",
                self.path.display()
            )));
        }
        // In chunks, so a restore of 100,000 accounts does not hold them all in one transaction
        // (1.6 GiB measured); the marker, set first and cleared last, makes an interrupted
        // restore visible instead of leaving a store that looks whole but is not.
        self.db.insert(META_RESTORING, &[1u8]).map_err(io)?;
        self.flush()?;
        for chunk in image.accounts.chunks(IMPORT_CHUNK) {
            let mut accounts = sled::Batch::default();
            let mut facts = sled::Batch::default();
            let mut folds = sled::Batch::default();
            for account in chunk {
                let name = account.name.as_bytes();
                accounts.insert(name, records::encode_account(key, account));
                facts.insert(name, encode(&account.facts()));
                folds.insert(folded_name(&account.name).as_bytes(), name);
            }
            let trees = (&self.accounts, &self.facts, &self.folds);
            let result = trees.transaction(|(a, f, n)| {
                a.apply_batch(&accounts)?;
                f.apply_batch(&facts)?;
                n.apply_batch(&folds)?;
                Ok(((), true))
            });
            self.finish(result)?;
        }
        let mut next_id = 0u64;
        for chunk in image.audit.chunks(IMPORT_CHUNK) {
            let mut audit = sled::Batch::default();
            for event in chunk {
                audit.insert(&next_id.to_be_bytes(), encode(event));
                next_id += 1;
            }
            self.audit.apply_batch(audit).map_err(io)?;
        }
        self.db
            .insert(META_AUDIT_NEXT, &next_id.to_be_bytes())
            .map_err(io)?;
        if let Some(k) = &image.key_fingerprint {
            self.db.insert(META_KEY, k.as_bytes()).map_err(io)?;
        }
        let operator = records::encode_operator_password(key, image.operator_password.as_deref());
        self.db.insert(META_OPERATOR, operator).map_err(io)?;
        self.flush()?;
        self.db.remove(META_RESTORING).map_err(io)?;
        self.flush()
    }

    fn append_audit(&self, event: &AuditEvent) -> Result<(), StoreError> {
        self.transact(|tx| {
            tx.write_events(event.at, &event.account, vec![event.kind.clone()])?;
            Ok(((), Flush::ToOs))
        })
    }

    fn audit_events(
        &self,
        account: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        let mut events = Vec::new();
        for entry in self.audit.iter().rev() {
            if events.len() >= limit {
                break;
            }
            let (_, bytes) = entry.map_err(io)?;
            let event: AuditEvent = decode(&bytes, "an audit event")?;
            if account.is_none_or(|a| event.account == a) {
                events.push(event);
            }
        }
        events.reverse();
        Ok(events)
    }
}

/// Writes audit events in a transaction under the next numbers; returns the first number and
/// whether the retention bound is due (the numbering crossed a multiple of [`PRUNE_EVERY`]).
fn write_events(
    events: &TransactionalTree,
    meta: &TransactionalTree,
    first_id: u64,
    at: UnixTime,
    account: &str,
    kinds: Vec<AuditKind>,
) -> Result<(u64, bool), ConflictableTransactionError<StoreError>> {
    if kinds.is_empty() {
        return Ok((first_id, false));
    }
    let stored = read_u64(meta.get(META_AUDIT_NEXT)?, "the next audit id")
        .map_err(ConflictableTransactionError::Abort)?;
    // The larger of the two: an older sparekey run on this store since (a downgrade) wrote
    // events under sled's ids without moving the stored one.
    let start = stored.map_or(first_id, |next| next.max(first_id));
    let mut id = start;
    for kind in kinds {
        let event = AuditEvent {
            at,
            account: account.to_string(),
            kind,
        };
        events.insert(&id.to_be_bytes(), encode(&event))?;
        id += 1;
    }
    meta.insert(META_AUDIT_NEXT, &id.to_be_bytes())?;
    Ok((start, start / PRUNE_EVERY != id / PRUNE_EVERY))
}

/// A big-endian u64 stored by sparekey; anything else is damage, never read as zero (a
/// numbering restarted at zero would overwrite the oldest events).
fn read_u64(bytes: Option<sled::IVec>, what: &str) -> Result<Option<u64>, StoreError> {
    bytes
        .map(|b| {
            <[u8; 8]>::try_from(b.as_ref())
                .map(u64::from_be_bytes)
                .map_err(|_| StoreError::Damaged(format!("{what} is not an 8-byte number")))
        })
        .transpose()
}

fn missing_operator_record() -> StoreError {
    missing_meta_record("operator password")
}

/// A tagged meta record that binding wrote is gone: removed below sparekey.
fn missing_meta_record(what: &str) -> StoreError {
    StoreError::Damaged(format!(
        "the {what} record is missing (removed below sparekey): restore from a backup"
    ))
}

/// A store that was at schema 2 whose untagged version says otherwise.
fn downgraded(found: u32) -> StoreError {
    StoreError::Damaged(format!(
        "the store says schema {found} but was already at schema {SCHEMA_VERSION} (its tagged records are there): its untagged records are not trusted; restore from a backup"
    ))
}

/// A store in use whose key fingerprint is gone: binding it afresh would write new "unset"
/// operator records over the removed ones.
fn missing_fingerprint() -> StoreError {
    StoreError::Damaged(
        "the store holds data but its key fingerprint is missing (removed below sparekey): restore from a backup".into(),
    )
}

/// A schema-1 name that schema 2's rules refuse: migrating it would make a name creation
/// never could (an escape, a bidi control).
fn invalid_old_name(name: &str, why: &str) -> StoreError {
    StoreError::Conflict(format!(
        "the schema-1 account '{}' cannot be migrated: {why}; remove or rename it with the sparekey that made this store, then open it again",
        printable(name)
    ))
}

/// Two names that schema 2 counts as one account.
fn case_collision(first: &str, second: &str) -> StoreError {
    StoreError::Conflict(format!(
        "the accounts '{}' and '{}' differ only by case, and account names must be unique regardless of case: remove or rename one with the sparekey that made this store, then open it again",
        printable(first),
        printable(second)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(at: UnixTime, kind: AuditKind) -> AuditEvent {
        AuditEvent {
            at,
            account: "amy".into(),
            kind,
        }
    }

    #[test]
    fn retention_drops_noise_before_any_security_event() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(&dir.path().join("store"), Duration::ZERO).unwrap();
        let security = |i: i64| {
            event(
                i,
                AuditKind::FailedAttempt {
                    reason: crate::core::audit::FailureReason::WrongPassword,
                    consecutive: i as u32,
                },
            )
        };
        let noise = |i: i64| {
            event(
                i,
                AuditKind::AttemptsRefused {
                    count: 1,
                    locked: false,
                },
            )
        };
        // Oldest first: 10 security events, then 20 refusals, then one more login.
        for i in 0..10 {
            store.append_audit(&security(i)).unwrap();
        }
        for i in 10..30 {
            store.append_audit(&noise(i)).unwrap();
        }
        store
            .append_audit(&event(
                30,
                AuditKind::LoginSucceeded {
                    method: crate::core::audit::LoginMethod::Password,
                },
            ))
            .unwrap();
        store.prune_audit(13).unwrap();
        let kept = store.audit_events(None, 100).unwrap();
        let times: Vec<UnixTime> = kept.iter().map(|e| e.at).collect();
        let mut expected: Vec<UnixTime> = (0..10).collect();
        expected.extend([28, 29, 30]);
        assert_eq!(times, expected, "the oldest refusals went first");
        // Past the noise, the oldest security events go.
        store.prune_audit(4).unwrap();
        let times: Vec<UnixTime> = store
            .audit_events(None, 100)
            .unwrap()
            .iter()
            .map(|e| e.at)
            .collect();
        assert_eq!(times, [7, 8, 9, 30]);
    }
}
