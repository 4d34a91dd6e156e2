//! The kiosk's rules: which actions need the operator, what proves the operator is present, and
//! when that proof ends. Owns [`Action`], [`KioskPolicy`] and [`OperatorSession`]. Must never
//! check a password itself (the service does, in
//! [`crate::core::service::Service::start_operator_session`]) nor know about screens or keys.
//!
//! # How a face uses it
//! The service methods stay the same for every face (the CLI's operator is whoever can read the
//! store's files). A kiosk face instead asks [`KioskPolicy::allows`] before each action, with
//! the session it holds, if any. An [`OperatorSession`] cannot be built outside the core (its
//! fields are private, like [`crate::core::service::PendingLogin`]'s): the only way to get one
//! is the operator password, through the service. The TUI asks the policy in the one function
//! every screen change and every service call passes through (`Cx` in `tui::app`), so no screen
//! can reach an operator action without it.
//!
//! # When a session ends
//! After [`KioskPolicy::idle_secs`] without input (the same idle time that clears a kiosk's
//! screen), or as soon as the face shows the public login again ([`KioskPolicy::ends_session`]).

use std::time::Duration;

use crate::core::clock::UnixTime;

/// Consecutive wrong operator passwords after which the operator is locked out of the kiosk
/// (NIST SP 800-63B section 5.2.2 allows at most 100). Recovery is from a shell on the machine.
pub(crate) const OPERATOR_LOCK_AFTER: u32 = 100;

/// The CLI command that lets a shell operator recover a locked kiosk operator.
pub(crate) const OPERATOR_RECOVERY_COMMAND: &str = "sparekey kiosk reset-operator-password";

/// The name the kiosk operator's audit events are filed under. Account names cannot contain
/// ':', so no account can collide with it.
pub const OPERATOR_AUDIT_NAME: &str = "kiosk:operator";

/// What someone at a kiosk may try to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The public login, its steps and its throttle countdown.
    SignIn,
    /// What an account holder does to their own account, each step guarded by the account's
    /// password or code: enroll an authenticator, regenerate or view new codes, turn 2FA off,
    /// the signed-in summary.
    SelfService,
    /// The operator gate itself: whether a password is set, setting it at the first start,
    /// checking it.
    OperatorGate,
    /// The list of every account.
    ListAccounts,
    /// One account's settings and audit log.
    ViewAccount,
    CreateAccount,
    /// Clearing an account's failure counter.
    Unlock,
    /// Leaving the kiosk program.
    QuitKiosk,
}

/// The kiosk's operator policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KioskPolicy {
    /// Seconds without input after which the kiosk is idle: its screen is cleared and the
    /// operator session ends.
    pub idle_secs: i64,
}

impl KioskPolicy {
    pub fn new(idle_timeout: Duration) -> Self {
        Self {
            idle_secs: i64::try_from(idle_timeout.as_secs()).unwrap_or(i64::MAX),
        }
    }

    /// Whether `action` needs the operator. Everything that shows or changes an account other
    /// than one's own after signing in, and leaving the kiosk, does.
    pub fn requires_operator(action: Action) -> bool {
        match action {
            Action::SignIn | Action::SelfService | Action::OperatorGate => false,
            Action::ListAccounts
            | Action::ViewAccount
            | Action::CreateAccount
            | Action::Unlock
            | Action::QuitKiosk => true,
        }
    }

    /// Whether showing the screen of `action` ends the operator session: the public login is
    /// where the kiosk is handed to the next person.
    pub fn ends_session(action: Action) -> bool {
        action == Action::SignIn
    }

    /// Whether no input since `last_input` makes the kiosk idle at `now`.
    pub fn is_idle(&self, last_input: UnixTime, now: UnixTime) -> bool {
        now.saturating_sub(last_input) >= self.idle_secs
    }

    /// Whether `session` still proves the operator is present at `now`.
    pub fn session_active(&self, session: &OperatorSession, now: UnixTime) -> bool {
        !self.is_idle(session.last_active, now)
    }

    /// Whether `action` may go ahead at `now` with `session` (the one the face holds, if any).
    pub fn allows(&self, action: Action, session: Option<&OperatorSession>, now: UnixTime) -> bool {
        !Self::requires_operator(action) || session.is_some_and(|s| self.session_active(s, now))
    }
}

/// Proof that the operator password was given; only the service mints one, after checking the
/// password. Not `Clone`: the face holds one and drops it when the session ends.
#[derive(Debug)]
pub struct OperatorSession {
    started_at: UnixTime,
    last_active: UnixTime,
}

impl OperatorSession {
    pub(in crate::core) fn start(now: UnixTime) -> Self {
        Self {
            started_at: now,
            last_active: now,
        }
    }

    /// Records input at `now`: the session's idle time starts again.
    pub fn touch(&mut self, now: UnixTime) {
        self.last_active = self.last_active.max(now);
    }

    pub fn started_at(&self) -> UnixTime {
        self.started_at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Action; 8] = [
        Action::SignIn,
        Action::SelfService,
        Action::OperatorGate,
        Action::ListAccounts,
        Action::ViewAccount,
        Action::CreateAccount,
        Action::Unlock,
        Action::QuitKiosk,
    ];

    #[test]
    fn without_a_session_only_public_actions_are_allowed() {
        let policy = KioskPolicy::new(Duration::from_secs(60));
        let allowed: Vec<Action> = ALL
            .into_iter()
            .filter(|a| policy.allows(*a, None, 1_000))
            .collect();
        assert_eq!(
            allowed,
            [Action::SignIn, Action::SelfService, Action::OperatorGate]
        );
    }

    #[test]
    fn a_session_allows_everything_until_it_idles_out() {
        let policy = KioskPolicy::new(Duration::from_secs(60));
        let mut session = OperatorSession::start(1_000);
        assert!(ALL.iter().all(|a| policy.allows(*a, Some(&session), 1_059)));
        session.touch(1_059);
        assert!(policy.allows(Action::Unlock, Some(&session), 1_118));
        assert!(!policy.allows(Action::Unlock, Some(&session), 1_119));
        assert!(policy.allows(Action::SignIn, Some(&session), 1_119));
        // A clock set backwards does not move the last activity back.
        session.touch(10);
        assert!(!policy.allows(Action::Unlock, Some(&session), 1_119));
    }

    #[test]
    fn only_the_public_login_ends_a_session() {
        let ending: Vec<Action> = ALL
            .into_iter()
            .filter(|a| KioskPolicy::ends_session(*a))
            .collect();
        assert_eq!(ending, [Action::SignIn]);
    }
}
