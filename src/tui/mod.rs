//! The console: a ratatui TUI over the core's [`Service`], for an operator over SSH or a person
//! at an offline kiosk. It only translates keys into service calls and results into screens;
//! every rule (throttling, code validity, what counts as low) stays in the core.
//!
//! # Architecture: Elm-shaped, in three parts
//! - [`app`]: the state ([`app::App`], with one [`app::Screen`] variant per screen) and the only
//!   transition function, [`app::update`]`(&mut App, Msg) -> Vec<Effect>`. Screens live in
//!   [`screens`], one file each with their state, keys ([`keys::KeyHint`] lists, the single
//!   source of the footer and the `?` help) and drawing, all behind the one
//!   [`app::Component`] trait.
//! - [`ui`]: the pure [`ui::view`]`(&App, &mut Frame)`. Same app, same frame: time comes from
//!   the service's clock as [`app::Msg::Tick`], never from the system, so snapshots are stable.
//! - [`runtime`] (the event side): the terminal loop, and the executor of [`app::Effect`]s:
//!   service calls (on one worker thread in the terminal, so a password hash never freezes the
//!   screen), clipboard, file export, quitting, and [`app::Effect::Later`] calls run one at
//!   a time between keys (the rest of a long account list). Their results come back as messages, and
//!   the clipboard and disk sit behind [`runtime::Platform`], so tests drive the whole app with
//!   an in-memory service and never touch a terminal, the clipboard or the disk.
//! - [`demo`]: `sparekey tui --demo`, the same three parts on an in-memory store of sample
//!   accounts with a fixed clock and randomness, in the terminal or pressing keys from a file.
//!
//! The terminal is restored on every way out: normal exit, error (the loop's result is returned
//! only after restoring), panic (ratatui's panic hook restores before the message prints), and
//! SIGTERM or SIGHUP (systemd stopping a kiosk, a closed SSH session): the signal only sets a
//! flag the event loop checks, so the loop ends and restores as on quitting; a second signal
//! of the same kind ends the process at once, for a console that could not stop. A terminal
//! that is gone without a signal (its pseudo-terminal's other side closed) ends the loop with
//! an error (see the `tty` module).

pub mod app;
pub mod demo;
pub(crate) mod keys;
pub mod runtime;
pub mod screens;
mod tty;
pub mod ui;
pub mod widgets;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use crate::core::service::Service;

/// How the console runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TuiOptions {
    /// Opens on the simulated login; the accounts list, settings and quitting need the operator
    /// password, and idle screens are cleared.
    pub kiosk: bool,
    /// Idle time after which a kiosk clears whatever it shows and returns to the login.
    pub idle_timeout: Duration,
}

impl Default for TuiOptions {
    fn default() -> Self {
        Self {
            kiosk: false,
            idle_timeout: Duration::from_secs(60),
        }
    }
}

impl TuiOptions {
    /// The app's options in a real terminal: theme from NO_COLOR, exports proposed in the
    /// documents (or home) directory.
    pub fn app_options(&self, service: &Service) -> app::AppOptions {
        app::AppOptions {
            kiosk: self.kiosk,
            idle_timeout: self.idle_timeout,
            theme: widgets::Theme::from_env(),
            export_dir: screens::codes::default_export_dir(),
            totp: service.config().totp,
            home_dir: directories::UserDirs::new().map(|d| d.home_dir().to_path_buf()),
        }
    }
}

/// Runs the console in the current terminal until the user quits.
pub fn run(service: Service, options: TuiOptions) -> std::io::Result<()> {
    let app_options = options.app_options(&service);
    // Before the terminal changes mode, so a failing clipboard setup cannot leave it raw.
    let platform = runtime::RealPlatform::new();
    run_with(service, platform, app_options)
}

/// Runs the console in the current terminal with the given platform (the demo's has no
/// clipboard and no disk).
pub(crate) fn run_with<P: runtime::Platform>(
    service: Service,
    platform: P,
    app_options: app::AppOptions,
) -> std::io::Result<()> {
    let mut driver = runtime::Driver::with_worker(service, platform, app_options)?;
    let stop = stop_on_signals()?;
    let mut terminal = ratatui::try_init()?;
    let result = runtime::event_loop(&mut terminal, &mut driver, &stop);
    let restored = ratatui::try_restore();
    result.and(restored)
}

/// A flag set by SIGTERM or SIGHUP. Registered before the terminal changes mode. The first
/// signal sets the flag; with it already set, the next one terminates the process (signal-hook's
/// conditional shutdown), so a stuck console can still be stopped.
#[cfg(unix)]
fn stop_on_signals() -> std::io::Result<Arc<AtomicBool>> {
    use signal_hook::consts::{SIGHUP, SIGTERM};
    use signal_hook::flag;
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [SIGTERM, SIGHUP] {
        flag::register_conditional_shutdown(signal, 1, Arc::clone(&stop))?;
        flag::register(signal, Arc::clone(&stop))?;
    }
    Ok(stop)
}

/// Elsewhere there is no SIGTERM or SIGHUP to catch: a flag nothing sets.
#[cfg(not(unix))]
fn stop_on_signals() -> std::io::Result<Arc<AtomicBool>> {
    Ok(Arc::new(AtomicBool::new(false)))
}
