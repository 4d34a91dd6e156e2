//! The record-level changes behind each store operation, as pure functions on an [`Account`].
//! Each returns the outcome and whether the record changed; the backend runs it inside its own
//! atomic step (a transaction, a lock) and writes the record back only when it changed.
//! Must stay free of I/O, so every backend gets the same semantics.

use crate::core::account::{Account, ActiveTotp, LastLogin, PendingTotp};
use crate::core::audit::LoginMethod;
use crate::core::clock::UnixTime;
use crate::core::code_set::CodeSet;
use crate::core::store::{
    Activation, CodeConsumption, Reservation, SettleCheck, Settlement, StepConsumption,
};
use crate::core::throttle::{FailureRecord, Gate, ThrottlePolicy};

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

/// TOTP steps burned ahead of time (matched by a code from a clock running ahead) that are
/// kept; past this many, the earliest is folded into the last used step, which burns it and
/// every step before it, as a full list must never let a confirmed code through.
pub const MAX_BURNED_AHEAD: usize = 16;

/// Whether the failures counted by attempts *other* than the one being settled lock the
/// record: the settling attempt's own reservation is one of the counted failures, and a right
/// answer on the last attempt the policy allows must still succeed.
fn locked_by_others(record: &FailureRecord, check: &SettleCheck) -> bool {
    let others = FailureRecord {
        consecutive: record.consecutive.saturating_sub(1),
        ..*record
    };
    check.policy.is_locked(&others)
}

/// Counts an attempt on `record` if `policy` lets one go ahead at `at`: the rule behind both
/// [`reserve_attempt`] and the kiosk operator's reservation.
pub fn reserve(
    record: &mut FailureRecord,
    policy: &ThrottlePolicy,
    at: UnixTime,
) -> Applied<Reservation> {
    match policy.gate(record, at) {
        Gate::Open => {
            let previous = *record;
            record.consecutive = record.consecutive.saturating_add(1);
            record.last_failure_at = Some(at);
            changed(Reservation::Reserved {
                previous,
                reserved: *record,
            })
        }
        closed => unchanged(Reservation::Refused(closed)),
    }
}

/// Clears `record` for a success, unless other attempts locked it (see [`locked_by_others`]).
pub fn settle(record: &mut FailureRecord, check: &SettleCheck) -> Applied<Settlement> {
    if locked_by_others(record, check) {
        return unchanged(Settlement::Locked);
    }
    *record = FailureRecord::default();
    changed(Settlement::Settled)
}

pub fn reserve_attempt(
    account: &mut Account,
    policy: &ThrottlePolicy,
    at: UnixTime,
) -> Applied<Reservation> {
    reserve(&mut account.failures, policy, at)
}

pub fn release_attempt(
    account: &mut Account,
    previous: FailureRecord,
    reserved: FailureRecord,
) -> Applied<bool> {
    let record = &mut account.failures;
    if *record == reserved {
        *record = previous;
    } else if record.consecutive > reserved.consecutive {
        // Later attempts were counted on top of this one: take back only its own count.
        record.consecutive -= 1;
    } else {
        // A success or an unlock cleared the count meanwhile: nothing of ours is left.
        return unchanged(true);
    }
    changed(true)
}

/// A TOTP step that may still be accepted: later than the last used one and not burned.
fn step_is_fresh(totp: &ActiveTotp, step: u64) -> bool {
    totp.last_step.is_none_or(|last| step > last) && !totp.burned_ahead.contains(&step)
}

/// Refuses `step` from now on without refusing the steps before it (see [`MAX_BURNED_AHEAD`]).
fn burn_ahead(totp: &mut ActiveTotp, step: u64) {
    if !step_is_fresh(totp, step) {
        return;
    }
    totp.burned_ahead.push(step);
    totp.burned_ahead.sort_unstable();
    while totp.burned_ahead.len() > MAX_BURNED_AHEAD {
        let earliest = totp.burned_ahead.remove(0);
        totp.last_step = Some(totp.last_step.map_or(earliest, |last| last.max(earliest)));
    }
    forget_burned_up_to_last(totp);
}

/// Burned steps at or before the last used one are refused by it already.
fn forget_burned_up_to_last(totp: &mut ActiveTotp) {
    if let Some(last) = totp.last_step {
        totp.burned_ahead.retain(|&s| s > last);
    }
}

pub fn set_pending(account: &mut Account, pending: &PendingTotp) -> Applied<bool> {
    account.pending = Some(pending.clone());
    changed(true)
}

/// Where a backend keeps the refusal event of an account's current delay window, so refused
/// attempts on a throttled account add to one event instead of writing one each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RefusalNote {
    /// The failure record the refusals were counted under: a new one is a new window.
    pub window: FailureRecord,
    /// The backend's id of the event (its key, its index).
    pub event: u64,
    pub first_at: UnixTime,
    pub count: u32,
}

/// The refusal of one more attempt under `window`: the note to keep and whether its event is
/// the one `note` names (rewrite it with the new count) or a new one (append it, then store
/// its id in the note).
pub fn note_refusal(
    note: Option<RefusalNote>,
    window: FailureRecord,
    at: UnixTime,
) -> (RefusalNote, bool) {
    match note {
        Some(n) if n.window == window => (
            RefusalNote {
                count: n.count.saturating_add(1),
                ..n
            },
            true,
        ),
        _ => (
            RefusalNote {
                window,
                event: 0,
                first_at: at,
                count: 1,
            },
            false,
        ),
    }
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
    check: &SettleCheck,
) -> Applied<StepConsumption> {
    if locked_by_others(&account.failures, check) {
        return unchanged(StepConsumption::Locked);
    }
    let Some(totp) = account.totp.as_mut() else {
        return unchanged(StepConsumption::NotEnrolled);
    };
    if !step_is_fresh(totp, step) {
        return unchanged(StepConsumption::Replay);
    }
    totp.last_step = Some(step);
    forget_burned_up_to_last(totp);
    succeed_login(account, at, LoginMethod::Totp);
    changed(StepConsumption::Accepted)
}

pub fn consume_backup_code(
    account: &mut Account,
    set_id: u64,
    slot: usize,
    at: UnixTime,
    check: &SettleCheck,
) -> Applied<CodeConsumption> {
    if locked_by_others(&account.failures, check) {
        return unchanged(CodeConsumption::Locked);
    }
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

pub fn record_password_login(
    account: &mut Account,
    at: UnixTime,
    check: &SettleCheck,
) -> Applied<Settlement> {
    if locked_by_others(&account.failures, check) {
        return unchanged(Settlement::Locked);
    }
    succeed_login(account, at, LoginMethod::Password);
    changed(Settlement::Settled)
}

/// The count was taken by the reservation; what is left is the step a drifted code burned.
/// Always "changed", so the backend writes the failure's events with the record.
pub fn record_failure(account: &mut Account, burn_ahead_step: Option<u64>) -> Applied<bool> {
    if let (Some(step), Some(totp)) = (burn_ahead_step, account.totp.as_mut()) {
        burn_ahead(totp, step);
    }
    changed(true)
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
