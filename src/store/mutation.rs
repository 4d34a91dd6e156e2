//! The record-level changes behind each store operation, as pure functions on an [`Account`].
//! Each returns the outcome and whether the record changed; the backend runs it inside its own
//! atomic step (a transaction, a lock) and writes the record back only when it changed.
//! Must stay free of I/O, so every backend gets the same semantics.

use crate::core::account::{Account, ActiveTotp, LastLogin, PendingTotp};
use crate::core::audit::LoginMethod;
use crate::core::clock::UnixTime;
use crate::core::code_set::CodeSet;
use crate::core::store::{
    Activation, CodeConsumption, CodesConfirmation, Reservation, SettleCheck, Settlement,
    StepConsumption,
};
use crate::core::throttle::{FailureRecord, Gate, ThrottlePolicy};

/// What a mutation did: its outcome and whether the record must be written back.
pub(crate) struct Applied<T> {
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
pub(crate) const MAX_BURNED_AHEAD: usize = 16;

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
pub(crate) fn reserve(
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
pub(crate) fn settle(record: &mut FailureRecord, check: &SettleCheck) -> Applied<Settlement> {
    if locked_by_others(record, check) {
        return unchanged(Settlement::Locked);
    }
    *record = FailureRecord::default();
    changed(Settlement::Settled)
}

pub(crate) fn reserve_attempt(
    account: &mut Account,
    policy: &ThrottlePolicy,
    at: UnixTime,
) -> Applied<Reservation> {
    reserve(&mut account.failures, policy, at)
}

pub(crate) fn release_attempt(
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
        // A success or an unlock cleared the count meanwhile, or an earlier attempt's release
        // came first and took a count off the top: what is left cannot be told from earlier
        // failures, so it stays (see `Store::release_attempt`: toward locking).
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

pub(crate) fn set_pending(account: &mut Account, pending: &PendingTotp) -> Applied<bool> {
    account.pending = Some(pending.clone());
    changed(true)
}

/// Where a backend keeps the refusal event of an account's current delay window, so refused
/// attempts on a throttled account add to one event instead of writing one each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct RefusalNote {
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
pub(crate) fn note_refusal(
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

pub(crate) fn activate_pending(
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

pub(crate) fn consume_totp_step(
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

pub(crate) fn consume_backup_code(
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

pub(crate) fn record_password_login(
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
pub(crate) fn record_failure(account: &mut Account, burn_ahead_step: Option<u64>) -> Applied<bool> {
    if let (Some(step), Some(totp)) = (burn_ahead_step, account.totp.as_mut()) {
        burn_ahead(totp, step);
    }
    changed(true)
}

pub(crate) fn clear_failures(account: &mut Account) -> Applied<bool> {
    account.failures = FailureRecord::default();
    changed(true)
}

pub(crate) fn replace_codes(account: &mut Account, codes: &CodeSet) -> Applied<bool> {
    account.codes = Some(codes.clone());
    changed(true)
}

/// Marks set `set_id` confirmed at `at`, once: a later confirmation keeps the first time, and
/// one for a set that was replaced meanwhile never marks the new one.
pub(crate) fn confirm_codes(
    account: &mut Account,
    set_id: u64,
    at: UnixTime,
) -> Applied<CodesConfirmation> {
    let Some(set) = account.codes.as_mut().filter(|s| s.id == set_id) else {
        return unchanged(CodesConfirmation::SetReplaced);
    };
    if set.confirmed() {
        return unchanged(CodesConfirmation::AlreadyConfirmed);
    }
    set.confirmed_at = Some(at);
    changed(CodesConfirmation::Confirmed)
}

pub(crate) fn remove_two_factor(account: &mut Account) -> Applied<bool> {
    account.totp = None;
    account.pending = None;
    account.codes = None;
    changed(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::keys::SealedSecret;
    use crate::core::totp::TotpParams;

    const POLICY: ThrottlePolicy = ThrottlePolicy {
        free_failures: 2,
        base_delay_secs: 30,
        max_delay_secs: 3_600,
        lock_after: 4,
    };

    fn account(last_step: Option<u64>) -> Account {
        Account {
            name: "ann".into(),
            password: None,
            created_at: 0,
            totp: Some(ActiveTotp {
                issuer: "sparekey".into(),
                secret: SealedSecret {
                    nonce: [0; 24],
                    ciphertext: Vec::new(),
                },
                params: TotpParams::default(),
                last_step,
                enrolled_at: 0,
                burned_ahead: Vec::new(),
            }),
            pending: None,
            codes: None,
            failures: FailureRecord::default(),
            last_login: None,
        }
    }

    fn check() -> SettleCheck {
        SettleCheck { policy: POLICY }
    }

    #[test]
    fn an_attempt_is_counted_only_while_the_gate_is_open() {
        let mut a = account(None);
        let first = reserve_attempt(&mut a, &POLICY, 100);
        assert!(first.changed);
        assert_eq!(
            first.outcome,
            Reservation::Reserved {
                previous: FailureRecord::default(),
                reserved: FailureRecord {
                    consecutive: 1,
                    last_failure_at: Some(100)
                }
            }
        );
        reserve_attempt(&mut a, &POLICY, 100);
        // Two failures: the delay runs, and the next attempt is refused without a count.
        let refused = reserve_attempt(&mut a, &POLICY, 110);
        assert!(!refused.changed);
        assert_eq!(
            refused.outcome,
            Reservation::Refused(Gate::Delayed { seconds_left: 20 })
        );
        assert_eq!(a.failures.consecutive, 2);
        reserve_attempt(&mut a, &POLICY, 1_000);
        reserve_attempt(&mut a, &POLICY, 10_000);
        assert_eq!(
            reserve_attempt(&mut a, &POLICY, 100_000).outcome,
            Reservation::Refused(Gate::Locked)
        );
        assert_eq!(a.failures.consecutive, 4);
    }

    #[test]
    fn a_release_gives_back_only_its_own_count() {
        let mut a = account(None);
        a.failures = FailureRecord {
            consecutive: 3,
            last_failure_at: Some(50),
        };
        let Reservation::Reserved { previous, reserved } =
            reserve_attempt(&mut a, &POLICY, 1_000).outcome
        else {
            panic!("the gate was open");
        };
        release_attempt(&mut a, previous, reserved);
        assert_eq!(a.failures, previous, "untouched since: back to what it was");
        // Another attempt counted on top: only one count goes, the later time stays.
        reserve_attempt(&mut a, &ThrottlePolicy::default(), 2_000);
        reserve_attempt(&mut a, &ThrottlePolicy::default(), 2_001);
        release_attempt(&mut a, previous, reserved);
        assert_eq!(a.failures.consecutive, 4);
        assert_eq!(a.failures.last_failure_at, Some(2_001));
        // Cleared meanwhile (a success, an unlock): nothing of ours is left to give back.
        a.failures = FailureRecord::default();
        assert!(!release_attempt(&mut a, previous, reserved).changed);
    }

    #[test]
    fn releases_out_of_order_can_leave_one_count_standing_never_take_one_too_many() {
        let mut a = account(None);
        let reserve = |a: &mut Account, at| match reserve_attempt(a, &POLICY, at).outcome {
            Reservation::Reserved { previous, reserved } => (previous, reserved),
            other => panic!("{other:?}"),
        };
        // Two overlapping two-step logins, both with the right password.
        let first = reserve(&mut a, 100);
        let second = reserve(&mut a, 101);
        // In order, latest first: everything goes back.
        let mut in_order = a.clone();
        release_attempt(&mut in_order, second.0, second.1);
        release_attempt(&mut in_order, first.0, first.1);
        assert_eq!(in_order.failures, FailureRecord::default());
        // The earlier one's release first: one count stands.
        release_attempt(&mut a, first.0, first.1);
        release_attempt(&mut a, second.0, second.1);
        assert_eq!(a.failures.consecutive, 1);
    }

    #[test]
    fn a_success_settles_unless_other_attempts_locked_the_account() {
        let mut a = account(Some(10));
        // Its own count is the fourth, the last the policy allows: the success stands.
        a.failures.consecutive = 4;
        assert_eq!(
            consume_totp_step(&mut a, 11, 500, &check()).outcome,
            StepConsumption::Accepted
        );
        assert_eq!(a.failures, FailureRecord::default());
        // Four others besides its own: locked, and nothing changes.
        a.failures.consecutive = 5;
        let locked = consume_totp_step(&mut a, 12, 600, &check());
        assert_eq!(
            (locked.outcome, locked.changed),
            (StepConsumption::Locked, false)
        );
        assert_eq!(a.totp.as_ref().unwrap().last_step, Some(11));
        assert_eq!(
            record_password_login(&mut a, 600, &check()).outcome,
            Settlement::Locked
        );
        let mut record = a.failures;
        assert_eq!(settle(&mut record, &check()).outcome, Settlement::Locked);
    }

    #[test]
    fn a_step_burned_ahead_is_refused_and_the_steps_before_it_are_not() {
        let mut a = account(Some(100));
        record_failure(&mut a, Some(108));
        let totp = a.totp.as_ref().unwrap();
        assert_eq!(
            (totp.last_step, totp.burned_ahead.clone()),
            (Some(100), vec![108])
        );
        assert_eq!(
            consume_totp_step(&mut a, 101, 0, &check()).outcome,
            StepConsumption::Accepted
        );
        assert_eq!(
            consume_totp_step(&mut a, 108, 0, &check()).outcome,
            StepConsumption::Replay
        );
        assert_eq!(
            consume_totp_step(&mut a, 109, 0, &check()).outcome,
            StepConsumption::Accepted
        );
        assert!(
            a.totp.as_ref().unwrap().burned_ahead.is_empty(),
            "steps at or before the last used one need no list"
        );
    }

    #[test]
    fn a_full_burn_list_folds_its_earliest_step_into_the_last_used_one() {
        let mut a = account(Some(0));
        for step in (1..=MAX_BURNED_AHEAD as u64 + 1).map(|i| i * 10) {
            record_failure(&mut a, Some(step));
        }
        let totp = a.totp.as_ref().unwrap();
        assert_eq!(totp.burned_ahead.len(), MAX_BURNED_AHEAD);
        // The earliest (10) left the list, so everything up to it is spent: never reopened.
        assert_eq!(totp.last_step, Some(10));
        assert_eq!(
            consume_totp_step(&mut a, 10, 0, &check()).outcome,
            StepConsumption::Replay
        );
        assert_eq!(
            consume_totp_step(&mut a, 11, 0, &check()).outcome,
            StepConsumption::Accepted
        );
    }

    #[test]
    fn a_set_is_confirmed_once_and_only_while_it_is_the_accounts() {
        use crate::core::code_set::CodeSlot;
        let mut a = account(None);
        assert_eq!(
            confirm_codes(&mut a, 7, 100).outcome,
            CodesConfirmation::SetReplaced,
            "no set at all"
        );
        a.codes = Some(CodeSet {
            id: 7,
            salt: [0; 16],
            params: crate::core::password::HashParams::TEST_ONLY,
            created_at: 50,
            slots: vec![CodeSlot {
                digest: [1; 16],
                used_at: None,
            }],
            bound: true,
            confirmed_at: None,
        });
        let stale = confirm_codes(&mut a, 8, 100);
        assert_eq!(
            (stale.outcome, stale.changed),
            (CodesConfirmation::SetReplaced, false)
        );
        assert_eq!(a.codes.as_ref().unwrap().confirmed_at, None);
        let first = confirm_codes(&mut a, 7, 100);
        assert_eq!(
            (first.outcome, first.changed),
            (CodesConfirmation::Confirmed, true)
        );
        let again = confirm_codes(&mut a, 7, 200);
        assert_eq!(
            (again.outcome, again.changed),
            (CodesConfirmation::AlreadyConfirmed, false)
        );
        assert_eq!(
            a.codes.as_ref().unwrap().confirmed_at,
            Some(100),
            "the first time stands"
        );
        assert!(!a.facts().codes_never_confirmed);
    }

    #[test]
    fn refusals_add_up_within_a_window_and_start_again_in_the_next() {
        let window = FailureRecord {
            consecutive: 5,
            last_failure_at: Some(100),
        };
        let (first, existing) = note_refusal(None, window, 101);
        assert_eq!((first.count, first.first_at, existing), (1, 101, false));
        let stored = RefusalNote { event: 7, ..first };
        let (second, existing) = note_refusal(Some(stored), window, 105);
        assert_eq!(
            (second.count, second.event, second.first_at, existing),
            (2, 7, 101, true)
        );
        let next = FailureRecord {
            consecutive: 6,
            last_failure_at: Some(200),
        };
        let (third, existing) = note_refusal(Some(second), next, 201);
        assert_eq!((third.count, third.first_at, existing), (1, 201, false));
    }
}
