//! The accounts list: each account's 2FA state, remaining codes, lock state and warning badges,
//! with a filter typed after `/`. Owns its selection and filter. Must never decide on its own
//! whether an account needs attention or is locked: it shows the core's
//! [`AccountSummary`] flags.

use ratatui::Frame;
use ratatui::crossterm::event::{KeyCode, KeyEvent};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{Cell, Paragraph, Row, Table};

use crate::core::account::AccountSummary;
use crate::tui::app::{Call, Component, Cx, Outcome, Screen, Target, ViewCx};
use crate::tui::keys::{KeyHint, hint};
use crate::tui::screens::enroll::Enroll;
use crate::tui::screens::login::Login;
use crate::tui::screens::new_account::NewAccount;
use crate::tui::widgets::{Field, panel};

#[derive(Debug, Default)]
pub struct Accounts {
    pub list: Vec<AccountSummary>,
    pub loaded: bool,
    pub filter: Field,
    pub filtering: bool,
    pub selected: usize,
}

const KEYS: &[KeyHint] = &[
    hint("↑/↓", "select"),
    hint("Enter", "open settings"),
    hint("n", "new account"),
    hint("/", "filter"),
    hint("e", "enroll authenticator"),
    hint("l", "simulated login"),
    hint("u", "unlock"),
    hint("r", "refresh"),
];

const FILTER_KEYS: &[KeyHint] = &[
    hint("type", "filter by name"),
    hint("Enter", "keep filter"),
    hint("Esc", "clear filter"),
];

impl Accounts {
    pub fn new() -> Self {
        Self::default()
    }

    /// The accounts matching the filter, in store order.
    pub fn visible(&self) -> Vec<&AccountSummary> {
        let needle = self.filter.as_str().to_lowercase();
        self.list
            .iter()
            .filter(|a| a.name.to_lowercase().contains(&needle))
            .collect()
    }

    fn selected_name(&self) -> Option<String> {
        self.visible().get(self.selected).map(|a| a.name.clone())
    }

    fn clamp(&mut self) {
        let n = self.visible().len();
        self.selected = self.selected.min(n.saturating_sub(1));
    }
}

/// "on", "off" or "pending", with re-enrollment noted.
fn two_factor_label(a: &AccountSummary) -> &'static str {
    match (a.two_factor, a.enrollment_pending) {
        (true, true) => "re-enrolling",
        (true, false) => "on",
        (false, true) => "pending",
        (false, false) => "off",
    }
}

/// The warning badges, from the core's flags: the authenticator may be lost (re-enroll), the
/// codes are running low (regenerate). Both can apply.
fn badges(a: &AccountSummary) -> Vec<&'static str> {
    let mut badges = Vec::new();
    if a.last_login_used_backup_code {
        badges.push("⚠ backup code used");
    }
    if a.codes_low {
        badges.push("⚠ codes low");
    }
    badges
}

impl Component for Accounts {
    fn title(&self) -> String {
        "Accounts".into()
    }

    fn keys(&self) -> &'static [KeyHint] {
        if self.filtering { FILTER_KEYS } else { KEYS }
    }

    fn typing(&self) -> bool {
        self.filtering
    }

    fn on_key(&mut self, key: KeyEvent, cx: &mut Cx) {
        if self.filtering {
            match key.code {
                KeyCode::Enter => self.filtering = false,
                KeyCode::Esc => {
                    self.filter.clear();
                    self.filtering = false;
                }
                _ => {
                    self.filter.edit(&key);
                }
            }
            self.clamp();
            return;
        }
        match key.code {
            KeyCode::Up | KeyCode::Char('k') => self.selected = self.selected.saturating_sub(1),
            KeyCode::Down | KeyCode::Char('j') => {
                self.selected += 1;
                self.clamp();
            }
            KeyCode::Char('/') => self.filtering = true,
            KeyCode::Char('n') => cx.goto = Some(Screen::NewAccount(NewAccount::new())),
            KeyCode::Char('r') => cx.call(Call::ListAccounts),
            KeyCode::Char('l') => {
                // Nothing is looked up for the login: it starts at the password.
                let login = match self.selected_name() {
                    Some(name) => Login::for_account(&name),
                    None => Login::new(),
                };
                cx.goto = Some(Screen::Login(login));
            }
            KeyCode::Esc if cx.kiosk() => cx.open(Target::Login),
            _ => {
                let Some(name) = self.selected_name() else {
                    return;
                };
                match key.code {
                    KeyCode::Enter => cx.open(Target::Settings(name)),
                    KeyCode::Char('e') => {
                        cx.goto = Some(Screen::Enroll(Enroll::new(
                            &name,
                            Target::Settings(name.clone()),
                        )))
                    }
                    KeyCode::Char('u') => cx.call(Call::Unlock { name }),
                    _ => {}
                }
            }
        }
    }

    fn on_outcome(&mut self, outcome: Outcome, cx: &mut Cx) {
        match outcome {
            Outcome::Accounts(Ok(list)) => {
                self.list = list;
                self.loaded = true;
                self.clamp();
            }
            Outcome::Accounts(Err(e)) => cx.error(e),
            Outcome::Unlocked { name, result } => {
                match result {
                    Ok(()) => cx.info(format!("'{name}' unlocked: its failure counter is cleared")),
                    Err(e) => cx.error(e),
                }
                cx.call(Call::ListAccounts);
            }
            _ => {}
        }
    }

    fn draw(&self, frame: &mut Frame<'_>, area: Rect, vx: &ViewCx) {
        let theme = vx.theme;
        let [filter_area, table_area] =
            Layout::vertical([Constraint::Length(1), Constraint::Min(1)]).areas(area);
        let filter = if self.filtering || !self.filter.is_empty() {
            let cursor = if self.filtering { "_" } else { "" };
            Line::from(vec![
                Span::styled(
                    " filter: ",
                    if self.filtering {
                        theme.focus()
                    } else {
                        theme.dim()
                    },
                ),
                Span::raw(format!("{}{cursor}", self.filter.as_str())),
            ])
        } else {
            Line::styled(" press / to filter, n to create an account", theme.dim())
        };
        frame.render_widget(Paragraph::new(filter), filter_area);

        let visible = self.visible();
        if visible.is_empty() {
            let text = if !self.loaded {
                "loading…"
            } else if self.list.is_empty() {
                "no accounts yet: press n to create one"
            } else {
                "no account matches the filter"
            };
            frame.render_widget(
                Paragraph::new(Line::styled(text, theme.dim())).block(panel()),
                table_area,
            );
            return;
        }
        let header = Row::new(["  Account", "2FA", "Codes", "State", ""]).style(theme.title());
        let rows = visible.iter().enumerate().map(|(i, a)| {
            let codes = if a.total_codes > 0 {
                format!("{}/{}", a.remaining_codes, a.total_codes)
            } else {
                "-".into()
            };
            let state = if a.locked {
                "locked".to_string()
            } else if a.consecutive_failures > 0 {
                format!("{} failed", a.consecutive_failures)
            } else {
                "ok".to_string()
            };
            // One badge per line: both together would not fit the column at 80 columns.
            let badges = badges(a);
            let height = u16::try_from(badges.len().max(1)).unwrap_or(1);
            let mut row = Row::new(vec![
                // A marker as well as the reverse style, so the selection shows without colour.
                Cell::from(format!(
                    "{} {}",
                    if i == self.selected { "›" } else { " " },
                    a.name
                )),
                Cell::from(two_factor_label(a)),
                Cell::from(codes),
                Cell::from(Line::styled(
                    state,
                    if a.locked {
                        theme.error()
                    } else {
                        Default::default()
                    },
                )),
                // Styled per line, not per cell: an empty cell of a selected row stays plain.
                Cell::from(Text::from_iter(
                    badges.into_iter().map(|b| Line::styled(b, theme.warn())),
                )),
            ])
            .height(height);
            if i == self.selected {
                row = row.style(theme.selected());
            }
            row
        });
        let table = Table::new(
            rows,
            [
                Constraint::Min(18),
                Constraint::Length(12),
                Constraint::Length(7),
                Constraint::Length(10),
                Constraint::Length(20),
            ],
        )
        .header(header)
        .block(panel());
        frame.render_widget(table, table_area);
    }
}
