//! The README's pictures of the console: each `assets/NAME.keys` key file is run through the
//! demo driver (`sparekey tui --demo --keys`, called here as the library function behind it) at
//! 100x32 in colour, and its last frame is `assets/NAME.svg`. The test fails when a committed
//! picture differs from what its key file draws now, or has no key file, so the pictures cannot
//! go stale; `SPAREKEY_UPDATE_ASSETS=1 cargo test --test console tui_assets` rewrites them instead
//! (review them like a changed snapshot before committing).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use ratatui::buffer::Buffer;
use ratatui::style::{Color, Modifier};
use sparekey::core::service::Config;
use sparekey::tui::TuiOptions;
use sparekey::tui::demo::{FrameSize, parse_keys, run_script};
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
    /// Runs `keys` on a fresh demo store and keeps its last frame as `name`.svg.
    fn draw(&mut self, name: &str, keys: &str) {
        let script = parse_keys(keys).unwrap_or_else(|e| panic!("assets/{name}.keys: {e}"));
        let size = FrameSize {
            width: W,
            height: H_,
        };
        let mut last = None;
        run_script(
            &script,
            Config::default(),
            &TuiOptions::default(),
            size,
            Theme { color: true },
            |frame| {
                last = Some(frame.buffer.clone());
                Ok(())
            },
        )
        .unwrap_or_else(|e| panic!("assets/{name}.keys: {e:?}"));
        let buffer = last.expect("a run draws at least the opening frame");
        self.0.push((format!("{name}.svg"), svg(&buffer)));
    }
}

/// Each picture against its committed file, and committed pictures that nothing renders.
fn stale(pictures: &Pictures, dir: &Path) -> Vec<String> {
    let mut problems = vec![];
    for (file, rendered) in &pictures.0 {
        match std::fs::read_to_string(dir.join(file)) {
            Ok(committed) if committed == *rendered => {}
            Ok(_) => problems.push(format!("{file} differs from what its key file draws now")),
            Err(e) => problems.push(format!("{file} cannot be read: {e}")),
        }
    }
    for orphan in orphans(pictures, dir) {
        problems.push(format!("{orphan} has no key file that draws it"));
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

/// The pictures the key files in `dir` draw, in name order.
fn render_readme_pictures(dir: &Path) -> Pictures {
    let mut keys: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "keys"))
        .collect();
    keys.sort();
    assert!(!keys.is_empty(), "no key files in {}", dir.display());
    let mut pictures = Pictures::default();
    for path in keys {
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        pictures.draw(&name, &std::fs::read_to_string(&path).unwrap());
    }
    pictures
}

#[test]
fn readme_pictures_match_the_screens() {
    let dir = assets_dir();
    let pictures = render_readme_pictures(&dir);
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
