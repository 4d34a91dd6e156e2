//! The pure view: [`view`] draws the whole frame from the [`App`] alone (title bar, the current
//! screen, status line, footer, help overlay, or the too-small notice). Must never change state,
//! call the service or read the clock: the same `App` always draws the same frame, which is what
//! makes snapshots deterministic.

use ratatui::Frame;
use ratatui::layout::{Alignment, Constraint, Flex, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph};

use crate::tui::app::{App, StatusKind, ViewCx};
use crate::tui::keys::{CLEAR_CLIPBOARD, GLOBAL_KEYS, KeyHint};

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
    let [title, body, status, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(1),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(area);

    let mut title_spans = vec![
        Span::styled(" sparekey ", theme.selected()),
        Span::raw(" "),
        Span::styled(app.screen.title(), theme.title()),
    ];
    if app.options.kiosk {
        title_spans.push(Span::raw("  "));
        title_spans.push(Span::styled(" KIOSK ", theme.selected()));
    }
    frame.render_widget(Paragraph::new(Line::from(title_spans)), title);

    let vx = ViewCx {
        theme,
        now: app.now,
        kiosk: app.options.kiosk,
        totp: app.options.totp,
    };
    app.screen.component().draw(frame, body, &vx);

    if let Some(s) = &app.status {
        let style = if s.kind == StatusKind::Error {
            theme.error()
        } else {
            theme.ok()
        };
        frame.render_widget(
            Paragraph::new(Line::styled(format!(" {}", s.text), style)),
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

/// The keys of the current screen followed by the global ones: the single source for both the
/// footer and the help overlay.
pub fn all_keys(app: &App) -> Vec<KeyHint> {
    let mut keys: Vec<KeyHint> = app.screen.keys().to_vec();
    if app.clipboard.is_some() {
        keys.push(CLEAR_CLIPBOARD);
    }
    for g in GLOBAL_KEYS {
        // A screen's own meaning of a key (Esc: "cancel") replaces the generic one.
        if !keys.iter().any(|k| k.key == g.key) {
            keys.push(*g);
        }
    }
    keys
}

fn footer_line(keys: &[KeyHint], width: u16, vx: &ViewCx) -> Line<'static> {
    let mut spans = vec![Span::raw(" ")];
    let mut used = 1usize;
    for k in keys {
        let len = k.key.chars().count() + k.action.chars().count() + 3;
        if used + len > width as usize {
            break;
        }
        spans.push(Span::styled(k.key, vx.theme.key()));
        spans.push(Span::raw(format!(" {}  ", k.action)));
        used += len;
    }
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
