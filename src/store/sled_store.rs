//! The sled backend: one tree of accounts (name -> postcard record), one of their list facts
//! (name -> [`AccountFacts`], so listing never decodes full records), one of audit events
//! (sequence number -> event), and meta keys (schema version, key fingerprint) in the default
//! tree. Every mutation is one sled transaction over the record and its facts (and, for a login
//! or a failed attempt, the audit events that record it and the next event's number), and is
//! flushed before it returns. Must never block forever on a store held by another process, and
//! never rewrite a store written by a newer schema.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};

use crate::core::account::{Account, AccountFacts, ActiveTotp, PendingTotp};
use crate::core::audit::{AuditEvent, AuditKind};
use crate::core::clock::UnixTime;
use crate::core::code_set::CodeSet;
use crate::core::store::{
    Activation, AuditFor, CodeConsumption, KeyBinding, StepConsumption, Store, StoreError,
    StoreImage,
};
use crate::core::throttle::FailureRecord;
use crate::store::lock::{self, StoreLock};
use crate::store::mutation::{self, Applied};
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
        let log_file = std::fs::File::open(path.join("db")).map_err(|e| {
            StoreError::Io(format!("cannot open {}: {e}", path.join("db").display()))
        })?;
        let store = Self {
            db,
            log_file,
            accounts,
            facts,
            audit,
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
        self.db.flush().map_err(io)?;
        self.log_file
            .sync_data()
            .map_err(|e| StoreError::Io(format!("cannot sync the store to disk: {e}")))
    }

    /// Hands writes to the OS (they survive this process being killed) without waiting for the
    /// disk: for audit events appended on their own ([`Store::append_audit`]), which are best
    /// effort after the change they record and reach the disk with the next
    /// [`SledStore::flush`], sled's periodic fsync (500 ms) or the close.
    fn flush_to_os(&self) -> Result<(), StoreError> {
        self.db.flush().map(|_| ()).map_err(io)
    }

    /// Runs a record mutation atomically and durably; `missing` when there is no such account.
    fn modify<T: Clone>(
        &self,
        name: &str,
        missing: T,
        f: impl Fn(&mut Account) -> Applied<T>,
    ) -> Result<T, StoreError> {
        let result = (&self.accounts, &self.facts).transaction(|(accounts, facts)| {
            let applied = apply(accounts, facts, name, &missing, &f)?;
            Ok((applied.outcome, applied.changed))
        });
        self.finish(result)
    }

    /// [`SledStore::modify`] with the events that record the change in the same transaction
    /// (see [`AuditFor`]), so one flush makes both durable.
    fn modify_audited<T: Clone>(
        &self,
        name: &str,
        missing: T,
        at: UnixTime,
        audit: AuditFor<'_, T>,
        f: impl Fn(&mut Account) -> Applied<T>,
    ) -> Result<T, StoreError> {
        let first_id = self.first_audit_id()?;
        let trees = (&self.accounts, &self.facts, &self.audit, &*self.db);
        let result = trees.transaction(|(accounts, facts, events, meta)| {
            let applied = apply(accounts, facts, name, &missing, &f)?;
            if !applied.changed {
                return Ok(((applied.outcome, false), false));
            }
            let kinds = audit(&applied.outcome);
            let prune_due = write_events(events, meta, first_id, at, name, kinds)?;
            Ok(((applied.outcome, true), prune_due))
        });
        let (result, prune_due) = match result {
            Ok((done, prune_due)) => (Ok(done), prune_due),
            Err(e) => (Err(e), false),
        };
        let outcome = self.finish(result)?;
        self.prune_if(prune_due);
        Ok(outcome)
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
            Err(TransactionError::Storage(e)) => Err(io(e)),
        }
    }

    /// Keeps at most `retention` audit events, dropping the oldest.
    pub fn prune_audit(&self, retention: usize) -> Result<(), StoreError> {
        let len = self.audit.len();
        if len <= retention {
            return Ok(());
        }
        for entry in self.audit.iter().keys().take(len - retention) {
            self.audit.remove(entry.map_err(io)?).map_err(io)?;
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

    fn insert_account(&self, account: &Account) -> Result<bool, StoreError> {
        let name = account.name.as_bytes();
        let (record, facts) = (encode(account), encode(&account.facts()));
        let result = (&self.accounts, &self.facts).transaction(|(accounts, fact_tree)| {
            if accounts.get(name)?.is_some() {
                return Ok((false, false));
            }
            accounts.insert(name, record.clone())?;
            fact_tree.insert(name, facts.clone())?;
            Ok((true, true))
        });
        self.finish(result)
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

    fn delete_account(&self, name: &str) -> Result<bool, StoreError> {
        let result = (&self.accounts, &self.facts).transaction(|(accounts, facts)| {
            let removed = accounts.remove(name.as_bytes())?.is_some();
            facts.remove(name.as_bytes())?;
            Ok((removed, removed))
        });
        self.finish(result)
    }

    fn set_pending(&self, name: &str, pending: &PendingTotp) -> Result<bool, StoreError> {
        self.modify(name, false, |a| mutation::set_pending(a, pending))
    }

    fn activate_pending(
        &self,
        name: &str,
        pending_id: u64,
        totp: &ActiveTotp,
        codes: &CodeSet,
    ) -> Result<Activation, StoreError> {
        self.modify(name, Activation::NoAccount, |a| {
            mutation::activate_pending(a, pending_id, totp, codes)
        })
    }

    fn consume_totp_step(
        &self,
        name: &str,
        step: u64,
        at: UnixTime,
        audit: AuditFor<'_, StepConsumption>,
    ) -> Result<StepConsumption, StoreError> {
        self.modify_audited(name, StepConsumption::NotEnrolled, at, audit, |a| {
            mutation::consume_totp_step(a, step, at)
        })
    }

    fn spend_totp_step(&self, name: &str, step: u64) -> Result<bool, StoreError> {
        self.modify(name, false, |a| mutation::spend_totp_step(a, step))
    }

    fn consume_backup_code(
        &self,
        name: &str,
        set_id: u64,
        slot: usize,
        at: UnixTime,
        audit: AuditFor<'_, CodeConsumption>,
    ) -> Result<CodeConsumption, StoreError> {
        self.modify_audited(name, CodeConsumption::NoAccount, at, audit, |a| {
            mutation::consume_backup_code(a, set_id, slot, at)
        })
    }

    fn record_password_login(
        &self,
        name: &str,
        at: UnixTime,
        audit: AuditFor<'_, bool>,
    ) -> Result<bool, StoreError> {
        self.modify_audited(name, false, at, audit, |a| {
            mutation::record_password_login(a, at)
        })
    }

    fn record_failure(
        &self,
        name: &str,
        at: UnixTime,
        audit: AuditFor<'_, Option<FailureRecord>>,
    ) -> Result<Option<FailureRecord>, StoreError> {
        self.modify_audited(name, None, at, audit, |a| mutation::record_failure(a, at))
    }

    fn clear_failures(&self, name: &str) -> Result<bool, StoreError> {
        self.modify(name, false, mutation::clear_failures)
    }

    fn replace_codes(&self, name: &str, codes: &CodeSet) -> Result<bool, StoreError> {
        self.modify(name, false, |a| mutation::replace_codes(a, codes))
    }

    fn remove_two_factor(&self, name: &str) -> Result<bool, StoreError> {
        self.modify(name, false, mutation::remove_two_factor)
    }

    fn operator_password(&self) -> Result<Option<String>, StoreError> {
        Ok(self
            .db
            .get(META_OPERATOR)
            .map_err(io)?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    fn set_operator_password(&self, phc: &str) -> Result<bool, StoreError> {
        let set = self
            .db
            .compare_and_swap(META_OPERATOR, None as Option<&[u8]>, Some(phc.as_bytes()))
            .map_err(io)?
            .is_ok();
        if set {
            self.flush()?;
        }
        Ok(set)
    }

    fn operator_failures(&self) -> Result<FailureRecord, StoreError> {
        match self.db.get(META_OPERATOR_FAILURES).map_err(io)? {
            Some(bytes) => decode(&bytes, "the operator's failure record"),
            None => Ok(FailureRecord::default()),
        }
    }

    fn record_operator_failure(&self, at: UnixTime) -> Result<FailureRecord, StoreError> {
        let updated = self
            .db
            .update_and_fetch(META_OPERATOR_FAILURES, |old| {
                let mut record: FailureRecord = old
                    .and_then(|b| postcard::from_bytes(b).ok())
                    .unwrap_or_default();
                record.consecutive = record.consecutive.saturating_add(1);
                record.last_failure_at = Some(at);
                Some(encode(&record))
            })
            .map_err(io)?;
        self.flush()?;
        decode(
            &updated.unwrap_or_default(),
            "the operator's failure record",
        )
    }

    fn clear_operator_failures(&self) -> Result<(), StoreError> {
        self.db.remove(META_OPERATOR_FAILURES).map_err(io)?;
        self.flush()
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
        let first_id = self.first_audit_id()?;
        let result = (&self.audit, &*self.db).transaction(|(events, meta)| {
            write_events(
                events,
                meta,
                first_id,
                event.at,
                &event.account,
                vec![event.kind.clone()],
            )
        });
        let prune_due = match result {
            Ok(prune_due) => prune_due,
            Err(TransactionError::Abort(e)) => return Err(e),
            Err(TransactionError::Storage(e)) => return Err(io(e)),
        };
        self.prune_if(prune_due);
        self.flush_to_os()
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

/// Writes audit events in a transaction under the next numbers; returns whether the
/// retention bound is due (the numbering crossed a multiple of [`PRUNE_EVERY`]).
fn write_events(
    events: &TransactionalTree,
    meta: &TransactionalTree,
    first_id: u64,
    at: UnixTime,
    account: &str,
    kinds: Vec<AuditKind>,
) -> Result<bool, ConflictableTransactionError<StoreError>> {
    if kinds.is_empty() {
        return Ok(false);
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
    Ok(start / PRUNE_EVERY != id / PRUNE_EVERY)
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

/// A record mutation inside a transaction: decode, apply, write back the record and its facts
/// when it changed; `missing` when there is no such account.
fn apply<T: Clone>(
    accounts: &TransactionalTree,
    facts: &TransactionalTree,
    name: &str,
    missing: &T,
    f: &impl Fn(&mut Account) -> Applied<T>,
) -> Result<Applied<T>, ConflictableTransactionError<StoreError>> {
    let Some(bytes) = accounts.get(name.as_bytes())? else {
        return Ok(Applied {
            outcome: missing.clone(),
            changed: false,
        });
    };
    let mut account: Account = decode(&bytes, &format!("the record of account '{name}'"))
        .map_err(ConflictableTransactionError::Abort)?;
    let applied = f(&mut account);
    if applied.changed {
        accounts.insert(name.as_bytes(), encode(&account))?;
        facts.insert(name.as_bytes(), encode(&account.facts()))?;
    }
    Ok(applied)
}
