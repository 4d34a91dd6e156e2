//! Small building blocks shared by the screens: a text field whose buffer is wiped, the theme
//! (colour or NO_COLOR), the QR code drawn with half blocks, and date formatting. Must never
//! hold a typed secret in a buffer that is not zeroized, and never read the clock.

use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Padding};
use zeroize::Zeroizing;

use crate::core::qr;

/// A one-line text input. The buffer is zeroized on every change of size and on drop, so a
/// password does not linger in freed memory.
#[derive(Debug, Default)]
pub struct Field {
    text: Zeroizing<String>,
    pub masked: bool,
}

impl Field {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn masked() -> Self {
        Self {
            text: Zeroizing::default(),
            masked: true,
        }
    }
    pub fn with_text(text: &str) -> Self {
        let mut f = Self::new();
        f.set(text);
        f
    }
    pub fn set(&mut self, text: &str) {
        // Reserve first so the push never reallocates and leaves an unzeroized copy behind.
        let mut buf = Zeroizing::new(String::with_capacity(text.len().max(64)));
        buf.push_str(text);
        self.text = buf;
    }
    pub fn push(&mut self, c: char) {
        if self.text.len() + c.len_utf8() > self.text.capacity() {
            let mut bigger =
                Zeroizing::new(String::with_capacity((self.text.capacity() * 2).max(64)));
            bigger.push_str(&self.text);
            self.text = bigger;
        }
        self.text.push(c);
    }
    pub fn pop(&mut self) {
        self.text.pop();
    }
    pub fn as_str(&self) -> &str {
        &self.text
    }
    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }
    /// Hands the content over and leaves the field empty.
    pub fn take(&mut self) -> Zeroizing<String> {
        std::mem::take(&mut self.text)
    }
    pub fn clear(&mut self) {
        self.text = Zeroizing::default();
    }
    /// Applies an editing key; returns whether it was one.
    pub fn edit(&mut self, key: &ratatui::crossterm::event::KeyEvent) -> bool {
        use ratatui::crossterm::event::{KeyCode, KeyModifiers};
        match key.code {
            KeyCode::Char('u') if key.modifiers.contains(KeyModifiers::CONTROL) => {
                self.clear();
                true
            }
            KeyCode::Char(c) if !key.modifiers.contains(KeyModifiers::CONTROL) => {
                self.push(c);
                true
            }
            KeyCode::Backspace => {
                self.pop();
                true
            }
            _ => false,
        }
    }
    /// What the screen shows: dots for masked fields, never the length-revealing text itself
    /// beyond the dot count.
    pub fn shown(&self) -> String {
        if self.masked {
            "•".repeat(self.text.chars().count())
        } else {
            self.text.to_string()
        }
    }
}

/// Colours when allowed, otherwise bold and reverse only (<https://no-color.org>).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Theme {
    pub color: bool,
}

impl Theme {
    /// NO_COLOR set to any non-empty value turns colour off.
    pub fn from_env() -> Self {
        Self {
            color: std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        }
    }
    pub fn plain() -> Self {
        Self { color: false }
    }
    pub fn title(&self) -> Style {
        let s = Style::default().add_modifier(Modifier::BOLD);
        if self.color { s.fg(Color::Cyan) } else { s }
    }
    pub fn error(&self) -> Style {
        let s = Style::default().add_modifier(Modifier::BOLD);
        if self.color { s.fg(Color::Red) } else { s }
    }
    pub fn warn(&self) -> Style {
        let s = Style::default().add_modifier(Modifier::BOLD);
        if self.color { s.fg(Color::Yellow) } else { s }
    }
    pub fn ok(&self) -> Style {
        if self.color {
            Style::default().fg(Color::Green)
        } else {
            Style::default()
        }
    }
    pub fn dim(&self) -> Style {
        if self.color {
            Style::default().fg(Color::DarkGray)
        } else {
            Style::default()
        }
    }
    pub fn key(&self) -> Style {
        let s = Style::default().add_modifier(Modifier::BOLD);
        if self.color { s.fg(Color::Cyan) } else { s }
    }
    pub fn selected(&self) -> Style {
        Style::default().add_modifier(Modifier::REVERSED)
    }
    pub fn focus(&self) -> Style {
        let s = Style::default().add_modifier(Modifier::BOLD);
        if self.color {
            s.fg(Color::Yellow)
        } else {
            s.add_modifier(Modifier::UNDERLINED)
        }
    }
}

/// A labelled input line: `label: [value_]`, with the cursor mark when focused.
pub fn field_line(label: &str, field: &Field, focused: bool, theme: &Theme) -> Line<'static> {
    let value = field.shown();
    let cursor = if focused { "_" } else { "" };
    let style = if focused {
        theme.focus()
    } else {
        Style::default()
    };
    Line::from(vec![
        Span::styled(format!("{label:>17}: "), style),
        Span::raw(format!("{value}{cursor}")),
    ])
}

/// The QR code of `data` as terminal lines (see [`crate::core::qr`]), or `None` if it cannot
/// be encoded. Dark modules are drawn black on white when colour is allowed; without colour the
/// light modules are drawn as blocks, which reads right on the usual dark terminal background.
pub fn qr_lines(data: &str, theme: &Theme) -> Option<Vec<Line<'static>>> {
    let (glyphs, style) = if theme.color {
        (
            qr::Glyphs::Dark,
            Style::default().fg(Color::Black).bg(Color::White),
        )
    } else {
        (qr::Glyphs::Light, Style::default())
    };
    let lines = qr::half_block_lines(data.as_bytes(), glyphs)?;
    Some(
        lines
            .iter()
            .map(|l| Line::from(Span::styled(l.clone(), style)))
            .collect(),
    )
}

/// Lines that paint `area` in the QR code's light colour: white cells with colour, blocks
/// without (the same glyphs [`qr_lines`] paints light modules with), so the whole screen around
/// a full-screen code is its quiet zone.
pub fn qr_background(area: ratatui::layout::Rect, theme: &Theme) -> Vec<Line<'static>> {
    let (cell, style) = if theme.color {
        (" ", Style::default().fg(Color::Black).bg(Color::White))
    } else {
        ("█", Style::default())
    };
    let row = cell.repeat(usize::from(area.width));
    (0..area.height)
        .map(|_| Line::from(Span::styled(row.clone(), style)))
        .collect()
}

/// Text drawn on [`qr_background`]: dark on white with colour; without colour, on the
/// terminal's own background (the caller clears the row of blocks first).
pub fn qr_text_style(theme: &Theme) -> Style {
    if theme.color {
        Style::default().fg(Color::Black).bg(Color::White)
    } else {
        Style::default()
    }
}

/// Columns and rows the QR code of `data` needs.
pub fn qr_size(data: &str) -> Option<(u16, u16)> {
    let (w, h) = qr::size(data.as_bytes())?;
    Some((u16::try_from(w).ok()?, u16::try_from(h).ok()?))
}

pub use crate::core::time_text::{utc_date as format_date, utc_minute as format_time};

/// `text` cut to fit `max` terminal columns, ending in `…` when anything was left out, so a cut
/// name never passes for a whole one.
pub fn fit(text: &str, max: usize) -> String {
    let width = |t: &str| Span::raw(t).width();
    if width(text) <= max {
        return text.to_string();
    }
    let mut kept = String::new();
    for c in text.chars() {
        kept.push(c);
        if width(&kept) + 1 > max {
            kept.pop();
            break;
        }
    }
    kept.push('…');
    kept
}

/// The bordered box every screen body sits in, with a column of air inside the border.
pub fn panel() -> Block<'static> {
    Block::bordered().padding(Padding::horizontal(1))
}

/// The same air as [`panel`], without the border.
pub fn margin() -> Block<'static> {
    Block::new().padding(Padding::horizontal(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_cuts_with_an_ellipsis_by_terminal_columns() {
        assert_eq!(fit("alice", 5), "alice");
        assert_eq!(fit("alice-and-bob", 6), "alice…");
        // Wide characters take two columns each.
        assert_eq!(fit("日本語の名前", 7), "日本語…");
        assert_eq!(Span::raw(fit("日本語の名前", 6)).width(), 5);
    }

    #[test]
    fn fields_mask_and_wipe() {
        let mut f = Field::masked();
        for c in "hunter22".chars() {
            f.push(c);
        }
        assert_eq!(f.shown(), "••••••••");
        assert_eq!(f.take().as_str(), "hunter22");
        assert!(f.is_empty());
    }

    #[test]
    fn qr_has_quiet_zone() {
        let lines = qr_lines("otpauth://totp/x:y?secret=AAAA", &Theme { color: true }).unwrap();
        let (w, h) = qr_size("otpauth://totp/x:y?secret=AAAA").unwrap();
        assert_eq!(lines.len(), h as usize);
        let first: String = lines[0].spans.iter().map(|s| s.content.as_ref()).collect();
        assert_eq!(first.chars().count(), w as usize);
        assert!(first.chars().all(|c| c == ' '), "the quiet zone is light");
    }
}
