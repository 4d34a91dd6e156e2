//! An in-memory store behind one mutex: the reference implementation of the store contract,
//! used by tests and UI snapshot runs (as `MemoryStore`, under the `test-support` feature) and
//! by `sparekey tui --demo` (see [`crate::tui::demo`]), so neither touches disk. Not durable, by
//! design. Outside tests only the demo can make one ([`VolatileStore::for_demo`] needs the
//! demo's token), and its fault switch exists only in tests. Must never back a real store.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::core::account::{Account, AccountFacts, ActiveTotp, PendingTotp};
use crate::core::audit::{AuditEvent, AuditKind};
use crate::core::clock::UnixTime;
use crate::core::code_set::CodeSet;
use crate::core::store::{
    Activation, AuditFor, CodeConsumption, CodesConfirmation, ImageItem, ImageSink, KeyBinding,
    Reservation, SettleCheck, Settlement, StepConsumption, Store, StoreError, StoreImage,
};
use crate::core::throttle::{FailureRecord, Gate, ThrottlePolicy};
use crate::store::mutation::{self, Applied, RefusalNote};

#[derive(Debug, Default)]
struct Inner {
    accounts: BTreeMap<String, Account>,
    audit: Vec<AuditEvent>,
    key: Option<String>,
    operator: Option<String>,
    operator_failures: FailureRecord,
    /// Per account, the refusal event of its current delay window (its index in `audit`).
    refusals: BTreeMap<String, RefusalNote>,
    #[cfg(any(test, feature = "test-support"))]
    fail_audit_writes: bool,
}

fn events(at: UnixTime, account: &str, kinds: Vec<AuditKind>) -> Vec<AuditEvent> {
    kinds
        .into_iter()
        .map(|kind| AuditEvent {
            at,
            account: account.to_string(),
            kind,
        })
        .collect()
}

impl Inner {
    /// Appends events, or fails as a full disk would once a test asked for that (see
    /// [`VolatileStore::fail_audit_writes`]). Writing no event never fails.
    fn write_events(&mut self, events: Vec<AuditEvent>) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        self.check_audit_write()?;
        self.audit.extend(events);
        Ok(())
    }

    fn check_audit_write(&self) -> Result<(), StoreError> {
        #[cfg(any(test, feature = "test-support"))]
        if self.fail_audit_writes {
            return Err(StoreError::Unavailable(
                "No space left on device (simulated)".into(),
            ));
        }
        Ok(())
    }

    /// Adds a refused attempt to the account's refusal event for `window`, or starts one.
    fn note_refusal(
        &mut self,
        name: &str,
        window: FailureRecord,
        gate: Gate,
        at: UnixTime,
    ) -> Result<(), StoreError> {
        self.check_audit_write()?;
        let old = self.refusals.get(name).copied();
        let (mut note, existing) = mutation::note_refusal(old, window, at);
        let event = AuditEvent {
            at: note.first_at,
            account: name.to_string(),
            kind: AuditKind::AttemptsRefused {
                count: note.count,
                locked: gate == Gate::Locked,
            },
        };
        match usize::try_from(note.event).ok().filter(|_| existing) {
            Some(index) if index < self.audit.len() => self.audit[index] = event,
            _ => {
                note.event = self.audit.len() as u64;
                self.audit.push(event);
            }
        }
        self.refusals.insert(name.to_string(), note);
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
            inner.write_events(events(at, name, audit(&applied.outcome)))?;
            inner.accounts.insert(name.to_string(), changed);
            Ok(applied.outcome)
        })
    }

    /// The kiosk operator's failure record changed by `f`, with its events.
    fn modify_operator<T>(
        &self,
        at: UnixTime,
        audit: AuditFor<'_, T>,
        f: impl FnOnce(&mut FailureRecord) -> Applied<T>,
    ) -> Result<T, StoreError> {
        self.with(|inner| {
            let mut record = inner.operator_failures;
            let applied = f(&mut record);
            if applied.changed {
                let kinds = audit(&applied.outcome);
                inner.write_events(events(at, crate::core::kiosk::OPERATOR_AUDIT_NAME, kinds))?;
                inner.operator_failures = record;
            }
            Ok(applied.outcome)
        })
    }
}

impl Store for VolatileStore {
    fn bind_key(&self, key: &crate::core::keys::StoreKey) -> Result<KeyBinding, StoreError> {
        let fingerprint = key.fingerprint();
        self.with(|inner| match &inner.key {
            Some(k) if k == fingerprint => Ok(KeyBinding::Matches),
            Some(k) => Ok(KeyBinding::Mismatch { stored: k.clone() }),
            None => {
                inner.key = Some(fingerprint.to_string());
                Ok(KeyBinding::Bound)
            }
        })
    }

    fn insert_account(
        &self,
        account: &Account,
        audit: AuditFor<'_, bool>,
    ) -> Result<bool, StoreError> {
        self.with(|inner| {
            // Unique regardless of case, as every backend keeps names.
            let folded = crate::core::account::folded_name(&account.name);
            let taken = (inner.accounts.keys())
                .any(|name| crate::core::account::folded_name(name) == folded);
            if taken {
                return Ok(false);
            }
            inner.write_events(events(account.created_at, &account.name, audit(&true)))?;
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

    fn delete_account(
        &self,
        name: &str,
        at: UnixTime,
        audit: AuditFor<'_, bool>,
    ) -> Result<bool, StoreError> {
        self.with(|inner| {
            if !inner.accounts.contains_key(name) {
                return Ok(false);
            }
            inner.write_events(events(at, name, audit(&true)))?;
            inner.accounts.remove(name);
            inner.refusals.remove(name);
            Ok(true)
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
        self.with(|inner| {
            let Some(account) = inner.accounts.get(name) else {
                return Ok(Reservation::NoAccount);
            };
            let mut changed = account.clone();
            let applied = mutation::reserve_attempt(&mut changed, policy, at);
            match applied.outcome {
                Reservation::Refused(gate) => {
                    inner.note_refusal(name, changed.failures, gate, at)?;
                }
                _ => {
                    inner.accounts.insert(name.to_string(), changed);
                }
            }
            Ok(applied.outcome)
        })
    }

    fn release_attempt(
        &self,
        name: &str,
        previous: FailureRecord,
        reserved: FailureRecord,
    ) -> Result<bool, StoreError> {
        self.modify(name, false, |a| {
            mutation::release_attempt(a, previous, reserved)
        })
    }

    fn note_refused_attempt(&self, name: &str, gate: Gate, at: UnixTime) -> Result<(), StoreError> {
        self.with(|inner| {
            let Some(window) = inner.accounts.get(name).map(|a| a.failures) else {
                return Ok(());
            };
            inner.note_refusal(name, window, gate, at)
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
        self.with(|inner| Ok(inner.operator.clone()))
    }

    fn set_operator_password(
        &self,
        phc: &str,
        at: UnixTime,
        audit: AuditFor<'_, bool>,
    ) -> Result<bool, StoreError> {
        self.with(|inner| {
            if inner.operator.is_some() {
                return Ok(false);
            }
            let kinds = audit(&true);
            inner.write_events(events(at, crate::core::kiosk::OPERATOR_AUDIT_NAME, kinds))?;
            inner.operator = Some(phc.to_string());
            Ok(true)
        })
    }

    fn operator_failures(&self) -> Result<FailureRecord, StoreError> {
        self.with(|inner| Ok(inner.operator_failures))
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
        self.with(|inner| {
            sink(ImageItem::Header {
                key_fingerprint: inner.key.as_deref(),
                operator_password: inner.operator.as_deref(),
            })?;
            for account in inner.accounts.values() {
                sink(ImageItem::Account(account))?;
            }
            for event in &inner.audit {
                sink(ImageItem::Audit(event))?;
            }
            Ok(())
        })
    }

    fn import_image(&self, image: &StoreImage) -> Result<(), StoreError> {
        self.with(|inner| {
            if !inner.accounts.is_empty() || !inner.audit.is_empty() {
                return Err(StoreError::Conflict("the store is not empty".into()));
            }
            let mut folded: Vec<String> = (image.accounts.iter())
                .map(|a| crate::core::account::folded_name(&a.name))
                .collect();
            folded.sort();
            if folded.windows(2).any(|w| w[0] == w[1]) {
                return Err(StoreError::Conflict(
                    "two accounts of the image differ only by case".into(),
                ));
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
