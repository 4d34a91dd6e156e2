//! The pure view: [`view`] draws the whole frame from the [`App`] alone (title bar, the current
//! screen, status line, footer, help overlay, or the too-small notice). Must never change state,
//! call the service or read the clock: the same `App` always draws the same frame, which is what
//! makes snapshots deterministic.

use crate::core::account::printable;
use ratatui::Frame;
use ratatui::layout::{Alignment, Constraint, Flex, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph, Wrap};

use crate::core::error::human_duration;
use crate::tui::app::{App, Status, StatusKind, ViewCx, WORKING};
use crate::tui::keys::{CLEAR_CLIPBOARD, GLOBAL_KEYS, HELP_KEY, KeyHint};
use crate::tui::widgets::margin;

/// The smallest terminal the layout is made for (a default SSH session).
pub const MIN_WIDTH: u16 = 80;
pub const MIN_HEIGHT: u16 = 24;

pub fn view(app: &App, frame: &mut Frame<'_>) {
    let area = frame.area();
    let theme = app.options.theme;
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        let lines = vec![
            Line::styled(
                format!("terminal too small (need {MIN_WIDTH}x{MIN_HEIGHT})"),
                theme.error(),
            ),
            Line::raw(format!("now {}x{}", area.width, area.height)),
        ];
        let [middle] = Layout::vertical([Constraint::Length(2)])
            .flex(Flex::Center)
            .areas(area);
        frame.render_widget(Paragraph::new(lines).alignment(Alignment::Center), middle);
        return;
    }
    if app.screen.component().full_screen() && !app.help {
        let vx = view_cx(app);
        frame.render_widget(Clear, area);
        app.screen.component().draw(frame, area, &vx);
        return;
    }
    // While a call runs the status line says so, on the screen that made the call (keys wait
    // until it is answered, so the screen cannot change meanwhile).
    let working = app.working().then(|| Status::info(WORKING));
    // The idle warning outranks everything else on the status line: it is about to act.
    let idle = app.idle_countdown().map(|left| idle_warning(app, left));
    let shown = idle.as_ref().or(working.as_ref()).or(app.status.as_ref());
    // A long message (a drift explanation, a path) gets a second line rather than being cut.
    // Messages and titles carry account names: shown escaped, never obeyed by the terminal.
    let status_text = shown
        .map(|s| printable(&s.text).into_owned())
        .unwrap_or_default();
    let status_height = if Line::raw(status_text.as_str()).width() + 2 > area.width as usize {
        2
    } else {
        1
    };
    let [title, body, status, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(1),
        Constraint::Length(status_height),
        Constraint::Length(1),
    ])
    .areas(area);

    let mut title_spans = vec![
        Span::styled(" sparekey ", theme.selected()),
        Span::raw(" "),
        Span::styled(printable(&app.screen.title()).into_owned(), theme.title()),
    ];
    if app.options.kiosk {
        title_spans.push(Span::raw("  "));
        title_spans.push(Span::styled(" KIOSK ", theme.selected()));
    }
    frame.render_widget(Paragraph::new(Line::from(title_spans)), title);

    let vx = view_cx(app);
    app.screen.component().draw(frame, body, &vx);

    if let Some(s) = shown {
        let style = if s.kind == StatusKind::Error {
            theme.error()
        } else {
            theme.ok()
        };
        frame.render_widget(
            Paragraph::new(Line::styled(status_text, style))
                .wrap(Wrap { trim: false })
                .block(margin()),
            status,
        );
    }

    frame.render_widget(
        Paragraph::new(footer_line(&all_keys(app), footer.width, &vx)),
        footer,
    );

    if app.help {
        draw_help(app, frame, body, &vx);
    }
}

/// The countdown before a kiosk's idle clear.
fn idle_warning(app: &App, left: i64) -> Status {
    let (what, it) = if app.screen.holds_codes() {
        (
            "these backup codes will be cleared, never to be shown again,",
            "them",
        )
    } else {
        ("this screen will be cleared", "it")
    };
    Status::error(format!(
        "No key for a while: {what} in {}. Press any key to keep {it}.",
        human_duration(left)
    ))
}

fn view_cx(app: &App) -> ViewCx {
    ViewCx {
        theme: app.options.theme,
        now: app.now,
        kiosk: app.options.kiosk,
        totp: app.options.totp,
    }
}

/// The keys of the current screen followed by the global ones: the single source for both the
/// footer and the help overlay.
pub fn all_keys(app: &App) -> Vec<KeyHint> {
    let mut keys: Vec<KeyHint> = app.screen.keys().to_vec();
    if app.clipboard.is_some() {
        keys.push(CLEAR_CLIPBOARD);
    }
    for g in GLOBAL_KEYS {
        // While a field has focus, q is typed, so it is not offered.
        if app.screen.typing() && g.key == "q" {
            continue;
        }
        // A screen's own meaning of a key (Esc: "cancel", "n/Esc": "stay") replaces the generic one.
        let taken = |k: &KeyHint| k.key.split('/').any(|a| g.key.split('/').any(|b| a == b));
        if !keys.iter().any(taken) {
            keys.push(*g);
        }
    }
    keys
}

/// As many keys as fit, always ending with the way to the full list.
fn footer_line(keys: &[KeyHint], width: u16, vx: &ViewCx) -> Line<'static> {
    let help = keys
        .iter()
        .find(|k| k.key == HELP_KEY.key)
        .copied()
        .unwrap_or(HELP_KEY);
    let cost = |k: &KeyHint| k.key.chars().count() + k.action.chars().count() + 3;
    let mut spans = vec![Span::raw(" ")];
    let mut used = 1 + cost(&help);
    for k in keys.iter().filter(|k| k.key != help.key) {
        if used + cost(k) > width as usize {
            break;
        }
        spans.push(Span::styled(k.key, vx.theme.key()));
        spans.push(Span::raw(format!(" {}  ", k.action)));
        used += cost(k);
    }
    spans.push(Span::styled(help.key, vx.theme.key()));
    spans.push(Span::raw(format!(" {}", help.action)));
    Line::from(spans)
}

fn draw_help(app: &App, frame: &mut Frame<'_>, body: Rect, vx: &ViewCx) {
    let keys = all_keys(app);
    let key_width = keys
        .iter()
        .map(|k| k.key.chars().count())
        .max()
        .unwrap_or(0);
    let mut lines: Vec<Line<'_>> = keys
        .iter()
        .map(|k| {
            Line::from(vec![
                Span::styled(format!("  {:>key_width$}  ", k.key), vx.theme.key()),
                Span::raw(k.action),
            ])
        })
        .collect();
    lines.push(Line::raw(""));
    lines.push(Line::styled("  Any key closes this help.", vx.theme.dim()));
    let width = (lines.iter().map(|l| l.width()).max().unwrap_or(20) as u16 + 4).min(body.width);
    let height = (lines.len() as u16 + 2).min(body.height);
    let [row] = Layout::vertical([Constraint::Length(height)])
        .flex(Flex::Center)
        .areas(body);
    let [popup] = Layout::horizontal([Constraint::Length(width)])
        .flex(Flex::Center)
        .areas(row);
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(lines)
            .block(Block::bordered().title(format!(" Keys: {} ", app.screen.title()))),
        popup,
    );
}
