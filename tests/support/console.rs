//! The console tests' harness: a console driven by key events on an in-memory service with a
//! manual clock (from [`CONSOLE_T0`]) and seeded randomness, and rendering to ratatui's
//! TestBackend. Nothing here touches a terminal, the clipboard or the disk.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use sparekey::app::open_in_memory;
use sparekey::core::clock::ManualClock;
use sparekey::core::entropy::SeededEntropy;
use sparekey::core::service::{IssuedCodes, Service};

use super::test_config;
use sparekey::core::totp::{TotpParams, code_at};
use sparekey::tui::app::{AppOptions, Screen};
use sparekey::tui::runtime::{Driver, RecordingPlatform};
use sparekey::tui::screens::enroll::Step as EnrollStep;
use sparekey::tui::ui::view;
use sparekey::tui::widgets::Theme;

pub use super::{CONSOLE_T0, PASSWORD};

pub struct H {
    pub d: Driver<RecordingPlatform>,
    pub clock: Arc<ManualClock>,
}

pub fn service(clock: Arc<ManualClock>) -> Service {
    open_in_memory(test_config(), clock, Box::new(SeededEntropy::new(7)))
}

pub fn options(kiosk: bool) -> AppOptions {
    AppOptions {
        kiosk,
        idle_timeout: Duration::from_secs(60),
        theme: Theme::plain(),
        export_dir: PathBuf::from("/home/ada/Documents"),
        totp: TotpParams::default(),
        home_dir: Some(PathBuf::from("/home/ada")),
    }
}

impl H {
    /// A console over a service prepared by `setup` (called before the app starts, like an
    /// existing store).
    pub fn with(kiosk: bool, setup: impl FnOnce(&Service, &ManualClock)) -> Self {
        let clock = Arc::new(ManualClock::new(CONSOLE_T0));
        let service = service(clock.clone());
        setup(&service, &clock);
        let d = Driver::new(service, RecordingPlatform::default(), options(kiosk));
        Self { d, clock }
    }

    pub fn new() -> Self {
        Self::with(false, |_, _| {})
    }

    pub fn press(&mut self, code: KeyCode) {
        self.d.key(KeyEvent::new(code, KeyModifiers::NONE));
    }
    pub fn enter(&mut self) {
        self.press(KeyCode::Enter);
    }
    pub fn esc(&mut self) {
        self.press(KeyCode::Esc);
    }
    pub fn ctrl(&mut self, c: char) {
        self.d
            .key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL));
    }
    pub fn typed(&mut self, text: &str) {
        for c in text.chars() {
            self.press(KeyCode::Char(c));
        }
    }
    /// Moves the service clock and lets the app see it.
    pub fn advance(&mut self, secs: i64) {
        self.clock.advance(secs);
        self.d.tick();
    }

    pub fn screen(&self) -> &Screen {
        &self.d.app.screen
    }
    pub fn status(&self) -> String {
        self.d
            .app
            .status
            .as_ref()
            .map(|s| s.text.clone())
            .unwrap_or_default()
    }

    pub fn buffer(&self, w: u16, h: u16) -> ratatui::buffer::Buffer {
        let mut terminal = Terminal::new(TestBackend::new(w, h)).unwrap();
        terminal.draw(|f| view(&self.d.app, f)).unwrap();
        terminal.backend().buffer().clone()
    }

    pub fn render(&self, w: u16, h: u16) -> String {
        let mut terminal = Terminal::new(TestBackend::new(w, h)).unwrap();
        terminal.draw(|f| view(&self.d.app, f)).unwrap();
        terminal.backend().to_string()
    }

    /// The current TOTP code of an account enrolled by [`enroll`].
    pub fn totp(&self, secret: &[u8]) -> String {
        code_at(secret, self.clock_now(), TotpParams::default()).unwrap()
    }
    pub fn clock_now(&self) -> i64 {
        use sparekey::core::clock::Clock;
        self.clock.now()
    }
}

/// From the account list, by keys: the new account form for `name` (password [`PASSWORD`]), then
/// the enrollment's password step, up to the wizard's scan step (step 2). Returns the TOTP secret
/// it shows.
pub fn new_account_to_scan(h: &mut H, name: &str) -> Vec<u8> {
    h.typed("n");
    assert!(matches!(h.screen(), Screen::NewAccount(_)));
    h.typed(name);
    h.press(KeyCode::Tab);
    h.typed(PASSWORD);
    h.press(KeyCode::Tab);
    h.typed(PASSWORD);
    h.enter();
    assert!(
        matches!(h.screen(), Screen::Enroll(_)),
        "status: {}",
        h.status()
    );
    h.typed(PASSWORD);
    h.enter();
    match h.screen() {
        Screen::Enroll(e) => match &e.step {
            EnrollStep::Scan(enrollment) => enrollment.secret.as_bytes().to_vec(),
            other => panic!("expected the scan step, got {other:?}"),
        },
        other => panic!("{other:?}"),
    }
}

/// New account form to the wizard's confirm step (step 3), all by keys; returns the TOTP secret.
pub fn enroll_by_keys(h: &mut H, name: &str) -> Vec<u8> {
    let secret = new_account_to_scan(h, name);
    h.enter();
    assert!(matches!(h.screen(), Screen::Enroll(e) if e.step_number() == 3));
    secret
}

/// Creates and enrolls `name` through the service; returns the TOTP secret and the codes.
pub fn enroll(service: &Service, clock: &ManualClock, name: &str) -> (Vec<u8>, IssuedCodes) {
    use sparekey::core::clock::Clock;
    service.create_account(name, PASSWORD).unwrap();
    let e = service.begin_enrollment(name, Some(PASSWORD)).unwrap();
    let secret = e.secret.as_bytes().to_vec();
    let code = code_at(&secret, clock.now(), e.params).unwrap();
    let issued = service.confirm_enrollment(name, &code).unwrap();
    // As the codes screen's proof would: an account as most are, its codes kept.
    service.confirm_codes(name, issued.set_id).unwrap();
    (secret, issued)
}

/// Fails `n` logins of `name` with a wrong password, moving the clock past each delay.
pub fn fail_logins(service: &Service, clock: &ManualClock, name: &str, n: u32) {
    for _ in 0..n {
        if let Ok(sparekey::core::throttle::Gate::Delayed { seconds_left }) = service.gate(name) {
            clock.advance(seconds_left);
        }
        let _ = service.login(name, "wrong password!", Some("000000"));
    }
}

/// A picture of a frame as a terminal on a dark background would show it, as a binary PGM
/// image: each cell `scale` pixels wide and twice as tall, its top and bottom halves lit as the
/// half-block glyph and its colours say. Text other than blocks is drawn as its background (a
/// thin stroke, as a camera would mostly see). Default colours are a light foreground on a dark
/// background.
pub fn frame_picture(buffer: &ratatui::buffer::Buffer, scale: usize) -> Vec<u8> {
    use ratatui::style::Color;
    let light = |color: Color, is_fg: bool| match color {
        Color::Black | Color::DarkGray => false,
        Color::White | Color::Gray => true,
        _ => is_fg,
    };
    let area = buffer.area;
    let (cols, rows) = (usize::from(area.width), usize::from(area.height));
    let (width, height) = (cols * scale, rows * 2 * scale);
    let mut pixels = vec![0u8; width * height];
    for y in 0..rows {
        for x in 0..cols {
            let cell = &buffer[(x as u16, y as u16)];
            let (top, bottom) = match cell.symbol() {
                "█" => (true, true),
                "▀" => (true, false),
                "▄" => (false, true),
                _ => (false, false),
            };
            let fg = light(cell.fg, true);
            let bg = light(cell.bg, false);
            for (half, painted) in [(0, top), (1, bottom)] {
                let lit = if painted { fg } else { bg };
                let value = if lit { 255 } else { 0 };
                for py in 0..scale {
                    let row = (y * 2 + half) * scale + py;
                    let start = row * width + x * scale;
                    pixels[start..start + scale].fill(value);
                }
            }
        }
    }
    let mut out = format!("P5\n{width} {height}\n255\n").into_bytes();
    out.extend(pixels);
    out
}

/// What `zbarimg` reads in a picture from [`frame_picture`]: `Ok(None)` when it found no code,
/// `Err` with the reason when zbarimg cannot run (the caller prints "skipped").
pub fn decode_qr(picture: &[u8]) -> Result<Option<String>, String> {
    use std::process::Command;
    let dir = tempfile::TempDir::new().map_err(|e| e.to_string())?;
    let path = dir.path().join("frame.pgm");
    std::fs::write(&path, picture).map_err(|e| e.to_string())?;
    let output = Command::new("zbarimg")
        .args(["--quiet", "--raw", "-Sdisable", "-Sqrcode.enable"])
        .arg(&path)
        .output()
        .map_err(|e| format!("zbarimg could not run ({e}); install zbar-tools"))?;
    // zbarimg exits 4 when the picture holds no code it can read.
    match output.status.code() {
        Some(0) => Ok(Some(
            String::from_utf8_lossy(&output.stdout)
                .trim_end()
                .to_string(),
        )),
        Some(4) => Ok(None),
        _ => Err(format!(
            "zbarimg failed: {}",
            String::from_utf8_lossy(&output.stderr)
        )),
    }
}
