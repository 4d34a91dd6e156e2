//! The simulated login: account name, password, then, only when the core asks for it, one code
//! field that takes an authenticator code or a backup code alike (the core's
//! [`parse_second_factor`] tells them apart). Every printable key is typed into the focused
//! field, never obeyed as a command. Owns the typed fields (zeroized), the core's
//! [`PendingLogin`] between the password and the code, and what the core said about throttling,
//! shown as a live countdown. Must never ask anything about the account before the password
//! ([`Call::StartLogin`] is the first call a login makes), and never decide whether a code is
//! right, whether an attempt is allowed or how long to wait: it shows the core's answers
//! ([`Call::FinishLogin`], and [`Call::Gate`] only to count down a delay the core announced).
//! The typo checks of backup codes are the core's parser.

use ratatui::Frame;
use ratatui::crossterm::event::{KeyCode, KeyEvent};
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};

use crate::core::account::printable;
use crate::core::audit::LoginMethod;
use crate::core::backup_code::{CODE_SYMBOLS, CodeInputError, FORMAT_HINT};
use crate::core::error::{Error, human_duration};
use crate::core::service::{
    LoginStep, LoginSuccess, PendingLogin, SecondFactor, parse_second_factor,
};
use crate::core::step_up::StepUp;
use crate::core::throttle::Gate;
use crate::tui::app::{Call, Component, Cx, Outcome, Screen, Target, ViewCx};
use crate::tui::keys::{KeyHint, hint};
use crate::tui::screens::secure::Secure;
use crate::tui::widgets::{Field, Theme, field_line, panel};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Name,
    Password,
    /// The core checked the password and asked for a second factor: an authenticator code or
    /// a backup code, in the same field.
    Code,
}

/// What the code typed so far looks like, by the core's own parsers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Live {
    /// All the digits of an authenticator code.
    Totp,
    /// A well-formed backup code.
    Backup,
    /// A backup code with a mistake the parser can name.
    Typo(CodeInputError),
}

/// A warning is shown this many failed attempts (or fewer) before the account locks.
pub const WARN_ATTEMPTS: u32 = 3;

#[derive(Debug)]
pub struct Login {
    pub name: Field,
    pub password: Field,
    pub code: Field,
    pub step: Step,
    /// The core's word that the password was right, held in the code steps only. It moves into
    /// [`Call::FinishLogin`] while a code is checked and comes back for a retry.
    pending: Option<PendingLogin>,
    /// The core's gate for this account, once a login attempt was answered with a delay or a
    /// lock; refreshed every tick while a delay runs.
    pub gate: Option<Gate>,
    /// The core parsers' live verdict on the code being typed; `None` while it is incomplete.
    pub live: Option<Live>,
    /// Failed attempts left before the lock, from the core's last refusal of this name.
    pub attempts_left: Option<u32>,
    /// Set by the refusal that locked the account, so the panel says it happened just now.
    pub locked_now: bool,
}

const NAME_KEYS: &[KeyHint] = &[
    hint("Enter", "continue"),
    hint("Ctrl-U", "clear the field"),
    hint("Esc", "accounts"),
];
const PASSWORD_KEYS: &[KeyHint] = &[
    hint("Enter", "sign in"),
    hint("Ctrl-U", "clear the field"),
    hint("Esc", "back"),
];
const CODE_KEYS: &[KeyHint] = &[
    hint("Enter", "sign in"),
    hint("Ctrl-U", "clear the field"),
    hint("Esc", "back"),
];

impl Default for Login {
    fn default() -> Self {
        Self::new()
    }
}

impl Login {
    pub fn new() -> Self {
        Self {
            name: Field::new(),
            password: Field::masked(),
            code: Field::new(),
            step: Step::Name,
            pending: None,
            gate: None,
            live: None,
            attempts_left: None,
            locked_now: false,
        }
    }

    /// Starts at the password with the name filled in (from the accounts list).
    pub fn for_account(name: &str) -> Self {
        Self {
            name: Field::with_text(name),
            step: Step::Password,
            ..Self::new()
        }
    }

    /// Nothing typed and nothing shown: safe to leave on a kiosk.
    pub fn is_pristine(&self) -> bool {
        self.step == Step::Name
            && self.name.is_empty()
            && self.gate.is_none()
            && self.pending.is_none()
    }

    /// The account whose password the core accepted, while its second factor is awaited.
    pub fn pending_account(&self) -> Option<&str> {
        self.pending.as_ref().map(PendingLogin::account)
    }

    fn blocked(&self) -> bool {
        matches!(self.gate, Some(Gate::Delayed { .. } | Gate::Locked))
    }

    /// Back to an empty password: the pending login (if any) is dropped, so the password must
    /// be given again.
    fn back_to_password(&mut self) {
        self.pending = None;
        self.password.clear();
        self.code.clear();
        self.live = None;
        self.step = Step::Password;
    }

    /// To the code, holding the core's pending login.
    fn ask_for_code(&mut self, pending: PendingLogin) {
        self.password.clear();
        self.code.clear();
        self.live = None;
        self.gate = None;
        self.pending = Some(pending);
        self.step = Step::Code;
    }

    /// Forgets what the core said about the previous name's attempts.
    fn forget_gate(&mut self) {
        self.gate = None;
        self.attempts_left = None;
        self.locked_now = false;
    }

    fn submit_password(&mut self, cx: &mut Cx) {
        if self.blocked() {
            // The core would refuse anyway; not asking spares the audit log a throttled event.
            return;
        }
        // Moved into the call: the screen keeps no copy of a password once it is sent.
        cx.call(Call::StartLogin {
            name: self.name.as_str().to_string(),
            password: self.password.take(),
        });
    }

    fn submit_code(&mut self, cx: &mut Cx) {
        if self.blocked() {
            return;
        }
        // A malformed code (a backup-code typo, too few digits) is caught here by the core's
        // parser and costs no attempt. It also means that whatever the core refuses afterwards
        // is about the attempt or the pending login, never about the typing.
        if let Err(e) = parse_second_factor(self.code.as_str(), cx.options.totp) {
            self.typo(&e, cx);
            return;
        }
        let Some(pending) = self.pending.take() else {
            // Not reachable by keys: the code steps are entered with a pending login only.
            self.back_to_password();
            return;
        };
        self.live = None;
        cx.call(Call::FinishLogin {
            pending,
            code: self.code.take(),
        });
    }

    /// Shows an input mistake; the code stays in the field to be corrected.
    fn typo(&mut self, error: &Error, cx: &mut Cx) {
        if let Error::InvalidBackupCode(e) = error {
            self.live = Some(Live::Typo(e.clone()));
        }
        cx.error(format!("{error} (no attempt was used)"));
    }

    /// The live verdict: the core's own [`parse_second_factor`], which tells an authenticator
    /// code from a backup code; no verdict while either is still incomplete.
    fn update_live(&mut self, cx: &Cx) {
        self.live = match parse_second_factor(self.code.as_str(), cx.options.totp) {
            Ok(SecondFactor::Totp(_)) => Some(Live::Totp),
            Ok(SecondFactor::BackupCode(_)) => Some(Live::Backup),
            Err(Error::InvalidBackupCode(CodeInputError::WrongLength { symbols }))
                if symbols < CODE_SYMBOLS =>
            {
                None
            }
            Err(Error::InvalidBackupCode(e)) => Some(Live::Typo(e)),
            // Empty, or fewer digits than an authenticator code: still being typed.
            Err(_) => None,
        };
    }

    /// Shows why the core refused an attempt, and takes in the delay or lock it announced for
    /// the countdown. A refusal that is only "wait" or "locked" is shown by the panel alone,
    /// which counts down live, rather than by a status line that would go stale.
    fn refused(&mut self, error: &Error, cx: &mut Cx) {
        match error {
            Error::Throttled { seconds_left } => {
                self.gate = Some(Gate::Delayed {
                    seconds_left: *seconds_left,
                });
                cx.clear_status();
                return;
            }
            Error::Locked(_) => {
                self.gate = Some(Gate::Locked);
                cx.clear_status();
                return;
            }
            Error::Rejected(r) if r.now_locked => {
                self.gate = Some(Gate::Locked);
                self.locked_now = true;
            }
            Error::Rejected(r) => {
                self.attempts_left = r.attempts_before_lock;
                if let Some(delay) = r.next_delay_secs {
                    self.gate = Some(Gate::Delayed {
                        seconds_left: delay,
                    });
                }
            }
            _ => {}
        }
        cx.error(error);
    }

    fn signed_in(
        &mut self,
        name: &str,
        success: LoginSuccess,
        step_up: Option<StepUp>,
        cx: &mut Cx,
    ) {
        let how = match success.method {
            LoginMethod::Password => "with the password only",
            LoginMethod::Totp => "with the authenticator",
            LoginMethod::BackupCode => "with a backup code",
        };
        cx.info(format!("signed in as '{name}' {how}"));
        cx.show(Screen::Secure(Secure::new(name, success, step_up)));
    }
}

impl Component for Login {
    fn title(&self) -> String {
        "Sign in (simulated login)".into()
    }

    fn keys(&self) -> &'static [KeyHint] {
        match self.step {
            Step::Name => NAME_KEYS,
            Step::Password => PASSWORD_KEYS,
            Step::Code => CODE_KEYS,
        }
    }

    fn typing(&self) -> bool {
        // Every step has a field: a backup code holds letters, so no printable key is a command.
        true
    }

    fn on_key(&mut self, key: KeyEvent, cx: &mut Cx) {
        match (self.step, key.code) {
            (Step::Name, KeyCode::Esc) => cx.open(Target::Accounts),
            (Step::Name, KeyCode::Enter) if !self.name.is_empty() => {
                // Nothing is asked about the name: the password comes first.
                cx.clear_status();
                self.step = Step::Password;
            }
            (Step::Name, _) => {
                self.name.edit(&key);
            }
            (Step::Password, KeyCode::Esc) => {
                self.password.clear();
                // The gate is this name's: counting it down while another name is typed
                // would look up that name before its password.
                self.forget_gate();
                self.step = Step::Name;
            }
            (Step::Password, KeyCode::Enter) if !self.password.is_empty() => {
                self.submit_password(cx)
            }
            (Step::Password, _) => {
                self.password.edit(&key);
            }
            (Step::Code, KeyCode::Esc) => self.back_to_password(),
            (Step::Code, KeyCode::Enter) => self.submit_code(cx),
            (Step::Code, _) if self.code.edit(&key) => self.update_live(cx),
            _ => {}
        }
    }

    fn on_tick(&mut self, cx: &mut Cx) {
        // Only a delay the core announced after a login attempt is counted down.
        if matches!(self.gate, Some(Gate::Delayed { .. })) && !self.name.is_empty() {
            cx.call(Call::Gate {
                name: self.name.as_str().to_string(),
            });
        }
    }

    fn on_outcome(&mut self, outcome: Outcome, cx: &mut Cx) {
        match outcome {
            Outcome::Gate(Ok(gate)) => {
                self.gate = Some(gate).filter(|g| *g != Gate::Open);
                if self.gate.is_none() {
                    cx.info("you may try again now");
                }
            }
            Outcome::LoginStarted { name, result } => match result {
                Ok(LoginStep::Done(success)) => self.signed_in(&name, success, None, cx),
                Ok(LoginStep::SecondFactorNeeded(pending)) => {
                    cx.clear_status();
                    self.ask_for_code(pending);
                }
                // The password was moved into the call: the field is empty for another try.
                Err(e) => self.refused(&e, cx),
            },
            Outcome::LoginFinished {
                pending,
                result,
                step_up,
            } => match result {
                Ok(success) => self.signed_in(pending.account(), success, step_up, cx),
                Err(e @ Error::InvalidBackupCode(_)) => {
                    self.pending = Some(pending);
                    self.typo(&e, cx);
                }
                // The code was well-formed, so the core refuses the pending login itself: it
                // expired, or the account changed meanwhile.
                Err(e @ (Error::LoginExpired | Error::Invalid(_) | Error::NotFound(_))) => {
                    self.back_to_password();
                    cx.error(e);
                }
                // A wrong code, a delay or a lock: the same pending login may try again when
                // the core allows it.
                Err(e) => {
                    self.pending = Some(pending);
                    self.code.clear();
                    self.live = None;
                    self.refused(&e, cx);
                }
            },
            _ => {}
        }
    }

    fn draw(&self, frame: &mut Frame<'_>, area: Rect, vx: &ViewCx) {
        let t = &vx.theme;
        let mut lines = vec![Line::raw("")];
        lines.push(field_line(
            "Account",
            &self.name,
            self.step == Step::Name,
            t,
        ));
        match self.step {
            Step::Name => {}
            Step::Password => lines.push(field_line("Password", &self.password, true, t)),
            // The password is no longer held: the core checked it.
            Step::Code => lines.push(Line::from(vec![
                Span::raw(format!("{:>17}: ", "Password")),
                Span::styled("✓ checked", t.ok()),
            ])),
        }
        if self.step == Step::Code {
            lines.push(Line::raw(""));
            lines.push(Line::raw(format!(
                "Enter the {}-digit code from your authenticator,",
                vx.totp.digits
            )));
            lines.push(Line::raw(format!(
                "or, without your device, a backup code ({FORMAT_HINT})."
            )));
            lines.push(field_line("Code", &self.code, true, t));
            lines.push(match &self.live {
                Some(Live::Totp) => {
                    Line::styled(format!("{:19}✓ an authenticator code", ""), t.ok())
                }
                Some(Live::Backup) => {
                    Line::styled(format!("{:19}✓ a well-formed backup code", ""), t.ok())
                }
                Some(Live::Typo(e)) => Line::styled(format!("{:19}✗ {e}", ""), t.error()),
                None => Line::raw(""),
            });
            lines.push(Line::styled(
                "Each backup code works once; any case or spacing is fine.",
                t.dim(),
            ));
        }
        self.draw_gate(&mut lines, t);
        frame.render_widget(
            Paragraph::new(lines)
                .wrap(Wrap { trim: false })
                .block(panel()),
            area,
        );
    }
}

impl Login {
    /// The throttle's part of the panel: the countdown, the warning before the lock, and how to
    /// get a locked account unlocked.
    fn draw_gate(&self, lines: &mut Vec<Line<'static>>, t: &Theme) {
        // Shown escaped (what the terminal would obey in a name is drawn as \u{..}), in the
        // command to copy too: the raw name cannot be drawn safely.
        let shown = printable(self.name.as_str());
        let name = shown.as_ref();
        match self.gate {
            Some(Gate::Delayed { seconds_left }) => {
                lines.push(Line::raw(""));
                lines.push(Line::styled(
                    format!(
                        "Too many failed attempts: next attempt allowed in {}",
                        human_duration(seconds_left)
                    ),
                    t.warn(),
                ));
            }
            Some(Gate::Locked) => {
                lines.push(Line::raw(""));
                let when = if self.locked_now { "is now" } else { "is" };
                lines.push(Line::styled(
                    format!("'{name}' {when} locked after too many failed attempts."),
                    t.error(),
                ));
                lines.push(Line::styled(
                    "To unlock it, an operator presses u on it in the account list,",
                    t.error(),
                ));
                lines.push(Line::styled(
                    format!("or runs: sparekey unlock {}", shell_word(name)),
                    t.error(),
                ));
                return;
            }
            _ => {}
        }
        if let Some(left) = self
            .attempts_left
            .filter(|n| (1..=WARN_ATTEMPTS).contains(n))
        {
            let attempts = if left == 1 { "attempt" } else { "attempts" };
            lines.push(Line::styled(
                format!("Careful: {left} more failed {attempts} will lock '{name}'."),
                t.warn(),
            ));
        }
    }
}

/// The name as one shell word, quoted when it needs to be, for a command to copy.
fn shell_word(name: &str) -> String {
    let plain = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "@._-+=:,/".contains(c));
    if plain {
        name.to_string()
    } else {
        format!("'{}'", name.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Names come from the store (a record written by schema 1 or a bug may hold anything):
    /// the panel draws them escaped, never as the escapes and bidi controls they hold.
    #[test]
    fn the_gate_panel_draws_a_name_escaped() {
        let mut login = Login::new();
        login.name.set("b\u{1b}[2J\u{202E}b");
        for (gate, left) in [(Some(Gate::Locked), None), (None, Some(1))] {
            login.gate = gate;
            login.attempts_left = left;
            let mut lines = Vec::new();
            login.draw_gate(&mut lines, &Theme::plain());
            let text: String = lines.iter().map(|l| l.to_string() + "\n").collect();
            assert!(text.contains("b\\u{001B}[2J\\u{202E}b"), "{text}");
            assert!(
                !text.contains('\u{1b}') && !text.contains('\u{202E}'),
                "{text:?}"
            );
        }
    }
}
