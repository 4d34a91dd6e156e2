//! The simulated login: account name, password, then, only when the core asks for it, the
//! authenticator code or, after `b`, a backup code. Owns the typed fields (zeroized), the core's
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

use crate::core::audit::LoginMethod;
use crate::core::backup_code::{BackupCode, CODE_SYMBOLS, CodeInputError, FORMAT_HINT};
use crate::core::error::{Error, human_duration};
use crate::core::service::{LoginStep, LoginSuccess, PendingLogin, parse_second_factor};
use crate::core::step_up::StepUp;
use crate::core::throttle::Gate;
use crate::tui::app::{Call, Component, Cx, Outcome, Screen, Target, ViewCx};
use crate::tui::keys::{KeyHint, hint};
use crate::tui::screens::secure::Secure;
use crate::tui::widgets::{Field, field_line, panel};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Name,
    Password,
    /// The core checked the password and asked for a second factor.
    Totp,
    Backup,
}

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
    /// The core parser's live verdict on a backup code being typed.
    pub live: Option<Result<(), CodeInputError>>,
}

const NAME_KEYS: &[KeyHint] = &[hint("Enter", "continue"), hint("Esc", "accounts")];
const PASSWORD_KEYS: &[KeyHint] = &[hint("Enter", "sign in"), hint("Esc", "back")];
const TOTP_KEYS: &[KeyHint] = &[
    hint("Enter", "sign in"),
    hint("b", "use a backup code"),
    hint("Esc", "back"),
];
const BACKUP_KEYS: &[KeyHint] = &[
    hint("Enter", "sign in"),
    hint("Tab", "use the authenticator"),
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

    /// To the authenticator code, holding the core's pending login.
    fn ask_for_code(&mut self, pending: PendingLogin) {
        self.password.clear();
        self.code.clear();
        self.live = None;
        self.gate = None;
        self.pending = Some(pending);
        self.step = Step::Totp;
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
            self.live = Some(Err(e.clone()));
        }
        cx.error(format!("{error} (no attempt was used)"));
    }

    fn update_live(&mut self) {
        self.live = match BackupCode::parse(self.code.as_str()) {
            Ok(_) => Some(Ok(())),
            // Still being typed: no verdict yet.
            Err(CodeInputError::WrongLength { symbols }) if symbols < CODE_SYMBOLS => None,
            Err(e) => Some(Err(e)),
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
            Error::Rejected(r) if r.now_locked => self.gate = Some(Gate::Locked),
            Error::Rejected(r) => {
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
            Step::Totp => TOTP_KEYS,
            Step::Backup => BACKUP_KEYS,
        }
    }

    fn typing(&self) -> bool {
        // The authenticator code is digits only, so q, ? and b stay free as commands there.
        self.step != Step::Totp
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
                self.gate = None;
                self.step = Step::Name;
            }
            (Step::Password, KeyCode::Enter) if !self.password.is_empty() => {
                self.submit_password(cx)
            }
            (Step::Password, _) => {
                self.password.edit(&key);
            }
            (Step::Totp | Step::Backup, KeyCode::Esc) => self.back_to_password(),
            (Step::Totp, KeyCode::Char('b')) => {
                self.code.clear();
                self.live = None;
                self.step = Step::Backup;
            }
            (Step::Totp | Step::Backup, KeyCode::Enter) => self.submit_code(cx),
            (Step::Totp, KeyCode::Char(c)) if c.is_ascii_digit() || c == ' ' => self.code.push(c),
            (Step::Totp, KeyCode::Backspace) => self.code.pop(),
            (Step::Backup, KeyCode::Tab) => {
                self.code.clear();
                self.live = None;
                self.step = Step::Totp;
            }
            (Step::Backup, _) if self.code.edit(&key) => self.update_live(),
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
            Step::Totp | Step::Backup => lines.push(Line::from(vec![
                Span::raw(format!("{:>17}: ", "Password")),
                Span::styled("✓ checked", t.ok()),
            ])),
        }
        match self.step {
            Step::Totp => {
                lines.push(Line::raw(""));
                lines.push(Line::raw(format!(
                    "Enter the {}-digit code from your authenticator",
                    vx_digits(vx)
                )));
                lines.push(field_line("Code", &self.code, true, t));
                lines.push(Line::raw(""));
                lines.push(Line::styled(
                    "Lost your device? Press b to use a backup code",
                    t.dim(),
                ));
            }
            Step::Backup => {
                lines.push(Line::raw(""));
                lines.push(Line::raw(format!(
                    "Enter a backup code: {FORMAT_HINT} (any case or spacing)"
                )));
                lines.push(field_line("Backup code", &self.code, true, t));
                match &self.live {
                    Some(Ok(())) => {
                        lines.push(Line::styled("                   ✓ well-formed", t.ok()))
                    }
                    Some(Err(e)) => {
                        lines.push(Line::styled(format!("                   ✗ {e}"), t.error()))
                    }
                    None => lines.push(Line::raw("")),
                }
                lines.push(Line::styled(
                    "Each backup code works once. Tab goes back to the authenticator code.",
                    t.dim(),
                ));
            }
            _ => {}
        }
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
                lines.push(Line::styled(
                    "Account locked after too many failed attempts: an operator must unlock it.",
                    t.error(),
                ));
            }
            _ => {}
        }
        frame.render_widget(
            Paragraph::new(lines)
                .wrap(Wrap { trim: false })
                .block(panel()),
            area,
        );
    }
}

fn vx_digits(vx: &ViewCx) -> u32 {
    vx.totp.digits
}
