//! Audit events: what happened to which account, and when. Owns the event vocabulary and its
//! one-line descriptions. Must never carry a secret, password or code (slots are numbers; the
//! types here have no field that could hold one).

use serde::{Deserialize, Serialize};

use crate::core::clock::UnixTime;

/// How a login's second factor was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LoginMethod {
    /// The account has no second factor yet.
    Password,
    Totp,
    BackupCode,
}

impl LoginMethod {
    /// The word used in JSON output and the audit log.
    pub fn as_str(&self) -> &'static str {
        match self {
            LoginMethod::Password => "password",
            LoginMethod::Totp => "totp",
            LoginMethod::BackupCode => "backup_code",
        }
    }
}

/// Why an attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FailureReason {
    WrongPassword,
    WrongTotp,
    /// The code matched a step outside the window: the authenticator's clock is off.
    TotpClockDrift {
        steps: i64,
    },
    WrongBackupCode,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuditKind {
    AccountCreated,
    AccountRemoved,
    EnrollmentStarted,
    TwoFactorEnrolled,
    LoginSucceeded {
        method: LoginMethod,
    },
    BackupCodeUsed {
        slot: u32,
        remaining: u32,
    },
    FailedAttempt {
        reason: FailureReason,
        consecutive: u32,
    },
    ReplayRefused {
        method: LoginMethod,
    },
    /// One refused attempt, as sparekey wrote them before refusals were coalesced into
    /// [`AuditKind::AttemptsRefused`]; kept so older logs still read.
    Throttled {
        seconds_left: i64,
    },
    Locked,
    CodesRegenerated {
        count: u32,
    },
    Unlocked,
    TwoFactorReset,
    TwoFactorDisabled,
    /// The kiosk operator password locked after too many failures.
    OperatorLocked,
    /// A shell operator cleared the kiosk operator's failures.
    OperatorFailuresCleared,
    /// The kiosk operator password was set.
    OperatorPasswordSet,
    /// Attempts refused while the account was throttled (or locked): one event per delay
    /// window, its count raised by each further refusal, so a flood cannot fill the log.
    AttemptsRefused {
        count: u32,
        locked: bool,
    },
    /// The store was replaced by a backup holding `accounts` accounts.
    StoreRestored {
        accounts: u32,
    },
    /// A restore brought back `count` backup codes of this account that had been used since
    /// the backup was taken: they work again.
    UsedCodesRevived {
        count: u32,
    },
    /// The holder confirmed keeping the current backup codes: typed one back on the screen
    /// that showed them, or the CLI delivered them to a file or stream that keeps them.
    CodesConfirmed,
    /// The kiosk operator password was given right: an operator session started.
    OperatorSignedIn,
    /// A wrong kiosk operator password, `consecutive` in a row (counting this one).
    OperatorFailedAttempt {
        consecutive: u32,
    },
    /// The console started in kiosk mode.
    KioskStarted,
    /// The operator left the kiosk program.
    KioskQuit,
    /// The kiosk sat idle: its screen was cleared back to the public login.
    KioskIdleCleared,
}

/// What a kiosk itself reports, apart from any change to the store: the subset of
/// [`AuditKind`] a face may append on its own (see `Service::kiosk_event`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KioskEvent {
    Started,
    Quit,
    IdleCleared,
}

impl KioskEvent {
    pub fn kind(self) -> AuditKind {
        match self {
            KioskEvent::Started => AuditKind::KioskStarted,
            KioskEvent::Quit => AuditKind::KioskQuit,
            KioskEvent::IdleCleared => AuditKind::KioskIdleCleared,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    pub at: UnixTime,
    pub account: String,
    pub kind: AuditKind,
}

impl AuditKind {
    /// A stable snake_case name for scripts.
    pub fn name(&self) -> &'static str {
        match self {
            AuditKind::AccountCreated => "account_created",
            AuditKind::AccountRemoved => "account_removed",
            AuditKind::EnrollmentStarted => "enrollment_started",
            AuditKind::TwoFactorEnrolled => "two_factor_enrolled",
            AuditKind::LoginSucceeded { .. } => "login",
            AuditKind::BackupCodeUsed { .. } => "backup_code_used",
            AuditKind::FailedAttempt { .. } => "failed_attempt",
            AuditKind::ReplayRefused { .. } => "replay_refused",
            AuditKind::Throttled { .. } => "throttled",
            AuditKind::Locked => "locked",
            AuditKind::CodesRegenerated { .. } => "codes_regenerated",
            AuditKind::Unlocked => "unlocked",
            AuditKind::TwoFactorReset => "two_factor_reset",
            AuditKind::TwoFactorDisabled => "two_factor_disabled",
            AuditKind::OperatorLocked => "operator_locked",
            AuditKind::OperatorFailuresCleared => "operator_failures_cleared",
            AuditKind::OperatorPasswordSet => "operator_password_set",
            AuditKind::AttemptsRefused { .. } => "attempts_refused",
            AuditKind::StoreRestored { .. } => "store_restored",
            AuditKind::UsedCodesRevived { .. } => "used_codes_revived",
            AuditKind::CodesConfirmed => "codes_confirmed",
            AuditKind::OperatorSignedIn => "operator_signed_in",
            AuditKind::OperatorFailedAttempt { .. } => "operator_failed_attempt",
            AuditKind::KioskStarted => "kiosk_started",
            AuditKind::KioskQuit => "kiosk_quit",
            AuditKind::KioskIdleCleared => "kiosk_idle_cleared",
        }
    }

    /// Whether retention may drop this event before any other: refusals of a throttled
    /// account say nothing that the failures before them did not, and a kiosk's idle clears
    /// (one each time somebody walks away, so many a day) change nothing and prove nobody's
    /// presence. Everything else (logins, failures, operator sign-ins, kiosk starts and quits,
    /// locks, resets, enrollments, regenerations, restores, ...) is a security event and goes
    /// only once no noise is left. No wildcard, so a new kind must choose.
    pub fn is_noise(&self) -> bool {
        match self {
            AuditKind::Throttled { .. }
            | AuditKind::AttemptsRefused { .. }
            | AuditKind::KioskIdleCleared => true,
            AuditKind::AccountCreated
            | AuditKind::AccountRemoved
            | AuditKind::EnrollmentStarted
            | AuditKind::TwoFactorEnrolled
            | AuditKind::LoginSucceeded { .. }
            | AuditKind::BackupCodeUsed { .. }
            | AuditKind::FailedAttempt { .. }
            | AuditKind::ReplayRefused { .. }
            | AuditKind::Locked
            | AuditKind::CodesRegenerated { .. }
            | AuditKind::Unlocked
            | AuditKind::TwoFactorReset
            | AuditKind::TwoFactorDisabled
            | AuditKind::OperatorLocked
            | AuditKind::OperatorFailuresCleared
            | AuditKind::OperatorPasswordSet
            | AuditKind::StoreRestored { .. }
            | AuditKind::UsedCodesRevived { .. }
            | AuditKind::CodesConfirmed
            | AuditKind::OperatorSignedIn
            | AuditKind::OperatorFailedAttempt { .. }
            | AuditKind::KioskStarted
            | AuditKind::KioskQuit => false,
        }
    }
}

impl std::fmt::Display for AuditKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuditKind::AccountCreated => write!(f, "account created"),
            AuditKind::AccountRemoved => write!(f, "account removed"),
            AuditKind::EnrollmentStarted => write!(f, "authenticator enrollment started"),
            AuditKind::TwoFactorEnrolled => write!(f, "two-factor authentication enrolled"),
            AuditKind::LoginSucceeded { method } => match method {
                LoginMethod::Password => write!(f, "login with password only"),
                LoginMethod::Totp => write!(f, "login with authenticator code"),
                LoginMethod::BackupCode => write!(f, "login with backup code"),
            },
            AuditKind::BackupCodeUsed { slot, remaining } => {
                write!(f, "backup code #{} used, {remaining} remaining", slot + 1)
            }
            AuditKind::FailedAttempt {
                reason,
                consecutive,
            } => {
                let why = match reason {
                    FailureReason::WrongPassword => "wrong password".to_string(),
                    FailureReason::WrongTotp => "wrong authenticator code".to_string(),
                    FailureReason::TotpClockDrift { steps } => {
                        format!("authenticator clock off by {steps} steps")
                    }
                    FailureReason::WrongBackupCode => "wrong backup code".to_string(),
                };
                write!(f, "failed attempt ({why}), {consecutive} in a row")
            }
            AuditKind::ReplayRefused { method } => {
                write!(
                    f,
                    "replayed {} refused",
                    match method {
                        LoginMethod::BackupCode => "backup code",
                        _ => "authenticator code",
                    }
                )
            }
            AuditKind::Throttled { seconds_left } => {
                write!(f, "attempt refused while throttled ({seconds_left} s left)")
            }
            AuditKind::Locked => write!(f, "account locked after repeated failures"),
            AuditKind::CodesRegenerated { count } => write!(f, "{count} new backup codes issued"),
            AuditKind::Unlocked => write!(f, "account unlocked by operator"),
            AuditKind::TwoFactorReset => write!(f, "two-factor authentication reset by operator"),
            AuditKind::TwoFactorDisabled => write!(f, "two-factor authentication turned off"),
            AuditKind::OperatorLocked => {
                write!(f, "kiosk operator password locked after repeated failures")
            }
            AuditKind::OperatorFailuresCleared => {
                write!(f, "kiosk operator failures cleared from the shell")
            }
            AuditKind::OperatorPasswordSet => write!(f, "kiosk operator password set"),
            AuditKind::AttemptsRefused { count, locked } => {
                let attempts = if *count == 1 { "attempt" } else { "attempts" };
                let why = if *locked { "locked" } else { "throttled" };
                write!(f, "{count} {attempts} refused while {why}")
            }
            AuditKind::StoreRestored { accounts } => {
                write!(f, "store replaced by a backup of {accounts} accounts")
            }
            AuditKind::UsedCodesRevived { count } => write!(
                f,
                "restore brought back {count} backup codes used since the backup: they work again"
            ),
            AuditKind::CodesConfirmed => write!(f, "backup codes confirmed as kept"),
            AuditKind::OperatorSignedIn => write!(f, "kiosk operator signed in"),
            AuditKind::OperatorFailedAttempt { consecutive } => {
                write!(f, "wrong kiosk operator password, {consecutive} in a row")
            }
            AuditKind::KioskStarted => write!(f, "kiosk started"),
            AuditKind::KioskQuit => write!(f, "kiosk quit by the operator"),
            AuditKind::KioskIdleCleared => write!(f, "kiosk idle: screen cleared"),
        }
    }
}
