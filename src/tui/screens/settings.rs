//! Settings of one account: the unused codes as a gauge, the slot list (when each code was used,
//! never the code), regenerate, re-enroll, turn 2FA off, and the audit log. Owns the password
//! and code prompts of those actions. Must never show a code or decide an action is allowed:
//! the core checks the password and the current code.

use ratatui::Frame;
use ratatui::crossterm::event::{KeyCode, KeyEvent};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::Line;
use ratatui::widgets::{Gauge, Paragraph, Wrap};

use crate::tui::app::{Call, Component, Cx, Outcome, Screen, SettingsData, Target, ViewCx};
use crate::tui::keys::{KeyHint, hint};
use crate::tui::screens::codes::Codes;
use crate::tui::widgets::{Field, field_line, format_time, panel};

/// Audit events loaded for the log panel.
pub const AUDIT_LIMIT: usize = 200;

#[derive(Debug)]
pub enum Prompt {
    Regenerate(Field),
    Disable {
        password: Field,
        code: Field,
        on_code: bool,
    },
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
        }
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
        match &mut self.prompt {
            Some(Prompt::Regenerate(field)) => match key.code {
                KeyCode::Esc => self.prompt = None,
                KeyCode::Enter => {
                    let password = field.take();
                    cx.call(Call::Regenerate { name, password });
                }
                _ => {
                    field.edit(&key);
                }
            },
            Some(Prompt::Disable {
                password,
                code,
                on_code,
            }) => match key.code {
                KeyCode::Esc => self.prompt = None,
                KeyCode::Tab | KeyCode::BackTab | KeyCode::Up | KeyCode::Down => {
                    *on_code = !*on_code
                }
                KeyCode::Enter if !*on_code => *on_code = true,
                KeyCode::Enter => {
                    let (password, code) = (password.take(), code.take());
                    *on_code = false;
                    cx.call(Call::DisableTwoFactor {
                        name,
                        password,
                        code,
                    });
                }
                _ => {
                    if *on_code {
                        code.edit(&key)
                    } else {
                        password.edit(&key)
                    };
                }
            },
            None => match key.code {
                KeyCode::Esc => cx.open(Target::Accounts),
                KeyCode::Char('g') if self.two_factor() => {
                    self.prompt = Some(Prompt::Regenerate(Field::masked()))
                }
                KeyCode::Char('d') if self.two_factor() => {
                    self.prompt = Some(Prompt::Disable {
                        password: Field::masked(),
                        code: Field::new(),
                        on_code: false,
                    })
                }
                KeyCode::Char('r') => cx.open(Target::enroll(name, self.two_factor())),
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
            },
        }
    }

    fn on_outcome(&mut self, outcome: Outcome, cx: &mut Cx) {
        match outcome {
            Outcome::Settings(Ok(data)) if data.summary.name == self.account => {
                self.data = Some(data)
            }
            Outcome::Settings(Err(e)) => cx.error(e),
            Outcome::Issued(Ok(issued)) => {
                self.prompt = None;
                cx.info("a new set of backup codes replaces the old one");
                cx.show(Screen::Codes(Codes::new(
                    issued,
                    None,
                    Target::Settings(self.account.clone()),
                )));
            }
            Outcome::Disabled(Ok(())) => {
                self.prompt = None;
                cx.info(
                    "two-factor authentication is off: its authenticator and codes are removed",
                );
                self.reload(cx);
            }
            Outcome::Issued(Err(e)) | Outcome::Disabled(Err(e)) => {
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
        let prompt_height = if self.prompt.is_some() { 5 } else { 0 };
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

        match &self.prompt {
            Some(Prompt::Regenerate(field)) => {
                let lines = vec![
                    Line::styled(
                        "Regenerate: every old code stops working. Confirm with the password:",
                        t.warn(),
                    ),
                    field_line("Password", field, true, t),
                ];
                frame.render_widget(Paragraph::new(lines).block(panel()), prompt_area);
            }
            Some(Prompt::Disable {
                password,
                code,
                on_code,
            }) => {
                let lines = vec![
                    Line::styled(
                        "Turn 2FA off: give the password and a current authenticator code.",
                        t.warn(),
                    ),
                    field_line("Password", password, !on_code, t),
                    field_line("Code", code, *on_code, t),
                ];
                frame.render_widget(Paragraph::new(lines).block(panel()), prompt_area);
            }
            None => {}
        }
    }
}
