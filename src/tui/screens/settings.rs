//! Settings of one account: the unused codes as a gauge, the slot list (when each code was used,
//! never the code), regenerate, re-enroll, turn 2FA off, and the audit log. Owns the prompt of
//! those actions ([`Reauth`], also used by the signed-in and enrollment screens): the password
//! and a current code when no fresh step-up is held, a bare confirmation when one is. Must never
//! show a code or decide an action is allowed: the core checks the password, the code and the
//! step-up (its binding and its age).

use ratatui::Frame;
use ratatui::crossterm::event::{KeyCode, KeyEvent};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::Line;
use ratatui::widgets::{Gauge, Paragraph, Wrap};

use crate::core::clock::UnixTime;
use crate::core::step_up::StepUp;
use crate::tui::app::{Call, Component, Cx, Outcome, Proof, Screen, SettingsData, Target, ViewCx};
use crate::tui::keys::{KeyHint, hint};
use crate::tui::screens::codes::Codes;
use crate::tui::screens::enroll::Enroll;
use crate::tui::widgets::{Field, Theme, field_line, format_time, panel};

/// Audit events loaded for the log panel.
pub const AUDIT_LIMIT: usize = 200;

/// Said when a held step-up ran out while its confirmation was open.
pub const STEP_UP_EXPIRED: &str =
    "the second factor was checked too long ago: give the password and a current code";

/// The proof prompt of an action that could replace the second factor. With a fresh step-up
/// held it has no fields (Enter confirms); otherwise it asks for the password and a current
/// code (authenticator or backup code), which the core turns into a step-up with a login.
#[derive(Debug)]
pub struct Reauth {
    fields: Option<(Field, Field)>,
    on_code: bool,
}

/// What a key did to a [`Reauth`] prompt.
#[derive(Debug)]
pub enum ReauthKey {
    /// The last Enter: the proof to send with the call.
    Proof(Proof),
    /// Enter on a bare confirmation whose step-up ran out: the fields are now shown.
    Expired,
    /// Editing or moving between the fields.
    Edited,
}

impl Reauth {
    /// Asks for the password and code unless `held` is fresh at `now`.
    pub fn new(held: Option<&StepUp>, now: UnixTime) -> Self {
        let fresh = held.is_some_and(|s| s.is_fresh(now));
        Self {
            fields: (!fresh).then(Self::empty_fields),
            on_code: false,
        }
    }

    fn empty_fields() -> (Field, Field) {
        (Field::masked(), Field::new())
    }

    /// Whether it asks for the password and a code.
    pub fn asks(&self) -> bool {
        self.fields.is_some()
    }

    /// Handles a key other than Esc. `held` is the screen's step-up: a bare confirmation takes
    /// it from there.
    pub fn key(&mut self, key: &KeyEvent, held: &mut Option<StepUp>, now: UnixTime) -> ReauthKey {
        let Some((password, code)) = &mut self.fields else {
            if key.code != KeyCode::Enter {
                return ReauthKey::Edited;
            }
            return match held.take() {
                Some(s) if s.is_fresh(now) => ReauthKey::Proof(Proof::StepUp(s)),
                _ => {
                    self.fields = Some(Self::empty_fields());
                    ReauthKey::Expired
                }
            };
        };
        match key.code {
            KeyCode::Tab | KeyCode::BackTab | KeyCode::Up | KeyCode::Down => {
                self.on_code = !self.on_code
            }
            KeyCode::Enter if !self.on_code => self.on_code = true,
            KeyCode::Enter => {
                self.on_code = false;
                return ReauthKey::Proof(Proof::held_or(
                    held.take(),
                    now,
                    password.take(),
                    code.take(),
                ));
            }
            _ => {
                if self.on_code {
                    code.edit(key)
                } else {
                    password.edit(key)
                };
            }
        }
        ReauthKey::Edited
    }

    /// The prompt's lines: `asking` (what the action does and that it needs the password and a
    /// current code) over the two fields, or `confirming` alone while a step-up is held.
    pub fn lines(&self, asking: &str, confirming: &str, t: &Theme) -> Vec<Line<'static>> {
        match &self.fields {
            Some((password, code)) => vec![
                Line::styled(asking.to_string(), t.warn()),
                field_line("Password", password, !self.on_code, t),
                field_line("Code", code, self.on_code, t),
            ],
            None => vec![Line::styled(confirming.to_string(), t.warn())],
        }
    }
}

/// An action of the settings screen that needs a step-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guarded {
    Regenerate,
    Reenroll,
    Disable,
}

impl Guarded {
    /// The prompt's first line when it asks for the password and a code.
    fn asking(self) -> &'static str {
        match self {
            Guarded::Regenerate => {
                "Regenerate: every old code stops working. Password and a current code:"
            }
            Guarded::Reenroll => {
                "Re-enroll: the backup codes are replaced too. Password and a current code:"
            }
            Guarded::Disable => "Turn 2FA off: give the password and a current or backup code.",
        }
    }

    /// The prompt's line while a fresh step-up is held.
    fn confirming(self) -> &'static str {
        match self {
            Guarded::Regenerate => "Regenerate: every old code stops working. Enter to confirm.",
            Guarded::Reenroll => {
                "Re-enroll: a new authenticator and new backup codes replace these. Enter to go on."
            }
            Guarded::Disable => {
                "Turn 2FA off: the authenticator and codes stop working. Enter to confirm."
            }
        }
    }
}

#[derive(Debug)]
pub struct Prompt {
    pub action: Guarded,
    pub reauth: Reauth,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Panel {
    Slots,
    Audit,
}

#[derive(Debug)]
pub struct Settings {
    pub account: String,
    pub data: Option<SettingsData>,
    pub panel: Panel,
    pub prompt: Option<Prompt>,
    /// First line shown of the current panel.
    pub scroll: usize,
    /// The step-up of the last guarded action, handed back by the core, for the next one while
    /// it is fresh.
    pub step_up: Option<StepUp>,
}

const KEYS: &[KeyHint] = &[
    hint("g", "regenerate codes"),
    hint("r", "re-enroll authenticator"),
    hint("d", "turn 2FA off"),
    hint("a", "audit log / code slots"),
    hint("↑/↓", "scroll"),
    hint("Esc", "back"),
];
const NO_2FA_KEYS: &[KeyHint] = &[
    hint("r", "enroll authenticator"),
    hint("a", "audit log"),
    hint("↑/↓", "scroll"),
    hint("Esc", "back"),
];
const PROMPT_KEYS: &[KeyHint] = &[
    hint("Enter", "confirm"),
    hint("Tab", "next field"),
    hint("Esc", "cancel"),
];

impl Settings {
    pub fn new(account: String) -> Self {
        Self {
            account,
            data: None,
            panel: Panel::Slots,
            prompt: None,
            scroll: 0,
            step_up: None,
        }
    }

    fn ask(&mut self, action: Guarded, now: UnixTime) {
        self.prompt = Some(Prompt {
            action,
            reauth: Reauth::new(self.step_up.as_ref(), now),
        });
    }

    fn send(&mut self, action: Guarded, proof: Proof, cx: &mut Cx) {
        let name = self.account.clone();
        cx.call(match action {
            Guarded::Regenerate => Call::Regenerate { name, proof },
            Guarded::Disable => Call::DisableTwoFactor { name, proof },
            Guarded::Reenroll => Call::BeginEnrollment { name, proof },
        });
    }

    fn two_factor(&self) -> bool {
        self.data.as_ref().is_some_and(|d| d.summary.two_factor)
    }

    fn reload(&self, cx: &mut Cx) {
        cx.call(Call::LoadSettings {
            name: self.account.clone(),
        });
    }
}

impl Component for Settings {
    fn title(&self) -> String {
        format!("Settings of '{}'", self.account)
    }

    fn keys(&self) -> &'static [KeyHint] {
        if self.prompt.is_some() {
            PROMPT_KEYS
        } else if self.two_factor() {
            KEYS
        } else {
            NO_2FA_KEYS
        }
    }

    fn typing(&self) -> bool {
        self.prompt.is_some()
    }

    fn on_key(&mut self, key: KeyEvent, cx: &mut Cx) {
        let name = self.account.clone();
        if let Some(prompt) = &mut self.prompt {
            if key.code == KeyCode::Esc {
                self.prompt = None;
                return;
            }
            let action = prompt.action;
            match prompt.reauth.key(&key, &mut self.step_up, cx.now) {
                ReauthKey::Proof(proof) => self.send(action, proof, cx),
                ReauthKey::Expired => cx.error(STEP_UP_EXPIRED),
                ReauthKey::Edited => {}
            }
            return;
        }
        match key.code {
            KeyCode::Esc => cx.open(Target::Accounts),
            KeyCode::Char('g') if self.two_factor() => self.ask(Guarded::Regenerate, cx.now),
            KeyCode::Char('d') if self.two_factor() => self.ask(Guarded::Disable, cx.now),
            KeyCode::Char('r') if self.two_factor() => self.ask(Guarded::Reenroll, cx.now),
            KeyCode::Char('r') => cx.open(Target::Enroll(name)),
            KeyCode::Char('a') => {
                self.panel = if self.panel == Panel::Slots {
                    Panel::Audit
                } else {
                    Panel::Slots
                };
                self.scroll = 0;
            }
            KeyCode::Up | KeyCode::Char('k') => self.scroll = self.scroll.saturating_sub(1),
            KeyCode::Down | KeyCode::Char('j') => self.scroll += 1,
            _ => {}
        }
    }

    fn on_outcome(&mut self, outcome: Outcome, cx: &mut Cx) {
        match outcome {
            Outcome::Settings(Ok(data)) if data.summary.name == self.account => {
                self.data = Some(data)
            }
            Outcome::Settings(Err(e)) => cx.error(e),
            Outcome::Issued {
                result: Ok(issued), ..
            } => {
                self.prompt = None;
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
                self.prompt = None;
                cx.clear_status();
                let back = Target::Settings(self.account.clone());
                cx.show(Screen::Enroll(Enroll::begun(
                    &self.account,
                    back,
                    enrollment,
                    step_up,
                )));
            }
            Outcome::Disabled { result: Ok(()), .. } => {
                self.prompt = None;
                cx.info(
                    "two-factor authentication is off: its authenticator and codes are removed",
                );
                self.reload(cx);
            }
            Outcome::Issued {
                result: Err(e),
                step_up,
            }
            | Outcome::Disabled {
                result: Err(e),
                step_up,
            }
            | Outcome::EnrollmentBegun {
                result: Err(e),
                step_up,
            } => {
                // Kept for another try while fresh; the prompt asks again if it is not.
                self.step_up = step_up;
                if let Some(prompt) = &mut self.prompt
                    && !prompt.reauth.asks()
                {
                    prompt.reauth = Reauth::new(self.step_up.as_ref(), cx.now);
                }
                cx.error(e);
                self.reload(cx);
            }
            _ => {}
        }
    }

    fn draw(&self, frame: &mut Frame<'_>, area: Rect, vx: &ViewCx) {
        let t = &vx.theme;
        let Some(data) = &self.data else {
            frame.render_widget(Paragraph::new("loading…").block(panel()), area);
            return;
        };
        let prompt_height = match &self.prompt {
            Some(p) if p.reauth.asks() => 5,
            Some(_) => 3,
            None => 0,
        };
        let [summary_area, gauge_area, panel_area, prompt_area] = Layout::vertical([
            Constraint::Length(3),
            Constraint::Length(3),
            Constraint::Min(3),
            Constraint::Length(prompt_height),
        ])
        .areas(area);

        let s = &data.summary;
        let state = match (s.two_factor, s.enrollment_pending) {
            (true, false) => "on",
            (true, true) => "on (a re-enrollment is waiting for its code)",
            (false, true) => "off (an enrollment is waiting for its code)",
            (false, false) => "off",
        };
        let last = s
            .last_login
            .map(|l| {
                format!(
                    "{} ({})",
                    format_time(l.at),
                    l.method.as_str().replace('_', " ")
                )
            })
            .unwrap_or_else(|| "never".into());
        let lock = if s.locked {
            "locked: an operator must unlock it".to_string()
        } else {
            format!("failed attempts in a row: {}", s.consecutive_failures)
        };
        let summary = vec![
            Line::raw(format!(" Two-factor authentication: {state}")),
            Line::raw(format!(" Last login: {last}")),
            Line::styled(
                format!(" {lock}"),
                if s.locked { t.error() } else { t.dim() },
            ),
        ];
        frame.render_widget(Paragraph::new(summary), summary_area);

        let codes = &data.codes;
        let ratio = if codes.total > 0 {
            codes.remaining as f64 / codes.total as f64
        } else {
            0.0
        };
        let label = if codes.total > 0 {
            format!("{} of {} unused", codes.remaining, codes.total)
        } else {
            "no backup codes".to_string()
        };
        // The gauge is about the codes: a login by backup code alone does not make them low.
        let gauge_style = if s.codes_low { t.warn() } else { t.ok() };
        frame.render_widget(
            Gauge::default()
                .block(panel().title(" Backup codes "))
                .gauge_style(gauge_style)
                .use_unicode(true)
                .ratio(ratio.clamp(0.0, 1.0))
                .label(label),
            gauge_area,
        );

        let (title, lines): (String, Vec<Line<'_>>) = match self.panel {
            Panel::Slots => {
                let created = codes.created_at.map(format_time).unwrap_or_default();
                let mut lines: Vec<Line<'_>> = codes
                    .used_at
                    .iter()
                    .enumerate()
                    .map(|(i, used)| match used {
                        Some(at) => Line::styled(
                            format!(" #{:<2} used {}", i + 1, format_time(*at)),
                            t.dim(),
                        ),
                        None => Line::raw(format!(" #{:<2} unused", i + 1)),
                    })
                    .collect();
                if lines.is_empty() {
                    lines.push(Line::styled(
                        " no codes: enroll an authenticator to get a set",
                        t.dim(),
                    ));
                }
                let title = if created.is_empty() {
                    " Code slots ".to_string()
                } else {
                    format!(" Code slots (set of {created}) ")
                };
                (title, lines)
            }
            Panel::Audit => {
                let mut lines: Vec<Line<'_>> = data
                    .audit
                    .iter()
                    .rev()
                    .map(|e| Line::raw(format!(" {}  {}", format_time(e.at), e.kind)))
                    .collect();
                if lines.is_empty() {
                    lines.push(Line::styled(" no events", t.dim()));
                }
                (" Audit log, newest first ".to_string(), lines)
            }
        };
        let visible: Vec<Line<'_>> = lines.into_iter().skip(self.scroll).collect();
        frame.render_widget(
            Paragraph::new(visible)
                .wrap(Wrap { trim: false })
                .block(panel().title(title)),
            panel_area,
        );

        if let Some(prompt) = &self.prompt {
            let lines = prompt
                .reauth
                .lines(prompt.action.asking(), prompt.action.confirming(), t);
            frame.render_widget(Paragraph::new(lines).block(panel()), prompt_area);
        }
    }
}
