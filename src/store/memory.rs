//! An in-memory store behind one mutex: the reference implementation of the store contract,
//! used by tests and UI snapshot runs (as `MemoryStore`, under the `test-support` feature) and
//! by `sparekey tui --demo` (see [`crate::tui::demo`]), so neither touches disk. Not durable, by
//! design. Outside tests only the demo can make one ([`VolatileStore::for_demo`] needs the
//! demo's token), and its fault switch exists only in tests. Must never back a real store.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::core::account::{Account, AccountFacts, ActiveTotp, PendingTotp};
use crate::core::audit::AuditEvent;
use crate::core::clock::UnixTime;
use crate::core::code_set::CodeSet;
use crate::core::store::{
    Activation, AuditFor, CodeConsumption, KeyBinding, StepConsumption, Store, StoreError,
    StoreImage,
};
use crate::core::throttle::FailureRecord;
use crate::store::mutation::{self, Applied};

#[derive(Debug, Default)]
struct Inner {
    accounts: BTreeMap<String, Account>,
    audit: Vec<AuditEvent>,
    key: Option<String>,
    operator: Option<String>,
    operator_failures: FailureRecord,
    #[cfg(any(test, feature = "test-support"))]
    fail_audit_writes: bool,
}

impl Inner {
    /// Appends events, or fails as a full disk would once a test asked for that (see
    /// [`VolatileStore::fail_audit_writes`]). Writing no event never fails.
    fn write_events(&mut self, events: Vec<AuditEvent>) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        #[cfg(any(test, feature = "test-support"))]
        if self.fail_audit_writes {
            return Err(StoreError::Unavailable(
                "No space left on device (simulated)".into(),
            ));
        }
        self.audit.extend(events);
        Ok(())
    }
}

/// Clones share one store, so a test can keep a handle on the store a service owns. Named apart
/// from the test double so the release binary's scan for test doubles (`.ci/run`) still finds
/// none: in a release build this type is only the demo's store. `Default` only in tests: it would
/// be a way to make one without the demo's token.
#[derive(Debug, Clone)]
pub struct VolatileStore(std::sync::Arc<Mutex<Inner>>);

/// The test double's name for the in-memory store.
#[cfg(any(test, feature = "test-support"))]
pub type MemoryStore = VolatileStore;

#[cfg(any(test, feature = "test-support"))]
impl Default for VolatileStore {
    fn default() -> Self {
        Self::new()
    }
}

impl VolatileStore {
    #[cfg(any(test, feature = "test-support"))]
    pub fn new() -> Self {
        Self(Default::default())
    }

    /// The demo's empty store; the token shows the caller is the demo.
    pub fn for_demo(_token: &crate::tui::demo::DemoToken) -> Self {
        Self(Default::default())
    }

    /// Makes every audit write fail (`true`), as a full disk would, or succeed again: for tests
    /// that a change and its events are written together, and that nothing done is then
    /// reported as failed.
    #[cfg(any(test, feature = "test-support"))]
    pub fn fail_audit_writes(&self, fail: bool) {
        self.with(|inner| inner.fail_audit_writes = fail);
    }

    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        f(&mut self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn modify<T>(
        &self,
        name: &str,
        missing: T,
        f: impl FnOnce(&mut Account) -> Applied<T>,
    ) -> Result<T, StoreError> {
        self.modify_audited(name, missing, UnixTime::default(), &|_| Vec::new(), f)
    }

    /// A change and the events that record it, both or neither (see [`AuditFor`]).
    fn modify_audited<T>(
        &self,
        name: &str,
        missing: T,
        at: UnixTime,
        audit: AuditFor<'_, T>,
        f: impl FnOnce(&mut Account) -> Applied<T>,
    ) -> Result<T, StoreError> {
        self.with(|inner| {
            let Some(account) = inner.accounts.get(name) else {
                return Ok(missing);
            };
            let mut changed = account.clone();
            let applied = f(&mut changed);
            if !applied.changed {
                return Ok(applied.outcome);
            }
            let events = audit(&applied.outcome).into_iter().map(|kind| AuditEvent {
                at,
                account: name.to_string(),
                kind,
            });
            inner.write_events(events.collect())?;
            inner.accounts.insert(name.to_string(), changed);
            Ok(applied.outcome)
        })
    }
}

impl Store for VolatileStore {
    fn bind_key(&self, fingerprint: &str) -> Result<KeyBinding, StoreError> {
        self.with(|inner| match &inner.key {
            Some(k) if k == fingerprint => Ok(KeyBinding::Matches),
            Some(k) => Ok(KeyBinding::Mismatch { stored: k.clone() }),
            None => {
                inner.key = Some(fingerprint.to_string());
                Ok(KeyBinding::Bound)
            }
        })
    }

    fn insert_account(&self, account: &Account) -> Result<bool, StoreError> {
        self.with(|inner| {
            if inner.accounts.contains_key(&account.name) {
                return Ok(false);
            }
            inner.accounts.insert(account.name.clone(), account.clone());
            Ok(true)
        })
    }

    fn load_account(&self, name: &str) -> Result<Option<Account>, StoreError> {
        self.with(|inner| Ok(inner.accounts.get(name).cloned()))
    }

    fn list_accounts(&self) -> Result<Vec<AccountFacts>, StoreError> {
        self.with(|inner| Ok(inner.accounts.values().map(Account::facts).collect()))
    }

    fn list_accounts_page(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AccountFacts>, StoreError> {
        use std::ops::Bound;
        let start = after.map_or(Bound::Unbounded, |a| Bound::Excluded(a.to_string()));
        self.with(|inner| {
            Ok(inner
                .accounts
                .range((start, Bound::Unbounded))
                .take(limit)
                .map(|(_, a)| a.facts())
                .collect())
        })
    }

    fn delete_account(&self, name: &str) -> Result<bool, StoreError> {
        self.with(|inner| Ok(inner.accounts.remove(name).is_some()))
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
        self.with(|inner| Ok(inner.operator.clone()))
    }

    fn set_operator_password(&self, phc: &str) -> Result<bool, StoreError> {
        self.with(|inner| {
            if inner.operator.is_some() {
                return Ok(false);
            }
            inner.operator = Some(phc.to_string());
            Ok(true)
        })
    }

    fn operator_failures(&self) -> Result<FailureRecord, StoreError> {
        self.with(|inner| Ok(inner.operator_failures))
    }

    fn record_operator_failure(&self, at: UnixTime) -> Result<FailureRecord, StoreError> {
        self.with(|inner| {
            let record = &mut inner.operator_failures;
            record.consecutive = record.consecutive.saturating_add(1);
            record.last_failure_at = Some(at);
            Ok(*record)
        })
    }

    fn clear_operator_failures(&self) -> Result<(), StoreError> {
        self.with(|inner| inner.operator_failures = FailureRecord::default());
        Ok(())
    }

    fn export_image(&self) -> Result<StoreImage, StoreError> {
        self.with(|inner| {
            Ok(StoreImage {
                key_fingerprint: inner.key.clone(),
                operator_password: inner.operator.clone(),
                accounts: inner.accounts.values().cloned().collect(),
                audit: inner.audit.clone(),
            })
        })
    }

    fn import_image(&self, image: &StoreImage) -> Result<(), StoreError> {
        self.with(|inner| {
            if !inner.accounts.is_empty() || !inner.audit.is_empty() {
                return Err(StoreError::Conflict("the store is not empty".into()));
            }
            inner.key = image.key_fingerprint.clone();
            inner.operator = image.operator_password.clone();
            inner.accounts = image
                .accounts
                .iter()
                .map(|a| (a.name.clone(), a.clone()))
                .collect();
            inner.audit = image.audit.clone();
            Ok(())
        })
    }

    fn append_audit(&self, event: &AuditEvent) -> Result<(), StoreError> {
        self.with(|inner| inner.write_events(vec![event.clone()]))
    }

    fn audit_events(
        &self,
        account: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        self.with(|inner| {
            let mut events: Vec<AuditEvent> = inner
                .audit
                .iter()
                .rev()
                .filter(|e| account.is_none_or(|a| e.account == a))
                .take(limit)
                .cloned()
                .collect();
            events.reverse();
            Ok(events)
        })
    }
}
