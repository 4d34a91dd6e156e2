//! The enrollment wizard, steps 1 to 3 of 4 (step 4, the backup codes, is the codes screen):
//! confirm the password, scan the QR code (or type the secret), enter a code to confirm. Owns
//! the pending [`Enrollment`] while it is shown and drops it (zeroizing the secret) on leaving,
//! and, when the enrollment replaces an authenticator, the step-up its confirm needs.
//! Must never judge a code itself: wrong codes, clock drift and attempts left come from the
//! core's error.

use ratatui::Frame;
use ratatui::crossterm::event::{KeyCode, KeyEvent};
use ratatui::layout::{Alignment, Constraint, Flex, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Clear, Paragraph, Wrap};

use crate::core::account::printable;
use crate::core::clock::UnixTime;
use crate::core::error::Error;
use crate::core::service::Enrollment;
use crate::core::step_up::StepUp;
use crate::tui::app::{Call, Component, Cx, Outcome, Proof, Screen, Target, ViewCx};
use crate::tui::keys::{KeyHint, hint};
use crate::tui::screens::codes::Codes;
use crate::tui::screens::settings::{Reauth, ReauthKey};
use crate::tui::widgets::{
    Field, Theme, field_line, panel, qr_background, qr_lines, qr_size, qr_text_style,
};

#[derive(Debug)]
pub enum Step {
    Password(Field),
    /// Replacing an authenticator: the password and a current code (the core said the password
    /// alone is not enough).
    Proof(Reauth),
    Scan(Enrollment),
    /// Step 2 with the QR code alone on the whole terminal, without title, status or footer,
    /// so it fits (and scans at) 80x24; any key goes back to [`Step::Scan`].
    FullQr(Enrollment),
    Code {
        enrollment: Enrollment,
        code: Field,
    },
    /// The step-up a re-enrollment began with expired before its confirm: the password and a
    /// current code of the old authenticator again, then back to the code.
    Reprove {
        enrollment: Enrollment,
        reauth: Reauth,
    },
}

#[derive(Debug)]
pub struct Enroll {
    pub account: String,
    pub step: Step,
    /// Where Esc and the end of the wizard lead.
    pub back: Target,
    /// The step-up a re-enrollment began with; its confirm needs it too.
    pub step_up: Option<StepUp>,
    /// The account has two-factor authentication already: confirming replaces its codes.
    pub replaces_codes: bool,
}

/// Steps, for the "Step N of 4" indicator; the fourth is the codes screen.
pub const STEPS: usize = 4;

const PASSWORD_KEYS: &[KeyHint] = &[hint("Enter", "continue"), hint("Esc", "cancel")];
const SCAN_KEYS: &[KeyHint] = &[
    hint("Enter", "I have added it"),
    hint("f", "full-screen QR code"),
    hint("Esc", "cancel"),
];
const FULL_QR_KEYS: &[KeyHint] = &[hint("any key", "back to step 2")];
const CODE_KEYS: &[KeyHint] = &[hint("Enter", "confirm"), hint("Esc", "back to the QR code")];

impl Enroll {
    pub fn new(account: &str, back: Target) -> Self {
        Self {
            account: account.to_string(),
            step: Step::Password(Field::masked()),
            back,
            step_up: None,
            replaces_codes: false,
        }
    }

    /// A re-enrollment that starts with the wizard: step 1 asks for the password and a current
    /// code at once (the password alone cannot replace an authenticator) and says the current
    /// backup codes will be replaced.
    pub fn reenroll(account: &str, back: Target, now: UnixTime) -> Self {
        Self {
            step: Step::Proof(Reauth::new(None, now)),
            ..Self::new(account, back).replacing_codes()
        }
    }

    /// At the scan step of a re-enrollment another screen began with its step-up.
    pub fn begun(
        account: &str,
        back: Target,
        enrollment: Enrollment,
        step_up: Option<StepUp>,
    ) -> Self {
        Self {
            account: account.to_string(),
            step: Step::Scan(enrollment),
            back,
            step_up,
            replaces_codes: true,
        }
    }

    /// A re-enrollment: step 1 says the current backup codes will be replaced.
    pub fn replacing_codes(mut self) -> Self {
        self.replaces_codes = true;
        self
    }

    pub fn step_number(&self) -> usize {
        match self.step {
            Step::Password(_) | Step::Proof(_) => 1,
            Step::Scan(_) | Step::FullQr(_) => 2,
            Step::Code { .. } | Step::Reprove { .. } => 3,
        }
    }
}

impl Enroll {
    /// A new step-up for the confirm: back to the code step.
    fn proven(&mut self, held: StepUp, cx: &mut Cx) {
        self.step_up = Some(held);
        let old = std::mem::replace(&mut self.step, Step::Password(Field::masked()));
        self.step = match old {
            Step::Reprove { enrollment, .. } => Step::Code {
                enrollment,
                code: Field::new(),
            },
            other => other,
        };
        cx.info("checked: now enter the code the new authenticator shows");
    }
}

impl Component for Enroll {
    fn title(&self) -> String {
        format!(
            "Enroll an authenticator for '{}' · Step {} of {STEPS}",
            self.account,
            self.step_number()
        )
    }

    fn keys(&self) -> &'static [KeyHint] {
        match self.step {
            Step::Password(_) | Step::Proof(_) => PASSWORD_KEYS,
            Step::Scan(_) => SCAN_KEYS,
            Step::FullQr(_) => FULL_QR_KEYS,
            Step::Code { .. } => CODE_KEYS,
            Step::Reprove { .. } => PASSWORD_KEYS,
        }
    }

    fn typing(&self) -> bool {
        // The full-screen QR code takes every printable key as "back", q and ? included.
        !matches!(self.step, Step::Scan(_))
    }

    fn full_screen(&self) -> bool {
        matches!(self.step, Step::FullQr(_))
    }

    fn on_key(&mut self, key: KeyEvent, cx: &mut Cx) {
        if let Step::FullQr(_) = self.step {
            let old = std::mem::replace(&mut self.step, Step::Password(Field::masked()));
            if let Step::FullQr(enrollment) = old {
                self.step = Step::Scan(enrollment);
            }
            return;
        }
        if key.code == KeyCode::Esc {
            if let Step::Code { .. } = self.step {
                let old = std::mem::replace(&mut self.step, Step::Password(Field::masked()));
                if let Step::Code { enrollment, .. } = old {
                    self.step = Step::Scan(enrollment);
                }
            } else {
                cx.open(self.back.clone());
            }
            return;
        }
        match &mut self.step {
            Step::Password(field) => {
                if key.code == KeyCode::Enter {
                    let password = field.take();
                    cx.call(Call::BeginEnrollment {
                        name: self.account.clone(),
                        proof: Proof::Password(password),
                    });
                } else {
                    field.edit(&key);
                }
            }
            Step::Proof(reauth) => {
                if let ReauthKey::Proof(proof) = reauth.key(&key, &mut self.step_up, cx.now) {
                    cx.call(Call::BeginEnrollment {
                        name: self.account.clone(),
                        proof,
                    });
                }
            }
            Step::Scan(_) => match key.code {
                KeyCode::Enter => {
                    let old = std::mem::replace(&mut self.step, Step::Password(Field::masked()));
                    if let Step::Scan(enrollment) = old {
                        self.step = Step::Code {
                            enrollment,
                            code: Field::new(),
                        };
                    }
                    cx.clear_status();
                }
                KeyCode::Char('f') => {
                    let old = std::mem::replace(&mut self.step, Step::Password(Field::masked()));
                    if let Step::Scan(enrollment) = old {
                        self.step = Step::FullQr(enrollment);
                    }
                }
                _ => {}
            },
            // Handled above.
            Step::FullQr(_) => {}
            Step::Reprove { reauth, .. } => {
                if let ReauthKey::Proof(proof) = reauth.key(&key, &mut self.step_up, cx.now) {
                    match proof {
                        Proof::PasswordAndCode { password, code } => cx.call(Call::StepUp {
                            name: self.account.clone(),
                            password,
                            code,
                        }),
                        Proof::StepUp(held) => self.proven(held, cx),
                        Proof::Password(_) => {}
                    }
                }
            }
            Step::Code { code, .. } => {
                if key.code == KeyCode::Enter {
                    let code = code.take();
                    cx.call(Call::ConfirmEnrollment {
                        name: self.account.clone(),
                        code,
                        step_up: self.step_up.take(),
                    });
                } else {
                    code.edit(&key);
                }
            }
        }
    }

    fn on_outcome(&mut self, outcome: Outcome, cx: &mut Cx) {
        match outcome {
            Outcome::EnrollmentBegun {
                result: Ok(enrollment),
                step_up,
            } => {
                cx.clear_status();
                self.step_up = step_up;
                self.step = Step::Scan(enrollment);
            }
            // The account has an authenticator: replacing it needs a current code too.
            Outcome::EnrollmentBegun {
                result: Err(e @ Error::StepUpNeeded(_)),
                ..
            } if matches!(self.step, Step::Password(_)) => {
                self.step = Step::Proof(Reauth::new(None, cx.now));
                self.replaces_codes = true;
                cx.error(e);
            }
            Outcome::Confirmed {
                result: Ok(issued), ..
            } => {
                cx.info("two-factor authentication is on: save these backup codes");
                cx.show(Screen::Codes(Codes::new(
                    issued,
                    Some(STEPS),
                    self.back.clone(),
                )));
            }
            Outcome::EnrollmentBegun { result: Err(e), .. } => cx.error(e),
            Outcome::SteppedUp(Ok(held)) => self.proven(held, cx),
            Outcome::SteppedUp(Err(e)) => cx.error(e),
            // The step-up ran out while the new authenticator was being set up: prove the old
            // one again, keeping the enrollment.
            Outcome::Confirmed {
                result: Err(e @ Error::StepUpNeeded(_)),
                ..
            } if matches!(self.step, Step::Code { .. }) => {
                let old = std::mem::replace(&mut self.step, Step::Password(Field::masked()));
                if let Step::Code { enrollment, .. } = old {
                    self.step = Step::Reprove {
                        enrollment,
                        reauth: Reauth::new(None, cx.now),
                    };
                }
                cx.error(e);
            }
            Outcome::Confirmed {
                result: Err(e),
                step_up,
            } => {
                self.step_up = step_up;
                cx.error(e);
            }
            _ => {}
        }
    }

    fn draw(&self, frame: &mut Frame<'_>, area: Rect, vx: &ViewCx) {
        let t = &vx.theme;
        let block = panel();
        let lines = match &self.step {
            Step::Password(field) => {
                let mut lines = vec![
                    Line::raw(""),
                    Line::raw(format!(
                        "Confirm the password of '{}' to start.",
                        self.account
                    )),
                    Line::raw(""),
                    field_line("Password", field, true, t),
                    Line::raw(""),
                ];
                if self.replaces_codes {
                    lines.extend(replacement_warning(t));
                } else {
                    lines.push(Line::styled(
                        "If the account already has an authenticator, it keeps working until the new one is confirmed.",
                        t.dim(),
                    ));
                }
                lines
            }
            Step::Proof(reauth) => {
                let mut lines = vec![Line::raw("")];
                lines.push(Line::raw(format!(
                    "'{}' already has an authenticator: the new one replaces it once confirmed.",
                    self.account
                )));
                lines.push(Line::raw(""));
                lines.extend(reauth.lines(
                    "Give the password and a current code (authenticator or backup code):",
                    "Press Enter to go on.",
                    t,
                ));
                lines.push(Line::raw(""));
                lines.extend(replacement_warning(t));
                lines
            }
            Step::Reprove { reauth, .. } => {
                let mut lines = vec![
                    Line::raw(""),
                    Line::raw(
                        "The check of the current authenticator expired before the new one was confirmed.",
                    ),
                    Line::raw(""),
                ];
                lines.extend(reauth.lines(
                    "Give the password and a current code of the old authenticator (or a backup code):",
                    "Press Enter to go on.",
                    t,
                ));
                lines
            }
            Step::Scan(enrollment) => return draw_scan(frame, area, enrollment, vx),
            Step::FullQr(enrollment) => return draw_full_qr(frame, area, enrollment, vx),
            Step::Code { enrollment, code } => {
                vec![
                    Line::raw(""),
                    Line::raw(format!(
                        "Enter the {}-digit code your authenticator now shows for {} ({}).",
                        enrollment.params.digits, enrollment.issuer, enrollment.account
                    )),
                    Line::raw(""),
                    field_line("Code", code, true, t),
                    Line::raw(""),
                    Line::styled(
                        "Esc goes back to the QR code if you need to scan it again.",
                        t.dim(),
                    ),
                ]
            }
        };
        frame.render_widget(
            Paragraph::new(lines)
                .wrap(Wrap { trim: false })
                .block(block),
            area,
        );
    }
}

/// What replacing an authenticator does to the backup codes, said before anything changes.
fn replacement_warning(t: &Theme) -> [Line<'static>; 4] {
    [
        Line::styled(
            "This replaces the current authenticator and backup codes:",
            t.warn(),
        ),
        Line::styled(
            "once the new authenticator is confirmed, a new set of backup codes is",
            t.warn(),
        ),
        Line::styled(
            "issued and the current backup codes stop working.",
            t.warn(),
        ),
        Line::styled(
            "Until then the current authenticator and codes keep working.",
            t.dim(),
        ),
    ]
}

/// Room for the text beside the QR code.
const SIDE_TEXT_WIDTH: u16 = 30;

fn draw_scan(frame: &mut Frame<'_>, area: Rect, e: &Enrollment, vx: &ViewCx) {
    let t = &vx.theme;
    let secret = e.secret.grouped_base32();
    let details = vec![
        Line::styled("Scan this QR code with your", t.title()),
        Line::styled("authenticator app, or type:", t.title()),
        Line::raw(""),
        Line::raw("Secret"),
        Line::styled(secret.as_str(), t.key()),
        Line::raw(""),
        // Names are shown escaped: a stored name may hold what the terminal would obey.
        Line::raw(format!("Issuer   {}", printable(&e.issuer))),
        Line::raw(format!("Account  {}", printable(&e.account))),
        Line::raw(format!("Type     time-based, {} digits", e.params.digits)),
        Line::raw(format!(
            "Period   {} s, {}",
            e.params.period,
            e.params.algorithm.name()
        )),
        Line::raw(""),
        Line::raw("Then press Enter."),
    ];
    let fits = qr_size(&e.otpauth_uri)
        .is_some_and(|(w, h)| w + SIDE_TEXT_WIDTH + 2 <= area.width && h <= area.height);
    if fits && let Some(qr) = qr_lines(&e.otpauth_uri, t) {
        let (w, _) = qr_size(&e.otpauth_uri).unwrap_or_default();
        let [qr_area, _, text_area] = Layout::horizontal([
            Constraint::Length(w),
            Constraint::Length(2),
            Constraint::Min(1),
        ])
        .areas(area);
        frame.render_widget(Paragraph::new(qr), qr_area);
        frame.render_widget(
            Paragraph::new(details).wrap(Wrap { trim: false }),
            text_area,
        );
        return;
    }
    let (need_w, need_h) = qr_size(&e.otpauth_uri)
        .map(|(w, h)| (w + SIDE_TEXT_WIDTH + 2, h + 3))
        .unwrap_or_default();
    let lines = vec![
        Line::styled(
            format!(
                "Too small for the QR code beside this text (needs {need_w}x{need_h}): press f to show it alone on the whole screen, or add the account by hand."
            ),
            t.warn(),
        ),
        Line::raw(""),
        Line::from(vec![
            Span::raw("Secret   "),
            Span::styled(secret.as_str(), t.key()),
        ]),
        Line::raw(format!(
            "Issuer   {}    Account  {}    {} digits, {} s, {}",
            printable(&e.issuer),
            printable(&e.account),
            e.params.digits,
            e.params.period,
            e.params.algorithm.name()
        )),
        Line::raw(""),
        Line::raw("URI (for apps that accept a pasted link):"),
        Line::raw(e.otpauth_uri.as_str()),
        Line::raw(""),
        Line::raw("Then press Enter."),
    ];
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(panel()),
        area,
    );
}

/// The QR code alone, centred on a light background that fills the terminal (a wide quiet zone),
/// with one line saying how to go back below it when a row is left.
fn draw_full_qr(frame: &mut Frame<'_>, area: Rect, e: &Enrollment, vx: &ViewCx) {
    let t = &vx.theme;
    let Some(((w, h), qr)) = qr_size(&e.otpauth_uri).zip(qr_lines(&e.otpauth_uri, t)) else {
        let text = "The URI is too long for a QR code: press any key and add the account by hand.";
        frame.render_widget(Paragraph::new(text).wrap(Wrap { trim: false }), area);
        return;
    };
    if w > area.width || h > area.height {
        let text = format!(
            "The QR code needs {w}x{h} and the terminal is {}x{}: enlarge it, or press any key and add the account by hand.",
            area.width, area.height
        );
        frame.render_widget(Paragraph::new(text).wrap(Wrap { trim: false }), area);
        return;
    }
    frame.render_widget(Paragraph::new(qr_background(area, t)), area);
    // A spare row goes to the hint, below the code; the rest is shared above and below.
    let room = if h < area.height {
        Rect {
            height: area.height - 1,
            ..area
        }
    } else {
        area
    };
    let [row] = Layout::vertical([Constraint::Length(h)])
        .flex(Flex::Center)
        .areas(room);
    let [qr_area] = Layout::horizontal([Constraint::Length(w)])
        .flex(Flex::Center)
        .areas(row);
    frame.render_widget(Paragraph::new(qr), qr_area);
    if qr_area.bottom() < area.bottom() {
        let hint = Rect {
            y: area.bottom() - 1,
            height: 1,
            ..area
        };
        if !t.color {
            // Text on the terminal's own background, not between blocks.
            frame.render_widget(Clear, hint);
        }
        frame.render_widget(
            Paragraph::new(Line::styled(
                "Scan it, then press any key to go back",
                qr_text_style(t),
            ))
            .alignment(Alignment::Center),
            hint,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    /// The scan screen, beside its QR code or without room for it, draws the account name
    /// escaped (names come from the store, which a bug or schema 1 may have filled).
    #[test]
    fn the_scan_screen_draws_a_name_escaped() {
        let secret = crate::core::totp::TotpSecret::from_base32("JBSWY3DPEHPK3PXP").unwrap();
        let e = Enrollment {
            account: "b\u{1b}\u{202E}b".into(),
            issuer: "sparekey".into(),
            secret,
            otpauth_uri: zeroize::Zeroizing::new("otpauth://totp/sparekey:b?secret=X".into()),
            params: Default::default(),
        };
        let vx = ViewCx {
            theme: Theme::plain(),
            now: 0,
            kiosk: false,
            totp: Default::default(),
        };
        for (w, h) in [(120, 50), (60, 20)] {
            let mut terminal = Terminal::new(TestBackend::new(w, h)).unwrap();
            terminal
                .draw(|frame| draw_scan(frame, frame.area(), &e, &vx))
                .unwrap();
            let buffer = terminal.backend().buffer();
            let text: String = buffer.content().iter().map(|c| c.symbol()).collect();
            assert!(text.contains("b\\u{001B}\\u{202E}b"), "{w}x{h}: {text}");
            assert!(
                !text.contains('\u{1b}') && !text.contains('\u{202E}'),
                "{w}x{h}"
            );
        }
    }
}
