//! Owner notifications: which committed audit events the account's owner is told about, and
//! the [`Notifier`] they are handed to. Owns the notification vocabulary and the pure mapping
//! from audit events to it. Must never carry a secret, a password or a code (the types here
//! have no field that could hold one), never spawn a process (the app layer's notifier does),
//! and never be fed anything but events a store step has already committed: a notification
//! says what happened, never what is about to.

use crate::core::account::LOW_CODES;
use crate::core::audit::{AuditEvent, AuditKind};
use crate::core::clock::UnixTime;

/// What the owner is told about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifyEvent {
    /// A backup code was used (at a login, a verify or a step-up).
    BackupCodeUsed,
    /// After a use, at most [`LOW_CODES`] backup codes remain.
    CodesLow,
    /// Too many failures locked the account.
    AccountLocked,
    /// An operator turned the account's two-factor authentication off.
    TwoFactorReset,
    /// The holder turned two-factor authentication off (on a step-up).
    TwoFactorDisabled,
    /// A new authenticator replaced the old one.
    TwoFactorReplaced,
    /// The whole store was replaced by a backup.
    StoreRestored,
    /// A restore made backup codes of this account that had been used work again.
    UsedCodesRevived,
}

impl NotifyEvent {
    /// The stable snake_case name given to the command as `SPAREKEY_EVENT`.
    pub fn as_str(&self) -> &'static str {
        match self {
            NotifyEvent::BackupCodeUsed => "backup_code_used",
            NotifyEvent::CodesLow => "codes_low",
            NotifyEvent::AccountLocked => "account_locked",
            NotifyEvent::TwoFactorReset => "two_factor_reset",
            NotifyEvent::TwoFactorDisabled => "two_factor_disabled",
            NotifyEvent::TwoFactorReplaced => "two_factor_replaced",
            NotifyEvent::StoreRestored => "store_restored",
            NotifyEvent::UsedCodesRevived => "used_codes_revived",
        }
    }
}

/// One notification: an event, whose account it concerns (none for a whole-store restore),
/// when it was committed, and the backup-code counts where they apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub event: NotifyEvent,
    pub account: Option<String>,
    pub at: UnixTime,
    /// Unused backup codes left, after the event.
    pub remaining: Option<u32>,
    /// Backup codes in the account's set.
    pub total: Option<u32>,
}

/// What the audit events alone do not say, from the operation that wrote them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Facts {
    /// The size of the account's code set, for a backup-code use.
    pub total_codes: Option<u32>,
    /// The enrollment replaced an authenticator that was active (a first one is not news).
    pub replacing: bool,
}

/// Where notifications go. Called after the store step that committed their events returned;
/// an implementation must not fail the operation (it returns nothing) and should be quick or
/// deferred (the CLI's queues them until its store is closed).
pub trait Notifier: Send + Sync {
    fn notify(&self, notification: &Notification);
}

/// The notifier of a service nobody configured one for.
#[derive(Debug, Default)]
pub struct NoNotifier;

impl Notifier for NoNotifier {
    fn notify(&self, _: &Notification) {}
}

/// The notifications for `events`, committed together by one operation. Pure: no wildcard
/// arm, so a new audit kind must decide whether the owner hears of it.
pub fn for_events(events: &[AuditEvent], facts: Facts) -> Vec<Notification> {
    let mut out = Vec::new();
    for event in events {
        let note = |kind: NotifyEvent| Notification {
            event: kind,
            account: Some(event.account.clone()),
            at: event.at,
            remaining: None,
            total: None,
        };
        match &event.kind {
            AuditKind::BackupCodeUsed { remaining, .. } => {
                let counted = |kind| Notification {
                    remaining: Some(*remaining),
                    total: facts.total_codes,
                    ..note(kind)
                };
                out.push(counted(NotifyEvent::BackupCodeUsed));
                if *remaining as usize <= LOW_CODES {
                    out.push(counted(NotifyEvent::CodesLow));
                }
            }
            AuditKind::Locked => out.push(note(NotifyEvent::AccountLocked)),
            AuditKind::TwoFactorReset => out.push(note(NotifyEvent::TwoFactorReset)),
            AuditKind::TwoFactorDisabled => out.push(note(NotifyEvent::TwoFactorDisabled)),
            AuditKind::TwoFactorEnrolled if facts.replacing => {
                out.push(note(NotifyEvent::TwoFactorReplaced));
            }
            AuditKind::StoreRestored { .. } => out.push(Notification {
                account: None,
                ..note(NotifyEvent::StoreRestored)
            }),
            AuditKind::UsedCodesRevived { .. } => out.push(note(NotifyEvent::UsedCodesRevived)),
            AuditKind::AccountCreated
            | AuditKind::AccountRemoved
            | AuditKind::EnrollmentStarted
            | AuditKind::TwoFactorEnrolled
            | AuditKind::LoginSucceeded { .. }
            | AuditKind::FailedAttempt { .. }
            | AuditKind::ReplayRefused { .. }
            | AuditKind::Throttled { .. }
            | AuditKind::CodesRegenerated { .. }
            | AuditKind::Unlocked
            | AuditKind::OperatorLocked
            | AuditKind::OperatorFailuresCleared
            | AuditKind::OperatorPasswordSet
            | AuditKind::AttemptsRefused { .. }
            | AuditKind::CodesConfirmed
            // The kiosk's own events concern its operator, not an account's owner.
            | AuditKind::OperatorSignedIn
            | AuditKind::OperatorFailedAttempt { .. }
            | AuditKind::KioskStarted
            | AuditKind::KioskQuit
            | AuditKind::KioskIdleCleared => {}
        }
    }
    out
}

/// A notifier that keeps what it is given, for tests.
#[cfg(any(test, feature = "test-support"))]
#[derive(Debug, Default)]
pub struct RecordingNotifier {
    seen: std::sync::Mutex<Vec<Notification>>,
}

#[cfg(any(test, feature = "test-support"))]
impl RecordingNotifier {
    /// Everything notified so far, oldest first.
    pub fn seen(&self) -> Vec<Notification> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The event names notified so far, oldest first.
    pub fn events(&self) -> Vec<&'static str> {
        self.seen().iter().map(|n| n.event.as_str()).collect()
    }
}

#[cfg(any(test, feature = "test-support"))]
impl Notifier for RecordingNotifier {
    fn notify(&self, notification: &Notification) {
        (self.seen.lock().unwrap_or_else(|p| p.into_inner())).push(notification.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::audit::{FailureReason, LoginMethod};

    fn events(kinds: &[AuditKind]) -> Vec<AuditEvent> {
        (kinds.iter())
            .map(|kind| AuditEvent {
                at: 1_700_000_000,
                account: "alice".into(),
                kind: kind.clone(),
            })
            .collect()
    }

    fn names(kinds: &[AuditKind], facts: Facts) -> Vec<&'static str> {
        (for_events(&events(kinds), facts).iter())
            .map(|n| n.event.as_str())
            .collect()
    }

    #[test]
    fn a_backup_code_use_carries_its_counts_and_warns_at_the_threshold() {
        let facts = Facts {
            total_codes: Some(10),
            replacing: false,
        };
        let used = |remaining| AuditKind::BackupCodeUsed { slot: 2, remaining };
        let plenty = for_events(&events(&[used(LOW_CODES as u32 + 1)]), facts);
        assert_eq!(plenty.len(), 1);
        assert_eq!(plenty[0].event, NotifyEvent::BackupCodeUsed);
        assert_eq!(plenty[0].remaining, Some(LOW_CODES as u32 + 1));
        assert_eq!(plenty[0].total, Some(10));
        assert_eq!(plenty[0].account.as_deref(), Some("alice"));
        assert_eq!(plenty[0].at, 1_700_000_000);
        assert_eq!(
            names(&[used(LOW_CODES as u32)], facts),
            ["backup_code_used", "codes_low"]
        );
        assert_eq!(names(&[used(0)], facts), ["backup_code_used", "codes_low"]);
    }

    #[test]
    fn a_lock_a_reset_and_a_disable_notify() {
        let failed = AuditKind::FailedAttempt {
            reason: FailureReason::WrongTotp,
            consecutive: 10,
        };
        let f = Facts::default();
        assert_eq!(names(std::slice::from_ref(&failed), f), Vec::<&str>::new());
        assert_eq!(names(&[failed, AuditKind::Locked], f), ["account_locked"]);
        assert_eq!(names(&[AuditKind::TwoFactorReset], f), ["two_factor_reset"]);
        assert_eq!(
            names(&[AuditKind::TwoFactorDisabled], f),
            ["two_factor_disabled"]
        );
    }

    #[test]
    fn only_a_replacing_enrollment_notifies() {
        let kinds = [
            AuditKind::TwoFactorEnrolled,
            AuditKind::CodesRegenerated { count: 10 },
        ];
        assert!(names(&kinds, Facts::default()).is_empty());
        let replacing = Facts {
            replacing: true,
            ..Facts::default()
        };
        assert_eq!(names(&kinds, replacing), ["two_factor_replaced"]);
    }

    #[test]
    fn a_restore_notifies_once_for_the_store_and_once_per_revived_account() {
        let mut evs = events(&[AuditKind::StoreRestored { accounts: 3 }]);
        evs[0].account = "store:restore".into();
        evs.extend(events(&[AuditKind::UsedCodesRevived { count: 2 }]));
        let notes = for_events(&evs, Facts::default());
        assert_eq!(notes.len(), 2);
        assert_eq!(notes[0].event, NotifyEvent::StoreRestored);
        assert_eq!(notes[0].account, None);
        assert_eq!(notes[1].event, NotifyEvent::UsedCodesRevived);
        assert_eq!(notes[1].account.as_deref(), Some("alice"));
    }

    #[test]
    fn ordinary_events_notify_nothing() {
        let kinds = [
            AuditKind::LoginSucceeded {
                method: LoginMethod::Totp,
            },
            AuditKind::Unlocked,
            AuditKind::CodesConfirmed,
            AuditKind::AttemptsRefused {
                count: 3,
                locked: true,
            },
        ];
        assert!(names(&kinds, Facts::default()).is_empty());
    }
}
