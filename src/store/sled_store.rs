//! The sled backend: one tree of accounts (name -> postcard record), one of their list facts
//! (name -> [`AccountFacts`], so listing never decodes full records), one of audit events
//! (sequence number -> event), one of refusal notes (name -> the event that counts refused
//! attempts in the account's current delay window), and meta keys (schema version, key
//! fingerprint, operator password and failures) in the default tree. Every mutation is one sled
//! transaction over what it changes and the audit events that record it (and the next event's
//! number), and is flushed before it returns; a write that fails makes the store
//! [`StoreError::Unavailable`]. Must never block forever on a store held by another process, and
//! never rewrite a store written by a newer schema.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use std::cell::Cell;

use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};

use crate::core::account::{Account, AccountFacts, ActiveTotp, PendingTotp};
use crate::core::audit::{AuditEvent, AuditKind};
use crate::core::clock::UnixTime;
use crate::core::code_set::CodeSet;
use crate::core::kiosk::OPERATOR_AUDIT_NAME;
use crate::core::store::{
    Activation, AuditFor, CodeConsumption, KeyBinding, Reservation, SettleCheck, Settlement,
    StepConsumption, Store, StoreError, StoreImage,
};
use crate::core::throttle::{FailureRecord, Gate, ThrottlePolicy};
use crate::store::lock::{self, StoreLock};
use crate::store::mutation::{self, Applied, RefusalNote};
use crate::store::{SCHEMA_VERSION, decode, encode};

const META_SCHEMA: &[u8] = b"schema_version";
const META_KEY: &[u8] = b"key_fingerprint";
const META_OPERATOR: &[u8] = b"operator_password";
const META_OPERATOR_FAILURES: &[u8] = b"operator_failures";
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
    facts: sled::Tree,
    audit: sled::Tree,
    refusals: sled::Tree,
    path: PathBuf,
    /// Declared last so that it is released only after sled has closed the store.
    _lock: StoreLock,
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

/// The trees of one transaction, with the audit numbering it continues.
struct Tx<'a> {
    accounts: &'a TransactionalTree,
    facts: &'a TransactionalTree,
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

impl Tx<'_> {
    fn load(&self, name: &str) -> TxResult<Option<Account>> {
        match self.accounts.get(name.as_bytes())? {
            Some(bytes) => match decode(&bytes, &format!("the record of account '{name}'")) {
                Ok(account) => Ok(Some(account)),
                Err(e) => abort(e),
            },
            None => Ok(None),
        }
    }

    fn put(&self, account: &Account) -> TxResult<()> {
        let name = account.name.as_bytes();
        self.accounts.insert(name, encode(account))?;
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

    fn operator_failures(&self) -> TxResult<FailureRecord> {
        match self.meta.get(META_OPERATOR_FAILURES)? {
            Some(bytes) => match decode(&bytes, "the operator's failure record") {
                Ok(record) => Ok(record),
                Err(e) => abort(e),
            },
            None => Ok(FailureRecord::default()),
        }
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
        let lock = loop {
            match lock::try_lock(path) {
                Err(StoreError::Busy { .. }) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                other => break other?,
            }
        };
        // Holding the lock file, no other sparekey has the store. sled's own lock on its log
        // can still be held for a moment: a store of this process that was just dropped lets
        // go of it only when sled's last background task does. Wait for that, within `wait`.
        wait_for_sled_lock(&path.join("db"), deadline);
        let db = Self::try_open(path)?;
        let accounts = db.open_tree("accounts").map_err(io)?;
        let facts = db.open_tree("account_facts").map_err(io)?;
        let audit = db.open_tree("audit").map_err(io)?;
        let refusals = db.open_tree("refusals").map_err(io)?;
        let log_file = std::fs::File::open(path.join("db")).map_err(|e| {
            StoreError::Io(format!("cannot open {}: {e}", path.join("db").display()))
        })?;
        let store = Self {
            db,
            log_file,
            accounts,
            facts,
            audit,
            refusals,
            path: path.to_path_buf(),
            _lock: lock,
        };
        store.check_schema()?;
        Ok(store)
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
                if found < SCHEMA_VERSION {
                    return Err(StoreError::Damaged(format!(
                        "schema version {found} is not one this sparekey can read or migrate"
                    )));
                }
                Ok(())
            }
            None if self.accounts.is_empty() && self.audit.is_empty() => {
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
        let first_id = self.first_audit_id()?;
        let trees = (
            &self.accounts,
            &self.facts,
            &self.audit,
            &*self.db,
            &self.refusals,
        );
        let result = trees.transaction(|(accounts, facts, events, meta, refusals)| {
            let tx = Tx {
                accounts,
                facts,
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
            tx.meta.insert(META_OPERATOR_FAILURES, encode(&record))?;
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
    fn bind_key(&self, fingerprint: &str) -> Result<KeyBinding, StoreError> {
        let previous = self
            .db
            .compare_and_swap(
                META_KEY,
                None as Option<&[u8]>,
                Some(fingerprint.as_bytes()),
            )
            .map_err(io)?;
        match previous {
            Ok(()) => {
                self.flush()?;
                Ok(KeyBinding::Bound)
            }
            Err(cas) => {
                let stored = cas
                    .current
                    .map(|v| String::from_utf8_lossy(&v).into_owned())
                    .unwrap_or_default();
                if stored == fingerprint {
                    Ok(KeyBinding::Matches)
                } else {
                    Ok(KeyBinding::Mismatch { stored })
                }
            }
        }
    }

    fn insert_account(
        &self,
        account: &Account,
        audit: AuditFor<'_, bool>,
    ) -> Result<bool, StoreError> {
        self.transact(|tx| {
            if tx.accounts.get(account.name.as_bytes())?.is_some() {
                return Ok((false, Flush::No));
            }
            tx.put(account)?;
            tx.write_events(account.created_at, &account.name, audit(&true))?;
            Ok((true, Flush::ToDisk))
        })
    }

    fn load_account(&self, name: &str) -> Result<Option<Account>, StoreError> {
        match self.accounts.get(name.as_bytes()).map_err(io)? {
            Some(bytes) => Ok(Some(decode(
                &bytes,
                &format!("the record of account '{name}'"),
            )?)),
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
        self.transact(|tx| {
            if tx.accounts.remove(name.as_bytes())?.is_none() {
                return Ok((false, Flush::No));
            }
            tx.facts.remove(name.as_bytes())?;
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
                return Ok((Reservation::NoAccount, Flush::No));
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

    fn remove_two_factor(
        &self,
        name: &str,
        at: UnixTime,
        audit: AuditFor<'_, bool>,
    ) -> Result<bool, StoreError> {
        self.modify_audited(name, false, at, audit, mutation::remove_two_factor)
    }

    fn operator_password(&self) -> Result<Option<String>, StoreError> {
        Ok(self
            .db
            .get(META_OPERATOR)
            .map_err(io)?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    fn set_operator_password(
        &self,
        phc: &str,
        at: UnixTime,
        audit: AuditFor<'_, bool>,
    ) -> Result<bool, StoreError> {
        self.transact(|tx| {
            if tx.meta.get(META_OPERATOR)?.is_some() {
                return Ok((false, Flush::No));
            }
            tx.meta.insert(META_OPERATOR, phc.as_bytes())?;
            tx.write_events(at, OPERATOR_AUDIT_NAME, audit(&true))?;
            Ok((true, Flush::ToDisk))
        })
    }

    fn operator_failures(&self) -> Result<FailureRecord, StoreError> {
        match self.db.get(META_OPERATOR_FAILURES).map_err(io)? {
            Some(bytes) => decode(&bytes, "the operator's failure record"),
            None => Ok(FailureRecord::default()),
        }
    }

    fn reserve_operator_attempt(
        &self,
        policy: &ThrottlePolicy,
        at: UnixTime,
    ) -> Result<Reservation, StoreError> {
        self.modify_operator(at, &|_| Vec::new(), |r| mutation::reserve(r, policy, at))
    }

    fn settle_operator_attempt(&self, check: &SettleCheck) -> Result<Settlement, StoreError> {
        self.modify_operator(UnixTime::default(), &|_| Vec::new(), |r| {
            mutation::settle(r, check)
        })
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

    fn export_image(&self) -> Result<StoreImage, StoreError> {
        let meta = |key: &[u8]| -> Result<Option<String>, StoreError> {
            Ok(self
                .db
                .get(key)
                .map_err(io)?
                .map(|v| String::from_utf8_lossy(&v).into_owned()))
        };
        let accounts = self
            .accounts
            .iter()
            .values()
            .map(|v| decode(&v.map_err(io)?, "an account record"))
            .collect::<Result<Vec<Account>, _>>()?;
        let audit = self
            .audit
            .iter()
            .values()
            .map(|v| decode(&v.map_err(io)?, "an audit event"))
            .collect::<Result<Vec<AuditEvent>, _>>()?;
        Ok(StoreImage {
            key_fingerprint: meta(META_KEY)?,
            operator_password: meta(META_OPERATOR)?,
            accounts,
            audit,
        })
    }

    fn import_image(&self, image: &StoreImage) -> Result<(), StoreError> {
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
            for account in chunk {
                accounts.insert(account.name.as_bytes(), encode(account));
                facts.insert(account.name.as_bytes(), encode(&account.facts()));
            }
            let result = (&self.accounts, &self.facts).transaction(|(a, f)| {
                a.apply_batch(&accounts)?;
                f.apply_batch(&facts)?;
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
        if let Some(o) = &image.operator_password {
            self.db.insert(META_OPERATOR, o.as_bytes()).map_err(io)?;
        }
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
