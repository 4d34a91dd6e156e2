//! Backup codes, shown once: a numbered grid, copy (`c`), export (`e`), and the proof that they
//! were kept by typing one back ("type code #7"). Owns the only copy of the codes in the UI and
//! drops it (each [`BackupCode`] zeroizes itself) the moment the screen is left. Only the proof
//! records the set as confirmed; leaving anyway, or a kiosk's idle clear, leaves it "never
//! confirmed", which the list, the settings and the signed-in screen then show. Must never let
//! the user leave without either the proof or an explicit "leave anyway", and never write the
//! codes anywhere but through an [`Effect`].

use std::path::{Path, PathBuf};

use ratatui::Frame;
use ratatui::crossterm::event::{KeyCode, KeyEvent};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};
use zeroize::Zeroizing;

use crate::core::backup_code::{BackupCode, FORMAT_HINT};
use crate::core::recovery_sheet;
use crate::core::service::IssuedCodes;
use crate::tui::app::{
    AppOptions, Call, ClipboardUsed, Component, Cx, ExportError, Target, ViewCx,
};
use crate::tui::keys::{KeyHint, hint};
use crate::tui::widgets::{Field, field_line, format_date, margin, panel};

#[derive(Debug)]
pub enum Mode {
    Browse,
    Proof(Field),
    Export(Field),
    ConfirmLeave(Target),
}

#[derive(Debug)]
pub struct Codes {
    /// `None` once wiped.
    issued: Option<IssuedCodes>,
    /// "Step 4 of 4" when part of the enrollment wizard.
    pub wizard_step: Option<usize>,
    pub then: Target,
    /// Zero-based index of the code to type back.
    pub ask: usize,
    pub mode: Mode,
    /// How the last copy went out, if any.
    pub copied: Option<ClipboardUsed>,
    pub exported: Option<PathBuf>,
    /// On a kiosk: no copy or export (nothing of the codes may stay on a shared machine).
    pub kiosk: bool,
}

const BROWSE_KEYS: &[KeyHint] = &[
    hint("Enter", "type one code back to finish"),
    hint("c", "copy all"),
    hint("e", "export to a file"),
    hint("Esc", "leave"),
];
const KIOSK_BROWSE_KEYS: &[KeyHint] = &[
    hint("Enter", "type one code back to finish"),
    hint("Esc", "leave"),
];
const PROOF_KEYS: &[KeyHint] = &[hint("Enter", "check"), hint("Esc", "back to the codes")];
const EXPORT_KEYS: &[KeyHint] = &[
    hint("Enter", "write the file"),
    hint("Ctrl-U", "clear the path"),
    hint("Esc", "cancel"),
];
const LEAVE_KEYS: &[KeyHint] = &[hint("y", "leave anyway"), hint("n/Esc", "stay")];

impl Codes {
    pub fn new(issued: IssuedCodes, wizard_step: Option<usize>, then: Target) -> Self {
        let ask = pick_code(&issued.codes);
        Self {
            issued: Some(issued),
            wizard_step,
            then,
            ask,
            mode: Mode::Browse,
            copied: None,
            exported: None,
            kiosk: false,
        }
    }

    pub fn codes(&self) -> &[BackupCode] {
        self.issued
            .as_ref()
            .map(|i| i.codes.as_slice())
            .unwrap_or_default()
    }

    pub fn account(&self) -> &str {
        self.issued
            .as_ref()
            .map(|i| i.account.as_str())
            .unwrap_or_default()
    }

    /// Whether the codes are still held (not yet wiped).
    pub fn holds_codes(&self) -> bool {
        self.issued.is_some()
    }

    /// Asks before leaving for `target` (used for Esc, `q` and Ctrl-C alike).
    pub fn ask_leave(&mut self, target: Target) {
        self.mode = Mode::ConfirmLeave(target);
    }

    fn leave(&mut self, target: Target, cx: &mut Cx) {
        // Dropping the codes zeroizes them; the next frame no longer draws them.
        self.issued = None;
        cx.open(target);
    }
}

/// Which code to ask for: derived from the codes themselves, so it is reproducible in tests yet
/// not a fixed position the user could learn to save alone.
fn pick_code(codes: &[BackupCode]) -> usize {
    if codes.is_empty() {
        return 0;
    }
    let mix = codes
        .iter()
        .flat_map(|c| c.canonical().bytes())
        .fold(0usize, |h, b| {
            h.wrapping_mul(31).wrapping_add(usize::from(b))
        });
    mix % codes.len()
}

impl Component for Codes {
    fn title(&self) -> String {
        let step = self
            .wizard_step
            .map(|n| format!(" · Step {n} of {n}"))
            .unwrap_or_default();
        format!("Backup codes for '{}', shown once{step}", self.account())
    }

    fn keys(&self) -> &'static [KeyHint] {
        match self.mode {
            Mode::Browse if self.kiosk => KIOSK_BROWSE_KEYS,
            Mode::Browse => BROWSE_KEYS,
            Mode::Proof(_) => PROOF_KEYS,
            Mode::Export(_) => EXPORT_KEYS,
            Mode::ConfirmLeave(_) => LEAVE_KEYS,
        }
    }

    fn typing(&self) -> bool {
        matches!(self.mode, Mode::Proof(_) | Mode::Export(_))
    }

    fn on_show(&mut self, options: &AppOptions) {
        self.kiosk = options.kiosk;
    }

    fn on_key(&mut self, key: KeyEvent, cx: &mut Cx) {
        match &mut self.mode {
            Mode::Browse => match key.code {
                KeyCode::Enter => self.mode = Mode::Proof(Field::new()),
                // Not offered on a kiosk: the codes are written down by hand there.
                KeyCode::Char('c' | 'e') if self.kiosk => {}
                KeyCode::Char('c') => {
                    if let Some(issued) = &self.issued {
                        cx.copy(recovery_sheet::clipboard_text(issued));
                    }
                }
                KeyCode::Char('e') => {
                    if let Some(issued) = &self.issued {
                        let name = recovery_sheet::file_name(&issued.account, issued.issued_at);
                        let path = cx.options.export_dir.join(name);
                        self.mode = Mode::Export(Field::with_text(&path.to_string_lossy()));
                    }
                }
                KeyCode::Esc => self.ask_leave(self.then.clone()),
                _ => {}
            },
            Mode::Proof(field) => match key.code {
                KeyCode::Esc => self.mode = Mode::Browse,
                KeyCode::Enter => {
                    let typed = field.take();
                    let expected = self.codes().get(self.ask);
                    match BackupCode::parse(&typed) {
                        Ok(code) if Some(&code) == expected => {
                            // Recorded before the next screen loads, so it shows it confirmed.
                            if let Some(issued) = &self.issued {
                                cx.call(Call::ConfirmCodes {
                                    name: issued.account.clone(),
                                    set_id: issued.set_id,
                                });
                            }
                            cx.info("well kept: the codes are now wiped from this screen");
                            self.leave(self.then.clone(), cx);
                        }
                        Ok(_) => {
                            cx.error(format!("that is not code #{}: look again", self.ask + 1))
                        }
                        Err(e) => cx.error(e),
                    }
                }
                _ => {
                    field.edit(&key);
                }
            },
            Mode::Export(field) => match key.code {
                KeyCode::Esc => self.mode = Mode::Browse,
                KeyCode::Enter if !field.is_empty() => {
                    let path = expand_home(field.as_str(), cx.options.home_dir.as_deref());
                    if let Some(issued) = &self.issued {
                        cx.export(path, recovery_sheet::sheet(issued));
                    }
                }
                _ => {
                    field.edit(&key);
                }
            },
            Mode::ConfirmLeave(target) => match key.code {
                KeyCode::Char('y') | KeyCode::Char('Y') => {
                    let target = target.clone();
                    cx.info(
                        "left without confirming: the codes are wiped and show as never confirmed",
                    );
                    self.leave(target, cx);
                }
                KeyCode::Char('n') | KeyCode::Char('N') | KeyCode::Esc => self.mode = Mode::Browse,
                _ => {}
            },
        }
    }

    fn on_copied(&mut self, used: ClipboardUsed, _cx: &mut Cx) {
        self.copied = Some(used);
    }

    fn on_exported(&mut self, path: PathBuf, result: Result<(), ExportError>, cx: &mut Cx) {
        match result {
            Ok(()) => {
                // The path last: on a narrow status line it is what must not be cut.
                cx.info(format!(
                    "codes written, readable by you only, to {}",
                    path.display()
                ));
                self.exported = Some(path);
                self.mode = Mode::Browse;
            }
            Err(ExportError::Exists) => cx.error(format!(
                "{} already exists and is never overwritten: choose another name",
                path.display()
            )),
            Err(ExportError::Other(e)) => {
                cx.error(format!("could not write {}: {e}", path.display()))
            }
        }
    }

    fn draw(&self, frame: &mut Frame<'_>, area: Rect, vx: &ViewCx) {
        let t = &vx.theme;
        let Some(issued) = &self.issued else {
            frame.render_widget(Paragraph::new("the codes were wiped").block(panel()), area);
            return;
        };
        let rows = issued.codes.len().div_ceil(2) as u16;
        let [intro, grid, bottom] = Layout::vertical([
            Constraint::Length(3),
            Constraint::Length(rows + 2),
            Constraint::Min(1),
        ])
        .areas(area);
        let save = if self.kiosk {
            "Each code signs in once when your authenticator is not at hand. Write them"
        } else {
            "Each code signs in once when your authenticator is not at hand. Save them now:"
        };
        let never = if self.kiosk {
            "down now (this kiosk cannot copy or export them): they are never shown again."
        } else {
            "they will never be shown again."
        };
        let intro_lines = vec![
            Line::styled(save, t.title()),
            Line::styled(never, t.title()),
            Line::styled(
                format!(
                    "{} · {} · issued {}",
                    issued.issuer,
                    issued.account,
                    format_date(issued.issued_at)
                ),
                t.dim(),
            ),
        ];
        frame.render_widget(Paragraph::new(intro_lines).block(margin()), intro);

        // Two columns, numbered down then across, like the export file read in two halves.
        let half = rows as usize;
        let display: Vec<Zeroizing<String>> = issued.codes.iter().map(|c| c.display()).collect();
        let mut lines = Vec::with_capacity(half);
        for r in 0..half {
            let mut spans = vec![
                Span::styled(format!("  {:>2}. ", r + 1), t.dim()),
                Span::styled(display[r].as_str(), t.key()),
            ];
            if let Some(right) = display.get(r + half) {
                spans.push(Span::styled(
                    format!("       {:>2}. ", r + half + 1),
                    t.dim(),
                ));
                spans.push(Span::styled(right.as_str(), t.key()));
            }
            lines.push(Line::from(spans));
        }
        frame.render_widget(Paragraph::new(lines).block(panel()), grid);

        // A tick only for what is known to have happened: an OSC 52 copy is merely sent.
        let mut done = Vec::new();
        if self.copied == Some(ClipboardUsed::System) {
            done.push("copied".to_string());
        }
        if let Some(p) = &self.exported {
            done.push(format!("exported to {}", p.display()));
        }
        let mut bottom_lines = vec![];
        if !done.is_empty() {
            bottom_lines.push(Line::styled(format!("✓ {}", done.join(", ")), t.ok()));
        }
        if self.copied == Some(ClipboardUsed::Osc52) {
            bottom_lines.push(Line::styled(
                "Sent to your terminal's clipboard: paste it to check (not all terminals support this).",
                t.warn(),
            ));
        }
        match &self.mode {
            Mode::Browse => bottom_lines.push(Line::raw(format!(
                "When they are safe, press Enter and type code #{} back.",
                self.ask + 1
            ))),
            Mode::Proof(field) => {
                bottom_lines.push(Line::raw(format!(
                    "Type code #{} ({FORMAT_HINT}, any case or spacing):",
                    self.ask + 1
                )));
                bottom_lines.push(field_line(
                    &format!("Code #{}", self.ask + 1),
                    field,
                    true,
                    t,
                ));
            }
            Mode::Export(field) => {
                bottom_lines.push(Line::raw("Export to (a new file, readable by you only):"));
                bottom_lines.push(Line::raw(format!("{}_", field.as_str())));
            }
            Mode::ConfirmLeave(_) => bottom_lines.push(Line::styled(
                "These codes will never be shown again: leave anyway? (y/n)",
                t.error(),
            )),
        }
        frame.render_widget(
            Paragraph::new(bottom_lines)
                .wrap(Wrap { trim: false })
                .block(margin()),
            bottom,
        );
    }
}

/// A typed path with a leading `~` (alone or before a `/`) replaced by the home directory, as a
/// shell would; anything else as typed.
fn expand_home(typed: &str, home: Option<&Path>) -> PathBuf {
    match (typed.strip_prefix('~'), home) {
        (Some(""), Some(home)) => home.to_path_buf(),
        (Some(rest), Some(home)) if rest.starts_with('/') => home.join(&rest[1..]),
        _ => PathBuf::from(typed),
    }
}

/// The default export location's directory as the runtime proposes it.
pub fn default_export_dir() -> PathBuf {
    directories::UserDirs::new()
        .map(|d| {
            d.document_dir()
                .unwrap_or_else(|| d.home_dir())
                .to_path_buf()
        })
        .unwrap_or_else(|| Path::new(".").to_path_buf())
}
