//! The new-account form: name, password and its confirmation, masked. Owns the three fields and
//! wipes the password buffers as soon as they are submitted. Must never check password rules
//! itself (the core's `create_account` does); it only compares the two typed copies.

use ratatui::Frame;
use ratatui::crossterm::event::{KeyCode, KeyEvent};
use ratatui::layout::Rect;
use ratatui::text::Line;
use ratatui::widgets::{Paragraph, Wrap};

use crate::core::service::MIN_PASSWORD_CHARS;
use crate::tui::app::{Call, Component, Cx, Outcome, Target, ViewCx};
use crate::tui::keys::{KeyHint, hint};
use crate::tui::widgets::{Field, field_line, panel};

#[derive(Debug)]
pub struct NewAccount {
    pub name: Field,
    pub password: Field,
    pub confirm: Field,
    pub focus: usize,
    pub busy: bool,
}

const KEYS: &[KeyHint] = &[
    hint("Tab/↓", "next field"),
    hint("Shift-Tab/↑", "previous field"),
    hint("Enter", "next / create"),
    hint("Esc", "cancel"),
];

impl Default for NewAccount {
    fn default() -> Self {
        Self::new()
    }
}

impl NewAccount {
    pub fn new() -> Self {
        Self {
            name: Field::new(),
            password: Field::masked(),
            confirm: Field::masked(),
            focus: 0,
            busy: false,
        }
    }

    fn field(&mut self) -> &mut Field {
        match self.focus {
            0 => &mut self.name,
            1 => &mut self.password,
            _ => &mut self.confirm,
        }
    }

    fn submit(&mut self, cx: &mut Cx) {
        let password = self.password.take();
        let confirm = self.confirm.take();
        if password.as_str() != confirm.as_str() {
            self.focus = 1;
            cx.error("the two passwords differ: type them again");
            return;
        }
        self.busy = true;
        cx.call(Call::CreateAccount {
            name: self.name.as_str().to_string(),
            password,
        });
    }
}

impl Component for NewAccount {
    fn title(&self) -> String {
        "New account".into()
    }

    fn keys(&self) -> &'static [KeyHint] {
        KEYS
    }

    fn typing(&self) -> bool {
        true
    }

    fn on_key(&mut self, key: KeyEvent, cx: &mut Cx) {
        match key.code {
            KeyCode::Esc => cx.open(Target::Accounts),
            KeyCode::Tab | KeyCode::Down => self.focus = (self.focus + 1) % 3,
            KeyCode::BackTab | KeyCode::Up => self.focus = (self.focus + 2) % 3,
            KeyCode::Enter if self.focus < 2 => self.focus += 1,
            KeyCode::Enter => self.submit(cx),
            _ => {
                self.field().edit(&key);
            }
        }
    }

    fn on_outcome(&mut self, outcome: Outcome, cx: &mut Cx) {
        let Outcome::Created { name, result } = outcome else {
            return;
        };
        self.busy = false;
        match result {
            Ok(()) => {
                cx.info(format!(
                    "account '{name}' created: now enroll its authenticator"
                ));
                cx.open(Target::Enroll(name));
            }
            Err(e) => {
                self.focus = 1;
                cx.error(e);
            }
        }
    }

    fn draw(&self, frame: &mut Frame<'_>, area: Rect, vx: &ViewCx) {
        let t = &vx.theme;
        let lines = vec![
            Line::raw(""),
            field_line("Account name", &self.name, self.focus == 0, t),
            field_line("Password", &self.password, self.focus == 1, t),
            field_line("Confirm password", &self.confirm, self.focus == 2, t),
            Line::raw(""),
            Line::styled(
                format!(
                    "The password needs at least {MIN_PASSWORD_CHARS} characters. It is never shown."
                ),
                t.dim(),
            ),
        ];
        frame.render_widget(
            Paragraph::new(lines)
                .wrap(Wrap { trim: false })
                .block(panel()),
            area,
        );
    }
}
