//! The record-level changes behind each store operation, as pure functions on an [`Account`].
//! Each returns the outcome and whether the record changed; the backend runs it inside its own
//! atomic step (a transaction, a lock) and writes the record back only when it changed.
//! Must stay free of I/O, so every backend gets the same semantics.

use crate::core::account::{Account, ActiveTotp, LastLogin, PendingTotp};
use crate::core::audit::LoginMethod;
use crate::core::clock::UnixTime;
use crate::core::code_set::CodeSet;
use crate::core::store::{Activation, CodeConsumption, StepConsumption};
use crate::core::throttle::FailureRecord;

/// What a mutation did: its outcome and whether the record must be written back.
pub struct Applied<T> {
    pub outcome: T,
    pub changed: bool,
}

fn changed<T>(outcome: T) -> Applied<T> {
    Applied {
        outcome,
        changed: true,
    }
}

fn unchanged<T>(outcome: T) -> Applied<T> {
    Applied {
        outcome,
        changed: false,
    }
}

fn succeed_login(account: &mut Account, at: UnixTime, method: LoginMethod) {
    account.failures = FailureRecord::default();
    account.last_login = Some(LastLogin { at, method });
}

pub fn set_pending(account: &mut Account, pending: &PendingTotp) -> Applied<bool> {
    account.pending = Some(pending.clone());
    changed(true)
}

pub fn activate_pending(
    account: &mut Account,
    pending_id: u64,
    totp: &ActiveTotp,
    codes: &CodeSet,
) -> Applied<Activation> {
    if account.pending.as_ref().map(|p| p.id) != Some(pending_id) {
        return unchanged(Activation::PendingChanged);
    }
    account.pending = None;
    account.totp = Some(totp.clone());
    account.codes = Some(codes.clone());
    account.failures = FailureRecord::default();
    changed(Activation::Activated)
}

pub fn consume_totp_step(
    account: &mut Account,
    step: u64,
    at: UnixTime,
) -> Applied<StepConsumption> {
    let Some(totp) = account.totp.as_mut() else {
        return unchanged(StepConsumption::NotEnrolled);
    };
    if totp.last_step.is_some_and(|last| step <= last) {
        return unchanged(StepConsumption::Replay);
    }
    totp.last_step = Some(step);
    succeed_login(account, at, LoginMethod::Totp);
    changed(StepConsumption::Accepted)
}

pub fn spend_totp_step(account: &mut Account, step: u64) -> Applied<bool> {
    let Some(totp) = account.totp.as_mut() else {
        return unchanged(false);
    };
    if totp.last_step.is_some_and(|last| step <= last) {
        return unchanged(true);
    }
    totp.last_step = Some(step);
    changed(true)
}

pub fn consume_backup_code(
    account: &mut Account,
    set_id: u64,
    slot: usize,
    at: UnixTime,
) -> Applied<CodeConsumption> {
    let Some(set) = account.codes.as_mut().filter(|s| s.id == set_id) else {
        return unchanged(CodeConsumption::SetReplaced);
    };
    let Some(entry) = set.slots.get_mut(slot) else {
        return unchanged(CodeConsumption::SetReplaced);
    };
    if entry.used_at.is_some() {
        return unchanged(CodeConsumption::AlreadyUsed);
    }
    entry.used_at = Some(at);
    let (remaining, total) = (set.remaining(), set.total());
    succeed_login(account, at, LoginMethod::BackupCode);
    changed(CodeConsumption::Consumed { remaining, total })
}

pub fn record_password_login(account: &mut Account, at: UnixTime) -> Applied<bool> {
    succeed_login(account, at, LoginMethod::Password);
    changed(true)
}

pub fn record_failure(account: &mut Account, at: UnixTime) -> Applied<Option<FailureRecord>> {
    account.failures.consecutive = account.failures.consecutive.saturating_add(1);
    account.failures.last_failure_at = Some(at);
    changed(Some(account.failures))
}

pub fn clear_failures(account: &mut Account) -> Applied<bool> {
    account.failures = FailureRecord::default();
    changed(true)
}

pub fn replace_codes(account: &mut Account, codes: &CodeSet) -> Applied<bool> {
    account.codes = Some(codes.clone());
    changed(true)
}

pub fn remove_two_factor(account: &mut Account) -> Applied<bool> {
    account.totp = None;
    account.pending = None;
    account.codes = None;
    changed(true)
}
