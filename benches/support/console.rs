//! The console as the benches drive it: the real state machine and view on ratatui's
//! `TestBackend`, on a test platform that runs its calls inline. Like the real event loop
//! (`sparekey::tui::runtime::event_loop`), a console is told the terminal's size (200x60, the
//! size [`draw`] draws at) before its first frame, so paging moves by a screenful of that size.
//! Shared by `store_scale`, `console_reopen` and `postgres`.
#![allow(dead_code)]

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use sparekey::app::{self, Paths};
use sparekey::core::service::{Config, Service};
use sparekey::tui::TuiOptions;
use sparekey::tui::app::Msg;
use sparekey::tui::runtime::{Driver, RecordingPlatform};
use sparekey::tui::ui::view;

/// The terminal size of every frame.
pub const WIDTH: u16 = 200;
pub const HEIGHT: u16 = 60;

/// The console on `service`, told its size.
pub fn driver(service: Service) -> Driver<RecordingPlatform> {
    let options = TuiOptions::default().app_options(&service);
    let mut driver = Driver::new(service, RecordingPlatform::default(), options);
    driver.send(Msg::Resize {
        width: WIDTH,
        height: HEIGHT,
    });
    driver
}

/// The console as `sparekey tui` starts it (`app::open_console`: a sled store held only while
/// calls run, closed after `app::CONSOLE_IDLE_RELEASE` without one).
pub fn console(paths: &Paths) -> Driver<RecordingPlatform> {
    driver(app::open_console(paths, Config::default()).expect("open"))
}

/// One frame at 200x60; the number of cells drawn.
pub fn draw(driver: &Driver<RecordingPlatform>) -> usize {
    let mut terminal = Terminal::new(TestBackend::new(WIDTH, HEIGHT)).expect("terminal");
    terminal.draw(|f| view(&driver.app, f)).expect("draw");
    terminal.backend().buffer().content.len()
}

pub fn press(driver: &mut Driver<RecordingPlatform>, code: KeyCode) {
    driver.key(KeyEvent::new(code, KeyModifiers::NONE));
}
