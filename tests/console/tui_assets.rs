//! The README's pictures of the console: the main screens rendered to SVG from the same
//! deterministic TestBackend frames as the snapshots, in colour. The test fails when a committed
//! `assets/*.svg` differs from what the screens draw now, so the pictures cannot go stale;
//! `SPAREKEY_UPDATE_ASSETS=1 cargo test --test console tui_assets` rewrites them instead (review
//! them like a changed snapshot before committing).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::support::console::*;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::style::{Color, Modifier};
use sparekey::tui::ui::view;
use sparekey::tui::widgets::Theme;

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

/// The variable that turns the check into a rewrite.
const UPDATE_VAR: &str = "SPAREKEY_UPDATE_ASSETS";

fn assets_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("assets")
}

/// The pictures, rendered in memory and in order.
#[derive(Default)]
struct Pictures(Vec<(String, String)>);

impl Pictures {
    fn take(&mut self, h: &mut H, name: &str) {
        h.d.app.options.theme = Theme { color: true };
        let mut terminal = Terminal::new(TestBackend::new(W, H_)).unwrap();
        terminal.draw(|f| view(&h.d.app, f)).unwrap();
        self.0
            .push((format!("{name}.svg"), svg(terminal.backend().buffer())));
    }
}

/// Each picture against its committed file, and committed pictures that nothing renders.
fn stale(pictures: &Pictures, dir: &Path) -> Vec<String> {
    let mut problems = vec![];
    for (file, rendered) in &pictures.0 {
        match std::fs::read_to_string(dir.join(file)) {
            Ok(committed) if committed == *rendered => {}
            Ok(_) => problems.push(format!("{file} differs from what the screen draws now")),
            Err(e) => problems.push(format!("{file} cannot be read: {e}")),
        }
    }
    for orphan in orphans(pictures, dir) {
        problems.push(format!("{orphan} is no longer rendered"));
    }
    problems
}

fn orphans(pictures: &Pictures, dir: &Path) -> Vec<String> {
    let mut orphans: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|f| f.ends_with(".svg"))
                .filter(|f| !pictures.0.iter().any(|(name, _)| name == f))
                .collect()
        })
        .unwrap_or_default();
    orphans.sort();
    orphans
}

fn update(pictures: &Pictures, dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for (file, rendered) in &pictures.0 {
        std::fs::write(dir.join(file), rendered).unwrap();
    }
    for orphan in orphans(pictures, dir) {
        std::fs::remove_file(dir.join(orphan)).unwrap();
    }
}

/// The screens the README shows, driven by keys like the state tests.
fn render_readme_pictures() -> Pictures {
    let mut pictures = Pictures::default();
    let mut h = H::with(false, |s, c| {
        enroll(s, c, "alice@example.com");
        s.create_account("bob", PASSWORD).unwrap();
        let (_, dave) = enroll(s, c, "dave");
        for code in &dave.codes[..8] {
            s.login("dave", PASSWORD, Some(code.canonical())).unwrap();
        }
    });
    pictures.take(&mut h, "accounts");

    let secret = new_account_to_scan(&mut h, "carol");
    pictures.take(&mut h, "enroll-qr");
    h.enter();
    h.typed(&h.totp(&secret));
    h.enter();
    pictures.take(&mut h, "codes-once");
    h.esc();
    h.typed("y");
    pictures.take(&mut h, "settings");

    h.esc();
    h.typed("j");
    h.typed("j");
    h.typed("l");
    h.typed(PASSWORD);
    h.enter();
    h.typed("1026-658x-4dg9");
    pictures.take(&mut h, "login-backup-code");
    h.esc();
    h.esc();
    h.esc();
    h.typed("?");
    pictures.take(&mut h, "help");
    pictures
}

#[test]
fn readme_pictures_match_the_screens() {
    let pictures = render_readme_pictures();
    let dir = assets_dir();
    if std::env::var(UPDATE_VAR).as_deref() == Ok("1") {
        update(&pictures, &dir);
        return;
    }
    let problems = stale(&pictures, &dir);
    assert!(
        problems.is_empty(),
        "the README pictures in {} are stale:\n  {}\nIf the screens changed on purpose, \
         rewrite them with `{UPDATE_VAR}=1 cargo test --test console tui_assets`, then look at \
         them (and `git diff assets/`) before committing.",
        dir.display(),
        problems.join("\n  ")
    );
}
