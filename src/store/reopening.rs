//! A sled store that a long-running process (the console, a kiosk) holds only while it uses it:
//! [`ReopeningStore`] wraps an `Option<SledStore>` behind a mutex, opens it on the first call
//! that needs it, and closes it once no call has come for an idle period, so a CLI command run
//! beside an open console finds the store free. Every [`Store`] method runs whole on one open
//! [`SledStore`], which keeps the trait's atomicity and durability (it flushes before it
//! returns, so closing adds nothing a caller waits for).
//!
//! A reopen waits for another process's hold at most as long as [`SledStore::open`] is told to,
//! then reports [`StoreError::Busy`] with that process's id. It refuses a store that vanished
//! (it would create an empty one under the console's feet) or that another key now owns.
//!
//! Must never run a method on a store it has not just checked is the one it opened first, and
//! never block a caller forever: the closer thread takes the mutex only to drop an idle store.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::core::account::{Account, AccountFacts, ActiveTotp, PendingTotp};
use crate::core::audit::AuditEvent;
use crate::core::clock::UnixTime;
use crate::core::code_set::CodeSet;
use crate::core::keys::StoreKey;
use crate::core::store::{
    Activation, AuditFor, CodeConsumption, CodesConfirmation, ImageSink, KeyBinding, Reservation,
    SettleCheck, Settlement, StepConsumption, Store, StoreError, StoreImage,
};
use crate::core::throttle::{FailureRecord, Gate, ThrottlePolicy};
use crate::store::sled_store::SledStore;

/// A sled store opened on demand and closed when idle (see the module doc).
#[derive(Debug)]
pub struct ReopeningStore {
    shared: Arc<Shared>,
    closer: Option<JoinHandle<()>>,
}

#[derive(Debug)]
struct Shared {
    path: PathBuf,
    /// How long a reopen waits for another process's hold.
    wait: Duration,
    /// How long the store stays open after its last call.
    idle: Duration,
    state: Mutex<State>,
    /// Wakes the closer: a store was opened, or the handle is dropped.
    wake: Condvar,
}

#[derive(Debug)]
struct State {
    store: Option<SledStore>,
    last_use: Instant,
    /// The key fingerprint bound or matched through this handle: every reopen checks it.
    key: Option<StoreKey>,
    /// Set when the handle is dropped: the closer closes the store and ends.
    ending: bool,
}

impl ReopeningStore {
    /// Opens the store at `path` now (so that a store that cannot be opened is reported at
    /// once) and keeps it open until no call came for `idle`. Each later reopen waits up to
    /// `wait` for another process's hold (as [`SledStore::open`] does).
    pub fn open(path: &Path, wait: Duration, idle: Duration) -> Result<Self, StoreError> {
        let store = SledStore::open(path, wait)?;
        let shared = Arc::new(Shared {
            path: path.to_path_buf(),
            wait,
            idle,
            state: Mutex::new(State {
                store: Some(store),
                last_use: Instant::now(),
                key: None,
                ending: false,
            }),
            wake: Condvar::new(),
        });
        let closer = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("sparekey-store-closer".into())
                .spawn(move || shared.close_when_idle())
                .map_err(|e| StoreError::Io(format!("cannot start the store's closer: {e}")))?
        };
        Ok(Self {
            shared,
            closer: Some(closer),
        })
    }

    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// Whether the store is open in this process right now (for tests and diagnostics).
    pub fn is_open(&self) -> bool {
        self.shared.lock().store.is_some()
    }

    /// Closes the store now if it is open (the next call reopens it): what the idle timer does,
    /// for a caller that knows it is done, and for tests and benches that must not wait.
    pub fn release(&self) {
        self.shared.lock().store = None;
    }

    /// A handle that can [`release`](Self::release) this store after it has been handed to a
    /// service (which owns its store); it does nothing once the store is gone.
    pub fn releaser(&self) -> Releaser {
        Releaser {
            shared: Arc::downgrade(&self.shared),
        }
    }

    /// Runs `f` on the open store, reopening it first if it was closed.
    fn with<T>(
        &self,
        f: impl FnOnce(&SledStore) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut state = self.shared.lock();
        let store = match state.store.take() {
            Some(store) => store,
            None => {
                let store = self.shared.reopen(state.key.as_ref())?;
                // The closer sleeps while nothing is open: it starts counting from now.
                self.shared.wake.notify_all();
                store
            }
        };
        let result = f(&store);
        state.store = Some(store);
        state.last_use = Instant::now();
        result
    }
}

/// See [`ReopeningStore::releaser`].
#[derive(Debug, Clone)]
pub struct Releaser {
    shared: std::sync::Weak<Shared>,
}

impl Releaser {
    /// Closes the store now if it is open.
    pub fn release(&self) {
        if let Some(shared) = self.shared.upgrade() {
            shared.lock().store = None;
        }
    }

    /// Whether the store is open in this process right now.
    pub fn is_open(&self) -> bool {
        self.shared
            .upgrade()
            .is_some_and(|shared| shared.lock().store.is_some())
    }
}

impl Shared {
    /// The state, even if a caller panicked while holding it: the store underneath is still
    /// consistent (every write is one sled transaction).
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn reopen(&self, key: Option<&StoreKey>) -> Result<SledStore, StoreError> {
        // sled would create an empty store in its place, and the console would carry on
        // writing into it as if nothing had happened.
        if !self.path.join("db").exists() {
            return Err(StoreError::Io(format!(
                "the store at {} is gone: it was moved or removed while the console was open",
                self.path.display()
            )));
        }
        let store = SledStore::open(&self.path, self.wait)?;
        if let Some(key) = key
            && let KeyBinding::Mismatch { .. } = store.bind_key(key)?
        {
            return Err(StoreError::Conflict(format!(
                "the store at {} was replaced by one made with another key while the console was open: restart the console",
                self.path.display()
            )));
        }
        Ok(store)
    }

    /// The closer thread: drops the store once it has been idle for `idle`, and at the end.
    fn close_when_idle(&self) {
        let mut state = self.lock();
        loop {
            if state.ending {
                state.store = None;
                return;
            }
            if state.store.is_none() {
                state = self.wake.wait(state).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            let idle_for = state.last_use.elapsed();
            if idle_for >= self.idle {
                // Dropping closes sled and then releases the lock file (see `SledStore`).
                state.store = None;
            } else {
                state = self
                    .wake
                    .wait_timeout(state, self.idle - idle_for)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
        }
    }
}

impl Drop for ReopeningStore {
    /// Closes the store before returning, so a process that exits right after leaves nothing
    /// half closed.
    fn drop(&mut self) {
        self.shared.lock().ending = true;
        self.shared.wake.notify_all();
        if let Some(closer) = self.closer.take() {
            let _ = closer.join();
        }
    }
}

impl Store for ReopeningStore {
    fn bind_key(&self, key: &StoreKey) -> Result<KeyBinding, StoreError> {
        let binding = self.with(|s| s.bind_key(key))?;
        if matches!(binding, KeyBinding::Matches | KeyBinding::Bound) {
            // Kept to check, and hand the record key to, every reopened store: a handle to the
            // key's one allocation, not a copy of it.
            self.shared.lock().key = Some(key.share());
        }
        Ok(binding)
    }

    fn insert_account(
        &self,
        account: &Account,
        audit: AuditFor<'_, bool>,
    ) -> Result<bool, StoreError> {
        self.with(|s| s.insert_account(account, audit))
    }

    fn load_account(&self, name: &str) -> Result<Option<Account>, StoreError> {
        self.with(|s| s.load_account(name))
    }

    fn list_accounts(&self) -> Result<Vec<AccountFacts>, StoreError> {
        self.with(|s| s.list_accounts())
    }

    fn list_accounts_page(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AccountFacts>, StoreError> {
        self.with(|s| s.list_accounts_page(after, limit))
    }

    fn delete_account(
        &self,
        name: &str,
        at: UnixTime,
        audit: AuditFor<'_, bool>,
    ) -> Result<bool, StoreError> {
        self.with(|s| s.delete_account(name, at, audit))
    }

    fn set_pending(
        &self,
        name: &str,
        pending: &PendingTotp,
        at: UnixTime,
        audit: AuditFor<'_, bool>,
    ) -> Result<bool, StoreError> {
        self.with(|s| s.set_pending(name, pending, at, audit))
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
        self.with(|s| s.activate_pending(name, pending_id, totp, codes, at, audit))
    }

    fn reserve_attempt(
        &self,
        name: &str,
        policy: &ThrottlePolicy,
        at: UnixTime,
    ) -> Result<Reservation, StoreError> {
        self.with(|s| s.reserve_attempt(name, policy, at))
    }

    fn release_attempt(
        &self,
        name: &str,
        previous: FailureRecord,
        reserved: FailureRecord,
    ) -> Result<bool, StoreError> {
        self.with(|s| s.release_attempt(name, previous, reserved))
    }

    fn note_refused_attempt(&self, name: &str, gate: Gate, at: UnixTime) -> Result<(), StoreError> {
        self.with(|s| s.note_refused_attempt(name, gate, at))
    }

    fn consume_totp_step(
        &self,
        name: &str,
        step: u64,
        at: UnixTime,
        check: &SettleCheck,
        audit: AuditFor<'_, StepConsumption>,
    ) -> Result<StepConsumption, StoreError> {
        self.with(|s| s.consume_totp_step(name, step, at, check, audit))
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
        self.with(|s| s.consume_backup_code(name, set_id, slot, at, check, audit))
    }

    fn record_password_login(
        &self,
        name: &str,
        at: UnixTime,
        check: &SettleCheck,
        audit: AuditFor<'_, Settlement>,
    ) -> Result<Settlement, StoreError> {
        self.with(|s| s.record_password_login(name, at, check, audit))
    }

    fn record_failure(
        &self,
        name: &str,
        at: UnixTime,
        burn_ahead: Option<u64>,
        audit: AuditFor<'_, bool>,
    ) -> Result<bool, StoreError> {
        self.with(|s| s.record_failure(name, at, burn_ahead, audit))
    }

    fn clear_failures(
        &self,
        name: &str,
        at: UnixTime,
        audit: AuditFor<'_, bool>,
    ) -> Result<bool, StoreError> {
        self.with(|s| s.clear_failures(name, at, audit))
    }

    fn replace_codes(
        &self,
        name: &str,
        codes: &CodeSet,
        at: UnixTime,
        audit: AuditFor<'_, bool>,
    ) -> Result<bool, StoreError> {
        self.with(|s| s.replace_codes(name, codes, at, audit))
    }

    fn confirm_codes(
        &self,
        name: &str,
        set_id: u64,
        at: UnixTime,
        audit: AuditFor<'_, CodesConfirmation>,
    ) -> Result<CodesConfirmation, StoreError> {
        self.with(|s| s.confirm_codes(name, set_id, at, audit))
    }

    fn remove_two_factor(
        &self,
        name: &str,
        at: UnixTime,
        audit: AuditFor<'_, bool>,
    ) -> Result<bool, StoreError> {
        self.with(|s| s.remove_two_factor(name, at, audit))
    }

    fn operator_password(&self) -> Result<Option<String>, StoreError> {
        self.with(|s| s.operator_password())
    }

    fn set_operator_password(
        &self,
        phc: &str,
        at: UnixTime,
        audit: AuditFor<'_, bool>,
    ) -> Result<bool, StoreError> {
        self.with(|s| s.set_operator_password(phc, at, audit))
    }

    fn operator_failures(&self) -> Result<FailureRecord, StoreError> {
        self.with(|s| s.operator_failures())
    }

    fn reserve_operator_attempt(
        &self,
        policy: &ThrottlePolicy,
        at: UnixTime,
    ) -> Result<Reservation, StoreError> {
        self.with(|s| s.reserve_operator_attempt(policy, at))
    }

    fn settle_operator_attempt(
        &self,
        at: UnixTime,
        check: &SettleCheck,
        audit: AuditFor<'_, Settlement>,
    ) -> Result<Settlement, StoreError> {
        self.with(|s| s.settle_operator_attempt(at, check, audit))
    }

    fn record_operator_failure(
        &self,
        at: UnixTime,
        audit: AuditFor<'_, FailureRecord>,
    ) -> Result<FailureRecord, StoreError> {
        self.with(|s| s.record_operator_failure(at, audit))
    }

    fn clear_operator_failures(
        &self,
        at: UnixTime,
        audit: AuditFor<'_, ()>,
    ) -> Result<(), StoreError> {
        self.with(|s| s.clear_operator_failures(at, audit))
    }

    fn export_to(&self, sink: ImageSink<'_>) -> Result<(), StoreError> {
        // One open store for the whole copy: no other process writes while it runs.
        self.with(|s| s.export_to(sink))
    }

    fn import_image(&self, image: &StoreImage) -> Result<(), StoreError> {
        self.with(|s| s.import_image(image))
    }

    fn append_audit(&self, event: &AuditEvent) -> Result<(), StoreError> {
        self.with(|s| s.append_audit(event))
    }

    fn audit_events(
        &self,
        account: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        self.with(|s| s.audit_events(account, limit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::audit::AuditKind;
    use crate::core::keys::MasterKey;

    fn key(byte: u8) -> StoreKey {
        MasterKey::from_bytes([byte; 32]).store_key()
    }

    /// Far longer than any test: the tests close the store with `release`, never by waiting.
    const NEVER: Duration = Duration::from_secs(3600);

    fn event(at: UnixTime) -> AuditEvent {
        AuditEvent {
            at,
            account: "amy".into(),
            kind: AuditKind::AttemptsRefused {
                count: 1,
                locked: false,
            },
        }
    }

    #[test]
    fn a_released_store_is_free_for_others_and_reopens_with_their_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store");
        let store = ReopeningStore::open(&path, Duration::from_secs(1), NEVER).unwrap();
        assert_eq!(store.bind_key(&key(1)).unwrap(), KeyBinding::Bound);
        store.release();
        assert!(!store.is_open());

        // Another holder (in another process it would be a CLI command) gets it at once.
        let other = SledStore::open(&path, Duration::from_secs(5)).unwrap();
        other.append_audit(&event(7)).unwrap();
        // Meanwhile a call waits at most its bound, then names the holder.
        match store.audit_events(None, 10) {
            Err(StoreError::Busy { pid, .. }) => assert_eq!(pid, Some(std::process::id())),
            other => panic!("expected Busy, got {other:?}"),
        }
        assert!(!store.is_open());

        drop(other);
        // sled lets go of its log once its threads end; the reopen's own wait for that is
        // bounded by the 1 s above, which a loaded machine may need all of.
        let log = std::fs::File::open(path.join("db")).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while log.try_lock().is_err() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        drop(log);
        let events = store.audit_events(None, 10).unwrap();
        assert_eq!(
            events,
            vec![event(7)],
            "the reopened store sees the other's write"
        );
        assert!(store.is_open());
    }

    #[test]
    fn dropping_the_store_releases_it_before_returning() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store");
        let store = ReopeningStore::open(&path, Duration::ZERO, NEVER).unwrap();
        assert!(matches!(
            crate::store::lock::try_lock(&path),
            Err(StoreError::Busy { .. })
        ));
        drop(store);
        crate::store::lock::try_lock(&path).expect("the lock file is free");
    }

    #[test]
    fn a_store_removed_while_released_is_not_recreated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store");
        let store = ReopeningStore::open(&path, Duration::from_secs(5), NEVER).unwrap();
        store.bind_key(&key(1)).unwrap();
        store.release();
        std::fs::remove_dir_all(&path).unwrap();
        match store.load_account("amy") {
            Err(StoreError::Io(e)) => assert!(e.contains("is gone"), "{e}"),
            other => panic!("expected an error, got {other:?}"),
        }
        assert!(!path.exists(), "no empty store was created in its place");
    }

    #[test]
    fn a_store_of_another_key_in_its_place_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store");
        let store = ReopeningStore::open(&path, Duration::from_secs(5), NEVER).unwrap();
        store.bind_key(&key(1)).unwrap();
        store.release();
        std::fs::remove_dir_all(&path).unwrap();
        let other = SledStore::open(&path, Duration::from_secs(5)).unwrap();
        other.bind_key(&key(2)).unwrap();
        drop(other);
        match store.load_account("amy") {
            Err(StoreError::Conflict(e)) => assert!(e.contains("another key"), "{e}"),
            other => panic!("expected a conflict, got {other:?}"),
        }
    }
}
