//! A store wrapper that refuses writes on demand, as a full disk would, for tests of what the
//! core does when a write fails (test-support only). Owns nothing but the switch and the counts
//! of what reached it; must never change what the wrapped store does with the calls it lets
//! through.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

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

/// Wraps `S`; while [`FaultyStore::refuse_writes`] is on, every mutating call fails with
/// [`StoreError::Unavailable`] and changes nothing; reads always go through. Clones share the
/// store and the switch, so a test keeps a handle on the store a service owns.
#[derive(Debug)]
pub struct FaultyStore<S> {
    inner: Arc<S>,
    switch: Arc<Switch>,
}

#[derive(Debug, Default)]
struct Switch {
    refuse: AtomicBool,
    refused: AtomicU64,
    writes: AtomicU64,
}

impl<S> Clone for FaultyStore<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            switch: self.switch.clone(),
        }
    }
}

/// The message of every refused write, the OS's sentence for a full disk.
pub const REFUSED: &str = "No space left on device (injected)";

impl<S: Store> FaultyStore<S> {
    pub fn new(inner: S) -> Self {
        Self {
            inner: Arc::new(inner),
            switch: Arc::default(),
        }
    }

    pub fn refuse_writes(&self, refuse: bool) {
        self.switch.refuse.store(refuse, Ordering::SeqCst);
    }

    /// Writes refused so far.
    pub fn refused(&self) -> u64 {
        self.switch.refused.load(Ordering::SeqCst)
    }

    /// Writes let through so far.
    pub fn writes(&self) -> u64 {
        self.switch.writes.load(Ordering::SeqCst)
    }

    fn write(&self) -> Result<(), StoreError> {
        if self.switch.refuse.load(Ordering::SeqCst) {
            self.switch.refused.fetch_add(1, Ordering::SeqCst);
            return Err(StoreError::Unavailable(REFUSED.into()));
        }
        self.switch.writes.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

impl<S: Store> Store for FaultyStore<S> {
    fn bind_key(&self, key: &StoreKey) -> Result<KeyBinding, StoreError> {
        self.write()?;
        self.inner.bind_key(key)
    }
    fn insert_account(&self, a: &Account, audit: AuditFor<'_, bool>) -> Result<bool, StoreError> {
        self.write()?;
        self.inner.insert_account(a, audit)
    }
    fn load_account(&self, name: &str) -> Result<Option<Account>, StoreError> {
        self.inner.load_account(name)
    }
    fn list_accounts(&self) -> Result<Vec<AccountFacts>, StoreError> {
        self.inner.list_accounts()
    }
    fn list_accounts_page(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AccountFacts>, StoreError> {
        self.inner.list_accounts_page(after, limit)
    }
    fn delete_account(
        &self,
        name: &str,
        at: UnixTime,
        audit: AuditFor<'_, bool>,
    ) -> Result<bool, StoreError> {
        self.write()?;
        self.inner.delete_account(name, at, audit)
    }
    fn set_pending(
        &self,
        name: &str,
        pending: &PendingTotp,
        at: UnixTime,
        audit: AuditFor<'_, bool>,
    ) -> Result<bool, StoreError> {
        self.write()?;
        self.inner.set_pending(name, pending, at, audit)
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
        self.write()?;
        self.inner
            .activate_pending(name, pending_id, totp, codes, at, audit)
    }
    fn reserve_attempt(
        &self,
        name: &str,
        policy: &ThrottlePolicy,
        at: UnixTime,
    ) -> Result<Reservation, StoreError> {
        self.write()?;
        self.inner.reserve_attempt(name, policy, at)
    }
    fn release_attempt(
        &self,
        name: &str,
        previous: FailureRecord,
        reserved: FailureRecord,
    ) -> Result<bool, StoreError> {
        self.write()?;
        self.inner.release_attempt(name, previous, reserved)
    }
    fn note_refused_attempt(&self, name: &str, gate: Gate, at: UnixTime) -> Result<(), StoreError> {
        self.write()?;
        self.inner.note_refused_attempt(name, gate, at)
    }
    fn consume_totp_step(
        &self,
        name: &str,
        step: u64,
        at: UnixTime,
        check: &SettleCheck,
        audit: AuditFor<'_, StepConsumption>,
    ) -> Result<StepConsumption, StoreError> {
        self.write()?;
        self.inner.consume_totp_step(name, step, at, check, audit)
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
        self.write()?;
        self.inner
            .consume_backup_code(name, set_id, slot, at, check, audit)
    }
    fn record_password_login(
        &self,
        name: &str,
        at: UnixTime,
        check: &SettleCheck,
        audit: AuditFor<'_, Settlement>,
    ) -> Result<Settlement, StoreError> {
        self.write()?;
        self.inner.record_password_login(name, at, check, audit)
    }
    fn record_failure(
        &self,
        name: &str,
        at: UnixTime,
        burn_ahead: Option<u64>,
        audit: AuditFor<'_, bool>,
    ) -> Result<bool, StoreError> {
        self.write()?;
        self.inner.record_failure(name, at, burn_ahead, audit)
    }
    fn clear_failures(
        &self,
        name: &str,
        at: UnixTime,
        audit: AuditFor<'_, bool>,
    ) -> Result<bool, StoreError> {
        self.write()?;
        self.inner.clear_failures(name, at, audit)
    }
    fn replace_codes(
        &self,
        name: &str,
        codes: &CodeSet,
        at: UnixTime,
        audit: AuditFor<'_, bool>,
    ) -> Result<bool, StoreError> {
        self.write()?;
        self.inner.replace_codes(name, codes, at, audit)
    }
    fn confirm_codes(
        &self,
        name: &str,
        set_id: u64,
        at: UnixTime,
        audit: AuditFor<'_, CodesConfirmation>,
    ) -> Result<CodesConfirmation, StoreError> {
        self.write()?;
        self.inner.confirm_codes(name, set_id, at, audit)
    }

    fn remove_two_factor(
        &self,
        name: &str,
        at: UnixTime,
        audit: AuditFor<'_, bool>,
    ) -> Result<bool, StoreError> {
        self.write()?;
        self.inner.remove_two_factor(name, at, audit)
    }
    fn operator_password(&self) -> Result<Option<String>, StoreError> {
        self.inner.operator_password()
    }
    fn set_operator_password(
        &self,
        phc: &str,
        at: UnixTime,
        audit: AuditFor<'_, bool>,
    ) -> Result<bool, StoreError> {
        self.write()?;
        self.inner.set_operator_password(phc, at, audit)
    }
    fn operator_failures(&self) -> Result<FailureRecord, StoreError> {
        self.inner.operator_failures()
    }
    fn reserve_operator_attempt(
        &self,
        policy: &ThrottlePolicy,
        at: UnixTime,
    ) -> Result<Reservation, StoreError> {
        self.write()?;
        self.inner.reserve_operator_attempt(policy, at)
    }
    fn settle_operator_attempt(
        &self,
        at: UnixTime,
        check: &SettleCheck,
        audit: AuditFor<'_, Settlement>,
    ) -> Result<Settlement, StoreError> {
        self.write()?;
        self.inner.settle_operator_attempt(at, check, audit)
    }
    fn record_operator_failure(
        &self,
        at: UnixTime,
        audit: AuditFor<'_, FailureRecord>,
    ) -> Result<FailureRecord, StoreError> {
        self.write()?;
        self.inner.record_operator_failure(at, audit)
    }
    fn clear_operator_failures(
        &self,
        at: UnixTime,
        audit: AuditFor<'_, ()>,
    ) -> Result<(), StoreError> {
        self.write()?;
        self.inner.clear_operator_failures(at, audit)
    }
    fn export_to(&self, sink: ImageSink<'_>) -> Result<(), StoreError> {
        self.inner.export_to(sink)
    }
    fn import_image(&self, image: &StoreImage) -> Result<(), StoreError> {
        self.write()?;
        self.inner.import_image(image)
    }
    fn append_audit(&self, event: &AuditEvent) -> Result<(), StoreError> {
        self.write()?;
        self.inner.append_audit(event)
    }
    fn audit_events(
        &self,
        account: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        self.inner.audit_events(account, limit)
    }
}
