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
use crate::tui::app::{Call, Component, Cx, Outcome, Target, ViewCx};
use crate::tui::keys::{KeyHint, hint};
use crate::tui::widgets::{Field, panel};

/// Accounts asked for before the first frame: a screenful on any sensible terminal.
pub const FIRST_PAGE: usize = 200;
/// Accounts asked for per [`Effect::Later`](crate::tui::app::Effect::Later) call after the first
/// page: small enough that a key waits a few ms at most behind one, large enough that 100,000
/// load in a fraction of a second of idle time.
pub const CHUNK: usize = 2_500;
/// Table rows assumed when the runtime has not reported the terminal size (the smallest
/// layout: 24 lines minus the title, status, footer, filter line, borders and header).
const DEFAULT_ROWS: usize = 17;
/// Lines of the frame around the table: title, status, footer, filter line, two borders and the
/// header.
const CHROME_ROWS: u16 = 7;

/// Where loading the list stands.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
enum Load {
    /// Waiting for the page that starts after this name (`None`: the first page). Pages of
    /// another chain (an earlier refresh, a screen left meanwhile) are ignored.
    Waiting(Option<String>),
    /// Every account was read.
    #[default]
    Done,
    /// Reading failed; `r` retries.
    Failed,
}

/// The account list, its filter and its selection. The list is kept sorted by name (the order
/// the store pages it in) and arrives page by page: the first page before the first frame, the
/// rest in chunks between keys. The names are lowered once when they arrive, and the filter is
/// incremental: a filter that only grew narrows the previous matches, any other change scans
/// the lowered names once on that keystroke. A frame builds rows only for the window on screen.
#[derive(Debug, Default)]
pub struct Accounts {
    list: Vec<AccountSummary>,
    /// `lower[i]`: the lowercased name of `list[i]` when it differs from the name.
    lower: Vec<Option<Box<str>>>,
    /// Indices into `list` of the accounts matching `needle`, ascending (so sorted by name).
    matches: Vec<usize>,
    /// The lowercased filter `matches` is for.
    needle: String,
    load: Load,
    /// Accounts received by the current load (the title's progress).
    read: usize,
    pub filter: Field,
    pub filtering: bool,
    /// Index of the selection among the matching accounts.
    pub selected: usize,
    /// Index among the matching accounts of the first row drawn, kept so the window only
    /// scrolls when the selection leaves it.
    pub offset: usize,
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
    hint("PgUp/PgDn", "page"),
    hint("Home/End", "first/last"),
];

const FILTER_KEYS: &[KeyHint] = &[
    hint("type", "filter by name"),
    hint("Enter", "keep filter"),
    hint("Esc", "clear filter"),
];

impl Accounts {
    /// A list waiting for its first page: open it with [`Accounts::first_page`].
    pub fn new() -> Self {
        Self {
            load: Load::Waiting(None),
            ..Self::default()
        }
    }

    /// The call that loads the first page (the rest follows in chunks).
    pub fn first_page() -> Call {
        Call::ListAccountsPage {
            after: None,
            limit: FIRST_PAGE,
        }
    }

    /// The accounts matching the filter, sorted by name.
    pub fn visible(&self) -> impl ExactSizeIterator<Item = &AccountSummary> + '_ {
        self.matches.iter().map(|&i| &self.list[i])
    }

    pub fn visible_len(&self) -> usize {
        self.matches.len()
    }

    /// Accounts loaded so far.
    pub fn loaded_len(&self) -> usize {
        self.list.len()
    }

    /// Whether more of the list is still to come.
    pub fn is_loading(&self) -> bool {
        matches!(self.load, Load::Waiting(_))
    }

    pub fn selected_account(&self) -> Option<&AccountSummary> {
        self.matches.get(self.selected).map(|&i| &self.list[i])
    }

    fn selected_name(&self) -> Option<String> {
        self.selected_account().map(|a| a.name.clone())
    }

    fn lower(&self, i: usize) -> &str {
        self.lower[i].as_deref().unwrap_or(&self.list[i].name)
    }

    /// Re-filters after the filter changed: narrows the previous matches when every name that
    /// matches the new filter must have matched the old one, else scans the lowered names.
    fn refilter(&mut self) {
        let needle = self.filter.as_str().to_lowercase();
        if needle == self.needle {
            return;
        }
        if needle.contains(self.needle.as_str()) {
            let mut matches = std::mem::take(&mut self.matches);
            matches.retain(|&i| self.lower(i).contains(needle.as_str()));
            self.matches = matches;
        } else {
            self.matches = (0..self.list.len())
                .filter(|&i| self.lower(i).contains(needle.as_str()))
                .collect();
        }
        self.needle = needle;
        self.clamp();
    }

    /// Puts a page in place of the accounts it covers: those named after `after` up to its last
    /// name, or up to the end if it is the last page. On a first load that appends; on a
    /// refresh it replaces the stretch re-read and keeps the rest until its turn comes.
    fn splice(&mut self, after: Option<&str>, page: Vec<AccountSummary>, last: bool) {
        let keep = self.selected_name();
        let row_on_screen = self.selected.saturating_sub(self.offset);
        let lo = after.map_or(0, |a| self.list.partition_point(|x| x.name.as_str() <= a));
        let hi = match page.last() {
            Some(end) if !last => self
                .list
                .partition_point(|x| x.name.as_str() <= end.name.as_str()),
            _ => self.list.len(),
        }
        .max(lo);
        let (removed, added) = (hi - lo, page.len());
        let lowered: Vec<Option<Box<str>>> = page
            .iter()
            .map(|a| {
                let lower = a.name.to_lowercase();
                (lower != a.name).then(|| lower.into_boxed_str())
            })
            .collect();
        let page_matches: Vec<usize> = page
            .iter()
            .zip(&lowered)
            .enumerate()
            .filter(|(_, (a, l))| {
                l.as_deref()
                    .unwrap_or(&a.name)
                    .contains(self.needle.as_str())
            })
            .map(|(j, _)| lo + j)
            .collect();
        let m_lo = self.matches.partition_point(|&i| i < lo);
        let m_hi = self.matches.partition_point(|&i| i < hi);
        for m in &mut self.matches[m_hi..] {
            *m = *m - removed + added;
        }
        self.matches.splice(m_lo..m_hi, page_matches);
        self.lower.splice(lo..hi, lowered);
        self.list.splice(lo..hi, page);
        self.read += added;
        // The same account stays selected, on the same row of the screen.
        if let Some(name) = keep {
            self.selected = self
                .matches
                .partition_point(|&i| self.list[i].name.as_str() < name.as_str());
            self.offset = self.selected.saturating_sub(row_on_screen);
        }
        self.clamp();
    }

    /// Starts (re)reading the list from the first page; what is shown stays until replaced.
    fn reload(&mut self, cx: &mut Cx) {
        self.load = Load::Waiting(None);
        self.read = 0;
        cx.call(Self::first_page());
    }

    fn clamp(&mut self) {
        let n = self.matches.len();
        self.selected = self.selected.min(n.saturating_sub(1));
        self.offset = self.offset.min(self.selected);
    }

    /// Lines the row of matching account `i` takes: one per badge, at least one.
    fn row_height(&self, i: usize) -> usize {
        self.matches
            .get(i)
            .map_or(1, |&j| badges(&self.list[j]).len().max(1))
    }

    /// The first matching account drawn in a table of `rows` lines: `offset` while the
    /// selection shows from there, else the nearest start that shows it. Looks at no more rows
    /// than fit the table.
    pub fn window_start(&self, offset: usize, rows: usize) -> usize {
        let selected = self.selected;
        if selected <= offset {
            return selected;
        }
        let mut start = selected;
        let mut used = self.row_height(selected);
        while start > offset {
            let h = self.row_height(start - 1);
            if used + h > rows {
                break;
            }
            used += h;
            start -= 1;
        }
        start
    }

    /// Table rows on screen, from the terminal size the runtime reported.
    fn page_rows(cx: &Cx) -> usize {
        cx.size.map_or(DEFAULT_ROWS, |(_, h)| {
            usize::from(h.saturating_sub(CHROME_ROWS)).max(1)
        })
    }

    /// Moves the selection and scrolls the window just enough to keep it on screen.
    fn select(&mut self, selected: usize, cx: &Cx) {
        self.selected = selected;
        self.clamp();
        self.offset = self.window_start(self.offset, Self::page_rows(cx));
    }

    /// The list's title: loading progress, else how many accounts (and how many match).
    fn list_title(&self) -> Option<String> {
        let (matched, all) = (thousands(self.matches.len()), thousands(self.list.len()));
        let filtered = !self.needle.is_empty();
        match self.load {
            Load::Waiting(_) if self.list.is_empty() => None,
            Load::Waiting(_) => {
                let read = thousands(self.read);
                Some(if filtered {
                    format!(" {matched} match so far · loading accounts… {read} ")
                } else {
                    format!(" loading accounts… {read} ")
                })
            }
            Load::Done | Load::Failed if filtered => Some(format!(
                " {matched} of {all} {} ",
                plural(self.list.len(), "account", "accounts")
            )),
            Load::Done | Load::Failed => Some(format!(
                " {all} {} ",
                plural(self.list.len(), "account", "accounts")
            )),
        }
    }
}

fn plural<'a>(n: usize, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 { one } else { many }
}

/// `1234567` as `1,234,567`.
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
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
            self.refilter();
            self.select(self.selected, cx);
            return;
        }
        let page = Self::page_rows(cx);
        match key.code {
            KeyCode::Up | KeyCode::Char('k') => self.select(self.selected.saturating_sub(1), cx),
            KeyCode::Down | KeyCode::Char('j') => self.select(self.selected + 1, cx),
            KeyCode::PageUp => self.select(self.selected.saturating_sub(page), cx),
            KeyCode::PageDown => self.select(self.selected + page, cx),
            KeyCode::Home => self.select(0, cx),
            KeyCode::End => self.select(usize::MAX, cx),
            KeyCode::Char('/') => self.filtering = true,
            KeyCode::Char('n') => cx.open(Target::NewAccount),
            KeyCode::Char('r') => self.reload(cx),
            KeyCode::Char('l') => {
                // Nothing is looked up for the login: it starts at the password.
                match self.selected_name() {
                    Some(name) => cx.open(Target::LoginFor(name)),
                    None => cx.open(Target::Login),
                }
            }
            KeyCode::Esc if cx.kiosk() => cx.open(Target::Login),
            _ => {
                let Some(name) = self.selected_name() else {
                    return;
                };
                match key.code {
                    KeyCode::Enter => cx.open(Target::Settings(name)),
                    KeyCode::Char('e') => {
                        let has_two_factor = self.selected_account().is_some_and(|a| a.two_factor);
                        cx.open(Target::enroll(name, has_two_factor))
                    }
                    KeyCode::Char('u') => cx.call(Call::Unlock { name }),
                    _ => {}
                }
            }
        }
    }

    fn on_outcome(&mut self, outcome: Outcome, cx: &mut Cx) {
        match outcome {
            Outcome::AccountsPage {
                after,
                limit,
                result,
            } => {
                if self.load != Load::Waiting(after.clone()) {
                    // A page of a load this screen no longer waits for.
                    return;
                }
                let page = match result {
                    Ok(page) => page,
                    Err(e) => {
                        self.load = Load::Failed;
                        cx.error(format!("could not list the accounts (r retries): {e}"));
                        return;
                    }
                };
                let last = page.len() < limit;
                let next = page.last().map(|a| a.name.clone());
                self.splice(after.as_deref(), page, last);
                match next {
                    Some(next) if !last => {
                        self.load = Load::Waiting(Some(next.clone()));
                        cx.later(Call::ListAccountsPage {
                            after: Some(next),
                            limit: CHUNK,
                        });
                    }
                    _ => self.load = Load::Done,
                }
            }
            Outcome::Unlocked { name, result } => {
                match result {
                    Ok(()) => cx.info(format!("'{name}' unlocked: its failure counter is cleared")),
                    Err(e) => cx.error(e),
                }
                self.reload(cx);
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

        let mut block = panel();
        if let Some(title) = self.list_title() {
            block = block.title(title);
        }
        if self.matches.is_empty() {
            let text = if self.load == Load::Failed && self.list.is_empty() {
                "the accounts could not be listed: press r to retry"
            } else if self.list.is_empty() && self.is_loading() {
                "loading…"
            } else if self.list.is_empty() {
                "no accounts yet: press n to create one"
            } else if self.is_loading() {
                "no account loaded so far matches the filter"
            } else {
                "no account matches the filter"
            };
            frame.render_widget(
                Paragraph::new(Line::styled(text, theme.dim())).block(block),
                table_area,
            );
            return;
        }
        let header = Row::new(["  Account", "2FA", "Codes", "State", ""]).style(theme.title());
        // Rows only for the window on screen: the table's lines inside the border and header.
        let rows_on_screen = usize::from(table_area.height.saturating_sub(3)).max(1);
        let start = self.window_start(self.offset, rows_on_screen);
        let end = (start + rows_on_screen).min(self.matches.len());
        let rows = (start..end).map(|i| {
            let a = &self.list[self.matches[i]];
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
                    crate::core::account::printable(&a.name)
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
        .block(block);
        frame.render_widget(table, table_area);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(name: &str, tall: bool) -> AccountSummary {
        AccountSummary {
            name: name.into(),
            two_factor: true,
            enrollment_pending: false,
            remaining_codes: 2,
            total_codes: 10,
            locked: false,
            consecutive_failures: 0,
            last_login: None,
            codes_low: true,
            last_login_used_backup_code: tall,
            needs_attention: true,
        }
    }

    fn names(a: &Accounts) -> Vec<&str> {
        a.visible().map(|s| s.name.as_str()).collect()
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(42_000), "42,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn window_counts_tall_rows() {
        let mut a = Accounts::new();
        // Every row takes two lines (two badges): 5 rows fit 10 lines.
        let page = (0..20)
            .map(|i| summary(&format!("a{i:02}"), true))
            .collect();
        a.splice(None, page, true);
        a.selected = 4;
        assert_eq!(a.window_start(0, 10), 0);
        a.selected = 5;
        assert_eq!(a.window_start(0, 10), 1);
        a.selected = 3;
        assert_eq!(a.window_start(1, 10), 1, "inside the window: no scroll");
        assert_eq!(a.window_start(4, 10), 3, "above it: it becomes the top");
        // A row taller than the table still shows from its top.
        a.selected = 7;
        assert_eq!(a.window_start(0, 1), 7);
    }

    #[test]
    fn splice_replaces_the_stretch_reread_and_keeps_the_selection() {
        let mut a = Accounts::new();
        let all: Vec<_> = ["Amy", "bea", "cal", "dan", "eve", "fay"]
            .iter()
            .map(|n| summary(n, false))
            .collect();
        a.splice(None, all[..2].to_vec(), false);
        a.splice(Some("bea"), all[2..].to_vec(), true);
        a.filter.set("A");
        a.refilter();
        assert_eq!(names(&a), ["Amy", "bea", "cal", "dan", "fay"]);
        a.selected = 3; // dan
        // A refresh: "bea" is gone, "cay" is new, the rest is as it was.
        a.splice(
            None,
            vec![summary("Amy", false), summary("cal", false)],
            false,
        );
        a.splice(
            Some("cal"),
            vec![summary("cay", false), summary("dan", false)],
            false,
        );
        assert_eq!(names(&a), ["Amy", "cal", "cay", "dan", "fay"]);
        assert_eq!(a.selected_account().unwrap().name, "dan");
        a.splice(Some("dan"), vec![], true);
        assert_eq!(names(&a), ["Amy", "cal", "cay", "dan"]);
        assert_eq!(a.loaded_len(), 4, "eve and fay were deleted meanwhile");
        assert_eq!(a.selected_account().unwrap().name, "dan");
    }
}
