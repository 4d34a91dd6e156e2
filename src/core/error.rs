//! The errors of the use cases, each one clear line, grouped into the few kinds a face needs to
//! react to (the CLI maps them to exit codes, the TUI to its status line). Must never put a
//! secret, password or code into a message.

use crate::core::backup_code::CodeInputError;
use crate::core::store::StoreError;
use crate::core::totp;

/// What kind of failure, for exit codes and colours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Wrong password or code, replay: exit 1.
    Rejected,
    /// Bad input or a request that does not fit the account's state: exit 2.
    Invalid,
    /// Throttled or locked: exit 3.
    Throttled,
    /// The store, the key file or the system around them failed: exit 4.
    Store,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RejectReason {
    /// Unknown account or wrong password: told apart by nobody, so names cannot be probed.
    WrongNameOrPassword,
    WrongPassword,
    WrongCode,
    TotpReplay,
    BackupCodeAlreadyUsed,
    ClockDrift {
        steps: i64,
        period: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub reason: RejectReason,
    /// Failed attempts left before the account locks (None when no account is involved).
    pub attempts_before_lock: Option<u32>,
    /// The wait before the next attempt, if this failure started or extended a delay.
    pub next_delay_secs: Option<i64>,
    pub now_locked: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    Invalid(String),
    /// A typed backup code that cannot be one (typo, wrong length…): no attempt was spent.
    InvalidBackupCode(CodeInputError),
    /// A checked password waited too long for its second factor.
    LoginExpired,
    /// A use case that could replace the second factor was asked for without a fresh, matching
    /// [`crate::core::step_up::StepUp`] (the password alone, or a proof that expired).
    StepUpNeeded(String),
    NotFound(String),
    AlreadyExists(String),
    Rejected(Rejection),
    Throttled {
        seconds_left: i64,
    },
    Locked(String),
    Store(StoreError),
    /// The key file is missing, unreadable, unsafe (others may read it) or belongs to another
    /// store. Never a store error: the store is fine, the key to it is not.
    Key(String),
    /// Reading or writing outside the store failed: standard input or output, the terminal, a
    /// file being written (an export, a backup).
    Io(String),
    /// A check of the environment found something to fix (the line sums the findings up).
    NeedsFixing(String),
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Invalid(_)
            | Error::InvalidBackupCode(_)
            | Error::LoginExpired
            | Error::NotFound(_)
            | Error::AlreadyExists(_) => ErrorKind::Invalid,
            Error::Rejected(_) | Error::StepUpNeeded(_) => ErrorKind::Rejected,
            Error::Throttled { .. } | Error::Locked(_) => ErrorKind::Throttled,
            Error::Store(_) | Error::Key(_) | Error::Io(_) | Error::NeedsFixing(_) => {
                ErrorKind::Store
            }
        }
    }

    pub(crate) fn no_account(name: &str) -> Self {
        Error::NotFound(format!("no account named '{name}'"))
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        Error::Store(e)
    }
}

impl std::fmt::Display for RejectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RejectReason::WrongNameOrPassword => f.write_str("wrong account name or password"),
            RejectReason::WrongPassword => f.write_str("wrong password"),
            RejectReason::WrongCode => f.write_str("wrong code"),
            RejectReason::TotpReplay => {
                f.write_str("that authenticator code was already used: wait for the next one")
            }
            RejectReason::BackupCodeAlreadyUsed => f.write_str("that backup code was already used"),
            RejectReason::ClockDrift { steps, period } => {
                write!(f, "wrong code: {}", totp::drift_advice(*steps, *period))
            }
        }
    }
}

/// Formats a duration in seconds as "45 s", "3 min 5 s" or "1 h 2 min".
pub fn human_duration(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        0..60 => format!("{s} s"),
        60..3600 if s % 60 == 0 => format!("{} min", s / 60),
        60..3600 => format!("{} min {} s", s / 60, s % 60),
        _ if s % 3600 / 60 == 0 => format!("{} h", s / 3600),
        _ => format!("{} h {} min", s / 3600, s % 3600 / 60),
    }
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.reason)?;
        if self.now_locked {
            return f.write_str("; the account is now locked: an operator must unlock it");
        }
        if let Some(delay) = self.next_delay_secs {
            write!(
                f,
                "; wait {} before the next attempt",
                human_duration(delay)
            )?;
        }
        match self.attempts_before_lock {
            Some(1) => f.write_str(" (1 attempt left before the account locks)"),
            Some(n) if n <= 10 => write!(f, " ({n} attempts left before the account locks)"),
            _ => Ok(()),
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Invalid(m)
            | Error::NotFound(m)
            | Error::AlreadyExists(m)
            | Error::Locked(m)
            | Error::Key(m)
            | Error::StepUpNeeded(m)
            | Error::Io(m)
            | Error::NeedsFixing(m) => f.write_str(m),
            Error::InvalidBackupCode(e) => write!(f, "{e}"),
            Error::LoginExpired => {
                f.write_str("the sign-in took too long: enter the password again")
            }
            Error::Rejected(r) => write!(f, "{r}"),
            Error::Throttled { seconds_left } => write!(
                f,
                "too many failed attempts: try again in {}",
                human_duration(*seconds_left)
            ),
            Error::Store(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(human_duration(45), "45 s");
        assert_eq!(human_duration(60), "1 min");
        assert_eq!(human_duration(185), "3 min 5 s");
        assert_eq!(human_duration(3600), "1 h");
        assert_eq!(human_duration(3720), "1 h 2 min");
        assert_eq!(human_duration(-5), "0 s");
    }

    #[test]
    fn rejection_lines() {
        let r = Rejection {
            reason: RejectReason::WrongCode,
            attempts_before_lock: Some(3),
            next_delay_secs: Some(120),
            now_locked: false,
        };
        assert_eq!(
            r.to_string(),
            "wrong code; wait 2 min before the next attempt (3 attempts left before the account locks)"
        );
        let locked = Rejection {
            now_locked: true,
            ..r
        };
        assert_eq!(
            locked.to_string(),
            "wrong code; the account is now locked: an operator must unlock it"
        );
        assert_eq!(Error::Rejected(locked).kind(), ErrorKind::Rejected);
    }
}
