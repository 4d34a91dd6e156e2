//! The simulated login: account name, password, then the authenticator code or, after `b`, a
//! backup code. Owns the typed fields (zeroized) and what the core said about throttling, shown
//! as a live countdown. Must never decide whether a code is right, whether an attempt is allowed
//! or how long to wait: it asks the core ([`Call::Gate`], [`Call::Login`]) and shows its answer;
//! the live typo check of backup codes is the core's parser.

use ratatui::Frame;
use ratatui::crossterm::event::{KeyCode, KeyEvent};
use ratatui::layout::Rect;
use ratatui::text::Line;
use ratatui::widgets::{Paragraph, Wrap};

use crate::core::audit::LoginMethod;
use crate::core::backup_code::{BackupCode, CODE_SYMBOLS, CodeInputError, FORMAT_HINT};
use crate::core::error::{Error, human_duration};
use crate::core::service::{SecondFactor, parse_second_factor};
use crate::core::throttle::Gate;
use crate::tui::app::{Call, Component, Cx, Outcome, Screen, Target, ViewCx};
use crate::tui::keys::{KeyHint, hint};
use crate::tui::screens::secure::Secure;
use crate::tui::widgets::{Field, field_line, panel};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Name,
    Password,
    Totp,
    Backup,
}

#[derive(Debug)]
pub struct Login {
    pub name: Field,
    pub password: Field,
    pub code: Field,
    pub step: Step,
    /// From the probe: whether a second factor will be asked (None: unknown account).
    pub two_factor: Option<bool>,
    /// The core's gate for this account, refreshed every tick while a delay runs.
    pub gate: Option<Gate>,
    /// The live verdict on a backup code being typed.
    pub live: Option<Result<(), String>>,
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
            two_factor: None,
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
        self.step == Step::Name && self.name.is_empty() && self.gate.is_none()
    }

    fn blocked(&self) -> bool {
        matches!(self.gate, Some(Gate::Delayed { .. } | Gate::Locked))
    }

    fn submit(&mut self, factor: Option<zeroize::Zeroizing<String>>, cx: &mut Cx) {
        if self.blocked() {
            // The core would refuse anyway; not asking spares the audit log a throttled event.
            return;
        }
        let password = zeroize::Zeroizing::new(self.password.as_str().to_string());
        cx.call(Call::Login {
            name: self.name.as_str().to_string(),
            password,
            factor,
        });
    }

    fn update_live(&mut self) {
        self.live = match BackupCode::parse(self.code.as_str()) {
            Ok(_) => Some(Ok(())),
            // Still being typed: no verdict yet.
            Err(CodeInputError::WrongLength { symbols }) if symbols < CODE_SYMBOLS => None,
            Err(e) => Some(Err(e.to_string())),
        };
    }

    fn rejected(&mut self, error: &Error) {
        match error {
            Error::Throttled { seconds_left } => {
                self.gate = Some(Gate::Delayed {
                    seconds_left: *seconds_left,
                })
            }
            Error::Locked(_) => self.gate = Some(Gate::Locked),
            Error::Rejected(r) if r.now_locked => self.gate = Some(Gate::Locked),
            Error::Rejected(r) => {
                if let Some(delay) = r.next_delay_secs {
                    self.gate = Some(Gate::Delayed {
                        seconds_left: delay,
                    });
                }
                if r.reason == crate::core::error::RejectReason::WrongNameOrPassword {
                    self.password.clear();
                    self.step = Step::Password;
                }
            }
            _ => {}
        }
        self.code.clear();
        self.live = None;
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
                cx.clear_status();
                self.gate = None;
                self.two_factor = None;
                cx.call(Call::ProbeLogin {
                    name: self.name.as_str().to_string(),
                });
                self.step = Step::Password;
            }
            (Step::Name, _) => {
                self.name.edit(&key);
            }
            (Step::Password, KeyCode::Esc) => {
                self.password.clear();
                self.step = Step::Name;
            }
            (Step::Password, KeyCode::Enter) if !self.password.is_empty() => {
                if self.two_factor == Some(true) {
                    self.step = Step::Totp;
                } else {
                    self.submit(None, cx);
                }
            }
            (Step::Password, _) => {
                self.password.edit(&key);
            }
            (Step::Totp, KeyCode::Esc) | (Step::Backup, KeyCode::Esc) => {
                self.code.clear();
                self.live = None;
                self.step = Step::Password;
            }
            (Step::Totp, KeyCode::Char('b')) => {
                self.code.clear();
                self.step = Step::Backup;
            }
            (Step::Totp, KeyCode::Enter) => {
                let code = self.code.take();
                self.submit(Some(code), cx);
            }
            (Step::Totp, KeyCode::Char(c)) if c.is_ascii_digit() || c == ' ' => self.code.push(c),
            (Step::Totp, KeyCode::Backspace) => self.code.pop(),
            (Step::Backup, KeyCode::Tab) => {
                self.code.clear();
                self.live = None;
                self.step = Step::Totp;
            }
            (Step::Backup, KeyCode::Enter) => {
                // A typo is caught here, by the core's parser, and costs no attempt.
                match parse_second_factor(self.code.as_str(), cx.options.totp) {
                    Ok(SecondFactor::BackupCode(_)) | Ok(SecondFactor::Totp(_)) => {
                        let code = self.code.take();
                        self.live = None;
                        self.submit(Some(code), cx);
                    }
                    Err(e) => cx.error(format!("{e} (no attempt was used)")),
                }
            }
            (Step::Backup, _) if self.code.edit(&key) => self.update_live(),
            _ => {}
        }
    }

    fn on_tick(&mut self, cx: &mut Cx) {
        if matches!(self.gate, Some(Gate::Delayed { .. })) && !self.name.is_empty() {
            cx.call(Call::Gate {
                name: self.name.as_str().to_string(),
            });
        }
    }

    fn on_outcome(&mut self, outcome: Outcome, cx: &mut Cx) {
        match outcome {
            Outcome::LoginProbed {
                name,
                two_factor,
                gate,
            } if name == self.name.as_str() => {
                self.two_factor = two_factor;
                self.gate = gate.filter(|g| *g != Gate::Open);
            }
            Outcome::Gate(Ok(gate)) => {
                self.gate = Some(gate).filter(|g| *g != Gate::Open);
                if self.gate.is_none() {
                    cx.info("you may try again now");
                }
            }
            Outcome::LoggedIn {
                name,
                result: Ok(success),
            } => {
                self.password.clear();
                let how = match success.method {
                    LoginMethod::Password => "with the password only",
                    LoginMethod::Totp => "with the authenticator",
                    LoginMethod::BackupCode => "with a backup code",
                };
                cx.info(format!("signed in as '{name}' {how}"));
                cx.goto = Some(Screen::Secure(Secure::new(&name, success)));
            }
            Outcome::LoggedIn { result: Err(e), .. } => {
                self.rejected(&e);
                cx.error(e);
            }
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
        if self.step != Step::Name {
            lines.push(field_line(
                "Password",
                &self.password,
                self.step == Step::Password,
                t,
            ));
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
