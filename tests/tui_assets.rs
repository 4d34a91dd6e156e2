//! Renders the main screens to SVG pictures in `assets/` for the README, from the same
//! deterministic TestBackend frames as the snapshots, in colour. Not part of the normal run:
//! `cargo test --test tui_assets -- --ignored` rewrites the pictures.

mod tui_support;

use std::fmt::Write as _;

use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::crossterm::event::KeyCode;
use ratatui::style::{Color, Modifier};
use sparekey::tui::ui::view;
use sparekey::tui::widgets::Theme;
use tui_support::*;

const W: u16 = 100;
const H_: u16 = 32;
const CELL_W: f32 = 9.0;
const CELL_H: f32 = 18.0;
const FG: &str = "#d8dee9";
const BG: &str = "#1d2128";

fn rgb(color: Color, default: &str) -> String {
    match color {
        Color::Reset => default.to_string(),
        Color::Black => "#000000".into(),
        Color::White => "#ffffff".into(),
        Color::Red => "#e06c75".into(),
        Color::Green => "#98c379".into(),
        Color::Yellow => "#e5c07b".into(),
        Color::Cyan => "#56b6c2".into(),
        Color::DarkGray => "#7f848e".into(),
        Color::Gray => "#abb2bf".into(),
        Color::Rgb(r, g, b) => format!("#{r:02x}{g:02x}{b:02x}"),
        _ => default.to_string(),
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// One SVG of a buffer: backgrounds and block glyphs as rectangles (fonts leave gaps between
/// block characters, which would break the QR code), everything else as text.
fn svg(buffer: &Buffer) -> String {
    let area = buffer.area;
    let (w, h) = (area.width as f32 * CELL_W, area.height as f32 * CELL_H);
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="DejaVu Sans Mono, Menlo, Consolas, monospace" font-size="15">"#
    );
    let _ = writeln!(out, r#"<rect width="{w}" height="{h}" fill="{BG}"/>"#);
    for y in 0..area.height {
        for x in 0..area.width {
            let cell = &buffer[(x, y)];
            let reversed = cell.modifier.contains(Modifier::REVERSED);
            let (mut fg, mut bg) = (rgb(cell.fg, FG), rgb(cell.bg, BG));
            if reversed {
                std::mem::swap(&mut fg, &mut bg);
            }
            let (px, py) = (x as f32 * CELL_W, y as f32 * CELL_H);
            if bg != BG {
                let _ = writeln!(
                    out,
                    r#"<rect x="{px}" y="{py}" width="{CELL_W}" height="{CELL_H}" fill="{bg}"/>"#
                );
            }
            let half = CELL_H / 2.0;
            match cell.symbol() {
                "█" => {
                    let _ = writeln!(
                        out,
                        r#"<rect x="{px}" y="{py}" width="{CELL_W}" height="{CELL_H}" fill="{fg}"/>"#
                    );
                }
                "▀" => {
                    let _ = writeln!(
                        out,
                        r#"<rect x="{px}" y="{py}" width="{CELL_W}" height="{half}" fill="{fg}"/>"#
                    );
                }
                "▄" => {
                    let _ = writeln!(
                        out,
                        r#"<rect x="{px}" y="{}" width="{CELL_W}" height="{half}" fill="{fg}"/>"#,
                        py + half
                    );
                }
                " " | "" => {}
                symbol => {
                    let weight = if cell.modifier.contains(Modifier::BOLD) {
                        r#" font-weight="bold""#
                    } else {
                        ""
                    };
                    let _ = writeln!(
                        out,
                        r#"<text x="{}" y="{}" fill="{fg}"{weight} text-anchor="middle">{}</text>"#,
                        px + CELL_W / 2.0,
                        py + CELL_H * 0.75,
                        escape(symbol)
                    );
                }
            }
        }
    }
    out.push_str("</svg>\n");
    out
}

fn save(h: &mut H, name: &str) {
    h.d.app.options.theme = Theme { color: true };
    let mut terminal = Terminal::new(TestBackend::new(W, H_)).unwrap();
    terminal.draw(|f| view(&h.d.app, f)).unwrap();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("assets")
        .join(format!("{name}.svg"));
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, svg(terminal.backend().buffer())).unwrap();
}

#[test]
#[ignore = "rewrites assets/*.svg; run explicitly"]
fn render_readme_pictures() {
    let mut h = H::with(false, |s, c| {
        enroll(s, c, "alice@example.com");
        s.create_account("bob", PASSWORD).unwrap();
        let (_, dave) = enroll(s, c, "dave");
        for code in &dave.codes[..8] {
            s.login("dave", PASSWORD, Some(code.canonical())).unwrap();
        }
    });
    save(&mut h, "accounts");

    h.typed("n");
    h.typed("carol");
    h.press(KeyCode::Tab);
    h.typed(PASSWORD);
    h.press(KeyCode::Tab);
    h.typed(PASSWORD);
    h.enter();
    h.typed(PASSWORD);
    h.enter();
    save(&mut h, "enroll-qr");
    let sparekey::tui::app::Screen::Enroll(e) = h.screen() else {
        panic!()
    };
    let sparekey::tui::screens::enroll::Step::Scan(en) = &e.step else {
        panic!()
    };
    let secret = en.secret.as_bytes().to_vec();
    h.enter();
    h.typed(&h.totp(&secret));
    h.enter();
    save(&mut h, "codes-once");
    h.esc();
    h.typed("y");
    save(&mut h, "settings");

    h.esc();
    h.typed("j");
    h.typed("j");
    h.typed("l");
    h.typed(PASSWORD);
    h.enter();
    h.typed("b");
    h.typed("1026-658x-4dg9");
    save(&mut h, "login-backup-code");
    h.esc();
    h.esc();
    h.esc();
    h.typed("?");
    save(&mut h, "help");
}
