//! The kiosk's operator gate: sets the operator password at the first kiosk start, and asks for
//! it when [`crate::tui::app::Cx::open`] finds that the core's kiosk policy wants the operator.
//! Owns the typed password (zeroized). Must never compare passwords nor decide what needs the
//! operator: the core hashes and checks the password, mints the session and keeps the policy.

use ratatui::Frame;
use ratatui::crossterm::event::{KeyCode, KeyEvent};
use ratatui::layout::Rect;
use ratatui::text::Line;
use ratatui::widgets::{Paragraph, Wrap};

use crate::core::service::MIN_PASSWORD_CHARS;
use crate::tui::app::{Call, Component, Cx, Outcome, Target, ViewCx};
use crate::tui::keys::{KeyHint, hint};
use crate::tui::widgets::{Field, field_line, panel};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Purpose {
    /// No operator password exists yet.
    FirstStart,
    /// Unlocks `Target` for this kiosk session.
    Unlock(Target),
}

#[derive(Debug)]
pub struct Operator {
    pub purpose: Purpose,
    pub password: Field,
    pub confirm: Field,
    pub on_confirm: bool,
}

const SET_KEYS: &[KeyHint] = &[
    hint("Enter", "next / set"),
    hint("Tab", "next field"),
    hint("Ctrl-C", "quit"),
];
const UNLOCK_KEYS: &[KeyHint] = &[hint("Enter", "unlock"), hint("Esc", "back to the login")];

impl Operator {
    pub fn first_start() -> Self {
        Self::with(Purpose::FirstStart)
    }
    pub fn unlock(target: Target) -> Self {
        Self::with(Purpose::Unlock(target))
    }
    fn with(purpose: Purpose) -> Self {
        Self {
            purpose,
            password: Field::masked(),
            confirm: Field::masked(),
            on_confirm: false,
        }
    }
    pub fn is_first_start(&self) -> bool {
        self.purpose == Purpose::FirstStart
    }
}

impl Component for Operator {
    fn title(&self) -> String {
        match &self.purpose {
            Purpose::FirstStart => "Kiosk setup: choose the operator password".into(),
            Purpose::Unlock(_) => "Operator password required".into(),
        }
    }

    fn keys(&self) -> &'static [KeyHint] {
        if self.is_first_start() {
            SET_KEYS
        } else {
            UNLOCK_KEYS
        }
    }

    fn typing(&self) -> bool {
        true
    }

    fn on_key(&mut self, key: KeyEvent, cx: &mut Cx) {
        match (&self.purpose, key.code) {
            (Purpose::Unlock(_), KeyCode::Esc) => cx.open(Target::Login),
            (Purpose::Unlock(_), KeyCode::Enter) => {
                let password = self.password.take();
                cx.call(Call::StartOperatorSession { password });
            }
            (
                Purpose::FirstStart,
                KeyCode::Tab | KeyCode::BackTab | KeyCode::Up | KeyCode::Down,
            ) => self.on_confirm = !self.on_confirm,
            (Purpose::FirstStart, KeyCode::Enter) if !self.on_confirm => self.on_confirm = true,
            (Purpose::FirstStart, KeyCode::Enter) => {
                let (password, confirm) = (self.password.take(), self.confirm.take());
                self.on_confirm = false;
                if password.as_str() != confirm.as_str() {
                    cx.error("the two passwords differ: type them again");
                } else {
                    cx.call(Call::SetOperator { password });
                }
            }
            (Purpose::FirstStart, _) if self.on_confirm => {
                self.confirm.edit(&key);
            }
            _ => {
                self.password.edit(&key);
            }
        }
    }

    fn on_outcome(&mut self, outcome: Outcome, cx: &mut Cx) {
        match outcome {
            Outcome::OperatorSet(Ok(())) => {
                cx.info("operator password set: the kiosk is ready");
                cx.open(Target::Login);
            }
            Outcome::OperatorSession(Ok(session)) => {
                if let Purpose::Unlock(target) = &self.purpose {
                    cx.begin_operator_session(session);
                    cx.clear_status();
                    cx.open(target.clone());
                }
            }
            Outcome::OperatorSet(Err(e)) | Outcome::OperatorSession(Err(e)) => cx.error(e),
            _ => {}
        }
    }

    fn draw(&self, frame: &mut Frame<'_>, area: Rect, vx: &ViewCx) {
        let t = &vx.theme;
        let mut lines = vec![Line::raw("")];
        match &self.purpose {
            Purpose::FirstStart => {
                lines.push(Line::raw(
                    "This is the first kiosk start. Choose the operator password: it will be",
                ));
                lines.push(Line::raw(
                    "asked before the accounts list, settings, or quitting the kiosk.",
                ));
                lines.push(Line::raw(""));
                lines.push(field_line(
                    "Operator password",
                    &self.password,
                    !self.on_confirm,
                    t,
                ));
                lines.push(field_line("Confirm", &self.confirm, self.on_confirm, t));
                lines.push(Line::raw(""));
                lines.push(Line::styled(
                    format!("At least {MIN_PASSWORD_CHARS} characters."),
                    t.dim(),
                ));
            }
            Purpose::Unlock(target) => {
                let what = match target {
                    Target::Accounts => "open the accounts list",
                    Target::Settings(_) => "open account settings",
                    Target::NewAccount => "create an account",
                    Target::Quit => "quit the kiosk",
                    Target::Login
                    | Target::LoginFor(_)
                    | Target::Enroll(_)
                    | Target::Reenroll(_) => "continue",
                };
                lines.push(Line::raw(format!(
                    "The operator password is needed to {what}."
                )));
                lines.push(Line::raw(""));
                lines.push(field_line("Operator password", &self.password, true, t));
            }
        }
        frame.render_widget(
            Paragraph::new(lines)
                .wrap(Wrap { trim: false })
                .block(panel()),
            area,
        );
    }
}
