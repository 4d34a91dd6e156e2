//! After a login: "Secure your account" when a backup code was used (with how many remain and
//! the urge to re-enroll, and to regenerate when few are left), or a plain "Signed in" summary.
//! Owns the password prompt for regenerating. Must never decide what "few codes" means: that is
//! [`LoginSuccess::low_on_codes`].

use ratatui::Frame;
use ratatui::crossterm::event::{KeyCode, KeyEvent};
use ratatui::layout::Rect;
use ratatui::text::Line;
use ratatui::widgets::{Paragraph, Wrap};

use crate::core::audit::LoginMethod;
use crate::core::service::LoginSuccess;
use crate::tui::app::{Call, Component, Cx, Outcome, Screen, Target, ViewCx};
use crate::tui::keys::{KeyHint, hint};
use crate::tui::screens::codes::Codes;
use crate::tui::widgets::{Field, field_line, panel};

#[derive(Debug)]
pub struct Secure {
    pub account: String,
    pub success: LoginSuccess,
    /// The password prompt for `g`, when open.
    pub regenerate: Option<Field>,
}

const KEYS: &[KeyHint] = &[
    hint("r", "re-enroll the authenticator"),
    hint("s", "settings"),
    hint("Esc", "sign out"),
];
const LOW_KEYS: &[KeyHint] = &[
    hint("r", "re-enroll the authenticator"),
    hint("g", "generate new codes"),
    hint("s", "settings"),
    hint("Esc", "sign out"),
];
const NO_2FA_KEYS: &[KeyHint] = &[
    hint("r", "enroll an authenticator"),
    hint("s", "settings"),
    hint("Esc", "sign out"),
];
const PROMPT_KEYS: &[KeyHint] = &[hint("Enter", "generate"), hint("Esc", "cancel")];

impl Secure {
    pub fn new(account: &str, success: LoginSuccess) -> Self {
        Self {
            account: account.to_string(),
            success,
            regenerate: None,
        }
    }

    fn by_backup_code(&self) -> bool {
        self.success.method == LoginMethod::BackupCode
    }
}

impl Component for Secure {
    fn title(&self) -> String {
        if self.by_backup_code() {
            "Secure your account".into()
        } else {
            "Signed in".into()
        }
    }

    fn keys(&self) -> &'static [KeyHint] {
        if self.regenerate.is_some() {
            PROMPT_KEYS
        } else if self.success.method == LoginMethod::Password {
            NO_2FA_KEYS
        } else if self.success.low_on_codes() {
            LOW_KEYS
        } else {
            KEYS
        }
    }

    fn typing(&self) -> bool {
        self.regenerate.is_some()
    }

    fn on_key(&mut self, key: KeyEvent, cx: &mut Cx) {
        if let Some(field) = &mut self.regenerate {
            match key.code {
                KeyCode::Esc => self.regenerate = None,
                KeyCode::Enter => {
                    let password = field.take();
                    cx.call(Call::Regenerate {
                        name: self.account.clone(),
                        password,
                    });
                }
                _ => {
                    field.edit(&key);
                }
            }
            return;
        }
        let name = self.account.clone();
        match key.code {
            KeyCode::Char('r') => cx.open(Target::enroll(
                name,
                self.success.method != crate::core::audit::LoginMethod::Password,
            )),
            KeyCode::Char('g') if self.success.low_on_codes() => {
                self.regenerate = Some(Field::masked())
            }
            KeyCode::Char('s') => cx.open(Target::Settings(name)),
            KeyCode::Esc => {
                cx.info(format!("signed out of '{name}'"));
                cx.open(Target::Login);
            }
            _ => {}
        }
    }

    fn on_outcome(&mut self, outcome: Outcome, cx: &mut Cx) {
        match outcome {
            Outcome::Issued(Ok(issued)) => {
                cx.info("a new set of backup codes replaces the old one");
                cx.show(Screen::Codes(Codes::new(
                    issued,
                    None,
                    Target::Settings(self.account.clone()),
                )));
            }
            Outcome::Issued(Err(e)) => cx.error(e),
            _ => {}
        }
    }

    fn draw(&self, frame: &mut Frame<'_>, area: Rect, vx: &ViewCx) {
        let t = &vx.theme;
        let s = &self.success;
        let mut lines = vec![Line::raw("")];
        match s.method {
            LoginMethod::BackupCode => {
                lines.push(Line::styled(
                    format!(
                        "You signed in with a backup code. {} of {} codes remain.",
                        s.remaining_codes, s.total_codes
                    ),
                    t.title(),
                ));
                lines.push(Line::raw(""));
                lines.push(Line::raw(
                    "If your authenticator is lost or broken, re-enroll it now (r): the old one stops working once the new one is confirmed.",
                ));
            }
            LoginMethod::Totp => {
                lines.push(Line::styled(
                    format!(
                        "You signed in with your authenticator. {} of {} backup codes remain.",
                        s.remaining_codes, s.total_codes
                    ),
                    t.title(),
                ));
            }
            LoginMethod::Password => {
                lines.push(Line::styled(
                    "You signed in with your password only.",
                    t.title(),
                ));
                lines.push(Line::raw(""));
                lines.push(Line::raw(
                    "Turn on two-factor authentication: press r to enroll an authenticator.",
                ));
            }
        }
        if s.low_on_codes() {
            lines.push(Line::raw(""));
            lines.push(Line::styled(
                format!(
                    "⚠ Only {} backup codes left: generate a new set (g) before you run out.",
                    s.remaining_codes
                ),
                t.warn(),
            ));
        }
        if let Some(field) = &self.regenerate {
            lines.push(Line::raw(""));
            lines.push(Line::raw(
                "A new set replaces every old code. Confirm with the password:",
            ));
            lines.push(field_line("Password", field, true, t));
        }
        frame.render_widget(
            Paragraph::new(lines)
                .wrap(Wrap { trim: false })
                .block(panel()),
            area,
        );
    }
}
