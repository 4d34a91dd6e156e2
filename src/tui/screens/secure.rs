//! After a login: "Secure your account" when a backup code was used (with how many remain and
//! the urge to re-enroll, and to regenerate when few are left), or a plain "Signed in" summary.
//! Owns the step-up the login made, for regenerating and re-enrolling without another code
//! while it is fresh (the prompt asks for the password and a code once it is not). Must never
//! decide what "few codes" means: that is [`LoginSuccess::low_on_codes`].

use ratatui::Frame;
use ratatui::crossterm::event::{KeyCode, KeyEvent};
use ratatui::layout::Rect;
use ratatui::text::Line;
use ratatui::widgets::{Paragraph, Wrap};

use crate::core::audit::LoginMethod;
use crate::core::service::LoginSuccess;
use crate::core::step_up::StepUp;
use crate::tui::app::{Call, Component, Cx, Outcome, Proof, Screen, Target, ViewCx};
use crate::tui::keys::{KeyHint, hint};
use crate::tui::screens::codes::Codes;
use crate::tui::screens::enroll::Enroll;
use crate::tui::screens::settings::{Reauth, ReauthKey, STEP_UP_EXPIRED};
use crate::tui::widgets::panel;

#[derive(Debug)]
pub struct Secure {
    pub account: String,
    pub success: LoginSuccess,
    /// The prompt for `g`, when open.
    pub regenerate: Option<Reauth>,
    /// The step-up the login made (none for a password-only login).
    pub step_up: Option<StepUp>,
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
    pub fn new(account: &str, success: LoginSuccess, step_up: Option<StepUp>) -> Self {
        Self {
            account: account.to_string(),
            success,
            regenerate: None,
            step_up,
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
        if let Some(reauth) = &mut self.regenerate {
            if key.code == KeyCode::Esc {
                self.regenerate = None;
                return;
            }
            match reauth.key(&key, &mut self.step_up, cx.now) {
                ReauthKey::Proof(proof) => cx.call(Call::Regenerate {
                    name: self.account.clone(),
                    proof,
                }),
                ReauthKey::Expired => cx.error(STEP_UP_EXPIRED),
                ReauthKey::Edited => {}
            }
            return;
        }
        let name = self.account.clone();
        match key.code {
            // With the login's step-up the replacement starts at once; without one (it expired)
            // the wizard asks for the password and a code. A password-only login has no
            // authenticator to replace.
            KeyCode::Char('r') => match self.step_up.take() {
                Some(s) if s.is_fresh(cx.now) => cx.call(Call::BeginEnrollment {
                    name,
                    proof: Proof::StepUp(s),
                }),
                _ => cx.open(Target::enroll(
                    name,
                    self.success.method != crate::core::audit::LoginMethod::Password,
                )),
            },
            KeyCode::Char('g') if self.success.low_on_codes() => {
                self.regenerate = Some(Reauth::new(self.step_up.as_ref(), cx.now))
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
            Outcome::Issued {
                result: Ok(issued), ..
            } => {
                cx.info("a new set of backup codes replaces the old one");
                cx.show(Screen::Codes(Codes::new(
                    issued,
                    None,
                    Target::Settings(self.account.clone()),
                )));
            }
            Outcome::EnrollmentBegun {
                result: Ok(enrollment),
                step_up,
            } => {
                cx.clear_status();
                let back = Target::Settings(self.account.clone());
                cx.show(Screen::Enroll(Enroll::begun(
                    &self.account,
                    back,
                    enrollment,
                    step_up,
                )));
            }
            Outcome::Issued {
                result: Err(e),
                step_up,
            }
            | Outcome::EnrollmentBegun {
                result: Err(e),
                step_up,
            } => {
                self.step_up = step_up;
                if let Some(reauth) = &mut self.regenerate
                    && !reauth.asks()
                {
                    *reauth = Reauth::new(self.step_up.as_ref(), cx.now);
                }
                cx.error(e);
            }
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
        if let Some(reauth) = &self.regenerate {
            lines.push(Line::raw(""));
            lines.extend(reauth.lines(
                "A new set replaces every old code. Confirm with the password and a code:",
                "A new set replaces every old code. Press Enter to confirm, Esc to cancel.",
                t,
            ));
        }
        frame.render_widget(
            Paragraph::new(lines)
                .wrap(Wrap { trim: false })
                .block(panel()),
            area,
        );
    }
}
